/*
 * test_io.c - port and MMIO dispatch: devices see their own offsets, overlapping claims
 * are refused, and unclaimed ports behave like an empty ISA bus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hv/io.h"

struct dev {
	uint64_t last_off, last_val;
	unsigned last_size, writes, reads;
};

static void dev_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	struct dev *d = opaque;

	d->last_off = off;
	d->last_size = size;
	if (write) {
		d->writes++;
		d->last_val = *val;
	} else {
		d->reads++;
		*val = 0x1122334455667788ULL + off;
	}
}

static void test_port_dispatch(void **state)
{
	struct io_bus b = {0};
	struct dev a = {0}, c = {0};
	uint64_t v;

	assert_int_equal(io_register_port(&b, 0x3f8, 8, dev_io, &a, "a", NULL), 0);
	assert_int_equal(io_register_port(&b, 0x60, 1, dev_io, &c, "c", NULL), 0);
	v = 0xab;
	io_port(&b, 0x3fb, 1, true, &v);
	assert_int_equal(a.writes, 1);
	assert_int_equal(a.last_off, 3);
	assert_int_equal(a.last_val, 0xab);
	io_port(&b, 0x3f8, 2, false, &v);
	assert_int_equal(v, 0x7788); /* masked to the access size */
	io_port(&b, 0x60, 4, true, &(uint64_t){0xffffffffffULL});
	assert_int_equal(c.last_val, 0xffffffffULL);
	assert_int_equal(c.last_size, 4);
}

static void test_unclaimed(void **state)
{
	struct io_bus b = {0};
	uint64_t v = 0;

	io_port(&b, 0x80, 1, false, &v);
	assert_int_equal(v, 0xff);
	io_port(&b, 0x80, 2, false, &v);
	assert_int_equal(v, 0xffff);
	io_port(&b, 0x80, 4, false, &v);
	assert_int_equal(v, 0xffffffffULL);
	v = 5;
	io_port(&b, 0x80, 1, true, &v); /* ignored, no crash */
	assert_false(io_mmio(&b, 0xfee00000, 8, false, &v));
	assert_int_equal(v, UINT64_MAX);
}

static void test_overlap_rejected(void **state)
{
	struct io_bus b = {0};
	struct dev a = {0};
	struct hv_error err = {0};

	assert_int_equal(io_register_port(&b, 0x3f8, 8, dev_io, &a, "uart", NULL), 0);
	assert_int_equal(io_register_port(&b, 0x3ff, 2, dev_io, &a, "other", &err), -1);
	assert_non_null(strstr(err.msg, "overlaps uart"));
	assert_int_equal(io_register_port(&b, 0x3f0, 9, dev_io, &a, "other", &err), -1);
	assert_int_equal(io_register_port(&b, 0x3f0, 8, dev_io, &a, "below", &err), 0);
	assert_int_equal(io_register_port(&b, 0x400, 0, dev_io, &a, "empty", &err), -1);
	assert_int_equal(io_register_port(&b, 0xfffe, 4, dev_io, &a, "wrap", &err), -1);
	assert_int_equal(io_register_mmio(&b, 0xfec00000, 0x1000, dev_io, &a, "ioapic", NULL), 0);
	assert_int_equal(io_register_mmio(&b, 0xfec00ff8, 0x10, dev_io, &a, "x", &err), -1);
	assert_int_equal(io_register_mmio(&b, UINT64_MAX - 1, 4, dev_io, &a, "wrap", &err), -1);
}

static void test_mmio_dispatch(void **state)
{
	struct io_bus b = {0};
	struct dev a = {0};
	uint64_t v = 0;

	assert_int_equal(io_register_mmio(&b, 0xfec00000, 0x1000, dev_io, &a, "ioapic", NULL), 0);
	assert_true(io_mmio(&b, 0xfec00010, 8, false, &v));
	assert_int_equal(a.last_off, 0x10);
	assert_int_equal(v, 0x1122334455667798ULL);
	v = 7;
	assert_true(io_mmio(&b, 0xfec00ffc, 4, true, &v));
	assert_int_equal(a.last_val, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_port_dispatch),
	    cmocka_unit_test(test_unclaimed),
	    cmocka_unit_test(test_overlap_rejected),
	    cmocka_unit_test(test_mmio_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
