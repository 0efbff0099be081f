/*
 * hvd.c - the hvd program: the daemon that owns a host's domains (docs/hvd.8.md).
 *
 * `hvd --foreground` runs the daemon; `hvd start|stop|restart|status` manage one in the
 * background, like Xen's xend. Whether a daemon runs is decided by a lock, not by a pid
 * that may have been reused: the daemon holds an exclusive flock() on STATE/hvd.pid for
 * its whole life, so the file is "locked" exactly while a daemon lives, however it died.
 * VMs are separate processes in sessions of their own, so stopping (or killing) the
 * daemon never stops a VM; the next daemon finds them again from STATE/domains.
 *
 * Settings come from the command line, then the environment (HVD_STATE_DIR, HVD_SOCKET),
 * then the config file (hvd_conf.h), then the defaults. The log is stderr, pointed at a
 * file (--log, or STATE/hvd.log for a daemon that `hvd start` put in the background), so
 * the messages of hvd's hvmigrate listener, which inherits stderr, land there too.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "toolstack/hvd.h"
#include "toolstack/hvd_conf.h"
#include "toolstack/hvdconn.h"
#include "toolstack/tool.h"

#define EXIT_FAIL        1
#define EXIT_USAGE       2
#define EXIT_NOT_RUNNING 3 /* status: no daemon */
#define EXIT_NO_ANSWER   4 /* status: a daemon holds the pid file but does not answer */
#define WAIT_MS          30000

static const char usage[] =
    "usage: hvd [OPTIONS] start|stop|restart|status [--json]\n"
    "       hvd [OPTIONS] --foreground\n"
    "\n"
    "The hv domain daemon: runs one hv process per domain and serves the API that\n"
    "`hvctl create|list|info|pause|...` speaks (see hvd(8), docs/hvd-api.md).\n"
    "\n"
    "  start             start the daemon in the background, unless one runs\n"
    "  stop              stop the daemon; its VMs keep running\n"
    "  restart           stop, then start\n"
    "  status            say whether it runs, its pid and its domains (exit 0 or 3);\n"
    "                    --json: as one JSON object\n"
    "  -f, --foreground  run the daemon attached (systemd, tests); logs on stderr\n"
    "  -c, --config FILE    settings (default $HVD_CONFIG, else /etc/hv/hvd.conf if it\n"
    "                       exists; '' for none); the options here override it\n"
    "  -l, --log FILE       log to FILE (appended; reopened on SIGHUP), not stderr;\n"
    "                       'hvd start' logs to STATE/hvd.log without it\n"
    "  -d, --state-dir DIR  state directory (default $HVD_STATE_DIR or /var/lib/hv)\n"
    "  -s, --socket PATH    API socket (default $HVD_SOCKET or /run/hvd.sock)\n"
    "      --hv PATH        the hv program (default: hv next to hvd)\n"
    "      --migrate-listen ADDR  take live migrations at ADDR (tcp:HOST:PORT or\n"
    "                       unix:PATH) through hvmigrate recv, as domains\n"
    "      --tls-cert F --tls-key F --tls-ca F  ... over TLS 1.3 only\n"
    "      --tls-client-name N  ... only from senders certified for the name N\n"
    "      --autostart, --no-autostart  start the autostart domains when the daemon\n"
    "                       starts, or not (default: yes)\n"
    "  -h, --help        show this help\n"
    "      --version     print the version\n"
    "\n"
    "Exit status: 0 on success; 1 on failure; 2 for bad arguments; status: 3 when no\n"
    "daemon runs, 4 when one holds the pid file but does not answer on the socket.\n";

/* The log file ("" for stderr as it came), and whether autostart domains start. */
static char log_path[PATH_MAX];
static bool autostart = true;

/*
 * Point stdout and stderr at @path, opened for appending. stderr stays unbuffered, so a
 * line is one write(2) and lines of hvd and of its listener never interleave.
 */
static int log_open(const char *path, struct hv_error *err)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	fflush(stdout);
	if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
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

/* SIGHUP with a log file: logrotate has moved it away; write to a new one at the path. */
static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct hv_error err = {0};

	if (log_open(log_path, &err) < 0)
		fprintf(stderr, "hvd: SIGHUP: cannot reopen the log: %s; logging on here\n",
		        err.msg);
	else
		fprintf(stderr, "hvd: SIGHUP: reopened the log %s\n", log_path);
}

