/* itest_expire.c: bundle expiry, sticky bundles, the store quota and blob garbage
 * collection. Nothing races a clock: bundle_ttl is an hour, expiry runs every second, and
 * a case makes a bundle idle (or a blob old) by moving its times back in SQL (or with
 * touch -d), so a loaded machine only makes the waits longer. Workers are restarted with
 * the settings each case needs; garbage collection runs as `bitsvault-worker --gc
 * [--dry-run]` with its own gc_grace. */
#include <check.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/itest.h"

static int cur_worker = -1;
static int worker_seq;

/* Sets KEY=VALUE for processes spawned later, replacing an earlier value of KEY. */
static void
set_env(const char *kv)
{
	size_t klen = strcspn(kv, "=") + 1;

	for (int i = 0; i < IT.nextra; i++)
		if (strncmp(IT.extra_env[i], kv, klen) == 0) {
			snprintf(IT.extra_env[i], sizeof IT.extra_env[i], "%s", kv);
			return;
		}
	itest_env(kv);
}

/* Stops the running worker (if any) and starts a new one with the current settings. */
static void
restart_worker(void)
{
	char name[32];

	if (cur_worker >= 0)
		itest_stop_worker(cur_worker, SIGTERM);
	snprintf(name, sizeof name, "w%d", ++worker_seq);
	cur_worker = itest_start_worker(name);
}

/* The blob's path in the test's store. */
static char *
blob_path(const char *sha)
{
	return xasprintf("%s/store/objects/%.2s/%.2s/%s", IT.data_dir, sha, sha + 2, sha);
}

/* Whether the blob's file is there. */
static bool
blob_exists(const char *sha)
{
	char *p = blob_path(sha);
	struct stat sb;
	bool ok = stat(p, &sb) == 0;

	free(p);
	return ok;
}

/* The HTTP status of GET /vault/directory/<id>/status; the body's error in *msg when
 * msg is non-NULL (caller frees). */
static long
status_of(const char *id, char **msg)
{
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s/status", id);
	long st;

	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	st = r.status;
	if (msg != NULL) {
		const char *e = json_string_value(json_object_get(r.json, "error"));
		*msg = xstrdup(e != NULL ? e : "");
	}
	itest_resp_free(&r);
	free(path);
	return st;
}

/* Downloads the bundle: the status, and the bytes in *body when non-NULL. */
static long
download(const char *id, struct buf *body)
{
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s", id);
	long st;

	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	st = r.status;
	if (body != NULL) {
		buf_init(body);
		buf_add(body, r.body.data, r.body.len);
	}
	itest_resp_free(&r);
	free(path);
	return st;
}

/* Polls until the bundle's status is 404 (expired); the seconds it took, or -1. */
static double
wait_gone(const char *id, int timeout_s)
{
	uint64_t t0 = now_ms();

	while (now_ms() - t0 < (uint64_t)timeout_s * 1000) {
		if (status_of(id, NULL) == 404)
			return (double)(now_ms() - t0) / 1000;
		usleep(100000);
	}
	return -1;
}

/* A bundle cooked: tree <name> made, uploaded, cooked and done. Fills the directory id,
 * the job id and the bundle's sha256 and size. */
struct cooked {
	char *id;
	json_int_t job;
	char sha[65];
	json_int_t size;
};

