/*
 * hvd_domain.h - hvd's domains: what one is, the states it moves through, and how it is
 * kept in the state directory.
 *
 * A domain is a named config plus, while it runs, one `hv` process and its control
 * socket. Its state is hvd's view: the VM's own run state (running, paused) plus the
 * stopped states and the transient states of operations hvd runs on it. Every operation
 * is checked against the state first (dom_check_op), so a save cannot start during a
 * checkpoint and no second checkpoint can start beside the first.
 *
 * On disk (STATE/domains/): NAME.cfg, the config in canonical form (domcfg_write), and
 * NAME.state, the runtime record as JSON (state, pid, control socket, start time). Both
 * are replaced atomically (temp file, fsync, rename, directory fsync), so a crash of hvd
 * at any moment leaves either the old or the new version, which is what lets a restarted
 * hvd find its VMs again.
 */
#ifndef HV_TOOLSTACK_HVD_DOMAIN_H
#define HV_TOOLSTACK_HVD_DOMAIN_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include "hv/error.h"
#include "toolstack/domcfg.h"

enum dom_state {
	/* stopped: no hv process */
	DOM_SHUTDOWN,
	DOM_CRASHED,
	DOM_SAVED,
	DOM_MIGRATED, /* migrated to another host: the VM runs there now */
	/* live: an hv process that hvd talks to */
	DOM_STARTING,
	DOM_RUNNING,
	DOM_PAUSED,
	DOM_CHECKPOINTING,
	DOM_SAVING,
	DOM_SHUTTING_DOWN,
	DOM_DESTROYING,
	DOM_MIGRATING_OUT, /* the VM migrates away; it runs here until the switchover */
	DOM_MIGRATING_IN,  /* a VM arrives (hvmigrate recv); it runs once switched over */
	DOM_NSTATES
};

enum dom_op {
	DOP_START, /* start, restore */
	DOP_PAUSE, /* pause, resume */
	DOP_SAVE,  /* save, checkpoint */
	DOP_SHUTDOWN,
	DOP_DESTROY,
	DOP_DELETE,
	DOP_MIGRATE,
};

struct vmconn;
struct hvd_op;

struct domain {
	struct domain *next;
	struct hvd *hvd;
	struct domcfg cfg;
	enum dom_state state;
	bool vm_paused; /* the VM's run state as last seen (under transient states too) */
	pid_t pid;      /* 0 when stopped */
	unsigned long long pid_start; /* /proc/PID/stat starttime: guards against pid reuse */
	bool is_child;                /* spawned by this hvd (ev_child works) */
	char control[108];            /* the VM's control socket */
	char console[PATH_MAX];       /* where the VM's console goes */
	time_t started;               /* when the hv process started (wall clock) */
	char save_file[PATH_MAX];     /* the last save file ("" when none) */
	char last_error[HV_ERROR_MSG];
	char exit_kind[24]; /* from the VM's last STATE_CHANGE shutdown; "" if none */
	int exit_code;
	bool save_done;    /* the VM answered a save: its end is DOM_SAVED */
	char mig_uri[300]; /* migrating-out, migrated: where to ("" when never) */
	bool mig_done;     /* the VM reported its migration completed: its end is DOM_MIGRATED */
	bool mig_orphan;   /* a migration that hvd lost track of (hvd restarted): cancelled */
	bool mig_final;    /* its final MIGRATION event has been passed on */
	/* The running process. */
	struct vmconn *vc;
	ev_child child_w;
	ev_timer timer_w;  /* connect retries while starting; liveness polls after EOF */
	double deadline;   /* ev_now() by which the control socket must answer */
	double start_s;    /* ... that is, how long it was given */
	struct hvd_op *op; /* the request waiting for this domain's start or end */
};

/* dom_state_name - "running", "shutdown", "checkpointing", ... (the wire names). */
const char *dom_state_name(enum dom_state s);

/* dom_state_parse - the state named @s, or -1. */
int dom_state_parse(const char *s);

/* dom_live - whether @s has an hv process. */
bool dom_live(enum dom_state s);

/*
 * dom_check_op - whether @op may start on @d now. Returns 0, or -1 with @err saying why
 * in words ("web1: cannot pause a domain that is checkpointing").
 */
int dom_check_op(const struct domain *d, enum dom_op op, struct hv_error *err);

/*
 * dom_set_state - move @d to @s, checking the transition (an impossible one is a bug in
 * hvd: logged and done anyway, since the VM's reality wins). Returns the old state.
 */
enum dom_state dom_set_state(struct domain *d, enum dom_state s);

/* dom_summary - the member set of `list` for @d; dom_info adds the config and the rest. */
json_t *dom_summary(const struct domain *d);
json_t *dom_info(const struct domain *d);

/*
 * dom_save_cfg, dom_save_state - write NAME.cfg / NAME.state under @dir (STATE/domains)
 * atomically. -1 with @err naming the file.
 */
int dom_save_cfg(const char *dir, const struct domain *d, struct hv_error *err);
int dom_save_state(const char *dir, const struct domain *d, struct hv_error *err);

/* dom_remove_files - delete NAME.cfg and NAME.state (the console log stays). */
void dom_remove_files(const char *dir, const char *name);

/*
 * dom_load - read NAME.cfg and, if present, NAME.state from @dir into a new domain
 * (malloc'd; free with dom_free). NULL with @err naming the file at fault.
 */
struct domain *dom_load(const char *dir, const char *name, struct hv_error *err);

/* dom_free - free @d's config and @d itself (watchers must be stopped). */
void dom_free(struct domain *d);

/*
 * dom_proc_start - the starttime field of /proc/@pid/stat, or 0 when there is no such
 * process or it is a zombie (ended, not yet reaped).
 */
unsigned long long dom_proc_start(pid_t pid);

/* dom_uuid_new - a random (version 4) UUID into @out (DOMCFG_UUID_LEN + 1 bytes). */
int dom_uuid_new(char *out, struct hv_error *err);

/* dom_write_atomic - replace @path with @len bytes of @data (mode 0600). */
int dom_write_atomic(const char *path, const void *data, size_t len, struct hv_error *err);

#endif
