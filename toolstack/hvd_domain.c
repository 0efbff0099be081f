/*
 * hvd_domain.c - domain states, their transitions, and the domain files of the state
 * directory.
 *
 * The transition table is the one place that says which operation may run in which
 * state; the command handlers ask it before they touch a VM. The runtime record is
 * small JSON written atomically after every change, so what a restarted hvd reads is
 * always a state the domain really was in.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "toolstack/hvd_domain.h"

static const char *const state_names[DOM_NSTATES] = {
    [DOM_SHUTDOWN] = "shutdown",
    [DOM_CRASHED] = "crashed",
    [DOM_SAVED] = "saved",
    [DOM_MIGRATED] = "migrated",
    [DOM_STARTING] = "starting",
    [DOM_RUNNING] = "running",
    [DOM_PAUSED] = "paused",
    [DOM_CHECKPOINTING] = "checkpointing",
    [DOM_SAVING] = "saving",
    [DOM_SHUTTING_DOWN] = "shutting-down",
    [DOM_DESTROYING] = "destroying",
    [DOM_MIGRATING_OUT] = "migrating-out",
    [DOM_MIGRATING_IN] = "migrating-in",
};

const char *dom_state_name(enum dom_state s)
{
	return (unsigned)s < DOM_NSTATES ? state_names[s] : "?";
}

int dom_state_parse(const char *s)
{
	for (int i = 0; i < DOM_NSTATES; i++)
		if (!strcmp(state_names[i], s))
			return i;
	return -1;
}

bool dom_live(enum dom_state s)
{
	return s >= DOM_STARTING;
}

static const char *const op_names[] = {
    [DOP_START] = "start",
    [DOP_PAUSE] = "pause or resume",
    [DOP_SAVE] = "save or checkpoint",
    [DOP_SHUTDOWN] = "shut down",
    [DOP_DESTROY] = "destroy",
    [DOP_DELETE] = "delete",
    [DOP_MIGRATE] = "migrate",
};

int dom_check_op(const struct domain *d, enum dom_op op, struct hv_error *err)
{
	enum dom_state s = d->state;
	bool ok = false;

	switch (op) {
	/* A migrated domain runs elsewhere now: booting it here would make a second one. */
	case DOP_START: ok = !dom_live(s) && s != DOM_MIGRATED; break;
	case DOP_DELETE: ok = !dom_live(s); break;
	case DOP_PAUSE:
	case DOP_SAVE:
	case DOP_MIGRATE:
	case DOP_SHUTDOWN: ok = s == DOM_RUNNING || s == DOM_PAUSED; break;
	/* The one way out of every live state, stuck ones included. */
	case DOP_DESTROY: ok = dom_live(s) && s != DOM_DESTROYING; break;
	}
	if (ok)
		return 0;
	return hv_fail(err, EBUSY, "%s: cannot %s a domain that is %s", d->cfg.name, op_names[op],
	               dom_state_name(s));
}

/* May a domain in state @from move to @to? (Live states may always end.) */
static bool transition_ok(enum dom_state from, enum dom_state to)
{
	if (from == to)
		return true;
	switch (to) {
	case DOM_STARTING: return !dom_live(from);
	case DOM_RUNNING:
	case DOM_PAUSED: return dom_live(from) && from != DOM_DESTROYING;
	case DOM_CHECKPOINTING:
	case DOM_SAVING:
	case DOM_SHUTTING_DOWN:
	case DOM_MIGRATING_OUT: return from == DOM_RUNNING || from == DOM_PAUSED;
	case DOM_MIGRATING_IN: return !dom_live(from);
	case DOM_MIGRATED: return from == DOM_MIGRATING_OUT;
	case DOM_DESTROYING: return dom_live(from);
	case DOM_SHUTDOWN:
	case DOM_CRASHED:
	case DOM_SAVED: return dom_live(from);
	default: return false;
	}
}

enum dom_state dom_set_state(struct domain *d, enum dom_state s)
{
	enum dom_state old = d->state;

