/*
 * mmu.c - segmentation limits, the page walk, the soft TLB and the slow memory paths.
 *
 * A translation fills one 4 KiB TLB entry whatever the page size. Entries are readable
 * by construction (the inline read path in mmu.h checks nothing else); a write takes the
 * inline path only when the entry's write epoch equals the CPU's dirty epoch, and only
 * this file stores the current epoch in an entry, right after marking the page in the
 * dirty log and with the PTE dirty bit set. Reads fill entries that can never match
 * (EMU_TLB_INVALID), so the first store to a page in every dirty-log epoch comes here.
 * Guest-physical addresses that are not RAM never get an entry: every access goes to
 * io_mmio(). Page-table entries are read and updated (accessed/dirty bits) with atomics
 * on the host mapping, and an update marks the page-table page dirty too.
 */
#include "hv/accel/emu/mmu.h"
#include "hv/accel/emu/system.h"
#include "hv/dirty.h"

enum { ACC_R, ACC_W, ACC_X };

#define PTE_P     (1ULL << 0)
#define PTE_W     (1ULL << 1)
#define PTE_U     (1ULL << 2)
#define PTE_A     (1ULL << 5)
#define PTE_D     (1ULL << 6)
#define PTE_PS    (1ULL << 7)
#define PTE_NX    (1ULL << 63)
#define PHYS_BITS 48
#define ADDR_MASK (((1ULL << PHYS_BITS) - 1) & ~0xfffULL)
#define RSVD_HIGH (((1ULL << 52) - 1) & ~((1ULL << PHYS_BITS) - 1)) /* bits 51:48 */

/* Result of a translation. */
struct xlate {
	uint64_t gpa;
	uint32_t tlb_flags; /* EMU_TLB_* as an entry for this page would carry */
};

bool emu_canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

static bool long_addr(struct emu_cpu *c)
{
	return c->mode == EMU_MODE_LONG64;
}

/* ---- segmentation (legacy and compatibility modes) ---- */

uint64_t emu_lin_slow(struct emu_cpu *c, int seg, uint64_t off, unsigned size, bool write)
{
	const struct x86_seg *s = &c->seg[seg];
	unsigned vec = seg == X86_SS ? X86_SS_VEC : X86_GP;
	uint64_t last = off + size - 1;

	if (c->mode == EMU_MODE_LONG64)
		return seg >= X86_FS ? off + s->base : off;
	if (c->mode == EMU_MODE_REAL)
		return (s->base + (off & 0xffff)) & 0xfffff;
	if (s->unusable || !s->present)
		emu_raise(c, vec, 0, true);
	if (s->s) {
		bool code = s->type & 8;
		if (write && (code || !(s->type & 2)))
			emu_raise(c, vec, 0, true);
		if (!write && code && !(s->type & 2))
			emu_raise(c, vec, 0, true);
		if (!code && (s->type & 4)) { /* expand-down */
			uint64_t top = s->db ? 0xffffffffULL : 0xffffULL;
			if (off <= s->limit || last > top)
				emu_raise(c, vec, 0, true);
		} else if (last > s->limit) {
			emu_raise(c, vec, 0, true);
		}
	}
	return (s->base + off) & 0xffffffffULL;
}

/* ---- page walk ---- */

static uint64_t pte_load(struct emu_cpu *c, uint64_t gpa, unsigned esize, void **hp)
{
	void *p = mem_hva(c->mem, gpa, esize);

	*hp = p;
	if (!p)
		return 0; /* page tables outside RAM read as not present */
	if (esize == 8)
		return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
	return __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
}

/* Set @bits in the entry at @p (guest-physical @gpa) unless already set; log the write. */
static void pte_set(struct emu_cpu *c, void *p, uint64_t gpa, unsigned esize, uint64_t pte,
                    uint64_t bits)
{
	struct mem_slot *s;

	if (!p || (pte & bits) == bits)
		return;
	s = mem_slot_find(c->mem, gpa);
	/* A checkpoint being read must see the table as it was (cbw.h): copy it first. */
	if (s)
		cbw_before_write(c->mem, s->first_page + ((gpa - s->gpa) >> MEM_PAGE_SHIFT));
	if (esize == 8)
		__atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_or((uint32_t *)p, (uint32_t)bits, __ATOMIC_SEQ_CST);
	if (s)
		dirty_mark_page(c->mem, s, (gpa - s->gpa) >> MEM_PAGE_SHIFT);
}

