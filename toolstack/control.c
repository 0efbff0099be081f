/*
 * control.c - the control-socket server of one VM.
 *
 * One thread runs a libev loop over the socket (jsonl_server.c frames the lines and keeps
 * the clients); requests are answered by control_proto.c against the VM backend of
 * control_vm.c. Run-state changes are seen by a second, tiny thread that sleeps on the
 * VM's condition variable (signalled on every state change, whoever caused it) and wakes
 * the loop with an ev_async; the loop then announces the state if it differs from the one
 * it last announced (control_vm_sync_state). The migration thread wakes the loop the same
 * way to have its queued events sent. No client is touched off the loop thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "toolstack/control.h"
#include "toolstack/control_proto.h"
#include "toolstack/control_vm.h"
#include "toolstack/jsonl_server.h"

#ifndef HV_VERSION
#define HV_VERSION "0.1.0"
#endif

#define CONTROL_MAX_CLIENTS 32
#define CONTROL_MAX_OUT     (1u << 20) /* queued output per client before it is dropped */
#define CONTROL_FLUSH_MS    500        /* how long control_stop waits for slow readers */

struct control {
	struct control_vm cv;
	struct control_ops ops;
	struct jsonl_server *srv; /* NULL once the loop has ended */
	struct ev_loop *loop;
	ev_async stop_w, state_w, mig_w;
	pthread_t loop_thread, watch_thread;
	bool loop_started, watch_started;
	bool watch_stop; /* under vm->lock */
};

/* ---- the socket's clients ---- */

static void client_accept(void *arg, struct jsonl_client *c)
{
	char *hello = control_greeting(HV_VERSION);

	jsonl_send(c, hello);
	free(hello);
}

static void client_line(void *arg, struct jsonl_client *c, char *line, size_t len)
{
	struct control *ctl = arg;
	char *reply = control_handle_line(&ctl->ops, line, len);

	jsonl_send(c,
	           reply ? reply : "{\"error\":{\"class\":\"Failed\",\"desc\":\"out of memory\"}}");
	free(reply);
}

static void client_overlong(void *arg, struct jsonl_client *c, const char *desc)
{
	char *reply = control_error_line(CONTROL_PARSE_ERROR, desc);

	jsonl_send(c, reply);
	free(reply);
}

/* control_vm's way out to the clients, on the loop thread. */
static void control_broadcast(void *arg, const char *line)
{
	struct control *ctl = arg;

	jsonl_broadcast(ctl->srv, line);
}

/* control_vm's wake-up, from the migration thread. */
static void control_wake(void *arg)
{
	struct control *ctl = arg;

	ev_async_send(ctl->loop, &ctl->mig_w);
}

/* ---- the threads ---- */

/* Sleeps on the VM's condition variable; wakes the loop when the run state moves. */
static void *watch_main(void *arg)
{
	struct control *ctl = arg;
	struct vm *vm = ctl->cv.vm;
	enum vm_state seen;

	pthread_mutex_lock(&vm->lock);
	seen = vm->state;
	while (!ctl->watch_stop) {
		pthread_cond_wait(&vm->cond, &vm->lock);
		if (vm->state != seen) {
			seen = vm->state;
			ev_async_send(ctl->loop, &ctl->state_w);
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void state_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct control *ctl = w->data;

	control_vm_sync_state(&ctl->cv);
}

static void mig_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct control *ctl = w->data;

	control_vm_events(&ctl->cv);
	control_vm_sync_state(&ctl->cv);
}

/* The loop; at its end, the last events and up to CONTROL_FLUSH_MS for slow readers. */
static void *loop_main(void *arg)
{
	struct control *ctl = arg;

	ev_run(ctl->loop, 0);
	control_vm_events(&ctl->cv);
	control_vm_sync_state(&ctl->cv);
	jsonl_close(ctl->srv, CONTROL_FLUSH_MS);
	ctl->srv = NULL;
	return NULL;
}

/* ---- start and stop ---- */

struct control *control_start(struct vm *vm, const char *path, struct hv_error *err)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	struct jsonl_config cfg = {
	    .max_line = CONTROL_MAX_LINE,
	    .max_out = CONTROL_MAX_OUT,
	    .max_clients = CONTROL_MAX_CLIENTS,
	    .backlog = 16,
	    .busy_line = "{\"error\":{\"class\":\"Failed\",\"desc\":\"too many control "
	                 "clients\"}}\n",
	    .option = "--control",
	    .in_use = "in use by a running VM",
	    .arg = ctl,
	    .on_accept = client_accept,
	    .on_line = client_line,
	    .on_overlong = client_overlong,
	};
	int e;

	if (!ctl) {
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		return NULL;
	}
	control_vm_init(&ctl->cv, vm, control_broadcast, control_wake, ctl);
	ctl->ops = control_vm_ops(&ctl->cv);
	ctl->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!ctl->loop) {
		hv_fail(err, ENOMEM, "%s: cannot create an event loop", path);
		goto fail;
	}
	ctl->srv = jsonl_listen(ctl->loop, path, &cfg, err);
	if (!ctl->srv)
		goto fail;
	ev_async_init(&ctl->stop_w, stop_cb);
	ev_async_init(&ctl->state_w, state_cb);
	ev_async_init(&ctl->mig_w, mig_cb);
	ctl->stop_w.data = ctl->state_w.data = ctl->mig_w.data = ctl;
	ev_async_start(ctl->loop, &ctl->stop_w);
	ev_async_start(ctl->loop, &ctl->state_w);
	ev_async_start(ctl->loop, &ctl->mig_w);
	e = pthread_create(&ctl->watch_thread, NULL, watch_main, ctl);
	if (e) {
		hv_fail(err, e, "%s: cannot create thread: %s", path, strerror(e));
		goto fail;
	}
	ctl->watch_started = true;
	e = pthread_create(&ctl->loop_thread, NULL, loop_main, ctl);
	if (e) {
		hv_fail(err, e, "%s: cannot create thread: %s", path, strerror(e));
		goto fail;
	}
	ctl->loop_started = true;
	return ctl;
fail:
	control_stop(ctl);
	return NULL;
}

void control_stop(struct control *ctl)
{
	if (!ctl)
		return;
	/* A migration still running (hv was told to quit): cancel it, then wait for its
	 * thread, whose last event the loop still broadcasts. */
	control_vm_end_migration(&ctl->cv);
	if (ctl->loop_started) {
		ev_async_send(ctl->loop, &ctl->stop_w);
		pthread_join(ctl->loop_thread, NULL);
	}
	if (ctl->watch_started) {
		pthread_mutex_lock(&ctl->cv.vm->lock);
		ctl->watch_stop = true;
		pthread_cond_broadcast(&ctl->cv.vm->cond);
		pthread_mutex_unlock(&ctl->cv.vm->lock);
		pthread_join(ctl->watch_thread, NULL);
	}
	jsonl_close(ctl->srv, 0); /* the loop never ran */
	if (ctl->loop)
		ev_loop_destroy(ctl->loop);
	control_vm_fini(&ctl->cv);
	free(ctl);
}
