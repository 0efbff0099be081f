/*
 * pvh_note.h - the ELF note that makes an image a PVH kernel (for .S files).
 *
 * PVH_NOTE(sym) emits XEN_ELFNOTE_PHYS32_ENTRY with the 32-bit physical entry @sym, which
 * hv's and QEMU's loaders look for. Both the runtime (rt/entry.S) and the runtime-less
 * iobench.S use it.
 */
#ifndef GUEST_RT_PVH_NOTE_H
#define GUEST_RT_PVH_NOTE_H

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* clang-format off */
#define PVH_NOTE(sym)						\
	.pushsection .note.Xen, "a", @note;			\
	.balign 4;						\
	.long 4;		/* namesz: "Xen\0" */		\
	.long 4;		/* descsz */			\
	.long XEN_ELFNOTE_PHYS32_ENTRY;				\
	.asciz "Xen";						\
	.balign 4;						\
	.long sym;						\
	.balign 4;						\
	.popsection
/* clang-format on */

#endif
