/* request.c: the "request" job (params {"request_id": N}): one of Cachito's requests
 * (docs/api.md "Requests", docs/worker.md "Requests") worked from source to bundle:
 *   1. the source: repo's branches and tags fetched by the git loader, the commit `ref`
 *      checked and stored with the loader's dedup (worker/load.c load_commit); its tree
 *      becomes app/;
 *   2. git-submodule: each gitlink's commit loaded the same way (URL from .gitmodules)
 *      and grafted at its path;
 *   3. npm, per packages.npm path: the lockfile read from the stored tree
 *      (worker/request_npm.c), each registry tarball downloaded once into the store and
 *      checked against its integrity (worker/request_fetch.c; one already stored is
 *      reused), the lockfile rewritten to resolve to the bundled tarballs (a
 *      configuration file), Cachito's npm environment variables;
 *   4. generic, per packages.generic path: artifacts.lock.yaml read from the stored tree
 *      (worker/request_generic.c), each URL checked (netguard unless load_allow_private)
 *      and each file downloaded once into the store against its checksum, by the same
 *      path as npm's tarballs (dep_get), for deps/generic/<filename>;
 *   5. the bundle (worker/request_bundle.c): app/ + deps/, a reproducible tar.gz in the
 *      store; the job's result makes its bundles row, and the database's trigger then
 *      completes the request.
 * Progress and failures go to the API the way Cachito's workers send them (PATCH
 * /api/v1/requests/{id}: state, state_reason, error_origin, error_type, environment
 * variables) and every message to the request's log (requests_log). A request that is no
 * longer in_progress (marked stale meanwhile) stops the job, which then ends failed
 * without touching the request. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/gitobj.h"
#include "shared/loadurl.h"
#include "shared/log.h"
#include "shared/requests.h"
#include "worker/gitdir.h"
#include "worker/load.h"
#include "worker/request.h"
#include "worker/worker.h"

/* Count messages ("Fetching npm dependencies 12/340") go to the API at most this often. */
#define COUNT_PATCH_MS 2000
/* The final "failed" PATCH is retried this long while the API is unreachable. */
#define FAIL_PATCH_MS 30000
/* package.json, lockfiles and .gitmodules are read whole: larger ones are refused. */
#define MAX_MANIFEST (64 << 20)

/* Cachito's default npm environment variables (research cachito.md §4.2). */
static const char *const npm_env[][2] = {
    {"CHROMEDRIVER_SKIP_DOWNLOAD", "true"},
    {"CYPRESS_INSTALL_BINARY", "0"},
    {"GECKODRIVER_SKIP_DOWNLOAD", "true"},
    {"SKIP_SASS_BINARY_DOWNLOAD_FOR_CI", "true"},
};

struct rq {
	struct job_run *run;
	struct worker *w;
	struct request *req;
	int64_t id;
	uint64_t last_count_ms;
	/* how it ended, when not well (the first failure wins) */
	char *reason;
	const char *origin, *type;
	bool stale; /* no longer in_progress: stop, leave the request alone */
	bool cancelled; /* the job is no longer ours */
	bool retry; /* our infrastructure failed: hand the job back */
	/* what it found */
	struct rtree *tree;
	unsigned char commit[20]; /* the requested one */
	struct load_tag *tags; /* its tags, for app/.git (include-git-dir) */
	size_t ntags;
	struct gitdir git;
	bool has_git; /* git is built */
	struct bundle_file *files;
	size_t nfiles, cfiles;
	json_t *file_index; /* files' paths -> their index (one lookup per dependency) */
	/* download handles, one per job: the registry's (unguarded: the operator's) and the
	 * generic URLs' (guarded unless load_allow_private); never one for both, as a kept
	 * connection skips the guard */
	struct httpc *hc_npm, *hc_generic;
	json_t *packages; /* Cachito's packages (§2) */
	json_t *config_files;
	json_t *env;
};

/* Notes a failure (origin "client" or "server", Cachito's error_type); returns -1. */
static int BV_PRINTF(4, 5)
    fail(struct rq *q, const char *origin, const char *type, const char *fmt, ...)
{
	va_list ap;

	if (q->reason == NULL) {
		va_start(ap, fmt);
		q->reason = xvasprintf(fmt, ap);
		va_end(ap);
		q->origin = origin;
		q->type = type;
	}
	return -1;
}

/* A line for the request's log; a failure there is only the worker's log's business. */
static void
rlog(struct rq *q, const char *line)
{
	char *err = NULL;
	if (requests_log(q->w->db, q->id, line, &err) != 0) {
		log_warn_id(q->run->log_id, "request %lld log: %s", (long long)q->id, err);
		free(err);
	}
}

/* Whether the request is still in_progress (re-read after the API refused a PATCH). */
static bool
still_in_progress(struct rq *q)
{
	struct request *r = NULL;
	char *err = NULL;
	int found = requests_get(q->w->db, q->id, &r, &err);

	if (found < 0) {
		free(err);
		return true; /* cannot tell: the next step will find out */
	}
	bool in = found == 1 && strcmp(r->state, REQUEST_IN_PROGRESS) == 0;
	if (!in)
		log_info_id(q->run->log_id, "request %lld is %s now; stopping", (long long)q->id,
		    found == 1 ? r->state : "gone");
	request_free(r);
	return in;
}

/* PATCH /api/v1/requests/{id}: 0 accepted, 1 refused (400/404: then q->stale when the
 * request is no longer in_progress), -1 unreachable (retried up to max_ms). */
