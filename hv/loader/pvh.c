/*
 * pvh.c - the PVH kernel loader.
 *
 * The image is untrusted input: every header is copied out of it before it is checked,
 * every offset and size is checked for overflow and against the file and guest RAM, and
 * the whole image is validated (pvh_plan) before the first byte is written to the guest,
 * so a rejected kernel leaves RAM untouched and the message names the field at fault.
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hv/loader/loader.h"
#include "hv/loader/pvh.h"

struct pvh_seg {
	uint64_t paddr, memsz, off, filesz;
};

struct pvh_plan {
	struct pvh_seg seg[PVH_MAX_PHDRS];
	int nseg;
	uint64_t entry;
	bool have_entry;
};

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Walk the notes of one PT_NOTE segment, looking for Xen's PHYS32 entry. */
static int pvh_notes(const uint8_t *img, const Elf64_Phdr *ph, int idx, struct pvh_plan *p,
                     struct hv_error *err)
{
	const uint8_t *base = img + ph->p_offset;
	uint64_t end = ph->p_filesz, pos = 0;
	uint64_t a = ph->p_align == 8 ? 8 : 4;

	while (end - pos >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		uint64_t name_off, desc_off, next;

		memcpy(&nh, base + pos, sizeof(nh));
		name_off = pos + sizeof(nh);
		desc_off = name_off + align_up(nh.n_namesz, a);
		if (desc_off > end || nh.n_descsz > end - desc_off)
			return hv_fail(err, EINVAL,
			               "program header %d: note at offset %llu (name %u bytes, "
			               "descriptor %u bytes) runs past the PT_NOTE segment",
			               idx, (unsigned long long)pos, nh.n_namesz, nh.n_descsz);
		next = desc_off + align_up(nh.n_descsz, a);
		if (nh.n_namesz == 4 && !memcmp(base + name_off, "Xen", 4) &&
		    nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && !p->have_entry) {
			if (nh.n_descsz == 4) {
				uint32_t e;
				memcpy(&e, base + desc_off, 4);
				p->entry = e;
			} else if (nh.n_descsz == 8) {
				memcpy(&p->entry, base + desc_off, 8);
			} else {
				return hv_fail(err, EINVAL,
				               "XEN_ELFNOTE_PHYS32_ENTRY note: descriptor of %u "
				               "bytes (want 4 or 8)",
				               nh.n_descsz);
			}
			if (p->entry > 0xffffffffULL)
				return hv_fail(err, EINVAL,
				               "XEN_ELFNOTE_PHYS32_ENTRY 0x%llx is above 4 GiB",
				               (unsigned long long)p->entry);
			p->have_entry = true;
		}
		pos = next < end ? next : end; /* the last note may lack its padding */
	}
	return 0;
}

