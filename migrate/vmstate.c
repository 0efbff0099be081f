/*
 * vmstate.c - a VM's records: VM_CONFIG, VCPU, DEVICE, PAGE_DATA, CHECKPOINT, END.
 *
 * Every record body except PAGE_DATA is a tagged-field body (hv/state_io.h) that opens
 * with the record's own identity and version, so one loader path checks versions, finds
 * duplicates and names the record and offset in every error. Devices are a table: adding
 * one is a line here and a state function next to the device.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "hv/accel/kvm/kvm.h"
#include "hv/dev/debug_exit.h"
#include "hv/dev/i8042.h"
#include "hv/dev/uart.h"
#include "hv/state_io.h"
#include "migrate/pages.h"
#include "migrate/vmstate.h"

struct vmstate_loader;

/*
 * A device with a DEVICE record. @optional: the record may be absent from a stream (one
 * from an older writer, or a backend without the device); the device then keeps the
 * defaults vm_create gave it. @present: NULL, or whether @vm has the device at all
 * (saved only then; a record for a device the VM lacks fails the load). @state saves
 * (@l NULL) or loads the device's fields.
 */
struct vm_device {
	const char *name;
	uint32_t version;
	bool optional;
	bool (*present)(const struct vm *vm);
	int (*state)(struct state_io *io, struct vm *vm, struct vmstate_loader *l);
};

static int dev_uart(struct state_io *io, struct vm *vm, struct vmstate_loader *l)
{
	return uart_state(io, vm->uart);
}

static int dev_debug_exit(struct state_io *io, struct vm *vm, struct vmstate_loader *l)
{
	return debug_exit_state(io, vm->dbgexit);
}

static int dev_i8042(struct state_io *io, struct vm *vm, struct vmstate_loader *l)
{
	return i8042_state(io, vm->kbd);
}

static bool on_kvm(const struct vm *vm)
{
	return vm->accel == &accel_kvm;
}

static int dev_kvm_vm(struct state_io *io, struct vm *vm, struct vmstate_loader *l);

static const struct vm_device devices[] = {
    {"uart0", UART_STATE_VERSION, false, NULL, dev_uart},
    {"debug-exit", DEBUG_EXIT_STATE_VERSION, false, NULL, dev_debug_exit},
    /* optional: streams written before the i8042 had a record keep its power-on state */
    {"i8042", I8042_STATE_VERSION, true, NULL, dev_i8042},
    /* optional: a stream without it leaves KVM's PIC/IOAPIC/PIT/clock as vm_create made them */
    {"kvm-vm", KVM_VM_ARCH_STATE_VERSION, true, on_kvm, dev_kvm_vm},
};
#define NDEVICES (sizeof(devices) / sizeof(devices[0]))

/* VM_CONFIG's contents. */
struct config {
	uint32_t version;
	char name[VM_NAME_MAX];
	char accel[16];
	uint32_t nvcpus;
	uint8_t deterministic;
	uint64_t ram_size;
	uint32_t nslots;
	uint64_t gpa[MEM_MAX_SLOTS], size[MEM_MAX_SLOTS];
	char cmdline[VM_CMDLINE_MAX];
	char kernel[VM_KERNEL_MAX];
};

/* Version first, and checked at once: a newer body's other fields may mean other things. */
static bool version_io(struct state_io *io, uint32_t *v, uint32_t supported)
{
	STATE_FIELD(io, "version", v);
	if (io->loading && !io->failed && *v != supported)
		state_io_fail(io, "version %u %s (this hv reads version %u)", *v,
		              *v > supported ? "is newer than supported" : "is unknown", supported);
	return !io->failed;
}

