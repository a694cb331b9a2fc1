/* itest_processes.c: api_processes > 1, end to end: a supervisor and its serving
 * processes on one listening socket. Every process serves (uploads, cooks, statuses and
 * downloads through all of them), a killed process is replaced while the others go on,
 * SIGTERM stops them all cleanly (exit 0), and a SIGKILLed supervisor takes its
 * processes with it (none is left holding the port). */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/itest.h"

#define PROCS 3

/* The supervisor's children (pids, up to max); their number. */
static int
children(pid_t parent, pid_t *out, int max)
{
	char *list = itest_sh_out("cat /proc/%d/task/*/children 2>/dev/null", (int)parent);
	int n = 0;

	for (char *p = strtok(list, " \n"); p != NULL && n < max; p = strtok(NULL, " \n"))
		out[n++] = (pid_t)atoi(p);
	free(list);
	return n;
}

/* Waits until the supervisor has want children, for at most timeout_ms. */
static int
wait_children(pid_t parent, int want, int timeout_ms, pid_t *out)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int n;

	while ((n = children(parent, out, 16)) != want && now_ms() < end)
		usleep(100000);
	return n;
}

/* n status polls of path, each on a new connection (so they spread over the processes):
 * how many were not 200. */
static int
polls(const char *path, int n)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		struct itest_resp r;

		itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
		if (r.status != 200)
			bad++;
		itest_resp_free(&r);
	}
	return bad;
}

/* Processes that logged a request line for path's prefix (distinct pids in the API log). */
static int
serving_pids(const char *what)
{
	char *n = itest_sh_out("grep -F '%s' logs/api.log | grep -o 'bitsvault-api\\[[0-9]*\\]'"
			       " | sort -u | wc -l",
	    what);
	int v = atoi(n);

	free(n);
	return v;
}

START_TEST(test_all_serve)
{
	pid_t kids[16];
	char *tree = itest_make_tree("multi", 300000), *id, *path;
	json_t *st;
	struct itest_resp r;

	free(tree);
	ck_assert_int_eq(wait_children(IT.api, PROCS, 10000, kids), PROCS);
	id = itest_upload_tree("multi");
	itest_cook(id);
	st = itest_wait_cook("directory", id, 120);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	path = xasprintf("/vault/directory/%s/status", id);
	ck_assert_int_eq(polls(path, 60), 0);
	ck_assert_msg(serving_pids(path) >= 2, "60 polls on new connections reached %d process(es)",
	    serving_pids(path));
	free(path);
	/* The bundle downloads whole from any of them. */
	path = xasprintf("/vault/directory/%s", id);
	for (int i = 0; i < 6; i++) {
		itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
		ck_assert_int_eq(r.status, 200);
		itest_save(&r, "bundle.tar.gz");
		ck_assert_int_eq(itest_sh("tar tzf bundle.tar.gz >/dev/null"), 0);
		itest_resp_free(&r);
	}
	free(path);
	free(id);
}
END_TEST

START_TEST(test_killed_process_replaced)
{
	pid_t kids[16], after[16];
	int n = wait_children(IT.api, PROCS, 10000, kids);

	ck_assert_int_eq(n, PROCS);
	sleep(2); /* a process that dies within 2 s of its start stops the API, on purpose */
	ck_assert_int_eq(kill(kids[0], SIGKILL), 0);
	/* The others serve meanwhile. */
	ck_assert_int_eq(polls("/status/short", 20), 0);
	uint64_t end = now_ms() + 10000;
	bool replaced = false;
	while (!replaced && now_ms() < end) {
		n = children(IT.api, after, 16);
		replaced = n == PROCS;
		for (int i = 0; i < n; i++)
			if (after[i] == kids[0])
				replaced = false;
		if (!replaced)
			usleep(100000);
	}
	ck_assert_msg(replaced, "the killed process was not replaced in 10 s (%d now)", n);
	ck_assert_int_eq(polls("/status/short", 20), 0);
	ck_assert_int_eq(
	    itest_sh("grep -q 'was killed by signal 9' logs/api.log && grep -q 'in its place'"
		     " logs/api.log"),
	    0);
}
END_TEST

START_TEST(test_sigterm_stops_all)
{
	pid_t kids[16];
	int n = wait_children(IT.api, PROCS, 10000, kids), wst = 0;
	uint64_t end;

	ck_assert_int_eq(n, PROCS);
	ck_assert_int_eq(kill(IT.api, SIGTERM), 0);
	end = now_ms() + 20000;
	while (waitpid(IT.api, &wst, WNOHANG) == 0 && now_ms() < end)
		usleep(50000);
	ck_assert_msg(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "the supervisor ended with %d", wst);
	IT.api = 0;
	for (int i = 0; i < n; i++)
		ck_assert_msg(kill(kids[i], 0) != 0, "process %d outlived its supervisor", kids[i]);
	ck_assert_int_eq(itest_sh("grep -q 'stopping %d API processes' logs/api.log", PROCS), 0);
}
END_TEST

START_TEST(test_sigkill_takes_all)
{
	pid_t kids[16];
	int n, wst;
	uint64_t end;
	bool gone = false;

	itest_start_api();
	n = wait_children(IT.api, PROCS, 10000, kids);
	ck_assert_int_eq(n, PROCS);
	ck_assert_int_eq(kill(IT.api, SIGKILL), 0);
	waitpid(IT.api, &wst, 0);
	IT.api = 0;
	end = now_ms() + 5000;
	while (!gone && now_ms() < end) {
		gone = true;
		for (int i = 0; i < n; i++)
			if (kill(kids[i], 0) == 0 &&
			    itest_sh("grep -q '^State:.*Z' /proc/%d/status 2>/dev/null", kids[i]) !=
				0)
				gone = false;
		if (!gone)
			usleep(50000);
	}
	ck_assert_msg(gone, "processes outlived their SIGKILLed supervisor");
	/* The port is free again: a new API starts on it. */
	itest_start_api();
	ck_assert_int_eq(polls("/status/short", 5), 0);
}
END_TEST

static void
setup(void)
{
	itest_init("processes", 23);
	itest_env("BITSVAULT_API_PROCESSES=3");
	itest_env("BITSVAULT_API_THREADS=2");
	itest_start_api();
	itest_start_worker("proc-w1");
}

int
main(void)
{
	Suite *s = suite_create("itest_processes");
	TCase *tc = tcase_create("processes");

	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_all_serve);
	tcase_add_test(tc, test_killed_process_replaced);
	tcase_add_test(tc, test_sigterm_stops_all);
	tcase_add_test(tc, test_sigkill_takes_all);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
