/*
 * control.c - the control-socket server of one VM.
 *
 * One thread runs a libev loop over the listening socket and the clients; requests are
 * answered by control_proto.c against the VM backend below. Run-state changes are seen
 * by a second, tiny thread that sleeps on the VM's condition variable (signalled on
 * every state change, whoever caused it) and wakes the loop with an ev_async; the loop
 * compares the state with the one it last announced, so events are never duplicated and
 * a burst of changes collapses into its end state. Commands call the same comparison
 * right after each step, so a client sees "paused" before the reply to "pause".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "checkpoint/vmckpt.h"
#include "migrate/migration.h"
#include "migrate/savefile.h"
#include "toolstack/control.h"
#include "toolstack/control_proto.h"

#ifndef HV_VERSION
#define HV_VERSION "0.1.0"
#endif

#define CONTROL_MAX_CLIENTS 32
#define CONTROL_MAX_OUT     (1u << 20) /* queued output per client before it is dropped */
#define CONTROL_FLUSH_MS    500        /* how long control_stop waits for slow readers */

struct client {
	struct control *ctl;
	struct client *next;
	int fd;
	ev_io rw, ww;
	char *in; /* CONTROL_MAX_LINE + 1 bytes: a line and its newline */
	size_t in_len;
	char *out;
	size_t out_len, out_cap;
	bool closing;     /* answer nothing more; hang up once the output is flushed */
	size_t discarded; /* bytes read and dropped since closing */
	bool dead;        /* closed; freed by reap() */
};

struct control {
	struct vm *vm;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t sock_dev;
	ino_t sock_ino;
	int lfd;
	struct ev_loop *loop;
	ev_io accept_w;
	ev_async stop_w, state_w;
	pthread_t loop_thread, watch_thread;
	bool loop_started, watch_started;
	bool watch_stop; /* under vm->lock */
	enum vm_state announced;
	struct timespec t0;
	struct client *clients;
	unsigned nclients;
	struct control_ops ops;
	/* Live migration: at most one at a time; MIGRATION event lines queued by the
	 * migration thread (under mig_lock) and broadcast by the loop (mig_w). */
	struct migration *mig;
	pthread_mutex_t mig_lock;
	char **mig_events;
	size_t nmig_events;
	ev_async mig_w;
	/* The last checkpoint (its store, resolved): the next one's parent. "" when the
	 * next must be full (none yet, or the dirty log was harvested by someone else). */
	char ckpt_store[PATH_MAX];
	char ckpt_parent[MANIFEST_ID_LEN + 1];
};

/* ---- clients ---- */

static void client_close(struct client *c)
{
	if (c->dead)
		return;
	ev_io_stop(c->ctl->loop, &c->rw);
	ev_io_stop(c->ctl->loop, &c->ww);
	close(c->fd);
	c->dead = true;
}

/* Free closed clients; only at the end of a callback, when nothing points at them. */
static void reap(struct control *ctl)
{
	for (struct client **pp = &ctl->clients; *pp;) {
		struct client *c = *pp;
		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		ctl->nclients--;
		free(c->in);
		free(c->out);
		free(c);
	}
}

/* Write what is queued; 0 when all is out, 1 when the socket is full, -1 on error. */
static int client_flush(struct client *c)
{
	size_t off = 0;
	int rc = 0;

	while (off < c->out_len) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
			break;
		}
		off += (size_t)n;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	return rc;
}

static void client_kick_output(struct client *c)
{
	int rc = client_flush(c);

	if (rc < 0) {
		client_close(c);
		return;
	}
	/* Half-close, then drain: closing with unread input would make the kernel send a
	 * reset, which can destroy the error reply before the peer reads it. */
	if (rc == 0 && c->closing)
		shutdown(c->fd, SHUT_WR);
	if (rc == 1)
		ev_io_start(c->ctl->loop, &c->ww);
	else
		ev_io_stop(c->ctl->loop, &c->ww);
}

/* Queue @line plus a newline. A client that lets more than CONTROL_MAX_OUT pile up
 * (it never reads its events) is dropped rather than allowed to grow our memory. */
