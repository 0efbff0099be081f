/*
 * test_bzimage.c - the bzImage loader: a good kernel boots with the documented zero page,
 * command line, initrd and entry state; a malformed one is refused with a message naming
 * the fault, before a single byte of guest RAM is written. The loader front end tells
 * PVH ELFs, bzImages and anything else apart by content.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/dirty.h"
#include "hv/loader/bzimage.h"
#include "hv/loader/loader.h"

#define RAM      (32ULL << 20)
#define SETUP    1024 /* setup_sects = 1 */
#define PM_SIZE  512
#define IMG_SIZE (SETUP + PM_SIZE)
#define RD_SIZE  5000

static uint8_t img[IMG_SIZE];
static uint8_t rd[RD_SIZE];
static struct x86_state st;

static void put(size_t off, uint64_t v, unsigned n)
{
	memcpy(img + off, &v, n);
}

static uint64_t get(const uint8_t *zp, size_t off, unsigned n)
{
	uint64_t v = 0;

	memcpy(&v, zp + off, n);
	return v;
}

/* A minimal bzImage as Linux's build makes it: protocol 2.15, relocatable, 64-bit. */
static void img_build(void)
{
	memset(img, 0, sizeof(img));
	put(BZ_SETUP_SECTS, 1, 1);
	put(BZ_SYSSIZE, PM_SIZE / 16, 4);
	put(BZ_BOOT_FLAG, 0xaa55, 2);
	put(BZ_JUMP, 0x6aeb, 2); /* jmp short: header ends at 0x26c */
	memcpy(img + BZ_MAGIC, "HdrS", 4);
	put(BZ_VERSION, 0x20f, 2);
	put(BZ_LOADFLAGS, BZ_LOADED_HIGH, 1);
	put(BZ_CODE32_START, 0x100000, 4);
	put(BZ_INITRD_ADDR_MAX, 0x7fffffff, 4);
	put(BZ_RELOCATABLE, 1, 1);
	put(BZ_XLOADFLAGS, 0x7f, 2);
	put(BZ_CMDLINE_SIZE, 0x7ff, 4);
	put(BZ_PREF_ADDRESS, 0x1000000, 8);
	put(BZ_INIT_SIZE, 0x200000, 4);
	for (int i = 0; i < PM_SIZE; i++)
		img[SETUP + i] = (uint8_t)(i * 7 + 1);
	for (int i = 0; i < RD_SIZE; i++)
		rd[i] = (uint8_t)(i * 13 + 5);
}

