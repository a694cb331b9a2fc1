/* itest_zip.c: zip bundles against the real server, Postgres and Redis: cook a directory
 * with ?format=zip, poll, download, unzip and re-hash with git; tar.gz and zip of one
 * directory are two jobs; a second cook gives the same bytes; a bad format is a 400. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "tests/itest.h"

/* Uploads a tar.gz of a reference tree and returns the id the server gives. */
static char *
upload(const char *file)
{
	struct itest_resp r;
	itest_http_file(&r, "POST", "/directories", IT_USER, file);
	ck_assert_msg(r.status == 201, "upload %s: %ld %s", file, r.status, r.body.data);
	char *out = xstrdup(json_string_value(json_object_get(r.json, "id")));
	itest_resp_free(&r);
	return out;
}

/* True when s ends with tail. */
static bool
ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	return n >= t && strcmp(s + n - t, tail) == 0;
}

/* POSTs a cook and checks the answer's status code; returns the job id. */
static json_int_t
cook(const char *path, long want, const char *want_format)
{
	struct itest_resp r;
	itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
	ck_assert_msg(r.status == want, "POST %s: %ld %s", path, r.status, r.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "format")), want_format);
	json_int_t job = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	return job;
}

/* Waits for the status at path to be done. */
static void
expect_done(const char *path)
{
	json_t *st = itest_wait_status(path, 60);
	char *dump = json_dumps(st, 0);
	ck_assert_msg(strcmp(json_string_value(json_object_get(st, "status")), "done") == 0,
	    "cook ended %s", dump);
	free(dump);
	json_decref(st);
}

/* Downloads path, checks the headers against the bytes, saves them in IT.dir/file and
 * returns the ETag (caller frees). */
static char *
download(const char *path, const char *ctype, const char *filename, const char *file)
{
	struct itest_resp r;
	unsigned char md[32];
	char hex[65];

	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body.data);
	ck_assert_str_eq(itest_header(&r, "Content-Type"), ctype);
	ck_assert_int_eq(atoll(itest_header(&r, "Content-Length")), (long long)r.body.len);
	char *disp = xasprintf("attachment; filename=\"%s\"", filename);
	ck_assert_str_eq(itest_header(&r, "Content-Disposition"), disp);
	free(disp);
	SHA256((const unsigned char *)r.body.data, r.body.len, md);
	hex_encode(md, 32, hex);
	char *b64 = base64_encode(md, 32);
	char *digest = xasprintf("sha-256=%s", b64);
	ck_assert_str_eq(itest_header(&r, "Digest"), digest);
	char *etag = xasprintf("\"%s\"", hex);
	ck_assert_str_eq(itest_header(&r, "ETag"), etag);
	char *full = xasprintf("%s/%s", IT.dir, file);
	FILE *f = fopen(full, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(r.body.data, 1, r.body.len, f), r.body.len);
	ck_assert_int_eq(fclose(f), 0);
	free(full);
	free(digest);
	free(b64);
	itest_resp_free(&r);
	return etag;
}

/* Expires a job as a worker may (what expiry does), so the next POST cooks again. */
static void
expire_job(json_int_t job)
{
	struct itest_resp r;
	char *jobpath = xasprintf("/jobs/%lld", (long long)job);
	const char *body = "{\"state\":\"expired\"}";
	itest_http(
	    &r, "PATCH", jobpath, IT_WORKER, body, strlen(body), "Content-Type: application/json");
	ck_assert_msg(r.status == 200, "expire: %ld %s", r.status, r.body.data);
	itest_resp_free(&r);
	free(jobpath);
}

