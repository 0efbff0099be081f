/*
 * store_int.h - what store.c, pack.c, index.c and manifest.c share; not for callers,
 * except the parsers, which fuzz/ drives directly with hostile bytes.
 */
#ifndef CHECKPOINT_STORE_INT_H
#define CHECKPOINT_STORE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "checkpoint/store.h"

#define PACK_MAGIC       "HVPACK1\n"
#define PACK_FOOTER      12u            /* u32 trailer length + 8-byte magic */
#define PACK_ENTRY_SIZE  48u            /* id 32, offset u64, clen u32, rawlen u32 */
#define PACK_FILE_MAX    (256ull << 20) /* a reader refuses larger pack files */
#define PACK_ENTRIES_MAX (1u << 20)

#define INDEX_MAGIC       "HVINDEX\n"
#define INDEX_VERSION     1
#define INDEX_HDR         16u        /* magic, u32 version, u32 count */
#define INDEX_ENTRY_SIZE  80u        /* id 32, pack 32, offset u64, clen, rawlen */
#define INDEX_ENTRIES_MAX (1u << 20) /* per file (a reader's bound) */
#define INDEX_WRITE_MAX   (1u << 18) /* a writer starts a new file past this */

#define CONFIG_MAGIC "HVSTORE\n"
#define CONFIG_SIZE  16u

/* Where one blob lives. */
struct ck_entry {
	struct blob_id id;
	struct blob_id pack; /* meaningless while the blob is in the open pack */
	uint64_t off;
	uint32_t clen, rawlen;
};

enum { ENT_EMPTY, ENT_OPEN, ENT_SEALED, ENT_INDEXED };

struct ck_slot {
	struct ck_entry e;
	uint8_t state;
	uint8_t live; /* gc.c's mark */
};

#define STORE_RD_FDS 8

struct store {
	char *path;
	pthread_mutex_t mu;
	/* every known blob: open addressing, linear probing, load <= 1/2 */
	struct ck_slot *tab;
	size_t cap, count;
	/* the open pack, written to a temp file under packs/ */
	int pack_fd; /* -1 when none is open */
	char *pack_tmp;
	EVP_MD_CTX *pack_md;
	uint64_t pack_len, pack_size;
	struct ck_entry *pack_ents; /* .pack unset */
	size_t pack_n, pack_cap;
	/* sealed into a pack, not yet in an index file */
	struct ck_entry *unidx;
	size_t unidx_n, unidx_cap;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *zbuf; /* compression scratch, ZSTD_compressBound(STORE_BLOB_MAX) */
	size_t zcap;
	char **bad_index; /* "index/NAME: why" for each index file skipped at open */
	size_t nbad;
	bool locked;  /* holds locks/exclusive */
	char *shared; /* the name of its shared lock under locks/, or NULL */
	/* blobs this handle added to packs, and their packed bytes (store_put_stats) */
	uint64_t new_blobs, new_bytes;
	/* sealed packs store_get has open (round robin): a restore reads thousands of
	 * blobs from each, and an open and a close per 4 KiB page cost as much as the rest */
	struct {
		struct blob_id pack;
		int fd; /* -1: free */
	} rd[STORE_RD_FDS];
	unsigned rd_next;
};

/* little-endian fields */
static inline void ck_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void ck_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ck_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t ck_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t ck_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ck_get64(const uint8_t *p)
{
	return (uint64_t)ck_get32(p) | (uint64_t)ck_get32(p + 4) << 32;
}

/* ck_sha256 - SHA-256 of @len bytes. */
void ck_sha256(const void *data, size_t len, struct blob_id *out);

/*
 * ck_write_atomic - write @len bytes as @dir/@name: temp file, fsync, rename, fsync
 * of @dir. With @excl, an existing @dir/@name is refused (EEXIST) instead of replaced.
 */
int ck_write_atomic(const char *dir, const char *name, const void *buf, size_t len, bool excl,
                    struct hv_error *err);

/*
 * ck_read_file - the whole of @path (at most @max bytes, else EFBIG) in a malloc'd
 * buffer the caller frees.
 */
int ck_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len, struct hv_error *err);

