/*
 * stream.c - reading and writing the state stream's framing.
 *
 * The writer coalesces records into a 1 MiB buffer (most vCPU and device records are a
 * few KiB) and writes through when a body would not fit. The reader reads a record
 * header, validates the length before touching the body, reads body and padding into a
 * buffer sized by that validated length, and only then checks the CRC: a body is never
 * handed out unverified.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/crc32c.h"
#include "migrate/stream.h"

#define WBUF_SIZE  (1u << 20)
#define DIRECT_MIN (64u << 10) /* stream_io writes at least this large bypass the buffer */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

const char *stream_record_name(uint32_t type)
{
	static __thread char buf[32];

	switch (type) {
	case REC_END: return "END";
	case REC_VM_CONFIG: return "VM_CONFIG";
	case REC_VCPU: return "VCPU";
	case REC_DEVICE: return "DEVICE";
	case REC_PAGE_DATA: return "PAGE_DATA";
	case REC_CHECKPOINT: return "CHECKPOINT";
	case REC_SOURCE_INFO: return "SOURCE_INFO";
	case REC_MIG_HELLO: return "MIG_HELLO";
	case REC_MIG_CHANNEL: return "MIG_CHANNEL";
	case REC_MIG_ACCEPT: return "MIG_ACCEPT";
	case REC_MIG_SWITCHOVER: return "MIG_SWITCHOVER";
	case REC_MIG_READY: return "MIG_READY";
	case REC_MIG_GO: return "MIG_GO";
	case REC_MIG_RUNNING: return "MIG_RUNNING";
	case REC_MIG_ERROR: return "MIG_ERROR";
	case REC_MIG_ROUND: return "MIG_ROUND";
	case REC_MIG_SYNC: return "MIG_SYNC";
	case REC_MIG_SYNCED: return "MIG_SYNCED";
	}
	snprintf(buf, sizeof(buf), "type 0x%08x", type);
	return buf;
}

