/*
 * loader.h - loading a guest kernel, whatever its format: a PVH ELF (pvh.h) or a Linux
 * bzImage (bzimage.h), told apart by content, never by file name.
 *
 * An ELF header (0x7f 'E' 'L' 'F') means PVH; a setup header ("HdrS" at offset 0x202)
 * means bzImage; anything else is refused. An initrd goes with a bzImage only: a PVH
 * kernel given one is refused, so that a forgotten module never goes unnoticed.
 */
#ifndef HV_LOADER_LOADER_H
#define HV_LOADER_LOADER_H

#include <stddef.h>

#include "hv/error.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

/*
 * loader_load_image - load the kernel @image (@len bytes) with the optional @initrd
 * (@initrd_len bytes; NULL for none) and @cmdline (NULL: empty) into @m, and set @entry
 * (modified in place: pass a reset state) to the kernel's entry state. Returns 0, or -1
 * with @err saying what is wrong; guest RAM is untouched when the image is rejected.
 */
int loader_load_image(struct guest_mem *m, const void *image, size_t len, const void *initrd,
                      size_t initrd_len, const char *cmdline, struct x86_state *entry,
                      struct hv_error *err);

/*
 * loader_read_file - read the regular file @path, at most @max bytes (it must fit guest
 * RAM), whole into a new buffer (*@buf, *@len; the caller frees it). Returns 0, or -1
 * with @err naming @path (missing, not a regular file, too big, read error).
 */
int loader_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len,
                     struct hv_error *err);

/*
 * loader_load_kernel - loader_load_image() of the files at @kernel and @initrd (NULL for
 * none). Each file must be a regular file no larger than guest RAM. Messages about a file
 * start with its path: "vmlinuz: boot protocol 2.04 is too old, need 2.06 or later".
 */
int loader_load_kernel(struct guest_mem *m, const char *kernel, const char *initrd,
                       const char *cmdline, struct x86_state *entry, struct hv_error *err);

#endif
