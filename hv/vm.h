/*
 * vm.h - a virtual machine: guest RAM, vCPUs (one thread each), devices and the run
 * state machine created -> running <-> paused -> shut down.
 *
 * vm_pause() stops every vCPU at an instruction boundary and returns only when all of
 * them have stopped, so a caller that gets 0 back may read and write all guest state.
 *
 * Each vCPU thread loops: sleep out a throttle slice if one was asked for, park while a
 * pause is requested, then call accel->vcpu_run(). Stopping a vCPU therefore means: set
 * vm->stop_req (pause or shutdown) or its own throttle_req, then kick it.
 * The contract for backends:
 *  - vcpu_run checks vcpu_should_stop() on entry and whenever it sees a kick, and returns
 *    0 at an instruction boundary when it is true (kicks may arrive before vcpu_run is
 *    entered; vm_pause re-kicks every 10 ms until all vCPUs have parked, so a lost kick
 *    only costs latency);
 *  - vcpu_run returning 0 while no stop is requested is simply called again, so a backend
 *    must block (not spin) while its vCPU is halted;
 *  - at the deterministic stop point (icount == vm->stop_at_icount) the backend calls
 *    vm_request_pause() and returns 0; the thread parks, and the last vCPU to park moves
 *    the VM to VM_PAUSED, which wakes vm_run_until();
 *  - on a guest-initiated end (debug-exit, triple fault, halt with nothing to wake it)
 *    the backend calls vm_shutdown() and returns 0; on an internal error it returns -1
 *    and the VM shuts down with VM_EXIT_ERROR and the backend's message.
 */
#ifndef HV_VM_H
#define HV_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/accel.h"
#include "hv/error.h"
#include "hv/io.h"
#include "hv/mem.h"

#define VM_MAX_VCPUS 64
#define VM_NAME_MAX  64
#define VM_CMDLINE_MAX 4096
#define VM_KERNEL_MAX  256

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_SHUTDOWN };

/* Why a VM shut down. */
enum vm_exit_kind {
	VM_EXIT_NONE,
	VM_EXIT_GUEST,	     /* debug-exit port: code is the byte the guest wrote */
	VM_EXIT_TRIPLE_FAULT,
	VM_EXIT_HALTED,	     /* every vCPU halted with interrupts off */
	VM_EXIT_ERROR,	     /* internal error; reason says what */
	VM_EXIT_REQUESTED,   /* the VMM asked (quit command, signal) */
};

/* Exit status of `hv run` when the VM did not exit through the debug port. */
#define VM_STATUS_CRASH 125

struct vm_config {
	char name[VM_NAME_MAX];
	uint64_t ram_size;	 /* bytes */
	unsigned nvcpus;
	bool deterministic;	 /* emu only: time derives from the instruction count */
	/* Identity kept for state records (VM_CONFIG); the VMM itself does not use them. */
	char cmdline[VM_CMDLINE_MAX]; /* the kernel command line as given */
	char kernel[VM_KERNEL_MAX];   /* the kernel image's file name */
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	pthread_t thread;
	void *accel;		/* backend-private */
	bool parked;		/* under vm->lock: stopped at an instruction boundary */
	bool thread_started;	/* vm_start() created this vCPU's thread */
	_Atomic bool throttle_req; /* the throttle wants it out of vcpu_run for a sleep */
};

struct uart;
struct debug_exit;
struct i8042;

struct vm {
	struct vm_config cfg;
	struct guest_mem mem;
	struct io_bus io;
	const struct accel_ops *accel;
	void *accel_vm;		/* backend-private per-VM state */
	struct vcpu vcpu[VM_MAX_VCPUS];
	unsigned nvcpus;

	pthread_mutex_t lock;	/* protects everything below */
	pthread_cond_t cond;	/* signalled on every run-state change */
	enum vm_state state;
	bool pause_req;		/* vCPUs must park at the next boundary */
	bool threads_started;
	unsigned nparked;
	unsigned nlive;		/* vCPU threads that have not exited */
	enum vm_exit_kind exit_kind;
	int exit_code;
	char exit_reason[256];

	/* Deterministic stop: vCPU 0 stops (the VM pauses) when its icount reaches this. */
	_Atomic uint64_t stop_at_icount; /* 0 = none */

	/* vm_should_stop(): set with pause_req or by shutdown, cleared by resume. */
	_Atomic bool stop_req;
	bool sync_ready;	/* lock and cond initialised */
	bool accel_ready;	/* accel->vm_init succeeded */
	unsigned nvcpus_ready;	/* vCPUs for which accel->vcpu_init succeeded */

	/* Throttling (vm_set_throttle). pct is written under lock, read without it. */
	_Atomic unsigned throttle_pct;	/* 0 = off */
	_Atomic uint64_t throttle_slept_ns; /* all vCPUs' throttle sleeps, in total */
	pthread_t throttle_thread;
	bool throttle_started;	/* throttle_thread exists (until vm_destroy) */
	bool throttle_quit;	/* under lock: vm_destroy tells throttle_thread to end */

