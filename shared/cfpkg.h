/* cfpkg.h: the one place that knows the CF v3 packages table (db/migrations/
 * 0007_cf_packages.sql). Used by the API (api/routes_cfpkg.c); the worker's
 * package_upload job only reports, and the table follows its job by trigger. */
#ifndef BV_CFPKG_H
#define BV_CFPKG_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/db.h"

struct cf_package {
	char guid[37];
	char *app_guid;
	char type[8]; /* "bits" or "docker" */
	char state[24]; /* AWAITING_UPLOAD, PROCESSING_UPLOAD, READY, FAILED, COPYING, EXPIRED */
	json_t *data; /* docker: image, username, password */
	char *error; /* NULL when none */
	bool has_blob; /* READY bits: sha256, sha1, size set */
	unsigned char sha256[32];
	unsigned char sha1[20];
	int64_t size;
	int64_t job_id; /* 0 when none */
	json_t *metadata;
	double created_at, updated_at; /* unix seconds */
};

void cf_package_clear(struct cf_package *p);
void cf_packages_free(struct cf_package *p, size_t n);

/* Inserts a package (state as given; data and metadata not stolen). 0 with *out, or -1. */
int cfpkg_create(struct db *db, const char *guid, const char *app_guid, const char *type,
    const char *state, const json_t *data, const json_t *metadata, struct cf_package *out,
    char **errstr) BV_MUSTCHECK;
/* A copy of src as guid for app_guid, READY with src's data and blob, in one statement,
 * when src is READY: 1 (*out), 0 when src is absent or not READY (*src_state gets its
 * state, "" when absent), -1. The caller touches src's blob first. */
int cfpkg_copy(struct db *db, const char *src, const char *guid, const char *app_guid,
    struct cf_package *out, char *src_state, char **errstr) BV_MUSTCHECK;
/* By guid: 1, 0 absent, -1. */
int cfpkg_get(struct db *db, const char *guid, struct cf_package *out, char **errstr) BV_MUSTCHECK;

/* A page of packages, oldest first; each filter is NULL (any) or a JSON array of strings. */
struct cfpkg_filter {
	const json_t *guids, *app_guids, *states, *types;
};
int cfpkg_list(struct db *db, const struct cfpkg_filter *f, int64_t page, int64_t per_page,
    struct cf_package **out, size_t *n, int64_t *total, char **errstr) BV_MUSTCHECK;

/* Starts an upload: the package must be AWAITING_UPLOAD; creates the package_upload job
 * (params given; the package_guid is added) and moves the package to PROCESSING_UPLOAD
 * with it, in one transaction. 1 (*job_id), 0 when the package is in another state
 * (*state gets it), -1. */
int cfpkg_start_upload(struct db *db, const char *guid, json_t *params, int64_t *job_id,
    char *state, char **errstr) BV_MUSTCHECK;
/* Deletes: 1, 0 absent, -1. */
int cfpkg_delete(struct db *db, const char *guid, char **errstr) BV_MUSTCHECK;

#endif
