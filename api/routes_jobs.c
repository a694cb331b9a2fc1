/* routes_jobs.c: the workers' side of jobs: PATCH /jobs/{id} reports a claim, progress and
 * the final state (validated against the state machine in shared/jobstore.c), GET
 * /jobs/{id} reads a job. The API is the only writer of job state (DESIGN §2). */
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

/* Keys a PATCH body may carry, with the JSON type each must have. */
static const struct {
	const char *key;
	json_type type;
} patch_keys[] = {
    {"state", JSON_STRING},
    {"worker", JSON_STRING},
    {"progress_message", JSON_STRING},
    {"error", JSON_STRING},
    {"result", JSON_OBJECT},
};

/* Validates the body on the loop: a JSON object of known keys and types (null counts
 * as absent), and a known state name. */
int
routes_jobs_patch_prepare(struct call *c)
{
	const char *key;
	json_t *v, *state;
	size_t i;

	if (parse_job_id(c) != 0)
		return -1;
	if (c->json == NULL || !json_is_object(c->json)) {
		resp_error(&c->resp, 400, "the body must be a JSON object");
		return -1;
	}
	json_object_foreach(c->json, key, v)
	{
		for (i = 0; i < BV_NELEM(patch_keys); i++)
			if (strcmp(patch_keys[i].key, key) == 0)
				break;
		if (i == BV_NELEM(patch_keys)) {
			resp_error(&c->resp, 400,
			    "unknown key '%s'; keys: state, worker, progress_message, error, result",
			    call_echo(key));
			return -1;
		}
		if (!json_is_null(v) && json_typeof(v) != patch_keys[i].type) {
			resp_error(&c->resp, 400, "%s must be %s", key,
			    patch_keys[i].type == JSON_OBJECT ? "an object" : "a string");
			return -1;
		}
	}
	state = json_object_get(c->json, "state");
	if (json_is_string(state) &&
	    job_state_parse(json_string_value(state)) == JOB_STATE_INVALID) {
		resp_error(&c->resp, 400,
		    "unknown state '%s'; states: queued, running, done, failed, expired",
		    call_echo(json_string_value(state)));
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

/* Applies the PATCH in one transaction, then wakes whoever waits on the job. */
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
