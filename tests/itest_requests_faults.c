/* itest_requests_faults.c: Cachito-style requests (worker/request.c, the trigger
 * requests_follow_job of db/migrations/0005_requests.sql) under three faults, end to end
 * with the real API and workers: a request marked stale while its job waits on a slow
 * tarball stays stale and serves nothing; a worker SIGKILLed in the middle of a download
 * is replaced and the request still completes once, with a correct bundle; a duplicate
 * final report (the job's done PATCH again, the request's complete PATCH again) changes
 * nothing. The fixtures are made here: one-dependency npm apps (lockfile v3, a tarball made
 * with tar, its sha512 integrity) in git repositories loaded over file://, and a tiny node
 * registry that answers tarballs named slow-* after DELAY_MS. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

#define DELAY_MS 3000
#define STALE_REASON "Marked stale by itest_requests_faults"

/* The registry: files under www/, every GET and every answer sent logged. */
static const char registry_js[] =
    "const http = require('http'), fs = require('fs'), path = require('path');\n"
    "const [root, port, log, delay] = process.argv.slice(2);\n"
    "http.createServer((req, res) => {\n"
    "\tconst p = decodeURIComponent(req.url.split('?')[0]);\n"
    "\tfs.appendFileSync(log, 'GET ' + p + '\\n');\n"
    "\tconst slow = p.includes('/slow-') && p.endsWith('.tgz');\n"
    "\tsetTimeout(() => fs.readFile(path.join(root, path.normalize(p)), (err, data) => {\n"
    "\t\tif (err) { res.writeHead(404); return res.end(); }\n"
    "\t\tres.writeHead(200, {'Content-Type': 'application/octet-stream'});\n"
    "\t\tres.end(data);\n"
    "\t\tfs.appendFileSync(log, 'SENT ' + p + '\\n');\n"
    "\t}), slow ? +delay : 0);\n"
    "}).listen(+port, '127.0.0.1', () => fs.writeFileSync(log + '.ready', ''));\n";

/* An app (repos/$1, commit in repos/$1.sha) locking one package $2@1.0.0 of registry $3. */
static const char fixture_sh[] =
    "set -eu; app=$1 pkg=$2 reg=$3\n"
    "export GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org GIT_COMMITTER_NAME=Ada \\\n"
    "  GIT_COMMITTER_EMAIL=ada@example.org GIT_AUTHOR_DATE=2020-01-01T00:00:00Z \\\n"
    "  GIT_COMMITTER_DATE=2020-01-01T00:00:00Z GIT_CONFIG_GLOBAL=/dev/null\n"
    "mkdir -p pk/$pkg/package www/$pkg/-\n"
    "printf '{\"name\":\"%s\",\"version\":\"1.0.0\"}\\n' $pkg >pk/$pkg/package/package.json\n"
    "tgz=www/$pkg/-/$pkg-1.0.0.tgz\n"
    "tar -czf $tgz -C pk/$pkg package\n"
    "i=sha512-$(openssl dgst -sha512 -binary $tgz | base64 -w0)\n"
    "mkdir -p repos/$app && cd repos/$app && git init -q -b main .\n"
    "printf '{\"name\":\"%s\",\"version\":\"1.0.0\",\"dependencies\":{\"%s\":\"1.0.0\"}}\\n' \\\n"
    "  $app $pkg >package.json\n"
    "printf '{\"name\":\"%s\",\"version\":\"1.0.0\",\"lockfileVersion\":3,\"requires\":true,'"
    "'\"packages\":{\"\":{\"name\":\"%s\",\"version\":\"1.0.0\",\"dependencies\":{\"%s\":"
    "\"1.0.0\"}},\"node_modules/%s\":{\"version\":\"1.0.0\",\"resolved\":\"%s%s/-/%s-1.0.0.tgz\","
    "\"integrity\":\"%s\"}}}\\n' $app $app $pkg $pkg $reg $pkg $pkg $i >package-lock.json\n"
    "git add -A && git commit -q -m $app && git rev-parse HEAD >../$app.sha\n";

static char reg_url[64];
static int worker = -1;

/* The only worker from now on (any other stopped). */
static void
fresh_worker(const char *name)
{
	for (int i = 0; i < IT.nworkers; i++)
		itest_stop_worker(i, SIGTERM);
	worker = itest_start_worker(name);
}

/* How many registry log lines are exactly line. */
static int
reg_lines(const char *line)
{
	char *n = itest_sh_out("grep -cx '%s' reg.log 2>/dev/null || true", line);
	int v = atoi(n);
	free(n);
	return v;
}

/* Waits up to timeout_s for a registry log line; false when it never came. */
static bool
reg_wait(const char *line, int timeout_s)
{
	for (int i = 0; i < timeout_s * 20; i++) {
		if (reg_lines(line) > 0)
			return true;
		usleep(50000);
	}
	return false;
}

/* POST /api/v1/requests for repos/<app> at its commit (pms: the JSON list's inside). */
static json_int_t
post_request(const char *app, const char *pms)
{
	char *ref = itest_sh_out("cat repos/%s.sha", app);
	char *body =
	    xasprintf("{\"repo\": \"file://%s/repos/%s\", \"ref\": \"%s\", \"pkg_managers\": [%s]}",
		IT.dir, app, ref, pms);
	struct itest_resp r;
	itest_http(&r, "POST", "/api/v1/requests", IT_USER, body, strlen(body), NULL);
	ck_assert_msg(r.status == 201, "POST %s: %ld %s", body, r.status, r.body.data);
	json_int_t id = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	free(body);
	free(ref);
	return id;
}

/* GET /api/v1/requests/{id} (caller decrefs). */
static json_t *
get_request(json_int_t id)
{
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body.data);
	json_t *doc = json_incref(r.json);
	itest_resp_free(&r);
	free(path);
	return doc;
}

/* Polls a request until it leaves in_progress; asserts it is want (caller decrefs). */
static json_t *
wait_request(json_int_t id, const char *want, int timeout_s)
{
	json_t *doc = NULL;
	for (int i = 0; i < timeout_s * 5; i++) {
		json_decref(doc);
		doc = get_request(id);
		if (strcmp(json_string_value(json_object_get(doc, "state")), "in_progress") != 0)
			break;
		usleep(200000);
	}
	const char *st = json_string_value(json_object_get(doc, "state"));
	ck_assert_msg(strcmp(st, want) == 0, "request %lld is %s (%s), not %s", (long long)id, st,
	    json_string_value(json_object_get(doc, "state_reason")), want);
	return doc;
}

/* How many state_history entries of a request document are in state. */
static int
history_count(json_t *doc, const char *state)
{
	size_t i;
	json_t *e;
	int n = 0;
	json_array_foreach(json_object_get(doc, "state_history"), i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "state")), state) == 0)
			n++;
	}
	return n;
}

/* The request's job id. */
static json_int_t
job_of(json_int_t id)
{
	char *sql = xasprintf("SELECT job_id FROM requests WHERE id = %lld", (long long)id);
	char *v = itest_sql(sql);
	json_int_t job = atoll(v);
	ck_assert_int_gt(job, 0);
	free(v);
	free(sql);
	return job;
}

/* A JSON PATCH with the worker token; returns the status, the answer in *r. */
static long
patch(struct itest_resp *r, const char *path, const char *body)
{
	itest_http(
	    r, "PATCH", path, IT_WORKER, body, strlen(body), "Content-Type: application/json");
	return r->status;
}

/* GET a request's sub-resource (download, logs); returns the status. */
static long
get_sub(json_int_t id, const char *what, struct itest_resp *r)
{
	char *path = xasprintf("/api/v1/requests/%lld/%s", (long long)id, what);
	itest_http(r, "GET", path, NULL, NULL, 0, NULL);
	free(path);
	return r->status;
}

/* A number from SQL ending in an id: "SELECT ... WHERE x = " id. */
static long long
sql_count(const char *sql_head, json_int_t id)
{
	char *sql = xasprintf("%s%lld", sql_head, (long long)id);
	char *v = itest_sql(sql);
	long long n = atoll(v);
	free(v);
	free(sql);
	return n;
}

/* Stale while the job waits on a tarball: the request stays stale with one stale entry
 * and no complete one, the job ends failed, nothing is served. */
START_TEST(test_stale_while_running)
{
	fresh_worker("rf-w1");
	json_int_t id = post_request("appa", "\"npm\"");
	json_int_t job = job_of(id);
	ck_assert_msg(reg_wait("GET /slow-a/-/slow-a-1.0.0.tgz", 30), "the download never began");
	ck_assert_int_eq(reg_lines("SENT /slow-a/-/slow-a-1.0.0.tgz"), 0);

	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld", (long long)id);
	ck_assert_int_eq(
	    patch(&r, path, "{\"state\": \"stale\", \"state_reason\": \"" STALE_REASON "\"}"), 200);
	itest_resp_free(&r);
	free(path);

	/* The job ends (not running forever): the stale PATCH failed it. */
	json_t *j = NULL;
	for (int i = 0; i < 300; i++) {
		json_decref(j);
		j = itest_job(job);
		const char *st = json_string_value(json_object_get(j, "state"));
		if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0)
			break;
		usleep(100000);
	}
	ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "failed");
	json_decref(j);

	/* The worker gets its tarball, finds the request stale and moves on: a request made
	 * after it completes on the same (only) worker, so the first job's end is behind us. */
	ck_assert(reg_wait("SENT /slow-a/-/slow-a-1.0.0.tgz", 30));
	json_int_t next = post_request("appc", "");
	json_decref(wait_request(next, "complete", 60));

	json_t *doc = get_request(id);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "state")), "stale");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "state_reason")), STALE_REASON);
	json_t *h0 = json_array_get(json_object_get(doc, "state_history"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(h0, "state")), "stale");
	ck_assert_int_eq(history_count(doc, "stale"), 1);
	ck_assert_int_eq(history_count(doc, "complete"), 0);
	ck_assert_int_eq(history_count(doc, "failed"), 0);
	json_decref(doc);

	/* The job stays failed with the PATCH's reason; no bundle row, none served. */
	j = itest_job(job);
	ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "failed");
	ck_assert_str_eq(
	    json_string_value(json_object_get(j, "error")), "The request is no longer in progress");
	json_decref(j);
	ck_assert_int_eq(sql_count("SELECT count(*) FROM bundles WHERE job_id = ", job), 0);
	ck_assert_int_eq(get_sub(id, "download", &r), 400);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "error")),
	    "The request must be in the \"complete\" state before downloading the archive");
	itest_resp_free(&r);
	ck_assert_int_eq(get_sub(id, "logs", &r), 410);
	itest_resp_free(&r);
	ck_assert_int_eq(sql_count("SELECT count(*) FROM request_logs WHERE request_id = ", id), 0);
}
END_TEST

/* The worker SIGKILLed mid-download: another one redoes the job after the lease; the
 * request completes once and its bundle matches its Digest. */
START_TEST(test_worker_killed_mid_request)
{
	fresh_worker("rf-w2");
	json_int_t id = post_request("appb", "\"npm\"");
	json_int_t job = job_of(id);
	ck_assert_msg(reg_wait("GET /slow-b/-/slow-b-1.0.0.tgz", 30), "the download never began");
	itest_stop_worker(worker, SIGKILL);
	ck_assert_int_eq(reg_lines("SENT /slow-b/-/slow-b-1.0.0.tgz"), 0);
	json_t *j = itest_job(job);
	ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "running");
	json_decref(j);
	json_t *doc = get_request(id);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "state")), "in_progress");
	json_decref(doc);

	worker = itest_start_worker("rf-w3");
	doc = wait_request(id, "complete", 60);
	ck_assert_int_eq(history_count(doc, "complete"), 1);
	json_t *h0 = json_array_get(json_object_get(doc, "state_history"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(h0, "state")), "complete");
	json_decref(doc);
	ck_assert_int_eq(reg_lines("GET /slow-b/-/slow-b-1.0.0.tgz"), 2);
	j = itest_job(job);
	ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "done");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "attempts")), 2);
	json_decref(j);

	struct itest_resp r;
	ck_assert_int_eq(get_sub(id, "download", &r), 200);
	char *werr = NULL, *file = xasprintf("%s/b.tar.gz", IT.dir);
	ck_assert_msg(
	    write_file_atomic(file, r.body.data, r.body.len, 0644, &werr) == 0, "%s", werr);
	char *digest = xstrdup(itest_header(&r, "Digest") ?: "(none)");
	itest_resp_free(&r);
	char *mine = itest_sh_out("echo sha-256=$(openssl dgst -sha256 -binary b.tar.gz | base64)");
	ck_assert_str_eq(digest, mine);
	ck_assert_int_eq(itest_sh("tar -xzOf b.tar.gz deps/npm/slow-b/slow-b-1.0.0.tgz |"
				  " cmp - www/slow-b/-/slow-b-1.0.0.tgz"),
	    0);
	free(mine);
	free(digest);
	free(file);
}
END_TEST

/* The final reports again: the job's done PATCH (same body as the worker's) and the
 * request's complete PATCH are 200 no-ops; complete with another reason is refused. */
START_TEST(test_duplicate_final_report)
{
	if (worker < 0)
		fresh_worker("rf-w4");
	json_int_t id = post_request("appc", "\"npm\"");
	json_int_t job = job_of(id);
	json_t *doc = wait_request(id, "complete", 60);
	size_t hlen = json_array_size(json_object_get(doc, "state_history"));
	ck_assert_int_eq(history_count(doc, "complete"), 1);
	json_decref(doc);

	json_t *j = itest_job(job);
	ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "done");
	json_t *body = json_pack("{s:s, s:O, s:O}", "state", "done", "worker",
	    json_object_get(j, "worker"), "result", json_object_get(j, "result"));
	char *text = json_dumps(body, JSON_COMPACT);
	char *jpath = xasprintf("/jobs/%lld", (long long)job);
	struct itest_resp r;
	ck_assert_msg(patch(&r, jpath, text) == 200, "%s: %ld %s", text, r.status, r.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "state")), "done");
	ck_assert(json_equal(json_object_get(r.json, "result"), json_object_get(j, "result")));
	ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "finished_at")));
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "finished_at")),
	    json_string_value(json_object_get(j, "finished_at")));
	itest_resp_free(&r);
	ck_assert_int_eq(sql_count("SELECT count(*) FROM bundles WHERE job_id = ", job), 1);

	char *rpath = xasprintf("/api/v1/requests/%lld", (long long)id);
	const char *again =
	    "{\"state\": \"complete\", \"state_reason\": \"Completed successfully\"}";
	ck_assert_int_eq(patch(&r, rpath, again), 200);
	itest_resp_free(&r);
	ck_assert_int_eq(
	    patch(&r, rpath, "{\"state\": \"complete\", \"state_reason\": \"Done again\"}"), 400);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "error")),
	    "State transition is not allowed from complete to complete.");
	itest_resp_free(&r);

	doc = get_request(id);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "state")), "complete");
	ck_assert_int_eq(history_count(doc, "complete"), 1);
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "state_history")), hlen);
	json_decref(doc);
	ck_assert_int_eq(get_sub(id, "download", &r), 200);
	itest_resp_free(&r);
	json_decref(body);
	json_decref(j);
	free(text);
	free(jpath);
	free(rpath);
}
END_TEST

/* Writes a file under IT.dir. */
static void
put_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", IT.dir, name), *err = NULL;
	if (write_file_atomic(path, text, strlen(text), 0644, &err) != 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		exit(1);
	}
	free(path);
}

int
main(void)
{
	itest_init("requests_faults", 13);
	if (itest_sh("command -v node >/dev/null") != 0) {
		fprintf(stderr, "itest_requests_faults: node is needed\n");
		itest_teardown();
		return getenv("BITSVAULT_TEST_REQUIRE") ? 1 : 77;
	}
	int port = itest_free_port();
	snprintf(reg_url, sizeof reg_url, "http://127.0.0.1:%d/", port);
	put_file("registry.js", registry_js);
	put_file("fixture.sh", fixture_sh);
	if (itest_sh("sh fixture.sh appa slow-a %s && sh fixture.sh appb slow-b %s &&"
		     " sh fixture.sh appc fast-c %s",
		reg_url, reg_url, reg_url) != 0 ||
	    itest_sh("node registry.js %s/www %d reg.log %d >logs/registry.log 2>&1 &"
		     " echo $! > reg.pid",
		IT.dir, port, DELAY_MS) != 0) {
		itest_teardown();
		return 1;
	}
	for (int i = 0; i < 200 && itest_sh("test -e reg.log.ready") != 0; i++)
		usleep(25000);

	static char reg_env[128];
	snprintf(reg_env, sizeof reg_env, "BITSVAULT_NPM_REGISTRY=%s", reg_url);
	itest_env(reg_env);
	itest_env("BITSVAULT_LOAD_ALLOW_FILE=true");
	itest_env("BITSVAULT_NPM_DOWNLOAD_ATTEMPTS=1");
	itest_start_api();

	Suite *s = suite_create("requests_faults");
	TCase *tc = tcase_create("faults");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_stale_while_running);
	tcase_add_test(tc, test_worker_killed_mid_request);
	tcase_add_test(tc, test_duplicate_final_report);
	suite_add_tcase(s, tc);
	int rc = itest_run(s);
	itest_sh("kill $(cat reg.pid) 2>/dev/null");
	itest_teardown();
	return rc;
}
