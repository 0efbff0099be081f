/*
 * test_vm.c - the VM lifecycle with a stand-in backend: start, pause (every vCPU stops),
 * resume, deterministic run-until, guest exit through the debug port, backend errors.
 *
 * The fake backend "retires an instruction" per loop iteration and follows the backend
 * contract in vm.h, so these tests pin down what vm.c promises any real backend.
 */
#include <errno.h>
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
		if (vm_should_stop(vm))
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
