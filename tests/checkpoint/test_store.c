/*
 * test_store.c - the checkpoint store on real files in a temporary directory.
 *
 * Usage: test-checkpoint-store GOLDEN_DIR   (HV_STATE_REGEN=1 rewrites the golden files)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "checkpoint/store_int.h"

static const char *golden_dir;
static char root[] = "/tmp/hv-ckpt-test-XXXXXX";
static int seq;

/* A fresh store directory for each test. */
static char *new_store(void)
{
	static char p[4][512];
	struct hv_error err;
	char *d = p[seq % 4];

	snprintf(d, 512, "%s/s%d", root, seq++);
	assert_int_equal(store_create(d, &err), 0);
	return d;
}

static struct store *open_ok(const char *d)
{
	struct hv_error err;
	struct store *s;

	if (store_open(d, &s, &err) < 0)
		fail_msg("store_open: %s", err.msg);
	return s;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* Messages reported by store_verify, joined by newlines. */
struct reports {
	char text[16384];
	int n;
};

static void collect(void *arg, const char *msg)
{
	struct reports *r = arg;
	size_t l = strlen(r->text);

	snprintf(r->text + l, sizeof(r->text) - l, "%s\n", msg);
	r->n++;
}

static int verify(struct store *s, bool data, struct reports *r)
{
	struct hv_error err;
	int n;

	memset(r, 0, sizeof(*r));
	n = store_verify(s, data, collect, r, &err);
	if (n < 0)
		fail_msg("store_verify: %s", err.msg);
	assert_int_equal(n, r->n);
	return n;
}

/*
 * A checkpoint of a guest of @pages pages (every third one zero), committed as @id.
 * The page ids of chunk 0 go to @map if not NULL.
 */
static void checkpoint(struct store *s, const char *id, const char *parent, size_t pages,
                       uint32_t seed, uint64_t time_ns)
{
	struct manifest m = {.time_ns = time_ns, .ram_size = pages * STORE_PAGE_SIZE};
	uint8_t page[STORE_PAGE_SIZE], state[100];
	struct blob_id *map = calloc(pages, sizeof(*map));
	char tags[1][MANIFEST_TAG_MAX + 1] = {"nightly"};
	struct hv_error err;

	assert_non_null(map);
	for (size_t i = 0; i < pages; i++) {
		if (i % 3 == 2)
			memset(page, 0, sizeof(page));
		else
			fill(page, sizeof(page), seed + (uint32_t)i);
		assert_int_equal(store_put(s, page, sizeof(page), &map[i], &err), 0);
	}
	m.nchunks = manifest_chunks(m.ram_size);
	m.chunks = calloc(m.nchunks, sizeof(*m.chunks));
	for (size_t c = 0; c < m.nchunks; c++) {
		size_t n = pages - c * MANIFEST_CHUNK_PAGES;
		if (n > MANIFEST_CHUNK_PAGES)
			n = MANIFEST_CHUNK_PAGES;
		assert_int_equal(
		    store_put(s, map + c * MANIFEST_CHUNK_PAGES, n * 32, &m.chunks[c], &err), 0);
	}
	fill(state, sizeof(state), seed ^ 0x5a5a);
	assert_int_equal(store_put(s, state, sizeof(state), &m.state, &err), 0);
	if (store_flush(s, &err) < 0)
		fail_msg("store_flush: %s", err.msg);
	snprintf(m.id, sizeof(m.id), "%s", id);
	snprintf(m.vm, sizeof(m.vm), "vm-%u", seed);
	if (parent)
		snprintf(m.parent, sizeof(m.parent), "%s", parent);
	m.ntags = 1;
	m.tags = tags;
	if (manifest_write(s, &m, &err) < 0)
		fail_msg("manifest_write: %s", err.msg);
	free(m.chunks);
	free(map);
}

/* The one file in @dir/@sub/ (recursing one level for packs/xx/), or fail. */
static void only_file(const char *dir, const char *sub, char *out, size_t cap)
{
	char cmd[1024];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "find %s/%s -type f ! -name '.*' | sort", dir, sub);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)cap, f));
	out[strcspn(out, "\n")] = '\0';
	pclose(f);
}

static int count_files(const char *dir, const char *sub)
{
	char cmd[1024], line[1024];
	int n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "find %s/%s -type f", dir, sub);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n++;
	pclose(f);
	return n;
}

/* ---- tests ---- */

