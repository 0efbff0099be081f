/*
 * mem.h - guest RAM: memfd-backed memory slots, gpa->hva translation and the
 * bounds-checked accessors every VMM-side read and write goes through.
 *
 * A VM's RAM is a handful of slots (below the 4 GiB hole and above it). Every byte the
 * VMM writes into guest memory goes through gpa_write() (or is followed by dirty_mark()),
 * so the dirty log (dirty.h) sees device and loader writes as well as vCPU stores.
 */
#ifndef HV_MEM_H
#define HV_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "hv/error.h"

#define MEM_PAGE_SHIFT  12
#define MEM_PAGE_SIZE   4096ULL
#define MEM_MAX_SLOTS   8
#define MEM_CHUNK_SHIFT 21 /* 2 MiB: the unit mem_populate() faults in */

/* Standard layout: RAM from 0 up to MEM_LOW_END, the rest from MEM_HIGH_BASE. */
#define MEM_LOW_END   0xC0000000ULL /* 3 GiB: [3 GiB, 4 GiB) is the MMIO hole */
#define MEM_HIGH_BASE 0x100000000ULL
#define MEM_MIN_SIZE  (2ULL << 20) /* 2 MiB */
#define MEM_MAX_SIZE  (1ULL << 40) /* 1 TiB: anything larger is a typo */

struct mem_slot {
	uint64_t gpa;                /* first guest-physical byte */
	uint64_t size;               /* bytes, a multiple of MEM_PAGE_SIZE */
	uint8_t *hva;                /* host mapping (MAP_SHARED of the memfd) */
	int fd;                      /* memfd; owned by the slot, closed by mem_destroy() */
	uint64_t first_page;         /* this slot's first page in the VM-wide page numbering */
	_Atomic uint64_t *dirty;     /* dirty bitmap, one bit per page; see dirty.h */
	_Atomic uint64_t *populated; /* one bit per MEM_CHUNK: host pages exist (mem_populate) */
};

struct dirty_source;
struct cbw;

struct guest_mem {
	struct mem_slot slot[MEM_MAX_SLOTS]; /* sorted by gpa, non-overlapping */
	int nslots;
	uint64_t npages;   /* pages over all slots (VM-wide page numbering) */
	uint64_t ram_size; /* bytes over all slots */

	/* Dirty log state (dirty.c). */
	_Atomic bool dirty_on;                /* logging enabled */
	_Atomic uint64_t dirty_epoch;         /* bumped by dirty_start() and every harvest */
	const struct dirty_source *dirty_src; /* backend hooks, may be NULL */
	void *dirty_src_opaque;
	pthread_mutex_t dirty_lock; /* serialises start/stop/harvest (not writers) */
	uint64_t dirty_last_ns;     /* time of the previous harvest */
	double dirty_rate_bps;      /* smoothed bytes/s */

	/* A lazy restore is still loading pages (checkpoint/lazy.c): a hole of the memfd may
	 * be a page not loaded yet rather than a zero page, so whatever copies RAM out
	 * (save, checkpoint, migration) must refuse until it is clear. */
	_Atomic bool filling;

	/* Copy-before-write (cbw.c): on while a point-in-time copy of RAM is being read. */
	_Atomic bool cbw_on;
	struct cbw *cbw;
};

/*
 * mem_init - lay out @ram_size bytes of zeroed RAM in the standard layout (low slot up to
 * 3 GiB, the rest above 4 GiB). @ram_size must be a multiple of 4 KiB between
 * MEM_MIN_SIZE and MEM_MAX_SIZE. On failure nothing is left allocated.
 */
int mem_init(struct guest_mem *m, uint64_t ram_size, struct hv_error *err);

/*
 * mem_init_empty / mem_add_slot - build a custom layout (tests, restore). Slots must be
 * page-aligned and must not overlap; they are kept sorted by gpa.
 */
void mem_init_empty(struct guest_mem *m);
int mem_add_slot(struct guest_mem *m, uint64_t gpa, uint64_t size, struct hv_error *err);

/* mem_destroy - unmap and close every slot. Safe on a zeroed or half-built struct. */
void mem_destroy(struct guest_mem *m);

/* mem_slot_find - the slot holding @gpa, or NULL. */
struct mem_slot *mem_slot_find(struct guest_mem *m, uint64_t gpa);

/*
 * mem_page_slot - the slot holding page @page of the VM-wide numbering (first_page), or
 * NULL; mem_page_hva - where that page is mapped, or NULL.
 */
struct mem_slot *mem_page_slot(struct guest_mem *m, uint64_t page);
uint8_t *mem_page_hva(struct guest_mem *m, uint64_t page);

/*
 * mem_hva - host address of [@gpa, @gpa+@len) if the whole range lies inside one slot,
 * else NULL. The caller must mark the dirty log itself if it writes through the pointer.
 */
void *mem_hva(struct guest_mem *m, uint64_t gpa, uint64_t len);

/*
 * gpa_read / gpa_write - copy between guest RAM and a host buffer. The range may span
 * adjacent slots but every byte must be RAM: otherwise nothing is copied and -1 is
 * returned (with @err naming the address if non-NULL). gpa_write marks every touched page
 * in the dirty log.
 */
int gpa_read(struct guest_mem *m, uint64_t gpa, void *buf, size_t len, struct hv_error *err);
int gpa_write(struct guest_mem *m, uint64_t gpa, const void *buf, size_t len, struct hv_error *err);

/*
 * mem_populate - make the host pages of the 2 MiB chunk holding @off (an offset into @s)
 * exist, in one system call, the first time any page of the chunk is touched. A software
 * CPU that first-touches guest RAM page by page pays a host page fault per 4 KiB; on a
 * host without shared-memory huge pages (shmem_enabled=never, the common default) that is
 * most of the time of a guest sweeping fresh memory. Populating by chunk costs what a
 * transparent huge page would (RAM is committed 2 MiB at a time) and keeps the memfd.
 * Cheap when already done (one bit test); best effort, never fails.
 */
void mem_populate_slow(struct mem_slot *s, uint64_t chunk);

static inline void mem_populate(struct mem_slot *s, uint64_t off)
{
	uint64_t chunk = off >> MEM_CHUNK_SHIFT;

	if (!(atomic_load_explicit(&s->populated[chunk / 64], memory_order_relaxed) &
	      (1ULL << (chunk % 64))))
		mem_populate_slow(s, chunk);
}

/* gpa_is_ram - true when all of [@gpa, @gpa+@len) is RAM. */
bool gpa_is_ram(struct guest_mem *m, uint64_t gpa, uint64_t len);

#endif