	struct uart *uart;
	struct debug_exit *dbgexit;
	struct i8042 *kbd;	/* keyboard controller: its reset ends the VM */
	int console_out;	/* fd the UART writes to (stdout by default) */
	int console_in;		/* fd the UART reads from, -1 for none */
};

/*
 * vm_create - allocate RAM, initialise the backend @accel and @cfg->nvcpus vCPUs, and
 * register the standard devices (UART on console_out/console_in, debug-exit, i8042). The VM is
 * left in VM_CREATED; nothing runs until vm_start(). On failure everything is undone.
 */
int vm_create(struct vm *vm, const struct vm_config *cfg, const struct accel_ops *accel,
	      int console_out, int console_in, struct hv_error *err);

/* vm_start - start one thread per vCPU; the VM becomes VM_RUNNING. */
int vm_start(struct vm *vm, struct hv_error *err);

/*
 * vm_pause - stop every vCPU at an instruction boundary; returns 0 once all have
 * stopped (VM_PAUSED), -1 if the VM is not running.
 */
int vm_pause(struct vm *vm, struct hv_error *err);

/* vm_resume - let paused vCPUs run again. */
int vm_resume(struct vm *vm, struct hv_error *err);

/*
 * vm_run_until - deterministic mode only (one vCPU): run until vCPU 0 has retired
 * exactly @icount instructions in total, then pause. Starts the VM if it is still
 * VM_CREATED, resumes it if paused. Returns 0 when paused there, 1 if the VM shut down
 * first, -1 on error (not deterministic, already past @icount, or the backend stopped
 * somewhere else).
 */
int vm_run_until(struct vm *vm, uint64_t icount, struct hv_error *err);

/*
 * vm_shutdown - record why the VM ends and stop every vCPU. Callable from any thread,
 * including vCPU threads and device handlers; the first call wins.
 */
void vm_shutdown(struct vm *vm, enum vm_exit_kind kind, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * vm_request_pause - for backends (and any thread): ask every vCPU to park, without
 * waiting. The VM becomes VM_PAUSED once all have parked (see vm_run_until). No-op once
 * shut down.
 */
void vm_request_pause(struct vm *vm);

/*
 * vm_set_throttle - slow every vCPU down for live migration's auto-converge: while @pct
 * (0..99, larger is taken as 99; 0 turns it off) is non-zero, each vCPU repeatedly runs
 * for about 10 ms and then sleeps 10 ms * pct / (100 - pct), so it sleeps about pct% of
 * wall time (the scheme of QEMU's cpu-throttle). Callable from any thread between
 * vm_create and vm_destroy, in any run state; a new percentage applies from the next
 * slice, and 0 also ends the slices being slept.
 *
 * A throttled VM stays VM_RUNNING: sleeping is not a run-state change and sends no
 * event. vm_pause, vm_request_pause (deterministic stops) and vm_shutdown cut a sleep
 * short rather than wait for it. A sleep is not guest time in deterministic mode, so a
 * run to instruction N ends in the same state with the throttle on or off; otherwise the
 * guest's clocks run on while it sleeps, as on a host that deschedules it. Counted in
 * vm->throttle_slept_ns (nanoseconds, all vCPUs together). The first non-zero
 * percentage starts a timer thread that lives until vm_destroy; if it cannot be
 * created the throttle stays off and vm_throttle() reads 0.
 */
void vm_set_throttle(struct vm *vm, unsigned pct);

/* vm_throttle - the throttle percentage in force (0 = off). Any thread, no lock. */
unsigned vm_throttle(const struct vm *vm);

/*
 * vm_wait - block until the VM has shut down and every vCPU thread has left vcpu_run.
 * Returns the exit status for `hv run`: the guest's byte for VM_EXIT_GUEST, exit_code for
 * VM_EXIT_REQUESTED (the requester chooses, e.g. 128 + signal), VM_STATUS_CRASH otherwise.
 */
int vm_wait(struct vm *vm);

/* vm_should_stop - for backends: true when the vCPU must return from vcpu_run. Cheap
 * (one atomic load); call it when a kick is seen. */
static inline bool vm_should_stop(struct vm *vm)
{
	return atomic_load_explicit(&vm->stop_req, memory_order_acquire);
}

/* vcpu_should_stop - for backends: vm_should_stop(), or the throttle wants @v to sleep a
 * slice. What vcpu_run checks on entry and on every kick. */
static inline bool vcpu_should_stop(struct vcpu *v)
{
	return vm_should_stop(v->vm) ||
	       atomic_load_explicit(&v->throttle_req, memory_order_acquire);
}

/*
 * vm_get_state / vm_set_state - vCPU state; the VM must be created, paused, or shut down
 * with every vCPU thread gone (after vm_wait), e.g. to report where a triple fault hit.
 */
int vm_get_state(struct vm *vm, unsigned cpu, struct x86_state *s, struct hv_error *err);
int vm_set_state(struct vm *vm, unsigned cpu, const struct x86_state *s, struct hv_error *err);

/* vm_destroy - stop threads, free the backend, devices and RAM. Safe after a failure. */
void vm_destroy(struct vm *vm);

const char *vm_state_name(enum vm_state s);

#endif
