/*
 * pagesend.h - one pre-copy round: the pages of a bitmap, encoded by a pool of worker
 * threads and sent as PAGE_DATA batches over the page channels.
 *
 * Workers claim 256-page stretches of the bitmap, copy each page out of guest RAM (the
 * vCPUs keep running: a page written meanwhile is in the next harvest and goes again),
 * encode it (zero as a bit, zstd when that is smaller, else raw) and write the batch,
 * stamped with the round's generation, on a channel under that channel's lock. A
 * stretch always goes on the same channel (its number modulo the channels), so every
 * version of a page travels in order on one connection: a DELTA (below) always finds
 * its base applied. Across channels batches arrive in any order; generations order
 * the rounds.
 *
 * Delta encoding (XBZRLE's idea): a direct-mapped cache keeps the last version sent of
 * recently sent pages; a page found there goes as the zstd-compressed XOR with it when
 * that is smaller than the page compressed on its own, which is the case for pages
 * whose contents compress badly but change a little between rounds.
 */
#ifndef HV_MIGRATE_PAGESEND_H
#define HV_MIGRATE_PAGESEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/mem.h"
#include "migrate/migration.h"
#include "migrate/stream.h"

struct chan;

/* A page channel as the sender uses it. */
struct page_chan {
	struct chan *c;
	struct stream s; /* open for writing over @c */
	pthread_mutex_t lock;
	uint64_t pages; /* entries written (for MIG_SWITCHOVER) */
};

/* The last version sent of up to @nslots pages, slot = page number % nslots. */
struct delta_cache {
	uint64_t nslots;
	uint64_t *tag;            /* page number + 1 in the slot, 0: empty */
	uint8_t *data;            /* nslots pages */
	pthread_mutex_t lock[64]; /* striped by slot */
};

struct page_sender {
	struct guest_mem *m;
	struct page_chan *ch;
	unsigned nch;
	int level;          /* zstd level, 0: raw */
	unsigned nworkers;  /* threads per round */
	uint64_t bandwidth; /* bytes/s cap on what is written, 0: none */
	_Atomic bool *cancel;
	struct delta_cache *dc; /* NULL: no delta encoding */
	/* totals over all rounds */
	/* pages_sent: entries written; pages_skipped: zero pages of the first pass, not
	 * sent (the destination starts zeroed); pages_zero: zero pages, sent or skipped */
	_Atomic uint64_t pages_sent, pages_skipped, pages_zero, pages_zstd, pages_raw, pages_delta;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t cpu_ns; /* CPU time of the workers */
};

/*
 * page_sender_init - @nch channels (opened streams); workers: max(@nch, the online CPUs up
 * to 8) with compression, else @nch.
 */
void page_sender_init(struct page_sender *ps, struct guest_mem *m, struct page_chan *ch,
                      unsigned nch, int level, uint64_t bandwidth, _Atomic bool *cancel);

/*
 * page_sender_delta - keep a delta cache of @bytes (rounded down to pages; needs
 * compression). -1 with @err when out of memory. page_sender_free releases it.
 */
int page_sender_delta(struct page_sender *ps, uint64_t bytes, struct hv_error *err);
void page_sender_free(struct page_sender *ps);

/*
 * page_send_round - send every page whose bit is set in @bitmap (VM-wide numbering,
 * dirty_bitmap_words() words) with generation @gen, then flush every channel. @skip_zero
 * (the first pass, into a destination that starts zeroed): zero pages are counted but not
 * sent. -1 with @err on the first failed write or on cancel (ECANCELED).
 */
int page_send_round(struct page_sender *ps, const uint64_t *bitmap, uint32_t gen, bool skip_zero,
                    struct hv_error *err);

/* pages_data_bitmap - set the bit of every page not in a hole of its memfd (pages the
 * guest or a loader ever touched); returns how many. */
uint64_t pages_data_bitmap(struct guest_mem *m, uint64_t *bitmap);

#endif
