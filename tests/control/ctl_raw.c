/*
 * ctl_raw.c - a raw control-socket client for tests: sends lines exactly as given.
 *
 *   ctl-raw SOCK [LINE | --long=N]...
 *
 * Prints the greeting, then for each argument sends it as one line (--long=N sends N
 * bytes of 'x') and prints every line received up to and including the next one that is
 * not an event. Finally prints "EOF" if hv has closed the connection within 500 ms,
 * "OPEN" otherwise. hvctl cannot do this: it only ever sends well-formed requests.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char buf[1 << 20];
static size_t len;

/* Print one received line: 1 for a line, 0 on timeout, -1 at EOF. */
static int read_line(int fd, int timeout_ms, int *is_event)
{
	for (;;) {
		char *nl = memchr(buf, '\n', len);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - buf);
			printf("%.*s\n", (int)l, buf);
			*is_event = !strncmp(buf, "{\"event\"", 8);
			memmove(buf, nl + 1, len - l - 1);
			len -= l + 1;
			return 1;
		}
		if (len == sizeof(buf) || poll(&p, 1, timeout_ms) <= 0)
			return 0;
		n = recv(fd, buf + len, sizeof(buf) - len, 0);
		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ev, rc;

	if (argc < 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: ctl-raw SOCK [LINE | --long=N]...\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror(argv[1]);
		return 1;
	}
	if (read_line(fd, 5000, &ev) != 1)
		return 1;
	for (int i = 2; i < argc; i++) {
		if (!strncmp(argv[i], "--long=", 7)) {
			size_t n = strtoul(argv[i] + 7, NULL, 10);
			char *x = malloc(n + 1);
			memset(x, 'x', n);
			x[n] = '\n';
			(void)!send(fd, x, n + 1, MSG_NOSIGNAL);
			free(x);
		} else {
			(void)!send(fd, argv[i], strlen(argv[i]), MSG_NOSIGNAL);
			(void)!send(fd, "\n", 1, MSG_NOSIGNAL);
		}
		do
			rc = read_line(fd, 30000, &ev);
		while (rc == 1 && ev);
		if (rc != 1)
			break;
	}
	while ((rc = read_line(fd, 500, &ev)) == 1)
		;
	puts(rc < 0 ? "EOF" : "OPEN");
	return 0;
}
