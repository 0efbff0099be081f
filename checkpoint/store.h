/*
 * store.h - the checkpoint store: content-addressed blobs in immutable zstd packs.
 *
 * A store is a directory (docs/checkpoint-store.md gives every byte of its format).
 * Blobs - guest pages, page-map chunks, state streams - are named by the SHA-256 of
 * their plaintext and stored once; the all-zero 4 KiB page is never stored at all (it
 * has the well-known id STORE_ZERO_ID). Writes go packs -> index -> manifest, each file
 * through temp file + fsync + rename + directory fsync, so a crash at any instant leaves
 * a valid store in which only committed manifests (manifest.h) are visible.
 *
 * Several processes may write into one store at once: each writes its own packs and
 * index files, and every name is a content hash, so no name is ever contended. Writers
 * (store_open_writer) register a shared lock for the life of the handle; maintenance
 * (prune, gc, delete) takes the exclusive lock and waits for the shared ones to go, so
 * gc never deletes a pack a writer's index view still counts on.
 *
 * A handle may be used by several threads (a mutex serialises put/get/flush), but it is
 * meant for one writer thread. Every call returns 0 on success or -1 with @err set to a
 * one-line message naming the file and field at fault.
 */
#ifndef CHECKPOINT_STORE_H
#define CHECKPOINT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/error.h"

#define STORE_FORMAT_VERSION 1
#define STORE_PAGE_SIZE      4096u
#define STORE_BLOB_MAX       (1u << 20)  /* the largest blob, raw */
#define STORE_PACK_SIZE      (16u << 20) /* default: a pack is sealed past this */
#define STORE_PACK_SIZE_MAX  (64u << 20) /* store_set_pack_size's ceiling */
#define STORE_ID_HEX         64          /* hex digits of a blob or pack id */
#define STORE_LOCK_WAIT_MS   60000       /* how long a writer waits for prune/gc */

/* A blob (or pack) id: the SHA-256 of its bytes. */
struct blob_id {
	uint8_t b[32];
};

/* The id of the all-zero 4 KiB page, which is never stored: 32 zero bytes. */
extern const struct blob_id STORE_ZERO_ID;

struct store;

/* blob_id_hex - @id as 64 lowercase hex digits plus NUL in @out. Returns @out. */
char *blob_id_hex(const struct blob_id *id, char out[STORE_ID_HEX + 1]);
/* blob_id_parse - 64 hex digits (no more, no less) to an id; -1 if malformed. */
int blob_id_parse(const char *hex, struct blob_id *id);
/* blob_id_is_zero - whether @id is STORE_ZERO_ID. */
bool blob_id_is_zero(const struct blob_id *id);

/*
 * store_create - make an empty store at @path: the directory (which must not exist or
 * be empty), config, packs/00..ff, index/, manifests/, locks/.
 */
int store_create(const char *path, struct hv_error *err);

/*
 * store_open - open the store at @path. Refuses a missing or damaged config, and a
 * format version newer than STORE_FORMAT_VERSION. Loads every index file into memory;
 * an index file that fails its checks is skipped and remembered (store_verify names it)
 * so one damaged file does not make the whole store unreadable. On success *@out is a
 * handle the caller owns (store_close).
 */
int store_open(const char *path, struct store **out, struct hv_error *err);

/* store_wait_fn - told once (one line) when opening or locking has to wait for a lock. */
typedef void (*store_wait_fn)(void *arg, const char *msg);

enum store_mode {
	STORE_READ,  /* no lock: list, show, verify, restore in tests */
	STORE_WRITE, /* a shared lock (locks/shared-PID-RAND) until store_close */
	STORE_MAINT, /* the exclusive lock, once no shared lock is live, until store_close */
};

struct store_open_opts {
	enum store_mode mode;
	int wait_ms;           /* how long to wait for a conflicting lock (0: fail at once) */
	store_wait_fn on_wait; /* may be NULL */
	void *arg;
};

/*
 * store_open_opts - store_open, taking the lock @o->mode asks for before the index is
 * loaded. A live conflicting lock (exclusive for STORE_WRITE; exclusive or any shared
 * one for STORE_MAINT) is polled for until @o->wait_ms has passed, then EBUSY names its
 * holder ("store DIR is locked by pid N on HOST (prune or gc); try again"). Locks whose
 * pid is dead on this host are stale: removed and ignored.
 */
int store_open_opts(const char *path, const struct store_open_opts *o, struct store **out,
                    struct hv_error *err);

