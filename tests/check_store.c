/* check_store.c: the local blob store in a temp folder: hashes, layout, modes, dedup,
 * abort, temp cleanup, reads, deletes, concurrent writers; and a memory-backed fake
 * backend reached through the public store_* functions, which proves the backend vtable
 * (shared/store_backend.h) is the only thing the generic layer talks to. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <openssl/evp.h>

#include "shared/store.h"
#include "shared/store_backend.h"

static char root[256];
static struct store *st;

/* Entries in a folder, "." and ".." excluded; -1 when it cannot be opened. */
static int
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Files in the store's tmp/: what a put or probe left behind. */
static int
count_tmp(void)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/tmp", root);
	return count_files(path);
}

/* A fresh local store under a new temp folder per test. */
static void
setup(void)
{
	char *err = NULL;

	snprintf(root, sizeof(root), "/tmp/check_store.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	strcat(root, "/store"); /* store_open_local creates the root itself */
	st = store_open_local(root, &err);
	ck_assert_msg(st != NULL, "open: %s", err);
}

/* Frees the store and removes its temp folder. */
static void
teardown(void)
{
	char cmd[400];

	store_free(st);
	st = NULL;
	*strrchr(root, '/') = '\0';
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

/* One-shot OpenSSL digest, the reference the streaming hashes must match. */
static void
digest(const EVP_MD *md, const void *data, size_t len, unsigned char *out)
{
	ck_assert_int_eq(EVP_Digest(data, len, out, NULL, md, NULL), 1);
}

/* Writes data in chunks of step bytes and commits. */
static void
put(const void *data, size_t len, size_t step, unsigned char sha256[32], unsigned char sha1[20])
{
	struct store_writer *w;
	char *err = NULL;

	w = store_writer_new(st, &err);
	ck_assert_msg(w != NULL, "writer: %s", err);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;
		ck_assert_int_eq(store_writer_write(w, (const char *)data + off, n, &err), 0);
	}
	ck_assert_uint_eq(store_writer_size(w), len);
	ck_assert_msg(store_writer_commit(w, sha256, sha1, &err) == 0, "commit: %s", err);
}

START_TEST(test_put_layout_and_hashes)
{
	unsigned char sha256[32], sha1[20];
	char hex[65], path[400];
	struct stat sb;

	put("hello\n", 6, 2, sha256, sha1);
	hex_encode(sha256, 32, hex);
	ck_assert_str_eq(hex, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
	hex_encode(sha1, 20, hex);
	ck_assert_str_eq(hex, "f572d396fae9206628714fb2ce00f72e94f2258f");
	snprintf(path, sizeof(path),
	    "%s/objects/58/91/5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
	    root);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0644);
	ck_assert_int_eq(sb.st_size, 6);
	snprintf(path, sizeof(path), "%s/objects/58/91", root);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0755);
	ck_assert_int_eq(count_tmp(), 0);
	/* sha1 may be NULL. */
	put("hello\n", 6, 6, sha256, NULL);
}
END_TEST

/* 3 MiB of pseudo-random bytes in odd chunks: the digests equal OpenSSL's one-shot
 * digests of the same bytes, and the umask does not change the blob's mode. */
START_TEST(test_put_large_matches_openssl)
{
	size_t len = 3 * 1024 * 1024 + 17;
	unsigned char *data = malloc(len), sha256[32], sha1[20], want256[32], want1[20];
	unsigned int seed = 7;
	char hex[65], path[400];
	struct stat sb;
	mode_t old = umask(077);

	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)rand_r(&seed);
	put(data, len, 65537, sha256, sha1);
	umask(old);
	digest(EVP_sha256(), data, len, want256);
	digest(EVP_sha1(), data, len, want1);
	ck_assert(memcmp(sha256, want256, 32) == 0);
	ck_assert(memcmp(sha1, want1, 20) == 0);
	hex_encode(sha256, 32, hex);
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/%s", root, hex, hex + 2, hex);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0644);
	ck_assert_int_eq((size_t)sb.st_size, len);
	free(data);
}
END_TEST

START_TEST(test_dedup)
{
	unsigned char a[32], b[32];
	char dir[400], hex[65];

	put("same bytes", 10, 3, a, NULL);
	put("same bytes", 10, 10, b, NULL);
	ck_assert(memcmp(a, b, 32) == 0);
	hex_encode(a, 32, hex);
	snprintf(dir, sizeof(dir), "%s/objects/%.2s/%.2s", root, hex, hex + 2);
	ck_assert_int_eq(count_files(dir), 1);
	ck_assert_int_eq(count_tmp(), 0);
	ck_assert(store_exists(st, a));
}
END_TEST

