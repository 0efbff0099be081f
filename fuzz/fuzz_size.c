/*
 * fuzz_size.c - libFuzzer target for the SIZE parser (--memory, guest command lines,
 * later config files): any string either parses to a value or fails with a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/size.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_error err = {0};
	char buf[64];
	uint64_t v;

	if (size >= sizeof(buf))
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (size_parse(buf, &v, &err) < 0 && err.msg[0] == '\0')
		abort(); /* a failure must say why */
	return 0;
}
