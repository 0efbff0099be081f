/*
 * cbw.h - copy-before-write of guest RAM: the content of chosen pages as it was at one
 * instant, read while the VM runs on (QEMU's background-snapshot idea).
 *
 * With the VM paused, cbw_arm() names the pages wanted (a VM-wide bitmap). From then on,
 * before a page still wanted is first written, the writer copies its old content aside
 * (cbw_before_write) and the page is no longer wanted; a reader (the checkpoint writer)
 * claims pages stretch by stretch with cbw_claim(), getting either the page itself (not
 * written since the arm) or the copy. Either way it gets the content at the arm.
 *
 * Who calls cbw_before_write: every VMM-side write to guest RAM goes through
 * dirty_mark_page() before the store (the emu's soft TLB takes its write slow path once
 * per page per dirty-log epoch, and the arm happens right after an epoch bump), which
 * calls it; for a backend whose vCPUs write RAM behind the VMM's back (KVM) cbw_arm's
 * trap write-protects the wanted pages with userfaultfd and calls it from the fault
 * handler (QEMU's background snapshot does the same).
 *
 * Copies are bounded (CBW_COPY_MAX bytes): past that a writer waits until the reader has
 * consumed some, which throttles a guest that writes faster than the store takes pages.
 * The reader never waits for writers, so this cannot deadlock.
 *
 * One arm at a time per guest_mem. All functions are thread-safe.
 */
#ifndef HV_CBW_H
#define HV_CBW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/mem.h"

#define CBW_STRETCH  64          /* pages per cbw_claim */
#define CBW_COPY_MAX (64u << 20) /* bytes of copies held before writers wait */

/*
 * cbw_arm - start copy-before-write of the pages set in @want (VM-wide numbering,
 * dirty_bitmap_words() words; ownership passes to cbw, which frees it, also on failure).
 * Call with every vCPU stopped and right after a dirty-log epoch bump (dirty_start or
 * dirty_harvest), so no vCPU holds a cached write permission. With @trap, also
 * write-protect the wanted pages with userfaultfd and serve the faults on a thread of
 * cbw's own - for a backend whose vCPUs write RAM without the VMM (KVM). Fails with
 * EBUSY if already armed, ENOMEM, or (with @trap) ENOSYS/ENOTSUP where the kernel lacks
 * userfaultfd write-protect of shared memory; nothing is armed then.
 */
int cbw_arm(struct guest_mem *m, uint64_t *want, bool trap, struct hv_error *err);

/*
 * cbw_claim - the arm-time content of the wanted pages among [@first, @first+@n)
 * (@first a multiple of CBW_STRETCH, @n <= CBW_STRETCH): for each such page i, copies it
 * into @buf + i*4096 and sets bit i of *@got; those pages are then no longer wanted.
 * Pages not wanted (never, or already claimed) are left alone. A wanted page whose bit
 * is set in @zero is given as zeros without reading RAM: the caller saw it in a hole of
 * the memfd, which it has been since the arm unless a writer copied it aside (then the
 * copy is given). Returns the number of pages given, or -1 when not armed or when a
 * writer could not copy a page (out of memory): the arm can no longer give a consistent
 * view and must be abandoned.
 */
int cbw_claim(struct guest_mem *m, uint64_t first, unsigned n, uint64_t zero, uint8_t *buf,
              uint64_t *got);

/*
 * cbw_disarm - stop: nothing is wanted any more, copies not claimed are dropped, waiting
 * writers go on. Returns how many pages writers copied aside since the arm (0 when not
 * armed, or already disarmed).
 */
uint64_t cbw_disarm(struct guest_mem *m);

/* cbw_armed - whether writers must call cbw_before_write: armed without a trap. */
static inline bool cbw_armed(struct guest_mem *m)
{
	return atomic_load_explicit(&m->cbw_on, memory_order_acquire);
}

/*
 * cbw_before_write_slow / cbw_before_write - call before writing VM-wide page @page: if it
 * is still wanted, its content is copied aside first (waiting while CBW_COPY_MAX bytes of
 * copies are pending). Must not be called by the thread that claims.
 */
void cbw_before_write_slow(struct guest_mem *m, uint64_t page);

static inline void cbw_before_write(struct guest_mem *m, uint64_t page)
{
	if (cbw_armed(m))
		cbw_before_write_slow(m, page);
}

/* cbw_free - release what cbw keeps in @m (mem_destroy calls it). */
void cbw_free(struct guest_mem *m);

#endif
