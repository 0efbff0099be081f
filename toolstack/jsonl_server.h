/*
 * jsonl_server.h - a newline-delimited JSON server on a Unix socket, for a libev loop.
 *
 * The mechanics that the VM control socket (control.c) and hvd's API socket
 * (hvd_server.c) share: a listening socket (mode 0600, a stale one replaced, removed on
 * close only if it is still ours), clients with a bounded input line and a bounded output
 * queue, and the orderly end of a connection after an error. What the lines mean is the
 * caller's: it gets each request line through a callback and answers with jsonl_send.
 *
 * Threading: a server lives on the loop it was given. Every function here, and every
 * callback, runs on that loop's thread (before ev_run starts or after it returns counts).
 *
 * Lifetime of a client: it is closed when the peer hangs up, when its output queue
 * overflows, when a send fails, after an over-long line, or by jsonl_close. A closed
 * client is never freed under a caller that holds a reference (jsonl_ref): sends to it
 * are silently dropped, and its memory goes with the last reference.
 */
#ifndef HV_TOOLSTACK_JSONL_SERVER_H
#define HV_TOOLSTACK_JSONL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <ev.h>

#include "hv/error.h"

struct jsonl_server;
struct jsonl_client;

struct jsonl_config {
	size_t max_line;       /* longest request line, its newline not counted */
	size_t max_out;        /* unsent output beyond which a client is dropped */
	unsigned max_clients;  /* connected at once; one more gets busy_line and is closed */
	int backlog;           /* listen(2) */
	const char *busy_line; /* the whole line for a client over max_clients, '\n' included */
	const char *option;    /* names the path in a length error ("--control") */
	const char *in_use;    /* the error when a live server answers at the path */
	void *arg;             /* the callbacks' first argument */
	/* A new client, before any line is read: attach per-client data, then greet it (a
	 * greeting that cannot be sent closes @c at once: on_close comes before this returns). */
	void (*on_accept)(void *arg, struct jsonl_client *c);
	/*
	 * One request line: @len bytes (1 or more, the "\n" or "\r\n" removed), NUL-
	 * terminated in place, valid until the callback returns; any bytes at all. Lines a
	 * client sent before it hung up still come, after the hang-up; their replies are
	 * dropped. The callback may send and take references; it must not jsonl_close.
	 */
	void (*on_line)(void *arg, struct jsonl_client *c, char *line, size_t len);
	/*
	 * A line longer than max_line: send the error reply that says so, @desc ("request
	 * line longer than N bytes; closing") being its text. The server then stops reading
	 * requests from @c, half-closes once the reply is out and drops what still comes
	 * (bounded by max_out), so the reply is not lost to a reset.
	 */
	void (*on_overlong)(void *arg, struct jsonl_client *c, const char *desc);
	/* @c has been closed (once per client): release its per-client data. NULL: none. */
	void (*on_close)(void *arg, struct jsonl_client *c);
};

/*
 * jsonl_listen - serve @cfg (copied; its strings must outlive the server) on a new socket
 * at @path, watched on @loop. @path must be absent or a stale socket (nobody accepts on
 * it), which is replaced; anything else is an error. Returns the server, or NULL with
 * @err naming the path and the cause (nothing is left at @path then).
 */
struct jsonl_server *jsonl_listen(struct ev_loop *loop, const char *path,
                                  const struct jsonl_config *cfg, struct hv_error *err);

/*
 * jsonl_close - stop accepting, give the clients up to @flush_ms in all to take their
 * queued output (0: what goes without waiting), close them (on_close for each), remove
 * the socket file if it is still ours and free the server. Clients still referenced
 * stay allocated, closed, until their last jsonl_unref. @s may be NULL; not to be called
 * from one of @s's callbacks.
 */
void jsonl_close(struct jsonl_server *s, int flush_ms);

/*
 * jsonl_send - queue @line (NUL-terminated, no newline; one is added) to @c and write
 * what the socket takes at once. A client whose queue would pass max_out is closed
 * rather than allowed to grow our memory. No-op for a closed or closing client, or a
 * NULL @line.
 */
void jsonl_send(struct jsonl_client *c, const char *line);

/* jsonl_broadcast - jsonl_send @line to every open client of @s (may be NULL). */
void jsonl_broadcast(struct jsonl_server *s, const char *line);

/*
 * jsonl_first, jsonl_next - the open clients of @s (NULL: none). Sending while iterating
 * is safe: a client closed meanwhile stays in the list until the loop next sleeps.
 */
struct jsonl_client *jsonl_first(struct jsonl_server *s);
struct jsonl_client *jsonl_next(struct jsonl_client *c);

/* jsonl_ref, jsonl_unref - keep @c's memory past its close (a reply still to come). */
void jsonl_ref(struct jsonl_client *c);
void jsonl_unref(struct jsonl_client *c);

/* jsonl_data, jsonl_set_data - the caller's pointer for @c (NULL at accept). */
void *jsonl_data(const struct jsonl_client *c);
void jsonl_set_data(struct jsonl_client *c, void *data);

/* jsonl_peer_pid - the peer's pid at connect (SO_PEERCRED), 0 if unknown. */
pid_t jsonl_peer_pid(const struct jsonl_client *c);

/*
 * jsonl_clear_stale - make @path free for bind(): absent, or a socket nobody listens on,
 * which is removed (a leftover of a killed process). Only a refused connect proves that
 * nobody listens; a socket that answers fails with EADDRINUSE and "@path: @in_use", and
 * anything else that is not a socket is left alone with an error. 0 or -1 with @err.
 * Also serves sockets that are no JSON-lines server (conmux.c's console).
 */
int jsonl_clear_stale(const char *path, const char *in_use, struct hv_error *err);

#endif
