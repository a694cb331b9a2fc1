/* itest_archiver.c: the Droplet Archiver (docs/api.md "Droplet Archiver", docs/worker.md
 * "Droplet replication") with two bitsvault instances on loopback, each listing the other
 * in archiver_sync_hosts: A is the harness's (IT, Redis db 17), B is started here (its own
 * port, data folder, database and Redis db 18, its own worker). Cases: a droplet posted to
 * A with curl(1) appears on B with the same bytes; a sha1 mismatch stores nothing on either;
 * bad paths and credentials are refused; posting again is harmless; a droplet posted while
 * B was down reaches B once it is back; one B lost comes back by the reconcile; one posted
 * to B's /sync is not passed on by the request; /sync/have; the Bits GET with the
 * archiver's credentials; the replica rows end done. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tests/itest.h"

#define ARCH_CRED "archie:Arch1ver-Pass"
#define PEER_USER "peer"
#define PEER_PASS "Peer-Sync-Secret"
#define PEER_CRED PEER_USER ":" PEER_PASS
#define USERS_ENV "BITSVAULT_ARCHIVER_USERS=" ARCH_CRED "," PEER_CRED
#define WAIT_S 30
#define ZERO40 "0000000000000000000000000000000000000000"

/* The second instance (the first is IT). */
static struct {
	char listen[32], url[64], dir[300], data_dir[320], dbname[96];
	char *db_url, *admin_url, *redis_url;
	pid_t api, worker;
} B;

/* The last answer (freed by the next request); its body is NUL-terminated. */
static struct itest_resp R;
/* The droplets: d1 (replicated), d2 (posted while B was down), d3 (posted to B's /sync). */
static char key1[80], key2[80], key3[80];

/* A scalar (first column of the first row, "" without rows) of one statement on conninfo;
 * NULL when it failed and may_fail. Caller frees. */
static char *
sql_on(const char *conninfo, bool may_fail, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = xvasprintf(fmt, ap), *v = NULL;
	va_end(ap);
	PGconn *c = PQconnectdb(conninfo);
	PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
	ExecStatusType st = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		v = xstrdup(st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	else if (!may_fail)
		ck_abort_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	free(sql);
	return v;
}

/* A count from A's (a) or B's database. */
static long
count_on(bool a, const char *fmt, const char *arg)
{
	char *v = sql_on(a ? IT.db_url : B.db_url, false, fmt, arg);
	long n = atol(v);
	free(v);
	return n;
}

/* Stops B's processes and drops its database; safe to call twice. */
static void
b_teardown(void)
{
	pid_t pids[] = {B.worker, B.api};
	for (size_t i = 0; i < BV_NELEM(pids); i++) {
		if (pids[i] <= 0)
			continue;
		kill(pids[i], SIGTERM);
		int st, ms = 0;
		while (waitpid(pids[i], &st, WNOHANG) != pids[i] && ms < 10000) {
			usleep(20000);
			ms += 20;
		}
		if (ms >= 10000) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], &st, 0);
		}
	}
	B.api = B.worker = 0;
	if (B.admin_url != NULL && B.dbname[0] != '\0')
		free(
		    sql_on(B.admin_url, true, "DROP DATABASE IF EXISTS %s WITH (FORCE)", B.dbname));
	B.dbname[0] = '\0';
}

/* The harness gives up on the program after a while: B goes first. */
static void
on_alarm(int sig)
{
	(void)sig;
	if (B.api > 0)
		kill(B.api, SIGKILL);
	if (B.worker > 0)
		kill(B.worker, SIGKILL);
	b_teardown();
	itest_teardown();
	_exit(1);
}

