/*
 * pack.c - pack files: zstd-compressed blobs, then a trailer that lists them.
 *
 *   blob 0 (zstd frame) | blob 1 | ... | trailer | u32 trailer length | "HVPACK1\n"
 *   trailer = u32 count, then count x (id[32], u64 offset, u32 clen, u32 rawlen)
 *
 * All integers little-endian. The trailer at the end lets a writer stream blobs without
 * knowing their number, and lets the index be rebuilt from the packs alone. A pack is
 * named by the SHA-256 of all its bytes and never changes once renamed into place.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "checkpoint/store_int.h"
#include "migrate/savefile.h"

/*
 * Level 1: pages are written while a checkpoint runs, and zstd's fast levels already
 * take most of what page data gives (guest RAM is mostly code, zeros and page tables).
 */
#define PACK_ZSTD_LEVEL 1

static int pack_write(struct store *s, const void *buf, size_t len, struct hv_error *err)
{
	const uint8_t *p = buf;
	size_t left = len;

	while (left) {
		ssize_t n = write(s->pack_fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hv_fail(err, errno, "%s: write: %s", s->pack_tmp, strerror(errno));
		p += n;
		left -= (size_t)n;
	}
	if (!EVP_DigestUpdate(s->pack_md, buf, len))
		return hv_fail(err, ENOMEM, "%s: SHA-256 failed", s->pack_tmp);
	s->pack_len += len;
	return 0;
}

static int pack_begin(struct store *s, struct hv_error *err)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof(r), 0) < 0)
		r = (uint32_t)getpid();
	free(s->pack_tmp);
	if (asprintf(&s->pack_tmp, "%s/packs/.tmp.%d.%08x", s->path, (int)getpid(), r) < 0) {
		s->pack_tmp = NULL;
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	}
	s->pack_fd = open(s->pack_tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s->pack_fd < 0)
		return hv_fail(err, errno, "%s: cannot create: %s", s->pack_tmp, strerror(errno));
	s->pack_md = EVP_MD_CTX_new();
	if (!s->pack_md || !EVP_DigestInit_ex(s->pack_md, EVP_sha256(), NULL)) {
		pack_abandon(s);
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	}
	s->pack_len = 0;
	s->pack_n = 0;
	return 0;
}

void pack_abandon(struct store *s)
{
	if (s->pack_fd >= 0) {
		close(s->pack_fd);
		unlink(s->pack_tmp);
		s->pack_fd = -1;
	}
	/* Blobs of an abandoned pack are gone: forget them. */
	for (size_t i = 0; i < s->pack_n; i++) {
		struct ck_slot *sl = ck_lookup(s, &s->pack_ents[i].id);
		if (sl && sl->state == ENT_OPEN) {
			/* Deleting from a linear-probing table needs a rehash; mark instead. */
			sl->state = ENT_EMPTY;
			s->count--;
		}
	}
	if (s->pack_n && s->cap) {
		/* Reinsert everything after a removed slot so probe chains stay whole. */
		struct ck_slot *old = s->tab;
		size_t cap = s->cap;
		s->tab = ck_tab_alloc(cap);
		if (s->tab) {
			s->count = 0;
			for (size_t i = 0; i < cap; i++)
				if (old[i].state != ENT_EMPTY)
					ck_insert(s, &old[i].e, old[i].state, NULL);
			ck_tab_free(old, cap);
		} else {
			s->tab = old; /* out of memory: leave the holes; lookups may miss */
		}
	}
	s->pack_n = 0;
	EVP_MD_CTX_free(s->pack_md);
	s->pack_md = NULL;
	free(s->pack_tmp);
	s->pack_tmp = NULL;
}

int pack_add(struct store *s, const struct blob_id *id, const void *data, size_t len,
             struct hv_error *err)
{
	struct ck_entry e = {.id = *id};
	size_t z;

	if (s->pack_fd < 0 && pack_begin(s, err) < 0)
		return -1;
	z = ZSTD_compressCCtx(s->cctx, s->zbuf, s->zcap, data, len, PACK_ZSTD_LEVEL);
	if (ZSTD_isError(z))
		return hv_fail(err, EIO, "%s: zstd: %s", s->pack_tmp, ZSTD_getErrorName(z));
	if (s->pack_n == s->pack_cap) {
		size_t nc = s->pack_cap ? s->pack_cap * 2 : 256;
		struct ck_entry *ne = realloc(s->pack_ents, nc * sizeof(*ne));
		if (!ne)
			return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		s->pack_ents = ne;
		s->pack_cap = nc;
	}
	e.off = s->pack_len;
	e.clen = (uint32_t)z;
	e.rawlen = (uint32_t)len;
	if (pack_write(s, s->zbuf, z, err) < 0)
		return -1;
	if (!ck_insert(s, &e, ENT_OPEN, err))
		return -1;
	s->pack_ents[s->pack_n++] = e;
	return 0;
}

