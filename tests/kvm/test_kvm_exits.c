/*
 * test_kvm_exits.c - the ways a KVM vCPU comes back to hv, on tiny hand-made guests in
 * 32-bit flat mode (x86_state_flat32, code at 0x10000):
 *  - rep outsb to the UART (one I/O exit with count > 1) and the debug-exit port's code;
 *  - ud2 with an empty IDT: #UD, #GP, #DF, triple fault, reported as such;
 *  - a spinning BSP beside an AP that never got a SIPI: vm_pause stops both (kicks reach
 *    a vCPU in the guest and one blocked in KVM_RUN), the state reads back, and the VM
 *    resumes and shuts down cleanly;
 *  - cli; hlt ends the VM as on the emu (VM_EXIT_HALTED, status 125), alone and beside an
 *    AP that never got a SIPI; sti; hlt with nothing to wake it does not (it waits).
 *
 * Usage: test_kvm_exits. Exit 77 without /dev/kvm.
 */
#include "tests/kvm/kvm_test.h"

#define RAM  (4ULL << 20)
#define CODE 0x10000ULL
#define MSG  0x20000ULL

static struct kt_vm *vm_with_code(const uint8_t *code, size_t n, unsigned nvcpus)
{
	struct kt_vm *k = calloc(1, sizeof(*k));
	struct vm_config cfg = {.name = "kvm-exits", .ram_size = RAM, .nvcpus = nvcpus};
	struct x86_state *s = malloc(sizeof(*s));
	struct hv_error err;

	k->console = memfd_create("console", MFD_CLOEXEC);
	if (vm_create(&k->vm, &cfg, &accel_kvm, k->console, -1, &err) < 0 ||
	    vm_get_state(&k->vm, 0, s, &err) < 0) {
		kt_fail("vm_create: %s", err.msg);
		exit(1);
	}
	x86_state_flat32(s);
	s->rip = CODE;
	s->idt.limit = 0; /* any exception escalates to a triple fault */
	if (gpa_write(&k->vm.mem, CODE, code, n, &err) < 0 ||
	    gpa_write(&k->vm.mem, MSG, "hello", 5, &err) < 0 ||
	    vm_set_state(&k->vm, 0, s, &err) < 0 || vm_start(&k->vm, &err) < 0) {
		kt_fail("setting up: %s", err.msg);
		exit(1);
	}
	free(s);
	return k;
}

static void test_rep_outs_and_exit(void)
{
	/* mov esi, MSG; mov ecx, 5; mov dx, 0x3f8; rep outsb; mov al, 7; out 0xf4, al; jmp $ */
	static const uint8_t code[] = {0xbe, 0x00, 0x00, 0x02, 0x00, 0xb9, 0x05, 0x00,
	                               0x00, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xf3, 0x6e,
	                               0xb0, 0x07, 0xe6, 0xf4, 0xeb, 0xfe};
	struct kt_vm *k = vm_with_code(code, sizeof(code), 1);
	int rc = vm_wait(&k->vm);

	KT_CHECK(rc == 7, "debug-exit: status %d, want 7 (%s)", rc, k->vm.exit_reason);
	KT_CHECK(kt_console_has(k, "hello"), "rep outsb: the UART did not print 'hello'");
	kt_destroy(k);
}

static void test_triple_fault(void)
{
	static const uint8_t code[] = {0x0f, 0x0b}; /* ud2 */
	struct kt_vm *k = vm_with_code(code, sizeof(code), 1);
	int rc = vm_wait(&k->vm);

	KT_CHECK(rc == VM_STATUS_CRASH && k->vm.exit_kind == VM_EXIT_TRIPLE_FAULT,
	         "ud2 with no IDT: status %d kind %d (%s), want a triple fault", rc,
	         k->vm.exit_kind, k->vm.exit_reason);
	KT_CHECK(strstr(k->vm.exit_reason, "triple fault at RIP") != NULL,
	         "triple fault reason: '%s'", k->vm.exit_reason);
	printf("test_kvm_exits: %s\n", k->vm.exit_reason);
	kt_destroy(k);
}

