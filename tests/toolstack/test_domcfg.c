/*
 * test_domcfg.c - domain config files: what an operator writes is what hvd runs, and
 * every mistake is reported with the file, the line and the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "toolstack/domcfg.h"

#define MIN_CFG "name = \"web1\"\nmemory = 256M\nkernel = \"/k.elf\"\n"

static void parse_ok(const char *text, struct domcfg *c)
{
	struct hv_error err = {0};
	int rc = domcfg_parse(text, strlen(text), "t.cfg", c, &err);

	if (rc < 0)
		fail_msg("refused: %s\n%s", err.msg, text);
}

/* Parse @text (MIN_CFG is not added) and expect exactly the message @want. */
static void parse_fails(const char *text, size_t len, const char *want)
{
	struct hv_error err = {0};
	struct domcfg c;

	assert_int_equal(domcfg_parse(text, len, "web1.cfg", &c, &err), -1);
	assert_string_equal(err.msg, want);
	/* A failed parse leaves nothing to free. */
	assert_null(c.kernel);
	assert_null(c.cmdline);
}

static void fails(const char *text, const char *want)
{
	parse_fails(text, strlen(text), want);
}

/* A bad value of @key on line 4, after the required keys other than @key. */
static void value_fails(const char *key, const char *value, const char *want)
{
	static const char *const required[][2] = {
	    {"name", "name = \"web1\"\n"},
	    {"memory", "memory = 256M\n"},
	    {"kernel", "kernel = \"/k.elf\"\n"},
	};
	char text[8192], msg[1024];
	size_t n = 0;

	for (int i = 0; i < 3; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s",
		                      strcmp(key, required[i][0]) ? required[i][1] : "# here\n");
	snprintf(text + n, sizeof(text) - n, "%s = %s\n", key, value);
	snprintf(msg, sizeof(msg), "web1.cfg:4: %s: %s", key, want);
	fails(text, msg);
}

/* The example: the smallest config gets the documented defaults. */
static void test_minimal_defaults(void **state)
{
	struct domcfg c;

	parse_ok(MIN_CFG, &c);
	assert_string_equal(c.name, "web1");
	assert_string_equal(c.uuid, "");
	assert_int_equal(c.memory, 256ULL << 20);
	assert_int_equal(c.vcpus, 1);
	assert_int_equal(c.accel, DOMCFG_ACCEL_AUTO);
	assert_string_equal(c.kernel, "/k.elf");
	assert_null(c.initrd);
	assert_null(c.cmdline);
	assert_null(c.console_log);
	assert_null(c.checkpoint_store);
	assert_int_equal(c.checkpoint_interval, 0);
	assert_int_equal(c.checkpoint_keep_hourly, -1);
	assert_int_equal(c.checkpoint_keep_daily, -1);
	assert_false(c.autostart);
	assert_false(c.deterministic);
	domcfg_free(&c);
	domcfg_free(&c); /* twice is fine */
}

static const char full_cfg[] = "# db-2: every key, in no particular order\r\n"
                               "\n"
                               "   \t\n"
                               "  name=\"db-2.prod\"   # trailing comment\n"
                               "uuid = \"0B6E1C4A-2F3D-4E5F-8A9B-0C1D2E3F4A5B\"\n"
                               "vcpus = \"4\"\n"
                               "\tmemory\t=\t2048\t#MiB, as in xl.cfg\n"
                               "accel = kvm\n"
                               "kernel = \"vmlinuz-6.1\"\n"
                               "initrd = \"/boot/initrd # not a comment\"\n"
                               "cmdline = \"console=ttyS0 msg=\\\"hi\\\" dir=C:\\\\x\"\n"
                               "console_log = \"/var/log/hvd/db-2.log\"\n"
                               "checkpoint_store = \"/srv/ckpt/db-2\"\n"
                               "checkpoint_interval = \"90m\"\n"
                               "checkpoint_keep_hourly = 24\n"
                               "checkpoint_keep_daily = 007\n"
                               "autostart = Yes\n"
                               "deterministic = 0"; /* no final newline */

