/*
 * kvm_state.c - a KVM vCPU's state in and out of struct x86_state, and the VM-level state.
 *
 * The order is Firecracker's (vcpu.rs), for the reasons its comments give:
 *   save:    MP_STATE (it first makes KVM accept pending INIT/SIPI), REGS, SREGS, XSAVE,
 *            XCRS, DEBUGREGS, LAPIC, MSRs, VCPU_EVENTS last;
 *   restore: (CPUID was set at vcpu_init) MP_STATE, REGS (clears pending exceptions, so
 *            before VCPU_EVENTS), SREGS (carries the APIC base, so before LAPIC), XSAVE,
 *            XCRS, DEBUGREGS, LAPIC, MSRs (TSC before TSC_DEADLINE, which needs a LAPIC),
 *            VCPU_EVENTS.
 * EFER, FS/GS base, CR8 and APIC_BASE travel in SREGS; the other MSRs x86_state names go
 * through KVM_{GET,SET}_MSRS, limited to those this KVM accepts (probed once per vCPU).
 * XSAVE: x86_state holds 4 KiB. When KVM_CAP_XSAVE2 says the area is larger (dynamic
 * features such as AMX, which KVM only offers after arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM),
 * which hv never asks for), the bytes beyond 4 KiB are not saved; a restore keeps the
 * target vCPU's own. Without KVM_CAP_XSAVE the legacy FXSAVE image goes through KVM_GET_FPU.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hv/accel/kvm/kvm.h"
#include "hv/accel/kvm/kvm_int.h"
#include "hv/state_io.h"
#include "hv/accel.h"
#include "hv/vm.h"

#define XSAVE_XSTATE_BV 512

/* The named MSRs, in restore order: TSC first, TSC_DEADLINE (needs the LAPIC) last. */
static const struct {
	uint32_t index;
	size_t off;
	const char *name;
} state_msrs[KVM_NR_STATE_MSRS] = {
#define M(idx, field)                                                                              \
	{                                                                                          \
		idx, offsetof(struct x86_state, field), #idx                                       \
	}
    M(MSR_IA32_TSC, tsc),
    M(MSR_IA32_SYSENTER_CS, sysenter_cs),
    M(MSR_IA32_SYSENTER_ESP, sysenter_esp),
    M(MSR_IA32_SYSENTER_EIP, sysenter_eip),
    M(MSR_IA32_PAT, pat),
    M(MSR_IA32_MISC_ENABLE, misc_enable),
    M(MSR_STAR, star),
    M(MSR_LSTAR, lstar),
    M(MSR_CSTAR, cstar),
    M(MSR_SYSCALL_MASK, syscall_mask),
    M(MSR_KERNEL_GS_BASE, kernel_gs_base),
    M(MSR_TSC_AUX, tsc_aux),
    M(MSR_IA32_TSC_DEADLINE, tsc_deadline),
#undef M
};

/* struct kvm_msrs with room for our entries (spelled out: a flexible-array struct
 * inside another is a GNU extension). */
struct msr_buf {
	uint32_t nmsrs;
	uint32_t pad;
	struct kvm_msr_entry e[KVM_NR_STATE_MSRS];
};
_Static_assert(offsetof(struct msr_buf, e) == offsetof(struct kvm_msrs, entries),
               "msr_buf must match struct kvm_msrs");

static int vioctl(struct kvm_vcpustate *kc, unsigned long req, void *arg, const char *name,
                  struct hv_error *err)
{
	int r;

	do
		r = ioctl(kc->fd, req, arg);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return hv_fail(err, errno, "kvm: vcpu %u: %s: %s", kc->vcpu->id, name,
		               strerror(errno));
	return r;
}

#define VIOCTL(kc, req, arg, err) vioctl(kc, req, arg, #req, err)

/* Fill @b with the MSRs whose bit is set in @mask; @idx maps entries back to state_msrs. */
static unsigned msr_list(uint32_t mask, struct msr_buf *b, int idx[KVM_NR_STATE_MSRS])
{
	unsigned n = 0;

	memset(b, 0, sizeof(*b));
	for (int i = 0; i < KVM_NR_STATE_MSRS; i++)
		if (mask & (1U << i)) {
			b->e[n].index = state_msrs[i].index;
			idx[n++] = i;
		}
	b->nmsrs = n;
	return n;
}

