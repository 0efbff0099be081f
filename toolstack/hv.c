/*
 * hv.c - the `hv` program: one VMM process per VM.
 *
 * `hv run` builds a VM from its options, loads a kernel (PVH ELF or Linux bzImage, with an
 * optional initrd), runs it in the foreground
 * with the guest console on stdout and exits with the guest's debug-exit byte. Everything
 * that can be checked before the guest starts is checked here first, so bad input ends
 * with one "hv: ..." line and status 2 rather than a half-started VM. See docs/hv.1.md.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hv/loader/loader.h"
#include "hv/loader/preload.h"
#include "hv/loader/pvh.h"
#include "checkpoint/lazy.h"
#include "checkpoint/vmckpt.h"
#include "hv/vm.h"
#include "migrate/savefile.h"
#include "toolstack/conmux.h"
#include "toolstack/control.h"
#include "toolstack/size.h"
#include "toolstack/vmsig.h"

#ifndef HV_VERSION
#define HV_VERSION "0.1.0"
#endif

#define EXIT_USAGE 2 /* bad arguments, bad kernel, or the VM could not be set up */

static const char usage_main[] = "usage: hv run [OPTIONS] KERNEL    run a VM in the foreground\n"
                                 "       hv restore [OPTIONS] FILE  resume a VM from a save file\n"
                                 "       hv restore --store DIR ID  ... or from a checkpoint\n"
                                 "       hv --help | --version\n"
                                 "\n"
                                 "Run 'hv run --help' for the options of 'run'.\n";

static const char usage_run[] =
    "usage: hv run [OPTIONS] KERNEL\n"
    "\n"
    "Run KERNEL in a new VM: a PVH kernel (an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note) or\n"
    "a Linux bzImage, told apart by content. The guest console (8250 UART at 0x3f8) is\n"
    "connected to stdin/stdout; hv exits with the byte the guest writes to the debug-exit\n"
    "port 0xf4, or 0 when the guest resets the machine (Linux: reboot=k).\n"
    "\n"
    "  -n, --name NAME        name used in messages (default: KERNEL's file name)\n"
    "  -m, --memory SIZE      guest RAM, e.g. 512M or 2G (default 128M; 2M..1T)\n"
    "  -c, --vcpus N          number of vCPUs, 1..64 (default 1)\n"
    "  -a, --accel ACCEL      auto, kvm or emu (default auto: kvm if usable, else emu)\n"
    "  -k, --cmdline STRING   kernel command line (at most 4095 bytes)\n"
    "  -i, --initrd FILE      initial ramdisk for a bzImage KERNEL (not for PVH kernels)\n"
    "  -P, --preload FILE     fill RAM from the raw memory image FILE (page 0 first, at\n"
    "                         most RAM's size) before the kernel is loaded over it\n"
    "  -d, --deterministic    emu only, 1 vCPU: time derives from the instruction count\n"
    "  -S, --control SOCK     serve the control socket SOCK (see hvctl(1))\n"
    "      --console-socket SOCK\n"
    "                         also serve the console on the Unix socket SOCK, where\n"
    "                         clients attach and type (hvctl(1) console); the output\n"
    "                         still goes to stdout, and stdin is not read\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: the guest's debug-exit byte; 125 if the guest crashed (triple fault,\n"
    "internal error); 128+N when stopped by signal N; 2 for bad arguments or a kernel or\n"
    "host that cannot run.\n";

static __attribute__((format(printf, 1, 2))) int die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("hv: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static int parse_uint(const char *s, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return (errno || *end) ? -1 : 0;
}

