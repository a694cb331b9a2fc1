/* jobstore.c: the jobs and bundles tables. Every state change goes through
 * jobstore_patch, which validates it against shared/jobs.c inside a transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/jobstore.h"
#include "shared/log.h"

#define JOB_COLUMNS                                                                                \
	"j.id, j.kind, j.dedup_key, j.state, j.params::text, j.result::text,"                      \
	" j.progress_message, j.error, j.attempts, j.worker,"                                      \
	" extract(epoch from j.created_at), extract(epoch from j.updated_at),"                     \
	" coalesce(extract(epoch from j.started_at), 0),"                                          \
	" coalesce(extract(epoch from j.finished_at), 0),"                                         \
	" encode(b.sha256, 'hex'), b.size"
#define JOB_FROM " FROM jobs j LEFT JOIN bundles b ON b.job_id = j.id "
#define LIVE_STATES "('queued', 'running', 'done')"

/* Frees a job. */
void
job_free(struct job *job)
{
	if (job == NULL)
		return;
	free(job->kind);
	free(job->dedup_key);
	json_decref(job->params);
	json_decref(job->result);
	free(job->progress_message);
	free(job->error);
	free(job->worker);
	free(job);
}

/* A text column, or NULL for SQL NULL. */
static char *
col_str(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

/* A job from one row of JOB_COLUMNS. */
static struct job *
job_from_row(const PGresult *res, int row)
{
	struct job *job = xcalloc(1, sizeof *job);
	int64_t v = 0;

	if (!parse_int64(PQgetvalue(res, row, 0), &job->id))
		job->id = 0;
	job->kind = col_str(res, row, 1);
	job->dedup_key = col_str(res, row, 2);
	job->state = job_state_parse(PQgetvalue(res, row, 3));
	job->params = json_loads(PQgetvalue(res, row, 4), 0, NULL);
	if (job->params == NULL)
		job->params = json_object();
	job->result =
	    PQgetisnull(res, row, 5) ? NULL : json_loads(PQgetvalue(res, row, 5), 0, NULL);
	job->progress_message = col_str(res, row, 6);
	job->error = col_str(res, row, 7);
	job->attempts = atoi(PQgetvalue(res, row, 8));
	job->worker = col_str(res, row, 9);
	job->created_at = atof(PQgetvalue(res, row, 10));
	job->updated_at = atof(PQgetvalue(res, row, 11));
	job->started_at = atof(PQgetvalue(res, row, 12));
	job->finished_at = atof(PQgetvalue(res, row, 13));
	if (!PQgetisnull(res, row, 14)) {
		job->has_bundle = true;
		snprintf(
		    job->bundle_sha256, sizeof job->bundle_sha256, "%s", PQgetvalue(res, row, 14));
		if (parse_int64(PQgetvalue(res, row, 15), &v))
			job->bundle_size = v;
	}
	return job;
}

/* Runs a query of JOB_COLUMNS; 1 with *out when a row came back, 0 when none, -1. */
static int
query_one(struct db *db, const char *sql, int nparams, const char *const *params, struct job **out,
    char **errstr)
{
	PGresult *res = db_exec(db, sql, nparams, params, false, errstr);
	int found;

	if (res == NULL)
		return -1;
	found = PQntuples(res) > 0;
	*out = found ? job_from_row(res, 0) : NULL;
	PQclear(res);
	return found;
}

/* By id. */
int
jobstore_get(struct db *db, int64_t id, struct job **out, char **errstr)
{
	char ids[24];
	const char *p[] = {ids};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	return query_one(db, "SELECT " JOB_COLUMNS JOB_FROM "WHERE j.id = $1", 1, p, out, errstr);
}

/* Newest job for a key. */
int
jobstore_find(struct db *db, const char *dedup_key, struct job **out, char **errstr)
{
	const char *p[] = {dedup_key};
	return query_one(db,
	    "SELECT " JOB_COLUMNS JOB_FROM "WHERE j.dedup_key = $1 ORDER BY j.id DESC LIMIT 1", 1,
	    p, out, errstr);
}

/* Insert unless a live job has the key; the partial unique index settles races. */
int
jobstore_create(struct db *db, const char *kind, const char *dedup_key, const json_t *params,
    struct job **out, bool *created, char **errstr)
{
	char *ptext = json_dumps(params, JSON_COMPACT);
	const char *p[] = {kind, dedup_key, ptext};
	int rc = -1;

	*out = NULL;
	*created = false;
	/* A live job with the key may turn failed between our INSERT and SELECT: retry. */
	for (int attempt = 0; attempt < 5; attempt++) {
		PGresult *res = db_exec(db,
		    "INSERT INTO jobs (kind, dedup_key, params) VALUES ($1, $2, $3::jsonb)"
		    " ON CONFLICT (dedup_key) WHERE state IN " LIVE_STATES " DO NOTHING"
		    " RETURNING id",
		    3, p, false, errstr);
		if (res == NULL)
			goto out;
		if (PQntuples(res) == 1) {
			int64_t id = 0;
			bool ok = parse_int64(PQgetvalue(res, 0, 0), &id);
			PQclear(res);
			if (!ok || jobstore_get(db, id, out, errstr) != 1) {
				if (ok && *errstr == NULL)
					*errstr = xstrdup("job vanished after insert");
				goto out;
			}
			*created = true;
			rc = 0;
			goto out;
		}
		PQclear(res);
		const char *q[] = {dedup_key};
		int found = query_one(db,
		    "SELECT " JOB_COLUMNS JOB_FROM
		    "WHERE j.dedup_key = $1 AND j.state IN " LIVE_STATES
		    " ORDER BY j.id DESC LIMIT 1",
		    1, q, out, errstr);
		if (found < 0)
			goto out;
		if (found == 1) {
			rc = 0;
			goto out;
		}
	}
	*errstr = xstrdup("could not create the job: its key kept changing state");
out:
	free(ptext);
	return rc;
}

/* A cook's result must name its bundle: {"bundle_sha256": 64 hex, "bundle_size": >= 0}. */
static int
check_cook_result(const json_t *result, const char **sha, json_int_t *size, char **errstr)
{
	json_t *s = json_object_get(result, "bundle_sha256");
	json_t *n = json_object_get(result, "bundle_size");

	if (!json_is_string(s) || !is_hex(json_string_value(s), 64) || !json_is_integer(n) ||
	    json_integer_value(n) < 0) {
		*errstr = xstrdup("result must have bundle_sha256 (64 hex digits) and bundle_size "
				  "(an integer >= 0)");
		return -1;
	}
	*sha = json_string_value(s);
	*size = json_integer_value(n);
	return 0;
}

/* The body of jobstore_patch, inside the transaction. Returns 0 or -1 with *http_status. */
static int
patch_locked(struct db *db, int64_t id, enum job_state to, const char *worker, const char *progress,
    const char *error, const json_t *result, int max_attempts, int64_t lease_s, int *http_status,
    char **errstr)
{
	char ids[24], att[16], lease[24];
	const char *p1[] = {ids};
	const char *pl[] = {ids, lease};
	PGresult *res;
	enum job_state from;
	int attempts;
	bool lease_over;
	char *kind, *last_error, *holder;

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	snprintf(lease, sizeof lease, "%lld", (long long)lease_s);
	res = db_exec(db,
	    "SELECT state, attempts, kind, error, worker,"
	    " updated_at < now() - make_interval(secs => $2::double precision)"
	    " FROM jobs WHERE id = $1 FOR UPDATE",
	    2, pl, false, errstr);
	if (res == NULL) {
		*http_status = 503;
		return -1;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		*http_status = 404;
		*errstr = xasprintf("job %lld not found", (long long)id);
		return -1;
	}
	from = job_state_parse(PQgetvalue(res, 0, 0));
	attempts = atoi(PQgetvalue(res, 0, 1));
	kind = xstrdup(PQgetvalue(res, 0, 2));
	last_error = col_str(res, 0, 3);
	holder = col_str(res, 0, 4);
	lease_over = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	PQclear(res);

	int rc = -1;
	*http_status = 500;
	bool other = worker != NULL && holder != NULL && strcmp(worker, holder) != 0;
	if (from == JOB_RUNNING && other && !(to == JOB_RUNNING && lease_over)) {
		/* A late or duplicate delivery: the job is someone else's while their lease
		 * lasts, and what they report is what counts. */
		*http_status = 409;
		*errstr = xasprintf("job %lld is held by another worker", (long long)id);
		goto out;
	}
	if (from == JOB_RUNNING && to == JOB_RUNNING && !other)
		to = JOB_STATE_INVALID; /* its own repeated claim: renew the lease */
	if (to == JOB_STATE_INVALID) {
		/* A progress report: only a running job has progress. */
		if (from != JOB_RUNNING) {
			*http_status = 400;
			*errstr = xasprintf(
			    "job %lld is %s, not running", (long long)id, job_state_name(from));
			goto out;
		}
		/* Even with no message, the report renews the lease (updated_at). */
		const char *p[] = {ids, progress};
		if (db_run(db,
			"UPDATE jobs SET progress_message = coalesce($2, progress_message),"
			" updated_at = now() WHERE id = $1",
			2, p, errstr) != 0)
			goto dberr;
		rc = 0;
		goto out;
	}
	switch (job_transition_check(from, to)) {
	case JOB_TRANSITION_NOOP:
		rc = 0;
		goto out;
	case JOB_TRANSITION_ILLEGAL:
		*http_status = 400;
		*errstr = xasprintf("invalid state transition from %s to %s", job_state_name(from),
		    job_state_name(to));
		goto out;
	case JOB_TRANSITION_OK:
		break;
	}

	if (to == JOB_RUNNING && attempts + 1 > max_attempts) {
		/* Every attempt so far died or was released: give up with the last reason. */
		char *reason = xasprintf("gave up after %d attempts: %s", attempts,
		    last_error ? last_error : "the worker stopped before finishing");
		const char *p[] = {ids, reason};
		int r = db_run(db,
		    "UPDATE jobs SET state = 'failed', error = $2, progress_message = $2,"
		    " finished_at = now(), updated_at = now() WHERE id = $1",
		    2, p, errstr);
		free(reason);
		if (r != 0)
			goto dberr;
		rc = 0;
		goto out;
	}
	snprintf(att, sizeof att, "%d", attempts + 1);
	switch (to) {
	case JOB_RUNNING: {
		const char *p[] = {ids, worker, progress, att};
		if (db_run(db,
			"UPDATE jobs SET state = 'running', worker = $2,"
			" progress_message = coalesce($3, progress_message), attempts = $4,"
			" started_at = coalesce(started_at, now()), updated_at = now() WHERE id = $1",
			4, p, errstr) != 0)
			goto dberr;
		break;
	}
	case JOB_DONE: {
		char *rtext = result ? json_dumps(result, JSON_COMPACT) : NULL;
		const char *p[] = {ids, rtext, progress};
		/* Cooks, requests and app stash bundles end with a bundle (a request's is its
		 * Cachito bundle). */
		if (strcmp(kind, "cook") == 0 || strcmp(kind, "request") == 0 ||
		    strcmp(kind, "stash_bundle") == 0) {
			const char *sha;
			json_int_t size;
			char sizes[24];
			if (check_cook_result(result, &sha, &size, errstr) != 0) {
				free(rtext);
				*http_status = 400;
				goto out;
			}
			snprintf(sizes, sizeof sizes, "%lld", (long long)size);
			const char *bp[] = {ids, sha, sizes};
			if (db_run(db,
				"INSERT INTO bundles (job_id, sha256, size)"
				" VALUES ($1, decode($2, 'hex'), $3)"
				" ON CONFLICT (job_id) DO UPDATE SET sha256 = EXCLUDED.sha256,"
				" size = EXCLUDED.size",
				3, bp, errstr) != 0) {
				free(rtext);
				goto dberr;
			}
		}
		int r = db_run(db,
		    "UPDATE jobs SET state = 'done', result = $2::jsonb, progress_message = $3,"
		    " error = NULL, finished_at = now(), updated_at = now() WHERE id = $1",
		    3, p, errstr);
		free(rtext);
		if (r != 0)
			goto dberr;
		break;
	}
	case JOB_FAILED: {
		const char *reason =
		    error && *error ? error : "the job failed for an unknown reason";
		const char *p[] = {ids, reason};
		if (db_run(db,
			"UPDATE jobs SET state = 'failed', error = $2, progress_message = $2,"
			" finished_at = now(), updated_at = now() WHERE id = $1",
			2, p, errstr) != 0)
			goto dberr;
		break;
	}
	case JOB_QUEUED: {
		/* Released by its worker: keep the reason so a later give-up can name it. */
		const char *p[] = {ids, error, progress};
		if (db_run(db,
			"UPDATE jobs SET state = 'queued', worker = NULL,"
			" error = coalesce($2, error), progress_message = $3, updated_at = now()"
			" WHERE id = $1",
			3, p, errstr) != 0)
			goto dberr;
		break;
	}
	case JOB_EXPIRED: {
		if (db_run(db,
			"UPDATE jobs SET state = 'expired', updated_at = now() WHERE id = $1", 1,
			p1, errstr) != 0)
			goto dberr;
		break;
	}
	default:
		*http_status = 400;
		*errstr = xstrdup("unknown state");
		goto out;
	}
	rc = 0;
	goto out;
dberr:
	*http_status = 503;
out:
	free(kind);
	free(last_error);
	free(holder);
	return rc;
}

/* A validated change of state or progress. */
int
jobstore_patch(struct db *db, int64_t id, enum job_state state, const char *worker,
    const char *progress_message, const char *error, const json_t *result, int max_attempts,
    int64_t lease_s, struct job **out, int *http_status, char **errstr)
{
	*out = NULL;
	if (db_begin(db, errstr) != 0) {
		*http_status = 503;
		return -1;
	}
	if (patch_locked(db, id, state, worker, progress_message, error, result, max_attempts,
		lease_s, http_status, errstr) != 0) {
		db_rollback(db);
		return -1;
	}
	if (db_commit(db, errstr) != 0) {
		db_rollback(db);
		*http_status = 503;
		return -1;
	}
	int found = jobstore_get(db, id, out, errstr);
	if (found != 1) {
		if (found == 0)
			*errstr = xasprintf("job %lld not found", (long long)id);
		*http_status = found == 0 ? 404 : 503;
		return -1;
	}
	return 0;
}

/* The newest job of each cook bundle of one object kind (and format), then the filters of
 * jobstore_list_cooks. $1 kind, $2 format or NULL, $3 state or NULL. */
#define LATEST_COOKS                                                                               \
	"WITH latest AS (SELECT DISTINCT ON (dedup_key) id, state FROM jobs"                       \
	" WHERE kind = 'cook' AND params->>'object_kind' = $1"                                     \
	" AND ($2::text IS NULL OR params->>'format' = $2)"                                        \
	" ORDER BY dedup_key, id DESC)"                                                            \
	" SELECT id FROM latest WHERE state <> 'expired'"                                          \
	" AND ($3::text IS NULL OR state = $3)"

/* A page of the newest cook per bundle. */
int
jobstore_list_cooks(struct db *db, const char *object_kind, const char *format,
    enum job_state state, int64_t limit, int64_t offset, struct job ***out, size_t *n,
    int64_t *total, char **errstr)
{
	char lim[24], off[24];
	const char *st = state == JOB_STATE_INVALID ? NULL : job_state_name(state);
	const char *p[] = {object_kind, format, st, lim, off};
	PGresult *res;

	*out = NULL;
	*n = 0;
	snprintf(lim, sizeof lim, "%lld", (long long)limit);
	snprintf(off, sizeof off, "%lld", (long long)offset);
	res = db_exec(db, "SELECT count(*) FROM (" LATEST_COOKS ") t", 3, p, false, errstr);
	if (res == NULL)
		return -1;
	if (!parse_int64(PQgetvalue(res, 0, 0), total))
		*total = 0;
	PQclear(res);
	res = db_exec(db,
	    "SELECT " JOB_COLUMNS JOB_FROM "WHERE j.id IN (" LATEST_COOKS ")"
	    " ORDER BY j.id DESC LIMIT $4 OFFSET $5",
	    5, p, false, errstr);
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n ? *n : 1, sizeof **out);
	for (size_t i = 0; i < *n; i++)
		(*out)[i] = job_from_row(res, (int)i);
	PQclear(res);
	return 0;
}

