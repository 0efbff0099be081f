/*
 * snippets_alu.S - corpus, part 1: data movement, arithmetic and logic, shifts and
 * rotates, bit operations, multiply and divide, atomics.
 *
 * Conventions (inputs, masks, how a snippet ends): corpus.inc. Names read
 * <mnemonic>_<operands>, e.g. add_m32_r32 is `add dword ptr [...], reg32`; _load marks the
 * reg <- r/m encoding of a reg, reg form; _lock a lock prefix.
 */
#include "corpus.inc"

/* ===== mov and friends ===== */

SNIP mov_r64_r64
	mov	rax, r9
SNIP mov_r64_r64_load
	{load} mov r15, rcx
SNIP mov_r32_r32		/* zero-extends */
	mov	eax, r10d
SNIP mov_r32_r32_load
	{load} mov r11d, edx
SNIP mov_r16_r16		/* keeps bits 63:16 */
	mov	ax, r12w
SNIP mov_r8_r8
	mov	cl, dl
	{load} mov r8b, r13b
SNIP mov_r8h
	mov	ah, ch
	mov	dh, bl
	mov	bh, al
SNIP mov_r8_rex			/* spl bpl sil dil need REX */
	mov	sil, dil
	mov	r14b, bpl
	mov	al, spl
SNIP mov_r8_imm8
	mov	al, 0x81
	mov	ah, 0x7f
	mov	r9b, 0xff
	mov	sil, 3
SNIP mov_r16_imm16
	mov	r10w, 0x8001
SNIP mov_r32_imm32
	mov	eax, 0x87654321
	mov	r15d, 1
SNIP mov_r64_imm64
	movabs	rcx, 0x123456789abcdef0
	movabs	r8, 0x8000000000000000
SNIP mov_r64_imm32_c7		/* sign-extended */
	mov	rdx, -0x12345678
	mov	r12, 0x7fffffff
SNIP mov_rm_imm_c6_c7
	.byte	0xc6, 0xc1, 0x9a	/* mov cl, 0x9a (c6 /0) */
	.byte	0x66, 0xc7, 0xc2, 0x34, 0x82 /* mov dx, 0x8234 (c7 /0) */
	.byte	0xc7, 0xc0, 0x78, 0x56, 0x34, 0x82 /* mov eax, imm32 (c7 /0) */
SNIP mov_m8_imm8
	mov	byte ptr [rbx], 0xa5
	mov	byte ptr [rsi + 0x7f], 0x01
SNIP mov_m16_imm16
	mov	word ptr [rdi - 2], 0xfedc
SNIP mov_m32_imm32
	mov	dword ptr [rbp + 0x100], 0x80000001
SNIP mov_m64_imm32
	mov	qword ptr [rbx - 0x80], -3
	mov	qword ptr [rsp + 8], 0x7fffffff
SNIP mov_r8_m8
	mov	al, [rbx]
	mov	ch, [rsi + 1]
	mov	r9b, [rdi - 1]
SNIP mov_r16_m16
	mov	dx, [rbx + 0x11]
	mov	r11w, [rsi]
SNIP mov_r32_m32
	mov	eax, [rbp]
	mov	r12d, [rbx + 0x1234]
SNIP mov_r64_m64
	mov	rcx, [rsi - 0x800]
	mov	r13, [rdi]
SNIP mov_m8_r8
	mov	[rbx], al
	mov	[rsi + 3], dh
	mov	[rdi - 5], r10b
	mov	[rbp + 9], sil
SNIP mov_m16_r16
	mov	[rbx + 1], cx
	mov	[rsi + 0x101], r8w
SNIP mov_m32_r32
	mov	[rdi], edx
	mov	[rbp - 0x44], r14d
SNIP mov_m64_r64
	mov	[rbx + 7], rax
	mov	[rsi - 0x1000], r15
SNIP mov_modrm_forms		/* every mod/rm special case, loads */
	movzx	ecx, cl
	movzx	edx, dl
	mov	rax, [rbx]		/* mod 00 */
	mov	r8, [rbp]		/* mod 01, disp 0: rbp needs it */
	mov	r9, [rbp + rcx * 1]	/* rbp base with an index */
	mov	r10, [rsp]		/* SIB, base rsp */
	mov	r11, [rsp + 0x18]	/* SIB, disp8 */
	mov	r12, [rbx + rcx * 8]	/* SIB, scaled index */
	mov	r14, [rsi + rdx * 2 - 0x200]
	mov	r15, [rdi + rcx * 4 + 0x123]
	mov	rcx, [rbp + rdx * 1 + 0x7f]
SNIP mov_r12_r13_base
	mov	r12, rbx
	mov	r13, rsi
	mov	rax, [r12]		/* r12 as base needs a SIB byte */
	mov	rdx, [r13]		/* r13 as base needs mod 01 */
	mov	[r12 + 8], rdx
	mov	[r13 + 0x10], rax
SNIP mov_sib_no_base, FL_LOGIC	/* disp32 + index*scale, no base; shr leaves AF undefined */
	mov	ecx, esi
	mov	rax, [rcx * 1 + 0x20]
	mov	edx, ebx
	shr	edx, 1
	mov	r8, [rdx * 2 - 0x10]
SNIP mov_abs_disp32		/* [disp32]: SIB with no base and no index */
	mov	rax, [DIFF_DATA + 0x1000]
	mov	ecx, [DIFF_DATA + 0x2345]
	mov	[DIFF_DATA + 0x3001], rax
	mov	byte ptr [DIFF_DATA + 0x4000], 0x5a
