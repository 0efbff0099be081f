/*
 * fuzz_store_index.c - libFuzzer target for the checkpoint store's index file reader.
 *
 * Index files are untrusted: index_parse accepts only entries within the bounds a pack
 * can have, or fails with one line naming the file. Every input runs twice: as it is,
 * and with its trailing SHA-256 recomputed so mutations reach the entries.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/store_int.h"

static void parse(const uint8_t *data, size_t size)
{
	struct ck_entry *e;
	struct hv_error err;
	size_t n;

	hv_error_clear(&err);
	if (index_parse(data, size, "input", &e, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			if (e[i].rawlen > STORE_BLOB_MAX || e[i].off + e[i].clen > PACK_FILE_MAX)
				abort();
		free(e);
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
