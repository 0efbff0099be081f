/*
 * mem.c - guest RAM: memfd-backed slots and the bounds-checked accessors.
 *
 * Each slot is a memfd mapped MAP_SHARED | MAP_NORESERVE, so a large guest costs no host
 * memory until it touches pages, and the same fd can later be handed to KVM, shared with a
 * checkpoint writer or sealed. Every VMM-side write goes through gpa_write(), which marks
 * the dirty log, so device and loader writes reach a migration like vCPU stores do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv/dirty.h"
#include "hv/mem.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

void mem_init_empty(struct guest_mem *m)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < MEM_MAX_SLOTS; i++)
		m->slot[i].fd = -1;
	pthread_mutex_init(&m->dirty_lock, NULL);
}

/* Renumber pages VM-wide after an insertion: slot order is gpa order. */
static void mem_renumber(struct guest_mem *m)
{
	uint64_t page = 0;

	for (int i = 0; i < m->nslots; i++) {
		m->slot[i].first_page = page;
		page += m->slot[i].size >> MEM_PAGE_SHIFT;
	}
	m->npages = page;
	m->ram_size = page << MEM_PAGE_SHIFT;
}

int mem_add_slot(struct guest_mem *m, uint64_t gpa, uint64_t size, struct hv_error *err)
{
	struct mem_slot s = {.gpa = gpa, .size = size, .fd = -1};
	uint64_t words;
	int i;

	if ((gpa | size) & (MEM_PAGE_SIZE - 1))
		return hv_fail(err, EINVAL, "memory slot 0x%llx+0x%llx: not 4 KiB aligned",
		               (unsigned long long)gpa, (unsigned long long)size);
	if (size == 0 || gpa + size < gpa)
		return hv_fail(err, EINVAL, "memory slot 0x%llx+0x%llx: empty or wraps around",
		               (unsigned long long)gpa, (unsigned long long)size);
	if (m->nslots == MEM_MAX_SLOTS)
		return hv_fail(err, ENOSPC, "memory slot 0x%llx: all %d slots in use",
		               (unsigned long long)gpa, MEM_MAX_SLOTS);
	for (i = 0; i < m->nslots; i++) {
		const struct mem_slot *o = &m->slot[i];
		if (gpa < o->gpa + o->size && o->gpa < gpa + size)
			return hv_fail(err, EEXIST,
			               "memory slot 0x%llx+0x%llx overlaps slot 0x%llx+0x%llx",
			               (unsigned long long)gpa, (unsigned long long)size,
			               (unsigned long long)o->gpa, (unsigned long long)o->size);
	}

	s.fd = memfd_create("hv-ram", MFD_CLOEXEC);
	if (s.fd < 0)
		return hv_fail(err, errno, "memfd_create: %s", strerror(errno));
	if (ftruncate(s.fd, (off_t)size) < 0) {
		int e = errno;
		close(s.fd);
		return hv_fail(err, e, "guest RAM: ftruncate to %llu bytes: %s",
		               (unsigned long long)size, strerror(e));
	}
	s.hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, s.fd, 0);
	if (s.hva == MAP_FAILED) {
		int e = errno;
		close(s.fd);
		return hv_fail(err, e, "guest RAM: mmap of %llu bytes: %s",
		               (unsigned long long)size, strerror(e));
	}
	/*
	 * Host huge pages cut the host TLB misses of a guest that sweeps its RAM by half
	 * (memtouch). Shared memory gets them only where the host allows it
	 * (transparent_hugepage/shmem_enabled = advise or always), so failure is fine.
	 */
	madvise(s.hva, size, MADV_HUGEPAGE);
	words = ((size >> MEM_PAGE_SHIFT) + 63) / 64;
	s.dirty = calloc(words, sizeof(*s.dirty));
	s.populated = calloc(((size >> MEM_CHUNK_SHIFT) + 1 + 63) / 64, sizeof(*s.populated));
	if (!s.dirty || !s.populated) {
		free((void *)s.dirty);
		free((void *)s.populated);
		munmap(s.hva, size);
		close(s.fd);
		return hv_fail(err, ENOMEM, "dirty bitmap for %llu pages: out of memory",
		               (unsigned long long)(size >> MEM_PAGE_SHIFT));
	}

	for (i = m->nslots; i > 0 && m->slot[i - 1].gpa > gpa; i--)
		m->slot[i] = m->slot[i - 1];
	m->slot[i] = s;
	m->nslots++;
	mem_renumber(m);
	return 0;
}

