/*
 * incoming.h - live migration, the destination side (migration.h has the protocol).
 *
 * incoming_run accepts one migration on a listener the caller owns: the main connection,
 * then the page connections it announces (matched by the migration's random id), builds
 * the VM from VM_CONFIG, applies pages from every channel on a thread per channel (a
 * page's later generation always wins), loads vCPU and device state, answers READY and
 * resumes the VM on GO. Everything that arrives is hostile: records are validated by the
 * stream, page and state loaders, and a connection that does not belong to this
 * migration fails it rather than touching the VM.
 */
#ifndef HV_MIGRATE_INCOMING_H
#define HV_MIGRATE_INCOMING_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/vm.h"
#include "migrate/chan.h"

struct incoming_stats {
	bool accepted;              /* a connection came (the wait did not just time out) */
	bool vm_created;            /* the peer got as far as VM_CONFIG */
	char source[CHAN_ADDR_MAX]; /* the main connection's peer */
	char tls_version[16];       /* "" for plaintext */
	unsigned channels;
	uint32_t rounds;        /* pre-copy rounds, the switchover's included */
	uint64_t pages;         /* page entries applied (later versions included) */
	uint64_t bytes_wire;    /* received on all connections */
	uint64_t total_ms;      /* first byte of the migration to resume */
	uint64_t switchover_ms; /* SWITCHOVER received to READY sent (state load) */
	uint64_t resume_us;     /* GO received to vCPUs resumed */
};

/*
 * How long the handshake may take (page channels to connect and introduce themselves;
 * GO gets three times as long). 10 s; the fuzzer shortens it.
 */
extern int incoming_timeout_ms;

/*
 * incoming_admit - when set, called with the VM once VM_CONFIG has built it and before
 * any page is taken: -1 with @err refuses it (the migration fails, the source keeps its
 * VM). hvmigrate recv --hvd asks hvd through it whether the VM's name is free here.
 */
extern int (*incoming_admit)(struct vm *vm, struct hv_error *err);

/*
 * incoming_run - accept and complete one migration into @vm (which it initialises; the
 * console goes to @console_out/@console_in as for vm_create). Waits up to @accept_ms for
 * the first connection (-1: forever). Returns 0 with the VM started (running, or parked
 * before its first instruction if the source VM was paused or @paused is set), -1 with @err when
 * the migration failed: nothing runs and
 * @vm holds nothing (destroyed). @st may be NULL.
 */
int incoming_run(struct chan_listener *l, struct chan_tls *tls, int accept_ms, bool paused,
                 struct vm *vm, int console_out, int console_in, struct incoming_stats *st,
                 struct hv_error *err);

/*
 * incoming_abort - from any thread (a signal's): make incoming_run, now or later, fail
 * at once with ECANCELED unless GO has already come (the VM is then the caller's to
 * stop). For good: meant for a process on its way out.
 */
void incoming_abort(void);

#endif
