/*
 * kvm.c - the KVM backend (x86-64, VT-x/AMD-V).
 *
 * For now only the probe: it checks that /dev/kvm opens and speaks API version 12, then
 * reports that the backend itself is not written yet, so "--accel auto" falls back to the
 * software CPU and "--accel kvm" says exactly what is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hv/accel.h"

#define KVM_DEV "/dev/kvm"

static int kvm_probe(struct hv_error *err)
{
	int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
	int ver;

	if (fd < 0)
		return hv_fail(err, errno, "kvm: %s: %s", KVM_DEV, strerror(errno));
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (ver < 0)
		return hv_fail(err, errno, "kvm: %s: KVM_GET_API_VERSION: %s", KVM_DEV,
		               strerror(errno));
	if (ver != KVM_API_VERSION)
		return hv_fail(err, ENOTSUP, "kvm: %s: API version %d, need %d", KVM_DEV, ver,
		               KVM_API_VERSION);
	return hv_fail(err, ENOSYS,
	               "kvm: backend not implemented yet (issue: KVM backend); use --accel emu");
}

const struct accel_ops accel_kvm = {
    .name = "kvm",
    .probe = kvm_probe,
};
