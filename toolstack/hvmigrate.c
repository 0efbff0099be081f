/*
 * hvmigrate.c - the `hvmigrate` program: `send` drives a live migration out of a running
 * hv through its control socket; `recv` waits for one and becomes the destination VM
 * process. See docs/hvmigrate.1.md; the protocol is docs/migration.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "hv/vm.h"
#include "migrate/chan.h"
#include "migrate/incoming.h"
#include "migrate/migration.h"
#include "toolstack/control.h"
#include "toolstack/conmux.h"
#include "toolstack/ctlconn.h"
#include "toolstack/hvdconn.h"
#include "toolstack/hvmigrate_hvd.h"
#include "toolstack/progress.h"
#include "toolstack/size.h"
#include "toolstack/vmsig.h"
#include "toolstack/tool.h"

#ifndef HV_VERSION
#define HV_VERSION "0.1.0"
#endif

/* Exit statuses (docs/hvmigrate.1.md). */
#define EXIT_FAIL      1
#define EXIT_USAGE     2
#define EXIT_IN_DOUBT  3
#define EXIT_CANCELLED 4

static const char usage_main[] =
    "usage: hvmigrate send VM ADDR [OPTIONS]   migrate a running VM to ADDR\n"
    "       hvmigrate recv --listen ADDR [OPTIONS]   receive a migration, run the VM\n"
    "\n"
    "ADDR is tcp:HOST:PORT (tcp:[::1]:PORT for IPv6) or unix:PATH. VM is the control\n"
    "socket of the source (hv run --control SOCK), or the name of a domain of hvd.\n"
    "'hvmigrate send --help' and\n"
    "'hvmigrate recv --help' list the options; see hvmigrate(1).\n";

static const char usage_send[] =
    "usage: hvmigrate send VM ADDR [OPTIONS]\n"
    "\n"
    "Migrate the VM served on control socket VM to the receiver at ADDR while it runs.\n"
    "A VM that is no socket is a domain name: hvd (at --socket PATH, $HVD_SOCKET or\n"
    "/run/hvd.sock) runs the migration and keeps the domain's state.\n"
    "The VM keeps running here until the destination has all of its state; on any\n"
    "failure before that it simply runs on.\n"
    "\n"
    "  --tls-cert F --tls-key F --tls-ca F   TLS 1.3 with mutual certificates\n"
    "  --tls-hostname H       name expected in the receiver's certificate (default:\n"
    "                         the host of ADDR)\n"
    "  --downtime-ms N        switch over when the rest fits in N ms (default 300)\n"
    "  --bandwidth RATE       cap the wire rate, bytes/s with K/M/G (default: none)\n"
    "  --compress zstd[:L]|none   page compression (default zstd level 1)\n"
    "  --channels N           parallel page connections, 1-16 (default 1)\n"
    "  --max-rounds N         pre-copy rounds before the stall policy acts (default 30)\n"
    "  --max-bytes SIZE       bytes on the wire before it acts (default 8 x RAM)\n"
    "  --on-stall POLICY      abort (default), throttle (slow the vCPUs step by step)\n"
    "                         or raise-downtime (double the limit up to 10x)\n"
    "  --timeout S            give up after S seconds (the VM runs on here)\n"
    "  --switchover-hold      stay in pre-copy until 'hvctl VM migrate-continue'\n"
    "  --no-delta             never send a page as a delta against its last version\n"
    "  --delta-cache SIZE     last-sent pages kept for deltas (default RAM/16, 16M-256M)\n"
    "  --json                 one JSON object per round and a final summary\n"
    "  --socket PATH          hvd's API socket, for a domain name\n"
    "  -h, --help             this help\n"
    "\n"
    "A terminal gets a progress bar; Ctrl-C cancels before the switchover.\n"
    "Exit status: 0 when the destination runs the VM, 1 failed (the VM runs here),\n"
    "2 bad arguments, 3 in doubt (see hvmigrate(1); also when hvd goes away), 4\n"
    "cancelled.\n";