START_TEST(test_empty_blob)
{
	unsigned char sha256[32];
	char hex[65];
	uint64_t size = 99;
	char *err = NULL;
	int fd;

	put("", 0, 1, sha256, NULL);
	hex_encode(sha256, 32, hex);
	ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	fd = store_open_blob(st, sha256, &size, &err);
	ck_assert_int_ge(fd, 0);
	ck_assert_uint_eq(size, 0);
	close(fd);
}
END_TEST

START_TEST(test_abort_leaves_nothing)
{
	struct store_writer *w;
	char *err = NULL, path[300];

	w = store_writer_new(st, &err);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(store_writer_write(w, "partial", 7, &err), 0);
	ck_assert_int_eq(count_tmp(), 1);
	store_writer_abort(w);
	store_writer_abort(NULL);
	ck_assert_int_eq(count_tmp(), 0);
	snprintf(path, sizeof(path), "%s/objects", root);
	ck_assert_int_eq(count_files(path), 0);
}
END_TEST

/* Stale temps of ours go, recent ones stay unless max_age is 0, strangers' files stay. */
START_TEST(test_clean_tmp)
{
	struct store_writer *w;
	struct timespec old[2] = {{.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};
	char *err = NULL, path[400];
	int fd;

	snprintf(path, sizeof(path), "%s/tmp/put-1-deadbeef", root);
	ck_assert_int_ge(fd = open(path, O_CREAT | O_WRONLY, 0644), 0);
	close(fd);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, old, 0), 0);
	snprintf(path, sizeof(path), "%s/tmp/probe-1-deadbeef", root);
	ck_assert_int_ge(fd = open(path, O_CREAT | O_WRONLY, 0644), 0);
	close(fd);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, old, 0), 0);
	snprintf(path, sizeof(path), "%s/tmp/not-ours", root);
	ck_assert_int_ge(fd = open(path, O_CREAT | O_WRONLY, 0644), 0);
	close(fd);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, old, 0), 0);
	w = store_writer_new(st, &err); /* a live put: its temp is recent */
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(count_tmp(), 4);

	ck_assert_int_eq(store_clean_tmp(st, 3600, &err), 2);
	ck_assert_int_eq(count_tmp(), 2);
	ck_assert_int_eq(store_clean_tmp(st, 3600, &err), 0);
	ck_assert_int_eq(store_clean_tmp(st, 0, &err), 1);
	ck_assert_int_eq(count_tmp(), 1); /* not-ours */
	store_writer_abort(w);
}
END_TEST

/* A dead writer's temp file (nobody holds its lock) goes at once, young as it is; a live
 * writer's stays however old. */
START_TEST(test_clean_tmp_dead_writer)
{
	struct timespec ago[2] = {{.tv_sec = time(NULL) - 5}, {.tv_sec = time(NULL) - 5}};
	char *err = NULL, path[400], *name;
	struct store_writer *w;
	struct dirent *de;
	DIR *d;
	int fd;

	snprintf(path, sizeof(path), "%s/tmp/put-1-dead", root);
	ck_assert_int_ge(fd = open(path, O_CREAT | O_WRONLY, 0644), 0);
	close(fd);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ago, 0), 0);
	w = store_writer_new(st, &err);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(store_writer_write(w, "x", 1, &err), 0);
	/* Age the live writer's file too: only its lock keeps it. */
	snprintf(path, sizeof(path), "%s/tmp", root);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "put-", 4) == 0 && strcmp(de->d_name, "put-1-dead") != 0) {
			name = xasprintf("%s/%s", path, de->d_name);
			ck_assert_int_eq(utimensat(AT_FDCWD, name, ago, 0), 0);
			free(name);
		}
	closedir(d);
	ck_assert_int_eq(count_tmp(), 2);

	ck_assert_int_eq(store_clean_tmp(st, 3600, &err), 1); /* put-1-dead */
	ck_assert_int_eq(count_tmp(), 1);
	ck_assert_int_eq(store_writer_write(w, "y", 1, &err), 0);
	store_writer_abort(w);
	ck_assert_int_eq(count_tmp(), 0);
}
END_TEST

START_TEST(test_open_exists_delete)
{
	unsigned char sha256[32], missing[32] = {0xab, 0xcd};
	uint64_t size = 0;
	char *err = NULL, buf[16];
	int fd;

	errno = 0;
	ck_assert_int_eq(store_open_blob(st, missing, &size, &err), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "not found"));
	free(err);
	err = NULL;
	ck_assert(!store_exists(st, missing));

	put("content!", 8, 8, sha256, NULL);
	fd = store_open_blob(st, sha256, &size, &err);
	ck_assert_int_ge(fd, 0);
	ck_assert_uint_eq(size, 8);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 8);
	ck_assert(memcmp(buf, "content!", 8) == 0);
	close(fd);

	ck_assert_int_eq(store_delete(st, sha256, &err), 0);
	ck_assert(!store_exists(st, sha256));
	ck_assert_int_eq(store_delete(st, sha256, &err), 0); /* absent: still fine */
	errno = 0;
	ck_assert_int_eq(store_open_blob(st, sha256, &size, &err), -1);
	ck_assert_int_eq(errno, ENOENT);
	free(err);
}
END_TEST

