/*
 * kvm_dirty.c - KVM's dirty log, merged into the slot bitmaps (struct dirty_source).
 *
 * Every memslot is created with KVM_MEM_LOG_DIRTY_PAGES. With MANUAL_DIRTY_LOG_PROTECT2
 * (+ INITIALLY_SET: no up-front write-protection of all RAM when the slot is created)
 * KVM_GET_DIRTY_LOG only reads KVM's bitmap; KVM_CLEAR_DIRTY_LOG then clears exactly the
 * bits that were read and write-protects those pages again, one run of non-zero 64-page
 * words at a time. A store after the CLEAR faults and is logged for the next harvest; a
 * store between GET and CLEAR lands in a page the harvester copies only after the harvest
 * returns, so it is not lost either. Without the capability, plain KVM_GET_DIRTY_LOG
 * fetches, clears and write-protects in one call. Either way vCPUs keep running.
 *
 * collect() runs at every harvest (dirty.c), then flush() once the epoch has moved. KVM
 * needs no grace period (vCPU stores go straight to its log), so flush() is used for one
 * thing: a flush() with no collect() before it comes from dirty_start(), and there the
 * KVM log is fetched and thrown away, so that the first harvest reports only pages
 * written after dirty_start() (with INITIALLY_SET it would otherwise report all of RAM).
 * If an ioctl fails, the slot is reported entirely dirty: too much, never too little.
 *
 * The dirty ring (KVM_CAP_DIRTY_LOG_RING, preferred when offered): KVM appends a
 * {slot, offset} entry to the writing vCPU's ring (mmapped at KVM_DIRTY_LOG_PAGE_OFFSET of
 * the vCPU fd) when a page first becomes dirty, instead of setting a bit. Reaping reads
 * each entry's flags with acquire ordering, sets its bit in the slot bitmap, hands the
 * entry back with a release store of RESET, and ends with KVM_RESET_DIRTY_RINGS, which
 * write-protects those pages again before collect() returns (so the harvester copies
 * only pages whose next write will be logged). A full ring stops the vCPU with
 * KVM_EXIT_DIRTY_RING_FULL; the vCPU thread reaps its own ring then (kvm_dirty_ring_full).
 * Reaping is serialised by ring_lock. With Intel PML, dirty GFNs wait in a per-vCPU
 * hardware buffer until the next VM exit, so collect() first kicks every vCPU that is
 * inside KVM_RUN and waits for it to come out (runs_out catching up with runs_in).
 *
 * HV_KVM_DIRTY_RING=N sets the ring size in entries (a power of two, default 4096,
 * clamped to what KVM offers); HV_KVM_DIRTY_RING=0 forces the bitmap path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hv/accel/kvm/kvm.h"
#include "hv/accel/kvm/kvm_int.h"
#include "hv/dirty.h"
#include "hv/vm.h"

static uint64_t slot_pages(const struct mem_slot *s)
{
	return s->size >> MEM_PAGE_SHIFT;
}

#define RING_DEFAULT_ENTRIES 4096
#define RING_MIN_ENTRIES     512 /* a page of entries at least, and room for KVM's reserve */

/* Whether KVM on this host uses Intel PML (then reaping needs a VM exit first). */
static bool pml_enabled(void)
{
	FILE *f = fopen("/sys/module/kvm_intel/parameters/pml", "r");
	int c = f ? fgetc(f) : 0;

	if (f)
		fclose(f);
	return c == 'Y' || c == 'y' || c == '1';
}

/* Enable the dirty ring if KVM offers it and HV_KVM_DIRTY_RING does not say 0. */
static void ring_init(struct kvm_vmstate *kv)
{
	const char *env = getenv("HV_KVM_DIRTY_RING");
	long want = env && *env ? strtol(env, NULL, 0) : RING_DEFAULT_ENTRIES;
	long cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	long max = kvm_check_cap(kv, cap);
	struct kvm_enable_cap ec = {0};
	uint32_t n = RING_MIN_ENTRIES;

	if (max <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		max = kvm_check_cap(kv, cap);
	}
	if (want <= 0 || max <= 0)
		return;
	max /= (long)sizeof(struct kvm_dirty_gfn);
	while ((long)n * 2 <= want && (long)n * 2 <= max)
		n *= 2;
	if (n > max)
		return;
	ec.cap = (uint32_t)cap;
	ec.args[0] = (uint64_t)n * sizeof(struct kvm_dirty_gfn);
	if (ioctl(kv->vm_fd, KVM_ENABLE_CAP, &ec) == 0) {
		kv->ring_entries = n;
		kv->ring_kick = pml_enabled();
	}
}

