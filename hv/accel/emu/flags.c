/*
 * flags.c - turning the lazy flag state into RFLAGS and back.
 *
 * The lazy state (flags.h) keeps the last flag-writing operation; this file is the one
 * place that knows how each operation defines CF PF AF ZF SF OF, following the SDM, and
 * what current Intel parts put in the flags the SDM leaves undefined where that is cheap.
 */
#include "hv/accel/emu/flags.h"

/* RFLAGS bits software can hold; the others read as fixed values. */
#define EMU_RFLAGS_VALID 0x3f7fd5ULL

uint64_t emu_cc_flags(const struct emu_cpu *c)
{
	const struct emu_lazy *l = &c->cc;
	uint64_t a = l->src1, b = l->src2, res = l->res;
	uint64_t sign = emu_sign_bit(l->size);
	unsigned bits = 8 * l->size;
	uint64_t cf = 0, of = 0, af = 0, f;

	switch (l->op) {
	case EMU_CC_ADD:
		cf = res < a;
		of = (a ^ res) & (b ^ res) & sign;
		af = (a ^ b ^ res) & 0x10;
		break;
	case EMU_CC_ADC:
		cf = res <= a;
		of = (a ^ res) & (b ^ res) & sign;
		af = (a ^ b ^ res) & 0x10;
		break;
	case EMU_CC_SUB:
		cf = a < b;
		of = (a ^ b) & (a ^ res) & sign;
		af = (a ^ b ^ res) & 0x10;
		break;
	case EMU_CC_SBB:
		cf = a <= b;
		of = (a ^ b) & (a ^ res) & sign;
		af = (a ^ b ^ res) & 0x10;
		break;
	case EMU_CC_LOGIC: break;
	case EMU_CC_INC:
		cf = c->flags & X86_CF;
		of = res == sign;
		af = (res & 0xf) == 0;
		break;
	case EMU_CC_DEC:
		cf = c->flags & X86_CF;
		of = a == sign;
		af = (a & 0xf) == 0;
		break;
	case EMU_CC_SHL:
		/* Last bit shifted out; counts past the width (8/16-bit) shift out zeros. */
		cf = b <= bits ? (a >> (bits - b)) & 1 : 0;
		of = ((res & sign) != 0) ^ cf;
		break;
	case EMU_CC_SHR:
		cf = (a >> (b - 1)) & 1;
		of = (a & sign) != 0;
		break;
	case EMU_CC_SAR:
		cf = ((uint64_t)(emu_sext(a, l->size) >> (b - 1 < 63 ? b - 1 : 63))) & 1;
		break;
	case EMU_CC_MUL: cf = of = b != 0; break;
	default: return c->flags & EMU_ARITH_FLAGS;
	}
	f = (cf ? X86_CF : 0) | (of ? X86_OF : 0) | (af ? X86_AF : 0);
	if (res == 0)
		f |= X86_ZF;
	if (res & sign)
		f |= X86_SF;
	if (!__builtin_parity(res & 0xff))
		f |= X86_PF;
	return f;
}

uint64_t emu_rflags(struct emu_cpu *c)
{
	uint64_t f = c->flags;

	if (c->cc.op != EMU_CC_NONE)
		f = (f & ~EMU_ARITH_FLAGS) | emu_cc_flags(c);
	return f | X86_RFLAGS_FIXED;
}

void emu_set_rflags(struct emu_cpu *c, uint64_t v)
{
	c->flags = (v & EMU_RFLAGS_VALID) | X86_RFLAGS_FIXED;
	c->cc.op = EMU_CC_NONE;
}

bool emu_cond_slow(struct emu_cpu *c, unsigned cc)
{
	uint64_t f = emu_rflags(c);
	bool r;

	switch (cc >> 1) {
	case 0: r = f & X86_OF; break;
	case 1: r = f & X86_CF; break;
	case 2: r = f & X86_ZF; break;
	case 3: r = f & (X86_CF | X86_ZF); break;
	case 4: r = f & X86_SF; break;
	case 5: r = f & X86_PF; break;
	case 6: r = !(f & X86_SF) != !(f & X86_OF); break;
	default: r = (f & X86_ZF) || !(f & X86_SF) != !(f & X86_OF); break;
	}
	return r ^ (cc & 1);
}
