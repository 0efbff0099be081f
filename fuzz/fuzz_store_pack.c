/*
 * fuzz_store_pack.c - libFuzzer target for the checkpoint store's pack reader.
 *
 * A pack is untrusted: pack_parse accepts only trailer entries inside the data area, and
 * pack_check_blob (what `verify --read-data` runs) decompresses and re-hashes each one
 * without reading or writing out of bounds, failing with one line naming the blob.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ZSTD_DCtx *dctx;
	static uint8_t *out;
	struct ck_entry *e;
	struct hv_error err;
	size_t n;

	if (!dctx) {
		dctx = ZSTD_createDCtx();
		out = malloc(STORE_BLOB_MAX);
		if (!dctx || !out)
			abort();
	}
	hv_error_clear(&err);
	if (pack_parse(data, size, "input", &e, &n, &err) < 0) {
		if (err.msg[0] == '\0' || strchr(err.msg, '\n'))
			abort();
		return 0;
	}
	/* A few blobs per input: a hostile trailer may list a million. */
	for (size_t i = 0; i < n && i < 64; i++) {
		if (e[i].off + e[i].clen > size)
			abort();
		hv_error_clear(&err);
		if (pack_check_blob(dctx, data, &e[i], "input", out, &err) < 0 &&
		    (err.msg[0] == '\0' || strchr(err.msg, '\n')))
			abort();
	}
	free(e);
	return 0;
}
