/* gitgraph.h: what the git bundle cookers (gitfast.c, gitbare.c) read of the archive: a
 * set of revisions (whole histories), releases, the trees they reach and the rows of the
 * contents in them, loaded in batches (a few thousand ids per query), plus the bundle's
 * output (compressed or not) streamed into the store within the size cap.
 *
 * Everything loaded stays in memory as raw object bodies: a history's distinct trees and
 * commits, not its files' bytes, which are read from the store while writing. */
#ifndef BV_WORKER_GITGRAPH_H
#define BV_WORKER_GITGRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/pgzip.h"
#include "worker/idtab.h"
#include "worker/worker.h"

struct rawobj {
	unsigned char *raw; /* NULL until loaded */
	size_t len;
};

struct cntrow {
	unsigned char sha256[32];
	int64_t length;
	bool found; /* a contents row exists */
};

struct gitgraph {
	struct job_run *run;
	struct worker *w;
	struct idtab revs, rels, dirs, cnts;
	struct rawobj *rev, *rel, *dir;
	struct cntrow *cnt;
	size_t revcap, relcap, dircap, cntcap;
	size_t *heads; /* revision numbers added as heads, in order (gitgraph_topo) */
	size_t nheads;
	char *reason; /* a failure in words for the user */
	bool db_failed; /* the failure was Postgres's (retry when transient) */
	bool cancelled;
	/* output */
	struct store_writer *sw;
	struct pgzip *z; /* NULL: plain bytes */
	int64_t max_size;
};

void gitgraph_init(struct gitgraph *g, struct job_run *run);
void gitgraph_free(struct gitgraph *g);
/* Sets the user-facing reason (the first wins); -1 for the caller's convenience. */
int gitgraph_fail(struct gitgraph *g, const char *fmt, ...) BV_PRINTF(2, 3);

/* Tags of tags deeper than this are refused (the loader keeps to the same limit, so
 * whatever was loaded can be cooked). */
#define GRAPH_MAX_TAG_DEPTH 32

/* Adds a revision head; its whole history comes with gitgraph_load_histories. 0. */
int gitgraph_add_history(struct gitgraph *g, const unsigned char head[20]) BV_MUSTCHECK;
/* Loads the histories of every head added, in one recursive query (heads share their
 * pasts). 0 or -1 (g->reason: a head missing from the archive, or Postgres). */
int gitgraph_load_histories(struct gitgraph *g) BV_MUSTCHECK;
/* Adds a release (and what it points to, recursively: its revision's history, its tree,
 * its content). 0 or -1. */
int gitgraph_add_release(struct gitgraph *g, const unsigned char id[20]) BV_MUSTCHECK;
/* Adds a tree and every tree below it, and notes the contents they name. 0 or -1. */
int gitgraph_add_tree(struct gitgraph *g, const unsigned char root[20]) BV_MUSTCHECK;
/* Adds one content id (to be looked up by gitgraph_load_contents). */
void gitgraph_add_content(struct gitgraph *g, const unsigned char id[20]);
/* The root trees of every revision loaded so far (after gitgraph_load_histories), then gitgraph_add_tree on each. 0 or
 * -1. */
int gitgraph_add_revision_trees(struct gitgraph *g) BV_MUSTCHECK;
/* Looks up every noted content's row. 0 or -1. Missing rows leave found false. */
int gitgraph_load_contents(struct gitgraph *g) BV_MUSTCHECK;

/* The revisions in an order where parents come before children (deterministic: a
 * depth-first walk from the heads in the order they were added, parents in their order).
 * *order gets the indices (caller frees); returns how many, which is g->revs.n unless a
 * revision could not be reached from a head (callers treat that as a failure). */
size_t gitgraph_topo(const struct gitgraph *g, size_t **order);

/* Output: starts the bundle (gzip_level > 0: gzip with pgzip on threads; 0: plain). 0 or
 * -1. */
int gitgraph_out_start(struct gitgraph *g, int gzip_level, int threads) BV_MUSTCHECK;
int gitgraph_out_write(struct gitgraph *g, const void *data, size_t len) BV_MUSTCHECK;
/* The sink (compressed bytes into the store within the cap), for other writers. */
int gitgraph_sink(void *arg, const void *data, size_t len, char **errstr);
/* Finishes and stores: fills sha256 and size. 0 or -1. */
int gitgraph_out_finish(struct gitgraph *g, unsigned char sha256[32], uint64_t *size) BV_MUSTCHECK;
/* Copies a content's bytes from the store to the output (or to cb when non-NULL). 0 or
 * -1 (g->reason names the path when given). */
int gitgraph_copy_blob(struct gitgraph *g, size_t cnt, const char *path,
    int (*cb)(void *arg, const void *data, size_t len), void *arg) BV_MUSTCHECK;

/* The outcome of a cooker from g's state: FAILED with the reason, RETRY when Postgres
 * failed transiently, CANCELLED when the job is no longer ours. */
enum job_outcome gitgraph_outcome(struct gitgraph *g, char **reason);

#endif
