/*
 * hvd_vm.c - the hv process of a domain: spawn it, find it again, watch it end.
 *
 * Each VM is an `hv run --control SOCK` (or `hv restore`) process in a session of its
 * own, with its console going to a log file and served on a console socket beside the
 * control socket (RUN_DIR/NAME.console, for `hvctl console NAME`): nothing ties its life
 * to hvd's, so hvd can crash, stop or restart while its VMs run on. hvd knows a VM
 * through its pid (checked with the process's start time, against pid reuse) and its
 * control socket, over which it asks, orders and hears STATE_CHANGE events.
 *
 * A VM's end is seen as its control connection closing, then confirmed by the process
 * going away: reaped through ev_child when this hvd spawned it, polled with kill(pid, 0)
 * when it was found again after a restart (its parent is then init).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "toolstack/hvd.h"
#include "toolstack/hvd_vmconn.h"

#define POLL_S 0.1 /* liveness polls of an attached VM whose connection closed */

/*
 * The console socket of @d's VM into @out (a socket path's size): RUN_DIR/NAME.console,
 * derived from its control socket RUN_DIR/NAME.sock so that a re-attached hvd names the
 * same one. -1 when it would not fit a socket path.
 */
static int console_path(const struct domain *d, char *out, size_t cap)
{
	size_t n = strlen(d->control);

	if (n < 5 || strcmp(d->control + n - 5, ".sock") ||
	    snprintf(out, cap, "%.*s.console", (int)(n - 5), d->control) >= (int)cap)
		return -1;
	return 0;
}

void dom_changed(struct domain *d, enum dom_state old, const char *why)
{
	struct hv_error err = {0};

	if (dom_save_state(d->hvd->dom_dir, d, &err) < 0)
		fprintf(stderr, "hvd: %s: cannot record the state: %s\n", d->cfg.name, err.msg);
	if (old == d->state && !why)
		return;
	fprintf(stderr, "hvd: %s: %s -> %s%s%s%s\n", d->cfg.name, dom_state_name(old),
	        dom_state_name(d->state), why ? " (" : "", why ? why : "", why ? ")" : "");
	hvd_event(d->hvd, "DOMAIN_STATE",
	          json_pack("{s:s, s:s, s:s, s:s?}", "name", d->cfg.name, "state",
	                    dom_state_name(d->state), "previous", dom_state_name(old), "reason",
	                    why));
}

/* The last line of the console log, for "why did it not start" messages. */
static void log_tail(const char *path, char *out, size_t cap)
{
	char buf[512], *p;
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end;

	out[0] = '\0';
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > 0) {
		off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
		n = pread(fd, buf, sizeof(buf) - 1, from);
	}
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	p = strrchr(buf, '\n') ? strrchr(buf, '\n') + 1 : buf;
	n = (ssize_t)strlen(p) < (ssize_t)cap ? (ssize_t)strlen(p) : (ssize_t)cap - 1;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
}

