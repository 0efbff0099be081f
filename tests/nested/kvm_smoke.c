// kvm_smoke - a self-contained check that /dev/kvm works (run inside the nested lane).
//
//   kvm_smoke          run the checks, print the capability table, exit 0 when all pass
//   kvm_smoke --caps   only print the capability table
//
// Checks: KVM_GET_API_VERSION == 12; a VM with one memory slot (dirty logging on) and one
// vCPU runs a few real-mode instructions:
//     mov $0x42, %al ; out %al, $0xf4 ; mov %al, (0x3000) ; hlt
// which must give KVM_EXIT_IO (port 0xf4, one byte 0x42, out), then KVM_EXIT_HLT, with the
// byte in guest memory and page 3 set in KVM_GET_DIRTY_LOG. When the kernel offers the
// dirty ring (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]) the same program runs once more in a VM
// with the ring enabled and page 3 must show up in the vCPU's ring.
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
#define KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 168
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING
#define KVM_CAP_DIRTY_LOG_RING 192
#endif
#ifndef KVM_CAP_XSAVE2
#define KVM_CAP_XSAVE2 208
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif

#define MEM_SIZE 0x10000u /* one 64 KiB slot at GPA 0 */
#define CODE_GPA 0x1000u
#define DATA_GPA 0x3000u
#define PORT 0xf4

static int failures;

static void check(int ok, const char *what)
{
	printf("%s - %s\n", ok ? "ok" : "not ok", what);
	if (!ok)
		failures++;
}

struct cap {
	const char *name;
	int nr;
};
#define CAP(x) {#x, KVM_CAP_##x}
static const struct cap caps[] = {
	CAP(IRQCHIP), CAP(HLT), CAP(USER_MEMORY), CAP(SET_TSS_ADDR), CAP(EXT_CPUID),
	CAP(NR_VCPUS), CAP(MAX_VCPUS), CAP(NR_MEMSLOTS), CAP(PIT2), CAP(IRQ_ROUTING),
	CAP(ADJUST_CLOCK), CAP(VCPU_EVENTS), CAP(DEBUGREGS), CAP(XSAVE), CAP(XCRS),
	CAP(TSC_CONTROL), CAP(GET_TSC_KHZ), CAP(TSC_DEADLINE_TIMER), CAP(SYNC_REGS),
	CAP(READONLY_MEM), CAP(X86_SMM), CAP(SPLIT_IRQCHIP), CAP(X2APIC_API),
	CAP(IMMEDIATE_EXIT), CAP(NESTED_STATE), CAP(EXCEPTION_PAYLOAD),
	CAP(MANUAL_DIRTY_LOG_PROTECT2), CAP(X86_USER_SPACE_MSR), CAP(DIRTY_LOG_RING),
	CAP(XSAVE2), CAP(DIRTY_LOG_RING_ACQ_REL),
};

static void print_caps(int kvm)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	printf("# KVM_CHECK_EXTENSION (system fd / VM fd):\n");
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		int s = ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].nr);
		int v = vm >= 0 ? ioctl(vm, KVM_CHECK_EXTENSION, caps[i].nr) : -1;
		printf("#   KVM_CAP_%-28s (%3d) = %d / %d\n", caps[i].name, caps[i].nr, s, v);
	}
	if (vm >= 0)
		close(vm);
}

// The guest: real mode, CS base 0, IP CODE_GPA.
static const uint8_t code[] = {
	0xb0, 0x42,             // mov $0x42, %al
	0xe6, PORT,             // out %al, $0xf4
	0xa2, 0x00, 0x30,       // mov %al, (0x3000)   (moffs16 in real mode)
	0xf4,                   // hlt
};

struct vm {
	int fd, vcpu;
	uint8_t *mem;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_dirty_gfn *ring;
	uint32_t ring_entries;
};

