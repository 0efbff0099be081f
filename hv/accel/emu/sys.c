/*
 * sys.c - control registers, MSRs, CPUID, TSC, hlt and port I/O for the emu.
 *
 * CPUID describes exactly what the emu implements and never depends on the host, so a
 * guest sees the same CPU on every machine and in every run (deterministic mode relies
 * on it). Vendor "GenuineIntel" for guest compatibility, hypervisor leaves 0x40000000
 * ("HvEmuHvEmu  ") and 0x40000010 (TSC and APIC bus kHz, VMware's convention), and the
 * TSC frequency (1 GHz) in leaves 0x15/0x16 as well. No FPU/SSE: the instruction half
 * implements general-purpose instructions only, and guests are built for that.
 *
 * Writes to CR0/CR3/CR4/EFER flush the soft TLB and recompute the execution mode;
 * turning paging on with EFER.LME set activates IA-32e mode (EFER.LMA).
 */
#include "hv/accel/emu/apic.h"
#include "hv/accel/emu/mmu.h"

/* CPUID feature bits advertised (see the header comment). */
#define CPUID1_ECX                                                                                 \
	(1U << 13 /* CMPXCHG16B */ | 1U << 21 /* x2APIC */ | 1U << 23 /* POPCNT */ |               \
	 1U << 24 /* TSC-deadline */ | 1U << 31 /* hypervisor */)
#define CPUID1_EDX                                                                                 \
	(1U << 3 /* PSE */ | 1U << 4 /* TSC */ | 1U << 5 /* MSR */ | 1U << 6 /* PAE */ |           \
	 1U << 8 /* CX8 */ | 1U << 9 /* APIC */ | 1U << 13 /* PGE */ | 1U << 15 /* CMOV */ |       \
	 1U << 16 /* PAT */ | 1U << 19 /* CLFLUSH */)
#define CPUID7_EBX  (1U << 0 /* FSGSBASE */)
#define CPUID81_ECX (1U << 0 /* LAHF/SAHF in 64-bit mode */ | 1U << 5 /* LZCNT */)
#define CPUID81_EDX                                                                                \
	(1U << 11 /* SYSCALL */ | 1U << 20 /* NX */ | 1U << 26 /* 1 GiB pages */ |                 \
	 1U << 27 /* RDTSCP */ | 1U << 29 /* long mode */)

#define CR0_VALID                                                                                  \
	(X86_CR0_PE | X86_CR0_MP | X86_CR0_EM | X86_CR0_TS | X86_CR0_ET | X86_CR0_NE |             \
	 X86_CR0_WP | X86_CR0_AM | X86_CR0_NW | X86_CR0_CD | X86_CR0_PG)
#define CR4_VALID                                                                                  \
	((1ULL << 2) /* TSD */ | (1ULL << 3) /* DE */ | X86_CR4_PSE | X86_CR4_PAE |                \
	 (1ULL << 6) /* MCE */ | X86_CR4_PGE | (1ULL << 8) /* PCE */ | X86_CR4_FSGSBASE)
#define EFER_VALID (X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE)

static void need_cpl0(struct emu_cpu *c)
{
	if (c->cpl != 0)
		emu_raise_gp(c, 0);
}

static void paging_changed(struct emu_cpu *c)
{
	emu_tlb_flush(c);
	emu_set_mode(c, c->cpl);
}

uint64_t emu_read_cr(struct emu_cpu *c, int n)
{
	need_cpl0(c);
	switch (n) {
	case 0: return c->cr0;
	case 2: return c->cr2;
	case 3: return c->cr3;
	case 4: return c->cr4;
	case 8: return (lapic_reg(&c->lapic, LAPIC_TPR) >> 4) & 0xf;
	}
	emu_raise_ud(c);
}

static void write_cr0(struct emu_cpu *c, uint64_t v)
{
	bool lme = c->efer & X86_EFER_LME;

	if (v & ~CR0_VALID)
		emu_raise_gp(c, 0);
	v |= X86_CR0_ET;
	if (((v & X86_CR0_PG) && !(v & X86_CR0_PE)) || ((v & X86_CR0_NW) && !(v & X86_CR0_CD)))
		emu_raise_gp(c, 0);
	if ((v & X86_CR0_PG) && !(c->cr0 & X86_CR0_PG) && lme) {
		/* Activating IA-32e mode: needs PAE, and 32-bit code (not 64-bit) running. */
		if (!(c->cr4 & X86_CR4_PAE) || c->seg[X86_CS].l)
			emu_raise_gp(c, 0);
		c->efer |= X86_EFER_LMA;
	} else if (!(v & X86_CR0_PG) && (c->cr0 & X86_CR0_PG) && (c->efer & X86_EFER_LMA)) {
		if (c->mode == EMU_MODE_LONG64)
			emu_raise_gp(c, 0);
		c->efer &= ~X86_EFER_LMA;
	}
	c->cr0 = v;
	paging_changed(c);
}

