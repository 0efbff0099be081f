/*
 * uffd.h - open a userfaultfd (shared by copy-before-write and lazy restore).
 */
#ifndef HV_UFFD_H
#define HV_UFFD_H

#include <stdint.h>

#include "hv/error.h"

/*
 * uffd_open - a non-blocking, close-on-exec userfaultfd with the UFFDIO_API handshake
 * done for @features (UFFD_FEATURE_* bits that must all be granted). Tries the system
 * call, then /dev/userfaultfd (which grants kernel-mode faults, KVM's, by file permission
 * where vm.unprivileged_userfaultfd=0). Returns the fd, or -1 with @err: ENOSYS when
 * there is no userfaultfd, ENOTSUP when a feature is missing.
 */
int uffd_open(uint64_t features, struct hv_error *err);

#endif
