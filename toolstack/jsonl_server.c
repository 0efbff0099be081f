/*
 * jsonl_server.c - a newline-delimited JSON server on a Unix socket (see jsonl_server.h).
 *
 * Each client has a fixed input buffer of one line plus its newline and a growing output
 * queue with a cap. Writes go out at once while the socket takes them; the write watcher
 * runs only while something is left. Closed clients are unlinked and released by an
 * ev_prepare watcher, just before the loop sleeps, when no callback can be holding one.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "toolstack/jsonl_server.h"

struct jsonl_client {
	struct jsonl_server *s; /* not used once closed: the server may be gone */
	struct jsonl_client *next;
	int fd;
	int refs; /* the list's, plus the caller's (jsonl_ref) */
	pid_t peer_pid;
	void *data;
	ev_io rw, ww;
	char *in; /* max_line + 1 bytes: a line and its newline */
	size_t in_len;
	char *out;
	size_t out_len, out_cap;
	bool closing;     /* answer nothing more; hang up once the output is flushed */
	size_t discarded; /* bytes read and dropped since closing */
	bool dead;        /* closed; unlinked by reap() */
};

struct jsonl_server {
	struct ev_loop *loop;
	struct jsonl_config cfg;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t sock_dev;
	ino_t sock_ino;
	int lfd;
	ev_io accept_w;
	ev_prepare reap_w;
	struct jsonl_client *clients;
	unsigned nclients; /* open ones */
	bool need_reap;
};

/* ---- clients ---- */

static void client_close(struct jsonl_client *c)
{
	struct jsonl_server *s = c->s;

	if (c->dead)
		return;
	ev_io_stop(s->loop, &c->rw);
	ev_io_stop(s->loop, &c->ww);
	close(c->fd);
	c->dead = true;
	s->nclients--;
	s->need_reap = true;
	if (s->cfg.on_close)
		s->cfg.on_close(s->cfg.arg, c);
}

void jsonl_ref(struct jsonl_client *c)
{
	c->refs++;
}

void jsonl_unref(struct jsonl_client *c)
{
	if (--c->refs > 0)
		return;
	free(c->in);
	free(c->out);
	free(c);
}

/* Unlink closed clients from the list and drop the list's reference. */
static void reap(struct jsonl_server *s)
{
	if (!s->need_reap)
		return;
	s->need_reap = false;
	for (struct jsonl_client **pp = &s->clients; *pp;) {
		struct jsonl_client *c = *pp;
		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		jsonl_unref(c);
	}
}

static void reap_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	reap(w->data);
}

/* Write what is queued; 0 when all is out, 1 when the socket is full, -1 on error. */
static int client_flush(struct jsonl_client *c)
{
	size_t off = 0;
	int rc = 0;

	while (off < c->out_len) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
			break;
		}
		off += (size_t)n;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	return rc;
}

/* Flush, and watch for room only while something is left. */
static void client_kick(struct jsonl_client *c)
{
	int rc = client_flush(c);

	if (rc < 0) {
		client_close(c);
		return;
	}
	/* Half-close, then drain: closing with unread input would make the kernel send a
	 * reset, which can destroy the error reply before the peer reads it. */
	if (rc == 0 && c->closing)
		shutdown(c->fd, SHUT_WR);
	if (rc == 1)
		ev_io_start(c->s->loop, &c->ww);
	else
		ev_io_stop(c->s->loop, &c->ww);
}

void jsonl_send(struct jsonl_client *c, const char *line)
{
	size_t len;

	if (c->dead || c->closing || !line)
		return;
	len = strlen(line) + 1;
	/* A client that never reads (its events pile up) must not grow our memory. */
	if (c->out_len + len > c->s->cfg.max_out) {
		client_close(c);
		return;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;
		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			client_close(c);
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len - 1);
	c->out[c->out_len + len - 1] = '\n';
	c->out_len += len;
	client_kick(c);
}

void jsonl_broadcast(struct jsonl_server *s, const char *line)
{
	for (struct jsonl_client *c = jsonl_first(s); c; c = jsonl_next(c))
		jsonl_send(c, line);
}

static struct jsonl_client *skip_dead(struct jsonl_client *c)
{
	while (c && c->dead)
		c = c->next;
	return c;
}

struct jsonl_client *jsonl_first(struct jsonl_server *s)
{
	return s ? skip_dead(s->clients) : NULL;
}

struct jsonl_client *jsonl_next(struct jsonl_client *c)
{
	return skip_dead(c->next);
}

void *jsonl_data(const struct jsonl_client *c)
{
	return c->data;
}

void jsonl_set_data(struct jsonl_client *c, void *data)
{
	c->data = data;
}

pid_t jsonl_peer_pid(const struct jsonl_client *c)
{
	return c->peer_pid;
}

/* ---- reading ---- */

/* Stop answering @c after an over-long line: the error reply, then the orderly end. */
static void client_overlong(struct jsonl_client *c)
{
	const struct jsonl_config *cfg = &c->s->cfg;
	char desc[96];

	snprintf(desc, sizeof(desc), "request line longer than %zu bytes; closing", cfg->max_line);
	cfg->on_overlong(cfg->arg, c, desc);
	c->closing = true;
	c->in_len = 0;
	if (!c->dead && !c->out_len)
		shutdown(c->fd, SHUT_WR);
}

