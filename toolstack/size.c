/*
 * size.c - parsing sizes given on command lines.
 *
 * Hand-written rather than strtoull(): strtoull accepts leading spaces and a minus sign
 * (wrapping "-1" to 2^64-1), which would turn typos into absurd memory sizes.
 */
#include <errno.h>

#include "toolstack/size.h"

int size_parse(const char *s, uint64_t *out, struct hv_error *err)
{
	const char *p = s;
	uint64_t v = 0;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return hv_fail(err, EINVAL,
		               "'%s': not a size (want digits with an optional K, M, G "
		               "or T suffix)",
		               s ? s : "");
	for (; *p >= '0' && *p <= '9'; p++) {
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
			return hv_fail(err, ERANGE, "'%s': size too large", s);
	}
	switch (*p) {
	case '\0': break;
	case 'k':
	case 'K': shift = 10; break;
	case 'm':
	case 'M': shift = 20; break;
	case 'g':
	case 'G': shift = 30; break;
	case 't':
	case 'T': shift = 40; break;
	default:
		return hv_fail(err, EINVAL, "'%s': unknown size suffix '%c' (use K, M, G or T)", s,
		               *p);
	}
	if (shift && p[1] != '\0')
		return hv_fail(err, EINVAL, "'%s': trailing characters after the size", s);
	if (shift && v > (UINT64_MAX >> shift))
		return hv_fail(err, ERANGE, "'%s': size too large", s);
	*out = v << shift;
	return 0;
}
