/*
 * kvm.c - the KVM backend (x86-64, VT-x/AMD-V): probe, VM and vCPU set-up, the run loop.
 *
 * Each vCPU thread sits in KVM_RUN. The in-kernel LAPIC, IOAPIC, PICs and PIT handle HLT,
 * timers and interrupt delivery, so the only exits that come back to us are port I/O and
 * MMIO (dispatched inline through vm->io, as the emu does), shutdown and errors.
 *
 * The one idea: a kick is a SIGUSR1 sent to the thread inside vcpu_run(), and the empty-
 * looking handler sets that thread's kvm_run->immediate_exit. A signal that arrives while
 * the guest runs makes KVM_RUN return -EINTR; one that arrives between our last
 * vcpu_should_stop() check and KVM_RUN sets immediate_exit, so KVM_RUN returns -EINTR at
 * once instead of entering the guest. Either way the loop sees the stop request. A kick
 * is only sent while the thread is known to be inside vcpu_run (kick_lock), so it never
 * reaches a thread that has gone.
 *
 * Guest state is consistent only after an I/O or MMIO exit has been completed by the
 * next KVM_RUN; before returning for a stop, the loop re-enters once with immediate_exit
 * set, which completes the instruction without running the guest (api.rst, kvm_run).
 *
 * Halting forever. With the in-kernel LAPIC, HLT never comes back to us: a vCPU that
 * executes `cli; hlt` just blocks in KVM_RUN. So each vCPU thread arms a periodic POSIX
 * timer (KVM_HALT_CHECK_MS) that sends it the kick signal; whenever KVM_RUN returns EINTR
 * without a stop request, the thread checks whether its vCPU is dead: MP state HALTED
 * with RFLAGS.IF clear and no NMI, SMI or exception pending (only those could wake it),
 * or an AP still waiting for INIT/SIPI. As on the emu, the VM ends (VM_EXIT_HALTED) only
 * when every vCPU is dead. A dead flag can be stale (another vCPU's INIT or NMI may have
 * woken it since), so the vCPU that finds all flags set does not trust them: it opens a
 * new halt epoch and kicks the others, and the VM ends only once every vCPU has been
 * found dead again within that epoch.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hv/accel.h"
#include "hv/accel/kvm/kvm_int.h"
#include "hv/dirty.h"
#include "hv/vm.h"

#define KVM_DEV               "/dev/kvm"
#define KVM_TSS_ADDR          0xfffbd000UL  /* 3 pages, below the identity-map page */
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL /* VMX real-mode identity page table */
#define KVM_KICK_SIGNAL       SIGUSR1
#define KVM_HALT_CHECK_MS     100 /* how often a vCPU in KVM_RUN looks for cli; hlt */

/* Capabilities the backend cannot do without. */
/* clang-format off */
#define CAP(c) {c, #c}
/* clang-format on */
static const struct {
	long cap;
	const char *name;
} kvm_required_caps[] = {
    CAP(KVM_CAP_IRQCHIP),        CAP(KVM_CAP_USER_MEMORY),
    CAP(KVM_CAP_SET_TSS_ADDR),   CAP(KVM_CAP_SET_IDENTITY_MAP_ADDR),
    CAP(KVM_CAP_PIT2),           CAP(KVM_CAP_PIT_STATE2),
    CAP(KVM_CAP_EXT_CPUID),      CAP(KVM_CAP_MP_STATE),
    CAP(KVM_CAP_VCPU_EVENTS),    CAP(KVM_CAP_DEBUGREGS),
    CAP(KVM_CAP_IMMEDIATE_EXIT), CAP(KVM_CAP_ADJUST_CLOCK),
};

/* The kvm_run of the vCPU this thread is running, for the kick handler. */
static __thread struct kvm_run *kick_run __attribute__((tls_model("initial-exec")));
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void kick_handler(int sig)
{
	struct kvm_run *r = kick_run;

	if (r)
		r->immediate_exit = 1;
}

static void kick_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sa.sa_flags = SA_RESTART; /* device syscalls on the vCPU thread are not disturbed */
	sigemptyset(&sa.sa_mask);
	sigaction(KVM_KICK_SIGNAL, &sa, NULL);
}

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

