/*
 * vmstate.h - a whole VM as state-stream records, and back.
 *
 * The writer emits VM_CONFIG first (a reader needs the memory layout and vCPU count before
 * anything else), SOURCE_INFO (optional), PAGE_DATA batches, one VCPU record per vCPU,
 * one DEVICE record per device, then END. The reader accepts the records after VM_CONFIG
 * in any order (a migration stream interleaves pages and device state), refuses duplicate
 * VM_CONFIG, VCPU and DEVICE records, skips optional records it does not know, and at END
 * requires every vCPU and device to have been loaded.
 */
#ifndef HV_MIGRATE_VMSTATE_H
#define HV_MIGRATE_VMSTATE_H

#include "hv/error.h"
#include "hv/vm.h"
#include "migrate/pages.h"
#include "migrate/stream.h"

#define VM_CONFIG_VERSION 1

/*
 * vmstate_save - write all of @vm (paused, or created and never started) to @s, ending
 * with END. @zstd_level 0 sends pages raw. @progress (may be NULL) follows the pages
 * (pages.h). -1 with @err on failure.
 */
int vmstate_save(struct stream *s, struct vm *vm, int zstd_level, save_progress_fn progress,
                 void *progress_arg, struct hv_error *err);

/*
 * vmstate_load - create @vm from @s (untrusted): VM_CONFIG first, then every record up to
 * END. On success the VM is VM_CREATED and ready for vm_start(); on failure it is
 * destroyed (or was never created) and @err names the record and offset at fault.
 */
int vmstate_load(struct stream *s, struct vm *vm, int console_out, int console_in,
                 struct hv_error *err);

/*
 * The pieces, for a migration stream, which sends them apart:
 * vmstate_save_config - VM_CONFIG and SOURCE_INFO.
 * vmstate_save_devices - a VCPU record per vCPU, then a DEVICE record per device; the VM
 * must be paused.
 */
int vmstate_save_config(struct stream *s, struct vm *vm, struct hv_error *err);
int vmstate_save_devices(struct stream *s, struct vm *vm, struct hv_error *err);

/*
 * A loader fed one record at a time (vmstate_load is a loop around it). new: clears @vm,
 * NULL when out of memory. feed: 0 for a record applied, 1 once END completed the VM
 * (every vCPU and device loaded), -1 with @err. The loader never destroys @vm: after a
 * failure the caller does, if vmstate_loader_created() says a VM was created. @name
 * (the stream's, for messages) must outlive the loader.
 */
struct vmstate_loader;
struct vmstate_loader *vmstate_loader_new(struct vm *vm, const char *name, int console_out,
                                          int console_in, struct hv_error *err);
int vmstate_loader_feed(struct vmstate_loader *l, const struct record *r, struct hv_error *err);
bool vmstate_loader_created(const struct vmstate_loader *l);
void vmstate_loader_free(struct vmstate_loader *l);

#endif
