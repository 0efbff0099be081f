/*
 * debug_exit.c - the debug-exit port: the guest's way to end the VM with a status.
 */
#include <errno.h>
#include <stdlib.h>

#include "hv/dev/debug_exit.h"
#include "hv/state_io.h"
#include "hv/vm.h"

void debug_exit_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	struct debug_exit *d = opaque;

	if (!write) {
		*val = 0;
		return;
	}
	vm_shutdown(d->vm, VM_EXIT_GUEST, (int)(*val & 0xff),
	            "guest wrote 0x%02x to the debug-exit port", (unsigned)(*val & 0xff));
}

struct debug_exit *debug_exit_create(struct vm *vm, struct hv_error *err)
{
	struct debug_exit *d = calloc(1, sizeof(*d));

	if (!d) {
		hv_fail(err, ENOMEM, "debug-exit: out of memory");
		return NULL;
	}
	d->vm = vm;
	return d;
}

void debug_exit_destroy(struct debug_exit *d)
{
	free(d);
}

int debug_exit_register(struct debug_exit *d, struct io_bus *bus, struct hv_error *err)
{
	return io_register_port(bus, DEBUG_EXIT_PORT, DEBUG_EXIT_LEN, debug_exit_io, d,
	                        "debug-exit", err);
}

int debug_exit_state(struct state_io *io, struct debug_exit *d)
{
	uint16_t port = DEBUG_EXIT_PORT, len = DEBUG_EXIT_LEN;

	/* No guest-visible state: the record says where the device is and that it exists. */
	STATE_FIELD(io, "port", &port);
	STATE_FIELD(io, "len", &len);
	STATE_CHECK(io, port == DEBUG_EXIT_PORT && len == DEBUG_EXIT_LEN);
	return state_io_result(io);
}
