/*
 * decode.c - instruction fetch and decode, and emu_step().
 *
 * One table of per-opcode properties (has ModRM, which immediate, default 64-bit operand
 * size) drives a single pass over the bytes. Fetch hands the decoder the host bytes
 * straight from the code page when at least 32 bytes remain on it (the longest encoding
 * the decoder can walk over before it notices the 15-byte limit is shorter); near the end
 * of a page it decodes a zero-padded copy, and only when the instruction turns out to be
 * longer than what the page holds does it fetch the next page, so an instruction that
 * ends at a page boundary never faults on the page after it.
 *
 * Hot code runs the same instructions millions of times, so emu_step() keeps what decode
 * made of each in a per-CPU cache, direct-mapped by RIP. The fetch itself is not skipped
 * (the soft TLB still translates RIP and checks execute permission), only the decode: an
 * entry is used when its RIP and mode match and the bytes now at the code pointer equal
 * the bytes it was decoded from. Decode reads nothing else (c->mode, c->rip for next_rip
 * and RIP-relative addresses, c->r only for the effective address, which a hit recomputes
 * with emu_ea()), and equal bytes in an equal mode decode to the same thing, so this one
 * comparison keeps self-modifying code, CR3 switches, remapping and CS changes correct with
 * no invalidation anywhere. Only the fast path uses the cache, where 32 bytes remain on
 * the page: instructions that reach the end of a page are decoded every time.
 */
#include <stdlib.h>
#include <string.h>

#include "hv/accel/emu/decode.h"
#include "hv/accel/emu/mmu.h"

#define F_M     0x01 /* ModRM follows */
#define F_I8    0x02 /* imm8 */
#define F_IZ    0x04 /* imm16 or imm32 by operand size, sign-extended */
#define F_I16   0x08 /* imm16 */
#define F_IV    0x10 /* immediate of the full operand size (mov r, imm64) */
#define F_MOFFS 0x20 /* absolute offset of the address size */
#define F_D64   0x40 /* operand size defaults to 64 bits in 64-bit mode */
#define F_SPEC  0x80 /* see emu_decode: F6/F7 imm, ENTER, far pointers, mov CR/DR */

#define ALU_ROW(x) [x + 0 ... x + 3] = F_M, [x + 4] = F_I8, [x + 5] = F_IZ

static const uint8_t dtab[512] = {
    ALU_ROW(0x00),
    ALU_ROW(0x08),
    ALU_ROW(0x10),
    ALU_ROW(0x18),
    ALU_ROW(0x20),
    ALU_ROW(0x28),
    ALU_ROW(0x30),
    ALU_ROW(0x38),
    [0x50 ... 0x5f] = F_D64,
    [0x62] = F_M,
    [0x63] = F_M,
    [0x68] = F_IZ | F_D64,
    [0x69] = F_M | F_IZ,
    [0x6a] = F_I8 | F_D64,
    [0x6b] = F_M | F_I8,
    [0x70 ... 0x7f] = F_I8 | F_D64,
    [0x80] = F_M | F_I8,
    [0x81] = F_M | F_IZ,
    [0x82] = F_M | F_I8,
    [0x83] = F_M | F_I8,
    [0x84 ... 0x8e] = F_M,
    [0x8f] = F_M | F_D64,
    [0x9a] = F_SPEC,
    [0x9c] = F_D64,
    [0x9d] = F_D64,
    [0xa0 ... 0xa3] = F_MOFFS,
    [0xa8] = F_I8,
    [0xa9] = F_IZ,
    [0xb0 ... 0xb7] = F_I8,
    [0xb8 ... 0xbf] = F_IV,
    [0xc0] = F_M | F_I8,
    [0xc1] = F_M | F_I8,
    [0xc2] = F_I16 | F_D64,
    [0xc3] = F_D64,
    [0xc4] = F_M,
    [0xc5] = F_M,
    [0xc6] = F_M | F_I8,
    [0xc7] = F_M | F_IZ,
    [0xc8] = F_SPEC | F_D64,
    [0xc9] = F_D64,
    [0xca] = F_I16,
    [0xcd] = F_I8,
    [0xd0 ... 0xd3] = F_M,
    [0xd4] = F_I8,
    [0xd5] = F_I8,
    [0xd8 ... 0xdf] = F_M,
    [0xe0 ... 0xe3] = F_I8 | F_D64,
    [0xe4 ... 0xe7] = F_I8,
    [0xe8] = F_IZ | F_D64,
    [0xe9] = F_IZ | F_D64,
    [0xea] = F_SPEC,
    [0xeb] = F_I8 | F_D64,
    [0xf6] = F_M | F_SPEC,
    [0xf7] = F_M | F_SPEC,
    [0xfe] = F_M,
    [0xff] = F_M,

    [0x100 ... 0x103] = F_M,
    [0x10d] = F_M,
    [0x118 ... 0x11f] = F_M,
    [0x120 ... 0x123] = F_M | F_SPEC,
    [0x140 ... 0x14f] = F_M,
    [0x180 ... 0x18f] = F_IZ | F_D64,
    [0x190 ... 0x19f] = F_M,
    [0x1a0] = F_D64,
    [0x1a1] = F_D64,
    [0x1a3] = F_M,
    [0x1a4] = F_M | F_I8,
    [0x1a5] = F_M,
    [0x1a8] = F_D64,
    [0x1a9] = F_D64,
    [0x1ab] = F_M,
    [0x1ac] = F_M | F_I8,
    [0x1ad] = F_M,
    [0x1ae] = F_M,
    [0x1af] = F_M,
    [0x1b0 ... 0x1b9] = F_M,
    [0x1ba] = F_M | F_I8,
    [0x1bb ... 0x1bf] = F_M,
    [0x1c0] = F_M,
    [0x1c1] = F_M,
    [0x1c7] = F_M,
};

