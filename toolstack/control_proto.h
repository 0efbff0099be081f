/*
 * control_proto.h - the control-socket protocol without the socket: one request line in,
 * one reply line out.
 *
 * The server (control.c) frames lines and keeps connections; this module parses a line,
 * checks it against the command table, calls the backend and builds the reply. Keeping it
 * free of sockets and of struct vm lets the fuzzer (fuzz/fuzz_control.c) drive every
 * path with stub backends. The wire format is docs/control-protocol.md.
 */
#ifndef HV_TOOLSTACK_CONTROL_PROTO_H
#define HV_TOOLSTACK_CONTROL_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "hv/error.h"
#include "migrate/migration.h"

/* Version of the wire protocol, announced in the greeting. */
#define CONTROL_PROTOCOL_VERSION 1

/* A request line longer than this (without its newline) is refused and the peer dropped. */
#define CONTROL_MAX_LINE 65536

/* The error classes of docs/control-protocol.md; backends return one of the last three. */
enum control_class {
	CONTROL_OK = 0,
	CONTROL_PARSE_ERROR,       /* not JSON, or the line is too long */
	CONTROL_INVALID_REQUEST,   /* JSON, but not a request object */
	CONTROL_COMMAND_NOT_FOUND, /* "execute" names no command */
	CONTROL_INVALID_ARGUMENT,  /* a missing, unknown or mistyped argument */
	CONTROL_INVALID_STATE,     /* the VM is in the wrong state for the command */
	CONTROL_FAILED,            /* the command ran and failed (e.g. save: disk full) */
};

/* control_class_name - the wire name of @c ("ParseError", ...). */
const char *control_class_name(enum control_class c);

/*
 * What the commands act on. Each callback returns CONTROL_OK, or one of
 * CONTROL_INVALID_STATE / CONTROL_FAILED with @err saying why (the message becomes the
 * reply's "desc"). Callbacks run on the caller's thread and may block (pause waits for
 * the vCPUs, save writes the whole of guest RAM).
 */
struct control_ops {
	void *opaque;
	/* Fill @ret (an empty object, owned by the caller) with the VM's description. */
	enum control_class (*info)(void *opaque, json_t *ret, struct hv_error *err);
	enum control_class (*pause)(void *opaque, struct hv_error *err);
	enum control_class (*resume)(void *opaque, struct hv_error *err);
	/* Save to @file (a NUL-free path); keep the VM running afterwards or stop it. May add
	 * members to @ret (owned by the caller). */
	enum control_class (*save)(void *opaque, const char *file, bool keep_running, json_t *ret,
	                           struct hv_error *err);
	enum control_class (*quit)(void *opaque, struct hv_error *err);
	/* Checkpoint into the store at @store (a NUL-free path), tagged @tag (NULL: none;
	 * else 1 to 255 bytes), incremental against the VM's last checkpoint unless @full.
	 * Adds id, pause_ms, duration_ms, pages_written, bytes_stored to @ret. */
	enum control_class (*checkpoint)(void *opaque, const char *store, const char *tag,
	                                 bool full, json_t *ret, struct hv_error *err);
	/* Start a migration per @p (checked); progress comes as MIGRATION events. */
	enum control_class (*migrate)(void *opaque, const struct mig_params *p, json_t *ret,
	                              struct hv_error *err);
	/* The current (or last) migration's statistics into @ret (control_mig_stats). */
	enum control_class (*migrate_status)(void *opaque, json_t *ret, struct hv_error *err);
	enum control_class (*migrate_cancel)(void *opaque, struct hv_error *err);
	/* Release a migration started with switchover-hold. */
	enum control_class (*migrate_continue)(void *opaque, struct hv_error *err);
};

/*
 * control_mig_stats - @st as the members of a MIGRATION event and of migrate-status's
 * reply (docs/control-protocol.md), added to @obj.
 */
void control_mig_stats(json_t *obj, const struct mig_stats *st);

/*
 * control_handle_line - answer one request. @line holds @len bytes without the newline,
 * any bytes at all (hostile input). Returns the reply as a malloc'd, NUL-terminated JSON
 * text without a newline (the caller frees it), or NULL only when out of memory.
 */
char *control_handle_line(const struct control_ops *ops, const char *line, size_t len);

/*
 * control_error_line - a reply carrying an error of class @c with message @desc and no
 * id (for failures found before a request could be parsed, e.g. an over-long line).
 * Caller frees; NULL when out of memory.
 */
char *control_error_line(enum control_class c, const char *desc);

/* control_greeting - the line sent on connect: version and capabilities. Caller frees. */
char *control_greeting(const char *version);

/*
 * control_event - an event line {"event": @name, "data": @data, "timestamp": ...}.
 * Takes the reference to @data (which may be NULL for none). Caller frees the result.
 */
char *control_event(const char *name, json_t *data);

#endif
