/*
 * except.c - raising exceptions and delivering exceptions and interrupts through the IDT.
 *
 * emu_raise() records the exception and longjmps to the run loop's instruction boundary;
 * the loop restores RIP to the faulting instruction and calls emu_exc_unwound(), which
 * delivers it. A fault while delivering unwinds to the same place again: c->exc_depth says
 * an event was being delivered, and the SDM's table (benign / contributory / page fault)
 * decides between delivering the new exception, #DF, or a triple fault. Delivery reads
 * the gate and the target descriptor, computes the new stack and writes the whole frame
 * before it changes a register, so a fault in the middle leaves the CPU as it was.
 * Supported: 64-bit IDTs (IA-32e mode, IST, privilege change through TSS.RSPn), 32-bit
 * and 16-bit interrupt/trap gates in protected mode (with a stack switch through a 32-bit
 * TSS) and the real-mode IVT. Task gates raise #GP.
 */
#include "hv/accel/emu/mmu.h"
#include "hv/accel/emu/system.h"

#define G_TYPE(d) ((unsigned)((d) >> 40) & 0xf)
#define G_S(d)    ((unsigned)((d) >> 44) & 1)
#define G_DPL(d)  ((unsigned)((d) >> 45) & 3)
#define G_P(d)    ((unsigned)((d) >> 47) & 1)
#define NOT_EXC   256 /* cur_vec while delivering an interrupt (benign) */

_Noreturn void emu_raise(struct emu_cpu *c, unsigned vec, uint32_t err, bool has_err)
{
	struct emu_sys *s = emu_sys(c);

	s->raise_vec = vec;
	s->raise_err = has_err ? err : 0;
	s->raise_has_err = has_err;
	if (c->exc_exit) {
		c->exc_vector = (int)vec;
		c->exc_error = has_err ? err : 0;
	}
	longjmp(c->fault_jmp, 1);
}

static bool contributory(unsigned v)
{
	return v == X86_DE || (v >= X86_TS && v <= X86_GP);
}

int emu_exc_unwound(struct emu_cpu *c)
{
	struct emu_sys *s = emu_sys(c);
	unsigned vec = s->raise_vec;
	uint32_t err = s->raise_err;
	bool has_err = s->raise_has_err;

	c->rip = c->insn_rip;
	if (c->exc_depth) {
		unsigned first = s->cur_vec;
		if (first == X86_DF_VEC || c->exc_depth > 4)
			return -1;
		if ((contributory(first) && contributory(vec)) ||
		    (first == X86_PF_VEC && (vec == X86_PF_VEC || contributory(vec)))) {
			vec = X86_DF_VEC, err = 0, has_err = true;
		}
	}
	c->exc_depth++;
	s->cur_vec = vec;
	emu_deliver(c, vec, err, has_err, EMU_EV_EXC, c->rip);
	c->exc_depth = 0;
	return 0;
}

/* A stack being built for a frame: segment cache, pointer, width. */
struct frame {
	const struct x86_seg *ss;
	uint64_t sp, mask;
	bool longmode;
	uint32_t ext;
};

static void frame_push(struct emu_cpu *c, struct frame *f, uint64_t v, unsigned size)
{
	uint64_t lin;

	f->sp = (f->sp - size) & f->mask;
	if (f->longmode) {
		lin = f->sp;
		if (!emu_canonical(lin))
			emu_raise(c, X86_SS_VEC, f->ext, true);
	} else {
		if (f->ss->unusable || f->sp + size - 1 > f->ss->limit)
			emu_raise(c, X86_SS_VEC, f->ext, true);
		lin = (f->ss->base + f->sp) & 0xffffffffULL;
	}
	emu_sys_write(c, lin, size, v);
}

static uint64_t tss_read(struct emu_cpu *c, unsigned off, unsigned size, uint32_t ext)
{
	if (c->tr.unusable || off + size - 1 > c->tr.limit)
		emu_raise(c, X86_TS, (c->tr.selector & 0xfffc) | ext, true);
	return emu_sys_read(c, c->tr.base + off, size);
}

/* Read and check the code segment a gate points to; returns the handler's CPL. */
static unsigned gate_code(struct emu_cpu *c, uint16_t sel, uint32_t ext, bool want64,
                          struct x86_seg *cs)
{
	unsigned cpl = (unsigned)c->cpl, type;
	uint64_t d;

