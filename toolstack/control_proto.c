/*
 * control_proto.c - parse a control request, dispatch it, build the reply.
 *
 * Every line is hostile until proven otherwise: jansson parses it (bounded depth, valid
 * UTF-8, no NUL inside strings), then the request is checked member by member against a
 * fixed command table before any backend is called, and unknown members are refused
 * rather than ignored, so a typo never silently changes what a command does.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolstack/control_proto.h"

struct command {
	const char *name;
	const char *const *args; /* allowed argument names, NULL-terminated */
	enum control_class (*run)(const struct control_ops *ops, json_t *args, json_t *ret,
	                          struct hv_error *err);
};

const char *control_class_name(enum control_class c)
{
	switch (c) {
	case CONTROL_OK: return "Ok";
	case CONTROL_PARSE_ERROR: return "ParseError";
	case CONTROL_INVALID_REQUEST: return "InvalidRequest";
	case CONTROL_COMMAND_NOT_FOUND: return "CommandNotFound";
	case CONTROL_INVALID_ARGUMENT: return "InvalidArgument";
	case CONTROL_INVALID_STATE: return "InvalidState";
	case CONTROL_FAILED: return "Failed";
	}
	return "Failed";
}

/* A JSON string for @s; messages may quote peer bytes cut mid-character, so fall back to
 * printable ASCII rather than fail. */
static json_t *safe_string(const char *s)
{
	json_t *j = json_stringn(s, strlen(s));
	char buf[HV_ERROR_MSG];
	size_t i;

	if (j)
		return j;
	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
	return json_string(buf);
}

static char *dump_line(json_t *obj)
{
	char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;

	json_decref(obj);
	return s;
}

static json_t *error_object(enum control_class c, const char *desc)
{
	return json_pack("{s:s, s:o}", "class", control_class_name(c), "desc", safe_string(desc));
}

char *control_error_line(enum control_class c, const char *desc)
{
	return dump_line(json_pack("{s:o}", "error", error_object(c, desc)));
}

/* The reply to a request whose id is @id (borrowed; NULL when it had none). */
static char *reply_line(json_t *id, enum control_class c, json_t *ret, const char *desc)
{
	json_t *r = json_object();

	if (!r)
		goto fail;
	if (id && json_object_set(r, "id", id) < 0)
		goto fail;
	if (c == CONTROL_OK) {
		if (json_object_set(r, "return", ret) < 0)
			goto fail;
	} else if (json_object_set_new(r, "error", error_object(c, desc)) < 0) {
		goto fail;
	}
	return dump_line(r);
fail:
	json_decref(r);
	return NULL;
}

/* Quote at most 64 bytes of peer-supplied @s in a message. */
#define PEER_STR(s) (int)(strlen(s) > 64 ? 64 : strlen(s)), (s)

static enum control_class cmd_info(const struct control_ops *ops, json_t *args, json_t *ret,
                                   struct hv_error *err)
{
	return ops->info(ops->opaque, ret, err);
}

static enum control_class cmd_pause(const struct control_ops *ops, json_t *args, json_t *ret,
                                    struct hv_error *err)
{
	return ops->pause(ops->opaque, err);
}

static enum control_class cmd_resume(const struct control_ops *ops, json_t *args, json_t *ret,
                                     struct hv_error *err)
{
	return ops->resume(ops->opaque, err);
}

static enum control_class cmd_quit(const struct control_ops *ops, json_t *args, json_t *ret,
                                   struct hv_error *err)
{
	return ops->quit(ops->opaque, err);
}

static enum control_class cmd_save(const struct control_ops *ops, json_t *args, json_t *ret,
                                   struct hv_error *err)
{
	json_t *file = json_object_get(args, "file");
	json_t *keep = json_object_get(args, "keep-running");
	const char *path;

