/*
 * emu_diff.c - differential test of emu against the host CPU.
 *
 * Every snippet of the corpus (snippets_*.S) runs natively and in emu from the same random
 * registers, flags and data-area contents, at the same addresses; the harness then
 * compares how each run ended (end of snippet, or which exception with which error code
 * and CR2), RIP, all 16 GPRs, the RFLAGS bits the snippet defines (CF PF AF ZF SF OF DF,
 * less those the SDM leaves undefined for it) and the whole data area, byte for byte.
 *
 * Usage: build/tests/diff/emu_diff [--seed N|random] [--cases K] [--filter F[,F...]]
 *                                  [--case I] [--max-print N] [--list] [--native-only] [-v]
 * --filter runs the snippets whose names contain one of the F (=NAME: exactly NAME);
 * --case I only case I of each; --max-print N prints N failing cases per snippet (2);
 * --native-only runs the corpus on the host alone (to check a new snippet); -v shows
 * every case's inputs and native outcome. The seed also comes from $EMU_DIFF_SEED.
 * A failure prints the snippet's name and bytes, the inputs and every difference, and how
 * to rerun just that case. Exits 0 when every case matched, 1 on any mismatch, 77 (skip)
 * when this host cannot map the fixed addresses.
 */
#include <cpuid.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>

#include "diff.h"

#define DEFAULT_CASES 64
#define EXIT_SKIP     77

static const char *const reg_name[16] = {
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15",
};

static const char *const feat_name[FEAT_NR] = {
    "popcnt",         "bmi1",       "lzcnt",
    "movbe",          "adx",        "bmi2",
    "sse4.2 (crc32)", "cmpxchg16b", "lahf/sahf in 64-bit mode",
    "fsgsbase",       "prefetchw",  "32-bit code (ia32 emulation)",
};

static const char *const vec_name[32] = {
    [0] = "#DE",  [1] = "#DB",  [3] = "#BP",  [4] = "#OF",  [5] = "#BR",  [6] = "#UD",
    [7] = "#NM",  [8] = "#DF",  [10] = "#TS", [11] = "#NP", [12] = "#SS", [13] = "#GP",
    [14] = "#PF", [16] = "#MF", [17] = "#AC", [18] = "#MC", [19] = "#XM",
};

static struct {
	uint64_t seed;
	int cases;
	int only_case; /* -1: all */
	int max_print;
	const char *filter;
	bool list, native_only, verbose;
} opt = {.cases = DEFAULT_CASES, .only_case = -1, .max_print = 2};

/* ===== Random inputs ===== */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* An operand value: edge cases of every width as often as plain random numbers. */
static uint64_t gen_value(uint64_t *s)
{
	static const uint64_t edge[] = {
	    0,
	    1,
	    2,
	    0x7f,
	    0x80,
	    0xff,
	    0x7fff,
	    0x8000,
	    0xffff,
	    0x7fffffff,
	    0x80000000,
	    0xffffffff,
	    0x100000000ULL,
	    0x7fffffffffffffffULL,
	    0x8000000000000000ULL,
	    ~0ULL,
	    ~0ULL - 1,
	    0xffffffffffffff80ULL,
	    0xffffffff80000000ULL,
	    0x00000000ffff0000ULL,
	};
	uint64_t r = splitmix(s);
	unsigned width = 8u << (r >> 8 & 3);
	uint64_t v = splitmix(s);

	switch (r & 15) {
	case 0:
	case 1: return edge[(r >> 16) % (sizeof(edge) / sizeof(edge[0]))];
	case 2: return (r >> 16) % 72; /* shift and bit counts, small divisors */
	case 3: return edge[(r >> 16) % (sizeof(edge) / sizeof(edge[0]))] + ((r >> 32) % 5) - 2;
	case 4:
	case 5: /* random low bits, sign-extended */
		if (width == 64)
			return v;
		v &= (1ULL << width) - 1;
		return v & (1ULL << (width - 1)) ? v | ~((1ULL << width) - 1) : v;
	case 6:
	case 7: /* random low bits, zero-extended */
		return width == 64 ? v : v & ((1ULL << width) - 1);
	default: return v;
	}
}

