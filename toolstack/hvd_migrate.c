/*
 * hvd_migrate.c - live migration through hvd: domains out to another host, VMs in from
 * other hosts (docs/hvd.8.md, MIGRATION).
 *
 * Out: `migrate` moves the domain to migrating-out and hands the request's options to
 * the VM's own `migrate` command; the migration runs inside the hv process, and hvd
 * follows its MIGRATION events, passes them on with the domain's name, and lets their end
 * decide the state: the VM exits "migrated to" (migrated), or runs on here (back to
 * running or paused). Because the migration lives in hv and not in hvd, an hvd restart
 * cannot stop it halfway; the next hvd cancels one that can still be cancelled, so that
 * what it reports (interrupted, failed) is what happened, and follows one past its
 * switchover to its end.
 *
 * In: hvd runs `hvmigrate recv --keep-listening --hvd SOCK` as a child (restarted when
 * it dies). Each migration arrives in a process of its own, which, once the VM's config
 * has come and before any page has, asks hvd `migrate-incoming` with the VM's name: hvd
 * refuses a name it already has (the migration fails and the source keeps its VM), or
 * registers the domain, migrating-in, with that process as its VM. The domain runs once
 * the VM's control socket answers, and is forgotten if the process ends before that.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "toolstack/hvd.h"

/* ---- out ---- */

static bool phase_is(const char *phase, const char *s)
{
	return phase && !strcmp(phase, s);
}

static void migrate_cb(void *arg, json_t *reply)
{
	struct hvd_op *op = arg;
	struct domain *d = op->d;
	json_t *ret;

	if (!reply) {
		hvd_op_done(op, CONTROL_FAILED, NULL, "the VM ended before it answered");
		return;
	}
	if (json_object_get(reply, "error")) {
		if (d->state == DOM_MIGRATING_OUT) {
			d->mig_uri[0] = '\0';
			dom_back_to_vm_state(d, "migration refused");
		}
		hvd_forward_error(op, reply);
		return;
	}
	ret = json_pack("{s:s, s:s}", "name", d->cfg.name, "uri", d->mig_uri);
	hvd_op_done(op, ret ? CONTROL_OK : CONTROL_FAILED, ret, "out of memory");
	json_decref(ret);
}

static void cancel_cb(void *arg, json_t *reply)
{
	struct hvd_op *op = arg;

	if (!reply)
		hvd_op_done(op, CONTROL_FAILED, NULL, "the VM ended before it answered");
	else if (json_object_get(reply, "error"))
		hvd_forward_error(op, reply);
	else
		hvd_op_done(op, CONTROL_OK, NULL, NULL);
}

static void cmd_out(struct hvd_op *op, const struct hvd_request *r, struct domain *d)
{
	const char *uri = json_string_value(json_object_get(r->args, "uri"));
	struct hv_error err = {0};
	enum dom_state old = d->state;
	json_t *args;

	if (dom_check_op(d, DOP_MIGRATE, &err) < 0)
		return hvd_op_done(op, CONTROL_INVALID_STATE, NULL, err.msg);
	if (strlen(uri) >= sizeof(d->mig_uri))
		return hvd_op_done(op, CONTROL_INVALID_ARGUMENT, NULL,
		                   "migrate: 'uri' must be a string of 1 to 299 bytes");
	args = json_deep_copy(r->args);
	if (!args)
		return hvd_op_done(op, CONTROL_FAILED, NULL, "out of memory");
	op->d = d;
	snprintf(d->mig_uri, sizeof(d->mig_uri), "%s", uri);
	d->mig_done = false;
	d->mig_orphan = false;
	d->mig_final = false;
	d->last_error[0] = '\0';
	/* Recorded before the VM is asked, so a restarted hvd knows to look. */
	dom_set_state(d, DOM_MIGRATING_OUT);
	dom_changed(d, old, "migrate");
	if (vm_call(d, "migrate", args, migrate_cb, op) < 0) {
		dom_back_to_vm_state(d, "migration failed");
		hvd_op_done(op, CONTROL_FAILED, NULL, "the VM's control socket is closed");
	}
}

