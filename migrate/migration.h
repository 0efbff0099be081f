/*
 * migration.h - live migration, the source side: pre-copy rounds, switchover, statistics.
 *
 * A migration runs on its own thread inside the source VMM process. It connects to a
 * receiver (migrate/incoming.h), sends all of guest RAM with the dirty log on, then the
 * pages dirtied meanwhile in rounds, and switches over once the rest fits the downtime
 * limit (docs/migration.md):
 *
 *   source                                destination
 *   pause vCPUs
 *   final pages, VCPU, DEVICE, SWITCHOVER ->
 *                                         load, check everything
 *                                      <- READY              (or ERROR: source resumes)
 *   GO                                 ->
 *                                         resume vCPUs
 *                                      <- RUNNING
 *   shut down ("migrated")
 *
 * Ownership: until READY has arrived the source owns the VM; any failure, timeout or
 * cancel resumes it (it was only paused) and the destination discards what it loaded.
 * Once GO is sent the destination owns it: the source never resumes on its own again. If
 * RUNNING then fails to come (the link or the destination died at that instant) the
 * source cannot know whether the destination runs the VM, so it keeps its copy paused
 * and reports the result "in-doubt"; an operator resumes it only if the destination does
 * not run it. A migration therefore never leaves two running copies, and never zero
 * copies of the VM's state.
 */
#ifndef HV_MIGRATE_MIGRATION_H
#define HV_MIGRATE_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"

struct vm;

#define MIG_CHANNELS_MAX        16
#define MIG_DOWNTIME_DEFAULT_MS 300 /* QEMU's and Cloud Hypervisor's default limit */
#define MIG_MAX_ROUNDS_DEFAULT  30

enum mig_stall { MIG_STALL_ABORT, MIG_STALL_THROTTLE, MIG_STALL_RAISE_DOWNTIME };

struct mig_params {
	char uri[300]; /* tcp:HOST:PORT or unix:PATH */
	bool tls;      /* the files below are set */
	char tls_cert[4096], tls_key[4096], tls_ca[4096];
	char tls_hostname[256]; /* "" : the host of @uri */
	uint64_t downtime_ms;   /* limit; 0: MIG_DOWNTIME_DEFAULT_MS */
	uint64_t bandwidth;     /* bytes/s on the wire; 0: unlimited */
	int zstd_level;         /* 0: pages go raw */
	unsigned channels;      /* page connections, 1..MIG_CHANNELS_MAX */
	unsigned max_rounds;    /* 0: MIG_MAX_ROUNDS_DEFAULT */
	uint64_t max_bytes;     /* cap on bytes sent; 0: 8 x guest RAM */
	enum mig_stall on_stall;
	uint64_t timeout_ms;  /* whole migration; 0: none */
	bool switchover_hold; /* stay in pre-copy until migration_release() (tests) */
	bool no_delta;        /* never send a page as a delta (pagesend.h) */
	uint64_t delta_cache; /* bytes of last-sent pages kept for deltas; 0: RAM/16,
	                       * at least 16 MiB, at most 256 MiB */
};

/* mig_params_default - the defaults above (zstd level 1, 1 channel, abort on stall). */
void mig_params_default(struct mig_params *p);

enum mig_phase {
	MIG_NONE,       /* no migration has run */
	MIG_SETUP,      /* connecting, handshake */
	MIG_PRECOPY,    /* first pass and rounds; the VM runs */
	MIG_SWITCHOVER, /* paused, final state in flight, waiting for READY */
	MIG_COMMITTED,  /* GO sent: the destination owns the VM */
	MIG_COMPLETED,  /* RUNNING received; the source VM has been shut down */
	MIG_FAILED,     /* the source VM runs on (or was never touched) */
	MIG_CANCELLED,  /* as failed, on request */
	MIG_IN_DOUBT,   /* after GO, no RUNNING: the source VM is kept paused */
};

const char *mig_phase_name(enum mig_phase p);

/* mig_phase_final - true once the migration thread is done. */
static inline bool mig_phase_final(enum mig_phase p)
{
	return p == MIG_COMPLETED || p == MIG_FAILED || p == MIG_CANCELLED || p == MIG_IN_DOUBT;
}

struct mig_stats {
	enum mig_phase phase;
	unsigned round; /* 1 = the first pass over all memory */
	uint64_t ram_bytes;
	uint64_t remaining_bytes; /* dirty, not yet sent (guest bytes) */
	uint64_t dirty_rate;      /* bytes/s, from the dirty log */
	uint64_t bandwidth;       /* bytes/s on the wire, measured over the last round */
	uint64_t est_downtime_ms; /* if switching over now */
	uint64_t downtime_limit_ms;
	unsigned throttle_pct;
	uint64_t bytes_wire; /* all channels, TLS included */
	uint64_t pages_sent; /* pages dealt with: entries sent (zero ones included) plus the
	                      * zero pages the first pass leaves out */
	uint64_t pages_zero; /* of them, zero pages (sent as a bit or skipped) */
	uint64_t pages_zstd, pages_raw;
	uint64_t pages_delta; /* sent as a delta against their previous version */
	uint64_t total_ms;    /* start to end (or to now) */
	uint64_t setup_ms;    /* connect + handshake */
	uint64_t downtime_ms; /* source pause to destination resume */
	uint64_t precopy_ms;
	double throughput_mbps;   /* bytes_wire * 8 / total time, megabits/s */
	double cpu_seconds;       /* migration threads on the source */
	char tls_version[16];     /* "" for plaintext */
	char error[HV_ERROR_MSG]; /* why it failed, was cancelled or is in doubt */
};

struct migration;

/*
 * Progress callback: called on the migration thread after setup, after every round and
 * once at the end (phase final). @st is valid only during the call.
 */
typedef void (*mig_progress_fn)(void *opaque, const struct mig_stats *st);

/*
 * migration_start - begin migrating @vm (running or paused) per @p. Returns at once; the
 * migration thread owns the dirty log of @vm until it ends. NULL with @err on bad
 * parameters (before anything is touched). One migration per VM at a time: the caller
 * serialises (the control socket does).
 */
struct migration *migration_start(struct vm *vm, const struct mig_params *p,
                                  mig_progress_fn progress, void *opaque, struct hv_error *err);

/*
 * migration_cancel - before the commit point: abort, resume the VM if the migration
 * paused it, and report MIG_CANCELLED (the thread does this; the call returns at once).
 * After GO: refused, -1 with @err saying the destination owns the VM.
 */
int migration_cancel(struct migration *m, struct hv_error *err);

/* migration_release - let a switchover_hold migration switch over when it converges. */
void migration_release(struct migration *m);

/* migration_stats - a consistent copy of the current statistics. Any thread. */
void migration_stats(struct migration *m, struct mig_stats *st);

/* migration_free - wait for the thread to end, then free. @m may be NULL. */
void migration_free(struct migration *m);

#endif
