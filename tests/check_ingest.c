/* check_ingest.c: archives become git trees. A real folder (nested folders, an
 * executable, symlinks, a hard link, an empty file, a 3 MiB file, empty folders, git's
 * sort trap, a UTF-8 name) is packed with tar and zip in several flavours and each
 * ingest must give the id `git add -A && git write-tree` gives. Hostile archives are
 * written with libarchive directly (tar refuses to make some) and must be refused with
 * 400, limits with 413, with no temp file left behind. db == NULL throughout. */
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
#include <unistd.h>

#include "shared/gitobj.h"
#include "shared/ingest.h"

#define EMPTY_TREE "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

static char work[256]; /* holds tree/, the archives and git's answers */
static char git_root[41]; /* git write-tree of tree/ */
static long git_files; /* blobs in that tree (files and symlinks) */
static long git_dirs; /* trees in it, root included */
static long git_distinct; /* distinct blob ids */
static long long git_bytes; /* sum of blob sizes */
static char big_sha256[65]; /* the 3 MiB file, to find it in the store */

static char store_root[300];
static struct store *st;

static void run(const char *fmt, ...) BV_PRINTF(1, 2);

/* Runs a shell command in work/; any failure stops the fixture. */
static void
run(const char *fmt, ...)
{
	va_list ap;
	char *cmd, *full;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	full = xasprintf("set -e; cd '%s'; %s", work, cmd);
	if (system(full) != 0) {
		fprintf(stderr, "command failed: %s\n", cmd);
		abort();
	}
	free(cmd);
	free(full);
}

/* First line of a command's output (run in work/). */
static char *
capture(const char *cmd)
{
	char *full = xasprintf("cd '%s' && %s", work, cmd), line[512];
	FILE *p = popen(full, "r");

	free(full);
	if (p == NULL || fgets(line, sizeof(line), p) == NULL) {
		fprintf(stderr, "no output from: %s\n", cmd);
		abort();
	}
	pclose(p);
	line[strcspn(line, "\n")] = '\0';
	return xstrdup(line);
}

static long
capture_long(const char *cmd)
{
	char *s = capture(cmd);
	long v = strtol(s, NULL, 10);

	free(s);
	return v;
}

