/* request_tree.c: the "request" job's source tree (worker/request.h). The tree of the
 * requested commit (and the trees of its submodules, grafted at their gitlinks) is read
 * from the archive once, breadth first and a batch of ids per query, as the cook does
 * (worker/cook.c); files are then read by path (package.json, the lockfile) straight
 * from the store; symlinks are followed through the tree for Cachito's sandbox check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/gitobj.h"
#include "shared/log.h"
#include "shared/objects.h"
#include "worker/idtab.h"
#include "worker/request.h"
#include "worker/tarball.h"
#include "worker/worker.h"

/* Ids per objects_get_* query. */
#define RTREE_BATCH 2000

/* Keeps dinfo/cinfo as long as their tables. */
static void
grow(struct rtree *t)
{
	if (t->dirs.n > t->dcap) {
		size_t cap = t->dcap ? t->dcap : 64;
		while (cap < t->dirs.n)
			cap *= 2;
		t->dinfo = xrealloc(t->dinfo, cap * sizeof *t->dinfo);
		memset(t->dinfo + t->dcap, 0, (cap - t->dcap) * sizeof *t->dinfo);
		t->dcap = cap;
	}
	if (t->cnts.n > t->ccap) {
		size_t cap = t->ccap ? t->ccap : 64;
		while (cap < t->cnts.n)
			cap *= 2;
		t->cinfo = xrealloc(t->cinfo, cap * sizeof *t->cinfo);
		memset(t->cinfo + t->ccap, 0, (cap - t->ccap) * sizeof *t->cinfo);
		t->ccap = cap;
	}
}

/* objects_get_directories: a copy of each body. */
static int
dir_cb(void *arg, const unsigned char id[20], const unsigned char *raw, size_t raw_len)
{
	struct rtree *t = arg;
	long i = idtab_find(&t->dirs, id);

	if (i < 0 || t->dinfo[i].loaded)
		return 0;
	t->dinfo[i].raw = xmalloc(raw_len + 1);
	memcpy(t->dinfo[i].raw, raw, raw_len);
	t->dinfo[i].len = raw_len;
	t->dinfo[i].loaded = true;
	return 0;
}

/* objects_get_contents: the store key and length of each file. */
static int
cnt_cb(void *arg, const struct content_row *row)
{
	struct rtree *t = arg;
	long i = idtab_find(&t->cnts, row->sha1_git);

	if (i < 0)
		return 0;
	memcpy(t->cinfo[i].sha256, row->sha256, 32);
	t->cinfo[i].length = row->length;
	t->cinfo[i].loaded = true;
	return 0;
}

/* Reads root and what is under it that is not read yet. 0 or -1 (*errstr: Postgres's). */
static int
load_from(struct rtree *t, const unsigned char root[20], char **errstr)
{
	struct db *db = t->run->w->db;
	bool added;
	size_t first_cnt = t->cnts.n, lvl_start = t->dirs.n, lvl_end;

	idtab_put(&t->dirs, root, &added);
	if (!added)
		return 0;
	grow(t);
	while (lvl_start < (lvl_end = t->dirs.n)) {
		for (size_t b = lvl_start; b < lvl_end; b += RTREE_BATCH) {
			size_t n = lvl_end - b < RTREE_BATCH ? lvl_end - b : RTREE_BATCH;
			if (objects_get_directories(db, (const unsigned char(*)[20])t->dirs.ids + b,
				n, dir_cb, t, errstr) != 0)
				return -1;
		}
		for (size_t i = lvl_start; i < lvl_end; i++) {
			struct tree_iter it;
			unsigned int mode;
			const char *name;
			size_t name_len;
			const unsigned char *id;

			if (!t->dinfo[i].loaded)
				continue;
			tree_iter_init(&it, t->dinfo[i].raw, t->dinfo[i].len);
			while (tree_iter_next(&it, &mode, &name, &name_len, &id) == 1) {
				if (mode == GIT_MODE_DIR)
					idtab_put(&t->dirs, id, &added);
				else if (mode == GIT_MODE_FILE || mode == GIT_MODE_EXEC ||
				    mode == GIT_MODE_LINK)
					idtab_put(&t->cnts, id, &added);
			}
			grow(t);
		}
		lvl_start = lvl_end;
		(void)job_keepalive(t->run);
	}
	for (size_t b = first_cnt; b < t->cnts.n; b += RTREE_BATCH) {
		size_t n = t->cnts.n - b < RTREE_BATCH ? t->cnts.n - b : RTREE_BATCH;
		if (objects_get_contents(
			db, (const unsigned char(*)[20])t->cnts.ids + b, n, cnt_cb, t, errstr) != 0)
			return -1;
	}
	return 0;
}

