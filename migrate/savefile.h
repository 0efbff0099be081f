/*
 * savefile.h - suspend a VM to a file and resume it (xl save / xl restore).
 *
 * A save file is a state stream (docs/state-format.md): header, VM configuration, vCPU
 * and device records, guest memory in PAGE_DATA batches (zero pages as a bit), END.
 * Written atomically: temp file in the same directory, fsync, rename, directory fsync,
 * so a failed or interrupted save leaves nothing at the path and the VM untouched.
 */
#ifndef HV_MIGRATE_SAVEFILE_H
#define HV_MIGRATE_SAVEFILE_H

#include "hv/error.h"
#include "hv/vm.h"
#include "migrate/pages.h"

/*
 * savefile_write - write the complete state of @vm to @path. The VM must be paused (the
 * caller pauses and decides afterwards whether to resume or quit). On failure nothing is
 * left at @path and -1 is returned with @err naming the path and the cause.
 */
int savefile_write(struct vm *vm, const char *path, struct hv_error *err);

/* savefile_write_progress - the same, telling @progress (pages.h) how far it has got. */
int savefile_write_progress(struct vm *vm, const char *path, save_progress_fn progress,
                            void *progress_arg, struct hv_error *err);

/*
 * savefile_read - create @vm from the save file at @path (the file is untrusted input:
 * every record is validated before use). On success the VM is VM_CREATED with its RAM,
 * vCPU and device state restored, ready for vm_start(); console fds as for vm_create().
 * On failure the VM is destroyed and @err names the record and offset at fault.
 */
int savefile_read(struct vm *vm, const char *path, int console_out, int console_in,
                  struct hv_error *err);

/*
 * savefile_sync_dir - fsync directory @dir, so that a file created or renamed in it
 * survives a crash (the last step of every atomic write: save files, the checkpoint
 * store). A file system that cannot fsync a directory (EINVAL) counts as done.
 */
int savefile_sync_dir(const char *dir, struct hv_error *err);

#endif
