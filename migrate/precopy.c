/*
 * precopy.c - the source side of a live migration (migration.h): handshake, pre-copy
 * rounds with the convergence decision and stall policies, and the two-phase switchover.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hv/dirty.h"
#include "hv/vm.h"
#include "migrate/chan.h"
#include "migrate/fault.h"
#include "migrate/mig_proto.h"
#include "migrate/migration.h"
#include "migrate/pagesend.h"
#include "migrate/vmstate.h"

#define CONNECT_TIMEOUT_MS 10000
#define READY_TIMEOUT_MS   30000 /* the destination loads state and answers */
#define RUNNING_TIMEOUT_MS 10000
#define RESET_WAIT_MS      200 /* for a reset after the destination hung up */
#define HOLD_SLEEP_MS      20
#define THROTTLE_FIRST     20 /* QEMU's cpu-throttle-initial */
#define THROTTLE_STEP      10 /* QEMU's cpu-throttle-increment */
#define THROTTLE_MAX       99
#define RAISE_FACTOR       2
#define RAISE_CEILING      10           /* raise-downtime stops at 10 x the limit asked for */
#define STALL_ROUNDS       3            /* rounds without progress before the stall policy acts */
#define BW_SAMPLE_MIN      (256u << 10) /* bytes a round must send to measure the link */

struct migration {
	struct vm *vm;
	struct mig_params p;
	mig_progress_fn progress;
	void *opaque;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t lock; /* st, chans, committed, cancel decisions */
	struct mig_stats st;
	struct chan *main;
	struct page_chan pch[MIG_CHANNELS_MAX];
	unsigned npch;
	bool committed;
	_Atomic bool cancel;
	_Atomic bool release;

	struct chan_tls *tls;
	struct stream out, in; /* main connection */
	bool out_open, in_open;
	struct page_sender ps;
	uint64_t *bitmap;
	uint64_t t0_ns, pause_ns, rtt_ns;
	double page_rate;       /* pages/s the last timed round achieved */
	unsigned rounds_at_max; /* rounds the stall policy spent at its last step */
	uint32_t synced;        /* the last round the destination has applied (SYNCED) */
	bool paused_by_us;
};

const char *mig_phase_name(enum mig_phase p)
{
	switch (p) {
	case MIG_NONE: return "none";
	case MIG_SETUP: return "setup";
	case MIG_PRECOPY: return "precopy";
	case MIG_SWITCHOVER: return "switchover";
	case MIG_COMMITTED: return "committed";
	case MIG_COMPLETED: return "completed";
	case MIG_FAILED: return "failed";
	case MIG_CANCELLED: return "cancelled";
	case MIG_IN_DOUBT: return "in-doubt";
	}
	return "unknown";
}