/*
 * walk - translate @lin for an access of kind @acc as @user (CPL 3) would make it.
 * Returns 0 and fills *@x, or -1 with the #PF error code in *@pferr (nothing changed in
 * guest memory then). Sets accessed bits, and the dirty bit for writes.
 */
static int walk(struct emu_cpu *c, uint64_t lin, int acc, bool user, struct xlate *x,
                uint32_t *pferr)
{
	bool nxe = c->efer & X86_EFER_NXE, wp = c->cr0 & X86_CR0_WP;
	bool rw = true, us = true, nx = false;
	uint64_t table, pte = 0, gpa_e[4] = {0}, ent[4] = {0}, rsvd, page_mask = 0xfff;
	void *hp[4] = {0};
	int levels, shift, l, n = 0;
	unsigned esize;
	uint32_t err = (acc == ACC_W ? X86_PF_W : 0) | (user ? X86_PF_U : 0);

	if (acc == ACC_X && nxe && (c->cr4 & X86_CR4_PAE))
		err |= X86_PF_I;
	if (!(c->cr0 & X86_CR0_PG)) {
		x->gpa = lin;
		x->tlb_flags = EMU_TLB_R | EMU_TLB_W | EMU_TLB_X;
		return 0;
	}
	if (c->efer & X86_EFER_LMA) {
		levels = 4, shift = 39, esize = 8;
		table = c->cr3 & ADDR_MASK;
	} else if (c->cr4 & X86_CR4_PAE) {
		uint64_t a = (c->cr3 & 0xffffffe0ULL) + ((lin >> 30) & 3) * 8;
		uint64_t pdpte = pte_load(c, a, 8, &hp[0]);
		if (!(pdpte & PTE_P))
			goto fault;
		if (pdpte & (RSVD_HIGH | PTE_NX | 0x1e6ULL)) {
			err |= X86_PF_RSVD | X86_PF_P;
			goto fault;
		}
		hp[0] = NULL; /* PDPTEs have no accessed bit to set */
		levels = 2, shift = 21, esize = 8;
		table = pdpte & ADDR_MASK;
	} else {
		levels = 2, shift = 22, esize = 4;
		table = c->cr3 & 0xfffff000ULL;
	}

	for (l = 0; l < levels; l++, shift -= (esize == 8 ? 9 : 10)) {
		uint64_t idx = (lin >> shift) & (esize == 8 ? 511 : 1023);
		bool last = l == levels - 1;

		gpa_e[l] = table + idx * esize;
		pte = pte_load(c, gpa_e[l], esize, &hp[l]);
		ent[l] = pte;
		n = l + 1;
		if (!(pte & PTE_P))
			goto fault;
		rsvd = 0;
		if (esize == 8) {
			rsvd = RSVD_HIGH | (nxe ? 0 : PTE_NX);
			if (levels == 4 && l == 0)
				rsvd |= PTE_PS;
			if ((pte & PTE_PS) && !last)
				rsvd |= (shift == 30 ? 0x3fffe000ULL : 0x1fe000ULL);
		} else if ((pte & PTE_PS) && !last && (c->cr4 & X86_CR4_PSE)) {
			rsvd = 0x3fe000ULL;
		}
		if (pte & rsvd) {
			err |= X86_PF_RSVD | X86_PF_P;
			goto fault;
		}
		rw = rw && (pte & PTE_W);
		us = us && (pte & PTE_U);
		if (esize == 8 && nxe && (pte & PTE_NX))
			nx = true;
		if (last)
			break;
		/* PS in a PML4E was rejected as reserved above. */
		if ((pte & PTE_PS) && (esize == 8 || (c->cr4 & X86_CR4_PSE))) {
			page_mask = (1ULL << shift) - 1;
			break;
		}
		table = pte & (esize == 8 ? ADDR_MASK : 0xfffff000ULL);
	}

	err |= X86_PF_P;
	if (user && !us)
		goto fault;
	if (acc == ACC_W && !rw && (user || wp))
		goto fault;
	if (acc == ACC_X && nx)
		goto fault;

	for (l = 0; l < n; l++)
		pte_set(c, hp[l], gpa_e[l], esize, ent[l], PTE_A);
	if (acc == ACC_W) {
		pte_set(c, hp[n - 1], gpa_e[n - 1], esize, ent[n - 1], PTE_D);
		ent[n - 1] |= PTE_D;
	}

	if (esize == 8)
		x->gpa = (pte & ADDR_MASK & ~page_mask) | (lin & page_mask);
	else if (page_mask != 0xfff)
		x->gpa = (pte & 0xffc00000ULL) | (lin & page_mask);
	else
		x->gpa = (pte & 0xfffff000ULL) | (lin & 0xfff);
	x->tlb_flags = EMU_TLB_R;
	if ((rw || (!user && !wp)) && (ent[n - 1] & PTE_D))
		x->tlb_flags |= EMU_TLB_W;
	if (!nx)
		x->tlb_flags |= EMU_TLB_X;
	return 0;

fault:
	*pferr = err;
	return -1;
}

