/* store.c: the generic blob store layer. Every public store_* function dispatches through
 * the backend's vtable (shared/store_backend.h); this layer adds what all backends share:
 * sha256 and sha1 computed while a blob is written, so a backend never re-reads a blob to
 * name it, and the defaults for the ops a backend may leave out. No mutable state lives
 * here beyond each writer, so threads may share one store as far as the backend allows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "shared/store.h"
#include "shared/store_backend.h"

struct store {
	const struct store_backend_ops *ops;
	void *be;
};

struct store_writer {
	struct store *st;
	void *bw; /* the backend's writer */
	uint64_t size;
	EVP_MD_CTX *sha256;
	EVP_MD_CTX *sha1;
};

/* Digest contexts abort on OOM like xmalloc: a NULL context is a broken invariant. */
static EVP_MD_CTX *
digest_new(const EVP_MD *md)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (ctx == NULL || EVP_DigestInit_ex(ctx, md, NULL) != 1)
		abort();
	return ctx;
}

/* The message for an op the backend does not have; errno ENOTSUP lets callers fall back. */
static int
unsupported(const struct store *st, const char *what, char **errstr)
{
	*errstr = xasprintf("%s store cannot %s", st->ops->name, what);
	errno = ENOTSUP;
	return -1;
}

/* A missing mandatory op is a programming error, caught at open rather than first use. */
struct store *
store_open_backend(const struct store_backend_ops *ops, void *be)
{
	struct store *st;

	if (ops == NULL || ops->name == NULL || ops->writer_new == NULL ||
	    ops->writer_write == NULL || ops->writer_commit == NULL || ops->writer_abort == NULL ||
	    ops->exists == NULL || ops->delete == NULL || ops->probe == NULL || ops->free == NULL)
		abort();
	st = xcalloc(1, sizeof(*st));
	st->ops = ops;
	st->be = be;
	return st;
}

/* Releases the backend with the store; NULL does nothing. */
void
store_free(struct store *st)
{
	if (st == NULL)
		return;
	st->ops->free(st->be);
	free(st);
}

/* Backends without temp state (or that clean it elsewhere) have nothing to remove. */
int
store_clean_tmp(struct store *st, int64_t max_age_s, char **errstr)
{
	if (st->ops->clean_tmp == NULL)
		return 0;
	return st->ops->clean_tmp(st->be, max_age_s, errstr);
}

/* Starts a put: the backend's writer plus the two running digests. */
struct store_writer *
store_writer_new(struct store *st, char **errstr)
{
	struct store_writer *w;
	void *bw;

	if ((bw = st->ops->writer_new(st->be, errstr)) == NULL)
		return NULL;
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->bw = bw;
	w->sha256 = digest_new(EVP_sha256());
	w->sha1 = digest_new(EVP_sha1());
	return w;
}

/* Bytes the backend refused are not hashed, so size and digests match what it holds. */
int
store_writer_write(struct store_writer *w, const void *data, size_t len, char **errstr)
{
	if (len == 0)
		return 0;
	if (w->st->ops->writer_write(w->st->be, w->bw, data, len, errstr) != 0)
		return -1;
	if (EVP_DigestUpdate(w->sha256, data, len) != 1 ||
	    EVP_DigestUpdate(w->sha1, data, len) != 1)
		abort();
	w->size += len;
	return 0;
}

/* Bytes accepted so far: callers enforce size limits with it while streaming. */
uint64_t
store_writer_size(const struct store_writer *w)
{
	return w->size;
}

/* Frees the generic part of a writer whose backend part is already gone. */
static void
writer_release(struct store_writer *w)
{
	EVP_MD_CTX_free(w->sha256);
	EVP_MD_CTX_free(w->sha1);
	free(w);
}

/* The digests are final before the backend commits: they are the blob's name. errno from
 * the backend survives the frees so callers can test ENOSPC. */
int
store_writer_commit(
    struct store_writer *w, unsigned char sha256[32], unsigned char sha1[20], char **errstr)
{
	unsigned char d256[32], d1[20];
	int rc, err;

	if (EVP_DigestFinal_ex(w->sha256, d256, NULL) != 1 ||
	    EVP_DigestFinal_ex(w->sha1, d1, NULL) != 1)
		abort();
	rc = w->st->ops->writer_commit(w->st->be, w->bw, d256, w->size, errstr);
	err = rc == 0 ? 0 : errno;
	writer_release(w);
	if (rc == 0) {
		memcpy(sha256, d256, 32);
		if (sha1 != NULL)
			memcpy(sha1, d1, 20);
	}
	errno = err;
	return rc;
}

/* Drops a put; NULL does nothing. */
void
store_writer_abort(struct store_writer *w)
{
	if (w == NULL)
		return;
	w->st->ops->writer_abort(w->st->be, w->bw);
	writer_release(w);
}

