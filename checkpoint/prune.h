/*
 * prune.h - the retention policy: which checkpoints `hvctl store DIR prune` keeps.
 *
 * restic's `forget` semantics, grouped by VM name. Within a group, newest first, rule
 * keep-last N keeps the N newest; keep-hourly/daily/weekly/monthly/yearly N keep the
 * newest checkpoint of each of the last N hours/days/ISO weeks/months/years (local time)
 * that have one; while a rule still has count left when it reaches the group's oldest
 * checkpoint, it keeps that one too (as restic does, so history reaches as far back as
 * the counts allow); keep-tag T keeps every checkpoint tagged T, uncounted. A checkpoint
 * kept by any rule is kept. A pure function of its inputs: no store, no clock.
 */
#ifndef CHECKPOINT_PRUNE_H
#define CHECKPOINT_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hv/error.h"

#define PRUNE_UNLIMITED (-1) /* a count that keeps one per period, without end */

struct prune_policy {
	int last, hourly, daily, weekly, monthly, yearly; /* 0: rule off */
	const char *const *tags;                          /* keep-tag; @ntags of them */
	size_t ntags;
};

/* One checkpoint as the policy sees it. */
struct prune_item {
	const char *id; /* ties in time are broken by id, the greater first */
	const char *vm;
	uint64_t time_ns; /* unix ns: several checkpoints may share a second */
	const char *const *tags;
	size_t ntags;
};

/* Why a checkpoint is kept: a set of these bits (0: removed). */
enum {
	PRUNE_KEEP_LAST = 1 << 0,
	PRUNE_KEEP_HOURLY = 1 << 1,
	PRUNE_KEEP_DAILY = 1 << 2,
	PRUNE_KEEP_WEEKLY = 1 << 3,
	PRUNE_KEEP_MONTHLY = 1 << 4,
	PRUNE_KEEP_YEARLY = 1 << 5,
	PRUNE_KEEP_TAG = 1 << 6,
};
/* A period rule's bit shifted by this: kept as the group's oldest, with counts left. */
#define PRUNE_OLDEST_SHIFT 8

/* prune_policy_empty - whether @p has no rule at all (prune must then refuse). */
bool prune_policy_empty(const struct prune_policy *p);

/*
 * prune_plan - apply @p to @n items: @why[i] gets item i's reasons (0: remove). Times
 * are bucketed in the local time zone (TZ). Fails with EINVAL, deciding nothing, for an
 * empty policy (it would remove everything) or a negative count other than
 * PRUNE_UNLIMITED; ENOMEM. @items are not reordered.
 */
int prune_plan(const struct prune_item *items, size_t n, const struct prune_policy *p,
               unsigned *why, struct hv_error *err);

/*
 * prune_reasons - @why as restic words ("last", "daily", "oldest weekly", "tag", ...),
 * comma-separated, into @buf of @len bytes. Returns @buf.
 */
char *prune_reasons(unsigned why, char *buf, size_t len);

#endif