static int pvh_ehdr(const uint8_t *img, size_t len, Elf64_Ehdr *eh, struct hv_error *err)
{
	if (len < SELFMAG || memcmp(img, ELFMAG, SELFMAG))
		return hv_fail(err, ENOEXEC, "not an ELF file");
	if (len < sizeof(*eh))
		return hv_fail(err, ENOEXEC, "truncated ELF header (%zu of %zu bytes)", len,
		               sizeof(*eh));
	if (img[EI_CLASS] != ELFCLASS64)
		return hv_fail(err, ENOEXEC, "ELF class %u, want ELFCLASS64 (64-bit)",
		               img[EI_CLASS]);
	if (img[EI_DATA] != ELFDATA2LSB)
		return hv_fail(err, ENOEXEC, "ELF data encoding %u, want little-endian",
		               img[EI_DATA]);
	memcpy(eh, img, sizeof(*eh));
	if (eh->e_machine != EM_X86_64)
		return hv_fail(err, ENOEXEC, "ELF machine %u, want x86-64 (%u)", eh->e_machine,
		               EM_X86_64);
	if (eh->e_type != ET_EXEC)
		return hv_fail(err, ENOEXEC, "ELF type %u, want an executable (ET_EXEC)",
		               eh->e_type);
	if (eh->e_ehsize < sizeof(*eh))
		return hv_fail(err, ENOEXEC, "ELF header size %u, want %zu", eh->e_ehsize,
		               sizeof(*eh));
	if (eh->e_phnum == 0)
		return hv_fail(err, ENOEXEC, "no program headers");
	if (eh->e_phnum > PVH_MAX_PHDRS)
		return hv_fail(err, ENOEXEC, "%u program headers, at most %d supported",
		               eh->e_phnum, PVH_MAX_PHDRS);
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return hv_fail(err, ENOEXEC, "program header size %u, want %zu", eh->e_phentsize,
		               sizeof(Elf64_Phdr));
	if (eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return hv_fail(err, ENOEXEC,
		               "program header table (offset %llu, %u entries) lies outside "
		               "the %zu-byte file",
		               (unsigned long long)eh->e_phoff, eh->e_phnum, len);
	return 0;
}

static int pvh_load_seg(struct guest_mem *m, const Elf64_Phdr *ph, int i, size_t len,
                        struct pvh_plan *p, struct hv_error *err)
{
	struct pvh_seg s = {ph->p_paddr, ph->p_memsz, ph->p_offset, ph->p_filesz};

	if (s.filesz > s.memsz)
		return hv_fail(err, ENOEXEC,
		               "program header %d: file size %llu is larger than memory size %llu",
		               i, (unsigned long long)s.filesz, (unsigned long long)s.memsz);
	if (s.off > len || s.filesz > len - s.off)
		return hv_fail(err, ENOEXEC,
		               "program header %d: data (offset %llu, %llu bytes) lies outside "
		               "the %zu-byte file",
		               i, (unsigned long long)s.off, (unsigned long long)s.filesz, len);
	if (s.memsz == 0)
		return 0;
	if (s.paddr + s.memsz < s.paddr || !gpa_is_ram(m, s.paddr, s.memsz))
		return hv_fail(err, ENOEXEC,
		               "program header %d: segment 0x%llx-0x%llx does not fit in guest RAM "
		               "(%llu MiB)",
		               i, (unsigned long long)s.paddr,
		               (unsigned long long)(s.paddr + s.memsz - 1),
		               (unsigned long long)(m->ram_size >> 20));
	if (overlaps(s.paddr, s.memsz, PVH_BOOT_START, PVH_BOOT_END - PVH_BOOT_START))
		return hv_fail(err, ENOEXEC,
		               "program header %d: segment 0x%llx-0x%llx overlaps the boot data "
		               "area 0x%llx-0x%llx",
		               i, (unsigned long long)s.paddr,
		               (unsigned long long)(s.paddr + s.memsz - 1), PVH_BOOT_START,
		               PVH_BOOT_END - 1);
	for (int j = 0; j < p->nseg; j++)
		if (overlaps(s.paddr, s.memsz, p->seg[j].paddr, p->seg[j].memsz))
			return hv_fail(err, ENOEXEC,
			               "program header %d: segment 0x%llx-0x%llx overlaps segment "
			               "0x%llx-0x%llx",
			               i, (unsigned long long)s.paddr,
			               (unsigned long long)(s.paddr + s.memsz - 1),
			               (unsigned long long)p->seg[j].paddr,
			               (unsigned long long)(p->seg[j].paddr + p->seg[j].memsz - 1));
	p->seg[p->nseg++] = s;
	return 0;
}

/* Validate everything; fill @p with what to copy where. Touches no guest memory. */
static int pvh_plan(struct guest_mem *m, const uint8_t *img, size_t len, struct pvh_plan *p,
                    struct hv_error *err)
{
	Elf64_Ehdr eh;
	bool entry_loaded = false;

	memset(p, 0, sizeof(*p));
	if (pvh_ehdr(img, len, &eh, err) < 0)
		return -1;
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, img + eh.e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_LOAD) {
			if (pvh_load_seg(m, &ph, i, len, p, err) < 0)
				return -1;
		} else if (ph.p_type == PT_NOTE) {
			if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
				return hv_fail(err, ENOEXEC,
				               "program header %d: PT_NOTE (offset %llu, %llu "
				               "bytes) lies outside the %zu-byte file",
				               i, (unsigned long long)ph.p_offset,
				               (unsigned long long)ph.p_filesz, len);
			if (ph.p_offset % 4)
				return hv_fail(err, ENOEXEC,
				               "program header %d: PT_NOTE at offset %llu is not "
				               "4-byte aligned",
				               i, (unsigned long long)ph.p_offset);
			if (pvh_notes(img, &ph, i, p, err) < 0)
				return -1;
		}
	}
	if (p->nseg == 0)
		return hv_fail(err, ENOEXEC, "no loadable (PT_LOAD) segments");
	if (!p->have_entry)
		return hv_fail(err, ENOEXEC, "not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note");
	for (int i = 0; i < p->nseg; i++)
		if (p->entry >= p->seg[i].paddr && p->entry - p->seg[i].paddr < p->seg[i].filesz)
			entry_loaded = true;
	if (!entry_loaded)
		return hv_fail(err, ENOEXEC,
		               "PVH entry point 0x%llx is not inside a loaded segment",
		               (unsigned long long)p->entry);
	if (!gpa_is_ram(m, PVH_BOOT_START, PVH_BOOT_END - PVH_BOOT_START))
		return hv_fail(err, ENOEXEC, "guest RAM does not cover the boot data at 0x%llx",
		               PVH_BOOT_START);
	return 0;
}

