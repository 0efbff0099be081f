/*
 * decode.h - one decoded x86 instruction, as the executors see it.
 *
 * The decoder does everything that depends only on the instruction bytes and the mode:
 * prefixes, operand and address size, ModRM/SIB, immediates and the length. The
 * effective address is the one field that also depends on the registers: decode records
 * its parts (base, index, scale, displacement) and emu_ea() adds them up, at decode time
 * and again each time emu_step() reuses a cached decoding. The executors then switch on
 * one 16-bit opcode number and never look at bytes again.
 */
#ifndef HV_EMU_DECODE_H
#define HV_EMU_DECODE_H

#include "hv/accel/emu/cpu.h"

#define EMU_MAX_INSN_LEN 15

/* Opcode numbers: the one-byte map is 0x000-0x0ff, the 0F map 0x100-0x1ff. */
#define EMU_OP_0F(b) (0x100 | (b))

/* ea_base / ea_index of an address without that part (and of non-memory operands). */
#define EMU_EA_NONE 0xff

struct emu_insn {
	uint16_t op;       /* map << 8 | opcode byte */
	uint8_t len;       /* bytes, prefixes included */
	uint8_t opsize;    /* operand size of 'v' operands: 2, 4 or 8 */
	uint8_t addrsize;  /* 2, 4 or 8 */
	uint8_t rex;       /* the REX byte, 0 if none (then SPL..DIL read as AH..BH) */
	uint8_t rep;       /* 0, 0xf2 (REPNE) or 0xf3 (REP/REPE) */
	uint8_t lock;      /* LOCK prefix seen */
	uint8_t p66;       /* operand-size prefix seen (mandatory-prefix forms) */
	uint8_t seg;       /* segment of the memory operand (override or default) */
	uint8_t segovr;    /* a segment override prefix was given */
	uint8_t modrm;     /* raw ModRM byte */
	uint8_t mod;       /* ModRM.mod; 3 means a register operand */
	uint8_t reg;       /* ModRM.reg with REX.R */
	uint8_t rm;        /* ModRM.rm with REX.B when mod == 3 */
	uint8_t rspbase;   /* the memory operand's base register is RSP */
	uint8_t ea_base;   /* base register of the memory operand, or EMU_EA_NONE */
	uint8_t ea_index;  /* index register, or EMU_EA_NONE */
	uint8_t ea_scale;  /* the index is shifted left by this much */
	uint64_t ea_disp;  /* displacement; RIP-relative: already includes next_rip */
	uint64_t ea_mask;  /* the address size as a mask */
	uint64_t ea;       /* effective address (offset in seg), truncated to addrsize */
	uint64_t imm;      /* immediate, sign-extended where the encoding says so */
	uint64_t imm2;     /* second immediate: ENTER's level, a far pointer's selector */
	uint64_t next_rip; /* RIP after this instruction (truncated to the code size) */
};

/*
 * emu_ea - the effective address of @d's memory operand with the registers of @c now:
 * base + (index << scale) + displacement, wrapped to the address size. 0 when the
 * instruction has no memory operand.
 */
static inline uint64_t emu_ea(const struct emu_cpu *c, const struct emu_insn *d)
{
	uint64_t ea = d->ea_disp;

	if (d->ea_base != EMU_EA_NONE)
		ea += c->r[d->ea_base];
	if (d->ea_index != EMU_EA_NONE)
		ea += c->r[d->ea_index] << d->ea_scale;
	return ea & d->ea_mask;
}

/*
 * emu_decode - decode the instruction at @p (at least 32 readable bytes: the caller pads)
 * into @d, in the current mode of @c and at c->rip, computing the effective address from
 * c->r. Returns the length, which may exceed EMU_MAX_INSN_LEN (the caller raises #GP).
 * Never faults. Reads nothing of @c but c->mode, c->rip and c->r (the cache relies on it).
 */
unsigned emu_decode(struct emu_cpu *c, const uint8_t *p, struct emu_insn *d);

/* emu_exec - execute the decoded instruction @d (exec.c); sets c->rip. */
void emu_exec(struct emu_cpu *c, const struct emu_insn *d);

#endif
