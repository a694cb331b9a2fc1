/* itest_faults.c: jobs survive a worker killed mid-cook and a flushed Redis. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

/* A worker killed with SIGKILL while it cooks: the other worker finishes the job after
 * the lease, the bundle is whole, and no temp file stays under a real name. */
START_TEST(test_worker_killed_mid_cook)
{
	/* Big enough that the cook is still running when we look: ~200 MB, incompressible. */
	ck_assert_int_eq(itest_sh("mkdir -p trees/kill && for i in 1 2 3 4 5 6 7 8; do"
				  " head -c 25000000 /dev/urandom > trees/kill/f$i.bin; done"),
	    0);
	char *dir = xasprintf("%s/trees/kill", IT.dir);
	char *gitid = itest_git_tree_id(dir);
	char *id = itest_upload_tree("kill");
	ck_assert_str_eq(id, gitid);

	int w1 = itest_start_worker("faults-w1");
	json_int_t job = itest_cook(id);
	/* Wait until w1 holds it. */
	bool running = false;
	for (int i = 0; i < 400 * itest_time_factor() && !running; i++) {
		json_t *j = itest_job(job);
		running = strcmp(json_string_value(json_object_get(j, "state")), "running") == 0;
		json_decref(j);
		if (!running)
			usleep(10000);
	}
	ck_assert_msg(running, "the job never started");
	itest_stop_worker(w1, SIGKILL);
	json_t *j = itest_job(job);
	ck_assert_msg(strcmp(json_string_value(json_object_get(j, "state")), "running") == 0,
	    "the cook ended before the kill: %s; make the tree bigger", json_dumps(j, 0));
	json_decref(j);

	/* The same name again, as a restarted container would be: still a new holder, and a
	 * new attempt (a job that kills its worker must run out of attempts). */
	j = itest_job(job);
	char *first_id = xstrdup(json_string_value(json_object_get(j, "worker")));
	json_decref(j);
	ck_assert_msg(strncmp(first_id, "faults-w1#", 10) == 0, "worker %s", first_id);
	itest_start_worker("faults-w1");
	json_t *st = itest_wait_cook("directory", id, 120);
	ck_assert_msg(strcmp(json_string_value(json_object_get(st, "status")), "done") == 0, "%s",
	    json_dumps(st, 0));
	json_decref(st);
	j = itest_job(job);
	const char *second_id = json_string_value(json_object_get(j, "worker"));
	ck_assert_msg(strncmp(second_id, "faults-w1#", 10) == 0, "worker %s", second_id);
	ck_assert_str_ne(second_id, first_id);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "attempts")), 2);
	json_decref(j);

	/* The bundle is whole: it extracts and re-hashes to the id. */
	ck_assert_int_eq(itest_sh("curl -sf -o kill.tar.gz %s/vault/directory/%s && mkdir -p kout"
				  " && tar xzf kill.tar.gz -C kout",
			     IT.url, id),
	    0);
	char *out = xasprintf("%s/kout/swh:1:dir:%s", IT.dir, id);
	char *rehash = itest_git_tree_id(out);
	ck_assert_str_eq(rehash, id);
}
END_TEST

/* Redis flushed while jobs wait: the reconciler puts them back and each one completes. */
START_TEST(test_redis_flushed)
{
	/* No worker runs while the jobs are queued and Redis is flushed. */
	for (int i = 0; i < IT.nworkers; i++)
		itest_stop_worker(i, SIGTERM);
	char *ids[5];
	for (int i = 0; i < 5; i++) {
		char name[16];
		snprintf(name, sizeof name, "flush%d", i);
		free(itest_make_tree(name, 1000 + (size_t)i));
		ids[i] = itest_upload_tree(name);
		itest_cook(ids[i]);
	}
	const char *r = strstr(IT.redis_url, "://") + 3;
	char *host = xstrndup(r, strcspn(r, ":"));
	int port = atoi(strchr(r, ':') + 1);
	ck_assert_int_eq(
	    itest_sh("redis-cli -h %s -p %d -n %d FLUSHDB >/dev/null", host, port, IT.redis_db), 0);
	ck_assert_int_eq(
	    itest_sh("test \"$(redis-cli -h %s -p %d -n %d DBSIZE)\" = 0", host, port, IT.redis_db),
	    0);
	itest_start_worker("faults-w3");
	itest_start_worker("faults-w4");
	for (int i = 0; i < 5; i++) {
		json_t *st = itest_wait_cook("directory", ids[i], 60);
		ck_assert_msg(strcmp(json_string_value(json_object_get(st, "status")), "done") == 0,
		    "job %d: %s", i, json_dumps(st, 0));
		json_decref(st);
	}
}
END_TEST