static inline uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* 16-bit ModRM addressing: [BX+SI], [BP+DI], ..., only in 16-bit address size. */
static const uint8_t *modrm16(const uint8_t *p, struct emu_insn *d)
{
	static const uint8_t base[8] = {X86_RBX,     X86_RBX,     X86_RBP, X86_RBP,
	                                EMU_EA_NONE, EMU_EA_NONE, X86_RBP, X86_RBX};
	static const uint8_t idx[8] = {X86_RSI, X86_RDI, X86_RSI,     X86_RDI,
	                               X86_RSI, X86_RDI, EMU_EA_NONE, EMU_EA_NONE};
	unsigned rm = d->modrm & 7;

	if (d->mod == 0 && rm == 6) {
		d->ea_disp = rd16(p);
		p += 2;
	} else {
		d->ea_base = base[rm];
		d->ea_index = idx[rm];
		if (base[rm] == X86_RBP)
			d->seg = X86_SS;
		if (d->mod == 1)
			d->ea_disp = (int8_t)*p++;
		else if (d->mod == 2) {
			d->ea_disp = (int16_t)rd16(p);
			p += 2;
		}
	}
	return p;
}

/* Legacy prefixes; REX is handled apart because it only counts right before the opcode. */
static const uint8_t is_prefix[256] = {
    [0x26] = 1, [0x2e] = 1, [0x36] = 1, [0x3e] = 1, [0x64] = 1, [0x65] = 1,
    [0x66] = 1, [0x67] = 1, [0xf0] = 1, [0xf2] = 1, [0xf3] = 1,
};

