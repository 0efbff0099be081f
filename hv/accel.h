/*
 * accel.h - the accelerator interface: one vtable, two backends (kvm, emu).
 *
 * The VM core (vm.c) owns threads, run states and devices; a backend only runs vCPUs and
 * moves architectural state in and out. Port I/O and MMIO are dispatched by the backend,
 * inline on the vCPU thread, through vm->io (io.h).
 */
#ifndef HV_ACCEL_H
#define HV_ACCEL_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/x86_state.h"

struct vm;
struct vcpu;

struct accel_ops {
	const char *name;
	/* Every vCPU store to RAM calls dirty_mark_page() before it lands, as the emu's
	 * soft TLB does: copy-before-write (cbw.h) then needs no help from the kernel. */
	bool stores_hooked;

	/* probe - 0 when this backend can run here, else -1 with the reason in @err. */
	int (*probe)(struct hv_error *err);

	/* vm_init - set up per-VM backend state after guest RAM exists (vm->mem). */
	int (*vm_init)(struct vm *vm, struct hv_error *err);
	void (*vm_fini)(struct vm *vm);

	/* vcpu_init - create vCPU @v in its power-on state (x86_state_reset). */
	int (*vcpu_init)(struct vcpu *v, struct hv_error *err);
	void (*vcpu_fini)(struct vcpu *v);

	/*
	 * vcpu_run - run @v on the calling thread until vcpu_kick() is called, the guest
	 * halts forever (interrupts off), the VM shuts down (debug-exit, triple fault:
	 * the backend calls vm_shutdown()), or the deterministic stop point is reached.
	 * Returns 0 in all those cases, -1 on an internal error (@err says why). Stops
	 * at an instruction boundary.
	 */
	int (*vcpu_run)(struct vcpu *v, struct hv_error *err);

	/* vcpu_kick - make a running (or halted) vcpu_run() return soon. Any thread. */
	void (*vcpu_kick)(struct vcpu *v);

	/* get_state / set_state - only while @v is not inside vcpu_run(). */
	int (*get_state)(struct vcpu *v, struct x86_state *s, struct hv_error *err);
	int (*set_state)(struct vcpu *v, const struct x86_state *s, struct hv_error *err);

	/* irq_line - drive interrupt line @gsi (e.g. the UART's IRQ 4). Any thread. */
	void (*irq_line)(struct vm *vm, unsigned gsi, int level);
};

extern const struct accel_ops accel_emu;
extern const struct accel_ops accel_kvm;

/*
 * accel_select - the backend named @name ("auto", "kvm" or "emu"). "auto" picks kvm when
 * it probes fine, else emu. Asking for a backend that cannot run here is an error that
 * says why.
 */
const struct accel_ops *accel_select(const char *name, struct hv_error *err);

#endif
