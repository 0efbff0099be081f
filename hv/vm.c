/*
 * vm.c - a virtual machine's lifecycle: create, start, pause, resume, shut down.
 *
 * One lock and one condition variable per VM carry every run-state change. A vCPU thread
 * parks (under the lock) whenever a pause is requested, and the last one to park moves
 * the VM to VM_PAUSED; so a pause asked for by the VMM (vm_pause) and one the backend
 * asks for itself at a deterministic stop point (vm_request_pause) end the same way.
 * Kicks are sent with the lock dropped, so a backend's kick may take its own locks.
 *
 * Throttling needs no help from the backends beyond honouring vcpu_should_stop(): a timer
 * thread sets each vCPU's throttle_req and kicks it, vcpu_run returns at an instruction
 * boundary as for a pause, and the vCPU thread sleeps on vm->cond outside vcpu_run. It
 * does not park, so the run state never changes, and since every pause request and
 * shutdown broadcasts vm->cond, neither waits for a sleep to end. The cond runs on
 * CLOCK_MONOTONIC so that a wall-clock step cannot stretch a sleep.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv/dev/debug_exit.h"
#include "hv/dev/i8042.h"
#include "hv/dev/uart.h"
#include "hv/vm.h"

#define VM_REKICK_NS         10000000L   /* vm_pause re-kicks stragglers this often */
#define VM_THROTTLE_SLICE_NS 10000000ULL /* a throttled vCPU runs this long between sleeps */
#define VM_THROTTLE_MAX      99

const char *vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_CREATED: return "created";
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	case VM_SHUTDOWN: return "shut down";
	}
	return "?";
}

