/*
 * pages.c - PAGE_DATA batches: encode guest pages for a stream, decode them into RAM.
 *
 * Zero pages cost 8 bytes of entry (and nothing in a save file, whose writer skips them:
 * a restored VM starts with zeroed RAM). Each other page is compressed on its own with
 * zstd, so a batch never needs more than one page of scratch and a reader can check each
 * page's length independently.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "migrate/pages.h"

#define PAGE   4096u
#define ZBOUND ZSTD_COMPRESSBOUND(PAGE)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* HV_SAVE_THREADS (1 disables the workers), else one per online CPU, up to the cap. */
static int default_threads(void)
{
	const char *e = getenv("HV_SAVE_THREADS");
	long n;

	if (e && *e) {
		char *end;
		n = strtol(e, &end, 10);
		if (!*end && n >= 1)
			return n > PAGE_SAVE_THREADS_MAX ? PAGE_SAVE_THREADS_MAX : (int)n;
	}
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > PAGE_SAVE_THREADS_MAX ? PAGE_SAVE_THREADS_MAX : (int)n;
}

static void *new_cctx(int level)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();

	if (c) {
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
	}
	return c;
}

int page_writer_init(struct page_writer *w, struct stream *s, int level, struct hv_error *err)
{
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->level = level;
	w->threads = default_threads();
	w->dcap = (size_t)PAGE_BATCH_MAX * (4 + ZBOUND);
	w->data = malloc(w->dcap);
	if (!w->data)
		return hv_fail(err, ENOMEM, "PAGE_DATA: out of memory");
	if (level != 0) {
		w->cctx = new_cctx(level);
		if (!w->cctx) {
			page_writer_free(w);
			return hv_fail(err, ENOMEM, "PAGE_DATA: cannot create a zstd context");
		}
	}
	return 0;
}

void page_writer_free(struct page_writer *w)
{
	ZSTD_freeCCtx(w->cctx);
	w->cctx = NULL;
	free(w->data);
	w->data = NULL;
}

int page_batch_write(struct stream *s, uint32_t gen, const uint64_t *entry, uint32_t count,
                     const void *data, size_t dlen, struct hv_error *err)
{
	uint8_t hdr[8], ent[PAGE_BATCH_MAX * 8];
	const void *parts[3] = {hdr, ent, data};
	size_t lens[3] = {8, (size_t)count * 8, dlen};

	put32(hdr, count);
	put32(hdr + 4, gen);
	for (uint32_t i = 0; i < count; i++) {
		put32(ent + 8 * i, (uint32_t)entry[i]);
		put32(ent + 8 * i + 4, (uint32_t)(entry[i] >> 32));
	}
	return stream_write_record(s, REC_PAGE_DATA, parts, lens, 3, err);
}

int page_flush(struct page_writer *w, struct hv_error *err)
{
	uint32_t count = w->count;
	size_t dlen = w->dlen;

	if (!count)
		return 0;
	w->count = 0;
	w->dlen = 0;
	return page_batch_write(w->s, w->gen, w->entry, count, w->data, dlen, err);
}

