/*
 * seg.c - descriptor loads and the control transfers that go through descriptor tables:
 * mov/pop to a segment register, far jmp/call/ret, iret, ltr/lldt, syscall/sysret.
 *
 * Every descriptor is read from guest memory through the implicit-supervisor path with
 * the table limit checked first, so a hostile GDT can only raise guest exceptions. A
 * transfer reads and validates everything (descriptors, stack slots) before it changes
 * any register, so a fault restarts the instruction cleanly. Call gates, task gates and
 * task switches are not supported (#GP), nor virtual-8086 mode. When an executor calls in
 * here, c->rip already holds the address of the next instruction.
 */
#include "hv/accel/emu/mmu.h"
#include "hv/accel/emu/system.h"

#define D_TYPE(d)  ((unsigned)((d) >> 40) & 0xf)
#define D_S(d)     ((unsigned)((d) >> 44) & 1)
#define D_DPL(d)   ((unsigned)((d) >> 45) & 3)
#define D_P(d)     ((unsigned)((d) >> 47) & 1)
#define D_L(d)     ((unsigned)((d) >> 53) & 1)
#define D_DB(d)    ((unsigned)((d) >> 54) & 1)
#define D_ACCESSED (1ULL << 40)

void emu_set_mode(struct emu_cpu *c, int cpl)
{
	int mode;

	if (!(c->cr0 & X86_CR0_PE))
		mode = EMU_MODE_REAL;
	else if ((c->efer & X86_EFER_LMA) && c->seg[X86_CS].l)
		mode = EMU_MODE_LONG64;
	else
		mode = c->seg[X86_CS].db ? EMU_MODE_PROT32 : EMU_MODE_PROT16;
	if (mode != c->mode || cpl != c->cpl)
		atomic_fetch_or_explicit(&c->attn, EMU_ATTN_MODE, memory_order_relaxed);
	c->mode = mode;
	if (cpl != c->cpl) {
		c->cpl = cpl;
		emu_tlb_flush(c);
	}
}

void emu_desc_to_seg(uint64_t d, uint16_t sel, struct x86_seg *s)
{
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

	memset(s, 0, sizeof(*s));
	s->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	s->g = (d >> 55) & 1;
	s->limit = s->g ? (limit << 12) | 0xfff : limit;
	s->selector = sel;
	s->type = D_TYPE(d);
	s->s = D_S(d);
	s->dpl = D_DPL(d);
	s->present = D_P(d);
	s->avl = (d >> 52) & 1;
	s->l = D_L(d);
	s->db = D_DB(d);
}

/* Linear address of the descriptor for @sel (@bytes long), or raise @vec(sel). */
static uint64_t desc_addr(struct emu_cpu *c, uint16_t sel, unsigned bytes, unsigned vec,
                          uint32_t ext)
{
	uint64_t base, limit, off = sel & ~7U;

	if (sel & 4) {
		if (c->ldt.unusable || !c->ldt.present)
			emu_raise(c, vec, (sel & 0xfffc) | ext, true);
		base = c->ldt.base, limit = c->ldt.limit;
	} else {
		base = c->gdt.base, limit = c->gdt.limit;
	}
	if (off + bytes - 1 > limit)
		emu_raise(c, vec, (sel & 0xfffc) | ext, true);
	return base + off;
}

void emu_fetch_desc(struct emu_cpu *c, uint16_t sel, uint64_t *d, unsigned vec, uint32_t ext)
{
	*d = emu_sys_read(c, desc_addr(c, sel, 8, vec, ext), 8);
}

static void set_accessed(struct emu_cpu *c, uint16_t sel, uint64_t d)
{
	if (!(d & D_ACCESSED))
		emu_sys_write(c, desc_addr(c, sel, 8, X86_GP, 0) + 5, 1, ((d >> 40) & 0xff) | 1);
}

/* A usable-null segment register (KVM's "unusable"). */
void emu_seg_null(struct x86_seg *s, uint16_t sel, unsigned dpl)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->unusable = 1;
	s->dpl = (uint8_t)dpl;
}

/* Flat segment for syscall/sysret. */
static void seg_flat(struct x86_seg *s, uint16_t sel, unsigned type, unsigned dpl, bool l)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = (uint8_t)type;
	s->s = 1;
	s->dpl = (uint8_t)dpl;
	s->present = 1;
	s->l = l;
	s->db = !l;
	s->g = 1;
}

/*
 * check_ss - validate @sel as the stack segment for privilege @cpl; fill @out. Null is
 * allowed only for 64-bit code at CPL < 3 (@allow_null).
 */
