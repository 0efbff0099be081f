/*
 * restore.h - the pieces an eager (restore.c) and a lazy (lazy.c) restore of a checkpoint
 * share, and what a restore reports.
 *
 * Both build the VM from the checkpoint's state blob first; they differ only in when the
 * pages arrive: all of them before the VM runs, or on demand after.
 */
#ifndef CHECKPOINT_RESTORE_H
#define CHECKPOINT_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "hv/error.h"
#include "hv/vm.h"

/* What a restore did to guest memory (hv restore --report). */
struct restore_stats {
	bool lazy;
	uint64_t pages_total;      /* guest pages */
	uint64_t pages_nonzero;    /* non-zero pages loaded from the store */
	uint64_t pages_faulted;    /* pages served on demand (lazy; zero pages included) */
	uint64_t pages_prefetched; /* non-zero pages loaded ahead of any access */
};

/*
 * ckpt_restore_state - create @vm (zeroed here) from @m's state blob through the vmstate
 * loader and check that its RAM matches the manifest's. On success @vm is VM_CREATED with
 * zero (hole) RAM; on failure it is destroyed or was never created.
 */
int ckpt_restore_state(struct store *s, const struct manifest *m, struct vm *vm, int console_out,
                       int console_in, struct hv_error *err);

/*
 * ckpt_chunk_get - read page-map chunk @c of @m, the ids of pages c*4096 onwards, into
 * @ids (MANIFEST_CHUNK_PAGES entries) and check that it names exactly the guest's pages
 * there (@npages in all). Returns how many ids it holds, or -1 with @err set.
 */
int64_t ckpt_chunk_get(struct store *s, const struct manifest *m, uint64_t c, uint64_t npages,
                       struct blob_id *ids, struct hv_error *err);

/*
 * ckpt_restore_counted - ckpt_restore() (vmckpt.h), also filling @st (which may be NULL).
 */
int ckpt_restore_counted(struct store *s, const char *id, struct vm *vm, int console_out,
                         int console_in, struct restore_stats *st, struct hv_error *err);

#endif
