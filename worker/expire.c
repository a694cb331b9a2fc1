/* expire.c: bundle expiry and the store quota. A bundle not used (downloaded, else
 * cooked) for bundle_ttl seconds expires; past store_quota the least recently used ones
 * are evicted until the bundles fit, except sticky bundles and bundles cooked less than
 * QUOTA_MIN_FRESH_S ago that nobody downloaded yet. Expiring a bundle makes its job
 * expired and drops its bundles row (jobstore_expire_bundle); its blob goes at once when
 * nothing else names it and it is older than gc_grace (at least STORE_MIN_GC_GRACE_S: the
 * rule garbage collection follows), else it is left to GC. Nothing is expired while the
 * store and the database are not bound to each other (jobstore_bind_store). One worker
 * at a time (EXPIRE_LOCK_KEY); candidates come in bounded batches, never all at once.
 * Every expiry and deletion is logged with its reason.
 *
 * Requests (Cachito's) have their own lifetimes: complete (or stuck in progress) ones
 * become stale request_lifetime after their last update, failed ones
 * request_lifetime_failed after; going stale expires their bundle the same way. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "shared/requests.h"
#include "worker/worker.h"

/* Bundles read per query. */
#define EXPIRE_BATCH 100
/* A quota that cannot be met is complained about this often. */
#define QUOTA_WARN_MS (3600 * 1000)
/* A bundle cooked this recently and never downloaded is not evicted for the quota: its
 * client was told "done" and is about to fetch it. Without it, one bundle bigger than
 * the quota (or sticky bundles filling it) would have every new bundle evicted right
 * after its cook, and clients would re-POST and re-cook forever. bundle_ttl still
 * applies to it. */
#define QUOTA_MIN_FRESH_S 600

/* Process-wide, not per struct worker (worker.h is not ours to grow): there is one
 * worker per process, and these only rate-limit log lines. The last refusal to expire
 * (NULL while bound), so it is logged once, not every expiry_interval; and when the
 * quota last could not be met. */
static char *refused_reason;
static uint64_t quota_warned_ms;