/* ---- TLB ---- */

void emu_tlb_flush(struct emu_cpu *c)
{
	if (c->tlb_gen >= 1 && c->tlb_gen < EMU_TLB_GEN_MAX) {
		c->tlb_gen++;
		return;
	}
	/* Generations exhausted (or first use): really empty it, once per 4095 flushes. */
	memset(c->tlb, 0, sizeof(c->tlb));
	c->tlb_gen = 1;
}

void emu_invlpg(struct emu_cpu *c, uint64_t lin)
{
	struct emu_tlb_entry *e = emu_tlb_slot(c, lin);

	if (e->tag == emu_tlb_tag(c, lin)) {
		e->tag = 0;
		e->wepoch = EMU_TLB_INVALID;
	}
}

static void mark_gpa(struct emu_cpu *c, uint64_t gpa)
{
	struct mem_slot *s = mem_slot_find(c->mem, gpa);

	if (s)
		dirty_mark_page(c->mem, s, (gpa - s->gpa) >> MEM_PAGE_SHIFT);
}

/*
 * translate - host pointer for @lin (NULL for MMIO, with *@gpa set), for @acc. Uses and
 * fills the TLB; a write marks the dirty log and arms the entry for the fast path.
 */
static uint8_t *translate(struct emu_cpu *c, uint64_t lin, int acc, uint64_t *gpa)
{
	struct emu_tlb_entry *e;
	uint64_t tag, page;
	struct xlate x;
	struct mem_slot *s;
	uint32_t pferr;
	uint8_t *hva;

	if (!(c->efer & X86_EFER_LMA))
		lin &= 0xffffffffULL;
	else if (!emu_canonical(lin))
		emu_raise_gp(c, 0);
	e = emu_tlb_slot(c, lin);
	tag = emu_tlb_tag(c, lin);
	page = lin & ~EMU_PAGE_MASK;
	if (e->tag == tag) {
		uint32_t need = acc == ACC_W ? EMU_TLB_W : acc == ACC_X ? EMU_TLB_X : EMU_TLB_R;
		if (e->flags & need) {
			*gpa = e->gpa_page | (lin & EMU_PAGE_MASK);
			if (acc == ACC_W && e->wepoch != c->dirty_epoch) {
				mark_gpa(c, e->gpa_page);
				e->wepoch = c->dirty_epoch;
			}
			return (uint8_t *)(uintptr_t)(lin + e->addend);
		}
	}
	if (walk(c, lin, acc, c->cpl == 3, &x, &pferr) < 0) {
		c->cr2 = lin;
		emu_raise(c, X86_PF_VEC, pferr, true);
	}
	*gpa = x.gpa;
	s = mem_slot_find(c->mem, x.gpa);
	if (!s)
		return NULL; /* MMIO: never cached */
	hva = s->hva + (x.gpa - s->gpa);
	mem_populate(s, x.gpa - s->gpa);
	if (acc == ACC_W)
		dirty_mark_page(c->mem, s, (x.gpa - s->gpa) >> MEM_PAGE_SHIFT);
	e->tag = tag;
	e->addend = (uintptr_t)(hva - (lin & EMU_PAGE_MASK)) - (uintptr_t)page;
	e->gpa_page = x.gpa & ~EMU_PAGE_MASK;
	e->flags = x.tlb_flags;
	e->wepoch = acc == ACC_W ? c->dirty_epoch : EMU_TLB_INVALID;
	return hva;
}

