/*
 * restore.c - create a VM from a checkpoint of a store, eagerly.
 *
 * The state blob makes the VM (with hole RAM), then every non-zero page named by the page
 * map is read, re-hashed by store_get, and written straight into RAM before anything runs.
 * lazy.c shares the first step and the page-map reader.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/pagewalk.h"
#include "checkpoint/restore.h"
#include "checkpoint/vmckpt.h"
#include "migrate/stream.h"
#include "migrate/vmstate.h"

#define CHUNK_BYTES (MANIFEST_CHUNK_PAGES * sizeof(struct blob_id))

int ckpt_restore_state(struct store *s, const struct manifest *m, struct vm *vm, int console_out,
                       int console_in, struct hv_error *err)
{
	struct stream_mem mb = {0};
	struct stream st;
	char name[64];
	int rc;

	memset(vm, 0, sizeof(*vm)); /* vm_destroy() is then safe whatever happens */
	snprintf(name, sizeof(name), "checkpoint %s", m->id);
	mb.p = malloc(STORE_BLOB_MAX);
	if (!mb.p)
		return hv_fail(err, ENOMEM, "%s: out of memory", name);
	if (store_get(s, &m->state, mb.p, STORE_BLOB_MAX, &mb.len, err) < 0) {
		stream_mem_free(&mb);
		return -1;
	}
	rc = stream_open_read_io(&st, &stream_mem_io, &mb, name, err);
	if (rc == 0)
		rc = vmstate_load(&st, vm, console_out, console_in, err);
	stream_close(&st);
	stream_mem_free(&mb);
	if (rc < 0)
		return -1;
	if (vm->mem.ram_size != m->ram_size) {
		hv_fail(err, EINVAL, "%s: the state says %llu bytes of RAM, the manifest %llu",
		        name, (unsigned long long)vm->mem.ram_size,
		        (unsigned long long)m->ram_size);
		vm_destroy(vm);
		return -1;
	}
	return 0;
}

int64_t ckpt_chunk_get(struct store *s, const struct manifest *m, uint64_t c, uint64_t npages,
                       struct blob_id *ids, struct hv_error *err)
{
	uint64_t first = c * MANIFEST_CHUNK_PAGES;
	uint64_t n;
	size_t len;

	if (c >= m->nchunks || first >= npages)
		return hv_fail(err, ERANGE, "checkpoint %s: no page-map chunk %llu", m->id,
		               (unsigned long long)c);
	n = npages - first < MANIFEST_CHUNK_PAGES ? npages - first : MANIFEST_CHUNK_PAGES;
	if (store_get(s, &m->chunks[c], ids, CHUNK_BYTES, &len, err) < 0)
		return -1;
	if (len != n * sizeof(*ids))
		return hv_fail(
		    err, EINVAL, "checkpoint %s: page-map chunk %llu holds %zu bytes, not %llu",
		    m->id, (unsigned long long)c, len, (unsigned long long)(n * sizeof(*ids)));
	return (int64_t)n;
}

int ckpt_restore_counted(struct store *s, const char *id, struct vm *vm, int console_out,
                         int console_in, struct restore_stats *stats, struct hv_error *err)
{
	struct page_cursor cur = {.mem = &vm->mem, .slot = -1};
	struct manifest *m = NULL;
	struct blob_id *ids = NULL;
	uint64_t nonzero = 0;
	bool created = false;
	int rc = -1;

	memset(vm, 0, sizeof(*vm));
	if (manifest_read(s, id, &m, err) < 0)
		return -1;
	ids = malloc(CHUNK_BYTES);
	if (!ids) {
		hv_fail(err, ENOMEM, "checkpoint %s: out of memory", m->id);
		goto out;
	}
	if (ckpt_restore_state(s, m, vm, console_out, console_in, err) < 0)
		goto out;
	created = true;
	for (uint64_t c = 0; c < m->nchunks; c++) {
		uint64_t first = c * MANIFEST_CHUNK_PAGES;
		int64_t n = ckpt_chunk_get(s, m, c, vm->mem.npages, ids, err);
		size_t len;

		if (n < 0)
			goto out;
		for (int64_t i = 0; i < n; i++) {
			uint8_t *hva;

			/* Fresh guest RAM is zero: a zero page needs nothing (and stays a hole). */
			if (blob_id_is_zero(&ids[i]))
				continue;
			hva = page_at(&cur, first + (uint64_t)i, NULL);
			if (!hva) {
				hv_fail(err, EINVAL,
				        "checkpoint %s: page %llu is in no memory slot", m->id,
				        (unsigned long long)(first + (uint64_t)i));
				goto out;
			}
			/* Commit RAM 2 MiB at a time, not one page fault per page (mem.h). */
			mem_populate(&vm->mem.slot[cur.slot],
			             (uint64_t)(hva - vm->mem.slot[cur.slot].hva));
			/* Straight into RAM: the VM has not started and logs nothing yet. */
			if (store_get(s, &ids[i], hva, STORE_PAGE_SIZE, &len, err) < 0)
				goto out;
			if (len != STORE_PAGE_SIZE) {
				hv_fail(err, EINVAL, "checkpoint %s: page %llu: blob of %zu bytes",
				        m->id, (unsigned long long)(first + (uint64_t)i), len);
				goto out;
			}
			nonzero++;
		}
	}
	if (stats) {
		memset(stats, 0, sizeof(*stats));
		stats->pages_total = vm->mem.npages;
		stats->pages_nonzero = nonzero;
		stats->pages_prefetched = nonzero; /* all of them, before the first instruction */
	}
	rc = 0;
out:
	if (rc < 0 && created)
		vm_destroy(vm);
	manifest_free(m);
	free(ids);
	return rc;
}

int ckpt_restore(struct store *s, const char *id, struct vm *vm, int console_out, int console_in,
                 struct hv_error *err)
{
	return ckpt_restore_counted(s, id, vm, console_out, console_in, NULL, err);
}