SNIP mov_moffs			/* a0-a3 with a 64-bit address */
	movabs	al, [DIFF_DATA + 0x1001]
	movabs	eax, [DIFF_DATA + 0x1100]
	movabs	[DIFF_DATA + 0x2000], eax
	movabs	rax, [DIFF_DATA + 0x1207]
	movabs	[DIFF_DATA + 0x2ffd], rax
	movabs	[DIFF_DATA + 0x3003], ax
	movabs	[DIFF_DATA + 0x3100], al
SNIP mov_rip_relative
	mov	rax, [rip + 2f]
	mov	ecx, [rip + 2f + 3]
	mov	dl, [rip + 2f + 7]
	movzx	r8d, word ptr [rip + 2f + 1]
	jmp	1f
2:	.quad	0x8899aabbccddeeff
1:
SNIP mov_addr32			/* 0x67: 32-bit effective addresses */
	mov	eax, [ebx]
	mov	r8, [esi + 0x10]
	movzx	ecx, cl
	mov	rdx, [edi + ecx * 4]
	mov	[ebp - 4], r8d
SNIP mov_seg_override		/* cs ds es ss are ignored in 64-bit mode */
	mov	eax, cs:[rbx]
	mov	ecx, ds:[rsi]
	mov	edx, es:[rdi]
	mov	r8d, ss:[rbp]
	mov	ss:[rbx + 8], r8d
SNIP mov_from_sreg
	mov	eax, ds
	mov	cx, cs
	mov	rdx, ss
	mov	r8d, es
	mov	r9, fs
	mov	r10w, gs
	mov	[rbx], ss
	mov	[rsi], cs
SNIP mov_to_ds_and_back		/* 0x2b is the user data segment, 0 the null selector */
	mov	ecx, 0x2b
	mov	ds, ecx
	mov	eax, ds
	mov	rdx, [rbx]
	mov	ecx, 0
	mov	ds, ecx
	mov	ecx, ds

.irp sx, movzx, movsx
SNIP \sx\()_r16_r8
	\sx	ax, cl
	\sx	dx, ah
SNIP \sx\()_r32_r8
	\sx	edx, bl
	\sx	r10d, r11b
	\sx	eax, sil
SNIP \sx\()_r64_r8
	\sx	rcx, dl
	\sx	r12, r13b
SNIP \sx\()_r32_r16
	\sx	eax, cx
	\sx	r14d, r15w
SNIP \sx\()_r64_r16
	\sx	rdx, r8w
SNIP \sx\()_r_m8
	\sx	ax, byte ptr [rbx]
	\sx	ecx, byte ptr [rsi + 1]
	\sx	r8, byte ptr [rdi - 1]
SNIP \sx\()_r_m16
	\sx	edx, word ptr [rbp]
	\sx	r9, word ptr [rbx + 0x33]
SNIP \sx\()_r16_r16		/* 0f b7/bf with a 16-bit destination */
	.ifc \sx,movzx
	.byte	0x66, 0x0f, 0xb7, 0xc1	/* movzx ax, cx */
	.else
	.byte	0x66, 0x0f, 0xbf, 0xc1	/* movsx ax, cx */
	.endif
.endr
SNIP movsxd_r64_r32
	movsxd	rax, ecx
	movsxd	r8, r9d
SNIP movsxd_r64_m32
	movsxd	rdx, dword ptr [rbx]
SNIP movsxd_r32_r32		/* 63 without REX.W: a plain 32-bit move */
	.byte	0x63, 0xc1		/* movsxd eax, ecx */

/* ===== lea ===== */

SNIP lea_forms
	lea	rax, [rbx + rcx * 4 + 0x12]
	lea	r8, [rdx + r9 * 8 - 0x80000000]
	lea	r10, [rip + 0x1234]
	lea	r11, [r12 + r13 * 2]
	lea	r14, [rsp + 8]
	lea	r15, [rbp]
	lea	rdi, [rcx * 2]
	lea	rsi, [0x12345678]
SNIP lea_r32			/* 32-bit result of a 64-bit address */
	lea	eax, [rbx + rcx * 8 - 1]
	lea	r9d, [rdx + r8]
SNIP lea_r16
	lea	ax, [rsi + rdi]
	lea	r10w, [rcx + rdx * 4 + 0x7fff]
SNIP lea_addr32			/* 0x67: the address wraps at 4 GiB */
	lea	eax, [ecx + edx]
	lea	r8, [ecx + edx * 2 + 5]
	lea	r9w, [r10d + r11d * 8 - 1]
SNIP lea_nop_forms		/* what compilers emit as multi-byte moves */
	lea	rax, [rax + 0]
	lea	rcx, [rcx * 1 + 0]
	.byte	0x48, 0x8d, 0x74, 0x26, 0x00 /* lea rsi, [rsi + 0] */

/* ===== exchange, byte swap, sign extension ===== */

SNIP xchg_r8
	xchg	al, cl
	xchg	ah, dh
	xchg	r9b, sil
SNIP xchg_r16
	xchg	cx, r9w
	xchg	ax, r12w		/* 66 41 94 */
SNIP xchg_r32			/* both zero-extend */
	xchg	ecx, edx
	xchg	eax, r8d		/* 41 90 */
	xchg	eax, ebx
SNIP xchg_r64
	xchg	r8, r13
	xchg	rax, r9			/* 49 91 */
	xchg	rax, r8			/* 49 90 */
