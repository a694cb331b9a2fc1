/* check_zip.c: the zip side of the bundle writer (worker/tarball.c, tarball_new_zip): the
 * same entries give byte-identical zips; the central directory holds the fixed times,
 * Info-ZIP's unix modes and the entries in the order given; zipinfo lists them and unzip
 * extracts the right bytes, exec bits, symlinks and times; a host time zone other than UTC,
 * short files and sink errors fail with a message instead of a wrong bundle. */
#include <check.h>
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "shared/util.h"
#include "tests/bundle_fixture.h"
#include "worker/tarball.h"

/* 1980-01-01 00:00:00 as MS-DOS date and time. */
#define DOS_DATE 0x0021
#define DOS_TIME 0x0000

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
    {"src/lib", 'd', NULL},
    {"src/lib/a.c", 'f', "int a;\n"},
    {"vendor", 'd', NULL}, /* a submodule: an empty directory */
    {"zz-dangling", 'l', "../nowhere"},
};

/* The full archive name of a sample. */
static char *
sample_path(const struct sample *s)
{
	return s->path[0] ? xasprintf(TOP "/%s", s->path) : xstrdup(TOP);
}

/* Writes the sample tree; returns the zip bytes. */
static char *
write_sample(size_t *len, int level)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	make_big();
	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(level, mem_sink_cb, &ms, &err);
	ck_assert_msg(tb != NULL, "tarball_new_zip: %s", err);
	tarball_set_tick(tb, count_tick, NULL);
	for (size_t i = 0; i < BV_NELEM(samples); i++) {
		const struct sample *s = &samples[i];
		char *path = sample_path(s);
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
	tarball_free(tb);
	return buf_steal(&ms.out, len);
}

/* Little-endian reads from the zip's bytes. */
static unsigned int
le16(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (unsigned int)u[0] | (unsigned int)u[1] << 8;
}

static uint32_t
le32(const char *p)
{
	return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16;
}

/* One central directory record, as the zip spec lays it out. */
struct cd_entry {
	unsigned int made_by, flags, method, dos_time, dos_date;
	uint32_t external;
	char name[512];
	const char *extra;
	size_t extra_len;
};

/* Reads the central directory (no archive comment, no Zip64 in these small zips). */
static size_t
read_cd(const char *zip, size_t len, struct cd_entry *out, size_t max)
{
	ck_assert_uint_ge(len, 22);
	const char *eocd = zip + len - 22;
	ck_assert_int_eq(memcmp(eocd, "PK\005\006", 4), 0);
	size_t n = le16(eocd + 10);
	size_t off = le32(eocd + 16);
	ck_assert_uint_le(n, max);
	for (size_t i = 0; i < n; i++) {
		const char *p = zip + off;
		ck_assert_uint_lt(off + 46, len);
		ck_assert_int_eq(memcmp(p, "PK\001\002", 4), 0);
		struct cd_entry *e = &out[i];
		e->made_by = le16(p + 4);
		e->flags = le16(p + 8);
		e->method = le16(p + 10);
		e->dos_time = le16(p + 12);
		e->dos_date = le16(p + 14);
		e->external = le32(p + 38);
		size_t nlen = le16(p + 28), xlen = le16(p + 30), clen = le16(p + 32);
		ck_assert_uint_lt(nlen, sizeof e->name);
		memcpy(e->name, p + 46, nlen);
		e->name[nlen] = '\0';
		e->extra = p + 46 + nlen;
		e->extra_len = xlen;
		off += 46 + nlen + xlen + clen;
	}
	return n;
}

/* The mode a sample must carry in the high half of the external attributes. */
static unsigned int
sample_mode(char type)
{
	switch (type) {
	case 'd':
		return 040755;
	case 'x':
		return 0100755;
	case 'l':
		return 0120777;
	default:
		return 0100644;
	}
}

START_TEST(test_deterministic)
{
	size_t len1, len2, len3;
	char *a = write_sample(&len1, 6);
	char *b = write_sample(&len2, 6);
	char *c = write_sample(&len3, 1);

	ck_assert_int_eq(memcmp(a, "PK\003\004", 4), 0);
	ck_assert_uint_eq(len1, len2);
	ck_assert_int_eq(memcmp(a, b, len1), 0);
	/* the level is honoured: level 1 compresses differently */
	ck_assert(len1 != len3 || memcmp(a, c, len1) != 0);
	/* deflate did its work on the text half of the big file */
	ck_assert_uint_lt(len1, BIG_SIZE);
	/* the big file was read in several chunks, each one a tick */
	ck_assert_int_ge(ticks, 3);
	free(a);
	free(b);
	free(c);
}
END_TEST

