/* store.h: blobs addressed by sha256. Callers see only this interface; every function
 * dispatches through a backend vtable (shared/store_backend.h) and the generic layer hashes
 * (sha256 + sha1) while writing, so a backend only moves bytes.
 *
 * The local backend (store_open_local) keeps objects/ab/cd/<sha256> under its root, writes
 * each blob to a temp file in the same file system, fsyncs and renames it, so a crash never
 * leaves a partial blob under a real name.
 *
 * How an S3-compatible backend fits: its writer is a multipart upload (or a local temp file
 * PUT on commit) whose object key is only known once the sha256 is, so commit copies or
 * completes to "objects/<sha256>" and drops the staging key; exists is HEAD, delete is
 * DELETE, clean_tmp aborts stale multipart uploads; space may be left out (store_space
 * then fails with errno ENOTSUP, which /status should read as "unknown", not "down").
 * open_blob may be unsupported: it then fails with errno ENOTSUP and callers serve the blob
 * with store_blob_url (a presigned GET) instead of store_open_blob + sendfile. */
#ifndef BV_STORE_H
#define BV_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/util.h"

struct store;
struct store_writer;

/* Opens (creating) a local store rooted at root ("<data_dir>/store"). NULL + *errstr. */
struct store *store_open_local(const char *root, char **errstr) BV_MUSTCHECK;
void store_free(struct store *st);
/* Removes temp files left by a crash (older than max_age_s seconds; 0 = all). Returns how
 * many were removed, or -1. Call at process start. */
int store_clean_tmp(struct store *st, int64_t max_age_s, char **errstr) BV_MUSTCHECK;

/* Streaming put: bytes are hashed (sha256, and sha1) while handed to the backend (a temp
 * file on the local backend). */
struct store_writer *store_writer_new(struct store *st, char **errstr) BV_MUSTCHECK;
int store_writer_write(
    struct store_writer *w, const void *data, size_t len, char **errstr) BV_MUSTCHECK;
uint64_t store_writer_size(const struct store_writer *w);
/* Finishes: makes the bytes durable under their sha256 (local backend: fsync, rename, or
 * drop the temp when the blob already exists, fsync the folder). Fills sha256 (and sha1
 * when non-NULL) and frees w, success or not. 0 or -1 + *errstr (ENOSPC is reported as
 * "no space left on device"). */
int store_writer_commit(struct store_writer *w, unsigned char sha256[32], unsigned char sha1[20],
    char **errstr) BV_MUSTCHECK;
/* Drops what was written (the temp file) and frees w; w == NULL does nothing. */
void store_writer_abort(struct store_writer *w);

/* Opens a blob for reading: fd (caller closes) and size; -1 + *errstr, with errno ENOENT
 * when the blob is absent, ENOTSUP when the backend cannot hand out an fd (then use
 * store_blob_url). */
int store_open_blob(
    struct store *st, const unsigned char sha256[32], uint64_t *size, char **errstr) BV_MUSTCHECK;
/* A URL to redirect a download of the blob to, for backends that serve blobs themselves
 * (S3: a presigned GET; filename, when non-NULL, becomes its Content-Disposition). Returns
 * NULL with *errstr set to NULL when the backend has no such URL (the local backend: use
 * store_open_blob and sendfile), NULL with *errstr set on error. Caller frees the URL. */
char *store_blob_url(struct store *st, const unsigned char sha256[32], const char *filename,
    char **errstr) BV_MUSTCHECK;
bool store_exists(struct store *st, const unsigned char sha256[32]);
int store_delete(struct store *st, const unsigned char sha256[32], char **errstr) BV_MUSTCHECK;
/* Deletes the blob only when it was written (or re-written: a commit of bytes already
 * stored refreshes the blob's time) at least min_age_s seconds ago, checked at the moment
 * of deletion, so a collector that decided from an older listing never removes a blob a
 * write has just reused. 1 deleted, 0 kept (young, or already absent), -1 + *errstr.
 * Backends without an atomic check fall back to store_delete (the listing's time is then
 * the only guard). */
int store_delete_old(struct store *st, const unsigned char sha256[32], int64_t min_age_s,
    char **errstr) BV_MUSTCHECK;
/* One blob of a listing: its sha256, size and time (unix seconds) of its last write.
 * Return 0 to go on, anything else to stop the walk. */
typedef int (*store_list_cb)(
    void *arg, const unsigned char sha256[32], uint64_t size, int64_t mtime_s);
/* Calls cb for every blob, in no particular order, holding no more than a folder handle
 * at a time (a store of millions of blobs is walked in constant memory). Writes in
 * progress (temp files) are not blobs and are never listed. 0 when the walk finished, 1
 * when cb stopped it, -1 + *errstr (errno ENOTSUP for a backend that cannot list). */
int store_list(struct store *st, store_list_cb cb, void *arg, char **errstr) BV_MUSTCHECK;
/* Free and total bytes of the file system under the store; 0 or -1. */
int store_space(
    struct store *st, uint64_t *free_bytes, uint64_t *total_bytes, char **errstr) BV_MUSTCHECK;
/* Writable check for /status: creates and removes a probe temp file. 0 or -1. */
int store_probe(struct store *st, char **errstr) BV_MUSTCHECK;

#endif
