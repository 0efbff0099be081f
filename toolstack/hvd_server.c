/*
 * hvd_server.c - hvd's API socket: clients, request lines, replies, events.
 *
 * The framing is the VM control socket's (control.c): newline-delimited JSON, a greeting
 * on connect, bounded input and output per client. What differs is that a reply may come
 * long after its request (a save, a VM start), so a request becomes a struct hvd_op that
 * holds a reference to its client; a client that hangs up before its reply is closed at
 * once but freed only when its last operation has completed, and the reply is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "toolstack/hvd.h"

#define HVD_MAX_CLIENTS 64
#define HVD_MAX_OUT     (4u << 20) /* queued output per client before it is dropped */

struct client {
	struct hvd *hvd;
	struct client *next;
	int fd;
	pid_t peer_pid; /* SO_PEERCRED at connect: migrate-incoming names its VM process */
	int refs;       /* the list's, plus one per operation in flight */
	ev_io rw, ww;
	char *in; /* HVD_MAX_LINE + 1 bytes */
	size_t in_len;
	char *out;
	size_t out_len, out_cap;
	bool subscribed;
	bool closing;     /* answer nothing more; hang up once the output is out */
	size_t discarded; /* bytes read and dropped since closing */
	bool dead;
};

static void client_close(struct client *c)
{
	if (c->dead)
		return;
	ev_io_stop(c->hvd->loop, &c->rw);
	ev_io_stop(c->hvd->loop, &c->ww);
	close(c->fd);
	c->dead = true;
}

static void client_unref(struct client *c)
{
	if (--c->refs > 0)
		return;
	free(c->in);
	free(c->out);
	free(c);
}

/* Unlink closed clients from the list (they live on while operations hold them). */
static void reap(struct hvd *h)
{
	for (struct client **pp = &h->clients; *pp;) {
		struct client *c = *pp;
		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		h->nclients--;
		client_unref(c);
	}
}

/* Write what is queued; 0 when all is out, 1 when the socket is full, -1 on error. */
static int client_flush(struct client *c)
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

static void client_kick(struct client *c)
{
	int rc = client_flush(c);

	if (rc < 0) {
		client_close(c);
		return;
	}
	/* Half-close, then drain: closing with unread input would reset the connection,
	 * which can destroy the error reply before the peer reads it. */
	if (rc == 0 && c->closing)
		shutdown(c->fd, SHUT_WR);
	if (rc == 1)
		ev_io_start(c->hvd->loop, &c->ww);
	else
		ev_io_stop(c->hvd->loop, &c->ww);
}

