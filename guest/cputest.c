/*
 * cputest.c - self-checking instruction tests, run inside the guest.
 *
 * Each check runs the instruction under test in inline asm on register inputs (so the
 * compiler cannot fold it) and compares the result and the defined flags with constants
 * worked out by hand. The system tests then check expected exceptions (#UD #DE #GP #PF
 * #BP), paging (4 KiB PTE changes with invlpg, write protection, NX) and the APIC timer.
 * Prints "FAIL <test>: ..." per failure and "cputest: N tests, F failures"; exits with
 * min(F, 255).
 *
 * Built with -DCPUTEST_HOSTED the user-mode part runs as a Linux program, which checks
 * the hand-computed constants against the real CPU (tests/guest/meson.build).
 */
#ifdef CPUTEST_HOSTED
#include <stdint.h>
#include <stdio.h>
#include <string.h>
static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
	                 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
	                 : "a"(leaf), "c"(sub));
}
static uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
#else
#include "rt/rt.h"
#include "rt/x86.h"
#endif

#define CF    0x001ull
#define PF    0x004ull
#define AF    0x010ull
#define ZF    0x040ull
#define SF    0x080ull
#define OF    0x800ull
#define ARITH (CF | PF | AF | ZF | SF | OF)
#define LOGIC (CF | PF | ZF | SF | OF) /* AF undefined */

static unsigned ntests, nfail;

static void check(const char *name, uint64_t got, uint64_t want)
{
	ntests++;
	if (got != want) {
		nfail++;
		printf("FAIL %s: got 0x%llx want 0x%llx\n", name, (unsigned long long)got,
		       (unsigned long long)want);
	}
}

/*
 * OP - run asm template @t on d (in/out, "+r") and s (in) with CF preset to @cin; yields
 * d and the flags after. The template names its operands %[d] and %[s] (with size
 * modifiers such as %k[d], %b[s] as needed).
 */
#define OP(t, cin, dv, sv, outd, outf)                                                             \
	do {                                                                                       \
		uint64_t od_ = (dv), os_ = (sv), of_;                                              \
		__asm__ volatile("bt $0, %[c]\n\t" t "\n\tpushfq\n\tpopq %[f]"                     \
		                 : [d] "+r"(od_), [f] "=r"(of_)                                    \
		                 : [s] "r"(os_), [c] "r"((uint64_t)(cin))                          \
		                 : "rcx", "cc");                                                   \
		outd = od_;                                                                        \
		outf = of_;                                                                        \
	} while (0)

/* Check result and flags (masked) of one operation. */
#define T(name, t, cin, dv, sv, want_d, mask, want_f)                                              \
	do {                                                                                       \
		uint64_t r_, f_;                                                                   \
		OP(t, cin, dv, sv, r_, f_);                                                        \
		check(name, r_, want_d);                                                           \
		check(name " flags", f_ &(mask), want_f);                                          \
	} while (0)

