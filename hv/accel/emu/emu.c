/*
 * emu.c - the software CPU's run loop, its accel_ops vtable and the standalone CPU API.
 *
 * The loop is a tight `while (!attn && icount < icount_deadline) emu_step(c)`; every
 * reason to look up from it (a kick, an interrupt becoming deliverable, a timer, hlt,
 * the dirty-log epoch moving, a stop point) either sets c->attn or is folded into
 * icount_deadline, and service() handles them all at an instruction boundary. Faults
 * longjmp back to the boundary (setjmp once per entry), where the exception is delivered
 * through the IDT. Deterministic mode: virtual time is icount + halted time, timers are
 * serviced exactly at their deadline instruction, and service() handles events in a fixed
 * order (timers, stop point, interrupts, hlt), so stopping at instruction N, saving,
 * restoring and continuing behaves exactly like running straight through.
 *
 * Dirty-log grace period (struct dirty_source .flush): a vCPU inside vcpu_run publishes
 * `active`, then loads the epoch (both seq_cst), and at every boundary acknowledges the
 * epoch it reloaded. The flusher bumps the epoch first, then waits for each vCPU to be
 * inactive or to have acknowledged it. A vCPU blocked in hlt counts as inactive.
 * irq_line() is ignored: there is no IOAPIC yet, so device interrupts do not reach the
 * emu (the guests poll the UART; the LAPIC timer and IPIs work).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hv/accel.h"
#include "hv/accel/emu/apic.h"
#include "hv/accel/emu/mmu.h"
#include "hv/dirty.h"
#include "hv/vm.h"

/* Per-VM backend state. */
struct emu_vm {
	struct vm *vm;
	_Atomic unsigned ndead; /* vCPUs halted with nothing that can wake them */
};

/* What one run-loop entry is allowed to do. */
struct run_ctl {
	uint64_t end;      /* icount at which to return EMU_EXIT_ICOUNT */
	uint64_t stop_rip; /* ~0: none */
};

static uint64_t host_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t base_clock(struct emu_cpu *c)
{
	return c->deterministic ? c->icount + emu_sys(c)->halt_ns : host_ns();
}

uint64_t emu_now(struct emu_cpu *c)
{
	return base_clock(c) + c->tsc_offset;
}

void emu_set_tsc(struct emu_cpu *c, uint64_t tsc)
{
	uint64_t old = emu_now(c);

	c->tsc_offset = tsc - base_clock(c);
	apic_tsc_moved(c, old, tsc);
}

void emu_sys_kick(struct emu_cpu *c, uint32_t bits)
{
	struct emu_sys *s = emu_sys(c);

	atomic_fetch_or_explicit(&c->attn, bits, memory_order_seq_cst);
	pthread_mutex_lock(&s->lock);
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void emu_send_ipi(struct emu_cpu *c, uint32_t dest, unsigned sh, unsigned vec)
{
	struct vm *vm = c->vm;

	if (!vm)
		return;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct emu_cpu *t = vm->vcpu[i].accel;
		bool hit = sh == 2 || (sh == 3 && t != c) ||
		           (sh == 0 && (dest == 0xffffffffU || dest == vm->vcpu[i].id));
		if (!t || !hit)
			continue;
		if (t == c) {
			apic_accept(c, vec);
			continue;
		}
		atomic_fetch_or_explicit(&emu_sys(t)->remote_irr[vec / 64], 1ULL << (vec % 64),
		                         memory_order_release);
		emu_sys_kick(t, EMU_ATTN_IRQ);
	}
}

/* ---- dirty-log epoch ---- */

static void sync_epoch(struct emu_cpu *c)
{
	uint64_t e = atomic_load_explicit(&c->mem->dirty_epoch, memory_order_seq_cst);

	c->dirty_epoch = e;
	if (c->vm)
		atomic_store_explicit(&emu_sys(c)->ack_epoch, e, memory_order_seq_cst);
}

static void set_active(struct emu_cpu *c, int on)
{
	atomic_store_explicit(&emu_sys(c)->active, on, memory_order_seq_cst);
	if (on)
		sync_epoch(c);
}

