/*
 * vmckpt.c - checkpoints of a VM into a store, and eager restore from one.
 *
 * The state stream is written into memory (stream_open_write_io) and stored as one blob:
 * without PAGE_DATA it is a few KiB per vCPU, so STORE_BLOB_MAX (1 MiB) is far off and
 * a larger one is refused rather than chunked. Pages are stored one blob each, so two
 * checkpoints (or two VMs) share every page they have in common.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/pagewalk.h"
#include "checkpoint/vmckpt.h"
#include "hv/cbw.h"
#include "hv/dirty.h"
#include "migrate/stream.h"
#include "migrate/vmstate.h"

#define CHUNK_BYTES (MANIFEST_CHUNK_PAGES * sizeof(struct blob_id))

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool chunk_dirty(const uint64_t *bm, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++) {
		if (!(p % 64) && p + 64 <= first + n && !bm[p / 64]) {
			p += 63;
			continue;
		}
		if (bm[p / 64] & (1ull << (p % 64)))
			return true;
	}
	return false;
}

/* The state stream of @vm (paused) into a fresh buffer. */
static int save_state(struct vm *vm, struct stream_mem *mb, struct hv_error *err)
{
	struct stream st;
	int rc;

	/* Refuse early: a state blob past STORE_BLOB_MAX could not be stored anyway. */
	mb->max = STORE_BLOB_MAX;
	rc = stream_open_write_io(&st, &stream_mem_io, mb, "checkpoint state", err);

	if (rc == 0)
		rc = vmstate_save_config(&st, vm, err);
	if (rc == 0)
		rc = vmstate_save_devices(&st, vm, err);
	if (rc == 0)
		rc = stream_write_end(&st, err);
	stream_close(&st);
	if (rc < 0 && err && err->code == EFBIG)
		hv_fail(err, EFBIG, "state stream larger than %u bytes (not supported yet)",
		        STORE_BLOB_MAX);
	return rc;
}

/* Sets bits [@a, @b) of @bm. */
static void set_range(uint64_t *bm, uint64_t a, uint64_t b)
{
	for (; a < b && a % 64; a++)
		bm[a / 64] |= 1ull << (a % 64);
	for (; a + 64 <= b; a += 64)
		bm[a / 64] = ~0ull;
	for (; a < b; a++)
		bm[a / 64] |= 1ull << (a % 64);
}