int mem_init(struct guest_mem *m, uint64_t ram_size, struct hv_error *err)
{
	uint64_t low = ram_size < MEM_LOW_END ? ram_size : MEM_LOW_END;

	mem_init_empty(m);
	if (ram_size & (MEM_PAGE_SIZE - 1))
		return hv_fail(err, EINVAL, "RAM size %llu: not a multiple of 4 KiB",
		               (unsigned long long)ram_size);
	if (ram_size < MEM_MIN_SIZE || ram_size > MEM_MAX_SIZE)
		return hv_fail(err, EINVAL, "RAM size %llu: must be between %llu MiB and %llu GiB",
		               (unsigned long long)ram_size, MEM_MIN_SIZE >> 20,
		               MEM_MAX_SIZE >> 30);
	if (mem_add_slot(m, 0, low, err) < 0)
		goto fail;
	if (ram_size > low && mem_add_slot(m, MEM_HIGH_BASE, ram_size - low, err) < 0)
		goto fail;
	return 0;
fail:
	mem_destroy(m);
	return -1;
}

void mem_destroy(struct guest_mem *m)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		if (s->hva)
			munmap(s->hva, s->size);
		if (s->fd >= 0)
			close(s->fd);
		free((void *)s->dirty);
		free((void *)s->populated);
	}
	cbw_free(m);
	pthread_mutex_destroy(&m->dirty_lock);
	mem_init_empty(m);
}

void mem_populate_slow(struct mem_slot *s, uint64_t chunk)
{
	uint64_t off = chunk << MEM_CHUNK_SHIFT;
	uint64_t len =
	    s->size - off < (1ULL << MEM_CHUNK_SHIFT) ? s->size - off : 1ULL << MEM_CHUNK_SHIFT;

	/* Racing vCPUs may both populate: harmless, the kernel skips present pages. */
	madvise(s->hva + off, len, MADV_POPULATE_WRITE);
	atomic_fetch_or_explicit(&s->populated[chunk / 64], 1ULL << (chunk % 64),
	                         memory_order_relaxed);
}

struct mem_slot *mem_slot_find(struct guest_mem *m, uint64_t gpa)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		if (gpa >= s->gpa && gpa - s->gpa < s->size)
			return s;
	}
	return NULL;
}

struct mem_slot *mem_page_slot(struct guest_mem *m, uint64_t page)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		if (page >= s->first_page && page - s->first_page < s->size >> MEM_PAGE_SHIFT)
			return s;
	}
	return NULL;
}

uint8_t *mem_page_hva(struct guest_mem *m, uint64_t page)
{
	struct mem_slot *s = mem_page_slot(m, page);

	return s ? s->hva + ((page - s->first_page) << MEM_PAGE_SHIFT) : NULL;
}

void *mem_hva(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	struct mem_slot *s = mem_slot_find(m, gpa);

	if (!s || len > s->size - (gpa - s->gpa))
		return NULL;
	return s->hva + (gpa - s->gpa);
}

bool gpa_is_ram(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (gpa + len < gpa)
		return false;
	while (len) {
		struct mem_slot *s = mem_slot_find(m, gpa);
		uint64_t chunk;

		if (!s)
			return false;
		chunk = s->size - (gpa - s->gpa);
		if (chunk > len)
			chunk = len;
		gpa += chunk;
		len -= chunk;
	}
	return true;
}

/* Checked once up front, so a failing access copies nothing. */
static int gpa_check(struct guest_mem *m, uint64_t gpa, size_t len, const char *what,
                     struct hv_error *err)
{
	if (!gpa_is_ram(m, gpa, len))
		return hv_fail(err, EFAULT, "guest %s of %zu bytes at 0x%llx: not RAM", what, len,
		               (unsigned long long)gpa);
	return 0;
}

int gpa_read(struct guest_mem *m, uint64_t gpa, void *buf, size_t len, struct hv_error *err)
{
	uint8_t *p = buf;

	if (gpa_check(m, gpa, len, "read", err) < 0)
		return -1;
	while (len) {
		struct mem_slot *s = mem_slot_find(m, gpa);
		uint64_t off = gpa - s->gpa;
		size_t chunk = s->size - off < len ? (size_t)(s->size - off) : len;

		memcpy(p, s->hva + off, chunk);
		p += chunk;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

int gpa_write(struct guest_mem *m, uint64_t gpa, const void *buf, size_t len, struct hv_error *err)
{
	const uint8_t *p = buf;

	if (gpa_check(m, gpa, len, "write", err) < 0)
		return -1;
	while (len) {
		struct mem_slot *s = mem_slot_find(m, gpa);
		uint64_t off = gpa - s->gpa;
		size_t chunk = s->size - off < len ? (size_t)(s->size - off) : len;

		/* Before the copy: a checkpoint reading RAM must get the old content. */
		for (uint64_t pg = off >> MEM_PAGE_SHIFT; pg <= (off + chunk - 1) >> MEM_PAGE_SHIFT;
		     pg++)
			cbw_before_write(m, s->first_page + pg);
		memcpy(s->hva + off, p, chunk);
		/* Mark after the copy: a harvest in between sees the page on the next round. */
		for (uint64_t pg = off >> MEM_PAGE_SHIFT; pg <= (off + chunk - 1) >> MEM_PAGE_SHIFT;
		     pg++)
			dirty_mark_page(m, s, pg);
		p += chunk;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}
