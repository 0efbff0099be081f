/*
 * pages.c - PAGE_DATA batches: encode guest pages for a stream, decode them into RAM.
 *
 * Zero pages cost 8 bytes of entry (and nothing in a save file, whose writer skips them:
 * a restored VM starts with zeroed RAM). Each other page is compressed on its own with
 * zstd, so a batch never needs more than one page of scratch and a reader can check each
 * page's length independently.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "migrate/pages.h"

#define PAGE   4096u
#define ZBOUND ZSTD_COMPRESSBOUND(PAGE)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

int page_writer_init(struct page_writer *w, struct stream *s, int level, struct hv_error *err)
{
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->level = level;
	w->dcap = (size_t)PAGE_BATCH_MAX * (4 + ZBOUND);
	w->data = malloc(w->dcap);
	if (!w->data)
		return hv_fail(err, ENOMEM, "PAGE_DATA: out of memory");
	if (level != 0) {
		w->cctx = ZSTD_createCCtx();
		if (!w->cctx) {
			page_writer_free(w);
			return hv_fail(err, ENOMEM, "PAGE_DATA: cannot create a zstd context");
		}
		ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 0);
		ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
	}
	return 0;
}

void page_writer_free(struct page_writer *w)
{
	ZSTD_freeCCtx(w->cctx);
	w->cctx = NULL;
	free(w->data);
	w->data = NULL;
}

int page_flush(struct page_writer *w, struct hv_error *err)
{
	uint8_t hdr[8], ent[PAGE_BATCH_MAX * 8];
	const void *parts[3] = {hdr, ent, w->data};
	size_t lens[3] = {8, (size_t)w->count * 8, w->dlen};

	if (!w->count)
		return 0;
	put32(hdr, w->count);
	put32(hdr + 4, 0);
	for (uint32_t i = 0; i < w->count; i++) {
		put32(ent + 8 * i, (uint32_t)w->entry[i]);
		put32(ent + 8 * i + 4, (uint32_t)(w->entry[i] >> 32));
	}
	w->count = 0;
	w->dlen = 0;
	return stream_write_record(w->s, REC_PAGE_DATA, parts, lens, 3, err);
}

static bool all_zero(const void *p)
{
	const uint64_t *q = p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

int page_add(struct page_writer *w, uint64_t gfn, const void *page, struct hv_error *err)
{
	uint64_t enc = PAGE_ENC_RAW;

	if (gfn >> PAGE_FRAME_BITS)
		return hv_fail(err, EINVAL, "PAGE_DATA: frame %llu too large",
		               (unsigned long long)gfn);
	if (all_zero(page)) {
		enc = PAGE_ENC_ZERO;
		w->pages_zero++;
	} else {
		size_t n = 0;
		if (w->cctx) {
			n = ZSTD_compress2(w->cctx, w->data + w->dlen + 4, ZBOUND, page, PAGE);
			if (ZSTD_isError(n))
				n = 0;
		}
		if (n && n + 4 < PAGE) {
			put32(w->data + w->dlen, (uint32_t)n);
			w->dlen += 4 + n;
			enc = PAGE_ENC_ZSTD;
			w->pages_zstd++;
		} else {
			memcpy(w->data + w->dlen, page, PAGE);
			w->dlen += PAGE;
			w->pages_raw++;
		}
	}
	w->entry[w->count++] = gfn | enc << PAGE_ENC_SHIFT;
	if (w->count == PAGE_BATCH_MAX)
		return page_flush(w, err);
	return 0;
}

int pages_save_nonzero(struct page_writer *w, struct guest_mem *m, struct hv_error *err)
{
	for (int i = 0; i < m->nslots; i++) {
		struct mem_slot *sl = &m->slot[i];
		off_t pos = 0;

		while ((uint64_t)pos < sl->size) {
			off_t data = lseek(sl->fd, pos, SEEK_DATA), hole;
			if (data < 0)
				break; /* ENXIO: nothing but holes from here */
			hole = lseek(sl->fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > sl->size)
				hole = (off_t)sl->size;
			for (uint64_t off = (uint64_t)data & ~(uint64_t)(PAGE - 1);
			     off < (uint64_t)hole; off += PAGE) {
				const uint8_t *p = sl->hva + off;
				if (all_zero(p))
					continue;
				if (page_add(w, (sl->gpa + off) >> 12, p, err) < 0)
					return -1;
			}
			pos = hole;
		}
	}
	return page_flush(w, err);
}

