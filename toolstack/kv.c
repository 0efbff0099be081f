/*
 * kv.c - the reader of `key = value` files (kv.h).
 *
 * A line is checked for NUL and control bytes as a whole before it is lexed, so that
 * no later step has to think about them; then the key is looked up before its value is
 * lexed, so that a misspelt key is reported as such even when its value is malformed too.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "toolstack/kv.h"

/* One pass over a text. */
struct kv_reader {
	const char *p, *end; /* what is left of the text */
	const char *fname;   /* for messages */
	const struct kv_format *f;
	unsigned line;               /* of the setting read last */
	unsigned lines[KV_KEYS_MAX]; /* per key index, the line that set it, or 0 */
	char kname[48];              /* that setting's key, as shown in messages */
	char val[KV_LINE_MAX + 1];   /* its value: a value never outgrows its line */
};

const char *kv_shown(const char *s, size_t len, bool quotes, char out[48])
{
	size_t i, n = 0;

	if (quotes)
		out[n++] = '"';
	for (i = 0; i < len && i < 40; i++)
		out[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (i < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	if (quotes)
		out[n++] = '"';
	out[n] = '\0';
	return out;
}

int kv_complain(char *msg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, KV_MSG, fmt, ap);
	va_end(ap);
	return -1;
}

int kv_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]))
			return *out = true, 0;
		if (!strcasecmp(v, no[i]))
			return *out = false, 0;
	}
	return -1;
}

/* Fail with "FILE:LINE: KEY: MSG", leaving out the parts that are NULL or 0. */
static int kv_fail(const struct kv_reader *r, struct hv_error *err, int code, unsigned line,
                   const char *key, const char *msg)
{
	char where[32] = "";

	if (line)
		snprintf(where, sizeof(where), ":%u", line);
	return hv_fail(err, code, "%s%s: %s%s%s", r->fname, where, key ? key : "", key ? ": " : "",
	               msg);
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Lex the value at *@pp (before @e) into r->val: a "string" with \" and \\ unescaped, or
 * a bare word up to a blank or '#'. Returns its length, or -1 with @msg (KV_MSG bytes) set.
 */
static long lex_value(struct kv_reader *r, const char **pp, const char *e, bool *quoted, char *msg)
{
	const char *p = *pp;
	size_t n = 0;

	*quoted = *p == '"';
	if (!*quoted) {
		while (p < e && !is_space(*p) && *p != '#')
			r->val[n++] = *p++;
		r->val[n] = '\0';
		*pp = p;
		return (long)n;
	}
	for (p++;; p++) {
		if (p == e)
			return snprintf(msg, KV_MSG, "unterminated string (no closing '\"')"), -1;
		if (*p == '"')
			break;
		if (*p == '\\') {
			if (p + 1 == e || (p[1] != '"' && p[1] != '\\'))
				return snprintf(msg, KV_MSG,
				                "bad escape in the string (only \\\" and \\\\)"),
				       -1;
			p++;
		}
		r->val[n++] = *p;
	}
	if (n > KV_STR_MAX)
		return snprintf(msg, KV_MSG, "string of %zu bytes, at most %d", n, KV_STR_MAX), -1;
	r->val[n] = '\0';
	*pp = p + 1;
	return (long)n;
}

/* One line, @p..@e without its newline: 1 with @s set, 0 if it holds no setting, or -1. */
static int read_line(struct kv_reader *r, const char *p, const char *e, struct kv_setting *s,
                     struct hv_error *err)
{
	const char *kstart;
	char msg[KV_MSG], q[48];
	long k, len;

	if (e > p && e[-1] == '\r') /* CRLF files */
		e--;
	for (const char *c = p; c < e; c++) {
		if (!*c)
			return kv_fail(r, err, EINVAL, r->line, NULL, "NUL byte");
		if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
			snprintf(msg, KV_MSG, "control character 0x%02x", (unsigned char)*c);
			return kv_fail(r, err, EINVAL, r->line, NULL, msg);
		}
	}
	while (p < e && is_space(*p))
		p++;
	if (p == e || *p == '#')
		return 0;
	for (kstart = p; p < e && !is_space(*p) && !strchr("=#\"", *p); p++)
		;
	if (p == kstart)
		return kv_fail(r, err, EINVAL, r->line, NULL, "expected 'key = value'");
	/* An unknown key may hold any byte: show it cut short and printable. */
	kv_shown(kstart, (size_t)(p - kstart), false, r->kname);
	k = r->f->find(kstart, (size_t)(p - kstart));
	while (p < e && is_space(*p))
		p++;
	if (p == e || *p != '=')
		return kv_fail(r, err, EINVAL, r->line, r->kname, "expected '=' after the key");
	if (k < 0 || (size_t)k >= r->f->nkeys || k >= KV_KEYS_MAX)
		return kv_fail(r, err, EINVAL, r->line, r->kname, "unknown key");
	if (r->lines[k]) {
		snprintf(msg, KV_MSG, "set twice (first on line %u)", r->lines[k]);
		return kv_fail(r, err, EINVAL, r->line, r->kname, msg);
	}
	r->lines[k] = r->line;
	for (p++; p < e && is_space(*p);)
		p++;
	if (p == e || *p == '#')
		return kv_fail(r, err, EINVAL, r->line, r->kname, "missing value");
	len = lex_value(r, &p, e, &s->quoted, msg);
	if (len < 0)
		return kv_fail(r, err, EINVAL, r->line, r->kname, msg);
	while (p < e && is_space(*p))
		p++;
	if (p < e && *p != '#') {
		snprintf(msg, KV_MSG, "unexpected %s after the value",
		         kv_shown(p, (size_t)(e - p), true, q));
		return kv_fail(r, err, EINVAL, r->line, r->kname, msg);
	}
	s->key = (size_t)k;
	s->val = r->val;
	s->len = (size_t)len;
	return 1;
}

