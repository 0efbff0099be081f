/*
 * exec_sys.c - system instructions: privilege checks and operand handling for the
 * instructions whose effects the system half owns (descriptor tables, CRs, MSRs, I/O,
 * interrupts, far transfers), plus everything emu_exec() has no case for.
 *
 * The split keeps this half free of architectural policy: it decodes operands, checks CPL
 * (and IOPL for I/O and IF) and calls the system half (cpu.h), which validates values and
 * raises its own faults. Whatever is not decoded here is #UD, never a crash.
 */
#include "hv/accel/emu/exec.h"

static unsigned iopl(const struct emu_cpu *c)
{
	return (c->flags & X86_IOPL) >> 12;
}

static void require_iopl(struct emu_cpu *c)
{
	if ((unsigned)c->cpl > iopl(c))
		emu_raise_gp(c, 0);
}

static uint64_t edx_eax(const struct emu_cpu *c)
{
	return (c->r[X86_RDX] << 32) | (uint32_t)c->r[X86_RAX];
}

static void set_edx_eax(struct emu_cpu *c, uint64_t v)
{
	c->r[X86_RAX] = (uint32_t)v;
	c->r[X86_RDX] = v >> 32;
}

/* SGDT/SIDT/LGDT/LIDT: a 16-bit limit, then a 64-bit (64-bit mode) or 32-bit base. */
static void exec_dtable(struct emu_cpu *c, const struct emu_insn *d, struct x86_dtable *t,
                        bool load)
{
	unsigned bsize = c->mode == EMU_MODE_LONG64 ? 8 : 4;

	if (load) {
		require_cpl0(c);
		uint16_t limit = emu_read(c, d->seg, d->ea, 2);
		uint64_t base = emu_read(c, d->seg, ea_add(d, 2), bsize);
		if (bsize == 4 && d->opsize == 2)
			base &= 0xffffff;
		t->base = base;
		t->limit = limit;
	} else {
		emu_write(c, d->seg, d->ea, 2, t->limit);
		emu_write(c, d->seg, ea_add(d, 2), bsize, t->base);
	}
}

/* 0F 00: SLDT STR LLDT LTR (VERR/VERW are #UD here). */
static void exec_grp6(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned r = (d->modrm >> 3) & 7;
	uint16_t sel;

	if (c->mode == EMU_MODE_REAL)
		emu_raise_ud(c);
	switch (r) {
	case 0:
	case 1:
		sel = r == 0 ? c->ldt.selector : c->tr.selector;
		if (d->mod == 3)
			reg_write(c, d, d->rm, d->opsize, sel);
		else
			emu_write(c, d->seg, d->ea, 2, sel);
		return;
	case 2:
	case 3:
		require_cpl0(c);
		sel = rm_read(c, d, 2);
		if (r == 2)
			emu_lldt(c, sel);
		else
			emu_ltr(c, sel);
		return;
	default: emu_raise_ud(c);
	}
}

/* 0F 01: descriptor tables, SMSW/LMSW, INVLPG, and the register-form encodings. */
static void exec_grp7(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned r = (d->modrm >> 3) & 7;
	uint64_t v;

	if (d->mod != 3) {
		switch (r) {
		case 0: exec_dtable(c, d, &c->gdt, false); return;
		case 1: exec_dtable(c, d, &c->idt, false); return;
		case 2: exec_dtable(c, d, &c->gdt, true); return;
		case 3: exec_dtable(c, d, &c->idt, true); return;
		case 4: emu_write(c, d->seg, d->ea, 2, c->cr0); return;
		case 6: break; /* lmsw m16 */
		case 7:
			require_cpl0(c);
			emu_invlpg(c, emu_lin(c, d->seg, d->ea, 1, false));
			return;
		default: emu_raise_ud(c);
		}
	}
	switch (d->modrm) {
	case 0xca: /* clac */
	case 0xcb: /* stac */
		require_cpl0(c);
		c->flags = d->modrm == 0xca ? c->flags & ~X86_AC : c->flags | X86_AC;
		return;
	case 0xd0: /* xgetbv */
		if (!(c->cr4 & X86_CR4_OSXSAVE))
			emu_raise_ud(c);
		if ((uint32_t)c->r[X86_RCX] != 0)
			emu_raise_gp(c, 0);
		set_edx_eax(c, c->xcr0);
		return;
	case 0xf8: /* swapgs */
		if (c->mode != EMU_MODE_LONG64)
			emu_raise_ud(c);
		require_cpl0(c);
		v = c->seg[X86_GS].base;
		c->seg[X86_GS].base = c->kernel_gs_base;
		c->kernel_gs_base = v;
		return;
	case 0xf9:                                         /* rdtscp */
		if ((c->cr4 & (1ULL << 2)) && c->cpl != 0) /* CR4.TSD */
			emu_raise_gp(c, 0);
		set_edx_eax(c, emu_rdtsc(c));
		c->r[X86_RCX] = (uint32_t)c->tsc_aux;
		return;
	}
	if (r == 4) { /* smsw r */
		reg_write(c, d, d->rm, d->opsize, c->cr0);
		return;
	}
	if (r == 6) { /* lmsw: PE can be set but not cleared; only the low four bits */
		require_cpl0(c);
		v = rm_read(c, d, 2) & 0xf;
		emu_write_cr(c, 0, (c->cr0 & ~0xeULL) | v | (c->cr0 & X86_CR0_PE));
		return;
	}
	emu_raise_ud(c);
}

