/* expire.c: bundle expiry and the store quota. A bundle not used (downloaded, else
 * cooked) for bundle_ttl seconds expires; past store_quota the least recently used ones
 * are evicted until the bundles fit. Sticky bundles are never touched. Expiring a bundle
 * makes its job expired and drops its bundles row (jobstore_expire_bundle); its blob goes
 * at once when nothing else names it and it is older than gc_grace (the rule garbage
 * collection follows), else it is left to GC. One worker at a time (EXPIRE_LOCK_KEY);
 * candidates come in bounded batches, never all at once. Every expiry and deletion is
 * logged with its reason. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "worker/worker.h"

/* Bundles read per query. */
#define EXPIRE_BATCH 100
/* A quota that sticky bundles alone overrun is complained about this often. */
#define QUOTA_WARN_MS (3600 * 1000)

/* Unix seconds as "2026-05-01T12:00:00Z". */
static void
iso8601(double t, char out[32])
{
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
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
	if (jobstore_blobs_referenced(w->db, sha, 1, &referenced, &err) != 0) {
		log_warn("expiry: blob %s left to GC: %s", b->sha256, err);
		free(err);
		return;
	}
	if (referenced) {
		log_debug("expiry: blob %s kept: still referenced", b->sha256);
		return;
	}
	rc = store_delete_old(w->store, sha[0], w->cfg->gc_grace, &err);
	if (rc < 0) {
		log_warn("expiry: cannot delete blob %s: %s", b->sha256, err);
		free(err);
	} else if (rc == 1) {
		log_info("deleted blob %s (%lld bytes): %s", b->sha256, (long long)b->size, why);
	} else {
		log_debug("expiry: blob %s kept for GC: written within gc_grace", b->sha256);
	}
}

/* Expires one listed bundle; idle_s as jobstore_expire_bundle. 1 expired, 0 left alone
 * (used or made sticky meanwhile), -1 on a database error (logged). */
static int
expire_one(struct worker *w, const struct bundle_ref *b, int64_t idle_s, const char *reason,
    const char *blob_why)
{
	char *err = NULL;
	int rc = jobstore_expire_bundle(w->db, b->job_id, idle_s, &err);

	if (rc < 0) {
		trouble_fail(&w->pg_trouble, "expiry: job %lld: %s", (long long)b->job_id, err);
		free(err);
		return -1;
	}
	if (rc == 0)
		return 0;
	log_info("%s bundle job=%lld %s (%s)", idle_s >= 0 ? "expired" : "evicted",
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

		if (jobstore_list_lru_bundles(w->db, ttl, EXPIRE_BATCH, &refs, &n, &err) != 0) {
			trouble_fail(&w->pg_trouble, "expiry: %s", err);
			free(err);
			return -1;
		}
		for (size_t i = 0; i < n && !worker_stop; i++) {
			char when[32], *reason;

			iso8601(refs[i].last_use, when);
			reason =
			    xasprintf("ttl: last used %s, bundle_ttl %llds", when, (long long)ttl);
			int rc = expire_one(w, &refs[i], ttl, reason, "bundle expired");
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

/* Evicts the least recently used non-sticky bundles while the bundles' total size is
 * above store_quota. */
static int
enforce_quota(struct worker *w)
{
	int64_t quota = w->cfg->store_quota, total = 0, sticky = 0;
	char *err = NULL;
	int evicted = 0;

	if (quota <= 0)
		return 0;
	if (jobstore_bundles_usage(w->db, &total, &sticky, &err) != 0) {
		trouble_fail(&w->pg_trouble, "quota: %s", err);
		free(err);
		return -1;
	}
	while (total > quota && !worker_stop) {
		struct bundle_ref *refs = NULL;
		size_t n = 0;
		int progress = 0;

		if (jobstore_list_lru_bundles(w->db, -1, EXPIRE_BATCH, &refs, &n, &err) != 0) {
			trouble_fail(&w->pg_trouble, "quota: %s", err);
			free(err);
			return -1;
		}
		for (size_t i = 0; i < n && total > quota && !worker_stop; i++) {
			char *reason = xasprintf("quota: bundles use %lld of %lld bytes",
			    (long long)total, (long long)quota);
			int rc = expire_one(w, &refs[i], -1, reason, "bundle evicted");
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
			/* Only sticky bundles are left (or nothing could go): they stay. Said
			 * once an hour, not every run. */
			static uint64_t warned_ms;
			if (warned_ms != 0 && now_ms() - warned_ms < QUOTA_WARN_MS)
				break;
			warned_ms = now_ms();
			log_warn("quota: bundles use %lld of %lld bytes, %lld of them sticky;"
				 " nothing more can be evicted",
			    (long long)total, (long long)quota, (long long)sticky);
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
		return; /* another worker expires now */
	int expired = expire_ttl(w);
	int evicted = expired >= 0 ? enforce_quota(w) : -1;
	if (expired >= 0 && evicted >= 0)
		trouble_ok(&w->pg_trouble);
	if (expired > 0 || evicted > 0)
		log_info("expiry: %d bundle(s) expired, %d evicted", expired > 0 ? expired : 0,
		    evicted > 0 ? evicted : 0);
	db_unlock(w->db, EXPIRE_LOCK_KEY);
}