/* Queued or running jobs untouched for min_age_s seconds. */
int
jobstore_list_unfinished(struct db *db, int64_t min_age_s, int64_t **ids, size_t *n, char **errstr)
{
	char age[24];
	const char *p[] = {age};
	PGresult *res;

	snprintf(age, sizeof age, "%lld", (long long)min_age_s);
	res = db_exec(db,
	    "SELECT id FROM jobs WHERE state IN ('queued', 'running')"
	    " AND updated_at < now() - make_interval(secs => $1::double precision)"
	    " ORDER BY id LIMIT 10000",
	    1, p, false, errstr);
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*ids = xcalloc(*n ? *n : 1, sizeof **ids);
	for (size_t i = 0; i < *n; i++)
		if (!parse_int64(PQgetvalue(res, (int)i, 0), &(*ids)[i]))
			(*ids)[i] = 0;
	PQclear(res);
	return 0;
}

/* Records a download. */
int
jobstore_touch_bundle(struct db *db, int64_t job_id, char **errstr)
{
	char ids[24];
	const char *p[] = {ids};

	snprintf(ids, sizeof ids, "%lld", (long long)job_id);
	return db_run(
	    db, "UPDATE bundles SET last_download_at = now() WHERE job_id = $1", 1, p, errstr);
}

