/*
 * test_stream.c - the state stream as a user meets it: golden files from earlier versions
 * still restore, optional records are skipped, and hostile input of every kind (truncated,
 * corrupted, mis-sized, out-of-range, duplicated, from the future, unterminated) is refused
 * with one line naming the record and offset, never a crash. Save files are atomic.
 *
 * Usage: test-state-stream GUEST_DIR GOLDEN_DIR   (HV_STATE_REGEN=1 rewrites the golden files)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/state_io.h"
#include "migrate/crc32c.h"
#include "migrate/pages.h"
#include "migrate/savefile.h"
#include "migrate/stream.h"
#include "tests/state/tvm.h"

/* The golden VM: memtouch in 4 MiB, saved at a fixed instruction mid-run. */
#define GOLD_RAM  (4ULL << 20)
#define GOLD_ARGS "start=2M end=3M passes=100"
#define GOLD_AT   50000
/*
 * Golden files, oldest first. Every one must restore and run; this build must write the
 * newest byte for byte (HV_STATE_REGEN=1 writes that one). v1: before the i8042 record;
 * v2: with it. The prefix counts what a build writes, not the stream's format version.
 */
static const char *const gold_files[] = {"v1-memtouch.hvs", "v2-memtouch.hvs"};
#define NGOLD    (sizeof(gold_files) / sizeof(gold_files[0]))
#define GOLD_NEW gold_files[NGOLD - 1]

static const char *guest_dir, *golden_dir;
static char tmpdir[] = "/tmp/hv-state-stream-XXXXXX";
static uint8_t *base; /* a save file of the golden VM, made by this build */
static size_t base_len;

static char *tpath(const char *name)
{
	static char b[4][512];
	static int next;
	char *p = b[next++ % 4];
	snprintf(p, 512, "%s/%s", tmpdir, name);
	return p;
}

/* ---- records of a stream, to edit and re-emit ---- */

struct rec {
	uint32_t type;
	uint32_t len;
	uint8_t *body;
};

static struct rec recs[4096];
static size_t nrecs;
static uint64_t rec_off[4096]; /* offsets in base */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void parse_base(void)
{
	size_t off = STREAM_HDR_SIZE;

	nrecs = 0;
	while (off < base_len) {
		struct rec *r = &recs[nrecs];
		assert_true(nrecs < 4096);
		rec_off[nrecs] = off;
		r->type = get32(base + off);
		r->len = get32(base + off + 4);
		r->body = base + off + STREAM_REC_HDR;
		off += STREAM_REC_HDR + ((r->len + 7u) & ~7u);
		nrecs++;
	}
	assert_int_equal(off, base_len);
	assert_int_equal(recs[nrecs - 1].type, REC_END);
}

/* Write records @r[0..n) as a stream (fresh CRCs) to @path. */
static void emit(const char *path, const struct rec *r, size_t n)
{
	struct stream s;
	struct hv_error err = {0};
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(stream_open_write(&s, fd, path, &err), 0);
	for (size_t i = 0; i < n; i++) {
		const void *parts[1] = {r[i].body};
		size_t lens[1] = {r[i].len};
		assert_int_equal(stream_write_record(&s, r[i].type, parts, lens, 1, &err), 0);
	}
	assert_int_equal(stream_flush(&s, &err), 0);
	stream_close(&s);
	close(fd);
}

static size_t find_rec(uint32_t type, size_t from)
{
	for (size_t i = from; i < nrecs; i++)
		if (recs[i].type == type)
			return i;
	fail_msg("no record of type %u", type);
	return 0;
}

/* The DEVICE record of device @name. */
static size_t find_device(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].type == REC_DEVICE && recs[i].len > 8 + n &&
		    !memcmp(recs[i].body + 1 + 6 + 4, name, n) && get32(recs[i].body + 1 + 6) == n)
			return i;
	fail_msg("no DEVICE record for %s", name);
	return 0;
}

/* ---- loading ---- */

/* Load @path; returns 0 on success (the VM restored, then freed), or -1 with @msg. */
static int load(const char *path, char *msg, size_t msgsz)
{
	struct vm *vm = tvm_restore(path, -1, msg, msgsz);

	if (!vm)
		return -1;
	tvm_free(vm);
	return 0;
}

