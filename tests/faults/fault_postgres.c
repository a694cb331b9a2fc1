/* fault_postgres.c: Postgres crashes (pg_ctl stop -m immediate) and comes back while two
 * clients upload trees and ask for cooks and two workers cook them. While it is down every
 * call gets a prompt 503 with a JSON reason (never a hang, never a crash) but the status of
 * a finished cook, which the API still knows (api/statuscache.c); once it is back
 * the same API and workers recover by themselves, every cook ends, and no row stands for
 * a blob the store does not hold. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/faults/faults.h"

#define TREES 400
#define CLIENTS 2
#define MAX_CALL_MS 10000
#define DOWN_MS 6000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_clients;
static int next_tree, ncooks;
static char *cook_ids[TREES];
static uint64_t down_from, down_until; /* the outage, ms (down_until 0: still down) */
static int calls, calls_503, calls_bad, slow_calls, late_503, bad_503_body;
static uint64_t last_503_after_up; /* ms after the restart of the last 503 */

/* One call, retried on 503 as a client would; a 503 must come with a JSON reason and a
 * Retry-After. */
static long
call(struct itest_resp *r, const char *method, const char *path, const char *file)
{
	for (;;) {
		uint64_t t0 = faults_ms();
		if (file != NULL)
			itest_http_file(r, method, path, IT_USER, file);
		else
			itest_http(r, method, path, IT_USER, NULL, 0, NULL);
		uint64_t t1 = faults_ms();
		pthread_mutex_lock(&lock);
		calls++;
		if (t1 - t0 > MAX_CALL_MS) {
			fprintf(stderr, "slow: %s %s %llu ms\n", method, path,
			    (unsigned long long)(t1 - t0));
			slow_calls++;
		}
		if (r->status == 503) {
			calls_503++;
			if (r->json == NULL ||
			    json_string_value(json_object_get(r->json, "error")) == NULL ||
			    itest_header(r, "Retry-After") == NULL)
				bad_503_body++;
			if (down_until != 0 && t0 > down_until) {
				if (t0 - down_until > last_503_after_up)
					last_503_after_up = t0 - down_until;
				if (t0 - down_until > 15000)
					late_503++;
			}
		} else if (r->status >= 300 && r->status != 404) {
			fprintf(stderr, "%s %s: %ld %.200s\n", method, path, r->status,
			    r->body.data ? r->body.data : "");
			calls_bad++;
		}
		pthread_mutex_unlock(&lock);
		if (r->status != 503 || stop_clients > 1)
			return r->status;
		itest_resp_free(r);
		usleep(200000);
	}
}

/* A client: uploads the next tree, asks for its cook, again. */
static void *
client_main(void *arg)
{
	(void)arg;
	while (!stop_clients) {
		pthread_mutex_lock(&lock);
		int t = next_tree < TREES ? next_tree++ : -1;
		pthread_mutex_unlock(&lock);
		if (t < 0)
			break;
		struct itest_resp r;
		char file[32];
		snprintf(file, sizeof file, "tars/t%d.tar", t);
		if (call(&r, "POST", "/directories", file) != 201) {
			itest_resp_free(&r);
			continue;
		}
		char *id = xstrdup(json_string_value(json_object_get(r.json, "id")));
		itest_resp_free(&r);
		char *path = xasprintf("/vault/directory/%s", id);
		long st = call(&r, "POST", path, NULL);
		itest_resp_free(&r);
		free(path);
		pthread_mutex_lock(&lock);
		if (st == 201 || st == 200)
			cook_ids[ncooks++] = id;
		else
			free(id);
		pthread_mutex_unlock(&lock);
		usleep(50000);
	}
	return NULL;
}

