/*
 * apic.c - the emu's local APIC: x2APIC MSRs, interrupt priority, EOI, IPIs and the timer.
 *
 * The registers are the xAPIC page in c->lapic, so state save/restore is a copy. The timer
 * counts the guest TSC (1 GHz) divided by the DCR divisor on a grid fixed to the TSC: the
 * count drops whenever TSC is a multiple of the divisor, so a count of N loaded at time T
 * expires at (T / div + N) * div and the current count at time t is deadline/div - t/div.
 * That makes CCR a lossless encoding of the deadline: apic_load() rebuilds it exactly,
 * which deterministic save/restore needs. Modes: one-shot, periodic (missed periods are
 * coalesced into one interrupt) and TSC-deadline.
 *
 * Not modelled: xAPIC MMIO (the guests use x2APIC), logical destinations, INIT/SIPI/NMI
 * IPIs (ignored), level-triggered interrupts (no IOAPIC), and ESR latching (errors appear
 * in ESR at once; writing ESR clears it).
 */
#include "hv/accel/emu/apic.h"

#define LVT_MODE(v)      (((v) >> 17) & 3)
#define MODE_ONESHOT     0
#define MODE_PERIODIC    1
#define MODE_DEADLINE    2
#define ESR_RECV_ILLEGAL (1U << 6)
#define ESR_SEND_ILLEGAL (1U << 5)

static uint32_t reg(struct emu_cpu *c, unsigned off)
{
	return lapic_reg(&c->lapic, off);
}

static void set_reg(struct emu_cpu *c, unsigned off, uint32_t v)
{
	lapic_set_reg(&c->lapic, off, v);
}

static void attn(struct emu_cpu *c, uint32_t bits)
{
	atomic_fetch_or_explicit(&c->attn, bits, memory_order_relaxed);
}

bool apic_x2apic(struct emu_cpu *c)
{
	uint64_t m = X86_APIC_BASE_ENABLE | X86_APIC_BASE_EXTD;

	return (c->apic_base & m) == m;
}

static bool sw_enabled(struct emu_cpu *c)
{
	return reg(c, LAPIC_SVR) & LAPIC_SVR_ENABLE;
}

/* Highest set vector in the 256-bit register array at @base, or -1. */
static int highest(struct emu_cpu *c, unsigned base)
{
	for (int i = 7; i >= 0; i--) {
		uint32_t v = reg(c, base + (unsigned)i * 16);
		if (v)
			return i * 32 + 31 - __builtin_clz(v);
	}
	return -1;
}

static void vec_bit(struct emu_cpu *c, unsigned base, unsigned vec, bool on)
{
	unsigned off = base + (vec / 32) * 16;
	uint32_t v = reg(c, off), b = 1U << (vec % 32);

	set_reg(c, off, on ? v | b : v & ~b);
}

static uint32_t ppr(struct emu_cpu *c)
{
	uint32_t tpr = reg(c, LAPIC_TPR) & 0xff;
	int isrv = highest(c, LAPIC_ISR);
	uint32_t isr = isrv < 0 ? 0 : (uint32_t)isrv;

	return (tpr >> 4) >= (isr >> 4) ? tpr : isr & 0xf0;
}

void apic_accept(struct emu_cpu *c, unsigned vec)
{
	if (vec < 16) {
		set_reg(c, LAPIC_ESR, reg(c, LAPIC_ESR) | ESR_RECV_ILLEGAL);
		return;
	}
	vec_bit(c, LAPIC_IRR, vec, true);
	attn(c, EMU_ATTN_IRQ);
}

void apic_merge_remote(struct emu_cpu *c)
{
	struct emu_sys *s = emu_sys(c);

	for (unsigned i = 0; i < 4; i++) {
		uint64_t bits;

		if (!atomic_load_explicit(&s->remote_irr[i], memory_order_relaxed))
			continue;
		bits = atomic_exchange_explicit(&s->remote_irr[i], 0, memory_order_acquire);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			apic_accept(c, i * 64 + b);
		}
	}
}

int apic_pending(struct emu_cpu *c)
{
	int v;

	if (!(c->apic_base & X86_APIC_BASE_ENABLE))
		return -1;
	v = highest(c, LAPIC_IRR);
	if (v < 0 || ((uint32_t)v & 0xf0) <= (ppr(c) & 0xf0))
		return -1;
	return v;
}

