/*
 * uart.c - an 8250/16550A serial port.
 *
 * The interrupt identification register is never stored: it is computed from IER, LSR,
 * MSR and the THRE-pending latch with the 8250's fixed priorities (line status, received
 * data, THR empty, modem status), and the IRQ line follows "some interrupt is pending"
 * after every register access. That keeps the saved state minimal and consistent by
 * construction.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/dev/uart.h"
#include "hv/state_io.h"

static void uart_reset(struct uart_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	r->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	r->mcr = UART_MCR_OUT2;
	r->dll = 12; /* 9600 baud */
}

static uint8_t uart_iir(const struct uart_regs *r)
{
	if ((r->ier & UART_IER_RLSI) && (r->lsr & UART_LSR_ERR))
		return UART_IIR_RLSI;
	if ((r->ier & UART_IER_RDI) && (r->lsr & UART_LSR_DR))
		return UART_IIR_RDI;
	if ((r->ier & UART_IER_THRI) && r->thr_ipending)
		return UART_IIR_THRI;
	if ((r->ier & UART_IER_MSI) && (r->msr & UART_MSR_DELTA))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

/* Drive the IRQ line from the computed IIR. Lock held. */
static void uart_update_irq(struct uart *u)
{
	int level = !(uart_iir(&u->r) & UART_IIR_NO_INT);

	if (level != u->irq_level) {
		u->irq_level = level;
		if (u->irq)
			u->irq(u->irq_opaque, level);
	}
}

/* Lock held. Returns bytes accepted; a full FIFO in loopback sets the overrun bit. */
static unsigned rx_push_locked(struct uart *u, const uint8_t *buf, unsigned len)
{
	struct uart_regs *r = &u->r;
	unsigned n = 0;

	while (n < len && r->rx_len < UART_FIFO_SIZE) {
		r->rx_fifo[(r->rx_head + r->rx_len) % UART_FIFO_SIZE] = buf[n++];
		r->rx_len++;
	}
	if (n)
		r->lsr |= UART_LSR_DR;
	return n;
}

static void rx_clear(struct uart *u)
{
	u->r.rx_head = 0;
	u->r.rx_len = 0;
	u->r.lsr &= ~UART_LSR_DR;
	pthread_cond_broadcast(&u->room);
}

static void uart_output(struct uart *u, uint8_t c)
{
	if (u->out_fd < 0)
		return;
	for (;;) {
		ssize_t n = write(u->out_fd, &c, 1);
		if (n == 1)
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = u->out_fd, .events = POLLOUT};
			poll(&p, 1, 100);
			continue;
		}
		return; /* a closed console must not stop the guest: drop the byte */
	}
}

/* MSR as loopback mode wires it: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
static uint8_t loop_msr(uint8_t mcr)
{
	return (uint8_t)(((mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
	                 ((mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
	                 ((mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
	                 ((mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0));
}

static void uart_set_msr(struct uart_regs *r, uint8_t status)
{
	uint8_t old = r->msr, d = 0;

	if ((old ^ status) & UART_MSR_CTS)
		d |= UART_MSR_DCTS;
	if ((old ^ status) & UART_MSR_DSR)
		d |= UART_MSR_DDSR;
	if ((old & UART_MSR_RI) && !(status & UART_MSR_RI))
		d |= UART_MSR_TERI; /* trailing edge only */
	if ((old ^ status) & UART_MSR_DCD)
		d |= UART_MSR_DDCD;
	r->msr = (uint8_t)(status | (old & UART_MSR_DELTA) | d);
}

