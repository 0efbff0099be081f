/*
 * conmux.c - the console multiplexer: one thread between the UART's pipes, the log and
 * the console socket's clients (see conmux.h for the contract).
 *
 * The idea that makes it safe for the guest: the thread is the only reader of the output
 * pipe and never blocks on anything but the log, so a vCPU writing THR waits at most for
 * the log file; every client is written with MSG_DONTWAIT, queued for when it cannot take
 * more, and loses what does not fit its queue either. Input flows the other way with
 * back-pressure instead: one buffer of client bytes at a time, and no client is read
 * while the last one's bytes are not all in the input pipe yet.
 *
 * Everything below the thread's loop is touched by the thread only, except what struct
 * conmux marks "under lock" (the hand-over of the listening socket, flush and stop).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "toolstack/conmux.h"
#include "toolstack/jsonl_server.h"

#define CHUNK        16384 /* one read of guest output */
#define CLIENT_QUEUE CONMUX_CLIENT_QUEUE
#define DRAIN_MS     1000 /* how long the last output waits for slow clients at the end */

/*
 * A client is closed once it will neither send more (rd_eof) nor take more (wr_dead, or
 * it hung up): one that sends and hangs up at once still has what it sent read first.
 */
struct client {
	int fd;                  /* -1: a free slot */
	bool rd_eof;             /* it will send no more (EOF or a read error) */
	bool wr_dead;            /* it takes no more output (a send failed: it is gone) */
	bool hup;                /* poll said it hung up */
	unsigned long long lost; /* output bytes it missed since its queue last emptied */
	size_t q_head, q_len;    /* output its socket did not take yet: a ring in q */
	uint8_t q[CLIENT_QUEUE];
};

struct conmux {
	pthread_t thread;
	bool started; /* the thread was created (joined in conmux_stop) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool running;                   /* under lock: the thread has not ended */
	bool stopping;                  /* under lock */
	uint64_t flush_req, flush_done; /* under lock */
	int lfd;                        /* under lock: the listening socket, or -1 */

	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t sock_dev;
	ino_t sock_ino;
	int out_r, out_w; /* guest output: the UART writes out_w; out_r is non-blocking */
	int in_r, in_w;   /* guest input: in_w is non-blocking; the UART reads in_r */
	int wake[2];
	int log_fd;

	/* The thread's own. */
	bool out_eof, log_broken;
	int64_t accept_again_ms; /* after a failed accept (no fds): not before then */
	struct client cl[CONMUX_MAX_CLIENTS];
	uint8_t hist[CONMUX_HISTORY];
	size_t hist_pos, hist_len; /* ring: the next byte goes to hist_pos */
	uint8_t in_buf[4096];
	size_t in_off, in_len; /* client bytes not yet in the input pipe */
};

static void wake(struct conmux *cm)
{
	while (write(cm->wake[1], "x", 1) < 0 && errno == EINTR)
		;
}

/* The log is blocking by contract; a non-blocking one (inherited) is waited for. */
static void log_write(struct conmux *cm, const uint8_t *buf, size_t len)
{
	while (len && !cm->log_broken) {
		ssize_t n = write(cm->log_fd, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = cm->log_fd, .events = POLLOUT};
			poll(&p, 1, 100);
		} else if (n < 0 && errno != EINTR) {
			/* A closed log must not stop the console: the clients still get it. */
			cm->log_broken = true;
		}
	}
}

static void hist_add(struct conmux *cm, const uint8_t *buf, size_t len)
{
	size_t first;

	if (len >= CONMUX_HISTORY) {
		memcpy(cm->hist, buf + len - CONMUX_HISTORY, CONMUX_HISTORY);
		cm->hist_pos = 0;
		cm->hist_len = CONMUX_HISTORY;
		return;
	}
	first = CONMUX_HISTORY - cm->hist_pos < len ? CONMUX_HISTORY - cm->hist_pos : len;
	memcpy(cm->hist + cm->hist_pos, buf, first);
	memcpy(cm->hist, buf + first, len - first);
	cm->hist_pos = (cm->hist_pos + len) % CONMUX_HISTORY;
	cm->hist_len = cm->hist_len + len > CONMUX_HISTORY ? CONMUX_HISTORY : cm->hist_len + len;
}

static void client_close(struct client *c)
{
	close(c->fd);
	c->fd = -1;
}

/* Append what fits of @buf to @c's queue; returns how much did. */
static size_t queue_put(struct client *c, const uint8_t *buf, size_t len)
{
	size_t put = len < CLIENT_QUEUE - c->q_len ? len : CLIENT_QUEUE - c->q_len;

	for (size_t i = 0; i < put; i++)
		c->q[(c->q_head + c->q_len + i) % CLIENT_QUEUE] = buf[i];
	c->q_len += put;
	return put;
}