void emu_write_cr(struct emu_cpu *c, int n, uint64_t v)
{
	need_cpl0(c);
	switch (n) {
	case 0: write_cr0(c, v); return;
	case 2: c->cr2 = v; return;
	case 3:
		if ((c->efer & X86_EFER_LMA) && (v >> 48))
			emu_raise_gp(c, 0);
		c->cr3 = (c->efer & X86_EFER_LMA) ? v : v & 0xffffffffULL;
		emu_tlb_flush(c);
		return;
	case 4:
		if ((v & ~CR4_VALID) || ((c->efer & X86_EFER_LMA) && !(v & X86_CR4_PAE)))
			emu_raise_gp(c, 0);
		c->cr4 = v;
		paging_changed(c);
		return;
	case 8:
		if (v > 15)
			emu_raise_gp(c, 0);
		lapic_set_reg(&c->lapic, LAPIC_TPR, (uint32_t)v << 4);
		atomic_fetch_or_explicit(&c->attn, EMU_ATTN_IRQ, memory_order_relaxed);
		return;
	}
	emu_raise_ud(c);
}

static void write_efer(struct emu_cpu *c, uint64_t v)
{
	if (v & ~EFER_VALID)
		emu_raise_gp(c, 0);
	if ((c->cr0 & X86_CR0_PG) && ((v ^ c->efer) & X86_EFER_LME))
		emu_raise_gp(c, 0);
	c->efer = (v & ~X86_EFER_LMA) | (c->efer & X86_EFER_LMA); /* LMA is read-only */
	paging_changed(c);
}

static void need_canonical(struct emu_cpu *c, uint64_t v)
{
	if (!emu_canonical(v))
		emu_raise_gp(c, 0);
}

uint64_t emu_rdmsr(struct emu_cpu *c, uint32_t idx)
{
	need_cpl0(c);
	if (idx >= MSR_X2APIC_BASE && idx <= MSR_X2APIC_BASE + 0xff)
		return apic_rdmsr(c, idx);
	switch (idx) {
	case MSR_IA32_TSC: return emu_now(c);
	case MSR_IA32_APIC_BASE: return c->apic_base;
	case MSR_IA32_MISC_ENABLE: return c->misc_enable;
	case MSR_IA32_SYSENTER_CS: return c->sysenter_cs;
	case MSR_IA32_SYSENTER_ESP: return c->sysenter_esp;
	case MSR_IA32_SYSENTER_EIP: return c->sysenter_eip;
	case MSR_IA32_PAT: return c->pat;
	case MSR_IA32_TSC_DEADLINE: return c->tsc_deadline;
	case MSR_EFER: return c->efer;
	case MSR_STAR: return c->star;
	case MSR_LSTAR: return c->lstar;
	case MSR_CSTAR: return c->cstar;
	case MSR_SYSCALL_MASK: return c->syscall_mask;
	case MSR_FS_BASE: return c->seg[X86_FS].base;
	case MSR_GS_BASE: return c->seg[X86_GS].base;
	case MSR_KERNEL_GS_BASE: return c->kernel_gs_base;
	case MSR_TSC_AUX: return c->tsc_aux;
	}
	emu_raise_gp(c, 0);
}

void emu_wrmsr(struct emu_cpu *c, uint32_t idx, uint64_t v)
{
	need_cpl0(c);
	if (idx >= MSR_X2APIC_BASE && idx <= MSR_X2APIC_BASE + 0xff) {
		apic_wrmsr(c, idx, v);
		return;
	}
	switch (idx) {
	case MSR_IA32_TSC: emu_set_tsc(c, v); return;
	case MSR_IA32_APIC_BASE: apic_set_base(c, v); return;
	case MSR_IA32_MISC_ENABLE: c->misc_enable = v; return;
	case MSR_IA32_SYSENTER_CS: c->sysenter_cs = v & 0xffff; return;
	case MSR_IA32_SYSENTER_ESP:
		need_canonical(c, v);
		c->sysenter_esp = v;
		return;
	case MSR_IA32_SYSENTER_EIP:
		need_canonical(c, v);
		c->sysenter_eip = v;
		return;
	case MSR_IA32_PAT:
		for (int i = 0; i < 8; i++) {
			unsigned t = (v >> (i * 8)) & 0xff;
			if (t == 2 || t == 3 || t > 7)
				emu_raise_gp(c, 0);
		}
		c->pat = v;
		return;
	case MSR_IA32_TSC_DEADLINE:
		c->tsc_deadline = v;
		apic_tsc_deadline_write(c);
		return;
	case MSR_EFER: write_efer(c, v); return;
	case MSR_STAR: c->star = v; return;
	case MSR_LSTAR:
		need_canonical(c, v);
		c->lstar = v;
		return;
	case MSR_CSTAR:
		need_canonical(c, v);
		c->cstar = v;
		return;
	case MSR_SYSCALL_MASK:
		if (v >> 32)
			emu_raise_gp(c, 0);
		c->syscall_mask = v;
		return;
	case MSR_FS_BASE:
		need_canonical(c, v);
		c->seg[X86_FS].base = v;
		return;
	case MSR_GS_BASE:
		need_canonical(c, v);
		c->seg[X86_GS].base = v;
		return;
	case MSR_KERNEL_GS_BASE:
		need_canonical(c, v);
		c->kernel_gs_base = v;
		return;
	case MSR_TSC_AUX:
		if (v >> 32)
			emu_raise_gp(c, 0);
		c->tsc_aux = v;
		return;
	}
	emu_raise_gp(c, 0);
}

