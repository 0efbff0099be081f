/*
 * test_gc.c - gc, repack, rebuild-index and the locks, on real stores in /tmp.
 *
 * The promise under test: after checkpoints are deleted and gc runs, every checkpoint
 * left still reads back byte for byte, verify --read-data finds nothing, and the packs
 * take less room; a writer and maintenance never hold the store at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint/gc.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store.h"

#define PAGES 96
#define NCKPT 6
#define SHIFT 24 /* each checkpoint changes this many pages of the previous one */

static char root[] = "/tmp/hv-gc-test-XXXXXX";
static int seq;

static char *new_store(void)
{
	static char p[8][512];
	struct hv_error err;
	char *d = p[seq % 8];

	snprintf(d, 512, "%s/s%d", root, seq++);
	assert_int_equal(store_create(d, &err), 0);
	return d;
}

static struct store *open_mode(const char *d, enum store_mode mode, int wait_ms)
{
	struct store_open_opts o = {.mode = mode, .wait_ms = wait_ms};
	struct hv_error err;
	struct store *s;

	if (store_open_opts(d, &o, &s, &err) < 0)
		fail_msg("store_open_opts: %s", err.msg);
	return s;
}

/* Page @p of checkpoint @k: pages below SHIFT*k were rewritten by checkpoint k. */
static void page_of(int k, size_t p, uint8_t *out)
{
	uint32_t seed = (uint32_t)p * 7919u + 1;
	int gen = 0;

	for (int j = 1; j <= k; j++)
		if (p >= (size_t)(SHIFT * (j - 1)) % PAGES &&
		    p < (size_t)(SHIFT * (j - 1)) % PAGES + SHIFT)
			gen = j;
	if (p % 11 == 10) {
		memset(out, 0, STORE_PAGE_SIZE);
		return;
	}
	seed ^= (uint32_t)gen * 0x9e3779b9u;
	for (size_t i = 0; i < STORE_PAGE_SIZE; i++) {
		seed = seed * 1103515245u + 12345u;
		out[i] = (uint8_t)(seed >> 16);
	}
}

static void take(struct store *s, int k, char id[MANIFEST_ID_LEN + 1])
{
	struct manifest m = {.ram_size = PAGES * STORE_PAGE_SIZE,
	                     .time_ns = 1000000000ull * (k + 1)};
	struct blob_id map[PAGES];
	uint8_t page[STORE_PAGE_SIZE], state[64];
	struct hv_error err;

	for (size_t p = 0; p < PAGES; p++) {
		page_of(k, p, page);
		assert_int_equal(store_put(s, page, sizeof(page), &map[p], &err), 0);
	}
	m.nchunks = manifest_chunks(m.ram_size);
	m.chunks = calloc(m.nchunks, sizeof(*m.chunks));
	assert_int_equal(store_put(s, map, sizeof(map), &m.chunks[0], &err), 0);
	memset(state, k, sizeof(state));
	assert_int_equal(store_put(s, state, sizeof(state), &m.state, &err), 0);
	if (store_flush(s, &err) < 0)
		fail_msg("flush: %s", err.msg);
	snprintf(m.id, sizeof(m.id), "%08x%08x", k + 1, 0xabc0 + k);
	snprintf(m.vm, sizeof(m.vm), "vm");
	if (manifest_write(s, &m, &err) < 0)
		fail_msg("manifest_write: %s", err.msg);
	memcpy(id, m.id, MANIFEST_ID_LEN + 1);
	free(m.chunks);
}

