/* worker.h: what the worker's modules share: the process's handles (struct worker), a job
 * being run (struct job_run), the handler table's type, and the progress call handlers
 * make. docs/worker.md tells the whole flow. */
#ifndef BV_WORKER_WORKER_H
#define BV_WORKER_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/config.h"
#include "shared/db.h"
#include "shared/gitobj.h"
#include "shared/httpc.h"
#include "shared/jobstore.h"
#include "shared/kv.h"
#include "shared/store.h"
#include "shared/util.h"

/* Advisory locks (session level, try-lock) for periodic duties one worker at a time does:
 * reconciling the queue, sweeping the store's stale temp files, sending notifications. Distinct from db.c's
 * migration lock. */
#define RECONCILE_LOCK_KEY 0x62767265636f6e63LL /* "bvreconc" */
#define SWEEP_LOCK_KEY 0x6276737765657074LL /* "bvsweept" */
#define NOTIFY_LOCK_KEY 0x62766e6f74696679LL /* "bvnotify": sending notify_url callbacks */
#define EXPIRE_LOCK_KEY 0x6276657870697265LL /* "bvexpire": bundle expiry and quota */
#define GC_LOCK_KEY 0x62766763636f6c6cLL /* "bvgccoll": blob garbage collection */
#define SYNC_LOCK_KEY 0x627673796e637263LL /* "bvsyncrc": the Droplet Archiver's reconcile */

/* Set by SIGTERM/SIGINT: finish the current job, then leave. */
extern volatile sig_atomic_t worker_stop;

/* One rate-limited complaint: the first failure of a kind is logged, repeats at most every
 * 30 s, and the recovery once. */
struct trouble {
	const char *what; /* "redis", "postgres", "api" */
	uint64_t last_log_ms;
	int64_t suppressed;
	bool failing;
};

/* The process. Everything here belongs to the job loop's thread, except the lease_*
 * members, which only the running job's keepalive thread (lease.c) uses. */
struct worker {
	struct config *cfg;
	struct db *db;
	struct kv *kv;
	struct store *store;
	struct httpc *hc; /* claims and final reports (30 s timeout) */
	struct httpc *hc_progress; /* progress reports (short timeout: never stall a cook) */
	struct httpc *lease_hc; /* lease renewals (timeout below a third of the lease) */
	struct kv *lease_kv; /* its own Redis connection: hiredis contexts are not shared */
	struct trouble lease_api_trouble, lease_redis_trouble;
	char *name; /* consumer name, heartbeat and logs */
	/* The jobs' "worker": name plus a random tag made at start, so a worker restarted
	 * under the same name (a fixed worker_name, PID 1 in a container) is another holder
	 * to the API, and taking its old job back counts as a new attempt. */
	char *id;
	char *api_base; /* "http://127.0.0.1:8080", no trailing slash */
	double started_at; /* unix seconds */
	int64_t jobs_done, jobs_failed;
	int64_t current_job; /* 0 when idle */
	uint64_t next_heartbeat_ms;
	struct trouble redis_trouble, pg_trouble, api_trouble;
};

/* A job while it runs. */
struct job_run {
	struct worker *w;
	struct job *job; /* as read from Postgres before the claim */
	struct kv_delivery d;
	char log_id[32]; /* "job=42" */
	char *sent_message; /* last progress message the API accepted */
	char *message; /* latest message from the handler */
	uint64_t last_report_ms;
	bool cancelled; /* the job is no longer ours (final, or held by another worker) */
	struct lease *lease; /* its keepalive thread */
	char *detail; /* server-side detail of a failure (paths, errno, Postgres text): for
		       * the log only, never for the user */
};

/* What a handler made of its job. */
enum job_outcome {
	JOB_OUTCOME_DONE, /* *result set */
	JOB_OUTCOME_FAILED, /* *reason set: a readable sentence for the user */
	JOB_OUTCOME_RETRY, /* *reason set (user-readable too: it becomes the failure
			    * reason when attempts run out): our infrastructure failed
			    * (Postgres down); hand the job back, claimed again later */
	JOB_OUTCOME_CANCELLED /* the job was finished elsewhere; just ack */
};

typedef enum job_outcome (*job_handler)(struct job_run *run, json_t **result, char **reason);

/* loop.c */
void worker_loop(struct worker *w);
/* Sends the heartbeat if it is due (or now when force); never fails loudly. */
void worker_heartbeat(struct worker *w, bool force);
/* Logs a failure of one kind, rate-limited. */
void trouble_fail(struct trouble *t, const char *fmt, ...) BV_PRINTF(2, 3);
/* Logs the recovery after failures. */
void trouble_ok(struct trouble *t);
/* Sleeps ms milliseconds in small steps, returning early when asked to stop. */
void worker_sleep(uint64_t ms);
/* The heartbeat document (JSON text, caller frees) and its lifetime in seconds. */
char *worker_heartbeat_doc(const struct worker *w, int *ttl_s);
/* Whether the last Postgres error on w->db may go away by itself (connection lost, server
 * shutting down, out of resources, serialization failure): a job that hit it is retried;
 * any other SQL error fails the job at once. */
bool worker_db_transient(struct worker *w);

/* report.c: the API calls (PATCH /jobs/{id}). */
enum report_status {
	REPORT_OK, /* 200: *state is the job's state after the PATCH */
	REPORT_REJECTED, /* 400/404: the API refused it (*errstr says why) */
	REPORT_CONFLICT, /* 409: another worker holds the job, alive (*errstr) */
	REPORT_UNREACHABLE /* transport error, 5xx, 401/403: try again later */
};
/* One PATCH with a JSON object body (not consumed). *state (new string) on REPORT_OK,
 * *errstr otherwise; logs nothing. Safe from any thread with its own hc. */
