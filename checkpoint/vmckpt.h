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
 * Live checkpoints: the caller pauses the VM and passes a resume callback; ckpt_take takes
 * the state stream and the set of pages to save, arms copy-before-write (hv/cbw.h) and
 * resumes the VM at once, then writes the pages while it runs - each page as it was at
 * the pause, because a vCPU's first write to a page not yet saved copies it aside first.
 * That needs a backend whose stores are hooked (accel_ops.stores_hooked: the emu); on
 * others (KVM, until userfaultfd write-protect is wired) the VM stays paused until the
 * checkpoint is committed, and the result says live = false.
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
	/* Called exactly once, as soon as the VM may run again: right after the pause-time
	 * work when the checkpoint is live, else when ckpt_take returns. May be NULL. */
	void (*resume)(void *arg);
	void *resume_arg;
	/* Progress of the page writing, for a bar: called on ckpt_take's thread, at most
	 * every CKPT_PROGRESS_NS while pages are written and once when all are (@pages_done
	 * == @pages_total; not if the checkpoint fails first). @pages_total counts the pages
	 * selected at the pause (all when full, the dirty ones when incremental). Never
	 * called during the pause-time work, only after the resume (or, not live, while
	 * the VM stays paused for the writing anyway). May be NULL. */
	void (*progress)(void *arg, uint64_t pages_done, uint64_t pages_total);
	void *progress_arg;
};

#define CKPT_PROGRESS_NS 100000000ull /* 100 ms between two progress calls */

struct ckpt_result {
	char id[MANIFEST_ID_LEN + 1];
	bool full;              /* no parent was used */
	uint64_t pages_written; /* non-zero pages handed to the store (dirty ones if incremental) */
	uint64_t blobs_stored;  /* blobs new to the store (pages, chunks, state) */
	uint64_t bytes_stored;  /* their packed bytes */
	uint64_t duration_ns;
	bool live;              /* the VM ran on while the pages were written */
	uint64_t pages_copied;  /* live: pages the guest wrote before they were saved, so
	                         * copied aside first */
	uint64_t pause_work_ns; /* ckpt_take's own part of the pause (before resume) */
	bool base_kept;         /* on failure: the parent is still a valid base (the dirty
	                         * pages were given back to the log) */
};

/*
 * ckpt_take - write a checkpoint of @vm (paused by the caller, or created and never
 * started) into @s and commit its manifest; calls @o->resume once (see above). Starts the
 * dirty log when the checkpoint is full (it is on from then on), harvests it when
 * incremental. On failure (a full disk, an I/O error) the checkpoint is abandoned: nothing
 * is committed (blobs put are left as orphans for gc), copy-before-write is disarmed, the
 * VM runs on, and the harvested pages go back to the dirty log, so the parent stays a
 * valid base (@r->base_kept; false when the next checkpoint must be full).
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