static int write_all(struct stream *s, const void *p, size_t n, struct hv_error *err)
{
	const uint8_t *b = p;

	if (s->io)
		return s->io->write(s->io_ctx, p, n, err);
	while (n) {
		ssize_t w = write(s->fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return hv_fail(err, errno, "%s: write at offset %llu: %s", s->name,
			               (unsigned long long)s->off, strerror(errno));
		if (w == 0)
			return hv_fail(err, EIO, "%s: write returned 0", s->name);
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int flush(struct stream *s, struct hv_error *err)
{
	int rc = write_all(s, s->buf, s->len, err);

	s->len = 0;
	return rc;
}

/* Buffered output; large pieces go straight through after a flush. */
static int out(struct stream *s, const void *p, size_t n, struct hv_error *err)
{
	/* Large pieces (a batch of raw pages) skip the buffer: one copy fewer. */
	bool direct = n > s->cap || (s->io && n >= DIRECT_MIN);

	if ((s->len + n > s->cap || direct) && s->len && flush(s, err) < 0)
		return -1;
	if (direct) {
		if (write_all(s, p, n, err) < 0)
			return -1;
	} else {
		memcpy(s->buf + s->len, p, n);
		s->len += n;
	}
	s->off += n;
	return 0;
}

static int open_write(struct stream *s, const char *name, struct hv_error *err)
{
	uint8_t h[STREAM_HDR_SIZE];

	s->name = name;
	s->writing = true;
	s->buf = malloc(WBUF_SIZE);
	if (!s->buf)
		return hv_fail(err, ENOMEM, "%s: out of memory", name);
	s->cap = WBUF_SIZE;
	memcpy(h, STREAM_MAGIC, 8);
	put32(h + 8, STREAM_VERSION);
	put32(h + 12, STREAM_BOM);
	put32(h + 16, 4096);
	put32(h + 20, crc32c(0, h, 20));
	return out(s, h, sizeof(h), err);
}

int stream_open_write(struct stream *s, int fd, const char *name, struct hv_error *err)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	return open_write(s, name, err);
}

int stream_open_write_io(struct stream *s, const struct stream_io *io, void *ctx, const char *name,
                         struct hv_error *err)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->io = io;
	s->io_ctx = ctx;
	return open_write(s, name, err);
}

int stream_write_record(struct stream *s, uint32_t type, const void *const *parts,
                        const size_t *lens, int n, struct hv_error *err)
{
	static const uint8_t zeros[8];
	uint8_t h[STREAM_REC_HDR];
	size_t total = 0;
	uint32_t crc;

	for (int i = 0; i < n; i++)
		total += lens[i];
	if (total > STREAM_MAX_RECORD)
		return hv_fail(err, EINVAL, "%s: record %s: %zu bytes, over the %u limit", s->name,
		               stream_record_name(type), total, STREAM_MAX_RECORD);
	put32(h, type);
	put32(h + 4, (uint32_t)total);
	crc = crc32c(0, h, 8);
	for (int i = 0; i < n; i++)
		crc = crc32c(crc, parts[i], lens[i]);
	put32(h + 8, crc);
	put32(h + 12, 0);
	if (out(s, h, sizeof(h), err) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (lens[i] && out(s, parts[i], lens[i], err) < 0)
			return -1;
	return out(s, zeros, (8 - total % 8) % 8, err);
}

int stream_write_end(struct stream *s, struct hv_error *err)
{
	if (stream_write_record(s, REC_END, NULL, NULL, 0, err) < 0)
		return -1;
	return flush(s, err);
}

int stream_flush(struct stream *s, struct hv_error *err)
{
	return flush(s, err);
}

/* Read exactly @n bytes. 0, or -1: @eof set when the input ended first. */
static int read_all(struct stream *s, void *p, size_t n, bool *eof, struct hv_error *err)
{
	uint8_t *b = p;

	*eof = false;
	if (s->io) {
		if (s->io->read(s->io_ctx, p, n, eof, err) < 0)
			return -1;
		s->off += n;
		return 0;
	}
	while (n) {
		ssize_t r = read(s->fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return hv_fail(err, errno, "%s: read at offset %llu: %s", s->name,
			               (unsigned long long)s->off, strerror(errno));
		if (r == 0) {
			*eof = true;
			return -1;
		}
		b += r;
		n -= (size_t)r;
		s->off += (uint64_t)r;
	}
	return 0;
}

static int open_read(struct stream *s, const char *name, struct hv_error *err)
{
	uint8_t h[STREAM_HDR_SIZE];
	bool eof;

	s->name = name;
	if (read_all(s, h, sizeof(h), &eof, err) < 0)
		return eof ? hv_fail(err, EINVAL, "%s: header at offset 0: truncated (%llu bytes)",
		                     name, (unsigned long long)s->off)
		           : -1;
	if (memcmp(h, STREAM_MAGIC, 8))
		return hv_fail(err, EINVAL,
		               "%s: header at offset 0: not an hv state stream "
		               "(bad magic)",
		               name);
	if (get32(h + 20) != crc32c(0, h, 20))
		return hv_fail(err, EINVAL, "%s: header at offset 0: CRC mismatch", name);
	if (get32(h + 12) != STREAM_BOM)
		return hv_fail(err, EINVAL,
		               "%s: header at offset 12: byte-order mark 0x%08x, "
		               "expected 0x%08x (little-endian)",
		               name, get32(h + 12), STREAM_BOM);
	s->version = get32(h + 8);
	if (s->version != STREAM_VERSION)
		return hv_fail(err, EINVAL,
		               "%s: header at offset 8: format version %u %s (this hv "
		               "reads version %u)",
		               name, s->version,
		               s->version > STREAM_VERSION ? "is newer than supported"
		                                           : "is unknown",
		               STREAM_VERSION);
	if (get32(h + 16) != 4096)
		return hv_fail(err, EINVAL, "%s: header at offset 16: page size %u, expected 4096",
		               name, get32(h + 16));
	return 0;
}

int stream_open_read(struct stream *s, int fd, const char *name, struct hv_error *err)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	return open_read(s, name, err);
}

int stream_open_read_io(struct stream *s, const struct stream_io *io, void *ctx, const char *name,
                        struct hv_error *err)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->io = io;
	s->io_ctx = ctx;
	return open_read(s, name, err);
}

int stream_read(struct stream *s, struct record *rec, struct hv_error *err)
{
	uint8_t h[STREAM_REC_HDR];
	uint64_t off = s->off;
	size_t padded;
	bool eof;

	if (read_all(s, h, sizeof(h), &eof, err) < 0) {
		if (!eof)
			return -1;
		if (s->off == off)
			return hv_fail(err, EINVAL, "%s: offset %llu: stream ends without END",
			               s->name, (unsigned long long)off);
		return hv_fail(err, EINVAL, "%s: record header at offset %llu: truncated", s->name,
		               (unsigned long long)off);
	}
	rec->type = get32(h);
	rec->len = get32(h + 4);
	rec->off = off;
	rec->body = NULL;
	if (rec->len > STREAM_MAX_RECORD)
		return hv_fail(err, EINVAL,
		               "%s: record %s at offset %llu: length %u over the "
		               "limit %u",
		               s->name, stream_record_name(rec->type), (unsigned long long)off,
		               rec->len, STREAM_MAX_RECORD);
	if (get32(h + 12))
		return hv_fail(err, EINVAL, "%s: record %s at offset %llu: reserved field not zero",
		               s->name, stream_record_name(rec->type), (unsigned long long)off);
	padded = ((size_t)rec->len + 7) & ~(size_t)7;
	if (padded > s->cap) {
		size_t cap = s->cap ? s->cap : 64 * 1024;
		uint8_t *b;
		while (cap < padded)
			cap *= 2;
		b = realloc(s->buf, cap);
		if (!b)
			return hv_fail(err, ENOMEM, "%s: record %s at offset %llu: out of memory",
			               s->name, stream_record_name(rec->type),
			               (unsigned long long)off);
		s->buf = b;
		s->cap = cap;
	}
	if (read_all(s, s->buf, padded, &eof, err) < 0)
		return eof ? hv_fail(err, EINVAL,
		                     "%s: record %s at offset %llu: truncated "
		                     "(%u-byte body, stream ends at %llu)",
		                     s->name, stream_record_name(rec->type),
		                     (unsigned long long)off, rec->len, (unsigned long long)s->off)
		           : -1;
	if (crc32c(crc32c(0, h, 8), s->buf, rec->len) != get32(h + 8))
		return hv_fail(err, EINVAL, "%s: record %s at offset %llu: CRC mismatch (corrupt)",
		               s->name, stream_record_name(rec->type), (unsigned long long)off);
	for (size_t i = rec->len; i < padded; i++)
		if (s->buf[i])
			return hv_fail(err, EINVAL,
			               "%s: record %s at offset %llu: padding not zero", s->name,
			               stream_record_name(rec->type), (unsigned long long)off);
	rec->body = s->buf;
	if (rec->type == REC_END) {
		if (rec->len)
			return hv_fail(err, EINVAL,
			               "%s: record END at offset %llu: %u-byte body, "
			               "expected none",
			               s->name, (unsigned long long)off, rec->len);
		return 0;
	}
	return 1;
}

static int mem_write(void *ctx, const void *p, size_t n, struct hv_error *err)
{
	struct stream_mem *m = ctx;

	if (m->max && (n > m->max || m->len > m->max - n))
		return hv_fail(err, EFBIG, "in-memory stream larger than %zu bytes", m->max);
	if (m->len + n > m->cap) {
		size_t cap = m->cap ? m->cap : 65536;
		uint8_t *q;

		while (cap < m->len + n)
			cap *= 2;
		q = realloc(m->p, cap);
		if (!q)
			return hv_fail(err, ENOMEM, "in-memory stream: out of memory");
		m->p = q;
		m->cap = cap;
	}
	memcpy(m->p + m->len, p, n);
	m->len += n;
	return 0;
}

static int mem_read(void *ctx, void *p, size_t n, bool *eof, struct hv_error *err)
{
	struct stream_mem *m = ctx;

	if (m->len - m->rpos < n) {
		*eof = true;
		return -1;
	}
	memcpy(p, m->p + m->rpos, n);
	m->rpos += n;
	return 0;
}

const struct stream_io stream_mem_io = {mem_write, mem_read};

void stream_mem_free(struct stream_mem *m)
{
	free(m->p);
	m->p = NULL;
	m->len = m->cap = m->rpos = 0;
}

void stream_close(struct stream *s)
{
	free(s->buf);
	s->buf = NULL;
	s->cap = s->len = 0;
}
