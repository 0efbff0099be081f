/*
 * domcfg_file.c - domain config files on disk: reading one, and the paths inside it.
 *
 * A relative path in a config file means relative to that file, as in an include
 * directive, not to whatever directory hvctl or hvd happens to run in; so loading makes
 * every path absolute before the config reaches hvd, which persists it as such.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/domcfg.h"
#include "toolstack/kv.h"

int domcfg_resolve_paths(struct domcfg *c, const char *dir, struct hv_error *err)
{
	char **fields[] = {&c->kernel, &c->initrd, &c->console_log, &c->checkpoint_store};
	static const char *const names[] = {"kernel", "initrd", "console_log", "checkpoint_store"};
	char *fresh[4] = {NULL};

	/* All or nothing: build every new path before replacing any. */
	for (int i = 0; i < 4; i++) {
		const char *s = *fields[i];

		if (!s || s[0] == '/')
			continue;
		if (strlen(dir) + 1 + strlen(s) > DOMCFG_STR_MAX) {
			hv_fail(err, ENAMETOOLONG, "%s: %s/%s: longer than %d bytes", names[i], dir,
			        s, DOMCFG_STR_MAX);
			goto fail;
		}
		if (asprintf(&fresh[i], "%s/%s", dir, s) < 0) {
			fresh[i] = NULL;
			hv_fail(err, ENOMEM, "%s: out of memory", names[i]);
			goto fail;
		}
	}
	for (int i = 0; i < 4; i++)
		if (fresh[i]) {
			free(*fields[i]);
			*fields[i] = fresh[i];
		}
	return 0;
fail:
	for (int i = 0; i < 4; i++)
		free(fresh[i]);
	return -1;
}

int domcfg_load(const char *path, struct domcfg *out, struct hv_error *err)
{
	char *buf = NULL, *copy = NULL, *dir = NULL;
	struct hv_error e = {0};
	size_t len = 0;
	int rc = -1;

	domcfg_init(out);
	if (kv_read_file(path, &buf, &len, err) < 0)
		return -1;
	if (domcfg_parse(buf, len, path, out, err) < 0)
		goto out;
	if (!(copy = strdup(path)) || !(dir = realpath(dirname(copy), NULL))) {
		hv_fail(err, copy ? errno : ENOMEM, "%s: resolving its directory: %s", path,
		        strerror(copy ? errno : ENOMEM));
		domcfg_free(out);
		goto out;
	}
	if (domcfg_resolve_paths(out, dir, &e) < 0) {
		hv_fail(err, e.code, "%s: %s", path, e.msg);
		domcfg_free(out);
		goto out;
	}
	rc = 0;
out:
	free(dir);
	free(copy);
	free(buf);
	return rc;
}
