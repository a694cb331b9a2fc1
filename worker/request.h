/* request.h: private to the "request" job (Cachito's requests, docs/worker.md "Requests"),
 * shared by its files only:
 *   worker/request.c         the job handler: the request's states, the source, npm's
 *                            and generic's steps, packages data, the result;
 *   worker/request_generic.c artifacts.lock.yaml, the generic package manager's list of
 *                            files to download (pure: libyaml, and a DNS lookup for the
 *                            URL check);
 *   worker/request_npm.c     package-lock.json / npm-shrinkwrap.json (lockfile versions 1,
 *                            2 and 3): the registry dependencies, and the lockfile rewritten
 *                            to point at the bundled tarballs (pure: jansson only);
 *   worker/request_fetch.c   tarball downloads from the npm registry into the store,
 *                            checked against their integrity as they stream;
 *   worker/request_tree.c    the source tree read back from the archive (files by path,
 *                            symlinks checked);
 *   worker/request_bundle.c  the bundle: app/ (with app/.git when asked, worker/gitdir.c)
 *                            and deps/ as a reproducible tar.gz. */
#ifndef BV_WORKER_REQUEST_H
#define BV_WORKER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/util.h"
#include "worker/idtab.h"

struct worker;
struct job_run;
struct gitdir;

/* ---- request_npm.c: lockfiles ------------------------------------------------------- */

/* Where a locked package comes from. */
enum npm_source {
	NPM_REGISTRY, /* a tarball of the registry ("resolved" .../<name>/-/<base>-<ver>.tgz) */
	NPM_FILE, /* "file:..." inside the repository: nothing to download */
	NPM_OTHER /* a git URL, a tarball from elsewhere: not supported (yet) */
};

/* One locked package, unique by name and version (the lockfile may hold it at several
 * node_modules paths). */
struct npm_dep {
	char *name; /* the real package name ("@scope/name"), also for aliases */
	char *version; /* "1.2.3"; for NPM_FILE / NPM_OTHER what the lockfile says */
	char *resolved; /* as locked, NULL when none */
	char *integrity; /* the SRI value as locked ("sha512-<b64>"), NULL when none */
	enum npm_source source;
	bool dev; /* dev: true at every place it is locked */
	char *bundle_path; /* set by the caller: "deps/npm/..." once downloaded */
};

struct npm_lock {
	int version; /* lockfileVersion: 1, 2 or 3 */
	json_t *root; /* the whole lockfile, rewritten in place by npm_lock_rewrite */
	struct npm_dep *deps;
	size_t ndeps;
	json_t *index; /* "<name>\n<version>" -> the index in deps */
};

/* Parses a lockfile (file names the lockfile in messages). 0, or -1 with *errstr a
 * sentence for the user (bad JSON, an unknown lockfileVersion, a package name or version
 * that cannot be a file name). */
int npm_lock_parse(const char *text, size_t len, const char *file, struct npm_lock *lock,
    char **errstr) BV_MUSTCHECK;
void npm_lock_clear(struct npm_lock *lock);
/* Whether every local path of a parsed lockfile (file: dependencies, links' targets,
 * "packages" keys) stays inside the repository, taken from pkg_path (the lockfile's folder
 * relative to app/, "" the root): npm ci would read what they name from the build host.
 * 0, or -1 with *errstr naming the dependency (file names the lockfile). */
int npm_lock_check_local(const struct npm_lock *lock, const char *pkg_path, const char *file,
    char **errstr) BV_MUSTCHECK;
/* The dependency by name and version, or NULL. */
struct npm_dep *npm_lock_find(struct npm_lock *lock, const char *name, const char *version);
/* Points every locked copy of a downloaded registry package ("resolved") at its tarball
 * in the bundle, relative to the lockfile's folder: up is "../" repeated (the path from
 * app/<path> to the bundle's root, e.g. "../" for the root package). Integrity is kept. */
void npm_lock_rewrite(struct npm_lock *lock, const char *up);
/* The tarball's place in the bundle, Cachito's layout: "deps/npm/<name>/<name>-<ver>.tgz",
 * scoped "deps/npm/@scope/name/scope-name-<ver>.tgz". New string. */
char *npm_bundle_path(const char *name, const char *version);
/* The tarball's URL at registry (ending in '/' or not): "<registry>/<name>/-/<base>-<ver>.tgz". */
char *npm_tarball_url(const char *registry, const char *name, const char *version);
/* Whether s is a safe package name ("name" or "@scope/name", no "..", no odd bytes). */
bool npm_name_ok(const char *s);
/* Whether s is a version that may be part of a file name (semver characters only). */
bool npm_version_ok(const char *s);

