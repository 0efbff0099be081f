/*
 * vmsig.h - SIGINT, SIGTERM and SIGHUP end the VM of a VMM program (hv, hvmigrate recv).
 *
 * The signals are blocked in every thread and taken by one thread with sigwait, so the
 * "handler" is ordinary code: vm_shutdown with exit status 128 + the signal. A program
 * that has no VM yet (hvmigrate recv waiting for one) gives a callback instead, which
 * must make the wait end (incoming_abort); the signal is remembered.
 */
#ifndef HV_TOOLSTACK_VMSIG_H
#define HV_TOOLSTACK_VMSIG_H

#include <pthread.h>
#include <signal.h>

#include "hv/vm.h"

struct vmsig {
	sigset_t set;
	pthread_mutex_t lock;
	struct vm *vm;           /* under lock */
	void (*before)(int sig); /* while there is no VM */
	int pending;             /* under lock: a signal taken while there was no VM */
};

/* vmsig_block - block the signals in the calling thread, before it makes any other
 * thread (threads inherit the mask). */
void vmsig_block(struct vmsig *s);

/*
 * vmsig_watch - from now on each of the signals shuts @vm down, or, while @vm is NULL,
 * calls @before (may be NULL) and is remembered. @s must live until the process exits
 * (the watching thread is detached).
 */
void vmsig_watch(struct vmsig *s, struct vm *vm, void (*before)(int sig));

/* vmsig_set_vm - hand the signals to @vm from now on; returns a signal taken while
 * there was none (0: none), which the caller decides about. With @vm NULL, call it
 * before destroying the VM: when it returns, no signal is shutting the old one down. */
int vmsig_set_vm(struct vmsig *s, struct vm *vm);

/* vmsig_pending - the signal taken while there was no VM, 0 if none. */
int vmsig_pending(struct vmsig *s);

#endif
