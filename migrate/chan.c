/*
 * chan.c - one migration connection: addresses, sockets, io_uring, buffering.
 *
 * Every socket operation is one io_uring request, linked to a timeout and raced against a
 * poll on the channel's abort eventfd. So a deadline, or chan_abort() from another thread,
 * ends any wait promptly, without signals, non-blocking sockets or a poll loop of our own,
 * and one function (uring_run) gives every operation the same timeout and abort behaviour.
 *
 * TLS (chan_tls.c) runs on memory BIOs rather than on the socket: OpenSSL encrypts into a
 * buffer that goes out through chan_net_send, and decrypts what chan_net_recv brought in.
 * That keeps io_uring the only thing that touches the socket, so plaintext and TLS share
 * the timeouts, the abort and the byte counts, and no OpenSSL call can ever block.
 *
 * Reads are buffered (CHAN_BUF) so the 16-byte record headers of the state stream cost no
 * system call; reads at least that large go straight into the caller's memory, and
 * plaintext writes are sent from the caller's buffer without a copy.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "migrate/chan.h"

#define CHAN_BUF (256u << 10) /* the receive buffer */
#define MAX_IO   (1u << 30)   /* bytes per request (the result is an int) */

/* A ring and the means to interrupt it from another thread. */
struct uring {
	struct io_uring ring;
	bool ok;
	int abort_fd; /* eventfd, polled (TAG_ABORT) for the ring's whole life */
	bool abort_seen;
	atomic_bool aborted;
};

enum { TAG_OP = 1, TAG_TIMEOUT, TAG_ABORT, TAG_IGNORE };

struct chan {
	struct uring u;
	int fd;
	int timeout_ms;
	int op_ms;     /* the bound of the operation under way, for messages */
	uint8_t *rbuf; /* plaintext received ahead of chan_read: rbuf[rpos..rlen) */
	size_t rpos, rlen;
	int first; /* the first byte the peer sent, -1 before: tells TLS from plaintext */
	uint64_t sent, received;
	struct chan_tls_conn *tls; /* NULL: plaintext */
	char peer[CHAN_ADDR_MAX + 16];
};

struct chan_listener {
	struct uring u;
	int fd;
	struct chan_addr addr;
	uint16_t port;
	bool own_path; /* the Unix socket file is ours (dev, ino) to remove */
	dev_t dev;
	ino_t ino;
	pthread_mutex_t lock; /* guards @handshaking against chan_listener_abort */
	struct chan *handshaking;
};

/* ---- addresses ---- */

