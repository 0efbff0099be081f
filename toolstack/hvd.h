/*
 * hvd.h - the hvd daemon's parts and how they call each other (internal to hvd).
 *
 * hvd.c: the program (start, stop, status, the pid file, the loop).
 * hvd_server.c: the API socket, its clients, replies and events.
 * hvd_cmd.c: the API commands.
 * hvd_vm.c: the hv process of a domain (spawn, attach, watch, end).
 * hvd_savefile.c: the VM config record of a save file.
 * hvd_migrate.c: migrations out (migrate, migrate-cancel) and in (the listener).
 * hvd_domain.c, hvd_proto.c, hvd_vmconn.c: see their headers.
 *
 * Everything runs on one thread, in libev callbacks; nothing in them blocks on a VM.
 */
#ifndef HV_TOOLSTACK_HVD_H
#define HV_TOOLSTACK_HVD_H

#include <limits.h>
#include <stdbool.h>

#include <ev.h>
#include <jansson.h>

#include "checkpoint/manifest.h"
#include "hv/error.h"
#include "toolstack/hvd_domain.h"
#include "toolstack/hvd_proto.h"

#ifndef HV_VERSION
#define HV_VERSION "0.1.0"
#endif

#define HVD_DEFAULT_STATE_DIR "/var/lib/hv"
#define HVD_DEFAULT_SOCKET    "/run/hvd.sock"
#define HVD_START_TIMEOUT     30.0 /* s for a new VM's control socket to answer */

struct jsonl_server;
struct jsonl_client;

struct hvd {
	struct ev_loop *loop;
	char state_dir[PATH_MAX];
	char dom_dir[PATH_MAX]; /* STATE/domains: NAME.cfg, NAME.state, NAME.log */
	char run_dir[PATH_MAX]; /* STATE/run: NAME.sock, the VMs' control sockets */
	char sock_path[108];
	char hv_path[PATH_MAX];   /* the hv program */
	struct jsonl_server *api; /* the API socket; NULL when not listening */
	struct domain *domains;
	/* Incoming migrations (--migrate-listen): an `hvmigrate recv` child, or none. */
	const char *mig_listen; /* ADDR, or NULL when hvd takes no migrations */
	const char *mig_tls[4]; /* --tls-cert, --tls-key, --tls-ca, --tls-client-name */
	char hvmigrate_path[PATH_MAX];
	pid_t mig_pid;
	ev_child mig_child_w;
	ev_timer mig_restart_w;
	double mig_backoff; /* s before the next restart of a listener that died */
};

/* A request whose reply is still to come. */
struct hvd_op {
	struct hvd *hvd;
	struct jsonl_client *c; /* a reference; NULL for hvd's own operations (autostart) */
	json_t *id;             /* a reference, or NULL */
	enum hvd_cmd cmd;
	struct domain *d;
	json_t *ret;         /* a reply kept for later (save: sent once the VM has ended) */
	bool new_domain;     /* create/restore defined the domain: forget it if the start fails */
	enum dom_state back; /* checkpoint: the state to return to */
};

/* hvd_server.c */
/* hvd_listen - serve the API on h->sock_path (mode 0600; a stale socket is replaced). */
int hvd_listen(struct hvd *h, struct hv_error *err);
/* hvd_server_close - close the clients (with what they take at once) and the socket. */
void hvd_server_close(struct hvd *h);
/* hvd_op_done - send the reply of @op (@ret borrowed, NULL for {}) and free @op. */
void hvd_op_done(struct hvd_op *op, enum control_class c, json_t *ret, const char *desc);
/* hvd_event - send the event @name with @data (stolen) to every subscribed client. */
void hvd_event(struct hvd *h, const char *name, json_t *data);

/* hvd_cmd.c */
void hvd_dispatch(struct hvd *h, struct hvd_op *op, const struct hvd_request *r);
struct domain *hvd_find(struct hvd *h, const char *name);
/*
 * hvd_define - a new domain from @cfg (moved into it; @cfg is left empty), in state
 * shutdown, its config written, linked into the list. NULL with @err (a uuid taken).
 */
struct domain *hvd_define(struct hvd *h, struct domcfg *cfg, struct hv_error *err);
/* hvd_forget - unlink @d from the list, stop its watchers, delete its files, free it. */
void hvd_forget(struct hvd *h, struct domain *d);
/* hvd_load_domains - read STATE/domains and find each domain's VM again (vm_attach). */
int hvd_load_domains(struct hvd *h, struct hv_error *err);
/* hvd_autostart - start the stopped domains whose config says autostart = true. */
void hvd_autostart(struct hvd *h);