/* Frees a notification. */
void
job_notification_free(struct job_notification *n)
{
	if (n == NULL)
		return;
	free(n->url);
	free(n->object_kind);
	free(n->object_id);
	free(n->format);
	free(n);
}

/* Registers a notify_url; a pending twin is left alone, a finished one armed again. */
int
jobstore_notify_add(struct db *db, int64_t job_id, const char *url, char **errstr)
{
	char ids[24];
	const char *p[] = {ids, url};

	snprintf(ids, sizeof ids, "%lld", (long long)job_id);
	return db_run(db,
	    "INSERT INTO job_notifications (job_id, url) VALUES ($1, $2)"
	    " ON CONFLICT (job_id, url) DO UPDATE SET state = 'pending', attempts = 0,"
	    " next_at = now(), last_error = NULL, sent_at = NULL"
	    " WHERE job_notifications.state <> 'pending'",
	    2, p, errstr);
}

/* One statement claims the batch: the row locks last only as long as the UPDATE, and the
 * pushed next_at keeps other senders off while this one works. */
int
jobstore_notify_claim(struct db *db, int limit, int64_t lease_s, struct job_notification ***out,
    size_t *n, char **errstr)
{
	char lim[16], lease[24];
	const char *p[] = {lim, lease};
	PGresult *res;

	*out = NULL;
	*n = 0;
	snprintf(lim, sizeof lim, "%d", limit);
	snprintf(lease, sizeof lease, "%lld", (long long)lease_s);
	res = db_exec(db,
	    "UPDATE job_notifications n"
	    " SET next_at = now() + make_interval(secs => $2::double precision)"
	    " FROM jobs j WHERE j.id = n.job_id AND n.id IN ("
	    "  SELECT n2.id FROM job_notifications n2 JOIN jobs j2 ON j2.id = n2.job_id"
	    "  WHERE n2.state = 'pending' AND n2.next_at <= now()"
	    "  AND j2.state IN ('done', 'failed')"
	    "  ORDER BY n2.next_at LIMIT $1 FOR UPDATE OF n2 SKIP LOCKED)"
	    " RETURNING n.id, n.job_id, n.url, n.attempts, j.params->>'object_kind',"
	    " j.params->>'object_id', j.params->>'format'",
	    2, p, false, errstr);
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n ? *n : 1, sizeof **out);
	for (size_t i = 0; i < *n; i++) {
		struct job_notification *jn = xcalloc(1, sizeof *jn);
		int row = (int)i;

		if (!parse_int64(PQgetvalue(res, row, 0), &jn->id))
			jn->id = 0;
		if (!parse_int64(PQgetvalue(res, row, 1), &jn->job_id))
			jn->job_id = 0;
		jn->url = xstrdup(PQgetvalue(res, row, 2));
		jn->attempts = atoi(PQgetvalue(res, row, 3));
		jn->object_kind = col_str(res, row, 4);
		jn->object_id = col_str(res, row, 5);
		jn->format = col_str(res, row, 6);
		(*out)[i] = jn;
	}
	PQclear(res);
	return 0;
}

