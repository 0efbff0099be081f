/*
 * hvctl_store.c - `hvctl store DIR SUBCOMMAND`: store maintenance, as a cron job runs it.
 *
 * Read-only subcommands (list, show, verify) take no lock. The others (delete, prune, gc,
 * rebuild-index) open the store with the exclusive lock, which waits (--lock-wait) for a
 * running prune and for checkpoints in progress; checkpoint writers in turn wait for it.
 * The policy, gc and the locks are libcheckpoint's (prune.h, gc.h, store.h); this file
 * only parses arguments and prints. docs/hvctl.1.md, STORE.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "checkpoint/gc.h"
#include "checkpoint/manifest.h"
#include "checkpoint/prune.h"
#include "checkpoint/store.h"
#include "toolstack/hvctl_store.h"
#include "toolstack/tool.h"

#define EXIT_FAIL  1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: hvctl store DIR SUBCOMMAND [OPTIONS]\n"
    "\n"
    "Maintain the checkpoint store DIR (no VM needed). A control socket that is\n"
    "literally named \"store\" is reached as ./store.\n"
    "\n"
    "Subcommands:\n"
    "  list [--vm NAME]            every checkpoint, oldest first: id, local time, VM,\n"
    "                              full or incremental, RAM, parent, tags\n"
    "  show ID                     one checkpoint's manifest and the space it occupies\n"
    "  verify [--read-data]        check the store's structure (and, with --read-data,\n"
    "                              re-hash every blob); exit status 1 on any problem\n"
    "  delete ID...                remove checkpoints (their data stays until gc)\n"
    "  prune --keep-last N --keep-hourly N --keep-daily N --keep-weekly N\n"
    "        --keep-monthly N --keep-yearly N --keep-tag T [--vm NAME]\n"
    "        [--dry-run] [--no-gc] [--repack-threshold PCT]\n"
    "                              remove checkpoints no --keep-* rule keeps (restic's\n"
    "                              forget, per VM; N may be 'unlimited'), then gc\n"
    "  gc [--dry-run] [--repack-threshold PCT]\n"
    "                              delete packs no checkpoint needs, repack packs less\n"
    "                              than PCT% live (default 50), remove temp files\n"
    "  rebuild-index               rebuild index/ from the packs' trailers\n"
    "\n"
    "Options:\n"
    "  --json              machine-readable output (one JSON object)\n"
    "  --lock-wait SECS    how long delete/prune/gc/rebuild-index wait for running\n"
    "                      checkpoints or another prune (default 60)\n"
    "  -h, --help          show this help ('hvctl store DIR SUBCOMMAND --help': one\n"
    "                      subcommand in full)\n"
    "\n"
    "Exit status: 0 on success, 1 if the command failed, verify found a problem or the\n"
    "store stayed locked, 2 for bad arguments.\n";

/* `hvctl store DIR SUBCOMMAND --help`: one subcommand in full. */
static const struct {
	const char *cmd, *text;
} sub_help[] = {
    {"list", "usage: hvctl store DIR list [--vm NAME] [--json]\n"
             "\n"
             "Every checkpoint of the store (of VM NAME only, with --vm), oldest first:\n"
             "id, time (local), VM, full or incr, RAM size, parent id, tags. Takes no lock.\n"},
    {"show", "usage: hvctl store DIR show ID [--json]\n"
             "\n"
             "Checkpoint ID's manifest (VM, time, kind, parent, tags, RAM, state blob,\n"
             "page-map chunks) and what it occupies: pages (non-zero ones), the distinct\n"
             "blobs it names and their compressed bytes, and how many of those no other\n"
             "checkpoint names. Takes no lock.\n"},
    {"verify", "usage: hvctl store DIR verify [--read-data] [--json]\n"
               "\n"
               "Check the store: index files, packs the index names, manifests and every\n"
               "blob they name. --read-data also reads every pack and re-hashes every blob.\n"
               "One line per problem, naming the file, then a summary. Exit status 1 if\n"
               "there was any problem. Takes no lock.\n"},
    {"delete", "usage: hvctl store DIR delete ID... [--lock-wait SECS] [--json]\n"
               "\n"
               "Remove the checkpoints ID... (their manifests), under the exclusive lock.\n"
               "Their data stays until 'hvctl store DIR gc'. No other checkpoint depends\n"
               "on them: every checkpoint's page map names all of its pages.\n"},
    {"prune", "usage: hvctl store DIR prune [--keep-last N] [--keep-hourly N] [--keep-daily N]\n"
              "         [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-tag T]...\n"
              "         [--vm NAME] [--dry-run] [--no-gc] [--repack-threshold PCT]\n"
              "         [--lock-wait SECS] [--json]\n"
              "\n"
              "Remove the checkpoints no rule keeps (restic's forget), for each VM name apart:\n"
              "  --keep-last N      the N newest\n"
              "  --keep-hourly N    the newest of each of the last N hours that have one\n"
              "  --keep-daily N     ... days, --keep-weekly N ISO weeks, --keep-monthly N\n"
              "                     months, --keep-yearly N years (local time); a rule with\n"
              "                     count left at the oldest checkpoint keeps that one too\n"
              "  --keep-tag T       every checkpoint tagged T (repeatable)\n"
              "N may be 'unlimited'. A checkpoint kept by any rule is kept; each is printed\n"
              "with its reasons. At least one rule is required. Then gc runs (see 'gc --help')\n"
              "unless --no-gc; --dry-run only prints and takes no lock.\n"},
    {"gc", "usage: hvctl store DIR gc [--dry-run] [--repack-threshold PCT] [--lock-wait SECS]\n"
           "         [--json]\n"
           "\n"
           "Under the exclusive lock: delete the packs no checkpoint needs, repack packs\n"
           "whose live bytes are under PCT% (default 50; 0 never repacks), rewrite the\n"
           "index, remove temp files of dead writers. Refuses, changing nothing, when the\n"
           "index is damaged (run rebuild-index) or a checkpoint names a missing blob.\n"},
    {"rebuild-index", "usage: hvctl store DIR rebuild-index [--lock-wait SECS] [--json]\n"
                      "\n"
                      "Rebuild DIR/index/ from the trailers of the packs (after an index file\n"
                      "was lost or damaged), under the exclusive lock. Exit status 1 if a\n"
                      "pack's trailer is unreadable (its blobs are left out).\n"},
};

