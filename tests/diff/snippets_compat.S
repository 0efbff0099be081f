/*
 * snippets_compat.S - corpus, part 3: 32-bit code in compatibility mode.
 *
 * Linux runs 32-bit code in 64-bit processes through its user CS 0x23, so a snippet can
 * far-jump there, run 32-bit code (the decoding of 0x40-0x4f as inc/dec, 32-bit stack
 * operations, 16-bit addressing, segment pushes and pops, far returns), and far-return to
 * 0x33, natively and in emu alike (where the host kernel runs 32-bit code at all: without
 * ia32 emulation the far jump faults, and these snippets are skipped). C32 (which starts
 * a snippet with COMPAT_ENTER) and COMPAT_LEAVE do the switches without
 * touching a register or a flag; in between DS and ES hold the user data selector 0x2b
 * (a null selector faults in compatibility mode). The SDM leaves bits 63:32 of the GPRs
 * undefined across a switch to a 32-bit mode and back, so COMPAT_LEAVE zero-extends them
 * all; a snippet that faults inside is compared as is.
 *
 * Conventions (inputs, masks, how a snippet ends): corpus.inc. The pointers are below
 * 4 GiB, so they work as 32-bit addresses.
 */
#include "corpus.inc"

/* 64-bit -> compatibility mode at the next instruction; DS = ES = 0x2b. */
.macro COMPAT_ENTER
	.code64
	lea	rsp, [rsp - 16]
	mov	[rsp + 8], rax
	lea	rax, [rip + 8f]
	mov	[rsp], eax
	mov	word ptr [rsp + 4], 0x23
	mov	rax, [rsp + 8]
	jmp	fword ptr [rsp]
8:
	.code32
	lea	esp, [esp + 16]
	push	eax
	mov	eax, 0x2b
	mov	ds, eax
	mov	es, eax
	pop	eax
.endm

/* A snippet of 32-bit code: starts with the switch (the host must run 32-bit code). */
.macro C32 name, mask=FL_ALL, rule=RULE_NONE, arg=0, in=0
	SNIP \name, \mask, \rule, \arg, FEAT_COMPAT32, \in
	COMPAT_ENTER
.endm

/* Compatibility mode -> 64-bit mode; DS = ES = 0, bits 63:32 of every GPR cleared. */
.macro COMPAT_LEAVE
	.code32
	push	0x33
	push	eax
	call	7f
7:	pop	eax
	lea	eax, [eax + (8f - 7b)]
	xchg	eax, [esp]
	retf
8:
	.code64
	push	rax
	mov	eax, 0
	mov	ds, eax
	mov	es, eax
	pop	rax
	mov	eax, eax
	mov	ecx, ecx
	mov	edx, edx
	mov	ebx, ebx
	mov	esp, esp
	mov	ebp, ebp
	mov	esi, esi
	mov	edi, edi
	mov	r8d, r8d
	mov	r9d, r9d
	mov	r10d, r10d
	mov	r11d, r11d
	mov	r12d, r12d
	mov	r13d, r13d
	mov	r14d, r14d
	mov	r15d, r15d
.endm

C32 c32_switch_only
	COMPAT_LEAVE
C32 c32_inc_dec_40_4f		/* one-byte inc/dec: REX prefixes in 64-bit mode */
	inc	eax
	dec	ecx
	inc	edx
	dec	ebx
	inc	esi
	dec	edi
	inc	ebp
	.byte	0x66, 0x40		/* inc ax */
	.byte	0x66, 0x4a		/* dec dx */
	COMPAT_LEAVE
C32 c32_alu
	add	eax, ecx
	adc	edx, [ebx]
	sub	[esi + 4], eax
	sbb	cx, dx
	xor	al, ah
	and	edx, 0x0ff00ff0
	or	byte ptr [edi], 0x81
	cmp	eax, [ebp + 8]
	COMPAT_LEAVE
C32 c32_mul_div, FL_DIV
	imul	eax, ecx, 77
	mul	edx
	or	ecx, 1
	mov	ebx, ecx
	shr	ebx, 1
	and	edx, ebx
	div	ecx
	COMPAT_LEAVE
C32 c32_shifts, FL_ALL, RULE_SHL, DIFF_ARG(32, DIFF_CL)
	rol	edx, 3
	sar	eax, 1
	shl	eax, cl
	COMPAT_LEAVE
C32 c32_movzx_movsx_bswap
	movzx	eax, cl
	movsx	edx, ch
	movsx	ecx, word ptr [ebx]
	bswap	edx
	cwde
	cdq
	COMPAT_LEAVE
C32 c32_push_pop
	push	eax
	push	dword ptr [ebx]
	push	-5
	push	0x12345678
	pushw	0x1234
	push	cx
	pop	dx
	pop	si
	pop	ecx
	pop	edx
	pop	dword ptr [esi]
	pop	eax
	COMPAT_LEAVE
C32 c32_push_pop_sreg		/* 32-bit pushes of segment registers: pre-zeroed slots */
	mov	dword ptr [esp - 4], 0
	push	ds
	pop	eax
	mov	dword ptr [esp - 4], 0
	push	cs
	pop	ecx
	mov	dword ptr [esp - 4], 0
	push	ss
	pop	edx
	push	es
	pop	ds
	mov	ebx, ds
	COMPAT_LEAVE