static int vm_setup(int kvm, struct vm *v, uint32_t ring_bytes, int ring_cap)
{
	memset(v, 0, sizeof(*v));
	v->fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (v->fd < 0) {
		perror("KVM_CREATE_VM");
		return -1;
	}
	if (ring_bytes) {
		struct kvm_enable_cap ec = {.cap = ring_cap, .args = {ring_bytes}};
		if (ioctl(v->fd, KVM_ENABLE_CAP, &ec) < 0) {
			perror("KVM_ENABLE_CAP(dirty ring)");
			return -1;
		}
	}
	v->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (v->mem == MAP_FAILED) {
		perror("mmap guest memory");
		return -1;
	}
	memcpy(v->mem + CODE_GPA, code, sizeof(code));
	struct kvm_userspace_memory_region r = {
		.slot = 0,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = 0,
		.memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)v->mem,
	};
	if (ioctl(v->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		perror("KVM_SET_USER_MEMORY_REGION");
		return -1;
	}
	v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0) {
		perror("KVM_CREATE_VCPU");
		return -1;
	}
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run)) {
		perror("KVM_GET_VCPU_MMAP_SIZE");
		return -1;
	}
	v->run_size = sz;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED) {
		perror("mmap kvm_run");
		return -1;
	}
	if (ring_bytes) {
		long pg = sysconf(_SC_PAGESIZE);
		v->ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu,
			       KVM_DIRTY_LOG_PAGE_OFFSET * pg);
		if (v->ring == MAP_FAILED) {
			perror("mmap dirty ring");
			return -1;
		}
		v->ring_entries = ring_bytes / sizeof(struct kvm_dirty_gfn);
	}

	struct kvm_sregs sregs;
	if (ioctl(v->vcpu, KVM_GET_SREGS, &sregs) < 0) {
		perror("KVM_GET_SREGS");
		return -1;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	if (ioctl(v->vcpu, KVM_SET_SREGS, &sregs) < 0) {
		perror("KVM_SET_SREGS");
		return -1;
	}
	struct kvm_regs regs = {.rip = CODE_GPA, .rflags = 0x2};
	if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0) {
		perror("KVM_SET_REGS");
		return -1;
	}
	return 0;
}

static void vm_free(struct vm *v)
{
	if (v->ring && v->ring != MAP_FAILED)
		munmap(v->ring, v->ring_entries * sizeof(struct kvm_dirty_gfn));
	if (v->run && v->run != MAP_FAILED)
		munmap(v->run, v->run_size);
	if (v->mem && v->mem != MAP_FAILED)
		munmap(v->mem, MEM_SIZE);
	if (v->vcpu > 0)
		close(v->vcpu);
	if (v->fd > 0)
		close(v->fd);
}

static const char *exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	default: return "other";
	}
}

// Runs the guest program; returns 0 when every exit was as expected.
static int run_program(struct vm *v, const char *tag)
{
	char what[128];
	if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
		printf("# %s: KVM_RUN: %s\n", tag, strerror(errno));
		check(0, "KVM_RUN (first)");
		return -1;
	}
	struct kvm_run *r = v->run;
	snprintf(what, sizeof(what), "%s: first exit is KVM_EXIT_IO (got %u %s)", tag,
		 r->exit_reason, exit_name(r->exit_reason));
	check(r->exit_reason == KVM_EXIT_IO, what);
	if (r->exit_reason != KVM_EXIT_IO)
		return -1;
	uint8_t val = *((uint8_t *)r + r->io.data_offset);
	snprintf(what, sizeof(what),
		 "%s: out port 0x%x size %u count %u dir %u value 0x%02x (want 0xf4 1 1 out 0x42)",
		 tag, r->io.port, r->io.size, r->io.count, r->io.direction, val);
	check(r->io.port == PORT && r->io.size == 1 && r->io.count == 1 &&
		      r->io.direction == KVM_EXIT_IO_OUT && val == 0x42,
	      what);

	if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
		printf("# %s: KVM_RUN: %s\n", tag, strerror(errno));
		check(0, "KVM_RUN (second)");
		return -1;
	}
	snprintf(what, sizeof(what), "%s: second exit is KVM_EXIT_HLT (got %u %s)", tag,
		 r->exit_reason, exit_name(r->exit_reason));
	check(r->exit_reason == KVM_EXIT_HLT, what);
	snprintf(what, sizeof(what), "%s: guest stored 0x42 at 0x3000 (got 0x%02x)", tag,
		 v->mem[DATA_GPA]);
	check(v->mem[DATA_GPA] == 0x42, what);
	struct kvm_regs regs;
	if (ioctl(v->vcpu, KVM_GET_REGS, &regs) == 0) {
		snprintf(what, sizeof(what), "%s: rip after hlt 0x%llx (want 0x%x)", tag,
			 (unsigned long long)regs.rip, CODE_GPA + (unsigned)sizeof(code));
		check(regs.rip == CODE_GPA + sizeof(code), what);
	}
	return 0;
}