/* The next setting into @s: 1, 0 at the end of the text, or -1 with @err set. */
static int kv_next(struct kv_reader *r, struct kv_setting *s, struct hv_error *err)
{
	const char *nl;
	char msg[KV_MSG];
	int rc;

	while (r->p < r->end) {
		r->line++;
		nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
		if (!nl)
			nl = r->end;
		if (nl - r->p > KV_LINE_MAX) {
			snprintf(msg, KV_MSG, "line longer than %d bytes", KV_LINE_MAX);
			return kv_fail(r, err, EINVAL, r->line, NULL, msg);
		}
		rc = read_line(r, r->p, nl, s, err);
		r->p = nl + 1 < r->end ? nl + 1 : r->end;
		if (rc != 0)
			return rc;
	}
	return 0;
}

int kv_parse(const struct kv_format *f, void *arg, const char *buf, size_t len, const char *fname,
             struct hv_error *err)
{
	struct kv_setting s;
	struct kv_reader *r;
	char msg[KV_MSG];
	const char *bad;
	int rc, code;

	if (len > KV_FILE_MAX)
		return hv_fail(err, EFBIG, "%s: larger than %d KiB", fname, KV_FILE_MAX / 1024);
	/* A line-sized value buffer: on the heap, not on a thread's stack. */
	if (!(r = calloc(1, sizeof(*r))))
		return hv_fail(err, ENOMEM, "%s: out of memory", fname);
	r->p = buf;
	r->end = buf + len;
	r->fname = fname;
	r->f = f;
	while ((rc = kv_next(r, &s, err)) > 0)
		if (f->set(arg, &s, msg, &code) < 0) {
			rc = kv_fail(r, err, code, r->line, r->kname, msg);
			break;
		}
	if (rc == 0 && (bad = f->check(arg, r->lines, msg))) {
		long k = f->find(bad, strlen(bad));

		rc = kv_fail(r, err, EINVAL, k >= 0 && k < KV_KEYS_MAX ? r->lines[k] : 0, bad, msg);
	}
	free(r);
	return rc;
}

int kv_read_file(const char *path, char **out, size_t *outlen, struct hv_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hv_fail(err, errno, "%s: %s", path, strerror(errno));
	/* A FIFO or a device would block or never end: only regular files are configs. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		hv_fail(err, EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	if (!(buf = malloc(KV_FILE_MAX + 1))) {
		hv_fail(err, ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	/* One byte past the limit tells a file at the limit from one over it. */
	while (len <= KV_FILE_MAX && (n = read(fd, buf + len, KV_FILE_MAX + 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			hv_fail(err, errno, "%s: %s", path, strerror(errno));
			goto fail;
		}
		len += (size_t)n;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}
