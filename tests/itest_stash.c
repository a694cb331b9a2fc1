/* itest_stash.c: the app stash against the real API and one worker (research
 * bits-service.md §1.5, docs/api.md "App stash"): POST /app_stash/entries (a zip made
 * with zip(1), its receipt checked against sha1sum and stat; bad bodies), /matches (the
 * size window, bad bodies, files stored by other means), /bundles (JSON and multipart,
 * entry order, modes, contents, identical bytes and one job per distinct zip, bad names,
 * missing sha1s, 2,000 files, a 100 MB file, a request parked until a worker comes), and
 * prints the latencies of a tiny, a cached and a 2,000-file bundle. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

#define BOUNDARY "StAsHbOuNdArY7"
#define MPTYPE "Content-Type: multipart/form-data; boundary=" BOUNDARY
#define JSONTYPE "Content-Type: application/json"

static int worker;
/* The last answer (freed by the next request); its body is NUL-terminated. */
static struct itest_resp R;
/* The receipt of app.zip: [{fn, sha1, size, mode}] (set by the first test). */
static json_t *receipt;

/* POST path as a user with one more header; the answer is in R; returns its status. */
static long
post(const char *path, const void *body, size_t len, const char *header)
{
	itest_resp_free(&R);
	itest_http(&R, "POST", path, IT_USER, body, len, header);
	buf_addc(&R.body, '\0');
	R.body.len--;
	return R.status;
}

/* The error's "description" (the bits-service's form), or "". */
static const char *
desc(void)
{
	const char *d = json_string_value(json_object_get(R.json, "description"));
	return d != NULL ? d : "";
}

/* POST path with a multipart body: the zip file (NULL: none) as a file part named
 * field, and resources (NULL: none) as a file part "resources". */
static long
post_form(const char *path, const char *field, const char *zipfile, const char *resources)
{
	struct buf b;
	size_t len = 0;

	buf_init(&b);
	if (resources != NULL)
		itest_mp_part(
		    &b, BOUNDARY, "resources", "resources.json", resources, strlen(resources));
	if (zipfile != NULL) {
		char *zip = itest_slurp(zipfile, &len);
		itest_mp_part(&b, BOUNDARY, field, "app.zip", zip, len);
		free(zip);
	}
	itest_mp_end(&b, BOUNDARY);
	long status = post(path, b.data, b.len, MPTYPE);
	buf_free(&b);
	return status;
}

/* POST /app_stash/bundles with a JSON text body. */
static long
bundle_json(const char *body)
{
	return post("/app_stash/bundles", body, strlen(body), JSONTYPE);
}

static long
matches(const char *body)
{
	return post("/app_stash/matches", body, strlen(body), JSONTYPE);
}

static int
count_sql(const char *sql)
{
	char *v = itest_sql(sql);
	int n = atoi(v);
	free(v);
	return n;
}

static int
bundle_jobs(void)
{
	return count_sql("SELECT count(*) FROM jobs WHERE kind = 'stash_bundle'");
}

static int
blobs(void)
{
	char *out = itest_sh_out("find data/store/objects -type f | wc -l");
	int n = atoi(out);
	free(out);
	return n;
}

/* sha1sum of a file of IT.dir (caller frees). */
static char *
sha1_of(const char *file)
{
	char *s = itest_sh_out("sha1sum < '%s' | cut -c1-40", file);
	ck_assert_msg(strlen(s) == 40, "sha1sum %s: %s", file, s);
	return s;
}

/* The receipt's sha1 of fn (in app.zip). */
static const char *
sha1_in_receipt(const char *fn)
{
	size_t i;
	json_t *e;

	json_array_foreach(receipt, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "fn")), fn) == 0)
			return json_string_value(json_object_get(e, "sha1"));
	}
	ck_abort_msg("%s is not in the receipt", fn);
	return NULL;
}

/* ls -l's text of a regular file's permission bits (zipinfo prints the same). */
static void
mode_text(unsigned int mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";

	out[0] = '-';
	for (int i = 0; i < 9; i++)
		out[i + 1] = (mode & (0400u >> i)) ? rwx[i] : '-';
	out[10] = '\0';
}

struct want {
	const char *name; /* in the zip */
	const char *src; /* the original file under IT.dir */
	unsigned int mode;
};

/* The zip file (under IT.dir) is valid and holds exactly want, in order, with those modes
 * and the originals' bytes. */
