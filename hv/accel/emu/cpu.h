/*
 * cpu.h - the software x86-64 CPU's state and the contract between its two halves.
 *
 * The instruction half (decode.c, exec_*.c, flags.c) fetches, decodes and executes one
 * instruction at a time with emu_step(). The system half (emu.c, mmu.c, except.c, apic.c,
 * sys.c) owns paging and the soft TLB, exceptions and interrupt delivery, control
 * registers, MSRs, the x2APIC and the run loop. Faults unwind with longjmp to the run
 * loop's instruction boundary, so an instruction must finish its memory accesses that can
 * fault before it commits register results (push: write, then move RSP).
 */
#ifndef HV_EMU_CPU_H
#define HV_EMU_CPU_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/io.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

struct vm;
struct vcpu;
struct emu_dcache;

/* Execution modes (the default operand/address size of code). */
enum emu_mode {
	EMU_MODE_REAL = 0,   /* not supported beyond reset; stepping raises an error */
	EMU_MODE_PROT16 = 1, /* protected mode, 16-bit code segment */
	EMU_MODE_PROT32 = 2, /* protected mode or compatibility mode, 32-bit code segment */
	EMU_MODE_LONG64 = 3, /* 64-bit mode */
};

/* Bits of emu_cpu.attn: reasons for the run loop to leave its fast path. */
#define EMU_ATTN_KICK  (1U << 0) /* another thread wants this vCPU to stop / look */
#define EMU_ATTN_IRQ   (1U << 1) /* IF or the interrupt shadow changed: recheck interrupts */
#define EMU_ATTN_TIMER (1U << 2) /* the LAPIC timer may have expired */
#define EMU_ATTN_HLT   (1U << 3) /* hlt executed */
#define EMU_ATTN_MODE  (1U << 4) /* mode/CPL changed (informational) */
#define EMU_ATTN_EPOCH (1U << 5) /* the dirty-log epoch moved: reload it at the boundary */

/*
 * Soft TLB: direct-mapped, one entry per linear page, large enough (64K entries, 256 MiB of
 * linear space) that a guest sweeping its RAM keeps hitting. An entry's tag is the linear
 * page address with the TLB generation in its low 12 bits, so a full flush (CR3 writes)
 * is one increment; a zeroed entry never matches because generations start at 1.
 */
#define EMU_TLB_BITS    16
#define EMU_TLB_GEN_MAX 0xfffU
#define EMU_TLB_SIZE    (1U << EMU_TLB_BITS)
#define EMU_TLB_R       (1U << 0) /* readable */
#define EMU_TLB_W       (1U << 1) /* writable by the page tables and PTE.D already set */
#define EMU_TLB_X       (1U << 2) /* executable */

struct emu_tlb_entry {
	uint64_t tag;      /* linear page address | generation (emu_tlb_tag) */
	uintptr_t addend;  /* host address = linear address + addend */
	uint64_t wepoch;   /* writes take the fast path only if == cpu->dirty_epoch */
	uint64_t gpa_page; /* guest-physical address of the page */
	uint32_t flags;    /* EMU_TLB_* */
	uint32_t pad;
};
#define EMU_TLB_INVALID (~0ULL)

/* Lazy arithmetic flags (flags.c): CF PF AF ZF SF OF are computed from the last op. */
struct emu_lazy {
	uint64_t res;  /* result */
	uint64_t src1; /* first operand (destination before the op) */
	uint64_t src2; /* second operand */
	uint32_t op;   /* EMU_CC_* in flags.h; EMU_CC_NONE: flags hold the values */
	uint32_t size; /* operand size in bytes */
};

/* Exit reasons of emu_cpu_exec() (the standalone interface used by tests). */
enum emu_exit_reason {
	EMU_EXIT_ICOUNT = 1, /* executed max_insns */
	EMU_EXIT_STOP_RIP,   /* reached stop_rip (not executed) */
	EMU_EXIT_EXCEPTION,  /* exception raised and exc_exit set: not delivered */
	EMU_EXIT_HLT,        /* hlt with interrupts off, or no timer armed */
	EMU_EXIT_SHUTDOWN,   /* triple fault */
	EMU_EXIT_KICK,       /* attention from another thread */
};

