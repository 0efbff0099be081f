/*
 * hvd_cmd.c - the hvd API commands, and the set of domains they act on.
 *
 * A command checks the domain's state (dom_check_op) before anything else, moves it to
 * the operation's transient state, and sends its request to the VM; the reply callback
 * finishes the operation. Nothing here waits: a checkpoint of one VM and `list` from
 * another client are served side by side. Commands that end with the VM's exit
 * (shutdown, destroy, save) park their operation in the domain (d->op) and hvd_vm.c
 * completes it when the process has gone, so their reply means "it has stopped".
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/hvd.h"
#include "toolstack/hvd_vmconn.h"

struct domain *hvd_find(struct hvd *h, const char *name)
{
	for (struct domain *d = h->domains; d; d = d->next)
		if (!strcmp(d->cfg.name, name))
			return d;
	return NULL;
}

void hvd_forget(struct hvd *h, struct domain *d)
{
	for (struct domain **pp = &h->domains; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	vm_stop_watch(d);
	dom_remove_files(h->dom_dir, d->cfg.name);
	hvd_event(h, "DOMAIN_DELETED", json_pack("{s:s}", "name", d->cfg.name));
	fprintf(stderr, "hvd: %s: deleted\n", d->cfg.name);
	dom_free(d);
}

/* Finish @op with the error in @err as class @c. */
static void fail_op(struct hvd_op *op, enum control_class c, const struct hv_error *err)
{
	hvd_op_done(op, c, NULL, err->msg);
}

/* Finish @op with @d's summary. */
static void done_summary(struct hvd_op *op, struct domain *d)
{
	json_t *sum = dom_summary(d);

	hvd_op_done(op, CONTROL_OK, sum, NULL);
	json_decref(sum);
}

void dom_back_to_vm_state(struct domain *d, const char *why)
{
	enum dom_state old = d->state;

	dom_set_state(d, d->vm_paused ? DOM_PAUSED : DOM_RUNNING);
	dom_changed(d, old, why);
}

/* A VM's error reply keeps its class. */
void hvd_forward_error(struct hvd_op *op, json_t *reply)
{
	json_t *e = json_object_get(reply, "error");
	const char *cls = json_string_value(json_object_get(e, "class")) ?: "Failed";
	const char *desc = json_string_value(json_object_get(e, "desc")) ?: "failed";
	enum control_class c = CONTROL_FAILED;
	char msg[HV_ERROR_MSG];

	if (!strcmp(cls, "InvalidState"))
		c = CONTROL_INVALID_STATE;
	else if (!strcmp(cls, "InvalidArgument"))
		c = CONTROL_INVALID_ARGUMENT;
	snprintf(msg, sizeof(msg), "%s: %s", op->d->cfg.name, desc);
	hvd_op_done(op, c, NULL, msg);
}

static const char vm_ended[] = "the VM ended before it answered";

/* ---- pause, resume ---- */

static void pause_cb(void *arg, json_t *reply)
{
	struct hvd_op *op = arg;
	struct domain *d = op->d;
	enum dom_state old = d->state;

	if (!reply) {
		hvd_op_done(op, CONTROL_FAILED, NULL, vm_ended);
		return;
	}
	if (json_object_get(reply, "error")) {
		hvd_forward_error(op, reply);
		return;
	}
	d->vm_paused = op->cmd == HVD_PAUSE;
	if (d->state == DOM_RUNNING || d->state == DOM_PAUSED) {
		dom_set_state(d, d->vm_paused ? DOM_PAUSED : DOM_RUNNING);
		dom_changed(d, old, NULL);
	}
	done_summary(op, d);
}

/* ---- shutdown, save: the reply comes with the VM's end (hvd_vm.c) ---- */

static void quit_cb(void *arg, json_t *reply)
{
	struct hvd_op *op = arg;
	struct domain *d = op->d;

	if (!json_object_get(reply, "error"))
		return; /* done, or closed: the end of the process completes d->op */
	if (d->op == op)
		d->op = NULL;
	dom_back_to_vm_state(d, "shutdown refused");
	hvd_forward_error(op, reply);
}