static inline __attribute__((always_inline)) unsigned
decode(struct emu_cpu *c, const uint8_t *start, struct emu_insn *d)
{
	const uint8_t *p = start;
	bool long64 = c->mode == EMU_MODE_LONG64, p67 = false, riprel = false;
	int segovr = -1;
	unsigned fl, op, b;

	d->rex = d->rep = d->lock = d->p66 = d->rspbase = d->ea_scale = 0;
	d->ea_base = d->ea_index = EMU_EA_NONE;
	d->ea_disp = d->imm = d->imm2 = 0;
	b = *p++;
	if (__builtin_expect(is_prefix[b], 0)) {
	prefixes:
		do {
			switch (b) {
			case 0x66: d->p66 = 1; break;
			case 0x67: p67 = true; break;
			case 0xf0: d->lock = 1; break;
			case 0xf2:
			case 0xf3: d->rep = b; break;
			case 0x64: segovr = X86_FS; break;
			case 0x65: segovr = X86_GS; break;
			default: segovr = (b >> 3) & 3; break; /* 26 2e 36 3e: ES CS SS DS */
			}
			if (p - start >= EMU_MAX_INSN_LEN)
				return EMU_MAX_INSN_LEN + 1;
			b = *p++;
		} while (is_prefix[b]);
	}
	if (long64 && (b & 0xf0) == 0x40) {
		do { /* several REX bytes: the last one counts */
			d->rex = b;
			if (p - start >= EMU_MAX_INSN_LEN)
				return EMU_MAX_INSN_LEN + 1;
			b = *p++;
		} while ((b & 0xf0) == 0x40);
		if (__builtin_expect(is_prefix[b], 0)) {
			d->rex = 0; /* a REX not right before the opcode is ignored */
			goto prefixes;
		}
	}
	op = b;
	if (b == 0x0f)
		op = 0x100 | *p++;
	d->op = op;
	fl = dtab[op];

	if (long64) {
		if (d->rex & 8)
			d->opsize = 8;
		else if (d->p66)
			d->opsize = 2;
		else
			d->opsize = (fl & F_D64) ? 8 : 4;
		d->addrsize = p67 ? 4 : 8;
	} else if (c->mode == EMU_MODE_PROT32) {
		d->opsize = d->p66 ? 2 : 4;
		d->addrsize = p67 ? 2 : 4;
	} else {
		d->opsize = d->p66 ? 4 : 2;
		d->addrsize = p67 ? 4 : 2;
	}
	d->ea_mask = ~0ULL >> (64 - 8 * d->addrsize);
	d->segovr = segovr >= 0;
	d->seg = segovr >= 0 ? segovr : X86_DS;

	if (fl & F_M) {
		unsigned m = *p++;
		d->modrm = m;
		d->mod = m >> 6;
		d->reg = ((m >> 3) & 7) | ((d->rex & 4) << 1);
		d->rm = (m & 7) | ((d->rex & 1) << 3);
		if ((fl & F_SPEC) && op >= 0x120)
			d->mod = 3; /* mov CR/DR: always a register, whatever mod says */
		if (d->mod != 3) {
			if (d->addrsize == 2) {
				p = modrm16(p, d);
			} else {
				unsigned rm = m & 7;
				if (rm == 4) {
					unsigned sib = *p++;
					unsigned idx = ((sib >> 3) & 7) | ((d->rex & 2) << 2);
					unsigned base = (sib & 7) | ((d->rex & 1) << 3);
					if (idx != 4) {
						d->ea_index = idx;
						d->ea_scale = sib >> 6;
					}
					if ((base & 7) == 5 && d->mod == 0) {
						d->ea_disp = (int32_t)rd32(p);
						p += 4;
					} else {
						d->ea_base = base;
						d->rspbase = base == X86_RSP;
						if ((base & 7) == 4 || (base & 7) == 5)
							d->seg = segovr >= 0 ? segovr : X86_SS;
					}
				} else if (rm == 5 && d->mod == 0) {
					d->ea_disp = (int32_t)rd32(p);
					p += 4;
					riprel = long64;
				} else {
					d->ea_base = d->rm;
					if (rm == 5)
						d->seg = segovr >= 0 ? segovr : X86_SS;
				}
				if (d->mod == 1) {
					d->ea_disp = (int8_t)*p++;
				} else if (d->mod == 2) {
					d->ea_disp = (int32_t)rd32(p);
					p += 4;
				}
			}
		}
	} else {
		d->mod = 3;
	}

	if (fl & (F_I8 | F_IZ | F_I16 | F_IV | F_MOFFS | F_SPEC)) {
		if (fl & F_I8) {
			d->imm = (int8_t)*p++;
		} else if (fl & F_IZ) {
			if (d->opsize == 2) {
				d->imm = (int16_t)rd16(p);
				p += 2;
			} else {
				d->imm = (int32_t)rd32(p);
				p += 4;
			}
		} else if (fl & F_I16) {
			d->imm = rd16(p);
			p += 2;
		} else if (fl & F_IV) {
			d->imm = d->opsize == 8 ? rd64(p) : d->opsize == 4 ? rd32(p) : rd16(p);
			p += d->opsize;
		} else if (fl & F_MOFFS) {
			d->ea_disp = d->addrsize == 8   ? rd64(p)
			             : d->addrsize == 4 ? rd32(p)
			                                : rd16(p);
			p += d->addrsize;
		} else if (op == 0xf6 || op == 0xf7) {
			if (((d->modrm >> 3) & 7) < 2) { /* TEST r/m, imm */
				if (op == 0xf6 || d->opsize == 2) {
					d->imm = op == 0xf6 ? (uint64_t)(int8_t)*p
					                    : (uint64_t)(int16_t)rd16(p);
					p += op == 0xf6 ? 1 : 2;
				} else {
					d->imm = (int32_t)rd32(p);
					p += 4;
				}
			}
		} else if (op == 0xc8) { /* ENTER imm16, imm8 */
			d->imm = rd16(p);
			d->imm2 = p[2];
			p += 3;
		} else if (op == 0x9a || op == 0xea) { /* ptr16:16 / ptr16:32 */
			if (d->opsize == 2) {
				d->imm = rd16(p);
				p += 2;
			} else {
				d->imm = rd32(p);
				p += 4;
			}
			d->imm2 = rd16(p);
			p += 2;
		}
	}

	d->len = p - start;
	d->next_rip = c->rip + d->len;
	if (!long64)
		d->next_rip = d->opsize == 2 && c->mode == EMU_MODE_PROT16 ? (uint16_t)d->next_rip
		                                                           : (uint32_t)d->next_rip;
	if (riprel)
		d->ea_disp += d->next_rip; /* the key of a cached decoding includes RIP */
	d->ea = emu_ea(c, d);
	return d->len;
}