	if (!(sel & 0xfffc))
		emu_raise_gp(c, ext);
	emu_fetch_desc(c, sel, &d, X86_GP, ext);
	type = G_TYPE(d);
	if (!G_S(d) || !(type & 8) || G_DPL(d) > cpl)
		emu_raise_gp(c, (sel & 0xfffc) | ext);
	if (want64 && (!((d >> 53) & 1) || ((d >> 54) & 1)))
		emu_raise_gp(c, (sel & 0xfffc) | ext);
	if (!G_P(d))
		emu_raise(c, X86_NP, (sel & 0xfffc) | ext, true);
	cpl = (type & 4) ? cpl : G_DPL(d);
	emu_desc_to_seg(d | (1ULL << 40), (uint16_t)((sel & 0xfffc) | cpl), cs);
	if (!want64)
		cs->l = 0;
	return cpl;
}

static void deliver64(struct emu_cpu *c, unsigned vec, uint32_t err, bool has_err, int kind,
                      uint64_t ret_rip)
{
	uint32_t ext = kind != EMU_EV_SOFT, gerr = vec * 8 + 2 + ext;
	unsigned cpl = (unsigned)c->cpl, ncpl, ist;
	uint64_t lo, hi, off, fl = emu_rflags(c);
	struct x86_seg cs, ss = c->seg[X86_SS];
	struct frame f = {.ss = &ss, .mask = ~0ULL, .longmode = true, .ext = ext};

	if (vec * 16 + 15 > c->idt.limit)
		emu_raise_gp(c, gerr);
	lo = emu_sys_read(c, c->idt.base + vec * 16, 8);
	hi = emu_sys_read(c, c->idt.base + vec * 16 + 8, 8);
	if (G_S(lo) || (G_TYPE(lo) != 0xe && G_TYPE(lo) != 0xf))
		emu_raise_gp(c, gerr);
	if (kind == EMU_EV_SOFT && G_DPL(lo) < cpl)
		emu_raise_gp(c, gerr);
	if (!G_P(lo))
		emu_raise(c, X86_NP, gerr, true);
	off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ULL) | (hi << 32);
	ist = (lo >> 32) & 7;
	ncpl = gate_code(c, (uint16_t)(lo >> 16), ext, true, &cs);
	if (!emu_canonical(off))
		emu_raise_gp(c, ext);

	if (ist)
		f.sp = tss_read(c, 0x24 + (ist - 1) * 8, 8, ext);
	else if (ncpl < cpl)
		f.sp = tss_read(c, 4 + ncpl * 8, 8, ext);
	else
		f.sp = c->r[X86_RSP];
	f.sp &= ~0xfULL;
	frame_push(c, &f, c->seg[X86_SS].selector, 8);
	frame_push(c, &f, c->r[X86_RSP], 8);
	frame_push(c, &f, fl, 8);
	frame_push(c, &f, c->seg[X86_CS].selector, 8);
	frame_push(c, &f, ret_rip, 8);
	if (has_err)
		frame_push(c, &f, err, 8);

	if (ncpl != cpl)
		emu_seg_null(&c->seg[X86_SS], (uint16_t)ncpl, ncpl);
	c->seg[X86_CS] = cs;
	c->r[X86_RSP] = f.sp;
	c->rip = off;
	fl &= ~(X86_TF | X86_NT | X86_RF | X86_VM);
	if (G_TYPE(lo) == 0xe)
		fl &= ~X86_IF;
	emu_set_rflags(c, fl);
	emu_set_mode(c, (int)ncpl);
}

