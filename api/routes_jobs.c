/* routes_jobs.c: the workers' side of jobs: PATCH /jobs/{id} reports a claim, progress and
 * the final state (validated against the state machine in shared/jobstore.c), GET
 * /jobs/{id} reads a job. The API is the only writer of job state (DESIGN §2). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobjson.h"
#include "api/routes.h"
#include "shared/jobstore.h"
#include "shared/kv.h"
#include "shared/log.h"

/* Parses the {id} capture: a positive integer. */
static int
parse_job_id(struct call *c)
{
	const char *s = router_param(&c->m, "id");

	if (!parse_int64(s, &c->job_id) || c->job_id <= 0) {
		resp_error(&c->resp, 400, "invalid job id: expected a positive integer");
		return -1;
	}
	return 0;
}

/* Validates the body on the loop (api/jobjson.c says what passes). */
int
routes_jobs_patch_prepare(struct call *c)
{
	char *msg;

	if (parse_job_id(c) != 0)
		return -1;
	if ((msg = jobjson_patch_check(c->json)) != NULL) {
		resp_error(&c->resp, 400, "%s", msg);
		free(msg);
		return -1;
	}
	return 0;
}

/* A string member, or NULL when absent or null. */
static const char *
member(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* A "done" naming a bundle the store does not hold would leave a job that can never be
 * downloaded: refused here, before the database records it. The check is a store_touch,
 * not a look: the bundle becomes young again just before its bundles row commits, so
 * garbage collection (which spares blobs younger than gc_grace) cannot take it between
 * this check and the commit, however long the cook took. A job already done is left
 * to jobstore_patch, where the same state again is a no-op that records nothing. A
 * malformed sha256 is left for jobstore_patch to refuse in its words. 0 to go on, -1 with
 * the answer (400, or 503) in c->resp. */
static int
check_bundle_stored(struct call *c, struct db *db, const json_t *result)
{
	const char *hex = json_string_value(json_object_get(result, "bundle_sha256"));
	unsigned char sha[32];
	struct job *job = NULL;
	char *err = NULL;
	int rc;

	if (hex == NULL || strlen(hex) != 64 || !hex_decode(hex, sha, sizeof sha))
		return 0;
	if (store_touch(c->store, sha, &err) == 0)
		return 0;
	if (errno == ENOTSUP) {
		/* A store that cannot touch is one garbage collection refuses to sweep. */
		free(err);
		if (store_exists(c->store, sha))
			return 0;
	} else if (errno != ENOENT) {
		log_error_id(c->logid, "job %lld: cannot refresh bundle %s: %s",
		    (long long)c->job_id, hex, err);
		free(err);
		resp_error(&c->resp, 503, "the store is unavailable; report again later");
		return -1;
	} else
		free(err);
	err = NULL;
	rc = jobstore_get(db, c->job_id, &job, &err);
	if (rc < 0) {
		call_db_failed(c, "get job", err);
		free(err);
		return -1;
	}
	if (rc == 1 && job->state == JOB_DONE) {
		job_free(job);
		return 0;
	}
	job_free(job);
	log_warn_id(c->logid, "job %lld: done refused: bundle %s is not in the store",
	    (long long)c->job_id, hex);
	resp_error(&c->resp, 400, "bundle %s is not in the store", hex);
	return -1;
}

/* Applies the PATCH in one transaction, then wakes whoever waits on the job. A job held
 * by another worker answers 409 (see jobstore_patch). */
void
routes_jobs_patch_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct kv *kv;
	struct job *job = NULL;
	const char *state_s = member(c->json, "state");
	enum job_state state = state_s != NULL ? job_state_parse(state_s) : JOB_STATE_INVALID;
	json_t *result = json_object_get(c->json, "result");
	char *err = NULL, *channel;
	int status = 500;
	json_t *o;

	if (json_is_null(result))
		result = NULL;
	if ((db = call_db(c, t)) == NULL)
		return;
	if (state == JOB_DONE && result != NULL && check_bundle_stored(c, db, result) != 0)
		return;
	if (jobstore_patch(db, c->job_id, state, member(c->json, "worker"),
		member(c->json, "progress_message"), member(c->json, "error"), result,
		(int)c->cfg->job_max_attempts, c->cfg->job_lease, &job, &status, &err) != 0) {
		if (status == 400 || status == 404 || status == 409) {
			resp_error(&c->resp, status, "%s", err != NULL ? err : "refused");
		} else if (status == 503) {
			call_db_failed(c, "patch job", err);
		} else {
			char *safe = call_redact(c->cfg, err);

			log_error_id(
			    c->logid, "job %lld: patch failed: %s", (long long)c->job_id, safe);
			free(safe);
			resp_error(&c->resp, 500, "internal error while updating the job");
		}
		free(err);
		return;
	}
	if (state != JOB_STATE_INVALID)
		log_info_id(c->logid, "job %lld: %s -> %s", (long long)job->id, state_s,
		    job_state_name(job->state));
	/* Wakeups are best effort: a poller that misses one still sees the state. */
	if ((kv = call_kv(c, t)) != NULL) {
		channel = xasprintf("bitsvault:job:%lld", (long long)job->id);
		if (kv_publish(kv, channel, job_state_name(job->state), &err) != 0) {
			log_debug_id(c->logid, "publish %s: %s", channel, err);
			free(err);
		}
		free(channel);
	}
	o = jobjson_job(job);
	/* A progress report must stay cheap: the worker has the params (it reads the job from
	 * Postgres), and an app stash bundle's can be megabytes. GET /jobs/{id} shows them. */
	if (state != JOB_RUNNING)
		json_object_del(o, "params");
	resp_json(&c->resp, 200, o);
	json_decref(o);
	job_free(job);
}

/* GET /jobs/{id}. */
int
routes_jobs_get_prepare(struct call *c)
{
	return parse_job_id(c);
}

/* Reads one job. */
void
routes_jobs_get_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct job *job = NULL;
	char *err = NULL;
	json_t *o;
	int rc;

	if ((db = call_db(c, t)) == NULL)
		return;
	rc = jobstore_get(db, c->job_id, &job, &err);
	if (rc < 0) {
		call_db_failed(c, "get job", err);
		free(err);
		return;
	}
	if (rc == 0) {
		resp_error(&c->resp, 404, "job %lld not found", (long long)c->job_id);
		return;
	}
	o = jobjson_job(job);
	resp_json(&c->resp, 200, o);
	json_decref(o);
	job_free(job);
}
