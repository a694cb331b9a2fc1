/* gitgraph.c: loads the part of the archive a git bundle needs (histories, releases, trees,
 * content rows) in batches, and streams the bundle into the store. See gitgraph.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/gitobj.h"
#include "shared/objects.h"
#include "worker/gitgraph.h"

/* Ids per query. */
#define GRAPH_BATCH 2000
/* Bytes per read of a blob. */
#define GRAPH_READ (1u << 20)
/* Tags of tags deeper than this are refused (a loop cannot happen with real ids, but a
 * hostile archive must not make us recurse without end). */

void
gitgraph_init(struct gitgraph *g, struct job_run *run)
{
	memset(g, 0, sizeof *g);
	g->run = run;
	g->w = run->w;
	idtab_init(&g->revs), idtab_init(&g->rels), idtab_init(&g->dirs), idtab_init(&g->cnts);
	g->max_size = g->w->cfg->max_bundle_size > 0 ? g->w->cfg->max_bundle_size : INT64_MAX;
}

/* Frees raw bodies of a table. */
static void
free_raws(struct rawobj *r, size_t n, size_t cap)
{
	for (size_t i = 0; i < n && i < cap; i++)
		free(r[i].raw);
	free(r);
}

void
gitgraph_free(struct gitgraph *g)
{
	free_raws(g->rev, g->revs.n, g->revcap);
	free_raws(g->rel, g->rels.n, g->relcap);
	free_raws(g->dir, g->dirs.n, g->dircap);
	free(g->cnt);
	free(g->heads);
	idtab_free(&g->revs), idtab_free(&g->rels), idtab_free(&g->dirs), idtab_free(&g->cnts);
	pgzip_free(g->z);
	store_writer_abort(g->sw);
	free(g->reason);
}