static int config_io(struct state_io *io, struct config *c)
{
	char n[24];

	if (!version_io(io, &c->version, VM_CONFIG_VERSION))
		return -1;
	STATE_STR(io, "name", c->name, sizeof(c->name));
	STATE_STR(io, "accel", c->accel, sizeof(c->accel));
	STATE_FIELD(io, "nvcpus", &c->nvcpus);
	STATE_FIELD(io, "deterministic", &c->deterministic);
	STATE_FIELD(io, "ram_size", &c->ram_size);
	STATE_FIELD(io, "nslots", &c->nslots);
	STATE_CHECK(io, c->nslots >= 1 && c->nslots <= MEM_MAX_SLOTS);
	for (uint32_t i = 0; !io->failed && i < c->nslots; i++) {
		snprintf(n, sizeof(n), "slot%u.gpa", i);
		STATE_FIELD(io, n, &c->gpa[i]);
		snprintf(n, sizeof(n), "slot%u.size", i);
		STATE_FIELD(io, n, &c->size[i]);
	}
	STATE_STR(io, "cmdline", c->cmdline, sizeof(c->cmdline));
	STATE_STR(io, "kernel", c->kernel, sizeof(c->kernel));
	STATE_CHECK(io, c->nvcpus >= 1 && c->nvcpus <= VM_MAX_VCPUS);
	STATE_CHECK(io, c->deterministic <= 1);
	STATE_CHECK(io, !c->deterministic || c->nvcpus == 1);
	STATE_CHECK(io, c->ram_size >= MEM_MIN_SIZE && c->ram_size <= MEM_MAX_SIZE);
	STATE_CHECK(io, c->ram_size % MEM_PAGE_SIZE == 0);
	return state_io_result(io);
}

/* Write one tagged-field body as a record. */
static int put_body(struct stream *s, uint32_t type, struct state_io *io, struct hv_error *err)
{
	const void *parts[1] = {io->buf};
	size_t lens[1] = {io->len};
	int rc = io->failed ? -1 : stream_write_record(s, type, parts, lens, 1, err);

	state_io_free(io);
	return rc;
}

static int save_config(struct stream *s, struct vm *vm, struct hv_error *err)
{
	struct config *c = calloc(1, sizeof(*c));
	struct state_io io;

	if (!c)
		return hv_fail(err, ENOMEM, "VM_CONFIG: out of memory");
	c->version = VM_CONFIG_VERSION;
	snprintf(c->name, sizeof(c->name), "%s", vm->cfg.name);
	snprintf(c->accel, sizeof(c->accel), "%s", vm->accel->name);
	c->nvcpus = vm->nvcpus;
	c->deterministic = vm->cfg.deterministic;
	c->ram_size = vm->mem.ram_size;
	c->nslots = (uint32_t)vm->mem.nslots;
	for (int i = 0; i < vm->mem.nslots; i++)
		c->gpa[i] = vm->mem.slot[i].gpa, c->size[i] = vm->mem.slot[i].size;
	snprintf(c->cmdline, sizeof(c->cmdline), "%s", vm->cfg.cmdline);
	snprintf(c->kernel, sizeof(c->kernel), "%s", vm->cfg.kernel);
	state_io_save_init(&io, "VM_CONFIG", err);
	config_io(&io, c);
	free(c);
	return put_body(s, REC_VM_CONFIG, &io, err);
}

/* save_devices - VCPU records from @st (the paused VM's vCPU state), then DEVICE records. */
static int save_devices(struct stream *s, struct vm *vm, struct x86_state *st, struct hv_error *err)
{
	struct state_io io;
	char what[32];

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		uint32_t id = i, ver = X86_STATE_VERSION;
		snprintf(what, sizeof(what), "vcpu %u", i);
		state_io_save_init(&io, what, err);
		STATE_FIELD(&io, "vcpu", &id);
		STATE_FIELD(&io, "version", &ver);
		x86_state_io(&io, &st[i]);
		if (put_body(s, REC_VCPU, &io, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < NDEVICES; i++) {
		uint32_t ver = devices[i].version;
		if (devices[i].present && !devices[i].present(vm))
			continue;
		state_io_save_init(&io, devices[i].name, err);
		STATE_STR(&io, "device", (char *)devices[i].name, strlen(devices[i].name) + 1);
		STATE_FIELD(&io, "version", &ver);
		devices[i].state(&io, vm, NULL);
		if (put_body(s, REC_DEVICE, &io, err) < 0)
			return -1;
	}
	return 0;
}

/* get_states - every vCPU's state; fails (before anything is written) if the VM runs. */
static struct x86_state *get_states(struct vm *vm, struct hv_error *err)
{
	struct x86_state *st = calloc(vm->nvcpus, sizeof(*st));

	if (!st) {
		hv_fail(err, ENOMEM, "out of memory");
		return NULL;
	}
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm_get_state(vm, i, &st[i], err) < 0) {
			free(st);
			return NULL;
		}
	return st;
}

