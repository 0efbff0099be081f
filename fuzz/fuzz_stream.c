/*
 * fuzz_stream.c - libFuzzer target for the state-stream reader (save files, migration).
 *
 * A stream is untrusted input: whatever bytes arrive, the reader must restore a VM or
 * fail with a one-line message naming the record and offset; never crash, never read past
 * what it validated, never write outside guest RAM (ASan and UBSan watch). The input goes
 * through a memfd so the real fd-based reader runs, as `hv restore` runs it. Seeds in
 * fuzz/corpus/fuzz_stream/ are real save files.
 *
 * Every input runs twice: as it is (the framing and CRC checks), and with the CRCs of
 * its header and records recomputed, so mutations reach the record parsers behind them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv/vm.h"
#include "migrate/crc32c.h"
#include "migrate/stream.h"
#include "migrate/vmstate.h"

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the header's and each complete record's CRC in place. */
static void fix_crcs(uint8_t *d, size_t size)
{
	size_t off = STREAM_HDR_SIZE;

	if (size < STREAM_HDR_SIZE)
		return;
	put32(d + 20, crc32c(0, d, 20));
	while (size - off >= STREAM_REC_HDR) {
		uint32_t len = get32(d + off + 4);
		if (len > size - off - STREAM_REC_HDR)
			break;
		put32(d + off + 8, crc32c(crc32c(0, d + off, 8), d + off + STREAM_REC_HDR, len));
		off += STREAM_REC_HDR + len;
		off += (8 - off % 8) % 8;
		if (off > size)
			break;
	}
}

static void load(const uint8_t *data, size_t size)
{
	static struct vm vm;
	struct hv_error err;
	struct stream s;
	int fd = memfd_create("fuzz-stream", MFD_CLOEXEC);

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	lseek(fd, 0, SEEK_SET);
	hv_error_clear(&err);
	if (stream_open_read(&s, fd, "input", &err) == 0 &&
	    vmstate_load(&s, &vm, -1, -1, &err) == 0) {
		vm_destroy(&vm);
	} else if (err.msg[0] == '\0' || strchr(err.msg, '\n')) {
		abort(); /* a failure must say why, on one line */
	}
	stream_close(&s);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);

	if (!copy)
		abort();
	load(data, size);
	memcpy(copy, data, size);
	fix_crcs(copy, size);
	if (size && memcmp(copy, data, size))
		load(copy, size);
	free(copy);
	return 0;
}