static int
api_patch(struct rq *q, json_t *body, bool important, uint64_t max_ms)
{
	char *url = xasprintf("%s/api/v1/requests/%lld", q->w->api_base, (long long)q->id);
	char *text = json_dumps(body, JSON_COMPACT);
	uint64_t start = now_ms(), delay = 250;
	struct buf resp;
	int rc = -1;

	buf_init(&resp);
	for (;;) {
		long status = 0;
		char *err = NULL;
		if (httpc_json(important ? q->w->hc : q->w->hc_progress, "PATCH", url, text,
			&status, &resp, &err) != 0) {
			log_debug_id(q->run->log_id, "%s", err);
			free(err);
		} else if (status == 200 || status == 204) {
			rc = 0;
			break;
		} else if (status == 400 || status == 404) {
			log_info_id(q->run->log_id, "PATCH %s refused (HTTP %ld): %.200s", url,
			    status, resp.data ? resp.data : "");
			if (!still_in_progress(q))
				q->stale = true;
			rc = 1;
			break;
		} else {
			log_debug_id(q->run->log_id, "PATCH %s: HTTP %ld", url, status);
		}
		if (worker_stop || now_ms() - start + delay > max_ms)
			break;
		worker_sleep(delay);
		delay = delay * 2 > 4000 ? 4000 : delay * 2;
	}
	if (rc < 0)
		log_warn_id(q->run->log_id, "PATCH %s: the API did not answer", url);
	buf_free(&resp);
	free(text);
	free(url);
	return rc;
}

/* A new phase: the request's state_reason (Cachito's words), its log, the job's
 * progress. false when the job must stop. */
static bool BV_PRINTF(2, 3) say(struct rq *q, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	rlog(q, msg);
	json_t *body = json_pack("{s:s, s:s}", "state", REQUEST_IN_PROGRESS, "state_reason", msg);
	api_patch(q, body, false, 0);
	json_decref(body);
	if (!q->stale && !job_phase(q->run, "%s", msg))
		q->cancelled = true;
	free(msg);
	return !q->stale && !q->cancelled;
}

/* A count within a phase: the job's progress always, the request's at most every
 * COUNT_PATCH_MS (and for the last). false when the job must stop. */
static bool
say_count(struct rq *q, const char *what, size_t done, size_t total)
{
	uint64_t now = now_ms();

	if (!job_progress(q->run, "%s %zu/%zu", what, done, total)) {
		q->cancelled = true;
		return false;
	}
	if (done == total || now - q->last_count_ms >= COUNT_PATCH_MS) {
		q->last_count_ms = now;
		char *msg = xasprintf("%s %zu/%zu", what, done, total);
		rlog(q, msg);
		json_t *body =
		    json_pack("{s:s, s:s}", "state", REQUEST_IN_PROGRESS, "state_reason", msg);
		api_patch(q, body, false, 0);
		json_decref(body);
		free(msg);
	}
	return !q->stale;
}

/* Whether the request asked for a package manager or flag. */
static bool
has(const json_t *list, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
			return true;
	}
	return false;
}

/* A Postgres failure: a retry when it may go away, else a server failure. -1. */
static int
db_fail(struct rq *q, const char *what, char *err)
{
	log_warn_id(q->run->log_id, "%s: %s", what, err);
	free(err);
	if (worker_db_transient(q->w))
		q->retry = true;
	return fail(q, "server", "UnknownError", "The database failed while %s", what);
}

/* ---- the source ---------------------------------------------------------------------- */

/* Step 1: app/'s tree. 0 or -1. */
static int
fetch_source(struct rq *q)
{
	unsigned char commit[20], tree[20];
	const char *auth;
	size_t auth_len;
	bool missing = false, db_failed = false;
	char *reason = NULL, *err = NULL;
	const char *why;

	if (!say(q, "Fetching the application source"))
		return -1;
	if (!hex_decode(q->req->ref, commit, 20))
		return fail(q, "client", "InvalidRequestData", "The ref \"%s\" is not a commit id",
		    q->req->ref);
	why = loadurl_problem(
	    q->req->repo, strlen(q->req->repo), q->w->cfg->load_allow_file, &auth, &auth_len);
	if (why != NULL)
		return fail(
		    q, "client", "InvalidRequestData", "The repository cannot be fetched: %s", why);
	enum job_outcome o = load_commit(q->run, q->req->repo, commit, tree, &missing,
	    has(q->req->flags, "include-git-dir") ? &q->tags : NULL, &q->ntags, &reason);
	switch (o) {
	case JOB_OUTCOME_DONE:
		break;
	case JOB_OUTCOME_CANCELLED:
		q->cancelled = true;
		return -1;
	case JOB_OUTCOME_RETRY:
		q->retry = true;
		fail(q, "server", "UnknownError", "%s", reason);
		free(reason);
		return -1;
	case JOB_OUTCOME_FAILED:
		if (missing) {
			log_info_id(q->run->log_id, "%s", reason);
			fail(q, "client", "InvalidRequestData",
			    "Failed on checking out the Git repository. Please verify the "
			    "supplied reference of \"%s\" is valid.",
			    q->req->ref);
		} else {
			fail(q, "server", "RepositoryAccessError",
			    "Cloning the Git repository failed: %s", reason);
		}
		free(reason);
		return -1;
	}
	if (requests_set_source(q->w->db, q->id, tree, &err) != 0)
		return db_fail(q, "recording the source", err);
	q->tree = rtree_load(q->run, tree, &db_failed, &err);
	if (q->tree == NULL) {
		if (db_failed && worker_db_transient(q->w))
			q->retry = true;
		fail(q, "server", "UnknownError", "%s", err);
		free(err);
		return -1;
	}
	memcpy(q->commit, commit, 20);
	return 0;
}

/* ---- git-submodule ------------------------------------------------------------------ */