/* Starts one of B's binaries with B's environment, its output in logs/<log>.log. */
static pid_t
b_spawn(const char *binary, const char *log)
{
	char *path = xasprintf("%s/%s", getenv("BV_TOP_BUILDDIR"), binary);
	char *logpath = xasprintf("%s/logs/%s.log", IT.dir, log);
	char *mig = xasprintf("%s/db/migrations", getenv("BV_TOP_SRCDIR"));
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		const char *env[][2] = {{"LISTEN", B.listen}, {"DATA_DIR", B.data_dir},
		    {"DATABASE_URL", B.db_url}, {"REDIS_URL", B.redis_url},
		    {"ADMIN_TOKEN", IT_ADMIN}, {"WORKER_TOKEN", IT_WORKER},
		    {"USER_TOKENS", IT_USER}, {"API_URL", B.url}, {"MIGRATIONS_DIR", mig},
		    {"LOG_LEVEL", "info"}, {"JOB_LEASE", "4"}, {"WORKER_HEARTBEAT", "1"},
		    {"WORKER_NAME", "arch-b"}, {"ARCHIVER_SYNC_HOSTS", IT.listen},
		    {"ARCHIVER_SYNC_USER", PEER_USER}, {"ARCHIVER_SYNC_PASSWORD", PEER_PASS},
		    {"ARCHIVER_SYNC_INTERVAL", "5"}};
		for (size_t i = 0; i < BV_NELEM(env); i++) {
			char *k = xasprintf("BITSVAULT_%s", env[i][0]);
			setenv(k, env[i][1], 1);
		}
		putenv(xstrdup(USERS_ENV));
		execl(path, path, (char *)NULL);
		_exit(127);
	}
	free(path);
	free(logpath);
	free(mig);
	return pid;
}

/* Collects a response body or headers. */
static size_t
sink(char *data, size_t size, size_t nmemb, void *arg)
{
	buf_add(arg, data, size * nmemb);
	return size * nmemb;
}

/* One request to base (IT.url or B.url), with HTTP Basic cred (or NULL) and one more
 * header; the path is sent as is. The answer is in R; returns its status. */
static long
req(const char *base, const char *method, const char *path, const char *cred, const void *body,
    size_t len, const char *header)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char *url = xasprintf("%s%s", base, path);

	itest_resp_free(&R);
	memset(&R, 0, sizeof R);
	buf_init(&R.body);
	buf_init(&R.headers);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (cred != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, cred);
	}
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &R.body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &R.headers);
	if (header != NULL)
		h = curl_slist_append(h, header);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	(void)curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &R.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(url);
	buf_addc(&R.body, '\0');
	R.body.len--;
	if (R.body.len > 0 && (R.body.data[0] == '{' || R.body.data[0] == '['))
		R.json = json_loadb(R.body.data, R.body.len, 0, NULL);
	return R.status;
}

/* POSTs a file of IT.dir with curl(1) --data-binary, as an archiver client does; the
 * answer is in R (its headers too); returns its status. */
static long
post_file(const char *base, const char *path, const char *cred, const char *file)
{
	char *st = itest_sh_out("rm -f resp.body resp.hdr; curl -sS --path-as-is -o resp.body"
				" -D resp.hdr -w '%%{http_code}' %s%s --data-binary @%s '%s%s'",
	    cred != NULL ? "-u " : "", cred != NULL ? cred : "", file, base, path);
	char *p;
	size_t n;

	itest_resp_free(&R);
	memset(&R, 0, sizeof R);
	buf_init(&R.body);
	buf_init(&R.headers);
	R.status = atol(st);
	free(st);
	const char *files[] = {"resp.body", "resp.hdr"};
	struct buf *to[] = {&R.body, &R.headers};
	for (size_t i = 0; i < BV_NELEM(files); i++) {
		char *f = xasprintf("%s/%s", IT.dir, files[i]);
		if ((p = read_file(f, &n, NULL)) != NULL)
			buf_add(to[i], p, n);
		free(p);
		free(f);
	}
	buf_addc(&R.body, '\0');
	R.body.len--;
	R.json = json_loadb(R.body.data, R.body.len, 0, NULL);
	return R.status;
}

/* Makes IT.dir/<name> of n random bytes; returns its sha1 (caller frees). */
static char *
make_droplet(const char *name, size_t n)
{
	ck_assert_int_eq(itest_sh("head -c %zu /dev/urandom > %s", n, name), 0);
	char *sum = itest_sh_out("sha1sum < %s | cut -c1-40", name);
	ck_assert_msg(is_hex(sum, 40), "sha1sum: %s", sum);
	return sum;
}

/* R's body is exactly the file IT.dir/<name>. */
static void
body_is_file(const char *name)
{
	size_t n = 0;
	char *p = xasprintf("%s/%s", IT.dir, name), *data = NULL;

	ck_assert_msg((data = read_file(p, &n, NULL)) != NULL, "read %s", p);
	ck_assert_msg(R.body.len == n && memcmp(R.body.data, data, n) == 0,
	    "%s: %zu bytes served, %zu in the file", name, R.body.len, n);
	free(data);
	free(p);
}

