/*
 * test_pvh.c - the PVH loader: a good kernel boots with the documented start state and
 * boot data; a malformed one is refused with a message naming the fault, before a single
 * byte of guest RAM is written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <elf.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv/dirty.h"
#include "hv/loader/pvh.h"

#define IMG_SIZE 1024
#define TEXT_OFF 256
#define DATA_OFF 512
#define NOTE_OFF 768
#define ENTRY    0x100010

struct img {
	uint8_t b[IMG_SIZE];
	Elf64_Ehdr *eh;
	Elf64_Phdr *text, *data, *note;
	Elf64_Nhdr *nh;
};

/* A minimal PVH kernel: text at 1 MiB, data+bss at 1 MiB + 4 KiB, one Xen note. */
static void img_build(struct img *im)
{
	memset(im, 0, sizeof(*im));
	im->eh = (Elf64_Ehdr *)im->b;
	memcpy(im->eh->e_ident, ELFMAG, SELFMAG);
	im->eh->e_ident[EI_CLASS] = ELFCLASS64;
	im->eh->e_ident[EI_DATA] = ELFDATA2LSB;
	im->eh->e_ident[EI_VERSION] = EV_CURRENT;
	im->eh->e_type = ET_EXEC;
	im->eh->e_machine = EM_X86_64;
	im->eh->e_version = EV_CURRENT;
	im->eh->e_entry = 0xffffffff81000000ULL; /* ignored: PVH uses the note */
	im->eh->e_phoff = sizeof(Elf64_Ehdr);
	im->eh->e_ehsize = sizeof(Elf64_Ehdr);
	im->eh->e_phentsize = sizeof(Elf64_Phdr);
	im->eh->e_phnum = 3;

	im->text = (Elf64_Phdr *)(im->b + sizeof(Elf64_Ehdr));
	im->data = im->text + 1;
	im->note = im->text + 2;
	*im->text = (Elf64_Phdr){.p_type = PT_LOAD,
	                         .p_flags = PF_R | PF_X,
	                         .p_offset = TEXT_OFF,
	                         .p_paddr = 0x100000,
	                         .p_filesz = 64,
	                         .p_memsz = 64};
	*im->data = (Elf64_Phdr){.p_type = PT_LOAD,
	                         .p_flags = PF_R | PF_W,
	                         .p_offset = DATA_OFF,
	                         .p_paddr = 0x101000,
	                         .p_filesz = 16,
	                         .p_memsz = 0x2000};
	*im->note =
	    (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = NOTE_OFF, .p_filesz = 20, .p_align = 4};
	for (int i = 0; i < 64; i++)
		im->b[TEXT_OFF + i] = (uint8_t)(0x90 + i);
	memset(im->b + DATA_OFF, 0xda, 16);
	im->nh = (Elf64_Nhdr *)(im->b + NOTE_OFF);
	*im->nh = (Elf64_Nhdr){.n_namesz = 4, .n_descsz = 4, .n_type = XEN_ELFNOTE_PHYS32_ENTRY};
	memcpy(im->b + NOTE_OFF + 12, "Xen", 4);
	*(uint32_t *)(im->b + NOTE_OFF + 16) = ENTRY;
}

static struct x86_state st;

