/*
 * vmstart.c - two fixed costs of a VMM: VM creation to the first guest instruction, and
 * the round trip of a port-I/O exit, on the emu and (where /dev/kvm works) on KVM.
 *
 * The guest is guest/iobench.elf: its first instruction writes port 0x80, then it writes
 * the port N more times (N from the command line) and leaves through debug-exit. This
 * program registers a counting handler on port 0x80, so:
 *   start    = vm_create + pvh_load + vm_start until the handler sees the first write
 *              (split into create / load / run-to-first), N = 0, best and median of runs;
 *   exit RTT = (time of write N+1 - time of write 1) / N, one VM with N = --exits.
 * Beside them, as physical references: an empty (non-inlined) function call, the
 * getppid() and write(/dev/null) system calls; and QEMU TCG on the same ELF (process
 * start to debug-exit, and its per-`out` cost from N = --exits minus N = 0), next to
 * `hv run` as a process. Inside a VM (CPUID hypervisor bit) KVM is nested: its figures
 * are labelled "(nested: relative only)".
 *
 *   build/bench/vmstart [--accel emu|kvm|all] [--starts N] [--exits K] [--hv PATH]
 *                       [--qemu PATH|none] IOBENCH_ELF
 */
#include <cpuid.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hv/loader/pvh.h"
#include "hv/vm.h"

#define IOBENCH_PORT 0x80
#define RAM          (32ULL << 20)
#define MAX_RUNS     1000

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Best and median of @n samples (sorts them). */
static void stats(double *v, int n, double *best, double *median)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	*best = v[0];
	*median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the counting port ---- */

struct counter {
	uint64_t n, last; /* writes seen; the write whose time ends the measurement */
	double t_first, t_last;
};

static void count_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	struct counter *c = opaque;

	if (!write) {
		*val = ~0ULL;
		return;
	}
	if (++c->n == 1)
		c->t_first = now_ns();
	if (c->n == c->last)
		c->t_last = now_ns();
}

struct run {
	double create, load, first, total; /* ns from the start of vm_create */
	double rtt;                        /* ns per exit (exits > 0) */
};

/* One VM: create, load with "N", start, wait. Returns 0 when the guest exited 0. */
static int run_vm(const struct accel_ops *accel, const char *elf, uint64_t exits, struct run *r)
{
	struct vm_config cfg = {.name = "vmstart", .ram_size = RAM, .nvcpus = 1};
	struct vm *vm = calloc(1, sizeof(*vm));
	struct x86_state *st = calloc(1, sizeof(*st));
	struct counter c = {.last = exits + 1};
	struct hv_error err = {0};
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC), rc = -1;
	char cmdline[32];
	double t0;

	snprintf(cmdline, sizeof(cmdline), "%llu", (unsigned long long)exits);
	if (!vm || !st || devnull < 0) {
		fprintf(stderr, "vmstart: out of memory\n");
		exit(2);
	}
	t0 = now_ns();
	if (vm_create(vm, &cfg, accel, devnull, -1, &err) < 0) {
		fprintf(stderr, "vmstart: %s: vm_create: %s\n", accel->name, err.msg);
		goto out;
	}
	r->create = now_ns() - t0;
	if (io_register_port(&vm->io, IOBENCH_PORT, 1, count_io, &c, "iobench", &err) < 0 ||
	    vm_get_state(vm, 0, st, &err) < 0 ||
	    pvh_load_file(&vm->mem, elf, cmdline, st, &err) < 0 ||
	    vm_set_state(vm, 0, st, &err) < 0) {
		fprintf(stderr, "vmstart: %s: %s\n", accel->name, err.msg);
		goto destroy;
	}
	r->load = now_ns() - t0;
	if (vm_start(vm, &err) < 0) {
		fprintf(stderr, "vmstart: %s: vm_start: %s\n", accel->name, err.msg);
		goto destroy;
	}
	rc = vm_wait(vm);
	r->total = now_ns() - t0;
	r->first = c.t_first - t0;
	r->rtt = exits ? (c.t_last - c.t_first) / (double)exits : 0;
	if (rc != 0 || c.n != exits + 1) {
		fprintf(stderr,
		        "vmstart: %s: guest ended with status %d after %llu of %llu writes (%s)\n",
		        accel->name, rc, (unsigned long long)c.n, (unsigned long long)exits + 1,
		        vm->exit_reason);
		rc = -1;
	}
