/*
 * kvm_test.h - what the KVM test programs share: skip without /dev/kvm, boot a guest ELF
 * into a KVM VM whose console is captured in a memfd, and wait for a console line.
 *
 * The programs run here (meson suite 'kvm', exit 77 = skip: this machine has no /dev/kvm)
 * and inside the nested lane (tests/nested/kvm-tests.list), where the working directory
 * is a copy of the build directory, so the default guest directory is "guest".
 */
#ifndef HV_TESTS_KVM_TEST_H
#define HV_TESTS_KVM_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hv/accel.h"
#include "hv/loader/pvh.h"
#include "hv/vm.h"

#define KT_SKIP 77

static int kt_failures;

static inline void kt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void kt_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("FAIL: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
	kt_failures++;
}

#define KT_CHECK(cond, ...)                                                                        \
	do {                                                                                       \
		if (!(cond))                                                                       \
			kt_fail(__VA_ARGS__);                                                      \
	} while (0)

/* Exit 77 (meson's skip) when KVM cannot run here, saying why. */
static inline void kt_require_kvm(void)
{
	struct hv_error err;

	if (accel_kvm.probe(&err) < 0) {
		printf("SKIP: %s\n", err.msg);
		exit(KT_SKIP);
	}
}

static inline uint64_t kt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A VM on accel_kvm with @guest (in @dir) loaded and its console in a memfd. */
struct kt_vm {
	struct vm vm;
	int console;
};

static inline struct kt_vm *kt_boot(const char *dir, const char *guest, const char *cmdline,
                                    uint64_t ram)
{
	struct kt_vm *k = calloc(1, sizeof(*k));
	struct vm_config cfg = {.name = "kvm-test", .ram_size = ram, .nvcpus = 1};
	struct x86_state *st = malloc(sizeof(*st));
	struct hv_error err;
	char path[512];

	if (!k || !st) {
		kt_fail("out of memory");
		exit(1);
	}
	k->console = memfd_create("console", MFD_CLOEXEC);
	if (vm_create(&k->vm, &cfg, &accel_kvm, k->console, -1, &err) < 0) {
		kt_fail("vm_create: %s", err.msg);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, guest);
	if (vm_get_state(&k->vm, 0, st, &err) < 0 ||
	    pvh_load_file(&k->vm.mem, path, cmdline, st, &err) < 0 ||
	    vm_set_state(&k->vm, 0, st, &err) < 0) {
		kt_fail("loading %s: %s", path, err.msg);
		exit(1);
	}
	free(st);
	return k;
}

/* An empty VM (no guest loaded), e.g. the target of a restore. */
static inline struct kt_vm *kt_empty(uint64_t ram)
{
	struct kt_vm *k = calloc(1, sizeof(*k));
	struct vm_config cfg = {.name = "kvm-test-target", .ram_size = ram, .nvcpus = 1};
	struct hv_error err;

	if (!k) {
		kt_fail("out of memory");
		exit(1);
	}
	k->console = memfd_create("console", MFD_CLOEXEC);
	if (vm_create(&k->vm, &cfg, &accel_kvm, k->console, -1, &err) < 0) {
		kt_fail("vm_create: %s", err.msg);
		exit(1);
	}
	return k;
}

static inline void kt_destroy(struct kt_vm *k)
{
	vm_destroy(&k->vm);
	close(k->console);
	free(k);
}

/* The console output so far, NUL-terminated (caller frees). */
static inline char *kt_console(struct kt_vm *k)
{
	off_t len = lseek(k->console, 0, SEEK_END);
	char *s = malloc((size_t)len + 1);
	ssize_t n = s ? pread(k->console, s, (size_t)len, 0) : -1;

	if (!s)
		exit(1);
	s[n > 0 ? n : 0] = '\0';
	return s;
}

static inline bool kt_console_has(struct kt_vm *k, const char *needle)
{
	char *s = kt_console(k);
	bool has = strstr(s, needle) != NULL;

	free(s);
	return has;
}

/* The highest N of the "memtouch pass N" lines so far (0: none). */
static inline uint64_t kt_memtouch_pass(struct kt_vm *k)
{
	char *s = kt_console(k), *p = s;
	uint64_t best = 0;

	while ((p = strstr(p, "memtouch pass "))) {
		uint64_t n = strtoull(p + 14, &p, 10);
		if (n > best)
			best = n;
	}
	free(s);
	return best;
}

/* Whether the VM has shut down (and why, into @why). */
static inline bool kt_shut_down(struct kt_vm *k, char *why, size_t len)
{
	bool down;

	pthread_mutex_lock(&k->vm.lock);
	down = k->vm.state == VM_SHUTDOWN;
	if (down && why)
		snprintf(why, len, "%s", k->vm.exit_reason);
	pthread_mutex_unlock(&k->vm.lock);
	return down;
}

/* Print the console (for a failing test). */
static inline void kt_dump_console(struct kt_vm *k, const char *label)
{
	char *s = kt_console(k);

	printf("---- %s console ----\n%s---- end ----\n", label, s);
	free(s);
}

#endif
