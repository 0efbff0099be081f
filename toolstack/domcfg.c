/*
 * domcfg.c - domain config files (docs/domain-config.md).
 *
 * A table of keys drives everything: the reader (kv.h, shared with hvd's config file)
 * lexes each line, looks its key up and records the line it came from, so that rules
 * spanning two keys (deterministic needs one vCPU) can still point at a line; this file
 * converts the values by type. The value checks are separate from the
 * lexing so that domcfg_check() applies the very same rules to a struct built in memory,
 * and domcfg_write() never prints a file that domcfg_parse() would refuse.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hv/vm.h"
#include "toolstack/domcfg.h"
#include "toolstack/kv.h"
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
/* The reader (kv.h) applies the file, line and string limits that domcfg.h promises. */
_Static_assert(DOMCFG_FILE_MAX == KV_FILE_MAX && DOMCFG_LINE_MAX == KV_LINE_MAX &&
                   DOMCFG_STR_MAX == KV_STR_MAX && NKEYS <= KV_KEYS_MAX,
               "domcfg.h's limits differ from the reader's");

#define MSG KV_MSG /* a value's complaint, before the file, line and key go in front */

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

static const char *quote(const char *s, size_t len, char out[48])
{
	return kv_shown(s, len, true, out);
}

static const char *shown(const char *s, size_t len, bool quotes, char out[48])
{
	return kv_shown(s, len, quotes, out);
}

/* ---- value checks, shared by the parser and domcfg_check() ---- */