static void save_cb(void *arg, json_t *reply)
{
	struct hvd_op *op = arg;
	struct domain *d = op->d;

	if (!reply)
		return; /* the VM's end completes d->op (as failed: no save_done) */
	if (json_object_get(reply, "error")) {
		if (d->op == op)
			d->op = NULL;
		d->save_file[0] = '\0';
		dom_back_to_vm_state(d, "save failed");
		hvd_forward_error(op, reply);
		return;
	}
	d->save_done = true;
	op->ret = json_incref(json_object_get(reply, "return"));
}

/* ---- checkpoint ---- */

/*
 * The VM's CHECKPOINT or SAVE progress events while our checkpoint or save runs, passed on
 * by name (the event of the command that runs: the VM serves one at a time).
 */
static void progress_event(void *arg, json_t *ev)
{
	struct hvd_op *op = arg;
	json_t *data = json_object_get(ev, "data");
	const char *name = json_string_value(json_object_get(ev, "event")) ?: "";

	if ((strcmp(name, "CHECKPOINT") && strcmp(name, "SAVE")) ||
	    strcmp(json_string_value(json_object_get(data, "phase")) ?: "", "progress"))
		return;
	hvd_event(op->hvd, name,
	          json_pack("{s:s, s:s, s:O?, s:O?}", "name", op->d->cfg.name, "phase", "progress",
	                    "pages_done", json_object_get(data, "pages_done"), "pages_total",
	                    json_object_get(data, "pages_total")));
}

static void ckpt_cb(void *arg, json_t *reply)
{
	struct hvd_op *op = arg;
	struct domain *d = op->d;
	json_t *ret = json_object_get(reply, "return");

	if (!reply) {
		hvd_event(d->hvd, "CHECKPOINT",
		          json_pack("{s:s, s:s, s:s}", "name", d->cfg.name, "phase", "failed",
		                    "error", vm_ended));
		hvd_op_done(op, CONTROL_FAILED, NULL, vm_ended);
		return;
	}
	if (d->state == DOM_CHECKPOINTING)
		dom_back_to_vm_state(d, ret ? "checkpoint done" : "checkpoint failed");
	if (!ret) {
		const char *desc =
		    json_string_value(json_object_get(json_object_get(reply, "error"), "desc"));
		hvd_event(d->hvd, "CHECKPOINT",
		          json_pack("{s:s, s:s, s:s}", "name", d->cfg.name, "phase", "failed",
		                    "error", desc ? desc : "failed"));
		hvd_forward_error(op, reply);
		return;
	}
	hvd_event(d->hvd, "CHECKPOINT",
	          json_pack("{s:s, s:s, s:O?}", "name", d->cfg.name, "phase", "completed", "id",
	                    json_object_get(ret, "id")));
	hvd_op_done(op, CONTROL_OK, ret, NULL);
}

/* vm_call(@cmd) that also hears the VM's progress events (progress_event). */
static int progress_call(struct domain *d, const char *cmd, json_t *args, vmconn_reply_fn fn,
                         struct hvd_op *op)
{
	if (!d->vc) {
		json_decref(args);
		return -1;
	}
	return vmconn_call_events(d->vc, cmd, args, fn, progress_event, op);
}

/* ---- create, restore: define a domain ---- */

struct domain *hvd_define(struct hvd *h, struct domcfg *cfg, struct hv_error *err)
{
	struct domain *d = calloc(1, sizeof(*d));

	if (!d) {
		hv_fail(err, ENOMEM, "out of memory");
		return NULL;
	}
	d->hvd = h;
	d->cfg = *cfg; /* moved: the strings now belong to @d */
	domcfg_init(cfg);
	d->state = DOM_SHUTDOWN;
	d->timer_w.data = d->child_w.data = d;
	if (!d->cfg.uuid[0] && dom_uuid_new(d->cfg.uuid, err) < 0) {
		dom_free(d);
		return NULL;
	}
	for (struct domain *o = h->domains; o; o = o->next)
		if (!strcmp(o->cfg.uuid, d->cfg.uuid)) {
			hv_fail(err, EEXIST, "uuid %s is taken by domain %s", d->cfg.uuid,
			        o->cfg.name);
			dom_free(d);
			return NULL;
		}
	if (dom_save_cfg(h->dom_dir, d, err) < 0) {
		dom_free(d);
		return NULL;
	}
	d->next = h->domains;
	h->domains = d;
	return d;
}