static void
check_zip(const char *zip, const struct want *want, size_t n)
{
	struct buf names;

	ck_assert_msg(itest_sh("unzip -Z '%s' >/dev/null && unzip -tqq '%s'", zip, zip) == 0,
	    "%s is not a valid zip", zip);
	buf_init(&names);
	for (size_t i = 0; i < n; i++)
		buf_printf(&names, "%s%s", i ? "\n" : "", want[i].name);
	char *got = itest_sh_out("unzip -Z1 '%s'", zip);
	ck_assert_str_eq(got, names.data);
	free(got);
	buf_free(&names);
	for (size_t i = 0; i < n; i++) {
		char m[11];
		mode_text(want[i].mode, m);
		char *line = itest_sh_out("unzip -Z '%s' '%s' | cut -d' ' -f1", zip, want[i].name);
		ck_assert_msg(strcmp(line, m) == 0, "%s: mode %s, not %s", want[i].name, line, m);
		free(line);
		ck_assert_msg(itest_sh("unzip -p '%s' '%s' | cmp -s - '%s'", zip, want[i].name,
				  want[i].src) == 0,
		    "%s: not the bytes of %s", want[i].name, want[i].src);
	}
}

static void
setup(void)
{
	itest_init("stash", 15);
	itest_env("BITSVAULT_BITS_APP_STASH_MAX_BODY_SIZE=8M");
	itest_env("BITSVAULT_BITS_APP_STASH_MIN_SIZE=64");
	itest_env("BITSVAULT_BITS_APP_STASH_MAX_SIZE=1M");
	itest_env("BITSVAULT_MAX_UPLOAD_SIZE=256M");
	itest_start_api();
	worker = itest_start_worker("stash-w1");
	/* The application: files in folders, an executable, 777 and 600 files, a symlink and
	 * an empty folder (neither is a stash entry). */
	int rc = itest_sh("set -e; mkdir -p src/app/lib/deep src/bin src/empty;"
			  " seq 1 100 > src/app/app.rb; seq 100 200 > src/app/lib/deep/util.rb;"
			  " (echo '#!/bin/sh'; seq 1 40) > src/bin/run.sh;"
			  " seq 200 260 > src/open.txt; seq 300 360 > src/secret.txt;"
			  " chmod 644 src/app/app.rb src/app/lib/deep/util.rb;"
			  " chmod 755 src/bin/run.sh; chmod 777 src/open.txt;"
			  " chmod 600 src/secret.txt; ln -s app/app.rb src/link;"
			  " cd src && zip -qry ../app.zip app bin empty open.txt secret.txt link");
	ck_assert_int_eq(rc, 0);
}

static void
teardown(void)
{
	itest_resp_free(&R);
	json_decref(receipt);
	itest_teardown();
}