static void test_arith(void)
{
	T("add64 overflow", "addq %[s], %[d]", 0, 0x7fffffffffffffffull, 1, 0x8000000000000000ull,
	  ARITH, OF | SF | AF | PF);
	T("add64 carry", "addq %[s], %[d]", 0, ~0ull, 1, 0, ARITH, CF | ZF | AF | PF);
	T("add32 zero-extends", "addl %k[s], %k[d]", 0, 0xffffffff7fffffffull, 1, 0x80000000ull,
	  ARITH, OF | SF | AF | PF);
	T("add16 keeps upper", "addw %w[s], %w[d]", 0, 0x123456789abcffffull, 1,
	  0x123456789abc0000ull, ARITH, CF | ZF | AF | PF);
	T("add8 keeps upper", "addb %b[s], %b[d]", 0, 0x1122334455667f7full, 1,
	  0x1122334455667f80ull, ARITH, OF | SF | AF);
	T("add imm8 sign-extended", "addq $-1, %[d]", 0, 5, 0, 4, ARITH, CF | AF);
	T("adc", "adcq %[s], %[d]", 1, 1, 1, 3, ARITH, PF);
	T("sbb", "sbbq %[s], %[d]", 1, 0, 0, ~0ull, ARITH, CF | SF | AF | PF);
	T("sub borrow", "subq %[s], %[d]", 0, 0, 1, ~0ull, ARITH, CF | SF | AF | PF);
	T("sub32", "subl %k[s], %k[d]", 0, 0xffffffff00000005ull, 7, 0xfffffffeull, ARITH,
	  CF | SF | AF);
	T("cmp", "cmpq %[s], %[d]", 0, 5, 7, 5, ARITH, CF | SF | AF);
	T("neg 0", "negq %[d]", 0, 0, 0, 0, ARITH, ZF | PF);
	T("neg 1", "negq %[d]", 0, 1, 0, ~0ull, ARITH, CF | SF | AF | PF);
	T("inc keeps CF", "incq %[d]", 1, 0x7fffffffffffffffull, 0, 0x8000000000000000ull, ARITH,
	  CF | OF | SF | AF | PF);
	T("dec keeps CF", "decq %[d]", 0, 0, 0, ~0ull, ARITH, SF | AF | PF);
	T("and", "andq %[s], %[d]", 1, 0xf0, 0x0f, 0, LOGIC, ZF | PF);
	T("or", "orq %[s], %[d]", 1, 0x8000000000000000ull, 1, 0x8000000000000001ull, LOGIC, SF);
	T("xor", "xorq %[s], %[d]", 1, 0x1234, 0x1234, 0, LOGIC, ZF | PF);
	T("test", "testq %[s], %[d]", 1, 0x80, 0x80, 0x80, LOGIC, 0);
	T("not", "notq %[d]", 1, 0xff00ff00ff00ff00ull, 0, 0x00ff00ff00ff00ffull, CF, CF);
	T("lea", "leaq 7(%[d],%[s],4), %[d]", 0, 100, 10, 147, 0, 0);
	T("movzbl", "movzbl %b[s], %k[d]", 0, ~0ull, 0x1ff, 0xff, 0, 0);
	T("movsbq", "movsbq %b[s], %[d]", 0, 0, 0x80, 0xffffffffffffff80ull, 0, 0);
	T("movswl", "movswl %w[s], %k[d]", 0, ~0ull, 0x8000, 0xffff8000ull, 0, 0);
	T("movslq", "movslq %k[s], %[d]", 0, 0, 0x80000000ull, 0xffffffff80000000ull, 0, 0);
	T("mov32 zero-extends", "movl %k[s], %k[d]", 0, ~0ull, ~0ull, 0xffffffffull, 0, 0);
	T("xchg", "xchgq %[s], %[d]\n\tmovq %[s], %[d]", 0, 1, 2, 1, 0, 0);

	/* 128-bit add and subtract through the carry chain */
	uint64_t lo = ~0ull, hi = 1;
	__asm__("addq $1, %0\n\tadcq $0, %1" : "+r"(lo), "+r"(hi) : : "cc");
	check("add128", hi << 32 | lo, 2ull << 32);
	__asm__("subq $1, %0\n\tsbbq $0, %1" : "+r"(lo), "+r"(hi) : : "cc");
	check("sub128", hi << 32 | (lo >> 32), 1ull << 32 | 0xffffffffull);

	uint64_t a = 0x80, c = 0xffffffff;
	__asm__("cltq" : "+a"(c));
	check("cltq", c, ~0ull);
	__asm__("cqto" : "=d"(c) : "a"(a << 56));
	check("cqto", c, ~0ull);
}

static void test_shifts(void)
{
	T("shl 63", "shlq $63, %[d]", 0, 1, 0, 0x8000000000000000ull, CF | ZF | SF | PF, SF | PF);
	T("shl 1", "shlq $1, %[d]", 0, 0xc000000000000000ull, 0, 0x8000000000000000ull,
	  CF | ZF | SF | PF | OF, CF | SF | PF);
	T("shl cl masked", "movl %k[s], %%ecx\n\tshlq %%cl, %[d]", 0, 3, 65, 6, CF, 0);
	T("shl cl 0 keeps flags", "movl %k[s], %%ecx\n\tshlq %%cl, %[d]", 1, 3, 64, 3, CF, CF);
	T("shr 1", "shrq $1, %[d]", 0, 0x8000000000000001ull, 0, 0x4000000000000000ull,
	  CF | ZF | SF | PF | OF, CF | PF | OF);
	T("sar 63", "sarq $63, %[d]", 0, 0x8000000000000000ull, 0, ~0ull, CF | ZF | SF | PF,
	  SF | PF);
	T("sar32", "sarl $4, %k[d]", 0, 0x80000000ull, 0, 0xf8000000ull, CF | ZF | SF, SF);
	T("shl32 cl masked", "movl %k[s], %%ecx\n\tshll %%cl, %k[d]", 0, 1, 33, 2, CF, 0);
	T("shl8", "shlb $1, %b[d]", 0, 0x1ff, 0, 0x1fe, CF | SF, CF | SF);
	T("rol 4", "rolq $4, %[d]", 1, 0x8000000000000001ull, 0, 0x18, CF, 0);
	T("ror 1", "rorq $1, %[d]", 0, 1, 0, 0x8000000000000000ull, CF | OF, CF | OF);
	T("rol16", "rolw $8, %w[d]", 0, 0xaaaa1234, 0, 0xaaaa3412, 0, 0);
	T("rcl", "rclq $1, %[d]", 1, 0x8000000000000000ull, 0, 1, CF, CF);
	T("rcr", "rcrq $1, %[d]", 1, 0, 0, 0x8000000000000000ull, CF, 0);
	T("rcr8 by 9", "rcrb $9, %b[d]", 1, 0x55, 0, 0x55, CF, CF);
	T("shld", "shldq $8, %[s], %[d]", 0, 1, 0xab00000000000000ull, 0x1ab, CF, 0);
	T("shrd", "shrdq $8, %[s], %[d]", 0, 0x100, 0xcd, 0xcd00000000000001ull, CF, 0);
	T("shrd cl", "movl $4, %%ecx\n\tshrdq %%cl, %[s], %[d]", 0, 0x10, 0xf,
	  0xf000000000000001ull, CF, 0);
}

