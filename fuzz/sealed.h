/*
 * sealed.h - the harness shared by the fuzz targets of the store's sealed files: those
 * that end in a SHA-256 of all preceding bytes (manifests, index files).
 *
 * A mutated input almost never carries a matching checksum, so the parser would reject
 * nearly every one at the checksum and the fields behind it would go unexplored. Each
 * input therefore runs twice: as it is (the checksum check itself is fuzzed), then with
 * its last 32 bytes replaced by the SHA-256 of the rest, so mutations reach the fields.
 * Included by one target each; the target supplies the parse-and-check function.
 */
#ifndef FUZZ_SEALED_H
#define FUZZ_SEALED_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/store_int.h"

/*
 * fuzz_check_error - abort unless a parser's failure left the one line of context the
 * reader promises (a message, and no newline in it).
 */
static inline void fuzz_check_error(const struct hv_error *err)
{
	if (err->msg[0] == '\0' || strchr(err->msg, '\n'))
		abort();
}

/*
 * fuzz_sealed - run @parse on @data as given, then on a copy whose trailing SHA-256 is
 * recomputed. @parse aborts on any broken promise; inputs under 32 bytes run once.
 */
static inline void fuzz_sealed(const uint8_t *data, size_t size,
                               void (*parse)(const uint8_t *data, size_t size))
{
	uint8_t *copy;

	parse(data, size);
	if (size < 32)
		return;
	copy = malloc(size);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	ck_sha256(copy, size - 32, (struct blob_id *)(copy + size - 32));
	parse(copy, size);
	free(copy);
}

#endif
