/*
 * incoming.c - the destination side of a live migration.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "migrate/fault.h"
#include "migrate/incoming.h"
#include "migrate/mig_proto.h"
#include "migrate/pages.h"
#include "migrate/vmstate.h"

int incoming_timeout_ms = 10000;
int (*incoming_admit)(struct vm *vm, struct hv_error *err);
#define HANDSHAKE_TIMEOUT_MS incoming_timeout_ms
#define GO_TIMEOUT_MS        (3 * incoming_timeout_ms)

struct in_chan {
	struct incoming *in;
	struct chan *c;
	struct stream s;
	bool open;
	pthread_t thread;
	bool started;
	uint64_t pages;
	uint32_t synced; /* under in->sync_lock: the last MIG_SYNC applied through */
	bool ended;      /* under in->sync_lock: the thread is done (END or failure) */
	int rc;
	struct hv_error err;
};

struct incoming {
	struct vm *vm;
	struct chan *main;
	struct stream rd, wr;
	bool rd_open, wr_open;
	struct in_chan ch[MIG_CHANNELS_MAX];
	unsigned nch;
	struct page_gens gens;
	_Atomic bool failed; /* a channel failed: the main thread's read was cut */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond; /* a channel passed a MIG_SYNC or ended */
	bool go;                  /* under cur_lock: GO came, the VM is ours */
};

/*
 * The migration incoming_run is receiving, for incoming_abort (a signal handler's
 * thread). Connections are published under cur_lock, so an abort never misses one.
 */
static pthread_mutex_t cur_lock = PTHREAD_MUTEX_INITIALIZER;
static struct incoming *cur;
static struct chan_listener *cur_l;
static bool aborted; /* under cur_lock; for good: the process is on its way out */

void incoming_abort(void)
{
	pthread_mutex_lock(&cur_lock);
	if (!cur || !cur->go) {
		aborted = true;
		if (cur_l)
			chan_listener_abort(cur_l);
		if (cur && cur->main)
			chan_abort(cur->main);
		for (unsigned i = 0; cur && i < MIG_CHANNELS_MAX; i++)
			if (cur->ch[i].c)
				chan_abort(cur->ch[i].c);
	}
	pthread_mutex_unlock(&cur_lock);
}

