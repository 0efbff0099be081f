/*
 * hvd_proto.h - the hvd API without the socket: one request line in, a checked request
 * out (docs/hvd-api.md).
 *
 * The daemon (hvd_server.c) frames lines and keeps connections; this module only turns
 * a line of hostile bytes into a struct hvd_request whose every member has been checked
 * (known command, known arguments, right types, names that are safe as file names,
 * absolute paths), so the command handlers never see raw JSON. It has no sockets and no
 * daemon state, so fuzz/fuzz_hvd_request.c can drive all of it. Error classes and event
 * lines are those of the VM control socket (control_proto.h).
 */
#ifndef HV_TOOLSTACK_HVD_PROTO_H
#define HV_TOOLSTACK_HVD_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "hv/error.h"
#include "toolstack/control_proto.h"

#define HVD_PROTOCOL_VERSION 1

/*
 * The longest request line, without its newline: room for a config text of
 * DOMCFG_FILE_MAX bytes even when JSON escaping doubles it.
 */
#define HVD_MAX_LINE (256 * 1024)

enum hvd_cmd {
	HVD_CREATE,
	HVD_LIST,
	HVD_INFO,
	HVD_START,
	HVD_PAUSE,
	HVD_RESUME,
	HVD_SHUTDOWN,
	HVD_DESTROY,
	HVD_DELETE,
	HVD_SAVE,
	HVD_RESTORE,
	HVD_CHECKPOINT,
	HVD_SUBSCRIBE,
	HVD_MIGRATE,
	HVD_MIGRATE_CANCEL,
	HVD_MIGRATE_INCOMING,
	HVD_NCMDS
};

/*
 * A checked request. The strings point into @json (kept alive by the struct) and are
 * NUL-free; NULL when the argument was not given.
 */
struct hvd_request {
	json_t *json; /* the parsed line (owned) */
	json_t *id;   /* borrowed from @json; NULL when the request had none */
	enum hvd_cmd cmd;
	const char *name;   /* a valid domain name (hvd_name_valid) */
	const char *config; /* create: the config text */
	size_t config_len;
	const char *file;    /* create: the config's path; save, restore: the save file */
	const char *store;   /* checkpoint, restore: the store directory */
	const char *ckpt_id; /* restore: a checkpoint id, or "latest"; NULL: latest */
	const char *tag;     /* checkpoint: 1 to 255 bytes */
	bool full;           /* checkpoint */
	/* migrate, migrate-incoming: every argument but the name, type-checked, to be handed
	 * on (owned; an empty object for the other commands) */
	json_t *args;
};

/* hvd_cmd_name - the wire name of @c ("create", ...). */
const char *hvd_cmd_name(enum hvd_cmd c);

/*
 * hvd_name_valid - whether @s is a domain name: 1 to 63 bytes of A-Z a-z 0-9 _ . -, not
 * starting with '.' or '-' (the rule of docs/domain-config.md). Such a name is safe as a
 * file name in the state directory.
 */
bool hvd_name_valid(const char *s);

/*
 * hvd_request_parse - check the request line @line (@len bytes without the newline, any
 * bytes at all). Returns CONTROL_OK with @r filled in (release it with
 * hvd_request_free), or an error class with @r empty, @err saying why, and *@id set to a
 * new reference to the request's id when one could be found (else NULL), so the error
 * reply can carry it.
 */
enum control_class hvd_request_parse(const char *line, size_t len, struct hvd_request *r,
                                     json_t **id, struct hv_error *err);

/* hvd_request_free - release @r; safe on an empty or already released request. */
void hvd_request_free(struct hvd_request *r);

/*
 * hvd_reply - the reply line to a request whose id is @id (borrowed; NULL for none):
 * {"id":..,"return":@ret} when @c is CONTROL_OK (@ret borrowed; NULL means {}), else
 * {"id":..,"error":{"class":..,"desc":@desc}}. Malloc'd, no newline; NULL when out of
 * memory.
 */
char *hvd_reply(json_t *id, enum control_class c, json_t *ret, const char *desc);

/* hvd_greeting - the line sent on connect: {"hvd": {version, protocol, commands}}. */
char *hvd_greeting(const char *version);

#endif
