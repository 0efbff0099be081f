/*
 * console.c - serial console and printf for guests.
 *
 * A polled 8250 at 0x3f8: wait for THRE (LSR bit 5) before each byte, then write THR.
 * printf formats straight to the UART, one character at a time, with no buffer, so it is
 * safe from exception handlers.
 */
#include "rt.h"
#include "x86.h"

#define COM1     0x3f8
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20

void rt_console_init(void)
{
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x80); /* DLAB: divisor follows */
	outb(COM1 + 0, 0x01);        /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + UART_LCR, 0x03); /* 8N1 */
	outb(COM1 + UART_FCR, 0x07); /* FIFOs on and cleared */
	outb(COM1 + UART_MCR, 0x03); /* DTR, RTS */
}

void rt_putc(char c)
{
	/* Bounded wait: an absent UART reads 0xff (THRE set), a stuck one cannot hang us. */
	for (int i = 0; i < 1000000 && !(inb(COM1 + UART_LSR) & LSR_THRE); i++)
		pause();
	outb(COM1 + UART_THR, (uint8_t)c);
}

void rt_puts(const char *s)
{
	while (*s)
		rt_putc(*s++);
}

static int pad(int n, char c)
{
	for (int i = 0; i < n; i++)
		rt_putc(c);
	return n > 0 ? n : 0;
}

/* Emit the digits of @v in @base with the given width and flags; returns chars written. */
static int put_num(uint64_t v, unsigned base, int neg, int width, int zero, int left, int upper)
{
	const char *dig = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char buf[24];
	int n = 0, out = 0;

	do {
		buf[n++] = dig[v % base];
		v /= base;
	} while (v);
	int len = n + neg;
	if (!left && !zero)
		out += pad(width - len, ' ');
	if (neg) {
		rt_putc('-');
		out++;
	}
	if (!left && zero)
		out += pad(width - len, '0');
	while (n)
		rt_putc(buf[--n]), out++;
	if (left)
		out += pad(width - len, ' ');
	return out;
}

int rt_vprintf(const char *fmt, va_list ap)
{
	int out = 0;

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			rt_putc(*fmt);
			out++;
			continue;
		}
		int zero = 0, left = 0, width = 0, lng = 0;
		for (fmt++;; fmt++) {
			if (*fmt == '0')
				zero = 1;
			else if (*fmt == '-')
				left = 1;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		for (;; fmt++) {
			if (*fmt == 'l' || *fmt == 'z')
				lng = 1; /* long, long long and size_t are all 64 bits here */
			else if (*fmt != 'h')
				break;
		}
		uint64_t u;
		int64_t s;
		switch (*fmt) {
		case 'd':
		case 'i':
			s = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			u = s < 0 ? -(uint64_t)s : (uint64_t)s;
			out += put_num(u, 10, s < 0, width, zero, left, 0);
			break;
		case 'u':
		case 'x':
		case 'X':
			u = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			out += put_num(u, *fmt == 'u' ? 10 : 16, 0, width, zero, left, *fmt == 'X');
			break;
		case 'p':
			rt_puts("0x");
			out +=
			    2 + put_num((uintptr_t)va_arg(ap, void *), 16, 0, width, zero, left, 0);
			break;
		case 'c':
			out += pad(left ? 0 : width - 1, ' ');
			rt_putc((char)va_arg(ap, int));
			out += 1 + pad(left ? width - 1 : 0, ' ');
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			if (!str)
				str = "(null)";
			int len = (int)strlen(str);
			out += pad(left ? 0 : width - len, ' ');
			rt_puts(str);
			out += len + pad(left ? width - len : 0, ' ');
			break;
		}
		case '%':
			rt_putc('%');
			out++;
			break;
		case '\0': return out;
		default: /* unknown conversion: show it */
			rt_putc('%');
			rt_putc(*fmt);
			out += 2;
		}
	}
	return out;
}

int rt_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = rt_vprintf(fmt, ap);
	va_end(ap);
	return n;
}
