/*
 * domcfg.c - domain config files (docs/domain-config.md).
 *
 * A table of keys drives everything: the parser looks a key up, converts its value by
 * type and records the line it came from, so that rules spanning two keys (deterministic
 * needs one vCPU) can still point at a line. The value checks are separate from the
 * lexing so that domcfg_check() applies the very same rules to a struct built in memory,
 * and domcfg_write() never prints a file that domcfg_parse() would refuse.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hv/vm.h"
#include "toolstack/domcfg.h"
#include "toolstack/size.h"

/* clang-format off */
enum vtype { T_NAME, T_UUID, T_MEMORY, T_VCPUS, T_ACCEL, T_PATH, T_STRING, T_DURATION, T_COUNT,
	     T_BOOL };
/* clang-format on */

struct key {
	const char *name;
	enum vtype type;
	bool required;
	size_t off; /* of the field in struct domcfg */
};

/* clang-format off */
#define K(n, t, r) {#n, t, r, offsetof(struct domcfg, n)}
/* clang-format on */
/* Also the order of the canonical form. */
static const struct key keys[] = {
    K(name, T_NAME, true),
    K(uuid, T_UUID, false),
    K(memory, T_MEMORY, true),
    K(vcpus, T_VCPUS, false),
    K(accel, T_ACCEL, false),
    K(kernel, T_PATH, true),
    K(initrd, T_PATH, false),
    K(cmdline, T_STRING, false),
    K(console_log, T_PATH, false),
    K(checkpoint_store, T_PATH, false),
    K(checkpoint_interval, T_DURATION, false),
    K(checkpoint_keep_hourly, T_COUNT, false),
    K(checkpoint_keep_daily, T_COUNT, false),
    K(autostart, T_BOOL, false),
    K(deterministic, T_BOOL, false),
};
#undef K
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* hv run must take every name we accept, and every canonical line must parse back. */
_Static_assert(DOMCFG_NAME_MAX + 1 == VM_NAME_MAX, "name bound differs from hv's");
_Static_assert(sizeof("checkpoint_store = \"\"") - 1 + 2 * DOMCFG_STR_MAX <= DOMCFG_LINE_MAX,
               "a canonical string line may not fit DOMCFG_LINE_MAX");

#define MSG 320 /* a value's complaint, before the file, line and key go in front */

/* Set a value's complaint @msg (MSG bytes) and return -1. */
static int complain(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int complain(char *msg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, MSG, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *const accel_names[] = {"auto", "emu", "kvm"};

const char *domcfg_accel_name(enum domcfg_accel accel)
{
	return (unsigned)accel < 3 ? accel_names[accel] : "?";
}

static const struct key *key_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len && !memcmp(keys[i].name, name, len))
			return &keys[i];
	return NULL;
}

/*
 * Show @s (at most @len bytes) in a message: cut at 40 bytes and with anything that is
 * not printable ASCII shown as '?', so that the message stays one readable line; in
 * double quotes if @quotes.
 */
static const char *shown(const char *s, size_t len, bool quotes, char out[48])
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

static const char *quote(const char *s, size_t len, char out[48])
{
	return shown(s, len, true, out);
}

/* ---- value checks, shared by the parser and domcfg_check() ---- */

static int check_name(const char *s, char *msg)
{
	size_t len = strlen(s);
	char q[48];

	if (len < 1 || len > DOMCFG_NAME_MAX)
		return complain(msg, "%s: must be 1 to %d characters", quote(s, len, q),
		                DOMCFG_NAME_MAX);
	if (s[0] == '.' || s[0] == '-')
		return complain(msg, "%s: must not start with '%c'", quote(s, len, q), s[0]);
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
			return complain(msg, "%s: may hold only letters, digits, '_', '.' and '-'",
			                quote(s, len, q));
	return 0;
}

/* An empty uuid is "absent"; anything else must be the 8-4-4-4-12 form in lower case. */
static int check_uuid(const char *s, char *msg)
{
	size_t len = strlen(s);
	char q[48];

	if (!len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (len != DOMCFG_UUID_LEN || (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i])))
			return complain(msg,
			                "%s: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
			                quote(s, len, q));
	}
	return 0;
}

