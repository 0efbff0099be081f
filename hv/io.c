/*
 * io.c - port-I/O and MMIO dispatch.
 *
 * Two small tables of ranges, filled before vCPUs start and only read afterwards, so the
 * vCPU threads dispatch without a lock. A linear scan is fine: a VM has a handful of
 * devices, and the accesses that matter for speed (RAM) never come here.
 */
#include <errno.h>

#include "hv/io.h"

static uint64_t ones(unsigned size)
{
	return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

static int io_register(struct io_range *tab, int *n, const char *space, uint64_t base, uint64_t len,
                       io_handler fn, void *opaque, const char *name, struct hv_error *err)
{
	if (!len || base + len - 1 < base)
		return hv_fail(err, EINVAL, "%s: %s range 0x%llx+0x%llx is empty or wraps", name,
		               space, (unsigned long long)base, (unsigned long long)len);
	if (*n == IO_MAX_RANGES)
		return hv_fail(err, ENOSPC, "%s: all %d %s ranges in use", name, IO_MAX_RANGES,
		               space);
	for (int i = 0; i < *n; i++) {
		const struct io_range *r = &tab[i];
		if (base <= r->base + r->len - 1 && r->base <= base + len - 1)
			return hv_fail(
			    err, EEXIST, "%s: %s 0x%llx-0x%llx overlaps %s (0x%llx-0x%llx)", name,
			    space, (unsigned long long)base, (unsigned long long)(base + len - 1),
			    r->name, (unsigned long long)r->base,
			    (unsigned long long)(r->base + r->len - 1));
	}
	tab[*n] = (struct io_range){base, len, fn, opaque, name};
	(*n)++;
	return 0;
}

int io_register_port(struct io_bus *b, uint16_t base, uint16_t len, io_handler fn, void *opaque,
                     const char *name, struct hv_error *err)
{
	if ((uint32_t)base + len > 0x10000)
		return hv_fail(err, EINVAL, "%s: ports 0x%x+0x%x run past 0xffff", name, base, len);
	return io_register(b->port, &b->nport, "ports", base, len, fn, opaque, name, err);
}

int io_register_mmio(struct io_bus *b, uint64_t base, uint64_t len, io_handler fn, void *opaque,
                     const char *name, struct hv_error *err)
{
	return io_register(b->mmio, &b->nmmio, "MMIO", base, len, fn, opaque, name, err);
}

static const struct io_range *io_find(const struct io_range *tab, int n, uint64_t addr)
{
	for (int i = 0; i < n; i++)
		if (addr >= tab[i].base && addr - tab[i].base < tab[i].len)
			return &tab[i];
	return NULL;
}

static bool io_dispatch(const struct io_range *r, uint64_t addr, unsigned size, bool write,
                        uint64_t *val)
{
	if (!r) {
		if (!write)
			*val = ones(size);
		return false;
	}
	if (write) {
		uint64_t v = *val & ones(size);
		r->fn(r->opaque, addr - r->base, size, true, &v);
	} else {
		*val = 0;
		r->fn(r->opaque, addr - r->base, size, false, val);
		*val &= ones(size);
	}
	return true;
}

void io_port(struct io_bus *b, uint16_t port, unsigned size, bool write, uint64_t *val)
{
	io_dispatch(io_find(b->port, b->nport, port), port, size, write, val);
}

bool io_mmio(struct io_bus *b, uint64_t gpa, unsigned size, bool write, uint64_t *val)
{
	return io_dispatch(io_find(b->mmio, b->nmmio, gpa), gpa, size, write, val);
}
