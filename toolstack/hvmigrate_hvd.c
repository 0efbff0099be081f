/*
 * hvmigrate_hvd.c - hvmigrate through hvd: migrations by domain name out, and the
 * admission of each arriving VM into hvd (see hvmigrate_hvd.h).
 *
 * Admission happens inside the receiving process, after VM_CONFIG and before the first
 * page: the name is known then, and refusing costs the source nothing but a failed
 * migration, so a VM can never arrive under a name this host already has.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/accel.h"
#include "hv/vm.h"
#include "migrate/incoming.h"
#include "toolstack/hvd_proto.h"
#include "toolstack/hvdconn.h"
#include "toolstack/hvmigrate_hvd.h"

bool hvm_is_domain(const char *vm)
{
	struct stat sb;

	if (stat(vm, &sb) == 0 && S_ISSOCK(sb.st_mode))
		return false;
	return hvd_name_valid(vm);
}

/* The desc of an {"error":..} reply, or NULL. */
static const char *error_desc(json_t *reply)
{
	json_t *e = json_object_get(reply, "error");

	return e ? json_string_value(json_object_get(e, "desc")) ?: "failed" : NULL;
}

int hvm_hvd_migrate(struct ctlconn *c, const char *sock, const char *name, json_t *args,
                    struct hv_error *err)
{
	json_t *r;
	int rc = 0;

	if (hvdconn_open(c, sock, 10000, err) < 0) {
		char why[HV_ERROR_MSG];

		snprintf(why, sizeof(why), "%s", err->msg);
		return hv_fail(err, err->code,
		               "%s (is hvd running? '%s' is no socket, so it names a domain)", why,
		               name);
	}
	/* Subscribed first, so no event of the migration can pass unseen. */
	r = ctlconn_call(c, 1, "subscribe", NULL, err);
	if (!r)
		return -1;
	json_decref(r);
	json_object_set_new(args, "name", json_string(name));
	r = ctlconn_call(c, 2, "migrate", args, err);
	json_object_del(args, "name");
	if (!r)
		return -1;
	if (error_desc(r))
		rc = hv_fail(err, EINVAL, "%s", error_desc(r));
	json_decref(r);
	return rc;
}

static const char *admit_sock;
static int admit_console = -1;

static int admit(struct vm *vm, struct hv_error *err)
{
	struct ctlconn c;
	const char *console;
	json_t *args, *r;
	int rc = -1, fd;

	if (hvdconn_open(&c, admit_sock, 10000, err) < 0) {
		char why[HV_ERROR_MSG];

		snprintf(why, sizeof(why), "%s", err->msg);
		ctlconn_close(&c);
		return hv_fail(err, err->code, "hvd: %s", why);
	}
	args = json_pack("{s:s, s:I, s:i, s:s}", "name", vm->cfg.name, "memory",
	                 (json_int_t)vm->cfg.ram_size, "vcpus", (int)vm->cfg.nvcpus, "accel",
	                 vm->accel ? vm->accel->name : "emu");
	r = args ? ctlconn_call(&c, 1, "migrate-incoming", args, err) : NULL;
	json_decref(args);
	ctlconn_close(&c);
	if (!r)
		return args ? -1 : hv_fail(err, ENOMEM, "out of memory");
	if (error_desc(r)) {
		hv_fail(err, EEXIST, "%s: refused by hvd: %s", vm->cfg.name, error_desc(r));
		goto out;
	}
	console = json_string_value(json_object_get(json_object_get(r, "return"), "console"));
	if (console && admit_console >= 0) {
		fd = open(console, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			hv_fail(err, errno, "%s: %s", console, strerror(errno));
			goto out;
		}
		/* The UART writes to this descriptor number: it now means the domain's log. */
		if (dup2(fd, admit_console) < 0) {
			hv_fail(err, errno, "%s: %s", console, strerror(errno));
			close(fd);
			goto out;
		}
		close(fd);
	}
	rc = 0;
out:
	json_decref(r);
	return rc;
}

void hvm_admit_setup(const char *sock, int console_fd)
{
	admit_sock = sock;
	admit_console = console_fd;
	incoming_admit = admit;
}