/* The largest binary unit that divides @v exactly, for messages and the canonical form. */
static void size_format(uint64_t v, char out[32])
{
	static const char units[] = "TGMK";

	for (int i = 0; i < 4; i++) {
		int shift = 10 * (4 - i);

		if (v && !(v & ((1ULL << shift) - 1))) {
			snprintf(out, 32, "%llu%c", (unsigned long long)(v >> shift), units[i]);
			return;
		}
	}
	snprintf(out, 32, "%llu", (unsigned long long)v);
}

/* hv run's bounds (hv/mem.h), so that hvd refuses at create what hv would refuse at start. */
/*
 * The numeric checks name the value as @text, the way the user wrote it, so that a
 * saturated "99999999999999999999" is not shown as 18446744073709551615.
 */
static int check_memory(uint64_t v, const char *text, char *msg)
{
	if (v < MEM_MIN_SIZE)
		return complain(msg, "%s: less than the 2M minimum", text);
	if (v > MEM_MAX_SIZE)
		return complain(msg, "%s: more than the 1T maximum", text);
	if (v % MEM_PAGE_SIZE)
		return complain(msg, "%s: not a multiple of 4K", text);
	return 0;
}

static int check_vcpus(uint64_t v, const char *text, char *msg)
{
	if (v < 1 || v > VM_MAX_VCPUS)
		return complain(msg, "%s: must be a number from 1 to %d", text, VM_MAX_VCPUS);
	return 0;
}

/* Paths and strings: no control characters, since the canonical form has no escape for them. */
static int check_string(const char *s, bool path, char *msg)
{
	size_t len = strlen(s);

	if (path && !len)
		return complain(msg, "empty path");
	if (len > DOMCFG_STR_MAX)
		return complain(msg, "%zu bytes, at most %d", len, DOMCFG_STR_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return complain(msg, "control character 0x%02x in the string",
			                (unsigned char)s[i]);
	return 0;
}

static int check_interval(uint64_t v, const char *text, char *msg)
{
	if (v < 1 || v > DOMCFG_INTERVAL_MAX)
		return complain(msg, "%s: must be from 1s to 366d", text);
	return 0;
}

static int check_keep(int64_t v, const char *text, char *msg)
{
	if (v < 0 || v > DOMCFG_KEEP_MAX)
		return complain(msg, "%s: must be a number from 0 to %d", text, DOMCFG_KEEP_MAX);
	return 0;
}

/*
 * The rules between keys. Returns the key at fault (its line is the one to blame) with
 * @msg set, or NULL.
 */
static const char *check_across(const struct domcfg *c, char *msg)
{
	if (c->deterministic && c->accel == DOMCFG_ACCEL_KVM)
		return snprintf(msg, MSG, "needs accel \"emu\" or \"auto\", not \"kvm\""),
		       "deterministic";
	if (c->deterministic && c->vcpus != 1)
		return snprintf(msg, MSG, "needs vcpus = 1, not %u", c->vcpus), "deterministic";
	if (!c->checkpoint_store) {
		snprintf(msg, MSG, "needs checkpoint_store");
		if (c->checkpoint_interval)
			return "checkpoint_interval";
		if (c->checkpoint_keep_hourly >= 0)
			return "checkpoint_keep_hourly";
		if (c->checkpoint_keep_daily >= 0)
			return "checkpoint_keep_daily";
	}
	return NULL;
} /* ---- converting one value ---- */ /* Decimal digits only; *@out saturates at UINT64_MAX so that
                                          huge values fail range checks. */
static int parse_digits(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (!len)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
} /* A bare number is MiB, as in xl.cfg; a suffix K, M, G or T gives the unit. */
static int parse_memory(const char *v, size_t len, uint64_t *out, char *msg)
{
	struct hv_error e = {0};
	char q[48];
	if (parse_digits(v, len, out) == 0) {
		*out = *out > (UINT64_MAX >> 20) ? UINT64_MAX : *out << 20;
	} else if (size_parse(v, out, &e) < 0) {
		if (e.code == ERANGE)
			*out = UINT64_MAX;
		else
			return complain(msg, "%s: not a size (use K, M, G or T)", quote(v, len, q));
	}
	return check_memory(*out, shown(v, len, false, q), msg);
}

static int parse_duration(const char *v, size_t len, uint64_t *out, char *msg)
{
	static const struct {
		char c;
		uint64_t mul;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	size_t digits = len;
	uint64_t mul = 1;
	char q[48];

	for (size_t i = 0; len > 1 && i < 4; i++)
		if (v[len - 1] == units[i].c) {
			mul = units[i].mul;
			digits--;
			break;
		}
	if (parse_digits(v, digits, out) < 0)
		return complain(msg, "%s: not a duration (seconds, or use s, m, h or d)",
		                quote(v, len, q));
	*out = *out > UINT64_MAX / mul ? UINT64_MAX : *out * mul;
	return check_interval(*out, shown(v, len, false, q), msg);
}

static int parse_bool(const char *v, bool *out, char *msg)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	char q[48];

	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]))
			return *out = true, 0;
		if (!strcasecmp(v, no[i]))
			return *out = false, 0;
	}
	return complain(msg, "%s: not a boolean (true/false, yes/no, 1/0)", quote(v, strlen(v), q));
}