/* hvd_vm.c */
/*
 * vm_spawn - start @d's hv process (`hv run`, or `hv restore ARGS...` when @restore, a
 * NULL-terminated list of at most 4 arguments such as {FILE} or {"--store", DIR, ID}, is
 * given) and connect to it; @op (may be NULL) completes once the VM answers or has
 * failed to start.
 */
int vm_spawn(struct domain *d, const char *const *restore, struct hvd_op *op, struct hv_error *err);
/* vm_attach - find @d's VM again after an hvd restart, or reconcile its state. */
void vm_attach(struct domain *d);
/* vm_call - a request to @d's VM; @fn(@arg, reply or NULL). -1 if not connected. */
int vm_call(struct domain *d, const char *cmd, json_t *args, void (*fn)(void *, json_t *),
            void *arg);
/* vm_connect - connect to @d's control socket and ask `info` (info_cb takes over). */
int vm_connect(struct domain *d, struct hv_error *err);
/* vm_pid_gone - whether @d's process has ended (or is another process now). */
bool vm_pid_gone(struct domain *d);
/*
 * vm_watch_incoming - migrating-in @d's VM arrives in process @d->pid, which is not
 * ours: try its control socket until it answers (then it runs), or see the process end
 * (then the migration failed and the domain is forgotten).
 */
void vm_watch_incoming(struct domain *d);
/* vm_kill - SIGKILL @d's hv process (its process group). */
int vm_kill(struct domain *d, struct hv_error *err);
/* vm_stop_watch - stop @d's watchers and connection (daemon exit, domain forgotten). */
void vm_stop_watch(struct domain *d);
/* dom_changed - persist @d's state, log it and tell the subscribers (@why may be NULL). */
void dom_changed(struct domain *d, enum dom_state old, const char *why);

/* hvd_op_peer_pid - the pid of the process at the other end of @op's client, or 0. */
pid_t hvd_op_peer_pid(const struct hvd_op *op);

/* hvd_cmd.c, shared with hvd_migrate.c */
/* dom_back_to_vm_state - end a transient state: back to the VM's own (running, paused). */
void dom_back_to_vm_state(struct domain *d, const char *why);
/* hvd_forward_error - finish @op with the VM's error reply @reply, the name in front. */
void hvd_forward_error(struct hvd_op *op, json_t *reply);

/* hvd_migrate.c */
/* hvd_cmd_migrate - migrate, migrate-cancel, migrate-incoming on @d (NULL if none). */
void hvd_cmd_migrate(struct hvd *h, struct hvd_op *op, const struct hvd_request *r,
                     struct domain *d);
/* hvd_migration_event - a MIGRATION event @data (borrowed) from @d's VM. */
void hvd_migration_event(struct domain *d, json_t *data);
/*
 * hvd_migrate_reattach - @d was migrating out when hvd restarted and its VM answers:
 * ask where the migration stands and cancel it if it can still be cancelled.
 */
void hvd_migrate_reattach(struct domain *d);
/* hvd_listener_start - spawn `hvmigrate recv --keep-listening` for --migrate-listen. */
int hvd_listener_start(struct hvd *h, struct hv_error *err);
/* hvd_listener_stop - end the listener (the VMs it received run on). */
void hvd_listener_stop(struct hvd *h);

/* hvd_savefile.c */
/*
 * hvd_savefile_config - the VM configuration a save file was written from (name,
 * memory, vCPUs, accelerator, kernel, command line) as a domain config, into @out (to be
 * released with domcfg_free). -1 with @err naming the file.
 */
int hvd_savefile_config(const char *path, struct domcfg *out, struct hv_error *err);
/*
 * hvd_checkpoint_config - the same for checkpoint @id of the store at @store; "latest"
 * is the newest of the VM @vm, or with @vm NULL the newest of a store that holds one
 * VM's checkpoints only. The id it read goes into @out_id. The store is opened shared
 * and closed again before it returns.
 */
int hvd_checkpoint_config(const char *store, const char *id, const char *vm,
                          char out_id[MANIFEST_ID_LEN + 1], struct domcfg *out,
                          struct hv_error *err);

#endif
