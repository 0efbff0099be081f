/*
 * diff.h - definitions shared by the differential harness's C code and its assembly:
 * the fixed addresses, the register block the trampoline loads and stores, the RFLAGS
 * masks, the count-dependent flag rules and the CPU features a snippet needs.
 *
 * The idea: the host CPU is the reference. A snippet runs natively and in emu from the same
 * registers and memory, at the same addresses (guest-physical == guest-linear == host
 * virtual), so every pointer and RIP-relative operand means the same thing on both sides.
 */
#ifndef HV_TESTS_DIFF_H
#define HV_TESTS_DIFF_H

/* Fixed addresses: identical host virtual and guest linear/physical addresses. */
#define DIFF_CODE      0x10000000 /* two pages: the snippet, then a jump back */
#define DIFF_CODE_SIZE 0x2000
#define DIFF_DATA      0x10100000 /* operand memory and stack */
#define DIFF_DATA_SIZE 0x10000
#define DIFF_PT        0x00200000 /* emu only: the page tables */
#define DIFF_PT_SIZE   0x10000

/* struct diff_regs: 16 GPRs in x86 encoding order, then RFLAGS. */
#define DIFF_REGS_RFLAGS 128
#define DIFF_REGS_SIZE   136

/* RFLAGS bits. */
#define FL_CF 0x001
#define FL_PF 0x004
#define FL_AF 0x010
#define FL_ZF 0x040
#define FL_SF 0x080
#define FL_DF 0x400
#define FL_OF 0x800
/* No spaces in these: they are arguments of the corpus's assembler macros. */
/* clang-format off */
#define FL_ARITH (FL_CF|FL_PF|FL_AF|FL_ZF|FL_SF|FL_OF)
#define FL_ALL	 (FL_ARITH|FL_DF)	/* everything the harness compares */
#define FL_LOGIC (FL_ALL&~FL_AF)	/* and/or/xor/test: AF undefined */
#define FL_MUL	 (FL_CF|FL_OF|FL_DF)	/* mul/imul: SF ZF AF PF undefined */
#define FL_DIV	 FL_DF			/* div/idiv: all six undefined */
#define FL_BSF	 (FL_ZF|FL_DF)		/* bsf/bsr: only ZF */
#define FL_BT	 (FL_CF|FL_DF)		/* bt*: CF (vendors differ on ZF) */
#define FL_TZCNT (FL_CF|FL_ZF|FL_DF)	/* tzcnt/lzcnt */
#define FL_BMI	 (FL_ALL&~(FL_AF|FL_PF)) /* andn, blsi, blsr, blsmsk, bzhi */
#define FL_BEXTR (FL_ZF|FL_CF|FL_OF|FL_DF)
#define FL_NOCF	 (FL_ALL&~FL_CF)

/*
 * Count-dependent flag rules (struct snippet.rule). The harness computes the defined
 * flags from the count the last instruction of the snippet used: an immediate (DIFF_ARG's
 * count) or CL (DIFF_CL) from the input registers; @width is the operand size in bits.
 */
#define RULE_NONE 0
#define RULE_SHL  1 /* shl/sal/shr: AF undefined; OF unless count 1; CF if count >= width */
#define RULE_SAR  2 /* sar: as shl, but CF stays defined */
#define RULE_ROT  3 /* rol/ror: only CF and OF change; OF undefined unless count 1 */
#define RULE_RC	  4 /* rcl/rcr: as rol/ror */
#define RULE_SHD  5 /* shld/shrd: as shl; count must be <= width (the snippet masks) */
#define DIFF_CL	  0xff
#define DIFF_ARG(width, count) ((width)|((count)<<8))
/* clang-format on */

/*
 * Input templates (struct snippet.in). IN_ALIGNED: RBX RSI RDI RBP and RSP 16-byte
 * aligned, so locked accesses never split a cache line (hosts with split-lock detection
 * trap those, slowly or fatally).
 */
#define IN_ALIGNED 1

/* CPU features a snippet needs, from the host's and the emu's CPUID (both must have it). */
#define FEAT_POPCNT    (1 << 0)
#define FEAT_BMI1      (1 << 1) /* tzcnt, andn, bextr, blsi, blsr, blsmsk */
#define FEAT_LZCNT     (1 << 2)
#define FEAT_MOVBE     (1 << 3)
#define FEAT_ADX       (1 << 4)
#define FEAT_BMI2      (1 << 5)
#define FEAT_SSE42     (1 << 6) /* crc32 */
#define FEAT_CX16      (1 << 7)
#define FEAT_LAHF      (1 << 8)
#define FEAT_FSGSBASE  (1 << 9)  /* and the host kernel must have enabled it (HWCAP2) */
#define FEAT_PREFETCHW (1 << 10) /* host only: 0f 0d is a hint the emu decodes regardless */
#define FEAT_COMPAT32  (1 << 11) /* host only: the kernel runs 32-bit code (probed) */
#define FEAT_NR        12
#define FEAT_HOST_ONLY (FEAT_PREFETCHW | FEAT_COMPAT32)

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>

