/* store_local.c: the local file-system backend of the blob store (shared/store_backend.h).
 * Blobs live at <root>/objects/ab/cd/<sha256hex>; each put goes to
 * <root>/tmp/put-<pid>-<random> (same file system, so the final rename is atomic), is
 * fsynced, renamed and its folder fsynced; the generic layer hashes it on the way. No
 * mutable state is shared between calls beyond the root paths, so API threads and worker
 * processes can use one store at the same time: two writers of the same bytes both rename
 * over the same name with identical content, which is harmless. Garbage collection lists
 * objects/ (never tmp/) and deletes by moving a blob aside before checking its age, so
 * a writer reusing the blob at that moment keeps it (local_delete_old). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "shared/store.h"
#include "shared/store_backend.h"

#define TMP_PUT_PREFIX "put-"
#define TMP_PROBE_PREFIX "probe-"
#define FILE_MODE 0644
#define DIR_MODE 0755
/* A blob moved aside for deletion this long ago belongs to a collector that died. */
#define ASIDE_STALE_S 60

struct local {
	char *root;
	char *objects; /* <root>/objects */
	char *tmp; /* <root>/tmp */
};

struct local_writer {
	int fd;
	char *tmp_path;
};

/* The one message callers map to 507 Insufficient Storage; anything else is errno text.
 * errno is left set to the original value so callers may test it too. */
static char *
errno_msg(int err, const char *what, const char *path)
{
	if (err == ENOSPC || err == EDQUOT)
		return xstrdup("no space left on device");
	return xasprintf("%s %s: %s", what, path, strerror(err));
}

/* <objects>/ab/cd/<hex>, and the folder it lives in. */
static char *
blob_path(const struct local *st, const unsigned char sha256[32], char **dir)
{
	char hex[65];

	hex_encode(sha256, 32, hex);
	if (dir != NULL)
		*dir = xasprintf("%s/%.2s/%.2s", st->objects, hex, hex + 2);
	return xasprintf("%s/%.2s/%.2s/%s", st->objects, hex, hex + 2, hex);
}

/* Makes a temp file that store_clean_tmp recognises by its prefix. */
static int
tmp_create(struct local *st, const char *prefix, char **path, char **errstr)
{
	char rnd[17];
	int fd;

	for (int tries = 0; tries < 8; tries++) {
		random_hex(rnd, 8);
		*path = xasprintf("%s/%s%ld-%s", st->tmp, prefix, (long)getpid(), rnd);
		fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FILE_MODE);
		if (fd >= 0) {
			/* The umask must not decide the blob's mode. */
			(void)fchmod(fd, FILE_MODE);
			return fd;
		}
		int err = errno;
		if (err != EEXIST) {
			*errstr = errno_msg(err, "cannot create temp file", *path);
			free(*path);
			*path = NULL;
			errno = err;
			return -1;
		}
		free(*path);
		*path = NULL;
	}
	*errstr = xasprintf("cannot create a unique temp file in %s", st->tmp);
	errno = EEXIST;
	return -1;
}

/* Frees the backend state; NULL does nothing (a half-built open). */
static void
local_free(void *be)
{
	struct local *st = be;

	if (st == NULL)
		return;
	free(st->root);
	free(st->objects);
	free(st->tmp);
	free(st);
}

/* Only our own prefixes are removed: a stray file someone put in tmp/ is left alone. A
 * writer's temp file has the mtime of its last write, so an age limit spares live puts. */
static int
local_clean_tmp(void *be, int64_t max_age_s, char **errstr)
{
	struct local *st = be;
	DIR *d;
	struct dirent *de;
	struct stat sb;
	time_t now = time(NULL);
	int removed = 0;

	if ((d = opendir(st->tmp)) == NULL) {
		*errstr = errno_msg(errno, "cannot open", st->tmp);
		return -1;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, TMP_PUT_PREFIX, strlen(TMP_PUT_PREFIX)) != 0 &&
		    strncmp(de->d_name, TMP_PROBE_PREFIX, strlen(TMP_PROBE_PREFIX)) != 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (max_age_s > 0 && (int64_t)(now - sb.st_mtime) < max_age_s)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
		else if (errno != ENOENT) {
			*errstr = errno_msg(errno, "cannot remove temp file", de->d_name);
			closedir(d);
			return -1;
		}
	}
	if (errno != 0) {
		*errstr = errno_msg(errno, "cannot read", st->tmp);
		closedir(d);
		return -1;
	}
	closedir(d);
	return removed;
}

