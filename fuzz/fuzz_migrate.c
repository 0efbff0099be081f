/*
 * fuzz_migrate.c - the receiving end of a live migration (migrate/incoming.c) against
 * hostile peers, through real sockets.
 *
 * The input is up to four connections' worth of bytes: u8 n (1..4), then n times a u32
 * length and that many bytes. A thread connects n times to the receiver's Unix socket
 * and sends each connection's bytes (the first is the main connection, the others would
 * be page channels), then hangs up; the receiver runs incoming_run() exactly as
 * `hvmigrate recv` does. Whatever the bytes, it must fail cleanly (or, for a complete
 * migration, start the VM, which is then stopped): no crash, no leak, no hang.
 * The seed corpus holds a real migration of a small memtouch VM (fuzz/corpus/fuzz_migrate).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/vm.h"
#include "migrate/chan.h"
#include "migrate/incoming.h"

#define MAX_CONNS 4

static struct chan_listener *listener;
static struct chan_addr addr;
static int devnull = -1;

struct conn {
	const uint8_t *p;
	size_t n;
};

struct feed {
	struct conn c[MAX_CONNS];
	unsigned n;
};

static void *writer(void *arg)
{
	struct feed *f = arg;
	struct chan *c[MAX_CONNS] = {0};

	for (unsigned i = 0; i < f->n; i++) {
		c[i] = chan_connect(&addr, NULL, 1000, NULL, NULL);
		if (!c[i])
			break;
		chan_set_timeout(c[i], 1000);
		if (f->c[i].n)
			chan_write(c[i], f->c[i].p, f->c[i].n, NULL);
	}
	for (unsigned i = 0; i < f->n; i++)
		if (c[i])
			chan_close(c[i]);
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[64];
	struct hv_error err = {0};

	signal(SIGPIPE, SIG_IGN);
	incoming_timeout_ms = 50;
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "unix:/tmp/fuzz_migrate.%d.sock", (int)getpid());
	if (chan_addr_parse(path, &addr, &err) < 0 || !(listener = chan_listen(&addr, &err))) {
		fprintf(stderr, "fuzz_migrate: %s\n", err.msg);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct feed f = {0};
	struct vm vm;
	struct hv_error err = {0};
	pthread_t t;
	size_t pos = 1;

	if (size < 1)
		return 0;
	f.n = data[0] % MAX_CONNS + 1;
	for (unsigned i = 0; i < f.n; i++) {
		uint32_t len = 0;
		if (size - pos >= 4) {
			memcpy(&len, data + pos, 4);
			pos += 4;
		} else {
			pos = size;
		}
		if (len > size - pos)
			len = (uint32_t)(size - pos);
		f.c[i].p = data + pos;
		f.c[i].n = len;
		pos += len;
	}
	if (pthread_create(&t, NULL, writer, &f))
		return 0;
	if (incoming_run(listener, NULL, 1000, false, &vm, devnull, -1, NULL, &err) == 0) {
		vm_shutdown(&vm, VM_EXIT_REQUESTED, 0, "fuzz");
		vm_wait(&vm);
		vm_destroy(&vm);
	}
	pthread_join(t, NULL);
	return 0;
}
