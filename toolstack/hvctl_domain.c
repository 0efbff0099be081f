/*
 * hvctl_domain.c - `hvctl create|list|info|start|pause|resume|shutdown|destroy|delete|
 * save|restore|checkpoint|migrate`: domains by name, through hvd (docs/hvctl.1.md).
 *
 * One connection per invocation, as for a VM's socket: greeting, one request, the reply
 * with our id (events skipped, except that a checkpoint on a terminal subscribes and
 * draws its progress events as a bar), printed for a person or raw with --json. hvd answers
 * shutdown, destroy and save only once the VM has stopped, so when hvctl returns the
 * operation is over. Paths are made absolute here: hvd runs in another directory.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "toolstack/hvctl_console.h"
#include "toolstack/hvctl_domain.h"
#include "toolstack/hvdconn.h"
#include "toolstack/progress.h"
#include "toolstack/tool.h"

#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define EXIT_NOHVD 3 /* hvd could not be reached */
#define CONFIG_MAX (64 * 1024)

struct dcmd {
	const char *name;
	int min, max; /* positional arguments */
	const char *usage;
};

static const struct dcmd dcmds[] = {
    {"create", 1, 1, "create FILE"},
    {"list", 0, 0, "list [--json]"},
    {"info", 1, 1, "info NAME"},
    {"start", 1, 1, "start NAME"},
    {"pause", 1, 1, "pause NAME"},
    {"resume", 1, 1, "resume NAME"},
    {"shutdown", 1, 1, "shutdown NAME"},
    {"destroy", 1, 1, "destroy NAME"},
    {"delete", 1, 1, "delete NAME"},
    {"save", 2, 2, "save NAME FILE"},
    {"restore", 0, 2, "restore FILE [NAME] | restore --store DIR [ID|latest] [NAME]"},
    {"checkpoint", 1, 1, "checkpoint NAME|--all --store DIR [--tag T] [--full]"},
    {"migrate", 2, 2, "migrate NAME ADDR [hvmigrate send options]"},
    {"console", 1, 1, "console NAME"},
};
#define NDCMDS (sizeof(dcmds) / sizeof(dcmds[0]))

static const struct dcmd *dcmd_find(const char *w)
{
	for (size_t i = 0; i < NDCMDS; i++)
		if (!strcmp(dcmds[i].name, w))
			return &dcmds[i];
	return NULL;
}

bool hvctl_domain_wanted(int argc, char **argv)
{
	struct stat sb;

	int i = 1;

	while (i < argc && !strcmp(argv[i], "--json"))
		i++;
	if (i >= argc)
		return false;
	if (!strcmp(argv[i], "--socket") || !strncmp(argv[i], "--socket=", 9))
		return true;
	/* A word that is also a socket in the working directory stays a socket path. */
	return dcmd_find(argv[i]) && !(stat(argv[i], &sb) == 0 && S_ISSOCK(sb.st_mode));
}

/* The config file's text and absolute path, as create's arguments. */
static json_t *create_args(const char *file, int *status)
{
	char abs[PATH_MAX], *buf = malloc(CONFIG_MAX + 1);
	FILE *f = fopen(file, "r");
	json_t *text, *a = NULL;
	size_t n;

	*status = EXIT_FAIL;
	if (!buf || !f) {
		tool_fail(EXIT_FAIL, "%s: %s", file, strerror(errno));
		goto out;
	}
	n = fread(buf, 1, CONFIG_MAX + 1, f);
	if (ferror(f)) {
		tool_fail(EXIT_FAIL, "%s: %s", file, strerror(errno));
		goto out;
	}
	if (n > CONFIG_MAX) {
		tool_fail(EXIT_FAIL, "%s: larger than 64 KiB", file);
		goto out;
	}
	if (tool_absolute(file, abs, sizeof(abs)) < 0) {
		tool_fail(EXIT_FAIL, "%s: path too long", file);
		goto out;
	}
	text = json_stringn(buf, n);
	if (!text || memchr(buf, '\0', n)) {
		json_decref(text);
		tool_fail(EXIT_FAIL, "%s: not a text file (NUL bytes or not UTF-8)", file);
		goto out;
	}
	a = json_pack("{s:o, s:s}", "config", text, "file", abs);
out:
	if (f)
		fclose(f);
	free(buf);
	return a;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k)) ?: "-";
}