static void emu_dirty_flush(void *opaque, struct guest_mem *m, uint64_t epoch)
{
	struct emu_vm *ev = opaque;
	struct vm *vm = ev->vm;

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct emu_cpu *c = vm->vcpu[i].accel;
		if (c && atomic_load_explicit(&emu_sys(c)->active, memory_order_seq_cst))
			emu_sys_kick(c, EMU_ATTN_EPOCH);
	}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct emu_cpu *c = vm->vcpu[i].accel;
		if (!c)
			continue;
		while (atomic_load_explicit(&emu_sys(c)->active, memory_order_seq_cst) &&
		       atomic_load_explicit(&emu_sys(c)->ack_epoch, memory_order_seq_cst) < epoch)
			sched_yield();
	}
}

static const struct dirty_source emu_dirty_source = {
    .collect = NULL,
    .flush = emu_dirty_flush,
};

/* ---- halting ---- */

/* Block until attention is raised or the guest TSC reaches @tsc (EMU_NO_DEADLINE: never). */
static void wait_attn(struct emu_cpu *c, uint64_t tsc)
{
	struct emu_sys *s = emu_sys(c);

	if (c->vm)
		set_active(c, 0);
	pthread_mutex_lock(&s->lock);
	while (!atomic_load_explicit(&c->attn, memory_order_seq_cst)) {
		struct timespec ts;
		uint64_t now = emu_now(c), abs;

		if (tsc == EMU_NO_DEADLINE) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		if (now >= tsc)
			break;
		abs = host_ns() + (tsc - now); /* 1 TSC tick = 1 ns */
		ts.tv_sec = (time_t)(abs / 1000000000ULL);
		ts.tv_nsec = (long)(abs % 1000000000ULL);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	if (c->vm)
		set_active(c, 1);
}

/* hlt with nothing that can ever wake this vCPU (interrupts off, no NMI source). */
static int halt_forever(struct emu_cpu *c)
{
	struct emu_sys *s = emu_sys(c);
	struct emu_vm *ev;

	if (!c->vm)
		return EMU_EXIT_HLT;
	ev = c->vm->accel_vm;
	if (!s->dead) {
		s->dead = true;
		if (atomic_fetch_add(&ev->ndead, 1) + 1 >= c->vm->nvcpus)
			vm_shutdown(
			    c->vm, VM_EXIT_HALTED, 0,
			    "all vCPUs halted with interrupts disabled (vCPU %u at RIP 0x%llx)",
			    c->vcpu ? c->vcpu->id : 0, (unsigned long long)c->rip);
	}
	wait_attn(c, EMU_NO_DEADLINE);
	return 0;
}

static void undead(struct emu_cpu *c)
{
	struct emu_sys *s = emu_sys(c);

	if (s->dead && c->vm) {
		atomic_fetch_sub(&((struct emu_vm *)c->vm->accel_vm)->ndead, 1);
		s->dead = false;
	}
}

/* The vCPU is halted (or never started): wait for what can wake it. 0: go on. */
static int halted(struct emu_cpu *c, uint64_t now)
{
	uint64_t t;

	if (c->vm && c->vcpu && c->vcpu->id != 0 && emu_sys(c)->uninit)
		return halt_forever(c); /* an AP that was never started (no INIT/SIPI) */
	if (!(c->flags & X86_IF))
		return halt_forever(c);
	t = apic_timer_next(c, true);
	if (t == EMU_NO_DEADLINE) {
		if (!c->vm)
			return EMU_EXIT_HLT;
		wait_attn(c, EMU_NO_DEADLINE);
		return 0;
	}
	if (c->deterministic)
		emu_sys(c)->halt_ns += t - now; /* time jumps to the deadline */
	else
		wait_attn(c, t);
	return 0;
}

/* ---- the loop ---- */

static void triple_fault(struct emu_cpu *c)
{
	uint64_t lin = c->mode == EMU_MODE_LONG64
	                   ? c->insn_rip
	                   : (c->seg[X86_CS].base + c->insn_rip) & 0xffffffffULL;
	char hex[15 * 3 + 1] = "";
	uint8_t b[15];
	unsigned n = emu_peek(c, lin, b, sizeof(b));

	for (unsigned i = 0, pos = 0; i < n; i++)
		pos += (unsigned)snprintf(hex + pos, sizeof(hex) - pos, i ? " %02x" : "%02x", b[i]);
	c->exc_depth = 0;
	emu_sys(c)->shutdown = true;
	if (c->vm)
		vm_shutdown(c->vm, VM_EXIT_TRIPLE_FAULT, 0,
		            "triple fault at RIP 0x%llx (bytes: %s)",
		            (unsigned long long)c->insn_rip, n ? hex : "unreadable");
}

/*
 * service - everything that happens between instructions. Returns 0 to run the fast
 * loop (with c->icount_deadline set), or an exit reason.
 */
static int service(struct emu_cpu *c, const struct run_ctl *r)
{
	struct emu_sys *s = emu_sys(c);
	uint64_t now, dl, stop = 0;

	for (;;) {
		uint32_t a = atomic_exchange_explicit(&c->attn, 0, memory_order_acq_rel);
		int v;

		sync_epoch(c);
		if ((a & EMU_ATTN_KICK) && (!c->vcpu || vcpu_should_stop(c->vcpu)))
			return EMU_EXIT_KICK;
		apic_merge_remote(c);
		now = emu_now(c);
		apic_timer_update(c, now);

		/* The shadow covers exactly one instruction after the one that set it. */
		if (!c->events.interrupt_shadow)
			s->shadow_at = EMU_NO_SHADOW;
		else if (s->shadow_at == EMU_NO_SHADOW)
			s->shadow_at = c->icount;
		else if (c->icount > s->shadow_at)
			c->events.interrupt_shadow = 0, s->shadow_at = EMU_NO_SHADOW;

		if (c->icount >= r->end)
			return EMU_EXIT_ICOUNT;
		if (c->vm && (!c->vcpu || c->vcpu->id == 0)) {
			stop = atomic_load_explicit(&c->vm->stop_at_icount, memory_order_acquire);
			if (stop && c->icount >= stop) {
				vm_request_pause(c->vm);
				return EMU_EXIT_KICK;
			}
		}

		if ((c->flags & X86_IF) && !c->events.interrupt_shadow &&
		    (v = apic_pending(c)) >= 0) {
			apic_ack(c, (unsigned)v);
			c->insn_rip = c->rip;
			emu_deliver(c, (unsigned)v, 0, false, EMU_EV_EXT, c->rip);
			continue;
		}
		if (c->halted || s->uninit) {
			int h = halted(c, now);
			if (h)
				return h;
			continue;
		}
		break;
	}

	dl = r->end;
	if (c->icount + EMU_CHECK_INSNS < dl)
		dl = c->icount + EMU_CHECK_INSNS;
	if (c->events.interrupt_shadow && c->icount + 1 < dl)
		dl = c->icount + 1;
	if (stop && stop < dl)
		dl = stop;
	if (c->deterministic) {
		uint64_t t = apic_timer_next(c, false);
		if (t != EMU_NO_DEADLINE && t > now && c->icount + (t - now) < dl)
			dl = c->icount + (t - now); /* one instruction = one tick */
	}
	c->icount_deadline = dl;
	return 0;
}

static int run(struct emu_cpu *c, const struct run_ctl *r)
{
	struct emu_sys *s = emu_sys(c);
	int rc;

	s->in_run = true;
	if (setjmp(c->fault_jmp)) {
		if (c->exc_exit) {
			c->rip = c->insn_rip;
			c->exc_depth = 0;
			s->in_run = false;
			return EMU_EXIT_EXCEPTION;
		}
		if (emu_exc_unwound(c) < 0) {
			triple_fault(c);
			s->in_run = false;
			return EMU_EXIT_SHUTDOWN;
		}
	}
	for (;;) {
		rc = service(c, r);
		if (rc)
			break;
		if (r->stop_rip != ~0ULL) {
			while (!atomic_load_explicit(&c->attn, memory_order_relaxed) &&
			       c->icount < c->icount_deadline) {
				if (c->rip == r->stop_rip) {
					rc = EMU_EXIT_STOP_RIP;
					goto out;
				}
				emu_step(c);
			}
		} else {
			while (!atomic_load_explicit(&c->attn, memory_order_relaxed) &&
			       c->icount < c->icount_deadline)
				emu_step(c);
		}
	}
out:
	s->in_run = false;
	return rc;
}

/* ---- standalone CPU ---- */

struct emu_cpu *emu_cpu_new(struct guest_mem *mem, struct io_bus *io)
{
	struct emu_cpu *c = calloc(1, sizeof(*c));
	struct emu_sys *s = calloc(1, sizeof(*s));
	struct x86_state *st = malloc(sizeof(*st));
	struct emu_dcache *dc = emu_dcache_new();
	pthread_condattr_t ca;

	if (!c || !s || !st || !dc) {
		free(c), free(s), free(st), emu_dcache_free(dc);
		return NULL;
	}
	c->dcache = dc;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->sys = s;
	c->mem = mem;
	c->io = io;
	x86_state_reset(st, 0, 1);
	emu_cpu_set_state(c, st);
	free(st);
	return c;
}

void emu_cpu_free(struct emu_cpu *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&emu_sys(c)->lock);
	pthread_cond_destroy(&emu_sys(c)->cond);
	free(c->sys);
	emu_dcache_free(c->dcache);
	free(c);
}

