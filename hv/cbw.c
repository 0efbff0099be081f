/*
 * cbw.c - copy-before-write of guest RAM (see cbw.h).
 *
 * One lock guards everything: the wanted bitmap, the copies and their count. Writers take
 * it at most once per page per dirty-log epoch (the emu's write slow path), the reader
 * once per stretch, so it is not contended enough to be worth anything finer. The state
 * (struct cbw) lives as long as the guest_mem, so a writer that saw cbw_on just before a
 * disarm finds "nothing wanted" under the lock instead of freed memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hv/cbw.h"
#include "hv/uffd.h"

struct cbw_copy {
	struct cbw_copy *next;
	uint64_t page;
	uint8_t data[MEM_PAGE_SIZE];
};

struct cbw {
	pthread_mutex_t lock;
	pthread_cond_t room;      /* copy_bytes fell below CBW_COPY_MAX, or disarmed */
	uint64_t *want;           /* NULL when not armed */
	struct cbw_copy **copies; /* per stretch (page / CBW_STRETCH): its copies */
	uint64_t nstretch;
	uint64_t copy_bytes;
	bool lost;        /* a page could not be copied (out of memory): the arm is worthless */
	uint64_t ncopied; /* pages copied before a write since the arm */

	/* The trap (cbw_arm with @trap): userfaultfd write-protection and its thread. */
	int uffd;    /* -1 when no trap */
	int stop[2]; /* a pipe: the thread's stop signal */
	pthread_t thread;
};

static bool wanted(const struct cbw *c, uint64_t page)
{
	return c->want && (c->want[page / 64] & (1ull << (page % 64)));
}

static void drop_all(struct cbw *c)
{
	for (uint64_t i = 0; c->copies && i < c->nstretch; i++) {
		while (c->copies[i]) {
			struct cbw_copy *cp = c->copies[i];

			c->copies[i] = cp->next;
			free(cp);
		}
	}
	free(c->copies);
	free(c->want);
	c->copies = NULL;
	c->want = NULL;
	c->nstretch = 0;
	c->copy_bytes = 0;
}

/* Page @page's host address range within its slot, for up to @n pages. */
static uint64_t slot_run(struct guest_mem *m, uint64_t page, uint64_t n, uint8_t **hva)
{
	struct mem_slot *s = mem_page_slot(m, page);
	uint64_t end;

	if (!s)
		return 0;
	end = s->first_page + (s->size >> MEM_PAGE_SHIFT);
	*hva = s->hva + ((page - s->first_page) << MEM_PAGE_SHIFT);
	return n < end - page ? n : end - page;
}

/* Write-protect (@wp) or release pages [@page, @page+@n); releasing wakes the waiters. */
static int trap_protect(struct guest_mem *m, int uffd, uint64_t page, uint64_t n, bool wp)
{
	while (n) {
		uint8_t *hva;
		uint64_t k = slot_run(m, page, n, &hva);
		struct uffdio_writeprotect w = {
		    .range = {.start = (uint64_t)(uintptr_t)hva, .len = k << MEM_PAGE_SHIFT},
		    .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0};

		if (!k)
			return -1;
		if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0)
			return -1;
		page += k;
		n -= k;
	}
	return 0;
}

static uint64_t hva_page(struct guest_mem *m, uint64_t addr)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		uint64_t base = (uint64_t)(uintptr_t)s->hva;

		if (addr >= base && addr < base + s->size)
			return s->first_page + ((addr - base) >> MEM_PAGE_SHIFT);
	}
	return UINT64_MAX;
}

/*
 * The trap's thread: a vCPU (KVM's, faulting through get_user_pages) wrote a protected
 * page. Copy it aside if still wanted, then release it, which wakes the vCPU.
 */
static void *trap_main(void *arg)
{
	struct guest_mem *m = arg;
	struct cbw *c = m->cbw;
	struct uffd_msg msg[16];

	for (;;) {
		struct pollfd pf[2] = {{.fd = c->uffd, .events = POLLIN},
		                       {.fd = c->stop[0], .events = POLLIN}};
		ssize_t n;

		if (poll(pf, 2, -1) < 0)
			continue; /* EINTR */
		if (pf[1].revents)
			return NULL;
		n = read(c->uffd, msg, sizeof(msg));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			uint64_t addr = msg[i].arg.pagefault.address & ~(MEM_PAGE_SIZE - 1);
			uint64_t page = hva_page(m, addr);
			struct uffdio_writeprotect w = {
			    .range = {.start = addr, .len = MEM_PAGE_SIZE}, .mode = 0};

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (page != UINT64_MAX)
				cbw_before_write_slow(m, page);
			ioctl(c->uffd, UFFDIO_WRITEPROTECT, &w);
		}
	}
}