static void check_ss(struct emu_cpu *c, uint16_t sel, unsigned cpl, bool allow_null,
                     struct x86_seg *out, uint64_t *dp)
{
	uint64_t d;

	*dp = D_ACCESSED;
	if (!(sel & 0xfffc)) {
		if (!allow_null || (sel & 3) != cpl)
			emu_raise_gp(c, 0);
		emu_seg_null(out, sel, cpl);
		return;
	}
	emu_fetch_desc(c, sel, &d, X86_GP, 0);
	if ((sel & 3) != cpl || !D_S(d) || (D_TYPE(d) & 8) || !(D_TYPE(d) & 2) || D_DPL(d) != cpl)
		emu_raise_gp(c, sel & 0xfffc);
	if (!D_P(d))
		emu_raise(c, X86_SS_VEC, sel & 0xfffc, true);
	emu_desc_to_seg(d | D_ACCESSED, sel, out);
	*dp = d;
}

void emu_check_ss(struct emu_cpu *c, uint16_t sel, unsigned cpl, bool allow_null,
                  struct x86_seg *out)
{
	uint64_t d;

	check_ss(c, sel, cpl, allow_null, out, &d);
}

void emu_load_sreg(struct emu_cpu *c, int sreg, uint16_t sel)
{
	struct x86_seg *s = &c->seg[sreg];
	unsigned rpl = sel & 3, cpl = (unsigned)c->cpl;
	uint64_t d;

	if (sreg == X86_CS || sreg >= X86_NR_SREGS)
		emu_raise_ud(c);
	if (c->mode == EMU_MODE_REAL) {
		s->selector = sel;
		s->base = (uint64_t)sel << 4;
	} else if (sreg == X86_SS) {
		struct x86_seg n;
		check_ss(c, sel, cpl, c->mode == EMU_MODE_LONG64 && cpl < 3, &n, &d);
		if (sel & 0xfffc)
			set_accessed(c, sel, d);
		*s = n;
	} else if (!(sel & 0xfffc)) {
		emu_seg_null(s, sel, 0);
	} else {
		emu_fetch_desc(c, sel, &d, X86_GP, 0);
		if (!D_S(d) || ((D_TYPE(d) & 8) && !(D_TYPE(d) & 2)))
			emu_raise_gp(c, sel & 0xfffc);
		if ((!(D_TYPE(d) & 8) || !(D_TYPE(d) & 4)) && (rpl > D_DPL(d) || cpl > D_DPL(d)))
			emu_raise_gp(c, sel & 0xfffc);
		if (!D_P(d))
			emu_raise(c, X86_NP, sel & 0xfffc, true);
		set_accessed(c, sel, d);
		emu_desc_to_seg(d | D_ACCESSED, sel, s);
	}
	if (sreg == X86_SS) {
		/* mov/pop ss: no interrupt before the next instruction */
		c->events.interrupt_shadow = 1;
		atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
	}
}

/*
 * check_code - validate @sel as a code segment to run at privilege @rpl (the target CPL
 * is returned; conforming segments keep the current one). Fills @out.
 */
static unsigned check_code(struct emu_cpu *c, uint16_t sel, unsigned rpl, bool ret,
                           struct x86_seg *out, uint64_t *dp)
{
	unsigned cpl = (unsigned)c->cpl, dpl, ncpl;
	uint64_t d;

	if (!(sel & 0xfffc))
		emu_raise_gp(c, 0);
	emu_fetch_desc(c, sel, &d, X86_GP, 0);
	dpl = D_DPL(d);
	if (!D_S(d) || !(D_TYPE(d) & 8))
		emu_raise_gp(c, sel & 0xfffc); /* data, call gates, TSS: unsupported here */
	if (ret) {                             /* far ret / iret: to the same or an outer level */
		if (rpl < cpl || ((D_TYPE(d) & 4) ? dpl > rpl : dpl != rpl))
			emu_raise_gp(c, sel & 0xfffc);
		ncpl = rpl;
	} else if (D_TYPE(d) & 4) {
		if (dpl > cpl)
			emu_raise_gp(c, sel & 0xfffc);
		ncpl = cpl;
	} else {
		if (rpl > cpl || dpl != cpl)
			emu_raise_gp(c, sel & 0xfffc);
		ncpl = cpl;
	}
	if ((c->efer & X86_EFER_LMA) && D_L(d) && D_DB(d))
		emu_raise_gp(c, sel & 0xfffc);
	if (!D_P(d))
		emu_raise(c, X86_NP, sel & 0xfffc, true);
	emu_desc_to_seg(d | D_ACCESSED, (uint16_t)((sel & 0xfffc) | ncpl), out);
	if (!(c->efer & X86_EFER_LMA))
		out->l = 0;
	*dp = d;
	return ncpl;
}