START_TEST(test_entries)
{
	size_t i;
	json_t *e;

	ck_assert_msg(post_form("/app_stash/entries", "application", "app.zip", NULL) == 201,
	    "entries: %ld %s", R.status, R.body.data);
	ck_assert(json_is_array(R.json));
	receipt = json_incref(R.json);
	/* Every regular file, and only those, with sha1sum's sha1 and stat's size and mode. */
	char *nfiles = itest_sh_out("find src -type f | wc -l");
	ck_assert_int_eq((int)json_array_size(receipt), atoi(nfiles));
	ck_assert_int_eq((int)json_array_size(receipt), 5);
	free(nfiles);
	json_array_foreach(receipt, i, e)
	{
		const char *fn = json_string_value(json_object_get(e, "fn"));
		ck_assert_ptr_nonnull(fn);
		char *want = itest_sh_out("cd src && test -f '%s' && ! test -L '%s' &&"
					  " printf '%%s %%s' $(sha1sum < '%s' | cut -c1-40)"
					  " \"$(stat -c '%%s %%a' '%s')\"",
		    fn, fn, fn, fn);
		char *got = xasprintf("%s %lld %s", json_string_value(json_object_get(e, "sha1")),
		    (long long)json_integer_value(json_object_get(e, "size")),
		    json_string_value(json_object_get(e, "mode")));
		ck_assert_str_eq(got, want);
		free(got);
		free(want);
	}
	/* In the zip's order. */
	struct buf fns;
	buf_init(&fns);
	json_array_foreach(receipt, i, e)
	    buf_printf(&fns, "%s%s", i ? " " : "", json_string_value(json_object_get(e, "fn")));
	char *order = itest_sh_out("cd src && for f in $(unzip -Z1 ../app.zip); do"
				   " test -f $f && ! test -L $f && printf '%%s ' $f; done");
	ck_assert_str_eq(fns.data, order);
	free(order);
	buf_free(&fns);
	/* The same zip again: the same receipt, nothing new stored. */
	int before = blobs(), contents = count_sql("SELECT count(*) FROM contents");
	ck_assert_int_eq(post_form("/app_stash/entries", "application", "app.zip", NULL), 201);
	ck_assert(json_equal(R.json, receipt));
	ck_assert_int_eq(blobs(), before);
	ck_assert_int_eq(count_sql("SELECT count(*) FROM contents"), contents);

	/* Not multipart; no application field. */
	size_t zlen;
	char *zip = itest_slurp("app.zip", &zlen);
	ck_assert_int_eq(
	    post("/app_stash/entries", zip, zlen, "Content-Type: application/zip"), 400);
	ck_assert_str_eq(desc(), "Could not retrieve 'application' form parameter");
	free(zip);
	ck_assert_int_eq(post_form("/app_stash/entries", "other", "app.zip", NULL), 400);
	/* Not a zip, a zip with ../ or an absolute path, a truncated and a corrupt zip. */
	int rc = itest_sh(
	    "set -e; seq 1 500 > notzip.bin; mkdir -p ev/XX; seq 1 30 > ev/XX/evil.txt;"
	    " (cd ev && zip -q ../dotdot.zip XX/evil.txt && zip -q ../abs.zip XX/evil.txt);"
	    " perl -pi -e 's#XX/evil#../evil#g' dotdot.zip; perl -pi -e 's#XX/evil#/X/evil#g' abs.zip;"
	    " unzip -Z1 dotdot.zip | grep -qx '../evil.txt'; unzip -Z1 abs.zip | grep -qx '/X/evil.txt';"
	    " head -c 120 app.zip > truncated.zip; seq 1 3000 > ev/c.txt;"
	    " (cd ev && zip -q ../corrupt.zip c.txt);"
	    " head -c 200 /dev/zero | dd of=corrupt.zip bs=1 seek=120 conv=notrunc 2>/dev/null");
	ck_assert_int_eq(rc, 0);
	/* Each refused for its own reason (file, then a word of the message). */
	const char *bad[][2] = {{"notzip.bin", "Not a valid zip file"},
	    {"dotdot.zip", "path traversal in entry '../evil.txt'"},
	    {"abs.zip", "absolute path in entry '/X/evil.txt'"},
	    {"truncated.zip", "Not a valid zip file: "}, {"corrupt.zip", "corrupt archive"}};
	before = blobs();
	contents = count_sql("SELECT count(*) FROM contents");
	for (i = 0; i < BV_NELEM(bad); i++) {
		post_form("/app_stash/entries", "application", bad[i][0], NULL);
		ck_assert_msg(R.status == 400, "%s: %ld %s", bad[i][0], R.status, R.body.data);
		ck_assert_msg(strstr(desc(), "Bad Request: Not a valid zip file") == desc() &&
			strstr(desc(), bad[i][1]) != NULL,
		    "%s: %s", bad[i][0], R.body.data);
	}
	ck_assert_int_eq(count_sql("SELECT count(*) FROM contents"), contents);
	/* Over the app stash's body limit (8M). */
	ck_assert_int_eq(itest_sh("head -c 9M /dev/urandom > huge.bin"), 0);
	ck_assert_int_eq(post_form("/app_stash/entries", "application", "huge.bin", NULL), 413);
}
END_TEST