enum {
	O_JSON = 256,
	O_VM,
	O_READ_DATA,
	O_DRY_RUN,
	O_NO_GC,
	O_REPACK,
	O_LOCK_WAIT,
	O_LAST,
	O_HOURLY,
	O_DAILY,
	O_WEEKLY,
	O_MONTHLY,
	O_YEARLY,
	O_TAG,
};

struct args {
	const char *dir, *cmd, *vm;
	bool json, read_data, dry_run, no_gc;
	int repack_pct, lock_wait_s;
	struct prune_policy pol;
	const char **tags;
	size_t ntags;
	char **pos; /* positional arguments after the subcommand */
	int npos;
};

static void on_wait(void *arg, const char *msg)
{
	tool_fail(0, "%s", msg);
}

static int open_store(const struct args *a, enum store_mode mode, struct store **s)
{
	struct store_open_opts o = {
	    .mode = mode, .wait_ms = a->lock_wait_s * 1000, .on_wait = on_wait};
	struct hv_error e;

	if (store_open_opts(a->dir, &o, s, &e) < 0)
		return tool_fail(EXIT_FAIL, "%s", e.msg);
	return 0;
}

static char *local_time(uint64_t ns, char *buf, size_t n)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

static char *human(uint64_t b, char *buf, size_t n)
{
	if (b >= (1ull << 30))
		snprintf(buf, n, "%.1f GiB", (double)b / (1ull << 30));
	else if (b >= (1ull << 20))
		snprintf(buf, n, "%.1f MiB", (double)b / (1ull << 20));
	else if (b >= 1024)
		snprintf(buf, n, "%.1f KiB", (double)b / 1024);
	else
		snprintf(buf, n, "%llu B", (unsigned long long)b);
	return buf;
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(j);
}