/* ---- request_generic.c: artifacts.lock.yaml ---------------------------------------- */

#define GENERIC_LOCK_FILE "artifacts.lock.yaml"
/* More entries than this are refused. */
#define GENERIC_MAX_ARTIFACTS 10000

/* One file to download. */
struct generic_artifact {
	char *url; /* download_url, http or https, no user name */
	char *checksum; /* "sha256:<hex>" (or sha384, sha512), lowercase */
	char *filename; /* one path segment: deps/generic/<filename> */
	size_t line; /* where the entry starts in the file */
};

struct generic_lock {
	struct generic_artifact *items;
	size_t n;
};

/* Parses an artifacts.lock.yaml (file names it in messages): metadata.version "1.0" and
 * artifacts, each with download_url, checksum and filename (default the URL path's last
 * segment), file names unique. 0, or -1 with *errstr a sentence for the user naming the
 * file, the entry and the line. */
int generic_lock_parse(const char *text, size_t len, const char *file, struct generic_lock *lock,
    char **errstr) BV_MUSTCHECK;
void generic_lock_clear(struct generic_lock *lock);
/* Whether s may be a file name in deps/generic/ (one path segment, not "." or "..", no
 * control characters or backslash, 1 to 255 bytes). */
bool generic_filename_ok(const char *s);
/* Splits an http or https URL with no user name or password: *host (no brackets), *port
 * (the scheme's default when none) and, when path is non-NULL, *path (up to '?' or '#'),
 * new strings. 0, or -1 with *errstr what is wrong ("is not an http or https URL"). */
int generic_url_split(
    const char *url, char **host, char **port, char **path, char **errstr) BV_MUSTCHECK;
/* What generic_url_check found. */
enum generic_url {
	GENERIC_URL_OK,
	GENERIC_URL_REFUSED, /* a bad URL or a non-public address (the file's fault) */
	GENERIC_URL_UNRESOLVED /* the host does not resolve (the network's) */
};
/* Checks a download URL before it is fetched: its form, and unless allow_private every
 * address of its host through shared/netguard.c. *last_ok remembers the host that passed
 * last (NULL at first; the caller frees it), so a list of files from one host resolves it
 * once. Not OK: *errstr says why (without the URL). */
enum generic_url generic_url_check(
    const char *url, bool allow_private, char **last_ok, char **errstr);

/* ---- request_fetch.c: downloads ------------------------------------------------------- */

/* Why a download failed. */
enum fetch_error {
	FETCH_OK,
	FETCH_MISMATCH, /* the bytes do not match the integrity (client) */
	FETCH_TOO_BIG, /* past max_artifact_size (client) */
	FETCH_NETWORK, /* unreachable, timeouts, HTTP errors after the retries (server) */
	FETCH_STORE, /* the store could not take it (server) */
	FETCH_CANCELLED /* the job is no longer ours, or the worker stops */
};
struct httpc;
/* Downloads url into the store with hc (npm_download_attempts tries, with backoff), checking the
 * integrity and the size cap while the bytes stream. integrity is an SRI value
 * ("sha512-<b64>", several allowed) or a checksum ("sha256:<hex>", also sha384, sha512);
 * NULL: none to check, and *computed (when non-NULL) gets "sha512-<b64>". FETCH_OK with
 * sha256 and *size; otherwise *errstr, a sentence naming what, a noun phrase without
 * article ("npm package fix-a@1.0.0", "generic artifact tool.tar.gz"). hc is the job's
 * handle (kept across files for connection and TLS session reuse); for URLs a repository
 * chose it must be guarded (httpc_set_guard) and must not be shared with unguarded
 * transfers, whose kept connections would skip the guard. */
enum fetch_error fetch_to_store(struct job_run *run, struct httpc *hc, const char *url,
    const char *what, const char *integrity, unsigned char sha256[32], int64_t *size,
    char **computed, char **errstr);
/* Whether an integrity (SRI value or checksum) holds a hash this worker can check
 * (sha512, sha384, sha256, sha1). */
bool fetch_integrity_supported(const char *integrity);

/* ---- request_tree.c: the source tree ------------------------------------------------ */

