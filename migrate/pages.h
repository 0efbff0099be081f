/*
 * pages.h - guest memory in PAGE_DATA records: batches of pages, each zero, raw or zstd.
 *
 * A PAGE_DATA body is: u32 count (1..PAGE_BATCH_MAX), u32 generation, count u64 entries
 * (bits 0-51 the guest frame number, gpa >> 12; bits 52-59 zero; bits 60-63 the encoding),
 * then the pages' data in entry order: nothing for ZERO, 4096 bytes for RAW, u32 length +
 * a zstd frame that decodes to exactly 4096 bytes for ZSTD, and for DELTA the same as
 * ZSTD, but what the frame decodes to is XORed into the page's previous version (XBZRLE's
 * idea with zstd for the run-length part): only migration streams carry DELTA, and their
 * sender puts every version of a page on the same channel, so the previous version is
 * always applied first. A loader checks every frame against guest RAM and every
 * length against the record before copying a byte.
 *
 * The generation is 0 in save files and checkpoints. A migration stream numbers its
 * pre-copy rounds 1, 2, ...: batches of one round may travel on several channels and
 * arrive in any order, and a page's version from a later round must never be overwritten
 * by one from an earlier round; struct page_gens keeps the generation of every page.
 */
#ifndef HV_MIGRATE_PAGES_H
#define HV_MIGRATE_PAGES_H

#include <pthread.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/mem.h"
#include "migrate/stream.h"

#define PAGE_BATCH_MAX  256
#define PAGE_FRAME_BITS 52
#define PAGE_ENC_SHIFT  60
#define PAGE_ENC_ZERO   0u
#define PAGE_ENC_RAW    1u
#define PAGE_ENC_ZSTD   2u
#define PAGE_ENC_DELTA  3u /* migration streams only */

#define PAGE_SAVE_THREADS_MAX 8

/*
 * How far a save has got: @done of @total pages in the VM-wide numbering (mem.h) scanned
 * and written. Called on the saving thread at most every 100 ms, and once at the end
 * with @done == @total.
 */
typedef void (*save_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct page_writer {
	struct stream *s;
	void *cctx; /* ZSTD_CCtx, NULL: raw only */
	int level;
	/*
	 * Compressing threads for pages_save_nonzero (1: all on the caller's thread). Set by
	 * page_writer_init from HV_SAVE_THREADS or the online CPUs (at most
	 * PAGE_SAVE_THREADS_MAX); a caller may change it before saving. Any value writes the
	 * same bytes.
	 */
	int threads;
	uint32_t count;
	uint32_t gen; /* generation written into each batch (0 for files) */
	uint64_t entry[PAGE_BATCH_MAX];
	uint8_t *data; /* page bodies of the pending batch */
	size_t dlen, dcap;
	uint64_t pages_zero, pages_raw, pages_zstd; /* statistics */
	save_progress_fn progress; /* optional, for pages_save_nonzero; set by the caller */
	void *progress_arg;
	uint64_t progress_ns; /* when it was last called */
};

/*
 * page_writer_init - batches onto @s; @level != 0 compresses pages with zstd at that level
 * (kept only when smaller; negative levels are zstd's fast ones), 0 sends them raw.
 */
int page_writer_init(struct page_writer *w, struct stream *s, int level, struct hv_error *err);
void page_writer_free(struct page_writer *w);

/* page_add - queue frame @gfn with contents @page (4096 bytes; all-zero ones become ZERO). */
int page_add(struct page_writer *w, uint64_t gfn, const void *page, struct hv_error *err);

/* page_flush - write the pending batch, if any. */
int page_flush(struct page_writer *w, struct hv_error *err);

/*
 * pages_save_nonzero - queue every page of @m that is not all-zero (holes in the memfds
 * are skipped without being read, so an untouched 4 GiB guest costs nothing) and flush.
 * With @w->threads > 1 and compression on, worker threads find and compress the pages
 * while the caller's thread writes them in guest order: the bytes are those of one thread.
 */
int pages_save_nonzero(struct page_writer *w, struct guest_mem *m, struct hv_error *err);

/*
 * pages_load - apply PAGE_DATA record @rec (untrusted) to @m. @dctx is a ZSTD_DCtx the
 * caller owns. On error nothing after the faulty page is written and @err names the
 * record's offset and the page.
 */
int pages_load(struct guest_mem *m, const struct record *rec, void *dctx, const char *name,
               struct hv_error *err);

#define PAGE_GEN_LOCKS 256

/* The generation of every page of a VM, for a receiver with several page channels. */
struct page_gens {
	uint32_t *gen; /* per VM-wide page number (hv/dirty.h) */
	uint64_t npages;
	pthread_mutex_t lock[PAGE_GEN_LOCKS]; /* striped by page number */
};

int page_gens_init(struct page_gens *g, const struct guest_mem *m, struct hv_error *err);
void page_gens_free(struct page_gens *g);

/*
 * pages_load_gen - as pages_load, for a migration stream: a batch may carry any
 * generation, and each page is applied only if its generation is at least the one
 * already applied to it (checked and applied under the page's lock, so channel threads
 * may call this concurrently on one guest). @gens NULL: generation 0 only, as pages_load.
 */
int pages_load_gen(struct guest_mem *m, const struct record *rec, void *dctx,
                   struct page_gens *gens, const char *name, struct hv_error *err);

/*
 * page_encode - the body of one page for a PAGE_DATA batch: returns PAGE_ENC_ZERO (nothing
 * written), PAGE_ENC_ZSTD or PAGE_ENC_RAW with *@len bytes written at @dst, which has room
 * for PAGE_BODY_MAX bytes. @cctx (from page_cctx_new) NULL: never compressed.
 */
#define PAGE_BODY_MAX 4200
unsigned page_encode(void *cctx, const void *page, uint8_t *dst, size_t *len);
void *page_cctx_new(int level);
void page_cctx_free(void *cctx);

/*
 * page_encode_delta - the DELTA body of @page against @prev, the version last sent, into
 * @dst (room for PAGE_BODY_MAX); @xbuf is 4096 bytes of scratch. Returns the body's
 * length, or 0 when the delta does not compress (then send the page itself).
 */
size_t page_encode_delta(void *cctx, const void *page, const void *prev, uint8_t *xbuf,
                         uint8_t *dst);

/*
 * page_batch_write - write one PAGE_DATA record: @count entries (frame | encoding), with
 * generation @gen, and @dlen bytes of bodies.
 */
int page_batch_write(struct stream *s, uint32_t gen, const uint64_t *entry, uint32_t count,
                     const void *data, size_t dlen, struct hv_error *err);

#endif
