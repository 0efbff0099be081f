/*
 * hvd_conf.c - hvd's config file (hvd_conf.h, docs/hvd.8.md).
 *
 * The lexing and the file, line and key of every message are the kv reader's (kv.h), as
 * for domain configs; this file only knows the keys and what their values may be.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/chan.h"
#include "toolstack/hvd_conf.h"
#include "toolstack/kv.h"

enum vtype { T_PATH, T_ADDR, T_NAME, T_BOOL };

static const struct {
	const char *name;
	enum vtype type;
	size_t off; /* of the field in struct hvd_conf */
} keys[] = {
#define K(n, t)                                                                                    \
	{                                                                                          \
#n, t, offsetof(struct hvd_conf, n)                                                \
	}
    K(state_dir, T_PATH), K(socket, T_PATH),    K(hv, T_PATH),     K(migrate_listen, T_ADDR),
    K(tls_cert, T_PATH),  K(tls_key, T_PATH),   K(tls_ca, T_PATH), K(tls_client_name, T_NAME),
    K(log, T_PATH),       K(autostart, T_BOOL),
#undef K
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static long key_index(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len && !memcmp(keys[i].name, name, len))
			return (long)i;
	return -1;
}

/* What kv_parse stores into: the settings, and the directory of relative paths. */
struct parse {
	struct hvd_conf *c;
	const char *dir;
};

/* A string value: quoted, not empty, no control character (no escape could show it). */
static int check_string(const struct kv_setting *kv, char *msg)
{
	char q[48];

	if (!kv->quoted)
		return kv_complain(msg, "%s: expected a string in double quotes",
		                   kv_shown(kv->val, kv->len, true, q));
	if (!kv->len)
		return kv_complain(msg, "must not be empty");
	for (size_t i = 0; i < kv->len; i++)
		if ((unsigned char)kv->val[i] < 0x20 || kv->val[i] == 0x7f)
			return kv_complain(msg, "control character 0x%02x in the string",
			                   (unsigned char)kv->val[i]);
	return 0;
}

/*
 * Store the value of setting @kv in @p->c, a path made relative to @p->dir (if not
 * NULL). Returns 0, or -1 with @msg (KV_MSG bytes) and *@code set.
 */
static int set_value(void *arg, const struct kv_setting *kv, char *msg, int *code)
{
	struct hvd_conf *c = ((struct parse *)arg)->c;
	const char *dir = ((struct parse *)arg)->dir;
	char **field = (char **)((char *)c + keys[kv->key].off), q[48];
	enum vtype type = keys[kv->key].type;
	struct chan_addr a;
	struct hv_error e;
	bool b;
	int n;

	*code = EINVAL;
	if (type == T_BOOL) {
		if (kv_bool(kv->val, &b) < 0)
			return kv_complain(msg, "%s: not a boolean (true/false, yes/no, 1/0)",
			                   kv_shown(kv->val, kv->len, true, q));
		c->autostart = b;
		return 0;
	}
	if (check_string(kv, msg) < 0)
		return -1;
	if (type == T_ADDR && chan_addr_parse(kv->val, &a, &e) < 0)
		return kv_complain(msg, "%.300s", e.msg);
	if (type == T_PATH && dir && kv->val[0] != '/')
		n = asprintf(field, "%s/%s", dir, kv->val);
	else
		n = (*field = strdup(kv->val)) ? 0 : -1;
	if (n < 0) {
		*field = NULL;
		*code = ENOMEM;
		return kv_complain(msg, "out of memory");
	}
	if (field == &c->socket && strlen(c->socket) > HVD_CONF_SOCKET_MAX) {
		*code = ENAMETOOLONG;
		return kv_complain(msg, "%s: longer than %d bytes",
		                   kv_shown(c->socket, strlen(c->socket), true, q),
		                   HVD_CONF_SOCKET_MAX);
	}
	return 0;
}

/* The rules between keys: the key to blame with @msg set, or NULL. */
static const char *check_across(void *arg, const unsigned *lines, char *msg)
{
	const struct hvd_conf *c = ((struct parse *)arg)->c;
	const char *tls[] = {c->tls_cert, c->tls_key, c->tls_ca};
	static const char *const names[] = {"tls_cert", "tls_key", "tls_ca"};
	int n = !!tls[0] + !!tls[1] + !!tls[2];

	for (int i = 0; n && n < 3 && i < 3; i++)
		if (tls[i]) {
			kv_complain(msg, "TLS needs all of tls_cert, tls_key and tls_ca");
			return names[i];
		}
	if (c->tls_client_name && !c->tls_cert) {
		kv_complain(msg, "needs TLS (tls_cert, tls_key, tls_ca)");
		return "tls_client_name";
	}
	return NULL;
}

void hvd_conf_free(struct hvd_conf *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type != T_BOOL)
			free(*(char **)((char *)c + keys[i].off));
	memset(c, 0, sizeof(*c));
	c->autostart = -1;
}

int hvd_conf_parse(const char *buf, size_t len, const char *fname, const char *dir,
                   struct hvd_conf *out, struct hv_error *err)
{
	static const struct kv_format format = {key_index, NKEYS, set_value, check_across};
	struct parse p = {out, dir};

	memset(out, 0, sizeof(*out));
	out->autostart = -1;
	if (kv_parse(&format, &p, buf, len, fname ? fname : "hvd.conf", err) < 0) {
		hvd_conf_free(out);
		return -1;
	}
	return 0;
}

int hvd_conf_load(const char *path, struct hvd_conf *out, struct hv_error *err)
{
	char *buf = NULL, *copy = NULL, *dir = NULL;
	size_t len = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->autostart = -1;
	if (kv_read_file(path, &buf, &len, err) < 0)
		return -1;
	/* A relative path in the file means relative to the file, whoever reads it from where. */
	if (!(copy = strdup(path)) || !(dir = realpath(dirname(copy), NULL))) {
		hv_fail(err, copy ? errno : ENOMEM, "%s: resolving its directory: %s", path,
		        strerror(copy ? errno : ENOMEM));
		goto out;
	}
	rc = hvd_conf_parse(buf, len, path, dir, out, err);
out:
	free(dir);
	free(copy);
	free(buf);
	return rc;
}