static const char usage_recv[] =
    "usage: hvmigrate recv --listen ADDR [OPTIONS]\n"
    "\n"
    "Wait for a migration at ADDR, then run the VM in this process, its console on\n"
    "stdout, until it shuts down. Exit status as for 'hv run' (the guest's), 1 if the\n"
    "migration failed.\n"
    "\n"
    "  --tls-cert F --tls-key F --tls-ca F   TLS 1.3; clients need a certificate of --tls-ca\n"
    "  --tls-client-name N    ... and one for the DNS name N (subjectAltName): the CA\n"
    "                         alone lets in any machine it certified\n"
    "  --control SOCK         serve the VM's control socket at SOCK once it runs; with\n"
    "                         --keep-listening, %n in SOCK becomes the VM's name and %i\n"
    "                         the migration's number (default suffix: .%i)\n"
    "  --console FILE         guest console to FILE instead of stdout\n"
    "  --console-socket SOCK  also serve the console on SOCK once the VM runs (hvctl(1)\n"
    "                         console; %n and %i as for --control); stdin is not read\n"
    "  --keep-listening       accept one migration after another, each VM in its own\n"
    "                         process\n"
    "  --paused               keep the VM paused after the switchover (needs --control;\n"
    "                         resume it with 'hvctl SOCK resume')\n"
    "  --timeout S            give up if no migration arrives within S seconds\n"
    "  --json                 the summary as one JSON object\n"
    "  --hvd SOCK             ask hvd at SOCK to take each VM as a domain (refused if\n"
    "                         it has the name) before its pages come (hvd runs this)\n"
    "  -h, --help             this help\n";

static int parse_uint(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9' || (*out = strtoull(s, &end, 10), errno) || *end || *out > max)
		return tool_fail(EXIT_USAGE, "%s '%s': expected a number from 0 to %llu", opt, s,
		                 (unsigned long long)max);
	return 0;
}

/* ---- send ---- */

static bool parse_level(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return *s >= '0' && *s <= '9' && !errno && !*end && *v >= 1 && *v <= 19;
}

/* hv opens the TLS files in its own working directory: make them absolute. */
static json_t *abs_path(const char *p)
{
	char *r = realpath(p, NULL);
	json_t *j = json_string(r ? r : p); /* missing: hv reports it, by the name given */

	free(r);
	return j;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	interrupted = 1;
}

static double mib(json_t *o, const char *k)
{
	return (double)json_integer_value(json_object_get(o, k)) / (1 << 20);
}

/* A progress line on a tty (toolstack/progress.h). */
static void show_progress(json_t *d, struct progress *bar)
{
	double ram = mib(d, "ram_bytes"), rem = mib(d, "remaining_bytes");

	progress_draw(bar, ram > 0 ? 1 - rem / ram : 0,
	              "%-10s round %-3lld remaining %8.1f MiB  %7.1f MB/s  est. downtime %lld ms ",
	              json_string_value(json_object_get(d, "phase")) ?: "?",
	              (long long)json_integer_value(json_object_get(d, "round")), rem,
	              (double)json_integer_value(json_object_get(d, "bandwidth")) / 1e6,
	              (long long)json_integer_value(json_object_get(d, "est_downtime_ms")));
}

static void print_summary(json_t *d)
{
	const char *phase = json_string_value(json_object_get(d, "phase")) ?: "?";

	fprintf(stderr,
	        "hvmigrate: %s: %lld ms in all, downtime %lld ms, %lld rounds, %.1f MiB on the "
	        "wire, %lld pages (%lld zero), %.0f Mbit/s%s%s\n",
	        phase, (long long)json_integer_value(json_object_get(d, "total_ms")),
	        (long long)json_integer_value(json_object_get(d, "downtime_ms")),
	        (long long)json_integer_value(json_object_get(d, "round")), mib(d, "bytes_wire"),
	        (long long)json_integer_value(json_object_get(d, "pages_sent")),
	        (long long)json_integer_value(json_object_get(d, "pages_zero")),
	        json_number_value(json_object_get(d, "throughput_mbps")),
	        json_is_string(json_object_get(d, "error")) ? ": " : "",
	        json_string_value(json_object_get(d, "error")) ?: "");
}