SNIP xchg_eax_eax_87		/* unlike 90, 87 c0 zero-extends rax */
	.byte	0x87, 0xc0
SNIP xchg_90_forms		/* 90 is nop; with REX.B it is xchg r8 */
	.byte	0x90
	.byte	0x48, 0x90
	.byte	0x66, 0x90
	.byte	0x41, 0x90
	.byte	0x49, 0x90
SNIP xchg_m8, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	xchg	[rbx], al
	xchg	ch, [rsi + 1]
SNIP xchg_m16, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	xchg	[rdi], r10w
SNIP xchg_m32, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	xchg	[rsi], r10d
SNIP xchg_m64, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	xchg	rdx, [rdi]
	xchg	[rbp + 8], r15
SNIP bswap_r32
	bswap	eax
	bswap	r9d
SNIP bswap_r64
	bswap	rcx
	bswap	r14
SNIP cbw
	cbw
SNIP cwde
	cwde
SNIP cdqe
	cdqe
SNIP cwd
	cwd
SNIP cdq
	cdq
SNIP cqo
	cqo
SNIP xlatb
	xlatb
SNIP movbe_r_m, FL_ALL, RULE_NONE, 0, FEAT_MOVBE
	movbe	ax, [rbx]
	movbe	ecx, [rsi + 1]
	movbe	r8, [rdi]
SNIP movbe_m_r, FL_ALL, RULE_NONE, 0, FEAT_MOVBE
	movbe	[rbx], dx
	movbe	[rsi + 3], r9d
	movbe	[rdi], rax

/* ===== flags from several instructions (partial updates of lazily computed flags) ===== */

SNIP chain_add_inc		/* CF from add, the rest from inc */
	add	eax, ecx
	inc	edx
	setc	r8b
	setbe	r9b
	setl	r10b
	setle	r11b
	seta	r12b
SNIP chain_sub_dec8
	sub	rax, rcx
	dec	r8b
	adc	r9, r10
SNIP chain_inc_adc		/* adc reads the carry that inc left alone */
	cmp	ecx, edx
	inc	eax
	dec	r8
	adc	r9d, r10d
	sbb	r11w, r12w
SNIP chain_add_cmc
	add	al, cl
	cmc
	sbb	dl, r8b
SNIP chain_sub_clc_stc
	sub	eax, ecx
	clc
	setbe	dl
	stc
	setbe	r8b
SNIP chain_sub_rol1		/* CF OF from rol, SF ZF PF AF from sub */
	sub	eax, ecx
	rol	edx, 1
SNIP chain_add_rcl1
	add	rax, rcx
	rcl	rdx, 1
	adc	r8, 0
SNIP chain_sub_ror5, FL_ALL, RULE_ROT, DIFF_ARG(32, 5)
	sub	eax, ecx
	ror	r8d, 5
SNIP chain_and_stc_adc
	and	eax, ecx
	stc
	adc	edx, 0
SNIP chain_shl_inc		/* CF from shl by CL (or from the input when CL is 0) */
	shl	eax, cl
	inc	edx
	setc	r8b
	adc	r9, r10
SNIP chain_imul_inc		/* CF from imul */
	imul	ecx
	inc	r8d
	adc	r9, 0
SNIP chain_mul_dec
	mul	rcx
	dec	r8
	sbb	r9, r10
SNIP chain_neg_inc_adc
	neg	ecx
	inc	eax
	adc	edx, edx
SNIP chain_bsf_inc, FL_NOCF
	bts	rcx, 40
	bsf	rax, rcx
	inc	rdx
SNIP chain_popcnt_inc, FL_ALL, RULE_NONE, 0, FEAT_POPCNT
	popcnt	eax, ecx
	inc	edx
	setc	r8b
SNIP chain_sahf_inc, FL_ALL, RULE_NONE, 0, FEAT_LAHF
	mov	ah, dl
	sahf
	inc	ecx
	lahf
	adc	r8, r9
SNIP chain_cmovs_all		/* every condition read from mixed lazy state */
	add	r8, r9
	inc	r10
	cmovo	eax, ecx
	cmovb	edx, ecx
	cmovz	r11d, ecx
	cmovbe	r12d, ecx
	cmovs	r13d, ecx
	cmovp	r14d, ecx
	cmovl	r15d, ecx
	cmovle	esi, ecx
SNIP chain_test_dec_jcc
	test	eax, ecx
	dec	edx
	jbe	1f
	mov	r8d, 1
1:
SNIP chain_xadd_inc
	xadd	eax, ecx
	inc	edx
	rcr	r8d, 1
SNIP chain_cmpxchg_setcc
	cmpxchg	ecx, edx
	setz	r8b
	setb	r9b
	sets	r10b
SNIP chain_popf_adc		/* flags loaded by popf, then consumed */
	and	rcx, FL_ALL
	or	rcx, 0x202
	push	rcx
	popfq
	adc	rax, rdx
	inc	r8
	sbb	r9, 0

/* ===== add or adc sbb and sub xor cmp: every encoding ===== */

.macro ALU op, m
SNIP \op\()_r8_r8, \m
	\op	al, cl
SNIP \op\()_r8_r8_load, \m
	{load} \op dl, r9b
SNIP \op\()_r8h_r8h, \m
	\op	ah, ch
SNIP \op\()_r8h_r8, \m
	\op	dh, bl
SNIP \op\()_r8_rex, \m
	\op	sil, dil