static void
cook_tree(struct cooked *c, const char *name, size_t big_bytes)
{
	free(itest_make_tree(name, big_bytes));
	c->id = itest_upload_tree(name);
	c->job = itest_cook(c->id);
	json_t *st = itest_wait_cook("directory", c->id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	json_t *job = itest_job(c->job);
	json_t *res = json_object_get(job, "result");
	snprintf(
	    c->sha, sizeof c->sha, "%s", json_string_value(json_object_get(res, "bundle_sha256")));
	c->size = json_integer_value(json_object_get(res, "bundle_size"));
	ck_assert_int_eq(strlen(c->sha), 64);
	json_decref(job);
}

/* PUT or DELETE .../sticky: the status, the answer in *out (caller decrefs) when asked. */
static long
sticky(const char *method, const char *kind, const char *id, const char *token, json_t **out)
{
	struct itest_resp r;
	char *path = xasprintf("/vault/%s/%s/sticky", kind, id);
	long st;

	itest_http(&r, method, path, token, NULL, 0, NULL);
	st = r.status;
	if (out != NULL)
		*out = json_incref(r.json);
	itest_resp_free(&r);
	free(path);
	return st;
}

/* GC_LOCK_KEY of worker/worker.h ("bvgccoll"). */
#define GC_LOCK_KEY "7094971939536465004"

/* Runs `bitsvault-worker --gc [--dry-run]` with gc_grace seconds, more environment
 * (env: "" or "K=V ...") and a database (NULL: the test's), waits; its exit status, and
 * its stdout parsed as JSON in *rep (NULL when it printed none). */
static int
gc_cmd(int grace, bool dry_run, const char *env, const char *db_url, json_t **rep)
{
	setenv("BV_GC_DBURL", db_url != NULL ? db_url : IT.db_url, 1);
	int rc = itest_sh(
	    "%s BITSVAULT_DATA_DIR='%s' BITSVAULT_DATABASE_URL=\"$BV_GC_DBURL\" BITSVAULT_REDIS_URL='%s'"
	    " BITSVAULT_LISTEN='%s' BITSVAULT_GC_GRACE=%d BITSVAULT_LOG_LEVEL=info"
	    " '%s/worker/bitsvault-worker' --gc%s >gc.out 2>>logs/gc.log",
	    env, IT.data_dir, IT.redis_url, IT.listen, grace, getenv("BV_TOP_BUILDDIR"),
	    dry_run ? " --dry-run" : "");
	char *out = itest_sh_out("cat gc.out");

	*rep = json_loads(out, 0, NULL);
	free(out);
	return rc;
}

/* A collection that must succeed: its JSON report (complete, dry run as asked). */
static json_t *
run_gc(int grace, bool dry_run)
{
	json_t *j = NULL;
	int rc = gc_cmd(grace, dry_run, "", NULL, &j);

	ck_assert_msg(rc == 0, "--gc exited %d", rc);
	ck_assert_msg(j != NULL, "--gc printed no report");
	ck_assert(json_is_boolean(json_object_get(j, "dry_run")));
	ck_assert(json_boolean_value(json_object_get(j, "dry_run")) == dry_run);
	ck_assert(json_is_true(json_object_get(j, "complete")));
	return j;
}

/* Runs one SQL statement whose rows do not matter (itest_sql wants a row back). */
static void sql_do(const char *fmt, ...) BV_PRINTF(1, 2);
static void
sql_do(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	char *stmt = xvasprintf(fmt, ap);
	va_end(ap);
	char *q = xasprintf("WITH s AS (%s RETURNING 1) SELECT count(*) FROM s", stmt);
	free(itest_sql(q));
	free(q);
	free(stmt);
}

/* Makes a bundle idle for two hours (never downloaded, or downloaded two hours ago). */
static void
make_idle(json_int_t job)
{
	sql_do("UPDATE bundles SET created_at = now() - interval '2 hours',"
	       " last_download_at = CASE WHEN last_download_at IS NULL THEN NULL"
	       " ELSE now() - interval '2 hours' END WHERE job_id = %lld",
	    (long long)job);
}

/* Makes a blob written two hours ago (past any gc_grace the tests use). */
static void
make_old(const char *sha)
{
	char *p = blob_path(sha);

	ck_assert_int_eq(itest_sh("touch -d '2 hours ago' '%s'", p), 0);
	free(p);
}

/* Blob files under store/objects. */
static int
count_blobs(void)
{
	char *n = itest_sh_out("find '%s/store/objects' -type f | wc -l", IT.data_dir);
	int v = atoi(n);

	free(n);
	return v;
}

/* An integer member of a JSON report. */
static json_int_t
num(const json_t *j, const char *key)
{
	const json_t *v = json_object_get(j, key);

	ck_assert_msg(json_is_integer(v), "no integer '%s'", key);
	return json_integer_value(v);
}

/* Rows of a SQL query joined by spaces (first column). */
static char *
sql_list(const char *sql)
{
	char *q = xasprintf("SELECT coalesce(string_agg(x, ' '), '') FROM (%s) t(x)", sql);
	char *v = itest_sql(q);

	free(q);
	return v;
}

/* Every blob named by a contents row or a bundles row is in the store. */
static void
assert_referenced_present(void)
{
	char *all = sql_list("SELECT encode(sha256, 'hex') FROM contents"
			     " UNION SELECT encode(sha256, 'hex') FROM bundles");
	int n = 0;

	for (char *p = strtok(all, " "); p != NULL; p = strtok(NULL, " "), n++)
		ck_assert_msg(blob_exists(p), "referenced blob %s is gone", p);
	ck_assert_int_gt(n, 0);
	free(all);
}

/* Waits until no non-sticky bundle is left (the TTL worker expired them all). */
static void
wait_no_bundles(int timeout_s)
{
	uint64_t t0 = now_ms();

	for (;;) {
		char *n = itest_sql("SELECT count(*) FROM bundles WHERE NOT sticky");
		bool zero = strcmp(n, "0") == 0;
		free(n);
		if (zero)
			return;
		ck_assert_msg(now_ms() - t0 < (uint64_t)timeout_s * 1000, "bundles do not expire");
		usleep(100000);
	}
}

/* Downloaded once, then left alone past bundle_ttl: the bundle expires (404 as never
 * requested, download 404, job expired), its blob (written long ago) is deleted with it;
 * a new POST cooks it again under a new job, byte for byte the same. */
START_TEST(test_expire_and_cook_again)
{
	struct cooked c;
	struct buf first, again;
	char *msg = NULL;

	cook_tree(&c, "exp1", 20000);
	ck_assert_int_eq(download(c.id, &first), 200);
	ck_assert_uint_eq(first.len, (size_t)c.size);
	ck_assert(blob_exists(c.sha));
	make_old(c.sha); /* past the workers' gc_grace (at least 300 s) */
	make_idle(c.job);
	ck_assert_msg(wait_gone(c.id, 30) >= 0, "the bundle did not expire");
	ck_assert_int_eq(status_of(c.id, &msg), 404);
	ck_assert_msg(strstr(msg, "was never requested.") != NULL, "%s", msg);
	free(msg);
	ck_assert_int_eq(download(c.id, NULL), 404);
	json_t *job = itest_job(c.job);
	ck_assert_str_eq(json_string_value(json_object_get(job, "state")), "expired");
	json_decref(job);
	char *q = xasprintf("SELECT count(*) FROM bundles WHERE job_id = %lld", (long long)c.job);
	char *rows = itest_sql(q);
	ck_assert_str_eq(rows, "0");
	free(rows);
	free(q);
	/* Nothing else names it and it is old: gone with the expiry. */
	for (int i = 0; i < 100 && blob_exists(c.sha); i++)
		usleep(100000);
	ck_assert(!blob_exists(c.sha));
	ck_assert_int_eq(itest_sh("grep -q 'expired bundle job=%lld cook:directory:%s:tar.gz (ttl:'"
				  " logs/w*.log",
			     (long long)c.job, c.id),
	    0);
	ck_assert_int_eq(itest_sh("grep -q 'deleted blob %s (%lld bytes): bundle expired'"
				  " logs/w*.log",
			     c.sha, (long long)c.size),
	    0);
	/* The first expiry bound the store to the database. */
	char *sid = itest_sh_out("cat '%s/store/ID'", IT.data_dir);
	char *did = itest_sql("SELECT id FROM store_identity");
	ck_assert_int_eq(strlen(sid), 32);
	ck_assert_str_eq(sid, did);
	free(sid);
	free(did);

	/* Cooked again: a new job, the same bytes. */
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s", c.id);
	itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 201);
	json_int_t job2 = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	free(path);
	ck_assert_int_gt(job2, c.job);
	json_t *st = itest_wait_cook("directory", c.id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	ck_assert_int_eq(download(c.id, &again), 200);
	ck_assert_uint_eq(again.len, first.len);
	ck_assert(memcmp(again.data, first.data, first.len) == 0);
	ck_assert(blob_exists(c.sha));
	buf_free(&first);
	buf_free(&again);
	free(c.id);
}
END_TEST

/* A recent download keeps a bundle cooked long ago; a POST that finds the bundle done
 * counts as a use too (the client was told "done" and will fetch it); once the last use
 * is old, it expires. */
START_TEST(test_download_postpones)
{
	struct cooked c;
	struct itest_resp r;

	cook_tree(&c, "exp2", 1000);
	ck_assert_int_eq(download(c.id, NULL), 200);
	sql_do("UPDATE bundles SET created_at = now() - interval '2 hours' WHERE job_id = %lld",
	    (long long)c.job);
	sleep(3); /* three expiry runs */
	ck_assert_int_eq(status_of(c.id, NULL), 200);

	/* Never downloaded, and cooked recently enough that no expiry run can take it
	 * before the POST below (bundle_ttl is an hour here). */
	sql_do("UPDATE bundles SET last_download_at = NULL, created_at = now() - interval '30"
	       " minutes' WHERE job_id = %lld",
	    (long long)c.job);
	char *path = xasprintf("/vault/directory/%s", c.id);
	itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "done");
	itest_resp_free(&r);
	free(path);
	char *q = xasprintf("SELECT last_download_at > now() - interval '1 minute' FROM bundles"
			    " WHERE job_id = %lld",
	    (long long)c.job);
	char *used = itest_sql(q);
	ck_assert_str_eq(used, "t");
	free(used);
	free(q);
	sleep(2);
	ck_assert_int_eq(status_of(c.id, NULL), 200);

	make_idle(c.job);
	ck_assert_msg(wait_gone(c.id, 30) >= 0, "the bundle did not expire after the downloads");
	free(c.id);
}
END_TEST

