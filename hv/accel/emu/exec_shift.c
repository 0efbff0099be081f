/*
 * exec_shift.c - shifts and rotates: SHL SHR SAR ROL ROR RCL RCR (C0 C1 D0-D3) and the
 * double shifts SHLD/SHRD.
 *
 * The count is masked to 5 bits (6 with a 64-bit operand) first; a masked count of zero
 * changes nothing, not even the lazy flag state. Shifts record their flags lazily;
 * rotates only touch CF and OF, so they materialise the flags and patch those two.
 * RCL/RCR rotate through the carry as one (width + 1)-bit value held in 128 bits.
 */
#include "hv/accel/emu/exec.h"

enum { SH_ROL, SH_ROR, SH_RCL, SH_RCR, SH_SHL, SH_SHR, SH_SAL, SH_SAR };

static uint64_t rotate(struct emu_cpu *c, unsigned kind, uint64_t a, unsigned count, unsigned size)
{
	unsigned bits = 8 * size;
	uint64_t m = emu_size_mask(size), sign = emu_sign_bit(size), res, f;
	bool cf, of;

	f = emu_flags_materialize(c);
	if (kind == SH_ROL || kind == SH_ROR) {
		unsigned n = count & (bits - 1);
		if (kind == SH_ROR)
			n = (bits - n) & (bits - 1); /* rotating right by n is left by bits - n */
		res = n ? ((a << n) | (a >> (bits - n))) & m : a;
		if (kind == SH_ROL) {
			cf = res & 1;
			of = ((res & sign) != 0) ^ cf;
		} else {
			cf = (res & sign) != 0;
			of = cf ^ ((res >> (bits - 2)) & 1);
		}
	} else {
		unsigned w = bits + 1, n = count % w;
		unsigned __int128 v = ((unsigned __int128)(f & X86_CF) << bits) | a, wm;
		if (n == 0)
			return a; /* masked count non-zero but a full turn: nothing moves */
		wm = ((unsigned __int128)1 << w) - 1;
		if (kind == SH_RCL)
			v = ((v << n) | (v >> (w - n))) & wm;
		else
			v = ((v >> n) | (v << (w - n))) & wm;
		res = (uint64_t)v & m;
		cf = (v >> bits) & 1;
		if (kind == SH_RCL)
			of = ((res & sign) != 0) ^ cf;
		else
			of = ((res >> (bits - 1)) ^ (res >> (bits - 2))) & 1;
	}
	c->flags = (f & ~(X86_CF | X86_OF)) | (cf ? X86_CF : 0) | (of ? X86_OF : 0);
	return res;
}

/* shift_op - result of group-2 operation @kind on @a by masked non-zero @count. */
static uint64_t shift_op(struct emu_cpu *c, unsigned kind, uint64_t a, unsigned count,
                         unsigned size)
{
	uint64_t m = emu_size_mask(size), res;

	switch (kind) {
	case SH_SHL:
	case SH_SAL:
		res = (a << count) & m;
		emu_cc_set(c, EMU_CC_SHL, a, count, res, size);
		return res;
	case SH_SHR:
		res = a >> count;
		emu_cc_set(c, EMU_CC_SHR, a, count, res, size);
		return res;
	case SH_SAR:
		res = (uint64_t)(emu_sext(a, size) >> (count < 64 ? count : 63)) & m;
		emu_cc_set(c, EMU_CC_SAR, a, count, res, size);
		return res;
	default: return rotate(c, kind, a, count, size);
	}
}

/* Double shift: SHLD shifts @a left taking bits from @src, SHRD right. */
static uint64_t double_shift(struct emu_cpu *c, bool left, uint64_t a, uint64_t src, unsigned count,
                             unsigned size)
{
	unsigned bits = 8 * size;
	uint64_t m = emu_size_mask(size), sign = emu_sign_bit(size), res;
	bool cf;

	if (left) {
		unsigned __int128 t = ((unsigned __int128)a << bits) | src;
		res = (uint64_t)((t << count) >> bits) & m;
		cf = count <= bits ? (a >> (bits - count)) & 1 : 0;
	} else {
		unsigned __int128 t = ((unsigned __int128)src << bits) | a;
		res = (uint64_t)(t >> count) & m;
		cf = (a >> (count - 1)) & 1;
	}
	emu_flags_set(c, res, size, cf, ((res ^ a) & sign) != 0);
	return res;
}

void emu_exec_shift(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned op = d->op, size, count, kind = 0;
	bool dbl = op >= 0x100;
	uint64_t a, res, lin = 0, src = 0;

	if (dbl) {
		size = d->opsize;
		count = (op & 1) ? c->r[X86_RCX] & 0xff : d->imm & 0xff;
		src = reg_read(c, d, d->reg, size);
	} else {
		size = (op & 1) ? d->opsize : 1;
		kind = (d->modrm >> 3) & 7;
		if (op <= 0xc1)
			count = d->imm & 0xff;
		else if (op <= 0xd1)
			count = 1;
		else
			count = c->r[X86_RCX] & 0xff;
	}
	count &= size == 8 ? 63 : 31;

	if (d->mod == 3) {
		a = reg_read(c, d, d->rm, size);
	} else {
		lin = emu_lin(c, d->seg, d->ea, size, true);
		a = emu_rmw_read(c, lin, size);
	}
	if (count == 0) {
		if (d->mod == 3 && size == 4)
			reg_write(c, d, d->rm, 4,
			          a); /* a 32-bit destination is still zero-extended */
		return;
	}
	res = dbl ? double_shift(c, !(op & 8), a, src, count, size)
	          : shift_op(c, kind, a, count, size);
	if (d->mod == 3)
		reg_write(c, d, d->rm, size, res);
	else
		emu_write_lin(c, lin, size, res);
}
