/* cook.c: the "cook" job: a directory of the archive becomes a tar.gz or zip bundle in the
 * store.
 *
 * Three passes, none of them per-file in Postgres:
 *   1. load: the tree, breadth first, a few thousand directories per query, then every
 *      content row the same way (objects_get_*); everything stays in memory (ids, tree
 *      bodies, sha256 and length per content: tens of bytes per entry);
 *   2. plan: a walk in archive order that counts the files and finds the first missing
 *      directory, so a tree that cannot be walked fails before any work, naming the path;
 *   3. write: the same walk feeding worker/tarball.c, blobs read straight from the store,
 *      compressed bytes streamed into a store writer (hashed as they go, never whole in
 *      memory).
 * A file whose content row or blob is missing is left out, never replaced by placeholder
 * bytes: the bundle then ends with a manifest beside the top folder
 * ("swh:1:dir:<hex>.missing.json") naming every left-out path and why, and the result
 * says how many ("left_out"). The folder stays the exact tree minus those files.
 * Failure reasons are shown to anyone who asks for the bundle: they name paths inside the
 * directory and object ids, never server paths; the store's and Postgres's own words go to
 * the log as the run's detail. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/gitobj.h"
#include "shared/log.h"
#include "shared/objects.h"
#include "worker/idtab.h"
#include "worker/tarball.h"
#include "worker/worker.h"

/* Ids per objects_get_* call: one query each, with progress in between. */
#define COOK_BATCH 2000
/* Deeper trees are refused rather than risking the stack. */
#define COOK_MAX_DEPTH 2048
/* A symlink's target is read whole: anything this long is not a real target. */
#define COOK_MAX_LINK 65536

struct dirinfo {
	unsigned char *raw; /* tree body, NULL until loaded */
	size_t len;
	bool loaded;
};

struct cntinfo {
	unsigned char sha256[32];
	int64_t length;
	bool loaded;
};

struct cook {
	struct job_run *run;
	struct worker *w;
	char top[64]; /* "swh:1:dir:<hex>": the folder everything is under */
	struct idtab dirs, cnts;
	struct dirinfo *dinfo;
	struct cntinfo *cinfo;
	size_t dcap, ccap;
	int64_t files_total, files_done;
	bool writing; /* plan walk when false */
	bool zip; /* format "zip", else "tar.gz" */
	struct tarball *tb;
	struct store_writer *sw;
	int64_t max_size;
	json_t *left_out; /* the manifest's entries, in archive order */
	char *reason; /* a failure in words for the user */
	bool cancelled;
	bool db_failed;
};

/* Keeps dinfo/cinfo as long as their tables. */
static void
grow_info(struct cook *c)
{
	if (c->dirs.n > c->dcap) {
		size_t cap = c->dcap ? c->dcap : 64;
		while (cap < c->dirs.n)
			cap *= 2;
		c->dinfo = xrealloc(c->dinfo, cap * sizeof *c->dinfo);
		memset(c->dinfo + c->dcap, 0, (cap - c->dcap) * sizeof *c->dinfo);
		c->dcap = cap;
	}
	if (c->cnts.n > c->ccap) {
		size_t cap = c->ccap ? c->ccap : 64;
		while (cap < c->cnts.n)
			cap *= 2;
		c->cinfo = xrealloc(c->cinfo, cap * sizeof *c->cinfo);
		memset(c->cinfo + c->ccap, 0, (cap - c->ccap) * sizeof *c->cinfo);
		c->ccap = cap;
	}
}

/* objects_get_directories: keep a copy of each tree body. */
static int
dir_cb(void *arg, const unsigned char id[20], const unsigned char *raw, size_t raw_len)
{
	struct cook *c = arg;
	long i = idtab_find(&c->dirs, id);

	if (i < 0 || c->dinfo[i].loaded)
		return 0;
	c->dinfo[i].raw = xmalloc(raw_len);
	memcpy(c->dinfo[i].raw, raw, raw_len);
	c->dinfo[i].len = raw_len;
	c->dinfo[i].loaded = true;
	return 0;
}

/* objects_get_contents: the store key and length of each file. */
static int
cnt_cb(void *arg, const struct content_row *row)
{
	struct cook *c = arg;
	long i = idtab_find(&c->cnts, row->sha1_git);

	if (i < 0)
		return 0;
	memcpy(c->cinfo[i].sha256, row->sha256, 32);
	c->cinfo[i].length = row->length;
	c->cinfo[i].loaded = true;
	return 0;
}