static void report_exit(struct vm *vm, const char *name)
{
	struct x86_state *s;

	switch (vm->exit_kind) {
	case VM_EXIT_GUEST: return;
	case VM_EXIT_REQUESTED: fprintf(stderr, "hv: %s: %s\n", name, vm->exit_reason); return;
	case VM_EXIT_TRIPLE_FAULT:
		if (strstr(vm->exit_reason, "triple fault"))
			break;
		/* The backend gave only a detail: say where it happened. */
		s = malloc(sizeof(*s));
		if (s && vm_get_state(vm, 0, s, NULL) == 0)
			fprintf(stderr, "hv: %s: triple fault at RIP 0x%llx%s%s\n", name,
			        (unsigned long long)s->rip, vm->exit_reason[0] ? ": " : "",
			        vm->exit_reason);
		else
			fprintf(stderr, "hv: %s: triple fault%s%s\n", name,
			        vm->exit_reason[0] ? ": " : "", vm->exit_reason);
		free(s);
		return;
	default: break;
	}
	fprintf(stderr, "hv: %s: %s\n", name, vm->exit_reason[0] ? vm->exit_reason : "crashed");
}

/*
 * --console-socket: the guest console goes through a multiplexer (toolstack/conmux.h)
 * that copies it to stdout and to the socket's clients. Stopped only once the VM is
 * destroyed (the UART's reader thread reads its pipe); NULL without the option.
 */
static struct conmux *console;

/* Start the console: its pipes into @out/@in, else stdout/stdin. 0 or -1 with @err. */
static int console_start(const char *sock, int *out, int *in, struct hv_error *err)
{
	*out = STDOUT_FILENO;
	*in = STDIN_FILENO;
	if (!sock)
		return 0;
	console = conmux_start(sock, STDOUT_FILENO, out, in, err);
	return console ? 0 : -1;
}

