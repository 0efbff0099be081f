/*
 * uffd.c - open a userfaultfd (see uffd.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hv/uffd.h"

static int uffd_raw(struct hv_error *err)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int dev, e;

	if (fd >= 0)
		return fd;
	e = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return hv_fail(err, ENOSYS, "userfaultfd: %s; /dev/userfaultfd: %s", strerror(e),
		               strerror(errno));
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	e = errno;
	close(dev);
	if (fd < 0)
		return hv_fail(err, ENOSYS, "/dev/userfaultfd: USERFAULTFD_IOC_NEW: %s",
		               strerror(e));
	return fd;
}

int uffd_open(uint64_t features, struct hv_error *err)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};
	int fd = uffd_raw(err);

	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;

		close(fd);
		return hv_fail(err, e == EINVAL ? ENOTSUP : e, "userfaultfd: UFFDIO_API: %s",
		               strerror(e));
	}
	if ((api.features & features) != features) {
		close(fd);
		return hv_fail(err, ENOTSUP, "userfaultfd: features %#llx not supported",
		               (unsigned long long)(features & ~api.features));
	}
	return fd;
}
