/*
 * fuzz_store_index.c - libFuzzer target for the checkpoint store's index file reader.
 *
 * Index files are untrusted: index_parse accepts only entries within the bounds a pack
 * can have, or fails with one line naming the file. Each input also runs with its
 * trailing SHA-256 recomputed, so mutations reach the entries (sealed.h).
 */
#include <stdint.h>
#include <stdlib.h>

#include "checkpoint/store_int.h"
#include "sealed.h"

static void parse(const uint8_t *data, size_t size)
{
	struct ck_entry *e;
	struct hv_error err;
	size_t n;

	hv_error_clear(&err);
	if (index_parse(data, size, "input", &e, &n, &err) < 0) {
		fuzz_check_error(&err);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (e[i].rawlen > STORE_BLOB_MAX || e[i].off + e[i].clen > PACK_FILE_MAX)
			abort();
	free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_sealed(data, size, parse);
	return 0;
}
