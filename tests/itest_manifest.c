/* itest_manifest.c: a file missing from the store (or from the archive) is left out of the
 * bundle, never replaced: the cook is done, its status says how many were left out, and
 * the bundle carries "swh:1:dir:<hex>.missing.json" beside the top folder naming each
 * path and why, the same in tar.gz and zip; the folder is the tree minus those files; a
 * bundle with nothing left out has no manifest. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

/* POSTs a cook of directory id in format (NULL: the default) and waits until it ends;
 * returns the final status document. */
static json_t *
cook_wait(const char *id, const char *format)
{
	struct itest_resp r;
	char *q = format != NULL ? xasprintf("?format=%s", format) : xstrdup("");
	char *path = xasprintf("/vault/directory/%s%s", id, q);
	itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
	ck_assert_msg(r.status == 201 || r.status == 200, "cook: %ld %s", r.status, r.body.data);
	itest_resp_free(&r);
	char *spath = xasprintf("/vault/directory/%s/status%s", id, q);
	json_t *last = itest_wait_status(spath, 60);
	free(spath);
	free(path);
	free(q);
	return last;
}

/* Checks the cook ended done with left_out as given (0: no left_out key at all). */
static void
expect_done(json_t *st, json_int_t left_out)
{
	char *dump = json_dumps(st, 0);
	ck_assert_msg(strcmp(json_string_value(json_object_get(st, "status")), "done") == 0,
	    "cook ended %s", dump);
	json_t *n = json_object_get(st, "left_out");
	if (left_out == 0)
		ck_assert_msg(n == NULL, "left_out in %s", dump);
	else
		ck_assert_msg(json_integer_value(n) == left_out, "left_out in %s", dump);
	free(dump);
}

/* Downloads the bundle of directory id (format NULL: tar.gz) into IT.dir/file. */
static void
download(const char *id, const char *format, const char *file)
{
	struct itest_resp r;
	char *path = format != NULL ? xasprintf("/vault/directory/%s?format=%s", id, format)
				    : xasprintf("/vault/directory/%s", id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body.data);
	char *full = xasprintf("%s/%s", IT.dir, file);
	FILE *f = fopen(full, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(r.body.data, 1, r.body.len, f), r.body.len);
	ck_assert_int_eq(fclose(f), 0);
	free(full);
	free(path);
	itest_resp_free(&r);
}

/* Deletes the blob of trees/<rel> from the store; returns git's blob id (caller frees). */
static char *
delete_blob(const char *rel)
{
	char *sha = itest_sh_out("sha256sum 'trees/%s' | cut -c1-64", rel);
	ck_assert_int_eq(strlen(sha), 64);
	ck_assert_int_eq(itest_sh("rm data/store/objects/%.2s/%.2s/%s", sha, sha + 2, sha), 0);
	free(sha);
	char *blob = itest_sh_out("git hash-object 'trees/%s'", rel);
	ck_assert_int_eq(strlen(blob), 40);
	return blob;
}

/* Parses IT.dir/file as JSON. */
static json_t *
load_json(const char *file)
{
	json_error_t jerr;
	char *full = xasprintf("%s/%s", IT.dir, file);
	json_t *j = json_load_file(full, 0, &jerr);
	ck_assert_msg(j != NULL, "%s: %s", file, jerr.text);
	free(full);
	return j;
}

/* Checks a manifest naming exactly one left-out file. */
static void
check_manifest(json_t *m, const char *id, const char *path, const char *blob, const char *why)
{
	char *swhid = xasprintf("swh:1:dir:%s", id);
	char *cnt = xasprintf("swh:1:cnt:%s", blob);
	ck_assert_str_eq(json_string_value(json_object_get(m, "swhid")), swhid);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "count")), 1);
	json_t *lo = json_object_get(m, "left_out");
	ck_assert_int_eq(json_array_size(lo), 1);
	json_t *e = json_array_get(lo, 0);
	ck_assert_str_eq(json_string_value(json_object_get(e, "path")), path);
	ck_assert_str_eq(json_string_value(json_object_get(e, "swhid")), cnt);
	ck_assert_str_eq(json_string_value(json_object_get(e, "reason")), why);
	free(cnt);
	free(swhid);
}

/* A blob deleted from the store: done, left_out 1, the manifest in both formats, the
 * folder byte-identical to the source minus that file. */
