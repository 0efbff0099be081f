/*
 * hvctl_store.h - `hvctl store DIR SUBCOMMAND`: list, show, verify, delete, prune, gc and
 * rebuild-index on a checkpoint store, without any VM (docs/hvctl.1.md, STORE).
 */
#ifndef HV_TOOLSTACK_HVCTL_STORE_H
#define HV_TOOLSTACK_HVCTL_STORE_H

/*
 * hvctl_store_main - run one store subcommand; @argv[0] is "store", @argv[1] the store
 * directory, @argv[2] the subcommand and its options. Prints results on stdout and one
 * line per error on stderr. Returns the exit status: 0 done, 1 failed (or verify found
 * problems, or a lock stayed busy), 2 bad arguments.
 */
int hvctl_store_main(int argc, char **argv);

#endif