/* The bytes do not depend on the time the zip is written, only on the entries. */
START_TEST(test_no_clock)
{
	size_t len1, len2;
	char *a = write_sample(&len1, 6);
	sleep(2); /* MS-DOS times count every other second */
	char *b = write_sample(&len2, 6);
	ck_assert_uint_eq(len1, len2);
	ck_assert_int_eq(memcmp(a, b, len1), 0);
	free(a);
	free(b);
}
END_TEST

/* The central directory: order, names, Unix host, modes, fixed times, methods, extras. */
START_TEST(test_central_directory)
{
	size_t len;
	char *zip = write_sample(&len, 6);
	struct cd_entry cd[32];
	size_t n = read_cd(zip, len, cd, BV_NELEM(cd));

	ck_assert_uint_eq(n, BV_NELEM(samples));
	for (size_t i = 0; i < n; i++) {
		const struct sample *s = &samples[i];
		char *path = sample_path(s);
		char *want = s->type == 'd' ? xasprintf("%s/", path) : xstrdup(path);
		ck_assert_str_eq(cd[i].name, want);
		ck_assert_int_eq(cd[i].made_by >> 8, 3); /* Unix */
		ck_assert_int_eq(cd[i].external >> 16, sample_mode(s->type));
		ck_assert_int_eq(cd[i].dos_date, DOS_DATE);
		ck_assert_int_eq(cd[i].dos_time, DOS_TIME);
		/* files deflated, directories and link targets stored */
		ck_assert_int_eq(cd[i].method, strchr("fxb", s->type) ? 8 : 0);
		/* bit 11 (UTF-8 name) only for the non-ASCII name */
		ck_assert_int_eq((cd[i].flags & 0x800) != 0, strchr(s->path, '\xc3') != NULL);
		/* extras: "UT" with the mtime alone, then "ux" with uid/gid 0 */
		ck_assert_uint_eq(cd[i].extra_len, 9 + 15);
		ck_assert_int_eq(memcmp(cd[i].extra, "UT\005\000\001", 5), 0);
		ck_assert_int_eq(le32(cd[i].extra + 5), TARBALL_MTIME);
		ck_assert_int_eq(
		    memcmp(cd[i].extra + 9, "ux\013\000\001\004\0\0\0\0\004\0\0\0\0", 15), 0);
		free(want);
		free(path);
	}
	free(zip);
}
END_TEST

/* Reads the zip back with libarchive: order, types, modes, times and bytes. */
START_TEST(test_entries)
{
	size_t len;
	char *zip = write_sample(&len, 6);
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	size_t i = 0;
	int r;

	archive_read_support_format_zip_seekable(a);
	ck_assert_int_eq(archive_read_open_memory(a, zip, len), ARCHIVE_OK);
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		ck_assert_uint_lt(i, BV_NELEM(samples));
		const struct sample *s = &samples[i];
		char *want = sample_path(s);
		const char *got = archive_entry_pathname(e);
		size_t gl = strlen(got);
		if (s->type == 'd') {
			ck_assert_int_eq(got[gl - 1], '/');
			gl--;
		}
		ck_assert_msg(gl == strlen(want) && memcmp(got, want, gl) == 0,
		    "entry %zu: got %s want %s", i, got, want);
		ck_assert_int_eq(archive_entry_mtime(e), TARBALL_MTIME);
		ck_assert_int_eq(archive_entry_uid(e), 0);
		ck_assert_int_eq(archive_entry_gid(e), 0);

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
			size_t got_len = 0;
			la_ssize_t n;
			while ((n = archive_read_data(a, body + got_len, dlen + 1 - got_len)) > 0)
				got_len += (size_t)n;
			ck_assert_int_eq(n, 0);
			ck_assert_uint_eq(got_len, dlen);
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
	free(zip);
}
END_TEST

/* Info-ZIP's own listing (unzip -Z, zipinfo): order, modes, Unix host, date and names, in
 * a time zone far from UTC (the UT extra field holds the UTC time, so -T shows it in the
 * reader's zone: 1979-12-31 19:00 in New York). */
