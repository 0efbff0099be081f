/*
 * snippets_flow.S - corpus, part 2: conditions (jcc, setcc, cmovcc, loop), calls and the
 * stack, flag instructions, string instructions, no-ops, and instructions that must
 * fault: invalid encodings, privileged instructions at CPL 3, #DE, #GP, #SS and #PF
 * (page-crossing accesses and partly done rep strings included).
 *
 * Conventions (inputs, masks, how a snippet ends): corpus.inc.
 */
#include "corpus.inc"

/* ===== the 16 conditions ===== */

.irp cc, o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
SNIP j\cc\()_short
	j\cc	1f
	mov	eax, 1
1:
SNIP j\cc\()_near
	{disp32} j\cc 1f
	mov	ecx, 2
1:
SNIP j\cc\()_backward		/* taken: loop back once, through rdx */
	mov	edx, 0
	pushfq				/* keep the random flags for the jcc */
2:	popfq
	pushfq
	inc	edx
	cmp	edx, 2
	je	1f
	popfq
	pushfq
	j\cc	2b
1:	popfq
SNIP set\cc\()_r8
	set\cc	al
SNIP set\cc\()_r8_rex
	set\cc	r10b
	set\cc	sil
SNIP set\cc\()_r8h
	set\cc	ch
SNIP set\cc\()_m8
	set\cc	byte ptr [rbx]
SNIP cmov\cc\()_r16
	cmov\cc	dx, r10w
SNIP cmov\cc\()_r32		/* zero-extends whether or not it moves */
	cmov\cc	eax, ecx
SNIP cmov\cc\()_r64
	cmov\cc	r8, r9
SNIP cmov\cc\()_m64
	cmov\cc	r9, qword ptr [rbx]
SNIP cmov\cc\()_m32
	cmov\cc	r11d, dword ptr [rsi + 1]
.endr
SNIP cmov_r32_same		/* cmov eax, eax clears bits 63:32 even when false */
	cmovo	eax, eax
	cmovno	ecx, ecx

SNIP loop
	movzx	ecx, cl
	and	ecx, 15
	inc	ecx
	xor	eax, eax
2:	add	eax, ecx
	loop	2b
SNIP loop_zero_count		/* rcx 0: 2^64 iterations, so stop after one via rdx */
	xor	ecx, ecx
	mov	edx, 3
2:	dec	edx
	jz	1f
	loop	2b
1:
SNIP loope
	movzx	ecx, cl
	and	ecx, 15
	inc	ecx
2:	mov	eax, [rbx + rcx * 4]
	test	eax, 3
	loope	2b
SNIP loopne
	movzx	ecx, cl
	and	ecx, 15
	inc	ecx
2:	movzx	eax, byte ptr [rsi + rcx]
	cmp	al, 0x40
	loopne	2b
SNIP loop_addr32		/* 67 e2: counts in ecx */
	mov	rcx, r8
	and	ecx, 7
	inc	ecx
	bts	rcx, 40
	xor	eax, eax
2:	inc	eax
	.byte	0x67, 0xe2, 0xfb	/* loop 2b, 32-bit ecx */
SNIP jrcxz
	jrcxz	1f
	mov	eax, 1
1:
SNIP jrcxz_taken
	xor	ecx, ecx
	jrcxz	1f
	mov	eax, 1
1:
SNIP jecxz
	mov	rcx, r8
	jecxz	1f
	mov	eax, 1
1:
SNIP jecxz_taken_high		/* ecx 0 but rcx not: taken */
	movabs	rcx, 0x500000000
	jecxz	1f
	mov	eax, 1
1:

/* ===== jumps, calls, returns ===== */

SNIP jmp_short
	jmp	1f
	ud2
1:
SNIP jmp_near
	{disp32} jmp 1f
	ud2
1:
SNIP jmp_r64
	lea	rax, [rip + 1f]
	jmp	rax
	ud2
1:
SNIP jmp_m64
	lea	rax, [rip + 1f]
	mov	[rbx], rax
	jmp	qword ptr [rbx]
	ud2
1:
SNIP call_ret
	call	2f
	jmp	1f
2:	mov	eax, 5
	ret
1:
SNIP call_r64
	lea	rcx, [rip + 2f]
	call	rcx
	jmp	1f
