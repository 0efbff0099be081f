/*
 * apic.h - the emu's local APIC (x2APIC register interface), internal to the system half.
 *
 * Registers live in c->lapic (the xAPIC register page layout that x86_state carries), so
 * get/set_state copy them as they are. Only the timer has state outside the page: its
 * deadline (a guest TSC value, struct emu_sys). The timer's divided clock ticks on a
 * free-running grid of the guest TSC (a decrement whenever TSC is a multiple of the
 * divisor), so the current count alone is enough to rebuild the exact deadline on restore.
 */
#ifndef HV_EMU_APIC_H
#define HV_EMU_APIC_H

#include "hv/accel/emu/system.h"

/* apic_x2apic - true when IA32_APIC_BASE has the APIC enabled in x2APIC mode. */
bool apic_x2apic(struct emu_cpu *c);

/* apic_rdmsr / apic_wrmsr - x2APIC MSRs 0x800-0x8ff; raise #GP on invalid access. */
uint64_t apic_rdmsr(struct emu_cpu *c, uint32_t msr);
void apic_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t val);

/* apic_set_base - IA32_APIC_BASE write (mode transitions checked, #GP if invalid). */
void apic_set_base(struct emu_cpu *c, uint64_t val);

/* apic_accept - set @vec pending in IRR (local source). */
void apic_accept(struct emu_cpu *c, unsigned vec);

/* apic_merge_remote - move interrupts sent by other vCPUs into IRR. */
void apic_merge_remote(struct emu_cpu *c);

/* apic_pending - the vector to deliver now (IRR above PPR), or -1. */
int apic_pending(struct emu_cpu *c);

/* apic_ack - move @vec from IRR to ISR (the CPU takes the interrupt). */
void apic_ack(struct emu_cpu *c, unsigned vec);

/* apic_timer_update - fire the timer if the guest TSC @now has reached its deadline. */
void apic_timer_update(struct emu_cpu *c, uint64_t now);

/*
 * apic_timer_next - guest TSC at which the timer next fires, EMU_NO_DEADLINE if never.
 * @wake_only: only a firing that raises an interrupt (not masked) counts.
 */
uint64_t apic_timer_next(struct emu_cpu *c, bool wake_only);

/* apic_save / apic_load - fill CCR/PPR into c->lapic for get_state; rebuild the timer. */
void apic_save(struct emu_cpu *c, struct x86_lapic *out);
void apic_load(struct emu_cpu *c);

/* apic_tsc_moved - the guest TSC jumps (TSC write): keep the timer's remaining count. */
void apic_tsc_moved(struct emu_cpu *c, uint64_t old_now, uint64_t new_now);

/* apic_tsc_deadline_write - IA32_TSC_DEADLINE was written. */
void apic_tsc_deadline_write(struct emu_cpu *c);

#endif