/* Polls GET /droplets/<key> on base with the archiver's credentials until 200 or
 * WAIT_S; returns the milliseconds it took, or -1. R holds the last answer. */
static long
wait_droplet(const char *base, const char *key)
{
	char *path = xasprintf("/droplets/%s", key);
	uint64_t start = now_ms();
	long ms = -1;

	while (now_ms() - start < WAIT_S * 1000) {
		if (req(base, "GET", path, ARCH_CRED, NULL, 0, NULL) == 200) {
			ms = (long)(now_ms() - start);
			break;
		}
		usleep(50000);
	}
	free(path);
	return ms;
}

/* Polls a count on A's (a) or B's database until it is want, or WAIT_S. */
static void
wait_count(bool a, long want, const char *fmt, const char *arg)
{
	uint64_t start = now_ms();
	long n = -1;

	while (now_ms() - start < WAIT_S * 1000 && (n = count_on(a, fmt, arg)) != want)
		usleep(100000);
	ck_assert_msg(n == want, "%s (%s on %s): %ld, not %ld", fmt, arg, a ? "A" : "B", n, want);
}

/* Starts B's API and waits until it answers. */
static void
b_start_api(void)
{
	B.api = b_spawn("api/bitsvault-api", "b-api");
	for (int i = 0; i < 300; i++) {
		int st;
		if (req(B.url, "GET", "/status", NULL, NULL, 0, NULL) > 0)
			return;
		ck_assert_msg(waitpid(B.api, &st, WNOHANG) != B.api, "B's API exited at start");
		usleep(50000);
	}
	ck_abort_msg("B's API did not answer within 15 s");
}

/* Stops B's API (SIGTERM) and waits for it. */
static void
b_stop_api(void)
{
	int st;

	ck_assert_int_eq(kill(B.api, SIGTERM), 0);
	ck_assert_int_eq(waitpid(B.api, &st, 0), B.api);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "B's API: status %d", st);
	B.api = 0;
}

/* How many lines of logs/<log>.log hold text. */
static long
log_count(const char *log, const char *text)
{
	char *n = itest_sh_out("grep -cF -- '%s' logs/%s.log", text, log);
	long v = atol(n);
	free(n);
	return v;
}

/* A (the harness's) and B, each with a worker, each the other's peer. */
static void
setup(void)
{
	char env[128];

	itest_init("archiver", 17);
	signal(SIGALRM, on_alarm);
	/* B: a port, a folder, a database and Redis db 18 of its own. */
	snprintf(B.listen, sizeof B.listen, "127.0.0.1:%d", itest_free_port());
	snprintf(B.url, sizeof B.url, "http://%s", B.listen);
	snprintf(B.dir, sizeof B.dir, "%s/b", IT.dir);
	snprintf(B.data_dir, sizeof B.data_dir, "%s/data", B.dir);
	ck_assert_int_eq(itest_sh("mkdir -p b/data"), 0);
	B.admin_url = itest_conninfo_with_db(getenv("BITSVAULT_TEST_DATABASE_URL"), "postgres");
	snprintf(B.dbname, sizeof B.dbname, "bvtest_archiver_b_%d", (int)getpid());
	free(sql_on(B.admin_url, false, "CREATE DATABASE %s", B.dbname));
	B.db_url = itest_conninfo_with_db(getenv("BITSVAULT_TEST_DATABASE_URL"), B.dbname);
	B.redis_url = xstrdup(IT.redis_url);
	ck_assert_ptr_nonnull(strrchr(B.redis_url, '/'));
	strcpy(strrchr(B.redis_url, '/'), "/18");
	char *hp = xstrndup(B.redis_url + 8, strcspn(B.redis_url + 8, "/"));
	ck_assert_int_eq(itest_sh("redis-cli -h %.*s -p %s -n 18 FLUSHDB >/dev/null",
			     (int)strcspn(hp, ":"), hp, strchr(hp, ':') + 1),
	    0);
	free(hp);

	itest_env(USERS_ENV);
	itest_env("BITSVAULT_ARCHIVER_SYNC_USER=" PEER_USER);
	itest_env("BITSVAULT_ARCHIVER_SYNC_PASSWORD=" PEER_PASS);
	itest_env("BITSVAULT_ARCHIVER_SYNC_INTERVAL=5");
	snprintf(env, sizeof env, "BITSVAULT_ARCHIVER_SYNC_HOSTS=%s", B.listen);
	itest_env(env);
	itest_start_api();
	itest_start_worker("arch-a");
	b_start_api();
	B.worker = b_spawn("worker/bitsvault-worker", "b-worker");
}