/* The local backend has no redirect URL: NULL and no error, so callers use sendfile. */
START_TEST(test_blob_url_local)
{
	unsigned char sha256[32], missing[32] = {0x01};
	char *err = NULL, *url;

	put("served locally", 14, 14, sha256, NULL);
	url = store_blob_url(st, sha256, "bundle.tar.gz", &err);
	ck_assert_ptr_null(url);
	ck_assert_ptr_null(err);
	url = store_blob_url(st, missing, NULL, &err);
	ck_assert_ptr_null(url);
	ck_assert_ptr_null(err);
}
END_TEST

START_TEST(test_space_and_probe)
{
	uint64_t free_bytes = 0, total = 0;
	char *err = NULL;

	ck_assert_int_eq(store_space(st, &free_bytes, &total, &err), 0);
	ck_assert_uint_gt(total, 0);
	ck_assert_uint_le(free_bytes, total);
	ck_assert_int_eq(store_probe(st, &err), 0);
	ck_assert_int_eq(count_tmp(), 0);
}
END_TEST

START_TEST(test_open_fails_cleanly)
{
	char *err = NULL;
	struct store *bad = store_open_local("/proc/version/store", &err);

	ck_assert_ptr_null(bad);
	ck_assert_ptr_nonnull(err);
	free(err);
	store_free(NULL);
}
END_TEST

static unsigned char race_data[256 * 1024];

struct racer {
	int ok;
	unsigned char sha256[32];
};

/* Each thread puts the same 256 KiB: renames over one name must all succeed. */
static void *
race(void *arg)
{
	struct racer *r = arg;
	const unsigned char *data = race_data;
	struct store_writer *w;
	char *err = NULL;

	if ((w = store_writer_new(st, &err)) == NULL)
		return NULL;
	for (size_t off = 0; off < sizeof(race_data); off += 4096)
		if (store_writer_write(w, data + off, 4096, &err) != 0) {
			store_writer_abort(w);
			return NULL;
		}
	r->ok = store_writer_commit(w, r->sha256, NULL, &err) == 0;
	free(err);
	return NULL;
}

START_TEST(test_concurrent_same_blob)
{
	pthread_t t[8];
	struct racer r[8];
	char dir[400], hex[65];

	memset(r, 0, sizeof(r));
	for (size_t i = 0; i < sizeof(race_data); i++)
		race_data[i] = (unsigned char)(i * 31);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 8; i++) {
		ck_assert_msg(r[i].ok, "thread %d failed", i);
		ck_assert(memcmp(r[i].sha256, r[0].sha256, 32) == 0);
	}
	hex_encode(r[0].sha256, 32, hex);
	snprintf(dir, sizeof(dir), "%s/objects/%.2s/%.2s", root, hex, hex + 2);
	ck_assert_int_eq(count_files(dir), 1);
	ck_assert_int_eq(count_tmp(), 0);
}
END_TEST

/* What a listing saw. */
struct seen {
	unsigned char sha256[8][32];
	uint64_t size[8];
	int64_t mtime[8];
	int n;
	int stop_after; /* 0: never stop */
};

/* store_list's callback: records, and stops after stop_after blobs when asked. */
static int
on_listed(void *arg, const unsigned char sha256[32], uint64_t size, int64_t mtime_s)
{
	struct seen *s = arg;

	ck_assert_int_lt(s->n, 8);
	memcpy(s->sha256[s->n], sha256, 32);
	s->size[s->n] = size;
	s->mtime[s->n] = mtime_s;
	s->n++;
	return s->stop_after > 0 && s->n >= s->stop_after;
}

/* Index of sha256 in a listing, or -1. */
static int
seen_find(const struct seen *s, const unsigned char sha256[32])
{
	for (int i = 0; i < s->n; i++)
		if (memcmp(s->sha256[i], sha256, 32) == 0)
			return i;
	return -1;
}

/* Creates a file (mode 0644) with the given bytes. */
static void
write_file(const char *path, const char *bytes)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
	close(fd);
}

/* Sets a file's times to when. */
static void
set_mtime(const char *path, time_t when)
{
	struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};

	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* The listing has every blob once with its size and mtime, and nothing else: not the
 * temp files of writes in progress, not strangers in the fan-out folders. */