static void print_list(json_t *r)
{
	json_t *arr = json_object_get(r, "domains"), *d;
	size_t i;

	printf("%-20s %-14s %7s %5s %8s %8s\n", "NAME", "STATE", "MEMORY", "VCPUS", "PID",
	       "UPTIME");
	json_array_foreach(arr, i, d)
	{
		char mem[32], pid[16] = "-", up[24] = "-";
		json_int_t p = json_integer_value(json_object_get(d, "pid"));

		tool_size((uint64_t)json_integer_value(json_object_get(d, "memory")), false, mem,
		          sizeof(mem));
		if (p) {
			snprintf(pid, sizeof(pid), "%lld", (long long)p);
			snprintf(up, sizeof(up), "%llds",
			         (long long)json_integer_value(json_object_get(d, "uptime")));
		}
		printf("%-20s %-14s %7s %5lld %8s %8s\n", str(d, "name"), str(d, "state"), mem,
		       (long long)json_integer_value(json_object_get(d, "vcpus")), pid, up);
	}
}

static void print_info(json_t *r)
{
	static const char *const keys[] = {
	    "name",    "uuid",           "state",     "accel",      "kernel",     "control",
	    "console", "console_socket", "save_file", "last_error", "migrate_uri"};
	char mem[32];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_is_string(json_object_get(r, keys[i])))
			printf("%-10s %s\n", keys[i], str(r, keys[i]));
	tool_size((uint64_t)json_integer_value(json_object_get(r, "memory")), false, mem,
	          sizeof(mem));
	printf("%-10s %s\n", "memory", mem);
	printf("%-10s %lld\n", "vcpus", (long long)json_integer_value(json_object_get(r, "vcpus")));
	if (json_integer_value(json_object_get(r, "pid"))) {
		printf("%-10s %lld\n", "pid",
		       (long long)json_integer_value(json_object_get(r, "pid")));
		printf("%-10s %lld s\n", "uptime",
		       (long long)json_integer_value(json_object_get(r, "uptime")));
	}
	printf("%-10s %s\n", "autostart",
	       json_is_true(json_object_get(r, "autostart")) ? "yes" : "no");
}

static void print_result(const char *cmd, const char *name, const char *file, json_t *r)
{
	if (!strcmp(cmd, "list"))
		print_list(r);
	else if (!strcmp(cmd, "info"))
		print_info(r);
	else if (!strcmp(cmd, "checkpoint"))
		printf("%s\n", str(r, "id"));
	else if (!strcmp(cmd, "delete"))
		printf("%s: deleted\n", name);
	else if (!strcmp(cmd, "save"))
		printf("%s: saved to %s (%.1f MiB in %.2f s)\n", name, file,
		       (double)json_integer_value(json_object_get(r, "bytes")) / (1 << 20),
		       json_number_value(json_object_get(r, "seconds")));
	else if (!strcmp(cmd, "create") || !strcmp(cmd, "restore") || !strcmp(cmd, "start"))
		printf("%s: %s (pid %lld, uuid %s%s%s)\n", str(r, "name"), str(r, "state"),
		       (long long)json_integer_value(json_object_get(r, "pid")), str(r, "uuid"),
		       json_object_get(r, "checkpoint") ? ", from checkpoint " : "",
		       json_object_get(r, "checkpoint") ? str(r, "checkpoint") : "");
	else
		printf("%s: %s\n", str(r, "name"), str(r, "state"));
}

/* A checkpoint request; on a terminal (without --json) with a progress bar on stderr. */
static json_t *checkpoint_call(struct ctlconn *c, int id, json_t *args, const char *name, bool raw,
                               struct hv_error *e)
{
	struct progress bar;
	json_t *r;

