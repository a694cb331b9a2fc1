/* jobstore.h: the one place that knows the jobs and bundles tables' columns. Used by the
 * API (create, read, validated PATCH) and by workers (read params, find lost jobs). */
#ifndef BV_JOBSTORE_H
#define BV_JOBSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/db.h"
#include "shared/jobs.h"
#include "shared/store.h"

struct job {
	int64_t id;
	char *kind; /* "cook", later "load", "request", ... */
	char *dedup_key; /* "cook:directory:<hex>:tar.gz"; NULL when none */
	enum job_state state;
	json_t *params; /* owned */
	json_t *result; /* owned; NULL until done */
	char *progress_message; /* NULL when none */
	char *error; /* failure reason a user can read; NULL when none */
	int attempts;
	char *worker; /* last worker that claimed it */
	double created_at; /* unix seconds */
	double updated_at;
	double started_at; /* 0 when never */
	double finished_at; /* 0 when not final */
	/* bundle, for cook jobs that are done */
	bool has_bundle;
	char bundle_sha256[65];
	int64_t bundle_size;
};

void job_free(struct job *job);

/* Inserts a queued job unless a live one (queued, running or done) has the same
 * dedup_key; either way *out is that job and *created says which. Safe under concurrent
 * calls: one row per key. 0 or -1 + *errstr. */
int jobstore_create(struct db *db, const char *kind, const char *dedup_key, const json_t *params,
    struct job **out, bool *created, char **errstr) BV_MUSTCHECK;
/* By id: 1 found, 0 not found, -1 error. */
int jobstore_get(struct db *db, int64_t id, struct job **out, char **errstr) BV_MUSTCHECK;
/* Newest job with that dedup_key (any state): 1, 0 or -1. */
int jobstore_find(
    struct db *db, const char *dedup_key, struct job **out, char **errstr) BV_MUSTCHECK;

/* A worker's PATCH, validated against the state machine inside one transaction
 * (SELECT ... FOR UPDATE):
 *   state            new state or JOB_STATE_INVALID for "no state change" (a progress
 *                    report, which also renews the job's lease)
 *   worker           the calling worker's name, or NULL (an operator's change)
 *   progress_message replaces the message when non-NULL
 *   error            the failure reason when state is failed, the reason for a release
 *                    when state is queued
 *   result           stored when done; for cook jobs {"bundle_sha256", "bundle_size"}
 *                    also creates the bundles row
 *   max_attempts     a claim (-> running) past this many attempts fails the job instead
 *   lease_s          a running job untouched for this long may be claimed by another
 *                    worker
 * Ownership: a job running under worker A answers 409 to any change named by worker B,
 * unless B claims it (state running) after A's lease ran out. A's own repeated claim is
 * a no-op that renews the lease.
 * Returns 0 with *out the job after the change; -1 with *http_status 404 (no job),
 * 400 (illegal transition or bad result, *errstr says which in words for the client),
 * 409 (held by another worker) or 503 (database, *errstr). */
int jobstore_patch(struct db *db, int64_t id, enum job_state state, const char *worker,
    const char *progress_message, const char *error, const json_t *result, int max_attempts,
    int64_t lease_s, struct job **out, int *http_status, char **errstr) BV_MUSTCHECK;

/* One page of cook jobs for GET /vault/{kind}: for each bundle (dedup_key) its newest
 * job, newest first, expired ones left out (they are gone, as in the Vault).
 *   object_kind  "directory", ...
 *   format       NULL for any
 *   state        JOB_STATE_INVALID for any live state, else only that one
 * *out gets *n jobs (free each with job_free, then the array); *total the count over all
 * pages. 0 or -1 + *errstr. */
int jobstore_list_cooks(struct db *db, const char *object_kind, const char *format,
    enum job_state state, int64_t limit, int64_t offset, struct job ***out, size_t *n,
    int64_t *total, char **errstr) BV_MUSTCHECK;

/* Jobs queued or running whose updated_at is older than min_age_s: ids into a new array
 * (*n entries), for the reconciler. 0 or -1. */
int jobstore_list_unfinished(
    struct db *db, int64_t min_age_s, int64_t **ids, size_t *n, char **errstr) BV_MUSTCHECK;
/* Records a download of the job's bundle (for expiry by last use). */
int jobstore_touch_bundle(struct db *db, int64_t job_id, char **errstr) BV_MUSTCHECK;

/* notify_url callbacks (table job_notifications, DESIGN §4): registered by the API's
 * cook, sent by one worker at a time once the job is final. */
struct job_notification {
	int64_t id;
	int64_t job_id;
	char *url;
	int attempts; /* failed attempts so far */
	char *object_kind; /* the job's params: "directory", 40 hex, "tar.gz" */
	char *object_id;
	char *format;
};
void job_notification_free(struct job_notification *n);
/* Registers url for the job, due at once (it is sent when the job is final). The same url
 * again for the job is one row: still pending, nothing changes; already sent or failed,
 * it is armed again (a new request for the news). 0 or -1 + *errstr. */