/* Notes the ids a loaded directory refers to. Malformed bodies are left for the plan
 * walk, which knows their path. */
static void
note_children(struct cook *c, const struct dirinfo *di)
{
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len;
	const unsigned char *id;
	bool added;

	tree_iter_init(&it, di->raw, di->len);
	while (tree_iter_next(&it, &mode, &name, &name_len, &id) == 1) {
		if (mode == GIT_MODE_DIR)
			idtab_put(&c->dirs, id, &added);
		else if (mode == GIT_MODE_FILE || mode == GIT_MODE_EXEC || mode == GIT_MODE_LINK)
			idtab_put(&c->cnts, id, &added);
	}
	grow_info(c);
}

/* Pass 1. -1 only when Postgres fails (*err); missing objects are found by the plan. */
static int
load(struct cook *c, const unsigned char root[20], char **err)
{
	bool added;
	size_t lvl_start = 0, lvl_end;

	idtab_put(&c->dirs, root, &added);
	grow_info(c);
	/* Each level is the run of ids added while parsing the previous one. */
	while (lvl_start < (lvl_end = c->dirs.n)) {
		for (size_t b = lvl_start; b < lvl_end; b += COOK_BATCH) {
			size_t n = lvl_end - b < COOK_BATCH ? lvl_end - b : COOK_BATCH;
			if (objects_get_directories(c->w->db,
				(const unsigned char(*)[20])c->dirs.ids + b, n, dir_cb, c,
				err) != 0)
				return -1;
		}
		for (size_t i = lvl_start; i < lvl_end; i++)
			if (c->dinfo[i].loaded)
				note_children(c, &c->dinfo[i]);
		if (!job_progress(c->run, "Listed %zu directories", lvl_end)) {
			c->cancelled = true;
			return 0;
		}
		lvl_start = lvl_end;
	}
	for (size_t b = 0; b < c->cnts.n; b += COOK_BATCH) {
		size_t n = c->cnts.n - b < COOK_BATCH ? c->cnts.n - b : COOK_BATCH;
		if (objects_get_contents(c->w->db, (const unsigned char(*)[20])c->cnts.ids + b, n,
			cnt_cb, c, err) != 0)
			return -1;
		if (!job_progress(c->run, "Listed %zu directories, %zu of %zu files", c->dirs.n,
			b + n, c->cnts.n)) {
			c->cancelled = true;
			return 0;
		}
	}
	return 0;
}

/* The path below the top folder, for messages. */
static const char *
rel(const struct cook *c, const struct buf *path)
{
	size_t toplen = strlen(c->top);
	return path->len > toplen ? path->data + toplen + 1 : ".";
}

