/*
 * store.c - the checkpoint store: opening, the in-memory index, put/get/flush and
 * verify (the locks are in lock.c). The file formats live in pack.c, index.c and manifest.c;
 * docs/checkpoint-store.md describes them and the commit protocol.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store_int.h"
#include "migrate/savefile.h"

const struct blob_id STORE_ZERO_ID;

static const uint8_t zero_page[STORE_PAGE_SIZE];

char *blob_id_hex(const struct blob_id *id, char out[STORE_ID_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[id->b[i] >> 4];
		out[2 * i + 1] = hex[id->b[i] & 15];
	}
	out[STORE_ID_HEX] = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int blob_id_parse(const char *hex, struct blob_id *id)
{
	for (int i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		id->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[STORE_ID_HEX] == '\0' ? 0 : -1;
}

bool blob_id_is_zero(const struct blob_id *id)
{
	return !memcmp(id, &STORE_ZERO_ID, sizeof(*id));
}

void ck_sha256(const void *data, size_t len, struct blob_id *out)
{
	/* EVP_Digest uses the CPU's SHA extensions; it fails only without memory. */
	if (!EVP_Digest(data, len, out->b, NULL, EVP_sha256(), NULL))
		abort();
}

/* ---- files ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ck_write_atomic(const char *dir, const char *name, const void *buf, size_t len, bool excl,
                    struct hv_error *err)
{
	char tmp[4096], dst[4096];
	uint32_t r = 0;
	int fd, rc;

	if (getrandom(&r, sizeof(r), 0) < 0)
		r = (uint32_t)getpid();
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%d.%08x", dir, name, (int)getpid(), r);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hv_fail(err, errno, "%s: cannot create %s: %s", dst, tmp, strerror(errno));
	if (write_all(fd, buf, len) < 0 || fsync(fd) < 0) {
		hv_fail(err, errno, "%s: write: %s", dst, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		hv_fail(err, errno, "%s: close: %s", dst, strerror(errno));
		goto fail;
	}
	fd = -1;
	/* link() refuses an existing target atomically, where rename() would replace it. */
	rc = excl ? link(tmp, dst) : rename(tmp, dst);
	if (rc < 0) {
		hv_fail(err, errno, "%s: %s", dst,
		        errno == EEXIST ? "already exists" : strerror(errno));
		goto fail;
	}
	if (excl)
		unlink(tmp);
	return savefile_sync_dir(dir, err);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

int ck_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len, struct hv_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *b;
	size_t got = 0;

	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return hv_fail(err, EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return hv_fail(err, EFBIG, "%s: %lld bytes, more than the %llu a reader accepts",
		               path, (long long)st.st_size, (unsigned long long)max);
	}
	b = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!b) {
		close(fd);
		return hv_fail(err, ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			free(b);
			close(fd);
			return hv_fail(err, e, "%s: read: %s", path,
			               n < 0 ? strerror(e) : "file shrank while read");
		}
		got += (size_t)n;
	}
	close(fd);
	*buf = b;
	*len = got;
	return 0;
}

char *ck_pack_path(const struct store *s, const struct blob_id *pack)
{
	char hex[STORE_ID_HEX + 1], *p;

	blob_id_hex(pack, hex);
	if (asprintf(&p, "%s/packs/%.2s/%s", s->path, hex, hex) < 0)
		return NULL;
	return p;
}

/* ---- the in-memory index ---- */

static size_t slot_of(const struct blob_id *id, size_t cap)
{
	uint64_t h;

	memcpy(&h, id->b, sizeof(h)); /* a SHA-256 is already uniformly spread */
	return (size_t)h & (cap - 1);
}

struct ck_slot *ck_lookup(struct store *s, const struct blob_id *id)
{
	size_t i;

	if (!s->cap)
		return NULL;
	for (i = slot_of(id, s->cap); s->tab[i].state != ENT_EMPTY; i = (i + 1) & (s->cap - 1))
		if (!memcmp(&s->tab[i].e.id, id, sizeof(*id)))
			return &s->tab[i];
	return NULL;
}