static void test_create_open_version(void **st)
{
	char *d = new_store(), p[600];
	struct hv_error err;
	struct store *s;
	uint8_t cfg[16];
	FILE *f;

	s = open_ok(d);
	store_close(s);
	assert_int_equal(store_create(d, &err), -1);
	assert_int_equal(err.code, EEXIST);

	snprintf(p, sizeof(p), "%s/config", d);
	f = fopen(p, "r+b");
	assert_non_null(f);
	assert_int_equal(fread(cfg, 1, 16, f), 16);
	ck_put32(cfg + 8, 2);
	rewind(f);
	assert_int_equal(fwrite(cfg, 1, 16, f), 16);
	fclose(f);
	assert_int_equal(store_open(d, &s, &err), -1);
	assert_null(s);
	snprintf(p, sizeof(p), "%s: store format version 2 is newer than this hv (1)", d);
	assert_string_equal(err.msg, p);

	snprintf(p, sizeof(p), "%s/nothing", root);
	assert_int_equal(store_open(p, &s, &err), -1);
	assert_non_null(strstr(err.msg, "not a checkpoint store"));
}

static void test_put_get_dedup(void **st)
{
	char *d = new_store();
	uint8_t a[STORE_PAGE_SIZE], b[STORE_PAGE_SIZE], z[STORE_PAGE_SIZE] = {0}, out[8192];
	struct blob_id ia, ia2, ib, iz, big_id;
	uint8_t *big = malloc(STORE_BLOB_MAX + 1);
	struct ck_entry *ents;
	struct hv_error err;
	char pack[1024];
	struct store *s = open_ok(d);
	uint8_t *pbuf;
	size_t len, n;

	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	assert_int_equal(store_put(s, a, sizeof(a), &ia, &err), 0);
	assert_int_equal(store_put(s, a, sizeof(a), &ia2, &err), 0);
	assert_memory_equal(&ia, &ia2, sizeof(ia));
	assert_int_equal(store_put(s, b, sizeof(b), &ib, &err), 0);
	assert_int_equal(store_put(s, z, sizeof(z), &iz, &err), 0);
	assert_true(blob_id_is_zero(&iz));
	assert_int_equal(store_put(s, big, STORE_BLOB_MAX + 1, &big_id, &err), -1);
	free(big);
	/* readable before the flush, from the open pack */
	assert_int_equal(store_get(s, &ia, out, sizeof(out), &len, &err), 0);
	assert_int_equal(len, sizeof(a));
	assert_memory_equal(out, a, sizeof(a));
	assert_int_equal(store_flush(s, &err), 0);
	store_close(s);

	/* one pack holding exactly two blobs: the repeat and the zero page are not stored */
	assert_int_equal(count_files(d, "packs"), 1);
	only_file(d, "packs", pack, sizeof(pack));
	assert_int_equal(ck_read_file(pack, PACK_FILE_MAX, &pbuf, &len, &err), 0);
	assert_int_equal(pack_parse(pbuf, len, pack, &ents, &n, &err), 0);
	assert_int_equal(n, 2);
	free(ents);
	free(pbuf);

	s = open_ok(d);
	assert_true(store_has(s, &ia));
	assert_int_equal(store_put(s, a, sizeof(a), &ia2, &err), 0);
	assert_int_equal(store_flush(s, &err), 0);
	assert_int_equal(count_files(d, "packs"), 1); /* dedup against the loaded index */
	assert_int_equal(store_get(s, &ib, out, sizeof(out), &len, &err), 0);
	assert_memory_equal(out, b, sizeof(b));
	assert_int_equal(store_get(s, &iz, out, sizeof(out), &len, &err), 0);
	assert_int_equal(len, STORE_PAGE_SIZE);
	assert_memory_equal(out, z, sizeof(z));
	assert_int_equal(store_get(s, &ia, out, 100, &len, &err), -1);
	assert_int_equal(err.code, ERANGE);
	ia.b[0] ^= 1;
	assert_int_equal(store_get(s, &ia, out, sizeof(out), &len, &err), -1);
	assert_int_equal(err.code, ENOENT);
	store_close(s);
}

