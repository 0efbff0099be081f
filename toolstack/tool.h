/*
 * tool.h - what the command-line programs (hv's hvctl, hvd, hvmigrate) say and do alike.
 *
 * Every program reports a problem as one line, "PROG: message", on stderr and decides its
 * own exit status; tool_fail() is that line, with the program's name set once in main()
 * by tool_init(), so that code shared between programs (hvctl_store.c, hvctl_domain.c)
 * speaks with the voice of the program it is linked into. The path helpers exist because
 * these programs hand paths to daemons and VMs that run in another working directory.
 */
#ifndef HV_TOOLSTACK_TOOL_H
#define HV_TOOLSTACK_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* tool_init - name the program (@prog, a string that lives on) for tool_fail(). */
void tool_init(const char *prog);

/*
 * tool_fail - print "PROG: " and the message to stderr, with a newline, and return
 * @status, so that `return tool_fail(EXIT_USAGE, ...)` reads as what it does.
 */
int tool_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * tool_absolute - @path made absolute against the working directory, into @out (@cap
 * bytes). Not resolved: "..", links and missing files are kept as written. Returns 0, or
 * -1 when the working directory is unknown or the result would not fit.
 */
int tool_absolute(const char *path, char *out, size_t cap);

/*
 * tool_self_dir - the directory that holds the running executable, into @out (@cap
 * bytes): hv, hvd, hvctl and hvmigrate find each other there. Returns 0, or -1 with
 * errno set.
 */
int tool_self_dir(char *out, size_t cap);

/*
 * tool_size - @bytes in the largest binary unit that divides it exactly, into @out (@cap
 * bytes): "1 GiB", "256 MiB", "12345 bytes" with @words; "1G", "256M", "2052K", "123"
 * without (the short form of config files and tables).
 */
void tool_size(uint64_t bytes, bool words, char *out, size_t cap);

#endif