/*
 * Run the daemon until SIGTERM or SIGINT. @ready_fd (or -1) gets one byte once the
 * socket is listening. Returns the exit status.
 */
static int run_daemon(struct hvd *h, int ready_fd)
{
	struct hv_error err = {0};
	char path[PATH_MAX + 16], buf[32];
	ev_signal term_w, int_w, hup_w;
	int fd, n = 0, len;

	pidfile_path(h, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return tool_fail(EXIT_FAIL, "%s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return tool_fail(EXIT_FAIL, "already running (pid %d, %s)", (int)running_pid(h),
		                 path);
	}
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		return tool_fail(EXIT_FAIL, "%s: %s", path, strerror(errno));
	h->loop = ev_default_loop(EVFLAG_AUTO);
	if (!h->loop)
		return tool_fail(EXIT_FAIL, "cannot create the event loop");
	signal(SIGPIPE, SIG_IGN);
	/* Without a log file, ignored as before: the children (the listener) inherit that. */
	signal(SIGHUP, SIG_IGN);
	ev_signal_init(&term_w, stop_cb, SIGTERM);
	ev_signal_init(&int_w, stop_cb, SIGINT);
	ev_signal_init(&hup_w, hup_cb, SIGHUP);
	ev_signal_start(h->loop, &term_w);
	ev_signal_start(h->loop, &int_w);
	if (log_path[0])
		ev_signal_start(h->loop, &hup_w);
	if (hvd_listen(h, &err) < 0) {
		unlink(path);
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	}
	if (hvd_load_domains(h, &err) < 0) {
		hvd_server_close(h);
		unlink(path);
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	}
	if (autostart)
		hvd_autostart(h);
	else
		fprintf(stderr, "hvd: autostart off: autostart domains left as they are\n");
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
	const char *log = log_path;
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
	/* In the background, stderr goes nowhere: a log file it is, by default in STATE. */
	if (!log[0] && snprintf(log_path, sizeof(log_path), "%s/hvd.log", h->state_dir) >=
	                   (int)sizeof(log_path))
		return tool_fail(EXIT_FAIL, "%s/hvd.log: path too long", h->state_dir);
	logfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0 || pipe2(p, O_CLOEXEC) < 0)
		return tool_fail(EXIT_FAIL, "%s: %s", log, strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return tool_fail(EXIT_FAIL, "fork: %s", strerror(errno));
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
		printf("hvd: started (pid %d, socket %s, log %s)\n", (int)running_pid(h),
		       h->sock_path, log);
		return 0;
	}
	return tool_fail(EXIT_FAIL, "the daemon did not start; see %s", log);
}

static int cmd_stop(struct hvd *h)
{
	pid_t pid = running_pid(h);

	if (!pid) {
		printf("hvd: not running\n");
		return 0;
	}
	if (pid < 0 || kill(pid, SIGTERM) < 0)
		return tool_fail(EXIT_FAIL, "cannot signal the daemon (pid %d): %s", (int)pid,
		                 strerror(errno));
	for (int i = 0; i < WAIT_MS / 50; i++) {
		struct timespec ts = {0, 50 * 1000000L};
		if (!running_pid(h)) {
			printf("hvd: stopped (pid %d); its VMs keep running\n", (int)pid);
			return 0;
		}
		nanosleep(&ts, NULL);
	}
	return tool_fail(EXIT_FAIL, "pid %d did not stop within %d s", (int)pid, WAIT_MS / 1000);
}

