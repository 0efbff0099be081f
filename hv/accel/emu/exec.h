/*
 * exec.h - operand access shared by the instruction executors (exec*.c).
 *
 * Registers live in c->r[] as 64-bit values; a narrower write merges (8/16-bit) or
 * zero-extends (32-bit) exactly as the hardware does, and without a REX prefix byte
 * registers 4-7 are AH CH DH BH. Memory operands go through the inline soft-TLB paths of
 * mmu.h. The stack helpers write before they move RSP, so a fault leaves RSP untouched.
 */
#ifndef HV_EMU_EXEC_H
#define HV_EMU_EXEC_H

#include "hv/accel/emu/decode.h"
#include "hv/accel/emu/flags.h"
#include "hv/accel/emu/mmu.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* For the operand helpers of the hot instructions: emu_exec() is so large that gcc
 * otherwise leaves them out of line, and the calls cost more than the work. */
#define EMU_HOT static inline __attribute__((always_inline))

/* ALU operation numbers: the reg field of 80-83 and bits 3-5 of opcodes 00-3F. */
enum { ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP, ALU_NEG };

EMU_HOT uint64_t reg_read(const struct emu_cpu *c, const struct emu_insn *d, unsigned r,
                          unsigned size)
{
	switch (size) {
	case 1:
		if (r >= 4 && r < 8 && !d->rex)
			return (c->r[r - 4] >> 8) & 0xff;
		return c->r[r] & 0xff;
	case 2: return c->r[r] & 0xffff;
	case 4: return (uint32_t)c->r[r];
	default: return c->r[r];
	}
}

EMU_HOT void reg_write(struct emu_cpu *c, const struct emu_insn *d, unsigned r, unsigned size,
                       uint64_t v)
{
	switch (size) {
	case 1:
		if (r >= 4 && r < 8 && !d->rex)
			c->r[r - 4] = (c->r[r - 4] & ~0xff00ULL) | ((v & 0xff) << 8);
		else
			c->r[r] = (c->r[r] & ~0xffULL) | (v & 0xff);
		break;
	case 2: c->r[r] = (c->r[r] & ~0xffffULL) | (v & 0xffff); break;
	case 4: c->r[r] = (uint32_t)v; break;
	default: c->r[r] = v; break;
	}
}

/* The r/m operand: a register when mod == 3, else memory at d->seg:d->ea. */
EMU_HOT uint64_t rm_read(struct emu_cpu *c, const struct emu_insn *d, unsigned size)
{
	if (d->mod == 3)
		return reg_read(c, d, d->rm, size);
	return emu_read(c, d->seg, d->ea, size);
}

EMU_HOT void rm_write(struct emu_cpu *c, const struct emu_insn *d, unsigned size, uint64_t v)
{
	if (d->mod == 3)
		reg_write(c, d, d->rm, size, v);
	else
		emu_write(c, d->seg, d->ea, size, v);
}

/* ea_wrap - an offset wrapped to the instruction's address size. */
static inline uint64_t ea_wrap(const struct emu_insn *d, uint64_t ea)
{
	return d->addrsize == 8 ? ea : d->addrsize == 4 ? (uint32_t)ea : (uint16_t)ea;
}

/* ea_add - d->ea + @k wrapped to the address size (second half of a far pointer...). */
static inline uint64_t ea_add(const struct emu_insn *d, uint64_t k)
{
	return ea_wrap(d, d->ea + k);
}

/* Width of the stack pointer: 8 in 64-bit mode, else SS.B picks ESP or SP. */
static inline unsigned stack_width(const struct emu_cpu *c)
{
	if (c->mode == EMU_MODE_LONG64)
		return 8;
	return c->seg[X86_SS].db ? 4 : 2;
}

static inline uint64_t sp_add(const struct emu_cpu *c, uint64_t sp, int64_t k)
{
	unsigned w = stack_width(c);
	sp += k;
	return w == 8 ? sp : w == 4 ? (uint32_t)sp : (uint16_t)sp;
}

/* set_sp - commit a new stack pointer of the stack's width (16-bit SP merges). */
static inline void set_sp(struct emu_cpu *c, uint64_t sp)
{
	if (stack_width(c) == 2)
		c->r[X86_RSP] = (c->r[X86_RSP] & ~0xffffULL) | (sp & 0xffff);
	else
		c->r[X86_RSP] = sp;
}

static inline void push(struct emu_cpu *c, unsigned size, uint64_t v)
{
	uint64_t sp = sp_add(c, c->r[X86_RSP], -(int64_t)size);
	emu_write(c, X86_SS, sp, size, v);
	set_sp(c, sp);
}

