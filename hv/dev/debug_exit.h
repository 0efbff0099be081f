/*
 * debug_exit.h - QEMU's isa-debug-exit device: a guest writes a byte to port 0xf4 and the
 * VM ends with that byte as its exit status.
 *
 * Tests and workload guests report their result through it. QEMU exits with code*2+1 for
 * the same write; hv uses the byte unchanged.
 */
#ifndef HV_DEV_DEBUG_EXIT_H
#define HV_DEV_DEBUG_EXIT_H

#include "hv/error.h"
#include "hv/io.h"

#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_EXIT_LEN  4 /* like QEMU's iosize=0x04: any write to 0xf4..0xf7 exits */

struct vm;

struct debug_exit {
	struct vm *vm;
};

/* debug_exit_create - a device that shuts @vm down. NULL with @err set on failure. */
struct debug_exit *debug_exit_create(struct vm *vm, struct hv_error *err);
void debug_exit_destroy(struct debug_exit *d);

/* debug_exit_register - claim DEBUG_EXIT_PORT..+DEBUG_EXIT_LEN-1 on @bus. */
int debug_exit_register(struct debug_exit *d, struct io_bus *bus, struct hv_error *err);

/* debug_exit_io - the port handler: a write of size 1..4 calls vm_shutdown(VM_EXIT_GUEST,
 * value & 0xff); reads return 0. */
void debug_exit_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val);

/*
 * debug_exit_state - save or load the device through @io (hv/state_io.h). It has no
 * guest-visible state; the record carries its port range, checked on load. 0 or -1.
 */
#define DEBUG_EXIT_STATE_VERSION 1
struct state_io;
int debug_exit_state(struct state_io *io, struct debug_exit *d);

#endif
