/*
 * memtouch.c - the reference workload: count passes in every page of a range, and check.
 *
 * Arguments: start=SIZE (default: first free address, >= 2 MiB) end=SIZE (default 64M)
 * passes=N (default 4, 0 = forever) report=K (default 1). Each 4 KiB page of
 * [start, end) holds two u64 at offset 0: the number of the last pass that visited it and
 * the page's own frame number (gpa >> 12). Pass p expects every page to say p-1 and its
 * own frame (pass 1 expects a zero page), then writes p. So after any save/restore or
 * migration all counters are equal except for one run, at the point where the pass
 * stopped, one step behind; anything else is corruption, found on the next pass, reported
 * as "memtouch CORRUPT page=N expected=E found=F" with exit code 3. A range that is not
 * free RAM is refused with exit code 2. (Under QEMU, firmware leaves data near the top of
 * RAM, which pass 1 reports as corruption: keep the range well below it.)
 */
#include "rt/rt.h"

int main(void)
{
	uint64_t start = rt_arg_size("start", rt_free_start());
	uint64_t end = rt_arg_size("end", 64ull << 20);
	uint64_t passes = rt_arg_size("passes", 4);
	uint64_t report = rt_arg_size("report", 1);
	const char *why = rt_check_range(start, end);

	if (why) {
		printf("memtouch: bad range start=0x%lx end=0x%lx: %s\n", start, end, why);
		return EXIT_BADARG;
	}
	if (!report)
		report = 1;
	uint64_t first = start >> 12, last = end >> 12;
	printf("memtouch start=0x%lx end=0x%lx pages=%lu passes=%lu\n", start, end, last - first,
	       passes);

	for (uint64_t p = 1; !passes || p <= passes; p++) {
		for (uint64_t pfn = first; pfn < last; pfn++) {
			volatile uint64_t *page = (volatile uint64_t *)(pfn << 12);
			uint64_t count = page[0], index = page[1];
			uint64_t want_index = p == 1 ? 0 : pfn;

			if (count != p - 1 || index != want_index) {
				int bad_count = count != p - 1;
				printf("memtouch CORRUPT page=%lu expected=%lu found=%lu%s\n", pfn,
				       bad_count ? p - 1 : want_index, bad_count ? count : index,
				       bad_count ? "" : " (index word)");
				return EXIT_CORRUPT;
			}
			page[0] = p;
			page[1] = pfn;
		}
		if (p % report == 0)
			printf("memtouch pass %lu\n", p);
	}
	printf("memtouch done passes=%lu pages=%lu\n", passes, last - first);
	return EXIT_OK;
}
