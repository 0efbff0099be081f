/*
 * hvctl.c - the `hvctl` program: drive a running VM through its control socket.
 *
 * One connection per invocation: read the greeting, send one request, skip events until
 * the reply with our id arrives, print it for a person (or raw with --json). Commands
 * that end the VM (quit, save without --keep-running) also wait for hv to close the
 * connection, so when hvctl returns the VM has stopped and its save file is complete.
 * See docs/hvctl.1.md and docs/control-protocol.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "toolstack/ctlconn.h"
#include "toolstack/hvctl_store.h"
#include "toolstack/hvctl_domain.h"
#include "toolstack/tool.h"

#ifndef HV_VERSION
#define HV_VERSION "0.1.0"
#endif

#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define CLOSE_WAIT 10000 /* ms to wait for hv to hang up after quit/save */

static const char usage[] =
    "usage: hvctl SOCK COMMAND [--json]\n"
    "       hvctl store DIR SUBCOMMAND [OPTIONS]\n"
    "       hvctl [--socket PATH] DOMAIN-COMMAND [ARGS] [--json]\n"
    "         (create FILE, list, info|start|pause|resume|shutdown|destroy|delete NAME,\n"
    "          console NAME, save NAME FILE, restore FILE [NAME],\n"
    "          checkpoint NAME|--all --store DIR [--tag T] [--full],\n"
    "          migrate NAME ADDR [hvmigrate send options]:\n"
    "          domains by name through hvd; see hvctl(1))\n"
    "\n"
    "Control the VM whose `hv run --control SOCK` serves the socket SOCK, or maintain\n"
    "the checkpoint store DIR: list, show, verify, delete, prune, gc, rebuild-index\n"
    "(see 'hvctl store --help'; a socket named \"store\" is reached as ./store).\n"
    "\n"
    "Commands:\n"
    "  info                        name, state, accelerator, vCPUs, memory, uptime, exit\n"
    "  pause                       stop every vCPU (the VM keeps its state)\n"
    "  resume                      let a paused VM run again\n"
    "  save FILE [--keep-running]  write the VM's state to FILE, then stop the VM\n"
    "                              (exit status 0), or keep it running\n"
    "  quit                        stop the VM; hv exits with status 0\n"
    "  checkpoint --store DIR [--tag T] [--full]\n"
    "                              checkpoint the VM into the store DIR (created if\n"
    "                              absent): incremental against its last one unless\n"
    "                              --full; prints the checkpoint's id\n"
    "  migrate-status              the current or last migration's statistics\n"
    "  migrate-cancel              cancel a migration before its switchover\n"
    "  migrate-continue            let a --switchover-hold migration switch over\n"
    "                              (start migrations with hvmigrate(1))\n"
    "\n"
    "Options:\n"
    "  --json      print hv's raw JSON reply instead of text\n"
    "  -h, --help  show this help\n"
    "  --version   print the version\n"
    "\n"
    "Exit status: 0 on success, 1 if the command failed or hv could not be reached,\n"
    "2 for bad arguments.\n";

static const char *sock_path = "hvctl";

static void print_info(json_t *r)
{
	json_t *ex = json_object_get(r, "exit");
	char mem[32];

	printf("%-8s %s\n", "name", json_string_value(json_object_get(r, "name")) ?: "?");
	printf("%-8s %s\n", "state", json_string_value(json_object_get(r, "state")) ?: "?");
	printf("%-8s %s\n", "accel", json_string_value(json_object_get(r, "accel")) ?: "?");
	printf("%-8s %lld\n", "vcpus", (long long)json_integer_value(json_object_get(r, "vcpus")));
	tool_size((uint64_t)json_integer_value(json_object_get(r, "memory")), true, mem,
	          sizeof(mem));
	printf("%-8s %s\n", "memory", mem);
	printf("%-8s %.1f s\n", "uptime", json_number_value(json_object_get(r, "uptime")));
	printf("%-8s %lld\n", "pid", (long long)json_integer_value(json_object_get(r, "pid")));
	if (json_is_true(json_object_get(r, "deterministic")))
		printf("%-8s yes\n", "determ.");
	if (json_is_object(ex))
		printf("%-8s %s, code %lld: %s\n", "exit",
		       json_string_value(json_object_get(ex, "kind")) ?: "?",
		       (long long)json_integer_value(json_object_get(ex, "code")),
		       json_string_value(json_object_get(ex, "reason")) ?: "");
}

