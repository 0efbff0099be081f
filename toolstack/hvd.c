/*
 * hvd.c - the hvd program: the daemon that owns a host's domains (docs/hvd.8.md).
 *
 * `hvd --foreground` runs the daemon; `hvd start|stop|restart|status` manage one in the
 * background, like Xen's xend. Whether a daemon runs is decided by a lock, not by a pid
 * that may have been reused: the daemon holds an exclusive flock() on STATE/hvd.pid for
 * its whole life, so the file is "locked" exactly while a daemon lives, however it died.
 * VMs are separate processes in sessions of their own, so stopping (or killing) the
 * daemon never stops a VM; the next daemon finds them again from STATE/domains.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "toolstack/hvd.h"
#include "toolstack/hvdconn.h"

#define EXIT_FAIL        1
#define EXIT_USAGE       2
#define EXIT_NOT_RUNNING 3 /* status: no daemon */
#define EXIT_NO_ANSWER   4 /* status: a daemon holds the pid file but does not answer */
#define WAIT_MS          30000

static const char usage[] =
    "usage: hvd [OPTIONS] start|stop|restart|status\n"
    "       hvd [OPTIONS] --foreground\n"
    "\n"
    "The hv domain daemon: runs one hv process per domain and serves the API that\n"
    "`hvctl create|list|info|pause|...` speaks (see hvd(8), docs/hvd-api.md).\n"
    "\n"
    "  start             start the daemon in the background, unless one runs\n"
    "  stop              stop the daemon; its VMs keep running\n"
    "  restart           stop, then start\n"
    "  status            say whether it runs, its pid and its domains (exit 0 or 3)\n"
    "  -f, --foreground  run the daemon attached (systemd, tests); logs on stderr\n"
    "  -d, --state-dir DIR  state directory (default $HVD_STATE_DIR or /var/lib/hv)\n"
    "  -s, --socket PATH    API socket (default $HVD_SOCKET or /run/hvd.sock)\n"
    "      --hv PATH        the hv program (default: hv next to hvd)\n"
    "      --migrate-listen ADDR  take live migrations at ADDR (tcp:HOST:PORT or\n"
    "                       unix:PATH) through hvmigrate recv, as domains\n"
    "      --tls-cert F --tls-key F --tls-ca F  ... over TLS 1.3 only\n"
    "      --tls-client-name N  ... only from senders certified for the name N\n"
    "  -h, --help        show this help\n"
    "      --version     print the version\n"
    "\n"
    "Exit status: 0 on success; 1 on failure; 2 for bad arguments; status: 3 when no\n"
    "daemon runs, 4 when one holds the pid file but does not answer on the socket.\n";