static void test_muldiv(void)
{
	uint64_t a, d, f;

	__asm__("mulq %[s]\n\tpushfq\n\tpopq %[f]"
	        : "=a"(a), "=d"(d), [f] "=r"(f)
	        : "a"(~0ull), [s] "r"(~0ull)
	        : "cc");
	check("mul128 lo", a, 1);
	check("mul128 hi", d, 0xfffffffffffffffeull);
	check("mul128 flags", f & (CF | OF), CF | OF);
	__asm__("mulq %[s]\n\tpushfq\n\tpopq %[f]"
	        : "=a"(a), "=d"(d), [f] "=r"(f)
	        : "a"(2ull), [s] "r"(3ull)
	        : "cc");
	check("mul small", d << 8 | a | (f & (CF | OF)), 6);
	__asm__("imulq %[s]\n\tpushfq\n\tpopq %[f]"
	        : "=a"(a), "=d"(d), [f] "=r"(f)
	        : "a"(-2ll), [s] "r"(3ull)
	        : "cc");
	check("imul128 neg lo", a, (uint64_t)-6ll);
	check("imul128 neg hi", d, ~0ull);
	check("imul128 neg flags", f & (CF | OF), 0);
	__asm__("imulq %[s]\n\tpushfq\n\tpopq %[f]"
	        : "=a"(a), "=d"(d), [f] "=r"(f)
	        : "a"(0x4000000000000000ull), [s] "r"(4ull)
	        : "cc");
	check("imul128 ovf", d << 4 | a | (f & (CF | OF)), 0x10 | CF | OF);
	T("imul2 trunc", "imulq %[s], %[d]", 0, 0x100000000ull, 0x100000000ull, 0, CF | OF,
	  CF | OF);
	T("imul3", "imulq $-3, %[s], %[d]", 0, 0, 7, (uint64_t)-21ll, CF | OF, 0);
	T("imul32", "imull %k[s], %k[d]", 0, 0x10000, 0x10000, 0, CF | OF, CF | OF);
	__asm__("mull %k[s]" : "=a"(a), "=d"(d) : "a"(0xffffffffull), [s] "r"(0xffffffffull));
	check("mul32", d << 32 | a, 0xfffffffe00000001ull);
	__asm__("mulb %b[s]" : "=a"(a) : "a"(0xaabbccddeeff0010ull), [s] "r"(0x20ull));
	check("mul8", a, 0xaabbccddeeff0200ull);

	__asm__("divq %[s]" : "=a"(a), "=d"(d) : "a"(0ull), "d"(1ull), [s] "r"(3ull));
	check("div128 q", a, 0x5555555555555555ull);
	check("div128 r", d, 1);
	__asm__("idivq %[s]" : "=a"(a), "=d"(d) : "a"(-7ll), "d"(-1ll), [s] "r"(2ull));
	check("idiv128 q", a, (uint64_t)-3ll);
	check("idiv128 r", d, ~0ull);
	__asm__("idivq %[s]" : "=a"(a), "=d"(d) : "a"(7ll), "d"(0ull), [s] "r"(-2ll));
	check("idiv neg divisor", a << 8 | (d & 0xff), (uint64_t)-3ll << 8 | 1);
	__asm__("divl %k[s]" : "=a"(a), "=d"(d) : "a"(5ull), "d"(1ull), [s] "r"(0x10ull));
	check("div32", a << 32 | d, 0x1000000000000005ull);
	__asm__("divb %b[s]" : "=a"(a) : "a"(0x107ull), [s] "r"(0x10ull));
	check("div8", a, 0x0710);
	__asm__("idivb %b[s]" : "=a"(a) : "a"(0xfff9ull), [s] "r"(2ull)); /* -7 / 2 */
	check("idiv8", a & 0xffff, 0xfffd);
}

