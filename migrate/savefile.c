/*
 * savefile.c - save files: a state stream in a file, committed atomically.
 *
 * The stream goes to a temporary file next to the target (same filesystem, so rename is
 * atomic), is fsynced, renamed over the target, and the directory is fsynced so the
 * rename itself survives a crash. Any failure before the rename unlinks the temporary
 * file: the target is either the complete old file (or absent) or the complete new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/savefile.h"
#include "migrate/stream.h"
#include "migrate/vmstate.h"

/*
 * Level 1. zstd's fast level -1 compresses the pages of bench/saverestore.sh's Linux
 * image about 3x faster for an 11 % larger file (107 vs 97 MiB), but changes the bytes
 * of a save, which tests/state's golden-file check (test_golden_unchanged) forbids.
 */
#define SAVEFILE_ZSTD_LEVEL 1

int savefile_sync_dir(const char *dir, struct hv_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", dir, strerror(errno));
	if (fsync(fd) < 0 && errno != EINVAL) {
		int e = errno;
		close(fd);
		return hv_fail(err, e, "%s: fsync: %s", dir, strerror(e));
	}
	close(fd);
	return 0;
}

int savefile_write(struct vm *vm, const char *path, struct hv_error *err)
{
	return savefile_write_progress(vm, path, NULL, NULL, err);
}

int savefile_write_progress(struct vm *vm, const char *path, save_progress_fn progress,
                            void *progress_arg, struct hv_error *err)
{
	char *pcopy = strdup(path), *bcopy = strdup(path), *tmp = NULL;
	const char *dir, *base;
	struct stream s;
	int fd = -1, rc = -1;

	if (!pcopy || !bcopy) {
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		goto out;
	}
	dir = dirname(pcopy);
	base = basename(bcopy);
	if (!*path || !strcmp(base, "/") || !strcmp(base, ".") || !strcmp(base, "..")) {
		hv_fail(err, EINVAL, "'%s': not a file name", path);
		goto out;
	}
	if (asprintf(&tmp, "%s/.%s.tmp.%d", dir, base, (int)getpid()) < 0) {
		tmp = NULL;
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		goto out;
	}
	/* 0600: the file holds the guest's memory. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		hv_fail(err, errno, "%s: cannot create %s: %s", path, tmp, strerror(errno));
		goto out;
	}
	if (stream_open_write(&s, fd, path, err) < 0) {
		stream_close(&s);
		goto fail;
	}
	rc = vmstate_save(&s, vm, SAVEFILE_ZSTD_LEVEL, progress, progress_arg, err);
	stream_close(&s);
	if (rc < 0)
		goto fail;
	rc = -1;
	if (fsync(fd) < 0) {
		hv_fail(err, errno, "%s: fsync: %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		hv_fail(err, errno, "%s: close: %s", path, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		hv_fail(err, errno, "%s: rename: %s", path, strerror(errno));
		goto fail;
	}
	/* Renamed: the file is there; a failed directory sync is still an error to report. */
	rc = savefile_sync_dir(dir, err);
	goto out;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	free(pcopy);
	free(bcopy);
	return rc;
}

int savefile_read(struct vm *vm, const char *path, int console_out, int console_in,
                  struct hv_error *err)
{
	struct stream s;
	int fd, rc;

	memset(vm, 0, sizeof(*vm)); /* vm_destroy() is then safe whatever happens */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	rc = stream_open_read(&s, fd, path, err);
	if (rc == 0)
		rc = vmstate_load(&s, vm, console_out, console_in, err);
	stream_close(&s);
	close(fd);
	return rc;
}
