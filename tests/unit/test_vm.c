/*
 * test_vm.c - the VM lifecycle with a stand-in backend: start, pause (every vCPU stops),
 * resume, deterministic run-until, guest exit through the debug port, backend errors;
 * and vCPU throttling, with the emu running a tiny guest.
 *
 * The fake backend "retires an instruction" per loop iteration and follows the backend
 * contract in vm.h, so these tests pin down what vm.c promises any real backend.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hv/dev/debug_exit.h"
#include "hv/vm.h"

struct fake_cpu {
	_Atomic uint64_t icount;
	uint64_t fail_at; /* vcpu_run fails when icount reaches it (0 = never) */
	uint64_t exit_at; /* the "guest" writes 42 to port 0xf4 at this count */
};

static uint64_t fail_at, exit_at;

static int fake_vcpu_init(struct vcpu *v, struct hv_error *err)
{
	struct fake_cpu *c = calloc(1, sizeof(*c));

	if (!c)
		return hv_fail(err, ENOMEM, "oom");
	c->fail_at = fail_at;
	c->exit_at = exit_at;
	v->accel = c;
	return 0;
}

static void fake_vcpu_fini(struct vcpu *v)
{
	free(v->accel);
}

static int fake_vcpu_run(struct vcpu *v, struct hv_error *err)
{
	struct fake_cpu *c = v->accel;
	struct vm *vm = v->vm;

	for (;;) {
		uint64_t stop = atomic_load(&vm->stop_at_icount);
		uint64_t n = atomic_load(&c->icount);

		if (vm->cfg.deterministic && stop && n == stop) {
			vm_request_pause(vm);
			return 0;
		}
		if (vcpu_should_stop(v))
			return 0;
		if (c->fail_at && n == c->fail_at)
			return hv_fail(err, EIO, "boom at %llu", (unsigned long long)n);
		if (c->exit_at && n == c->exit_at) {
			uint64_t val = 0x142; /* only the low byte counts */
			io_port(&vm->io, DEBUG_EXIT_PORT, 2, true, &val);
		}
		atomic_store(&c->icount, n + 1);
	}
}

static void fake_kick(struct vcpu *v)
{
}

static int fake_get_state(struct vcpu *v, struct x86_state *s, struct hv_error *err)
{
	memset(s, 0, sizeof(*s));
	s->icount = atomic_load(&((struct fake_cpu *)v->accel)->icount);
	return 0;
}

static int fake_set_state(struct vcpu *v, const struct x86_state *s, struct hv_error *err)
{
	atomic_store(&((struct fake_cpu *)v->accel)->icount, s->icount);
	return 0;
}

static const struct accel_ops fake_ops = {
    .name = "fake",
    .vcpu_init = fake_vcpu_init,
    .vcpu_fini = fake_vcpu_fini,
    .vcpu_run = fake_vcpu_run,
    .vcpu_kick = fake_kick,
    .get_state = fake_get_state,
    .set_state = fake_set_state,
};

static struct vm vm;

static void make_vm(unsigned nvcpus, bool det)
{
	struct vm_config cfg = {
	    .name = "t", .ram_size = 4 << 20, .nvcpus = nvcpus, .deterministic = det};
	struct hv_error err = {0};

	if (vm_create(&vm, &cfg, &fake_ops, -1, -1, &err) < 0)
		fail_msg("vm_create: %s", err.msg);
}

static uint64_t icount(unsigned cpu)
{
	return atomic_load(&((struct fake_cpu *)vm.vcpu[cpu].accel)->icount);
}

static void nap(void)
{
	struct timespec ts = {0, 5 * 1000 * 1000};
	nanosleep(&ts, NULL);
}

