/*
 * test_uart.c - the 8250 as a guest driver sees it: registers, interrupts, console I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/dev/uart.h"

struct irq_rec {
	int level, changes;
};

static void rec_irq(void *opaque, int level)
{
	struct irq_rec *r = opaque;

	r->level = level;
	r->changes++;
}

static uint8_t rd(struct uart *u, unsigned off)
{
	uint64_t v = 0;

	uart_io(u, off, 1, false, &v);
	return (uint8_t)v;
}

static void wr(struct uart *u, unsigned off, uint8_t val)
{
	uint64_t v = val;

	uart_io(u, off, 1, true, &v);
}

static void test_reset_state(void **state)
{
	struct uart *u = uart_create(-1, -1, NULL, NULL, NULL);

	assert_non_null(u);
	assert_int_equal(rd(u, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(rd(u, UART_IER), 0);
	assert_int_equal(rd(u, UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	uart_destroy(u);
}

/* Linux programs the baud rate through the divisor latch; it must not disturb IER. */
static void test_divisor_latch(void **state)
{
	struct uart *u = uart_create(-1, -1, NULL, NULL, NULL);

	wr(u, UART_IER, 0x05);
	wr(u, UART_LCR, UART_LCR_DLAB | 0x03);
	wr(u, UART_DLL, 0x01);
	wr(u, UART_DLM, 0x02);
	assert_int_equal(rd(u, UART_DLL), 0x01);
	assert_int_equal(rd(u, UART_DLM), 0x02);
	assert_int_equal(rd(u, UART_LCR), 0x83);
	wr(u, UART_LCR, 0x03);
	assert_int_equal(rd(u, UART_IER), 0x05);
	assert_int_equal(rd(u, UART_LCR), 0x03);
	assert_int_equal(u->r.dll, 1);
	assert_int_equal(u->r.dlm, 2);
	uart_destroy(u);
}

static void test_scratch(void **state)
{
	struct uart *u = uart_create(-1, -1, NULL, NULL, NULL);

	wr(u, UART_SCR, 0xa5);
	assert_int_equal(rd(u, UART_SCR), 0xa5);
	uart_destroy(u);
}

/* Bytes written to THR reach the console at once; THR is empty again right away. */
static void test_transmit(void **state)
{
	int p[2];
	char buf[8] = {0};
	struct uart *u;

	assert_int_equal(pipe(p), 0);
	u = uart_create(p[1], -1, NULL, NULL, NULL);
	wr(u, UART_THR, 'h');
	wr(u, UART_THR, 'i');
	assert_int_equal(rd(u, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
	                 UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 2);
	assert_string_equal(buf, "hi");
	uart_destroy(u);
	close(p[0]);
	close(p[1]);
}

/* The THRE interrupt: raised when enabled with THR empty, acknowledged by reading IIR,
 * raised again by the next transmit (the 8250 driver's transmit loop). */
static void test_thre_interrupt(void **state)
{
	struct irq_rec irq = {0};
	struct uart *u = uart_create(-1, -1, rec_irq, &irq, NULL);

	assert_int_equal(irq.level, 0);
	wr(u, UART_IER, UART_IER_THRI);
	assert_int_equal(irq.level, 1);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_THRI);
	assert_int_equal(irq.level, 0);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_NO_INT);
	wr(u, UART_THR, 'x');
	assert_int_equal(irq.level, 1);
	wr(u, UART_IER, 0);
	assert_int_equal(irq.level, 0);
	uart_destroy(u);
}

/* Received data outranks THRE; line status outranks both; FIFO bits show when enabled. */
static void test_iir_priority(void **state)
{
	struct irq_rec irq = {0};
	struct uart *u = uart_create(-1, -1, rec_irq, &irq, NULL);

	wr(u, UART_FCR, UART_FCR_ENABLE);
	wr(u, UART_IER, UART_IER_THRI | UART_IER_RDI | UART_IER_RLSI);
	assert_int_equal(uart_rx_push(u, (const uint8_t *)"ab", 2), 2);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	assert_int_equal(rd(u, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(rd(u, UART_RBR), 'a');
	assert_int_equal(rd(u, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	assert_int_equal(rd(u, UART_RBR), 'b');
	assert_int_equal(rd(u, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(irq.level, 0);

	/* Loopback overrun: 17 bytes into a 16-byte FIFO. */
	wr(u, UART_MCR, UART_MCR_LOOP);
	for (int i = 0; i < 17; i++)
		wr(u, UART_THR, (uint8_t)i);
	assert_int_equal(rd(u, UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);
	assert_int_equal(rd(u, UART_LSR) & UART_LSR_OE, UART_LSR_OE);
	assert_int_equal(rd(u, UART_LSR) & UART_LSR_OE, 0); /* cleared by reading */
	wr(u, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	assert_int_equal(rd(u, UART_LSR) & UART_LSR_DR, 0);
	uart_destroy(u);
}

/* Linux's autoconfig loopback probe: MCR=LOOP|OUT2|RTS must read back MSR=DCD|CTS, and
 * transmitted bytes come back on the receive side instead of the console. */
static void test_loopback(void **state)
{
	int p[2];
	char c;
	struct uart *u;

	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	u = uart_create(p[1], -1, NULL, NULL, NULL);
	wr(u, UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2 | UART_MCR_RTS);
	assert_int_equal(rd(u, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_CTS);
	wr(u, UART_THR, 'z');
	assert_int_equal(rd(u, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(rd(u, UART_RBR), 'z');
	assert_int_equal(read(p[0], &c, 1), -1); /* nothing reached the console */
	wr(u, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(rd(u, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	uart_destroy(u);
	close(p[0]);
	close(p[1]);
}

/* Input typed on the console arrives in RBR, in order, with an RX interrupt, even when
 * more is typed than the FIFO holds. */
static void test_receive_from_fd(void **state)
{
	static const char msg[] = "hello from the console, longer than sixteen bytes";
	struct irq_rec irq = {0};
	char got[sizeof(msg)] = {0};
	size_t n = 0;
	int p[2], spins = 0;
	struct uart *u;

	assert_int_equal(pipe(p), 0);
	u = uart_create(-1, p[0], rec_irq, &irq, NULL);
	assert_non_null(u);
	wr(u, UART_IER, UART_IER_RDI);
	assert_int_equal(write(p[1], msg, sizeof(msg) - 1), (ssize_t)sizeof(msg) - 1);
	while (n < sizeof(msg) - 1 && spins < 5000) {
		if (rd(u, UART_LSR) & UART_LSR_DR) {
			assert_int_equal(irq.level, 1);
			got[n++] = (char)rd(u, UART_RBR);
		} else {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
			spins++;
		}
	}
	assert_string_equal(got, msg);
	assert_int_equal(irq.level, 0);
	close(p[1]); /* EOF: the reader thread ends quietly */
	uart_destroy(u);
	close(p[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reset_state),    cmocka_unit_test(test_divisor_latch),
	    cmocka_unit_test(test_scratch),        cmocka_unit_test(test_transmit),
	    cmocka_unit_test(test_thre_interrupt), cmocka_unit_test(test_iir_priority),
	    cmocka_unit_test(test_loopback),       cmocka_unit_test(test_receive_from_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