static void test_small_packs(void **st)
{
	char *d = new_store();
	struct store *s = open_ok(d);
	uint8_t page[STORE_PAGE_SIZE], out[STORE_PAGE_SIZE];
	struct blob_id ids[20];
	struct hv_error err;
	size_t len;

	store_set_pack_size(s, 3 * STORE_PAGE_SIZE); /* random pages do not compress */
	for (int i = 0; i < 20; i++) {
		fill(page, sizeof(page), 100 + (uint32_t)i);
		assert_int_equal(store_put(s, page, sizeof(page), &ids[i], &err), 0);
	}
	assert_int_equal(store_flush(s, &err), 0);
	store_close(s);
	assert_true(count_files(d, "packs") >= 6);
	assert_int_equal(count_files(d, "index"), 1);
	s = open_ok(d);
	for (int i = 0; i < 20; i++) {
		fill(page, sizeof(page), 100 + (uint32_t)i);
		assert_int_equal(store_get(s, &ids[i], out, sizeof(out), &len, &err), 0);
		assert_memory_equal(out, page, sizeof(page));
	}
	store_close(s);
}

static void test_manifest_commit(void **st)
{
	char *d = new_store();
	struct store *s = open_ok(d);
	char(*ids)[MANIFEST_ID_LEN + 1];
	struct manifest *m, bad = {0};
	uint8_t page[STORE_PAGE_SIZE];
	struct reports r;
	struct hv_error err;
	size_t n;

	checkpoint(s, "00000001aaaaaaaa", NULL, 5000, 7, 1000000001);
	checkpoint(s, "00000002bbbbbbbb", "00000001aaaaaaaa", 5000, 7, 2000000002);
	/* a manifest naming an unflushed blob is refused */
	fill(page, sizeof(page), 99);
	assert_int_equal(store_put(s, page, sizeof(page), &bad.state, &err), 0);
	snprintf(bad.id, sizeof(bad.id), "00000003cccccccc");
	assert_int_equal(manifest_write(s, &bad, &err), -1);
	assert_int_equal(err.code, ENOENT);
	store_close(s);

	s = open_ok(d);
	assert_int_equal(manifest_list(s, &ids, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0], "00000001aaaaaaaa");
	assert_string_equal(ids[1], "00000002bbbbbbbb");
	free(ids);
	assert_int_equal(manifest_read(s, "00000002bbbbbbbb", &m, &err), 0);
	assert_string_equal(m->vm, "vm-7");
	assert_string_equal(m->parent, "00000001aaaaaaaa");
	assert_int_equal(m->time_ns, 2000000002);
	assert_int_equal(m->ram_size, 5000 * STORE_PAGE_SIZE);
	assert_int_equal(m->nchunks, 2);
	assert_int_equal(m->ntags, 1);
	assert_string_equal(m->tags[0], "nightly");
	manifest_free(m);
	/* the same pages twice: the second checkpoint added no page data, only its manifest */
	assert_int_equal(verify(s, true, &r), 0);
	assert_int_equal(manifest_read(s, "0123456789abcdef", &m, &err), -1);
	assert_int_equal(err.code, ENOENT);
	assert_int_equal(manifest_read(s, "../config", &m, &err), -1);
	store_close(s);
}

static void test_crash_invisible(void **st)
{
	char *d = new_store(), p[600];
	struct store *s = open_ok(d);
	char(*ids)[MANIFEST_ID_LEN + 1];
	uint8_t page[STORE_PAGE_SIZE];
	struct blob_id id;
	struct reports r;
	struct hv_error err;
	size_t n;

	checkpoint(s, "00000001aaaaaaaa", NULL, 10, 1, 1);
	/* flushed but never committed: like a writer killed before its manifest */
	for (int i = 0; i < 5; i++) {
		fill(page, sizeof(page), 500 + (uint32_t)i);
		assert_int_equal(store_put(s, page, sizeof(page), &id, &err), 0);
	}
	assert_int_equal(store_flush(s, &err), 0);
	/* put, never flushed: its temp pack goes at close */
	fill(page, sizeof(page), 600);
	assert_int_equal(store_put(s, page, sizeof(page), &id, &err), 0);
	store_close(s);
	/* and the leftovers of a writer killed mid-write */
	snprintf(p, sizeof(p), "%s/packs/.tmp.99999.deadbeef", d);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	snprintf(p, sizeof(p), "%s/manifests/.00000002bbbbbbbb.tmp.9.1", d);
	close(open(p, O_CREAT | O_WRONLY, 0600));

	s = open_ok(d);
	assert_int_equal(manifest_list(s, &ids, &n, &err), 0);
	assert_int_equal(n, 1);
	free(ids);
	assert_false(store_has(s, &id));
	assert_int_equal(verify(s, true, &r), 0);
	store_close(s);
}

