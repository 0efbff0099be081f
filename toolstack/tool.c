/*
 * tool.c - what the command-line programs say and do alike (tool.h).
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "toolstack/tool.h"

static const char *tool_prog = "hv";

void tool_init(const char *prog)
{
	tool_prog = prog;
}

int tool_fail(int status, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", tool_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

int tool_absolute(const char *path, char *out, size_t cap)
{
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return snprintf(out, cap, "%s", path) < (int)cap ? 0 : -1;
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	return snprintf(out, cap, "%s/%s", cwd, path) < (int)cap ? 0 : -1;
}

int tool_self_dir(char *out, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", out, cap - 1);

	if (n <= 0)
		return -1;
	out[n] = '\0';
	*strrchr(out, '/') = '\0';
	return 0;
}

void tool_size(uint64_t b, bool words, char *out, size_t cap)
{
	static const char *const units[][2] = {{"G", " GiB"}, {"M", " MiB"}, {"K", NULL}};

	for (int i = 0; i < 3; i++) {
		int shift = 30 - 10 * i;

		if (!units[i][words] || !b || b % (1ULL << shift))
			continue;
		snprintf(out, cap, "%llu%s", (unsigned long long)(b >> shift), units[i][words]);
		return;
	}
	snprintf(out, cap, "%llu%s", (unsigned long long)b, words ? " bytes" : "");
}