static __attribute__((format(printf, 2, 3))) int fail(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("hvd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

/* mkdir -p for one level under an existing parent, private to the owner. */
static int mkdir_private(const char *path, struct hv_error *err)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	return 0;
}

/* Settle the paths: the state directory made absolute (and created), its subfolders. */
static int setup_paths(struct hvd *h, const char *state, const char *sock, const char *hv,
                       struct hv_error *err)
{
	char buf[PATH_MAX];
	ssize_t n;

	if (mkdir_private(state, err) < 0)
		return -1;
	if (!realpath(state, h->state_dir))
		return hv_fail(err, errno, "%s: %s", state, strerror(errno));
	if (snprintf(h->dom_dir, sizeof(h->dom_dir), "%s/domains", h->state_dir) >=
	        (int)sizeof(h->dom_dir) ||
	    snprintf(h->run_dir, sizeof(h->run_dir), "%s/run", h->state_dir) >=
	        (int)sizeof(h->run_dir))
		return hv_fail(err, ENAMETOOLONG, "%s: path too long", h->state_dir);
	if (mkdir_private(h->dom_dir, err) < 0 || mkdir_private(h->run_dir, err) < 0)
		return -1;
	if (strlen(sock) >= sizeof(h->sock_path))
		return hv_fail(err, ENAMETOOLONG, "--socket %s: longer than %zu bytes", sock,
		               sizeof(h->sock_path) - 1);
	/* Absolute, since the daemon runs from "/". */
	if (sock[0] != '/') {
		if (!getcwd(buf, sizeof(buf)) ||
		    snprintf(h->sock_path, sizeof(h->sock_path), "%s/%s", buf, sock) >=
		        (int)sizeof(h->sock_path))
			return hv_fail(err, ENAMETOOLONG, "--socket %s: path too long", sock);
	} else {
		snprintf(h->sock_path, sizeof(h->sock_path), "%s", sock);
	}
	/* Default: the hv (and hvmigrate) built or installed beside this hvd. */
	n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return hv_fail(err, errno, "/proc/self/exe: %s", strerror(errno));
	buf[n] = '\0';
	*strrchr(buf, '/') = '\0';
	if (snprintf(h->hvmigrate_path, sizeof(h->hvmigrate_path), "%s/hvmigrate", buf) >=
	    (int)sizeof(h->hvmigrate_path))
		return hv_fail(err, ENAMETOOLONG, "%s/hvmigrate: path too long", buf);
	if (hv) {
		if (!realpath(hv, h->hv_path))
			return hv_fail(err, errno, "--hv %s: %s", hv, strerror(errno));
		return 0;
	}
	if (snprintf(h->hv_path, sizeof(h->hv_path), "%s/hv", buf) >= (int)sizeof(h->hv_path))
		return hv_fail(err, ENAMETOOLONG, "%s/hv: path too long", buf);
	return 0;
}

/* The TLS files, made absolute: the daemon and its listener run from "/". */
static int absolute_tls(struct hvd *h)
{
	static char paths[3][PATH_MAX];
	char cwd[PATH_MAX];

	for (int i = 0; i < 3; i++) {
		const char *p = h->mig_tls[i];
		if (!p || p[0] == '/')
			continue;
		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(paths[i], sizeof(paths[i]), "%s/%s", cwd, p) >= (int)sizeof(paths[i]))
			return -1;
		h->mig_tls[i] = paths[i];
	}
	return 0;
}

static void pidfile_path(const struct hvd *h, char *out, size_t cap)
{
	snprintf(out, cap, "%s/hvd.pid", h->state_dir);
}

/* The pid of the running daemon (it holds the lock on the pid file), or 0. */
static pid_t running_pid(const struct hvd *h)
{
	char path[PATH_MAX + 16], buf[32] = "";
	pid_t pid = 0;
	ssize_t n;
	int fd;

	pidfile_path(h, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		close(fd); /* nobody holds it: a stale file */
		return 0;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n > 0)
		pid = (pid_t)atoi(buf);
	return pid > 0 ? pid : -1; /* locked but unreadable: a daemon still starting */
}

/* Whether hvd answers at the socket; *@ndom gets its domain count when it does. */
static bool socket_answers(const struct hvd *h, int *ndom, int *nrun)
{
	struct hv_error err = {0};
	struct ctlconn c;
	json_t *reply, *arr;
	bool ok = false;
	size_t i;
	json_t *d;

	if (hvdconn_open(&c, h->sock_path, 5000, &err) == 0) {
		reply = ctlconn_call(&c, 1, "list", NULL, &err);
		arr = json_object_get(json_object_get(reply, "return"), "domains");
		ok = json_is_array(arr);
		*ndom = (int)json_array_size(arr);
		*nrun = 0;
		json_array_foreach(arr, i, d)
		{
			const char *st = json_string_value(json_object_get(d, "state")) ?: "";
			*nrun += !strcmp(st, "running") || !strcmp(st, "paused");
		}
		json_decref(reply);
	}
	ctlconn_close(&c);
	return ok;
}

