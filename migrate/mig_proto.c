/*
 * mig_proto.c - the migration control records, one symmetric function for all of them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hv/state_io.h"
#include "migrate/mig_proto.h"

static bool is_mig(uint32_t type)
{
	return (type >= REC_MIG_HELLO && type <= REC_MIG_ERROR) || type == REC_MIG_ROUND ||
	       type == REC_MIG_SYNC || type == REC_MIG_SYNCED;
}

/* The fields of each record type, saved or loaded. */
static int msg_io(struct state_io *io, struct mig_msg *m)
{
	char n[16];

	STATE_FIELD(io, "version", &m->version);
	if (io->loading && !io->failed && m->version != MIG_PROTO_VERSION)
		return state_io_fail(
		    io, "protocol version %u %s (this hv speaks version %u)", m->version,
		    m->version > MIG_PROTO_VERSION ? "is newer" : "is unknown", MIG_PROTO_VERSION);
	switch (m->type) {
	case REC_MIG_HELLO:
		STATE_BYTES(io, "id", m->id, sizeof(m->id));
		STATE_FIELD(io, "channels", &m->channels);
		STATE_FIELD(io, "ram_size", &m->ram_size);
		STATE_CHECK(io, m->channels >= 1 && m->channels <= MIG_CHANNELS_MAX);
		break;
	case REC_MIG_CHANNEL:
		STATE_BYTES(io, "id", m->id, sizeof(m->id));
		STATE_FIELD(io, "index", &m->index);
		STATE_CHECK(io, m->index < MIG_CHANNELS_MAX);
		break;
	case REC_MIG_SWITCHOVER:
		STATE_FIELD(io, "gen", &m->gen);
		STATE_FIELD(io, "running", &m->value);
		STATE_CHECK(io, m->value <= 1);
		STATE_FIELD(io, "channels", &m->channels);
		STATE_CHECK(io, m->channels >= 1 && m->channels <= MIG_CHANNELS_MAX);
		for (uint32_t i = 0; !io->failed && i < m->channels; i++) {
			snprintf(n, sizeof(n), "pages%u", i);
			STATE_FIELD(io, n, &m->pages[i]);
		}
		break;
	case REC_MIG_ROUND:
		STATE_FIELD(io, "gen", &m->gen);
		STATE_FIELD(io, "value", &m->value);
		/* Absent in streams from before catching up existed: no wait. */
		if (io->loading ? state_has(io, "sync") : m->sync != 0)
			STATE_FIELD(io, "sync", &m->sync);
		break;
	case REC_MIG_SYNC:
	case REC_MIG_SYNCED: STATE_FIELD(io, "gen", &m->gen); break;
	case REC_MIG_RUNNING: STATE_FIELD(io, "value", &m->value); break;
	case REC_MIG_ERROR: STATE_STR(io, "text", m->text, sizeof(m->text)); break;
	default: /* ACCEPT, READY, GO: the version only */ break;
	}
	return state_io_result(io);
}

int mig_msg_write(struct stream *s, const struct mig_msg *msg, struct hv_error *err)
{
	struct mig_msg m = *msg;
	struct state_io io;
	const void *parts[1];
	size_t lens[1];
	int rc;

	m.version = MIG_PROTO_VERSION;
	state_io_save_init(&io, stream_record_name(m.type), err);
	msg_io(&io, &m);
	parts[0] = io.buf;
	lens[0] = io.len;
	rc = io.failed ? -1 : stream_write_record(s, m.type, parts, lens, 1, err);
	state_io_free(&io);
	return rc;
}

int mig_msg_parse(const struct record *rec, const char *name, struct mig_msg *msg,
                  struct hv_error *err)
{
	struct state_io io;
	char what[96];

	memset(msg, 0, sizeof(*msg));
	snprintf(what, sizeof(what), "%s: record %s at offset %llu", name,
	         stream_record_name(rec->type), (unsigned long long)rec->off);
	if (!is_mig(rec->type))
		return hv_fail(err, EPROTO, "%s: not a migration control record", what);
	msg->type = rec->type;
	if (state_io_load_init(&io, what, rec->body, rec->len, err) < 0)
		return -1;
	return msg_io(&io, msg);
}

int mig_msg_expect(struct stream *s, uint32_t type, struct mig_msg *msg, struct hv_error *err)
{
	struct record r;
	int got;

	do {
		got = stream_read(s, &r, err);
		if (got < 0)
			return -1;
		if (!got)
			return hv_fail(err, EPROTO, "%s: stream ended where %s was expected",
			               s->name, stream_record_name(type));
		/* progress and catch-up answers may come any time */
	} while (r.type != type && (r.type == REC_MIG_ROUND || r.type == REC_MIG_SYNCED));
	if (r.type == REC_MIG_ERROR && type != REC_MIG_ERROR) {
		if (mig_msg_parse(&r, s->name, msg, err) < 0)
			return -1;
		return hv_fail(err, ECONNABORTED, "%s: peer reports: %s", s->name, msg->text);
	}
	if (r.type != type)
		return hv_fail(err, EPROTO, "%s: record %s at offset %llu where %s was expected",
		               s->name, stream_record_name(r.type), (unsigned long long)r.off,
		               stream_record_name(type));
	return mig_msg_parse(&r, s->name, msg, err);
}
