/*
 * isr.S - interrupt and exception entry stubs for all 256 vectors.
 *
 * Each stub pushes a zero error code when the CPU does not push one, then the vector, and
 * jumps to a common path that saves the general registers as struct rt_frame (rt.h),
 * calls rt_trap(frame) and returns with iretq, so a handler may edit the frame to resume
 * elsewhere. rt_isr_table holds the stub addresses for the IDT.
 */

	.text
	.code64

.macro STUB vec
	.balign 16
isr_\vec:
	/* the CPU pushes an error code for #DF #TS #NP #SS #GP #PF #AC #CP #VC #SX */
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21)
	.elseif (\vec == 29) || (\vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp isr_common
.endm

	.altmacro
.macro STUBS from, to
	STUB %from
	.if \to-\from
	STUBS %(from+1), \to
	.endif
.endm
	STUBS 0, 63
	STUBS 64, 127
	STUBS 128, 191
	STUBS 192, 255

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	call rt_trap
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

.macro ENTRY vec
	.quad isr_\vec
.endm
.macro ENTRIES from, to
	ENTRY %from
	.if \to-\from
	ENTRIES %(from+1), \to
	.endif
.endm
	.section .rodata
	.balign 8
	.globl rt_isr_table
rt_isr_table:
	ENTRIES 0, 63
	ENTRIES 64, 127
	ENTRIES 128, 191
	ENTRIES 192, 255
