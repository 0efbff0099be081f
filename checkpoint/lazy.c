/*
 * lazy.c - lazy restore: guest RAM filled on demand through userfaultfd.
 *
 * RAM starts as empty memfd holes registered in missing mode, so the first touch of each
 * page - whoever makes it: a vCPU, KVM's get_user_pages on the guest's behalf, a device -
 * blocks in the kernel and becomes a message to the fault thread, which reads the page
 * from the store (store_get re-hashes it) into a buffer of its own and places it with
 * UFFDIO_COPY, atomically and waking every waiter. The prefetch thread does the same for
 * every non-zero page in page order; whichever of the two comes second gets EEXIST, which
 * only means the page is there. Neither thread ever touches guest RAM through the
 * registered mapping: that would fault into the very thread that must serve it.
 *
 * The page map is read a 4096-page chunk at a time, the first time either thread needs a
 * page of it, so nothing before the first instruction is proportional to RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/lazy.h"
#include "hv/uffd.h"

#define CHUNK_BYTES (MANIFEST_CHUNK_PAGES * sizeof(struct blob_id))
#define MSG_BATCH   16

enum { FILLING, RESIDENT, FAILED };

struct range {
	uint8_t *hva;
	uint64_t size, gpa, first_page;
};

struct lazy {
	struct vm *vm;
	struct store *s;  /* the caller's handle: the fault thread reads through it */
	struct store *ps; /* the prefetch thread's own handle, so neither waits on the other */
	struct manifest *m;
	struct lazy_ops ops;
	int uffd, stopfd;
	bool zeropage; /* UFFDIO_ZEROPAGE works on this memory (shmem: yes) */
	bool registered;
	struct range r[MEM_MAX_SLOTS];
	int nr;
	uint64_t npages;
	_Atomic(struct blob_id *) *chunk; /* page-map chunks, loaded on first use */
	_Atomic uint64_t *present;        /* one bit per page placed by either thread */
	_Atomic bool stop;
	pthread_t fault_thr, pf_thr;
	bool fault_started, pf_started;
	_Atomic uint64_t faulted, faulted_nonzero, prefetched;

	pthread_mutex_t mu; /* protects phase and msg; cond: phase changes */
	pthread_cond_t cond;
	int phase;
	char msg[HV_ERROR_MSG];
};

static void set_phase(struct lazy *l, int phase, const char *msg)
{
	pthread_mutex_lock(&l->mu);
	if (l->phase == FILLING) {
		l->phase = phase;
		if (msg)
			snprintf(l->msg, sizeof(l->msg), "%s", msg);
	}
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->mu);
}

/*
 * The restore cannot go on. The VM stops with the error (vCPUs that are not waiting for
 * a page park and exit); if @stuck, a thread waits for a page nobody can give, so the
 * program must end here.
 */
static void fail(struct lazy *l, bool stuck, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct lazy *l, bool stuck, const char *fmt, ...)
{
	char msg[HV_ERROR_MSG];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	set_phase(l, FAILED, msg);
	atomic_store(&l->stop, true);
	vm_shutdown(l->vm, VM_EXIT_ERROR, 0, "%s", msg);
	if (stuck && l->ops.fatal)
		l->ops.fatal(l->ops.arg, l->msg);
}

static void present_set(struct lazy *l, uint64_t p)
{
	atomic_fetch_or_explicit(&l->present[p / 64], 1ULL << (p % 64), memory_order_relaxed);
}

static bool present_test(struct lazy *l, uint64_t p)
{
	return atomic_load_explicit(&l->present[p / 64], memory_order_relaxed) & (1ULL << (p % 64));
}

/* The ids of the pages of chunk @c, read through @s the first time. NULL with @err. */
static struct blob_id *chunk_ids(struct lazy *l, struct store *s, uint64_t c, struct hv_error *err)
{
	struct blob_id *ids = atomic_load(&l->chunk[c]), *old = NULL;

