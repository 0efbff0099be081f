/*
 * index.c - index files: where each blob lives, so a reader need not open every pack.
 *
 *   "HVINDEX\n" | u32 version (1) | u32 count
 *   count x (id[32], pack[32], u64 offset, u32 clen, u32 rawlen)
 *   SHA-256 of everything before it (32 bytes)
 *
 * Little-endian. The file is named by the SHA-256 of all its bytes. It is written only
 * after every pack it names is durable, so an index entry never points at a pack that a
 * crash could have lost; a lost index file only leaves its packs unreferenced (gc).
 */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/store_int.h"

#define INDEX_FILE_MAX ((uint64_t)INDEX_HDR + (uint64_t)INDEX_ENTRIES_MAX * INDEX_ENTRY_SIZE + 32)

int index_encode(const struct ck_entry *ents, size_t n, uint8_t **buf, size_t *len,
                 struct hv_error *err)
{
	size_t l = INDEX_HDR + n * INDEX_ENTRY_SIZE + 32;
	uint8_t *b = malloc(l);

	if (!b)
		return hv_fail(err, ENOMEM, "index: out of memory");
	memcpy(b, INDEX_MAGIC, 8);
	ck_put32(b + 8, INDEX_VERSION);
	ck_put32(b + 12, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = b + INDEX_HDR + i * INDEX_ENTRY_SIZE;
		memcpy(p, ents[i].id.b, 32);
		memcpy(p + 32, ents[i].pack.b, 32);
		ck_put64(p + 64, ents[i].off);
		ck_put32(p + 72, ents[i].clen);
		ck_put32(p + 76, ents[i].rawlen);
	}
	ck_sha256(b, l - 32, (struct blob_id *)(b + l - 32));
	*buf = b;
	*len = l;
	return 0;
}

int index_parse(const uint8_t *buf, size_t len, const char *name, struct ck_entry **ents, size_t *n,
                struct hv_error *err)
{
	struct blob_id sum;
	struct ck_entry *e;
	uint32_t v, count;

	*ents = NULL;
	*n = 0;
	if (len < INDEX_HDR + 32)
		return hv_fail(err, EINVAL, "%s: %zu bytes, too short for an index file", name,
		               len);
	if (memcmp(buf, INDEX_MAGIC, 8))
		return hv_fail(err, EINVAL, "%s: magic: not an index file", name);
	v = ck_get32(buf + 8);
	if (v != INDEX_VERSION)
		return hv_fail(err, ENOTSUP, "%s: version %u, this hv reads %u", name, v,
		               INDEX_VERSION);
	count = ck_get32(buf + 12);
	if (count > INDEX_ENTRIES_MAX ||
	    (uint64_t)INDEX_HDR + (uint64_t)count * INDEX_ENTRY_SIZE + 32 != len)
		return hv_fail(err, EINVAL,
		               "%s: count %u does not fit the file size %zu (truncated?)", name,
		               count, len);
	ck_sha256(buf, len - 32, &sum);
	if (memcmp(sum.b, buf + len - 32, 32))
		return hv_fail(err, EINVAL, "%s: checksum mismatch (damaged)", name);
	e = calloc(count ? count : 1, sizeof(*e));
	if (!e)
		return hv_fail(err, ENOMEM, "%s: out of memory", name);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p = buf + INDEX_HDR + (size_t)i * INDEX_ENTRY_SIZE;
		memcpy(e[i].id.b, p, 32);
		memcpy(e[i].pack.b, p + 32, 32);
		e[i].off = ck_get64(p + 64);
		e[i].clen = ck_get32(p + 72);
		e[i].rawlen = ck_get32(p + 76);
		/* The same bounds a pack's own trailer must meet. */
		if (e[i].clen == 0 || e[i].off > PACK_FILE_MAX ||
		    e[i].clen > PACK_FILE_MAX - e[i].off || e[i].rawlen > STORE_BLOB_MAX) {
			hv_fail(err, EINVAL,
			        "%s: entry %u: offset %llu length %u raw %u out of bounds", name, i,
			        (unsigned long long)e[i].off, e[i].clen, e[i].rawlen);
			free(e);
			return -1;
		}
	}
	*ents = e;
	*n = count;
	return 0;
}