/* fd + size for sendfile; ENOTSUP when the backend only serves blobs by URL. */
int
store_open_blob(struct store *st, const unsigned char sha256[32], uint64_t *size, char **errstr)
{
	if (st->ops->open_blob == NULL)
		return unsupported(st, "open a blob as a file", errstr);
	return st->ops->open_blob(st->be, sha256, size, errstr);
}

/* NULL with *errstr NULL means "no URL here, stream it yourself". */
char *
store_blob_url(
    struct store *st, const unsigned char sha256[32], const char *filename, char **errstr)
{
	*errstr = NULL;
	if (st->ops->blob_url == NULL)
		return NULL;
	return st->ops->blob_url(st->be, sha256, filename, errstr);
}

/* Whether the blob is present; errors read as absent (callers then write it again). */
bool
store_exists(struct store *st, const unsigned char sha256[32])
{
	return st->ops->exists(st->be, sha256);
}

/* Deleting an absent blob succeeds: garbage collectors may race each other. */
int
store_delete(struct store *st, const unsigned char sha256[32], char **errstr)
{
	return st->ops->delete (st->be, sha256, errstr);
}

/* The backend's checked delete. No fallback to a plain delete: it would trust a listing
 * that may be older than the write that reused the blob. */
int
store_delete_old(struct store *st, const unsigned char sha256[32], int64_t min_age_s, char **errstr)
{
	if (st->ops->delete_old == NULL)
		return unsupported(st, "delete a blob only when it is old", errstr);
	return st->ops->delete_old(st->be, sha256, min_age_s, errstr);
}

/* Refreshes the blob's time so a collection keeps it; ENOENT when it is gone. */
int
store_touch(struct store *st, const unsigned char sha256[32], char **errstr)
{
	if (st->ops->touch == NULL)
		return unsupported(st, "refresh a blob's time", errstr);
	return st->ops->touch(st->be, sha256, errstr);
}

/* The touch before a commit of many rows: the first failure stops it, errno kept. */
int
store_touch_all(
    struct store *st, const unsigned char (*sha256)[32], size_t n, size_t *failed, char **errstr)
{
	for (size_t i = 0; i < n; i++) {
		if (store_touch(st, sha256[i], errstr) != 0) {
			*failed = i;
			return -1;
		}
	}
	return 0;
}

/* The identity binding the store to its database. */
int
store_get_id(struct store *st, char id[33], char **errstr)
{
	if (st->ops->get_id == NULL)
		return unsupported(st, "keep an identity", errstr);
	return st->ops->get_id(st->be, id, errstr);
}

/* Creates the identity unless the store has one; id gets the one it has. */
int
store_create_id(struct store *st, const char *want, char id[33], char **errstr)
{
	if (st->ops->create_id == NULL)
		return unsupported(st, "keep an identity", errstr);
	return st->ops->create_id(st->be, want, id, errstr);
}

/* Deleting safely needs every op below: a missing one is named, for the operator. */
int
store_check_gc(struct store *st, char **errstr)
{
	const char *missing = st->ops->list == NULL ? "list its blobs"
	    : st->ops->delete_old == NULL           ? "delete a blob only when it is old"
	    : st->ops->touch == NULL                ? "refresh a blob's time"
	    : st->ops->get_id == NULL || st->ops->create_id == NULL ? "keep an identity"
								    : NULL;

	if (missing == NULL)
		return 0;
	*errstr = xasprintf("the %s store cannot %s: garbage collection and expiry will not "
			    "delete blobs from it",
	    st->ops->name, missing);
	errno = ENOTSUP;
	return -1;
}

/* A listing for garbage collection; ENOTSUP for backends that cannot walk their blobs. */
int
store_list(struct store *st, store_list_cb cb, void *arg, char **errstr)
{
	if (st->ops->list == NULL)
		return unsupported(st, "list its blobs", errstr);
	return st->ops->list(st->be, cb, arg, errstr);
}

/* Free and total bytes for /status; ENOTSUP for backends without a notion of space. */
int
store_space(struct store *st, uint64_t *free_bytes, uint64_t *total_bytes, char **errstr)
{
	if (st->ops->space == NULL)
		return unsupported(st, "report free space", errstr);
	return st->ops->space(st->be, free_bytes, total_bytes, errstr);
}

/* Writable check for /status, done the backend's way. */
int
store_probe(struct store *st, char **errstr)
{
	return st->ops->probe(st->be, errstr);
}

void
store_writer_peek(const struct store_writer *w, unsigned char sha256[32], unsigned char sha1[20])
{
	EVP_MD_CTX *a = EVP_MD_CTX_new(), *b = EVP_MD_CTX_new();
	unsigned int n = 0;

	if (a == NULL || b == NULL || EVP_MD_CTX_copy_ex(a, w->sha256) != 1 ||
	    EVP_MD_CTX_copy_ex(b, w->sha1) != 1 || EVP_DigestFinal_ex(a, sha256, &n) != 1 ||
	    EVP_DigestFinal_ex(b, sha1, &n) != 1)
		abort();
	EVP_MD_CTX_free(a);
	EVP_MD_CTX_free(b);
}
