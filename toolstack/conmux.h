/*
 * conmux.h - the console multiplexer of an hv process: the guest's serial console, shared
 * between a log and the clients of a Unix socket (`hvctl console NAME`).
 *
 * The UART writes the guest's output into one pipe and reads the guest's input from
 * another; one thread moves the bytes. Guest output always goes to the log (so the log is
 * complete whoever is attached), into a 16 KiB history replayed to each client when it
 * attaches, and to every attached client. What a client sends goes to the guest.
 *
 * The guest never waits for a client: clients are written without blocking; what a
 * client's socket does not take is queued for it (CONMUX_CLIENT_QUEUE bytes at most), and
 * a client that falls further behind loses output rather than being disconnected: it is
 * told how many bytes it lost, in a bracketed line at the gap, once it reads again. The
 * thread always drains the output pipe, so the UART's blocking writes wait at most for
 * the log. Input waits instead of being dropped:
 * while the guest does not read (the input pipe is full), no client's input is read.
 * Several clients may be attached at once (CONMUX_MAX_CLIENTS); all see the output and all
 * may type, their input interleaved as it comes.
 */
#ifndef HV_TOOLSTACK_CONMUX_H
#define HV_TOOLSTACK_CONMUX_H

#include "hv/error.h"

#define CONMUX_HISTORY      (16 * 1024) /* bytes of output replayed to a new client */
#define CONMUX_MAX_CLIENTS  4
#define CONMUX_CLIENT_QUEUE (64 * 1024) /* output a client may fall behind by, unlost */

struct conmux;

/*
 * conmux_start - make the console pipes and start the thread. The UART is to write the
 * guest's output to *@guest_out and read its input from *@guest_in (both blocking; they
 * stay owned by the conmux: pass them to vm_create and do not close them). Output is
 * copied to @log_fd (borrowed, written blocking; it may be dup2'd over meanwhile). With
 * @sock_path, clients are served on that socket at once (see conmux_listen); NULL serves
 * none until conmux_listen. Returns the handle, or NULL with @err.
 */
struct conmux *conmux_start(const char *sock_path, int log_fd, int *guest_out, int *guest_in,
                            struct hv_error *err);

/*
 * conmux_listen - serve clients on the Unix socket @sock_path (mode 0600; a stale socket
 * nobody listens on is replaced, a live one or another kind of file is an error). At most
 * once per conmux; from the thread that started it. 0, or -1 with @err naming the path.
 */
int conmux_listen(struct conmux *cm, const char *sock_path, struct hv_error *err);

/*
 * conmux_flush - return once every byte written into the output pipe before the call has
 * gone to the log and to the clients: call it after the vCPUs have stopped and before
 * printing hv's last words, so they come after the guest's in the log. NULL is fine.
 */
void conmux_flush(struct conmux *cm);

/*
 * conmux_stop - drain what is left of the output, stop the thread, give the clients up to
 * a second to take what is queued for them, hang up on them (they see EOF: the VM has
 * ended), remove the socket file if it is still the one made here, close the pipes and
 * free @cm. The UART must be gone first (vm_destroy), since its reader thread reads the
 * input pipe. NULL is fine.
 */
void conmux_stop(struct conmux *cm);

#endif