START_TEST(test_matches)
{
	size_t i;
	json_t *e, *ask = json_array();
	char *body;

	ck_assert_ptr_nonnull(receipt);
	/* Every stored file matches, fn and mode echoed as sent. */
	json_array_foreach(receipt, i, e)
	{
		json_array_append_new(ask,
		    json_pack("{s:s, s:O, s:O, s:s}", "fn", "renamed/x", "sha1",
			json_object_get(e, "sha1"), "size", json_object_get(e, "size"), "mode",
			"640"));
	}
	body = json_dumps(ask, JSON_COMPACT);
	ck_assert_int_eq(matches(body), 200);
	ck_assert_msg(json_equal(R.json, ask), "matches: %s", R.body.data);
	free(body);
	json_decref(ask);

	/* Unknown sha1s, wrong lengths, sizes outside [64, 1M] (inclusive) do not. */
	const char *s = sha1_in_receipt("app/app.rb");
	char *q = xasprintf("[{\"fn\":\"a\",\"sha1\":\"%s\",\"size\":64},"
			    "{\"fn\":\"b\",\"sha1\":\"%s\",\"size\":1048576},"
			    "{\"sha1\":\"%s\",\"size\":63},{\"sha1\":\"%s\",\"size\":1048577},"
			    "{\"sha1\":\"%.39s\",\"size\":100},{\"sha1\":\"%s0\",\"size\":100},"
			    "{\"sha1\":\"0123456789abcdef0123456789abcdef01234567\",\"size\":100}]",
	    s, s, s, s, s, s);
	ck_assert_int_eq(matches(q), 200);
	free(q);
	q = xasprintf("[{\"fn\":\"a\",\"sha1\":\"%s\",\"size\":64,\"mode\":\"\"},"
		      "{\"fn\":\"b\",\"sha1\":\"%s\",\"size\":1048576,\"mode\":\"\"}]",
	    s, s);
	json_t *want = json_loads(q, 0, NULL);
	ck_assert_msg(json_equal(R.json, want), "window: %s", R.body.data);
	json_decref(want);
	free(q);

	/* [] is a JSON 422; other bad bodies a plain-text one. */
	ck_assert_int_eq(matches("[]"), 422);
	ck_assert_ptr_nonnull(strstr(itest_header(&R, "Content-Type"), "application/json"));
	ck_assert_str_eq(desc(), "The request is semantically invalid: must be a non-empty array.");
	const char *bad[] = {"{\"sha1\":\"x\"}", "[{\"fn\":\"a\",\"size\":100}]",
	    "[{\"sha1\":\"0123456789abcdef0123456789abcdef01234567\",\"size\":-1}]", "[", "42"};
	for (i = 0; i < BV_NELEM(bad); i++) {
		ck_assert_msg(matches(bad[i]) == 422, "%s: %ld", bad[i], R.status);
		ck_assert_ptr_nonnull(strstr(itest_header(&R, "Content-Type"), "text/plain"));
		ck_assert_msg(strncmp(R.body.data, "Invalid body", 12) == 0, "%s", R.body.data);
	}

	/* The stash is the whole archive: a file of an archived directory matches, and so
	 * does a package's file (checked last: see the report). */
	ck_assert_int_eq(
	    itest_sh("mkdir -p trees/other/d && seq 5000 5100 > trees/other/d/f.txt"), 0);
	free(itest_upload_tree("other"));
	char *s1 = sha1_of("trees/other/d/f.txt");
	q = xasprintf("[{\"fn\":\"f\",\"sha1\":\"%s\",\"size\":500,\"mode\":\"644\"}]", s1);
	ck_assert_int_eq(matches(q), 200);
	want = json_loads(q, 0, NULL);
	ck_assert_msg(json_equal(R.json, want), "archived file: %s", R.body.data);
	json_decref(want);
	free(q);
	free(s1);

	struct buf b;
	size_t plen = 0;
	ck_assert_int_eq(itest_sh("seq 9000 9100 > pkg.bin"), 0);
	char *pkg = itest_slurp("pkg.bin", &plen);
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "package", "p.zip", pkg, plen);
	itest_mp_end(&b, BOUNDARY);
	itest_resp_free(&R);
	itest_http(&R, "PUT", "/packages/stash-pkg", IT_USER, b.data, b.len, MPTYPE);
	ck_assert_msg(R.status == 201, "package: %ld", R.status);
	buf_free(&b);
	free(pkg);
	s1 = sha1_of("pkg.bin");
	q = xasprintf("[{\"fn\":\"p\",\"sha1\":\"%s\",\"size\":%zu,\"mode\":\"644\"}]", s1, plen);
	ck_assert_int_eq(matches(q), 200);
	want = json_loads(q, 0, NULL);
	ck_assert_msg(
	    json_equal(R.json, want), "a package's file is not in the stash: %s", R.body.data);
	json_decref(want);
	free(q);
	free(s1);
}
END_TEST

/* A bundle's JSON body from a list of "fn|receipt fn|mode" ("-" for no mode). */
static char *
resources(const char *const *spec, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		char *copy = xstrdup(spec[i]);
		char *fn = strtok(copy, "|"), *from = strtok(NULL, "|"), *mode = strtok(NULL, "|");
		json_t *e = json_pack("{s:s, s:s}", "fn", fn, "sha1", sha1_in_receipt(from));
		if (strcmp(mode, "-") != 0)
			json_object_set_new(e, "mode", json_string(mode));
		json_array_append_new(a, e);
		free(copy);
	}
	char *text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return text;
}