static void client_send(struct client *c, const char *line)
{
	size_t len;

	if (c->dead || c->closing || !line)
		return;
	len = strlen(line) + 1;
	if (c->out_len + len > CONTROL_MAX_OUT) {
		client_close(c);
		return;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;
		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			client_close(c);
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len - 1);
	c->out[c->out_len + len - 1] = '\n';
	c->out_len += len;
	client_kick_output(c);
}

static void broadcast(struct control *ctl, const char *line)
{
	for (struct client *c = ctl->clients; c; c = c->next)
		client_send(c, line);
}

/* ---- run-state events ---- */

/* The wire names of the run states (docs/control-protocol.md): one word each. */
static const char *state_name(enum vm_state s)
{
	return s == VM_SHUTDOWN ? "shutdown" : vm_state_name(s);
}

static const char *exit_kind_name(enum vm_exit_kind k)
{
	switch (k) {
	case VM_EXIT_NONE: return "none";
	case VM_EXIT_GUEST: return "guest";
	case VM_EXIT_TRIPLE_FAULT: return "triple-fault";
	case VM_EXIT_HALTED: return "halted";
	case VM_EXIT_ERROR: return "error";
	case VM_EXIT_REQUESTED: return "requested";
	}
	return "unknown";
}

/* The exit description, or NULL while the VM has not shut down. Lock held. */
static json_t *exit_info_locked(struct vm *vm)
{
	if (vm->state != VM_SHUTDOWN)
		return NULL;
	return json_pack("{s:s, s:i, s:s}", "kind", exit_kind_name(vm->exit_kind), "code",
	                 vm->exit_code, "reason", vm->exit_reason);
}

/* On the loop thread: announce the VM's state if it differs from the last announced. */
static void sync_state(struct control *ctl)
{
	struct vm *vm = ctl->vm;
	enum vm_state st;
	json_t *data, *exit_info;
	char *line;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	exit_info = exit_info_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	if (st == ctl->announced) {
		json_decref(exit_info);
		return;
	}
	ctl->announced = st;
	data = json_pack("{s:s}", "state", state_name(st));
	if (data && exit_info)
		json_object_set(data, "exit", exit_info);
	json_decref(exit_info);
	line = control_event("STATE_CHANGE", data);
	broadcast(ctl, line);
	free(line);
}