	if (ids)
		return ids;
	ids = malloc(CHUNK_BYTES);
	if (!ids) {
		hv_fail(err, ENOMEM, "page-map chunk %llu: out of memory", (unsigned long long)c);
		return NULL;
	}
	if (ckpt_chunk_get(s, l->m, c, l->npages, ids, err) < 0) {
		free(ids);
		return NULL;
	}
	/* Both threads may load one chunk at once: the first wins, the other's is freed. */
	if (!atomic_compare_exchange_strong(&l->chunk[c], &old, ids)) {
		free(ids);
		ids = old;
	}
	return ids;
}

static const struct range *range_of_page(struct lazy *l, uint64_t p)
{
	for (int i = 0; i < l->nr; i++)
		if (p >= l->r[i].first_page && p - l->r[i].first_page < l->r[i].size / 4096)
			return &l->r[i];
	return NULL;
}

/*
 * Place @buf (NULL: zeros) at page @p. Returns 1 if placed, 0 if it was there already
 * (the other thread was first; its copy woke the waiters, the wake here is for a fault
 * read between the two), -1 with errno.
 */
static int place(struct lazy *l, uint64_t p, const void *buf)
{
	const struct range *r = range_of_page(l, p);
	uint64_t dst = (uint64_t)(uintptr_t)r->hva + (p - r->first_page) * 4096;
	int rc;

	do {
		if (buf) {
			struct uffdio_copy c = {
			    .dst = dst, .src = (uint64_t)(uintptr_t)buf, .len = 4096};
			rc = ioctl(l->uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = {.range = {.start = dst, .len = 4096}};
			rc = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
		}
	} while (rc < 0 && errno == EAGAIN); /* the address space changed under us: again */
	if (rc == 0) {
		present_set(l, p);
		return 1;
	}
	if (errno == EEXIST) {
		struct uffdio_range w = {.start = dst, .len = 4096};

		present_set(l, p);
		ioctl(l->uffd, UFFDIO_WAKE, &w);
		return 0;
	}
	return -1;
}

/* Serve the fault at @addr. Returns -1 when the restore has failed (fail() called). */
static int serve(struct lazy *l, uint64_t addr, uint8_t *buf, const uint8_t *zero)
{
	struct hv_error err = {0};
	const struct range *r = NULL;
	const struct blob_id *id;
	struct blob_id *ids;
	uint64_t p, gpa;
	size_t len;
	int rc;

	for (int i = 0; i < l->nr && !r; i++)
		if (addr - (uint64_t)(uintptr_t)l->r[i].hva < l->r[i].size)
			r = &l->r[i];
	if (!r) {
		fail(l, true, "lazy restore: fault at host address 0x%llx outside guest RAM",
		     (unsigned long long)addr);
		return -1;
	}
	p = r->first_page + (addr - (uint64_t)(uintptr_t)r->hva) / 4096;
	gpa = r->gpa + (p - r->first_page) * 4096;
	ids = chunk_ids(l, l->s, p / MANIFEST_CHUNK_PAGES, &err);
	if (!ids) {
		fail(l, true, "lazy restore: page %llu (gpa 0x%llx): %s", (unsigned long long)p,
		     (unsigned long long)gpa, err.msg);
		return -1;
	}
	id = &ids[p % MANIFEST_CHUNK_PAGES];
	if (blob_id_is_zero(id)) {
		rc = place(l, p, l->zeropage ? NULL : zero);
	} else {
		if (store_get(l->s, id, buf, 4096, &len, &err) < 0 ||
		    (len != 4096 && hv_fail(&err, EINVAL, "blob of %zu bytes", len) < 0)) {
			fail(l, true, "lazy restore: page %llu (gpa 0x%llx): %s",
			     (unsigned long long)p, (unsigned long long)gpa, err.msg);
			return -1;
		}
		rc = place(l, p, buf);
		if (rc == 1)
			atomic_fetch_add(&l->faulted_nonzero, 1);
	}
	if (rc < 0) {
		fail(l, true, "lazy restore: page %llu (gpa 0x%llx): UFFDIO_COPY: %s",
		     (unsigned long long)p, (unsigned long long)gpa, strerror(errno));
		return -1;
	}
	if (rc == 1)
		atomic_fetch_add(&l->faulted, 1);
	return 0;
}

static void *fault_main(void *arg)
{
	struct lazy *l = arg;
	struct uffd_msg msg[MSG_BATCH];
	uint8_t *buf = aligned_alloc(4096, 2 * 4096);

	if (!buf) {
		fail(l, false, "lazy restore: fault thread: out of memory");
		return NULL;
	}
	memset(buf + 4096, 0, 4096);
	for (;;) {
		struct pollfd pf[2] = {{.fd = l->uffd, .events = POLLIN},
		                       {.fd = l->stopfd, .events = POLLIN}};
		ssize_t n;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fail(l, false, "lazy restore: poll: %s", strerror(errno));
			break;
		}
		if (pf[1].revents)
			break;
		n = read(l->uffd, msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fail(l, false, "lazy restore: reading userfaultfd: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				serve(l, msg[i].arg.pagefault.address & ~4095ULL, buf, buf + 4096);
		/* After a failure the thread stays: other pages may still be wanted while the
		 * vCPUs stop, and a fault on a bad page ends the program in serve(). */
	}
	free(buf);
	return NULL;
}

static void unregister(struct lazy *l)
{
	if (!l->registered)
		return;
	/* Wakes anything still waiting in the range: it retries and finds its page. */
	for (int i = 0; i < l->nr; i++) {
		struct uffdio_range u = {.start = (uint64_t)(uintptr_t)l->r[i].hva,
		                         .len = l->r[i].size};
		ioctl(l->uffd, UFFDIO_UNREGISTER, &u);
	}
	l->registered = false;
}

/* Let mem_populate() commit 2 MiB chunks again (see ckpt_restore_lazy). */
static void populate_reset(struct lazy *l)
{
	for (int i = 0; i < l->vm->mem.nslots; i++) {
		struct mem_slot *s = &l->vm->mem.slot[i];
		uint64_t words = ((s->size >> MEM_CHUNK_SHIFT) + 1 + 63) / 64;

		for (uint64_t w = 0; w < words; w++)
			atomic_store_explicit(&s->populated[w], 0, memory_order_relaxed);
	}
}

static void *prefetch_main(void *arg)
{
	struct lazy *l = arg;
	struct hv_error err = {0};
	struct restore_stats st;
	struct store *s;
	uint8_t *buf = aligned_alloc(4096, 4096);

	/* A handle of its own: the fault thread's gets never queue behind a prefetch. */
	if (store_open(store_path(l->s), &l->ps, &err) < 0)
		l->ps = NULL;
	s = l->ps ? l->ps : l->s;
	if (!buf) {
		fail(l, false, "lazy restore: prefetch thread: out of memory");
		return NULL;
	}
	for (uint64_t c = 0; c < l->m->nchunks; c++) {
		uint64_t first = c * MANIFEST_CHUNK_PAGES;
		struct blob_id *ids;

		if (atomic_load(&l->stop))
			goto out;
		ids = chunk_ids(l, s, c, &err);
		if (!ids) {
			fail(l, false, "lazy restore: page-map chunk %llu (pages %llu-%llu): %s",
			     (unsigned long long)c, (unsigned long long)first,
			     (unsigned long long)(first + MANIFEST_CHUNK_PAGES - 1), err.msg);
			goto out;
		}
		for (uint64_t p = first; p < l->npages && p < first + MANIFEST_CHUNK_PAGES; p++) {
			const struct blob_id *id = &ids[p - first];
			size_t len;
			int rc;

			if (blob_id_is_zero(id) || present_test(l, p))
				continue;
			if (atomic_load_explicit(&l->stop, memory_order_relaxed))
				goto out;
			if (store_get(s, id, buf, 4096, &len, &err) < 0 ||
			    (len != 4096 && hv_fail(&err, EINVAL, "blob of %zu bytes", len) < 0)) {
				fail(l, false, "lazy restore: page %llu: %s", (unsigned long long)p,
				     err.msg);
				goto out;
			}
			rc = place(l, p, buf);
			if (rc < 0) {
				fail(l, false, "lazy restore: page %llu: UFFDIO_COPY: %s",
				     (unsigned long long)p, strerror(errno));
				goto out;
			}
			if (rc == 1)
				atomic_fetch_add(&l->prefetched, 1);
		}
	}
	/* Every non-zero page is present; the rest are zero, which a hole reads as. Once
	 * unregistered nothing can fault any more: the fault thread may go too. */
	unregister(l);
	populate_reset(l);
	atomic_store(&l->vm->mem.filling, false);
	{
		uint64_t one = 1;
		(void)!write(l->stopfd, &one, sizeof(one));
	}
	/* Done with the store: the caller may close it (and so drop its lock) in resident(). */
	pthread_join(l->fault_thr, NULL);
	l->fault_started = false; /* lazy_stop reads it only after joining this thread */
	store_close(l->ps);
	l->ps = NULL;
	set_phase(l, RESIDENT, NULL);
	lazy_stats(l, &st);
	if (l->ops.resident)
		l->ops.resident(l->ops.arg, &st);
out:
	free(buf);
	return NULL;
}

static int lazy_register(struct lazy *l, struct hv_error *err)
{
	struct guest_mem *mem = &l->vm->mem;

	l->zeropage = true;
	for (int i = 0; i < mem->nslots; i++) {
		struct mem_slot *s = &mem->slot[i];
		struct uffdio_register reg = {
		    .range = {.start = (uint64_t)(uintptr_t)s->hva, .len = s->size},
		    .mode = UFFDIO_REGISTER_MODE_MISSING};
		uint64_t words = ((s->size >> MEM_CHUNK_SHIFT) + 1 + 63) / 64;

		/* The page map is the whole truth about RAM: nothing written before this
		 * (there should be nothing) may hide a page from the faults. */
		if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		              (off_t)s->size) < 0)
			return hv_fail(err, errno, "guest RAM: punching holes: %s",
			               strerror(errno));
		if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0)
			return hv_fail(
			    err, errno,
			    "userfaultfd: registering RAM at gpa 0x%llx (%llu bytes): %s",
			    (unsigned long long)s->gpa, (unsigned long long)s->size,
			    strerror(errno));
		l->registered = true;
		if (!(reg.ioctls & (1ULL << _UFFDIO_COPY)))
			return hv_fail(err, ENOTSUP, "userfaultfd: no UFFDIO_COPY on guest RAM");
		if (!(reg.ioctls & (1ULL << _UFFDIO_ZEROPAGE)))
			l->zeropage = false;
		l->r[i] = (struct range){
		    .hva = s->hva, .size = s->size, .gpa = s->gpa, .first_page = s->first_page};
		l->nr = i + 1;
		/*
		 * mem_populate() would fault a whole 2 MiB chunk in on the first touch of a
		 * page: 512 store reads in a row on the vCPU's path, most of them for pages
		 * the prefetcher brings anyway. Let the vCPU take its own page only.
		 */
		for (uint64_t w = 0; w < words; w++)
			atomic_store_explicit(&s->populated[w], ~0ULL, memory_order_relaxed);
	}
	/* Until resident, a hole is a page not loaded yet, not a zero page (mem.h). */
	atomic_store(&mem->filling, true);
	return 0;
}