/* Every page of checkpoint @k reads back as written. */
static void check_restores(struct store *s, const char *id, int k)
{
	uint8_t want[STORE_PAGE_SIZE], got[STORE_PAGE_SIZE];
	struct blob_id map[PAGES];
	struct manifest *m;
	struct hv_error err;
	size_t len;

	if (manifest_read(s, id, &m, &err) < 0)
		fail_msg("manifest_read: %s", err.msg);
	if (store_get(s, &m->chunks[0], map, sizeof(map), &len, &err) < 0)
		fail_msg("chunk: %s", err.msg);
	assert_int_equal(len, sizeof(map));
	for (size_t p = 0; p < PAGES; p++) {
		page_of(k, p, want);
		if (store_get(s, &map[p], got, sizeof(got), &len, &err) < 0)
			fail_msg("checkpoint %d page %zu: %s", k, p, err.msg);
		assert_memory_equal(got, want, sizeof(want));
	}
	manifest_free(m);
}

static void quiet(void *arg, const char *msg)
{
	(*(int *)arg)++;
	(void)msg;
}

static int verify(struct store *s)
{
	struct hv_error err;
	int n = 0, r;

	r = store_verify(s, true, quiet, &n, &err);
	assert_int_equal(r, n);
	return r;
}

static uint64_t pack_bytes(const char *d, int *count)
{
	char cmd[1024];
	unsigned long long b = 0;
	int c = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
	         "find %s/packs -type f ! -name '.*' -printf '%%s\\n' | awk '{s+=$1; n++} END "
	         "{print s+0, n+0}'",
	         d);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu %d", &b, &c), 2);
	pclose(f);
	if (count)
		*count = c;
	return b;
}

static struct store *populate(const char *d, char ids[NCKPT][MANIFEST_ID_LEN + 1])
{
	struct store *s = open_mode(d, STORE_WRITE, 0);

	store_set_pack_size(s, 48 * 1024); /* ~12 pages a pack: packs mix checkpoints */
	for (int k = 0; k < NCKPT; k++)
		take(s, k, ids[k]);
	store_close(s);
	return open_mode(d, STORE_MAINT, 0);
}

/* Delete half the checkpoints, gc: the rest read back exactly and the packs shrink. */
static void test_gc_keeps_every_survivor(void **st)
{
	char ids[NCKPT][MANIFEST_ID_LEN + 1];
	const char *d = new_store();
	struct gc_opts o = {.repack_pct = 50};
	struct store *s = populate(d, ids);
	struct gc_stats g, g2;
	struct hv_error err;
	uint64_t before, after;
	int npacks;

	before = pack_bytes(d, NULL);
	for (int k = 0; k < NCKPT; k += 2)
		assert_int_equal(manifest_delete(s, ids[k], &err), 0);
	assert_int_equal(manifest_delete(s, ids[0], &err), -1);
	assert_int_equal(err.code, ENOENT);
	/* A dry run changes nothing. */
	o.dry_run = true;
	if (store_gc(s, &o, &g, &err) < 0)
		fail_msg("gc --dry-run: %s", err.msg);
	assert_true(g.packs_deleted + g.packs_repacked > 0);
	assert_int_equal(pack_bytes(d, NULL), before);
	o.dry_run = false;
	if (store_gc(s, &o, &g, &err) < 0)
		fail_msg("gc: %s", err.msg);
	assert_int_equal(g.manifests, NCKPT / 2);
	store_close(s);

	after = pack_bytes(d, &npacks);
	assert_true(after < before);
	assert_int_equal(g.packs - g.packs_deleted - g.packs_repacked + g.packs_written,
	                 (uint64_t)npacks);
	s = open_mode(d, STORE_READ, 0);
	for (int k = 1; k < NCKPT; k += 2)
		check_restores(s, ids[k], k);
	assert_int_equal(verify(s), 0);
	store_close(s);

	/* Repack everything not fully live; then a second gc has nothing left to do. */
	s = open_mode(d, STORE_MAINT, 0);
	o.repack_pct = 100;
	if (store_gc(s, &o, &g, &err) < 0)
		fail_msg("gc 100%%: %s", err.msg);
	assert_true(g.packs_repacked > 0 && g.packs_written > 0);
	store_close(s);
	s = open_mode(d, STORE_MAINT, 0);
	if (store_gc(s, &o, &g2, &err) < 0)
		fail_msg("gc again: %s", err.msg);
	assert_int_equal(g2.packs_deleted + g2.packs_repacked, 0);
	assert_int_equal(g2.index_removed, 0);
	store_close(s);
	s = open_mode(d, STORE_READ, 0);
	for (int k = 1; k < NCKPT; k += 2)
		check_restores(s, ids[k], k);
	assert_int_equal(verify(s), 0);
	store_close(s);
}

