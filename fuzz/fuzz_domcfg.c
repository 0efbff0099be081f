/*
 * fuzz_domcfg.c - libFuzzer target for the domain config parser (toolstack/domcfg.c).
 *
 * Whatever the bytes, domcfg_parse() must either fail with a message or succeed; and a
 * config it accepts must survive hvd's persistence: its canonical form (domcfg_write)
 * parses back to an equal struct, and it yields an `hv run` argument vector. Either
 * failing is a bug, reported by abort() so that libFuzzer keeps the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/domcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct domcfg cfg, again;
	struct hv_error err = {0};
	char *text = NULL, **argv;
	size_t len = 0;
	FILE *f;

	if (domcfg_parse((const char *)data, size, "fuzz.cfg", &cfg, &err) < 0) {
		if (!err.msg[0] || strchr(err.msg, '\n')) {
			fprintf(stderr, "bad error message: '%s'\n", err.msg);
			abort();
		}
		return 0;
	}
	f = open_memstream(&text, &len);
	if (!f)
		abort();
	if (domcfg_write(&cfg, f, &err) < 0) {
		fprintf(stderr, "accepted config not writable: %s\n", err.msg);
		abort();
	}
	fclose(f);
	if (domcfg_parse(text, len, "canonical.cfg", &again, &err) < 0) {
		fprintf(stderr, "canonical form refused: %s\n---\n%s---\n", err.msg, text);
		abort();
	}
	if (!domcfg_equal(&cfg, &again)) {
		fprintf(stderr, "canonical form differs:\n%s", text);
		abort();
	}
	argv = domcfg_argv(&cfg, "hv", "/run/hvd/x.sock", &err);
	if (!argv) {
		fprintf(stderr, "no argv: %s\n", err.msg);
		abort();
	}
	domcfg_argv_free(argv);
	domcfg_free(&again);
	domcfg_free(&cfg);
	free(text);
	return 0;
}