#define TAB_MMAP_MIN (2u << 20)

struct ck_slot *ck_tab_alloc(size_t cap)
{
	size_t bytes = cap * sizeof(struct ck_slot);
	void *p;

	if (bytes < TAB_MMAP_MIN)
		return calloc(cap, sizeof(struct ck_slot));
	/*
	 * A large table in huge pages: faulting it in 4 KiB at a time cost more than
	 * everything else store_open does (100 ms for 24 MiB on a nested-virtualised host,
	 * 3 ms with huge pages). Anonymous memory comes zeroed.
	 */
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, bytes, MADV_HUGEPAGE);
	return p;
}

void ck_tab_free(struct ck_slot *t, size_t cap)
{
	size_t bytes = cap * sizeof(struct ck_slot);

	if (!t)
		return;
	if (bytes < TAB_MMAP_MIN)
		free(t);
	else
		munmap(t, bytes);
}

/* Rehash into a table of @ncap slots (a power of two that holds every entry). */
static int rehash(struct store *s, size_t ncap, struct hv_error *err)
{
	struct ck_slot *nt = ck_tab_alloc(ncap);

	if (!nt)
		return hv_fail(err, ENOMEM, "%s: out of memory for the index", s->path);
	for (size_t i = 0; i < s->cap; i++) {
		size_t j;
		if (s->tab[i].state == ENT_EMPTY)
			continue;
		for (j = slot_of(&s->tab[i].e.id, ncap); nt[j].state != ENT_EMPTY;
		     j = (j + 1) & (ncap - 1))
			;
		nt[j] = s->tab[i];
	}
	ck_tab_free(s->tab, s->cap);
	s->tab = nt;
	s->cap = ncap;
	return 0;
}

static int grow(struct store *s, struct hv_error *err)
{
	return rehash(s, s->cap ? s->cap * 2 : 1024, err);
}

int ck_reserve(struct store *s, size_t n, struct hv_error *err)
{
	size_t ncap = s->cap ? s->cap : 1024;

	while ((s->count + n) * 2 > ncap)
		ncap *= 2;
	return ncap == s->cap ? 0 : rehash(s, ncap, err);
}

struct ck_slot *ck_insert(struct store *s, const struct ck_entry *e, uint8_t state,
                          struct hv_error *err)
{
	struct ck_slot *sl = ck_lookup(s, &e->id);
	size_t i;

	if (sl)
		return sl;
	if ((s->count + 1) * 2 > s->cap && grow(s, err) < 0)
		return NULL;
	for (i = slot_of(&e->id, s->cap); s->tab[i].state != ENT_EMPTY; i = (i + 1) & (s->cap - 1))
		;
	s->tab[i].e = *e;
	s->tab[i].state = state;
	s->count++;
	return &s->tab[i];
}

/* ---- create, open, close ---- */

static int mkdir_in(const char *base, const char *sub, struct hv_error *err)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/%s", base, sub);
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return hv_fail(err, errno, "%s: mkdir: %s", p, strerror(errno));
	return 0;
}

int store_create(const char *path, struct hv_error *err)
{
	uint8_t cfg[CONFIG_SIZE] = {0};
	char p[4096];

	/* 0700: the store holds guests' memory. */
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return hv_fail(err, errno, "%s: mkdir: %s", path, strerror(errno));
	snprintf(p, sizeof(p), "%s/config", path);
	if (access(p, F_OK) == 0)
		return hv_fail(err, EEXIST, "%s: a store already exists here", path);
	if (mkdir_in(path, "packs", err) < 0 || mkdir_in(path, "index", err) < 0 ||
	    mkdir_in(path, "manifests", err) < 0 || mkdir_in(path, "locks", err) < 0)
		return -1;
	for (int i = 0; i < 256; i++) {
		char sub[16];
		snprintf(sub, sizeof(sub), "packs/%02x", i);
		if (mkdir_in(path, sub, err) < 0)
			return -1;
	}
	snprintf(p, sizeof(p), "%s/packs", path);
	if (savefile_sync_dir(p, err) < 0)
		return -1;
	/* config last: a directory without one is not a store, whatever else it holds. */
	memcpy(cfg, CONFIG_MAGIC, 8);
	ck_put32(cfg + 8, STORE_FORMAT_VERSION);
	if (ck_write_atomic(path, "config", cfg, sizeof(cfg), true, err) < 0)
		return -1;
	return 0;
}