unsigned emu_decode(struct emu_cpu *c, const uint8_t *p, struct emu_insn *d)
{
	return decode(c, p, d);
}

/*
 * The decoded-instruction cache: direct-mapped by RIP. An entry holds the decoding of the
 * instruction at @rip in mode @tag - 1 and the bytes it was decoded from (the first @len,
 * the rest masked off).
 */
#define DCACHE_BITS 12
#define DCACHE_SIZE (1U << DCACHE_BITS)

struct dcache_entry {
	uint64_t rip;
	uint64_t bytes[2]; /* instruction bytes, little-endian, zero past the length */
	uint64_t mask[2];  /* which bits of the 16 bytes at RIP are the instruction's */
	uint32_t tag;      /* mode + 1; 0: empty */
	struct emu_insn insn;
} __attribute__((aligned(64))); /* 128 bytes: two whole cache lines, a shift to index */

_Static_assert(sizeof(struct dcache_entry) == 128, "dcache entry is not 128 bytes");

struct emu_dcache {
	struct dcache_entry e[DCACHE_SIZE];
};

struct emu_dcache *emu_dcache_new(void)
{
	struct emu_dcache *dc = aligned_alloc(64, sizeof(*dc)); /* calloc only aligns to 16 */

	if (dc)
		memset(dc, 0, sizeof(*dc));
	return dc;
}

void emu_dcache_free(struct emu_dcache *dc)
{
	free(dc);
}

static inline struct dcache_entry *dcache_slot(struct emu_cpu *c, uint64_t rip)
{
	/* within a page, the offset alone picks distinct slots; the page number spreads
	 * code that sits at the same offset of different pages */
	return &c->dcache->e[(rip ^ (rip >> DCACHE_BITS)) & (DCACHE_SIZE - 1)];
}

/*
 * dcache_fill - decode the instruction at @p (at least 32 readable bytes) into entry @e
 * for c->rip in the current mode. Returns NULL, leaving @e empty, when it is over-long.
 */
