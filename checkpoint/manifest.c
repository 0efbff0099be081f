/*
 * manifest.c - manifests: one file per checkpoint, the store's only commit point.
 *
 *   "HVMANIF\n" | u32 version (1) | id[16] (ASCII hex) | u64 time_ns
 *   parent[16] (ASCII hex, or 16 zero bytes) | state[32] | u64 ram_size
 *   u8 vm name length | name | u8 tag count | each: u8 length, bytes
 *   u32 chunk count | chunk ids (32 bytes each) | SHA-256 of everything before it
 *
 * Little-endian. A fixed layout rather than tagged fields: the page map is a long array,
 * and a manifest is read as a whole, never extended field by field (a new field means
 * a new version). The id inside must match the file name, so a manifest copied or
 * renamed by hand is caught.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store_int.h"
#include "migrate/savefile.h"

#define MANIFEST_MAGIC   "HVMANIF\n"
#define MANIFEST_VERSION 1
#define MANIFEST_FIXED   (8 + 4 + 16 + 8 + 16 + 32 + 8) /* up to the vm name length */
#define MANIFEST_FILE_MAX                                                                          \
	((uint64_t)MANIFEST_FIXED + 1 + 255 + 1 + MANIFEST_TAGS_MAX * 256 + 4 +                    \
	 ((MANIFEST_RAM_MAX / STORE_PAGE_SIZE) / MANIFEST_CHUNK_PAGES) * 32 + 32)

uint64_t manifest_chunks(uint64_t ram_size)
{
	uint64_t pages = ram_size / STORE_PAGE_SIZE;

	return (pages + MANIFEST_CHUNK_PAGES - 1) / MANIFEST_CHUNK_PAGES;
}

static bool id_ok(const char *id)
{
	for (int i = 0; i < MANIFEST_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return id[MANIFEST_ID_LEN] == '\0';
}

int manifest_make_id(char out[MANIFEST_ID_LEN + 1], uint64_t time_ns, struct hv_error *err)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		return hv_fail(err, errno, "manifest id: getrandom: %s", strerror(errno));
	snprintf(out, MANIFEST_ID_LEN + 1, "%08x%08x", (uint32_t)(time_ns / 1000000000ull), r);
	return 0;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->tags);
	free(m->chunks);
	free(m);
}

int manifest_encode(const struct manifest *m, uint8_t **buf, size_t *len, struct hv_error *err)
{
	size_t nl = strlen(m->vm), l, off = 0;
	uint8_t *b;

	if (!id_ok(m->id))
		return hv_fail(err, EINVAL, "manifest: id '%s' is not %d hex digits", m->id,
		               MANIFEST_ID_LEN);
	if (m->parent[0] && !id_ok(m->parent))
		return hv_fail(err, EINVAL, "manifest %s: parent '%s' is not an id", m->id,
		               m->parent);
	if (m->ntags > MANIFEST_TAGS_MAX)
		return hv_fail(err, EINVAL, "manifest %s: %zu tags, at most %d", m->id, m->ntags,
		               MANIFEST_TAGS_MAX);
	if (m->ram_size % STORE_PAGE_SIZE || m->ram_size > MANIFEST_RAM_MAX ||
	    m->nchunks != manifest_chunks(m->ram_size))
		return hv_fail(err, EINVAL, "manifest %s: ram_size %llu with %zu chunks", m->id,
		               (unsigned long long)m->ram_size, m->nchunks);
	l = MANIFEST_FIXED + 1 + nl + 1 + 4 + m->nchunks * 32 + 32;
	for (size_t i = 0; i < m->ntags; i++)
		l += 1 + strlen(m->tags[i]);
	b = calloc(1, l);
	if (!b)
		return hv_fail(err, ENOMEM, "manifest %s: out of memory", m->id);
	memcpy(b, MANIFEST_MAGIC, 8);
	ck_put32(b + 8, MANIFEST_VERSION);
	memcpy(b + 12, m->id, 16);
	ck_put64(b + 28, m->time_ns);
	if (m->parent[0])
		memcpy(b + 36, m->parent, 16);
	memcpy(b + 52, m->state.b, 32);
	ck_put64(b + 84, m->ram_size);
	off = MANIFEST_FIXED;
	b[off++] = (uint8_t)nl; /* strlen of a MANIFEST_NAME_MAX + 1 array: at most 255 */
	memcpy(b + off, m->vm, nl);
	off += nl;
	b[off++] = (uint8_t)m->ntags;
	for (size_t i = 0; i < m->ntags; i++) {
		size_t tl = strlen(m->tags[i]);
		b[off++] = (uint8_t)tl;
		memcpy(b + off, m->tags[i], tl);
		off += tl;
	}
	ck_put32(b + off, (uint32_t)m->nchunks);
	off += 4;
	if (m->nchunks)
		memcpy(b + off, m->chunks, m->nchunks * 32);
	off += m->nchunks * 32;
	ck_sha256(b, off, (struct blob_id *)(b + off));
	*buf = b;
	*len = l;
	return 0;
}

