/*
 * hvd_vmconn.c - a VM control socket client on a libev loop.
 *
 * Callbacks can free the connection they are called from (a domain that ends is
 * forgotten in its `closed` callback), so the I/O callback holds a busy count and a
 * vmconn_free() during it only marks the connection; the memory goes when the outermost
 * callback returns.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "toolstack/hvd_vmconn.h"

#define VMCONN_MAX_LINE (1 << 20) /* longest line accepted from hv */

struct call {
	struct call *next;
	json_int_t id;
	vmconn_reply_fn fn;
	vmconn_event_fn evfn; /* or NULL */
	void *arg;
};

struct vmconn {
	struct ev_loop *loop;
	int fd;
	ev_io rw, ww;
	struct vmconn_ops ops;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_cap;
	struct call *calls, **calls_tail;
	json_int_t next_id;
	int busy;
	bool closed; /* fd shut, calls failed */
	bool freed;  /* vmconn_free() called during a callback */
};

static void destroy(struct vmconn *vc)
{
	free(vc->in);
	free(vc->out);
	free(vc);
}

/* Close the socket and complete every pending call with NULL. */
static void shut(struct vmconn *vc)
{
	if (vc->closed)
		return;
	vc->closed = true;
	ev_io_stop(vc->loop, &vc->rw);
	ev_io_stop(vc->loop, &vc->ww);
	close(vc->fd);
	vc->fd = -1;
	while (vc->calls) {
		struct call *c = vc->calls;
		vc->calls = c->next;
		c->fn(c->arg, NULL);
		free(c);
	}
	vc->calls_tail = &vc->calls;
}

/* The connection failed under us: tell the owner (unless it already let go). */
static void fail(struct vmconn *vc, const char *why)
{
	if (vc->closed)
		return;
	shut(vc);
	if (!vc->freed && vc->ops.closed)
		vc->ops.closed(vc->ops.opaque, why);
}

static void flush(struct vmconn *vc)
{
	size_t off = 0;

	while (off < vc->out_len) {
		ssize_t n = send(vc->fd, vc->out + off, vc->out_len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			fail(vc, strerror(errno));
			return;
		}
		off += (size_t)n;
	}
	memmove(vc->out, vc->out + off, vc->out_len - off);
	vc->out_len -= off;
	if (vc->out_len)
		ev_io_start(vc->loop, &vc->ww);
	else
		ev_io_stop(vc->loop, &vc->ww);
}

