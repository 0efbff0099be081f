/*
 * iobench.S - the benchmark guest of bench/vmstart: no runtime, no paging, no stack.
 *
 * Entered at pvh_entry in 32-bit flat protected mode (PVH), %ebx = struct hvm_start_info.
 * Its very first instruction writes port IOBENCH_PORT, so a VMM that counts writes there
 * sees the first guest instruction as an exit. Then it writes the port N more times,
 * N being the decimal number at the start of the command line (0 when absent), writes 0
 * to the debug-exit port 0xf4 and halts with interrupts off.
 *
 * The same ELF runs under QEMU (`-kernel iobench.elf -append N -device
 * isa-debug-exit,iobase=0xf4`), where port 0x80 is QEMU's dummy POST port.
 */

#include "rt/pvh_note.h"
#define IOBENCH_PORT 0x80
#define DEBUG_EXIT_PORT 0xf4
#define SI_CMDLINE 24 /* offsetof(struct hvm_start_info, cmdline_paddr) */

	PVH_NOTE(pvh_entry)

	.section .text.entry, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	outb %al, $IOBENCH_PORT		/* the first guest instruction */
	xorl %ecx, %ecx			/* N = atoi(cmdline) */
	movl SI_CMDLINE(%ebx), %esi
	testl %esi, %esi
	jz 2f
1:	movzbl (%esi), %eax
	subl $'0', %eax
	cmpl $9, %eax
	ja 2f
	imull $10, %ecx, %ecx
	addl %eax, %ecx
	incl %esi
	jmp 1b
2:	jecxz 4f
3:	outb %al, $IOBENCH_PORT		/* the exit being timed */
	decl %ecx
	jnz 3b
4:	xorl %eax, %eax
	outb %al, $DEBUG_EXIT_PORT
	cli
5:	hlt
	jmp 5b