/* Target RIP checks: canonical for 64-bit code, within the limit otherwise. */
static uint64_t check_rip(struct emu_cpu *c, const struct x86_seg *cs, uint64_t rip)
{
	if (cs->l) {
		if (!emu_canonical(rip))
			emu_raise_gp(c, 0);
		return rip;
	}
	rip &= 0xffffffffULL;
	if (rip > cs->limit)
		emu_raise_gp(c, 0);
	return rip;
}

/* A stack cursor: pushes and pops are checked before RSP changes. */
struct stk {
	uint64_t sp, mask;
};

static void stk_init(struct emu_cpu *c, struct stk *k)
{
	k->mask = c->mode == EMU_MODE_LONG64 ? ~0ULL
	          : c->seg[X86_SS].db        ? 0xffffffffULL
	                                     : 0xffffULL;
	k->sp = c->r[X86_RSP] & k->mask;
}

static void stk_push(struct emu_cpu *c, struct stk *k, uint64_t v, unsigned size)
{
	k->sp = (k->sp - size) & k->mask;
	emu_write(c, X86_SS, k->sp, size, v);
}

static uint64_t stk_pop(struct emu_cpu *c, struct stk *k, unsigned size)
{
	uint64_t v = emu_read(c, X86_SS, k->sp, size);

	k->sp = (k->sp + size) & k->mask;
	return v;
}

static void stk_commit(struct emu_cpu *c, const struct stk *k)
{
	c->r[X86_RSP] = (c->r[X86_RSP] & ~k->mask) | k->sp;
}

void emu_far_jmp(struct emu_cpu *c, uint16_t sel, uint64_t off)
{
	struct x86_seg cs;
	uint64_t d;

	if (c->mode == EMU_MODE_REAL) {
		c->seg[X86_CS].selector = sel;
		c->seg[X86_CS].base = (uint64_t)sel << 4;
		c->rip = off & 0xffff;
		return;
	}
	check_code(c, sel, sel & 3, false, &cs, &d);
	off = check_rip(c, &cs, off);
	set_accessed(c, sel, d);
	c->seg[X86_CS] = cs;
	c->rip = off;
	emu_set_mode(c, c->cpl);
}

void emu_far_call(struct emu_cpu *c, uint16_t sel, uint64_t off, unsigned opsize)
{
	struct x86_seg cs;
	struct stk k;
	uint64_t d;

	stk_init(c, &k);
	if (c->mode == EMU_MODE_REAL) {
		stk_push(c, &k, c->seg[X86_CS].selector, opsize);
		stk_push(c, &k, c->rip, opsize);
		stk_commit(c, &k);
		emu_far_jmp(c, sel, off);
		return;
	}
	check_code(c, sel, sel & 3, false, &cs, &d);
	off = check_rip(c, &cs, off);
	stk_push(c, &k, c->seg[X86_CS].selector, opsize);
	stk_push(c, &k, c->rip, opsize);
	set_accessed(c, sel, d);
	stk_commit(c, &k);
	c->seg[X86_CS] = cs;
	c->rip = off;
	emu_set_mode(c, c->cpl);
}

/* Returning to an outer level: data segments the new CPL may not use become null. */
static void null_outer_segs(struct emu_cpu *c, unsigned cpl)
{
	static const int regs[] = {X86_ES, X86_DS, X86_FS, X86_GS};

	for (unsigned i = 0; i < 4; i++) {
		struct x86_seg *s = &c->seg[regs[i]];
		bool conf_code = (s->type & 8) && (s->type & 4);
		if (!s->unusable && !conf_code && s->dpl < cpl)
			emu_seg_null(s, 0, 0);
	}
}

