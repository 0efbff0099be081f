/*
 * accel.c - choosing an accelerator.
 *
 * "auto" prefers KVM and falls back to the software CPU, which always works; naming a
 * backend explicitly turns its probe failure into the error the user sees.
 */
#include <errno.h>
#include <string.h>

#include "hv/accel.h"

static int accel_probe(const struct accel_ops *ops, struct hv_error *err)
{
	return ops->probe ? ops->probe(err) : 0;
}

const struct accel_ops *accel_select(const char *name, struct hv_error *err)
{
	if (!name || !strcmp(name, "auto")) {
		struct hv_error ignored;
		if (accel_probe(&accel_kvm, &ignored) == 0)
			return &accel_kvm;
		return accel_probe(&accel_emu, err) == 0 ? &accel_emu : NULL;
	}
	if (!strcmp(name, "kvm"))
		return accel_probe(&accel_kvm, err) == 0 ? &accel_kvm : NULL;
	if (!strcmp(name, "emu"))
		return accel_probe(&accel_emu, err) == 0 ? &accel_emu : NULL;
	hv_fail(err, EINVAL, "unknown accelerator '%s' (use auto, kvm or emu)", name);
	return NULL;
}