/* A sticky bundle outlives bundle_ttl; unsticking lets it expire. Only admins may set
 * the flag, and only on a cooked bundle. */
START_TEST(test_sticky)
{
	struct cooked c;
	json_t *o = NULL;
	char swhid[64];

	cook_tree(&c, "exp3", 1000);
	snprintf(swhid, sizeof swhid, "swh:1:dir:%s", c.id);
	ck_assert_int_eq(sticky("PUT", "directory", c.id, IT_USER, NULL), 403);
	ck_assert_int_eq(sticky("PUT", "directory", c.id, NULL, NULL), 401);
	ck_assert_int_eq(sticky("PUT", "directory", c.id, IT_ADMIN, &o), 200);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "id")), c.job);
	ck_assert_str_eq(json_string_value(json_object_get(o, "swhid")), swhid);
	ck_assert_str_eq(json_string_value(json_object_get(o, "format")), "tar.gz");
	ck_assert(json_is_true(json_object_get(o, "sticky")));
	json_decref(o);
	/* By SWHID too, and twice is fine. */
	ck_assert_int_eq(sticky("PUT", "directory", swhid, IT_ADMIN, NULL), 200);

	/* Unknown bundles, other formats, bad kinds. */
	ck_assert_int_eq(
	    sticky("PUT", "directory", "0123456789abcdef0123456789abcdef01234567", IT_ADMIN, &o),
	    404);
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(o, "error")),
	    "Cooked archive for swh:1:dir:0123456789abcdef0123456789abcdef01234567 not found."));
	json_decref(o);
	struct itest_resp r;
	char *zip = xasprintf("/vault/directory/%s/sticky?format=zip", c.id);
	itest_http(&r, "PUT", zip, IT_ADMIN, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404); /* the zip bundle was never cooked */
	itest_resp_free(&r);
	free(zip);
	ck_assert_int_eq(sticky("PUT", "nosuchkind", c.id, IT_ADMIN, NULL), 404);
	ck_assert_int_eq(sticky("DELETE", "nosuchkind", c.id, IT_ADMIN, NULL), 404);
	ck_assert_int_eq(sticky("PUT", "directory", "not-an-id", IT_ADMIN, NULL), 400);

	/* Idle well past the TTL, expiry running every second: still there. */
	make_idle(c.job);
	sleep(3);
	ck_assert_int_eq(status_of(c.id, NULL), 200);
	ck_assert_int_eq(download(c.id, NULL), 200);

	ck_assert_int_eq(sticky("DELETE", "directory", c.id, IT_USER, NULL), 403);
	ck_assert_int_eq(sticky("DELETE", "directory", c.id, IT_ADMIN, &o), 200);
	ck_assert(json_is_false(json_object_get(o, "sticky")));
	json_decref(o);
	make_idle(c.job);
	ck_assert_msg(wait_gone(c.id, 30) >= 0, "the unstuck bundle did not expire");
	/* An expired bundle has nothing to make sticky. */
	ck_assert_int_eq(sticky("PUT", "directory", c.id, IT_ADMIN, NULL), 404);
	free(c.id);
}
END_TEST