/* A good kernel with an initrd: every documented field, the data, the entry state. */
static void test_good_kernel(void **state)
{
	struct guest_mem m;
	struct hv_error err = {0};
	uint8_t zp[4096], buf[RD_SIZE];
	uint64_t rd_gpa = (RAM - RD_SIZE) & ~0xfffULL, e[3][3];
	uint64_t *dirty;
	char cl[32];

	img_build();
	assert_int_equal(mem_init(&m, RAM, NULL), 0);
	dirty_start(&m);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(bzimage_load(&m, img, IMG_SIZE, rd, RD_SIZE, "console=ttyS0", &st, &err),
	                 0);

	assert_int_equal(gpa_read(&m, BZ_KERNEL_GPA, buf, PM_SIZE, NULL), 0);
	assert_memory_equal(buf, img + SETUP, PM_SIZE);
	assert_int_equal(gpa_read(&m, rd_gpa, buf, RD_SIZE, NULL), 0);
	assert_memory_equal(buf, rd, RD_SIZE);
	assert_int_equal(gpa_read(&m, BZ_CMDLINE_GPA, cl, sizeof(cl), NULL), 0);
	assert_string_equal(cl, "console=ttyS0");

	assert_int_equal(gpa_read(&m, BZ_ZERO_PAGE_GPA, zp, sizeof(zp), NULL), 0);
	assert_memory_equal(zp + BZ_MAGIC, "HdrS", 4);
	assert_int_equal(get(zp, BZ_VERSION, 2), 0x20f);
	assert_int_equal(get(zp, BZ_TYPE_OF_LOADER, 1), 0xff);
	assert_true(get(zp, BZ_LOADFLAGS, 1) & BZ_LOADED_HIGH);
	assert_int_equal(get(zp, BZ_CMD_LINE_PTR, 4), BZ_CMDLINE_GPA);
	assert_int_equal(get(zp, BZ_RAMDISK_IMAGE, 4), rd_gpa);
	assert_int_equal(get(zp, BZ_RAMDISK_SIZE, 4), RD_SIZE);
	assert_int_equal(get(zp, BZ_CODE32_START, 4), BZ_KERNEL_GPA);
	assert_int_equal(get(zp, 0x1ef, 1), 0); /* sentinel: the header was not clobbered */
	assert_int_equal(get(zp, BZ_E820_ENTRIES, 1), 3);
	for (int i = 0; i < 3; i++) { /* e820 entries are packed: 20 bytes each */
		e[i][0] = get(zp, BZ_E820_TABLE + 20 * i, 8);
		e[i][1] = get(zp, BZ_E820_TABLE + 20 * i + 8, 8);
		e[i][2] = get(zp, BZ_E820_TABLE + 20 * i + 16, 4);
	}
	assert_int_equal(e[0][0], 0);
	assert_int_equal(e[0][1], 0xa0000);
	assert_int_equal(e[0][2], BZ_E820_RAM);
	assert_int_equal(e[1][0], 0xa0000);
	assert_int_equal(e[1][1], 0x60000);
	assert_int_equal(e[1][2], BZ_E820_RESERVED);
	assert_int_equal(e[2][0], 0x100000);
	assert_int_equal(e[2][1], RAM - 0x100000);
	assert_int_equal(e[2][2], BZ_E820_RAM);

	assert_int_equal(st.rip, BZ_KERNEL_GPA);
	assert_int_equal(st.gpr[X86_RSI], BZ_ZERO_PAGE_GPA);
	assert_int_equal(st.gpr[X86_RBX] | st.gpr[X86_RBP] | st.gpr[X86_RDI], 0);
	assert_int_equal(st.cr0, X86_CR0_PE | X86_CR0_ET);
	assert_int_equal(st.seg[X86_CS].selector, 0x10);
	assert_int_equal(st.seg[X86_CS].limit, 0xffffffff);
	assert_int_equal(st.seg[X86_DS].selector, 0x18);
	assert_int_equal(st.seg[X86_SS].selector, 0x18);
	assert_int_equal(st.rflags & X86_IF, 0);

	/* Loader writes reach the dirty log like any other write. */
	dirty = calloc(dirty_bitmap_words(&m), 8);
	dirty_harvest(&m, dirty);
	assert_true(dirty[0x100000 / 4096 / 64] >> (0x100 % 64) & 1);
	assert_true(dirty[0x7000 / 4096 / 64] >> 7 & 1);
	assert_true(dirty[rd_gpa / 4096 / 64] >> (rd_gpa / 4096 % 64) & 1);
	free(dirty);
	mem_destroy(&m);
}

/* No initrd: the ramdisk fields stay zero; the loader front end finds the bzImage. */
static void test_no_initrd(void **state)
{
	struct guest_mem m;
	uint8_t zp[4096];

	img_build();
	assert_int_equal(mem_init(&m, RAM, NULL), 0);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(loader_load_image(&m, img, IMG_SIZE, NULL, 0, NULL, &st, NULL), 0);
	assert_int_equal(gpa_read(&m, BZ_ZERO_PAGE_GPA, zp, sizeof(zp), NULL), 0);
	assert_int_equal(get(zp, BZ_RAMDISK_IMAGE, 4) | get(zp, BZ_RAMDISK_SIZE, 4), 0);
	assert_int_equal(st.rip, BZ_KERNEL_GPA);
	mem_destroy(&m);
}

/* Load img (@len bytes) expecting failure with @want in the message and RAM untouched. */
static void expect_reject(size_t len, uint64_t ram, size_t rd_len, const char *cmdline,
                          const char *want)
{
	struct guest_mem m;
	struct hv_error err = {0};
	uint8_t buf[64], zero[64] = {0};

	assert_int_equal(mem_init(&m, ram, NULL), 0);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(
	    loader_load_image(&m, img, len, rd_len ? rd : NULL, rd_len, cmdline, &st, &err), -1);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' does not contain '%s'", err.msg, want);
	assert_int_equal(gpa_read(&m, BZ_KERNEL_GPA, buf, 64, NULL), 0);
	assert_memory_equal(buf, zero, 64);
	assert_int_equal(gpa_read(&m, BZ_ZERO_PAGE_GPA + BZ_HDR_START, buf, 64, NULL), 0);
	assert_memory_equal(buf, zero, 64);
	assert_int_equal(st.rip, 0xfff0);
	mem_destroy(&m);
}