/* @path must fail to load with one line containing every one of the strings given. */
static void expect_fail(const char *path, const char *what, ...)
{
	char msg[HV_ERROR_MSG];
	va_list ap;
	const char *s;

	if (load(path, msg, sizeof(msg)) == 0)
		fail_msg("%s: loaded, expected an error", what);
	if (strchr(msg, '\n') || !strstr(msg, path))
		fail_msg("%s: error is not one line naming the file: %s", what, msg);
	va_start(ap, what);
	while ((s = va_arg(ap, const char *)))
		if (!strstr(msg, s))
			fail_msg("%s: error lacks '%s': %s", what, s, msg);
	va_end(ap);
}

static void write_variant(const char *path, const uint8_t *p, size_t len)
{
	tvm_write_file(path, p, len);
}

/* ---- golden ---- */

static void make_base(const char *path)
{
	int fd = open("/dev/null", O_WRONLY);
	struct vm *vm;
	struct hv_error err = {0};
	char elf[512];

	snprintf(elf, sizeof(elf), "%s/memtouch.elf", guest_dir);
	vm = tvm_boot(elf, GOLD_ARGS, GOLD_RAM, true, fd);
	assert_int_equal(vm_run_until(vm, GOLD_AT, &err), 0);
	if (savefile_write(vm, path, &err) < 0)
		fail_msg("save: %s", err.msg);
	tvm_free(vm);
	close(fd);
}