/* store_quota between two and three bundles. Eviction takes the least recently used
 * bundle, but never one cooked within ten minutes that nobody downloaded yet: with A and
 * B cooked and A downloaded since, cooking C evicts A (B and C are fresh). With B made
 * twenty minutes old and C downloaded, cooking D evicts B. With the quota below one
 * bundle, C goes and the fresh D stays, with a warning. */
START_TEST(test_quota)
{
	struct cooked a, b, c, d;
	char env[64];

	cook_tree(&a, "quota-a", 100000);
	/* Incompressible bytes: the bundles are about the same size. */
	long long quota = (long long)a.size * 5 / 2;
	snprintf(env, sizeof env, "BITSVAULT_STORE_QUOTA=%lld", quota);
	set_env(env);
	restart_worker();

	cook_tree(&b, "quota-b", 100000);
	ck_assert_int_lt(a.size + b.size, quota);
	sleep(2); /* expiry runs every second: nothing to evict yet */
	ck_assert_int_eq(status_of(a.id, NULL), 200);
	ck_assert_int_eq(status_of(b.id, NULL), 200);
	ck_assert_int_eq(download(a.id, NULL), 200);

	cook_tree(&c, "quota-c", 100000);
	ck_assert_int_gt(a.size + b.size + c.size, quota);
	ck_assert_int_lt(b.size + c.size, quota);
	ck_assert_msg(wait_gone(a.id, 30) >= 0, "A was not evicted");
	sleep(2);
	ck_assert_int_eq(status_of(b.id, NULL), 200);
	ck_assert_int_eq(status_of(c.id, NULL), 200);
	ck_assert(blob_exists(a.sha)); /* written within gc_grace: left to GC */
	ck_assert_int_eq(
	    itest_sh("grep -q 'evicted bundle job=%lld cook:directory:%s:tar.gz (quota: bundles use"
		     " [0-9]* of %lld bytes)' logs/w*.log",
		(long long)a.job, a.id, quota),
	    0);

	/* B is no longer fresh (and its blob is old), C is downloaded: D evicts B. */
	sql_do("UPDATE bundles SET created_at = now() - interval '20 minutes' WHERE job_id = %lld",
	    (long long)b.job);
	make_old(b.sha);
	ck_assert_int_eq(download(c.id, NULL), 200);
	cook_tree(&d, "quota-d", 100000);
	ck_assert_msg(wait_gone(b.id, 30) >= 0, "B was not evicted");
	sleep(2);
	ck_assert_int_eq(status_of(c.id, NULL), 200);
	ck_assert_int_eq(status_of(d.id, NULL), 200);
	ck_assert_int_eq(download(d.id, NULL), 200);
	for (int i = 0; i < 100 && blob_exists(b.sha); i++)
		usleep(100000);
	ck_assert(!blob_exists(b.sha));
	ck_assert(blob_exists(c.sha));
	ck_assert(blob_exists(d.sha));
	ck_assert_int_eq(itest_sh("grep -q 'deleted blob %s (%lld bytes): bundle evicted'"
				  " logs/w*.log",
			     b.sha, (long long)b.size),
	    0);

	/* A quota below one bundle: C (downloaded) goes; D was downloaded too, so it goes
	 * after C; a new fresh E stays, and the worker says the quota cannot be met. */
	struct cooked e;
	snprintf(env, sizeof env, "BITSVAULT_STORE_QUOTA=%lld", (long long)a.size / 2);
	set_env(env);
	restart_worker();
	ck_assert_msg(wait_gone(c.id, 30) >= 0, "C was not evicted");
	ck_assert_msg(wait_gone(d.id, 30) >= 0, "D was not evicted");
	cook_tree(&e, "quota-e", 100000);
	sleep(3);
	ck_assert_int_eq(status_of(e.id, NULL), 200);
	ck_assert_int_eq(itest_sh("grep -q 'quota: bundles use [0-9]* of %lld bytes, 0 of them"
				  " sticky and [0-9]* cooked within 600s and not downloaded yet'"
				  " logs/w*.log",
			     (long long)a.size / 2),
	    0);
	free(a.id);
	free(b.id);
	free(c.id);
	free(d.id);
	free(e.id);
	set_env("BITSVAULT_STORE_QUOTA=0");
	restart_worker();
}
END_TEST