static void test_good_kernel(void **state)
{
	struct guest_mem m;
	struct img im;
	struct hvm_start_info si;
	struct hvm_memmap_table_entry map[3];
	struct hv_error err = {0};
	uint8_t buf[64];
	char cl[32];
	uint64_t *dirty;

	img_build(&im);
	assert_int_equal(mem_init(&m, 4 << 20, NULL), 0);
	memset(m.slot[0].hva + 0x101010, 0xcc, 64); /* stale bytes where the bss goes */
	dirty_start(&m);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(pvh_load(&m, im.b, sizeof(im.b), "console=ttyS0", &st, &err), 0);

	assert_int_equal(gpa_read(&m, 0x100000, buf, 64, NULL), 0);
	assert_memory_equal(buf, im.b + TEXT_OFF, 64);
	assert_int_equal(gpa_read(&m, 0x101000, buf, 64, NULL), 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(buf[i], i < 16 ? 0xda : 0); /* bss zeroed */

	assert_int_equal(gpa_read(&m, PVH_START_INFO_GPA, &si, sizeof(si), NULL), 0);
	assert_int_equal(si.magic, XEN_HVM_START_MAGIC_VALUE);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.cmdline_paddr, PVH_CMDLINE_GPA);
	assert_int_equal(si.memmap_entries, 3);
	assert_int_equal(gpa_read(&m, si.cmdline_paddr, cl, sizeof(cl), NULL), 0);
	assert_string_equal(cl, "console=ttyS0");
	assert_int_equal(gpa_read(&m, si.memmap_paddr, map, sizeof(map), NULL), 0);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, 0xa0000);
	assert_int_equal(map[0].type, XEN_HVM_MEMMAP_TYPE_RAM);
	assert_int_equal(map[1].addr, 0xa0000);
	assert_int_equal(map[1].type, XEN_HVM_MEMMAP_TYPE_RESERVED);
	assert_int_equal(map[2].addr, 0x100000);
	assert_int_equal(map[2].size, (4 << 20) - 0x100000);
	assert_int_equal(map[2].type, XEN_HVM_MEMMAP_TYPE_RAM);

	assert_int_equal(st.rip, ENTRY);
	assert_int_equal(st.gpr[X86_RBX], PVH_START_INFO_GPA);
	assert_int_equal(st.cr0, X86_CR0_PE | X86_CR0_ET);
	assert_int_equal(st.seg[X86_CS].selector, 0x10);
	assert_int_equal(st.seg[X86_CS].db, 1);
	assert_int_equal(st.seg[X86_CS].limit, 0xffffffff);
	assert_int_equal(st.seg[X86_DS].selector, 0x18);
	assert_int_equal(st.rflags & X86_IF, 0);

	/* Loader writes reach the dirty log like any other write. */
	dirty = calloc(dirty_bitmap_words(&m), 8);
	dirty_harvest(&m, dirty);
	assert_true(dirty[0x100000 / 4096 / 64] >> (0x100 % 64) & 1);
	assert_true(dirty[0x6000 / 4096 / 64] >> 6 & 1);
	free(dirty);
	mem_destroy(&m);
}

static void test_entry_desc8(void **state)
{
	struct guest_mem m;
	struct img im;
	uint64_t e = ENTRY + 4;

	img_build(&im);
	im.nh->n_descsz = 8;
	im.note->p_filesz = 24;
	memcpy(im.b + NOTE_OFF + 16, &e, 8);
	assert_int_equal(mem_init(&m, 4 << 20, NULL), 0);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(pvh_load(&m, im.b, sizeof(im.b), NULL, &st, NULL), 0);
	assert_int_equal(st.rip, ENTRY + 4);
	mem_destroy(&m);
}

/* Load @im (@len bytes) expecting failure with @want in the message and RAM untouched. */
static void expect_reject(struct img *im, size_t len, const char *cmdline, const char *want)
{
	struct guest_mem m;
	struct hv_error err = {0};
	uint8_t buf[64], zero[64] = {0};

	assert_int_equal(mem_init(&m, 4 << 20, NULL), 0);
	x86_state_reset(&st, 0, 1);
	assert_int_equal(pvh_load(&m, im->b, len, cmdline, &st, &err), -1);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' does not contain '%s'", err.msg, want);
	assert_int_equal(gpa_read(&m, 0x100000, buf, 64, NULL), 0);
	assert_memory_equal(buf, zero, 64);
	assert_int_equal(gpa_read(&m, PVH_START_INFO_GPA, buf, 64, NULL), 0);
	assert_memory_equal(buf, zero, 64);
	assert_int_equal(st.rip, 0xfff0);
	mem_destroy(&m);
}