/* Orphans of a killed writer (a pack no index names, temp files) are reclaimed. */
static void test_gc_reclaims_orphans(void **st)
{
	char ids[NCKPT][MANIFEST_ID_LEN + 1], p[1024];
	const char *d = new_store();
	struct gc_opts o = {.repack_pct = 50};
	struct store *s = populate(d, ids);
	uint8_t page[STORE_PAGE_SIZE];
	struct gc_stats g;
	struct hv_error err;
	struct blob_id id;
	pid_t dead;
	int fd, npacks, n2;

	store_close(s);
	/* A writer sealed a pack, then died before its index file. */
	s = open_mode(d, STORE_WRITE, 0);
	store_set_pack_size(s, 1);
	memset(page, 0x77, sizeof(page));
	assert_int_equal(store_put(s, page, sizeof(page), &id, &err), 0);
	store_close(s); /* unflushed: the sealed pack stays, no index names it */
	dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	snprintf(p, sizeof(p), "%s/packs/.tmp.%d.0badf00d", d, (int)dead);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, page, 100), 100);
	close(fd);
	snprintf(p, sizeof(p), "%s/index/.abc.tmp.%d.12345678", d, (int)dead);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	pack_bytes(d, &npacks);
	s = open_mode(d, STORE_MAINT, 0);
	if (store_gc(s, &o, &g, &err) < 0)
		fail_msg("gc: %s", err.msg);
	store_close(s);
	assert_true(g.packs_deleted >= 1);
	assert_int_equal(g.tmp_removed, 2);
	assert_int_equal(access(p, F_OK), -1);
	pack_bytes(d, &n2);
	assert_true(n2 < npacks);
	s = open_mode(d, STORE_READ, 0);
	for (int k = 0; k < NCKPT; k++)
		check_restores(s, ids[k], k);
	assert_int_equal(verify(s), 0);
	store_close(s);
}

static void truncate_first_index(const char *d)
{
	char dir[600], p[1200];
	struct dirent *e;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/index", d);
	dp = opendir(dir);
	assert_non_null(dp);
	while ((e = readdir(dp)))
		if (e->d_name[0] != '.')
			break;
	assert_non_null(e);
	snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
	closedir(dp);
	assert_int_equal(truncate(p, 100), 0);
}

/* A damaged index stops gc (it would delete packs it cannot see); rebuild-index fixes it. */
static void test_rebuild_index(void **st)
{
	char ids[NCKPT][MANIFEST_ID_LEN + 1];
	const char *d = new_store();
	struct gc_opts o = {.repack_pct = 50};
	struct store *s = populate(d, ids);
	struct reindex_stats rs;
	struct gc_stats g;
	struct hv_error err;
	int before;

	store_close(s);
	pack_bytes(d, &before);
	truncate_first_index(d);
	s = open_mode(d, STORE_MAINT, 0);
	assert_true(verify(s) > 0);
	assert_int_equal(store_gc(s, &o, &g, &err), -1);
	assert_non_null(strstr(err.msg, "rebuild-index"));
	if (store_rebuild_index(s, NULL, NULL, &rs, &err) < 0)
		fail_msg("rebuild-index: %s", err.msg);
	assert_int_equal(rs.packs, (uint64_t)before);
	assert_int_equal(rs.packs_bad, 0);
	assert_int_equal(rs.index_written, 1);
	store_close(s);
	s = open_mode(d, STORE_READ, 0);
	assert_int_equal(verify(s), 0);
	for (int k = 0; k < NCKPT; k++)
		check_restores(s, ids[k], k);
	store_close(s);
}

