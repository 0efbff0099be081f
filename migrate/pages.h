/*
 * pages.h - guest memory in PAGE_DATA records: batches of pages, each zero, raw or zstd.
 *
 * A PAGE_DATA body is: u32 count (1..PAGE_BATCH_MAX), u32 reserved 0, count u64 entries
 * (bits 0-51 the guest frame number, gpa >> 12; bits 52-59 zero; bits 60-63 the encoding),
 * then the pages' data in entry order: nothing for ZERO, 4096 bytes for RAW, u32 length +
 * a zstd frame that decodes to exactly 4096 bytes for ZSTD. DELTA is reserved (rejected
 * until a reader implements it). A loader checks every frame against guest RAM and every
 * length against the record before copying a byte.
 */
#ifndef HV_MIGRATE_PAGES_H
#define HV_MIGRATE_PAGES_H

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
#define PAGE_ENC_DELTA  3u /* reserved */

#define PAGE_SAVE_THREADS_MAX 8

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
	uint64_t entry[PAGE_BATCH_MAX];
	uint8_t *data; /* page bodies of the pending batch */
	size_t dlen, dcap;
	uint64_t pages_zero, pages_raw, pages_zstd; /* statistics */
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

#endif
