/*
 * domcfg.h - domain config files: the `key = value` files that `hvctl create FILE` reads
 * and that hvd keeps in its state directory (docs/domain-config.md).
 *
 * The format is deliberately small (one key per line, like Xen's xl.cfg) and strict: an
 * unknown key, a duplicate, a bad value or anything left over on a line is an error that
 * names the file, the line and the key, because a typo silently ignored would start a VM
 * other than the one the operator described. domcfg_write() prints the canonical form,
 * which parses back to an equal struct, so hvd can persist what it was given.
 */
#ifndef HV_TOOLSTACK_DOMCFG_H
#define HV_TOOLSTACK_DOMCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hv/error.h"

#define DOMCFG_FILE_MAX (64 * 1024) /* bytes in a config file */
#define DOMCFG_LINE_MAX 4096        /* bytes in a line, without its newline */
#define DOMCFG_NAME_MAX 63          /* hv's VM_NAME_MAX less the NUL */
/*
 * Bytes in a string value, unescaped: small enough that its canonical line fits
 * DOMCFG_LINE_MAX even when every byte needs a backslash.
 */
#define DOMCFG_STR_MAX      2000
#define DOMCFG_UUID_LEN     36               /* 8-4-4-4-12 hex digits */
#define DOMCFG_INTERVAL_MAX (366ULL * 86400) /* checkpoint_interval, seconds */
#define DOMCFG_KEEP_MAX     100000           /* checkpoint_keep_hourly / _daily */

enum domcfg_accel {
	DOMCFG_ACCEL_AUTO, /* kvm when /dev/kvm works, else emu (the default) */
	DOMCFG_ACCEL_EMU,
	DOMCFG_ACCEL_KVM,
};

/*
 * One domain's configuration. Strings are malloc'd and owned by the struct (free them with
 * domcfg_free); an optional string that was not given is NULL. Sizes are in bytes and
 * durations in seconds.
 */
struct domcfg {
	char name[DOMCFG_NAME_MAX + 1]; /* required */
	char uuid[DOMCFG_UUID_LEN + 1]; /* lower-case; "" when absent (hvd makes one) */
	uint64_t memory;                /* required; 2 MiB..1 TiB, a multiple of 4 KiB */
	unsigned vcpus;                 /* 1..VM_MAX_VCPUS, default 1 */
	enum domcfg_accel accel;        /* default DOMCFG_ACCEL_AUTO */
	char *kernel;                   /* required */
	char *initrd;                   /* optional */
	char *cmdline;                  /* optional; "" is kept apart from NULL */
	char *console_log;              /* optional: where hvd writes the guest console */
	char *checkpoint_store;         /* optional store directory */
	uint64_t checkpoint_interval;   /* 0 when absent; needs checkpoint_store */
	int checkpoint_keep_hourly;     /* -1 when absent; needs checkpoint_store */
	int checkpoint_keep_daily;      /* -1 when absent; needs checkpoint_store */
	bool autostart;                 /* start when hvd starts; default false */
	bool deterministic;             /* hv run --deterministic; default false */
};

/*
 * domcfg_parse - parse the config text @buf (@len bytes, no NUL needed) into @out, which
 * need not be initialised. @fname names the text in messages ("config" when NULL).
 * Returns 0 with @out filled in (release it with domcfg_free), or -1 with @out empty
 * (nothing to free) and @err set to one line such as
 * `web1.cfg:3: memory: "12X": not a size (use K, M, G or T)` (EINVAL; EFBIG for a text
 * over DOMCFG_FILE_MAX; ENOMEM). Paths are kept as written.
 */
int domcfg_parse(const char *buf, size_t len, const char *fname, struct domcfg *out,
                 struct hv_error *err);

/*
 * domcfg_load - read and parse the config file @path (at most DOMCFG_FILE_MAX bytes) into
 * @out, as domcfg_parse, then make relative paths (kernel, initrd, console_log,
 * checkpoint_store) relative to the directory that holds @path, and absolute, so that
 * they mean the same thing to hvd whatever its working directory. Returns 0, or -1 with
 * @out empty and @err set (errno of a failed open or read, or as domcfg_parse).
 */
int domcfg_load(const char *path, struct domcfg *out, struct hv_error *err);

/*
 * domcfg_resolve_paths - prefix @dir and a slash to every relative path of @cfg. @dir
 * should be absolute. Returns 0, or -1 with @err set (ENOMEM; ENAMETOOLONG when a result
 * would be over DOMCFG_STR_MAX), in which case @cfg is unchanged.
 */
int domcfg_resolve_paths(struct domcfg *cfg, const char *dir, struct hv_error *err);

/*
 * domcfg_check - check a struct built by hand (by hvd, say) against the rules the parser
 * applies: required keys present, every value in range, strings without control
 * characters and not over DOMCFG_STR_MAX. Returns 0, or -1 with @err naming the key.
 */
int domcfg_check(const struct domcfg *cfg, struct hv_error *err);

/*
 * domcfg_write - print @cfg to @f in canonical form: every key that has a value, one per
 * line, in a fixed order, sizes and durations in their largest exact unit. The text
 * parses back to a struct that domcfg_equal() finds equal. Returns 0, or -1 with @err set
 * when @cfg fails domcfg_check() or @f reports a write error (EIO).
 */
int domcfg_write(const struct domcfg *cfg, FILE *f, struct hv_error *err);

/* domcfg_equal - whether @a and @b describe the same domain, field by field. */
bool domcfg_equal(const struct domcfg *a, const struct domcfg *b);

/*
 * domcfg_argv - the argument vector that starts the domain: `@hv run --name ... -- KERNEL`,
 * with `--control @control` when @control is not NULL. Only the keys hv itself takes are
 * used (console_log, the checkpoint keys and autostart are hvd's business). Returns a
 * NULL-terminated array that the caller releases with domcfg_argv_free(), or NULL with
 * @err set (ENOMEM, or EINVAL when @cfg fails domcfg_check()).
 */
char **domcfg_argv(const struct domcfg *cfg, const char *hv, const char *control,
                   struct hv_error *err);

/* domcfg_argv_free - free @argv from domcfg_argv() and every string in it; NULL is fine. */
void domcfg_argv_free(char **argv);

/*
 * domcfg_init - set @cfg to the defaults, with no string and no required key set (so not
 * yet valid), as a start for a config built by hand. Allocates nothing.
 */
void domcfg_init(struct domcfg *cfg);

/* domcfg_free - free the strings of @cfg and reset it as domcfg_init; safe to call twice. */
void domcfg_free(struct domcfg *cfg);

/* domcfg_accel_name - "auto", "emu" or "kvm". */
const char *domcfg_accel_name(enum domcfg_accel accel);

#endif