int vmstate_save_config(struct stream *s, struct vm *vm, struct hv_error *err)
{
	struct state_io io;

	if (save_config(s, vm, err) < 0)
		return -1;
	state_io_save_init(&io, "SOURCE_INFO", err);
	STATE_STR(&io, "writer", "hv libmigrate", 14);
	return put_body(s, REC_SOURCE_INFO, &io, err);
}

int vmstate_save_devices(struct stream *s, struct vm *vm, struct hv_error *err)
{
	struct x86_state *st = get_states(vm, err);
	int rc;

	if (!st)
		return -1;
	rc = save_devices(s, vm, st, err);
	free(st);
	return rc;
}

int vmstate_save(struct stream *s, struct vm *vm, int zstd_level, save_progress_fn progress,
                 void *progress_arg, struct hv_error *err)
{
	struct x86_state *st = get_states(vm, err);
	struct page_writer pw;
	int rc = -1;

	if (!st)
		return -1;
	if (vmstate_save_config(s, vm, err) < 0)
		goto out;
	if (page_writer_init(&pw, s, zstd_level, err) < 0)
		goto out;
	pw.progress = progress;
	pw.progress_arg = progress_arg;
	rc = pages_save_nonzero(&pw, &vm->mem, err);
	page_writer_free(&pw);
	if (rc < 0 || (rc = save_devices(s, vm, st, err)) < 0)
		goto out;
	rc = stream_write_end(s, err);
out:
	free(st);
	return rc;
}

/* ---- load ---- */

struct vmstate_loader {
	const char *name; /* the stream's, for messages */
	struct vm *vm;
	int console_out, console_in;
	bool created;
	bool vcpu_seen[VM_MAX_VCPUS];
	bool dev_seen[NDEVICES];
	struct kvm_vm_arch_state *kvm_arch; /* a loaded kvm-vm record, applied at END */
	void *dctx;
	struct x86_state *st;
	char what[160]; /* "FILE: record VCPU at offset N" */
};

static const char *rec_what(struct vmstate_loader *l, const struct record *r)
{
	snprintf(l->what, sizeof(l->what), "%s: record %s at offset %llu", l->name,
	         stream_record_name(r->type), (unsigned long long)r->off);
	return l->what;
}

static int load_config(struct vmstate_loader *l, const struct record *r, int out, int in,
                       struct hv_error *err)
{
	struct config *c = calloc(1, sizeof(*c));
	struct vm_config *cfg = calloc(1, sizeof(*cfg));
	const struct accel_ops *accel;
	struct state_io io;
	int rc = -1;

	if (!c || !cfg) {
		hv_fail(err, ENOMEM, "out of memory");
		goto out;
	}
	if (state_io_load_init(&io, rec_what(l, r), r->body, r->len, err) < 0 ||
	    config_io(&io, c) < 0)
		goto out;
	if (strcmp(c->accel, "emu") && strcmp(c->accel, "kvm")) {
		hv_fail(err, EINVAL, "%s: unknown accelerator '%s'", l->what, c->accel);
		goto out;
	}
	accel = accel_select(c->accel, err);
	if (!accel)
		goto out;
	snprintf(cfg->name, sizeof(cfg->name), "%s", c->name);
	snprintf(cfg->cmdline, sizeof(cfg->cmdline), "%s", c->cmdline);
	snprintf(cfg->kernel, sizeof(cfg->kernel), "%s", c->kernel);
	cfg->ram_size = c->ram_size;
	cfg->nvcpus = c->nvcpus;
	cfg->deterministic = c->deterministic;
	if (vm_create(l->vm, cfg, accel, out, in, err) < 0)
		goto out;
	l->created = true;
	if ((uint32_t)l->vm->mem.nslots != c->nslots) {
		hv_fail(err, EINVAL, "%s: %u memory slots, this hv lays out %d for %llu bytes",
		        l->what, c->nslots, l->vm->mem.nslots, (unsigned long long)c->ram_size);
		goto out;
	}
	for (uint32_t i = 0; i < c->nslots; i++)
		if (l->vm->mem.slot[i].gpa != c->gpa[i] || l->vm->mem.slot[i].size != c->size[i]) {
			hv_fail(err, EINVAL,
			        "%s: slot %u (gpa 0x%llx, %llu bytes) differs from "
			        "this hv's layout",
			        l->what, i, (unsigned long long)c->gpa[i],
			        (unsigned long long)c->size[i]);
			goto out;
		}
	rc = 0;
out:
	free(c);
	free(cfg);
	return rc;
}

