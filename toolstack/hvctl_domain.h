/*
 * hvctl_domain.h - hvctl's domain commands: the ones that go to hvd by domain name
 * (docs/hvctl.1.md, "Domain commands"), beside the VM-socket form in hvctl.c.
 */
#ifndef HV_TOOLSTACK_HVCTL_DOMAIN_H
#define HV_TOOLSTACK_HVCTL_DOMAIN_H

#include <stdbool.h>

/*
 * hvctl_domain_wanted - whether hvctl's arguments @argv name a domain command: they
 * start with --socket, or their first word is a domain command that is not also a socket
 * in the working directory, so `hvctl SOCK COMMAND` keeps its meaning.
 */
bool hvctl_domain_wanted(int argc, char **argv);

/* hvctl_domain_main - run the domain command of @argv; returns hvctl's exit status. */
int hvctl_domain_main(int argc, char **argv);

#endif
