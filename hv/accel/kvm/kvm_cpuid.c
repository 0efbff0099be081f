/*
 * kvm_cpuid.c - the CPUID table a KVM vCPU sees.
 *
 * KVM_GET_SUPPORTED_CPUID says what KVM can virtualise on this host; each vCPU gets that
 * table with what is particular to it patched in (kvmtool's filter_cpuid, QEMU's
 * cpu_x86_cpuid): its APIC id in leaves 1, 0xb, 0x1f and 0x8000001e, the hypervisor bit,
 * x2APIC and the TSC-deadline timer (both emulated by the in-kernel LAPIC). KVM's own
 * leaves at 0x40000000 ("KVMKVMKVM") stay, so Linux guests recognise KVM, but only the
 * paravirtual features without state of their own remain: kvmclock, async page faults,
 * steal time, PV EOI and poll control keep their state in MSRs that struct x86_state
 * does not carry, and a guest using them could not be saved faithfully. A timing leaf
 * 0x40000010 (VMware's convention, which QEMU also follows: EAX = TSC kHz, EBX = APIC bus
 * kHz) tells the guest runtime the TSC frequency that CPUID 0x15 rarely gives in a VM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <asm/kvm_para.h>

#include "hv/accel/kvm/kvm_int.h"

#define CPUID_TIMING_LEAF 0x40000010
#define KVM_APIC_BUS_KHZ  1000000 /* the in-kernel LAPIC timer counts at 1 GHz */

#define F1_ECX_X2APIC       (1U << 21)
#define F1_ECX_TSC_DEADLINE (1U << 24)
#define F1_ECX_HYPERVISOR   (1U << 31)

/* KVM paravirtual features that hold no state outside x86_state. */
#define KVM_PV_KEEP                                                                                \
	((1U << KVM_FEATURE_NOP_IO_DELAY) | (1U << KVM_FEATURE_PV_UNHALT) |                        \
	 (1U << KVM_FEATURE_PV_SEND_IPI) | (1U << KVM_FEATURE_PV_SCHED_YIELD) |                    \
	 (1U << KVM_FEATURE_MSI_EXT_DEST_ID))

static void patch_entry(struct kvm_cpuid_entry2 *e, const struct kvm_vmstate *kv, unsigned id,
                        unsigned nvcpus, int tsc_khz)
{
	switch (e->function) {
	case 1:
		e->ebx =
		    (e->ebx & 0x0000ffffU) | (id << 24) | ((nvcpus > 255 ? 255 : nvcpus) << 16);
		e->ecx |= F1_ECX_HYPERVISOR | F1_ECX_X2APIC;
		if (kv->tsc_deadline)
			e->ecx |= F1_ECX_TSC_DEADLINE;
		break;
	case 0xb:
	case 0x1f:
		e->edx = id; /* x2APIC id, every sub-leaf */
		break;
	case 0x8000001e:
		e->eax = id; /* AMD extended APIC id */
		break;
	case KVM_CPUID_SIGNATURE:
		if (tsc_khz > 0 && e->eax < CPUID_TIMING_LEAF)
			e->eax = CPUID_TIMING_LEAF;
		break;
	case KVM_CPUID_FEATURES: e->eax &= KVM_PV_KEEP; break;
	}
}

int kvm_cpuid_setup(struct kvm_vmstate *kv, struct kvm_vcpustate *kc, unsigned id, unsigned nvcpus,
                    struct hv_error *err)
{
	const struct kvm_cpuid2 *src = kv->cpuid;
	struct kvm_cpuid2 *c;
	bool have_sig = false, have_timing = false;
	int tsc_khz, r;

	c = calloc(1, sizeof(*c) + (src->nent + 1) * sizeof(c->entries[0]));
	if (!c)
		return hv_fail(err, ENOMEM, "kvm: out of memory");
	for (uint32_t i = 0; i < src->nent; i++) {
		have_sig |= src->entries[i].function == KVM_CPUID_SIGNATURE;
		have_timing |= src->entries[i].function == CPUID_TIMING_LEAF;
	}
	tsc_khz = have_sig && !have_timing ? ioctl(kc->fd, KVM_GET_TSC_KHZ, 0) : -1;

	c->nent = src->nent;
	memcpy(c->entries, src->entries, src->nent * sizeof(c->entries[0]));
	for (uint32_t i = 0; i < c->nent; i++)
		patch_entry(&c->entries[i], kv, id, nvcpus, tsc_khz);
	if (tsc_khz > 0)
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){.function = CPUID_TIMING_LEAF,
		                                                  .eax = (uint32_t)tsc_khz,
		                                                  .ebx = KVM_APIC_BUS_KHZ};

	do
		r = ioctl(kc->fd, KVM_SET_CPUID2, c);
	while (r < 0 && errno == EINTR);
	free(c);
	if (r < 0)
		return hv_fail(err, errno, "kvm: vcpu %u: KVM_SET_CPUID2: %s", id, strerror(errno));
	return 0;
}
