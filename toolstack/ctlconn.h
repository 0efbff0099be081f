/*
 * ctlconn.h - the client end of a VM's control socket (docs/control-protocol.md), shared
 * by hvctl and hvmigrate: connect, check the greeting, send requests, read lines.
 */
#ifndef HV_TOOLSTACK_CTLCONN_H
#define HV_TOOLSTACK_CTLCONN_H

#include <stddef.h>

#include <jansson.h>

#include "hv/error.h"

#define CTLCONN_MAX_LINE (1 << 20) /* longest line accepted from hv */

struct ctlconn {
	int fd;
	const char *path; /* not owned */
	char *buf;
	size_t len, cap;
};

/*
 * ctlconn_open - connect to the socket at @path and read hv's greeting. -1 with @err
 * ("PATH: No such file or directory", "PATH: not an hv control socket").
 */
int ctlconn_open(struct ctlconn *c, const char *path, struct hv_error *err);

/*
 * ctlconn_open_as - the same for any server of this protocol: its greeting must be an
 * object whose member @key is an object ("hv" for a VM, "hvd" for the daemon). @what
 * names the socket in the bad-greeting error ("an hv control socket"), @who the server
 * that hung up. Waits up to @timeout_ms for the greeting.
 */
int ctlconn_open_as(struct ctlconn *c, const char *path, const char *key, const char *what,
                    const char *who, int timeout_ms, struct hv_error *err);

/*
 * ctlconn_line - the next line without its newline (malloc'd; the caller frees), or NULL
 * at EOF (errno 0), on a timeout (ETIMEDOUT; @timeout_ms < 0 waits forever), or on an
 * error (errno set).
 */
char *ctlconn_line(struct ctlconn *c, int timeout_ms);

/* ctlconn_send - send @req (not consumed) as one line. */
int ctlconn_send(struct ctlconn *c, json_t *req, struct hv_error *err);

/*
 * ctlconn_call - send {"id": @id, "execute": @cmd, "arguments": @args (borrowed; NULL for
 * none)} and skip events until the reply with that id. Returns the reply object (the
 * caller decrefs), or NULL with @err. An {"error": ...} reply is returned, not an error.
 */
json_t *ctlconn_call(struct ctlconn *c, int id, const char *cmd, json_t *args,
                     struct hv_error *err);

void ctlconn_close(struct ctlconn *c);

#endif
