/* objects.h: the one place that knows the archive's tables: contents (file bytes by
 * sha1_git, with sha256 for the store, sha1 and length) and directories (the canonical
 * git tree body, by its sha1_git). Ids cross this interface as 20 raw bytes. */
#ifndef BV_OBJECTS_H
#define BV_OBJECTS_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/db.h"
#include "shared/gitobj.h"

struct content_row {
	unsigned char sha1_git[20];
	unsigned char sha256[32];
	unsigned char sha1[20];
	int64_t length;
};

struct directory_row {
	unsigned char id[20];
	const unsigned char *raw; /* git tree body (entries), not the "tree <n>\0" header */
	size_t raw_len;
};

/* Inserts rows that are not there yet (ON CONFLICT DO NOTHING), in batches. Call inside
 * the caller's transaction when several inserts must land together. 0 or -1. */
int objects_put_contents(
    struct db *db, const struct content_row *rows, size_t n, char **errstr) BV_MUSTCHECK;
int objects_put_directories(
    struct db *db, const struct directory_row *rows, size_t n, char **errstr) BV_MUSTCHECK;

/* Fetches many directories at once; cb is called once per directory found (raw points
 * into a result that lives only during the call). Missing ids are simply not reported.
 * 0 or -1 (cb returning -1 stops and returns -1). */
typedef int (*objects_dir_cb)(
    void *arg, const unsigned char id[20], const unsigned char *raw, size_t raw_len);
int objects_get_directories(struct db *db, const unsigned char (*ids)[20], size_t n,
    objects_dir_cb cb, void *arg, char **errstr) BV_MUSTCHECK;

/* Fetches many contents at once; cb per content found. 0 or -1. */
typedef int (*objects_content_cb)(void *arg, const struct content_row *row);
int objects_get_contents(struct db *db, const unsigned char (*ids)[20], size_t n,
    objects_content_cb cb, void *arg, char **errstr) BV_MUSTCHECK;

/* Revisions (commits) and releases (annotated tags) by their raw git body; snapshots by
 * their SWH manifest (shared/gitobj.h). Insert only after everything an object references
 * is stored (db/migrations/0003_git.sql): a stored object stands for its closure. */
struct revision_row {
	unsigned char id[20];
	unsigned char directory[20];
	const unsigned char (*parents)[20];
	size_t n_parents;
	const unsigned char *raw;
	size_t raw_len;
};
struct release_row {
	unsigned char id[20];
	unsigned char target[20];
	enum swhid_kind target_kind; /* CNT, DIR, REV or REL */
	const unsigned char *name;
	size_t name_len;
	const unsigned char *raw;
	size_t raw_len;
};
int objects_put_revisions(
    struct db *db, const struct revision_row *rows, size_t n, char **errstr) BV_MUSTCHECK;
int objects_put_releases(
    struct db *db, const struct release_row *rows, size_t n, char **errstr) BV_MUSTCHECK;
int objects_put_snapshot(struct db *db, const unsigned char id[20], const unsigned char *raw,
    size_t raw_len, char **errstr) BV_MUSTCHECK;

/* Which of ids (objects of kind: CNT, DIR, REV, REL or SNP) are stored: present[i] is set
 * for each. 0 or -1. */
int objects_present(struct db *db, enum swhid_kind kind, const unsigned char (*ids)[20], size_t n,
    bool *present, char **errstr) BV_MUSTCHECK;
/* One object's existence: 1, 0 or -1. */
int objects_exists(
    struct db *db, enum swhid_kind kind, const unsigned char id[20], char **errstr) BV_MUSTCHECK;

/* Raw bodies of many revisions, releases or snapshots (kind REV, REL or SNP); cb once per
 * object found, raw valid during the call only. 0 or -1. */
int objects_get_raw(struct db *db, enum swhid_kind kind, const unsigned char (*ids)[20], size_t n,
    objects_dir_cb cb, void *arg, char **errstr) BV_MUSTCHECK;
/* Revisions and all their ancestors (any order; each once), with their raw bodies, in one
 * recursive query per 2000 heads. Ids missing from the archive are simply not reported. */
int objects_revision_history(struct db *db, const unsigned char (*heads)[20], size_t n,
    objects_dir_cb cb, void *arg, char **errstr) BV_MUSTCHECK;

#endif