static bool all_zero(const void *p)
{
	const uint64_t *q = p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

/*
 * encode - the body of non-zero @page at @dst (room for 4 + ZBOUND bytes): a zstd frame
 * with its length when that is smaller than the page, else the page itself. The serial
 * writer and the workers share it, so both produce the same bytes. Returns the encoding
 * and sets *@len to the bytes written.
 */
static uint64_t encode(void *cctx, const void *page, uint8_t *dst, size_t *len)
{
	size_t n = 0;

	if (cctx) {
		n = ZSTD_compress2(cctx, dst + 4, ZBOUND, page, PAGE);
		if (ZSTD_isError(n))
			n = 0;
	}
	if (n && n + 4 < PAGE) {
		put32(dst, (uint32_t)n);
		*len = 4 + n;
		return PAGE_ENC_ZSTD;
	}
	memcpy(dst, page, PAGE);
	*len = PAGE;
	return PAGE_ENC_RAW;
}

_Static_assert(4 + ZBOUND <= PAGE_BODY_MAX, "PAGE_BODY_MAX too small");

unsigned page_encode(void *cctx, const void *page, uint8_t *dst, size_t *len)
{
	if (all_zero(page)) {
		*len = 0;
		return PAGE_ENC_ZERO;
	}
	return (unsigned)encode(cctx, page, dst, len);
}

size_t page_encode_delta(void *cctx, const void *page, const void *prev, uint8_t *xbuf,
                         uint8_t *dst)
{
	const uint64_t *a = page, *b = prev;
	uint64_t *x = (uint64_t *)xbuf;
	size_t n;

	for (unsigned i = 0; i < PAGE / 8; i++)
		x[i] = a[i] ^ b[i];
	if (!cctx)
		return 0;
	n = ZSTD_compress2(cctx, dst + 4, ZBOUND, xbuf, PAGE);
	if (ZSTD_isError(n) || n + 4 >= PAGE)
		return 0;
	put32(dst, (uint32_t)n);
	return 4 + n;
}

void *page_cctx_new(int level)
{
	return level ? new_cctx(level) : NULL;
}

void page_cctx_free(void *cctx)
{
	ZSTD_freeCCtx(cctx);
}

static int frame_too_large(uint64_t gfn, struct hv_error *err)
{
	return hv_fail(err, EINVAL, "PAGE_DATA: frame %llu too large", (unsigned long long)gfn);
}

int page_add(struct page_writer *w, uint64_t gfn, const void *page, struct hv_error *err)
{
	uint64_t enc = PAGE_ENC_ZERO;

	if (gfn >> PAGE_FRAME_BITS)
		return frame_too_large(gfn, err);
	if (all_zero(page)) {
		w->pages_zero++;
	} else {
		size_t n;
		enc = encode(w->cctx, page, w->data + w->dlen, &n);
		w->dlen += n;
		if (enc == PAGE_ENC_ZSTD)
			w->pages_zstd++;
		else
			w->pages_raw++;
	}
	w->entry[w->count++] = gfn | enc << PAGE_ENC_SHIFT;
	if (w->count == PAGE_BATCH_MAX)
		return page_flush(w, err);
	return 0;
}

/*
 * The parallel save. Workers claim consecutive ranges of up to CHUNK_PAGES pages of
 * guest address space (numbered in guest order), skip the zero pages of a range and
 * encode the others into a slot of a ring; the caller's thread takes the slots in range
 * order and feeds their pages into the same PAGE_BATCH_MAX batches the serial writer
 * makes. Pages are encoded independently (one-shot ZSTD_compress2 with the same
 * parameters in every context), so who encodes a page changes none of its bytes, and
 * batch boundaries depend only on the order of the non-zero pages. The ring has
 * RING_PER_THREAD slots a worker, which bounds memory to about 2 MiB a worker whatever
 * the guest's size, and lets workers run ahead of a writer stalled on I/O.
 */
#define CHUNK_PAGES     256
#define RING_PER_THREAD 2

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };

struct chunk {
	int state;
	uint64_t seq; /* FREE: the range it waits for (older ones wait too); else held */
	uint32_t n;   /* non-zero pages */
	uint64_t entry[CHUNK_PAGES]; /* as in a batch */
	uint32_t end[CHUNK_PAGES];   /* page i's body is data[end[i-1]..end[i]) */
	uint64_t zstd, raw;
	uint64_t upto; /* VM-wide page number just past the range (progress) */
	int rc;
	struct hv_error err;
	uint8_t *data;
};

struct saver {
	pthread_mutex_t lock;
	pthread_cond_t ready; /* a slot became READY or the ranges ran out: the writer */
	pthread_cond_t freed; /* a slot became FREE or stop was set: the workers */
	struct guest_mem *m;
	int level;
	bool stop;
	/* range iterator, under lock: the serial loop's variables, in the same order */
	int slot;
	off_t pos;
	uint64_t off, hole;
	bool done;
	uint64_t next_seq;
	struct chunk *ring;
	unsigned nring;
};

/*
 * next_range - the next range of slot memory to scan, as pages_save_nonzero_serial's loop
 * would visit it. Called under s->lock. Returns false at the end of guest memory.
 */