/* A put starts as a fresh temp file in tmp/, on the objects' file system. */
static void *
local_writer_new(void *be, char **errstr)
{
	struct local_writer *w;
	char *path;
	int fd;

	if ((fd = tmp_create(be, TMP_PUT_PREFIX, &path, errstr)) < 0)
		return NULL;
	w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->tmp_path = path;
	return w;
}

/* Full write loop: write(2) may be interrupted or write less than asked. */
static int
local_writer_write(void *be, void *bw, const void *data, size_t len, char **errstr)
{
	struct local_writer *w = bw;
	const char *p = data;
	size_t left = len;

	(void)be;
	while (left > 0) {
		ssize_t n = write(w->fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			*errstr = errno_msg(err, "cannot write", w->tmp_path);
			errno = err;
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	return 0;
}

/* mkdir that reports whether it created the folder, so only new folders cost an fsync
 * of their parent. */
static int
mkdir_new(const char *path, bool *created)
{
	*created = false;
	if (mkdir(path, DIR_MODE) == 0) {
		*created = true;
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/* Creates objects/ab and objects/ab/cd when missing and makes the new entries durable. */
static int
fanout_dirs(struct local *st, const char *hex, char **errstr)
{
	char *ab = xasprintf("%s/%.2s", st->objects, hex);
	char *abcd = xasprintf("%s/%.2s/%.2s", st->objects, hex, hex + 2);
	bool made_ab, made_abcd;
	int rc = -1, err;

	if (mkdir_new(ab, &made_ab) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot create", ab);
		goto out;
	}
	if (mkdir_new(abcd, &made_abcd) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot create", abcd);
		goto out;
	}
	if ((made_ab && fsync_dir(st->objects) != 0) || (made_abcd && fsync_dir(ab) != 0)) {
		err = errno;
		*errstr = errno_msg(err, "cannot fsync folder under", st->objects);
		goto out;
	}
	rc = 0;
	err = 0;
out:
	free(ab);
	free(abcd);
	errno = err;
	return rc;
}

/* Closes and removes the temp file (unless already renamed) and frees the writer. */
static void
writer_drop(struct local_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_path != NULL)
		unlink(w->tmp_path);
	free(w->tmp_path);
	free(w);
}

/* fsync, rename to objects/ab/cd/<hex>, fsync the folder. When the blob already exists
 * the temp is dropped without an fsync: the bytes are the same (same sha256) and the
 * existing file was made durable by its own writer. */
static int
local_writer_commit(
    void *be, void *bw, const unsigned char sha256[32], uint64_t size, char **errstr)
{
	struct local *st = be;
	struct local_writer *w = bw;
	char hex[65];
	char *final = NULL, *dir = NULL;
	struct stat sb;
	int rc = -1, err = 0;

	hex_encode(sha256, 32, hex);
	final = blob_path(st, sha256, &dir);

	/* Already stored: the blob counts as just written (its mtime set to now), so a
	 * collection that listed it as old keeps it (local_delete_old checks the time again
	 * after moving the blob aside). When the blob vanished meanwhile (collected) or its
	 * time cannot be set, our own copy is stored as usual. */
	if (utimensat(AT_FDCWD, final, NULL, 0) == 0 && stat(final, &sb) == 0 &&
	    S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size) {
		rc = 0;
		goto out;
	}
	if (fsync(w->fd) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot fsync", w->tmp_path);
		goto out;
	}
	/* close can report a deferred write error (NFS, quotas). */
	if (close(w->fd) != 0) {
		w->fd = -1;
		err = errno;
		*errstr = errno_msg(err, "cannot close", w->tmp_path);
		goto out;
	}
	w->fd = -1;
	if (fanout_dirs(st, hex, errstr) != 0) {
		err = errno;
		goto out;
	}
	if (rename(w->tmp_path, final) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot rename to", final);
		goto out;
	}
	/* The temp name is gone: nothing for writer_drop to unlink. */
	free(w->tmp_path);
	w->tmp_path = NULL;
	if (fsync_dir(dir) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot fsync", dir);
		goto out;
	}
	rc = 0;
out:
	writer_drop(w);
	free(final);
	free(dir);
	errno = err;
	return rc;
}

/* Drops the temp file of an abandoned put. */
static void
local_writer_abort(void *be, void *bw)
{
	(void)be;
	writer_drop(bw);
}

/* Opens the blob's file; a missing blob gets a short message and errno ENOENT. */
static int
local_open_blob(void *be, const unsigned char sha256[32], uint64_t *size, char **errstr)
{
	char *path = blob_path(be, sha256, NULL);
	struct stat sb;
	int fd, err;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		err = errno;
		if (err == ENOENT) {
			char hex[65];
			hex_encode(sha256, 32, hex);
			*errstr = xasprintf("blob %s not found", hex);
		} else
			*errstr = errno_msg(err, "cannot open", path);
		free(path);
		errno = err;
		return -1;
	}
	if (fstat(fd, &sb) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot stat", path);
		close(fd);
		free(path);
		errno = err;
		return -1;
	}
	free(path);
	*size = (uint64_t)sb.st_size;
	return fd;
}

/* A regular file under the blob's name is a blob: commits only ever rename whole files. */
static bool
local_exists(void *be, const unsigned char sha256[32])
{
	char *path = blob_path(be, sha256, NULL);
	struct stat sb;
	bool ok = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);

	free(path);
	return ok;
}

/* Unlinks the blob; an absent one is success (ENOENT ignored). */
static int
local_delete(void *be, const unsigned char sha256[32], char **errstr)
{
	char *path = blob_path(be, sha256, NULL);
	int err;

	if (unlink(path) != 0 && errno != ENOENT) {
		err = errno;
		*errstr = errno_msg(err, "cannot remove", path);
		free(path);
		errno = err;
		return -1;
	}
	free(path);
	return 0;
}

/* Moves the blob aside (<name>.gc-<pid>, in its folder: not a blob name, so nothing
 * lists or opens it), checks its age there, then unlinks it or puts it back. The move
 * orders us against a writer reusing the blob: a commit that refreshed the mtime before
 * the move is seen by the stat (the blob goes back, over a fresh copy of the same bytes
 * if one appeared); one after the move finds no blob and renames its own copy in. */
static int
local_delete_old(void *be, const unsigned char sha256[32], int64_t min_age_s, char **errstr)
{
	char *path = blob_path(be, sha256, NULL);
	char *aside = xasprintf("%s.gc-%ld", path, (long)getpid());
	struct stat sb;
	int rc = -1, err = 0;

	if (rename(path, aside) != 0) {
		err = errno;
		if (err == ENOENT) {
			rc = 0;
			err = 0;
		} else
			*errstr = errno_msg(err, "cannot move aside", path);
		goto out;
	}
	if (stat(aside, &sb) == 0 && (int64_t)(time(NULL) - sb.st_mtime) < min_age_s) {
		if (rename(aside, path) != 0) {
			err = errno;
			*errstr = errno_msg(err, "cannot put back", path);
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (unlink(aside) != 0 && errno != ENOENT) {
		err = errno;
		*errstr = errno_msg(err, "cannot remove", aside);
		goto out;
	}
	rc = 1;
out:
	free(path);
	free(aside);
	errno = err;
	return rc;
}

/* Exactly n lowercase hex digits: the only names blob_path makes. */
static bool
lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[n] == '\0';
}

/* A blob local_delete_old moved aside and never finished with (the process died between
 * the two steps), recognised by a ctime (the move) over a minute old: put back when its
 * name is free (the next collection judges it again), else dropped (the same bytes are
 * there). Failures are left for the next listing. */
static void
leftover_aside(int dfd, const char *name)
{
	char blob[65];
	struct stat sb;

	if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
	    time(NULL) - sb.st_ctime < ASIDE_STALE_S)
		return;
	memcpy(blob, name, 64);
	blob[64] = '\0';
	if (!lower_hex(blob, 64))
		return;
	if (fstatat(dfd, blob, &sb, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
		(void)renameat(dfd, name, dfd, blob);
	else
		(void)unlinkat(dfd, name, 0);
}

/* Lists one objects/ab/cd folder: files named by 64 lowercase hex digits that start
 * with the folder's "abcd", regular files only. 0, 1 (cb stopped) or -1. */
static int
list_leaf(const char *path, const char *prefix, store_list_cb cb, void *arg, char **errstr)
{
	DIR *d;
	struct dirent *de;
	struct stat sb;
	unsigned char sha[32];
	int rc = 0;

	if ((d = opendir(path)) == NULL) {
		if (errno == ENOENT)
			return 0; /* removed since the parent was read */
		*errstr = errno_msg(errno, "cannot open", path);
		return -1;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, 4) != 0)
			continue;
		if (strlen(de->d_name) > 64 && strncmp(de->d_name + 64, ".gc-", 4) == 0) {
			leftover_aside(dirfd(d), de->d_name);
			continue;
		}
		if (!lower_hex(de->d_name, 64))
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode) || !hex_decode(de->d_name, sha, sizeof sha))
			continue; /* deleted meanwhile, or not a blob */
		if (cb(arg, sha, (uint64_t)sb.st_size, (int64_t)sb.st_mtime) != 0) {
			rc = 1;
			break;
		}
	}
	if (rc == 0 && errno != 0) {
		*errstr = errno_msg(errno, "cannot read", path);
		rc = -1;
	}
	closedir(d);
	return rc;
}