static void client_send(struct client *c, const char *line)
{
	size_t len;

	if (c->dead || c->closing || !line)
		return;
	len = strlen(line) + 1;
	/* A subscriber that never reads must not grow our memory without bound. */
	if (c->out_len + len > HVD_MAX_OUT) {
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

void hvd_op_done(struct hvd_op *op, enum control_class cls, json_t *ret, const char *desc)
{
	if (op->c) {
		char *line = hvd_reply(op->id, cls, ret, desc);

		client_send(op->c,
		            line ? line
		                 : "{\"error\":{\"class\":\"Failed\",\"desc\":\"out of memory\"}}");
		free(line);
		if (op->cmd == HVD_SUBSCRIBE && cls == CONTROL_OK)
			op->c->subscribed = true;
		client_unref(op->c);
	}
	if (op->d && op->d->op == op)
		op->d->op = NULL;
	json_decref(op->id);
	json_decref(op->ret);
	free(op);
}

pid_t hvd_op_peer_pid(const struct hvd_op *op)
{
	return op->c ? op->c->peer_pid : 0;
}

void hvd_event(struct hvd *h, const char *name, json_t *data)
{
	char *line = control_event(name, data);

	for (struct client *c = h->clients; line && c; c = c->next)
		if (c->subscribed)
			client_send(c, line);
	free(line);
}

static void handle_line(struct client *c, const char *line, size_t len)
{
	struct hv_error err = {0};
	struct hvd_request r;
	enum control_class cls;
	struct hvd_op *op;
	json_t *id;

	cls = hvd_request_parse(line, len, &r, &id, &err);
	if (cls != CONTROL_OK) {
		char *reply = hvd_reply(id, cls, NULL, err.msg);
		client_send(c, reply);
		free(reply);
		json_decref(id);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		char *reply = hvd_reply(r.id, CONTROL_FAILED, NULL, "out of memory");
		client_send(c, reply);
		free(reply);
		hvd_request_free(&r);
		return;
	}
	op->hvd = c->hvd;
	op->c = c;
	c->refs++;
	op->id = json_incref(r.id);
	op->cmd = r.cmd;
	hvd_dispatch(c->hvd, op, &r);
	hvd_request_free(&r);
}

/* Answer every complete line in the input buffer, keep the incomplete rest. */
static void client_process(struct client *c)
{
	size_t start = 0;

	c->refs++; /* a handler may complete operations that drop the last other reference */
	while (!c->closing && !c->dead) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		if (len && c->in[start + len - 1] == '\r')
			len--;
		if (len)
			handle_line(c, c->in + start, len);
		start = (size_t)(nl - c->in) + 1;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (!c->dead && !c->closing && c->in_len > HVD_MAX_LINE) {
		char msg[96], *reply;

		snprintf(msg, sizeof(msg), "request line longer than %d bytes; closing",
		         HVD_MAX_LINE);
		reply = control_error_line(CONTROL_PARSE_ERROR, msg);
		client_send(c, reply);
		free(reply);
		c->closing = true;
		c->in_len = 0;
		if (!c->dead && !c->out_len)
			shutdown(c->fd, SHUT_WR);
	}
	client_unref(c);
}

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;
	struct hvd *h = c->hvd;
	size_t room = c->closing ? HVD_MAX_LINE + 1 : HVD_MAX_LINE + 1 - c->in_len;
	ssize_t n = recv(c->fd, c->closing ? c->in : c->in + c->in_len, room, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* A half-sent request dies with its connection; whole ones already ran. */
		client_close(c);
	} else if (c->closing) {
		c->discarded += (size_t)n;
		if (c->discarded > HVD_MAX_OUT)
			client_close(c);
	} else {
		c->in_len += (size_t)n;
		client_process(c);
	}
	reap(h);
}

static void client_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;

	client_kick(c);
	reap(c->hvd);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hvd *h = w->data;
	struct client *c;
	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	char *hello;
	int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (h->nclients >= HVD_MAX_CLIENTS) {
		static const char busy[] = "{\"error\":{\"class\":\"Failed\",\"desc\":\"too many "
		                           "hvd clients\"}}\n";
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->in = malloc(HVD_MAX_LINE + 1);
	if (!c || !c->in) {
		free(c);
		close(fd);
		return;
	}
	c->hvd = h;
	c->fd = fd;
	c->refs = 1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0)
		c->peer_pid = cred.pid;
	ev_io_init(&c->rw, client_read_cb, fd, EV_READ);
	ev_io_init(&c->ww, client_write_cb, fd, EV_WRITE);
	c->rw.data = c->ww.data = c;
	c->next = h->clients;
	h->clients = c;
	h->nclients++;
	ev_io_start(loop, &c->rw);
	hello = hvd_greeting(HV_VERSION);
	client_send(c, hello);
	free(hello);
	reap(h);
}

/* Make the socket path free for bind(): absent, or a socket nobody listens on. */
static int clear_stale(const char *path, struct hv_error *err)
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
		return hv_fail(err, EADDRINUSE, "%s: another hvd is listening there", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return hv_fail(err, errno, "%s: cannot remove stale socket: %s", path,
		               strerror(errno));
	return 0;
}

int hvd_listen(struct hvd *h, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = h->sock_path;
	mode_t old;
	int rc;

	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return hv_fail(err, ENAMETOOLONG, "--socket '%s': must be 1 to %zu bytes", path,
		               sizeof(sa.sun_path) - 1);
	if (clear_stale(path, err) < 0)
		return -1;
	h->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd < 0)
		return hv_fail(err, errno, "%s: socket: %s", path, strerror(errno));
	memcpy(sa.sun_path, path, strlen(path));
	/* Mode 0600 from birth: whoever connects can destroy every VM. */
	old = umask(0177);
	rc = bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(h->lfd, 64) < 0) {
		rc = errno;
		close(h->lfd);
		h->lfd = -1;
		return hv_fail(err, rc, "%s: %s", path, strerror(rc));
	}
	ev_io_init(&h->accept_w, accept_cb, h->lfd, EV_READ);
	h->accept_w.data = h;
	ev_io_start(h->loop, &h->accept_w);
	return 0;
}

void hvd_server_close(struct hvd *h)
{
	if (h->lfd >= 0) {
		ev_io_stop(h->loop, &h->accept_w);
		close(h->lfd);
		h->lfd = -1;
		unlink(h->sock_path);
	}
	for (struct client *c = h->clients; c; c = c->next) {
		client_flush(c);
		client_close(c);
	}
	reap(h);
}