/* Reads the tree. */
struct rtree *
rtree_load(struct job_run *run, const unsigned char root[20], bool *db_failed, char **errstr)
{
	struct rtree *t = xcalloc(1, sizeof *t);
	char *err = NULL, hex[41];

	t->run = run;
	idtab_init(&t->dirs);
	idtab_init(&t->cnts);
	memcpy(t->root, root, 20);
	*db_failed = false;
	if (load_from(t, root, &err) != 0) {
		log_warn_id(run->log_id, "reading the source tree: %s", err);
		free(err);
		*db_failed = true;
		*errstr = xstrdup("The archive database failed while reading the source tree");
		rtree_free(t);
		return NULL;
	}
	if (!t->dinfo[0].loaded) {
		hex_encode(root, 20, hex);
		*errstr = xasprintf("The source tree swh:1:dir:%s is not in the archive", hex);
		rtree_free(t);
		return NULL;
	}
	return t;
}

void
rtree_free(struct rtree *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->dirs.n && i < t->dcap; i++)
		free(t->dinfo[i].raw);
	for (size_t i = 0; i < t->ngrafts; i++)
		free(t->grafts[i].path);
	free(t->grafts);
	json_decref(t->excluded);
	free(t->dinfo);
	free(t->cinfo);
	idtab_free(&t->dirs);
	idtab_free(&t->cnts);
	free(t);
}

/* Adds a submodule's tree. */
int
rtree_graft(
    struct rtree *t, const char *path, const unsigned char root[20], bool *db_failed, char **errstr)
{
	char *err = NULL, hex[41];

	*db_failed = false;
	if (load_from(t, root, &err) != 0) {
		log_warn_id(t->run->log_id, "reading a submodule's tree: %s", err);
		free(err);
		*db_failed = true;
		*errstr = xstrdup("The archive database failed while reading a submodule");
		return -1;
	}
	long i = idtab_find(&t->dirs, root);
	if (i < 0 || !t->dinfo[i].loaded) {
		hex_encode(root, 20, hex);
		*errstr = xasprintf(
		    "The tree swh:1:dir:%s of submodule %s is not in the archive", hex, path);
		return -1;
	}
	t->grafts = xrealloc(t->grafts, (t->ngrafts + 1) * sizeof *t->grafts);
	t->grafts[t->ngrafts].path = xstrdup(path);
	memcpy(t->grafts[t->ngrafts].root, root, 20);
	t->ngrafts++;
	return 0;
}

/* The entry named name (len bytes) in a loaded directory: 1, 0. */
static int
find_entry(
    const struct dinfo *d, const char *name, size_t len, unsigned int *mode, unsigned char id[20])
{
	struct tree_iter it;
	const char *n;
	size_t nlen;
	const unsigned char *eid;

	tree_iter_init(&it, d->raw, d->len);
	while (tree_iter_next(&it, mode, &n, &nlen, &eid) == 1)
		if (nlen == len && memcmp(n, name, len) == 0) {
			memcpy(id, eid, 20);
			return 1;
		}
	return 0;
}

/* What is at path. */
int
rtree_lookup(struct rtree *t, const char *path, unsigned int *mode, unsigned char id[20])
{
	const char *p = path;

	*mode = GIT_MODE_DIR;
	memcpy(id, t->root, 20);
	while (*p != '\0') {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.')) {
			p += n + (p[n] == '/');
			continue;
		}
		if (n == 2 && strncmp(p, "..", 2) == 0)
			return -1;
		if (*mode != GIT_MODE_DIR)
			return -1;
		long i = idtab_find(&t->dirs, id);
		if (i < 0 || !t->dinfo[i].loaded)
			return 0;
		if (find_entry(&t->dinfo[i], p, n, mode, id) != 1)
			return 0;
		p += n + (p[n] == '/');
	}
	return 1;
}

/* The gitlinks under directory di, depth first. */
static int
gitlinks_in(struct rtree *t, long di, struct buf *path, rtree_gitlink_cb cb, void *arg, int depth)
{
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len, base = path->len;
	const unsigned char *id;

	if (di < 0 || !t->dinfo[di].loaded || depth > RTREE_MAX_DEPTH)
		return 0;
	/* The body is copied: a callback may graft, which grows dinfo. */
	size_t len = t->dinfo[di].len;
	unsigned char *raw = xmalloc(len + 1);
	memcpy(raw, t->dinfo[di].raw, len);
	tree_iter_init(&it, raw, len);
	int rc = 0;
	while (rc == 0 && tree_iter_next(&it, &mode, &name, &name_len, &id) == 1) {
		path->len = base;
		if (base > 0)
			buf_addc(path, '/');
		buf_add(path, name, name_len);
		if (mode == GIT_MODE_GITLINK)
			rc = cb(arg, path->data, id);
		else if (mode == GIT_MODE_DIR)
			rc = gitlinks_in(t, idtab_find(&t->dirs, id), path, cb, arg, depth + 1);
	}
	free(raw);
	path->len = base;
	if (path->data != NULL)
		path->data[base] = '\0';
	return rc;
}

