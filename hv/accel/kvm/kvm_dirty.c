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
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv/accel/kvm/kvm_int.h"
#include "hv/dirty.h"
#include "hv/vm.h"

static uint64_t slot_pages(const struct mem_slot *s)
{
	return s->size >> MEM_PAGE_SHIFT;
}

int kvm_dirty_init(struct kvm_vmstate *kv, struct hv_error *err)
{
	struct guest_mem *m = &kv->vm->mem;
	int caps = kvm_check_cap(kv, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

	if (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) {
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
	fetch_all(kv, m, true);
}

static void kvm_dirty_flush(void *opaque, struct guest_mem *m, uint64_t new_epoch)
{
	struct kvm_vmstate *kv = opaque;

	if (kv->collected) {
		kv->collected = false;
		return;
	}
	if (dirty_logging(m))
		fetch_all(kv, m, false); /* dirty_start(): forget what came before */
}

const struct dirty_source kvm_dirty_source = {
    .collect = kvm_dirty_collect,
    .flush = kvm_dirty_flush,
};