/* B first: the harness removes the folder B writes in. */
static void
teardown(void)
{
	itest_resp_free(&R);
	b_teardown();
	itest_teardown();
}

START_TEST(test_refusals)
{
	char *sum = make_droplet("small.bin", 1000), *path;
	/* Each with the right body and credentials: only the path is wrong. */
	char s39[41], s41[42], up[41], notx[41];
	snprintf(s39, sizeof s39, "%.39s", sum);
	snprintf(s41, sizeof s41, "%s0", sum);
	snprintf(notx, sizeof notx, "%.39sg", sum);
	for (int i = 0; i < 41; i++)
		up[i] = (char)(sum[i] >= 'a' ? sum[i] - 32 : sum[i]);
	/* route, app, sha1, what is wrong: each with the right body and credentials. */
	const char *bad[][4] = {{"droplets", "a%2Fb", sum, "app with an encoded '/'"},
	    {"droplets", "..", sum, "app '..'"}, {"droplets", "%2E%2E", sum, "app '..' encoded"},
	    {"droplets", ".", sum, "app '.'"}, {"droplets", "a%20b", sum, "app with a space"},
	    {"droplets", "caf%C3%A9", sum, "app not ASCII"},
	    {"droplets", "app", s39, "sha1 of 39 digits"},
	    {"droplets", "app", s41, "sha1 of 41 digits"},
	    {"droplets", "app", up, "sha1 in uppercase"}, {"droplets", "app", notx, "not hex"},
	    {"sync", "a%2Fb", sum, "/sync, bad app"}, {"sync", "app", s39, "/sync, short sha1"}};

	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		path = xasprintf("/%s/%s/%s", bad[i][0], bad[i][1], bad[i][2]);
		ck_assert_msg(post_file(IT.url, path, PEER_CRED, "small.bin") == 400,
		    "%s (%s): %ld %s", bad[i][3], path, R.status, R.body.data);
		free(path);
	}
	/* An app of 256 characters; one with a literal '/' is no route at all. */
	path = xasprintf("/droplets/%0256d/%s", 7, sum);
	ck_assert_int_eq(post_file(IT.url, path, ARCH_CRED, "small.bin"), 400);
	free(path);
	path = xasprintf("/droplets/a/b/%s", sum);
	ck_assert_int_eq(post_file(IT.url, path, ARCH_CRED, "small.bin"), 404);
	free(path);

	/* No, wrong or foreign credentials: 401 with the Basic challenge. */
	const char *creds[] = {NULL, "archie:wrong", "nobody:Arch1ver-Pass", "archie:"};
	const char *routes[] = {"droplets", "sync"};
	for (size_t r = 0; r < BV_NELEM(routes); r++) {
		path = xasprintf("/%s/app/%s", routes[r], sum);
		for (size_t i = 0; i < BV_NELEM(creds); i++) {
			ck_assert_msg(post_file(IT.url, path, creds[i], "small.bin") == 401,
			    "POST %s as %s: %ld", path, creds[i] ? creds[i] : "nobody", R.status);
			const char *w = itest_header(&R, "WWW-Authenticate");
			ck_assert_msg(
			    w != NULL && strncmp(w, "Basic realm=", 12) == 0, "%s", R.headers.data);
		}
		free(path);
	}
	ck_assert_int_eq(req(IT.url, "POST", "/droplets/app/" ZERO40, NULL, "x", 1,
			     "Authorization: Bearer " IT_ADMIN),
	    401);
	ck_assert_int_eq(req(IT.url, "POST", "/sync/have", NULL, "{\"keys\":[]}", 11, NULL), 401);
	ck_assert_ptr_nonnull(itest_header(&R, "WWW-Authenticate"));
	path = xasprintf("/droplets/app/%s", sum);
	ck_assert_int_eq(req(IT.url, "GET", path, "archie:wrong", NULL, 0, NULL), 401);
	ck_assert_ptr_nonnull(itest_header(&R, "WWW-Authenticate"));

	/* A body whose sha1 is not the path's: 400 naming it, nothing stored anywhere. */
	path = xasprintf("/droplets/app/%.39s%c", sum, sum[39] == '0' ? '1' : '0');
	ck_assert_int_eq(post_file(IT.url, path, ARCH_CRED, "small.bin"), 400);
	ck_assert_msg(strstr(R.body.data, sum) != NULL, "%s", R.body.data);
	free(path);
	path = xasprintf("/sync/app/%.39s%c", sum, sum[39] == '0' ? '1' : '0');
	ck_assert_int_eq(post_file(B.url, path, PEER_CRED, "small.bin"), 400);
	free(path);
	usleep(1500000); /* a replication pass */
	ck_assert_int_eq(count_on(true, "SELECT count(*) FROM bits_resources%s", ""), 0);
	ck_assert_int_eq(count_on(true, "SELECT count(*) FROM droplet_replicas%s", ""), 0);
	ck_assert_int_eq(count_on(false, "SELECT count(*) FROM bits_resources%s", ""), 0);
	char *files = itest_sh_out(
	    "find data/store/objects data/store/tmp b/data/store/objects b/data/store/tmp"
	    " -type f 2>&1");
	ck_assert_msg(files[0] == '\0', "left in the stores: %s", files);
	free(files);
	path = xasprintf("/droplets/app/%s", sum);
	ck_assert_int_eq(req(IT.url, "GET", path, ARCH_CRED, NULL, 0, NULL), 404);
	free(path);
	free(sum);
}
END_TEST