/* Builds tree/, packs it every way, then asks git. Runs once, before the tests. */
static void
make_fixture(void)
{
	char *s;

	snprintf(work, sizeof(work), "/tmp/check_ingest.XXXXXX");
	if (mkdtemp(work) == NULL)
		abort();
	run("mkdir -p tree/src/lib tree/docs tree/empty/nested tree/a tree/only-empty/x/y");
	run("printf 'int main(void) { return 0; }\\n' > tree/src/main.c");
	run("printf 'hello\\n' > tree/src/lib/util.c && printf 'hello\\n' > tree/docs/dup.txt");
	run("printf '#!/bin/sh\\necho hi\\n' > tree/src/run.sh && chmod 755 tree/src/run.sh");
	run("printf 'x' > tree/docs/group-x && chmod 654 tree/docs/group-x");
	run(": > tree/docs/empty.txt");
	run("head -c 3145728 /dev/urandom > tree/big.bin");
	/* Holes inside and at the end: tar -S stores them as sparse maps. */
	run("head -c 5000 /dev/urandom | dd of=tree/sparse.bin bs=4096 seek=40 conv=notrunc "
	    "status=none && truncate -s 1048576 tree/sparse.bin");
	run("ln -s src/main.c tree/link-to-file && ln -s src tree/link-to-dir");
	run("ln -s does/not/exist tree/dangling");
	run("ln tree/src/main.c tree/hardlink.c");
	/* git's sort trap: the folder "a" sorts as "a/", after "a-b" and "a.c". */
	run("printf 1 > tree/a-b && printf 2 > tree/a.c && printf 3 > tree/a0");
	run("printf 4 > tree/a/inner");
	run("printf 'utf8\\n' > 'tree/caf\xc3\xa9.txt'");

	run("tar -C tree -cf plain.tar .");
	run("tar -C tree -czf gz.tar.gz .");
	run("tar -C tree --format=pax -S -cf pax.tar .");
	run("tar -C tree --format=gnu -S -cf gnusparse.tar .");
	run("tar -C tree -cjf bz2.tar.bz2 .");
	run("tar -C tree -cJf xz.tar.xz .");
	run("tar -C tree --zstd -cf zst.tar.zst .");
	run("cd tree && zip -qry ../plain.zip .");
	/* zip writing to a pipe cannot seek back: sizes go in data descriptors. */
	run("cd tree && zip -qry - . > ../streamed.zip");
	run("mkdir wrap && cp -a tree wrap/top && tar -C wrap -cf top.tar top");

	s = capture("sha256sum tree/big.bin | cut -c1-64");
	snprintf(big_sha256, sizeof(big_sha256), "%s", s);
	free(s);

	/* git sees the same files: owner-x decides 100755, symlinks kept, empty folders
	 * left out. No global or system config may change that. */
	run("cd tree && export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null && "
	    "git init -q && git -c core.fileMode=true -c core.symlinks=true "
	    "-c core.autocrlf=false add -A && git write-tree > ../git-tree");
	s = capture("cat git-tree");
	snprintf(git_root, sizeof(git_root), "%s", s);
	free(s);
	git_files = capture_long("cd tree && git ls-tree -r $(cat ../git-tree) | wc -l");
	git_dirs = 1 +
	    capture_long("cd tree && git ls-tree -r -t $(cat ../git-tree) | "
			 "grep -c ' tree '");
	git_distinct = capture_long("cd tree && git ls-tree -r $(cat ../git-tree) | "
				    "awk '{print $3}' | sort -u | wc -l");
	git_bytes = capture_long("cd tree && git ls-tree -r -l $(cat ../git-tree) | "
				 "awk '{s += $4} END {print s}'");
}

static void
remove_fixture(void)
{
	run("rm -rf tree wrap");
	char *cmd = xasprintf("rm -rf '%s'", work);
	if (system(cmd) != 0)
		abort();
	free(cmd);
}

static void
store_setup(void)
{
	char *err = NULL;

	snprintf(store_root, sizeof(store_root), "%s/store.XXXXXX", work);
	ck_assert_ptr_nonnull(mkdtemp(store_root));
	st = store_open_local(store_root, &err);
	ck_assert_msg(st != NULL, "%s", err);
}

