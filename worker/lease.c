/* lease.c: a running job's keepalive thread.
 *
 * A job's lease lives in two places: its updated_at in Postgres, renewed by any PATCH of
 * its worker through the API (another worker may claim a running job untouched for
 * job_lease seconds), and its Redis entry's idle time plus its marker (kv_touch; an entry
 * idle for job_lease is taken over by XAUTOCLAIM). Handlers go through long phases that
 * report nothing (fsync of a multi-GB bundle, the gzip trailer, a slow query between
 * batches), so the lease cannot ride on their progress reports: this thread renews both
 * every min(5 s, job_lease / 3) whatever the job is doing, PATCH first so that Redis never
 * looks idle before Postgres does, and sends the worker's heartbeat.
 *
 * It uses its own HTTP client and Redis connection (w->lease_hc, w->lease_kv: hiredis
 * contexts are not thread-safe) and shares with the job loop only the stop request and
 * the "lost" note, both under the mutex. When a renewal learns that the job is no longer
 * ours (409: another worker took it over; 400/404: final or gone) it stops renewing and
 * leaves the note; job_progress and job_keepalive read it and stop the handler. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "worker/worker.h"

/* Renewals at least this often, whatever the lease (and a third of it when shorter). */
#define LEASE_RENEW_MAX_MS 5000
#define LEASE_RENEW_MIN_MS 100

struct lease {
	struct worker *w; /* read only here: cfg, name, api_base, lease_* */
	int64_t job_id;
	struct kv_delivery d;
	char *heartbeat; /* the document, fixed for the job's life */
	int heartbeat_ttl;
	uint64_t renew_ms, heartbeat_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop; /* under mu */
	char *lost; /* under mu: why the job is no longer ours; NULL while it is */
};

/* How often the lease is renewed for a lease of lease_s seconds. */
static uint64_t
renew_interval_ms(int64_t lease_s)
{
	uint64_t ms = (uint64_t)lease_s * 1000 / 3;
	if (ms > LEASE_RENEW_MAX_MS)
		ms = LEASE_RENEW_MAX_MS;
	return ms < LEASE_RENEW_MIN_MS ? LEASE_RENEW_MIN_MS : ms;
}

/* Leaves the note for the job loop (the first reason wins). */
static void
set_lost(struct lease *l, char *why)
{
	pthread_mutex_lock(&l->mu);
	if (l->lost == NULL) {
		l->lost = why;
		why = NULL;
	}
	pthread_mutex_unlock(&l->mu);
	free(why);
}

/* One renewal: an empty progress PATCH (it renews updated_at) and kv_touch. false when the
 * job turned out not to be ours any more. */
static bool
renew(struct lease *l)
{
	struct worker *w = l->w;
	json_t *body = json_pack("{s:s}", "worker", w->id);
	char *state = NULL, *err = NULL;
	enum report_status rs = report_patch(w, w->lease_hc, l->job_id, body, &state, &err);
	bool ours = true;

	json_decref(body);
	switch (rs) {
	case REPORT_OK:
		trouble_ok(&w->lease_api_trouble);
		/* A progress PATCH of a job that is not running is refused (400), so this is
		 * a belt and braces check. */
		if (strcmp(state, "running") != 0) {
			set_lost(l, xasprintf("the job is %s", state));
			ours = false;
		}
		break;
	case REPORT_REJECTED:
	case REPORT_CONFLICT:
		trouble_ok(&w->lease_api_trouble);
		set_lost(l, err);
		err = NULL;
		ours = false;
		break;
	case REPORT_UNREACHABLE:
		/* Keep trying: the lease may still hold when the API answers again. */
		trouble_fail(&w->lease_api_trouble, "cannot renew the lease of job %lld: %s",
		    (long long)l->job_id, err);
		break;
	}
	free(state);
	free(err);
	if (!ours)
		return false;

	if (kv_touch(w->lease_kv, w->name, &l->d, &err) != 0) {
		trouble_fail(&w->lease_redis_trouble, "cannot keep the lease of job %lld: %s",
		    (long long)l->job_id, err);
		free(err);
	} else {
		trouble_ok(&w->lease_redis_trouble);
	}
	return true;
}

/* The worker's heartbeat while the job runs. */
static void
beat(struct lease *l)
{
	struct worker *w = l->w;
	char *err = NULL;

	if (kv_heartbeat(w->lease_kv, w->name, l->heartbeat, l->heartbeat_ttl, &err) != 0) {
		trouble_fail(&w->lease_redis_trouble, "heartbeat: %s", err);
		free(err);
	}
}

/* Waits on the condition variable until the monotonic time due_ms (or a signal). */
static void
wait_until(struct lease *l, uint64_t due_ms)
{
	struct timespec ts = {(time_t)(due_ms / 1000), (long)(due_ms % 1000) * 1000000L};
	int r = pthread_cond_timedwait(&l->cv, &l->mu, &ts);
	(void)r; /* ETIMEDOUT and spurious wake-ups alike: the caller looks at the clock */
}

/* The thread: renewals and heartbeats until asked to stop. */
static void *
lease_main(void *arg)
{
	struct lease *l = arg;
	uint64_t next_renew = now_ms() + l->renew_ms;
	uint64_t next_beat = now_ms() + l->heartbeat_ms;
	bool ours = true;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		uint64_t now = now_ms();
		uint64_t due = ours && next_renew < next_beat ? next_renew : next_beat;
		if (now < due) {
			wait_until(l, due);
			continue;
		}
		pthread_mutex_unlock(&l->mu);
		/* Fixed rate from the planned time, so a slow call does not push the next
		 * renewal back by its own duration. */
		if (ours && now >= next_renew) {
			ours = renew(l);
			next_renew += l->renew_ms;
			if (next_renew <= now)
				next_renew = now + l->renew_ms;
		}
		if (now >= next_beat) {
			beat(l);
			next_beat = now + l->heartbeat_ms;
		}
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* Starts the thread for run (after its claim, which renewed the lease just now). */
struct lease *
lease_start(struct job_run *run, char **errstr)
{
	struct worker *w = run->w;
	struct lease *l = xcalloc(1, sizeof *l);
	pthread_condattr_t ca;
	sigset_t all, old;
	int r;

	l->w = w;
	l->job_id = run->job->id;
	l->d = run->d;
	l->heartbeat = worker_heartbeat_doc(w, &l->heartbeat_ttl);
	l->renew_ms = renew_interval_ms(w->cfg->job_lease);
	l->heartbeat_ms = (uint64_t)w->cfg->worker_heartbeat * 1000;
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);

	/* Signals are the job loop's business (SIGTERM finishes the job): the thread
	 * inherits a mask that blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&l->thread, NULL, lease_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		*errstr = xasprintf("cannot start the keepalive thread: %s", strerror(r));
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mu);
		free(l->heartbeat);
		free(l);
		return NULL;
	}
	return l;
}

/* Stops the thread (at most one PATCH or Redis call later) and frees. */
void
lease_stop(struct lease *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l->lost);
	free(l->heartbeat);
	free(l);
}

/* The note, for the job loop. */
bool
lease_lost(struct lease *l, char **why)
{
	bool lost = false;

	if (l == NULL)
		return false;
	pthread_mutex_lock(&l->mu);
	if (l->lost != NULL) {
		*why = xstrdup(l->lost);
		lost = true;
	}
	pthread_mutex_unlock(&l->mu);
	return lost;
}
