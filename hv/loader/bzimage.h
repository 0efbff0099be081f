/*
 * bzimage.h - loading a Linux bzImage through the x86 boot protocol (HVM Linux guests).
 *
 * hv skips the real-mode setup code and enters the kernel at its 32-bit protected-mode
 * entry (Documentation/arch/x86/boot.rst, "32-bit BOOT PROTOCOL"): flat 4 GiB segments
 * CS = 0x10 and DS/ES/SS = 0x18, paging and interrupts off, EIP = 1 MiB (where the
 * protected-mode kernel is loaded), ESI = the zero page (struct boot_params), EBP = EDI =
 * EBX = 0. Every x86-64 kernel has that entry; no page tables need to be built.
 *
 * Boot data layout in guest RAM:
 *   BZ_ZERO_PAGE_GPA   boot_params: the image's setup header, the e820 map, initrd and
 *                      command-line pointers
 *   BZ_CMDLINE_GPA     the command line, NUL-terminated
 *   BZ_KERNEL_GPA      the protected-mode kernel (the file after the setup sectors); it
 *                      decompresses itself to pref_address (or a KASLR choice) and needs
 *                      init_size bytes there
 *   initrd             page-aligned, as high as possible below the end of low RAM and
 *                      the kernel's initrd_addr_max, above everything the kernel needs
 */
#ifndef HV_LOADER_BZIMAGE_H
#define HV_LOADER_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "hv/error.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

#define BZ_ZERO_PAGE_GPA 0x7000ULL
#define BZ_CMDLINE_GPA   0x20000ULL
#define BZ_CMDLINE_MAX   4096 /* bytes including the NUL (the kernel may allow fewer) */
#define BZ_KERNEL_GPA    0x100000ULL
#define BZ_MIN_VERSION   0x206 /* boot protocol 2.06: cmdline_size, 32-bit entry rules */

/* Offsets in the image's first sector and in boot_params (same layout for the header). */
#define BZ_HDR_START       0x1f1 /* struct setup_header, up to 0x202 + byte at 0x201 */
#define BZ_HDR_LIMIT       0x290 /* boot_params: where the setup header area ends */
#define BZ_SETUP_SECTS     0x1f1 /* u8, 0 means 4 */
#define BZ_SYSSIZE         0x1f4 /* u32, protected-mode size in 16-byte units */
#define BZ_BOOT_FLAG       0x1fe /* u16, 0xaa55 */
#define BZ_JUMP            0x200 /* u16: short jump; its offset byte gives the header end */
#define BZ_MAGIC           0x202 /* "HdrS" */
#define BZ_VERSION         0x206 /* u16 */
#define BZ_TYPE_OF_LOADER  0x210 /* u8 */
#define BZ_LOADFLAGS       0x211 /* u8 */
#define BZ_CODE32_START    0x214 /* u32 */
#define BZ_RAMDISK_IMAGE   0x218 /* u32 */
#define BZ_RAMDISK_SIZE    0x21c /* u32 */
#define BZ_HEAP_END_PTR    0x224 /* u16 */
#define BZ_CMD_LINE_PTR    0x228 /* u32 */
#define BZ_INITRD_ADDR_MAX 0x22c /* u32, protocol 2.03+ */
#define BZ_RELOCATABLE     0x234 /* u8, protocol 2.05+ */
#define BZ_XLOADFLAGS      0x236 /* u16, protocol 2.12+ */
#define BZ_CMDLINE_SIZE    0x238 /* u32, protocol 2.06+ */
#define BZ_PREF_ADDRESS    0x258 /* u64, protocol 2.10+ */
#define BZ_INIT_SIZE       0x260 /* u32, protocol 2.10+ */
#define BZ_E820_ENTRIES    0x1e8 /* boot_params: u8 */
#define BZ_E820_TABLE      0x2d0 /* boot_params: struct boot_e820_entry[BZ_E820_MAX] */
#define BZ_E820_MAX        128

#define BZ_LOADED_HIGH   0x01 /* loadflags: protected-mode code loads at 1 MiB */
#define BZ_CAN_USE_HEAP  0x80 /* loadflags: heap_end_ptr is valid */
#define BZ_XLF_KERNEL_64 0x01 /* xloadflags: has the 64-bit entry at +0x200 */
#define BZ_E820_RAM      1
#define BZ_E820_RESERVED 2

/* bzimage_probe - whether @image (@len bytes) carries a setup header ("HdrS" at 0x202). */
bool bzimage_probe(const void *image, size_t len);

/*
 * bzimage_load - validate the bzImage @image (@len bytes, read only), the optional initrd
 * (@initrd, @initrd_len bytes; NULL/0 for none) and @cmdline (NULL: empty) against the
 * boot protocol and guest RAM before writing anything; then copy the protected-mode
 * kernel to BZ_KERNEL_GPA, the initrd high in low RAM, the command line and the zero page
 * (header copied from the image, type_of_loader 0xff, e820 map from @m's slots with
 * 640 KiB-1 MiB reserved), and set @entry to the 32-bit entry state described above
 * (x86_state_flat32() plus RIP/RSI; modified in place, so pass a reset state). Every
 * write goes through gpa_write(). Returns 0, or -1 with @err naming the field at fault
 * ("boot protocol 2.04 is too old, need 2.06 or later"); guest RAM is untouched then.
 */
int bzimage_load(struct guest_mem *m, const void *image, size_t len, const void *initrd,
                 size_t initrd_len, const char *cmdline, struct x86_state *entry,
                 struct hv_error *err);

#endif
