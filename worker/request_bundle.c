/* request_bundle.c: the "request" job's bundle (worker/request.h), Cachito's layout
 * (research cachito.md §3.2): app/ holding the tree (with app/.git when asked), deps/
 * holding the dependency files, written by worker/tarball.c, so the same request always
 * gives the same bytes: git tree order for app/, path order for deps/, fixed times,
 * owners and modes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/gitobj.h"
#include "shared/log.h"
#include "shared/objects.h"
#include "worker/idtab.h"
#include "worker/gitdir.h"
#include "worker/request.h"
#include "worker/tarball.h"
#include "worker/worker.h"

/* ---- the bundle --------------------------------------------------------------------- */

struct writer {
	struct job_run *run;
	struct rtree *t;
	struct tarball *tb;
	struct store_writer *sw;
	int64_t max_size;
	char *reason;
	bool cancelled;
	const char *last; /* the deps/ file written last ("deps/" at first) */
};

/* Sets the reason (the first wins); -1. */
static int
wfail(struct writer *w, char *msg)
{
	if (w->reason == NULL)
		w->reason = msg;
	else
		free(msg);
	return -1;
}

/* One file or symlink from the store. */
static int
write_blob(struct writer *w, const char *path, unsigned int mode, const struct cinfo *ci)
{
	char *err = NULL;
	uint64_t size;
	int rc;

	int fd = store_open_blob(w->run->w->store, ci->sha256, &size, &err);
	if (fd < 0) {
		log_warn_id(w->run->log_id, "store: %s", err);
		free(err);
		return wfail(w, xasprintf("The file %s cannot be read from the store", path));
	}
	if (size != (uint64_t)ci->length) {
		close(fd);
		return wfail(w, xasprintf("The stored bytes of %s do not match its length", path));
	}
	if (mode == GIT_MODE_LINK) {
		char *target = size <= RTREE_MAX_LINK ? xmalloc(size + 1) : NULL;
		if (target == NULL || rtree_read_all(fd, target, size) != 0 ||
		    memchr(target, '\0', size) != NULL) {
			close(fd);
			free(target);
			return wfail(w, xasprintf("The symlink %s has an unreadable target", path));
		}
		target[size] = '\0';
		rc = tarball_add_symlink(w->tb, path, target, &err);
		free(target);
	} else {
		rc = tarball_add_file_fd(w->tb, path, mode == GIT_MODE_EXEC, size, fd, &err);
	}
	close(fd);
	if (rc != 0)
		return wfail(w, err);
	return 0;
}

/* A directory's entries, depth first in git order; path holds its archive name. */
static int
walk(struct writer *w, const unsigned char dir[20], struct buf *path, int depth)
{
	struct rtree *t = w->t;
	long di = idtab_find(&t->dirs, dir);
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len, base = path->len;
	const unsigned char *id;
	char *err = NULL;
	int r;

	if (depth > RTREE_MAX_DEPTH)
		return wfail(
		    w, xasprintf("The source tree is deeper than %d levels", RTREE_MAX_DEPTH));
	if (di < 0 || !t->dinfo[di].loaded)
		return wfail(
		    w, xasprintf("The directory %s is missing from the archive", path->data));
	tree_iter_init(&it, t->dinfo[di].raw, t->dinfo[di].len);
	while ((r = tree_iter_next(&it, &mode, &name, &name_len, &id)) == 1) {
		path->len = base;
		buf_addc(path, '/');
		buf_add(path, name, name_len);
		if (mode == GIT_MODE_DIR || mode == GIT_MODE_GITLINK) {
			if (tarball_add_dir(w->tb, path->data, &err) != 0)
				return wfail(w, err);
			/* A submodule: its tree when fetched, else an empty folder (as git
			 * leaves it without --recurse-submodules). */
			const struct graft *g =
			    mode == GIT_MODE_GITLINK ? rtree_graft_at(t, path->data + 4) : NULL;
			if (mode == GIT_MODE_DIR && walk(w, id, path, depth + 1) != 0)
				return -1;
			if (g != NULL && walk(w, g->root, path, depth + 1) != 0)
				return -1;
		} else if (mode == GIT_MODE_LINK && t->excluded != NULL &&
		    json_object_get(t->excluded, path->data + 4) != NULL) {
			continue; /* unsafe, and remove-unsafe-symlinks asked */
		} else if (mode == GIT_MODE_FILE || mode == GIT_MODE_EXEC ||
		    mode == GIT_MODE_LINK) {
			long ci = idtab_find(&t->cnts, id);
			if (ci < 0 || !t->cinfo[ci].loaded)
				return wfail(w,
				    xasprintf(
					"The file %s is missing from the archive", path->data));
			if (write_blob(w, path->data, mode, &t->cinfo[ci]) != 0)
				return -1;
		} else {
			return wfail(
			    w, xasprintf("%s has an unsupported mode %o", path->data, mode));
		}
	}
	path->len = base;
	path->data[base] = '\0';
	if (r < 0)
		return wfail(
		    w, xasprintf("The directory %s is corrupt in the archive", path->data));
	return 0;
}

