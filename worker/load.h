/* load.h: private to the "load" job, shared by its two halves only: worker/load.c (the job
 * handler and the storing side) and worker/load_fetch.c (the URL checks and the fetch in a
 * child process). The state of one load, and the functions one half calls in the other;
 * plus load_commit, the request job's way in (worker/request.c). */
#ifndef BV_WORKER_LOAD_H
#define BV_WORKER_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <git2.h>
#include <jansson.h>

#include "shared/objects.h"
#include "shared/util.h"
#include "worker/idtab.h"
#include "worker/worker.h"

/* Skipped refs named in the result; the rest are only counted. */
#define LOAD_SKIPPED_LISTED 10

/* Grows an array of rows to hold one more. */
#define GROW(arr, n, cap)                                                                          \
	do {                                                                                       \
		if ((n) == (cap)) {                                                                \
			(cap) = (cap) ? (cap)*2 : 64;                                              \
			(arr) = xrealloc((arr), (cap) * sizeof *(arr));                            \
		}                                                                                  \
	} while (0)

struct ref {
	char *name; /* "refs/heads/main" */
	unsigned char id[20];
	git_object_t type;
	bool skip; /* left out of the snapshot (noted in skipped_refs) */
};

struct pending {
	struct content_row *cnt;
	size_t ncnt, ccnt;
	struct directory_row *dir; /* raw owned */
	size_t ndir, cdir, dir_bytes;
	struct revision_row *rev; /* raw and parents owned */
	size_t nrev, crev, rev_bytes;
	struct release_row *rel; /* raw owned, name points into raw */
	size_t nrel, crel;
};

struct load {
	struct job_run *run;
	struct worker *w;
	const char *url;
	const char *ref; /* NULL: every branch and tag */
	char *tmpdir;
	git_repository *repo;
	git_odb *odb;
	uint64_t deadline_ms;
	uint64_t touched_ms; /* last time tmpdir's mtime was renewed */
	const char *phase; /* what the load is doing, for the timeout's reason */
	int64_t max_objects, max_blob;
	unsigned int fetched_total; /* objects the fetch counted: the "~" total */
	int64_t seen; /* objects handled while storing */
	struct idtab known; /* stored, or pending and flushed before anything that needs it */
	struct pending p;
	struct ref *refs;
	size_t nrefs, crefs;
	char *head; /* the remote's default branch ("refs/heads/main") or NULL */
	json_t *skipped_refs; /* [{"name", "reason"}], the first LOAD_SKIPPED_LISTED */
	int64_t n_skipped_refs;
	int64_t n_cnt, n_dir, n_rev, n_rel, skipped, bytes;
	/* how it ended, when not well */
	char *reason; /* user-readable */
	bool cancelled; /* the job is no longer ours */
	bool stopped; /* the worker is stopping: hand the job back */
	bool db_failed; /* a Postgres call failed (reason set) */
};

/* A tag of a request's repository that names a commit of the request's history (for
 * app/.git, worker/gitdir.c). */
struct load_tag {
	char *name; /* "refs/tags/v1.0" */
	unsigned char id[20]; /* the tag object (annotated) or the commit (lightweight) */
	bool annotated;
};
void load_tags_free(struct load_tag *tags, size_t n);

/* load.c, for the "request" job (worker/request.c): fetches url's branches and tags,
 * checks that commit came with them (else JOB_OUTCOME_FAILED with *missing set) and
 * stores it and its history with the load's dedup, without a snapshot;
 * JOB_OUTCOME_DONE with tree set to its root tree. With tags non-NULL, the tags whose
 * commit is commit or one of its ancestors are stored too (annotated tags as releases)
 * and listed in *tags / *ntags (the caller frees them with load_tags_free). FAILED and
 * RETRY set *reason (words for the user); CANCELLED when the job is no longer ours. */
enum job_outcome load_commit(struct job_run *run, const char *url, const unsigned char commit[20],
    unsigned char tree[20], bool *missing, struct load_tag **tags, size_t *ntags, char **reason);

/* load.c: the helpers both halves use. */

/* Sets the user-facing failure reason (the first wins); returns -1. */
int load_fail(struct load *l, const char *fmt, ...) BV_PRINTF(2, 3);
/* libgit2's last error message, or a generic one. */
const char *load_git_words(void);
/* n with thousands separators ("1,234,567"); out holds at least 32 bytes. */
const char *load_commas(int64_t n, char *out);
/* s with non-printable bytes and the backslash written \xNN, cut after max bytes; new. */
char *load_escape_name(const char *s, size_t max);
/* Notes a ref left out, for the result (the first few by name, all counted). */
void load_note_skipped(struct load *l, const char *escaped_name, const char *why);
/* Renews the temp folder's mtime now and then, so a starting worker leaves it alone. */
void load_keep_fresh(struct load *l);

/* load_fetch.c: the network side. */

/* Phase 1: the fetch, in a child process; then the fetched repository opened. 0 or -1
 * with the load's outcome noted. */
int load_fetch(struct load *l, const char *auth, size_t auth_len) BV_MUSTCHECK;

#endif