struct emu_cpu {
	/* --- hot state, used by both halves --- */
	uint64_t r[X86_NR_GPRS];
	uint64_t rip;
	uint64_t flags; /* RFLAGS except the six arithmetic flags while lazy */
	struct emu_lazy cc;
	uint64_t icount;          /* retired instructions */
	uint64_t icount_deadline; /* run loop services timers/stops when icount reaches it */
	_Atomic uint32_t attn;    /* EMU_ATTN_*; the loop checks it before every instruction */
	int mode;                 /* enum emu_mode */
	int cpl;
	uint64_t insn_rip;    /* RIP of the instruction being executed */
	uint64_t dirty_epoch; /* epoch this vCPU's TLB write entries are valid for */
	uint64_t tlb_gen;     /* current TLB generation, 1..EMU_TLB_GEN_MAX */
	struct emu_tlb_entry tlb[EMU_TLB_SIZE];
	struct emu_dcache *dcache; /* decoded instructions (decode.c); owned */
	struct guest_mem *mem;
	struct io_bus *io;

	/* --- architectural system state (system half) --- */
	struct x86_seg seg[X86_NR_SREGS];
	struct x86_seg tr, ldt;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, xcr0;
	uint64_t apic_base, tsc_deadline, tsc_aux, star, lstar, cstar, syscall_mask;
	uint64_t kernel_gs_base, sysenter_cs, sysenter_esp, sysenter_eip, pat, misc_enable;
	uint64_t dr[8];
	struct x86_lapic lapic;
	struct x86_events events;
	int halted;
	uint64_t tsc_offset; /* guest TSC = host-derived clock + tsc_offset */
	uint8_t xsave[X86_XSAVE_SIZE];

	/* --- run-loop plumbing (system half) --- */
	jmp_buf fault_jmp; /* emu_raise() longjmps here */
	int exc_depth;     /* nesting while delivering: 1 -> #DF, 2 -> triple fault */
	bool exc_exit;     /* tests: return exceptions from emu_cpu_exec, don't deliver */
	int exc_vector;    /* the exception that made emu_cpu_exec() return */
	uint32_t exc_error;
	bool deterministic; /* time = f(icount); set before emu_cpu_set_state() (anchors TSC) */
	struct vm *vm;      /* NULL for a standalone CPU (tests) */
	struct vcpu *vcpu;
	void *sys; /* system-half private data (timer state etc.) */
};

/* ===== Provided by the instruction half ===== */

/*
 * emu_step - execute the one instruction at c->rip: set c->insn_rip, fetch, decode,
 * execute, advance RIP and c->icount. Faults unwind through emu_raise().
 */
void emu_step(struct emu_cpu *c);

/*
 * emu_dcache_new / emu_dcache_free - a CPU's decoded-instruction cache, for c->dcache.
 * It needs no flushing: every use checks the bytes. emu_dcache_new returns NULL when out
 * of memory.
 */
struct emu_dcache *emu_dcache_new(void);
void emu_dcache_free(struct emu_dcache *dc);

/* emu_rflags / emu_set_rflags - RFLAGS with the lazy flags materialised / loaded. */
uint64_t emu_rflags(struct emu_cpu *c);
void emu_set_rflags(struct emu_cpu *c, uint64_t v);

/* ===== Provided by the system half ===== */

/* emu_raise - raise exception @vec (with @err when @has_err) at c->insn_rip. */
_Noreturn void emu_raise(struct emu_cpu *c, unsigned vec, uint32_t err, bool has_err);
#define emu_raise_ud(c)    emu_raise((c), X86_UD, 0, false)
#define emu_raise_gp(c, e) emu_raise((c), X86_GP, (e), true)
#define emu_raise_de(c)    emu_raise((c), X86_DE, 0, false)