/* Delivered. */
int
jobstore_notify_sent(struct db *db, int64_t id, char **errstr)
{
	char ids[24];
	const char *p[] = {ids};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	return db_run(db,
	    "UPDATE job_notifications SET state = 'sent', attempts = attempts + 1,"
	    " sent_at = now(), last_error = NULL WHERE id = $1",
	    1, p, errstr);
}

/* One failed attempt. */
int
jobstore_notify_failed(
    struct db *db, int64_t id, const char *last_error, bool final, int64_t delay_ms, char **errstr)
{
	char ids[24], delay[24];
	const char *p[] = {ids, last_error, final ? "failed" : "pending", delay};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	snprintf(delay, sizeof delay, "%lld", (long long)delay_ms);
	return db_run(db,
	    "UPDATE job_notifications SET attempts = attempts + 1, last_error = $2, state = $3,"
	    " next_at = now() + make_interval(secs => $4::double precision / 1000) WHERE id = $1",
	    4, p, errstr);
}

/* Put back, uncounted. */
int
jobstore_notify_release(struct db *db, int64_t id, int64_t delay_ms, char **errstr)
{
	char ids[24], delay[24];
	const char *p[] = {ids, delay};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	snprintf(delay, sizeof delay, "%lld", (long long)delay_ms);
	return db_run(db,
	    "UPDATE job_notifications"
	    " SET next_at = now() + make_interval(secs => $2::double precision / 1000) WHERE id = $1",
	    2, p, errstr);
}