/* The value of key in the .gitmodules section whose path is path, or NULL. New. */
static char *
gitmodules_get(const char *text, const char *path, const char *key)
{
	char *copy = xstrdup(text), *save = NULL, *out = NULL, *cur_path = NULL, *cur_val = NULL;

	/* Sections end at the next header; check the previous one each time. */
	for (char *line = strtok_r(copy, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
		char *s = line;
		while (s != NULL && (*s == ' ' || *s == '\t'))
			s++;
		if (s == NULL || *s == '[') {
			if (cur_path != NULL && cur_val != NULL && strcmp(cur_path, path) == 0) {
				out = xstrdup(cur_val);
				break;
			}
			free(cur_path);
			free(cur_val);
			cur_path = cur_val = NULL;
			if (s == NULL)
				break;
			continue;
		}
		char *eq = strchr(s, '=');
		if (eq == NULL)
			continue;
		char *k = s, *v = eq + 1, *end = eq;
		while (end > k && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		size_t vl = strlen(v);
		while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t' || v[vl - 1] == '\r'))
			v[--vl] = '\0';
		if (strcmp(k, "path") == 0) {
			free(cur_path);
			cur_path = xstrdup(v);
		} else if (strcmp(k, key) == 0) {
			free(cur_val);
			cur_val = xstrdup(v);
		}
	}
	free(cur_path);
	free(cur_val);
	free(copy);
	return out;
}

/* A submodule URL relative to the superproject's ("../lib.git") made absolute. */
static char *
resolve_url(const char *base, const char *rel)
{
	if (strncmp(rel, "./", 2) != 0 && strncmp(rel, "../", 3) != 0)
		return xstrdup(rel);
	size_t n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	char *b = xstrndup(base, n);
	const char *r = rel;
	for (;;) {
		if (strncmp(r, "./", 2) == 0) {
			r += 2;
		} else if (strncmp(r, "../", 3) == 0) {
			char *slash = strrchr(b, '/');
			if (slash != NULL && slash > strstr(b, "://") + 2)
				*slash = '\0';
			r += 3;
		} else {
			break;
		}
	}
	char *out = xasprintf("%s/%s", b, r);
	free(b);
	return out;
}

struct submodules {
	struct rq *q;
	char *gitmodules;
};

/* rtree_gitlinks' callback: one submodule loaded and grafted. */
static int
one_submodule(void *arg, const char *path, const unsigned char commit[20])
{
	struct submodules *s = arg;
	struct rq *q = s->q;
	unsigned char tree[20];
	bool missing = false, db_failed = false;
	char hex[41], *reason = NULL, *err = NULL;
	const char *auth;
	size_t auth_len;

	hex_encode(commit, 20, hex);
	char *rel = s->gitmodules ? gitmodules_get(s->gitmodules, path, "url") : NULL;
	if (rel == NULL)
		return fail(q, "client", "InvalidRepoStructure",
		    "The submodule at \"%s\" has no URL in .gitmodules", path);
	char *url = resolve_url(q->req->repo, rel);
	free(rel);
	const char *why =
	    loadurl_problem(url, strlen(url), q->w->cfg->load_allow_file, &auth, &auth_len);
	if (why != NULL) {
		fail(q, "client", "InvalidRepoStructure",
		    "The submodule at \"%s\" cannot be fetched: %s", path, why);
		free(url);
		return -1;
	}
	if (!say(q, "Fetching the git submodule at \"%s\"", path)) {
		free(url);
		return -1;
	}
	enum job_outcome o = load_commit(q->run, url, commit, tree, &missing, NULL, NULL, &reason);
	if (o == JOB_OUTCOME_CANCELLED)
		q->cancelled = true;
	else if (o == JOB_OUTCOME_RETRY)
		q->retry = true;
	if (o != JOB_OUTCOME_DONE) {
		if (missing)
			fail(q, "client", "InvalidRepoStructure",
			    "The commit %s of the submodule at \"%s\" is not in %s", hex, path,
			    url);
		else
			fail(q, "server", "RepositoryAccessError",
			    "Cloning the git submodule at \"%s\" failed: %s", path,
			    reason ? reason : "stopped");
		free(reason);
		free(url);
		return -1;
	}
	if (rtree_graft(q->tree, path, tree, &db_failed, &err) != 0) {
		if (db_failed && worker_db_transient(q->w))
			q->retry = true;
		fail(q, "server", "UnknownError", "%s", err);
		free(err);
		free(url);
		return -1;
	}
	const char *slash = strrchr(path, '/');
	char *version = xasprintf("%s#%s", url, hex);
	json_array_append_new(q->packages,
	    json_pack("{s:s, s:s, s:s, s:s, s:[]}", "name", slash ? slash + 1 : path, "type",
		"git-submodule", "version", version, "path", path, "dependencies"));
	free(version);
	free(url);
	return 0;
}

/* Step 2: every submodule. 0 or -1. */
static int
fetch_submodules(struct rq *q)
{
	struct submodules s = {.q = q};
	size_t len;
	char *err = NULL;

	if (rtree_read(q->tree, ".gitmodules", MAX_MANIFEST, &s.gitmodules, &len, &err) < 0) {
		fail(q, "server", "UnknownError", "%s", err);
		free(err);
		return -1;
	}
	int rc = rtree_gitlinks(q->tree, one_submodule, &s);
	free(s.gitmodules);
	return rc != 0 ? -1 : 0;
}

/* ---- symlinks ---------------------------------------------------------------------- */

/* rtree_check_links' note: one line of the request's log per link left out. */
static void
link_removed(void *arg, const char *path, const char *target)
{
	struct rq *q = arg;
	char *line = xasprintf("The destination of '%s' (%s) is outside of cloned repository: "
			       "left out of the bundle (remove-unsafe-symlinks)",
	    path, target);
	rlog(q, line);
	free(line);
}

/* After the source and its submodules: no symlink may lead out of app/ (Cachito's
 * sandbox), unless remove-unsafe-symlinks leaves such links out. 0 or -1. */
static int
check_links(struct rq *q)
{
	char *err = NULL;
	int r = rtree_check_links(
	    q->tree, has(q->req->flags, "remove-unsafe-symlinks"), link_removed, q, &err);

	if (r == 1)
		fail(q, "client", "InvalidRepoStructure", "%s", err);
	else if (r < 0)
		fail(q, "server", "UnknownError", "%s", err);
	free(err);
	return r == 0 ? 0 : -1;
}

/* ---- npm ---------------------------------------------------------------------------- */

/* The bundle file at path (put there by another package path), or NULL. */
static struct bundle_file *
find_file(struct rq *q, const char *path)
{
	json_t *i = json_object_get(q->file_index, path);
	return i != NULL ? &q->files[json_integer_value(i)] : NULL;
}

/* A dependency file to get: its key in the artifacts table, where it comes from. */
struct dep_get {
	const char *kind, *name, *version; /* the artifacts key (with integrity) */
	const char *integrity; /* SRI or "sha256:<hex>"; NULL: none locked */
	const char *url;
	const char *what; /* for messages: "npm package fix-a@1.0.0" */
	const char *path; /* in the bundle: "deps/npm/fix-a/fix-a-1.0.0.tgz" */
};

/* One dependency file into the store (a download checked against its integrity, or the
 * stored copy a previous request recorded) and into the bundle. *computed gets the
 * integrity of a download that had none locked (else NULL). 0, or -1 with the failure
 * noted. */
static int
dep_get_unlocked(
    struct rq *q, const struct dep_get *g, unsigned char sha256[32], int64_t *size, char **computed)
{
	struct db *db = q->w->db;
	char *err = NULL;
	int found = 0;

	*computed = NULL;
	if (g->integrity != NULL) {
		found = artifacts_find(
		    db, g->kind, g->name, g->version, g->integrity, sha256, size, &err);
		if (found < 0)
			return db_fail(q, "looking up stored dependencies", err);
	}
	/* Known and still in the store: touched, so a collection spares it until the
	 * bundle that holds it is written. */
	if (found == 1 && store_touch(q->w->store, sha256, &err) == 0) {
		char *line = xasprintf("Using the stored %s", g->what);
		rlog(q, line);
		free(line);
	} else {
		free(err);
		err = NULL;
		/* The registry is the operator's; a generic file's URL is the repository's. */
		bool npm = strcmp(g->kind, "npm") == 0;
		struct httpc **hc = npm ? &q->hc_npm : &q->hc_generic;
		if (*hc == NULL) {
			*hc = httpc_new(NULL, 0);
			httpc_set_guard(*hc, !npm && !q->w->cfg->load_allow_private);
		}
		enum fetch_error fe = fetch_to_store(
		    q->run, *hc, g->url, g->what, g->integrity, sha256, size, computed, &err);
		switch (fe) {
		case FETCH_OK:
			break;
		case FETCH_CANCELLED:
			if (worker_stop)
				q->retry = true;
			else
				q->cancelled = true;
			fail(q, "server", "UnknownError", "%s", err);
			free(err);
			return -1;
		case FETCH_MISMATCH:
		case FETCH_TOO_BIG:
			fail(q, "client",
			    fe == FETCH_MISMATCH ? "ChecksumVerificationFailed"
						 : "InvalidFileFormat",
			    "%s", err);
			free(err);
			return -1;
		case FETCH_NETWORK:
		case FETCH_STORE:
			fail(q, "server", fe == FETCH_NETWORK ? "NetworkError" : "UnknownError",
			    "%s", err);
			free(err);
			return -1;
		}
		const char *integrity = g->integrity != NULL ? g->integrity : *computed;
		if (artifacts_put(
			db, g->kind, g->name, g->version, integrity, sha256, *size, &err) != 0) {
			free(*computed);
			*computed = NULL;
			return db_fail(q, "recording a downloaded dependency", err);
		}
		char *line = xasprintf("Downloaded the %s (%lld bytes)", g->what, (long long)*size);
		rlog(q, line);
		free(line);
	}
	if (q->nfiles == q->cfiles) {
		q->cfiles = q->cfiles ? q->cfiles * 2 : 32;
		q->files = xrealloc(q->files, q->cfiles * sizeof *q->files);
	}
	json_object_set_new(q->file_index, g->path, json_integer((json_int_t)q->nfiles));
	q->files[q->nfiles].path = xstrdup(g->path);
	memcpy(q->files[q->nfiles].sha256, sha256, 32);
	q->files[q->nfiles].size = *size;
	q->nfiles++;
	return 0;
}

/* dep_get_unlocked under the artifact's lock (artifacts_lock), so workers that need the
 * same dependency at once download it once: the others wait, then find it stored. */
static int
dep_get(
    struct rq *q, const struct dep_get *g, unsigned char sha256[32], int64_t *size, char **computed)
{
	char *err = NULL;
	int rc;

	if (g->integrity == NULL)
		return dep_get_unlocked(q, g, sha256, size, computed);
	if (artifacts_lock(q->w->db, g->kind, g->name, g->version, g->integrity, &err) != 0)
		return db_fail(q, "locking a dependency", err);
	rc = dep_get_unlocked(q, g, sha256, size, computed);
	artifacts_unlock(q->w->db, g->kind, g->name, g->version, g->integrity);
	return rc;
}

/* One registry tarball into the store (or found there) and into the bundle. 0 or -1. */
static int
npm_get(struct rq *q, struct npm_dep *d)
{
	unsigned char sha256[32];
	int64_t size = 0;
	char *computed = NULL;
	char *what = xasprintf("npm package %s@%s", d->name, d->version);
	int rc = -1;

	d->bundle_path = npm_bundle_path(d->name, d->version);
	if (find_file(q, d->bundle_path) != NULL) {
		free(what);
		return 0;
	}
	if (d->integrity != NULL && !fetch_integrity_supported(d->integrity)) {
		fail(q, "client", "InvalidFileFormat",
		    "The integrity value of the %s uses no hash algorithm this server can check "
		    "(sha512, sha384, sha256, sha1)",
		    what);
		goto out;
	}
	char *url = npm_tarball_url(q->w->cfg->npm_registry, d->name, d->version);
	struct dep_get g = {.kind = "npm",
	    .name = d->name,
	    .version = d->version,
	    .integrity = d->integrity,
	    .url = url,
	    .what = what,
	    .path = d->bundle_path};
	rc = dep_get(q, &g, sha256, &size, &computed);
	free(url);
	if (rc == 0 && d->integrity == NULL)
		d->integrity = computed;
	else
		free(computed);
out:
	free(what);
	return rc;
}

/* A packages.npm path made canonical ("" for the root, "a/b"), or NULL when it is
 * absolute or leaves the repository. New string. */
static char *
clean_path(const char *p)
{
	struct buf b;

	if (p == NULL || p[0] == '/')
		return NULL;
	buf_init(&b);
	buf_adds(&b, "");
	while (*p != '\0') {
		size_t n = strcspn(p, "/");
		if (n == 2 && strncmp(p, "..", 2) == 0) {
			buf_free(&b);
			return NULL;
		}
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (b.len > 0)
				buf_addc(&b, '/');
			buf_add(&b, p, n);
		}
		p += n + (p[n] == '/');
	}
	return buf_steal(&b, NULL);
}

/* Adds a configuration file (app/<path>) to the request's list. */
static void
add_config(struct rq *q, const char *path, const char *data, size_t len)
{
	char *b64 = base64_encode((const unsigned char *)data, len);
	json_array_append_new(q->config_files,
	    json_pack("{s:s, s:s, s:s}", "path", path, "type", "base64", "content", b64));
	free(b64);
}

/* The files npm_path hands out as configuration files, whichever it picks. */
static const char *const npm_config_names[] = {
    ".npmrc", "package-lock.json", "npm-shrinkwrap.json"};

/* Clients write configuration files with open(path, "w"), which follows a symlink (out of
 * the bundle) and fails on a folder: each target under app/<path> must be a regular file
 * of the tree or absent. 0, or -1 with the failure noted. */
static int
config_targets_ok(struct rq *q, const char *path)
{
	unsigned int mode;
	unsigned char id[20];

	for (size_t i = 0; i < BV_NELEM(npm_config_names); i++) {
		char *f = xasprintf("%s%s%s", path, *path ? "/" : "", npm_config_names[i]);
		int r = rtree_lookup(q->tree, f, &mode, id);
		if (r == 1 && mode != GIT_MODE_FILE && mode != GIT_MODE_EXEC) {
			fail(q, "client", "InvalidRepoStructure",
			    "The file \"%s\" must be a regular file: it is replaced by a "
			    "configuration file of the npm package manager, and it is a %s",
			    f,
			    mode == GIT_MODE_LINK      ? "symlink"
				: mode == GIT_MODE_DIR ? "directory"
						       : "submodule");
			free(f);
			return -1;
		}
		free(f);
	}
	return 0;
}

/* Step 3 for one path. 0 or -1. */
static int
npm_path(struct rq *q, const char *raw_path)
{
	char *path = clean_path(raw_path), *err = NULL, *pkg_text = NULL, *lock_text = NULL;
	const char *lock_name = "npm-shrinkwrap.json";
	struct npm_lock lock = {0};
	unsigned int mode;
	unsigned char id[20];
	size_t len, lock_len;
	int rc = -1;

	if (path == NULL) {
		fail(q, "client", "InvalidRequestData",
		    "The path \"%s\" in packages.npm must be relative and stay inside the "
		    "repository",
		    raw_path ? raw_path : "");
		goto out;
	}
	const char *shown = *path ? path : ".";
	if (!say(q, "Fetching the npm dependencies at the \"%s\" directory", shown))
		goto out;
	if (rtree_lookup(q->tree, path, &mode, id) != 1 || mode != GIT_MODE_DIR) {
		fail(q, "client", "InvalidRepoStructure",
		    "The directory \"%s\" given in packages.npm does not exist in the repository",
		    shown);
		goto out;
	}
	char *nm = xasprintf("%s%snode_modules", path, *path ? "/" : "");
	int nmr = rtree_lookup(q->tree, nm, &mode, id);
	free(nm);
	if (nmr == 1) {
		fail(q, "client", "InvalidRepoStructure",
		    "The \"%s\" directory must not contain node_modules for the npm package "
		    "manager",
		    shown);
		goto out;
	}
	if (config_targets_ok(q, path) != 0)
		goto out;
	char *f = xasprintf("%s%spackage.json", path, *path ? "/" : "");
	int r = rtree_read(q->tree, f, MAX_MANIFEST, &pkg_text, &len, &err);
	free(f);
	if (r == 0)
		fail(q, "client", "InvalidRepoStructure",
		    "The package.json file must be present for the npm package manager (in "
		    "\"%s\")",
		    shown);
	if (r <= 0)
		goto read_failed;
	f = xasprintf("%s%s%s", path, *path ? "/" : "", lock_name);
	r = rtree_read(q->tree, f, MAX_MANIFEST, &lock_text, &lock_len, &err);
	free(f);
	if (r == 0) {
		lock_name = "package-lock.json";
		f = xasprintf("%s%s%s", path, *path ? "/" : "", lock_name);
		r = rtree_read(q->tree, f, MAX_MANIFEST, &lock_text, &lock_len, &err);
		free(f);
	}
	if (r == 0)
		fail(q, "client", "InvalidRepoStructure",
		    "The npm-shrinkwrap.json or package-lock.json file must be present for the npm "
		    "package manager (in \"%s\")",
		    shown);
	if (r <= 0)
		goto read_failed;

	json_t *pkg = json_loadb(pkg_text, len, 0, NULL);
	if (!json_is_object(pkg)) {
		json_decref(pkg);
		fail(q, "client", "InvalidFileFormat",
		    "The package.json file in \"%s\" is not a JSON object", shown);
		goto out;
	}
	char *lock_file = xasprintf("%s%s%s", path, *path ? "/" : "", lock_name);
	r = npm_lock_parse(lock_text, lock_len, lock_file, &lock, &err);
	if (r != 0) {
		free(lock_file);
		json_decref(pkg);
		fail(q, "client", "InvalidFileFormat", "%s", err);
		free(err);
		goto out;
	}
	r = npm_lock_check_local(&lock, path, lock_file, &err);
	free(lock_file);
	if (r != 0) {
		json_decref(pkg);
		fail(q, "client", "UnsupportedFeature", "%s", err);
		free(err);
		goto out;
	}
	size_t nreg = 0;
	for (size_t i = 0; i < lock.ndeps; i++) {
		struct npm_dep *d = &lock.deps[i];
		if (d->source == NPM_OTHER) {
			json_decref(pkg);
			fail(q, "client", "UnsupportedFeature",
			    "The dependency %s@%s in \"%s\" does not come from the npm registry "
			    "(%s), which is not supported",
			    d->name, d->version, shown, d->resolved ? d->resolved : d->version);
			goto out;
		}
		if (d->source == NPM_REGISTRY)
			nreg++;
	}

	/* Downloads. */
	size_t done = 0;
	json_t *deps = json_array();
	for (size_t i = 0; i < lock.ndeps; i++) {
		struct npm_dep *d = &lock.deps[i];
		if (d->source == NPM_REGISTRY) {
			if (npm_get(q, d) != 0 ||
			    !say_count(q, "Fetching npm dependencies", ++done, nreg)) {
				json_decref(deps);
				json_decref(pkg);
				goto out;
			}
		}
		json_array_append_new(deps,
		    json_pack("{s:s, s:s, s:s, s:b, s:n}", "name", d->name, "type", "npm",
			"version", d->version, "dev", d->dev, "replaces"));
	}
	const char *pname = json_string_value(json_object_get(pkg, "name"));
	const char *pver = json_string_value(json_object_get(pkg, "version"));
	json_t *p =
	    json_pack("{s:s, s:s, s:s, s:o}", "name", pname ? pname : (*path ? path : "app"),
		"type", "npm", "version", pver ? pver : "", "dependencies", deps);
	if (*path)
		json_object_set_new(p, "path", json_string(path));
	json_array_append_new(q->packages, p);

	/* The lockfile pointing at the bundle: from app/<path> up to the bundle's root. */
	struct buf up;
	buf_init(&up);
	buf_adds(&up, "../");
	for (const char *s = path; *s != '\0'; s++)
		if (*s == '/')
			buf_adds(&up, "../");
	if (*path)
		buf_adds(&up, "../");
	npm_lock_rewrite(&lock, up.data);
	buf_free(&up);
	char *out_text = json_dumps(lock.root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	char *cpath = xasprintf("app/%s%s%s", path, *path ? "/" : "", lock_name);
	struct buf text;
	buf_init(&text);
	buf_adds(&text, out_text);
	buf_addc(&text, '\n');
	add_config(q, cpath, text.data, text.len);
	buf_free(&text);
	free(cpath);
	free(out_text);

	/* .npmrc: the repository's own settings, then offline installs from the bundle. */
	char *rc_text = NULL;
	size_t rc_len = 0;
	f = xasprintf("%s%s.npmrc", path, *path ? "/" : "");
	if (rtree_read(q->tree, f, MAX_MANIFEST, &rc_text, &rc_len, &err) < 0) {
		free(err);
		err = NULL;
	}
	free(f);
	struct buf npmrc;
	buf_init(&npmrc);
	if (rc_text != NULL) {
		buf_add(&npmrc, rc_text, rc_len);
		if (rc_len > 0 && rc_text[rc_len - 1] != '\n')
			buf_addc(&npmrc, '\n');
	}
	free(rc_text);
	buf_adds(&npmrc,
	    "# bitsvault: every package comes from the bundle (deps/npm)\n"
	    "offline=true\naudit=false\nfund=false\nupdate-notifier=false\n");
	cpath = xasprintf("app/%s%s.npmrc", path, *path ? "/" : "");
	add_config(q, cpath, npmrc.data, npmrc.len);
	free(cpath);
	buf_free(&npmrc);
	json_decref(pkg);
	rc = 0;
	goto out;

read_failed:
	if (err != NULL) {
		fail(q, "server", "UnknownError", "%s", err);
		free(err);
	}
out:
	npm_lock_clear(&lock);
	free(pkg_text);
	free(lock_text);
	free(path);
	return rc;
}

/* Step 3: every packages.npm path (default the root). 0 or -1. */
static int
fetch_npm(struct rq *q)
{
	json_t *paths = json_object_get(q->req->packages, "npm"), *v;
	size_t i;

	if (json_array_size(paths) == 0 && npm_path(q, ".") != 0)
		return -1;
	json_array_foreach(paths, i, v)
	{
		if (npm_path(q, json_string_value(json_object_get(v, "path"))) != 0)
			return -1;
	}
	for (size_t k = 0; k < BV_NELEM(npm_env); k++)
		json_object_set_new(q->env, npm_env[k][0],
		    json_pack("{s:s, s:s}", "value", npm_env[k][1], "kind", "literal"));
	return 0;
}

/* ---- generic ------------------------------------------------------------------------ */

/* The repository's name: its URL's last segment without ".git". New string. */
static char *
repo_name(const char *repo)
{
	size_t n = strlen(repo);

	while (n > 0 && repo[n - 1] == '/')
		n--;
	size_t start = n;
	while (start > 0 && repo[start - 1] != '/' && repo[start - 1] != ':')
		start--;
	if (n - start > 4 && strncmp(repo + n - 4, ".git", 4) == 0)
		n -= 4;
	return n > start ? xstrndup(repo + start, n - start) : xstrdup("app");
}

/* One artifact of a lockfile: the URL checked, then into the store and the bundle.
 * *last_ok: generic_url_check's memory. 0 or -1. */
static int
generic_get(struct rq *q, const char *file, size_t idx, const struct generic_artifact *a,
    char **last_ok, json_t *deps)
{
	unsigned char sha256[32];
	int64_t size = 0;
	char *err = NULL, *computed = NULL, hex[65];
	char *path = xasprintf("deps/generic/%s", a->filename);
	char *what = xasprintf("generic artifact %s", a->filename);
	int rc = -1;

	switch (generic_url_check(a->url, q->w->cfg->load_allow_private, last_ok, &err)) {
	case GENERIC_URL_OK:
		break;
	case GENERIC_URL_REFUSED:
		fail(q, "client", "InvalidRequestData",
		    "%s (line %zu): the download_url of artifact %zu (%s) cannot be used: %s", file,
		    a->line, idx, a->filename, err);
		goto out;
	case GENERIC_URL_UNRESOLVED:
		fail(q, "server", "NetworkError", "Failed to download the %s: %s", what, err);
		goto out;
	}
	/* Another packages.generic path's file of the same name: the same bytes, or a clash. */
	struct bundle_file *other = find_file(q, path);
	if (other != NULL) {
		if (strncmp(a->checksum, "sha256:", 7) != 0 ||
		    !hex_decode(a->checksum + 7, sha256, 32) ||
		    memcmp(sha256, other->sha256, 32) != 0) {
			fail(q, "client", "InvalidRepoStructure",
			    "%s (line %zu): the filename \"%s\" of artifact %zu is already used by "
			    "another artifacts.lock.yaml of this request (give both the same sha256 "
			    "checksum, or another filename)",
			    file, a->line, a->filename, idx);
			goto out;
		}
		memcpy(sha256, other->sha256, 32);
	} else {
		/* Keyed by checksum alone: the same bytes are one download whatever their name
		 * or URL (only strong hashes are accepted, so a checksum names its content). */
		struct dep_get g = {.kind = "generic",
		    .name = "",
		    .version = "",
		    .integrity = a->checksum,
		    .url = a->url,
		    .what = what,
		    .path = path};
		if (dep_get(q, &g, sha256, &size, &computed) != 0)
			goto out;
		/* Found under its sha256 too when another lockfile names it that way. */
		hex_encode(sha256, 32, hex);
		char *by256 = xasprintf("sha256:%s", hex);
		int r = strcmp(by256, a->checksum) == 0
		    ? 0
		    : artifacts_put(q->w->db, "generic", "", "", by256, sha256, size, &err);
		free(by256);
		if (r != 0) {
			db_fail(q, "recording a downloaded dependency", err);
			goto out;
		}
	}
	hex_encode(sha256, 32, hex);
	char *checksum = xasprintf("sha256:%s", hex);
	json_array_append_new(deps,
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:n}", "name", a->filename, "type", "generic",
		"version", a->url, "download_url", a->url, "checksum", checksum, "dev", false,
		"replaces"));
	free(checksum);
	rc = 0;
out:
	free(computed);
	free(err);
	free(what);
	free(path);
	return rc;
}

