/*
 * hvctl_console.c - `hvctl console NAME`: the terminal on a domain's serial console.
 *
 * hvd only says where the console is (its `info` reply's console_socket); the bytes then
 * flow straight between this process and the VM's hv process (toolstack/conmux.h),
 * which first replays the last 16 KiB of output so the user sees where the guest is.
 * Ctrl-] (0x1d), as in telnet, virsh console and xl console, detaches and is never sent
 * to the guest.
 *
 * A terminal is put in raw mode, so every other key (Ctrl-C included) goes to the guest,
 * and is restored on every way out: detach, the VM's end, an error, SIGTERM, SIGHUP,
 * SIGINT or SIGQUIT. Those signals are blocked except inside ppoll(), so they can only
 * arrive where the loop acts on them. Only SIGKILL leaves the terminal raw (`reset`).
 *
 * Standard input that is not a terminal (a pipe, a file, a test's fifo) may end: hvctl
 * then stops reading it but shows the output until it has been quiet for LINGER_MS (at
 * most LINGER_MAX_MS after the end), so `printf 'ls\n' | hvctl console web1` shows the
 * answer and returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "toolstack/hvctl_console.h"
#include "toolstack/hvdconn.h"
#include "toolstack/tool.h"

#define EXIT_FAIL     1
#define EXIT_NOHVD    3
#define ESCAPE        0x1d /* Ctrl-] */
#define LINGER_MS     1000
#define LINGER_MAX_MS 10000

enum end { END_DETACH, END_INPUT, END_CLOSED, END_SIGNAL, END_ERROR };

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* Ask hvd for @name's console socket, into @path. 0, or the exit status (said why). */
static int find_console(const char *sock, const char *name, char *path, size_t cap)
{
	struct hv_error e = {0};
	struct ctlconn c;
	json_t *args, *msg, *ret, *err;
	const char *p;
	int rc = 0;

	if (hvdconn_open(&c, sock, 10000, &e) < 0) {
		ctlconn_close(&c);
		return tool_fail(EXIT_NOHVD, "%s (is hvd running? see 'hvd status')", e.msg);
	}
	args = json_pack("{s:s}", "name", name);
	msg = args ? ctlconn_call(&c, 1, "info", args, &e) : NULL;
	ctlconn_close(&c);
	if (!args)
		return tool_fail(EXIT_FAIL,
		                 "console: cannot build the request (bad UTF-8 in a name?)");
	json_decref(args);
	if (!msg)
		return tool_fail(EXIT_FAIL, "console: %s", e.msg);
	err = json_object_get(msg, "error");
	ret = json_object_get(msg, "return");
	p = json_string_value(json_object_get(ret, "console_socket"));
	if (err)
		rc = tool_fail(EXIT_FAIL, "console: %s",
		               json_string_value(json_object_get(err, "desc")) ?: "failed");
	else if (!p)
		rc = tool_fail(EXIT_FAIL, "console: %s: not running (the domain is %s)", name,
		               json_string_value(json_object_get(ret, "state")) ?: "?");
	else if (snprintf(path, cap, "%s", p) >= (int)cap)
		rc = tool_fail(EXIT_FAIL, "console: %s: %s: not a socket path", name, p);
	json_decref(msg);
	return rc;
}

