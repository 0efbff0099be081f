/*
 * pagewalk.h - walk guest pages by VM-wide page number (internal to checkpoint/).
 *
 * A cursor remembers the slot and the memfd extent it is in, so a walk in page order
 * costs one SEEK_DATA/SEEK_HOLE pair per extent, not per page.
 */
#ifndef CHECKPOINT_PAGEWALK_H
#define CHECKPOINT_PAGEWALK_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/mem.h"

struct page_cursor {
	struct guest_mem *mem;
	int slot;            /* -1 before the first call */
	uint64_t data, hole; /* the slot's current extent: holes before @data, data to @hole */
};

/*
 * page_at - the host address of VM-wide page @p, or NULL if no slot holds it. With
 * @in_hole non-NULL also says whether the page lies in a hole of its slot's memfd: never
 * written, so zero, and reading it would make the kernel allocate it - a full checkpoint
 * of a mostly idle 64 GiB guest must not commit 64 GiB of RAM.
 */
uint8_t *page_at(struct page_cursor *c, uint64_t p, bool *in_hole);

#endif
