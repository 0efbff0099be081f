/*
 * mig_proto.h - the control records of a migration stream (docs/migration.md).
 *
 * A migration uses one main connection and 1..MIG_CHANNELS_MAX page connections. Each
 * direction of each connection is a state stream (migrate/stream.h). Source to
 * destination, main: MIG_HELLO, VM_CONFIG, MIG_ROUND..., VCPU, DEVICE..., MIG_SWITCHOVER,
 * MIG_GO; page channel i: MIG_CHANNEL, PAGE_DATA..., END. Destination to source, main
 * only: MIG_ACCEPT (VM created, all channels attached), then MIG_READY or MIG_ERROR, then
 * MIG_RUNNING. Either side may send MIG_ERROR with a message before it hangs up.
 *
 * Catching up: after a round the source puts MIG_SYNC(gen) on every page channel and
 * sends MIG_ROUND(gen, sync); the destination answers MIG_SYNCED(gen) on main once every
 * channel has applied everything before its MIG_SYNC. The source waits for it before it
 * switches over, so the pause never includes pages still queued on the way.
 *
 * Every body is a tagged-field body (hv/state_io.h) carrying the protocol version. One
 * struct holds any of them; mig_msg_read validates a received record (hostile) into it.
 */
#ifndef HV_MIGRATE_MIG_PROTO_H
#define HV_MIGRATE_MIG_PROTO_H

#include <stdint.h>

#include "hv/error.h"
#include "migrate/migration.h"
#include "migrate/stream.h"

#define MIG_PROTO_VERSION 1

struct mig_msg {
	uint32_t type;                    /* REC_MIG_* */
	uint32_t version;                 /* MIG_PROTO_VERSION */
	uint64_t id[2];                   /* HELLO, CHANNEL: the migration's random id */
	uint32_t channels;                /* HELLO: page connections to expect */
	uint32_t index;                   /* CHANNEL: 0..channels-1 */
	uint64_t ram_size;                /* HELLO */
	uint32_t gen;                     /* SWITCHOVER: generation of the final pages;
	                                   * ROUND: the round */
	uint64_t pages[MIG_CHANNELS_MAX]; /* SWITCHOVER: page entries sent per channel */
	uint64_t value;                   /* ROUND: remaining bytes; SWITCHOVER: 1 if the
	                                   * VM was running (resume it); RUNNING: microseconds
	                                   * from GO received to vCPUs resumed */
	uint32_t sync;           /* ROUND: page channels carry SYNC(gen); answer SYNCED(gen) */
	char text[HV_ERROR_MSG]; /* ERROR: why */
};

/* mig_msg_write - append @msg (its type decides the fields) to @s; flushes nothing. */
int mig_msg_write(struct stream *s, const struct mig_msg *msg, struct hv_error *err);

/*
 * mig_msg_parse - decode record @rec (untrusted; type REC_MIG_*) into @msg: every field
 * of its type present and sane (version, channel counts and indexes in range). -1 with
 * @err naming the record and field.
 */
int mig_msg_parse(const struct record *rec, const char *name, struct mig_msg *msg,
                  struct hv_error *err);

/*
 * mig_msg_expect - read the next record of @s, which must be a REC_MIG_* of type @type:
 * MIG_ERROR from the peer becomes -1 with "PEER: peer reports: TEXT"; anything else
 * unexpected is an error naming both types. 0 on success.
 */
int mig_msg_expect(struct stream *s, uint32_t type, struct mig_msg *msg, struct hv_error *err);

#endif