void hvd_migration_event(struct domain *d, json_t *data)
{
	const char *phase = json_string_value(json_object_get(data, "phase"));
	const char *error = json_string_value(json_object_get(data, "error"));
	json_t *fwd = json_deep_copy(data);
	bool mine = d->state == DOM_MIGRATING_OUT;

	if (fwd)
		json_object_set_new(fwd, "name", json_string(d->cfg.name));
	if (mine && (phase_is(phase, "completed") || phase_is(phase, "failed") ||
	             phase_is(phase, "cancelled") || phase_is(phase, "in-doubt")))
		d->mig_final = true;
	/* The state first: a client that acts on the final event sees where the VM is. */
	if (mine && phase_is(phase, "completed")) {
		d->mig_done = true; /* the VM exits now: vm_gone makes it migrated */
	} else if (mine && (phase_is(phase, "failed") || phase_is(phase, "cancelled"))) {
		if (d->mig_orphan)
			snprintf(d->last_error, sizeof(d->last_error),
			         "a migration to %s was interrupted by an hvd restart (failed: %s)",
			         d->mig_uri, error ? error : phase);
		else
			snprintf(d->last_error, sizeof(d->last_error), "migration to %s %s: %s",
			         d->mig_uri, phase, error ? error : "no reason given");
		dom_back_to_vm_state(d, d->mig_orphan ? "interrupted migration reported as failed"
		                        : phase_is(phase, "failed") ? "migration failed"
		                                                    : "migration cancelled");
	} else if (mine && phase_is(phase, "in-doubt")) {
		/* hv keeps its copy paused; only an operator can tell which copy may run. */
		d->vm_paused = true;
		snprintf(d->last_error, sizeof(d->last_error),
		         "migration to %s in doubt (the VM is kept paused here; resume it only if "
		         "the destination does not run it): %s",
		         d->mig_uri, error ? error : "?");
		dom_back_to_vm_state(d, "migration in doubt");
	}
	if (fwd)
		hvd_event(d->hvd, "MIGRATION", fwd);
}

static void orphan_cancel_cb(void *arg, json_t *reply)
{
	struct domain *d = arg;
	const char *desc =
	    json_string_value(json_object_get(json_object_get(reply, "error"), "desc"));

	/* Refused once GO has gone: the destination owns the VM; its end will say so. */
	if (desc)
		fprintf(stderr, "hvd: %s: cannot cancel the interrupted migration: %s\n",
		        d->cfg.name, desc);
}

static void reattach_cb(void *arg, json_t *reply)
{
	struct domain *d = arg;
	json_t *ret = json_object_get(reply, "return");
	const char *phase = json_string_value(json_object_get(ret, "phase"));

	if (!ret || d->state != DOM_MIGRATING_OUT)
		return; /* ended meanwhile (its final event came first), or the VM is gone */
	if (phase_is(phase, "setup") || phase_is(phase, "precopy")) {
		fprintf(stderr, "hvd: %s: cancelling the migration an hvd restart interrupted\n",
		        d->cfg.name);
		vm_call(d, "migrate-cancel", NULL, orphan_cancel_cb, d);
	} else if (phase_is(phase, "switchover") || phase_is(phase, "committed")) {
		d->mig_orphan = false; /* too late to cancel: its end is the real result */
	} else if (phase_is(phase, "none")) {
		json_t *f = json_pack("{s:s, s:s}", "phase", "failed", "error",
		                      "the VM never started the migration");
		hvd_migration_event(d, f);
		json_decref(f);
	} else {
		hvd_migration_event(d, ret); /* it ended while hvd was away */
	}
}

void hvd_migrate_reattach(struct domain *d)
{
	d->mig_orphan = true;
	if (vm_call(d, "migrate-status", NULL, reattach_cb, d) < 0)
		fprintf(stderr, "hvd: %s: cannot ask for the migration's status\n", d->cfg.name);
}