START_TEST(test_zipinfo)
{
	size_t len;
	char *zip = write_sample(&len, 6);
	char *dir = make_tmpdir();
	char *file = save(dir, "b.zip", zip, len);
	static const char *const zones[] = {"UTC", "EST5"};

	for (size_t z = 0; z < BV_NELEM(zones); z++) {
		char *cmd = xasprintf(
		    "TZ=%s LC_ALL=C unzip -Z -T '%s' | sed -n '/^[-dl]r/p' 2>&1", zones[z], file);
		FILE *p = popen(cmd, "r");
		char line[1024];
		size_t i = 0;

		ck_assert_ptr_nonnull(p);
		while (fgets(line, sizeof line, p) != NULL) {
			char perms[16], ver[16], os[16], kind[16], method[16], when[32], name[512];
			long long size;
			ck_assert_uint_lt(i, BV_NELEM(samples));
			const struct sample *s = &samples[i];
			ck_assert_msg(sscanf(line, "%15s %15s %15s %lld %15s %15s %31s %511s",
					  perms, ver, os, &size, kind, method, when, name) == 8,
			    "odd zipinfo line: %s", line);
			ck_assert_str_eq(perms, ls_perms(s->type));
			ck_assert_str_eq(os, "unx");
			ck_assert_str_eq(when, z == 0 ? "19800101.000000" : "19791231.190000");
			ck_assert_str_eq(method, strchr("fxb", s->type) ? "defN" : "stor");
			if (s->type == 'b')
				ck_assert_int_eq(size, BIG_SIZE);
			if (s->type == 'l')
				ck_assert_int_eq(size, (long long)strlen(s->data));
			if (strchr(s->path, '\xc3') == NULL) {
				char *path = sample_path(s);
				char *want =
				    s->type == 'd' ? xasprintf("%s/", path) : xstrdup(path);
				ck_assert_str_eq(name, want);
				free(want);
				free(path);
			}
			i++;
		}
		ck_assert_int_eq(pclose(p), 0);
		ck_assert_uint_eq(i, BV_NELEM(samples));
		free(cmd);
	}
	/* unzip -l: the same names, with the MS-DOS date and time */
	char *cmd = xasprintf("TZ=UTC LC_ALL=C unzip -l '%s' | grep -c ' 1980-01-01 00:00 '", file);
	FILE *p = popen(cmd, "r");
	int count = 0;
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(fscanf(p, "%d", &count), 1);
	pclose(p);
	ck_assert_int_eq(count, (int)BV_NELEM(samples));
	free(cmd);
	remove_tree(dir);
	free(file);
	free(dir);
	free(zip);
}
END_TEST

/* unzip tests the CRCs and extracts the right bytes, modes, links and times, quietly. */
START_TEST(test_unzip_extract)
{
	size_t len;
	char *zip = write_sample(&len, 6);
	char *dir = make_tmpdir();
	char *file = save(dir, "b.zip", zip, len);
	char *cmd = xasprintf("cd '%s' && unzip -tqq b.zip && umask 022 && "
			      "LC_ALL=C.UTF-8 unzip -qq b.zip 2>err.txt",
	    dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	char *errpath = xasprintf("%s/err.txt", dir);
	size_t elen;
	char *errs = slurp(errpath, &elen);
	ck_assert_msg(elen == 0, "unzip complained: %s", errs);
	free(errs);
	free(errpath);

	for (size_t i = 0; i < BV_NELEM(samples); i++) {
		const struct sample *s = &samples[i];
		char *path = xasprintf("%s/" TOP "/%s", dir, s->path);
		struct stat st;
		ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
		if (s->type == 'd') {
			ck_assert(S_ISDIR(st.st_mode));
			ck_assert_int_eq(st.st_mode & 07777, 0755);
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
			ck_assert_int_eq(st.st_mode & 07777, s->type == 'x' ? 0755 : 0644);
			ck_assert_uint_eq(flen, wlen);
			ck_assert_int_eq(memcmp(data, want, wlen), 0);
			/* from the UT extra field: the exact UTC time */
			ck_assert_int_eq(st.st_mtime, TARBALL_MTIME);
			free(data);
		}
		free(path);
	}
	remove_tree(dir);
	free(file);
	free(dir);
	free(zip);
}
END_TEST

/* Another time zone would change libarchive's MS-DOS times: refused, not written. Runs in
 * its own process (Check forks), so the TZ change stays there. */
START_TEST(test_needs_utc)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	setenv("TZ", "CET-1", 1); /* one hour east: 1980-01-01 01:00 local */
	tzset();
	ck_assert_ptr_null(tarball_new_zip(6, mem_sink_cb, &ms, &err));
	ck_assert_ptr_nonnull(strstr(err, "UTC"));
	free(err);
	err = NULL;
	/* west of UTC the local date is before 1980, which libarchive clamps to 1980-01-01
	 * 00:00: the same bytes, so allowed */
	setenv("TZ", "EST5", 1);
	tzset();
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
	ck_assert_msg(tb != NULL, "EST5: %s", err);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	ck_assert_int_eq(tarball_finish(tb, &err), 0);
	tarball_free(tb);
	struct cd_entry cd[2];
	ck_assert_uint_eq(read_cd(ms.out.data, ms.out.len, cd, 2), 1);
	ck_assert_int_eq(cd[0].dos_date, DOS_DATE);
	ck_assert_int_eq(cd[0].dos_time, DOS_TIME);
	buf_free(&ms.out);
}
END_TEST