static int read_config(const char *path, struct hv_error *err)
{
	char p[4096];
	uint8_t *b;
	size_t len;
	uint32_t v;

	snprintf(p, sizeof(p), "%s/config", path);
	if (ck_read_file(p, 4096, &b, &len, err) < 0) {
		if (err && err->code == ENOENT)
			hv_fail(err, ENOENT, "%s: not a checkpoint store (no config)", path);
		return -1;
	}
	if (len < CONFIG_SIZE || memcmp(b, CONFIG_MAGIC, 8)) {
		free(b);
		return hv_fail(err, EINVAL, "%s: bad magic or size (%zu bytes)", p, len);
	}
	v = ck_get32(b + 8);
	free(b);
	if (v > STORE_FORMAT_VERSION)
		return hv_fail(err, ENOTSUP,
		               "%s: store format version %u is newer than this hv (%u)", path, v,
		               STORE_FORMAT_VERSION);
	if (v == 0)
		return hv_fail(err, EINVAL, "%s: version: 0 is not a format version", p);
	return 0;
}

int store_open(const char *path, struct store **out, struct hv_error *err)
{
	struct store_open_opts o = {.mode = STORE_READ};

	return store_open_opts(path, &o, out, err);
}

int store_open_writer(const char *path, struct store **out, struct hv_error *err)
{
	struct store_open_opts o = {.mode = STORE_WRITE, .wait_ms = STORE_LOCK_WAIT_MS};

	return store_open_opts(path, &o, out, err);
}

int store_open_opts(const char *path, const struct store_open_opts *o, struct store **out,
                    struct hv_error *err)
{
	struct store *s;
	int rc = 0;

	*out = NULL;
	if (read_config(path, err) < 0)
		return -1;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return hv_fail(err, ENOMEM, "%s: out of memory", path);
	}
	pthread_mutex_init(&s->mu, NULL);
	s->pack_fd = -1;
	for (unsigned i = 0; i < STORE_RD_FDS; i++)
		s->rd[i].fd = -1;
	s->pack_size = STORE_PACK_SIZE;
	s->zcap = ZSTD_compressBound(STORE_BLOB_MAX);
	s->cctx = ZSTD_createCCtx();
	s->dctx = ZSTD_createDCtx();
	s->zbuf = malloc(s->zcap);
	if (!s->cctx || !s->dctx || !s->zbuf) {
		store_close(s);
		return hv_fail(err, ENOMEM, "%s: out of memory", path);
	}
	/* The lock before the index: what a writer dedups against must stay (gc). */
	if (o->mode == STORE_WRITE)
		rc = lock_shared(s, o->wait_ms, o->on_wait, o->arg, err);
	else if (o->mode == STORE_MAINT)
		rc = store_lock_exclusive_wait(s, o->wait_ms, o->on_wait, o->arg, err);
	if (rc < 0 || index_load_all(s, err) < 0) {
		store_close(s);
		return -1;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	pack_abandon(s);
	if (s->locked)
		store_unlock(s, NULL);
	lock_shared_release(s);
	for (size_t i = 0; i < s->nbad; i++)
		free(s->bad_index[i]);
	free(s->bad_index);
	for (unsigned i = 0; i < STORE_RD_FDS; i++)
		if (s->rd[i].fd >= 0)
			close(s->rd[i].fd);
	ck_tab_free(s->tab, s->cap);
	free(s->pack_ents);
	free(s->unidx);
	free(s->zbuf);
	ZSTD_freeCCtx(s->cctx);
	ZSTD_freeDCtx(s->dctx);
	pthread_mutex_destroy(&s->mu);
	free(s->path);
	free(s);
}

