/*
 * state_io.c - the tagged-field codec behind every device's save/load function.
 *
 * A field on the wire is (u8 name length 1..63, name, u32 size, value), little-endian,
 * unpadded. Loading validates the framing of the whole body once, then finds each field
 * by name starting at the cursor: writers emit fields in the order the state function
 * asks for them, so a lookup is normally one comparison, and a reordered or extended body
 * still loads.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv/state_io.h"

void state_io_save_init(struct state_io *io, const char *what, struct hv_error *err)
{
	memset(io, 0, sizeof(*io));
	io->what = what;
	io->err = err;
}

void state_io_free(struct state_io *io)
{
	free(io->buf);
	io->buf = NULL;
	io->len = io->cap = 0;
}

int state_io_fail(struct state_io *io, const char *fmt, ...)
{
	char msg[HV_ERROR_MSG];
	va_list ap;

	if (io->failed)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	io->failed = -1;
	return hv_fail(io->err, EINVAL, "%s: %s", io->what ? io->what : "state", msg);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Field at @off: name at *name (length *nlen), value at *val (size *size); next offset. */
static size_t field_at(const struct state_io *io, size_t off, const uint8_t **name, size_t *nlen,
                       const uint8_t **val, uint32_t *size)
{
	*nlen = io->in[off];
	*name = io->in + off + 1;
	*size = get32(io->in + off + 1 + *nlen);
	*val = io->in + off + 5 + *nlen;
	return off + 5 + *nlen + *size;
}

int state_io_load_init(struct state_io *io, const char *what, const void *body, size_t len,
                       struct hv_error *err)
{
	size_t off = 0, nfields = 0;

	memset(io, 0, sizeof(*io));
	io->loading = true;
	io->what = what;
	io->err = err;
	io->in = body;
	io->in_len = len;
	while (off < len) {
		size_t nlen = io->in[off];
		uint32_t size;

		if (++nfields > STATE_FIELDS_MAX)
			return state_io_fail(io, "more than %d fields", STATE_FIELDS_MAX);
		if (nlen < 1 || nlen > STATE_NAME_MAX)
			return state_io_fail(io, "field at byte %zu: bad name length %zu", off,
			                     nlen);
		if (len - off < 5 + nlen)
			return state_io_fail(io, "field at byte %zu: truncated header", off);
		for (size_t i = 0; i < nlen; i++)
			if (io->in[off + 1 + i] < 0x21 || io->in[off + 1 + i] > 0x7e)
				return state_io_fail(io, "field at byte %zu: bad name", off);
		size = get32(io->in + off + 1 + nlen);
		if (size > len - off - 5 - nlen)
			return state_io_fail(io, "field '%.*s' at byte %zu: size %u past the end",
			                     (int)nlen, (const char *)io->in + off + 1, off, size);
		/* Reject duplicates: which one a loader would take must not be ambiguous. */
		for (size_t o = 0; o < off;) {
			const uint8_t *n, *v;
			size_t l;
			uint32_t s;
			size_t next = field_at(io, o, &n, &l, &v, &s);
			if (l == nlen && !memcmp(n, io->in + off + 1, nlen))
				return state_io_fail(io, "field '%.*s' appears twice", (int)nlen,
				                     (const char *)n);
			o = next;
		}
		off += 5 + nlen + size;
	}
	return 0;
}

static bool find(struct state_io *io, const char *name, const uint8_t **val, uint32_t *size)
{
	size_t want = strlen(name);

	for (int pass = 0; pass < 2; pass++) {
		size_t off = pass ? 0 : io->cursor, end = pass ? io->cursor : io->in_len;
		while (off < end) {
			const uint8_t *n;
			size_t nlen;
			size_t next = field_at(io, off, &n, &nlen, val, size);
			if (nlen == want && !memcmp(n, name, want)) {
				io->cursor = next < io->in_len ? next : 0;
				return true;
			}
			off = next;
		}
	}
	return false;
}

bool state_has(struct state_io *io, const char *name)
{
	const uint8_t *v;
	uint32_t s;
	size_t cur = io->cursor;
	bool r;

	if (!io->loading || io->failed)
		return false;
	r = find(io, name, &v, &s);
	io->cursor = cur;
	return r;
}