SNIP \op\()_r8_spl, \m
	\op	r10b, spl
SNIP \op\()_r16_r16, \m
	\op	ax, r10w
SNIP \op\()_r16_r16_load, \m
	{load} \op r11w, cx
SNIP \op\()_r32_r32, \m
	\op	eax, ecx
SNIP \op\()_r32_r32_load, \m
	{load} \op r8d, r15d
SNIP \op\()_r64_r64, \m
	\op	rax, rcx
SNIP \op\()_r64_r64_load, \m
	{load} \op r13, rdx
SNIP \op\()_m8_r8, \m
	\op	[rbx + 5], cl
SNIP \op\()_r8_m8, \m
	\op	ah, [rsi]
SNIP \op\()_m16_r16, \m
	\op	[rdi - 0x20], dx
SNIP \op\()_r16_m16, \m
	\op	r9w, [rsi + 0x40]
SNIP \op\()_m32_r32, \m
	\op	[rbp + 0x11], r10d
SNIP \op\()_r32_m32, \m
	movzx	edx, dl
	\op	eax, [rbx + rdx * 4 - 0x100]
SNIP \op\()_m64_r64, \m
	\op	[rsi + 0x800], r14
SNIP \op\()_r64_m64, \m
	movzx	r8d, r8b
	\op	r12, [rdi + r8 * 8]
SNIP \op\()_al_imm8, \m
	\op	al, 0x5a
SNIP \op\()_ax_imm16, \m
	\op	ax, 0x8234
SNIP \op\()_eax_imm32, \m
	\op	eax, 0x87654321
SNIP \op\()_rax_imm32, \m
	\op	rax, -0x12345678
SNIP \op\()_r8_imm8, \m
	\op	cl, 0x81
SNIP \op\()_r8h_imm8, \m
	\op	bh, 0x7f
SNIP \op\()_r16_imm16, \m
	\op	dx, 0x8001
SNIP \op\()_r16_imm8, \m
	\op	r9w, -3
SNIP \op\()_r32_imm32, \m
	\op	r9d, 0x7ffffff0
SNIP \op\()_r32_imm8, \m
	\op	r10d, -0x80
SNIP \op\()_r64_imm32, \m
	\op	r11, -0x7fffffff
SNIP \op\()_r64_imm8, \m
	\op	rdx, 0x10
SNIP \op\()_m8_imm8, \m
	\op	byte ptr [rbx + 1], 0xfe
SNIP \op\()_m16_imm8, \m
	\op	word ptr [rsi], 5
SNIP \op\()_m16_imm16, \m
	\op	word ptr [rsi + 1], 0x7ff0
SNIP \op\()_m32_imm32, \m
	\op	dword ptr [rdi + 0x7ff], 0x12345
SNIP \op\()_m64_imm8, \m
	\op	qword ptr [rbp - 8], -1
SNIP \op\()_m64_imm32, \m
	\op	qword ptr [rsp + 8], 0x40000000
SNIP \op\()_r64_rip, \m
	\op	rax, [rip + 2f]
	jmp	1f
2:	.quad	0x8000000000000001
1:
.endm

.macro ALU_LOCK op, m
SNIP \op\()_m8_r8_lock, \m, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op [rsi + 3], cl
SNIP \op\()_m16_imm_lock, \m, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op word ptr [rbx + 1], 0x4001
SNIP \op\()_m32_r32_lock, \m, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op [rbx], eax
SNIP \op\()_m64_imm8_lock, \m, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op qword ptr [rdi], 0x55
.endm

.irp op, add, adc, sub, sbb, cmp
	ALU \op, FL_ALL
.endr
.irp op, and, or, xor
	ALU \op, FL_LOGIC
.endr
.irp op, add, adc, sub, sbb
	ALU_LOCK \op, FL_ALL
.endr
.irp op, and, or, xor
	ALU_LOCK \op, FL_LOGIC
.endr

SNIP adc_sbb_chain		/* 128-bit add and subtract */
	add	rax, r8
	adc	rdx, r9
	sub	rcx, r10
	sbb	r11, r12
	adc	r13d, 0
SNIP alu_82_ud			/* 82 (the 80 alias) is invalid in 64-bit mode */
	.byte	0x82, 0xc0, 0x01

/* test */
SNIP test_r8, FL_LOGIC
	test	al, cl
SNIP test_r8h, FL_LOGIC
	test	ah, dh
SNIP test_r16, FL_LOGIC
	test	ax, r9w
SNIP test_r32, FL_LOGIC
	test	eax, ecx
SNIP test_r64, FL_LOGIC
	test	r8, r15
SNIP test_m8_r8, FL_LOGIC
	test	[rbx], dl
SNIP test_m64_r64, FL_LOGIC
	test	qword ptr [rsi], rax
SNIP test_al_imm8, FL_LOGIC
	test	al, 0x81
SNIP test_ax_imm16, FL_LOGIC
	test	ax, 0x8000
SNIP test_eax_imm32, FL_LOGIC
	test	eax, 0x80000001
SNIP test_rax_imm32, FL_LOGIC
	test	rax, -0x10
SNIP test_r8_imm8, FL_LOGIC
	test	cl, 0x40
SNIP test_r16_imm16, FL_LOGIC
	test	r9w, 0x1234
SNIP test_r32_imm32, FL_LOGIC
	test	r10d, 0x7fffffff
SNIP test_r64_imm32, FL_LOGIC
	test	r11, -2
