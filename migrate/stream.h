/*
 * stream.h - the state stream's framing: header, typed records, checksums, limits.
 *
 * One format for save files, migration streams and checkpoints (docs/state-format.md):
 *
 *   header  : magic "HVSTATE\n", u32 version, u32 byte-order mark 0x01020304,
 *             u32 page size, u32 CRC-32C of the 20 bytes before it          (24 bytes)
 *   record  : u32 type, u32 length, u32 CRC-32C (type, length, body), u32 reserved 0,
 *             body (length bytes), zero padding to a multiple of 8
 *
 * All integers little-endian. Bit 31 of a type marks a record a reader may skip; an
 * unknown record without it fails the read. A reader treats the stream as hostile: it
 * checks every length against STREAM_MAX_RECORD before allocating or reading, verifies
 * the CRC before handing a body out, and names the record and its offset in every error.
 * Streaming in both directions: memory use is bounded by one record.
 */
#ifndef HV_MIGRATE_STREAM_H
#define HV_MIGRATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/error.h"

#define STREAM_MAGIC      "HVSTATE\n"
#define STREAM_VERSION    1
#define STREAM_BOM        0x01020304u
#define STREAM_HDR_SIZE   24
#define STREAM_REC_HDR    16
#define STREAM_MAX_RECORD (2u << 20) /* body bytes; PAGE_DATA batches stay well below */

#define REC_OPTIONAL 0x80000000u

/* Record types (docs/state-format.md). */
enum stream_rec {
	REC_END = 0,
	REC_VM_CONFIG = 1,
	REC_VCPU = 2,
	REC_DEVICE = 3,
	REC_PAGE_DATA = 4,
	REC_CHECKPOINT = 5,
	/* Live migration (migrate/mig_proto.h); never in files. */
	REC_MIG_HELLO = 16,
	REC_MIG_CHANNEL = 17,
	REC_MIG_ACCEPT = 18,
	REC_MIG_SWITCHOVER = 19,
	REC_MIG_READY = 20,
	REC_MIG_GO = 21,
	REC_MIG_RUNNING = 22,
	REC_MIG_ERROR = 23,
	REC_MIG_ROUND = REC_OPTIONAL | 16,  /* progress, for the destination's display */
	REC_MIG_SYNC = REC_OPTIONAL | 17,   /* page channel: the round's pages end here */
	REC_MIG_SYNCED = REC_OPTIONAL | 18, /* destination: every channel applied a round */
	REC_SOURCE_INFO = REC_OPTIONAL | 1, /* who wrote the stream; informational */
};

/*
 * Where a stream's bytes go when it is not a plain fd (a migration channel: TLS,
 * io_uring). write: all @n bytes or -1 with @err. read: exactly @n bytes; or -1
 * with *@eof set when the input ended first (the stream reports a truncated record);
 * or -1 with @err on an error.
 */
struct stream_io {
	int (*write)(void *ctx, const void *p, size_t n, struct hv_error *err);
	int (*read)(void *ctx, void *p, size_t n, bool *eof, struct hv_error *err);
};

struct stream {
	int fd;                     /* not owned; -1 when @io carries the bytes */
	const struct stream_io *io; /* NULL: read(2)/write(2) on @fd */
	void *io_ctx;
	bool writing;
	uint64_t off;     /* stream offset of the next byte to read or write */
	const char *name; /* file or peer, for messages (not owned) */
	uint8_t *buf;     /* read: the current body; write: pending output */
	size_t cap, len;
	uint32_t version; /* read: the header's format version */
};

/* One record as read: valid until the next stream_read or stream_close. */
struct record {
	uint32_t type;
	uint32_t len;
	const uint8_t *body;
	uint64_t off; /* stream offset of the record header */
};

/* stream_record_name - "PAGE_DATA", ..., or "type 0x..." (static buffer per thread). */
const char *stream_record_name(uint32_t type);

/*
 * stream_open_write - start a stream on @fd (a file or socket the caller owns): writes
 * the header (buffered). @name is used in messages. -1 with @err on failure.
 */
int stream_open_write(struct stream *s, int fd, const char *name, struct hv_error *err);

/*
 * stream_write_record - append one record whose body is the concatenation of @n parts
 * (@parts[i], @lens[i]); the total must not exceed STREAM_MAX_RECORD.
 */
int stream_write_record(struct stream *s, uint32_t type, const void *const *parts,
                        const size_t *lens, int n, struct hv_error *err);

/* stream_open_write_io, stream_open_read_io - as the fd versions, with bytes through @io. */
int stream_open_write_io(struct stream *s, const struct stream_io *io, void *ctx, const char *name,
                         struct hv_error *err);
int stream_open_read_io(struct stream *s, const struct stream_io *io, void *ctx, const char *name,
                        struct hv_error *err);

/*
 * A stream kept in memory (a state blob, a test): writes append to @p, grown with
 * realloc, up to @max bytes (0: no bound; past it a write fails with EFBIG); reads take
 * from @rpos and see end of input at @len. Zero-initialise, optionally set @max or fill
 * @p/@len to read; release @p with stream_mem_free.
 */
struct stream_mem {
	uint8_t *p;
	size_t len, cap, rpos, max;
};
extern const struct stream_io stream_mem_io;
void stream_mem_free(struct stream_mem *m);

/* stream_write_end - write END and flush everything to the fd (no fsync). */
int stream_write_end(struct stream *s, struct hv_error *err);

/* stream_flush - write buffered records to the fd (stream_write_end does this itself). */
int stream_flush(struct stream *s, struct hv_error *err);

/* stream_open_read - read and check the header from @fd. */
int stream_open_read(struct stream *s, int fd, const char *name, struct hv_error *err);

/*
 * stream_read - the next record into @rec. Returns 1 for a record, 0 at END, -1 on error
 * (end of input without END, bad length, CRC mismatch, non-zero padding or reserved
 * field, I/O error) with @err naming the record type and offset.
 */
int stream_read(struct stream *s, struct record *rec, struct hv_error *err);

/* stream_close - free buffers (does not close the fd). */
void stream_close(struct stream *s);

#endif
