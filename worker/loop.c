/* loop.c: the worker's main loop and a job's life: claim from Redis, read from Postgres,
 * claim through the API, run the handler for its kind, report, ack. Periodic duties ride
 * on the same loop: heartbeats, taking over entries of dead workers (XAUTOCLAIM) and, in
 * the one worker holding the advisory lock, re-enqueueing jobs Redis lost. Errors talking
 * to Redis, Postgres or the API never end the process: it logs (rate-limited), backs off
 * and tries again. docs/worker.md has the whole story. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shared/jobs.h"
#include "shared/log.h"
#include "worker/worker.h"

/* How long a claim read blocks in Redis; also bounds how long SIGTERM waits when idle. */
#define CLAIM_BLOCK_MS 1500
/* How long the claim and the final report are retried while the API is unreachable. */
#define REPORT_RETRY_MS 60000
/* Backoff between failed rounds of the loop. */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 10000
/* Repeats of the same trouble are logged at most this often. */
#define TROUBLE_LOG_MS 30000

volatile sig_atomic_t worker_stop;

static const struct {
	const char *kind;
	job_handler run;
} handlers[] = {
    {"cook", cook_run},
};

void
worker_sleep(uint64_t ms)
{
	while (ms > 0 && !worker_stop) {
		uint64_t step = ms < 100 ? ms : 100;
		struct timespec ts = {0, (long)step * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

void
trouble_fail(struct trouble *t, const char *fmt, ...)
{
	uint64_t now = now_ms();
	va_list ap;

	if (t->failing && now - t->last_log_ms < TROUBLE_LOG_MS) {
		t->suppressed++;
		t->failing = true;
		return;
	}
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (t->suppressed > 0)
		log_warn(
		    "%s: %s (and %lld similar errors)", t->what, msg, (long long)t->suppressed);
	else
		log_warn("%s: %s", t->what, msg);
	free(msg);
	t->last_log_ms = now;
	t->suppressed = 0;
	t->failing = true;
}

void
trouble_ok(struct trouble *t)
{
	if (!t->failing)
		return;
	log_info("%s: working again", t->what);
	t->failing = false;
	t->suppressed = 0;
}

/* ISO 8601 UTC of a unix time. */
static void
iso_time(double t, char *out, size_t n)
{
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
worker_heartbeat(struct worker *w, bool force)
{
	uint64_t now = now_ms();
	char started[32], *err = NULL;

	if (!force && now < w->next_heartbeat_ms)
		return;
	w->next_heartbeat_ms = now + (uint64_t)w->cfg->worker_heartbeat * 1000;
	iso_time(w->started_at, started, sizeof started);
	json_t *doc = json_pack("{s:s, s:I, s:s, s:I, s:I, s:o}", "name", w->name, "pid",
	    (json_int_t)getpid(), "started_at", started, "jobs_done", (json_int_t)w->jobs_done,
	    "jobs_failed", (json_int_t)w->jobs_failed, "current_job",
	    w->current_job > 0 ? json_integer(w->current_job) : json_null());
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (kv_heartbeat(w->kv, w->name, text, (int)(3 * w->cfg->worker_heartbeat), &err) != 0) {
		trouble_fail(&w->redis_trouble, "heartbeat: %s", err);
		free(err);
	}
	free(text);
}

/* Acks an entry we are done with; a failure only means it comes back later, where the
 * job will be seen final and skipped. */
static void
ack(struct worker *w, const struct kv_delivery *d)
{
	char *err = NULL;
	if (kv_ack(w->kv, d, &err) != 0) {
		trouble_fail(
		    &w->redis_trouble, "cannot ack job %lld: %s", (long long)d->job_id, err);
		free(err);
	}
}

static job_handler
find_handler(const char *kind)
{
	for (size_t i = 0; i < BV_NELEM(handlers); i++)
		if (strcmp(handlers[i].kind, kind) == 0)
			return handlers[i].run;
	return NULL;
}

/* Claims the job through the API. true when it is ours to run; false when it was
 * handled (acked, or left pending because the API is unreachable: *backoff). */
static bool
claim(struct worker *w, struct job_run *run, bool *backoff)
{
	json_t *body = json_pack("{s:s, s:s}", "state", "running", "worker", w->name);
	char *state = NULL, *err = NULL;
	enum report_status rs =
	    report_patch_retry(w, run->job->id, body, REPORT_RETRY_MS, &state, &err);
	bool ours = false;

	json_decref(body);
	switch (rs) {
	case REPORT_OK:
		if (strcmp(state, "running") == 0) {
			ours = true;
		} else {
			/* done or failed already, or failed now because attempts ran out */
			log_info_id(run->log_id, "the API says the job is %s; skipped", state);
			ack(w, &run->d);
		}
		break;
	case REPORT_REJECTED:
		log_warn_id(run->log_id, "the API refused the claim (%s); dropped", err);
		ack(w, &run->d);
		break;
	case REPORT_UNREACHABLE:
		/* Left pending: this or another worker claims it again after the lease. */
		trouble_fail(
		    &w->api_trouble, "cannot claim job %lld: %s", (long long)run->job->id, err);
		*backoff = true;
		break;
	}
	free(state);
	free(err);
	return ours;
}

/* Sends the final state and acks; without an answer from the API the entry is left
 * pending so that the job is redone (bundles are deterministic: redoing is harmless). */
static void
finish(struct worker *w, struct job_run *run, json_t *body, bool done)
{
	char *state = NULL, *err = NULL;
	enum report_status rs =
	    report_patch_retry(w, run->job->id, body, REPORT_RETRY_MS, &state, &err);

	switch (rs) {
	case REPORT_OK:
		if (done)
			w->jobs_done++;
		else
			w->jobs_failed++;
		ack(w, &run->d);
		break;
	case REPORT_REJECTED:
		/* Finished or expired in the meantime (another worker redid it). */
		log_warn_id(run->log_id, "the API refused the final report (%s); dropped", err);
		ack(w, &run->d);
		break;
	case REPORT_UNREACHABLE:
		log_error_id(run->log_id,
		    "cannot report the result (%s); the job stays pending and will be redone", err);
		break;
	}
	free(state);
	free(err);
}

/* A handler could not finish for reasons of ours (Postgres down): hand the job back as
 * queued and leave the entry pending, so it is claimed again after the lease. */
static void
release(struct worker *w, struct job_run *run, const char *reason)
{
	char *state = NULL, *err = NULL;
	json_t *body = json_pack("{s:s, s:s}", "state", "queued", "progress_message",
	    "Interrupted by a server-side error; will retry");

	log_warn_id(run->log_id, "interrupted, will be retried: %s", reason);
	if (report_patch(w, w->hc, run->job->id, body, &state, &err) != REPORT_OK) {
		log_debug_id(run->log_id, "cannot release the job: %s", err);
		free(err);
	}
	free(state);
	json_decref(body);
}

/* Runs one delivery to the end. Returns true when the loop should back off (Postgres or
 * the API unreachable). */
static bool
run_delivery(struct worker *w, const struct kv_delivery *d)
{
	struct job_run run = {.w = w, .d = *d};
	char *err = NULL, *reason = NULL;
	json_t *result = NULL;
	bool backoff = false;

	snprintf(run.log_id, sizeof run.log_id, "job=%lld", (long long)d->job_id);
	int r = jobstore_get(w->db, d->job_id, &run.job, &err);
	if (r < 0) {
		/* Left pending: claimed again after the lease. */
		trouble_fail(&w->pg_trouble, "cannot read job %lld: %s", (long long)d->job_id, err);
		free(err);
		return true;
	}
	trouble_ok(&w->pg_trouble);
	if (r == 0) {
		log_warn_id(run.log_id, "not in Postgres; dropped from the queue");
		ack(w, d);
		return false;
	}
	if (job_state_final(run.job->state)) {
		log_debug_id(run.log_id, "already %s; dropped from the queue",
		    job_state_name(run.job->state));
		ack(w, d);
		goto out;
	}
	if (!claim(w, &run, &backoff))
		goto out;

	if (kv_touch(w->kv, w->name, d, &err) != 0) {
		trouble_fail(&w->redis_trouble, "cannot take the lease of job %lld: %s",
		    (long long)d->job_id, err);
		free(err);
	}
	w->current_job = d->job_id;
	worker_heartbeat(w, true);
	log_info_id(run.log_id, "running %s job (attempt %d%s)", run.job->kind,
	    run.job->attempts + 1, d->deliveries > 1 ? ", taken over from a silent worker" : "");

	uint64_t t0 = now_ms();
	job_handler handler = find_handler(run.job->kind);
	enum job_outcome outcome;
	if (handler == NULL) {
		reason = xasprintf("unknown job kind '%s'", run.job->kind);
		outcome = JOB_OUTCOME_FAILED;
	} else {
		outcome = handler(&run, &result, &reason);
	}
	double secs = (double)(now_ms() - t0) / 1000.0;

	json_t *body = NULL;
	switch (outcome) {
	case JOB_OUTCOME_DONE:
		log_info_id(run.log_id, "done in %.2f s", secs);
		body = json_pack(
		    "{s:s, s:s, s:O}", "state", "done", "worker", w->name, "result", result);
		finish(w, &run, body, true);
		break;
	case JOB_OUTCOME_FAILED:
		log_warn_id(run.log_id, "failed after %.2f s: %s", secs, reason);
		body = json_pack(
		    "{s:s, s:s, s:s}", "state", "failed", "worker", w->name, "error", reason);
		finish(w, &run, body, false);
		break;
	case JOB_OUTCOME_RETRY:
		release(w, &run, reason);
		backoff = true;
		break;
	case JOB_OUTCOME_CANCELLED:
		log_info_id(run.log_id, "stopped: finished elsewhere");
		ack(w, d);
		break;
	}
	json_decref(body);
	json_decref(result);
	free(reason);
	w->current_job = 0;
	worker_heartbeat(w, true);
out:
	free(run.message);
	free(run.sent_message);
	job_free(run.job);
	return backoff;
}

/* Re-enqueues jobs Postgres says are queued or running but Redis has no marker for
 * (Redis flushed or restarted without persistence). One worker at a time. */
static void
reconcile(struct worker *w)
{
	int64_t *ids = NULL;
	size_t n = 0;
	char *err = NULL;
	int64_t min_age = w->cfg->reconcile_interval > 2 ? w->cfg->reconcile_interval : 2;

	/* db_try_lock says false for "Postgres is down" too: check first, to say so. */
	if (db_ensure(w->db, &err) != 0) {
		trouble_fail(&w->pg_trouble, "reconcile: %s", err);
		free(err);
		return;
	}
	trouble_ok(&w->pg_trouble);
	if (!db_try_lock(w->db, RECONCILE_LOCK_KEY))
		return;
	if (jobstore_list_unfinished(w->db, min_age, &ids, &n, &err) != 0) {
		trouble_fail(&w->pg_trouble, "reconcile: %s", err);
		free(err);
		goto out;
	}
	for (size_t i = 0; i < n && !worker_stop; i++) {
		int m = kv_has_marker(w->kv, ids[i], &err);
		if (m == 0 && kv_enqueue(w->kv, ids[i], &err) == 0) {
			log_info("re-enqueued job %lld that Redis lost", (long long)ids[i]);
			continue;
		}
		if (m != 1) {
			trouble_fail(&w->redis_trouble, "reconcile: %s", err);
			free(err);
			break;
		}
	}
out:
	free(ids);
	db_unlock(w->db, RECONCILE_LOCK_KEY);
}

void
worker_loop(struct worker *w)
{
	uint64_t lease_ms = (uint64_t)w->cfg->job_lease * 1000;
	uint64_t stale_every = lease_ms / 2 > 1000 ? lease_ms / 2 : 1000;
	uint64_t next_stale = now_ms() + stale_every, next_reconcile = 0;
	uint64_t backoff = 0;

	while (!worker_stop) {
		struct kv_delivery d;
		char *err = NULL;
		int r = 0;

		worker_heartbeat(w, false);
		uint64_t now = now_ms();
		if (now >= next_reconcile) {
			reconcile(w);
			next_reconcile = now_ms() + (uint64_t)w->cfg->reconcile_interval * 1000;
		}
		if (now >= next_stale) {
			r = kv_claim_stale(w->kv, w->name, (int64_t)lease_ms, &d, &err);
			/* Found one: there may be more, look again next round. */
			next_stale = r == 1 ? now : now + stale_every;
		}
		if (r == 0)
			r = kv_claim(w->kv, w->name, CLAIM_BLOCK_MS, &d, &err);
		if (r < 0) {
			trouble_fail(&w->redis_trouble, "%s", err);
			free(err);
			backoff = backoff
			    ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2)
			    : BACKOFF_MIN_MS;
			worker_sleep(backoff);
			continue;
		}
		trouble_ok(&w->redis_trouble);
		if (r == 0)
			continue;
		if (run_delivery(w, &d)) {
			backoff = backoff
			    ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2)
			    : BACKOFF_MIN_MS;
			worker_sleep(backoff);
		} else {
			backoff = 0;
		}
	}
}