static void test_bits(void)
{
	uint32_t r[4];
	int bmi1, abm, popcnt;

	cpuid(7, 0, r);
	bmi1 = (r[1] >> 3) & 1;
	cpuid(0x80000001, 0, r);
	abm = (r[2] >> 5) & 1;
	cpuid(1, 0, r);
	popcnt = (r[2] >> 23) & 1;

	T("bsf", "bsfq %[s], %[d]", 0, 0, 0x80, 7, ZF, 0);
	T("bsf 0 sets ZF", "bsfq %[s], %[d]", 0, 0x1234, 0, 0x1234, ZF, ZF);
	T("bsr", "bsrq %[s], %[d]", 0, 0, 0x8000000000000001ull, 63, ZF, 0);
	T("bsr32", "bsrl %k[s], %k[d]", 0, 0, 0x10, 4, ZF, 0);
	if (bmi1) {
		T("tzcnt", "tzcntq %[s], %[d]", 0, 0, 8, 3, CF | ZF, 0);
		T("tzcnt 0", "tzcntq %[s], %[d]", 0, 0, 0, 64, CF | ZF, CF);
		T("tzcnt lsb", "tzcntq %[s], %[d]", 1, 0, 1, 0, CF | ZF, ZF);
	} else {
		T("rep bsf as bsf", "tzcntq %[s], %[d]", 0, 0, 8, 3, ZF, 0);
	}
	if (abm) {
		T("lzcnt", "lzcntq %[s], %[d]", 0, 0, 1, 63, CF | ZF, 0);
		T("lzcnt 0", "lzcntq %[s], %[d]", 0, 0, 0, 64, CF | ZF, CF);
	}
	if (popcnt)
		T("popcnt", "popcntq %[s], %[d]", 0, 0, 0xff00ff00000000f1ull, 21, ARITH, 0);
	T("bswap64", "bswapq %[d]", 0, 0x0102030405060708ull, 0, 0x0807060504030201ull, 0, 0);
	T("bswap32", "bswapl %k[d]", 0, 0xffffffff11223344ull, 0, 0x44332211, 0, 0);
	T("bt reg", "btq $5, %[d]", 0, 0x20, 0, 0x20, CF, CF);
	T("bts reg", "btsq %[s], %[d]", 1, 0, 68, 0x10, CF, 0); /* count mod 64 */
	T("btr reg", "btrq $63, %[d]", 0, ~0ull, 0, 0x7fffffffffffffffull, CF, CF);
	T("btc reg", "btcq $0, %[d]", 0, 1, 0, 0, CF, CF);

	/* bit string in memory: a register offset reaches beyond the addressed qword */
	uint64_t arr[4] = {0, 0, 0, 0}, f;
	__asm__ volatile("btsq %[i], %[m]\n\tpushfq\n\tpopq %[f]"
	                 : [m] "+m"(arr), [f] "=r"(f)
	                 : [i] "r"(100ull)
	                 : "cc");
	check("bts mem far", arr[1], 1ull << 36);
	check("bts mem far CF", f & CF, 0);
	__asm__ volatile("btq %[i], %[m]\n\tpushfq\n\tpopq %[f]"
	                 : [f] "=r"(f)
	                 : [m] "m"(arr[2]), [i] "r"(-28ll)
	                 : "cc");
	check("bt mem negative offset", f & CF, CF);
	__asm__ volatile("btrl $4, %[m]" : [m] "+m"(arr[1]) : : "cc");
	check("btr mem imm", arr[1], 1ull << 36);
}

static uint16_t setcc_all(uint64_t a, uint64_t b)
{
	uint8_t v[16];
	__asm__ volatile("cmpq %[b], %[a]\n\t"
	                 "seto 0(%[v])\n\tsetno 1(%[v])\n\tsetb 2(%[v])\n\tsetae 3(%[v])\n\t"
	                 "sete 4(%[v])\n\tsetne 5(%[v])\n\tsetbe 6(%[v])\n\tseta 7(%[v])\n\t"
	                 "sets 8(%[v])\n\tsetns 9(%[v])\n\tsetp 10(%[v])\n\tsetnp 11(%[v])\n\t"
	                 "setl 12(%[v])\n\tsetge 13(%[v])\n\tsetle 14(%[v])\n\tsetg 15(%[v])"
	                 :
	                 : [a] "r"(a), [b] "r"(b), [v] "r"(v)
	                 : "cc", "memory");
	uint16_t m = 0;
	for (int i = 0; i < 16; i++)
		m |= (uint16_t)((v[i] & 1) << i);
	return m;
}

/* Bit i of the mask is condition code i: o no b ae e ne be a s ns p np l ge le g. */
static uint16_t cc_mask(const char *bits)
{
	uint16_t m = 0;
	for (int i = 0; i < 16; i++)
		if (bits[i] == '1')
			m |= (uint16_t)(1 << i);
	return m;
}

static void test_cond(void)
{
	check("setcc 1-2", setcc_all(1, 2), cc_mask("0110011010101010"));
	check("setcc 2-2", setcc_all(2, 2), cc_mask("0101101001100110"));
	check("setcc min-1", setcc_all(0x8000000000000000ull, 1), cc_mask("1001010101101010"));
	check("setcc 3-1", setcc_all(3, 1), cc_mask("0101010101010101"));

	T("cmovz taken", "testq %[d], %[d]\n\tcmovzq %[s], %[d]", 0, 0, 7, 7, 0, 0);
	T("cmovz not taken", "cmpq $1, %[d]\n\tcmovzq %[s], %[d]", 0, 5, 7, 5, 0, 0);
	T("cmovl32 not taken zero-extends", "cmpq $0, %[s]\n\tcmovll %k[s], %k[d]", 0,
	  0xffffffff00000001ull, 2, 1, 0, 0);
	T("cmova", "cmpq $1, %[s]\n\tcmovaq %[s], %[d]", 0, 1, 2, 2, 0, 0);
	T("cmovge signed", "cmpq $0, %[s]\n\tcmovgeq %[s], %[d]", 0, 1, ~0ull, 1, 0, 0);

	uint64_t n = 0;
	__asm__("movl $5, %%ecx\n1:\tincq %0\n\tloop 1b" : "+r"(n) : : "rcx", "cc");
	check("loop", n, 5);
	__asm__("xorl %%ecx, %%ecx\n\tmovq $1, %0\n\tjrcxz 1f\n\tmovq $2, %0\n1:"
	        : "=r"(n)
	        :
	        : "rcx");
	check("jrcxz", n, 1);
	uint64_t f;
	__asm__("stc\n\tlahf\n\tmovzbl %%ah, %k0" : "=a"(f) : : "cc");
	check("lahf", f & (CF | 2), CF | 2);
	__asm__("movb $0x41, %%ah\n\tsahf\n\tpushfq\n\tpopq %0" : "=r"(f) : : "rax", "cc");
	check("sahf", f & (CF | ZF | SF), CF | ZF);
}