/* Step 4 for one packages.generic path: its artifacts.lock.yaml. 0 or -1. */
static int
generic_path(struct rq *q, const char *raw_path)
{
	char *path = clean_path(raw_path), *err = NULL, *text = NULL, *file = NULL;
	char *last_ok = NULL;
	struct generic_lock lock = {0};
	unsigned int mode;
	unsigned char id[20];
	size_t len;
	int rc = -1;

	if (path == NULL) {
		fail(q, "client", "InvalidRequestData",
		    "The path \"%s\" in packages.generic must be relative and stay inside the "
		    "repository",
		    raw_path ? raw_path : "");
		goto out;
	}
	const char *shown = *path ? path : ".";
	if (!say(q, "Fetching the generic artifacts at the \"%s\" directory", shown))
		goto out;
	if (rtree_lookup(q->tree, path, &mode, id) != 1 || mode != GIT_MODE_DIR) {
		fail(q, "client", "InvalidRepoStructure",
		    "The directory \"%s\" given in packages.generic does not exist in the "
		    "repository",
		    shown);
		goto out;
	}
	file = xasprintf("%s%s%s", path, *path ? "/" : "", GENERIC_LOCK_FILE);
	int r = rtree_read(q->tree, file, MAX_MANIFEST, &text, &len, &err);
	if (r < 0) {
		fail(q, "server", "UnknownError", "%s", err);
		goto out;
	}
	if (r == 0) {
		fail(q, "client", "InvalidRepoStructure",
		    "The %s file must be present for the generic package manager (in \"%s\")",
		    GENERIC_LOCK_FILE, shown);
		goto out;
	}
	if (generic_lock_parse(text, len, file, &lock, &err) != 0) {
		fail(q, "client", "InvalidFileFormat", "%s", err);
		goto out;
	}
	json_t *deps = json_array();
	for (size_t i = 0; i < lock.n; i++) {
		if (generic_get(q, file, i + 1, &lock.items[i], &last_ok, deps) != 0 ||
		    !say_count(q, "Fetching generic artifacts", i + 1, lock.n)) {
			json_decref(deps);
			goto out;
		}
	}
	char *name = repo_name(q->req->repo);
	json_t *p = json_pack("{s:s, s:s, s:s, s:o}", "name", name, "type", "generic", "version",
	    q->req->ref, "dependencies", deps);
	free(name);
	if (*path)
		json_object_set_new(p, "path", json_string(path));
	json_array_append_new(q->packages, p);
	rc = 0;
out:
	generic_lock_clear(&lock);
	free(last_ok);
	free(text);
	free(file);
	free(err);
	free(path);
	return rc;
}

