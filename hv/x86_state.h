/*
 * x86_state.h - the architectural state of one x86-64 vCPU, the same for every backend.
 *
 * Both accelerators (emu and kvm) read and write exactly this struct, so state records
 * (save files, migration streams, checkpoints) have one shape whichever backend produced
 * them. Field meanings follow the SDM; segment attributes follow KVM's struct kvm_segment,
 * the LAPIC is its 1 KiB xAPIC register page (KVM's struct kvm_lapic_state layout) and the
 * FPU/SSE state is a 4 KiB XSAVE area (KVM's struct kvm_xsave layout).
 */
#ifndef HV_X86_STATE_H
#define HV_X86_STATE_H

#include <stdint.h>

enum x86_reg {
	X86_RAX, X86_RCX, X86_RDX, X86_RBX, X86_RSP, X86_RBP, X86_RSI, X86_RDI,
	X86_R8, X86_R9, X86_R10, X86_R11, X86_R12, X86_R13, X86_R14, X86_R15,
	X86_NR_GPRS
};

enum x86_sreg { X86_ES, X86_CS, X86_SS, X86_DS, X86_FS, X86_GS, X86_NR_SREGS };

/* RFLAGS bits. */
#define X86_CF	 (1ULL << 0)
#define X86_PF	 (1ULL << 2)
#define X86_AF	 (1ULL << 4)
#define X86_ZF	 (1ULL << 6)
#define X86_SF	 (1ULL << 7)
#define X86_TF	 (1ULL << 8)
#define X86_IF	 (1ULL << 9)
#define X86_DF	 (1ULL << 10)
#define X86_OF	 (1ULL << 11)
#define X86_IOPL (3ULL << 12)
#define X86_NT	 (1ULL << 14)
#define X86_RF	 (1ULL << 16)
#define X86_VM	 (1ULL << 17)
#define X86_AC	 (1ULL << 18)
#define X86_ID	 (1ULL << 21)
#define X86_RFLAGS_FIXED (1ULL << 1) /* always reads as 1 */

/* Control register bits. */
#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_MP (1ULL << 1)
#define X86_CR0_EM (1ULL << 2)
#define X86_CR0_TS (1ULL << 3)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_NE (1ULL << 5)
#define X86_CR0_WP (1ULL << 16)
#define X86_CR0_AM (1ULL << 18)
#define X86_CR0_NW (1ULL << 29)
#define X86_CR0_CD (1ULL << 30)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PSE	   (1ULL << 4)
#define X86_CR4_PAE	   (1ULL << 5)
#define X86_CR4_PGE	   (1ULL << 7)
#define X86_CR4_OSFXSR	   (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)
#define X86_CR4_FSGSBASE   (1ULL << 16)
#define X86_CR4_OSXSAVE	   (1ULL << 18)
#define X86_EFER_SCE (1ULL << 0)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)
#define X86_EFER_NXE (1ULL << 11)

/* MSR indexes the VMM knows by name. */
#define MSR_IA32_TSC		0x10
#define MSR_IA32_APIC_BASE	0x1b
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_PAT		0x277
#define MSR_IA32_TSC_DEADLINE	0x6e0
#define MSR_X2APIC_BASE		0x800 /* 0x800..0x8ff: x2APIC registers (offset >> 4) */
#define MSR_EFER		0xc0000080
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_FS_BASE		0xc0000100
#define MSR_GS_BASE		0xc0000101
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MSR_TSC_AUX		0xc0000103

#define X86_APIC_BASE_BSP    (1ULL << 8)
#define X86_APIC_BASE_EXTD   (1ULL << 10) /* x2APIC mode */
#define X86_APIC_BASE_ENABLE (1ULL << 11)
#define X86_APIC_DEFAULT_BASE 0xfee00000ULL

/* Exception vectors. */
enum x86_vector {
	X86_DE = 0, X86_DB = 1, X86_NMI = 2, X86_BP = 3, X86_OF_VEC = 4, X86_BR = 5,
	X86_UD = 6, X86_NM = 7, X86_DF_VEC = 8, X86_TS = 10, X86_NP = 11, X86_SS_VEC = 12,
	X86_GP = 13, X86_PF_VEC = 14, X86_MF = 16, X86_AC_VEC = 17, X86_MC = 18, X86_XM = 19,
};

/* #PF error code bits. */
#define X86_PF_P    (1U << 0)
#define X86_PF_W    (1U << 1)
#define X86_PF_U    (1U << 2)
#define X86_PF_RSVD (1U << 3)
#define X86_PF_I    (1U << 4)

struct x86_seg {
	uint64_t base;
	uint32_t limit;		/* byte granular (already scaled by G) */
	uint16_t selector;
	uint8_t type;		/* descriptor type field (4 bits) */
	uint8_t present, dpl, db, s, l, g, avl;
	uint8_t unusable;	/* null selector loaded (KVM semantics) */
	uint8_t pad;
};

