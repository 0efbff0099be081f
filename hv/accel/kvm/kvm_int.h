/*
 * kvm_int.h - what the KVM backend's files share: per-VM and per-vCPU state and the
 * functions one file provides to another. Not for use outside hv/accel/kvm/.
 *
 * kvm.c        probe, VM and vCPU set-up, the run loop, kicks, interrupt lines
 * kvm_state.c  architectural state in and out (Firecracker's order), VM-level state
 * kvm_cpuid.c  the CPUID table a vCPU sees
 * kvm_dirty.c  KVM's dirty log merged into the slot bitmaps (struct dirty_source)
 */
#ifndef HV_ACCEL_KVM_INT_H
#define HV_ACCEL_KVM_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "hv/error.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

struct vm;
struct vcpu;

/* The named MSRs of struct x86_state that travel through KVM_{GET,SET}_MSRS. */
#define KVM_NR_STATE_MSRS 13

struct kvm_vmstate {
	struct vm *vm;
	int sys_fd; /* /dev/kvm */
	int vm_fd;
	int run_size;   /* KVM_GET_VCPU_MMAP_SIZE */
	int xsave_size; /* bytes of KVM_GET_XSAVE2 (4096 with plain KVM_GET_XSAVE) */
	bool has_xsave, has_xcrs;
	bool tsc_deadline;        /* KVM_CAP_TSC_DEADLINE_TIMER */
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, unfiltered */

	/* Dirty log (kvm_dirty.c). */
	uint32_t ring_entries;               /* dirty ring per vCPU; 0: KVM_GET_DIRTY_LOG */
	bool ring_kick;                      /* PML is on: kick vCPUs before reaping */
	_Atomic uint64_t ring_fulls;         /* KVM_EXIT_DIRTY_RING_FULL exits so far */
	pthread_mutex_t ring_lock;           /* reaping (harvester and ring-full exits) */
	bool manual_protect;                 /* MANUAL_DIRTY_LOG_PROTECT2 enabled */
	bool collected;                      /* collect() ran since the last flush() */
	uint64_t *kvm_bitmap[MEM_MAX_SLOTS]; /* KVM_GET_DIRTY_LOG buffers */

	/* Halt with interrupts off (kvm.c): vCPUs found dead in the current epoch. */
	pthread_mutex_t halt_lock;
	uint64_t halt_epoch;
};

struct kvm_vcpustate {
	struct vcpu *vcpu;
	int fd;
	struct kvm_run *run; /* mmapped, run_size bytes */
	bool need_complete;  /* last exit was I/O or MMIO: KVM_RUN again before stopping */

	/* Kicks: a SIGUSR1 to the thread inside vcpu_run (see kvm.c). */
	pthread_mutex_t kick_lock;
	pthread_t thread;
	bool in_run; /* under kick_lock */

	/* Which of the KVM_NR_STATE_MSRS this KVM reads and writes (bit i: entry i). */
	uint32_t msr_ok;

	/* KVM_RUN calls entered and returned (kvm_dirty.c waits for a PML flush). */
	_Atomic uint64_t runs_in, runs_out;
	/* Dirty ring (kvm_dirty.c): mmapped ring_entries entries, next one to reap. */
	struct kvm_dirty_gfn *ring;
	uint32_t ring_next;

	/* Halt check (kvm.c): a periodic timer kicks this vCPU out of KVM_RUN. */
	timer_t halt_timer;
	bool has_timer;
	bool dead;           /* under halt_lock: halted with nothing that can wake it */
	uint64_t dead_epoch; /* under halt_lock: the halt_epoch it was last found dead in */
};

/* kvm_cpuid.c */

/*
 * kvm_cpuid_setup - give vCPU @id (of @nvcpus) its CPUID: KVM's supported table with the
 * hypervisor bit, APIC id, x2APIC, the TSC-deadline timer and a timing leaf (0x40000010,
 * TSC kHz) patched in, and the paravirtual features whose state x86_state cannot carry
 * taken out. Calls KVM_SET_CPUID2.
 */
int kvm_cpuid_setup(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, unsigned id, unsigned nvcpus,
                    struct hv_error *err);

/* kvm_state.c */

/* kvm_state_probe_msrs - find which named MSRs this KVM handles (fills kc->msr_ok). */
int kvm_state_probe_msrs(struct kvm_vcpustate *kc, unsigned id, struct hv_error *err);

/* kvm_state_init_msrs - the power-on MSR values KVM does not set (fast strings). */
int kvm_state_init_msrs(struct kvm_vcpustate *kc, unsigned id, struct hv_error *err);

/* kvm_state_get / kvm_state_set - accel_ops.get_state / set_state. */
int kvm_state_get(struct vcpu *v, struct x86_state *s, struct hv_error *err);
int kvm_state_set(struct vcpu *v, const struct x86_state *s, struct hv_error *err);

/* kvm.c */

/* kvm_check_cap - KVM_CHECK_EXTENSION on the VM (0 when absent). */
int kvm_check_cap(struct kvm_vmstate *kv, long cap);

/* kvm_dirty.c */

/*
 * kvm_dirty_init - enable MANUAL_DIRTY_LOG_PROTECT2 (+ INITIALLY_SET) when KVM has it and
 * allocate the KVM_GET_DIRTY_LOG buffers. Before any memslot exists.
 */
int kvm_dirty_init(struct kvm_vmstate *kv, struct hv_error *err);
void kvm_dirty_fini(struct kvm_vmstate *kv);
extern const struct dirty_source kvm_dirty_source;

/* kvm_dirty_vcpu_init / _fini - map / unmap vCPU @kc's dirty ring (if the ring is on). */
int kvm_dirty_vcpu_init(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, struct hv_error *err);
void kvm_dirty_vcpu_fini(struct kvm_vmstate *kv, struct kvm_vcpustate *kc);

/* kvm_dirty_ring_full - KVM_EXIT_DIRTY_RING_FULL: reap @kc's ring (vCPU thread). */
void kvm_dirty_ring_full(struct kvm_vmstate *kv, struct kvm_vcpustate *kc);

/* kvm_dirty_mode - how @kv logs dirty pages, for messages and tests. */
const char *kvm_dirty_mode(struct kvm_vmstate *kv);

#endif
