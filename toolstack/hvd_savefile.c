/*
 * hvd_savefile.c - what VM a save file or a checkpoint holds, without loading it.
 *
 * `restore FILE` and `restore --store DIR ID` need the domain's name before any hv
 * process exists (the name picks the domain, its control socket and its log). A save
 * file, like a checkpoint's state blob, opens with its VM_CONFIG record
 * (docs/state-format.md), so reading the header and that one record is enough; the
 * record is untrusted and goes through the same checked field reader as a restore.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
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

/* The VM_CONFIG record that opens the state stream @s (named @what in errors). */
static int config_from_stream(struct stream *s, const char *what, struct domcfg *out,
                              struct hv_error *err)
{
	char name[VM_NAME_MAX] = "", accel[16] = "", kernel[VM_KERNEL_MAX] = "";
	char *cmdline = calloc(1, VM_CMDLINE_MAX);
	uint32_t version = 0, nvcpus = 0;
	uint8_t determ = 0;
	uint64_t ram = 0;
	struct record rec;
	struct state_io io;
	int rc = -1;

	if (!cmdline)
		return hv_fail(err, ENOMEM, "out of memory");
	if (stream_read(s, &rec, err) != 1)
		goto out;
	if (rec.type != REC_VM_CONFIG) {
		hv_fail(err, EINVAL, "%s: no VM_CONFIG record first: not a VM's state", what);
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
	rc = fill(out, name, accel, nvcpus, determ, ram, cmdline, kernel, what, err);
out:
	free(cmdline);
	return rc;
}

int hvd_savefile_config(const char *path, struct domcfg *out, struct hv_error *err)
{
	struct stream s;
	int fd, rc = -1;

	domcfg_init(out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (stream_open_read(&s, fd, path, err) == 0) {
		rc = config_from_stream(&s, path, out, err);
		stream_close(&s);
	}
	close(fd);
	return rc;
}

/*
 * The newest checkpoint of @s of the VM @vm into @id, by the manifests' times (ids sort
 * by the second only). With no @vm the store must hold one VM's checkpoints: in a store
 * that `checkpoint --all` shares, "the newest" alone could roll back another domain than
 * the one meant.
 */
static int newest(struct store *s, const char *vm, char id[MANIFEST_ID_LEN + 1],
                  struct hv_error *err)
{
	char(*ids)[MANIFEST_ID_LEN + 1] = NULL, who[MANIFEST_NAME_MAX + 1] = "";
	uint64_t best = 0;
	size_t n = 0;
	int rc = -1;

	if (manifest_list(s, &ids, &n, err) < 0)
		return -1;
	id[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		struct manifest *m;

		if (manifest_read(s, ids[i], &m, err) < 0)
			goto out;
		if (!vm && who[0] && strcmp(m->vm, who)) {
			hv_fail(
			    err, EINVAL,
			    "%s holds checkpoints of several VMs (%s and %s at least): name the "
			    "domain",
			    store_path(s), who, m->vm);
			manifest_free(m);
			goto out;
		}
		if ((!vm || !strcmp(m->vm, vm)) && (!id[0] || m->time_ns >= best)) {
			memcpy(id, m->id, MANIFEST_ID_LEN + 1);
			best = m->time_ns;
		}
		snprintf(who, sizeof(who), "%s", m->vm);
		manifest_free(m);
	}
	if (!id[0]) {
		hv_fail(err, ENOENT, "%s: the store holds no checkpoint%s%s", store_path(s),
		        vm ? " of " : "", vm ? vm : "");
		goto out;
	}
	rc = 0;
out:
	free(ids);
	return rc;
}

int hvd_checkpoint_config(const char *store, const char *id, const char *vm,
                          char out_id[MANIFEST_ID_LEN + 1], struct domcfg *out,
                          struct hv_error *err)
{
	struct stream_mem mb = {0};
	struct manifest *m = NULL;
	struct store *s = NULL;
	struct stream st;
	char what[PATH_MAX + 64];
	int rc = -1;

	domcfg_init(out);
	if (store_open(store, &s, err) < 0)
		return -1;
	if (!strcmp(id, "latest") ? newest(s, vm, out_id, err) < 0
	                          : snprintf(out_id, MANIFEST_ID_LEN + 1, "%s", id) < 0)
		goto out;
	if (manifest_read(s, out_id, &m, err) < 0)
		goto out;
	snprintf(what, sizeof(what), "%s: checkpoint %s", store, out_id);
	if (!(mb.p = malloc(STORE_BLOB_MAX))) {
		hv_fail(err, ENOMEM, "out of memory");
		goto out;
	}
	if (store_get(s, &m->state, mb.p, STORE_BLOB_MAX, &mb.len, err) < 0)
		goto out;
	if (stream_open_read_io(&st, &stream_mem_io, &mb, what, err) == 0) {
		rc = config_from_stream(&st, what, out, err);
		stream_close(&st);
	}
out:
	stream_mem_free(&mb);
	manifest_free(m);
	store_close(s);
	return rc;
}