/* A name that is not UTF-8 is written as it is, without the UTF-8 flag. */
START_TEST(test_binary_name)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	ck_assert_msg(tarball_add_file_mem(tb, TOP "/bad\xff\xfe.txt", false, "x\n", 2, &err) == 0,
	    "%s", err);
	ck_assert_msg(
	    tarball_add_file_mem(tb, TOP "/\xc3\xa9t\xc3\xa9", false, "y\n", 2, &err) == 0, "%s",
	    err);
	ck_assert_int_eq(tarball_finish(tb, &err), 0);
	tarball_free(tb);
	struct cd_entry cd[4];
	ck_assert_uint_eq(read_cd(ms.out.data, ms.out.len, cd, 4), 3);
	ck_assert_str_eq(cd[1].name, TOP "/bad\xff\xfe.txt");
	ck_assert_int_eq(cd[1].flags & 0x800, 0);
	ck_assert_str_eq(cd[2].name, TOP "/\xc3\xa9t\xc3\xa9");
	ck_assert_int_eq(cd[2].flags & 0x800, 0x800);
	buf_free(&ms.out);
}
END_TEST

/* A blob shorter than its recorded length is an error, not a padded file. */
START_TEST(test_short_file)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	int fd = fd_with("abc", 3);
	ck_assert_int_eq(tarball_add_file_fd(tb, TOP "/short.txt", false, 10, fd, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "short.txt"));
	ck_assert_ptr_nonnull(strstr(err, "3 of 10 bytes"));
	free(err);
	err = NULL;
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
	int r;

	make_big();
	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
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

/* Freeing before finish sends nothing more to the sink (no central directory). */
START_TEST(test_abandon)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	size_t before = ms.out.len;
	tarball_free(tb);
	ck_assert_uint_eq(ms.out.len, before);
	buf_free(&ms.out);
}
END_TEST

/* An empty tree is just the top folder, and still a zip unzip accepts. */
START_TEST(test_empty_tree)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
	ck_assert_ptr_nonnull(tb);
	ck_assert_int_eq(tarball_add_dir(tb, TOP, &err), 0);
	ck_assert_int_eq(tarball_finish(tb, &err), 0);
	ck_assert_uint_eq(tarball_tar_bytes(tb), ms.out.len);
	tarball_free(tb);
	char *dir = make_tmpdir();
	char *file = save(dir, "e.zip", ms.out.data, ms.out.len);
	char *cmd = xasprintf("cd '%s' && unzip -qq e.zip && test -d '" TOP "'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	remove_tree(dir);
	free(file);
	free(dir);
	buf_free(&ms.out);
}
END_TEST

/* A small tree, then the manifest of left-out files beside its top folder. */
static char *
write_manifested(size_t *len)
{
	struct mem_sink ms = {.limit = 0};
	char *err = NULL;

	buf_init(&ms.out);
	struct tarball *tb = tarball_new_zip(6, mem_sink_cb, &ms, &err);
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
 * fixed metadata; the same entries give the same bytes; zip lists and extracts it. */
START_TEST(test_manifest)
{
	size_t len1, len2;
	char *a = write_manifested(&len1);
	char *b = write_manifested(&len2);
	ck_assert_uint_eq(len1, len2);
	ck_assert_int_eq(memcmp(a, b, len1), 0);

	check_manifest_bundle(a, len1, true);
	free(a);
	free(b);
}
END_TEST

/* The test table. */
static Suite *
zip_suite(void)
{
	Suite *s = suite_create("zip");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_deterministic);
	tcase_add_test(tc, test_no_clock);
	tcase_add_test(tc, test_central_directory);
	tcase_add_test(tc, test_entries);
	tcase_add_test(tc, test_zipinfo);
	tcase_add_test(tc, test_unzip_extract);
	tcase_add_test(tc, test_needs_utc);
	tcase_add_test(tc, test_binary_name);
	tcase_add_test(tc, test_short_file);
	tcase_add_test(tc, test_sink_error);
	tcase_add_test(tc, test_abandon);
	tcase_add_test(tc, test_empty_tree);
	tcase_add_test(tc, test_manifest);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite in UTC, as the worker does; exit status 1 when a test failed. */
int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	setlocale(LC_CTYPE, "C.UTF-8");
	SRunner *sr = srunner_create(zip_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