static void test_atomic(void)
{
	uint64_t mem = 5, old, f;
	__asm__ volatile("lock cmpxchgq %[n], %[m]\n\tpushfq\n\tpopq %[f]"
	                 : [m] "+m"(mem), "=a"(old), [f] "=r"(f)
	                 : [n] "r"(9ull), "a"(5ull)
	                 : "cc");
	check("cmpxchg ok", mem << 8 | old | (f & ZF), 9 << 8 | 5 | ZF);
	__asm__ volatile("lock cmpxchgq %[n], %[m]\n\tpushfq\n\tpopq %[f]"
	                 : [m] "+m"(mem), "=a"(old), [f] "=r"(f)
	                 : [n] "r"(1ull), "a"(5ull)
	                 : "cc");
	check("cmpxchg fail", mem << 8 | old | (f & ZF), 9 << 8 | 9);
	old = 10;
	__asm__ volatile("lock xaddq %[o], %[m]" : [m] "+m"(mem), [o] "+r"(old) : : "cc");
	check("xadd", mem << 8 | old, 19 << 8 | 9);
	old = 3;
	__asm__ volatile("xchgq %[o], %[m]" : [m] "+m"(mem), [o] "+r"(old));
	check("xchg mem", mem << 8 | old, 3 << 8 | 19);
	__asm__ volatile("lock incq %[m]\n\tlock addq $10, %[m]\n\tlock orq $0x100, %[m]\n\t"
	                 "lock andq $0x10f, %[m]\n\tlock decq %[m]\n\tlock xorq $1, %[m]"
	                 : [m] "+m"(mem)
	                 :
	                 : "cc");
	check("lock alu", mem, 0x10c); /* 3 -> 4 -> 14 -> 0x10e -> 0x10e -> 0x10d -> 0x10c */
	uint32_t m32 = 0xffffffff;
	__asm__ volatile("lock btsl $31, %[m]\n\tpushfq\n\tpopq %[f]"
	                 : [m] "+m"(m32), [f] "=r"(f)
	                 :
	                 : "cc");
	check("lock bts", f & CF, CF);

	uint32_t r[4];
	cpuid(1, 0, r);
	if (r[2] & (1u << 13)) {
		static uint64_t m[2] __attribute__((aligned(16))) = {1, 2};
		uint64_t lo = 1, hi = 2;
		__asm__ volatile("lock cmpxchg16b %[m]\n\tpushfq\n\tpopq %[f]"
		                 : [m] "+m"(m), "+a"(lo), "+d"(hi), [f] "=r"(f)
		                 : "b"(3ull), "c"(4ull)
		                 : "cc");
		check("cmpxchg16b", m[0] << 24 | m[1] << 16 | (f & ZF), 3 << 24 | 4 << 16 | ZF);
	}
}

