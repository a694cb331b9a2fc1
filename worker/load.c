/* load.c: the "load" job: a git repository read with libgit2 becomes contents, directories,
 * revisions, releases and a snapshot of its branches in the archive.
 *
 * Two phases:
 *   1. fetch, in a forked child process: every branch and tag (or only the asked ref) into
 *      a bare repository under <data_dir>/tmp, removed on every exit path. libgit2 1.5 has
 *      no network timeout and calls nothing back while a connect or a read blocks, so the
 *      network part runs where it can be killed: the child uses libgit2 and a pipe only
 *      (never this process's Postgres, Redis or curl handles) and ends with _exit; the
 *      parent relays its progress and SIGKILLs it on load_timeout, cancellation or a
 *      worker stop. libgit2's memory for the fetch (pack indexing) dies with the child;
 *   2. store, in the worker: objects in dependency order, so that a stored row always
 *      stands for its whole closure (db/migrations/0003_git.sql) and a later load may skip
 *      it: commits parents first (topological walk), each commit after its tree, each tree
 *      after its entries, tags after their targets, the snapshot last. Pending rows are
 *      flushed in the same order (contents, directories, revisions, releases). Ids found
 *      stored are not walked into: a stored commit hides its ancestors, a stored tree its
 *      entries.
 * Blobs are read one at a time (after a size check), streamed into the store and freed.
 * Every id libgit2 gives is checked against gitobj_hash of the raw body. Failure reasons
 * are readable and carry the URL, which never holds a user name, password, query or
 * fragment: the API refuses them, and so does the worker.
 *
 * This file: the job handler, phase 2 and the helpers both halves share (worker/load.h);
 * phase 1 is worker/load_fetch.c. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <git2.h>

#include "shared/gitobj.h"
#include "shared/loadurl.h"
#include "shared/log.h"
#include "shared/objects.h"
#include "worker/idtab.h"
#include "worker/load.h"
#include "worker/worker.h"

/* Rows held before one insert; also the ids per objects_present call. */
#define LOAD_BATCH 1000
/* Raw bytes of pending directories/revisions before a flush. */
#define LOAD_FLUSH_BYTES (8u << 20)
/* Deeper trees are refused rather than risking the stack. */
#define LOAD_MAX_DEPTH 1024
/* The longest chain of tags a cook follows (worker/gitgraph.c, GRAPH_MAX_TAG_DEPTH): a
 * ref behind a longer one is left out of the snapshot, which could not be cooked. */
#define LOAD_MAX_TAG_DEPTH 32
/* How often the temp folder's time is renewed: a starting worker removes the ones an
 * hour old (worker/main.c), which must never be a live load's. */
#define LOAD_TOUCH_MS (5 * 60 * 1000)

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

/* libgit2 keeps global state (TLS, caches): set up once per process, never torn down.
 * The fetch child inherits it. */
static void
git_setup(void)
{
	git_libgit2_init();
}