static int memmap_add(struct hvm_memmap_table_entry *map, unsigned *n, uint64_t a, uint64_t e,
                      uint32_t type)
{
	if (a >= e)
		return 0;
	if (*n && map[*n - 1].type == type && map[*n - 1].addr + map[*n - 1].size == a) {
		map[*n - 1].size += e - a;
		return 0;
	}
	if (*n == PVH_MEMMAP_MAX)
		return -1;
	map[(*n)++] = (struct hvm_memmap_table_entry){.addr = a, .size = e - a, .type = type};
	return 0;
}

/* The E820-style map: RAM slots, with the legacy VGA/BIOS hole reserved. */
static int pvh_memmap(struct guest_mem *m, struct hvm_memmap_table_entry *map, unsigned *n,
                      struct hv_error *err)
{
	const uint64_t vga = 0xa0000, mib = 0x100000;
	int rc = 0;

	*n = 0;
	for (int i = 0; i < m->nslots; i++) {
		uint64_t a = m->slot[i].gpa, e = a + m->slot[i].size;

		if (a < mib) {
			rc |= memmap_add(map, n, a, e < vga ? e : vga, XEN_HVM_MEMMAP_TYPE_RAM);
			rc |= memmap_add(map, n, a > vga ? a : vga, e < mib ? e : mib,
			                 XEN_HVM_MEMMAP_TYPE_RESERVED);
			rc |= memmap_add(map, n, a > mib ? a : mib, e, XEN_HVM_MEMMAP_TYPE_RAM);
		} else {
			rc |= memmap_add(map, n, a, e, XEN_HVM_MEMMAP_TYPE_RAM);
		}
	}
	if (rc)
		return hv_fail(err, E2BIG, "memory map: more than %zu entries", PVH_MEMMAP_MAX);
	return 0;
}

static int gpa_zero(struct guest_mem *m, uint64_t gpa, uint64_t len, struct hv_error *err)
{
	static const uint8_t zero[4096];

	while (len) {
		size_t chunk = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		if (gpa_write(m, gpa, zero, chunk, err) < 0)
			return -1;
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

int pvh_load(struct guest_mem *m, const void *image, size_t len, const char *cmdline,
             struct x86_state *entry, struct hv_error *err)
{
	struct pvh_plan *p;
	struct hvm_memmap_table_entry map[PVH_MEMMAP_MAX];
	struct hvm_start_info si = {.magic = XEN_HVM_START_MAGIC_VALUE, .version = 1};
	const uint8_t *img = image;
	size_t cl = cmdline ? strlen(cmdline) : 0;
	unsigned nmap;
	int rc = -1;

	if (cl >= PVH_CMDLINE_MAX)
		return hv_fail(err, E2BIG, "command line of %zu bytes is longer than %d", cl,
		               PVH_CMDLINE_MAX - 1);
	if (pvh_memmap(m, map, &nmap, err) < 0)
		return -1;
	p = malloc(sizeof(*p));
	if (!p)
		return hv_fail(err, ENOMEM, "out of memory");
	if (pvh_plan(m, img, len, p, err) < 0)
		goto out;

	for (int i = 0; i < p->nseg; i++) {
		const struct pvh_seg *s = &p->seg[i];
		if (gpa_write(m, s->paddr, img + s->off, s->filesz, err) < 0 ||
		    gpa_zero(m, s->paddr + s->filesz, s->memsz - s->filesz, err) < 0)
			goto out;
	}
	si.cmdline_paddr = PVH_CMDLINE_GPA;
	si.memmap_paddr = PVH_MEMMAP_GPA;
	si.memmap_entries = nmap;
	if (gpa_zero(m, PVH_BOOT_START, PVH_BOOT_END - PVH_BOOT_START, err) < 0 ||
	    gpa_write(m, PVH_START_INFO_GPA, &si, sizeof(si), err) < 0 ||
	    gpa_write(m, PVH_MEMMAP_GPA, map, nmap * sizeof(map[0]), err) < 0 ||
	    gpa_write(m, PVH_CMDLINE_GPA, cmdline ? cmdline : "", cl + 1, err) < 0)
		goto out;

	x86_state_flat32(entry);
	entry->rip = p->entry;
	entry->gpr[X86_RBX] = PVH_START_INFO_GPA;
	rc = 0;
out:
	free(p);
	return rc;
}

/* Prefix @err's message with "@path: ". */
static int fail_path(struct hv_error *err, const char *path)
{
	char msg[HV_ERROR_MSG];

	if (!err)
		return -1;
	memcpy(msg, err->msg, sizeof(msg));
	return hv_fail(err, err->code, "%s: %s", path, msg);
}

int pvh_load_file(struct guest_mem *m, const char *path, const char *cmdline,
                  struct x86_state *entry, struct hv_error *err)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if (loader_read_file(path, m->ram_size, &buf, &len, err) < 0)
		return -1;
	rc = pvh_load(m, buf, len, cmdline, entry, err);
	if (rc < 0)
		fail_path(err, path);
	free(buf);
	return rc;
}