int jobstore_notify_add(struct db *db, int64_t job_id, const char *url, char **errstr) BV_MUSTCHECK;
/* Claims up to limit pending notifications that are due and whose job is done or failed
 * (FOR UPDATE SKIP LOCKED), moving their next_at lease_s ahead so that a sender that dies
 * leaves them to be sent again later. *out gets *n entries (free each with
 * job_notification_free, then the array). 0 or -1 + *errstr. */
int jobstore_notify_claim(struct db *db, int limit, int64_t lease_s, struct job_notification ***out,
    size_t *n, char **errstr) BV_MUSTCHECK;
/* Delivered. */
int jobstore_notify_sent(struct db *db, int64_t id, char **errstr) BV_MUSTCHECK;
/* A failed attempt: attempts + 1 and last_error; failed when final, else due again in
 * delay_ms. */
int jobstore_notify_failed(struct db *db, int64_t id, const char *last_error, bool final,
    int64_t delay_ms, char **errstr) BV_MUSTCHECK;
/* Due again in delay_ms without counting an attempt (the sender could not try). */
int jobstore_notify_release(
    struct db *db, int64_t id, int64_t delay_ms, char **errstr) BV_MUSTCHECK;

/* Expiry, quota and garbage collection (worker/expire.c, worker/gc.c, the sticky
 * routes): the bundles of cooks and of app stash zips (requests expire with their
 * requests, shared/requests.c). A bundle's last use is its last download, else its
 * creation. */
struct bundle_ref {
	int64_t job_id;
	char *dedup_key; /* "cook:directory:<hex>:tar.gz" ("" when none) */
	char sha256[65];
	int64_t size;
	double last_use; /* unix seconds */
	char last_use_s[40]; /* the same, exactly as Postgres has it: for the re-check */
};
/* Frees an array of n bundle_refs from jobstore_list_lru_bundles. */
void jobstore_bundle_refs_free(struct bundle_ref *refs, size_t n);
/* Up to limit non-sticky bundles, least recently used first; when idle_s >= 0, only those
 * unused for more than idle_s seconds; when min_fresh_s > 0, none that was never
 * downloaded and was cooked less than min_fresh_s seconds ago. *out gets *n entries. 0
 * or -1 + *errstr. */
int jobstore_list_lru_bundles(struct db *db, int64_t idle_s, int64_t min_fresh_s, int limit,
    struct bundle_ref **out, size_t *n, char **errstr) BV_MUSTCHECK;
/* Expires a bundle in one statement: its bundles row is deleted and its job, when done,
 * becomes expired (the jobs trigger wakes waiters). Only while the bundle is still not
 * sticky and, under the row lock, still matches what the caller listed: unused for idle_s
 * seconds (idle_s >= 0), last used at last_use_s (non-NULL: a download since forbids it),
 * not cooked within min_fresh_s seconds unless downloaded (min_fresh_s > 0). 1 expired, 2
 * only the row dropped (the job was no longer done: the API had expired it), 0 left
 * alone, -1 + *errstr. */
int jobstore_expire_bundle(struct db *db, int64_t job_id, int64_t idle_s, const char *last_use_s,
    int64_t min_fresh_s, char **errstr) BV_MUSTCHECK;
/* Bytes of all bundles (*total), of the sticky ones (*sticky) and of those quota eviction
 * must spare as fresh (never downloaded, cooked within min_fresh_s; *fresh). 0 or -1. */
int jobstore_bundles_usage(struct db *db, int64_t min_fresh_s, int64_t *total, int64_t *sticky,
    int64_t *fresh, char **errstr) BV_MUSTCHECK;
/* Sets or clears the job's bundle's sticky flag: 1 done, 0 no bundle row, -1. */
int jobstore_set_sticky(struct db *db, int64_t job_id, bool sticky, char **errstr) BV_MUSTCHECK;
/* Which of n store blobs a contents row or a bundles row names: referenced[i] for each,
 * in one query (the mark of garbage collection, batch by batch). 0 or -1 + *errstr. */
int jobstore_blobs_referenced(struct db *db, const unsigned char (*sha256)[32], size_t n,
    bool *referenced, char **errstr) BV_MUSTCHECK;
/* Whether no contents row and no bundles row exist (*empty): a collector must not sweep a
 * store that has blobs against such a database. 0 or -1 + *errstr. */
int jobstore_refs_empty(struct db *db, bool *empty, char **errstr) BV_MUSTCHECK;
/* Binds the store to this database before anything deletes from it (table
 * store_identity, 0004_store_id.sql, and store_get_id): both have the same identity ->
 * 1. Neither has one -> both get a new one (1), unless the database holds no contents nor
 * bundles while the store holds blobs (0: an empty or wrong database). The identities
 * differ, or only one side has one -> 0. *errstr says why on 0 (for the operator) and on
 * -1 (an error: Postgres or the store could not be read). */
int jobstore_bind_store(struct db *db, struct store *st, char **errstr) BV_MUSTCHECK;

#endif