/* The API's limits on what a worker writes (api/jobjson.h): longer text is cut. */
#define REPORT_MAX_PROGRESS 1024
#define REPORT_MAX_ERROR 4096
/* A copy of s cut to at most max bytes at a UTF-8 character boundary, "..." marking the
 * cut: a reason that names a long path must not get the whole report refused. */
char *report_clip(const char *s, size_t max);
enum report_status report_patch(const struct worker *w, struct httpc *hc, int64_t job_id,
    const json_t *body, char **state, char **errstr);
/* Retries REPORT_UNREACHABLE with backoff for up to max_ms (stops early when asked to
 * stop), logging the failures itself (rate-limited, w->api_trouble); the last attempt's
 * status is returned, with *errstr only for REPORT_REJECTED and REPORT_CONFLICT. */
enum report_status report_patch_retry(struct worker *w, int64_t job_id, const json_t *body,
    uint64_t max_ms, char **state, char **errstr);
/* The handler's progress: records the message and, at most once a second, sends it when
 * it changed (the lease itself is kept by the keepalive thread). false when the job is no
 * longer ours (final elsewhere, held by another worker, refused): the handler should stop
 * and return JOB_OUTCOME_CANCELLED. */
bool job_progress(struct job_run *run, const char *fmt, ...) BV_PRINTF(2, 3);
/* Like job_progress, without the rate limit: for the few messages that start a phase
 * during which nothing else is said (e.g. "Storing the bundle" while a big file is
 * flushed to disk). */
bool job_phase(struct job_run *run, const char *fmt, ...) BV_PRINTF(2, 3);
/* Like job_progress with no new message (for long files): false when the job is no
 * longer ours. */
bool job_keepalive(struct job_run *run);

/* lease.c: a running job's keepalive thread. */
struct lease;
/* Starts renewing run's lease (PATCH + kv_touch every min(5 s, job_lease / 3)) and
 * sending the heartbeat. NULL + *errstr when the thread cannot be started. */
struct lease *lease_start(struct job_run *run, char **errstr) BV_MUSTCHECK;
/* Stops and joins the thread; NULL does nothing. */
void lease_stop(struct lease *l);
/* true (with *why, a new string) once a renewal learned the job is no longer ours. */
bool lease_lost(struct lease *l, char **why);

/* cook.c: a cook job (kind "cook"): a bundle of a directory, revision or snapshot. */
enum job_outcome cook_run(struct job_run *run, json_t **result, char **reason);

/* gitfast.c, gitbare.c: the git bundles of a cook job (cook.c hands them over). */
enum job_outcome gitfast_cook(
    struct job_run *run, const unsigned char rev[20], json_t **result, char **reason);
enum job_outcome gitbare_cook(struct job_run *run, enum swhid_kind kind, const unsigned char id[20],
    json_t **result, char **reason);

/* load.c: a load job (kind "load"): reads a git repository with libgit2 and stores every
 * reachable object and a snapshot of its branches. */
enum job_outcome load_run(struct job_run *run, json_t **result, char **reason);

/* request.c: a request job (kind "request"): one of Cachito's requests, from source to
 * bundle (docs/worker.md "Requests"). */
enum job_outcome request_run(struct job_run *run, json_t **result, char **reason);
/* stash.c: the zip of an app stash bundle (POST /app_stash/bundles). */
enum job_outcome stash_bundle_run(struct job_run *run, json_t **result, char **reason);
/* stash.c: a zip of files ([[name, sha256 hex, size, mode], ...], in that order) from
 * the store into the store: DONE with its sha256, sha1 and size, or a handler's outcome
 * (*reason). Shared by the stash_bundle and package_upload jobs. */
enum job_outcome stash_zip(struct job_run *run, const json_t *files, unsigned char sha256[32],
    unsigned char sha1[20], uint64_t *size, char **reason);
/* package.c: a CF v3 package's upload packed (POST /v3/packages/{guid}/upload). */
enum job_outcome package_upload_run(struct job_run *run, json_t **result, char **reason);
/* replicate.c: the Droplet Archiver's duties: send the due droplets to their peers, and
 * reconcile with each peer (docs/api.md "Droplet Archiver"). */
void replicate_run(struct worker *w);
void reconcile_run(struct worker *w);

/* expire.c: expires bundles past bundle_ttl since their last use and evicts the least
 * recently used past store_quota; one worker at a time (EXPIRE_LOCK_KEY). */
void expire_run(struct worker *w);

/* gc.c: blob garbage collection, mark and sweep (docs/operations.md). */
struct gc_report {
	int64_t scanned; /* blobs looked at */
	int64_t deleted; /* blobs deleted (or that would be, in a dry run) */
	int64_t deleted_bytes;
	int64_t kept_young; /* unreferenced, but younger than gc_grace */
};
/* One collection, unless another worker holds GC_LOCK_KEY (then 1 and nothing done).
 * dry_run only reports. 0 with *report filled (also when worker_stop ended the walk
 * early), 1 when skipped, -1 + *errstr. */
int gc_collect(
    struct worker *w, bool dry_run, struct gc_report *report, char **errstr) BV_MUSTCHECK;
/* The periodic duty: gc_collect with cfg->gc_dry_run and gc_grace at least
 * STORE_MIN_GC_GRACE_S, logged. */
void gc_run(struct worker *w);

#endif