/* status --json: one object, whatever the answer; @pid 0 when no daemon runs. */
static void status_json(const struct hvd *h, pid_t pid, bool answers, int nd, int nr)
{
	json_t *o = json_pack("{s:b, s:s, s:s}", "running", pid != 0, "socket", h->sock_path,
	                      "state_dir", h->state_dir);

	if (o && pid)
		json_object_update_new(
		    o, json_pack("{s:I, s:b}", "pid", (json_int_t)pid, "answers", answers));
	if (o && answers)
		json_object_update_new(
		    o, json_pack("{s:i, s:i}", "domains", nd, "domains_running", nr));
	if (o)
		json_dumpf(o, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(o);
}

static int cmd_status(struct hvd *h, bool json)
{
	pid_t pid = running_pid(h);
	int nd = 0, nr = 0;
	bool answers = pid && socket_answers(h, &nd, &nr);

	if (json) {
		status_json(h, pid, answers, nd, nr);
		return !pid ? EXIT_NOT_RUNNING : !answers ? EXIT_NO_ANSWER : 0;
	}
	if (!pid) {
		printf("hvd: not running (state %s)\n", h->state_dir);
		return EXIT_NOT_RUNNING;
	}
	if (!answers) {
		printf("hvd: pid %d holds %s/hvd.pid but %s does not answer\n", (int)pid,
		       h->state_dir, h->sock_path);
		return EXIT_NO_ANSWER;
	}
	printf("hvd: running: pid %d, socket %s, state %s, %d domain%s (%d running)\n", (int)pid,
	       h->sock_path, h->state_dir, nd, nd == 1 ? "" : "s", nr);
	return 0;
}

/*
 * Read the config file: @opt (--config), else $HVD_CONFIG, else HVD_CONF_DEFAULT if it
 * exists; "" for none. Returns 0, or the exit status (said why).
 */
static int read_conf(const char *opt, struct hvd_conf *conf)
{
	const char *path = opt ? opt : getenv("HVD_CONFIG");
	struct hv_error err = {0};

	memset(conf, 0, sizeof(*conf));
	conf->autostart = -1;
	if (!path || (!opt && !*path)) {
		path = HVD_CONF_DEFAULT;
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return 0;
	}
	if (!*path)
		return 0;
	if (hvd_conf_load(path, conf, &err) < 0)
		return tool_fail(EXIT_USAGE, "%s", err.msg);
	return 0;
}

/* @opt, else $@env when set and not empty, else @conf, else @def. */
static const char *pick(const char *opt, const char *env, const char *conf, const char *def)
{
	const char *e = env ? getenv(env) : NULL;

	return opt ? opt : e && *e ? e : conf ? conf : def;
}

int main(int argc, char **argv)
{
	enum { O_HV = 256, O_LISTEN, O_CERT, O_KEY, O_CA, O_NAME, O_AUTO, O_NOAUTO, O_JSON, O_VER };
	static const struct option opts[] = {
	    {"foreground", no_argument, NULL, 'f'},
	    {"config", required_argument, NULL, 'c'},
	    {"log", required_argument, NULL, 'l'},
	    {"state-dir", required_argument, NULL, 'd'},
	    {"socket", required_argument, NULL, 's'},
	    {"hv", required_argument, NULL, O_HV},
	    {"migrate-listen", required_argument, NULL, O_LISTEN},
	    {"tls-cert", required_argument, NULL, O_CERT},
	    {"tls-key", required_argument, NULL, O_KEY},
	    {"tls-ca", required_argument, NULL, O_CA},
	    {"tls-client-name", required_argument, NULL, O_NAME},
	    {"autostart", no_argument, NULL, O_AUTO},
	    {"no-autostart", no_argument, NULL, O_NOAUTO},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, O_VER},
	    {0},
	};
	static struct hvd h;
	static struct hvd_conf conf; /* h.mig_tls may point into it: it lives on */
	const char *state = NULL, *sock = NULL, *hv = NULL, *cmd = NULL, *config = NULL;
	const char *log = NULL, *listen = NULL, *tls[4] = {NULL};
	struct hv_error err = {0};
	bool fg = false, json = false;
	int c, rc, autostart_opt = -1;

	tool_init("hvd");
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fc:l:d:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': fg = true; break;
		case 'c': config = optarg; break;
		case 'l': log = optarg; break;
		case 'd': state = optarg; break;
		case 's': sock = optarg; break;
		case O_HV: hv = optarg; break;
		case O_LISTEN: listen = optarg; break;
		case O_CERT: tls[0] = optarg; break;
		case O_KEY: tls[1] = optarg; break;
		case O_CA: tls[2] = optarg; break;
		case O_NAME: tls[3] = optarg; break;
		case O_AUTO: autostart_opt = 1; break;
		case O_NOAUTO: autostart_opt = 0; break;
		case O_JSON: json = true; break;
		case 'h': fputs(usage, stdout); return 0;
		case O_VER: printf("hvd %s\n", HV_VERSION); return 0;
		case ':':
			return tool_fail(EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
		default:
			return tool_fail(EXIT_USAGE, "unknown option '%s' (see 'hvd --help')",
			                 argv[optind - 1]);
		}
	}
	if (optind < argc)
		cmd = argv[optind];
	if (optind + 1 < argc)
		return tool_fail(EXIT_USAGE, "unexpected argument '%s'", argv[optind + 1]);
	if (fg == !!cmd)
		return tool_fail(EXIT_USAGE, "%s (see 'hvd --help')",
		                 fg ? "--foreground takes no command"
		                    : "missing command: start, stop, restart or status");
	if (cmd && strcmp(cmd, "start") && strcmp(cmd, "stop") && strcmp(cmd, "restart") &&
	    strcmp(cmd, "status"))
		return tool_fail(EXIT_USAGE, "unknown command '%s' (see 'hvd --help')", cmd);
	if (json && (!cmd || strcmp(cmd, "status")))
		return tool_fail(EXIT_USAGE, "--json only goes with status");
	if ((rc = read_conf(config, &conf)) != 0)
		return rc;
	/* The command line first, then the environment, then the file, then the defaults. */
	state = pick(state, "HVD_STATE_DIR", conf.state_dir, HVD_DEFAULT_STATE_DIR);
	sock = pick(sock, "HVD_SOCKET", conf.socket, HVD_DEFAULT_SOCKET);
	hv = pick(hv, NULL, conf.hv, NULL);
	log = pick(log, NULL, conf.log, NULL);
	autostart = autostart_opt >= 0 ? autostart_opt : conf.autostart != 0;
	h.mig_listen = pick(listen, NULL, conf.migrate_listen, NULL);
	/* TLS in the file is for whenever hvd listens; on the command line it asks to. */
	if ((tls[0] || tls[1] || tls[2] || tls[3]) && !h.mig_listen)
		return tool_fail(EXIT_USAGE, "the --tls-* options go with --migrate-listen");
	if (h.mig_listen) {
		h.mig_tls[0] = pick(tls[0], NULL, conf.tls_cert, NULL);
		h.mig_tls[1] = pick(tls[1], NULL, conf.tls_key, NULL);
		h.mig_tls[2] = pick(tls[2], NULL, conf.tls_ca, NULL);
		h.mig_tls[3] = pick(tls[3], NULL, conf.tls_client_name, NULL);
	}
	if (h.mig_listen && (h.mig_tls[0] || h.mig_tls[1] || h.mig_tls[2]) &&
	    !(h.mig_tls[0] && h.mig_tls[1] && h.mig_tls[2]))
		return tool_fail(EXIT_USAGE, "TLS needs all of --tls-cert, --tls-key and --tls-ca");
	if (h.mig_listen && h.mig_tls[3] && !h.mig_tls[0])
		return tool_fail(EXIT_USAGE, "--tls-client-name needs TLS (--tls-cert ...)");
	if (h.mig_listen && (absolute_tls(&h) < 0))
		return tool_fail(EXIT_USAGE, "a --tls-* file path is too long");
	/* Absolute: the daemon runs from "/", and reopens the log there on SIGHUP. */
	if (log && (!*log || tool_absolute(log, log_path, sizeof(log_path)) < 0))
		return tool_fail(EXIT_USAGE, "--log '%s': must be a path of 1 to %d bytes", log,
		                 PATH_MAX - 1);
	if (setup_paths(&h, state, sock, hv, &err) < 0)
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	if (fg && log_path[0] && log_open(log_path, &err) < 0)
		return tool_fail(EXIT_FAIL, "%s", err.msg);
	if (fg)
		return run_daemon(&h, -1);
	if (!strcmp(cmd, "status"))
		return cmd_status(&h, json);
	if (!strcmp(cmd, "stop"))
		return cmd_stop(&h);
	if (!strcmp(cmd, "restart") && (rc = cmd_stop(&h)) != 0)
		return rc;
	return cmd_start(&h);
}
