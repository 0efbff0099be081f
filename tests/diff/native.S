/*
 * native.S - the trampoline that runs a snippet on the host CPU.
 *
 * diff_native_enter(in, out, entry) saves the host's callee-saved registers and stack
 * pointer, loads RFLAGS and all 16 GPRs (RSP too: it points into the data area) from @in
 * and jumps to @entry. The snippet ends with a jump to diff_native_exit, which stores all
 * GPRs and RFLAGS to @out, restores the host state and returns to the caller. A snippet
 * that faults never gets there: native.c's signal handler takes the registers from the
 * signal frame and siglongjmps past this code instead.
 */
#include "diff.h"

	.intel_syntax noprefix
	.text

/* void diff_native_enter(const struct diff_regs *in, struct diff_regs *out, uint64_t entry) */
	.globl	diff_native_enter
	.type	diff_native_enter, @function
diff_native_enter:
	push	rbx
	push	rbp
	push	r12
	push	r13
	push	r14
	push	r15
	mov	[rip + host_rsp], rsp
	mov	[rip + out_ptr], rsi
	mov	[rip + entry_ptr], rdx
	push	qword ptr [rdi + DIFF_REGS_RFLAGS]
	popfq				/* from here on only flag-neutral moves */
	mov	rax, [rdi + 0 * 8]
	mov	rcx, [rdi + 1 * 8]
	mov	rdx, [rdi + 2 * 8]
	mov	rbx, [rdi + 3 * 8]
	mov	rsp, [rdi + 4 * 8]
	mov	rbp, [rdi + 5 * 8]
	mov	rsi, [rdi + 6 * 8]
	mov	r8, [rdi + 8 * 8]
	mov	r9, [rdi + 9 * 8]
	mov	r10, [rdi + 10 * 8]
	mov	r11, [rdi + 11 * 8]
	mov	r12, [rdi + 12 * 8]
	mov	r13, [rdi + 13 * 8]
	mov	r14, [rdi + 14 * 8]
	mov	r15, [rdi + 15 * 8]
	mov	rdi, [rdi + 7 * 8]
	jmp	qword ptr [rip + entry_ptr]
	.size	diff_native_enter, . - diff_native_enter

/* Reached by the jump appended to every snippet, with the snippet's registers live. */
	.globl	diff_native_exit
	.type	diff_native_exit, @function
diff_native_exit:
	mov	[rip + guest_rsp], rsp
	mov	rsp, [rip + host_rsp]
	pushfq
	push	rax
	mov	rax, [rip + out_ptr]
	mov	[rax + 1 * 8], rcx
	mov	[rax + 2 * 8], rdx
	mov	[rax + 3 * 8], rbx
	mov	[rax + 5 * 8], rbp
	mov	[rax + 6 * 8], rsi
	mov	[rax + 7 * 8], rdi
	mov	[rax + 8 * 8], r8
	mov	[rax + 9 * 8], r9
	mov	[rax + 10 * 8], r10
	mov	[rax + 11 * 8], r11
	mov	[rax + 12 * 8], r12
	mov	[rax + 13 * 8], r13
	mov	[rax + 14 * 8], r14
	mov	[rax + 15 * 8], r15
	pop	rcx
	mov	[rax + 0 * 8], rcx
	pop	rcx
	mov	[rax + DIFF_REGS_RFLAGS], rcx
	mov	rcx, [rip + guest_rsp]
	mov	[rax + 4 * 8], rcx
	cld				/* the C ABI wants DF clear */
	pop	r15
	pop	r14
	pop	r13
	pop	r12
	pop	rbp
	pop	rbx
	ret
	.size	diff_native_exit, . - diff_native_exit

	.bss
	.balign	8
host_rsp:	.skip	8
out_ptr:	.skip	8
entry_ptr:	.skip	8
guest_rsp:	.skip	8

	.section .note.GNU-stack, "", @progbits