static void test_rejects(void **state)
{
	struct img im;
	char *longcl;

	img_build(&im);
	expect_reject(&im, 40, NULL, "truncated ELF header");
	expect_reject(&im, 3, NULL, "not an ELF file");
	img_build(&im), im.b[1] = 'X';
	expect_reject(&im, IMG_SIZE, NULL, "not an ELF file");
	img_build(&im), im.eh->e_ident[EI_CLASS] = ELFCLASS32;
	expect_reject(&im, IMG_SIZE, NULL, "ELFCLASS64");
	img_build(&im), im.eh->e_ident[EI_DATA] = ELFDATA2MSB;
	expect_reject(&im, IMG_SIZE, NULL, "little-endian");
	img_build(&im), im.eh->e_machine = EM_386;
	expect_reject(&im, IMG_SIZE, NULL, "want x86-64");
	img_build(&im), im.eh->e_type = ET_DYN;
	expect_reject(&im, IMG_SIZE, NULL, "ET_EXEC");
	img_build(&im), im.eh->e_phoff = IMG_SIZE - 100;
	expect_reject(&im, IMG_SIZE, NULL, "program header table");
	img_build(&im), im.eh->e_phoff = UINT64_MAX - 8;
	expect_reject(&im, IMG_SIZE, NULL, "program header table");
	img_build(&im), im.eh->e_phentsize = 32;
	expect_reject(&im, IMG_SIZE, NULL, "program header size");
	img_build(&im), im.eh->e_phnum = 0;
	expect_reject(&im, IMG_SIZE, NULL, "no program headers");
	img_build(&im), im.text->p_offset = IMG_SIZE - 10;
	expect_reject(&im, IMG_SIZE, NULL, "lies outside the 1024-byte file");
	img_build(&im), im.text->p_offset = UINT64_MAX - 10;
	expect_reject(&im, IMG_SIZE, NULL, "lies outside");
	img_build(&im), im.data->p_filesz = 0x3000;
	expect_reject(&im, IMG_SIZE, NULL, "larger than memory size");
	img_build(&im), im.data->p_paddr = (4 << 20) - 0x1000;
	expect_reject(&im, IMG_SIZE, NULL, "does not fit in guest RAM");
	img_build(&im), im.data->p_paddr = UINT64_MAX - 0xfff;
	expect_reject(&im, IMG_SIZE, NULL, "does not fit in guest RAM");
	img_build(&im), im.data->p_paddr = 0x5000;
	expect_reject(&im, IMG_SIZE, NULL, "overlaps the boot data");
	img_build(&im), im.data->p_paddr = 0x100020;
	expect_reject(&im, IMG_SIZE, NULL, "overlaps segment");
	img_build(&im), im.nh->n_descsz = 0xfffffff0;
	expect_reject(&im, IMG_SIZE, NULL, "runs past the PT_NOTE segment");
	img_build(&im), im.nh->n_namesz = 0xfffffffc;
	expect_reject(&im, IMG_SIZE, NULL, "runs past the PT_NOTE segment");
	img_build(&im), im.nh->n_descsz = 2;
	expect_reject(&im, IMG_SIZE, NULL, "want 4 or 8");
	img_build(&im), im.note->p_filesz = 4096;
	expect_reject(&im, IMG_SIZE, NULL, "PT_NOTE");
	img_build(&im), im.nh->n_type = 17;
	expect_reject(&im, IMG_SIZE, NULL, "not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note");
	img_build(&im), memcpy(im.b + NOTE_OFF + 12, "Xyz", 4);
	expect_reject(&im, IMG_SIZE, NULL, "no XEN_ELFNOTE_PHYS32_ENTRY");
	img_build(&im), im.note->p_type = PT_NULL;
	expect_reject(&im, IMG_SIZE, NULL, "no XEN_ELFNOTE_PHYS32_ENTRY");
	img_build(&im), *(uint32_t *)(im.b + NOTE_OFF + 16) = 0x200000;
	expect_reject(&im, IMG_SIZE, NULL, "not inside a loaded segment");
	img_build(&im), im.text->p_type = PT_NULL, im.data->p_type = PT_NULL;
	expect_reject(&im, IMG_SIZE, NULL, "no loadable");

	img_build(&im);
	longcl = malloc(PVH_CMDLINE_MAX + 1);
	memset(longcl, 'a', PVH_CMDLINE_MAX);
	longcl[PVH_CMDLINE_MAX] = '\0';
	expect_reject(&im, IMG_SIZE, longcl, "command line");
	free(longcl);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/hv-test-pvh-XXXXXX";
	struct guest_mem m;
	struct hv_error err = {0};
	struct img im;
	int fd;

	assert_int_equal(mem_init(&m, 4 << 20, NULL), 0);
	assert_int_equal(pvh_load_file(&m, "/nonexistent/kernel.elf", NULL, &st, &err), -1);
	assert_string_equal(err.msg, "/nonexistent/kernel.elf: No such file or directory");

	img_build(&im);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, im.b, sizeof(im.b)), sizeof(im.b));
	x86_state_reset(&st, 0, 1);
	assert_int_equal(pvh_load_file(&m, path, "x=1", &st, &err), 0);
	assert_int_equal(st.rip, ENTRY);

	im.nh->n_type = 1;
	assert_int_equal(pwrite(fd, im.b, sizeof(im.b), 0), sizeof(im.b));
	assert_int_equal(pvh_load_file(&m, path, NULL, &st, &err), -1);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, ": not a PVH kernel"));
	close(fd);
	unlink(path);
	assert_int_equal(pvh_load_file(&m, "/tmp", NULL, &st, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_kernel),
	    cmocka_unit_test(test_entry_desc8),
	    cmocka_unit_test(test_rejects),
	    cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
