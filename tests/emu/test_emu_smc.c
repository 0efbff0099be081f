/*
 * test_emu_smc.c - self-modifying code: the emu runs the bytes that are in memory now.
 *
 * emu_step() keeps decoded instructions in a cache keyed by RIP and mode, and trusts an
 * entry only while the bytes at the code pointer equal the bytes it was decoded from;
 * nothing ever invalidates it. These tests change code under a warm cache every way a
 * guest or the host can: the guest patching the next instruction's immediate, the guest
 * copying in instructions of other lengths over a hot one, writes through an alias
 * mapping, the host rewriting RAM between two emu_cpu_exec() calls (down to the last byte
 * of a 15-byte instruction, and on the slow paths near and across a page end), the same
 * bytes run in 64-bit and in compatibility mode, and a code page remapped under its
 * linear address. Each asserts the new behaviour on every execution.
 *
 * The machine (64-bit, like test_emu_sys.c, in 16 MiB): 0x1000 PML4, 0x2000 PDPT,
 * 0x3000 PD, 0x4000 PT (4 KiB pages for 0-2 MiB, identity), 2-16 MiB identity in 2 MiB
 * pages, linear 1 GiB.. aliasing guest-physical 0 through one 1 GiB page; GDT at 0x7000
 * with 0x08 64-bit code, 0x10 data, 0x18 32-bit code. Code at 0x10000, data at 0x9000,
 * stack top 0x80000. Exceptions return from emu_cpu_exec (exc_exit) and fail the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hv/accel/emu/cpu.h"
#include "hv/mem.h"

#define RAM   (16ULL << 20)
#define PML4  0x1000ULL
#define PDPT  0x2000ULL
#define PD    0x3000ULL
#define PT    0x4000ULL
#define GDT   0x7000ULL
#define DATA  0x9000ULL
#define CODE  0x10000ULL
#define STACK 0x80000ULL
#define GIB   (1ULL << 30)

#define P  1ULL
#define W  2ULL
#define PS 0x80ULL

struct machine {
	struct guest_mem mem;
	struct io_bus io;
	struct emu_cpu *c;
};

static void *hva(struct machine *m, uint64_t gpa)
{
	void *p = mem_hva(&m->mem, gpa, 1);
	assert_non_null(p);
	return p;
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

static struct machine *machine_new(void)
{
	static const uint64_t gdt[] = {0, 0x00af9a000000ffffULL, 0x00cf92000000ffffULL,
	                               0x00cf9a000000ffffULL};
	struct machine *m = calloc(1, sizeof(*m));
	struct x86_state *s = calloc(1, sizeof(*s));

	assert_non_null(m);
	assert_non_null(s);
	mem_init_empty(&m->mem);
	assert_int_equal(mem_add_slot(&m->mem, 0, RAM, NULL), 0);
	m->c = emu_cpu_new(&m->mem, &m->io);
	assert_non_null(m->c);

	put(m, GDT, gdt, sizeof(gdt));
	set64(m, PML4, PDPT | P | W);
	set64(m, PDPT, PD | P | W);
	set64(m, PDPT + 8, 0 | P | W | PS); /* 1 GiB page: linear 1 GiB -> gpa 0 */
	set64(m, PD, PT | P | W);
	for (uint64_t i = 1; i < 8; i++)
		set64(m, PD + i * 8, (i << 21) | P | W | PS);
	for (uint64_t i = 1; i < 512; i++)
		set64(m, PT + i * 8, (i << 12) | P | W);

	x86_state_reset(s, 0, 1);
	s->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_WP | X86_CR0_PG;
	s->cr4 = X86_CR4_PAE;
	s->cr3 = PML4;
	s->efer = X86_EFER_LME | X86_EFER_LMA;
	seg(&s->seg[X86_CS], 8, 0xb, true);
	for (int i = 0; i < X86_NR_SREGS; i++)
		if (i != X86_CS)
			seg(&s->seg[i], 0x10, 0x3, false);
	s->gdt.base = GDT, s->gdt.limit = 0x1f;
	s->tr.selector = 0, s->tr.limit = 0x67, s->tr.type = 0xb, s->tr.present = 1;
	s->rip = CODE;
	s->gpr[X86_RSP] = STACK;
	s->rflags = X86_RFLAGS_FIXED;
	emu_cpu_set_state(m->c, s);
	m->c->exc_exit = true;
	free(s);
	return m;
}