void apic_ack(struct emu_cpu *c, unsigned vec)
{
	vec_bit(c, LAPIC_IRR, vec, false);
	vec_bit(c, LAPIC_ISR, vec, true);
}

/* ---- timer ---- */

static uint64_t timer_div(struct emu_cpu *c)
{
	uint32_t dcr = reg(c, LAPIC_TIMER_DCR), v = (dcr & 3) | ((dcr >> 1) & 4);

	return v == 7 ? 1 : 2ULL << v;
}

static unsigned timer_mode(struct emu_cpu *c)
{
	return LVT_MODE(reg(c, LAPIC_LVT_TIMER));
}

static void timer_arm(struct emu_cpu *c, uint64_t now, uint32_t count)
{
	struct emu_sys *s = emu_sys(c);
	uint64_t div = timer_div(c);

	s->timer_armed = count != 0;
	s->timer_deadline = (now / div + count) * div;
	s->timer_period = timer_mode(c) == MODE_PERIODIC ? (uint64_t)count * div : 0;
	attn(c, EMU_ATTN_TIMER);
}

static uint32_t timer_count(struct emu_cpu *c, uint64_t now)
{
	struct emu_sys *s = emu_sys(c);
	uint64_t div = timer_div(c);

	if (!s->timer_armed || timer_mode(c) == MODE_DEADLINE || now >= s->timer_deadline)
		return 0;
	return (uint32_t)(s->timer_deadline / div - now / div);
}

void apic_timer_update(struct emu_cpu *c, uint64_t now)
{
	struct emu_sys *s = emu_sys(c);
	uint32_t lvt = reg(c, LAPIC_LVT_TIMER);

	if (!s->timer_armed || now < s->timer_deadline)
		return;
	if (!(lvt & LAPIC_LVT_MASKED) && sw_enabled(c))
		apic_accept(c, lvt & 0xff);
	if (LVT_MODE(lvt) == MODE_DEADLINE) {
		s->timer_armed = false;
		c->tsc_deadline = 0;
	} else if (s->timer_period) {
		s->timer_deadline +=
		    ((now - s->timer_deadline) / s->timer_period + 1) * s->timer_period;
	} else {
		s->timer_armed = false;
	}
}

uint64_t apic_timer_next(struct emu_cpu *c, bool wake_only)
{
	struct emu_sys *s = emu_sys(c);

	if (!s->timer_armed)
		return EMU_NO_DEADLINE;
	if (wake_only && ((reg(c, LAPIC_LVT_TIMER) & LAPIC_LVT_MASKED) || !sw_enabled(c) ||
	                  !(c->apic_base & X86_APIC_BASE_ENABLE)))
		return EMU_NO_DEADLINE;
	return s->timer_deadline;
}

void apic_tsc_deadline_write(struct emu_cpu *c)
{
	struct emu_sys *s = emu_sys(c);

	if (timer_mode(c) != MODE_DEADLINE)
		return;
	s->timer_armed = c->tsc_deadline != 0;
	s->timer_deadline = c->tsc_deadline;
	s->timer_period = 0;
	attn(c, EMU_ATTN_TIMER);
}

void apic_tsc_moved(struct emu_cpu *c, uint64_t old_now, uint64_t new_now)
{
	if (timer_mode(c) == MODE_DEADLINE || !emu_sys(c)->timer_armed)
		return;
	timer_arm(c, new_now, timer_count(c, old_now));
	if (timer_mode(c) == MODE_PERIODIC)
		emu_sys(c)->timer_period = (uint64_t)reg(c, LAPIC_TIMER_ICR) * timer_div(c);
}

void apic_save(struct emu_cpu *c, struct x86_lapic *out)
{
	uint64_t now = emu_now(c);

	apic_timer_update(c, now);
	set_reg(c, LAPIC_PPR, ppr(c));
	set_reg(c, LAPIC_TIMER_CCR, timer_count(c, now));
	*out = c->lapic;
}

void apic_load(struct emu_cpu *c)
{
	struct emu_sys *s = emu_sys(c);
	uint64_t now = emu_now(c);
	uint32_t ccr = reg(c, LAPIC_TIMER_CCR);

	s->timer_armed = false;
	s->timer_period = 0;
	if (timer_mode(c) == MODE_DEADLINE) {
		apic_tsc_deadline_write(c);
	} else if (ccr) {
		timer_arm(c, now, ccr);
		if (timer_mode(c) == MODE_PERIODIC)
			s->timer_period = (uint64_t)reg(c, LAPIC_TIMER_ICR) * timer_div(c);
	}
	attn(c, EMU_ATTN_TIMER | EMU_ATTN_IRQ);
}

