/* bundle_fixture.c: see bundle_fixture.h. */
#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/bundle_fixture.h"
#include "worker/tarball.h"

unsigned char *big;
int ticks;

/* Deterministic, poorly compressible bytes. */
void
make_big(void)
{
	uint64_t x = 88172645463325252ULL;

	if (big != NULL)
		return;
	big = xmalloc(BIG_SIZE);
	for (size_t i = 0; i < BIG_SIZE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		big[i] = (i % 4096) < 2048 ? (unsigned char)x : (unsigned char)('a' + i % 26);
	}
}

/* An fd positioned at 0 holding len bytes. */
int
fd_with(const void *data, size_t len)
{
	int fd = memfd_create("bundle_fixture", 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* The sink: appends to the buffer, or fails past the limit. */
int
mem_sink_cb(void *arg, const void *data, size_t len, char **errstr)
{
	struct mem_sink *ms = arg;
	if (ms->limit > 0 && ms->out.len + len > ms->limit) {
		*errstr = xasprintf("bundle exceeds the size limit of %zu bytes", ms->limit);
		return -1;
	}
	buf_add(&ms->out, data, len);
	return 0;
}

/* A tick that only counts its calls. */
int
count_tick(void *arg, char **errstr)
{
	(void)arg;
	(void)errstr;
	ticks++;
	return 0;
}

/* Writes bytes to a new file in dir; returns its path. */
char *
save(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

/* A fresh folder under /tmp for extraction tests. */
char *
make_tmpdir(void)
{
	char tmpl[] = "/tmp/check_bundle.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	return xstrdup(tmpl);
}

/* rm -rf of a test folder. */
void
remove_tree(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

/* Reads a whole extracted file. */
char *
slurp(const char *path, size_t *len)
{
	char *err = NULL;
	char *data = read_file(path, len, &err);
	ck_assert_msg(data != NULL, "%s: %s", path, err);
	return data;
}

/* What `tar tv` shows for an entry of a sample type. */
const char *
ls_perms(char type)
{
	switch (type) {
	case 'd':
		return "drwxr-xr-x";
	case 'x':
		return "-rwxr-xr-x";
	case 'l':
		return "lrwxrwxrwx";
	default:
		return "-rw-r--r--";
	}
}

/* The manifest test's bundle (see check_tar.c, check_zip.c): its entries in order, the
 * manifest last at the root as a 0644 file with the fixed metadata and the expected bytes;
 * then GNU tar or Info-ZIP lists it the same way and extracts it beside the folder. */
void
check_manifest_bundle(const char *a, size_t len, bool zip)
{
	static const char *const names[] = {
	    TOP "/", TOP "/a.txt", TOP "/sub/", TOP "/sub/b.sh", TOP TARBALL_MANIFEST_SUFFIX};
	struct archive *ar = archive_read_new();
	struct archive_entry *e;
	if (zip) {
		archive_read_support_format_zip(ar);
	} else {
		archive_read_support_filter_gzip(ar);
		archive_read_support_format_tar(ar);
	}
	ck_assert_int_eq(archive_read_open_memory(ar, a, len), ARCHIVE_OK);
	for (size_t i = 0; i < BV_NELEM(names); i++) {
		ck_assert_int_eq(archive_read_next_header(ar, &e), ARCHIVE_OK);
		ck_assert_str_eq(archive_entry_pathname(e), names[i]);
	}
	ck_assert_int_eq(archive_entry_filetype(e), AE_IFREG);
	ck_assert_int_eq(archive_entry_perm(e), 0644);
	ck_assert_int_eq(archive_entry_mtime(e), TARBALL_MTIME);
	ck_assert_int_eq(archive_entry_uid(e), 0);
	ck_assert_int_eq(archive_entry_gid(e), 0);
	char data[256];
	la_ssize_t n = archive_read_data(ar, data, sizeof data);
	ck_assert_int_eq(n, (la_ssize_t)strlen(MANIFEST));
	ck_assert_int_eq(memcmp(data, MANIFEST, (size_t)n), 0);
	ck_assert_int_eq(archive_read_next_header(ar, &e), ARCHIVE_EOF);
	archive_read_free(ar);

	char *dir = make_tmpdir();
	char *file = save(dir, zip ? "m.zip" : "m.tar.gz", a, len);
	char *cmd = xasprintf(
	    "cd '%s' && %s && test -f '" TOP TARBALL_MANIFEST_SUFFIX "' && test -d '" TOP "'", dir,
	    zip ? "unzip -Z1 m.zip > list.txt && unzip -qq m.zip"
		: "tar tzf m.tar.gz > list.txt && tar xzf m.tar.gz");
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	char *lpath = xasprintf("%s/list.txt", dir);
	size_t llen;
	char *list = slurp(lpath, &llen);
	ck_assert_str_eq(list,
	    TOP "/\n" TOP "/a.txt\n" TOP "/sub/\n" TOP "/sub/b.sh\n" TOP TARBALL_MANIFEST_SUFFIX
		"\n");
	free(list);
	free(lpath);
	remove_tree(dir);
	free(file);
	free(dir);
}
