/*
 * control_vm.c - the VM behind a control socket: command backends and events.
 *
 * Each backend runs on the control thread and may block it (control_vm.h). Run-state
 * events are announced by comparison with the last state announced, never from the
 * change itself, so whatever changed the state (a command, the guest, a signal) no event
 * is duplicated and a burst of changes collapses into its end state. The migration
 * thread never touches a client: it queues its event lines and wakes the control thread
 * to send them.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/vmckpt.h"
#include "migrate/migration.h"
#include "migrate/savefile.h"
#include "toolstack/control_vm.h"

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

/* On the control thread: announce the VM's state if it differs from the last announced. */
void control_vm_sync_state(struct control_vm *cv)
{
	struct vm *vm = cv->vm;
	enum vm_state st;
	json_t *data, *exit_info;
	char *line;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	exit_info = exit_info_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	if (st == cv->announced) {
		json_decref(exit_info);
		return;
	}
	cv->announced = st;
	data = json_pack("{s:s}", "state", state_name(st));
	if (data && exit_info)
		json_object_set(data, "exit", exit_info);
	json_decref(exit_info);
	line = control_event("STATE_CHANGE", data);
	cv->broadcast(cv->arg, line);
	free(line);
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
	struct control_vm *cv = opaque;
	struct vm *vm = cv->vm;
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
	json_object_set_new(ret, "uptime", json_real(seconds_since(&cv->t0)));
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
	struct control_vm *cv = opaque;
	int rc = vm_pause(cv->vm, err);

	control_vm_sync_state(cv);
	return rc < 0 ? CONTROL_INVALID_STATE : CONTROL_OK;
}

static enum control_class vm_do_resume(void *opaque, struct hv_error *err)
{
	struct control_vm *cv = opaque;
	struct mig_stats st = {.phase = MIG_NONE};
	int rc;

	/* The switchover paused the VM; resuming it now would change what is being sent. */
	if (cv->mig)
		migration_stats(cv->mig, &st);
	if (st.phase == MIG_SWITCHOVER || st.phase == MIG_COMMITTED) {
		hv_fail(err, EBUSY, "the VM is paused for a migration's switchover");
		return CONTROL_INVALID_STATE;
	}
	rc = vm_resume(cv->vm, err);

	control_vm_sync_state(cv);
	return rc < 0 ? CONTROL_INVALID_STATE : CONTROL_OK;
}

static enum control_class vm_do_quit(void *opaque, struct hv_error *err)
{
	struct control_vm *cv = opaque;

	vm_shutdown(cv->vm, VM_EXIT_REQUESTED, 0, "quit by control client");
	control_vm_sync_state(cv);
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
/* savefile_write_progress's callback: SAVE progress events (the VM is paused meanwhile). */
static void save_progress(void *arg, uint64_t done, uint64_t total)
{
	struct control_vm *cv = arg;
	char *line =
	    control_event("SAVE", json_pack("{s:s, s:I, s:I}", "phase", "progress", "pages_done",
	                                    (json_int_t)done, "pages_total", (json_int_t)total));

	cv->broadcast(cv->arg, line);
	free(line);
}

static enum control_class vm_do_save(void *opaque, const char *file, bool keep_running, json_t *ret,
                                     struct hv_error *err)
{
	struct control_vm *cv = opaque;
	struct vm *vm = cv->vm;
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
		control_vm_sync_state(cv);
		return CONTROL_INVALID_STATE;
	}
	control_vm_sync_state(cv);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = savefile_write_progress(vm, file, save_progress, cv, err);
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
	control_vm_sync_state(cv);
	json_object_set_new(ret, "state", json_string(state_name(vm_state_now(vm))));
	return rc < 0 ? CONTROL_FAILED : CONTROL_OK;
}

static bool mig_active(struct control_vm *cv);

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

/* ckpt_take's progress callback, on the control thread: jsonl_send flushes at once where
 * the socket has room, so subscribers see the events while the command still runs. */
