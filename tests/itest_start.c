/* itest_start.c: starting up: two processes migrating one fresh database at once apply
 * each migration once; a bad setting stops the process with a message naming the key. */
#include <check.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "tests/itest.h"

START_TEST(test_concurrent_migrations)
{
	char *bin = xasprintf("%s/api/bitsvault-api", getenv("BV_TOP_BUILDDIR"));
	char *mig = xasprintf("%s/db/migrations", getenv("BV_TOP_SRCDIR"));
	int rc =
	    itest_sh("export BITSVAULT_DATABASE_URL=\"%s\" BITSVAULT_MIGRATIONS_DIR='%s'"
		     " BITSVAULT_DATA_DIR=data; for i in 1 2 3 4; do"
		     " '%s' --migrate-only > logs/migrate$i.log 2>&1 & pids=\"$pids $!\"; done;"
		     " fail=0; for p in $pids; do wait $p || fail=1; done; exit $fail",
		IT.db_url, mig, bin);
	ck_assert_msg(rc == 0, "a --migrate-only process failed");
	char *files = itest_sh_out("ls '%s' | grep -c '^[0-9][0-9][0-9][0-9]_.*\\.sql$'", mig);
	char *rows =
	    itest_sql("SELECT count(*) || '/' || count(DISTINCT version) FROM schema_migrations");
	char *want = xasprintf("%s/%s", files, files);
	ck_assert_str_eq(rows, want);
	char *applied = itest_sh_out("cat logs/migrate*.log | grep -c 'applied migration'");
	ck_assert_str_eq(applied, files);
	/* Running again applies nothing. */
	ck_assert_int_eq(
	    itest_sh("BITSVAULT_DATABASE_URL=\"%s\" BITSVAULT_MIGRATIONS_DIR='%s'"
		     " BITSVAULT_DATA_DIR=data '%s' --migrate-only > logs/again.log 2>&1",
		IT.db_url, mig, bin),
	    0);
	ck_assert_str_eq(itest_sh_out("grep -c 'applied migration' logs/again.log"), "0");
}
END_TEST

/* Each bad setting: exit status 1 and the key named on stderr. */
START_TEST(test_bad_config)
{
	static const struct {
		const char *env, *key;
	} cases[] = {
	    {"BITSVAULT_JOB_LEASE=0", "job_lease"},
	    {"BITSVAULT_MAX_UPLOAD_SIZE=lots", "max_upload_size"},
	    {"BITSVAULT_REDIS_URL=redis://h:99999", "redis_url"},
	    {"BITSVAULT_LISTEN=nowhere", "listen"},
	};
	char *bin[] = {xasprintf("%s/api/bitsvault-api", getenv("BV_TOP_BUILDDIR")),
	    xasprintf("%s/worker/bitsvault-worker", getenv("BV_TOP_BUILDDIR"))};
	for (size_t b = 0; b < 2; b++)
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			int rc = itest_sh(
			    "env %s BITSVAULT_DATABASE_URL=\"%s\" '%s' > logs/bad.log 2>&1",
			    cases[i].env, IT.db_url, bin[b]);
			ck_assert_msg(rc == 1, "%s with %s: exit %d", bin[b], cases[i].env, rc);
			char *out = itest_sh_out("cat logs/bad.log");
			ck_assert_msg(
			    strstr(out, cases[i].key) != NULL, "%s: %s", cases[i].env, out);
			free(out);
		}
}
END_TEST

/* /status/short is 503 with a reason when no worker is alive, or when a service is down. */
START_TEST(test_status_short_unhealthy)
{
	struct itest_resp r;
	itest_start_api(); /* and no worker */
	itest_http(&r, "GET", "/status/short", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 503);
	ck_assert(json_is_false(json_object_get(r.json, "ok")));
	ck_assert_str_eq(
	    json_string_value(json_object_get(r.json, "reason")), "no workers are available");
	itest_resp_free(&r);
	itest_http(&r, "GET", "/status", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert(json_is_false(json_object_get(json_object_get(r.json, "can_process"), "cook")));
	itest_resp_free(&r);

	/* A second API whose Redis is a closed port: 503 naming Redis, no internals. */
	int port = itest_free_port(), dead = itest_free_port();
	char *bin = xasprintf("%s/api/bitsvault-api", getenv("BV_TOP_BUILDDIR"));
	char *mig = xasprintf("%s/db/migrations", getenv("BV_TOP_SRCDIR"));
	ck_assert_int_eq(
	    itest_sh("BITSVAULT_LISTEN=127.0.0.1:%d BITSVAULT_DATA_DIR=data2"
		     " BITSVAULT_DATABASE_URL=\"%s\" BITSVAULT_MIGRATIONS_DIR='%s'"
		     " BITSVAULT_REDIS_URL=redis://127.0.0.1:%d/0 '%s' > logs/api2.log 2>&1 &"
		     " echo $! > api2.pid",
		port, IT.db_url, mig, dead, bin),
	    0);
	char *out = NULL;
	for (int i = 0; i < 100; i++) {
		free(out);
		out = itest_sh_out(
		    "curl -s -w ' %%{http_code}' http://127.0.0.1:%d/status/short", port);
		if (strstr(out, " 503") != NULL)
			break;
		usleep(100000);
	}
	itest_sh("kill $(cat api2.pid)");
	ck_assert_msg(strstr(out, "redis connection failed") != NULL && strstr(out, " 503") != NULL,
	    "%s", out);
	ck_assert_msg(strstr(out, "refused") == NULL, "internals leaked: %s", out);
}
END_TEST

/* SIGTERM: the API stops taking connections but finishes the upload in flight. */
START_TEST(test_sigterm_finishes_inflight)
{
	if (IT.api <= 0)
		itest_start_api();
	free(itest_make_tree("slow", 6 * 1024 * 1024));
	ck_assert_int_eq(itest_sh("tar cf slow.tar -C trees/slow ."), 0);
	/* About 3 s of upload at 2 MB/s; the signal lands in the middle of it. */
	ck_assert_int_eq(
	    itest_sh("(curl -s -o slow.out -w '%%{http_code}' --limit-rate 2M"
		     " -H 'Authorization: Bearer %s' -H 'Expect:' --data-binary @slow.tar"
		     " %s/directories > slow.code; echo $? > slow.rc) &",
		IT_USER, IT.url),
	    0);
	usleep(1000000);
	ck_assert_int_eq(kill(IT.api, SIGTERM), 0);
	usleep(300000);
	/* New connections are refused now. */
	ck_assert_int_ne(itest_sh("curl -s -m 2 -o /dev/null %s/status", IT.url), 0);
	int st = 0;
	ck_assert_int_eq(waitpid(IT.api, &st, 0), IT.api);
	IT.api = 0;
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "api exit status %d", st);
	for (int i = 0; i < 100 && itest_sh("test -s slow.rc") != 0; i++)
		usleep(100000);
	char *code = itest_sh_out("cat slow.code");
	ck_assert_str_eq(code, "201");
}
END_TEST

int
main(void)
{
	itest_init("start", 3);
	Suite *s = suite_create("itest_start");
	TCase *tc = tcase_create("start");
	tcase_add_test(tc, test_concurrent_migrations);
	tcase_add_test(tc, test_bad_config);
	tcase_add_test(tc, test_status_short_unhealthy);
	tcase_add_test(tc, test_sigterm_finishes_inflight);
	suite_add_tcase(s, tc);
	int rc = itest_run(s);
	itest_teardown();
	return rc;
}