START_TEST(test_list)
{
	unsigned char a[32], b[32];
	struct store_writer *w;
	struct seen seen = {0};
	char *err = NULL, hex[65], path[500];
	struct stat sb;

	put("blob a", 6, 6, a, NULL);
	put("blob bb", 7, 7, b, NULL);
	w = store_writer_new(st, &err); /* in flight: only in tmp/ */
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(store_writer_write(w, "partial", 7, &err), 0);
	hex_encode(a, 32, hex);
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/%s.gc-1", root, hex, hex + 2, hex);
	write_file(path, "aside");
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/README", root, hex, hex + 2);
	write_file(path, "not a blob");
	/* A 64-hex name in the wrong folder is not a blob either (never opened there). */
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/%064d", root, hex, hex + 2, 0);
	write_file(path, "misplaced");
	snprintf(path, sizeof(path), "%s/objects/zz", root);
	ck_assert_int_eq(mkdir(path, 0755), 0);

	ck_assert_int_eq(store_list(st, on_listed, &seen, &err), 0);
	ck_assert_int_eq(seen.n, 2);
	int ia = seen_find(&seen, a), ib = seen_find(&seen, b);
	ck_assert_int_ge(ia, 0);
	ck_assert_int_ge(ib, 0);
	ck_assert_uint_eq(seen.size[ia], 6);
	ck_assert_uint_eq(seen.size[ib], 7);
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/%s", root, hex, hex + 2, hex);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(seen.mtime[ia], (int64_t)sb.st_mtime);

	/* A blob moved aside by a collection at work (ctime now) is left alone. */
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/%s.gc-1", root, hex, hex + 2, hex);
	ck_assert_int_eq(stat(path, &sb), 0);

	/* The callback stops the walk. */
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 1;
	ck_assert_int_eq(store_list(st, on_listed, &seen, &err), 1);
	ck_assert_int_eq(seen.n, 1);
	store_writer_abort(w);
}
END_TEST

/* A put of bytes already stored makes the blob young again; store_delete_old keeps young
 * blobs and deletes old ones, and an absent blob is "kept" (0), not an error. */
START_TEST(test_reuse_refreshes_and_delete_old)
{
	unsigned char a[32];
	char *err = NULL, hex[65], path[500];
	struct stat sb;
	time_t old = time(NULL) - 7200;

	put("reused", 6, 6, a, NULL);
	hex_encode(a, 32, hex);
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s/%s", root, hex, hex + 2, hex);
	set_mtime(path, old);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mtime, old);
	put("reused", 6, 6, a, NULL);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_ge(sb.st_mtime, time(NULL) - 60);
	ck_assert_int_eq(count_tmp(), 0);

	ck_assert_int_eq(store_delete_old(st, a, 3600, &err), 0); /* young: kept */
	ck_assert(store_exists(st, a));
	set_mtime(path, old);
	ck_assert_int_eq(store_delete_old(st, a, 3600, &err), 1);
	ck_assert(!store_exists(st, a));
	snprintf(path, sizeof(path), "%s/objects/%.2s/%.2s", root, hex, hex + 2);
	ck_assert_int_eq(count_files(path), 0); /* nothing left aside */
	snprintf(path, sizeof(path), "%s/gc", root);
	ck_assert_int_eq(count_files(path), 0);
	ck_assert_int_eq(store_delete_old(st, a, 0, &err), 0); /* absent */
}
END_TEST

/* Path of the blob with this sha256 in the fixture's store. */
static void
blob_file(const unsigned char sha256[32], char *path, size_t n)
{
	char hex[65];

	hex_encode(sha256, 32, hex);
	snprintf(path, n, "%s/objects/%.2s/%.2s/%s", root, hex, hex + 2, hex);
}

/* store_touch makes an old blob young (what a writer does just before the commit of the
 * row that names it); a blob that is gone fails with ENOENT, and store_touch_all says
 * which one. */