/* ---- registers ---- */

void apic_set_base(struct emu_cpu *c, uint64_t val)
{
	uint64_t en = X86_APIC_BASE_ENABLE, x2 = X86_APIC_BASE_EXTD;
	uint64_t old = c->apic_base;
	bool was_x2 = apic_x2apic(c), was_on = old & en;

	if (val & ~(0xfffffffff000ULL | en | x2 | X86_APIC_BASE_BSP))
		emu_raise_gp(c, 0);
	if ((val & x2) && !(val & en))
		emu_raise_gp(c, 0); /* x2APIC without the APIC enabled: invalid */
	if (was_x2 && (val & en) && !(val & x2))
		emu_raise_gp(c, 0); /* x2APIC -> xAPIC needs a disable in between */
	if (!was_on && (val & x2))
		emu_raise_gp(c, 0); /* disabled -> x2APIC: invalid */
	if (!was_x2 && (val & x2)) {
		uint32_t id = reg(c, LAPIC_ID) >> 24;
		set_reg(c, LAPIC_ID, id);
		set_reg(c, LAPIC_LDR, ((id >> 4) << 16) | (1U << (id & 0xf)));
	} else if (was_x2 && !(val & x2)) {
		set_reg(c, LAPIC_ID, reg(c, LAPIC_ID) << 24);
		set_reg(c, LAPIC_LDR, 0);
	}
	c->apic_base = (val & ~X86_APIC_BASE_BSP) | (old & X86_APIC_BASE_BSP);
	attn(c, EMU_ATTN_IRQ | EMU_ATTN_TIMER);
}

static bool in_vec_array(unsigned off)
{
	return (off & 0xf) == 0 && ((off >= LAPIC_ISR && off < LAPIC_ISR + 0x80) ||
	                            (off >= LAPIC_TMR && off < LAPIC_TMR + 0x80) ||
	                            (off >= LAPIC_IRR && off < LAPIC_IRR + 0x80));
}

uint64_t apic_rdmsr(struct emu_cpu *c, uint32_t msr)
{
	unsigned off = (msr - MSR_X2APIC_BASE) << 4;

	if (!apic_x2apic(c) || msr < MSR_X2APIC_BASE || msr > MSR_X2APIC_BASE + 0xff)
		emu_raise_gp(c, 0);
	switch (off) {
	case LAPIC_ID:
	case LAPIC_VERSION:
	case LAPIC_TPR:
	case LAPIC_LDR:
	case LAPIC_SVR:
	case LAPIC_ESR:
	case LAPIC_LVT_CMCI:
	case LAPIC_LVT_TIMER:
	case LAPIC_LVT_THERM:
	case LAPIC_LVT_PERF:
	case LAPIC_LVT_LINT0:
	case LAPIC_LVT_LINT1:
	case LAPIC_LVT_ERROR:
	case LAPIC_TIMER_ICR:
	case LAPIC_TIMER_DCR: return reg(c, off);
	case LAPIC_PPR: return ppr(c);
	case LAPIC_TIMER_CCR: {
		uint64_t now = emu_now(c);
		apic_timer_update(c, now);
		return timer_count(c, now);
	}
	case LAPIC_ICR: return reg(c, LAPIC_ICR) | (uint64_t)reg(c, LAPIC_ICR2) << 32;
	}
	if (in_vec_array(off))
		return reg(c, off);
	emu_raise_gp(c, 0);
}

static void send_icr(struct emu_cpu *c, uint64_t icr)
{
	unsigned vec = icr & 0xff, mode = (icr >> 8) & 7, sh = (icr >> 18) & 3;

	if (mode != 0 || (icr & (1U << 11)))
		return; /* only fixed, physical-destination IPIs */
	if (vec < 16) {
		set_reg(c, LAPIC_ESR, reg(c, LAPIC_ESR) | ESR_SEND_ILLEGAL);
		return;
	}
	if (sh == 1 || ((sh == 0 || sh == 2) && !c->vm &&
	                ((uint32_t)(icr >> 32) == reg(c, LAPIC_ID) || sh == 2))) {
		apic_accept(c, vec);
		return;
	}
	emu_send_ipi(c, (uint32_t)(icr >> 32), sh, vec);
}