int
gitgraph_fail(struct gitgraph *g, const char *fmt, ...)
{
	va_list ap;

	if (g->reason == NULL) {
		va_start(ap, fmt);
		g->reason = xvasprintf(fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A Postgres failure: logged as the run's detail, the reason in words. */
static int
db_fail(struct gitgraph *g, char *err, const char *what)
{
	if (g->run->detail == NULL)
		g->run->detail = err;
	else
		free(err);
	g->db_failed = true;
	return gitgraph_fail(g, "the archive database failed while reading %s", what);
}

/* Grows a rawobj array to match its table. */
static void
grow_raw(struct rawobj **r, size_t *cap, size_t n)
{
	if (n <= *cap)
		return;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < n)
		ncap *= 2;
	*r = xrealloc(*r, ncap * sizeof **r);
	memset(*r + *cap, 0, (ncap - *cap) * sizeof **r);
	*cap = ncap;
}

/* Puts an id in a table and returns its number. */
static size_t
put(struct idtab *t, struct rawobj **r, size_t *cap, const unsigned char id[20], bool *added)
{
	size_t i = idtab_put(t, id, added);
	grow_raw(r, cap, t->n);
	return i;
}

struct raw_ctx {
	struct idtab *t;
	struct rawobj *r;
};

/* Keeps a copy of a loaded raw body under its number. */
static int
raw_cb(void *arg, const unsigned char id[20], const unsigned char *raw, size_t len)
{
	struct raw_ctx *c = arg;
	long i = idtab_find(c->t, id);

	if (i < 0 || c->r[i].raw != NULL)
		return 0;
	c->r[i].raw = xmalloc(len ? len : 1);
	memcpy(c->r[i].raw, raw, len);
	c->r[i].len = len;
	return 0;
}

struct hist_ctx {
	struct gitgraph *g;
};

/* One revision of a history: added (numbered) and kept. */
static int
hist_cb(void *arg, const unsigned char id[20], const unsigned char *raw, size_t len)
{
	struct gitgraph *g = arg;
	bool added;
	size_t i = put(&g->revs, &g->rev, &g->revcap, id, &added);

	if (g->rev[i].raw == NULL) {
		g->rev[i].raw = xmalloc(len ? len : 1);
		memcpy(g->rev[i].raw, raw, len);
		g->rev[i].len = len;
	}
	return 0;
}

int
gitgraph_add_history(struct gitgraph *g, const unsigned char head[20])
{
	bool added;
	size_t i = put(&g->revs, &g->rev, &g->revcap, head, &added);

	g->heads = xrealloc(g->heads, (g->nheads + 1) * sizeof *g->heads);
	g->heads[g->nheads++] = i;
	return 0;
}

int
gitgraph_load_histories(struct gitgraph *g)
{
	unsigned char(*want)[20] = xmalloc((g->nheads ? g->nheads : 1) * sizeof *want);
	size_t n = 0;
	char *err = NULL, hex[41];
	int rc = 0;

	for (size_t h = 0; h < g->nheads; h++)
		if (g->rev[g->heads[h]].raw == NULL)
			memcpy(want[n++], g->revs.ids[g->heads[h]], 20);
	if (n > 0 &&
	    objects_revision_history(
		g->w->db, (const unsigned char(*)[20])want, n, hist_cb, g, &err) != 0)
		rc = db_fail(g, err, "revision histories");
	free(want);
	if (rc != 0)
		return rc;
	for (size_t h = 0; h < g->nheads; h++) {
		if (g->rev[g->heads[h]].raw == NULL) {
			hex_encode(g->revs.ids[g->heads[h]], 20, hex);
			return gitgraph_fail(g, "revision swh:1:rev:%s is not in the archive", hex);
		}
	}
	if (!job_keepalive(g->run)) {
		g->cancelled = true;
		return -1;
	}
	return 0;
}

int
gitgraph_add_release(struct gitgraph *g, const unsigned char id[20])
{
	unsigned char cur[20], target[20];
	enum swhid_kind kind;
	const char *name;
	size_t name_len;
	char *err = NULL, hex[41];

	memcpy(cur, id, 20);
	for (int depth = 0; depth < GRAPH_MAX_TAG_DEPTH; depth++) {
		bool added;
		size_t i = put(&g->rels, &g->rel, &g->relcap, cur, &added);
		struct raw_ctx c = {&g->rels, g->rel};

		if (!added)
			return 0;
		if (objects_get_raw(g->w->db, SWHID_REL, (const unsigned char(*)[20])cur, 1, raw_cb,
			&c, &err) != 0)
			return db_fail(g, err, "a release");
		hex_encode(cur, 20, hex);
		if (g->rel[i].raw == NULL)
			return gitgraph_fail(g, "release swh:1:rel:%s is not in the archive", hex);
		if (!gitobj_parse_tag(
			g->rel[i].raw, g->rel[i].len, target, &kind, &name, &name_len))
			return gitgraph_fail(g, "release swh:1:rel:%s is malformed", hex);
		switch (kind) {
		case SWHID_REV:
			return gitgraph_add_history(g, target);
		case SWHID_DIR:
			return gitgraph_add_tree(g, target);
		case SWHID_CNT:
			gitgraph_add_content(g, target);
			return 0;
		case SWHID_REL:
			memcpy(cur, target, 20);
			continue;
		default:
			return gitgraph_fail(g, "release swh:1:rel:%s has an unknown target", hex);
		}
	}
	return gitgraph_fail(g, "releases nested deeper than %d levels", GRAPH_MAX_TAG_DEPTH);
}

void
gitgraph_add_content(struct gitgraph *g, const unsigned char id[20])
{
	bool added;
	size_t i = idtab_put(&g->cnts, id, &added);

	if (g->cnts.n > g->cntcap) {
		size_t ncap = g->cntcap ? 2 * g->cntcap : 256;
		g->cnt = xrealloc(g->cnt, ncap * sizeof *g->cnt);
		memset(g->cnt + g->cntcap, 0, (ncap - g->cntcap) * sizeof *g->cnt);
		g->cntcap = ncap;
	}
	(void)i;
}

/* Loads every tree numbered from `from` on that has no body yet, level by level, noting
 * subtrees and contents as their parents arrive. */
static int
load_trees(struct gitgraph *g, size_t from)
{
	char *err = NULL, hex[41];

	while (from < g->dirs.n) {
		size_t end = g->dirs.n;
		for (size_t i = from; i < end; i += GRAPH_BATCH) {
			size_t n = end - i < GRAPH_BATCH ? end - i : GRAPH_BATCH;
			struct raw_ctx c = {&g->dirs, g->dir};
			if (objects_get_directories(g->w->db,
				(const unsigned char(*)[20])g->dirs.ids[i], n, raw_cb, &c,
				&err) != 0)
				return db_fail(g, err, "directories");
			if (!job_keepalive(g->run)) {
				g->cancelled = true;
				return -1;
			}
		}
		for (size_t i = from; i < end; i++) {
			struct tree_iter it;
			unsigned int mode;
			const char *name;
			size_t nl;
			const unsigned char *id;
			int r;

			if (g->dir[i].raw == NULL) {
				hex_encode(g->dirs.ids[i], 20, hex);
				return gitgraph_fail(
				    g, "directory swh:1:dir:%s is not in the archive", hex);
			}
			tree_iter_init(&it, g->dir[i].raw, g->dir[i].len);
			while ((r = tree_iter_next(&it, &mode, &name, &nl, &id)) == 1) {
				bool added;
				if (mode == GIT_MODE_DIR)
					put(&g->dirs, &g->dir, &g->dircap, id, &added);
				else if (mode != GIT_MODE_GITLINK)
					gitgraph_add_content(g, id);
			}
			if (r < 0) {
				hex_encode(g->dirs.ids[i], 20, hex);
				return gitgraph_fail(g, "directory swh:1:dir:%s is malformed", hex);
			}
		}
		from = end;
	}
	return 0;
}

int
gitgraph_add_tree(struct gitgraph *g, const unsigned char root[20])
{
	bool added;
	size_t first = g->dirs.n;

	put(&g->dirs, &g->dir, &g->dircap, root, &added);
	return added ? load_trees(g, first) : 0;
}

int
gitgraph_add_revision_trees(struct gitgraph *g)
{
	size_t first = g->dirs.n;
	char hex[41];

	for (size_t i = 0; i < g->revs.n; i++) {
		struct commit_info ci;
		bool added;

		if (g->rev[i].raw == NULL)
			continue;
		if (!gitobj_parse_commit(g->rev[i].raw, g->rev[i].len, &ci)) {
			hex_encode(g->revs.ids[i], 20, hex);
			return gitgraph_fail(g, "revision swh:1:rev:%s is malformed", hex);
		}
		put(&g->dirs, &g->dir, &g->dircap, ci.tree, &added);
		commit_info_clear(&ci);
	}
	return load_trees(g, first);
}

/* One content row. */
static int
cnt_cb(void *arg, const struct content_row *row)
{
	struct gitgraph *g = arg;
	long i = idtab_find(&g->cnts, row->sha1_git);

	if (i >= 0) {
		memcpy(g->cnt[i].sha256, row->sha256, 32);
		g->cnt[i].length = row->length;
		g->cnt[i].found = true;
	}
	return 0;
}

int
gitgraph_load_contents(struct gitgraph *g)
{
	char *err = NULL;

	for (size_t i = 0; i < g->cnts.n; i += GRAPH_BATCH) {
		size_t n = g->cnts.n - i < GRAPH_BATCH ? g->cnts.n - i : GRAPH_BATCH;
		if (objects_get_contents(g->w->db, (const unsigned char(*)[20])g->cnts.ids[i], n,
			cnt_cb, g, &err) != 0)
			return db_fail(g, err, "contents");
		if (!job_keepalive(g->run)) {
			g->cancelled = true;
			return -1;
		}
	}
	return 0;
}

size_t
gitgraph_topo(const struct gitgraph *g, size_t **order_out)
{
	size_t n = g->revs.n, norder = 0, sp = 0;
	size_t *order = xmalloc((n ? n : 1) * sizeof *order);
	unsigned char *state = xcalloc(n ? n : 1, 1); /* 0 new, 1 on the stack, 2 emitted */
	struct frame {
		size_t rev;
		struct commit_info ci;
		size_t next;
	} *stack = xmalloc((n ? n : 1) * sizeof *stack);

	for (size_t h = 0; h < g->nheads; h++) {
		size_t start = g->heads[h];
		if (state[start] != 0 || g->rev[start].raw == NULL)
			continue;
		state[start] = 1;
		stack[sp].rev = start;
		stack[sp].next = 0;
		if (!gitobj_parse_commit(g->rev[start].raw, g->rev[start].len, &stack[sp].ci))
			memset(&stack[sp].ci, 0, sizeof stack[sp].ci);
		sp++;
		while (sp > 0) {
			struct frame *f = &stack[sp - 1];
			if (f->next < f->ci.n_parents) {
				long p = idtab_find(&g->revs, f->ci.parents[f->next++]);
				if (p < 0 || state[p] != 0 || g->rev[p].raw == NULL)
					continue;
				state[p] = 1;
				stack[sp].rev = (size_t)p;
				stack[sp].next = 0;
				if (!gitobj_parse_commit(
					g->rev[p].raw, g->rev[p].len, &stack[sp].ci))
					memset(&stack[sp].ci, 0, sizeof stack[sp].ci);
				sp++;
				continue;
			}
			state[f->rev] = 2;
			order[norder++] = f->rev;
			commit_info_clear(&f->ci);
			sp--;
		}
	}
	free(stack);
	free(state);
	*order_out = order;
	return norder;
}

int
gitgraph_sink(void *arg, const void *data, size_t len, char **errstr)
{
	struct gitgraph *g = arg;
	char *err = NULL;

	if (store_writer_size(g->sw) + len > (uint64_t)g->max_size) {
		*errstr = xasprintf(
		    "bundle exceeds the size limit of %lld bytes", (long long)g->max_size);
		return -1;
	}
	if (store_writer_write(g->sw, data, len, &err) != 0) {
		int e = errno;
		if (g->run->detail == NULL)
			g->run->detail = err;
		else
			free(err);
		*errstr = xasprintf("cannot write the bundle to the store: %s",
		    e == ENOSPC ? "no space left on device" : strerror(e ? e : EIO));
		return -1;
	}
	return 0;
}

int
gitgraph_out_start(struct gitgraph *g, int gzip_level, int threads)
{
	char *err = NULL;

	g->sw = store_writer_new(g->w->store, &err);
	if (g->sw == NULL) {
		if (g->run->detail == NULL)
			g->run->detail = err;
		else
			free(err);
		return gitgraph_fail(g, "cannot write the bundle to the store");
	}
	if (gzip_level > 0) {
		g->z = pgzip_new(gzip_level, threads < 1 ? 1 : threads, gitgraph_sink, g);
		if (g->z == NULL)
			return gitgraph_fail(g, "cannot start the gzip compressor");
	}
	return 0;
}

int
gitgraph_out_write(struct gitgraph *g, const void *data, size_t len)
{
	char *err = NULL;
	int rc =
	    g->z != NULL ? pgzip_write(g->z, data, len, &err) : gitgraph_sink(g, data, len, &err);
	if (rc != 0) {
		gitgraph_fail(g, "%s", err);
		free(err);
	}
	return rc;
}

int
gitgraph_out_finish(struct gitgraph *g, unsigned char sha256[32], uint64_t *size)
{
	char *err = NULL;

	if (g->z != NULL && pgzip_finish(g->z, &err) != 0) {
		gitgraph_fail(g, "%s", err);
		free(err);
		return -1;
	}
	if (!job_phase(g->run, "Storing the bundle")) {
		g->cancelled = true;
		return -1;
	}
	*size = store_writer_size(g->sw);
	int rc = store_writer_commit(g->sw, sha256, NULL, &err);
	g->sw = NULL;
	if (rc != 0) {
		if (g->run->detail == NULL)
			g->run->detail = err;
		else
			free(err);
		return gitgraph_fail(g, "cannot store the bundle");
	}
	return 0;
}

int
gitgraph_copy_blob(struct gitgraph *g, size_t cnt, const char *path,
    int (*cb)(void *arg, const void *data, size_t len), void *arg)
{
	char *err = NULL, hex[41];
	uint64_t size = 0, left;
	int fd = store_open_blob(g->w->store, g->cnt[cnt].sha256, &size, &err);
	unsigned char *buf;

	hex_encode(g->cnts.ids[cnt], 20, hex);
	if (fd < 0) {
		free(err);
		return gitgraph_fail(g, "content swh:1:cnt:%s%s%s is missing from the store", hex,
		    path ? " at " : "", path ? path : "");
	}
	if ((int64_t)size != g->cnt[cnt].length) {
		close(fd);
		return gitgraph_fail(
		    g, "content swh:1:cnt:%s has the wrong size in the store", hex);
	}
	buf = xmalloc(GRAPH_READ);
	left = size;
	while (left > 0) {
		ssize_t r = read(fd, buf, left < GRAPH_READ ? left : GRAPH_READ);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			gitgraph_fail(g, "cannot read content swh:1:cnt:%s from the store", hex);
			break;
		}
		if ((cb != NULL ? cb(arg, buf, (size_t)r)
				: gitgraph_out_write(g, buf, (size_t)r)) != 0)
			break;
		left -= (uint64_t)r;
		if (size > GRAPH_READ && !job_keepalive(g->run)) {
			g->cancelled = true;
			break;
		}
	}
	free(buf);
	close(fd);
	return left == 0 ? 0 : -1;
}

enum job_outcome
gitgraph_outcome(struct gitgraph *g, char **reason)
{
	if (g->cancelled)
		return JOB_OUTCOME_CANCELLED;
	if (g->db_failed && worker_db_transient(g->w)) {
		*reason = xstrdup("the archive database was unavailable while reading the object");
		return JOB_OUTCOME_RETRY;
	}
	*reason = g->reason != NULL ? g->reason : xstrdup("cooking failed");
	g->reason = NULL;
	return JOB_OUTCOME_FAILED;
}