static void flip_byte(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	uint8_t c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x40;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static void test_damage_pack_byte(void **st)
{
	char *d = new_store(), pack[1024], hex[STORE_ID_HEX + 1];
	struct store *s = open_ok(d);
	struct ck_entry *ents;
	struct hv_error err;
	struct reports r;
	uint8_t *buf;
	size_t len, n;

	checkpoint(s, "00000001aaaaaaaa", NULL, 4, 3, 1);
	store_close(s);
	only_file(d, "packs", pack, sizeof(pack));
	assert_int_equal(ck_read_file(pack, PACK_FILE_MAX, &buf, &len, &err), 0);
	assert_int_equal(pack_parse(buf, len, pack, &ents, &n, &err), 0);
	/* the middle of the first blob's compressed bytes */
	flip_byte(pack, (long)(ents[0].off + ents[0].clen / 2));
	blob_id_hex(&ents[0].id, hex);
	free(ents);
	free(buf);

	s = open_ok(d);
	assert_int_equal(verify(s, false, &r), 0); /* structure alone cannot see it */
	assert_true(verify(s, true, &r) >= 2);
	assert_non_null(strstr(r.text, hex));
	assert_non_null(strstr(r.text, strrchr(pack, '/') + 1));
	assert_non_null(strstr(r.text, "does not match its name"));
	store_close(s);
}

static void test_damage_index_truncated(void **st)
{
	char *d = new_store(), idx[1024];
	struct store *s = open_ok(d);
	struct manifest *m;
	struct hv_error err;
	struct reports r;
	uint8_t out[STORE_BLOB_MAX];
	size_t len;

	checkpoint(s, "00000001aaaaaaaa", NULL, 4, 3, 1);
	store_close(s);
	only_file(d, "index", idx, sizeof(idx));
	assert_int_equal(truncate(idx, 100), 0);
	s = open_ok(d); /* still opens: the damage is reported, not fatal */
	assert_true(verify(s, false, &r) >= 2);
	assert_non_null(strstr(r.text, strrchr(idx, '/') + 1));
	assert_non_null(strstr(r.text, "not in the index"));
	assert_int_equal(manifest_read(s, "00000001aaaaaaaa", &m, &err), 0);
	assert_int_equal(store_get(s, &m->state, out, sizeof(out), &len, &err), -1);
	assert_int_equal(err.code, ENOENT);
	manifest_free(m);
	store_close(s);
}

static void test_damage_pack_missing(void **st)
{
	char *d = new_store(), pack[1024], *name;
	struct store *s = open_ok(d);
	struct reports r;

	checkpoint(s, "00000001aaaaaaaa", NULL, 4, 3, 1);
	checkpoint(s, "00000002bbbbbbbb", NULL, 4, 3, 2); /* same pages: same pack */
	store_close(s);
	only_file(d, "packs", pack, sizeof(pack));
	name = strrchr(pack, '/') + 1;
	assert_int_equal(unlink(pack), 0);
	s = open_ok(d);
	assert_true(verify(s, false, &r) >= 3);
	assert_non_null(strstr(r.text, name));
	assert_non_null(strstr(r.text, "manifest 00000001aaaaaaaa: needs missing pack"));
	assert_non_null(strstr(r.text, "manifest 00000002bbbbbbbb: needs missing pack"));
	store_close(s);
}

static void write_lock(const char *d, int pid, const char *host)
{
	char p[600];
	FILE *f;

	snprintf(p, sizeof(p), "%s/locks/exclusive", d);
	f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "%d %s\n", pid, host);
	fclose(f);
}

static void test_locks(void **st)
{
	char *d = new_store(), host[256] = "";
	struct store *s = open_ok(d), *s2 = open_ok(d);
	struct hv_error err;
	pid_t dead;

	gethostname(host, sizeof(host) - 1);
	/* two handles: the second is refused while the first holds it */
	assert_int_equal(store_lock_exclusive(s, &err), 0);
	assert_int_equal(store_lock_exclusive(s2, &err), -1);
	assert_int_equal(err.code, EBUSY);
	assert_non_null(strstr(err.msg, "locked by pid"));
	assert_int_equal(store_unlock(s, &err), 0);
	assert_int_equal(store_lock_exclusive(s2, &err), 0);
	assert_int_equal(store_unlock(s2, &err), 0);

	/* stale: a pid that has exited, on this host */
	dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	write_lock(d, dead, host);
	assert_int_equal(store_lock_exclusive(s, &err), 0);
	store_close(s); /* releases it */

	/* live: our parent on this host; and any pid on another host */
	write_lock(d, getppid(), host);
	assert_int_equal(store_lock_exclusive(s2, &err), -1);
	assert_int_equal(err.code, EBUSY);
	write_lock(d, dead, "some-other-host");
	assert_int_equal(store_lock_exclusive(s2, &err), -1);
	assert_non_null(strstr(err.msg, "some-other-host"));
	write_lock(d, 0, "");
	assert_int_equal(store_lock_exclusive(s2, &err), -1);
	assert_non_null(strstr(err.msg, "unreadable lock file"));
	store_close(s2);
}