static void machine_free(struct machine *m)
{
	emu_cpu_free(m->c);
	mem_destroy(&m->mem);
	free(m);
}

/* Run from @rip until hlt; any other exit (an exception, say) fails the test. */
static void run_to_hlt(struct machine *m, uint64_t rip)
{
	m->c->halted = 0;
	m->c->rip = rip;
	assert_int_equal(emu_cpu_exec(m->c, 100000, ~0ULL), EMU_EXIT_HLT);
}

/* Each pass patches the immediate of the very next instruction: it sees the new value. */
static void test_guest_patches_next_instruction(void **state)
{
	static const uint8_t code[] = {
	    0x88, 0x0d, 0x01, 0x00, 0x00, 0x00, /* L: mov [rip+1], cl (U's imm8) */
	    0xb8, 0x00, 0x00, 0x00, 0x00,       /* U: mov eax, imm32 */
	    0x01, 0xc7,                         /* add edi, eax */
	    0xff, 0xc9,                         /* dec ecx */
	    0x75, 0xef,                         /* jnz L */
	    0xf4,                               /* hlt */
	};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;

	put(m, CODE, code, sizeof(code));
	for (int round = 0; round < 3; round++) { /* later rounds start with a warm cache */
		c->r[X86_RCX] = 200;
		c->r[X86_RDI] = 0;
		run_to_hlt(m, CODE);
		assert_int_equal(c->r[X86_RDI], 200 * 201 / 2);
		assert_int_equal(c->r[X86_RAX], 1);
	}
	machine_free(m);
}

/* A hot instruction rewritten through another linear alias of its page: every pass sees
 * the value the previous pass stored. */
static void test_guest_patches_through_alias(void **state)
{
	static const uint8_t code[] = {
	    0xb8, 0x01, 0x00, 0x00, 0x00,             /* T: mov eax, 1 */
	    0x89, 0x04, 0x8b,                         /* mov [rbx+rcx*4], eax */
	    0xff, 0xc1,                               /* inc ecx */
	    0x8d, 0x51, 0x01,                         /* lea edx, [rcx+1] */
	    0x89, 0x14, 0x25, 0x01, 0x00, 0x01, 0x40, /* mov [GIB+T+1], edx */
	    0x83, 0xf9, 0x10,                         /* cmp ecx, 16 */
	    0x75, 0xe7,                               /* jne T */
	    0xf4,                                     /* hlt */
	};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint32_t out[16];

	put(m, CODE, code, sizeof(code));
	c->r[X86_RBX] = DATA;
	c->r[X86_RCX] = 0;
	run_to_hlt(m, CODE);
	memcpy(out, hva(m, DATA), sizeof(out));
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(out[i], i + 1);
	machine_free(m);
}

/*
 * The guest copies (rep movsb) one 10-byte variant after another over the same hot
 * address and runs it: same length with a new immediate, longer, shorter, a jump over
 * junk, an instruction that now starts in what used to be another's immediate.
 */
static void test_guest_rewrites_other_lengths(void **state)
{
	/* T = CODE + 19 = 0x10013 */
	static const uint8_t code[] = {
	    0x48, 0xc7, 0xc7, 0x13, 0x00, 0x01, 0x00, /* L: mov rdi, T */
	    0xb9, 0x0a, 0x00, 0x00, 0x00,             /* mov ecx, 10 */
	    0xf3, 0xa4,                               /* rep movsb */
	    0xb8, 0x77, 0x00, 0x00, 0x00,             /* mov eax, 0x77 */
	    0x90, 0x90, 0x90, 0x90, 0x90,             /* T: 10 bytes, */
	    0x90, 0x90, 0x90, 0x90, 0x90,             /* overwritten each pass */
	    0x4a, 0x89, 0x04, 0xc3,                   /* mov [rbx+r8*8], rax */
	    0x49, 0xff, 0xc0,                         /* inc r8 */
	    0x49, 0x83, 0xf8, 0x20,                   /* cmp r8, 32 */
	    0x75, 0xd6,                               /* jne L */
	    0xf4,                                     /* hlt */
	};
	static const uint8_t variants[8][10] = {
	    {0xb8, 0x01, 0x00, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90, 0x90}, /* mov eax, 1 */
	    {0xb8, 0x02, 0x00, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90, 0x90}, /* mov eax, 2 */
	    {0x48, 0xb8, 0x03, 0, 0, 0, 0, 0, 0, 0x80},                   /* mov rax, imm64 */
	    {0x31, 0xc0, 0x04, 0x04, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90}, /* xor; add al, 4 */
	    {0x6a, 0x05, 0x58, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90}, /* push 5; pop rax */
	    {0x48, 0xc7, 0xc0, 0xfa, 0xff, 0xff, 0xff, 0x90, 0x90, 0x90}, /* mov rax, -6 */
	    {0xeb, 0x08, 0x0f, 0x0b, 0x0f, 0x0b, 0x0f, 0x0b, 0x0f, 0x0b}, /* jmp over ud2s */
	    {0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xb0, 0x08}, /* nops; mov al, 8 */
	};
	static const uint64_t want[8] = {1, 2, 0x8000000000000003ULL, 4, 5, -6ULL, 0x77, 8};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;
	uint8_t table[32][10];

	/* 32 runs: the variants in order, then shuffled, never one twice in a row */
	for (unsigned i = 0; i < 32; i++)
		memcpy(table[i], variants[i < 8 ? i : (i * 5 + i / 8) % 8], 10);
	put(m, CODE, code, sizeof(code));
	put(m, 0x20000, table, sizeof(table));
	c->r[X86_RSI] = 0x20000;
	c->r[X86_RBX] = DATA;
	c->r[X86_R8] = 0;
	run_to_hlt(m, CODE);
	for (unsigned i = 0; i < 32; i++) {
		unsigned v = i < 8 ? i : (i * 5 + i / 8) % 8;
		assert_int_equal(get64(m, DATA + i * 8), want[v]);
	}
	machine_free(m);
}

