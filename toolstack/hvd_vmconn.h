/*
 * hvd_vmconn.h - hvd's non-blocking client of one VM's control socket
 * (docs/control-protocol.md), on hvd's libev loop.
 *
 * hvd must never wait for a VM: a save or a checkpoint keeps the VM's control thread
 * busy for seconds, and `list` from another client must still be answered at once. So
 * every round trip is a request written to the socket and a callback run when the reply
 * line arrives; events (STATE_CHANGE) go to another callback. hv answers the requests of
 * one connection in order, so pending calls form a FIFO.
 */
#ifndef HV_TOOLSTACK_HVD_VMCONN_H
#define HV_TOOLSTACK_HVD_VMCONN_H

#include <ev.h>
#include <jansson.h>

#include "hv/error.h"

struct vmconn;

/*
 * A call's completion: @reply is the reply object ({"return":..} or {"error":..},
 * borrowed), or NULL when the connection closed before it came.
 */
typedef void (*vmconn_reply_fn)(void *arg, json_t *reply);

struct vmconn_ops {
	void *opaque;
	/* An event line ({"event":..,"data":..}), borrowed. */
	void (*event)(void *opaque, json_t *ev);
	/* The connection ended (EOF, error, or a line over the limit); @why says which.
	 * Called once, after every pending call has completed with NULL; the owner may
	 * vmconn_free() from here. */
	void (*closed)(void *opaque, const char *why);
};

/*
 * vmconn_open - connect to the control socket at @path without blocking. Returns the
 * connection, or NULL with @err (errno ENOENT or ECONNREFUSED while the VM has not yet
 * bound its socket: the caller retries).
 */
struct vmconn *vmconn_open(struct ev_loop *loop, const char *path, const struct vmconn_ops *ops,
                           struct hv_error *err);

/*
 * vmconn_call - send {"id":N,"execute":@cmd,"arguments":@args} (@args is stolen; NULL
 * for none) and call @fn(@arg, reply) when the reply comes. Returns 0, or -1 when the
 * connection is closed or out of memory; @fn is then not called.
 */
int vmconn_call(struct vmconn *vc, const char *cmd, json_t *args, vmconn_reply_fn fn, void *arg);

/* An event seen while a call is pending: @ev is the event line, borrowed. */
typedef void (*vmconn_event_fn)(void *arg, json_t *ev);

/*
 * vmconn_call_events - vmconn_call, and until the reply comes, every event line also goes
 * to @evfn(@arg, ev), after ops.event: hv runs one command at a time, so the events it
 * sends meanwhile (a checkpoint's CHECKPOINT progress) are the command's own news.
 * @evfn must not free @vc.
 */
int vmconn_call_events(struct vmconn *vc, const char *cmd, json_t *args, vmconn_reply_fn fn,
                       vmconn_event_fn evfn, void *arg);

/*
 * vmconn_free - close and free @vc; pending calls complete with NULL first and `closed`
 * is not called. Safe from inside any of @vc's callbacks, and with NULL.
 */
void vmconn_free(struct vmconn *vc);

#endif