/* Relative paths only mean something next to the config file they came from. */
static int check_absolute(const struct domcfg *c, struct hv_error *err)
{
	const char *keys[] = {"kernel", "initrd", "console_log", "checkpoint_store"};
	const char *vals[] = {c->kernel, c->initrd, c->console_log, c->checkpoint_store};

	for (int i = 0; i < 4; i++)
		if (vals[i] && vals[i][0] != '/')
			return hv_fail(err, EINVAL,
			               "config: %s: relative path \"%s\" needs the config's 'file'",
			               keys[i], vals[i]);
	return 0;
}

static void cmd_create(struct hvd *h, struct hvd_op *op, const struct hvd_request *r)
{
	struct hv_error err = {0};
	struct domcfg cfg;
	struct domain *d;

	if (domcfg_parse(r->config, r->config_len, r->file ? r->file : "config", &cfg, &err) < 0)
		return fail_op(op, CONTROL_INVALID_ARGUMENT, &err);
	if (r->file) {
		char *copy = strdup(r->file);
		int rc = copy ? domcfg_resolve_paths(&cfg, dirname(copy), &err)
		              : hv_fail(&err, ENOMEM, "out of memory");
		free(copy);
		if (rc < 0) {
			domcfg_free(&cfg);
			return fail_op(op, CONTROL_FAILED, &err);
		}
	} else if (check_absolute(&cfg, &err) < 0) {
		domcfg_free(&cfg);
		return fail_op(op, CONTROL_INVALID_ARGUMENT, &err);
	}
	if ((d = hvd_find(h, cfg.name))) {
		hv_fail(&err, EEXIST, "domain %s already exists (%s)", cfg.name,
		        dom_state_name(d->state));
		domcfg_free(&cfg);
		return fail_op(op, CONTROL_INVALID_STATE, &err);
	}
	d = hvd_define(h, &cfg, &err);
	domcfg_free(&cfg);
	if (!d)
		return fail_op(op, CONTROL_FAILED, &err);
	op->new_domain = true;
	if (vm_spawn(d, NULL, op, &err) < 0) {
		hvd_forget(h, d);
		return fail_op(op, CONTROL_FAILED, &err);
	}
}

/* restore FILE, or restore --store DIR [ID]: a save file or a checkpoint under its name. */
static void cmd_restore(struct hvd *h, struct hvd_op *op, const struct hvd_request *r)
{
	struct hv_error err = {0};
	char id[MANIFEST_ID_LEN + 1] = "", what[PATH_MAX + 64];
	const char *args[4] = {r->file};
	struct domcfg cfg;
	struct domain *d;

	if (r->store) {
		if (hvd_checkpoint_config(r->store, r->ckpt_id ? r->ckpt_id : "latest", r->name, id,
		                          &cfg, &err) < 0)
			return fail_op(op, CONTROL_FAILED, &err);
		args[0] = "--store";
		args[1] = r->store;
		args[2] = id;
		snprintf(what, sizeof(what), "checkpoint %s of %s", id, r->store);
	} else {
		if (hvd_savefile_config(r->file, &cfg, &err) < 0)
			return fail_op(op, CONTROL_FAILED, &err);
		snprintf(what, sizeof(what), "%s", r->file);
	}
	/* hv restore keeps the saved name, which is how a restarted hvd recognises it. */
	if (r->name && strcmp(r->name, cfg.name)) {
		hv_fail(&err, EINVAL, "%s holds the VM '%s', not '%s'", what, cfg.name,
		        r->name);
		domcfg_free(&cfg);
		return fail_op(op, CONTROL_INVALID_ARGUMENT, &err);
	}
	d = hvd_find(h, cfg.name);
	if (d) {
		domcfg_free(&cfg);
		if (dom_check_op(d, DOP_START, &err) < 0)
			return fail_op(op, CONTROL_INVALID_STATE, &err);
	} else {
		d = hvd_define(h, &cfg, &err);
		domcfg_free(&cfg);
		if (!d)
			return fail_op(op, CONTROL_FAILED, &err);
		op->new_domain = true;
	}
	/* Added to the reply (hvd_vm.c): which checkpoint "latest" was. */
	if (r->store)
		op->ret = json_pack("{s:s, s:s}", "checkpoint", id, "store", r->store);
	if (vm_spawn(d, args, op, &err) < 0) {
		if (op->new_domain)
			hvd_forget(h, d);
		return fail_op(op, CONTROL_FAILED, &err);
	}
}

