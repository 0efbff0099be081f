/*
 * gc.c - mark, sweep and repack (gc.h), and what one checkpoint occupies (store_usage).
 *
 * The mark lives in the in-memory index itself (ck_slot.live), so marking costs no more
 * memory than opening the store did. A page-map chunk already marked needs no second
 * read: the pages it lists were marked with it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/gc.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store_int.h"
#include "migrate/savefile.h"

#define CHUNK_MAX (MANIFEST_CHUNK_PAGES * sizeof(struct blob_id))

struct mark {
	struct store *s;
	uint8_t bit;    /* the mark this walk sets */
	bool recount;   /* read every chunk, even marked ones (store_usage's page counts) */
	uint8_t *chunk; /* CHUNK_MAX bytes */
	uint64_t missing;
	char first_missing[HV_ERROR_MSG];
	struct ckpt_usage *u; /* counts, or NULL */
};

static void note_missing(struct mark *k, const struct manifest *m, const char *what,
                         const struct blob_id *id)
{
	char hex[STORE_ID_HEX + 1];

	if (!k->missing++)
		snprintf(k->first_missing, sizeof(k->first_missing),
		         "manifest %s: %s %s is not in the index", m->id, what,
		         blob_id_hex(id, hex));
}

/* Mark @id; returns true if it was not marked with this bit before. */
static bool mark_blob(struct mark *k, const struct manifest *m, const struct blob_id *id,
                      const char *what)
{
	struct ck_slot *sl;

	if (blob_id_is_zero(id))
		return false;
	sl = ck_lookup(k->s, id);
	if (!sl) {
		note_missing(k, m, what, id);
		return false;
	}
	if (sl->live & k->bit)
		return false;
	sl->live |= k->bit;
	if (k->u) {
		k->u->blobs++;
		k->u->bytes += sl->e.clen;
	}
	return true;
}

static int mark_manifest(struct mark *k, const struct manifest *m, struct hv_error *err)
{
	struct hv_error e;

	mark_blob(k, m, &m->state, "state blob");
	for (size_t c = 0; c < m->nchunks; c++) {
		uint64_t pages = m->ram_size / STORE_PAGE_SIZE - (uint64_t)c * MANIFEST_CHUNK_PAGES;
		size_t len;

		if (pages > MANIFEST_CHUNK_PAGES)
			pages = MANIFEST_CHUNK_PAGES;
		if (!mark_blob(k, m, &m->chunks[c], "page-map chunk") &&
		    (!k->recount || !ck_lookup(k->s, &m->chunks[c])))
			continue;
		if (store_get(k->s, &m->chunks[c], k->chunk, CHUNK_MAX, &len, &e) < 0)
			return hv_fail(err, e.code, "manifest %s: page-map chunk %zu: %s", m->id, c,
			               e.msg);
		if (len != pages * sizeof(struct blob_id))
			return hv_fail(err, EINVAL,
			               "manifest %s: page-map chunk %zu holds %zu bytes", m->id, c,
			               len);
		for (uint64_t p = 0; p < pages; p++) {
			const struct blob_id *id = (const struct blob_id *)(k->chunk + p * 32);

			if (k->u && !blob_id_is_zero(id))
				k->u->pages_nonzero++;
			mark_blob(k, m, id, "page");
		}
	}
	if (k->u)
		k->u->pages += m->ram_size / STORE_PAGE_SIZE;
	return 0;
}

static void clear_marks(struct store *s)
{
	for (size_t i = 0; i < s->cap; i++)
		s->tab[i].live = 0;
}