/* GC: an expired bundle's blob (kept by expiry: written within gc_grace) is reported by a
 * dry run and deleted by a real one once it is old enough; young unreferenced blobs (a
 * write in flight), referenced blobs (contents, a sticky bundle) and temp files are never
 * touched. */
START_TEST(test_gc)
{
	struct cooked g1, g2;
	char *tmp, *young_sha, *young_path;
	json_t *rep;

	cook_tree(&g1, "gc-1", 30000);
	cook_tree(&g2, "gc-2", 1000);
	ck_assert_int_eq(sticky("PUT", "directory", g2.id, IT_ADMIN, NULL), 200);
	sql_do("UPDATE bundles SET created_at = now() - interval '2 hours',"
	       " last_download_at = NULL WHERE NOT sticky");
	ck_assert_msg(wait_gone(g1.id, 30) >= 0, "g1 did not expire");
	wait_no_bundles(30); /* the quota case's bundles too */
	ck_assert(blob_exists(g1.sha)); /* young: left to GC */
	ck_assert_int_eq(
	    itest_sh("grep -q 'expired bundle job=%lld' logs/w*.log", (long long)g1.job), 0);

	/* A temp file of a write in progress (old, even), and an unreferenced blob written
	 * just now, as a cook's bundle is before its job is done. */
	tmp = xasprintf("%s/store/tmp/put-1-deadbeef", IT.data_dir);
	ck_assert_int_eq(
	    itest_sh("printf partial > '%s' && touch -d '3 hours ago' '%s'", tmp, tmp), 0);
	young_sha = itest_sh_out("printf 'in flight\\n' | sha256sum | cut -c1-64");
	young_path = blob_path(young_sha);
	ck_assert_int_eq(itest_sh("d=$(dirname '%s') && mkdir -p \"$d\" &&"
				  " printf 'in flight\\n' > '%s'",
			     young_path, young_path),
	    0);
	make_old(g1.sha);

	/* With gc_grace an hour: only g1's blob is old enough. */
	rep = run_gc(3600, true);
	ck_assert_int_eq(num(rep, "deleted"), 1);
	ck_assert_int_eq(num(rep, "deleted_bytes"), g1.size);
	ck_assert_int_ge(num(rep, "kept_young"), 1);
	json_int_t scanned = num(rep, "scanned");
	ck_assert_int_ge(scanned, 4);
	json_decref(rep);
	ck_assert(blob_exists(g1.sha)); /* a dry run deletes nothing */
	ck_assert_int_eq(itest_sh("grep -q 'gc (dry run): would delete blob %s (%lld bytes):"
				  " unreferenced' logs/gc.log",
			     g1.sha, (long long)g1.size),
	    0);
	/* gc_dry_run in the configuration makes --gc a dry run too. */
	ck_assert_int_eq(gc_cmd(3600, false, "BITSVAULT_GC_DRY_RUN=true", NULL, &rep), 0);
	ck_assert_ptr_nonnull(rep);
	ck_assert(json_is_true(json_object_get(rep, "dry_run")));
	json_decref(rep);
	ck_assert(blob_exists(g1.sha));

	rep = run_gc(3600, false);
	ck_assert_int_eq(num(rep, "deleted"), 1);
	ck_assert_int_eq(num(rep, "deleted_bytes"), g1.size);
	ck_assert_int_eq(num(rep, "scanned"), scanned);
	json_decref(rep);
	ck_assert(!blob_exists(g1.sha));
	ck_assert(blob_exists(young_sha)); /* in flight: kept */
	ck_assert(blob_exists(g2.sha)); /* sticky bundle */
	assert_referenced_present();
	ck_assert_int_eq(
	    itest_sh("grep -q 'gc: deleted blob %s (%lld bytes): unreferenced' logs/gc.log", g1.sha,
		(long long)g1.size),
	    0);

	/* With no grace, every unreferenced blob goes, and nothing referenced. */
	char *refd = sql_list("SELECT encode(sha256, 'hex') FROM contents"
			      " UNION SELECT encode(sha256, 'hex') FROM bundles");
	rep = run_gc(0, true);
	json_int_t would = num(rep, "deleted");
	ck_assert_int_ge(would, 1);
	ck_assert_int_eq(num(rep, "kept_young"), 0);
	json_decref(rep);
	ck_assert(blob_exists(young_sha));
	rep = run_gc(0, false);
	ck_assert_int_eq(num(rep, "deleted"), would);
	json_decref(rep);
	ck_assert(!blob_exists(young_sha));
	assert_referenced_present();
	ck_assert(blob_exists(g2.sha));
	/* Every blob left is referenced. */
	char *left = itest_sh_out(
	    "cd '%s/store/objects' && find . -type f -printf '%%f\\n' | sort", IT.data_dir);
	for (char *p = strtok(left, "\n"); p != NULL; p = strtok(NULL, "\n"))
		ck_assert_msg(strstr(refd, p) != NULL, "unreferenced blob %s survived", p);
	free(left);
	free(refd);
	/* Nothing to do any more. */
	rep = run_gc(0, false);
	ck_assert_int_eq(num(rep, "deleted"), 0);
	json_decref(rep);

	/* The temp file is never touched. */
	struct stat sb;
	ck_assert_int_eq(stat(tmp, &sb), 0);
	ck_assert_int_eq(sb.st_size, 7);
	ck_assert_int_eq(download(g2.id, NULL), 200);

	free(tmp);
	free(young_sha);
	free(young_path);
	free(g1.id);
	free(g2.id);
}
END_TEST