	if (!file) {
		hv_fail(err, EINVAL, "save: missing argument 'file'");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (!json_is_string(file)) {
		hv_fail(err, EINVAL, "save: 'file' must be a string");
		return CONTROL_INVALID_ARGUMENT;
	}
	path = json_string_value(file);
	if (!*path || strlen(path) != json_string_length(file) || strlen(path) >= PATH_MAX) {
		hv_fail(err, EINVAL, "save: 'file' must be a path of 1 to %d bytes without NUL",
		        PATH_MAX - 1);
		return CONTROL_INVALID_ARGUMENT;
	}
	if (keep && !json_is_boolean(keep)) {
		hv_fail(err, EINVAL, "save: 'keep-running' must be true or false");
		return CONTROL_INVALID_ARGUMENT;
	}
	return ops->save(ops->opaque, path, keep && json_is_true(keep), ret, err);
}

static enum control_class cmd_checkpoint(const struct control_ops *ops, json_t *args, json_t *ret,
                                         struct hv_error *err)
{
	json_t *store = json_object_get(args, "store");
	json_t *tag = json_object_get(args, "tag");
	json_t *full = json_object_get(args, "full");
	const char *path, *t = NULL;

	if (!store) {
		hv_fail(err, EINVAL, "checkpoint: missing argument 'store'");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (!json_is_string(store)) {
		hv_fail(err, EINVAL, "checkpoint: 'store' must be a string");
		return CONTROL_INVALID_ARGUMENT;
	}
	path = json_string_value(store);
	if (!*path || strlen(path) != json_string_length(store) || strlen(path) >= PATH_MAX) {
		hv_fail(err, EINVAL,
		        "checkpoint: 'store' must be a path of 1 to %d bytes without NUL",
		        PATH_MAX - 1);
		return CONTROL_INVALID_ARGUMENT;
	}
	if (tag) {
		/* The manifest's limit (MANIFEST_TAG_MAX), checked here so the store never
		 * sees a tag it would refuse after all the pages were written. */
		if (!json_is_string(tag) || !json_string_length(tag) ||
		    json_string_length(tag) > 255 ||
		    strlen(json_string_value(tag)) != json_string_length(tag)) {
			hv_fail(err, EINVAL,
			        "checkpoint: 'tag' must be a string of 1 to 255 "
			        "bytes without NUL");
			return CONTROL_INVALID_ARGUMENT;
		}
		t = json_string_value(tag);
	}
	if (full && !json_is_boolean(full)) {
		hv_fail(err, EINVAL, "checkpoint: 'full' must be true or false");
		return CONTROL_INVALID_ARGUMENT;
	}
	return ops->checkpoint(ops->opaque, path, t, full && json_is_true(full), ret, err);
}

static enum control_class cmd_migrate_status(const struct control_ops *ops, json_t *args,
                                             json_t *ret, struct hv_error *err)
{
	return ops->migrate_status(ops->opaque, ret, err);
}

static enum control_class cmd_migrate_cancel(const struct control_ops *ops, json_t *args,
                                             json_t *ret, struct hv_error *err)
{
	return ops->migrate_cancel(ops->opaque, err);
}

static enum control_class cmd_migrate_continue(const struct control_ops *ops, json_t *args,
                                               json_t *ret, struct hv_error *err)
{
	return ops->migrate_continue(ops->opaque, err);
}

/* A string argument of 1..@cap-1 bytes without NUL into @buf; absent: left alone. */
static bool arg_str(json_t *args, const char *name, char *buf, size_t cap, struct hv_error *err)
{
	json_t *v = json_object_get(args, name);
	const char *s;

	if (!v)
		return true;
	s = json_string_value(v);
	if (!s || !*s || strlen(s) != json_string_length(v) || strlen(s) >= cap) {
		hv_fail(err, EINVAL, "migrate: '%s' must be a string of 1 to %zu bytes", name,
		        cap - 1);
		return false;
	}
	memcpy(buf, s, strlen(s) + 1);
	return true;
}

/* A non-negative integer argument not above @max; absent: left alone. */
static bool arg_uint(json_t *args, const char *name, uint64_t max, uint64_t *out,
                     struct hv_error *err)
{
	json_t *v = json_object_get(args, name);

	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		hv_fail(err, EINVAL, "migrate: '%s' must be an integer from 0 to %llu", name,
		        (unsigned long long)max);
		return false;
	}
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static enum control_class cmd_migrate(const struct control_ops *ops, json_t *args, json_t *ret,
                                      struct hv_error *err)
{
	struct mig_params p;
	uint64_t v;
	json_t *hold = json_object_get(args, "switchover-hold");
	json_t *delta = json_object_get(args, "delta");
	char s[32] = "";