/* Put @len bytes at @gpa, run them up to @stop twice (cold, then warm), return RAX. */
static uint64_t host_run(struct machine *m, uint64_t gpa, const void *b, size_t len, uint64_t stop)
{
	uint64_t rax = 0;

	put(m, gpa, b, len);
	for (int i = 0; i < 2; i++) {
		m->c->rip = gpa;
		m->c->r[X86_RAX] = 0;
		assert_int_equal(emu_cpu_exec(m->c, 100, stop), EMU_EXIT_STOP_RIP);
		if (i)
			assert_int_equal(m->c->r[X86_RAX], rax);
		rax = m->c->r[X86_RAX];
	}
	return rax;
}

/*
 * The host rewrites guest RAM between two emu_cpu_exec() calls, with no call telling the
 * emu: a new immediate, a 15-byte instruction that differs only in its last byte, a shorter
 * one; on the cached fast path, in the last 31 bytes of a page, and across a page end.
 */
static void test_host_rewrites_between_runs(void **state)
{
	static const uint8_t mov1[16] = {0xb8, 0x01, 0,    0,    0,    0x90, 0x90, 0x90,
	                                 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90};
	/* ds ds ds ds ds mov rax, imm64: 15 bytes, then a nop */
	uint8_t long15[16] = {0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x48, 0xb8, 0x11,
	                      0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x90};
	static const uint64_t where[] = {0x13000, 0x13fe8, 0x13ffa}; /* fast, page end, crossing */
	struct machine *m = machine_new();
	uint8_t b[16];

	for (unsigned w = 0; w < 3; w++) {
		uint64_t at = where[w], stop = at + 16;

		memcpy(b, mov1, 16);
		assert_int_equal(host_run(m, at, b, 16, stop), 1);
		b[1] = 2;
		assert_int_equal(host_run(m, at, b, 16, stop), 2);
		long15[14] = 0x88;
		assert_int_equal(host_run(m, at, long15, 16, stop), 0x8877665544332211ULL);
		long15[14] = 0x99; /* only the last byte of the 15 */
		assert_int_equal(host_run(m, at, long15, 16, stop), 0x9977665544332211ULL);
		long15[7] = 0x12; /* only the first byte of the immediate */
		assert_int_equal(host_run(m, at, long15, 16, stop), 0x9977665544332212ULL);
		long15[7] = 0x11;
		b[1] = 3; /* shorter again, over the long one's bytes */
		assert_int_equal(host_run(m, at, b, 16, stop), 3);
	}
	machine_free(m);
}

/*
 * The same bytes at the same RIP mean different instructions in 64-bit and in
 * compatibility mode; far jumps switch back and forth and each call decodes them anew.
 * SHARED: 48 05 00 01 00 00 = add rax, 0x100 (64-bit) or dec eax; add eax, 0x100 (32).
 */
