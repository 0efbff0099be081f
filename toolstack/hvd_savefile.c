/*
 * hvd_savefile.c - what VM a save file holds, without loading it.
 *
 * `restore FILE` needs the domain's name before any hv process exists (the name picks
 * the domain, its control socket and its log). A save file opens with its VM_CONFIG
 * record (docs/state-format.md), so reading the header and that one record is enough;
 * the record is untrusted and goes through the same checked field reader as a restore.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/state_io.h"
#include "hv/vm.h"
#include "migrate/stream.h"
#include "toolstack/hvd.h"

static int fill(struct domcfg *out, const char *name, const char *accel, uint32_t nvcpus,
                uint8_t determ, uint64_t ram, const char *cmdline, const char *kernel,
                const char *path, struct hv_error *err)
{
	domcfg_init(out);
	if (!hvd_name_valid(name))
		return hv_fail(err, EINVAL, "%s: the VM's name '%s' is not a domain name", path,
		               name);
	snprintf(out->name, sizeof(out->name), "%s", name);
	out->memory = ram;
	out->vcpus = nvcpus;
	out->accel = !strcmp(accel, "kvm") ? DOMCFG_ACCEL_KVM : DOMCFG_ACCEL_EMU;
	out->deterministic = determ;
	/* The save file keeps only the kernel's file name: enough to restore, not to boot. */
	out->kernel = strdup(*kernel ? kernel : "unknown-kernel");
	out->cmdline = strdup(cmdline);
	if (!out->kernel || !out->cmdline) {
		domcfg_free(out);
		return hv_fail(err, ENOMEM, "out of memory");
	}
	if (domcfg_check(out, err) < 0) {
		char why[HV_ERROR_MSG];

		snprintf(why, sizeof(why), "%s", err->msg);
		domcfg_free(out);
		return hv_fail(err, EINVAL, "%s: %s", path, why);
	}
	return 0;
}

int hvd_savefile_config(const char *path, struct domcfg *out, struct hv_error *err)
{
	char name[VM_NAME_MAX] = "", accel[16] = "", kernel[VM_KERNEL_MAX] = "";
	char *cmdline = calloc(1, VM_CMDLINE_MAX);
	uint32_t version = 0, nvcpus = 0;
	uint8_t determ = 0;
	uint64_t ram = 0;
	struct stream s;
	struct record rec;
	struct state_io io;
	int fd, rc = -1;

	domcfg_init(out);
	if (!cmdline)
		return hv_fail(err, ENOMEM, "out of memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(cmdline);
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	}
	if (stream_open_read(&s, fd, path, err) < 0)
		goto out_fd;
	if (stream_read(&s, &rec, err) != 1)
		goto out;
	if (rec.type != REC_VM_CONFIG) {
		hv_fail(err, EINVAL, "%s: no VM_CONFIG record first: not a save file", path);
		goto out;
	}
	if (state_io_load_init(&io, "VM_CONFIG", rec.body, rec.len, err) < 0)
		goto out;
	STATE_FIELD(&io, "version", &version);
	STATE_STR(&io, "name", name, sizeof(name));
	STATE_STR(&io, "accel", accel, sizeof(accel));
	STATE_FIELD(&io, "nvcpus", &nvcpus);
	STATE_FIELD(&io, "deterministic", &determ);
	STATE_FIELD(&io, "ram_size", &ram);
	STATE_STR(&io, "cmdline", cmdline, VM_CMDLINE_MAX);
	STATE_STR(&io, "kernel", kernel, sizeof(kernel));
	if (state_io_result(&io) < 0)
		goto out;
	rc = fill(out, name, accel, nvcpus, determ, ram, cmdline, kernel, path, err);
out:
	stream_close(&s);
out_fd:
	close(fd);
	free(cmdline);
	return rc;
}