int pages_load(struct guest_mem *m, const struct record *rec, void *dctx, const char *name,
               struct hv_error *err)
{
	const uint8_t *b = rec->body;
	unsigned long long off = (unsigned long long)rec->off;
	uint8_t tmp[PAGE];
	uint32_t count;
	size_t pos;

	if (rec->len < 8)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: %u-byte body, "
		               "shorter than its header",
		               name, off, rec->len);
	count = get32(b);
	if (count < 1 || count > PAGE_BATCH_MAX)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: count %u, must "
		               "be 1..%d",
		               name, off, count, PAGE_BATCH_MAX);
	if (get32(b + 4))
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: reserved field "
		               "not zero",
		               name, off);
	if ((size_t)rec->len < 8 + (size_t)count * 8)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: %u entries do "
		               "not fit in %u bytes",
		               name, off, count, rec->len);
	pos = 8 + (size_t)count * 8;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = get64(b + 8 + 8 * (size_t)i);
		uint64_t gfn = e & ((1ULL << PAGE_FRAME_BITS) - 1);
		unsigned enc = (unsigned)(e >> PAGE_ENC_SHIFT);
		uint8_t *dst;

		if ((e >> PAGE_FRAME_BITS) & 0xff)
			return hv_fail(err, EINVAL,
			               "%s: record PAGE_DATA at offset %llu: page %u: "
			               "reserved entry bits set",
			               name, off, i);
		if (!gpa_is_ram(m, gfn << 12, PAGE))
			return hv_fail(err, ERANGE,
			               "%s: record PAGE_DATA at offset %llu: page %u: "
			               "frame 0x%llx outside guest RAM",
			               name, off, i, (unsigned long long)gfn);
		dst = mem_hva(m, gfn << 12, PAGE);
		if (enc != PAGE_ENC_ZERO) {
			/* Commit the page's 2 MiB chunk in one call, not a host fault a page. */
			struct mem_slot *sl = mem_slot_find(m, gfn << 12);
			mem_populate(sl, (gfn << 12) - sl->gpa);
		}
		switch (enc) {
		case PAGE_ENC_ZERO: memset(dst, 0, PAGE); break;
		case PAGE_ENC_RAW:
			if (rec->len - pos < PAGE)
				goto short_body;
			memcpy(dst, b + pos, PAGE);
			pos += PAGE;
			break;
		case PAGE_ENC_ZSTD: {
			uint32_t n;
			size_t r;
			if (rec->len - pos < 4)
				goto short_body;
			n = get32(b + pos);
			if (n > ZBOUND || rec->len - pos - 4 < n)
				return hv_fail(err, EINVAL,
				               "%s: record PAGE_DATA at offset %llu: "
				               "page %u: compressed length %u invalid",
				               name, off, i, n);
			r = ZSTD_decompressDCtx(dctx, tmp, PAGE, b + pos + 4, n);
			if (ZSTD_isError(r) || r != PAGE)
				return hv_fail(err, EINVAL,
				               "%s: record PAGE_DATA at offset %llu: "
				               "page %u: zstd data does not decode to one page%s%s",
				               name, off, i, ZSTD_isError(r) ? ": " : "",
				               ZSTD_isError(r) ? ZSTD_getErrorName(r) : "");
			memcpy(dst, tmp, PAGE);
			pos += 4 + n;
			break;
		}
		default:
			return hv_fail(err, EINVAL,
			               "%s: record PAGE_DATA at offset %llu: page %u: "
			               "unsupported encoding %u",
			               name, off, i, enc);
		}
	}
	if (pos != rec->len)
		return hv_fail(err, EINVAL,
		               "%s: record PAGE_DATA at offset %llu: %zu bytes left "
		               "over after %u pages",
		               name, off, (size_t)rec->len - pos, count);
	return 0;
short_body:
	return hv_fail(err, EINVAL,
	               "%s: record PAGE_DATA at offset %llu: page data runs past "
	               "the end of the record",
	               name, off);
}