/* A golden file from an earlier version restores and runs memtouch to its clean end. */
static void golden_restores(const char *file)
{
	char path[600], msg[HV_ERROR_MSG];
	struct x86_state *s = calloc(1, sizeof(*s));
	struct hv_error err = {0};
	int fd = open(tpath("golden-console"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct vm *vm;
	size_t len;
	char *con;

	snprintf(path, sizeof(path), "%s/%s", golden_dir, file);
	vm = tvm_restore(path, fd, msg, sizeof(msg));
	if (!vm)
		fail_msg("golden %s: %s", path, msg);
	assert_int_equal(vm->nvcpus, 1);
	assert_true(vm->cfg.deterministic);
	assert_string_equal(vm->cfg.cmdline, GOLD_ARGS);
	assert_int_equal(vm_get_state(vm, 0, s, &err), 0);
	assert_int_equal(s->icount, GOLD_AT);
	assert_int_equal(vm_start(vm, &err), 0);
	assert_int_equal(vm_wait(vm), 0);
	tvm_free(vm);
	close(fd);
	con = (char *)tvm_read_file(tpath("golden-console"), &len);
	con[len] = 0;
	if (strstr(con, "CORRUPT") || !strstr(con, "memtouch done passes=100"))
		fail_msg("golden %s run console:\n%s", path, con);
	free(con);
	free(s);
}

static void test_golden_restores(void **state)
{
	for (size_t i = 0; i < NGOLD; i++)
		golden_restores(gold_files[i]);
}

/* This build writes the newest golden file byte for byte: the format has not drifted. */
static void test_golden_unchanged(void **state)
{
	char path[600];
	size_t len;
	uint8_t *g;

	snprintf(path, sizeof(path), "%s/%s", golden_dir, GOLD_NEW);
	g = tvm_read_file(path, &len);
	if (len != base_len || memcmp(g, base, len))
		fail_msg("this build's save of the golden VM differs from %s: a format change "
		         "needs a new version and a new golden file (old ones must still load)",
		         path);
	free(g);
}

/* ---- optional and mandatory unknown records ---- */

static void test_unknown_optional_skipped(void **state)
{
	static uint8_t junk[] = "a record from a newer writer";
	struct rec r[4100];
	char msg[HV_ERROR_MSG];

	size_t n = 0;

	r[n++] = recs[0];
	r[n++] = (struct rec){0x80000077u, sizeof(junk), junk};
	for (size_t i = 1; i + 1 < nrecs; i++)
		r[n++] = recs[i];
	r[n++] = (struct rec){0x80000078u, 0, NULL};
	r[n++] = recs[nrecs - 1];
	emit(tpath("opt.hvs"), r, n);
	if (load(tpath("opt.hvs"), msg, sizeof(msg)) < 0)
		fail_msg("unknown optional records were not skipped: %s", msg);
}

static void test_unknown_mandatory_fails(void **state)
{
	static uint8_t junk[8];
	struct rec r[4100];
	char off[32];

	memcpy(r, recs, sizeof(r[0]) * 2);
	r[2] = (struct rec){0x77, sizeof(junk), junk};
	memcpy(r + 3, recs + 2, sizeof(r[0]) * (nrecs - 2));
	emit(tpath("mand.hvs"), r, nrecs + 1);
	snprintf(off, sizeof(off), "offset %llu", (unsigned long long)rec_off[2]);
	expect_fail(tpath("mand.hvs"), "unknown mandatory", "type 0x00000077", off,
	            "unknown mandatory record", NULL);
}

/* ---- truncation, corruption ---- */

static void test_truncated_everywhere(void **state)
{
	char p[600];

	snprintf(p, sizeof(p), "%s", tpath("trunc.hvs"));
	for (size_t i = 0; i < nrecs; i++) {
		/* at the boundary, inside the header, inside the body */
		size_t cuts[3] = {rec_off[i], rec_off[i] + 9, rec_off[i] + 16 + recs[i].len / 2};
		for (int k = 0; k < 3; k++) {
			if (cuts[k] >= base_len || (k == 2 && recs[i].len == 0))
				continue;
			write_variant(p, base, cuts[k]);
			expect_fail(p, "truncated", "offset", NULL);
		}
	}
	for (size_t cut = 0; cut < STREAM_HDR_SIZE; cut += 5) {
		write_variant(p, base, cut);
		expect_fail(p, "truncated header", "header", NULL);
	}
	write_variant(p, base, base_len - 16); /* END missing */
	expect_fail(p, "missing END", "without END", NULL);
}

static void test_flipped_bits(void **state)
{
	uint8_t *b = malloc(base_len);
	char p[600];
	size_t tried = 0;

	snprintf(p, sizeof(p), "%s", tpath("flip.hvs"));
	for (size_t pos = 0; pos < base_len; pos++) {
		bool hdr = pos < STREAM_HDR_SIZE;
		for (size_t i = 0; i < nrecs && !hdr; i++)
			hdr = pos >= rec_off[i] && pos < rec_off[i] + STREAM_REC_HDR;
		if (!hdr && pos % 13)
			continue;
		memcpy(b, base, base_len);
		b[pos] ^= (uint8_t)(1u << (pos % 8));
		write_variant(p, b, base_len);
		expect_fail(p, "flipped bit", NULL);
		tried++;
	}
	assert_true(tried > 100);
	free(b);
}

static void test_bad_lengths(void **state)
{
	uint8_t *b = malloc(base_len);
	char p[600];
	size_t v = find_rec(REC_VCPU, 0);

	snprintf(p, sizeof(p), "%s", tpath("len.hvs"));
	memcpy(b, base, base_len);
	put32(b + rec_off[v] + 4, STREAM_MAX_RECORD + 1);
	write_variant(p, b, base_len);
	expect_fail(p, "length over limit", "record VCPU", "over the limit", NULL);
	put32(b + rec_off[v] + 4, 0xffffffffu);
	write_variant(p, b, base_len);
	expect_fail(p, "length ~0", "over the limit", NULL);
	put32(b + rec_off[v] + 4, recs[v].len - 8); /* shorter: CRC and framing break */
	write_variant(p, b, base_len);
	expect_fail(p, "length short", "record VCPU", NULL);
	free(b);
}

static void test_future_version(void **state)
{
	uint8_t *b = malloc(base_len);
	char p[600];

	snprintf(p, sizeof(p), "%s", tpath("future.hvs"));
	memcpy(b, base, base_len);
	put32(b + 8, STREAM_VERSION + 1);
	put32(b + 20, crc32c(0, b, 20));
	write_variant(p, b, base_len);
	expect_fail(p, "stream version", "version 2", "newer", NULL);
	free(b);
}

/* ---- records that frame correctly but say wrong things ---- */

/* A tagged-field body from a list of (name, size, value) fields. */
static uint8_t *body_of(struct state_io *io, const char *dev, uint32_t version)
{
	struct hv_error err;

	state_io_save_init(io, "test", &err);
	if (dev)
		STATE_STR(io, "device", (char *)dev, strlen(dev) + 1);
	STATE_FIELD(io, "version", &version);
	return io->buf;
}

static void replace_and_expect(size_t idx, struct rec nr, const char *what, const char *want)
{
	struct rec r[4100];
	char off[32];

	memcpy(r, recs, sizeof(r[0]) * nrecs);
	r[idx] = nr;
	emit(tpath("edit.hvs"), r, nrecs);
	snprintf(off, sizeof(off), "offset %llu", (unsigned long long)rec_off[idx]);
	expect_fail(tpath("edit.hvs"), what, want, off, NULL);
}

static void test_device_versions_and_fields(void **state)
{
	size_t d = find_rec(REC_DEVICE, 0);
	struct state_io io;
	uint8_t rx_len = 17;

	body_of(&io, "uart0", 2);
	replace_and_expect(d, (struct rec){REC_DEVICE, (uint32_t)io.len, io.buf}, "device version",
	                   "version 2 is newer");
	state_io_free(&io);

	body_of(&io, "virtio-gpu", 1);
	replace_and_expect(d, (struct rec){REC_DEVICE, (uint32_t)io.len, io.buf}, "unknown device",
	                   "unknown device 'virtio-gpu'");
	state_io_free(&io);

	body_of(&io, "uart0", 1);
	replace_and_expect(d, (struct rec){REC_DEVICE, (uint32_t)io.len, io.buf}, "missing field",
	                   "field 'ier' missing");
	state_io_free(&io);

	/* A UART whose FIFO length is impossible: the invariant check catches it. */
	{
		struct rec r = recs[d];
		uint8_t *copy = malloc(r.len);
		memcpy(copy, r.body, r.len);
		for (size_t i = 0; i + 8 < r.len; i++)
			if (copy[i] == 6 && !memcmp(copy + i + 1, "rx_len", 6)) {
				copy[i + 11] = rx_len;
				break;
			}
		if (get32(r.body) == 0) /* never true; keeps the copy obviously used */
			abort();
		replace_and_expect(d, (struct rec){REC_DEVICE, r.len, copy}, "uart invariant",
		                   "invariant violated");
		free(copy);
	}
}

static void test_duplicates_and_missing(void **state)
{
	struct rec r[4100];
	const uint32_t types[] = {REC_VM_CONFIG, REC_VCPU, REC_DEVICE};

	for (size_t k = 0; k < 3; k++) {
		size_t i = find_rec(types[k], 0);
		memcpy(r, recs, sizeof(r[0]) * nrecs);
		memmove(r + nrecs, r + nrecs - 1, sizeof(r[0])); /* END one later */
		r[nrecs - 1] = recs[i];                          /* the duplicate */
		emit(tpath("dup.hvs"), r, nrecs + 1);
		expect_fail(tpath("dup.hvs"), "duplicate", "twice", NULL);
	}
	/* no VCPU record */
	{
		size_t v = find_rec(REC_VCPU, 0), n = 0;
		for (size_t i = 0; i < nrecs; i++)
			if (i != v)
				r[n++] = recs[i];
		emit(tpath("novcpu.hvs"), r, n);
		expect_fail(tpath("novcpu.hvs"), "missing vcpu", "no VCPU record", "END", NULL);
	}
	/* optional devices may be missing (they keep their defaults); others may not */
	{
		const char *devs[] = {"i8042", "uart0"};
		char msg[HV_ERROR_MSG];
		for (size_t k = 0; k < 2; k++) {
			size_t d = find_device(devs[k]), n = 0;
			for (size_t i = 0; i < nrecs; i++)
				if (i != d)
					r[n++] = recs[i];
			emit(tpath("nodev.hvs"), r, n);
			if (k == 0 && load(tpath("nodev.hvs"), msg, sizeof(msg)) < 0)
				fail_msg("a stream without the optional i8042 did not load: %s",
				         msg);
			if (k == 1)
				expect_fail(tpath("nodev.hvs"), "missing uart",
				            "no DEVICE record for 'uart0'", "END", NULL);
		}
	}
	/* kvm-vm on a VM that does not run on kvm */
	{
		struct state_io io;
		size_t e = nrecs - 1;
		body_of(&io, "kvm-vm", 1);
		memcpy(r, recs, sizeof(r[0]) * nrecs);
		r[e] = (struct rec){REC_DEVICE, (uint32_t)io.len, io.buf};
		r[e + 1] = recs[e];
		emit(tpath("kvmvm.hvs"), r, nrecs + 1);
		state_io_free(&io);
		expect_fail(tpath("kvmvm.hvs"), "kvm-vm on emu", "device 'kvm-vm' does not exist",
		            "runs on emu", NULL);
	}
	/* pages before the configuration */
	{
		size_t pg = find_rec(REC_PAGE_DATA, 0);
		memcpy(r, recs, sizeof(r[0]) * nrecs);
		r[0] = recs[pg];
		r[pg] = recs[0];
		emit(tpath("order.hvs"), r, nrecs);
		expect_fail(tpath("order.hvs"), "config first", "VM_CONFIG first", NULL);
	}
}

/* PAGE_DATA bodies that lie about counts, lengths, frames and encodings. */
static void test_bad_page_data(void **state)
{
	size_t pg = find_rec(REC_PAGE_DATA, 0);
	uint8_t b[8 + 8 + 4096 + 8];
	uint64_t frame_past = GOLD_RAM >> 12;
	struct {
		uint32_t count;
		uint64_t entry;
		uint32_t len;
		const char *want;
	} cases[] = {
	    {0, 0, 8, "count 0"},
	    {PAGE_BATCH_MAX + 1, 0, 16, "count 257"},
	    {100, 0, 16, "do not fit"},
	    {1, frame_past | (uint64_t)PAGE_ENC_ZERO << 60, 16, "outside guest RAM"},
	    {1, ((1ULL << 52) - 1) | (uint64_t)PAGE_ENC_RAW << 60, 16 + 4096, "outside guest RAM"},
	    {1, 5 | (uint64_t)PAGE_ENC_RAW << 60, 16 + 100, "past the end"},
	    {1, 5 | (uint64_t)PAGE_ENC_ZSTD << 60, 16 + 8, "compressed length"},
	    {1, 5 | (uint64_t)PAGE_ENC_DELTA << 60, 16, "DELTA in a stream that is not a migration"},
	    {1, 5 | 1ULL << 55, 16, "reserved entry bits"},
	    {1, 5, 16 + 8, "left over"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(b, 0, sizeof(b));
		put32(b, cases[i].count);
		put32(b + 8, (uint32_t)cases[i].entry);
		put32(b + 12, (uint32_t)(cases[i].entry >> 32));
		if (cases[i].entry >> 60 == PAGE_ENC_ZSTD)
			put32(b + 16, 4000); /* claims more than the record holds */
		replace_and_expect(pg, (struct rec){REC_PAGE_DATA, cases[i].len, b}, cases[i].want,
		                   cases[i].want);
	}
}

/* ---- the tagged-field codec itself ---- */

static void test_state_io(void **state)
{
	struct state_io io, in;
	struct hv_error err = {0};
	uint64_t a = 0x1122334455667788ULL, a2 = 0;
	uint16_t b = 7, b2 = 0;
	char s[8] = "hi", s2[8] = "";
	uint8_t bad[] = {3, 'a', 'b', 'c', 200, 0, 0, 0};

	state_io_save_init(&io, "t", &err);
	STATE_FIELD(&io, "a", &a);
	STATE_FIELD(&io, "b", &b);
	STATE_STR(&io, "s", s, sizeof(s));
	assert_int_equal(state_io_result(&io), 0);
	assert_int_equal(state_io_load_init(&in, "t", io.buf, io.len, &err), 0);
	STATE_FIELD(&in, "b", &b2); /* out of order is fine */
	STATE_FIELD(&in, "a", &a2);
	STATE_STR(&in, "s", s2, sizeof(s2));
	assert_int_equal(state_io_result(&in), 0);
	assert_true(a2 == a && b2 == b && !strcmp(s2, "hi"));
	STATE_FIELD(&in, "a", &b2); /* wrong size */
	assert_int_equal(state_io_result(&in), -1);
	assert_non_null(strstr(err.msg, "field 'a' is 8 bytes, expected 2"));
	state_io_free(&io);

	assert_int_equal(state_io_load_init(&in, "t", bad, sizeof(bad), &err), -1);
	assert_non_null(strstr(err.msg, "past the end"));
}

/* ---- writing ---- */

/* A save that cannot complete (bad path, file too large, VM running) leaves nothing. */
static void test_save_failures_leave_nothing(void **state)
{
	char elf[512], p[600];
	struct hv_error err = {0};
	struct stat st;
	struct vm *vm;
	pid_t pid;
	int status;

	snprintf(elf, sizeof(elf), "%s/memtouch.elf", guest_dir);
	vm = tvm_boot(elf, "start=2M end=3M passes=0", GOLD_RAM, false, -1);

	assert_int_equal(savefile_write(vm, "/nonexistent-dir/x.hvs", &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/x.hvs"));

	snprintf(p, sizeof(p), "%s", tpath("big.hvs"));
	pid = fork();
	if (pid == 0) {
		/* "disk full": the file size limit makes writes fail part way */
		struct rlimit rl = {4096, 4096};
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		_exit(savefile_write(vm, p, &err) == -1 && strstr(err.msg, p) ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(stat(p, &st), -1);

	assert_int_equal(vm_start(vm, &err), 0);
	assert_int_equal(savefile_write(vm, p, &err), -1); /* running: refused */
	assert_int_equal(stat(p, &st), -1);
	assert_int_equal(vm_pause(vm, &err), 0);
	assert_int_equal(savefile_write(vm, p, &err), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	tvm_free(vm);
	{
		char cmd[700];
		snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -q '\\.tmp\\.'", tmpdir);
		assert_int_not_equal(system(cmd), 0); /* no temporary file left behind */
	}
}

/*
 * Compressing in worker threads writes the bytes of one thread, whatever their number
 * (more ranges than ring slots, so slots are reused while claims wait on them). The
 * VM is deterministic, so two saves of it paused are the same bytes.
 */
static void test_save_threads_same_bytes(void **state)
{
	static const char *const n[] = {"1", "2", "3", "8"};
	char elf[512];
	struct hv_error err = {0};
	uint8_t *one, *other;
	size_t one_len, other_len;
	struct vm *vm;

	snprintf(elf, sizeof(elf), "%s/memtouch.elf", guest_dir);
	vm = tvm_boot(elf, "start=4M end=16M passes=0", 64ULL << 20, true, -1);
	assert_int_equal(vm_start(vm, &err), 0);
	usleep(300 * 1000);
	assert_int_equal(vm_pause(vm, &err), 0);
	setenv("HV_SAVE_THREADS", "1", 1);
	assert_int_equal(savefile_write(vm, tpath("threads1.hvs"), &err), 0);
	one = tvm_read_file(tpath("threads1.hvs"), &one_len);
	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		setenv("HV_SAVE_THREADS", n[i], 1);
		assert_int_equal(savefile_write(vm, tpath("threadsn.hvs"), &err), 0);
		other = tvm_read_file(tpath("threadsn.hvs"), &other_len);
		if (other_len != one_len || memcmp(one, other, one_len))
			fail_msg("a save with %s threads differs from one with 1", n[i]);
		free(other);
	}
	unsetenv("HV_SAVE_THREADS");
	free(one);
	tvm_free(vm);
}

static int setup(void **state)
{
	char g[600];

	make_base(tpath("base.hvs"));
	base = tvm_read_file(tpath("base.hvs"), &base_len);
	parse_base();
	if (getenv("HV_STATE_REGEN")) {
		snprintf(g, sizeof(g), "%s/%s", golden_dir, GOLD_NEW);
		tvm_write_file(g, base, base_len);
		fprintf(stderr, "wrote %s (%zu bytes)\n", g, base_len);
	}
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_state_io),
	    cmocka_unit_test(test_golden_restores),
	    cmocka_unit_test(test_golden_unchanged),
	    cmocka_unit_test(test_unknown_optional_skipped),
	    cmocka_unit_test(test_unknown_mandatory_fails),
	    cmocka_unit_test(test_truncated_everywhere),
	    cmocka_unit_test(test_flipped_bits),
	    cmocka_unit_test(test_bad_lengths),
	    cmocka_unit_test(test_future_version),
	    cmocka_unit_test(test_device_versions_and_fields),
	    cmocka_unit_test(test_duplicates_and_missing),
	    cmocka_unit_test(test_bad_page_data),
	    cmocka_unit_test(test_save_failures_leave_nothing),
	    cmocka_unit_test(test_save_threads_same_bytes),
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s GUEST_DIR GOLDEN_DIR\n", argv[0]);
		return 2;
	}
	guest_dir = argv[1];
	golden_dir = argv[2];
	if (!mkdtemp(tmpdir))
		return 2;
	return cmocka_run_group_tests(tests, setup, teardown);
}