/* A pointer into the data area, at least 0x1000 bytes from either end, often unaligned. */
static uint64_t gen_pointer(uint64_t *s)
{
	uint64_t r = splitmix(s);
	uint64_t off = 0x1000 + (r >> 16) % (DIFF_DATA_SIZE - 0x3000);

	switch (r & 7) {
	case 0: /* near the end of a page: accesses cross into the next one */
		off = (off & ~0xfffULL) + 0xff8 + (r >> 8 & 7);
		break;
	case 1:
	case 2: break;
	default: off &= ~7ULL; break;
	}
	return DIFF_DATA + off;
}

static void gen_input(uint64_t *s, const struct snippet *sn, struct diff_regs *in, uint8_t *mem)
{
	static const int ptr[] = {3, 5, 6, 7}; /* rbx rbp rsi rdi */

	for (int i = 0; i < 16; i++)
		in->gpr[i] = gen_value(s);
	/* Base pointers for memory operands; everything else is an operand value. */
	for (int i = 0; i < 4; i++)
		in->gpr[ptr[i]] = gen_pointer(s);
	in->gpr[4] = DIFF_DATA + DIFF_DATA_SIZE - 0x800 - (splitmix(s) % 0x800 & ~7ULL); /* rsp */
	if (splitmix(s) % 8 == 0)
		in->gpr[4] -= 1 + splitmix(s) % 7;
	if (sn->in & IN_ALIGNED)
		for (int i = 3; i < 8; i++)
			in->gpr[i] &= ~15ULL;
	in->rflags = 0x202 | (splitmix(s) & FL_ALL);

	for (size_t off = 0; off < DIFF_DATA_SIZE; off += 8) {
		uint64_t r = splitmix(s);
		uint64_t v = (r & 3) == 0 ? gen_value(s) : splitmix(s);
		memcpy(mem + off, &v, 8);
	}
}

static uint64_t case_seed(const char *name, int n)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a of the name: --filter keeps the cases */

	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	uint64_t s = opt.seed ^ h ^ ((uint64_t)n * 0xd6e8feb86659fd93ULL);
	splitmix(&s);
	return s;
}

/* ===== Which flags the snippet defines ===== */

static uint32_t defined_flags(const struct snippet *sn, const struct diff_regs *in)
{
	uint32_t m = sn->mask;
	unsigned width = sn->arg & 0xff, count = sn->arg >> 8;

	if (sn->rule == RULE_NONE)
		return m;
	if (count == DIFF_CL) {
		count = in->gpr[1] & 0xff;
		if (sn->rule == RULE_SHD && width == 16) {
			/* The snippet's `and cl, 15` keeps the result defined and AF not. */
			count &= 15;
			m &= ~FL_AF;
		}
	}
	count &= width == 64 ? 63 : 31;
	if (count == 0)
		return m; /* nothing changes */
	if (count != 1)
		m &= ~FL_OF;
	switch (sn->rule) {
	case RULE_SHL:
	case RULE_SHD:
		m &= ~FL_AF;
		if (count >= width)
			m &= ~FL_CF;
		break;
	case RULE_SAR: m &= ~FL_AF; break;
	}
	return m;
}

/* ===== Features ===== */

typedef void cpuid_fn(void *cpu, uint32_t leaf, uint32_t sub, uint32_t r[4]);

static uint32_t bit(uint32_t reg, int n, uint32_t feat)
{
	return (reg >> n) & 1 ? feat : 0;
}

/* The FEAT_* bits a CPU reports through @cpuid. */
static uint32_t features(cpuid_fn *cpuid, void *cpu)
{
	uint32_t r[4], max, f = 0;

	cpuid(cpu, 0, 0, r);
	max = r[0];
	cpuid(cpu, 1, 0, r);
	f |= bit(r[2], 23, FEAT_POPCNT) | bit(r[2], 22, FEAT_MOVBE) | bit(r[2], 20, FEAT_SSE42) |
	     bit(r[2], 13, FEAT_CX16);
	if (max >= 7) {
		cpuid(cpu, 7, 0, r);
		f |= bit(r[1], 0, FEAT_FSGSBASE) | bit(r[1], 3, FEAT_BMI1) |
		     bit(r[1], 8, FEAT_BMI2) | bit(r[1], 19, FEAT_ADX);
	}
	cpuid(cpu, 0x80000000, 0, r);
	if (r[0] >= 0x80000001) {
		cpuid(cpu, 0x80000001, 0, r);
		f |= bit(r[2], 0, FEAT_LAHF) | bit(r[2], 5, FEAT_LZCNT) |
		     bit(r[2], 8, FEAT_PREFETCHW);
	}
	return f;
}

