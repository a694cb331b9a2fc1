/* itest_statuscache.c: the API's cache of done cooks' statuses (api/statuscache.c),
 * end to end. A done job's status is answered without Postgres (shown by holding a lock
 * on the jobs table: a cached poll answers at once, an uncached one waits), with the
 * fetch URL of each call's host and face; and no cached answer outlives a change of the
 * job: an expiry (the notification drops it), a failure (failed jobs are never kept: a
 * new cook may take their key), or a change made while the API's listener was away (the
 * reconnect clears the cache). */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

/* Runs a statement that returns no rows (UPDATE ...) on this program's database. */
static void
sql_exec(const char *sql)
{
	char *wrapped = xasprintf("WITH x AS (%s RETURNING 1) SELECT count(*) FROM x", sql);
	char *n = itest_sql(wrapped);

	ck_assert_msg(strcmp(n, "1") == 0, "%s: %s rows", sql, n);
	free(n);
	free(wrapped);
}

/* A tree uploaded and cooked to done; returns its id (caller frees), the job in *job. */
static char *
cooked(const char *name, json_int_t *job)
{
	char *id, *tree = itest_make_tree(name, 1000);
	json_t *st;

	free(tree);
	id = itest_upload_tree(name);
	*job = itest_cook(id);
	st = itest_wait_cook("directory", id, 120);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	return id;
}

/* GET path; the status, the body in *doc (caller decrefs) when it is JSON. */
static long
get(const char *path, const char *extra_header, json_t **doc)
{
	struct itest_resp r;
	long st;

	itest_http(&r, "GET", path, NULL, NULL, 0, extra_header);
	st = r.status;
	*doc = r.json != NULL ? json_incref(r.json) : NULL;
	itest_resp_free(&r);
	return st;
}

/* Polls a status path until it answers want, for at most timeout_ms; the last status. */
static long
poll_until(const char *path, long want, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	long st;
	json_t *doc;

	for (;;) {
		st = get(path, NULL, &doc);
		json_decref(doc);
		if (st == want || now_ms() > end)
			return st;
		usleep(50000);
	}
}

/* GET path answers status (the body is not kept). */
static void
expect(const char *path, long status)
{
	json_t *doc;

	ck_assert_int_eq(get(path, NULL, &doc), status);
	json_decref(doc);
}

/* A transaction that holds the jobs table locked against every read (commit with
 * unlock_jobs): what then answers at once did not read Postgres. */
static PGconn *
lock_jobs(void)
{
	PGconn *pg = PQconnectdb(IT.db_url);
	PGresult *res;

	ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
	res = PQexec(pg, "BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE");
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	return pg;
}

static void
unlock_jobs(PGconn *pg)
{
	PQclear(PQexec(pg, "ROLLBACK"));
	PQfinish(pg);
}

/* True when GET path got no answer in 2 s (curl gave up): it waits on the lock. */
static bool
waits(const char *path)
{
	char *code =
	    itest_sh_out("curl -s -o /dev/null -m 2 -w '%%{http_code}' '%s%s'", IT.url, path);
	bool w = strcmp(code, "000") == 0;

	free(code);
	return w;
}

/* Hits answer the same document as the miss, with each call's own fetch URL: another
 * Host, and SWH's face (its raw/ path). */
START_TEST(test_hits_render_per_call)
{
	json_int_t job;
	char *id = cooked("render", &job);
	char *path = xasprintf("/vault/directory/%s/status", id);
	char *swh = xasprintf("/api/1/vault/flat/swh:1:dir:%s/", id);
	char *want;
	json_t *a, *b, *c;

	ck_assert_int_eq(get(path, NULL, &a), 200);
	ck_assert_int_eq(get(path, "Host: cache.example:8443", &b), 200);
	ck_assert_int_eq(get(swh, "Host: swh.example", &c), 200);
	want = xasprintf("http://cache.example:8443/vault/directory/%s", id);
	ck_assert_str_eq(json_string_value(json_object_get(b, "fetch_url")), want);
	free(want);
	want = xasprintf("http://swh.example/api/1/vault/flat/swh:1:dir:%s/raw/", id);
	ck_assert_str_eq(json_string_value(json_object_get(c, "fetch_url")), want);
	free(want);
	json_object_del(a, "fetch_url");
	json_object_del(b, "fetch_url");
	json_object_del(c, "fetch_url");
	ck_assert_msg(json_equal(a, b) && json_equal(a, c), "documents differ: %s / %s / %s",
	    json_dumps(a, JSON_COMPACT), json_dumps(b, JSON_COMPACT), json_dumps(c, JSON_COMPACT));
	ck_assert_int_eq(json_integer_value(json_object_get(a, "id")), job);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	free(swh);
	free(path);
	free(id);
}
END_TEST

/* With the jobs table locked, a done cook's status still answers at once, and a
 * status the cache cannot hold (never requested: a 404 read from Postgres) waits for the
 * lock: the cached answer did not touch Postgres. */
