/*
 * tvm.h - helpers for the state tests: boot a workload guest into a VM, compare streams.
 */
#ifndef HV_TESTS_STATE_TVM_H
#define HV_TESTS_STATE_TVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv/vm.h"

/*
 * tvm_boot - a VM (emu) with @ram bytes running guest ELF @elf with @cmdline, created but
 * not started; console output to @out_fd. Aborts the test on failure.
 */
struct vm *tvm_boot(const char *elf, const char *cmdline, uint64_t ram, bool det, int out_fd);

/* tvm_free - shut down, wait and free a VM from tvm_boot or tvm_restore. */
void tvm_free(struct vm *vm);

/* tvm_restore - savefile_read into a new VM (emu), console to @out_fd. NULL + @msg on error. */
struct vm *tvm_restore(const char *file, int out_fd, char *msg, size_t msgsz);

/* tvm_read_file / tvm_write_file - whole files (tests only; small files). */
uint8_t *tvm_read_file(const char *path, size_t *len);
void tvm_write_file(const char *path, const void *p, size_t len);

/*
 * tvm_stream_diff - compare two state streams record by record; NULL when equal, else a
 * static message naming the first differing record.
 */
const char *tvm_stream_diff(const char *a, const char *b);

#endif
