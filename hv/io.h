/*
 * io.h - port-I/O and MMIO dispatch.
 *
 * Devices register a handler for a range; accelerators call io_port()/io_mmio() from the
 * vCPU thread that made the access. The tables are filled before vCPUs start and are
 * read-only afterwards, so dispatch takes no lock; each device protects its own state.
 */
#ifndef HV_IO_H
#define HV_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "hv/error.h"

#define IO_MAX_RANGES 64

/*
 * A device access. @off is relative to the registered base, @size is 1, 2, 4 or 8. For
 * reads the handler stores the value in *@val; for writes *@val holds it.
 */
typedef void (*io_handler)(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val);

struct io_range {
	uint64_t base, len;
	io_handler fn;
	void *opaque;
	const char *name;
};

struct io_bus {
	struct io_range port[IO_MAX_RANGES];
	int nport;
	struct io_range mmio[IO_MAX_RANGES];
	int nmmio;
};

/* io_register_port / io_register_mmio - claim [@base, @base+@len); overlaps are errors. */
int io_register_port(struct io_bus *b, uint16_t base, uint16_t len, io_handler fn, void *opaque,
		     const char *name, struct hv_error *err);
int io_register_mmio(struct io_bus *b, uint64_t base, uint64_t len, io_handler fn, void *opaque,
		     const char *name, struct hv_error *err);

/*
 * io_port - perform a port access. Unclaimed ports read as all ones and ignore writes,
 * as on real hardware.
 */
void io_port(struct io_bus *b, uint16_t port, unsigned size, bool write, uint64_t *val);

/*
 * io_mmio - perform an MMIO access. Returns false (and reads all ones) when no device
 * claims @gpa.
 */
bool io_mmio(struct io_bus *b, uint64_t gpa, unsigned size, bool write, uint64_t *val);

#endif