/* 0F 20-23: MOV to/from CR and DR; the operand is always a register of the mode width. */
static void exec_mov_crdr(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned n = d->reg, size = c->mode == EMU_MODE_LONG64 ? 8 : 4;
	bool to = d->op & 2, cr = !(d->op & 1);

	require_cpl0(c);
	if (cr) {
		if (n != 0 && n != 2 && n != 3 && n != 4 && n != 8)
			emu_raise_ud(c);
		if (to)
			emu_write_cr(c, n, reg_read(c, d, d->rm, size));
		else
			reg_write(c, d, d->rm, size, emu_read_cr(c, n));
		return;
	}
	if (n > 7)
		emu_raise_ud(c);
	if (n == 4 || n == 5)
		n += 2; /* DR4/DR5 alias DR6/DR7 without CR4.DE */
	if (to)
		c->dr[n] = reg_read(c, d, d->rm, size);
	else
		reg_write(c, d, d->rm, size, c->dr[n]);
}

/* 0F AE: fences and CLFLUSH (nops here), RD/WR FS/GS BASE. */
static void exec_grp15(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned r = (d->modrm >> 3) & 7;

	if (d->mod != 3) {
		if (r == 7 || (r == 6 && d->p66)) /* clflush, clflushopt, clwb */
			return;
		emu_raise_ud(c);
	}
	if (d->rep == 0xf3 && r < 4) {
		int s = (r & 1) ? X86_GS : X86_FS;
		unsigned size = d->opsize == 8 ? 8 : 4;
		if (c->mode != EMU_MODE_LONG64 || !(c->cr4 & X86_CR4_FSGSBASE))
			emu_raise_ud(c);
		if (r < 2) {
			reg_write(c, d, d->rm, size, c->seg[s].base);
		} else {
			uint64_t v = reg_read(c, d, d->rm, size);
			if (emu_sext(v, 6) != (int64_t)v && size == 8) /* non-canonical */
				emu_raise_gp(c, 0);
			c->seg[s].base = v;
		}
		return;
	}
	if (r >= 5 && !d->rep && !d->p66) /* lfence, mfence, sfence */
		return;
	emu_raise_ud(c);
}

/* IN/OUT with an immediate or DX port. */
static void exec_io(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned op = d->op, size = (op & 1) ? (d->opsize == 2 ? 2 : 4) : 1;
	uint16_t port = (op & 8) ? (uint16_t)c->r[X86_RDX] : (uint8_t)d->imm;

	require_iopl(c);
	if (op & 2)
		emu_out(c, port, size, c->r[X86_RAX] & emu_size_mask(size));
	else
		reg_write(c, d, X86_RAX, size, emu_in(c, port, size));
}

/* LSS/LFS/LGS: load a far pointer m16:16/32/64 into a segment and a register. */
static void exec_load_far(struct emu_cpu *c, const struct emu_insn *d, int sreg)
{
	unsigned size = d->opsize;
	uint64_t off;
	uint16_t sel;

	if (d->mod == 3)
		emu_raise_ud(c);
	off = emu_read(c, d->seg, d->ea, size);
	sel = emu_read(c, d->seg, ea_add(d, size), 2);
	emu_load_sreg(c, sreg, sel);
	reg_write(c, d, d->reg, size, off);
}

