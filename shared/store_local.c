/* store_local.c: the local file-system backend of the blob store (shared/store_backend.h).
 * Blobs live at <root>/objects/ab/cd/<sha256hex>; each put goes to
 * <root>/tmp/put-<pid>-<random> (same file system, so the final rename is atomic), is
 * fsynced, renamed and its folder fsynced; the generic layer hashes it on the way. No
 * mutable state is shared between calls beyond the root paths, so API threads and worker
 * processes can use one store at the same time: two writers of the same bytes both rename
 * over the same name with identical content, which is harmless. Garbage collection lists
 * objects/ (never tmp/) and deletes by moving a blob aside before checking its age, so
 * a writer reusing the blob at that moment keeps it (local_delete_old).
 *
 * A blob being deleted sits in <root>/gc/ for a moment. If its collector dies there, the
 * blob would stay hidden: a reader that finds a blob missing (open_blob, exists, touch)
 * first looks there and puts it back, and opening the store puts back whatever is left,
 * so gc/ is one small folder to read, not the whole store to walk. Putting a blob back is
 * always safe: at worst a deletion is lost, and the next collection judges it again. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "shared/store.h"
#include "shared/store_backend.h"

#define TMP_PUT_PREFIX "put-"
#define TMP_PROBE_PREFIX "probe-"
#define TMP_ID_PREFIX "id-"
/* What follows "<hex>" in the name of a blob moved aside for deletion. */
#define ASIDE_SUFFIX ".gc-"
#define FILE_MODE 0644
#define DIR_MODE 0755
/* A blob moved aside for deletion this long ago belongs to a collector that died. */
#define ASIDE_STALE_S 60

struct local {
	char *root;
	char *objects; /* <root>/objects */
	char *tmp; /* <root>/tmp */
	char *aside; /* <root>/gc: blobs being deleted */
	char *id_path; /* <root>/ID */
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

/* Locks a temp file just made. A cleaner may have found it unlocked in between and
 * removed it (or hold its lock now): false then, and the caller makes another. Where
 * flock is not supported the file stays unlocked and only its age protects it. */
static bool
tmp_lock(int fd, const char *path)
{
	struct stat a, b;

	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		return errno != EWOULDBLOCK;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino;
}

/* Makes a temp file that store_clean_tmp recognises by its prefix, locked (flock) for as
 * long as its writer holds it open: a temp file nobody holds a lock on is a dead writer's,
 * whatever its age. */
static int
tmp_create(struct local *st, const char *prefix, char **path, char **errstr)
{
	char rnd[17];
	int fd;

	for (int tries = 0; tries < 8; tries++) {
		random_hex(rnd, 8);
		*path = xasprintf("%s/%s%ld-%s", st->tmp, prefix, (long)getpid(), rnd);
		fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FILE_MODE);
		if (fd >= 0 && tmp_lock(fd, *path)) {
			/* The umask must not decide the blob's mode. */
			(void)fchmod(fd, FILE_MODE);
			return fd;
		}
		if (fd >= 0) {
			/* A cleaner took it between our open and our lock: another name. */
			close(fd);
			free(*path);
			*path = NULL;
			continue;
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
	free(st->aside);
	free(st->id_path);
	free(st);
}

/* True when a temp file's writer is gone: nobody holds its lock (a writer that had not
 * locked it yet finds it gone and makes another: tmp_lock). Where locks are not
 * supported this is never true, and only age counts. */
static bool
tmp_orphaned(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool free_lock = flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return free_lock;
}

/* Only our own prefixes are removed: a stray file someone put in tmp/ is left alone. A
 * dead writer's file (unlocked) goes at once; past max_age_s any file goes (a writer's
 * temp file has the mtime of its last write, so the age limit spares live puts even where
 * locks do not work). */
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
		    strncmp(de->d_name, TMP_PROBE_PREFIX, strlen(TMP_PROBE_PREFIX)) != 0 &&
		    strncmp(de->d_name, TMP_ID_PREFIX, strlen(TMP_ID_PREFIX)) != 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (max_age_s > 0 && (int64_t)(now - sb.st_mtime) < max_age_s &&
		    !tmp_orphaned(dirfd(d), de->d_name))
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
	int rc = -1, err = 0, lockfd = -1;

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
	/* A duplicate keeps the temp file locked (the lock is the open file's, not the
	 * descriptor's) until it has its final name: no cleaner may take it between the
	 * close and the rename. */
	lockfd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
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
	if (lockfd >= 0)
		close(lockfd);
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

/* Puts back one blob found moved aside in folder dir (gc/, or the blob's own folder for
 * a collector of an older version): any "<hex>.gc-*" entry is renamed to the blob's name.
 * true when one was put back. */
static bool
recover_in(const char *dir, const char *hex, const char *path)
{
	DIR *d;
	struct dirent *de;
	bool done = false;
	size_t sl = strlen(ASIDE_SUFFIX);

	if ((d = opendir(dir)) == NULL)
		return false;
	while (!done && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, hex, 64) != 0 ||
		    strncmp(de->d_name + 64, ASIDE_SUFFIX, sl) != 0)
			continue;
		if (renameat(dirfd(d), de->d_name, AT_FDCWD, path) == 0)
			done = true;
	}
	closedir(d);
	return done;
}

