/*
 * prune.c - the retention policy (prune.h): restic's forget, grouped by VM.
 *
 * Each rule is a bucket function of the time (hour, day, ISO week, month, year; for
 * keep-last, the position itself) and a count. Walking a group newest first, a rule
 * keeps a checkpoint whose bucket differs from the last one it kept, while its count
 * lasts: that is "the newest checkpoint of each of the last N periods that have one".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/prune.h"

enum { R_LAST, R_HOURLY, R_DAILY, R_WEEKLY, R_MONTHLY, R_YEARLY, R_N };

static const char *const rule_name[R_N] = {"last",   "hourly",  "daily",
                                           "weekly", "monthly", "yearly"};

bool prune_policy_empty(const struct prune_policy *p)
{
	return !p->last && !p->hourly && !p->daily && !p->weekly && !p->monthly && !p->yearly &&
	       !p->ntags;
}

/* The bucket of @t for rule @r (@nr: the position in the group, keep-last's bucket). */
static long bucket(int r, uint64_t ns, size_t nr)
{
	time_t t = (time_t)(ns / 1000000000ull);
	char w[16];
	struct tm tm;

	if (r == R_LAST)
		return (long)nr;
	localtime_r(&t, &tm);
	switch (r) {
	case R_HOURLY:
		return ((tm.tm_year + 1900L) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday) * 100 +
		       tm.tm_hour;
	case R_DAILY: return (tm.tm_year + 1900L) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
	case R_WEEKLY: /* ISO 8601: the year of the week's Thursday, week 1..53 */
		strftime(w, sizeof(w), "%G%V", &tm);
		return atol(w);
	case R_MONTHLY: return (tm.tm_year + 1900L) * 100 + tm.tm_mon + 1;
	default: return tm.tm_year + 1900L;
	}
}

static bool has_tag(const struct prune_item *it, const struct prune_policy *p)
{
	for (size_t i = 0; i < p->ntags; i++)
		for (size_t j = 0; j < it->ntags; j++)
			if (!strcmp(p->tags[i], it->tags[j]))
				return true;
	return false;
}

static const struct prune_item *sort_items;

/* By VM, then newest first (a later id first on equal times). */
static int cmp_item(const void *a, const void *b)
{
	const struct prune_item *x = &sort_items[*(const size_t *)a];
	const struct prune_item *y = &sort_items[*(const size_t *)b];
	int c = strcmp(x->vm, y->vm);

	if (c)
		return c;
	if (x->time_ns != y->time_ns)
		return x->time_ns > y->time_ns ? -1 : 1;
	return -strcmp(x->id, y->id);
}

static void plan_group(const struct prune_item *items, const size_t *ord, size_t n,
                       const struct prune_policy *p, unsigned *why)
{
	int count[R_N] = {p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
	long last[R_N];

	for (int r = 0; r < R_N; r++)
		last[r] = -1;
	for (size_t nr = 0; nr < n; nr++) {
		const struct prune_item *it = &items[ord[nr]];
		unsigned w = 0;

		if (has_tag(it, p))
			w |= PRUNE_KEEP_TAG;
		for (int r = 0; r < R_N; r++) {
			long v;

			if (count[r] == 0)
				continue;
			v = bucket(r, it->time_ns, nr);
			if (v != last[r]) {
				w |= 1u << r;
			} else if (nr == n - 1) {
				w |= (1u << r) << PRUNE_OLDEST_SHIFT;
			} else {
				continue;
			}
			last[r] = v;
			if (count[r] > 0)
				count[r]--;
		}
		why[ord[nr]] = w;
	}
}

int prune_plan(const struct prune_item *items, size_t n, const struct prune_policy *p,
               unsigned *why, struct hv_error *err)
{
	const int counts[R_N] = {p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
	size_t *ord, start = 0;

	if (prune_policy_empty(p))
		return hv_fail(
		    err, EINVAL,
		    "no --keep-* policy given: prune refuses to remove every checkpoint");
	for (int r = 0; r < R_N; r++)
		if (counts[r] < 0 && counts[r] != PRUNE_UNLIMITED)
			return hv_fail(err, EINVAL, "keep-%s: negative count %d", rule_name[r],
			               counts[r]);
	ord = malloc((n ? n : 1) * sizeof(*ord));
	if (!ord)
		return hv_fail(err, ENOMEM, "prune: out of memory");
	for (size_t i = 0; i < n; i++)
		ord[i] = i;
	sort_items = items;
	qsort(ord, n, sizeof(*ord), cmp_item);
	sort_items = NULL;
	for (size_t i = 1; i <= n; i++) {
		if (i < n && !strcmp(items[ord[i]].vm, items[ord[start]].vm))
			continue;
		plan_group(items, ord + start, i - start, p, why);
		start = i;
	}
	free(ord);
	return 0;
}

static void add(char *buf, size_t len, size_t *off, const char *pre, const char *word)
{
	int n;

	if (*off >= len)
		return;
	n = snprintf(buf + *off, len - *off, "%s%s%s", *off ? ", " : "", pre, word);
	if (n > 0)
		*off += (size_t)n;
}

char *prune_reasons(unsigned why, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int r = 0; r < R_N; r++) {
		if (why & (1u << r))
			add(buf, len, &off, "", rule_name[r]);
		if (why & ((1u << r) << PRUNE_OLDEST_SHIFT))
			add(buf, len, &off, "oldest ", rule_name[r]);
	}
	if (why & PRUNE_KEEP_TAG)
		add(buf, len, &off, "", "tag");
	return buf;
}
