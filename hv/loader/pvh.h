/*
 * pvh.h - loading a PVH kernel (an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note).
 *
 * Boot data layout in guest RAM (all below 1 MiB, where PVH kernels do not load):
 *   PVH_START_INFO_GPA  struct hvm_start_info, followed by the memory map
 *   PVH_CMDLINE_GPA     the command line, NUL-terminated, at most PVH_CMDLINE_MAX bytes
 * A segment that overlaps [PVH_BOOT_START, PVH_BOOT_END) is rejected.
 */
#ifndef HV_LOADER_PVH_H
#define HV_LOADER_PVH_H

#include <stddef.h>

#include "hv/error.h"
#include "hv/loader/start_info.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

#define PVH_BOOT_START     0x6000ULL
#define PVH_START_INFO_GPA 0x6000ULL
#define PVH_MEMMAP_GPA     (PVH_START_INFO_GPA + 64)
#define PVH_MEMMAP_MAX     ((0x1000 - 64) / sizeof(struct hvm_memmap_table_entry))
#define PVH_CMDLINE_GPA    0x7000ULL
#define PVH_CMDLINE_MAX    4096 /* bytes including the NUL */
#define PVH_BOOT_END       0x8000ULL

#define PVH_MAX_PHDRS 64 /* more program headers than any kernel has: refuse */

/*
 * pvh_load - validate the whole ELF image (@image, @len bytes; read only) before writing
 * anything, then copy its PT_LOAD segments into @m (zeroing each segment's bss), write the
 * start_info, memory map and @cmdline (NULL: empty), and set @entry to the PVH entry
 * state: x86_state_flat32(), RIP = the PHYS32 entry, RBX = PVH_START_INFO_GPA. @entry is
 * modified in place, so pass it a reset state. Returns 0, or -1 with @err saying what is
 * wrong with the image ("not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note"); guest RAM
 * is untouched when the image is rejected.
 */
int pvh_load(struct guest_mem *m, const void *image, size_t len, const char *cmdline,
             struct x86_state *entry, struct hv_error *err);

/* pvh_load_file - pvh_load() of the file at @path; messages start with "@path: ". */
int pvh_load_file(struct guest_mem *m, const char *path, const char *cmdline,
                  struct x86_state *entry, struct hv_error *err);

#endif
