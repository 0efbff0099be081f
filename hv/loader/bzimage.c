/*
 * bzimage.c - the Linux x86 boot protocol: a bzImage, an initrd and a command line.
 *
 * The image is untrusted input. Every header field is read with a bounds-checked copy,
 * checked before use, and every sum is checked for overflow; the whole load is planned
 * (bz_plan) before the first byte is written to the guest, so a rejected kernel leaves RAM
 * untouched and the message names the field at fault. The zero page is built in a host
 * buffer and written once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hv/loader/bzimage.h"

#define MIB         0x100000ULL
#define VGA_START   0xa0000ULL /* 640 KiB: legacy VGA and BIOS area up to 1 MiB */
#define PAGE        4096ULL
#define OLD_ADDRMAX 0x37ffffffULL /* initrd_addr_max before protocol 2.03 */

struct bz_e820 {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

struct bz_plan {
	uint16_t version;
	size_t hdr_end;      /* the setup header is image[BZ_HDR_START, hdr_end) */
	size_t setup_size;   /* bytes of real-mode setup before the protected-mode kernel */
	size_t pm_size;      /* bytes of protected-mode kernel */
	uint64_t kernel_end; /* first byte above all RAM the kernel needs while booting */
	uint64_t initrd_gpa;
	struct bz_e820 e820[BZ_E820_MAX];
	unsigned ne820;
};

static uint64_t rd(const uint8_t *img, size_t off, unsigned n)
{
	uint64_t v = 0;

	memcpy(&v, img + off, n); /* little-endian host, like the guest */
	return v;
}

static void wr(uint8_t *zp, size_t off, uint64_t v, unsigned n)
{
	memcpy(zp + off, &v, n);
}

bool bzimage_probe(const void *image, size_t len)
{
	return len >= BZ_MAGIC + 4 && !memcmp((const uint8_t *)image + BZ_MAGIC, "HdrS", 4);
}

static int e820_add(struct bz_plan *p, uint64_t a, uint64_t e, uint32_t type)
{
	struct bz_e820 *last = p->ne820 ? &p->e820[p->ne820 - 1] : NULL;

	if (a >= e)
		return 0;
	if (last && last->type == type && last->addr + last->size == a) {
		last->size += e - a;
		return 0;
	}
	if (p->ne820 == BZ_E820_MAX)
		return -1;
	p->e820[p->ne820++] = (struct bz_e820){.addr = a, .size = e - a, .type = type};
	return 0;
}

/* RAM below 640 KiB, 640 KiB-1 MiB reserved, then every slot's RAM as it is laid out. */
static int bz_e820(struct guest_mem *m, struct bz_plan *p, struct hv_error *err)
{
	int rc = 0;

	p->ne820 = 0;
	for (int i = 0; i < m->nslots; i++) {
		uint64_t a = m->slot[i].gpa, e = a + m->slot[i].size;

		if (a < MIB) {
			rc |= e820_add(p, a, e < VGA_START ? e : VGA_START, BZ_E820_RAM);
			rc |= e820_add(p, a > VGA_START ? a : VGA_START, e < MIB ? e : MIB,
			               BZ_E820_RESERVED);
			rc |= e820_add(p, a > MIB ? a : MIB, e, BZ_E820_RAM);
		} else {
			rc |= e820_add(p, a, e, BZ_E820_RAM);
		}
	}
	if (rc)
		return hv_fail(err, E2BIG, "e820 map: more than %d entries", BZ_E820_MAX);
	return 0;
}

/* The setup header: magic, version, sizes. Fills p->version, hdr_end, setup/pm size. */
static int bz_header(const uint8_t *img, size_t len, struct bz_plan *p, struct hv_error *err)
{
	unsigned sects;
	uint64_t syssize;

	if (!bzimage_probe(img, len))
		return hv_fail(err, ENOEXEC, "not a Linux bzImage: no \"HdrS\" at offset 0x%x",
		               BZ_MAGIC);
	if (len < BZ_VERSION + 2)
		return hv_fail(err, ENOEXEC, "truncated setup header (%zu-byte file)", len);
	p->version = (uint16_t)rd(img, BZ_VERSION, 2);
	if (p->version < BZ_MIN_VERSION)
		return hv_fail(
		    err, ENOEXEC, "boot protocol %u.%02u is too old, need %u.%02u or later",
		    p->version >> 8, p->version & 0xff, BZ_MIN_VERSION >> 8, BZ_MIN_VERSION & 0xff);
	p->hdr_end = 0x202 + (size_t)img[BZ_JUMP + 1];
	if (p->hdr_end < (p->version >= 0x20a ? BZ_INIT_SIZE + 4 : BZ_CMDLINE_SIZE + 4))
		return hv_fail(err, ENOEXEC,
		               "setup header ends at 0x%zx, before the protocol %u.%02u fields",
		               p->hdr_end, p->version >> 8, p->version & 0xff);
	if (p->hdr_end > BZ_HDR_LIMIT)
		p->hdr_end = BZ_HDR_LIMIT; /* newer fields we do not know: boot_params ends */
	if (len < p->hdr_end)
		return hv_fail(err, ENOEXEC,
		               "truncated setup header: %zu-byte file, header "
		               "ends at 0x%zx",
		               len, p->hdr_end);
	if (rd(img, BZ_BOOT_FLAG, 2) != 0xaa55)
		return hv_fail(err, ENOEXEC, "boot flag 0x%04x at offset 0x%x, want 0xaa55",
		               (unsigned)rd(img, BZ_BOOT_FLAG, 2), BZ_BOOT_FLAG);
	if (!(img[BZ_LOADFLAGS] & BZ_LOADED_HIGH))
		return hv_fail(err, ENOEXEC,
		               "loadflags 0x%02x lack LOADED_HIGH: a zImage loading below 1 MiB "
		               "is not supported",
		               img[BZ_LOADFLAGS]);
	sects = img[BZ_SETUP_SECTS] ? img[BZ_SETUP_SECTS] : 4;
	p->setup_size = ((size_t)sects + 1) * 512;
	if (p->setup_size >= len)
		return hv_fail(err, ENOEXEC,
		               "setup code (%u sectors) covers the whole %zu-byte file: no "
		               "protected-mode kernel",
		               sects, len);
	p->pm_size = len - p->setup_size;
	syssize = rd(img, BZ_SYSSIZE, 4) * 16;
	if (syssize > p->pm_size)
		return hv_fail(err, ENOEXEC,
		               "truncated kernel: syssize says %llu bytes after the setup code, "
		               "the file has %zu",
		               (unsigned long long)syssize, p->pm_size);
	return 0;
}

/* Where the kernel runs: it needs RAM up to kernel_end while it decompresses. */
static int bz_kernel_room(struct guest_mem *m, const uint8_t *img, struct bz_plan *p,
                          struct hv_error *err)
{
	uint64_t end = BZ_KERNEL_GPA + p->pm_size;

