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

#include "checkpoint/vmckpt.h"
#include "hv/dirty.h"
#include "migrate/stream.h"
#include "migrate/vmstate.h"

#define CHUNK_BYTES (MANIFEST_CHUNK_PAGES * sizeof(struct blob_id))

/* A state stream in memory. */
static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Finds the host address of VM-wide page @p. Also says whether the page lies in a hole of
 * its slot's memfd: never written, so zero, and reading it would make the kernel allocate
 * it - a full checkpoint of a mostly idle 64 GiB guest must not commit 64 GiB of RAM.
 */
struct page_cursor {
	struct guest_mem *mem;
	int slot;
	uint64_t data, hole; /* the slot's current extent: holes before @data, data to @hole */
};

static uint8_t *page_at(struct page_cursor *c, uint64_t p, bool *in_hole)
{
	struct guest_mem *m = c->mem;
	struct mem_slot *s;
	uint64_t off;

	if (c->slot < 0 || p < m->slot[c->slot].first_page ||
	    p >= m->slot[c->slot].first_page + m->slot[c->slot].size / MEM_PAGE_SIZE) {
		c->slot = -1;
		for (int i = 0; i < m->nslots; i++)
			if (p >= m->slot[i].first_page &&
			    p < m->slot[i].first_page + m->slot[i].size / MEM_PAGE_SIZE)
				c->slot = i;
		if (c->slot < 0)
			return NULL;
		c->data = c->hole = 0;
	}
	s = &m->slot[c->slot];
	off = (p - s->first_page) * MEM_PAGE_SIZE;
	if (in_hole) {
		if (off >= c->hole) {
			off_t d = lseek(s->fd, (off_t)off, SEEK_DATA);
			off_t h = d < 0 ? -1 : lseek(s->fd, d, SEEK_HOLE);

			if (d < 0 && errno == ENXIO) {
				c->data = c->hole = s->size; /* a hole to the end */
			} else if (d < 0 || h < 0) {
				c->data = off; /* SEEK_DATA unsupported: read everything */
				c->hole = s->size;
			} else {
				c->data = (uint64_t)d;
				c->hole = (uint64_t)h;
			}
		}
		*in_hole = off < c->data;
	}
	return s->hva + off;
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

int ckpt_restore(struct store *s, const char *id, struct vm *vm, int console_out, int console_in,
                 struct hv_error *err)
{
	struct page_cursor cur = {.mem = &vm->mem, .slot = -1};
	struct manifest *m = NULL;
	struct stream_mem mb = {0};
	struct blob_id *ids = NULL;
	char name[64];
	bool created = false;
	struct stream st;
	int rc = -1;

	memset(vm, 0, sizeof(*vm)); /* vm_destroy() is then safe whatever happens */
	if (manifest_read(s, id, &m, err) < 0)
		return -1;
	snprintf(name, sizeof(name), "checkpoint %s", m->id);
	mb.p = malloc(STORE_BLOB_MAX);
	ids = malloc(CHUNK_BYTES);
	if (!mb.p || !ids) {
		hv_fail(err, ENOMEM, "%s: out of memory", name);
		goto out;
	}
	if (store_get(s, &m->state, mb.p, STORE_BLOB_MAX, &mb.len, err) < 0)
		goto out;
	rc = stream_open_read_io(&st, &stream_mem_io, &mb, name, err);
	if (rc == 0)
		rc = vmstate_load(&st, vm, console_out, console_in, err);
	stream_close(&st);
	if (rc < 0)
		goto out;
	created = true;
	rc = -1;
	if (vm->mem.ram_size != m->ram_size) {
		hv_fail(err, EINVAL, "%s: the state says %llu bytes of RAM, the manifest %llu",
		        name, (unsigned long long)vm->mem.ram_size,
		        (unsigned long long)m->ram_size);
		goto out;
	}
	for (uint64_t c = 0; c < m->nchunks; c++) {
		uint64_t first = c * MANIFEST_CHUNK_PAGES;
		uint64_t n = vm->mem.npages - first < MANIFEST_CHUNK_PAGES ? vm->mem.npages - first
		                                                           : MANIFEST_CHUNK_PAGES;
		size_t len;

		if (store_get(s, &m->chunks[c], ids, CHUNK_BYTES, &len, err) < 0)
			goto out;
		if (len != n * sizeof(*ids)) {
			hv_fail(err, EINVAL, "%s: page-map chunk %llu holds %zu bytes, not %llu",
			        name, (unsigned long long)c, len,
			        (unsigned long long)(n * sizeof(*ids)));
			goto out;
		}
		for (uint64_t i = 0; i < n; i++) {
			uint8_t *hva;

			/* Fresh guest RAM is zero: a zero page needs nothing (and stays a hole). */
			if (blob_id_is_zero(&ids[i]))
				continue;
			hva = page_at(&cur, first + i, NULL);
			if (!hva) {
				hv_fail(err, EINVAL, "%s: page %llu is in no memory slot", name,
				        (unsigned long long)(first + i));
				goto out;
			}
			/* Straight into RAM: the VM has not started and logs nothing yet. */
			if (store_get(s, &ids[i], hva, STORE_PAGE_SIZE, &len, err) < 0)
				goto out;
			if (len != STORE_PAGE_SIZE) {
				hv_fail(err, EINVAL, "%s: page %llu: blob of %zu bytes", name,
				        (unsigned long long)(first + i), len);
				goto out;
			}
		}
	}
	rc = 0;
out:
	if (rc < 0 && created)
		vm_destroy(vm);
	manifest_free(m);
	stream_mem_free(&mb);
	free(ids);
	return rc;
}

int ckpt_open_store(const char *path, bool create, struct store **out, struct hv_error *err)
{
	struct stat sb;

	if (create && stat(path, &sb) < 0 && errno == ENOENT && store_create(path, err) < 0)
		return -1;
	return store_open(path, out, err);
}