/* ---- golden files: a tiny deterministic store, byte for byte ---- */

static void golden_check(const char *path, const char *gold)
{
	char g[1024];
	uint8_t *a, *b;
	size_t la, lb;
	struct hv_error err;

	snprintf(g, sizeof(g), "%s/%s", golden_dir, gold);
	assert_int_equal(ck_read_file(path, 1 << 24, &a, &la, &err), 0);
	if (getenv("HV_STATE_REGEN")) {
		FILE *f = fopen(g, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(a, 1, la, f), la);
		fclose(f);
		fprintf(stderr, "wrote %s (%zu bytes)\n", g, la);
	}
	if (ck_read_file(g, 1 << 24, &b, &lb, &err) < 0)
		fail_msg("%s (HV_STATE_REGEN=1 writes it)", err.msg);
	if (la != lb || memcmp(a, b, la))
		fail_msg("%s differs from %s: the on-disk format changed (bump its version and "
		         "regenerate with HV_STATE_REGEN=1)",
		         path, g);
	free(a);
	free(b);
}

static void test_golden(void **st)
{
	char *d = new_store(), p[1024];
	struct store *s = open_ok(d);
	struct manifest *m;
	struct hv_error err;
	uint8_t *buf;
	size_t len;

	checkpoint(s, "0000000100000001", NULL, 3, 42, 1000000000);
	store_close(s);
	only_file(d, "packs", p, sizeof(p));
	golden_check(p, "pack.bin");
	only_file(d, "index", p, sizeof(p));
	golden_check(p, "index.bin");
	snprintf(p, sizeof(p), "%s/manifests/0000000100000001", d);
	golden_check(p, "manifest.bin");
	/* and the golden manifest still parses to what it holds */
	snprintf(p, sizeof(p), "%s/manifest.bin", golden_dir);
	assert_int_equal(ck_read_file(p, 1 << 20, &buf, &len, &err), 0);
	assert_int_equal(manifest_parse(buf, len, p, "0000000100000001", &m, &err), 0);
	assert_string_equal(m->vm, "vm-42");
	assert_int_equal(m->ram_size, 3 * STORE_PAGE_SIZE);
	manifest_free(m);
	free(buf);
}

/* Hostile manifests fail with one line naming the file. */
static void test_manifest_hostile(void **st)
{
	struct manifest m0 = {.id = "0000000100000001", .vm = "x", .ram_size = 4096, .nchunks = 1};
	struct blob_id c = {{1}};
	struct manifest *m;
	struct hv_error err;
	uint8_t *buf;
	size_t len;

	m0.chunks = &c;
	assert_int_equal(manifest_encode(&m0, &buf, &len, &err), 0);
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(manifest_parse(buf, cut, "m", NULL, &m, &err), -1);
		assert_non_null(strstr(err.msg, "m: "));
		assert_null(strchr(err.msg, '\n'));
	}
	assert_int_equal(manifest_parse(buf, len, "m", "0000000100000002", &m, &err), -1);
	assert_non_null(strstr(err.msg, "not its name"));
	free(buf);
	m0.nchunks = 2;
	assert_int_equal(manifest_encode(&m0, &buf, &len, &err), -1);
}

static int setup(void **st)
{
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **st)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_open_version),
	    cmocka_unit_test(test_put_get_dedup),
	    cmocka_unit_test(test_small_packs),
	    cmocka_unit_test(test_manifest_commit),
	    cmocka_unit_test(test_crash_invisible),
	    cmocka_unit_test(test_damage_pack_byte),
	    cmocka_unit_test(test_damage_index_truncated),
	    cmocka_unit_test(test_damage_pack_missing),
	    cmocka_unit_test(test_locks),
	    cmocka_unit_test(test_golden),
	    cmocka_unit_test(test_manifest_hostile),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
		return 2;
	}
	golden_dir = argv[1];
	return cmocka_run_group_tests(tests, setup, teardown);
}