/* Pass @rc through, the console stopped (the VM must be destroyed already). */
static int console_end(int rc)
{
	conmux_stop(console);
	console = NULL;
	return rc;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"memory", required_argument, NULL, 'm'},
	    {"vcpus", required_argument, NULL, 'c'},
	    {"accel", required_argument, NULL, 'a'},
	    {"cmdline", required_argument, NULL, 'k'},
	    {"deterministic", no_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {"control", required_argument, NULL, 'S'},
	    {"initrd", required_argument, NULL, 'i'},
	    {"preload", required_argument, NULL, 'P'},
	    {"console-socket", required_argument, NULL, 'C'},
	    {0},
	};
	struct vm_config cfg = {.ram_size = 128ULL << 20, .nvcpus = 1};
	const char *name = NULL, *accel_name = "auto", *cmdline = "", *kernel, *control_path = NULL;
	const char *initrd = NULL, *preload = NULL, *console_path = NULL;
	struct control *ctl = NULL;
	const struct accel_ops *accel;
	struct hv_error err = {0};
	static struct vmsig sig; /* the watching thread outlives this frame */
	struct x86_state *st;
	static struct vm vm;
	unsigned long n;
	int c, rc, cout, cin;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":n:m:c:a:k:i:P:dS:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!*optarg || strlen(optarg) >= VM_NAME_MAX)
				return die_usage("--name '%s': must be 1 to %d characters", optarg,
				                 VM_NAME_MAX - 1);
			name = optarg;
			break;
		case 'm':
			if (size_parse(optarg, &cfg.ram_size, &err) < 0)
				return die_usage("--memory %s", err.msg);
			if (cfg.ram_size < MEM_MIN_SIZE)
				return die_usage("--memory %s: less than the 2M minimum", optarg);
			if (cfg.ram_size > MEM_MAX_SIZE)
				return die_usage("--memory %s: more than the 1T maximum", optarg);
			if (cfg.ram_size % MEM_PAGE_SIZE)
				return die_usage("--memory %s: not a multiple of 4K", optarg);
			break;
		case 'c':
			if (parse_uint(optarg, &n) < 0 || n < 1 || n > VM_MAX_VCPUS)
				return die_usage("--vcpus '%s': must be a number from 1 to %d",
				                 optarg, VM_MAX_VCPUS);
			cfg.nvcpus = (unsigned)n;
			break;
		case 'a':
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") &&
			    strcmp(optarg, "emu"))
				return die_usage("--accel '%s': must be auto, kvm or emu", optarg);
			accel_name = optarg;
			break;
		case 'k':
			if (strlen(optarg) >= PVH_CMDLINE_MAX)
				return die_usage("--cmdline: %zu bytes, at most %d", strlen(optarg),
				                 PVH_CMDLINE_MAX - 1);
			cmdline = optarg;
			break;
		case 'i': initrd = optarg; break;
		case 'P': preload = optarg; break;
		case 'd': cfg.deterministic = true; break;
		case 'S': control_path = optarg; break;
		case 'C': console_path = optarg; break;
		case 'h': fputs(usage_run, stdout); return 0;
		case ':': return die_usage("run: option '%s' needs a value", argv[optind - 1]);
		default:
			return die_usage("run: unknown option '%s' (see 'hv run --help')",
			                 argv[optind - 1]);
		}
	}
	if (optind == argc)
		return die_usage("run: missing KERNEL (see 'hv run --help')");
	if (argc - optind > 1)
		return die_usage("run: unexpected argument '%s' after KERNEL", argv[optind + 1]);
	kernel = argv[optind];

	if (cfg.deterministic) {
		if (!strcmp(accel_name, "kvm"))
			return die_usage("--deterministic needs --accel emu, not kvm");
		accel_name = "emu";
		if (cfg.nvcpus != 1)
			return die_usage("--deterministic needs exactly 1 vCPU, not %u",
			                 cfg.nvcpus);
	}
	if (!name) {
		char *copy = strdup(kernel);
		snprintf(cfg.name, sizeof(cfg.name), "%s", copy ? basename(copy) : kernel);
		free(copy);
	} else {
		snprintf(cfg.name, sizeof(cfg.name), "%s", name);
	}
	snprintf(cfg.cmdline, sizeof(cfg.cmdline), "%s", cmdline);
	{
		char *copy = strdup(kernel);
		snprintf(cfg.kernel, sizeof(cfg.kernel), "%s", copy ? basename(copy) : kernel);
		free(copy);
	}

	accel = accel_select(accel_name, &err);
	if (!accel)
		return die_usage("%s", err.msg);

	/* Block before any thread exists, so every thread inherits the mask. */
	vmsig_block(&sig);
	signal(SIGPIPE, SIG_IGN);

	if (console_start(console_path, &cout, &cin, &err) < 0)
		return die_usage("%s", err.msg);
	if (vm_create(&vm, &cfg, accel, cout, cin, &err) < 0)
		return console_end(die_usage("%s: %s", cfg.name, err.msg));

	st = malloc(sizeof(*st));
	if (!st) {
		vm_destroy(&vm);
		return console_end(die_usage("%s: out of memory", cfg.name));
	}
	if (vm_get_state(&vm, 0, st, NULL) < 0)
		x86_state_reset(st, 0, 1);
	if ((preload && mem_preload(&vm.mem, preload, &err) < 0) ||
	    loader_load_kernel(&vm.mem, kernel, initrd, cmdline, st, &err) < 0 ||
	    vm_set_state(&vm, 0, st, &err) < 0) {
		free(st);
		vm_destroy(&vm);
		return console_end(die_usage("%s", err.msg));
	}
	free(st);

	if (control_path && !(ctl = control_start(&vm, control_path, &err))) {
		vm_destroy(&vm);
		return console_end(die_usage("%s", err.msg));
	}
	vmsig_watch(&sig, &vm, NULL);
	if (vm_start(&vm, &err) < 0) {
		control_stop(ctl);
		vmsig_set_vm(&sig, NULL);
		vm_destroy(&vm);
		return console_end(die_usage("%s: %s", cfg.name, err.msg));
	}
	rc = vm_wait(&vm);
	conmux_flush(console); /* the guest's last words before hv's in the log */
	control_stop(ctl);
	report_exit(&vm, cfg.name);
	vmsig_set_vm(&sig, NULL);
	vm_destroy(&vm);
	return console_end(rc);
}

