/*
 * emulated.c - running a snippet on emu, the software CPU, in the host's shape.
 *
 * Guest memory has a slot at the code pages and one at the data area, at the same
 * addresses the host uses (diff.h), and identity-mapping page tables that map exactly
 * those pages the way Linux maps the host's: code user read-only and executable, data user
 * read-write and not executable, everything else absent. The CPU runs in 64-bit mode at
 * CPL 3 with Linux's user selectors (CS 0x33, SS 0x2b, null DS/ES/FS/GS), so a snippet sees
 * the same addresses, privileges and faults as natively. Exceptions are not delivered:
 * emu_cpu_exec() returns them (exc_exit), and the harness compares them with the signal
 * the host took.
 */
#include <asm/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hv/accel/emu/cpu.h"
#include "diff.h"

#define MAX_INSNS 1000000 /* a snippet runs a few hundred at most */

#define PTE_P  0x001ULL
#define PTE_RW 0x002ULL
#define PTE_US 0x004ULL
#define PTE_NX (1ULL << 63)

/* Page-table pages inside the DIFF_PT slot, and the GDT after them. */
#define PML4    (DIFF_PT + 0x0000)
#define PDPT    (DIFF_PT + 0x1000)
#define PD      (DIFF_PT + 0x2000)
#define PT_LOW  (DIFF_PT + 0x3000) /* maps the DIFF_PT slot itself (supervisor) */
#define PT_HIGH (DIFF_PT + 0x4000) /* maps the code pages and the data area */
#define GDT     (DIFF_PT + 0x5000)
#define TSS     (DIFF_PT + 0x6000)

struct emulated {
	struct guest_mem mem;
	struct io_bus io;
	struct emu_cpu *cpu;
	struct x86_state base; /* the state every run starts from, but for GPRs and RIP */
	struct x86_state out;
	uint8_t *code, *data, *pt;
};

static void put64(uint8_t *base, uint64_t off, uint64_t v)
{
	memcpy(base + off, &v, 8);
}

static void build_page_tables(struct emulated *e)
{
	uint8_t *pt = e->pt;
	const uint64_t dir = PTE_P | PTE_RW | PTE_US;

	memset(pt, 0, DIFF_PT_SIZE);
	put64(pt, PML4 - DIFF_PT, PDPT | dir);
	put64(pt, PDPT - DIFF_PT, PD | dir);
	put64(pt, PD - DIFF_PT + 8 * (DIFF_PT >> 21), PT_LOW | dir);
	put64(pt, PD - DIFF_PT + 8 * ((DIFF_CODE >> 21) & 511), PT_HIGH | dir);
	for (uint64_t a = DIFF_PT; a < DIFF_PT + DIFF_PT_SIZE; a += 4096)
		put64(pt, PT_LOW - DIFF_PT + 8 * ((a >> 12) & 511), a | PTE_P | PTE_RW);
	for (uint64_t a = DIFF_CODE; a < DIFF_CODE + DIFF_CODE_SIZE; a += 4096)
		put64(pt, PT_HIGH - DIFF_PT + 8 * ((a >> 12) & 511), a | PTE_P | PTE_US);
	for (uint64_t a = DIFF_DATA; a < DIFF_DATA + DIFF_DATA_SIZE; a += 4096)
		put64(pt, PT_HIGH - DIFF_PT + 8 * ((a >> 12) & 511),
		      a | PTE_P | PTE_RW | PTE_US | PTE_NX);

	/* Linux's GDT layout: kernel CS/DS, user CS32, user DS, user CS64, then the TSS. */
	put64(pt, GDT - DIFF_PT + 0x10, 0x00af9b000000ffffULL);
	put64(pt, GDT - DIFF_PT + 0x18, 0x00cf93000000ffffULL);
	put64(pt, GDT - DIFF_PT + 0x20, 0x00cffb000000ffffULL);
	put64(pt, GDT - DIFF_PT + 0x28, 0x00cff3000000ffffULL);
	put64(pt, GDT - DIFF_PT + 0x30, 0x00affb000000ffffULL);
	put64(pt, GDT - DIFF_PT + 0x40,
	      0x0000890000000067ULL | ((TSS & 0xffffffULL) << 16) | ((uint64_t)(TSS >> 24) << 56));
}

static void flat(struct x86_seg *s, uint16_t sel, uint8_t type, uint8_t code64)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = sel & 3;
	s->s = 1;
	s->l = code64;
	s->db = !code64;
	s->g = 1;
}

static void null_seg(struct x86_seg *s)
{
	memset(s, 0, sizeof(*s));
	s->unusable = 1;
	s->type = 3;
	s->s = 1;
	s->db = 1;
	s->g = 1;
	s->limit = 0xffffffff;
}

/* The 64-bit user-mode state Linux runs the host process in, as KVM would report it. */
static void build_state(struct emulated *e)
{
	struct x86_state *s = &e->base;

	emu_cpu_get_state(e->cpu, s); /* power-on values for everything not set here */
	s->cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG;
	s->cr2 = 0;
	s->cr3 = PML4;
	s->cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	s->efer = X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE;
	flat(&s->seg[X86_CS], 0x33, 0xb, 1);
	flat(&s->seg[X86_SS], 0x2b, 0x3, 0);
	null_seg(&s->seg[X86_DS]);
	null_seg(&s->seg[X86_ES]);
	null_seg(&s->seg[X86_FS]);
	null_seg(&s->seg[X86_GS]);
	/* The host's FS (TLS) and GS bases and its CR4.FSGSBASE, for rd/wr{fs,gs}base. */
	syscall(SYS_arch_prctl, ARCH_GET_FS, &s->seg[X86_FS].base);
	syscall(SYS_arch_prctl, ARCH_GET_GS, &s->seg[X86_GS].base);
	if (getauxval(AT_HWCAP2) & 2) /* HWCAP2_FSGSBASE */
		s->cr4 |= X86_CR4_FSGSBASE;
	memset(&s->tr, 0, sizeof(s->tr));
	s->tr.selector = 0x40;
	s->tr.base = TSS;
	s->tr.limit = 0x67;
	s->tr.type = 0xb;
	s->tr.present = 1;
	memset(&s->ldt, 0, sizeof(s->ldt));
	s->ldt.unusable = 1;
	s->gdt.base = GDT;
	s->gdt.limit = 0x4f;
	s->idt.base = 0;
	s->idt.limit = 0;
	memset(&s->events, 0, sizeof(s->events));
	s->mp_state = X86_MP_RUNNABLE;
}