void mig_params_default(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_ms = MIG_DOWNTIME_DEFAULT_MS;
	p->zstd_level = 1;
	p->channels = 1;
	p->max_rounds = MIG_MAX_ROUNDS_DEFAULT;
	p->on_stall = MIG_STALL_ABORT;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Refresh the counters in st from the channels and the sender. Migration thread only. */
static void update_stats(struct migration *m)
{
	uint64_t wire = 0, now = now_ns();

	pthread_mutex_lock(&m->lock);
	if (m->main)
		wire += chan_bytes_sent(m->main) + chan_bytes_received(m->main);
	for (unsigned i = 0; i < m->npch; i++)
		wire += chan_bytes_sent(m->pch[i].c);
	m->st.bytes_wire = wire;
	m->st.pages_sent = atomic_load(&m->ps.pages_sent) + atomic_load(&m->ps.pages_skipped);
	m->st.pages_zero = atomic_load(&m->ps.pages_zero);
	m->st.pages_zstd = atomic_load(&m->ps.pages_zstd);
	m->st.pages_raw = atomic_load(&m->ps.pages_raw);
	m->st.pages_delta = atomic_load(&m->ps.pages_delta);
	m->st.total_ms = (now - m->t0_ns) / 1000000;
	m->st.throughput_mbps =
	    now > m->t0_ns ? (double)wire * 8 / ((double)(now - m->t0_ns) / 1e9) / 1e6 : 0;
	pthread_mutex_unlock(&m->lock);
}

static void report(struct migration *m)
{
	struct mig_stats st;

	update_stats(m);
	migration_stats(m, &st);
	if (m->progress)
		m->progress(m->opaque, &st);
}

static void set_phase(struct migration *m, enum mig_phase ph)
{
	pthread_mutex_lock(&m->lock);
	m->st.phase = ph;
	pthread_mutex_unlock(&m->lock);
}

/* Cut every connection: blocked I/O on the migration thread and the workers fails. */
static void abort_chans_locked(struct migration *m)
{
	if (m->main)
		chan_abort(m->main);
	for (unsigned i = 0; i < m->npch; i++)
		chan_abort(m->pch[i].c);
}

/* HV_MIGRATE_TRACE=1: the switchover's steps with their times, on stderr. */
static void trace(struct migration *m, const char *what)
{
	static int on = -1;

	if (on < 0)
		on = getenv("HV_MIGRATE_TRACE") != NULL;
	if (on)
		fprintf(stderr, "hv: migration: %8.3f ms %s\n", (double)(now_ns() - m->t0_ns) / 1e6,
		        what);
}

/* A fault injected at @point (fault.h): cut the connections, fail with a message. */
static int fault_at(struct migration *m, const char *point, struct hv_error *err)
{
	if (!mig_fault(point))
		return 0;
	pthread_mutex_lock(&m->lock);
	abort_chans_locked(m);
	pthread_mutex_unlock(&m->lock);
	return hv_fail(err, ECONNABORTED, "fault injected at %s", point);
}

/* ---- setup ---- */

static int connect_all(struct migration *m, struct hv_error *err)
{
	struct chan_addr a;
	struct mig_msg msg = {.type = REC_MIG_HELLO};
	const char *host = m->p.tls_hostname[0] ? m->p.tls_hostname : NULL;
	struct chan *c;

	if (chan_addr_parse(m->p.uri, &a, err) < 0)
		return -1;
	if (m->p.tls) {
		struct chan_tls_config tc = {.cert = m->p.tls_cert,
		                             .key = m->p.tls_key,
		                             .ca = m->p.tls_ca,
		                             .hostname = host};
		if (!(m->tls = chan_tls_new(&tc, false, err)))
			return -1;
	}
	c = chan_connect(&a, m->tls, CONNECT_TIMEOUT_MS, host, err);
	if (!c)
		return -1;
	pthread_mutex_lock(&m->lock);
	m->main = c;
	if (chan_tls_version(c))
		snprintf(m->st.tls_version, sizeof(m->st.tls_version), "%s", chan_tls_version(c));
	pthread_mutex_unlock(&m->lock);
	if (stream_open_write_io(&m->out, &chan_stream_io, c, chan_peer(c), err) < 0)
		return -1;
	m->out_open = true;
	if (getrandom(msg.id, sizeof(msg.id), 0) != sizeof(msg.id))
		return hv_fail(err, errno, "getrandom: %s", strerror(errno));
	msg.channels = m->p.channels;
	msg.ram_size = m->vm->mem.ram_size;
	if (mig_msg_write(&m->out, &msg, err) < 0 || vmstate_save_config(&m->out, m->vm, err) < 0 ||
	    stream_flush(&m->out, err) < 0)
		return -1;
	if (fault_at(m, "handshake", err) < 0)
		return -1;
	for (unsigned i = 0; i < m->p.channels; i++) {
		struct page_chan *pc = &m->pch[i];
		struct mig_msg ch = {.type = REC_MIG_CHANNEL, .index = i};

		memcpy(ch.id, msg.id, sizeof(ch.id));
		c = chan_connect(&a, m->tls, CONNECT_TIMEOUT_MS, host, err);
		if (!c)
			return -1;
		pthread_mutex_init(&pc->lock, NULL);
		pthread_mutex_lock(&m->lock);
		pc->c = c;
		m->npch = i + 1;
		pthread_mutex_unlock(&m->lock);
		if (stream_open_write_io(&pc->s, &chan_stream_io, c, chan_peer(c), err) < 0 ||
		    mig_msg_write(&pc->s, &ch, err) < 0 || stream_flush(&pc->s, err) < 0)
			return -1;
	}
	/* The destination answers once its VM exists and every channel is attached. */
	if (stream_open_read_io(&m->in, &chan_stream_io, m->main, chan_peer(m->main), err) < 0)
		return -1;
	m->in_open = true;
	chan_set_timeout(m->main, READY_TIMEOUT_MS);
	if (mig_msg_expect(&m->in, REC_MIG_ACCEPT, &msg, err) < 0)
		return -1;
	/* TCP's own measure, after a few exchanges; a connect's duration would count the
	 * TLS handshake's crypto and overstate it many times. */
	m->rtt_ns = chan_rtt_us(m->main) * 1000;
	return 0;
}

/* ---- pre-copy ---- */

/*
 * Estimated ms to send @pages more pages at @page_rate pages/s (what the last round
 * achieved: compression, the link and the cap all show in it) plus the fixed cost of the
 * switchover: device state (a few KiB a vCPU) and the READY + GO + RUNNING round trips.
 */
static uint64_t estimate_ms(struct migration *m, uint64_t pages, double page_rate, double bw)
{
	double fixed_bytes = 16384.0 * m->vm->nvcpus + 4096;
	double ms = (double)pages / page_rate * 1000.0 + fixed_bytes / bw * 1000.0;

	return (uint64_t)ceil(ms + 2.0 * (double)m->rtt_ns / 1e6);
}

static int stall_action(struct migration *m, uint64_t *limit_ms, uint64_t dirty_pages,
                        struct hv_error *err)
{
	unsigned t;

	switch (m->p.on_stall) {
	case MIG_STALL_THROTTLE:
		t = vm_throttle(m->vm);
		if (t >= THROTTLE_MAX) {
			/* The last step gets a few rounds to show its effect. */
			if (++m->rounds_at_max < STALL_ROUNDS)
				return 0;
			return hv_fail(err, ETIMEDOUT,
			               "did not converge with the vCPUs throttled to %u%%; the VM "
			               "keeps running here",
			               t);
		}
		t = t ? t + THROTTLE_STEP : THROTTLE_FIRST;
		vm_set_throttle(m->vm, t > THROTTLE_MAX ? THROTTLE_MAX : t);
		return 0;
	case MIG_STALL_RAISE_DOWNTIME:
		if (*limit_ms >= m->p.downtime_ms * RAISE_CEILING) {
			if (++m->rounds_at_max < STALL_ROUNDS)
				return 0;
			return hv_fail(
			    err, ETIMEDOUT,
			    "did not converge with the downtime limit raised to %llu ms; "
			    "the VM keeps running here",
			    (unsigned long long)*limit_ms);
		}
		*limit_ms *= RAISE_FACTOR;
		if (*limit_ms > m->p.downtime_ms * RAISE_CEILING)
			*limit_ms = m->p.downtime_ms * RAISE_CEILING;
		return 0;
	case MIG_STALL_ABORT: break;
	}
	return hv_fail(err, ETIMEDOUT,
	               "did not converge: %llu pages still dirty after %u rounds (guest dirties "
	               "%.1f MB/s); the VM keeps running here",
	               (unsigned long long)dirty_pages, m->st.round, dirty_rate(&m->vm->mem) / 1e6);
}

/* send_sync - MIG_SYNC(@gen) on every page channel, after the round's last batch. */
static int send_sync(struct migration *m, uint32_t gen, struct hv_error *err)
{
	struct mig_msg sy = {.type = REC_MIG_SYNC, .gen = gen};

	for (unsigned i = 0; i < m->npch; i++)
		if (mig_msg_write(&m->pch[i].s, &sy, err) < 0 ||
		    stream_flush(&m->pch[i].s, err) < 0)
			return -1;
	return 0;
}

/* wait_synced - until the destination reports round @gen applied on every channel. */
static int wait_synced(struct migration *m, uint32_t gen, struct hv_error *err)
{
	struct mig_msg msg;

	if (m->synced >= gen)
		return 0;
	chan_set_timeout(m->main, READY_TIMEOUT_MS);
	do {
		if (mig_msg_expect(&m->in, REC_MIG_SYNCED, &msg, err) < 0)
			return -1;
	} while (msg.gen < gen);
	m->synced = msg.gen;
	return 0;
}

static int precopy(struct migration *m, struct hv_error *err)
{
	struct guest_mem *mem = &m->vm->mem;
	uint64_t words = dirty_bitmap_words(mem), limit = m->p.downtime_ms, best = UINT64_MAX;
	uint64_t max_bytes = m->p.max_bytes ? m->p.max_bytes : 8 * mem->ram_size;
	uint64_t prev = UINT64_MAX;
	unsigned stalled = 0;
	bool acting = false;
	uint32_t gen = 1;

	set_phase(m, MIG_PRECOPY);
	dirty_start(mem);
	memset(m->bitmap, 0, words * 8);
	pages_data_bitmap(mem, m->bitmap);
	for (;;) {
		uint64_t t = now_ns(), t_start = t, wire0, dirty = 0, est;
		/* Entries only: the first pass's skipped zero pages cost next to nothing and
		 * would make the page rate look far higher than what a round can send. */
		uint64_t out0 = atomic_load(&m->ps.pages_sent);
		double bw, rate;

		update_stats(m);
		wire0 = m->st.bytes_wire;
		pthread_mutex_lock(&m->lock);
		m->st.round = gen;
		pthread_mutex_unlock(&m->lock);
		if (gen == 2 && fault_at(m, "rounds", err) < 0)
			return -1;
		if (page_send_round(&m->ps, m->bitmap, gen, gen == 1, err) < 0 ||
		    send_sync(m, gen, err) < 0)
			return -1;
		if (gen == 1 && fault_at(m, "first-pass", err) < 0)
			return -1;
		update_stats(m);
		t = now_ns() - t;
		memset(m->bitmap, 0, words * 8);
		dirty = dirty_harvest(mem, m->bitmap);
		/*
		 * What the link gave this round, unless the round was too short or too small
		 * to say: a round of a few pages lasts as long as its round trips and the
		 * loaded host's scheduling, whatever the link, and its "bandwidth" would make
		 * two dirty pages look like seconds of downtime. Then the last real measure
		 * stands (or 1 GB/s before there is one; the round trips are counted apart).
		 */
		bw = t > 1000000 && m->st.bytes_wire - wire0 >= BW_SAMPLE_MIN
		         ? (double)(m->st.bytes_wire - wire0) / ((double)t / 1e9)
		     : m->st.bandwidth ? (double)m->st.bandwidth
		                       : 1e9;
		if (m->p.bandwidth && bw > (double)m->p.bandwidth)
			bw = (double)m->p.bandwidth;
		{
			uint64_t sent = atomic_load(&m->ps.pages_sent) - out0;
			/* Pages a second; a round too short to time is not a measure. */
			rate = t > 1000000 && sent > 64 ? (double)sent / ((double)t / 1e9) : 0;
			if (rate > 0)
				m->page_rate = rate;
			else if (m->page_rate <= 0)
				m->page_rate = bw / 4096.0;
		}
		est = estimate_ms(m, dirty, m->page_rate, bw);
		pthread_mutex_lock(&m->lock);
		m->st.remaining_bytes = dirty * 4096;
		m->st.dirty_rate = (uint64_t)dirty_rate(mem);
		m->st.bandwidth = (uint64_t)bw;
		m->st.est_downtime_ms = est;
		m->st.downtime_limit_ms = limit;
		m->st.throttle_pct = vm_throttle(m->vm);
		m->st.precopy_ms = (now_ns() - m->t0_ns) / 1000000 - m->st.setup_ms;
		pthread_mutex_unlock(&m->lock);
		report(m);
		{
			struct mig_msg r = {
			    .type = REC_MIG_ROUND, .gen = gen, .value = dirty * 4096, .sync = 1};
			if (mig_msg_write(&m->out, &r, err) < 0 || stream_flush(&m->out, err) < 0)
				return -1;
		}
		if (atomic_load(&m->cancel))
			return hv_fail(err, ECANCELED, "migration cancelled");
		if (m->p.timeout_ms && (now_ns() - m->t0_ns) / 1000000 > m->p.timeout_ms)
			return hv_fail(err, ETIMEDOUT,
			               "timed out after %llu s in pre-copy round %u",
			               (unsigned long long)m->p.timeout_ms / 1000, gen);
		if (m->p.switchover_hold && !atomic_load(&m->release)) {
			struct timespec ts = {0, HOLD_SLEEP_MS * 1000000L};
			nanosleep(&ts, NULL);
		} else if (est <= limit) {
			/*
			 * Converged, if the destination has caught up: pages still queued on
			 * the way would otherwise be applied during the pause. What the guest
			 * dirtied while we waited joins the bitmap, and decides again.
			 */
			uint64_t more, applied, el;
			double rate = m->page_rate;
			if (wait_synced(m, gen, err) < 0)
				return -1;
			/*
			 * The round from its start to the destination's SYNCED is the whole
			 * pipeline: a destination slower than the sender shows here, and the
			 * final round will go at that pace.
			 */
			applied = atomic_load(&m->ps.pages_sent) - out0;
			el = now_ns() - t_start;
			if (el > 1000000 && applied > 64 &&
			    (double)applied / ((double)el / 1e9) < rate)
				rate = (double)applied / ((double)el / 1e9);
			more = dirty_harvest(mem, m->bitmap);
			dirty += more;
			est = estimate_ms(m, dirty, rate, bw);
			pthread_mutex_lock(&m->lock);
			m->st.remaining_bytes = dirty * 4096;
			m->st.est_downtime_ms = est;
			pthread_mutex_unlock(&m->lock);
			if (est <= limit)
				return (int)gen; /* converged */
		} else {
			/*
			 * Stalled: the dirty set has not shrunk by 5 % on the best round for
			 * STALL_ROUNDS rounds, or a cap is reached. Once the policy acts, it acts
			 * again on every round that does not halve the dirty set (QEMU's
			 * auto-converge rule), so it needs no more rounds than it has steps.
			 */
			bool act;
			if (dirty < best - best / 20) {
				best = dirty;
				stalled = 0;
			} else {
				stalled++;
			}
			if (acting)
				act = dirty > prev / 2;
			else
				act = stalled >= STALL_ROUNDS || gen >= m->p.max_rounds ||
				      m->st.bytes_wire > max_bytes;
			if (act) {
				if (stall_action(m, &limit, dirty, err) < 0)
					return -1;
				acting = true;
			}
		}
		prev = dirty;
		if (gen == UINT32_MAX - 1)
			return hv_fail(err, EOVERFLOW, "too many rounds");
		gen++;
	}
}

/* ---- switchover ---- */

/* Pause, send the rest and the device state; 0 once READY came (the VM stays paused). */
static int switchover(struct migration *m, uint32_t gen, struct hv_error *err)
{
	struct guest_mem *mem = &m->vm->mem;
	struct mig_msg so = {.type = REC_MIG_SWITCHOVER, .gen = gen, .channels = m->npch};
	struct mig_msg ready;
	enum vm_state st;

	pthread_mutex_lock(&m->vm->lock);
	st = m->vm->state;
	pthread_mutex_unlock(&m->vm->lock);
	set_phase(m, MIG_SWITCHOVER);
	m->pause_ns = now_ns();
	trace(m, "pausing");
	if (st == VM_RUNNING) {
		if (vm_pause(m->vm, err) < 0)
			return -1;
		m->paused_by_us = true;
		trace(m, "paused");
	} else if (st != VM_PAUSED) {
		return hv_fail(err, EINVAL, "the VM is %s", vm_state_name(st));
	}
	so.value = m->paused_by_us; /* the destination resumes only a running VM */
	vm_set_throttle(m->vm, 0);
	/* The bitmap holds the last round's harvest (the decision was made on it); what the
	 * guest dirtied since then is ORed in. */
	dirty_harvest(mem, m->bitmap);
	pthread_mutex_lock(&m->lock);
	m->st.round = gen;
	pthread_mutex_unlock(&m->lock);
	if (page_send_round(&m->ps, m->bitmap, gen, false, err) < 0)
		return -1;
	trace(m, "final pages sent");
	for (unsigned i = 0; i < m->npch; i++) {
		so.pages[i] = m->pch[i].pages;
		if (stream_write_end(&m->pch[i].s, err) < 0)
			return -1;
	}
	if (vmstate_save_devices(&m->out, m->vm, err) < 0 || mig_msg_write(&m->out, &so, err) < 0 ||
	    stream_flush(&m->out, err) < 0)
		return -1;
	if (fault_at(m, "switchover", err) < 0)
		return -1;
	trace(m, "device state sent");
	chan_set_timeout(m->main, READY_TIMEOUT_MS);
	if (mig_msg_expect(&m->in, REC_MIG_READY, &ready, err) < 0)
		return -1;
	trace(m, "READY");
	return 0;
}

static uint64_t delta_cache_size(const struct migration *m)
{
	uint64_t b = m->p.delta_cache;

	if (b)
		return b;
	b = m->vm->mem.ram_size / 16;
	if (b < (16ull << 20))
		b = 16ull << 20;
	if (b > (256ull << 20))
		b = 256ull << 20;
	return b;
}

static void *migration_main(void *arg)
{
	struct migration *m = arg;
	struct hv_error err = {0};
	enum mig_phase end = MIG_FAILED;
	uint64_t cpu0 = thread_cpu_ns();
	int gen;

	m->t0_ns = now_ns();
	if (connect_all(m, &err) < 0)
		goto fail;
	pthread_mutex_lock(&m->lock);
	m->st.setup_ms = (now_ns() - m->t0_ns) / 1000000;
	pthread_mutex_unlock(&m->lock);
	page_sender_init(&m->ps, &m->vm->mem, m->pch, m->npch, m->p.zstd_level, m->p.bandwidth,
	                 &m->cancel);
	if (!m->p.no_delta && page_sender_delta(&m->ps, delta_cache_size(m), &err) < 0)
		goto fail;
	report(m);
	gen = precopy(m, &err);
	if (gen < 0 || switchover(m, (uint32_t)gen + 1, &err) < 0)
		goto fail;
	if (fault_at(m, "after-ready", &err) < 0)
		goto fail;

	/* A destination that died after READY cannot take GO: keep the VM. */
	if (chan_peer_gone(m->main)) {
		hv_fail(&err, ECONNABORTED, "%s: the destination hung up after READY",
		        chan_peer(m->main));
		goto fail;
	}
	/* The commit point: after GO the destination owns the VM. */
	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->cancel)) {
		pthread_mutex_unlock(&m->lock);
		hv_fail(&err, ECANCELED, "migration cancelled");
		goto fail;
	}
	m->committed = true;
	m->st.phase = MIG_COMMITTED;
	pthread_mutex_unlock(&m->lock);
	{
		struct mig_msg go = {.type = REC_MIG_GO};
		if (mig_msg_write(&m->out, &go, &err) < 0 || stream_flush(&m->out, &err) < 0) {
			/* GO never left: the destination cannot resume, so the VM is ours again. */
			pthread_mutex_lock(&m->lock);
			m->committed = false;
			pthread_mutex_unlock(&m->lock);
			goto fail;
		}
	}
	trace(m, "GO sent");
	if (fault_at(m, "after-go", &err) < 0)
		goto in_doubt;
	{
		struct mig_msg run;
		chan_set_timeout(m->main, RUNNING_TIMEOUT_MS);
		if (mig_msg_expect(&m->in, REC_MIG_RUNNING, &run, &err) < 0) {
			/*
			 * A reset means the destination's socket was closed holding GO unread,
			 * and MIG_ERROR (ECONNABORTED) that it refused: either way it never
			 * resumed the VM, which is ours again. A plain hang-up or a timeout says
			 * nothing either way.
			 */
			if (err.code == ECONNRESET || err.code == ECONNABORTED ||
			    (err.code != ETIMEDOUT && chan_reset_by_peer(m->main, RESET_WAIT_MS))) {
				char why[HV_ERROR_MSG];
				snprintf(why, sizeof(why), "%s", err.msg);
				hv_fail(&err, ECONNRESET,
				        "the destination went away without reading GO (%.400s)",
				        why);
				pthread_mutex_lock(&m->lock);
				m->committed = false;
				pthread_mutex_unlock(&m->lock);
				goto fail;
			}
			goto in_doubt;
		}
		trace(m, "RUNNING");
		pthread_mutex_lock(&m->lock);
		/* Pause to resume: GO out, RUNNING back, less the return trip of RUNNING. */
		uint64_t d = now_ns() - m->pause_ns;
		d = d > m->rtt_ns / 2 ? d - m->rtt_ns / 2 : d;
		m->st.downtime_ms = (d + 500000) / 1000000;
		pthread_mutex_unlock(&m->lock);
	}
	end = MIG_COMPLETED;
	vm_shutdown(m->vm, VM_EXIT_REQUESTED, 0, "migrated to %s", m->p.uri);
	goto done;