static void test_rejects(void **state)
{
	char *longcl;

	img_build(), img[BZ_MAGIC] = 'X';
	expect_reject(IMG_SIZE, RAM, 0, NULL, "not an ELF file (PVH kernel) nor a Linux bzImage");
	img_build();
	expect_reject(BZ_MAGIC + 4, RAM, 0, NULL, "truncated setup header");
	expect_reject(0x240, RAM, 0, NULL, "truncated setup header");
	img_build(), put(BZ_VERSION, 0x204, 2);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "boot protocol 2.04 is too old, need 2.06");
	img_build(), put(BZ_JUMP + 1, 0x30, 1);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "setup header ends at 0x232");
	img_build(), put(BZ_JUMP + 1, 0x50, 1); /* 2.15 but ends before init_size */
	expect_reject(IMG_SIZE, RAM, 0, NULL, "setup header ends at 0x252");
	img_build(), put(BZ_BOOT_FLAG, 0x1234, 2);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "boot flag 0x1234");
	img_build(), put(BZ_LOADFLAGS, 0, 1);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "LOADED_HIGH");
	img_build(), put(BZ_SETUP_SECTS, 2, 1);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "covers the whole 1536-byte file");
	img_build(), put(BZ_SETUP_SECTS, 0, 1); /* 0 means 4: 2560 bytes of setup */
	expect_reject(IMG_SIZE, RAM, 0, NULL, "setup code (4 sectors)");
	img_build(), put(BZ_SYSSIZE, 0xffffffff, 4);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "truncated kernel");
	img_build(), put(BZ_PREF_ADDRESS, 0xffffffff00000000ULL, 8);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "pref_address");
	img_build(), put(BZ_INIT_SIZE, 0xffffffff, 4);
	expect_reject(IMG_SIZE, RAM, 0, NULL, "kernel needs guest RAM up to 4112 MiB");
	img_build();
	expect_reject(IMG_SIZE, 16ULL << 20, 0, NULL, "kernel needs guest RAM up to 18 MiB");
	expect_reject(IMG_SIZE, 18ULL << 20, RD_SIZE, NULL, "initrd of 4 KiB does not fit");
	img_build(), put(BZ_INITRD_ADDR_MAX, 0x1200fff, 4); /* just above the kernel: 4 KiB */
	expect_reject(IMG_SIZE, RAM, RD_SIZE, NULL, "initrd");
	img_build(), put(BZ_CMDLINE_SIZE, 8, 4);
	expect_reject(IMG_SIZE, RAM, 0, "console=ttyS0", "longer than the kernel's cmdline_size");

	img_build();
	longcl = malloc(BZ_CMDLINE_MAX + 1);
	memset(longcl, 'a', BZ_CMDLINE_MAX);
	longcl[BZ_CMDLINE_MAX] = '\0';
	expect_reject(IMG_SIZE, RAM, 0, longcl, "command line");
	free(longcl);

	/* An ELF is a PVH kernel, and a PVH kernel takes no initrd. */
	img_build(), memcpy(img, "\177ELF", 4);
	expect_reject(IMG_SIZE, RAM, RD_SIZE, NULL, "a PVH kernel takes no initrd");
	expect_reject(IMG_SIZE, RAM, 0, NULL, "ELF");
}

/* The initrd lies page-aligned just below initrd_addr_max when that is below RAM's end. */
static void test_initrd_addr_max(void **state)
{
	struct guest_mem m;
	uint8_t zp[4096];

	img_build();
	put(BZ_INITRD_ADDR_MAX, 0x1800000 - 1, 4);
	assert_int_equal(mem_init(&m, RAM, NULL), 0);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(bzimage_load(&m, img, IMG_SIZE, rd, RD_SIZE, NULL, &st, NULL), 0);
	assert_int_equal(gpa_read(&m, BZ_ZERO_PAGE_GPA, zp, sizeof(zp), NULL), 0);
	assert_int_equal(get(zp, BZ_RAMDISK_IMAGE, 4), (0x1800000 - RD_SIZE) & ~0xfffULL);
	mem_destroy(&m);
}

/* Files: the path prefixes messages; a missing initrd is named. */
static void test_load_files(void **state)
{
	char path[] = "/tmp/hv-test-bz-XXXXXX";
	struct guest_mem m;
	struct hv_error err = {0};
	int fd;

	img_build();
	assert_int_equal(mem_init(&m, RAM, NULL), 0);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, IMG_SIZE), IMG_SIZE);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(loader_load_kernel(&m, path, NULL, "x=1", &st, &err), 0);
	assert_int_equal(loader_load_kernel(&m, path, "/nonexistent/initrd", NULL, &st, &err), -1);
	assert_string_equal(err.msg, "/nonexistent/initrd: No such file or directory");
	assert_int_equal(loader_load_kernel(&m, path, "/tmp", NULL, &st, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	img[BZ_MAGIC] = 'X';
	assert_int_equal(pwrite(fd, img, IMG_SIZE, 0), IMG_SIZE);
	assert_int_equal(loader_load_kernel(&m, path, NULL, NULL, &st, &err), -1);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, ": not an ELF file"));
	close(fd);
	unlink(path);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_kernel), cmocka_unit_test(test_no_initrd),
	    cmocka_unit_test(test_rejects),     cmocka_unit_test(test_initrd_addr_max),
	    cmocka_unit_test(test_load_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