/* Frees the listing of jobstore_list_lru_bundles. */
void
jobstore_bundle_refs_free(struct bundle_ref *refs, size_t n)
{
	if (refs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(refs[i].dedup_key);
	free(refs);
}

/* The order and filter the bundles_last_use index serves (0003_git.sql). */
#define BUNDLE_LAST_USE "coalesce(b.last_download_at, b.created_at)"
#define BUNDLE_IDLE                                                                                \
	"($1::double precision < 0 OR " BUNDLE_LAST_USE                                            \
	" < now() - make_interval(secs => $1::double precision))"
/* Not a bundle cooked within min_fresh_s ($2) that nobody downloaded yet: quota eviction
 * must give its client the time to fetch it. */
#define BUNDLE_NOT_FRESH                                                                           \
	"($2::double precision <= 0 OR b.last_download_at IS NOT NULL OR b.created_at < now() -"   \
	" make_interval(secs => $2::double precision))"

/* A batch of expiry or eviction candidates, oldest use first. The last use travels back
 * as exact text (extract gives numeric) so the expiry can check it did not change. */
int
jobstore_list_lru_bundles(struct db *db, int64_t idle_s, int64_t min_fresh_s, int limit,
    struct bundle_ref **out, size_t *n, char **errstr)
{
	char idle[24], fresh[24], lim[16];
	const char *p[] = {idle, fresh, lim};
	PGresult *res;

	*out = NULL;
	*n = 0;
	snprintf(idle, sizeof idle, "%lld", (long long)idle_s);
	snprintf(fresh, sizeof fresh, "%lld", (long long)min_fresh_s);
	snprintf(lim, sizeof lim, "%d", limit);
	res = db_exec(db,
	    "SELECT b.job_id, coalesce(j.dedup_key, ''), encode(b.sha256, 'hex'), b.size,"
	    " extract(epoch from " BUNDLE_LAST_USE ")"
	    " FROM bundles b JOIN jobs j ON j.id = b.job_id"
	    " WHERE j.kind IN ('cook', 'stash_bundle') AND NOT b.sticky AND " BUNDLE_IDLE
	    " AND " BUNDLE_NOT_FRESH " ORDER BY " BUNDLE_LAST_USE ", b.job_id LIMIT $3",
	    3, p, false, errstr);
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n ? *n : 1, sizeof **out);
	for (size_t i = 0; i < *n; i++) {
		struct bundle_ref *r = &(*out)[i];
		int row = (int)i;

		if (!parse_int64(PQgetvalue(res, row, 0), &r->job_id))
			r->job_id = 0;
		r->dedup_key = xstrdup(PQgetvalue(res, row, 1));
		snprintf(r->sha256, sizeof r->sha256, "%s", PQgetvalue(res, row, 2));
		if (!parse_int64(PQgetvalue(res, row, 3), &r->size))
			r->size = 0;
		snprintf(r->last_use_s, sizeof r->last_use_s, "%s", PQgetvalue(res, row, 4));
		r->last_use = atof(r->last_use_s);
	}
	PQclear(res);
	return 0;
}

