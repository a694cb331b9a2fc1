/* fault_workers.c: 200 mixed jobs (cooks in two formats, git loads, Cachito requests with
 * npm dependencies, CF package uploads) while a supervisor SIGKILLs a random worker every
 * few seconds and starts a new one, Redis is flushed a third of the way in and stopped
 * (then started again, empty) two thirds of the way in. Every job must end done or failed
 * with a reason, once; no job may stay running past its lease; the API must answer every
 * call promptly (503 at worst while Redis is down) and recover without a restart. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/faults/faults.h"

#define ROUNDS 40 /* 5 jobs a round: 200 */
#define BIG_TREES 10 /* the first trees are big enough to be killed mid-cook */
#define BIG_MB 40
#define WORKERS 3
#define BOUNDARY "faultsBoundary7MA4YWxkTrZu0gW"
#define MPTYPE "Content-Type: multipart/form-data; boundary=" BOUNDARY
/* A call slower than this is a hang (long-polls are not used here). */
#define MAX_CALL_MS 10000

enum kind { COOK, LOAD, REQUEST, CFPKG };
static const char *const kind_names[] = {"cook", "load", "request", "cf package"};

struct item {
	enum kind kind;
	char path[160]; /* where its client polls it */
	bool ended, done, seen_final;
	bool regressed; /* was final, later not: a client saw it done twice */
	char detail[200];
};

static struct item items[ROUNDS * 5];
static int nitems;
static int slow_calls, calls_503, calls_bad;
static char reg_url[64];
static int reg_port;

/* Packages pkg0..pkg4 in a registry folder, apps app0..app39 (git repositories, each
 * locking one package), trees t0..t39 and a zip z0..z39 of unique content each. */
static const char fixture_sh[] =
    "set -eu; reg=$1 rounds=$2 big=$3 big_mb=$4\n"
    "export GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org GIT_COMMITTER_NAME=Ada \\\n"
    "  GIT_COMMITTER_EMAIL=ada@example.org GIT_AUTHOR_DATE=2020-01-01T00:00:00Z \\\n"
    "  GIT_COMMITTER_DATE=2020-01-01T00:00:00Z GIT_CONFIG_GLOBAL=/dev/null\n"
    "for k in 0 1 2 3 4; do p=pkg$k\n"
    "  mkdir -p pk/$p/package www/$p/-\n"
    "  printf '{\"name\":\"%s\",\"version\":\"1.0.0\"}\\n' $p >pk/$p/package/package.json\n"
    "  tar -cf - -C pk/$p package | gzip -n >www/$p/-/$p-1.0.0.tgz\n"
    "  openssl dgst -sha512 -binary www/$p/-/$p-1.0.0.tgz | base64 -w0 >pk/$p.integrity\n"
    "done\n"
    "i=0; while [ $i -lt $rounds ]; do app=app$i p=pkg$((i % 5))\n"
    "  integ=sha512-$(cat pk/$p.integrity)\n"
    "  mkdir -p repos/$app && (cd repos/$app && git init -q -b main . &&\n"
    "  printf '{\"name\":\"%s\",\"version\":\"1.0.0\",\"dependencies\":{\"%s\":\"1.0.0\"}}\\n'"
    " $app $p >package.json &&\n"
    "  printf '{\"name\":\"%s\",\"version\":\"1.0.0\",\"lockfileVersion\":3,\"requires\":true,'"
    "'\"packages\":{\"\":{\"name\":\"%s\",\"version\":\"1.0.0\",\"dependencies\":{\"%s\":"
    "\"1.0.0\"}},\"node_modules/%s\":{\"version\":\"1.0.0\",\"resolved\":\"%s%s/-/%s-1.0.0.tgz\","
    "\"integrity\":\"%s\"}}}\\n' $app $app $p $p $reg $p $p $integ >package-lock.json &&\n"
    "  git add -A && git commit -q -m $app && git rev-parse HEAD >../$app.sha)\n"
    "  mkdir -p trees/t$i/src zips/z$i\n"
    "  printf 'tree %s\\n' $i >trees/t$i/README; seq $i $((i + 500)) >trees/t$i/src/data.txt\n"
    "  if [ $i -lt $big ]; then head -c $((big_mb * 1048576)) /dev/urandom "
    ">trees/t$i/src/big.bin; fi\n"
    "  printf 'app %s\\n' $i >zips/z$i/index.html; seq $i $((i + 99)) >zips/z$i/data.txt\n"
    "  (cd zips/z$i && zip -qr ../z$i.zip .)\n"
    "  i=$((i + 1)); done\n";

