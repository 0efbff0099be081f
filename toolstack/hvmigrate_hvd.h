/*
 * hvmigrate_hvd.h - hvmigrate's side of hvd (docs/hvd-api.md): `send NAME` migrates a
 * domain through hvd's `migrate`, and `recv --hvd SOCK` (run by hvd --migrate-listen)
 * asks hvd to take each arriving VM as a domain before any of its pages come.
 */
#ifndef HV_TOOLSTACK_HVMIGRATE_HVD_H
#define HV_TOOLSTACK_HVMIGRATE_HVD_H

#include <stdbool.h>

#include <jansson.h>

#include "hv/error.h"
#include "toolstack/ctlconn.h"

/*
 * hvm_is_domain - whether `send`'s first argument @vm means a domain of hvd: it is no
 * socket on this host and is a valid domain name (a name never holds a '/').
 */
bool hvm_is_domain(const char *vm);

/*
 * hvm_hvd_migrate - connect @c to hvd at @sock, subscribe to its events and ask it to
 * migrate the domain @name with the VM migrate arguments @args (borrowed; "name" is
 * added). Returns 0 once hvd has started the migration (the MIGRATION events with
 * "name" @name follow on @c), or -1 with @err (hvd unreachable, no such domain, a state
 * that refuses it, the VM's refusal). Release @c with ctlconn_close() either way.
 */
int hvm_hvd_migrate(struct ctlconn *c, const char *sock, const char *name, json_t *args,
                    struct hv_error *err);

/*
 * hvm_admit_setup - make every migration this process receives ask hvd at @sock
 * (migrate-incoming) before taking the VM's pages, and send the VM's console to the log
 * file hvd names, replacing @console_fd. @sock is kept (not copied).
 */
void hvm_admit_setup(const char *sock, int console_fd);

#endif