/* Starts `--gc` in the background (its report in gc.out, its exit status in gc.rc) with
 * a pause between a batch's mark and its sweep, and waits until it pauses. */
static void
gc_paused(int pause_ms)
{
	setenv("BV_GC_DBURL", IT.db_url, 1);
	/* The old report and log go first, in the foreground: a stale "gc: pausing" line
	 * from an earlier run must not be taken for this one's (the signal would then reach
	 * the new process before it installed its handlers). */
	ck_assert_int_eq(itest_sh("rm -f gc.out gc.rc gc.pid && : > logs/gc-pause.log"), 0);
	ck_assert_int_eq(itest_sh("(BITSVAULT_TEST_GC_PAUSE_MS=%d BITSVAULT_DATA_DIR='%s'"
				  " BITSVAULT_DATABASE_URL=\"$BV_GC_DBURL\" BITSVAULT_GC_GRACE=3600"
				  " '%s/worker/bitsvault-worker' --gc >gc.out 2>logs/gc-pause.log &"
				  " echo $! > gc.pid; wait $!; echo $? > gc.rc) >/dev/null 2>&1 &",
			     pause_ms, IT.data_dir, getenv("BV_TOP_BUILDDIR")),
	    0);
	uint64_t t0 = now_ms();
	while (itest_sh("grep -q 'gc: pausing' logs/gc-pause.log") != 0) {
		ck_assert_msg(now_ms() - t0 < 30000, "--gc did not pause");
		usleep(50000);
	}
}

