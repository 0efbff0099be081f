/*
 * test_emu_sys.c - the emu's system half seen from a guest: paging, the dirty log,
 * exceptions through the IDT, the x2APIC timer and deterministic replay.
 *
 * Each test builds a small 64-bit machine in 16 MiB of guest RAM (page tables, GDT, IDT,
 * TSS, hand-assembled code) and runs it through the standalone CPU API (emu_cpu_exec).
 * Layout (guest-physical = linear unless a test remaps):
 *   0x1000 PML4, 0x2000 PDPT, 0x3000 PD, 0x4000 PT (4 KiB pages for 0-2 MiB),
 *   0x6000 IDT, 0x7000 GDT, 0x7800 TSS, 0x9000 data, 0x10000 code, 0x11000 handlers,
 *   0x80000 stack top, 0x90000 IST stack top; 2-16 MiB mapped with 2 MiB pages and
 *   linear 1 GiB.. mapped to guest-physical 0 by one 1 GiB page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/accel/emu/cpu.h"
#include "hv/accel/emu/mmu.h"
#include "hv/dirty.h"
#include "hv/mem.h"
#include "hv/vm.h"

#define RAM       (16ULL << 20)
#define PML4      0x1000ULL
#define PDPT      0x2000ULL
#define PD        0x3000ULL
#define PT        0x4000ULL
#define IDT       0x6000ULL
#define GDT       0x7000ULL
#define TSS       0x7800ULL
#define DATA      0x9000ULL
#define CODE      0x10000ULL
#define HANDLER   0x11000ULL
#define STACK     0x80000ULL
#define IST_STACK 0x90000ULL
#define GIB       (1ULL << 30)

#define P  1ULL
#define W  2ULL
#define U  4ULL
#define A  0x20ULL
#define D  0x40ULL
#define PS 0x80ULL
#define NX (1ULL << 63)

struct machine {
	struct guest_mem memstore;
	struct guest_mem *mem; /* &memstore, or a VM's RAM */
	struct io_bus io;
	struct emu_cpu *c;
};

static void *hva(struct machine *m, uint64_t gpa)
{
	void *p = mem_hva(m->mem, gpa, 1);
	assert_non_null(p);
	return p;
}

static uint64_t *pte(struct machine *m, uint64_t gpa)
{
	return hva(m, gpa);
}

static void put(struct machine *m, uint64_t gpa, const void *b, size_t n)
{
	memcpy(hva(m, gpa), b, n);
}

static void set64(struct machine *m, uint64_t gpa, uint64_t v)
{
	memcpy(hva(m, gpa), &v, 8);
}

static uint64_t get64(struct machine *m, uint64_t gpa)
{
	uint64_t v;
	memcpy(&v, hva(m, gpa), 8);
	return v;
}

static void idt_gate(struct machine *m, unsigned vec, uint64_t handler, unsigned type, unsigned ist)
{
	uint64_t g[2];

	g[0] = (handler & 0xffff) | (8ULL << 16) | ((uint64_t)ist << 32) |
	       ((uint64_t)(0x80 | type) << 40) | (((handler >> 16) & 0xffff) << 48);
	g[1] = handler >> 32;
	put(m, IDT + vec * 16, g, 16);
}

static void seg(struct x86_seg *s, uint16_t sel, unsigned type, bool l)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = (uint8_t)type;
	s->s = 1;
	s->present = 1;
	s->l = l;
	s->db = !l;
	s->g = 1;
}

