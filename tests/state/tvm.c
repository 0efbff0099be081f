/*
 * tvm.c - helpers for the state tests.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/loader/pvh.h"
#include "migrate/savefile.h"
#include "migrate/stream.h"
#include "tests/state/tvm.h"

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "tvm: %s: %s\n", what, msg);
	abort();
}

struct vm *tvm_boot(const char *elf, const char *cmdline, uint64_t ram, bool det, int out_fd)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct vm_config cfg = {.ram_size = ram, .nvcpus = 1, .deterministic = det};
	struct x86_state *st = calloc(1, sizeof(*st));
	struct hv_error err = {0};

	snprintf(cfg.name, sizeof(cfg.name), "state-test");
	snprintf(cfg.cmdline, sizeof(cfg.cmdline), "%s", cmdline);
	snprintf(cfg.kernel, sizeof(cfg.kernel), "%s",
	         strrchr(elf, '/') ? strrchr(elf, '/') + 1 : elf);
	if (!vm || !st)
		die("boot", "out of memory");
	if (vm_create(vm, &cfg, &accel_emu, out_fd, -1, &err) < 0)
		die("vm_create", err.msg);
	if (vm_get_state(vm, 0, st, &err) < 0 ||
	    pvh_load_file(&vm->mem, elf, cmdline, st, &err) < 0 ||
	    vm_set_state(vm, 0, st, &err) < 0)
		die(elf, err.msg);
	free(st);
	return vm;
}

void tvm_free(struct vm *vm)
{
	if (!vm)
		return;
	vm_destroy(vm);
	free(vm);
}

struct vm *tvm_restore(const char *file, int out_fd, char *msg, size_t msgsz)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct hv_error err = {0};

	if (savefile_read(vm, file, out_fd, -1, &err) < 0) {
		snprintf(msg, msgsz, "%s", err.msg);
		free(vm);
		return NULL;
	}
	return vm;
}

uint8_t *tvm_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p;
	long n;

	if (!f)
		die(path, "cannot open");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)n + 1);
	if (!p || fread(p, 1, (size_t)n, f) != (size_t)n)
		die(path, "cannot read");
	fclose(f);
	*len = (size_t)n;
	return p;
}

void tvm_write_file(const char *path, const void *p, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(p, 1, len, f) != len || fclose(f))
		die(path, "cannot write");
}

const char *tvm_stream_diff(const char *a, const char *b)
{
	static char msg[512];
	struct stream sa, sb;
	struct record ra, rb;
	struct hv_error err = {0};
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY), ga, gb;
	const char *res = NULL;

	if (fa < 0 || fb < 0)
		die("diff", "cannot open");
	if (stream_open_read(&sa, fa, a, &err) < 0 || stream_open_read(&sb, fb, b, &err) < 0)
		die("diff", err.msg);
	for (;;) {
		ga = stream_read(&sa, &ra, &err);
		if (ga < 0)
			die("diff", err.msg);
		/* Bodies live in the stream's buffer: compare before reading the other. */
		uint8_t *copy = malloc(ra.len + 1);
		uint32_t type = ra.type, len = ra.len;
		uint64_t off = ra.off;
		memcpy(copy, ra.body, ra.len);
		gb = stream_read(&sb, &rb, &err);
		if (gb < 0)
			die("diff", err.msg);
		if (type != rb.type || len != rb.len || memcmp(copy, rb.body, len)) {
			size_t i = 0;
			while (i < len && i < rb.len && copy[i] == rb.body[i])
				i++;
			snprintf(msg, sizeof(msg),
			         "record %s at offset %llu (vs %s at %llu) differs "
			         "at body byte %zu",
			         stream_record_name(type), (unsigned long long)off,
			         stream_record_name(rb.type), (unsigned long long)rb.off, i);
			res = msg;
		}
		free(copy);
		if (res || !ga || !gb)
			break;
	}
	stream_close(&sa);
	stream_close(&sb);
	close(fa);
	close(fb);
	return res;
}