/* A reader found the blob missing: a collector may have it aside right now (its checks
 * then see it gone and keep it), or may have died with it there. */
static bool
recover_blob(struct local *st, const unsigned char sha256[32])
{
	char hex[65], *dir, *path = blob_path(st, sha256, &dir);
	bool ok;

	hex_encode(sha256, 32, hex);
	ok = recover_in(st->aside, hex, path) || recover_in(dir, hex, path);
	free(path);
	free(dir);
	return ok;
}

/* At open: every blob left in gc/ goes back (or, when its name is taken again, is dropped:
 * the same bytes are there). Failures are left for the readers' own recovery. */
static void
recover_all(struct local *st)
{
	DIR *d;
	struct dirent *de;
	unsigned char sha[32];
	char hex[65];
	struct stat sb;

	if ((d = opendir(st->aside)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) <= 64 ||
		    strncmp(de->d_name + 64, ASIDE_SUFFIX, strlen(ASIDE_SUFFIX)) != 0)
			continue;
		memcpy(hex, de->d_name, 64);
		hex[64] = '\0';
		if (!hex_decode(hex, sha, sizeof sha))
			continue;
		char *path = blob_path(st, sha, NULL), *err = NULL;
		if (stat(path, &sb) == 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
		else if (fanout_dirs(st, hex, &err) == 0)
			(void)renameat(dirfd(d), de->d_name, AT_FDCWD, path);
		free(err);
		free(path);
	}
	closedir(d);
}

/* Opens the blob's file; a missing blob gets a short message and errno ENOENT. */
static int
local_open_blob(void *be, const unsigned char sha256[32], uint64_t *size, char **errstr)
{
	char *path = blob_path(be, sha256, NULL);
	struct stat sb;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && recover_blob(be, sha256))
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
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
	int rc = stat(path, &sb);

	if (rc != 0 && errno == ENOENT && recover_blob(be, sha256))
		rc = stat(path, &sb);
	free(path);
	return rc == 0 && S_ISREG(sb.st_mode);
}

