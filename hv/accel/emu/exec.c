/*
 * exec.c - instruction dispatch and the hot instructions: data movement, the ALU, the
 * stack and control flow.
 *
 * emu_exec() is one switch over the opcode number, so the compiler builds a jump table.
 * The instructions gcc emits most (mov, lea, add/sub/cmp/test, jcc, push/pop, call/ret)
 * are executed right here with the operand helpers inlined; the rarer groups live in
 * exec_*.c. RIP already points at the next instruction when an executor runs (emu_step
 * sets it first; a fault makes the system half restart from insn_rip), so branches just
 * overwrite it.
 */
#include "hv/accel/emu/exec.h"

/* lockable - may this instruction carry a LOCK prefix? (else #UD) */
static bool lockable(const struct emu_insn *d)
{
	unsigned op = d->op, r = (d->modrm >> 3) & 7;

	if (d->mod == 3)
		return false;
	if (op < 0x40)
		return (op & 6) == 0 && (op & 0x38) != 0x38;
	switch (op) {
	case 0x80 ... 0x83: return r != 7;
	case 0x86:
	case 0x87: return true;
	case 0xf6:
	case 0xf7: return r == 2 || r == 3;
	case 0xfe:
	case 0xff: return r < 2;
	case EMU_OP_0F(0xab):
	case EMU_OP_0F(0xb3):
	case EMU_OP_0F(0xbb):
	case EMU_OP_0F(0xb0):
	case EMU_OP_0F(0xb1):
	case EMU_OP_0F(0xc0):
	case EMU_OP_0F(0xc1): return true;
	case EMU_OP_0F(0xba): return r >= 5;
	case EMU_OP_0F(0xc7): return r == 1;
	}
	return false;
}

uint64_t emu_lock_rmw(struct emu_cpu *c, const struct emu_insn *d, unsigned size, unsigned op,
                      uint64_t src, unsigned cin)
{
	uint64_t lin = emu_lin(c, d->seg, d->ea, size, true);
	void *p = emu_rmw_ptr(c, lin, size);

	if (!p) { /* page-crossing or MMIO: no atomicity to be had, as on a split lock */
		uint64_t old = emu_rmw_read(c, lin, size);
		emu_write_lin(c, lin, size, alu_compute(op, old, src, cin));
		return old;
	}
	switch (size) {
#define CAS_LOOP(T)                                                                                \
	{                                                                                          \
		T o = __atomic_load_n((T *)p, __ATOMIC_RELAXED);                                   \
		while (!__atomic_compare_exchange_n((T *)p, &o, (T)alu_compute(op, o, src, cin),   \
		                                    false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))    \
			;                                                                          \
		return o;                                                                          \
	}
	case 1: CAS_LOOP(uint8_t)
	case 2: CAS_LOOP(uint16_t)
	case 4: CAS_LOOP(uint32_t)
	default: CAS_LOOP(uint64_t)
#undef CAS_LOOP
	}
}

/* ALU op on the r/m operand (register, memory, or locked memory). */
EMU_HOT void alu_rm(struct emu_cpu *c, const struct emu_insn *d, unsigned op, unsigned size,
                    uint64_t src)
{
	uint64_t m = emu_size_mask(size), a, res;
	unsigned cin = (op == ALU_ADC || op == ALU_SBB) ? emu_get_cf(c) : 0;

	src &= m;
	if (d->mod == 3) {
		a = reg_read(c, d, d->rm, size);
		res = alu_compute(op, a, src, cin) & m;
		if (op != ALU_CMP)
			reg_write(c, d, d->rm, size, res);
	} else if (d->lock) {
		a = emu_lock_rmw(c, d, size, op, src, cin);
		res = alu_compute(op, a, src, cin) & m;
	} else {
		uint64_t lin = emu_lin(c, d->seg, d->ea, size, op != ALU_CMP);
		a = op != ALU_CMP ? emu_rmw_read(c, lin, size) : emu_read_lin(c, lin, size);
		res = alu_compute(op, a, src, cin) & m;
		if (op != ALU_CMP)
			emu_write_lin(c, lin, size, res);
	}
	alu_flags(c, op, a, src, res, size, cin);
}

