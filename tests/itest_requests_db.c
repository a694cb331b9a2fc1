/* itest_requests_db.c: shared/requests.c against a real Postgres with the real migrations:
 * creation (request, job and first history row in one go), Cachito's transition table and
 * its duplicate no-op, the side effects of stale and failed, the trigger that completes or
 * fails a request when its job ends, the latest-request matching, configuration files,
 * environment variables, logs, the list filters, expiry and the artifacts index. No API and
 * no worker: the SQL module alone. */
#include <check.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shared/db.h"
#include "shared/requests.h"
#include "tests/itest.h"

static struct db *db;

/* A request with these fields; returns it (caller frees). */
static struct request *
make(const char *repo, const char *ref, const char *pms)
{
	json_t *f = json_pack("{s:s, s:s}", "repo", repo, "ref", ref);
	struct request *r = NULL;
	char *err = NULL;

	if (pms != NULL)
		json_object_set_new(f, "pkg_managers", json_loads(pms, 0, NULL));
	ck_assert_msg(requests_create(db, f, "alice", NULL, &r, &err) == 0, "%s", err);
	json_decref(f);
	return r;
}

/* A scalar from SQL (itest_sql), as an integer. */
static long long BV_PRINTF(1, 2) sql_int(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = xvasprintf(fmt, ap);
	va_end(ap);
	char *v = itest_sql(sql);
	long long n = atoll(v);
	free(v);
	free(sql);
	return n;
}

/* The number of history rows of a request. */
static size_t
history_len(int64_t id)
{
	json_t *h = NULL;
	char *err = NULL;
	ck_assert_msg(requests_history(db, id, &h, &err) == 0, "%s", err);
	size_t n = json_array_size(h);
	json_decref(h);
	return n;
}

/* PATCHes a state; returns the HTTP status the API would answer (200 when it worked). */
static int
patch_state(int64_t id, const char *state, const char *reason, char **msg)
{
	int status = 0;
	char *err = NULL;
	int rc = requests_patch(db, id, state, reason, NULL, -1, -1, NULL, NULL, &status, &err);
	if (msg != NULL)
		*msg = err;
	else
		free(err);
	return rc == 0 ? 200 : status;
}

#define REF "0123456789abcdef0123456789abcdef01234567"

START_TEST(test_create_and_transitions)
{
	struct request *r = make("https://github.com/org/repo.git", REF, "[\"npm\"]");
	char *msg = NULL;

	ck_assert_str_eq(r->state, REQUEST_IN_PROGRESS);
	ck_assert_str_eq(r->state_reason, "The request was initiated");
	ck_assert_str_eq(r->user, "alice");
	ck_assert_int_gt(r->job_id, 0);
	ck_assert_int_eq(strlen(r->created_text), 26); /* 2019-09-17T18:52:57.577851 */
	ck_assert_int_eq(history_len(r->id), 1);
	ck_assert_int_eq(sql_int("SELECT (params->>'request_id')::bigint FROM jobs WHERE id = %lld",
			     (long long)r->job_id),
	    r->id);

	/* Progress: new history rows; the same message again adds nothing. */
	ck_assert_int_eq(
	    patch_state(r->id, "in_progress", "Fetching the application source", NULL), 200);
	ck_assert_int_eq(
	    patch_state(r->id, "in_progress", "Fetching the application source", NULL), 200);
	ck_assert_int_eq(history_len(r->id), 2);
	/* Complete only once the job has its bundle: the trigger does it then, and the
	 * worker's own PATCH with the same reason is a no-op. */
	ck_assert_int_eq(patch_state(r->id, "complete", "Completed successfully", &msg), 400);
	ck_assert_str_eq(msg, "The request cannot be complete before its bundle is stored");
	free(msg);
	char *done =
	    xasprintf("UPDATE jobs SET state = 'running' WHERE id = %lld; INSERT INTO"
		      " bundles (job_id, sha256, size) VALUES (%lld, decode(repeat('cd', 32),"
		      " 'hex'), 1); UPDATE jobs SET state = 'done' WHERE id = %lld; SELECT 1",
		(long long)r->job_id, (long long)r->job_id, (long long)r->job_id);
	free(itest_sql(done));
	free(done);
	ck_assert_int_eq(patch_state(r->id, "complete", "Completed successfully", NULL), 200);
	ck_assert_int_eq(history_len(r->id), 3);
	/* complete -> complete with another reason, and back to in_progress: refused. */
	ck_assert_int_eq(patch_state(r->id, "complete", "other", &msg), 400);
	ck_assert_str_eq(msg, "State transition is not allowed from complete to complete.");
	free(msg);
	ck_assert_int_eq(patch_state(r->id, "in_progress", "again", &msg), 400);
	ck_assert_str_eq(msg, "State transition is not allowed from complete to in_progress.");
	free(msg);
	ck_assert_int_eq(patch_state(r->id, "stale", "The request has expired", NULL), 200);
	ck_assert_int_eq(patch_state(r->id, "failed", "x", &msg), 400);
	ck_assert_str_eq(msg, "State transition is not allowed from stale to failed.");
	free(msg);
	ck_assert_int_eq(patch_state(999999, "failed", "x", NULL), 404);

	/* The newest first. */
	json_t *h = NULL;
	char *err = NULL;
	ck_assert(requests_history(db, r->id, &h, &err) == 0);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(h, 0), "state")), "stale");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(h, 3), "state_reason")),
	    "The request was initiated");
	json_decref(h);
	request_free(r);
}
END_TEST