static int check_name(const char *s, char *msg)
{
	size_t len = strlen(s);
	char q[48];

	if (len < 1 || len > DOMCFG_NAME_MAX)
		return kv_complain(msg, "%s: must be 1 to %d characters", quote(s, len, q),
		                   DOMCFG_NAME_MAX);
	if (s[0] == '.' || s[0] == '-')
		return kv_complain(msg, "%s: must not start with '%c'", quote(s, len, q), s[0]);
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
			return kv_complain(msg,
			                   "%s: may hold only letters, digits, '_', '.' and '-'",
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
			return kv_complain(msg,
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
		return kv_complain(msg, "%s: less than the 2M minimum", text);
	if (v > MEM_MAX_SIZE)
		return kv_complain(msg, "%s: more than the 1T maximum", text);
	if (v % MEM_PAGE_SIZE)
		return kv_complain(msg, "%s: not a multiple of 4K", text);
	return 0;
}

static int check_vcpus(uint64_t v, const char *text, char *msg)
{
	if (v < 1 || v > VM_MAX_VCPUS)
		return kv_complain(msg, "%s: must be a number from 1 to %d", text, VM_MAX_VCPUS);
	return 0;
}

/* Paths and strings: no control characters, since the canonical form has no escape for them. */
static int check_string(const char *s, bool path, char *msg)
{
	size_t len = strlen(s);

	if (path && !len)
		return kv_complain(msg, "empty path");
	if (len > DOMCFG_STR_MAX)
		return kv_complain(msg, "%zu bytes, at most %d", len, DOMCFG_STR_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return kv_complain(msg, "control character 0x%02x in the string",
			                   (unsigned char)s[i]);
	return 0;
}

static int check_interval(uint64_t v, const char *text, char *msg)
{
	if (v < 1 || v > DOMCFG_INTERVAL_MAX)
		return kv_complain(msg, "%s: must be from 1s to 366d", text);
	return 0;
}

static int check_keep(int64_t v, const char *text, char *msg)
{
	if (v < 0 || v > DOMCFG_KEEP_MAX)
		return kv_complain(msg, "%s: must be a number from 0 to %d", text, DOMCFG_KEEP_MAX);
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
}

/* ---- converting one value ---- */

/* Decimal digits only; *@out saturates at UINT64_MAX so that huge values fail range checks. */
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
}

/* A bare number is MiB, as in xl.cfg; a suffix K, M, G or T gives the unit. */
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
			return kv_complain(msg, "%s: not a size (use K, M, G or T)",
			                   quote(v, len, q));
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
		return kv_complain(msg, "%s: not a duration (seconds, or use s, m, h or d)",
		                   quote(v, len, q));
	*out = *out > UINT64_MAX / mul ? UINT64_MAX : *out * mul;
	return check_interval(*out, shown(v, len, false, q), msg);
}

static int parse_bool(const char *v, bool *out, char *msg)
{
	char q[48];

	if (kv_bool(v, out) == 0)
		return 0;
	return kv_complain(msg, "%s: not a boolean (true/false, yes/no, 1/0)",
	                   quote(v, strlen(v), q));
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
		return kv_complain(msg, "%s: expected a string in double quotes", quote(v, len, q));
	switch (k->type) {
	case T_NAME:
		if (check_name(v, msg) < 0)
			return -1;
		memcpy(c->name, v, len + 1);
		return 0;
	case T_UUID:
		if (!len || check_uuid(v, msg) < 0)
			return kv_complain(msg,
			                   "%s: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
			                   quote(v, len, q));
		for (size_t i = 0; i <= len; i++)
			c->uuid[i] = (char)tolower((unsigned char)v[i]);
		return 0;
	case T_MEMORY: return parse_memory(v, len, &c->memory, msg);
	case T_VCPUS:
		if (parse_digits(v, len, &n) < 0)
			return kv_complain(msg, "%s: not a number", quote(v, len, q));
		if (check_vcpus(n, shown(v, len, false, q), msg) < 0)
			return -1;
		c->vcpus = (unsigned)n;
		return 0;
	case T_ACCEL:
		for (int i = 0; i < 3; i++)
			if (!strcmp(v, accel_names[i]))
				return c->accel = (enum domcfg_accel)i, 0;
		return kv_complain(msg, "%s: must be \"auto\", \"emu\" or \"kvm\"",
		                   quote(v, len, q));
	case T_PATH:
	case T_STRING:
		if (check_string(v, k->type == T_PATH, msg) < 0)
			return -1;
		if (!(dup = strdup(v)))
			return *code = ENOMEM, kv_complain(msg, "out of memory");
		*(char **)field = dup;
		return 0;
	case T_DURATION: return parse_duration(v, len, &c->checkpoint_interval, msg);
	case T_COUNT:
		if (parse_digits(v, len, &n) < 0)
			return kv_complain(msg, "%s: not a number", quote(v, len, q));
		if (check_keep(n > INT64_MAX ? INT64_MAX : (int64_t)n, shown(v, len, false, q),
		               msg) < 0)
			return -1;
		*(int *)field = (int)n;
		return 0;
	case T_BOOL: return parse_bool(v, (bool *)field, msg);
	}
	return kv_complain(msg, "internal error: key type %d", k->type);
}

void domcfg_init(struct domcfg *c)
{
	memset(c, 0, sizeof(*c));
	c->vcpus = 1;
	c->accel = DOMCFG_ACCEL_AUTO;
	c->checkpoint_keep_hourly = -1;
	c->checkpoint_keep_daily = -1;
}

/* The format for the reader (kv.h): an index into keys[] for a key name. */
static long key_index(const char *name, size_t len)
{
	const struct key *k = key_find(name, len);

	return k ? k - keys : -1;
}

static int set_setting(void *c, const struct kv_setting *s, char *msg, int *code)
{
	return set_value(c, &keys[s->key], s->val, s->len, s->quoted, msg, code);
}

static const char *check_file(void *c, const unsigned *lines, char *msg)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].required && !lines[i])
			return snprintf(msg, MSG, "missing (required)"), keys[i].name;
	return check_across(c, msg);
}

int domcfg_parse(const char *buf, size_t len, const char *fname, struct domcfg *out,
                 struct hv_error *err)
{
	static const struct kv_format format = {key_index, NKEYS, set_setting, check_file};

	domcfg_init(out);
	if (kv_parse(&format, out, buf, len, fname ? fname : "config", err) < 0) {
		domcfg_free(out);
		return -1;
	}
	return 0;
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
