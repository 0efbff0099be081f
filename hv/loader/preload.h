/*
 * preload.h - fill guest RAM from a raw memory image (hv run --preload).
 *
 * The image is guest RAM as a flat file, page 0 first, in the order of the RAM slots (low
 * RAM from 0, then the RAM above 4 GiB): the layout QEMU's memory-backend-file gives its
 * backing file, so one image feeds both. It may be shorter than RAM (the rest stays zero),
 * never longer. The kernel is loaded over it afterwards.
 */
#ifndef HV_LOADER_PRELOAD_H
#define HV_LOADER_PRELOAD_H

#include "hv/error.h"
#include "hv/mem.h"

/*
 * mem_preload - copy the file at @path into @m's RAM from offset 0, reading straight into
 * the slots in large chunks, and mark the written pages dirty. Returns 0, or -1 with @err
 * naming the file (missing, not a regular file, longer than RAM, short read).
 */
int mem_preload(struct guest_mem *m, const char *path, struct hv_error *err);

#endif
