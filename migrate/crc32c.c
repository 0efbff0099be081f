/*
 * crc32c.c - CRC-32C, hardware-assisted on x86-64.
 *
 * The instruction computes the reflected CRC with the register holding the inverted
 * value, so both paths work on ~crc and invert at the end.
 */
#include <pthread.h>
#include <string.h>

#include "migrate/crc32c.h"

#define POLY 0x82f63b78u /* Castagnoli, reflected */

static uint32_t table[256];

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		table[i] = c;
	}
}

static uint32_t sw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len--)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c;

	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

static int mode; /* 1 table, 2 hardware */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	table_init();
	mode = 1;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		mode = 2;
#endif
}

uint32_t crc32c(uint32_t crc, const void *p, size_t len)
{
	pthread_once(&once, crc_init);
#if defined(__x86_64__)
	if (mode == 2)
		return ~hw(~crc, p, len);
#endif
	return ~sw(~crc, p, len);
}