/* Step 4: every packages.generic path (default the root). 0 or -1. */
static int
fetch_generic(struct rq *q)
{
	json_t *paths = json_object_get(q->req->packages, "generic"), *v;
	size_t i;

	if (json_array_size(paths) == 0)
		return generic_path(q, ".");
	json_array_foreach(paths, i, v)
	{
		if (generic_path(q, json_string_value(json_object_get(v, "path"))) != 0)
			return -1;
	}
	return 0;
}

/* ---- the end ------------------------------------------------------------------------ */

/* What was found, recorded: environment variables (PATCH), configuration files and
 * packages data (Postgres). 0 or -1. */
static int
record(struct rq *q)
{
	char *err = NULL;
	json_t *seen = json_object();
	size_t i, j;
	json_t *p, *d;

	if (json_object_size(q->env) > 0) {
		json_t *body = json_pack("{s:O}", "environment_variables", q->env);
		int r = api_patch(q, body, true, FAIL_PATCH_MS);
		json_decref(body);
		if (q->stale)
			return -1;
		if (r != 0) {
			q->retry = true;
			return fail(q, "server", "UnknownError",
			    "The API did not take the environment variables");
		}
	}
	if (json_array_size(q->config_files) > 0 &&
	    requests_add_config_files(q->w->db, q->id, q->config_files, &err) != 0)
		return db_fail(q, "recording the configuration files", err);
	/* Cachito counts the distinct dependencies over all packages. */
	json_array_foreach(q->packages, i, p)
	{
		json_array_foreach(json_object_get(p, "dependencies"), j, d)
		{
			char *key =
			    xasprintf("%s\n%s\n%s", json_string_value(json_object_get(d, "type")),
				json_string_value(json_object_get(d, "name")),
				json_string_value(json_object_get(d, "version")));
			json_object_set_new(seen, key, json_true());
			free(key);
		}
	}
	json_t *data = json_pack("{s:O}", "packages", q->packages);
	int r = requests_set_packages_data(q->w->db, q->id, data,
	    (int64_t)json_array_size(q->packages), (int64_t)json_object_size(seen), &err);
	json_decref(data);
	json_decref(seen);
	if (r != 0)
		return db_fail(q, "recording the packages", err);
	return 0;
}

