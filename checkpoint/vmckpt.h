/*
 * vmckpt.h - checkpoints of a VM into a store (store.h, manifest.h), and back.
 *
 * A checkpoint is the VM's state stream (VM_CONFIG, SOURCE_INFO, VCPU and DEVICE records,
 * END; no PAGE_DATA) as one blob, plus a page map naming every guest page. A full
 * checkpoint stores every page; an incremental one stores only the pages the dirty log
 * saw written since its parent and takes the ids of the others from the parent's page
 * map. The dirty log is started by the first checkpoint and must stay on between
 * checkpoints: whoever stops or harvests it (a migration) invalidates the parent, and
 * the next checkpoint must then be full.
 *
 * This step is not live: the VM is paused for the whole checkpoint.
 */
#ifndef CHECKPOINT_VMCKPT_H
#define CHECKPOINT_VMCKPT_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "hv/error.h"
#include "hv/vm.h"

struct ckpt_opts {
	/* The previous checkpoint of this VM in this store, "" or NULL for none. Ignored
	 * (the checkpoint is full) when @full, or when it does not match the VM's RAM. */
	const char *parent;
	bool full;
	const char *const *tags; /* @ntags strings of 1 to MANIFEST_TAG_MAX bytes */
	size_t ntags;
};

struct ckpt_result {
	char id[MANIFEST_ID_LEN + 1];
	bool full;              /* no parent was used */
	uint64_t pages_written; /* non-zero pages handed to the store (dirty ones if incremental) */
	uint64_t blobs_stored;  /* blobs new to the store (pages, chunks, state) */
	uint64_t bytes_stored;  /* their packed bytes */
	uint64_t duration_ns;
};

/*
 * ckpt_take - write a checkpoint of @vm (paused by the caller, or created and never
 * started) into @s and commit its manifest. Starts the dirty log when the checkpoint is
 * full (it is on from then on), harvests it when incremental. On failure nothing is
 * committed (blobs put are left as orphans for gc) and, if the dirty log was harvested,
 * the parent is no longer a valid base: the caller must make the next checkpoint full.
 */
int ckpt_take(struct vm *vm, struct store *s, const struct ckpt_opts *o, struct ckpt_result *r,
              struct hv_error *err);

/*
 * ckpt_restore - create @vm from checkpoint @id of @s, eagerly: the state blob through the
 * vmstate loader, then every non-zero page into guest RAM. On success @vm is VM_CREATED,
 * ready for vm_start(); on failure it is destroyed (or was never created).
 */
int ckpt_restore(struct store *s, const char *id, struct vm *vm, int console_out, int console_in,
                 struct hv_error *err);

/*
 * ckpt_open_store - open the store at @path, creating it first if @path does not exist
 * (a cron job's first run). *@out is the caller's (store_close).
 */
int ckpt_open_store(const char *path, bool create, struct store **out, struct hv_error *err);

#endif