static void test_same_bytes_64_and_compat(void **state)
{
	static const uint8_t code64[] = {
	    0x31, 0xc0,                               /* xor eax, eax */
	    0xe8, 0x79, 0x00, 0x00, 0x00,             /* call SHARED (CODE+0x80) */
	    0x49, 0x89, 0xc1,                         /* mov r9, rax */
	    0xff, 0x2c, 0x25, 0x00, 0x90, 0x00, 0x00, /* jmp far [DATA]: 0x18:CODE+0x20 */
	};
	static const uint8_t code32[] = {
	    0x31, 0xc0,                               /* CODE+0x20: xor eax, eax */
	    0xe8, 0x59, 0x00, 0x00, 0x00,             /* call SHARED */
	    0x89, 0xc2,                               /* mov edx, eax */
	    0xea, 0x40, 0x00, 0x01, 0x00, 0x08, 0x00, /* jmp far 0x08:CODE+0x40 */
	};
	static const uint8_t back64[] = {
	    0x31, 0xc0,                   /* CODE+0x40: xor eax, eax */
	    0xe8, 0x39, 0x00, 0x00, 0x00, /* call SHARED */
	    0xf4,                         /* hlt */
	};
	static const uint8_t shared[] = {0x48, 0x05, 0x00, 0x01, 0x00, 0x00, 0xc3};
	static const uint8_t farptr[] = {0x20, 0x00, 0x01, 0x00, 0x18, 0x00};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;

	put(m, CODE, code64, sizeof(code64));
	put(m, CODE + 0x20, code32, sizeof(code32));
	put(m, CODE + 0x40, back64, sizeof(back64));
	put(m, CODE + 0x80, shared, sizeof(shared));
	put(m, DATA, farptr, sizeof(farptr));
	for (int round = 0; round < 3; round++) {
		c->r[X86_R9] = c->r[X86_RDX] = 0;
		run_to_hlt(m, CODE);
		assert_int_equal(c->mode, EMU_MODE_LONG64);
		assert_int_equal(c->r[X86_R9], 0x100);
		assert_int_equal((uint32_t)c->r[X86_RDX], 0xff);
		assert_int_equal(c->r[X86_RAX], 0x100);
		assert_int_equal(c->r[X86_RSP], STACK);
	}
	machine_free(m);
}

/* A linear code page remapped (PTE rewrite + invlpg) runs the new page's bytes. */
static void test_code_page_remapped(void **state)
{
	static const uint8_t code[] = {
	    0xe8,
	    0xfb,
	    0xff,
	    0x02,
	    0x00, /* call 0x40000 */
	    0x89,
	    0xc6, /* mov esi, eax */
	    0x48,
	    0xc7,
	    0x04,
	    0x25,
	    (PT + 0x40 * 8) & 0xff,
	    (PT + 0x40 * 8) >> 8,
	    0,
	    0,
	    0x03,
	    0x00,
	    0x06,
	    0x00, /* mov qword [PTE], 0x60003 */
	    0x0f,
	    0x01,
	    0x3c,
	    0x25,
	    0x00,
	    0x00,
	    0x04,
	    0x00, /* invlpg [0x40000] */
	    0xe8,
	    0xe0,
	    0xff,
	    0x02,
	    0x00, /* call 0x40000 */
	    0x89,
	    0xc7, /* mov edi, eax */
	    0xf4, /* hlt */
	};
	static const uint8_t f1[] = {0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3};
	static const uint8_t f2[] = {0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3};
	struct machine *m = machine_new();
	struct emu_cpu *c = m->c;

	put(m, CODE, code, sizeof(code));
	put(m, 0x40000, f1, sizeof(f1));
	put(m, 0x60000, f2, sizeof(f2));
	for (int round = 0; round < 2; round++) {
		set64(m, PT + 0x40 * 8, 0x40000 | P | W);
		run_to_hlt(m, CODE); /* emu_cpu_exec does not flush: the guest's invlpg must */
		assert_int_equal(c->r[X86_RSI], 1);
		assert_int_equal(c->r[X86_RDI], 2);
		c->rip = CODE;
		emu_invlpg(c, 0x40000); /* the next round starts from the old mapping */
	}
	machine_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guest_patches_next_instruction),
	    cmocka_unit_test(test_guest_patches_through_alias),
	    cmocka_unit_test(test_guest_rewrites_other_lengths),
	    cmocka_unit_test(test_host_rewrites_between_runs),
	    cmocka_unit_test(test_same_bytes_64_and_compat),
	    cmocka_unit_test(test_code_page_remapped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