START_TEST(test_hit_needs_no_postgres)
{
	json_int_t job;
	char *id = cooked("nopg", &job);
	char *path = xasprintf("/vault/directory/%s/status", id);
	char *zip = xasprintf("/vault/directory/%s/status?format=zip", id);
	json_t *doc;
	PGconn *pg;
	uint64_t t0, took;

	expect(path, 200); /* now cached */
	pg = lock_jobs();

	t0 = now_ms();
	ck_assert_int_eq(get(path, NULL, &doc), 200);
	took = now_ms() - t0;
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	json_decref(doc);
	ck_assert_msg(took < (itest_instrumented() ? 5000 : 1000),
	    "a cached status took %llu ms with the jobs table locked", (unsigned long long)took);
	/* The control: a read from Postgres is still waiting after 2 s. */
	ck_assert_msg(waits(zip), "an uncached status answered under the lock");
	unlock_jobs(pg);
	ck_assert_int_eq(poll_until(zip, 404, 15000), 404);
	free(zip);
	free(path);
	free(id);
}
END_TEST

/* An expiry (what the worker's expiry does to the row) is heard and the cached done
 * status goes: the poll says 404, and keeps saying it. */
START_TEST(test_expiry_drops)
{
	json_int_t job;
	char *id = cooked("expire", &job);
	char *path = xasprintf("/vault/directory/%s/status", id);
	char *sql;

	expect(path, 200);
	expect(path, 200);
	sql = xasprintf("UPDATE jobs SET state = 'expired' WHERE id = %lld", (long long)job);
	sql_exec(sql);
	free(sql);
	ck_assert_int_eq(poll_until(path, 404, 5000), 404);
	for (int i = 0; i < 20; i++)
		expect(path, 404);
	free(path);
	free(id);
}
END_TEST

/* A done job made to fail: the cached done status goes with its notification; the failed
 * one is read from Postgres each time (never kept), so with the jobs table locked it
 * waits; a new POST takes the key, and the very next poll shows the new job. */
START_TEST(test_recook_after_failure)
{
	json_int_t job, job2;
	char *id = cooked("recook", &job);
	char *path = xasprintf("/vault/directory/%s/status", id);
	char *sql;
	json_t *doc;

	sql = xasprintf("UPDATE jobs SET state = 'failed', error = 'made to fail by the test'"
			" WHERE id = %lld",
	    (long long)job);
	sql_exec(sql);
	free(sql);
	/* Until the failure is seen (the notification drops the cached done status). */
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(get(path, NULL, &doc), 200);
		bool failed =
		    strcmp(json_string_value(json_object_get(doc, "status")), "failed") == 0;
		json_decref(doc);
		if (failed)
			break;
		ck_assert_msg(i < 99, "the failure was never seen");
		usleep(50000);
	}
	ck_assert_int_eq(get(path, NULL, &doc), 200);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "failed");
	json_decref(doc);
	/* Not from memory: with the jobs table locked the failed status waits. */
	PGconn *pg = lock_jobs();
	ck_assert_msg(waits(path), "a failed status answered under the lock");
	unlock_jobs(pg);

	job2 = itest_cook(id);
	ck_assert_int_ne(job2, job);
	ck_assert_int_eq(get(path, NULL, &doc), 200);
	ck_assert_msg(json_integer_value(json_object_get(doc, "id")) == job2,
	    "the poll after a new cook showed job %lld, not the new %lld",
	    (long long)json_integer_value(json_object_get(doc, "id")), (long long)job2);
	json_decref(doc);
	doc = itest_wait_cook("directory", id, 120);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	json_decref(doc);
	free(path);
	free(id);
}
END_TEST

/* The API's LISTEN connection is killed and the job expires while it is away: that
 * notification is lost, so once the listener is back the cache must not answer done. */
START_TEST(test_listener_reconnect_clears)
{
	json_int_t job;
	char *id = cooked("relisten", &job);
	char *path = xasprintf("/vault/directory/%s/status", id);
	char *sql, *n;
	uint64_t end;

	expect(path, 200);
	expect(path, 200);
	/* The listener is the one backend of this database in LISTEN. */
	n = itest_sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
		      " WHERE datname = current_database() AND query ILIKE 'LISTEN%'");
	ck_assert_msg(strcmp(n, "1") == 0, "%s listener backends terminated", n);
	free(n);
	sql = xasprintf("UPDATE jobs SET state = 'expired' WHERE id = %lld", (long long)job);
	sql_exec(sql);
	free(sql);
	/* Until the listener is back (a new LISTEN backend), then a while more. */
	end = now_ms() + 30000;
	for (;;) {
		n = itest_sql("SELECT count(*) FROM pg_stat_activity WHERE datname ="
			      " current_database() AND query ILIKE 'LISTEN%'");
		bool back = strcmp(n, "1") == 0;
		free(n);
		if (back)
			break;
		ck_assert_msg(now_ms() < end, "the listener did not come back in 30 s");
		usleep(100000);
	}
	usleep(500000);
	for (int i = 0; i < 20; i++)
		expect(path, 404);
	free(path);
	free(id);
}
END_TEST

static void
setup(void)
{
	itest_init("statuscache", 22);
	itest_start_api();
	itest_start_worker("sc-w1");
}

int
main(void)
{
	Suite *s = suite_create("itest_statuscache");
	TCase *tc = tcase_create("statuscache");

	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_hits_render_per_call);
	tcase_add_test(tc, test_hit_needs_no_postgres);
	tcase_add_test(tc, test_expiry_drops);
	tcase_add_test(tc, test_recook_after_failure);
	tcase_add_test(tc, test_listener_reconnect_clears);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