static int reserve(struct state_io *io, size_t more)
{
	size_t cap = io->cap ? io->cap : 1024;
	uint8_t *p;

	if (io->len + more <= io->cap)
		return 0;
	if (io->len + more > STATE_BODY_MAX)
		return state_io_fail(io, "state over %u bytes", STATE_BODY_MAX);
	while (cap < io->len + more)
		cap *= 2;
	p = realloc(io->buf, cap);
	if (!p)
		return state_io_fail(io, "out of memory");
	io->buf = p;
	io->cap = cap;
	return 0;
}

/* Save: append one field whose value is @size bytes at @p (already little-endian). */
static void put(struct state_io *io, const char *name, const void *p, size_t size)
{
	size_t nlen = strlen(name);
	uint8_t *o;

	if (nlen < 1 || nlen > STATE_NAME_MAX) {
		state_io_fail(io, "bad field name '%s'", name);
		return;
	}
	if (size > STATE_BODY_MAX || reserve(io, 5 + nlen + size) < 0)
		return;
	o = io->buf + io->len;
	o[0] = (uint8_t)nlen;
	memcpy(o + 1, name, nlen);
	for (int i = 0; i < 4; i++)
		o[1 + nlen + i] = (uint8_t)(size >> (8 * i));
	if (size)
		memcpy(o + 5 + nlen, p, size);
	io->len += 5 + nlen + size;
}

/* Load: the value of field @name, which must be exactly @size bytes. NULL on failure. */
static const uint8_t *get(struct state_io *io, const char *name, size_t size)
{
	const uint8_t *v;
	uint32_t s;

	if (!find(io, name, &v, &s)) {
		state_io_fail(io, "field '%s' missing", name);
		return NULL;
	}
	if (s != size) {
		state_io_fail(io, "field '%s' is %u bytes, expected %zu", name, s, size);
		return NULL;
	}
	return v;
}

static void uint_field(struct state_io *io, const char *name, uint64_t *v, size_t size)
{
	uint8_t b[8];

	if (io->failed)
		return;
	if (io->loading) {
		const uint8_t *p = get(io, name, size);
		if (!p)
			return;
		*v = 0;
		for (size_t i = 0; i < size; i++)
			*v |= (uint64_t)p[i] << (8 * i);
		return;
	}
	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)(*v >> (8 * i));
	put(io, name, b, size);
}

void state_u8(struct state_io *io, const char *name, uint8_t *v)
{
	uint64_t x = *v;
	uint_field(io, name, &x, 1);
	if (!io->failed)
		*v = (uint8_t)x;
}

void state_u16(struct state_io *io, const char *name, uint16_t *v)
{
	uint64_t x = *v;
	uint_field(io, name, &x, 2);
	if (!io->failed)
		*v = (uint16_t)x;
}

void state_u32(struct state_io *io, const char *name, uint32_t *v)
{
	uint64_t x = *v;
	uint_field(io, name, &x, 4);
	if (!io->failed)
		*v = (uint32_t)x;
}

void state_u64(struct state_io *io, const char *name, uint64_t *v)
{
	uint_field(io, name, v, 8);
}

void state_bytes(struct state_io *io, const char *name, void *p, size_t len)
{
	const uint8_t *v;

	if (io->failed)
		return;
	if (!io->loading) {
		put(io, name, p, len);
		return;
	}
	v = get(io, name, len);
	if (v && len)
		memcpy(p, v, len);
}

void state_str(struct state_io *io, const char *name, char *buf, size_t cap)
{
	const uint8_t *v;
	uint32_t s;

	if (io->failed)
		return;
	if (!io->loading) {
		put(io, name, buf, strnlen(buf, cap ? cap - 1 : 0));
		return;
	}
	if (!find(io, name, &v, &s)) {
		state_io_fail(io, "field '%s' missing", name);
		return;
	}
	if (s >= cap) {
		state_io_fail(io, "field '%s': %u bytes, at most %zu", name, s, cap - 1);
		return;
	}
	if (memchr(v, 0, s)) {
		state_io_fail(io, "field '%s': string holds a NUL byte", name);
		return;
	}
	memcpy(buf, v, s);
	buf[s] = '\0';
}