static void uart_write(struct uart *u, unsigned off, uint8_t v)
{
	struct uart_regs *r = &u->r;
	bool dlab = r->lcr & UART_LCR_DLAB;

	switch (off) {
	case UART_THR:
		if (dlab) {
			r->dll = v;
			break;
		}
		if (r->mcr & UART_MCR_LOOP) {
			if (!rx_push_locked(u, &v, 1))
				r->lsr |= UART_LSR_OE;
		} else {
			uart_output(u, v);
		}
		/* Sent at once: the holding register is empty again. */
		r->lsr |= UART_LSR_THRE | UART_LSR_TEMT;
		r->thr_ipending = 1;
		break;
	case UART_IER:
		if (dlab) {
			r->dlm = v;
			break;
		}
		if ((r->ier ^ v) & UART_IER_THRI)
			r->thr_ipending = (v & UART_IER_THRI) && (r->lsr & UART_LSR_THRE);
		r->ier = v & 0x0f;
		break;
	case UART_FCR:
		if (v & UART_FCR_CLEAR_RX)
			rx_clear(u);
		r->fcr = v & 0xc9; /* clear bits self-reset */
		break;
	case UART_LCR: r->lcr = v; break;
	case UART_MCR:
		r->mcr = v & 0x1f;
		uart_set_msr(r, (r->mcr & UART_MCR_LOOP)
		                    ? loop_msr(r->mcr)
		                    : UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
		break;
	case UART_LSR:
	case UART_MSR: break; /* read-only (factory test writes ignored) */
	case UART_SCR: r->scr = v; break;
	}
}

static uint8_t uart_read(struct uart *u, unsigned off)
{
	struct uart_regs *r = &u->r;
	bool dlab = r->lcr & UART_LCR_DLAB;
	uint8_t v = 0;

	switch (off) {
	case UART_RBR:
		if (dlab)
			return r->dll;
		if (r->rx_len) {
			v = r->rx_fifo[r->rx_head];
			r->rx_head = (r->rx_head + 1) % UART_FIFO_SIZE;
			if (--r->rx_len == 0)
				r->lsr &= ~UART_LSR_DR;
			pthread_cond_broadcast(&u->room);
		}
		return v;
	case UART_IER: return dlab ? r->dlm : r->ier;
	case UART_IIR:
		v = uart_iir(r);
		if (v == UART_IIR_THRI)
			r->thr_ipending = 0; /* reading IIR acknowledges THRE */
		return (uint8_t)(v | ((r->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0));
	case UART_LCR: return r->lcr;
	case UART_MCR: return r->mcr;
	case UART_LSR:
		v = r->lsr;
		r->lsr &= ~UART_LSR_ERR;
		return v;
	case UART_MSR:
		v = r->msr;
		r->msr &= ~UART_MSR_DELTA;
		return v;
	case UART_SCR: return r->scr;
	}
	return 0xff;
}

void uart_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	struct uart *u = opaque;

	pthread_mutex_lock(&u->lock);
	if (write)
		uart_write(u, (unsigned)off & 7, (uint8_t)*val);
	else
		*val = uart_read(u, (unsigned)off & 7);
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

unsigned uart_rx_push(struct uart *u, const uint8_t *buf, unsigned len)
{
	unsigned n;

	pthread_mutex_lock(&u->lock);
	n = rx_push_locked(u, buf, len);
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

/* Reads only what the FIFO has room for, so nothing typed is ever dropped. */
static void *uart_reader(void *arg)
{
	struct uart *u = arg;
	uint8_t buf[UART_FIFO_SIZE];

	for (;;) {
		struct pollfd p[2] = {{.fd = u->in_fd, .events = POLLIN},
		                      {.fd = u->stop_pipe[0], .events = POLLIN}};
		unsigned room, done = 0;
		ssize_t n;

		pthread_mutex_lock(&u->lock);
		while (u->r.rx_len == UART_FIFO_SIZE && !u->stopping)
			pthread_cond_wait(&u->room, &u->lock);
		room = UART_FIFO_SIZE - u->r.rx_len;
		pthread_mutex_unlock(&u->lock);

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		n = read(u->in_fd, buf, room);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break; /* EOF or error: the console has no more input */

		/* Loopback bytes may have taken the room meanwhile: wait, don't drop. */
		pthread_mutex_lock(&u->lock);
		while (!u->stopping) {
			done += rx_push_locked(u, buf + done, (unsigned)n - done);
			uart_update_irq(u);
			if (done == (unsigned)n)
				break;
			pthread_cond_wait(&u->room, &u->lock);
		}
		if (u->stopping) {
			pthread_mutex_unlock(&u->lock);
			break;
		}
		pthread_mutex_unlock(&u->lock);
	}
	return NULL;
}

struct uart *uart_create(int out_fd, int in_fd, uart_irq_fn irq, void *irq_opaque,
                         struct hv_error *err)
{
	struct uart *u = calloc(1, sizeof(*u));
	int e;

	if (!u) {
		hv_fail(err, ENOMEM, "uart: out of memory");
		return NULL;
	}
	uart_reset(&u->r);
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->room, NULL);
	u->irq = irq;
	u->irq_opaque = irq_opaque;
	u->out_fd = out_fd;
	u->in_fd = in_fd;
	u->stop_pipe[0] = u->stop_pipe[1] = -1;
	if (in_fd < 0)
		return u;

	if (pipe2(u->stop_pipe, O_CLOEXEC) < 0) {
		hv_fail(err, errno, "uart: pipe: %s", strerror(errno));
		uart_destroy(u);
		return NULL;
	}
	e = pthread_create(&u->reader, NULL, uart_reader, u);
	if (e) {
		hv_fail(err, e, "uart: reader thread: %s", strerror(e));
		uart_destroy(u);
		return NULL;
	}
	u->reader_running = true;
	return u;
}

void uart_destroy(struct uart *u)
{
	if (!u)
		return;
	if (u->reader_running) {
		pthread_mutex_lock(&u->lock);
		u->stopping = true;
		pthread_cond_broadcast(&u->room);
		pthread_mutex_unlock(&u->lock);
		while (write(u->stop_pipe[1], "x", 1) < 0 && errno == EINTR)
			;
		pthread_join(u->reader, NULL);
	}
	if (u->stop_pipe[0] >= 0)
		close(u->stop_pipe[0]);
	if (u->stop_pipe[1] >= 0)
		close(u->stop_pipe[1]);
	pthread_cond_destroy(&u->room);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

int uart_register(struct uart *u, struct io_bus *bus, uint16_t base, struct hv_error *err)
{
	return io_register_port(bus, base, 8, uart_io, u, "uart", err);
}

int uart_state(struct state_io *io, struct uart *u)
{
	struct uart_regs r;

	pthread_mutex_lock(&u->lock);
	r = u->r; /* load into a copy: a record that fails its checks changes nothing */
	STATE_FIELD(io, "ier", &r.ier);
	STATE_FIELD(io, "lcr", &r.lcr);
	STATE_FIELD(io, "mcr", &r.mcr);
	STATE_FIELD(io, "lsr", &r.lsr);
	STATE_FIELD(io, "msr", &r.msr);
	STATE_FIELD(io, "scr", &r.scr);
	STATE_FIELD(io, "fcr", &r.fcr);
	STATE_FIELD(io, "dll", &r.dll);
	STATE_FIELD(io, "dlm", &r.dlm);
	STATE_FIELD(io, "thr_ipending", &r.thr_ipending);
	STATE_FIELD(io, "rx_head", &r.rx_head);
	STATE_FIELD(io, "rx_len", &r.rx_len);
	STATE_BYTES(io, "rx_fifo", r.rx_fifo, sizeof(r.rx_fifo));
	STATE_CHECK(io, r.rx_len <= UART_FIFO_SIZE && r.rx_head < UART_FIFO_SIZE);
	STATE_CHECK(io, !!(r.lsr & UART_LSR_DR) == (r.rx_len > 0));
	STATE_CHECK(io, r.ier <= 0x0f && r.mcr <= 0x1f && !(r.fcr & ~0xc9));
	STATE_CHECK(io, r.thr_ipending <= 1);
	if (io->loading && !io->failed) {
		u->r = r;
		uart_update_irq(u); /* the line follows the loaded registers */
		pthread_cond_broadcast(&u->room);
	}
	pthread_mutex_unlock(&u->lock);
	return state_io_result(io);
}
