/* check_tar.c: the bundle writer (worker/tarball.c) gives byte-identical tar.gz for the
 * same entries, in the order given, with fixed metadata; GNU tar lists and extracts it;
 * short files and sink errors fail with a message instead of a corrupt bundle. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "shared/util.h"
#include "tests/bundle_fixture.h"
#include "worker/tarball.h"

#define LONG_NAME                                                                                  \
	"a-very-long-file-name-that-does-not-fit-in-the-hundred-bytes-of-a-ustar-name-field-"      \
	"so-pax-must-carry-it.txt"

static const struct sample samples[] = {
    {"", 'd', NULL},
    {"README", 'f', "hello, world\n"},
    {"bin", 'd', NULL},
    {"bin/run.sh", 'x', "#!/bin/sh\necho run\n"},
    {"caf\xc3\xa9.txt", 'f', "unicode name\n"},
    {"data.bin", 'b', NULL},
    {"empty", 'f', ""},
    {"link", 'l', "bin/run.sh"},
    {"src", 'd', NULL},
    {"src/" LONG_NAME, 'f', "long\n"},
    {"src/lib", 'd', NULL},
    {"src/lib/a.c", 'f', "int a;\n"},
    {"vendor", 'd', NULL}, /* a submodule: an empty directory */
    {"zz-dangling", 'l', "../nowhere"},
};

/* Writes the sample tree; returns the tar.gz bytes. */
static char *
write_sample(size_t *len, int threads)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	make_big();
	buf_init(&ms.out);
	struct tarball *tb = tarball_new(6, threads, mem_sink_cb, &ms, &err);
	ck_assert_msg(tb != NULL, "tarball_new: %s", err);
	tarball_set_tick(tb, count_tick, NULL);
	for (size_t i = 0; i < BV_NELEM(samples); i++) {
		const struct sample *s = &samples[i];
		char *path = s->path[0] ? xasprintf(TOP "/%s", s->path) : xstrdup(TOP);
		int r = -1, fd;
		switch (s->type) {
		case 'd':
			r = tarball_add_dir(tb, path, &err);
			break;
		case 'f':
		case 'x':
			fd = fd_with(s->data, strlen(s->data));
			r = tarball_add_file_fd(
			    tb, path, s->type == 'x', strlen(s->data), fd, &err);
			close(fd);
			break;
		case 'b':
			fd = fd_with(big, BIG_SIZE);
			r = tarball_add_file_fd(tb, path, false, BIG_SIZE, fd, &err);
			close(fd);
			break;
		case 'l':
			r = tarball_add_symlink(tb, path, s->data, &err);
			break;
		}
		ck_assert_msg(r == 0, "adding %s: %s", path, err);
		free(path);
	}
	ck_assert_msg(tarball_finish(tb, &err) == 0, "finish: %s", err);
	ck_assert_uint_gt(tarball_tar_bytes(tb), BIG_SIZE);
	tarball_free(tb);
	return buf_steal(&ms.out, len);
}

START_TEST(test_deterministic)
{
	size_t len1, len2, len3;
	char *a = write_sample(&len1, 2);
	char *b = write_sample(&len2, 2);
	char *c = write_sample(&len3, 1);

	ck_assert_uint_gt(len1, 18);
	ck_assert_uint_eq(len1, len2);
	ck_assert_int_eq(memcmp(a, b, len1), 0);
	/* pgzip's output does not depend on the thread count either */
	ck_assert_uint_eq(len1, len3);
	ck_assert_int_eq(memcmp(a, c, len1), 0);
	/* gzip magic, deflate, and no timestamp in the header */
	ck_assert_int_eq((unsigned char)a[0], 0x1f);
	ck_assert_int_eq((unsigned char)a[1], 0x8b);
	ck_assert_int_eq((unsigned char)a[2], 8);
	for (int i = 4; i < 8; i++)
		ck_assert_int_eq((unsigned char)a[i], 0);
	/* the big file was read in several chunks, each one a tick */
	ck_assert_int_ge(ticks, 3);
	free(a);
	free(b);
	free(c);
}
END_TEST

