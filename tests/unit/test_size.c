/*
 * test_size.c - sizes on the command line: "128M" is 128 MiB, typos are errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "toolstack/size.h"

static uint64_t parse_ok(const char *s)
{
	uint64_t v = 0;
	struct hv_error err = {0};

	assert_int_equal(size_parse(s, &v, &err), 0);
	return v;
}

static void test_valid(void **state)
{
	assert_int_equal(parse_ok("4096"), 4096);
	assert_int_equal(parse_ok("0"), 0);
	assert_int_equal(parse_ok("128M"), 128ULL << 20);
	assert_int_equal(parse_ok("128m"), 128ULL << 20);
	assert_int_equal(parse_ok("2G"), 2ULL << 30);
	assert_int_equal(parse_ok("1T"), 1ULL << 40);
	assert_int_equal(parse_ok("64K"), 64ULL << 10);
	assert_int_equal(parse_ok("16777215T"), 16777215ULL << 40);
	assert_int_equal(parse_ok("18446744073709551615"), UINT64_MAX);
}

static void test_invalid(void **state)
{
	static const char *bad[] = {"",    "M",  "-1",   " 1", "1 ",  "1.5G",
	                            "1GB", "1X", "0x10", "+5", "12M3"};
	struct hv_error err = {0};
	uint64_t v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hv_error_clear(&err);
		assert_int_equal(size_parse(bad[i], &v, &err), -1);
		assert_true(err.msg[0] != '\0');
	}
	assert_int_equal(size_parse("1X", &v, &err), -1);
	assert_non_null(strstr(err.msg, "'1X'"));
}

static void test_overflow(void **state)
{
	struct hv_error err = {0};
	uint64_t v;

	assert_int_equal(size_parse("18446744073709551616", &v, &err), -1);
	assert_int_equal(err.code, ERANGE);
	assert_int_equal(size_parse("16777216T", &v, &err), -1);
	assert_int_equal(size_parse("99999999999999999999G", &v, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
