/*
 * fuzz_store_lock.c - libFuzzer target for the checkpoint store's lock file reader.
 *
 * Lock files (locks/exclusive, locks/shared-*) are read by every writer and by prune/gc;
 * a hostile or torn one must parse to a positive pid and a bounded, printable host name
 * without spaces, or fail with one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char host[LOCK_HOST_MAX + 1];
	struct hv_error err;
	int pid = 0;

	hv_error_clear(&err);
	if (lock_parse(data, size, &pid, host, &err) == 0) {
		size_t n = strlen(host);
		if (pid <= 0 || n == 0 || n > LOCK_HOST_MAX)
			abort();
		for (size_t i = 0; i < n; i++)
			if (host[i] <= ' ' || host[i] >= 0x7f)
				abort();
	} else if (err.msg[0] == '\0' || strchr(err.msg, '\n')) {
		abort();
	}
	return 0;
}