/* Sets the user-facing failure reason; returns -1 for the caller's convenience. */
static int BV_PRINTF(2, 3) fail(struct cook *c, const char *fmt, ...)
{
	va_list ap;

	if (c->reason == NULL) {
		va_start(ap, fmt);
		c->reason = xvasprintf(fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Keeps a server-side error text for the log (the first one wins); takes err. */
static void
note(struct cook *c, char *err)
{
	if (c->run->detail == NULL)
		c->run->detail = err;
	else
		free(err);
}

/* The store's failure in words fit for the user: errno's text, never the temp file's
 * path that the store's own message carries. */
static const char *
store_words(int e)
{
	if (e == ENOSPC || e == EDQUOT)
		return "no space left on device";
	return e != 0 ? strerror(e) : "input/output error";
}

/* A path as a JSON string: as it is when it is UTF-8, else with every byte past ASCII
 * written as \xNN (the exact bytes then go in path_hex, see left_out_add). */
static json_t *
path_json(const char *s, size_t len, bool *exact)
{
	json_t *v = json_stringn(s, len);
	struct buf b;

	*exact = v != NULL;
	if (v != NULL)
		return v;
	buf_init(&b);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x80) {
			buf_addc(&b, (char)ch);
		} else {
			char esc[5];
			snprintf(esc, sizeof esc, "\\x%02x", ch);
			buf_adds(&b, esc);
		}
	}
	v = json_stringn(b.data, b.len);
	buf_free(&b);
	return v;
}

/* Notes a file left out of the bundle, for the manifest. */
static void
left_out_add(struct cook *c, const struct buf *path, const unsigned char id[20], const char *why)
{
	char swhid[64];
	bool exact;
	const char *p = rel(c, path);
	json_t *e = json_object();

	swhid_format(SWHID_CNT, id, swhid);
	json_object_set_new(e, "path", path_json(p, strlen(p), &exact));
	if (!exact) {
		char *hex = xmalloc(2 * strlen(p) + 1);
		hex_encode((const unsigned char *)p, strlen(p), hex);
		json_object_set_new(e, "path_hex", json_string(hex));
		free(hex);
	}
	json_object_set_new(e, "swhid", json_string(swhid));
	json_object_set_new(e, "reason", json_string(why));
	if (c->left_out == NULL)
		c->left_out = json_array();
	json_array_append_new(c->left_out, e);
}

/* Writes the manifest after the folder: nothing when no file was left out. */
static int
add_manifest(struct cook *c, char **err)
{
	if (c->left_out == NULL)
		return 0;
	json_t *m = json_pack("{s:s, s:O, s:I}", "swhid", c->top, "left_out", c->left_out, "count",
	    (json_int_t)json_array_size(c->left_out));
	char *text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(m);
	if (text == NULL) {
		*err = xstrdup("cannot write the manifest of left-out files");
		return -1;
	}
	struct buf b;
	buf_init(&b);
	buf_adds(&b, text);
	buf_addc(&b, '\n');
	free(text);
	int rc = tarball_add_manifest(c->tb, c->top, b.data, b.len, err);
	buf_free(&b);
	return rc;
}

/* Reads a symlink's target (the blob's bytes) into a string. */
static int
read_link(struct cook *c, int fd, const struct buf *path, size_t len, char **target)
{
	char *t = xmalloc(len + 1);
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, t + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(t);
			return fail(c, "cannot read the target of symlink '%s' from the store",
			    rel(c, path));
		}
		got += (size_t)n;
	}
	t[len] = '\0';
	if (memchr(t, '\0', len) != NULL) {
		free(t);
		return fail(c, "symlink '%s' has a target with a NUL byte", rel(c, path));
	}
	*target = t;
	return 0;
}

/* Adds one file or symlink to the bundle, bytes straight from the store; a blob missing
 * from the store is left out (noted for the manifest). */
static int
write_blob(struct cook *c, const struct buf *path, unsigned int mode, const struct cntinfo *ci,
    const unsigned char id[20])
{
	char hex[41], *err = NULL, *target = NULL;
	uint64_t size;
	int rc;

	int fd = store_open_blob(c->w->store, ci->sha256, &size, &err);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT) {
			free(err);
			left_out_add(c, path, id, "missing from the store");
			return 0;
		}
		hex_encode(id, 20, hex);
		note(c, err);
		return fail(c, "cannot read '%s' (swh:1:cnt:%s) from the store: %s", rel(c, path),
		    hex, strerror(e));
	}
	if (size != (uint64_t)ci->length) {
		close(fd);
		hex_encode(id, 20, hex);
		return fail(c,
		    "the stored bytes of '%s' (swh:1:cnt:%s) do not match its length "
		    "(%llu bytes stored, %lld recorded)",
		    rel(c, path), hex, (unsigned long long)size, (long long)ci->length);
	}
	if (mode == GIT_MODE_LINK) {
		if (size > COOK_MAX_LINK) {
			close(fd);
			return fail(c, "symlink '%s' has a target longer than %d bytes",
			    rel(c, path), COOK_MAX_LINK);
		}
		rc = read_link(c, fd, path, (size_t)size, &target);
		close(fd);
		if (rc != 0)
			return -1;
		rc = tarball_add_symlink(c->tb, path->data, target, &err);
		free(target);
	} else {
		rc = tarball_add_file_fd(c->tb, path->data, mode == GIT_MODE_EXEC, size, fd, &err);
		close(fd);
	}
	if (rc != 0) {
		if (c->cancelled) {
			free(err);
			return -1;
		}
		/* The tarball's message names the path with the top folder; the sink's
		 * (size limit, disk full) are already sentences. */
		fail(c, "%s", err);
		free(err);
		return -1;
	}
	return 0;
}

/* Passes 2 and 3: the tree in git order, depth first, each directory before its
 * children. path holds the directory's archive name and is restored on return. */