struct x86_dtable {
	uint64_t base;
	uint16_t limit;
	uint16_t pad[3];
};

/* xAPIC register page offsets (x2APIC MSR = 0x800 + offset / 16). */
#define LAPIC_ID	0x020
#define LAPIC_VERSION	0x030
#define LAPIC_TPR	0x080
#define LAPIC_PPR	0x0a0
#define LAPIC_EOI	0x0b0
#define LAPIC_LDR	0x0d0
#define LAPIC_SVR	0x0f0
#define LAPIC_ISR	0x100 /* 8 registers, 0x10 apart */
#define LAPIC_TMR	0x180
#define LAPIC_IRR	0x200
#define LAPIC_ESR	0x280
#define LAPIC_LVT_CMCI	0x2f0
#define LAPIC_ICR	0x300
#define LAPIC_ICR2	0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_THERM 0x330
#define LAPIC_LVT_PERF	0x340
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_ICR 0x380 /* initial count */
#define LAPIC_TIMER_CCR 0x390 /* current count */
#define LAPIC_TIMER_DCR 0x3e0 /* divide configuration */
#define LAPIC_SELF_IPI	0x3f0 /* x2APIC only */

#define LAPIC_LVT_MASKED   (1U << 16)
#define LAPIC_TIMER_PERIODIC (1U << 17)
#define LAPIC_TIMER_TSCDEADLINE (2U << 17)
#define LAPIC_SVR_ENABLE   (1U << 8)

struct x86_lapic {
	uint8_t regs[1024];	/* xAPIC register page; little-endian u32 at each offset */
};

static inline uint32_t lapic_reg(const struct x86_lapic *l, unsigned off)
{
	uint32_t v;
	__builtin_memcpy(&v, &l->regs[off], 4);
	return v;
}

static inline void lapic_set_reg(struct x86_lapic *l, unsigned off, uint32_t v)
{
	__builtin_memcpy(&l->regs[off], &v, 4);
}

/* Pending and in-flight events (KVM's struct kvm_vcpu_events, trimmed). */
struct x86_events {
	uint8_t exception_injected, exception_nr, exception_has_error, exception_pending;
	uint32_t exception_error;
	uint8_t interrupt_injected, interrupt_nr, interrupt_soft;
	uint8_t interrupt_shadow;	/* 1 after sti / mov ss */
	uint8_t nmi_injected, nmi_pending, nmi_masked;
	uint8_t pad;
};

enum x86_mp_state { X86_MP_RUNNABLE = 0, X86_MP_HALTED = 1, X86_MP_UNINITIALIZED = 2 };

#define X86_XSAVE_SIZE 4096

struct x86_state {
	uint64_t gpr[X86_NR_GPRS];
	uint64_t rip;
	uint64_t rflags;

	struct x86_seg seg[X86_NR_SREGS];
	struct x86_seg tr, ldt;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t efer;
	uint64_t xcr0;

	/* MSRs that matter for save/restore. */
	uint64_t apic_base;
	uint64_t tsc;		/* guest TSC value at the moment of get_state */
	uint64_t tsc_deadline;
	uint64_t tsc_aux;
	uint64_t star, lstar, cstar, syscall_mask, kernel_gs_base;
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
	uint64_t pat;
	uint64_t misc_enable;

	uint64_t dr[8];		/* DR0-3, (4, 5 unused), DR6, DR7 */

	struct x86_lapic lapic;
	struct x86_events events;
	uint32_t mp_state;	/* enum x86_mp_state */
	uint32_t pad;

	/* Retired instructions (emu only; 0 on kvm). Deterministic time derives from it. */
	uint64_t icount;

	uint8_t xsave[X86_XSAVE_SIZE] __attribute__((aligned(64)));
};

/*
 * x86_state_reset - power-on state of a vCPU (SDM 9.1.1, with the x2APIC-capable LAPIC
 * at its default base, enabled; @bsp sets the BSP flag). Real mode, RIP 0xfff0.
 */
void x86_state_reset(struct x86_state *s, unsigned apic_id, int bsp);

/*
 * x86_state_flat32 - 32-bit flat protected mode with paging off, the PVH entry state:
 * CS = 0x10 (execute/read, base 0, limit 4 GiB), DS/ES/SS/FS/GS = 0x18 (read/write),
 * TR a busy 32-bit TSS, CR0 = PE|ET, interrupts off.
 */
void x86_state_flat32(struct x86_state *s);

/*
 * x86_state_io - save or load @s field by field through @io (hv/state_io.h): the vCPU
 * record of a state stream. Loading fills every field it knows (start from a zeroed
 * struct) and checks invariants; returns 0, or -1 with @io's error naming the field.
 */
#define X86_STATE_VERSION 1
struct state_io;
int x86_state_io(struct state_io *io, struct x86_state *s);

#endif