2:	pop	rdx			/* the return address */
	push	rdx
	ret
1:
SNIP call_m64
	lea	rcx, [rip + 2f]
	mov	[rsi], rcx
	call	qword ptr [rsi]
	jmp	1f
2:	ret
1:
SNIP call_ret_imm16
	push	rax
	push	rcx
	call	2f
	jmp	1f
2:	ret	16
1:
SNIP call_nested
	call	2f
	jmp	1f
2:	call	3f
	ret
3:	call	4f
	ret
4:	mov	rax, [rsp + 8]
	ret
1:
SNIP push_ret			/* push an address and return to it */
	lea	rax, [rip + 1f]
	push	rax
	ret
	ud2
1:
SNIP call_rel32_zero		/* call the next instruction: a way to read RIP */
	call	2f
2:	pop	rax

/* ===== the stack ===== */

SNIP push_pop_r64
	push	rcx
	push	r12
	pop	rdx
	pop	r13
SNIP push_pop_r16
	push	cx
	pop	r9w
	push	r10w
	pop	ax
SNIP push_imm8
	push	0x7f
	push	-0x80
SNIP push_imm32
	push	-0x12345678
	push	0x7fffffff
SNIP push_imm16
	pushw	0x1234
	pushw	-2
SNIP push_pop_m64
	push	qword ptr [rbx]
	pop	qword ptr [rsi + 8]
SNIP push_pop_m16
	push	word ptr [rbx + 1]
	pop	word ptr [rdi]
SNIP push_rsp			/* pushes the value before the push */
	push	rsp
	pop	rax
	push	rsp
SNIP pop_rsp			/* rsp gets the popped value */
	mov	[rsp], rbx
	pop	rsp
SNIP pop_m_rsp_relative		/* the address uses rsp after the pop */
	push	rcx
	push	rdx
	pop	qword ptr [rsp]
	pop	qword ptr [rsp + 8]
SNIP push_m_rsp_relative
	push	qword ptr [rsp]
	push	qword ptr [rsp + 16]
SNIP enter_leave
	enter	0x20, 0
	mov	[rbp - 8], rax
	leave
SNIP enter_nested1
	enter	0x10, 1
SNIP enter_nested3
	enter	8, 3
SNIP enter_nested31
	enter	0x1234, 31
SNIP leave_only
	leave
SNIP leave16
	.byte	0x66, 0xc9
SNIP pushf_pop
	pushfq
	pop	rax
SNIP pushf16
	pushfw
	pop	cx
SNIP popf_arith			/* only the flags the harness compares, IF kept on */
	and	rcx, FL_ALL
	or	rcx, 0x202
	push	rcx
	popfq
SNIP popf_cpl3			/* at CPL 3 IF and IOPL stay, RF clears, AC and TF avoided */
	mov	rax, rdx
	and	rax, ~0x40100
	push	rax
	popfq
	pushfq
	pop	rcx
	mov	r8, rcx
	and	rcx, ~0x204000
	push	rcx
	popfq
SNIP popf16
	and	cx, FL_ALL
	or	cx, 0x202
	push	cx
	popfw
SNIP lahf, FL_ALL, RULE_NONE, 0, FEAT_LAHF
	lahf
SNIP sahf, FL_ALL, RULE_NONE, 0, FEAT_LAHF
	sahf
SNIP sahf_lahf, FL_ALL, RULE_NONE, 0, FEAT_LAHF
	mov	ah, dl
	sahf
	mov	al, 0
	lahf
SNIP clc
	clc
SNIP stc
	stc
SNIP cmc
	cmc
SNIP cld
	cld
SNIP std
	std

/* ===== string instructions ===== */

.irp sz, b, w, d, q
SNIP movs\sz
	movs\sz
SNIP rep_movs\sz
	movzx	ecx, cl
	rep movs\sz
SNIP stos\sz
	stos\sz
SNIP rep_stos\sz
	movzx	ecx, cl
	rep stos\sz
SNIP lods\sz
	lods\sz
SNIP rep_lods\sz
	movzx	ecx, cl
	rep lods\sz
SNIP cmps\sz
	cmps\sz
SNIP repe_cmps\sz
	movzx	ecx, cl
	repe cmps\sz
SNIP repne_cmps\sz
	movzx	ecx, cl
	repne cmps\sz