/* Long mode, identity paging, flat segments, IDT/GDT/TSS, RIP at CODE. */
static void long_state(struct machine *m, struct x86_state *s)
{
	static const uint64_t gdt[] = {0, 0x00af9a000000ffffULL, 0x00cf92000000ffffULL,
	                               0x00cf9a000000ffffULL};
	uint64_t tss_desc[2] = {0x67 | ((TSS & 0xffffff) << 16) | (0x89ULL << 40), 0};

	put(m, GDT, gdt, sizeof(gdt));
	put(m, GDT + 0x20, tss_desc, 16);
	set64(m, TSS + 4, STACK);        /* RSP0 */
	set64(m, TSS + 0x24, IST_STACK); /* IST1 */

	*pte(m, PML4) = PDPT | P | W;
	*pte(m, PDPT) = PD | P | W;
	*pte(m, PDPT + 8) = 0 | P | W | PS; /* 1 GiB page: linear 1 GiB -> gpa 0 */
	*pte(m, PD) = PT | P | W;
	for (uint64_t i = 1; i < 8; i++)
		*pte(m, PD + i * 8) = (i << 21) | P | W | PS;
	for (uint64_t i = 1; i < 512; i++)
		*pte(m, PT + i * 8) = (i << 12) | P | W; /* page 0 left unmapped */

	memset(s, 0, sizeof(*s));
	x86_state_reset(s, 0, 1);
	s->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_WP | X86_CR0_PG;
	s->cr4 = X86_CR4_PAE;
	s->cr3 = PML4;
	s->efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE | X86_EFER_SCE;
	seg(&s->seg[X86_CS], 8, 0xb, true);
	for (int i = 0; i < X86_NR_SREGS; i++)
		if (i != X86_CS)
			seg(&s->seg[i], 0x10, 0x3, false);
	s->gdt.base = GDT, s->gdt.limit = 0x2f;
	s->idt.base = IDT, s->idt.limit = 0xfff;
	memset(&s->tr, 0, sizeof(s->tr));
	s->tr.selector = 0x20, s->tr.base = TSS, s->tr.limit = 0x67, s->tr.type = 0xb;
	s->tr.present = 1;
	s->rip = CODE;
	s->gpr[X86_RSP] = STACK;
	s->rflags = X86_RFLAGS_FIXED;
	s->apic_base |= X86_APIC_BASE_EXTD;
}

/* @det: deterministic time (set before the state, which anchors the TSC to icount). */
static struct machine *machine_new_det(bool det)
{
	struct machine *m = calloc(1, sizeof(*m));
	struct x86_state *s = calloc(1, sizeof(*s));

	assert_non_null(m);
	m->mem = &m->memstore;
	mem_init_empty(m->mem);
	assert_int_equal(mem_add_slot(m->mem, 0, RAM, NULL), 0);
	m->c = emu_cpu_new(m->mem, &m->io);
	assert_non_null(m->c);
	m->c->deterministic = det;
	long_state(m, s);
	emu_cpu_set_state(m->c, s);
	m->c->exc_exit = true;
	free(s);
	return m;
}

static struct machine *machine_new(void)
{
	return machine_new_det(false);
}

static void machine_free(struct machine *m)
{
	emu_cpu_free(m->c);
	mem_destroy(m->mem);
	free(m);
}

/* Access guest memory through the MMU as an instruction would; returns the vector or -1. */
static int try_access(struct machine *m, uint64_t lin, unsigned size, bool write, uint64_t *val)
{
	struct emu_cpu *c = m->c;

	if (setjmp(c->fault_jmp))
		return c->exc_vector;
	if (write)
		emu_write_lin(c, lin, size, *val);
	else
		*val = emu_read_lin(c, lin, size);
	return -1;
}

static const uint8_t HLT[] = {0xf4};

/* 4 KiB, 2 MiB and 1 GiB pages all translate, and set accessed (not dirty) on reads. */
static void test_walk_page_sizes(void **state)
{
	struct machine *m = machine_new();
	uint64_t v = 0;

	*pte(m, 0x5008) = 0x1111;
	*pte(m, 0x400010) = 0x2222;
	*pte(m, 0x7000) = 0x3333; /* read through the 1 GiB page below */
	assert_int_equal(try_access(m, 0x5008, 8, false, &v), -1);
	assert_int_equal(v, 0x1111);
	assert_int_equal(try_access(m, 0x400010, 8, false, &v), -1);
	assert_int_equal(v, 0x2222);
	assert_int_equal(try_access(m, GIB + 0x7000, 8, false, &v), -1);
	assert_int_equal(v, 0x3333);

	assert_true(*pte(m, PT + 5 * 8) & A);
	assert_false(*pte(m, PT + 5 * 8) & D);
	assert_true(*pte(m, PD + 2 * 8) & A);
	assert_true(*pte(m, PDPT + 8) & A);
	assert_true(*pte(m, PML4) & A);

	v = 0x4444;
	assert_int_equal(try_access(m, GIB + 0x5010, 8, true, &v), -1);
	assert_int_equal(get64(m, 0x5010), 0x4444);
	assert_true(*pte(m, PDPT + 8) & D);
	machine_free(m);
}