static int note_bad(struct store *s, const char *msg, struct hv_error *err)
{
	char **nb = realloc(s->bad_index, (s->nbad + 1) * sizeof(*nb));

	if (!nb || !(nb[s->nbad] = strdup(msg))) {
		if (nb)
			s->bad_index = nb;
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	}
	s->bad_index = nb;
	s->nbad++;
	return 0;
}

int index_load_all(struct store *s, struct hv_error *err)
{
	char dir[4096], path[8192];
	struct dirent *d;
	DIR *dp;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/index", s->path);
	dp = opendir(dir);
	if (!dp)
		return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
	/*
	 * Size the table for every entry first: growing it by doubling rehashes all of it
	 * each time, which was most of the time of opening a large store (and of a lazy
	 * restore's time to the first instruction).
	 */
	{
		size_t total = 0;
		struct stat sb;

		while ((d = readdir(dp))) {
			snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
			if (d->d_name[0] != '.' && stat(path, &sb) == 0 &&
			    sb.st_size > INDEX_HDR + 32)
				total += ((size_t)sb.st_size - INDEX_HDR - 32) / INDEX_ENTRY_SIZE;
		}
		rewinddir(dp);
		if (ck_reserve(s, total, err) < 0) {
			closedir(dp);
			return -1;
		}
	}
	while (rc == 0 && (d = readdir(dp))) {
		struct blob_id name, got;
		struct ck_entry *e;
		struct hv_error e1;
		uint8_t *buf;
		size_t len, n;

		if (d->d_name[0] == '.')
			continue; /* ., .., and writers' temp files */
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (blob_id_parse(d->d_name, &name) < 0) {
			hv_fail(&e1, EINVAL, "%s: not an index file name (64 hex digits)", path);
			rc = note_bad(s, e1.msg, err);
			continue;
		}
		if (ck_read_file(path, INDEX_FILE_MAX, &buf, &len, &e1) < 0) {
			rc = note_bad(s, e1.msg, err);
			continue;
		}
		ck_sha256(buf, len, &got);
		if (memcmp(&got, &name, sizeof(got))) {
			hv_fail(&e1, EINVAL, "%s: content does not match its name (damaged)", path);
			free(buf);
			rc = note_bad(s, e1.msg, err);
			continue;
		}
		if (index_parse(buf, len, path, &e, &n, &e1) < 0) {
			free(buf);
			rc = note_bad(s, e1.msg, err);
			continue;
		}
		free(buf);
		for (size_t i = 0; i < n && rc == 0; i++)
			if (!ck_insert(s, &e[i], ENT_INDEXED, err))
				rc = -1;
		free(e);
	}
	closedir(dp);
	return rc;
}

int index_write_pending(struct store *s, struct hv_error *err)
{
	char dir[4096], hex[STORE_ID_HEX + 1];
	struct blob_id name;
	uint8_t *buf;
	size_t len;
	int rc;

	if (!s->unidx_n)
		return 0;
	snprintf(dir, sizeof(dir), "%s/index", s->path);
	if (index_encode(s->unidx, s->unidx_n, &buf, &len, err) < 0)
		return -1;
	ck_sha256(buf, len, &name);
	rc = ck_write_atomic(dir, blob_id_hex(&name, hex), buf, len, false, err);
	free(buf);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < s->unidx_n; i++) {
		struct ck_slot *sl = ck_lookup(s, &s->unidx[i].id);
		if (sl)
			sl->state = ENT_INDEXED;
	}
	s->unidx_n = 0;
	return 0;
}