static int
walk(struct cook *c, size_t di, struct buf *path, int depth)
{
	const struct dirinfo *d = &c->dinfo[di];
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len;
	const unsigned char *id;
	char hex[41], *err = NULL;
	int r;

	if (depth > COOK_MAX_DEPTH)
		return fail(
		    c, "the tree is deeper than %d levels at '%s'", COOK_MAX_DEPTH, rel(c, path));
	size_t base = path->len;
	tree_iter_init(&it, d->raw, d->len);
	while ((r = tree_iter_next(&it, &mode, &name, &name_len, &id)) == 1) {
		path->len = base;
		buf_addc(path, '/');
		buf_add(path, name, name_len);
		hex_encode(id, 20, hex);

		if (mode == GIT_MODE_DIR) {
			long ci = idtab_find(&c->dirs, id);
			if (ci < 0 || !c->dinfo[ci].loaded)
				return fail(c,
				    "directory '%s' (swh:1:dir:%s) is missing from the archive",
				    rel(c, path), hex);
			if (c->writing && tarball_add_dir(c->tb, path->data, &err) != 0)
				goto tar_failed;
			if (walk(c, (size_t)ci, path, depth + 1) != 0)
				return -1;
		} else if (mode == GIT_MODE_GITLINK) {
			/* A submodule: an empty directory, as Software Heritage does. */
			if (c->writing && tarball_add_dir(c->tb, path->data, &err) != 0)
				goto tar_failed;
		} else if (mode == GIT_MODE_FILE || mode == GIT_MODE_EXEC ||
		    mode == GIT_MODE_LINK) {
			long ci = idtab_find(&c->cnts, id);
			if (ci < 0 || !c->cinfo[ci].loaded) {
				/* No row: left out, named in the manifest. */
				if (c->writing)
					left_out_add(c, path, id, "not in the archive");
				continue;
			}
			if (!c->writing) {
				c->files_total++;
				continue;
			}
			if (write_blob(c, path, mode, &c->cinfo[ci], id) != 0)
				return -1;
			c->files_done++;
			if (!job_progress(c->run, "Cooking: %lld/%lld files",
				(long long)c->files_done, (long long)c->files_total)) {
				c->cancelled = true;
				return -1;
			}
		} else {
			return fail(c, "'%s' has an unsupported mode %o", rel(c, path), mode);
		}
	}
	path->len = base;
	path->data[base] = '\0';
	if (r < 0)
		return fail(c, "directory '%s' is corrupt in the archive", rel(c, path));
	return 0;

tar_failed:
	fail(c, "%s", err);
	free(err);
	return -1;
}

/* tarball's tick: keeps the lease during long files. */
static int
tick(void *arg, char **errstr)
{
	struct cook *c = arg;
	if (job_keepalive(c->run))
		return 0;
	c->cancelled = true;
	*errstr = xstrdup("cancelled");
	return -1;
}

/* Compressed bytes into the store writer, within the size cap. Called in order, never
 * concurrently: from pgzip for a tar.gz, from the zip writer on the job's thread. */
static int
sink(void *arg, const void *data, size_t len, char **errstr)
{
	struct cook *c = arg;
	char *err = NULL;

	if (store_writer_size(c->sw) + len > (uint64_t)c->max_size) {
		*errstr = xasprintf("bundle exceeds the size limit of %lld bytes (max_bundle_size)",
		    (long long)c->max_size);
		return -1;
	}
	if (store_writer_write(c->sw, data, len, &err) != 0) {
		int e = errno;
		note(c, err);
		*errstr = xasprintf("cannot write the bundle to the store: %s", store_words(e));
		return -1;
	}
	return 0;
}

/* Compression threads: both cores (DESIGN §8), more where there are more. */
static int
gzip_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 2)
		return 2;
	return n > 8 ? 8 : (int)n;
}