/* One statement, so one transaction: the row lock (FOR UPDATE) re-checks the conditions
 * against a download or a sticky flag that committed meanwhile. A job already expired
 * (the API expires a done job whose blob is missing) only loses its bundles row. */
int
jobstore_expire_bundle(struct db *db, int64_t job_id, int64_t idle_s, const char *last_use_s,
    int64_t min_fresh_s, char **errstr)
{
	char idle[24], fresh[24], ids[24];
	const char *p[] = {idle, fresh, ids, last_use_s};
	PGresult *res;
	int gone, done;

	snprintf(idle, sizeof idle, "%lld", (long long)idle_s);
	snprintf(fresh, sizeof fresh, "%lld", (long long)min_fresh_s);
	snprintf(ids, sizeof ids, "%lld", (long long)job_id);
	res = db_exec(db,
	    "WITH victim AS (SELECT b.job_id FROM bundles b WHERE b.job_id = $3"
	    "  AND NOT b.sticky AND " BUNDLE_IDLE " AND " BUNDLE_NOT_FRESH
	    "  AND ($4::numeric IS NULL OR extract(epoch from " BUNDLE_LAST_USE ") = $4::numeric)"
	    "  FOR UPDATE),"
	    " gone AS (DELETE FROM bundles WHERE job_id IN (SELECT job_id FROM victim)"
	    "  RETURNING job_id),"
	    " job AS (UPDATE jobs SET state = 'expired', updated_at = now()"
	    "  WHERE id IN (SELECT job_id FROM gone) AND state = 'done' RETURNING id)"
	    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM job)",
	    4, p, false, errstr);
	if (res == NULL)
		return -1;
	gone = atoi(PQgetvalue(res, 0, 0));
	done = atoi(PQgetvalue(res, 0, 1));
	PQclear(res);
	return gone == 0 ? 0 : done > 0 ? 1 : 2;
}

