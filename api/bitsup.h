/* bitsup.h: a Bits upload streamed into the store as it arrives (api/http.c's body sink):
 * a multipart/form-data body whose file field is the resource (the bits-service's field
 * named after the resource type, or "bits"; shared/multipart.c parses the framing), or a
 * raw body that is the resource itself (a droplet PUT with a Digest header). The file's
 * bytes go to a store writer, hashed (sha256, sha1) on the way, so neither the API's
 * memory nor a spool file ever holds the upload; plain form fields (the package's
 * "resources") are kept in memory up to a cap. Loop thread for new/sink/finish; the
 * commit runs on a pool thread (it fsyncs), after the loop is done with the upload. */
#ifndef BV_BITSUP_H
#define BV_BITSUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/resp.h"
#include "shared/store.h"
#include "shared/util.h"

struct bitsup;

/* A multipart upload (boundary from the Content-Type) whose file is the part named field
 * or "bits" (the first of them), or, with boundary NULL, a raw body. max_fields bounds the
 * plain fields' bytes. NULL + *errstr (the store cannot take a writer: errno ENOSPC for a
 * full disk). */
struct bitsup *bitsup_new(struct store *st, const char *field, const char *boundary,
    size_t max_fields, char **errstr) BV_MUSTCHECK;
void bitsup_free(struct bitsup *u);
/* Keeps the field name in memory (as a plain field, within max_fields) even when it comes
 * as a file part: the app stash bundle's "resources" is one (research §1.5). */
void bitsup_keep_file_field(struct bitsup *u, const char *name);
/* api/http.c's sink (arg is the bitsup): 400 for a malformed body, 507 for a full disk,
 * 500 for another write error, each in the bits-service's {"description","code"} form. */
int bitsup_sink(void *arg, const void *data, size_t len, struct resp *rs);
/* The body ended. 0, or -1 with a 400 in rs (a multipart body cut short, or without the
 * file field: "Could not retrieve form parameter '<field>' or 'bits'"). */
int bitsup_finish(struct bitsup *u, struct resp *rs) BV_MUSTCHECK;
/* The form may come without its file (bitsup_finish then accepts it). */
void bitsup_file_optional(struct bitsup *u);
/* Whether the form held the file (after bitsup_finish). */
bool bitsup_has_file(const struct bitsup *u);
/* The file part's filename= as sent ("" for a raw body): a name to show, never a path. */
const char *bitsup_filename(const struct bitsup *u);
/* A plain field's value as received (NUL-terminated; NULL when absent). */
const char *bitsup_field(const struct bitsup *u, const char *name);
/* The file's first bytes (up to 4) and how many there are, for a cheap type check. */
size_t bitsup_magic(const struct bitsup *u, unsigned char out[4]);
/* The hashes of the file so far (all of it once the body is in), before the commit. */
void bitsup_peek(const struct bitsup *u, unsigned char sha256[32], unsigned char sha1[20]);
/* Pool thread: makes the file durable in the store (fsync, rename): sha256, sha1, size.
 * 0 or -1 + *errstr, errno ENOSPC for a full disk. */
int bitsup_commit(struct bitsup *u, unsigned char sha256[32], unsigned char sha1[20],
    uint64_t *size, char **errstr) BV_MUSTCHECK;

/* Whether a store failure (errno, or its message err) is a full disk. */
bool bitsup_disk_full(const char *err);
/* A store failure answered in the bits-service's words: 507 for a full disk, else 500;
 * what: err logged (err freed). */
void bitsup_store_failed(struct resp *rs, const char *logid, const char *what, char *err);

/* The bits-service's error body {"description": msg, "code": code}; code 0 leaves it out. */
void bitsup_error(struct resp *rs, int status, int code, const char *fmt, ...) BV_PRINTF(4, 5);

#endif
