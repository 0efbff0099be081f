/*
 * flags.h - lazy arithmetic flags of the software CPU.
 *
 * Most instructions that write CF PF AF ZF SF OF have their flags overwritten before
 * anything reads them, so an instruction only records what it did (operation, operands,
 * result, size) in c->cc, and the flags are computed when something needs them. A
 * conditional jump after CMP or TEST reads the operands directly (a < b, res == 0) and
 * never builds RFLAGS at all. While c->cc.op != EMU_CC_NONE, the six arithmetic bits of
 * c->flags are stale, except CF for INC/DEC, which keep the carry they found there.
 */
#ifndef HV_EMU_FLAGS_H
#define HV_EMU_FLAGS_H

#include "hv/accel/emu/cpu.h"

#define EMU_ARITH_FLAGS (X86_CF | X86_PF | X86_AF | X86_ZF | X86_SF | X86_OF)

/* c->cc.op. Operands and result are stored masked to the operand size. */
enum emu_cc_op {
	EMU_CC_NONE = 0, /* c->flags holds the flags */
	EMU_CC_ADD,      /* res = src1 + src2 */
	EMU_CC_ADC,      /* res = src1 + src2 + 1 (carry in was set; clear carry is ADD) */
	EMU_CC_SUB,      /* res = src1 - src2 (also CMP, NEG with src1 = 0) */
	EMU_CC_SBB,      /* res = src1 - src2 - 1 */
	EMU_CC_LOGIC,    /* AND OR XOR TEST: CF = OF = 0 */
	EMU_CC_INC,      /* res = src1 + 1, CF kept in c->flags */
	EMU_CC_DEC,      /* res = src1 - 1, CF kept in c->flags */
	EMU_CC_SHL,      /* res = src1 << src2, src2 = count (masked, non-zero) */
	EMU_CC_SHR,
	EMU_CC_SAR,
	EMU_CC_MUL, /* CF = OF = (src2 != 0); SF ZF PF from res */
};

static inline uint64_t emu_size_mask(unsigned size)
{
	return ~0ULL >> (64 - 8 * size);
}

static inline uint64_t emu_sign_bit(unsigned size)
{
	return 1ULL << (8 * size - 1);
}

/* emu_sext - sign-extend the low @size bytes of @v. */
static inline int64_t emu_sext(uint64_t v, unsigned size)
{
	unsigned sh = 64 - 8 * size;
	return (int64_t)(v << sh) >> sh;
}

static inline void emu_cc_set(struct emu_cpu *c, unsigned op, uint64_t src1, uint64_t src2,
                              uint64_t res, unsigned size)
{
	c->cc.op = op;
	c->cc.size = size;
	c->cc.src1 = src1;
	c->cc.src2 = src2;
	c->cc.res = res;
}

/* emu_cc_flags - the six arithmetic flags of the lazy state (op != NONE). */
uint64_t emu_cc_flags(const struct emu_cpu *c);

/* emu_get_cf - the carry flag alone, cheaply. */
static inline unsigned emu_get_cf(const struct emu_cpu *c)
{
	const struct emu_lazy *l = &c->cc;

	switch (l->op) {
	case EMU_CC_NONE:
	case EMU_CC_INC:
	case EMU_CC_DEC: return c->flags & X86_CF;
	case EMU_CC_ADD: return l->res < l->src1;
	case EMU_CC_SUB: return l->src1 < l->src2;
	case EMU_CC_LOGIC: return 0;
	default: return emu_cc_flags(c) & X86_CF;
	}
}

/*
 * emu_flags_materialize - load the computed flags into c->flags and drop the lazy state;
 * for instructions that change only some flags (rotates, BT, BSF).
 */
static inline uint64_t emu_flags_materialize(struct emu_cpu *c)
{
	if (c->cc.op != EMU_CC_NONE) {
		c->flags = (c->flags & ~EMU_ARITH_FLAGS) | emu_cc_flags(c);
		c->cc.op = EMU_CC_NONE;
	}
	return c->flags;
}

/*
 * emu_flags_set - set all six arithmetic flags now: SF ZF PF from @res (masked to @size),
 * CF and OF as given, AF clear. For instructions whose CF/OF rules fit no lazy op.
 */
static inline void emu_flags_set(struct emu_cpu *c, uint64_t res, unsigned size, bool cf, bool of)
{
	uint64_t f = c->flags & ~EMU_ARITH_FLAGS;

	if (cf)
		f |= X86_CF;
	if (of)
		f |= X86_OF;
	if (res == 0)
		f |= X86_ZF;
	if (res & emu_sign_bit(size))
		f |= X86_SF;
	if (!__builtin_parity(res & 0xff))
		f |= X86_PF;
	c->flags = f;
	c->cc.op = EMU_CC_NONE;
}

/* emu_cond_slow - evaluate condition code @cc (0..15, the Jcc encoding) from RFLAGS. */
bool emu_cond_slow(struct emu_cpu *c, unsigned cc);

/* emu_cond - condition code @cc, straight from the operands after CMP/SUB and TEST/logic. */
static inline bool emu_cond(struct emu_cpu *c, unsigned cc)
{
	const struct emu_lazy *l = &c->cc;
	bool r;

	if (l->op == EMU_CC_SUB) {
		uint64_t a = l->src1, b = l->src2;
		switch (cc >> 1) {
		case 1: r = a < b; break;
		case 2: r = a == b; break;
		case 3: r = a <= b; break;
		case 4: r = (l->res & emu_sign_bit(l->size)) != 0; break;
		case 6: r = emu_sext(a, l->size) < emu_sext(b, l->size); break;
		case 7: r = emu_sext(a, l->size) <= emu_sext(b, l->size); break;
		default: return emu_cond_slow(c, cc);
		}
		return r ^ (cc & 1);
	}
	if (l->op == EMU_CC_LOGIC) {
		bool zf = l->res == 0, sf = (l->res & emu_sign_bit(l->size)) != 0;
		switch (cc >> 1) {
		case 0:
		case 1: r = false; break; /* OF, CF */
		case 2:
		case 3: r = zf; break;
		case 4:
		case 6: r = sf; break; /* SF != OF with OF = 0 */
		case 7: r = zf || sf; break;
		default: return emu_cond_slow(c, cc);
		}
		return r ^ (cc & 1);
	}
	return emu_cond_slow(c, cc);
}

#endif