/* A paused VM does not move; a resumed one does; vm_wait gives the guest's byte. */
static void test_pause_resume_exit(void **state)
{
	uint64_t before[4];
	uint64_t val = 42;

	fail_at = exit_at = 0;
	make_vm(4, false);
	assert_int_equal(vm.state, VM_CREATED);
	assert_int_equal(vm_pause(&vm, NULL), -1); /* not running yet */
	assert_int_equal(vm_start(&vm, NULL), 0);
	assert_int_equal(vm_start(&vm, NULL), -1);
	for (int round = 0; round < 20; round++) {
		assert_int_equal(vm_pause(&vm, NULL), 0);
		assert_int_equal(vm.state, VM_PAUSED);
		assert_int_equal(vm.nparked, 4);
		for (unsigned i = 0; i < 4; i++)
			before[i] = icount(i);
		nap();
		for (unsigned i = 0; i < 4; i++)
			assert_int_equal(icount(i), before[i]);
		assert_int_equal(vm_resume(&vm, NULL), 0);
		assert_int_equal(vm.state, VM_RUNNING);
	}
	/* Four spinning vCPUs share two cores with us: give vCPU 0 up to 5 s to move. */
	for (int i = 0; i < 1000 && icount(0) == before[0]; i++)
		nap();
	assert_true(icount(0) > before[0]);
	io_port(&vm.io, DEBUG_EXIT_PORT, 1, true, &val); /* as a device access would */
	assert_int_equal(vm_wait(&vm), 42);
	assert_int_equal(vm.exit_kind, VM_EXIT_GUEST);
	assert_int_equal(vm_pause(&vm, NULL), -1);
	assert_int_equal(vm_resume(&vm, NULL), -1);
	vm_destroy(&vm);
}

/* The guest exits by itself (from its vCPU thread); the first reason wins. */
static void test_guest_exit(void **state)
{
	fail_at = 0;
	exit_at = 1000;
	make_vm(2, false);
	assert_int_equal(vm_start(&vm, NULL), 0);
	assert_int_equal(vm_wait(&vm), 0x42);
	vm_shutdown(&vm, VM_EXIT_REQUESTED, 130, "late");
	assert_int_equal(vm.exit_kind, VM_EXIT_GUEST);
	assert_non_null(strstr(vm.exit_reason, "debug-exit"));
	vm_destroy(&vm);
	exit_at = 0;
}

/* A backend error ends the VM as a crash with the backend's message. */
static void test_backend_error(void **state)
{
	struct x86_state *s = malloc(sizeof(*s));

	fail_at = 500;
	make_vm(1, false);
	assert_int_equal(vm_start(&vm, NULL), 0);
	assert_int_equal(vm_wait(&vm), VM_STATUS_CRASH);
	assert_int_equal(vm.exit_kind, VM_EXIT_ERROR);
	assert_string_equal(vm.exit_reason, "vcpu 0: boom at 500");
	/* After vm_wait the state can be read, e.g. to say where the guest died. */
	assert_int_equal(vm_get_state(&vm, 0, s, NULL), 0);
	assert_int_equal(s->icount, 500);
	free(s);
	vm_destroy(&vm);
	fail_at = 0;
}

/* Deterministic mode stops exactly at the requested instruction, again and again. */
static void test_run_until(void **state)
{
	struct hv_error err = {0};

	make_vm(1, true);
	assert_int_equal(vm_run_until(&vm, 1000, &err), 0);
	assert_int_equal(vm.state, VM_PAUSED);
	assert_int_equal(icount(0), 1000);
	assert_int_equal(vm_run_until(&vm, 1000, &err), 0);
	assert_int_equal(vm_run_until(&vm, 250000, &err), 0);
	assert_int_equal(icount(0), 250000);
	assert_int_equal(vm_run_until(&vm, 10, &err), -1);
	assert_non_null(strstr(err.msg, "past"));
	assert_int_equal(vm_resume(&vm, NULL), 0);
	vm_shutdown(&vm, VM_EXIT_REQUESTED, 7, "done");
	assert_int_equal(vm_wait(&vm), 7);
	assert_int_equal(vm_run_until(&vm, 300000, &err), 1);
	vm_destroy(&vm);

	make_vm(2, false);
	assert_int_equal(vm_run_until(&vm, 10, &err), -1);
	assert_non_null(strstr(err.msg, "deterministic"));
	vm_destroy(&vm);
}