START_TEST(test_bundles)
{
	static const char *const spec[] = {"r/one.rb|app/app.rb|644", "r/run|bin/run.sh|755",
	    "nomode|secret.txt|-", "badmode|open.txt|9zz", "six|app/lib/deep/util.rb|600",
	    "again.rb|app/app.rb|0666"};
	static const struct want want[] = {{"r/one.rb", "src/app/app.rb", 0644},
	    {"r/run", "src/bin/run.sh", 0755}, {"nomode", "src/secret.txt", 0744},
	    {"badmode", "src/open.txt", 0744}, {"six", "src/app/lib/deep/util.rb", 0600},
	    {"again.rb", "src/app/app.rb", 0666}};
	char *body = resources(spec, BV_NELEM(spec));
	int jobs = bundle_jobs();
	uint64_t t0 = now_ms();

	ck_assert_msg(bundle_json(body) == 200, "bundle: %ld %s", R.status, R.body.data);
	uint64_t first = now_ms() - t0;
	ck_assert_str_eq(itest_header(&R, "Content-Type"), "application/zip");
	itest_save(&R, "b1.zip");
	check_zip("b1.zip", want, BV_NELEM(want));
	ck_assert_int_eq(bundle_jobs(), jobs + 1);
	/* The same request: the same bytes, from the same job. */
	size_t len1 = 0;
	char *b1 = itest_slurp("b1.zip", &len1);
	t0 = now_ms();
	ck_assert_int_eq(bundle_json(body), 200);
	uint64_t cached = now_ms() - t0;
	ck_assert_uint_eq(R.body.len, len1);
	ck_assert(memcmp(R.body.data, b1, len1) == 0);
	ck_assert_int_eq(bundle_jobs(), jobs + 1);
	free(b1);
	free(body);
	printf("stash latency: bundle of %zu small files: %llu ms first, %llu ms cached\n",
	    BV_NELEM(spec), (unsigned long long)first, (unsigned long long)cached);

	/* Multipart: the application zip's files first (their own modes), then resources. */
	ck_assert_int_eq(itest_sh("set -e; mkdir -p app2/web; seq 7000 7100 > app2/web/index.html;"
				  " seq 8000 8100 > app2/Procfile; chmod 640 app2/web/index.html;"
				  " chmod 755 app2/Procfile;"
				  " cd app2 && zip -qr ../app2.zip web Procfile"),
	    0);
	static const char *const spec2[] = {"lib/util.rb|app/lib/deep/util.rb|644", "x|open.txt|-"};
	static const struct want want2[] = {{"web/index.html", "app2/web/index.html", 0640},
	    {"Procfile", "app2/Procfile", 0755}, {"lib/util.rb", "src/app/lib/deep/util.rb", 0644},
	    {"x", "src/open.txt", 0744}};
	body = resources(spec2, BV_NELEM(spec2));
	jobs = bundle_jobs();
	ck_assert_msg(post_form("/app_stash/bundles", "application", "app2.zip", body) == 200,
	    "multipart bundle: %ld %s", R.status, R.body.data);
	itest_save(&R, "b2.zip");
	check_zip("b2.zip", want2, BV_NELEM(want2));
	ck_assert_int_eq(bundle_jobs(), jobs + 1);
	free(body);
	/* The application's files went into the stash. */
	char *s = sha1_of("app2/Procfile");
	char *q = xasprintf("[{\"sha1\":\"%s\",\"size\":100}]", s);
	ck_assert_int_eq(matches(q), 200);
	ck_assert_int_eq((int)json_array_size(R.json), 1);
	free(q);

	/* Bad names, duplicates, a clash with an application file: 422, no job. */
	const char *names[] = {
	    "../x", "/abs", "a//b", "./x", "a/../b", "a/", "", "back\\\\slash", "ctl\\u0001"};
	jobs = bundle_jobs();
	for (size_t i = 0; i < BV_NELEM(names); i++) {
		q = xasprintf("[{\"fn\":\"ok\",\"sha1\":\"%s\"},{\"fn\":\"%s\",\"sha1\":\"%s\"}]",
		    s, names[i], s);
		ck_assert_msg(bundle_json(q) == 422, "'%s': %ld", names[i], R.status);
		ck_assert_msg(strstr(desc(), "The request is semantically invalid") == desc(),
		    "'%s': %s", names[i], R.body.data);
		free(q);
	}
	q = xasprintf("[{\"fn\":\"d\",\"sha1\":\"%s\"},{\"fn\":\"d\",\"sha1\":\"%s\"}]", s,
	    sha1_in_receipt("open.txt"));
	ck_assert_int_eq(bundle_json(q), 422);
	free(q);
	q = xasprintf("[{\"fn\":\"Procfile\",\"sha1\":\"%s\"}]", sha1_in_receipt("open.txt"));
	ck_assert_int_eq(post_form("/app_stash/bundles", "application", "app2.zip", q), 422);
	ck_assert_msg(strstr(desc(), "Procfile") != NULL, "%s", R.body.data);
	free(q);
	/* A sha1 the stash lacks (the first one named); entries without fn or sha1. */
	const char *miss = "0123456789abcdef0123456789abcdef01234567";
	q = xasprintf("[{\"fn\":\"a\",\"sha1\":\"%s\"},{\"fn\":\"b\",\"sha1\":\"%s\"},"
		      "{\"fn\":\"c\",\"sha1\":\"%.39s8\"}]",
	    s, miss, miss);
	ck_assert_int_eq(bundle_json(q), 404);
	char *nf = xasprintf("%s not found", miss);
	ck_assert_str_eq(desc(), nf);
	free(nf);
	free(q);
	q = xasprintf("[{\"fn\":\"a\",\"sha1\":\"%s\"},{\"fn\":\"b\"}]", s);
	ck_assert_int_eq(bundle_json(q), 422);
	ck_assert_str_eq(
	    desc(), "The request is semantically invalid: key `sha1` missing or empty");
	free(q);
	q = xasprintf("[{\"sha1\":\"%s\",\"mode\":\"644\"}]", s);
	ck_assert_int_eq(bundle_json(q), 422);
	ck_assert_str_eq(desc(), "The request is semantically invalid: key `fn` missing or empty");
	free(q);
	ck_assert_int_eq(bundle_json("{\"fn\":\"a\"}"), 422);
	ck_assert_int_eq(bundle_jobs(), jobs);
	free(s);
}
END_TEST

