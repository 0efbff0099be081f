/*
 * fuzz_hvd_request.c - libFuzzer target for hvd's API request parser
 * (toolstack/hvd_proto.c).
 *
 * Whatever the bytes, hvd_request_parse() must either refuse them with a one-line
 * message or return a request whose members hold what the command handlers rely on
 * (a domain name safe as a file name, absolute paths, bounded texts); and either way a
 * reply line must be buildable. A broken promise aborts, so libFuzzer keeps the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolstack/hvd_proto.h"

static void check_reply(json_t *id, enum control_class c, const char *desc)
{
	char *line = hvd_reply(id, c, NULL, desc);

	if (!line || strchr(line, '\n')) {
		fprintf(stderr, "bad reply line\n");
		abort();
	}
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_error err = {0};
	struct hvd_request r;
	enum control_class c;
	json_t *id = NULL;

	c = hvd_request_parse((const char *)data, size, &r, &id, &err);
	if (c != CONTROL_OK) {
		if (!err.msg[0] || strchr(err.msg, '\n') || r.json) {
			fprintf(stderr, "bad refusal: '%s'\n", err.msg);
			abort();
		}
		check_reply(id, c, err.msg);
		json_decref(id);
		return 0;
	}
	if ((r.name && !hvd_name_valid(r.name)) || (r.name && strchr(r.name, '/')) ||
	    (r.file && r.file[0] != '/') || (r.store && r.store[0] != '/') ||
	    (r.tag && (!*r.tag || strlen(r.tag) > 255)) || (r.cmd >= HVD_NCMDS) ||
	    (r.cmd == HVD_CREATE && !r.config) || (r.config && strlen(r.config) != r.config_len)) {
		fprintf(stderr, "request breaks its contract (%s)\n", hvd_cmd_name(r.cmd));
		abort();
	}
	check_reply(r.id, CONTROL_OK, NULL);
	hvd_request_free(&r);
	return 0;
}
