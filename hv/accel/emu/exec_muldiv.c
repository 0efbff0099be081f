/*
 * exec_muldiv.c - group 3 (F6/F7: TEST NOT NEG MUL IMUL DIV IDIV) and the two- and
 * three-operand IMUL (0F AF, 69, 6B).
 *
 * Products and dividends are formed in 128 bits, which covers every operand size with
 * one formula: 64x64->128 multiplies, RDX:RAX dividends, and the #DE checks (divisor zero,
 * quotient too wide for the destination) become range tests on the 128-bit quotient.
 */
#include "hv/accel/emu/exec.h"

typedef unsigned __int128 u128;
typedef __int128 s128;

/* Store a double-width result: AX for bytes, else rDX:rAX. */
static void store_wide(struct emu_cpu *c, const struct emu_insn *d, unsigned size, u128 v)
{
	if (size == 1) {
		reg_write(c, d, X86_RAX, 2, (uint64_t)v);
	} else {
		reg_write(c, d, X86_RAX, size, (uint64_t)v);
		reg_write(c, d, X86_RDX, size, (uint64_t)(v >> (8 * size)));
	}
}

static u128 load_dividend(struct emu_cpu *c, unsigned size)
{
	if (size == 1)
		return c->r[X86_RAX] & 0xffff;
	return ((u128)(c->r[X86_RDX] & emu_size_mask(size)) << (8 * size)) |
	       (c->r[X86_RAX] & emu_size_mask(size));
}

static void exec_div(struct emu_cpu *c, const struct emu_insn *d, unsigned size, uint64_t src,
                     bool sign)
{
	unsigned bits = 8 * size;
	u128 dividend = load_dividend(c, size);
	uint64_t q, r;

	if (src == 0)
		emu_raise_de(c);
	if (!sign) {
		u128 uq = dividend / src;
		if (uq >> bits)
			emu_raise_de(c);
		q = (uint64_t)uq;
		r = (uint64_t)(dividend % src);
	} else {
		/* Sign-extend the 2*bits-wide dividend to 128 bits. */
		s128 sd = (s128)(dividend << (128 - 2 * bits)) >> (128 - 2 * bits);
		s128 sv = emu_sext(src, size), sq, lim = (s128)1 << (bits - 1);
		if (sv == -1) {
			if ((u128)sd == (u128)1 << 127) /* -2^127 / -1 overflows 128 bits too */
				emu_raise_de(c);
			sq = -sd;
		} else {
			sq = sd / sv;
		}
		if (sq >= lim || sq < -lim)
			emu_raise_de(c);
		q = (uint64_t)sq;
		r = (uint64_t)(sv == -1 ? 0 : sd % sv);
	}
	if (size == 1) {
		reg_write(c, d, X86_RAX, 2, (q & 0xff) | ((r & 0xff) << 8));
	} else {
		reg_write(c, d, X86_RAX, size, q);
		reg_write(c, d, X86_RDX, size, r);
	}
}

void emu_exec_grp3(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->op == 0xf6 ? 1 : d->opsize, r = (d->modrm >> 3) & 7;
	uint64_t m = emu_size_mask(size), a, res, lin;

	switch (r) {
	case 0:
	case 1: /* test */
		a = rm_read(c, d, size);
		emu_cc_set(c, EMU_CC_LOGIC, a, d->imm & m, a & d->imm & m, size);
		return;
	case 2:
	case 3: /* not, neg */
		if (d->mod == 3) {
			a = reg_read(c, d, d->rm, size);
			res = (r == 2 ? ~a : -a) & m;
			reg_write(c, d, d->rm, size, res);
		} else if (d->lock) {
			a = emu_lock_rmw(c, d, size, r == 2 ? ALU_XOR : ALU_NEG, m, 0);
			res = (r == 2 ? ~a : -a) & m;
		} else {
			lin = emu_lin(c, d->seg, d->ea, size, true);
			a = emu_rmw_read(c, lin, size);
			res = (r == 2 ? ~a : -a) & m;
			emu_write_lin(c, lin, size, res);
		}
		if (r == 3)
			alu_flags(c, ALU_NEG, a, 0, res, size, 0);
		return;
	case 4: { /* mul */
		u128 p = (u128)(c->r[X86_RAX] & m) * rm_read(c, d, size);
		uint64_t hi = (uint64_t)(p >> (8 * size));
		store_wide(c, d, size, p);
		emu_cc_set(c, EMU_CC_MUL, 0, hi != 0, (uint64_t)p & m, size);
		return;
	}
	case 5: { /* imul */
		s128 p = (s128)emu_sext(c->r[X86_RAX], size) * emu_sext(rm_read(c, d, size), size);
		store_wide(c, d, size, (u128)p);
		emu_cc_set(c, EMU_CC_MUL, 0, p != emu_sext((uint64_t)p, size), (uint64_t)p & m,
		           size);
		return;
	}
	case 6:
	case 7: exec_div(c, d, size, rm_read(c, d, size), r == 7); return;
	}
}

void emu_exec_imul(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->opsize;
	int64_t a = emu_sext(rm_read(c, d, size), size), b;
	s128 p;

	b = d->op == EMU_OP_0F(0xaf) ? emu_sext(reg_read(c, d, d->reg, size), size)
	                             : (int64_t)d->imm;
	p = (s128)a * b;
	reg_write(c, d, d->reg, size, (uint64_t)p);
	emu_cc_set(c, EMU_CC_MUL, 0, p != emu_sext((uint64_t)p, size),
	           (uint64_t)p & emu_size_mask(size), size);
}