/* ---- in ---- */

static void cmd_in(struct hvd *h, struct hvd_op *op, const struct hvd_request *r, struct domain *d)
{
	const char *accel = json_string_value(json_object_get(r->args, "accel"));
	json_int_t mem = json_integer_value(json_object_get(r->args, "memory"));
	json_int_t vcpus = json_integer_value(json_object_get(r->args, "vcpus"));
	struct hv_error err = {0};
	pid_t pid = hvd_op_peer_pid(op);
	struct domcfg cfg;
	json_t *ret;

	if (d) {
		hv_fail(&err, EEXIST, "domain %s already exists here (%s)", r->name,
		        dom_state_name(d->state));
		return hvd_op_done(op, CONTROL_INVALID_STATE, NULL, err.msg);
	}
	if (pid <= 0)
		return hvd_op_done(op, CONTROL_FAILED, NULL,
		                   "migrate-incoming: cannot tell which process asks");
	domcfg_init(&cfg);
	snprintf(cfg.name, sizeof(cfg.name), "%s", r->name);
	cfg.memory = (uint64_t)mem;
	cfg.vcpus = (unsigned)(vcpus > 0 && vcpus < 1000 ? vcpus : 0);
	cfg.accel = !strcmp(accel, "kvm") ? DOMCFG_ACCEL_KVM : DOMCFG_ACCEL_EMU;
	/* The stream does not carry the kernel: `start` needs a real config (as restore). */
	cfg.kernel = strdup("unknown-kernel");
	if (!cfg.kernel || domcfg_check(&cfg, &err) < 0) {
		domcfg_free(&cfg);
		return hvd_op_done(op, CONTROL_INVALID_ARGUMENT, NULL,
		                   err.msg[0] ? err.msg : "out of memory");
	}
	d = hvd_define(h, &cfg, &err);
	domcfg_free(&cfg);
	if (!d)
		return hvd_op_done(op, CONTROL_FAILED, NULL, err.msg);
	if (snprintf(d->control, sizeof(d->control), "%s/%s.sock", h->run_dir, d->cfg.name) >=
	        (int)sizeof(d->control) ||
	    snprintf(d->console, sizeof(d->console), "%s/%s.log", h->dom_dir, d->cfg.name) >=
	        (int)sizeof(d->console)) {
		hvd_forget(h, d);
		return hvd_op_done(op, CONTROL_FAILED, NULL,
		                   "the state directory's path is too long for a socket");
	}
	d->pid = pid;
	d->pid_start = dom_proc_start(pid);
	d->started = time(NULL);
	dom_set_state(d, DOM_MIGRATING_IN);
	dom_changed(d, DOM_SHUTDOWN, "incoming migration");
	vm_watch_incoming(d);
	ret = json_pack("{s:s, s:s}", "console", d->console, "control", d->control);
	hvd_op_done(op, ret ? CONTROL_OK : CONTROL_FAILED, ret, "out of memory");
	json_decref(ret);
}

void hvd_cmd_migrate(struct hvd *h, struct hvd_op *op, const struct hvd_request *r,
                     struct domain *d)
{
	char msg[HV_ERROR_MSG];

	switch (r->cmd) {
	case HVD_MIGRATE: return cmd_out(op, r, d);
	case HVD_MIGRATE_INCOMING: return cmd_in(h, op, r, d);
	case HVD_MIGRATE_CANCEL:
		if (d->state != DOM_MIGRATING_OUT) {
			snprintf(msg, sizeof(msg),
			         "%s: no migration in progress (the domain is %s)", d->cfg.name,
			         dom_state_name(d->state));
			return hvd_op_done(op, CONTROL_INVALID_STATE, NULL, msg);
		}
		op->d = d;
		if (vm_call(d, "migrate-cancel", NULL, cancel_cb, op) < 0)
			hvd_op_done(op, CONTROL_FAILED, NULL, "the VM's control socket is closed");
		return;
	default: hvd_op_done(op, CONTROL_FAILED, NULL, "internal error: unexpected command");
	}
}

