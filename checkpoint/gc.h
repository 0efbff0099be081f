/*
 * gc.h - getting space back from a store, and saying where it goes.
 *
 * A blob is live when a committed manifest names it: its state blob, its page-map chunks
 * and every page those chunks list. gc keeps live blobs and nothing else: packs without
 * one are deleted, packs mostly dead are repacked (their live blobs copied, compressed
 * bytes as they are, into new packs), and the index is rewritten to name only packs that
 * stay. The order makes a crash at any instant lose nothing: new packs durable, then the
 * new index durable, then old index files deleted, then old packs. docs/checkpoint-store.md
 * ("GC", "Repack", "Rebuilding the index").
 *
 * Every call here needs a handle that holds the exclusive lock (store_open_opts with
 * STORE_MAINT), except store_usage, and none may run while another thread uses the handle.
 */
#ifndef CHECKPOINT_GC_H
#define CHECKPOINT_GC_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/store.h"

#define GC_REPACK_PCT 50   /* repack a pack whose live bytes are below this percentage */
#define GC_TMP_AGE_S  3600 /* a temp file of a live pid is garbage after this long */

struct gc_opts {
	bool dry_run;        /* decide and report, change nothing */
	int repack_pct;      /* 0..100; 0 never repacks */
	store_report_fn log; /* one line per pack deleted or repacked, may be NULL */
	void *arg;
};

struct gc_stats {
	uint64_t manifests; /* checkpoints whose blobs were marked */
	uint64_t live_blobs, live_bytes;
	uint64_t packs, pack_bytes; /* on disk before */
	uint64_t packs_deleted, packs_repacked, packs_written;
	uint64_t bytes_deleted, bytes_written; /* freed = deleted - written */
	uint64_t index_written, index_removed;
	uint64_t tmp_removed;
};

/*
 * store_gc - mark, then delete and repack (see the top of this file) and remove temp
 * files whose writer pid is dead or that are older than GC_TMP_AGE_S, and index files
 * the rewrite supersedes. Refuses (deleting nothing) when it cannot see everything a
 * checkpoint needs: a damaged index file (EIO: run rebuild-index), a manifest it cannot
 * read, a page-map chunk it cannot read, or a blob a manifest names that is not in the
 * index. A live blob that fails its hash check while being repacked keeps its pack.
 * @st is filled in either way (with what would happen, under @o->dry_run).
 */
int store_gc(struct store *s, const struct gc_opts *o, struct gc_stats *st, struct hv_error *err);

struct ckpt_usage {
	uint64_t pages, pages_nonzero;       /* in the page map */
	uint64_t blobs, bytes;               /* distinct blobs it names, their packed bytes */
	uint64_t unique_blobs, unique_bytes; /* ... of them, named by no other checkpoint */
};

/*
 * store_usage - what checkpoint @id occupies: reads every manifest (for the blobs unique
 * to @id). ENOENT for an unknown id; a blob not in the index fails naming it.
 */
int store_usage(struct store *s, const char *id, struct ckpt_usage *u, struct hv_error *err);

struct reindex_stats {
	uint64_t packs, packs_bad, blobs;
	uint64_t index_written, index_removed;
};

/*
 * store_rebuild_index - rebuild index/ from the trailers of the packs alone: write index
 * files listing every blob of every pack whose trailer parses (one entry per blob id),
 * make them durable, then delete every other index file (damaged ones included). A pack
 * whose trailer does not parse is reported through @log and left out. The handle's view
 * of the index is not updated: close it and open the store again.
 */
int store_rebuild_index(struct store *s, store_report_fn log, void *arg, struct reindex_stats *st,
                        struct hv_error *err);

#endif
