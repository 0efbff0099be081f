/*
 * dirty.h - the dirty-page log: one bit per 4 KiB page, per memory slot.
 *
 * Writers (vCPU threads, devices, loaders) set bits with a relaxed atomic OR; the
 * harvester takes words out with an atomic exchange, so no write between two harvests is
 * lost and vCPUs never stop. Backends that cache "this page is already dirty" (the emu's
 * not-dirty TLB) or keep their own log (KVM) plug in through struct dirty_source.
 *
 * Page numbering is VM-wide: slot i's page j is bit slot[i].first_page + j.
 */
#ifndef HV_DIRTY_H
#define HV_DIRTY_H

#include "hv/cbw.h"
#include "hv/mem.h"

/*
 * Hooks a backend provides; both are called with the log's lock held, from the harvesting
 * thread, while vCPUs keep running.
 * @collect: merge the backend's own log into the slot bitmaps (KVM_GET_DIRTY_LOG...).
 *           Called before the bitmaps are taken.
 * @flush:   the epoch has just been bumped; return only once no vCPU can still complete
 *           a store that skips the log because it cached the old epoch (an RCU-style grace
 *           period: every running vCPU has passed an instruction boundary).
 */
struct dirty_source {
	void (*collect)(void *opaque, struct guest_mem *m);
	void (*flush)(void *opaque, struct guest_mem *m, uint64_t new_epoch);
};

/* dirty_set_source - install backend hooks (NULL to remove). */
void dirty_set_source(struct guest_mem *m, const struct dirty_source *src, void *opaque);

/* dirty_start - clear every bitmap and start logging. dirty_stop - stop logging. */
void dirty_start(struct guest_mem *m);
void dirty_stop(struct guest_mem *m);
static inline bool dirty_logging(struct guest_mem *m)
{
	return atomic_load_explicit(&m->dirty_on, memory_order_relaxed);
}

/*
 * dirty_mark_page - mark page @pfn_in_slot of @s dirty (no-op when logging is off). Writers
 * that call it before their store also serve copy-before-write (cbw.h) through it.
 */
static inline void dirty_mark_page(struct guest_mem *m, struct mem_slot *s, uint64_t page)
{
	cbw_before_write(m, s->first_page + page);
	if (!atomic_load_explicit(&m->dirty_on, memory_order_relaxed))
		return;
	atomic_fetch_or_explicit(&s->dirty[page / 64], 1ULL << (page % 64),
				 memory_order_relaxed);
}

/* dirty_mark - mark every page touched by [@gpa, @gpa+@len); non-RAM bytes are ignored. */
void dirty_mark(struct guest_mem *m, uint64_t gpa, uint64_t len);

/* dirty_bitmap_words - 64-bit words needed for a VM-wide bitmap of @m. */
static inline uint64_t dirty_bitmap_words(const struct guest_mem *m)
{
	return (m->npages + 63) / 64;
}

/*
 * dirty_harvest - move the bits set since the last harvest into @out (VM-wide page
 * numbering, dirty_bitmap_words() words, caller-owned; bits are ORed in, so the caller
 * zeroes it first) and clear them. Returns the number of pages harvested. Safe against
 * concurrent writers; never stops vCPUs. Also updates the dirty-rate estimate.
 */
uint64_t dirty_harvest(struct guest_mem *m, uint64_t *out);

/*
 * dirty_unharvest - put the bits of @bm (as dirty_harvest gave them) back into the log, so
 * the next harvest returns them again: for a consumer that failed to save those pages.
 */
void dirty_unharvest(struct guest_mem *m, const uint64_t *bm);

/*
 * dirty_rate - smoothed estimate of bytes dirtied per second, measured over the intervals
 * between dirty_start() and each harvest (0 until the first harvest after dirty_start()).
 */
double dirty_rate(struct guest_mem *m);

#endif