int chan_addr_parse(const char *s, struct chan_addr *a, struct hv_error *err)
{
	const char *h, *he, *ps;
	unsigned char ip[16];
	size_t hl;

	memset(a, 0, sizeof(*a));
	if (strlen(s) >= sizeof(a->text))
		return hv_fail(err, EINVAL, "'%.40s...': address too long (at most %zu bytes)", s,
		               sizeof(a->text) - 1);
	strcpy(a->text, s);
	if (!strncmp(s, "unix:", 5)) {
		if (!s[5])
			return hv_fail(err, EINVAL, "'%s': empty path (expected unix:PATH)", s);
		if (strlen(s + 5) >= sizeof(a->path))
			return hv_fail(err, ENAMETOOLONG,
			               "'%s': path too long (%zu bytes, at most %zu)", s,
			               strlen(s + 5), sizeof(a->path) - 1);
		strcpy(a->path, s + 5);
		a->family = AF_UNIX;
		return 0;
	}
	if (strncmp(s, "tcp:", 4) || !strchr(s + 4, ':'))
		return hv_fail(err, EINVAL, "'%s': expected tcp:HOST:PORT or unix:PATH", s);
	h = s + 4;
	if (*h == '[') {
		he = strchr(++h, ']');
		if (!he || he[1] != ':')
			return hv_fail(err, EINVAL, "'%s': expected tcp:[IPV6-ADDRESS]:PORT", s);
		ps = he + 2;
	} else {
		he = strrchr(h, ':');
		ps = he + 1;
		if (memchr(h, ':', (size_t)(he - h)))
			return hv_fail(
			    err, EINVAL,
			    "'%s': an IPv6 address goes in brackets, as in tcp:[::1]:4444", s);
	}
	hl = (size_t)(he - h);
	if (hl == 0)
		return hv_fail(err, EINVAL, "'%s': empty host (expected tcp:HOST:PORT)", s);
	if (hl >= sizeof(a->host))
		return hv_fail(err, EINVAL, "'%s': host name too long", s);
	memcpy(a->host, h, hl);
	if (strpbrk(a->host, " \t[]/"))
		return hv_fail(err, EINVAL, "'%s': bad host '%s'", s, a->host);
	if (!*ps || strlen(ps) > 5 || strspn(ps, "0123456789") != strlen(ps) || atoi(ps) > 65535)
		return hv_fail(err, EINVAL, "'%s': bad port '%s' (expected 0 to 65535)", s, ps);
	a->port = (uint16_t)atoi(ps);
	a->tcp = true;
	if (inet_pton(AF_INET6, a->host, ip) == 1)
		a->family = AF_INET6;
	else if (h[-1] == '[')
		return hv_fail(err, EINVAL, "'%s': '%s' is not an IPv6 address", s, a->host);
	else if (inet_pton(AF_INET, a->host, ip) == 1)
		a->family = AF_INET;
	else
		a->family = AF_UNSPEC; /* a name: resolved at connect or listen */
	return 0;
}

/* ---- one io_uring request at a time, bounded by a deadline and by abort ---- */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t chan_deadline(int ms)
{
	return ms < 0 ? 0 : now_ns() + (int64_t)ms * 1000000;
}

static int uring_init(struct uring *u, const char *name, struct hv_error *err)
{
	struct io_uring_params p = {.flags = IORING_SETUP_COOP_TASKRUN};
	struct io_uring_sqe *sqe;
	int r;

	r = io_uring_queue_init_params(8, &u->ring, &p);
	if (r == -EINVAL) /* before Linux 5.19 */
		r = io_uring_queue_init(8, &u->ring, 0);
	if (r < 0)
		return hv_fail(err, -r, "%s: io_uring: %s", name, strerror(-r));
	u->ok = true;
	u->abort_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->abort_fd < 0)
		return hv_fail(err, errno, "%s: eventfd: %s", name, strerror(errno));
	sqe = io_uring_get_sqe(&u->ring);
	io_uring_prep_poll_add(sqe, u->abort_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, TAG_ABORT);
	r = io_uring_submit(&u->ring);
	if (r < 0)
		return hv_fail(err, -r, "%s: io_uring: %s", name, strerror(-r));
	return 0;
}

static void uring_fini(struct uring *u)
{
	if (u->ok)
		io_uring_queue_exit(&u->ring);
	if (u->abort_fd >= 0)
		close(u->abort_fd);
}

/* Any thread: the flag for the next request, the eventfd for the one in flight. */
static void uring_abort(struct uring *u)
{
	atomic_store(&u->aborted, true);
	if (u->abort_fd >= 0)
		eventfd_write(u->abort_fd, 1);
}

static struct io_uring_sqe *uring_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) { /* cannot happen with our few entries, but never hand out NULL */
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

/*
 * uring_run - submit @op (prepared by the caller from uring_sqe) and wait for its result,
 * for no longer than @deadline (0: none). Returns the result, >= 0 or -errno; -ETIMEDOUT
 * past the deadline, -ECANCELED when aborted (an fd the request produced, @fd_result, is
 * closed then).
 */
static int uring_run(struct uring *u, struct io_uring_sqe *op, int64_t deadline, bool fd_result)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	bool done = false, tmo = false, timed_out = false, cancelled = false;
	int res = 0;

