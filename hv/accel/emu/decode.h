/*
 * decode.h - one decoded x86 instruction, as the executors see it.
 *
 * The decoder does everything that depends only on the instruction bytes and the mode:
 * prefixes, operand and address size, ModRM/SIB, the effective address (already offset
 * by the registers and truncated to the address size), immediates and the length. The
 * executors then switch on one 16-bit opcode number and never look at bytes again.
 */
#ifndef HV_EMU_DECODE_H
#define HV_EMU_DECODE_H

#include "hv/accel/emu/cpu.h"

#define EMU_MAX_INSN_LEN 15

/* Opcode numbers: the one-byte map is 0x000-0x0ff, the 0F map 0x100-0x1ff. */
#define EMU_OP_0F(b) (0x100 | (b))

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
	uint64_t ea;       /* effective address (offset in seg), truncated to addrsize */
	uint64_t imm;      /* immediate, sign-extended where the encoding says so */
	uint64_t imm2;     /* second immediate: ENTER's level, a far pointer's selector */
	uint64_t next_rip; /* RIP after this instruction (truncated to the code size) */
};

/*
 * emu_decode - decode the instruction at @p (at least 32 readable bytes: the caller pads)
 * into @d, in the current mode of @c, computing the effective address from c->r. Returns
 * the length, which may exceed EMU_MAX_INSN_LEN (the caller raises #GP). Never faults.
 */
unsigned emu_decode(struct emu_cpu *c, const uint8_t *p, struct emu_insn *d);

/* emu_exec - execute the decoded instruction @d (exec.c); sets c->rip. */
void emu_exec(struct emu_cpu *c, const struct emu_insn *d);

#endif
