/*
 * test_prune.c - the retention policy (checkpoint/prune.h): restic's forget, per VM.
 *
 * Synthetic checkpoints at chosen times (TZ=UTC, so days and weeks are fixed), and the
 * exact set a cron user would see kept.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "checkpoint/prune.h"

#define MAXN 256

static struct prune_item items[MAXN];
static char ids[MAXN][20];
static unsigned why[MAXN];
static size_t n;

static uint64_t utc(int y, int mon, int d, int h, int min)
{
	struct tm tm = {
	    .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h, .tm_min = min};

	return (uint64_t)timegm(&tm) * 1000000000ull;
}

static void reset(void)
{
	memset(items, 0, sizeof(items));
	memset(why, 0xff, sizeof(why));
	n = 0;
}

static size_t add(const char *vm, uint64_t ns, const char *const *tags, size_t ntags)
{
	snprintf(ids[n], sizeof(ids[n]), "%016zx", n);
	items[n] = (struct prune_item){
	    .id = ids[n], .vm = vm, .time_ns = ns, .tags = tags, .ntags = ntags};
	return n++;
}

static void plan(const struct prune_policy *p)
{
	struct hv_error err;

	if (prune_plan(items, n, p, why, &err) < 0)
		fail_msg("prune_plan: %s", err.msg);
}

static size_t kept(void)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += why[i] != 0;
	return k;
}

/* No policy would remove every checkpoint: refused, nothing decided. */
static void test_empty_policy_refused(void **st)
{
	struct prune_policy p = {0};
	struct hv_error err;

	reset();
	add("vm", utc(2026, 1, 1, 0, 0), NULL, 0);
	assert_true(prune_policy_empty(&p));
	assert_int_equal(prune_plan(items, n, &p, why, &err), -1);
	assert_int_equal(err.code, EINVAL);
	assert_non_null(strstr(err.msg, "every checkpoint"));
	assert_int_equal(why[0], ~0u);
	p.daily = -5;
	assert_int_equal(prune_plan(items, n, &p, why, &err), -1);
	assert_non_null(strstr(err.msg, "keep-daily"));
}