	if (!transition_ok(old, s))
		fprintf(stderr, "hvd: %s: unexpected transition %s -> %s\n", d->cfg.name,
		        dom_state_name(old), dom_state_name(s));
	d->state = s;
	return old;
}

json_t *dom_summary(const struct domain *d)
{
	json_t *o =
	    json_pack("{s:s, s:s, s:s, s:I, s:i, s:I}", "name", d->cfg.name, "uuid", d->cfg.uuid,
	              "state", dom_state_name(d->state), "memory", (json_int_t)d->cfg.memory,
	              "vcpus", (int)d->cfg.vcpus, "pid", (json_int_t)d->pid);

	if (o && d->pid)
		json_object_set_new(o, "uptime",
		                    json_integer((json_int_t)(time(NULL) - d->started)));
	return o;
}

json_t *dom_info(const struct domain *d)
{
	json_t *o = dom_summary(d);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!o)
		return NULL;
	if (f && domcfg_write(&d->cfg, f, NULL) == 0 && fclose(f) == 0) {
		json_object_set_new(o, "config", json_stringn(text, len));
		f = NULL;
	}
	if (f)
		fclose(f);
	free(text);
	json_object_set_new(o, "accel", json_string(domcfg_accel_name(d->cfg.accel)));
	json_object_set_new(o, "kernel", json_string(d->cfg.kernel));
	json_object_set_new(o, "autostart", json_boolean(d->cfg.autostart));
	json_object_set_new(o, "control", d->pid ? json_string(d->control) : json_null());
	json_object_set_new(o, "console", json_string(d->console));
	/* The VM's console socket (hvd_vm.c): its control socket's name, ending .console. */
	if (d->pid && dom_live(d->state) && d->state != DOM_MIGRATING_IN &&
	    strlen(d->control) > 5 && !strcmp(d->control + strlen(d->control) - 5, ".sock"))
		json_object_set_new(
		    o, "console_socket",
		    json_sprintf("%.*s.console", (int)strlen(d->control) - 5, d->control));
	json_object_set_new(o, "started",
	                    d->pid ? json_integer((json_int_t)d->started) : json_null());
	json_object_set_new(o, "save_file",
	                    d->save_file[0] ? json_string(d->save_file) : json_null());
	json_object_set_new(o, "last_error",
	                    d->last_error[0] ? json_string(d->last_error) : json_null());
	json_object_set_new(o, "migrate_uri",
	                    d->mig_uri[0] ? json_string(d->mig_uri) : json_null());
	return o;
}

/* ---- files ---- */

int dom_write_atomic(const char *path, const void *data, size_t len, struct hv_error *err)
{
	char tmp[PATH_MAX + 32], dir[PATH_MAX];
	const char *p = data;
	char *slash;
	int fd, e = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", tmp, strerror(errno));
	while (len && !e) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			e = errno;
		else
			p += n, len -= (size_t)n;
	}
	if (!e && fsync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && !e)
		e = errno;
	if (!e && rename(tmp, path) < 0)
		e = errno;
	if (e) {
		unlink(tmp);
		return hv_fail(err, e, "%s: %s", path, strerror(e));
	}
	/* The rename itself must survive a crash too. */
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		fd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
	}
	return 0;
}

int dom_save_cfg(const char *dir, const struct domain *d, struct hv_error *err)
{
	char path[PATH_MAX], *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc;

	if (!f)
		return hv_fail(err, ENOMEM, "out of memory");
	rc = domcfg_write(&d->cfg, f, err);
	if (fclose(f) != 0 && rc == 0)
		rc = hv_fail(err, ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "%s/%s.cfg", dir, d->cfg.name);
	if (rc == 0)
		rc = dom_write_atomic(path, text, len, err);
	free(text);
	return rc;
}