START_TEST(test_replicate)
{
	char *sum = make_droplet("d1.bin", 3 << 20), *path;
	long ms;

	snprintf(key1, sizeof key1, "app-one/%s", sum);
	path = xasprintf("/droplets/%s", key1);
	ck_assert_msg(
	    post_file(IT.url, path, ARCH_CRED, "d1.bin") == 200, "%ld %s", R.status, R.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "app")), "app-one");
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "sha1")), sum);
	ck_assert_int_eq(json_integer_value(json_object_get(R.json, "size")), 3 << 20);
	ck_assert(json_is_true(json_object_get(R.json, "created")));
	/* Queued for B in the request itself. */
	ck_assert_int_eq(
	    count_on(true, "SELECT count(*) FROM droplet_replicas WHERE key = '%s'", key1), 1);

	ms = wait_droplet(B.url, key1);
	ck_assert_msg(ms >= 0, "d1 did not reach B within %d s", WAIT_S);
	fprintf(stderr, "itest_archiver: d1 (3 MiB) on B %ld ms after A's 200\n", ms);
	body_is_file("d1.bin");

	/* Posting again is harmless. */
	ck_assert_int_eq(post_file(IT.url, path, ARCH_CRED, "d1.bin"), 200);
	ck_assert(json_is_false(json_object_get(R.json, "created")));

	/* The Bits GET takes the archiver's credentials (and a user's token). */
	ck_assert_int_eq(req(IT.url, "GET", path, ARCH_CRED, NULL, 0, NULL), 200);
	body_is_file("d1.bin");
	ck_assert_ptr_nonnull(itest_header(&R, "ETag"));
	ck_assert_int_eq(req(IT.url, "GET", path, ARCH_CRED, NULL, 0, "Range: bytes=0-9"), 206);
	ck_assert_int_eq((int)R.body.len, 10);
	ck_assert_int_eq(req(IT.url, "HEAD", path, ARCH_CRED, NULL, 0, NULL), 200);
	ck_assert_str_eq(itest_header(&R, "Content-Length"), "3145728");
	ck_assert_int_eq(
	    req(IT.url, "GET", path, NULL, NULL, 0, "Authorization: Bearer " IT_USER), 200);
	body_is_file("d1.bin");
	wait_count(true, 1,
	    "SELECT count(*) FROM droplet_replicas WHERE key = '%s' AND state = 'done'", key1);

	/* A droplet Cloud Controller stored (Bits PUT, a user's token) is not the archiver's:
	 * its credentials do not read it, /sync/have does not list it. */
	const char *cc = "/droplets/ccguid/0123456789abcdef0123456789abcdef01234567";
	ck_assert_int_eq(itest_sh("cp d1.bin cc.bin"), 0);
	char *put = xasprintf("curl -s -o /dev/null -w '%%{http_code}' -X PUT -H "
			      "'Authorization: Bearer %s' -F droplet=@cc.bin %s%s",
	    IT_USER, IT.url, cc);
	char *code = itest_sh_out("%s", put);
	/* The path's sha1 is not the bytes': 400 (checked); store under the real sha1. */
	ck_assert_str_eq(code, "400");
	free(code);
	free(put);
	char *ccpath = xasprintf("/droplets/ccguid/%s", sum);
	put = xasprintf("curl -s -o /dev/null -w '%%{http_code}' -X PUT -H "
			"'Authorization: Bearer %s' -F droplet=@cc.bin %s%s",
	    IT_USER, IT.url, ccpath);
	code = itest_sh_out("%s", put);
	ck_assert_str_eq(code, "201");
	ck_assert_int_eq(req(IT.url, "GET", ccpath, ARCH_CRED, NULL, 0, NULL), 404);
	ck_assert_int_eq(
	    req(IT.url, "GET", ccpath, NULL, NULL, 0, "Authorization: Bearer " IT_USER), 200);
	free(code);
	free(put);
	free(ccpath);
	free(path);
	free(sum);
}
END_TEST