/* ---- the daemon ---- */

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	fprintf(stderr, "hvd: signal %d: stopping; the VMs keep running\n", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

/*
 * Run the daemon until SIGTERM or SIGINT. @ready_fd (or -1) gets one byte once the
 * socket is listening. Returns the exit status.
 */
static int run_daemon(struct hvd *h, int ready_fd)
{
	struct hv_error err = {0};
	char path[PATH_MAX + 16], buf[32];
	ev_signal term_w, int_w;
	int fd, n = 0, len;

	pidfile_path(h, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(EXIT_FAIL, "%s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return fail(EXIT_FAIL, "already running (pid %d, %s)", (int)running_pid(h), path);
	}
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		return fail(EXIT_FAIL, "%s: %s", path, strerror(errno));
	h->loop = ev_default_loop(EVFLAG_AUTO);
	if (!h->loop)
		return fail(EXIT_FAIL, "cannot create the event loop");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	ev_signal_init(&term_w, stop_cb, SIGTERM);
	ev_signal_init(&int_w, stop_cb, SIGINT);
	ev_signal_start(h->loop, &term_w);
	ev_signal_start(h->loop, &int_w);
	if (hvd_listen(h, &err) < 0) {
		unlink(path);
		return fail(EXIT_FAIL, "%s", err.msg);
	}
	if (hvd_load_domains(h, &err) < 0) {
		hvd_server_close(h);
		unlink(path);
		return fail(EXIT_FAIL, "%s", err.msg);
	}
	hvd_autostart(h);
	if (h->mig_listen && hvd_listener_start(h, &err) < 0)
		fprintf(stderr, "hvd: migration listener: %s\n", err.msg);
	for (struct domain *d = h->domains; d; d = d->next)
		n++;
	fprintf(stderr, "hvd: started: pid %d, socket %s, state %s, %d domain%s\n", (int)getpid(),
	        h->sock_path, h->state_dir, n, n == 1 ? "" : "s");
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "1", 1);
		close(ready_fd);
	}
	ev_run(h->loop, 0);
	hvd_listener_stop(h);
	/* Leave every VM running; write down where each one stands for the next hvd. */
	for (struct domain *d = h->domains; d; d = d->next) {
		vm_stop_watch(d);
		dom_save_state(h->dom_dir, d, NULL);
	}
	hvd_server_close(h);
	unlink(path);
	close(fd);
	fprintf(stderr, "hvd: stopped\n");
	return 0;
}

/* ---- start, stop, status ---- */