const char *store_path(const struct store *s)
{
	return s->path;
}

void store_set_pack_size(struct store *s, uint64_t bytes)
{
	if (bytes < 1)
		bytes = 1;
	if (bytes > STORE_PACK_SIZE_MAX)
		bytes = STORE_PACK_SIZE_MAX;
	s->pack_size = bytes;
}

/* ---- put, get, flush ---- */

int store_put(struct store *s, const void *data, size_t len, struct blob_id *id,
              struct hv_error *err)
{
	int rc = 0;

	if (len > STORE_BLOB_MAX)
		return hv_fail(err, EINVAL, "%s: blob of %zu bytes, more than %u", s->path, len,
		               STORE_BLOB_MAX);
	if (len == STORE_PAGE_SIZE && !memcmp(data, zero_page, len)) {
		*id = STORE_ZERO_ID;
		return 0;
	}
	ck_sha256(data, len, id);
	pthread_mutex_lock(&s->mu);
	if (!ck_lookup(s, id)) {
		/* pack_add may begin a new pack (length 0): count from there, not the old one. */
		uint64_t before = s->pack_fd < 0 ? 0 : s->pack_len;

		rc = pack_add(s, id, data, len, err);
		if (rc == 0) {
			s->new_blobs++;
			s->new_bytes += s->pack_len - before;
		}
		if (rc == 0 && s->pack_len >= s->pack_size)
			rc = pack_seal(s, err);
		/* A half-written pack cannot be trusted: drop this session's unflushed blobs. */
		if (rc < 0)
			pack_abandon(s);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int store_flush(struct store *s, struct hv_error *err)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	rc = pack_seal(s, err);
	if (rc < 0)
		pack_abandon(s);
	if (rc == 0)
		rc = index_write_pending(s, err);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void store_put_stats(struct store *s, uint64_t *blobs, uint64_t *bytes)
{
	pthread_mutex_lock(&s->mu);
	*blobs = s->new_blobs;
	*bytes = s->new_bytes;
	pthread_mutex_unlock(&s->mu);
}

bool store_has(struct store *s, const struct blob_id *id)
{
	bool r;

	if (blob_id_is_zero(id))
		return true;
	pthread_mutex_lock(&s->mu);
	r = ck_lookup(s, id) != NULL;
	pthread_mutex_unlock(&s->mu);
	return r;
}

/* An fd of sealed pack @pack (at @path), from the handle's few open ones. Lock held. */
static int rd_open(struct store *s, const struct blob_id *pack, const char *path)
{
	unsigned i;
	int fd;

	for (i = 0; i < STORE_RD_FDS; i++)
		if (s->rd[i].fd >= 0 && !memcmp(&s->rd[i].pack, pack, sizeof(*pack)))
			return s->rd[i].fd;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	i = s->rd_next++ % STORE_RD_FDS;
	if (s->rd[i].fd >= 0)
		close(s->rd[i].fd);
	s->rd[i].pack = *pack;
	s->rd[i].fd = fd;
	return fd;
}

int store_get(struct store *s, const struct blob_id *id, void *buf, size_t cap, size_t *len,
              struct hv_error *err)
{
	char hex[STORE_ID_HEX + 1];
	struct ck_slot *sl;
	struct ck_entry e;
	char *pp = NULL;
	int fd, rc;

	if (blob_id_is_zero(id)) {
		if (cap < STORE_PAGE_SIZE)
			return hv_fail(err, ERANGE, "zero page: buffer of %zu bytes too small",
			               cap);
		memset(buf, 0, STORE_PAGE_SIZE);
		*len = STORE_PAGE_SIZE;
		return 0;
	}
	pthread_mutex_lock(&s->mu);
	sl = ck_lookup(s, id);
	if (!sl) {
		pthread_mutex_unlock(&s->mu);
		return hv_fail(err, ENOENT, "%s: blob %s is not in the index", s->path,
		               blob_id_hex(id, hex));
	}
	e = sl->e;
	if (sl->state == ENT_OPEN) {
		rc = pack_read_blob(s, s->pack_fd, s->pack_tmp, &e, buf, cap, err);
	} else {
		pp = ck_pack_path(s, &e.pack);
		fd = pp ? rd_open(s, &e.pack, pp) : -1;
		if (!pp)
			rc = hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		else if (fd < 0)
			rc = hv_fail(err, errno, "%s: blob %s: %s", pp, blob_id_hex(id, hex),
			             strerror(errno));
		else
			rc = pack_read_blob(s, fd, pp, &e, buf, cap, err);
	}
	pthread_mutex_unlock(&s->mu);
	free(pp);
	if (rc == 0)
		*len = e.rawlen;
	return rc;
}

/* ---- verify ---- */

struct vctx {
	struct store *s;
	store_report_fn report;
	void *arg;
	int problems;
	struct blob_id *packs; /* every pack the index names, sorted */
	bool *missing, *told;  /* per pack: file absent; reported for this manifest */
	size_t npacks;
};

static void vreport(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vreport(struct vctx *v, const char *fmt, ...)
{
	char msg[HV_ERROR_MSG + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->problems++;
	if (v->report)
		v->report(v->arg, msg);
}

static int idcmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct blob_id));
}

/* A blob a manifest names: indexed, in a pack that exists. */
static void vcheck_blob(struct vctx *v, const struct manifest *m, const struct blob_id *id,
                        const char *what)
{
	char hex[STORE_ID_HEX + 1], phex[STORE_ID_HEX + 1];
	struct ck_slot *sl;
	struct blob_id *pk;

	if (blob_id_is_zero(id))
		return;
	sl = ck_lookup(v->s, id);
	if (!sl) {
		vreport(v, "manifest %s: %s %s is not in the index", m->id, what,
		        blob_id_hex(id, hex));
		return;
	}
	pk = bsearch(&sl->e.pack, v->packs, v->npacks, sizeof(*v->packs), idcmp);
	if (pk && v->missing[pk - v->packs] && !v->told[pk - v->packs]) {
		v->told[pk - v->packs] = true;
		vreport(v, "manifest %s: needs missing pack %s", m->id,
		        blob_id_hex(&sl->e.pack, phex));
	}
}

static void verify_manifest(struct vctx *v, const char *id, uint8_t *chunk)
{
	char hex[STORE_ID_HEX + 1];
	struct manifest *m;
	struct hv_error e;

	if (manifest_read(v->s, id, &m, &e) < 0) {
		vreport(v, "%s", e.msg);
		return;
	}
	memset(v->told, 0, v->npacks * sizeof(*v->told));
	vcheck_blob(v, m, &m->state, "state blob");
	for (size_t c = 0; c < m->nchunks; c++) {
		uint64_t pages = m->ram_size / STORE_PAGE_SIZE - (uint64_t)c * MANIFEST_CHUNK_PAGES;
		size_t len;

		if (pages > MANIFEST_CHUNK_PAGES)
			pages = MANIFEST_CHUNK_PAGES;
		vcheck_blob(v, m, &m->chunks[c], "page-map chunk");
		if (!ck_lookup(v->s, &m->chunks[c]))
			continue;
		if (store_get(v->s, &m->chunks[c], chunk, STORE_BLOB_MAX, &len, &e) < 0) {
			vreport(v, "manifest %s: page-map chunk %zu: %s", m->id, c, e.msg);
			continue;
		}
		if (len != pages * 32) {
			vreport(v, "manifest %s: page-map chunk %zu (%s) holds %zu bytes, not %llu",
			        m->id, c, blob_id_hex(&m->chunks[c], hex), len,
			        (unsigned long long)pages * 32);
			continue;
		}
		for (uint64_t p = 0; p < pages; p++)
			vcheck_blob(v, m, (const struct blob_id *)(chunk + p * 32), "page");
	}
	manifest_free(m);
}

static void verify_pack_file(struct vctx *v, const char *path, const char *name, uint8_t *out)
{
	struct blob_id want, got;
	struct ck_entry *ents;
	struct hv_error e;
	uint8_t *buf;
	size_t len, n;

	if (blob_id_parse(name, &want) < 0)
		return; /* a temp file of a writer, or a stranger: not a pack */
	if (ck_read_file(path, PACK_FILE_MAX, &buf, &len, &e) < 0) {
		vreport(v, "%s", e.msg);
		return;
	}
	ck_sha256(buf, len, &got);
	if (memcmp(&got, &want, sizeof(got)))
		vreport(v, "pack %s: content does not match its name (damaged)", name);
	if (pack_parse(buf, len, path, &ents, &n, &e) < 0) {
		vreport(v, "%s", e.msg);
	} else {
		for (size_t i = 0; i < n; i++)
			if (pack_check_blob(v->s->dctx, buf, &ents[i], name, out, &e) < 0)
				vreport(v, "%s", e.msg);
		free(ents);
	}
	free(buf);
}

static int verify_read_data(struct vctx *v, uint8_t *out, struct hv_error *err)
{
	for (int i = 0; i < 256; i++) {
		char dir[4096], path[8192];
		struct dirent *d;
		DIR *dp;

		snprintf(dir, sizeof(dir), "%s/packs/%02x", v->s->path, i);
		dp = opendir(dir);
		if (!dp) {
			vreport(v, "%s: %s", dir, strerror(errno));
			continue;
		}
		while ((d = readdir(dp))) {
			if (d->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
			verify_pack_file(v, path, d->d_name, out);
		}
		closedir(dp);
	}
	return 0;
}

int store_verify(struct store *s, bool read_data, store_report_fn report, void *arg,
                 struct hv_error *err)
{
	struct vctx v = {.s = s, .report = report, .arg = arg};
	char(*ids)[MANIFEST_ID_LEN + 1] = NULL;
	char hex[STORE_ID_HEX + 1];
	uint8_t *buf = NULL;
	size_t nids = 0, n = 0;
	int rc = -1;

	for (size_t i = 0; i < s->nbad; i++)
		vreport(&v, "%s", s->bad_index[i]);
	v.packs = malloc((s->count + 1) * sizeof(*v.packs));
	buf = malloc(STORE_BLOB_MAX);
	if (!v.packs || !buf) {
		hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		goto out;
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->cap; i++)
		if (s->tab[i].state == ENT_INDEXED || s->tab[i].state == ENT_SEALED)
			v.packs[n++] = s->tab[i].e.pack;
	pthread_mutex_unlock(&s->mu);
	qsort(v.packs, n, sizeof(*v.packs), idcmp);
	for (size_t i = 0; i < n; i++)
		if (!v.npacks || memcmp(&v.packs[v.npacks - 1], &v.packs[i], sizeof(*v.packs)))
			v.packs[v.npacks++] = v.packs[i];
	v.missing = calloc(v.npacks + 1, sizeof(bool));
	v.told = calloc(v.npacks + 1, sizeof(bool));
	if (!v.missing || !v.told) {
		hv_fail(err, ENOMEM, "%s: out of memory", s->path);
		goto out;
	}
	for (size_t i = 0; i < v.npacks; i++) {
		char *pp = ck_pack_path(s, &v.packs[i]);
		if (pp && access(pp, F_OK) < 0 && errno == ENOENT) {
			v.missing[i] = true;
			vreport(&v, "pack %s: missing (listed in the index)",
			        blob_id_hex(&v.packs[i], hex));
		}
		free(pp);
	}
	if (manifest_list(s, &ids, &nids, err) < 0)
		goto out;
	for (size_t i = 0; i < nids; i++)
		verify_manifest(&v, ids[i], buf);
	if (read_data && verify_read_data(&v, buf, err) < 0)
		goto out;
	rc = v.problems;
out:
	free(ids);
	free(buf);
	free(v.packs);
	free(v.missing);
	free(v.told);
	return rc;
}