static void test_full(void **state)
{
	struct domcfg c;

	parse_ok(full_cfg, &c);
	assert_string_equal(c.name, "db-2.prod");
	assert_string_equal(c.uuid, "0b6e1c4a-2f3d-4e5f-8a9b-0c1d2e3f4a5b");
	assert_int_equal(c.memory, 2048ULL << 20);
	assert_int_equal(c.vcpus, 4);
	assert_int_equal(c.accel, DOMCFG_ACCEL_KVM);
	assert_string_equal(c.kernel, "vmlinuz-6.1");
	assert_string_equal(c.initrd, "/boot/initrd # not a comment");
	assert_string_equal(c.cmdline, "console=ttyS0 msg=\"hi\" dir=C:\\x");
	assert_string_equal(c.console_log, "/var/log/hvd/db-2.log");
	assert_string_equal(c.checkpoint_store, "/srv/ckpt/db-2");
	assert_int_equal(c.checkpoint_interval, 90 * 60);
	assert_int_equal(c.checkpoint_keep_hourly, 24);
	assert_int_equal(c.checkpoint_keep_daily, 7);
	assert_true(c.autostart);
	assert_false(c.deterministic);
	domcfg_free(&c);
}

static uint64_t memory_of(const char *value)
{
	char text[256];
	struct domcfg c;
	uint64_t v;

	snprintf(text, sizeof(text), "name = \"a\"\nkernel = \"k\"\nmemory = %s\n", value);
	parse_ok(text, &c);
	v = c.memory;
	domcfg_free(&c);
	return v;
}

/* A bare number is MiB (as in xl.cfg); K, M, G and T are binary units, either case. */
static void test_memory(void **state)
{
	assert_int_equal(memory_of("256"), 256ULL << 20);
	assert_int_equal(memory_of("256M"), 256ULL << 20);
	assert_int_equal(memory_of("256m"), 256ULL << 20);
	assert_int_equal(memory_of("\"1G\""), 1ULL << 30);
	assert_int_equal(memory_of("2048K"), 2ULL << 20);
	assert_int_equal(memory_of("2"), 2ULL << 20);
	assert_int_equal(memory_of("1T"), 1ULL << 40);
	assert_int_equal(memory_of("1048576"), 1ULL << 40);
	assert_int_equal(memory_of("12292k"), 12292ULL << 10);

	value_fails("memory", "12X", "\"12X\": not a size (use K, M, G or T)");
	value_fails("memory", "1.5G", "\"1.5G\": not a size (use K, M, G or T)");
	value_fails("memory", "-1", "\"-1\": not a size (use K, M, G or T)");
	value_fails("memory", "256MB", "\"256MB\": not a size (use K, M, G or T)");
	value_fails("memory", "1", "1: less than the 2M minimum");
	value_fails("memory", "2047K", "2047K: less than the 2M minimum");
	value_fails("memory", "0", "0: less than the 2M minimum");
	value_fails("memory", "1025G", "1025G: more than the 1T maximum");
	value_fails("memory", "99999999999999999999",
	            "99999999999999999999: more than the 1T maximum");
	value_fails("memory", "99999999999999999T", "99999999999999999T: more than the 1T maximum");
	value_fails("memory", "4097K", "4097K: not a multiple of 4K");
}

static bool bool_of(const char *value)
{
	char text[256];
	struct domcfg c;
	bool v;

	snprintf(text, sizeof(text), MIN_CFG "autostart = %s\n", value);
	parse_ok(text, &c);
	v = c.autostart;
	domcfg_free(&c);
	return v;
}

static void test_booleans(void **state)
{
	const char *yes[] = {"true", "yes", "1", "on", "TRUE", "\"yes\""};
	const char *no[] = {"false", "no", "0", "off", "False", "\"0\""};

	for (size_t i = 0; i < 6; i++) {
		assert_true(bool_of(yes[i]));
		assert_false(bool_of(no[i]));
	}
	value_fails("autostart", "2", "\"2\": not a boolean (true/false, yes/no, 1/0)");
	value_fails("deterministic", "y", "\"y\": not a boolean (true/false, yes/no, 1/0)");
}