static void host_cpuid(void *cpu, uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static void emu_cpuid_fn(void *cpu, uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	emulated_cpuid(cpu, leaf, sub, r);
}

struct emu_features {
	struct emulated *emu;
	uint32_t feat;
};

static void read_emu_features(void *arg)
{
	struct emu_features *ef = arg;

	ef->feat = features(emu_cpuid_fn, ef->emu);
}

static uint32_t host_features(void)
{
	uint32_t f = features(host_cpuid, NULL);

	if (!(getauxval(AT_HWCAP2) & 2)) /* HWCAP2_FSGSBASE: the kernel set CR4.FSGSBASE */
		f &= ~FEAT_FSGSBASE;
	return f;
}

/* Compatibility mode needs the kernel's ia32 emulation: try the bare switch and back. */
static bool host_runs_32bit_code(uint8_t page[DIFF_CODE_SIZE], uint8_t *init)
{
	for (const struct snippet *sn = __start_diff_snippets; sn < __stop_diff_snippets; sn++) {
		struct diff_result r;
		struct diff_regs in;
		size_t len = (size_t)(sn[1].start - sn->start);
		uint64_t s = 1;

		if (!sn->name || strcmp(sn->name, "c32_switch_only"))
			continue;
		gen_input(&s, sn, &in, init);
		memcpy(native_data(), init, DIFF_DATA_SIZE);
		memset(page, 0xcc, DIFF_CODE_SIZE);
		native_place(page, sn->start, len, 0);
		native_load(page);
		native_run(&in, DIFF_CODE, DIFF_CODE + len, &r);
		return r.how == DIFF_END;
	}
	return false;
}

/* The first feature in @need that @have lacks, or -1. */
static int missing(uint32_t need, uint32_t have)
{
	for (int i = 0; i < FEAT_NR; i++)
		if ((need & ~have) >> i & 1)
			return i;
	return -1;
}

/* ===== Reporting ===== */

static void print_flags(FILE *f, uint64_t v, uint32_t mask)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} fl[] = {{FL_CF, "CF"}, {FL_PF, "PF"}, {FL_AF, "AF"}, {FL_ZF, "ZF"},
	          {FL_SF, "SF"}, {FL_DF, "DF"}, {FL_OF, "OF"}};

	fprintf(f, "%#06" PRIx64 " [", v);
	for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++)
		if (mask & fl[i].bit)
			fprintf(f, " %s=%d", fl[i].name, !!(v & fl[i].bit));
	fprintf(f, " ]");
}

static void print_outcome(FILE *f, const char *who, const struct diff_result *r, bool native)
{
	fprintf(f, "    %-6s ", who);
	switch (r->how) {
	case DIFF_END: fprintf(f, "reached the end, rip %#" PRIx64 "\n", r->rip); break;
	case DIFF_EXC:
		fprintf(f, "exception %d %s error %#x at rip %#" PRIx64, r->vector,
		        r->vector >= 0 && r->vector < 32 && vec_name[r->vector]
		            ? vec_name[r->vector]
		            : "",
		        r->err, r->rip);
		if (r->vector == 14)
			fprintf(f, " cr2 %#" PRIx64, r->cr2);
		fprintf(f, "\n");
		break;
	case DIFF_STUCK:
		if (native) {
			fprintf(
			    f, "still running after a second, at rip %#" PRIx64 " (a corpus bug)\n",
			    r->rip);
			break;
		}
		fprintf(f,
		        "emu_cpu_exec returned exit reason %d at rip %#" PRIx64
		        " (1 icount, 4 hlt, 5 shutdown, 6 kick)\n",
		        r->detail, r->rip);
		break;
	case DIFF_CRASH:
		fprintf(f, "CRASHED the host process: signal %d at host pc %#" PRIx64 "\n",
		        r->detail, r->host_pc);
		break;
	}
}

static void print_code(FILE *f, const uint8_t *code, size_t len)
{
	fprintf(f, "    bytes ");
	for (size_t i = 0; i < len; i++)
		fprintf(f, "%02x%s", code[i],
		        i + 1 < len && (i + 1) % 32 == 0 ? "\n          " : "");
	fprintf(f, "\n");
}

static void print_inputs(FILE *f, const struct diff_regs *in)
{
	for (int i = 0; i < 16; i++) {
		fprintf(f, "%s%3s=%016" PRIx64, i % 4 == 0 ? "    in " : "  ", reg_name[i],
		        in->gpr[i]);
		if (i % 4 == 3)
			fputc('\n', f);
	}
	fprintf(f, "    in rflags=");
	print_flags(f, in->rflags, FL_ALL);
	fprintf(f, "\n");
}

