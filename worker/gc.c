/* gc.c: blob garbage collection, mark and sweep. The store's listing (objects only,
 * never tmp/, where writes in progress live) is streamed in batches; for each batch one
 * query asks Postgres which blobs a contents or bundles row names (the mark), and the
 * others are deleted (the sweep) when they were written more than gc_grace seconds ago.
 * A write that reuses an old blob refreshes its time, and store_delete_old checks the
 * time again as it deletes, so a blob a cook or an upload is about to reference is kept
 * even when the listing saw it old. One worker at a time (GC_LOCK_KEY); two collectors
 * after a reconnect lost the lock would still be safe, only wasteful. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "worker/worker.h"

/* Blobs per reference query. */
#define GC_BATCH 1000

/* One collection's state while the listing streams. */
struct gc_pass {
	struct worker *w;
	bool dry_run;
	struct gc_report *report;
	unsigned char (*sha)[32];
	uint64_t *size;
	int64_t *mtime;
	bool *referenced;
	size_t n;
	char *err; /* what stopped the walk, when it failed */
};

/* Marks and sweeps the batch gathered so far. 0, or -1 with pass->err. */
static int
flush(struct gc_pass *p)
{
	int64_t grace = p->w->cfg->gc_grace;
	char hex[65], *err = NULL;

	if (p->n == 0)
		return 0;
	if (jobstore_blobs_referenced(p->w->db, p->sha, p->n, p->referenced, &err) != 0) {
		p->err = xasprintf("cannot read references: %s", err);
		free(err);
		return -1;
	}
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < p->n; i++) {
		if (p->referenced[i])
			continue;
		if (now - p->mtime[i] < grace) {
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
		int rc = store_delete_old(p->w->store, p->sha[i], grace, &err);
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
	return 0;
}

/* store_list's callback: gathers a batch, sweeps it when full. Non-zero stops the walk
 * (an error, or the worker asked to stop). */
static int
on_blob(void *arg, const unsigned char sha256[32], uint64_t size, int64_t mtime_s)
{
	struct gc_pass *p = arg;

	p->report->scanned++;
	memcpy(p->sha[p->n], sha256, 32);
	p->size[p->n] = size;
	p->mtime[p->n] = mtime_s;
	p->n++;
	if (p->n == GC_BATCH && flush(p) != 0)
		return 1;
	return worker_stop ? 1 : 0;
}

/* One collection under GC_LOCK_KEY. */
int
gc_collect(struct worker *w, bool dry_run, struct gc_report *report, char **errstr)
{
	struct gc_pass p;
	char *err = NULL;
	int rc = -1;

	memset(report, 0, sizeof *report);
	/* db_try_lock says false for "Postgres is down" too: check first, to say so. */
	if (db_ensure(w->db, &err) != 0) {
		*errstr = xasprintf("gc: %s", err);
		free(err);
		return -1;
	}
	if (!db_try_lock(w->db, GC_LOCK_KEY))
		return 1;
	memset(&p, 0, sizeof p);
	p.w = w;
	p.dry_run = dry_run;
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
		*errstr = xasprintf("gc: %s", p.err);
		goto out;
	}
	/* The last, partial batch (also after a stop request: what was read is judged). */
	if (flush(&p) != 0) {
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

/* The periodic duty: one collection (cfg->gc_dry_run decides whether it deletes) and a
 * summary line. */
void
gc_run(struct worker *w)
{
	struct gc_report r;
	char *err = NULL;
	int rc = gc_collect(w, w->cfg->gc_dry_run, &r, &err);

	if (rc < 0) {
		log_warn("%s", err);
		free(err);
		return;
	}
	if (rc == 1)
		return; /* another worker collects now */
	log_info("gc%s: %lld blob(s) scanned, %lld %s (%lld bytes), %lld unreferenced kept"
		 " (written within gc_grace %llds)",
	    w->cfg->gc_dry_run ? " (dry run)" : "", (long long)r.scanned, (long long)r.deleted,
	    w->cfg->gc_dry_run ? "would be deleted" : "deleted", (long long)r.deleted_bytes,
	    (long long)r.kept_young, (long long)w->cfg->gc_grace);
}
