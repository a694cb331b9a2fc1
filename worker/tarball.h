/* tarball.h: the deterministic bundle writer (DESIGN §5): tar.gz (tarball_new) or zip
 * (tarball_new_zip). Entries are pushed in the order they must appear; every header field
 * is set from the arguments alone (fixed mtime, uid/gid 0, empty owner names, fixed modes),
 * never from disk; the tar's gzip stream comes from pgzip and the zip's deflate from zlib,
 * so the same entries always give the same bytes. Knows nothing of Postgres or the store:
 * file bytes come from an fd, finished bytes go to a sink. */
#ifndef BV_WORKER_TARBALL_H
#define BV_WORKER_TARBALL_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/pgzip.h"
#include "shared/util.h"

/* 1980-01-01T00:00:00Z: every entry's mtime (zip's own epoch, so its MS-DOS times hold it
 * exactly). */
#define TARBALL_MTIME 315532800

struct tarball;

/* Called while file data is copied (after each read) and between entries, so a long file
 * keeps the job's lease alive. Returns 0 to go on, -1 (with *errstr) to stop. */
typedef int (*tarball_tick)(void *arg, char **errstr);

/* gzip_level 1..9 (gzip's scale), threads >= 1 compression threads. Compressed bytes go
 * to sink in order. NULL + *errstr when libarchive or pgzip cannot be set up. */
struct tarball *tarball_new(
    int gzip_level, int threads, pgzip_sink sink, void *sink_arg, char **errstr) BV_MUSTCHECK;
/* An uncompressed tar (git-bare bundles: git's packs are compressed already). */
struct tarball *tarball_new_tar(pgzip_sink sink, void *sink_arg, char **errstr) BV_MUSTCHECK;
/* A zip instead: deflate at zlib level (1..9, clamped) on the caller's thread, sent to sink
 * as it is made. Needs the process's time zone to be UTC (the worker sets TZ=UTC at
 * start): libarchive writes zip's MS-DOS times with localtime(); in any other zone NULL
 * + *errstr, rather than bytes that depend on the host. */
struct tarball *tarball_new_zip(
    int zip_level, pgzip_sink sink, void *sink_arg, char **errstr) BV_MUSTCHECK;
void tarball_free(struct tarball *tb);
void tarball_set_tick(struct tarball *tb, tarball_tick tick, void *arg);

/* path is the entry's full name inside the archive ("swh:1:dir:<hex>/src"), without a
 * trailing slash. Each returns 0, or -1 with *errstr (a sink error comes back as the
 * sink's own message). */
int tarball_add_dir(struct tarball *tb, const char *path, char **errstr) BV_MUSTCHECK;
/* A regular file of exactly size bytes read from fd (at its current offset, in large
 * reads); mode 0755 when exec, else 0644. A short read is an error, never padded. */
int tarball_add_file_fd(struct tarball *tb, const char *path, bool exec, uint64_t size, int fd,
    char **errstr) BV_MUSTCHECK;
/* The same with the permission bits given (the app stash's bundles keep the modes the
 * client asked for). */
int tarball_add_file_mode(struct tarball *tb, const char *path, unsigned int mode, uint64_t size,
    int fd, char **errstr) BV_MUSTCHECK;
/* A regular file from memory. */
int tarball_add_file_mem(struct tarball *tb, const char *path, bool exec, const void *data,
    size_t size, char **errstr) BV_MUSTCHECK;
/* The manifest of left-out files (DESIGN §5): a regular file (0644) named
 * "<top>" TARBALL_MANIFEST_SUFFIX at the archive's root, beside the top folder, so the
 * folder itself is exactly the tree minus what was left out. Written last, after the
 * folder's entries; a bundle with nothing left out has none. */
#define TARBALL_MANIFEST_SUFFIX ".missing.json"
int tarball_add_manifest(
    struct tarball *tb, const char *top, const void *data, size_t size, char **errstr) BV_MUSTCHECK;
/* A symbolic link (mode 0777) to target. */
int tarball_add_symlink(
    struct tarball *tb, const char *path, const char *target, char **errstr) BV_MUSTCHECK;
/* Writes the end-of-archive blocks and the gzip trailer (the zip's central directory).
 * 0 or -1. */
int tarball_finish(struct tarball *tb, char **errstr) BV_MUSTCHECK;

/* Uncompressed tar bytes produced so far (for a zip: the zip's bytes). */
uint64_t tarball_tar_bytes(const struct tarball *tb);

/* gzip level 1..9 -> pgzip's (libdeflate's) 1..12 scale. */
int tarball_pgzip_level(int gzip_level);

#endif
