/*
 * vmsig.c - signals that end the VM, taken on a thread of their own.
 */
#include <pthread.h>
#include <string.h>

#include "toolstack/vmsig.h"

void vmsig_block(struct vmsig *s)
{
	sigemptyset(&s->set);
	sigaddset(&s->set, SIGINT);
	sigaddset(&s->set, SIGTERM);
	sigaddset(&s->set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &s->set, NULL);
	s->vm = NULL;
}

static void *watch(void *arg)
{
	struct vmsig *s = arg;
	int sig;

	while (sigwait(&s->set, &sig) == 0)
		vm_shutdown(s->vm, VM_EXIT_REQUESTED, 128 + sig, "stopped by SIG%s",
		            sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
	return NULL;
}

void vmsig_watch(struct vmsig *s, struct vm *vm)
{
	pthread_t t;

	s->vm = vm;
	if (pthread_create(&t, NULL, watch, s) == 0)
		pthread_detach(t);
}
