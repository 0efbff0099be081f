/*
 * hvctl_console.h - `hvctl console NAME`: attach the terminal to a domain's serial
 * console (docs/hvctl.1.md), through the console socket its hv process serves.
 */
#ifndef HV_TOOLSTACK_HVCTL_CONSOLE_H
#define HV_TOOLSTACK_HVCTL_CONSOLE_H

/*
 * hvctl_console - ask hvd at @sock where domain @name's console socket is, attach to it
 * and copy stdin to the guest and the guest's output to stdout until Ctrl-] (0x1d) on
 * stdin, the end of stdin (once the output has been quiet for a moment), a signal, or the
 * VM's end. A terminal on stdin is put in raw mode and restored on every way out.
 * Returns hvctl's exit status: 0 detached or the VM ended, 1 the domain is unknown or
 * not running or the socket failed, 3 hvd could not be reached, 128+N after signal N.
 */
int hvctl_console(const char *sock, const char *name);

#endif
