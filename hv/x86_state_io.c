/*
 * x86_state_io.c - the vCPU's save/load function: struct x86_state field by field.
 *
 * Every architectural field travels under its own tag (docs/state-format.md lists them),
 * never as a struct dump, so the record does not depend on this struct's layout or
 * padding. Two fields are byte arrays with a layout of their own, fixed by KVM's ABI:
 * the LAPIC register page and the XSAVE area. Loading checks what a hostile stream could
 * use to confuse a backend (descriptor bit fields, mp_state, event vectors).
 */
#include <stdio.h>
#include <string.h>

#include "hv/state_io.h"
#include "hv/x86_state.h"

static const char *const gpr_names[X86_NR_GPRS] = {
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15",
};
static const char *const sreg_names[X86_NR_SREGS] = {"es", "cs", "ss", "ds", "fs", "gs"};

static void seg_io(struct state_io *io, const char *pfx, struct x86_seg *s)
{
	char n[32];

#define SEG(field)                                                                                 \
	do {                                                                                       \
		snprintf(n, sizeof(n), "%s.%s", pfx, #field);                                      \
		STATE_FIELD(io, n, &s->field);                                                     \
	} while (0)
	SEG(base);
	SEG(limit);
	SEG(selector);
	SEG(type);
	SEG(present);
	SEG(dpl);
	SEG(db);
	SEG(s);
	SEG(l);
	SEG(g);
	SEG(avl);
	SEG(unusable);
#undef SEG
	STATE_CHECK(io, s->type < 16 && s->dpl < 4);
	STATE_CHECK(io, s->present <= 1 && s->db <= 1 && s->s <= 1 && s->l <= 1 && s->g <= 1);
	STATE_CHECK(io, s->avl <= 1 && s->unusable <= 1);
}

static void dtable_io(struct state_io *io, const char *pfx, struct x86_dtable *d)
{
	char n[32];

	snprintf(n, sizeof(n), "%s.base", pfx);
	STATE_FIELD(io, n, &d->base);
	snprintf(n, sizeof(n), "%s.limit", pfx);
	STATE_FIELD(io, n, &d->limit);
}

static void events_io(struct state_io *io, struct x86_events *e)
{
	STATE_FIELD(io, "ev.exception_injected", &e->exception_injected);
	STATE_FIELD(io, "ev.exception_nr", &e->exception_nr);
	STATE_FIELD(io, "ev.exception_has_error", &e->exception_has_error);
	STATE_FIELD(io, "ev.exception_pending", &e->exception_pending);
	STATE_FIELD(io, "ev.exception_error", &e->exception_error);
	STATE_FIELD(io, "ev.interrupt_injected", &e->interrupt_injected);
	STATE_FIELD(io, "ev.interrupt_nr", &e->interrupt_nr);
	STATE_FIELD(io, "ev.interrupt_soft", &e->interrupt_soft);
	STATE_FIELD(io, "ev.interrupt_shadow", &e->interrupt_shadow);
	STATE_FIELD(io, "ev.nmi_injected", &e->nmi_injected);
	STATE_FIELD(io, "ev.nmi_pending", &e->nmi_pending);
	STATE_FIELD(io, "ev.nmi_masked", &e->nmi_masked);
	STATE_CHECK(io, e->exception_nr < 32);
	STATE_CHECK(io, e->exception_injected <= 1 && e->exception_pending <= 1);
	STATE_CHECK(io, e->exception_has_error <= 1 && e->interrupt_injected <= 1);
	STATE_CHECK(io, e->interrupt_soft <= 1 && e->nmi_injected <= 1 && e->nmi_masked <= 1);
}

int x86_state_io(struct state_io *io, struct x86_state *s)
{
	char n[16];

	for (int i = 0; i < X86_NR_GPRS; i++)
		STATE_FIELD(io, gpr_names[i], &s->gpr[i]);
	STATE_FIELD(io, "rip", &s->rip);
	STATE_FIELD(io, "rflags", &s->rflags);
	for (int i = 0; i < X86_NR_SREGS; i++)
		seg_io(io, sreg_names[i], &s->seg[i]);
	seg_io(io, "tr", &s->tr);
	seg_io(io, "ldt", &s->ldt);
	dtable_io(io, "gdt", &s->gdt);
	dtable_io(io, "idt", &s->idt);
	STATE_FIELD(io, "cr0", &s->cr0);
	STATE_FIELD(io, "cr2", &s->cr2);
	STATE_FIELD(io, "cr3", &s->cr3);
	STATE_FIELD(io, "cr4", &s->cr4);
	STATE_FIELD(io, "cr8", &s->cr8);
	STATE_FIELD(io, "efer", &s->efer);
	STATE_FIELD(io, "xcr0", &s->xcr0);
	STATE_FIELD(io, "apic_base", &s->apic_base);
	STATE_FIELD(io, "tsc", &s->tsc);
	STATE_FIELD(io, "tsc_deadline", &s->tsc_deadline);
	STATE_FIELD(io, "tsc_aux", &s->tsc_aux);
	STATE_FIELD(io, "star", &s->star);
	STATE_FIELD(io, "lstar", &s->lstar);
	STATE_FIELD(io, "cstar", &s->cstar);
	STATE_FIELD(io, "syscall_mask", &s->syscall_mask);
	STATE_FIELD(io, "kernel_gs_base", &s->kernel_gs_base);
	STATE_FIELD(io, "sysenter_cs", &s->sysenter_cs);
	STATE_FIELD(io, "sysenter_esp", &s->sysenter_esp);
	STATE_FIELD(io, "sysenter_eip", &s->sysenter_eip);
	STATE_FIELD(io, "pat", &s->pat);
	STATE_FIELD(io, "misc_enable", &s->misc_enable);
	for (int i = 0; i < 8; i++) {
		snprintf(n, sizeof(n), "dr%d", i);
		STATE_FIELD(io, n, &s->dr[i]);
	}
	STATE_BYTES(io, "lapic", s->lapic.regs, sizeof(s->lapic.regs));
	events_io(io, &s->events);
	STATE_FIELD(io, "mp_state", &s->mp_state);
	STATE_FIELD(io, "icount", &s->icount);
	STATE_BYTES(io, "xsave", s->xsave, sizeof(s->xsave));

	STATE_CHECK(io, s->mp_state <= X86_MP_UNINITIALIZED);
	STATE_CHECK(io, s->rflags & X86_RFLAGS_FIXED);
	STATE_CHECK(io, s->cr8 < 16);
	return state_io_result(io);
}
