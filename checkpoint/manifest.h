/*
 * manifest.h - one checkpoint: the single commit point of the store.
 *
 * A manifest names everything a restore needs: the VM, the time, tags, the parent
 * checkpoint, the blob holding the vCPU/device state stream, the RAM size and the page
 * map. The page map is a list of chunk blobs; chunk i holds the 32-byte ids of guest
 * pages i*4096 .. i*4096+4095 (STORE_ZERO_ID for zero pages; the last chunk may be
 * shorter), so a chunk whose pages did not change dedups against the parent's.
 */
#ifndef CHECKPOINT_MANIFEST_H
#define CHECKPOINT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/store.h"

#define MANIFEST_ID_LEN      16           /* hex digits */
#define MANIFEST_NAME_MAX    255          /* bytes of the VM name */
#define MANIFEST_TAG_MAX     255          /* bytes of one tag */
#define MANIFEST_TAGS_MAX    64           /* tags per manifest */
#define MANIFEST_CHUNK_PAGES 4096u        /* pages per page-map chunk */
#define MANIFEST_RAM_MAX     (1ull << 46) /* 64 TiB: bounds a hostile page map */

struct manifest {
	char id[MANIFEST_ID_LEN + 1]; /* its file name under manifests/ */
	char vm[MANIFEST_NAME_MAX + 1];
	uint64_t time_ns;                 /* creation time, unix ns */
	char parent[MANIFEST_ID_LEN + 1]; /* "" when none */
	size_t ntags;
	char (*tags)[MANIFEST_TAG_MAX + 1];
	struct blob_id state; /* the vCPU/device state stream */
	uint64_t ram_size;    /* bytes, a multiple of 4096 */
	size_t nchunks;       /* = manifest_chunks(ram_size) */
	struct blob_id *chunks;
};

/* manifest_chunks - how many page-map chunks a guest of @ram_size bytes has. */
uint64_t manifest_chunks(uint64_t ram_size);

/*
 * manifest_make_id - a fresh id: 8 hex digits of unix seconds then 8 random ones, so
 * ids sort by time and two writers in one second do not collide.
 */
int manifest_make_id(char out[MANIFEST_ID_LEN + 1], uint64_t time_ns, struct hv_error *err);

/*
 * manifest_write - commit @m (its id must be set): the state blob and every chunk must
 * already be durable (store_flush) or this fails with ENOENT naming the blob. Written
 * atomically; an existing manifest of that id is refused (EEXIST).
 */
int manifest_write(struct store *s, const struct manifest *m, struct hv_error *err);

/* manifest_read - read manifest @id; *@m is the caller's (manifest_free). */
int manifest_read(struct store *s, const char *id, struct manifest **m, struct hv_error *err);

/*
 * manifest_parse - parse the @len bytes of a manifest file (untrusted) named @name in
 * errors; *@m is the caller's (manifest_free). @id, if not NULL, must equal the id inside.
 */
int manifest_parse(const void *buf, size_t len, const char *name, const char *id,
                   struct manifest **m, struct hv_error *err);

/*
 * manifest_encode - the file bytes of @m, malloc'd into *@buf (the caller frees).
 * Fails with EINVAL naming a field out of its bounds.
 */
int manifest_encode(const struct manifest *m, uint8_t **buf, size_t *len, struct hv_error *err);

/*
 * manifest_list - the ids of every committed manifest, sorted (oldest first): *@ids is
 * a malloc'd array of *@n entries the caller frees.
 */
int manifest_list(struct store *s, char (**ids)[MANIFEST_ID_LEN + 1], size_t *n,
                  struct hv_error *err);

/*
 * manifest_delete - remove checkpoint @id (its manifest file, then a directory fsync).
 * The blobs it named stay until gc. ENOENT if there is no such checkpoint. The caller
 * holds the exclusive lock: a writer may be using @id as the parent of its next one.
 */
int manifest_delete(struct store *s, const char *id, struct hv_error *err);

/* manifest_free - release a manifest from manifest_read/parse. NULL is a no-op. */
void manifest_free(struct manifest *m);

#endif