	if (atomic_load(&u->aborted)) {
		io_uring_prep_nop(op); /* the entry is taken; make it harmless */
		io_uring_sqe_set_data64(op, TAG_IGNORE);
		return -ECANCELED;
	}
	io_uring_sqe_set_data64(op, TAG_OP);
	if (deadline) {
		int64_t left = deadline - now_ns();
		struct io_uring_sqe *t;

		if (left < 1)
			left = 1; /* a request that can complete at once still does */
		ts.tv_sec = left / 1000000000;
		ts.tv_nsec = left % 1000000000;
		op->flags |= IOSQE_IO_LINK;
		t = uring_sqe(u);
		io_uring_prep_link_timeout(t, &ts, 0);
		io_uring_sqe_set_data64(t, TAG_TIMEOUT);
		tmo = true;
	}
	while (!done || tmo) {
		int r = io_uring_submit_and_wait(&u->ring, 1);

		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			return r; /* the ring itself failed: nothing sensible is left to do */
		while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
			switch (cqe->user_data) {
			case TAG_OP:
				res = cqe->res;
				done = true;
				break;
			case TAG_TIMEOUT:
				tmo = false;
				timed_out = cqe->res == -ETIME;
				break;
			case TAG_ABORT: u->abort_seen = true; break;
			}
			io_uring_cqe_seen(&u->ring, cqe);
		}
		if (!done && !cancelled && (u->abort_seen || atomic_load(&u->aborted))) {
			struct io_uring_sqe *c = uring_sqe(u);

			io_uring_prep_cancel64(c, TAG_OP, 0);
			io_uring_sqe_set_data64(c, TAG_IGNORE);
			cancelled = true;
		}
	}
	if (atomic_load(&u->aborted)) {
		if (fd_result && res >= 0)
			close(res);
		return -ECANCELED;
	}
	if (timed_out && res < 0)
		return -ETIMEDOUT;
	return res;
}

static int io_fail(const char *who, const char *what, int r, int ms, struct hv_error *err)
{
	if (r == -ETIMEDOUT)
		return hv_fail(err, ETIMEDOUT, "%s: %s: timed out after %d ms", who, what, ms);
	if (r == -ECANCELED)
		return hv_fail(err, ECANCELED, "%s: %s: aborted", who, what);
	return hv_fail(err, -r, "%s: %s: %s", who, what, strerror(-r));
}

/* ---- bytes on the wire ---- */