/* The job's end moves the request; stale expires the bundle and drops the log. */
START_TEST(test_trigger_and_side_effects)
{
	struct request *r = make("https://example.org/a.git", REF, NULL);
	struct request *got = NULL;
	char *err = NULL;

	ck_assert(requests_log(db, r->id, "Fetching the application source", &err) == 0);
	char *sql =
	    xasprintf("UPDATE jobs SET state = 'running' WHERE id = %lld; INSERT INTO bundles"
		      " (job_id, sha256, size) VALUES (%lld, decode(repeat('ab', 32), 'hex'), 3);"
		      " UPDATE jobs SET state = 'done' WHERE id = %lld; SELECT 1",
		(long long)r->job_id, (long long)r->job_id, (long long)r->job_id);
	free(itest_sql(sql));
	free(sql);
	ck_assert_int_eq(requests_get(db, r->id, &got, &err), 1);
	ck_assert_str_eq(got->state, REQUEST_COMPLETE);
	ck_assert_str_eq(got->state_reason, "Completed successfully");
	ck_assert(got->has_bundle);
	ck_assert_int_eq(got->bundle_size, 3);
	request_free(got);
	ck_assert_int_eq(history_len(r->id), 2);

	ck_assert_int_eq(patch_state(r->id, "stale", "The request has expired", NULL), 200);
	ck_assert_int_eq(requests_get(db, r->id, &got, &err), 1);
	ck_assert(!got->has_bundle);
	request_free(got);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM bundles WHERE job_id = %lld", (long long)r->job_id), 0);
	ck_assert_int_eq(sql_int("SELECT (state = 'expired')::int FROM jobs WHERE id = %lld",
			     (long long)r->job_id),
	    1);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM request_logs WHERE request_id = %lld", (long long)r->id),
	    0);
	request_free(r);

	/* A failed job fails its request with the job's reason, as a server error. */
	r = make("https://example.org/b.git", REF, NULL);
	sql =
	    xasprintf("UPDATE jobs SET state = 'failed', error = 'the registry is down' WHERE id ="
		      " %lld; SELECT 1",
		(long long)r->job_id);
	free(itest_sql(sql));
	free(sql);
	ck_assert_int_eq(requests_get(db, r->id, &got, &err), 1);
	ck_assert_str_eq(got->state, REQUEST_FAILED);
	ck_assert_str_eq(got->state_reason, "the registry is down");
	ck_assert_str_eq(got->error_origin, "server");
	request_free(got);
	request_free(r);

	/* A request failed by its worker (Cachito's PATCH with origin and type) keeps them
	 * when the job fails after: the PATCH leaves the job to its worker, which ends it
	 * with its own reason. */
	r = make("https://example.org/c.git", REF, NULL);
	sql = xasprintf(
	    "UPDATE jobs SET state = 'running' WHERE id = %lld; SELECT 1", (long long)r->job_id);
	free(itest_sql(sql));
	free(sql);
	int status = 0;
	ck_assert(requests_patch(db, r->id, "failed", "bad lockfile", NULL, -1, -1, "client",
		      "InvalidRepoStructure", &status, &err) == 0);
	ck_assert_int_eq(sql_int("SELECT (state = 'running')::int FROM jobs WHERE id = %lld",
			     (long long)r->job_id),
	    1);
	sql = xasprintf("UPDATE jobs SET state = 'failed', error = 'bad lockfile' WHERE id = %lld;"
			" SELECT 1",
	    (long long)r->job_id);
	free(itest_sql(sql));
	free(sql);
	ck_assert_int_eq(requests_get(db, r->id, &got, &err), 1);
	ck_assert_str_eq(got->state_reason, "bad lockfile");
	ck_assert_str_eq(got->error_type, "InvalidRepoStructure");
	request_free(got);
	request_free(r);
}
END_TEST