/*
 * Send @c's queue, then, if it lost output, the note that says how much (queued like any
 * output, so it is whole and in its place: right at the gap). -1 if @c takes no more.
 */
static int client_flush(struct client *c)
{
	char note[128];
	int k;

	for (;;) {
		while (c->q_len) {
			size_t chunk = CLIENT_QUEUE - c->q_head < c->q_len
			                   ? CLIENT_QUEUE - c->q_head
			                   : c->q_len;
			ssize_t n =
			    send(c->fd, c->q + c->q_head, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);

			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return 0;
			if (n < 0) {
				c->wr_dead = true; /* gone (EPIPE, ECONNRESET) */
				c->q_len = 0;
				c->lost = 0;
				return -1;
			}
			c->q_head = (c->q_head + (size_t)n) % CLIENT_QUEUE;
			c->q_len -= (size_t)n;
		}
		if (!c->lost)
			return 0;
		k = snprintf(note, sizeof(note),
		             "\r\n[console: %llu bytes of output lost: this client read too "
		             "slowly]\r\n",
		             c->lost);
		queue_put(c, (const uint8_t *)note, (size_t)k);
		c->lost = 0;
	}
}

/*
 * Give @buf to @c without waiting: sent now, else queued, and what the queue cannot hold
 * is lost to @c and counted (as is all output after that, until the queue has drained
 * and the note about the gap has gone out).
 */
static void client_send(struct client *c, const uint8_t *buf, size_t len)
{
	if (c->wr_dead || client_flush(c) < 0)
		return;
	if (c->lost) {
		c->lost += len;
		return;
	}
	if (!c->q_len) {
		ssize_t n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			c->wr_dead = true;
			return;
		}
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
	}
	c->lost += len - queue_put(c, buf, len);
}

/* One read of guest output, to the log, the history and the clients. 0 when none waits. */
static int output_read(struct conmux *cm)
{
	uint8_t buf[CHUNK];
	ssize_t n = read(cm->out_r, buf, sizeof(buf));

	if (n == 0)
		cm->out_eof = true; /* every writer is gone */
	if (n <= 0)
		return 0;
	log_write(cm, buf, (size_t)n);
	hist_add(cm, buf, (size_t)n);
	for (int i = 0; i < CONMUX_MAX_CLIENTS; i++)
		if (cm->cl[i].fd >= 0)
			client_send(&cm->cl[i], buf, (size_t)n);
	return 1;
}

/* Everything in the output pipe now (nothing may be writing: or we chase it forever). */
static void output_drain(struct conmux *cm)
{
	while (!cm->out_eof && output_read(cm))
		;
}

static void input_flush(struct conmux *cm)
{
	while (cm->in_len) {
		ssize_t n = write(cm->in_w, cm->in_buf + cm->in_off, cm->in_len);

		if (n > 0) {
			cm->in_off += (size_t)n;
			cm->in_len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return; /* the guest reads slower than the clients type: POLLOUT resumes */
		} else {
			cm->in_len = 0; /* cannot happen while we hold the read end: drop */
		}
	}
}

static void client_read(struct conmux *cm, struct client *c)
{
	ssize_t n = read(c->fd, cm->in_buf, sizeof(cm->in_buf));

	if (n > 0) {
		cm->in_off = 0;
		cm->in_len = (size_t)n;
		input_flush(cm);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		c->rd_eof = true; /* it may still read: POLLHUP or a failed send tell */
	}
}

