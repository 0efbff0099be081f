/*
 * test_kvm_state.c - a KVM vCPU's state survives a round trip into a fresh VM.
 *
 * VM A runs memtouch (passes=0, forever) until it has printed two passes, then pauses;
 * vCPU 0's state and the VM-level state (PICs, IOAPIC, PIT, clock) are read, and a new
 * VM B gets a copy of A's RAM and that state. B must read back the state it was given
 * (the get/set mapping is lossless), then keep counting: two more passes and no
 * "memtouch CORRUPT" (memtouch checks every page's counter and frame number each pass).
 *
 * Usage: test_kvm_state [GUEST_DIR] (default "guest"). Exit 77 without /dev/kvm.
 */
#include "tests/kvm/kvm_test.h"

#include "hv/accel/kvm/kvm.h"

#define RAM        (32ULL << 20)
#define TIMEOUT_MS 240000

/* Wait until @k's memtouch has printed pass @n; false on timeout or shutdown. */
static bool wait_pass(struct kt_vm *k, uint64_t n, const char *label)
{
	uint64_t t0 = kt_now_ms();
	char why[256];

	while (kt_memtouch_pass(k) < n) {
		if (kt_shut_down(k, why, sizeof(why))) {
			kt_fail("%s: the guest stopped before pass %llu: %s", label,
			        (unsigned long long)n, why);
			kt_dump_console(k, label);
			return false;
		}
		if (kt_now_ms() - t0 > TIMEOUT_MS) {
			kt_fail("%s: no memtouch pass %llu within %d s", label,
			        (unsigned long long)n, TIMEOUT_MS / 1000);
			kt_dump_console(k, label);
			return false;
		}
		usleep(10000);
	}
	return true;
}

#define SAME(field)                                                                                \
	KT_CHECK(a->field == b->field, "state read back: " #field " 0x%llx, set 0x%llx",           \
	         (unsigned long long)b->field, (unsigned long long)a->field)

static void compare_state(const struct x86_state *a, const struct x86_state *b)
{
	for (int i = 0; i < X86_NR_GPRS; i++)
		KT_CHECK(a->gpr[i] == b->gpr[i], "state read back: gpr[%d] 0x%llx, set 0x%llx", i,
		         (unsigned long long)b->gpr[i], (unsigned long long)a->gpr[i]);
	SAME(rip);
	SAME(rflags);
	for (int i = 0; i < X86_NR_SREGS; i++) {
		SAME(seg[i].selector);
		SAME(seg[i].base);
		SAME(seg[i].limit);
		SAME(seg[i].type);
		SAME(seg[i].l);
		SAME(seg[i].db);
	}
	SAME(tr.selector);
	SAME(tr.base);
	SAME(gdt.base);
	SAME(gdt.limit);
	SAME(idt.base);
	SAME(idt.limit);
	SAME(cr0);
	SAME(cr3);
	SAME(cr4);
	SAME(cr8);
	SAME(efer);
	SAME(xcr0);
	SAME(apic_base);
	SAME(star);
	SAME(lstar);
	SAME(syscall_mask);
	SAME(kernel_gs_base);
	SAME(pat);
	SAME(sysenter_cs);
	SAME(dr[7]);
	SAME(mp_state);
	SAME(events.nmi_masked);
	KT_CHECK(b->tsc >= a->tsc, "TSC went backwards: 0x%llx after 0x%llx",
	         (unsigned long long)b->tsc, (unsigned long long)a->tsc);
	for (unsigned off = LAPIC_ID; off <= LAPIC_TIMER_DCR; off += 0x10) {
		if (off == LAPIC_TIMER_CCR || off == LAPIC_PPR)
			continue; /* running count; derived from TPR/ISR */
		KT_CHECK(lapic_reg(&a->lapic, off) == lapic_reg(&b->lapic, off),
		         "LAPIC register 0x%x read back 0x%x, set 0x%x", off,
		         lapic_reg(&b->lapic, off), lapic_reg(&a->lapic, off));
	}
	/* x87/SSE legacy area: control words, MXCSR, ST and XMM registers. */
	KT_CHECK(!memcmp(a->xsave, b->xsave, 4) && !memcmp(a->xsave + 24, b->xsave + 24, 4) &&
	             !memcmp(a->xsave + 32, b->xsave + 32, 512 - 32 - 96),
	         "XSAVE legacy area differs after the round trip");
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "guest";
	struct x86_state *s = malloc(sizeof(*s)), *back = malloc(sizeof(*back));
	struct kvm_vm_arch_state *arch = malloc(sizeof(*arch));
	struct kt_vm *a, *b;
	struct hv_error err;
	uint64_t at;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kt_require_kvm();
	a = kt_boot(dir, "memtouch.elf", "start=4M end=8M passes=0", RAM);
	if (vm_start(&a->vm, &err) < 0) {
		kt_fail("vm_start: %s", err.msg);
		return 1;
	}
	if (!wait_pass(a, 2, "source"))
		return 1;
	if (vm_pause(&a->vm, &err) < 0 || vm_get_state(&a->vm, 0, s, &err) < 0 ||
	    kvm_vm_get_arch(&a->vm, arch, &err) < 0) {
		kt_fail("saving the source: %s", err.msg);
		return 1;
	}
	at = kt_memtouch_pass(a);
	printf("test_kvm_state: saved at memtouch pass %llu, RIP 0x%llx, TSC 0x%llx\n",
	       (unsigned long long)at, (unsigned long long)s->rip, (unsigned long long)s->tsc);
	KT_CHECK(s->efer & X86_EFER_LMA, "the guest is not in long mode (EFER 0x%llx)",
	         (unsigned long long)s->efer);
	KT_CHECK(s->cr0 & X86_CR0_PG, "paging is off (CR0 0x%llx)", (unsigned long long)s->cr0);

	b = kt_empty(RAM);
	memcpy(b->vm.mem.slot[0].hva, a->vm.mem.slot[0].hva, RAM);
	if (vm_set_state(&b->vm, 0, s, &err) < 0 || kvm_vm_set_arch(&b->vm, arch, &err) < 0) {
		kt_fail("restoring into the new VM: %s", err.msg);
		return 1;
	}
	if (vm_get_state(&b->vm, 0, back, &err) < 0) {
		kt_fail("reading the restored state: %s", err.msg);
		return 1;
	}
	compare_state(s, back);

	vm_shutdown(&a->vm, VM_EXIT_REQUESTED, 0, "saved");
	vm_wait(&a->vm);
	kt_destroy(a);

	if (vm_start(&b->vm, &err) < 0) {
		kt_fail("vm_start (restored): %s", err.msg);
		return 1;
	}
	/* B's console starts empty: its first line is the pass A was in the middle of. */
	if (wait_pass(b, at + 2, "restored")) {
		KT_CHECK(!kt_console_has(b, "CORRUPT"), "memtouch reported corruption");
		KT_CHECK(!kt_console_has(b, "memtouch start="),
		         "the restored guest started over instead of continuing");
	}
	printf("test_kvm_state: restored guest reached pass %llu\n",
	       (unsigned long long)kt_memtouch_pass(b));
	if (kt_failures)
		kt_dump_console(b, "restored");
	vm_shutdown(&b->vm, VM_EXIT_REQUESTED, 0, "test over");
	vm_wait(&b->vm);
	kt_destroy(b);
	free(s);
	free(back);
	free(arch);
	printf("test_kvm_state: %s\n", kt_failures ? "FAIL" : "ok");
	return kt_failures ? 1 : 0;
}