int kvm_state_probe_msrs(struct kvm_vcpustate *kc, unsigned id, struct hv_error *err)
{
	uint32_t mask = (1U << KVM_NR_STATE_MSRS) - 1;
	struct msr_buf b;
	int idx[KVM_NR_STATE_MSRS];

	/* KVM_GET_MSRS stops at the first MSR it refuses: drop that one and ask again. */
	for (;;) {
		unsigned n = msr_list(mask, &b, idx);
		int r = VIOCTL(kc, KVM_GET_MSRS, &b, err);

		if (r < 0)
			return -1;
		if ((unsigned)r >= n)
			break;
		mask &= ~(1U << idx[r]);
	}
	kc->msr_ok = mask;
	return 0;
}

int kvm_state_init_msrs(struct kvm_vcpustate *kc, unsigned id, struct hv_error *err)
{
	struct msr_buf b;

	for (int i = 0; i < KVM_NR_STATE_MSRS; i++)
		if (state_msrs[i].index == MSR_IA32_MISC_ENABLE && (kc->msr_ok & (1U << i))) {
			memset(&b, 0, sizeof(b));
			b.nmsrs = 1;
			b.e[0].index = MSR_IA32_MISC_ENABLE;
			b.e[0].data = 1; /* fast strings, as x86_state_reset */
			if (VIOCTL(kc, KVM_SET_MSRS, &b, err) < 0)
				return -1;
		}
	return 0;
}

/* ---- segments ---- */

static void seg_from_kvm(struct x86_seg *d, const struct kvm_segment *s)
{
	*d = (struct x86_seg){.base = s->base,
	                      .limit = s->limit,
	                      .selector = s->selector,
	                      .type = s->type,
	                      .present = s->present,
	                      .dpl = s->dpl,
	                      .db = s->db,
	                      .s = s->s,
	                      .l = s->l,
	                      .g = s->g,
	                      .avl = s->avl,
	                      .unusable = s->unusable};
}

static void seg_to_kvm(struct kvm_segment *d, const struct x86_seg *s)
{
	*d = (struct kvm_segment){.base = s->base,
	                          .limit = s->limit,
	                          .selector = s->selector,
	                          .type = s->type,
	                          .present = s->present,
	                          .dpl = s->dpl,
	                          .db = s->db,
	                          .s = s->s,
	                          .l = s->l,
	                          .g = s->g,
	                          .avl = s->avl,
	                          .unusable = s->unusable};
}

static struct kvm_segment *kvm_sreg(struct kvm_sregs *k, int i)
{
	switch (i) {
	case X86_ES: return &k->es;
	case X86_CS: return &k->cs;
	case X86_SS: return &k->ss;
	case X86_DS: return &k->ds;
	case X86_FS: return &k->fs;
	default: return &k->gs;
	}
}

/* ---- FPU without XSAVE: struct kvm_fpu <-> the FXSAVE image (SDM Table 10-2) ---- */

static void fpu_to_fxsave(uint8_t *x, const struct kvm_fpu *f)
{
	memset(x, 0, 512);
	memcpy(x + 0, &f->fcw, 2);
	memcpy(x + 2, &f->fsw, 2);
	x[4] = f->ftwx;
	memcpy(x + 6, &f->last_opcode, 2);
	memcpy(x + 8, &f->last_ip, 8);
	memcpy(x + 16, &f->last_dp, 8);
	memcpy(x + 24, &f->mxcsr, 4);
	memcpy(x + 32, f->fpr, sizeof(f->fpr));
	memcpy(x + 160, f->xmm, sizeof(f->xmm));
}

static void fxsave_to_fpu(struct kvm_fpu *f, const uint8_t *x)
{
	memset(f, 0, sizeof(*f));
	memcpy(&f->fcw, x + 0, 2);
	memcpy(&f->fsw, x + 2, 2);
	f->ftwx = x[4];
	memcpy(&f->last_opcode, x + 6, 2);
	memcpy(&f->last_ip, x + 8, 8);
	memcpy(&f->last_dp, x + 16, 8);
	memcpy(&f->mxcsr, x + 24, 4);
	memcpy(f->fpr, x + 32, sizeof(f->fpr));
	memcpy(f->xmm, x + 160, sizeof(f->xmm));
}