static const char usage_restore[] =
    "usage: hv restore [OPTIONS] FILE\n"
    "       hv restore [OPTIONS] --store DIR ID\n"
    "\n"
    "Resume the VM saved in FILE (see hvctl(1) save), or checkpoint ID of the store DIR\n"
    "(see hvctl(1) checkpoint), where it stopped; the guest console continues on\n"
    "stdin/stdout. Exit status as for 'hv run'.\n"
    "\n"
    "  -s, --store DIR        restore checkpoint ID from the store DIR, eagerly (all of\n"
    "                         its memory is loaded before the VM runs)\n"
    "  -l, --lazy             with --store: run at once and load memory on demand while\n"
    "                         the rest is prefetched (needs userfaultfd)\n"
    "  -r, --report FILE      once memory is fully resident, write timings and page\n"
    "                         counts to FILE as one JSON object\n"
    "  -S, --control SOCK     serve the control socket SOCK (see hvctl(1))\n"
    "      --console-socket SOCK\n"
    "                         also serve the console on SOCK (as for 'hv run')\n"
    "  -p, --paused           restore but do not run until resumed (needs --control)\n"
    "  -h, --help             show this help\n"
    "\n"
    "For tests (deterministic VMs only):\n"
    "      --run-until N      run until vCPU 0 has retired N instructions in total, then\n"
    "      --save-to FILE     save the VM to FILE there (without it: just stop) and exit 0\n";

/*
 * --report: written once both the vCPUs have started and every page is present, from
 * whichever thread sees the second of the two (the prefetcher may finish first).
 */
struct restore_report {
	pthread_mutex_t mu;
	const char *path; /* NULL: no report */
	struct timespec t0;
	struct restore_stats st;
	double first_run_ms, resident_ms; /* < 0 until known */
	bool written;
};

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Lock held. Write the report if both halves are known. */
static void report_try_write(struct restore_report *r)
{
	char tmp[4096];
	FILE *f;

	if (!r->path || r->written || r->first_run_ms < 0 || r->resident_ms < 0)
		return;
	r->written = true;
	snprintf(tmp, sizeof(tmp), "%s.tmp", r->path);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "hv: --report %s: %s\n", tmp, strerror(errno));
		return;
	}
	/* Residency that came before the first run counts from the first run. */
	fprintf(f,
	        "{\"mode\":\"%s\",\"first_run_ms\":%.3f,\"resident_ms\":%.3f,"
	        "\"pages_total\":%llu,\"pages_nonzero\":%llu,\"pages_faulted\":%llu,"
	        "\"pages_prefetched\":%llu}\n",
	        r->st.lazy ? "lazy" : "eager", r->first_run_ms,
	        r->resident_ms > r->first_run_ms ? r->resident_ms : r->first_run_ms,
	        (unsigned long long)r->st.pages_total, (unsigned long long)r->st.pages_nonzero,
	        (unsigned long long)r->st.pages_faulted,
	        (unsigned long long)r->st.pages_prefetched);
	if (fclose(f) != 0 || rename(tmp, r->path) < 0)
		fprintf(stderr, "hv: --report %s: %s\n", r->path, strerror(errno));
}

static void report_first_run(struct restore_report *r)
{
	pthread_mutex_lock(&r->mu);
	r->first_run_ms = ms_since(&r->t0);
	report_try_write(r);
	pthread_mutex_unlock(&r->mu);
}

static void report_resident(struct restore_report *r, const struct restore_stats *st)
{
	pthread_mutex_lock(&r->mu);
	r->resident_ms = ms_since(&r->t0);
	r->st = *st;
	report_try_write(r);
	pthread_mutex_unlock(&r->mu);
}

static struct restore_report report = {
    .mu = PTHREAD_MUTEX_INITIALIZER, .first_run_ms = -1, .resident_ms = -1};
static const char *restore_control_path, *restore_console_path;

/* The store of a lazy restore: closed once memory is resident, or at the end. */
static _Atomic(struct store *) lazy_store;

static void lazy_resident(void *arg, const struct restore_stats *st)
{
	(void)arg;
	report_resident(&report, st);
	/* A VM that runs for months must not hold the store's shared lock: prune waits on it. */
	store_close(atomic_exchange(&lazy_store, NULL));
}

/*
 * A thread (a vCPU, mostly) waits in the kernel for a page the store cannot give: it can
 * neither be given other bytes nor be stopped, so the process ends here.
 */