SNIP repe_cmps\sz\()_equal	/* equal strings: runs to the end of the count */
	movzx	ecx, cl
	mov	rsi, rdi
	repe cmps\sz
SNIP scas\sz
	scas\sz
SNIP repe_scas\sz
	movzx	ecx, cl
	repe scas\sz
SNIP repne_scas\sz
	movzx	ecx, cl
	repne scas\sz
SNIP repne_scas\sz\()_find	/* the value is there */
	movzx	ecx, cl
	mov	rax, [rdi + rcx]
	repne scas\sz
.endr
SNIP rep_movsb_overlap		/* overlapping copy: byte-by-byte semantics */
	movzx	ecx, cl
	lea	rsi, [rdi + 3]
	rep movsb
SNIP rep_movsq_overlap
	movzx	ecx, cl
	lea	rdi, [rsi + 8]
	rep movsq
SNIP rep_movsb_zero
	xor	ecx, ecx
	rep movsb
SNIP rep_stosb_addr32		/* 67: rdi and rcx used as edi and ecx */
	movzx	ecx, cl
	.byte	0xf3, 0x67, 0xaa
SNIP movsb_addr32
	.byte	0x67, 0xa4
SNIP rep_movsd_addr32
	movzx	ecx, cl
	.byte	0xf3, 0x67, 0xa5
SNIP lodsq_seg_override		/* a segment override on the source is allowed */
	.byte	0x2e, 0x48, 0xad	/* cs lodsq */
SNIP rep_prefix_f2_movs		/* f2 on movs acts as rep */
	movzx	ecx, cl
	.byte	0xf2, 0xa4

/* ===== no-ops and hints ===== */

SNIP nop_forms
	nop
	.byte	0x66, 0x90
	.byte	0x0f, 0x1f, 0x00
	.byte	0x0f, 0x1f, 0x40, 0x00
	.byte	0x0f, 0x1f, 0x44, 0x00, 0x00
	.byte	0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00
	.byte	0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00
	.byte	0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
	.byte	0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
	.byte	0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
	.byte	0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
	.byte	0x0f, 0x1f, 0xc0	/* register form */
SNIP nop_no_memory_access	/* 0f 1f with a wild address does not touch memory */
	nop	dword ptr [rax + rcx * 8 + 0x12345678]
SNIP endbr64
	endbr64
SNIP endbr32
	endbr32
SNIP pause
	pause
SNIP prefetch_wild		/* prefetches never fault */
	prefetcht0 [rax]
	prefetcht1 [rcx]
	prefetcht2 [rdx + 0x100]
	prefetchnta [r8]
SNIP prefetchw_wild, FL_ALL, RULE_NONE, 0, FEAT_PREFETCHW
	prefetchw [r9]
SNIP fences			/* SSE2, so every x86-64 CPU has them */
	lfence
	mfence
	sfence
SNIP redundant_prefixes		/* repeated and ignored prefixes */
	.byte	0x66, 0x66, 0x89, 0xc8	/* mov ax, cx */
	.byte	0x2e, 0x3e, 0x8b, 0x03	/* cs ds mov eax, [rbx] */
	.byte	0x48, 0x66, 0x89, 0xd0	/* rex.w then 66: rex is ignored, mov ax, dx */
	.byte	0x40, 0x88, 0xe0	/* rex: mov al, spl */
	.byte	0x88, 0xe0		/* no rex: mov al, ah */
SNIP rex_w_overrides_66
	.byte	0x66, 0x48, 0x89, 0xc8	/* mov rax, rcx */
	.byte	0x66, 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8 /* movabs rax */

SNIP insn_15_bytes		/* the longest legal instructions */
	.byte	0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66
	.byte	0x05, 0x34, 0x12	/* add ax, 0x1234 */
	.byte	0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e
	.byte	0x48, 0x8b, 0x43, 0x08	/* mov rax, [rbx + 8] */

/* ===== segments and far transfers at CPL 3 ===== */

SNIP push_fs_gs			/* AMD zero-extends, Intel writes 16 bits: pre-zero */
	mov	qword ptr [rsp - 8], 0
	push	fs
	pop	rax
	mov	qword ptr [rsp - 8], 0
	push	gs
	pop	rcx
SNIP push_fs_gs_16
	pushw	fs
	pop	dx