static void test_create_errors(void **state)
{
	struct vm_config cfg = {.name = "t", .ram_size = 4 << 20, .nvcpus = 0};
	struct hv_error err = {0};

	assert_int_equal(vm_create(&vm, &cfg, &fake_ops, -1, -1, &err), -1);
	assert_non_null(strstr(err.msg, "vCPUs"));
	cfg.nvcpus = 2;
	cfg.deterministic = true;
	assert_int_equal(vm_create(&vm, &cfg, &fake_ops, -1, -1, &err), -1);
	cfg.deterministic = false;
	cfg.ram_size = 1;
	assert_int_equal(vm_create(&vm, &cfg, &fake_ops, -1, -1, &err), -1);
	vm_destroy(&vm); /* safe after a failed create */
}

/* A destroyed VM that is still running stops its threads first. */
static void test_destroy_running(void **state)
{
	make_vm(3, false);
	assert_int_equal(vm_start(&vm, NULL), 0);
	nap();
	vm_destroy(&vm);
}

/* ---- throttling: the emu running a guest that counts and reads the TSC ---- */

#define GUEST_CODE  0x1000
#define GUEST_COUNT 0x3000
#define MS          1000000ULL

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* @v on the emu, vCPU 0 in 32-bit flat mode running, with interrupts off:
 * loop: rdtsc; add ebx, eax; adc esi, edx; inc ecx; mov [GUEST_COUNT], ecx; jmp loop
 * The TSC sum in esi:ebx makes any guest time a sleep added show in the registers. */
static void make_emu_vm(struct vm *v, unsigned nvcpus, bool det)
{
	static const uint8_t code[] = {0x0f, 0x31, 0x01, 0xc3, 0x11, 0xd6, 0x41, 0x89,
	                               0x0d, 0x00, 0x30, 0x00, 0x00, 0xeb, 0xf1};
	struct vm_config cfg = {
	    .name = "t", .ram_size = 4 << 20, .nvcpus = nvcpus, .deterministic = det};
	struct x86_state *s = calloc(1, sizeof(*s));
	struct hv_error err = {0};

	if (vm_create(v, &cfg, &accel_emu, -1, -1, &err) < 0)
		fail_msg("vm_create: %s", err.msg);
	assert_int_equal(vm_get_state(v, 0, s, &err), 0);
	x86_state_flat32(s);
	s->rip = GUEST_CODE;
	assert_int_equal(vm_set_state(v, 0, s, &err), 0);
	memcpy(mem_hva(&v->mem, GUEST_CODE, sizeof(code)), code, sizeof(code));
	free(s);
}

static uint32_t guest_count(struct vm *v)
{
	return __atomic_load_n((uint32_t *)mem_hva(&v->mem, GUEST_COUNT, 4), __ATOMIC_RELAXED);
}

/* Wait (up to 10 s) for the guest to move past @c. */
static void wait_progress(struct vm *v, uint32_t c)
{
	for (int i = 0; i < 2000 && guest_count(v) == c; i++)
		nap();
	assert_true(guest_count(v) != c);
}

static uint64_t slept(struct vm *v)
{
	return atomic_load(&v->throttle_slept_ns);
}

/* Records every run-state change, as the control socket's watcher does. */
static bool watch_stop;
static unsigned state_changes;

static void *watch_state(void *arg)
{
	enum vm_state seen;

	pthread_mutex_lock(&vm.lock);
	seen = vm.state;
	while (!watch_stop) {
		pthread_cond_wait(&vm.cond, &vm.lock);
		if (vm.state != seen) {
			seen = vm.state;
			state_changes++;
		}
	}
	pthread_mutex_unlock(&vm.lock);
	return NULL;
}

