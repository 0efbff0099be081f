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

static const char *const no_args[] = {NULL};
static const char *const save_args[] = {"file", "keep-running", NULL};

static const struct command commands[] = {
    {"info", no_args, cmd_info},   {"pause", no_args, cmd_pause}, {"resume", no_args, cmd_resume},
    {"save", save_args, cmd_save}, {"quit", no_args, cmd_quit},
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
