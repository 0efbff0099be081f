/*
 * fuzz_bzimage.c - libFuzzer target for the kernel loader front end and the bzImage
 * loader.
 *
 * The kernel image is untrusted input: whatever bytes arrive, loader_load_image() must
 * either load them into guest RAM or fail with a message, never read outside the image
 * nor write outside guest RAM. The input's first byte picks an initrd size, so the
 * placement arithmetic is exercised too; a "HdrS" seed (the header of any bzImage) takes
 * the fuzzer into the bzImage path quickly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/loader/loader.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

#define RAM (32ULL << 20)

static struct guest_mem mem;
static struct x86_state *st;
static uint8_t *initrd;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_error err;
	size_t rd_len;

	if (!st) {
		if (mem_init(&mem, RAM, &err) < 0)
			abort();
		st = calloc(1, sizeof(*st));
		initrd = calloc(1, 1 << 20);
		if (!st || !initrd)
			abort();
	}
	if (size < 1)
		return 0;
	rd_len = (size_t)data[0] << 12; /* 0 .. 1020 KiB */
	hv_error_clear(&err);
	x86_state_reset(st, 0, 1);
	if (loader_load_image(&mem, data + 1, size - 1, rd_len ? initrd : NULL, rd_len,
	                      "console=ttyS0 x=1", st, &err) < 0) {
		/* A failure must say why. */
		if (err.msg[0] == '\0')
			abort();
	}
	return 0;
}