/* The VM has ended (status: its wait status, or -1 when unknown). */
static void vm_gone(struct domain *d, int status)
{
	struct hvd_op *op = d->op;
	bool clean = false, known = false;
	enum dom_state old = d->state, to;
	char why[HV_ERROR_MSG + 64] = "", tail[256];

	ev_timer_stop(d->hvd->loop, &d->timer_w);
	ev_child_stop(d->hvd->loop, &d->child_w);
	vmconn_free(d->vc);
	d->vc = NULL;
	if (old == DOM_MIGRATING_IN) {
		/* It never arrived: the source keeps the VM, and this host forgets the name. */
		fprintf(stderr, "hvd: %s: incoming migration failed (pid %d ended)\n", d->cfg.name,
		        (int)d->pid);
		if (op)
			hvd_op_done(op, CONTROL_FAILED, NULL, "the incoming migration failed");
		hvd_forget(d->hvd, d);
		return;
	}
	if (old == DOM_MIGRATING_OUT && !d->mig_done) {
		/* Its last events unread (hvd was away, or the exit was seen first): hv's last
		 * words on stderr say whether it migrated. */
		log_tail(d->console, tail, sizeof(tail));
		d->mig_done = strstr(tail, "migrated to") != NULL;
	}
	if (d->exit_kind[0]) {
		known = true;
		clean = !strcmp(d->exit_kind, "guest") || !strcmp(d->exit_kind, "requested");
	} else if (status != -1) {
		known = true;
		clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	if (d->save_done)
		to = DOM_SAVED;
	else if (old == DOM_MIGRATING_OUT && d->mig_done)
		to = DOM_MIGRATED;
	else if (old == DOM_SHUTTING_DOWN || old == DOM_DESTROYING)
		to = DOM_SHUTDOWN;
	else if (old == DOM_SAVING && !d->is_child)
		/* hvd restarted during the save: the file tells whether it finished. */
		to = access(d->save_file, F_OK) == 0 ? DOM_SAVED : DOM_CRASHED;
	else if (old == DOM_STARTING || old == DOM_SAVING || old == DOM_CHECKPOINTING)
		to = DOM_CRASHED;
	else
		to = known && clean ? DOM_SHUTDOWN : DOM_CRASHED;
	/* A start that timed out was killed by us: its reason says more than the kill. */
	if (to == DOM_CRASHED && old == DOM_STARTING && d->last_error[0]) {
		snprintf(why, sizeof(why), "%s", d->last_error);
	} else if (to == DOM_CRASHED) {
		log_tail(d->console, tail, sizeof(tail));
		if (status != -1 && WIFSIGNALED(status))
			snprintf(why, sizeof(why), "hv killed by signal %d", WTERMSIG(status));
		else if (status != -1)
			snprintf(why, sizeof(why), "hv exited with status %d", WEXITSTATUS(status));
		else
			snprintf(why, sizeof(why), "the hv process ended");
		if (tail[0])
			snprintf(why + strlen(why), sizeof(why) - strlen(why), ": %s", tail);
		snprintf(d->last_error, sizeof(d->last_error), "%s", why);
	}
	if (to == DOM_MIGRATED) {
		snprintf(why, sizeof(why), "migrated to %s", d->mig_uri);
		d->last_error[0] = '\0';
	}
	if (d->control[0]) {
		char con[sizeof(d->control)];

		unlink(d->control); /* left behind when hv was killed */
		if (console_path(d, con, sizeof(con)) == 0)
			unlink(con);
	}
	d->pid = 0;
	d->pid_start = 0;
	d->save_done = false;
	d->mig_done = false;
	d->exit_kind[0] = '\0';
	dom_set_state(d, to);
	dom_changed(d, old, why[0] ? why : NULL);
	if (old == DOM_MIGRATING_OUT && !d->mig_final) {
		/* Whoever follows the migration must hear its end, even one hv never told. */
		d->mig_final = true;
		hvd_event(d->hvd, "MIGRATION",
		          json_pack("{s:s, s:s, s:s?}", "name", d->cfg.name, "phase",
		                    to == DOM_MIGRATED ? "completed" : "failed", "error",
		                    to == DOM_MIGRATED ? NULL
		                    : why[0]           ? why
		                                       : "the VM ended"));
	}
	if (!op)
		return;
	d->op = NULL;
	if (op->cmd == HVD_SHUTDOWN || op->cmd == HVD_DESTROY ||
	    (op->cmd == HVD_SAVE && to == DOM_SAVED)) {
		json_t *ret = op->ret ? json_incref(op->ret) : dom_summary(d);
		hvd_op_done(op, CONTROL_OK, ret, NULL);
		json_decref(ret);
	} else {
		bool forget = op->new_domain;
		char msg[HV_ERROR_MSG + 80];

		snprintf(msg, sizeof(msg), "%s: %s", d->cfg.name, why[0] ? why : "the VM ended");
		hvd_op_done(op, CONTROL_FAILED, NULL, msg);
		if (forget)
			hvd_forget(d->hvd, d);
	}
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct domain *d = w->data;

	vm_gone(d, w->rstatus);
}

/* After an attached VM's connection closed: has the process gone? */
bool vm_pid_gone(struct domain *d)
{
	if (!d->pid)
		return true;
	if (kill(d->pid, 0) < 0 && errno == ESRCH)
		return true;
	/* A zombie (its new parent has not reaped it yet) has ended too. */
	return dom_proc_start(d->pid) == 0 ||
	       (d->pid_start && dom_proc_start(d->pid) != d->pid_start);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct domain *d = w->data;

	if (vm_pid_gone(d))
		vm_gone(d, -1);
}

static void on_event(void *opaque, json_t *ev)
{
	struct domain *d = opaque;
	const char *name = json_string_value(json_object_get(ev, "event"));
	json_t *data = json_object_get(ev, "data");
	const char *st = json_string_value(json_object_get(data, "state"));
	enum dom_state old = d->state;

	if (name && !strcmp(name, "MIGRATION")) {
		hvd_migration_event(d, data);
		return;
	}
	if (!name || strcmp(name, "STATE_CHANGE") || !st)
		return;
	if (!strcmp(st, "shutdown")) {
		json_t *ex = json_object_get(data, "exit");
		const char *reason = json_string_value(json_object_get(ex, "reason")) ?: "";

		snprintf(d->exit_kind, sizeof(d->exit_kind), "%s",
		         json_string_value(json_object_get(ex, "kind")) ?: "unknown");
		d->exit_code = (int)json_integer_value(json_object_get(ex, "code"));
		if (d->state == DOM_MIGRATING_OUT && !strncmp(reason, "migrated to", 11))
			d->mig_done = true;
		return;
	}
	d->vm_paused = !strcmp(st, "paused");
	/* Under a transient state the VM's own pauses (a save's, say) are not news. */
	if (d->state == DOM_RUNNING || d->state == DOM_PAUSED) {
		dom_set_state(d, d->vm_paused ? DOM_PAUSED : DOM_RUNNING);
		if (old != d->state)
			dom_changed(d, old, NULL);
	}
}

static void on_closed(void *opaque, const char *why)
{
	struct domain *d = opaque;

	vmconn_free(d->vc);
	d->vc = NULL;
	if (d->is_child)
		return; /* child_cb reports the end with its status */
	if (vm_pid_gone(d)) {
		vm_gone(d, -1);
		return;
	}
	ev_timer_stop(d->hvd->loop, &d->timer_w);
	ev_timer_init(&d->timer_w, poll_cb, POLL_S, POLL_S);
	ev_timer_start(d->hvd->loop, &d->timer_w);
}

static const struct vmconn_ops vm_ops_template = {.event = on_event, .closed = on_closed};

/* The reply to the first `info`: the VM is up (or, attaching, proven to be ours). */
static void info_cb(void *arg, json_t *reply)
{
	struct domain *d = arg;
	json_t *ret = json_object_get(reply, "return");
	const char *name = json_string_value(json_object_get(ret, "name"));
	const char *st = json_string_value(json_object_get(ret, "state"));
	enum dom_state old = d->state;
	struct hvd_op *op = d->op;

	if (!reply)
		return; /* the connection closed: on_closed and the process watch take over */
	if (!ret || !name || !st || (!d->is_child && strcmp(name, d->cfg.name))) {
		/* Not our VM (pid and socket reused by another?): leave it alone. */
		fprintf(stderr, "hvd: %s: pid %d answers as '%s', not as this domain's VM\n",
		        d->cfg.name, (int)d->pid, name ? name : "?");
		vmconn_free(d->vc);
		d->vc = NULL;
		d->is_child = false;
		d->pid = 0;
		vm_gone(d, -1);
		return;
	}
	ev_timer_stop(d->hvd->loop, &d->timer_w);
	d->vm_paused = !strcmp(st, "paused");
	if (old == DOM_CHECKPOINTING)
		snprintf(d->last_error, sizeof(d->last_error),
		         "a checkpoint was interrupted by an hvd restart (failed)");
	if (old == DOM_STARTING || old == DOM_CHECKPOINTING || old == DOM_RUNNING ||
	    old == DOM_PAUSED || old == DOM_MIGRATING_IN)
		dom_set_state(d, d->vm_paused ? DOM_PAUSED : DOM_RUNNING);
	dom_changed(d, old,
	            old == DOM_STARTING       ? NULL
	            : old == DOM_MIGRATING_IN ? "migrated in"
	                                      : "re-attached after hvd restart");
	if (old == DOM_MIGRATING_OUT)
		hvd_migrate_reattach(d);
	if (old == DOM_CHECKPOINTING)
		hvd_event(d->hvd, "CHECKPOINT",
		          json_pack("{s:s, s:s, s:s}", "name", d->cfg.name, "phase", "failed",
		                    "error", d->last_error));
	if (op && (op->cmd == HVD_CREATE || op->cmd == HVD_START || op->cmd == HVD_RESTORE)) {
		json_t *sum = dom_summary(d);
		d->op = NULL;
		if (sum && op->ret) /* restore --store: the checkpoint it came from */
			json_object_update(sum, op->ret);
		hvd_op_done(op, CONTROL_OK, sum, NULL);
		json_decref(sum);
	}
}

int vm_connect(struct domain *d, struct hv_error *err)
{
	struct vmconn_ops ops = vm_ops_template;

	ops.opaque = d;
	d->vc = vmconn_open(d->hvd->loop, d->control, &ops, err);
	if (!d->vc)
		return -1;
	if (vmconn_call(d->vc, "info", NULL, info_cb, d) < 0) {
		vmconn_free(d->vc);
		d->vc = NULL;
		return hv_fail(err, ENOMEM, "out of memory");
	}
	return 0;
}

/* While starting: try the control socket until it answers or the deadline passes. */
static void connect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct domain *d = w->data;
	struct hv_error err = {0};

	if (d->vc)
		return;
	if (vm_connect(d, &err) == 0)
		return;
	if (ev_now(loop) < d->deadline)
		return;
	ev_timer_stop(loop, w);
	snprintf(d->last_error, sizeof(d->last_error),
	         "the VM's control socket did not answer within %.0f s", d->start_s);
	vm_kill(d, NULL); /* child_cb completes the start as failed */
}