START_TEST(test_postgres_restart)
{
	ck_assert_int_eq(itest_sh("mkdir -p tars && for i in $(seq 0 %d); do mkdir -p trees/t$i"
				  " && seq $i $((i + 3000)) > trees/t$i/data.txt"
				  " && head -c 200000 /dev/urandom > trees/t$i/blob"
				  " && tar cf tars/t$i.tar -C trees/t$i .; done",
			     TREES - 1),
	    0);
	faults_workers_start("fp", 2);
	pthread_t th[CLIENTS];
	for (int i = 0; i < CLIENTS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, client_main, NULL), 0);
	sleep(3);
	/* A finished cook's status, polled until done: the API keeps it (api/statuscache.c)
	 * and must still answer it while Postgres is down. */
	pthread_mutex_lock(&lock);
	char *done_id = ncooks > 0 ? xstrdup(cook_ids[0]) : NULL;
	pthread_mutex_unlock(&lock);
	ck_assert_msg(done_id != NULL, "no cook was asked for in 3 s");
	json_t *dst = itest_wait_cook("directory", done_id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(dst, "status")), "done");
	json_decref(dst);
	int before = ncooks;
	down_from = faults_ms();
	faults_ctl("pg-stop immediate");
	usleep(1000 * 1000);
	struct itest_resp cr;
	char *cpath = xasprintf("/vault/directory/%s/status", done_id);
	itest_http(&cr, "GET", cpath, NULL, NULL, 0, NULL);
	ck_assert_msg(cr.status == 200 && cr.json != NULL &&
		strcmp(json_string_value(json_object_get(cr.json, "status")), "done") == 0,
	    "a done cook's status while Postgres is down: %ld %.300s", cr.status,
	    cr.body.data != NULL ? cr.body.data : "");
	itest_resp_free(&cr);
	free(cpath);
	free(done_id);
	usleep((DOWN_MS - 1000) * 1000);
	faults_ctl("pg-start");
	down_until = faults_ms();
	int during = ncooks;
	sleep(12);
	stop_clients = 1;
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(th[i], NULL);
	printf("cooks asked: %d before the crash, %d more while down, %d after; %d calls, %d"
	       " answered 503 (last %llu ms after the restart)\n",
	    before, during - before, ncooks - during, calls, calls_503,
	    (unsigned long long)last_503_after_up);

	ck_assert_msg(calls_503 > 0, "no call saw the outage");
	ck_assert_msg(
	    bad_503_body == 0, "%d 503s had no JSON reason or no Retry-After", bad_503_body);
	ck_assert_msg(calls_bad == 0, "%d calls had other errors (above)", calls_bad);
	ck_assert_msg(slow_calls == 0, "%d calls hung past %d ms", slow_calls, MAX_CALL_MS);
	ck_assert_msg(late_503 == 0, "503s went on 15 s after Postgres was back");
	ck_assert_msg(ncooks > during, "no cook was asked for after Postgres came back");
	/* The same processes recovered by themselves. */
	ck_assert_int_eq(kill(IT.api, 0), 0);

	int failed = 0;
	for (int i = 0; i < ncooks; i++) {
		json_t *st = itest_wait_cook("directory", cook_ids[i], 120);
		const char *s = json_string_value(json_object_get(st, "status"));
		ck_assert_msg(s != NULL && (strcmp(s, "done") == 0 || strcmp(s, "failed") == 0),
		    "cook of %s never ended: %s", cook_ids[i], json_dumps(st, 0));
		if (strcmp(s, "failed") == 0) {
			fprintf(stderr, "failed: %s: %s\n", cook_ids[i],
			    json_string_value(json_object_get(st, "progress_message")));
			failed++;
		}
		json_decref(st);
		free(cook_ids[i]);
	}
	ck_assert_msg(failed == 0, "%d cooks failed", failed);
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM jobs WHERE state IN ('queued',"
					" 'running')"),
	    0);
	/* No row stands for a blob the store lacks: contents and bundles both. */
	char *missing = itest_sh_out(
	    "psql -X -At '%s' -c \"SELECT encode(sha256, 'hex') FROM contents UNION SELECT"
	    " encode(sha256, 'hex') FROM bundles\" | while read -r h; do"
	    " f=data/store/objects/$(echo $h | cut -c1-2)/$(echo $h | cut -c3-4)/$h;"
	    " [ -f $f ] || echo $h; done | wc -l",
	    IT.db_url);
	ck_assert_msg(strcmp(missing, "0") == 0, "%s rows name blobs the store lacks", missing);
	free(missing);
	ck_assert_int_eq(faults_store_check(true), 0);
}
END_TEST

int
main(void)
{
	itest_init("fault_postgres", 31);
	itest_start_api();
	Suite *s = suite_create("fault_postgres");
	TCase *tc = tcase_create("faults");
	tcase_add_test(tc, test_postgres_restart);
	suite_add_tcase(s, tc);
	int rc = itest_run(s);

	/* Stops the API and workers (none may outlive the program), scans their logs for
	 * secrets and drops the database, as the fixtures of the other programs do. */
	itest_teardown();
	return rc;
}
