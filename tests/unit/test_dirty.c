/*
 * test_dirty.c - the dirty log: every write the VMM or a vCPU makes is harvested exactly
 * once, even while writers keep running during the harvest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include <cmocka.h>

#include "hv/dirty.h"
#include "hv/mem.h"

#define MiB (1ULL << 20)

static bool bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static uint64_t *bitmap(struct guest_mem *m)
{
	return calloc(dirty_bitmap_words(m), 8);
}

static void test_off_by_default(void **state)
{
	struct guest_mem m;
	uint64_t *b;
	uint8_t x = 1;

	assert_int_equal(mem_init(&m, 4 * MiB, NULL), 0);
	b = bitmap(&m);
	assert_false(dirty_logging(&m));
	assert_int_equal(gpa_write(&m, 0x3000, &x, 1, NULL), 0);
	assert_int_equal(dirty_harvest(&m, b), 0);
	free(b);
	mem_destroy(&m);
}

/* Written pages, and only those, come back; a second harvest finds nothing. */
static void test_harvest_exact(void **state)
{
	static const uint64_t pages[] = {0, 1, 63, 64, 65, 500, 1023};
	struct guest_mem m;
	uint64_t *b;
	uint8_t x = 1;

	assert_int_equal(mem_init(&m, 4 * MiB, NULL), 0);
	assert_int_equal(gpa_write(&m, 0x5000, &x, 1, NULL), 0); /* before start: forgotten */
	dirty_start(&m);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		assert_int_equal(gpa_write(&m, pages[i] * 4096 + 100, &x, 1, NULL), 0);
	b = bitmap(&m);
	assert_int_equal(dirty_harvest(&m, b), sizeof(pages) / sizeof(pages[0]));
	for (uint64_t p = 0, k = 0; p < m.npages; p++) {
		bool want = k < sizeof(pages) / sizeof(pages[0]) && pages[k] == p;
		assert_int_equal(bit(b, p), want);
		k += want;
	}
	memset(b, 0, dirty_bitmap_words(&m) * 8);
	assert_int_equal(dirty_harvest(&m, b), 0);
	dirty_stop(&m);
	assert_int_equal(gpa_write(&m, 0, &x, 1, NULL), 0);
	assert_int_equal(dirty_harvest(&m, b), 0);
	free(b);
	mem_destroy(&m);
}

/* A write across two adjacent slots marks the last page of one and the first of the
 * next; slots whose page numbering does not start on a 64-bit word still map right. */
static void test_marks_across_slots(void **state)
{
	struct guest_mem m;
	uint8_t buf[16] = {0};
	uint64_t *b;

	mem_init_empty(&m);
	assert_int_equal(mem_add_slot(&m, 0x100000, 3 * 4096, NULL), 0);
	assert_int_equal(mem_add_slot(&m, 0x103000, 100 * 4096, NULL), 0);
	assert_int_equal(m.npages, 103);
	dirty_start(&m);
	assert_int_equal(gpa_write(&m, 0x103000 - 8, buf, 16, NULL), 0); /* pages 2 and 3 */
	dirty_mark(&m, 0x103000 + 99 * 4096, 1);                         /* page 102 */
	dirty_mark(&m, 0x0, 4096);                                       /* not RAM: ignored */
	dirty_mark(&m, 0x103000 + 60 * 4096 + 4095, 2);                  /* pages 63, 64 */
	b = bitmap(&m);
	assert_int_equal(dirty_harvest(&m, b), 5);
	for (uint64_t p = 0; p < m.npages; p++)
		assert_int_equal(bit(b, p), p == 2 || p == 3 || p == 63 || p == 64 || p == 102);
	free(b);
	mem_destroy(&m);
}

/* dirty_start() forgets what was dirtied before. */
static void test_start_clears(void **state)
{
	struct guest_mem m;
	uint64_t *b;
	uint8_t x = 1;

	assert_int_equal(mem_init(&m, 4 * MiB, NULL), 0);
	dirty_start(&m);
	assert_int_equal(gpa_write(&m, 0x8000, &x, 1, NULL), 0);
	dirty_start(&m);
	b = bitmap(&m);
	assert_int_equal(dirty_harvest(&m, b), 0);
	free(b);
	mem_destroy(&m);
}

struct hook_log {
	int collects, flushes;
	uint64_t last_epoch;
	bool order_ok;
};

static void hook_collect(void *opaque, struct guest_mem *m)
{
	struct hook_log *h = opaque;

	/* dirty_start flushed once; each harvest then collects before it flushes. */
	h->order_ok &= h->collects + 1 == h->flushes;
	h->collects++;
}