static void test_pause_resume_smp(void)
{
	static const uint8_t code[] = {0xeb, 0xfe}; /* jmp $ */
	struct kt_vm *k = vm_with_code(code, sizeof(code), 2);
	struct x86_state *s = malloc(sizeof(*s));
	struct hv_error err;

	for (int round = 0; round < 3; round++) {
		uint64_t t0;

		usleep(20000);
		t0 = kt_now_ms();
		if (vm_pause(&k->vm, &err) < 0) {
			kt_fail("round %d: vm_pause: %s", round, err.msg);
			break;
		}
		KT_CHECK(kt_now_ms() - t0 < 5000, "round %d: vm_pause took %llu ms", round,
		         (unsigned long long)(kt_now_ms() - t0));
		if (vm_get_state(&k->vm, 0, s, &err) < 0)
			kt_fail("round %d: get state of the BSP: %s", round, err.msg);
		else
			KT_CHECK(s->rip == CODE, "round %d: BSP at RIP 0x%llx, want 0x%llx", round,
			         (unsigned long long)s->rip, CODE);
		if (vm_get_state(&k->vm, 1, s, &err) < 0)
			kt_fail("round %d: get state of the AP: %s", round, err.msg);
		else
			KT_CHECK(s->mp_state == X86_MP_UNINITIALIZED,
			         "round %d: AP MP state %u, want uninitialized", round,
			         s->mp_state);
		if (vm_resume(&k->vm, &err) < 0)
			kt_fail("round %d: vm_resume: %s", round, err.msg);
	}
	vm_shutdown(&k->vm, VM_EXIT_REQUESTED, 5, "test over");
	KT_CHECK(vm_wait(&k->vm) == 5, "shutdown: wrong status");
	free(s);
	kt_destroy(k);
}

/* cli; hlt on the BSP (of @nvcpus): the VM ends as halted within a few halt checks. */
static void test_cli_hlt(unsigned nvcpus)
{
	static const uint8_t code[] = {0xfa, 0xf4, 0xeb, 0xfd}; /* cli; hlt; jmp $-3 */
	uint64_t t0 = kt_now_ms();
	struct kt_vm *k = vm_with_code(code, sizeof(code), nvcpus);
	int rc = vm_wait(&k->vm);

	KT_CHECK(rc == VM_STATUS_CRASH && k->vm.exit_kind == VM_EXIT_HALTED,
	         "cli; hlt (%u vCPUs): status %d kind %d (%s), want halted", nvcpus, rc,
	         k->vm.exit_kind, k->vm.exit_reason);
	KT_CHECK(strstr(k->vm.exit_reason, "halted with interrupts disabled") != NULL,
	         "cli; hlt reason: '%s'", k->vm.exit_reason);
	printf("test_kvm_exits: cli; hlt, %u vCPU(s): %s after %llu ms\n", nvcpus,
	       k->vm.exit_reason, (unsigned long long)(kt_now_ms() - t0));
	kt_destroy(k);
}

/* sti; hlt with no interrupt source: halted but wakeable, so the VM must keep running. */
static void test_sti_hlt_waits(void)
{
	static const uint8_t code[] = {0xfb, 0xf4, 0xeb, 0xfd}; /* sti; hlt; jmp $-3 */
	struct kt_vm *k = vm_with_code(code, sizeof(code), 1);

	usleep(500000); /* several halt checks */
	KT_CHECK(!kt_shut_down(k, NULL, 0), "sti; hlt: the VM ended (%s)", k->vm.exit_reason);
	vm_shutdown(&k->vm, VM_EXIT_REQUESTED, 6, "test over");
	KT_CHECK(vm_wait(&k->vm) == 6, "sti; hlt: wrong status after the quit request");
	kt_destroy(k);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	kt_require_kvm();
	test_rep_outs_and_exit();
	test_triple_fault();
	test_pause_resume_smp();
	test_cli_hlt(1);
	test_cli_hlt(2);
	test_sti_hlt_waits();
	printf("test_kvm_exits: %s\n", kt_failures ? "FAIL" : "ok");
	return kt_failures ? 1 : 0;
}