/* ALU op into register @r. */
EMU_HOT void alu_reg(struct emu_cpu *c, const struct emu_insn *d, unsigned op, unsigned size,
                     unsigned r, uint64_t src)
{
	uint64_t m = emu_size_mask(size), a = reg_read(c, d, r, size), res;
	unsigned cin = (op == ALU_ADC || op == ALU_SBB) ? emu_get_cf(c) : 0;

	src &= m;
	res = alu_compute(op, a, src, cin) & m;
	if (op != ALU_CMP)
		reg_write(c, d, r, size, res);
	alu_flags(c, op, a, src, res, size, cin);
}

/* Opcodes 00-3F with (op & 7) < 6: the eight ALU operations in six operand forms. */
EMU_HOT void exec_alu(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned op = (d->op >> 3) & 7, size = (d->op & 1) ? d->opsize : 1;

	switch (d->op & 7) {
	case 0:
	case 1: alu_rm(c, d, op, size, reg_read(c, d, d->reg, size)); break;
	case 2:
	case 3: alu_reg(c, d, op, size, d->reg, rm_read(c, d, size)); break;
	default: alu_reg(c, d, op, size, X86_RAX, d->imm); break;
	}
}

/* INC/DEC of the r/m operand (or register @r when @r >= 0): CF is kept. */
static void incdec(struct emu_cpu *c, const struct emu_insn *d, unsigned size, bool dec, int r)
{
	uint64_t m = emu_size_mask(size), a, res;

	if (r >= 0) {
		a = reg_read(c, d, r, size);
		res = (dec ? a - 1 : a + 1) & m;
		reg_write(c, d, r, size, res);
	} else if (d->mod == 3) {
		a = reg_read(c, d, d->rm, size);
		res = (dec ? a - 1 : a + 1) & m;
		reg_write(c, d, d->rm, size, res);
	} else if (d->lock) {
		a = emu_lock_rmw(c, d, size, dec ? ALU_SUB : ALU_ADD, 1, 0);
		res = (dec ? a - 1 : a + 1) & m;
	} else {
		uint64_t lin = emu_lin(c, d->seg, d->ea, size, true);
		a = emu_rmw_read(c, lin, size);
		res = (dec ? a - 1 : a + 1) & m;
		emu_write_lin(c, lin, size, res);
	}
	c->flags = (c->flags & ~X86_CF) | emu_get_cf(c);
	emu_cc_set(c, dec ? EMU_CC_DEC : EMU_CC_INC, a, 1, res, size);
}

static void test_flags(struct emu_cpu *c, uint64_t a, uint64_t b, unsigned size)
{
	emu_cc_set(c, EMU_CC_LOGIC, a, b, a & b & emu_size_mask(size), size);
}

static void exec_call_near(struct emu_cpu *c, const struct emu_insn *d, uint64_t target)
{
	/* Branch first (it may fault on a non-canonical target), then push: a fault in the
	 * push restores RIP and leaves RSP untouched anyway. */
	jump_to(c, d, target);
	push(c, stack_opsize(c, d), d->next_rip);
}

static void exec_ret_near(struct emu_cpu *c, const struct emu_insn *d, unsigned extra)
{
	unsigned size = stack_opsize(c, d);
	uint64_t v = pop_peek(c, size, 0);

	jump_to(c, d, v); /* may fault: before RSP moves */
	set_sp(c, sp_add(c, c->r[X86_RSP], size + extra));
}

static void exec_enter(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = stack_opsize(c, d), level = d->imm2 & 31;
	uint64_t sp = sp_add(c, c->r[X86_RSP], -(int64_t)size), bp = c->r[X86_RBP], frame;

	emu_write(c, X86_SS, sp, size, bp);
	frame = sp;
	if (level) {
		for (unsigned i = 1; i < level; i++) {
			bp = sp_add(c, bp, -(int64_t)size);
			uint64_t v = emu_read(c, X86_SS, bp, size);
			sp = sp_add(c, sp, -(int64_t)size);
			emu_write(c, X86_SS, sp, size, v);
		}
		sp = sp_add(c, sp, -(int64_t)size);
		emu_write(c, X86_SS, sp, size, frame);
	}
	sp = sp_add(c, sp, -(int64_t)d->imm);
	/* The SDM's #PF "if a write using the final value of the stack pointer would
	 * fault": probed for writing after the frame is built (the host CPU has stored
	 * the frame by then), before RBP and RSP change. */
	(void)emu_rmw_read(c, emu_lin(c, X86_SS, sp, size, true), size);
	reg_write(c, d, X86_RBP, size == 2 ? 2 : stack_width(c), frame);
	set_sp(c, sp);
}

