/*
 * i8042.h - the PC keyboard controller, just enough of it for a guest to reset the
 * machine: Linux's `reboot=k` writes command 0xfe (pulse the reset line) to port 0x64,
 * and the VM then ends with status 0 (VM_EXIT_GUEST, code 0), as a reboot ends the VM
 * in kvmtool and Firecracker.
 *
 * No keyboard or mouse is attached and the controller raises no interrupts. It answers
 * the polled controller commands Linux's i8042 driver sends while probing (read/write
 * the command byte, self-tests, output port), so the probe ends at once instead of
 * timing out on every poll; data for the keyboard itself is ignored. Guests should boot
 * with `i8042.noaux i8042.nomux i8042.dumbkbd` (the driver then asks nothing of a mouse
 * or keyboard). Writing the output port with bit 0 clear (command 0xd1) resets too.
 */
#ifndef HV_DEV_I8042_H
#define HV_DEV_I8042_H

#include <pthread.h>
#include <stdint.h>

#include "hv/error.h"
#include "hv/io.h"

#define I8042_DATA_PORT    0x60
#define I8042_COMMAND_PORT 0x64 /* reads: status */

/* Status register bits. */
#define I8042_STR_OBF     0x01 /* a byte waits in the output buffer (port 0x60) */
#define I8042_STR_SYS     0x04 /* self-test passed */
#define I8042_STR_CMD     0x08 /* the last write was to the command port */
#define I8042_STR_AUXDATA 0x20 /* the byte is from the aux (mouse) port */

/* Controller commands (port 0x64). */
#define I8042_CMD_READ_CTR   0x20
#define I8042_CMD_WRITE_CTR  0x60
#define I8042_CMD_AUX_OFF    0xa7
#define I8042_CMD_AUX_ON     0xa8
#define I8042_CMD_AUX_TEST   0xa9
#define I8042_CMD_SELF_TEST  0xaa
#define I8042_CMD_KBD_TEST   0xab
#define I8042_CMD_KBD_OFF    0xad
#define I8042_CMD_KBD_ON     0xae
#define I8042_CMD_READ_OUTP  0xd0
#define I8042_CMD_WRITE_OUTP 0xd1
#define I8042_CMD_WRITE_KBD  0xd2 /* next data byte comes back as if from the keyboard */
#define I8042_CMD_WRITE_AUX  0xd3 /* next data byte comes back as if from the aux port */
#define I8042_CMD_TO_AUX     0xd4 /* next data byte goes to the mouse (none: dropped) */
#define I8042_CMD_RESET      0xfe /* pulse output line 0: reset the CPU */

#define I8042_CTR_KBD_OFF 0x10
#define I8042_CTR_AUX_OFF 0x20
#define I8042_OUTP_RESET  0x01 /* output port bit 0: 0 holds the CPU in reset */

struct vm;

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t status; /* without OBF/AUXDATA: those follow the output buffer */
	uint8_t ctr;    /* the controller command byte */
	uint8_t outp;   /* the output port */
	uint8_t cmd;    /* a command waiting for its data byte, 0 for none */
	uint8_t out;    /* the output buffer */
	uint8_t out_full, out_aux;
};

/* i8042_create - a controller in its power-on state that resets @vm. NULL with @err set. */
struct i8042 *i8042_create(struct vm *vm, struct hv_error *err);
void i8042_destroy(struct i8042 *k);

/* i8042_register - claim ports 0x60 and 0x64 on @bus. */
int i8042_register(struct i8042 *k, struct io_bus *bus, struct hv_error *err);

/* i8042_io - the port handler (exposed for tests); byte-wide, @off 0 is the data port,
 * @off 4 the command/status port. */
void i8042_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val);

/*
 * i8042_state - save or load the controller through @io (hv/state_io.h); a load is
 * checked before anything changes. 0 or -1.
 */
#define I8042_STATE_VERSION 1
struct state_io;
int i8042_state(struct state_io *io, struct i8042 *k);

#endif