/* PATCHes a job as a worker; returns the status and leaves the answer's state in *state. */
static long
patch_as(json_int_t job, const char *body, char *state, size_t n)
{
	struct itest_resp r;
	char *path = xasprintf("/jobs/%lld", (long long)job);
	itest_http(
	    &r, "PATCH", path, IT_WORKER, body, strlen(body), "Content-Type: application/json");
	long st = r.status;
	if (state != NULL)
		snprintf(state, n, "%s",
		    json_string_value(json_object_get(r.json, "state")) ?: json_string_value(
									      json_object_get(r.json, "error")) ?: "");
	itest_resp_free(&r);
	free(path);
	return st;
}

/* A job belongs to the worker that claimed it until its lease runs out: another worker's
 * changes are 409s, the holder's repeated claim is free, a late claim takes over. */
START_TEST(test_ownership)
{
	char st[256];
	for (int i = 0; i < IT.nworkers; i++)
		itest_stop_worker(i, SIGTERM);
	free(itest_make_tree("own", 100));
	char *id = itest_upload_tree("own");
	json_int_t job = itest_cook(id);

	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"running\",\"worker\":\"w-a\"}", st, sizeof st), 200);
	ck_assert_str_eq(st, "running");
	ck_assert_int_eq(
	    patch_as(job, "{\"progress_message\":\"x\",\"worker\":\"w-b\"}", st, sizeof st), 409);
	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"running\",\"worker\":\"w-b\"}", st, sizeof st), 409);
	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"running\",\"worker\":\"w-a\"}", st, sizeof st), 200);
	json_t *j = itest_job(job);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "attempts")), 1);
	json_decref(j);
	/* Worker-supplied strings are bounded. */
	char big[1200];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	char *body = xasprintf("{\"progress_message\":\"%s\",\"worker\":\"w-a\"}", big);
	ck_assert_int_eq(patch_as(job, body, st, sizeof st), 400);
	ck_assert_ptr_nonnull(strstr(st, "progress_message"));
	free(body);
	/* The lease is 4 s in these tests: after it, another worker may take over. */
	sleep(5);
	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"running\",\"worker\":\"w-b\"}", st, sizeof st), 200);
	j = itest_job(job);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "attempts")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(j, "worker")), "w-b");
	json_decref(j);
	/* The old holder's late report is refused; the job is untouched. */
	ck_assert_int_eq(
	    patch_as(
		job, "{\"state\":\"failed\",\"error\":\"late\",\"worker\":\"w-a\"}", st, sizeof st),
	    409);
	/* A done that names a bundle the store does not have is refused. */
	ck_assert_int_eq(patch_as(job,
			     "{\"state\":\"done\",\"worker\":\"w-b\",\"result\":{\"bundle_sha256\":"
			     "\"1111111111111111111111111111111111111111111111111111111111111111\","
			     "\"bundle_size\":1}}",
			     st, sizeof st),
	    400);
	/* Released with a reason, the job is picked up by a real worker and finishes. */
	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"queued\",\"worker\":\"w-b\",\"error\":\"test release\"}",
		st, sizeof st),
	    200);
	itest_start_worker("faults-own");
	json_t *fin = itest_wait_cook("directory", id, 60);
	ck_assert_msg(strcmp(json_string_value(json_object_get(fin, "status")), "done") == 0, "%s",
	    json_dumps(fin, 0));
	json_decref(fin);
}
END_TEST

struct poll_arg {
	const char *path;
	long status;
	char state[32];
	uint64_t ms;
};