/* Waits for the background --gc: its exit status, its report in *rep. */
static int
gc_wait(json_t **rep)
{
	uint64_t t0 = now_ms();

	while (itest_sh("test -s gc.rc") != 0) {
		ck_assert_msg(now_ms() - t0 < 60000, "--gc did not finish");
		usleep(50000);
	}
	char *rc = itest_sh_out("cat gc.rc"), *out = itest_sh_out("cat gc.out");
	int v = atoi(rc);

	*rep = json_loads(out, 0, NULL);
	free(rc);
	free(out);
	return v;
}

/* The in-flight guarantee: a blob that was old and unreferenced when the collection
 * marked it, and that an upload reuses before the sweep, survives (the write refreshes
 * it, the upload's rows touch it before they commit, the deletion re-checks the age). */
START_TEST(test_gc_in_flight)
{
	const char *bytes = "reused while the collector pauses\n";
	char *sha = itest_sh_out("printf '%s' | sha256sum | cut -c1-64",
	    "reused while the"
	    " collector pauses\\n");
	char *path = blob_path(sha);
	json_t *rep = NULL;

	ck_assert_int_eq(
	    itest_sh("mkdir -p \"$(dirname '%s')\" && printf '%%s' '%s' > '%s'", path, bytes, path),
	    0);
	make_old(sha);
	gc_paused(3000);
	/* The collector has judged the blob unreferenced and old; an upload reuses it. */
	ck_assert_int_eq(itest_sh("mkdir -p trees/inflight && printf '%%s' '%s' >"
				  " trees/inflight/f.txt",
			     bytes),
	    0);
	free(itest_upload_tree("inflight"));
	ck_assert_int_eq(gc_wait(&rep), 0);
	ck_assert_ptr_nonnull(rep);
	ck_assert(json_is_true(json_object_get(rep, "complete")));
	ck_assert_int_ge(num(rep, "kept_young"), 1);
	json_decref(rep);
	ck_assert(blob_exists(sha));
	char *q =
	    xasprintf("SELECT count(*) FROM contents WHERE sha256 = decode('%s', 'hex')", sha);
	char *n = itest_sql(q);
	ck_assert_str_eq(n, "1");
	free(n);
	free(q);
	ck_assert_int_ne(itest_sh("grep -q 'deleted blob %s' logs/gc-pause.log", sha), 0);
	free(path);
	free(sha);
}
END_TEST

/* --gc refuses what could wipe the store: a database that is not the store's (fresh,
 * migrated), a database with no contents nor bundles against a store with blobs, a data
 * folder without a store (and creates none). It tells a busy lock (75) from an error (1),
 * and a SIGINT during the walk gives "complete": false and exit 1. */
