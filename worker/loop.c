/* loop.c: the worker's main loop and a job's life: claim from Redis, read from Postgres,
 * claim through the API, run the handler for its kind, report, ack. Periodic duties ride
 * on the same loop: heartbeats, taking over entries of dead workers (XAUTOCLAIM) and, in
 * the one worker holding each advisory lock, re-enqueueing jobs Redis lost and sweeping
 * the store's stale temp files. While a job runs, its keepalive thread (lease.c) keeps
 * its lease and the heartbeat. Errors talking
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
#include "worker/notify.h"
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
/* Stale store temp files (a crash's leftovers) are swept this often... */
#define SWEEP_EVERY_MS (10 * 60 * 1000)
/* ...when older than this (younger ones may be uploads or bundles being written). */
#define SWEEP_TMP_AGE_S 3600
/* notify_url callbacks of finished jobs are looked for this often (notify.c). */
#define NOTIFY_EVERY_MS 1000
/* How often the due droplet replicas are looked for (worker/replicate.c). */
#define REPLICATE_EVERY_MS 1000
/* The reconciler re-checks its lock after this many jobs. */
#define RECONCILE_CHUNK 100

volatile sig_atomic_t worker_stop;

static const struct {
	const char *kind;
	job_handler run;
} handlers[] = {
    {"cook", cook_run},
    {"load", load_run},
    {"request", request_run},
    {"stash_bundle", stash_bundle_run},
    {"package_upload", package_upload_run},
};

/* Sleeps in 100 ms steps so that SIGTERM is seen soon. */
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

/* Logs the first failure of a kind and then one line per TROUBLE_LOG_MS. */
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

/* Logs "working again" once after failures. */
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

/* What /status shows of this worker; lives three heartbeats. */
char *
worker_heartbeat_doc(const struct worker *w, int *ttl_s)
{
	char started[32];

	iso_time(w->started_at, started, sizeof started);
	json_t *doc = json_pack("{s:s, s:I, s:s, s:I, s:I, s:o}", "name", w->name, "pid",
	    (json_int_t)getpid(), "started_at", started, "jobs_done", (json_int_t)w->jobs_done,
	    "jobs_failed", (json_int_t)w->jobs_failed, "current_job",
	    w->current_job > 0 ? json_integer(w->current_job) : json_null());
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	*ttl_s = (int)(3 * w->cfg->worker_heartbeat);
	return text;
}

/* Sends the heartbeat from the job loop (the keepalive thread sends it during a job). */
void
worker_heartbeat(struct worker *w, bool force)
{
	uint64_t now = now_ms();
	char *err = NULL;
	int ttl;

	if (!force && now < w->next_heartbeat_ms)
		return;
	w->next_heartbeat_ms = now + (uint64_t)w->cfg->worker_heartbeat * 1000;
	char *text = worker_heartbeat_doc(w, &ttl);
	if (kv_heartbeat(w->kv, w->name, text, ttl, &err) != 0) {
		trouble_fail(&w->redis_trouble, "heartbeat: %s", err);
		free(err);
	}
	free(text);
}

/* SQLSTATE classes 08 (connection), 40 (serialization failure, deadlock), 53 (out of
 * resources) and 57P (shutdown, cannot connect now), and no SQLSTATE at all (no answer
 * from the server): worth another attempt later. */
bool
worker_db_transient(struct worker *w)
{
	const char *st = db_last_sqlstate(w->db);

	return st[0] == '\0' || strncmp(st, "08", 2) == 0 || strncmp(st, "40", 2) == 0 ||
	    strncmp(st, "53", 2) == 0 || strncmp(st, "57P", 3) == 0;
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

/* The handler for a job kind, or NULL. */
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
	json_t *body = json_pack("{s:s, s:s}", "state", "running", "worker", w->id);
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
	case REPORT_CONFLICT:
		/* Another worker runs the job and keeps its lease. A fresh delivery is a
		 * duplicate (the reconciler's): ack it. An entry taken over with XAUTOCLAIM
		 * is the holder's own (acks are per group, not per consumer): leave it, the
		 * holder's next kv_touch claims it back. */
		log_info_id(run->log_id, "held by another worker; skipped");
		if (run->d.deliveries <= 1)
			ack(w, &run->d);
		break;
	case REPORT_REJECTED:
		log_warn_id(run->log_id, "the API refused the claim (%s); dropped", err);
		ack(w, &run->d);
		break;
	case REPORT_UNREACHABLE:
		/* Logged by the retry loop. Left pending: this or another worker claims it
		 * again after the lease. */
		*backoff = true;
		break;
	}
	free(state);
	free(err);
	return ours;
}

/* The final report was refused: says "failed" once with a short reason of ours. A
 * refusal of that too means the job is final already. */