/* The folders of path not written yet, outermost first. Files come sorted by path, and
 * paths sharing a folder's prefix "dir/" are next to each other in that order: a folder
 * is written already exactly when the previous file (w->last) is under it. */
static int
parent_dirs(struct writer *w, const char *path)
{
	char *err = NULL;

	for (const char *p = strchr(path, '/'); p != NULL; p = strchr(p + 1, '/')) {
		size_t n = (size_t)(p - path) + 1; /* "dir/" */
		if (strncmp(w->last, path, n) == 0)
			continue;
		char *dir = xstrndup(path, n - 1);
		int rc = tarball_add_dir(w->tb, dir, &err);
		free(dir);
		if (rc != 0)
			return wfail(w, err);
	}
	w->last = path;
	return 0;
}

/* tarball's tick: keeps the lease during long files. */
static int
tick(void *arg, char **errstr)
{
	struct writer *w = arg;
	if (!worker_stop && job_keepalive(w->run))
		return 0;
	w->cancelled = true;
	*errstr = xstrdup("cancelled");
	return -1;
}

/* Compressed bytes into the store, within max_bundle_size. */
static int
sink(void *arg, const void *data, size_t len, char **errstr)
{
	struct writer *w = arg;
	char *err = NULL;

	if (store_writer_size(w->sw) + len > (uint64_t)w->max_size) {
		*errstr = xasprintf("The bundle exceeds the size limit of %lld bytes "
				    "(max_bundle_size)",
		    (long long)w->max_size);
		return -1;
	}
	if (store_writer_write(w->sw, data, len, &err) != 0) {
		log_warn_id(w->run->log_id, "store: %s", err);
		free(err);
		*errstr = xstrdup("The bundle could not be written to the store");
		return -1;
	}
	return 0;
}

/* Orders bundle files by path. */
static int
by_path(const void *a, const void *b)
{
	return strcmp(((const struct bundle_file *)a)->path, ((const struct bundle_file *)b)->path);
}

/* Compression threads: both cores, more where there are more (as the cook). */
static int
gzip_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 2 ? 2 : n > 8 ? 8 : (int)n;
}

/* Writes the bundle. */
int
bundle_write(struct job_run *run, struct rtree *t, struct gitdir *git, struct bundle_file *files,
    size_t nfiles, unsigned char sha256[32], uint64_t *size, bool *cancelled, char **errstr)
{
	struct writer w = {.run = run, .t = t};
	const struct config *cfg = run->w->cfg;
	char *err = NULL;
	struct buf path;
	int rc = -1;

	*cancelled = false;
	w.max_size = cfg->max_bundle_size > 0 ? cfg->max_bundle_size : INT64_MAX;
	if ((w.sw = store_writer_new(run->w->store, &err)) == NULL) {
		log_warn_id(run->log_id, "store: %s", err);
		free(err);
		*errstr = xstrdup("The bundle could not be written to the store");
		return -1;
	}
	w.tb = tarball_new((int)cfg->gzip_level, gzip_threads(), sink, &w, &err);
	if (w.tb == NULL) {
		wfail(&w, err);
		goto out;
	}
	tarball_set_tick(w.tb, tick, &w);
	if (nfiles > 1) /* files is NULL when there are none: qsort's pointer must not be */
		qsort(files, nfiles, sizeof *files, by_path);

	buf_init(&path);
	buf_adds(&path, "app");
	if (tarball_add_dir(w.tb, "app", &err) != 0 ||
	    (git != NULL && gitdir_write(git, w.tb, &err) != 0))
		wfail(&w, err);
	else if (walk(&w, t->root, &path, 0) == 0 && tarball_add_dir(w.tb, "deps", &err) != 0)
		wfail(&w, err);
	buf_free(&path);
	if (w.reason != NULL || w.cancelled)
		goto out;
	w.last = "deps/";
	for (size_t i = 0; i < nfiles; i++) {
		uint64_t bsize;
		if (parent_dirs(&w, files[i].path) != 0)
			goto out;
		int fd = store_open_blob(run->w->store, files[i].sha256, &bsize, &err);
		if (fd < 0) {
			log_warn_id(run->log_id, "store: %s", err);
			free(err);
			wfail(&w,
			    xasprintf(
				"The dependency %s cannot be read from the store", files[i].path));
			goto out;
		}
		int r = tarball_add_file_fd(w.tb, files[i].path, false, bsize, fd, &err);
		close(fd);
		if (r != 0) {
			wfail(&w, err);
			goto out;
		}
	}
	if (tarball_finish(w.tb, &err) != 0) {
		wfail(&w, err);
		goto out;
	}
	*size = store_writer_size(w.sw);
	rc = store_writer_commit(w.sw, sha256, NULL, &err);
	w.sw = NULL;
	if (rc != 0) {
		log_warn_id(run->log_id, "store: %s", err);
		free(err);
		wfail(&w, xstrdup("The bundle could not be stored"));
	}
out:
	tarball_free(w.tb);
	store_writer_abort(w.sw);
	*cancelled = w.cancelled;
	if (rc != 0)
		*errstr = w.reason != NULL ? w.reason : xstrdup("The bundle could not be written");
	else
		free(w.reason);
	return rc;
}
