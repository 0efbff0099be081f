/*
 * mmu.h - the emu's memory-access fast paths.
 *
 * Every guest load and store goes through the soft TLB. A hit on a page that is not MMIO
 * and does not cross a page boundary is one compare and one host access. Stores also
 * require the entry's write epoch to match the CPU's dirty epoch: QEMU's not-dirty-TLB
 * idea, so only the first store to a page in each dirty-log epoch takes the slow path
 * (which marks the page) and later stores cost nothing extra.
 */
#ifndef HV_EMU_MMU_H
#define HV_EMU_MMU_H

#include <string.h>

#include "hv/accel/emu/cpu.h"

#define EMU_PAGE_MASK 0xfffULL

static inline struct emu_tlb_entry *emu_tlb_slot(struct emu_cpu *c, uint64_t lin)
{
	return &c->tlb[(lin >> 12) & (EMU_TLB_SIZE - 1)];
}

/* emu_tlb_tag - the tag an entry for @lin carries in the current generation. */
static inline uint64_t emu_tlb_tag(struct emu_cpu *c, uint64_t lin)
{
	return (lin & ~EMU_PAGE_MASK) | c->tlb_gen;
}

/* emu_lin - linear address of @seg:@off; 64-bit mode only adds FS/GS bases. */
static inline uint64_t emu_lin(struct emu_cpu *c, int seg, uint64_t off, unsigned size, bool write)
{
	if (__builtin_expect(c->mode == EMU_MODE_LONG64, 1)) {
		if (seg >= X86_FS)
			return off + c->seg[seg].base;
		/* A non-canonical stack reference is #SS, not the #GP the walk would raise. */
		if (seg == X86_SS && (uint64_t)((int64_t)(off << 16) >> 16) != off)
			emu_raise(c, X86_SS_VEC, 0, true);
		return off;
	}
	return emu_lin_slow(c, seg, off, size, write);
}

static inline uint64_t emu_read_lin(struct emu_cpu *c, uint64_t lin, unsigned size)
{
	struct emu_tlb_entry *e = emu_tlb_slot(c, lin);

	if (__builtin_expect(e->tag == emu_tlb_tag(c, lin) && (lin & EMU_PAGE_MASK) + size <= 4096,
	                     1)) {
		const void *p = (const void *)(uintptr_t)(lin + e->addend);
		switch (size) {
		case 1: return *(const uint8_t *)p;
		case 2: {
			uint16_t v;
			memcpy(&v, p, 2);
			return v;
		}
		case 4: {
			uint32_t v;
			memcpy(&v, p, 4);
			return v;
		}
		case 8: {
			uint64_t v;
			memcpy(&v, p, 8);
			return v;
		}
		}
	}
	return emu_read_slow(c, lin, size);
}

static inline void emu_write_lin(struct emu_cpu *c, uint64_t lin, unsigned size, uint64_t val)
{
	struct emu_tlb_entry *e = emu_tlb_slot(c, lin);

	if (__builtin_expect(e->tag == emu_tlb_tag(c, lin) && e->wepoch == c->dirty_epoch &&
	                         (lin & EMU_PAGE_MASK) + size <= 4096,
	                     1)) {
		void *p = (void *)(uintptr_t)(lin + e->addend);
		switch (size) {
		case 1: *(uint8_t *)p = (uint8_t)val; return;
		case 2: {
			uint16_t v = (uint16_t)val;
			memcpy(p, &v, 2);
			return;
		}
		case 4: {
			uint32_t v = (uint32_t)val;
			memcpy(p, &v, 4);
			return;
		}
		case 8: memcpy(p, &val, 8); return;
		}
	}
	emu_write_slow(c, lin, size, val);
}

/*
 * emu_rmw_read - read the destination of a read-modify-write instruction. Hardware checks
 * it for writing before reading (a #PF says W), so the page must be writable: the fast
 * path needs a write-valid entry, the slow path translates for write.
 */
uint64_t emu_rmw_read_slow(struct emu_cpu *c, uint64_t lin, unsigned size);

static inline uint64_t emu_rmw_read(struct emu_cpu *c, uint64_t lin, unsigned size)
{
	struct emu_tlb_entry *e = emu_tlb_slot(c, lin);

	if (__builtin_expect(e->tag == emu_tlb_tag(c, lin) && e->wepoch == c->dirty_epoch &&
	                             (lin & EMU_PAGE_MASK) + size <= 4096,
	                     1)) {
		const void *p = (const void *)(uintptr_t)(lin + e->addend);
		switch (size) {
		case 1: return *(const uint8_t *)p;
		case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
		case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
		case 8: { uint64_t v; memcpy(&v, p, 8); return v; }
		}
	}
	return emu_rmw_read_slow(c, lin, size);
}

/* emu_read / emu_write - access @size (1, 2, 4, 8) bytes at @seg:@off. */
static inline uint64_t emu_read(struct emu_cpu *c, int seg, uint64_t off, unsigned size)
{
	return emu_read_lin(c, emu_lin(c, seg, off, size, false), size);
}

static inline void emu_write(struct emu_cpu *c, int seg, uint64_t off, unsigned size, uint64_t val)
{
	emu_write_lin(c, emu_lin(c, seg, off, size, true), size, val);
}

#endif
