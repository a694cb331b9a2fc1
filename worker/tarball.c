/* tarball.c: deterministic bundles through libarchive (research B.4): a pax tar compressed
 * by pgzip, or a zip.
 *
 * tar.gz: libarchive writes the tar stream only; no libarchive compression filter is used,
 * so the gzip member comes from pgzip (parallel libdeflate, mtime 0 in its header).
 * Blocking is turned off (bytes_per_block 0) so every write reaches our callback at once
 * and the stream is not padded to 10240 bytes (B.4 padding note).
 *
 * zip: libarchive's zip writer, deflate through zlib on this thread, straight to the sink
 * (same blocking settings). Every field it writes comes from the entry or is constant
 * (libarchive 3.6.2, archive_write_set_format_zip.c): the MS-DOS time from the mtime
 * through localtime() (hence the UTC check in tarball_new_zip), an "UT" extra field with
 * the mtime only (atime and ctime are never set here), a "ux" extra field with uid/gid 0,
 * "made by" Unix with the mode in the high 16 bits of the external attributes (Info-ZIP's
 * convention, so unzip restores 0644/0755 and symlinks, whose target is the stored data),
 * a data descriptor after each file, Zip64 fields only for files or offsets near 4 GiB.
 * The central directory is kept in memory until the end: about 100 bytes per entry.
 *
 * Names: libarchive converts pax "path"/"linkpath" records from the current locale's
 * charset to UTF-8. Under the C locale every non-ASCII name would be written as
 * hdrcharset=BINARY, which GNU tar warns about; so each call runs with LC_CTYPE C.UTF-8
 * (uselocale, thread-local): valid UTF-8 names become ordinary pax records, and only
 * names that are not UTF-8 fall back to BINARY (libarchive returns ARCHIVE_WARN for
 * those and still writes the bytes as they are, which is what we want). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shared/util.h"
#include "worker/tarball.h"

/* File data is copied in reads this large. */
#define TARBALL_READ_SIZE (256 * 1024)

struct tarball {
	struct archive *a;
	struct archive_entry *e;
	struct pgzip *z; /* tar.gz only */
	pgzip_sink sink; /* zip only: the bytes go straight there */
	void *sink_arg;
	locale_t loc; /* C.UTF-8 (C where missing) */
	locale_t cloc; /* zip only: C, for names that are not UTF-8 */
	char *err; /* the sink's (or pgzip's) message, kept for the caller */
	unsigned char *buf; /* TARBALL_READ_SIZE bytes */
	tarball_tick tick;
	void *tick_arg;
	uint64_t tar_bytes;
	bool failed; /* no more entries can be written */
	bool finished;
	bool discard; /* freeing before finish: drop libarchive's closing bytes */
	bool zip;
};

/* libarchive's write callback: hands the tar bytes to the compressor. */
static la_ssize_t
write_cb(struct archive *a, void *arg, const void *data, size_t len)
{
	struct tarball *tb = arg;
	char *err = NULL;

	if (tb->discard)
		return (la_ssize_t)len;
	tb->tar_bytes += len;
	if ((tb->z == NULL ? tb->sink(tb->sink_arg, data, len, &err)
			   : pgzip_write(tb->z, data, len, &err)) != 0) {
		if (tb->err == NULL)
			tb->err = err;
		else
			free(err);
		archive_set_error(a, EIO, "%s", tb->err);
		return -1;
	}
	return (la_ssize_t)len;
}

/* gzip_level is libdeflate's 1..12 scale (1..9 track zlib's ratios; 10..12 are much
 * slower for a little more), clamped for safety. */
int
tarball_pgzip_level(int gzip_level)
{
	if (gzip_level < 1)
		return 1;
	if (gzip_level > 12)
		return 12;
	return gzip_level;
}

/* A new writer with its locales; NULL + *errstr when the C library has none. */
static struct tarball *
alloc_tarball(bool zip, char **errstr)
{
	struct tarball *tb = xcalloc(1, sizeof *tb);

	tb->zip = zip;
	tb->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (tb->loc == (locale_t)0)
		tb->loc = newlocale(LC_CTYPE_MASK, "C", (locale_t)0);
	if (zip && tb->loc != (locale_t)0)
		tb->cloc = newlocale(LC_CTYPE_MASK, "C", (locale_t)0);
	if (tb->loc == (locale_t)0 || (zip && tb->cloc == (locale_t)0)) {
		*errstr = xasprintf("cannot create a locale: %s", strerror(errno));
		tarball_free(tb);
		return NULL;
	}
	return tb;
}