START_TEST(test_gc_guards)
{
	json_t *rep = NULL;
	int before = count_blobs();
	char *other = xasprintf("%s dbname='bvtest_expire_other_%d'", IT.db_url, (int)getpid());
	PGconn *c = PQconnectdb(IT.db_url);
	PGresult *r;

	ck_assert_int_gt(before, 0);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	char *mk = xasprintf("CREATE DATABASE bvtest_expire_other_%d", (int)getpid());
	r = PQexec(c, mk);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(r);
	free(mk);
	setenv("BV_GC_DBURL", other, 1);
	ck_assert_int_eq(itest_sh("BITSVAULT_DATABASE_URL=\"$BV_GC_DBURL\" BITSVAULT_DATA_DIR='%s'"
				  " BITSVAULT_MIGRATIONS_DIR='%s/db/migrations'"
				  " '%s/api/bitsvault-api' --migrate-only >>logs/gc.log 2>&1",
			     IT.data_dir, getenv("BV_TOP_SRCDIR"), getenv("BV_TOP_BUILDDIR")),
	    0);

	/* Another deployment's (empty) database: the store's ID is not recorded there. */
	ck_assert_int_eq(gc_cmd(0, false, "", other, &rep), 1);
	ck_assert_ptr_null(rep);
	ck_assert_int_eq(itest_sh("grep -q 'refusing to collect: the store has ID [0-9a-f]* but"
				  " the database records none' logs/gc.log"),
	    0);
	ck_assert_int_eq(count_blobs(), before);
	/* The same without the store's ID (a store from before IDs): the empty database is
	 * refused all the same, and nothing is bound. */
	ck_assert_int_eq(itest_sh("mv '%s/store/ID' ID.saved", IT.data_dir), 0);
	ck_assert_int_eq(gc_cmd(0, false, "", other, &rep), 1);
	ck_assert_int_eq(itest_sh("grep -q 'refusing to collect: the database holds no contents"
				  " nor bundles but the store holds blobs' logs/gc.log"),
	    0);
	ck_assert_int_eq(itest_sh("test ! -e '%s/store/ID'", IT.data_dir), 0);
	ck_assert_int_eq(itest_sh("mv ID.saved '%s/store/ID'", IT.data_dir), 0);
	ck_assert_int_eq(count_blobs(), before);
	char *drop = xasprintf("DROP DATABASE bvtest_expire_other_%d WITH (FORCE)", (int)getpid());
	r = PQexec(c, drop);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
	PQclear(r);
	free(drop);

	/* A store whose ID is not the database's. */
	char *sid = itest_sh_out("cat '%s/store/ID'", IT.data_dir);
	ck_assert_int_eq(
	    itest_sh("echo 0123456789abcdef0123456789abcdef > '%s/store/ID'", IT.data_dir), 0);
	ck_assert_int_eq(gc_cmd(0, false, "", NULL, &rep), 1);
	ck_assert_int_eq(
	    itest_sh("grep -q \"refusing to collect: the store's ID\" logs/gc.log"), 0);
	ck_assert_int_eq(itest_sh("echo %s > '%s/store/ID'", sid, IT.data_dir), 0);
	free(sid);
	ck_assert_int_eq(count_blobs(), before);

	/* No store: refused, and none created. */
	ck_assert_int_eq(
	    itest_sh("BITSVAULT_DATA_DIR=nowhere BITSVAULT_DATABASE_URL=\"$BV_GC_DBURL\""
		     " '%s/worker/bitsvault-worker' --gc >/dev/null 2>>logs/gc.log",
		getenv("BV_TOP_BUILDDIR")),
	    1);
	ck_assert_int_eq(itest_sh("test ! -e nowhere"), 0);
	ck_assert_int_eq(itest_sh("grep -q 'no store at nowhere/store' logs/gc.log"), 0);

	/* Another collector holds the lock: 75, nothing done. */
	r = PQexec(c, "SELECT pg_advisory_lock(" GC_LOCK_KEY ")");
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	PQclear(r);
	ck_assert_int_eq(gc_cmd(0, false, "", NULL, &rep), 75);
	ck_assert_ptr_null(rep);
	ck_assert_int_eq(
	    itest_sh("grep -q 'another worker is collecting garbage now' logs/gc.log"), 0);
	PQfinish(c); /* releases the lock */
	rep = run_gc(3600, true);
	json_decref(rep);

	/* Interrupted while it pauses before a sweep: incomplete, exit 1, nothing deleted. */
	char *old_sha = itest_sh_out("printf 'old and alone\\n' | sha256sum | cut -c1-64");
	char *old_path = blob_path(old_sha);
	ck_assert_int_eq(
	    itest_sh("mkdir -p \"$(dirname '%s')\" && printf 'old and alone\\n' > '%s'", old_path,
		old_path),
	    0);
	make_old(old_sha);
	gc_paused(20000);
	ck_assert_int_eq(itest_sh("kill -INT $(cat gc.pid)"), 0);
	ck_assert_int_eq(gc_wait(&rep), 1);
	ck_assert_ptr_nonnull(rep);
	ck_assert(json_is_false(json_object_get(rep, "complete")));
	json_decref(rep);
	ck_assert(blob_exists(old_sha));
	rep = run_gc(3600, false); /* the next collection takes it */
	ck_assert_int_ge(num(rep, "deleted"), 1);
	json_decref(rep);
	ck_assert(!blob_exists(old_sha));
	free(old_sha);
	free(old_path);
	free(other);
}
END_TEST

static void
setup(void)
{
	itest_init("expire", 8);
	itest_env("BITSVAULT_BUNDLE_TTL=3600");
	itest_env("BITSVAULT_EXPIRY_INTERVAL=1");
	itest_env("BITSVAULT_GC_GRACE=0");
	itest_start_api();
	restart_worker();
}

int
main(void)
{
	Suite *s = suite_create("itest_expire");
	TCase *tc = tcase_create("expire");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_add_test(tc, test_expire_and_cook_again);
	tcase_add_test(tc, test_download_postpones);
	tcase_add_test(tc, test_sticky);
	tcase_add_test(tc, test_quota);
	tcase_add_test(tc, test_gc);
	tcase_add_test(tc, test_gc_in_flight);
	tcase_add_test(tc, test_gc_guards);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