static int load_vcpu(struct vmstate_loader *l, const struct record *r, struct hv_error *err)
{
	struct state_io io;
	uint32_t id = 0, ver = 0;

	if (state_io_load_init(&io, rec_what(l, r), r->body, r->len, err) < 0)
		return -1;
	STATE_FIELD(&io, "vcpu", &id);
	if (!io.failed && id >= l->vm->nvcpus)
		return state_io_fail(&io, "vCPU %u, the VM has %u", id, l->vm->nvcpus);
	if (!io.failed && l->vcpu_seen[id])
		return state_io_fail(&io, "vCPU %u appears twice", id);
	if (!version_io(&io, &ver, X86_STATE_VERSION))
		return -1;
	memset(l->st, 0, sizeof(*l->st));
	if (x86_state_io(&io, l->st) < 0)
		return -1;
	if (vm_set_state(l->vm, id, l->st, err) < 0)
		return -1;
	l->vcpu_seen[id] = true;
	return 0;
}

static int load_device(struct vmstate_loader *l, const struct record *r, struct hv_error *err)
{
	struct state_io io;
	char name[32];
	uint32_t ver = 0;
	size_t i;

	if (state_io_load_init(&io, rec_what(l, r), r->body, r->len, err) < 0)
		return -1;
	STATE_STR(&io, "device", name, sizeof(name));
	if (io.failed)
		return -1;
	for (i = 0; i < NDEVICES && strcmp(devices[i].name, name); i++)
		;
	if (i == NDEVICES)
		return state_io_fail(&io, "unknown device '%s'", name);
	if (l->dev_seen[i])
		return state_io_fail(&io, "device '%s' appears twice", name);
	if (devices[i].present && !devices[i].present(l->vm))
		return state_io_fail(&io, "device '%s' does not exist on a VM that runs on %s",
		                     name, l->vm->accel->name);
	snprintf(l->what + strlen(l->what), sizeof(l->what) - strlen(l->what), ": %s", name);
	if (!version_io(&io, &ver, devices[i].version) || devices[i].state(&io, l->vm, l) < 0)
		return -1;
	l->dev_seen[i] = true;
	return 0;
}

/* kvm-vm: saving reads the paused VM's KVM state; loading keeps it for load_end. */
static int dev_kvm_vm(struct state_io *io, struct vm *vm, struct vmstate_loader *l)
{
	struct kvm_vm_arch_state *s;

	if (!io->loading) {
		if (!(s = calloc(1, sizeof(*s))))
			return state_io_fail(io, "out of memory");
		if (kvm_vm_get_arch(vm, s, io->err) < 0)
			io->failed = -1;
		else
			kvm_vm_arch_io(io, s);
		free(s);
		return state_io_result(io);
	}
	if (!l->kvm_arch && !(l->kvm_arch = calloc(1, sizeof(*l->kvm_arch))))
		return state_io_fail(io, "out of memory");
	return kvm_vm_arch_io(io, l->kvm_arch);
}

static int load_checkpoint(struct vmstate_loader *l, const struct record *r, struct hv_error *err)
{
	struct state_io io;
	uint64_t seq = 0;

	/* A consistency point; a save file has nothing to do at one, but it must parse. */
	if (state_io_load_init(&io, rec_what(l, r), r->body, r->len, err) < 0)
		return -1;
	STATE_FIELD(&io, "seq", &seq);
	return state_io_result(&io);
}

