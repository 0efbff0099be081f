/*
 * boot.c - what the VMM handed over: struct hvm_start_info, the memory map, the command
 * line, and the C side of start-up.
 *
 * The boot data sits wherever the VMM put it; every guest memory range a workload wants
 * is checked against it, the image and the memory map (rt_check_range) so a workload never
 * scribbles over its own page tables or its arguments.
 */
#include "rt.h"
#include "x86.h"

#define HVM_START_MAGIC 0x336ec578u
#define E820_RAM        1

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

void rt_console_init(void);
void rt_trap_init(void);
void rt_time_init(void);

static const struct hvm_start_info *boot_info;
static const char *cmdline = "";

/* Boot data regions (page-rounded) that workloads must not touch. */
#define MAX_RESERVED 16
static struct {
	uint64_t start, end;
} reserved[MAX_RESERVED];
static int nreserved;

static void reserve(uint64_t addr, uint64_t len)
{
	if (!len || nreserved == MAX_RESERVED)
		return;
	reserved[nreserved].start = addr & ~(PAGE_SIZE - 1);
	reserved[nreserved].end = (addr + len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	nreserved++;
}

static const struct hvm_memmap_entry *memmap(uint32_t *n)
{
	if (!boot_info || boot_info->version < 1 || !boot_info->memmap_paddr) {
		*n = 0;
		return NULL;
	}
	*n = boot_info->memmap_entries;
	return (const struct hvm_memmap_entry *)(uintptr_t)boot_info->memmap_paddr;
}

uint64_t rt_ram_top(void)
{
	uint32_t n;
	const struct hvm_memmap_entry *m = memmap(&n);
	uint64_t top = 0;

	for (uint32_t i = 0; i < n; i++)
		if (m[i].type == E820_RAM && m[i].addr + m[i].size > top)
			top = m[i].addr + m[i].size;
	return top;
}

/* Is [start, end) covered by RAM entries of the memory map (adjacent entries may join)? */
static int is_ram(uint64_t start, uint64_t end)
{
	uint32_t n;
	const struct hvm_memmap_entry *m = memmap(&n);

	if (!m)
		return 1; /* version 0: no map, trust the caller */
	while (start < end) {
		uint32_t i;
		for (i = 0; i < n; i++)
			if (m[i].type == E820_RAM && m[i].addr <= start &&
			    start < m[i].addr + m[i].size)
				break;
		if (i == n)
			return 0;
		start = m[i].addr + m[i].size;
	}
	return 1;
}

static int overlaps(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 < e2 && s2 < e1;
}

const char *rt_check_range(uint64_t start, uint64_t end)
{
	if ((start | end) & (PAGE_SIZE - 1))
		return "not 4 KiB aligned";
	if (start >= end)
		return "empty (start >= end)";
	if (end > rt_map_top())
		return "beyond the identity map";
	if (overlaps(start, end, 0, 1ull << 20))
		return "overlaps the first MiB (firmware, boot data)";
	if (overlaps(start, end, (uintptr_t)__image_start, (uintptr_t)__image_end))
		return "overlaps the guest image, page tables or stack";
	for (int i = 0; i < nreserved; i++)
		if (overlaps(start, end, reserved[i].start, reserved[i].end))
			return "overlaps boot data (start_info, command line, memory map)";
	if (!is_ram(start, end))
		return "not RAM according to the memory map";
	return NULL;
}

uint64_t rt_free_start(void)
{
	uint64_t s = (uintptr_t)__image_end;

	if (s < (2ull << 20))
		s = 2ull << 20;
	/* Step over boot data the VMM placed at or just after the image, until clear. */
	for (int moved = 1; moved;) {
		moved = 0;
		for (int i = 0; i < nreserved; i++)
			if (reserved[i].start <= s && reserved[i].end > s) {
				s = reserved[i].end;
				moved = 1;
			}
	}
	return (s + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

const char *rt_cmdline(void)
{
	return cmdline;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const char *rt_arg(const char *key)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (*p) {
		while (is_space(*p))
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=')
			return p + klen + 1;
		while (*p && !is_space(*p))
			p++;
	}
	return NULL;
}

uint64_t rt_arg_size(const char *key, uint64_t def)
{
	const char *p = rt_arg(key), *v = p;
	uint64_t n = 0, base = 10;
	int digits = 0;

	if (!p)
		return def;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++, digits++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			break;
		if (n > (UINT64_MAX - d) / base)
			goto bad;
		n = n * base + d;
	}
	if (!digits)
		goto bad;
	unsigned shift = 0;
	switch (*p) {
	case 'k':
	case 'K':
		shift = 10;
		p++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		p++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		p++;
		break;
	}
	if (*p && !is_space(*p))
		goto bad;
	if (shift && n > (UINT64_MAX >> shift))
		goto bad;
	return n << shift;
bad:
	rt_printf("bad argument %s=", key);
	while (*v && !is_space(*v))
		rt_putc(*v++);
	rt_printf(" (want a number with optional K/M/G suffix)\n");
	rt_exit(EXIT_BADARG);
}

void rt_exit(int code)
{
	outb(0xf4, (uint8_t)code);
	for (;;) {
		cli();
		hlt();
	}
}

void rt_die(int code, const char *fmt, ...)
{
	va_list ap;
	rt_puts("FATAL: ");
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_putc('\n');
	rt_exit(code);
}

/* Called from entry.S in 64-bit mode with the physical address of hvm_start_info. */
void rt_start(uint32_t start_info)
{
	rt_console_init();
	rt_trap_init();

	const struct hvm_start_info *si = (const void *)(uintptr_t)start_info;
	if (!si || si->magic != HVM_START_MAGIC)
		rt_die(EXIT_BADARG, "no hvm_start_info (ebx=0x%x)", start_info);
	boot_info = si;
	reserve(start_info, sizeof(*si));
	if (si->cmdline_paddr) {
		cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
		reserve(si->cmdline_paddr, strlen(cmdline) + 1);
	}
	if (si->version >= 1 && si->memmap_paddr)
		reserve(si->memmap_paddr, si->memmap_entries * sizeof(struct hvm_memmap_entry));
	if (si->nr_modules && si->modlist_paddr) {
		const struct hvm_modlist_entry *mod = (const void *)(uintptr_t)si->modlist_paddr;
		reserve(si->modlist_paddr, si->nr_modules * sizeof(*mod));
		for (uint32_t i = 0; i < si->nr_modules; i++)
			reserve(mod[i].paddr, mod[i].size);
	}
	rt_time_init();
	if (rt_arg("rt_verbose")) {
		uint32_t n;
		const struct hvm_memmap_entry *m = memmap(&n);
		rt_printf("rt: start_info=0x%x version=%u cmdline=\"%s\" tsc=%lu Hz (%s)\n",
		          start_info, si->version, cmdline, rt_tsc_hz(), rt_tsc_source());
		for (uint32_t i = 0; i < n; i++)
			rt_printf("rt: memmap 0x%016lx-0x%016lx type %u\n", m[i].addr,
			          m[i].addr + m[i].size, m[i].type);
	}
	rt_exit(main());
}