/* The registry: files under www/. */
static const char registry_js[] =
    "const http = require('http'), fs = require('fs'), path = require('path');\n"
    "const [root, port, ready] = process.argv.slice(2);\n"
    "http.createServer((req, res) => {\n"
    "\tconst p = decodeURIComponent(req.url.split('?')[0]);\n"
    "\tfs.readFile(path.join(root, path.normalize(p)), (err, data) => {\n"
    "\t\tif (err) { res.writeHead(404); return res.end(); }\n"
    "\t\tres.writeHead(200, {'Content-Type': 'application/octet-stream'});\n"
    "\t\tres.end(data);\n"
    "\t});\n"
    "}).listen(+port, '127.0.0.1', () => fs.writeFileSync(ready, ''));\n";

/* One API call as a client that retries 503s (Redis or Postgres away) for up to a minute;
 * counts slow answers and answers that are neither wanted nor 503. */
static void
call(struct itest_resp *r, const char *method, const char *path, const char *token,
    const void *body, size_t len, const char *header, long want)
{
	for (int attempt = 0;; attempt++) {
		uint64_t t0 = faults_ms();
		itest_http(r, method, path, token, body, len, header);
		uint64_t ms = faults_ms() - t0;
		if (ms > MAX_CALL_MS) {
			fprintf(stderr, "slow call: %s %s took %llu ms (%ld)\n", method, path,
			    (unsigned long long)ms, r->status);
			slow_calls++;
		}
		if (r->status != 503 || attempt >= 120)
			break;
		calls_503++;
		itest_resp_free(r);
		usleep(500000);
	}
	if (r->status != want) {
		fprintf(stderr, "%s %s: %ld, wanted %ld: %.300s\n", method, path, r->status, want,
		    r->body.data ? r->body.data : "");
		calls_bad++;
	}
}

static struct item *
new_item(enum kind k)
{
	ck_assert_int_lt(nitems, (int)BV_NELEM(items));
	struct item *it = &items[nitems++];
	memset(it, 0, sizeof *it);
	it->kind = k;
	return it;
}

static void
submit_cook(const char *dir_id, const char *format)
{
	struct itest_resp r;
	struct item *it = new_item(COOK);
	char *path = xasprintf("/vault/directory/%s?format=%s", dir_id, format);
	call(&r, "POST", path, IT_USER, NULL, 0, NULL, 201);
	snprintf(it->path, sizeof it->path, "/vault/directory/%s/status?format=%s", dir_id, format);
	itest_resp_free(&r);
	free(path);
}

static void
submit_load(int i)
{
	struct itest_resp r;
	struct item *it = new_item(LOAD);
	char *body = xasprintf("{\"url\": \"file://%s/repos/app%d\"}", IT.dir, i);
	call(&r, "POST", "/loads", IT_USER, body, strlen(body), NULL, 202);
	snprintf(it->path, sizeof it->path, "/loads/%lld",
	    (long long)json_integer_value(json_object_get(r.json, "id")));
	itest_resp_free(&r);
	free(body);
}

static void
submit_request(int i)
{
	struct itest_resp r;
	struct item *it = new_item(REQUEST);
	char *ref = itest_sh_out("cat repos/app%d.sha", i);
	char *body = xasprintf(
	    "{\"repo\": \"file://%s/repos/app%d\", \"ref\": \"%s\", \"pkg_managers\": [\"npm\"]}",
	    IT.dir, i, ref);
	call(&r, "POST", "/api/v1/requests", IT_USER, body, strlen(body), NULL, 201);
	snprintf(it->path, sizeof it->path, "/api/v1/requests/%lld",
	    (long long)json_integer_value(json_object_get(r.json, "id")));
	itest_resp_free(&r);
	free(body);
	free(ref);
}