	if (p->version >= 0x20a) {
		uint64_t pref = rd(img, BZ_PREF_ADDRESS, 8);
		uint64_t init = rd(img, BZ_INIT_SIZE, 4);
		uint64_t base = pref > BZ_KERNEL_GPA ? pref : BZ_KERNEL_GPA;

		if (pref >= MEM_LOW_END)
			return hv_fail(err, ENOEXEC,
			               "pref_address 0x%llx is not in low RAM (below 0x%llx)",
			               (unsigned long long)pref, MEM_LOW_END);
		if (base + init > end)
			end = base + init;
	}
	p->kernel_end = end;
	if (!gpa_is_ram(m, 0, end))
		return hv_fail(err, ENOEXEC,
		               "kernel needs guest RAM up to %llu MiB while it boots, the VM has "
		               "%llu MiB of low RAM (use a larger --memory)",
		               (unsigned long long)((end + MIB - 1) >> 20),
		               (unsigned long long)(m->nslots ? m->slot[0].size >> 20 : 0));
	return 0;
}

/* The initrd goes as high as it can: below low RAM's end and initrd_addr_max. */
static int bz_initrd(struct guest_mem *m, const uint8_t *img, size_t initrd_len, struct bz_plan *p,
                     struct hv_error *err)
{
	uint64_t addr_max = p->version >= 0x203 ? rd(img, BZ_INITRD_ADDR_MAX, 4) : OLD_ADDRMAX;
	uint64_t top = m->nslots && m->slot[0].gpa == 0 ? m->slot[0].size : 0;