/* Sleeps on the VM's condition variable; wakes the loop when the run state moves. */
static void *watch_main(void *arg)
{
	struct control *ctl = arg;
	struct vm *vm = ctl->vm;
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

/* ---- the VM backend of the commands ---- */

static enum vm_state vm_state_now(struct vm *vm)
{
	enum vm_state st;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return st;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static enum control_class vm_info(void *opaque, json_t *ret, struct hv_error *err)
{
	struct control *ctl = opaque;
	struct vm *vm = ctl->vm;
	json_t *exit_info;
	enum vm_state st;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	exit_info = exit_info_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	json_object_set_new(ret, "name", json_string(vm->cfg.name));
	json_object_set_new(ret, "state", json_string(state_name(st)));
	json_object_set_new(ret, "accel", json_string(vm->accel->name));
	json_object_set_new(ret, "vcpus", json_integer(vm->nvcpus));
	json_object_set_new(ret, "memory", json_integer((json_int_t)vm->cfg.ram_size));
	json_object_set_new(ret, "deterministic", json_boolean(vm->cfg.deterministic));
	json_object_set_new(ret, "pid", json_integer(getpid()));
	json_object_set_new(ret, "uptime", json_real(seconds_since(&ctl->t0)));
	json_object_set_new(ret, "exit", exit_info ? exit_info : json_null());
	/* Where a paused deterministic VM stands: tests compare against a run to that count. */
	if (vm->cfg.deterministic && st == VM_PAUSED) {
		struct x86_state *xs = malloc(sizeof(*xs));
		if (xs && vm_get_state(vm, 0, xs, NULL) == 0)
			json_object_set_new(ret, "icount", json_integer((json_int_t)xs->icount));
		free(xs);
	}
	return CONTROL_OK;
}

static enum control_class vm_do_pause(void *opaque, struct hv_error *err)
{
	struct control *ctl = opaque;
	int rc = vm_pause(ctl->vm, err);

	sync_state(ctl);
	return rc < 0 ? CONTROL_INVALID_STATE : CONTROL_OK;
}

static enum control_class vm_do_resume(void *opaque, struct hv_error *err)
{
	struct control *ctl = opaque;
	struct mig_stats st = {.phase = MIG_NONE};
	int rc;

	/* The switchover paused the VM; resuming it now would change what is being sent. */
	if (ctl->mig)
		migration_stats(ctl->mig, &st);
	if (st.phase == MIG_SWITCHOVER || st.phase == MIG_COMMITTED) {
		hv_fail(err, EBUSY, "the VM is paused for a migration's switchover");
		return CONTROL_INVALID_STATE;
	}
	rc = vm_resume(ctl->vm, err);

	sync_state(ctl);
	return rc < 0 ? CONTROL_INVALID_STATE : CONTROL_OK;
}

static enum control_class vm_do_quit(void *opaque, struct hv_error *err)
{
	struct control *ctl = opaque;

	vm_shutdown(ctl->vm, VM_EXIT_REQUESTED, 0, "quit by control client");
	sync_state(ctl);
	return CONTROL_OK;
}

/* Save, checkpoint and migration copy RAM out: not while a lazy restore fills it. */
static bool ram_filling(struct vm *vm, struct hv_error *err)
{
	if (!atomic_load(&vm->mem.filling))
		return false;
	hv_fail(err, EBUSY,
	        "guest memory is still being loaded (lazy restore); try again once it is "
	        "resident");
	return true;
}

/* Pause, write, then resume or stop: a failed save leaves the VM as it found it. */
static enum control_class vm_do_save(void *opaque, const char *file, bool keep_running, json_t *ret,
                                     struct hv_error *err)
{
	struct control *ctl = opaque;
	struct vm *vm = ctl->vm;
	enum vm_state st = vm_state_now(vm);
	bool was_running = st == VM_RUNNING;
	struct timespec t0;
	struct stat sb;
	int rc;

	if (st != VM_RUNNING && st != VM_PAUSED) {
		hv_fail(err, EINVAL, "cannot save a VM that is %s", vm_state_name(st));
		return CONTROL_INVALID_STATE;
	}
	if (ram_filling(vm, err))
		return CONTROL_INVALID_STATE;
	if (was_running && vm_pause(vm, err) < 0) {
		sync_state(ctl);
		return CONTROL_INVALID_STATE;
	}
	sync_state(ctl);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = savefile_write(vm, file, err);
	json_object_set_new(ret, "file", json_string(file));
	json_object_set_new(ret, "seconds", json_real(seconds_since(&t0)));
	if (rc == 0 && stat(file, &sb) == 0)
		json_object_set_new(ret, "bytes", json_integer((json_int_t)sb.st_size));
	if (rc < 0 || keep_running) {
		/* vm_resume only fails if the VM shut down meanwhile (a signal): nothing to do. */
		if (was_running)
			vm_resume(vm, NULL);
	} else {
		vm_shutdown(vm, VM_EXIT_REQUESTED, 0, "saved to %s", file);
	}
	sync_state(ctl);
	json_object_set_new(ret, "state", json_string(state_name(vm_state_now(vm))));
	return rc < 0 ? CONTROL_FAILED : CONTROL_OK;
}

static bool mig_active(struct control *ctl);

struct ckpt_resume {
	struct vm *vm;
	bool was_running;
	struct timespec t0;
	double pause_s;
	int64_t icount; /* deterministic VMs: where the checkpoint stands; else -1 */
};

/* ckpt_take's resume callback: the end of the pause. */
static void ckpt_resume(void *arg)
{
	struct ckpt_resume *cr = arg;

	cr->icount = -1;
	if (cr->vm->cfg.deterministic) {
		struct x86_state *xs = malloc(sizeof(*xs));

		if (xs && vm_get_state(cr->vm, 0, xs, NULL) == 0)
			cr->icount = (int64_t)xs->icount;
		free(xs);
	}
	if (cr->was_running)
		vm_resume(cr->vm, NULL); /* fails only if the VM shut down meanwhile */
	cr->pause_s = seconds_since(&cr->t0);
}

/* ckpt_take's progress callback, on the loop thread: client_send flushes at once where
 * the socket has room, so subscribers see the events while the command still runs. */
static void ckpt_progress(void *arg, uint64_t done, uint64_t total)
{
	struct control *ctl = arg;
	char *line = control_event("CHECKPOINT",
	                           json_pack("{s:s, s:I, s:I}", "phase", "progress", "pages_done",
	                                     (json_int_t)done, "pages_total", (json_int_t)total));

	broadcast(ctl, line);
	free(line);
}

/*
 * Pause, take the state and arm copy-before-write, resume, write the pages (checkpoint/
 * vmckpt.h). The control thread is busy until the checkpoint is committed, as for save.
 * No STATE_CHANGE is announced for so short a pause: the loop compares the state only
 * after the resume, when it is "running" again.
 */
static enum control_class vm_do_checkpoint(void *opaque, const char *path, const char *tag,
                                           bool full, json_t *ret, struct hv_error *err)
{
	struct control *ctl = opaque;
	struct vm *vm = ctl->vm;
	enum vm_state st = vm_state_now(vm);
	struct ckpt_resume cr = {.vm = vm, .was_running = st == VM_RUNNING};
	struct ckpt_opts o = {.full = full,
	                      .tags = &tag,
	                      .ntags = tag ? 1 : 0,
	                      .resume = ckpt_resume,
	                      .resume_arg = &cr,
	                      .progress = ckpt_progress,
	                      .progress_arg = ctl};
	struct ckpt_result r;
	char resolved[PATH_MAX];
	struct store *s = NULL;
	int rc;

	if (mig_active(ctl)) {
		hv_fail(err, EBUSY, "a migration is in progress (it owns the dirty log)");
		return CONTROL_INVALID_STATE;
	}
	if (st != VM_RUNNING && st != VM_PAUSED) {
		hv_fail(err, EINVAL, "cannot checkpoint a VM that is %s", state_name(st));
		return CONTROL_INVALID_STATE;
	}
	if (ram_filling(vm, err))
		return CONTROL_INVALID_STATE;
	/* Open (reading every index file) before pausing: it is not the guest's time. */
	if (ckpt_open_store(path, true, &s, err) < 0)
		return CONTROL_FAILED;
	if (!realpath(path, resolved))
		snprintf(resolved, sizeof(resolved), "%s", path);
	o.parent = strcmp(resolved, ctl->ckpt_store) ? NULL : ctl->ckpt_parent;
	clock_gettime(CLOCK_MONOTONIC, &cr.t0);
	if (cr.was_running && vm_pause(vm, err) < 0) {
		store_close(s);
		sync_state(ctl);
		return CONTROL_INVALID_STATE;
	}
	if (getenv("HV_CKPT_TRACE"))
		fprintf(stderr, "checkpoint: vm_pause %.3f ms\n", seconds_since(&cr.t0) * 1e3);
	rc = ckpt_take(vm, s, &o, &r, err); /* resumes the VM */
	if (getenv("HV_CKPT_TRACE"))
		fprintf(stderr, "checkpoint: pause work %.3f ms, pause %.3f ms\n",
		        (double)r.pause_work_ns / 1e6, cr.pause_s * 1e3);
	store_close(s);
	sync_state(ctl);
	if (rc < 0) {
		char why[sizeof(err->msg)];

		snprintf(why, sizeof(why), "%s", err->msg);
		hv_fail(err, err->code, "checkpoint abandoned, the VM runs on: %s", why);
		if (!r.base_kept)
			ctl->ckpt_parent[0] = '\0';
		return CONTROL_FAILED;
	}
	snprintf(ctl->ckpt_store, sizeof(ctl->ckpt_store), "%s", resolved);
	memcpy(ctl->ckpt_parent, r.id, sizeof(ctl->ckpt_parent));
	json_object_set_new(ret, "id", json_string(r.id));
	json_object_set_new(ret, "full", json_boolean(r.full));
	json_object_set_new(ret, "live", json_boolean(r.live));
	json_object_set_new(ret, "pages_copied", json_integer((json_int_t)r.pages_copied));
	if (cr.icount >= 0)
		json_object_set_new(ret, "icount", json_integer((json_int_t)cr.icount));
	json_object_set_new(ret, "pause_ms", json_real(cr.pause_s * 1e3));
	json_object_set_new(ret, "duration_ms", json_real((double)r.duration_ns / 1e6));
	json_object_set_new(ret, "pages_written", json_integer((json_int_t)r.pages_written));
	json_object_set_new(ret, "blobs_stored", json_integer((json_int_t)r.blobs_stored));
	json_object_set_new(ret, "bytes_stored", json_integer((json_int_t)r.bytes_stored));
	return CONTROL_OK;
}

/* ---- live migration ---- */

/* On the migration thread: queue the event, wake the loop. */
static void mig_progress(void *opaque, const struct mig_stats *st)
{
	struct control *ctl = opaque;
	json_t *data = json_object();
	char *line, **q;

	if (!data)
		return;
	control_mig_stats(data, st);
	line = control_event("MIGRATION", data);
	if (!line)
		return;
	pthread_mutex_lock(&ctl->mig_lock);
	q = realloc(ctl->mig_events, (ctl->nmig_events + 1) * sizeof(*q));
	if (q) {
		ctl->mig_events = q;
		q[ctl->nmig_events++] = line;
		line = NULL;
	}
	pthread_mutex_unlock(&ctl->mig_lock);
	free(line);
	ev_async_send(ctl->loop, &ctl->mig_w);
}

/* On the loop thread: broadcast queued MIGRATION events, in order. */
static void mig_flush_events(struct control *ctl)
{
	char **q;
	size_t n;

	pthread_mutex_lock(&ctl->mig_lock);
	q = ctl->mig_events;
	n = ctl->nmig_events;
	ctl->mig_events = NULL;
	ctl->nmig_events = 0;
	pthread_mutex_unlock(&ctl->mig_lock);
	for (size_t i = 0; i < n; i++) {
		broadcast(ctl, q[i]);
		free(q[i]);
	}
	free(q);
}

static void mig_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct control *ctl = w->data;

	mig_flush_events(ctl);
	sync_state(ctl);
	reap(ctl);
}

static bool mig_active(struct control *ctl)
{
	struct mig_stats st;

	if (!ctl->mig)
		return false;
	migration_stats(ctl->mig, &st);
	return !mig_phase_final(st.phase);
}

static enum control_class vm_do_migrate(void *opaque, const struct mig_params *p, json_t *ret,
                                        struct hv_error *err)
{
	struct control *ctl = opaque;
	enum vm_state st = vm_state_now(ctl->vm);

	if (mig_active(ctl)) {
		hv_fail(err, EBUSY, "a migration is already in progress");
		return CONTROL_INVALID_STATE;
	}
	if (st != VM_RUNNING && st != VM_PAUSED) {
		hv_fail(err, EINVAL, "cannot migrate a VM that is %s", state_name(st));
		return CONTROL_INVALID_STATE;
	}
	if (ram_filling(ctl->vm, err))
		return CONTROL_INVALID_STATE;
	migration_free(ctl->mig); /* the last one, finished */
	/* The migration harvests and stops the dirty log: the next checkpoint is full. */
	ctl->ckpt_parent[0] = '\0';
	ctl->mig = migration_start(ctl->vm, p, mig_progress, ctl, err);
	if (!ctl->mig)
		return CONTROL_FAILED;
	json_object_set_new(ret, "uri", json_string(p->uri));
	return CONTROL_OK;
}

static enum control_class vm_do_migrate_status(void *opaque, json_t *ret, struct hv_error *err)
{
	struct control *ctl = opaque;
	struct mig_stats st = {.phase = MIG_NONE};

	if (ctl->mig)
		migration_stats(ctl->mig, &st);
	control_mig_stats(ret, &st);
	return CONTROL_OK;
}

static enum control_class vm_do_migrate_cancel(void *opaque, struct hv_error *err)
{
	struct control *ctl = opaque;

	if (!ctl->mig) {
		hv_fail(err, EINVAL, "no migration is in progress");
		return CONTROL_INVALID_STATE;
	}
	return migration_cancel(ctl->mig, err) < 0 ? CONTROL_INVALID_STATE : CONTROL_OK;
}

static enum control_class vm_do_migrate_continue(void *opaque, struct hv_error *err)
{
	struct control *ctl = opaque;

	if (!mig_active(ctl)) {
		hv_fail(err, EINVAL, "no migration is in progress");
		return CONTROL_INVALID_STATE;
	}
	migration_release(ctl->mig);
	return CONTROL_OK;
}

/* ---- the loop ---- */

/* Answer every complete line in the input buffer, then keep the incomplete rest. */
static void client_process(struct client *c)
{
	size_t start = 0;

	/* A peer that hung up after sending still gets its requests run (`echo quit | socat`
	 * style); only the replies are lost. */
	while (!c->closing) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;
		char *reply;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		if (len && c->in[start + len - 1] == '\r')
			len--;
		if (len) {
			reply = control_handle_line(&c->ctl->ops, c->in + start, len);
			client_send(c, reply ? reply
			                     : "{\"error\":{\"class\":\"Failed\","
			                       "\"desc\":\"out of memory\"}}");
			free(reply);
		}
		start = (size_t)(nl - c->in) + 1;
	}
	if (c->dead)
		return;
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (!c->dead && !c->closing && c->in_len > CONTROL_MAX_LINE) {
		char msg[96];
		char *reply;

		snprintf(msg, sizeof(msg), "request line longer than %d bytes; closing",
		         CONTROL_MAX_LINE);
		reply = control_error_line(CONTROL_PARSE_ERROR, msg);
		client_send(c, reply);
		free(reply);
		c->closing = true;
		c->in_len = 0;
		if (!c->dead && !c->out_len)
			shutdown(c->fd, SHUT_WR);
	}
}

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;
	size_t room = c->closing ? CONTROL_MAX_LINE + 1 : CONTROL_MAX_LINE + 1 - c->in_len;
	ssize_t n = recv(c->fd, c->closing ? c->in : c->in + c->in_len, room, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c);
	} else if (c->closing) {
		/* Draining after an error: bounded, so a peer cannot keep us reading forever. */
		c->discarded += (size_t)n;
		if (c->discarded > CONTROL_MAX_OUT)
			client_close(c);
	} else {
		c->in_len += (size_t)n;
		client_process(c);
	}
	reap(c->ctl);
}