/* Pass 3 and the store: the bundle's sha256 and size, or -1 with c->reason. */
static int
write_bundle(struct cook *c, unsigned char sha256[32], uint64_t *size)
{
	struct buf path;
	char *err = NULL;
	int rc = -1;

	c->sw = store_writer_new(c->w->store, &err);
	if (c->sw == NULL) {
		int e = errno;
		note(c, err);
		return fail(c, "cannot write the bundle to the store: %s", store_words(e));
	}
	/* zip: zlib's deflate on this thread; gzip_level is read on zlib's 1..9 scale. */
	if (c->zip)
		c->tb = tarball_new_zip((int)c->w->cfg->gzip_level, sink, c, &err);
	else
		c->tb = tarball_new((int)c->w->cfg->gzip_level, gzip_threads(), sink, c, &err);
	if (c->tb == NULL) {
		fail(c, "%s", err);
		free(err);
		goto out;
	}
	tarball_set_tick(c->tb, tick, c);
	if (!job_phase(c->run, "Cooking: 0/%lld files", (long long)c->files_total)) {
		c->cancelled = true;
		goto out;
	}

	buf_init(&path);
	buf_adds(&path, c->top);
	c->writing = true;
	if (tarball_add_dir(c->tb, path.data, &err) != 0) {
		fail(c, "%s", err);
		free(err);
	} else if (walk(c, 0, &path, 0) == 0) {
		if (add_manifest(c, &err) != 0 || tarball_finish(c->tb, &err) != 0) {
			fail(c, "%s", err);
			free(err);
		} else {
			rc = 0;
		}
	}
	buf_free(&path);
	if (rc != 0)
		goto out;

	if (!job_phase(c->run, "Storing the bundle")) {
		c->cancelled = true;
		rc = -1;
		goto out;
	}
	*size = store_writer_size(c->sw);
	/* Frees the writer, success or not. */
	rc = store_writer_commit(c->sw, sha256, NULL, &err);
	c->sw = NULL;
	if (rc != 0) {
		int e = errno;
		note(c, err);
		fail(c, "cannot store the bundle: %s", store_words(e));
	}
out:
	tarball_free(c->tb);
	c->tb = NULL;
	store_writer_abort(c->sw);
	c->sw = NULL;
	return rc;
}

/* A revision's root tree as read: found 1, 0 (not in the archive) or -1 (malformed). */
struct rev_tree {
	unsigned char tree[20];
	int found;
};

/* objects_get_raw's callback for one revision. */
static int
rev_tree_cb(void *arg, const unsigned char id[20], const unsigned char *raw, size_t len)
{
	struct rev_tree *r = arg;
	struct commit_info ci;

	(void)id;
	if (!gitobj_parse_commit(raw, len, &ci)) {
		r->found = -1;
		return 0;
	}
	memcpy(r->tree, ci.tree, 20);
	r->found = 1;
	commit_info_clear(&ci);
	return 0;
}

/* The root tree of a revision, into root. 0, or -1 with c->reason. */
static int
revision_root(struct cook *c, const unsigned char rev[20], unsigned char root[20])
{
	struct rev_tree r = {{0}, 0};
	char *err = NULL, hex[41];

	hex_encode(rev, 20, hex);
	if (objects_get_raw(c->w->db, SWHID_REV, (const unsigned char(*)[20])rev, 1, rev_tree_cb,
		&r, &err) != 0) {
		note(c, err);
		c->db_failed = true;
		return fail(c, "the archive database failed while reading revision %s", hex);
	}
	if (r.found == 0)
		return fail(c, "revision swh:1:rev:%s is not in the archive", hex);
	if (r.found < 0)
		return fail(c, "revision swh:1:rev:%s is malformed", hex);
	memcpy(root, r.tree, 20);
	return 0;
}

/* Reads and checks the job's parameters: *kind and id, the format in c (zip) or *git
 * ("gitfast", "git-bare" for the git cookers). */
static int
parse_params(struct cook *c, const json_t *params, enum swhid_kind *kind, unsigned char id[20],
    const char **git)
{
	const char *k = json_string_value(json_object_get(params, "object_kind"));
	const char *hex = json_string_value(json_object_get(params, "object_id"));
	const char *format = json_string_value(json_object_get(params, "format"));

	*git = NULL;
	if (k == NULL || hex == NULL)
		return fail(c, "bad job parameters: object_kind and object_id are required");
	if (strcmp(k, "directory") == 0)
		*kind = SWHID_DIR;
	else if (strcmp(k, "revision") == 0)
		*kind = SWHID_REV;
	else if (strcmp(k, "snapshot") == 0)
		*kind = SWHID_SNP;
	else
		return fail(c, "cannot cook a %s: kinds: directory, revision, snapshot", k);
	if (!hex_decode(hex, id, 20))
		return fail(c, "bad job parameters: object_id must be 40 hex digits");
	if (format == NULL || strcmp(format, "tar.gz") == 0)
		c->zip = false;
	else if (strcmp(format, "zip") == 0)
		c->zip = true;
	else if (strcmp(format, "gitfast") == 0 && *kind == SWHID_REV)
		*git = "gitfast";
	else if (strcmp(format, "git-bare") == 0)
		*git = "git-bare";
	else
		return fail(c, "a %s cannot be cooked as '%s'", k, format);
	if (*git == NULL && *kind == SWHID_SNP)
		return fail(c, "a snapshot can only be cooked as git-bare");
	swhid_format(*kind, id, c->top);
	return 0;
}