START_TEST(test_latest_and_list)
{
	const char *ref2 = "1111111111111111111111111111111111111111";
	struct request *a = make("https://github.com/org/repo", REF, "[\"npm\", \"generic\"]");
	struct request *b = make("git@github.com:org/repo.git", REF, "[\"npm\"]");
	struct request *c = make("https://github.com/notorg/repo.git", REF, NULL);
	struct request *d = make("https://github.com/org/repo.git", ref2, NULL);
	struct request *got = NULL, **list = NULL;
	char *err = NULL;
	size_t n = 0;
	int64_t total = 0;

	ck_assert_int_eq(requests_latest(db, "org/repo", REF, &got, &err), 1);
	ck_assert_int_eq(got->id, b->id);
	request_free(got);
	ck_assert_int_eq(requests_latest(db, "org/repo", ref2, &got, &err), 1);
	ck_assert_int_eq(got->id, d->id);
	request_free(got);
	ck_assert_int_eq(requests_latest(db, "rg/repo", ref2, &got, &err), 0);
	ck_assert_int_eq(requests_latest(db, "org/%", REF, &got, &err), 0);

	/* pkg_manager filters AND; newest first; repo exact. */
	json_t *pms = json_pack("[s, s]", "npm", "generic");
	struct request_filter f = {.pkg_managers = pms, .created_from = -1, .created_to = -1};
	ck_assert(requests_list(db, &f, 10, 0, &list, &n, &total, &err) == 0);
	ck_assert_int_eq(total, 1);
	ck_assert_int_eq(list[0]->id, a->id);
	for (size_t i = 0; i < n; i++)
		request_free(list[i]);
	free(list);
	json_decref(pms);
	struct request_filter g = {
	    .repo = "https://github.com/notorg/repo.git", .created_from = -1, .created_to = -1};
	ck_assert(requests_list(db, &g, 10, 0, &list, &n, &total, &err) == 0);
	ck_assert_int_eq(total, 1);
	ck_assert_int_eq(list[0]->id, c->id);
	for (size_t i = 0; i < n; i++)
		request_free(list[i]);
	free(list);
	struct request_filter h = {
	    .state = "in_progress", .created_from = a->created - 1, .created_to = d->created + 1};
	ck_assert(requests_list(db, &h, 2, 0, &list, &n, &total, &err) == 0);
	ck_assert_int_ge(total, 4);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(list[0]->id, d->id); /* newest first */
	for (size_t i = 0; i < n; i++)
		request_free(list[i]);
	free(list);
	request_free(a), request_free(b), request_free(c), request_free(d);
}
END_TEST

START_TEST(test_files_env_logs_artifacts_expiry)
{
	struct request *r = make("https://example.org/d.git", REF, NULL);
	struct request *got = NULL;
	char *err = NULL, *text = NULL;
	size_t len = 0;
	int status = 0;

	/* "\x00\xff binary\n" in base64, and a second file; sorted by path on the way out. */
	json_t *files = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "path", "app/z", "type",
	    "base64", "content", "AP8gYmluYXJ5Cg==", "path", "app/.npmrc", "type", "base64",
	    "content", "cmVnaXN0cnk9eAo=");
	ck_assert_msg(requests_add_config_files(db, r->id, files, &err) == 0, "%s", err);
	json_decref(files);
	ck_assert(requests_config_files(db, r->id, &files, &err) == 0);
	ck_assert_int_eq(json_array_size(files), 2);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(files, 0), "path")), "app/.npmrc");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(files, 1), "content")),
	    "AP8gYmluYXJ5Cg==");
	json_decref(files);

	json_t *env = json_pack("{s:{s:s, s:s}}", "A", "value", "1", "kind", "literal");
	ck_assert(requests_patch(db, r->id, NULL, NULL, env, 3, 7, NULL, NULL, &status, &err) == 0);
	json_decref(env);
	env = json_pack("{s:{s:s, s:s}}", "B", "value", "deps/npm", "kind", "path");
	ck_assert(
	    requests_patch(db, r->id, NULL, NULL, env, -1, -1, NULL, NULL, &status, &err) == 0);
	json_decref(env);
	ck_assert_int_eq(requests_get(db, r->id, &got, &err), 1);
	ck_assert_int_eq(json_object_size(got->environment_variables), 2);
	ck_assert_int_eq(got->packages_count, 3);
	ck_assert_int_eq(got->dependencies_count, 7);
	request_free(got);

	ck_assert(requests_log(db, r->id, "one", &err) == 0);
	ck_assert(requests_log(db, r->id, "two", &err) == 0);
	ck_assert(requests_log_text(db, r->id, &text, &len, &err) == 0);
	ck_assert_ptr_nonnull(strstr(text, " one\n"));
	ck_assert_ptr_nonnull(strstr(text, " two\n"));
	ck_assert(strstr(text, "one") < strstr(text, "two"));
	free(text);

	unsigned char sha[32], got_sha[32];
	int64_t size = 0;
	memset(sha, 0x5a, 32);
	ck_assert_int_eq(
	    artifacts_find(db, "npm", "left-pad", "1.3.0", "sha512-x", got_sha, &size, &err), 0);
	ck_assert(artifacts_put(db, "npm", "left-pad", "1.3.0", "sha512-x", sha, 1234, &err) == 0);
	ck_assert(artifacts_put(db, "npm", "left-pad", "1.3.0", "sha512-x", sha, 1234, &err) == 0);
	ck_assert_int_eq(
	    artifacts_find(db, "npm", "left-pad", "1.3.0", "sha512-x", got_sha, &size, &err), 1);
	ck_assert_int_eq(size, 1234);
	ck_assert(memcmp(sha, got_sha, 32) == 0);

	/* The log keeps 10,000 lines; the last says it was cut. */
	char *fill = xasprintf("INSERT INTO request_logs (request_id, line) SELECT %lld, 'x' FROM"
			       " generate_series(1, 9997); SELECT 1",
	    (long long)r->id);
	free(itest_sql(fill));
	free(fill);
	for (int i = 0; i < 4; i++)
		ck_assert(requests_log(db, r->id, "late line", &err) == 0);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM request_logs WHERE request_id = %lld", (long long)r->id),
	    10000);
	char *last = xasprintf(
	    "SELECT line FROM request_logs WHERE request_id = %lld ORDER BY id DESC LIMIT 1",
	    (long long)r->id);
	char *lv = itest_sql(last);
	ck_assert_str_eq(lv, "The log of this request is cut here: it reached 10000 lines");
	free(lv);
	free(last);

	/* One downloader per artifact: while this connection holds the lock, another cannot
	 * take it; once released, it can. */
	const char *try_sql = "SELECT pg_try_advisory_lock(hashtextextended('npm' || chr(31) ||"
			      " 'left-pad' || chr(31) || '1.3.0' || chr(31) || 'sha512-x', 0))";
	ck_assert(artifacts_lock(db, "npm", "left-pad", "1.3.0", "sha512-x", &err) == 0);
	char *v = itest_sql(try_sql);
	ck_assert_str_eq(v, "f");
	free(v);
	artifacts_unlock(db, "npm", "left-pad", "1.3.0", "sha512-x");
	v = itest_sql(try_sql); /* taken by itest_sql's own short-lived connection */
	ck_assert_str_eq(v, "t");
	free(v);

	/* Expiry: a lifetime of 0 makes every in-progress or complete request stale. */
	int n = 0;
	ck_assert(requests_expire(db, 0, 3600, 1000, &n, &err) == 0);
	ck_assert_int_ge(n, 1);
	ck_assert_int_eq(requests_get(db, r->id, &got, &err), 1);
	ck_assert_str_eq(got->state, REQUEST_STALE);
	ck_assert_str_eq(got->state_reason, "The request has expired");
	request_free(got);
	request_free(r);
}
END_TEST

static void
setup(void)
{
	char *err = NULL, *dir;
	int applied = 0;

	itest_init("requests_db", 12);
	db = db_new(IT.db_url, &err);
	ck_assert_msg(db != NULL, "%s", err);
	dir = xasprintf("%s/db/migrations", getenv("BV_TOP_SRCDIR"));
	ck_assert_msg(db_migrate(db, dir, &applied, &err) == 0, "%s", err);
	free(dir);
}

static void
teardown(void)
{
	db_free(db);
	itest_teardown();
}

int
main(void)
{
	Suite *s = suite_create("itest_requests_db");
	TCase *tc = tcase_create("requests_db");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_create_and_transitions);
	tcase_add_test(tc, test_trigger_and_side_effects);
	tcase_add_test(tc, test_latest_and_list);
	tcase_add_test(tc, test_files_env_logs_artifacts_expiry);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
