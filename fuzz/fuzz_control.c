/*
 * fuzz_control.c - libFuzzer target for the control-socket request handler.
 *
 * Feeds one line at a time to control_handle_line() with stub commands (no VM, no
 * socket, no files): whatever the bytes, the answer must be exactly one line of JSON that
 * is either a reply or an error with a known class. The stubs echo peer-chosen strings
 * back into messages, so the UTF-8 fallback of the reply builder is exercised too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/control_proto.h"

static unsigned calls;

static enum control_class stub_info(void *opaque, json_t *ret, struct hv_error *err)
{
	json_object_set_new(ret, "name", json_string("fuzz"));
	json_object_set_new(ret, "state", json_string("running"));
	return CONTROL_OK;
}

static enum control_class stub_pause(void *opaque, struct hv_error *err)
{
	if (++calls % 2)
		return CONTROL_OK;
	hv_fail(err, 22, "cannot pause a VM that is shut down");
	return CONTROL_INVALID_STATE;
}

static enum control_class stub_resume(void *opaque, struct hv_error *err)
{
	return CONTROL_OK;
}

/* Quotes the peer's path, cut at an arbitrary byte, into the error message. */
static enum control_class stub_save(void *opaque, const char *file, bool keep, json_t *ret,
                                    struct hv_error *err)
{
	if (strlen(file) % 3 == 0) {
		json_object_set_new(ret, "file", json_string(file));
		return CONTROL_OK;
	}
	hv_fail(err, 28, "%.*s: no space left on device", (int)(strlen(file) % 61), file);
	return CONTROL_FAILED;
}

/* Checks what cmd_checkpoint validated, then fails quoting the peer's path. */
static enum control_class stub_checkpoint(void *opaque, const char *store, const char *tag,
                                          bool full, json_t *ret, struct hv_error *err)
{
	if (!*store || (tag && (!*tag || strlen(tag) > 255)))
		abort();
	if (full) {
		json_object_set_new(ret, "id", json_string("0123456789abcdef"));
		return CONTROL_OK;
	}
	hv_fail(err, 28, "%.*s: no space left on device", (int)(strlen(store) % 61), store);
	return CONTROL_FAILED;
}

static enum control_class stub_quit(void *opaque, struct hv_error *err)
{
	return CONTROL_OK;
}

/* Checks what cmd_migrate validated: a parameter out of range is a bug there. */
static enum control_class stub_migrate(void *opaque, const struct mig_params *p, json_t *ret,
                                       struct hv_error *err)
{
	if (!p->uri[0] || p->channels < 1 || p->channels > MIG_CHANNELS_MAX || p->zstd_level < 0 ||
	    p->zstd_level > 19 || (p->tls && !p->tls_ca[0]))
		abort();
	json_object_set_new(ret, "uri", json_string(p->uri));
	return CONTROL_OK;
}

static enum control_class stub_migrate_status(void *opaque, json_t *ret, struct hv_error *err)
{
	struct mig_stats st = {.phase = MIG_FAILED};

	snprintf(st.error, sizeof(st.error), "peer said \xff\xfe");
	control_mig_stats(ret, &st);
	return CONTROL_OK;
}

static enum control_class stub_migrate_cancel(void *opaque, struct hv_error *err)
{
	hv_fail(err, 16, "the migration has switched over");
	return CONTROL_INVALID_STATE;
}

static const struct control_ops ops = {
    .info = stub_info,
    .pause = stub_pause,
    .resume = stub_resume,
    .save = stub_save,
    .checkpoint = stub_checkpoint,
    .quit = stub_quit,
    .migrate = stub_migrate,
    .migrate_status = stub_migrate_status,
    .migrate_cancel = stub_migrate_cancel,
    .migrate_continue = stub_migrate_cancel,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *reply = control_handle_line(&ops, (const char *)data, size);
	json_t *r, *e;

	if (!reply)
		return 0; /* out of memory */
	if (strchr(reply, '\n'))
		abort(); /* a reply is one line */
	r = json_loads(reply, 0, NULL);
	if (!json_is_object(r))
		abort();
	e = json_object_get(r, "error");
	if (e && (!json_is_string(json_object_get(e, "class")) ||
	          !json_is_string(json_object_get(e, "desc"))))
		abort();
	if (!e && !json_is_object(json_object_get(r, "return")))
		abort();
	json_decref(r);
	free(reply);
	return 0;
}