static uint64_t interval_of(const char *value)
{
	char text[256];
	struct domcfg c;
	uint64_t v;

	snprintf(text, sizeof(text),
	         MIN_CFG "checkpoint_store = \"/s\"\ncheckpoint_interval = %s\n", value);
	parse_ok(text, &c);
	v = c.checkpoint_interval;
	domcfg_free(&c);
	return v;
}

/* Integer seconds or one unit: s, m, h, d. */
static void test_durations(void **state)
{
	assert_int_equal(interval_of("30s"), 30);
	assert_int_equal(interval_of("\"15m\""), 900);
	assert_int_equal(interval_of("1h"), 3600);
	assert_int_equal(interval_of("2d"), 2 * 86400);
	assert_int_equal(interval_of("900"), 900);
	assert_int_equal(interval_of("366d"), 366 * 86400);

	static const struct {
		const char *v, *msg;
	} bad[] = {
	    {"15x", "\"15x\": not a duration (seconds, or use s, m, h or d)"},
	    {"1h30m", "\"1h30m\": not a duration (seconds, or use s, m, h or d)"},
	    {"m", "\"m\": not a duration (seconds, or use s, m, h or d)"},
	    {"-5", "\"-5\": not a duration (seconds, or use s, m, h or d)"},
	    {"0", "0: must be from 1s to 366d"},
	    {"0s", "0s: must be from 1s to 366d"},
	    {"367d", "367d: must be from 1s to 366d"},
	    {"99999999999999999999d", "99999999999999999999d: must be from 1s to 366d"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256], msg[256];

		snprintf(text, sizeof(text),
		         MIN_CFG "checkpoint_store = \"/s\"\ncheckpoint_interval = %s\n", bad[i].v);
		snprintf(msg, sizeof(msg), "web1.cfg:5: checkpoint_interval: %s", bad[i].msg);
		fails(text, msg);
	}
}

static void test_names(void **state)
{
	char text[256], name64[65];
	struct domcfg c;

	snprintf(text, sizeof(text), "name = \"A-b.c_9\"\nmemory = 64M\nkernel = \"k\"\n");
	parse_ok(text, &c);
	assert_string_equal(c.name, "A-b.c_9");
	domcfg_free(&c);

	memset(name64, 'n', 63);
	name64[63] = '\0';
	snprintf(text, sizeof(text), "name = \"%s\"\nmemory = 64M\nkernel = \"k\"\n", name64);
	parse_ok(text, &c);
	assert_int_equal(strlen(c.name), 63);
	domcfg_free(&c);

	strcat(name64, "n");
	snprintf(text, sizeof(text), "\"%s\"", name64);
	value_fails("name", text,
	            "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\": must be 1 to 63 characters");
	value_fails("name", "\"\"", "\"\": must be 1 to 63 characters");
	value_fails("name", "\".hidden\"", "\".hidden\": must not start with '.'");
	value_fails("name", "\"-x\"", "\"-x\": must not start with '-'");
	value_fails("name", "\"web 1\"",
	            "\"web 1\": may hold only letters, digits, '_', '.' and '-'");
	value_fails("name", "\"a/b\"", "\"a/b\": may hold only letters, digits, '_', '.' and '-'");
	value_fails("name", "web1", "\"web1\": expected a string in double quotes");
}