/* ---- dispatch ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp((*(struct domain *const *)a)->cfg.name,
	              (*(struct domain *const *)b)->cfg.name);
}

static void cmd_list(struct hvd *h, struct hvd_op *op)
{
	json_t *arr = json_array();
	struct domain **v;
	size_t n = 0, i = 0;
	json_t *ret;

	for (struct domain *d = h->domains; d; d = d->next)
		n++;
	v = calloc(n ? n : 1, sizeof(*v));
	for (struct domain *d = h->domains; v && d; d = d->next)
		v[i++] = d;
	if (v)
		qsort(v, n, sizeof(*v), by_name); /* a stable order for people and scripts */
	for (i = 0; v && arr && i < n; i++)
		json_array_append_new(arr, dom_summary(v[i]));
	if (!v) {
		json_decref(arr);
		arr = NULL;
	}
	free(v);
	ret = json_pack("{s:o?}", "domains", arr);
	hvd_op_done(op, ret ? CONTROL_OK : CONTROL_FAILED, ret, "out of memory");
	json_decref(ret);
}

/* The VM commands on a domain that exists: check, go transient, ask the VM. */
static void cmd_vm(struct hvd *h, struct hvd_op *op, const struct hvd_request *r, struct domain *d)
{
	static const enum dom_op ops[HVD_NCMDS] = {
	    [HVD_START] = DOP_START,       [HVD_PAUSE] = DOP_PAUSE,     [HVD_RESUME] = DOP_PAUSE,
	    [HVD_SHUTDOWN] = DOP_SHUTDOWN, [HVD_DESTROY] = DOP_DESTROY, [HVD_DELETE] = DOP_DELETE,
	    [HVD_SAVE] = DOP_SAVE,         [HVD_CHECKPOINT] = DOP_SAVE,
	};
	struct hv_error err = {0};
	enum dom_state old = d->state;
	json_t *args;

	if (dom_check_op(d, ops[r->cmd], &err) < 0)
		return fail_op(op, CONTROL_INVALID_STATE, &err);
	op->d = d;
	switch (r->cmd) {
	case HVD_START:
		if (vm_spawn(d, NULL, op, &err) < 0)
			fail_op(op, CONTROL_FAILED, &err);
		return;
	case HVD_DELETE:
		op->d = NULL; /* gone before the reply */
		hvd_forget(h, d);
		hvd_op_done(op, CONTROL_OK, NULL, NULL);
		return;
	case HVD_PAUSE:
	case HVD_RESUME:
		if (vm_call(d, r->cmd == HVD_PAUSE ? "pause" : "resume", NULL, pause_cb, op) < 0)
			hvd_op_done(op, CONTROL_FAILED, NULL, "the VM's control socket is closed");
		return;
	case HVD_DESTROY:
		if (d->op) /* a start or a shutdown in progress: it ends here */
			hvd_op_done(d->op, CONTROL_FAILED, NULL, "destroyed meanwhile");
		d->op = op;
		dom_set_state(d, DOM_DESTROYING);
		dom_changed(d, old, "destroy");
		if (vm_kill(d, &err) < 0)
			fprintf(stderr, "hvd: %s\n",
			        err.msg); /* already gone: its end completes op */
		return;
	case HVD_SHUTDOWN:
		d->op = op;
		dom_set_state(d, DOM_SHUTTING_DOWN);
		dom_changed(d, old, "shutdown");
		if (vm_call(d, "quit", NULL, quit_cb, op) < 0)
			vm_kill(d, NULL);
		return;
	case HVD_SAVE:
		args = json_pack("{s:s}", "file", r->file);
		snprintf(d->save_file, sizeof(d->save_file), "%s", r->file);
		d->op = op;
		dom_set_state(d, DOM_SAVING);
		dom_changed(d, old, "save");
		if (progress_call(d, "save", args, save_cb, op) < 0) {
			d->op = NULL;
			dom_back_to_vm_state(d, "save failed");
			hvd_op_done(op, CONTROL_FAILED, NULL, "the VM's control socket is closed");
		}
		return;
	case HVD_CHECKPOINT:
		args = json_pack("{s:s, s:b}", "store", r->store, "full", r->full);
		if (args && r->tag)
			json_object_set_new(args, "tag", json_string(r->tag));
		op->back = d->state;
		dom_set_state(d, DOM_CHECKPOINTING);
		dom_changed(d, old, "checkpoint");
		hvd_event(h, "CHECKPOINT",
		          json_pack("{s:s, s:s, s:s}", "name", d->cfg.name, "phase", "started",
		                    "store", r->store));
		if (progress_call(d, "checkpoint", args, ckpt_cb, op) < 0) {
			dom_back_to_vm_state(d, "checkpoint failed");
			hvd_op_done(op, CONTROL_FAILED, NULL, "the VM's control socket is closed");
		}
		return;
	default: hvd_op_done(op, CONTROL_FAILED, NULL, "internal error: unexpected command");
	}
}