/*
 * Store the value @v (NUL-terminated, @len bytes, @quoted if it was a "string") of @k in
 * @c. Returns 0, or -1 with @msg set (errno-style code in *@code).
 */
static int set_value(struct domcfg *c, const struct key *k, const char *v, size_t len, bool quoted,
                     char *msg, int *code)
{
	void *field = (char *)c + k->off;
	char q[48];
	uint64_t n;
	char *dup;

	*code = EINVAL;
	if ((k->type == T_PATH || k->type == T_STRING || k->type == T_NAME || k->type == T_UUID) &&
	    !quoted)
		return complain(msg, "%s: expected a string in double quotes", quote(v, len, q));
	switch (k->type) {
	case T_NAME:
		if (check_name(v, msg) < 0)
			return -1;
		memcpy(c->name, v, len + 1);
		return 0;
	case T_UUID:
		if (!len || check_uuid(v, msg) < 0)
			return complain(msg,
			                "%s: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
			                quote(v, len, q));
		for (size_t i = 0; i <= len; i++)
			c->uuid[i] = (char)tolower((unsigned char)v[i]);
		return 0;
	case T_MEMORY: return parse_memory(v, len, &c->memory, msg);
	case T_VCPUS:
		if (parse_digits(v, len, &n) < 0)
			return complain(msg, "%s: not a number", quote(v, len, q));
		if (check_vcpus(n, shown(v, len, false, q), msg) < 0)
			return -1;
		c->vcpus = (unsigned)n;
		return 0;
	case T_ACCEL:
		for (int i = 0; i < 3; i++)
			if (!strcmp(v, accel_names[i]))
				return c->accel = (enum domcfg_accel)i, 0;
		return complain(msg, "%s: must be \"auto\", \"emu\" or \"kvm\"", quote(v, len, q));
	case T_PATH:
	case T_STRING:
		if (check_string(v, k->type == T_PATH, msg) < 0)
			return -1;
		if (!(dup = strdup(v)))
			return *code = ENOMEM, complain(msg, "out of memory");
		*(char **)field = dup;
		return 0;
	case T_DURATION: return parse_duration(v, len, &c->checkpoint_interval, msg);
	case T_COUNT:
		if (parse_digits(v, len, &n) < 0)
			return complain(msg, "%s: not a number", quote(v, len, q));
		if (check_keep(n > INT64_MAX ? INT64_MAX : (int64_t)n, shown(v, len, false, q),
		               msg) < 0)
			return -1;
		*(int *)field = (int)n;
		return 0;
	case T_BOOL: return parse_bool(v, (bool *)field, msg);
	}
	return complain(msg, "internal error: key type %d", k->type);
}

/* ---- lexing ---- */

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Lex the value at *@pp (before @e) into @val (DOMCFG_LINE_MAX + 1 bytes): a "string" with
 * \" and \\ unescaped, or a bare word up to a blank or '#'. Returns its length, or -1
 * with @msg set.
 */
static long lex_value(const char **pp, const char *e, char *val, bool *quoted, char *msg)
{
	const char *p = *pp;
	size_t n = 0;

	*quoted = *p == '"';
	if (!*quoted) {
		while (p < e && !is_space(*p) && *p != '#')
			val[n++] = *p++;
		val[n] = '\0';
		*pp = p;
		return (long)n;
	}
	for (p++;; p++) {
		if (p == e)
			return complain(msg, "unterminated string (no closing '\"')");
		if (*p == '"')
			break;
		if (*p == '\\') {
			if (p + 1 == e || (p[1] != '"' && p[1] != '\\'))
				return complain(msg,
				                "bad escape in the string (only \\\" and \\\\)");
			p++;
		}
		val[n++] = *p;
	}
	if (n > DOMCFG_STR_MAX)
		return complain(msg, "string of %zu bytes, at most %d", n, DOMCFG_STR_MAX);
	val[n] = '\0';
	*pp = p + 1;
	return (long)n;
}

