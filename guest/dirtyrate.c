/*
 * dirtyrate.c - dirty guest memory at a chosen rate, for migration and dirty-log tests.
 *
 * Arguments: wss=SIZE (working set, default 32M) start=SIZE (default: first free address)
 * rate=MBPS (MiB/s, 0 = as fast as possible) seconds=N (0 = forever) report=1 (a line per
 * second) fill=1 (write every word of each page, as a guest copying data does: the CPU
 * cost per dirtied page is then that of a page, which is what throttling slows down). Pages are
 * picked with a xorshift64 PRNG and one u64 per page is written; the pacing compares bytes written
 * with TSC time, in batches of 64 pages. Ends with "dirtyrate achieved=X MB/s pages=N" (N page
 * writes, MB = MiB, time by rt_tsc_hz()).
 */
#include "rt/rt.h"

#define BATCH 64

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int main(void)
{
	uint64_t start = rt_arg_size("start", rt_free_start());
	uint64_t wss = rt_arg_size("wss", 32ull << 20);
	uint64_t rate = rt_arg_size("rate", 0);
	uint64_t seconds = rt_arg_size("seconds", 5);
	uint64_t report = rt_arg_size("report", 0);
	uint64_t fill = rt_arg_size("fill", 0);
	const char *why = rt_check_range(start, start + wss);

	if (why) {
		printf("dirtyrate: bad working set start=0x%lx wss=0x%lx: %s\n", start, wss, why);
		return EXIT_BADARG;
	}
	uint64_t hz = rt_tsc_hz(), npages = wss >> 12, seed = 0x9e3779b97f4a7c15ull;
	printf("dirtyrate start=0x%lx wss=%luK rate=%lu MB/s seconds=%lu tsc=%lu Hz (%s)\n", start,
	       wss >> 10, rate, seconds, hz, rt_tsc_source());

	uint64_t t0 = rt_now(), now = t0, pages = 0, next_report = t0 + hz, last_pages = 0;
	for (;;) {
		for (int i = 0; i < BATCH; i++) {
			uint64_t pfn = xorshift64(&seed) % npages;
			volatile uint64_t *p = (volatile uint64_t *)(start + (pfn << 12));
			if (fill)
				for (int w = 0; w < 512; w++)
					p[w] = pages + (uint64_t)w;
			else
				p[(pages & 7) * 64] =
				    pages; /* vary the offset within the page too */
			pages++;
		}
		now = rt_now();
		if (rate) {
			/* TSC ticks by which @pages pages are due: pages * 4 KiB / (rate MiB/s) */
			uint64_t due = t0 + pages * (hz / 256) / rate;
			while ((now = rt_now()) < due)
				__asm__ volatile("pause");
		}
		if (report && now >= next_report) {
			printf("dirtyrate t=%lu MB/s=%lu\n", (now - t0) / hz,
			       (pages - last_pages) / 256);
			last_pages = pages;
			next_report += hz;
		}
		if (seconds && now - t0 >= seconds * hz)
			break;
	}
	uint64_t elapsed = now - t0;
	printf("dirtyrate achieved=%lu MB/s pages=%lu\n",
	       pages * (hz / 256) / (elapsed ? elapsed : 1), pages);
	return EXIT_OK;
}