/* One long-poll, timed. */
static void *
poll_thread(void *arg)
{
	struct poll_arg *a = arg;
	struct itest_resp r;
	uint64_t t0 = now_ms();

	itest_http(&r, "GET", a->path, NULL, NULL, 0, NULL);
	a->ms = now_ms() - t0;
	a->status = r.status;
	snprintf(a->state, sizeof a->state, "%s",
	    json_string_value(json_object_get(r.json, "status")) ?: "");
	itest_resp_free(&r);
	return NULL;
}

/* ?wait=N holds the status request until the job changes (woken by Postgres, not by a
 * loop) or N seconds pass; a finished job answers at once; N is bounded. The upper bounds
 * scale with the servers' slowness (itest_time_factor), up to 15 s: a wake-up must still
 * come well before the 20 s wait would end on its own. */
START_TEST(test_long_poll)
{
	char st[256];
	const uint64_t f = (uint64_t)itest_time_factor();
	const uint64_t woken_max = 5000 * f < 15000 ? 5000 * f : 15000;
	for (int i = 0; i < IT.nworkers; i++)
		itest_stop_worker(i, SIGTERM);
	free(itest_make_tree("poll", 100));
	char *id = itest_upload_tree("poll");
	json_int_t job = itest_cook(id);
	char *path = xasprintf("/vault/directory/%s/status?wait=20", id);

	/* A change wakes the waiting client at once. */
	struct poll_arg a = {.path = path};
	pthread_t th;
	pthread_create(&th, NULL, poll_thread, &a);
	usleep(800000);
	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"running\",\"worker\":\"w-poll\"}", st, sizeof st), 200);
	pthread_join(th, NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.state, "pending");
	ck_assert_msg(
	    a.ms >= 700 && a.ms < woken_max, "answered after %llu ms", (unsigned long long)a.ms);

	/* A progress message is a change too. */
	memset(&a, 0, sizeof a);
	a.path = path;
	pthread_create(&th, NULL, poll_thread, &a);
	usleep(500000);
	ck_assert_int_eq(patch_as(job, "{\"progress_message\":\"half way\",\"worker\":\"w-poll\"}",
			     st, sizeof st),
	    200);
	pthread_join(th, NULL);
	ck_assert_msg(
	    a.ms >= 400 && a.ms < woken_max, "answered after %llu ms", (unsigned long long)a.ms);

	/* Nothing happens: the answer comes when the time is up. */
	char *short_wait = xasprintf("/vault/directory/%s/status?wait=2", id);
	memset(&a, 0, sizeof a);
	a.path = short_wait;
	poll_thread(&a);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.state, "pending");
	ck_assert_msg(a.ms >= 1900 && a.ms < 2000 + 2000 * f, "answered after %llu ms",
	    (unsigned long long)a.ms);

	/* Finished: no waiting at all. */
	ck_assert_int_eq(
	    patch_as(job, "{\"state\":\"failed\",\"worker\":\"w-poll\",\"error\":\"test\"}", st,
		sizeof st),
	    200);
	memset(&a, 0, sizeof a);
	a.path = path;
	poll_thread(&a);
	ck_assert_str_eq(a.state, "failed");
	ck_assert_msg(a.ms < 1000 * f, "answered after %llu ms", (unsigned long long)a.ms);

	static const char *const bad[] = {"61", "-1", "abc", "1.5"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct itest_resp r;
		char *p = xasprintf("/vault/directory/%s/status?wait=%s", id, bad[i]);
		itest_http(&r, "GET", p, NULL, NULL, 0, NULL);
		ck_assert_msg(r.status == 400, "wait=%s: %ld", bad[i], r.status);
		ck_assert_ptr_nonnull(strstr(r.body.data, "wait must be"));
		itest_resp_free(&r);
		free(p);
	}
}
END_TEST

