/*
 * error.c - filling in struct hv_error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hv/error.h"

int hv_fail(struct hv_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void hv_error_clear(struct hv_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