destroy:
	vm_destroy(vm);
out:
	close(devnull);
	free(vm);
	free(st);
	return rc;
}

/* ---- references ---- */

static void __attribute__((noinline)) empty(void)
{
	__asm__ volatile("");
}
static void (*volatile empty_ptr)(void) = empty;

/* Nanoseconds per call of @what (0: empty function, 1: getppid, 2: write 1 byte). */
static double ref_cost(int what, long iters)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	double best = 1e30;

	for (int rep = 0; rep < 3; rep++) {
		double t0 = now_ns();

		for (long i = 0; i < iters; i++) {
			if (what == 0)
				empty_ptr();
			else if (what == 1)
				(void)getppid();
			else if (write(fd, "x", 1) != 1)
				break;
		}
		double t = (now_ns() - t0) / (double)iters;
		if (t < best)
			best = t;
	}
	close(fd);
	return best;
}

/* Run @argv to completion; ns of wall time, or -1 (exit status not @want_rc). */
static double time_process(char *const argv[], int want_rc)
{
	double t0 = now_ns();
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != want_rc)
		return -1;
	return now_ns() - t0;
}

/* Best of @n runs of a process (ns), or -1 when any fails. */
static double best_process(char *const argv[], int want_rc, int n)
{
	double best = 1e30;

	for (int i = 0; i < n; i++) {
		double t = time_process(argv, want_rc);

		if (t < 0)
			return -1;
		if (t < best)
			best = t;
	}
	return best;
}

static void qemu_argv(char **a, const char *qemu, const char *elf, const char *append)
{
	const char *v[] = {
	    qemu,   "-accel",     "tcg",     "-m",
	    "32",   "-kernel",    elf,       "-append",
	    append, "-display",   "none",    "-serial",
	    "none", "-monitor",   "none",    "-net",
	    "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
	    NULL};

	memcpy(a, v, sizeof(v));
}

/* ---- main ---- */

static bool in_a_vm(void)
{
	unsigned a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 31));
}

static void bench_accel(const struct accel_ops *accel, const char *elf, int starts, uint64_t exits,
                        const char *label)
{
	double create[MAX_RUNS], load[MAX_RUNS], first[MAX_RUNS], total[MAX_RUNS];
	double b, m, bc, mc, bl, ml, bt, mt;
	struct run r;

	run_vm(accel, elf, 0, &r); /* warm-up: page cache, first-time allocations */
	for (int i = 0; i < starts; i++) {
		if (run_vm(accel, elf, 0, &r) < 0)
			exit(1);
		create[i] = r.create / 1e3;
		load[i] = (r.load - r.create) / 1e3;
		first[i] = r.first / 1e3;
		total[i] = r.total / 1e3;
	}
	stats(first, starts, &b, &m);
	stats(create, starts, &bc, &mc);
	stats(load, starts, &bl, &ml);
	stats(total, starts, &bt, &mt);
	printf("%-4s start to first instruction: best %8.1f us, median %8.1f us%s\n", accel->name,
	       b, m, label);
	printf("%-4s   (median: vm_create %.1f us, load %.1f us, to debug-exit %.1f us; %d runs)\n",
	       accel->name, mc, ml, mt, starts);
	double rtt[3];
	for (int i = 0; i < 3; i++) {
		if (run_vm(accel, elf, exits, &r) < 0)
			exit(1);
		rtt[i] = r.rtt;
	}
	stats(rtt, 3, &b, &m);
	printf(
	    "%-4s port-I/O exit round trip:   best %8.1f ns, median %8.1f ns%s (%llu exits x3)\n",
	    accel->name, b, m, label, (unsigned long long)exits);
}

