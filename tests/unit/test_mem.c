/*
 * test_mem.c - guest RAM: layout, translation, bounds and accesses across slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hv/dirty.h"
#include "hv/mem.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* A small VM gets one slot at 0. */
static void test_layout_small(void **state)
{
	struct guest_mem m;

	assert_int_equal(mem_init(&m, 128 * MiB, NULL), 0);
	assert_int_equal(m.nslots, 1);
	assert_int_equal(m.slot[0].gpa, 0);
	assert_int_equal(m.slot[0].size, 128 * MiB);
	assert_int_equal(m.ram_size, 128 * MiB);
	assert_int_equal(m.npages, 128 * MiB / 4096);
	mem_destroy(&m);
}

/* 5 GiB: 3 GiB below the hole, 2 GiB above 4 GiB; MAP_NORESERVE makes it free. */
static void test_layout_above_hole(void **state)
{
	struct guest_mem m;
	uint8_t b = 0x5a, r = 0;

	assert_int_equal(mem_init(&m, 5 * GiB, NULL), 0);
	assert_int_equal(m.nslots, 2);
	assert_int_equal(m.slot[0].gpa, 0);
	assert_int_equal(m.slot[0].size, 3 * GiB);
	assert_int_equal(m.slot[1].gpa, 4 * GiB);
	assert_int_equal(m.slot[1].size, 2 * GiB);
	assert_int_equal(m.slot[1].first_page, 3 * GiB / 4096);
	assert_int_equal(m.npages, 5 * GiB / 4096);
	assert_false(gpa_is_ram(&m, 3 * GiB, 1));
	assert_false(gpa_is_ram(&m, 4 * GiB - 1, 1));
	assert_true(gpa_is_ram(&m, 6 * GiB - 1, 1));
	assert_false(gpa_is_ram(&m, 6 * GiB, 1));
	assert_int_equal(gpa_write(&m, 6 * GiB - 1, &b, 1, NULL), 0);
	assert_int_equal(gpa_read(&m, 6 * GiB - 1, &r, 1, NULL), 0);
	assert_int_equal(r, 0x5a);
	/* An access that would run into the hole is refused as a whole. */
	assert_int_equal(gpa_read(&m, 3 * GiB - 2, &r, 4, NULL), -1);
	mem_destroy(&m);
}

static void test_bad_sizes(void **state)
{
	struct guest_mem m;
	struct hv_error err = {0};

	assert_int_equal(mem_init(&m, 0, &err), -1);
	assert_int_equal(mem_init(&m, 1 * MiB, &err), -1);
	assert_int_equal(mem_init(&m, 4 * MiB + 1, &err), -1);
	assert_non_null(strstr(err.msg, "4 KiB"));
	assert_int_equal(mem_init(&m, MEM_MAX_SIZE + 4096, &err), -1);
	mem_destroy(&m); /* safe after a failure */
}

static void test_translation(void **state)
{
	struct guest_mem m;
	uint32_t v = 0xdeadbeef, r = 0;
	uint8_t *p;

	assert_int_equal(mem_init(&m, 16 * MiB, NULL), 0);
	p = mem_hva(&m, 0x1000, 4);
	assert_ptr_equal(p, m.slot[0].hva + 0x1000);
	assert_int_equal(gpa_write(&m, 0x1000, &v, 4, NULL), 0);
	memcpy(&r, p, 4);
	assert_int_equal(r, 0xdeadbeef);
	assert_null(mem_hva(&m, 16 * MiB - 2, 4));
	assert_non_null(mem_hva(&m, 16 * MiB - 4, 4));
	assert_null(mem_hva(&m, 16 * MiB, 1));
	assert_ptr_equal(mem_slot_find(&m, 0), &m.slot[0]);
	assert_null(mem_slot_find(&m, 16 * MiB));
	mem_destroy(&m);
}

static void test_out_of_bounds(void **state)
{
	struct guest_mem m;
	struct hv_error err = {0};
	uint8_t buf[16];

	assert_int_equal(mem_init(&m, 4 * MiB, NULL), 0);
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(gpa_write(&m, 4 * MiB - 8, buf, 16, &err), -1);
	assert_non_null(strstr(err.msg, "0x3ffff8"));
	/* Nothing was written, not even the part that was inside RAM. */
	assert_int_equal(gpa_read(&m, 4 * MiB - 8, buf, 8, NULL), 0);
	assert_int_equal(buf[0], 0);
	assert_int_equal(gpa_read(&m, UINT64_MAX - 3, buf, 8, NULL), -1);
	assert_false(gpa_is_ram(&m, UINT64_MAX, 2));
	assert_true(gpa_is_ram(&m, 0, 0));
	mem_destroy(&m);
}

/* Two slots that touch: one copy may run from the first into the second. */
static void test_straddle_adjacent_slots(void **state)
{
	struct guest_mem m;
	struct hv_error err = {0};
	uint8_t in[8192], out[8192];

	mem_init_empty(&m);
	assert_int_equal(mem_add_slot(&m, 0x200000, 0x100000, &err), 0);
	assert_int_equal(mem_add_slot(&m, 0x100000, 0x100000, &err), 0); /* sorted on insert */
	assert_int_equal(m.slot[0].gpa, 0x100000);
	assert_int_equal(m.slot[1].first_page, 256);
	assert_int_equal(mem_add_slot(&m, 0x180000, 0x1000, &err), -1); /* overlap */
	assert_non_null(strstr(err.msg, "overlaps"));
	assert_int_equal(mem_add_slot(&m, 0x300001, 0x1000, &err), -1); /* unaligned */

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7);
	assert_int_equal(gpa_write(&m, 0x200000 - 4096, in, sizeof(in), NULL), 0);
	assert_memory_equal(m.slot[0].hva + 0x100000 - 4096, in, 4096);
	assert_memory_equal(m.slot[1].hva, in + 4096, 4096);
	assert_int_equal(gpa_read(&m, 0x200000 - 4096, out, sizeof(out), NULL), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_null(mem_hva(&m, 0x200000 - 4, 8)); /* one pointer cannot span two slots */
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_small),  cmocka_unit_test(test_layout_above_hole),
	    cmocka_unit_test(test_bad_sizes),     cmocka_unit_test(test_translation),
	    cmocka_unit_test(test_out_of_bounds), cmocka_unit_test(test_straddle_adjacent_slots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