int pack_copy_blob(struct store *s, const struct ck_entry *e, const void *zdata,
                   struct hv_error *err)
{
	struct ck_entry ne = *e;
	struct ck_slot *sl;

	if (s->pack_fd < 0 && pack_begin(s, err) < 0)
		return -1;
	if (s->pack_n == s->pack_cap) {
		size_t nc = s->pack_cap ? s->pack_cap * 2 : 256;
		struct ck_entry *np = realloc(s->pack_ents, nc * sizeof(*np));
		if (!np)
			return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		s->pack_ents = np;
		s->pack_cap = nc;
	}
	ne.off = s->pack_len;
	if (pack_write(s, zdata, e->clen, err) < 0)
		return -1;
	sl = ck_insert(s, &ne, ENT_OPEN, err);
	if (!sl)
		return -1;
	sl->e = ne;
	sl->state = ENT_OPEN;
	s->pack_ents[s->pack_n++] = ne;
	return 0;
}

int pack_seal(struct store *s, struct hv_error *err)
{
	char hex[STORE_ID_HEX + 1], dst[4200], dir[4096];
	size_t tlen = 4 + s->pack_n * PACK_ENTRY_SIZE;
	uint8_t *t, foot[PACK_FOOTER];
	struct blob_id pack;
	unsigned int mdlen;
	int rc;

	if (s->pack_fd < 0)
		return 0;
	t = malloc(tlen);
	if (!t)
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	ck_put32(t, (uint32_t)s->pack_n);
	for (size_t i = 0; i < s->pack_n; i++) {
		uint8_t *p = t + 4 + i * PACK_ENTRY_SIZE;
		memcpy(p, s->pack_ents[i].id.b, 32);
		ck_put64(p + 32, s->pack_ents[i].off);
		ck_put32(p + 40, s->pack_ents[i].clen);
		ck_put32(p + 44, s->pack_ents[i].rawlen);
	}
	ck_put32(foot, (uint32_t)tlen);
	memcpy(foot + 4, PACK_MAGIC, 8);
	rc = pack_write(s, t, tlen, err);
	free(t);
	if (rc < 0 || pack_write(s, foot, sizeof(foot), err) < 0)
		return -1;
	if (!EVP_DigestFinal_ex(s->pack_md, pack.b, &mdlen))
		return hv_fail(err, ENOMEM, "%s: SHA-256 failed", s->pack_tmp);
	if (fsync(s->pack_fd) < 0)
		return hv_fail(err, errno, "%s: fsync: %s", s->pack_tmp, strerror(errno));
	blob_id_hex(&pack, hex);
	snprintf(dir, sizeof(dir), "%s/packs/%.2s", s->path, hex);
	snprintf(dst, sizeof(dst), "%s/%s", dir, hex);
	/* Same name, same bytes: replacing an identical pack is harmless. */
	if (rename(s->pack_tmp, dst) < 0)
		return hv_fail(err, errno, "%s: rename: %s", dst, strerror(errno));
	if (savefile_sync_dir(dir, err) < 0)
		return -1;
	close(s->pack_fd);
	s->pack_fd = -1;
	for (size_t i = 0; i < s->pack_n; i++) {
		struct ck_slot *sl = ck_lookup(s, &s->pack_ents[i].id);
		if (s->unidx_n == s->unidx_cap) {
			size_t nc = s->unidx_cap ? s->unidx_cap * 2 : 1024;
			struct ck_entry *ne = realloc(s->unidx, nc * sizeof(*ne));
			if (!ne)
				return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
			s->unidx = ne;
			s->unidx_cap = nc;
		}
		/* From the pack's own entry: a repacked blob's slot still names its old home. */
		sl->e = s->pack_ents[i];
		sl->e.pack = pack;
		sl->state = ENT_SEALED;
		s->unidx[s->unidx_n++] = sl->e;
	}
	s->pack_n = 0;
	EVP_MD_CTX_free(s->pack_md);
	s->pack_md = NULL;
	free(s->pack_tmp);
	s->pack_tmp = NULL;
	/* Bound index files: a huge checkpoint writes several as it goes. */
	if (s->unidx_n >= INDEX_WRITE_MAX)
		return index_write_pending(s, err);
	return 0;
}