	if (raw || !isatty(STDERR_FILENO)) {
		r = ctlconn_call(c, id, "checkpoint", args, e);
	} else {
		progress_init(&bar, stderr);
		r = progress_call(c, id, "checkpoint", args, name, &bar, e);
	}
	/* hvd died (kill -9, a crash): the VM runs on, and the restarted hvd reports this
	 * checkpoint failed, even if the VM's own part of it went on to commit. */
	if (!r && (e->code == EPIPE || e->code == ECONNRESET))
		hv_fail(e, EPIPE,
		        "%s: hvd closed the connection before the checkpoint of %s ended: failed "
		        "(the VM runs on; see 'hvctl info %s' once hvd is back)",
		        c->path, name, name);
	return r;
}

/*
 * `hvctl checkpoint --all --store DIR`: every running or paused domain, one after the
 * other, for a single cron line. Goes on past a failing domain; 0 only if all succeeded.
 */
static int checkpoint_all(struct ctlconn *c, const char *store, const char *tag, bool full,
                          bool raw)
{
	json_t *msg, *doms, *d, *results = json_array();
	struct hv_error e = {0};
	int failed = 0, id = 2;
	size_t i;

	msg = ctlconn_call(c, 1, "list", NULL, &e);
	if (!msg || json_object_get(msg, "error")) {
		tool_fail(EXIT_FAIL, "list: %s",
		          msg ? str(json_object_get(msg, "error"), "desc") : e.msg);
		json_decref(msg);
		json_decref(results);
		return EXIT_FAIL;
	}
	doms = json_object_get(json_object_get(msg, "return"), "domains");
	json_array_foreach(doms, i, d)
	{
		const char *name = str(d, "name"), *st = str(d, "state");
		json_t *args, *r, *one;

		if (strcmp(st, "running") && strcmp(st, "paused")) {
			one = json_pack("{s:s, s:s, s:s}", "name", name, "result", "skipped",
			                "state", st);
			if (!raw)
				printf("%s: skipped (%s)\n", name, st);
			json_array_append_new(results, one);
			continue;
		}
		args = json_pack("{s:s, s:s, s:b}", "name", name, "store", store, "full", full);
		if (args && tag)
			json_object_set_new(args, "tag", json_string(tag));
		r = args ? checkpoint_call(c, id++, args, name, raw, &e) : NULL;
		json_decref(args);
		if (!r || json_object_get(r, "error")) {
			const char *why = r ? str(json_object_get(r, "error"), "desc") : e.msg;

			failed++;
			one = json_pack("{s:s, s:s, s:s}", "name", name, "result", "failed",
			                "error", why);
			if (!raw)
				tool_fail(0, "%s: checkpoint failed: %s", name, why);
		} else {
			json_t *ret = json_object_get(r, "return");

			one = json_pack("{s:s, s:s, s:O?}", "name", name, "result", "ok",
			                "checkpoint", ret);
			if (!raw)
				printf("%s: %s\n", name, str(ret, "id"));
		}
		json_decref(r);
		json_array_append_new(results, one);
		if (!r && e.code == EPIPE)
			break; /* hvd went away: the rest would fail the same way */
	}
	if (raw) {
		json_t *all = json_pack("{s:o, s:i}", "results", results, "failed", failed);

		json_dumpf(all, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(all);
	} else {
		json_decref(results);
	}
	json_decref(msg);
	return failed ? EXIT_FAIL : 0;
}

/*
 * `hvctl [--socket PATH] [--json] migrate NAME ADDR [OPTIONS]` runs `hvmigrate send NAME
 * ADDR [OPTIONS]` (the hvmigrate beside hvctl): one implementation of the options, the
 * progress bar and the exit statuses. Returns only if it cannot.
 */
static int migrate_exec(int argc, char **argv)
{
	const char *sock = NULL;
	bool json = false;
	char self[PATH_MAX], prog[PATH_MAX + 16], **v;
	int i = 1, k = 0;

	while (i < argc) {
		if (!strcmp(argv[i], "--json"))
			json = true, i++;
		else if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[i + 1], i += 2;
		else if (!strncmp(argv[i], "--socket=", 9))
			sock = argv[i] + 9, i++;
		else
			break;
	}
	if (i >= argc || strcmp(argv[i], "migrate"))
		return -1;
	if (tool_self_dir(self, sizeof(self)) < 0)
		return tool_fail(EXIT_FAIL, "/proc/self/exe: %s", strerror(errno));
	snprintf(prog, sizeof(prog), "%s/hvmigrate", self);
	v = calloc((size_t)argc + 6, sizeof(*v));
	if (!v)
		return tool_fail(EXIT_FAIL, "out of memory");
	v[k++] = prog;
	v[k++] = "send";
	for (i++; i < argc; i++)
		v[k++] = argv[i];
	if (sock) {
		v[k++] = "--socket";
		v[k++] = (char *)sock;
	}
	if (json)
		v[k++] = "--json";
	execv(prog, v);
	free(v);
	return tool_fail(EXIT_FAIL, "%s: %s", prog, strerror(errno));
}

int hvctl_domain_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 'S'},
	    {"json", no_argument, NULL, 'j'},
	    {"store", required_argument, NULL, 's'},
	    {"tag", required_argument, NULL, 't'},
	    {"full", no_argument, NULL, 'f'},
	    {"all", no_argument, NULL, 'a'},
	    {0},
	};
	const char *sock = NULL, *store = NULL, *tag = NULL, *name = NULL, *file = NULL;
	char abs[PATH_MAX], abs_store[PATH_MAX];
	struct hv_error e = {0};
	const struct dcmd *dc;
	bool raw = false, full = false, all = false;
	json_t *args = NULL, *msg, *err;
	struct ctlconn c;
	int opt, npos, rc;

	rc = migrate_exec(argc, argv);
	if (rc >= 0)
		return rc;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case 'S': sock = optarg; break;
		case 'j': raw = true; break;
		case 's': store = optarg; break;
		case 't': tag = optarg; break;
		case 'f': full = true; break;
		case 'a': all = true; break;
		case ':':
			return tool_fail(EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
		default:
			return tool_fail(EXIT_USAGE, "unknown option '%s' (see 'hvctl --help')",
			                 argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return tool_fail(EXIT_USAGE, "missing a domain command (see 'hvctl --help')");
	dc = dcmd_find(argv[optind]);
	if (!dc)
		return tool_fail(EXIT_USAGE, "unknown domain command '%s' (see 'hvctl --help')",
		                 argv[optind]);
	npos = argc - optind - 1;
	if (all && strcmp(dc->name, "checkpoint"))
		return tool_fail(EXIT_USAGE, "--all only goes with checkpoint");
	if (all && npos)
		return tool_fail(EXIT_USAGE, "checkpoint --all takes no NAME");
	if (all) {
		if (!store || !*store)
			return tool_fail(EXIT_USAGE, "checkpoint: missing --store DIR");
		if (tag && (!*tag || strlen(tag) > 255))
			return tool_fail(EXIT_USAGE, "checkpoint: --tag must be 1 to 255 bytes");
		if (tool_absolute(store, abs_store, sizeof(abs_store)) < 0)
			return tool_fail(EXIT_USAGE, "--store %s: path too long", store);
		if (hvdconn_open(&c, hvdconn_default_socket(sock), 10000, &e) < 0) {
			ctlconn_close(&c);
			return tool_fail(EXIT_NOHVD, "%s (is hvd running? see 'hvd status')",
			                 e.msg);
		}
		rc = checkpoint_all(&c, abs_store, tag, full, raw);
		ctlconn_close(&c);
		return rc;
	}
	if (npos < dc->min || npos > dc->max)
		return tool_fail(EXIT_USAGE, "usage: hvctl [--socket PATH] %s", dc->usage);
	if ((tag || full || (store && strcmp(dc->name, "restore"))) &&
	    strcmp(dc->name, "checkpoint"))
		return tool_fail(EXIT_USAGE, "--store, --tag and --full only go with checkpoint "
		                             "(and --store with restore)");
	if (!strcmp(dc->name, "restore") && !store && npos < 1)
		return tool_fail(EXIT_USAGE, "usage: hvctl [--socket PATH] %s", dc->usage);
	if (!strcmp(dc->name, "console")) /* interactive: toolstack/hvctl_console.c */
		return raw ? tool_fail(EXIT_USAGE, "console: --json does not go with console")
		           : hvctl_console(hvdconn_default_socket(sock), argv[optind + 1]);
	if (!strcmp(dc->name, "checkpoint") && (!store || !*store))
		return tool_fail(EXIT_USAGE, "checkpoint: missing --store DIR");
	if (tag && (!*tag || strlen(tag) > 255))
		return tool_fail(EXIT_USAGE, "checkpoint: --tag must be 1 to 255 bytes");
	if (!strcmp(dc->name, "restore") && store)
		file = NULL, name = npos > 1 ? argv[optind + 2] : NULL;
	else if (!strcmp(dc->name, "create") || !strcmp(dc->name, "restore"))
		file = argv[optind + 1], name = npos > 1 ? argv[optind + 2] : NULL;
	else
		name = npos ? argv[optind + 1] : NULL, file = npos > 1 ? argv[optind + 2] : NULL;
	if (file && (!*file || tool_absolute(file, abs, sizeof(abs)) < 0))
		return tool_fail(EXIT_USAGE, "%s: FILE must be a path of 1 to %d bytes", dc->name,
		                 PATH_MAX - 1);
	if (!strcmp(dc->name, "create")) {
		args = create_args(file, &rc);
		if (!args)
			return rc;
	} else if (!strcmp(dc->name, "checkpoint")) {
		if (tool_absolute(store, abs_store, sizeof(abs_store)) < 0)
			return tool_fail(EXIT_USAGE, "--store %s: path too long", store);
		args = json_pack("{s:s, s:s, s:b}", "name", name, "store", abs_store, "full", full);
		if (args && tag)
			json_object_set_new(args, "tag", json_string(tag));
	} else if (!strcmp(dc->name, "restore") && store) {
		if (!*store || tool_absolute(store, abs_store, sizeof(abs_store)) < 0)
			return tool_fail(EXIT_USAGE, "--store %s: path too long", store);
		args = json_pack("{s:s}", "store", abs_store);
		if (args && npos > 0)
			json_object_set_new(args, "id", json_string(argv[optind + 1]));
		if (args && name)
			json_object_set_new(args, "name", json_string(name));
	} else if (dc->max) {
		args = json_object();
		if (args && name)
			json_object_set_new(args, "name", json_string(name));
		if (args && file)
			json_object_set_new(args, "file", json_string(abs));
	}
	if (dc->max && !args)
		return tool_fail(EXIT_FAIL, "cannot build the request (bad UTF-8 in a name?)");
	sock = hvdconn_default_socket(sock);
	if (hvdconn_open(&c, sock, 10000, &e) < 0) {
		ctlconn_close(&c);
		json_decref(args);
		return tool_fail(EXIT_NOHVD, "%s (is hvd running? see 'hvd status')", e.msg);
	}
	if (!strcmp(dc->name, "checkpoint")) {
		msg = checkpoint_call(&c, 1, args, name, raw, &e);
	} else if (!strcmp(dc->name, "save") && !raw && isatty(STDERR_FILENO)) {
		struct progress bar;

		progress_init(&bar, stderr);
		msg = progress_call(&c, 1, "save", args, name, &bar, &e);
	} else {
		msg = ctlconn_call(&c, 1, dc->name, args, &e);
	}
	json_decref(args);
	ctlconn_close(&c);
	if (!msg)
		return tool_fail(EXIT_FAIL, "%s", e.msg);
	err = json_object_get(msg, "error");
	if (raw) {
		json_dumpf(msg, stdout, JSON_COMPACT);
		putchar('\n');
	}
	if (err)
		rc = tool_fail(EXIT_FAIL, "%s: %s", dc->name, str(err, "desc"));
	else if (!raw)
		print_result(dc->name, name, file ? abs : NULL, json_object_get(msg, "return"));
	rc = err ? EXIT_FAIL : 0;
	json_decref(msg);
	return rc;
}