static int xsave_get(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, uint8_t *out,
                     struct hv_error *err)
{
	if (!kv->has_xsave) {
		struct kvm_fpu f;
		uint64_t bv = 3; /* x87 and SSE */

		if (VIOCTL(kc, KVM_GET_FPU, &f, err) < 0)
			return -1;
		memset(out, 0, X86_XSAVE_SIZE);
		fpu_to_fxsave(out, &f);
		memcpy(out + XSAVE_XSTATE_BV, &bv, 8);
		return 0;
	}
	if (kv->xsave_size > X86_XSAVE_SIZE) {
		void *buf = calloc(1, (size_t)kv->xsave_size);
		int r;

		if (!buf)
			return hv_fail(err, ENOMEM, "kvm: out of memory");
		r = VIOCTL(kc, KVM_GET_XSAVE2, buf, err);
		if (r >= 0)
			memcpy(out, buf, X86_XSAVE_SIZE);
		free(buf);
		return r < 0 ? -1 : 0;
	}
	return VIOCTL(kc, KVM_GET_XSAVE, out, err) < 0 ? -1 : 0;
}

static int xsave_set(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, const uint8_t *in,
                     struct hv_error *err)
{
	if (!kv->has_xsave) {
		struct kvm_fpu f;

		fxsave_to_fpu(&f, in);
		return VIOCTL(kc, KVM_SET_FPU, &f, err) < 0 ? -1 : 0;
	}
	if (kv->xsave_size > X86_XSAVE_SIZE) {
		uint8_t *buf = calloc(1, (size_t)kv->xsave_size);
		int r;

		if (!buf)
			return hv_fail(err, ENOMEM, "kvm: out of memory");
		r = VIOCTL(kc, KVM_GET_XSAVE2, buf, err); /* keep our own bytes past 4 KiB */
		if (r >= 0) {
			memcpy(buf, in, X86_XSAVE_SIZE);
			r = VIOCTL(kc, KVM_SET_XSAVE, buf, err);
		}
		free(buf);
		return r < 0 ? -1 : 0;
	}
	return VIOCTL(kc, KVM_SET_XSAVE, (void *)in, err) < 0 ? -1 : 0;
}

/* ---- MP state ---- */

static int mp_from_kvm(uint32_t k, uint32_t *out)
{
	switch (k) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_SIPI_RECEIVED: *out = X86_MP_RUNNABLE; return 0;
	case KVM_MP_STATE_HALTED: *out = X86_MP_HALTED; return 0;
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED: *out = X86_MP_UNINITIALIZED; return 0;
	}
	return -1;
}

static int mp_to_kvm(uint32_t s, uint32_t *out)
{
	switch (s) {
	case X86_MP_RUNNABLE: *out = KVM_MP_STATE_RUNNABLE; return 0;
	case X86_MP_HALTED: *out = KVM_MP_STATE_HALTED; return 0;
	case X86_MP_UNINITIALIZED: *out = KVM_MP_STATE_UNINITIALIZED; return 0;
	}
	return -1;
}

/* ---- the vCPU ---- */

