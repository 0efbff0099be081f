/*
 * paging.c - the identity page tables built by entry.S, and splitting a 2 MiB mapping
 * into 4 KiB pages so tests can unmap or remap single pages.
 *
 * Layout (all in .bss): rt_pml4 -> rt_pdpt; rt_pdpt[0..3] -> rt_pd (2048 2 MiB entries for
 * 0-4 GiB); rt_pdpt[4..63] are 1 GiB pages when the CPU has them, else point to 60 more
 * PDs of 2 MiB pages, so the map always ends at 64 GiB. A split replaces one PD
 * entry with a pointer to a page table whose 512 entries map the same memory.
 */
#include "rt.h"
#include "x86.h"

extern uint64_t rt_pdpt[512], rt_pd[2048];

static uint64_t split_pt[RT_MAX_SPLITS][512] __attribute__((aligned(4096)));
static int nsplit;

int rt_nx_enabled(void)
{
	return (rdmsr(MSR_EFER) >> 11) & 1;
}

uint64_t rt_map_top(void)
{
	return 64ull << 30;
}

uint64_t *rt_pte_4k(uint64_t va)
{
	if (va >= (4ull << 30))
		rt_die(EXIT_EXCEPTION, "rt_pte_4k: 0x%lx is not in the 2 MiB-page region", va);
	uint64_t *pde = &rt_pd[va >> 21];
	if (*pde & PTE_PS) {
		if (nsplit == RT_MAX_SPLITS)
			rt_die(EXIT_EXCEPTION, "rt_pte_4k: out of page tables");
		uint64_t *pt = split_pt[nsplit++];
		uint64_t base = va & ~((1ull << 21) - 1);
		for (int i = 0; i < 512; i++)
			pt[i] = (base + ((uint64_t)i << 12)) | PTE_P | PTE_W;
		*pde = (uintptr_t)pt | PTE_P | PTE_W;
		/* The whole 2 MiB range changes its translation structure: flush it. */
		write_cr3(read_cr3());
	}
	uint64_t *pt = (uint64_t *)(uintptr_t)(*pde & 0x000ffffffffff000ull);
	return &pt[(va >> 12) & 511];
}
