/* check_store.c: the local blob store in a temp folder: hashes, layout, modes, dedup,
 * abort, temp cleanup, reads, deletes, concurrent writers. */
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

#include <openssl/evp.h>

#include "shared/store.h"

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

static int
count_tmp(void)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/tmp", root);
	return count_files(path);
}

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
	tcase_add_test(tc, test_open_exists_delete);
	tcase_add_test(tc, test_space_and_probe);
	tcase_add_test(tc, test_open_fails_cleanly);
	tcase_add_test(tc, test_concurrent_same_blob);
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
