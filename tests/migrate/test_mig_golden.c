/*
 * test_mig_golden.c - the migration wire format does not drift.
 *
 * 1. Every migration control record (mig_proto.h), written with fixed field values, is
 *    byte for byte the golden file golden/mig-records.bin (regenerate it, after a
 *    deliberate format change that bumps MIG_PROTO_VERSION, with HV_STATE_REGEN=1).
 * 2. golden/memtouch-1ch.mig, a migration of a small memtouch VM captured from a real
 *    hvmigrate send (the main connection's and one page channel's bytes, in
 *    fuzz_migrate's input layout), replayed through real sockets into incoming_run,
 *    still produces a running VM: a receiver of today accepts yesterday's sender.
 * 3. Each of the records parses back into what was written, and a record of one type
 *    read as another is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/vm.h"
#include "migrate/chan.h"
#include "migrate/incoming.h"
#include "migrate/mig_proto.h"

static const char *golden_dir;

static void fixed_records(struct mig_msg *m, int *n)
{
	int i = 0;

	memset(m, 0, sizeof(*m) * 12);
	m[i].type = REC_MIG_HELLO;
	m[i].id[0] = 0x0123456789abcdefull;
	m[i].id[1] = 0xfedcba9876543210ull;
	m[i].channels = 2;
	m[i++].ram_size = 128ull << 20;
	m[i] = m[0];
	m[i].type = REC_MIG_CHANNEL;
	m[i].channels = 0; /* HELLO's field, not CHANNEL's */
	m[i].ram_size = 0;
	m[i++].index = 1;
	m[i++].type = REC_MIG_ACCEPT;
	m[i].type = REC_MIG_ROUND;
	m[i].gen = 3;
	m[i++].value = 4096 * 17;
	m[i].type = REC_MIG_SWITCHOVER;
	m[i].gen = 4;
	m[i].value = 1;
	m[i].channels = 2;
	m[i].pages[0] = 1000;
	m[i++].pages[1] = 999;
	m[i++].type = REC_MIG_READY;
	m[i++].type = REC_MIG_GO;
	m[i].type = REC_MIG_RUNNING;
	m[i++].value = 250;
	m[i].type = REC_MIG_ERROR;
	snprintf(m[i++].text, sizeof(m[0].text), "destination: out of memory");
	m[i].type = REC_MIG_ROUND; /* with catching up */
	m[i].gen = 5;
	m[i].value = 4096;
	m[i++].sync = 1;
	m[i].type = REC_MIG_SYNC;
	m[i++].gen = 5;
	m[i].type = REC_MIG_SYNCED;
	m[i++].gen = 5;
	*n = i;
}

static void test_records_golden(void **state)
{
	struct mig_msg m[12], back;
	struct stream_mem mb = {0};
	struct stream s;
	struct hv_error err = {0};
	char path[512];
	int n;

	fixed_records(m, &n);
	assert_int_equal(stream_open_write_io(&s, &stream_mem_io, &mb, "golden", &err), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(mig_msg_write(&s, &m[i], &err), 0);
	assert_int_equal(stream_write_end(&s, &err), 0);
	stream_close(&s);

	snprintf(path, sizeof(path), "%s/mig-records.bin", golden_dir);
	if (getenv("HV_STATE_REGEN")) {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(mb.p, 1, mb.len, f), mb.len);
		fclose(f);
	} else {
		FILE *f = fopen(path, "rb");
		uint8_t *g = malloc(mb.len + 1);
		size_t got;
		assert_non_null(f);
		got = fread(g, 1, mb.len + 1, f);
		fclose(f);
		if (got != mb.len || memcmp(g, mb.p, mb.len))
			fail_msg("the migration records differ from %s (%zu vs %zu bytes): a wire "
			         "format change must bump MIG_PROTO_VERSION; regenerate with "
			         "HV_STATE_REGEN=1",
			         path, mb.len, got);
		free(g);
	}

	/* Read back: every record parses to what was written. */
	assert_int_equal(stream_open_read_io(&s, &stream_mem_io, &mb, "golden", &err), 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(mig_msg_expect(&s, m[i].type, &back, &err), 0);
		assert_int_equal(back.type, m[i].type);
		assert_memory_equal(back.id, m[i].id, sizeof(back.id));
		assert_int_equal(back.channels, m[i].channels);
		assert_int_equal(back.gen, m[i].gen);
		assert_int_equal(back.value, m[i].value);
		assert_int_equal(back.ram_size, m[i].ram_size);
		assert_int_equal(back.index, m[i].index);
		assert_int_equal(back.sync, m[i].sync);
		assert_string_equal(back.text, m[i].text);
	}
	stream_close(&s);

	/* Out of order: READY where GO is expected is an error naming both. */
	mb.rpos = 0;
	assert_int_equal(stream_open_read_io(&s, &stream_mem_io, &mb, "golden", &err), 0);
	assert_int_equal(mig_msg_expect(&s, REC_MIG_GO, &back, &err), -1);
	assert_non_null(strstr(err.msg, "MIG_HELLO"));
	assert_non_null(strstr(err.msg, "MIG_GO"));
	stream_close(&s);
	stream_mem_free(&mb);
}