static void test_bitmap(int kvm)
{
	struct vm v;
	if (vm_setup(kvm, &v, 0, 0) < 0) {
		check(0, "bitmap: VM setup");
		vm_free(&v);
		return;
	}
	check(1, "bitmap: VM with one memslot and one vCPU");
	if (run_program(&v, "bitmap") == 0) {
		uint64_t bitmap[(MEM_SIZE / 4096 + 63) / 64] = {0};
		struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = bitmap};
		int rc = ioctl(v.fd, KVM_GET_DIRTY_LOG, &log);
		char what[128];
		snprintf(what, sizeof(what), "bitmap: KVM_GET_DIRTY_LOG rc %d, bitmap 0x%llx (want bit 3)",
			 rc, (unsigned long long)bitmap[0]);
		check(rc == 0 && (bitmap[0] & (1u << (DATA_GPA / 4096))), what);
	}
	vm_free(&v);
}

static void test_ring(int kvm)
{
	int cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	int max = ioctl(kvm, KVM_CHECK_EXTENSION, cap);
	if (max <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(kvm, KVM_CHECK_EXTENSION, cap);
	}
	if (max <= 0) {
		printf("# dirty ring not offered: ring test skipped\n");
		return;
	}
	uint32_t bytes = 4096 * 4;
	if ((int)bytes > max)
		bytes = max;
	printf("# dirty ring: cap %d, max %d bytes, using %u\n", cap, max, bytes);
	struct vm v;
	if (vm_setup(kvm, &v, bytes, cap) < 0) {
		check(0, "ring: VM setup with dirty ring");
		vm_free(&v);
		return;
	}
	check(1, "ring: VM with dirty ring enabled");
	if (run_program(&v, "ring") == 0) {
		int found = 0, n = 0;
		for (uint32_t i = 0; i < v.ring_entries; i++) {
			struct kvm_dirty_gfn *e = &v.ring[i];
			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			n++;
			if (e->slot == 0 && e->offset == DATA_GPA / 4096)
				found = 1;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		}
		char what[128];
		snprintf(what, sizeof(what), "ring: %d entries harvested, page 3 among them", n);
		check(found, what);
		int rc = ioctl(v.fd, KVM_RESET_DIRTY_RINGS, 0);
		snprintf(what, sizeof(what), "ring: KVM_RESET_DIRTY_RINGS returned %d (want %d)", rc, n);
		check(rc == n, what);
	}
	vm_free(&v);
}

int main(int argc, char **argv)
{
	int caps_only = argc > 1 && !strcmp(argv[1], "--caps");
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("not ok - open /dev/kvm: %s\n", strerror(errno));
		return 1;
	}
	if (caps_only) {
		print_caps(kvm);
		return 0;
	}
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	char what[64];
	snprintf(what, sizeof(what), "KVM_GET_API_VERSION = %d (want 12)", api);
	check(api == KVM_API_VERSION, what);
	print_caps(kvm);
	test_bitmap(kvm);
	test_ring(kvm);
	close(kvm);
	printf("kvm_smoke: %d failures\n", failures);
	return failures ? 1 : 0;
}