	p->initrd_gpa = 0;
	if (!initrd_len)
		return 0;
	if (initrd_len > 0xffffffffULL)
		return hv_fail(err, EFBIG, "initrd of %zu bytes: at most 4 GiB", initrd_len);
	if (top > addr_max + 1)
		top = addr_max + 1;
	if (top < p->kernel_end || top - p->kernel_end < initrd_len)
		return hv_fail(err, EFBIG,
		               "initrd of %llu KiB does not fit between the kernel (up to %llu "
		               "MiB) and 0x%llx (end of low RAM or initrd_addr_max); use a "
		               "larger --memory",
		               (unsigned long long)(initrd_len >> 10),
		               (unsigned long long)((p->kernel_end + MIB - 1) >> 20),
		               (unsigned long long)top);
	p->initrd_gpa = (top - initrd_len) & ~(PAGE - 1);
	if (p->initrd_gpa < p->kernel_end)
		return hv_fail(err, EFBIG,
		               "initrd of %zu bytes: no page-aligned place above the "
		               "kernel",
		               initrd_len);
	return 0;
}

/* Validate everything; fill @p. Touches no guest memory. */
static int bz_plan(struct guest_mem *m, const uint8_t *img, size_t len, size_t initrd_len,
                   size_t cl, struct bz_plan *p, struct hv_error *err)
{
	uint64_t cmdline_size;

	memset(p, 0, sizeof(*p));
	if (bz_header(img, len, p, err) < 0)
		return -1;
	cmdline_size = rd(img, BZ_CMDLINE_SIZE, 4);
	if (cl > cmdline_size)
		return hv_fail(err, E2BIG,
		               "command line of %zu bytes is longer than the kernel's cmdline_size "
		               "(%llu)",
		               cl, (unsigned long long)cmdline_size);
	if (!gpa_is_ram(m, BZ_ZERO_PAGE_GPA, PAGE) || !gpa_is_ram(m, BZ_CMDLINE_GPA, cl + 1))
		return hv_fail(err, ENOEXEC, "guest RAM does not cover the boot data at 0x%llx",
		               BZ_ZERO_PAGE_GPA);
	if (bz_kernel_room(m, img, p, err) < 0 || bz_initrd(m, img, initrd_len, p, err) < 0)
		return -1;
	return bz_e820(m, p, err);
}

/* The zero page: the image's setup header, what the boot loader fills in, the e820 map. */
static void bz_zero_page(uint8_t *zp, const uint8_t *img, const struct bz_plan *p,
                         size_t initrd_len)
{
	memset(zp, 0, PAGE);
	memcpy(zp + BZ_HDR_START, img + BZ_HDR_START, p->hdr_end - BZ_HDR_START);
	wr(zp, BZ_TYPE_OF_LOADER, 0xff, 1); /* "undefined" boot loader */
	wr(zp, BZ_LOADFLAGS, (zp[BZ_LOADFLAGS] | BZ_CAN_USE_HEAP) & ~0x20 /* QUIET */, 1);
	wr(zp, BZ_HEAP_END_PTR, 0xfe00, 2);
	wr(zp, BZ_CODE32_START, BZ_KERNEL_GPA, 4);
	wr(zp, BZ_CMD_LINE_PTR, BZ_CMDLINE_GPA, 4);
	wr(zp, BZ_RAMDISK_IMAGE, p->initrd_gpa, 4);
	wr(zp, BZ_RAMDISK_SIZE, initrd_len, 4);
	wr(zp, BZ_E820_ENTRIES, p->ne820, 1);
	memcpy(zp + BZ_E820_TABLE, p->e820, p->ne820 * sizeof(p->e820[0]));
}

int bzimage_load(struct guest_mem *m, const void *image, size_t len, const void *initrd,
                 size_t initrd_len, const char *cmdline, struct x86_state *entry,
                 struct hv_error *err)
{
	const uint8_t *img = image;
	size_t cl = cmdline ? strlen(cmdline) : 0;
	struct bz_plan *p;
	uint8_t *zp;
	int rc = -1;

	if (!initrd)
		initrd_len = 0;
	if (cl >= BZ_CMDLINE_MAX)
		return hv_fail(err, E2BIG, "command line of %zu bytes is longer than %d", cl,
		               BZ_CMDLINE_MAX - 1);
	p = malloc(sizeof(*p));
	zp = malloc(PAGE);
	if (!p || !zp) {
		hv_fail(err, ENOMEM, "out of memory");
		goto out;
	}
	if (bz_plan(m, img, len, initrd_len, cl, p, err) < 0)
		goto out;

	bz_zero_page(zp, img, p, initrd_len);
	if (gpa_write(m, BZ_KERNEL_GPA, img + p->setup_size, p->pm_size, err) < 0 ||
	    (initrd_len && gpa_write(m, p->initrd_gpa, initrd, initrd_len, err) < 0) ||
	    gpa_write(m, BZ_CMDLINE_GPA, cmdline ? cmdline : "", cl + 1, err) < 0 ||
	    gpa_write(m, BZ_ZERO_PAGE_GPA, zp, PAGE, err) < 0)
		goto out;

	x86_state_flat32(entry);
	entry->rip = BZ_KERNEL_GPA;
	entry->gpr[X86_RSI] = BZ_ZERO_PAGE_GPA;
	entry->gpr[X86_RBX] = entry->gpr[X86_RBP] = entry->gpr[X86_RDI] = 0;
	rc = 0;
out:
	free(zp);
	free(p);
	return rc;
}