static void vm_kick_all(struct vm *vm)
{
	if (!vm->accel || !vm->accel->vcpu_kick)
		return;
	for (unsigned i = 0; i < vm->nvcpus_ready; i++)
		vm->accel->vcpu_kick(&vm->vcpu[i]);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* @ts := CLOCK_MONOTONIC time @ns, for pthread_cond_timedwait on vm->cond. */
static void ts_at(struct timespec *ts, uint64_t ns)
{
	ts->tv_sec = (time_t)(ns / 1000000000ULL);
	ts->tv_nsec = (long)(ns % 1000000000ULL);
}

/* Lock held. The last vCPU to park (or a waiter noticing) completes a requested pause. */
static void vm_check_paused(struct vm *vm)
{
	if (vm->state == VM_RUNNING && vm->pause_req && vm->nparked == vm->nlive) {
		vm->state = VM_PAUSED;
		pthread_cond_broadcast(&vm->cond);
	}
}

/*
 * Lock held. Sleep one throttle slice, or less: a pause or shutdown request, or the
 * throttle going off, ends it at once. Nothing here touches the backend, so the sleep
 * adds nothing to the guest's deterministic clock.
 */
static void vcpu_throttle_sleep(struct vcpu *v)
{
	struct vm *vm = v->vm;
	unsigned pct = atomic_load(&vm->throttle_pct);
	uint64_t start = mono_ns(), end;
	struct timespec ts;

	if (!pct)
		return;
	end = start + VM_THROTTLE_SLICE_NS * pct / (100 - pct);
	ts_at(&ts, end);
	while (atomic_load(&vm->throttle_pct) && !vm->pause_req && vm->state != VM_SHUTDOWN &&
	       mono_ns() < end)
		pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	atomic_fetch_add(&vm->throttle_slept_ns, mono_ns() - start);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	struct hv_error err;

	for (;;) {
		pthread_mutex_lock(&vm->lock);
		if (atomic_exchange(&v->throttle_req, false))
			vcpu_throttle_sleep(v);
		if (vm->pause_req && vm->state != VM_SHUTDOWN) {
			v->parked = true;
			vm->nparked++;
			vm_check_paused(vm);
			pthread_cond_broadcast(&vm->cond);
			while (vm->pause_req && vm->state != VM_SHUTDOWN)
				pthread_cond_wait(&vm->cond, &vm->lock);
			v->parked = false;
			vm->nparked--;
		}
		if (vm->state == VM_SHUTDOWN) {
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		pthread_mutex_unlock(&vm->lock);

		hv_error_clear(&err);
		if (vm->accel->vcpu_run(v, &err) < 0) {
			vm_shutdown(vm, VM_EXIT_ERROR, 0, "vcpu %u: %s", v->id,
			            err.msg[0] ? err.msg : "internal error");
			break;
		}
	}

	pthread_mutex_lock(&vm->lock);
	vm->nlive--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static void vm_uart_irq(void *opaque, int level)
{
	struct vm *vm = opaque;

	if (vm->accel->irq_line)
		vm->accel->irq_line(vm, UART_COM1_IRQ, level);
}

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct accel_ops *accel,
              int console_out, int console_in, struct hv_error *err)
{
	pthread_condattr_t ca;

	memset(vm, 0, sizeof(*vm));
	vm->console_out = console_out;
	vm->console_in = console_in;
	vm->cfg = *cfg;
	vm->cfg.name[VM_NAME_MAX - 1] = '\0';
	vm->accel = accel;
	vm->state = VM_CREATED;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	vm->sync_ready = true;

	if (cfg->nvcpus < 1 || cfg->nvcpus > VM_MAX_VCPUS) {
		hv_fail(err, EINVAL, "%u vCPUs: must be between 1 and %d", cfg->nvcpus,
		        VM_MAX_VCPUS);
		goto fail;
	}
	if (!accel || !accel->vcpu_run) {
		hv_fail(err, ENOSYS, "accelerator %s cannot run vCPUs",
		        accel ? accel->name : "(none)");
		goto fail;
	}
	if (cfg->deterministic && cfg->nvcpus != 1) {
		hv_fail(err, EINVAL, "deterministic mode needs exactly 1 vCPU, not %u",
		        cfg->nvcpus);
		goto fail;
	}
	if (mem_init(&vm->mem, cfg->ram_size, err) < 0)
		goto fail;
	if (accel->vm_init && accel->vm_init(vm, err) < 0)
		goto fail;
	vm->accel_ready = true;
	vm->nvcpus = cfg->nvcpus;
	for (unsigned i = 0; i < cfg->nvcpus; i++) {
		struct vcpu *v = &vm->vcpu[i];
		v->vm = vm;
		v->id = i;
		if (accel->vcpu_init && accel->vcpu_init(v, err) < 0)
			goto fail;
		vm->nvcpus_ready++;
	}

	vm->uart = uart_create(console_out, console_in, vm_uart_irq, vm, err);
	if (!vm->uart || uart_register(vm->uart, &vm->io, UART_COM1_BASE, err) < 0)
		goto fail;
	vm->dbgexit = debug_exit_create(vm, err);
	if (!vm->dbgexit || debug_exit_register(vm->dbgexit, &vm->io, err) < 0)
		goto fail;
	vm->kbd = i8042_create(vm, err);
	if (!vm->kbd || i8042_register(vm->kbd, &vm->io, err) < 0)
		goto fail;
	return 0;
fail:
	vm_destroy(vm);
	return -1;
}

int vm_start(struct vm *vm, struct hv_error *err)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_CREATED) {
		enum vm_state st = vm->state;
		pthread_mutex_unlock(&vm->lock);
		return hv_fail(err, EINVAL, "cannot start a VM that is %s", vm_state_name(st));
	}
	vm->state = VM_RUNNING;
	vm->threads_started = true;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpu[i];
		int e = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (e) {
			pthread_mutex_unlock(&vm->lock);
			vm_shutdown(vm, VM_EXIT_ERROR, 0, "vcpu %u: thread: %s", i, strerror(e));
			return hv_fail(err, e, "vcpu %u: cannot create thread: %s", i, strerror(e));
		}
		v->thread_started = true;
		vm->nlive++;
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

static void deadline_in(struct timespec *ts, long ns)
{
	ts_at(ts, mono_ns() + (uint64_t)ns);
}

/* Lock held on entry and exit. Wait until the requested pause completes or the VM ends. */
static void vm_wait_stopped(struct vm *vm)
{
	while (vm->state == VM_RUNNING) {
		struct timespec ts;

		vm_check_paused(vm);
		if (vm->state != VM_RUNNING)
			break;
		deadline_in(&ts, VM_REKICK_NS);
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT &&
		    vm->state == VM_RUNNING && vm->pause_req) {
			pthread_mutex_unlock(&vm->lock);
			vm_kick_all(vm);
			pthread_mutex_lock(&vm->lock);
		}
	}
}

void vm_request_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_SHUTDOWN) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	vm->pause_req = true;
	atomic_store_explicit(&vm->stop_req, true, memory_order_release);
	pthread_cond_broadcast(&vm->cond); /* a throttle sleep ends to park */
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
}