/* fuzz_migrate's input layout: u8 n-1, then n times u32 length + bytes. */
struct replay {
	struct chan_addr addr;
	uint8_t *data;
	size_t size;
};

static void *replay_main(void *arg)
{
	struct replay *r = arg;
	struct chan *c[4] = {0};
	unsigned n = r->data[0] % 4 + 1;
	size_t pos = 1;

	for (unsigned i = 0; i < n && pos + 4 <= r->size; i++) {
		uint32_t len;
		memcpy(&len, r->data + pos, 4);
		pos += 4;
		c[i] = chan_connect(&r->addr, NULL, 5000, NULL, NULL);
		if (!c[i] || len > r->size - pos)
			break;
		chan_write(c[i], r->data + pos, len, NULL);
		pos += len;
	}
	/* Hold the connections until the receiver is done reading them. */
	for (unsigned i = 0; i < n; i++)
		if (c[i]) {
			uint8_t b;
			chan_set_timeout(c[i], 10000);
			while (chan_read(c[i], &b, 1, NULL, NULL) == 0)
				;
			chan_close(c[i]);
		}
	return NULL;
}

static void test_captured_migration_replays(void **state)
{
	struct replay r = {0};
	struct chan_listener *l;
	struct hv_error err = {0};
	struct incoming_stats st;
	struct vm vm;
	char path[512], addr[128];
	pthread_t t;
	FILE *f;
	long sz;
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

	snprintf(path, sizeof(path), "%s/memtouch-1ch.mig", golden_dir);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	rewind(f);
	r.data = malloc((size_t)sz);
	r.size = fread(r.data, 1, (size_t)sz, f);
	fclose(f);
	snprintf(addr, sizeof(addr), "unix:/tmp/hv-mig-golden.%d.sock", (int)getpid());
	assert_int_equal(chan_addr_parse(addr, &r.addr, &err), 0);
	l = chan_listen(&r.addr, &err);
	assert_non_null(l);
	assert_int_equal(pthread_create(&t, NULL, replay_main, &r), 0);
	if (incoming_run(l, NULL, 5000, true, &vm, devnull, -1, &st, &err) < 0)
		fail_msg("the captured migration no longer loads: %s", err.msg);
	assert_string_equal(vm.cfg.name, "memtouch.elf");
	assert_int_equal(st.channels, 1);
	assert_true(st.pages > 0);
	vm_shutdown(&vm, VM_EXIT_REQUESTED, 0, "test");
	vm_wait(&vm);
	vm_destroy(&vm);
	pthread_join(t, NULL);
	chan_listener_close(l);
	close(devnull);
	free(r.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records_golden),
	    cmocka_unit_test(test_captured_migration_replays),
	};

	golden_dir = getenv("HV_MIG_GOLDEN");
	if (!golden_dir) {
		fprintf(stderr, "test_mig_golden: set HV_MIG_GOLDEN to tests/migrate/golden\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