static void
fail_refused(struct worker *w, struct job_run *run, const char *why)
{
	char *reason = xasprintf("the worker's report was refused by the API: %s", why ? why : "");
	char *clipped = report_clip(reason, 512);
	json_t *body =
	    json_pack("{s:s, s:s, s:s}", "state", "failed", "worker", w->id, "error", clipped);
	char *state = NULL, *err = NULL;

	if (report_patch_retry(w, run->job->id, body, REPORT_RETRY_MS, &state, &err) == REPORT_OK)
		w->jobs_failed++;
	json_decref(body);
	free(reason);
	free(clipped);
	free(state);
	free(err);
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
	case REPORT_CONFLICT:
		/* Our lease ran out and another worker took the job over: its report is the
		 * one that counts. Not retried, and the entry is left to it (acks are per
		 * group: acking would drop the new holder's delivery and marker). */
		log_warn_id(
		    run->log_id, "another worker holds the job now (%s); result dropped", err);
		break;
	case REPORT_REJECTED:
		/* Finished or expired in the meantime (another worker redid it), or the
		 * report itself was refused (a bundle the API cannot find): one plain
		 * failure, so the job never stays running with nobody on it. */
		log_warn_id(run->log_id, "the API refused the final report (%s)", err);
		fail_refused(w, run, err);
		ack(w, &run->d);
		break;
	case REPORT_UNREACHABLE:
		log_error_id(run->log_id,
		    "cannot report the result; the job stays pending and will be redone");
		break;
	}
	free(state);
	free(err);
}

/* A handler could not finish for reasons of ours (Postgres down): hand the job back as
 * queued with the reason (the failure reason if attempts run out) and leave the entry
 * pending, so the job is claimed again after the lease. */
static void
release(struct worker *w, struct job_run *run, const char *reason)
{
	char *state = NULL, *err = NULL;
	char *clipped = report_clip(reason, REPORT_MAX_ERROR);
	json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "state", "queued", "worker", w->id,
	    "error", clipped, "progress_message", "Interrupted by a server-side error; will retry");
	free(clipped);
	enum report_status rs =
	    report_patch_retry(w, run->job->id, body, REPORT_RETRY_MS, &state, &err);

	switch (rs) {
	case REPORT_OK:
		break;
	case REPORT_CONFLICT:
	case REPORT_REJECTED:
		/* Another worker holds it, or it is final or gone: nothing to hand back. */
		log_info_id(run->log_id, "the API refused the release (%s); dropped", err);
		ack(w, &run->d);
		break;
	case REPORT_UNREACHABLE:
		/* Logged by the retry loop; the lease runs out and the job is claimed again,
		 * only without the reason. */
		break;
	}
	free(state);
	free(err);
	json_decref(body);
}

/* " (detail)" for a log line, or "". */
static const char *
detail_suffix(const struct job_run *run, char *buf, size_t n)
{
	if (run->detail == NULL)
		return "";
	snprintf(buf, n, " (%s)", run->detail);
	return buf;
}

/* Runs the handler with the keepalive thread around it. */
static enum job_outcome
run_handler(struct job_run *run, json_t **result, char **reason)
{
	job_handler handler = find_handler(run->job->kind);
	char *err = NULL;

	if (handler == NULL) {
		*reason = xasprintf("unknown job kind '%s'", run->job->kind);
		return JOB_OUTCOME_FAILED;
	}
	run->lease = lease_start(run, &err);
	if (run->lease == NULL) {
		/* Out of threads: not the job's fault. */
		run->detail = err;
		*reason = xstrdup("the worker ran out of resources");
		return JOB_OUTCOME_RETRY;
	}
	enum job_outcome outcome = handler(run, result, reason);
	/* Before the final report: a renewal after it would only be refused. */
	lease_stop(run->lease);
	run->lease = NULL;
	return outcome;
}

/* Runs one delivery to the end. Returns true when the loop should back off (Postgres or
 * the API unreachable). */
static bool
run_delivery(struct worker *w, const struct kv_delivery *d)
{
	struct job_run run = {.w = w, .d = *d};
	char *err = NULL, *reason = NULL, dbuf[1024];
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
	enum job_outcome outcome = run_handler(&run, &result, &reason);
	double secs = (double)(now_ms() - t0) / 1000.0;

	json_t *body = NULL;
	switch (outcome) {
	case JOB_OUTCOME_DONE:
		log_info_id(run.log_id, "done in %.2f s", secs);
		body = json_pack(
		    "{s:s, s:s, s:O}", "state", "done", "worker", w->id, "result", result);
		finish(w, &run, body, true);
		break;
	case JOB_OUTCOME_FAILED:
		log_warn_id(run.log_id, "failed after %.2f s: %s%s", secs, reason,
		    detail_suffix(&run, dbuf, sizeof dbuf));
		char *clipped = report_clip(reason, REPORT_MAX_ERROR);
		body = json_pack(
		    "{s:s, s:s, s:s}", "state", "failed", "worker", w->id, "error", clipped);
		free(clipped);
		finish(w, &run, body, false);
		break;
	case JOB_OUTCOME_RETRY:
		log_warn_id(run.log_id, "interrupted after %.2f s, will be retried: %s%s", secs,
		    reason, detail_suffix(&run, dbuf, sizeof dbuf));
		release(w, &run, reason);
		backoff = true;
		break;
	case JOB_OUTCOME_CANCELLED:
		/* Why was logged when the handler was stopped. */
		ack(w, d);
		break;
	}
	json_decref(body);
	json_decref(result);
	free(reason);
	w->current_job = 0;
	worker_heartbeat(w, true);
out:
	free(run.detail);
	free(run.message);
	free(run.sent_message);
	job_free(run.job);
	return backoff;
}