SNIP test_m8_imm8, FL_LOGIC
	test	byte ptr [rdi], 0x80
SNIP test_m16_imm16, FL_LOGIC
	test	word ptr [rbx + 1], 0x0ff0
SNIP test_m32_imm32, FL_LOGIC
	test	dword ptr [rsi], 0x00010001
SNIP test_m64_imm32, FL_LOGIC
	test	qword ptr [rbp], -0x80000000

/* inc dec neg not */
.irp op, inc, dec, neg, not
SNIP \op\()_r8
	\op	al
SNIP \op\()_r8h
	\op	ch
SNIP \op\()_r8_rex
	\op	dil
SNIP \op\()_r16
	\op	r9w
SNIP \op\()_r32
	\op	edx
SNIP \op\()_r64
	\op	r12
SNIP \op\()_m8
	\op	byte ptr [rbx]
SNIP \op\()_m16
	\op	word ptr [rsi + 1]
SNIP \op\()_m32
	\op	dword ptr [rdi - 3]
SNIP \op\()_m64
	\op	qword ptr [rbp + 0x10]
SNIP \op\()_m32_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op dword ptr [rbx + 2]
SNIP \op\()_m64_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op qword ptr [rsi]
.endr

/* ===== shifts and rotates ===== */

/* One operation at every size, with every count form. */
.macro SHIFT op, rule, idx
SNIP \op\()_r8_1, FL_ALL, \rule, DIFF_ARG(8, 1)
	\op	al, 1
SNIP \op\()_r8_cl, FL_ALL, \rule, DIFF_ARG(8, DIFF_CL)
	\op	dl, cl
SNIP \op\()_r8h_cl, FL_ALL, \rule, DIFF_ARG(8, DIFF_CL)
	\op	ah, cl
SNIP \op\()_r8_imm0, FL_ALL, \rule, DIFF_ARG(8, 0)
	\op	bl, 0
SNIP \op\()_r8_imm3, FL_ALL, \rule, DIFF_ARG(8, 3)
	\op	r9b, 3
SNIP \op\()_r8_imm7, FL_ALL, \rule, DIFF_ARG(8, 7)
	\op	r9b, 7
SNIP \op\()_r8_imm8, FL_ALL, \rule, DIFF_ARG(8, 8)
	\op	r10b, 8
SNIP \op\()_r8_imm9, FL_ALL, \rule, DIFF_ARG(8, 9)
	\op	r10b, 9
SNIP \op\()_r8_imm31, FL_ALL, \rule, DIFF_ARG(8, 31)
	\op	sil, 31
SNIP \op\()_r16_1, FL_ALL, \rule, DIFF_ARG(16, 1)
	\op	r9w, 1
SNIP \op\()_r16_cl, FL_ALL, \rule, DIFF_ARG(16, DIFF_CL)
	\op	ax, cl
SNIP \op\()_r16_imm5, FL_ALL, \rule, DIFF_ARG(16, 5)
	\op	dx, 5
SNIP \op\()_r16_imm15, FL_ALL, \rule, DIFF_ARG(16, 15)
	\op	dx, 15
SNIP \op\()_r16_imm17, FL_ALL, \rule, DIFF_ARG(16, 17)
	\op	r11w, 17
SNIP \op\()_r32_1, FL_ALL, \rule, DIFF_ARG(32, 1)
	\op	edx, 1
SNIP \op\()_r32_cl, FL_ALL, \rule, DIFF_ARG(32, DIFF_CL)
	\op	r8d, cl
SNIP \op\()_r32_imm1_c1, FL_ALL, \rule, DIFF_ARG(32, 1)
	.byte	0xc1, 0xc0 | (\idx << 3), 1
SNIP \op\()_r32_imm0, FL_ALL, \rule, DIFF_ARG(32, 0)
	\op	eax, 0
SNIP \op\()_r32_imm4, FL_ALL, \rule, DIFF_ARG(32, 4)
	\op	eax, 4
SNIP \op\()_r32_imm31, FL_ALL, \rule, DIFF_ARG(32, 31)
	\op	r12d, 31
SNIP \op\()_r32_imm33, FL_ALL, \rule, DIFF_ARG(32, 33)
	\op	r12d, 33
SNIP \op\()_r64_1, FL_ALL, \rule, DIFF_ARG(64, 1)
	\op	r10, 1
SNIP \op\()_r64_cl, FL_ALL, \rule, DIFF_ARG(64, DIFF_CL)
	\op	rax, cl
SNIP \op\()_r64_imm6, FL_ALL, \rule, DIFF_ARG(64, 6)
	\op	rdx, 6
SNIP \op\()_r64_imm32, FL_ALL, \rule, DIFF_ARG(64, 32)
	\op	rdx, 32
SNIP \op\()_r64_imm63, FL_ALL, \rule, DIFF_ARG(64, 63)
	\op	r13, 63
SNIP \op\()_r64_imm65, FL_ALL, \rule, DIFF_ARG(64, 65)
	\op	r13, 65
SNIP \op\()_m8_cl, FL_ALL, \rule, DIFF_ARG(8, DIFF_CL)
	\op	byte ptr [rbx + 1], cl
SNIP \op\()_m16_1, FL_ALL, \rule, DIFF_ARG(16, 1)
	\op	word ptr [rsi], 1
SNIP \op\()_m32_imm7, FL_ALL, \rule, DIFF_ARG(32, 7)
	\op	dword ptr [rdi], 7