int kvm_dirty_init(struct kvm_vmstate *kv, struct hv_error *err)
{
	struct guest_mem *m = &kv->vm->mem;
	int caps = kvm_check_cap(kv, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

	ring_init(kv);
	if (!kv->ring_entries && (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
		struct kvm_enable_cap ec = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2};

		ec.args[0] =
		    KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (caps & KVM_DIRTY_LOG_INITIALLY_SET);
		kv->manual_protect = ioctl(kv->vm_fd, KVM_ENABLE_CAP, &ec) == 0;
	}
	for (int i = 0; i < m->nslots; i++) {
		kv->kvm_bitmap[i] = calloc((slot_pages(&m->slot[i]) + 63) / 64, sizeof(uint64_t));
		if (!kv->kvm_bitmap[i])
			return hv_fail(err, ENOMEM, "kvm: dirty bitmap: out of memory");
	}
	return 0;
}

void kvm_dirty_fini(struct kvm_vmstate *kv)
{
	for (int i = 0; i < MEM_MAX_SLOTS; i++) {
		free(kv->kvm_bitmap[i]);
		kv->kvm_bitmap[i] = NULL;
	}
}

int kvm_dirty_vcpu_init(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, struct hv_error *err)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)kv->ring_entries * sizeof(struct kvm_dirty_gfn);
	void *p;

	if (!kv->ring_entries)
		return 0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, kc->fd,
	         (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * page);
	if (p == MAP_FAILED)
		return hv_fail(err, errno, "kvm: vcpu %u: mmap of the dirty ring: %s", kc->vcpu->id,
		               strerror(errno));
	kc->ring = p;
	kc->ring_next = 0;
	return 0;
}

void kvm_dirty_vcpu_fini(struct kvm_vmstate *kv, struct kvm_vcpustate *kc)
{
	if (kc->ring)
		munmap(kc->ring, (size_t)kv->ring_entries * sizeof(struct kvm_dirty_gfn));
	kc->ring = NULL;
}

const char *kvm_dirty_mode(struct kvm_vmstate *kv)
{
	static _Thread_local char buf[96];

	if (kv->ring_entries) {
		snprintf(buf, sizeof(buf), "dirty ring, %u entries per vCPU%s, ring full %llu",
		         kv->ring_entries, kv->ring_kick ? ", PML kicks" : "",
		         (unsigned long long)atomic_load(&kv->ring_fulls));
		return buf;
	}
	return kv->manual_protect ? "KVM_GET_DIRTY_LOG + MANUAL_PROTECT2" : "KVM_GET_DIRTY_LOG";
}

const char *kvm_vm_dirty_mode(struct vm *vm)
{
	return kvm_dirty_mode(vm->accel_vm);
}

/*
 * Reap @kc's ring: every entry KVM has published (DIRTY), in order, into the slot
 * bitmaps if @merge, each handed back as RESET. Caller holds ring_lock. Returns the count.
 */
static uint32_t reap_ring(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, struct guest_mem *m,
                          bool merge)
{
	uint32_t n = 0;

	while (n < kv->ring_entries) {
		struct kvm_dirty_gfn *g = &kc->ring[kc->ring_next & (kv->ring_entries - 1)];
		uint32_t flags = __atomic_load_n(&g->flags, __ATOMIC_ACQUIRE);
		uint32_t slot = g->slot & 0xffff; /* address space in the high half: always 0 */
		uint64_t off = g->offset;

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		if (merge && slot < (uint32_t)m->nslots && off < slot_pages(&m->slot[slot]))
			atomic_fetch_or_explicit(&m->slot[slot].dirty[off / 64], 1ULL << (off % 64),
			                         memory_order_relaxed);
		__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		kc->ring_next++;
		n++;
	}
	return n;
}

/* With PML: make every vCPU inside KVM_RUN exit once, so its PML buffer reaches its ring. */
static void pml_flush(struct kvm_vmstate *kv)
{
	struct vm *vm = kv->vm;

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpustate *kc = vm->vcpu[i].accel;
		uint64_t in;
		struct timespec ts = {0, 20000};

		if (!kc)
			continue;
		in = atomic_load(&kc->runs_in);
		if (atomic_load(&kc->runs_out) >= in)
			continue; /* outside KVM_RUN: its last exit flushed PML */
		vm->accel->vcpu_kick(&vm->vcpu[i]);
		for (int t = 0; t < 50000 && atomic_load(&kc->runs_out) < in; t++) {
			if (t % 500 == 499)
				vm->accel->vcpu_kick(&vm->vcpu[i]); /* the kick raced its entry */
			nanosleep(&ts, NULL);
		}
	}
}

