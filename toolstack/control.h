/*
 * control.h - the control socket of one VM (`hv run --control SOCK`, `hv restore ...
 * --control SOCK`).
 *
 * A Unix stream socket, mode 0600, speaking newline-delimited JSON (docs/control-protocol.md):
 * any number of clients, each greeted on connect, each request answered in order, and
 * STATE_CHANGE events broadcast to every client whenever the VM's run state changes. The
 * server runs on its own thread with a libev loop; commands that block (pause waits for
 * the vCPUs, save writes all of guest RAM) hold up only the control thread.
 */
#ifndef HV_TOOLSTACK_CONTROL_H
#define HV_TOOLSTACK_CONTROL_H

#include "hv/error.h"
#include "hv/vm.h"

struct control;

/*
 * control_start - serve @vm on a new socket at @path. @vm must be created (any state but
 * destroyed) and must outlive the server. If @path exists it must be a stale socket (one
 * nobody listens on), which is replaced; anything else there is an error. Call with the
 * process's signal mask already set: the server's threads inherit it. Returns the server,
 * or NULL with @err naming the path and the cause (nothing is left at @path then).
 *
 * The quit command and a save without keep-running end the VM with vm_shutdown(vm,
 * VM_EXIT_REQUESTED, 0, ...); the program sees that through vm_wait() as usual.
 */
struct control *control_start(struct vm *vm, const char *path, struct hv_error *err);

/*
 * control_stop - announce the VM's final state to every client, flush their replies
 * (briefly; a client that does not read is dropped), close everything and remove the
 * socket file. Waits for a command in progress to finish. Call it before vm_destroy().
 * @ctl may be NULL.
 */
void control_stop(struct control *ctl);

#endif