static json_t *manifest_json(const struct manifest *m)
{
	char t[64], hex[STORE_ID_HEX + 1];
	json_t *o, *tags = json_array();

	for (size_t i = 0; i < m->ntags; i++)
		json_array_append_new(tags, json_string(m->tags[i]));
	o = json_pack("{s:s, s:s, s:I, s:s, s:o, s:s?, s:b, s:I, s:s, s:I}", "id", m->id, "vm",
	              m->vm, "time_ns", (json_int_t)m->time_ns, "time",
	              local_time(m->time_ns, t, sizeof(t)), "tags", tags, "parent",
	              m->parent[0] ? m->parent : NULL, "full", !m->parent[0], "ram_size",
	              (json_int_t)m->ram_size, "state", blob_id_hex(&m->state, hex), "chunks",
	              (json_int_t)m->nchunks);
	return o;
}

/* Oldest first: ids sort by second only. */
static int cmp_time(const void *a, const void *b)
{
	const struct manifest *x = *(struct manifest *const *)a, *y = *(struct manifest *const *)b;

	if (x->time_ns != y->time_ns)
		return x->time_ns < y->time_ns ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Every manifest (of @vm if set), oldest first; *@ms the caller's (free_all). */
static int read_all(struct store *s, const char *vm, struct manifest ***ms, size_t *n)
{
	char(*ids)[MANIFEST_ID_LEN + 1];
	struct hv_error e;
	size_t cnt;
	int rc = 0;

	*ms = NULL;
	*n = 0;
	if (manifest_list(s, &ids, &cnt, &e) < 0)
		return tool_fail(EXIT_FAIL, "%s", e.msg);
	*ms = calloc(cnt + 1, sizeof(**ms));
	if (!*ms) {
		free(ids);
		return tool_fail(EXIT_FAIL, "out of memory");
	}
	for (size_t i = 0; i < cnt; i++) {
		struct manifest *m;

		if (manifest_read(s, ids[i], &m, &e) < 0) {
			rc = tool_fail(EXIT_FAIL, "%s", e.msg);
			continue;
		}
		if (vm && strcmp(vm, m->vm)) {
			manifest_free(m);
			continue;
		}
		(*ms)[(*n)++] = m;
	}
	free(ids);
	qsort(*ms, *n, sizeof(**ms), cmp_time);
	return rc;
}

static void free_all(struct manifest **ms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		manifest_free(ms[i]);
	free(ms);
}

static void tag_list(const struct manifest *m, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < m->ntags && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", m->tags[i]);
}

static int cmd_list(const struct args *a)
{
	struct manifest **ms;
	struct store *s;
	json_t *arr;
	size_t n;
	int rc;

	if (a->npos)
		return tool_fail(EXIT_USAGE, "list: unexpected argument '%s'", a->pos[0]);
	if (open_store(a, STORE_READ, &s))
		return EXIT_FAIL;
	rc = read_all(s, a->vm, &ms, &n);
	if (a->json) {
		arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, manifest_json(ms[i]));
		print_json(json_pack("{s:o}", "checkpoints", arr));
	} else {
		if (n)
			printf("%-16s  %-19s  %-16s  %-4s  %9s  %-16s  %s\n", "ID", "TIME", "VM",
			       "KIND", "RAM", "PARENT", "TAGS");
		for (size_t i = 0; i < n; i++) {
			char t[64], sz[32], tags[1024];

			tag_list(ms[i], tags, sizeof(tags));
			printf("%-16s  %-19s  %-16s  %-4s  %9s  %-16s  %s\n", ms[i]->id,
			       local_time(ms[i]->time_ns, t, sizeof(t)), ms[i]->vm,
			       ms[i]->parent[0] ? "incr" : "full",
			       human(ms[i]->ram_size, sz, sizeof(sz)),
			       ms[i]->parent[0] ? ms[i]->parent : "-", tags);
		}
		printf("%zu checkpoint%s\n", n, n == 1 ? "" : "s");
	}
	free_all(ms, n);
	store_close(s);
	return rc;
}