void emu_far_ret(struct emu_cpu *c, unsigned opsize, uint16_t imm)
{
	struct x86_seg cs, ss;
	struct stk k;
	uint64_t rip, d, dss, rsp;
	uint16_t sel, ssel;
	unsigned ncpl;

	stk_init(c, &k);
	rip = stk_pop(c, &k, opsize);
	sel = (uint16_t)stk_pop(c, &k, opsize);
	if (c->mode == EMU_MODE_REAL) {
		k.sp = (k.sp + imm) & k.mask;
		stk_commit(c, &k);
		emu_far_jmp(c, sel, rip);
		return;
	}
	ncpl = check_code(c, sel, sel & 3, true, &cs, &d);
	rip = check_rip(c, &cs, rip);
	k.sp = (k.sp + imm) & k.mask;
	if (ncpl != (unsigned)c->cpl) {
		rsp = stk_pop(c, &k, opsize);
		ssel = (uint16_t)stk_pop(c, &k, opsize);
		check_ss(c, ssel, ncpl, cs.l && ncpl < 3, &ss, &dss);
		if (ssel & 0xfffc)
			set_accessed(c, ssel, dss);
		set_accessed(c, sel, d);
		c->seg[X86_SS] = ss;
		c->r[X86_RSP] =
		    (ss.db || cs.l ? rsp : (c->r[X86_RSP] & ~0xffffULL) | (rsp & 0xffff)) + imm;
		if (!cs.l)
			c->r[X86_RSP] &= 0xffffffffULL;
		null_outer_segs(c, ncpl);
	} else {
		set_accessed(c, sel, d);
		stk_commit(c, &k);
	}
	c->seg[X86_CS] = cs;
	c->rip = rip;
	emu_set_mode(c, (int)ncpl);
}

void emu_iret(struct emu_cpu *c, unsigned opsize)
{
	struct x86_seg cs, ss;
	struct stk k;
	uint64_t rip, fl, rsp = 0, d, dss = D_ACCESSED, old = emu_rflags(c), mask;
	uint16_t sel, ssel = 0;
	unsigned ncpl, cpl = (unsigned)c->cpl;
	bool new_stack;

	stk_init(c, &k);
	if (c->mode == EMU_MODE_REAL) {
		rip = stk_pop(c, &k, opsize);
		sel = (uint16_t)stk_pop(c, &k, opsize);
		fl = stk_pop(c, &k, opsize);
		stk_commit(c, &k);
		c->seg[X86_CS].selector = sel;
		c->seg[X86_CS].base = (uint64_t)sel << 4;
		c->rip = rip & 0xffff;
		mask = opsize == 2 ? 0xffff : 0x257fd5;
		emu_set_rflags(c, (old & ~mask) | (fl & mask));
		atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
		return;
	}
	if (!(c->efer & X86_EFER_LMA) && (old & X86_NT))
		emu_raise_gp(c, 0); /* task return: unsupported */
	rip = stk_pop(c, &k, opsize);
	sel = (uint16_t)stk_pop(c, &k, opsize);
	fl = stk_pop(c, &k, opsize);
	if (!(c->efer & X86_EFER_LMA) && (fl & X86_VM) && cpl == 0)
		emu_raise_gp(c, 0); /* return to virtual-8086 mode: unsupported */
	ncpl = check_code(c, sel, sel & 3, true, &cs, &d);
	new_stack = c->mode == EMU_MODE_LONG64 || ncpl != cpl;
	if (new_stack) {
		rsp = stk_pop(c, &k, opsize);
		ssel = (uint16_t)stk_pop(c, &k, opsize);
		check_ss(c, ssel, ncpl, cs.l && ncpl < 3, &ss, &dss);
	}
	rip = check_rip(c, &cs, rip);

	mask = X86_CF | X86_PF | X86_AF | X86_ZF | X86_SF | X86_TF | X86_DF | X86_OF | X86_NT |
	       X86_RF | X86_AC | X86_ID;
	if (cpl <= ((old & X86_IOPL) >> 12))
		mask |= X86_IF;
	if (cpl == 0)
		mask |= X86_IOPL;
	if (opsize == 2)
		mask &= 0xffff;

	set_accessed(c, sel, d);
	if (new_stack && (ssel & 0xfffc))
		set_accessed(c, ssel, dss);
	c->seg[X86_CS] = cs;
	c->rip = rip;
	emu_set_rflags(c, ((old & ~mask) | (fl & mask) | X86_RFLAGS_FIXED) & ~X86_VM);
	if (new_stack) {
		c->seg[X86_SS] = ss;
		if (cs.l)
			c->r[X86_RSP] = rsp;
		else if (ss.db)
			c->r[X86_RSP] = rsp & 0xffffffffULL;
		else
			c->r[X86_RSP] = (c->r[X86_RSP] & ~0xffffULL) | (rsp & 0xffff);
	} else {
		stk_commit(c, &k);
	}
	if (ncpl > cpl)
		null_outer_segs(c, ncpl);
	c->events.nmi_masked = 0;
	emu_set_mode(c, (int)ncpl);
	atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
}