/* The whole path for zip, next to the tar.gz of the same directory. */
START_TEST(test_zip_path)
{
	struct itest_resp r;
	char *gitid = itest_make_tree("z", 1024 * 1024 + 5);
	ck_assert_int_eq(itest_sh("tar czf z.tar.gz -C trees/z ."), 0);
	char *id = upload("z.tar.gz");
	ck_assert_str_eq(id, gitid);

	char *tgz = xasprintf("/vault/directory/%s", id);
	char *zip = xasprintf("/vault/directory/%s?format=zip", id);
	char *tgz_status = xasprintf("/vault/directory/%s/status", id);
	char *zip_status = xasprintf("/vault/directory/%s/status?format=zip", id);

	/* Never asked for: 404 for the zip. */
	itest_http(&r, "GET", zip_status, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);

	/* Cook the zip: 201 with fetch_url carrying ?format=zip; again: 200, same job. */
	itest_http(&r, "POST", zip, IT_USER, NULL, 0, NULL);
	ck_assert_msg(r.status == 201, "cook: %ld %s", r.status, r.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "format")), "zip");
	const char *fetch = json_string_value(json_object_get(r.json, "fetch_url"));
	ck_assert_msg(fetch != NULL && ends_with(fetch, zip), "fetch_url %s", fetch);
	json_int_t zjob = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	ck_assert_int_eq(cook(zip, 200, "zip"), zjob);

	/* The tar.gz is another job, with its own dedup key. */
	json_int_t tjob = cook(tgz, 201, "tar.gz");
	ck_assert_int_ne(tjob, zjob);
	char *sql =
	    xasprintf("SELECT string_agg(dedup_key || '=' || (params->>'format'), ',' ORDER BY"
		      " id) FROM jobs WHERE dedup_key LIKE 'cook:directory:%s:%%'",
		id);
	char *keys = itest_sql(sql);
	char *want_keys =
	    xasprintf("cook:directory:%s:zip=zip,cook:directory:%s:tar.gz=tar.gz", id, id);
	ck_assert_str_eq(keys, want_keys);

	expect_done(zip_status);
	expect_done(tgz_status);
	/* Each status URL answers for its own job. */
	json_t *st = itest_wait_status(zip_status, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "id")), zjob);
	ck_assert_str_eq(json_string_value(json_object_get(st, "format")), "zip");
	ck_assert(ends_with(json_string_value(json_object_get(st, "fetch_url")), zip));
	json_decref(st);
	st = itest_wait_status(tgz_status, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "id")), tjob);
	ck_assert_str_eq(json_string_value(json_object_get(st, "format")), "tar.gz");
	ck_assert(ends_with(json_string_value(json_object_get(st, "fetch_url")), tgz));
	json_decref(st);

	/* Download both; the zip unzips (CRCs checked) to a tree with git's id. */
	char *zname = xasprintf("swh_1_dir_%s.zip", id);
	char *tname = xasprintf("swh_1_dir_%s.tar.gz", id);
	char *zetag = download(zip, "application/zip", zname, "bundle.zip");
	char *tetag = download(tgz, "application/gzip", tname, "bundle.tar.gz");
	ck_assert_str_ne(zetag, tetag);
	ck_assert_int_eq(itest_sh("unzip -tqq bundle.zip && mkdir zout && cd zout && "
				  "unzip -qq ../bundle.zip 2>../unzip-err.txt && "
				  "test ! -s ../unzip-err.txt"),
	    0);
	char *top = itest_sh_out("ls zout");
	char *want_top = xasprintf("swh:1:dir:%s", id);
	ck_assert_str_eq(top, want_top);
	char *outdir = xasprintf("%s/zout/%s", IT.dir, want_top);
	char *rehash = itest_git_tree_id(outdir);
	ck_assert_str_eq(rehash, id);
	/* The exec bit and the symlinks are there (git's id already says so). */
	ck_assert_int_eq(itest_sh("test -x 'zout/%s/run.sh' && test -L 'zout/%s/lib-link' &&"
				  " test \"$(readlink 'zout/%s/docs/readme-link')\" = ../README",
			     want_top, want_top, want_top),
	    0);
	/* Fixed times: every entry 1980-01-01 00:00 (MS-DOS time, the UT field's in UTC). */
	char *dates = itest_sh_out("TZ=UTC unzip -Z -T bundle.zip | awk '/^[-dl]r/ {print $7}'"
				   " | sort -u");
	ck_assert_str_eq(dates, "19800101.000000");
	char *first = itest_sh_out("unzip -Z1 bundle.zip | head -1");
	char *want_first = xasprintf("%s/", want_top);
	ck_assert_str_eq(first, want_first);

	/* HEAD and If-None-Match on the zip. */
	itest_http(&r, "HEAD", zip, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(itest_header(&r, "Content-Type"), "application/zip");
	ck_assert_str_eq(itest_header(&r, "ETag"), zetag);
	ck_assert_uint_eq(r.body.len, 0);
	itest_resp_free(&r);
	char *inm = xasprintf("If-None-Match: %s", zetag);
	itest_http(&r, "GET", zip, NULL, NULL, 0, inm);
	ck_assert_int_eq(r.status, 304);
	ck_assert_uint_eq(r.body.len, 0);
	itest_resp_free(&r);

	/* Expire the zip job: the zip is gone, the tar.gz is not; cooking again gives the same
	 * bytes (ETag). */
	expire_job(zjob);
	itest_http(&r, "GET", zip, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);
	itest_http(&r, "GET", zip_status, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);
	itest_http(&r, "HEAD", tgz, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	itest_resp_free(&r);
	json_int_t zjob2 = cook(zip, 201, "zip");
	ck_assert_int_ne(zjob2, zjob);
	expect_done(zip_status);
	char *zetag2 = download(zip, "application/zip", zname, "bundle2.zip");
	ck_assert_str_eq(zetag2, zetag);
	ck_assert_int_eq(itest_sh("cmp bundle.zip bundle2.zip"), 0);

	free(zetag2);
	free(want_first);
	free(first);
	free(dates);
	free(rehash);
	free(outdir);
	free(want_top);
	free(top);
	free(inm);
	free(zetag);
	free(tetag);
	free(zname);
	free(tname);
	free(want_keys);
	free(keys);
	free(sql);
	free(zip_status);
	free(tgz_status);
	free(zip);
	free(tgz);
	free(id);
	free(gitid);
}
END_TEST

/* Unknown formats are 400s naming the allowed ones, on every Vault path; SWH's flat stays
 * the tar.gz. */
START_TEST(test_bad_format)
{
	static const struct {
		const char *method, *suffix;
	} cases[] = {
	    {"POST", "?format=rar"},
	    {"POST", "?format=ZIP"},
	    {"POST", "?format="},
	    {"GET", "/status?format=7z"},
	    {"GET", "?format=tar"},
	    {"HEAD", "?format=zip64"},
	};
	struct itest_resp r;

	itest_make_tree("bad", 100);
	ck_assert_int_eq(itest_sh("tar czf bad.tar.gz -C trees/bad ."), 0);
	char *id = upload("bad.tar.gz");
	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		char *path = xasprintf("/vault/directory/%s%s", id, cases[i].suffix);
		itest_http(&r, cases[i].method, path, IT_USER, NULL, 0, NULL);
		ck_assert_msg(
		    r.status == 400, "%s %s: %ld %s", cases[i].method, path, r.status, r.body.data);
		if (strcmp(cases[i].method, "HEAD") != 0) {
			const char *err = json_string_value(json_object_get(r.json, "error"));
			ck_assert_msg(err != NULL && strstr(err, "formats: tar.gz, zip") != NULL,
			    "%s: error %s", path, r.body.data);
		}
		itest_resp_free(&r);
		free(path);
	}
	char *sql = xasprintf("SELECT count(*) FROM jobs WHERE dedup_key LIKE '%%%s%%'", id);
	char *n = itest_sql(sql);
	ck_assert_str_eq(n, "0");
	free(n);

	/* SWH's flat is the tar.gz job, whatever a zip job does. */
	char *zip = xasprintf("/vault/directory/%s?format=zip", id);
	json_int_t zjob = cook(zip, 201, "zip");
	char *swh = xasprintf("/api/1/vault/flat/swh:1:dir:%s/", id);
	itest_http(&r, "POST", swh, IT_USER, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "format")), "tar.gz");
	json_int_t sjob = json_integer_value(json_object_get(r.json, "id"));
	ck_assert_int_ne(sjob, zjob);
	itest_resp_free(&r);
	char *tgz = xasprintf("/vault/directory/%s", id);
	ck_assert_int_eq(cook(tgz, 200, "tar.gz"), sjob);
	char *zst = xasprintf("/vault/directory/%s/status?format=zip", id);
	expect_done(zst);
	free(zst);
	free(tgz);
	free(swh);
	free(zip);
	free(sql);
	free(id);
}
END_TEST

/* Secrets never reach the logs. */
START_TEST(test_no_secrets_in_logs)
{
	ck_assert_int_ne(
	    itest_sh("grep -R -l -e '%s' -e '%s' -e '%s' logs", IT_ADMIN, IT_WORKER, IT_USER), 0);
}
END_TEST

static void
setup(void)
{
	itest_init("zip", 4);
	itest_start_api();
	itest_start_worker("zip-w1");
	itest_start_worker("zip-w2");
}

int
main(void)
{
	Suite *s = suite_create("itest_zip");
	TCase *tc = tcase_create("zip");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_zip_path);
	tcase_add_test(tc, test_bad_format);
	tcase_add_test(tc, test_no_secrets_in_logs);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