struct diff_regs {
	uint64_t gpr[16];
	uint64_t rflags;
};

/*
 * One corpus entry (snippets.S). The table lies between __start_diff_snippets and
 * __stop_diff_snippets; a snippet's code ends where the next entry's starts, and each
 * corpus file closes its run of entries with one whose name is NULL.
 */
struct snippet {
	const char *name;
	const uint8_t *start; /* the code, copied into the code pages before running */
	uint32_t mask;        /* RFLAGS bits defined at the end (FL_*) */
	uint16_t rule;        /* RULE_*: count-dependent undefined flags */
	uint16_t in;          /* IN_*: input template */
	uint32_t arg;         /* DIFF_ARG(width, count) for the rule */
	uint32_t feat;        /* FEAT_* bits needed */
};

extern const struct snippet __start_diff_snippets[], __stop_diff_snippets[];

/* How a run ended, natively or in emu. */
enum diff_how {
	DIFF_END,   /* reached the end of the snippet */
	DIFF_EXC,   /* raised exception @vector */
	DIFF_STUCK, /* native: still running after a second; emu: stopped for another
	               reason (@detail: enum emu_exit_reason) */
	DIFF_CRASH, /* emu: the host process took signal @detail at host address @host_pc */
};

struct diff_result {
	struct diff_regs regs; /* at the end, or at the faulting instruction */
	uint64_t rip;
	int how;          /* enum diff_how */
	int vector;       /* DIFF_EXC */
	uint32_t err;     /* error code (#PF, #GP and friends) */
	uint64_t cr2;     /* #PF: the faulting linear address */
	int detail;       /* DIFF_STUCK, DIFF_CRASH */
	uint64_t host_pc; /* DIFF_CRASH */
};

/* ===== native.c: the host CPU ===== */

/*
 * native_init - map the fixed areas and install the fault handlers. Returns -1 with the
 * reason in @why when this host cannot run the harness (the addresses are taken).
 */
int native_init(char *why, size_t whylen);
uint8_t *native_data(void); /* the data area, DIFF_DATA_SIZE bytes */

/*
 * native_place - put a copy of a snippet of @len bytes at offset @off of the code pages
 * (filled with int3 before the first copy), followed by the jump back to the trampoline
 * (never reached in emu, which stops there). Both sides load the same pages, so even
 * reads of the code agree.
 */
void native_place(uint8_t page[DIFF_CODE_SIZE], const uint8_t *code, size_t len, size_t off);
void native_load(const uint8_t page[DIFF_CODE_SIZE]);

/* native_run - run from @entry until the jump back at @end, or a fault. */
void native_run(const struct diff_regs *in, uint64_t entry, uint64_t end, struct diff_result *out);

/*
 * native_guarded - call @fn(@arg); if the host process takes a fault signal (or aborts)
 * meanwhile, return the signal number and the faulting host address in *@host_pc instead
 * of dying. Returns 0 when @fn returned normally.
 */
int native_guarded(void (*fn)(void *), void *arg, uint64_t *host_pc);

/* ===== emulated.c: the emu CPU ===== */

struct emulated;

/* emulated_new - guest memory laid out like the host's, page tables, a 64-bit CPL-3 CPU. */
struct emulated *emulated_new(char *why, size_t whylen);
void emulated_free(struct emulated *e);
uint8_t *emulated_data(struct emulated *e); /* the guest's data area (host view) */
/* emulated_cpuid - what CPUID leaf @leaf, subleaf @sub returns in emu: EAX EBX ECX EDX. */
void emulated_cpuid(struct emulated *e, uint32_t leaf, uint32_t sub, uint32_t r[4]);

/* emulated_load - put the code pages (native_place) in place and start a fresh CPU. */
int emulated_load(struct emulated *e, const uint8_t page[DIFF_CODE_SIZE], char *why, size_t whylen);

/* emulated_run - run from @entry until RIP reaches @end, an exception, or another exit. */
void emulated_run(struct emulated *e, const struct diff_regs *in, uint64_t entry, uint64_t end,
                  struct diff_result *out);

_Static_assert(sizeof(struct diff_regs) == DIFF_REGS_SIZE, "diff_regs layout");
_Static_assert(sizeof(struct snippet) == 32, "snippet layout (corpus.inc)");
#endif

#endif
