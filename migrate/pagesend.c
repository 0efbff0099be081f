/*
 * pagesend.c - a pre-copy round on a pool of worker threads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hv/dirty.h"
#include "migrate/pages.h"
#include "migrate/pagesend.h"

#define PAGE        4096u
#define CLAIM_WORDS 4 /* 256 pages: one full batch at most */
#define WORKERS_MAX 8

struct round {
	struct page_sender *ps;
	const uint64_t *bitmap;
	uint64_t nwords;
	uint32_t gen;
	bool skip_zero;
	_Atomic uint64_t cursor; /* next bitmap word to claim */
	uint64_t t0_ns;
	pthread_mutex_t lock; /* err */
	_Atomic bool failed;
	struct hv_error err;
};

static uint64_t now_ns(int clock)
{
	struct timespec t;

	clock_gettime(clock, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

void page_sender_init(struct page_sender *ps, struct guest_mem *m, struct page_chan *ch,
                      unsigned nch, int level, uint64_t bandwidth, _Atomic bool *cancel)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = nch;

	memset(ps, 0, sizeof(*ps));
	ps->m = m;
	ps->ch = ch;
	ps->nch = nch;
	ps->level = level;
	ps->bandwidth = bandwidth;
	ps->cancel = cancel;
	if (level && cpus > (long)n)
		n = cpus > WORKERS_MAX ? WORKERS_MAX : (unsigned)cpus;
	ps->nworkers = n > WORKERS_MAX ? WORKERS_MAX : n;
}

int page_sender_delta(struct page_sender *ps, uint64_t bytes, struct hv_error *err)
{
	struct delta_cache *dc;

	if (!ps->level || bytes < PAGE)
		return 0;
	dc = calloc(1, sizeof(*dc));
	if (!dc)
		return hv_fail(err, ENOMEM, "out of memory for the delta cache");
	dc->nslots = bytes / PAGE;
	if (dc->nslots > ps->m->npages)
		dc->nslots = ps->m->npages ? ps->m->npages : 1;
	dc->tag = calloc(dc->nslots, sizeof(*dc->tag));
	dc->data = malloc(dc->nslots * PAGE);
	if (!dc->tag || !dc->data) {
		free(dc->tag);
		free(dc->data);
		free(dc);
		return hv_fail(err, ENOMEM, "out of memory for a %llu-byte delta cache",
		               (unsigned long long)bytes);
	}
	for (int i = 0; i < 64; i++)
		pthread_mutex_init(&dc->lock[i], NULL);
	ps->dc = dc;
	return 0;
}

void page_sender_free(struct page_sender *ps)
{
	struct delta_cache *dc = ps->dc;

	if (!dc)
		return;
	for (int i = 0; i < 64; i++)
		pthread_mutex_destroy(&dc->lock[i]);
	free(dc->tag);
	free(dc->data);
	free(dc);
	ps->dc = NULL;
}

/*
 * delta_try - with page @pn's new contents in @page, encoded @enc into @n bytes at @dst:
 * replace that with a DELTA when the cache holds the previous version and the delta is
 * smaller; then remember this version (a zero page forgets it). Returns the encoding.
 */
static unsigned delta_try(struct delta_cache *dc, void *cctx, uint64_t pn, const uint8_t *page,
                          unsigned enc, uint8_t *dst, size_t *n, uint8_t *xbuf, uint8_t *tmp)
{
	uint64_t slot = pn % dc->nslots;
	pthread_mutex_t *lk = &dc->lock[slot % 64];
	uint8_t *cached = dc->data + slot * PAGE;

	pthread_mutex_lock(lk);
	if (enc != PAGE_ENC_ZERO && dc->tag[slot] == pn + 1) {
		size_t d = page_encode_delta(cctx, page, cached, xbuf, tmp);
		if (d && d < *n) {
			memcpy(dst, tmp, d);
			*n = d;
			enc = PAGE_ENC_DELTA;
		}
	}
	if (enc == PAGE_ENC_ZERO) {
		if (dc->tag[slot] == pn + 1)
			dc->tag[slot] = 0;
	} else {
		memcpy(cached, page, PAGE);
		dc->tag[slot] = pn + 1;
	}
	pthread_mutex_unlock(lk);
	return enc;
}

/* Frame number of VM-wide page @pn, and where it is mapped. */
static uint8_t *page_at(struct guest_mem *m, uint64_t pn, uint64_t *gfn)
{
	struct mem_slot *s = mem_page_slot(m, pn);
	uint64_t off;

	if (!s)
		return NULL;
	off = (pn - s->first_page) * PAGE;
	*gfn = (s->gpa + off) >> 12;
	return s->hva + off;
}

static void round_fail(struct round *r, const struct hv_error *e)
{
	pthread_mutex_lock(&r->lock);
	if (!atomic_load(&r->failed)) {
		r->err = *e;
		atomic_store(&r->failed, true);
	}
	pthread_mutex_unlock(&r->lock);
}

/* Sleep while the round's writes run ahead of the bandwidth cap. */
static void rate_limit(struct page_sender *ps, const struct round *r)
{
	uint64_t sent = atomic_load(&ps->bytes_out), due;

	if (!ps->bandwidth)
		return;
	for (;;) {
		uint64_t el = now_ns(CLOCK_MONOTONIC) - r->t0_ns;
		due = (uint64_t)((double)el * (double)ps->bandwidth / 1e9);
		if (sent <= due + ps->bandwidth / 100 || atomic_load(ps->cancel))
			return;
		struct timespec ts = {0,
		                      (long)((double)(sent - due) * 1e9 / (double)ps->bandwidth)};
		if (ts.tv_nsec > 50000000)
			ts.tv_nsec = 50000000;
		nanosleep(&ts, NULL);
		sent = atomic_load(&ps->bytes_out);
	}
}

static void *worker(void *arg)
{
	struct round *r = arg;
	struct page_sender *ps = r->ps;
	void *cctx = page_cctx_new(ps->level);
	uint64_t *entry = malloc(PAGE_BATCH_MAX * sizeof(*entry));
	uint8_t *data = malloc((size_t)PAGE_BATCH_MAX * PAGE_BODY_MAX);
	uint8_t *copy = malloc(PAGE);
	uint8_t *xbuf = malloc(PAGE), *tmp = malloc(PAGE_BODY_MAX);
	uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	struct hv_error err = {0};

	if ((ps->level && !cctx) || !entry || !data || !copy || !xbuf || !tmp) {
		hv_fail(&err, ENOMEM, "page sender: out of memory");
		round_fail(r, &err);
		goto out;
	}
	for (;;) {
		uint64_t w = atomic_fetch_add(&r->cursor, CLAIM_WORDS), end = w + CLAIM_WORDS;
		uint64_t stretch = w / CLAIM_WORDS;
		uint32_t count = 0, zero = 0, skipped = 0, zstd = 0, raw = 0, delta = 0;
		size_t dlen = 0;

		if (w >= r->nwords || atomic_load(&r->failed))
			break;
		if (atomic_load(ps->cancel)) {
			hv_fail(&err, ECANCELED, "migration cancelled");
			round_fail(r, &err);
			break;
		}
		if (end > r->nwords)
			end = r->nwords;
		for (; w < end; w++) {
			uint64_t bits = r->bitmap[w];
			while (bits) {
				uint64_t pn = w * 64 + (uint64_t)__builtin_ctzll(bits), gfn;
				uint8_t *src = page_at(ps->m, pn, &gfn);
				size_t n;
				unsigned enc;

				bits &= bits - 1;
				if (!src)
					continue;
				/*
				 * zstd and the delta cache get a private copy: the guest may write
				 * the page while they read it. A raw page is copied once, from
				 * guest RAM into the batch; torn, it is dirty again anyway.
				 */
				if (cctx) {
					memcpy(copy, src, PAGE);
					enc = page_encode(cctx, copy, data + dlen, &n);
				} else {
					enc = page_encode(NULL, src, data + dlen, &n);
				}
				/* Like QEMU's XBZRLE, not in the first pass: the cache is for the
				 * pages that get dirty again, not for all of RAM. */
				if (ps->dc && !r->skip_zero)
					enc = delta_try(ps->dc, cctx, pn, copy, enc, data + dlen,
					                &n, xbuf, tmp);
				if (enc == PAGE_ENC_ZERO) {
					zero++;
					if (r->skip_zero) {
						skipped++;
						continue;
					}
				} else if (enc == PAGE_ENC_ZSTD) {
					zstd++;
				} else if (enc == PAGE_ENC_DELTA) {
					delta++;
				} else {
					raw++;
				}
				dlen += n;
				entry[count++] = gfn | (uint64_t)enc << PAGE_ENC_SHIFT;
			}
		}
		atomic_fetch_add(&ps->pages_zero, zero);
		atomic_fetch_add(&ps->pages_skipped, skipped);
		atomic_fetch_add(&ps->pages_zstd, zstd);
		atomic_fetch_add(&ps->pages_raw, raw);
		atomic_fetch_add(&ps->pages_delta, delta);
		atomic_fetch_add(&ps->pages_sent, count);
		if (!count)
			continue;
		/* The stretch decides the channel: a page's versions keep their order. */
		struct page_chan *pc = &ps->ch[stretch % ps->nch];
		pthread_mutex_lock(&pc->lock);
		int rc = page_batch_write(&pc->s, r->gen, entry, count, data, dlen, &err);
		if (rc == 0)
			pc->pages += count;
		pthread_mutex_unlock(&pc->lock);
		if (rc < 0) {
			round_fail(r, &err);
			break;
		}
		atomic_fetch_add(&ps->bytes_out, 16 + 8 + 8 * (uint64_t)count + dlen);
		rate_limit(ps, r);
	}
out:
	atomic_fetch_add(&ps->cpu_ns, now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0);
	page_cctx_free(cctx);
	free(entry);
	free(data);
	free(copy);
	free(xbuf);
	free(tmp);
	return NULL;
}

int page_send_round(struct page_sender *ps, const uint64_t *bitmap, uint32_t gen, bool skip_zero,
                    struct hv_error *err)
{
	struct round r = {.ps = ps,
	                  .bitmap = bitmap,
	                  .nwords = dirty_bitmap_words(ps->m),
	                  .gen = gen,
	                  .skip_zero = skip_zero,
	                  .t0_ns = now_ns(CLOCK_MONOTONIC)};
	pthread_t tid[WORKERS_MAX];
	unsigned started = 0;

	pthread_mutex_init(&r.lock, NULL);
	/* The bandwidth cap counts from the round's start against the bytes of this round. */
	atomic_store(&ps->bytes_out, 0);
	for (; started < ps->nworkers; started++)
		if (pthread_create(&tid[started], NULL, worker, &r))
			break;
	if (!started)
		worker(&r); /* no thread to be had: do it here */
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_mutex_destroy(&r.lock);
	if (atomic_load(&r.failed)) {
		if (err)
			*err = r.err;
		return -1;
	}
	for (unsigned i = 0; i < ps->nch; i++)
		if (stream_flush(&ps->ch[i].s, err) < 0)
			return -1;
	return 0;
}

uint64_t pages_data_bitmap(struct guest_mem *m, uint64_t *bitmap)
{
	uint64_t n = 0;

	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		off_t pos = 0;

		while ((uint64_t)pos < s->size) {
			off_t data = lseek(s->fd, pos, SEEK_DATA), hole;
			if (data < 0)
				break; /* ENXIO: holes to the end */
			hole = lseek(s->fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > s->size)
				hole = (off_t)s->size;
			for (uint64_t p = (uint64_t)data / PAGE;
			     p < ((uint64_t)hole + PAGE - 1) / PAGE; p++) {
				uint64_t pn = s->first_page + p;
				bitmap[pn / 64] |= 1ull << (pn % 64);
				n++;
			}
			pos = hole;
		}
	}
	return n;
}
