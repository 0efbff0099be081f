/*
 * exec_atomic.c - exchange and compare-exchange: XCHG (86/87), XADD, CMPXCHG,
 * CMPXCHG8B/16B.
 *
 * Guest RAM is shared between vCPU threads, so a locked guest access must be a host
 * atomic on the same bytes: emu_rmw_ptr() gives the host pointer (page made writable
 * and dirty first), and the host's own lock-prefixed instruction does the work. Where no
 * pointer can be had (page-crossing, MMIO) a plain read and write is the best there is.
 * XCHG with memory is locked whether or not it has the prefix.
 */
#include "hv/accel/emu/exec.h"

static uint64_t atomic_xchg(void *p, unsigned size, uint64_t v)
{
	switch (size) {
	case 1: return __atomic_exchange_n((uint8_t *)p, (uint8_t)v, __ATOMIC_SEQ_CST);
	case 2: return __atomic_exchange_n((uint16_t *)p, (uint16_t)v, __ATOMIC_SEQ_CST);
	case 4: return __atomic_exchange_n((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST);
	default: return __atomic_exchange_n((uint64_t *)p, v, __ATOMIC_SEQ_CST);
	}
}

/* Compare-exchange at @p: returns the old value; stores @v only if it equalled @expect. */
static uint64_t atomic_cas(void *p, unsigned size, uint64_t expect, uint64_t v)
{
	switch (size) {
	case 1: {
		uint8_t e = expect;
		__atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)v, false, __ATOMIC_SEQ_CST,
		                            __ATOMIC_SEQ_CST);
		return e;
	}
	case 2: {
		uint16_t e = expect;
		__atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)v, false, __ATOMIC_SEQ_CST,
		                            __ATOMIC_SEQ_CST);
		return e;
	}
	case 4: {
		uint32_t e = expect;
		__atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)v, false, __ATOMIC_SEQ_CST,
		                            __ATOMIC_SEQ_CST);
		return e;
	}
	default: {
		uint64_t e = expect;
		__atomic_compare_exchange_n((uint64_t *)p, &e, v, false, __ATOMIC_SEQ_CST,
		                            __ATOMIC_SEQ_CST);
		return e;
	}
	}
}

static void exec_xchg(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->op == 0x86 ? 1 : d->opsize;
	uint64_t v = reg_read(c, d, d->reg, size), old;

	if (d->mod == 3) {
		old = reg_read(c, d, d->rm, size);
		reg_write(c, d, d->rm, size, v);
	} else {
		uint64_t lin = emu_lin(c, d->seg, d->ea, size, true);
		void *p = emu_rmw_ptr(c, lin, size);
		if (p) {
			old = atomic_xchg(p, size, v);
		} else {
			old = emu_rmw_read(c, lin, size);
			emu_write_lin(c, lin, size, v);
		}
	}
	reg_write(c, d, d->reg, size, old);
}

static void exec_xadd(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->op == EMU_OP_0F(0xc0) ? 1 : d->opsize;
	uint64_t m = emu_size_mask(size), src = reg_read(c, d, d->reg, size), old, res;

	if (d->mod == 3) {
		old = reg_read(c, d, d->rm, size);
		res = (old + src) & m;
		reg_write(c, d, d->reg, size, old);
		reg_write(c, d, d->rm, size, res); /* the destination wins when both are one */
	} else {
		if (d->lock) {
			old = emu_lock_rmw(c, d, size, ALU_ADD, src, 0);
			res = (old + src) & m;
		} else {
			uint64_t lin = emu_lin(c, d->seg, d->ea, size, true);
			old = emu_rmw_read(c, lin, size);
			res = (old + src) & m;
			emu_write_lin(c, lin, size, res);
		}
		reg_write(c, d, d->reg, size, old);
	}
	emu_cc_set(c, EMU_CC_ADD, old, src, res, size);
}

