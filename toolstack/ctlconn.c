/*
 * ctlconn.c - control-socket client.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "toolstack/ctlconn.h"

char *ctlconn_line(struct ctlconn *c, int timeout_ms)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - c->buf);
			char *line = strndup(c->buf, l);
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return line;
		}
		if (c->len == c->cap) {
			char *b;
			if (c->cap >= CTLCONN_MAX_LINE) {
				errno = EMSGSIZE;
				return NULL;
			}
			b = realloc(c->buf, c->cap ? c->cap * 2 : 4096);
			if (!b)
				return NULL;
			c->buf = b;
			c->cap = c->cap ? c->cap * 2 : 4096;
		}
		n = poll(&p, 1, timeout_ms);
		if (n == 0) {
			errno = ETIMEDOUT;
			return NULL;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0;
			return NULL;
		}
		c->len += (size_t)n;
	}
}

int ctlconn_open_as(struct ctlconn *c, const char *path, const char *key, const char *what,
                    const char *who, int timeout_ms, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	json_t *msg;
	char *line;
	int ok;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->path = path;
	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return hv_fail(err, ENAMETOOLONG, "%s: a socket path must be 1 to %zu bytes", path,
		               sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path));
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	line = ctlconn_line(c, timeout_ms);
	msg = line ? json_loads(line, 0, NULL) : NULL;
	ok = json_is_object(json_object_get(msg, key));
	json_decref(msg);
	if (!ok) {
		int e = errno;
		free(line);
		if (line)
			return hv_fail(err, EPROTO, "%s: not %s (bad greeting)", path, what);
		if (e)
			return hv_fail(err, EPROTO, "%s: %s", path, strerror(e));
		return hv_fail(err, EPROTO, "%s: %s closed the connection", path, who);
	}
	free(line);
	return 0;
}

int ctlconn_open(struct ctlconn *c, const char *path, struct hv_error *err)
{
	return ctlconn_open_as(c, path, "hv", "an hv control socket", "hv", 10000, err);
}

int ctlconn_send(struct ctlconn *c, json_t *req, struct hv_error *err)
{
	char *text = json_dumps(req, JSON_COMPACT);
	size_t len, off = 0;

	if (!text)
		return hv_fail(err, ENOMEM, "%s: cannot build the request", c->path);
	len = strlen(text);
	text[len] = '\n'; /* json_dumps's NUL becomes the newline */
	while (off < len + 1) {
		ssize_t n = send(c->fd, text + off, len + 1 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(text);
			return hv_fail(err, e, "%s: %s", c->path, strerror(e));
		}
		off += (size_t)n;
	}
	free(text);
	return 0;
}

json_t *ctlconn_call(struct ctlconn *c, int id, const char *cmd, json_t *args, struct hv_error *err)
{
	json_t *req = json_pack("{s:i, s:s}", "id", id, "execute", cmd);
	int rc;

	if (req && args)
		json_object_set(req, "arguments", args);
	rc = req ? ctlconn_send(c, req, err) : hv_fail(err, ENOMEM, "out of memory");
	json_decref(req);
	if (rc < 0)
		return NULL;
	for (;;) {
		char *line = ctlconn_line(c, -1);
		json_t *msg;

		if (!line) {
			hv_fail(err, errno ? errno : EPIPE, "%s: %s: %s", c->path, cmd,
			        errno ? strerror(errno)
			              : "hv closed the connection without a reply");
			return NULL;
		}
		msg = json_loads(line, 0, NULL);
		free(line);
		if (json_is_object(msg) && json_integer_value(json_object_get(msg, "id")) == id &&
		    (json_object_get(msg, "return") || json_object_get(msg, "error")))
			return msg;
		if (json_is_object(msg) && json_object_get(msg, "error") &&
		    !json_object_get(msg, "id")) {
			hv_fail(err, EPROTO, "%s: %s", c->path,
			        json_string_value(
			            json_object_get(json_object_get(msg, "error"), "desc"))
			            ?: "error");
			json_decref(msg);
			return NULL;
		}
		json_decref(msg);
	}
}

void ctlconn_close(struct ctlconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
}
