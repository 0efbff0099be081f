/*
 * test_i8042.c - the keyboard controller: Linux's probe gets its answers at once, and the
 * reset command (reboot=k) ends the VM with status 0; nothing else ends it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hv/dev/i8042.h"
#include "hv/state_io.h"
#include "hv/vm.h"

static struct vm vm; /* only what vm_shutdown needs: lock, cond, no accelerator */

static uint8_t in(struct i8042 *k, unsigned port)
{
	uint64_t v = 0;

	i8042_io(k, port - I8042_DATA_PORT, 1, false, &v);
	return (uint8_t)v;
}

static void out(struct i8042 *k, unsigned port, uint8_t b)
{
	uint64_t v = b;

	i8042_io(k, port - I8042_DATA_PORT, 1, true, &v);
}

static struct i8042 *setup(void)
{
	struct hv_error err;
	struct i8042 *k;

	memset(&vm, 0, sizeof(vm));
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	vm.state = VM_RUNNING;
	k = i8042_create(&vm, &err);
	assert_non_null(k);
	return k;
}

/* What Linux's i8042 probe does (flush, read and write the command byte, self-test). */
static void test_probe(void **state)
{
	struct i8042 *k = setup();
	uint8_t ctr;

	assert_int_equal(in(k, I8042_COMMAND_PORT) & (I8042_STR_OBF | 0x02), 0); /* idle */
	out(k, I8042_COMMAND_PORT, I8042_CMD_READ_CTR);
	assert_true(in(k, I8042_COMMAND_PORT) & I8042_STR_OBF);
	ctr = in(k, I8042_DATA_PORT);
	assert_false(in(k, I8042_COMMAND_PORT) & I8042_STR_OBF);
	out(k, I8042_COMMAND_PORT, I8042_CMD_WRITE_CTR);
	out(k, I8042_DATA_PORT, (uint8_t)(ctr | I8042_CTR_AUX_OFF));
	out(k, I8042_COMMAND_PORT, I8042_CMD_READ_CTR);
	assert_int_equal(in(k, I8042_DATA_PORT), ctr | I8042_CTR_AUX_OFF);
	out(k, I8042_COMMAND_PORT, I8042_CMD_SELF_TEST);
	assert_int_equal(in(k, I8042_DATA_PORT), 0x55);
	out(k, I8042_COMMAND_PORT, I8042_CMD_WRITE_AUX); /* aux loopback: the byte comes back */
	out(k, I8042_DATA_PORT, 0x5a);
	assert_true(in(k, I8042_COMMAND_PORT) & I8042_STR_AUXDATA);
	assert_int_equal(in(k, I8042_DATA_PORT), 0x5a);
	out(k, I8042_DATA_PORT, 0xf2); /* a keyboard command: no keyboard, no answer */
	assert_false(in(k, I8042_COMMAND_PORT) & I8042_STR_OBF);
	out(k, I8042_COMMAND_PORT, 0xff); /* pulse no line: not a reset */
	assert_int_equal(vm.exit_kind, VM_EXIT_NONE);
	i8042_destroy(k);
}

/* reboot=k: command 0xfe ends the VM as a guest exit with status 0. */
static void test_reset(void **state)
{
	struct i8042 *k = setup();

	out(k, I8042_COMMAND_PORT, I8042_CMD_RESET);
	assert_int_equal(vm.state, VM_SHUTDOWN);
	assert_int_equal(vm.exit_kind, VM_EXIT_GUEST);
	assert_int_equal(vm.exit_code, 0);
	assert_non_null(strstr(vm.exit_reason, "keyboard controller"));
	i8042_destroy(k);

	k = setup(); /* the output port's reset line, held low */
	out(k, I8042_COMMAND_PORT, I8042_CMD_WRITE_OUTP);
	out(k, I8042_DATA_PORT, 0x02);
	assert_int_equal(vm.exit_kind, VM_EXIT_GUEST);
	i8042_destroy(k);
}

/* Save and load give the same controller; a hostile record is refused. */
static void test_state(void **state)
{
	struct i8042 *a = setup(), *b;
	struct state_io io;
	struct hv_error err;

	out(a, I8042_COMMAND_PORT, I8042_CMD_WRITE_CTR); /* mid-command */
	state_io_save_init(&io, "i8042", &err);
	assert_int_equal(i8042_state(&io, a), 0);
	b = i8042_create(&vm, &err);
	{
		struct state_io ld;
		assert_int_equal(state_io_load_init(&ld, "i8042", io.buf, io.len, &err), 0);
		assert_int_equal(i8042_state(&ld, b), 0);
	}
	out(b, I8042_DATA_PORT, 0x33);
	out(b, I8042_COMMAND_PORT, I8042_CMD_READ_CTR);
	assert_int_equal(in(b, I8042_DATA_PORT), 0x33);
	state_io_free(&io);

	a->out_full = 0, a->out_aux = 1; /* aux byte in an empty buffer: impossible */
	state_io_save_init(&io, "i8042", &err);
	assert_int_equal(i8042_state(&io, a), 0);
	{
		struct state_io ld;
		assert_int_equal(state_io_load_init(&ld, "i8042", io.buf, io.len, &err), 0);
		assert_int_equal(i8042_state(&ld, b), -1);
		assert_non_null(strstr(err.msg, "out_aux"));
	}
	state_io_free(&io);
	i8042_destroy(a);
	i8042_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_probe),
	    cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
