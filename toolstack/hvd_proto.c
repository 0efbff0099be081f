/*
 * hvd_proto.c - parse and check an hvd API request.
 *
 * A fixed table says, per command, which arguments exist and which are required; the
 * request is refused before any handler runs if it has a member or an argument the
 * table does not know, so a misspelt option never passes silently. Names and paths are
 * checked here because they become file names: a domain name can never climb out of the
 * state directory, and a path is absolute so it means the same to hvd as to its client.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/manifest.h"
#include "toolstack/domcfg.h"
#include "toolstack/hvd_proto.h"

/*
 * Argument kinds. The A_M* kinds are options handed on to a VM or a receiver as they
 * are (migrate, migrate-incoming): checked for type here, for range by whoever uses them,
 * and collected in hvd_request.args.
 */
enum { A_NAME = 1, A_PATH, A_TEXT, A_TAG, A_BOOL, A_MSTR, A_MINT, A_MBOOL, A_MPATH, A_CKID };

#define ARGS_MAX 20

struct arg {
	const char *key;
	int kind;
	bool required;
};

struct command {
	const char *name;
	struct arg args[ARGS_MAX];
};

#define NAME_REQ                                                                                   \
	{                                                                                          \
		"name", A_NAME, true                                                               \
	}

static const struct command commands[HVD_NCMDS] = {
    [HVD_CREATE] = {"create", {{"config", A_TEXT, true}, {"file", A_PATH, false}}},
    [HVD_LIST] = {"list", {{0}}},
    [HVD_INFO] = {"info", {NAME_REQ}},
    [HVD_START] = {"start", {NAME_REQ}},
    [HVD_PAUSE] = {"pause", {NAME_REQ}},
    [HVD_RESUME] = {"resume", {NAME_REQ}},
    [HVD_SHUTDOWN] = {"shutdown", {NAME_REQ}},
    [HVD_DESTROY] = {"destroy", {NAME_REQ}},
    [HVD_DELETE] = {"delete", {NAME_REQ}},
    [HVD_SAVE] = {"save", {NAME_REQ, {"file", A_PATH, true}}},
    /* A save file, or a checkpoint of a store; one of the two (check()). */
    [HVD_RESTORE] = {"restore",
                     {{"file", A_PATH, false},
                      {"store", A_PATH, false},
                      {"id", A_CKID, false},
                      {"name", A_NAME, false}}},
    [HVD_CHECKPOINT] =
        {"checkpoint",
         {NAME_REQ, {"store", A_PATH, true}, {"tag", A_TAG, false}, {"full", A_BOOL, false}}},
    [HVD_SUBSCRIBE] = {"subscribe", {{0}}},
    /* The VM's migrate arguments (docs/control-protocol.md), but for the name. */
    [HVD_MIGRATE] = {"migrate",
                     {NAME_REQ,
                      {"uri", A_MSTR, true},
                      {"tls-cert", A_MPATH, false},
                      {"tls-key", A_MPATH, false},
                      {"tls-ca", A_MPATH, false},
                      {"tls-hostname", A_MSTR, false},
                      {"downtime-ms", A_MINT, false},
                      {"bandwidth", A_MINT, false},
                      {"compress", A_MSTR, false},
                      {"zstd-level", A_MINT, false},
                      {"channels", A_MINT, false},
                      {"max-rounds", A_MINT, false},
                      {"max-bytes", A_MINT, false},
                      {"on-stall", A_MSTR, false},
                      {"timeout", A_MINT, false},
                      {"switchover-hold", A_MBOOL, false},
                      {"delta", A_MBOOL, false},
                      {"delta-cache", A_MINT, false}}},
    [HVD_MIGRATE_CANCEL] = {"migrate-cancel", {NAME_REQ}},
    [HVD_MIGRATE_INCOMING] =
        {"migrate-incoming",
         {NAME_REQ, {"memory", A_MINT, true}, {"vcpus", A_MINT, true}, {"accel", A_MSTR, true}}},
};

/*
 * At most 64 bytes of peer-supplied @s, control characters made '?', for quoting in a
 * message: messages are one line, whatever the peer sent. Returns @buf (65 bytes).
 */