/* Fail with "FILE:LINE: KEY: MSG", leaving out the parts that are NULL or 0. */
static int fail_at(struct hv_error *err, int code, const char *fname, unsigned line,
                   const char *key, const char *msg)
{
	char where[32] = "";

	if (line)
		snprintf(where, sizeof(where), ":%u", line);
	return hv_fail(err, code, "%s%s: %s%s%s", fname, where, key ? key : "", key ? ": " : "",
	               msg);
}

/*
 * Parse one line (@p..@e, without its newline) into @c. @lines records, per key, the line
 * that set it. Returns 0 or -1 with @err set.
 */
static int parse_line(struct domcfg *c, const char *p, const char *e, const char *fname,
                      unsigned line, unsigned *lines, char *val, struct hv_error *err)
{
	const char *kstart;
	const struct key *k;
	char msg[MSG], kname[48];
	bool quoted;
	long len;
	int code;

	if (e > p && e[-1] == '\r') /* CRLF files */
		e--;
	for (const char *s = p; s < e; s++) {
		if (!*s)
			return fail_at(err, EINVAL, fname, line, NULL, "NUL byte");
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) {
			snprintf(msg, MSG, "control character 0x%02x", (unsigned char)*s);
			return fail_at(err, EINVAL, fname, line, NULL, msg);
		}
	}
	while (p < e && is_space(*p))
		p++;
	if (p == e || *p == '#')
		return 0;
	for (kstart = p; p < e && !is_space(*p) && !strchr("=#\"", *p); p++)
		;
	if (p == kstart)
		return fail_at(err, EINVAL, fname, line, NULL, "expected 'key = value'");
	/* An unknown key may hold any byte: show it cut short and printable. */
	shown(kstart, (size_t)(p - kstart), false, kname);
	k = key_find(kstart, (size_t)(p - kstart));
	while (p < e && is_space(*p))
		p++;
	if (p == e || *p != '=')
		return fail_at(err, EINVAL, fname, line, kname, "expected '=' after the key");
	if (!k)
		return fail_at(err, EINVAL, fname, line, kname, "unknown key");
	if (lines[k - keys]) {
		snprintf(msg, MSG, "set twice (first on line %u)", lines[k - keys]);
		return fail_at(err, EINVAL, fname, line, kname, msg);
	}
	lines[k - keys] = line;
	for (p++; p < e && is_space(*p);)
		p++;
	if (p == e || *p == '#')
		return fail_at(err, EINVAL, fname, line, kname, "missing value");
	len = lex_value(&p, e, val, &quoted, msg);
	if (len < 0)
		return fail_at(err, EINVAL, fname, line, kname, msg);
	while (p < e && is_space(*p))
		p++;
	if (p < e && *p != '#') {
		char q[48];

		snprintf(msg, MSG, "unexpected %s after the value", quote(p, (size_t)(e - p), q));
		return fail_at(err, EINVAL, fname, line, kname, msg);
	}
	if (set_value(c, k, val, (size_t)len, quoted, msg, &code) < 0)
		return fail_at(err, code, fname, line, kname, msg);
	return 0;
}

void domcfg_init(struct domcfg *c)
{
	memset(c, 0, sizeof(*c));
	c->vcpus = 1;
	c->accel = DOMCFG_ACCEL_AUTO;
	c->checkpoint_keep_hourly = -1;
	c->checkpoint_keep_daily = -1;
}

int domcfg_parse(const char *buf, size_t len, const char *fname, struct domcfg *out,
                 struct hv_error *err)
{
	unsigned lines[NKEYS] = {0}, line = 0;
	const char *p = buf, *end = buf + len, *nl, *bad;
	char msg[MSG];
	char *val;