SNIP mov_ds_es_from_memory
	mov	word ptr [rbx], 0x2b
	mov	ds, word ptr [rbx]
	mov	es, word ptr [rbx]
	mov	eax, ds
	mov	ecx, es
	mov	r8, [rsi]
	mov	edx, 0
	mov	ds, edx
	mov	es, edx
SNIP mov_ds_code_segment	/* a readable code segment may be loaded into DS */
	mov	ecx, 0x33
	mov	ds, ecx
	mov	eax, ds
	mov	rdx, [rbx]
	mov	ecx, 0
	mov	ds, ecx
SNIP lss_r32
	mov	[rbx], esi
	mov	word ptr [rbx + 4], 0x2b
	lss	esp, [rbx]
	mov	eax, ss
SNIP retfq_same_level
	push	0x33
	lea	rax, [rip + 1f]
	push	rax
	.byte	0x48, 0xcb		/* retfq */
1:
SNIP retf32_same_level		/* pops a 32-bit offset and a 32-bit CS slot */
	lea	rax, [rip + 1f]
	sub	rsp, 8
	mov	[rsp], eax
	mov	dword ptr [rsp + 4], 0x33
	.byte	0xcb			/* retf */
1:
SNIP retfq_imm
	push	0x33
	lea	rax, [rip + 1f]
	push	rax
	.byte	0x48, 0xca, 0x10, 0x00	/* retfq 16 */
1:
SNIP iretq_same_level
	mov	eax, ss
	push	rax
	lea	rax, [rsp + 8]
	push	rax
	pushfq
	push	0x33
	lea	rax, [rip + 1f]
	push	rax
	iretq
1:
SNIP iretq_new_flags		/* iret loads the arithmetic flags and DF from the frame */
	and	rcx, FL_ALL
	or	rcx, 0x202
	mov	eax, ss
	push	rax
	lea	rax, [rsp + 8]
	push	rax
	push	rcx
	push	0x33
	lea	rax, [rip + 1f]
	push	rax
	iretq
1:
SNIP jmp_far_m16_32
	lea	rax, [rip + 1f]
	mov	[rbx], eax
	mov	word ptr [rbx + 4], 0x33
	jmp	fword ptr [rbx]
	ud2
1:
SNIP call_far_m16_32		/* the CS slot is pre-zeroed: Intel writes 16 bits of it */
	lea	rax, [rip + 2f]
	mov	[rbx], eax
	mov	word ptr [rbx + 4], 0x33
	mov	qword ptr [rsp - 8], 0
	call	fword ptr [rbx]
	jmp	1f
2:	mov	rcx, [rsp]
	.byte	0xcb			/* retf */
1:
SNIP rdfsbase_rdgsbase, FL_ALL, RULE_NONE, 0, FEAT_FSGSBASE
	rdfsbase rax
	rdgsbase rcx
	rdfsbase edx
	rdgsbase r8d
SNIP wrgsbase, FL_ALL, RULE_NONE, 0, FEAT_FSGSBASE /* a wild value: #GP unless canonical */
	rdgsbase r8
	wrgsbase rax
	rdgsbase rcx
	wrgsbase r8

/* ===== branch prefixes compilers and linkers emit ===== */

SNIP rep_ret			/* f3 c3: the old AMD branch-predictor idiom */
	call	2f
	jmp	1f
2:	.byte	0xf3, 0xc3
1:
SNIP bnd_call_ret		/* f2: MPX bnd prefix, ignored */
	.byte	0xf2, 0xe8, 0x02, 0x00, 0x00, 0x00 /* bnd call +2 */
	jmp	1f
	.byte	0xf2, 0xc3		/* bnd ret */
1:
SNIP bnd_jmp
	.byte	0xf2, 0xeb, 0x02	/* bnd jmp +2 */
	ud2
SNIP notrack_jmp_reg		/* 3e: CET notrack */
	lea	rax, [rip + 1f]
	.byte	0x3e, 0xff, 0xe0	/* notrack jmp rax */
	ud2
1:
SNIP jcc_hints			/* 2e / 3e: branch not taken / taken hints */
	.byte	0x2e, 0x74, 0x02	/* jz +2 */
	mov	al, 1
	.byte	0x3e, 0x75, 0x02	/* jnz +2 */
	mov	cl, 1

/* ===== faults: invalid encodings ===== */