/* Stop the trap: release every page (waking any vCPU waiting), join, unregister. */
static void trap_stop(struct guest_mem *m, struct cbw *c)
{
	if (c->uffd < 0)
		return;
	trap_protect(m, c->uffd, 0, m->npages, false);
	if (c->stop[1] >= 0) {
		(void)!write(c->stop[1], "x", 1);
		pthread_join(c->thread, NULL);
	}
	for (int i = 0; i < m->nslots; i++) {
		struct uffdio_range r = {.start = (uint64_t)(uintptr_t)m->slot[i].hva,
		                         .len = m->slot[i].size};

		ioctl(c->uffd, UFFDIO_UNREGISTER, &r);
	}
	close(c->uffd);
	if (c->stop[0] >= 0)
		close(c->stop[0]);
	if (c->stop[1] >= 0)
		close(c->stop[1]);
	c->uffd = c->stop[0] = c->stop[1] = -1;
}

/* Register every slot for write-protect faults and protect the runs of @want. */
static int trap_start(struct guest_mem *m, struct cbw *c, const uint64_t *want,
                      struct hv_error *err)
{
	int e;

	c->uffd = uffd_open(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, err);
	if (c->uffd < 0)
		return -1;
	for (int i = 0; i < m->nslots; i++) {
		struct uffdio_register r = {
		    .range = {.start = (uint64_t)(uintptr_t)m->slot[i].hva, .len = m->slot[i].size},
		    .mode = UFFDIO_REGISTER_MODE_WP};

		if (ioctl(c->uffd, UFFDIO_REGISTER, &r) < 0) {
			e = errno;
			goto fail;
		}
	}
	for (uint64_t p = 0; p < m->npages;) {
		uint64_t q;

		if (!(want[p / 64] & (1ull << (p % 64)))) {
			p = !(p % 64) && !want[p / 64] ? p + 64 : p + 1;
			continue;
		}
		for (q = p + 1; q < m->npages;) {
			if (!(q % 64) && want[q / 64] == ~0ull)
				q += 64;
			else if (want[q / 64] & (1ull << (q % 64)))
				q++;
			else
				break;
		}
		if (q > m->npages)
			q = m->npages;
		if (trap_protect(m, c->uffd, p, q - p, true) < 0) {
			e = errno;
			goto fail;
		}
		p = q;
	}
	if (pipe2(c->stop, O_CLOEXEC) < 0) {
		e = errno;
		goto fail;
	}
	e = pthread_create(&c->thread, NULL, trap_main, m);
	if (e) {
		close(c->stop[0]);
		close(c->stop[1]);
		c->stop[0] = c->stop[1] = -1;
		goto fail;
	}
	return 0;
fail:
	trap_stop(m, c);
	return hv_fail(err, e == EINVAL ? ENOTSUP : e,
	               "copy-before-write: userfaultfd write-protect: %s", strerror(e));
}

int cbw_arm(struct guest_mem *m, uint64_t *want, bool trap, struct hv_error *err)
{
	struct cbw *c = m->cbw;
	uint64_t nstretch = (m->npages + CBW_STRETCH - 1) / CBW_STRETCH;

	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c) {
			free(want);
			return hv_fail(err, ENOMEM, "copy-before-write: out of memory");
		}
		pthread_mutex_init(&c->lock, NULL);
		pthread_cond_init(&c->room, NULL);
		c->uffd = c->stop[0] = c->stop[1] = -1;
		m->cbw = c;
	}
	pthread_mutex_lock(&c->lock);
	if (c->want) {
		pthread_mutex_unlock(&c->lock);
		free(want);
		return hv_fail(err, EBUSY, "copy-before-write: already armed");
	}
	c->copies = calloc(nstretch ? nstretch : 1, sizeof(*c->copies));
	if (!c->copies) {
		pthread_mutex_unlock(&c->lock);
		free(want);
		return hv_fail(err, ENOMEM, "copy-before-write: out of memory");
	}
	c->nstretch = nstretch;
	c->want = want;
	c->copy_bytes = 0;
	c->lost = false;
	c->ncopied = 0;
	pthread_mutex_unlock(&c->lock);
	if (trap && trap_start(m, c, want, err) < 0) {
		pthread_mutex_lock(&c->lock);
		drop_all(c);
		pthread_mutex_unlock(&c->lock);
		return -1;
	}
	/* Trapped, every write faults first: the writers' own calls would only cost. */
	if (!trap)
		atomic_store_explicit(&m->cbw_on, true, memory_order_seq_cst);
	return 0;
}

