/*
 * reindex.c - rebuild index/ from the packs' own trailers (gc.h, store_rebuild_index).
 *
 * A pack lists its blobs in its trailer, so the index is only a cache of what the packs
 * say: after an index file was lost or damaged, reading every trailer gives it back. The
 * new files are made durable before any old one is deleted, so a crash halfway leaves
 * both, which readers merge.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/gc.h"
#include "checkpoint/store_int.h"
#include "migrate/savefile.h"

struct ents {
	struct ck_entry *v;
	size_t n, cap;
};

static int add_pack(struct ents *a, const struct ck_entry *e, size_t n, const struct blob_id *pack,
                    struct hv_error *err)
{
	if (a->n + n > a->cap) {
		size_t nc = a->cap ? a->cap : 4096;
		struct ck_entry *nv;

		while (nc < a->n + n)
			nc *= 2;
		nv = realloc(a->v, nc * sizeof(*nv));
		if (!nv)
			return hv_fail(err, ENOMEM, "rebuild-index: out of memory");
		a->v = nv;
		a->cap = nc;
	}
	for (size_t i = 0; i < n; i++) {
		a->v[a->n] = e[i];
		a->v[a->n++].pack = *pack;
	}
	return 0;
}

static int read_packs(struct store *s, struct ents *a, store_report_fn log, void *arg,
                      struct reindex_stats *st, struct hv_error *err)
{
	for (int i = 0; i < 256; i++) {
		char dir[4096], p[4400];
		struct dirent *d;
		DIR *dp;

		snprintf(dir, sizeof(dir), "%s/packs/%02x", s->path, i);
		dp = opendir(dir);
		if (!dp)
			return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
		while ((d = readdir(dp))) {
			struct ck_entry *e;
			struct blob_id id;
			struct hv_error e1;
			uint8_t *buf;
			size_t len, n;
			int rc;

			if (blob_id_parse(d->d_name, &id) < 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
			st->packs++;
			if (ck_read_file(p, PACK_FILE_MAX, &buf, &len, &e1) < 0 ||
			    (rc = pack_parse(buf, len, p, &e, &n, &e1), free(buf), rc < 0)) {
				st->packs_bad++;
				if (log)
					log(arg, e1.msg);
				continue;
			}
			rc = add_pack(a, e, n, &id, err);
			free(e);
			if (rc < 0) {
				closedir(dp);
				return -1;
			}
		}
		closedir(dp);
	}
	return 0;
}

/* By blob id, then pack id: the first of equal ids is kept, whichever run found it. */
static int cmp_ent(const void *a, const void *b)
{
	const struct ck_entry *x = a, *y = b;
	int c = memcmp(&x->id, &y->id, sizeof(x->id));

	return c ? c : memcmp(&x->pack, &y->pack, sizeof(x->pack));
}

int store_rebuild_index(struct store *s, store_report_fn log, void *arg, struct reindex_stats *st,
                        struct hv_error *err)
{
	char dir[4096], hex[STORE_ID_HEX + 1], p[4400];
	struct ents a = {0};
	struct blob_id *names = NULL;
	size_t nn = 0, n = 0;
	struct dirent *d;
	DIR *dp;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (!s->locked)
		return hv_fail(err, EPERM, "%s: rebuild-index needs the exclusive lock", s->path);
	if (read_packs(s, &a, log, arg, st, err) < 0)
		goto out;
	if (a.n)
		qsort(a.v, a.n, sizeof(*a.v), cmp_ent);
	for (size_t i = 0; i < a.n; i++)
		if (!n || memcmp(&a.v[n - 1].id, &a.v[i].id, sizeof(a.v[i].id)))
			a.v[n++] = a.v[i];
	st->blobs = n;
	names = calloc(n / INDEX_WRITE_MAX + 1, sizeof(*names));
	if (!names) {
		hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		goto out;
	}
	snprintf(dir, sizeof(dir), "%s/index", s->path);
	for (size_t off = 0; off < n; off += INDEX_WRITE_MAX) {
		size_t k = n - off < INDEX_WRITE_MAX ? n - off : INDEX_WRITE_MAX, len;
		uint8_t *buf;
		int r;

		if (index_encode(a.v + off, k, &buf, &len, err) < 0)
			goto out;
		ck_sha256(buf, len, &names[nn]);
		r = ck_write_atomic(dir, blob_id_hex(&names[nn], hex), buf, len, false, err);
		free(buf);
		if (r < 0)
			goto out;
		nn++;
	}
	st->index_written = nn;
	/* The new files are durable: every other index file may go. */
	dp = opendir(dir);
	if (!dp) {
		hv_fail(err, errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	while ((d = readdir(dp))) {
		struct blob_id id;
		bool keep = false;

		if (d->d_name[0] == '.')
			continue;
		if (blob_id_parse(d->d_name, &id) == 0)
			for (size_t i = 0; i < nn && !keep; i++)
				keep = !memcmp(&names[i], &id, sizeof(id));
		snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
		if (!keep && unlink(p) == 0)
			st->index_removed++;
	}
	closedir(dp);
	rc = savefile_sync_dir(dir, err);
out:
	free(a.v);
	free(names);
	return rc;
}
