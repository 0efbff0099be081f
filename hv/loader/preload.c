/*
 * preload.c - fill guest RAM from a raw memory image (see preload.h).
 *
 * The file is read in 8 MiB chunks into one reused buffer, and only the runs of non-zero
 * pages are copied into the slots (each run one memcpy, marked in the dirty log): RAM
 * starts zeroed, so an all-zero page needs no write, and leaving it out keeps the memfd's
 * hole there. Guest memory is then committed only for the image's data (a fresh page costs
 * a host page fault, the dominant cost), and a later save skips the holes unread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/dirty.h"
#include "hv/loader/preload.h"

#define PRELOAD_CHUNK (8ULL << 20)
#define PAGE          4096u

static bool page_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (unsigned i = 0; i < PAGE / 8; i += 16) {
		uint64_t a = 0;
		for (unsigned j = 0; j < 16; j++)
			a |= q[i + j];
		if (a)
			return false;
	}
	return true;
}

/* Copy the non-zero pages of @buf (@n bytes, whole pages but maybe a short tail). */
static void copy_nonzero(struct guest_mem *m, struct mem_slot *sl, uint64_t off, const uint8_t *buf,
                         uint64_t n)
{
	uint64_t i = 0;

	while (i < n) {
		uint64_t j;
		if (n - i >= PAGE && page_zero(buf + i)) {
			i += PAGE;
			continue;
		}
		for (j = i; j < n && (n - j < PAGE || !page_zero(buf + j)); j += PAGE)
			;
		j = j < n ? j : n;
		memcpy(sl->hva + off + i, buf + i, j - i);
		dirty_mark(m, sl->gpa + off + i, j - i);
		i = j;
	}
}

int mem_preload(struct guest_mem *m, const char *path, struct hv_error *err)
{
	uint64_t done = 0, size;
	uint8_t *buf;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return hv_fail(err, errno, "--preload %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return hv_fail(err, EINVAL, "--preload %s: not a regular file", path);
	}
	size = (uint64_t)sb.st_size;
	if (size > m->ram_size) {
		close(fd);
		return hv_fail(err, EFBIG,
		               "--preload %s: %llu bytes, more than the %llu of guest RAM", path,
		               (unsigned long long)size, (unsigned long long)m->ram_size);
	}
	buf = malloc(PRELOAD_CHUNK);
	if (!buf) {
		close(fd);
		return hv_fail(err, ENOMEM, "--preload %s: out of memory", path);
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (int i = 0; i < m->nslots && done < size; i++) {
		struct mem_slot *sl = &m->slot[i];
		uint64_t want = size - done < sl->size ? size - done : sl->size, off = 0;

		while (off < want) {
			uint64_t n = want - off < PRELOAD_CHUNK ? want - off : PRELOAD_CHUNK;
			ssize_t r = pread(fd, buf, n, (off_t)(done + off));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				int e = r < 0 ? errno : EIO;
				free(buf);
				close(fd);
				return hv_fail(err, e, "--preload %s: read at offset %llu: %s",
				               path, (unsigned long long)(done + off),
				               r < 0 ? strerror(e) : "file shrank");
			}
			copy_nonzero(m, sl, off, buf, (uint64_t)r);
			off += (uint64_t)r;
		}
		done += want;
	}
	free(buf);
	close(fd);
	return 0;
}
