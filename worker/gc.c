/* gc.c: blob garbage collection, mark and sweep. The store's listing (objects only,
 * never tmp/, where writes in progress live) is streamed in batches; for each batch one
 * query asks Postgres which blobs a contents or bundles row names (the mark), and the
 * others are deleted (the sweep) when they were written more than gc_grace seconds ago.
 *
 * Why that is safe (docs/operations.md): a blob is touched (store_touch) just before the
 * row that references it commits, and a write of bytes already stored touches it too; so
 * a blob the mark saw unreferenced is either young at the moment of deletion (store_delete
 * _old checks the time again as it deletes, and keeps it) or its row's commit fails. The
 * workers' periodic collections use a gc_grace of at least STORE_MIN_GC_GRACE_S, which
 * bounds the time between a touch and its commit.
 *
 * A collector refuses to delete anything from a store that is not bound to its database
 * (jobstore_bind_store), from a store that holds blobs when the database holds no
 * contents and no bundles, and from a backend without a checked delete. One worker at a
 * time (GC_LOCK_KEY); two collectors after a reconnect lost the lock would still be safe,
 * only wasteful. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "worker/worker.h"

/* Blobs per reference query. */
#define GC_BATCH 1000
/* Undocumented, for tests only: milliseconds to wait between a batch's mark and its
 * sweep, so a test can reuse a blob the collector has already judged unreferenced. */
#define GC_TEST_PAUSE_ENV "BITSVAULT_TEST_GC_PAUSE_MS"

/* Process-wide, not per struct worker (worker.h is not ours to grow): one worker per
 * process, and these only rate-limit log lines of the periodic duty. */
static char *refused_reason; /* the last refusal logged; NULL while collections run */
static bool grace_warned;

/* One collection's state while the listing streams. */
struct gc_pass {
	struct worker *w;
	bool dry_run;
	int64_t grace;
	uint64_t pause_ms;
	bool db_empty; /* no contents nor bundles rows: any blob listed stops the walk */
	struct gc_report *report;
	unsigned char (*sha)[32];
	uint64_t *size;
	int64_t *mtime;
	bool *referenced;
	size_t n;
	char *err; /* what stopped the walk, when it failed */
};

/* Marks and sweeps the batch gathered so far; a stop request ends the sweep at once. 0,
 * or -1 with pass->err. */
static int
flush(struct gc_pass *p)
{
	char hex[65], *err = NULL;
	size_t old = 0;

	if (p->n == 0)
		return 0;
	if (jobstore_blobs_referenced(
		p->w->db, (const unsigned char(*)[32])p->sha, p->n, p->referenced, &err) != 0) {
		p->err = xasprintf("cannot read references: %s", err);
		free(err);
		return -1;
	}
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < p->n; i++)
		if (!p->referenced[i] && now - p->mtime[i] >= p->grace)
			old++;
	if (p->pause_ms > 0 && old > 0) {
		log_info("gc: pausing %llu ms before sweeping %zu blob(s)",
		    (unsigned long long)p->pause_ms, old);
		worker_sleep(p->pause_ms);
	}
	for (size_t i = 0; i < p->n && !worker_stop; i++) {
		if (p->referenced[i])
			continue;
		if (now - p->mtime[i] < p->grace) {
			p->report->kept_young++;
			continue;
		}
		hex_encode(p->sha[i], 32, hex);
		if (p->dry_run) {
			log_info("gc (dry run): would delete blob %s (%llu bytes): unreferenced",
			    hex, (unsigned long long)p->size[i]);
			p->report->deleted++;
			p->report->deleted_bytes += (int64_t)p->size[i];
			continue;
		}
		int rc = store_delete_old(p->w->store, p->sha[i], p->grace, &err);
		if (rc < 0) {
			/* One blob that cannot go must not stop the others. */
			log_warn("gc: cannot delete blob %s: %s", hex, err);
			free(err);
			err = NULL;
		} else if (rc == 0) {
			p->report->kept_young++; /* reused since it was listed */
		} else {
			log_info("gc: deleted blob %s (%llu bytes): unreferenced", hex,
			    (unsigned long long)p->size[i]);
			p->report->deleted++;
			p->report->deleted_bytes += (int64_t)p->size[i];
		}
	}
	p->n = 0;
	/* A long collection runs in the job loop: keep the worker visible in /status. */
	if (p->w->kv != NULL)
		worker_heartbeat(p->w, false);
	return 0;
}

/* store_list's callback: gathers a batch, sweeps it when full. Non-zero stops the walk
 * (an error, a refusal, or the worker asked to stop). */
static int
on_blob(void *arg, const unsigned char sha256[32], uint64_t size, int64_t mtime_s)
{
	struct gc_pass *p = arg;

	if (p->db_empty) {
		p->err = xstrdup("refusing to collect: the database holds no contents nor bundles"
				 " but the store holds blobs (is database_url this store's"
				 " database?)");
		return 1;
	}
	p->report->scanned++;
	memcpy(p->sha[p->n], sha256, 32);
	p->size[p->n] = size;
	p->mtime[p->n] = mtime_s;
	p->n++;
	if (p->n == GC_BATCH && flush(p) != 0)
		return 1;
	return worker_stop ? 1 : 0;
}

/* The checks before anything is deleted: a store that can delete safely, bound to this
 * database. 0, or -1 + *errstr (*refused true when it is a refusal, not an error). */