/* A length-prefixed string at *off: bounds-checked, no NUL inside. */
static int get_str(const uint8_t *b, size_t len, size_t *off, char *out, const char *name,
                   const char *field, struct hv_error *err)
{
	size_t l;

	if (*off >= len)
		return hv_fail(err, EINVAL, "%s: %s: truncated", name, field);
	l = b[(*off)++];
	if (l > len - *off)
		return hv_fail(err, EINVAL, "%s: %s: length %zu past the end", name, field, l);
	if (memchr(b + *off, 0, l))
		return hv_fail(err, EINVAL, "%s: %s: holds a NUL byte", name, field);
	memcpy(out, b + *off, l);
	out[l] = '\0';
	*off += l;
	return 0;
}

int manifest_parse(const void *buf, size_t len, const char *name, const char *id,
                   struct manifest **out, struct hv_error *err)
{
	const uint8_t *b = buf;
	struct blob_id sum;
	struct manifest *m;
	size_t off, ntags;
	uint32_t v, nchunks;

	*out = NULL;
	if (len < MANIFEST_FIXED + 2 + 4 + 32)
		return hv_fail(err, EINVAL, "%s: %zu bytes, too short for a manifest", name, len);
	if (memcmp(b, MANIFEST_MAGIC, 8))
		return hv_fail(err, EINVAL, "%s: magic: not a manifest", name);
	v = ck_get32(b + 8);
	if (v != MANIFEST_VERSION)
		return hv_fail(err, ENOTSUP, "%s: version %u, this hv reads %u", name, v,
		               MANIFEST_VERSION);
	ck_sha256(b, len - 32, &sum);
	if (memcmp(sum.b, b + len - 32, 32))
		return hv_fail(err, EINVAL, "%s: checksum mismatch (damaged or truncated)", name);
	m = calloc(1, sizeof(*m));
	if (!m)
		return hv_fail(err, ENOMEM, "%s: out of memory", name);
	memcpy(m->id, b + 12, 16);
	if (!id_ok(m->id)) {
		hv_fail(err, EINVAL, "%s: id: not %d hex digits", name, MANIFEST_ID_LEN);
		goto bad;
	}
	if (id && strcmp(id, m->id)) {
		hv_fail(err, EINVAL, "%s: id: holds %s, not its name", name, m->id);
		goto bad;
	}
	m->time_ns = ck_get64(b + 28);
	if (memcmp(b + 36, (const uint8_t[16]){0}, 16)) {
		memcpy(m->parent, b + 36, 16);
		if (!id_ok(m->parent)) {
			hv_fail(err, EINVAL, "%s: parent: not %d hex digits", name,
			        MANIFEST_ID_LEN);
			goto bad;
		}
	}
	memcpy(m->state.b, b + 52, 32);
	m->ram_size = ck_get64(b + 84);
	if (m->ram_size % STORE_PAGE_SIZE || m->ram_size > MANIFEST_RAM_MAX) {
		hv_fail(err, EINVAL, "%s: ram_size: %llu is not a page multiple up to %llu", name,
		        (unsigned long long)m->ram_size, (unsigned long long)MANIFEST_RAM_MAX);
		goto bad;
	}
	len -= 32; /* the checksum is not a field */
	off = MANIFEST_FIXED;
	if (get_str(b, len, &off, m->vm, name, "vm name", err) < 0)
		goto bad;
	if (off >= len) {
		hv_fail(err, EINVAL, "%s: tag count: truncated", name);
		goto bad;
	}
	ntags = b[off++];
	if (ntags > MANIFEST_TAGS_MAX) {
		hv_fail(err, EINVAL, "%s: tag count: %zu, at most %d", name, ntags,
		        MANIFEST_TAGS_MAX);
		goto bad;
	}
	m->tags = calloc(ntags ? ntags : 1, sizeof(*m->tags));
	if (!m->tags) {
		hv_fail(err, ENOMEM, "%s: out of memory", name);
		goto bad;
	}
	m->ntags = ntags;
	for (size_t i = 0; i < ntags; i++)
		if (get_str(b, len, &off, m->tags[i], name, "tag", err) < 0)
			goto bad;
	if (len - off < 4) {
		hv_fail(err, EINVAL, "%s: chunk count: truncated", name);
		goto bad;
	}
	nchunks = ck_get32(b + off);
	off += 4;
	if (nchunks != manifest_chunks(m->ram_size) || (uint64_t)nchunks * 32 != len - off) {
		hv_fail(err, EINVAL, "%s: chunk count: %u for ram_size %llu and %zu bytes left",
		        name, nchunks, (unsigned long long)m->ram_size, len - off);
		goto bad;
	}
	m->chunks = malloc(nchunks ? (size_t)nchunks * 32 : 1);
	if (!m->chunks) {
		hv_fail(err, ENOMEM, "%s: out of memory", name);
		goto bad;
	}
	memcpy(m->chunks, b + off, (size_t)nchunks * 32);
	m->nchunks = nchunks;
	*out = m;
	return 0;
bad:
	manifest_free(m);
	return -1;
}

