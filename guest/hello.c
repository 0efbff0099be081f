/*
 * hello.c - the smallest guest: one line on the console, exit code 0.
 *
 * Proves the PVH entry, the switch to 64-bit mode, the serial console and debug-exit.
 */
#include "rt/rt.h"

int main(void)
{
	printf("hello from hv guest\n");
	return EXIT_OK;
}