/* Reap every vCPU's ring, then KVM_RESET_DIRTY_RINGS (write-protect what was reaped). */
static void reap_all(struct kvm_vmstate *kv, struct guest_mem *m, bool merge)
{
	uint32_t n = 0;

	if (kv->ring_kick)
		pml_flush(kv);
	pthread_mutex_lock(&kv->ring_lock);
	for (unsigned i = 0; i < kv->vm->nvcpus; i++) {
		struct kvm_vcpustate *kc = kv->vm->vcpu[i].accel;

		if (kc && kc->ring)
			n += reap_ring(kv, kc, m, merge);
	}
	if (n)
		ioctl(kv->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	pthread_mutex_unlock(&kv->ring_lock);
}

void kvm_dirty_ring_full(struct kvm_vmstate *kv, struct kvm_vcpustate *kc)
{
	struct guest_mem *m = &kv->vm->mem;

	atomic_fetch_add(&kv->ring_fulls, 1);
	pthread_mutex_lock(&kv->ring_lock);
	if (kc->ring && reap_ring(kv, kc, m, dirty_logging(m)))
		ioctl(kv->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	pthread_mutex_unlock(&kv->ring_lock);
}

/* Mark the whole slot dirty (an ioctl failed: over-report rather than lose pages). */
static void mark_all(struct mem_slot *s, uint64_t words)
{
	uint64_t pages = slot_pages(s);

	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = ~0ULL;

		if (w == words - 1 && pages % 64)
			bits = (1ULL << (pages % 64)) - 1;
		atomic_fetch_or_explicit(&s->dirty[w], bits, memory_order_relaxed);
	}
}

/* KVM_CLEAR_DIRTY_LOG the bits of @bm, one call per run of non-zero words. */
static int clear_fetched(struct kvm_vmstate *kv, int slot, uint64_t pages, uint64_t *bm,
                         uint64_t words)
{
	for (uint64_t w = 0; w < words;) {
		uint64_t end;
		struct kvm_clear_dirty_log c;

		if (!bm[w]) {
			w++;
			continue;
		}
		for (end = w; end < words && bm[end]; end++)
			;
		memset(&c, 0, sizeof(c));
		c.slot = (uint32_t)slot;
		c.first_page = w * 64; /* a multiple of 64, as KVM requires */
		c.num_pages = (uint32_t)((end * 64 < pages ? end * 64 : pages) - w * 64);
		c.dirty_bitmap = &bm[w];
		if (ioctl(kv->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -1;
		w = end;
	}
	return 0;
}

/* Fetch (and clear) KVM's log for every slot; merge it into the slot bitmaps if @merge. */
static void fetch_all(struct kvm_vmstate *kv, struct guest_mem *m, bool merge)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		uint64_t pages = slot_pages(s), words = (pages + 63) / 64;
		uint64_t *bm = kv->kvm_bitmap[i];
		struct kvm_dirty_log log;

		memset(&log, 0, sizeof(log));
		log.slot = (uint32_t)i;
		log.dirty_bitmap = bm;
		if (ioctl(kv->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			if (merge)
				mark_all(s, words);
			continue;
		}
		/* If the CLEAR fails, KVM simply reports these pages again at the next GET. */
		if (kv->manual_protect)
			clear_fetched(kv, i, pages, bm, words);
		if (!merge)
			continue;
		for (uint64_t w = 0; w < words; w++)
			if (bm[w])
				atomic_fetch_or_explicit(&s->dirty[w], bm[w], memory_order_relaxed);
	}
}

static void kvm_dirty_collect(void *opaque, struct guest_mem *m)
{
	struct kvm_vmstate *kv = opaque;

	if (!dirty_logging(m))
		return;
	kv->collected = true;
	if (kv->ring_entries)
		reap_all(kv, m, true);
	else
		fetch_all(kv, m, true);
}

static void kvm_dirty_flush(void *opaque, struct guest_mem *m, uint64_t new_epoch)
{
	struct kvm_vmstate *kv = opaque;

	if (kv->collected) {
		kv->collected = false;
		return;
	}
	if (!dirty_logging(m))
		return;
	if (kv->ring_entries) /* dirty_start(): forget what came before */
		reap_all(kv, m, false);
	else
		fetch_all(kv, m, false);
}

const struct dirty_source kvm_dirty_source = {
    .collect = kvm_dirty_collect,
    .flush = kvm_dirty_flush,
};