static int send_cancel(struct ctlconn *c, const char *name)
{
	struct hv_error err = {0};
	json_t *a = name ? json_pack("{s:s}", "name", name) : NULL;
	json_t *r = ctlconn_call(c, 3, "migrate-cancel", a, &err);
	json_t *e = json_object_get(r, "error");

	if (!r || e)
		fprintf(stderr, "\nhvmigrate: cannot cancel: %s\n",
		        r ? json_string_value(json_object_get(e, "desc")) ?: "?" : err.msg);
	else
		fprintf(stderr, "\nhvmigrate: cancelling...\n");
	json_decref(r);
	json_decref(a);
	return 0;
}

/*
 * After a migration through hvd completed: wait (up to 10 s) for hvd to record the
 * domain as migrated, so that whoever runs `hvctl list` next sees it so.
 */
static void await_migrated(struct ctlconn *c, const char *name)
{
	for (int i = 0; i < 50; i++) {
		char *line = ctlconn_line(c, 200);
		json_t *msg, *d;
		bool done;

		if (!line && errno == ETIMEDOUT)
			continue;
		if (!line)
			return;
		msg = json_loads(line, 0, NULL);
		free(line);
		d = json_object_get(msg, "data");
		done =
		    !strcmp(json_string_value(json_object_get(msg, "event")) ?: "",
		            "DOMAIN_STATE") &&
		    !strcmp(json_string_value(json_object_get(d, "name")) ?: "", name) &&
		    strcmp(json_string_value(json_object_get(d, "state")) ?: "", "migrating-out");
		json_decref(msg);
		if (done)
			return;
	}
}

