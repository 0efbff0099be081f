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

int ckpt_take(struct vm *vm, struct store *s, const struct ckpt_opts *o, struct ckpt_result *r,
              struct hv_error *err)
{
	struct guest_mem *mem = &vm->mem;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), blobs0, bytes0, npages = mem->npages;
	struct page_cursor cur = {.mem = mem, .slot = -1};
	struct manifest *parent = NULL, m = {0};
	struct stream_mem mb = {0};
	struct blob_id *ids = NULL;
	uint64_t *bm = NULL;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (o->ntags > MANIFEST_TAGS_MAX)
		return hv_fail(err, EINVAL, "%zu tags, at most %d", o->ntags, MANIFEST_TAGS_MAX);
	store_put_stats(s, &blobs0, &bytes0);
	/* A parent is a base only if the dirty log has run, unharvested by others, since. */
	if (!o->full && o->parent && *o->parent && dirty_logging(mem)) {
		if (manifest_read(s, o->parent, &parent, err) < 0)
			return -1;
		if (parent->ram_size != mem->ram_size) {
			manifest_free(parent);
			parent = NULL;
		}
	}
	r->full = !parent;
	m.nchunks = manifest_chunks(mem->ram_size);
	m.chunks = calloc(m.nchunks ? m.nchunks : 1, sizeof(*m.chunks));
	m.tags = calloc(o->ntags ? o->ntags : 1, sizeof(*m.tags));
	ids = malloc(CHUNK_BYTES);
	if (parent)
		bm = calloc(dirty_bitmap_words(mem), sizeof(*bm));
	if (!m.chunks || !m.tags || !ids || (parent && !bm)) {
		hv_fail(err, ENOMEM, "checkpoint: out of memory");
		goto out;
	}
	if (parent)
		dirty_harvest(mem, bm);
	else
		dirty_start(mem); /* from now on every write is logged: the base of the next */

	if (save_state(vm, &mb, err) < 0 || store_put(s, mb.p, mb.len, &m.state, err) < 0)
		goto out;
	for (uint64_t c = 0; c < m.nchunks; c++) {
		uint64_t first = c * MANIFEST_CHUNK_PAGES;
		uint64_t n =
		    npages - first < MANIFEST_CHUNK_PAGES ? npages - first : MANIFEST_CHUNK_PAGES;
		size_t len;

		if (parent && !chunk_dirty(bm, first, n)) {
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
		}
		for (uint64_t i = 0; i < n; i++) {
			uint64_t p = first + i;
			bool hole = false;
			uint8_t *hva;

			if (parent && !(bm[p / 64] & (1ull << (p % 64))))
				continue;
			hva = page_at(&cur, p, parent ? NULL : &hole);
			if (!hva) {
				hv_fail(err, EINVAL, "checkpoint: page %llu is in no memory slot",
				        (unsigned long long)p);
				goto out;
			}
			if (hole) {
				ids[i] = STORE_ZERO_ID;
				continue;
			}
			if (store_put(s, hva, STORE_PAGE_SIZE, &ids[i], err) < 0)
				goto out;
			if (!blob_id_is_zero(&ids[i]))
				r->pages_written++;
		}
		if (store_put(s, ids, n * sizeof(*ids), &m.chunks[c], err) < 0)
			goto out;
	}
	if (store_flush(s, err) < 0)
		goto out;

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
	r->duration_ns = now_ns(CLOCK_MONOTONIC) - t0;
	rc = 0;
out:
	manifest_free(parent);
	free(m.chunks);
	free(m.tags);
	stream_mem_free(&mb);
	free(ids);
	free(bm);
	return rc;
}

int ckpt_open_store(const char *path, bool create, struct store **out, struct hv_error *err)
{
	struct stat sb;

	if (create && stat(path, &sb) < 0 && errno == ENOENT && store_create(path, err) < 0)
		return -1;
	return store_open(path, out, err);
}