static __attribute__((noinline)) const struct emu_insn *
dcache_fill(struct emu_cpu *c, struct dcache_entry *e, const uint8_t *p)
{
	uint64_t w[2];
	unsigned len;

	e->tag = 0; /* not valid until it is decoded in full */
	len = emu_decode(c, p, &e->insn);
	if (len > EMU_MAX_INSN_LEN)
		return NULL;
	memcpy(w, p, sizeof(w));
	e->mask[0] = len >= 8 ? ~0ULL : (1ULL << 8 * len) - 1;
	e->mask[1] = len > 8 ? (1ULL << 8 * (len - 8)) - 1 : 0;
	e->bytes[0] = w[0] & e->mask[0];
	e->bytes[1] = w[1] & e->mask[1];
	e->rip = c->rip;
	e->tag = (uint32_t)c->mode + 1;
	return &e->insn;
}

/*
 * step_uncached - emu_step() for code the fast path does not take: a soft-TLB miss on the
 * code page, or an instruction that starts in the last 31 bytes of a page. Fetches
 * through the system half, decodes without the cache and executes.
 */
static __attribute__((noinline)) void step_uncached(struct emu_cpu *c, uint64_t lin)
{
	struct emu_insn d;
	uint8_t buf[32];
	unsigned avail, len;
	const uint8_t *p = emu_code_ptr(c, lin, &avail);

	if (avail >= sizeof(buf)) {
		const struct emu_insn *cd = dcache_fill(c, dcache_slot(c, c->rip), p);
		if (!cd)
			emu_raise_gp(c, 0);
		c->rip = cd->next_rip;
		emu_exec(c, cd);
		c->icount++;
		return;
	}
	/* Near the end of the page: decode a padded copy, and fetch the next page only if
	 * the instruction really continues there. Not cached: rare, and the bytes may come
	 * from two pages. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, p, avail);
	len = emu_decode(c, buf, &d);
	if (len > avail && avail < EMU_MAX_INSN_LEN) {
		unsigned more, need = EMU_MAX_INSN_LEN - avail;
		uint64_t next = lin + avail;
		if (c->mode != EMU_MODE_LONG64)
			next = (uint32_t)next;
		const uint8_t *q = emu_code_ptr(c, next, &more);
		memcpy(buf + avail, q, more < need ? more : need);
		len = emu_decode(c, buf, &d);
	}
	if (len > EMU_MAX_INSN_LEN)
		emu_raise_gp(c, 0);
	c->rip = d.next_rip;
	emu_exec(c, &d);
	c->icount++;
}

void emu_step(struct emu_cpu *c)
{
	const struct emu_insn *d;
	uint64_t lin = c->rip, w[2];

	c->insn_rip = c->rip;
	if (c->mode != EMU_MODE_LONG64)
		lin = (uint32_t)(c->seg[X86_CS].base + c->rip);
	struct emu_tlb_entry *t = emu_tlb_slot(c, lin);
	if (__builtin_expect(t->tag != emu_tlb_tag(c, lin) || !(t->flags & EMU_TLB_X) ||
	                         (lin & EMU_PAGE_MASK) > 4096 - 32,
	                     0)) {
		step_uncached(c, lin);
		return;
	}
	/* Soft-TLB hit with 32 bytes left on the page: look the instruction up. */
	const uint8_t *p = (const uint8_t *)(uintptr_t)(lin + t->addend);
	struct dcache_entry *e = dcache_slot(c, c->rip);
	memcpy(w, p, sizeof(w));
	if (__builtin_expect(
	        e->rip == c->rip && e->tag == (uint32_t)c->mode + 1 &&
	            !(((w[0] ^ e->bytes[0]) & e->mask[0]) | ((w[1] ^ e->bytes[1]) & e->mask[1])),
	        1)) {
		d = &e->insn;
		if (d->ea_base != EMU_EA_NONE || d->ea_index != EMU_EA_NONE)
			e->insn.ea = emu_ea(c, d); /* else decode's value is still right */
	} else {
		d = dcache_fill(c, e, p);
		if (!d)
			emu_raise_gp(c, 0);
	}
	c->rip = d->next_rip;
	emu_exec(c, d);
	c->icount++;
}
