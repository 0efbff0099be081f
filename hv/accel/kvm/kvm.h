/*
 * kvm.h - the KVM backend's VM-level state (what is not per vCPU): the two 8259 PICs and
 * the IOAPIC (KVM_GET_IRQCHIP three times), the PIT (KVM_GET_PIT2) and kvmclock
 * (KVM_GET_CLOCK), as in Firecracker's vm.rs. The record format that carries them in a
 * save file or migration stream belongs to the state-record layer, not here; these are
 * KVM's own structs, so the state only moves between KVM hosts (same-backend migration).
 */
#ifndef HV_ACCEL_KVM_H
#define HV_ACCEL_KVM_H

#include <linux/kvm.h>

#include "hv/error.h"

struct vm;

struct kvm_vm_arch_state {
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/*
 * kvm_vm_get_arch / kvm_vm_set_arch - read or write @vm's VM-level state. @vm must run on
 * accel_kvm and be paused (or not yet started). Restore it after every vCPU's state
 * (vm_set_state) and before vm_start/vm_resume. The clock is restored as a value, not
 * adjusted for the time the VM spent saved (KVM_CLOCK_REALTIME is not used).
 */
int kvm_vm_get_arch(struct vm *vm, struct kvm_vm_arch_state *s, struct hv_error *err);
int kvm_vm_set_arch(struct vm *vm, const struct kvm_vm_arch_state *s, struct hv_error *err);

/*
 * kvm_vm_dirty_mode - how @vm (on accel_kvm) logs dirty pages: "dirty ring, N entries per
 * vCPU" or "KVM_GET_DIRTY_LOG[ + MANUAL_PROTECT2]" (HV_KVM_DIRTY_RING=0 forces the latter).
 */
const char *kvm_vm_dirty_mode(struct vm *vm);

/*
 * kvm_vm_arch_io - save or load @s field by field through @io (hv/state_io.h): the body of
 * the state stream's "kvm-vm" DEVICE record (docs/state-format.md). Loading fills @s
 * (zeroed first) and checks every field KVM would otherwise take on trust; nothing is
 * applied (kvm_vm_set_arch does that). Pads, reserved words and the clock's flags and
 * realtime/host_tsc are not stored. 0 or -1.
 */
#define KVM_VM_ARCH_STATE_VERSION 1
struct state_io;
int kvm_vm_arch_io(struct state_io *io, struct kvm_vm_arch_state *s);

#endif