void hvd_dispatch(struct hvd *h, struct hvd_op *op, const struct hvd_request *r)
{
	struct domain *d = NULL;
	struct hv_error err = {0};

	switch (r->cmd) {
	case HVD_LIST: return cmd_list(h, op);
	case HVD_SUBSCRIBE: return hvd_op_done(op, CONTROL_OK, NULL, NULL);
	case HVD_CREATE: return cmd_create(h, op, r);
	case HVD_RESTORE: return cmd_restore(h, op, r);
	case HVD_MIGRATE_INCOMING: return hvd_cmd_migrate(h, op, r, hvd_find(h, r->name));
	default: break;
	}
	d = hvd_find(h, r->name);
	if (!d) {
		hv_fail(&err, ENOENT, "no domain named '%s'", r->name);
		return fail_op(op, CONTROL_INVALID_ARGUMENT, &err);
	}
	if (r->cmd == HVD_INFO) {
		json_t *info = dom_info(d);
		hvd_op_done(op, info ? CONTROL_OK : CONTROL_FAILED, info, "out of memory");
		json_decref(info);
		return;
	}
	if (r->cmd == HVD_MIGRATE || r->cmd == HVD_MIGRATE_CANCEL)
		return hvd_cmd_migrate(h, op, r, d);
	cmd_vm(h, op, r, d);
}

/* ---- the domains of the state directory ---- */

int hvd_load_domains(struct hvd *h, struct hv_error *err)
{
	DIR *dir = opendir(h->dom_dir);
	struct dirent *e;

	if (!dir)
		return hv_fail(err, errno, "%s: %s", h->dom_dir, strerror(errno));
	while ((e = readdir(dir))) {
		size_t n = strlen(e->d_name);
		char name[DOMCFG_NAME_MAX + 1];
		struct hv_error lerr = {0};
		struct domain *d;

		if (n < 5 || strcmp(e->d_name + n - 4, ".cfg") || n - 4 > DOMCFG_NAME_MAX)
			continue;
		memcpy(name, e->d_name, n - 4);
		name[n - 4] = '\0';
		if (!hvd_name_valid(name))
			continue;
		d = dom_load(h->dom_dir, name, &lerr);
		if (!d) {
			/* One bad file must not cost the other domains their daemon. */
			fprintf(stderr, "hvd: skipping domain %s: %s\n", name, lerr.msg);
			continue;
		}
		d->hvd = h;
		d->next = h->domains;
		h->domains = d;
	}
	closedir(dir);
	for (struct domain *d = h->domains; d; d = d->next)
		vm_attach(d);
	return 0;
}

void hvd_autostart(struct hvd *h)
{
	for (struct domain *d = h->domains; d; d = d->next) {
		struct hv_error err = {0};

		if (!d->cfg.autostart || dom_live(d->state))
			continue;
		if (vm_spawn(d, NULL, NULL, &err) < 0)
			fprintf(stderr, "hvd: %s: autostart failed: %s\n", d->cfg.name, err.msg);
	}
}