/* pop_peek - read the top of the stack without moving RSP; pop_commit moves it. */
static inline uint64_t pop_peek(struct emu_cpu *c, unsigned size, unsigned off)
{
	return emu_read(c, X86_SS, sp_add(c, c->r[X86_RSP], off), size);
}

static inline void pop_commit(struct emu_cpu *c, unsigned size)
{
	set_sp(c, sp_add(c, c->r[X86_RSP], size));
}

/* Operand size of push/pop/near branches: 64 (or 16 with 66) in 64-bit mode. */
static inline unsigned stack_opsize(const struct emu_cpu *c, const struct emu_insn *d)
{
	if (c->mode == EMU_MODE_LONG64)
		return d->p66 ? 2 : 8;
	return d->opsize;
}

/*
 * jump_to - set RIP to @target wrapped to the operand size outside 64-bit mode. A
 * non-canonical target faults on the branch itself (#GP(0) with RIP at the branch), so
 * callers check before any other side effect (call's push, ret's pop).
 */
static inline void jump_to(struct emu_cpu *c, const struct emu_insn *d, uint64_t target)
{
	if (c->mode != EMU_MODE_LONG64)
		target = d->opsize == 2 ? (uint16_t)target : (uint32_t)target;
	else if (unlikely((uint64_t)((int64_t)(target << 16) >> 16) != target))
		emu_raise_gp(c, 0);
	c->rip = target;
}

static inline void require_cpl0(struct emu_cpu *c)
{
	if (unlikely(c->cpl != 0))
		emu_raise_gp(c, 0);
}

/* alu_compute - the result of ALU operation @op, unmasked; @cin is the carry in. */
EMU_HOT uint64_t alu_compute(unsigned op, uint64_t a, uint64_t b, unsigned cin)
{
	switch (op) {
	case ALU_ADD: return a + b;
	case ALU_OR: return a | b;
	case ALU_ADC: return a + b + cin;
	case ALU_SBB: return a - b - cin;
	case ALU_AND: return a & b;
	case ALU_XOR: return a ^ b;
	case ALU_NEG: return -a;
	default: return a - b; /* SUB, CMP */
	}
}

/* alu_flags - record the lazy flags of ALU operation @op (operands already masked). */
EMU_HOT void alu_flags(struct emu_cpu *c, unsigned op, uint64_t a, uint64_t b, uint64_t res,
                       unsigned size, unsigned cin)
{
	static const uint8_t ccop[2][9] = {
	    {EMU_CC_ADD, EMU_CC_LOGIC, EMU_CC_ADD, EMU_CC_SUB, EMU_CC_LOGIC, EMU_CC_SUB,
	     EMU_CC_LOGIC, EMU_CC_SUB, EMU_CC_SUB},
	    {EMU_CC_ADD, EMU_CC_LOGIC, EMU_CC_ADC, EMU_CC_SBB, EMU_CC_LOGIC, EMU_CC_SUB,
	     EMU_CC_LOGIC, EMU_CC_SUB, EMU_CC_SUB},
	};
	if (op == ALU_NEG) {
		b = a;
		a = 0;
	}
	emu_cc_set(c, ccop[cin][op], a, b, res, size);
}

/*
 * emu_lock_rmw - atomically apply ALU operation @op with @src (and carry @cin) to the
 * memory operand of @d; returns the old value (exec.c).
 */
uint64_t emu_lock_rmw(struct emu_cpu *c, const struct emu_insn *d, unsigned size, unsigned op,
                      uint64_t src, unsigned cin);

/* Executors of the other files; each handles the opcodes named. */
void emu_exec_shift(struct emu_cpu *c, const struct emu_insn *d);  /* C0 C1 D0-D3, SHLD/SHRD */
void emu_exec_grp3(struct emu_cpu *c, const struct emu_insn *d);   /* F6 F7 */
void emu_exec_imul(struct emu_cpu *c, const struct emu_insn *d);   /* 0F AF, 69, 6B */
void emu_exec_bits(struct emu_cpu *c, const struct emu_insn *d);   /* BT*, BSF/BSR, POPCNT.. */
void emu_exec_atomic(struct emu_cpu *c, const struct emu_insn *d); /* XCHG XADD CMPXCHG* */
void emu_exec_string(struct emu_cpu *c, const struct emu_insn *d); /* MOVS..SCAS, INS/OUTS */
void emu_exec_sys(struct emu_cpu *c, const struct emu_insn *d);    /* system instructions */

#endif