int vm_pause(struct vm *vm, struct hv_error *err)
{
	enum vm_state st;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_RUNNING) {
		vm->pause_req = true;
		atomic_store_explicit(&vm->stop_req, true, memory_order_release);
		pthread_cond_broadcast(&vm->cond); /* a throttle sleep ends to park */
		pthread_mutex_unlock(&vm->lock);
		vm_kick_all(vm);
		pthread_mutex_lock(&vm->lock);
		vm_wait_stopped(vm);
	}
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (st == VM_PAUSED)
		return 0;
	return hv_fail(err, EINVAL, "cannot pause a VM that is %s", vm_state_name(st));
}

int vm_resume(struct vm *vm, struct hv_error *err)
{
	enum vm_state st;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	if (st == VM_PAUSED) {
		vm->pause_req = false;
		atomic_store_explicit(&vm->stop_req, false, memory_order_release);
		vm->state = VM_RUNNING;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	if (st == VM_PAUSED || st == VM_RUNNING)
		return 0;
	return hv_fail(err, EINVAL, "cannot resume a VM that is %s", vm_state_name(st));
}

int vm_run_until(struct vm *vm, uint64_t icount, struct hv_error *err)
{
	struct x86_state *s;
	enum vm_state st;
	int rc = -1;

	if (!vm->cfg.deterministic || vm->nvcpus != 1)
		return hv_fail(err, EINVAL, "run-until needs a deterministic VM with one vCPU");
	if (icount == 0)
		return hv_fail(err, EINVAL, "run-until: instruction count must be positive");
	s = malloc(sizeof(*s));
	if (!s)
		return hv_fail(err, ENOMEM, "out of memory");

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (st == VM_SHUTDOWN) {
		rc = 1;
		goto out;
	}
	if (st == VM_RUNNING) {
		hv_fail(err, EINVAL, "run-until: pause the VM first");
		goto out;
	}
	if (vm_get_state(vm, 0, s, err) < 0)
		goto out;
	if (s->icount > icount) {
		hv_fail(err, EINVAL, "run-until: vCPU 0 is already at instruction %llu, past %llu",
		        (unsigned long long)s->icount, (unsigned long long)icount);
		goto out;
	}
	if (s->icount == icount) {
		rc = 0;
		goto out;
	}

	atomic_store(&vm->stop_at_icount, icount);
	if ((st == VM_CREATED ? vm_start(vm, err) : vm_resume(vm, err)) < 0)
		goto out_clear;
	pthread_mutex_lock(&vm->lock);
	while (vm->state == VM_RUNNING)
		pthread_cond_wait(&vm->cond, &vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (st == VM_SHUTDOWN) {
		rc = 1;
		goto out_clear;
	}
	if (vm_get_state(vm, 0, s, err) < 0)
		goto out_clear;
	if (s->icount != icount) {
		hv_fail(err, EIO, "run-until: vCPU 0 stopped at instruction %llu, not %llu",
		        (unsigned long long)s->icount, (unsigned long long)icount);
		goto out_clear;
	}
	rc = 0;
out_clear:
	atomic_store(&vm->stop_at_icount, 0);
out:
	free(s);
	return rc;
}

void vm_shutdown(struct vm *vm, enum vm_exit_kind kind, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (vm->exit_kind == VM_EXIT_NONE) {
		vm->exit_kind = kind;
		vm->exit_code = code;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
	}
	vm->state = VM_SHUTDOWN;
	atomic_store_explicit(&vm->stop_req, true, memory_order_release);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
}

/*
 * The throttle timer: every 10 ms * 100 / (100 - pct) it asks each vCPU for one sleep
 * slice, so that a vCPU runs about 10 ms between sleeps. It only asks while the VM runs
 * and no pause is pending; it waits on vm->cond, so set_throttle and destroy reach it,
 * and idles without a timeout while the throttle is off or the VM has shut down.
 */
static void *vm_throttle_thread(void *arg)
{
	struct vm *vm = arg;
	uint64_t next = 0; /* the next request; 0 while the throttle is off */

	pthread_mutex_lock(&vm->lock);
	while (!vm->throttle_quit) {
		unsigned pct = atomic_load(&vm->throttle_pct);
		uint64_t now = mono_ns(), period;
		struct timespec ts;

		if (!pct || vm->state == VM_SHUTDOWN) {
			next = 0;
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		if (!next)
			next = now + VM_THROTTLE_SLICE_NS; /* a first slice of running */
		if (now < next) {
			ts_at(&ts, next);
			pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
			continue;
		}
		period = VM_THROTTLE_SLICE_NS * 100 / (100 - pct);
		next += period;
		if (next <= now) /* late (a long stall): no burst of catch-up requests */
			next = now + period;
		if (vm->state != VM_RUNNING || vm->pause_req)
			continue; /* created or paused: keep time, ask nothing */
		for (unsigned i = 0; i < vm->nvcpus_ready; i++)
			atomic_store(&vm->vcpu[i].throttle_req, true);
		pthread_mutex_unlock(&vm->lock);
		vm_kick_all(vm);
		pthread_mutex_lock(&vm->lock);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

void vm_set_throttle(struct vm *vm, unsigned pct)
{
	if (pct > VM_THROTTLE_MAX)
		pct = VM_THROTTLE_MAX;
	pthread_mutex_lock(&vm->lock);
	if (pct && !vm->throttle_started) {
		if (pthread_create(&vm->throttle_thread, NULL, vm_throttle_thread, vm) == 0)
			vm->throttle_started = true;
		else
			pct = 0; /* nothing would ask for slices: say so through vm_throttle() */
	}
	atomic_store(&vm->throttle_pct, pct);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

unsigned vm_throttle(const struct vm *vm)
{
	return atomic_load(&vm->throttle_pct);
}

int vm_wait(struct vm *vm)
{
	int rc;

	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_SHUTDOWN || vm->nlive > 0)
		pthread_cond_wait(&vm->cond, &vm->lock);
	switch (vm->exit_kind) {
	case VM_EXIT_GUEST:
	case VM_EXIT_REQUESTED: rc = vm->exit_code; break;
	default: rc = VM_STATUS_CRASH; break;
	}
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

/* Lock not held. Whether vCPU state may be touched now. */
static int vm_state_access(struct vm *vm, unsigned cpu, const char *what, struct hv_error *err)
{
	enum vm_state st;
	unsigned live;

	if (cpu >= vm->nvcpus)
		return hv_fail(err, EINVAL, "%s: no vCPU %u (the VM has %u)", what, cpu,
		               vm->nvcpus);
	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	live = vm->nlive;
	pthread_mutex_unlock(&vm->lock);
	if (st == VM_RUNNING || (st == VM_SHUTDOWN && live))
		return hv_fail(err, EBUSY, "%s: vCPU %u is running (VM %s)", what, cpu,
		               vm_state_name(st));
	return 0;
}

int vm_get_state(struct vm *vm, unsigned cpu, struct x86_state *s, struct hv_error *err)
{
	if (vm_state_access(vm, cpu, "get state", err) < 0)
		return -1;
	if (!vm->accel->get_state)
		return hv_fail(err, ENOSYS, "%s: cannot read vCPU state", vm->accel->name);
	return vm->accel->get_state(&vm->vcpu[cpu], s, err);
}

int vm_set_state(struct vm *vm, unsigned cpu, const struct x86_state *s, struct hv_error *err)
{
	if (vm_state_access(vm, cpu, "set state", err) < 0)
		return -1;
	if (!vm->accel->set_state)
		return hv_fail(err, ENOSYS, "%s: cannot write vCPU state", vm->accel->name);
	return vm->accel->set_state(&vm->vcpu[cpu], s, err);
}

void vm_destroy(struct vm *vm)
{
	if (!vm->sync_ready)
		return;
	if (vm->throttle_started) {
		/* First: its kicks must not reach vCPUs that are being finalised. */
		pthread_mutex_lock(&vm->lock);
		vm->throttle_quit = true;
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		pthread_join(vm->throttle_thread, NULL);
		vm->throttle_started = false;
	}
	if (vm->threads_started) {
		vm_shutdown(vm, VM_EXIT_REQUESTED, 0, "VM destroyed");
		for (unsigned i = 0; i < vm->nvcpus; i++)
			if (vm->vcpu[i].thread_started)
				pthread_join(vm->vcpu[i].thread, NULL);
		vm->threads_started = false;
	}
	uart_destroy(vm->uart);
	vm->uart = NULL;
	debug_exit_destroy(vm->dbgexit);
	vm->dbgexit = NULL;
	i8042_destroy(vm->kbd);
	vm->kbd = NULL;
	if (vm->accel) {
		for (unsigned i = vm->nvcpus_ready; i-- > 0;)
			if (vm->accel->vcpu_fini)
				vm->accel->vcpu_fini(&vm->vcpu[i]);
		if (vm->accel_ready && vm->accel->vm_fini)
			vm->accel->vm_fini(vm);
	}
	vm->nvcpus_ready = 0;
	vm->accel_ready = false;
	mem_destroy(&vm->mem);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	vm->sync_ready = false;
}