/* ===== One case ===== */

struct ctx {
	struct emulated *emu;
	uint32_t host_feat, emu_feat;
	uint8_t *init;                /* the data area before the run */
	uint8_t page[DIFF_CODE_SIZE]; /* the code pages of the snippet under test */
	long passed, failed, skipped_snippets, failing_snippets, host_reruns;
	int skip_host[FEAT_NR], skip_emu[FEAT_NR]; /* skipped snippets by missing feature */
};

static bool same_end(const struct diff_result *a, const struct diff_result *b)
{
	if (a->how != b->how)
		return false;
	if (a->how != DIFF_EXC)
		return true;
	if (a->vector != b->vector || a->err != b->err)
		return false;
	return a->vector != 14 || a->cr2 == b->cr2;
}

/* Compare and, if anything differs, report it when @print. Returns true on a match. */
static bool compare(const struct snippet *sn, size_t len, size_t off, int n,
                    const struct diff_regs *in, const uint8_t *init, const struct diff_result *nat,
                    const uint8_t *nmem, const struct diff_result *emu, const uint8_t *emem,
                    bool print)
{
	uint32_t mask = defined_flags(sn, in);
	bool ok = same_end(nat, emu) && nat->rip == emu->rip &&
	          memcmp(nat->regs.gpr, emu->regs.gpr, sizeof(nat->regs.gpr)) == 0 &&
	          ((nat->regs.rflags ^ emu->regs.rflags) & mask) == 0 &&
	          memcmp(nmem, emem, DIFF_DATA_SIZE) == 0;
	FILE *f = stdout;
	int shown = 0, extra = 0;

	if (nat->how == DIFF_STUCK || emu->how == DIFF_CRASH || emu->how == DIFF_STUCK)
		ok = false;
	if (ok || !print)
		return ok;

	fprintf(f, "FAIL %s case %d (rerun: --seed %#" PRIx64 " --filter =%s --case %d -v)\n",
	        sn->name, n, opt.seed, sn->name, n);
	print_code(f, sn->start, len);
	fprintf(f, "    at %#" PRIx64 "%s\n", (uint64_t)DIFF_CODE + off,
	        off ? ", across the boundary of the code pages" : "");
	print_inputs(f, in);
	print_outcome(f, "native", nat, true);
	print_outcome(f, "emu", emu, false);
	if (emu->how == DIFF_CRASH)
		return false;
	if (nat->rip != emu->rip)
		fprintf(f, "    rip    native %016" PRIx64 "  emu %016" PRIx64 "\n", nat->rip,
		        emu->rip);
	for (int i = 0; i < 16; i++)
		if (nat->regs.gpr[i] != emu->regs.gpr[i])
			fprintf(f,
			        "    %-6s native %016" PRIx64 "  emu %016" PRIx64
			        "  (in %016" PRIx64 ")\n",
			        reg_name[i], nat->regs.gpr[i], emu->regs.gpr[i], in->gpr[i]);
	if ((nat->regs.rflags ^ emu->regs.rflags) & mask) {
		fprintf(f, "    rflags native ");
		print_flags(f, nat->regs.rflags, mask);
		fprintf(f, "\n           emu    ");
		print_flags(f, emu->regs.rflags, mask);
		fprintf(f, "\n           (compared bits %#x)\n", mask);
	}
	for (size_t off = 0; off < DIFF_DATA_SIZE; off++) {
		if (nmem[off] == emem[off])
			continue;
		if (shown++ < 16)
			fprintf(f,
			        "    mem %#" PRIx64 " (data+%#zx): in %02x native %02x emu %02x\n",
			        (uint64_t)DIFF_DATA + off, off, init[off], nmem[off], emem[off]);
		else
			extra++;
	}
	if (extra)
		fprintf(f, "    ... and %d more differing bytes\n", extra);
	return false;
}

/*
 * Whether native and emu agree, running native up to twice more if they do not. The
 * emulator is deterministic but the host is not quite: an interrupt between two user
 * instructions can come back with a flag the kernel's return path did not preserve (CI
 * once saw popf_cpl3's NT lost that way on a paravirtualised host). A case fails only
 * if every native run differs from emu; a rerun that matches is counted in host_reruns.
 */