static int cmd_show(const struct args *a)
{
	char t[64], b1[32], b2[32], tags[1024], hex[STORE_ID_HEX + 1];
	struct ckpt_usage u;
	struct manifest *m;
	struct hv_error e;
	struct store *s;

	if (a->npos != 1)
		return tool_fail(EXIT_USAGE, "show: %s", a->npos ? "one ID only" : "missing ID");
	if (open_store(a, STORE_READ, &s))
		return EXIT_FAIL;
	if (manifest_read(s, a->pos[0], &m, &e) < 0 || store_usage(s, a->pos[0], &u, &e) < 0) {
		store_close(s);
		return tool_fail(EXIT_FAIL, "%s", e.msg);
	}
	if (a->json) {
		json_t *o = manifest_json(m);
		json_object_set_new(o, "usage",
		                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "pages",
		                              (json_int_t)u.pages, "pages_nonzero",
		                              (json_int_t)u.pages_nonzero, "blobs",
		                              (json_int_t)u.blobs, "bytes", (json_int_t)u.bytes,
		                              "unique_blobs", (json_int_t)u.unique_blobs,
		                              "unique_bytes", (json_int_t)u.unique_bytes));
		print_json(o);
	} else {
		tag_list(m, tags, sizeof(tags));
		printf("%-8s %s\n", "id", m->id);
		printf("%-8s %s\n", "vm", m->vm);
		printf("%-8s %s (local)\n", "time", local_time(m->time_ns, t, sizeof(t)));
		printf("%-8s %s\n", "kind", m->parent[0] ? "incremental" : "full");
		printf("%-8s %s\n", "parent", m->parent[0] ? m->parent : "-");
		printf("%-8s %s\n", "tags", tags[0] ? tags : "-");
		printf("%-8s %s (%llu pages, %llu non-zero)\n", "ram",
		       human(m->ram_size, b1, sizeof(b1)), (unsigned long long)u.pages,
		       (unsigned long long)u.pages_nonzero);
		printf("%-8s %s\n", "state", blob_id_hex(&m->state, hex));
		printf("%-8s %zu page-map chunks\n", "chunks", m->nchunks);
		printf("%-8s %llu distinct blobs, %s in packs (compressed)\n", "blobs",
		       (unsigned long long)u.blobs, human(u.bytes, b2, sizeof(b2)));
		printf("%-8s %llu blobs, %s named by no other checkpoint\n", "unique",
		       (unsigned long long)u.unique_blobs, human(u.unique_bytes, b1, sizeof(b1)));
	}
	manifest_free(m);
	store_close(s);
	return 0;
}

struct vlines {
	json_t *arr; /* or NULL: print */
};

static void vline(void *arg, const char *msg)
{
	struct vlines *v = arg;

	if (v->arr)
		json_array_append_new(v->arr, json_string(msg));
	else
		printf("%s\n", msg);
}

static int cmd_verify(const struct args *a)
{
	struct vlines v = {.arr = a->json ? json_array() : NULL};
	char(*ids)[MANIFEST_ID_LEN + 1] = NULL;
	struct hv_error e;
	struct store *s;
	size_t nids = 0;
	int n;

	if (a->npos)
		return tool_fail(EXIT_USAGE, "verify: unexpected argument '%s'", a->pos[0]);
	if (open_store(a, STORE_READ, &s)) {
		json_decref(v.arr);
		return EXIT_FAIL;
	}
	manifest_list(s, &ids, &nids, &e);
	free(ids);
	n = store_verify(s, a->read_data, vline, &v, &e);
	store_close(s);
	if (n < 0) {
		json_decref(v.arr);
		return tool_fail(EXIT_FAIL, "%s", e.msg);
	}
	if (a->json)
		print_json(json_pack("{s:o, s:i, s:I, s:b}", "problems", v.arr, "count", n,
		                     "checkpoints", (json_int_t)nids, "read_data", a->read_data));
	else if (n)
		printf("verify: %d problem%s in %s\n", n, n == 1 ? "" : "s", a->dir);
	else
		printf("verify: %s is sound (%zu checkpoints%s)\n", a->dir, nids,
		       a->read_data ? ", every blob re-hashed" : "");
	return n ? EXIT_FAIL : 0;
}