/* Walks objects/ab/cd/<hex>; tmp/ (writes in progress) is a sibling of objects/ and is
 * never entered. Folders are read one at a time, so memory does not grow with the
 * store. */
static int
local_list(void *be, store_list_cb cb, void *arg, char **errstr)
{
	struct local *st = be;
	DIR *top, *mid;
	struct dirent *a, *b;
	int rc = 0;

	if ((top = opendir(st->objects)) == NULL) {
		*errstr = errno_msg(errno, "cannot open", st->objects);
		return -1;
	}
	while (rc == 0 && (errno = 0, a = readdir(top)) != NULL) {
		if (!lower_hex(a->d_name, 2))
			continue;
		char *ab = xasprintf("%s/%s", st->objects, a->d_name);
		if ((mid = opendir(ab)) == NULL) {
			if (errno != ENOENT && errno != ENOTDIR) {
				*errstr = errno_msg(errno, "cannot open", ab);
				rc = -1;
			}
			free(ab);
			continue;
		}
		while (rc == 0 && (errno = 0, b = readdir(mid)) != NULL) {
			if (!lower_hex(b->d_name, 2))
				continue;
			char prefix[5], *abcd = xasprintf("%s/%s", ab, b->d_name);
			memcpy(prefix, a->d_name, 2);
			memcpy(prefix + 2, b->d_name, 3); /* with its '\0' */
			rc = list_leaf(abcd, prefix, cb, arg, errstr);
			free(abcd);
		}
		if (rc == 0 && errno != 0) {
			*errstr = errno_msg(errno, "cannot read", ab);
			rc = -1;
		}
		closedir(mid);
		free(ab);
	}
	if (rc == 0 && errno != 0) {
		*errstr = errno_msg(errno, "cannot read", st->objects);
		rc = -1;
	}
	closedir(top);
	return rc;
}