/* Hand every complete line in the input buffer over, then keep the incomplete rest. */
static void client_process(struct jsonl_client *c)
{
	const struct jsonl_config *cfg = &c->s->cfg;
	size_t start = 0;

	/* Lines run even once @c is closed (a peer that sent and hung up, `echo quit |
	 * socat` style); only their replies are lost. The reference keeps @c whole even if
	 * a callback completes the last operation that held it. */
	jsonl_ref(c);
	while (!c->closing) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		if (len && c->in[start + len - 1] == '\r')
			len--;
		if (len) {
			c->in[start + len] = '\0';
			cfg->on_line(cfg->arg, c, c->in + start, len);
		}
		start = (size_t)(nl - c->in) + 1;
	}
	if (!c->dead) {
		memmove(c->in, c->in + start, c->in_len - start);
		c->in_len -= start;
		if (!c->closing && c->in_len > cfg->max_line)
			client_overlong(c);
	}
	jsonl_unref(c);
}

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct jsonl_client *c = w->data;
	size_t cap = c->s->cfg.max_line + 1;
	size_t room = c->closing ? cap : cap - c->in_len;
	ssize_t n = recv(c->fd, c->closing ? c->in : c->in + c->in_len, room, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* A half-sent request dies with its connection; whole ones already ran. */
		client_close(c);
	} else if (c->closing) {
		/* Draining after an error: bounded, so a peer cannot keep us reading forever. */
		c->discarded += (size_t)n;
		if (c->discarded > c->s->cfg.max_out)
			client_close(c);
	} else {
		c->in_len += (size_t)n;
		client_process(c);
	}
}

static void client_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	client_kick(w->data);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct jsonl_server *s = w->data;
	struct jsonl_client *c;
	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (s->nclients >= s->cfg.max_clients) {
		const char *busy = s->cfg.busy_line;
		(void)!send(fd, busy, strlen(busy), MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->in = malloc(s->cfg.max_line + 1);
	if (!c || !c->in) {
		free(c);
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	c->refs = 1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0)
		c->peer_pid = cred.pid;
	ev_io_init(&c->rw, client_read_cb, fd, EV_READ);
	ev_io_init(&c->ww, client_write_cb, fd, EV_WRITE);
	c->rw.data = c->ww.data = c;
	c->next = s->clients;
	s->clients = c;
	s->nclients++;
	ev_io_start(loop, &c->rw);
	if (s->cfg.on_accept)
		s->cfg.on_accept(s->cfg.arg, c);
}

/* ---- the socket ---- */

int jsonl_clear_stale(const char *path, const char *in_use, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	int fd, rc;

	if (lstat(path, &sb) < 0)
		return errno == ENOENT ? 0 : hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(sb.st_mode))
		return hv_fail(err, EEXIST, "%s: exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hv_fail(err, errno, "%s: socket: %s", path, strerror(errno));
	memcpy(sa.sun_path, path, strlen(path));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0)
		return hv_fail(err, EADDRINUSE, "%s: %s", path, in_use);
	/* Only a refusal proves that nobody listens; anything else leaves the file alone. */
	if (errno != ECONNREFUSED)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		return hv_fail(err, errno, "%s: cannot remove stale socket: %s", path,
		               strerror(errno));
	return 0;
}

/* Bind and listen on @path; the file's identity is kept so that close removes only it. */
static int listen_on(struct jsonl_server *s, const char *path, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	mode_t old;
	int rc;

	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return hv_fail(err, ENAMETOOLONG, "%s '%s': a socket path must be 1 to %zu bytes",
		               s->cfg.option, path, sizeof(sa.sun_path) - 1);
	if (jsonl_clear_stale(path, s->cfg.in_use, err) < 0)
		return -1;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return hv_fail(err, errno, "%s: socket: %s", path, strerror(errno));
	memcpy(sa.sun_path, path, strlen(path));
	/* The umask makes the file 0600 from birth (whoever connects controls the VMs); the
	 * chmod covers odd file systems. Nobody can connect before listen() anyway. */
	old = umask(0177);
	rc = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (chmod(path, 0600) < 0 || stat(path, &sb) < 0 || listen(s->lfd, s->cfg.backlog) < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->sock_dev = sb.st_dev;
	s->sock_ino = sb.st_ino;
	return 0;
}

struct jsonl_server *jsonl_listen(struct ev_loop *loop, const char *path,
                                  const struct jsonl_config *cfg, struct hv_error *err)
{
	struct jsonl_server *s = calloc(1, sizeof(*s));

	if (!s) {
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		return NULL;
	}
	s->loop = loop;
	s->cfg = *cfg;
	s->lfd = -1;
	if (listen_on(s, path, err) < 0) {
		if (s->lfd >= 0)
			close(s->lfd);
		free(s);
		return NULL;
	}
	ev_io_init(&s->accept_w, accept_cb, s->lfd, EV_READ);
	ev_prepare_init(&s->reap_w, reap_cb);
	s->accept_w.data = s->reap_w.data = s;
	ev_io_start(loop, &s->accept_w);
	ev_prepare_start(loop, &s->reap_w);
	return s;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

void jsonl_close(struct jsonl_server *s, int flush_ms)
{
	struct timespec t0;
	struct stat sb;

	if (!s)
		return;
	ev_io_stop(s->loop, &s->accept_w);
	ev_prepare_stop(s->loop, &s->reap_w);
	close(s->lfd);
	/* Only if still ours: a second server may have replaced a file we thought stale. */
	if (stat(s->path, &sb) == 0 && sb.st_dev == s->sock_dev && sb.st_ino == s->sock_ino)
		unlink(s->path);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (struct jsonl_client *c = s->clients; c; c = c->next) {
		while (!c->dead && c->out_len && client_flush(c) == 1) {
			int left = flush_ms - (int)ms_since(&t0);
			struct pollfd p = {.fd = c->fd, .events = POLLOUT};
			if (left <= 0 || poll(&p, 1, left) <= 0)
				break;
		}
		client_close(c);
	}
	reap(s);
	free(s);
}
