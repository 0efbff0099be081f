/*
 * test_oracle.c - the deterministic oracle for save/restore, across processes.
 *
 * On the emu in deterministic mode a run is exactly reproducible, so: run a guest to
 * instruction N and save; restore the file in a new `hv restore` process and run to N+M
 * there, saving again; run the same guest straight to N+M in this process and save. The
 * two files must be identical record for record (registers, devices, every page), and the
 * console output before N plus the restored process's output must be exactly the straight
 * run's. Several N: mid-line (UART output in progress), mid-pass, and with the APIC timer
 * armed. Then memtouch through several save/restore cycles in a row, each in its own
 * process, ending in a clean exit with no CORRUPT.
 *
 * Usage: test-state-oracle GUEST_DIR HV
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/savefile.h"
#include "tests/state/tvm.h"

#define RAM           (16ULL << 20)
#define MEMTOUCH_ARGS "start=3M end=5M passes=0"

static const char *guest_dir, *hv_path;
static char tmpdir[] = "/tmp/hv-state-oracle-XXXXXX";

static char *path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path(const char *fmt, ...)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	int n = snprintf(b, 512, "%s/", tmpdir);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b + n, 512 - (size_t)n, fmt, ap);
	va_end(ap);
	return b;
}

static char *guest(const char *name)
{
	static char b[2][512];
	static int next;
	char *p = b[next++ % 2];
	snprintf(p, 512, "%s/%s.elf", guest_dir, name);
	return p;
}

static int create(const char *p)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	return fd;
}

/* Run `hv restore FILE [extra...]` with stdout to @out; returns its exit status. */
static int hv_restore(const char *file, const char *out, const char *until, const char *save)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600),
		    nul = open("/dev/null", O_RDONLY);
		dup2(fd, 1);
		dup2(nul, 0);
		if (until && save)
			execl(hv_path, hv_path, "restore", "--run-until", until, "--save-to", save,
			      file, (char *)NULL);
		else
			execl(hv_path, hv_path, "restore", file, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Boot @g, run to @n, save to @file; console to @out. */
static void run_save(const char *g, const char *args, uint64_t n, const char *file, const char *out)
{
	int fd = create(out);
	struct vm *vm = tvm_boot(guest(g), args, RAM, true, fd);
	struct hv_error err = {0};

	if (vm_run_until(vm, n, &err) != 0)
		fail_msg("run to %llu: %s", (unsigned long long)n, err.msg);
	if (savefile_write(vm, file, &err) < 0)
		fail_msg("save: %s", err.msg);
	tvm_free(vm);
	close(fd);
}

static void assert_console_joins(const char *a, const char *b, const char *whole)
{
	size_t la, lb, lw;
	uint8_t *pa = tvm_read_file(a, &la), *pb = tvm_read_file(b, &lb),
	        *pw = tvm_read_file(whole, &lw);

	if (la + lb != lw || memcmp(pa, pw, la) || memcmp(pb, pw + la, lb))
		fail_msg(
		    "console before the save (%zu bytes) + after the restore (%zu) != straight "
		    "run (%zu)",
		    la, lb, lw);
	free(pa), free(pb), free(pw);
}

/* One oracle check: save at @n, restore in a new process, run @m more, compare. */
static void oracle(const char *g, const char *args, uint64_t n, uint64_t m)
{
	char until[32];
	const char *diff;
	int rc;

	snprintf(until, sizeof(until), "%llu", (unsigned long long)(n + m));
	run_save(g, args, n, path("at-n.hvs"), path("con-a"));
	rc = hv_restore(path("at-n.hvs"), path("con-b"), until, path("restored.hvs"));
	if (rc)
		fail_msg("hv restore --run-until %s exited %d", until, rc);
	run_save(g, args, n + m, path("straight.hvs"), path("con-c"));
	diff = tvm_stream_diff(path("restored.hvs"), path("straight.hvs"));
	if (diff)
		fail_msg("%s: N=%llu M=%llu: restored run != straight run: %s", g,
		         (unsigned long long)n, (unsigned long long)m, diff);
	assert_console_joins(path("con-a"), path("con-b"), path("con-c"));
}

/* The console output of a straight run to @n. */
static size_t console_at(const char *g, const char *args, uint64_t n, char *last)
{
	int fd = create(path("probe"));
	struct vm *vm = tvm_boot(guest(g), args, RAM, true, fd);
	struct hv_error err = {0};
	uint8_t *p;
	size_t len;

	assert_int_equal(vm_run_until(vm, n, &err), 0);
	tvm_free(vm);
	close(fd);
	p = tvm_read_file(path("probe"), &len);
	*last = len ? (char)p[len - 1] : 0;
	free(p);
	return len;
}

/* Saving at N and restoring equals running N+M straight, for memtouch at several N. */
static void test_oracle_memtouch(void **state)
{
	static const uint64_t ns[] = {1, 5000, 123457, 400001, 1000003};

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		oracle("memtouch", MEMTOUCH_ARGS, ns[i], 250000);
}

/* ... including in the middle of a console line (UART output in progress). */
static void test_oracle_mid_line(void **state)
{
	uint64_t n;
	char last = 0;
	size_t len = 0;

	/* The first line is printed early; find an N inside it. */
	for (n = 2000; n < 2000000; n += 997) {
		len = console_at("memtouch", MEMTOUCH_ARGS, n, &last);
		if (len && last != '\n')
			break;
	}
	if (!len || last == '\n')
		fail_msg("no instruction count found with a console line half written");
	print_message("memtouch: console line half written at instruction %llu\n",
	              (unsigned long long)n);
	oracle("memtouch", MEMTOUCH_ARGS, n, 300000);
}

/* ... and with the LAPIC timer armed (cputest's periodic and one-shot timer checks). */
static void test_oracle_timer_armed(void **state)
{
	struct x86_state *s = calloc(1, sizeof(*s));
	struct hv_error err = {0};
	int fd = create(path("probe"));
	struct vm *vm = tvm_boot(guest("cputest"), "", RAM, true, fd);
	uint64_t n, found = 0;

	for (n = 100000; n < 400000000; n += 100000) {
		int rc = vm_run_until(vm, n, &err);
		if (rc)
			break;
		assert_int_equal(vm_get_state(vm, 0, s, &err), 0);
		if (!(lapic_reg(&s->lapic, LAPIC_LVT_TIMER) & LAPIC_LVT_MASKED) &&
		    lapic_reg(&s->lapic, LAPIC_TIMER_CCR)) {
			found = n;
			break;
		}
	}
	tvm_free(vm);
	close(fd);
	free(s);
	if (!found)
		fail_msg("cputest never armed the APIC timer");
	print_message("cputest: APIC timer armed at instruction %llu\n", (unsigned long long)found);
	oracle("cputest", "", found, 50000);
	oracle("cputest", "", found + 33333, 2000000);
}

/* memtouch keeps counting across several save/restore cycles, each in a new process. */
static void test_memtouch_cycles(void **state)
{
	const char *args = "start=3M end=5M passes=1000";
	uint64_t n = 300000;
	char until[32];
	size_t len;
	char *con;
	int rc;

	run_save("memtouch", args, n, path("cycle0.hvs"), path("con0"));
	for (int k = 1; k <= 4; k++) {
		n += 211111 * (uint64_t)k;
		snprintf(until, sizeof(until), "%llu", (unsigned long long)n);
		rc = hv_restore(path("cycle%d.hvs", k - 1), path("con%d", k), until,
		                path("cycle%d.hvs", k));
		if (rc)
			fail_msg("cycle %d: hv restore exited %d", k, rc);
	}
	rc = hv_restore(path("cycle4.hvs"), path("con-final"), NULL, NULL);
	con = (char *)tvm_read_file(path("con-final"), &len);
	con[len] = 0;
	if (rc || strstr(con, "CORRUPT") || !strstr(con, "memtouch done passes=1000"))
		fail_msg("after 4 cycles: exit %d, console:\n%s", rc, con);
	free(con);
}

static int cleanup(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_oracle_memtouch),
	    cmocka_unit_test(test_oracle_mid_line),
	    cmocka_unit_test(test_oracle_timer_armed),
	    cmocka_unit_test(test_memtouch_cycles),
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s GUEST_DIR HV\n", argv[0]);
		return 2;
	}
	guest_dir = argv[1];
	hv_path = argv[2];
	if (!mkdtemp(tmpdir))
		return 2;
	return cmocka_run_group_tests(tests, NULL, cleanup);
}