void emu_exec_sys(struct emu_cpu *c, const struct emu_insn *d)
{
	bool long64 = c->mode == EMU_MODE_LONG64;
	uint64_t v;

	switch (d->op) {
	case 0x9a: /* call far ptr16:32 (not in 64-bit mode) */
		if (long64)
			emu_raise_ud(c);
		emu_far_call(c, d->imm2, d->imm, d->opsize);
		return;
	case 0xea:
		if (long64)
			emu_raise_ud(c);
		emu_far_jmp(c, d->imm2, d->imm);
		return;
	case 0xca: emu_far_ret(c, d->opsize, d->imm); return;
	case 0xcb: emu_far_ret(c, d->opsize, 0); return;
	case 0xcc: emu_int(c, 3, d->next_rip); return;
	case 0xcd: emu_int(c, d->imm & 0xff, d->next_rip); return;
	case 0xce: /* into */
		if (long64)
			emu_raise_ud(c);
		if (emu_rflags(c) & X86_OF)
			emu_int(c, 4, d->next_rip);
		return;
	case 0xcf: emu_iret(c, d->opsize); return;
	case 0xe4 ... 0xe7:
	case 0xec ... 0xef: exec_io(c, d); return;
	case 0x9b: return; /* fwait: no x87 state to wait for */
	case 0xf4:
		require_cpl0(c);
		emu_hlt(c);
		return;
	case 0xfa: /* cli */
		require_iopl(c);
		c->flags &= ~X86_IF;
		return;
	case 0xfb: /* sti: interrupts stay blocked for one more instruction */
		require_iopl(c);
		if (!(c->flags & X86_IF)) {
			c->flags |= X86_IF;
			c->events.interrupt_shadow = 1;
			atomic_fetch_or(&c->attn, EMU_ATTN_IRQ);
		}
		return;

	case EMU_OP_0F(0x00): exec_grp6(c, d); return;
	case EMU_OP_0F(0x01): exec_grp7(c, d); return;
	case EMU_OP_0F(0x05): emu_syscall(c, d->next_rip); return;
	case EMU_OP_0F(0x06): /* clts */
		require_cpl0(c);
		emu_write_cr(c, 0, c->cr0 & ~X86_CR0_TS);
		return;
	case EMU_OP_0F(0x07):
		require_cpl0(c);
		emu_sysret(c, d->opsize);
		return;
	case EMU_OP_0F(0x08): /* invd, wbinvd: no caches to write back */
	case EMU_OP_0F(0x09): require_cpl0(c); return;
	case EMU_OP_0F(0x20)... EMU_OP_0F(0x23): exec_mov_crdr(c, d); return;
	case EMU_OP_0F(0x30):
		require_cpl0(c);
		emu_wrmsr(c, (uint32_t)c->r[X86_RCX], edx_eax(c));
		return;
	case EMU_OP_0F(0x31):
		if ((c->cr4 & (1ULL << 2)) && c->cpl != 0) /* CR4.TSD */
			emu_raise_gp(c, 0);
		set_edx_eax(c, emu_rdtsc(c));
		return;
	case EMU_OP_0F(0x32):
		require_cpl0(c);
		v = emu_rdmsr(c, (uint32_t)c->r[X86_RCX]);
		set_edx_eax(c, v);
		return;
	case EMU_OP_0F(0xa0): /* push fs/gs: current parts store just the selector */
	case EMU_OP_0F(0xa8): {
		unsigned size = stack_opsize(c, d);
		uint64_t sp = sp_add(c, c->r[X86_RSP], -(int64_t)size);
		emu_write(c, X86_SS, sp, 2,
		          c->seg[d->op == EMU_OP_0F(0xa0) ? X86_FS : X86_GS].selector);
		set_sp(c, sp);
		return;
	}
	case EMU_OP_0F(0xa1): /* pop fs/gs */
	case EMU_OP_0F(0xa9): {
		unsigned size = stack_opsize(c, d);
		v = pop_peek(c, size, 0);
		emu_load_sreg(c, d->op == EMU_OP_0F(0xa1) ? X86_FS : X86_GS, (uint16_t)v);
		pop_commit(c, size);
		return;
	}
	case EMU_OP_0F(0xa2): emu_cpuid(c); return;
	case EMU_OP_0F(0xae): exec_grp15(c, d); return;
	case EMU_OP_0F(0xb2): exec_load_far(c, d, X86_SS); return;
	case EMU_OP_0F(0xb4): exec_load_far(c, d, X86_FS); return;
	case EMU_OP_0F(0xb5): exec_load_far(c, d, X86_GS); return;
	default: emu_raise_ud(c);
	}
}