/* Sets up libarchive for pax_restricted output into pgzip (gzip_level 0: straight to the
 * sink, an uncompressed tar). */
static struct tarball *
tar_writer(int gzip_level, int threads, pgzip_sink sink, void *sink_arg, char **errstr)
{
	struct tarball *tb = alloc_tarball(false, errstr);

	if (tb == NULL)
		return NULL;
	tb->sink = sink;
	tb->sink_arg = sink_arg;
	if (gzip_level > 0)
		tb->z = pgzip_new(
		    tarball_pgzip_level(gzip_level), threads < 1 ? 1 : threads, sink, sink_arg);
	if (gzip_level > 0 && tb->z == NULL) {
		*errstr = xstrdup("cannot start the gzip compressor");
		tarball_free(tb);
		return NULL;
	}
	tb->a = archive_write_new();
	tb->e = archive_entry_new();
	if (tb->a == NULL || tb->e == NULL) {
		*errstr = xstrdup("cannot create a libarchive writer");
		tarball_free(tb);
		return NULL;
	}
	locale_t old = uselocale(tb->loc);
	if (archive_write_set_format_pax_restricted(tb->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(tb->a, 0) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(tb->a, 1) != ARCHIVE_OK ||
	    archive_write_open2(tb->a, tb, NULL, write_cb, NULL, NULL) != ARCHIVE_OK) {
		*errstr = xasprintf("cannot set up the tar writer: %s",
		    archive_error_string(tb->a) ? archive_error_string(tb->a) : "unknown error");
		uselocale(old);
		tarball_free(tb);
		return NULL;
	}
	uselocale(old);
	tb->buf = xmalloc(TARBALL_READ_SIZE);
	return tb;
}

/* tar.gz. */
struct tarball *
tarball_new(int gzip_level, int threads, pgzip_sink sink, void *sink_arg, char **errstr)
{
	return tar_writer(gzip_level < 1 ? 1 : gzip_level, threads, sink, sink_arg, errstr);
}

/* Plain tar. */
struct tarball *
tarball_new_tar(pgzip_sink sink, void *sink_arg, char **errstr)
{
	return tar_writer(0, 1, sink, sink_arg, errstr);
}

/* True when libarchive's MS-DOS time for TARBALL_MTIME is 1980-01-01 00:00:00: the local
 * time is exactly that, or earlier (libarchive clamps dates before 1980 to it). */
static bool
dos_time_fixed(void)
{
	time_t t = TARBALL_MTIME;
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return false;
	if (tm.tm_year < 80)
		return true;
	return tm.tm_year == 80 && tm.tm_mon == 0 && tm.tm_mday == 1 && tm.tm_hour == 0 &&
	    tm.tm_min == 0 && tm.tm_sec == 0;
}

/* Sets up libarchive's zip writer: deflate at zip_level, no blocking, into sink. */
struct tarball *
tarball_new_zip(int zip_level, pgzip_sink sink, void *sink_arg, char **errstr)
{
	char opts[64];

	if (!dos_time_fixed()) {
		*errstr = xstrdup("cannot write a reproducible zip: the worker's time zone is not "
				  "UTC (set TZ=UTC)");
		return NULL;
	}
	struct tarball *tb = alloc_tarball(true, errstr);
	if (tb == NULL)
		return NULL;
	tb->sink = sink;
	tb->sink_arg = sink_arg;
	tb->a = archive_write_new();
	tb->e = archive_entry_new();
	if (tb->a == NULL || tb->e == NULL) {
		*errstr = xstrdup("cannot create a libarchive writer");
		tarball_free(tb);
		return NULL;
	}
	if (zip_level < 1)
		zip_level = 1;
	if (zip_level > 9)
		zip_level = 9;
	snprintf(opts, sizeof opts, "zip:compression=deflate,zip:compression-level=%d", zip_level);
	if (archive_write_set_format_zip(tb->a) != ARCHIVE_OK ||
	    archive_write_set_options(tb->a, opts) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(tb->a, 0) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(tb->a, 1) != ARCHIVE_OK ||
	    archive_write_open2(tb->a, tb, NULL, write_cb, NULL, NULL) != ARCHIVE_OK) {
		*errstr = xasprintf("cannot set up the zip writer: %s",
		    archive_error_string(tb->a) ? archive_error_string(tb->a) : "unknown error");
		tarball_free(tb);
		return NULL;
	}
	tb->buf = xmalloc(TARBALL_READ_SIZE);
	return tb;
}

/* Frees everything; before tarball_finish, the partial stream is simply dropped. */
void
tarball_free(struct tarball *tb)
{
	if (tb == NULL)
		return;
	if (tb->a != NULL) {
		/* archive_write_free closes an open archive, which writes the end blocks:
		 * they must not reach a sink the caller is abandoning. */
		tb->discard = true;
		locale_t old = uselocale(tb->loc);
		archive_write_free(tb->a);
		uselocale(old);
	}
	archive_entry_free(tb->e);
	pgzip_free(tb->z);
	if (tb->loc != (locale_t)0)
		freelocale(tb->loc);
	if (tb->cloc != (locale_t)0)
		freelocale(tb->cloc);
	free(tb->err);
	free(tb->buf);
	free(tb);
}

/* Installs the callback that keeps the job alive during long files. */
void
tarball_set_tick(struct tarball *tb, tarball_tick tick, void *arg)
{
	tb->tick = tick;
	tb->tick_arg = arg;
}

/* Uncompressed bytes so far, counted in the write callback. */
uint64_t
tarball_tar_bytes(const struct tarball *tb)
{
	return tb->tar_bytes;
}

/* Reports a libarchive failure, preferring the sink's own words (e.g. the size limit). */
static int
fail(struct tarball *tb, const char *what, const char *path, char **errstr)
{
	tb->failed = true;
	if (tb->err != NULL) {
		*errstr = xstrdup(tb->err);
		return -1;
	}
	const char *msg = archive_error_string(tb->a);
	if (msg == NULL)
		msg = "unknown libarchive error";
	if (path != NULL)
		*errstr = xasprintf("%s '%s': %s", what, path, msg);
	else
		*errstr = xasprintf("%s: %s", what, msg);
	return -1;
}

/* Refuses calls after a failure or after finish: the stream is no longer valid. */
static int
usable(struct tarball *tb, char **errstr)
{
	if (tb->failed) {
		*errstr = xstrdup(tb->err ? tb->err : "the bundle stream already failed");
		return -1;
	}
	if (tb->finished) {
		*errstr = xstrdup("the bundle stream is already finished");
		return -1;
	}
	return 0;
}

/* True when s is well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF). */
static bool
utf8_valid(const unsigned char *s)
{
	while (*s != 0) {
		unsigned int c = *s, n, cp;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned int i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		s += n + 1;
	}
	return true;
}

/* The locale a header is written under. tar: C.UTF-8 always (see the top). zip: libarchive
 * sets the "name is UTF-8" flag (bit 11) for a non-ASCII name when the locale's charset
 * is UTF-8, and copies the bytes as they are either way; so a name that is not UTF-8 is
 * written under C, without the flag. */
static locale_t
header_locale(const struct tarball *tb, const char *path)
{
	if (tb->zip && !utf8_valid((const unsigned char *)path))
		return tb->cloc;
	return tb->loc;
}

/* Writes one header with every field set here, never from disk. */
static int
put_header(struct tarball *tb, const char *path, unsigned int type, unsigned int perm,
    uint64_t size, const char *target, char **errstr)
{
	struct archive_entry *e = tb->e;

	if (usable(tb, errstr) != 0)
		return -1;
	archive_entry_clear(e);
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, TARBALL_MTIME, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_uname(e, "");
	archive_entry_set_gname(e, "");
	if (target != NULL)
		archive_entry_set_symlink(e, target);

	locale_t old = uselocale(header_locale(tb, path));
	int r = archive_write_header(tb->a, e);
	uselocale(old);
	/* ARCHIVE_WARN: a name that is not UTF-8, written as raw bytes (see the top). */
	if (r < ARCHIVE_WARN)
		return fail(tb, "cannot write the header of", path, errstr);
	return 0;
}

/* Feeds entry data to libarchive. */
static int
put_data(struct tarball *tb, const char *path, const void *data, size_t len, char **errstr)
{
	locale_t old = uselocale(tb->loc);
	la_ssize_t n = archive_write_data(tb->a, data, len);
	uselocale(old);
	if (n < 0 || (size_t)n != len)
		return fail(tb, "cannot write the data of", path, errstr);
	return 0;
}

/* A directory entry: a header with mode 0755 and no data. */
int
tarball_add_dir(struct tarball *tb, const char *path, char **errstr)
{
	return put_header(tb, path, AE_IFDIR, 0755, 0, NULL, errstr);
}

/* A symlink entry: the target travels in the header (pax linkpath when long). */
int
tarball_add_symlink(struct tarball *tb, const char *path, const char *target, char **errstr)
{
	return put_header(tb, path, AE_IFLNK, 0777, 0, target, errstr);
}

/* A regular file whose bytes are already in memory (tests, small generated files). */
int
tarball_add_file_mem(
    struct tarball *tb, const char *path, bool exec, const void *data, size_t size, char **errstr)
{
	if (put_header(tb, path, AE_IFREG, exec ? 0755 : 0644, size, NULL, errstr) != 0)
		return -1;
	if (size > 0 && put_data(tb, path, data, size, errstr) != 0)
		return -1;
	return 0;
}

/* The manifest beside the top folder: same header rules as any file. */
int
tarball_add_manifest(
    struct tarball *tb, const char *top, const void *data, size_t size, char **errstr)
{
	char *path = xasprintf("%s%s", top, TARBALL_MANIFEST_SUFFIX);
	int rc = tarball_add_file_mem(tb, path, false, data, size, errstr);
	free(path);
	return rc;
}

/* Streams size bytes from fd. A file that ends early would otherwise be padded with
 * zeros by libarchive: that is a corrupt bundle, so it is an error. */
int
tarball_add_file_fd(
    struct tarball *tb, const char *path, bool exec, uint64_t size, int fd, char **errstr)
{
	return tarball_add_file_mode(tb, path, exec ? 0755 : 0644, size, fd, errstr);
}

int
tarball_add_file_mode(
    struct tarball *tb, const char *path, unsigned int mode, uint64_t size, int fd, char **errstr)
{
	if (put_header(tb, path, AE_IFREG, mode & 07777, size, NULL, errstr) != 0)
		return -1;
	if (size > TARBALL_READ_SIZE)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	uint64_t left = size;
	while (left > 0) {
		size_t want = left < TARBALL_READ_SIZE ? (size_t)left : TARBALL_READ_SIZE;
		ssize_t n = read(fd, tb->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			tb->failed = true;
			*errstr =
			    xasprintf("cannot read the bytes of '%s': %s", path, strerror(errno));
			return -1;
		}
		if (n == 0) {
			tb->failed = true;
			*errstr = xasprintf("the stored bytes of '%s' end after %llu of %llu bytes",
			    path, (unsigned long long)(size - left), (unsigned long long)size);
			return -1;
		}
		if (put_data(tb, path, tb->buf, (size_t)n, errstr) != 0)
			return -1;
		left -= (uint64_t)n;
		if (tb->tick != NULL && tb->tick(tb->tick_arg, errstr) != 0) {
			tb->failed = true;
			return -1;
		}
	}
	return 0;
}

/* Closes the tar (two zero blocks) and the gzip member, or writes the zip's central
 * directory. */
int
tarball_finish(struct tarball *tb, char **errstr)
{
	if (usable(tb, errstr) != 0)
		return -1;
	locale_t old = uselocale(tb->loc);
	int r = archive_write_close(tb->a);
	uselocale(old);
	if (r != ARCHIVE_OK)
		return fail(tb, tb->zip ? "cannot finish the zip" : "cannot finish the tar stream",
		    NULL, errstr);
	tb->finished = true;
	if (tb->z != NULL && pgzip_finish(tb->z, errstr) != 0) {
		tb->failed = true;
		return -1;
	}
	return 0;
}