int manifest_write(struct store *s, const struct manifest *m, struct hv_error *err)
{
	char dir[4096], hex[STORE_ID_HEX + 1];
	uint8_t *buf;
	size_t len;
	int rc;

	/*
	 * The commit point must never name a blob a crash could lose: everything it
	 * references has to be in an index file already (store_flush).
	 */
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i <= m->nchunks; i++) {
		const struct blob_id *id = i < m->nchunks ? &m->chunks[i] : &m->state;
		struct ck_slot *sl = blob_id_is_zero(id) ? NULL : ck_lookup(s, id);
		if (!blob_id_is_zero(id) && (!sl || sl->state != ENT_INDEXED)) {
			pthread_mutex_unlock(&s->mu);
			return hv_fail(err, ENOENT,
			               "manifest %s: blob %s is not durable (store_flush "
			               "first?)",
			               m->id, blob_id_hex(id, hex));
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (manifest_encode(m, &buf, &len, err) < 0)
		return -1;
	snprintf(dir, sizeof(dir), "%s/manifests", s->path);
	rc = ck_write_atomic(dir, m->id, buf, len, true, err);
	free(buf);
	return rc;
}

int manifest_read(struct store *s, const char *id, struct manifest **m, struct hv_error *err)
{
	char path[4096];
	uint8_t *buf;
	size_t len;
	int rc;

	*m = NULL;
	if (!id_ok(id))
		return hv_fail(err, EINVAL, "'%s': not a checkpoint id (%d hex digits)", id,
		               MANIFEST_ID_LEN);
	snprintf(path, sizeof(path), "%s/manifests/%s", s->path, id);
	if (ck_read_file(path, MANIFEST_FILE_MAX, &buf, &len, err) < 0)
		return -1;
	rc = manifest_parse(buf, len, path, id, m, err);
	free(buf);
	return rc;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

int manifest_list(struct store *s, char (**ids)[MANIFEST_ID_LEN + 1], size_t *n,
                  struct hv_error *err)
{
	char dir[4096], (*v)[MANIFEST_ID_LEN + 1] = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *d;
	DIR *dp;

	*ids = NULL;
	*n = 0;
	snprintf(dir, sizeof(dir), "%s/manifests", s->path);
	dp = opendir(dir);
	if (!dp)
		return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
	while ((d = readdir(dp))) {
		if (strlen(d->d_name) != MANIFEST_ID_LEN || !id_ok(d->d_name))
			continue; /* ., .., temp files */
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 64;
			void *nv = realloc(v, nc * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(dp);
				return hv_fail(err, ENOMEM, "%s: out of memory", dir);
			}
			v = nv;
			cap = nc;
		}
		memcpy(v[cnt++], d->d_name, MANIFEST_ID_LEN + 1);
	}
	closedir(dp);
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_id);
	*ids = v;
	*n = cnt;
	return 0;
}

int manifest_delete(struct store *s, const char *id, struct hv_error *err)
{
	char dir[4096], p[4200];

	if (!id_ok(id))
		return hv_fail(err, EINVAL, "'%s' is not a checkpoint id (%d hex digits)", id,
		               MANIFEST_ID_LEN);
	snprintf(dir, sizeof(dir), "%s/manifests", s->path);
	snprintf(p, sizeof(p), "%s/%s", dir, id);
	if (unlink(p) < 0)
		return hv_fail(err, errno, "%s: checkpoint %s: %s", s->path, id,
		               errno == ENOENT ? "no such checkpoint" : strerror(errno));
	return savefile_sync_dir(dir, err);
}