void emu_cpu_get_state(struct emu_cpu *c, struct x86_state *st)
{
	memset(st, 0, sizeof(*st));
	memcpy(st->gpr, c->r, sizeof(st->gpr));
	st->rip = c->rip;
	st->rflags = emu_rflags(c);
	memcpy(st->seg, c->seg, sizeof(st->seg));
	st->tr = c->tr, st->ldt = c->ldt, st->gdt = c->gdt, st->idt = c->idt;
	st->cr0 = c->cr0, st->cr2 = c->cr2, st->cr3 = c->cr3, st->cr4 = c->cr4;
	st->cr8 = (lapic_reg(&c->lapic, LAPIC_TPR) >> 4) & 0xf;
	st->efer = c->efer, st->xcr0 = c->xcr0;
	st->apic_base = c->apic_base;
	st->tsc = emu_now(c);
	st->tsc_deadline = c->tsc_deadline, st->tsc_aux = c->tsc_aux;
	st->star = c->star, st->lstar = c->lstar, st->cstar = c->cstar;
	st->syscall_mask = c->syscall_mask, st->kernel_gs_base = c->kernel_gs_base;
	st->sysenter_cs = c->sysenter_cs, st->sysenter_esp = c->sysenter_esp;
	st->sysenter_eip = c->sysenter_eip, st->pat = c->pat, st->misc_enable = c->misc_enable;
	memcpy(st->dr, c->dr, sizeof(st->dr));
	apic_save(c, &st->lapic);
	st->events = c->events;
	st->mp_state = emu_sys(c)->uninit ? X86_MP_UNINITIALIZED
	               : c->halted        ? X86_MP_HALTED
	                                  : X86_MP_RUNNABLE;
	st->icount = c->icount;
	memcpy(st->xsave, c->xsave, sizeof(st->xsave));
}

