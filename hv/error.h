/*
 * error.h - the error object every fallible libhv call fills in.
 *
 * Libraries never print or exit: they return -1 (or NULL) and leave a one-line,
 * human-readable message naming the file, field or peer at fault in a struct hv_error.
 * Programs decide what to do with it.
 */
#ifndef HV_ERROR_H
#define HV_ERROR_H

#include <stddef.h>

#define HV_ERROR_MSG 512

struct hv_error {
	int code;		  /* errno-style value, 0 when no error */
	char msg[HV_ERROR_MSG];	  /* one line, no trailing newline */
};

/*
 * hv_fail - record an error in @err (which may be NULL) and return -1.
 * @code is an errno value; the message is formatted like printf.
 */
int hv_fail(struct hv_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* hv_error_clear - reset @err to "no error". */
void hv_error_clear(struct hv_error *err);

#endif