int kvm_state_get(struct vcpu *v, struct x86_state *s, struct hv_error *err)
{
	struct kvm_vcpustate *kc = v->accel;
	struct kvm_vmstate *kv = v->vm->accel_vm;
	struct kvm_mp_state mp;
	struct kvm_regs r;
	struct kvm_sregs sr;
	struct kvm_debugregs dr;
	struct kvm_vcpu_events ev;
	struct msr_buf b;
	int idx[KVM_NR_STATE_MSRS];
	unsigned n;
	int got;

	memset(s, 0, sizeof(*s));
	if (VIOCTL(kc, KVM_GET_MP_STATE, &mp, err) < 0)
		return -1;
	if (mp_from_kvm(mp.mp_state, &s->mp_state) < 0)
		return hv_fail(err, EINVAL, "kvm: vcpu %u: unknown MP state %u", v->id,
		               mp.mp_state);

	if (VIOCTL(kc, KVM_GET_REGS, &r, err) < 0)
		return -1;
	s->gpr[X86_RAX] = r.rax, s->gpr[X86_RCX] = r.rcx, s->gpr[X86_RDX] = r.rdx;
	s->gpr[X86_RBX] = r.rbx, s->gpr[X86_RSP] = r.rsp, s->gpr[X86_RBP] = r.rbp;
	s->gpr[X86_RSI] = r.rsi, s->gpr[X86_RDI] = r.rdi;
	s->gpr[X86_R8] = r.r8, s->gpr[X86_R9] = r.r9, s->gpr[X86_R10] = r.r10;
	s->gpr[X86_R11] = r.r11, s->gpr[X86_R12] = r.r12, s->gpr[X86_R13] = r.r13;
	s->gpr[X86_R14] = r.r14, s->gpr[X86_R15] = r.r15;
	s->rip = r.rip, s->rflags = r.rflags;

	if (VIOCTL(kc, KVM_GET_SREGS, &sr, err) < 0)
		return -1;
	for (int i = 0; i < X86_NR_SREGS; i++)
		seg_from_kvm(&s->seg[i], kvm_sreg(&sr, i));
	seg_from_kvm(&s->tr, &sr.tr);
	seg_from_kvm(&s->ldt, &sr.ldt);
	s->gdt = (struct x86_dtable){.base = sr.gdt.base, .limit = sr.gdt.limit};
	s->idt = (struct x86_dtable){.base = sr.idt.base, .limit = sr.idt.limit};
	s->cr0 = sr.cr0, s->cr2 = sr.cr2, s->cr3 = sr.cr3, s->cr4 = sr.cr4, s->cr8 = sr.cr8;
	s->efer = sr.efer, s->apic_base = sr.apic_base;

	if (xsave_get(kv, kc, s->xsave, err) < 0)
		return -1;
	s->xcr0 = 1;
	if (kv->has_xcrs) {
		struct kvm_xcrs x;

		if (VIOCTL(kc, KVM_GET_XCRS, &x, err) < 0)
			return -1;
		for (uint32_t i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
			if (x.xcrs[i].xcr == 0)
				s->xcr0 = x.xcrs[i].value;
	}

	if (VIOCTL(kc, KVM_GET_DEBUGREGS, &dr, err) < 0)
		return -1;
	memcpy(s->dr, dr.db, sizeof(dr.db));
	s->dr[6] = dr.dr6, s->dr[7] = dr.dr7;

	/* struct kvm_lapic_state is exactly the 1 KiB xAPIC register page. */
	_Static_assert(sizeof(struct kvm_lapic_state) == sizeof(s->lapic), "LAPIC page size");
	if (VIOCTL(kc, KVM_GET_LAPIC, &s->lapic, err) < 0)
		return -1;

	n = msr_list(kc->msr_ok, &b, idx);
	got = VIOCTL(kc, KVM_GET_MSRS, &b, err);
	if (got < 0)
		return -1;
	if ((unsigned)got < n)
		return hv_fail(err, EIO, "kvm: vcpu %u: KVM_GET_MSRS: %s refused", v->id,
		               state_msrs[idx[got]].name);
	for (unsigned i = 0; i < n; i++)
		memcpy((uint8_t *)s + state_msrs[idx[i]].off, &b.e[i].data, 8);

	if (VIOCTL(kc, KVM_GET_VCPU_EVENTS, &ev, err) < 0)
		return -1;
	s->events = (struct x86_events){
	    .exception_injected = ev.exception.injected,
	    .exception_nr = ev.exception.nr,
	    .exception_has_error = ev.exception.has_error_code,
	    .exception_pending = ev.exception.pending,
	    .exception_error = ev.exception.error_code,
	    .interrupt_injected = ev.interrupt.injected,
	    .interrupt_nr = ev.interrupt.nr,
	    .interrupt_soft = ev.interrupt.soft,
	    .interrupt_shadow = ev.interrupt.shadow, /* KVM_X86_SHADOW_INT_{MOV_SS,STI} */
	    .nmi_injected = ev.nmi.injected,
	    .nmi_pending = ev.nmi.pending,
	    .nmi_masked = ev.nmi.masked,
	};
	s->icount = 0;
	return 0;
}

int kvm_state_set(struct vcpu *v, const struct x86_state *s, struct hv_error *err)
{
	struct kvm_vcpustate *kc = v->accel;
	struct kvm_vmstate *kv = v->vm->accel_vm;
	struct kvm_mp_state mp;
	struct kvm_regs r;
	struct kvm_sregs sr;
	struct kvm_debugregs dr;
	struct kvm_vcpu_events ev;
	struct kvm_lapic_state lapic;
	struct msr_buf b;
	int idx[KVM_NR_STATE_MSRS];
	unsigned n;
	int put;

	if (mp_to_kvm(s->mp_state, &mp.mp_state) < 0)
		return hv_fail(err, EINVAL, "kvm: vcpu %u: unknown MP state %u", v->id,
		               s->mp_state);
	if (VIOCTL(kc, KVM_SET_MP_STATE, &mp, err) < 0)
		return -1;

	memset(&r, 0, sizeof(r));
	r.rax = s->gpr[X86_RAX], r.rcx = s->gpr[X86_RCX], r.rdx = s->gpr[X86_RDX];
	r.rbx = s->gpr[X86_RBX], r.rsp = s->gpr[X86_RSP], r.rbp = s->gpr[X86_RBP];
	r.rsi = s->gpr[X86_RSI], r.rdi = s->gpr[X86_RDI];
	r.r8 = s->gpr[X86_R8], r.r9 = s->gpr[X86_R9], r.r10 = s->gpr[X86_R10];
	r.r11 = s->gpr[X86_R11], r.r12 = s->gpr[X86_R12], r.r13 = s->gpr[X86_R13];
	r.r14 = s->gpr[X86_R14], r.r15 = s->gpr[X86_R15];
	r.rip = s->rip, r.rflags = s->rflags | X86_RFLAGS_FIXED;
	if (VIOCTL(kc, KVM_SET_REGS, &r, err) < 0)
		return -1;

	memset(&sr, 0, sizeof(sr)); /* interrupt_bitmap empty: events carry injections */
	for (int i = 0; i < X86_NR_SREGS; i++)
		seg_to_kvm(kvm_sreg(&sr, i), &s->seg[i]);
	seg_to_kvm(&sr.tr, &s->tr);
	seg_to_kvm(&sr.ldt, &s->ldt);
	sr.gdt.base = s->gdt.base, sr.gdt.limit = s->gdt.limit;
	sr.idt.base = s->idt.base, sr.idt.limit = s->idt.limit;
	sr.cr0 = s->cr0, sr.cr2 = s->cr2, sr.cr3 = s->cr3, sr.cr4 = s->cr4, sr.cr8 = s->cr8;
	sr.efer = s->efer, sr.apic_base = s->apic_base;
	if (VIOCTL(kc, KVM_SET_SREGS, &sr, err) < 0)
		return -1;

	if (xsave_set(kv, kc, s->xsave, err) < 0)
		return -1;
	if (kv->has_xcrs) {
		struct kvm_xcrs x;

		memset(&x, 0, sizeof(x));
		x.nr_xcrs = 1;
		x.xcrs[0].xcr = 0;
		x.xcrs[0].value = s->xcr0;
		if (VIOCTL(kc, KVM_SET_XCRS, &x, err) < 0)
			return -1;
	}

	memset(&dr, 0, sizeof(dr));
	memcpy(dr.db, s->dr, sizeof(dr.db));
	dr.dr6 = s->dr[6], dr.dr7 = s->dr[7];
	if (VIOCTL(kc, KVM_SET_DEBUGREGS, &dr, err) < 0)
		return -1;

	memcpy(&lapic, &s->lapic, sizeof(lapic));
	if (VIOCTL(kc, KVM_SET_LAPIC, &lapic, err) < 0)
		return -1;

	n = msr_list(kc->msr_ok, &b, idx);
	for (unsigned i = 0; i < n; i++)
		memcpy(&b.e[i].data, (const uint8_t *)s + state_msrs[idx[i]].off, 8);
	put = VIOCTL(kc, KVM_SET_MSRS, &b, err);
	if (put < 0)
		return -1;
	if ((unsigned)put < n)
		return hv_fail(err, EINVAL, "kvm: vcpu %u: KVM_SET_MSRS: %s = 0x%llx refused",
		               v->id, state_msrs[idx[put]].name, (unsigned long long)b.e[put].data);

	memset(&ev, 0, sizeof(ev));
	/* Without KVM_CAP_EXCEPTION_PAYLOAD, KVM has no "pending" exceptions of its own:
	 * a pending one is re-raised by injecting it. */
	ev.exception.injected = s->events.exception_injected || s->events.exception_pending;
	ev.exception.nr = s->events.exception_nr;
	ev.exception.has_error_code = s->events.exception_has_error;
	ev.exception.error_code = s->events.exception_error;
	ev.interrupt.injected = s->events.interrupt_injected;
	ev.interrupt.nr = s->events.interrupt_nr;
	ev.interrupt.soft = s->events.interrupt_soft;
	ev.interrupt.shadow = s->events.interrupt_shadow & 3;
	ev.nmi.injected = s->events.nmi_injected;
	ev.nmi.pending = s->events.nmi_pending;
	ev.nmi.masked = s->events.nmi_masked;
	ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	if (VIOCTL(kc, KVM_SET_VCPU_EVENTS, &ev, err) < 0)
		return -1;
	return 0;
}

/* ---- VM-level state ---- */

static int vm_ioctl(struct kvm_vmstate *kv, unsigned long req, void *arg, const char *name,
                    struct hv_error *err)
{
	int r;

	do
		r = ioctl(kv->vm_fd, req, arg);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return hv_fail(err, errno, "kvm: %s: %s", name, strerror(errno));
	return 0;
}

static struct kvm_vmstate *kvm_of(struct vm *vm, struct hv_error *err)
{
	if (vm->accel != &accel_kvm || !vm->accel_vm) {
		hv_fail(err, EINVAL, "kvm: VM-level state of a VM that does not run on kvm");
		return NULL;
	}
	return vm->accel_vm;
}

int kvm_vm_get_arch(struct vm *vm, struct kvm_vm_arch_state *s, struct hv_error *err)
{
	struct kvm_vmstate *kv = kvm_of(vm, err);

	if (!kv)
		return -1;
	memset(s, 0, sizeof(*s));
	s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (vm_ioctl(kv, KVM_GET_IRQCHIP, &s->pic_master, "KVM_GET_IRQCHIP (PIC master)", err) <
	        0 ||
	    vm_ioctl(kv, KVM_GET_IRQCHIP, &s->pic_slave, "KVM_GET_IRQCHIP (PIC slave)", err) < 0 ||
	    vm_ioctl(kv, KVM_GET_IRQCHIP, &s->ioapic, "KVM_GET_IRQCHIP (IOAPIC)", err) < 0 ||
	    vm_ioctl(kv, KVM_GET_PIT2, &s->pit, "KVM_GET_PIT2", err) < 0 ||
	    vm_ioctl(kv, KVM_GET_CLOCK, &s->clock, "KVM_GET_CLOCK", err) < 0)
		return -1;
	return 0;
}

int kvm_vm_set_arch(struct vm *vm, const struct kvm_vm_arch_state *s, struct hv_error *err)
{
	struct kvm_vmstate *kv = kvm_of(vm, err);
	struct kvm_vm_arch_state c;

	if (!kv)
		return -1;
	c = *s; /* the ioctls take non-const pointers */
	c.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	c.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	c.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	c.clock.flags = 0; /* the value as saved; no KVM_CLOCK_REALTIME adjustment */
	memset(c.clock.pad, 0, sizeof(c.clock.pad));
	if (vm_ioctl(kv, KVM_SET_IRQCHIP, &c.pic_master, "KVM_SET_IRQCHIP (PIC master)", err) < 0 ||
	    vm_ioctl(kv, KVM_SET_IRQCHIP, &c.pic_slave, "KVM_SET_IRQCHIP (PIC slave)", err) < 0 ||
	    vm_ioctl(kv, KVM_SET_IRQCHIP, &c.ioapic, "KVM_SET_IRQCHIP (IOAPIC)", err) < 0 ||
	    vm_ioctl(kv, KVM_SET_PIT2, &c.pit, "KVM_SET_PIT2", err) < 0 ||
	    vm_ioctl(kv, KVM_SET_CLOCK, &c.clock, "KVM_SET_CLOCK", err) < 0)
		return -1;
	return 0;
}

static void pic_io(struct state_io *io, const char *chip, struct kvm_pic_state *p)
{
	char n[48];

#define PIC_U8(f)                                                                                  \
	do {                                                                                       \
		snprintf(n, sizeof(n), "%s.%s", chip, #f);                                         \
		STATE_FIELD(io, n, &p->f);                                                         \
	} while (0)
	PIC_U8(last_irr);
	PIC_U8(irr);
	PIC_U8(imr);
	PIC_U8(isr);
	PIC_U8(priority_add);
	PIC_U8(irq_base);
	PIC_U8(read_reg_select);
	PIC_U8(poll);
	PIC_U8(special_mask);
	PIC_U8(init_state);
	PIC_U8(auto_eoi);
	PIC_U8(rotate_on_auto_eoi);
	PIC_U8(special_fully_nested_mode);
	PIC_U8(init4);
	PIC_U8(elcr);
	PIC_U8(elcr_mask);
#undef PIC_U8
	STATE_CHECK(io, p->priority_add < 8);
	STATE_CHECK(io, (p->irq_base & 7) == 0);
	STATE_CHECK(io, p->init_state <= 3);
	STATE_CHECK(io, p->read_reg_select <= 1 && p->poll <= 1 && p->special_mask <= 1);
	STATE_CHECK(io, p->auto_eoi <= 1 && p->rotate_on_auto_eoi <= 1);
	STATE_CHECK(io, p->special_fully_nested_mode <= 1 && p->init4 <= 1);
	STATE_CHECK(io, (p->elcr & ~p->elcr_mask) == 0);
}

static void ioapic_io(struct state_io *io, struct kvm_ioapic_state *a)
{
	char n[32];

	STATE_FIELD(io, "ioapic.base_address", (uint64_t *)&a->base_address);
	STATE_FIELD(io, "ioapic.ioregsel", (uint32_t *)&a->ioregsel);
	STATE_FIELD(io, "ioapic.id", (uint32_t *)&a->id);
	STATE_FIELD(io, "ioapic.irr", (uint32_t *)&a->irr);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
		snprintf(n, sizeof(n), "ioapic.redirtbl%d", i);
		STATE_FIELD(io, n, (uint64_t *)&a->redirtbl[i].bits);
	}
	STATE_CHECK(io, a->base_address == 0xfec00000u);
	STATE_CHECK(io, a->ioregsel <= 0xff);
	STATE_CHECK(io, a->id < 16);
	STATE_CHECK(io, a->irr < (1u << KVM_IOAPIC_NUM_PINS));
}

static void pit_channel_io(struct state_io *io, int i, struct kvm_pit_channel_state *c)
{
	uint64_t load_time = (uint64_t)c->count_load_time;
	char n[48];

#define PIT_FIELD(f)                                                                               \
	do {                                                                                       \
		snprintf(n, sizeof(n), "pit.ch%d.%s", i, #f);                                      \
		STATE_FIELD(io, n, &c->f);                                                         \
	} while (0)
	PIT_FIELD(count);
	PIT_FIELD(latched_count);
	PIT_FIELD(count_latched);
	PIT_FIELD(status_latched);
	PIT_FIELD(status);
	PIT_FIELD(read_state);
	PIT_FIELD(write_state);
	PIT_FIELD(write_latch);
	PIT_FIELD(rw_mode);
	PIT_FIELD(mode);
	PIT_FIELD(bcd);
	PIT_FIELD(gate);
#undef PIT_FIELD
	snprintf(n, sizeof(n), "pit.ch%d.count_load_time", i);
	STATE_FIELD(io, n, &load_time);
	c->count_load_time = (int64_t)load_time;
	STATE_CHECK(io, c->count <= 0x10000);
	STATE_CHECK(io, c->count_latched <= 3 && c->status_latched <= 1);
	STATE_CHECK(io, c->read_state <= 4 && c->write_state <= 4 && c->rw_mode <= 3);
	STATE_CHECK(io, c->mode <= 5 || c->mode == 0xff); /* 0xff: never programmed */
	STATE_CHECK(io, c->bcd <= 1 && c->gate <= 1);
}

int kvm_vm_arch_io(struct state_io *io, struct kvm_vm_arch_state *s)
{
	if (io->loading)
		memset(s, 0, sizeof(*s));
	pic_io(io, "pic_master", &s->pic_master.chip.pic);
	pic_io(io, "pic_slave", &s->pic_slave.chip.pic);
	ioapic_io(io, &s->ioapic.chip.ioapic);
	for (int i = 0; i < 3; i++)
		pit_channel_io(io, i, &s->pit.channels[i]);
	STATE_FIELD(io, "pit.flags", (uint32_t *)&s->pit.flags);
	STATE_CHECK(io, (s->pit.flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY |
	                                            KVM_PIT_FLAGS_SPEAKER_DATA_ON)) == 0);
	STATE_FIELD(io, "clock", (uint64_t *)&s->clock.clock);
	return state_io_result(io);
}