static void client_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;

	client_kick_output(c);
	reap(c->ctl);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control *ctl = w->data;
	struct client *c;
	char *hello;
	int fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (ctl->nclients >= CONTROL_MAX_CLIENTS) {
		static const char busy[] = "{\"error\":{\"class\":\"Failed\",\"desc\":\"too many "
		                           "control clients\"}}\n";
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->in = malloc(CONTROL_MAX_LINE + 1);
	if (!c || !c->in) {
		if (c)
			free(c);
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	ev_io_init(&c->rw, client_read_cb, fd, EV_READ);
	ev_io_init(&c->ww, client_write_cb, fd, EV_WRITE);
	c->rw.data = c->ww.data = c;
	c->next = ctl->clients;
	ctl->clients = c;
	ctl->nclients++;
	ev_io_start(loop, &c->rw);
	hello = control_greeting(HV_VERSION);
	client_send(c, hello);
	free(hello);
	reap(ctl);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void state_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct control *ctl = w->data;

	sync_state(ctl);
	reap(ctl);
}

/* After the loop: give every client CONTROL_FLUSH_MS in all to take its last lines. */
static void flush_all(struct control *ctl)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (struct client *c = ctl->clients; c; c = c->next) {
		while (!c->dead && c->out_len) {
			int left = CONTROL_FLUSH_MS - (int)(seconds_since(&t0) * 1000);
			struct pollfd p = {.fd = c->fd, .events = POLLOUT};
			if (left <= 0 || poll(&p, 1, left) <= 0 || client_flush(c) < 0)
				break;
		}
		client_close(c);
	}
	reap(ctl);
}