/* ltr / lldt: system descriptors, 16 bytes in long mode. */
static void load_system(struct emu_cpu *c, uint16_t sel, struct x86_seg *out, bool tss)
{
	unsigned bytes = (c->efer & X86_EFER_LMA) ? 16 : 8, type;
	uint64_t a, d, hi = 0;

	if (c->cpl != 0 || c->mode == EMU_MODE_REAL)
		emu_raise_gp(c, 0);
	if (!(sel & 0xfffc)) {
		if (tss)
			emu_raise_gp(c, 0);
		emu_seg_null(out, sel, 0);
		return;
	}
	if (sel & 4)
		emu_raise_gp(c, sel & 0xfffc);
	a = desc_addr(c, sel, bytes, X86_GP, 0);
	d = emu_sys_read(c, a, 8);
	if (bytes == 16)
		hi = emu_sys_read(c, a + 8, 8);
	type = D_TYPE(d);
	if (D_S(d) || (tss ? (type != 9 && !(type == 1 && bytes == 8)) : type != 2))
		emu_raise_gp(c, sel & 0xfffc);
	if (!D_P(d))
		emu_raise(c, X86_NP, sel & 0xfffc, true);
	if (bytes == 16 &&
	    !emu_canonical((d >> 16 & 0xffffff) | ((d >> 32) & 0xff000000) | hi << 32))
		emu_raise_gp(c, sel & 0xfffc);
	if (tss)
		emu_sys_write(c, a + 5, 1, ((d >> 40) & 0xff) | 2); /* busy */
	emu_desc_to_seg(d, sel, out);
	out->base |= (hi & 0xffffffffULL) << 32;
	if (tss)
		out->type |= 2;
}

void emu_ltr(struct emu_cpu *c, uint16_t sel)
{
	struct x86_seg s;

	load_system(c, sel, &s, true);
	c->tr = s;
}

void emu_lldt(struct emu_cpu *c, uint16_t sel)
{
	struct x86_seg s;

	load_system(c, sel, &s, false);
	c->ldt = s;
}

void emu_syscall(struct emu_cpu *c, uint64_t next_rip)
{
	uint16_t sel = (uint16_t)(c->star >> 32) & 0xfffc;
	uint64_t fl;

	if (!(c->efer & X86_EFER_SCE) || c->mode == EMU_MODE_REAL)
		emu_raise_ud(c);
	fl = emu_rflags(c);
	if (c->efer & X86_EFER_LMA) {
		c->r[X86_RCX] = next_rip;
		c->r[X86_R11] = fl & ~X86_RF;
		seg_flat(&c->seg[X86_CS], sel, 0xb, 0, true);
		c->rip = c->mode == EMU_MODE_LONG64 ? c->lstar : c->cstar;
		fl &= ~(c->syscall_mask | X86_RF);
	} else {
		c->r[X86_RCX] = next_rip & 0xffffffffULL;
		seg_flat(&c->seg[X86_CS], sel, 0xb, 0, false);
		c->rip = c->star & 0xffffffffULL;
		fl &= ~(X86_VM | X86_IF | X86_RF);
	}
	seg_flat(&c->seg[X86_SS], (uint16_t)(sel + 8), 0x3, 0, false);
	emu_set_rflags(c, fl);
	emu_set_mode(c, 0);
	atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
}

void emu_sysret(struct emu_cpu *c, unsigned opsize)
{
	uint16_t sel = (uint16_t)(c->star >> 48);

	if (!(c->efer & X86_EFER_SCE) || c->mode != EMU_MODE_LONG64)
		emu_raise_ud(c);
	if (c->cpl != 0)
		emu_raise_gp(c, 0);
	if (opsize == 8) {
		if (!emu_canonical(c->r[X86_RCX]))
			emu_raise_gp(c, 0);
		seg_flat(&c->seg[X86_CS], (uint16_t)((sel + 16) | 3), 0xb, 3, true);
		c->rip = c->r[X86_RCX];
	} else {
		seg_flat(&c->seg[X86_CS], (uint16_t)(sel | 3), 0xb, 3, false);
		c->rip = c->r[X86_RCX] & 0xffffffffULL;
	}
	seg_flat(&c->seg[X86_SS], (uint16_t)((sel + 8) | 3), 0x3, 3, false);
	emu_set_rflags(c, (c->r[X86_R11] & 0x3c7fd7ULL) | X86_RFLAGS_FIXED);
	emu_set_mode(c, 3);
	atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
}

void emu_int(struct emu_cpu *c, unsigned vec, uint64_t next_rip)
{
	emu_deliver(c, vec & 0xff, 0, false, EMU_EV_SOFT, next_rip);
}
