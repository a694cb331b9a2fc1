/* objects.h: the one place that knows the archive's tables: contents (file bytes by
 * sha1_git, with sha256 for the store, sha1 and length) and directories (the canonical
 * git tree body, by its sha1_git). Ids cross this interface as 20 raw bytes. */
#ifndef BV_OBJECTS_H
#define BV_OBJECTS_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/db.h"

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

/* 1 when the directory exists, 0 when not, -1 on error. */
int objects_directory_exists(struct db *db, const unsigned char id[20], char **errstr) BV_MUSTCHECK;

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

#endif
