/*
 * emu_diff.c - differential test of emu against the host CPU.
 *
 * Every snippet of the corpus (snippets.S) runs natively and in emu from the same random
 * registers, flags and data-area contents, at the same addresses; the harness then
 * compares how each run ended (end of snippet, or which exception with which error code
 * and CR2), RIP, all 16 GPRs, the RFLAGS bits the snippet defines (CF PF AF ZF SF OF DF,
 * less those the SDM leaves undefined for it) and the whole data area, byte for byte.
 *
 * Usage: build/tests/diff/emu_diff [--seed N] [--cases K] [--filter STR[,STR...]]
 *                                  [--case I] [--max-print N] [--list] [--native-only] [-v]
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
#include <time.h>

#include "diff.h"

#define DEFAULT_CASES 40
#define EXIT_SKIP     77

static const char *const reg_name[16] = {
	"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
	"r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15",
};

static const char *const feat_name[FEAT_NR] = {
	"popcnt", "bmi1", "lzcnt", "movbe", "adx", "bmi2", "sse4.2 (crc32)",
	"cmpxchg16b", "sse2", "ssse3", "sse4.1", "lahf/sahf in 64-bit mode", "rdpid",
	"prefetchw",
};

static const char *const vec_name[32] = {
	[0] = "#DE", [1] = "#DB", [3] = "#BP", [4] = "#OF", [5] = "#BR", [6] = "#UD",
	[7] = "#NM", [8] = "#DF", [10] = "#TS", [11] = "#NP", [12] = "#SS", [13] = "#GP",
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
	case 1:
		return edge[(r >> 16) % (sizeof(edge) / sizeof(edge[0]))];
	case 2:
		return (r >> 16) % 72; /* shift and bit counts, small divisors */
	case 3:
		return edge[(r >> 16) % (sizeof(edge) / sizeof(edge[0]))] + ((r >> 32) % 5) - 2;
	case 4:
	case 5: /* random low bits, sign-extended */
		if (width == 64)
			return v;
		v &= (1ULL << width) - 1;
		return v & (1ULL << (width - 1)) ? v | ~((1ULL << width) - 1) : v;
	case 6:
	case 7: /* random low bits, zero-extended */
		return width == 64 ? v : v & ((1ULL << width) - 1);
	default:
		return v;
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
	case 2:
		break;
	default:
		off &= ~7ULL;
		break;
	}
	return DIFF_DATA + off;
}

static void gen_input(uint64_t *s, struct diff_regs *in, uint8_t *mem)
{
	for (int i = 0; i < 16; i++)
		in->gpr[i] = gen_value(s);
	/* Base pointers for memory operands; everything else is an operand value. */
	in->gpr[3] = gen_pointer(s);  /* rbx */
	in->gpr[5] = gen_pointer(s);  /* rbp */
	in->gpr[6] = gen_pointer(s);  /* rsi */
	in->gpr[7] = gen_pointer(s);  /* rdi */
	in->gpr[4] = DIFF_DATA + DIFF_DATA_SIZE - 0x800 - (splitmix(s) % 0x800 & ~7ULL); /* rsp */
	if (splitmix(s) % 8 == 0)
		in->gpr[4] -= 1 + splitmix(s) % 7;
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
	case RULE_SAR:
		m &= ~FL_AF;
		break;
	}
	return m;
}

/* ===== Features ===== */

static uint32_t host_features(void)
{
	unsigned a, b, c, d, max;
	uint32_t f = 0;

	max = __get_cpuid_max(0, NULL);
	__cpuid(1, a, b, c, d);
	f |= (c >> 23 & 1 ? FEAT_POPCNT : 0) | (c >> 22 & 1 ? FEAT_MOVBE : 0) |
	     (c >> 20 & 1 ? FEAT_SSE42 : 0) | (c >> 19 & 1 ? FEAT_SSE41 : 0) |
	     (c >> 13 & 1 ? FEAT_CX16 : 0) | (c >> 9 & 1 ? FEAT_SSSE3 : 0) |
	     (d >> 26 & 1 ? FEAT_SSE2 : 0);
	if (max >= 7) {
		__cpuid_count(7, 0, a, b, c, d);
		f |= (b >> 3 & 1 ? FEAT_BMI1 : 0) | (b >> 8 & 1 ? FEAT_BMI2 : 0) |
		     (b >> 19 & 1 ? FEAT_ADX : 0) | (c >> 22 & 1 ? FEAT_RDPID : 0);
	}
	if (__get_cpuid_max(0x80000000, NULL) >= 0x80000001) {
		__cpuid(0x80000001, a, b, c, d);
		f |= (c & 1 ? FEAT_LAHF : 0) | (c >> 5 & 1 ? FEAT_LZCNT : 0) |
		     (c >> 8 & 1 ? FEAT_PREFETCHW : 0);
	}
	return f;
}