/* Reads the archive back with libarchive: order, types, modes and fixed metadata. */
START_TEST(test_entries)
{
	size_t len;
	char *gz = write_sample(&len, 2);
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	size_t i = 0;

	archive_read_support_filter_gzip(a);
	archive_read_support_format_tar(a);
	ck_assert_int_eq(archive_read_open_memory(a, gz, len), ARCHIVE_OK);
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		ck_assert_uint_lt(i, BV_NELEM(samples));
		const struct sample *s = &samples[i];
		char *want = s->path[0] ? xasprintf(TOP "/%s", s->path) : xstrdup(TOP);
		const char *got = archive_entry_pathname(e);
		size_t gl = strlen(got);
		if (s->type == 'd') {
			/* directories carry a trailing slash */
			ck_assert_uint_gt(gl, 0);
			ck_assert_int_eq(got[gl - 1], '/');
			gl--;
		}
		ck_assert_msg(gl == strlen(want) && memcmp(got, want, gl) == 0,
		    "entry %zu: got %s want %s", i, got, want);
		ck_assert_int_eq(archive_entry_mtime(e), TARBALL_MTIME);
		ck_assert_int_eq(archive_entry_uid(e), 0);
		ck_assert_int_eq(archive_entry_gid(e), 0);
		ck_assert(archive_entry_uname(e) == NULL || archive_entry_uname(e)[0] == 0);
		ck_assert(archive_entry_gname(e) == NULL || archive_entry_gname(e)[0] == 0);
		ck_assert_int_eq(archive_entry_atime_is_set(e), 0);
		ck_assert_int_eq(archive_entry_ctime_is_set(e), 0);

		const char *data = s->type == 'b' ? (const char *)big : s->data;
		size_t dlen = s->type == 'b' ? BIG_SIZE : (data ? strlen(data) : 0);
		switch (s->type) {
		case 'd':
			ck_assert_int_eq(archive_entry_filetype(e), AE_IFDIR);
			ck_assert_int_eq(archive_entry_perm(e), 0755);
			break;
		case 'l':
			ck_assert_int_eq(archive_entry_filetype(e), AE_IFLNK);
			ck_assert_int_eq(archive_entry_perm(e), 0777);
			ck_assert_str_eq(archive_entry_symlink(e), s->data);
			break;
		default: {
			ck_assert_int_eq(archive_entry_filetype(e), AE_IFREG);
			ck_assert_int_eq(archive_entry_perm(e), s->type == 'x' ? 0755 : 0644);
			ck_assert_int_eq(archive_entry_size(e), (int64_t)dlen);
			char *body = xmalloc(dlen + 1);
			ck_assert_int_eq(archive_read_data(a, body, dlen + 1), (ssize_t)dlen);
			ck_assert_int_eq(memcmp(body, data, dlen), 0);
			free(body);
		}
		}
		free(want);
		i++;
	}
	ck_assert_msg(
	    r == ARCHIVE_EOF, "read stopped at entry %zu: %s", i, archive_error_string(a));
	ck_assert_uint_eq(i, BV_NELEM(samples));
	ck_assert_int_eq(archive_read_free(a), ARCHIVE_OK);
	free(gz);
}
END_TEST

/* GNU tar's own listing: order, modes, owners, date and the symlink. */
START_TEST(test_gnu_tar_list)
{
	size_t len;
	char *gz = write_sample(&len, 2);
	char *dir = make_tmpdir();
	char *file = save(dir, "b.tar.gz", gz, len);
	char *cmd = xasprintf("TZ=UTC LC_ALL=C tar tvzf '%s' 2>&1", file);
	FILE *p = popen(cmd, "r");
	char line[1024];
	size_t i = 0;

	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof line, p) != NULL) {
		char perms[16], owner[64], date[16], hhmm[16], name[512];
		long long size;
		ck_assert_uint_lt(i, BV_NELEM(samples));
		const struct sample *s = &samples[i];
		ck_assert_msg(sscanf(line, "%15s %63s %lld %15s %15s %511s", perms, owner, &size,
				  date, hhmm, name) == 6,
		    "odd tar line: %s", line);
		ck_assert_str_eq(owner, "0/0");
		ck_assert_str_eq(date, "1980-01-01");
		ck_assert_str_eq(hhmm, "00:00");
		const char *want_perms = ls_perms(s->type);
		ck_assert_str_eq(perms, want_perms);
		if (s->type == 'l') {
			char *arrow = xasprintf(" -> %s\n", s->data);
			ck_assert_msg(strstr(line, arrow) != NULL, "no link target in %s", line);
			free(arrow);
		}
		if (s->type == 'b')
			ck_assert_int_eq(size, BIG_SIZE);
		/* names are compared on the ASCII ones; tar escapes the others */
		if (strchr(s->path, '\xc3') == NULL) {
			char *want = s->path[0]
			    ? xasprintf(TOP "/%s%s", s->path, s->type == 'd' ? "/" : "")
			    : xstrdup(TOP "/");
			ck_assert_str_eq(name, want);
			free(want);
		}
		i++;
	}
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(i, BV_NELEM(samples));
	remove_tree(dir);
	free(cmd);
	free(file);
	free(dir);
	free(gz);
}
END_TEST

