/*
 * vmsig.h - SIGINT, SIGTERM and SIGHUP end the VM of a VMM program (hv, hvmigrate recv).
 *
 * The signals are blocked in every thread and taken by one thread with sigwait, so the
 * "handler" is ordinary code: vm_shutdown with exit status 128 + the signal.
 */
#ifndef HV_TOOLSTACK_VMSIG_H
#define HV_TOOLSTACK_VMSIG_H

#include <signal.h>

#include "hv/vm.h"

struct vmsig {
	sigset_t set;
	struct vm *vm;
};

/* vmsig_block - block the signals in the calling thread, before it makes any other
 * thread (threads inherit the mask). */
void vmsig_block(struct vmsig *s);

/* vmsig_watch - from now on each of the signals shuts @vm down. @s and @vm must live
 * until the process exits (the watching thread is detached). */
void vmsig_watch(struct vmsig *s, struct vm *vm);

#endif