/* publish - make @c (just accepted) abortable; false if an abort came first. */
static bool publish(struct chan **slot, struct chan *c)
{
	bool ok;

	pthread_mutex_lock(&cur_lock);
	*slot = c;
	ok = !aborted;
	if (!ok)
		chan_abort(c);
	pthread_mutex_unlock(&cur_lock);
	return ok;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* HV_MIGRATE_TRACE=1: the switchover's steps with their times, on stderr. */
static void trace(uint64_t t0, const char *what)
{
	static int on = -1;

	if (on < 0)
		on = getenv("HV_MIGRATE_TRACE") != NULL;
	if (on)
		fprintf(stderr, "hvmigrate: incoming: %8.3f ms %s\n", (double)(now_ns() - t0) / 1e6,
		        what);
}

/* One page channel: PAGE_DATA until END. */
static void *chan_main(void *arg)
{
	struct in_chan *ic = arg;
	struct incoming *in = ic->in;
	void *dctx = ZSTD_createDCtx();
	struct record r;
	int got;

	ic->rc = -1;
	if (!dctx) {
		hv_fail(&ic->err, ENOMEM, "out of memory");
		goto out;
	}
	while ((got = stream_read(&ic->s, &r, &ic->err)) > 0) {
		if (r.type == REC_MIG_SYNC) {
			struct mig_msg m;
			if (mig_msg_parse(&r, ic->s.name, &m, &ic->err) < 0)
				goto out;
			pthread_mutex_lock(&in->sync_lock);
			ic->synced = m.gen;
			pthread_cond_broadcast(&in->sync_cond);
			pthread_mutex_unlock(&in->sync_lock);
			continue;
		}
		if (r.type != REC_PAGE_DATA) {
			hv_fail(&ic->err, EPROTO, "%s: record %s at offset %llu on a page channel",
			        ic->s.name, stream_record_name(r.type), (unsigned long long)r.off);
			goto out;
		}
		if (pages_load_gen(&in->vm->mem, &r, dctx, &in->gens, ic->s.name, &ic->err) < 0)
			goto out;
		ic->pages +=
		    r.body[0] | r.body[1] << 8 | r.body[2] << 16 | (uint32_t)r.body[3] << 24;
		if (mig_fault("first-pass"))
			goto out_drop;
	}
	if (got == 0)
		ic->rc = 0;
	goto out;
out_drop:
	hv_fail(&ic->err, ECONNABORTED, "fault injected in the first pass");
out:
	if (ic->rc < 0) {
		atomic_store(&in->failed, true);
		chan_abort(in->main); /* wake the main thread */
	}
	pthread_mutex_lock(&in->sync_lock);
	ic->ended = true;
	pthread_cond_broadcast(&in->sync_cond);
	pthread_mutex_unlock(&in->sync_lock);
	ZSTD_freeDCtx(dctx);
	return NULL;
}

/*
 * Accept the page connections of migration @hello->id. A connection that is not one of
 * them (another source trying this receiver meanwhile, a scanner) is dropped and the
 * wait goes on: it must not fail the migration in progress.
 */
static int accept_channels(struct incoming *in, struct chan_listener *l, struct chan_tls *tls,
                           const struct mig_msg *hello, struct hv_error *err)
{
	unsigned strays = 0;

	for (unsigned n = 0; n < hello->channels;) {
		struct hv_error e = {0};
		struct mig_msg msg;
		struct chan *c = chan_accept(l, tls, HANDSHAKE_TIMEOUT_MS, &e);
		struct stream s;
		struct in_chan *ic;

		if (!c) {
			/* A handshake that failed is a stray; the wait itself ending is not. */
			if (e.code == ETIMEDOUT || e.code == ECANCELED || ++strays > 16) {
				if (err)
					*err = e;
				return -1;
			}
			continue;
		}
		chan_set_timeout(c, HANDSHAKE_TIMEOUT_MS);
		if (stream_open_read_io(&s, &chan_stream_io, c, chan_peer(c), &e) < 0 ||
		    mig_msg_expect(&s, REC_MIG_CHANNEL, &msg, &e) < 0 ||
		    memcmp(msg.id, hello->id, sizeof(msg.id)) || msg.index >= hello->channels ||
		    in->ch[msg.index].c) {
			stream_close(&s);
			chan_close(c);
			if (++strays > 16)
				return hv_fail(
				    err, EPROTO,
				    "%s: too many connections that are not page channels "
				    "of this migration",
				    chan_peer(in->main));
			continue;
		}
		ic = &in->ch[msg.index];
		ic->in = in;
		ic->s = s;
		ic->open = true;
		if (!publish(&ic->c, c))
			return hv_fail(err, ECANCELED, "interrupted");
		chan_set_timeout(c, -1);
		in->nch++;
		n++;
	}
	return 0;
}

/* VM_CONFIG (after optional records) into the loader: the VM exists afterwards. */
static int load_config(struct incoming *in, struct vmstate_loader *ld, struct hv_error *err)
{
	struct record r;

	while (!vmstate_loader_created(ld)) {
		if (stream_read(&in->rd, &r, err) < 0)
			return -1;
		if (vmstate_loader_feed(ld, &r, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * catch_up - wait until every channel has applied what came before its MIG_SYNC(@gen),
 * then tell the source (MIG_SYNCED). A channel that ended or failed ends the wait; the
 * failure then shows on the main connection (cut by the channel).
 */
static int catch_up(struct incoming *in, uint32_t gen, struct hv_error *err)
{
	struct mig_msg m = {.type = REC_MIG_SYNCED, .gen = gen};
	bool behind = true;

	pthread_mutex_lock(&in->sync_lock);
	while (behind) {
		behind = false;
		for (unsigned i = 0; i < in->nch; i++)
			if (!in->ch[i].ended && in->ch[i].synced < gen)
				behind = true;
		if (behind)
			pthread_cond_wait(&in->sync_cond, &in->sync_lock);
	}
	pthread_mutex_unlock(&in->sync_lock);
	if (atomic_load(&in->failed))
		return 0; /* the main read that follows fails with the channel's cause */
	if (mig_msg_write(&in->wr, &m, err) < 0)
		return -1;
	return stream_flush(&in->wr, err);
}

/* Records on the main connection until SWITCHOVER. */
static int precopy(struct incoming *in, struct vmstate_loader *ld, struct mig_msg *so,
                   struct incoming_stats *st, struct hv_error *err)
{
	struct record r;
	int got;

	for (;;) {
		if ((got = stream_read(&in->rd, &r, err)) < 0)
			return -1;
		if (!got)
			return hv_fail(err, EPROTO, "%s: stream ended before the switchover",
			               in->rd.name);
		switch (r.type) {
		case REC_MIG_ROUND:
			if (mig_msg_parse(&r, in->rd.name, so, err) < 0)
				return -1;
			st->rounds = so->gen;
			if (so->gen == 2 && mig_fault("rounds"))
				return hv_fail(err, ECONNABORTED, "fault injected in the rounds");
			if (so->sync && catch_up(in, so->gen, err) < 0)
				return -1;
			break;
		case REC_VCPU:
		case REC_DEVICE:
			if (vmstate_loader_feed(ld, &r, err) < 0)
				return -1;
			break;
		case REC_MIG_SWITCHOVER:
			if (mig_msg_parse(&r, in->rd.name, so, err) < 0)
				return -1;
			if (so->channels != in->nch)
				return hv_fail(err, EPROTO,
				               "%s: SWITCHOVER counts %u channels, not %u",
				               in->rd.name, so->channels, in->nch);
			st->rounds = so->gen;
			return 0;
		case REC_MIG_ERROR:
			if (mig_msg_parse(&r, in->rd.name, so, err) < 0)
				return -1;
			return hv_fail(err, ECONNABORTED, "%s: source reports: %s", in->rd.name,
			               so->text);
		default:
			if (r.type & REC_OPTIONAL)
				break; /* SOURCE_INFO, or something newer we may skip */
			return hv_fail(err, EPROTO,
			               "%s: record %s at offset %llu on the main "
			               "connection during pre-copy",
			               in->rd.name, stream_record_name(r.type),
			               (unsigned long long)r.off);
		}
	}
}

/* Wait for the channels (they end at END); all their pages must have arrived. */
static int join_channels(struct incoming *in, const struct mig_msg *so, struct hv_error *err)
{
	int rc = 0;

	for (unsigned i = 0; i < in->nch; i++) {
		struct in_chan *ic = &in->ch[i];
		if (ic->started) {
			pthread_join(ic->thread, NULL);
			ic->started = false;
		}
		if (ic->rc < 0 && rc == 0) {
			if (err)
				*err = ic->err;
			rc = -1;
		}
	}
	for (unsigned i = 0; rc == 0 && so && i < in->nch; i++)
		if (in->ch[i].pages != so->pages[i])
			rc = hv_fail(
			    err, EPROTO, "channel %u: %llu pages arrived, the source sent %llu", i,
			    (unsigned long long)in->ch[i].pages, (unsigned long long)so->pages[i]);
	return rc;
}

static int send_msg(struct incoming *in, uint32_t type, uint64_t value, struct hv_error *err)
{
	struct mig_msg m = {.type = type, .value = value};

	if (mig_msg_write(&in->wr, &m, err) < 0)
		return -1;
	return stream_flush(&in->wr, err);
}

static void cleanup(struct incoming *in)
{
	for (unsigned i = 0; i < MIG_CHANNELS_MAX; i++) {
		struct in_chan *ic = &in->ch[i];
		if (ic->c)
			chan_abort(ic->c);
		if (ic->started)
			pthread_join(ic->thread, NULL);
		if (ic->open)
			stream_close(&ic->s);
		if (ic->c)
			chan_close(ic->c);
	}
	if (in->rd_open)
		stream_close(&in->rd);
	if (in->wr_open)
		stream_close(&in->wr);
	if (in->main)
		chan_close(in->main);
	page_gens_free(&in->gens);
}

/* Drop the main connection accepted last, before trying the next one. */
static void drop_main(struct incoming *in)
{
	if (in->rd_open)
		stream_close(&in->rd);
	if (in->wr_open)
		stream_close(&in->wr);
	in->rd_open = in->wr_open = false;
	pthread_mutex_lock(&cur_lock);
	chan_close(in->main);
	in->main = NULL;
	pthread_mutex_unlock(&cur_lock);
}

/*
 * Accept the main connection and read its HELLO into @hello. A page channel of a
 * migration that ended before its channels were accepted (a refused one's stay in the
 * listen queue) is dropped and the wait goes on, cut to the handshake timeout: a
 * migration that is coming is here by then. Anything else that is not a HELLO fails,
 * as before: the caller decides whether to wait on.
 */
static int accept_main(struct incoming *in, struct chan_listener *l, struct chan_tls *tls,
                       int accept_ms, struct incoming_stats *st, struct mig_msg *hello,
                       struct hv_error *err)
{
	uint64_t end = now_ns() + (uint64_t)(accept_ms > 0 ? accept_ms : 0) * 1000000ull;

	for (unsigned strays = 0;; strays++) {
		struct hv_error e = {0};
		struct record r;
		int left = accept_ms, got;
		struct chan *c;

		if (accept_ms >= 0) {
			uint64_t t = now_ns();
			left = t >= end ? 0 : (int)((end - t) / 1000000);
		}
		/* After a stray, a migration that is coming is here within a handshake's time. */
		if (strays && (left < 0 || left > HANDSHAKE_TIMEOUT_MS))
			left = HANDSHAKE_TIMEOUT_MS;
		c = chan_accept(l, tls, left, err);
		if (!c && strays && err && err->code == ETIMEDOUT)
			return hv_fail(
			    err, ETIMEDOUT,
			    "dropped %u page channel(s) of an earlier migration; no migration "
			    "came after them within %d ms",
			    strays, left);
		if (!c)
			return -1;
		st->accepted = true;
		if (!publish(&in->main, c))
			return hv_fail(err, ECANCELED, "interrupted");
		snprintf(st->source, sizeof(st->source), "%s", chan_peer(c));
		if (chan_tls_version(c))
			snprintf(st->tls_version, sizeof(st->tls_version), "%s",
			         chan_tls_version(c));
		chan_set_timeout(c, HANDSHAKE_TIMEOUT_MS);
		if (stream_open_read_io(&in->rd, &chan_stream_io, c, chan_peer(c), err) < 0)
			return -1;
		in->rd_open = true;
		if (stream_open_write_io(&in->wr, &chan_stream_io, c, chan_peer(c), err) < 0)
			return -1;
		in->wr_open = true;
		got = stream_read(&in->rd, &r, &e);
		if (got > 0 && r.type == REC_MIG_CHANNEL && strays < 16) {
			trace(now_ns(), "dropped a page channel of an earlier migration");
			drop_main(in);
			continue;
		}
		if (got < 0) {
			if (err)
				*err = e;
			return -1;
		}
		if (got == 0)
			return hv_fail(err, EPROTO, "%s: stream ended where %s was expected",
			               chan_peer(c), stream_record_name(REC_MIG_HELLO));
		if (r.type == REC_MIG_ERROR) {
			if (mig_msg_parse(&r, in->rd.name, hello, err) < 0)
				return -1;
			return hv_fail(err, ECONNABORTED, "%s: peer reports: %s", in->rd.name,
			               hello->text);
		}
		if (r.type != REC_MIG_HELLO)
			return hv_fail(
			    err, EPROTO, "%s: record %s at offset %llu where %s was expected",
			    in->rd.name, stream_record_name(r.type), (unsigned long long)r.off,
			    stream_record_name(REC_MIG_HELLO));
		return mig_msg_parse(&r, in->rd.name, hello, err);
	}
}

int incoming_run(struct chan_listener *l, struct chan_tls *tls, int accept_ms, bool paused,
                 struct vm *vm, int console_out, int console_in, struct incoming_stats *st_out,
                 struct hv_error *err)
{
	struct incoming in = {.vm = vm,
	                      .sync_lock = PTHREAD_MUTEX_INITIALIZER,
	                      .sync_cond = PTHREAD_COND_INITIALIZER};
	struct incoming_stats st = {0};
	struct vmstate_loader *ld = NULL;
	struct mig_msg hello, so;
	uint64_t t0, t;
	int rc = -1;
	bool stop;

	memset(vm, 0, sizeof(*vm));
	pthread_mutex_lock(&cur_lock);
	cur = &in;
	cur_l = l;
	stop = aborted;
	pthread_mutex_unlock(&cur_lock);
	if (stop) {
		hv_fail(err, ECANCELED, "interrupted");
		goto out;
	}
	if (accept_main(&in, l, tls, accept_ms, &st, &hello, err) < 0)
		goto out;
	t0 = now_ns();
	if (mig_fault("handshake")) {
		hv_fail(err, ECONNABORTED, "fault injected at the handshake");
		goto out;
	}
	if (!(ld = vmstate_loader_new(vm, in.rd.name, console_out, console_in, err)) ||
	    load_config(&in, ld, err) < 0)
		goto out;
	st.vm_created = true;
	if (vm->mem.ram_size != hello.ram_size) {
		hv_fail(err, EPROTO, "%s: HELLO announces %llu bytes of RAM, VM_CONFIG %llu",
		        in.rd.name, (unsigned long long)hello.ram_size,
		        (unsigned long long)vm->mem.ram_size);
		goto out;
	}
	if (incoming_admit && incoming_admit(vm, err) < 0)
		goto out;
	if (page_gens_init(&in.gens, &vm->mem, err) < 0 ||
	    accept_channels(&in, l, tls, &hello, err) < 0)
		goto out;
	st.channels = in.nch;
	for (unsigned i = 0; i < in.nch; i++) {
		int e = pthread_create(&in.ch[i].thread, NULL, chan_main, &in.ch[i]);
		if (e) {
			hv_fail(err, e, "cannot create a channel thread: %s", strerror(e));
			goto out;
		}
		in.ch[i].started = true;
	}
	if (send_msg(&in, REC_MIG_ACCEPT, 0, err) < 0)
		goto out;
	/* Pre-copy may take long between records on this connection; EOF ends it. */
	chan_set_timeout(in.main, -1);
	if (precopy(&in, ld, &so, &st, err) < 0)
		goto out;
	t = now_ns();
	trace(t0, "SWITCHOVER");
	if (mig_fault("switchover")) {
		hv_fail(err, ECONNABORTED, "fault injected at the switchover");
		goto out;
	}
	if (join_channels(&in, &so, err) < 0)
		goto out;
	trace(t0, "channels done");
	{
		/* The stream's END: every vCPU and device must be there (vmstate.h). */
		struct record end = {.type = REC_END, .off = in.rd.off};
		if (vmstate_loader_feed(ld, &end, err) != 1)
			goto out;
	}
	trace(t0, "state loaded");
	st.switchover_ms = (now_ns() - t) / 1000000;
	if (send_msg(&in, REC_MIG_READY, 0, err) < 0)
		goto out;
	if (mig_fault("after-ready")) {
		hv_fail(err, ECONNABORTED, "fault injected after READY");
		goto out;
	}
	chan_set_timeout(in.main, GO_TIMEOUT_MS);
	if (mig_msg_expect(&in.rd, REC_MIG_GO, &hello, err) < 0) {
		char why[HV_ERROR_MSG];
		snprintf(why, sizeof(why), "%s", err->msg);
		hv_fail(err, ECONNABORTED,
		        "the source did not confirm the switchover (%.400s); the incoming VM is "
		        "discarded and the source keeps it",
		        why);
		goto out;
	}
	pthread_mutex_lock(&cur_lock);
	in.go = !aborted; /* from here on a signal is the VM's to handle, not ours */
	pthread_mutex_unlock(&cur_lock);
	if (!in.go) {
		hv_fail(err, ECANCELED, "interrupted before the switchover completed");
		goto out;
	}
	t = now_ns();
	trace(t0, "GO");
	paused = paused || !so.value; /* a paused source VM stays paused */
	if (paused)
		vm_request_pause(vm); /* park before the first instruction */
	if (vm_start(vm, err) < 0)
		goto out;
	if (paused && vm_pause(vm, err) < 0)
		goto out;
	st.resume_us = (now_ns() - t) / 1000;
	mig_fault("after-go");
	/* RUNNING is a courtesy for the source's statistics: the VM is ours already. */
	send_msg(&in, REC_MIG_RUNNING, st.resume_us, NULL);
	st.total_ms = (now_ns() - t0) / 1000000;
	rc = 0;
out:
	if (rc < 0 && in.wr_open && in.main) {
		/* Best effort: tell the source why (it resumes its VM either way). */
		struct mig_msg e = {.type = REC_MIG_ERROR};
		snprintf(e.text, sizeof(e.text), "destination: %.400s", err ? err->msg : "failed");
		if (mig_msg_write(&in.wr, &e, NULL) == 0)
			stream_flush(&in.wr, NULL);
	}
	st.bytes_wire = in.main ? chan_bytes_received(in.main) : 0;
	for (unsigned i = 0; i < in.nch; i++) {
		st.bytes_wire += chan_bytes_received(in.ch[i].c);
		st.pages += in.ch[i].pages;
	}
	if (rc < 0 && atomic_load(&in.failed)) {
		/* A channel's error is the cause; the main connection only saw the cut. */
		for (unsigned i = 0; i < in.nch; i++)
			if (in.ch[i].rc < 0 && in.ch[i].err.msg[0] && err) {
				*err = in.ch[i].err;
				break;
			}
	}
	pthread_mutex_lock(&cur_lock);
	cur = NULL;
	cur_l = NULL;
	pthread_mutex_unlock(&cur_lock);
	cleanup(&in);
	if (rc < 0 && ld && vmstate_loader_created(ld))
		vm_destroy(vm);
	vmstate_loader_free(ld);
	if (st_out)
		*st_out = st;
	return rc;
}