	mig_params_default(&p);
	if (!json_object_get(args, "uri")) {
		hv_fail(err, EINVAL, "migrate: missing argument 'uri'");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (!arg_str(args, "uri", p.uri, sizeof(p.uri), err) ||
	    !arg_str(args, "tls-cert", p.tls_cert, sizeof(p.tls_cert), err) ||
	    !arg_str(args, "tls-key", p.tls_key, sizeof(p.tls_key), err) ||
	    !arg_str(args, "tls-ca", p.tls_ca, sizeof(p.tls_ca), err) ||
	    !arg_str(args, "tls-hostname", p.tls_hostname, sizeof(p.tls_hostname), err))
		return CONTROL_INVALID_ARGUMENT;
	p.tls = p.tls_cert[0] || p.tls_key[0] || p.tls_ca[0];
	if (p.tls && !(p.tls_cert[0] && p.tls_key[0] && p.tls_ca[0])) {
		hv_fail(err, EINVAL,
		        "migrate: TLS needs all of 'tls-cert', 'tls-key' and 'tls-ca'");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (p.tls_hostname[0] && !p.tls) {
		hv_fail(err, EINVAL, "migrate: 'tls-hostname' without TLS");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (!arg_uint(args, "downtime-ms", 3600000, &p.downtime_ms, err) ||
	    !arg_uint(args, "bandwidth", UINT64_MAX >> 2, &p.bandwidth, err) ||
	    !arg_uint(args, "max-bytes", UINT64_MAX >> 2, &p.max_bytes, err) ||
	    !arg_uint(args, "delta-cache", 1ull << 40, &p.delta_cache, err))
		return CONTROL_INVALID_ARGUMENT;
	v = p.channels;
	if (!arg_uint(args, "channels", MIG_CHANNELS_MAX, &v, err))
		return CONTROL_INVALID_ARGUMENT;
	if (v < 1) {
		hv_fail(err, EINVAL, "migrate: 'channels' must be 1 to %d", MIG_CHANNELS_MAX);
		return CONTROL_INVALID_ARGUMENT;
	}
	p.channels = (unsigned)v;
	v = p.max_rounds;
	if (!arg_uint(args, "max-rounds", 100000, &v, err))
		return CONTROL_INVALID_ARGUMENT;
	p.max_rounds = (unsigned)v;
	v = 0;
	if (!arg_uint(args, "timeout", 86400 * 7, &v, err))
		return CONTROL_INVALID_ARGUMENT;
	p.timeout_ms = v * 1000;
	v = 1;
	if (!arg_uint(args, "zstd-level", 19, &v, err))
		return CONTROL_INVALID_ARGUMENT;
	if (!arg_str(args, "compress", s, sizeof(s), err))
		return CONTROL_INVALID_ARGUMENT;
	if (!s[0] || !strcmp(s, "zstd")) {
		p.zstd_level = v ? (int)v : 1;
	} else if (!strcmp(s, "none")) {
		p.zstd_level = 0;
	} else {
		hv_fail(err, EINVAL, "migrate: 'compress' must be \"zstd\" or \"none\"");
		return CONTROL_INVALID_ARGUMENT;
	}
	s[0] = '\0';
	if (!arg_str(args, "on-stall", s, sizeof(s), err))
		return CONTROL_INVALID_ARGUMENT;
	if (!s[0] || !strcmp(s, "abort")) {
		p.on_stall = MIG_STALL_ABORT;
	} else if (!strcmp(s, "throttle")) {
		p.on_stall = MIG_STALL_THROTTLE;
	} else if (!strcmp(s, "raise-downtime")) {
		p.on_stall = MIG_STALL_RAISE_DOWNTIME;
	} else {
		hv_fail(
		    err, EINVAL,
		    "migrate: 'on-stall' must be \"abort\", \"throttle\" or \"raise-downtime\"");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (hold && !json_is_boolean(hold)) {
		hv_fail(err, EINVAL, "migrate: 'switchover-hold' must be true or false");
		return CONTROL_INVALID_ARGUMENT;
	}
	p.switchover_hold = hold && json_is_true(hold);
	if (delta && !json_is_boolean(delta)) {
		hv_fail(err, EINVAL, "migrate: 'delta' must be true or false");
		return CONTROL_INVALID_ARGUMENT;
	}
	p.no_delta = delta && json_is_false(delta);
	return ops->migrate(ops->opaque, &p, ret, err);
}

void control_mig_stats(json_t *o, const struct mig_stats *st)
{
	json_object_set_new(o, "phase", json_string(mig_phase_name(st->phase)));
	json_object_set_new(o, "round", json_integer(st->round));
	json_object_set_new(o, "ram_bytes", json_integer((json_int_t)st->ram_bytes));
	json_object_set_new(o, "remaining_bytes", json_integer((json_int_t)st->remaining_bytes));
	json_object_set_new(o, "dirty_rate", json_integer((json_int_t)st->dirty_rate));
	json_object_set_new(o, "bandwidth", json_integer((json_int_t)st->bandwidth));
	json_object_set_new(o, "est_downtime_ms", json_integer((json_int_t)st->est_downtime_ms));
	json_object_set_new(o, "downtime_limit_ms",
	                    json_integer((json_int_t)st->downtime_limit_ms));
	json_object_set_new(o, "throttle_pct", json_integer(st->throttle_pct));
	json_object_set_new(o, "bytes_wire", json_integer((json_int_t)st->bytes_wire));
	json_object_set_new(o, "pages_sent", json_integer((json_int_t)st->pages_sent));
	json_object_set_new(o, "pages_zero", json_integer((json_int_t)st->pages_zero));
	json_object_set_new(o, "pages_zstd", json_integer((json_int_t)st->pages_zstd));
	json_object_set_new(o, "pages_raw", json_integer((json_int_t)st->pages_raw));
	json_object_set_new(o, "pages_delta", json_integer((json_int_t)st->pages_delta));
	json_object_set_new(o, "total_ms", json_integer((json_int_t)st->total_ms));
	json_object_set_new(o, "setup_ms", json_integer((json_int_t)st->setup_ms));
	json_object_set_new(o, "precopy_ms", json_integer((json_int_t)st->precopy_ms));
	json_object_set_new(o, "downtime_ms", json_integer((json_int_t)st->downtime_ms));
	json_object_set_new(o, "throughput_mbps", json_real(st->throughput_mbps));
	json_object_set_new(o, "cpu_seconds", json_real(st->cpu_seconds));
	json_object_set_new(o, "tls",
	                    st->tls_version[0] ? json_string(st->tls_version) : json_null());
	json_object_set_new(o, "error", st->error[0] ? safe_string(st->error) : json_null());
}

static const char *const no_args[] = {NULL};
static const char *const migrate_args[] = {
    "uri",       "tls-cert", "tls-key",         "tls-ca",   "tls-hostname", "downtime-ms",
    "bandwidth", "compress", "zstd-level",      "channels", "max-rounds",   "max-bytes",
    "on-stall",  "timeout",  "switchover-hold", "delta",    "delta-cache",  NULL};
static const char *const save_args[] = {"file", "keep-running", NULL};
static const char *const checkpoint_args[] = {"store", "tag", "full", NULL};

static const struct command commands[] = {
    {"info", no_args, cmd_info},
    {"pause", no_args, cmd_pause},
    {"resume", no_args, cmd_resume},
    {"save", save_args, cmd_save},
    {"checkpoint", checkpoint_args, cmd_checkpoint},
    {"quit", no_args, cmd_quit},
    {"migrate", migrate_args, cmd_migrate},
    {"migrate-status", no_args, cmd_migrate_status},
    {"migrate-cancel", no_args, cmd_migrate_cancel},
    {"migrate-continue", no_args, cmd_migrate_continue},
};

static const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static bool arg_allowed(const struct command *cmd, const char *key)
{
	for (const char *const *a = cmd->args; *a; a++)
		if (!strcmp(*a, key))
			return true;
	return false;
}

/* Check the request's shape; on success *@cmd and *@args (borrowed) are set. */
static enum control_class check_request(json_t *req, const struct command **cmd, json_t **args,
                                        struct hv_error *err)
{
	const char *key;
	json_t *val, *exec;

	if (!json_is_object(req)) {
		hv_fail(err, EINVAL, "a request must be a JSON object");
		return CONTROL_INVALID_REQUEST;
	}
	json_object_foreach(req, key, val)
	{
		if (strcmp(key, "id") && strcmp(key, "execute") && strcmp(key, "arguments")) {
			hv_fail(err, EINVAL, "unknown request member '%.*s'", PEER_STR(key));
			return CONTROL_INVALID_REQUEST;
		}
	}
	exec = json_object_get(req, "execute");
	if (!exec) {
		hv_fail(err, EINVAL, "request has no 'execute' member");
		return CONTROL_INVALID_REQUEST;
	}
	if (!json_is_string(exec)) {
		hv_fail(err, EINVAL, "'execute' must be a string");
		return CONTROL_INVALID_REQUEST;
	}
	*args = json_object_get(req, "arguments");
	if (*args && !json_is_object(*args)) {
		hv_fail(err, EINVAL, "'arguments' must be an object");
		return CONTROL_INVALID_REQUEST;
	}
	*cmd = command_find(json_string_value(exec));
	if (!*cmd) {
		hv_fail(err, ENOENT, "unknown command '%.*s'", PEER_STR(json_string_value(exec)));
		return CONTROL_COMMAND_NOT_FOUND;
	}
	if (*args) {
		json_object_foreach(*args, key, val)
		{
			if (!arg_allowed(*cmd, key)) {
				hv_fail(err, EINVAL, "%s: unknown argument '%.*s'", (*cmd)->name,
				        PEER_STR(key));
				return CONTROL_INVALID_ARGUMENT;
			}
		}
	}
	return CONTROL_OK;
}

char *control_handle_line(const struct control_ops *ops, const char *line, size_t len)
{
	struct hv_error err = {0};
	const struct command *cmd = NULL;
	json_t *req, *args = NULL, *id = NULL, *ret;
	enum control_class c;
	json_error_t jerr;
	char *out;

	if (len > CONTROL_MAX_LINE)
		return control_error_line(CONTROL_PARSE_ERROR, "request line too long");
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!req) {
		hv_fail(&err, EINVAL, "invalid JSON at column %d: %s", jerr.column, jerr.text);
		return control_error_line(CONTROL_PARSE_ERROR, err.msg);
	}
	if (json_is_object(req))
		id = json_object_get(req, "id");
	ret = json_object();
	if (!ret) {
		json_decref(req);
		return NULL;
	}
	c = check_request(req, &cmd, &args, &err);
	if (c == CONTROL_OK) {
		hv_error_clear(&err);
		c = cmd->run(ops, args, ret, &err);
		if (c != CONTROL_OK && !err.msg[0])
			hv_fail(&err, EIO, "%s failed", cmd->name);
	}
	out = reply_line(id, c, ret, err.msg);
	json_decref(ret);
	json_decref(req);
	return out;
}

static json_t *timestamp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return json_pack("{s:I, s:I}", "seconds", (json_int_t)ts.tv_sec, "microseconds",
	                 (json_int_t)(ts.tv_nsec / 1000));
}

char *control_greeting(const char *version)
{
	json_t *cmds = json_array();

	for (size_t i = 0; cmds && i < sizeof(commands) / sizeof(commands[0]); i++)
		json_array_append_new(cmds, json_string(commands[i].name));
	if (!cmds)
		return NULL;
	return dump_line(json_pack("{s:{s:s, s:i, s:[s], s:o}}", "hv", "version", version,
	                           "protocol", CONTROL_PROTOCOL_VERSION, "capabilities", "events",
	                           "commands", cmds));
}

char *control_event(const char *name, json_t *data)
{
	json_t *ev = json_pack("{s:s, s:o}", "event", name, "timestamp", timestamp_now());

	if (ev && data && json_object_set(ev, "data", data) < 0) {
		json_decref(ev);
		ev = NULL;
	}
	json_decref(data);
	return dump_line(ev);
}
