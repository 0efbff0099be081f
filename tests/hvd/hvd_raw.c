/*
 * hvd_raw.c - what hvctl never does to hvd, for tests/hvd/hvd.sh.
 *
 *   hvd-raw SOCK partial TEXT     send TEXT with no newline, then hang up at once
 *   hvd-raw SOCK subscribe SECS   subscribe, then print every line for SECS seconds
 *   hvd-raw SOCK burst LINE...    send every LINE in one write (so hvd reads them in one
 *                                 go, as concurrent requests), then print the lines
 *                                 received until each has its reply (30 s at most)
 *
 * (Whole hostile lines go through tests/control/ctl-raw, which works on any socket of
 * this newline-delimited JSON family.)
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];

static int burst(int fd, int n, char **lines)
{
	size_t len = 0, total = 0;
	int replies = 0;
	char *out;

	for (int i = 0; i < n; i++)
		total += strlen(lines[i]) + 1;
	out = malloc(total);
	if (!out)
		return 1;
	for (int i = 0; i < n; i++) {
		memcpy(out + len, lines[i], strlen(lines[i]));
		len += strlen(lines[i]);
		out[len++] = '\n';
	}
	(void)!send(fd, out, len, MSG_NOSIGNAL);
	free(out);
	len = 0;
	for (time_t end = time(NULL) + 30; replies < n && time(NULL) < end;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char *nl;
		ssize_t r;

		while ((nl = memchr(buf, '\n', len))) {
			size_t l = (size_t)(nl - buf) + 1;
			fwrite(buf, 1, l, stdout);
			replies += !strncmp(buf, "{\"id\"", 5);
			memmove(buf, buf + l, len - l);
			len -= l;
		}
		if (replies >= n || poll(&p, 1, 100) <= 0)
			continue;
		r = recv(fd, buf + len, sizeof(buf) - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	return replies == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	static const char sub[] = "{\"id\":1,\"execute\":\"subscribe\"}\n";
	int fd;

	if (argc < 4 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr,
		        "usage: hvd-raw SOCK partial TEXT | subscribe SECS | burst LINE...\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror(argv[1]);
		return 1;
	}
	if (!strcmp(argv[2], "partial")) {
		(void)!send(fd, argv[3], strlen(argv[3]), MSG_NOSIGNAL);
		close(fd);
		return 0;
	}
	if (!strcmp(argv[2], "burst"))
		return burst(fd, argc - 3, argv + 3);
	if (strcmp(argv[2], "subscribe"))
		return 2;
	(void)!send(fd, sub, sizeof(sub) - 1, MSG_NOSIGNAL);
	for (time_t end = time(NULL) + atoi(argv[3]); time(NULL) < end;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
		fflush(stdout);
	}
	return 0;
}