	domcfg_init(out);
	if (!fname)
		fname = "config";
	if (len > DOMCFG_FILE_MAX)
		return hv_fail(err, EFBIG, "%s: larger than %d KiB", fname, DOMCFG_FILE_MAX / 1024);
	/* One value buffer for every line: a value never outgrows its line. */
	if (!(val = malloc(DOMCFG_LINE_MAX + 1)))
		return hv_fail(err, ENOMEM, "%s: out of memory", fname);
	while (p < end) {
		line++;
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		if (nl - p > DOMCFG_LINE_MAX) {
			snprintf(msg, MSG, "line longer than %d bytes", DOMCFG_LINE_MAX);
			fail_at(err, EINVAL, fname, line, NULL, msg);
			goto fail;
		}
		if (parse_line(out, p, nl, fname, line, lines, val, err) < 0)
			goto fail;
		p = nl + 1;
	}
	free(val);
	val = NULL;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].required && !lines[i]) {
			fail_at(err, EINVAL, fname, 0, keys[i].name, "missing (required)");
			goto fail;
		}
	if ((bad = check_across(out, msg))) {
		fail_at(err, EINVAL, fname, lines[key_find(bad, strlen(bad)) - keys], bad, msg);
		goto fail;
	}
	return 0;
fail:
	free(val);
	domcfg_free(out);
	return -1;
}

int domcfg_check(const struct domcfg *c, struct hv_error *err)
{
	const char *bad;
	char msg[MSG], text[32];

	msg[0] = '\0';
	bad = "name";
	if (!memchr(c->name, '\0', sizeof(c->name))) {
		snprintf(msg, MSG, "not NUL-terminated");
		goto fail;
	}
	if (check_name(c->name, msg) < 0)
		goto fail;
	bad = "uuid";
	if (memchr(c->uuid, '\0', sizeof(c->uuid)) == NULL || check_uuid(c->uuid, msg) < 0)
		goto fail;
	for (const char *s = c->uuid; *s; s++)
		if (isupper((unsigned char)*s)) {
			snprintf(msg, MSG, "must be in lower case");
			goto fail;
		}
	bad = "memory";
	size_format(c->memory, text);
	if (check_memory(c->memory, text, msg) < 0)
		goto fail;
	bad = "vcpus";
	snprintf(text, sizeof(text), "%u", c->vcpus);
	if (check_vcpus(c->vcpus, text, msg) < 0)
		goto fail;
	bad = "accel";
	if ((unsigned)c->accel > DOMCFG_ACCEL_KVM) {
		snprintf(msg, MSG, "%d: not an accelerator", (int)c->accel);
		goto fail;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const char *s;

		if (keys[i].type != T_PATH && keys[i].type != T_STRING)
			continue;
		bad = keys[i].name;
		s = *(char *const *)((const char *)c + keys[i].off);
		if (!s && keys[i].required) {
			snprintf(msg, MSG, "missing (required)");
			goto fail;
		}
		if (s && check_string(s, keys[i].type == T_PATH, msg) < 0)
			goto fail;
	}
	bad = "checkpoint_interval";
	snprintf(text, sizeof(text), "%llus", (unsigned long long)c->checkpoint_interval);
	if (c->checkpoint_interval && check_interval(c->checkpoint_interval, text, msg) < 0)
		goto fail;
	bad = "checkpoint_keep_hourly";
	snprintf(text, sizeof(text), "%d", c->checkpoint_keep_hourly);
	if (c->checkpoint_keep_hourly != -1 && check_keep(c->checkpoint_keep_hourly, text, msg) < 0)
		goto fail;
	bad = "checkpoint_keep_daily";
	snprintf(text, sizeof(text), "%d", c->checkpoint_keep_daily);
	if (c->checkpoint_keep_daily != -1 && check_keep(c->checkpoint_keep_daily, text, msg) < 0)
		goto fail;
	if ((bad = check_across(c, msg)))
		goto fail;
	return 0;
fail:
	return hv_fail(err, EINVAL, "%s: %s", bad, msg);
}

static void write_string(FILE *f, const char *key, const char *s)
{
	fprintf(f, "%s = \"", key);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputs("\"\n", f);
}

static void duration_format(uint64_t v, char out[32])
{
	static const struct {
		char c;
		uint64_t div;
	} units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

	for (int i = 0; i < 4; i++)
		if (v % units[i].div == 0) {
			snprintf(out, 32, "%llu%c", (unsigned long long)(v / units[i].div),
			         units[i].c);
			return;
		}
}

