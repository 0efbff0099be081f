/*
 * x86_state.c - the power-on and PVH-entry states of a vCPU.
 *
 * Both backends start from these, so a VM's first state record is the same whether the
 * emu or KVM runs it. Values follow the SDM's "processor state after reset" table and
 * what KVM sets in kvm_vcpu_reset().
 */
#include <string.h>

#include "hv/x86_state.h"

#define XSAVE_FCW       0 /* x87 control word (legacy area) */
#define XSAVE_MXCSR     24
#define XSAVE_XSTATE_BV 512 /* XSAVE header: which components the area holds */

static void seg_set(struct x86_seg *s, uint16_t sel, uint64_t base, uint32_t limit, uint8_t type,
                    uint8_t sflag, uint8_t db, uint8_t g)
{
	*s = (struct x86_seg){.base = base,
	                      .limit = limit,
	                      .selector = sel,
	                      .type = type,
	                      .present = 1,
	                      .s = sflag,
	                      .db = db,
	                      .g = g};
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

void x86_state_reset(struct x86_state *s, unsigned apic_id, int bsp)
{
	static const unsigned lvts[] = {LAPIC_LVT_CMCI, LAPIC_LVT_TIMER, LAPIC_LVT_THERM,
	                                LAPIC_LVT_PERF, LAPIC_LVT_LINT0, LAPIC_LVT_LINT1,
	                                LAPIC_LVT_ERROR};

	memset(s, 0, sizeof(*s));
	s->rip = 0xfff0;
	s->rflags = X86_RFLAGS_FIXED;
	s->gpr[X86_RDX] = 0x600; /* processor signature: family 6 */

	for (int i = 0; i < X86_NR_SREGS; i++)
		seg_set(&s->seg[i], 0, 0, 0xffff, 0x3, 1, 0, 0); /* data, read/write, accessed */
	seg_set(&s->seg[X86_CS], 0xf000, 0xffff0000, 0xffff, 0xb, 1, 0, 0);
	seg_set(&s->tr, 0, 0, 0xffff, 0xb, 0, 0, 0);  /* busy TSS */
	seg_set(&s->ldt, 0, 0, 0xffff, 0x2, 0, 0, 0); /* LDT */
	s->gdt.limit = 0xffff;
	s->idt.limit = 0xffff;

	s->cr0 = X86_CR0_ET | X86_CR0_NW | X86_CR0_CD; /* 0x60000010 */
	s->xcr0 = 1;                                   /* x87 only */
	s->dr[6] = 0xffff0ff0;
	s->dr[7] = 0x400;

	s->apic_base = X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE | (bsp ? X86_APIC_BASE_BSP : 0);
	s->misc_enable = 1; /* fast strings */
	s->pat = 0x0007040600070406ULL;

	lapic_set_reg(&s->lapic, LAPIC_ID, apic_id << 24);
	lapic_set_reg(&s->lapic, LAPIC_VERSION, 0x50014); /* max LVT 5, integrated APIC */
	lapic_set_reg(&s->lapic, LAPIC_SVR, 0xff);        /* software-disabled, vector 0xff */
	for (unsigned i = 0; i < sizeof(lvts) / sizeof(lvts[0]); i++)
		lapic_set_reg(&s->lapic, lvts[i], LAPIC_LVT_MASKED);

	put16(&s->xsave[XSAVE_FCW], 0x37f);
	put32(&s->xsave[XSAVE_MXCSR], 0x1f80);
	put64(&s->xsave[XSAVE_XSTATE_BV], 0x3); /* x87 and SSE state present */

	s->mp_state = bsp ? X86_MP_RUNNABLE : X86_MP_UNINITIALIZED;
}

void x86_state_flat32(struct x86_state *s)
{
	for (int i = 0; i < X86_NR_SREGS; i++)
		seg_set(&s->seg[i], 0x18, 0, 0xffffffff, 0x3, 1, 1, 1);
	seg_set(&s->seg[X86_CS], 0x10, 0, 0xffffffff, 0xb, 1, 1, 1);
	seg_set(&s->tr, 0, 0, 0x67, 0xb, 0, 0, 0); /* busy 32-bit TSS */
	s->cr0 = X86_CR0_PE | X86_CR0_ET;
	s->cr3 = 0;
	s->cr4 = 0;
	s->efer = 0;
	s->rflags = X86_RFLAGS_FIXED;
	s->events.interrupt_shadow = 0;
	s->mp_state = X86_MP_RUNNABLE;
}