static int cmd_delete(const struct args *a)
{
	struct hv_error e;
	struct store *s;
	int rc = 0, done = 0;

	if (!a->npos)
		return tool_fail(EXIT_USAGE, "delete: missing ID");
	if (open_store(a, STORE_MAINT, &s))
		return EXIT_FAIL;
	for (int i = 0; i < a->npos; i++) {
		if (manifest_delete(s, a->pos[i], &e) < 0) {
			rc = tool_fail(EXIT_FAIL, "delete: %s", e.msg);
			continue;
		}
		done++;
		if (!a->json)
			printf("deleted %s\n", a->pos[i]);
	}
	store_close(s);
	if (a->json)
		print_json(json_pack("{s:i, s:b}", "deleted", done, "ok", rc == 0));
	else
		printf("%d checkpoint%s deleted; the space they alone used is freed only by "
		       "'hvctl store %s gc'\n",
		       done, done == 1 ? "" : "s", a->dir);
	return rc;
}

static void gc_line(void *arg, const char *msg)
{
	if (!*(bool *)arg)
		printf("gc: %s\n", msg);
}

static json_t *gc_json(const struct gc_stats *g, bool dry)
{
	return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	                 "dry_run", dry, "checkpoints", (json_int_t)g->manifests, "live_blobs",
	                 (json_int_t)g->live_blobs, "live_bytes", (json_int_t)g->live_bytes,
	                 "packs", (json_int_t)g->packs, "pack_bytes", (json_int_t)g->pack_bytes,
	                 "packs_deleted", (json_int_t)g->packs_deleted, "packs_repacked",
	                 (json_int_t)g->packs_repacked, "packs_written",
	                 (json_int_t)g->packs_written, "bytes_freed",
	                 (json_int_t)(g->bytes_deleted - g->bytes_written), "index_written",
	                 (json_int_t)g->index_written, "index_removed",
	                 (json_int_t)g->index_removed, "tmp_removed", (json_int_t)g->tmp_removed,
	                 "bytes_written", (json_int_t)g->bytes_written);
}

/* gc on an open, exclusively locked store; prints; returns the exit status. */
static int run_gc(const struct args *a, struct store *s, json_t **js)
{
	bool quiet = a->json;
	struct gc_opts o = {
	    .dry_run = a->dry_run, .repack_pct = a->repack_pct, .log = gc_line, .arg = &quiet};
	struct gc_stats g;
	struct hv_error e;
	char b1[32], b2[32];

	if (store_gc(s, &o, &g, &e) < 0)
		return tool_fail(EXIT_FAIL, "gc: %s", e.msg);
	if (js)
		*js = gc_json(&g, a->dry_run);
	else
		printf("gc%s: %llu checkpoints, %llu live blobs (%s); %llu packs: %llu deleted, "
		       "%llu repacked into %llu; %s %s; %llu index files written, %llu removed; "
		       "%llu temp files removed\n",
		       a->dry_run ? " (dry run)" : "", (unsigned long long)g.manifests,
		       (unsigned long long)g.live_blobs, human(g.live_bytes, b1, sizeof(b1)),
		       (unsigned long long)g.packs, (unsigned long long)g.packs_deleted,
		       (unsigned long long)g.packs_repacked, (unsigned long long)g.packs_written,
		       human(g.bytes_deleted - g.bytes_written, b2, sizeof(b2)),
		       a->dry_run ? "would be freed" : "freed", (unsigned long long)g.index_written,
		       (unsigned long long)g.index_removed, (unsigned long long)g.tmp_removed);
	return 0;
}