int domcfg_write(const struct domcfg *c, FILE *f, struct hv_error *err)
{
	char num[32];

	if (domcfg_check(c, err) < 0)
		return -1;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const void *field = (const char *)c + k->off;

		switch (k->type) {
		case T_NAME: write_string(f, k->name, c->name); break;
		case T_UUID:
			if (c->uuid[0])
				write_string(f, k->name, c->uuid);
			break;
		case T_MEMORY:
			size_format(c->memory, num);
			fprintf(f, "%s = %s\n", k->name, num);
			break;
		case T_VCPUS: fprintf(f, "%s = %u\n", k->name, c->vcpus); break;
		case T_ACCEL: write_string(f, k->name, domcfg_accel_name(c->accel)); break;
		case T_PATH:
		case T_STRING:
			if (*(char *const *)field)
				write_string(f, k->name, *(char *const *)field);
			break;
		case T_DURATION:
			if (c->checkpoint_interval) {
				duration_format(c->checkpoint_interval, num);
				fprintf(f, "%s = %s\n", k->name, num);
			}
			break;
		case T_COUNT:
			if (*(const int *)field >= 0)
				fprintf(f, "%s = %d\n", k->name, *(const int *)field);
			break;
		case T_BOOL:
			fprintf(f, "%s = %s\n", k->name, *(const bool *)field ? "true" : "false");
			break;
		}
	}
	if (fflush(f) != 0 || ferror(f))
		return hv_fail(err, EIO, "writing the config of %s: %s", c->name, strerror(errno));
	return 0;
}

static bool str_equal(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

bool domcfg_equal(const struct domcfg *a, const struct domcfg *b)
{
	return !strcmp(a->name, b->name) && !strcmp(a->uuid, b->uuid) && a->memory == b->memory &&
	       a->vcpus == b->vcpus && a->accel == b->accel && str_equal(a->kernel, b->kernel) &&
	       str_equal(a->initrd, b->initrd) && str_equal(a->cmdline, b->cmdline) &&
	       str_equal(a->console_log, b->console_log) &&
	       str_equal(a->checkpoint_store, b->checkpoint_store) &&
	       a->checkpoint_interval == b->checkpoint_interval &&
	       a->checkpoint_keep_hourly == b->checkpoint_keep_hourly &&
	       a->checkpoint_keep_daily == b->checkpoint_keep_daily &&
	       a->autostart == b->autostart && a->deterministic == b->deterministic;
}

void domcfg_free(struct domcfg *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->console_log);
	free(c->checkpoint_store);
	domcfg_init(c);
}

void domcfg_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

char **domcfg_argv(const struct domcfg *c, const char *hv, const char *control,
                   struct hv_error *err)
{
	char mem[32], vcpus[16];
	const char *v[20];
	char **argv;
	size_t n = 0;

	if (domcfg_check(c, err) < 0)
		return NULL;
	size_format(c->memory, mem);
	snprintf(vcpus, sizeof(vcpus), "%u", c->vcpus);
	v[n++] = hv;
	v[n++] = "run";
	v[n++] = "--name";
	v[n++] = c->name;
	v[n++] = "--memory";
	v[n++] = mem;
	v[n++] = "--vcpus";
	v[n++] = vcpus;
	v[n++] = "--accel";
	v[n++] = domcfg_accel_name(c->accel);
	if (c->cmdline) {
		v[n++] = "--cmdline";
		v[n++] = c->cmdline;
	}
	if (c->initrd) {
		v[n++] = "--initrd";
		v[n++] = c->initrd;
	}
	if (control) {
		v[n++] = "--control";
		v[n++] = control;
	}
	if (c->deterministic)
		v[n++] = "--deterministic";
	v[n++] = "--"; /* a kernel path starting with '-' is still the kernel */
	v[n++] = c->kernel;
	if (!(argv = calloc(n + 1, sizeof(*argv))))
		return hv_fail(err, ENOMEM, "%s: out of memory", c->name), NULL;
	for (size_t i = 0; i < n; i++)
		if (!(argv[i] = strdup(v[i]))) {
			domcfg_argv_free(argv);
			return hv_fail(err, ENOMEM, "%s: out of memory", c->name), NULL;
		}
	return argv;
}