/* ---- slow paths ---- */

static uint64_t next_lin(struct emu_cpu *c, uint64_t lin, unsigned n)
{
	uint64_t a = lin + n;

	return (c->efer & X86_EFER_LMA) && long_addr(c) ? a : (a & 0xffffffffULL);
}

static uint64_t mmio_read(struct emu_cpu *c, uint64_t gpa, unsigned size)
{
	uint64_t v = 0;

	io_mmio(c->io, gpa, size, false, &v);
	return size == 8 ? v : v & ((1ULL << (size * 8)) - 1);
}

static void piece_read(struct emu_cpu *c, uint8_t *h, uint64_t gpa, uint8_t *out, unsigned n)
{
	if (h) {
		memcpy(out, h, n);
		return;
	}
	if (n == 1 || n == 2 || n == 4 || n == 8) {
		uint64_t v = mmio_read(c, gpa, n);
		memcpy(out, &v, n);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		out[i] = (uint8_t)mmio_read(c, gpa + i, 1);
}

static void piece_write(struct emu_cpu *c, uint8_t *h, uint64_t gpa, const uint8_t *in, unsigned n)
{
	uint64_t v = 0;

	if (h) {
		memcpy(h, in, n);
		return;
	}
	if (n == 1 || n == 2 || n == 4 || n == 8) {
		memcpy(&v, in, n);
		io_mmio(c->io, gpa, n, true, &v);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		v = in[i];
		io_mmio(c->io, gpa + i, 1, true, &v);
	}
}

/* read_slow - a read whose pages are translated for @acc (ACC_W for read-modify-write). */
static uint64_t read_slow(struct emu_cpu *c, uint64_t lin, unsigned size, int acc)
{
	unsigned n1 = 4096 - (unsigned)(lin & EMU_PAGE_MASK);
	uint64_t g1, g2, v = 0;
	uint8_t *h1, *h2, buf[8] = {0};

	if (size > 8)
		size = 8;
	h1 = translate(c, lin, acc, &g1);
	if (n1 >= size) {
		piece_read(c, h1, g1, buf, size);
	} else {
		h2 = translate(c, next_lin(c, lin, n1), acc, &g2);
		piece_read(c, h1, g1, buf, n1);
		piece_read(c, h2, g2, buf + n1, size - n1);
	}
	memcpy(&v, buf, 8);
	return v;
}

uint64_t emu_read_slow(struct emu_cpu *c, uint64_t lin, unsigned size)
{
	return read_slow(c, lin, size, ACC_R);
}

uint64_t emu_rmw_read_slow(struct emu_cpu *c, uint64_t lin, unsigned size)
{
	return read_slow(c, lin, size, ACC_W);
}

void emu_write_slow(struct emu_cpu *c, uint64_t lin, unsigned size, uint64_t val)
{
	unsigned n1 = 4096 - (unsigned)(lin & EMU_PAGE_MASK);
	uint64_t g1, g2;
	uint8_t *h1, *h2, buf[8];

	if (size > 8)
		size = 8;
	memcpy(buf, &val, 8);
	h1 = translate(c, lin, ACC_W, &g1);
	if (n1 >= size) {
		piece_write(c, h1, g1, buf, size);
		return;
	}
	/* Both pages are translated before any byte is written. */
	h2 = translate(c, next_lin(c, lin, n1), ACC_W, &g2);
	piece_write(c, h1, g1, buf, n1);
	piece_write(c, h2, g2, buf + n1, size - n1);
}

void *emu_rmw_ptr(struct emu_cpu *c, uint64_t lin, unsigned size)
{
	uint64_t gpa;

	if ((lin & EMU_PAGE_MASK) + size > 4096)
		return NULL;
	return translate(c, lin, ACC_W, &gpa);
}

/* Code in non-RAM reads as all ones (an unclaimed bus), which decodes as #UD. */
static const uint8_t mmio_code[4096 + 32] = {[0 ... 4096 + 31] = 0xff};

const uint8_t *emu_code_ptr(struct emu_cpu *c, uint64_t lin, unsigned *avail)
{
	struct emu_tlb_entry *e = emu_tlb_slot(c, lin);
	uint64_t gpa;
	uint8_t *h;

	*avail = 4096 - (unsigned)(lin & EMU_PAGE_MASK);
	if (e->tag == emu_tlb_tag(c, lin) && (e->flags & EMU_TLB_X))
		return (const uint8_t *)(uintptr_t)(lin + e->addend);
	h = translate(c, lin, ACC_X, &gpa);
	if (!h)
		return mmio_code + (lin & EMU_PAGE_MASK);
	return h;
}

/* ---- implicit supervisor accesses ---- */

static uint8_t *translate_sys(struct emu_cpu *c, uint64_t lin, int acc, uint64_t *gpa)
{
	struct xlate x;
	uint32_t pferr;
	struct mem_slot *s;

	if (c->cpl != 3)
		return translate(c, lin, acc, gpa);
	/* At CPL 3 the TLB holds user permissions: walk as the supervisor, don't cache. */
	if ((c->efer & X86_EFER_LMA) && !emu_canonical(lin))
		emu_raise_gp(c, 0);
	if (walk(c, lin, acc, false, &x, &pferr) < 0) {
		c->cr2 = lin;
		emu_raise(c, X86_PF_VEC, pferr, true);
	}
	*gpa = x.gpa;
	s = mem_slot_find(c->mem, x.gpa);
	if (!s)
		return NULL;
	if (acc == ACC_W)
		dirty_mark_page(c->mem, s, (x.gpa - s->gpa) >> MEM_PAGE_SHIFT);
	return s->hva + (x.gpa - s->gpa);
}

uint64_t emu_sys_read(struct emu_cpu *c, uint64_t lin, unsigned size)
{
	uint8_t buf[8] = {0};
	uint64_t v, g;

	if (!(c->efer & X86_EFER_LMA))
		lin &= 0xffffffffULL;
	for (unsigned i = 0; i < size;) {
		uint64_t a = next_lin(c, lin, i);
		unsigned n = 4096 - (unsigned)(a & EMU_PAGE_MASK);
		uint8_t *h = translate_sys(c, a, ACC_R, &g);
		if (n > size - i)
			n = size - i;
		piece_read(c, h, g, buf + i, n);
		i += n;
	}
	memcpy(&v, buf, 8);
	return v;
}

void emu_sys_write(struct emu_cpu *c, uint64_t lin, unsigned size, uint64_t val)
{
	uint8_t *h[2] = {0}, buf[8];
	uint64_t g[2] = {0}, a[2];
	unsigned n[2];

	if (!(c->efer & X86_EFER_LMA))
		lin &= 0xffffffffULL;
	memcpy(buf, &val, 8);
	a[0] = lin;
	n[0] = 4096 - (unsigned)(lin & EMU_PAGE_MASK);
	if (n[0] > size)
		n[0] = size;
	n[1] = size - n[0];
	a[1] = next_lin(c, lin, n[0]);
	h[0] = translate_sys(c, a[0], ACC_W, &g[0]);
	if (n[1])
		h[1] = translate_sys(c, a[1], ACC_W, &g[1]);
	piece_write(c, h[0], g[0], buf, n[0]);
	if (n[1])
		piece_write(c, h[1], g[1], buf + n[0], n[1]);
}

unsigned emu_peek(struct emu_cpu *c, uint64_t lin, void *buf, unsigned len)
{
	unsigned done = 0;

	while (done < len) {
		uint64_t a = next_lin(c, lin, done);
		unsigned n = 4096 - (unsigned)(a & EMU_PAGE_MASK);
		struct xlate x;
		uint32_t pferr;
		void *h;

		if ((c->efer & X86_EFER_LMA) && !emu_canonical(a))
			break;
		/* A read-only walk still sets accessed bits; acceptable for diagnostics. */
		if (walk(c, a, ACC_R, false, &x, &pferr) < 0)
			break;
		if (n > len - done)
			n = len - done;
		h = mem_hva(c->mem, x.gpa, n);
		if (!h)
			break;
		memcpy((uint8_t *)buf + done, h, n);
		done += n;
	}
	return done;
}
