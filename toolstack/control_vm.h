/*
 * control_vm.h - the VM behind a control socket: the backends of its commands and the
 * events it announces (internal to control.c and control_vm.c).
 *
 * control.c serves the socket and owns the threads; this side knows the VM: info, pause,
 * resume, quit, save, checkpoint, migrate and its steering, the STATE_CHANGE events, and
 * the MIGRATION events that the migration thread queues for the control thread.
 *
 * Threading: everything here runs on the control thread, except mig_progress (internal),
 * which runs on the migration thread, queues its event under mig_lock and calls wake.
 * Commands block the control thread (pause waits for the vCPUs, save writes all of RAM).
 */
#ifndef HV_TOOLSTACK_CONTROL_VM_H
#define HV_TOOLSTACK_CONTROL_VM_H

#include <limits.h>
#include <pthread.h>
#include <time.h>

#include "checkpoint/manifest.h"
#include "hv/vm.h"
#include "migrate/migration.h"
#include "toolstack/control_proto.h"

struct control_vm {
	struct vm *vm;
	struct timespec t0;      /* the server's start, for "uptime" */
	enum vm_state announced; /* the run state last announced */
	/* Send an event line to every client; on the control thread. */
	void (*broadcast)(void *arg, const char *line);
	/* From the migration thread: have the control thread call control_vm_events soon. */
	void (*wake)(void *arg);
	void *arg;
	/* Live migration: at most one at a time; MIGRATION event lines queued by the
	 * migration thread (under mig_lock) and broadcast by control_vm_events. */
	struct migration *mig;
	pthread_mutex_t mig_lock;
	char **mig_events;
	size_t nmig_events;
	/* The last checkpoint (its store, resolved): the next one's parent. "" when the
	 * next must be full (none yet, or the dirty log was harvested by someone else). */
	char ckpt_store[PATH_MAX];
	char ckpt_parent[MANIFEST_ID_LEN + 1];
};

/*
 * control_vm_init - set up @cv for @vm (which must outlive it); events go out through
 * @broadcast and @wake with @arg. The current run state counts as announced. Never fails.
 */
void control_vm_init(struct control_vm *cv, struct vm *vm,
                     void (*broadcast)(void *arg, const char *line), void (*wake)(void *arg),
                     void *arg);

/* control_vm_ops - the command table's backend (control_proto.h) acting on @cv. */
struct control_ops control_vm_ops(struct control_vm *cv);

/*
 * control_vm_sync_state - broadcast STATE_CHANGE if the VM's run state differs from the
 * one last announced. Events are never duplicated and a burst of changes collapses into
 * its end state. Commands call it after each step, so a client sees "paused" before the
 * reply to "pause".
 */
void control_vm_sync_state(struct control_vm *cv);

/* control_vm_events - broadcast the MIGRATION events queued so far, in order. */
void control_vm_events(struct control_vm *cv);

/*
 * control_vm_end_migration - cancel a migration still running and wait for its thread
 * (its last events stay queued for control_vm_events). From the thread that stops the
 * server, while the control thread still runs.
 */
void control_vm_end_migration(struct control_vm *cv);

/* control_vm_fini - free what @cv holds (queued events); no migration may be left. */
void control_vm_fini(struct control_vm *cv);

#endif