static void
submit_cfpkg(int i)
{
	struct itest_resp r;
	struct item *it = new_item(CFPKG);
	char *body = xasprintf(
	    "{\"type\":\"bits\",\"relationships\":{\"app\":{\"data\":{\"guid\":\"app-%d\"}}}}", i);
	call(&r, "POST", "/v3/packages", IT_USER, body, strlen(body), NULL, 201);
	const char *guid = json_string_value(json_object_get(r.json, "guid"));
	snprintf(it->path, sizeof it->path, "/v3/packages/%s", guid != NULL ? guid : "none");
	itest_resp_free(&r);
	free(body);

	struct buf b;
	size_t len = 0;
	char *name = xasprintf("zips/z%d.zip", i);
	char *zip = itest_slurp(name, &len);
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "bits", "application.zip", zip, len);
	itest_mp_end(&b, BOUNDARY);
	char *up = xasprintf("%s/upload", it->path);
	call(&r, "POST", up, IT_USER, b.data, b.len, MPTYPE, 200);
	itest_resp_free(&r);
	buf_free(&b);
	free(up);
	free(zip);
	free(name);
}

/* Polls one item once: records whether its client sees it ended, and whether an ended
 * item ever comes back as not ended. */
static void
poll_item(struct item *it)
{
	struct itest_resp r;
	itest_http(&r, "GET", it->path, IT_USER, NULL, 0, NULL);
	if (r.status != 200 || r.json == NULL) {
		snprintf(it->detail, sizeof it->detail, "GET %s: %ld", it->path, r.status);
		itest_resp_free(&r);
		return;
	}
	const char *key = it->kind == REQUEST || it->kind == CFPKG ? "state" : "status";
	const char *st = json_string_value(json_object_get(r.json, key));
	st = st != NULL ? st : "";
	bool done =
	    strcmp(st, "done") == 0 || strcmp(st, "complete") == 0 || strcmp(st, "READY") == 0;
	bool failed = strcmp(st, "failed") == 0 || strcmp(st, "FAILED") == 0;
	if (it->seen_final && !done && !failed)
		it->regressed = true;
	if (done || failed) {
		it->seen_final = it->ended = true;
		it->done = done;
		const char *why = json_string_value(json_object_get(r.json, "progress_message"));
		if (it->kind == REQUEST)
			why = json_string_value(json_object_get(r.json, "state_reason"));
		snprintf(
		    it->detail, sizeof it->detail, "%s%s%s", st, why ? ": " : "", why ? why : "");
	} else {
		it->ended = false;
		snprintf(it->detail, sizeof it->detail, "%s", st);
	}
	itest_resp_free(&r);
}

/* A done bundle downloads whole: its bytes match the Digest the API announces, or, where
 * none is announced, the archive tests whole. */
static bool
download_ok(const struct item *it)
{
	char *path;
	if (it->kind == LOAD)
		return true; /* a load makes no bundle */
	if (it->kind == COOK) {
		path = xstrdup(it->path);
		char *s = strstr(path, "/status");
		memmove(s, s + 7, strlen(s + 7) + 1);
	} else {
		path = xasprintf("%s/download", it->path);
	}
	struct itest_resp r;
	itest_http(&r, "GET", path, IT_USER, NULL, 0, NULL);
	bool ok = r.status == 200 && r.body.len > 0;
	const char *dig = ok ? itest_header(&r, "Digest") : NULL;
	if (ok)
		itest_save(&r, "dl.bin");
	if (dig != NULL) {
		char *want = itest_sh_out("openssl dgst -sha256 -binary dl.bin | base64");
		ok = strstr(dig, want) != NULL;
		if (!ok)
			fprintf(stderr, "%s: Digest %s, bytes give %s\n", path, dig, want);
		free(want);
	}
	if (ok)
		ok = itest_sh("gzip -t dl.bin 2>/dev/null || unzip -tq dl.bin >/dev/null") == 0;
	if (!ok)
		fprintf(
		    stderr, "download %s: %ld, %zu bytes, not whole\n", path, r.status, r.body.len);
	itest_resp_free(&r);
	free(path);
	return ok;
}

START_TEST(test_workers_killed_redis_lost)
{
	char *p = xasprintf("%s/registry.js", IT.dir);
	FILE *f = fopen(p, "w");
	fputs(registry_js, f);
	fclose(f);
	free(p);
	p = xasprintf("%s/fixture.sh", IT.dir);
	f = fopen(p, "w");
	fputs(fixture_sh, f);
	fclose(f);
	free(p);
	uint64_t t0 = faults_ms();
	ck_assert_int_eq(itest_sh("sh fixture.sh %s %d %d %d >logs/fixture.log 2>&1", reg_url,
			     ROUNDS, BIG_TREES, BIG_MB),
	    0);
	ck_assert_int_eq(itest_sh("node registry.js %s/www %d reg.ready >logs/registry.log 2>&1 &"
				  " echo $! > reg.pid",
			     IT.dir, reg_port),
	    0);
	for (int i = 0; i < 200 && itest_sh("test -e reg.ready") != 0; i++)
		usleep(25000);
	char *ids[ROUNDS];
	for (int i = 0; i < ROUNDS; i++) {
		char name[16];
		snprintf(name, sizeof name, "t%d", i);
		ids[i] = itest_upload_tree(name);
	}
	printf("fixtures ready in %llu ms\n", (unsigned long long)(faults_ms() - t0));

	faults_workers_start("fw", WORKERS);
	faults_monitor_start(30);
	faults_killer_start(1000, 2500);
	t0 = faults_ms();
	uint64_t down_at = 0;
	for (int i = 0; i < ROUNDS; i++) {
		submit_cook(ids[i], "tar.gz");
		submit_load(i);
		submit_request(i);
		submit_cook(ids[i], "zip");
		submit_cfpkg(i);
		if (i == ROUNDS / 3) {
			faults_ctl("redis-flush");
			printf("Redis flushed after %d jobs, %llu ms in\n", nitems,
			    (unsigned long long)(faults_ms() - t0));
		}
		if (i == 2 * ROUNDS / 3) {
			faults_ctl("redis-stop");
			down_at = faults_ms();
			printf("Redis stopped after %d jobs\n", nitems);
			/* Monitoring says so, at once. */
			struct itest_resp r;
			uint64_t c0 = faults_ms();
			itest_http(&r, "GET", "/status/short", NULL, NULL, 0, NULL);
			ck_assert_msg(r.status == 503 && strstr(r.body.data, "redis") != NULL &&
				faults_ms() - c0 < 2000,
			    "/status/short with Redis down: %ld %s", r.status, r.body.data);
			itest_resp_free(&r);
		}
		if (down_at != 0 && faults_ms() - down_at > 5000) {
			faults_ctl("redis-start");
			printf("Redis started again after %llu ms down\n",
			    (unsigned long long)(faults_ms() - down_at));
			down_at = 0;
		}
	}
	if (down_at != 0) {
		while (faults_ms() - down_at < 5000)
			usleep(100000);
		faults_ctl("redis-start");
		printf("Redis started again after %llu ms down\n",
		    (unsigned long long)(faults_ms() - down_at));
	}
	/* The API finds Redis again by itself. */
	long short_status = 0;
	for (int i = 0; i < 100 && short_status != 200; i++) {
		struct itest_resp r;
		itest_http(&r, "GET", "/status/short", NULL, NULL, 0, NULL);
		short_status = r.status;
		itest_resp_free(&r);
		if (short_status != 200)
			usleep(100000);
	}
	ck_assert_msg(
	    short_status == 200, "/status/short after Redis came back: %ld", short_status);
	printf("%d jobs submitted in %llu ms\n", nitems, (unsigned long long)(faults_ms() - t0));

	/* Every job ends (the killing goes on meanwhile). */
	int pending = nitems;
	for (int round = 0; pending > 0 && round < 300; round++) {
		pending = 0;
		for (int i = 0; i < nitems; i++) {
			poll_item(&items[i]);
			pending += !items[i].ended;
		}
		if (pending > 0)
			sleep(1);
	}
	int killed = faults_killer_stop();
	int stale = faults_monitor_stop();
	uint64_t elapsed = faults_ms() - t0;

	int done[4] = {0}, failed[4] = {0}, regressed = 0;
	for (int i = 0; i < nitems; i++) {
		struct item *it = &items[i];
		poll_item(it); /* once more, after the last kill */
		if (!it->ended)
			fprintf(stderr, "never ended: %s %s (%s)\n", kind_names[it->kind], it->path,
			    it->detail);
		else if (it->done)
			done[it->kind]++;
		else {
			failed[it->kind]++;
			fprintf(stderr, "failed: %s %s: %s\n", kind_names[it->kind], it->path,
			    it->detail);
		}
		regressed += it->regressed;
	}
	printf("%d jobs in %llu ms, %d workers killed; done/failed: cooks %d/%d, loads %d/%d,"
	       " requests %d/%d, cf packages %d/%d; %d calls answered 503 (retried), %d slow\n",
	    nitems, (unsigned long long)elapsed, killed, done[COOK], failed[COOK], done[LOAD],
	    failed[LOAD], done[REQUEST], failed[REQUEST], done[CFPKG], failed[CFPKG], calls_503,
	    slow_calls);
	ck_assert_msg(pending == 0, "%d jobs never ended", pending);
	ck_assert_int_eq(nitems, ROUNDS * 5);
	ck_assert_msg(calls_bad == 0, "%d calls got an unexpected answer (above)", calls_bad);
	ck_assert_msg(slow_calls == 0, "%d calls took more than %d ms", slow_calls, MAX_CALL_MS);
	ck_assert_msg(regressed == 0, "%d jobs went back from an end state", regressed);
	ck_assert_msg(stale == 0, "jobs stayed running past their lease %d times", stale);
	ck_assert_msg(killed >= 5, "only %d workers were killed: the run is too short", killed);
	/* Postgres agrees: nothing left queued or running; every failure has its reason;
	 * no request completed twice. */
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM jobs WHERE state IN ('queued',"
					" 'running')"),
	    0);
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM jobs WHERE state = 'failed' AND"
					" coalesce(error, '') = ''"),
	    0);
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM (SELECT request_id FROM"
					" request_states WHERE state = 'complete' GROUP BY"
					" request_id HAVING count(*) > 1) t"),
	    0);
	/* A job killed with its worker is retried, not failed (3 attempts): a few may run out
	 * of attempts when killed thrice, no more. */
	long long retried = faults_sql_int("SELECT count(*) FROM jobs WHERE attempts > 1");
	printf("%lld jobs were taken over after their worker died\n", retried);
	ck_assert_msg(retried >= 3, "only %lld jobs were retried: the kills missed", retried);
	int nfailed = failed[COOK] + failed[LOAD] + failed[REQUEST] + failed[CFPKG];
	ck_assert_msg(nfailed * 20 <= nitems, "%d of %d jobs failed", nfailed, nitems);
	/* Whole bundles, and a store where every blob is what its name says. */
	for (int i = 0; i < nitems; i++)
		if (items[i].done)
			ck_assert_msg(download_ok(&items[i]), "bundle of %s", items[i].path);
	ck_assert_int_eq(faults_store_check(true), 0);
	for (int i = 0; i < ROUNDS; i++)
		free(ids[i]);
	itest_sh("kill $(cat reg.pid)");
}
END_TEST

int
main(void)
{
	itest_init("fault_workers", 30);
	if (itest_sh("command -v node >/dev/null && command -v zip >/dev/null") != 0) {
		fprintf(stderr, "fault_workers: node and zip are needed\n");
		itest_teardown();
		return 1;
	}
	reg_port = itest_free_port();
	snprintf(reg_url, sizeof reg_url, "http://127.0.0.1:%d/", reg_port);
	static char reg_env[128];
	snprintf(reg_env, sizeof reg_env, "BITSVAULT_NPM_REGISTRY=%s", reg_url);
	itest_env(reg_env);
	itest_env("BITSVAULT_LOAD_ALLOW_FILE=true");
	itest_env("BITSVAULT_MAX_UPLOAD_SIZE=256M");
	itest_start_api();
	Suite *s = suite_create("fault_workers");
	TCase *tc = tcase_create("faults");
	tcase_add_test(tc, test_workers_killed_redis_lost);
	suite_add_tcase(s, tc);
	int rc = itest_run(s);

	/* Stops the API and workers (none may outlive the program), scans their logs for
	 * secrets and drops the database, as the fixtures of the other programs do. */
	itest_teardown();
	return rc;
}