static int load_end(struct vmstate_loader *l, const struct record *r, struct hv_error *err)
{
	rec_what(l, r);
	for (unsigned i = 0; i < l->vm->nvcpus; i++)
		if (!l->vcpu_seen[i])
			return hv_fail(err, EINVAL, "%s: no VCPU record for vCPU %u", l->what, i);
	for (size_t i = 0; i < NDEVICES; i++)
		if (!l->dev_seen[i] && !devices[i].optional)
			return hv_fail(err, EINVAL, "%s: no DEVICE record for '%s'", l->what,
			               devices[i].name);
	/* VM-level KVM state goes in after every vCPU's (kvm.h), before any vCPU runs. */
	if (l->kvm_arch && kvm_vm_set_arch(l->vm, l->kvm_arch, err) < 0) {
		char msg[HV_ERROR_MSG];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		return hv_fail(err, err->code, "%s: kvm-vm: %s", l->what, msg);
	}
	return 0;
}

struct vmstate_loader *vmstate_loader_new(struct vm *vm, const char *name, int console_out,
                                          int console_in, struct hv_error *err)
{
	struct vmstate_loader *l = calloc(1, sizeof(*l));

	memset(vm, 0, sizeof(*vm)); /* vm_destroy() is then safe whatever happens */
	if (l) {
		l->name = name;
		l->vm = vm;
		l->console_out = console_out;
		l->console_in = console_in;
		l->dctx = ZSTD_createDCtx();
		l->st = calloc(1, sizeof(*l->st));
	}
	if (!l || !l->dctx || !l->st) {
		vmstate_loader_free(l);
		hv_fail(err, ENOMEM, "%s: out of memory", name);
		return NULL;
	}
	return l;
}

bool vmstate_loader_created(const struct vmstate_loader *l)
{
	return l->created;
}

int vmstate_loader_feed(struct vmstate_loader *l, const struct record *r, struct hv_error *err)
{
	if (!l->created) {
		if (r->type == REC_VM_CONFIG)
			return load_config(l, r, l->console_out, l->console_in, err);
		if ((r->type & REC_OPTIONAL) && r->type != REC_END)
			return 0;
		return hv_fail(err, EINVAL, "%s: expected VM_CONFIG first", rec_what(l, r));
	}
	switch (r->type) {
	case REC_END: return load_end(l, r, err) < 0 ? -1 : 1;
	case REC_VM_CONFIG:
		return hv_fail(err, EINVAL, "%s: VM_CONFIG appears twice", rec_what(l, r));
	case REC_VCPU: return load_vcpu(l, r, err);
	case REC_DEVICE: return load_device(l, r, err);
	case REC_PAGE_DATA: return pages_load(&l->vm->mem, r, l->dctx, l->name, err);
	case REC_CHECKPOINT: return load_checkpoint(l, r, err);
	default:
		if (r->type & REC_OPTIONAL)
			return 0; /* optional: a reader may skip what it does not know */
		return hv_fail(err, EINVAL, "%s: unknown mandatory record (newer writer?)",
		               rec_what(l, r));
	}
}

void vmstate_loader_free(struct vmstate_loader *l)
{
	if (!l)
		return;
	ZSTD_freeDCtx(l->dctx);
	free(l->st);
	free(l->kvm_arch);
	free(l);
}

int vmstate_load(struct stream *s, struct vm *vm, int console_out, int console_in,
                 struct hv_error *err)
{
	struct vmstate_loader *l = vmstate_loader_new(vm, s->name, console_out, console_in, err);
	struct record r;
	int rc = -1;

	if (!l)
		return -1;
	for (;;) {
		int got = stream_read(s, &r, err);
		if (got >= 0)
			got = vmstate_loader_feed(l, &r, err);
		if (got < 0)
			break;
		if (got == 1) {
			rc = 0;
			break;
		}
	}
	if (rc < 0 && l->created)
		vm_destroy(vm);
	vmstate_loader_free(l);
	return rc;
}