static void hook_flush(void *opaque, struct guest_mem *m, uint64_t epoch)
{
	struct hook_log *h = opaque;

	h->order_ok &= epoch == atomic_load(&m->dirty_epoch) && epoch > h->last_epoch;
	h->last_epoch = epoch;
	h->flushes++;
}

/* Backends are asked to merge their log first and to drain stale epochs after. */
static void test_source_hooks(void **state)
{
	static const struct dirty_source src = {hook_collect, hook_flush};
	struct hook_log h = {.order_ok = true};
	struct guest_mem m;
	uint64_t *b;

	assert_int_equal(mem_init(&m, 4 * MiB, NULL), 0);
	dirty_set_source(&m, &src, &h);
	dirty_start(&m);
	assert_int_equal(h.flushes, 1);
	b = bitmap(&m);
	dirty_harvest(&m, b);
	dirty_harvest(&m, b);
	assert_int_equal(h.collects, 2);
	assert_int_equal(h.flushes, 3);
	assert_true(h.order_ok);
	free(b);
	mem_destroy(&m);
}

#define WRITERS 4
#define WPAGES  4096 /* 16 MiB */

struct writer {
	struct guest_mem *m;
	_Atomic bool *stop;
	uint64_t written[WPAGES / 64];
	unsigned seed, idx;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t n = 0;

	while (!atomic_load(w->stop) || n < 1000) {
		/* Each writer owns every WRITERS-th page: the bitmap words are shared, the
		 * guest bytes are not (two vCPUs storing to one byte would be a guest race). */
		uint64_t p = (uint64_t)rand_r(&w->seed) % (WPAGES / WRITERS) * WRITERS + w->idx;
		uint8_t v = (uint8_t)n++;
		if (p % 3) {
			gpa_write(w->m, p * 4096 + (n % 4096), &v, 1, NULL);
		} else {
			struct mem_slot *s = mem_slot_find(w->m, p * 4096);
			s->hva[p * 4096] = v; /* a vCPU store: data first, then the bit */
			dirty_mark_page(w->m, s, p);
		}
		w->written[p / 64] |= 1ULL << (p % 64);
	}
	return NULL;
}

/* Writers never stop while the log is harvested over and over; the union of all
 * harvests is exactly the set of pages written: no bit is lost, none invented. */
static void test_concurrent_harvest(void **state)
{
	struct guest_mem m;
	struct writer w[WRITERS];
	pthread_t t[WRITERS];
	_Atomic bool stop = false;
	uint64_t *acc, *b, total = 0;

	assert_int_equal(mem_init(&m, WPAGES * 4096ULL, NULL), 0);
	dirty_start(&m);
	acc = bitmap(&m);
	b = bitmap(&m);
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){
		    .m = &m, .stop = &stop, .seed = 12345u + (unsigned)i, .idx = (unsigned)i};
		memset(w[i].written, 0, sizeof(w[i].written));
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (int round = 0; round < 2000; round++) {
		memset(b, 0, dirty_bitmap_words(&m) * 8);
		total += dirty_harvest(&m, b);
		for (uint64_t i = 0; i < dirty_bitmap_words(&m); i++)
			acc[i] |= b[i];
	}
	atomic_store(&stop, true);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	memset(b, 0, dirty_bitmap_words(&m) * 8);
	total += dirty_harvest(&m, b);
	for (uint64_t i = 0; i < dirty_bitmap_words(&m); i++) {
		uint64_t want = 0;
		for (int k = 0; k < WRITERS; k++)
			want |= w[k].written[i];
		acc[i] |= b[i];
		assert_int_equal(acc[i], want);
	}
	assert_true(total > 0);
	free(acc);
	free(b);
	mem_destroy(&m);
}

static void test_rate(void **state)
{
	struct guest_mem m;
	struct timespec ts = {0, 20 * 1000 * 1000};
	uint64_t *b;
	uint8_t x = 1;

	assert_int_equal(mem_init(&m, 4 * MiB, NULL), 0);
	dirty_start(&m);
	assert_true(dirty_rate(&m) == 0);
	for (uint64_t p = 0; p < 100; p++)
		gpa_write(&m, p * 4096, &x, 1, NULL);
	nanosleep(&ts, NULL);
	b = bitmap(&m);
	assert_int_equal(dirty_harvest(&m, b), 100);
	/* 100 pages in ~20 ms: well above 1 MB/s, below 100 pages in a microsecond. */
	assert_true(dirty_rate(&m) > 1e6);
	assert_true(dirty_rate(&m) < 100 * 4096 * 1e6);
	free(b);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_off_by_default),
	    cmocka_unit_test(test_harvest_exact),
	    cmocka_unit_test(test_marks_across_slots),
	    cmocka_unit_test(test_start_clears),
	    cmocka_unit_test(test_source_hooks),
	    cmocka_unit_test(test_concurrent_harvest),
	    cmocka_unit_test(test_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
