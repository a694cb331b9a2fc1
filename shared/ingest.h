/* ingest.h: turns an uploaded archive (tar, tar.gz/bz2/xz/zst or zip, spooled to a file)
 * into contents and directories with git's ids: each file stored once in the store,
 * every row written in one transaction, so a bad archive stores nothing in Postgres. */
#ifndef BV_INGEST_H
#define BV_INGEST_H

#include <stdint.h>

#include "shared/db.h"
#include "shared/objects.h"
#include "shared/objects.h"
#include "shared/store.h"

struct ingest_limits {
	int64_t max_entries; /* entries in the archive */
	int64_t max_unpacked; /* bytes, sum of regular files' sizes */
	/* unpacked bytes per byte of the archive file (a zip or gzip bomb); archives that
	 * unpack to at most INGEST_RATIO_FLOOR bytes are never refused for it */
	int64_t max_ratio;
};

#define INGEST_RATIO_FLOOR (1024 * 1024)

struct ingest_result {
	unsigned char root[20]; /* sha1_git of the root tree */
	int64_t files; /* regular files and symlinks */
	int64_t directories; /* trees, the root included */
	int64_t bytes; /* sum of file sizes */
	int64_t new_contents; /* distinct contents Postgres did not hold before (db == NULL:
				 * every distinct content of the archive) */
};

/* Reads the archive at path. Entries: regular files (mode 100644 or 100755 from the owner
 * execute bit), symlinks (target as blob content), directories, hard links (same bytes
 * as their target). Refused with *http_status 400 and a message for the client: absolute
 * paths, ".." components, paths through a symlink, a path both file and directory,
 * devices/fifos/sockets, a corrupt or unknown archive; 413 past the limits (each message
 * names its configuration key: max_archive_entries, max_archive_unpacked,
 * max_archive_ratio). Empty
 * directories are left out, as git does. A leading "./" is ignored. On a server-side
 * failure *http_status is 500 (or 507 when the disk is full, 503 when Postgres is down).
 * db == NULL skips Postgres (tests and dry runs): blobs are stored and ids computed, no
 * rows are written. limits == NULL or a limit <= 0 means no limit. On success
 * *http_status is 200. */
int ingest_archive(struct store *st, struct db *db, const char *path,
    const struct ingest_limits *limits, struct ingest_result *out, int *http_status,
    char **errstr) BV_MUSTCHECK;

/* A regular file of the archive once stored (second pass; its row is written to Postgres
 * with the others when the whole archive succeeds): its cleaned path (len bytes, no
 * NUL), its permission bits as the archive gives them, its row. For callers that report
 * each file (the app stash's receipt). */
typedef void (*ingest_file_cb)(
    void *arg, const char *path, size_t len, unsigned int perm, const struct content_row *row);
/* ingest_archive, calling on_file (when non-NULL) for each regular file. */
int ingest_archive_files(struct store *st, struct db *db, const char *path,
    const struct ingest_limits *limits, ingest_file_cb on_file, void *on_file_arg,
    struct ingest_result *out, int *http_status, char **errstr) BV_MUSTCHECK;

#endif