in_doubt:
	end = MIG_IN_DOUBT;
	{
		char why[HV_ERROR_MSG];
		snprintf(why, sizeof(why), "%s", err.msg);
		hv_fail(&err, EIO,
		        "the destination did not confirm that it runs the VM (%.300s); the VM is "
		        "kept paused here: resume it only if the destination does not run it",
		        why);
	}
	goto done;

fail:
	end = atomic_load(&m->cancel) ? MIG_CANCELLED : MIG_FAILED;
	if (end == MIG_CANCELLED)
		hv_fail(&err, ECANCELED, "migration cancelled; the VM keeps running here");
	/* Tell the destination why, if the main connection still works (best effort). */
	if (m->out_open && m->main && !atomic_load(&m->cancel)) {
		struct mig_msg e = {.type = REC_MIG_ERROR};
		struct hv_error ignore;
		snprintf(e.text, sizeof(e.text), "source: %.400s", err.msg);
		if (mig_msg_write(&m->out, &e, &ignore) == 0)
			stream_flush(&m->out, &ignore);
	}
	if (m->paused_by_us)
		vm_resume(m->vm, NULL);
done:
	vm_set_throttle(m->vm, 0);
	dirty_stop(&m->vm->mem);
	update_stats(m);
	pthread_mutex_lock(&m->lock);
	abort_chans_locked(m);
	m->st.phase = end;
	m->st.cpu_seconds = (double)(thread_cpu_ns() - cpu0 + atomic_load(&m->ps.cpu_ns)) / 1e9;
	if (end != MIG_COMPLETED)
		snprintf(m->st.error, sizeof(m->st.error), "%s", err.msg);
	pthread_mutex_unlock(&m->lock);
	report(m);
	return NULL;
}