void cbw_before_write_slow(struct guest_mem *m, uint64_t page)
{
	struct cbw *c = m->cbw;
	struct cbw_copy *cp;
	uint8_t *hva;

	if (!c || page >= m->npages)
		return;
	pthread_mutex_lock(&c->lock);
	while (wanted(c, page) && c->copy_bytes >= CBW_COPY_MAX)
		pthread_cond_wait(&c->room, &c->lock);
	if (!wanted(c, page)) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	hva = mem_page_hva(m, page);
	/*
	 * Out of memory: wait for the reader to free copies rather than let the write
	 * through (a wrong checkpoint) or fail it (the guest cannot be told). Copies only
	 * shrink while we wait, and a disarm ends the wait.
	 */
	while (!(cp = malloc(sizeof(*cp))) && wanted(c, page) && c->copy_bytes)
		pthread_cond_wait(&c->room, &c->lock);
	if (!wanted(c, page)) {
		free(cp);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (!cp || !hva) {
		/* No memory and nothing to wait for: give the page up; cbw_claim reports it. */
		free(cp);
		c->want[page / 64] &= ~(1ull << (page % 64));
		c->lost = true;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	memcpy(cp->data, hva, MEM_PAGE_SIZE);
	cp->page = page;
	cp->next = c->copies[page / CBW_STRETCH];
	c->copies[page / CBW_STRETCH] = cp;
	c->want[page / 64] &= ~(1ull << (page % 64));
	c->copy_bytes += MEM_PAGE_SIZE;
	c->ncopied++;
	pthread_mutex_unlock(&c->lock);
}

int cbw_claim(struct guest_mem *m, uint64_t first, unsigned n, uint64_t zero, uint8_t *buf,
              uint64_t *got)
{
	struct cbw *c = m->cbw;
	struct cbw_copy *cp, *next;
	bool freed = false;
	int count = 0;

	*got = 0;
	if (!c || n > CBW_STRETCH || first % CBW_STRETCH || first + n > m->npages)
		return -1;
	pthread_mutex_lock(&c->lock);
	if (!c->want || c->lost) {
		pthread_mutex_unlock(&c->lock);
		return -1;
	}
	for (cp = c->copies[first / CBW_STRETCH]; cp; cp = next) {
		next = cp->next;
		memcpy(buf + (cp->page - first) * MEM_PAGE_SIZE, cp->data, MEM_PAGE_SIZE);
		*got |= 1ull << (cp->page - first);
		c->copy_bytes -= MEM_PAGE_SIZE;
		free(cp);
		freed = true;
		count++;
	}
	c->copies[first / CBW_STRETCH] = NULL;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *hva;

		if (!wanted(c, first + i))
			continue;
		hva = zero & (1ull << i) ? NULL : mem_page_hva(m, first + i);
		if (hva)
			memcpy(buf + (uint64_t)i * MEM_PAGE_SIZE, hva, MEM_PAGE_SIZE);
		else
			memset(buf + (uint64_t)i * MEM_PAGE_SIZE, 0, MEM_PAGE_SIZE);
		c->want[(first + i) / 64] &= ~(1ull << ((first + i) % 64));
		*got |= 1ull << i;
		count++;
	}
	if (freed)
		pthread_cond_broadcast(&c->room);
	pthread_mutex_unlock(&c->lock);
	/* Saved: the guest may write these now (a waiting vCPU is woken). */
	if (c->uffd >= 0 && *got)
		trap_protect(m, c->uffd, first, n, false);
	return count;
}

uint64_t cbw_disarm(struct guest_mem *m)
{
	struct cbw *c = m->cbw;
	uint64_t n;

	if (!c)
		return 0;
	atomic_store_explicit(&m->cbw_on, false, memory_order_seq_cst);
	pthread_mutex_lock(&c->lock);
	n = c->ncopied;
	c->ncopied = 0;
	drop_all(c);
	pthread_cond_broadcast(&c->room);
	pthread_mutex_unlock(&c->lock);
	trap_stop(m, c);
	return n;
}

void cbw_free(struct guest_mem *m)
{
	struct cbw *c = m->cbw;

	if (!c)
		return;
	trap_stop(m, c);
	drop_all(c);
	pthread_cond_destroy(&c->room);
	pthread_mutex_destroy(&c->lock);
	free(c);
	m->cbw = NULL;
	atomic_store(&m->cbw_on, false);
}