static void exec_cmpxchg(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = d->op == EMU_OP_0F(0xb0) ? 1 : d->opsize;
	uint64_t m = emu_size_mask(size), acc = reg_read(c, d, X86_RAX, size);
	uint64_t src = reg_read(c, d, d->reg, size), old;

	if (d->mod == 3) {
		old = reg_read(c, d, d->rm, size);
		if (old == acc)
			reg_write(c, d, d->rm, size, src);
	} else {
		uint64_t lin = emu_lin(c, d->seg, d->ea, size, true);
		void *p = d->lock ? emu_rmw_ptr(c, lin, size) : NULL;
		if (p) {
			old = atomic_cas(p, size, acc, src);
		} else {
			old = emu_rmw_read(c, lin, size);
			/* the processor writes the destination back even on failure */
			emu_write_lin(c, lin, size, old == acc ? src : old);
		}
	}
	if (old != acc)
		reg_write(c, d, X86_RAX, size, old);
	emu_cc_set(c, EMU_CC_SUB, acc, old, (acc - old) & m, size);
}

/* CMPXCHG8B / CMPXCHG16B m: compare rDX:rAX, store rCX:rBX; only ZF changes. */
static void exec_cmpxchg_wide(struct emu_cpu *c, const struct emu_insn *d)
{
	bool wide = d->opsize == 8;
	unsigned half = wide ? 8 : 4;
	uint64_t m = emu_size_mask(half), f;
	uint64_t elo = c->r[X86_RAX] & m, ehi = c->r[X86_RDX] & m;
	uint64_t nlo = c->r[X86_RBX] & m, nhi = c->r[X86_RCX] & m, olo, ohi;
	uint64_t lin;
	void *p;

	if (d->mod == 3)
		emu_raise_ud(c);
	if (wide && (d->ea & 15))
		emu_raise_gp(c, 0);
	lin = emu_lin(c, d->seg, d->ea, 2 * half, true);
	p = emu_rmw_ptr(c, lin, 2 * half);
	if (p && !wide) {
		uint64_t old = atomic_cas(p, 8, elo | ehi << 32, nlo | nhi << 32);
		olo = (uint32_t)old;
		ohi = old >> 32;
	} else if (p) {
		bool ok;
		__asm__ volatile("lock cmpxchg16b %1"
		                 : "=@ccz"(ok), "+m"(*(unsigned __int128 *)p), "+a"(elo), "+d"(ehi)
		                 : "b"(nlo), "c"(nhi)
		                 : "memory");
		(void)ok;
		olo = elo;
		ohi = ehi;
	} else {
		uint64_t lin2 = lin + half;
		if (c->mode != EMU_MODE_LONG64)
			lin2 = (uint32_t)lin2;
		olo = emu_rmw_read(c, lin, half);
		ohi = emu_rmw_read(c, lin2, half);
		if (olo == elo && ohi == ehi) {
			emu_write_lin(c, lin, half, nlo);
			emu_write_lin(c, lin2, half, nhi);
		} else {
			emu_write_lin(c, lin, half, olo);
			emu_write_lin(c, lin2, half, ohi);
		}
	}
	f = emu_flags_materialize(c) & ~X86_ZF;
	if (olo == (c->r[X86_RAX] & m) && ohi == (c->r[X86_RDX] & m)) {
		f |= X86_ZF;
	} else {
		reg_write(c, d, X86_RAX, half, olo);
		reg_write(c, d, X86_RDX, half, ohi);
	}
	c->flags = f;
}

void emu_exec_atomic(struct emu_cpu *c, const struct emu_insn *d)
{
	switch (d->op) {
	case 0x86:
	case 0x87: exec_xchg(c, d); return;
	case EMU_OP_0F(0xc0):
	case EMU_OP_0F(0xc1): exec_xadd(c, d); return;
	case EMU_OP_0F(0xb0):
	case EMU_OP_0F(0xb1): exec_cmpxchg(c, d); return;
	default: /* 0F C7 */
		if (((d->modrm >> 3) & 7) != 1)
			emu_raise_ud(c);
		exec_cmpxchg_wide(c, d);
		return;
	}
}