/* #PF error codes and CR2: not present, write to read-only, reserved bit, user access. */
static void test_pf_error_codes(void **state)
{
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint64_t v = 0;

	assert_int_equal(try_access(m, 0x10, 4, false, &v), X86_PF_VEC); /* page 0 unmapped */
	assert_int_equal(c->exc_error, 0);
	assert_int_equal(c->cr2, 0x10);

	*pte(m, PT + 0x20 * 8) &= ~W;
	v = 1;
	assert_int_equal(try_access(m, 0x20000, 8, true, &v), X86_PF_VEC);
	assert_int_equal(c->exc_error, X86_PF_P | X86_PF_W);
	assert_int_equal(c->cr2, 0x20000);
	assert_int_equal(try_access(m, 0x20000, 8, false, &v), -1); /* still readable */

	*pte(m, PT + 0x21 * 8) |= 1ULL << 50; /* above MAXPHYADDR (48) */
	assert_int_equal(try_access(m, 0x21008, 8, false, &v), X86_PF_VEC);
	assert_int_equal(c->exc_error, X86_PF_P | X86_PF_RSVD);
	assert_int_equal(c->cr2, 0x21008);

	assert_int_equal(try_access(m, 0x0000800000000000ULL, 8, false, &v), X86_GP);
	machine_free(m);
}

/* A fetch from an NX page raises #PF with the I bit; WP=0 lets ring 0 write read-only. */
static void test_nx_and_wp(void **state)
{
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	struct x86_state s;
	uint64_t v = 7;

	put(m, 0x30000, HLT, 1);
	*pte(m, PT + 0x30 * 8) |= NX;
	emu_cpu_get_state(c, &s);
	s.rip = 0x30000;
	emu_cpu_set_state(c, &s);
	assert_int_equal(emu_cpu_exec(c, 10, ~0ULL), EMU_EXIT_EXCEPTION);
	assert_int_equal(c->exc_vector, X86_PF_VEC);
	assert_int_equal(c->exc_error, X86_PF_P | X86_PF_I);
	assert_int_equal(c->cr2, 0x30000);
	assert_int_equal(c->rip, 0x30000);

	*pte(m, PT + 0x31 * 8) &= ~W;
	s.cr0 &= ~X86_CR0_WP;
	emu_cpu_set_state(c, &s);
	assert_int_equal(try_access(m, 0x31000, 8, true, &v), -1);
	assert_int_equal(get64(m, 0x31000), 7);
	machine_free(m);
}

/* Pages and page-table pages are logged on the first store of every epoch. */
static void test_dirty_log_epochs(void **state)
{
	/* 0x10000: mov [rbx], rax; jmp 0x10000 */
	static const uint8_t loop[] = {0x48, 0x89, 0x03, 0xeb, 0xfb};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint64_t *bits = calloc(dirty_bitmap_words(m->mem), 8);
	uint64_t pg = 0x40000 >> 12;

	put(m, CODE, loop, sizeof(loop));
	c->r[X86_RBX] = 0x40000;
	c->r[X86_RAX] = 0xabcd;
	dirty_start(m->mem);

	assert_int_equal(emu_cpu_exec(c, 20, ~0ULL), EMU_EXIT_ICOUNT);
	assert_int_equal(get64(m, 0x40000), 0xabcd);
	dirty_harvest(m->mem, bits);
	assert_true(bits[pg / 64] & (1ULL << (pg % 64)));
	assert_true(bits[0] & (1ULL << (PT >> 12))); /* the PTE got its dirty bit */
	assert_true(*pte(m, PT + pg * 8) & D);

	memset(bits, 0, dirty_bitmap_words(m->mem) * 8);
	c->r[X86_RAX] = 0x1234;
	assert_int_equal(emu_cpu_exec(c, 20, ~0ULL), EMU_EXIT_ICOUNT);
	dirty_harvest(m->mem, bits);
	assert_true(bits[pg / 64] & (1ULL << (pg % 64))); /* marked again after the harvest */
	assert_false(bits[0] & (1ULL << (PT >> 12)));     /* D already set: no PTE write */

	memset(bits, 0, dirty_bitmap_words(m->mem) * 8);
	dirty_harvest(m->mem, bits);
	assert_false(bits[pg / 64] & (1ULL << (pg % 64))); /* nothing stored since */
	free(bits);
	machine_free(m);
}