/* Only the 8-4-4-4-12 form; stored in lower case so that hvd compares them as strings. */
static void test_uuid(void **state)
{
	struct domcfg c;

	parse_ok(MIN_CFG "uuid = \"01234567-89AB-cdef-0123-456789ABCDEF\"\n", &c);
	assert_string_equal(c.uuid, "01234567-89ab-cdef-0123-456789abcdef");
	domcfg_free(&c);

	const char *bad[] = {
	    "\"\"",
	    "\"01234567-89ab-cdef-0123-456789abcde\"",
	    "\"01234567-89ab-cdef-0123-456789abcdef0\"",
	    "\"0123456789ab-cdef-0123-456789abcdef-\"",
	    "\"01234567-89ab-cdef-0123-456789abcdeg\"",
	    "\"{1234567-89ab-cdef-0123-456789abcdef}\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char msg[256];

		snprintf(msg, sizeof(msg), "%s: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
		         bad[i]);
		value_fails("uuid", bad[i], msg);
	}
	value_fails("uuid", "01234567-89ab-cdef-0123-456789abcdef",
	            "\"01234567-89ab-cdef-0123-456789abcdef\": expected a string in double quotes");
}

static void test_numbers_and_accel(void **state)
{
	struct domcfg c;

	parse_ok(MIN_CFG "vcpus = 64\naccel = \"emu\"\n", &c);
	assert_int_equal(c.vcpus, 64);
	assert_int_equal(c.accel, DOMCFG_ACCEL_EMU);
	domcfg_free(&c);

	value_fails("vcpus", "0", "0: must be a number from 1 to 64");
	value_fails("vcpus", "65", "65: must be a number from 1 to 64");
	value_fails("vcpus", "two", "\"two\": not a number");
	value_fails("vcpus", "+2", "\"+2\": not a number");
	value_fails("accel", "\"xen\"", "\"xen\": must be \"auto\", \"emu\" or \"kvm\"");
	value_fails("accel", "KVM", "\"KVM\": must be \"auto\", \"emu\" or \"kvm\"");
	value_fails("checkpoint_keep_daily", "-1", "\"-1\": not a number");
	value_fails("checkpoint_keep_hourly", "100001",
	            "100001: must be a number from 0 to 100000");
}

static void test_strings(void **state)
{
	char big[DOMCFG_STR_MAX + 2];
	char text[DOMCFG_STR_MAX + 128];
	struct domcfg c;

	parse_ok(MIN_CFG "cmdline = \"\"\n", &c);
	assert_string_equal(c.cmdline, ""); /* given, though empty: not NULL */
	domcfg_free(&c);

	memset(big, 'x', DOMCFG_STR_MAX);
	big[DOMCFG_STR_MAX] = '\0';
	snprintf(text, sizeof(text), MIN_CFG "cmdline = \"%s\"\n", big);
	parse_ok(text, &c);
	assert_int_equal(strlen(c.cmdline), DOMCFG_STR_MAX);
	domcfg_free(&c);

	strcat(big, "x");
	snprintf(text, sizeof(text), "\"%s\"", big);
	value_fails("cmdline", text, "string of 2001 bytes, at most 2000");

	value_fails("initrd", "\"\"", "empty path");
	value_fails("kernel", "/k", "\"/k\": expected a string in double quotes");
	value_fails("cmdline", "\"a\\nb\"", "bad escape in the string (only \\\" and \\\\)");
	value_fails("cmdline", "\"abc\\\"", "unterminated string (no closing '\"')");
	value_fails("cmdline", "\"abc", "unterminated string (no closing '\"')");
	value_fails("cmdline", "\"a\tb\"", "control character 0x09 in the string");
}