/* Mark every manifest (but @skip) with @k->bit. Returns how many, or -1. */
static long mark_all(struct mark *k, const char *skip, struct hv_error *err)
{
	char(*ids)[MANIFEST_ID_LEN + 1] = NULL;
	size_t n = 0;
	long done = 0;

	if (manifest_list(k->s, &ids, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct manifest *m;
		int rc;

		if (skip && !strcmp(ids[i], skip))
			continue;
		if (manifest_read(k->s, ids[i], &m, err) < 0) {
			free(ids);
			return -1;
		}
		rc = mark_manifest(k, m, err);
		manifest_free(m);
		if (rc < 0) {
			free(ids);
			return -1;
		}
		done++;
	}
	free(ids);
	return done;
}

int store_usage(struct store *s, const char *id, struct ckpt_usage *u, struct hv_error *err)
{
	struct mark k = {.s = s, .bit = 1};
	struct manifest *m = NULL;
	int rc = -1;

	memset(u, 0, sizeof(*u));
	if (manifest_read(s, id, &m, err) < 0)
		return -1;
	k.chunk = malloc(CHUNK_MAX);
	if (!k.chunk) {
		hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		goto out;
	}
	clear_marks(s);
	if (mark_all(&k, id, err) < 0)
		goto out;
	k.bit = 2;
	k.recount = true;
	k.u = u;
	if (mark_manifest(&k, m, err) < 0)
		goto out;
	if (k.missing) {
		hv_fail(err, ENOENT, "%s", k.first_missing);
		goto out;
	}
	for (size_t i = 0; i < s->cap; i++)
		if (s->tab[i].live == 2) {
			u->unique_blobs++;
			u->unique_bytes += s->tab[i].e.clen;
		}
	rc = 0;
out:
	clear_marks(s);
	manifest_free(m);
	free(k.chunk);
	return rc;
}

/* ---- sweep ---- */

enum { PK_KEEP, PK_DELETE, PK_REPACK };

struct pack_info {
	struct blob_id id;
	uint64_t size, data; /* the file; its blobs (before the trailer) */
	uint64_t live_bytes, live_blobs;
	int fate;
};

struct gc {
	struct store *s;
	const struct gc_opts *o;
	struct gc_stats *st;
	struct pack_info *packs;
	size_t npacks, cap;
};

static void gc_log(struct gc *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gc_log(struct gc *g, const char *fmt, ...)
{
	char msg[HV_ERROR_MSG + 128];
	va_list ap;

	if (!g->o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	g->o->log(g->o->arg, msg);
}

static int idcmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct blob_id));
}

/* The bytes of a pack's blobs: its size less the trailer its footer declares. */
static uint64_t pack_data_bytes(const char *path, uint64_t size)
{
	uint8_t foot[PACK_FOOTER];
	uint64_t tlen;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return size;
	n = size >= PACK_FOOTER ? pread(fd, foot, sizeof(foot), (off_t)(size - PACK_FOOTER)) : -1;
	close(fd);
	if (n != (ssize_t)sizeof(foot) || memcmp(foot + 4, PACK_MAGIC, 8))
		return size;
	tlen = ck_get32(foot);
	return tlen + PACK_FOOTER <= size ? size - PACK_FOOTER - tlen : size;
}

/* Every pack file on disk, sorted by id. */
static int scan_packs(struct gc *g, struct hv_error *err)
{
	for (int i = 0; i < 256; i++) {
		char dir[4096], p[4400];
		struct dirent *d;
		DIR *dp;

		snprintf(dir, sizeof(dir), "%s/packs/%02x", g->s->path, i);
		dp = opendir(dir);
		if (!dp)
			return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
		while ((d = readdir(dp))) {
			struct pack_info pi = {0};
			struct stat sb;

			if (blob_id_parse(d->d_name, &pi.id) < 0)
				continue; /* temp files are swept separately */
			snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
			if (stat(p, &sb) < 0)
				continue;
			pi.size = (uint64_t)sb.st_size;
			pi.data = pack_data_bytes(p, pi.size);
			if (g->npacks == g->cap) {
				size_t nc = g->cap ? g->cap * 2 : 256;
				struct pack_info *np = realloc(g->packs, nc * sizeof(*np));
				if (!np) {
					closedir(dp);
					return hv_fail(err, ENOMEM, "%s: out of memory",
					               g->s->path);
				}
				g->packs = np;
				g->cap = nc;
			}
			g->packs[g->npacks++] = pi;
		}
		closedir(dp);
	}
	if (g->npacks)
		qsort(g->packs, g->npacks, sizeof(*g->packs), idcmp);
	return 0;
}