int main(int argc, char **argv)
{
	const char *accel = "all", *hv = NULL, *qemu = "qemu-system-x86_64", *elf;
	int starts = 20, opt;
	uint64_t exits = 100000;
	struct hv_error err;
	static const struct option opts[] = {
	    {"accel", required_argument, NULL, 'a'},
	    {"starts", required_argument, NULL, 's'},
	    {"exits", required_argument, NULL, 'e'},
	    {"hv", required_argument, NULL, 'H'},
	    {"qemu", required_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};

	while ((opt = getopt_long(argc, argv, "a:s:e:H:q:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': accel = optarg; break;
		case 's': starts = atoi(optarg); break;
		case 'e': exits = strtoull(optarg, NULL, 0); break;
		case 'H': hv = optarg; break;
		case 'q': qemu = optarg; break;
		default:
			fprintf(opt == 'h' ? stdout : stderr,
			        "usage: vmstart [--accel emu|kvm|all] [--starts N] [--exits K] "
			        "[--hv PATH] [--qemu PATH|none] IOBENCH_ELF\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind != argc - 1 || starts < 1 || starts > MAX_RUNS || exits < 1) {
		fprintf(stderr, "vmstart: usage: vmstart [options] IOBENCH_ELF (--help)\n");
		return 2;
	}
	elf = argv[optind];
	setvbuf(stdout, NULL, _IOLBF, 0);

	printf("vmstart: %s, %llu MiB RAM, 1 vCPU; start: %d runs; exit RTT: %llu exits\n", elf,
	       (unsigned long long)(RAM >> 20), starts, (unsigned long long)exits);
	if (!strcmp(accel, "emu") || !strcmp(accel, "all"))
		bench_accel(&accel_emu, elf, starts, exits, "");
	if (!strcmp(accel, "kvm") || !strcmp(accel, "all")) {
		if (accel_kvm.probe(&err) < 0) {
			printf("kvm  not measured: %s\n", err.msg);
			if (!strcmp(accel, "kvm"))
				return 1;
		} else {
			bench_accel(&accel_kvm, elf, starts, exits,
			            in_a_vm() ? " (nested: relative only)" : "");
		}
	}

	printf("references: empty call %.1f ns, getppid() %.1f ns, write(/dev/null, 1) %.1f ns\n",
	       ref_cost(0, 10000000), ref_cost(1, 1000000), ref_cost(2, 1000000));
	if (hv) {
		char *a[] = {(char *)hv, "run",       "--accel", "emu",       "--memory",
		             "32M",      "--cmdline", "0",       (char *)elf, NULL};
		double t = best_process(a, 0, 5);

		if (t < 0)
			printf("hv run --accel emu (process): failed\n");
		else
			printf("hv run --accel emu (process, exec to exit): best of 5 %.1f ms\n",
			       t / 1e6);
	}
	if (strcmp(qemu, "none")) {
		char *a[24], big[32];
		double t0, tk = -1;

		qemu_argv(a, qemu, elf, "0");
		t0 = best_process(a, 1, 5);
		/* QEMU's start-up varies by milliseconds: take enough exits to see past it. */
		uint64_t qexits = exits < 5000000 ? 5000000 : exits;

		snprintf(big, sizeof(big), "%llu", (unsigned long long)qexits);
		qemu_argv(a, qemu, elf, big);
		if (t0 >= 0)
			tk = best_process(a, 1, 5);
		if (t0 < 0 || tk < 0) {
			printf("qemu: %s did not run the guest (not installed?)\n", qemu);
		} else {
			printf("qemu -accel tcg (process, exec to debug-exit, SeaBIOS + PVH ROM): "
			       "best "
			       "of 5 %.1f ms\n",
			       t0 / 1e6);
			printf("qemu -accel tcg port-I/O out: %.1f ns (from %llu exits - 0, best "
			       "of 5)\n",
			       (tk - t0) / (double)qexits, (unsigned long long)qexits);
		}
	}
	return 0;
}