static void put_str(uint32_t *r, const char *s)
{
	memcpy(r, s, 4);
}

void emu_cpuid(struct emu_cpu *c)
{
	uint32_t leaf = (uint32_t)c->r[X86_RAX], sub = (uint32_t)c->r[X86_RCX], r[4] = {0};
	uint32_t apic_id =
	    apic_x2apic(c) ? lapic_reg(&c->lapic, LAPIC_ID) : lapic_reg(&c->lapic, LAPIC_ID) >> 24;
	static const char brand[48] = "hv emu x86-64 CPU @ 1.00GHz";

	switch (leaf) {
	case 0:
		r[0] = 0x16;
		put_str(&r[1], "Genu"), put_str(&r[3], "ineI"), put_str(&r[2], "ntel");
		break;
	case 1:
		r[0] = 0x00000663; /* family 6, model 6, stepping 3 */
		r[1] = (apic_id << 24) | (1U << 16) | (8U << 8);
		r[2] = CPUID1_ECX;
		r[3] = CPUID1_EDX;
		break;
	case 7:
		if (sub == 0)
			r[1] = CPUID7_EBX;
		break;
	case 0xb: /* x2APIC topology: one thread per core, one core per package */
		if (sub == 0)
			r[0] = 0, r[1] = 1, r[2] = 0x100;
		else if (sub == 1)
			r[0] = 0, r[1] = 1, r[2] = 0x201;
		else
			r[2] = sub & 0xff;
		r[3] = apic_id;
		break;
	case 0x15:
		r[0] = 1, r[1] = 1, r[2] = (uint32_t)EMU_TSC_HZ; /* TSC = crystal = 1 GHz */
		break;
	case 0x16: r[0] = r[1] = r[2] = (uint32_t)(EMU_TSC_HZ / 1000000); break;
	case 0x40000000:
		r[0] = 0x40000010;
		put_str(&r[1], "HvEm"), put_str(&r[2], "uHvE"), put_str(&r[3], "mu  ");
		break;
	case 0x40000010: r[0] = r[1] = (uint32_t)(EMU_TSC_HZ / 1000); break;
	case 0x80000000: r[0] = 0x80000008; break;
	case 0x80000001:
		r[2] = CPUID81_ECX;
		r[3] = CPUID81_EDX;
		break;
	case 0x80000002:
	case 0x80000003:
	case 0x80000004: memcpy(r, brand + (leaf - 0x80000002) * 16, 16); break;
	case 0x80000007:
		r[3] = 1U << 8; /* invariant TSC */
		break;
	case 0x80000008: r[0] = 48 | (48 << 8); break;
	}
	c->r[X86_RAX] = r[0];
	c->r[X86_RBX] = r[1];
	c->r[X86_RCX] = r[2];
	c->r[X86_RDX] = r[3];
}

uint64_t emu_rdtsc(struct emu_cpu *c)
{
	if ((c->cr4 & (1ULL << 2)) && c->cpl != 0)
		emu_raise_gp(c, 0);
	return emu_now(c);
}

void emu_hlt(struct emu_cpu *c)
{
	need_cpl0(c);
	c->halted = 1;
	atomic_fetch_or_explicit(&c->attn, EMU_ATTN_HLT, memory_order_relaxed);
}

/* Port I/O above the I/O privilege level would consult the TSS bitmap: not modelled. */
static void io_allowed(struct emu_cpu *c)
{
	if (c->mode != EMU_MODE_REAL && (unsigned)c->cpl > ((c->flags & X86_IOPL) >> 12))
		emu_raise_gp(c, 0);
}

uint64_t emu_in(struct emu_cpu *c, uint16_t port, unsigned size)
{
	uint64_t v = 0;

	io_allowed(c);
	io_port(c->io, port, size, false, &v);
	return size >= 8 ? v : v & ((1ULL << (size * 8)) - 1);
}

void emu_out(struct emu_cpu *c, uint16_t port, unsigned size, uint64_t val)
{
	io_allowed(c);
	io_port(c->io, port, size, true, &val);
}