static const char *missing(uint32_t need, uint32_t have)
{
	for (int i = 0; i < FEAT_NR; i++)
		if ((need & ~have) >> i & 1)
			return feat_name[i];
	return NULL;
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

static void print_outcome(FILE *f, const char *who, const struct diff_result *r)
{
	fprintf(f, "    %-6s ", who);
	switch (r->how) {
	case DIFF_END:
		fprintf(f, "reached the end, rip %#" PRIx64 "\n", r->rip);
		break;
	case DIFF_EXC:
		fprintf(f, "exception %d %s error %#x at rip %#" PRIx64, r->vector,
			r->vector >= 0 && r->vector < 32 && vec_name[r->vector] ? vec_name[r->vector]
										 : "",
			r->err, r->rip);
		if (r->vector == 14)
			fprintf(f, " cr2 %#" PRIx64, r->cr2);
		fprintf(f, "\n");
		break;
	case DIFF_STUCK:
		fprintf(f, "emu_cpu_exec returned exit reason %d at rip %#" PRIx64
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
		fprintf(f, "%02x%s", code[i], i + 1 < len && (i + 1) % 32 == 0 ? "\n          " : "");
	fprintf(f, "\n");
}

static void print_inputs(FILE *f, const struct diff_regs *in)
{
	for (int i = 0; i < 16; i++)
		fprintf(f, "%s%3s=%016" PRIx64, i % 4 == 0 ? "    in " : "  ", reg_name[i],
			in->gpr[i]), i % 4 == 3 ? fputc('\n', f) : 0;
	fprintf(f, "    in rflags=");
	print_flags(f, in->rflags, FL_ALL);
	fprintf(f, "\n");
}

/* ===== One case ===== */

struct ctx {
	struct emulated *emu;
	uint32_t host_feat, emu_feat;
	uint8_t *init; /* the data area before the run */
	uint8_t page[DIFF_CODE_SIZE]; /* the code page of the snippet under test */
	long passed, failed, skipped_snippets, failing_snippets;
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
static bool compare(const struct snippet *sn, size_t len, int n, const struct diff_regs *in,
		    const uint8_t *init, const struct diff_result *nat, const uint8_t *nmem,
		    const struct diff_result *emu, const uint8_t *emem, bool print)
{
	uint32_t mask = defined_flags(sn, in);
	bool ok = same_end(nat, emu) && nat->rip == emu->rip &&
		  memcmp(nat->regs.gpr, emu->regs.gpr, sizeof(nat->regs.gpr)) == 0 &&
		  ((nat->regs.rflags ^ emu->regs.rflags) & mask) == 0 &&
		  memcmp(nmem, emem, DIFF_DATA_SIZE) == 0;
	FILE *f = stdout;
	int shown = 0, extra = 0;

	if (emu->how == DIFF_CRASH || emu->how == DIFF_STUCK)
		ok = false;
	if (ok || !print)
		return ok;

	fprintf(f, "FAIL %s case %d (rerun: --seed %#" PRIx64 " --filter %s --case %d)\n",
		sn->name, n, opt.seed, sn->name, n);
	print_code(f, sn->start, len);
	print_inputs(f, in);
	print_outcome(f, "native", nat);
	print_outcome(f, "emu", emu);
	if (emu->how == DIFF_CRASH)
		return false;
	if (nat->rip != emu->rip)
		fprintf(f, "    rip    native %016" PRIx64 "  emu %016" PRIx64 "\n", nat->rip,
			emu->rip);
	for (int i = 0; i < 16; i++)
		if (nat->regs.gpr[i] != emu->regs.gpr[i])
			fprintf(f, "    %-6s native %016" PRIx64 "  emu %016" PRIx64 "  (in %016" PRIx64
				   ")\n",
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
			fprintf(f, "    mem %#" PRIx64 " (data+%#zx): in %02x native %02x emu %02x\n",
				(uint64_t)DIFF_DATA + off, off, init[off], nmem[off], emem[off]);
		else
			extra++;
	}
	if (extra)
		fprintf(f, "    ... and %d more differing bytes\n", extra);
	return false;
}

static void run_snippet(struct ctx *cx, const struct snippet *sn, size_t len)
{
	struct diff_result nat, emu;
	struct diff_regs in;
	char why[256];
	int fails = 0;
	const char *lack;

	if ((lack = missing(sn->feat, cx->host_feat))) {
		printf("SKIP %s: the host CPU lacks %s\n", sn->name, lack);
		cx->skipped_snippets++;
		return;
	}
	if (!opt.native_only && (lack = missing(sn->feat, cx->emu_feat))) {
		printf("SKIP %s: emu does not advertise %s in CPUID\n", sn->name, lack);
		cx->skipped_snippets++;
		return;
	}
	if (len + 14 > DIFF_CODE_SIZE) {
		printf("FAIL %s: %zu bytes, longer than the code page\n", sn->name, len);
		cx->failed++;
		cx->failing_snippets++;
		return;
	}
	native_image(cx->page, sn->start, len);
	native_load(cx->page);
	if (!opt.native_only && emulated_load(cx->emu, cx->page, why, sizeof(why)) < 0) {
		printf("FAIL %s: %s\n", sn->name, why);
		cx->failed++;
		cx->failing_snippets++;
		return;
	}
	for (int n = 0; n < opt.cases; n++) {
		uint64_t s;

		if (opt.only_case >= 0 && n != opt.only_case)
			continue;
		s = case_seed(sn->name, n);
		gen_input(&s, &in, cx->init);
		memcpy(native_data(), cx->init, DIFF_DATA_SIZE);
		native_run(&in, len, &nat);
		if (opt.verbose) {
			printf("%s case %d\n", sn->name, n);
			print_inputs(stdout, &in);
			print_outcome(stdout, "native", &nat);
		}
		if (opt.native_only) {
			cx->passed++;
			continue;
		}
		memcpy(emulated_data(cx->emu), cx->init, DIFF_DATA_SIZE);
		emulated_run(cx->emu, &in, len, &emu);
		if (compare(sn, len, n, &in, cx->init, &nat, native_data(), &emu,
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
			if (strstr(name, want))
				return true;
		}
		p += n + (p[n] == ',');
	}
	return false;
}

static void usage(void)
{
	fprintf(stderr, "usage: emu_diff [--seed N] [--cases K] [--filter STR[,STR...]] [--case I]\n"
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
			opt.seed = !strcmp(v, "random") ? (uint64_t)time(NULL) : strtoull(v, NULL, 0);
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
	if (!opt.native_only) {
		cx.emu = emulated_new(why, sizeof(why));
		if (!cx.emu) {
			printf("FAIL: cannot set up emu: %s\n", why);
			return 1;
		}
		cx.emu_feat = emulated_features(cx.emu);
	}
	printf("emu_diff: seed %#" PRIx64 ", %d cases per snippet\n", opt.seed, opt.cases);
	for (const struct snippet *sn = __start_diff_snippets; sn < __stop_diff_snippets; sn++) {
		if (!sn->name || !selected(sn->name))
			continue;
		snippets++;
		run_snippet(&cx, sn, (size_t)(sn[1].start - sn->start));
	}
	printf("%ld snippets: %ld skipped, %ld with failures\n", snippets, cx.skipped_snippets,
	       cx.failing_snippets);
	printf("%ld passed, %ld failed\n", cx.passed, cx.failed);
	emulated_free(cx.emu);
	return cx.failed ? 1 : 0;
}