static void exec_leave(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = stack_opsize(c, d);
	uint64_t sp = sp_add(c, c->r[X86_RBP], 0);
	uint64_t v = emu_read(c, X86_SS, sp, size);

	set_sp(c, sp_add(c, sp, size));
	reg_write(c, d, X86_RBP, size, v);
}

static void exec_popf(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned size = stack_opsize(c, d);
	uint64_t v = pop_peek(c, size, 0), old = emu_rflags(c);
	uint64_t mask = X86_CF | X86_PF | X86_AF | X86_ZF | X86_SF | X86_TF | X86_DF | X86_OF |
	                X86_NT | X86_AC | X86_ID;

	if ((unsigned)c->cpl <= ((old & X86_IOPL) >> 12))
		mask |= X86_IF;
	if (c->cpl == 0)
		mask |= X86_IOPL;
	if (size == 2)
		mask &= 0xffff;
	pop_commit(c, size);
	emu_set_rflags(c, (old & ~mask) | (v & mask));
	if ((c->flags ^ old) & X86_IF)
		atomic_fetch_or(&c->attn, EMU_ATTN_IRQ);
}

/* FF: INC DEC CALL CALLF JMP JMPF PUSH on r/m. */
static void exec_grp5(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned r = (d->modrm >> 3) & 7, size;
	uint64_t v;

	switch (r) {
	case 0:
	case 1: incdec(c, d, d->opsize, r == 1, -1); return;
	case 2: /* call near indirect */
		v = rm_read(c, d, stack_opsize(c, d));
		exec_call_near(c, d, v);
		return;
	case 4: jump_to(c, d, rm_read(c, d, stack_opsize(c, d))); return;
	case 3:
	case 5: { /* far call/jmp through m16:16/32/64 */
		if (d->mod == 3)
			emu_raise_ud(c);
		size = d->opsize;
		v = emu_read(c, d->seg, d->ea, size);
		uint16_t sel = emu_read(c, d->seg, ea_add(d, size), 2);
		if (r == 3)
			emu_far_call(c, sel, v, size);
		else
			emu_far_jmp(c, sel, v);
		return;
	}
	case 6:
		size = stack_opsize(c, d);
		push(c, size, rm_read(c, d, size));
		return;
	default: emu_raise_ud(c);
	}
}

/* Bits of RFLAGS that SAHF and LAHF move through AH. */
#define AH_FLAGS (X86_SF | X86_ZF | X86_AF | X86_PF | X86_CF)