/* @argv (domcfg_argv's; consumed) with "--console-socket @path" after "run". */
static char **argv_add_console(char **argv, const char *path, struct hv_error *err)
{
	char *opt = strdup("--console-socket"), *val = strdup(path), **v = NULL;
	size_t n = 0;

	while (argv[n])
		n++;
	if (opt && val)
		v = realloc(argv, (n + 3) * sizeof(*argv));
	if (!v) {
		free(opt);
		free(val);
		domcfg_argv_free(argv);
		return hv_fail(err, ENOMEM, "out of memory"), NULL;
	}
	memmove(v + 4, v + 2, (n - 1) * sizeof(*v)); /* from the first option, NULL included */
	v[2] = opt;
	v[3] = val;
	return v;
}

int vm_spawn(struct domain *d, const char *const *restore, struct hvd_op *op, struct hv_error *err)
{
	struct hvd *h = d->hvd;
	char **argv = NULL, con[sizeof(d->control)];
	int logfd, nullfd;
	enum dom_state old = d->state;
	pid_t pid;

	if (snprintf(d->control, sizeof(d->control), "%s/%s.sock", h->run_dir, d->cfg.name) >=
	    (int)sizeof(d->control))
		return hv_fail(err, ENAMETOOLONG, "%s/%s.sock: longer than a socket path may be",
		               h->run_dir, d->cfg.name);
	if (console_path(d, con, sizeof(con)) < 0)
		return hv_fail(err, ENAMETOOLONG, "%s/%s.console: longer than a socket path may be",
		               h->run_dir, d->cfg.name);
	if (d->cfg.console_log)
		snprintf(d->console, sizeof(d->console), "%s", d->cfg.console_log);
	else if (snprintf(d->console, sizeof(d->console), "%s/%s.log", h->dom_dir, d->cfg.name) >=
	         (int)sizeof(d->console))
		return hv_fail(err, ENAMETOOLONG, "%s: path too long", h->dom_dir);
	if (restore) {
		const char *v[10] = {h->hv_path, "restore"};
		size_t n = 2, i = 0;

		while (*restore && n < 6)
			v[n++] = *restore++;
		v[n++] = "--control";
		v[n++] = d->control;
		v[n++] = "--console-socket";
		v[n++] = con;

		argv = calloc(n + 1, sizeof(*argv));
		for (; argv && i < n && (argv[i] = strdup(v[i])); i++)
			;
		if (i < n) {
			domcfg_argv_free(argv);
			return hv_fail(err, ENOMEM, "out of memory");
		}
	} else {
		argv = domcfg_argv(&d->cfg, h->hv_path, d->control, err);
		if (!argv || !(argv = argv_add_console(argv, con, err)))
			return -1;
	}
	logfd = open(d->console, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0) {
		int e = errno;
		domcfg_argv_free(argv);
		if (logfd >= 0)
			close(logfd);
		if (nullfd >= 0)
			close(nullfd);
		return hv_fail(err, e, "%s: %s", d->console, strerror(e));
	}
	pid = fork();
	if (pid == 0) {
		sigset_t none;

		/* A session of its own: no signal to hvd's group or terminal reaches it. */
		setsid();
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(nullfd, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		execv(argv[0], argv);
		dprintf(2, "hvd: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	domcfg_argv_free(argv);
	close(logfd);
	close(nullfd);
	if (pid < 0)
		return hv_fail(err, errno, "fork: %s", strerror(errno));
	d->pid = pid;
	d->pid_start = dom_proc_start(pid);
	d->is_child = true;
	d->started = time(NULL);
	d->last_error[0] = '\0';
	d->exit_kind[0] = '\0';
	d->save_done = false;
	d->vm_paused = false;
	d->op = op;
	if (op)
		op->d = d;
	ev_child_init(&d->child_w, child_cb, pid, 0);
	d->child_w.data = d;
	ev_child_start(h->loop, &d->child_w);
	/* A restore loads every page before hv answers: 64 MiB/s at the least, then. */
	d->start_s = HVD_START_TIMEOUT + (restore ? (double)(d->cfg.memory >> 20) / 64 : 0);
	d->deadline = ev_now(h->loop) + d->start_s;
	ev_timer_init(&d->timer_w, connect_cb, 0.02, 0.05);
	d->timer_w.data = d;
	ev_timer_start(h->loop, &d->timer_w);
	dom_set_state(d, DOM_STARTING);
	dom_changed(d, old, restore ? "restore" : "start");
	return 0;
}

void vm_attach(struct domain *d)
{
	struct hv_error err = {0};
	enum dom_state old = d->state;

	d->timer_w.data = d;
	d->child_w.data = d;
	d->is_child = false;
	if (!dom_live(d->state))
		return;
	if (d->pid > 0 && !vm_pid_gone(d) && vm_connect(d, &err) == 0) {
		fprintf(stderr, "hvd: %s: found pid %d, asking %s\n", d->cfg.name, (int)d->pid,
		        d->control);
		return; /* info_cb takes it from here */
	}
	if (d->pid > 0 && !vm_pid_gone(d) && d->state == DOM_MIGRATING_IN) {
		vm_watch_incoming(d); /* still arriving */
		return;
	}
	if (d->pid > 0 && !vm_pid_gone(d))
		fprintf(stderr, "hvd: %s: pid %d is alive but its control socket is not: %s\n",
		        d->cfg.name, (int)d->pid, err.msg);
	d->pid = 0;
	d->last_error[0] = '\0';
	vm_gone(d, -1);
	if (old != d->state)
		fprintf(stderr, "hvd: %s: the VM ended while hvd was down\n", d->cfg.name);
}

int vm_call(struct domain *d, const char *cmd, json_t *args, void (*fn)(void *, json_t *),
            void *arg)
{
	if (!d->vc) {
		json_decref(args);
		return -1;
	}
	return vmconn_call(d->vc, cmd, args, fn, arg);
}

int vm_kill(struct domain *d, struct hv_error *err)
{
	if (!d->pid || vm_pid_gone(d))
		return hv_fail(err, ESRCH, "%s: no hv process", d->cfg.name);
	/* hv leads its own process group (setsid at spawn). */
	if (kill(-d->pid, SIGKILL) < 0 && kill(d->pid, SIGKILL) < 0)
		return hv_fail(err, errno, "%s: kill %d: %s", d->cfg.name, (int)d->pid,
		               strerror(errno));
	if (!d->is_child && !d->vc) {
		ev_timer_stop(d->hvd->loop, &d->timer_w);
		ev_timer_init(&d->timer_w, poll_cb, POLL_S, POLL_S);
		ev_timer_start(d->hvd->loop, &d->timer_w);
	}
	return 0;
}

static void incoming_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct domain *d = w->data;

	if (d->vc)
		return; /* connected: info_cb decides */
	if (vm_pid_gone(d)) {
		vm_gone(d, -1);
		return;
	}
	vm_connect(d, NULL); /* ENOENT until the VM has switched over and serves its socket */
}

void vm_watch_incoming(struct domain *d)
{
	d->is_child = false;
	d->timer_w.data = d;
	d->child_w.data = d;
	ev_timer_stop(d->hvd->loop, &d->timer_w);
	ev_timer_init(&d->timer_w, incoming_cb, 0.05, 0.1);
	ev_timer_start(d->hvd->loop, &d->timer_w);
}

void vm_stop_watch(struct domain *d)
{
	ev_timer_stop(d->hvd->loop, &d->timer_w);
	ev_child_stop(d->hvd->loop, &d->child_w);
	vmconn_free(d->vc);
	d->vc = NULL;
}
