/*
 * dirty.c - the dirty-page log.
 *
 * One bit per 4 KiB guest page, per memory slot. Writers (vCPU and device threads) set
 * bits with a relaxed atomic OR; the harvester takes words out with an atomic exchange,
 * so no write between two harvests is lost and vCPUs never have to stop.
 *
 * Backends that skip the log for pages they already know to be dirty (the emu's
 * not-dirty TLB caches "this page was marked in epoch E") are kept honest by the epoch:
 * every harvest bumps it after taking the bits and then waits (src->flush) until no vCPU
 * can still store through an entry of the old epoch. A store that raced with the
 * exchange therefore either set its bit before the exchange (harvested now) or finds a
 * stale epoch and marks the page again (harvested next time).
 */
#include <time.h>

#include "hv/dirty.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t slot_words(const struct mem_slot *s)
{
	return ((s->size >> MEM_PAGE_SHIFT) + 63) / 64;
}

/* Bump the epoch and wait for the backend's grace period. Lock held. */
static void dirty_new_epoch(struct guest_mem *m)
{
	uint64_t e = atomic_fetch_add_explicit(&m->dirty_epoch, 1, memory_order_seq_cst) + 1;

	if (m->dirty_src && m->dirty_src->flush)
		m->dirty_src->flush(m->dirty_src_opaque, m, e);
}

void dirty_set_source(struct guest_mem *m, const struct dirty_source *src, void *opaque)
{
	pthread_mutex_lock(&m->dirty_lock);
	m->dirty_src = src;
	m->dirty_src_opaque = src ? opaque : NULL;
	pthread_mutex_unlock(&m->dirty_lock);
}

void dirty_start(struct guest_mem *m)
{
	pthread_mutex_lock(&m->dirty_lock);
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		for (uint64_t w = 0; w < slot_words(s); w++)
			atomic_store_explicit(&s->dirty[w], 0, memory_order_relaxed);
	}
	atomic_store_explicit(&m->dirty_on, true, memory_order_seq_cst);
	dirty_new_epoch(m);
	/* The rate is measured from here, so the first harvest already yields one. */
	m->dirty_last_ns = now_ns();
	m->dirty_rate_bps = 0;
	pthread_mutex_unlock(&m->dirty_lock);
}

void dirty_stop(struct guest_mem *m)
{
	pthread_mutex_lock(&m->dirty_lock);
	atomic_store_explicit(&m->dirty_on, false, memory_order_seq_cst);
	atomic_fetch_add_explicit(&m->dirty_epoch, 1, memory_order_seq_cst);
	m->dirty_last_ns = 0;
	m->dirty_rate_bps = 0;
	pthread_mutex_unlock(&m->dirty_lock);
}

void dirty_mark(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len;

	if (!len || !dirty_logging(m))
		return;
	if (end < gpa)
		end = UINT64_MAX;
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		uint64_t lo = gpa > s->gpa ? gpa : s->gpa;
		uint64_t hi = end < s->gpa + s->size ? end : s->gpa + s->size;

		if (lo >= hi)
			continue;
		for (uint64_t pg = (lo - s->gpa) >> MEM_PAGE_SHIFT;
		     pg <= (hi - 1 - s->gpa) >> MEM_PAGE_SHIFT; pg++)
			dirty_mark_page(m, s, pg);
	}
}

/* OR @w (bits for VM-wide pages @page..@page+63) into @out; @page need not be aligned. */
static void or_bits(uint64_t *out, uint64_t page, uint64_t w)
{
	uint64_t idx = page / 64;
	unsigned sh = page % 64;

	out[idx] |= w << sh;
	if (sh && (w >> (64 - sh)))
		out[idx + 1] |= w >> (64 - sh);
}

uint64_t dirty_harvest(struct guest_mem *m, uint64_t *out)
{
	uint64_t count = 0, t;

	pthread_mutex_lock(&m->dirty_lock);
	if (m->dirty_src && m->dirty_src->collect)
		m->dirty_src->collect(m->dirty_src_opaque, m);
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		uint64_t n = slot_words(s);

		for (uint64_t w = 0; w < n; w++) {
			uint64_t bits;

			if (!atomic_load_explicit(&s->dirty[w], memory_order_relaxed))
				continue;
			bits = atomic_exchange_explicit(&s->dirty[w], 0, memory_order_acq_rel);
			if (!bits)
				continue;
			or_bits(out, s->first_page + w * 64, bits);
			count += (uint64_t)__builtin_popcountll(bits);
		}
	}
	dirty_new_epoch(m);

	t = now_ns();
	if (m->dirty_last_ns && t > m->dirty_last_ns) {
		double inst =
		    (double)(count * MEM_PAGE_SIZE) * 1e9 / (double)(t - m->dirty_last_ns);
		/* Exponential smoothing: a single idle or busy round does not swing the estimate.
		 */
		m->dirty_rate_bps =
		    m->dirty_rate_bps > 0 ? 0.5 * inst + 0.5 * m->dirty_rate_bps : inst;
	}
	m->dirty_last_ns = t;
	pthread_mutex_unlock(&m->dirty_lock);
	return count;
}

double dirty_rate(struct guest_mem *m)
{
	double r;

	pthread_mutex_lock(&m->dirty_lock);
	r = m->dirty_rate_bps;
	pthread_mutex_unlock(&m->dirty_lock);
	return r;
}

void dirty_unharvest(struct guest_mem *m, const uint64_t *bm)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		uint64_t n = s->size >> MEM_PAGE_SHIFT;

		for (uint64_t pg = 0; pg < n; pg++) {
			uint64_t p = s->first_page + pg;

			if (!(p % 64) && pg + 64 <= n && !bm[p / 64]) {
				pg += 63;
				continue;
			}
			if (bm[p / 64] & (1ull << (p % 64)))
				atomic_fetch_or_explicit(&s->dirty[pg / 64], 1ull << (pg % 64),
				                         memory_order_relaxed);
		}
	}
}