/* Whether this worker still holds the advisory lock it took in this pass. db_try_lock is
 * session level and re-entrant: in the same session it only counts once more (undone at
 * once); after a reconnect (db_exec resets a broken connection by itself, which drops
 * session locks) it takes the lock again in the new session, or fails because another
 * worker took it meanwhile. The backend pid tells the two cases apart. */
static bool
lock_still_held(struct worker *w, int64_t key, int *backend_pid)
{
	if (!db_try_lock(w->db, key))
		return false;
	int pid = PQbackendPID(db_conn(w->db));
	if (pid == *backend_pid)
		db_unlock(w->db, key); /* back to one hold */
	else
		*backend_pid = pid; /* taken again in a new session */
	return true;
}

/* Re-enqueues jobs Postgres says are queued or running but Redis has no marker for
 * (Redis flushed or restarted without persistence). One worker at a time: the one that
 * gets the lock, re-checked every RECONCILE_CHUNK jobs so that a pass stops early when a
 * reconnect lost the lock to another worker. */
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
	int backend_pid = PQbackendPID(db_conn(w->db));
	bool held = true;
	if (jobstore_list_unfinished(w->db, min_age, &ids, &n, &err) != 0) {
		trouble_fail(&w->pg_trouble, "reconcile: %s", err);
		free(err);
		goto out;
	}
	for (size_t i = 0; i < n && !worker_stop; i++) {
		if (i > 0 && i % RECONCILE_CHUNK == 0) {
			held = lock_still_held(w, RECONCILE_LOCK_KEY, &backend_pid);
			if (!held) {
				log_info(
				    "reconcile: lock lost after %zu of %zu jobs; stopped", i, n);
				break;
			}
		}
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
	if (held)
		db_unlock(w->db, RECONCILE_LOCK_KEY);
}

/* Removes the store's temp files older than an hour (a crash's leftovers) without
 * waiting for the next restart. One worker at a time. */
static void
sweep(struct worker *w)
{
	char *err = NULL;

	if (!db_try_lock(w->db, SWEEP_LOCK_KEY))
		return; /* another worker sweeps, or Postgres is down: next time */
	int removed = store_clean_tmp(w->store, SWEEP_TMP_AGE_S, &err);
	if (removed < 0) {
		log_warn("cannot clean the store's temp files: %s", err);
		free(err);
	} else if (removed > 0) {
		log_info("removed %d stale temp file(s) from the store", removed);
	}
	db_unlock(w->db, SWEEP_LOCK_KEY);
}

/* Claims and runs jobs until SIGTERM/SIGINT, with the periodic duties in between. */
void
worker_loop(struct worker *w)
{
	uint64_t lease_ms = (uint64_t)w->cfg->job_lease * 1000;
	uint64_t stale_every = lease_ms / 2 > 1000 ? lease_ms / 2 : 1000;
	uint64_t next_stale = now_ms() + stale_every, next_reconcile = 0;
	/* main.c swept at start. */
	uint64_t next_sweep = now_ms() + SWEEP_EVERY_MS;
	uint64_t next_notify = 0;
	/* The Droplet Archiver: sends often, reconciles soon after start then every interval. */
	uint64_t next_replicate = 0, next_sync = now_ms() + 5000;
	/* Expiry soon after start; the first collection one interval after it. */
	uint64_t next_expire = 0, next_gc = now_ms() + (uint64_t)w->cfg->gc_interval * 1000;
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
		if (now >= next_notify) {
			notify_run(w);
			next_notify = now_ms() + NOTIFY_EVERY_MS;
		}
		if (now >= next_replicate) {
			replicate_run(w);
			next_replicate = now_ms() + REPLICATE_EVERY_MS;
		}
		if (now >= next_sync) {
			reconcile_run(w);
			next_sync = now_ms() + (uint64_t)w->cfg->archiver_sync_interval * 1000;
		}
		if (now >= next_sweep) {
			sweep(w);
			next_sweep = now_ms() + SWEEP_EVERY_MS;
		}
		if (now >= next_expire) {
			expire_run(w);
			next_expire = now_ms() + (uint64_t)w->cfg->expiry_interval * 1000;
		}
		if (now >= next_gc) {
			gc_run(w);
			next_gc = now_ms() + (uint64_t)w->cfg->gc_interval * 1000;
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
