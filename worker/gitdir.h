/* gitdir.h: app/.git for a request with the include-git-dir flag (Cachito keeps its clone's
 * .git there): the requested commit checked out, detached, with its whole history and the
 * repository's tags that name commits of it, so `git log`, `git describe` and `git status`
 * work offline in the extracted bundle.
 *   worker/gitbare.c  the pack (gitbare_pack: the git-bare cooker's pack writer, one
 *                     undeltified pack with its version 2 index);
 *   worker/gitdir.c   the rest: HEAD, config, packed-refs and the index (the checkout of
 *                     the commit's tree, so `git status` is clean), as tar entries. */
#ifndef BV_WORKER_GITDIR_H
#define BV_WORKER_GITDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/util.h"
#include "worker/worker.h"

struct load_tag;
struct rtree;
struct tarball;

/* A pack in an unlinked temp file. */
struct gitpack {
	int fd; /* -1 when none */
	uint64_t size;
	unsigned char sha[20]; /* the pack's trailer, which names it */
	struct buf idx; /* its version 2 index */
	size_t nobjs;
};

/* gitbare.c: the pack of commit's history (commits, trees, files) and of the annotated tags
 * tags (releases, with what they point to). JOB_OUTCOME_DONE with *p set (gitpack_clear
 * frees it), else the cooker's outcomes (*reason for FAILED and RETRY). */
enum job_outcome gitbare_pack(struct job_run *run, const unsigned char commit[20],
    const unsigned char (*tags)[20], size_t ntags, struct gitpack *p, char **reason);
void gitpack_clear(struct gitpack *p);
/* gitbare.c: whether s is a ref name git accepts (git-check-ref-format's rules, enough of
 * them: under refs/, no "..", no control characters, no "~^:?*[\", ...). */
bool gitbare_ref_ok(const unsigned char *s, size_t len);

/* gitdir.c: app/.git, ready to be written. */
struct gitdir {
	struct gitpack pack;
	char head[42]; /* "<hex>\n": detached at the commit */
	struct buf config, packed_refs, index;
	size_t nrefs; /* tags in packed-refs */
};

/* Builds app/.git for commit (the root tree of t, which must be its tree) with the tags
 * found by load_commit; url is the repository's, kept as the "origin" remote. DONE with
 * *d set (gitdir_clear frees it), else a cooker's outcome (*reason for FAILED, RETRY). */
enum job_outcome gitdir_build(struct job_run *run, struct rtree *t, const char *url,
    const unsigned char commit[20], const struct load_tag *tags, size_t ntags, struct gitdir *d,
    char **reason);
/* Adds app/.git and everything in it to tb. 0, or -1 with *errstr. */
int gitdir_write(struct gitdir *d, struct tarball *tb, char **errstr) BV_MUSTCHECK;
void gitdir_clear(struct gitdir *d);

#endif