struct migration *migration_start(struct vm *vm, const struct mig_params *p,
                                  mig_progress_fn progress, void *opaque, struct hv_error *err)
{
	struct migration *m;
	struct chan_addr a;
	int e;

	if (chan_addr_parse(p->uri, &a, err) < 0)
		return NULL;
	if (p->channels < 1 || p->channels > MIG_CHANNELS_MAX) {
		hv_fail(err, EINVAL, "channels must be 1 to %d", MIG_CHANNELS_MAX);
		return NULL;
	}
	if (p->zstd_level < -7 || p->zstd_level > 19) {
		hv_fail(err, EINVAL, "zstd level must be -7 to 19");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m)
		m->bitmap = malloc(dirty_bitmap_words(&vm->mem) * 8 + 8);
	if (!m || !m->bitmap) {
		if (m)
			free(m);
		hv_fail(err, ENOMEM, "out of memory");
		return NULL;
	}
	m->vm = vm;
	m->p = *p;
	if (!m->p.downtime_ms)
		m->p.downtime_ms = MIG_DOWNTIME_DEFAULT_MS;
	if (!m->p.max_rounds)
		m->p.max_rounds = MIG_MAX_ROUNDS_DEFAULT;
	m->progress = progress;
	m->opaque = opaque;
	pthread_mutex_init(&m->lock, NULL);
	m->st.phase = MIG_SETUP;
	m->st.ram_bytes = vm->mem.ram_size;
	m->st.downtime_limit_ms = m->p.downtime_ms;
	e = pthread_create(&m->thread, NULL, migration_main, m);
	if (e) {
		hv_fail(err, e, "cannot create the migration thread: %s", strerror(e));
		free(m->bitmap);
		free(m);
		return NULL;
	}
	m->thread_started = true;
	return m;
}