void apic_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t val)
{
	unsigned off = (msr - MSR_X2APIC_BASE) << 4;
	uint32_t v = (uint32_t)val, lvt;

	if (!apic_x2apic(c) || msr < MSR_X2APIC_BASE || msr > MSR_X2APIC_BASE + 0xff)
		emu_raise_gp(c, 0);
	if (off != LAPIC_ICR && (val >> 32))
		emu_raise_gp(c, 0);
	switch (off) {
	case LAPIC_TPR:
		set_reg(c, off, v & 0xff);
		attn(c, EMU_ATTN_IRQ);
		return;
	case LAPIC_EOI: {
		int isr = highest(c, LAPIC_ISR);
		if (v)
			emu_raise_gp(c, 0);
		if (isr >= 0)
			vec_bit(c, LAPIC_ISR, (unsigned)isr, false);
		attn(c, EMU_ATTN_IRQ);
		return;
	}
	case LAPIC_SVR:
		set_reg(c, off, v & 0x1ff);
		if (!(v & LAPIC_SVR_ENABLE)) {
			static const unsigned lvts[] = {
			    LAPIC_LVT_CMCI,  LAPIC_LVT_TIMER, LAPIC_LVT_THERM, LAPIC_LVT_PERF,
			    LAPIC_LVT_LINT0, LAPIC_LVT_LINT1, LAPIC_LVT_ERROR};
			for (unsigned i = 0; i < sizeof(lvts) / sizeof(lvts[0]); i++)
				set_reg(c, lvts[i], reg(c, lvts[i]) | LAPIC_LVT_MASKED);
		}
		attn(c, EMU_ATTN_IRQ | EMU_ATTN_TIMER);
		return;
	case LAPIC_ESR:
		if (v)
			emu_raise_gp(c, 0);
		set_reg(c, off, 0);
		return;
	case LAPIC_LVT_TIMER:
		lvt = v & (0xff | LAPIC_LVT_MASKED | (3U << 17));
		if (!sw_enabled(c))
			lvt |= LAPIC_LVT_MASKED;
		if (LVT_MODE(lvt) == 3)
			emu_raise_gp(c, 0);
		if (LVT_MODE(lvt) != timer_mode(c)) {
			/* A mode change disarms the timer (TSC-deadline rearms from the MSR). */
			emu_sys(c)->timer_armed = false;
			set_reg(c, off, lvt);
			apic_tsc_deadline_write(c);
		}
		set_reg(c, off, lvt);
		attn(c, EMU_ATTN_TIMER | EMU_ATTN_IRQ);
		return;
	case LAPIC_LVT_LINT0:
	case LAPIC_LVT_LINT1:
		lvt = v & (0xff | 0x700 | (1U << 13) | (1U << 15) | LAPIC_LVT_MASKED);
		set_reg(c, off, sw_enabled(c) ? lvt : lvt | LAPIC_LVT_MASKED);
		return;
	case LAPIC_LVT_CMCI:
	case LAPIC_LVT_THERM:
	case LAPIC_LVT_PERF:
	case LAPIC_LVT_ERROR:
		lvt = v & (0xff | 0x700 | LAPIC_LVT_MASKED);
		set_reg(c, off, sw_enabled(c) ? lvt : lvt | LAPIC_LVT_MASKED);
		return;
	case LAPIC_TIMER_ICR:
		set_reg(c, off, v);
		if (timer_mode(c) != MODE_DEADLINE)
			timer_arm(c, emu_now(c), v);
		return;
	case LAPIC_TIMER_DCR: {
		uint64_t now = emu_now(c);
		uint32_t left;
		apic_timer_update(c, now);
		left = timer_count(c, now);
		set_reg(c, off, v & 0xb);
		if (emu_sys(c)->timer_armed && timer_mode(c) != MODE_DEADLINE) {
			timer_arm(c, now, left);
			if (timer_mode(c) == MODE_PERIODIC)
				emu_sys(c)->timer_period =
				    (uint64_t)reg(c, LAPIC_TIMER_ICR) * timer_div(c);
		}
		return;
	}
	case LAPIC_ICR:
		set_reg(c, LAPIC_ICR, v & ~(1U << 12));
		set_reg(c, LAPIC_ICR2, (uint32_t)(val >> 32));
		send_icr(c, val);
		return;
	case LAPIC_SELF_IPI: apic_accept(c, v & 0xff); return;
	}
	emu_raise_gp(c, 0);
}