/* A store that crosses into an unmapped page faults before writing anything. */
static void test_page_crossing_write(void **state)
{
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint64_t v = 0x1122334455667788ULL;

	*pte(m, PT + 0x51 * 8) = 0;
	*pte(m, 0x50ff8) = 0;
	assert_int_equal(try_access(m, 0x50ffc, 8, true, &v), X86_PF_VEC);
	assert_int_equal(c->cr2, 0x51000);
	assert_int_equal(c->exc_error, X86_PF_W);
	assert_int_equal(get64(m, 0x50ff8), 0);

	assert_int_equal(try_access(m, 0x52ffc, 8, true, &v), -1);
	assert_int_equal(get64(m, 0x52ffc), v);
	v = 0;
	assert_int_equal(try_access(m, 0x52ffd, 8, false, &v), -1);
	assert_int_equal(v, 0x1122334455667788ULL >> 8);
	machine_free(m);
}

/* int3 and a #PF go through the 64-bit IDT with the right frame, error code and CR2. */
static void test_idt_delivery(void **state)
{
	/* int3; mov rax, [0] (page 0 unmapped) */
	static const uint8_t code[] = {0xcc, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint64_t sp;

	c->exc_exit = false;
	put(m, CODE, code, sizeof(code));
	put(m, HANDLER, HLT, 1);
	put(m, HANDLER + 0x100, HLT, 1);
	idt_gate(m, 3, HANDLER, 0xf, 0);          /* trap gate */
	idt_gate(m, 14, HANDLER + 0x100, 0xe, 1); /* interrupt gate on IST1 */

	assert_int_equal(emu_cpu_exec(c, 100, ~0ULL), EMU_EXIT_HLT);
	assert_int_equal(c->rip, HANDLER + 1);
	sp = c->r[X86_RSP];
	assert_int_equal(sp, STACK - 40);
	assert_int_equal(get64(m, sp), CODE + 1);   /* RIP after int3 */
	assert_int_equal(get64(m, sp + 8), 8);      /* CS */
	assert_int_equal(get64(m, sp + 24), STACK); /* RSP */
	assert_int_equal(get64(m, sp + 32), 0x10);  /* SS */

	/* Resume after the int3 "handler": straight to the faulting load. */
	c->halted = 0;
	c->rip = CODE + 1;
	c->r[X86_RSP] = STACK;
	assert_int_equal(emu_cpu_exec(c, 100, ~0ULL), EMU_EXIT_HLT);
	assert_int_equal(c->rip, HANDLER + 0x101);
	sp = c->r[X86_RSP];
	assert_int_equal(sp, IST_STACK - 48);
	assert_int_equal(get64(m, sp), 0);            /* error code: not present, read, ring 0 */
	assert_int_equal(get64(m, sp + 8), CODE + 1); /* faulting RIP */
	assert_int_equal(c->cr2, 0);
	machine_free(m);
}

/* Only #DF is present: #UD -> #NP (gate missing) -> #NP again -> #DF. Nothing: triple. */
static void test_double_and_triple_fault(void **state)
{
	static const uint8_t ud2[] = {0x0f, 0x0b};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;

	c->exc_exit = false;
	put(m, CODE, ud2, sizeof(ud2));
	put(m, HANDLER, HLT, 1);
	idt_gate(m, 8, HANDLER, 0xe, 1);
	assert_int_equal(emu_cpu_exec(c, 100, ~0ULL), EMU_EXIT_HLT);
	assert_int_equal(c->rip, HANDLER + 1);
	assert_int_equal(get64(m, c->r[X86_RSP]), 0);        /* #DF error code */
	assert_int_equal(get64(m, c->r[X86_RSP] + 8), CODE); /* the ud2 */

	memset(hva(m, IDT), 0, 16 * 16);
	c->halted = 0;
	c->rip = CODE;
	assert_int_equal(emu_cpu_exec(c, 100, ~0ULL), EMU_EXIT_SHUTDOWN);
	machine_free(m);
}

/*
 * Timer guest: x2APIC enabled by state. Main: program SVR, LVT timer (vector 0x40,
 * periodic if @periodic), DCR /1, initial count @count; sti; then hlt or spin. Handler
 * counts ticks at DATA, writes EOI, iretq.
 */
static void timer_guest(struct machine *m, uint32_t count, bool periodic, bool use_hlt)
{
	uint8_t code[128], *p = code;
	uint32_t lvt = 0x40 | (periodic ? 1U << 17 : 0);
#define WRMSR(msr, val)                                                                            \
	do {                                                                                       \
		uint32_t m_ = (msr), v_ = (val);                                                   \
		*p++ = 0xb9, memcpy(p, &m_, 4), p += 4; /* mov ecx, msr */                         \
		*p++ = 0xb8, memcpy(p, &v_, 4), p += 4; /* mov eax, val */                         \
		*p++ = 0x31, *p++ = 0xd2;               /* xor edx, edx */                         \
		*p++ = 0x0f, *p++ = 0x30;               /* wrmsr */                                \
	} while (0)
	WRMSR(0x80f, 0x1ff);
	WRMSR(0x83e, 0xb);
	WRMSR(0x832, lvt);
	WRMSR(0x838, count);
	*p++ = 0xfb; /* sti */
	if (use_hlt)
		*p++ = 0xf4, *p++ = 0xeb, *p++ = 0xfd; /* hlt; jmp hlt */
	else
		*p++ = 0x48, *p++ = 0xff, *p++ = 0xc3, *p++ = 0xeb, *p++ = 0xfb; /* inc rbx; jmp */
	put(m, CODE, code, (size_t)(p - code));

	p = code;
	*p++ = 0x48, *p++ = 0xff, *p++ = 0x04, *p++ = 0x25; /* inc qword [DATA] */
	uint32_t a = DATA;
	memcpy(p, &a, 4), p += 4;
	WRMSR(0x80b, 0);          /* EOI */
	*p++ = 0x48, *p++ = 0xcf; /* iretq */
	put(m, HANDLER, code, (size_t)(p - code));
	idt_gate(m, 0x40, HANDLER, 0xe, 0);
#undef WRMSR
}

static void test_timer_oneshot(void **state)
{
	struct machine *m = machine_new_det(true);
	struct emu_cpu *c = m->c;

	c->exc_exit = false;
	timer_guest(m, 5000, false, false);
	assert_int_equal(emu_cpu_exec(c, 4000, ~0ULL), EMU_EXIT_ICOUNT);
	assert_int_equal(get64(m, DATA), 0);
	assert_int_equal(emu_cpu_exec(c, 20000, ~0ULL), EMU_EXIT_ICOUNT);
	assert_int_equal(get64(m, DATA), 1); /* one-shot: exactly once */
	assert_int_equal(emu_rdmsr(c, 0x839), 0);
	machine_free(m);
}

static void test_timer_periodic_and_hlt(void **state)
{
	struct machine *m = machine_new_det(true);
	struct emu_cpu *c = m->c;

	c->exc_exit = false;
	timer_guest(m, 1000, true, false);
	assert_int_equal(emu_cpu_exec(c, 10000 + 17, ~0ULL), EMU_EXIT_ICOUNT);
	assert_in_range(get64(m, DATA), 9, 10);
	machine_free(m);

	/* Halted, time jumps to each deadline: few instructions, many ticks. */
	m = machine_new_det(true);
	c = m->c;
	c->exc_exit = false;
	timer_guest(m, 100000, true, true);
	assert_int_equal(emu_cpu_exec(c, 300, ~0ULL), EMU_EXIT_ICOUNT);
	assert_in_range(get64(m, DATA), 20, 40);
	machine_free(m);
}

static void assert_same_state(struct machine *a, struct machine *b)
{
	struct x86_state *sa = calloc(1, sizeof(*sa)), *sb = calloc(1, sizeof(*sb));

	emu_cpu_get_state(a->c, sa);
	emu_cpu_get_state(b->c, sb);
	assert_int_equal(sa->icount, sb->icount);
	assert_int_equal(sa->rip, sb->rip);
	assert_memory_equal(sa->gpr, sb->gpr, sizeof(sa->gpr));
	assert_int_equal(sa->rflags, sb->rflags);
	assert_int_equal(sa->tsc, sb->tsc);
	assert_memory_equal(&sa->lapic, &sb->lapic, sizeof(sa->lapic));
	assert_memory_equal(sa, sb, sizeof(*sa));
	assert_memory_equal(hva(a, 0), hva(b, 0), RAM);
	free(sa);
	free(sb);
}

/*
 * Same start, same instruction count: same registers and memory. And saving at any
 * instruction k, restoring into a fresh CPU (memory copied) and running the rest gives
 * exactly the straight run, for a spinning and a halting timer guest, with split points
 * on, just before and just after timer deadlines and inside halts.
 */
static void test_determinism_and_restore(void **state)
{
	static const uint64_t splits[] = {1,   5,   21,  22,   23,   700,  777, 798,
	                                  799, 800, 801, 1555, 2000, 2345, 2999};
	const uint64_t total = 3000;
	struct x86_state *s = calloc(1, sizeof(*s));

	for (int hlt = 0; hlt < 2; hlt++) {
		struct machine *a = machine_new_det(true), *b = machine_new_det(true);

		a->c->exc_exit = b->c->exc_exit = false;
		timer_guest(a, 777, true, hlt);
		timer_guest(b, 777, true, hlt);
		assert_int_equal(emu_cpu_exec(a->c, total, ~0ULL), EMU_EXIT_ICOUNT);
		assert_int_equal(emu_cpu_exec(b->c, total, ~0ULL), EMU_EXIT_ICOUNT);
		assert_same_state(a, b);
		assert_true(get64(a, DATA) >= 3);
		machine_free(b);

		for (unsigned i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
			struct machine *x = machine_new_det(true), *r = machine_new_det(true);

			x->c->exc_exit = r->c->exc_exit = false;
			timer_guest(x, 777, true, hlt);
			assert_int_equal(emu_cpu_exec(x->c, splits[i], ~0ULL), EMU_EXIT_ICOUNT);
			emu_cpu_get_state(x->c, s);
			memcpy(hva(r, 0), hva(x, 0), RAM);
			emu_cpu_set_state(r->c, s);
			assert_int_equal(emu_cpu_exec(r->c, total - splits[i], ~0ULL),
			                 EMU_EXIT_ICOUNT);
			assert_same_state(a, r);
			machine_free(x);
			machine_free(r);
		}
		machine_free(a);
	}
	free(s);
}

/* CPUID: stable, x2APIC and hypervisor bits, 1 GHz TSC in 0x40000010. */
static void test_cpuid_msr(void **state)
{
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint64_t v = 0;

	c->r[X86_RAX] = 1;
	emu_cpuid(c);
	assert_true(c->r[X86_RCX] & (1U << 21));
	assert_true(c->r[X86_RCX] & (1U << 31));
	c->r[X86_RAX] = 0x40000010;
	emu_cpuid(c);
	assert_int_equal(c->r[X86_RAX], 1000000);
	c->r[X86_RAX] = 0x80000001;
	emu_cpuid(c);
	assert_true(c->r[X86_RDX] & (1U << 29));

	if (setjmp(c->fault_jmp) == 0) {
		emu_wrmsr(c, MSR_LSTAR, 0xffffffff81000000ULL);
		assert_int_equal(emu_rdmsr(c, MSR_LSTAR), 0xffffffff81000000ULL);
		emu_wrmsr(c, MSR_IA32_TSC, 1000);
		v = emu_rdmsr(c, MSR_IA32_TSC);
		assert_in_range(v, 1000, 1000 + 100000000ULL);
		emu_rdmsr(c, 0x12345678); /* unknown: #GP */
		fail();
	}
	assert_int_equal(c->exc_vector, X86_GP);
	machine_free(m);
}

/* PVH entry mode: paging off, linear = physical wrapping at 4 GiB, segment limits apply. */
static void test_flat32_legacy(void **state)
{
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	struct x86_state *s = calloc(1, sizeof(*s));
	uint64_t v = 0;

	x86_state_reset(s, 0, 1);
	x86_state_flat32(s);
	emu_cpu_set_state(c, s);
	assert_int_equal(c->mode, EMU_MODE_PROT32);
	*(uint16_t *)hva(m, 0) = 0xbeef;
	/* 0xfffffffe..0xffffffff is unclaimed MMIO (reads all ones), then it wraps to 0 */
	assert_int_equal(try_access(m, 0xfffffffeULL, 4, false, &v), -1);
	assert_int_equal(v, 0xbeefffffULL);

	s->seg[X86_DS].limit = 0xfff;
	s->seg[X86_SS].limit = 0xfff;
	emu_cpu_set_state(c, s);
	if (setjmp(c->fault_jmp) == 0) {
		assert_int_equal(emu_read(c, X86_DS, 0xffc, 4), 0);
		emu_read(c, X86_DS, 0xffe, 4);
		fail();
	}
	assert_int_equal(c->exc_vector, X86_GP);
	if (setjmp(c->fault_jmp) == 0) {
		emu_write(c, X86_SS, 0x1000, 1, 0);
		fail();
	}
	assert_int_equal(c->exc_vector, X86_SS_VEC);
	free(s);
	machine_free(m);
}

/* x2APIC: self-IPI lands in IRR; registers are MSRs only in x2APIC mode. */
static void test_x2apic_regs(void **state)
{
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;

	if (setjmp(c->fault_jmp) == 0) {
		emu_wrmsr(c, 0x80f, 0x1ff);
		emu_wrmsr(c, 0x83f, 0x50);
		assert_int_equal(emu_rdmsr(c, 0x822), 1U << 16); /* IRR bit 0x50 */
		emu_wrmsr(c, 0x808, 0x70);
		assert_int_equal(emu_rdmsr(c, 0x80a), 0x70); /* PPR follows TPR */
		assert_int_equal(emu_rdmsr(c, 0x803) & 0xff, 0x14);
		emu_wrmsr(c, MSR_IA32_APIC_BASE, X86_APIC_DEFAULT_BASE | X86_APIC_BASE_ENABLE);
		fail(); /* x2APIC -> xAPIC directly is invalid */
	}
	assert_int_equal(c->exc_vector, X86_GP);
	if (setjmp(c->fault_jmp) == 0) {
		emu_wrmsr(c, MSR_IA32_APIC_BASE, X86_APIC_DEFAULT_BASE);
		emu_rdmsr(c, 0x802); /* APIC disabled: no x2APIC MSRs */
		fail();
	}
	assert_int_equal(c->exc_vector, X86_GP);
	machine_free(m);
}

/* ---- the accel_ops path: a whole VM ---- */

static struct vm *vm_with_code(struct machine *mm, const uint8_t *code, size_t n, bool det)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct vm_config cfg = {
	    .name = "emu-test", .ram_size = RAM, .nvcpus = 1, .deterministic = det};
	struct x86_state *s = calloc(1, sizeof(*s));
	struct hv_error err;

	if (vm_create(vm, &cfg, &accel_emu, -1, -1, &err) < 0)
		fail_msg("vm_create: %s", err.msg);
	mm->mem = &vm->mem;
	long_state(mm, s);
	put(mm, CODE, code, n);
	assert_int_equal(vm_set_state(vm, 0, s, &err), 0);
	free(s);
	return vm;
}