/* Runs `bitsvault-worker --gc` with gc_grace 0: everything nothing names goes. */
static void
collect_now(void)
{
	ck_assert_int_eq(
	    itest_sh("BITSVAULT_DATA_DIR='%s' BITSVAULT_DATABASE_URL='%s' "
		     "BITSVAULT_REDIS_URL='%s' BITSVAULT_LISTEN='%s' BITSVAULT_GC_GRACE=0 "
		     "'%s/worker/bitsvault-worker' --gc >gc.out 2>>logs/gc.log",
		IT.data_dir, IT.db_url, IT.redis_url, IT.listen, getenv("BV_TOP_BUILDDIR")),
	    0);
}

/* Blobs the collector must keep, and results it took: an upload waiting for its worker
 * (named only in its job's params) survives a collection; a done bundle whose blob is gone
 * is made again on the next request instead of failing forever. */
START_TEST(test_lost_blobs)
{
	/* 1. A package PUT with resources waits for a worker; a collection meanwhile. */
	itest_stop_worker(worker, SIGTERM);
	char *s = sha1_of("src/secret.txt");
	char *res = xasprintf("[{\"fn\":\"kept/secret.txt\",\"sha1\":\"%s\",\"mode\":\"640\"}]", s);
	char *path = xasprintf("%s/res.json", IT.dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(res, f);
	fclose(f);
	free(path);
	ck_assert_int_eq(
	    itest_sh("(curl -s --max-time 120 -o gcput.out -w '%%{http_code}' -X PUT"
		     " -H 'Authorization: Bearer %s' -F resources='<res.json' -F package=@app.zip"
		     " '%s/packages/waits-for-gc' > gcput.tmp 2>&1 </dev/null;"
		     " mv gcput.tmp gcput.status) >/dev/null 2>&1 &",
		IT_USER, IT.url),
	    0);
	char *queued = NULL;
	for (int i = 0; i < 100; i++) {
		free(queued);
		queued = itest_sql("SELECT count(*) FROM jobs WHERE kind = 'package_upload' AND"
				   " state = 'queued' AND params ? 'bits'");
		if (strcmp(queued, "0") != 0)
			break;
		usleep(100000);
	}
	ck_assert_str_ne(queued, "0");
	free(queued);
	collect_now();
	worker = itest_start_worker("stash-w3");
	char *st = NULL;
	for (int i = 0; i < 3000 && itest_sh("test -e gcput.status") != 0; i++)
		usleep(10000);
	st = itest_sh_out("cat gcput.status");
	ck_assert_msg(strcmp(st, "201") == 0, "PUT after a collection: %s %s", st,
	    itest_sh_out("cat gcput.out"));
	free(st);

	/* 2. A bundle whose blob is lost: one 503, then made again. */
	char *q = xasprintf("[{\"fn\":\"lost/secret.txt\",\"sha1\":\"%s\",\"mode\":\"600\"}]", s);
	ck_assert_int_eq(bundle_json(q), 200);
	int jobs = bundle_jobs();
	char *blob = itest_sql("SELECT encode(b.sha256, 'hex') FROM bundles b JOIN jobs j ON"
			       " j.id = b.job_id WHERE j.kind = 'stash_bundle' ORDER BY j.id DESC"
			       " LIMIT 1");
	ck_assert_int_eq(strlen(blob), 64);
	ck_assert_int_eq(
	    itest_sh("rm '%s/store/objects/%.2s/%.2s/%s'", IT.data_dir, blob, blob + 2, blob), 0);
	ck_assert_int_eq(bundle_json(q), 503);
	ck_assert_msg(bundle_json(q) == 200, "after the loss: %ld %s", R.status, R.body.data);
	ck_assert_int_eq(bundle_jobs(), jobs + 1);
	free(blob);
	free(q);
	free(res);
	free(s);
}
END_TEST

/* A bits-service package PUT with matched resources (research §1.3): the zip's files and
 * the resources from the stash, assembled by a worker into the package; the bits-service's
 * 422 for a sha1 the stash lacks, and names that climb out refused. */
START_TEST(test_package_with_resources)
{
	static const char *const spec[] = {"extra/one.rb|app/app.rb|600"};
	char *res = resources(spec, BV_NELEM(spec)), *zip;
	size_t len = 0;
	struct buf b;

	zip = itest_slurp("app.zip", &len);
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "resources", NULL, res, strlen(res));
	itest_mp_part(&b, BOUNDARY, "package", "app.zip", zip, len);
	itest_mp_end(&b, BOUNDARY);
	itest_resp_free(&R);
	itest_http(&R, "PUT", "/packages/assembled", IT_USER, b.data, b.len, MPTYPE);
	ck_assert_msg(R.status == 201, "PUT: %ld %s", R.status, R.body.data);
	itest_resp_free(&R);
	itest_http(&R, "GET", "/packages/assembled", IT_USER, NULL, 0, NULL);
	ck_assert_int_eq(R.status, 200);
	itest_save(&R, "assembled.zip");
	ck_assert_int_eq(
	    itest_sh("unzip -Z1 assembled.zip | grep -qx extra/one.rb && "
		     "unzip -Z1 assembled.zip | grep -qx app/app.rb && "
		     "unzip -p assembled.zip extra/one.rb | cmp -s - src/app/app.rb && "
		     "unzip -Zl assembled.zip extra/one.rb | grep -q '^-rw-------'"),
	    0);
	buf_free(&b);

	/* A sha1 the stash lacks, and a name that climbs out: 422, nothing stored. */
	const char *bad[][2] = {
	    {"[{\"fn\":\"x\",\"sha1\":\"0000000000000000000000000000000000000007\"}]",
		"not all specified sha1s could be found in app-stash"},
	    {"[{\"fn\":\"../x\",\"sha1\":\"0000000000000000000000000000000000000007\"}]",
		"is not a relative path"},
	};
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		buf_init(&b);
		itest_mp_part(&b, BOUNDARY, "resources", NULL, bad[i][0], strlen(bad[i][0]));
		itest_mp_part(&b, BOUNDARY, "package", "app.zip", zip, len);
		itest_mp_end(&b, BOUNDARY);
		itest_resp_free(&R);
		itest_http(&R, "PUT", "/packages/refused", IT_USER, b.data, b.len, MPTYPE);
		buf_addc(&R.body, '\0');
		ck_assert_msg(R.status == 422 && strstr(desc(), bad[i][1]) != NULL, "%ld %s",
		    R.status, R.body.data);
		buf_free(&b);
	}
	itest_resp_free(&R);
	itest_http(&R, "GET", "/packages/refused", IT_USER, NULL, 0, NULL);
	ck_assert_int_eq(R.status, 404);
	free(zip);
	free(res);
}
END_TEST