/* Every kind of mistake: file, line and key in one line. */
static void test_errors(void **state)
{
	fails(MIN_CFG "memroy = 256M\n", "web1.cfg:4: memroy: unknown key");
	fails("name = \"a\"\n# c\n\nmemory = 64M\nkernel = \"k\"\nmemory = 128M\n",
	      "web1.cfg:6: memory: set twice (first on line 4)");
	fails(MIN_CFG "vcpus 2\n", "web1.cfg:4: vcpus: expected '=' after the key");
	fails(MIN_CFG "vcpus\n", "web1.cfg:4: vcpus: expected '=' after the key");
	fails(MIN_CFG "= 2\n", "web1.cfg:4: expected 'key = value'");
	fails(MIN_CFG "\"vcpus\" = 2\n", "web1.cfg:4: expected 'key = value'");
	fails(MIN_CFG "vcpus =\n", "web1.cfg:4: vcpus: missing value");
	fails(MIN_CFG "vcpus = # none\n", "web1.cfg:4: vcpus: missing value");
	fails(MIN_CFG "vcpus = 2 4\n", "web1.cfg:4: vcpus: unexpected \"4\" after the value");
	fails(MIN_CFG "cmdline = \"a\" \"b\"\n",
	      "web1.cfg:4: cmdline: unexpected \"\"b\"\" after the value");
	fails(MIN_CFG "vcpus = 2 ;\n", "web1.cfg:4: vcpus: unexpected \";\" after the value");
	fails(MIN_CFG "vcpus = 2\x01\n", "web1.cfg:4: control character 0x01");
	fails("name = \"a\"\r\nmemory = 64M\rkernel = \"k\"\n",
	      "web1.cfg:2: control character 0x0d");
	parse_fails(MIN_CFG "vcpus = 2\0\n", sizeof(MIN_CFG "vcpus = 2\0\n") - 1,
	            "web1.cfg:4: NUL byte");
	parse_fails(MIN_CFG "# \0\n", sizeof(MIN_CFG "# \0\n") - 1, "web1.cfg:4: NUL byte");
	fails(MIN_CFG "kernel-path = \"/x\"\n", "web1.cfg:4: kernel-path: unknown key");

	/* Missing required keys are named without a line. */
	fails("memory = 64M\nkernel = \"k\"\n", "web1.cfg: name: missing (required)");
	fails("name = \"a\"\nkernel = \"k\"\n", "web1.cfg: memory: missing (required)");
	fails("name = \"a\"\nmemory = 64M\n", "web1.cfg: kernel: missing (required)");
	fails("", "web1.cfg: name: missing (required)");

	/* Rules between keys point at the line of the key that breaks them. */
	fails(MIN_CFG "deterministic = true\naccel = \"kvm\"\n",
	      "web1.cfg:4: deterministic: needs accel \"emu\" or \"auto\", not \"kvm\"");
	fails(MIN_CFG "vcpus = 2\ndeterministic = yes\n",
	      "web1.cfg:5: deterministic: needs vcpus = 1, not 2");
	fails(MIN_CFG "checkpoint_interval = 1h\n",
	      "web1.cfg:4: checkpoint_interval: needs checkpoint_store");
	fails(MIN_CFG "checkpoint_keep_daily = 7\n",
	      "web1.cfg:4: checkpoint_keep_daily: needs checkpoint_store");
}

static void test_limits(void **state)
{
	size_t big = DOMCFG_FILE_MAX + 1;
	char *text = malloc(big + 1);
	struct domcfg c;
	size_t n;

	assert_non_null(text);
	/* A line of exactly DOMCFG_LINE_MAX bytes is fine; one more is not. */
	n = (size_t)snprintf(text, big, MIN_CFG "# ");
	memset(text + n, 'c', DOMCFG_LINE_MAX - 2);
	text[n + DOMCFG_LINE_MAX - 2] = '\n';
	text[n + DOMCFG_LINE_MAX - 1] = '\0';
	parse_ok(text, &c);
	domcfg_free(&c);
	memset(text + n, 'c', DOMCFG_LINE_MAX - 1);
	text[n + DOMCFG_LINE_MAX - 1] = '\0';
	fails(text, "web1.cfg:4: line longer than 4096 bytes");

	/* Files of at most 64 KiB; comments pad this one. */
	memset(text, '\n', big);
	memcpy(text, MIN_CFG, strlen(MIN_CFG));
	parse_ok((text[DOMCFG_FILE_MAX] = '\0', text), &c);
	domcfg_free(&c);
	parse_fails(text, big, "web1.cfg: larger than 64 KiB");
	free(text);
}