static void deliver32(struct emu_cpu *c, unsigned vec, uint32_t err, bool has_err, int kind,
                      uint64_t ret_rip)
{
	uint32_t ext = kind != EMU_EV_SOFT, gerr = vec * 8 + 2 + ext;
	unsigned cpl = (unsigned)c->cpl, ncpl, type, gsize;
	uint64_t g, off, fl = emu_rflags(c);
	struct x86_seg cs, ss = c->seg[X86_SS];
	struct frame f = {.ss = &ss, .longmode = false, .ext = ext};

	if (vec * 8 + 7 > c->idt.limit)
		emu_raise_gp(c, gerr);
	g = emu_sys_read(c, c->idt.base + vec * 8, 8);
	type = G_TYPE(g);
	if (G_S(g) || (type != 0xe && type != 0xf && type != 0x6 && type != 0x7))
		emu_raise_gp(c, gerr); /* task gates included: unsupported */
	if (kind == EMU_EV_SOFT && G_DPL(g) < cpl)
		emu_raise_gp(c, gerr);
	if (!G_P(g))
		emu_raise(c, X86_NP, gerr, true);
	gsize = (type & 8) ? 4 : 2;
	off = (g & 0xffff) | (gsize == 4 ? (g >> 32) & 0xffff0000ULL : 0);
	ncpl = gate_code(c, (uint16_t)(g >> 16), ext, false, &cs);
	if (off > cs.limit)
		emu_raise_gp(c, ext);

	if (ncpl < cpl) {
		bool tss32 = (c->tr.type & 8) != 0;
		uint64_t sp =
		    tss32 ? tss_read(c, 4 + ncpl * 8, 4, ext) : tss_read(c, 2 + ncpl * 4, 2, ext);
		uint16_t ssel = (uint16_t)(tss32 ? tss_read(c, 8 + ncpl * 8, 2, ext)
		                                 : tss_read(c, 4 + ncpl * 4, 2, ext));
		emu_check_ss(c, ssel, ncpl, false, &ss);
		f.mask = ss.db ? 0xffffffffULL : 0xffffULL;
		f.sp = sp & f.mask;
		frame_push(c, &f, c->seg[X86_SS].selector, gsize);
		frame_push(c, &f, c->r[X86_RSP], gsize);
	} else {
		f.mask = ss.db ? 0xffffffffULL : 0xffffULL;
		f.sp = c->r[X86_RSP] & f.mask;
	}
	frame_push(c, &f, fl, gsize);
	frame_push(c, &f, c->seg[X86_CS].selector, gsize);
	frame_push(c, &f, ret_rip, gsize);
	if (has_err)
		frame_push(c, &f, err, gsize);

	c->seg[X86_SS] = ss;
	c->seg[X86_CS] = cs;
	c->r[X86_RSP] = (c->r[X86_RSP] & ~f.mask) | f.sp;
	if (ncpl < cpl)
		c->r[X86_RSP] = f.sp;
	c->rip = off;
	fl &= ~(X86_TF | X86_NT | X86_RF | X86_VM);
	if (!(type & 1))
		fl &= ~X86_IF;
	emu_set_rflags(c, fl);
	emu_set_mode(c, (int)ncpl);
}

static void deliver_real(struct emu_cpu *c, unsigned vec, uint64_t ret_rip)
{
	uint64_t fl = emu_rflags(c), sp = c->r[X86_RSP] & 0xffff, ss = c->seg[X86_SS].base;
	uint32_t ivt;

	if (vec * 4 + 3 > c->idt.limit)
		emu_raise_gp(c, 0);
	ivt = (uint32_t)emu_sys_read(c, c->idt.base + vec * 4, 4);
	emu_sys_write(c, ss + ((sp - 2) & 0xffff), 2, fl);
	emu_sys_write(c, ss + ((sp - 4) & 0xffff), 2, c->seg[X86_CS].selector);
	emu_sys_write(c, ss + ((sp - 6) & 0xffff), 2, ret_rip);
	c->r[X86_RSP] = (c->r[X86_RSP] & ~0xffffULL) | ((sp - 6) & 0xffff);
	c->seg[X86_CS].selector = (uint16_t)(ivt >> 16);
	c->seg[X86_CS].base = (uint64_t)(ivt >> 16) << 4;
	c->rip = ivt & 0xffff;
	emu_set_rflags(c, fl & ~(X86_IF | X86_TF | X86_AC));
}

void emu_deliver(struct emu_cpu *c, unsigned vec, uint32_t err, bool has_err, int kind,
                 uint64_t ret_rip)
{
	struct emu_sys *s = emu_sys(c);

	if (kind != EMU_EV_EXC && !c->exc_depth) {
		/* A fault while delivering an interrupt is benign: deliver it instead. */
		c->exc_depth = 1;
		s->cur_vec = NOT_EXC;
	}
	if (!(c->cr0 & X86_CR0_PE))
		deliver_real(c, vec, ret_rip);
	else if (c->efer & X86_EFER_LMA)
		deliver64(c, vec, err, has_err, kind, ret_rip);
	else
		deliver32(c, vec, err, has_err, kind, ret_rip);
	if (kind != EMU_EV_EXC)
		c->exc_depth = 0;
	c->events.interrupt_shadow = 0;
	c->halted = 0;
	atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
}
