/* requests.h: the one place that knows the Requests tables (db/migrations/0005_requests.sql):
 * Cachito's requests with their state history, configuration files, environment
 * variables, packages data and logs, and the index of dependency artifacts held in the
 * store. Used by the API (api/routes_requests*.c: create, read, list, Cachito's PATCH) and
 * by workers (worker/request*.c: read the request, record what they found, log). */
#ifndef BV_REQUESTS_H
#define BV_REQUESTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/db.h"

/* Cachito's states (research cachito.md §1.1). */
#define REQUEST_IN_PROGRESS "in_progress"
#define REQUEST_COMPLETE "complete"
#define REQUEST_FAILED "failed"
#define REQUEST_STALE "stale"

struct request {
	int64_t id;
	int64_t job_id; /* 0 when none */
	char *repo;
	char ref[41];
	json_t *pkg_managers; /* array of strings */
	json_t *packages; /* object: the "packages" parameter ({"npm": [{"path": "."}]}) */
	json_t *flags; /* array of strings */
	json_t *dependency_replacements; /* array */
	char *user; /* NULL when none */
	char *submitted_by; /* NULL when none */
	char *state; /* REQUEST_* */
	char *state_reason;
	double created; /* unix seconds (for comparisons) */
	double updated;
	char created_text[32]; /* Cachito's form, UTC, no zone, microseconds:
				* "2019-09-17T18:52:57.577851" */
	char updated_text[32];
	int64_t packages_count; /* -1 when not set */
	int64_t dependencies_count; /* -1 when not set */
	char *error_origin; /* NULL when none */
	char *error_type;
	json_t *environment_variables; /* {NAME: {"value", "kind"}} */
	json_t *packages_data; /* {"packages": [...]} or NULL */
	bool has_source; /* source_dir set */
	unsigned char source_dir[20];
	/* the job's bundle, when the job is done and has one */
	bool has_bundle;
	char bundle_sha256[65];
	int64_t bundle_size;
};
void request_free(struct request *r);

/* Creates a request and its job in one transaction: the requests row (state in_progress,
 * reason "The request was initiated", one history row) and a queued job of kind
 * "request" with params {"request_id": id}. fields is the validated POST body (repo, ref,
 * pkg_managers, packages, flags, dependency_replacements; user and submitted_by as the
 * API decided). *out is the new request (its job_id set). 0 or -1 + *errstr. The caller
 * enqueues the job in Redis afterwards. */
int requests_create(struct db *db, const json_t *fields, const char *user, const char *submitted_by,
    struct request **out, char **errstr) BV_MUSTCHECK;

/* By id: 1 found (*out), 0 not found, -1 error. */
int requests_get(struct db *db, int64_t id, struct request **out, char **errstr) BV_MUSTCHECK;
/* The request worked on by a job: 1, 0 or -1. */
int requests_get_by_job(
    struct db *db, int64_t job_id, struct request **out, char **errstr) BV_MUSTCHECK;

/* The history: [{"state", "state_reason", "updated" (Cachito's form)}], newest first. */
int requests_history(struct db *db, int64_t id, json_t **history, char **errstr) BV_MUSTCHECK;

/* GET /requests: filters (NULL / -1 / empty for none), newest first, one page.
 *   state              REQUEST_* or NULL
 *   repo, ref          exact match or NULL
 *   pkg_managers       array of names the request must all have, or NULL
 *   created_from/to    unix seconds, or < 0
 *   error_origin/type  exact match or NULL
 * *out gets *n requests (free each with request_free, then the array), *total the count
 * over all pages. 0 or -1. */
struct request_filter {
	const char *state;
	const char *repo;
	const char *ref;
	const json_t *pkg_managers;
	double created_from, created_to;
	const char *error_origin; /* "client" or "server", or NULL */
	const char *error_type; /* e.g. "InvalidRepoStructure", or NULL */
	bool with_packages; /* read packages_data too (the verbose form); else NULL */
};
int requests_list(struct db *db, const struct request_filter *f, int64_t limit, int64_t offset,
    struct request ***out, size_t *n, int64_t *total, char **errstr) BV_MUSTCHECK;
/* GET /requests/latest: the newest request whose repo names repo_name ("org/repo": the URL
 * ends with "/org/repo" or "/org/repo.git", or "org/repo" after a ':' for scp-like URLs)
 * at ref. 1, 0 or -1. */