static void test_strings(void)
{
	static uint64_t a[64], b[64];
	uint64_t n, d, s;

	__asm__ volatile("rep stosq"
	                 : "=D"(d), "=c"(n)
	                 : "D"(a), "c"(64ull), "a"(0x1122334455667788ull)
	                 : "memory");
	check("rep stosq",
	      a[0] == 0x1122334455667788ull && a[63] == a[0] && n == 0 && d == (uintptr_t)(a + 64),
	      1);
	for (int i = 0; i < 64; i++)
		a[i] = (uint64_t)i * 0x0101010101010101ull;
	__asm__ volatile("rep movsq"
	                 : "=D"(d), "=S"(s), "=c"(n)
	                 : "D"(b), "S"(a), "c"(64ull)
	                 : "memory");
	check("rep movsq", memcmp(a, b, sizeof(a)) == 0 && s == (uintptr_t)(a + 64), 1);
	unsigned char src[16], dst[16] = {0}, want[16] = {0};
	for (int i = 0; i < 16; i++)
		src[i] = (unsigned char)(i + 1);
	for (int i = 1; i <= 13; i++)
		want[i] = (unsigned char)i;
	__asm__ volatile("rep movsb"
	                 : "=D"(d), "=S"(s), "=c"(n)
	                 : "D"(dst + 1), "S"(src), "c"(13ull)
	                 : "memory");
	check("rep movsb unaligned", memcmp(dst, want, 16) == 0 && n == 0, 1);
	/* backwards (DF=1), overlapping: shift a[0..7] up by one qword */
	__asm__ volatile("std\n\trep movsq\n\tcld"
	                 : "=D"(d), "=S"(s), "=c"(n)
	                 : "D"(a + 8), "S"(a + 7), "c"(8ull)
	                 : "memory");
	check("std rep movsq overlap", a[8] == 7 * 0x0101010101010101ull && a[1] == 0 && a[0] == 0,
	      1);
	__asm__ volatile("rep stosb"
	                 : "=D"(d), "=c"(n)
	                 : "D"(a), "c"(0ull), "a"(0xffull)
	                 : "memory");
	check("rep count 0", a[0], 0);

	static const char str[] = "hello, world";
	__asm__ volatile("repne scasb" : "=D"(d), "=c"(n) : "D"(str), "c"(~0ull), "a"(0) : "cc");
	check("repne scasb strlen", ~n - 1, 12);
	static const char s2[] = "hello, wOrld";
	uint64_t f;
	__asm__ volatile("repe cmpsb\n\tpushfq\n\tpopq %[f]"
	                 : "=D"(d), "=S"(s), "=c"(n), [f] "=r"(f)
	                 : "D"(s2), "S"(str), "c"(12ull)
	                 : "cc");
	check("repe cmpsb", (d - (uintptr_t)s2) << 8 | n, 9 << 8 | 3);
	check("repe cmpsb flags", f & (ZF | CF), 0); /* [rsi] - [rdi] = 'o' - 'O': no borrow */
	uint64_t v;
	__asm__ volatile("lodsb\n\tlodsb" : "=a"(v), "=S"(s) : "a"(0xaa00ull), "S"(str));
	check("lodsb", v & 0xffff, 0xaa65);
	uint32_t dw[2] = {0, 0};
	__asm__ volatile("stosl\n\tstosl" : "=D"(d) : "D"(dw), "a"(0xdeadbeefu) : "memory");
	check("stosl", (uint64_t)dw[1] << 32 | dw[0], 0xdeadbeefdeadbeefull);
}

static uint64_t __attribute__((noinline)) fib(uint64_t n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static void test_stack(void)
{
	uint64_t v, sp0, sp1;
	__asm__ volatile("movq %%rsp, %[s0]\n\tpushq $-2\n\tpopq %[v]\n\tmovq %%rsp, %[s1]"
	                 : [v] "=r"(v), [s0] "=r"(sp0), [s1] "=r"(sp1));
	check("push imm sign-extends", v, (uint64_t)-2ll);
	check("push/pop rsp", sp1 - sp0, 0);
	__asm__ volatile("pushw $0x1234\n\tpopw %w[v]" : [v] "=r"(v) : "0"(0xffff0000ull));
	check("pushw/popw", v, 0xffff1234);
	uint64_t mem = 0;
	__asm__ volatile("pushq $77\n\tpopq %[m]" : [m] "=m"(mem));
	check("pop mem", mem, 77);
	__asm__ volatile("pushfq\n\tstc\n\tpushfq\n\tpopq %[v]\n\tpopfq" : [v] "=r"(v) : : "cc");
	check("pushf CF", v & CF, CF);
	__asm__ volatile("pushq $0x8d5\n\tpopfq\n\tpushfq\n\tpopq %[v]\n\tpushq $2\n\tpopfq"
	                 : [v] "=r"(v)
	                 :
	                 : "cc");
	check("popf", v & (ARITH | 0x400), 0x8d5);
	__asm__ volatile("movq %%rsp, %[s0]\n\tenter $32, $0\n\tmovq %%rsp, %[s1]\n\tleave"
	                 : [s0] "=r"(sp0), [s1] "=r"(sp1));
	check("enter/leave", sp0 - sp1, 40);
	__asm__ volatile("leaq 1f(%%rip), %%rax\n\tpushq $0\n\tcall *%%rax\n\tjmp 2f\n"
	                 "1:\tmovq (%%rsp), %[v]\n\tret $8\n2:"
	                 : [v] "=r"(v)
	                 :
	                 : "rax", "memory");
	check("call *reg / ret imm", v != 0, 1);
	check("recursive calls", fib(20), 6765);
	uint64_t (*fp)(uint64_t) = fib;
	__asm__ volatile("" : "+r"(fp));
	check("indirect call", fp(10), 55);
}

static void test_cpuid_tsc(void)
{
	uint32_t r[4];
	cpuid(0, 0, r);
	check("cpuid max leaf >= 1", r[0] >= 1, 1);
	char vendor[13];
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[3], 4);
	memcpy(vendor + 8, &r[2], 4);
	vendor[12] = 0;
	int printable = 1;
	for (int i = 0; i < 12; i++)
		printable &= vendor[i] >= 0x20 && vendor[i] < 0x7f;
	check("cpuid vendor printable", printable, 1);
	cpuid(0x80000001, 0, r);
	check("cpuid long mode", (r[3] >> 29) & 1, 1);

	uint64_t prev = rdtsc(), back = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t t = rdtsc();
		back += t < prev;
		prev = t;
	}
	check("rdtsc monotonic", back, 0);
	volatile uint64_t spin = 0;
	uint64_t t0 = rdtsc();
	for (int i = 0; i < 10000; i++)
		spin += i;
	check("rdtsc advances", rdtsc() > t0, 1);
	check("loop sum", spin, 49995000);
}