/* Sums for the quota. */
int
jobstore_bundles_usage(struct db *db, int64_t min_fresh_s, int64_t *total, int64_t *sticky,
    int64_t *fresh, char **errstr)
{
	char fr[24];
	const char *p[] = {fr};
	PGresult *res;

	snprintf(fr, sizeof fr, "%lld", (long long)min_fresh_s);
	res = db_exec(db,
	    "SELECT coalesce(sum(size), 0), coalesce(sum(size) FILTER (WHERE sticky), 0),"
	    " coalesce(sum(size) FILTER (WHERE NOT sticky AND last_download_at IS NULL"
	    "  AND created_at >= now() - make_interval(secs => $1::double precision)), 0)"
	    " FROM bundles WHERE job_id IN (SELECT id FROM jobs WHERE kind IN ('cook', 'stash_bundle'))",
	    1, p, false, errstr);
	if (res == NULL)
		return -1;
	if (!parse_int64(PQgetvalue(res, 0, 0), total))
		*total = 0;
	if (!parse_int64(PQgetvalue(res, 0, 1), sticky))
		*sticky = 0;
	if (!parse_int64(PQgetvalue(res, 0, 2), fresh))
		*fresh = 0;
	PQclear(res);
	return 0;
}

/* The admin's flag. */
int
jobstore_set_sticky(struct db *db, int64_t job_id, bool sticky, char **errstr)
{
	char ids[24];
	const char *p[] = {ids, sticky ? "true" : "false"};
	PGresult *res;
	int n;

	snprintf(ids, sizeof ids, "%lld", (long long)job_id);
	res = db_exec(
	    db, "UPDATE bundles SET sticky = $2::boolean WHERE job_id = $1", 2, p, false, errstr);
	if (res == NULL)
		return -1;
	n = atoi(PQcmdTuples(res));
	PQclear(res);
	return n > 0 ? 1 : 0;
}

/* The batch travels as one array of hex text; the answer is the 1-based positions of the
 * referenced ones, each found through the contents_sha256 and bundles_sha256 indexes. */
int
jobstore_blobs_referenced(
    struct db *db, const unsigned char (*sha256)[32], size_t n, bool *referenced, char **errstr)
{
	struct buf a;
	PGresult *res;

	for (size_t i = 0; i < n; i++)
		referenced[i] = false;
	if (n == 0)
		return 0;
	buf_init(&a);
	db_array_begin(&a);
	for (size_t i = 0; i < n; i++)
		db_array_hex(&a, sha256[i], 32);
	db_array_end(&a);
	const char *p[] = {a.data};
	res = db_exec(db,
	    "SELECT s.i FROM unnest($1::text[]) WITH ORDINALITY AS s(h, i)"
	    " WHERE EXISTS (SELECT 1 FROM contents c WHERE c.sha256 = decode(s.h, 'hex'))"
	    " OR EXISTS (SELECT 1 FROM bundles b WHERE b.sha256 = decode(s.h, 'hex'))"
	    " OR EXISTS (SELECT 1 FROM artifacts a WHERE a.sha256 = decode(s.h, 'hex'))"
	    " OR EXISTS (SELECT 1 FROM bits_resources r WHERE r.sha256 = decode(s.h, 'hex'))"
	    " OR EXISTS (SELECT 1 FROM cf_packages p WHERE p.sha256 = decode(s.h, 'hex'))"
	    " OR EXISTS (SELECT 1 FROM jobs j WHERE j.state IN ('queued', 'running')"
	    "  AND j.params->>'bits' = s.h)",
	    1, p, false, errstr);
	buf_free(&a);
	if (res == NULL)
		return -1;
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t i = 0;
		if (parse_int64(PQgetvalue(res, r, 0), &i) && i >= 1 && (size_t)i <= n)
			referenced[i - 1] = true;
	}
	PQclear(res);
	return 0;
}

