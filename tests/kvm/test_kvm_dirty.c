/*
 * test_kvm_dirty.c - KVM's dirty log loses nothing while the vCPU runs.
 *
 * memtouch counts passes in every page of 4M..8M while this program harvests the dirty
 * log in a loop, copying the pages each harvest names into a snapshot taken right after
 * dirty_start(): pre-copy migration in miniature. Between harvests the VMM itself writes
 * pages (gpa_write, as devices do), which the next harvest must name. After a final pause
 * and harvest the snapshot must equal guest RAM byte for byte; a page whose write KVM did
 * not log (or that a CLEAR re-protected too late) shows up as a difference.
 *
 * The first harvest waits for memtouch's first full pass (1024 pages), so a small ring
 * (HV_KVM_DIRTY_RING=512) fills and the vCPU reaps it itself (KVM_EXIT_DIRTY_RING_FULL).
 * Runs on the dirty ring when KVM offers it, else on KVM_GET_DIRTY_LOG; HV_KVM_DIRTY_RING=0
 * forces the latter (the nested lane runs both). The first line says which.
 *
 * Usage: test_kvm_dirty [GUEST_DIR] (default "guest"). Exit 77 without /dev/kvm.
 */
#include "tests/kvm/kvm_test.h"

#include "hv/accel/kvm/kvm.h"
#include "hv/dirty.h"

#define RAM        (32ULL << 20)
#define VMM_PAGE0  (16ULL << 20) /* the VMM's own writes go here, away from memtouch */
#define MIN_PASSES 10
#define TIMEOUT_MS 240000

static void copy_named(struct guest_mem *m, const uint64_t *bits, uint8_t *snap)
{
	for (uint64_t pg = 0; pg < m->npages; pg++)
		if (bits[pg / 64] & (1ULL << (pg % 64)))
			memcpy(snap + pg * 4096, m->slot[0].hva + pg * 4096, 4096);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "guest";
	struct kt_vm *k;
	struct guest_mem *m;
	uint64_t words, *bits, t0, rounds = 0, harvested = 0, vmm_writes = 0;
	uint8_t *snap;
	struct hv_error err;
	char why[256];

	setvbuf(stdout, NULL, _IOLBF, 0);
	kt_require_kvm();
	k = kt_boot(dir, "memtouch.elf", "start=4M end=8M passes=0", RAM);
	m = &k->vm.mem;
	printf("test_kvm_dirty: dirty log: %s\n", kvm_vm_dirty_mode(&k->vm));
	if (m->nslots != 1) {
		kt_fail("expected one memory slot, got %d", m->nslots);
		return 1;
	}
	words = dirty_bitmap_words(m);
	bits = calloc(words, 8);
	snap = malloc(RAM);

	dirty_start(m);
	memcpy(snap, m->slot[0].hva, RAM);
	if (vm_start(&k->vm, &err) < 0) {
		kt_fail("vm_start: %s", err.msg);
		return 1;
	}
	t0 = kt_now_ms();
	while (kt_memtouch_pass(k) < 1 && kt_now_ms() - t0 < TIMEOUT_MS &&
	       !kt_shut_down(k, NULL, 0))
		usleep(1000);
	while (kt_memtouch_pass(k) < MIN_PASSES && kt_now_ms() - t0 < TIMEOUT_MS &&
	       !kt_shut_down(k, NULL, 0)) {
		uint64_t page = VMM_PAGE0 + (rounds % 64) * 4096, pg = page >> 12;
		uint64_t stamp = rounds + 1;

		memset(bits, 0, words * 8);
		harvested += dirty_harvest(m, bits);
		copy_named(m, bits, snap);

		/* A VMM write is named by the very next harvest. */
		gpa_write(m, page, &stamp, sizeof(stamp), NULL);
		vmm_writes++;
		memset(bits, 0, words * 8);
		harvested += dirty_harvest(m, bits);
		KT_CHECK(bits[pg / 64] & (1ULL << (pg % 64)),
		         "round %llu: VMM write to 0x%llx not in the next harvest",
		         (unsigned long long)rounds, (unsigned long long)page);
		copy_named(m, bits, snap);
		rounds++;
		usleep(2000);
	}
	if (kt_shut_down(k, why, sizeof(why))) {
		kt_fail("the guest stopped: %s", why);
		kt_dump_console(k, "memtouch");
		return 1;
	}
	KT_CHECK(kt_memtouch_pass(k) >= MIN_PASSES, "memtouch reached pass %llu of %d in %d s",
	         (unsigned long long)kt_memtouch_pass(k), MIN_PASSES, TIMEOUT_MS / 1000);

	if (vm_pause(&k->vm, &err) < 0) {
		kt_fail("vm_pause: %s", err.msg);
		return 1;
	}
	memset(bits, 0, words * 8);
	harvested += dirty_harvest(m, bits);
	copy_named(m, bits, snap);

	for (uint64_t pg = 0; pg < RAM >> 12; pg++)
		if (memcmp(snap + pg * 4096, m->slot[0].hva + pg * 4096, 4096)) {
			kt_fail(
			    "page %llu differs from snapshot + harvested pages: a lost dirty bit",
			    (unsigned long long)pg);
			break;
		}
	KT_CHECK(!kt_console_has(k, "CORRUPT"), "memtouch reported corruption");
	/*
	 * Every pass rewrites all 1024 pages of 4M..8M: the log must have seen each at
	 * least once. (Not once per pass: when several passes run between two harvests,
	 * as they may on a loaded nested host, a page is rightly reported once for them.
	 * That no write was lost is the snapshot comparison above.)
	 */
	KT_CHECK(harvested >= 1024, "only %llu pages harvested",
	         (unsigned long long)harvested);
	printf("test_kvm_dirty: %llu rounds, %llu pages harvested, %llu VMM writes, "
	       "memtouch at pass %llu\n",
	       (unsigned long long)rounds, (unsigned long long)harvested,
	       (unsigned long long)vmm_writes, (unsigned long long)kt_memtouch_pass(k));
	printf("test_kvm_dirty: dirty log at the end: %s\n", kvm_vm_dirty_mode(&k->vm));
	if (kt_failures)
		kt_dump_console(k, "memtouch");

	vm_shutdown(&k->vm, VM_EXIT_REQUESTED, 0, "test over");
	vm_wait(&k->vm);
	kt_destroy(k);
	free(bits);
	free(snap);
	printf("test_kvm_dirty: %s\n", kt_failures ? "FAIL" : "ok");
	return kt_failures ? 1 : 0;
}