static bool next_range(struct saver *s, struct mem_slot **slp, uint64_t *start, uint64_t *end)
{
	for (;;) {
		struct mem_slot *sl;
		off_t data, hole;

		if (s->slot >= s->m->nslots)
			return false;
		sl = &s->m->slot[s->slot];
		if (s->off < s->hole) {
			*slp = sl;
			*start = s->off;
			*end = s->hole - s->off > (uint64_t)CHUNK_PAGES * PAGE
			           ? s->off + (uint64_t)CHUNK_PAGES * PAGE
			           : s->hole;
			s->off = *end;
			return true;
		}
		if ((uint64_t)s->pos >= sl->size || (data = lseek(sl->fd, s->pos, SEEK_DATA)) < 0) {
			s->slot++; /* ENXIO: nothing but holes from here */
			s->pos = 0;
			s->off = s->hole = 0;
			continue;
		}
		hole = lseek(sl->fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > sl->size)
			hole = (off_t)sl->size;
		s->off = (uint64_t)data & ~(uint64_t)(PAGE - 1);
		s->hole = (uint64_t)hole;
		s->pos = hole;
	}
}

static void encode_range(struct chunk *c, void *cctx, struct mem_slot *sl, uint64_t start,
                         uint64_t end)
{
	uint32_t len = 0;

	c->n = 0;
	c->zstd = c->raw = 0;
	c->rc = 0;
	for (uint64_t off = start; off < end; off += PAGE) {
		const uint8_t *p = sl->hva + off;
		uint64_t gfn = (sl->gpa + off) >> 12, enc;
		size_t n;

		if (all_zero(p))
			continue;
		if (gfn >> PAGE_FRAME_BITS) {
			c->rc = frame_too_large(gfn, &c->err);
			return;
		}
		enc = encode(cctx, p, c->data + len, &n);
		len += (uint32_t)n;
		if (enc == PAGE_ENC_ZSTD)
			c->zstd++;
		else
			c->raw++;
		c->entry[c->n] = gfn | enc << PAGE_ENC_SHIFT;
		c->end[c->n++] = len;
	}
}

static void *worker(void *arg)
{
	struct saver *s = arg;
	void *cctx = new_cctx(s->level);

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct mem_slot *sl;
		uint64_t start, end, seq;
		struct chunk *c;

		if (!next_range(s, &sl, &start, &end)) {
			s->done = true;
			pthread_cond_broadcast(&s->ready);
			break;
		}
		/*
		 * Claim the number first, then wait for its slot, and for its turn there: two
		 * claims may wait on one slot, and the later must not take it. The lowest
		 * number not yet written always has its turn (its predecessor in the slot was
		 * written), so the wait cannot deadlock.
		 */
		seq = s->next_seq++;
		c = &s->ring[seq % s->nring];
		while (!(c->state == SLOT_FREE && c->seq == seq) && !s->stop)
			pthread_cond_wait(&s->freed, &s->lock);
		if (s->stop)
			break;
		c->state = SLOT_BUSY;
		c->upto = sl->first_page + end / PAGE;
		pthread_mutex_unlock(&s->lock);
		/* No context (ENOMEM): fail the save; raw pages would change its bytes. */
		if (cctx)
			encode_range(c, cctx, sl, start, end);
		else
			c->rc = hv_fail(&c->err, ENOMEM, "PAGE_DATA: cannot create a zstd context");
		pthread_mutex_lock(&s->lock);
		c->state = SLOT_READY;
		pthread_cond_broadcast(&s->ready);
	}
	pthread_mutex_unlock(&s->lock);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Tell @w's progress callback, if any, at most every 100 ms (and always at the end). */
static void progress(struct page_writer *w, uint64_t done, uint64_t total)
{
	uint64_t t;

	if (!w->progress)
		return;
	t = now_ns();
	if (done < total && t - w->progress_ns < 100000000ull)
		return;
	w->progress_ns = t;
	w->progress(w->progress_arg, done, total);
}

