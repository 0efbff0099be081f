/*
 * lock.c - the store's locks: shared ones for checkpoint writers, one exclusive one for
 * maintenance (prune, gc, delete, rebuild-index).
 *
 * restic's two-flag protocol on plain files. A writer first registers
 * locks/shared-PID-RAND and only then looks at locks/exclusive; maintenance first
 * installs locks/exclusive and only then looks for shared locks. Whichever of the two
 * comes second sees the other's file and backs off (the writer drops its shared lock and
 * waits; maintenance waits for the shared locks to go), so a writer's view of the index
 * can never be invalidated by a gc that deletes packs under it. Every lock file holds
 * "PID HOSTNAME\n"; one whose host is this host and whose pid is dead is stale: ignored,
 * and removed by maintenance. docs/checkpoint-store.md, "Locks".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/store_int.h"

#define LOCK_POLL_MS  100
#define LOCK_FILE_MAX 4096

int lock_parse(const uint8_t *buf, size_t len, int *pid, char host[LOCK_HOST_MAX + 1],
               struct hv_error *err)
{
	size_t i = 0, h = 0;
	long v = 0;

	/* "PID HOSTNAME\n": digits, one space, 1..255 printable non-space bytes, newline. */
	while (i < len && buf[i] >= '0' && buf[i] <= '9' && i < 9)
		v = v * 10 + (buf[i++] - '0');
	if (i == 0 || v <= 0 || i >= len || buf[i] != ' ')
		return hv_fail(err, EINVAL, "lock: no pid at the start");
	i++;
	while (i < len && buf[i] > ' ' && buf[i] < 0x7f && h < LOCK_HOST_MAX)
		host[h++] = (char)buf[i++];
	host[h] = '\0';
	if (h == 0 || i + 1 != len || buf[i] != '\n')
		return hv_fail(err, EINVAL, "lock: the host name is not one word then a newline");
	*pid = (int)v;
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap(void)
{
	struct timespec ts = {0, LOCK_POLL_MS * 1000000L};

	nanosleep(&ts, NULL);
}