static int cmd_gc(const struct args *a)
{
	json_t *j = NULL;
	struct store *s;
	int rc;

	if (a->npos)
		return tool_fail(EXIT_USAGE, "gc: unexpected argument '%s'", a->pos[0]);
	if (open_store(a, STORE_MAINT, &s))
		return EXIT_FAIL;
	rc = run_gc(a, s, a->json ? &j : NULL);
	store_close(s);
	if (j)
		print_json(j);
	return rc;
}

static int cmd_prune(const struct args *a)
{
	struct prune_policy pol = a->pol;
	struct prune_item *it = NULL;
	struct manifest **ms = NULL;
	unsigned *why = NULL;
	json_t *keep = NULL, *rem = NULL, *gcj = NULL;
	struct hv_error e;
	struct store *s;
	size_t n = 0, nrem = 0;
	int rc;

	if (a->npos)
		return tool_fail(EXIT_USAGE, "prune: unexpected argument '%s'", a->pos[0]);
	pol.tags = a->tags;
	pol.ntags = a->ntags;
	if (prune_policy_empty(&pol))
		return tool_fail(EXIT_USAGE, "prune: no --keep-* policy given: refusing to remove "
		                             "every checkpoint");
	if (open_store(a, a->dry_run ? STORE_READ : STORE_MAINT, &s))
		return EXIT_FAIL;
	/* Under the lock: no checkpoint can appear or go while the plan is made. */
	rc = read_all(s, a->vm, &ms, &n);
	if (rc) {
		tool_fail(EXIT_FAIL, "prune: a manifest cannot be read; nothing removed");
		goto out;
	}
	it = calloc(n + 1, sizeof(*it));
	why = calloc(n + 1, sizeof(*why));
	if (!it || !why) {
		rc = tool_fail(EXIT_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		it[i] = (struct prune_item){.id = ms[i]->id,
		                            .vm = ms[i]->vm,
		                            .time_ns = ms[i]->time_ns,
		                            .ntags = ms[i]->ntags};
	/* tags is char[n][256]: make an array of pointers for the policy. */
	for (size_t i = 0; i < n; i++) {
		const char **tp = calloc(ms[i]->ntags + 1, sizeof(*tp));
		if (!tp) {
			rc = tool_fail(EXIT_FAIL, "out of memory");
			goto out;
		}
		for (size_t k = 0; k < ms[i]->ntags; k++)
			tp[k] = ms[i]->tags[k];
		it[i].tags = tp;
	}
	if (prune_plan(it, n, &pol, why, &e) < 0) {
		rc = tool_fail(EXIT_USAGE, "prune: %s", e.msg);
		goto out;
	}
	keep = json_array();
	rem = json_array();
	for (size_t i = 0; i < n; i++) {
		char t[64], r[160];

		local_time(ms[i]->time_ns, t, sizeof(t));
		if (why[i]) {
			prune_reasons(why[i], r, sizeof(r));
			json_array_append_new(keep,
			                      json_pack("{s:s, s:s, s:s, s:s}", "id", ms[i]->id,
			                                "vm", ms[i]->vm, "time", t, "reasons", r));
			if (!a->json)
				printf("keep    %s  %s  %-16s  %s\n", ms[i]->id, t, ms[i]->vm, r);
			continue;
		}
		nrem++;
		json_array_append_new(
		    rem, json_pack("{s:s, s:s, s:s}", "id", ms[i]->id, "vm", ms[i]->vm, "time", t));
		if (!a->json)
			printf("remove  %s  %s  %s\n", ms[i]->id, t, ms[i]->vm);
		if (!a->dry_run && manifest_delete(s, ms[i]->id, &e) < 0) {
			rc = tool_fail(EXIT_FAIL, "prune: %s", e.msg);
			goto out;
		}
	}
	if (!a->json)
		printf("prune%s: %zu kept, %zu %s\n", a->dry_run ? " (dry run)" : "", n - nrem,
		       nrem, a->dry_run ? "would be removed" : "removed");
	if (!a->dry_run && !a->no_gc)
		rc = run_gc(a, s, a->json ? &gcj : NULL);
	if (a->json) {
		print_json(json_pack("{s:b, s:O, s:O, s:o?}", "dry_run", a->dry_run, "keep", keep,
		                     "remove", rem, "gc", gcj));
		gcj = NULL;
	}
out:
	for (size_t i = 0; it && i < n; i++)
		free((void *)it[i].tags);
	json_decref(keep);
	json_decref(rem);
	json_decref(gcj);
	free(it);
	free(why);
	free_all(ms, n);
	store_close(s);
	return rc;
}

static int cmd_rebuild_index(const struct args *a)
{
	struct reindex_stats st;
	bool quiet = a->json;
	struct hv_error e;
	struct store *s;
	int rc;

	if (a->npos)
		return tool_fail(EXIT_USAGE, "rebuild-index: unexpected argument '%s'", a->pos[0]);
	if (open_store(a, STORE_MAINT, &s))
		return EXIT_FAIL;
	rc = store_rebuild_index(s, gc_line, &quiet, &st, &e);
	store_close(s);
	if (rc < 0)
		return tool_fail(EXIT_FAIL, "rebuild-index: %s", e.msg);
	if (a->json)
		print_json(json_pack(
		    "{s:I, s:I, s:I, s:I, s:I}", "packs", (json_int_t)st.packs, "packs_bad",
		    (json_int_t)st.packs_bad, "blobs", (json_int_t)st.blobs, "index_written",
		    (json_int_t)st.index_written, "index_removed", (json_int_t)st.index_removed));
	else
		printf("rebuild-index: %llu packs (%llu unreadable), %llu blobs; %llu index files "
		       "written, %llu removed\n",
		       (unsigned long long)st.packs, (unsigned long long)st.packs_bad,
		       (unsigned long long)st.blobs, (unsigned long long)st.index_written,
		       (unsigned long long)st.index_removed);
	return st.packs_bad ? EXIT_FAIL : 0;
}

static int parse_count(const char *opt, const char *v, int *out)
{
	char *end;
	long n;

	if (!strcmp(v, "unlimited")) {
		*out = PRUNE_UNLIMITED;
		return 0;
	}
	errno = 0;
	n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < 0 || n > INT_MAX)
		return tool_fail(EXIT_USAGE, "%s: '%s' is not a count (or 'unlimited')", opt, v);
	*out = (int)n;
	return 0;
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < lo || n > hi)
		return tool_fail(EXIT_USAGE, "%s: '%s' is not a number from %d to %d", opt, v, lo,
		                 hi);
	*out = (int)n;
	return 0;
}

