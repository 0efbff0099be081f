/*
 * fuzz_emu.c - libFuzzer target for the software CPU: arbitrary guest code.
 *
 * Guest code is hostile input too: whatever bytes a guest executes, in whatever state,
 * the emu must turn them into instructions, exceptions or a triple fault, and never
 * crash, hang or touch host memory outside guest RAM. The input picks the mode (64-bit
 * with 4-level paging, or 32-bit flat with paging off), whether exceptions are delivered
 * through an IDT (here an empty one, so they escalate to a triple fault) or returned, the
 * initial registers, and up to 4 KiB of code placed at 1 MiB.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/accel/emu/cpu.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

#define RAM_SIZE  (4ULL << 20)
#define PML4	  0x1000
#define PDPT	  0x2000
#define PD	  0x3000
#define CODE	  0x100000
#define STACK_TOP 0x200000

static struct guest_mem mem;
static struct io_bus io;
static struct x86_state *st;

static void put64(uint64_t gpa, uint64_t v)
{
	gpa_write(&mem, gpa, &v, 8, NULL);
}

static void seg(struct x86_seg *s, uint16_t sel, uint8_t type, int l, int db)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = s->s = s->g = 1;
	s->l = l;
	s->db = db;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct emu_cpu *c;
	uint8_t mode, flags;
	size_t ncode;

	if (size < 2 + 16 * 8)
		return 0;
	if (!st) {
		if (mem_init_empty(&mem), mem_add_slot(&mem, 0, RAM_SIZE, NULL) < 0)
			abort();
		st = calloc(1, sizeof(*st));
		if (!st)
			abort();
	}
	/* Fresh RAM contents each run: page tables identity-map the first 4 MiB (2 MiB pages). */
	memset(mem.slot[0].hva, 0, RAM_SIZE);
	put64(PML4, PDPT | 3);
	put64(PDPT, PD | 3);
	put64(PD, 0x000000 | 0x83);
	put64(PD + 8, 0x200000 | 0x83);

	mode = data[0];
	flags = data[1];
	x86_state_reset(st, 0, 1);
	memcpy(st->gpr, data + 2, 16 * 8);
	st->gpr[X86_RSP] = STACK_TOP - 64;
	st->rflags = 2 | (flags & (X86_CF | X86_PF | X86_AF | X86_ZF | X86_SF | X86_DF | X86_OF));
	st->rip = CODE;
	st->idt.base = 0;
	st->idt.limit = 0;
	if (mode & 1) {
		st->cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_ET | X86_CR0_NE;
		st->cr4 = X86_CR4_PAE;
		st->cr3 = PML4;
		st->efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE | X86_EFER_SCE;
		seg(&st->seg[X86_CS], 0x08, 0xb, 1, 0);
	} else {
		st->cr0 = X86_CR0_PE | X86_CR0_ET;
		seg(&st->seg[X86_CS], 0x08, 0xb, 0, 1);
	}
	for (int i = 0; i < X86_NR_SREGS; i++)
		if (i != X86_CS)
			seg(&st->seg[i], 0x10, 0x3, 0, 1);

	data += 2 + 16 * 8;
	size -= 2 + 16 * 8;
	ncode = size < 4096 ? size : 4096;
	gpa_write(&mem, CODE, data, ncode, NULL);

	c = emu_cpu_new(&mem, &io);
	if (!c)
		abort();
	c->deterministic = true;
	emu_cpu_set_state(c, st);
	c->exc_exit = (mode & 2) != 0;
	emu_cpu_exec(c, 2000, ~0ULL);
	emu_cpu_free(c);
	return 0;
}