static const char canonical_full[] = "name = \"db-2.prod\"\n"
                                     "uuid = \"0b6e1c4a-2f3d-4e5f-8a9b-0c1d2e3f4a5b\"\n"
                                     "memory = 2G\n"
                                     "vcpus = 4\n"
                                     "accel = \"kvm\"\n"
                                     "kernel = \"vmlinuz-6.1\"\n"
                                     "initrd = \"/boot/initrd # not a comment\"\n"
                                     "cmdline = \"console=ttyS0 msg=\\\"hi\\\" dir=C:\\\\x\"\n"
                                     "console_log = \"/var/log/hvd/db-2.log\"\n"
                                     "checkpoint_store = \"/srv/ckpt/db-2\"\n"
                                     "checkpoint_interval = 90m\n"
                                     "checkpoint_keep_hourly = 24\n"
                                     "checkpoint_keep_daily = 7\n"
                                     "autostart = true\n"
                                     "deterministic = false\n";

static char *write_str(const struct domcfg *c, struct hv_error *err, int *rc)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	*rc = domcfg_write(c, f, err);
	fclose(f);
	return text;
}

/* What hvd persists reads back as the same domain (golden canonical form). */
static void test_round_trip(void **state)
{
	struct hv_error err = {0};
	struct domcfg c, again;
	char *text;
	int rc;

	parse_ok(full_cfg, &c);
	text = write_str(&c, &err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(text, canonical_full);
	parse_ok(text, &again);
	assert_true(domcfg_equal(&c, &again));
	free(text);
	domcfg_free(&again);
	domcfg_free(&c);

	parse_ok(MIN_CFG, &c);
	text = write_str(&c, &err, &rc);
	assert_string_equal(text,
	                    "name = \"web1\"\nmemory = 256M\nvcpus = 1\naccel = \"auto\"\n"
	                    "kernel = \"/k.elf\"\nautostart = false\ndeterministic = false\n");
	parse_ok(text, &again);
	assert_true(domcfg_equal(&c, &again));
	again.vcpus = 2;
	assert_false(domcfg_equal(&c, &again));
	free(text);
	domcfg_free(&again);
	domcfg_free(&c);

	/* A string made of escapes at the limit still fits its canonical line. */
	static char t[sizeof(MIN_CFG) + 2 * DOMCFG_STR_MAX + 16];
	size_t n = (size_t)snprintf(t, sizeof(t), MIN_CFG "cmdline=\"");

	for (int i = 0; i < DOMCFG_STR_MAX; i++, n += 2)
		memcpy(t + n, "\\\\", 2);
	memcpy(t + n, "\"\n", 3);
	parse_ok(t, &c);
	text = write_str(&c, &err, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(text, "\ncmdline = \"\\\\"));
	parse_ok(text, &again);
	assert_true(domcfg_equal(&c, &again));
	free(text);
	domcfg_free(&again);
	domcfg_free(&c);
}

/* A struct that hvd built by hand is checked before it is written. */
static void test_write_checks(void **state)
{
	struct hv_error err = {0};
	struct domcfg c;
	char *text;
	int rc;

	parse_ok(MIN_CFG, &c);
	c.vcpus = 0;
	text = write_str(&c, &err, &rc);
	assert_int_equal(rc, -1);
	assert_string_equal(err.msg, "vcpus: 0: must be a number from 1 to 64");
	free(text);
	c.vcpus = 1;

	free(c.kernel);
	c.kernel = strdup("a\nb");
	assert_int_equal(domcfg_check(&c, &err), -1);
	assert_string_equal(err.msg, "kernel: control character 0x0a in the string");
	free(c.kernel);
	c.kernel = NULL;
	assert_int_equal(domcfg_check(&c, &err), -1);
	assert_string_equal(err.msg, "kernel: missing (required)");
	c.kernel = strdup("/k");

	strcpy(c.uuid, "0B6E1C4A-2F3D-4E5F-8A9B-0C1D2E3F4A5B");
	assert_int_equal(domcfg_check(&c, &err), -1);
	assert_string_equal(err.msg, "uuid: must be in lower case");
	c.uuid[0] = '\0';

	c.memory = 3ULL << 20 | 1;
	assert_int_equal(domcfg_check(&c, &err), -1);
	assert_string_equal(err.msg, "memory: 3145729: not a multiple of 4K");
	c.memory = 64ULL << 20;

	c.checkpoint_keep_hourly = 3;
	assert_int_equal(domcfg_check(&c, &err), -1);
	assert_string_equal(err.msg, "checkpoint_keep_hourly: needs checkpoint_store");
	c.checkpoint_keep_hourly = -1;
	assert_int_equal(domcfg_check(&c, &err), 0);
	domcfg_free(&c);
}

/* hvd can build a config in memory, from the defaults, and persist it. */
static void test_built_by_hand(void **state)
{
	struct hv_error err = {0};
	struct domcfg c, again;
	char *text;
	int rc;

	domcfg_init(&c);
	assert_int_equal(domcfg_check(&c, &err), -1);
	assert_string_equal(err.msg, "name: \"\": must be 1 to 63 characters");
	strcpy(c.name, "vm7");
	c.memory = 96ULL << 20;
	c.kernel = strdup("/guest/hello.elf");
	c.checkpoint_store = strdup("/ckpt");
	c.checkpoint_interval = 7200;
	c.accel = DOMCFG_ACCEL_EMU;
	text = write_str(&c, &err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(text, "name = \"vm7\"\nmemory = 96M\nvcpus = 1\naccel = \"emu\"\n"
	                          "kernel = \"/guest/hello.elf\"\ncheckpoint_store = \"/ckpt\"\n"
	                          "checkpoint_interval = 2h\nautostart = false\n"
	                          "deterministic = false\n");
	parse_ok(text, &again);
	assert_true(domcfg_equal(&c, &again));
	free(text);
	domcfg_free(&again);
	domcfg_free(&c);
}

/* The domain starts as `hv run` with the config's options, the kernel last. */
static void test_argv(void **state)
{
	static const char *want_min[] = {"/usr/bin/hv", "run",     "--name", "web1",    "--memory",
	                                 "256M",        "--vcpus", "1",      "--accel", "auto",
	                                 "--",          "/k.elf",  NULL};
	static const char *want_full[] = {"hv",
	                                  "run",
	                                  "--name",
	                                  "det",
	                                  "--memory",
	                                  "64M",
	                                  "--vcpus",
	                                  "1",
	                                  "--accel",
	                                  "emu",
	                                  "--cmdline",
	                                  "a \"b\" c",
	                                  "--initrd",
	                                  "/i.img",
	                                  "--control",
	                                  "/run/hvd/det.sock",
	                                  "--deterministic",
	                                  "--",
	                                  "-kernel",
	                                  NULL};
	struct hv_error err = {0};
	struct domcfg c;
	char **argv;
	size_t i;

	parse_ok(MIN_CFG "console_log = \"/log\"\nautostart = true\n", &c);
	argv = domcfg_argv(&c, "/usr/bin/hv", NULL, &err);
	assert_non_null(argv);
	for (i = 0; want_min[i]; i++)
		assert_string_equal(argv[i], want_min[i]);
	assert_null(argv[i]);
	domcfg_argv_free(argv);
	domcfg_free(&c);

	parse_ok("name = \"det\"\nmemory = 64M\nkernel = \"-kernel\"\naccel = \"emu\"\n"
	         "deterministic = true\ninitrd = \"/i.img\"\ncmdline = \"a \\\"b\\\" c\"\n",
	         &c);
	argv = domcfg_argv(&c, "hv", "/run/hvd/det.sock", &err);
	assert_non_null(argv);
	for (i = 0; want_full[i]; i++)
		assert_string_equal(argv[i], want_full[i]);
	assert_null(argv[i]);
	domcfg_argv_free(argv);

	c.vcpus = 99;
	assert_null(domcfg_argv(&c, "hv", NULL, &err));
	assert_string_equal(err.msg, "vcpus: 99: must be a number from 1 to 64");
	domcfg_free(&c);
	domcfg_argv_free(NULL);
}

static void write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Relative paths in a file are relative to the file's directory, whatever the cwd. */
static void test_load(void **state)
{
	char dir[] = "/tmp/test-domcfg-XXXXXX", path[PATH_MAX], want[PATH_MAX * 2], *real;
	const char text[] = "name = \"web1\"\nmemory = 256M\nkernel = \"guest/memtouch.elf\"\n"
	                    "initrd = \"/abs/initrd\"\nconsole_log = \"logs/web1.log\"\n";
	struct hv_error err = {0};
	struct domcfg c;
	char *big;

	assert_non_null(mkdtemp(dir));
	real = realpath(dir, NULL);
	assert_non_null(real);
	snprintf(path, sizeof(path), "%s/web1.cfg", dir);
	write_file(path, text, strlen(text));
	assert_int_equal(domcfg_load(path, &c, &err), 0);
	snprintf(want, sizeof(want), "%s/guest/memtouch.elf", real);
	assert_string_equal(c.kernel, want);
	assert_string_equal(c.initrd, "/abs/initrd");
	snprintf(want, sizeof(want), "%s/logs/web1.log", real);
	assert_string_equal(c.console_log, want);
	assert_null(c.checkpoint_store);
	domcfg_free(&c);

	/* The messages name the file as given. */
	write_file(path, "name = \"web1\"\nmemory = 12X\n", 27);
	assert_int_equal(domcfg_load(path, &c, &err), -1);
	snprintf(want, sizeof(want), "%s:2: memory: \"12X\": not a size (use K, M, G or T)", path);
	assert_string_equal(err.msg, want);

	big = malloc(DOMCFG_FILE_MAX + 1);
	assert_non_null(big);
	memset(big, '#', DOMCFG_FILE_MAX + 1);
	write_file(path, big, DOMCFG_FILE_MAX + 1);
	free(big);
	assert_int_equal(domcfg_load(path, &c, &err), -1);
	assert_int_equal(err.code, EFBIG);
	snprintf(want, sizeof(want), "%s: larger than 64 KiB", path);
	assert_string_equal(err.msg, want);
	unlink(path);

	assert_int_equal(domcfg_load(path, &c, &err), -1);
	assert_int_equal(err.code, ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err.msg, want);

	assert_int_equal(domcfg_load(dir, &c, &err), -1);
	snprintf(want, sizeof(want), "%s: not a regular file", dir);
	assert_string_equal(err.msg, want);

	rmdir(dir);
	free(real);
}

static void test_resolve_paths(void **state)
{
	struct hv_error err = {0};
	char dir[DOMCFG_STR_MAX];
	struct domcfg c;

	parse_ok(MIN_CFG "initrd = \"i\"\ncheckpoint_store = \"../ckpt\"\n", &c);
	assert_int_equal(domcfg_resolve_paths(&c, "/etc/hvd", &err), 0);
	assert_string_equal(c.kernel, "/k.elf");
	assert_string_equal(c.initrd, "/etc/hvd/i");
	assert_string_equal(c.checkpoint_store, "/etc/hvd/../ckpt");
	domcfg_free(&c);

	/* All or nothing: a path that would grow too long changes none. */
	parse_ok(MIN_CFG "initrd = \"i\"\ncheckpoint_store = \"ckpt\"\n", &c);
	memset(dir, 'd', sizeof(dir) - 1); /* "/ddd...d/i" is one byte too long */
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	assert_int_equal(domcfg_resolve_paths(&c, dir, &err), -1);
	assert_int_equal(err.code, ENAMETOOLONG);
	assert_string_equal(c.initrd, "i");
	assert_string_equal(c.checkpoint_store, "ckpt");
	domcfg_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal_defaults),
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_memory),
	    cmocka_unit_test(test_booleans),
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_uuid),
	    cmocka_unit_test(test_numbers_and_accel),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_write_checks),
	    cmocka_unit_test(test_built_by_hand),
	    cmocka_unit_test(test_argv),
	    cmocka_unit_test(test_load),
	    cmocka_unit_test(test_resolve_paths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
