/*
 * pagewalk.c - VM-wide page numbers to host addresses, with the memfd's holes.
 */
#include <errno.h>
#include <unistd.h>

#include "checkpoint/pagewalk.h"

uint8_t *page_at(struct page_cursor *c, uint64_t p, bool *in_hole)
{
	struct guest_mem *m = c->mem;
	struct mem_slot *s;
	uint64_t off;

	if (c->slot < 0 || p < m->slot[c->slot].first_page ||
	    p >= m->slot[c->slot].first_page + m->slot[c->slot].size / MEM_PAGE_SIZE) {
		s = mem_page_slot(m, p);
		c->slot = s ? (int)(s - m->slot) : -1;
		if (!s)
			return NULL;
		c->data = c->hole = 0;
	}
	s = &m->slot[c->slot];
	off = (p - s->first_page) * MEM_PAGE_SIZE;
	if (in_hole) {
		if (off >= c->hole) {
			off_t d = lseek(s->fd, (off_t)off, SEEK_DATA);
			off_t h = d < 0 ? -1 : lseek(s->fd, d, SEEK_HOLE);

			if (d < 0 && errno == ENXIO) {
				c->data = c->hole = s->size; /* a hole to the end */
			} else if (d < 0 || h < 0) {
				c->data = off; /* SEEK_DATA unsupported: read everything */
				c->hole = s->size;
			} else {
				c->data = (uint64_t)d;
				c->hole = (uint64_t)h;
			}
		}
		*in_hole = off < c->data;
	}
	return s->hva + off;
}