static int64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void client_accept(struct conmux *cm, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	char full[80];
	size_t start;
	int k;

	/* Out of fds or memory, the connection stays queued and the socket readable: wait
	 * 100 ms before the next try, not spin on it. */
	if (fd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		cm->accept_again_ms = mono_ms() + 100;
	if (fd < 0)
		return;
	for (int i = 0; i < CONMUX_MAX_CLIENTS; i++) {
		struct client *c = &cm->cl[i];

		if (c->fd >= 0)
			continue;
		c->fd = fd;
		c->rd_eof = c->wr_dead = c->hup = false;
		c->lost = c->q_head = c->q_len = 0;
		/* The context: what the guest said last, as a terminal would still show it. */
		start = (cm->hist_pos + CONMUX_HISTORY - cm->hist_len) % CONMUX_HISTORY;
		if (start + cm->hist_len <= CONMUX_HISTORY) {
			client_send(c, cm->hist + start, cm->hist_len);
		} else {
			client_send(c, cm->hist + start, CONMUX_HISTORY - start);
			client_send(c, cm->hist, cm->hist_len - (CONMUX_HISTORY - start));
		}
		return;
	}
	k = snprintf(full, sizeof(full), "hv: console: %d clients are attached already\r\n",
	             CONMUX_MAX_CLIENTS);
	if (send(fd, full, (size_t)k, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* it is refused either way */
	}
	close(fd);
}

/*
 * At the end: give the clients up to DRAIN_MS to take what is queued for them (the VM's
 * last words, mostly), so that only one that does not read at all misses them.
 */
static void clients_drain(struct conmux *cm)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p[CONMUX_MAX_CLIENTS];
		int slot[CONMUX_MAX_CLIENTS], n = 0;
		long left;

		for (int i = 0; i < CONMUX_MAX_CLIENTS; i++) {
			struct client *c = &cm->cl[i];

			if (c->fd >= 0 && !c->wr_dead && !c->hup && (c->q_len || c->lost)) {
				slot[n] = i;
				p[n++] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		left =
		    DRAIN_MS - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (!n || left <= 0 || poll(p, (nfds_t)n, (int)left) < 0)
			return;
		for (int k = 0; k < n; k++) {
			if (p[k].revents & POLLOUT)
				client_flush(&cm->cl[slot[k]]);
			if (p[k].revents & (POLLHUP | POLLERR | POLLNVAL))
				cm->cl[slot[k]].hup = true;
		}
	}
}

static void *conmux_thread(void *arg)
{
	struct conmux *cm = arg;
	struct pollfd p[4 + CONMUX_MAX_CLIENTS];
	int slot[4 + CONMUX_MAX_CLIENTS];

	for (;;) {
		int lfd, n = 0, lidx = -1, inidx = -1, wait_ms;
		uint64_t want;
		bool stop;
		char junk[64];

		pthread_mutex_lock(&cm->lock);
		lfd = cm->lfd;
		stop = cm->stopping;
		want = cm->flush_req;
		pthread_mutex_unlock(&cm->lock);
		if (stop || want != cm->flush_done) {
			output_drain(cm);
			if (stop)
				break;
			pthread_mutex_lock(&cm->lock);
			cm->flush_done = want;
			pthread_cond_broadcast(&cm->cond);
			pthread_mutex_unlock(&cm->lock);
		}

		p[n++] = (struct pollfd){.fd = cm->wake[0], .events = POLLIN};
		p[n++] = (struct pollfd){.fd = cm->out_eof ? -1 : cm->out_r, .events = POLLIN};
		wait_ms = -1;
		if (lfd >= 0 && mono_ms() < cm->accept_again_ms)
			wait_ms = (int)(cm->accept_again_ms - mono_ms() + 1);
		else if (lfd >= 0) {
			lidx = n;
			p[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		}
		if (cm->in_len) {
			inidx = n;
			p[n++] = (struct pollfd){.fd = cm->in_w, .events = POLLOUT};
		}
		for (int i = 0; i < CONMUX_MAX_CLIENTS; i++) {
			struct client *c = &cm->cl[i];
			short ev;

			if (c->fd < 0)
				continue;
			/* No reading while earlier input still waits for the guest. */
			ev = (short)((cm->in_len || c->rd_eof ? 0 : POLLIN) |
			             (!c->wr_dead && (c->q_len || c->lost) ? POLLOUT : 0));
			if (!ev && c->hup)
				continue; /* (POLLHUP again and again) until its input can be read
				           */
			slot[n] = i;
			p[n++] = (struct pollfd){.fd = c->fd, .events = ev};
		}
		if (poll(p, (nfds_t)n, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			while (read(cm->wake[0], junk, sizeof(junk)) > 0)
				;
		if (p[1].revents)
			output_read(cm);
		if (inidx >= 0 && p[inidx].revents)
			input_flush(cm);
		for (int k = 0; k < n; k++) {
			struct client *c;

			if (k < 2 || k == lidx || k == inidx || !p[k].revents)
				continue;
			c = &cm->cl[slot[k]];
			if ((p[k].revents & POLLIN) && !cm->in_len) /* (another's input may wait) */
				client_read(cm, c);
			if (p[k].revents & POLLOUT)
				client_flush(c);
			if (p[k].revents & (POLLHUP | POLLERR | POLLNVAL))
				c->hup = true;
			if (c->rd_eof && (c->wr_dead || c->hup))
				client_close(c);
		}
		/* After the clients, so that a slot freed above is not confused with a new one. */
		if (lidx >= 0 && p[lidx].revents)
			client_accept(cm, lfd);
	}
	clients_drain(cm);
	for (int i = 0; i < CONMUX_MAX_CLIENTS; i++)
		if (cm->cl[i].fd >= 0)
			client_close(&cm->cl[i]);
	pthread_mutex_lock(&cm->lock);
	cm->running = false;
	pthread_cond_broadcast(&cm->cond);
	pthread_mutex_unlock(&cm->lock);
	return NULL;
}

int conmux_listen(struct conmux *cm, const char *path, struct hv_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	mode_t old;
	int fd, rc;

	if (cm->path[0])
		return hv_fail(err, EBUSY, "%s: the console is served at %s already", path,
		               cm->path);
	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return hv_fail(err, ENAMETOOLONG,
		               "--console-socket '%s': a socket path must be 1 to %zu bytes", path,
		               sizeof(sa.sun_path) - 1);
	if (jsonl_clear_stale(path, "in use by a running VM's console", err) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hv_fail(err, errno, "%s: socket: %s", path, strerror(errno));
	memcpy(sa.sun_path, path, strlen(path));
	/* 0600 from birth, as the control socket: whoever can type here owns the guest. */
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(path, 0600) < 0 || stat(path, &sb) < 0 || listen(fd, 8) < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	snprintf(cm->path, sizeof(cm->path), "%s", path);
	cm->sock_dev = sb.st_dev;
	cm->sock_ino = sb.st_ino;
	pthread_mutex_lock(&cm->lock);
	cm->lfd = fd;
	pthread_mutex_unlock(&cm->lock);
	wake(cm);
	return 0;
}

static void conmux_free(struct conmux *cm)
{
	struct stat sb;
	int fds[] = {cm->out_r, cm->out_w, cm->in_r, cm->in_w, cm->wake[0], cm->wake[1], cm->lfd};

	/* Remove the socket file only if it is still ours (not replaced by another's). */
	if (cm->path[0] && stat(cm->path, &sb) == 0 && sb.st_dev == cm->sock_dev &&
	    sb.st_ino == cm->sock_ino)
		unlink(cm->path);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	pthread_cond_destroy(&cm->cond);
	pthread_mutex_destroy(&cm->lock);
	free(cm);
}

struct conmux *conmux_start(const char *sock_path, int log_fd, int *guest_out, int *guest_in,
                            struct hv_error *err)
{
	struct conmux *cm = calloc(1, sizeof(*cm));
	int out[2] = {-1, -1}, in[2] = {-1, -1};
	sigset_t all, old;
	int e;

	if (!cm) {
		hv_fail(err, ENOMEM, "console: out of memory");
		return NULL;
	}
	pthread_mutex_init(&cm->lock, NULL);
	pthread_cond_init(&cm->cond, NULL);
	cm->log_fd = log_fd;
	cm->lfd = cm->wake[0] = cm->wake[1] = -1;
	cm->out_r = cm->out_w = cm->in_r = cm->in_w = -1;
	for (int i = 0; i < CONMUX_MAX_CLIENTS; i++)
		cm->cl[i].fd = -1;
	/* The UART's ends stay blocking: a full pipe makes a vCPU wait, never lose a byte. */
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0 ||
	    pipe2(cm->wake, O_CLOEXEC | O_NONBLOCK) < 0 || fcntl(out[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(in[1], F_SETFL, O_NONBLOCK) < 0) {
		hv_fail(err, errno, "console: pipe: %s", strerror(errno));
		goto fail;
	}
	cm->out_r = out[0];
	cm->out_w = out[1];
	cm->in_r = in[0];
	cm->in_w = in[1];
	out[0] = out[1] = in[0] = in[1] = -1;
	if (sock_path && conmux_listen(cm, sock_path, err) < 0)
		goto fail;
	cm->running = true;
	/* No signal for this thread: hv's own signal handling stays where it is. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&cm->thread, NULL, conmux_thread, cm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		hv_fail(err, e, "console: thread: %s", strerror(e));
		goto fail;
	}
	cm->started = true;
	*guest_out = cm->out_w;
	*guest_in = cm->in_r;
	return cm;
fail:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (in[i] >= 0)
			close(in[i]);
	}
	conmux_free(cm);
	return NULL;
}

void conmux_flush(struct conmux *cm)
{
	uint64_t want;

	if (!cm)
		return;
	pthread_mutex_lock(&cm->lock);
	want = ++cm->flush_req;
	pthread_mutex_unlock(&cm->lock);
	wake(cm);
	pthread_mutex_lock(&cm->lock);
	while (cm->running && cm->flush_done < want)
		pthread_cond_wait(&cm->cond, &cm->lock);
	pthread_mutex_unlock(&cm->lock);
}

void conmux_stop(struct conmux *cm)
{
	if (!cm)
		return;
	if (cm->started) {
		pthread_mutex_lock(&cm->lock);
		cm->stopping = true;
		pthread_mutex_unlock(&cm->lock);
		wake(cm);
		pthread_join(cm->thread, NULL);
	}
	conmux_free(cm);
}
