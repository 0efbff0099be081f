/*
 * dirty_overhead.c - what the dirty log costs a guest that writes memory.
 *
 * Runs memtouch on the emu twice per round, once with the dirty log off and once with it
 * on and harvested every --interval ms by a separate thread (as a pre-copy migration
 * would), alternating so that noise hits both alike. Prints each run, the best times and
 * the overhead. The goal (issue 2) is at most 10 %.
 *
 *   build/bench/dirty_overhead [--rounds N] [--interval MS] [--cmdline STR] MEMTOUCH_ELF
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hv/dirty.h"
#include "hv/loader/pvh.h"
#include "hv/vm.h"

struct harvester {
	struct vm *vm;
	unsigned interval_ms;
	_Atomic bool stop;
	uint64_t pages, harvests;
	uint64_t *bitmap;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *harvest_loop(void *arg)
{
	struct harvester *h = arg;
	uint64_t words = dirty_bitmap_words(&h->vm->mem);
	struct timespec ts = {h->interval_ms / 1000, (h->interval_ms % 1000) * 1000000L};

	while (!atomic_load(&h->stop)) {
		nanosleep(&ts, NULL);
		memset(h->bitmap, 0, words * 8);
		h->pages += dirty_harvest(&h->vm->mem, h->bitmap);
		h->harvests++;
	}
	return NULL;
}

/* run_once - one memtouch run; returns seconds, or -1 if the guest failed. */
static double run_once(const char *elf, const char *cmdline, bool log, unsigned interval,
		       uint64_t *pages, uint64_t *harvests)
{
	struct vm_config cfg = {.ram_size = 256ULL << 20, .nvcpus = 1};
	struct harvester h = {.interval_ms = interval};
	struct x86_state *st = calloc(1, sizeof(*st));
	struct hv_error err = {0};
	struct vm *vm = calloc(1, sizeof(*vm));
	pthread_t thr;
	double t0, t1;
	int devnull = open("/dev/null", O_WRONLY), rc;

	snprintf(cfg.name, sizeof(cfg.name), "bench");
	if (!st || !vm || devnull < 0 ||
	    vm_create(vm, &cfg, &accel_emu, devnull, -1, &err) < 0 ||
	    vm_get_state(vm, 0, st, &err) < 0 || pvh_load_file(&vm->mem, elf, cmdline, st, &err) < 0 ||
	    vm_set_state(vm, 0, st, &err) < 0) {
		fprintf(stderr, "dirty_overhead: %s\n", err.msg);
		exit(2);
	}
	h.vm = vm;
	h.bitmap = calloc(dirty_bitmap_words(&vm->mem), 8);
	if (log) {
		dirty_start(&vm->mem);
		pthread_create(&thr, NULL, harvest_loop, &h);
	}
	t0 = now_s();
	if (vm_start(vm, &err) < 0) {
		fprintf(stderr, "dirty_overhead: %s\n", err.msg);
		exit(2);
	}
	rc = vm_wait(vm);
	t1 = now_s();
	if (log) {
		atomic_store(&h.stop, true);
		pthread_join(thr, NULL);
	}
	*pages = h.pages;
	*harvests = h.harvests;
	vm_destroy(vm);
	free(vm);
	free(st);
	free(h.bitmap);
	close(devnull);
	return rc == 0 ? t1 - t0 : -1;
}

int main(int argc, char **argv)
{
	const char *cmdline = "start=4M end=192M passes=64 report=1000";
	unsigned rounds = 3, interval = 20;
	double best_off = 1e9, best_on = 1e9;
	int opt;

	static const struct option opts[] = {
		{"rounds", required_argument, NULL, 'r'},
		{"interval", required_argument, NULL, 'i'},
		{"cmdline", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	while ((opt = getopt_long(argc, argv, "r:i:c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'r': rounds = (unsigned)atoi(optarg); break;
		case 'i': interval = (unsigned)atoi(optarg); break;
		case 'c': cmdline = optarg; break;
		default:
			fprintf(opt == 'h' ? stdout : stderr,
				"usage: dirty_overhead [--rounds N] [--interval MS] [--cmdline STR] "
				"MEMTOUCH_ELF\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind != argc - 1 || rounds < 1 || interval < 1) {
		fprintf(stderr, "usage: dirty_overhead [--rounds N] [--interval MS] MEMTOUCH_ELF\n");
		return 2;
	}

	printf("memtouch '%s' on emu, 256M RAM; log on = harvest every %u ms\n", cmdline,
	       interval);
	printf("%-6s %-4s %10s %12s %9s\n", "round", "log", "seconds", "pages_seen", "harvests");
	for (unsigned r = 1; r <= rounds; r++) {
		for (int log = 0; log <= 1; log++) {
			uint64_t pages = 0, harvests = 0;
			double t = run_once(argv[optind], cmdline, log, interval, &pages, &harvests);

			if (t < 0) {
				fprintf(stderr, "dirty_overhead: memtouch failed (log %s)\n",
					log ? "on" : "off");
				return 1;
			}
			printf("%-6u %-4s %10.3f %12llu %9llu\n", r, log ? "on" : "off", t,
			       (unsigned long long)pages, (unsigned long long)harvests);
			if (log && t < best_on)
				best_on = t;
			if (!log && t < best_off)
				best_off = t;
		}
	}
	printf("best: off %.3f s, on %.3f s, overhead %+.1f %% (goal <= 10 %%)\n", best_off,
	       best_on, (best_on / best_off - 1) * 100);
	return 0;
}
