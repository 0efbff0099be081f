/*
 * fuzz_hvdconf.c - libFuzzer target for hvd's config file parser (toolstack/hvd_conf.c).
 *
 * Whatever the bytes, hvd_conf_parse() must either fail with a one-line message or
 * succeed with settings that keep the promises of hvd_conf.h: every string non-empty and
 * free of control characters, every path absolute when a directory was given, the socket
 * short enough to bind, TLS all or nothing. Any broken promise is reported by abort() so
 * that libFuzzer keeps the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/hvd_conf.h"

static void check_string(const char *key, const char *s, bool path)
{
	if (!s)
		return;
	if (!*s || (path && s[0] != '/')) {
		fprintf(stderr, "%s: '%s': empty or not absolute\n", key, s);
		abort();
	}
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			fprintf(stderr, "%s: control character kept\n", key);
			abort();
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_error err = {0};
	struct hvd_conf c;
	int tls;

	if (hvd_conf_parse((const char *)data, size, "fuzz.conf", "/etc/hv", &c, &err) < 0) {
		if (!err.msg[0] || strchr(err.msg, '\n')) {
			fprintf(stderr, "bad error message: '%s'\n", err.msg);
			abort();
		}
		return 0;
	}
	check_string("state_dir", c.state_dir, true);
	check_string("socket", c.socket, true);
	check_string("hv", c.hv, true);
	check_string("migrate_listen", c.migrate_listen, false);
	check_string("tls_cert", c.tls_cert, true);
	check_string("tls_key", c.tls_key, true);
	check_string("tls_ca", c.tls_ca, true);
	check_string("tls_client_name", c.tls_client_name, false);
	check_string("log", c.log, true);
	tls = !!c.tls_cert + !!c.tls_key + !!c.tls_ca;
	if ((c.socket && strlen(c.socket) > HVD_CONF_SOCKET_MAX) || (tls && tls != 3) ||
	    (c.tls_client_name && !c.tls_cert) || c.autostart < -1 || c.autostart > 1) {
		fprintf(stderr, "accepted settings break a rule\n");
		abort();
	}
	hvd_conf_free(&c);
	/* Without a directory, paths stay as written (so no longer): still accepted. */
	if (hvd_conf_parse((const char *)data, size, "fuzz.conf", NULL, &c, &err) < 0) {
		fprintf(stderr, "accepted with a directory, refused without: %s\n", err.msg);
		abort();
	}
	hvd_conf_free(&c);
	return 0;
}