/* The "cook" handler: load, plan, write (see the top of the file). */
enum job_outcome
cook_run(struct job_run *run, json_t **result, char **reason)
{
	struct cook c = {.run = run, .w = run->w};
	unsigned char root[20], id[20], sha256[32];
	uint64_t size = 0;
	char *err = NULL, hex[65];
	enum job_outcome outcome = JOB_OUTCOME_FAILED;
	enum swhid_kind kind = SWHID_DIR;
	const char *git;
	struct buf path;

	idtab_init(&c.dirs);
	idtab_init(&c.cnts);
	c.max_size = run->w->cfg->max_bundle_size > 0 ? run->w->cfg->max_bundle_size : INT64_MAX;
	if (parse_params(&c, run->job->params, &kind, id, &git) != 0)
		goto out;
	if (git != NULL) {
		outcome = strcmp(git, "gitfast") == 0 ? gitfast_cook(run, id, result, reason)
						      : gitbare_cook(run, kind, id, result, reason);
		idtab_free(&c.dirs);
		idtab_free(&c.cnts);
		return outcome;
	}
	/* A revision as tar.gz or zip is its root tree, under a folder named after it. */
	memcpy(root, id, 20);
	if (kind == SWHID_REV && revision_root(&c, id, root) != 0) {
		if (c.db_failed && worker_db_transient(c.w)) {
			free(c.reason);
			c.reason = NULL;
			*reason = xstrdup(
			    "the archive database was unavailable while reading the revision");
			outcome = JOB_OUTCOME_RETRY;
		}
		goto out;
	}

	if (!job_phase(run, "Listing directories")) {
		outcome = JOB_OUTCOME_CANCELLED;
		goto out;
	}
	if (load(&c, root, &err) != 0) {
		note(&c, err);
		if (worker_db_transient(c.w)) {
			/* Postgres failed us: not the job's fault, and it may come back. */
			*reason = xstrdup("the archive database was unavailable while reading "
					  "the directory");
			outcome = JOB_OUTCOME_RETRY;
		} else {
			/* A query error another attempt would hit again. */
			fail(&c, "the archive database could not read the directory (error %s)",
			    db_last_sqlstate(c.w->db));
		}
		goto out;
	}
	if (c.cancelled) {
		outcome = JOB_OUTCOME_CANCELLED;
		goto out;
	}
	if (!c.dinfo[0].loaded) {
		if (kind == SWHID_REV)
			fail(&c, "the tree of %s is not in the archive", c.top);
		else
			fail(&c, "directory %s is not in the archive", c.top);
		goto out;
	}

	buf_init(&path);
	buf_adds(&path, c.top);
	int rc = walk(&c, 0, &path, 0);
	buf_free(&path);
	if (rc != 0)
		goto out;
	log_info_id(run->log_id, "%s: %zu directories, %lld files", c.top, c.dirs.n,
	    (long long)c.files_total);

	if (write_bundle(&c, sha256, &size) != 0) {
		if (c.cancelled)
			outcome = JOB_OUTCOME_CANCELLED;
		goto out;
	}
	hex_encode(sha256, 32, hex);
	*result = json_pack("{s:s, s:I}", "bundle_sha256", hex, "bundle_size", (json_int_t)size);
	if (c.left_out != NULL) {
		size_t n = json_array_size(c.left_out);
		json_object_set_new(*result, "left_out", json_integer((json_int_t)n));
		log_warn_id(run->log_id, "%s: %zu file%s left out of the bundle (see %s%s)", c.top,
		    n, n == 1 ? "" : "s", c.top, TARBALL_MANIFEST_SUFFIX);
	}
	outcome = JOB_OUTCOME_DONE;
out:
	if (outcome == JOB_OUTCOME_FAILED)
		*reason = c.reason ? c.reason : xstrdup("cooking failed");
	else
		free(c.reason);
	for (size_t i = 0; i < c.dirs.n && i < c.dcap; i++)
		free(c.dinfo[i].raw);
	json_decref(c.left_out);
	free(c.dinfo);
	free(c.cinfo);
	idtab_free(&c.dirs);
	idtab_free(&c.cnts);
	return outcome;
}
