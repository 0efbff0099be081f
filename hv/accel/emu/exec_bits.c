/*
 * exec_bits.c - single-bit and bit-scan instructions: BT BTS BTR BTC (register and
 * immediate offsets), BSF BSR, TZCNT LZCNT (F3 0F BC/BD) and POPCNT (F3 0F B8).
 *
 * A register bit offset into memory is a signed bit string index: the operand actually
 * accessed is the operand-size unit that holds the bit, (offset >> log2(bits)) units
 * away from the effective address; an immediate offset only selects a bit in the operand.
 */
#include "hv/accel/emu/exec.h"

/* BT* with the bit in @d (register or memory); @kind 4 BT, 5 BTS, 6 BTR, 7 BTC. */
static void exec_bt(struct emu_cpu *c, const struct emu_insn *d, unsigned kind, int64_t off)
{
	unsigned size = d->opsize, bits = 8 * size;
	uint64_t bit, a, res = 0;
	static const uint8_t alu[8] = {[5] = ALU_OR, [6] = ALU_AND, [7] = ALU_XOR};
	uint64_t f;

	bit = 1ULL << (off & (bits - 1));
	if (d->mod == 3) {
		a = reg_read(c, d, d->rm, size);
	} else {
		struct emu_insn m = *d;
		/* 0 for immediates, which the caller masks to the width */
		int64_t units = off >> (size == 8 ? 6 : size == 4 ? 5 : 4);
		m.ea = ea_add(d, (uint64_t)(units * (int64_t)size));
		if (kind == 4) {
			a = emu_read(c, m.seg, m.ea, size);
		} else if (d->lock) {
			a = emu_lock_rmw(c, &m, size, alu[kind], kind == 6 ? ~bit : bit, 0);
			goto flags;
		} else {
			uint64_t lin = emu_lin(c, m.seg, m.ea, size, true);
			a = emu_rmw_read(c, lin, size);
			res = kind == 5 ? a | bit : kind == 6 ? a & ~bit : a ^ bit;
			emu_write_lin(c, lin, size, res);
			goto flags;
		}
	}
	if (kind != 4 && d->mod == 3) {
		res = kind == 5 ? a | bit : kind == 6 ? a & ~bit : a ^ bit;
		reg_write(c, d, d->rm, size, res);
	}
flags:
	f = emu_flags_materialize(c);
	c->flags = (f & ~X86_CF) | ((a & bit) ? X86_CF : 0);
}

/* BSF/BSR/TZCNT/LZCNT/POPCNT on the r/m operand into the reg operand. */
static void exec_scan(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->opsize, bits = 8 * size, op = d->op;
	uint64_t src = rm_read(c, d, size), f = emu_flags_materialize(c), res;

	f &= ~EMU_ARITH_FLAGS;
	if (op == EMU_OP_0F(0xb8)) { /* popcnt */
		res = __builtin_popcountll(src);
		reg_write(c, d, d->reg, size, res);
		c->flags = f | (src ? 0 : X86_ZF);
		return;
	}
	if (d->rep == 0xf3) { /* tzcnt, lzcnt */
		if (op == EMU_OP_0F(0xbc))
			res = src ? (unsigned)__builtin_ctzll(src) : bits;
		else
			res = src ? (unsigned)__builtin_clzll(src) - (64 - bits) : bits;
		reg_write(c, d, d->reg, size, res);
		c->flags = f | (src ? 0 : X86_CF) | (res ? 0 : X86_ZF);
		return;
	}
	if (src == 0) { /* destination unchanged, as on current parts */
		c->flags = f | X86_ZF;
		return;
	}
	res = op == EMU_OP_0F(0xbc) ? (unsigned)__builtin_ctzll(src)
	                            : 63 - (unsigned)__builtin_clzll(src);
	reg_write(c, d, d->reg, size, res);
	c->flags = f;
}

void emu_exec_bits(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->opsize;

	switch (d->op) {
	case EMU_OP_0F(0xa3): /* bt */
	case EMU_OP_0F(0xab): /* bts */
	case EMU_OP_0F(0xb3): /* btr */
	case EMU_OP_0F(0xbb): /* btc */
		exec_bt(c, d, 4 + ((d->op >> 3) & 3), emu_sext(reg_read(c, d, d->reg, size), size));
		return;
	case EMU_OP_0F(0xba): {
		unsigned kind = (d->modrm >> 3) & 7;
		if (kind < 4)
			emu_raise_ud(c);
		exec_bt(c, d, kind, d->imm & (8 * size - 1) & 0xff);
		return;
	}
	case EMU_OP_0F(0xb8):
		if (d->rep != 0xf3)
			emu_raise_ud(c);
		exec_scan(c, d);
		return;
	default: exec_scan(c, d); return;
	}
}