START_TEST(test_missing_blob)
{
	char *id = itest_make_tree("m", 300000);
	char *got = itest_upload_tree("m");
	ck_assert_str_eq(got, id);
	/* name.txt holds the tree's name: no other tree shares its blob */
	char *blob = delete_blob("m/src/lib/deep/er/name.txt");

	json_t *st = cook_wait(id, NULL);
	expect_done(st, 1);
	json_decref(st);
	download(id, NULL, "m.tar.gz");
	/* the manifest is the last entry, beside the folder */
	char *last = itest_sh_out("tar tzf m.tar.gz | tail -n 1");
	char *want = xasprintf("swh:1:dir:%s.missing.json", id);
	ck_assert_str_eq(last, want);
	ck_assert_int_eq(
	    itest_sh("mkdir xt && tar xzf m.tar.gz -C xt && test $(ls xt | wc -l) -eq 2"), 0);
	char *mt = xasprintf("xt/%s", want);
	json_t *m = load_json(mt);
	check_manifest(m, id, "src/lib/deep/er/name.txt", blob, "missing from the store");
	json_decref(m);
	/* the source minus the left-out file (and the empty folder git does not keep) */
	ck_assert_int_eq(itest_sh("cp -a trees/m ref && rm ref/src/lib/deep/er/name.txt &&"
				  " rmdir ref/empty-dir && diff -r --no-dereference ref"
				  " xt/swh:1:dir:%s && test -x xt/swh:1:dir:%s/run.sh &&"
				  " test ! -e xt/swh:1:dir:%s/src/lib/deep/er/name.txt",
			     id, id, id),
	    0);

	st = cook_wait(id, "zip");
	expect_done(st, 1);
	json_decref(st);
	download(id, "zip", "m.zip");
	ck_assert_int_eq(itest_sh("mkdir xz && cd xz && unzip -qq ../m.zip && test $(ls | wc -l)"
				  " -eq 2 && cmp '%s' '../xt/%s' && diff -r --no-dereference"
				  " ../ref swh:1:dir:%s",
			     want, want, id),
	    0);
	free(mt);
	free(want);
	free(last);
	free(blob);
	free(got);
	free(id);
}
END_TEST

/* A content row gone from the archive: left out with "not in the archive". */
START_TEST(test_missing_row)
{
	char *id = itest_make_tree("r", 1000);
	free(itest_upload_tree("r"));
	char *blob = itest_sh_out("git hash-object trees/r/src/lib/deep/er/name.txt");
	char *sql = xasprintf(
	    "DELETE FROM contents WHERE sha1_git = decode('%s', 'hex') RETURNING 1", blob);
	char *n = itest_sql(sql);
	ck_assert_str_eq(n, "1");
	json_t *st = cook_wait(id, NULL);
	expect_done(st, 1);
	json_decref(st);
	download(id, NULL, "r.tar.gz");
	ck_assert_int_eq(itest_sh("tar xzf r.tar.gz -O swh:1:dir:%s.missing.json > r.json", id), 0);
	json_t *m = load_json("r.json");
	check_manifest(m, id, "src/lib/deep/er/name.txt", blob, "not in the archive");
	json_decref(m);
	free(n);
	free(sql);
	free(blob);
	free(id);
}
END_TEST

/* Nothing missing: no manifest, no left_out; only the folder in the archive. */
START_TEST(test_nothing_missing)
{
	char *id = itest_make_tree("c", 1000);
	free(itest_upload_tree("c"));
	json_t *st = cook_wait(id, NULL);
	expect_done(st, 0);
	json_decref(st);
	download(id, NULL, "c.tar.gz");
	ck_assert_int_eq(itest_sh("tar tzf c.tar.gz | grep -v '^swh:1:dir:%s/' | grep ."
				  " && exit 1; exit 0",
			     id),
	    0);
	st = cook_wait(id, "zip");
	expect_done(st, 0);
	json_decref(st);
	download(id, "zip", "c.zip");
	ck_assert_int_eq(itest_sh("unzip -Z1 c.zip | grep -v '^swh:1:dir:%s/' | grep ."
				  " && exit 1; exit 0",
			     id),
	    0);
	free(id);
}
END_TEST

/* The servers and one worker for all tests. */
static void
setup(void)
{
	itest_init("manifest", 6);
	itest_start_api();
	itest_start_worker("manifest-w");
}

int
main(void)
{
	Suite *s = suite_create("itest_manifest");
	TCase *tc = tcase_create("manifest");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_missing_blob);
	tcase_add_test(tc, test_missing_row);
	tcase_add_test(tc, test_nothing_missing);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