START_TEST(test_peer_down)
{
	char *sum = make_droplet("d2.bin", 200000), *path;

	snprintf(key2, sizeof key2, "app.two_2/%s", sum);
	path = xasprintf("/droplets/%s", key2);
	b_stop_api();
	ck_assert_int_eq(post_file(IT.url, path, ARCH_CRED, "d2.bin"), 200);
	/* A's worker tried and failed (and backs off). */
	wait_count(true, 1,
	    "SELECT count(*) FROM droplet_replicas WHERE key = '%s' AND attempts >= 1"
	    " AND state = 'pending' AND last_error <> ''",
	    key2);
	b_start_api();
	uint64_t t = now_ms();
	ck_assert_msg(wait_droplet(B.url, key2) >= 0, "d2 did not reach B within %d s", WAIT_S);
	fprintf(stderr, "itest_archiver: d2 on B %llu ms after B came back\n",
	    (unsigned long long)(now_ms() - t));
	body_is_file("d2.bin");
	wait_count(true, 1,
	    "SELECT count(*) FROM droplet_replicas WHERE key = '%s' AND state = 'done'", key2);
	free(path);
	free(sum);
}
END_TEST

START_TEST(test_reconcile)
{
	char *path = xasprintf("/droplets/%s", key1);
	char *line = xasprintf("reconcile with %s: 1 of", B.listen);
	long before = log_count("arch-a", line);

	/* B loses d1 behind the archiver's back; A's reconcile sends it again. */
	free(sql_on(B.db_url, false,
	    "DELETE FROM bits_resources WHERE kind = 'droplet' AND key = '%s'", key1));
	ck_assert_int_eq(req(B.url, "GET", path, ARCH_CRED, NULL, 0, NULL), 404);
	uint64_t t = now_ms();
	ck_assert_msg(wait_droplet(B.url, key1) >= 0, "d1 did not come back within %d s", WAIT_S);
	fprintf(stderr, "itest_archiver: d1 back on B after %llu ms\n",
	    (unsigned long long)(now_ms() - t));
	body_is_file("d1.bin");
	ck_assert_int_gt(log_count("arch-a", line), before);
	free(line);
	free(path);
}
END_TEST