static void lazy_free(struct lazy *l)
{
	if (!l)
		return;
	if (l->stopfd >= 0) {
		uint64_t one = 1;
		(void)!write(l->stopfd, &one, sizeof(one));
	}
	atomic_store(&l->stop, true);
	if (l->pf_started)
		pthread_join(l->pf_thr, NULL);
	if (l->fault_started)
		pthread_join(l->fault_thr, NULL);
	pthread_mutex_lock(&l->mu);
	if (l->phase == FILLING) {
		l->phase = FAILED;
		snprintf(l->msg, sizeof(l->msg),
		         "lazy restore: stopped before memory was resident");
	}
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->mu);
	if (l->uffd >= 0) {
		unregister(l);
		close(l->uffd);
	}
	if (l->stopfd >= 0)
		close(l->stopfd);
	for (uint64_t c = 0; l->chunk && c < l->m->nchunks; c++)
		free(atomic_load(&l->chunk[c]));
	free((void *)l->chunk);
	free((void *)l->present);
	store_close(l->ps);
	manifest_free(l->m);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cond);
	free(l);
}

int ckpt_restore_lazy(struct store *s, const char *id, struct vm *vm, int console_out,
                      int console_in, const struct lazy_ops *ops, struct lazy **lp,
                      struct hv_error *err)
{
	struct lazy *l = calloc(1, sizeof(*l));
	int e;