static void *loop_main(void *arg)
{
	struct control *ctl = arg;

	ev_run(ctl->loop, 0);
	mig_flush_events(ctl);
	sync_state(ctl);
	flush_all(ctl);
	return NULL;
}

/* ---- start and stop ---- */

/* Make @path free for bind(): absent, or a socket nobody listens on (removed). */
static int clear_stale(const char *path, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	int fd, rc;

	if (lstat(path, &sb) < 0)
		return errno == ENOENT ? 0 : hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(sb.st_mode))
		return hv_fail(err, EEXIST, "%s: exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hv_fail(err, errno, "%s: socket: %s", path, strerror(errno));
	memcpy(sa.sun_path, path, strlen(path));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0)
		return hv_fail(err, EADDRINUSE, "%s: in use by a running VM", path);
	if (errno != ECONNREFUSED)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		return hv_fail(err, errno, "%s: cannot remove stale socket: %s", path,
		               strerror(errno));
	return 0;
}

static int listen_on(struct control *ctl, const char *path, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	mode_t old;
	int rc;

	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return hv_fail(err, ENAMETOOLONG,
		               "--control '%s': a socket path must be 1 to %zu bytes", path,
		               sizeof(sa.sun_path) - 1);
	if (clear_stale(path, err) < 0)
		return -1;
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0)
		return hv_fail(err, errno, "%s: socket: %s", path, strerror(errno));
	memcpy(sa.sun_path, path, strlen(path));
	/* The umask makes the file 0600 from birth; the chmod covers odd file systems. Nobody
	 * can connect before listen() anyway. */
	old = umask(0177);
	rc = bind(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	if (chmod(path, 0600) < 0 || stat(path, &sb) < 0 || listen(ctl->lfd, 16) < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		unlink(path);
		ctl->path[0] = '\0';
		return -1;
	}
	ctl->sock_dev = sb.st_dev;
	ctl->sock_ino = sb.st_ino;
	return 0;
}