/* Every gitlink of the root tree. */
int
rtree_gitlinks(struct rtree *t, rtree_gitlink_cb cb, void *arg)
{
	struct buf path;
	buf_init(&path);
	int rc = gitlinks_in(t, idtab_find(&t->dirs, t->root), &path, cb, arg, 0);
	buf_free(&path);
	return rc;
}

int
rtree_read_all(int fd, char *out, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, out + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/* A regular file's bytes. */
int
rtree_read(struct rtree *t, const char *path, int64_t max, char **data, size_t *len, char **errstr)
{
	unsigned int mode;
	unsigned char id[20];
	uint64_t size;
	char *err = NULL;

	if (rtree_lookup(t, path, &mode, id) != 1 ||
	    (mode != GIT_MODE_FILE && mode != GIT_MODE_EXEC))
		return 0;
	long i = idtab_find(&t->cnts, id);
	if (i < 0 || !t->cinfo[i].loaded) {
		*errstr = xasprintf("The file %s is not in the archive", path);
		return -1;
	}
	if (t->cinfo[i].length > max) {
		*errstr = xasprintf("The file %s is larger than %lld bytes", path, (long long)max);
		return -1;
	}
	int fd = store_open_blob(t->run->w->store, t->cinfo[i].sha256, &size, &err);
	if (fd < 0) {
		log_warn_id(t->run->log_id, "store: %s", err);
		free(err);
		*errstr = xasprintf("The file %s cannot be read from the store", path);
		return -1;
	}
	*data = xmalloc(size + 1);
	if (size != (uint64_t)t->cinfo[i].length || rtree_read_all(fd, *data, size) != 0) {
		close(fd);
		free(*data);
		*data = NULL;
		*errstr = xasprintf("The file %s cannot be read from the store", path);
		return -1;
	}
	close(fd);
	(*data)[size] = '\0';
	*len = size;
	return 1;
}

const struct graft *
rtree_graft_at(const struct rtree *t, const char *rel)
{
	for (size_t i = 0; i < t->ngrafts; i++)
		if (strcmp(t->grafts[i].path, rel) == 0)
			return &t->grafts[i];
	return NULL;
}

/* ---- symlinks ----------------------------------------------------------------------- */

/* ELOOP's bound: a chain of more links than this is taken as leaving the tree. */
#define RTREE_MAX_HOPS 40

/* A symlink's target from the store. 0 (*target, caller frees), or -1 with *errstr. */
static int
link_target(
    struct rtree *t, const unsigned char id[20], const char *path, char **target, char **errstr)
{
	long i = idtab_find(&t->cnts, id);
	char *err = NULL;
	uint64_t size;

	if (i < 0 || !t->cinfo[i].loaded) {
		*errstr = xasprintf("The file %s is missing from the archive", path);
		return -1;
	}
	int fd = store_open_blob(t->run->w->store, t->cinfo[i].sha256, &size, &err);
	if (fd < 0) {
		log_warn_id(t->run->log_id, "store: %s", err);
		free(err);
		*errstr = xasprintf("The file %s cannot be read from the store", path);
		return -1;
	}
	*target = size <= RTREE_MAX_LINK ? xmalloc(size + 1) : NULL;
	if (*target == NULL || size != (uint64_t)t->cinfo[i].length ||
	    rtree_read_all(fd, *target, size) != 0 || memchr(*target, '\0', size) != NULL) {
		close(fd);
		free(*target);
		*target = NULL;
		*errstr = xasprintf("The symlink %s has an unreadable target", path);
		return -1;
	}
	close(fd);
	(*target)[size] = '\0';
	return 0;
}

/* Follows target from the folder dir ("" the root), as the kernel would once app/ is
 * extracted: component by component, through the tree's own symlinks (so a chain of
 * links each harmless alone cannot climb out). 1 inside (*out the path reached), 0 it
 * leaves the tree (absolute, above the root, or a loop), -1 with *errstr. Inside a
 * submodule's graft the walk is lexical (rtree_lookup stops at gitlinks). */
static int
resolve_link(
    struct rtree *t, const char *dir, const char *target, int *hops, struct buf *out, char **errstr)
{
	unsigned int mode;
	unsigned char id[20];
	const char *p = target;

	buf_reset(out);
	buf_adds(out, dir);
	if (target[0] == '/')
		return 0;
	while (*p != '\0') {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* nothing */
		} else if (n == 2 && strncmp(p, "..", 2) == 0) {
			if (out->len == 0)
				return 0;
			char *slash = strrchr(out->data, '/');
			out->len = slash != NULL ? (size_t)(slash - out->data) : 0;
			out->data[out->len] = '\0';
		} else {
			size_t parent = out->len;
			if (out->len > 0)
				buf_addc(out, '/');
			buf_add(out, p, n);
			if (rtree_lookup(t, out->data, &mode, id) == 1 && mode == GIT_MODE_LINK) {
				char *next = NULL;
				struct buf sub;
				if (++*hops > RTREE_MAX_HOPS)
					return 0;
				if (link_target(t, id, out->data, &next, errstr) != 0)
					return -1;
				out->data[parent] = '\0';
				buf_init(&sub);
				int r = resolve_link(t, out->data, next, hops, &sub, errstr);
				free(next);
				if (r == 1) {
					buf_reset(out);
					buf_adds(out, sub.len > 0 ? sub.data : "");
				}
				buf_free(&sub);
				if (r != 1)
					return r;
			}
		}
		p += n + (p[n] == '/');
	}
	return 1;
}