static const char *peer_str(const char *s, char *buf)
{
	size_t i;

	for (i = 0; s[i] && i < 64; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

const char *hvd_cmd_name(enum hvd_cmd c)
{
	return (unsigned)c < HVD_NCMDS ? commands[c].name : "?";
}

bool hvd_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > DOMCFG_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static const struct arg *arg_find(const struct command *cmd, const char *key)
{
	for (const struct arg *a = cmd->args; a < cmd->args + ARGS_MAX && a->key; a++)
		if (!strcmp(a->key, key))
			return a;
	return NULL;
}

/* Check one argument's value and store it in @r. */
static enum control_class take_arg(const struct command *cmd, const struct arg *a, json_t *v,
                                   struct hvd_request *r, struct hv_error *err)
{
	const char *s = json_string_value(v);
	size_t len = s ? json_string_length(v) : 0;
	char q[65];

	if (a->kind == A_BOOL || a->kind == A_MBOOL) {
		if (!json_is_boolean(v)) {
			hv_fail(err, EINVAL, "%s: '%s' must be true or false", cmd->name, a->key);
			return CONTROL_INVALID_ARGUMENT;
		}
		if (a->kind == A_BOOL)
			r->full = json_is_true(v);
		else
			json_object_set(r->args, a->key, v);
		return CONTROL_OK;
	}
	if (a->kind == A_MINT) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			hv_fail(err, EINVAL, "%s: '%s' must be an integer of 0 or more", cmd->name,
			        a->key);
			return CONTROL_INVALID_ARGUMENT;
		}
		json_object_set(r->args, a->key, v);
		return CONTROL_OK;
	}
	if (!s || strlen(s) != len) {
		hv_fail(err, EINVAL, "%s: '%s' must be a string without NUL", cmd->name, a->key);
		return CONTROL_INVALID_ARGUMENT;
	}
	switch (a->kind) {
	case A_NAME:
		if (!hvd_name_valid(s)) {
			hv_fail(err, EINVAL,
			        "%s: '%s' is not a domain name (1 to %d of A-Z a-z 0-9 _ . -, "
			        "not starting with . or -)",
			        cmd->name, peer_str(s, q), DOMCFG_NAME_MAX);
			return CONTROL_INVALID_ARGUMENT;
		}
		r->name = s;
		break;
	case A_PATH:
		if (s[0] != '/' || len >= PATH_MAX) {
			hv_fail(err, EINVAL,
			        "%s: '%s' must be an absolute path of at most %d bytes", cmd->name,
			        a->key, PATH_MAX - 1);
			return CONTROL_INVALID_ARGUMENT;
		}
		if (!strcmp(a->key, "store"))
			r->store = s;
		else
			r->file = s;
		break;
	case A_TEXT:
		if (len > DOMCFG_FILE_MAX) {
			hv_fail(err, EFBIG, "%s: '%s' is over %d bytes", cmd->name, a->key,
			        DOMCFG_FILE_MAX);
			return CONTROL_INVALID_ARGUMENT;
		}
		r->config = s;
		r->config_len = len;
		break;
	case A_MSTR:
	case A_MPATH:
		if (!len || len >= PATH_MAX || (a->kind == A_MPATH && s[0] != '/')) {
			hv_fail(err, EINVAL, "%s: '%s' must be %s of 1 to %d bytes", cmd->name,
			        a->key, a->kind == A_MPATH ? "an absolute path" : "a string",
			        PATH_MAX - 1);
			return CONTROL_INVALID_ARGUMENT;
		}
		json_object_set(r->args, a->key, v);
		break;
	case A_CKID:
		if (strcmp(s, "latest") &&
		    (len != MANIFEST_ID_LEN || strspn(s, "0123456789abcdef") != len)) {
			hv_fail(err, EINVAL,
			        "%s: 'id' must be a checkpoint id (%d hex digits) or latest",
			        cmd->name, MANIFEST_ID_LEN);
			return CONTROL_INVALID_ARGUMENT;
		}
		r->ckpt_id = s;
		break;
	case A_TAG:
		/* The manifest's limit, checked before the VM spends time on the pages. */
		if (!len || len > 255) {
			hv_fail(err, EINVAL, "%s: 'tag' must be 1 to 255 bytes", cmd->name);
			return CONTROL_INVALID_ARGUMENT;
		}
		r->tag = s;
		break;
	}
	return CONTROL_OK;
}

static enum control_class check(json_t *req, struct hvd_request *r, struct hv_error *err)
{
	const struct command *cmd = NULL;
	const char *key;
	json_t *val, *exec, *args;
	char q[65];