static void
store_teardown(void)
{
	char *cmd = xasprintf("rm -rf '%s'", store_root);

	store_free(st);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

static int
count_dir(const char *sub)
{
	char path[400];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", store_root, sub);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Blob files anywhere under the store's objects/. */
static int
count_blobs(void)
{
	char cmd[512], out[32] = "";
	snprintf(cmd, sizeof(cmd), "find '%s/objects' -type f 2>/dev/null | wc -l", store_root);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(fgets(out, sizeof(out), p));
	pclose(p);
	return atoi(out);
}

/* Ingests work/name; returns the status (200 on success) and fills res and *err. */
static int
ingest(const char *name, int64_t max_entries, int64_t max_unpacked, struct ingest_result *res,
    char **err)
{
	struct ingest_limits lim = {max_entries, max_unpacked, 0};
	char path[400];
	int status = 0, rc;

	snprintf(path, sizeof(path), "%s/%s", work, name);
	*err = NULL;
	rc = ingest_archive(st, NULL, path, &lim, res, &status, err);
	ck_assert_int_eq(rc == 0, status == 200);
	ck_assert(rc == 0 || *err != NULL);
	/* Success or not, no temp file is left behind. */
	ck_assert_int_eq(count_dir("tmp"), 0);
	return status;
}

static void
assert_root(const struct ingest_result *res, const char *want)
{
	char hex[41];

	hex_encode(res->root, 20, hex);
	ck_assert_str_eq(hex, want);
}

/* Every packing of the folder gives git's id, counts and the big file in the store. */
static void
check_matches_git(const char *name)
{
	struct ingest_result res;
	unsigned char big[32];
	char *err;
	int status = ingest(name, 1000, 1 << 30, &res, &err);

	ck_assert_msg(status == 200, "%s: %d %s", name, status, err);
	assert_root(&res, git_root);
	ck_assert_int_eq(res.files, git_files);
	ck_assert_int_eq(res.directories, git_dirs);
	ck_assert_int_eq(res.bytes, git_bytes);
	ck_assert_int_eq(res.new_contents, git_distinct);
	ck_assert(hex_decode(big_sha256, big, 32));
	ck_assert(store_exists(st, big));
}

START_TEST(test_tar)
{
	check_matches_git("plain.tar");
}
END_TEST

START_TEST(test_tar_gz)
{
	check_matches_git("gz.tar.gz");
}
END_TEST

START_TEST(test_tar_pax)
{
	check_matches_git("pax.tar");
}
END_TEST

/* GNU sparse members (type 'S'): holes come back as zeros, the trailing one too. */
START_TEST(test_tar_sparse)
{
	check_matches_git("gnusparse.tar");
}
END_TEST

START_TEST(test_tar_bz2_xz_zst)
{
	check_matches_git("bz2.tar.bz2");
	check_matches_git("xz.tar.xz");
	check_matches_git("zst.tar.zst");
}
END_TEST

START_TEST(test_zip)
{
	check_matches_git("plain.zip");
}
END_TEST

START_TEST(test_zip_streamed)
{
	check_matches_git("streamed.zip");
}
END_TEST

/* A zip whose names carry the UTF-8 flag (as Python, Java and Windows tools write them):
 * read in any process locale, with git's id for "café.txt". */
START_TEST(test_zip_utf8_flag)
{
	struct ingest_result res;
	char hex[41], *err = NULL;
	const char *src = getenv("BV_TOP_SRCDIR");

	run("cp '%s/tests/data/utf8-flag.zip' u8.zip", src ? src : ".");
	ck_assert_msg(ingest("u8.zip", 0, 0, &res, &err) == 200, "%s", err);
	hex_encode(res.root, 20, hex);
	ck_assert_str_eq(hex, "d01305580cb7269c89c4586b393398b449a88868");
}
END_TEST

/* One top-level folder stays: the root holds "top", whose id is git's. */
START_TEST(test_single_folder_not_unwrapped)
{
	struct tree_builder *tb = tree_builder_new();
	struct ingest_result res;
	unsigned char id[20], want[20], *raw;
	size_t len;
	char *err, hex[41];

	ck_assert_int_eq(ingest("top.tar", 0, 0, &res, &err), 200);
	ck_assert(hex_decode(git_root, id, 20));
	ck_assert(tree_builder_add(tb, "top", 3, GIT_MODE_DIR, id));
	tree_builder_finish(tb, &raw, &len, want);
	tree_builder_free(tb);
	free(raw);
	hex_encode(want, 20, hex);
	assert_root(&res, hex);
	ck_assert_int_eq(res.directories, git_dirs + 1);
}
END_TEST

/* Second ingest of the same bytes: same id, blobs deduplicated in the store. */
START_TEST(test_reingest_same_id)
{
	struct ingest_result a, b;
	char *err;
	int before;

	ck_assert_int_eq(ingest("plain.tar", 0, 0, &a, &err), 200);
	before = count_dir("objects");
	ck_assert_int_eq(ingest("plain.zip", 0, 0, &b, &err), 200);
	ck_assert(memcmp(a.root, b.root, 20) == 0);
	ck_assert_int_eq(count_dir("objects"), before);
}
END_TEST

/* An archive entry for test archives written with libarchive. */
struct ent {
	const char *path;
	unsigned int type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFIFO, AE_IFCHR; 0 = hard link */
	const char *data; /* file content, or symlink / hard link target */
	int perm;
};

static void
write_archive(const char *name, const struct ent *e, size_t n)
{
	struct archive *a = archive_write_new();
	char path[400];

	snprintf(path, sizeof(path), "%s/%s", work, name);
	ck_assert_int_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	ck_assert_int_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		size_t len = 0;
		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_perm(ae, e[i].perm ? e[i].perm : 0644);
		if (e[i].type == 0) {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, e[i].data);
		} else {
			archive_entry_set_filetype(ae, e[i].type);
			if (e[i].type == AE_IFLNK)
				archive_entry_set_symlink(ae, e[i].data);
			if (e[i].type == AE_IFREG && e[i].data != NULL)
				len = strlen(e[i].data);
			if (e[i].type == AE_IFCHR)
				archive_entry_set_rdev(ae, 0x0103);
		}
		archive_entry_set_size(ae, (la_int64_t)len);
		ck_assert_int_eq(archive_write_header(a, ae), ARCHIVE_OK);
		if (len > 0)
			ck_assert_int_eq(archive_write_data(a, e[i].data, len), (la_ssize_t)len);
		archive_entry_free(ae);
	}
	ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* Expected root for a flat list of (name, mode, content) files. */
static void
flat_tree(const struct ent *e, size_t n, char hex[41])
{
	struct tree_builder *tb = tree_builder_new();
	unsigned char id[20], *raw;
	size_t len;

	for (size_t i = 0; i < n; i++) {
		gitobj_hash("blob", e[i].data, strlen(e[i].data), id);
		ck_assert(tree_builder_add(tb, e[i].path, strlen(e[i].path),
		    e[i].type == AE_IFLNK    ? GIT_MODE_LINK
			: (e[i].perm & 0100) ? GIT_MODE_EXEC
					     : GIT_MODE_FILE,
		    id));
	}
	tree_builder_finish(tb, &raw, &len, id);
	tree_builder_free(tb);
	free(raw);
	hex_encode(id, 20, hex);
}

/* Hostile or broken entries: 400, with a message naming the entry. */
START_TEST(test_refused_entries)
{
	static const struct {
		struct ent e[3];
		size_t n;
		const char *msg;
	} cases[] = {
	    {{{"ok.txt", AE_IFREG, "fine", 0}, {"../evil", AE_IFREG, "x", 0}}, 2,
		"path traversal in entry '../evil'"},
	    {{{"a/b/../../../evil", AE_IFREG, "x", 0}}, 1, "path traversal"},
	    {{{"/abs", AE_IFREG, "x", 0}}, 1, "absolute path in entry '/abs'"},
	    {{{"link", AE_IFLNK, "target", 0}, {"link/x", AE_IFREG, "x", 0}}, 2,
		"goes through symlink 'link'"},
	    {{{"link", AE_IFLNK, "/etc", 0}, {"link/", AE_IFDIR, NULL, 0755}}, 2,
		"'link/' is both a file and a directory"},
	    {{{"f", AE_IFREG, "x", 0}, {"f/g", AE_IFREG, "y", 0}}, 2,
		"'f' is both a file and a directory"},
	    {{{"d/x", AE_IFREG, "x", 0}, {"d", AE_IFREG, "y", 0}}, 2,
		"both a file and a directory"},
	    {{{"d/x", AE_IFREG, "x", 0}, {"d", AE_IFLNK, "elsewhere", 0}}, 2,
		"both a file and a directory"},
	    {{{"p", AE_IFIFO, NULL, 0}}, 1, "entry 'p' is a device, fifo or socket"},
	    {{{"dev/null", AE_IFCHR, NULL, 0}}, 1, "device"},
	    {{{"h", 0, "nope", 0}}, 1, "hard link 'h' points to 'nope'"},
	    {{{"d/", AE_IFDIR, NULL, 0755}, {"h", 0, "d", 0}}, 2, "hard link"},
	    {{{"a//b", AE_IFREG, "x", 0}}, 1, "empty path component in entry 'a//b'"},
	    {{{"./a/./b", AE_IFREG, "x", 0}}, 1, "'.' path component"},
	    {{{"bad\x01name/../x", AE_IFREG, "x", 0}}, 1, "path traversal in entry 'bad?name"},
	    {{{"s", AE_IFLNK, "", 0}}, 1, "has no target"},
	};
	struct ingest_result res;
	char *err;

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		int before = count_blobs();
		write_archive("hostile.tar", cases[i].e, cases[i].n);
		int status = ingest("hostile.tar", 0, 0, &res, &err);
		ck_assert_msg(status == 400, "case %zu: status %d (%s)", i, status, err);
		ck_assert_msg(strstr(err, cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i,
		    err, cases[i].msg);
		/* Refused in the first pass: not even the good entries' blobs are kept. */
		ck_assert_msg(count_blobs() == before, "case %zu stored a blob", i);
		free(err);
	}
}
END_TEST

/* Not archives, or broken ones. */
START_TEST(test_refused_files)
{
	static const char *const names[] = {
	    "garbage.bin", "empty.bin", "cut.tar.gz", "cut.tar", "cut.zip"};
	struct ingest_result res;
	char *err;

	run("head -c 5000 /dev/urandom > garbage.bin && : > empty.bin");
	run("head -c $(( $(stat -c %%s gz.tar.gz) / 2 )) gz.tar.gz > cut.tar.gz");
	run("head -c $(( $(stat -c %%s plain.tar) / 2 )) plain.tar > cut.tar");
	run("head -c $(( $(stat -c %%s plain.zip) / 2 )) plain.zip > cut.zip");
	for (size_t i = 0; i < BV_NELEM(names); i++) {
		int status = ingest(names[i], 0, 0, &res, &err);
		ck_assert_msg(status == 400, "%s: status %d (%s)", names[i], status, err);
		free(err);
	}
	ck_assert_int_eq(ingest("garbage.bin", 0, 0, &res, &err), 400);
	ck_assert_ptr_nonnull(strstr(err, "not a tar, tar.gz or zip archive"));
	free(err);
	/* The server's own file missing is not the client's fault. */
	ck_assert_int_eq(ingest("no-such-file", 0, 0, &res, &err), 500);
	free(err);
}
END_TEST

START_TEST(test_limits)
{
	struct ingest_result res;
	char *err;

	ck_assert_int_eq(ingest("plain.tar", 3, 0, &res, &err), 413);
	ck_assert_ptr_nonnull(strstr(err, "more than 3 entries"));
	free(err);
	ck_assert_int_eq(ingest("gz.tar.gz", 0, 1024 * 1024, &res, &err), 413);
	ck_assert_ptr_nonnull(strstr(err, "more than 1048576 bytes"));
	free(err);
	/* Unknown sizes (streamed zip) are counted as they stream. */
	ck_assert_int_eq(ingest("streamed.zip", 0, 1024 * 1024, &res, &err), 413);
	free(err);
	/* Implied folders count too: one entry cannot build a deep tree past the limit. */
	static const struct ent deep[] = {{"a/b/c/d/e/f", AE_IFREG, "x", 0}};
	write_archive("deep.tar", deep, 1);
	ck_assert_int_eq(ingest("deep.tar", 4, 0, &res, &err), 413);
	free(err);
	ck_assert_int_eq(ingest("deep.tar", 6, 0, &res, &err), 200);
	/* Exactly at the limits is fine. */
	ck_assert_int_eq(ingest("plain.tar", 1000, git_bytes, &res, &err), 200);
}
END_TEST

/* A later entry for the same path wins; modes come from the owner-x bit only. */
START_TEST(test_replace_and_modes)
{
	static const struct ent arc[] = {
	    {"f", AE_IFREG, "one", 0},
	    {"x", AE_IFREG, "exec", 0744},
	    {"g", AE_IFREG, "group-x only", 0654},
	    {"f", AE_IFREG, "two", 0},
	    {"l", AE_IFREG, "was a file", 0},
	    {"l", AE_IFLNK, "now a link", 0},
	};
	static const struct ent want[] = {
	    {"f", AE_IFREG, "two", 0},
	    {"x", AE_IFREG, "exec", 0744},
	    {"g", AE_IFREG, "group-x only", 0654},
	    {"l", AE_IFLNK, "now a link", 0},
	};
	struct ingest_result res;
	char *err, hex[41];

	write_archive("replace.tar", arc, BV_NELEM(arc));
	ck_assert_int_eq(ingest("replace.tar", 0, 0, &res, &err), 200);
	flat_tree(want, BV_NELEM(want), hex);
	assert_root(&res, hex);
	ck_assert_int_eq(res.files, 4);
	ck_assert_int_eq(res.directories, 1);
	/* Six contents were stored, the replaced ones included. */
	ck_assert_int_eq(res.new_contents, 6);
}
END_TEST

START_TEST(test_hardlink_and_dot_slash)
{
	static const struct ent arc[] = {
	    {"./", AE_IFDIR, NULL, 0755},
	    {"./f", AE_IFREG, "shared bytes", 0755},
	    {"./g", 0, "./f", 0},
	    {"h", 0, "f", 0},
	};
	static const struct ent want[] = {
	    {"f", AE_IFREG, "shared bytes", 0755},
	    {"g", AE_IFREG, "shared bytes", 0755},
	    {"h", AE_IFREG, "shared bytes", 0755},
	};
	struct ingest_result res;
	char *err, hex[41];

	write_archive("hard.tar", arc, BV_NELEM(arc));
	ck_assert_int_eq(ingest("hard.tar", 0, 0, &res, &err), 200);
	flat_tree(want, BV_NELEM(want), hex);
	assert_root(&res, hex);
	ck_assert_int_eq(res.files, 3);
	ck_assert_int_eq(res.new_contents, 1);
	ck_assert_int_eq(res.bytes, 3 * 12);
}
END_TEST

/* Only empty folders, or nothing at all: git's empty tree. */
START_TEST(test_empty_trees)
{
	static const struct ent dirs[] = {
	    {"e/", AE_IFDIR, NULL, 0755},
	    {"e/f/g/", AE_IFDIR, NULL, 0755},
	};
	struct ingest_result res;
	char *err;

	write_archive("dirs.tar", dirs, BV_NELEM(dirs));
	ck_assert_int_eq(ingest("dirs.tar", 0, 0, &res, &err), 200);
	assert_root(&res, EMPTY_TREE);
	ck_assert_int_eq(res.directories, 1);
	ck_assert_int_eq(res.files, 0);
	write_archive("none.tar", NULL, 0);
	ck_assert_int_eq(ingest("none.tar", 0, 0, &res, &err), 200);
	assert_root(&res, EMPTY_TREE);
}
END_TEST

static Suite *
ingest_suite(void)
{
	Suite *s = suite_create("ingest");
	TCase *tc = tcase_create("archives");

	tcase_add_unchecked_fixture(tc, make_fixture, remove_fixture);
	tcase_add_checked_fixture(tc, store_setup, store_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_tar);
	tcase_add_test(tc, test_tar_gz);
	tcase_add_test(tc, test_tar_pax);
	tcase_add_test(tc, test_tar_sparse);
	tcase_add_test(tc, test_tar_bz2_xz_zst);
	tcase_add_test(tc, test_zip);
	tcase_add_test(tc, test_zip_streamed);
	tcase_add_test(tc, test_zip_utf8_flag);
	tcase_add_test(tc, test_single_folder_not_unwrapped);
	tcase_add_test(tc, test_reingest_same_id);
	tcase_add_test(tc, test_refused_entries);
	tcase_add_test(tc, test_refused_files);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_replace_and_modes);
	tcase_add_test(tc, test_hardlink_and_dot_slash);
	tcase_add_test(tc, test_empty_trees);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ingest_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
