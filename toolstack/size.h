/*
 * size.h - parsing sizes given on command lines ("128M", "2G", "4096").
 */
#ifndef HV_TOOLSTACK_SIZE_H
#define HV_TOOLSTACK_SIZE_H

#include <stdint.h>

#include "hv/error.h"

/*
 * size_parse - parse @s: decimal digits with an optional binary suffix K, M, G or T
 * (case-insensitive, powers of 1024; no suffix means bytes). Nothing else is accepted:
 * no sign, spaces, fractions or trailing text. Returns 0 with the byte count in *@out, or
 * -1 with @err quoting @s (EINVAL for bad syntax, ERANGE when it does not fit 64 bits).
 */
int size_parse(const char *s, uint64_t *out, struct hv_error *err);

#endif