/* put_chunk - append @c's pages to @w's batches, flushing each one that fills. */
static int put_chunk(struct page_writer *w, const struct chunk *c, struct hv_error *err)
{
	uint32_t i = 0;

	while (i < c->n) {
		uint32_t k = PAGE_BATCH_MAX - w->count, from = i ? c->end[i - 1] : 0;
		if (k > c->n - i)
			k = c->n - i;
		memcpy(w->entry + w->count, c->entry + i, k * sizeof(uint64_t));
		memcpy(w->data + w->dlen, c->data + from, c->end[i + k - 1] - from);
		w->dlen += c->end[i + k - 1] - from;
		w->count += k;
		i += k;
		if (w->count == PAGE_BATCH_MAX && page_flush(w, err) < 0)
			return -1;
	}
	w->pages_zstd += c->zstd;
	w->pages_raw += c->raw;
	return 0;
}

/* pages_save_parallel - as pages_save_nonzero_serial; returns 1 if no worker could start. */
static int pages_save_parallel(struct page_writer *w, struct guest_mem *m, struct hv_error *err)
{
	struct saver s = {.m = m, .level = w->level};
	pthread_t tid[PAGE_SAVE_THREADS_MAX];
	int nthreads = w->threads > PAGE_SAVE_THREADS_MAX ? PAGE_SAVE_THREADS_MAX : w->threads;
	int started = 0, rc = 0;

	s.nring = (unsigned)nthreads * RING_PER_THREAD;
	s.ring = calloc(s.nring, sizeof(*s.ring));
	if (!s.ring)
		return hv_fail(err, ENOMEM, "PAGE_DATA: out of memory");
	for (unsigned i = 0; i < s.nring; i++) {
		s.ring[i].seq = i;
		/* a chunk's bodies fit in a batch's buffer: CHUNK_PAGES <= PAGE_BATCH_MAX */
		s.ring[i].data = malloc((size_t)CHUNK_PAGES * (4 + ZBOUND));
		if (!s.ring[i].data) {
			rc = hv_fail(err, ENOMEM, "PAGE_DATA: out of memory");
			goto out;
		}
	}
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.ready, NULL);
	pthread_cond_init(&s.freed, NULL);
	for (; started < nthreads; started++)
		if (pthread_create(&tid[started], NULL, worker, &s))
			break; /* fewer workers: slower, same bytes */
	if (!started) {
		rc = 1;
		goto destroy;
	}
	for (uint64_t seq = 0;; seq++) {
		struct chunk *c = &s.ring[seq % s.nring];
		bool have;

		pthread_mutex_lock(&s.lock);
		while (!(have = c->state == SLOT_READY && c->seq == seq) &&
		       !(s.done && seq == s.next_seq))
			pthread_cond_wait(&s.ready, &s.lock);
		pthread_mutex_unlock(&s.lock);
		if (!have)
			break; /* done: every range was written */
		if (c->rc < 0) {
			if (err) /* hv_fail accepts a NULL err, so must we */
				*err = c->err;
			rc = -1;
		} else {
			rc = put_chunk(w, c, err);
		}
		if (rc < 0)
			break;
		progress(w, c->upto, m->npages);
		pthread_mutex_lock(&s.lock);
		c->state = SLOT_FREE;
		c->seq = seq + s.nring;
		pthread_cond_broadcast(&s.freed);
		pthread_mutex_unlock(&s.lock);
	}
	/* On an error (a failed write: disk full) stop the workers before unwinding. */
	pthread_mutex_lock(&s.lock);
	s.stop = true;
	pthread_cond_broadcast(&s.freed);
	pthread_mutex_unlock(&s.lock);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
destroy:
	pthread_cond_destroy(&s.freed);
	pthread_cond_destroy(&s.ready);
	pthread_mutex_destroy(&s.lock);
out:
	for (unsigned i = 0; i < s.nring; i++)
		free(s.ring[i].data);
	free(s.ring);
	return rc;
}

