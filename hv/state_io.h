/*
 * state_io.h - tagged fields: one symmetric function saves and loads a device.
 *
 * A device's state function lists its fields once (STATE_FIELD(io, "ier", &r->ier), ...)
 * and runs in both directions: saving appends each field to a buffer as
 * (u8 name length, name, u32 size, value, little-endian); loading looks each field up by
 * name in an untrusted body, checks its size, and stores it. Fields in the body that the
 * loader does not ask for are ignored (a newer writer may add fields its readers can do
 * without; anything else bumps the device's version). A missing field, a size mismatch,
 * a malformed body or a failed STATE_CHECK makes the load fail with the field named.
 * hv/ knows nothing of streams: migrate/ frames these bodies into records.
 *
 * After the first error every further call is a no-op, so a state function need not test
 * each field; it ends with `return state_io_result(io);`.
 */
#ifndef HV_STATE_IO_H
#define HV_STATE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/error.h"

#define STATE_NAME_MAX   63         /* bytes in a field name */
#define STATE_BODY_MAX   (1u << 20) /* a saved body never grows beyond this */
#define STATE_FIELDS_MAX 1024       /* fields in one body (bounds a hostile body's cost) */

struct state_io {
	bool loading;
	int failed; /* 0, or -1 after the first error (err is set) */
	struct hv_error *err;
	const char *what; /* "uart", "vcpu 0": prefixes error messages */
	/* saving: a growing buffer owned by the state_io (state_io_free) */
	uint8_t *buf;
	size_t len, cap;
	/* loading: the caller's body, not copied, not owned */
	const uint8_t *in;
	size_t in_len;
	size_t cursor; /* where the next field is expected (fields usually come in order) */
};

/* state_io_save_init - start an empty save buffer. @what names the device in errors. */
void state_io_save_init(struct state_io *io, const char *what, struct hv_error *err);

/*
 * state_io_load_init - load from @body (@len bytes, untrusted, must outlive @io). Checks
 * the framing of every field up front, so a truncated or overlong body fails here with
 * the offset named.
 */
int state_io_load_init(struct state_io *io, const char *what, const void *body, size_t len,
                       struct hv_error *err);

/* state_io_free - release a save buffer (no-op for a load). */
void state_io_free(struct state_io *io);

/* state_io_result - 0 if every field so far went well, else -1 (err is set). */
static inline int state_io_result(const struct state_io *io)
{
	return io->failed;
}

/* state_io_fail - mark @io failed with a message prefixed by the device name; returns -1. */
int state_io_fail(struct state_io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One field each; @name is at most STATE_NAME_MAX bytes. */
void state_u8(struct state_io *io, const char *name, uint8_t *v);
void state_u16(struct state_io *io, const char *name, uint16_t *v);
void state_u32(struct state_io *io, const char *name, uint32_t *v);
void state_u64(struct state_io *io, const char *name, uint64_t *v);
/* A byte array of exactly @len bytes. */
void state_bytes(struct state_io *io, const char *name, void *p, size_t len);
/*
 * A NUL-terminated string in @buf of @cap bytes. Loading rejects one that does not fit or
 * holds a NUL byte.
 */
void state_str(struct state_io *io, const char *name, char *buf, size_t cap);
/* state_has - loading: whether the body has field @name (for optional fields). */
bool state_has(struct state_io *io, const char *name);

#define STATE_FIELD(io, name, p)                                                                   \
	_Generic((p), uint8_t *                                                                    \
	         : state_u8, uint16_t *                                                            \
	         : state_u16, uint32_t *                                                           \
	         : state_u32, uint64_t *                                                           \
	         : state_u64)(io, name, p)
#define STATE_BYTES(io, name, p, len) state_bytes(io, name, p, len)
#define STATE_STR(io, name, buf, cap) state_str(io, name, buf, cap)

/* STATE_CHECK - an invariant a loaded device must satisfy (a hostile stream may break it). */
#define STATE_CHECK(io, cond)                                                                      \
	do {                                                                                       \
		if ((io)->loading && !(io)->failed && !(cond))                                     \
			state_io_fail(io, "invariant violated: %s", #cond);                        \
	} while (0)

#endif