void emu_exec(struct emu_cpu *c, const struct emu_insn *d)
{
	unsigned op = d->op, size, r;
	uint64_t v, f;

	if (unlikely(d->lock) && !lockable(d))
		emu_raise_ud(c);

	switch (op) {
#define ALU_CASES(x)                                                                               \
	case x + 0:                                                                                \
	case x + 1:                                                                                \
	case x + 2:                                                                                \
	case x + 3:                                                                                \
	case x + 4:                                                                                \
	case x + 5:
		ALU_CASES(0x00)
		ALU_CASES(0x08)
		ALU_CASES(0x10)
		ALU_CASES(0x18)
		ALU_CASES(0x20)
		ALU_CASES(0x28)
		ALU_CASES(0x30)
		ALU_CASES(0x38)
		exec_alu(c, d);
		return;
#undef ALU_CASES

	case 0x06: /* push es/cs/ss/ds (legacy modes only) */
	case 0x0e:
	case 0x16:
	case 0x1e:
		if (c->mode == EMU_MODE_LONG64)
			emu_raise_ud(c);
		push(c, d->opsize, c->seg[op >> 3].selector);
		return;
	case 0x07: /* pop es/ss/ds */
	case 0x17:
	case 0x1f:
		if (c->mode == EMU_MODE_LONG64)
			emu_raise_ud(c);
		v = pop_peek(c, d->opsize, 0);
		emu_load_sreg(c, op >> 3, (uint16_t)v);
		pop_commit(c, d->opsize);
		if (op == 0x17)
			c->events.interrupt_shadow = 1;
		return;

	case 0x40 ... 0x4f: /* inc/dec r (REX prefixes in 64-bit mode never get here) */
		incdec(c, d, d->opsize, op >= 0x48, op & 7);
		return;

	case 0x50 ... 0x57:
		size = stack_opsize(c, d);
		push(c, size, reg_read(c, d, (op & 7) | ((d->rex & 1) << 3), size));
		return;
	case 0x58 ... 0x5f:
		size = stack_opsize(c, d);
		v = pop_peek(c, size, 0);
		pop_commit(c, size);
		reg_write(c, d, (op & 7) | ((d->rex & 1) << 3), size, v);
		return;

	case 0x63: /* movsxd (64-bit mode; ARPL elsewhere) */
		if (c->mode != EMU_MODE_LONG64)
			emu_raise_ud(c);
		v = rm_read(c, d, d->opsize == 8 ? 4 : d->opsize);
		if (d->opsize == 8)
			v = (uint64_t)(int64_t)(int32_t)v;
		reg_write(c, d, d->reg, d->opsize, v);
		return;

	case 0x68:
	case 0x6a: push(c, stack_opsize(c, d), d->imm); return;
	case 0x69:
	case 0x6b:
	case EMU_OP_0F(0xaf): emu_exec_imul(c, d); return;

	case 0x70 ... 0x7f:
	case EMU_OP_0F(0x80)... EMU_OP_0F(0x8f):
		if (emu_cond(c, op & 0xf))
			jump_to(c, d, d->next_rip + d->imm);
		return;

	case 0x80 ... 0x83:
		if (op == 0x82 && c->mode == EMU_MODE_LONG64)
			emu_raise_ud(c);
		alu_rm(c, d, (d->modrm >> 3) & 7, op == 0x80 || op == 0x82 ? 1 : d->opsize, d->imm);
		return;
	case 0x84:
	case 0x85:
		size = op == 0x84 ? 1 : d->opsize;
		test_flags(c, rm_read(c, d, size), reg_read(c, d, d->reg, size), size);
		return;
	case 0xa8:
	case 0xa9:
		size = op == 0xa8 ? 1 : d->opsize;
		test_flags(c, reg_read(c, d, X86_RAX, size), d->imm, size);
		return;

	case 0x86:
	case 0x87:
	case EMU_OP_0F(0xb0):
	case EMU_OP_0F(0xb1):
	case EMU_OP_0F(0xc0):
	case EMU_OP_0F(0xc1):
	case EMU_OP_0F(0xc7): emu_exec_atomic(c, d); return;

	case 0x88: rm_write(c, d, 1, reg_read(c, d, d->reg, 1)); return;
	case 0x89: rm_write(c, d, d->opsize, reg_read(c, d, d->reg, d->opsize)); return;
	case 0x8a: reg_write(c, d, d->reg, 1, rm_read(c, d, 1)); return;
	case 0x8b: reg_write(c, d, d->reg, d->opsize, rm_read(c, d, d->opsize)); return;
	case 0x8c: /* mov r/m, sreg */
		r = d->reg & 7;
		if (r >= X86_NR_SREGS)
			emu_raise_ud(c);
		if (d->mod == 3)
			reg_write(c, d, d->rm, d->opsize, c->seg[r].selector);
		else
			emu_write(c, d->seg, d->ea, 2, c->seg[r].selector);
		return;
	case 0x8d:
		if (d->mod == 3)
			emu_raise_ud(c);
		reg_write(c, d, d->reg, d->opsize, d->ea);
		return;
	case 0x8e: /* mov sreg, r/m */
		r = d->reg & 7;
		if (r >= X86_NR_SREGS || r == X86_CS)
			emu_raise_ud(c);
		emu_load_sreg(c, r, (uint16_t)rm_read(c, d, 2));
		if (r == X86_SS)
			c->events.interrupt_shadow = 1;
		return;
	case 0x8f:
		if ((d->modrm >> 3) & 7)
			emu_raise_ud(c);
		size = stack_opsize(c, d);
		v = pop_peek(c, size, 0);
		if (d->mod != 3 && d->rspbase) {
			/* an RSP-based destination is addressed with RSP already incremented */
			struct emu_insn m = *d;
			m.ea = ea_add(d, size);
			rm_write(c, &m, size, v);
		} else {
			rm_write(c, d, size, v);
		}
		pop_commit(c, size);
		return;

	case 0x90 ... 0x97:
		r = (op & 7) | ((d->rex & 1) << 3);
		if (r == X86_RAX)
			return; /* nop, pause */
		v = reg_read(c, d, r, d->opsize);
		reg_write(c, d, r, d->opsize, reg_read(c, d, X86_RAX, d->opsize));
		reg_write(c, d, X86_RAX, d->opsize, v);
		return;
	case 0x98: /* cbw/cwde/cdqe */
		size = d->opsize;
		reg_write(c, d, X86_RAX, size, emu_sext(c->r[X86_RAX], size / 2));
		return;
	case 0x99: /* cwd/cdq/cqo */
		size = d->opsize;
		v = (c->r[X86_RAX] & emu_sign_bit(size)) ? ~0ULL : 0;
		reg_write(c, d, X86_RDX, size, v);
		return;
	case 0x9c: /* pushf */
		size = stack_opsize(c, d);
		push(c, size, emu_rflags(c) & ~(X86_RF | X86_VM));
		return;
	case 0x9d: exec_popf(c, d); return;
	case 0x9e: /* sahf */
		f = emu_flags_materialize(c);
		c->flags = (f & ~AH_FLAGS) | ((c->r[X86_RAX] >> 8) & AH_FLAGS);
		return;
	case 0x9f: /* lahf */
		v = (emu_rflags(c) & (AH_FLAGS | X86_RFLAGS_FIXED));
		c->r[X86_RAX] = (c->r[X86_RAX] & ~0xff00ULL) | (v << 8);
		return;

	case 0xa0: reg_write(c, d, X86_RAX, 1, emu_read(c, d->seg, d->ea, 1)); return;
	case 0xa1:
		reg_write(c, d, X86_RAX, d->opsize, emu_read(c, d->seg, d->ea, d->opsize));
		return;
	case 0xa2: emu_write(c, d->seg, d->ea, 1, c->r[X86_RAX]); return;
	case 0xa3: emu_write(c, d->seg, d->ea, d->opsize, c->r[X86_RAX]); return;

	case 0xa4 ... 0xa7:
	case 0xaa ... 0xaf:
	case 0x6c ... 0x6f: emu_exec_string(c, d); return;

	case 0xb0 ... 0xb7: reg_write(c, d, (op & 7) | ((d->rex & 1) << 3), 1, d->imm); return;
	case 0xb8 ... 0xbf:
		reg_write(c, d, (op & 7) | ((d->rex & 1) << 3), d->opsize, d->imm);
		return;

	case 0xc0:
	case 0xc1:
	case 0xd0 ... 0xd3:
	case EMU_OP_0F(0xa4):
	case EMU_OP_0F(0xa5):
	case EMU_OP_0F(0xac):
	case EMU_OP_0F(0xad): emu_exec_shift(c, d); return;

	case 0xc2: exec_ret_near(c, d, d->imm); return;
	case 0xc3: exec_ret_near(c, d, 0); return;
	case 0xc6:
	case 0xc7:
		if ((d->modrm >> 3) & 7)
			emu_raise_ud(c);
		rm_write(c, d, op == 0xc6 ? 1 : d->opsize, d->imm);
		return;
	case 0xc8: exec_enter(c, d); return;
	case 0xc9: exec_leave(c, d); return;

	case 0xd7: /* xlat: AL = [rBX + AL] */
		v = emu_read(c, d->seg, ea_wrap(d, c->r[X86_RBX] + (c->r[X86_RAX] & 0xff)), 1);
		reg_write(c, d, X86_RAX, 1, v);
		return;
	case 0xe0 ... 0xe3: { /* loopne, loope, loop, jrcxz: count in rCX of the address size */
		uint64_t m = emu_size_mask(d->addrsize), cx = c->r[X86_RCX] & m;
		bool take;
		if (op == 0xe3) {
			take = cx == 0;
		} else {
			cx = (cx - 1) & m;
			reg_write(c, d, X86_RCX, d->addrsize, cx);
			take = cx != 0;
			if (op == 0xe0)
				take = take && !emu_cond(c, 4);
			else if (op == 0xe1)
				take = take && emu_cond(c, 4);
		}
		if (take)
			jump_to(c, d, d->next_rip + d->imm);
		return;
	}
	case 0xe8: exec_call_near(c, d, d->next_rip + d->imm); return;
	case 0xe9:
	case 0xeb: jump_to(c, d, d->next_rip + d->imm); return;

	case 0xf5: /* cmc */
		f = emu_flags_materialize(c);
		c->flags = f ^ X86_CF;
		return;
	case 0xf6:
	case 0xf7: emu_exec_grp3(c, d); return;
	case 0xf8:
	case 0xf9: /* clc, stc */
		f = emu_flags_materialize(c);
		c->flags = (f & ~X86_CF) | (op & 1);
		return;
	case 0xfc: c->flags &= ~X86_DF; return;
	case 0xfd: c->flags |= X86_DF; return;
	case 0xfe:
		r = (d->modrm >> 3) & 7;
		if (r > 1)
			emu_raise_ud(c);
		incdec(c, d, 1, r == 1, -1);
		return;
	case 0xff: exec_grp5(c, d); return;

	case EMU_OP_0F(0x0d): /* prefetch */
	case EMU_OP_0F(0x18)... EMU_OP_0F(0x1f): /* hint nops, endbr64 */ return;
	case EMU_OP_0F(0x40)... EMU_OP_0F(0x4f): /* cmovcc */
		v = rm_read(c, d, d->opsize);
		if (emu_cond(c, op & 0xf))
			reg_write(c, d, d->reg, d->opsize, v);
		else if (d->opsize == 4)
			c->r[d->reg] = (uint32_t)c->r[d->reg]; /* zero-extends even when false */
		return;
	case EMU_OP_0F(0x90)... EMU_OP_0F(0x9f): rm_write(c, d, 1, emu_cond(c, op & 0xf)); return;
	case EMU_OP_0F(0xa3):
	case EMU_OP_0F(0xab):
	case EMU_OP_0F(0xb3):
	case EMU_OP_0F(0xbb):
	case EMU_OP_0F(0xba):
	case EMU_OP_0F(0xbc):
	case EMU_OP_0F(0xbd):
	case EMU_OP_0F(0xb8): emu_exec_bits(c, d); return;
	case EMU_OP_0F(0xb6):
	case EMU_OP_0F(0xb7):
		reg_write(c, d, d->reg, d->opsize, rm_read(c, d, op == EMU_OP_0F(0xb6) ? 1 : 2));
		return;
	case EMU_OP_0F(0xbe):
	case EMU_OP_0F(0xbf):
		size = op == EMU_OP_0F(0xbe) ? 1 : 2;
		reg_write(c, d, d->reg, d->opsize, emu_sext(rm_read(c, d, size), size));
		return;
	case EMU_OP_0F(0xc8)... EMU_OP_0F(0xcf):
		r = (op & 7) | ((d->rex & 1) << 3);
		if (d->opsize == 8)
			c->r[r] = __builtin_bswap64(c->r[r]);
		else if (d->opsize == 4)
			c->r[r] = __builtin_bswap32((uint32_t)c->r[r]);
		else
			reg_write(c, d, r, 2, 0); /* undefined; current parts give 0 */
		return;

	default: emu_exec_sys(c, d); return;
	}
}