static int pages_save_nonzero_serial(struct page_writer *w, struct guest_mem *m,
                                     struct hv_error *err)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *sl = &m->slot[i];
		off_t pos = 0;

		while ((uint64_t)pos < sl->size) {
			off_t data = lseek(sl->fd, pos, SEEK_DATA), hole;
			if (data < 0)
				break; /* ENXIO: nothing but holes from here */
			hole = lseek(sl->fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > sl->size)
				hole = (off_t)sl->size;
			for (uint64_t off = (uint64_t)data & ~(uint64_t)(PAGE - 1);
			     off < (uint64_t)hole; off += PAGE) {
				const uint8_t *p = sl->hva + off;
				if (off % (256 * PAGE) == 0)
					progress(w, sl->first_page + off / PAGE, m->npages);
				if (all_zero(p))
					continue;
				if (page_add(w, (sl->gpa + off) >> 12, p, err) < 0)
					return -1;
			}
			pos = hole;
		}
	}
	return page_flush(w, err);
}

int pages_save_nonzero(struct page_writer *w, struct guest_mem *m, struct hv_error *err)
{
	int rc = 1;

	/* Raw pages (level 0) cost a copy, not worth a thread; compressed ones do. */
	if (w->cctx && w->threads > 1) {
		rc = pages_save_parallel(w, m, err);
		if (rc == 0)
			rc = page_flush(w, err);
	}
	if (rc > 0)
		rc = pages_save_nonzero_serial(w, m, err);
	if (rc == 0)
		progress(w, m->npages, m->npages);
	return rc < 0 ? -1 : 0;
}

int page_gens_init(struct page_gens *g, const struct guest_mem *m, struct hv_error *err)
{
	g->npages = m->npages;
	g->gen = calloc(m->npages ? m->npages : 1, sizeof(*g->gen));
	if (!g->gen)
		return hv_fail(err, ENOMEM, "out of memory for %llu page generations",
		               (unsigned long long)m->npages);
	for (int i = 0; i < PAGE_GEN_LOCKS; i++)
		pthread_mutex_init(&g->lock[i], NULL);
	return 0;
}

void page_gens_free(struct page_gens *g)
{
	if (!g->gen)
		return;
	for (int i = 0; i < PAGE_GEN_LOCKS; i++)
		pthread_mutex_destroy(&g->lock[i]);
	free(g->gen);
	g->gen = NULL;
}

/*
 * put_page - copy @src (NULL: zeros) to @dst, or XOR it in (@xor: a DELTA), if generation
 * @gen is not older than the page's; under the page's stripe lock so that two channels
 * never interleave on a page.
 */
/* write_page - the copy, zeroing or XOR itself. */
static void write_page(uint8_t *dst, const void *src, bool xor)
{
	const uint64_t *x = src;
	uint64_t *d = (uint64_t *)dst;

	if (xor)
		for (unsigned i = 0; i < PAGE / 8; i++)
			d[i] ^= x[i];
	else if (src)
		memcpy(dst, src, PAGE);
	else
		memset(dst, 0, PAGE);
}

static void put_page(struct page_gens *g, struct guest_mem *m, uint64_t gfn, uint32_t gen,
                     uint8_t *dst, const void *src, bool xor)
{
	struct mem_slot *sl;
	uint64_t pn;
	pthread_mutex_t *lk;

	if (!g) {
		write_page(dst, src, xor);
		return;
	}
	sl = mem_slot_find(m, gfn << 12);
	pn = sl->first_page + ((gfn << 12) - sl->gpa) / PAGE;
	lk = &g->lock[pn % PAGE_GEN_LOCKS];
	pthread_mutex_lock(lk);
	if (gen >= g->gen[pn]) {
		g->gen[pn] = gen;
		write_page(dst, src, xor);
	}
	pthread_mutex_unlock(lk);
}

int pages_load(struct guest_mem *m, const struct record *rec, void *dctx, const char *name,
               struct hv_error *err)
{
	return pages_load_gen(m, rec, dctx, NULL, name, err);
}

int pages_load_gen(struct guest_mem *m, const struct record *rec, void *dctx,
                   struct page_gens *gens, const char *name, struct hv_error *err)
{
	const uint8_t *b = rec->body;
	unsigned long long off = (unsigned long long)rec->off;
	uint8_t tmp[PAGE];
	uint32_t count, gen;
	size_t pos;