C32 c32_pushf_popf
	pushfd
	pop	eax
	and	ecx, FL_ALL
	or	ecx, 0x202
	push	ecx
	popfd
	COMPAT_LEAVE
C32 c32_call_ret
	call	2f
	jmp	1f
2:	mov	eax, [esp]
	ret
1:	COMPAT_LEAVE
C32 c32_call_ret_imm
	push	eax
	call	2f
	jmp	1f
2:	ret	4
1:	COMPAT_LEAVE
C32 c32_call_indirect
	call	2f
2:	pop	eax
	lea	eax, [eax + (3f - 2b)]
	mov	[ebx], eax
	call	dword ptr [ebx]
	jmp	1f
3:	ret
1:	COMPAT_LEAVE
C32 c32_enter_leave
	enter	0x10, 2
	mov	[ebp - 4], eax
	leave
	COMPAT_LEAVE
C32 c32_jcc_loop
	and	ecx, 7
	inc	ecx
	xor	eax, eax
2:	add	eax, ecx
	loop	2b
	cmp	eax, edx
	jl	3f
	mov	edx, 1
3:	jecxz	1f
	mov	esi, 2
1:	COMPAT_LEAVE
C32 c32_jcxz_loopw		/* 67: CX instead of ECX */
	mov	ecx, 0x30002
2:	inc	eax
	.byte	0x67, 0xe2, 0xfc	/* loopw 2b */
	.byte	0x67, 0xe3, 0x02	/* jcxz +2 */
	mov	dl, 1
	COMPAT_LEAVE
C32 c32_setcc_cmovcc
	cmp	eax, ecx
	setl	dl
	setbe	dh
	cmovg	esi, edi
	cmovs	ebx, [ebp]
	COMPAT_LEAVE
C32 c32_strings
	movzx	ecx, cl
	rep movsb
	movzx	ecx, dl
	rep stosd
	lodsw
	cmpsb
	scasd
	COMPAT_LEAVE
C32 c32_stos_addr16_fault	/* 67 rep stos: CX counts, ES:DI is below 64 KiB: #PF */
	mov	ecx, 0x10005
	.byte	0x67, 0xf3, 0xaa	/* rep stosb with CX and DI: DI wraps in 64 KiB */
	COMPAT_LEAVE
C32 c32_lea_addr16		/* every 16-bit addressing form */
	.byte	0x66, 0x67, 0x8d, 0x00		/* lea ax, [bx+si] */
	.byte	0x66, 0x67, 0x8d, 0x49, 0x7f	/* lea cx, [bx+di+0x7f] */
	.byte	0x66, 0x67, 0x8d, 0x52, 0x80	/* lea dx, [bp+si-0x80] */
	.byte	0x66, 0x67, 0x8d, 0x9b, 0x34, 0x12 /* lea bx, [bp+di+0x1234] */
	.byte	0x67, 0x8d, 0x34		/* lea esi, [si] */
	.byte	0x67, 0x8d, 0x3d		/* lea edi, [di] */
	.byte	0x67, 0x8d, 0x46, 0x05		/* lea eax, [bp+5] */
	.byte	0x67, 0x8d, 0x0e, 0xcd, 0xab	/* lea ecx, [0xabcd] */
	.byte	0x67, 0x8d, 0x17		/* lea edx, [bx] */
	COMPAT_LEAVE
C32 c32_mem_addr16_fault	/* 16-bit addresses fall in the unmapped first 64 KiB */
	.byte	0x67, 0x8b, 0x00		/* mov eax, [bx+si] */
	COMPAT_LEAVE
C32 c32_moffs
	mov	eax, [DIFF_DATA + 0x1234]
	mov	[DIFF_DATA + 0x2001], ax
	mov	cl, [DIFF_DATA + 0x3003]
	COMPAT_LEAVE
C32 c32_xchg_cmpxchg, FL_ALL, RULE_NONE, 0, IN_ALIGNED
	xchg	eax, ecx
	xchg	[ebx], edx
	cmpxchg	[esi], edi
	lock xadd [edi], eax
	cmpxchg8b qword ptr [ebp]
	COMPAT_LEAVE
C32 c32_bits, FL_BT
	bts	eax, ecx
	movsx	edx, dx
	btr	[ebx], edx
	bsf	esi, edi
	bt	ecx, 7
	COMPAT_LEAVE
C32 c32_iretd_same_level
	call	2f
2:	pop	eax
	lea	eax, [eax + (3f - 2b)]
	pushfd
	push	0x23
	push	eax
	iretd
3:	COMPAT_LEAVE
C32 c32_fault_ud
	ud2
	COMPAT_LEAVE
C32 c32_fault_pf
	mov	eax, [DIFF_DATA - 4]
	COMPAT_LEAVE
C32 c32_fault_null_ds		/* a null DS faults outside 64-bit mode: #GP(0) */
	push	eax
	xor	eax, eax
	mov	ds, eax
	pop	eax
	mov	eax, [ebx]
	COMPAT_LEAVE
C32 c32_fault_de
	xor	ecx, ecx
	div	ecx
	COMPAT_LEAVE

	CORPUS_END
	.code64