int migration_cancel(struct migration *m, struct hv_error *err)
{
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (m->committed)
		rc = hv_fail(err, EBUSY,
		             "the migration has switched over: the destination owns the VM");
	else if (mig_phase_final(m->st.phase))
		rc = hv_fail(err, EINVAL, "the migration has already ended (%s)",
		             mig_phase_name(m->st.phase));
	else {
		atomic_store(&m->cancel, true);
		abort_chans_locked(m);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void migration_release(struct migration *m)
{
	atomic_store(&m->release, true);
}

void migration_stats(struct migration *m, struct mig_stats *st)
{
	pthread_mutex_lock(&m->lock);
	*st = m->st;
	pthread_mutex_unlock(&m->lock);
}

void migration_free(struct migration *m)
{
	if (!m)
		return;
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	if (m->out_open)
		stream_close(&m->out);
	if (m->in_open)
		stream_close(&m->in);
	for (unsigned i = 0; i < m->npch; i++) {
		stream_close(&m->pch[i].s);
		chan_close(m->pch[i].c);
		pthread_mutex_destroy(&m->pch[i].lock);
	}
	chan_close(m->main);
	chan_tls_free(m->tls);
	page_sender_free(&m->ps);
	pthread_mutex_destroy(&m->lock);
	free(m->bitmap);
	free(m);
}
