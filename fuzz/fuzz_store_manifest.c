/*
 * fuzz_store_manifest.c - libFuzzer target for the checkpoint manifest reader.
 *
 * A manifest is untrusted: whatever its bytes, manifest_parse returns a manifest whose
 * fields are within their bounds or fails with one line naming the file. Each input also
 * runs with its trailing SHA-256 recomputed, so mutations reach the fields behind the
 * checksum (sealed.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store_int.h"
#include "sealed.h"

static void parse(const uint8_t *data, size_t size)
{
	struct manifest *m;
	struct hv_error err;
	uint8_t *buf;
	size_t len;

	hv_error_clear(&err);
	if (manifest_parse(data, size, "input", NULL, &m, &err) < 0) {
		fuzz_check_error(&err);
		return;
	}
	/* a parsed manifest must re-encode: its fields are within bounds */
	if (m->nchunks != manifest_chunks(m->ram_size) || strlen(m->vm) > MANIFEST_NAME_MAX ||
	    manifest_encode(m, &buf, &len, &err) < 0)
		abort();
	free(buf);
	manifest_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_sealed(data, size, parse);
	return 0;
}
