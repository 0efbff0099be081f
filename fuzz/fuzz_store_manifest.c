/*
 * fuzz_store_manifest.c - libFuzzer target for the checkpoint manifest reader.
 *
 * A manifest is untrusted: whatever its bytes, manifest_parse returns a manifest whose
 * fields are within their bounds or fails with one line naming the file. Every input runs
 * twice: as it is, and with its trailing SHA-256 recomputed so mutations reach the
 * fields behind the checksum.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store_int.h"

static void parse(const uint8_t *data, size_t size)
{
	struct manifest *m;
	struct hv_error err;

	hv_error_clear(&err);
	if (manifest_parse(data, size, "input", NULL, &m, &err) == 0) {
		/* a parsed manifest must re-encode: its fields are within bounds */
		uint8_t *buf;
		size_t len;
		if (m->nchunks != manifest_chunks(m->ram_size) ||
		    strlen(m->vm) > MANIFEST_NAME_MAX || manifest_encode(m, &buf, &len, &err) < 0)
			abort();
		free(buf);
		manifest_free(m);
	} else if (err.msg[0] == '\0' || strchr(err.msg, '\n')) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	parse(data, size);
	if (size < 32)
		return 0;
	copy = malloc(size);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	ck_sha256(copy, size - 32, (struct blob_id *)(copy + size - 32));
	parse(copy, size);
	free(copy);
	return 0;
}