/* utimensat to now; a blob a collector holds aside is put back first. */
static int
local_touch(void *be, const unsigned char sha256[32], char **errstr)
{
	char *path = blob_path(be, sha256, NULL), hex[65];
	int rc, err;

	rc = utimensat(AT_FDCWD, path, NULL, 0);
	if (rc != 0 && errno == ENOENT && recover_blob(be, sha256))
		rc = utimensat(AT_FDCWD, path, NULL, 0);
	if (rc != 0) {
		err = errno;
		if (err == ENOENT) {
			hex_encode(sha256, 32, hex);
			*errstr = xasprintf("blob %s not found", hex);
		} else
			*errstr = errno_msg(err, "cannot touch", path);
		free(path);
		errno = err;
		return -1;
	}
	free(path);
	return 0;
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

/* Moves the blob aside (gc/<hex>.gc-<pid>-<random>: not a blob name, so nothing lists
 * or opens it), checks its age there, then unlinks it or puts it back. The move orders us
 * against a writer reusing the blob: a commit or touch that refreshed the mtime before the
 * move is seen by the stat (the blob goes back, over a fresh copy of the same bytes if one
 * appeared); one after the move finds no blob, and a touch (or a reader) puts it back
 * itself, which the stat, the put-back or the unlink then sees as ENOENT: kept. */
static int
local_delete_old(void *be, const unsigned char sha256[32], int64_t min_age_s, char **errstr)
{
	struct local *st = be;
	char hex[65], rnd[9];
	char *path = blob_path(st, sha256, NULL), *aside;
	struct stat sb;
	int rc = -1, err = 0;

	hex_encode(sha256, 32, hex);
	random_hex(rnd, 4);
	aside = xasprintf("%s/%s%s%ld-%s", st->aside, hex, ASIDE_SUFFIX, (long)getpid(), rnd);
	if (rename(path, aside) != 0) {
		err = errno;
		if (err == ENOENT) {
			rc = 0;
			err = 0;
		} else
			*errstr = errno_msg(err, "cannot move aside", path);
		goto out;
	}
	if (stat(aside, &sb) != 0) {
		rc = 0; /* a reader put it back already */
		goto out;
	}
	if ((int64_t)(time(NULL) - sb.st_mtime) < min_age_s) {
		if (rename(aside, path) != 0 && errno != ENOENT) {
			err = errno;
			*errstr = errno_msg(err, "cannot put back", path);
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (unlink(aside) != 0) {
		if (errno == ENOENT) {
			rc = 0; /* put back by a reader between the stat and now */
			goto out;
		}
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

/* A blob an older version's local_delete_old moved aside in its own folder and never
 * finished with (the process died between the two steps), recognised by a ctime (the move) over a minute old: put back when its
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
	unlink(path); /* while still locked: a cleaner never meets it unlocked */
	close(fd);
	free(path);
	errno = err;
	return err == 0 ? 0 : -1;
}

/* Reads <root>/ID: 32 lowercase hex digits, a newline allowed. */
static int
local_get_id(void *be, char id[33], char **errstr)
{
	struct local *st = be;
	char b[40];
	ssize_t n;
	int fd, err;

	if ((fd = open(st->id_path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return 0;
		err = errno;
		*errstr = errno_msg(err, "cannot open", st->id_path);
		errno = err;
		return -1;
	}
	n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n < 0) {
		*errstr = errno_msg(errno, "cannot read", st->id_path);
		return -1;
	}
	b[n] = '\0';
	b[strcspn(b, "\n")] = '\0';
	if (!lower_hex(b, 32)) {
		*errstr = xasprintf("%s: not an identity (32 lowercase hex digits)", st->id_path);
		errno = EINVAL;
		return -1;
	}
	memcpy(id, b, 33);
	return 1;
}

/* Written to a temp file and linked to ID: link fails when ID exists, so of two
 * creators one wins and both read the winner's identity. */
static int
local_create_id(void *be, const char *want, char id[33], char **errstr)
{
	struct local *st = be;
	char *tmp = NULL, line[34];
	int fd, rc = -1, err = 0;

	if ((fd = tmp_create(st, TMP_ID_PREFIX, &tmp, errstr)) < 0)
		return -1;
	snprintf(line, sizeof line, "%.32s\n", want);
	if (write(fd, line, 33) != 33 || fsync(fd) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot write", tmp);
		close(fd);
		goto out;
	}
	/* Linked while still open (locked), so that no cleaner takes the temp file first. */
	int linked = link(tmp, st->id_path), link_err = errno;
	close(fd);
	if (linked != 0 && link_err != EEXIST) {
		err = link_err;
		*errstr = errno_msg(err, "cannot create", st->id_path);
		goto out;
	}
	if (fsync_dir(st->root) != 0) {
		err = errno;
		*errstr = errno_msg(err, "cannot fsync", st->root);
		goto out;
	}
	rc = local_get_id(st, id, errstr);
	if (rc == 0) {
		*errstr = xasprintf("%s vanished after it was created", st->id_path);
		err = ENOENT;
		rc = -1;
	} else if (rc == 1)
		rc = 0;
	else
		err = errno;
out:
	unlink(tmp);
	free(tmp);
	errno = err;
	return rc;
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
    .touch = local_touch,
    .get_id = local_get_id,
    .create_id = local_create_id,
    .list = local_list,
    .clean_tmp = local_clean_tmp,
    .space = local_space,
    .probe = local_probe,
    .free = local_free,
};

/* Creates objects/, tmp/ and gc/ under root (and root itself), and puts back what a
 * collector that died left in gc/, before handing out a store. The identity (ID) is not
 * made here: jobstore_bind_store makes it together with the database's record, so a
 * store with an ID always has a database that knows it. */
struct store *
store_open_local(const char *root, char **errstr)
{
	struct local *st = xcalloc(1, sizeof(*st));

	st->root = xstrdup(root);
	st->objects = xasprintf("%s/objects", root);
	st->tmp = xasprintf("%s/tmp", root);
	st->aside = xasprintf("%s/gc", root);
	st->id_path = xasprintf("%s/ID", root);
	if (mkdir_p(st->objects, DIR_MODE, errstr) != 0 ||
	    mkdir_p(st->tmp, DIR_MODE, errstr) != 0 || mkdir_p(st->aside, DIR_MODE, errstr) != 0) {
		local_free(st);
		return NULL;
	}
	recover_all(st);
	return store_open_backend(&local_ops, st);
}