START_TEST(test_bundle_many)
{
	size_t i;
	json_t *e, *ask = json_array();

	/* 2,000 small files into the stash (one zip), then one bundle of all of them. */
	ck_assert_int_eq(itest_sh("set -e; for i in $(seq 1 2000); do d=many/d$((i %% 20));"
				  " mkdir -p $d; echo \"small file $i of the many\" > $d/f$i.txt;"
				  " done; cd many && zip -qr ../many.zip ."),
	    0);
	ck_assert_msg(post_form("/app_stash/entries", "application", "many.zip", NULL) == 201,
	    "entries: %ld %s", R.status, R.body.data);
	ck_assert_int_eq((int)json_array_size(R.json), 2000);
	json_array_foreach(R.json, i, e)
	{
		char *fn = xasprintf("m/%s", json_string_value(json_object_get(e, "fn")));
		json_array_append_new(ask,
		    json_pack("{s:s, s:O, s:s}", "fn", fn, "sha1", json_object_get(e, "sha1"),
			"mode", "644"));
		free(fn);
	}
	char *body = json_dumps(ask, JSON_COMPACT);
	int jobs = bundle_jobs();
	uint64_t t0 = now_ms();
	ck_assert_msg(bundle_json(body) == 200, "bundle: %ld %s", R.status, R.body.data);
	uint64_t ms = now_ms() - t0;
	printf("stash latency: bundle of 2000 small files: %llu ms (%zu bytes)\n",
	    (unsigned long long)ms, R.body.len);
	ck_assert_int_eq(bundle_jobs(), jobs + 1);
	itest_save(&R, "many-out.zip");
	free(body);
	json_decref(ask);
	/* Every file, in the order asked, with its bytes. */
	ck_assert_int_eq(
	    itest_sh("set -e; unzip -Z many-out.zip >/dev/null;"
		     " unzip -Z1 many-out.zip > got.txt;"
		     " test $(wc -l < got.txt) -eq 2000;"
		     " unzip -Z1 many.zip | grep -v '/$' | sed 's,^,m/,' | diff -q - got.txt;"
		     " mkdir -p many-x && unzip -qo many-out.zip -d many-x;"
		     " diff -r many many-x/m"),
	    0);
	char *m = itest_sh_out("unzip -Z many-out.zip m/d1/f1.txt | cut -d' ' -f1");
	ck_assert_str_eq(m, "-rw-r--r--");
	free(m);
}
END_TEST