#ifndef CPUTEST_HOSTED
/* Expect the asm @insn to raise @vec; check the error code (unless ~0) and cr2. */
#define EXPECT_POST(name, e_vec, e_err, e_cr2, insn, post, ...)                                    \
	do {                                                                                       \
		rt_trap_reset();                                                                   \
		__asm__ volatile(RT_TRAP_ASM(insn) post : __VA_ARGS__);                            \
		check(name " vector", (uint64_t)rt_last_trap.vec, e_vec);                          \
		if ((e_err) != ~0ull)                                                              \
			check(name " error code", rt_last_trap.err, e_err);                        \
		if ((e_cr2) != ~0ull)                                                              \
			check(name " cr2", rt_last_trap.cr2, e_cr2);                               \
	} while (0)
#define EXPECT(name, e_vec, e_err, e_cr2, insn, ...)                                               \
	EXPECT_POST(name, e_vec, e_err, e_cr2, insn, "", __VA_ARGS__)

static volatile uint64_t int_hits;
static void int_handler(struct rt_frame *f)
{
	int_hits++;
	f->rax = 0x5a;
}

static void test_exceptions(void)
{
	uint64_t a = 1;

	EXPECT("ud2", 6, 0, ~0ull, "ud2", : : "r11", "memory");
	EXPECT("lock nop #UD", 6, 0, ~0ull, ".byte 0xf0, 0x90", : : "r11", "memory");
	EXPECT("div by zero", 0, 0, ~0ull, "divq %[z]", "+a"(a)
	       : "d"(0ull), [z] "r"(0ull)
	       : "r11", "memory");
	check("div by zero leaves rax", a, 1);
	a = 0x8000000000000000ull;
	EXPECT("idiv overflow", 0, 0, ~0ull, "idivq %[z]", "+a"(a)
	       : "d"(~0ull), [z] "r"(~0ull)
	       : "r11", "memory");
	EXPECT("div quotient overflow", 0, 0, ~0ull, "divq %[z]", "+a"(a)
	       : "d"(1ull), [z] "r"(1ull)
	       : "r11", "memory");
	a = 0x8000000000000000ull;
	/* "c": through RBP or RSP the same access is #SS, not #GP (QEMU TCG says #GP). */
	EXPECT("non-canonical load", 13, 0, ~0ull, "movq (%[p]), %[p]", [p] "+c"(a)
	       :
	       : "r11", "memory");
	a = 0x0000800000000000ull;
	EXPECT("non-canonical store", 13, 0, ~0ull, "movq %[p], (%[p])", [p] "+c"(a)
	       :
	       : "r11", "memory");
	EXPECT("selector beyond GDT limit", 13, 0x80, ~0ull,
	       "movl $0x80, %k[p]\n\tmovl %k[p], %%fs", [p] "=&r"(a)
	       :
	       : "r11", "memory");
	/* Real CPUs and KVM raise #GP for an unknown MSR; QEMU TCG ignores the write, so this
	 * is reported, not counted. */
	rt_trap_reset();
	__asm__ volatile(RT_TRAP_ASM("wrmsr")
	                 :
	                 : "c"(0x0badc0deu), "a"(0), "d"(0)
	                 : "r11", "memory");
	if (rt_last_trap.vec != 13)
		printf("cputest: note: wrmsr to unknown MSR 0x0badc0de gave vector %d, not #GP\n",
		       rt_last_trap.vec);
	EXPECT("int3", 3, 0, ~0ull, "int3", : : "r11", "memory");
	check("int3 rip after", rt_last_trap.rip != 0, 1);

	rt_set_handler(0x80, int_handler);
	a = 0;
	__asm__ volatile("int $0x80" : "+a"(a) : : "memory");
	rt_set_handler(0x80, NULL);
	check("int 0x80 handler", int_hits << 8 | a, 1 << 8 | 0x5a);
}

static uint64_t work_base;