/* ck_lookup - the slot of @id, or NULL (caller holds s->mu). */
struct ck_slot *ck_lookup(struct store *s, const struct blob_id *id);
/* ck_tab_alloc / ck_tab_free - a zeroed table of @cap slots (huge pages when large). */
struct ck_slot *ck_tab_alloc(size_t cap);
void ck_tab_free(struct ck_slot *t, size_t cap);
/* ck_reserve - make room for @n more entries at once (one rehash instead of a series). */
int ck_reserve(struct store *s, size_t n, struct hv_error *err);

/* ck_insert - add @e in @state unless present; returns the slot or NULL (ENOMEM). */
struct ck_slot *ck_insert(struct store *s, const struct ck_entry *e, uint8_t state,
                          struct hv_error *err);

/* ck_pack_path - "DIR/packs/xx/<hex>" into @out (malloc'd, the caller frees). */
char *ck_pack_path(const struct store *s, const struct blob_id *pack);

/* pack.c */
/* pack_add - compress and append a blob to the open pack (opening one if needed). */
int pack_add(struct store *s, const struct blob_id *id, const void *data, size_t len,
             struct hv_error *err);
/*
 * pack_copy_blob - append blob @e's compressed bytes @zdata (already checked against its
 * id) to the open pack, as is, and point its slot there (gc's repack).
 */
int pack_copy_blob(struct store *s, const struct ck_entry *e, const void *zdata,
                   struct hv_error *err);
/* pack_seal - finish the open pack (if any): trailer, fsync, rename to its hash, dir fsync. */
int pack_seal(struct store *s, struct hv_error *err);
/* pack_abandon - delete the open pack's temp file (store_close without flush). */
void pack_abandon(struct store *s);
/*
 * pack_read_blob - read, decompress and re-hash blob @e (of pack file @fd, named @name
 * in errors) into @buf of @cap bytes.
 */
int pack_read_blob(struct store *s, int fd, const char *name, const struct ck_entry *e, void *buf,
                   size_t cap, struct hv_error *err);
/*
 * pack_parse - parse the trailer of a whole pack file (@len bytes, untrusted, named
 * @name in errors). On success *@ents (malloc'd, caller frees; .pack unset) holds *@n
 * entries, each inside the data area.
 */
int pack_parse(const uint8_t *buf, size_t len, const char *name, struct ck_entry **ents, size_t *n,
               struct hv_error *err);
/*
 * pack_check_blob - decompress entry @e of a parsed pack @buf with @dctx into @out
 * (STORE_BLOB_MAX bytes) and compare its hash with its id.
 */
int pack_check_blob(ZSTD_DCtx *dctx, const uint8_t *buf, const struct ck_entry *e, const char *name,
                    uint8_t *out, struct hv_error *err);

/* index.c */
/*
 * index_parse - parse an index file (@len bytes, untrusted, named @name in errors).
 * On success *@ents (malloc'd, caller frees) holds *@n entries.
 */
int index_parse(const uint8_t *buf, size_t len, const char *name, struct ck_entry **ents, size_t *n,
                struct hv_error *err);
/* index_encode - an index file's bytes for @n entries (malloc'd, caller frees). */
int index_encode(const struct ck_entry *ents, size_t n, uint8_t **buf, size_t *len,
                 struct hv_error *err);
/* index_load_all - load every file under index/ into the table (bad ones to bad_index). */
int index_load_all(struct store *s, struct hv_error *err);
/* index_write_pending - write s->unidx as one or more index files, mark them indexed. */
int index_write_pending(struct store *s, struct hv_error *err);

/* lock.c */
#define LOCK_HOST_MAX 255
/*
 * lock_parse - parse a lock file's @len bytes (untrusted): "PID HOSTNAME\n", pid > 0,
 * host 1..255 printable bytes without spaces. On success *@pid and @host are set.
 */
int lock_parse(const uint8_t *buf, size_t len, int *pid, char host[LOCK_HOST_MAX + 1],
               struct hv_error *err);
/* lock_shared - register a shared lock in s->shared, waiting out a live exclusive one. */
int lock_shared(struct store *s, int wait_ms, store_wait_fn on_wait, void *arg,
                struct hv_error *err);
/* lock_shared_release - remove s->shared, if any. */
void lock_shared_release(struct store *s);

#endif