/* Deeper trees are refused rather than risking the stack. */
#define RTREE_MAX_DEPTH 1024
/* A symlink's target is read whole: anything this long is not a real target. */
#define RTREE_MAX_LINK 65536

/* The tree's parts, open to request_bundle.c and gitdir.c, which walk it. */
struct dinfo {
	unsigned char *raw; /* the directory's git body */
	size_t len;
	bool loaded;
};

struct cinfo {
	unsigned char sha256[32]; /* the store's key */
	int64_t length;
	bool loaded;
};

struct graft {
	char *path; /* the gitlink's path, relative to app/ */
	unsigned char root[20];
};

struct rtree {
	struct job_run *run;
	struct idtab dirs, cnts; /* ids -> numbers into dinfo, cinfo */
	struct dinfo *dinfo;
	struct cinfo *cinfo;
	size_t dcap, ccap;
	unsigned char root[20];
	struct graft *grafts;
	size_t ngrafts;
	json_t *excluded; /* unsafe symlinks left out of app/: {"<path>": true} */
};

/* Reads a tree and everything under it from the archive (directories and content rows;
 * no blob yet). NULL with *errstr (user words) and *db_failed when Postgres failed. */
struct rtree *rtree_load(
    struct job_run *run, const unsigned char root[20], bool *db_failed, char **errstr) BV_MUSTCHECK;
void rtree_free(struct rtree *t);
/* Adds another tree (a submodule's) to place at a gitlink's path (relative to the root,
 * "libs/x"); loaded like rtree_load. 0 or -1. */
int rtree_graft(struct rtree *t, const char *path, const unsigned char root[20], bool *db_failed,
    char **errstr) BV_MUSTCHECK;
/* What is at path ("" or "." the root): 1 found (*mode, id), 0 not found, -1 when a part
 * of the path is not a directory. */
int rtree_lookup(struct rtree *t, const char *path, unsigned int *mode, unsigned char id[20]);
/* Every gitlink (submodule) of the root tree (not of grafts): cb(path, commit id). */
typedef int (*rtree_gitlink_cb)(void *arg, const char *path, const unsigned char commit[20]);
int rtree_gitlinks(struct rtree *t, rtree_gitlink_cb cb, void *arg);
/* A regular file's bytes (at most max). 1 read (*data, *len; caller frees), 0 not there
 * (or not a regular file), -1 with *errstr (too big, missing from the store). */
int rtree_read(struct rtree *t, const char *path, int64_t max, char **data, size_t *len,
    char **errstr) BV_MUSTCHECK;

/* An unsafe symlink left out (path relative to app/, target as stored). */
typedef void (*rtree_link_cb)(void *arg, const char *path, const char *target);
/* Cachito's sandbox check (remove-unsafe-symlinks): every symlink of the tree and its
 * grafts, its target followed from its folder through the tree's own symlinks, must stay
 * inside app/ (an absolute target, one climbing above the root or a loop does not). An
 * unsafe one with remove: left out of the bundle and cb(arg, path, target); without: 1
 * with *errstr "The destination of '<path>' is outside of cloned repository". 0 all safe
 * (or removed), -1 with *errstr when a target cannot be read. */
int rtree_check_links(
    struct rtree *t, bool remove, rtree_link_cb cb, void *arg, char **errstr) BV_MUSTCHECK;
/* The graft for a gitlink path (relative to app/), or NULL. */
const struct graft *rtree_graft_at(const struct rtree *t, const char *rel);
/* Reads a whole blob of len bytes from fd. 0 or -1. */
int rtree_read_all(int fd, char *out, size_t len) BV_MUSTCHECK;

/* ---- request_bundle.c: the bundle --------------------------------------------------- */

/* A dependency file in the bundle: a blob of the store at path (under deps/). */
struct bundle_file {
	char *path; /* "deps/npm/fix-a/fix-a-1.0.0.tgz" */
	unsigned char sha256[32];
	int64_t size;
};
/* Writes the bundle: app/ (app/.git first when git is non-NULL, then the tree, grafts at
 * their gitlinks) then deps/ and every file
 * (sorted by path, folders before their files), into the store. 0 with sha256 and *size,
 * or -1 with *errstr (user words); *cancelled when the job stopped being ours. */
int bundle_write(struct job_run *run, struct rtree *t, struct gitdir *git,
    struct bundle_file *files, size_t nfiles, unsigned char sha256[32], uint64_t *size,
    bool *cancelled, char **errstr) BV_MUSTCHECK;

#endif