/* Tells the API the request failed (Cachito's failed PATCH), unless it is not ours to. */
static void
report_failure(struct rq *q)
{
	char *line = xasprintf("Failed: %s", q->reason);
	rlog(q, line);
	free(line);
	char *clipped = report_clip(q->reason, REPORT_MAX_ERROR);
	json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "state", REQUEST_FAILED, "state_reason",
	    clipped, "error_origin", q->origin, "error_type", q->type);
	free(clipped);
	api_patch(q, body, true, FAIL_PATCH_MS);
	json_decref(body);
}

/* ---- include-git-dir ---------------------------------------------------------------- */

/* app/.git (worker/gitdir.c): the commit's history and tags, packed. 0 or -1. */
static int
build_git_dir(struct rq *q)
{
	char *reason = NULL;

	if (!say(q, "Packing the git history for app/.git"))
		return -1;
	switch (gitdir_build(
	    q->run, q->tree, q->req->repo, q->commit, q->tags, q->ntags, &q->git, &reason)) {
	case JOB_OUTCOME_DONE:
		q->has_git = true;
		return 0;
	case JOB_OUTCOME_CANCELLED:
		q->cancelled = true;
		gitdir_clear(&q->git);
		return -1;
	case JOB_OUTCOME_RETRY:
		q->retry = true;
		/* fall through */
	default:
		gitdir_clear(&q->git);
		fail(q, "server", "UnknownError", "app/.git cannot be built: %s",
		    reason ? reason : "the pack failed");
		free(reason);
		return -1;
	}
}