static struct pack_info *find_pack(struct gc *g, const struct blob_id *id)
{
	if (!g->npacks)
		return NULL;
	return bsearch(id, g->packs, g->npacks, sizeof(*g->packs), idcmp);
}

/* Copy the live blobs of pack @pi into the open pack (sealing as it fills). */
static int repack_one(struct gc *g, struct pack_info *pi, struct hv_error *err)
{
	char hex[STORE_ID_HEX + 1], *path = ck_pack_path(g->s, &pi->id);
	struct store *s = g->s;
	struct hv_error e;
	uint8_t *buf = NULL, *out = malloc(STORE_BLOB_MAX);
	size_t len;
	int rc = 0;

	if (!path || !out) {
		free(path);
		free(out);
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	}
	if (ck_read_file(path, PACK_FILE_MAX, &buf, &len, &e) < 0) {
		gc_log(g, "pack %s: kept, cannot read it: %s", blob_id_hex(&pi->id, hex), e.msg);
		pi->fate = PK_KEEP;
		goto out;
	}
	/* Check every live blob first, so a damaged pack is kept whole, not half-copied. */
	for (size_t i = 0; i < s->cap && pi->fate == PK_REPACK; i++) {
		struct ck_slot *sl = &s->tab[i];

		if (!sl->live || sl->state != ENT_INDEXED || memcmp(&sl->e.pack, &pi->id, 32))
			continue;
		if (sl->e.off + sl->e.clen > len ||
		    pack_check_blob(s->dctx, buf, &sl->e, path, out, &e) < 0) {
			gc_log(g, "pack %s: kept, a live blob is damaged: %s",
			       blob_id_hex(&pi->id, hex),
			       sl->e.off + sl->e.clen > len ? "pack truncated" : e.msg);
			pi->fate = PK_KEEP;
		}
	}
	for (size_t i = 0; i < s->cap && pi->fate == PK_REPACK; i++) {
		struct ck_slot *sl = &s->tab[i];
		struct ck_entry ce;

		if (!sl->live || sl->state != ENT_INDEXED || memcmp(&sl->e.pack, &pi->id, 32))
			continue;
		ce = sl->e;
		if (pack_copy_blob(s, &ce, buf + ce.off, err) < 0) {
			rc = -1;
			break;
		}
		if (s->pack_len >= s->pack_size) {
			uint64_t bytes =
			    s->pack_len + 4 + s->pack_n * PACK_ENTRY_SIZE + PACK_FOOTER;
			if (pack_seal(s, err) < 0) {
				rc = -1;
				break;
			}
			g->st->packs_written++;
			g->st->bytes_written += bytes;
		}
	}
out:
	free(buf);
	free(out);
	free(path);
	return rc;
}

/* Write the index of every blob whose pack stays; returns the new file names. */
static int write_index(struct gc *g, struct blob_id **names, size_t *nnames, struct hv_error *err)
{
	struct store *s = g->s;
	struct ck_entry *ents = malloc((s->count + 1) * sizeof(*ents));
	char dir[4096], hex[STORE_ID_HEX + 1];
	size_t n = 0;
	int rc = 0;

	*names = NULL;
	*nnames = 0;
	if (!ents)
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	for (size_t i = 0; i < s->cap; i++) {
		struct ck_slot *sl = &s->tab[i];
		struct pack_info *pi;

		if (sl->state != ENT_INDEXED && sl->state != ENT_SEALED)
			continue;
		pi = find_pack(g, &sl->e.pack);
		if (pi && pi->fate != PK_KEEP)
			continue;
		/*
		 * Not on disk: a new pack (only live blobs go there) or a missing one, whose
		 * dead entries go and whose live ones stay for verify to name.
		 */
		if (!pi && !sl->live)
			continue;
		ents[n++] = sl->e;
	}
	qsort(ents, n, sizeof(*ents), idcmp); /* the blob id leads the entry */
	*names = calloc(n / INDEX_WRITE_MAX + 1, sizeof(**names));
	if (!*names) {
		free(ents);
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	}
	snprintf(dir, sizeof(dir), "%s/index", s->path);
	for (size_t off = 0; off < n && rc == 0; off += INDEX_WRITE_MAX) {
		size_t k = n - off < INDEX_WRITE_MAX ? n - off : INDEX_WRITE_MAX, len;
		struct blob_id *nm = &(*names)[*nnames];
		uint8_t *buf;

		rc = index_encode(ents + off, k, &buf, &len, err);
		if (rc < 0)
			break;
		ck_sha256(buf, len, nm);
		rc = ck_write_atomic(dir, blob_id_hex(nm, hex), buf, len, false, err);
		free(buf);
		if (rc == 0)
			(*nnames)++;
	}
	free(ents);
	g->st->index_written = *nnames;
	return rc;
}