static void print_migration(json_t *r)
{
	const char *k;
	json_t *v;

	json_object_foreach(r, k, v)
	{
		char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
		printf("%-18s %s\n", k, t ? t : "?");
		free(t);
	}
}

static void print_save(json_t *r)
{
	const char *state = json_string_value(json_object_get(r, "state")) ?: "?";
	double mib = (double)json_integer_value(json_object_get(r, "bytes")) / (1 << 20);

	printf("saved to %s: %.1f MiB in %.2f s; VM %s\n",
	       json_string_value(json_object_get(r, "file")) ?: "?", mib,
	       json_number_value(json_object_get(r, "seconds")),
	       strcmp(state, "shutdown") ? state : "stopped");
}

/* checkpoint's options. */
static const char *ckpt_store, *ckpt_tag;
static bool ckpt_full;

/* The arguments for @cmd; @file made absolute, since hv may run in another directory. */
static json_t *build_args(const char *cmd, const char *file, bool keep)
{
	char abs[PATH_MAX * 2];
	json_t *a;

	if (!strcmp(cmd, "checkpoint"))
		file = ckpt_store;
	else if (strcmp(cmd, "save"))
		return NULL;
	if (tool_absolute(file, abs, sizeof(abs)) < 0)
		return NULL;
	file = abs;
	if (strcmp(cmd, "checkpoint"))
		return json_pack("{s:s, s:b}", "file", file, "keep-running", keep);
	a = json_pack("{s:s, s:b}", "store", file, "full", ckpt_full);
	if (a && ckpt_tag && json_object_set_new(a, "tag", json_string(ckpt_tag)) < 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* Talk to hv: greeting, request, reply. Returns the exit status. */
static int run(const char *cmd, const char *file, bool keep, bool raw)
{
	struct hv_error e = {0};
	struct ctlconn c;
	json_t *args, *msg, *err;
	bool ends_vm;
	int rc;

	if (ctlconn_open(&c, sock_path, &e) < 0) {
		ctlconn_close(&c);
		return tool_fail(e.code == ENAMETOOLONG ? EXIT_USAGE : EXIT_FAIL, "%s", e.msg);
	}
	args = build_args(cmd, file, keep);
	if ((!strcmp(cmd, "save") || !strcmp(cmd, "checkpoint")) && !args) {
		ctlconn_close(&c);
		return tool_fail(EXIT_FAIL, "%s: cannot build the request: %s", sock_path,
		                 strerror(errno));
	}
	msg = ctlconn_call(&c, 1, cmd, args, &e);
	json_decref(args);
	if (!msg) {
		ctlconn_close(&c);
		return tool_fail(EXIT_FAIL, "%s", e.msg);
	}
	err = json_object_get(msg, "error");
	if (raw) {
		json_dumpf(msg, stdout, JSON_COMPACT);
		putchar('\n');
	}
	if (err) {
		rc = tool_fail(EXIT_FAIL, "%s: %s", cmd,
		               json_string_value(json_object_get(err, "desc")) ?: "failed");
		goto out;
	}
	if (!raw && !strcmp(cmd, "info"))
		print_info(json_object_get(msg, "return"));
	else if (!raw && !strcmp(cmd, "save"))
		print_save(json_object_get(msg, "return"));
	else if (!raw && !strcmp(cmd, "checkpoint"))
		printf("%s\n",
		       json_string_value(json_object_get(json_object_get(msg, "return"), "id"))
		           ?: "?");
	else if (!raw && !strcmp(cmd, "migrate-status"))
		print_migration(json_object_get(msg, "return"));
	fflush(stdout);
	rc = 0;
	ends_vm = !strcmp(cmd, "quit") || (!strcmp(cmd, "save") && !keep);
	while (ends_vm) { /* hv hangs up once the VM has stopped */
		char *more = ctlconn_line(&c, CLOSE_WAIT);
		if (!more)
			break;
		free(more);
	}
out:
	json_decref(msg);
	ctlconn_close(&c);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},        {"keep-running", no_argument, NULL, 'k'},
	    {"store", required_argument, NULL, 's'}, {"tag", required_argument, NULL, 't'},
	    {"full", no_argument, NULL, 'f'},        {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},     {0},
	};
	bool raw = false, keep = false;
	const char *cmd, *file = NULL;
	int c, npos;

	tool_init("hvctl");
	/* A domain command (`hvctl [--socket PATH] list`, ...) goes to hvd, by name. */
	if (hvctl_domain_wanted(argc, argv))
		return hvctl_domain_main(argc, argv);
	/* `store` as the first word: store maintenance, not a socket (./store is one). */
	if (argc > 1 && !strcmp(argv[1], "store"))
		return hvctl_store_main(argc - 1, argv + 1);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': raw = true; break;
		case 'k': keep = true; break;
		case 's': ckpt_store = optarg; break;
		case 't': ckpt_tag = optarg; break;
		case 'f': ckpt_full = true; break;
		case ':':
			return tool_fail(EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("hvctl %s\n", HV_VERSION); return 0;
		default:
			return tool_fail(EXIT_USAGE, "unknown option '%s' (see 'hvctl --help')",
			                 argv[optind - 1]);
		}
	}
	npos = argc - optind;
	if (npos < 2)
		return tool_fail(EXIT_USAGE, "%s (see 'hvctl --help')",
		                 npos ? "missing COMMAND" : "missing SOCK and COMMAND");
	sock_path = argv[optind];
	cmd = argv[optind + 1];
	if (!strcmp(cmd, "save")) {
		if (npos < 3)
			return tool_fail(EXIT_USAGE, "save: missing FILE");
		if (npos > 3)
			return tool_fail(EXIT_USAGE, "save: unexpected argument '%s'",
			                 argv[optind + 3]);
		file = argv[optind + 2];
		if (!*file)
			return tool_fail(EXIT_USAGE, "save: FILE must not be empty");
	} else if (!strcmp(cmd, "checkpoint")) {
		if (npos != 2)
			return tool_fail(EXIT_USAGE, "checkpoint: unexpected argument '%s'",
			                 argv[optind + 2]);
		if (!ckpt_store || !*ckpt_store)
			return tool_fail(EXIT_USAGE, "checkpoint: missing --store DIR");
		if (ckpt_tag && (!*ckpt_tag || strlen(ckpt_tag) > 255))
			return tool_fail(EXIT_USAGE, "checkpoint: --tag must be 1 to 255 bytes");
	} else if (!strcmp(cmd, "info") || !strcmp(cmd, "pause") || !strcmp(cmd, "resume") ||
	           !strcmp(cmd, "quit") || !strcmp(cmd, "migrate-status") ||
	           !strcmp(cmd, "migrate-cancel") || !strcmp(cmd, "migrate-continue")) {
		if (npos != 2)
			return tool_fail(EXIT_USAGE, "%s: unexpected argument '%s'", cmd,
			                 argv[optind + 2]);
	} else {
		return tool_fail(EXIT_USAGE, "unknown command '%s' (see 'hvctl --help')", cmd);
	}
	if (keep && strcmp(cmd, "save"))
		return tool_fail(EXIT_USAGE, "--keep-running only goes with save");
	if ((ckpt_store || ckpt_tag || ckpt_full) && strcmp(cmd, "checkpoint"))
		return tool_fail(EXIT_USAGE, "--store, --tag and --full only go with checkpoint");
	return run(cmd, file, keep, raw);
}
