/*
 * echo.c - a guest that reads its console: each byte it receives comes back uppercased
 * ('a'..'z' become 'A'..'Z', other bytes stay as they are), so a test can tell the
 * guest's answer from a local echo of what it typed. 'q' ends it: "echo: bye", exit 0.
 * '#' floods the console instead: FLOOD_LINES lines of 63 '#' (512 KiB, as fast as the
 * UART takes them), then "echo: flood done", for tests of slow console readers.
 *
 * It prints "echo: ready" once it listens. While bytes come it polls the UART busily (the
 * FIFO holds only 16); after IDLE_SPINS empty polls it halts until the next tick of a
 * 1 ms APIC timer between polls, so an idle echo guest costs the host next to nothing (it
 * waits on a console for minutes in tests, beside other VMs on the emu). Without an APIC
 * it only spins.
 */
#include "rt/rt.h"
#include "rt/x86.h"

#define IDLE_SPINS  20000
#define FLOOD_LINES 8192

#define COM1_RBR 0x3f8
#define COM1_LSR 0x3fd
#define LSR_DR   0x01 /* a received byte waits in RBR */

/*
 * The next received byte, or -1 when none has arrived; never waits. Here and not in the
 * runtime: every guest links the runtime, and memtouch's image is part of the golden
 * save file (tests/state), which must not change with code it does not use.
 */
static int rt_getc(void)
{
	if (!(inb(COM1_LSR) & LSR_DR))
		return -1;
	return inb(COM1_RBR);
}

int main(void)
{
	int apic = rt_apic_init(), idle = 0;

	if (apic)
		rt_timer_start(1000000, 1, 1, NULL); /* 1 ms: hv, KVM and QEMU count at 1 GHz */
	printf("echo: ready\n");
	for (;;) {
		int c = rt_getc();

		if (c < 0) {
			if (idle < IDLE_SPINS) {
				idle++;
				pause();
			} else if (apic) { /* sti's shadow: no tick slips in before the hlt */
				__asm__ volatile("sti\n\thlt\n\tcli" : : : "memory");
			} else {
				pause();
			}
			continue;
		}
		idle = 0;
		if (c == 'q') {
			printf("echo: bye\n");
			return EXIT_OK;
		}
		if (c == '#') {
			for (int i = 0; i < FLOOD_LINES; i++) {
				for (int j = 0; j < 63; j++)
					rt_putc('#');
				rt_putc('\n');
			}
			printf("echo: flood done\n");
			continue;
		}
		rt_putc(c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : (char)c);
	}
}
