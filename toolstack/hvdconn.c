/*
 * hvdconn.c - connect to hvd and check that it is hvd.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "toolstack/hvdconn.h"

const char *hvdconn_default_socket(const char *opt)
{
	const char *env = getenv("HVD_SOCKET");

	if (opt)
		return opt;
	return env && *env ? env : "/run/hvd.sock";
}

int hvdconn_open(struct ctlconn *c, const char *path, int timeout_ms, struct hv_error *err)
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
	ok = json_is_object(json_object_get(msg, "hvd"));
	json_decref(msg);
	if (!ok) {
		int e = errno;
		free(line);
		return hv_fail(err, EPROTO, "%s: %s", path,
		               line ? "not hvd's socket (bad greeting)"
		                    : (e ? strerror(e) : "hvd closed the connection"));
	}
	free(line);
	return 0;
}