/*
 * store_open_writer - store_open_opts for a checkpoint writer (or a restore): a shared
 * lock, waiting up to STORE_LOCK_WAIT_MS for a running prune or gc.
 */
int store_open_writer(const char *path, struct store **out, struct hv_error *err);

/*
 * store_close - release the handle. Blobs put since the last store_flush are lost (their
 * temporary pack is deleted): they were never committed. Releases the exclusive or
 * shared lock if held. NULL is a no-op.
 */
void store_close(struct store *s);

/* store_path - the directory the store was opened at (owned by the store). */
const char *store_path(const struct store *s);

/*
 * store_set_pack_size - seal packs once they reach @bytes (tests use small packs).
 * Clamped to [1, STORE_PACK_SIZE_MAX].
 */
void store_set_pack_size(struct store *s, uint64_t bytes);

/*
 * store_put - store @len bytes (at most STORE_BLOB_MAX) and return their id in *@id.
 * A blob already in the index, or already put in this session, is not stored again; a
 * 4 KiB all-zero page is not stored at all (*@id = STORE_ZERO_ID). The blob becomes
 * durable only with store_flush, and visible to other processes only through a manifest.
 */
int store_put(struct store *s, const void *data, size_t len, struct blob_id *id,
              struct hv_error *err);

/*
 * store_flush - seal the open pack and write an index file for every blob sealed since
 * the last flush. After it returns 0 those blobs are durable and a manifest may name them.
 */
int store_flush(struct store *s, struct hv_error *err);

/*
 * store_get - read blob @id into @buf (@cap bytes) and set *@len to its size. The
 * bytes are decompressed and re-hashed: a blob whose hash does not match its id fails,
 * naming the pack. STORE_ZERO_ID yields 4096 zero bytes. ERANGE if @cap is too small,
 * ENOENT if the id is not in the index.
 */
int store_get(struct store *s, const struct blob_id *id, void *buf, size_t cap, size_t *len,
              struct hv_error *err);

/*
 * store_put_stats - how many blobs store_put has added through this handle (not dedup
 * hits, not zero pages) and their bytes as packed (compressed, with entry headers):
 * what a checkpoint cost the store. Counts blobs later dropped by a failed put too.
 */
void store_put_stats(struct store *s, uint64_t *blobs, uint64_t *bytes);

/* store_has - whether @id is known (indexed, or put in this session). */
bool store_has(struct store *s, const struct blob_id *id);

/*
 * store_report_fn - one problem found by store_verify, as one line (no newline). @arg
 * is store_verify's.
 */
typedef void (*store_report_fn)(void *arg, const char *msg);

/*
 * store_verify - check the store and report each problem through @report:
 *  - structure: every index file passes its checks; every pack the index lists exists;
 *    every manifest parses, and every blob it names (state, page-map chunks, and the
 *    pages those chunks list) is in the index in a pack that exists - a missing pack is
 *    reported once per manifest that needs it;
 *  - with @read_data also: every pack file's SHA-256 matches its name, its trailer
 *    parses, and every blob in it decompresses and re-hashes to its id (each bad blob
 *    named with its pack).
 * Returns the number of problems (0: the store is sound), or -1 with @err set when the
 * check itself could not run (out of memory, unreadable directory). Not to be run while
 * another thread puts into the same handle.
 */
int store_verify(struct store *s, bool read_data, store_report_fn report, void *arg,
                 struct hv_error *err);

/*
 * store_lock_exclusive - take the store's exclusive lock (locks/exclusive, holding
 * "pid hostname"). A lock whose pid is dead on this host is stale and taken over; a live
 * one, or one held on another host, makes this fail with EBUSY naming the holder. So
 * does a live shared lock (a writer at work): the exclusive lock is then released.
 */
int store_lock_exclusive(struct store *s, struct hv_error *err);

/*
 * store_lock_exclusive_wait - store_lock_exclusive, polling for up to @wait_ms while
 * another holds the exclusive lock and then while shared locks are live; @on_wait (may be
 * NULL) is told once for each of the two waits. EBUSY at the deadline, naming the holder.
 */
int store_lock_exclusive_wait(struct store *s, int wait_ms, store_wait_fn on_wait, void *arg,
                              struct hv_error *err);

/* store_unlock - release the exclusive lock taken through @s (no-op if not held). */
int store_unlock(struct store *s, struct hv_error *err);

#endif