/* keep-last 3 keeps the three newest, whatever order they come in. */
static void test_keep_last(void **st)
{
	struct prune_policy p = {.last = 3};
	char r[64];

	reset();
	for (int i = 9; i >= 0; i--) /* newest first in the input */
		add("vm", utc(2026, 3, 1, 0, 0) + (uint64_t)i * 1000, NULL, 0);
	plan(&p);
	assert_int_equal(kept(), 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(why[i], PRUNE_KEEP_LAST);
	assert_string_equal(prune_reasons(why[0], r, sizeof(r)), "last");
	/* Checkpoints in the same second are told apart by their nanoseconds. */
	reset();
	add("vm", 5000000001ull, NULL, 0);
	add("vm", 5000000003ull, NULL, 0);
	add("vm", 5000000002ull, NULL, 0);
	p.last = 1;
	plan(&p);
	assert_int_equal(why[0], 0);
	assert_int_equal(why[1], PRUNE_KEEP_LAST);
	assert_int_equal(why[2], 0);
}

/* Every 20 minutes for 10 hours, keep-hourly 4: the last of each of the newest 4 hours. */
static void test_keep_hourly(void **st)
{
	struct prune_policy p = {.hourly = 4};

	reset();
	for (int h = 0; h < 10; h++)
		for (int m = 0; m < 60; m += 20)
			add("vm", utc(2026, 5, 10, h, m), NULL, 0);
	plan(&p);
	assert_int_equal(kept(), 4);
	for (int h = 6; h < 10; h++)
		assert_int_equal(why[h * 3 + 2], PRUNE_KEEP_HOURLY); /* hh:40 */
	/* Counts left at the oldest: it is kept too, as restic does. */
	reset();
	add("vm", utc(2026, 5, 10, 1, 10), NULL, 0);
	add("vm", utc(2026, 5, 10, 1, 50), NULL, 0);
	add("vm", utc(2026, 5, 10, 2, 5), NULL, 0);
	p.hourly = 5;
	plan(&p);
	assert_int_equal(why[0], PRUNE_KEEP_HOURLY << PRUNE_OLDEST_SHIFT);
	assert_int_equal(why[1], PRUNE_KEEP_HOURLY);
	assert_int_equal(why[2], PRUNE_KEEP_HOURLY);
	{
		char r[64];
		assert_string_equal(prune_reasons(why[0], r, sizeof(r)), "oldest hourly");
	}
}

/*
 * One checkpoint a day at noon, 2026-01-01 (a Thursday) to 2026-04-30: keep-daily 7,
 * keep-weekly 4, keep-monthly 3 keep Apr 24..30, the Sundays Apr 26, 19 and 12 (ISO
 * weeks end on Sunday), and the last days of April, March and February.
 */
static void test_daily_weekly_monthly(void **st)
{
	struct prune_policy p = {.daily = 7, .weekly = 4, .monthly = 3};
	size_t apr = 90; /* index of Apr 1 */

	reset();
	for (int d = 0; d < 120; d++)
		add("vm", utc(2026, 1, 1, 12, 0) + (uint64_t)d * 86400 * 1000000000ull, NULL, 0);
	plan(&p);
	assert_int_equal(kept(), 11);
	assert_int_equal(why[apr + 29], PRUNE_KEEP_DAILY | PRUNE_KEEP_WEEKLY | PRUNE_KEEP_MONTHLY);
	assert_int_equal(why[apr + 25], PRUNE_KEEP_DAILY | PRUNE_KEEP_WEEKLY); /* Sun Apr 26 */
	for (size_t d = 23; d < 29; d++)
		assert_true(why[apr + d] & PRUNE_KEEP_DAILY);
	assert_int_equal(why[apr + 18], PRUNE_KEEP_WEEKLY); /* Sun Apr 19 */
	assert_int_equal(why[apr + 11], PRUNE_KEEP_WEEKLY); /* Sun Apr 12 */
	assert_int_equal(why[apr - 1], PRUNE_KEEP_MONTHLY); /* Mar 31 */
	assert_int_equal(why[31 + 27], PRUNE_KEEP_MONTHLY); /* Feb 28 */
	assert_int_equal(why[apr + 22], 0);                 /* Thu Apr 23 */
	assert_int_equal(why[0], 0);                        /* counts ran out: no oldest */
}

/* ISO weeks cross the year: Thu 2026-12-31 and Fri 2027-01-01 are both in 2026-W53. */
static void test_iso_week_across_years(void **st)
{
	struct prune_policy p = {.weekly = 1, .yearly = 2};

	reset();
	add("vm", utc(2026, 12, 31, 9, 0), NULL, 0);
	add("vm", utc(2027, 1, 1, 9, 0), NULL, 0);
	plan(&p);
	assert_int_equal(why[1], PRUNE_KEEP_WEEKLY | PRUNE_KEEP_YEARLY);
	assert_int_equal(why[0], PRUNE_KEEP_YEARLY); /* its own year, not its week */
}

/* Each VM is its own group: keep-last 2 keeps two of each, interleaved in time. */
static void test_per_vm_groups(void **st)
{
	struct prune_policy p = {.last = 2};

	reset();
	for (int i = 0; i < 10; i++)
		add(i % 2 ? "beta" : "alpha", utc(2026, 2, 2, 2, i), NULL, 0);
	add("gamma", utc(2020, 1, 1, 0, 0), NULL, 0);
	plan(&p);
	assert_int_equal(kept(), 5);
	assert_true(why[8] && why[6] && why[9] && why[7] && why[10]);
}

/* keep-tag keeps every tagged checkpoint, uncounted, whatever its age. */
static void test_keep_tag(void **st)
{
	static const char *const gold[] = {"nightly", "gold"};
	static const char *const other[] = {"nightly"};
	const char *keep[] = {"gold"};
	struct prune_policy p = {.last = 1, .tags = keep, .ntags = 1};
	char r[64];

	reset();
	add("vm", utc(2025, 1, 1, 0, 0), gold, 2);
	add("vm", utc(2025, 6, 1, 0, 0), other, 1);
	add("vm", utc(2025, 7, 1, 0, 0), gold, 2);
	add("vm", utc(2026, 1, 1, 0, 0), other, 1);
	plan(&p);
	assert_int_equal(why[0], PRUNE_KEEP_TAG);
	assert_int_equal(why[1], 0);
	assert_int_equal(why[2], PRUNE_KEEP_TAG);
	assert_int_equal(why[3], PRUNE_KEEP_LAST);
	/* A tag-only policy is a policy: it removes the untagged. */
	p.last = 0;
	plan(&p);
	assert_int_equal(kept(), 2);
	why[0] = PRUNE_KEEP_LAST | PRUNE_KEEP_TAG | (PRUNE_KEEP_DAILY << PRUNE_OLDEST_SHIFT);
	assert_string_equal(prune_reasons(why[0], r, sizeof(r)), "last, oldest daily, tag");
}

/* keep-daily unlimited: one per day, for every day there is one. */
static void test_unlimited(void **st)
{
	struct prune_policy p = {.daily = PRUNE_UNLIMITED};

	reset();
	for (int d = 0; d < 40; d++)
		for (int h = 0; h < 24; h += 8)
			add("vm", utc(2026, 1, 1, h, 0) + (uint64_t)d * 86400 * 1000000000ull, NULL,
			    0);
	plan(&p);
	assert_int_equal(kept(), 40 + 1); /* + the oldest, counts never run out */
	for (int d = 0; d < 40; d++)
		assert_true(why[(size_t)d * 3 + 2] & PRUNE_KEEP_DAILY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_policy_refused),
	    cmocka_unit_test(test_keep_last),
	    cmocka_unit_test(test_keep_hourly),
	    cmocka_unit_test(test_daily_weekly_monthly),
	    cmocka_unit_test(test_iso_week_across_years),
	    cmocka_unit_test(test_per_vm_groups),
	    cmocka_unit_test(test_keep_tag),
	    cmocka_unit_test(test_unlimited),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
