/*
 * lazy.h - restore a checkpoint lazily: the VM runs at once, its memory arrives on demand.
 *
 * Only the manifest and the state blob are read before the VM can start, so the time to
 * the first instruction does not depend on the size of RAM. Guest RAM is registered with
 * userfaultfd (missing mode): a thread serves each first touch of a page - by a vCPU, by
 * KVM on the guest's behalf, or by the VMM itself - from the store, and a second thread
 * prefetches every other non-zero page in page order. When all are present the range is
 * unregistered and RAM is plain memfd memory again.
 *
 * A page the store cannot give (a damaged or missing pack) is never replaced by other
 * bytes: the VM is shut down with an error naming the page and the blob. If a thread is
 * already blocked on that page, nothing can release it, and ops->fatal must end the
 * program.
 */
#ifndef CHECKPOINT_LAZY_H
#define CHECKPOINT_LAZY_H

#include <stdint.h>

#include "checkpoint/restore.h"
#include "checkpoint/store.h"
#include "hv/error.h"
#include "hv/vm.h"

struct lazy;

struct lazy_ops {
	/* Every page is present and RAM is unregistered (once, from the prefetch thread).
	 * The store is not used any more: the callback may close it, which releases its
	 * shared lock so that prune and gc can run on it. */
	void (*resident)(void *arg, const struct restore_stats *st);
	/*
	 * A thread is blocked for good on a page the store cannot give; @msg is one line
	 * naming the page and the blob or pack. Must not return (print, clean up, _exit).
	 */
	void (*fatal)(void *arg, const char *msg);
	void *arg;
};

/*
 * ckpt_restore_lazy - create @vm from checkpoint @id of @s with no page loaded, register
 * its RAM for on-demand loading and start the fault and prefetch threads. @s must stay
 * open until ops->resident is called or lazy_stop returns. On success @vm is VM_CREATED, ready for vm_start(), and *@lp is
 * the caller's; on failure @vm is destroyed (or was never created). Fails with ENOSYS when
 * userfaultfd is unavailable (neither the system call nor /dev/userfaultfd works).
 */
int ckpt_restore_lazy(struct store *s, const char *id, struct vm *vm, int console_out,
                      int console_in, const struct lazy_ops *ops, struct lazy **lp,
                      struct hv_error *err);

/*
 * lazy_wait_resident - block until every page is present (0), or until the restore has
 * failed or been stopped (-1, @err says why).
 */
int lazy_wait_resident(struct lazy *l, struct hv_error *err);

/* lazy_error - the message of a failed restore, or NULL while none has failed. */
const char *lazy_error(struct lazy *l);

/* lazy_stats - counters so far (complete once resident). */
void lazy_stats(struct lazy *l, struct restore_stats *st);

/*
 * lazy_stop - stop both threads, unregister RAM and free @l. Call once nothing can touch
 * guest RAM any more (after vm_wait and the control server's stop) and before
 * vm_destroy. Pages not yet loaded stay holes. NULL is a no-op.
 */
void lazy_stop(struct lazy *l);

#endif