/* GNU tar extracts the right bytes, modes and links, with no warning. */
START_TEST(test_gnu_tar_extract)
{
	size_t len;
	char *gz = write_sample(&len, 2);
	char *dir = make_tmpdir();
	char *file = save(dir, "b.tar.gz", gz, len);
	char *cmd = xasprintf("cd '%s' && gzip -t b.tar.gz && tar xzf b.tar.gz 2>err.txt", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	char *errpath = xasprintf("%s/err.txt", dir);
	size_t elen;
	char *errs = slurp(errpath, &elen);
	ck_assert_msg(elen == 0, "tar complained: %s", errs);
	free(errs);
	free(errpath);

	for (size_t i = 0; i < BV_NELEM(samples); i++) {
		const struct sample *s = &samples[i];
		char *path = xasprintf("%s/" TOP "/%s", dir, s->path);
		struct stat st;
		ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
		if (s->type == 'd') {
			ck_assert(S_ISDIR(st.st_mode));
		} else if (s->type == 'l') {
			char target[256];
			ssize_t n = readlink(path, target, sizeof target - 1);
			ck_assert(S_ISLNK(st.st_mode));
			ck_assert_int_gt(n, 0);
			target[n] = 0;
			ck_assert_str_eq(target, s->data);
		} else {
			size_t flen;
			char *data = slurp(path, &flen);
			const char *want = s->type == 'b' ? (const char *)big : s->data;
			size_t wlen = s->type == 'b' ? BIG_SIZE : strlen(s->data);
			ck_assert(S_ISREG(st.st_mode));
			ck_assert_int_eq((st.st_mode & 0100) != 0, s->type == 'x');
			ck_assert_uint_eq(flen, wlen);
			ck_assert_int_eq(memcmp(data, want, wlen), 0);
			ck_assert_int_eq(st.st_mtime, TARBALL_MTIME);
			free(data);
		}
		free(path);
	}
	remove_tree(dir);
	free(file);
	free(dir);
	free(gz);
}
END_TEST

/* A blob shorter than its recorded length is an error, not a zero-padded file. */
START_TEST(test_short_file)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new(6, 2, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	int fd = fd_with("abc", 3);
	ck_assert_int_eq(tarball_add_file_fd(tb, TOP "/short.txt", false, 10, fd, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "short.txt"));
	ck_assert_ptr_nonnull(strstr(err, "3 of 10 bytes"));
	free(err);
	err = NULL;
	/* the stream is dead after that */
	ck_assert_int_eq(tarball_finish(tb, &err), -1);
	free(err);
	close(fd);
	tarball_free(tb);
	buf_free(&ms.out);
}
END_TEST

/* The sink's refusal (the bundle size cap) comes back in the sink's own words. */
START_TEST(test_sink_error)
{
	struct mem_sink ms = {.limit = 4096};
	char *err = NULL;
	int r = 0;

	make_big();
	buf_init(&ms.out);
	struct tarball *tb = tarball_new(6, 2, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	r = tarball_add_dir(tb, TOP, &err);
	if (r == 0) {
		int fd = fd_with(big, BIG_SIZE);
		r = tarball_add_file_fd(tb, TOP "/big", false, BIG_SIZE, fd, &err);
		close(fd);
	}
	if (r == 0)
		r = tarball_finish(tb, &err);
	ck_assert_int_eq(r, -1);
	ck_assert_str_eq(err, "bundle exceeds the size limit of 4096 bytes");
	ck_assert_uint_le(ms.out.len, 4096);
	free(err);
	tarball_free(tb);
	buf_free(&ms.out);
}
END_TEST

/* Freeing before finish sends nothing more to the sink. */
START_TEST(test_abandon)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new(6, 2, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	size_t before = ms.out.len;
	tarball_free(tb);
	ck_assert_uint_eq(ms.out.len, before);
	buf_free(&ms.out);
}
END_TEST

/* An empty tree is just the top folder, and still a valid tar.gz. */
START_TEST(test_empty_tree)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new(1, 2, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	ck_assert_int_eq(tarball_finish(tb, &err), 0);
	/* one header and two end blocks */
	ck_assert_uint_eq(tarball_tar_bytes(tb), 3 * 512);
	tarball_free(tb);

	struct archive *a = archive_read_new();
	struct archive_entry *e;
	archive_read_support_filter_gzip(a);
	archive_read_support_format_tar(a);
	ck_assert_int_eq(archive_read_open_memory(a, ms.out.data, ms.out.len), ARCHIVE_OK);
	ck_assert_int_eq(archive_read_next_header(a, &e), ARCHIVE_OK);
	ck_assert_str_eq(archive_entry_pathname(e), TOP "/");
	ck_assert_int_eq(archive_read_next_header(a, &e), ARCHIVE_EOF);
	archive_read_free(a);
	buf_free(&ms.out);
}
END_TEST

START_TEST(test_level_map)
{
	ck_assert_int_eq(tarball_pgzip_level(0), 1);
	ck_assert_int_eq(tarball_pgzip_level(1), 1);
	ck_assert_int_eq(tarball_pgzip_level(6), 6);
	ck_assert_int_eq(tarball_pgzip_level(9), 9);
	ck_assert_int_eq(tarball_pgzip_level(12), 12);
	ck_assert_int_eq(tarball_pgzip_level(13), 12);
}
END_TEST

/* A small tree, then the manifest of left-out files beside its top folder. */
static char *
write_manifested(int threads, size_t *len)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new(6, threads, mem_sink_cb, &ms, &err);
	ck_assert_msg(tb != NULL, "new: %s", err);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	ck_assert_int_eq(tarball_add_file_mem(tb, TOP "/a.txt", false, "a\n", 2, &err), 0);
	ck_assert_int_eq(tarball_add_dir(tb, TOP "/sub", &err), 0);
	ck_assert_int_eq(tarball_add_file_mem(tb, TOP "/sub/b.sh", true, "b\n", 2, &err), 0);
	ck_assert_msg(
	    tarball_add_manifest(tb, TOP, MANIFEST, strlen(MANIFEST), &err) == 0, "%s", err);
	ck_assert_int_eq(tarball_finish(tb, &err), 0);
	/* nothing can follow the end of the archive */
	ck_assert_int_eq(tarball_add_manifest(tb, TOP, "x", 1, &err), -1);
	free(err);
	tarball_free(tb);
	return buf_steal(&ms.out, len);
}

/* The manifest is the last entry, at the root beside the top folder, a 0644 file with the
 * fixed metadata; the same entries give the same bytes; tar lists and extracts it. */
START_TEST(test_manifest)
{
	size_t len1, len2;
	char *a = write_manifested(2, &len1);
	char *b = write_manifested(1, &len2);
	ck_assert_uint_eq(len1, len2);
	ck_assert_int_eq(memcmp(a, b, len1), 0);

	check_manifest_bundle(a, len1, false);
	free(a);
	free(b);
}
END_TEST

/* The test table. */
static Suite *
tar_suite(void)
{
	Suite *s = suite_create("tar");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_deterministic);
	tcase_add_test(tc, test_entries);
	tcase_add_test(tc, test_gnu_tar_list);
	tcase_add_test(tc, test_gnu_tar_extract);
	tcase_add_test(tc, test_short_file);
	tcase_add_test(tc, test_sink_error);
	tcase_add_test(tc, test_abandon);
	tcase_add_test(tc, test_empty_tree);
	tcase_add_test(tc, test_manifest);
	tcase_add_test(tc, test_level_map);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite; exit status 1 when a test failed. */
int
main(void)
{
	/* libarchive converts the UTF-8 pax names it reads into the locale's charset */
	setlocale(LC_CTYPE, "C.UTF-8");
	SRunner *sr = srunner_create(tar_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
