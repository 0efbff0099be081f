/*
 * loader.c - the kernel loader front end: read the files, tell the formats apart, call
 * the PVH or bzImage loader.
 *
 * Files are read whole into host memory (never more than guest RAM, which they must fit
 * in anyway), so the format loaders validate one immutable buffer: a file that changes
 * while it is read cannot make them see two versions of a header.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/loader/bzimage.h"
#include "hv/loader/loader.h"
#include "hv/loader/pvh.h"

static bool is_elf(const uint8_t *img, size_t len)
{
	return len >= 4 && !memcmp(img, "\177ELF", 4);
}

int loader_load_image(struct guest_mem *m, const void *image, size_t len, const void *initrd,
                      size_t initrd_len, const char *cmdline, struct x86_state *entry,
                      struct hv_error *err)
{
	if (is_elf(image, len)) {
		if (initrd)
			return hv_fail(err, EINVAL,
			               "a PVH kernel takes no initrd (an initrd goes with a Linux "
			               "bzImage)");
		return pvh_load(m, image, len, cmdline, entry, err);
	}
	if (bzimage_probe(image, len))
		return bzimage_load(m, image, len, initrd, initrd_len, cmdline, entry, err);
	return hv_fail(err, ENOEXEC,
	               "not an ELF file (PVH kernel) nor a Linux bzImage (no \"HdrS\" at offset "
	               "0x%x)",
	               BZ_MAGIC);
}

int loader_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len,
                     struct hv_error *err)
{
	struct stat st;
	size_t got = 0;
	int fd, rc = -1;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		hv_fail(err, errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		hv_fail(err, EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		hv_fail(err, EFBIG, "%s: %llu bytes do not fit in %llu MiB of guest RAM", path,
		        (unsigned long long)st.st_size, (unsigned long long)(max >> 20));
		goto out;
	}
	*buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!*buf) {
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			hv_fail(err, errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: validate what we have */
		got += (size_t)n;
	}
	*len = got;
	rc = 0;
out:
	if (rc < 0) {
		free(*buf);
		*buf = NULL;
	}
	close(fd);
	return rc;
}

int loader_load_kernel(struct guest_mem *m, const char *kernel, const char *initrd,
                       const char *cmdline, struct x86_state *entry, struct hv_error *err)
{
	uint8_t *img = NULL, *rd = NULL;
	size_t len = 0, rd_len = 0;
	char msg[HV_ERROR_MSG];
	int rc = -1;

	if (loader_read_file(kernel, m->ram_size, &img, &len, err) < 0)
		return -1;
	if (initrd && loader_read_file(initrd, m->ram_size, &rd, &rd_len, err) < 0)
		goto out;
	rc = loader_load_image(m, img, len, initrd ? rd : NULL, rd_len, cmdline, entry, err);
	if (rc < 0 && err) {
		memcpy(msg, err->msg, sizeof(msg));
		hv_fail(err, err->code, "%s: %s", kernel, msg);
	}
out:
	free(rd);
	free(img);
	return rc;
}
