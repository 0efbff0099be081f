/*
 * entry.S - PVH entry: from 32-bit flat protected mode to 64-bit C.
 *
 * The VMM enters pvh_entry (named by the XEN_ELFNOTE_PHYS32_ENTRY note below) with paging
 * off and %ebx = physical address of struct hvm_start_info. We zero .bss, build identity
 * page tables in it (0-4 GiB with 2 MiB pages; 4-64 GiB with 1 GiB pages if CPUID says the
 * CPU has them, else with 2 MiB pages too), turn on PAE, EFER.LME (and NXE when the CPU has
 * it) and paging, load our GDT, far-jump to 64-bit code and call rt_start(start_info).
 * Nothing here touches the start_info memory, so the VMM may place it anywhere outside the
 * image.
 */

#include "pvh_note.h"
#define STACK_SIZE (64 * 1024)

	PVH_NOTE(pvh_entry)

	.section .text.entry, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	movl %ebx, %esi			/* keep start_info in %esi */

	/* Zero .bss (page tables and stacks live there). */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl
	movl $boot_stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> the four PDs. */
	movl $rt_pdpt, %eax
	orl $3, %eax
	movl %eax, rt_pml4
	movl $rt_pd, %eax
	orl $3, %eax
	xorl %ecx, %ecx
1:	movl %eax, rt_pdpt(,%ecx,8)
	addl $4096, %eax
	incl %ecx
	cmpl $4, %ecx
	jb 1b

	/* 2048 PD entries: 2 MiB pages covering 0-4 GiB (P|RW|PS). */
	movl $0x83, %eax
	xorl %ecx, %ecx
2:	movl %eax, rt_pd(,%ecx,8)
	addl $0x200000, %eax
	incl %ecx
	cmpl $2048, %ecx
	jb 2b

	/* Extended features: 1 GiB pages, NX. */
	movl $0x80000000, %eax
	cpuid
	cmpl $0x80000001, %eax
	jb 5f
	movl $0x80000001, %eax
	cpuid
	movl %edx, ext_edx
5:	testl $(1 << 26), ext_edx
	jz 6f

	/* PDPT[4..63]: 1 GiB pages covering 4-64 GiB. */
	movl $4, %ecx
3:	movl %ecx, %eax
	shll $30, %eax
	orl $0x83, %eax
	movl %eax, rt_pdpt(,%ecx,8)
	movl %ecx, %eax
	shrl $2, %eax
	movl %eax, rt_pdpt+4(,%ecx,8)
	incl %ecx
	cmpl $64, %ecx
	jb 3b
	jmp 8f

	/* No 1 GiB pages: PDPT[4..63] -> rt_pd_high, 60 more PDs of 2 MiB pages. */
6:	movl $rt_pd_high, %eax
	orl $3, %eax
	movl $4, %ecx
7:	movl %eax, rt_pdpt(,%ecx,8)
	addl $4096, %eax
	incl %ecx
	cmpl $64, %ecx
	jb 7b
	xorl %ecx, %ecx			/* entry index: address = (ecx + 2048) << 21 */
9:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax
	movl %eax, rt_pd_high(,%ecx,8)
	movl %ecx, %eax
	addl $2048, %eax
	shrl $11, %eax
	movl %eax, rt_pd_high+4(,%ecx,8)
	incl %ecx
	cmpl $(60 * 512), %ecx
	jb 9b
8:

	/* CR4.PAE, CR3, EFER.LME (+NXE), CR0.PG|WP. */
	movl %cr4, %eax
	orl $(1 << 5), %eax
	movl %eax, %cr4
	movl $rt_pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $(1 << 8), %eax
	testl $(1 << 20), ext_edx
	jz 4f
	orl $(1 << 11), %eax
4:	wrmsr
	movl %cr0, %eax
	orl $0x80010001, %eax
	movl %eax, %cr0

	lgdt gdt_desc
	ljmp $0x08, $long_entry

	.code64
long_entry:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movq $boot_stack_top, %rsp
	xorl %ebp, %ebp
	movl %esi, %edi			/* zero-extends: upper halves are undefined here */
	call rt_start
1:	cli
	hlt
	jmp 1b

	.section .data
	.balign 16
	.globl rt_gdt
rt_gdt:
	.quad 0				/* 0x00 null */
	.quad 0x00af9a000000ffff	/* 0x08 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10 data */
	.quad 0x00cf9a000000ffff	/* 0x18 32-bit code (unused) */
	.quad 0, 0			/* 0x20 TSS, filled in by rt_start */
rt_gdt_end:
	.balign 4
	.word 0
gdt_desc:
	.word rt_gdt_end - rt_gdt - 1
	.quad rt_gdt			/* lgdt in 32-bit mode reads the low 4 bytes */
	.globl ext_edx
ext_edx:
	.long 0

	.section .bss
	.balign 4096
	.globl rt_pml4, rt_pdpt, rt_pd
rt_pml4:
	.skip 4096
rt_pdpt:
	.skip 4096
rt_pd:
	.skip 4 * 4096
rt_pd_high:
	.skip 60 * 4096
boot_stack:
	.skip STACK_SIZE
boot_stack_top:
