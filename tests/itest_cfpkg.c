/* itest_cfpkg.c: Cloud Foundry's v3 packages against the real API and workers, as a CF
 * client drives them (docs/api.md "CF v3 packages"; research bits-service.md §5): create
 * (bits, docker in both forms), upload of a zip (made with zip(1)) plus v2 and v3
 * resources matched from the app stash, the worker's packing (READY, or FAILED with a
 * reason), the packed zip's entries, modes and bytes, download, copy, list and
 * pagination, delete, bad bodies and parameters in CF's error shape, the 401s, and a
 * worker killed while packing a large upload (the job is retried). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

#define BOUNDARY "CfPkGbOuNdArY42"
#define MPTYPE "Content-Type: multipart/form-data; boundary=" BOUNDARY
#define JSONTYPE "Content-Type: application/json"
#define SECRET "Sup3r-S3cret-Docker-Passw0rd"
#define NOPKG "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"

static int worker;
/* The last answer (freed by the next request); its body is NUL-terminated. */
static struct itest_resp R;
/* The READY package of the main flow (test_flow), copied and listed later. */
static char ready_guid[40];
static char ready_sum[65];
/* The last request, for messages. */
static char last[512];

/* A request as a user (or with token); the answer is in R; returns its status. */
static long
req_as(const char *token, const char *method, const char *path, const char *body, size_t len,
    const char *header)
{
	itest_resp_free(&R);
	snprintf(last, sizeof last, "%s %s", method, path);
	itest_http(&R, method, path, token, body, len, header);
	buf_addc(&R.body, '\0');
	R.body.len--;
	return R.status;
}

static long
req(const char *method, const char *path, const char *json)
{
	return req_as(IT_USER, method, path, json, json != NULL ? strlen(json) : 0,
	    json != NULL ? JSONTYPE : NULL);
}

/* R is CF's error document with this status, title and (when not NULL) words of the
 * detail. */
static void
cf_err(long status, const char *title, const char *detail)
{
	json_t *e = json_array_get(json_object_get(R.json, "errors"), 0);
	const char *t = json_string_value(json_object_get(e, "title"));
	const char *d = json_string_value(json_object_get(e, "detail"));

	ck_assert_msg(R.status == status, "%s: want %ld %s, got %ld %s", last, status, title,
	    R.status, R.body.data);
	ck_assert_msg(json_array_size(json_object_get(R.json, "errors")) == 1 && t != NULL &&
		d != NULL && json_is_integer(json_object_get(e, "code")),
	    "not CF's error shape: %s", R.body.data);
	ck_assert_msg(strcmp(t, title) == 0, "want %s, got %s", title, R.body.data);
	ck_assert_msg(
	    detail == NULL || strstr(d, detail) != NULL, "want '%s' in %s", detail, R.body.data);
	ck_assert_ptr_nonnull(strstr(itest_header(&R, "Content-Type"), "application/json"));
}

/* A field of R.json by a dotted path ("data.checksum.value"), or NULL. */
static json_t *
get(const char *path)
{
	char *copy = xstrdup(path), *save = NULL;
	json_t *o = R.json;

	for (char *k = strtok_r(copy, ".", &save); k != NULL && o != NULL;
	     k = strtok_r(NULL, ".", &save))
		o = json_object_get(o, k);
	free(copy);
	return o;
}

static const char *
str(const char *path)
{
	const char *s = json_string_value(get(path));
	return s != NULL ? s : "";
}

/* POST /v3/packages for app; returns the new guid (static until the next call). */
static const char *
create_bits(const char *app)
{
	static char guid[40];
	char *body = xasprintf(
	    "{\"type\":\"bits\",\"relationships\":{\"app\":{\"data\":{\"guid\":\"%s\"}}}}", app);

	ck_assert_msg(
	    req("POST", "/v3/packages", body) == 201, "create: %ld %s", R.status, R.body.data);
	free(body);
	snprintf(guid, sizeof guid, "%s", str("guid"));
	ck_assert_uint_eq(strlen(guid), 36);
	return guid;
}

/* POST /v3/packages/{guid}/upload: the zip file (NULL: none) as the file part "bits",
 * resources (NULL: none) as a plain field, or as a file part when res_file. */
static long
upload(const char *guid, const char *zipfile, const char *resources, bool res_file)
{
	struct buf b;
	size_t len = 0;
	char *path = xasprintf("/v3/packages/%s/upload", guid);

	buf_init(&b);
	if (resources != NULL)
		itest_mp_part(&b, BOUNDARY, "resources", res_file ? "resources.json" : NULL,
		    resources, strlen(resources));
	if (zipfile != NULL) {
		char *zip = itest_slurp(zipfile, &len);
		itest_mp_part(&b, BOUNDARY, "bits", "application.zip", zip, len);
		free(zip);
	}
	itest_mp_end(&b, BOUNDARY);
	long status = req_as(IT_USER, "POST", path, b.data, b.len, MPTYPE);
	buf_free(&b);
	free(path);
	return status;
}

/* Polls GET /v3/packages/{guid} while it is PROCESSING_UPLOAD (up to timeout_s); R holds
 * the last answer. */
static void
wait_done(const char *guid, int timeout_s)
{
	char *path = xasprintf("/v3/packages/%s", guid);

	for (int i = 0; i < timeout_s * 50; i++) {
		ck_assert_int_eq(req("GET", path, NULL), 200);
		if (strcmp(str("state"), "PROCESSING_UPLOAD") != 0)
			break;
		usleep(20000);
	}
	free(path);
}

/* The state of the package's job. */
static char *
job_state(const char *guid)
{
	char *q = xasprintf("SELECT j.state || ' ' || j.attempts FROM jobs j JOIN cf_packages p"
			    " ON p.job_id = j.id WHERE p.guid = '%s'",
	    guid);
	char *s = itest_sql(q);
	free(q);
	return s;
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
	itest_init("cfpkg", 16);
	itest_env("BITSVAULT_BITS_APP_STASH_MIN_SIZE=64");
	itest_env("BITSVAULT_MAX_UPLOAD_SIZE=512M");
	itest_start_api();
	worker = itest_start_worker("cfpkg-w1");
	/* The app: folders, an executable, a 600 file, a symlink (left out of the package);
	 * and the files a CF client found in the stash (resources), stashed first. */
	int rc = itest_sh("set -e; mkdir -p app/web/css app/bin app/empty res/lib;"
			  " seq 1 300 > app/web/index.html; seq 300 400 > app/web/css/site.css;"
			  " (echo '#!/bin/sh'; seq 1 50) > app/bin/start; seq 5 90 > app/Procfile;"
			  " seq 7 80 > app/private.key;"
			  " chmod 644 app/web/index.html app/web/css/site.css app/Procfile;"
			  " chmod 755 app/bin/start; chmod 600 app/private.key;"
			  " ln -s web/index.html app/link;"
			  " cd app && zip -qry ../app.zip web bin empty Procfile private.key link;"
			  " cd ../res && seq 1000 1400 > lib/vendor.js; seq 2000 2300 > shared.rb;"
			  " seq 3000 3200 > plain.txt; zip -qr ../res.zip lib shared.rb plain.txt");
	ck_assert_int_eq(rc, 0);
}

static void
teardown(void)
{
	itest_resp_free(&R);
	itest_teardown();
}

START_TEST(test_auth)
{
	/* No route of this area answers without a user token. */
	static const char *const routes[][2] = {{"POST", "/v3/packages"},
	    {"POST", "/v3/packages?source_guid=" NOPKG}, {"GET", "/v3/packages"},
	    {"GET", "/v3/packages/" NOPKG}, {"DELETE", "/v3/packages/" NOPKG},
	    {"POST", "/v3/packages/" NOPKG "/upload"}, {"GET", "/v3/packages/" NOPKG "/download"},
	    {"POST", "/v3/apps/app-1/packages"}, {"GET", "/v3/apps/app-1/packages"}};
	const char *body =
	    "{\"type\":\"bits\",\"relationships\":{\"app\":{\"data\":{\"guid\":\"a\"}}}}";

	for (size_t i = 0; i < BV_NELEM(routes); i++) {
		const char *tokens[] = {NULL, "not-a-token", IT_WORKER};
		for (size_t t = 0; t < 2; t++) {
			req_as(tokens[t], routes[i][0], routes[i][1], body, strlen(body), JSONTYPE);
			ck_assert_msg(R.status == 401, "%s %s (%s): %ld", routes[i][0],
			    routes[i][1], tokens[t] ? tokens[t] : "no token", R.status);
			ck_assert_ptr_nonnull(itest_header(&R, "WWW-Authenticate"));
		}
		/* The worker's token is not a user's. */
		req_as(tokens[2], routes[i][0], routes[i][1], body, strlen(body), JSONTYPE);
		ck_assert_msg(
		    R.status == 403, "%s %s (worker): %ld", routes[i][0], routes[i][1], R.status);
	}
	char *n = itest_sql("SELECT count(*) FROM cf_packages");
	ck_assert_str_eq(n, "0");
	free(n);
}
END_TEST

START_TEST(test_flow)
{
	size_t i;
	json_t *e;

	/* The resources the client found: stashed before (POST /app_stash/entries). */
	struct buf b;
	size_t zlen;
	char *zip = itest_slurp("res.zip", &zlen);
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "application", "res.zip", zip, zlen);
	itest_mp_end(&b, BOUNDARY);
	free(zip);
	ck_assert_msg(req_as(IT_USER, "POST", "/app_stash/entries", b.data, b.len, MPTYPE) == 201,
	    "stash: %ld %s", R.status, R.body.data);
	buf_free(&b);
	json_t *receipt = json_incref(R.json);
	ck_assert_int_eq((int)json_array_size(receipt), 3);

	/* Create: AWAITING_UPLOAD, no checksum yet, CF's links. */
	char guid[40];
	snprintf(guid, sizeof guid, "%s", create_bits("app-flow"));
	ck_assert_str_eq(str("type"), "bits");
	ck_assert_str_eq(str("state"), "AWAITING_UPLOAD");
	ck_assert_str_eq(str("relationships.app.data.guid"), "app-flow");
	ck_assert_str_eq(str("data.checksum.type"), "sha256");
	ck_assert(json_is_null(get("data.checksum.value")));
	ck_assert(json_is_null(get("data.error")));
	ck_assert(
	    json_is_object(get("metadata.labels")) && json_is_object(get("metadata.annotations")));
	ck_assert(*str("created_at") != '\0' && *str("updated_at") != '\0');
	char *self = xasprintf("%s/v3/packages/%s", IT.url, guid);
	ck_assert_str_eq(str("links.self.href"), self);
	char *up = xasprintf("%s/upload", self), *down = xasprintf("%s/download", self);
	ck_assert_str_eq(str("links.upload.href"), up);
	ck_assert_str_eq(str("links.upload.method"), "POST");
	ck_assert_str_eq(str("links.download.href"), down);
	ck_assert_str_eq(str("links.download.method"), "GET");
	char *app = xasprintf("%s/v3/apps/app-flow", IT.url);
	ck_assert_str_eq(str("links.app.href"), app);
	free(self);
	free(up);
	free(down);
	free(app);

	/* Download before READY: 422. */
	char *dl = xasprintf("/v3/packages/%s/download", guid);
	ck_assert_int_eq(req("GET", dl, NULL), 422);
	cf_err(422, "CF-UnprocessableEntity", "Package has no bits to download.");

	/* Upload: the zip plus a v2 resource, a v3 one and one without a mode (0744). */
	const char *sha[3];
	json_array_foreach(receipt, i, e)
	{
		const char *fn = json_string_value(json_object_get(e, "fn"));
		int k = strcmp(fn, "lib/vendor.js") == 0 ? 0 : strcmp(fn, "shared.rb") == 0 ? 1 : 2;
		sha[k] = json_string_value(json_object_get(e, "sha1"));
	}
	char *res = xasprintf(
	    "[{\"fn\":\"vendor/lib.js\",\"sha1\":\"%s\",\"size\":1,\"mode\":\"0640\"},"
	    "{\"path\":\"lib/shared.rb\",\"checksum\":{\"value\":\"%s\"},\"size_in_bytes\":1,"
	    "\"mode\":\"755\"},{\"fn\":\"plain.txt\",\"sha1\":\"%s\",\"size\":1}]",
	    sha[0], sha[1], sha[2]);
	uint64_t t0 = now_ms();
	ck_assert_msg(
	    upload(guid, "app.zip", res, false) == 200, "upload: %ld %s", R.status, R.body.data);
	ck_assert_str_eq(str("guid"), guid);
	ck_assert_str_eq(str("state"), "PROCESSING_UPLOAD");
	wait_done(guid, 60);
	uint64_t ms = now_ms() - t0;
	ck_assert_msg(strcmp(str("state"), "READY") == 0, "not READY: %s", R.body.data);
	printf("cfpkg latency: upload to READY (6 files): %llu ms\n", (unsigned long long)ms);
	ck_assert(json_is_null(get("data.error")));
	snprintf(ready_sum, sizeof ready_sum, "%s", str("data.checksum.value"));
	ck_assert_uint_eq(strlen(ready_sum), 64);
	char *js = job_state(guid);
	ck_assert_str_eq(js, "done 1");
	free(js);

	/* The download: sha256 is the checksum; sha1 the one kept; the zip's regular files
	 * (symlink and empty folder left out) in its order, then the resources. */
	ck_assert_int_eq(req("GET", dl, NULL), 200);
	ck_assert_str_eq(itest_header(&R, "Content-Type"), "application/zip");
	itest_save(&R, "pkg.zip");
	char *s256 = itest_sh_out("sha256sum < pkg.zip | cut -c1-64");
	ck_assert_str_eq(s256, ready_sum);
	free(s256);
	char *s1 = itest_sh_out("sha1sum < pkg.zip | cut -c1-40");
	char *q = xasprintf(
	    "SELECT encode(sha1, 'hex') || ' ' || size FROM cf_packages WHERE guid = '%s'", guid);
	char *row = itest_sql(q), *want_row = xasprintf("%s %zu", s1, R.body.len);
	ck_assert_str_eq(row, want_row);
	free(q);
	free(row);
	free(want_row);
	free(s1);
	static const struct want want[] = {{"web/index.html", "app/web/index.html", 0644},
	    {"web/css/site.css", "app/web/css/site.css", 0644},
	    {"bin/start", "app/bin/start", 0755}, {"Procfile", "app/Procfile", 0644},
	    {"private.key", "app/private.key", 0600}, {"vendor/lib.js", "res/lib/vendor.js", 0640},
	    {"lib/shared.rb", "res/shared.rb", 0755}, {"plain.txt", "res/plain.txt", 0744}};
	char *order = itest_sh_out("cd app && for f in $(unzip -Z1 ../app.zip); do"
				   " test -f $f && ! test -L $f && printf '%%s ' $f; done");
	ck_assert_str_eq(order, "web/index.html web/css/site.css bin/start Procfile private.key");
	free(order);
	check_zip("pkg.zip", want, BV_NELEM(want));
	/* A Range of the zip. */
	itest_resp_free(&R);
	itest_http(&R, "GET", dl, IT_USER, NULL, 0, "Range: bytes=0-3");
	ck_assert_int_eq(R.status, 206);
	ck_assert_uint_eq(R.body.len, 4);
	ck_assert(memcmp(R.body.data, "PK\x03\x04", 4) == 0);

	/* The zip's files entered the app stash. */
	char *ps = itest_sh_out("sha1sum < app/web/index.html | cut -c1-40");
	q = xasprintf("[{\"fn\":\"x\",\"sha1\":\"%s\",\"size\":1092,\"mode\":\"644\"}]", ps);
	ck_assert_int_eq(req("POST", "/app_stash/matches", q), 200);
	ck_assert_int_eq((int)json_array_size(R.json), 1);
	free(q);
	free(ps);

	/* A second upload: 400 CF-PackageBitsAlreadyUploaded; nothing changes. */
	ck_assert_int_eq(upload(guid, "app.zip", NULL, false), 400);
	cf_err(400, "CF-PackageBitsAlreadyUploaded", "Bits may be uploaded only once");
	char *p = xasprintf("/v3/packages/%s", guid);
	ck_assert_int_eq(req("GET", p, NULL), 200);
	ck_assert_str_eq(str("state"), "READY");
	ck_assert_str_eq(str("data.checksum.value"), ready_sum);
	free(p);
	snprintf(ready_guid, sizeof ready_guid, "%s", guid);

	/* Copy for another app: 201, READY at once, the same checksum and bytes. */
	char *cp = xasprintf("/v3/packages?source_guid=%s", guid);
	ck_assert_int_eq(
	    req("POST", cp, "{\"relationships\":{\"app\":{\"data\":{\"guid\":\"app-copy\"}}}}"),
	    201);
	ck_assert_str_ne(str("guid"), guid);
	ck_assert_str_eq(str("state"), "READY");
	ck_assert_str_eq(str("type"), "bits");
	ck_assert_str_eq(str("relationships.app.data.guid"), "app-copy");
	ck_assert_str_eq(str("data.checksum.value"), ready_sum);
	char *cdl = xasprintf("/v3/packages/%s/download", str("guid"));
	ck_assert_int_eq(req("GET", cdl, NULL), 200);
	size_t plen;
	char *pkg = itest_slurp("pkg.zip", &plen);
	ck_assert(R.body.len == plen && memcmp(R.body.data, pkg, plen) == 0);
	free(pkg);
	free(cdl);
	free(cp);
	/* ... of a missing package (or no guid at all), of one not READY: 422. */
	const char *bad_src[] = {create_bits("app-flow"), NOPKG, "not-a-guid"};
	for (i = 0; i < BV_NELEM(bad_src); i++) {
		cp = xasprintf("/v3/packages?source_guid=%s", bad_src[i]);
		req("POST", cp, "{\"relationships\":{\"app\":{\"data\":{\"guid\":\"app-copy\"}}}}");
		cf_err(422, "CF-UnprocessableEntity",
		    i > 0 ? "Unable to use package. Ensure that the package exists and you have "
			    "access to it."
			  : NULL);
		free(cp);
	}
	free(dl);
	free(res);
	json_decref(receipt);
}
END_TEST

/* Uploads to a new package that must end FAILED with a reason containing why. */
static void
must_fail(const char *zipfile, const char *resources, const char *why)
{
	char guid[40];

	snprintf(guid, sizeof guid, "%s", create_bits("app-fail"));
	ck_assert_msg(
	    upload(guid, zipfile, resources, true) == 200, "upload: %ld %s", R.status, R.body.data);
	ck_assert_str_eq(str("state"), "PROCESSING_UPLOAD");
	wait_done(guid, 60);
	ck_assert_msg(strcmp(str("state"), "FAILED") == 0, "%s: %s", zipfile ? zipfile : resources,
	    R.body.data);
	ck_assert_msg(strstr(str("data.error"), why) != NULL, "want '%s' in %s", why, R.body.data);
	ck_assert(json_is_null(get("data.checksum.value")));
	char *js = job_state(guid);
	ck_assert_msg(strncmp(js, "failed ", 7) == 0, "job: %s", js);
	free(js);
	char *dl = xasprintf("/v3/packages/%s/download", guid);
	ck_assert_int_eq(req("GET", dl, NULL), 422);
	free(dl);
}

START_TEST(test_failures)
{
	ck_assert_int_eq(
	    itest_sh("set -e; seq 1 500 > notzip.bin; mkdir -p ev/XX; seq 1 30 > ev/XX/evil.txt;"
		     " (cd ev && zip -q ../dotdot.zip XX/evil.txt);"
		     " perl -pi -e 's#XX/evil#../evil#g' dotdot.zip;"
		     " unzip -Z1 dotdot.zip | grep -qx '../evil.txt'"),
	    0);
	must_fail("notzip.bin", NULL, "not a valid zip");
	must_fail("dotdot.zip", NULL, "../evil.txt");
	const char *miss = "0123456789abcdef0123456789abcdef01234567";
	char *res = xasprintf("[{\"fn\":\"gone.txt\",\"sha1\":\"%s\",\"size\":100}]", miss);
	char *why = xasprintf("the resource 'gone.txt' (sha1 %s) is not in the app stash", miss);
	must_fail(NULL, res, why);
	must_fail("app.zip", res, why);
	free(res);
	free(why);
}
END_TEST

START_TEST(test_docker)
{
	char guid[2][40];

	/* Both forms; the password masked in every answer. */
	ck_assert_int_eq(req("POST", "/v3/packages",
			     "{\"type\":\"docker\",\"relationships\":{\"app\":{\"data\":"
			     "{\"guid\":\"app-docker\"}}},\"data\":{\"image\":\"registry/img:1\","
			     "\"username\":\"bob\",\"password\":\"" SECRET "\"}}"),
	    201);
	snprintf(guid[0], sizeof guid[0], "%s", str("guid"));
	ck_assert_int_eq(req("POST", "/v3/apps/app-docker/packages",
			     "{\"type\":\"docker\",\"data\":{\"image\":\"registry/img:2\","
			     "\"credentials\":{\"user\":\"ann\",\"password\":\"" SECRET "\","
			     "\"email\":\"a@example.com\"},\"store_image\":true}}"),
	    201);
	snprintf(guid[1], sizeof guid[1], "%s", str("guid"));
	for (int i = 0; i < 2; i++) {
		char *p = xasprintf("/v3/packages/%s", guid[i]);
		ck_assert_int_eq(req("GET", p, NULL), 200);
		ck_assert_str_eq(str("type"), "docker");
		ck_assert_str_eq(str("state"), "READY");
		ck_assert_str_eq(str("relationships.app.data.guid"), "app-docker");
		ck_assert_str_eq(str("data.image"), i ? "registry/img:2" : "registry/img:1");
		ck_assert_str_eq(str("data.username"), i ? "ann" : "bob");
		ck_assert_str_eq(str("data.password"), "***");
		ck_assert_ptr_null(get("links.upload"));
		ck_assert_ptr_null(get("links.download"));
		/* Upload and download: 422. */
		ck_assert_int_eq(upload(guid[i], "app.zip", NULL, false), 422);
		cf_err(422, "CF-UnprocessableEntity", "Package type must be bits.");
		char *dl = xasprintf("%s/download", p);
		ck_assert_int_eq(req("GET", dl, NULL), 422);
		cf_err(422, "CF-UnprocessableEntity", "Package type must be bits.");
		free(dl);
		free(p);
	}
	/* Without credentials: null username and password. */
	ck_assert_int_eq(req("POST", "/v3/apps/app-docker/packages",
			     "{\"type\":\"docker\",\"data\":{\"image\":\"img\"}}"),
	    201);
	ck_assert(json_is_null(get("data.username")) && json_is_null(get("data.password")));
	/* A copy of a docker package is docker, the password still masked. */
	char *cp = xasprintf("/v3/packages?source_guid=%s", guid[0]);
	ck_assert_int_eq(
	    req("POST", cp, "{\"relationships\":{\"app\":{\"data\":{\"guid\":\"app-d2\"}}}}"), 201);
	ck_assert_str_eq(str("data.password"), "***");
	free(cp);
	ck_assert_int_eq(req("GET", "/v3/apps/app-docker/packages", NULL), 200);
	ck_assert_int_eq((int)json_integer_value(get("pagination.total_results")), 3);
	ck_assert_msg(strstr(R.body.data, SECRET) == NULL, "%s", R.body.data);
	ck_assert_int_eq(req("GET", "/v3/packages?types=docker", NULL), 200);
	ck_assert_int_eq((int)json_integer_value(get("pagination.total_results")), 4);
	ck_assert_msg(strstr(R.body.data, SECRET) == NULL, "%s", R.body.data);
	ck_assert_msg(itest_sh("! grep -rqF '" SECRET "' logs/api.log") == 0,
	    "the docker password is in the API's log");
}
END_TEST

/* Follows pagination from path (per_page=1) and checks each page's links; returns the
 * guids seen, space-separated (caller frees). */
static char *
walk(const char *path, int total, const char *keep)
{
	struct buf seen;
	char *next = xstrdup(path);

	buf_init(&seen);
	for (int page = 1; next != NULL; page++) {
		ck_assert_msg(
		    req("GET", next, NULL) == 200, "%s: %ld %s", next, R.status, R.body.data);
		ck_assert_int_eq((int)json_integer_value(get("pagination.total_results")), total);
		ck_assert_int_eq((int)json_integer_value(get("pagination.total_pages")), total);
		ck_assert_int_eq((int)json_array_size(get("resources")), 1);
		buf_printf(&seen, "%s%s", page > 1 ? " " : "",
		    json_string_value(
			json_object_get(json_array_get(get("resources"), 0), "guid")));
		const char *links[] = {"first", "last", "next", "previous"};
		int want_page[] = {1, total, page + 1, page - 1};
		for (int l = 0; l < 4; l++) {
			char *k = xasprintf("pagination.%s.href", links[l]);
			const char *href = str(k);
			bool none = (l == 2 && page == total) || (l == 3 && page == 1);
			free(k);
			k = xasprintf("pagination.%s", links[l]);
			if (none) {
				ck_assert_msg(json_is_null(get(k)), "%s: %s", k, R.body.data);
				free(k);
				continue;
			}
			free(k);
			char *pg = xasprintf("page=%d&per_page=1", want_page[l]);
			ck_assert_msg(strncmp(href, IT.url, strlen(IT.url)) == 0 &&
				strstr(href, pg) != NULL && strstr(href, keep) != NULL,
			    "%s: %s", links[l], href);
			free(pg);
		}
		ck_assert_int_le(page, total);
		free(next);
		next = json_is_null(get("pagination.next"))
		    ? NULL
		    : xstrdup(str("pagination.next.href") + strlen(IT.url));
	}
	return buf_steal(&seen, NULL);
}

START_TEST(test_list)
{
	char g[3][40];
	struct buf want;

	buf_init(&want);
	for (int i = 0; i < 3; i++) {
		snprintf(g[i], sizeof g[i], "%s", create_bits("app-pages"));
		buf_printf(&want, "%s%s", i ? " " : "", g[i]);
		usleep(5000);
	}
	/* The app's list, oldest first, page by page. */
	char *seen =
	    walk("/v3/apps/app-pages/packages?per_page=1", 3, "/v3/apps/app-pages/packages?");
	ck_assert_str_eq(seen, want.data);
	free(seen);
	/* The global list with filters kept in the links. */
	char *q = xasprintf("/v3/packages?per_page=1&states=AWAITING_UPLOAD,READY&types=bits"
			    "&guids=%s,%s,%s",
	    g[0], g[2], NOPKG);
	char *keep = xasprintf("guids=%s,%s,%s", g[0], g[2], NOPKG);
	seen = walk(q, 2, keep);
	char *w = xasprintf("%s %s", g[0], g[2]);
	ck_assert_str_eq(seen, w);
	free(seen);
	free(w);
	ck_assert_ptr_nonnull(strstr(str("pagination.first.href"), "states=AWAITING_UPLOAD,READY"));
	ck_assert_ptr_nonnull(strstr(str("pagination.first.href"), "types=bits"));
	free(keep);
	free(q);
	/* Filters: states, types, app_guids. */
	ck_assert_int_eq(
	    req("GET", "/v3/packages?app_guids=app-pages,app-flow&states=READY", NULL), 200);
	ck_assert_int_eq((int)json_integer_value(get("pagination.total_results")), 1);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(get("resources"), 0), "guid")),
	    ready_guid);
	ck_assert_int_eq(req("GET", "/v3/apps/app-pages/packages?states=READY", NULL), 200);
	ck_assert_int_eq((int)json_integer_value(get("pagination.total_results")), 0);
	ck_assert_int_eq((int)json_integer_value(get("pagination.total_pages")), 1);
	ck_assert(json_is_null(get("pagination.next")) && json_is_null(get("pagination.previous")));
	ck_assert_int_eq(req("GET", "/v3/apps/no-such-app/packages", NULL), 200);
	ck_assert_int_eq((int)json_array_size(get("resources")), 0);
	/* Bad parameters: 400 CF-BadQueryParameter. */
	const char *bad[] = {"/v3/packages?foo=1", "/v3/apps/app-pages/packages?bar=2",
	    "/v3/packages?per_page=0", "/v3/packages?per_page=5001", "/v3/packages?page=0",
	    "/v3/packages?per_page=x", "/v3/apps/app-pages/packages?per_page=5001",
	    "/v3/packages?order_by=guid"};
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		req("GET", bad[i], NULL);
		cf_err(400, "CF-BadQueryParameter", NULL);
	}
	ck_assert_int_eq(req("GET", "/v3/packages?per_page=5000&order_by=created_at", NULL), 200);
	buf_free(&want);
}
END_TEST

START_TEST(test_get_delete)
{
	/* Delete: 202, Location, a COMPLETE job; then 404. */
	char guid[40];
	snprintf(guid, sizeof guid, "%s", create_bits("app-del"));
	char *p = xasprintf("/v3/packages/%s", guid);
	ck_assert_int_eq(req("DELETE", p, NULL), 202);
	const char *loc = itest_header(&R, "Location");
	ck_assert_msg(
	    loc != NULL && strstr(loc, "/v3/jobs/") != NULL, "Location: %s", loc ? loc : "none");
	ck_assert_str_eq(str("state"), "COMPLETE");
	ck_assert_str_eq(str("links.self.href"), loc);
	req("GET", p, NULL);
	cf_err(404, "CF-ResourceNotFound", "Package not found");
	req("DELETE", p, NULL);
	cf_err(404, "CF-ResourceNotFound", NULL);
	free(p);
	/* The READY package of the flow, deleted: its copy still downloads. */
	p = xasprintf("/v3/packages/%s", ready_guid);
	ck_assert_int_eq(req("DELETE", p, NULL), 202);
	free(p);
	ck_assert_int_eq(req("GET", "/v3/apps/app-copy/packages", NULL), 200);
	p = xasprintf("/v3/packages/%s/download",
	    json_string_value(json_object_get(json_array_get(get("resources"), 0), "guid")));
	ck_assert_int_eq(req("GET", p, NULL), 200);
	free(p);
	/* Malformed or unknown guids: 404 CF-ResourceNotFound, whatever the route (checked
	 * last: see the report). */
	const char *bad[] = {NOPKG, "not-a-guid", "------------------------------------",
	    "0123456789abcdef0123456789abcdef0123", "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9X"};
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		p = xasprintf("/v3/packages/%s", bad[i]);
		req("GET", p, NULL);
		cf_err(404, "CF-ResourceNotFound", "Package not found");
		req("DELETE", p, NULL);
		cf_err(404, "CF-ResourceNotFound", NULL);
		char *dl = xasprintf("%s/download", p);
		req("GET", dl, NULL);
		cf_err(404, "CF-ResourceNotFound", NULL);
		free(dl);
		upload(bad[i], "app.zip", NULL, false);
		cf_err(404, "CF-ResourceNotFound", NULL);
		free(p);
	}
}
END_TEST

/* A template with each '@' replaced by sha1 (caller frees). */
static char *
with_sha1(const char *tmpl, const char *sha1)
{
	struct buf b;

	buf_init(&b);
	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p == '@')
			buf_adds(&b, sha1);
		else
			buf_addc(&b, *p);
	}
	return buf_steal(&b, NULL);
}

START_TEST(test_bad_bodies)
{
	/* Bad create bodies: 422 in CF's shape; nothing created. */
	char *before = itest_sql("SELECT count(*) FROM cf_packages");
	const char *rel = "\"relationships\":{\"app\":{\"data\":{\"guid\":\"app-bad\"}}}";
	char *bodies[] = {xasprintf("{\"type\":\"zip\",%s}", rel),
	    xasprintf("{\"type\":\"bits\",%s,\"colour\":\"red\"}", rel),
	    xasprintf("{\"type\":\"bits\"}"),
	    xasprintf("{\"type\":\"bits\",\"relationships\":{\"app\":{\"data\":{}}}}"),
	    xasprintf("{\"type\":\"bits\",%s,\"data\":{\"image\":\"x\"}}", rel),
	    xasprintf("{\"type\":\"docker\",%s,\"data\":{}}", rel),
	    xasprintf("{\"type\":\"docker\",%s}", rel),
	    xasprintf(
		"{\"type\":\"docker\",%s,\"data\":{\"image\":\"i\",\"username\":\"u\"}}", rel),
	    xasprintf("{\"type\":\"bits\",%s,\"metadata\":{\"labels\":[]}}", rel),
	    xasprintf("{%s}", rel), xasprintf("[]")};
	for (size_t i = 0; i < BV_NELEM(bodies); i++) {
		req("POST", "/v3/packages", bodies[i]);
		ck_assert_msg(R.status == 422, "%s: %ld %s", bodies[i], R.status, R.body.data);
		cf_err(422, "CF-UnprocessableEntity", NULL);
		free(bodies[i]);
	}
	req("POST", "/v3/apps/app-bad/packages", "{\"type\":\"bits\",\"relationships\":{}}");
	cf_err(422, "CF-UnprocessableEntity", "relationships");
	char *after = itest_sql("SELECT count(*) FROM cf_packages");
	ck_assert_str_eq(after, before);
	free(after);
	free(before);

	/* Bad resources: each refused, the package still AWAITING_UPLOAD. */
	char guid[40];
	snprintf(guid, sizeof guid, "%s", create_bits("app-bad"));
	const char *s = "0123456789abcdef0123456789abcdef01234567";
	struct {
		const char *res;
		long status;
		const char *title, *detail;
	} bad[] = {
	    {"[{\"fn\":", 422, "CF-UnprocessableEntity", "Resources must be valid JSON."},
	    {"{\"fn\":\"a\"}", 422, "CF-UnprocessableEntity", "Resources must be valid JSON."},
	    {"[{\"fn\":\"../a\",\"sha1\":\"@\",\"size\":1}]", 400, "CF-AppResourcesFilePathInvalid",
		NULL},
	    {"[{\"path\":\"a/../../b\",\"checksum\":{\"value\":\"@\"}}]", 400,
		"CF-AppResourcesFilePathInvalid", NULL},
	    {"[{\"fn\":\"/abs\",\"sha1\":\"@\"}]", 400, "CF-AppResourcesFilePathInvalid", NULL},
	    {"[{\"fn\":\"a\",\"sha1\":\"@\",\"mode\":\"0444\"}]", 400,
		"CF-AppResourcesFileModeInvalid", NULL},
	    {"[{\"fn\":\"a\",\"sha1\":\"@\",\"mode\":\"0500\"}]", 400,
		"CF-AppResourcesFileModeInvalid", NULL},
	    {"[{\"fn\":\"a\",\"sha1\":\"@\",\"mode\":\"rwx\"}]", 400,
		"CF-AppResourcesFileModeInvalid", NULL},
	};
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		char *r = with_sha1(bad[i].res, s);
		upload(guid, NULL, r, i % 2 == 0);
		cf_err(bad[i].status, bad[i].title, bad[i].detail);
		free(r);
	}
	/* Neither bits nor resources; not multipart. */
	upload(guid, NULL, NULL, false);
	cf_err(422, "CF-UnprocessableEntity", "Upload must include either resources or bits");
	char *up = xasprintf("/v3/packages/%s/upload", guid);
	req("POST", up, "{}");
	cf_err(422, "CF-UnprocessableEntity", NULL);
	free(up);
	char *p = xasprintf("/v3/packages/%s", guid);
	ck_assert_int_eq(req("GET", p, NULL), 200);
	ck_assert_str_eq(str("state"), "AWAITING_UPLOAD");
	free(p);
	/* Still uploadable after all that. */
	ck_assert_int_eq(upload(guid, "app.zip", NULL, false), 200);
	wait_done(guid, 60);
	ck_assert_str_eq(str("state"), "READY");
	/* Not JSON: CF's shape too (checked last: see the report). */
	const char *notjson[][2] = {{"/v3/packages", "not json"}, {"/v3/packages", "{\"type\":"},
	    {"/v3/apps/app-bad/packages", "not json"}};
	for (size_t i = 0; i < BV_NELEM(notjson); i++) {
		req("POST", notjson[i][0], notjson[i][1]);
		cf_err(400, "CF-MessageParseError", NULL);
	}
}
END_TEST

START_TEST(test_worker_killed)
{
	/* A large upload; the worker SIGKILLed while packing it; another one finishes it. */
	ck_assert_int_eq(itest_sh("set -e; mkdir -p big; head -c 150M /dev/urandom > big/blob.bin;"
				  " seq 1 99 > big/small.txt; cd big && zip -q0 ../big.zip blob.bin"
				  " small.txt"),
	    0);
	char guid[40];
	snprintf(guid, sizeof guid, "%s", create_bits("app-big"));
	uint64_t t0 = now_ms();
	char *code = itest_sh_out("curl -s -o big.json -w '%%{http_code}' -H 'Authorization: Bearer"
				  " %s' -F 'bits=@big.zip;type=application/zip'"
				  " '%s/v3/packages/%s/upload'",
	    IT_USER, IT.url, guid);
	ck_assert_msg(strcmp(code, "200") == 0, "upload: %s", code);
	free(code);
	printf("cfpkg latency: upload of 150 MB: %llu ms\n", (unsigned long long)(now_ms() - t0));
	/* Killed once its job runs. */
	char *q = xasprintf(
	    "SELECT coalesce((SELECT j.state FROM jobs j JOIN cf_packages p ON p.job_id = j.id"
	    " WHERE p.guid = '%s'), 'none')",
	    guid);
	char *st = NULL;
	for (int i = 0; i < 1500; i++) {
		free(st);
		st = itest_sql(q);
		if (strcmp(st, "queued") != 0)
			break;
		usleep(10000);
	}
	ck_assert_msg(strcmp(st, "running") == 0, "job state: %s", st);
	free(st);
	ck_assert_int_eq(kill(IT.workers[worker], SIGKILL), 0);
	itest_stop_worker(worker, SIGKILL);
	st = itest_sql(q);
	ck_assert_str_eq(st, "running");
	free(st);
	free(q);
	char *p = xasprintf("/v3/packages/%s", guid);
	ck_assert_int_eq(req("GET", p, NULL), 200);
	ck_assert_str_eq(str("state"), "PROCESSING_UPLOAD");
	/* Another worker: the job is retried, the package READY. */
	t0 = now_ms();
	worker = itest_start_worker("cfpkg-w2");
	wait_done(guid, 120);
	ck_assert_msg(strcmp(str("state"), "READY") == 0, "%s", R.body.data);
	printf("cfpkg latency: READY %llu ms after the second worker started\n",
	    (unsigned long long)(now_ms() - t0));
	char *js = job_state(guid);
	ck_assert_str_eq(js, "done 2");
	free(js);
	char *sum = xstrdup(str("data.checksum.value"));
	ck_assert_int_eq(itest_sh("curl -s -f -o bigpkg.zip -H 'Authorization: Bearer %s'"
				  " '%s/v3/packages/%s/download'",
			     IT_USER, IT.url, guid),
	    0);
	char *s256 = itest_sh_out("sha256sum < bigpkg.zip | cut -c1-64");
	ck_assert_str_eq(s256, sum);
	static const struct want want[] = {
	    {"blob.bin", "big/blob.bin", 0644}, {"small.txt", "big/small.txt", 0644}};
	check_zip("bigpkg.zip", want, BV_NELEM(want));
	itest_sh("rm -rf big big.zip bigpkg.zip");
	free(s256);
	free(sum);
	free(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("itest_cfpkg");
	TCase *tc = tcase_create("cfpkg");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_auth);
	tcase_add_test(tc, test_flow);
	tcase_add_test(tc, test_failures);
	tcase_add_test(tc, test_docker);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_get_delete);
	tcase_add_test(tc, test_bad_bodies);
	tcase_add_test(tc, test_worker_killed);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
