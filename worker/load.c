/* load.c: the "load" job: a git repository read with libgit2 becomes contents, directories,
 * revisions, releases and a snapshot of its branches in the archive.
 *
 * Two phases:
 *   1. fetch: every branch and tag (or only the asked ref) into a bare repository under
 *      <data_dir>/tmp, removed on every exit path; the transfer callback reports progress
 *      and stops the fetch on cancellation, timeout or max_load_objects;
 *   2. store: objects in dependency order, so that a stored row always stands for its
 *      whole closure (db/migrations/0003_git.sql) and a later load may skip it: commits
 *      parents first (topological walk), each commit after its tree, each tree after its
 *      entries, tags after their targets, the snapshot last. Pending rows are flushed in
 *      the same order (contents, directories, revisions, releases). Ids found stored are
 *      not walked into: a stored commit hides its ancestors, a stored tree its entries.
 * Blobs are read one at a time, streamed into the store and freed. Every id libgit2 gives
 * is checked against gitobj_hash of the raw body. Failure reasons are readable and carry
 * the URL (never a password: the API refuses them, and so does the worker). */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <git2.h>

#include "shared/gitobj.h"
#include "shared/log.h"
#include "shared/objects.h"
#include "worker/idtab.h"
#include "worker/worker.h"

/* Rows held before one insert; also the ids per objects_present call. */
#define LOAD_BATCH 1000
/* Raw bytes of pending directories/revisions before a flush. */
#define LOAD_FLUSH_BYTES (8u << 20)
/* Deeper trees or tag chains are refused rather than risking the stack. */
#define LOAD_MAX_DEPTH 1024

struct ref {
	char *name; /* "refs/heads/main" */
	unsigned char id[20];
	git_object_t type;
};

struct pending {
	struct content_row *cnt;
	size_t ncnt, ccnt;
	struct directory_row *dir; /* raw owned */
	size_t ndir, cdir, dir_bytes;
	struct revision_row *rev; /* raw and parents owned */
	size_t nrev, crev, rev_bytes;
	struct release_row *rel; /* raw owned, name points into raw */
	size_t nrel, crel;
};

struct load {
	struct job_run *run;
	struct worker *w;
	const char *url;
	const char *ref; /* NULL: every branch and tag */
	char *tmpdir;
	git_repository *repo;
	git_odb *odb;
	uint64_t deadline_ms;
	int64_t max_objects;
	unsigned int fetched_total; /* objects the fetch counted: the "~" total */
	int64_t seen; /* objects handled while storing */
	struct idtab known; /* stored, or pending and flushed before anything that needs it */
	struct pending p;
	struct ref *refs;
	size_t nrefs;
	char *head; /* the remote's default branch ("refs/heads/main") or NULL */
	int64_t n_cnt, n_dir, n_rev, n_rel, skipped, bytes;
	/* how it ended, when not well */
	char *reason; /* user-readable */
	bool cancelled; /* the job is no longer ours */
	bool stopped; /* the worker is stopping: hand the job back */
	bool db_failed; /* a Postgres call failed (reason set) */
};

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

/* libgit2 keeps global state (TLS, caches): set up once per process, never torn down. */
static void
git_setup(void)
{
	git_libgit2_init();
}

/* Sets the user-facing failure reason (the first wins); returns -1. */
static int BV_PRINTF(2, 3) fail(struct load *l, const char *fmt, ...)
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
	return fail(l, "the archive database failed while %s", what);
}

/* libgit2's last error message, or a generic one. */
static const char *
git_words(void)
{
	const git_error *e = git_error_last();
	return e != NULL && e->message != NULL ? e->message : "unknown libgit2 error";
}

/* n with thousands separators ("1,234,567"); out holds at least 32 bytes. */
static const char *
commas(int64_t n, char *out)
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

/* The scheme rules the API applies, again: the worker is the last line. NULL when the URL
 * may be loaded, else why not. */