static void dispatch(struct vmconn *vc, const char *line, size_t len)
{
	json_t *msg = json_loadb(line, len, 0, NULL);
	json_t *id = json_object_get(msg, "id");

	if (!json_is_object(msg)) {
		json_decref(msg);
		return;
	}
	if (json_object_get(msg, "event")) {
		if (vc->ops.event && !vc->freed)
			vc->ops.event(vc->ops.opaque, msg);
		for (struct call *c = vc->calls; c && !vc->closed && !vc->freed; c = c->next)
			if (c->evfn)
				c->evfn(c->arg, msg);
	} else if (json_is_integer(id) && vc->calls && vc->calls->id == json_integer_value(id)) {
		struct call *c = vc->calls;
		vc->calls = c->next;
		if (!vc->calls)
			vc->calls_tail = &vc->calls;
		c->fn(c->arg, msg);
		free(c);
	}
	/* The greeting and replies without an id (hv's own errors) need nothing. */
	json_decref(msg);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct vmconn *vc = w->data;
	size_t start = 0;
	ssize_t n;

	if (vc->in_len == vc->in_cap) {
		size_t cap = vc->in_cap ? vc->in_cap * 2 : 4096;
		char *p = cap <= VMCONN_MAX_LINE + 1 ? realloc(vc->in, cap) : NULL;
		if (!p) {
			fail(vc, "line from hv too long");
			return;
		}
		vc->in = p;
		vc->in_cap = cap;
	}
	n = recv(vc->fd, vc->in + vc->in_len, vc->in_cap - vc->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	vc->busy++;
	if (n <= 0) {
		fail(vc, n ? strerror(errno) : "hv closed the connection");
		goto out;
	}
	vc->in_len += (size_t)n;
	while (!vc->closed && !vc->freed) {
		char *nl = memchr(vc->in + start, '\n', vc->in_len - start);
		if (!nl)
			break;
		dispatch(vc, vc->in + start, (size_t)(nl - (vc->in + start)));
		start = (size_t)(nl - vc->in) + 1;
	}
	if (!vc->closed) {
		memmove(vc->in, vc->in + start, vc->in_len - start);
		vc->in_len -= start;
	}
out:
	if (--vc->busy == 0 && vc->freed)
		destroy(vc);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct vmconn *vc = w->data;

	vc->busy++;
	flush(vc);
	if (--vc->busy == 0 && vc->freed)
		destroy(vc);
}

struct vmconn *vmconn_open(struct ev_loop *loop, const char *path, const struct vmconn_ops *ops,
                           struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct vmconn *vc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		hv_fail(err, ENAMETOOLONG, "%s: socket path too long", path);
		return NULL;
	}
	vc = calloc(1, sizeof(*vc));
	if (!vc) {
		hv_fail(err, ENOMEM, "out of memory");
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path));
	vc->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* A Unix socket connects at once or not at all (EAGAIN: its backlog is full). */
	if (vc->fd < 0 || connect(vc->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		if (vc->fd >= 0)
			close(vc->fd);
		free(vc);
		return NULL;
	}
	vc->loop = loop;
	vc->ops = *ops;
	vc->calls_tail = &vc->calls;
	vc->next_id = 1;
	ev_io_init(&vc->rw, read_cb, vc->fd, EV_READ);
	ev_io_init(&vc->ww, write_cb, vc->fd, EV_WRITE);
	vc->rw.data = vc->ww.data = vc;
	ev_io_start(loop, &vc->rw);
	return vc;
}

int vmconn_call(struct vmconn *vc, const char *cmd, json_t *args, vmconn_reply_fn fn, void *arg)
{
	return vmconn_call_events(vc, cmd, args, fn, NULL, arg);
}

int vmconn_call_events(struct vmconn *vc, const char *cmd, json_t *args, vmconn_reply_fn fn,
                       vmconn_event_fn evfn, void *arg)
{
	json_t *req = json_pack("{s:I, s:s}", "id", vc->next_id, "execute", cmd);
	struct call *c = calloc(1, sizeof(*c));
	char *text = NULL;
	size_t len;

	if (req && args)
		json_object_set(req, "arguments", args);
	json_decref(args);
	if (req)
		text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text || !c || vc->closed || vc->freed) {
		free(text);
		free(c);
		return -1;
	}
	len = strlen(text) + 1;
	if (vc->out_len + len > vc->out_cap) {
		size_t cap = vc->out_cap ? vc->out_cap : 4096;
		char *p;
		while (cap < vc->out_len + len)
			cap *= 2;
		p = realloc(vc->out, cap);
		if (!p) {
			free(text);
			free(c);
			return -1;
		}
		vc->out = p;
		vc->out_cap = cap;
	}
	memcpy(vc->out + vc->out_len, text, len - 1);
	vc->out[vc->out_len + len - 1] = '\n';
	vc->out_len += len;
	free(text);
	c->id = vc->next_id++;
	c->fn = fn;
	c->evfn = evfn;
	c->arg = arg;
	*vc->calls_tail = c;
	vc->calls_tail = &c->next;
	/* Written from the loop, never from here: a failing send must not run callbacks
	 * (and possibly free @vc) under our caller's feet. */
	ev_io_start(vc->loop, &vc->ww);
	return 0;
}

void vmconn_free(struct vmconn *vc)
{
	if (!vc || vc->freed)
		return;
	vc->freed = true;
	vc->busy++;
	shut(vc);
	if (--vc->busy == 0)
		destroy(vc);
}
