/*
 * preload.c - fill guest RAM from a raw memory image (see preload.h).
 *
 * pread() goes straight into the slot mappings (memfd, MAP_SHARED) in 64 MiB chunks: no
 * bounce buffer, one system call per chunk, and the kernel copies from the page cache at
 * memory speed. The written range is then marked in the dirty log as one call per slot.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/dirty.h"
#include "hv/loader/preload.h"

#define PRELOAD_CHUNK (64ULL << 20)

int mem_preload(struct guest_mem *m, const char *path, struct hv_error *err)
{
	uint64_t done = 0, size;
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
		return hv_fail(err, EFBIG, "--preload %s: %llu bytes, more than the %llu of guest RAM",
		               path, (unsigned long long)size, (unsigned long long)m->ram_size);
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (int i = 0; i < m->nslots && done < size; i++) {
		struct mem_slot *sl = &m->slot[i];
		uint64_t want = size - done < sl->size ? size - done : sl->size, off = 0;

		while (off < want) {
			uint64_t n = want - off < PRELOAD_CHUNK ? want - off : PRELOAD_CHUNK;
			ssize_t r = pread(fd, sl->hva + off, n, (off_t)(done + off));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				int e = r < 0 ? errno : EIO;
				close(fd);
				return hv_fail(err, e, "--preload %s: read at offset %llu: %s", path,
				               (unsigned long long)(done + off),
				               r < 0 ? strerror(e) : "file shrank");
			}
			off += (uint64_t)r;
		}
		dirty_mark(m, sl->gpa, want);
		done += want;
	}
	close(fd);
	return 0;
}