/* Follow the MIGRATION events (of the domain @name when through hvd, else NULL). */
static int watch(struct ctlconn *c, bool json, bool tty, const char *name)
{
	struct progress bar;
	bool cancelled = false;

	progress_init(&bar, stderr);
	for (;;) {
		char *line;
		json_t *msg, *d;
		const char *phase;

		if (interrupted && !cancelled) {
			cancelled = true;
			send_cancel(c, name);
		}
		line = ctlconn_line(c, 200);
		if (!line && errno != ETIMEDOUT && name)
			/* The migration runs in hv, not hvd: it may still complete. */
			return tool_fail(
			    EXIT_IN_DOUBT,
			    "%s: hvd closed the connection before the migration ended; "
			    "'hvctl info %s' tells where the VM is",
			    c->path, name);
		if (!line) {
			if (errno == ETIMEDOUT)
				continue;
			return tool_fail(
			    EXIT_FAIL,
			    "%s: hv closed the connection before the migration ended%s%s", c->path,
			    errno ? ": " : "", errno ? strerror(errno) : "");
		}
		msg = json_loads(line, 0, NULL);
		free(line);
		if (strcmp(json_string_value(json_object_get(msg, "event")) ?: "", "MIGRATION")) {
			json_decref(msg);
			continue;
		}
		d = json_object_get(msg, "data");
		if (name && strcmp(json_string_value(json_object_get(d, "name")) ?: "", name)) {
			json_decref(msg);
			continue; /* another domain's */
		}
		phase = json_string_value(json_object_get(d, "phase")) ?: "";
		if (mig_phase_final(!strcmp(phase, "completed")   ? MIG_COMPLETED
		                    : !strcmp(phase, "failed")    ? MIG_FAILED
		                    : !strcmp(phase, "cancelled") ? MIG_CANCELLED
		                    : !strcmp(phase, "in-doubt")  ? MIG_IN_DOUBT
		                                                  : MIG_PRECOPY)) {
			int rc = !strcmp(phase, "completed")   ? 0
			         : !strcmp(phase, "in-doubt")  ? EXIT_IN_DOUBT
			         : !strcmp(phase, "cancelled") ? EXIT_CANCELLED
			                                       : EXIT_FAIL;
			if (tty && !json)
				fputc('\n', stderr);
			if (json) {
				json_object_set_new(d, "type", json_string("summary"));
				json_object_set_new(d, "result", json_string(phase));
				json_dumpf(d, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
				putchar('\n');
				fflush(stdout);
			}
			print_summary(d);
			json_decref(msg);
			if (name && rc == 0)
				await_migrated(c, name);
			return rc;
		}
		if (json) {
			json_object_set_new(d, "type", json_string("round"));
			json_dumpf(d, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
			putchar('\n');
			fflush(stdout);
		} else if (tty) {
			show_progress(d, &bar);
		}
		json_decref(msg);
	}
}

/* send_with - cmd_send with the request's arguments in @args (the caller's). */
static int send_with(json_t *args, int argc, char **argv)
{
	static const struct option opts[] = {{"tls-cert", required_argument, NULL, 'c'},
	                                     {"tls-key", required_argument, NULL, 'k'},
	                                     {"tls-ca", required_argument, NULL, 'a'},
	                                     {"tls-hostname", required_argument, NULL, 'H'},
	                                     {"downtime-ms", required_argument, NULL, 'd'},
	                                     {"bandwidth", required_argument, NULL, 'b'},
	                                     {"compress", required_argument, NULL, 'z'},
	                                     {"channels", required_argument, NULL, 'n'},
	                                     {"max-rounds", required_argument, NULL, 'r'},
	                                     {"on-stall", required_argument, NULL, 's'},
	                                     {"timeout", required_argument, NULL, 't'},
	                                     {"switchover-hold", no_argument, NULL, 'O'},
	                                     {"no-delta", no_argument, NULL, 'D'},
	                                     {"max-bytes", required_argument, NULL, 'M'},
	                                     {"delta-cache", required_argument, NULL, 'C'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"socket", required_argument, NULL, 'S'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {0}};
	const char *hvd_sock = NULL, *name = NULL;
	json_t *r;
	struct hv_error err = {0};
	struct ctlconn c;
	bool json = false, tty = isatty(STDERR_FILENO);
	struct sigaction sa = {.sa_handler = on_sigint};
	int o, rc;
	uint64_t v;
	char *colon;

	opterr = 0;
	while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': json_object_set_new(args, "tls-cert", abs_path(optarg)); break;
		case 'k': json_object_set_new(args, "tls-key", abs_path(optarg)); break;
		case 'a': json_object_set_new(args, "tls-ca", abs_path(optarg)); break;
		case 'H': json_object_set_new(args, "tls-hostname", json_string(optarg)); break;
		case 'd':
			if (parse_uint("--downtime-ms", optarg, 3600000, &v))
				return EXIT_USAGE;
			json_object_set_new(args, "downtime-ms", json_integer((json_int_t)v));
			break;
		case 'b':
			if (size_parse(optarg, &v, &err) < 0)
				return tool_fail(EXIT_USAGE, "--bandwidth: %s", err.msg);
			json_object_set_new(args, "bandwidth", json_integer((json_int_t)v));
			break;
		case 'z':
			colon = strchr(optarg, ':');
			if (colon) {
				*colon = '\0';
				if (strcmp(optarg, "zstd") || !parse_level(colon + 1, &v))
					return tool_fail(EXIT_USAGE,
					                 "--compress: expected zstd[:LEVEL] "
					                 "(LEVEL 1-19) or none");
				json_object_set_new(args, "zstd-level",
				                    json_integer((json_int_t)v));
			}
			json_object_set_new(args, "compress", json_string(optarg));
			break;
		case 'n':
			if (parse_uint("--channels", optarg, MIG_CHANNELS_MAX, &v))
				return EXIT_USAGE;
			json_object_set_new(args, "channels", json_integer((json_int_t)v));
			break;
		case 'r':
			if (parse_uint("--max-rounds", optarg, 100000, &v))
				return EXIT_USAGE;
			json_object_set_new(args, "max-rounds", json_integer((json_int_t)v));
			break;
		case 's': json_object_set_new(args, "on-stall", json_string(optarg)); break;
		case 't':
			if (parse_uint("--timeout", optarg, 86400 * 7, &v))
				return EXIT_USAGE;
			json_object_set_new(args, "timeout", json_integer((json_int_t)v));
			break;
		case 'O': json_object_set_new(args, "switchover-hold", json_true()); break;
		case 'D': json_object_set_new(args, "delta", json_false()); break;
		case 'M':
			if (size_parse(optarg, &v, &err) < 0)
				return tool_fail(EXIT_USAGE, "--max-bytes: %s", err.msg);
			json_object_set_new(args, "max-bytes", json_integer((json_int_t)v));
			break;
		case 'C':
			if (size_parse(optarg, &v, &err) < 0)
				return tool_fail(EXIT_USAGE, "--delta-cache: %s", err.msg);
			json_object_set_new(args, "delta-cache", json_integer((json_int_t)v));
			break;
		case 'j': json = true; break;
		case 'S': hvd_sock = optarg; break;
		case 'h': fputs(usage_send, stdout); return 0;
		default:
			return tool_fail(EXIT_USAGE,
			                 "send: unknown or incomplete option '%s' (see "
			                 "'hvmigrate send --help')",
			                 argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		return tool_fail(EXIT_USAGE,
		                 "send: expected VM and ADDR (see 'hvmigrate send --help')");
	json_object_set_new(args, "uri", json_string(argv[optind + 1]));
	if (hvd_sock || hvm_is_domain(argv[optind])) {
		name = argv[optind];
		if (hvm_hvd_migrate(&c, hvdconn_default_socket(hvd_sock), name, args, &err) < 0) {
			ctlconn_close(&c);
			return tool_fail(EXIT_FAIL, "%s", err.msg);
		}
		goto follow;
	}
	if (ctlconn_open(&c, argv[optind], &err) < 0) {
		ctlconn_close(&c);
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	}
	r = ctlconn_call(&c, 1, "migrate", args, &err);
	if (!r || json_object_get(r, "error")) {
		rc = tool_fail(
		    EXIT_FAIL, "%s",
		    r ? json_string_value(json_object_get(json_object_get(r, "error"), "desc"))
		            ?: "migrate failed"
		      : err.msg);
		json_decref(r);
		ctlconn_close(&c);
		return rc;
	}
	json_decref(r);
follow:
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rc = watch(&c, json, tty && !json, name);
	ctlconn_close(&c);
	return rc;
}

static int cmd_send(int argc, char **argv)
{
	json_t *args = json_object();
	int rc;

	if (!args)
		return tool_fail(EXIT_FAIL, "out of memory");
	rc = send_with(args, argc, argv);
	json_decref(args);
	return rc;
}

/* ---- recv ---- */

struct recv_opts {
	const char *listen, *control, *console, *console_sock, *hvd;
	struct chan_tls_config tls;
	bool keep, json, paused;
	int accept_ms;
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* A signal while no VM is here: stop waiting for one (or abandon the one arriving). */
static void on_early_signal(int sig)
{
	incoming_abort();
}

/* The control path for migration number @seq of VM @name (see usage_recv). */
static void control_path(char *out, size_t cap, const char *tmpl, const char *name, int seq,
                         bool keep)
{
	size_t o = 0;
	bool subst = false;

	for (const char *p = tmpl; *p && o + 1 < cap; p++) {
		if (p[0] == '%' && (p[1] == 'n' || p[1] == 'i')) {
			if (p[1] == 'n')
				o += (size_t)snprintf(out + o, cap - o, "%s", name);
			else
				o += (size_t)snprintf(out + o, cap - o, "%d", seq);
			if (o >= cap)
				o = cap - 1;
			subst = true;
			p++;
			continue;
		}
		out[o++] = *p;
	}
	out[o] = '\0';
	if (keep && !subst && o + 12 < cap)
		snprintf(out + o, cap - o, ".%d", seq);
}

static void recv_summary(const struct incoming_stats *st, const struct vm *vm, bool json, FILE *f)
{
	if (json) {
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:s?, s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "type",
		              "summary", "result", "running", "source", st->source, "tls",
		              st->tls_version[0] ? st->tls_version : NULL, "channels", st->channels,
		              "rounds", st->rounds, "pages", (json_int_t)st->pages, "bytes_wire",
		              (json_int_t)st->bytes_wire, "total_ms", (json_int_t)st->total_ms,
		              "switchover_ms", (json_int_t)st->switchover_ms, "resume_us",
		              (json_int_t)st->resume_us);
		json_object_set_new(o, "name", json_string(vm->cfg.name));
		json_dumpf(o, f, JSON_COMPACT);
		fputc('\n', f);
		json_decref(o);
	} else {
		fprintf(
		    f,
		    "hvmigrate: %s: received from %s%s%s: %u channel(s), %u rounds, %llu pages, "
		    "%.1f MiB in %llu ms; state loaded in %llu ms, resumed in %llu us\n",
		    vm->cfg.name, st->source, st->tls_version[0] ? " over " : "", st->tls_version,
		    st->channels, st->rounds, (unsigned long long)st->pages,
		    (double)st->bytes_wire / (1 << 20), (unsigned long long)st->total_ms,
		    (unsigned long long)st->switchover_ms, (unsigned long long)st->resume_us);
	}
	fflush(f);
}

/* Receive one migration on @l and run the VM to its end. Returns the exit status. */
static int recv_one(struct chan_listener *l, struct chan_tls *tls, const struct recv_opts *o,
                    int seq, int accepted_fd)
{
	struct vm vm;
	struct incoming_stats st;
	struct hv_error err = {0};
	struct control *ctl = NULL;
	struct conmux *cm = NULL;
	static struct vmsig sig; /* the watching thread outlives this frame */
	int out = STDOUT_FILENO, rc, sigl, cout, cin;
	uint64_t t0 = now_ns();
	char path[256];

	if (o->console) {
		out = open(o->console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (out < 0)
			return tool_fail(EXIT_FAIL, "%s: %s", o->console, strerror(errno));
	}
	if (o->hvd)
		hvm_admit_setup(o->hvd, out); /* dup2s the domain's log over out: conmux's too */
	vmsig_block(&sig);
	vmsig_watch(&sig, NULL, on_early_signal);
	cout = out;
	cin = o->console ? -1 : STDIN_FILENO;
	/* Its socket comes once the VM runs here, under the VM's name (%n). */
	if (o->console_sock && !(cm = conmux_start(NULL, out, &cout, &cin, &err)))
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	/*
	 * A connection that fails before it has described a VM (a port scanner, a client
	 * with the wrong certificate, plaintext against TLS, one that says nothing) is
	 * refused and logged; the receiver waits on for the real migration, until its
	 * --timeout. Later failures end it; so does a signal before the switchover.
	 */
	for (;;) {
		int left = o->accept_ms;
		if (o->accept_ms >= 0) {
			left = o->accept_ms - (int)((now_ns() - t0) / 1000000);
			if (left < 0)
				left = 0;
		}
		rc = incoming_run(l, tls, left, o->paused, &vm, cout, cin, &st, &err);
		if (rc == 0 || st.vm_created || accepted_fd >= 0 || vmsig_pending(&sig))
			break;
		/* The wait itself ended (its time is up, or it was aborted). */
		if (!st.accepted &&
		    (err.code == ECANCELED ||
		     (o->accept_ms >= 0 && now_ns() - t0 >= (uint64_t)o->accept_ms * 1000000)))
			break;
		fprintf(stderr, "hvmigrate: refused a connection: %s\n", err.msg);
		if (!st.accepted) /* the listener itself failed: do not spin on it */
			usleep(10000);
	}
	if (accepted_fd >= 0) { /* --keep-listening: the parent may accept the next one */
		if (write(accepted_fd, "x", 1) < 0) { /* the parent is gone: fine */
		}
		close(accepted_fd);
	}
	if (rc < 0) { /* no VM: the UART is gone; nor will the listener serve again */
		conmux_stop(cm);
		if (accepted_fd < 0)
			chan_listener_close(l);
	}
	if (rc < 0 && vmsig_pending(&sig))
		return tool_fail(128 + vmsig_pending(&sig),
		                 "interrupted by SIG%s; no VM was received",
		                 sigabbrev_np(vmsig_pending(&sig)) ?: "?");
	if (rc < 0)
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	if (accepted_fd >= 0)
		close(chan_listener_fd(l)); /* the parent's: its socket file stays */
	else
		chan_listener_close(l);
	recv_summary(&st, &vm, o->json, o->console ? stdout : stderr);
	/* A signal after GO: the VM was ours already, and goes the way of any VM told so. */
	sigl = vmsig_set_vm(&sig, &vm);
	if (sigl)
		vm_shutdown(&vm, VM_EXIT_REQUESTED, 128 + sigl, "stopped by SIG%s",
		            sigabbrev_np(sigl) ?: "?");
	/* Before the control socket: once that answers (hvd waits for it), this one is there. */
	if (cm) {
		control_path(path, sizeof(path), o->console_sock, vm.cfg.name, seq, o->keep);
		if (conmux_listen(cm, path, &err) < 0)
			fprintf(stderr, "hvmigrate: %s (the VM runs without a console socket)\n",
			        err.msg);
	}
	if (o->control) {
		control_path(path, sizeof(path), o->control, vm.cfg.name, seq, o->keep);
		if (!(ctl = control_start(&vm, path, &err)))
			fprintf(stderr, "hvmigrate: %s (the VM runs without a control socket)\n",
			        err.msg);
	}
	rc = vm_wait(&vm);
	conmux_flush(cm); /* the guest's last words before ours in the log */
	control_stop(ctl);
	if (vm.exit_kind != VM_EXIT_GUEST)
		fprintf(stderr, "hvmigrate: %s: %s\n", vm.cfg.name,
		        vm.exit_reason[0] ? vm.exit_reason : "crashed");
	vmsig_set_vm(&sig, NULL); /* no signal may shut it down once destroyed */
	vm_destroy(&vm);
	conmux_stop(cm); /* after the UART, whose reader thread reads its pipe */
	return rc;
}

/* --keep-listening: a child per migration; the parent waits until it has accepted. */
static int recv_loop(struct chan_listener *l, struct chan_tls *tls, struct recv_opts *o)
{
	for (int seq = 1;;) {
		struct pollfd p = {.fd = chan_listener_fd(l), .events = POLLIN};
		int pfd[2];
		pid_t pid;
		char x;

		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (poll(&p, 1, 1000) <= 0)
			continue;
		if (pipe2(pfd, O_CLOEXEC) < 0)
			return tool_fail(EXIT_FAIL, "pipe: %s", strerror(errno));
		pid = fork();
		seq++;
		if (pid < 0)
			return tool_fail(EXIT_FAIL, "fork: %s", strerror(errno));
		if (pid == 0) {
			struct hv_error err = {0};
			close(pfd[0]);
			if (chan_listener_after_fork(l, &err) < 0)
				_exit(tool_fail(EXIT_FAIL, "%s", err.msg));
			_exit(recv_one(l, tls, o, seq - 1, pfd[1]));
		}
		close(pfd[1]);
		/* The child accepts the main and the page connections, then says so (or dies). */
		while (read(pfd[0], &x, 1) < 0 && errno == EINTR)
			;
		close(pfd[0]);
		fprintf(stderr, "hvmigrate: migration %d handed to process %d\n", seq - 1,
		        (int)pid);
	}
}

static int cmd_recv(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
	                                     {"tls-cert", required_argument, NULL, 'c'},
	                                     {"tls-key", required_argument, NULL, 'k'},
	                                     {"tls-ca", required_argument, NULL, 'a'},
	                                     {"control", required_argument, NULL, 'S'},
	                                     {"console", required_argument, NULL, 'C'},
	                                     {"console-socket", required_argument, NULL, 'U'},
	                                     {"keep-listening", no_argument, NULL, 'K'},
	                                     {"timeout", required_argument, NULL, 't'},
	                                     {"paused", no_argument, NULL, 'p'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {"tls-client-name", required_argument, NULL, 'N'},
	                                     {"hvd", required_argument, NULL, 'D'},
	                                     {0}};
	struct recv_opts o = {.accept_ms = -1};
	struct hv_error err = {0};
	struct chan_addr a;
	struct chan_listener *l;
	struct chan_tls *tls = NULL;
	uint64_t v;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'c': o.tls.cert = optarg; break;
		case 'k': o.tls.key = optarg; break;
		case 'a': o.tls.ca = optarg; break;
		case 'N': o.tls.peer_name = optarg; break;
		case 'S': o.control = optarg; break;
		case 'D': o.hvd = optarg; break;
		case 'C': o.console = optarg; break;
		case 'U': o.console_sock = optarg; break;
		case 'K': o.keep = true; break;
		case 'p': o.paused = true; break;
		case 't':
			if (parse_uint("--timeout", optarg, 86400 * 7, &v))
				return EXIT_USAGE;
			o.accept_ms = (int)(v * 1000);
			break;
		case 'j': o.json = true; break;
		case 'h': fputs(usage_recv, stdout); return 0;
		default:
			return tool_fail(EXIT_USAGE,
			                 "recv: unknown or incomplete option '%s' (see "
			                 "'hvmigrate recv --help')",
			                 argv[optind - 1]);
		}
	}
	if (optind != argc)
		return tool_fail(EXIT_USAGE, "recv: unexpected argument '%s'", argv[optind]);
	if (!o.listen)
		return tool_fail(EXIT_USAGE, "recv: --listen ADDR is required");
	if ((o.tls.cert || o.tls.key || o.tls.ca) && !(o.tls.cert && o.tls.key && o.tls.ca))
		return tool_fail(EXIT_USAGE,
		                 "recv: TLS needs all of --tls-cert, --tls-key and --tls-ca");
	if (o.tls.peer_name && !o.tls.cert)
		return tool_fail(EXIT_USAGE, "recv: --tls-client-name needs TLS (--tls-cert ...)");
	if (o.paused && !o.control)
		return tool_fail(EXIT_USAGE,
		                 "recv: --paused needs --control: nothing could resume the VM");
	if (o.keep && o.accept_ms >= 0)
		return tool_fail(EXIT_USAGE, "recv: --timeout does not go with --keep-listening");
	if (chan_addr_parse(o.listen, &a, &err) < 0)
		return tool_fail(EXIT_USAGE, "--listen: %s", err.msg);
	if (o.tls.cert && !(tls = chan_tls_new(&o.tls, true, &err)))
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	signal(SIGPIPE, SIG_IGN);
	l = chan_listen(&a, &err);
	if (!l) {
		chan_tls_free(tls);
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	}
	if (a.tcp)
		fprintf(stderr, "hvmigrate: listening on tcp:%s%s%s:%u%s\n",
		        strchr(a.host, ':') ? "[" : "", a.host, strchr(a.host, ':') ? "]" : "",
		        chan_listener_port(l), tls ? " (TLS)" : "");
	else
		fprintf(stderr, "hvmigrate: listening on %s%s\n", a.text, tls ? " (TLS)" : "");
	if (o.keep)
		rc = recv_loop(l, tls, &o);
	else
		rc = recv_one(l, tls, &o, 1, -1);
	chan_tls_free(tls);
	return rc;
}

int main(int argc, char **argv)
{
	tool_init("hvmigrate");
	if (argc < 2)
		return tool_fail(EXIT_USAGE,
		                 "missing command: send or recv (see 'hvmigrate --help')");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("hvmigrate %s\n", HV_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "send"))
		return cmd_send(argc - 1, argv + 1);
	if (!strcmp(argv[1], "recv"))
		return cmd_recv(argc - 1, argv + 1);
	return tool_fail(EXIT_USAGE, "unknown command '%s' (see 'hvmigrate --help')", argv[1]);
}