static const char *
url_problem(const char *url, bool allow_file)
{
	const char *auth, *end, *at;

	if (strncasecmp(url, "https://", 8) == 0)
		auth = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		auth = url + 7;
	else if (strncasecmp(url, "git://", 6) == 0)
		auth = url + 6;
	else if (strncasecmp(url, "file://", 7) == 0)
		return allow_file ? NULL : "file:// URLs are not allowed (load_allow_file is off)";
	else
		return "only https://, http://, git:// and file:// URLs can be loaded";
	end = auth + strcspn(auth, "/?#");
	at = memchr(auth, '@', (size_t)(end - auth));
	if (at != NULL && memchr(auth, ':', (size_t)(at - auth)) != NULL)
		return "the URL must not carry a password";
	return NULL;
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
		fail(l, "the load took longer than load_timeout (%lld s)",
		    (long long)l->w->cfg->load_timeout);
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
		return fail(l, "the repository has more than %lld objects (max_load_objects)",
		    (long long)l->max_objects);
	if (!may_go_on(l))
		return -1;
	if ((l->seen & 31) != 0)
		return 0;
	if (!job_progress(l->run, "Loaded %s / ~%s objects", commas(l->seen, a),
		commas(l->fetched_total > l->seen ? l->fetched_total : l->seen, b))) {
		l->cancelled = true;
		return -1;
	}
	return 0;
}

/* The fetch's progress callback: reports, and stops the transfer when it must. */
static int
on_transfer(const git_indexer_progress *st, void *arg)
{
	struct load *l = arg;
	char a[32], b[32];

	if ((int64_t)st->total_objects > l->max_objects) {
		fail(l, "the repository has more than %lld objects (max_load_objects)",
		    (long long)l->max_objects);
		return GIT_EUSER;
	}
	if (!may_go_on(l))
		return GIT_EUSER;
	l->fetched_total = st->total_objects;
	if (!job_progress(l->run, "Fetched %s / %s objects (%.1f MiB)",
		commas(st->received_objects, a), commas(st->total_objects, b),
		(double)st->received_bytes / (1024.0 * 1024.0))) {
		l->cancelled = true;
		return GIT_EUSER;
	}
	return 0;
}

