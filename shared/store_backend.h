/* store_backend.h: the vtable a blob store backend implements. Only backends (the local one
 * in shared/store_local.c, a future S3 one, test fakes) include this; callers use store.h.
 *
 * The generic layer (shared/store.c) owns the hashing: a backend writer only receives bytes
 * and, at commit, the finished sha256 and size, which name the blob. Backend state is an
 * opaque pointer the backend allocates and ops->free releases. Ops may be called from
 * several threads at once on one store (API threads), so a backend keeps no unlocked
 * mutable state across calls beyond what each writer owns. */
#ifndef BV_STORE_BACKEND_H
#define BV_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/store.h"

/* Each op gets the backend state (be) given to store_open_backend. Fallible ops return
 * 0/-1 (or a count, or NULL) and set *errstr and errno as described in store.h for the
 * public function of the same name. Ops marked optional may be NULL. */
struct store_backend_ops {
	const char *name; /* "local", "s3": for messages */

	/* Starts a put; returns the backend's writer state or NULL + *errstr. */
	void *(*writer_new)(void *be, char **errstr);
	/* Appends bytes; the generic layer hashes them only when this succeeds. */
	int (*writer_write)(void *be, void *bw, const void *data, size_t len, char **errstr);
	/* Makes the bytes the blob sha256 (size bytes long), durably. Frees bw, success or
	 * not. A blob that already exists is success, and its time of last write becomes now
	 * (garbage collection spares blobs written less than gc_grace ago). */
	int (*writer_commit)(
	    void *be, void *bw, const unsigned char sha256[32], uint64_t size, char **errstr);
	/* Drops whatever was written and frees bw. */
	void (*writer_abort)(void *be, void *bw);

	/* Optional (NULL: fails with errno ENOTSUP, callers use blob_url). fd + size. */
	int (*open_blob)(void *be, const unsigned char sha256[32], uint64_t *size, char **errstr);
	/* Optional (NULL: no URL, *errstr NULL). A redirect URL for a download. */
	char *(*blob_url)(
	    void *be, const unsigned char sha256[32], const char *filename, char **errstr);
	bool (*exists)(void *be, const unsigned char sha256[32]);
	/* Deleting an absent blob is success. */
	int (*delete)(void *be, const unsigned char sha256[32], char **errstr);
	/* Optional (NULL: store_delete_old fails with errno ENOTSUP and garbage collection
	 * refuses the store; a plain delete would trust a stale listing). 1 deleted, 0 kept
	 * because the blob was (re)written less than min_age_s seconds ago, is absent, or
	 * was put back meanwhile, -1. */
	int (*delete_old)(
	    void *be, const unsigned char sha256[32], int64_t min_age_s, char **errstr);
	/* Optional (NULL: fails with errno ENOTSUP). Sets the blob's time of last write to
	 * now; -1 with errno ENOENT when it is absent. */
	int (*touch)(void *be, const unsigned char sha256[32], char **errstr);
	/* Optional (NULL: fails with errno ENOTSUP). The identity: 1 found, 0 none, -1. */
	int (*get_id)(void *be, char id[33], char **errstr);
	/* Optional (NULL: fails with errno ENOTSUP). Creates the identity unless present,
	 * atomically; id gets the one stored. 0 or -1. */
	int (*create_id)(void *be, const char *want, char id[33], char **errstr);
	/* Optional (NULL: fails with errno ENOTSUP). Every blob once, temp files never; cb's
	 * non-zero answer stops the walk (then 1). 0, 1 or -1. */
	int (*list)(void *be, store_list_cb cb, void *arg, char **errstr);
	/* Optional (NULL: nothing to clean, returns 0). Count removed or -1. */
	int (*clean_tmp)(void *be, int64_t max_age_s, char **errstr);
	/* Optional (NULL: fails with errno ENOTSUP). */
	int (*space)(void *be, uint64_t *free_bytes, uint64_t *total_bytes, char **errstr);
	int (*probe)(void *be, char **errstr);
	/* Releases be; called by store_free. */
	void (*free)(void *be);
};

/* Wraps a backend in a store; the store owns be from here on (store_free calls ops->free).
 * ops must outlive the store (a static table) and have every non-optional op set. */
struct store *store_open_backend(const struct store_backend_ops *ops, void *be);

#endif
