/* bits.h: the one place that knows the Bits tables (db/migrations/0006_bits.sql): the
 * bits-service's packages, droplets, buildpacks and buildpack cache entries, each a key in
 * its kind's namespace bound to a blob of the store. Used by the API (api/routes_bits.c). */
#ifndef BV_BITS_H
#define BV_BITS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/db.h"
#include "shared/objects.h"

/* A resource row. */
struct bits_resource {
	unsigned char sha256[32];
	unsigned char sha1[20];
	int64_t size;
	double created; /* unix seconds */
	double updated;
	json_t *metadata; /* NULL when none */
};

void bits_resource_clear(struct bits_resource *r);
/* Reads kind/key: 1 found (*r filled; bits_resource_clear frees it), 0 absent, -1. */
int bits_get(struct db *db, const char *kind, const char *key, struct bits_resource *r,
    char **errstr) BV_MUSTCHECK;
/* Binds kind/key to a blob (replacing what it named): the blob must be in the store and
 * touched just before (the GC's invariant, shared/store.h). *created tells a new key from
 * a replaced one. 0 or -1. */
int bits_put(struct db *db, const char *kind, const char *key, const unsigned char sha256[32],
    const unsigned char sha1[20], int64_t size, const json_t *metadata, bool *created,
    char **errstr) BV_MUSTCHECK;
/* Binds dst to src's blob (the bits-service's copy by source_guid, within one kind): 1
 * copied (*r gets the row as it is now), 0 when src is absent, -1. The blob is touched
 * by the caller beforehand (it is src's, which may be deleted meanwhile: then the copy
 * still names a blob the store keeps for gc_grace, and the row makes it live again). */
int bits_copy(struct db *db, const char *kind, const char *src, const char *dst,
    struct bits_resource *r, char **errstr) BV_MUSTCHECK;
/* Deletes kind/key: 1 deleted, 0 absent, -1. The blob stays for the garbage collector. */
int bits_delete(struct db *db, const char *kind, const char *key, char **errstr) BV_MUSTCHECK;
/* Deletes every key of kind starting with prefix ("" all of them): *n deleted. 0 or -1. */
int bits_delete_prefix(
    struct db *db, const char *kind, const char *prefix, int64_t *n, char **errstr) BV_MUSTCHECK;

/* The app stash (research bits-service.md §1.5) is every stored content and every Bits
 * resource's blob, looked up by sha1 (indexes contents_sha1, bits_resources_sha1): for
 * each of the n sha1s, found[i] and rows[i] (sha256, length; sha1_git zero for a
 * resource's blob). 0 or -1. */
int bits_stash_lookup(struct db *db, const unsigned char (*sha1)[20], size_t n,
    struct content_row *rows, bool *found, char **errstr) BV_MUSTCHECK;
#endif