void emu_cpu_set_state(struct emu_cpu *c, const struct x86_state *st)
{
	struct emu_sys *s = emu_sys(c);

	memcpy(c->r, st->gpr, sizeof(c->r));
	c->rip = st->rip;
	memcpy(c->seg, st->seg, sizeof(c->seg));
	c->tr = st->tr, c->ldt = st->ldt, c->gdt = st->gdt, c->idt = st->idt;
	c->cr0 = st->cr0, c->cr2 = st->cr2, c->cr3 = st->cr3, c->cr4 = st->cr4;
	c->efer = st->efer, c->xcr0 = st->xcr0;
	c->apic_base = st->apic_base;
	c->tsc_deadline = st->tsc_deadline, c->tsc_aux = st->tsc_aux;
	c->star = st->star, c->lstar = st->lstar, c->cstar = st->cstar;
	c->syscall_mask = st->syscall_mask, c->kernel_gs_base = st->kernel_gs_base;
	c->sysenter_cs = st->sysenter_cs, c->sysenter_esp = st->sysenter_esp;
	c->sysenter_eip = st->sysenter_eip, c->pat = st->pat, c->misc_enable = st->misc_enable;
	memcpy(c->dr, st->dr, sizeof(c->dr));
	c->lapic = st->lapic;
	c->events = st->events;
	c->halted = st->mp_state == X86_MP_HALTED;
	s->uninit = st->mp_state == X86_MP_UNINITIALIZED;
	memcpy(c->xsave, st->xsave, sizeof(c->xsave));
	emu_set_rflags(c, st->rflags | X86_RFLAGS_FIXED);

	/* Time: the TSC continues from st->tsc; deterministic time restarts from icount. */
	c->icount = st->icount;
	s->halt_ns = 0;
	c->tsc_offset = st->tsc - base_clock(c);

	c->cpl = -1; /* force the TLB flush and CPL recomputation */
	emu_set_mode(c, (c->cr0 & X86_CR0_PE) ? c->seg[X86_SS].dpl : 0);
	emu_tlb_flush(c);
	apic_load(c);
	s->shadow_at = EMU_NO_SHADOW;
	s->shutdown = false;
	c->exc_depth = 0;
	c->icount_deadline = c->icount;
	c->dirty_epoch = atomic_load(&c->mem->dirty_epoch);
	undead(c);
}