START_TEST(test_touch)
{
	unsigned char a[32], b[32], c[32], all[3][32];
	char *err = NULL, path[500];
	struct stat sb;
	size_t failed = 99;

	put("touch a", 7, 7, a, NULL);
	put("touch b", 7, 7, b, NULL);
	put("touch c", 7, 7, c, NULL);
	blob_file(a, path, sizeof path);
	set_mtime(path, time(NULL) - 7200);
	ck_assert_int_eq(store_touch(st, a, &err), 0);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_ge(sb.st_mtime, time(NULL) - 60);
	ck_assert_int_eq(store_delete_old(st, a, 3600, &err), 0); /* young again: kept */
	ck_assert(store_exists(st, a));

	memcpy(all[0], a, 32);
	memcpy(all[1], b, 32);
	memcpy(all[2], c, 32);
	ck_assert_int_eq(store_touch_all(st, (const unsigned char(*)[32])all, 3, &failed, &err), 0);
	blob_file(b, path, sizeof path);
	ck_assert_int_eq(unlink(path), 0); /* collected before the row committed */
	errno = 0;
	ck_assert_int_eq(
	    store_touch_all(st, (const unsigned char(*)[32])all, 3, &failed, &err), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_uint_eq(failed, 1);
	ck_assert_ptr_nonnull(strstr(err, "not found"));
	free(err);
	err = NULL;
	errno = 0;
	ck_assert_int_eq(store_touch(st, b, &err), -1);
	ck_assert_int_eq(errno, ENOENT);
	free(err);
}
END_TEST

/* The in-flight guarantee: a blob old when a collection listed it, reused (touched or
 * written again) before the deletion, survives store_delete_old; nothing is left in gc/. */
START_TEST(test_listed_old_then_reused)
{
	unsigned char a[32], b[32];
	struct seen seen = {0};
	char *err = NULL, path[500];
	time_t old = time(NULL) - 7200;

	put("listed a", 8, 8, a, NULL);
	put("listed b", 8, 8, b, NULL);
	blob_file(a, path, sizeof path);
	set_mtime(path, old);
	blob_file(b, path, sizeof path);
	set_mtime(path, old);
	ck_assert_int_eq(store_list(st, on_listed, &seen, &err), 0);
	ck_assert_int_eq(seen.n, 2);
	ck_assert_int_eq(seen.mtime[0], (int64_t)old); /* both judged old by the listing */
	ck_assert_int_eq(seen.mtime[1], (int64_t)old);
	ck_assert_int_eq(store_touch(st, a, &err), 0); /* an upload's touch before commit */
	put("listed b", 8, 8, b, NULL); /* a cook writing the same bytes */
	ck_assert_int_eq(store_delete_old(st, a, 3600, &err), 0);
	ck_assert_int_eq(store_delete_old(st, b, 3600, &err), 0);
	ck_assert(store_exists(st, a));
	ck_assert(store_exists(st, b));
	snprintf(path, sizeof path, "%s/gc", root);
	ck_assert_int_eq(count_files(path), 0);
}
END_TEST

/* A collector that died between moving a blob aside and deciding leaves it in gc/: the
 * next reader (open_blob, exists, touch) puts it back, and so does opening the store; a
 * leftover whose blob was written again meanwhile is dropped at open. */
START_TEST(test_recover_aside)
{
	unsigned char a[32];
	char *err = NULL, path[500], aside[600], hex[65];
	uint64_t size = 0;
	struct stat sb;
	int fd;

	put("hidden", 6, 6, a, NULL);
	hex_encode(a, 32, hex);
	blob_file(a, path, sizeof path);
	snprintf(aside, sizeof aside, "%s/gc/%s.gc-4242-deadbeef", root, hex);

	ck_assert_int_eq(rename(path, aside), 0);
	ck_assert(store_exists(st, a));
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_ne(stat(aside, &sb), 0);

	ck_assert_int_eq(rename(path, aside), 0);
	fd = store_open_blob(st, a, &size, &err);
	ck_assert_msg(fd >= 0, "open: %s", err);
	ck_assert_uint_eq(size, 6);
	close(fd);

	ck_assert_int_eq(rename(path, aside), 0);
	ck_assert_int_eq(store_touch(st, a, &err), 0);
	ck_assert_int_eq(stat(path, &sb), 0);

	/* The older layout: aside in the blob's own folder. */
	char leaf[600];
	snprintf(leaf, sizeof leaf, "%s.gc-77", path);
	ck_assert_int_eq(rename(path, leaf), 0);
	ck_assert(store_exists(st, a));
	ck_assert_int_ne(stat(leaf, &sb), 0);

	/* At open. */
	ck_assert_int_eq(rename(path, aside), 0);
	store_free(st);
	st = store_open_local(root, &err);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_ne(stat(aside, &sb), 0);
	/* A leftover whose name is taken again: dropped (the same bytes are there). */
	char copy[1300];
	snprintf(copy, sizeof copy, "cp '%s' '%s'", path, aside);
	ck_assert_int_eq(system(copy), 0);
	store_free(st);
	st = store_open_local(root, &err);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_ne(stat(aside, &sb), 0);
	snprintf(path, sizeof path, "%s/gc", root);
	ck_assert_int_eq(count_files(path), 0);
}
END_TEST

/* The identity: none at first, created once (a second creator gets the first's), read
 * back; a damaged ID file is an error, never silently replaced. */
START_TEST(test_identity)
{
	char id[33], id2[33], *err = NULL, path[400];

	ck_assert_int_eq(store_get_id(st, id, &err), 0);
	ck_assert_int_eq(store_create_id(st, "0123456789abcdef0123456789abcdef", id, &err), 0);
	ck_assert_str_eq(id, "0123456789abcdef0123456789abcdef");
	ck_assert_int_eq(store_create_id(st, "ffffffffffffffffffffffffffffffff", id2, &err), 0);
	ck_assert_str_eq(id2, id);
	ck_assert_int_eq(store_get_id(st, id2, &err), 1);
	ck_assert_str_eq(id2, id);
	ck_assert_int_eq(count_tmp(), 0);
	ck_assert_int_eq(store_check_gc(st, &err), 0);
	snprintf(path, sizeof path, "%s/ID", root);
	write_file(path, "not an id\n");
	ck_assert_int_eq(store_get_id(st, id2, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "not an identity"));
	free(err);
}
END_TEST

/* --- A memory-backed fake backend: the shape an S3 backend would have (no fd, a URL). */

struct mem_blob {
	unsigned char sha256[32];
	char *data;
	size_t len;
};

struct mem {
	struct mem_blob blobs[8];
	int nblobs;
	bool fail_write, fail_commit;
	/* What the generic layer handed the backend, and how often each op ran. */
	unsigned char last_sha256[32];
	uint64_t last_size;
	int news, writes, commits, aborts, exists, deletes, urls, probes, frees, lists;
};

struct mem_writer {
	char *data;
	size_t len;
};

static struct mem mem;

/* Finds a stored blob, or NULL. */
static struct mem_blob *
mem_find(struct mem *m, const unsigned char sha256[32])
{
	for (int i = 0; i < m->nblobs; i++)
		if (memcmp(m->blobs[i].sha256, sha256, 32) == 0)
			return &m->blobs[i];
	return NULL;
}

/* Starts an in-memory put. */
static void *
mem_writer_new(void *be, char **errstr)
{
	struct mem *m = be;

	(void)errstr;
	m->news++;
	return xcalloc(1, sizeof(struct mem_writer));
}

/* Appends, or fails on demand like a full disk. */
static int
mem_writer_write(void *be, void *bw, const void *data, size_t len, char **errstr)
{
	struct mem *m = be;
	struct mem_writer *w = bw;

	m->writes++;
	if (m->fail_write) {
		*errstr = xstrdup("no space left on device");
		errno = ENOSPC;
		return -1;
	}
	w->data = xrealloc(w->data, w->len + len);
	memcpy(w->data + w->len, data, len);
	w->len += len;
	return 0;
}

/* Stores the bytes under the sha256 the generic layer computed (dedup like the local one). */
static int
mem_writer_commit(void *be, void *bw, const unsigned char sha256[32], uint64_t size, char **errstr)
{
	struct mem *m = be;
	struct mem_writer *w = bw;

	m->commits++;
	memcpy(m->last_sha256, sha256, 32);
	m->last_size = size;
	if (m->fail_commit || m->nblobs == (int)BV_NELEM(m->blobs)) {
		*errstr = xstrdup("no space left on device");
		free(w->data);
		free(w);
		errno = ENOSPC;
		return -1;
	}
	if (mem_find(m, sha256) == NULL) {
		struct mem_blob *b = &m->blobs[m->nblobs++];
		memcpy(b->sha256, sha256, 32);
		b->data = w->data;
		b->len = w->len;
		w->data = NULL;
	}
	free(w->data);
	free(w);
	return 0;
}

/* Drops an in-memory put. */
static void
mem_writer_abort(void *be, void *bw)
{
	struct mem *m = be;
	struct mem_writer *w = bw;

	m->aborts++;
	free(w->data);
	free(w);
}

/* A URL naming the blob and the download name, as a presigned GET would. */
static char *
mem_blob_url(void *be, const unsigned char sha256[32], const char *filename, char **errstr)
{
	struct mem *m = be;
	char hex[65];

	m->urls++;
	hex_encode(sha256, 32, hex);
	if (mem_find(m, sha256) == NULL) {
		*errstr = xasprintf("blob %s not found", hex);
		errno = ENOENT;
		return NULL;
	}
	return xasprintf("mem://%s?filename=%s", hex, filename != NULL ? filename : "");
}

/* Presence in the table. */
static bool
mem_exists(void *be, const unsigned char sha256[32])
{
	struct mem *m = be;

	m->exists++;
	return mem_find(m, sha256) != NULL;
}

/* Removes by swapping in the last blob; absent is fine. */
static int
mem_delete(void *be, const unsigned char sha256[32], char **errstr)
{
	struct mem *m = be;
	struct mem_blob *b = mem_find(m, sha256);

	(void)errstr;
	m->deletes++;
	if (b != NULL) {
		free(b->data);
		*b = m->blobs[--m->nblobs];
	}
	return 0;
}

/* Lists the table; the callback may stop it. mtime is not kept: 0. */
static int
mem_list(void *be, store_list_cb cb, void *arg, char **errstr)
{
	struct mem *m = be;

	(void)errstr;
	m->lists++;
	for (int i = 0; i < m->nblobs; i++)
		if (cb(arg, m->blobs[i].sha256, m->blobs[i].len, 0) != 0)
			return 1;
	return 0;
}

/* Always writable. */
static int
mem_probe(void *be, char **errstr)
{
	struct mem *m = be;

	(void)errstr;
	m->probes++;
	return 0;
}

/* Frees the stored bytes; the struct itself is static. */
static void
mem_free(void *be)
{
	struct mem *m = be;

	m->frees++;
	for (int i = 0; i < m->nblobs; i++)
		free(m->blobs[i].data);
	m->nblobs = 0;
}

/* open_blob, delete_old, clean_tmp and space left out: the generic defaults must answer
 * for them. */
static const struct store_backend_ops mem_ops = {
    .name = "mem",
    .writer_new = mem_writer_new,
    .writer_write = mem_writer_write,
    .writer_commit = mem_writer_commit,
    .writer_abort = mem_writer_abort,
    .blob_url = mem_blob_url,
    .exists = mem_exists,
    .delete = mem_delete,
    .list = mem_list,
    .probe = mem_probe,
    .free = mem_free,
};

/* A store over the fake, with clean counters per test. */
static void
mem_setup(void)
{
	memset(&mem, 0, sizeof(mem));
	st = store_open_backend(&mem_ops, &mem);
	ck_assert_ptr_nonnull(st);
}

/* store_free must reach the backend's free op exactly once. */
static void
mem_teardown(void)
{
	store_free(st);
	st = NULL;
	ck_assert_int_eq(mem.frees, 1);
}

/* A put reaches the fake's writer ops, hashed by the generic layer: the fake is told the
 * sha256 and size, and the caller gets sha256 + sha1 of "abc". */
START_TEST(test_fake_put_hashes)
{
	unsigned char sha256[32], sha1[20];
	char hex[65];

	put("abc", 3, 1, sha256, sha1);
	ck_assert_int_eq(mem.news, 1);
	ck_assert_int_eq(mem.writes, 3);
	ck_assert_int_eq(mem.commits, 1);
	hex_encode(sha256, 32, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_encode(sha1, 20, hex);
	ck_assert_str_eq(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
	ck_assert(memcmp(mem.last_sha256, sha256, 32) == 0);
	ck_assert_uint_eq(mem.last_size, 3);
	ck_assert_int_eq(mem.nblobs, 1);
	ck_assert_uint_eq(mem.blobs[0].len, 3);
	ck_assert(memcmp(mem.blobs[0].data, "abc", 3) == 0);

	put("abc", 3, 3, sha256, NULL); /* dedup is the backend's business */
	ck_assert_int_eq(mem.commits, 2);
	ck_assert_int_eq(mem.nblobs, 1);
}
END_TEST

/* Reads, URLs, exists, delete, probe go to the fake; the ops it lacks get the defaults. */
START_TEST(test_fake_reads_and_defaults)
{
	unsigned char sha256[32], missing[32] = {0x02};
	uint64_t size = 7, free_bytes = 0, total = 0;
	char *err = NULL, *url;

	put("abc", 3, 3, sha256, NULL);
	ck_assert(store_exists(st, sha256));
	ck_assert(!store_exists(st, missing));
	ck_assert_int_eq(mem.exists, 2);

	url = store_blob_url(st, sha256, "b.tar.gz", &err);
	ck_assert_ptr_null(err);
	ck_assert_str_eq(url,
	    "mem://ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	    "?filename=b.tar.gz");
	free(url);
	errno = 0;
	url = store_blob_url(st, missing, NULL, &err);
	ck_assert_ptr_null(url);
	ck_assert_ptr_nonnull(err);
	ck_assert_int_eq(errno, ENOENT);
	free(err);
	err = NULL;
	ck_assert_int_eq(mem.urls, 2);

	/* No open_blob op: ENOTSUP tells callers to redirect instead. */
	errno = 0;
	ck_assert_int_eq(store_open_blob(st, sha256, &size, &err), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "mem"));
	free(err);
	err = NULL;
	ck_assert_uint_eq(size, 7);

	errno = 0;
	ck_assert_int_eq(store_space(st, &free_bytes, &total, &err), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	free(err);
	err = NULL;
	ck_assert_int_eq(store_clean_tmp(st, 0, &err), 0);
	ck_assert_int_eq(store_probe(st, &err), 0);
	ck_assert_int_eq(mem.probes, 1);

	struct seen seen = {0};
	ck_assert_int_eq(store_list(st, on_listed, &seen, &err), 0);
	ck_assert_int_eq(mem.lists, 1);
	ck_assert_int_eq(seen.n, 1);
	ck_assert(memcmp(seen.sha256[0], sha256, 32) == 0);
	ck_assert_uint_eq(seen.size[0], 3);

	ck_assert_int_eq(store_delete(st, sha256, &err), 0);
	ck_assert_int_eq(mem.deletes, 1);
	ck_assert(!store_exists(st, sha256));
	ck_assert_int_eq(mem.nblobs, 0);

	/* No delete_old op: no fallback to a plain delete (it would trust a stale listing),
	 * no touch, no identity: ENOTSUP, and garbage collection is refused. */
	put("abc", 3, 3, sha256, NULL);
	errno = 0;
	ck_assert_int_eq(store_delete_old(st, sha256, 3600, &err), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	free(err);
	err = NULL;
	ck_assert_int_eq(mem.deletes, 1);
	ck_assert_int_eq(mem.nblobs, 1);
	errno = 0;
	ck_assert_int_eq(store_touch(st, sha256, &err), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	free(err);
	err = NULL;
	char id[33];
	ck_assert_int_eq(store_get_id(st, id, &err), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	free(err);
	err = NULL;
	ck_assert_int_eq(store_check_gc(st, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "mem store cannot delete a blob only when it is old"));
	free(err);
}
END_TEST

/* A backend without a list op: GC gets ENOTSUP, not a crash. */
START_TEST(test_fake_no_list)
{
	static struct store_backend_ops ops;
	struct store *s2;
	struct seen seen = {0};
	char *err = NULL;

	ops = mem_ops;
	ops.list = NULL;
	s2 = store_open_backend(&ops, &mem);
	errno = 0;
	ck_assert_int_eq(store_list(s2, on_listed, &seen, &err), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "list"));
	free(err);
	free(s2); /* not store_free: the fixture's store owns mem */
}
END_TEST

/* Failures come back with the backend's message and errno; abort reaches the backend. */
START_TEST(test_fake_failures)
{
	struct store_writer *w;
	unsigned char sha256[32] = {0x5a}, keep[32] = {0x5a};
	char *err = NULL;

	w = store_writer_new(st, &err);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(store_writer_write(w, "ok", 2, &err), 0);
	mem.fail_write = true;
	errno = 0;
	ck_assert_int_eq(store_writer_write(w, "more", 4, &err), -1);
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_str_eq(err, "no space left on device");
	free(err);
	err = NULL;
	ck_assert_uint_eq(store_writer_size(w), 2); /* refused bytes are not counted */
	store_writer_abort(w);
	ck_assert_int_eq(mem.aborts, 1);
	ck_assert_int_eq(mem.commits, 0);

	mem.fail_write = false;
	mem.fail_commit = true;
	w = store_writer_new(st, &err);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(store_writer_write(w, "abc", 3, &err), 0);
	errno = 0;
	ck_assert_int_eq(store_writer_commit(w, sha256, NULL, &err), -1);
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_str_eq(err, "no space left on device");
	free(err);
	ck_assert(memcmp(sha256, keep, 32) == 0); /* not filled on failure */
	ck_assert_int_eq(mem.nblobs, 0);
}
END_TEST

static Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("local");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_put_layout_and_hashes);
	tcase_add_test(tc, test_put_large_matches_openssl);
	tcase_add_test(tc, test_dedup);
	tcase_add_test(tc, test_empty_blob);
	tcase_add_test(tc, test_abort_leaves_nothing);
	tcase_add_test(tc, test_clean_tmp);
	tcase_add_test(tc, test_clean_tmp_dead_writer);
	tcase_add_test(tc, test_open_exists_delete);
	tcase_add_test(tc, test_blob_url_local);
	tcase_add_test(tc, test_space_and_probe);
	tcase_add_test(tc, test_open_fails_cleanly);
	tcase_add_test(tc, test_concurrent_same_blob);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_reuse_refreshes_and_delete_old);
	tcase_add_test(tc, test_touch);
	tcase_add_test(tc, test_listed_old_then_reused);
	tcase_add_test(tc, test_recover_aside);
	tcase_add_test(tc, test_identity);
	suite_add_tcase(s, tc);

	tc = tcase_create("backend");
	tcase_add_checked_fixture(tc, mem_setup, mem_teardown);
	tcase_add_test(tc, test_fake_put_hashes);
	tcase_add_test(tc, test_fake_reads_and_defaults);
	tcase_add_test(tc, test_fake_failures);
	tcase_add_test(tc, test_fake_no_list);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