SNIP \op\()_m64_cl, FL_ALL, \rule, DIFF_ARG(64, DIFF_CL)
	\op	qword ptr [rbp - 8], cl
.endm

	SHIFT	rol, RULE_ROT, 0
	SHIFT	ror, RULE_ROT, 1
	SHIFT	rcl, RULE_RC, 2
	SHIFT	rcr, RULE_RC, 3
	SHIFT	shl, RULE_SHL, 4
	SHIFT	shr, RULE_SHL, 5
	SHIFT	sar, RULE_SAR, 7

/* shld shrd: 16-bit counts over 16 leave the result undefined, so CL is masked first. */
.macro SHD op
SNIP \op\()_r16_cl, FL_ALL, RULE_SHD, DIFF_ARG(16, DIFF_CL)
	and	cl, 15
	\op	ax, r9w, cl
SNIP \op\()_r16_imm1, FL_ALL, RULE_SHD, DIFF_ARG(16, 1)
	\op	dx, cx, 1
SNIP \op\()_r16_imm9, FL_ALL, RULE_SHD, DIFF_ARG(16, 9)
	\op	dx, cx, 9
SNIP \op\()_r32_cl, FL_ALL, RULE_SHD, DIFF_ARG(32, DIFF_CL)
	\op	eax, edx, cl
SNIP \op\()_r32_imm0, FL_ALL, RULE_SHD, DIFF_ARG(32, 0)
	\op	r8d, r9d, 0
SNIP \op\()_r32_imm1, FL_ALL, RULE_SHD, DIFF_ARG(32, 1)
	\op	r8d, r9d, 1
SNIP \op\()_r32_imm31, FL_ALL, RULE_SHD, DIFF_ARG(32, 31)
	\op	r10d, r11d, 31
SNIP \op\()_r64_cl, FL_ALL, RULE_SHD, DIFF_ARG(64, DIFF_CL)
	\op	rax, r12, cl
SNIP \op\()_r64_imm5, FL_ALL, RULE_SHD, DIFF_ARG(64, 5)
	\op	r13, r14, 5
SNIP \op\()_r64_imm63, FL_ALL, RULE_SHD, DIFF_ARG(64, 63)
	\op	r13, r14, 63
SNIP \op\()_r64_imm70, FL_ALL, RULE_SHD, DIFF_ARG(64, 70)
	\op	rdx, r15, 70
SNIP \op\()_m16_imm3, FL_ALL, RULE_SHD, DIFF_ARG(16, 3)
	\op	word ptr [rbx], cx, 3
SNIP \op\()_m32_cl, FL_ALL, RULE_SHD, DIFF_ARG(32, DIFF_CL)
	\op	dword ptr [rsi + 1], edx, cl
SNIP \op\()_m64_imm17, FL_ALL, RULE_SHD, DIFF_ARG(64, 17)
	\op	qword ptr [rdi], rax, 17
.endm

	SHD	shld
	SHD	shrd

/* ===== bit test, scan and count ===== */

.macro BITTEST op
SNIP \op\()_r16_r16, FL_BT
	\op	ax, cx
SNIP \op\()_r32_r32, FL_BT
	\op	r8d, ecx
SNIP \op\()_r64_r64, FL_BT
	\op	r9, rdx
SNIP \op\()_r16_imm, FL_BT
	\op	cx, 15
SNIP \op\()_r32_imm, FL_BT
	\op	eax, 33			/* taken mod 32 */
SNIP \op\()_r64_imm, FL_BT
	\op	r10, 63
SNIP \op\()_m16_imm, FL_BT
	\op	word ptr [rdi], 0x1f
SNIP \op\()_m32_imm, FL_BT
	\op	dword ptr [rbx], 13
SNIP \op\()_m64_imm, FL_BT
	\op	qword ptr [rsi], 70
SNIP \op\()_m16_r16, FL_BT	/* the offset reaches +-4 KiB around the operand */
	\op	word ptr [rdi], cx
SNIP \op\()_m32_r32, FL_BT
	movsx	ecx, cx
	\op	dword ptr [rsi], ecx
SNIP \op\()_m64_r64, FL_BT
	movsx	rcx, cx
	\op	qword ptr [rbx], rcx
SNIP \op\()_m8_small_offset, FL_BT
	movzx	edx, dl
	\op	dword ptr [rbp], edx
.endm

.macro BITTEST_LOCK op
SNIP \op\()_m32_imm_lock, FL_BT, RULE_NONE, 0, 0, IN_ALIGNED
	lock \op dword ptr [rbx], 5
SNIP \op\()_m64_r64_lock, FL_BT, RULE_NONE, 0, 0, IN_ALIGNED
	movsx	rcx, cx
	lock \op qword ptr [rsi], rcx
.endm

	BITTEST	bt
	BITTEST	bts
	BITTEST	btr
	BITTEST	btc
	BITTEST_LOCK	bts
	BITTEST_LOCK	btr
	BITTEST_LOCK	btc

.irp op, bsf, bsr
SNIP \op\()_r16, FL_BSF
	bts	cx, 9
	\op	ax, cx
SNIP \op\()_r32, FL_BSF
	bts	edx, 20
	\op	r8d, edx
SNIP \op\()_r64, FL_BSF
	bts	rcx, 37
	\op	rax, rcx
SNIP \op\()_r64_bit63, FL_BSF
	movabs	rcx, 0x8000000000000000
	\op	r9, rcx
SNIP \op\()_m32, FL_BSF
	bts	dword ptr [rbx], 30
	\op	eax, dword ptr [rbx]