static int check_decoded(ZSTD_DCtx *dctx, const uint8_t *src, const struct ck_entry *e,
                         const char *name, void *out, size_t cap, struct hv_error *err)
{
	char hex[STORE_ID_HEX + 1];
	struct blob_id got;
	size_t n;

	if (e->rawlen > cap)
		return hv_fail(err, ERANGE, "%s: blob %s: %u bytes, buffer holds %zu", name,
		               blob_id_hex(&e->id, hex), e->rawlen, cap);
	n = ZSTD_decompressDCtx(dctx, out, e->rawlen, src, e->clen);
	if (ZSTD_isError(n))
		return hv_fail(err, EIO, "%s: blob %s: cannot decompress (%s): damaged pack", name,
		               blob_id_hex(&e->id, hex), ZSTD_getErrorName(n));
	if (n != e->rawlen)
		return hv_fail(err, EIO, "%s: blob %s: %zu bytes decompressed, %u expected", name,
		               blob_id_hex(&e->id, hex), n, e->rawlen);
	ck_sha256(out, n, &got);
	if (memcmp(&got, &e->id, sizeof(got)))
		return hv_fail(err, EIO, "%s: blob %s: hash mismatch: damaged pack", name,
		               blob_id_hex(&e->id, hex));
	return 0;
}

int pack_read_blob(struct store *s, int fd, const char *name, const struct ck_entry *e, void *buf,
                   size_t cap, struct hv_error *err)
{
	char hex[STORE_ID_HEX + 1];
	size_t got = 0;

	if (e->clen > s->zcap || e->rawlen > STORE_BLOB_MAX)
		return hv_fail(err, EINVAL, "%s: blob %s: length %u/%u out of bounds", name,
		               blob_id_hex(&e->id, hex), e->clen, e->rawlen);
	while (got < e->clen) {
		ssize_t n = pread(fd, s->zbuf + got, e->clen - got, (off_t)(e->off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hv_fail(err, errno, "%s: blob %s: read: %s", name,
			               blob_id_hex(&e->id, hex), strerror(errno));
		if (n == 0)
			return hv_fail(err, EIO, "%s: blob %s: pack truncated", name,
			               blob_id_hex(&e->id, hex));
		got += (size_t)n;
	}
	return check_decoded(s->dctx, s->zbuf, e, name, buf, cap, err);
}

int pack_check_blob(ZSTD_DCtx *dctx, const uint8_t *buf, const struct ck_entry *e, const char *name,
                    uint8_t *out, struct hv_error *err)
{
	return check_decoded(dctx, buf + e->off, e, name, out, STORE_BLOB_MAX, err);
}

int pack_parse(const uint8_t *buf, size_t len, const char *name, struct ck_entry **ents, size_t *n,
               struct hv_error *err)
{
	uint64_t tlen, count, data_end;
	const uint8_t *t;
	struct ck_entry *e;

	*ents = NULL;
	*n = 0;
	if (len < PACK_FOOTER + 4)
		return hv_fail(err, EINVAL, "%s: %zu bytes, too short for a pack", name, len);
	if (memcmp(buf + len - 8, PACK_MAGIC, 8))
		return hv_fail(err, EINVAL, "%s: footer magic: not a pack", name);
	tlen = ck_get32(buf + len - PACK_FOOTER);
	if (tlen < 4 || tlen > len - PACK_FOOTER)
		return hv_fail(err, EINVAL, "%s: trailer length %llu out of bounds", name,
		               (unsigned long long)tlen);
	data_end = len - PACK_FOOTER - tlen;
	t = buf + data_end;
	count = ck_get32(t);
	if (count > PACK_ENTRIES_MAX || 4 + count * PACK_ENTRY_SIZE != tlen)
		return hv_fail(err, EINVAL, "%s: trailer count %llu does not fit its length %llu",
		               name, (unsigned long long)count, (unsigned long long)tlen);
	e = calloc(count ? count : 1, sizeof(*e));
	if (!e)
		return hv_fail(err, ENOMEM, "%s: out of memory", name);
	for (uint64_t i = 0; i < count; i++) {
		const uint8_t *p = t + 4 + i * PACK_ENTRY_SIZE;
		memcpy(e[i].id.b, p, 32);
		e[i].off = ck_get64(p + 32);
		e[i].clen = ck_get32(p + 40);
		e[i].rawlen = ck_get32(p + 44);
		if (e[i].off > data_end || e[i].clen > data_end - e[i].off || e[i].clen == 0 ||
		    e[i].rawlen > STORE_BLOB_MAX) {
			hv_fail(
			    err, EINVAL,
			    "%s: trailer entry %llu: offset %llu length %u raw %u out of bounds",
			    name, (unsigned long long)i, (unsigned long long)e[i].off, e[i].clen,
			    e[i].rawlen);
			free(e);
			return -1;
		}
	}
	*ents = e;
	*n = count;
	return 0;
}