static void ckpt_progress(void *arg, uint64_t done, uint64_t total)
{
	struct control_vm *cv = arg;
	char *line = control_event("CHECKPOINT",
	                           json_pack("{s:s, s:I, s:I}", "phase", "progress", "pages_done",
	                                     (json_int_t)done, "pages_total", (json_int_t)total));

	cv->broadcast(cv->arg, line);
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
	struct control_vm *cv = opaque;
	struct vm *vm = cv->vm;
	enum vm_state st = vm_state_now(vm);
	struct ckpt_resume cr = {.vm = vm, .was_running = st == VM_RUNNING};
	struct ckpt_opts o = {.full = full,
	                      .tags = &tag,
	                      .ntags = tag ? 1 : 0,
	                      .resume = ckpt_resume,
	                      .resume_arg = &cr,
	                      .progress = ckpt_progress,
	                      .progress_arg = cv};
	struct ckpt_result r;
	char resolved[PATH_MAX];
	struct store *s = NULL;
	int rc;

	if (mig_active(cv)) {
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
	o.parent = strcmp(resolved, cv->ckpt_store) ? NULL : cv->ckpt_parent;
	clock_gettime(CLOCK_MONOTONIC, &cr.t0);
	if (cr.was_running && vm_pause(vm, err) < 0) {
		store_close(s);
		control_vm_sync_state(cv);
		return CONTROL_INVALID_STATE;
	}
	if (getenv("HV_CKPT_TRACE"))
		fprintf(stderr, "checkpoint: vm_pause %.3f ms\n", seconds_since(&cr.t0) * 1e3);
	rc = ckpt_take(vm, s, &o, &r, err); /* resumes the VM */
	if (getenv("HV_CKPT_TRACE"))
		fprintf(stderr, "checkpoint: pause work %.3f ms, pause %.3f ms\n",
		        (double)r.pause_work_ns / 1e6, cr.pause_s * 1e3);
	store_close(s);
	control_vm_sync_state(cv);
	if (rc < 0) {
		char why[sizeof(err->msg)];

		snprintf(why, sizeof(why), "%s", err->msg);
		hv_fail(err, err->code, "checkpoint abandoned, the VM runs on: %s", why);
		if (!r.base_kept)
			cv->ckpt_parent[0] = '\0';
		return CONTROL_FAILED;
	}
	snprintf(cv->ckpt_store, sizeof(cv->ckpt_store), "%s", resolved);
	memcpy(cv->ckpt_parent, r.id, sizeof(cv->ckpt_parent));
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
	struct control_vm *cv = opaque;
	json_t *data = json_object();
	char *line, **q;

	if (!data)
		return;
	control_mig_stats(data, st);
	line = control_event("MIGRATION", data);
	if (!line)
		return;
	pthread_mutex_lock(&cv->mig_lock);
	q = realloc(cv->mig_events, (cv->nmig_events + 1) * sizeof(*q));
	if (q) {
		cv->mig_events = q;
		q[cv->nmig_events++] = line;
		line = NULL;
	}
	pthread_mutex_unlock(&cv->mig_lock);
	free(line);
	cv->wake(cv->arg);
}

/* On the control thread: broadcast queued MIGRATION events, in order. */
void control_vm_events(struct control_vm *cv)
{
	char **q;
	size_t n;

	pthread_mutex_lock(&cv->mig_lock);
	q = cv->mig_events;
	n = cv->nmig_events;
	cv->mig_events = NULL;
	cv->nmig_events = 0;
	pthread_mutex_unlock(&cv->mig_lock);
	for (size_t i = 0; i < n; i++) {
		cv->broadcast(cv->arg, q[i]);
		free(q[i]);
	}
	free(q);
}

static bool mig_active(struct control_vm *cv)
{
	struct mig_stats st;

	if (!cv->mig)
		return false;
	migration_stats(cv->mig, &st);
	return !mig_phase_final(st.phase);
}

static enum control_class vm_do_migrate(void *opaque, const struct mig_params *p, json_t *ret,
                                        struct hv_error *err)
{
	struct control_vm *cv = opaque;
	enum vm_state st = vm_state_now(cv->vm);

	if (mig_active(cv)) {
		hv_fail(err, EBUSY, "a migration is already in progress");
		return CONTROL_INVALID_STATE;
	}
	if (st != VM_RUNNING && st != VM_PAUSED) {
		hv_fail(err, EINVAL, "cannot migrate a VM that is %s", state_name(st));
		return CONTROL_INVALID_STATE;
	}
	if (ram_filling(cv->vm, err))
		return CONTROL_INVALID_STATE;
	migration_free(cv->mig); /* the last one, finished */
	/* The migration harvests and stops the dirty log: the next checkpoint is full. */
	cv->ckpt_parent[0] = '\0';
	cv->mig = migration_start(cv->vm, p, mig_progress, cv, err);
	if (!cv->mig)
		return CONTROL_FAILED;
	json_object_set_new(ret, "uri", json_string(p->uri));
	return CONTROL_OK;
}

static enum control_class vm_do_migrate_status(void *opaque, json_t *ret, struct hv_error *err)
{
	struct control_vm *cv = opaque;
	struct mig_stats st = {.phase = MIG_NONE};

	if (cv->mig)
		migration_stats(cv->mig, &st);
	control_mig_stats(ret, &st);
	return CONTROL_OK;
}

static enum control_class vm_do_migrate_cancel(void *opaque, struct hv_error *err)
{
	struct control_vm *cv = opaque;

	if (!cv->mig) {
		hv_fail(err, EINVAL, "no migration is in progress");
		return CONTROL_INVALID_STATE;
	}
	return migration_cancel(cv->mig, err) < 0 ? CONTROL_INVALID_STATE : CONTROL_OK;
}

static enum control_class vm_do_migrate_continue(void *opaque, struct hv_error *err)
{
	struct control_vm *cv = opaque;

	if (!mig_active(cv)) {
		hv_fail(err, EINVAL, "no migration is in progress");
		return CONTROL_INVALID_STATE;
	}
	migration_release(cv->mig);
	return CONTROL_OK;
}

/* ---- set-up and tear-down ---- */

void control_vm_init(struct control_vm *cv, struct vm *vm,
                     void (*broadcast)(void *arg, const char *line), void (*wake)(void *arg),
                     void *arg)
{
	*cv = (struct control_vm){.vm = vm, .broadcast = broadcast, .wake = wake, .arg = arg};
	pthread_mutex_init(&cv->mig_lock, NULL);
	clock_gettime(CLOCK_MONOTONIC, &cv->t0);
	cv->announced = vm_state_now(vm);
}

struct control_ops control_vm_ops(struct control_vm *cv)
{
	return (struct control_ops){.opaque = cv,
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
}

void control_vm_end_migration(struct control_vm *cv)
{
	if (!cv->mig)
		return;
	migration_cancel(cv->mig, NULL);
	migration_free(cv->mig);
	cv->mig = NULL;
}

void control_vm_fini(struct control_vm *cv)
{
	for (size_t i = 0; i < cv->nmig_events; i++)
		free(cv->mig_events[i]);
	free(cv->mig_events);
	pthread_mutex_destroy(&cv->mig_lock);
}