static void lazy_fatal(void *arg, const char *msg)
{
	struct vm *vm = arg;

	fprintf(stderr, "hv: %s: %s\n", vm->cfg.name, msg);
	if (restore_control_path)
		unlink(restore_control_path);
	if (restore_console_path)
		unlink(restore_console_path);
	_exit(VM_STATUS_CRASH);
}

/* Hidden test mode: stop at an exact instruction, save, end. 0, or the VM's own status. */
static int restore_run_until(struct vm *vm, struct lazy *lz, uint64_t icount, const char *save_to)
{
	struct hv_error err = {0};
	int rc;

	report_first_run(&report); /* vm_run_until starts the vCPUs */
	rc = vm_run_until(vm, icount, &err);
	if (rc < 0) {
		fprintf(stderr, "hv: %s: %s\n", vm->cfg.name, err.msg);
		vm_shutdown(vm, VM_EXIT_REQUESTED, VM_STATUS_CRASH, "run-until failed");
		return vm_wait(vm);
	}
	if (rc == 1) {
		rc = vm_wait(vm);
		report_exit(vm, vm->cfg.name);
		fprintf(stderr, "hv: %s: shut down before instruction %llu\n", vm->cfg.name,
		        (unsigned long long)icount);
		return rc ? rc : VM_STATUS_CRASH;
	}
	/* The save file skips holes: every page must be in RAM first. */
	if (lz && lazy_wait_resident(lz, &err) < 0) {
		fprintf(stderr, "hv: %s: %s\n", vm->cfg.name, err.msg);
		vm_shutdown(vm, VM_EXIT_REQUESTED, VM_STATUS_CRASH, "lazy restore failed");
		return vm_wait(vm);
	}
	if (save_to && savefile_write(vm, save_to, &err) < 0) {
		fprintf(stderr, "hv: %s\n", err.msg);
		vm_shutdown(vm, VM_EXIT_REQUESTED, 1, "save failed");
		return vm_wait(vm);
	}
	vm_shutdown(vm, VM_EXIT_REQUESTED, 0, "stopped at instruction %llu",
	            (unsigned long long)icount);
	return vm_wait(vm);
}

/*
 * The end of a restored VM: stop the lazy restore (nothing touches RAM any more), then say
 * why it ended - a failed lazy restore in full, which vm->exit_reason has only in part.
 */
static int restore_finish(struct vm *vm, struct vmsig *sig, struct lazy *lz, struct store *store,
                          int rc, bool say_exit)
{
	char msg[HV_ERROR_MSG] = "";

	conmux_flush(console); /* the vCPUs have stopped (or never ran) */
	if (lz) {
		const char *e = lazy_error(lz);

		if (e && vm->exit_kind == VM_EXIT_ERROR)
			snprintf(msg, sizeof(msg), "%s", e);
		lazy_stop(lz);
		store = atomic_exchange(&lazy_store, NULL);
	}
	store_close(store);
	if (msg[0])
		fprintf(stderr, "hv: %s: %s\n", vm->cfg.name, msg);
	else if (say_exit)
		report_exit(vm, vm->cfg.name);
	vmsig_set_vm(sig, NULL);
	vm_destroy(vm);
	return console_end(msg[0] && !rc ? VM_STATUS_CRASH : rc);
}

