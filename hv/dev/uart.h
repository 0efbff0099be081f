/*
 * uart.h - an 8250/16550A serial port (the guest console at 0x3f8, IRQ 4).
 *
 * Transmit is instantaneous: a byte written to THR goes to the output fd at once and the
 * transmitter is immediately empty again (LSR.THRE|TEMT), which is what guests that poll
 * THRE and Linux's 8250 driver (which waits for the THRE interrupt) both handle. Receive
 * goes through a 16-byte FIFO filled by a reader thread from the input fd; the thread only
 * reads as many bytes as the FIFO has room for, so input is never dropped, it just waits
 * in the pipe or tty.
 *
 * All register state lives in struct uart_regs (plain bytes, no pointers) so that a save
 * function can walk it field by field and a load can check its invariants.
 */
#ifndef HV_DEV_UART_H
#define HV_DEV_UART_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/io.h"

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ  4
#define UART_FIFO_SIZE 16

/* Register offsets. */
#define UART_RBR 0 /* read, DLAB=0: receive buffer */
#define UART_THR 0 /* write, DLAB=0: transmit holding */
#define UART_DLL 0 /* DLAB=1: divisor latch low */
#define UART_IER 1 /* DLAB=0: interrupt enable */
#define UART_DLM 1 /* DLAB=1: divisor latch high */
#define UART_IIR 2 /* read: interrupt identification */
#define UART_FCR 2 /* write: FIFO control */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI  0x01 /* received data available */
#define UART_IER_THRI 0x02 /* transmitter holding register empty */
#define UART_IER_RLSI 0x04 /* receiver line status */
#define UART_IER_MSI  0x08 /* modem status */

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI    0x00
#define UART_IIR_THRI   0x02
#define UART_IIR_RDI    0x04
#define UART_IIR_RLSI   0x06
#define UART_IIR_FIFO   0xc0 /* FIFOs enabled */

#define UART_FCR_ENABLE   0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR   0x01 /* data ready */
#define UART_LSR_OE   0x02
#define UART_LSR_PE   0x04
#define UART_LSR_FE   0x08
#define UART_LSR_BI   0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_ERR  (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)

#define UART_MSR_DCTS  0x01
#define UART_MSR_DDSR  0x02
#define UART_MSR_TERI  0x04
#define UART_MSR_DDCD  0x08
#define UART_MSR_CTS   0x10
#define UART_MSR_DSR   0x20
#define UART_MSR_RI    0x40
#define UART_MSR_DCD   0x80
#define UART_MSR_DELTA 0x0f

/* The guest-visible state: what a save record holds. */
struct uart_regs {
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr;
	uint8_t dll, dlm;
	uint8_t thr_ipending;    /* THRE interrupt pending (cleared by reading IIR) */
	uint8_t rx_head, rx_len; /* ring: rx_len <= UART_FIFO_SIZE, rx_head < size */
	uint8_t rx_fifo[UART_FIFO_SIZE];
};

/* Interrupt line callback: @level 1 = asserted. Called with the UART lock held. */
typedef void (*uart_irq_fn)(void *opaque, int level);

struct uart {
	struct uart_regs r;
	pthread_mutex_t lock;
	int irq_level; /* last level driven, to call irq only on changes */
	uart_irq_fn irq;
	void *irq_opaque;
	int out_fd; /* -1: output discarded */
	int in_fd;  /* -1: no input */
	pthread_t reader;
	bool reader_running;
	bool stopping;       /* under lock: the reader must exit */
	int stop_pipe[2];    /* wakes the reader for uart_destroy() */
	pthread_cond_t room; /* signalled when the FIFO drains */
};

/*
 * uart_create - a UART in its reset state writing to @out_fd and, when @in_fd >= 0,
 * reading from it on a thread of its own. The fds stay owned by the caller. @irq may be
 * NULL. Returns NULL with @err set on failure.
 */
struct uart *uart_create(int out_fd, int in_fd, uart_irq_fn irq, void *irq_opaque,
                         struct hv_error *err);

/* uart_destroy - stop the reader thread and free @u (NULL is fine). */
void uart_destroy(struct uart *u);

/* uart_register - claim the 8 ports at @base on @bus. */
int uart_register(struct uart *u, struct io_bus *bus, uint16_t base, struct hv_error *err);

/* uart_io - the port handler (exposed for tests): @off 0..7, byte-wide semantics. */
void uart_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val);

/*
 * uart_rx_push - feed up to @len bytes into the receive FIFO as if they had arrived on the
 * line; returns how many fitted.
 */
unsigned uart_rx_push(struct uart *u, const uint8_t *buf, unsigned len);

/*
 * uart_state - save or load the guest-visible registers and receive FIFO through @io
 * (hv/state_io.h), under the UART's lock. A load is checked (FIFO bounds, LSR.DR agrees
 * with the FIFO) before anything changes, then the interrupt line is recomputed. 0 or -1.
 */
#define UART_STATE_VERSION 1
struct state_io;
int uart_state(struct state_io *io, struct uart *u);

#endif