static int
may_delete(struct worker *w, bool *refused, char **errstr)
{
	char *err = NULL;
	int rc;

	*refused = false;
	if (store_check_gc(w->store, &err) != 0) {
		*refused = true;
		*errstr = xasprintf("refusing to collect: %s", err);
		free(err);
		return -1;
	}
	rc = jobstore_bind_store(w->db, w->store, &err);
	if (rc == 1)
		return 0;
	*refused = rc == 0;
	*errstr = xasprintf("%s%s", rc == 0 ? "refusing to collect: " : "", err);
	free(err);
	return -1;
}

/* One collection with the given grace under GC_LOCK_KEY: 0 done (or stopped early by
 * worker_stop), 1 another collector holds the lock, -1 + *errstr (*refused as may_delete
 * says). */
static int
collect(struct worker *w, bool dry_run, int64_t grace, struct gc_report *report, bool *refused,
    char **errstr)
{
	struct gc_pass p;
	char *err = NULL;
	const char *pause = getenv(GC_TEST_PAUSE_ENV);
	int rc = -1;

	memset(report, 0, sizeof *report);
	*refused = false;
	/* db_try_lock says false for "Postgres is down" too: check first, to say so. */
	if (db_ensure(w->db, &err) != 0) {
		*errstr = xasprintf("gc: %s", err);
		free(err);
		return -1;
	}
	if (!db_try_lock(w->db, GC_LOCK_KEY)) {
		PGconn *c = db_conn(w->db);

		/* An answer of false leaves no SQLSTATE and the connection up; anything
		 * else is an error, not another collector. */
		if (db_last_sqlstate(w->db)[0] == '\0' && c != NULL && PQstatus(c) == CONNECTION_OK)
			return 1;
		*errstr = xasprintf("gc: cannot take the collection lock: %s",
		    c != NULL && PQerrorMessage(c)[0] != '\0' ? PQerrorMessage(c)
							      : "postgres error");
		return -1;
	}
	memset(&p, 0, sizeof p);
	if (may_delete(w, refused, &err) != 0) {
		*errstr = xasprintf("gc: %s", err);
		free(err);
		goto out;
	}
	if (jobstore_refs_empty(w->db, &p.db_empty, &err) != 0) {
		*errstr = xasprintf("gc: %s", err);
		free(err);
		goto out;
	}
	p.w = w;
	p.dry_run = dry_run;
	p.grace = grace;
	p.pause_ms = pause != NULL ? strtoull(pause, NULL, 10) : 0;
	p.report = report;
	p.sha = xcalloc(GC_BATCH, sizeof *p.sha);
	p.size = xcalloc(GC_BATCH, sizeof *p.size);
	p.mtime = xcalloc(GC_BATCH, sizeof *p.mtime);
	p.referenced = xcalloc(GC_BATCH, sizeof *p.referenced);

	int walked = store_list(w->store, on_blob, &p, &err);
	if (walked < 0) {
		*errstr = xasprintf("gc: cannot list the store: %s", err);
		free(err);
		goto out;
	}
	if (p.err != NULL) {
		*refused = p.db_empty;
		*errstr = xasprintf("gc: %s", p.err);
		goto out;
	}
	/* The last, partial batch; after a stop request the rest waits for the next
	 * collection (flush stops sweeping too). */
	if (!worker_stop && flush(&p) != 0) {
		*errstr = xasprintf("gc: %s", p.err);
		goto out;
	}
	rc = 0;
out:
	db_unlock(w->db, GC_LOCK_KEY);
	free(p.err);
	free(p.sha);
	free(p.size);
	free(p.mtime);
	free(p.referenced);
	return rc;
}

/* One collection with cfg->gc_grace as configured (the --gc command: an operator's
 * explicit run may use a shorter grace than the periodic duty). */
int
gc_collect(struct worker *w, bool dry_run, struct gc_report *report, char **errstr)
{
	bool refused;

	return collect(w, dry_run, w->cfg->gc_grace, report, &refused, errstr);
}

/* The periodic duty: one collection (cfg->gc_dry_run decides whether it deletes), with
 * gc_grace at least STORE_MIN_GC_GRACE_S, and a summary line. A refusal is logged as an
 * error once, until it changes or collections run again. */
void
gc_run(struct worker *w)
{
	struct gc_report r;
	char *err = NULL;
	int64_t grace = w->cfg->gc_grace;
	bool refused = false;

	if (grace < STORE_MIN_GC_GRACE_S) {
		if (!grace_warned)
			log_warn("gc: gc_grace %llds is below %ds; periodic collections use %ds"
				 " (writes in progress must stay safe)",
			    (long long)grace, STORE_MIN_GC_GRACE_S, STORE_MIN_GC_GRACE_S);
		grace_warned = true;
		grace = STORE_MIN_GC_GRACE_S;
	}
	int rc = collect(w, w->cfg->gc_dry_run, grace, &r, &refused, &err);
	if (rc < 0 && refused) {
		if (refused_reason == NULL || strcmp(refused_reason, err) != 0)
			log_error("%s", err);
		free(refused_reason);
		refused_reason = err;
		return;
	}
	if (rc < 0) {
		log_warn("%s", err);
		free(err);
		return;
	}
	if (rc == 1)
		return; /* another worker collects now */
	if (refused_reason != NULL) {
		log_info("gc: the store and the database agree again; collecting");
		free(refused_reason);
		refused_reason = NULL;
	}
	log_info("gc%s%s: %lld blob(s) scanned, %lld %s (%lld bytes), %lld unreferenced kept"
		 " (written within gc_grace %llds)",
	    w->cfg->gc_dry_run ? " (dry run)" : "", worker_stop ? " (interrupted)" : "",
	    (long long)r.scanned, (long long)r.deleted,
	    w->cfg->gc_dry_run ? "would be deleted" : "deleted", (long long)r.deleted_bytes,
	    (long long)r.kept_young, (long long)grace);
}