/* ---- the listener ---- */

#define BACKOFF_MAX 30.0

static void restart_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hvd *h = w->data;
	struct hv_error err = {0};

	if (hvd_listener_start(h, &err) < 0)
		fprintf(stderr, "hvd: migration listener: %s\n", err.msg);
}

static void listener_gone_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct hvd *h = w->data;
	int st = w->rstatus;

	ev_child_stop(loop, w);
	h->mig_pid = 0;
	/* A busy port or a bad certificate would fail again at once: back off. */
	fprintf(stderr,
	        "hvd: the migration listener (hvmigrate recv) %s %d; restarting it in %.0f s\n",
	        WIFSIGNALED(st) ? "was killed by signal" : "exited with status",
	        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), h->mig_backoff);
	ev_timer_init(&h->mig_restart_w, restart_cb, h->mig_backoff, 0);
	h->mig_restart_w.data = h;
	ev_timer_start(loop, &h->mig_restart_w);
	h->mig_backoff = h->mig_backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : h->mig_backoff * 2;
}

int hvd_listener_start(struct hvd *h, struct hv_error *err)
{
	static const char *const tls_opts[4] = {"--tls-cert", "--tls-key", "--tls-ca",
	                                        "--tls-client-name"};
	const char *argv[24];
	char control[PATH_MAX + 16], console[PATH_MAX + 16];
	int n = 0, nullfd;
	pid_t parent = getpid(), pid;

	if (!h->mig_backoff)
		h->mig_backoff = 1;
	snprintf(control, sizeof(control), "%s/%%n.sock", h->run_dir);
	snprintf(console, sizeof(console), "%s/%%n.console", h->run_dir); /* hvctl console */
	argv[n++] = h->hvmigrate_path;
	argv[n++] = "recv";
	argv[n++] = "--listen";
	argv[n++] = h->mig_listen;
	argv[n++] = "--keep-listening";
	argv[n++] = "--control";
	argv[n++] = control;
	argv[n++] = "--console-socket";
	argv[n++] = console;
	argv[n++] = "--hvd";
	argv[n++] = h->sock_path;
	for (int i = 0; i < 4; i++)
		if (h->mig_tls[i]) {
			argv[n++] = tls_opts[i];
			argv[n++] = h->mig_tls[i];
		}
	argv[n] = NULL;
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nullfd < 0)
		return hv_fail(err, errno, "/dev/null: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		sigset_t none;

		/* It dies with hvd (the next hvd starts its own); the VMs it received do not. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		/* Its own session, so a Ctrl-C at hvd's terminal reaches none of those VMs. */
		setsid();
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(nullfd, 0);
		dup2(nullfd, 1); /* each VM's console goes to its domain's log (hvd says which) */
		execv(argv[0], (char **)argv);
		dprintf(2, "hvd: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(nullfd);
	if (pid < 0)
		return hv_fail(err, errno, "fork: %s", strerror(errno));
	h->mig_pid = pid;
	ev_child_init(&h->mig_child_w, listener_gone_cb, pid, 0);
	h->mig_child_w.data = h;
	ev_child_start(h->loop, &h->mig_child_w);
	fprintf(stderr, "hvd: migration listener on %s: hvmigrate recv, pid %d\n", h->mig_listen,
	        (int)pid);
	return 0;
}

void hvd_listener_stop(struct hvd *h)
{
	ev_timer_stop(h->loop, &h->mig_restart_w);
	if (!h->mig_pid)
		return;
	ev_child_stop(h->loop, &h->mig_child_w);
	kill(h->mig_pid, SIGTERM); /* the process only: its VMs are in its session */
	waitpid(h->mig_pid, NULL, 0);
	h->mig_pid = 0;
}