/*
 * Pre-copy's invariant with the vCPU running flat out: a snapshot taken after
 * dirty_start() plus every page each harvest names, copied after that harvest, equals
 * the final memory. A store that skipped the log through a stale TLB epoch would break it.
 */
static void test_vm_dirty_log_concurrent(void **state)
{
	/* top: mov rbx, 0x200000; loop: inc qword [rbx]; add rbx, 0x1000;
	 * cmp rbx, 0x600000; jb loop; jmp top */
	static const uint8_t code[] = {0x48, 0xc7, 0xc3, 0x00, 0x00, 0x20, 0x00, 0x48, 0xff, 0x03,
	                               0x48, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x48, 0x81, 0xfb,
	                               0x00, 0x00, 0x60, 0x00, 0x72, 0xed, 0xeb, 0xe4};
	struct machine mm = {0};
	struct vm *vm = vm_with_code(&mm, code, sizeof(code), false);
	uint64_t words = dirty_bitmap_words(&vm->mem), *bits = calloc(words, 8);
	uint8_t *snap = malloc(RAM);
	struct hv_error err;

	dirty_start(&vm->mem);
	memcpy(snap, hva(&mm, 0), RAM);
	assert_int_equal(vm_start(vm, &err), 0);
	for (int round = 0; round < 60; round++) {
		memset(bits, 0, words * 8);
		dirty_harvest(&vm->mem, bits);
		for (uint64_t pg = 0; pg < RAM >> 12; pg++)
			if (bits[pg / 64] & (1ULL << (pg % 64)))
				memcpy(snap + pg * 4096, hva(&mm, pg * 4096), 4096);
		usleep(1000);
	}
	assert_int_equal(vm_pause(vm, &err), 0);
	memset(bits, 0, words * 8);
	dirty_harvest(&vm->mem, bits);
	for (uint64_t pg = 0; pg < RAM >> 12; pg++)
		if (bits[pg / 64] & (1ULL << (pg % 64)))
			memcpy(snap + pg * 4096, hva(&mm, pg * 4096), 4096);
	assert_true(get64(&mm, 0x200000) > 2); /* the guest did run */
	assert_memory_equal(snap, hva(&mm, 0), RAM);

	vm_shutdown(vm, VM_EXIT_REQUESTED, 3, "test over");
	assert_int_equal(vm_wait(vm), 3);
	vm_destroy(vm);
	free(vm);
	free(bits);
	free(snap);
}