int requests_latest(struct db *db, const char *repo_name, const char *ref, struct request **out,
    char **errstr) BV_MUSTCHECK;

/* Cachito's PATCH (research cachito.md §1.1-1.5), validated and applied in one transaction
 * (SELECT ... FOR UPDATE):
 *   state, state_reason  both or neither (the API checks); same state and reason as now:
 *                        a no-op; otherwise the transition table, a new history row,
 *                        updated = now()
 *   env                  merged into environment_variables (added, never removed)
 *   packages_count, dependencies_count  set when >= 0
 *   error_origin, error_type            set when non-NULL
 * Going stale (or failed) also expires the request's job bundle (its bundles row goes,
 * GC collects the blob later) and, for stale, drops the log.
 * Returns 0; -1 with *http_status 404 (no request), 400 (*errstr is Cachito's message:
 * "State transition is not allowed from complete to in_progress.") or 503. */
int requests_patch(struct db *db, int64_t id, const char *state, const char *state_reason,
    const json_t *env, int64_t packages_count, int64_t dependencies_count, const char *error_origin,
    const char *error_type, int *http_status, char **errstr) BV_MUSTCHECK;

/* Configuration files: [{"path", "type": "base64", "content"}], sorted by path. Adding
 * replaces a file of the same path. 0 or -1. */
int requests_add_config_files(
    struct db *db, int64_t id, const json_t *files, char **errstr) BV_MUSTCHECK;
int requests_config_files(struct db *db, int64_t id, json_t **files, char **errstr) BV_MUSTCHECK;

/* What a worker found: {"packages": [{"name", "type", "version", "path"?, "dependencies":
 * [{"name", "type", "version", "dev"?, "replaces": null}]}]} (research cachito.md §2), the
 * counts, and app/'s tree id. 0 or -1. */
int requests_set_packages_data(struct db *db, int64_t id, const json_t *packages_data,
    int64_t packages_count, int64_t dependencies_count, char **errstr) BV_MUSTCHECK;
int requests_set_source(
    struct db *db, int64_t id, const unsigned char dir[20], char **errstr) BV_MUSTCHECK;

/* The request's log: a line (no newline needed) appended, up to 10,000 lines (the last
 * one then says the log was cut; later lines are dropped); all lines as text (each ending
 * in '\n', "" when none). 0 or -1. */
int requests_log(struct db *db, int64_t id, const char *line, char **errstr) BV_MUSTCHECK;
int requests_log_text(
    struct db *db, int64_t id, char **text, size_t *len, char **errstr) BV_MUSTCHECK;

/* Staleness (the workers' expiry duty): requests complete, or stuck in_progress, whose
 * updated is older than lifetime_s, and failed ones older than lifetime_failed_s, become
 * stale ("The request has expired"), up to limit at a time, with the same side effects as
 * a stale PATCH. *n gets how many. 0 or -1. */
int requests_expire(struct db *db, int64_t lifetime_s, int64_t lifetime_failed_s, int limit, int *n,
    char **errstr) BV_MUSTCHECK;

/* Dependency artifacts in the store (table artifacts). kind "npm": name, version and the
 * lockfile's integrity; "generic": "", "" and the checksum ("sha256:<hex>"; a file given
 * by sha384/sha512 is also recorded under its sha256), so the same bytes are downloaded
 * once whatever their name or URL. Find: 1 with
 * sha256 and size, 0 when unknown, -1 error. Put: records it (no-op when there). */
int artifacts_find(struct db *db, const char *kind, const char *name, const char *version,
    const char *integrity, unsigned char sha256[32], int64_t *size, char **errstr) BV_MUSTCHECK;
int artifacts_put(struct db *db, const char *kind, const char *name, const char *version,
    const char *integrity, const unsigned char sha256[32], int64_t size,
    char **errstr) BV_MUSTCHECK;

/* One downloader per artifact across workers: a session advisory lock on the artifact's
 * key (hashed), taken around find + download + put, so concurrent requests needing the
 * same dependency download it once (the others wait, then find it). Blocks; 0 or -1.
 * Unlock never fails loudly. */
int artifacts_lock(struct db *db, const char *kind, const char *name, const char *version,
    const char *integrity, char **errstr) BV_MUSTCHECK;
void artifacts_unlock(
    struct db *db, const char *kind, const char *name, const char *version, const char *integrity);

#endif