	memset(vm, 0, sizeof(*vm));
	if (!l)
		return hv_fail(err, ENOMEM, "lazy restore: out of memory");
	l->vm = vm;
	l->s = s;
	l->uffd = l->stopfd = -1;
	l->ops = *ops;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cond, NULL);
	if (manifest_read(s, id, &l->m, err) < 0)
		goto fail_free;
	/* userfaultfd first: a host without it fails before a VM is made. */
	l->uffd = uffd_open(UFFD_FEATURE_MISSING_SHMEM, err);
	if (l->uffd < 0)
		goto fail_free;
	l->stopfd = eventfd(0, EFD_CLOEXEC);
	if (l->stopfd < 0) {
		hv_fail(err, errno, "eventfd: %s", strerror(errno));
		goto fail_free;
	}
	if (ckpt_restore_state(s, l->m, vm, console_out, console_in, err) < 0)
		goto fail_free;
	l->npages = vm->mem.npages;
	l->chunk = calloc(l->m->nchunks ? l->m->nchunks : 1, sizeof(*l->chunk));
	l->present = calloc((l->npages + 63) / 64, sizeof(*l->present));
	if (!l->chunk || !l->present) {
		hv_fail(err, ENOMEM, "lazy restore: page tables for %llu pages: out of memory",
		        (unsigned long long)l->npages);
		goto fail_vm;
	}
	if (lazy_register(l, err) < 0)
		goto fail_vm;
	e = pthread_create(&l->fault_thr, NULL, fault_main, l);
	if (e) {
		hv_fail(err, e, "lazy restore: fault thread: %s", strerror(e));
		goto fail_vm;
	}
	l->fault_started = true;
	/* HV_LAZY_NO_PREFETCH=1: pages come only on demand, never all (tests, diagnosis). */
	if (!getenv("HV_LAZY_NO_PREFETCH")) {
		e = pthread_create(&l->pf_thr, NULL, prefetch_main, l);
		if (e) {
			hv_fail(err, e, "lazy restore: prefetch thread: %s", strerror(e));
			goto fail_vm;
		}
		l->pf_started = true;
	}
	*lp = l;
	return 0;
fail_vm:
	lazy_free(l);
	vm_destroy(vm);
	return -1;
fail_free:
	lazy_free(l);
	return -1;
}

int lazy_wait_resident(struct lazy *l, struct hv_error *err)
{
	int rc = 0;

	pthread_mutex_lock(&l->mu);
	while (l->phase == FILLING)
		pthread_cond_wait(&l->cond, &l->mu);
	if (l->phase != RESIDENT)
		rc = hv_fail(err, EIO, "%s", l->msg);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

const char *lazy_error(struct lazy *l)
{
	const char *msg;

	pthread_mutex_lock(&l->mu);
	msg = l->phase == FAILED && l->msg[0] ? l->msg : NULL;
	pthread_mutex_unlock(&l->mu);
	return msg;
}

void lazy_stats(struct lazy *l, struct restore_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->lazy = true;
	st->pages_total = l->npages;
	st->pages_faulted = atomic_load(&l->faulted);
	st->pages_prefetched = atomic_load(&l->prefetched);
	st->pages_nonzero = atomic_load(&l->faulted_nonzero) + st->pages_prefetched;
}

void lazy_stop(struct lazy *l)
{
	lazy_free(l);
}