static int cmd_start(struct hvd *h)
{
	char log[PATH_MAX + 16];
	int p[2], nd, nr, logfd, nullfd;
	pid_t pid = running_pid(h);
	struct pollfd pf;
	char b;

	if (pid) {
		printf("hvd: already running (pid %d)\n", (int)pid);
		return 0;
	}
	if (socket_answers(h, &nd, &nr)) {
		printf("hvd: already running (an hvd answers on %s)\n", h->sock_path);
		return 0;
	}
	snprintf(log, sizeof(log), "%s/hvd.log", h->state_dir);
	logfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0 || pipe2(p, O_CLOEXEC) < 0)
		return fail(EXIT_FAIL, "%s: %s", log, strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return fail(EXIT_FAIL, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Twice, so the daemon is no session leader and never gets a terminal. */
		setsid();
		if (fork() != 0)
			_exit(0);
		close(p[0]);
		dup2(nullfd, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		if (chdir("/") < 0)
			_exit(EXIT_FAIL);
		_exit(run_daemon(h, p[1]));
	}
	close(p[1]);
	close(logfd);
	close(nullfd);
	pf = (struct pollfd){.fd = p[0], .events = POLLIN};
	if (poll(&pf, 1, WAIT_MS) == 1 && read(p[0], &b, 1) == 1) {
		printf("hvd: started (pid %d, socket %s)\n", (int)running_pid(h), h->sock_path);
		return 0;
	}
	return fail(EXIT_FAIL, "the daemon did not start; see %s", log);
}

static int cmd_stop(struct hvd *h)
{
	pid_t pid = running_pid(h);

	if (!pid) {
		printf("hvd: not running\n");
		return 0;
	}
	if (pid < 0 || kill(pid, SIGTERM) < 0)
		return fail(EXIT_FAIL, "cannot signal the daemon (pid %d): %s", (int)pid,
		            strerror(errno));
	for (int i = 0; i < WAIT_MS / 50; i++) {
		struct timespec ts = {0, 50 * 1000000L};
		if (!running_pid(h)) {
			printf("hvd: stopped (pid %d); its VMs keep running\n", (int)pid);
			return 0;
		}
		nanosleep(&ts, NULL);
	}
	return fail(EXIT_FAIL, "pid %d did not stop within %d s", (int)pid, WAIT_MS / 1000);
}

static int cmd_status(struct hvd *h)
{
	pid_t pid = running_pid(h);
	int nd = 0, nr = 0;

	if (!pid) {
		printf("hvd: not running (state %s)\n", h->state_dir);
		return EXIT_NOT_RUNNING;
	}
	if (!socket_answers(h, &nd, &nr)) {
		printf("hvd: pid %d holds %s/hvd.pid but %s does not answer\n", (int)pid,
		       h->state_dir, h->sock_path);
		return EXIT_NO_ANSWER;
	}
	printf("hvd: running: pid %d, socket %s, state %s, %d domain%s (%d running)\n", (int)pid,
	       h->sock_path, h->state_dir, nd, nd == 1 ? "" : "s", nr);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"foreground", no_argument, NULL, 'f'},
	    {"state-dir", required_argument, NULL, 'd'},
	    {"socket", required_argument, NULL, 's'},
	    {"hv", required_argument, NULL, 'H'},
	    {"migrate-listen", required_argument, NULL, 'L'},
	    {"tls-cert", required_argument, NULL, 'c'},
	    {"tls-key", required_argument, NULL, 'k'},
	    {"tls-ca", required_argument, NULL, 'a'},
	    {"tls-client-name", required_argument, NULL, 'N'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	static struct hvd h = {.lfd = -1};
	const char *state = getenv("HVD_STATE_DIR"), *sock = NULL, *hv = NULL, *cmd = NULL;
	struct hv_error err = {0};
	bool fg = false;
	int c, rc;

	if (!state || !*state)
		state = HVD_DEFAULT_STATE_DIR;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fd:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': fg = true; break;
		case 'd': state = optarg; break;
		case 's': sock = optarg; break;
		case 'H': hv = optarg; break;
		case 'L': h.mig_listen = optarg; break;
		case 'c': h.mig_tls[0] = optarg; break;
		case 'k': h.mig_tls[1] = optarg; break;
		case 'a': h.mig_tls[2] = optarg; break;
		case 'N': h.mig_tls[3] = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("hvd %s\n", HV_VERSION); return 0;
		case ':': return fail(EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
		default:
			return fail(EXIT_USAGE, "unknown option '%s' (see 'hvd --help')",
			            argv[optind - 1]);
		}
	}
	if (optind < argc)
		cmd = argv[optind];
	if (optind + 1 < argc)
		return fail(EXIT_USAGE, "unexpected argument '%s'", argv[optind + 1]);
	if (fg == !!cmd)
		return fail(EXIT_USAGE, "%s (see 'hvd --help')",
		            fg ? "--foreground takes no command"
		               : "missing command: start, stop, restart or status");
	if (cmd && strcmp(cmd, "start") && strcmp(cmd, "stop") && strcmp(cmd, "restart") &&
	    strcmp(cmd, "status"))
		return fail(EXIT_USAGE, "unknown command '%s' (see 'hvd --help')", cmd);
	if ((h.mig_tls[0] || h.mig_tls[1] || h.mig_tls[2] || h.mig_tls[3]) && !h.mig_listen)
		return fail(EXIT_USAGE, "the --tls-* options go with --migrate-listen");
	if (h.mig_listen && (h.mig_tls[0] || h.mig_tls[1] || h.mig_tls[2]) &&
	    !(h.mig_tls[0] && h.mig_tls[1] && h.mig_tls[2]))
		return fail(EXIT_USAGE, "TLS needs all of --tls-cert, --tls-key and --tls-ca");
	if (h.mig_listen && h.mig_tls[3] && !h.mig_tls[0])
		return fail(EXIT_USAGE, "--tls-client-name needs TLS (--tls-cert ...)");
	if (h.mig_listen && (absolute_tls(&h) < 0))
		return fail(EXIT_USAGE, "a --tls-* file path is too long");
	if (setup_paths(&h, state, hvdconn_default_socket(sock), hv, &err) < 0)
		return fail(EXIT_FAIL, "%s", err.msg);
	if (fg)
		return run_daemon(&h, -1);
	if (!strcmp(cmd, "status"))
		return cmd_status(&h);
	if (!strcmp(cmd, "stop"))
		return cmd_stop(&h);
	if (!strcmp(cmd, "restart") && (rc = cmd_stop(&h)) != 0)
		return rc;
	return cmd_start(&h);
}