	if (rec->len < 8)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: %u-byte body, "
		               "shorter than its header",
		               name, off, rec->len);
	count = get32(b);
	if (count < 1 || count > PAGE_BATCH_MAX)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: count %u, must "
		               "be 1..%d",
		               name, off, count, PAGE_BATCH_MAX);
	gen = get32(b + 4);
	if (gen && !gens)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: generation %u in a "
		               "stream that is not a migration",
		               name, off, gen);
	if ((size_t)rec->len < 8 + (size_t)count * 8)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: %u entries do "
		               "not fit in %u bytes",
		               name, off, count, rec->len);
	pos = 8 + (size_t)count * 8;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = get64(b + 8 + 8 * (size_t)i);
		uint64_t gfn = e & ((1ULL << PAGE_FRAME_BITS) - 1);
		unsigned enc = (unsigned)(e >> PAGE_ENC_SHIFT);
		uint8_t *dst;

		if ((e >> PAGE_FRAME_BITS) & 0xff)
			return hv_fail(err, EINVAL,
			               "%s: record PAGE_DATA at offset %llu: page %u: "
			               "reserved entry bits set",
			               name, off, i);
		if (!gpa_is_ram(m, gfn << 12, PAGE))
			return hv_fail(err, ERANGE,
			               "%s: record PAGE_DATA at offset %llu: page %u: "
			               "frame 0x%llx outside guest RAM",
			               name, off, i, (unsigned long long)gfn);
		dst = mem_hva(m, gfn << 12, PAGE);
		if (enc != PAGE_ENC_ZERO) {
			/* Commit the page's 2 MiB chunk in one call, not a host fault a page. */
			struct mem_slot *sl = mem_slot_find(m, gfn << 12);
			mem_populate(sl, (gfn << 12) - sl->gpa);
		}
		switch (enc) {
		case PAGE_ENC_ZERO: put_page(gens, m, gfn, gen, dst, NULL, false); break;
		case PAGE_ENC_RAW:
			if (rec->len - pos < PAGE)
				goto short_body;
			put_page(gens, m, gfn, gen, dst, b + pos, false);
			pos += PAGE;
			break;
		case PAGE_ENC_DELTA:
			if (!gens)
				return hv_fail(
				    err, EINVAL,
				    "%s: record PAGE_DATA at offset %llu: page %u: DELTA "
				    "in a stream that is not a migration",
				    name, off, i);
			/* the body is a zstd frame, XORed in below */
			__attribute__((fallthrough));
		case PAGE_ENC_ZSTD: {
			uint32_t n;
			size_t r;
			if (rec->len - pos < 4)
				goto short_body;
			n = get32(b + pos);
			if (n > ZBOUND || rec->len - pos - 4 < n)
				return hv_fail(err, EINVAL,
				               "%s: record PAGE_DATA at offset %llu: "
				               "page %u: compressed length %u invalid",
				               name, off, i, n);
			r = ZSTD_decompressDCtx(dctx, tmp, PAGE, b + pos + 4, n);
			if (ZSTD_isError(r) || r != PAGE)
				return hv_fail(err, EINVAL,
				               "%s: record PAGE_DATA at offset %llu: "
				               "page %u: zstd data does not decode to one page%s%s",
				               name, off, i, ZSTD_isError(r) ? ": " : "",
				               ZSTD_isError(r) ? ZSTD_getErrorName(r) : "");
			put_page(gens, m, gfn, gen, dst, tmp, enc == PAGE_ENC_DELTA);
			pos += 4 + n;
			break;
		}
		default:
			return hv_fail(err, EINVAL,
			               "%s: record PAGE_DATA at offset %llu: page %u: "
			               "unsupported encoding %u",
			               name, off, i, enc);
		}
	}
	if (pos != rec->len)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: %zu bytes left "
		               "over after %u pages",
		               name, off, (size_t)rec->len - pos, count);
	return 0;
short_body:
	return hv_fail(err, EINVAL,
	               "%s: record PAGE_DATA at offset %llu: page data runs past "
	               "the end of the record",
	               name, off);
}