static int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"control", required_argument, NULL, 'S'},
	    {"paused", no_argument, NULL, 'p'},
	    {"run-until", required_argument, NULL, 'U'},
	    {"save-to", required_argument, NULL, 'O'},
	    {"store", required_argument, NULL, 's'},
	    {"lazy", no_argument, NULL, 'l'},
	    {"report", required_argument, NULL, 'r'},
	    {"console-socket", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *control_path = NULL, *save_to = NULL, *store_dir = NULL, *file;
	bool lazy = false;
	struct store *store = NULL;
	struct lazy *lz = NULL;
	unsigned long long until = 0;
	bool paused = false;
	struct control *ctl = NULL;
	struct hv_error err = {0};
	static struct vmsig sig; /* the watching thread outlives this frame */
	static struct vm vm;
	const struct lazy_ops ops = {.resident = lazy_resident, .fatal = lazy_fatal, .arg = &vm};
	char *end;
	int c, rc, cout, cin;

	clock_gettime(CLOCK_MONOTONIC, &report.t0);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":S:s:lr:ph", opts, NULL)) != -1) {
		switch (c) {
		case 'S': control_path = optarg; break;
		case 's': store_dir = optarg; break;
		case 'l': lazy = true; break;
		case 'r': report.path = optarg; break;
		case 'C': restore_console_path = optarg; break;
		case 'p': paused = true; break;
		case 'U':
			errno = 0;
			until = strtoull(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno || !until)
				return die_usage("--run-until '%s': must be a positive number",
				                 optarg);
			break;
		case 'O': save_to = optarg; break;
		case 'h': fputs(usage_restore, stdout); return 0;
		case ':': return die_usage("restore: option '%s' needs a value", argv[optind - 1]);
		default:
			return die_usage("restore: unknown option '%s' (see 'hv restore --help')",
			                 argv[optind - 1]);
		}
	}
	if (optind == argc)
		return die_usage("restore: missing %s (see 'hv restore --help')",
		                 store_dir ? "ID" : "FILE");
	if (argc - optind > 1)
		return die_usage("restore: unexpected argument '%s' after %s", argv[optind + 1],
		                 store_dir ? "ID" : "FILE");
	file = argv[optind];
	if (lazy && !store_dir)
		return die_usage("--lazy needs --store");
	if (paused && !control_path)
		return die_usage("--paused needs --control: nothing could resume the VM");
	if (save_to && !until)
		return die_usage("--save-to needs --run-until");
	restore_control_path = control_path;

	vmsig_block(&sig);
	signal(SIGPIPE, SIG_IGN);

	if (console_start(restore_console_path, &cout, &cin, &err) < 0)
		return die_usage("%s", err.msg);
	if (store_dir) {
		if (ckpt_open_store(store_dir, false, &store, &err) < 0)
			return console_end(die_usage("%s", err.msg));
		if (lazy) {
			atomic_store(&lazy_store, store);
			rc = ckpt_restore_lazy(store, file, &vm, cout, cin, &ops, &lz, &err);
		} else {
			rc = ckpt_restore_counted(store, file, &vm, cout, cin, &report.st, &err);
			store_close(store); /* every page is in RAM: the store is done with */
			store = NULL;
		}
		if (rc < 0) {
			atomic_store(&lazy_store, NULL);
			store_close(store);
			return console_end(die_usage("%s", err.msg));
		}
	} else if (savefile_read(&vm, file, cout, cin, &err) < 0) {
		return console_end(die_usage("%s", err.msg));
	} else {
		report.st.pages_total = vm.mem.npages; /* pages: the save file does not count */
	}
	if (!lz) /* resident before it runs */
		report.resident_ms = 0;
	vmsig_watch(&sig, &vm, NULL);
	if (until) {
		rc = restore_run_until(&vm, lz, until, save_to);
		return restore_finish(&vm, &sig, lz, store, rc, false);
	}
	if (control_path && !(ctl = control_start(&vm, control_path, &err))) {
		restore_finish(&vm, &sig, lz, store, 0, false);
		return die_usage("%s", err.msg);
	}
	/* --paused: the vCPUs park before their first instruction. */
	if (paused)
		vm_request_pause(&vm);
	if (vm_start(&vm, &err) < 0 || (paused && vm_pause(&vm, &err) < 0)) {
		control_stop(ctl);
		/* A lazy restore that failed before the start says why (status 125). */
		if (lz && lazy_error(lz))
			return restore_finish(&vm, &sig, lz, store, VM_STATUS_CRASH, false);
		fprintf(stderr, "hv: %s: %s\n", vm.cfg.name, err.msg);
		restore_finish(&vm, &sig, lz, store, 0, false);
		return EXIT_USAGE;
	}
	report_first_run(&report);
	rc = vm_wait(&vm);
	control_stop(ctl);
	return restore_finish(&vm, &sig, lz, store, rc, true);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("hv: missing command: run or restore (see 'hv --help')\n", stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("hv %s\n", HV_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc - 1, argv + 1);
	return die_usage("unknown command '%s' (see 'hv --help')", argv[1]);
}