/*
 * A throttled VM keeps running (no state change), its guest makes progress, and the
 * vCPUs sleep; pause and destroy do not wait for a sleep to end; 0 turns it off. vCPU 1
 * is an AP that never starts, so the kick also has to reach a halted vCPU.
 */
static void test_throttle(void **state)
{
	pthread_t watcher;
	uint64_t t, paused_ns = 0, s0;
	uint32_t c;

	make_emu_vm(&vm, 2, false);
	assert_int_equal(vm_throttle(&vm), 0);
	vm_set_throttle(&vm, 150); /* allowed before start; clamped */
	assert_int_equal(vm_throttle(&vm), 99);
	vm_set_throttle(&vm, 50);
	assert_int_equal(vm_throttle(&vm), 50);
	assert_int_equal(vm_start(&vm, NULL), 0);
	watch_stop = false;
	state_changes = 0;
	assert_int_equal(pthread_create(&watcher, NULL, watch_state, NULL), 0);

	/* Half the time asleep: a few slices' worth soon; allow 10 s on a loaded host. */
	for (int i = 0; i < 2000 && slept(&vm) < 40 * MS; i++)
		nap();
	assert_true(slept(&vm) >= 40 * MS);
	wait_progress(&vm, guest_count(&vm));
	pthread_mutex_lock(&vm.lock);
	assert_int_equal(vm.state, VM_RUNNING);
	assert_int_equal(vm.nparked, 0);
	watch_stop = true;
	pthread_cond_broadcast(&vm.cond);
	pthread_mutex_unlock(&vm.lock);
	pthread_join(watcher, NULL);
	assert_int_equal(state_changes, 0);

	/* At 99% a vCPU is nearly always inside a 990 ms sleep, which a pause cuts short.
	 * The bound is loose: four pauses that each waited for a sleep would take ~2 s. */
	vm_set_throttle(&vm, 99);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 10; i++)
			nap();
		t = now_ns();
		assert_int_equal(vm_pause(&vm, NULL), 0);
		paused_ns += now_ns() - t;
		assert_int_equal(vm.state, VM_PAUSED);
		c = guest_count(&vm);
		nap();
		assert_int_equal(guest_count(&vm), c);
		assert_int_equal(vm_resume(&vm, NULL), 0);
	}
	assert_true(paused_ns < 2000 * MS);

	/* Off: sleeps end, and once every vCPU has parked (so any sleep is counted) no
	 * more time is slept, while the guest goes on. */
	vm_set_throttle(&vm, 0);
	assert_int_equal(vm_throttle(&vm), 0);
	assert_int_equal(vm_pause(&vm, NULL), 0);
	assert_int_equal(vm_resume(&vm, NULL), 0);
	s0 = slept(&vm);
	for (int i = 0; i < 20; i++)
		nap();
	wait_progress(&vm, guest_count(&vm));
	assert_int_equal(slept(&vm), s0);

	/* Destroy while the vCPUs sleep and the throttle thread runs. */
	vm_set_throttle(&vm, 99);
	for (int i = 0; i < 10; i++)
		nap();
	t = now_ns();
	vm_destroy(&vm);
	assert_true(now_ns() - t < 2000 * MS);
}

/*
 * Deterministic mode: a sleep is not guest time. One VM runs throttled, in steps, until
 * it has slept; the other runs unthrottled straight to the same instruction; their
 * states (including the TSC sum the guest kept) and memory agree.
 */