static void test_paging(void)
{
	uint64_t base = (rt_free_start() + (2ull << 20) - 1) & ~((2ull << 20) - 1);
	const char *why = rt_check_range(base, base + (2ull << 20));
	if (why) {
		printf("FAIL paging: no 2 MiB work area at 0x%lx: %s\n", base, why);
		nfail++, ntests++;
		return;
	}
	work_base = base;
	volatile uint64_t *pa = (volatile uint64_t *)base, *pb = (volatile uint64_t *)(base + 4096);
	pa[0] = 0xaaaa;
	pb[0] = 0xbbbb;
	check("2M page read", pa[0], 0xaaaa);

	uint64_t *pte = rt_pte_4k(base), orig = *pte;
	check("split keeps contents", pa[0] << 16 | pb[0], 0xaaaaull << 16 | 0xbbbb);
	*pte = (orig & ~0x000ffffffffff000ull) | (base + 4096);
	invlpg(pa);
	check("invlpg remap", pa[0], 0xbbbb);
	*pte = orig;
	invlpg(pa);
	check("invlpg restore", pa[0], 0xaaaa);

	uint64_t v = 0;
	*pte = orig & ~PTE_P;
	invlpg(pa);
	EXPECT("#PF not-present read", 14, 0, base, "movq (%[p]), %[v]", [v] "+r"(v)
	       : [p] "r"(pa)
	       : "r11", "memory");
	EXPECT("#PF not-present write", 14, 2, base + 8, "movq %[v], 8(%[p])", [v] "+r"(v)
	       : [p] "r"(pa)
	       : "r11", "memory");
	*pte = orig & ~PTE_W;
	invlpg(pa);
	check("read-only page readable", pa[0], 0xaaaa);
	EXPECT("#PF write to read-only", 14, 3, base + 16, "movq %[v], 16(%[p])", [v] "+r"(v)
	       : [p] "r"(pa)
	       : "r11", "memory");
	*pte = orig;
	invlpg(pa);
	pa[2] = 7;
	check("writable again", pa[2], 7);

	/* NX: a page holding "mov $42, %eax; ret" runs, then faults on fetch once NX is set. */
	volatile uint8_t *code = (volatile uint8_t *)(base + 2 * 4096);
	const uint8_t insns[] = {0xb8, 42, 0, 0, 0, 0xc3};
	for (unsigned i = 0; i < sizeof(insns); i++)
		code[i] = insns[i];
	uint64_t r = 0;
	__asm__ volatile("call *%[c]"
	                 : "=a"(r)
	                 : [c] "r"(code)
	                 : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
	check("execute written code", r, 42);
	if (rt_nx_enabled()) {
		uint64_t *cpte = rt_pte_4k((uintptr_t)code), corig = *cpte;
		*cpte = corig | PTE_NX;
		invlpg(code);
		r = 0;
		/* the fault leaves the return address pushed: restore rsp at the fixup */
		EXPECT_POST("#PF NX fetch", 14, 0x11, (uintptr_t)code,
		            "movq %%rsp, %%r10\n\tcall *%[c]", "movq %%r10, %%rsp", "+a"(r)
		            : [c] "r"(code)
		            : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
		*cpte = corig;
		invlpg(code);
		check("NX fetch did not run", r, 0);
	}
}

static volatile uint64_t fn_calls;
static void timer_fn(void)
{
	fn_calls++;
}

/* Wait with interrupts enabled until rt_ticks >= @n or @ms pass (by the TSC). */
static int wait_ticks(uint64_t n, uint64_t ms)
{
	uint64_t end = rt_now() + rt_ns_to_tsc(ms * 1000000);
	sti();
	while (rt_ticks < n && rt_now() < end)
		pause();
	cli();
	return rt_ticks >= n;
}

static void test_timer(void)
{
	int mode = rt_apic_init();
	printf("cputest: apic %s\n", mode == 2 ? "x2apic" : mode == 1 ? "xapic" : "none");
	check("apic present", mode != 0, 1);
	if (!mode)
		return;

	rt_ticks = 0;
	rt_timer_start(1000000, 1, 1, timer_fn);
	uint32_t cur = rt_timer_current();
	check("timer current count", cur > 0 && cur <= 1000000, 1);
	check("periodic ticks arrive", wait_ticks(5, 5000), 1);
	check("tick handler ran", fn_calls >= 5, 1);
	uint64_t before = rt_ticks;
	__asm__ volatile("sti\n\thlt\n\tcli" : : : "memory");
	check("hlt wakes on tick", rt_ticks > before, 1);
	rt_timer_stop();
	before = rt_ticks;
	wait_ticks(~0ull, 20);
	check("stopped timer is quiet", rt_ticks - before <= 1, 1);

	rt_ticks = 0;
	rt_timer_start(1000000, 2, 0, NULL);
	check("one-shot fires", wait_ticks(1, 5000), 1);
	wait_ticks(~0ull, 50);
	check("one-shot fires once", rt_ticks, 1);
	check("one-shot count ends at 0", rt_timer_current(), 0);
	rt_timer_stop();
}
#endif

#ifdef CPUTEST_HOSTED
#define STEP(fn) fn()
#else
#define STEP(fn)                                                                                   \
	do {                                                                                       \
		if (verbose)                                                                       \
			printf("cputest: " #fn "\n");                                              \
		fn();                                                                              \
	} while (0)
#endif

int main(void)
{
#ifndef CPUTEST_HOSTED
	int verbose = rt_arg_size("verbose", 0) != 0;
#endif
	STEP(test_arith);
	STEP(test_shifts);
	STEP(test_muldiv);
	STEP(test_bits);
	STEP(test_cond);
	STEP(test_atomic);
	STEP(test_strings);
	STEP(test_stack);
	STEP(test_cpuid_tsc);
#ifndef CPUTEST_HOSTED
	STEP(test_exceptions);
	STEP(test_paging);
	STEP(test_timer);
#endif
	printf("cputest: %u tests, %u failures\n", ntests, nfail);
	return nfail > 255 ? 255 : (int)nfail;
}
