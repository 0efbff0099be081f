/*
 * trap.c - IDT, TSS and the C side of interrupt and exception handling.
 *
 * Every vector goes through rt_trap with a struct rt_frame. A registered handler wins;
 * otherwise an exception that a test armed rt_fixup for is recorded and resumed at the
 * fixup address; anything else prints "EXCEPTION vec=N err=E rip=R cr2=C" and exits 99.
 * Double fault and NMI run on their own IST stack so a broken stack still gets reported.
 */
#include "rt.h"
#include "x86.h"

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

struct tss {
	uint32_t rsvd0;
	uint64_t rsp[3];
	uint64_t rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3, iomap;
} __attribute__((packed));

extern const uint64_t rt_isr_table[256];
extern uint64_t rt_gdt[6];

static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));
static uint8_t ist_stack[16384] __attribute__((aligned(16)));
static rt_handler handlers[256];

volatile uint64_t rt_fixup;
volatile struct rt_trap rt_last_trap = {.vec = -1};

static const char *const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?9",  "#TS",
    "#NP", "#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void rt_trap_init(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d;

	for (int v = 0; v < 256; v++) {
		uint64_t a = rt_isr_table[v];
		idt[v] = (struct idt_entry){
		    .off0 = (uint16_t)a,
		    .sel = 0x08,
		    .ist = (v == 2 || v == 8) ? 1 : 0,
		    .type = 0x8e, /* present, DPL 0, 64-bit interrupt gate */
		    .off1 = (uint16_t)(a >> 16),
		    .off2 = (uint32_t)(a >> 32),
		};
	}
	d.limit = sizeof(idt) - 1;
	d.base = (uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(d));

	tss.ist[0] = (uintptr_t)ist_stack + sizeof(ist_stack);
	tss.iomap = sizeof(tss);
	uint64_t b = (uintptr_t)&tss, lim = sizeof(tss) - 1;
	rt_gdt[4] = (lim & 0xffff) | ((b & 0xffffff) << 16) | (0x89ull << 40) |
	            ((lim >> 16) << 48) | (((b >> 24) & 0xff) << 56);
	rt_gdt[5] = b >> 32;
	__asm__ volatile("ltr %w0" : : "r"(0x20));
}

void rt_set_handler(int vec, rt_handler h)
{
	handlers[vec & 255] = h;
}

void rt_trap_reset(void)
{
	rt_last_trap.vec = -1;
	rt_last_trap.err = rt_last_trap.rip = rt_last_trap.cr2 = 0;
	rt_fixup = 0;
}

void rt_trap(struct rt_frame *f)
{
	uint64_t vec = f->vec;

	if (handlers[vec]) {
		handlers[vec](f);
		return;
	}
	if (vec == RT_SPURIOUS_VECTOR)
		return; /* spurious interrupts need no EOI */
	if (vec < 32 && rt_fixup) {
		rt_last_trap.vec = (int)vec;
		rt_last_trap.err = f->err;
		rt_last_trap.rip = f->rip;
		rt_last_trap.cr2 = vec == 14 ? read_cr2() : 0;
		f->rip = rt_fixup;
		rt_fixup = 0;
		return;
	}
	if (vec < 32)
		rt_printf("EXCEPTION vec=%lu err=0x%lx rip=0x%lx cr2=0x%lx (%s rsp=0x%lx)\n", vec,
		          f->err, f->rip, read_cr2(), names[vec] ? names[vec] : "?", f->rsp);
	else
		rt_printf("EXCEPTION vec=%lu (unexpected interrupt) rip=0x%lx\n", vec, f->rip);
	rt_exit(EXIT_EXCEPTION);
}