/* Linear address of @seg:@off for an access of @size (segment base, limit in legacy). */
uint64_t emu_lin_slow(struct emu_cpu *c, int seg, uint64_t off, unsigned size, bool write);

/* Slow memory paths (TLB miss, page-crossing, MMIO, first store in a dirty epoch). */
uint64_t emu_read_slow(struct emu_cpu *c, uint64_t lin, unsigned size);
void emu_write_slow(struct emu_cpu *c, uint64_t lin, unsigned size, uint64_t val);

/*
 * emu_rmw_ptr - host pointer to @size bytes at linear @lin, translated for writing (the
 * page is marked dirty), for locked read-modify-write. NULL when the access crosses a
 * page or hits MMIO: the caller then does a plain read and write.
 */
void *emu_rmw_ptr(struct emu_cpu *c, uint64_t lin, unsigned size);

/*
 * emu_code_ptr - host pointer to instruction bytes at linear @lin, with *@avail bytes
 * readable up to the end of the page (at least 1). Raises #PF if not executable.
 */
const uint8_t *emu_code_ptr(struct emu_cpu *c, uint64_t lin, unsigned *avail);

/* Segment and control-transfer operations that consult descriptor tables. */
void emu_load_sreg(struct emu_cpu *c, int sreg, uint16_t sel); /* mov/pop sreg */
void emu_far_jmp(struct emu_cpu *c, uint16_t sel, uint64_t off);
void emu_far_call(struct emu_cpu *c, uint16_t sel, uint64_t off, unsigned opsize);
void emu_far_ret(struct emu_cpu *c, unsigned opsize, uint16_t imm);
void emu_iret(struct emu_cpu *c, unsigned opsize);
void emu_int(struct emu_cpu *c, unsigned vec, uint64_t next_rip); /* int n, int3 */
void emu_ltr(struct emu_cpu *c, uint16_t sel);
void emu_lldt(struct emu_cpu *c, uint16_t sel);
void emu_syscall(struct emu_cpu *c, uint64_t next_rip);
void emu_sysret(struct emu_cpu *c, unsigned opsize);

/* Control registers, MSRs and friends; each raises #GP itself on invalid input. */
uint64_t emu_read_cr(struct emu_cpu *c, int n);
void emu_write_cr(struct emu_cpu *c, int n, uint64_t val);
uint64_t emu_rdmsr(struct emu_cpu *c, uint32_t idx);
void emu_wrmsr(struct emu_cpu *c, uint32_t idx, uint64_t val);
void emu_cpuid(struct emu_cpu *c); /* reads EAX/ECX, writes EAX..EDX */
uint64_t emu_rdtsc(struct emu_cpu *c);
void emu_hlt(struct emu_cpu *c);
void emu_invlpg(struct emu_cpu *c, uint64_t lin);
void emu_tlb_flush(struct emu_cpu *c);
uint64_t emu_in(struct emu_cpu *c, uint16_t port, unsigned size);
void emu_out(struct emu_cpu *c, uint16_t port, unsigned size, uint64_t val);

/* ===== Standalone CPU, for tests and the differential harness (emu.c) ===== */

/*
 * emu_cpu_new - a CPU over @mem and @io (either may be shared with other CPUs), in the
 * power-on state, with no VM attached. Returns NULL on allocation failure.
 */
struct emu_cpu *emu_cpu_new(struct guest_mem *mem, struct io_bus *io);
void emu_cpu_free(struct emu_cpu *c);
void emu_cpu_get_state(struct emu_cpu *c, struct x86_state *s);
void emu_cpu_set_state(struct emu_cpu *c, const struct x86_state *s);

/*
 * emu_cpu_exec - run until @max_insns have retired, RIP equals @stop_rip (pass ~0 for
 * none), an exception is raised with c->exc_exit set, hlt, or a triple fault. Returns an
 * enum emu_exit_reason.
 */
int emu_cpu_exec(struct emu_cpu *c, uint64_t max_insns, uint64_t stop_rip);

#endif