static void this_host(char host[LOCK_HOST_MAX + 1])
{
	memset(host, 0, LOCK_HOST_MAX + 1);
	if (gethostname(host, LOCK_HOST_MAX) < 0 || !host[0])
		snprintf(host, LOCK_HOST_MAX + 1, "localhost");
	for (char *p = host; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			*p = '_';
}

enum { LK_GONE, LK_STALE, LK_LIVE };

/*
 * The state of lock file @path: gone, stale (this host, pid dead), or live. An
 * unreadable one counts as live (a person must look at it): -1 with @err naming it.
 */
static int lock_state(const char *path, int *pid, char host[LOCK_HOST_MAX + 1],
                      struct hv_error *err)
{
	char me[LOCK_HOST_MAX + 1];
	struct hv_error e;
	uint8_t *b;
	size_t len;
	int rc;

	if (ck_read_file(path, LOCK_FILE_MAX, &b, &len, &e) < 0) {
		if (e.code == ENOENT)
			return LK_GONE;
		return hv_fail(err, EBUSY, "%s: %s", path, e.msg);
	}
	rc = lock_parse(b, len, pid, host, &e);
	free(b);
	if (rc < 0)
		return hv_fail(err, EBUSY,
		               "%s: unreadable lock file; remove it if no prune or gc runs", path);
	this_host(me);
	/* Stale only when we can tell: a lock of another host may well be live. */
	if (!strcmp(host, me) && kill(*pid, 0) < 0 && errno == ESRCH)
		return LK_STALE;
	return LK_LIVE;
}

static int lock_body(char *buf, size_t n)
{
	char host[LOCK_HOST_MAX + 1];

	this_host(host);
	return snprintf(buf, n, "%d %s\n", (int)getpid(), host);
}

/*
 * One attempt at locks/exclusive: 0, or -1 with EBUSY (live holder) or another error.
 * Removing a stale lock is read, check, unlink: two processes of this host doing that at
 * once could each unlink a lock the other had just taken, so the attempt holds flock()
 * on locks/ (stale locks are only ever this host's, and flock is reliable locally).
 */
static int try_exclusive(struct store *s, struct hv_error *err)
{
	char dir[4096], p[4200], body[320], host[LOCK_HOST_MAX + 1];
	int pid = 0, dfd, rc = -1;

	snprintf(dir, sizeof(dir), "%s/locks", s->path);
	snprintf(p, sizeof(p), "%s/exclusive", dir);
	lock_body(body, sizeof(body));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
	while (flock(dfd, LOCK_EX) < 0 && errno == EINTR)
		;
	/* Two tries: the second after removing a stale lock. */
	for (int attempt = 0; attempt < 2; attempt++) {
		int st;

		if (ck_write_atomic(dir, "exclusive", body, strlen(body), true, err) == 0) {
			s->locked = true;
			rc = 0;
			goto out;
		}
		if (!err || err->code != EEXIST)
			goto out;
		st = lock_state(p, &pid, host, err);
		if (st < 0)
			goto out;
		if (st == LK_LIVE) {
			hv_fail(err, EBUSY,
			        "store %s is locked by pid %d on %s (prune or gc); try again",
			        s->path, pid, host);
			goto out;
		}
		if (st == LK_STALE && unlink(p) < 0 && errno != ENOENT) {
			hv_fail(err, errno, "%s: removing stale lock: %s", p, strerror(errno));
			goto out;
		}
	}
	hv_fail(err, EBUSY, "store %s: lock taken by another process meanwhile", s->path);
out:
	close(dfd); /* releases the flock */
	return rc;
}

/*
 * The live shared locks (stale ones are removed): their number, the first holder in
 * @pid/@host; -1 if locks/ cannot be read.
 */
static int live_shared(struct store *s, int *pid, char host[LOCK_HOST_MAX + 1],
                       struct hv_error *err)
{
	char dir[4096], p[4400];
	struct dirent *d;
	int n = 0;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/locks", s->path);
	dp = opendir(dir);
	if (!dp)
		return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
	while ((d = readdir(dp))) {
		char h[LOCK_HOST_MAX + 1];
		struct hv_error e;
		int st, q = 0;

		if (strncmp(d->d_name, "shared-", 7))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
		st = lock_state(p, &q, h, &e);
		if (st == LK_STALE) {
			unlink(p);
			continue;
		}
		if (st == LK_GONE)
			continue;
		if (n++ == 0) {
			*pid = q;
			snprintf(host, LOCK_HOST_MAX + 1, "%s", st < 0 ? "(unreadable)" : h);
		}
	}
	closedir(dp);
	return n;
}

static void say_once(bool *said, store_wait_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say_once(bool *said, store_wait_fn fn, void *arg, const char *fmt, ...)
{
	char msg[HV_ERROR_MSG];
	va_list ap;

	if (*said || !fn)
		return;
	*said = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn(arg, msg);
}

int store_lock_exclusive_wait(struct store *s, int wait_ms, store_wait_fn on_wait, void *arg,
                              struct hv_error *err)
{
	uint64_t deadline = now_ms() + (wait_ms > 0 ? (uint64_t)wait_ms : 0);
	char host[LOCK_HOST_MAX + 1];
	bool said = false;
	int pid = 0, n;

	if (s->locked)
		return 0;
	while (try_exclusive(s, err) < 0) {
		if (!err || err->code != EBUSY || now_ms() >= deadline)
			return -1;
		say_once(&said, on_wait, arg, "%s; waiting up to %d s", err->msg, wait_ms / 1000);
		nap();
	}
	said = false;
	/* Exclusive is ours: no new writer starts. Let those already in finish. */
	while ((n = live_shared(s, &pid, host, err)) != 0) {
		if (n < 0 || now_ms() >= deadline) {
			if (n > 0)
				hv_fail(
				    err, EBUSY,
				    "store %s is in use by %d checkpoint writer%s (pid %d on %s); "
				    "try again",
				    s->path, n, n == 1 ? "" : "s", pid, host);
			store_unlock(s, NULL);
			return -1;
		}
		say_once(&said, on_wait, arg,
		         "store %s: waiting for %d checkpoint writer%s (pid %d on %s) to finish",
		         s->path, n, n == 1 ? "" : "s", pid, host);
		nap();
	}
	return 0;
}

int store_lock_exclusive(struct store *s, struct hv_error *err)
{
	return store_lock_exclusive_wait(s, 0, NULL, NULL, err);
}

int store_unlock(struct store *s, struct hv_error *err)
{
	char p[4096];

	if (!s->locked)
		return 0;
	s->locked = false;
	snprintf(p, sizeof(p), "%s/locks/exclusive", s->path);
	if (unlink(p) < 0)
		return hv_fail(err, errno, "%s: %s", p, strerror(errno));
	return 0;
}

int lock_shared(struct store *s, int wait_ms, store_wait_fn on_wait, void *arg,
                struct hv_error *err)
{
	uint64_t deadline = now_ms() + (wait_ms > 0 ? (uint64_t)wait_ms : 0);
	char dir[4096], p[4200], body[320], host[LOCK_HOST_MAX + 1];
	bool said = false;

	snprintf(dir, sizeof(dir), "%s/locks", s->path);
	snprintf(p, sizeof(p), "%s/exclusive", dir);
	lock_body(body, sizeof(body));
	for (;;) {
		char name[64], sp[4300];
		uint32_t r = 0;
		int st, pid = 0;

		if (getrandom(&r, sizeof(r), 0) < 0)
			r = (uint32_t)now_ms();
		snprintf(name, sizeof(name), "shared-%d-%08x", (int)getpid(), r);
		if (ck_write_atomic(dir, name, body, strlen(body), true, err) < 0)
			return -1;
		/* Registered first, then the check: see the top of this file. */
		st = lock_state(p, &pid, host, err);
		/* A stale one is as good as gone; maintenance removes it (under flock). */
		if (st == LK_STALE)
			st = LK_GONE;
		if (st == LK_GONE) {
			s->shared = strdup(name);
			if (!s->shared) {
				snprintf(sp, sizeof(sp), "%s/%s", dir, name);
				unlink(sp);
				return hv_fail(err, ENOMEM, "%s: out of memory", s->path);
			}
			return 0;
		}
		snprintf(sp, sizeof(sp), "%s/%s", dir, name);
		unlink(sp);
		if (st == LK_LIVE)
			hv_fail(err, EBUSY,
			        "store %s is locked by pid %d on %s (prune or gc); try again",
			        s->path, pid, host);
		if (now_ms() >= deadline)
			return -1;
		say_once(&said, on_wait, arg, "%s; waiting up to %d s", err ? err->msg : "locked",
		         wait_ms / 1000);
		nap();
	}
}

void lock_shared_release(struct store *s)
{
	char p[4400];

	if (!s->shared)
		return;
	snprintf(p, sizeof(p), "%s/locks/%s", s->path, s->shared);
	unlink(p);
	free(s->shared);
	s->shared = NULL;
}