/* The same checks while refs are listed and negotiated (no transfer progress then). */
static int
on_sideband(const char *str, int len, void *arg)
{
	(void)str, (void)len;
	return may_go_on(arg) ? 0 : GIT_EUSER;
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
		fail(l, "object %s is missing from the fetched repository: %s", hex, git_words());
		return NULL;
	}
	if (git_odb_object_type(o) != want) {
		fail(l, "object %s is a %s where a %s was expected", hex,
		    git_object_type2string(git_odb_object_type(o)), git_object_type2string(want));
		git_odb_object_free(o);
		return NULL;
	}
	gitobj_hash(
	    git_object_type2string(want), git_odb_object_data(o), git_odb_object_size(o), h);
	if (memcmp(h, id, 20) != 0) {
		fail(l, "object %s does not hash to its id", hex);
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

/* Grows an array of rows to hold one more. */
#define GROW(arr, n, cap)                                                                          \
	do {                                                                                       \
		if ((n) == (cap)) {                                                                \
			(cap) = (cap) ? (cap)*2 : 64;                                              \
			(arr) = xrealloc((arr), (cap) * sizeof *(arr));                            \
		}                                                                                  \
	} while (0)

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

/* Reads a blob, streams it into the store and queues its contents row. 0 or -1. */
static int
store_blob(struct load *l, const unsigned char id[20])
{
	git_odb_object *o;
	struct store_writer *sw;
	struct content_row *row;
	char *err = NULL;
	bool added;
	size_t len;
	int rc;

	if (tick(l) != 0 || (o = read_object(l, id, GIT_OBJECT_BLOB)) == NULL)
		return -1;
	len = git_odb_object_size(o);
	if ((sw = store_writer_new(l->w->store, &err)) == NULL) {
		git_odb_object_free(o);
		free(l->run->detail);
		l->run->detail = err;
		return fail(l, "the store could not take a file: %s",
		    errno != 0 ? strerror(errno) : "input/output error");
	}
	GROW(l->p.cnt, l->p.ncnt, l->p.ccnt);
	row = &l->p.cnt[l->p.ncnt];
	rc = store_writer_write(sw, git_odb_object_data(o), len, &err);
	git_odb_object_free(o);
	if (rc != 0) {
		store_writer_abort(sw);
	} else {
		rc = store_writer_commit(sw, row->sha256, row->sha1, &err);
	}
	if (rc != 0) {
		int e = errno;
		free(l->run->detail);
		l->run->detail = err;
		return fail(l, "the store could not write a file: %s",
		    e == ENOSPC ? "no space left on device" : "input/output error");
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
		return fail(l, "a tree is nested deeper than %d levels", LOAD_MAX_DEPTH);
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
		fail(l, "tree %s is malformed", hex);
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
			fail(l, "commit %s is malformed", hex);
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

	if (depth > LOAD_MAX_DEPTH)
		return fail(l, "a chain of tags is longer than %d", LOAD_MAX_DEPTH);
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
		return fail(l, "tag %s is malformed", hex);
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

/* The ref to fetch for l->ref among the remote's refs: a full name as is, a short one as
 * a branch, then as a tag. NULL when the remote has none of them. */
static char *
resolve_ref(struct load *l, const git_remote_head **heads, size_t n)
{
	char *cand[2] = {NULL, NULL};
	char *found = NULL;

	if (strncmp(l->ref, "refs/", 5) == 0) {
		cand[0] = xstrdup(l->ref);
	} else {
		cand[0] = xasprintf("refs/heads/%s", l->ref);
		cand[1] = xasprintf("refs/tags/%s", l->ref);
	}
	for (int c = 0; c < 2 && found == NULL && cand[c] != NULL; c++)
		for (size_t i = 0; i < n; i++)
			if (strcmp(heads[i]->name, cand[c]) == 0) {
				found = xstrdup(cand[c]);
				break;
			}
	free(cand[0]);
	free(cand[1]);
	return found;
}

/* Phase 1: connects, lists the remote's refs (and its HEAD), fetches into the temporary
 * bare repository. 0 or -1. */
static int
fetch(struct load *l)
{
	git_remote *remote = NULL;
	git_remote_callbacks cb;
	git_fetch_options fo;
	const git_remote_head **heads;
	size_t nheads;
	git_buf def = {0};
	char *specs[2] = {NULL, NULL}, *want = NULL;
	git_strarray refspecs = {specs, 2};
	int rc = -1;

	/* The init calls, not the _INIT macros: those leave fields to -Wextra's complaint. */
	git_remote_init_callbacks(&cb, GIT_REMOTE_CALLBACKS_VERSION);
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	cb.transfer_progress = on_transfer;
	cb.sideband_progress = on_sideband;
	cb.payload = l;
	if (git_repository_init(&l->repo, l->tmpdir, 1) != 0 ||
	    git_repository_odb(&l->odb, l->repo) != 0) {
		free(l->run->detail);
		l->run->detail = xstrdup(git_words());
		return fail(l, "cannot make a temporary repository on the worker");
	}
	if (git_remote_create_anonymous(&remote, l->repo, l->url) != 0) {
		fail(l, "cannot use %s: %s", l->url, git_words());
		goto out;
	}
	if (!job_phase(l->run, "Connecting to %s", l->url)) {
		l->cancelled = true;
		goto out;
	}
	if (git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, NULL, NULL) != 0 ||
	    git_remote_ls(&heads, &nheads, remote) != 0) {
		if (may_go_on(l))
			fail(l, "cannot read %s: %s", l->url, git_words());
		goto out;
	}
	if (git_remote_default_branch(&def, remote) == 0 && def.ptr != NULL)
		l->head = xstrdup(def.ptr);
	git_error_clear();
	if (l->ref != NULL) {
		if ((want = resolve_ref(l, heads, nheads)) == NULL) {
			fail(l, "ref '%s' not found in %s", l->ref, l->url);
			goto out;
		}
		specs[0] = xasprintf("+%s:%s", want, want);
		refspecs.count = 1;
	} else {
		specs[0] = xstrdup("+refs/heads/*:refs/heads/*");
		specs[1] = xstrdup("+refs/tags/*:refs/tags/*");
	}
	fo.callbacks = cb;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.update_fetchhead = 0;
	if (!job_phase(l->run, "Fetching %s", l->url)) {
		l->cancelled = true;
		goto out;
	}
	if (git_remote_fetch(remote, &refspecs, &fo, NULL) != 0) {
		if (may_go_on(l))
			fail(l, "cannot fetch %s: %s", l->url, git_words());
		goto out;
	}
	const git_indexer_progress *st = git_remote_stats(remote);
	if (st != NULL && st->total_objects > l->fetched_total)
		l->fetched_total = st->total_objects;
	rc = 0;
out:
	git_buf_dispose(&def);
	git_remote_free(remote);
	free(specs[0]);
	free(specs[1]);
	free(want);
	return rc;
}

/* The fetched refs (branches and tags) with their objects' kinds. 0 or -1. */
static int
list_refs(struct load *l)
{
	git_reference_iterator *it = NULL;
	git_reference *r;
	size_t cap = 0;
	int err;

	if (git_reference_iterator_new(&it, l->repo) != 0)
		return fail(l, "cannot list the fetched refs: %s", git_words());
	while ((err = git_reference_next(&r, it)) == 0) {
		const char *name = git_reference_name(r);
		const git_oid *oid = git_reference_target(r);
		size_t len;
		git_object_t type;

		if (oid != NULL &&
		    (strncmp(name, "refs/heads/", 11) == 0 ||
			strncmp(name, "refs/tags/", 10) == 0) &&
		    git_odb_read_header(&len, &type, l->odb, oid) == 0) {
			GROW(l->refs, l->nrefs, cap);
			l->refs[l->nrefs].name = xstrdup(name);
			memcpy(l->refs[l->nrefs].id, oid->id, 20);
			l->refs[l->nrefs].type = type;
			l->nrefs++;
		}
		git_reference_free(r);
	}
	git_reference_iterator_free(it);
	if (err != GIT_ITEROVER)
		return fail(l, "cannot list the fetched refs: %s", git_words());
	return 0;
}

/* Follows a chain of tags to the object at its end (id and kind). 0 or -1. */
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

		if (depth > LOAD_MAX_DEPTH)
			return fail(l, "a chain of tags is longer than %d", LOAD_MAX_DEPTH);
		if ((o = read_object(l, out, GIT_OBJECT_TAG)) == NULL)
			return -1;
		bool ok = gitobj_parse_tag(git_odb_object_data(o), git_odb_object_size(o), target,
		    &kind, &name, &name_len);
		git_odb_object_free(o);
		if (!ok) {
			hex_encode(out, 20, hex);
			return fail(l, "tag %s is malformed", hex);
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
 * blobs tags point at directly. Stored tips hide their ancestors from the walk. 0 or -1. */
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
		fail(l, "cannot walk the history: %s", git_words());
		goto out;
	}
	git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
	for (size_t i = 0; i < l->nrefs; i++) {
		unsigned char end[20];
		git_object_t t = l->refs[i].type;

		memcpy(end, l->refs[i].id, 20);
		if (t == GIT_OBJECT_TAG && peel(l, l->refs[i].id, end, &t) != 0)
			goto out;
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
			fail(l, "cannot walk the history: %s", git_words());
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
		fail(l, "cannot walk the history: %s", git_words());
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
		b[n].name = (const unsigned char *)l->refs[i].name;
		b[n].name_len = strlen(l->refs[i].name);
		b[n].type = ref_target(l->refs[i].type);
		b[n].target = l->refs[i].id;
		b[n].target_len = 20;
		n++;
		hex_encode(l->refs[i].id, 20, hex);
		json_object_set_new(branches, l->refs[i].name, json_string(hex));
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
		json_object_set_new(branches, "HEAD", json_string(hex));
	}
	if (!gitobj_snapshot_manifest(b, n, &raw, &raw_len, id)) {
		fail(l, "the repository's refs do not make a valid snapshot");
		goto out;
	}
	if (flush(l, 3) != 0)
		goto out;
	if (objects_put_snapshot(l->w->db, id, raw, raw_len, &err) != 0) {
		db_fail(l, "storing the snapshot", err);
		goto out;
	}
	hex_encode(id, 20, hex);
	*result = json_pack("{s:s, s:O, s:{s:I, s:I, s:I, s:I, s:I, s:I}}", "snapshot", hex,
	    "branches", branches, "stats", "contents", (json_int_t)l->n_cnt, "directories",
	    (json_int_t)l->n_dir, "revisions", (json_int_t)l->n_rev, "releases",
	    (json_int_t)l->n_rel, "skipped", (json_int_t)l->skipped, "bytes", (json_int_t)l->bytes);
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
	if (!job_phase(l->run, "Loading objects")) {
		l->cancelled = true;
		return -1;
	}
	if (list_refs(l) != 0 || store_history(l) != 0 || flush(l, 2) != 0)
		return -1;
	for (size_t i = 0; i < l->nrefs; i++)
		if (l->refs[i].type == GIT_OBJECT_TAG && store_tag(l, l->refs[i].id, 0) != 0)
			return -1;
	return store_snapshot(l, result);
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

enum job_outcome
load_run(struct job_run *run, json_t **result, char **reason)
{
	struct load l = {.run = run, .w = run->w};
	const struct config *cfg = run->w->cfg;
	json_t *params = run->job->params;
	const char *why;
	char *err = NULL, *base;
	enum job_outcome outcome = JOB_OUTCOME_FAILED;

	pthread_once(&git_once, git_setup);
	idtab_init(&l.known);
	l.url = json_string_value(json_object_get(params, "url"));
	l.ref = json_string_value(json_object_get(params, "ref"));
	l.max_objects = cfg->max_load_objects;
	l.deadline_ms = now_ms() + (uint64_t)cfg->load_timeout * 1000;
	if (l.url == NULL) {
		fail(&l, "the load has no URL");
		goto out;
	}
	if ((why = url_problem(l.url, cfg->load_allow_file)) != NULL) {
		fail(&l, "%s", why);
		goto out;
	}
	base = xasprintf("%s/tmp", cfg->data_dir);
	if (mkdir_p(base, 0700, &err) != 0) {
		run->detail = err;
		free(base);
		fail(&l, "the worker cannot make a temporary folder");
		goto out;
	}
	l.tmpdir = xasprintf("%s/load-%lld-XXXXXX", base, (long long)run->job->id);
	free(base);
	if (mkdtemp(l.tmpdir) == NULL) {
		run->detail = xasprintf("mkdtemp %s: %s", l.tmpdir, strerror(errno));
		free(l.tmpdir);
		l.tmpdir = NULL;
		fail(&l, "the worker cannot make a temporary folder");
		goto out;
	}
	if (fetch(&l) != 0 || store_all(&l, result) != 0)
		goto out;
	log_info_id(run->log_id,
	    "%s: %zu refs; new: %lld contents (%lld bytes), %lld directories, %lld revisions, "
	    "%lld releases; %lld already stored",
	    l.url, l.nrefs, (long long)l.n_cnt, (long long)l.bytes, (long long)l.n_dir,
	    (long long)l.n_rev, (long long)l.n_rel, (long long)l.skipped);
	outcome = JOB_OUTCOME_DONE;
out:
	if (outcome != JOB_OUTCOME_DONE) {
		if (l.cancelled) {
			log_info_id(run->log_id, "the load is no longer ours; stopped");
			outcome = JOB_OUTCOME_CANCELLED;
		} else if (l.stopped) {
			*reason = xstrdup("the worker stopped during the load");
			outcome = JOB_OUTCOME_RETRY;
		} else if (l.db_failed && worker_db_transient(l.w)) {
			*reason = xstrdup("the archive database was unavailable during the load");
			outcome = JOB_OUTCOME_RETRY;
		} else {
			*reason = l.reason != NULL ? l.reason : xstrdup("the load failed");
			l.reason = NULL;
			outcome = JOB_OUTCOME_FAILED;
		}
	}
	free(l.reason);
	git_odb_free(l.odb);
	git_repository_free(l.repo);
	if (l.tmpdir != NULL) {
		nftw(l.tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(l.tmpdir);
	}
	for (size_t i = 0; i < l.nrefs; i++)
		free(l.refs[i].name);
	free(l.refs);
	free(l.head);
	pending_free(&l.p);
	idtab_free(&l.known);
	return outcome;
}
