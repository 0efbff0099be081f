/*
 * native.c - running a snippet on the host CPU, faults included.
 *
 * The code pages and the data area are mapped at their fixed addresses (diff.h), with
 * nothing else mapped around them, so a stray access faults natively just as it does in
 * emu. native.S loads the registers and runs the snippet; if the snippet faults, the
 * signal handler (on its own stack: RSP points into the data area) copies the registers,
 * vector, error code and CR2 from the signal frame and siglongjmps back. The same handler
 * turns a crash of the emulator itself into a reported failure (native_guarded).
 */
#include <errno.h>
#include <stdio.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#include "diff.h"

enum { PHASE_NONE, PHASE_NATIVE, PHASE_GUARDED };

void diff_native_enter(const struct diff_regs *in, struct diff_regs *out, uint64_t entry);
void diff_native_exit(void);

static volatile sig_atomic_t phase;
static sigjmp_buf jump_back;
static struct diff_result *fault_out;
static volatile int guard_sig;
static volatile uint64_t guard_pc;

/* ucontext gregs index of each GPR, in x86 encoding order. */
static const int greg_of[16] = {
    REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
    REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;

	if (sig == SIGALRM) {
		if (phase != PHASE_NATIVE)
			return; /* the snippet ended just as the timer fired */
		fault_out->how = DIFF_STUCK;
		fault_out->rip = (uint64_t)g[REG_RIP];
		phase = PHASE_NONE;
		siglongjmp(jump_back, 1);
	}
	if (phase == PHASE_NATIVE) {
		struct diff_result *r = fault_out;
		for (int i = 0; i < 16; i++)
			r->regs.gpr[i] = (uint64_t)g[greg_of[i]];
		r->regs.rflags = (uint64_t)g[REG_EFL];
		r->rip = (uint64_t)g[REG_RIP];
		r->how = DIFF_EXC;
		r->vector = (int)g[REG_TRAPNO];
		r->err = (uint32_t)g[REG_ERR];
		r->cr2 = r->vector == 14 ? (uint64_t)g[REG_CR2] : 0;
		phase = PHASE_NONE;
		siglongjmp(jump_back, 1);
	}
	if (phase == PHASE_GUARDED) {
		guard_sig = sig;
		guard_pc = (uint64_t)g[REG_RIP];
		phase = PHASE_NONE;
		siglongjmp(jump_back, 1);
	}
	/* Not ours: die of it the ordinary way. */
	(void)si;
	signal(sig, SIG_DFL);
	if (sig == SIGABRT)
		raise(sig);
}

static uint8_t *code;

/* Nothing may be mapped near the fixed areas: a stray access must fault on both sides. */
static int check_unmapped(uint64_t from, uint64_t to, char *why, size_t whylen)
{
	unsigned char vec;

	for (uint64_t a = from; a < to; a += 4096) {
		if ((a >= DIFF_CODE && a < DIFF_CODE + DIFF_CODE_SIZE) ||
		    (a >= DIFF_DATA && a < DIFF_DATA + DIFF_DATA_SIZE))
			continue;
		if (mincore((void *)(uintptr_t)a, 4096, &vec) == 0 || errno != ENOMEM) {
			snprintf(why, whylen, "host address %#llx is mapped",
			         (unsigned long long)a);
			return -1;
		}
	}
	return 0;
}

static void *map_fixed(uint64_t addr, size_t len, int prot)
{
	void *p = mmap((void *)(uintptr_t)addr, len, prot,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (p != (void *)(uintptr_t)addr) { /* kernels before 4.17 ignore the flag */
		munmap(p, len);
		return NULL;
	}
	return p;
}

int native_init(char *why, size_t whylen)
{
	static uint8_t altstack[64 * 1024];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
	struct sigaction sa;
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGALRM};

	code = map_fixed(DIFF_CODE, DIFF_CODE_SIZE, PROT_READ | PROT_EXEC);
	if (!code || !map_fixed(DIFF_DATA, DIFF_DATA_SIZE, PROT_READ | PROT_WRITE)) {
		snprintf(why, whylen, "cannot map the fixed areas at %#x and %#x: %s", DIFF_CODE,
		         DIFF_DATA, strerror(errno));
		return -1;
	}
	if (check_unmapped(DIFF_CODE - 0x100000, DIFF_DATA + DIFF_DATA_SIZE + 0x100000, why,
	                   whylen) < 0)
		return -1;
	if (sigaltstack(&ss, NULL) < 0) {
		snprintf(why, whylen, "sigaltstack: %s", strerror(errno));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	return 0;
}

uint8_t *native_data(void)
{
	return (uint8_t *)(uintptr_t)DIFF_DATA;
}

void native_place(uint8_t page[DIFF_CODE_SIZE], const uint8_t *bytes, size_t len, size_t off)
{
	uint64_t target = (uint64_t)(uintptr_t)diff_native_exit;

	memcpy(page + off, bytes, len);
	/* jmp qword ptr [rip + 0]; .quad diff_native_exit */
	memcpy(page + off + len, "\xff\x25\x00\x00\x00\x00", 6);
	memcpy(page + off + len + 6, &target, 8);
}

void native_load(const uint8_t page[DIFF_CODE_SIZE])
{
	mprotect(code, DIFF_CODE_SIZE, PROT_READ | PROT_WRITE);
	memcpy(code, page, DIFF_CODE_SIZE);
	mprotect(code, DIFF_CODE_SIZE, PROT_READ | PROT_EXEC);
}

void native_run(const struct diff_regs *in, uint64_t entry, uint64_t end, struct diff_result *out)
{
	/* A snippet that loops for a second is a corpus bug: report it, don't hang. */
	struct itimerval on = {.it_value = {.tv_sec = 1}}, off = {{0, 0}, {0, 0}};

	memset(out, 0, sizeof(*out));
	fault_out = out;
	if (sigsetjmp(jump_back, 1) == 0) {
		setitimer(ITIMER_REAL, &on, NULL);
		phase = PHASE_NATIVE;
		diff_native_enter(in, &out->regs, entry);
		phase = PHASE_NONE;
		out->how = DIFF_END;
		out->rip = end;
	}
	setitimer(ITIMER_REAL, &off, NULL);
	/* A snippet that faulted in compatibility mode left DS and ES at 0x2b. */
	__asm__ volatile("mov %0, %%ds\n\tmov %0, %%es" : : "r"(0));
}

int native_guarded(void (*fn)(void *), void *arg, uint64_t *host_pc)
{
	if (sigsetjmp(jump_back, 1) == 0) {
		phase = PHASE_GUARDED;
		fn(arg);
		phase = PHASE_NONE;
		return 0;
	}
	*host_pc = guard_pc;
	return guard_sig;
}