/* The guest's ways to end: debug-exit byte, triple fault (with the bytes), hlt with IF=0. */
static void test_vm_exits(void **state)
{
	static const uint8_t out[] = {0xb0, 0x07, 0xe6, 0xf4, 0xeb, 0xfe}; /* out 0xf4, 7 */
	static const uint8_t ud2[] = {0x0f, 0x0b};
	static const uint8_t cli_hlt[] = {0xfa, 0xf4};
	struct machine mm = {0};
	struct hv_error err;
	struct vm *vm;

	vm = vm_with_code(&mm, out, sizeof(out), false);
	assert_int_equal(vm_start(vm, &err), 0);
	assert_int_equal(vm_wait(vm), 7);
	vm_destroy(vm);
	free(vm);

	vm = vm_with_code(&mm, ud2, sizeof(ud2), false); /* empty IDT: #UD, #NP, #DF, gone */
	assert_int_equal(vm_start(vm, &err), 0);
	assert_int_equal(vm_wait(vm), VM_STATUS_CRASH);
	assert_int_equal(vm->exit_kind, VM_EXIT_TRIPLE_FAULT);
	if (!strstr(vm->exit_reason, "triple fault at RIP 0x10000 (bytes: 0f 0b"))
		fail_msg("exit reason: %s", vm->exit_reason);
	vm_destroy(vm);
	free(vm);

	vm = vm_with_code(&mm, cli_hlt, sizeof(cli_hlt), false);
	assert_int_equal(vm_start(vm, &err), 0);
	assert_int_equal(vm_wait(vm), VM_STATUS_CRASH);
	assert_int_equal(vm->exit_kind, VM_EXIT_HALTED);
	vm_destroy(vm);
	free(vm);
}

