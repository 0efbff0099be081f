/*
 * rt.h - the guest runtime's interface: console, exit, command line, memory map, traps,
 * time and the APIC timer.
 *
 * A guest provides `int main(void)`. The runtime has already switched to 64-bit mode with
 * identity-mapped memory (0-4 GiB in 2 MiB pages, 4-64 GiB in 1 GiB pages when the CPU has
 * them, else 2 MiB pages), initialised the serial console and the IDT, and parsed the command line;
 * main's return value becomes the debug-exit code. Nothing here enables interrupts unless the guest
 * starts the APIC timer.
 */
#ifndef GUEST_RT_H
#define GUEST_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE 4096ull

/* Exit codes shared by the workload guests. */
#define EXIT_OK        0
#define EXIT_BADARG    2
#define EXIT_CORRUPT   3
#define EXIT_EXCEPTION 99

int main(void);

/* Console (8250 UART at 0x3f8). printf knows %d %i %u %x %X %p %s %c %% with flags '-' '0',
 * a width, and the length modifiers hh h l ll z. */
void rt_putc(char c);
void rt_puts(const char *s);
int rt_printf(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
int rt_vprintf(const char *fmt, va_list ap);
#define printf rt_printf

/* Exit through the debug-exit port 0xf4: hv exits with @code, QEMU with code*2+1. */
__attribute__((noreturn)) void rt_exit(int code);
/* Print "FATAL: ..." and exit with @code. */
__attribute__((noreturn, format(__printf__, 2, 3))) void rt_die(int code, const char *fmt, ...);

/* Command line: whitespace-separated key=value words from hvm_start_info. */
const char *rt_cmdline(void);
/* The value of @key (not NUL-terminated: it ends at whitespace or NUL), or NULL. */
const char *rt_arg(const char *key);
/* A number with optional binary K/M/G suffix (0x prefix allowed). Missing key: @def.
 * A malformed value prints an error and exits EXIT_BADARG. */
uint64_t rt_arg_size(const char *key, uint64_t def);

/* Memory: the image (text..bss, including page tables and stacks) and the boot data the
 * VMM handed over (start_info, command line, memory map). */
extern char __image_start[], __image_end[];
/* The end of the highest RAM entry of the memory map; 0 without a map. */
uint64_t rt_ram_top(void);
/*
 * rt_check_range - is [@start, @end) page aligned, non-empty, RAM according to the memory
 * map (when the VMM gave one) and clear of the image and the boot data? Returns NULL if
 * usable, else a static string saying why not.
 */
const char *rt_check_range(uint64_t start, uint64_t end);
/* The lowest page-aligned address at or above 2 MiB and the image end that is not inside
 * boot data (a range starting there may still reach boot data further up). */
uint64_t rt_free_start(void);

/* Page tables. rt_pte_4k splits the 2 MiB mapping around @va into 4 KiB pages (once; at
 * most RT_MAX_SPLITS regions) and returns the PTE of @va. Change it, then invlpg. */
#define RT_MAX_SPLITS 2
uint64_t *rt_pte_4k(uint64_t va);
#define PTE_P  (1ull << 0)
#define PTE_W  (1ull << 1)
#define PTE_PS (1ull << 7)
#define PTE_NX (1ull << 63)
int rt_nx_enabled(void);
/* End of the identity map (64 GiB). */
uint64_t rt_map_top(void);

/* Traps. The frame the interrupt stubs build; handlers may change rip/rsp/GPRs. */
struct rt_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vec, err;
	uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*rt_handler)(struct rt_frame *f);
/* Install @h for vector @vec (NULL restores the default: exceptions are fatal). */
void rt_set_handler(int vec, rt_handler h);

/*
 * Expected exceptions. Set rt_fixup to an address, then run the faulting instruction: the
 * next exception (vector < 32) records itself in rt_last_trap, clears rt_fixup and resumes
 * at the fixup address with all other state as at the fault. RT_TRAP_ASM(insn) wraps an
 * asm string so it does this with the label just after @insn.
 */
struct rt_trap {
	int vec; /* -1: none since rt_trap_reset() */
	uint64_t err, rip, cr2;
};
extern volatile uint64_t rt_fixup;
extern volatile struct rt_trap rt_last_trap;
void rt_trap_reset(void);
#define RT_TRAP_ASM(insn) "leaq 1f(%%rip), %%r11\n\tmovq %%r11, rt_fixup(%%rip)\n\t" insn "\n1:\n\t"

/* Time: the TSC and its frequency (from the tsc_khz= argument, CPUID 0x40000010, 0x15 or
 * 0x16, in that order; else RT_TSC_DEFAULT_HZ, an assumption). */
#define RT_TSC_DEFAULT_HZ 2000000000ull
uint64_t rt_tsc_hz(void);
const char *rt_tsc_source(void);
uint64_t rt_now(void);
uint64_t rt_ns_to_tsc(uint64_t ns);

/* Local APIC timer (x2APIC through MSRs if the CPU has it, else xAPIC MMIO). */
#define RT_TIMER_VECTOR    0x40
#define RT_SPURIOUS_VECTOR 0xff
/* Enable the APIC. Returns 2 for x2APIC, 1 for xAPIC, 0 when there is none. */
int rt_apic_init(void);
/* Start the timer: @count ticks of the bus clock divided by @div (1,2,4,..,128). Each
 * interrupt increments rt_ticks and calls @fn (may be NULL), then EOIs. */
void rt_timer_start(uint32_t count, unsigned div, int periodic, void (*fn)(void));
void rt_timer_stop(void);
uint32_t rt_timer_current(void);
extern volatile uint64_t rt_ticks;

/* freestanding libc bits gcc may call */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif
