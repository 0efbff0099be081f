/*
 * exec_string.c - string instructions MOVS CMPS STOS LODS SCAS INS OUTS, with REP,
 * REPE and REPNE.
 *
 * Each iteration commits rSI/rDI/rCX before the next one starts, so a fault in the middle
 * restarts the instruction with the remaining count, as on hardware. A long REP runs at
 * most EMU_REP_CHUNK iterations per step and then re-executes itself, so interrupts and
 * the run loop's deadlines are not held off by a huge count. REP STOS and REP MOVS going
 * forward in 64-bit mode work a page at a time on host pointers when the soft TLB already
 * maps the pages (the 4 KiB memset and memcpy a kernel does all the time).
 */
#include <string.h>

#include "hv/accel/emu/exec.h"

#define EMU_REP_CHUNK 16384

/* A host pointer for @n bytes at linear @lin if the soft TLB maps them on one page. */
static inline void *tlb_host(struct emu_cpu *c, uint64_t lin, uint64_t n, bool write)
{
	struct emu_tlb_entry *e = emu_tlb_slot(c, lin);

	if (e->tag != emu_tlb_tag(c, lin) || (lin & EMU_PAGE_MASK) + n > 4096)
		return NULL;
	if (write && e->wepoch != c->dirty_epoch)
		return NULL;
	return (void *)(uintptr_t)(lin + e->addend);
}

/* Elements from @lin to the end of its page (0 if one straddles the boundary). */
static inline uint64_t page_elems(uint64_t lin, unsigned size)
{
	return (4096 - (lin & EMU_PAGE_MASK)) / size;
}

/*
 * fast_rep - bulk REP STOS/MOVS in 64-bit mode with DF clear; returns false when it did
 * nothing (TLB miss, element straddling a page), and the caller does one iteration.
 */
static bool fast_rep(struct emu_cpu *c, bool movs, unsigned size, uint64_t *budget)
{
	uint64_t rcx = c->r[X86_RCX], dst = c->r[X86_RDI], src = c->r[X86_RSI];
	uint64_t n = page_elems(dst, size), bytes;
	uint8_t *dp, *sp = NULL;

	if (n > rcx)
		n = rcx;
	if (n > *budget)
		n = *budget;
	if (movs) {
		uint64_t ns = page_elems(src, size);
		if (n > ns)
			n = ns;
	}
	if (n == 0)
		return false;
	bytes = n * size;
	dp = tlb_host(c, dst, bytes, true);
	if (!dp)
		return false;
	if (movs) {
		sp = tlb_host(c, src, bytes, false);
		if (!sp)
			return false;
		if (dp > sp && dp < sp + bytes) {
			/* forward element copy replicates an overlap: no memmove/memcpy */
			for (uint64_t i = 0; i < bytes; i += size) {
				uint64_t t;
				memcpy(&t, sp + i, size);
				memcpy(dp + i, &t, size);
			}
		} else {
			memmove(dp, sp, bytes);
		}
		c->r[X86_RSI] = src + bytes;
	} else if (size == 1) {
		memset(dp, (uint8_t)c->r[X86_RAX], bytes);
	} else {
		uint64_t v = c->r[X86_RAX];
		for (uint64_t i = 0; i < bytes; i += size)
			memcpy(dp + i, &v, size);
	}
	c->r[X86_RDI] = dst + bytes;
	c->r[X86_RCX] = rcx - n;
	*budget -= n;
	return true;
}

void emu_exec_string(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned op = d->op, size = (op & 1) ? d->opsize : 1, as = d->addrsize;
	uint64_t am = emu_size_mask(as), budget = EMU_REP_CHUNK;
	int64_t step = (c->flags & X86_DF) ? -(int64_t)size : (int64_t)size;
	bool rep = d->rep != 0;
	int srcseg = d->seg; /* DS unless overridden; the destination is always ES */

	if (op == 0x6d || op == 0x6f) /* ins/outs: at most 32 bits */
		size = d->opsize == 2 ? 2 : 4;
	if (op <= 0x6f && (unsigned)c->cpl > ((c->flags & X86_IOPL) >> 12))
		emu_raise_gp(c, 0);

	for (;;) {
		uint64_t si = c->r[X86_RSI] & am, di = c->r[X86_RDI] & am, v, a;
		bool stop = false;

		if (rep) {
			if ((c->r[X86_RCX] & am) == 0)
				return;
			if (budget == 0) {
				c->rip = c->insn_rip; /* continue in the next step */
				return;
			}
			if (as == 8 && step > 0 && srcseg < X86_FS &&
			    (op == 0xa4 || op == 0xa5 || op == 0xaa || op == 0xab) &&
			    fast_rep(c, op <= 0xa5, size, &budget))
				continue;
		}
		switch (op) {
		case 0xa4:
		case 0xa5: /* movs */
			v = emu_read(c, srcseg, si, size);
			emu_write(c, X86_ES, di, size, v);
			reg_write(c, d, X86_RSI, as, si + step);
			reg_write(c, d, X86_RDI, as, di + step);
			break;
		case 0xa6:
		case 0xa7: /* cmps: flags of [rSI] - [rDI] */
			a = emu_read(c, srcseg, si, size);
			v = emu_read(c, X86_ES, di, size);
			reg_write(c, d, X86_RSI, as, si + step);
			reg_write(c, d, X86_RDI, as, di + step);
			emu_cc_set(c, EMU_CC_SUB, a, v, (a - v) & emu_size_mask(size), size);
			stop = true;
			break;
		case 0xaa:
		case 0xab: /* stos */
			emu_write(c, X86_ES, di, size, c->r[X86_RAX]);
			reg_write(c, d, X86_RDI, as, di + step);
			break;
		case 0xac:
		case 0xad: /* lods */
			v = emu_read(c, srcseg, si, size);
			reg_write(c, d, X86_RAX, size, v);
			reg_write(c, d, X86_RSI, as, si + step);
			break;
		case 0xae:
		case 0xaf: /* scas: flags of rAX - [rDI] */
			a = c->r[X86_RAX] & emu_size_mask(size);
			v = emu_read(c, X86_ES, di, size);
			reg_write(c, d, X86_RDI, as, di + step);
			emu_cc_set(c, EMU_CC_SUB, a, v, (a - v) & emu_size_mask(size), size);
			stop = true;
			break;
		case 0x6c:
		case 0x6d: /* ins */
			/* translate the destination first, so a fault cannot lose the port read */
			(void)emu_read(c, X86_ES, di, size);
			v = emu_in(c, (uint16_t)c->r[X86_RDX], size);
			emu_write(c, X86_ES, di, size, v);
			reg_write(c, d, X86_RDI, as, di + step);
			break;
		default: /* 0x6e, 0x6f: outs */
			v = emu_read(c, srcseg, si, size);
			emu_out(c, (uint16_t)c->r[X86_RDX], size, v);
			reg_write(c, d, X86_RSI, as, si + step);
			break;
		}
		if (!rep)
			return;
		reg_write(c, d, X86_RCX, as, c->r[X86_RCX] - 1);
		budget--;
		/* REPE stops on a difference, REPNE on a match */
		if (stop && emu_cond(c, 4) != (d->rep == 0xf3))
			return;
	}
}