	if (!json_is_object(req)) {
		hv_fail(err, EINVAL, "a request must be a JSON object");
		return CONTROL_INVALID_REQUEST;
	}
	json_object_foreach(req, key, val)
	{
		if (strcmp(key, "id") && strcmp(key, "execute") && strcmp(key, "arguments")) {
			hv_fail(err, EINVAL, "unknown request member '%s'", peer_str(key, q));
			return CONTROL_INVALID_REQUEST;
		}
	}
	exec = json_object_get(req, "execute");
	if (!json_is_string(exec)) {
		hv_fail(err, EINVAL,
		        exec ? "'execute' must be a string" : "request has no 'execute' member");
		return CONTROL_INVALID_REQUEST;
	}
	args = json_object_get(req, "arguments");
	if (args && !json_is_object(args)) {
		hv_fail(err, EINVAL, "'arguments' must be an object");
		return CONTROL_INVALID_REQUEST;
	}
	for (int i = 0; i < HVD_NCMDS; i++)
		if (!strcmp(commands[i].name, json_string_value(exec))) {
			cmd = &commands[i];
			r->cmd = (enum hvd_cmd)i;
		}
	if (!cmd || strlen(json_string_value(exec)) != json_string_length(exec)) {
		hv_fail(err, ENOENT, "unknown command '%s'", peer_str(json_string_value(exec), q));
		return CONTROL_COMMAND_NOT_FOUND;
	}
	r->args = json_object();
	if (!r->args) {
		hv_fail(err, ENOMEM, "out of memory");
		return CONTROL_FAILED;
	}
	json_object_foreach(args, key, val)
	{
		const struct arg *a = arg_find(cmd, key);
		enum control_class c;

		if (!a) {
			hv_fail(err, EINVAL, "%s: unknown argument '%s'", cmd->name,
			        peer_str(key, q));
			return CONTROL_INVALID_ARGUMENT;
		}
		c = take_arg(cmd, a, val, r, err);
		if (c != CONTROL_OK)
			return c;
	}
	for (const struct arg *a = cmd->args; a < cmd->args + ARGS_MAX && a->key; a++)
		if (a->required && !json_object_get(args, a->key)) {
			hv_fail(err, EINVAL, "%s: missing argument '%s'", cmd->name, a->key);
			return CONTROL_INVALID_ARGUMENT;
		}
	if (r->cmd == HVD_RESTORE && !r->file == !r->store) {
		hv_fail(err, EINVAL, "restore: give 'file' (a save file) or 'store' (and 'id'), %s",
		        r->file ? "not both" : "one of them");
		return CONTROL_INVALID_ARGUMENT;
	}
	if (r->ckpt_id && !r->store) {
		hv_fail(err, EINVAL, "restore: 'id' goes with 'store'");
		return CONTROL_INVALID_ARGUMENT;
	}
	return CONTROL_OK;
}

/* Keep a message on one line, whatever bytes it quotes. */
static void scrub(struct hv_error *err)
{
	if (!err)
		return;
	for (char *p = err->msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

enum control_class hvd_request_parse(const char *line, size_t len, struct hvd_request *r,
                                     json_t **id, struct hv_error *err)
{
	json_error_t jerr;
	enum control_class c;
	json_t *req;

	memset(r, 0, sizeof(*r));
	*id = NULL;
	if (len > HVD_MAX_LINE) {
		hv_fail(err, EMSGSIZE, "request line longer than %d bytes", HVD_MAX_LINE);
		return CONTROL_PARSE_ERROR;
	}
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!req) {
		hv_fail(err, EINVAL, "invalid JSON at column %d: %s", jerr.column, jerr.text);
		scrub(err); /* jansson quotes the bytes near the error */
		return CONTROL_PARSE_ERROR;
	}
	c = check(req, r, err);
	if (c != CONTROL_OK) {
		scrub(err);
		*id = json_is_object(req) ? json_incref(json_object_get(req, "id")) : NULL;
		json_decref(r->args);
		json_decref(req);
		memset(r, 0, sizeof(*r));
		return c;
	}
	r->json = req;
	r->id = json_object_get(req, "id");
	return CONTROL_OK;
}

void hvd_request_free(struct hvd_request *r)
{
	json_decref(r->args);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* A JSON string for @s; messages may quote peer bytes cut mid-character. */
static json_t *safe_string(const char *s)
{
	json_t *j = json_string(s);
	char buf[HV_ERROR_MSG];
	size_t i;

	if (j)
		return j;
	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
	return json_string(buf);
}

char *hvd_reply(json_t *id, enum control_class c, json_t *ret, const char *desc)
{
	json_t *r = json_object();
	char *s = NULL;

	if (!r)
		return NULL;
	if (id)
		json_object_set(r, "id", id);
	if (c == CONTROL_OK)
		json_object_set_new(r, "return", ret ? json_incref(ret) : json_object());
	else
		json_object_set_new(r, "error",
		                    json_pack("{s:s, s:o}", "class", control_class_name(c), "desc",
		                              safe_string(desc ? desc : "failed")));
	s = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(10));
	json_decref(r);
	return s;
}

char *hvd_greeting(const char *version)
{
	json_t *cmds = json_array(), *g;
	char *s;

	for (int i = 0; cmds && i < HVD_NCMDS; i++)
		json_array_append_new(cmds, json_string(commands[i].name));
	g = json_pack("{s:{s:s, s:i, s:[s], s:o}}", "hvd", "version", version, "protocol",
	              HVD_PROTOCOL_VERSION, "capabilities", "events", "commands", cmds);
	s = g ? json_dumps(g, JSON_COMPACT) : NULL;
	json_decref(g);
	return s;
}