SNIP \op\()_m64, FL_BSF
	bts	qword ptr [rsi], 1
	\op	r10, qword ptr [rsi]
SNIP \op\()_zero, FL_BSF		/* ZF only: the destination is undefined on Intel */
	xor	ecx, ecx
	\op	rax, rcx
	mov	eax, 0
.endr

.macro COUNT op, m, f
SNIP \op\()_r16, \m, RULE_NONE, 0, \f
	\op	ax, cx
SNIP \op\()_r32, \m, RULE_NONE, 0, \f
	\op	r8d, edx
SNIP \op\()_r64, \m, RULE_NONE, 0, \f
	\op	rax, r11
SNIP \op\()_m16, \m, RULE_NONE, 0, \f
	\op	dx, word ptr [rbx]
SNIP \op\()_m32, \m, RULE_NONE, 0, \f
	\op	ecx, dword ptr [rsi]
SNIP \op\()_m64, \m, RULE_NONE, 0, \f
	\op	r9, qword ptr [rdi]
.endm

	COUNT	popcnt, FL_ALL, FEAT_POPCNT
	COUNT	tzcnt, FL_TZCNT, FEAT_BMI1
	COUNT	lzcnt, FL_TZCNT, FEAT_LZCNT

/* ===== multiply ===== */

.irp op, mul, imul
SNIP \op\()_r8, FL_MUL
	\op	cl
SNIP \op\()_r8h, FL_MUL
	\op	ch
SNIP \op\()_r16, FL_MUL
	\op	r9w
SNIP \op\()_r32, FL_MUL
	\op	ecx
SNIP \op\()_r64, FL_MUL
	\op	r13
SNIP \op\()_m8, FL_MUL
	\op	byte ptr [rbx]
SNIP \op\()_m16, FL_MUL
	\op	word ptr [rsi + 1]
SNIP \op\()_m32, FL_MUL
	\op	dword ptr [rdi]
SNIP \op\()_m64, FL_MUL
	\op	qword ptr [rbp - 8]
.endr
SNIP imul_r16_r16, FL_MUL
	imul	r10w, r11w
SNIP imul_r32_r32, FL_MUL
	imul	eax, ecx
SNIP imul_r64_r64, FL_MUL
	imul	rdx, r8
SNIP imul_r16_m16, FL_MUL
	imul	ax, word ptr [rbx]
SNIP imul_r32_m32, FL_MUL
	imul	ecx, dword ptr [rdi]
SNIP imul_r64_m64, FL_MUL
	imul	r15, qword ptr [rbx + 8]
SNIP imul_r16_imm8, FL_MUL
	imul	ax, cx, -5
SNIP imul_r32_imm8, FL_MUL
	imul	eax, dword ptr [rbx], 0x7f
SNIP imul_r64_imm8, FL_MUL
	imul	r9, r10, -128
SNIP imul_r16_imm16, FL_MUL
	imul	r8w, r9w, 0x8000
SNIP imul_r32_imm32, FL_MUL
	imul	ecx, edx, 0x12345678
SNIP imul_r64_imm32, FL_MUL
	imul	rax, qword ptr [rsi], -0x7fffffff
SNIP imul_r64_imm32_same, FL_MUL
	imul	r12, r12, 0x10001

/* ===== divide: random operands (mostly #DE) and operands that divide ===== */

.irp op, div, idiv
SNIP \op\()_r8, FL_DIV
	\op	cl
SNIP \op\()_r16, FL_DIV
	\op	r9w
SNIP \op\()_r32, FL_DIV
	\op	ecx
SNIP \op\()_r64, FL_DIV
	\op	r13
SNIP \op\()_m32, FL_DIV
	\op	dword ptr [rbx]
SNIP \op\()_m64, FL_DIV
	\op	qword ptr [rsi]
SNIP \op\()_zero, FL_DIV
	xor	ecx, ecx
	\op	rcx
.endr
/* Unsigned: the high half of the dividend below the divisor, which is not zero. */
SNIP div_r8_ok, FL_DIV
	or	cl, 1
	mov	dl, cl
	shr	dl, 1
	and	ah, dl
	div	cl
SNIP div_r8h_ok, FL_DIV
	or	bh, 1
	mov	dl, bh
	shr	dl, 1
	and	ah, dl
	div	bh
SNIP div_r16_ok, FL_DIV
	or	r9w, 1
	mov	r10w, r9w
	shr	r10w, 1
	and	dx, r10w
	div	r9w
SNIP div_r32_ok, FL_DIV
	or	ecx, 1
	mov	r10d, ecx
	shr	r10d, 1
	and	edx, r10d
	div	ecx
SNIP div_r64_ok, FL_DIV
	or	r13, 1
	mov	r10, r13
	shr	r10, 1
	and	rdx, r10
	div	r13
SNIP div_m16_ok, FL_DIV
	or	byte ptr [rdi], 1
	mov	r10w, [rdi]
	shr	r10w, 1
	and	dx, r10w
	div	word ptr [rdi]
SNIP div_m64_ok, FL_DIV
	or	byte ptr [rsi], 1
	mov	r10, [rsi]
	shr	r10, 1
	and	rdx, r10
	div	qword ptr [rsi]
/* Signed: a sign-extended dividend; only MIN / -1 still overflows. */
SNIP idiv_r8_ok, FL_DIV
	or	cl, 1
	cbw
	idiv	cl
SNIP idiv_r16_ok, FL_DIV
	or	r9w, 1
	cwd
	idiv	r9w
