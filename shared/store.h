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

/* The shortest gc_grace the workers' periodic expiry and collections use, whatever the
 * configuration says: the writes that reference a blob (an upload's rows, a cook's "done")
 * touch it just before they commit, and this bounds how long a commit may take after its
 * touch. Only `bitsvault-worker --gc`, run by hand, honours a shorter gc_grace. */
#define STORE_MIN_GC_GRACE_S 300

/* Opens (creating) a local store rooted at root ("<data_dir>/store"), and puts back any
 * blob a collector that died had moved aside (<root>/gc/). NULL + *errstr. */
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
/* The hashes of the bytes written so far (the writer goes on): to check an upload against
 * the checksum it came with before it is committed. */
void store_writer_peek(
    const struct store_writer *w, unsigned char sha256[32], unsigned char sha1[20]);
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
 * write has just reused. 1 deleted, 0 kept (young, already absent, or put back by a reader
 * meanwhile), -1 + *errstr. A backend without an atomic check fails with errno ENOTSUP:
 * there is no safe fallback, so garbage collection refuses such a store
 * (store_check_gc). */
int store_delete_old(struct store *st, const unsigned char sha256[32], int64_t min_age_s,
    char **errstr) BV_MUSTCHECK;
/* Makes the blob count as just written (local backend: its mtime set to now), so garbage
 * collection, which spares blobs written less than gc_grace ago, keeps it. The invariant
 * writers keep: a blob is touched just before the row that references it commits, so
 * either the touch finds it (and it is young for gc_grace more) or the commit is not
 * made. A blob a collector had moved aside is put back first. 0, or -1 + *errstr with
 * errno ENOENT when the blob is gone, ENOTSUP when the backend cannot. */
int store_touch(struct store *st, const unsigned char sha256[32], char **errstr) BV_MUSTCHECK;
/* store_touch of n blobs in order, stopping at the first failure (*failed gets its index;
 * errno as store_touch). 0 or -1 + *errstr. */
int store_touch_all(struct store *st, const unsigned char (*sha256)[32], size_t n, size_t *failed,
    char **errstr) BV_MUSTCHECK;
/* The store's identity: 32 lowercase hex digits (128 random bits) that bind it to one
 * database (jobstore_bind_store), so a collector given the wrong database refuses to
 * delete. Local backend: the file <root>/ID. 1 with id filled, 0 when the store has none
 * yet, -1 + *errstr (errno ENOTSUP for a backend without one). */
int store_get_id(struct store *st, char id[33], char **errstr) BV_MUSTCHECK;
/* Gives the store the identity want (32 lowercase hex) unless it has one: of two callers
 * at once one wins. id gets the identity the store has afterwards. 0 or -1 + *errstr. */
int store_create_id(struct store *st, const char *want, char id[33], char **errstr) BV_MUSTCHECK;
/* Whether garbage collection and expiry may delete from this store: they need list,
 * delete_old, touch and the identity. 0, or -1 + *errstr naming what is missing. */
int store_check_gc(struct store *st, char **errstr) BV_MUSTCHECK;
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
