/*
 * i8042.c - the keyboard controller's reset line, and the few polled commands Linux's
 * probe needs answered.
 *
 * Everything happens at once: a command that produces a byte puts it in the one-byte
 * output buffer before the write returns, so the input buffer is never full (IBF stays
 * clear) and a guest polling for OBF sees its answer on the first read.
 */
#include <errno.h>
#include <stdlib.h>

#include "hv/dev/i8042.h"
#include "hv/state_io.h"
#include "hv/vm.h"

#define CTR_DEFAULT  (0x01 | 0x04 | 0x40)      /* keyboard interrupt on, POST ok, translate */
#define OUTP_DEFAULT (I8042_OUTP_RESET | 0x02) /* not in reset, A20 on */

static void put(struct i8042 *k, uint8_t v, int aux)
{
	k->out = v;
	k->out_full = 1;
	k->out_aux = (uint8_t)aux;
}

/* Lock held. Returns 1 when the guest asked for a reset. */
static int command(struct i8042 *k, uint8_t cmd)
{
	k->cmd = 0;
	switch (cmd) {
	case I8042_CMD_READ_CTR: put(k, k->ctr, 0); break;
	case I8042_CMD_AUX_OFF: k->ctr |= I8042_CTR_AUX_OFF; break;
	case I8042_CMD_AUX_ON: k->ctr &= ~I8042_CTR_AUX_OFF; break;
	case I8042_CMD_AUX_TEST: put(k, 0x01, 0); break; /* "clock line stuck low": no mouse */
	case I8042_CMD_SELF_TEST:
		k->status |= I8042_STR_SYS;
		put(k, 0x55, 0);
		break;
	case I8042_CMD_KBD_TEST: put(k, 0x00, 0); break;
	case I8042_CMD_KBD_OFF: k->ctr |= I8042_CTR_KBD_OFF; break;
	case I8042_CMD_KBD_ON: k->ctr &= ~I8042_CTR_KBD_OFF; break;
	case I8042_CMD_READ_OUTP: put(k, k->outp, 0); break;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUTP:
	case I8042_CMD_WRITE_KBD:
	case I8042_CMD_WRITE_AUX:
	case I8042_CMD_TO_AUX: k->cmd = cmd; break;
	default:
		/* 0xf0-0xff pulse output lines 0-3 for 6 us; a clear bit 0 pulses reset. */
		if ((cmd & 0xf0) == 0xf0 && !(cmd & I8042_OUTP_RESET))
			return 1;
		break;
	}
	return 0;
}

/* Lock held. A byte written to port 0x60: data for a pending command, else for the
 * keyboard (none attached: dropped). Returns 1 for a reset. */
static int data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->cmd;

	k->cmd = 0;
	switch (cmd) {
	case I8042_CMD_WRITE_CTR: k->ctr = v; break;
	case I8042_CMD_WRITE_OUTP: k->outp = v; return !(v & I8042_OUTP_RESET);
	case I8042_CMD_WRITE_KBD: put(k, v, 0); break;
	case I8042_CMD_WRITE_AUX: put(k, v, 1); break;
	default: break;
	}
	return 0;
}

void i8042_io(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	struct i8042 *k = opaque;
	int reset = 0;

	pthread_mutex_lock(&k->lock);
	if (off == 0 && !write) {
		*val = k->out;
		k->out_full = 0;
		k->out_aux = 0;
	} else if (off == 0) {
		k->status &= ~I8042_STR_CMD;
		reset = data(k, (uint8_t)*val);
	} else if (!write) {
		*val = k->status | (k->out_full ? I8042_STR_OBF : 0) |
		       (k->out_aux ? I8042_STR_AUXDATA : 0);
	} else {
		k->status |= I8042_STR_CMD;
		reset = command(k, (uint8_t)*val);
	}
	pthread_mutex_unlock(&k->lock);
	if (reset)
		vm_shutdown(k->vm, VM_EXIT_GUEST, 0,
		            "guest reset the machine through the keyboard controller");
}

struct i8042 *i8042_create(struct vm *vm, struct hv_error *err)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k) {
		hv_fail(err, ENOMEM, "i8042: out of memory");
		return NULL;
	}
	k->vm = vm;
	pthread_mutex_init(&k->lock, NULL);
	k->status = I8042_STR_SYS;
	k->ctr = CTR_DEFAULT;
	k->outp = OUTP_DEFAULT;
	return k;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static void data_port(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	i8042_io(opaque, 0, size, write, val);
}

static void command_port(void *opaque, uint64_t off, unsigned size, bool write, uint64_t *val)
{
	i8042_io(opaque, I8042_COMMAND_PORT - I8042_DATA_PORT, size, write, val);
}

int i8042_register(struct i8042 *k, struct io_bus *bus, struct hv_error *err)
{
	/* Two ranges: 0x61 (speaker, NMI status) between them belongs to the PIT. */
	if (io_register_port(bus, I8042_DATA_PORT, 1, data_port, k, "i8042 data", err) < 0)
		return -1;
	return io_register_port(bus, I8042_COMMAND_PORT, 1, command_port, k, "i8042 command", err);
}

int i8042_state(struct state_io *io, struct i8042 *k)
{
	struct i8042 s;

	pthread_mutex_lock(&k->lock);
	s = *k; /* load into a copy: a record that fails its checks changes nothing */
	STATE_FIELD(io, "status", &s.status);
	STATE_FIELD(io, "ctr", &s.ctr);
	STATE_FIELD(io, "outp", &s.outp);
	STATE_FIELD(io, "cmd", &s.cmd);
	STATE_FIELD(io, "out", &s.out);
	STATE_FIELD(io, "out_full", &s.out_full);
	STATE_FIELD(io, "out_aux", &s.out_aux);
	STATE_CHECK(io, !(s.status & (I8042_STR_OBF | I8042_STR_AUXDATA)));
	STATE_CHECK(io, s.out_full <= 1 && s.out_aux <= s.out_full);
	STATE_CHECK(io, s.cmd == 0 || s.cmd == I8042_CMD_WRITE_CTR ||
	                    s.cmd == I8042_CMD_WRITE_OUTP || s.cmd == I8042_CMD_WRITE_KBD ||
	                    s.cmd == I8042_CMD_WRITE_AUX || s.cmd == I8042_CMD_TO_AUX);
	if (io->loading && !io->failed) {
		k->status = s.status;
		k->ctr = s.ctr;
		k->outp = s.outp;
		k->cmd = s.cmd;
		k->out = s.out;
		k->out_full = s.out_full;
		k->out_aux = s.out_aux;
	}
	pthread_mutex_unlock(&k->lock);
	return state_io_result(io);
}