int kvm_check_cap(struct kvm_vmstate *kv, long cap)
{
	int r = ioctl(kv->vm_fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/* Open /dev/kvm and check the API version and the required capabilities. */
static int kvm_open(struct hv_error *err)
{
	int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
	int ver;

	if (fd < 0)
		return hv_fail(err, errno, "kvm: %s: %s", KVM_DEV, strerror(errno));
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver < 0) {
		int e = errno;
		close(fd);
		return hv_fail(err, e, "kvm: %s: KVM_GET_API_VERSION: %s", KVM_DEV, strerror(e));
	}
	if (ver != KVM_API_VERSION) {
		close(fd);
		return hv_fail(err, ENOTSUP, "kvm: %s: API version %d, need %d", KVM_DEV, ver,
		               KVM_API_VERSION);
	}
	for (size_t i = 0; i < sizeof(kvm_required_caps) / sizeof(kvm_required_caps[0]); i++)
		if (ioctl(fd, KVM_CHECK_EXTENSION, kvm_required_caps[i].cap) <= 0) {
			close(fd);
			return hv_fail(err, ENOTSUP, "kvm: %s: missing %s", KVM_DEV,
			               kvm_required_caps[i].name);
		}
	return fd;
}

static int kvm_probe(struct hv_error *err)
{
	int fd = kvm_open(err);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/* ---- VM ---- */

static void kvm_vm_fini(struct vm *vm)
{
	struct kvm_vmstate *kv = vm->accel_vm;

	if (!kv)
		return;
	dirty_set_source(&vm->mem, NULL, NULL);
	kvm_dirty_fini(kv);
	if (kv->vm_fd >= 0)
		close(kv->vm_fd);
	if (kv->sys_fd >= 0)
		close(kv->sys_fd);
	free(kv->cpuid);
	pthread_mutex_destroy(&kv->ring_lock);
	pthread_mutex_destroy(&kv->halt_lock);
	free(kv);
	vm->accel_vm = NULL;
}

/* KVM_GET_SUPPORTED_CPUID, growing the table until it fits. */
static int kvm_supported_cpuid(struct kvm_vmstate *kv, struct hv_error *err)
{
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return hv_fail(err, ENOMEM, "kvm: out of memory");
		c->nent = n;
		if (xioctl(kv->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			kv->cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return hv_fail(err, errno, "kvm: KVM_GET_SUPPORTED_CPUID: %s",
			               strerror(errno));
	}
	return hv_fail(err, E2BIG, "kvm: KVM_GET_SUPPORTED_CPUID: table too large");
}

static int kvm_set_memslots(struct kvm_vmstate *kv, struct guest_mem *m, struct hv_error *err)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *s = &m->slot[i];
		struct kvm_userspace_memory_region r = {
		    .slot = (uint32_t)i,
		    .flags = KVM_MEM_LOG_DIRTY_PAGES,
		    .guest_phys_addr = s->gpa,
		    .memory_size = s->size,
		    .userspace_addr = (uint64_t)(uintptr_t)s->hva,
		};
		if (xioctl(kv->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return hv_fail(err, errno,
			               "kvm: memory slot %d (0x%llx+0x%llx): "
			               "KVM_SET_USER_MEMORY_REGION: %s",
			               i, (unsigned long long)s->gpa, (unsigned long long)s->size,
			               strerror(errno));
	}
	return 0;
}

static int kvm_vm_init(struct vm *vm, struct hv_error *err)
{
	struct kvm_vmstate *kv = calloc(1, sizeof(*kv));
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	const char *what;
	int xs;

	if (!kv)
		return hv_fail(err, ENOMEM, "kvm: out of memory");
	kv->vm = vm;
	kv->sys_fd = kv->vm_fd = -1;
	pthread_mutex_init(&kv->ring_lock, NULL);
	pthread_mutex_init(&kv->halt_lock, NULL);
	vm->accel_vm = kv;

	if ((kv->sys_fd = kvm_open(err)) < 0)
		goto fail;
	what = "KVM_CREATE_VM";
	do
		kv->vm_fd = ioctl(kv->sys_fd, KVM_CREATE_VM, 0);
	while (kv->vm_fd < 0 && errno == EINTR);
	if (kv->vm_fd < 0)
		goto fail_errno;
	what = "KVM_GET_VCPU_MMAP_SIZE";
	if ((kv->run_size = ioctl(kv->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0)) <= 0)
		goto fail_errno;
	what = "KVM_SET_TSS_ADDR";
	if (ioctl(kv->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		goto fail_errno;
	what = "KVM_SET_IDENTITY_MAP_ADDR";
	if (xioctl(kv->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		goto fail_errno;
	what = "KVM_CREATE_IRQCHIP";
	if (ioctl(kv->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		goto fail_errno;
	what = "KVM_CREATE_PIT2";
	if (xioctl(kv->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		goto fail_errno;

	kv->has_xsave = kvm_check_cap(kv, KVM_CAP_XSAVE) > 0;
	kv->has_xcrs = kvm_check_cap(kv, KVM_CAP_XCRS) > 0;
	xs = kvm_check_cap(kv, KVM_CAP_XSAVE2);
	kv->xsave_size = xs > (int)sizeof(struct kvm_xsave) ? xs : (int)sizeof(struct kvm_xsave);
	kv->tsc_deadline = kvm_check_cap(kv, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	if (kvm_supported_cpuid(kv, err) < 0)
		goto fail;
	if (kvm_dirty_init(kv, err) < 0 || kvm_set_memslots(kv, &vm->mem, err) < 0)
		goto fail;
	dirty_set_source(&vm->mem, &kvm_dirty_source, kv);
	pthread_once(&kick_once, kick_install);
	return 0;

fail_errno:
	hv_fail(err, errno, "kvm: %s: %s", what, strerror(errno));
fail:
	kvm_vm_fini(vm); /* vm_destroy() only finishes a VM whose vm_init succeeded */
	return -1;
}

/* ---- vCPUs ---- */

static void kvm_vcpu_fini(struct vcpu *v)
{
	struct kvm_vcpustate *kc = v->accel;

	if (!kc)
		return;
	kvm_dirty_vcpu_fini(v->vm->accel_vm, kc);
	if (kc->run)
		munmap(kc->run, (size_t)((struct kvm_vmstate *)v->vm->accel_vm)->run_size);
	if (kc->fd >= 0)
		close(kc->fd);
	pthread_mutex_destroy(&kc->kick_lock);
	free(kc);
	v->accel = NULL;
}

static int kvm_vcpu_init(struct vcpu *v, struct hv_error *err)
{
	struct kvm_vmstate *kv = v->vm->accel_vm;
	struct kvm_vcpustate *kc = calloc(1, sizeof(*kc));
	void *run;

	if (!kc)
		return hv_fail(err, ENOMEM, "kvm: vcpu %u: out of memory", v->id);
	kc->vcpu = v;
	kc->fd = -1;
	pthread_mutex_init(&kc->kick_lock, NULL);
	v->accel = kc;

	do
		kc->fd = ioctl(kv->vm_fd, KVM_CREATE_VCPU, (unsigned long)v->id);
	while (kc->fd < 0 && errno == EINTR);
	if (kc->fd < 0) {
		hv_fail(err, errno, "kvm: vcpu %u: KVM_CREATE_VCPU: %s", v->id, strerror(errno));
		goto fail;
	}
	run = mmap(NULL, (size_t)kv->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, kc->fd, 0);
	if (run == MAP_FAILED) {
		hv_fail(err, errno, "kvm: vcpu %u: mmap of kvm_run: %s", v->id, strerror(errno));
		goto fail;
	}
	kc->run = run;
	if (kvm_dirty_vcpu_init(kv, kc, err) < 0)
		goto fail;
	/* KVM's own reset state is x86_state_reset's (real mode at f000:fff0, LAPIC id = vCPU
	 * id, BSP = vCPU 0, APs waiting for SIPI); CPUID comes first, then the MSRs. */
	if (kvm_cpuid_setup(kv, kc, v->id, v->vm->cfg.nvcpus, err) < 0 ||
	    kvm_state_probe_msrs(kc, v->id, err) < 0 || kvm_state_init_msrs(kc, v->id, err) < 0)
		goto fail;
	return 0;
fail:
	kvm_vcpu_fini(v); /* vm_destroy() only finishes vCPUs whose vcpu_init succeeded */
	return -1;
}

/* Read @n bytes of guest code at linear address @lin through the vCPU's page tables. */
static unsigned read_code(struct vcpu *v, uint64_t lin, uint8_t *buf, unsigned n)
{
	struct kvm_vcpustate *kc = v->accel;
	unsigned got = 0;

	while (got < n) {
		struct kvm_translation t = {.linear_address = lin + got};
		unsigned chunk = 4096 - (unsigned)((lin + got) & 4095);

		if (chunk > n - got)
			chunk = n - got;
		if (xioctl(kc->fd, KVM_TRANSLATE, &t) < 0 || !t.valid ||
		    gpa_read(&v->vm->mem, t.physical_address, buf + got, chunk, NULL) < 0)
			break;
		got += chunk;
	}
	return got;
}

/*
 * A triple fault. On AMD, KVM resets the vCPU before reporting KVM_EXIT_SHUTDOWN (the
 * VMCB is undefined after a shutdown intercept), so RIP may read as the reset vector.
 */
static void kvm_triple_fault(struct vcpu *v)
{
	struct kvm_vcpustate *kc = v->accel;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char hex[15 * 3 + 1] = "";
	uint8_t b[15];
	unsigned n = 0;
	uint64_t lin;

	if (xioctl(kc->fd, KVM_GET_REGS, &regs) < 0 || xioctl(kc->fd, KVM_GET_SREGS, &sregs) < 0) {
		vm_shutdown(v->vm, VM_EXIT_TRIPLE_FAULT, 0, "triple fault (RIP unreadable: %s)",
		            strerror(errno));
		return;
	}
	if (regs.rip == 0xfff0 && sregs.cs.selector == 0xf000 && sregs.cs.base == 0xffff0000) {
		vm_shutdown(v->vm, VM_EXIT_TRIPLE_FAULT, 0,
		            "triple fault at RIP unknown (KVM reset the vCPU on shutdown, "
		            "as it does on AMD)");
		return;
	}
	lin = (sregs.efer & X86_EFER_LMA) && sregs.cs.l
	          ? regs.rip
	          : (sregs.cs.base + regs.rip) & 0xffffffffULL;
	n = read_code(v, lin, b, sizeof(b));
	for (unsigned i = 0, pos = 0; i < n; i++)
		pos += (unsigned)snprintf(hex + pos, sizeof(hex) - pos, i ? " %02x" : "%02x", b[i]);
	vm_shutdown(v->vm, VM_EXIT_TRIPLE_FAULT, 0, "triple fault at RIP 0x%llx (bytes: %s)",
	            (unsigned long long)regs.rip, n ? hex : "unreadable");
}

static int kvm_exit_io(struct vcpu *v, struct kvm_run *run, struct hv_error *err)
{
	struct kvm_vmstate *kv = v->vm->accel_vm;
	unsigned size = run->io.size;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	if ((size != 1 && size != 2 && size != 4) ||
	    run->io.data_offset + (uint64_t)run->io.count * size > (uint64_t)kv->run_size)
		return hv_fail(err, EIO, "kvm: vcpu %u: malformed I/O exit (port 0x%x size %u x%u)",
		               v->id, run->io.port, size, run->io.count);
	/* count > 1: rep ins/outs, the elements lie one after the other in the data area. */
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t val = 0;

		if (write)
			memcpy(&val, data, size);
		io_port(&v->vm->io, run->io.port, size, write, &val);
		if (!write)
			memcpy(data, &val, size);
	}
	return 0;
}

static int kvm_exit_mmio(struct vcpu *v, struct kvm_run *run, struct hv_error *err)
{
	unsigned len = run->mmio.len;
	uint64_t val = 0;

	if (len == 0 || len > 8)
		return hv_fail(err, EIO, "kvm: vcpu %u: MMIO of %u bytes at 0x%llx", v->id, len,
		               (unsigned long long)run->mmio.phys_addr);
	if (run->mmio.is_write)
		memcpy(&val, run->mmio.data, len);
	io_mmio(&v->vm->io, run->mmio.phys_addr, len, run->mmio.is_write, &val);
	if (!run->mmio.is_write)
		memcpy(run->mmio.data, &val, len);
	return 0;
}

/* One exit. 0: go on (possibly after vm_shutdown), -1: internal error. */
static int kvm_handle_exit(struct vcpu *v, struct hv_error *err)
{
	struct kvm_vcpustate *kc = v->accel;
	struct kvm_run *run = kc->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO: kc->need_complete = true; return kvm_exit_io(v, run, err);
	case KVM_EXIT_MMIO: kc->need_complete = true; return kvm_exit_mmio(v, run, err);
	case KVM_EXIT_INTR: return 0;
	case KVM_EXIT_DIRTY_RING_FULL: kvm_dirty_ring_full(v->vm->accel_vm, kc); return 0;
	case KVM_EXIT_SHUTDOWN: kvm_triple_fault(v); return 0;
	case KVM_EXIT_HLT: /* only without the in-kernel LAPIC, which we always create */
		vm_shutdown(v->vm, VM_EXIT_HALTED, 0, "vCPU %u halted", v->id);
		return 0;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_shutdown(v->vm, VM_EXIT_ERROR, 0, "vCPU %u: system event %u (reset/shutdown)",
		            v->id, run->system_event.type);
		return 0;
	case KVM_EXIT_FAIL_ENTRY:
		return hv_fail(err, EIO, "kvm: VM entry failed, hardware reason 0x%llx",
		               (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	case KVM_EXIT_INTERNAL_ERROR:
		return hv_fail(
		    err, EIO, "kvm: internal error, suberror %u (data %u: 0x%llx 0x%llx)",
		    run->internal.suberror, run->internal.ndata,
		    run->internal.ndata > 0 ? (unsigned long long)run->internal.data[0] : 0ULL,
		    run->internal.ndata > 1 ? (unsigned long long)run->internal.data[1] : 0ULL);
	default: return hv_fail(err, EIO, "kvm: unexpected exit reason %u", run->exit_reason);
	}
}

/* ---- halting forever ---- */

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* Arm the periodic halt check: KVM_KICK_SIGNAL to this thread every KVM_HALT_CHECK_MS. */
static void halt_timer_start(struct kvm_vcpustate *kc)
{
	struct sigevent sev;
	struct itimerspec it = {
	    .it_interval = {0, KVM_HALT_CHECK_MS * 1000000L},
	    .it_value = {0, KVM_HALT_CHECK_MS * 1000000L},
	};

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = KVM_KICK_SIGNAL;
	sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, &kc->halt_timer) < 0)
		return; /* no check: a cli; hlt guest then waits for a quit request */
	kc->has_timer = true;
	timer_settime(kc->halt_timer, 0, &it, NULL);
}

static void halt_timer_stop(struct kvm_vcpustate *kc)
{
	if (kc->has_timer)
		timer_delete(kc->halt_timer);
	kc->has_timer = false;
}

/* Whether vCPU @v (just out of KVM_RUN with EINTR) can never run again by itself. */
static bool vcpu_dead(struct vcpu *v)
{
	struct kvm_vcpustate *kc = v->accel;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_vcpu_events ev;

	if (xioctl(kc->fd, KVM_GET_MP_STATE, &mp) < 0)
		return false;
	if (v->id != 0 && (mp.mp_state == KVM_MP_STATE_UNINITIALIZED ||
	                   mp.mp_state == KVM_MP_STATE_INIT_RECEIVED))
		return true; /* an AP that no INIT/SIPI has started (yet) */
	if (mp.mp_state != KVM_MP_STATE_HALTED || xioctl(kc->fd, KVM_GET_REGS, &regs) < 0 ||
	    (regs.rflags & X86_IF) || xioctl(kc->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return false;
	return !ev.nmi.pending && !ev.nmi.injected && !ev.exception.injected &&
	       !ev.exception.pending && !ev.smi.pending;
}

/* The halt check, on @v's thread after an EINTR (see the comment at the top). */
static void halt_check(struct vcpu *v)
{
	struct kvm_vmstate *kv = v->vm->accel_vm;
	struct kvm_vcpustate *kc = v->accel;
	unsigned ndead = 0, nconfirmed = 0, n = v->vm->nvcpus;
	bool dead = vcpu_dead(v), kick = false, end = false;

	pthread_mutex_lock(&kv->halt_lock);
	kc->dead = dead;
	kc->dead_epoch = kv->halt_epoch;
	if (dead) {
		for (unsigned i = 0; i < n; i++) {
			struct kvm_vcpustate *o = v->vm->vcpu[i].accel;

			ndead += o && o->dead;
			nconfirmed += o && o->dead && o->dead_epoch == kv->halt_epoch;
		}
		if (nconfirmed == n) {
			end = true;
		} else if (ndead == n) {
			kc->dead_epoch = ++kv->halt_epoch; /* re-check everyone else */
			kick = true;
		}
	}
	pthread_mutex_unlock(&kv->halt_lock);
	if (end) {
		struct kvm_regs regs = {0};

		xioctl(kc->fd, KVM_GET_REGS, &regs);
		vm_shutdown(v->vm, VM_EXIT_HALTED, 0,
		            "all vCPUs halted with interrupts disabled (vCPU %u at RIP 0x%llx)",
		            v->id, (unsigned long long)regs.rip);
	}
	for (unsigned i = 0; kick && i < n; i++)
		if (i != v->id)
			v->vm->accel->vcpu_kick(&v->vm->vcpu[i]);
}

static int kvm_vcpu_run(struct vcpu *v, struct hv_error *err)
{
	struct kvm_vcpustate *kc = v->accel;
	struct kvm_run *run = kc->run;
	sigset_t kick;
	int rc = 0;

	kick_run = run;
	sigemptyset(&kick);
	sigaddset(&kick, KVM_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	pthread_mutex_lock(&kc->kick_lock);
	kc->thread = pthread_self();
	kc->in_run = true;
	pthread_mutex_unlock(&kc->kick_lock);
	halt_timer_start(kc);

	while (!vcpu_should_stop(v)) {
		int r, e;

		atomic_fetch_add(&kc->runs_in, 1);
		r = ioctl(kc->fd, KVM_RUN, 0);
		e = errno;
		atomic_fetch_add(&kc->runs_out, 1);
		run->immediate_exit = 0;
		kc->need_complete = false; /* any return means a pending I/O was completed */
		if (r < 0) {
			if (e == EINTR && !vcpu_should_stop(v))
				halt_check(v);
			if (e == EINTR || e == EAGAIN)
				continue;
			rc = hv_fail(err, e, "kvm: KVM_RUN: %s", strerror(e));
			break;
		}
		if (kvm_handle_exit(v, err) < 0) {
			rc = -1;
			break;
		}
	}
	if (kc->need_complete) {
		/* Finish the I/O instruction without running the guest: state is consistent. */
		run->immediate_exit = 1;
		ioctl(kc->fd, KVM_RUN, 0);
		run->immediate_exit = 0;
		kc->need_complete = false;
	}
	halt_timer_stop(kc);

	pthread_mutex_lock(&kc->kick_lock);
	kc->in_run = false;
	pthread_mutex_unlock(&kc->kick_lock);
	kick_run = NULL;
	return rc;
}

static void kvm_vcpu_kick(struct vcpu *v)
{
	struct kvm_vcpustate *kc = v->accel;

	if (!kc)
		return;
	pthread_mutex_lock(&kc->kick_lock);
	if (kc->in_run)
		pthread_kill(kc->thread, KVM_KICK_SIGNAL);
	pthread_mutex_unlock(&kc->kick_lock);
}

static void kvm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_vmstate *kv = vm->accel_vm;
	struct kvm_irq_level l = {.irq = gsi, .level = (uint32_t)level};

	if (kv)
		xioctl(kv->vm_fd, KVM_IRQ_LINE, &l);
}

const struct accel_ops accel_kvm = {
    .name = "kvm",
    .probe = kvm_probe,
    .vm_init = kvm_vm_init,
    .vm_fini = kvm_vm_fini,
    .vcpu_init = kvm_vcpu_init,
    .vcpu_fini = kvm_vcpu_fini,
    .vcpu_run = kvm_vcpu_run,
    .vcpu_kick = kvm_vcpu_kick,
    .get_state = kvm_state_get,
    .set_state = kvm_state_set,
    .irq_line = kvm_irq_line,
};
