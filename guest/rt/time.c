/*
 * time.c - TSC time and the local APIC timer.
 *
 * The TSC frequency cannot be measured without a reference clock, so it is taken from (in
 * order) the tsc_khz= argument, the hypervisor timing leaf CPUID 0x40000010, CPUID 0x15
 * (crystal ratio), CPUID 0x16 (base MHz), else assumed to be RT_TSC_DEFAULT_HZ.
 * The APIC is driven through x2APIC MSRs when CPUID has x2APIC, else through the xAPIC
 * page at the base in IA32_APIC_BASE (QEMU 7.2 TCG has no x2APIC); the register layout is
 * the same (MSR 0x800 + offset/16). The legacy 8259 PICs are masked (ports 0x21/0xa1).
 */
#include "rt.h"
#include "x86.h"

#define APIC_EOI     0x0b0
#define APIC_SVR     0x0f0
#define APIC_LVTT    0x320
#define APIC_TMICT   0x380
#define APIC_TMCCT   0x390
#define APIC_TDCR    0x3e0
#define LVT_MASKED   (1u << 16)
#define LVT_PERIODIC (1u << 17)

static uint64_t tsc_hz;
static const char *tsc_src;
static int apic_mode; /* 0 none, 1 xAPIC, 2 x2APIC */
static volatile uint32_t *apic_mmio;
static void (*timer_fn)(void);
volatile uint64_t rt_ticks;

void rt_time_init(void)
{
	uint32_t r[4], max;

	if ((tsc_hz = rt_arg_size("tsc_khz", 0) * 1000)) {
		tsc_src = "tsc_khz argument";
		return;
	}
	cpuid(1, 0, r);
	if (r[2] & (1u << 31)) { /* running under a hypervisor */
		cpuid(0x40000000, 0, r);
		if (r[0] >= 0x40000010 && r[0] < 0x40000100) {
			cpuid(0x40000010, 0, r);
			if ((tsc_hz = (uint64_t)r[0] * 1000)) {
				tsc_src = "cpuid 0x40000010";
				return;
			}
		}
	}
	cpuid(0, 0, r);
	max = r[0];
	if (max >= 0x15) {
		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2]) {
			tsc_hz = (uint64_t)r[2] * r[1] / r[0];
			tsc_src = "cpuid 0x15";
			return;
		}
	}
	if (max >= 0x16) {
		cpuid(0x16, 0, r);
		if ((tsc_hz = (uint64_t)(r[0] & 0xffff) * 1000000)) {
			tsc_src = "cpuid 0x16";
			return;
		}
	}
	tsc_hz = RT_TSC_DEFAULT_HZ;
	tsc_src = "assumed default";
}

uint64_t rt_tsc_hz(void)
{
	return tsc_hz;
}

const char *rt_tsc_source(void)
{
	return tsc_src;
}

uint64_t rt_now(void)
{
	return rdtsc();
}

uint64_t rt_ns_to_tsc(uint64_t ns)
{
	/* split to avoid overflow for large @ns */
	return ns / 1000000000 * tsc_hz + ns % 1000000000 * tsc_hz / 1000000000;
}

static void apic_write(uint32_t reg, uint32_t v)
{
	if (apic_mode == 2)
		wrmsr(0x800 + (reg >> 4), v);
	else
		apic_mmio[reg / 4] = v;
}

static uint32_t apic_read(uint32_t reg)
{
	if (apic_mode == 2)
		return (uint32_t)rdmsr(0x800 + (reg >> 4));
	return apic_mmio[reg / 4];
}

static void timer_irq(struct rt_frame *f)
{
	rt_ticks++;
	if (timer_fn)
		timer_fn();
	apic_write(APIC_EOI, 0);
}

int rt_apic_init(void)
{
	uint32_t r[4];

	if (apic_mode)
		return apic_mode;
	/* Firmware (SeaBIOS under QEMU) leaves the 8259 PICs routing the PIT to vector 8:
	 * mask every legacy IRQ before anyone enables interrupts. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	cpuid(1, 0, r);
	if (!(r[3] & CPUID1_EDX_APIC))
		return 0;
	uint64_t base = rdmsr(MSR_APIC_BASE);
	if (r[2] & CPUID1_ECX_X2APIC) {
		/* xAPIC must be enabled before (or together with) x2APIC */
		wrmsr(MSR_APIC_BASE, base | (1u << 11));
		wrmsr(MSR_APIC_BASE, base | (1u << 11) | (1u << 10));
		apic_mode = 2;
	} else {
		wrmsr(MSR_APIC_BASE, base | (1u << 11));
		apic_mmio = (volatile uint32_t *)(uintptr_t)(base & 0xffffff000ull);
		apic_mode = 1;
	}
	rt_set_handler(RT_TIMER_VECTOR, timer_irq);
	apic_write(APIC_SVR, (1u << 8) | RT_SPURIOUS_VECTOR);
	apic_write(APIC_LVTT, LVT_MASKED | RT_TIMER_VECTOR);
	return apic_mode;
}

void rt_timer_start(uint32_t count, unsigned div, int periodic, void (*fn)(void))
{
	static const uint8_t tdcr[8] = {0xb, 0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xa};
	int log = 0;

	while (log < 7 && (1u << log) < div)
		log++;
	timer_fn = fn;
	apic_write(APIC_TDCR, tdcr[log]);
	apic_write(APIC_LVTT, (periodic ? LVT_PERIODIC : 0) | RT_TIMER_VECTOR);
	apic_write(APIC_TMICT, count);
}

void rt_timer_stop(void)
{
	apic_write(APIC_LVTT, LVT_MASKED | RT_TIMER_VECTOR);
	apic_write(APIC_TMICT, 0);
}

uint32_t rt_timer_current(void)
{
	return apic_read(APIC_TMCCT);
}