static int connect_console(const char *name, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(sa.sun_path, path, strlen(path));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		tool_fail(EXIT_FAIL, "console: %s: %s: %s", name, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* All of @buf to stdout, which a terminal or a pipe may make wait. 0 or -1. */
static int out_all(const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
			poll(&p, 1, 100);
		} else if (n < 0 && errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* Send what the socket takes of @buf[*off, *off + *len) now. -1 when it is gone. */
static int send_some(int s, const char *buf, size_t *off, size_t *len)
{
	ssize_t n = send(s, buf + *off, *len, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	*off += (size_t)n;
	*len -= (size_t)n;
	return 0;
}

/*
 * The copy loop. Typed bytes wait in @in until the socket takes them, and stdin is not
 * read meanwhile (the guest may read slowly; nothing is dropped). Returns how it ended.
 */
static enum end pump(int s, const sigset_t *run_mask)
{
	char in[4096], out[16384];
	size_t off = 0, len = 0;
	bool in_eof = false;
	long long eof_at = 0, quiet_since = 0;

	for (;;) {
		struct pollfd p[2] = {{.fd = in_eof || len ? -1 : STDIN_FILENO, .events = POLLIN},
		                      {.fd = s, .events = (short)(POLLIN | (len ? POLLOUT : 0))}};
		struct timespec ts, *tp = NULL;
		ssize_t n;

		if (in_eof) {
			long long now = now_ms(), left = quiet_since + LINGER_MS - now;

			if (eof_at + LINGER_MAX_MS - now < left)
				left = eof_at + LINGER_MAX_MS - now;
			if (left <= 0)
				return END_INPUT;
			ts = (struct timespec){.tv_sec = left / 1000,
			                       .tv_nsec = left % 1000 * 1000000};
			tp = &ts;
		}
		n = ppoll(p, 2, tp, run_mask);
		if (got_signal)
			return END_SIGNAL;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			tool_fail(EXIT_FAIL, "console: poll: %s", strerror(errno));
			return END_ERROR;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			/* (ECONNRESET too: hv closed with our input unread) */
			n = read(s, out, sizeof(out));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return END_CLOSED;
			if (n > 0 && out_all(out, (size_t)n) < 0) {
				tool_fail(EXIT_FAIL, "console: standard output: %s",
				          strerror(errno));
				return END_ERROR;
			}
			quiet_since = now_ms();
		}
		if (len && (p[1].revents & POLLOUT) && send_some(s, in, &off, &len) < 0)
			return END_CLOSED;
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) /* (NVAL: closed) */
			continue;
		n = read(STDIN_FILENO, in, sizeof(in));
		if (n > 0) {
			char *esc = memchr(in, ESCAPE, (size_t)n);

			off = 0;
			len = esc ? (size_t)(esc - in) : (size_t)n;
			if (send_some(s, in, &off, &len) < 0)
				return END_CLOSED;
			if (esc)
				return END_DETACH; /* what the socket did not take yet is dropped */
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			in_eof = true; /* (EIO: the terminal hung up; SIGHUP follows) */
			eof_at = quiet_since = now_ms();
		}
	}
}

int hvctl_console(const char *sock, const char *name)
{
	static const int sigs[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT};
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sigaction sa = {.sa_handler = on_signal};
	struct termios saved, raw;
	sigset_t block, run_mask;
	bool tty = false;
	enum end how;
	int s, rc;

	/* A closed stdin would be taken by the console socket itself: make it an empty one. */
	if (fcntl(STDIN_FILENO, F_GETFD) < 0 && errno == EBADF &&
	    open("/dev/null", O_RDONLY) != STDIN_FILENO)
		return tool_fail(EXIT_FAIL, "console: /dev/null: %s", strerror(errno));
	rc = find_console(sock, name, path, sizeof(path));
	if (rc)
		return rc;
	s = connect_console(name, path);
	if (s < 0)
		return EXIT_FAIL;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaddset(&block, sigs[i]);
		sigaction(sigs[i], &sa, NULL);
	}
	sigprocmask(SIG_BLOCK, &block, &run_mask);
	fprintf(stderr, "Connected to domain %s (escape character is ^])\n", name);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		cfmakeraw(&raw);
		tty = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}

	how = pump(s, &run_mask);

	if (tty)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
	close(s);
	if (tty && how != END_ERROR)
		fputc('\n', stderr); /* the guest's cursor may be mid-line */
	switch (how) {
	case END_DETACH: fprintf(stderr, "Detached from domain %s\n", name); return 0;
	case END_INPUT: fprintf(stderr, "Detached from domain %s (end of input)\n", name); return 0;
	case END_CLOSED:
		tool_fail(0, "console: %s: the console closed: the VM has ended", name);
		return 0;
	case END_SIGNAL:
		fprintf(stderr, "Detached from domain %s (SIG%s)\n", name,
		        sigabbrev_np(got_signal) ?: "?");
		return 128 + got_signal;
	default: return EXIT_FAIL;
	}
}