/* The "request" handler (see the top of the file). */
enum job_outcome
request_run(struct job_run *run, json_t **result, char **reason)
{
	struct rq q = {.run = run, .w = run->w};
	char *err = NULL, hex[65];
	enum job_outcome outcome = JOB_OUTCOME_FAILED;
	unsigned char sha256[32];
	uint64_t size = 0;
	bool cancelled = false;

	q.packages = json_array();
	q.config_files = json_array();
	q.env = json_object();
	q.file_index = json_object();
	json_t *rid = json_object_get(run->job->params, "request_id");
	if (!json_is_integer(rid)) {
		*reason = xstrdup("bad job parameters: request_id is required");
		goto free;
	}
	q.id = json_integer_value(rid);
	int found = requests_get(q.w->db, q.id, &q.req, &err);
	if (found <= 0) {
		if (found < 0) {
			log_warn_id(run->log_id, "request %lld: %s", (long long)q.id, err);
			free(err);
			if (worker_db_transient(q.w)) {
				*reason = xstrdup("the database was unavailable");
				outcome = JOB_OUTCOME_RETRY;
				goto free;
			}
		}
		*reason = xasprintf("request %lld cannot be read", (long long)q.id);
		goto free;
	}
	if (strcmp(q.req->state, REQUEST_IN_PROGRESS) != 0) {
		*reason = xasprintf("the request is %s, no longer in progress", q.req->state);
		goto free;
	}
	log_info_id(
	    run->log_id, "request %lld: %s at %s", (long long)q.id, q.req->repo, q.req->ref);

	if (fetch_source(&q) != 0)
		goto end;
	if (has(q.req->pkg_managers, "git-submodule") && fetch_submodules(&q) != 0)
		goto end;
	if (check_links(&q) != 0)
		goto end;
	if (has(q.req->pkg_managers, "npm") && fetch_npm(&q) != 0)
		goto end;
	if (has(q.req->pkg_managers, "generic") && fetch_generic(&q) != 0)
		goto end;
	if (record(&q) != 0)
		goto end;
	if (has(q.req->flags, "include-git-dir") && build_git_dir(&q) != 0)
		goto end;
	if (!say(&q, "Assembling the bundle archive"))
		goto end;
	if (bundle_write(run, q.tree, q.has_git ? &q.git : NULL, q.files, q.nfiles, sha256, &size,
		&cancelled, &err) != 0) {
		if (cancelled)
			q.cancelled = true;
		fail(&q, "server", "UnknownError", "%s", err);
		free(err);
		goto end;
	}
	hex_encode(sha256, 32, hex);
	{
		char *line = xasprintf(
		    "Bundle written: %llu bytes, sha256 %s", (unsigned long long)size, hex);
		rlog(&q, line);
		free(line);
	}
	*result = json_pack("{s:s, s:I}", "bundle_sha256", hex, "bundle_size", (json_int_t)size);
	outcome = JOB_OUTCOME_DONE;
	goto free;

end:
	if (q.stale) {
		*reason = xstrdup("the request is no longer in progress");
		outcome = JOB_OUTCOME_FAILED;
	} else if (q.cancelled) {
		outcome = JOB_OUTCOME_CANCELLED;
	} else if (q.retry || worker_stop) {
		*reason = xstrdup(q.reason ? q.reason : "the worker stopped");
		outcome = JOB_OUTCOME_RETRY;
	} else {
		if (q.reason == NULL)
			fail(&q, "server", "UnknownError", "An unknown error occurred");
		report_failure(&q);
		*reason = xstrdup(q.reason);
		outcome = JOB_OUTCOME_FAILED;
	}
free:
	for (size_t i = 0; i < q.nfiles; i++)
		free(q.files[i].path);
	free(q.files);
	free(q.reason);
	rtree_free(q.tree);
	if (q.has_git)
		gitdir_clear(&q.git);
	load_tags_free(q.tags, q.ntags);
	request_free(q.req);
	json_decref(q.packages);
	json_decref(q.config_files);
	json_decref(q.env);
	json_decref(q.file_index);
	httpc_free(q.hc_npm);
	httpc_free(q.hc_generic);
	return outcome;
}
