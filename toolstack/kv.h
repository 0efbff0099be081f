/*
 * kv.h - the reader of `key = value` files: domain configs (docs/domain-config.md) and
 * hvd's own config file (docs/hvd.8.md, CONFIGURATION FILE).
 *
 * Both formats are one setting per line, `#` comments, "strings" with only \" and \\ as
 * escapes, bare words for everything else, and the same strictness: a key the format
 * does not know, a key given twice, a control character or anything left over after the
 * value is an error naming the file, the line and the key. The reader does the lexing
 * and those checks; what a value means is the format's (struct kv_format), whose
 * complaints the reader puts in the one shape of every message, "FILE:LINE: KEY: what".
 */
#ifndef HV_TOOLSTACK_KV_H
#define HV_TOOLSTACK_KV_H

#include <stdbool.h>
#include <stddef.h>

#include "hv/error.h"

#define KV_FILE_MAX (64 * 1024) /* bytes in a file */
#define KV_LINE_MAX 4096        /* bytes in a line, without its newline */
#define KV_STR_MAX  2000        /* bytes in a string value, unescaped */
#define KV_KEYS_MAX 32          /* keys a format may have */
#define KV_MSG      320         /* a caller's complaint about a value, for kv_fail */

/* A setting: key index, and the value (NUL-terminated, @len bytes; @quoted if "..."). */
struct kv_setting {
	size_t key;
	const char *val;
	size_t len;
	bool quoted;
};

/* A format: its keys, and what their values mean. */
struct kv_format {
	long (*find)(const char *name, size_t len); /* a key's index (< nkeys), or -1 */
	size_t nkeys;                               /* at most KV_KEYS_MAX */
	/*
	 * Store setting @s in @arg. 0, or -1 with @msg (KV_MSG bytes) saying what is wrong
	 * with the value and *@code an errno (EINVAL, ENOMEM).
	 */
	int (*set)(void *arg, const struct kv_setting *s, char *msg, int *code);
	/*
	 * Once every line is read: the rules across keys (required keys, pairs), given per
	 * key index the line that set it (0: absent). NULL, or the name of the key to blame
	 * (its line goes in the message) with @msg set.
	 */
	const char *(*check)(void *arg, const unsigned *lines, char *msg);
};

/*
 * kv_parse - read the text @buf (@len bytes, no NUL needed), named @fname in messages,
 * as format @f, storing into @arg. Returns 0, or -1 with @err set to one line, "FILE:LINE:
 * KEY: what" (EINVAL, or the code @f->set gave): the complaints of @f
 * (`web1.cfg:3: memory: "12X": not a size (use K, M, G or T)`) and the reader's own
 * (`FILE: larger than 64 KiB` (EFBIG), `FILE:LINE: NUL byte`, `...: KEY: unknown key`,
 * `...: KEY: set twice (first on line N)`, `...: KEY: unterminated string (no closing
 * '"')`, ...). On failure @arg may hold some of the settings: the caller frees them.
 */
int kv_parse(const struct kv_format *f, void *arg, const char *buf, size_t len, const char *fname,
             struct hv_error *err);

/*
 * kv_shown - @s (@len bytes) made fit for a one-line message into @out: cut at 40 bytes
 * (with "..."), anything not printable ASCII as '?', in double quotes if @quotes.
 */
const char *kv_shown(const char *s, size_t len, bool quotes, char out[48]);

/* kv_complain - a format's complaint: @fmt into @msg (KV_MSG bytes); returns -1. */
int kv_complain(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* kv_bool - true/false, yes/no, on/off, 1/0 (any case) into *@out; -1 for anything else. */
int kv_bool(const char *v, bool *out);

/*
 * kv_read_file - read the regular file @path, at most KV_FILE_MAX bytes plus one (so
 * that kv_parse can tell a file over the limit), into *@buf (malloc'd, the caller frees
 * it) and *@len. Returns 0, or -1 with @err naming @path (errno of a failed open or
 * read; EINVAL "PATH: not a regular file"; ENOMEM).
 */
int kv_read_file(const char *path, char **buf, size_t *len, struct hv_error *err);

#endif