/* Remove the socket file only if it is still ours (not replaced by someone else's). */
static void unlink_ours(struct control *ctl)
{
	struct stat sb;

	if (ctl->path[0] && stat(ctl->path, &sb) == 0 && sb.st_dev == ctl->sock_dev &&
	    sb.st_ino == ctl->sock_ino)
		unlink(ctl->path);
}

struct control *control_start(struct vm *vm, const char *path, struct hv_error *err)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	int e;

	if (!ctl) {
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		return NULL;
	}
	ctl->vm = vm;
	ctl->lfd = -1;
	ctl->ops = (struct control_ops){.opaque = ctl,
	                                .info = vm_info,
	                                .pause = vm_do_pause,
	                                .resume = vm_do_resume,
	                                .save = vm_do_save,
	                                .checkpoint = vm_do_checkpoint,
	                                .quit = vm_do_quit,
	                                .migrate = vm_do_migrate,
	                                .migrate_status = vm_do_migrate_status,
	                                .migrate_cancel = vm_do_migrate_cancel,
	                                .migrate_continue = vm_do_migrate_continue};
	pthread_mutex_init(&ctl->mig_lock, NULL);
	clock_gettime(CLOCK_MONOTONIC, &ctl->t0);
	ctl->announced = vm_state_now(vm);
	if (listen_on(ctl, path, err) < 0)
		goto fail;
	ctl->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!ctl->loop) {
		hv_fail(err, ENOMEM, "%s: cannot create an event loop", path);
		goto fail;
	}
	ev_io_init(&ctl->accept_w, accept_cb, ctl->lfd, EV_READ);
	ev_async_init(&ctl->stop_w, stop_cb);
	ev_async_init(&ctl->state_w, state_cb);
	ev_async_init(&ctl->mig_w, mig_cb);
	ctl->accept_w.data = ctl->stop_w.data = ctl->state_w.data = ctl->mig_w.data = ctl;
	ev_io_start(ctl->loop, &ctl->accept_w);
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
	if (ctl->mig) {
		migration_cancel(ctl->mig, NULL);
		migration_free(ctl->mig);
		ctl->mig = NULL;
	}
	if (ctl->loop_started) {
		ev_async_send(ctl->loop, &ctl->stop_w);
		pthread_join(ctl->loop_thread, NULL);
	}
	if (ctl->watch_started) {
		pthread_mutex_lock(&ctl->vm->lock);
		ctl->watch_stop = true;
		pthread_cond_broadcast(&ctl->vm->cond);
		pthread_mutex_unlock(&ctl->vm->lock);
		pthread_join(ctl->watch_thread, NULL);
	}
	for (struct client *c = ctl->clients; c; c = c->next)
		client_close(c);
	if (ctl->loop) {
		reap(ctl);
		ev_loop_destroy(ctl->loop);
	}
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	unlink_ours(ctl);
	for (size_t i = 0; i < ctl->nmig_events; i++)
		free(ctl->mig_events[i]);
	free(ctl->mig_events);
	pthread_mutex_destroy(&ctl->mig_lock);
	free(ctl);
}