static void test_throttle_deterministic(void **state)
{
	const uint64_t step = 100000;
	struct vm *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct x86_state *sa = calloc(1, sizeof(*sa)), *sb = calloc(1, sizeof(*sb));
	struct hv_error err = {0};
	uint64_t target = 0, t0;

	make_emu_vm(a, 1, true);
	make_emu_vm(b, 1, true);
	vm_set_throttle(a, 50);
	t0 = now_ns();
	while (slept(a) < 5 * MS && now_ns() - t0 < 20000 * MS) {
		target += step;
		if (vm_run_until(a, target, &err) != 0)
			fail_msg("run-until %llu: %s", (unsigned long long)target, err.msg);
	}
	assert_true(slept(a) >= 5 * MS); /* a whole sleep, not only ones a stop cut short */
	target += step;
	assert_int_equal(vm_run_until(a, target, &err), 0);
	assert_int_equal(vm_run_until(b, target, &err), 0);
	assert_int_equal(vm_get_state(a, 0, sa, &err), 0);
	assert_int_equal(vm_get_state(b, 0, sb, &err), 0);
	assert_int_equal(sa->icount, target);
	assert_true(sa->gpr[X86_RBX] != 0);
	assert_memory_equal(sa, sb, sizeof(*sa));
	assert_int_equal(guest_count(a), guest_count(b));
	assert_int_equal(slept(b), 0);
	vm_destroy(a);
	vm_destroy(b);
	free(a);
	free(b);
	free(sa);
	free(sb);
}

static void test_accel_select(void **state)
{
	struct hv_error err = {0};

	assert_null(accel_select("bogus", &err));
	assert_non_null(strstr(err.msg, "unknown accelerator 'bogus'"));
	assert_ptr_equal(accel_select("emu", &err), &accel_emu);
	assert_ptr_equal(accel_select("auto", &err), &accel_emu); /* no KVM backend yet */
	assert_null(accel_select("kvm", &err));
	assert_non_null(strstr(err.msg, "kvm: "));
}

static void test_reset_state(void **state)
{
	struct x86_state *s = malloc(sizeof(*s));
	uint16_t fcw;
	uint32_t mxcsr;

	x86_state_reset(s, 3, 0);
	assert_int_equal(s->rip, 0xfff0);
	assert_int_equal(s->seg[X86_CS].selector, 0xf000);
	assert_int_equal(s->seg[X86_CS].base, 0xffff0000);
	assert_int_equal(s->cr0, 0x60000010);
	assert_int_equal(s->rflags, 2);
	assert_int_equal(s->apic_base, 0xfee00000 | X86_APIC_BASE_ENABLE);
	assert_int_equal(s->mp_state, X86_MP_UNINITIALIZED);
	assert_int_equal(lapic_reg(&s->lapic, LAPIC_ID), 3u << 24);
	assert_int_equal(lapic_reg(&s->lapic, LAPIC_VERSION), 0x50014);
	assert_int_equal(lapic_reg(&s->lapic, LAPIC_SVR), 0xff);
	assert_int_equal(lapic_reg(&s->lapic, LAPIC_LVT_TIMER), LAPIC_LVT_MASKED);
	assert_int_equal(s->pat, 0x0007040600070406ULL);
	assert_int_equal(s->misc_enable, 1);
	memcpy(&fcw, s->xsave, 2);
	memcpy(&mxcsr, s->xsave + 24, 4);
	assert_int_equal(fcw, 0x37f);
	assert_int_equal(mxcsr, 0x1f80);
	x86_state_reset(s, 0, 1);
	assert_int_equal(s->apic_base, 0xfee00000 | X86_APIC_BASE_ENABLE | X86_APIC_BASE_BSP);
	assert_int_equal(s->mp_state, X86_MP_RUNNABLE);
	x86_state_flat32(s);
	assert_int_equal(s->cr0, X86_CR0_PE | X86_CR0_ET);
	assert_int_equal(s->seg[X86_CS].selector, 0x10);
	assert_int_equal(s->seg[X86_SS].selector, 0x18);
	assert_int_equal(s->tr.type, 0xb);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pause_resume_exit), cmocka_unit_test(test_guest_exit),
	    cmocka_unit_test(test_backend_error),     cmocka_unit_test(test_run_until),
	    cmocka_unit_test(test_create_errors),     cmocka_unit_test(test_destroy_running),
	    cmocka_unit_test(test_accel_select),      cmocka_unit_test(test_reset_state),
	    cmocka_unit_test(test_throttle),          cmocka_unit_test(test_throttle_deterministic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