SNIP insn_16_bytes		/* one prefix too many: #GP(0) */
	.byte	0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66
	.byte	0x05, 0x34, 0x12
SNIP insn_16_bytes_rex
	.byte	0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e
	.byte	0x48, 0x8b, 0x43, 0x08
SNIP lock_bt			/* bt only reads: lock is invalid */
	.byte	0xf0, 0x0f, 0xa3, 0x03
SNIP lock_xchg_reg
	.byte	0xf0, 0x87, 0xc1
SNIP lock_cmpxchg_reg
	.byte	0xf0, 0x0f, 0xb1, 0xc1

SNIP ud2
	ud2
SNIP ud1
	.byte	0x0f, 0xb9, 0xc0
SNIP ud0
	.byte	0x0f, 0xff, 0xc0
SNIP lock_nop
	.byte	0xf0, 0x90
SNIP lock_reg_form		/* lock add eax, eax */
	.byte	0xf0, 0x01, 0xc0
SNIP lock_mov
	.byte	0xf0, 0x89, 0x03
SNIP lock_cmp_mem
	.byte	0xf0, 0x39, 0x03
SNIP invalid_64_push_es
	.byte	0x06
SNIP invalid_64_daa
	.byte	0x27
SNIP invalid_64_salc
	.byte	0xd6
SNIP invalid_64_into
	.byte	0xce
SNIP invalid_64_pusha
	.byte	0x60
SNIP invalid_64_aam
	.byte	0xd4, 0x0a
SNIP lea_register_operand
	.byte	0x8d, 0xc0		/* lea eax, eax: a register operand */
SNIP invalid_64_jmp_far_imm
	.byte	0xea, 0, 0, 0, 0, 0x33, 0
SNIP invalid_64_call_far_imm
	.byte	0x9a, 0, 0, 0, 0, 0x33, 0
SNIP invalid_mov_cs
	.byte	0x8e, 0xc8		/* mov cs, eax */

/* ===== faults: privileged at CPL 3 (#GP(0)) ===== */

SNIP priv_hlt
	hlt
SNIP priv_cli
	cli
SNIP priv_sti
	sti
SNIP priv_in
	in	al, 0x80
SNIP priv_out
	out	0x80, al
SNIP priv_in_dx
	mov	edx, 0x3f8
	in	eax, dx
SNIP priv_ins
	mov	edx, 0x60
	insb
SNIP priv_rdmsr
	mov	ecx, 0x10
	rdmsr
SNIP priv_wrmsr
	mov	ecx, 0xc0000080
	wrmsr
SNIP priv_mov_from_cr0
	mov	rax, cr0
SNIP priv_mov_to_cr3
	mov	cr3, rax
SNIP priv_mov_dr7
	mov	rax, dr7
SNIP priv_lgdt
	lgdt	[rbx]
SNIP priv_lidt
	lidt	[rbx]
SNIP priv_ltr
	mov	eax, 0x40
	ltr	ax
SNIP priv_invlpg
	invlpg	[rbx]
SNIP priv_clts
	clts
SNIP priv_wbinvd
	wbinvd
SNIP priv_swapgs
	swapgs
SNIP priv_load_ds_dpl0		/* 0x18 is the kernel data segment: #GP(0x18) */
	mov	ecx, 0x18
	mov	ds, ecx
SNIP priv_load_ds_beyond_gdt	/* #GP(0x80) */
	mov	ecx, 0x83
	mov	ds, ecx
SNIP priv_load_ds_ldt		/* no LDT: #GP(4) */
	mov	ecx, 7
	mov	ds, ecx
SNIP priv_jmp_far_kernel_cs	/* #GP(0x10) */
	mov	dword ptr [rbx], 0
	mov	word ptr [rbx + 4], 0x10
	jmp	fword ptr [rbx]
SNIP priv_retfq_to_cpl0		/* #GP(0x10) */
	push	0x10
	push	0
	.byte	0x48, 0xcb
SNIP priv_load_ss_null
	xor	eax, eax
	mov	ss, eax

/* ===== faults: #DE, #GP, #SS, #PF ===== */

SNIP de_div_zero
	xor	ecx, ecx
	div	ecx
SNIP de_div_overflow
	mov	edx, 1
	mov	ecx, 1
	div	ecx
