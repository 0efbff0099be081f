/*
 * vmsig.c - signals that end the VM, taken on a thread of their own.
 */
#include <string.h>

#include "toolstack/vmsig.h"

void vmsig_block(struct vmsig *s)
{
	sigemptyset(&s->set);
	sigaddset(&s->set, SIGINT);
	sigaddset(&s->set, SIGTERM);
	sigaddset(&s->set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &s->set, NULL);
	pthread_mutex_init(&s->lock, NULL);
	s->vm = NULL;
	s->before = NULL;
	s->pending = 0;
}

static void *watch(void *arg)
{
	struct vmsig *s = arg;
	int sig;

	while (sigwait(&s->set, &sig) == 0) {
		struct vm *vm;
		void (*before)(int);

		pthread_mutex_lock(&s->lock);
		vm = s->vm;
		before = s->before;
		if (!vm && !s->pending)
			s->pending = sig;
		/* Under the lock: once vmsig_set_vm(s, NULL) returns, no shutdown of the old
		 * VM is under way, and the program may destroy it (a SIGTERM arriving while hv
		 * tore the VM down used to shut down freed memory). */
		if (vm)
			vm_shutdown(vm, VM_EXIT_REQUESTED, 128 + sig, "stopped by SIG%s",
			            sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
		pthread_mutex_unlock(&s->lock);
		if (!vm && before)
			before(sig);
	}
	return NULL;
}

void vmsig_watch(struct vmsig *s, struct vm *vm, void (*before)(int sig))
{
	pthread_t t;

	pthread_mutex_lock(&s->lock);
	s->vm = vm;
	s->before = before;
	pthread_mutex_unlock(&s->lock);
	if (pthread_create(&t, NULL, watch, s) == 0)
		pthread_detach(t);
}

int vmsig_set_vm(struct vmsig *s, struct vm *vm)
{
	int sig;

	pthread_mutex_lock(&s->lock);
	s->vm = vm;
	sig = s->pending;
	pthread_mutex_unlock(&s->lock);
	return sig;
}

int vmsig_pending(struct vmsig *s)
{
	int sig;

	pthread_mutex_lock(&s->lock);
	sig = s->pending;
	pthread_mutex_unlock(&s->lock);
	return sig;
}