int emu_cpu_exec(struct emu_cpu *c, uint64_t max_insns, uint64_t stop_rip)
{
	struct run_ctl r = {.end = c->icount + max_insns, .stop_rip = stop_rip};

	if (r.end < c->icount)
		r.end = UINT64_MAX;
	if (emu_sys(c)->shutdown)
		return EMU_EXIT_SHUTDOWN;
	c->dirty_epoch = atomic_load(&c->mem->dirty_epoch);
	return run(c, &r);
}

/* ---- accel_ops ---- */

static int emu_probe(struct hv_error *err)
{
	return 0;
}

static int emu_vm_init(struct vm *vm, struct hv_error *err)
{
	struct emu_vm *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return hv_fail(err, ENOMEM, "emu: out of memory");
	ev->vm = vm;
	vm->accel_vm = ev;
	dirty_set_source(&vm->mem, &emu_dirty_source, ev);
	return 0;
}

static void emu_vm_fini(struct vm *vm)
{
	if (!vm->accel_vm)
		return;
	dirty_set_source(&vm->mem, NULL, NULL);
	free(vm->accel_vm);
	vm->accel_vm = NULL;
}

static int emu_vcpu_init(struct vcpu *v, struct hv_error *err)
{
	struct vm *vm = v->vm;
	struct x86_state *st = malloc(sizeof(*st));
	struct emu_cpu *c = emu_cpu_new(&vm->mem, &vm->io);

	if (!c || !st) {
		free(st);
		emu_cpu_free(c);
		return hv_fail(err, ENOMEM, "emu: vcpu %u: out of memory", v->id);
	}
	c->vm = vm;
	c->vcpu = v;
	c->deterministic = vm->cfg.deterministic;
	x86_state_reset(st, v->id, v->id == 0);
	emu_cpu_set_state(c, st);
	free(st);
	v->accel = c;
	return 0;
}

static void emu_vcpu_fini(struct vcpu *v)
{
	emu_cpu_free(v->accel);
	v->accel = NULL;
}

static int emu_vcpu_run(struct vcpu *v, struct hv_error *err)
{
	struct emu_cpu *c = v->accel;
	struct run_ctl r = {.end = UINT64_MAX, .stop_rip = ~0ULL};

	if (emu_sys(c)->shutdown || vcpu_should_stop(v))
		return 0;
	set_active(c, 1);
	run(c, &r);
	set_active(c, 0);
	return 0;
}

static void emu_vcpu_kick(struct vcpu *v)
{
	if (v->accel)
		emu_sys_kick(v->accel, EMU_ATTN_KICK);
}

static int emu_get_state(struct vcpu *v, struct x86_state *s, struct hv_error *err)
{
	emu_cpu_get_state(v->accel, s);
	return 0;
}

static int emu_set_state(struct vcpu *v, const struct x86_state *s, struct hv_error *err)
{
	emu_cpu_set_state(v->accel, s);
	return 0;
}

static void emu_irq_line(struct vm *vm, unsigned gsi, int level)
{
	/* No IOAPIC yet: device interrupt lines do not reach the emu (see the header). */
}

const struct accel_ops accel_emu = {
    .name = "emu",
    .stores_hooked = true,
    .probe = emu_probe,
    .vm_init = emu_vm_init,
    .vm_fini = emu_vm_fini,
    .vcpu_init = emu_vcpu_init,
    .vcpu_fini = emu_vcpu_fini,
    .vcpu_run = emu_vcpu_run,
    .vcpu_kick = emu_vcpu_kick,
    .get_state = emu_get_state,
    .set_state = emu_set_state,
    .irq_line = emu_irq_line,
};
