/*
 * fuzz_pvh.c - libFuzzer target for the PVH ELF loader.
 *
 * The kernel image is untrusted input: whatever bytes arrive, pvh_load() must either load
 * them into guest RAM or fail with a message, never read outside the image nor write
 * outside guest RAM. ASan watches the first, the guard slot layout the second.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/loader/pvh.h"
#include "hv/mem.h"
#include "hv/x86_state.h"

static struct guest_mem mem;
static struct x86_state *st;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_error err;

	if (!st) {
		if (mem_init(&mem, 16ULL << 20, &err) < 0)
			abort();
		st = calloc(1, sizeof(*st));
		if (!st)
			abort();
	}
	hv_error_clear(&err);
	if (pvh_load(&mem, data, size, "console=ttyS0 x=1", st, &err) < 0) {
		/* A failure must say why. */
		if (err.msg[0] == '\0')
			abort();
	}
	return 0;
}
