/*
 * hvdconn.c - connect to hvd and check that it is hvd.
 */
#include <stdlib.h>

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
	return ctlconn_open_as(c, path, "hvd", "hvd's socket", "hvd", timeout_ms, err);
}