struct link_walk {
	bool remove;
	rtree_link_cb cb;
	void *arg;
	char *errstr;
	int unsafe;
};

/* The symlinks under directory di (its path in path, "" the root), depth first. 0, 1
 * an unsafe link refused, -1 error. */
static int
links_in(struct rtree *t, long di, struct buf *path, struct link_walk *lw, int depth)
{
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len, base = path->len;
	const unsigned char *id;
	int rc = 0;

	if (di < 0 || !t->dinfo[di].loaded || depth > RTREE_MAX_DEPTH)
		return 0;
	tree_iter_init(&it, t->dinfo[di].raw, t->dinfo[di].len);
	while (rc == 0 && tree_iter_next(&it, &mode, &name, &name_len, &id) == 1) {
		path->len = base;
		if (base > 0)
			buf_addc(path, '/');
		buf_add(path, name, name_len);
		if (gitobj_name_is_dotgit(name, name_len)) {
			/* git refuses to check such a path out; extracted, it would replace
			 * app/.git (a config that runs commands, say). */
			lw->errstr = xasprintf(
			    "The repository contains a path git refuses to check out: '%s'",
			    path->data);
			rc = 1;
		} else if (mode == GIT_MODE_DIR) {
			rc = links_in(t, idtab_find(&t->dirs, id), path, lw, depth + 1);
		} else if (mode == GIT_MODE_GITLINK) {
			const struct graft *g = rtree_graft_at(t, path->data);
			if (g != NULL)
				rc =
				    links_in(t, idtab_find(&t->dirs, g->root), path, lw, depth + 1);
		} else if (mode == GIT_MODE_LINK) {
			char *target = NULL, *dir = xstrndup(path->data, base);
			struct buf out;
			int hops = 0;
			buf_init(&out);
			if (link_target(t, id, path->data, &target, &lw->errstr) != 0)
				rc = -1;
			else
				rc = resolve_link(t, dir, target, &hops, &out, &lw->errstr);
			if (rc == 1) {
				rc = 0;
			} else if (rc == 0 && lw->remove) {
				if (t->excluded == NULL)
					t->excluded = json_object();
				json_object_set_new(t->excluded, path->data, json_true());
				lw->cb(lw->arg, path->data, target);
			} else if (rc == 0) {
				lw->errstr = xasprintf(
				    "The destination of '%s' is outside of cloned repository",
				    path->data);
				rc = 1;
			}
			buf_free(&out);
			free(target);
			free(dir);
		}
	}
	path->len = base;
	if (path->data != NULL)
		path->data[base] = '\0';
	return rc;
}

/* Every symlink of the tree and its grafts checked. */
int
rtree_check_links(struct rtree *t, bool remove, rtree_link_cb cb, void *arg, char **errstr)
{
	struct link_walk lw = {.remove = remove, .cb = cb, .arg = arg};
	struct buf path;

	buf_init(&path);
	int rc = links_in(t, idtab_find(&t->dirs, t->root), &path, &lw, 0);
	buf_free(&path);
	if (rc != 0)
		*errstr = lw.errstr;
	else
		free(lw.errstr);
	return rc;
}