void emulated_cpuid(struct emulated *e, uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	struct emu_cpu *c = e->cpu;

	c->r[X86_RAX] = leaf;
	c->r[X86_RCX] = sub;
	emu_cpuid(c);
	r[0] = (uint32_t)c->r[X86_RAX];
	r[1] = (uint32_t)c->r[X86_RBX];
	r[2] = (uint32_t)c->r[X86_RCX];
	r[3] = (uint32_t)c->r[X86_RDX];
}

struct emulated *emulated_new(char *why, size_t whylen)
{
	struct emulated *e = calloc(1, sizeof(*e));
	struct hv_error err = {0};

	if (!e) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	mem_init_empty(&e->mem);
	if (mem_add_slot(&e->mem, DIFF_PT, DIFF_PT_SIZE, &err) < 0 ||
	    mem_add_slot(&e->mem, DIFF_CODE, DIFF_CODE_SIZE, &err) < 0 ||
	    mem_add_slot(&e->mem, DIFF_DATA, DIFF_DATA_SIZE, &err) < 0) {
		snprintf(why, whylen, "guest memory: %s", err.msg);
		goto fail;
	}
	e->pt = mem_hva(&e->mem, DIFF_PT, DIFF_PT_SIZE);
	e->code = mem_hva(&e->mem, DIFF_CODE, DIFF_CODE_SIZE);
	e->data = mem_hva(&e->mem, DIFF_DATA, DIFF_DATA_SIZE);
	if (!e->pt || !e->code || !e->data) {
		snprintf(why, whylen, "guest memory: slots not found after mem_add_slot");
		goto fail;
	}
	build_page_tables(e);
	e->cpu = emu_cpu_new(&e->mem, &e->io);
	if (!e->cpu) {
		snprintf(why, whylen, "emu_cpu_new failed");
		goto fail;
	}
	build_state(e);
	return e;
fail:
	emulated_free(e);
	return NULL;
}

void emulated_free(struct emulated *e)
{
	if (!e)
		return;
	if (e->cpu)
		emu_cpu_free(e->cpu);
	mem_destroy(&e->mem);
	free(e);
}

uint8_t *emulated_data(struct emulated *e)
{
	return e->data;
}

static int fresh_cpu(struct emulated *e, char *why, size_t whylen)
{
	if (e->cpu)
		emu_cpu_free(e->cpu);
	e->cpu = emu_cpu_new(&e->mem, &e->io);
	if (!e->cpu) {
		snprintf(why, whylen, "emu_cpu_new failed");
		return -1;
	}
	return 0;
}

int emulated_load(struct emulated *e, const uint8_t page[DIFF_CODE_SIZE], char *why, size_t whylen)
{
	/* A fresh CPU per snippet: no decoded or translated state survives the code change. */
	if (fresh_cpu(e, why, whylen) < 0)
		return -1;
	memcpy(e->code, page, DIFF_CODE_SIZE);
	return 0;
}

struct exec_args {
	struct emulated *e;
	uint64_t stop;
	int reason;
};

static void exec(void *arg)
{
	struct exec_args *a = arg;

	a->reason = emu_cpu_exec(a->e->cpu, MAX_INSNS, a->stop);
}

void emulated_run(struct emulated *e, const struct diff_regs *in, uint64_t entry, uint64_t end,
                  struct diff_result *out)
{
	struct exec_args a = {.e = e, .stop = end};
	struct emu_cpu *c = e->cpu;
	char why[128];
	int sig;

	memset(out, 0, sizeof(*out));
	memcpy(e->base.gpr, in->gpr, sizeof(in->gpr));
	e->base.rflags = in->rflags;
	e->base.rip = entry;
	emu_cpu_set_state(c, &e->base);
	c->exc_exit = true;
	sig = native_guarded(exec, &a, &out->host_pc);
	if (sig) {
		out->how = DIFF_CRASH;
		out->detail = sig;
		/* The CPU may be half-way through anything: start over with a new one. */
		if (fresh_cpu(e, why, sizeof(why)) < 0) {
			fprintf(stderr, "emu_diff: %s\n", why);
			exit(1);
		}
		return;
	}
	emu_cpu_get_state(c, &e->out);
	memcpy(out->regs.gpr, e->out.gpr, sizeof(out->regs.gpr));
	out->regs.rflags = e->out.rflags;
	out->rip = e->out.rip;
	switch (a.reason) {
	case EMU_EXIT_STOP_RIP: out->how = DIFF_END; break;
	case EMU_EXIT_EXCEPTION:
		out->how = DIFF_EXC;
		out->vector = c->exc_vector;
		out->err = c->exc_error;
		out->cr2 = c->exc_vector == X86_PF_VEC ? e->out.cr2 : 0;
		break;
	default:
		out->how = DIFF_STUCK;
		out->detail = a.reason;
		break;
	}
}
