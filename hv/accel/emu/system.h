/*
 * system.h - internal interface between the files of the emu's system half (emu.c,
 * mmu.c, except.c, seg.c, sys.c, apic.c). Not used by the instruction half.
 *
 * Time: the guest TSC runs at EMU_TSC_HZ (1 GHz, reported by CPUID 0x15, 0x16 and
 * 0x40000010). It is a base clock plus c->tsc_offset. The base clock is host
 * CLOCK_MONOTONIC nanoseconds, or in deterministic mode icount + halt_ns: one retired
 * instruction is one nanosecond and a halt jumps straight to the next timer deadline.
 * Every timer deadline is kept as a guest TSC value, so a state saved with its TSC
 * (x86_state.tsc) continues identically when restored.
 */
#ifndef HV_EMU_SYSTEM_H
#define HV_EMU_SYSTEM_H

#include <pthread.h>

#include "hv/accel/emu/cpu.h"

#define EMU_TSC_HZ      1000000000ULL /* guest TSC and APIC bus clock */
#define EMU_CHECK_INSNS 4096          /* timer/epoch checks at least this often */
#define EMU_NO_DEADLINE UINT64_MAX
#define EMU_NO_SHADOW   UINT64_MAX

/* Kinds of event delivery (except.c). */
enum emu_event_kind {
	EMU_EV_EXC,  /* exception raised by an instruction (fault) */
	EMU_EV_SOFT, /* int n / int3 / into: gate DPL checked, returns after the insn */
	EMU_EV_EXT,  /* external (APIC) interrupt */
};

/* System-half private state of one CPU (c->sys). */
struct emu_sys {
	/* Time (see above). */
	uint64_t halt_ns;

	/* LAPIC timer: armed, expires when the guest TSC reaches timer_deadline. */
	bool timer_armed;
	uint64_t timer_deadline;
	uint64_t timer_period; /* TSC ticks for periodic mode, else 0 */

	/* The exception emu_raise() recorded, and the one being delivered. */
	unsigned raise_vec, cur_vec;
	uint32_t raise_err;
	bool raise_has_err;

	/* Interrupt shadow: the icount at which the run loop first saw it. */
	uint64_t shadow_at;

	/* Interrupts sent by other vCPUs (IPIs), merged into IRR by the owner. */
	_Atomic uint64_t remote_irr[4];

	/* Halt wait, woken by emu_sys_kick(). */
	pthread_mutex_t lock;
	pthread_cond_t cond;

	/* Dirty-log grace period (emu.c): inside vcpu_run, and the last epoch acked. */
	_Atomic int active;
	_Atomic uint64_t ack_epoch;
	bool dead;     /* halted with interrupts off: counted in the VM's dead count */
	bool shutdown; /* triple fault: the VM is going down */
	bool in_run;   /* a run loop's fault_jmp is armed */
	bool uninit;   /* mp_state UNINITIALIZED: an AP waiting for a start it never gets */
};

static inline struct emu_sys *emu_sys(struct emu_cpu *c)
{
	return (struct emu_sys *)c->sys;
}

/* ---- emu.c ---- */
uint64_t emu_now(struct emu_cpu *c);                 /* guest TSC now */
void emu_set_tsc(struct emu_cpu *c, uint64_t tsc);   /* make the guest TSC read @tsc now */
void emu_sys_kick(struct emu_cpu *c, uint32_t bits); /* attention + wake a halted CPU */
/*
 * emu_send_ipi - fixed interrupt @vec from @c to the vCPUs of its VM selected by the ICR
 * destination shorthand @sh (0: APIC ID @dest, 0xffffffff for all; 2: all; 3: all but
 * self). Self-delivery goes to c's IRR directly.
 */
void emu_send_ipi(struct emu_cpu *c, uint32_t dest, unsigned sh, unsigned vec);

/* ---- mmu.c ---- */
/* Implicit supervisor accesses (descriptor tables, TSS), whatever the CPL. */
uint64_t emu_sys_read(struct emu_cpu *c, uint64_t lin, unsigned size);
void emu_sys_write(struct emu_cpu *c, uint64_t lin, unsigned size, uint64_t val);
/* emu_peek - copy up to @len bytes at @lin without faulting; returns bytes copied. */
unsigned emu_peek(struct emu_cpu *c, uint64_t lin, void *buf, unsigned len);
bool emu_canonical(uint64_t a);

/* ---- seg.c ---- */
/* emu_set_mode - recompute c->mode from CR0, EFER and CS; flush the TLB on a CPL change. */
void emu_set_mode(struct emu_cpu *c, int cpl);
/*
 * emu_fetch_desc - read the 8-byte descriptor for @sel (GDT or LDT) into *@d. Raises
 * @vec (#GP or #TS) with the selector as error code when outside the table.
 */
void emu_fetch_desc(struct emu_cpu *c, uint16_t sel, uint64_t *d, unsigned vec, uint32_t ext);
void emu_desc_to_seg(uint64_t d, uint16_t sel, struct x86_seg *s);
/*
 * emu_check_ss - validate @sel as the stack segment for privilege @cpl and fill @out
 * (null allowed only with @allow_null: 64-bit code below CPL 3). Raises #GP/#SS.
 */
void emu_check_ss(struct emu_cpu *c, uint16_t sel, unsigned cpl, bool allow_null,
                  struct x86_seg *out);
/* emu_seg_null - a null ("unusable") segment register with selector @sel. */
void emu_seg_null(struct x86_seg *s, uint16_t sel, unsigned dpl);

/* ---- except.c ---- */
void emu_deliver(struct emu_cpu *c, unsigned vec, uint32_t err, bool has_err, int kind,
                 uint64_t ret_rip);
/*
 * emu_exc_unwound - called by the run loop after emu_raise() longjmp'd: combines the new
 * exception with one being delivered (#DF), delivers it. Returns 0 when delivered, -1 on
 * a triple fault (nothing delivered). May longjmp again (nested fault).
 */
int emu_exc_unwound(struct emu_cpu *c);

#endif