START_TEST(test_sync_no_storm)
{
	char *sum = make_droplet("d3.bin", 5000), *path, *line;

	snprintf(key3, sizeof key3, "app-three/%s", sum);
	path = xasprintf("/sync/%s", key3);
	ck_assert_int_eq(post_file(B.url, path, PEER_CRED, "d3.bin"), 200);
	ck_assert(json_is_true(json_object_get(R.json, "created")));
	/* The request does not pass it on: nothing queued on B. */
	ck_assert_int_eq(count_on(false, "SELECT count(*) FROM droplet_replicas%s", ""), 0);
	line = xasprintf("droplet %s stored: 5000 bytes", key3);
	ck_assert_int_eq(log_count("b-api", line), 1);
	free(line);
	/* Nor did B ever queue A's droplets back to A (what A sent it, over /sync). */
	ck_assert_int_eq(
	    count_on(false, "SELECT count(*) FROM droplet_replicas WHERE key <> '%s'", key3), 0);
	/* B's reconcile (every 5 s) is what brings it to A, which keeps it (no row on A). */
	ck_assert_msg(wait_droplet(IT.url, key3) >= 0, "d3 did not reach A within %d s", WAIT_S);
	body_is_file("d3.bin");
	line = xasprintf("reconcile with %s: 1 of", IT.listen);
	ck_assert_int_ge(log_count("b-worker", line), 1);
	free(line);
	usleep(1500000);
	ck_assert_int_eq(
	    count_on(true, "SELECT count(*) FROM droplet_replicas WHERE key = '%s'", key3), 0);
	/* A never got back what it sent (only d1's second post of test_replicate). */
	const char *keys[] = {key1, key2};
	for (int i = 0; i < 2; i++) {
		line = xasprintf("droplet %s stored again", keys[i]);
		ck_assert_int_eq(log_count("api", line), i == 0 ? 1 : 0);
		free(line);
	}
	free(path);
	free(sum);
}
END_TEST

START_TEST(test_have)
{
	char *body = xasprintf(
	    "{\"keys\": [\"%s\", \"%s\", \"nope/" ZERO40 "\", \"%s\", \"x\"]}", key2, key1, key3);
	size_t i;
	json_t *k;

	ck_assert_int_eq(req(IT.url, "POST", "/sync/have", PEER_CRED, body, strlen(body),
			     "Content-Type: application/json"),
	    200);
	json_t *have = json_object_get(R.json, "have");
	ck_assert_int_eq((int)json_array_size(have), 3);
	json_array_foreach(have, i, k)
	{
		const char *s = json_string_value(k);
		ck_assert(s != NULL &&
		    (strcmp(s, key1) == 0 || strcmp(s, key2) == 0 || strcmp(s, key3) == 0));
	}
	free(body);
	/* Bad bodies. */
	const char *bad[] = {"{\"keys\": \"x\"}", "{\"keys\": [1]}", "{}", "not json"};
	for (i = 0; i < BV_NELEM(bad); i++)
		ck_assert_msg(req(IT.url, "POST", "/sync/have", PEER_CRED, bad[i], strlen(bad[i]),
				  "Content-Type: application/json") == 400,
		    "%s: %ld", bad[i], R.status);
	struct buf b;
	buf_init(&b);
	buf_adds(&b, "{\"keys\": [\"a\"");
	for (i = 0; i < 10000; i++)
		buf_adds(&b, ",\"a\"");
	buf_adds(&b, "]}");
	ck_assert_int_eq(req(IT.url, "POST", "/sync/have", PEER_CRED, b.data, b.len,
			     "Content-Type: application/json"),
	    400);
	buf_free(&b);
}
END_TEST

START_TEST(test_rows_done)
{
	/* A sent d1 and d2 to B, B sent d3 to A: every row done, none else. */
	wait_count(true, 0, "SELECT count(*) FROM droplet_replicas WHERE state <> 'done'%s", "");
	ck_assert_int_eq(count_on(true,
			     "SELECT count(*) FROM droplet_replicas WHERE state = 'done'"
			     " AND peer = '%s'",
			     B.listen),
	    2);
	ck_assert_int_eq(count_on(true, "SELECT count(*) FROM droplet_replicas%s", ""), 2);
	ck_assert_int_eq(count_on(false,
			     "SELECT count(*) FROM droplet_replicas WHERE state = 'done'"
			     " AND key = '%s'",
			     key3),
	    1);
	ck_assert_int_eq(count_on(false, "SELECT count(*) FROM droplet_replicas%s", ""), 1);
	/* Both hold the same three archiver droplets (A also has Cloud Controller's one). */
	for (int a = 0; a < 2; a++)
		ck_assert_int_eq(count_on(a == 1,
				     "SELECT count(*) FROM bits_resources WHERE kind = 'droplet'"
				     " AND metadata->>'archiver' = 'true'%s",
				     ""),
		    3);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("itest_archiver");
	TCase *tc = tcase_create("archiver");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_refusals);
	tcase_add_test(tc, test_replicate);
	tcase_add_test(tc, test_peer_down);
	tcase_add_test(tc, test_reconcile);
	tcase_add_test(tc, test_sync_no_storm);
	tcase_add_test(tc, test_have);
	tcase_add_test(tc, test_rows_done);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