/* Remove every index file not in @keep (written by write_index, so durable already). */
static int prune_index(struct gc *g, const struct blob_id *keep, size_t nkeep, struct hv_error *err)
{
	char dir[4096], p[4400];
	struct dirent *d;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/index", g->s->path);
	dp = opendir(dir);
	if (!dp)
		return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
	while ((d = readdir(dp))) {
		struct blob_id id;
		bool kept = false;

		if (d->d_name[0] == '.')
			continue;
		if (blob_id_parse(d->d_name, &id) == 0)
			for (size_t i = 0; i < nkeep && !kept; i++)
				kept = !memcmp(&keep[i], &id, sizeof(id));
		if (kept)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
		if (unlink(p) == 0)
			g->st->index_removed++;
	}
	closedir(dp);
	return savefile_sync_dir(dir, err);
}

static int delete_packs(struct gc *g, struct hv_error *err)
{
	bool dirty[256] = {0};
	char dir[4096];

	for (size_t i = 0; i < g->npacks; i++) {
		struct pack_info *pi = &g->packs[i];
		char *p;

		if (pi->fate == PK_KEEP)
			continue;
		p = ck_pack_path(g->s, &pi->id);
		if (!p)
			return hv_fail(err, ENOMEM, "%s: out of memory", g->s->path);
		if (unlink(p) < 0 && errno != ENOENT) {
			hv_fail(err, errno, "%s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
		dirty[pi->id.b[0]] = true;
	}
	for (int i = 0; i < 256; i++) {
		if (!dirty[i])
			continue;
		snprintf(dir, sizeof(dir), "%s/packs/%02x", g->s->path, i);
		if (savefile_sync_dir(dir, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * A temp file ".NAME.tmp.PID.RAND" (packs: ".tmp.PID.RAND") is garbage when its pid is
 * dead, or when it is older than GC_TMP_AGE_S (a pid of another host, or reused).
 */
static bool tmp_garbage(const char *dir, const char *name)
{
	const char *t = strstr(name, ".tmp.");
	char p[4400];
	struct stat sb;
	long pid = 0;

	if (name[0] != '.' || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (lstat(p, &sb) < 0 || !S_ISREG(sb.st_mode))
		return false;
	if (t)
		pid = strtol(t + 5, NULL, 10);
	if (pid == getpid())
		return false;
	if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return true;
	return time(NULL) - sb.st_mtime > GC_TMP_AGE_S;
}

static void sweep_tmp(struct gc *g)
{
	static const char *const subs[] = {"", "/packs", "/index", "/manifests", "/locks"};
	char dir[4096], p[4400];

	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		struct dirent *d;
		DIR *dp;

		snprintf(dir, sizeof(dir), "%s%s", g->s->path, subs[i]);
		if (!(dp = opendir(dir)))
			continue;
		while ((d = readdir(dp))) {
			if (!tmp_garbage(dir, d->d_name))
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
			if (g->o->dry_run || unlink(p) == 0)
				g->st->tmp_removed++;
		}
		closedir(dp);
	}
}

static int gc_mark(struct gc *g, struct hv_error *err)
{
	struct store *s = g->s;
	struct mark k = {.s = s, .bit = 1, .chunk = malloc(CHUNK_MAX)};
	struct hv_error e;
	long n;

	if (!k.chunk)
		return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
	clear_marks(s);
	n = mark_all(&k, NULL, &e);
	free(k.chunk);
	if (n < 0)
		return hv_fail(err, e.code, "%s; gc deletes nothing", e.msg);
	if (k.missing)
		return hv_fail(err, ENOENT,
		               "%llu blobs that checkpoints name are not in the index (%s); run "
		               "verify; gc deletes nothing",
		               (unsigned long long)k.missing, k.first_missing);
	g->st->manifests = (uint64_t)n;
	for (size_t i = 0; i < s->cap; i++) {
		struct ck_slot *sl = &s->tab[i];
		struct pack_info *pi;

		if (!sl->live)
			continue;
		g->st->live_blobs++;
		g->st->live_bytes += sl->e.clen;
		if ((pi = find_pack(g, &sl->e.pack))) {
			pi->live_bytes += sl->e.clen;
			pi->live_blobs++;
		}
	}
	return 0;
}

int store_gc(struct store *s, const struct gc_opts *o, struct gc_stats *st, struct hv_error *err)
{
	struct gc g = {.s = s, .o = o, .st = st};
	struct blob_id *names = NULL;
	char hex[STORE_ID_HEX + 1];
	size_t nnames = 0;
	bool change = false;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (!s->locked)
		return hv_fail(err, EPERM, "%s: gc needs the exclusive lock", s->path);
	if (s->nbad)
		return hv_fail(err, EIO, "%s; run rebuild-index first; gc deletes nothing",
		               s->bad_index[0]);
	if (s->pack_fd >= 0 || s->unidx_n)
		return hv_fail(err, EBUSY, "%s: unflushed blobs in this handle", s->path);
	if (scan_packs(&g, err) < 0 || gc_mark(&g, err) < 0)
		goto out;
	for (size_t i = 0; i < g.npacks; i++) {
		struct pack_info *pi = &g.packs[i];

		st->packs++;
		st->pack_bytes += pi->size;
		if (!pi->live_blobs)
			pi->fate = PK_DELETE;
		else if (pi->live_bytes * 100 < (uint64_t)o->repack_pct * pi->data)
			pi->fate = PK_REPACK;
		change |= pi->fate != PK_KEEP;
	}
	for (size_t i = 0; i < g.npacks; i++) {
		struct pack_info *pi = &g.packs[i];

		if (pi->fate == PK_REPACK && !o->dry_run && repack_one(&g, pi, err) < 0)
			goto out;
		if (pi->fate == PK_DELETE)
			gc_log(&g, "pack %s: delete (%llu bytes, no live blob)",
			       blob_id_hex(&pi->id, hex), (unsigned long long)pi->size);
		else if (pi->fate == PK_REPACK)
			gc_log(&g, "pack %s: repack (%llu of %llu blob bytes live)",
			       blob_id_hex(&pi->id, hex), (unsigned long long)pi->live_bytes,
			       (unsigned long long)pi->data);
	}
	for (size_t i = 0; i < g.npacks; i++) {
		st->packs_deleted += g.packs[i].fate == PK_DELETE;
		st->packs_repacked += g.packs[i].fate == PK_REPACK;
		if (g.packs[i].fate != PK_KEEP)
			st->bytes_deleted += g.packs[i].size;
	}
	if (o->dry_run) {
		sweep_tmp(&g);
		rc = 0;
		goto out;
	}
	/* 1: new packs durable (pack_seal fsyncs each and its directory). */
	if (s->pack_fd >= 0) {
		uint64_t bytes = s->pack_len + 4 + s->pack_n * PACK_ENTRY_SIZE + PACK_FOOTER;
		if (pack_seal(s, err) < 0)
			goto out;
		st->packs_written++;
		st->bytes_written += bytes;
	}
	s->unidx_n = 0; /* the whole index is rewritten below */
	/* 2: the new index durable; 3: old index files gone; 4: old packs gone. */
	if (change || s->count) {
		if (write_index(&g, &names, &nnames, err) < 0 ||
		    prune_index(&g, names, nnames, err) < 0 || delete_packs(&g, err) < 0)
			goto out;
	}
	sweep_tmp(&g);
	rc = 0;
out:
	if (rc < 0)
		pack_abandon(s);
	clear_marks(s);
	free(names);
	free(g.packs);
	return rc;
}