static bool native_agrees(struct ctx *cx, const struct snippet *sn, size_t len, size_t off, int n,
                          const struct diff_regs *in, struct diff_result *nat,
                          const struct diff_result *emu)
{
	uint64_t entry = DIFF_CODE + off;

	for (int again = 0; again <= 2; again++) {
		if (again) {
			memcpy(native_data(), cx->init, DIFF_DATA_SIZE);
			native_run(in, entry, entry + len, nat);
		}
		if (compare(sn, len, off, n, in, cx->init, nat, native_data(), emu,
		            emulated_data(cx->emu), false)) {
			if (again) {
				cx->host_reruns++;
				printf("note: %s case %d matched only when native ran again "
				       "(the host disturbed the first run)\n",
				       sn->name, n);
			}
			return true;
		}
	}
	return false;
}

static void run_snippet(struct ctx *cx, const struct snippet *sn, size_t len)
{
	struct diff_result nat, emu;
	struct diff_regs in;
	char why[256];
	int fails = 0;
	uint64_t s;
	size_t split;
	int lack;

	if ((lack = missing(sn->feat, cx->host_feat)) >= 0) {
		if (opt.verbose)
			printf("SKIP %s: the host lacks %s\n", sn->name, feat_name[lack]);
		cx->skip_host[lack]++;
		cx->skipped_snippets++;
		return;
	}
	if (!opt.native_only && (lack = missing(sn->feat & ~FEAT_HOST_ONLY, cx->emu_feat)) >= 0) {
		if (opt.verbose)
			printf("SKIP %s: emu does not advertise %s in CPUID\n", sn->name,
			       feat_name[lack]);
		cx->skip_emu[lack]++;
		cx->skipped_snippets++;
		return;
	}
	if (len + 14 > 0x800) {
		printf("FAIL %s: %zu bytes, longer than the harness allows\n", sn->name, len);
		cx->failed++;
		cx->failing_snippets++;
		return;
	}
	/*
	 * Two copies: one at the start of the code pages, for even-numbered cases, and one
	 * across the boundary between them, for odd ones, split at a point that depends on
	 * the seed (often mid-instruction).
	 */
	s = case_seed(sn->name, -1);
	split = 0x1000 - 1 - (len ? splitmix(&s) % len : 0);
	memset(cx->page, 0xcc, sizeof(cx->page));
	native_place(cx->page, sn->start, len, 0);
	native_place(cx->page, sn->start, len, split);
	native_load(cx->page);
	if (!opt.native_only && emulated_load(cx->emu, cx->page, why, sizeof(why)) < 0) {
		printf("FAIL %s: %s\n", sn->name, why);
		cx->failed++;
		cx->failing_snippets++;
		return;
	}
	for (int n = 0; n < opt.cases; n++) {
		uint64_t entry;
		size_t off;

		if (opt.only_case >= 0 && n != opt.only_case)
			continue;
		s = case_seed(sn->name, n);
		off = n % 2 ? split : 0;
		entry = DIFF_CODE + off;
		gen_input(&s, sn, &in, cx->init);
		memcpy(native_data(), cx->init, DIFF_DATA_SIZE);
		native_run(&in, entry, entry + len, &nat);
		if (opt.verbose) {
			printf("%s case %d\n", sn->name, n);
			print_inputs(stdout, &in);
			print_outcome(stdout, "native", &nat, true);
		}
		if (opt.native_only) {
			if (nat.how == DIFF_STUCK) {
				print_outcome(stdout, sn->name, &nat, true);
				cx->failed++;
			} else {
				cx->passed++;
			}
			continue;
		}
		memcpy(emulated_data(cx->emu), cx->init, DIFF_DATA_SIZE);
		emulated_run(cx->emu, &in, entry, entry + len, &emu);
		if (native_agrees(cx, sn, len, off, n, &in, &nat, &emu) ||
		    compare(sn, len, off, n, &in, cx->init, &nat, native_data(), &emu,
		            emulated_data(cx->emu), fails < opt.max_print)) {
			cx->passed++;
		} else {
			cx->failed++;
			fails++;
		}
	}
	if (fails) {
		cx->failing_snippets++;
		printf("FAIL %s: %d of %d cases differ\n", sn->name, fails,
		       opt.only_case >= 0 ? 1 : opt.cases);
	} else if (opt.verbose) {
		printf("ok %s\n", sn->name);
	}
}