/* Pages selected in @bm (@words words). */
static uint64_t count_pages(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

/* Tell @o->progress where the writing stands, unless it was told less than
 * CKPT_PROGRESS_NS ago (@last: when it was last told); @final always tells. */
static void progress_note(const struct ckpt_opts *o, uint64_t done, uint64_t total, uint64_t *last,
                          bool final)
{
	uint64_t now;

	if (!o->progress)
		return;
	now = now_ns(CLOCK_MONOTONIC);
	if (!final && now - *last < CKPT_PROGRESS_NS)
		return;
	*last = now;
	o->progress(o->progress_arg, done, total);
}

static void resume_once(const struct ckpt_opts *o, bool *resumed)
{
	if (*resumed)
		return;
	*resumed = true;
	if (o->resume)
		o->resume(o->resume_arg);
}

/*
 * The pages selected in stretch [@st, @st+@k) into the store, their ids into @ids (the
 * chunk's, indexed from @first). Live, the content comes from cbw (as at the pause);
 * otherwise straight from RAM (the VM is paused). With @holes, pages in a hole of the
 * memfd are zero pages, not read: a hole was never written, and reading it would make
 * the kernel allocate it - a full checkpoint of a mostly idle 64 GiB guest must not commit
 * 64 GiB of RAM. (Looking for holes here rather than during the pause keeps the pause
 * short: SEEK_DATA on shared memory walks its pages.)
 */
static int put_stretch(struct vm *vm, struct store *s, bool live, bool holes,
                       struct page_cursor *cur, uint64_t st, unsigned k, uint64_t mask,
                       uint8_t *buf, struct blob_id *ids, uint64_t first, struct ckpt_result *r,
                       struct hv_error *err)
{
	uint64_t got = mask, zero = 0;
	uint8_t *hva[CBW_STRETCH];

	for (unsigned i = 0; i < k; i++) {
		bool hole = false;

		if (!(mask & (1ull << i)))
			continue;
		hva[i] = page_at(cur, st + i, holes ? &hole : NULL);
		if (!hva[i])
			return hv_fail(err, EINVAL, "checkpoint: page %llu is in no memory slot",
			               (unsigned long long)(st + i));
		if (hole)
			zero |= 1ull << i;
	}
	if (live) {
		if (cbw_claim(&vm->mem, st, k, zero, buf, &got) < 0)
			return hv_fail(err, ENOMEM,
			               "checkpoint: a page written during the checkpoint could "
			               "not be copied first (out of memory)");
		if (got != mask)
			return hv_fail(err, EIO,
			               "checkpoint: pages %llu-%llu: copy-before-write gave "
			               "%llx, not %llx",
			               (unsigned long long)st, (unsigned long long)(st + k - 1),
			               (unsigned long long)got, (unsigned long long)mask);
	}
	for (unsigned i = 0; i < k; i++) {
		struct blob_id *id = &ids[st + i - first];

		if (!(mask & (1ull << i)))
			continue;
		if (!live && (zero & (1ull << i))) {
			*id = STORE_ZERO_ID;
			continue;
		}
		if (store_put(s, live ? buf + (uint64_t)i * STORE_PAGE_SIZE : hva[i],
		              STORE_PAGE_SIZE, id, err) < 0)
			return -1;
		if (!blob_id_is_zero(id))
			r->pages_written++;
	}
	return 0;
}

int ckpt_take(struct vm *vm, struct store *s, const struct ckpt_opts *o, struct ckpt_result *r,
              struct hv_error *err)
{
	struct guest_mem *mem = &vm->mem;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), blobs0, bytes0, npages = mem->npages;
	uint64_t words = dirty_bitmap_words(mem);
	struct manifest *parent = NULL, m = {0};
	struct page_cursor cur = {.mem = mem, .slot = -1};
	struct stream_mem mb = {0};
	struct blob_id *ids = NULL;
	uint64_t *sel = NULL, *want = NULL;
	uint64_t pdone = 0, ptotal = 0, plast = 0;
	uint8_t *buf = NULL;
	bool resumed = false, harvested = false, live = false, trap;
	struct hv_error werr = {0};
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (atomic_load(&mem->filling)) {
		hv_fail(err, EBUSY,
		        "checkpoint: guest memory is still being loaded (lazy restore)");
		goto out;
	}
	if (o->ntags > MANIFEST_TAGS_MAX) {
		hv_fail(err, EINVAL, "%zu tags, at most %d", o->ntags, MANIFEST_TAGS_MAX);
		goto out;
	}
	store_put_stats(s, &blobs0, &bytes0);
	/* A parent is a base only if the dirty log has run, unharvested by others, since. */
	if (!o->full && o->parent && *o->parent && dirty_logging(mem)) {
		/* A parent pruned or deleted meanwhile: this checkpoint is simply full. */
		if (manifest_read(s, o->parent, &parent, &werr) < 0 && werr.code != ENOENT) {
			hv_fail(err, werr.code, "%s", werr.msg);
			goto out;
		}
		if (parent && parent->ram_size != mem->ram_size) {
			manifest_free(parent);
			parent = NULL;
		}
	}
	r->full = !parent;
	r->base_kept = !!parent;
	m.nchunks = manifest_chunks(mem->ram_size);
	m.chunks = calloc(m.nchunks ? m.nchunks : 1, sizeof(*m.chunks));
	m.tags = calloc(o->ntags ? o->ntags : 1, sizeof(*m.tags));
	ids = malloc(CHUNK_BYTES);
	sel = calloc(words ? words : 1, sizeof(*sel));
	buf = malloc(CBW_STRETCH * STORE_PAGE_SIZE);
	if (!m.chunks || !m.tags || !ids || !sel || !buf) {
		hv_fail(err, ENOMEM, "checkpoint: out of memory");
		goto out;
	}

	/* ---- the pause: what must be taken while no vCPU runs ---- */
	if (parent) {
		dirty_harvest(mem, sel);
		harvested = true;
	} else {
		dirty_start(mem); /* from now on every write is logged: the base of the next */
		set_range(sel, 0, npages); /* holes are found while writing (put_stretch) */
	}
	if (save_state(vm, &mb, err) < 0)
		goto out;
	/* Live unless the backend's stores bypass the VMM and userfaultfd cannot trap them:
	 * then the VM stays paused until the checkpoint is written (live = false). */
	want = malloc(words * sizeof(*want));
	if (!want) {
		hv_fail(err, ENOMEM, "checkpoint: out of memory");
		goto out;
	}
	memcpy(want, sel, words * sizeof(*want));
	/* HV_CKPT_TRAP=1 makes the emu use the trap too, so tests cover it without KVM. */
	trap = !(vm->accel && vm->accel->stores_hooked) || getenv("HV_CKPT_TRAP");
	if (cbw_arm(mem, want, trap, &werr) == 0) {
		live = true;
		r->live = true;
		r->pause_work_ns = now_ns(CLOCK_MONOTONIC) - t0;
		resume_once(o, &resumed);
	} else if (werr.code != ENOSYS && werr.code != ENOTSUP) {
		hv_fail(err, werr.code, "%s", werr.msg);
		goto out;
	}

	/* ---- the pages: the VM runs on if live ---- */
	if (o->progress) {
		ptotal = count_pages(sel, words); /* after the resume: not the guest's time */
		plast = now_ns(CLOCK_MONOTONIC);
	}
	if (store_put(s, mb.p, mb.len, &m.state, err) < 0)
		goto out;
	for (uint64_t c = 0; c < m.nchunks; c++) {
		uint64_t first = c * MANIFEST_CHUNK_PAGES;
		uint64_t n =
		    npages - first < MANIFEST_CHUNK_PAGES ? npages - first : MANIFEST_CHUNK_PAGES;
		size_t len;

		if (parent && !chunk_dirty(sel, first, n)) {
			m.chunks[c] = parent->chunks[c];
			continue;
		}
		if (parent) {
			if (store_get(s, &parent->chunks[c], ids, CHUNK_BYTES, &len, err) < 0)
				goto out;
			if (len != n * sizeof(*ids)) {
				hv_fail(err, EINVAL,
				        "checkpoint %s: page-map chunk %llu holds %zu "
				        "bytes, not %llu",
				        parent->id, (unsigned long long)c, len,
				        (unsigned long long)(n * sizeof(*ids)));
				goto out;
			}
		} else {
			memset(ids, 0, CHUNK_BYTES); /* STORE_ZERO_ID: holes stay zero pages */
		}
		/* @first is a multiple of 4096, so every stretch is one word of @sel. */
		for (uint64_t st = first; st < first + n; st += CBW_STRETCH) {
			unsigned k =
			    first + n - st < CBW_STRETCH ? (unsigned)(first + n - st) : CBW_STRETCH;
			uint64_t mask = sel[st / 64] & (k == 64 ? ~0ull : (1ull << k) - 1);

			if (!mask)
				continue;
			if (put_stretch(vm, s, live, !parent, &cur, st, k, mask, buf, ids, first, r,
			                err) < 0)
				goto out;
			pdone += (uint64_t)__builtin_popcountll(mask);
			progress_note(o, pdone, ptotal, &plast, false);
		}
		if (store_put(s, ids, n * sizeof(*ids), &m.chunks[c], err) < 0)
			goto out;
	}
	if (live) {
		r->pages_copied = cbw_disarm(mem);
		live = false;
	}
	if (store_flush(s, err) < 0)
		goto out;
	progress_note(o, ptotal, ptotal, &plast, true);

	m.time_ns = now_ns(CLOCK_REALTIME);
	if (manifest_make_id(m.id, m.time_ns, err) < 0)
		goto out;
	snprintf(m.vm, sizeof(m.vm), "%s", vm->cfg.name);
	if (parent)
		memcpy(m.parent, parent->id, sizeof(m.parent));
	for (size_t i = 0; i < o->ntags; i++)
		snprintf(m.tags[i], sizeof(m.tags[i]), "%s", o->tags[i]);
	m.ntags = o->ntags;
	m.ram_size = mem->ram_size;
	if (manifest_write(s, &m, err) < 0)
		goto out;
	memcpy(r->id, m.id, sizeof(r->id));
	store_put_stats(s, &r->blobs_stored, &r->bytes_stored);
	r->blobs_stored -= blobs0;
	r->bytes_stored -= bytes0;
	rc = 0;
out:
	if (live)
		r->pages_copied = cbw_disarm(mem);
	if (!r->live)
		r->pause_work_ns = now_ns(CLOCK_MONOTONIC) - t0;
	resume_once(o, &resumed);
	/* Failed after taking the dirty pages: give them back, so the parent stays a base. */
	if (rc < 0 && harvested)
		dirty_unharvest(mem, sel);
	r->duration_ns = now_ns(CLOCK_MONOTONIC) - t0;
	manifest_free(parent);
	free(m.chunks);
	free(m.tags);
	stream_mem_free(&mb);
	free(ids);
	free(sel);
	free(buf);
	return rc;
}

int ckpt_open_store(const char *path, bool create, struct store **out, struct hv_error *err)
{
	struct stat sb;

	if (create && stat(path, &sb) < 0 && errno == ENOENT && store_create(path, err) < 0)
		return -1;
	return store_open_writer(path, out, err);
}