/* Unix seconds as "2026-05-01T12:00:00Z". */
static void
iso8601(double t, char out[32])
{
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Whether expiry may delete: the store can delete safely and is bound to this database.
 * A refusal is logged as an error once (again when its reason changes), the way back
 * once. */
static bool
deletions_allowed(struct worker *w)
{
	char *err = NULL;
	int rc =
	    store_check_gc(w->store, &err) == 0 ? jobstore_bind_store(w->db, w->store, &err) : 0;

	if (rc < 0) {
		trouble_fail(&w->pg_trouble, "expiry: %s", err);
		free(err);
		return false;
	}
	if (rc == 0) {
		if (refused_reason == NULL || strcmp(refused_reason, err) != 0)
			log_error("expiry: not expiring anything: %s", err);
		free(refused_reason);
		refused_reason = err;
		return false;
	}
	if (refused_reason != NULL) {
		log_info("expiry: the store and the database agree again; expiring");
		free(refused_reason);
		refused_reason = NULL;
	}
	return true;
}

/* gc_grace as the periodic duties use it. */
static int64_t
grace(const struct worker *w)
{
	return w->cfg->gc_grace < STORE_MIN_GC_GRACE_S ? STORE_MIN_GC_GRACE_S : w->cfg->gc_grace;
}

/* Deletes the blob of an expired bundle when no contents or bundles row names it and it
 * was not (re)written within gc_grace; otherwise garbage collection sees to it later. */
static void
drop_blob(struct worker *w, const struct bundle_ref *b, const char *why)
{
	unsigned char sha[1][32];
	bool referenced = false;
	char *err = NULL;
	int rc;

	if (!hex_decode(b->sha256, sha[0], sizeof sha[0]))
		return;
	if (jobstore_blobs_referenced(
		w->db, (const unsigned char(*)[32])sha, 1, &referenced, &err) != 0) {
		log_warn("expiry: blob %s left to GC: %s", b->sha256, err);
		free(err);
		return;
	}
	if (referenced) {
		log_debug("expiry: blob %s kept: still referenced", b->sha256);
		return;
	}
	rc = store_delete_old(w->store, sha[0], grace(w), &err);
	if (rc < 0) {
		log_warn("expiry: cannot delete blob %s: %s", b->sha256, err);
		free(err);
	} else if (rc == 1) {
		log_info("deleted blob %s (%lld bytes): %s", b->sha256, (long long)b->size, why);
	} else {
		log_debug("expiry: blob %s kept for GC: written within gc_grace", b->sha256);
	}
}

/* Expires one listed bundle, only while it is as listed (same last use, still idle for
 * idle_s, still not fresh for min_fresh_s). 1 gone, 0 left alone (used or made sticky
 * meanwhile), -1 on a database error (logged). */
static int
expire_one(struct worker *w, const struct bundle_ref *b, int64_t idle_s, int64_t min_fresh_s,
    const char *reason, const char *blob_why)
{
	char *err = NULL;
	int rc = jobstore_expire_bundle(w->db, b->job_id, idle_s, b->last_use_s, min_fresh_s, &err);

	if (rc < 0) {
		trouble_fail(&w->pg_trouble, "expiry: job %lld: %s", (long long)b->job_id, err);
		free(err);
		return -1;
	}
	if (rc == 0)
		return 0;
	if (rc == 1)
		log_info("%s bundle job=%lld %s (%s)", idle_s >= 0 ? "expired" : "evicted",
		    (long long)b->job_id, b->dedup_key, reason);
	else
		log_info("dropped the bundles row of job=%lld %s: the job was already expired (%s)",
		    (long long)b->job_id, b->dedup_key, reason);
	drop_blob(w, b, blob_why);
	return 1;
}

/* Expires every non-sticky bundle unused for bundle_ttl seconds, a batch at a time. */
static int
expire_ttl(struct worker *w)
{
	int64_t ttl = w->cfg->bundle_ttl;
	int total = 0;

	while (!worker_stop) {
		struct bundle_ref *refs = NULL;
		size_t n = 0;
		char *err = NULL;
		int expired = 0;

		if (w->kv != NULL)
			worker_heartbeat(w, false);
		if (jobstore_list_lru_bundles(w->db, ttl, 0, EXPIRE_BATCH, &refs, &n, &err) != 0) {
			trouble_fail(&w->pg_trouble, "expiry: %s", err);
			free(err);
			return -1;
		}
		for (size_t i = 0; i < n && !worker_stop; i++) {
			char when[32], *reason;

			iso8601(refs[i].last_use, when);
			reason =
			    xasprintf("ttl: last used %s, bundle_ttl %llds", when, (long long)ttl);
			int rc = expire_one(w, &refs[i], ttl, 0, reason, "bundle expired");
			free(reason);
			if (rc < 0) {
				jobstore_bundle_refs_free(refs, n);
				return -1;
			}
			expired += rc;
		}
		jobstore_bundle_refs_free(refs, n);
		total += expired;
		/* A short batch was the last; a batch where nothing expired (all used
		 * meanwhile) would come back the same. */
		if (n < EXPIRE_BATCH || expired == 0)
			break;
	}
	return total;
}

/* The quota cannot be met with what may be evicted: said once an hour, not every run. */
static void
quota_unmet(int64_t total, int64_t quota, int64_t sticky, int64_t fresh)
{
	if (quota_warned_ms != 0 && now_ms() - quota_warned_ms < QUOTA_WARN_MS)
		return;
	quota_warned_ms = now_ms();
	log_warn("quota: bundles use %lld of %lld bytes, %lld of them sticky and %lld cooked"
		 " within %ds and not downloaded yet; nothing more can be evicted now",
	    (long long)total, (long long)quota, (long long)sticky, (long long)fresh,
	    QUOTA_MIN_FRESH_S);
}

/* Evicts the least recently used non-sticky, non-fresh bundles while the bundles' total
 * size is above store_quota. */
static int
enforce_quota(struct worker *w)
{
	int64_t quota = w->cfg->store_quota, total = 0, sticky = 0, fresh = 0;
	char *err = NULL;
	int evicted = 0;

	if (quota <= 0)
		return 0;
	if (jobstore_bundles_usage(w->db, QUOTA_MIN_FRESH_S, &total, &sticky, &fresh, &err) != 0) {
		trouble_fail(&w->pg_trouble, "quota: %s", err);
		free(err);
		return -1;
	}
	while (total > quota && !worker_stop) {
		struct bundle_ref *refs = NULL;
		size_t n = 0;
		int progress = 0;

		if (w->kv != NULL)
			worker_heartbeat(w, false);
		if (jobstore_list_lru_bundles(
			w->db, -1, QUOTA_MIN_FRESH_S, EXPIRE_BATCH, &refs, &n, &err) != 0) {
			trouble_fail(&w->pg_trouble, "quota: %s", err);
			free(err);
			return -1;
		}
		for (size_t i = 0; i < n && total > quota && !worker_stop; i++) {
			char *reason = xasprintf("quota: bundles use %lld of %lld bytes",
			    (long long)total, (long long)quota);
			int rc = expire_one(
			    w, &refs[i], -1, QUOTA_MIN_FRESH_S, reason, "bundle evicted");
			free(reason);
			if (rc < 0) {
				jobstore_bundle_refs_free(refs, n);
				return -1;
			}
			if (rc == 1) {
				total -= refs[i].size;
				evicted++;
				progress++;
			}
		}
		jobstore_bundle_refs_free(refs, n);
		if (n == 0 || progress == 0) {
			/* Only sticky and fresh bundles are left (or nothing could go). */
			quota_unmet(total, quota, sticky, fresh);
			break;
		}
	}
	return evicted;
}

/* The periodic duty: expiry by TTL, then the quota, under EXPIRE_LOCK_KEY. */
void
expire_run(struct worker *w)
{
	char *err = NULL;

	/* db_try_lock says false for "Postgres is down" too: check first, to say so. */
	if (db_ensure(w->db, &err) != 0) {
		trouble_fail(&w->pg_trouble, "expiry: %s", err);
		free(err);
		return;
	}
	if (!db_try_lock(w->db, EXPIRE_LOCK_KEY))
		return; /* another worker expires now (or Postgres just went: next run says) */
	if (!deletions_allowed(w)) {
		db_unlock(w->db, EXPIRE_LOCK_KEY);
		return;
	}
	int expired = expire_ttl(w);
	int evicted = expired >= 0 ? enforce_quota(w) : -1;
	int stale = 0;
	if (evicted >= 0 &&
	    requests_expire(w->db, w->cfg->request_lifetime, w->cfg->request_lifetime_failed,
		EXPIRE_BATCH, &stale, &err) != 0) {
		trouble_fail(&w->pg_trouble, "expiry of requests: %s", err);
		free(err);
		err = NULL;
		stale = -1;
	}
	if (expired >= 0 && evicted >= 0 && stale >= 0)
		trouble_ok(&w->pg_trouble);
	if (expired > 0 || evicted > 0 || stale > 0)
		log_info("expiry: %d bundle(s) expired, %d evicted, %d request(s) stale",
		    expired > 0 ? expired : 0, evicted > 0 ? evicted : 0, stale > 0 ? stale : 0);
	db_unlock(w->db, EXPIRE_LOCK_KEY);
}