int dom_save_state(const char *dir, const struct domain *d, struct hv_error *err)
{
	char path[PATH_MAX], *text;
	json_t *o;
	int rc;

	o = json_pack("{s:s, s:b, s:I, s:I, s:s, s:s, s:I, s:s, s:s, s:s}", "state",
	              dom_state_name(d->state), "vm_paused", d->vm_paused, "pid",
	              (json_int_t)d->pid, "pid_start", (json_int_t)d->pid_start, "control",
	              d->control, "console", d->console, "started", (json_int_t)d->started,
	              "save_file", d->save_file, "last_error", d->last_error, "migrate_uri",
	              d->mig_uri);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		return hv_fail(err, ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "%s/%s.state", dir, d->cfg.name);
	text[strlen(text)] = '\0';
	rc = dom_write_atomic(path, text, strlen(text), err);
	free(text);
	return rc;
}

void dom_remove_files(const char *dir, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s.cfg", dir, name);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s.state", dir, name);
	unlink(path);
}

/* Copy the string member @key of @o into @buf, if it is a string that fits. */
static void get_str(json_t *o, const char *key, char *buf, size_t cap)
{
	const char *s = json_string_value(json_object_get(o, key));

	if (s && strlen(s) < cap)
		memcpy(buf, s, strlen(s) + 1);
}

static int load_state(const char *dir, struct domain *d, struct hv_error *err)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *o, *v;
	int st;

	snprintf(path, sizeof(path), "%s/%s.state", dir, d->cfg.name);
	o = json_load_file(path, 0, &jerr);
	if (!o) {
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return 0; /* a domain that never ran */
		return hv_fail(err, EINVAL, "%s: %s", path, jerr.text);
	}
	st = dom_state_parse(json_string_value(json_object_get(o, "state")) ?: "");
	if (st < 0) {
		json_decref(o);
		return hv_fail(err, EINVAL, "%s: bad or missing 'state'", path);
	}
	d->state = (enum dom_state)st;
	d->vm_paused = json_is_true(json_object_get(o, "vm_paused"));
	v = json_object_get(o, "pid");
	d->pid =
	    json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 30)
	        ? (pid_t)json_integer_value(v)
	        : 0;
	d->pid_start = (unsigned long long)json_integer_value(json_object_get(o, "pid_start"));
	d->started = (time_t)json_integer_value(json_object_get(o, "started"));
	get_str(o, "control", d->control, sizeof(d->control));
	get_str(o, "console", d->console, sizeof(d->console));
	get_str(o, "save_file", d->save_file, sizeof(d->save_file));
	get_str(o, "last_error", d->last_error, sizeof(d->last_error));
	get_str(o, "migrate_uri", d->mig_uri, sizeof(d->mig_uri));
	json_decref(o);
	return 0;
}

struct domain *dom_load(const char *dir, const char *name, struct hv_error *err)
{
	struct domain *d = calloc(1, sizeof(*d));
	char path[PATH_MAX];

	if (!d) {
		hv_fail(err, ENOMEM, "out of memory");
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.cfg", dir, name);
	if (domcfg_load(path, &d->cfg, err) < 0) {
		free(d);
		return NULL;
	}
	if (strcmp(d->cfg.name, name)) {
		hv_fail(err, EINVAL, "%s: holds the domain '%s'", path, d->cfg.name);
		dom_free(d);
		return NULL;
	}
	if (load_state(dir, d, err) < 0) {
		dom_free(d);
		return NULL;
	}
	return d;
}

void dom_free(struct domain *d)
{
	if (!d)
		return;
	domcfg_free(&d->cfg);
	free(d);
}

unsigned long long dom_proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields count from the last ')'. */
	p = strrchr(buf, ')');
	if (p && (p[1] != ' ' || p[2] == 'Z' || p[2] == 'X'))
		return 0; /* a zombie: it has ended */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		v = strtoull(p + 1, NULL, 10);
	return v;
}

int dom_uuid_new(char *out, struct hv_error *err)
{
	unsigned char b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return hv_fail(err, errno, "getrandom: %s", strerror(errno));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, DOMCFG_UUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
	return 0;
}
