/*
 * fault.h - fault injection for the migration tests: HV_MIGRATE_FAULT=POINT[:ACTION].
 *
 * POINT names a step of the protocol (docs/migration.md, "Faults"): handshake, first-pass,
 * rounds, switchover, after-ready, after-go. ACTION is kill (the default: the process
 * dies at once by SIGKILL, as if killed by an operator or the OOM killer) or drop (the
 * process cuts its connections there and carries on with the error that follows). The
 * variable is read by whichever side it is set for; unset, every check is one getenv.
 */
#ifndef HV_MIGRATE_FAULT_H
#define HV_MIGRATE_FAULT_H

#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* mig_fault - true when the connections must be dropped at @point (kill never returns). */
static inline bool mig_fault(const char *point)
{
	const char *f = getenv("HV_MIGRATE_FAULT");
	size_t n = strlen(point);

	if (!f || strncmp(f, point, n) || (f[n] && f[n] != ':'))
		return false;
	if (f[n] == ':' && !strcmp(f + n + 1, "drop"))
		return true;
	raise(SIGKILL);
	return true;
}

#endif
