/*
 * hvd_conf.h - hvd's own config file, /etc/hv/hvd.conf (docs/hvd.8.md, CONFIGURATION
 * FILE): the daemon's settings, so that `hvd start`, `hvd status`, `hvd stop` and the
 * systemd unit agree on them without repeating options.
 *
 * The syntax is that of domain configs (kv.h) and as strict: an unknown key, a key given
 * twice or a bad value is an error naming the file, the line and the key, since a typo
 * silently ignored would start a daemon other than the one described (on another state
 * directory, say, where it would find none of the host's VMs).
 */
#ifndef HV_TOOLSTACK_HVD_CONF_H
#define HV_TOOLSTACK_HVD_CONF_H

#include <stddef.h>

#include "hv/error.h"

#define HVD_CONF_DEFAULT    "/etc/hv/hvd.conf"
#define HVD_CONF_SOCKET_MAX 107 /* bytes in a Unix socket path */

/*
 * The settings a file gave; NULL (or -1 for autostart) for those it did not. Strings are
 * malloc'd and owned by the struct (hvd_conf_free). Each one has the command-line option
 * of the same name (tls_cert: --tls-cert), which overrides it.
 */
struct hvd_conf {
	char *state_dir;
	char *socket; /* at most HVD_CONF_SOCKET_MAX bytes */
	char *hv;
	char *migrate_listen; /* tcp:HOST:PORT or unix:PATH, checked with chan_addr_parse */
	char *tls_cert, *tls_key, *tls_ca; /* all three or none */
	char *tls_client_name;             /* only with tls_cert */
	char *log;
	int autostart; /* 1, 0, or -1 */
};

/*
 * hvd_conf_parse - parse the text @buf (@len bytes, no NUL needed), named @fname in
 * messages, into @out (need not be initialised). Relative paths (state_dir, socket, hv,
 * the tls files, log) are made relative to @dir, which should be absolute, or kept as
 * written if @dir is NULL. Returns 0 (release @out with hvd_conf_free), or -1 with @out
 * empty and @err set to one line: `hvd.conf:3: autostart: "maybe": not a boolean
 * (true/false, yes/no, 1/0)` (EINVAL; EFBIG over 64 KiB; ENOMEM; ENAMETOOLONG).
 */
int hvd_conf_parse(const char *buf, size_t len, const char *fname, const char *dir,
                   struct hvd_conf *out, struct hv_error *err);

/*
 * hvd_conf_load - read the regular file @path (at most 64 KiB) and parse it as
 * hvd_conf_parse, relative paths taken from the directory that holds @path. Returns 0, or
 * -1 with @out empty and @err set (errno of a failed open or read, or as hvd_conf_parse).
 */
int hvd_conf_load(const char *path, struct hvd_conf *out, struct hv_error *err);

/* hvd_conf_free - free the strings of @c and reset it to "nothing given"; safe twice. */
void hvd_conf_free(struct hvd_conf *c);

#endif