/* f_bavail: what an unprivileged writer may still use, which is what puts will get. */
static int
local_space(void *be, uint64_t *free_bytes, uint64_t *total_bytes, char **errstr)
{
	struct local *st = be;
	struct statvfs vfs;

	if (statvfs(st->root, &vfs) != 0) {
		*errstr = errno_msg(errno, "cannot statvfs", st->root);
		return -1;
	}
	*free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	*total_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	return 0;
}

/* Creates, writes one byte to and removes a temp file: proves tmp/ is writable. */
static int
local_probe(void *be, char **errstr)
{
	char *path;
	int fd, err = 0;

	if ((fd = tmp_create(be, TMP_PROBE_PREFIX, &path, errstr)) < 0)
		return -1;
	while (write(fd, "x", 1) != 1) {
		if (errno == EINTR)
			continue;
		err = errno;
		*errstr = errno_msg(err, "cannot write", path);
		break;
	}
	close(fd);
	unlink(path);
	free(path);
	errno = err;
	return err == 0 ? 0 : -1;
}

/* blob_url stays NULL: local blobs go out through open_blob and sendfile. */
static const struct store_backend_ops local_ops = {
    .name = "local",
    .writer_new = local_writer_new,
    .writer_write = local_writer_write,
    .writer_commit = local_writer_commit,
    .writer_abort = local_writer_abort,
    .open_blob = local_open_blob,
    .blob_url = NULL,
    .exists = local_exists,
    .delete = local_delete,
    .delete_old = local_delete_old,
    .list = local_list,
    .clean_tmp = local_clean_tmp,
    .space = local_space,
    .probe = local_probe,
    .free = local_free,
};

/* Creates objects/ and tmp/ under root (and root itself) before handing out a store. */
struct store *
store_open_local(const char *root, char **errstr)
{
	struct local *st = xcalloc(1, sizeof(*st));

	st->root = xstrdup(root);
	st->objects = xasprintf("%s/objects", root);
	st->tmp = xasprintf("%s/tmp", root);
	if (mkdir_p(st->objects, DIR_MODE, errstr) != 0 ||
	    mkdir_p(st->tmp, DIR_MODE, errstr) != 0) {
		local_free(st);
		return NULL;
	}
	return store_open_backend(&local_ops, st);
}