START_TEST(test_bundle_big)
{
	/* A 100 MB file stored by an archive upload, bundled from the stash. */
	ck_assert_int_eq(
	    itest_sh("mkdir -p trees/big && head -c 100M /dev/urandom > trees/big/big.bin"), 0);
	free(itest_upload_tree("big"));
	char *s = sha1_of("trees/big/big.bin");
	char *q = xasprintf("[{\"fn\":\"deep/big.bin\",\"sha1\":\"%s\",\"mode\":\"600\"}]", s);
	uint64_t t0 = now_ms();
	ck_assert_msg(bundle_json(q) == 200, "bundle: %ld %s", R.status, R.body.data);
	printf("stash latency: bundle of one 100 MB file: %llu ms\n",
	    (unsigned long long)(now_ms() - t0));
	itest_save(&R, "big.zip");
	itest_resp_free(&R);
	memset(&R, 0, sizeof R);
	static const struct want want[] = {{"deep/big.bin", "trees/big/big.bin", 0600}};
	check_zip("big.zip", want, 1);
	itest_sh("rm -f big.zip trees/big/big.bin big.tar");
	free(q);
	free(s);
}
END_TEST

START_TEST(test_bundle_waits)
{
	/* No worker: the request stays open (parked), and is answered once a worker comes. */
	itest_stop_worker(worker, SIGTERM);
	char *s = sha1_of("src/secret.txt");
	char *q = xasprintf("[{\"fn\":\"waited/for\",\"sha1\":\"%s\",\"mode\":\"640\"}]", s);
	char *path = xasprintf("%s/wait.json", IT.dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(q, f);
	fclose(f);
	free(path);
	int jobs = bundle_jobs();
	ck_assert_int_eq(
	    itest_sh("(curl -s --max-time 120 -o wait.zip -w '%%{http_code}'"
		     " -H 'Authorization: Bearer %s' -H '" JSONTYPE "' --data-binary @wait.json"
		     " '%s/app_stash/bundles' > wait.tmp 2>&1 </dev/null & echo $! > wait.pid;"
		     " wait; mv wait.tmp wait.status) >/dev/null 2>&1 &",
		IT_USER, IT.url),
	    0);
	sleep(2);
	ck_assert_msg(itest_sh("test ! -e wait.status && kill -0 $(cat wait.pid)") == 0,
	    "the request was answered without a worker");
	ck_assert_int_eq(bundle_jobs(), jobs + 1);
	char *state = itest_sql(
	    "SELECT state FROM jobs WHERE kind = 'stash_bundle' ORDER BY id DESC LIMIT 1");
	ck_assert_str_eq(state, "queued");
	free(state);
	/* The API still answers others meanwhile. */
	struct itest_resp r;
	itest_http(&r, "GET", "/status", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	itest_resp_free(&r);

	uint64_t t0 = now_ms();
	worker = itest_start_worker("stash-w2");
	char *st = NULL;
	for (int i = 0; i < 3000; i++) {
		if (itest_sh("test -e wait.status") == 0)
			break;
		usleep(10000);
	}
	uint64_t ms = now_ms() - t0;
	st = itest_sh_out("cat wait.status");
	ck_assert_str_eq(st, "200");
	printf("stash latency: a parked request answered %llu ms after a worker started\n",
	    (unsigned long long)ms);
	static const struct want want[] = {{"waited/for", "src/secret.txt", 0640}};
	check_zip("wait.zip", want, 1);
	free(st);
	free(q);
	free(s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("itest_stash");
	TCase *tc = tcase_create("stash");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_entries);
	tcase_add_test(tc, test_matches);
	tcase_add_test(tc, test_bundles);
	tcase_add_test(tc, test_bundle_many);
	tcase_add_test(tc, test_bundle_big);
	tcase_add_test(tc, test_bundle_waits);
	tcase_add_test(tc, test_package_with_resources);
	tcase_add_test(tc, test_lost_blobs);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
