/*
 * hvdconn.h - the client end of hvd's API socket (docs/hvd-api.md), for hvctl's domain
 * commands and `hvd status`.
 *
 * The framing and the request/reply shape are those of a VM's control socket, so this
 * reuses struct ctlconn and ctlconn_call(); only the greeting differs ({"hvd": ...}).
 */
#ifndef HV_TOOLSTACK_HVDCONN_H
#define HV_TOOLSTACK_HVDCONN_H

#include "toolstack/ctlconn.h"

/*
 * hvdconn_open - connect to hvd at @path and read its greeting within @timeout_ms.
 * Returns 0, or -1 with @err ("PATH: No such file or directory", "PATH: not hvd's
 * socket"). Release @c with ctlconn_close() either way.
 */
int hvdconn_open(struct ctlconn *c, const char *path, int timeout_ms, struct hv_error *err);

/* hvdconn_default_socket - @opt if not NULL, else $HVD_SOCKET, else /run/hvd.sock. */
const char *hvdconn_default_socket(const char *opt);

#endif