/* Deterministic VMs stop exactly where asked, and two of them agree there. */
static void test_vm_run_until(void **state)
{
	struct machine ma = {0}, mb = {0};
	struct x86_state *sa = calloc(1, sizeof(*sa)), *sb = calloc(1, sizeof(*sb));
	struct vm *a, *b;
	struct hv_error err;

	a = vm_with_code(&ma, (const uint8_t *)"\x90", 1, true);
	b = vm_with_code(&mb, (const uint8_t *)"\x90", 1, true);
	timer_guest(&ma, 500, true, true);
	timer_guest(&mb, 500, true, true);
	assert_int_equal(vm_run_until(a, 5000, &err), 0);
	assert_int_equal(vm_run_until(b, 1234, &err), 0);
	assert_int_equal(vm_run_until(b, 5000, &err), 0);
	assert_int_equal(vm_get_state(a, 0, sa, &err), 0);
	assert_int_equal(vm_get_state(b, 0, sb, &err), 0);
	assert_int_equal(sa->icount, 5000);
	assert_memory_equal(sa, sb, sizeof(*sa));
	assert_memory_equal(hva(&ma, 0), hva(&mb, 0), RAM);
	assert_true(get64(&ma, DATA) > 10);
	for (int i = 0; i < 2; i++) {
		struct vm *v = i ? b : a;
		vm_shutdown(v, VM_EXIT_REQUESTED, 0, "test over");
		vm_wait(v);
		vm_destroy(v);
		free(v);
	}
	free(sa);
	free(sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_walk_page_sizes),
	    cmocka_unit_test(test_pf_error_codes),
	    cmocka_unit_test(test_nx_and_wp),
	    cmocka_unit_test(test_dirty_log_epochs),
	    cmocka_unit_test(test_page_crossing_write),
	    cmocka_unit_test(test_idt_delivery),
	    cmocka_unit_test(test_double_and_triple_fault),
	    cmocka_unit_test(test_timer_oneshot),
	    cmocka_unit_test(test_timer_periodic_and_hlt),
	    cmocka_unit_test(test_determinism_and_restore),
	    cmocka_unit_test(test_cpuid_msr),
	    cmocka_unit_test(test_flat32_legacy),
	    cmocka_unit_test(test_x2apic_regs),
	    cmocka_unit_test(test_vm_dirty_log_concurrent),
	    cmocka_unit_test(test_vm_exits),
	    cmocka_unit_test(test_vm_run_until),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