SNIP idiv_r32_ok, FL_DIV
	or	ecx, 1
	cdq
	idiv	ecx
SNIP idiv_r64_ok, FL_DIV
	or	r13, 1
	cqo
	idiv	r13
SNIP idiv_m32_ok, FL_DIV
	or	byte ptr [rbx], 1
	cdq
	idiv	dword ptr [rbx]
SNIP idiv_r64_small, FL_DIV	/* small operands of both signs */
	movsx	rax, ax
	movsx	r13, r13b
	or	r13, 1
	cqo
	idiv	r13
SNIP idiv_min_minus1, FL_DIV
	movabs	rax, 0x8000000000000000
	cqo
	mov	rcx, -1
	idiv	rcx

/* ===== exchange-and-add, compare-and-exchange ===== */

SNIP xadd_r8
	xadd	al, cl
SNIP xadd_r16
	xadd	cx, dx
SNIP xadd_r32
	xadd	r8d, r9d
SNIP xadd_r64
	xadd	rax, rdx
SNIP xadd_m8
	xadd	[rbx], cl
SNIP xadd_m16
	xadd	[rsi], ax
SNIP xadd_m32_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	lock xadd [rdi], r11d
SNIP xadd_m64_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	lock xadd [rbp], rcx

SNIP cmpxchg_r8
	cmpxchg	cl, dl
SNIP cmpxchg_r16
	cmpxchg	r9w, r10w
SNIP cmpxchg_r32
	cmpxchg	ecx, edx
SNIP cmpxchg_r64
	cmpxchg	r8, r9
SNIP cmpxchg_m8
	cmpxchg	[rbx], cl
SNIP cmpxchg_m32_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	lock cmpxchg [rsi], edx
SNIP cmpxchg_m64_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	lock cmpxchg [rdi], r9
SNIP cmpxchg_r8_equal
	mov	al, cl
	cmpxchg	cl, dl
SNIP cmpxchg_r32_equal		/* the destination is written, rax keeps bits 63:32 */
	mov	rax, rcx
	cmpxchg	ecx, edx
SNIP cmpxchg_r64_equal
	mov	rax, r8
	cmpxchg	r8, r9
SNIP cmpxchg_m8_equal
	mov	al, [rdi]
	cmpxchg	[rdi], dl
SNIP cmpxchg_m16_equal
	mov	ax, [rbp]
	cmpxchg	[rbp], cx
SNIP cmpxchg_m32_equal
	mov	eax, [rbx]
	cmpxchg	[rbx], r8d
SNIP cmpxchg_m64_equal_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	mov	rax, [rsi]
	lock cmpxchg [rsi], r10
SNIP cmpxchg8b
	cmpxchg8b qword ptr [rsi]
SNIP cmpxchg8b_equal_lock, FL_ALL, RULE_NONE, 0, 0, IN_ALIGNED
	mov	eax, [rbx]
	mov	edx, [rbx + 4]
	lock cmpxchg8b qword ptr [rbx]
SNIP cmpxchg16b, FL_ALL, RULE_NONE, 0, FEAT_CX16, IN_ALIGNED /* needs 16-byte alignment */
	lock cmpxchg16b xmmword ptr [rsi]
SNIP cmpxchg16b_equal, FL_ALL, RULE_NONE, 0, FEAT_CX16, IN_ALIGNED
	mov	rax, [rdi]
	mov	rdx, [rdi + 8]
	lock cmpxchg16b xmmword ptr [rdi]

/* ===== BMI, ADX, CRC32 (when both CPUs have them) ===== */

SNIP andn_r32, FL_BMI, RULE_NONE, 0, FEAT_BMI1
	andn	eax, ecx, edx
SNIP andn_r64_m64, FL_BMI, RULE_NONE, 0, FEAT_BMI1
	andn	r8, r9, [rbx]
SNIP bextr_r64, FL_BEXTR, RULE_NONE, 0, FEAT_BMI1
	bextr	rax, rcx, rdx
SNIP blsi_r32, FL_BMI, RULE_NONE, 0, FEAT_BMI1
	blsi	eax, ecx
SNIP blsr_r64, FL_BMI, RULE_NONE, 0, FEAT_BMI1
	blsr	rax, r9
SNIP blsmsk_m64, FL_BMI, RULE_NONE, 0, FEAT_BMI1
	blsmsk	rdx, [rsi]
SNIP bzhi_r64, FL_BMI, RULE_NONE, 0, FEAT_BMI2
	bzhi	rax, rcx, rdx
SNIP bmi2_noflags, FL_ALL, RULE_NONE, 0, FEAT_BMI2
	shlx	eax, ecx, edx
	sarx	r8, r9, r10
	shrx	r11, [rbx], rcx
	rorx	r12d, r13d, 7
	mulx	r14, r15, rcx
	pdep	rsi, rax, rcx
	pext	rdi, rdx, r8
SNIP adcx_adox, FL_ALL, RULE_NONE, 0, FEAT_ADX
	adcx	eax, ecx
	adox	rdx, r8
	adcx	r9, [rbx]
	adox	r10d, [rsi]
SNIP crc32_forms, FL_ALL, RULE_NONE, 0, FEAT_SSE42
	crc32	eax, cl
	crc32	eax, cx
	crc32	eax, ecx
	crc32	rdx, r8
	crc32	r9d, byte ptr [rbx]
	crc32	r10, qword ptr [rsi]

	CORPUS_END