/* A done bundle whose blob was lost (a disk, a hand) is cooked again on the next POST. */
START_TEST(test_lost_bundle_recooked)
{
	if (IT.nworkers == 0 || IT.workers[IT.nworkers - 1] <= 0)
		itest_start_worker("faults-lost");
	free(itest_make_tree("lost", 100));
	char *id = itest_upload_tree("lost");
	json_int_t job = itest_cook(id);
	json_t *st = itest_wait_cook("directory", id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	const char *sha =
	    json_string_value(json_object_get(json_object_get(st, "bundle"), "sha256"));
	ck_assert_ptr_nonnull(sha);
	ck_assert_int_eq(itest_sh("rm data/store/objects/%.2s/%.2s/%s", sha, sha + 2, sha), 0);
	json_decref(st);
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s", id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 500);
	itest_resp_free(&r);
	json_int_t again = itest_cook(id);
	ck_assert_int_ne(again, job);
	st = itest_wait_cook("directory", id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	itest_resp_free(&r);
}
END_TEST

/* A missing blob at a 4 KB path (once a failure whose reason had to be cut) is left out:
 * the cook is done with left_out 1, and the bundle's manifest names the whole path. */
START_TEST(test_long_failure_reason)
{
	if (IT.nworkers == 0 || IT.workers[IT.nworkers - 1] <= 0)
		itest_start_worker("faults-long");
	ck_assert_int_eq(
	    itest_sh("set -e; d=trees/long; for i in $(seq 16); do"
		     " d=$d/$(head -c 250 /dev/zero | tr '\\0' d); done; mkdir -p $d;"
		     " printf 'only-here-%%s' $$ > $d/f.txt; echo ok > trees/long/top.txt;"
		     " sha256sum $d/f.txt | cut -c1-64 > long.sha"),
	    0);
	char *id = itest_upload_tree("long");
	char *sha = itest_sh_out("cat long.sha");
	ck_assert_int_eq(itest_sh("rm data/store/objects/%.2s/%.2s/%s", sha, sha + 2, sha), 0);
	itest_cook(id);
	json_t *st = itest_wait_cook("directory", id, 60);
	const char *status = json_string_value(json_object_get(st, "status"));
	ck_assert_msg(status != NULL && strcmp(status, "done") == 0, "%s", json_dumps(st, 0));
	ck_assert_int_eq(json_integer_value(json_object_get(st, "left_out")), 1);
	json_decref(st);

	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s", id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	FILE *f;
	char *file = xasprintf("%s/long.tar.gz", IT.dir);
	f = fopen(file, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(r.body.data, 1, r.body.len, f), r.body.len);
	ck_assert_int_eq(fclose(f), 0);
	itest_resp_free(&r);
	char *m = itest_sh_out("tar xzf long.tar.gz -O swh:1:dir:%s.missing.json", id);
	json_t *man = json_loads(m, 0, NULL);
	ck_assert_msg(man != NULL, "manifest: %.200s", m);
	ck_assert_int_eq(json_integer_value(json_object_get(man, "count")), 1);
	json_t *e = json_array_get(json_object_get(man, "left_out"), 0);
	const char *p = json_string_value(json_object_get(e, "path"));
	ck_assert_ptr_nonnull(p);
	/* 16 folders of 250 bytes, then the file: never cut */
	ck_assert_uint_eq(strlen(p), 16 * 251 + strlen("f.txt"));
	ck_assert_str_eq(p + strlen(p) - 6, "/f.txt");
	ck_assert_str_eq(json_string_value(json_object_get(e, "reason")), "missing from the store");
	json_decref(man);
	free(m);
	free(file);
	free(path);
	free(sha);
	free(id);
}
END_TEST

static void
setup(void)
{
	itest_init("faults", 2);
	itest_env("BITSVAULT_MAX_UPLOAD_SIZE=400M");
	itest_start_api();
}

int
main(void)
{
	Suite *s = suite_create("itest_faults");
	TCase *tc = tcase_create("faults");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_add_test(tc, test_worker_killed_mid_cook);
	tcase_add_test(tc, test_redis_flushed);
	tcase_add_test(tc, test_ownership);
	tcase_add_test(tc, test_long_poll);
	tcase_add_test(tc, test_lost_bundle_recooked);
	tcase_add_test(tc, test_long_failure_reason);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