/* Sets the user-facing failure reason (the first wins); returns -1. */
int BV_PRINTF(2, 3) load_fail(struct load *l, const char *fmt, ...)
{
	va_list ap;

	if (l->reason == NULL) {
		va_start(ap, fmt);
		l->reason = xvasprintf(fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A Postgres failure: the text goes to the log as the run's detail. Returns -1. */
static int
db_fail(struct load *l, const char *what, char *err)
{
	if (l->run->detail == NULL)
		l->run->detail = err;
	else
		free(err);
	l->db_failed = true;
	return load_fail(l, "the archive database failed while %s", what);
}

/* libgit2's last error message, or a generic one. */
const char *
load_git_words(void)
{
	const git_error *e = git_error_last();
	return e != NULL && e->message != NULL ? e->message : "unknown libgit2 error";
}

/* n with thousands separators ("1,234,567"); out holds at least 32 bytes. */
const char *
load_commas(int64_t n, char *out)
{
	char digits[24];
	int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? 0 : n));
	int o = 0;

	for (int i = 0; i < len; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	out[o] = '\0';
	return out;
}

/* s with every byte that is not printable ASCII, and the backslash, written \xNN: a
 * lossless, valid UTF-8 rendering of a ref name. Cut after max bytes of s ("..."). */
char *
load_escape_name(const char *s, size_t max)
{
	struct buf b;
	size_t i;

	buf_init(&b);
	for (i = 0; s[i] != '\0' && i < max; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			buf_addc(&b, (char)ch);
		else
			buf_printf(&b, "\\x%02x", ch);
	}
	if (s[i] != '\0')
		buf_adds(&b, "...");
	return buf_steal(&b, NULL);
}

/* Notes a ref left out, for the result (the first few by name, all counted). */
void
load_note_skipped(struct load *l, const char *escaped_name, const char *why)
{
	if (json_array_size(l->skipped_refs) < LOAD_SKIPPED_LISTED)
		json_array_append_new(
		    l->skipped_refs, json_pack("{s:s, s:s}", "name", escaped_name, "reason", why));
}

/* Renews the temp folder's mtime now and then: it tells a starting worker the folder is
 * in use. */
void
load_keep_fresh(struct load *l)
{
	uint64_t now = now_ms();

	if (l->tmpdir == NULL || now - l->touched_ms < LOAD_TOUCH_MS)
		return;
	l->touched_ms = now;
	if (utimensat(AT_FDCWD, l->tmpdir, NULL, 0) != 0)
		log_warn_id(l->run->log_id, "cannot touch %s: %s", l->tmpdir, strerror(errno));
}

/* Whether to go on: false (with the outcome noted) once the job is no longer ours, the
 * worker stops, or the load ran out of time. */
static bool
may_go_on(struct load *l)
{
	if (l->cancelled || l->stopped || l->reason != NULL)
		return false;
	if (worker_stop) {
		l->stopped = true;
		return false;
	}
	if (now_ms() > l->deadline_ms) {
		load_fail(l, "the load took longer than load_timeout (%lld s) while %s",
		    (long long)l->w->cfg->load_timeout, l->phase);
		return false;
	}
	return true;
}

/* One more object handled while storing: progress, limits. 0 or -1. */
static int
tick(struct load *l)
{
	char a[32], b[32];

	if (++l->seen > l->max_objects)
		return load_fail(l, "the repository has more than %lld objects (max_load_objects)",
		    (long long)l->max_objects);
	if (!may_go_on(l))
		return -1;
	if ((l->seen & 31) != 0)
		return 0;
	load_keep_fresh(l);
	if (!job_progress(l->run, "Loaded %s / ~%s objects", load_commas(l->seen, a),
		load_commas(l->fetched_total > l->seen ? l->fetched_total : l->seen, b))) {
		l->cancelled = true;
		return -1;
	}
	return 0;
}

/* nftw: removes one entry of the temporary repository. */
static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", path, strerror(errno));
	return 0;
}

/* Reads one object whole; checks its kind and that libgit2's id is the hash of the body.
 * NULL with the reason set. */
static git_odb_object *
read_object(struct load *l, const unsigned char id[20], git_object_t want)
{
	git_odb_object *o = NULL;
	git_oid oid;
	unsigned char h[20];
	char hex[41];

	memcpy(oid.id, id, 20);
	hex_encode(id, 20, hex);
	if (git_odb_read(&o, l->odb, &oid) != 0) {
		load_fail(l, "object %s is missing from the fetched repository: %s", hex,
		    load_git_words());
		return NULL;
	}
	if (git_odb_object_type(o) != want) {
		load_fail(l, "object %s is a %s where a %s was expected", hex,
		    git_object_type2string(git_odb_object_type(o)), git_object_type2string(want));
		git_odb_object_free(o);
		return NULL;
	}
	gitobj_hash(
	    git_object_type2string(want), git_odb_object_data(o), git_odb_object_size(o), h);
	if (memcmp(h, id, 20) != 0) {
		load_fail(l, "object %s does not hash to its id", hex);
		git_odb_object_free(o);
		return NULL;
	}
	return o;
}

/* Inserts the pending rows of every kind up to and including `upto` (0 contents,
 * 1 directories, 2 revisions, 3 releases), in dependency order. 0 or -1. */
static int
flush(struct load *l, int upto)
{
	struct pending *p = &l->p;
	char *err = NULL;

	if (p->ncnt > 0) {
		/* The blobs are refreshed just before their rows commit (docs/operations.md):
		 * a collection running meanwhile either sees them young or has taken one, and
		 * then the rows must not be written. */
		unsigned char(*sha)[32] = xcalloc(p->ncnt, 32);
		size_t bad = 0;
		for (size_t i = 0; i < p->ncnt; i++)
			memcpy(sha[i], p->cnt[i].sha256, 32);
		int trc = store_touch_all(
		    l->w->store, (const unsigned char(*)[32])sha, p->ncnt, &bad, &err);
		int e = errno;
		free(sha);
		if (trc != 0 && e != ENOTSUP) {
			if (l->run->detail == NULL)
				l->run->detail = err;
			else
				free(err);
			return load_fail(l,
			    "a file stored by this load was collected before its record was "
			    "written; load again");
		}
		free(err);
		err = NULL;
		if (objects_put_contents(l->w->db, p->cnt, p->ncnt, &err) != 0)
			return db_fail(l, "storing contents", err);
		p->ncnt = 0;
	}
	if (upto >= 1 && p->ndir > 0) {
		int rc = objects_put_directories(l->w->db, p->dir, p->ndir, &err);
		for (size_t i = 0; i < p->ndir; i++)
			free((void *)p->dir[i].raw);
		p->ndir = 0;
		p->dir_bytes = 0;
		if (rc != 0)
			return db_fail(l, "storing directories", err);
	}
	if (upto >= 2 && p->nrev > 0) {
		int rc = objects_put_revisions(l->w->db, p->rev, p->nrev, &err);
		for (size_t i = 0; i < p->nrev; i++) {
			free((void *)p->rev[i].raw);
			free((void *)p->rev[i].parents);
		}
		p->nrev = 0;
		p->rev_bytes = 0;
		if (rc != 0)
			return db_fail(l, "storing revisions", err);
	}
	if (upto >= 3 && p->nrel > 0) {
		int rc = objects_put_releases(l->w->db, p->rel, p->nrel, &err);
		for (size_t i = 0; i < p->nrel; i++)
			free((void *)p->rel[i].raw);
		p->nrel = 0;
		if (rc != 0)
			return db_fail(l, "storing releases", err);
	}
	return 0;
}

/* Marks which ids (of kind) are stored: each found one becomes known and counts as
 * skipped. present[i] is set for them. 0 or -1. */
static int
check_present(
    struct load *l, enum swhid_kind kind, const unsigned char (*ids)[20], size_t n, bool *present)
{
	char *err = NULL;
	bool added;

	if (n == 0)
		return 0;
	if (objects_present(l->w->db, kind, ids, n, present, &err) != 0)
		return db_fail(l, "looking up stored objects", err);
	for (size_t i = 0; i < n; i++)
		if (present[i]) {
			idtab_put(&l->known, ids[i], &added);
			if (added)
				l->skipped++;
		}
	return 0;
}

/* Reads a blob (no larger than max_load_blob), streams it into the store and queues its
 * contents row. 0 or -1. */
static int
store_blob(struct load *l, const unsigned char id[20])
{
	git_odb_object *o;
	struct store_writer *sw;
	struct content_row *row;
	char *err = NULL, hex[41];
	bool added;
	size_t len;
	git_object_t type;
	git_oid oid;
	int rc, e;

	if (tick(l) != 0)
		return -1;
	/* The body is read whole: its size first. */
	memcpy(oid.id, id, 20);
	if (git_odb_read_header(&len, &type, l->odb, &oid) == 0 && len > (uint64_t)l->max_blob) {
		hex_encode(id, 20, hex);
		return load_fail(l,
		    "file swh:1:cnt:%s is %zu bytes, more than max_load_blob (%lld bytes) allows",
		    hex, len, (long long)l->max_blob);
	}
	if ((o = read_object(l, id, GIT_OBJECT_BLOB)) == NULL)
		return -1;
	len = git_odb_object_size(o);
	errno = 0;
	if ((sw = store_writer_new(l->w->store, &err)) == NULL) {
		e = errno; /* before anything else may change it */
		git_odb_object_free(o);
		free(l->run->detail);
		l->run->detail = err;
		return load_fail(l, "the store could not take a file: %s",
		    e != 0 ? strerror(e) : "input/output error");
	}
	GROW(l->p.cnt, l->p.ncnt, l->p.ccnt);
	row = &l->p.cnt[l->p.ncnt];
	errno = 0;
	rc = store_writer_write(sw, git_odb_object_data(o), len, &err);
	e = errno;
	git_odb_object_free(o);
	if (rc != 0) {
		store_writer_abort(sw);
	} else {
		errno = 0;
		rc = store_writer_commit(sw, row->sha256, row->sha1, &err);
		e = errno;
	}
	if (rc != 0) {
		bool full = e == ENOSPC || (err != NULL && strstr(err, "no space left") != NULL);
		free(l->run->detail);
		l->run->detail = err;
		return load_fail(l, "the store could not write a file: %s",
		    full ? "no space left on device" : "input/output error");
	}
	memcpy(row->sha1_git, id, 20);
	row->length = (int64_t)len;
	l->p.ncnt++;
	l->n_cnt++;
	l->bytes += (int64_t)len;
	idtab_put(&l->known, id, &added);
	if (l->p.ncnt >= LOAD_BATCH)
		return flush(l, 0);
	return 0;
}

/* Stores a tree and whatever of it is not stored yet (entries first). 0 or -1. */
static int
store_tree(struct load *l, const unsigned char id[20], int depth)
{
	git_odb_object *o;
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len, nd = 0, nb = 0, n = 0;
	const unsigned char *eid;
	unsigned char(*dids)[20] = NULL, (*bids)[20] = NULL;
	bool *present = NULL, added;
	int rc = -1, r;
	char hex[41];

	if (depth > LOAD_MAX_DEPTH)
		return load_fail(l, "a tree is nested deeper than %d levels", LOAD_MAX_DEPTH);
	if (tick(l) != 0 || (o = read_object(l, id, GIT_OBJECT_TREE)) == NULL)
		return -1;
	const unsigned char *raw = git_odb_object_data(o);
	size_t raw_len = git_odb_object_size(o);

	/* The entries not known yet, by kind; a gitlink (submodule) references nothing. */
	tree_iter_init(&it, raw, raw_len);
	while ((r = tree_iter_next(&it, &mode, &name, &name_len, &eid)) == 1)
		n++;
	if (r < 0) {
		hex_encode(id, 20, hex);
		load_fail(l, "tree %s is malformed", hex);
		goto out;
	}
	dids = xmalloc((n + 1) * sizeof *dids);
	bids = xmalloc((n + 1) * sizeof *bids);
	present = xmalloc((n + 1) * sizeof *present);
	tree_iter_init(&it, raw, raw_len);
	while (tree_iter_next(&it, &mode, &name, &name_len, &eid) == 1) {
		if (idtab_find(&l->known, eid) >= 0)
			continue;
		if ((mode & 0170000) == GIT_MODE_DIR)
			memcpy(dids[nd++], eid, 20);
		else if ((mode & 0170000) == 0100000 || (mode & 0170000) == GIT_MODE_LINK)
			memcpy(bids[nb++], eid, 20);
	}
	if (check_present(l, SWHID_CNT, (const unsigned char(*)[20])bids, nb, present) != 0)
		goto out;
	for (size_t i = 0; i < nb; i++)
		if (!present[i] && idtab_find(&l->known, bids[i]) < 0 &&
		    store_blob(l, bids[i]) != 0)
			goto out;
	if (check_present(l, SWHID_DIR, (const unsigned char(*)[20])dids, nd, present) != 0)
		goto out;
	for (size_t i = 0; i < nd; i++)
		if (!present[i] && idtab_find(&l->known, dids[i]) < 0 &&
		    store_tree(l, dids[i], depth + 1) != 0)
			goto out;

	GROW(l->p.dir, l->p.ndir, l->p.cdir);
	struct directory_row *row = &l->p.dir[l->p.ndir++];
	memcpy(row->id, id, 20);
	row->raw = xmalloc(raw_len + 1);
	memcpy((void *)row->raw, raw, raw_len);
	row->raw_len = raw_len;
	l->p.dir_bytes += raw_len;
	l->n_dir++;
	idtab_put(&l->known, id, &added);
	rc = 0;
	if (l->p.ndir >= LOAD_BATCH || l->p.dir_bytes >= LOAD_FLUSH_BYTES)
		rc = flush(l, 1);
out:
	git_odb_object_free(o);
	free(dids);
	free(bids);
	free(present);
	return rc;
}

/* A tree, or a blob, unless it is known or stored already. 0 or -1. */
static int
ensure(struct load *l, const unsigned char id[20], enum swhid_kind kind)
{
	bool present = false;

	if (idtab_find(&l->known, id) >= 0)
		return 0;
	if (check_present(l, kind, (const unsigned char(*)[20])id, 1, &present) != 0)
		return -1;
	if (present)
		return 0;
	return kind == SWHID_DIR ? store_tree(l, id, 0) : store_blob(l, id);
}

/* Stores the commits of ids[0..n) (parents first) that are not stored yet. 0 or -1. */
static int
store_commits(struct load *l, const unsigned char (*ids)[20], size_t n)
{
	bool *present = xmalloc(n * sizeof *present);
	int rc = -1;

	if (check_present(l, SWHID_REV, ids, n, present) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		git_odb_object *o;
		struct commit_info ci;
		bool added;
		char hex[41];

		if (present[i] || idtab_find(&l->known, ids[i]) >= 0)
			continue;
		if (tick(l) != 0 || (o = read_object(l, ids[i], GIT_OBJECT_COMMIT)) == NULL)
			goto out;
		const unsigned char *raw = git_odb_object_data(o);
		size_t len = git_odb_object_size(o);
		if (!gitobj_parse_commit(raw, len, &ci)) {
			hex_encode(ids[i], 20, hex);
			git_odb_object_free(o);
			load_fail(l, "commit %s is malformed", hex);
			goto out;
		}
		if (ensure(l, ci.tree, SWHID_DIR) != 0) {
			commit_info_clear(&ci);
			git_odb_object_free(o);
			goto out;
		}
		GROW(l->p.rev, l->p.nrev, l->p.crev);
		struct revision_row *row = &l->p.rev[l->p.nrev++];
		memcpy(row->id, ids[i], 20);
		memcpy(row->directory, ci.tree, 20);
		row->parents = (const unsigned char(*)[20])ci.parents; /* flush frees it */
		row->n_parents = ci.n_parents;
		ci.parents = NULL;
		ci.n_parents = 0;
		commit_info_clear(&ci);
		row->raw = xmalloc(len + 1);
		memcpy((void *)row->raw, raw, len);
		row->raw_len = len;
		l->p.rev_bytes += len;
		git_odb_object_free(o);
		l->n_rev++;
		idtab_put(&l->known, ids[i], &added);
		if ((l->p.nrev >= LOAD_BATCH || l->p.rev_bytes >= LOAD_FLUSH_BYTES) &&
		    flush(l, 2) != 0)
			goto out;
	}
	rc = 0;
out:
	free(present);
	return rc;
}

/* Stores an annotated tag after its target (a tag of a tag: the inner one first). Commits
 * are stored by then (every tag's commit was walked). 0 or -1. */
static int
store_tag(struct load *l, const unsigned char id[20], int depth)
{
	git_odb_object *o;
	unsigned char target[20];
	enum swhid_kind kind;
	const char *name;
	size_t name_len, len;
	bool present = false, added;
	char hex[41];

	if (depth >= LOAD_MAX_TAG_DEPTH)
		return load_fail(l, "a chain of tags is longer than %d", LOAD_MAX_TAG_DEPTH);
	if (idtab_find(&l->known, id) >= 0)
		return 0;
	if (check_present(l, SWHID_REL, (const unsigned char(*)[20])id, 1, &present) != 0)
		return -1;
	if (present)
		return 0;
	if (tick(l) != 0 || (o = read_object(l, id, GIT_OBJECT_TAG)) == NULL)
		return -1;
	const unsigned char *raw = git_odb_object_data(o);
	len = git_odb_object_size(o);
	if (!gitobj_parse_tag(raw, len, target, &kind, &name, &name_len)) {
		hex_encode(id, 20, hex);
		git_odb_object_free(o);
		return load_fail(l, "tag %s is malformed", hex);
	}
	int rc = kind == SWHID_REL ? store_tag(l, target, depth + 1)
	    : kind == SWHID_DIR    ? ensure(l, target, SWHID_DIR)
	    : kind == SWHID_CNT    ? ensure(l, target, SWHID_CNT)
				   : 0;
	if (rc != 0) {
		git_odb_object_free(o);
		return -1;
	}
	GROW(l->p.rel, l->p.nrel, l->p.crel);
	struct release_row *row = &l->p.rel[l->p.nrel++];
	unsigned char *copy = xmalloc(len + 1);
	memcpy(copy, raw, len);
	memcpy(row->id, id, 20);
	memcpy(row->target, target, 20);
	row->target_kind = kind;
	row->name = copy + ((const unsigned char *)name - raw);
	row->name_len = name_len;
	row->raw = copy;
	row->raw_len = len;
	git_odb_object_free(o);
	l->n_rel++;
	idtab_put(&l->known, id, &added);
	if (l->p.nrel >= LOAD_BATCH)
		return flush(l, 3);
	return 0;
}

/* The kinds of the fetched refs' objects: each must be in the fetched repository. 0 or
 * -1. */
static int
ref_types(struct load *l)
{
	for (size_t i = 0; i < l->nrefs; i++) {
		git_oid oid;
		size_t len;
		char hex[41];

		memcpy(oid.id, l->refs[i].id, 20);
		if (git_odb_read_header(&len, &l->refs[i].type, l->odb, &oid) != 0) {
			hex_encode(l->refs[i].id, 20, hex);
			return load_fail(l, "ref %s points to %s, which the fetch did not bring",
			    l->refs[i].name, hex);
		}
	}
	return 0;
}

/* Follows a chain of tags to the object at its end (id and kind). 0, 1 when the chain is
 * longer than LOAD_MAX_TAG_DEPTH (a cook could not follow it), or -1. */
static int
peel(struct load *l, const unsigned char id[20], unsigned char out[20], git_object_t *type)
{
	git_object_t t = GIT_OBJECT_TAG;

	memcpy(out, id, 20);
	for (int depth = 0; t == GIT_OBJECT_TAG; depth++) {
		git_odb_object *o;
		enum swhid_kind kind;
		const char *name;
		size_t name_len;
		unsigned char target[20];
		char hex[41];

		if (depth >= LOAD_MAX_TAG_DEPTH)
			return 1;
		if ((o = read_object(l, out, GIT_OBJECT_TAG)) == NULL)
			return -1;
		bool ok = gitobj_parse_tag(git_odb_object_data(o), git_odb_object_size(o), target,
		    &kind, &name, &name_len);
		git_odb_object_free(o);
		if (!ok) {
			hex_encode(out, 20, hex);
			return load_fail(l, "tag %s is malformed", hex);
		}
		memcpy(out, target, 20);
		t = kind == SWHID_REL   ? GIT_OBJECT_TAG
		    : kind == SWHID_REV ? GIT_OBJECT_COMMIT
		    : kind == SWHID_DIR ? GIT_OBJECT_TREE
					: GIT_OBJECT_BLOB;
	}
	*type = t;
	return 0;
}

/* Phase 2a: every commit reachable from the refs, parents first, then whatever trees and
 * blobs tags point at directly. Stored tips hide their ancestors from the walk. A ref
 * behind too many tags is left out (noted), or fails a load of that one ref. 0 or -1. */
static int
store_history(struct load *l)
{
	git_revwalk *walk = NULL;
	unsigned char(*tips)[20] = xmalloc((l->nrefs + 1) * sizeof *tips);
	unsigned char(*ids)[20] = xmalloc(LOAD_BATCH * sizeof *ids);
	bool *present = xmalloc((l->nrefs + 1) * sizeof *present);
	size_t ntips = 0, n = 0;
	git_oid oid;
	int rc = -1, err;

	if (git_revwalk_new(&walk, l->repo) != 0) {
		load_fail(l, "cannot walk the history: %s", load_git_words());
		goto out;
	}
	git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
	for (size_t i = 0; i < l->nrefs; i++) {
		unsigned char end[20];
		git_object_t t = l->refs[i].type;

		memcpy(end, l->refs[i].id, 20);
		if (t == GIT_OBJECT_TAG && (err = peel(l, l->refs[i].id, end, &t)) != 0) {
			if (err < 0)
				goto out;
			char *esc = load_escape_name(l->refs[i].name, 200);
			if (l->ref != NULL) {
				load_fail(l,
				    "ref %s is a chain of more than %d tags, which cannot be "
				    "cooked",
				    esc, LOAD_MAX_TAG_DEPTH);
				free(esc);
				goto out;
			}
			load_note_skipped(l, esc, "a chain of more than 32 tags");
			free(esc);
			l->n_skipped_refs++;
			l->refs[i].skip = true;
			continue;
		}
		if (t == GIT_OBJECT_COMMIT)
			memcpy(tips[ntips++], end, 20);
		else if ((t == GIT_OBJECT_TREE && ensure(l, end, SWHID_DIR) != 0) ||
		    (t == GIT_OBJECT_BLOB && ensure(l, end, SWHID_CNT) != 0))
			goto out;
	}
	if (check_present(l, SWHID_REV, (const unsigned char(*)[20])tips, ntips, present) != 0)
		goto out;
	for (size_t i = 0; i < ntips; i++) {
		memcpy(oid.id, tips[i], 20);
		err = present[i] ? git_revwalk_hide(walk, &oid) : git_revwalk_push(walk, &oid);
		if (err != 0) {
			load_fail(l, "cannot walk the history: %s", load_git_words());
			goto out;
		}
	}
	while ((err = git_revwalk_next(&oid, walk)) == 0) {
		memcpy(ids[n++], oid.id, 20);
		if (n == LOAD_BATCH) {
			if (store_commits(l, (const unsigned char(*)[20])ids, n) != 0)
				goto out;
			n = 0;
		}
	}
	if (err != GIT_ITEROVER) {
		load_fail(l, "cannot walk the history: %s", load_git_words());
		goto out;
	}
	if (store_commits(l, (const unsigned char(*)[20])ids, n) != 0)
		goto out;
	rc = 0;
out:
	git_revwalk_free(walk);
	free(tips);
	free(ids);
	free(present);
	return rc;
}

/* The snapshot kind of a ref's object. */
static enum snp_target
ref_target(git_object_t t)
{
	switch (t) {
	case GIT_OBJECT_TAG:
		return SNP_RELEASE;
	case GIT_OBJECT_TREE:
		return SNP_DIRECTORY;
	case GIT_OBJECT_BLOB:
		return SNP_CONTENT;
	default:
		return SNP_REVISION;
	}
}

/* branches[name] = hex. A name that is not valid UTF-8 (git allows any bytes) is
 * written with \xNN escapes instead: no branch may drop out of the result. Git forbids
 * '\' in ref names, so an escaped key never equals a real one. */
static void
branch_set(json_t *branches, const char *name, const char *hex)
{
	if (json_object_set_new(branches, name, json_string(hex)) != 0) {
		char *esc = load_escape_name(name, SIZE_MAX);
		if (json_object_set_new(branches, esc, json_string(hex)) != 0)
			log_warn("branch %s left out of the result", esc); /* cannot happen */
		free(esc);
	}
}

/* Phase 2c: the snapshot of the refs (plus HEAD as an alias of the default branch when
 * that branch was loaded), and the result document. 0 or -1. */
static int
store_snapshot(struct load *l, json_t **result)
{
	struct snapshot_branch *b = xcalloc(l->nrefs + 1, sizeof *b);
	size_t n = 0, raw_len;
	unsigned char *raw = NULL, id[20];
	const struct ref *head = NULL;
	json_t *branches = json_object();
	char hex[41], *err = NULL;
	int rc = -1;

	for (size_t i = 0; i < l->nrefs; i++) {
		if (l->refs[i].skip)
			continue;
		b[n].name = (const unsigned char *)l->refs[i].name;
		b[n].name_len = strlen(l->refs[i].name);
		b[n].type = ref_target(l->refs[i].type);
		b[n].target = l->refs[i].id;
		b[n].target_len = 20;
		n++;
		hex_encode(l->refs[i].id, 20, hex);
		branch_set(branches, l->refs[i].name, hex);
		if (l->head != NULL && strcmp(l->head, l->refs[i].name) == 0)
			head = &l->refs[i];
	}
	if (head != NULL) {
		b[n].name = (const unsigned char *)"HEAD";
		b[n].name_len = 4;
		b[n].type = SNP_ALIAS;
		b[n].target = (const unsigned char *)head->name;
		b[n].target_len = strlen(head->name);
		n++;
		hex_encode(head->id, 20, hex);
		branch_set(branches, "HEAD", hex);
	}
	if (!gitobj_snapshot_manifest(b, n, &raw, &raw_len, id)) {
		load_fail(l, "the repository's refs do not make a valid snapshot");
		goto out;
	}
	if (flush(l, 3) != 0)
		goto out;
	if (objects_put_snapshot(l->w->db, id, raw, raw_len, &err) != 0) {
		db_fail(l, "storing the snapshot", err);
		goto out;
	}
	hex_encode(id, 20, hex);
	*result = json_pack("{s:s, s:O, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "snapshot", hex,
	    "branches", branches, "stats", "contents", (json_int_t)l->n_cnt, "directories",
	    (json_int_t)l->n_dir, "revisions", (json_int_t)l->n_rev, "releases",
	    (json_int_t)l->n_rel, "skipped", (json_int_t)l->skipped, "bytes", (json_int_t)l->bytes,
	    "skipped_refs", (json_int_t)l->n_skipped_refs);
	if (l->n_skipped_refs > 0)
		json_object_set(*result, "skipped_refs", l->skipped_refs);
	rc = 0;
out:
	json_decref(branches);
	free(raw);
	free(b);
	return rc;
}

/* Phase 2: everything the refs reach, then the snapshot. 0 or -1. */
static int
store_all(struct load *l, json_t **result)
{
	char a[32], b[32];

	l->phase = "storing objects";
	/* Said once at once: a small repository would otherwise show no count at all. */
	if (!job_phase(
		l->run, "Fetched %s objects; loading them", load_commas(l->fetched_total, a))) {
		l->cancelled = true;
		return -1;
	}
	if (ref_types(l) != 0 || store_history(l) != 0 || flush(l, 2) != 0)
		return -1;
	for (size_t i = 0; i < l->nrefs; i++)
		if (!l->refs[i].skip && l->refs[i].type == GIT_OBJECT_TAG &&
		    store_tag(l, l->refs[i].id, 0) != 0)
			return -1;
	if (store_snapshot(l, result) != 0)
		return -1;
	if (!job_phase(l->run, "Loaded %s / %s objects", load_commas(l->seen, a),
		load_commas(l->seen, b))) {
		json_decref(*result);
		*result = NULL;
		l->cancelled = true;
		return -1;
	}
	return 0;
}

/* Frees the pending rows that were never flushed. */
static void
pending_free(struct pending *p)
{
	for (size_t i = 0; i < p->ndir; i++)
		free((void *)p->dir[i].raw);
	for (size_t i = 0; i < p->nrev; i++) {
		free((void *)p->rev[i].raw);
		free((void *)p->rev[i].parents);
	}
	for (size_t i = 0; i < p->nrel; i++)
		free((void *)p->rel[i].raw);
	free(p->cnt);
	free(p->dir);
	free(p->rev);
	free(p->rel);
}

/* Prepares a load of url (ref NULL: every branch and tag): limits, the URL check and the
 * temporary folder. *auth and *auth_len get the URL's authority. 0, or -1 with the
 * reason set. */
static int
load_start(struct load *l, const char *url, const char *ref, const char **auth, size_t *auth_len)
{
	const struct config *cfg = l->w->cfg;
	const char *why;
	char *err = NULL, *base;

	pthread_once(&git_once, git_setup);
	idtab_init(&l->known);
	l->skipped_refs = json_array();
	l->phase = "starting";
	l->url = url;
	l->ref = ref;
	l->max_objects = cfg->max_load_objects;
	l->max_blob = cfg->max_load_blob;
	l->deadline_ms = now_ms() + (uint64_t)cfg->load_timeout * 1000;
	if (l->url == NULL)
		return load_fail(l, "the load has no URL");
	if ((why = loadurl_problem(l->url, strlen(l->url), cfg->load_allow_file, auth, auth_len)) !=
	    NULL) {
		/* Not even in the log: the URL is what is wrong, and may hold a secret. */
		load_fail(l, "%s", why);
		l->url = "(refused URL)";
		return -1;
	}
	base = xasprintf("%s/tmp", cfg->data_dir);
	if (mkdir_p(base, 0700, &err) != 0) {
		l->run->detail = err;
		free(base);
		return load_fail(l, "the worker cannot make a temporary folder");
	}
	l->tmpdir = xasprintf("%s/load-%lld-XXXXXX", base, (long long)l->run->job->id);
	free(base);
	if (mkdtemp(l->tmpdir) == NULL) {
		l->run->detail = xasprintf("mkdtemp %s: %s", l->tmpdir, strerror(errno));
		free(l->tmpdir);
		l->tmpdir = NULL;
		return load_fail(l, "the worker cannot make a temporary folder");
	}
	l->touched_ms = now_ms();
	return 0;
}

/* The job's outcome of a load that did not end well (*reason for FAILED and RETRY), and
 * everything the load holds freed. */
static enum job_outcome
load_end(struct load *l, enum job_outcome outcome, char **reason)
{
	if (outcome != JOB_OUTCOME_DONE) {
		if (l->cancelled) {
			log_info_id(l->run->log_id, "the load is no longer ours; stopped");
			outcome = JOB_OUTCOME_CANCELLED;
		} else if (l->stopped) {
			*reason = xstrdup("the worker stopped during the load");
			outcome = JOB_OUTCOME_RETRY;
		} else if (l->db_failed && worker_db_transient(l->w)) {
			*reason = xstrdup("the archive database was unavailable during the load");
			outcome = JOB_OUTCOME_RETRY;
		} else {
			*reason = l->reason != NULL ? l->reason : xstrdup("the load failed");
			l->reason = NULL;
			outcome = JOB_OUTCOME_FAILED;
		}
	}
	free(l->reason);
	git_odb_free(l->odb);
	git_repository_free(l->repo);
	if (l->tmpdir != NULL) {
		nftw(l->tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(l->tmpdir);
	}
	for (size_t i = 0; i < l->nrefs; i++)
		free(l->refs[i].name);
	free(l->refs);
	free(l->head);
	json_decref(l->skipped_refs);
	pending_free(&l->p);
	idtab_free(&l->known);
	return outcome;
}

enum job_outcome
load_run(struct job_run *run, json_t **result, char **reason)
{
	struct load l = {.run = run, .w = run->w};
	json_t *params = run->job->params;
	const char *auth = NULL;
	size_t auth_len = 0;
	enum job_outcome outcome = JOB_OUTCOME_FAILED;

	if (load_start(&l, json_string_value(json_object_get(params, "url")),
		json_string_value(json_object_get(params, "ref")), &auth, &auth_len) != 0)
		return load_end(&l, outcome, reason);
	if (load_fetch(&l, auth, auth_len) != 0 || store_all(&l, result) != 0)
		return load_end(&l, outcome, reason);
	log_info_id(run->log_id,
	    "%s: %zu refs (%lld skipped); new: %lld contents (%lld bytes), %lld directories, "
	    "%lld revisions, %lld releases; %lld already stored",
	    l.url, l.nrefs, (long long)l.n_skipped_refs, (long long)l.n_cnt, (long long)l.bytes,
	    (long long)l.n_dir, (long long)l.n_rev, (long long)l.n_rel, (long long)l.skipped);
	return load_end(&l, JOB_OUTCOME_DONE, reason);
}

void
load_tags_free(struct load_tag *tags, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(tags[i].name);
	free(tags);
}

/* The fetched tags (in fetched, l->refs before load_commit replaced them) whose commit is
 * in commit's history: annotated ones stored (their commits are, with the history), all
 * listed in *tags. 0 or -1. */
static int
history_tags(struct load *l, const unsigned char commit[20], const struct ref *fetched,
    size_t nfetched, struct load_tag **tags, size_t *ntags)
{
	git_revwalk *walk = NULL;
	struct idtab history;
	git_oid oid;
	size_t cap = 0;
	int rc = -1, err;

	idtab_init(&history);
	memcpy(oid.id, commit, 20);
	if (git_revwalk_new(&walk, l->repo) != 0 || git_revwalk_push(walk, &oid) != 0) {
		load_fail(l, "cannot walk the history: %s", load_git_words());
		goto out;
	}
	while ((err = git_revwalk_next(&oid, walk)) == 0) {
		bool added;
		idtab_put(&history, oid.id, &added);
		if ((history.n & 4095) == 0 && tick(l) != 0)
			goto out;
	}
	if (err != GIT_ITEROVER) {
		load_fail(l, "cannot walk the history: %s", load_git_words());
		goto out;
	}
	for (size_t i = 0; i < nfetched; i++) {
		const struct ref *r = &fetched[i];
		unsigned char end[20];
		git_object_t t;
		size_t len;

		if (strncmp(r->name, "refs/tags/", 10) != 0)
			continue;
		memcpy(oid.id, r->id, 20);
		if (git_odb_read_header(&len, &t, l->odb, &oid) != 0)
			continue; /* the fetch did not bring it: not ours to list */
		bool annotated = t == GIT_OBJECT_TAG;

		memcpy(end, r->id, 20);
		if (annotated && (err = peel(l, r->id, end, &t)) != 0) {
			if (err < 0)
				goto out;
			continue; /* too many tags deep */
		}
		if (t != GIT_OBJECT_COMMIT || idtab_find(&history, end) < 0)
			continue;
		if (annotated && store_tag(l, r->id, 0) != 0)
			goto out;
		GROW(*tags, *ntags, cap);
		(*tags)[*ntags].name = xstrdup(r->name);
		memcpy((*tags)[*ntags].id, r->id, 20);
		(*tags)[*ntags].annotated = annotated;
		(*ntags)++;
	}
	rc = flush(l, 3);
out:
	git_revwalk_free(walk);
	idtab_free(&history);
	return rc;
}

/* A request's source (worker/request.c): every branch and tag fetched, the commit looked
 * for among what came, then stored with its history as a load stores it (what is stored
 * already is skipped), without a snapshot. */
enum job_outcome
load_commit(struct job_run *run, const char *url, const unsigned char commit[20],
    unsigned char tree[20], bool *missing, struct load_tag **tags, size_t *ntags, char **reason)
{
	struct load l = {.run = run, .w = run->w};
	const char *auth = NULL;
	size_t auth_len = 0;
	git_odb_object *o;
	git_object_t type;
	git_oid oid;
	size_t len, nfetched;
	struct ref *fetched;
	struct commit_info ci;
	char hex[41];
	enum job_outcome outcome;

	*missing = false;
	if (tags != NULL)
		*tags = NULL, *ntags = 0;
	hex_encode(commit, 20, hex);
	if (load_start(&l, url, NULL, &auth, &auth_len) != 0 || load_fetch(&l, auth, auth_len) != 0)
		return load_end(&l, JOB_OUTCOME_FAILED, reason);
	memcpy(oid.id, commit, 20);
	if (git_odb_read_header(&len, &type, l.odb, &oid) != 0 || type != GIT_OBJECT_COMMIT) {
		*missing = true;
		load_fail(&l, "commit %s is not in %s", hex, l.url);
		return load_end(&l, JOB_OUTCOME_FAILED, reason);
	}
	/* The one tip to store: the commit, in place of the fetched refs (kept for the
	 * tags). */
	fetched = l.refs, nfetched = l.nrefs;
	l.refs = NULL, l.nrefs = l.crefs = 0;
	GROW(l.refs, l.nrefs, l.crefs);
	memset(&l.refs[0], 0, sizeof l.refs[0]);
	l.refs[0].name = xstrdup(hex);
	memcpy(l.refs[0].id, commit, 20);
	l.refs[0].type = GIT_OBJECT_COMMIT;
	l.nrefs = 1;
	l.phase = "storing objects";
	if (store_history(&l) != 0 || flush(&l, 2) != 0 ||
	    (tags != NULL && history_tags(&l, commit, fetched, nfetched, tags, ntags) != 0))
		goto fail;
	if ((o = read_object(&l, commit, GIT_OBJECT_COMMIT)) == NULL)
		goto fail;
	bool ok = gitobj_parse_commit(git_odb_object_data(o), git_odb_object_size(o), &ci);
	git_odb_object_free(o);
	if (!ok) {
		load_fail(&l, "commit %s is malformed", hex);
		goto fail;
	}
	memcpy(tree, ci.tree, 20);
	commit_info_clear(&ci);
	log_info_id(run->log_id,
	    "%s at %s: new: %lld contents (%lld bytes), %lld directories, %lld revisions, "
	    "%lld releases; %lld already stored",
	    l.url, hex, (long long)l.n_cnt, (long long)l.bytes, (long long)l.n_dir,
	    (long long)l.n_rev, (long long)l.n_rel, (long long)l.skipped);
	outcome = JOB_OUTCOME_DONE;
	goto out;
fail:
	outcome = JOB_OUTCOME_FAILED;
	if (tags != NULL) {
		load_tags_free(*tags, *ntags);
		*tags = NULL, *ntags = 0;
	}
out:
	for (size_t i = 0; i < nfetched; i++)
		free(fetched[i].name);
	free(fetched);
	return load_end(&l, outcome, reason);
}
