/*
 * restore.c - create a VM from a checkpoint of a store, eagerly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/pagewalk.h"
#include "checkpoint/vmckpt.h"
#include "migrate/stream.h"
#include "migrate/vmstate.h"

#define CHUNK_BYTES (MANIFEST_CHUNK_PAGES * sizeof(struct blob_id))

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