/* Two cheap probes (each stops at its first row). */
int
jobstore_refs_empty(struct db *db, bool *empty, char **errstr)
{
	PGresult *res = db_exec(db,
	    "SELECT NOT EXISTS (SELECT 1 FROM contents) AND NOT EXISTS (SELECT 1 FROM bundles)"
	    " AND NOT EXISTS (SELECT 1 FROM artifacts) AND NOT EXISTS (SELECT 1 FROM bits_resources)"
	    " AND NOT EXISTS (SELECT 1 FROM cf_packages WHERE sha256 IS NOT NULL)",
	    0, NULL, false, errstr);

	if (res == NULL)
		return -1;
	*empty = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return 0;
}

/* The database's side of the binding: 1 with id, 0 when none, -1. */
static int
db_store_id(struct db *db, char id[33], char **errstr)
{
	PGresult *res = db_exec(db, "SELECT id FROM store_identity", 0, NULL, false, errstr);
	int found;

	if (res == NULL)
		return -1;
	found = PQntuples(res) == 1;
	if (found)
		snprintf(id, 33, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return found;
}

/* store_list callback: the first blob stops the walk. */
static int
any_blob(void *arg, const unsigned char sha256[32], uint64_t size, int64_t mtime_s)
{
	(void)sha256;
	(void)size;
	(void)mtime_s;
	*(bool *)arg = true;
	return 1;
}

/* Creating both identities is the only step that can go wrong in a race: the store's is
 * created first (atomically, one winner), then the database takes the store's winner
 * unless it got a row meanwhile, and both are read back, so two workers binding at once
 * agree, and a worker that lost to another database's worker refuses. */
int
jobstore_bind_store(struct db *db, struct store *st, char **errstr)
{
	char sid[33] = "", did[33] = "", want[33], *err = NULL;
	int shas, dhas;
	bool empty = false, blobs = false;

	if ((shas = store_get_id(st, sid, &err)) < 0) {
		*errstr = xasprintf("cannot read the store's identity: %s", err);
		free(err);
		return -1;
	}
	if ((dhas = db_store_id(db, did, &err)) < 0) {
		*errstr = xasprintf("cannot read the database's store identity: %s", err);
		free(err);
		return -1;
	}
	if (shas && dhas) {
		if (strcmp(sid, did) == 0)
			return 1;
		*errstr = xasprintf("the store's ID (%s) is not the one the database records (%s):"
				    " data_dir and database_url belong to different deployments",
		    sid, did);
		return 0;
	}
	if (shas) {
		*errstr = xasprintf("the store has ID %s but the database records none: is"
				    " database_url this store's database?",
		    sid);
		return 0;
	}
	if (dhas) {
		*errstr = xasprintf("the database records store ID %s but the store has no ID file:"
				    " is data_dir this database's store?",
		    did);
		return 0;
	}
	/* Neither: a new deployment, or one from before 0004_store_id.sql. */
	if (jobstore_refs_empty(db, &empty, &err) != 0) {
		*errstr = err;
		return -1;
	}
	if (empty && store_list(st, any_blob, &blobs, &err) < 0) {
		*errstr = xasprintf("cannot list the store: %s", err);
		free(err);
		return -1;
	}
	if (empty && blobs) {
		*errstr = xstrdup("the database holds no contents nor bundles but the store holds"
				  " blobs: is database_url this store's database?");
		return 0;
	}
	random_hex(want, 16);
	if (store_create_id(st, want, sid, &err) != 0) {
		*errstr = xasprintf("cannot create the store's identity: %s", err);
		free(err);
		return -1;
	}
	const char *p[] = {sid};
	if (db_run(db, "INSERT INTO store_identity (id) VALUES ($1) ON CONFLICT DO NOTHING", 1, p,
		&err) != 0) {
		*errstr = err;
		return -1;
	}
	if ((dhas = db_store_id(db, did, &err)) < 0) {
		*errstr = err;
		return -1;
	}
	if (dhas && strcmp(sid, did) == 0) {
		log_info("bound the store (ID %s) to this database", sid);
		return 1;
	}
	*errstr = xasprintf("the store's ID (%s) is not the one the database records (%s)", sid,
	    dhas ? did : "none");
	return 0;
}