SNIP gp_noncanonical_load
	movabs	rcx, 0x8000000000000000
	mov	rax, [rcx]
SNIP gp_noncanonical_store
	movabs	rcx, 0x0000800000000000
	mov	[rcx], eax
SNIP gp_noncanonical_jmp	/* faults on the jmp, not on the fetch */
	movabs	rcx, 0xffff700000000000
	jmp	rcx
SNIP gp_noncanonical_call	/* faults on the call: nothing pushed */
	movabs	rcx, 0x0000800000000010
	call	rcx
SNIP gp_noncanonical_ret
	movabs	rcx, 0x8000000000000000
	push	rcx
	ret
SNIP ss_noncanonical_rbp_load	/* rbp-based operands use SS: #SS(0) */
	movabs	rbp, 0x8000000000000000
	mov	eax, [rbp + 8]
SNIP ss_noncanonical_rsp_index
	movabs	rcx, 0x4000000000000000
	mov	eax, [rsp + rcx * 2]
SNIP ss_noncanonical_push
	movabs	rsp, 0x8000000000000008
	push	rax
SNIP pf_null_load
	xor	eax, eax
	mov	rax, [rax]
SNIP pf_null_store
	xor	ecx, ecx
	mov	[rcx + 0x10], al
SNIP pf_store_to_code		/* the code page is read-only */
	mov	byte ptr [rip + 1f], 0x90
1:
SNIP pf_load_from_code_ok	/* but readable */
	mov	rax, [rip + 0]
SNIP pf_fetch_from_data		/* the data area is not executable */
	jmp	rbx
SNIP pf_below_data
	mov	rax, [DIFF_DATA - 8]
SNIP pf_above_data
	mov	eax, [DIFF_DATA + DIFF_DATA_SIZE]
SNIP pf_split_load		/* crosses into the unmapped page after the data */
	mov	rax, [DIFF_DATA + DIFF_DATA_SIZE - 5]
SNIP pf_split_store		/* and writes nothing at all */
	mov	[DIFF_DATA + DIFF_DATA_SIZE - 3], rcx
SNIP pf_split_store_below	/* starts before the data, ends inside */
	mov	[DIFF_DATA - 2], edx
SNIP pf_split_rmw		/* no lock: a split lock may trap first on some hosts */
	add	[DIFF_DATA + DIFF_DATA_SIZE - 1], ax
SNIP pf_rmw_unmapped		/* a read-modify-write faults as a write */
	add	dword ptr [DIFF_DATA - 8], 1
SNIP pf_inc_unmapped
	inc	qword ptr [DIFF_DATA + DIFF_DATA_SIZE + 0x10]
SNIP pf_lock_or_unmapped
	lock or	dword ptr [DIFF_DATA + DIFF_DATA_SIZE], 1
SNIP pf_xchg_unmapped
	xchg	[DIFF_DATA + DIFF_DATA_SIZE + 8], eax
SNIP pf_push_below_data
	mov	esp, DIFF_DATA + 4
	push	rax
SNIP pf_call_below_data
	mov	esp, DIFF_DATA + 4
	call	1f
1:
SNIP pf_pop_above_data
	mov	esp, DIFF_DATA + DIFF_DATA_SIZE - 4
	pop	rax
SNIP pf_ret_above_data
	mov	esp, DIFF_DATA + DIFF_DATA_SIZE
	ret
SNIP pf_rep_stosb_partial	/* stores 4 bytes, faults with rcx and rdi advanced */
	mov	edi, DIFF_DATA + DIFF_DATA_SIZE - 4
	mov	ecx, 16
	cld
	rep stosb
SNIP pf_rep_movsq_partial
	mov	esi, DIFF_DATA + DIFF_DATA_SIZE - 24
	mov	ecx, 9
	cld
	rep movsq
SNIP pf_rep_stosd_backward
	mov	edi, DIFF_DATA + 8
	mov	ecx, 40
	std
	rep stosd
SNIP pf_enter_below_data
	mov	esp, DIFF_DATA + 0x40
	enter	0x100, 0
SNIP pf_cmpxchg_split
	cmpxchg	[DIFF_DATA + DIFF_DATA_SIZE - 6], rcx
SNIP pf_movs_dest
	mov	edi, DIFF_DATA - 8
	movsq

	CORPUS_END