static bool selected(const char *name)
{
	const char *p = opt.filter;

	if (!p)
		return true;
	while (*p) {
		size_t n = strcspn(p, ",");
		char want[128];
		if (n && n < sizeof(want)) {
			memcpy(want, p, n);
			want[n] = 0;
			if (want[0] == '=' ? !strcmp(name, want + 1) : !!strstr(name, want))
				return true;
		}
		p += n + (p[n] == ',');
	}
	return false;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: emu_diff [--seed N|random] [--cases K] [--filter F[,F...]] [--case I]\n"
	        "                [--max-print N] [--list] [--native-only] [-v]\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	const char *env = getenv("EMU_DIFF_SEED");

	opt.seed = env ? strtoull(env, NULL, 0) : 0x5eed;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--list")) {
			opt.list = true;
		} else if (!strcmp(a, "--native-only")) {
			opt.native_only = true;
		} else if (!strcmp(a, "-v")) {
			opt.verbose = true;
		} else if (!v) {
			usage();
		} else if (!strcmp(a, "--seed")) {
			opt.seed =
			    !strcmp(v, "random") ? (uint64_t)time(NULL) : strtoull(v, NULL, 0);
			i++;
		} else if (!strcmp(a, "--cases")) {
			opt.cases = atoi(v);
			i++;
		} else if (!strcmp(a, "--case")) {
			opt.only_case = atoi(v);
			i++;
		} else if (!strcmp(a, "--filter")) {
			opt.filter = v;
			i++;
		} else if (!strcmp(a, "--max-print")) {
			opt.max_print = atoi(v);
			i++;
		} else {
			usage();
		}
	}
	if (opt.only_case >= opt.cases)
		opt.cases = opt.only_case + 1;
}

int main(int argc, char **argv)
{
	static uint8_t init[DIFF_DATA_SIZE];
	struct ctx cx = {.init = init};
	char why[256];
	long snippets = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	if (opt.list) {
		for (const struct snippet *sn = __start_diff_snippets; sn < __stop_diff_snippets;
		     sn++)
			if (sn->name && selected(sn->name))
				printf("%s\n", sn->name);
		return 0;
	}
	if (native_init(why, sizeof(why)) < 0) {
		printf("SKIP: %s\n", why);
		return EXIT_SKIP;
	}
	cx.host_feat = host_features();
	if (host_runs_32bit_code(cx.page, cx.init))
		cx.host_feat |= FEAT_COMPAT32;
	if (!opt.native_only) {
		cx.emu = emulated_new(why, sizeof(why));
		if (!cx.emu) {
			printf("FAIL: cannot set up emu: %s\n", why);
			return 1;
		}
		struct emu_features ef = {.emu = cx.emu};
		uint64_t pc;
		int sig = native_guarded(read_emu_features, &ef, &pc);
		if (sig) {
			printf("FAIL: emu_cpuid crashed: signal %d at host pc %#" PRIx64 "\n", sig,
			       pc);
			return 1;
		}
		cx.emu_feat = ef.feat;
	}
	printf("emu_diff: seed %#" PRIx64 ", %d cases per snippet\n", opt.seed, opt.cases);
	for (const struct snippet *sn = __start_diff_snippets; sn < __stop_diff_snippets; sn++) {
		if (!sn->name || !selected(sn->name))
			continue;
		snippets++;
		run_snippet(&cx, sn, (size_t)(sn[1].start - sn->start));
	}
	for (int i = 0; i < FEAT_NR; i++) {
		if (cx.skip_host[i])
			printf("skipped %d snippets: the host lacks %s\n", cx.skip_host[i],
			       feat_name[i]);
		if (cx.skip_emu[i])
			printf("skipped %d snippets: emu does not advertise %s\n", cx.skip_emu[i],
			       feat_name[i]);
	}
	printf("%ld snippets: %ld skipped, %ld with failures\n", snippets, cx.skipped_snippets,
	       cx.failing_snippets);
	printf("%ld passed, %ld failed\n", cx.passed, cx.failed);
	if (cx.host_reruns)
		printf("%ld cases passed only when native ran again\n", cx.host_reruns);
	if (cx.failed)
		printf(
		    "disassemble a snippet's bytes: echo BYTES | xxd -r -p > s.bin; objdump -D -b "
		    "binary -m i386:x86-64 -M intel --adjust-vma=%#x s.bin\n",
		    DIFF_CODE);
	emulated_free(cx.emu);
	return cx.failed ? 1 : 0;
}