static int count_shared(const char *d)
{
	char dir[600];
	struct dirent *e;
	DIR *dp;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/locks", d);
	dp = opendir(dir);
	assert_non_null(dp);
	while ((e = readdir(dp)))
		n += !strncmp(e->d_name, "shared-", 7);
	closedir(dp);
	return n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writers share the store; maintenance waits for them, and they wait for it. */
static void test_locks(void **st)
{
	struct store_open_opts w0 = {.mode = STORE_WRITE}, m0 = {.mode = STORE_MAINT};
	const char *d = new_store();
	struct store *a, *b, *m;
	struct hv_error err;
	char p[1024];
	pid_t child;
	double t0;

	a = open_mode(d, STORE_WRITE, 0);
	b = open_mode(d, STORE_WRITE, 0); /* writers do not exclude each other */
	assert_int_equal(count_shared(d), 2);
	assert_int_equal(store_open_opts(d, &m0, &m, &err), -1);
	assert_int_equal(err.code, EBUSY);
	assert_non_null(strstr(err.msg, "checkpoint writers"));
	assert_int_equal(access(strcat(strcpy(p, d), "/locks/exclusive"), F_OK), -1);
	store_close(a);
	store_close(b);
	assert_int_equal(count_shared(d), 0);

	/* Maintenance (another process) holds the store: a writer gives up with wait 0... */
	{
		int pfd[2];
		char c;

		assert_int_equal(pipe(pfd), 0);
		child = fork();
		if (child == 0) {
			struct timespec ts = {0, 300000000};
			m = open_mode(d, STORE_MAINT, 0);
			assert_int_equal(write(pfd[1], "x", 1), 1);
			nanosleep(&ts, NULL);
			store_close(m);
			_exit(0);
		}
		assert_int_equal(read(pfd[0], &c, 1), 1);
		close(pfd[0]);
		close(pfd[1]);
	}
	assert_int_equal(store_open_opts(d, &w0, &a, &err), -1);
	assert_int_equal(err.code, EBUSY);
	assert_non_null(strstr(err.msg, "is locked by pid"));
	assert_int_equal(count_shared(d), 0);
	/* ... and with a wait, gets in once maintenance is done. */
	t0 = now();
	a = open_mode(d, STORE_WRITE, 5000);
	assert_true(now() - t0 > 0.1);
	waitpid(child, NULL, 0);
	store_close(a);

	/* A shared lock of a dead pid is stale: maintenance removes it and goes on. */
	child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	{
		char host[256] = "";
		FILE *f;

		gethostname(host, sizeof(host) - 1);
		snprintf(p, sizeof(p), "%s/locks/shared-%d-00000000", d, (int)child);
		f = fopen(p, "w");
		fprintf(f, "%d %s\n", (int)child, host);
		fclose(f);
	}
	m = open_mode(d, STORE_MAINT, 0);
	assert_int_equal(count_shared(d), 0);
	store_close(m);

	/* An exclusive lock of a dead pid (a killed prune) delays no writer. */
	{
		char host[256] = "";
		FILE *f;

		gethostname(host, sizeof(host) - 1);
		snprintf(p, sizeof(p), "%s/locks/exclusive", d);
		f = fopen(p, "w");
		fprintf(f, "%d %s\n", (int)child, host);
		fclose(f);
	}
	a = open_mode(d, STORE_WRITE, 0);
	store_close(a);
	m = open_mode(d, STORE_MAINT, 0); /* removes it and takes its own */
	store_close(m);
	assert_int_equal(access(p, F_OK), -1);
}

static int setup(void **st)
{
	if (!mkdtemp(root))
		return -1;
	return 0;
}

static int teardown(void **st)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gc_keeps_every_survivor),
	    cmocka_unit_test(test_gc_reclaims_orphans),
	    cmocka_unit_test(test_rebuild_index),
	    cmocka_unit_test(test_locks),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