/* Which options each subcommand takes. */
static bool allowed(const char *cmd, int opt)
{
	switch (opt) {
	case O_JSON: return true;
	case O_VM: return !strcmp(cmd, "list") || !strcmp(cmd, "prune");
	case O_READ_DATA: return !strcmp(cmd, "verify");
	case O_DRY_RUN:
	case O_REPACK: return !strcmp(cmd, "gc") || !strcmp(cmd, "prune");
	case O_LOCK_WAIT:
		return strcmp(cmd, "list") && strcmp(cmd, "show") && strcmp(cmd, "verify");
	default: return !strcmp(cmd, "prune"); /* --keep-*, --no-gc */
	}
}

int hvctl_store_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, O_JSON},
	    {"vm", required_argument, NULL, O_VM},
	    {"read-data", no_argument, NULL, O_READ_DATA},
	    {"dry-run", no_argument, NULL, O_DRY_RUN},
	    {"no-gc", no_argument, NULL, O_NO_GC},
	    {"repack-threshold", required_argument, NULL, O_REPACK},
	    {"lock-wait", required_argument, NULL, O_LOCK_WAIT},
	    {"keep-last", required_argument, NULL, O_LAST},
	    {"keep-hourly", required_argument, NULL, O_HOURLY},
	    {"keep-daily", required_argument, NULL, O_DAILY},
	    {"keep-weekly", required_argument, NULL, O_WEEKLY},
	    {"keep-monthly", required_argument, NULL, O_MONTHLY},
	    {"keep-yearly", required_argument, NULL, O_YEARLY},
	    {"keep-tag", required_argument, NULL, O_TAG},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	static const char *const cmds[] = {"list",  "show", "verify",       "delete",
	                                   "prune", "gc",   "rebuild-index"};
	struct args a = {.repack_pct = GC_REPACK_PCT, .lock_wait_s = STORE_LOCK_WAIT_MS / 1000};
	bool known = false;
	int c, rc = 0;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			const char *text = usage;

			for (size_t k = 0; argc > 2 && k < sizeof(sub_help) / sizeof(sub_help[0]);
			     k++)
				if (!strcmp(argv[2], sub_help[k].cmd))
					text = sub_help[k].text;
			fputs(text, stdout);
			return 0;
		}
	if (argc < 3)
		return tool_fail(EXIT_USAGE, "store: %s (see 'hvctl store --help')",
		                 argc < 2 ? "missing DIR and SUBCOMMAND" : "missing SUBCOMMAND");
	a.dir = argv[1];
	a.cmd = argv[2];
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		known |= !strcmp(a.cmd, cmds[i]);
	if (!known)
		return tool_fail(
		    EXIT_USAGE, "store: unknown subcommand '%s' (see 'hvctl store --help')", a.cmd);
	a.tags = calloc((size_t)argc, sizeof(*a.tags));
	if (!a.tags)
		return tool_fail(EXIT_FAIL, "out of memory");
	argc -= 2;
	argv += 2;
	optind = 1;
	opterr = 0;
	while (rc == 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == ':') {
			rc = tool_fail(EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
			break;
		}
		if (c == '?') {
			rc = tool_fail(EXIT_USAGE, "store %s: unknown option '%s'", a.cmd,
			               argv[optind - 1]);
			break;
		}
		if (!allowed(a.cmd, c)) {
			rc = tool_fail(EXIT_USAGE, "store %s: option '%s' does not go with it",
			               a.cmd, argv[optind - 1]);
			break;
		}
		switch (c) {
		case O_JSON: a.json = true; break;
		case O_VM: a.vm = optarg; break;
		case O_READ_DATA: a.read_data = true; break;
		case O_DRY_RUN: a.dry_run = true; break;
		case O_NO_GC: a.no_gc = true; break;
		case O_REPACK:
			rc = parse_int("--repack-threshold", optarg, 0, 100, &a.repack_pct);
			break;
		case O_LOCK_WAIT:
			rc = parse_int("--lock-wait", optarg, 0, 86400, &a.lock_wait_s);
			break;
		case O_LAST: rc = parse_count("--keep-last", optarg, &a.pol.last); break;
		case O_HOURLY: rc = parse_count("--keep-hourly", optarg, &a.pol.hourly); break;
		case O_DAILY: rc = parse_count("--keep-daily", optarg, &a.pol.daily); break;
		case O_WEEKLY: rc = parse_count("--keep-weekly", optarg, &a.pol.weekly); break;
		case O_MONTHLY: rc = parse_count("--keep-monthly", optarg, &a.pol.monthly); break;
		case O_YEARLY: rc = parse_count("--keep-yearly", optarg, &a.pol.yearly); break;
		case O_TAG: a.tags[a.ntags++] = optarg; break;
		}
	}
	if (rc == 0) {
		a.pos = argv + optind;
		a.npos = argc - optind;
		if (!strcmp(a.cmd, "list"))
			rc = cmd_list(&a);
		else if (!strcmp(a.cmd, "show"))
			rc = cmd_show(&a);
		else if (!strcmp(a.cmd, "verify"))
			rc = cmd_verify(&a);
		else if (!strcmp(a.cmd, "delete"))
			rc = cmd_delete(&a);
		else if (!strcmp(a.cmd, "prune"))
			rc = cmd_prune(&a);
		else if (!strcmp(a.cmd, "gc"))
			rc = cmd_gc(&a);
		else
			rc = cmd_rebuild_index(&a);
	}
	free(a.tags);
	fflush(stdout);
	return rc;
}