int chan_net_send(struct chan *c, const void *p, size_t n, int64_t dl, struct hv_error *err)
{
	const uint8_t *b = p;

	while (n) {
		struct io_uring_sqe *sqe = uring_sqe(&c->u);
		int r;

		io_uring_prep_send(sqe, c->fd, b, n < MAX_IO ? n : MAX_IO, MSG_NOSIGNAL);
		r = uring_run(&c->u, sqe, dl, false);
		if (r == 0)
			r = -EPIPE;
		if (r < 0)
			return io_fail(c->peer, "send", r, c->op_ms, err);
		c->sent += (uint64_t)r;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

int chan_net_recv(struct chan *c, void *p, size_t cap, int64_t dl, const char *what,
                  struct hv_error *err)
{
	struct io_uring_sqe *sqe = uring_sqe(&c->u);
	int r;

	io_uring_prep_recv(sqe, c->fd, p, cap < MAX_IO ? cap : MAX_IO, 0);
	r = uring_run(&c->u, sqe, dl, false);
	if (r < 0)
		return io_fail(c->peer, what, r, c->op_ms, err);
	if (r > 0 && c->first < 0)
		c->first = *(uint8_t *)p;
	c->received += (uint64_t)r;
	return r;
}

/* ---- connections ---- */

static struct chan *chan_new(int fd, const char *peer, struct hv_error *err)
{
	struct chan *c = calloc(1, sizeof(*c));

	if (!c) {
		if (fd >= 0)
			close(fd);
		hv_fail(err, ENOMEM, "%s: out of memory", peer);
		return NULL;
	}
	c->fd = fd;
	c->u.abort_fd = -1;
	c->timeout_ms = -1;
	c->first = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (!(c->rbuf = malloc(CHAN_BUF))) {
		hv_fail(err, ENOMEM, "%s: out of memory", peer);
		goto fail;
	}
	if (uring_init(&c->u, peer, err) < 0)
		goto fail;
	return c;
fail:
	chan_close(c);
	return NULL;
}

/*
 * How long a silent TCP peer may stay unheard before the connection fails. An idle side
 * (a receiver waiting on a read) learns it from keepalive probes: after DEAD_PEER_S / 2
 * of silence, then 3 more a sixth apart. A side with data in flight (a sender, whose
 * probes the kernel holds back while anything is unacknowledged) learns it from
 * TCP_USER_TIMEOUT: DEAD_PEER_S without an acknowledgement. Without them a receiver
 * whose source host vanished (power, a cut link) would wait on a read for ever, and a
 * source VM paused for its switchover would stay paused for TCP's 15 minutes of
 * retransmissions. A live peer's kernel answers probes and acknowledges (zero-window
 * probes too, since Linux 5.11), so a stalled but healthy migration is never cut.
 * HV_MIGRATE_DEAD_PEER_S overrides the 30 s (tests).
 */
#define DEAD_PEER_S 30

static void tcp_tune(int fd)
{
	const char *env = getenv("HV_MIGRATE_DEAD_PEER_S");
	int one = 1, dead = DEAD_PEER_S, idle, intvl, cnt = 3;
	unsigned user_ms;

	/* Small records (headers, control) must not wait for Nagle's timer. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (env && atoi(env) > 0 && atoi(env) <= 3600)
		dead = atoi(env);
	idle = dead / 2 > 0 ? dead / 2 : 1;
	intvl = dead / 6 > 0 ? dead / 6 : 1;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	user_ms = (unsigned)dead * 1000;
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms));
}

static int connect_one(struct chan *c, const struct sockaddr *sa, socklen_t len, int64_t dl)
{
	struct io_uring_sqe *sqe;
	int r;

	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	sqe = uring_sqe(&c->u);
	io_uring_prep_connect(sqe, c->fd, sa, len);
	r = uring_run(&c->u, sqe, dl, false);
	if (r < 0) {
		close(c->fd);
		c->fd = -1;
		return r;
	}
	if (sa->sa_family != AF_UNIX)
		tcp_tune(c->fd);
	return 0;
}

static int connect_addr(struct chan *c, const struct chan_addr *a, int64_t dl, int ms,
                        struct hv_error *err)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *res, *ai;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char port[8];
	int r;

	if (!a->tcp) {
		memcpy(sun.sun_path, a->path, sizeof(a->path));
		r = connect_one(c, (struct sockaddr *)&sun, sizeof(sun), dl);
		return r < 0 ? io_fail(a->text, "connect", r, ms, err) : 0;
	}
	snprintf(port, sizeof(port), "%u", a->port);
	r = getaddrinfo(a->host, port, &hints, &res);
	if (r)
		return hv_fail(err, EHOSTUNREACH, "%s: cannot resolve '%s': %s", a->text, a->host,
		               r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	r = -EHOSTUNREACH;
	/* Every address in turn ("localhost" is ::1 and 127.0.0.1), until the deadline. */
	for (ai = res; ai && r != -ETIMEDOUT && r != -ECANCELED; ai = ai->ai_next)
		if ((r = connect_one(c, ai->ai_addr, ai->ai_addrlen, dl)) == 0)
			break;
	freeaddrinfo(res);
	return r < 0 ? io_fail(a->text, "connect", r, ms, err) : 0;
}

struct chan *chan_connect(const struct chan_addr *a, struct chan_tls *tls, int timeout_ms,
                          const char *tls_hostname, struct hv_error *err)
{
	int64_t dl = chan_deadline(timeout_ms);
	struct chan *c;

	if (tls && chan_tls_is_server(tls)) {
		hv_fail(err, EINVAL, "%s: connect: the TLS context is a server's", a->text);
		return NULL;
	}
	if (!(c = chan_new(-1, a->text, err)))
		return NULL;
	c->op_ms = timeout_ms;
	if (connect_addr(c, a, dl, timeout_ms, err) < 0 ||
	    (tls && !(c->tls = chan_tls_start(c, tls, tls_hostname, a->host, dl, c->rbuf, CHAN_BUF,
	                                      &c->rlen, err)))) {
		chan_close(c);
		return NULL;
	}
	return c;
}

/* ---- listening ---- */

static int listen_tcp(struct chan_listener *l, struct hv_error *err)
{
	struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[8];
	int r, e = EADDRNOTAVAIL, one = 1;

	snprintf(port, sizeof(port), "%u", l->addr.port);
	r = getaddrinfo(l->addr.host, port, &hints, &res);
	if (r)
		return hv_fail(err, EADDRNOTAVAIL, "%s: cannot resolve '%s': %s", l->addr.text,
		               l->addr.host, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	for (ai = res; ai && l->fd < 0; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
			l->fd = fd;
			break;
		}
		e = errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (l->fd < 0)
		return hv_fail(err, e, "%s: listen: %s", l->addr.text, strerror(e));
	if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0)
		l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                         : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

/* A socket file nobody listens on is left over from a dead process: replace it. */
static int unix_stale(const struct chan_addr *a, struct hv_error *err)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, r, e;

	if (lstat(a->path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return hv_fail(err, EEXIST, "%s: %s exists and is not a socket", a->text, a->path);
	memcpy(sun.sun_path, a->path, sizeof(a->path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hv_fail(err, errno, "%s: socket: %s", a->text, strerror(errno));
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	e = errno;
	close(fd);
	if (r == 0)
		return hv_fail(err, EADDRINUSE, "%s: address in use (a process listens there)",
		               a->text);
	if (e != ECONNREFUSED)
		return hv_fail(err, e, "%s: listen: %s", a->text, strerror(e));
	return 0;
}

static int listen_unix(struct chan_listener *l, struct hv_error *err)
{
	const struct chan_addr *a = &l->addr;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int r;

	memcpy(sun.sun_path, a->path, sizeof(a->path));
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return hv_fail(err, errno, "%s: socket: %s", a->text, strerror(errno));
	r = bind(l->fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r < 0 && errno == EADDRINUSE) {
		if (unix_stale(a, err) < 0)
			return -1;
		unlink(a->path);
		r = bind(l->fd, (struct sockaddr *)&sun, sizeof(sun));
	}
	if (r < 0 || listen(l->fd, 16) < 0)
		return hv_fail(err, errno, "%s: listen: %s", a->text, strerror(errno));
	if (stat(a->path, &st) == 0) {
		l->own_path = true;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	return 0;
}

struct chan_listener *chan_listen(const struct chan_addr *a, struct hv_error *err)
{
	struct chan_listener *l = calloc(1, sizeof(*l));

	if (!l) {
		hv_fail(err, ENOMEM, "%s: out of memory", a->text);
		return NULL;
	}
	l->fd = -1;
	l->u.abort_fd = -1;
	l->addr = *a;
	pthread_mutex_init(&l->lock, NULL);
	if (uring_init(&l->u, a->text, err) < 0 ||
	    (a->tcp ? listen_tcp(l, err) : listen_unix(l, err)) < 0) {
		chan_listener_close(l);
		return NULL;
	}
	return l;
}

uint16_t chan_listener_port(const struct chan_listener *l)
{
	return l->port;
}

int chan_listener_fd(const struct chan_listener *l)
{
	return l->fd;
}

int chan_listener_after_fork(struct chan_listener *l, struct hv_error *err)
{
	/* The inherited ring is the parent's (shared SQ/CQ memory): leave it, make ours. */
	uring_fini(&l->u);
	memset(&l->u, 0, sizeof(l->u));
	l->u.abort_fd = -1;
	return uring_init(&l->u, l->addr.text, err);
}

void chan_listener_close(struct chan_listener *l)
{
	struct stat st;

	if (!l)
		return;
	/* Remove the socket file only if nobody has replaced it with theirs. */
	if (l->own_path && stat(l->addr.path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		unlink(l->addr.path);
	if (l->fd >= 0)
		close(l->fd);
	uring_fini(&l->u);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void chan_listener_abort(struct chan_listener *l)
{
	uring_abort(&l->u);
	/* A connection in its handshake inside chan_accept is part of the wait. */
	pthread_mutex_lock(&l->lock);
	if (l->handshaking)
		chan_abort(l->handshaking);
	pthread_mutex_unlock(&l->lock);
}

static void sockaddr_text(const struct sockaddr_storage *ss, socklen_t len, const char *dflt,
                          char *out, size_t n)
{
	char h[INET6_ADDRSTRLEN], s[8];

	if ((ss->ss_family == AF_INET || ss->ss_family == AF_INET6) &&
	    getnameinfo((const struct sockaddr *)ss, len, h, sizeof(h), s, sizeof(s),
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(out, n, ss->ss_family == AF_INET6 ? "tcp:[%s]:%s" : "tcp:%s:%s", h, s);
	else
		snprintf(out, n, "%s", dflt);
}

struct chan *chan_accept(struct chan_listener *l, struct chan_tls *tls, int timeout_ms,
                         struct hv_error *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct io_uring_sqe *sqe;
	char peer[CHAN_ADDR_MAX + 16];
	struct chan *c;
	int fd, r = 0;

	if (tls && !chan_tls_is_server(tls)) {
		hv_fail(err, EINVAL, "%s: accept: the TLS context is a client's", l->addr.text);
		return NULL;
	}
	sqe = uring_sqe(&l->u);
	io_uring_prep_accept(sqe, l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	fd = uring_run(&l->u, sqe, chan_deadline(timeout_ms), true);
	if (fd < 0) {
		io_fail(l->addr.text, "accept", fd, timeout_ms, err);
		return NULL;
	}
	sockaddr_text(&ss, sl, l->addr.text, peer, sizeof(peer));
	if (!(c = chan_new(fd, peer, err)))
		return NULL;
	if (l->addr.tcp)
		tcp_tune(fd);
	if (tls) {
		pthread_mutex_lock(&l->lock);
		l->handshaking = c;
		pthread_mutex_unlock(&l->lock);
		if (atomic_load(&l->u.aborted)) /* aborted before it could see @c */
			chan_abort(c);
		/* However long the wait for a peer, a handshake that stalls is dropped. */
		int hs_ms = timeout_ms < 0 ? CHAN_HANDSHAKE_MS : timeout_ms;
		c->op_ms = hs_ms;
		c->tls = chan_tls_start(c, tls, NULL, NULL, chan_deadline(hs_ms), c->rbuf, CHAN_BUF,
		                        &c->rlen, err);
		r = c->tls ? 0 : -1;
		pthread_mutex_lock(&l->lock);
		l->handshaking = NULL;
		pthread_mutex_unlock(&l->lock);
	}
	if (r < 0) {
		chan_close(c);
		return NULL;
	}
	return c;
}

/* ---- reading and writing ---- */

int chan_write(struct chan *c, const void *p, size_t n, struct hv_error *err)
{
	int64_t dl = chan_deadline(c->timeout_ms);

	c->op_ms = c->timeout_ms;
	if (c->tls)
		return chan_tls_write(c->tls, c, p, n, dl, err);
	return chan_net_send(c, p, n, dl, err);
}

/* Up to @cap bytes of plaintext into @dst: > 0, 0 at a clean end of input, -1. */
static int fill(struct chan *c, uint8_t *dst, size_t cap, int64_t dl, struct hv_error *err)
{
	bool first = c->first < 0;
	int r;

	if (c->tls)
		return chan_tls_read(c->tls, c, dst, cap, dl, err);
	r = chan_net_recv(c, dst, cap, dl, "receive", err);
	/* A TLS record (handshake 22 or alert 21, version 3.x) as the peer's first bytes. */
	if (first && r >= 3 && (dst[0] == 22 || dst[0] == 21) && dst[1] == 3 && dst[2] <= 4)
		return hv_fail(err, EPROTO,
		               "%s: peer speaks TLS, but TLS is not configured on this side",
		               c->peer);
	return r;
}

int chan_read(struct chan *c, void *p, size_t n, bool *eof, struct hv_error *err)
{
	int64_t dl = chan_deadline(c->timeout_ms);
	uint8_t *d = p;

	c->op_ms = c->timeout_ms;
	if (eof)
		*eof = false;
	while (n) {
		int r;

		if (c->rpos < c->rlen) {
			size_t k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;

			memcpy(d, c->rbuf + c->rpos, k);
			c->rpos += k;
			d += k;
			n -= k;
			continue;
		}
		if (n >= CHAN_BUF) { /* big reads skip the buffer */
			r = fill(c, d, n, dl, err);
			if (r > 0) {
				d += r;
				n -= (size_t)r;
			}
		} else {
			c->rpos = c->rlen = 0;
			r = fill(c, c->rbuf, CHAN_BUF, dl, err);
			if (r > 0)
				c->rlen = (size_t)r;
		}
		if (r < 0)
			return -1;
		if (r == 0) {
			if (eof)
				*eof = true;
			return hv_fail(err, EPIPE, "%s: connection closed by peer", c->peer);
		}
	}
	return 0;
}

bool chan_readable(const struct chan *c)
{
	return c->rpos < c->rlen || (c->tls && chan_tls_pending(c->tls));
}

void chan_set_timeout(struct chan *c, int ms)
{
	c->timeout_ms = ms < 0 ? -1 : ms;
}

void chan_abort(struct chan *c)
{
	uring_abort(&c->u);
	/* The peer learns at once too, instead of at its own timeout. */
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

void chan_close(struct chan *c)
{
	if (!c)
		return;
	/* close_notify unless aborted: then the peer must not take it for a clean end. */
	if (c->tls)
		chan_tls_end(c->tls, c, !atomic_load(&c->u.aborted));
	if (c->fd >= 0)
		close(c->fd);
	uring_fini(&c->u);
	free(c->rbuf);
	free(c);
}

uint64_t chan_rtt_us(const struct chan *c)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	/* The kernel's smoothed round trip of the TCP connection; Unix sockets have none. */
	if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return 0;
	return ti.tcpi_rtt;
}

bool chan_peer_gone(const struct chan *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

bool chan_reset_by_peer(const struct chan *c, int wait_ms)
{
	int64_t dl = now_ns() + (int64_t)wait_ms * 1000000;

	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = 0};
		int e = 0;
		socklen_t len = sizeof(e);

		/* A reset after the peer's FIN reads EPIPE on TCP, ECONNRESET before it and
		 * on Unix sockets: any pending error means the peer dropped unread data. */
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e)
			return true;
		if (now_ns() >= dl)
			return false;
		poll(&p, 1, 10);
	}
}

const char *chan_peer(const struct chan *c)
{
	return c->peer;
}

uint64_t chan_bytes_sent(const struct chan *c)
{
	return c->sent;
}

uint64_t chan_bytes_received(const struct chan *c)
{
	return c->received;
}

const char *chan_tls_version(const struct chan *c)
{
	return c->tls ? chan_tls_conn_version(c->tls) : NULL;
}

static int chan_stream_write(void *ctx, const void *p, size_t n, struct hv_error *err)
{
	return chan_write(ctx, p, n, err);
}

static int chan_stream_read(void *ctx, void *p, size_t n, bool *eof, struct hv_error *err)
{
	return chan_read(ctx, p, n, eof, err);
}

const struct stream_io chan_stream_io = {.write = chan_stream_write, .read = chan_stream_read};
