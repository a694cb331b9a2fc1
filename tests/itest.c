/* itest.c: the integration-test harness (see itest.h). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "shared/config.h"
#include "tests/itest.h"

struct itest IT;
static char *admin_db_url;
/* While the API starts, requests are expected to find no one: not worth a line each. */
static bool quiet_no_answer;

const char *__asan_default_options(void);
/* Under ASan (tests/sanitize.sh) the test driver itself is not leak-checked: a failed check
 * jumps out of its test with the memory it held, and the leak check is for the servers it
 * spawns (they run with the environment's ASAN_OPTIONS, leak check on). Memory errors and
 * UBSan still stop the driver. Read by the ASan runtime; unused in other builds. */
const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}

/* Skips (77) or fails (1) when the servers are missing, as the environment asks. */
static void __attribute__((noreturn)) no_servers(const char *why)
{
	const char *req = getenv("BITSVAULT_TEST_REQUIRE");
	if (req != NULL && strcmp(req, "1") == 0) {
		fprintf(stderr, "%s: FAIL: %s (BITSVAULT_TEST_REQUIRE=1)\n", IT.name, why);
		exit(1);
	}
	fprintf(stderr, "%s: SKIP: %s\n", IT.name, why);
	exit(77);
}

/* A conninfo for dbname on the admin URL's server (also for tests, itest.h). */
char *
itest_conninfo_with_db(const char *url, const char *dbname)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &err), *o;
	struct buf b;

	if (opts == NULL)
		no_servers("BITSVAULT_TEST_DATABASE_URL is malformed");
	buf_init(&b);
	for (o = opts; o->keyword != NULL; o++) {
		const char *v = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
		if (v == NULL || *v == '\0')
			continue;
		buf_printf(&b, "%s%s='", b.len ? " " : "", o->keyword);
		for (const char *p = v; *p; p++) {
			if (*p == '\'' || *p == '\\')
				buf_addc(&b, '\\');
			buf_addc(&b, *p);
		}
		buf_addc(&b, '\'');
	}
	PQconninfoFree(opts);
	return buf_steal(&b, NULL);
}

/* Runs one statement on a conninfo; aborts the test on error. */
static void
admin_sql(const char *conninfo, const char *sql)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		no_servers("Postgres is not reachable at BITSVAULT_TEST_DATABASE_URL");
	}
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "%s: %s: %s", IT.name, sql, PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
	PQfinish(c);
}

/* A port the kernel says is free now. */
int
itest_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		perror("free_port");
		exit(1);
	}
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Gives up on the whole program after a while: Check's timeouts do not work without fork. */
static void
on_alarm(int sig)
{
	static const char msg[] = "itest: the test program ran out of time\n";
	ssize_t w = write(2, msg, sizeof msg - 1);
	(void)w;
	(void)sig;
	itest_teardown();
	_exit(1);
}

void
itest_init(const char *name, int redis_db)
{
	const char *dburl = getenv("BITSVAULT_TEST_DATABASE_URL");
	const char *rurl = getenv("BITSVAULT_TEST_REDIS_URL");
	char dbname[96];

	memset(&IT, 0, sizeof IT);
	snprintf(IT.name, sizeof IT.name, "%s", name);
	if (dburl == NULL || *dburl == '\0' || rurl == NULL || *rurl == '\0')
		no_servers("BITSVAULT_TEST_DATABASE_URL and BITSVAULT_TEST_REDIS_URL are not set");
	if (getenv("BV_TOP_BUILDDIR") == NULL || getenv("BV_TOP_SRCDIR") == NULL) {
		fprintf(stderr, "%s: run through make check (BV_TOP_BUILDDIR unset)\n", name);
		exit(1);
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	alarm(600 * itest_time_factor());

	/* Our own database, made fresh. */
	admin_db_url = itest_conninfo_with_db(dburl, "postgres");
	snprintf(dbname, sizeof dbname, "bvtest_%s_%d", name, (int)getpid());
	char *sql = xasprintf("CREATE DATABASE %s", dbname);
	admin_sql(admin_db_url, sql);
	free(sql);
	IT.db_url = itest_conninfo_with_db(dburl, dbname);

	/* Our own Redis db number, emptied. */
	IT.redis_db = redis_db;
	const char *r = rurl;
	if (strncmp(r, "redis://", 8) == 0)
		r += 8;
	char hostport[128];
	snprintf(hostport, sizeof hostport, "%.*s", (int)strcspn(r, "/"), r);
	IT.redis_url = xasprintf("redis://%s/%d", hostport, redis_db);
	char *host = xstrndup(hostport, strcspn(hostport, ":"));
	const char *port = strchr(hostport, ':') ? strchr(hostport, ':') + 1 : "6379";
	if (itest_sh("redis-cli -h %s -p %s -n %d FLUSHDB >/dev/null", host, port, redis_db) != 0)
		no_servers("Redis is not reachable at BITSVAULT_TEST_REDIS_URL");
	free(host);

	snprintf(IT.dir, sizeof IT.dir, "/tmp/bvitest-%s-XXXXXX", name);
	if (mkdtemp(IT.dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(IT.data_dir, sizeof IT.data_dir, "%s/data", IT.dir);
	snprintf(IT.listen, sizeof IT.listen, "127.0.0.1:%d", itest_free_port());
	snprintf(IT.url, sizeof IT.url, "http://%s", IT.listen);
	itest_sh("mkdir -p data trees logs");
}

/* ---- secrets never reach logs: what itest_teardown scans for ------------------------ */

/* Shorter values (user names, key ids) are not looked for: they are not secrets. */
#define SECRET_MIN 8
static struct {
	char *value;
	char name[48]; /* what is printed instead of the value */
} secrets[96];
static int nsecrets;

/* Remembers one secret value (len bytes) under name, once. */
static void
add_secret(const char *name, const char *v, size_t len)
{
	if (len < SECRET_MIN || nsecrets == (int)BV_NELEM(secrets))
		return;
	for (int i = 0; i < nsecrets; i++)
		if (strlen(secrets[i].value) == len && memcmp(secrets[i].value, v, len) == 0)
			return;
	secrets[nsecrets].value = xstrndup(v, len);
	snprintf(secrets[nsecrets].name, sizeof secrets[0].name, "%s", name);
	nsecrets++;
}

/* A comma-separated list of "token", "name:token", "user:password" or "id:secret": each
 * entry, and the part after its first ':'. */
static void
add_secret_list(const char *name, const char *v)
{
	for (const char *p = v; *p != '\0';) {
		size_t len = strcspn(p, ","), n = len;
		const char *e = p, *colon;

		while (n > 0 && (*e == ' ' || *e == '\t'))
			e++, n--;
		while (n > 0 && (e[n - 1] == ' ' || e[n - 1] == '\t'))
			n--;
		add_secret(name, e, n);
		if ((colon = memchr(e, ':', n)) != NULL)
			add_secret(name, colon + 1, n - (size_t)(colon + 1 - e));
		p += len;
		if (*p == ',')
			p++;
	}
}

/* A conninfo or postgresql:// URL: the whole of it and its password. */
static void
add_secret_conninfo(const char *name, const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	add_secret(name, conninfo, strlen(conninfo));
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
			add_secret("database password", o->val, strlen(o->val));
	PQconninfoFree(opts);
	PQfreemem(err);
}

/* KEY=VALUE given to itest_env: a secret when the configuration says so
 * (config_key_secret) or its name speaks of a token, secret, password or keys. */
static void
note_secret(const char *kv)
{
	const char *eq = strchr(kv, '=');
	char key[96], lower[96];
	size_t n;

	if (eq == NULL || (n = (size_t)(eq - kv)) >= sizeof key)
		return;
	memcpy(key, kv, n);
	key[n] = '\0';
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32 : key[i]);
	const char *cfgkey = strncmp(lower, "bitsvault_", 10) == 0 ? lower + 10 : lower;
	if (strstr(key, "DATABASE_URL") != NULL)
		add_secret_conninfo(cfgkey, eq + 1);
	else if (config_key_secret(cfgkey) || strstr(key, "TOKEN") != NULL ||
	    strstr(key, "SECRET") != NULL || strstr(key, "PASSWORD") != NULL ||
	    strstr(key, "_KEYS") != NULL)
		add_secret_list(cfgkey, eq + 1);
}

/* Prints line (len bytes) with every secret replaced by its name. */
static void
print_redacted(const char *file, long lineno, const char *line, size_t len)
{
	struct buf b;

	buf_init(&b);
	for (size_t i = 0; i < len;) {
		int hit = -1;
		for (int k = 0; k < nsecrets && hit < 0; k++) {
			size_t sl = strlen(secrets[k].value);
			if (sl <= len - i && memcmp(line + i, secrets[k].value, sl) == 0)
				hit = k;
		}
		if (hit >= 0) {
			buf_printf(&b, "[%s]", secrets[hit].name);
			i += strlen(secrets[hit].value);
		} else {
			buf_addc(&b, line[i] == '\n' ? ' ' : line[i]);
			i++;
		}
	}
	fprintf(stderr, "%s: SECRET IN LOG %s:%ld: %s\n", IT.name, file, lineno,
	    b.data != NULL ? b.data : "");
	buf_free(&b);
}

/* Scans every file under logs/ (what the API, the workers and the test's other processes
 * wrote) for the secrets of this run: the three tokens, the database's password and
 * conninfo, and every secret set with itest_env. The number of lines holding one. */
static int
scan_logs_for_secrets(void)
{
	char *list, *save = NULL, *line = NULL;
	size_t cap = 0;
	int found = 0;

	add_secret("admin_token", IT_ADMIN, strlen(IT_ADMIN));
	add_secret("worker_token", IT_WORKER, strlen(IT_WORKER));
	add_secret("user_tokens", IT_USER, strlen(IT_USER));
	if (IT.db_url != NULL)
		add_secret_conninfo("database_url", IT.db_url);
	if (getenv("BITSVAULT_TEST_DATABASE_URL") != NULL)
		add_secret_conninfo("database_url", getenv("BITSVAULT_TEST_DATABASE_URL"));
	list = itest_sh_out("find logs -type f 2>/dev/null | sort");
	for (char *f = strtok_r(list, "\n", &save); f != NULL; f = strtok_r(NULL, "\n", &save)) {
		char *path = xasprintf("%s/%s", IT.dir, f);
		FILE *fp = fopen(path, "r");
		ssize_t len;
		long lineno = 0;

		while (fp != NULL && (len = getline(&line, &cap, fp)) > 0) {
			lineno++;
			for (int k = 0; k < nsecrets; k++) {
				if (memmem(line, (size_t)len, secrets[k].value,
					strlen(secrets[k].value)) == NULL)
					continue;
				if (found++ < 20)
					print_redacted(f, lineno, line, (size_t)len);
				break;
			}
		}
		if (fp != NULL)
			fclose(fp);
		free(path);
	}
	free(line);
	free(list);
	return found;
}

void
itest_env(const char *kv)
{
	note_secret(kv);
	if (IT.nextra < (int)BV_NELEM(IT.extra_env))
		snprintf(IT.extra_env[IT.nextra++], sizeof IT.extra_env[0], "%s", kv);
}

/* The environment every spawned process gets. */
static void
child_env(void)
{
	char *mig = xasprintf("%s/db/migrations", getenv("BV_TOP_SRCDIR"));
	setenv("BITSVAULT_LISTEN", IT.listen, 1);
	setenv("BITSVAULT_DATA_DIR", IT.data_dir, 1);
	setenv("BITSVAULT_DATABASE_URL", IT.db_url, 1);
	setenv("BITSVAULT_REDIS_URL", IT.redis_url, 1);
	setenv("BITSVAULT_ADMIN_TOKEN", IT_ADMIN, 1);
	setenv("BITSVAULT_WORKER_TOKEN", IT_WORKER, 1);
	setenv("BITSVAULT_USER_TOKENS", IT_USER, 1);
	setenv("BITSVAULT_API_URL", IT.url, 1);
	setenv("BITSVAULT_MIGRATIONS_DIR", mig, 1);
	setenv("BITSVAULT_LOG_LEVEL", "info", 1);
	setenv("BITSVAULT_JOB_LEASE", "4", 1);
	setenv("BITSVAULT_RECONCILE_INTERVAL", "1", 1);
	setenv("BITSVAULT_WORKER_HEARTBEAT", "1", 1);
	setenv("BITSVAULT_MAX_UPLOAD_SIZE", "32M", 1);
	for (int i = 0; i < IT.nextra; i++)
		putenv(IT.extra_env[i]);
	free(mig);
}

/* How much slower than a plain build the servers run: BITSVAULT_TEST_TIME_FACTOR, else 10
 * under a BITSVAULT_TEST_WRAPPER (valgrind), else 1. Start, stop and wait timeouts scale. */
int
itest_time_factor(void)
{
	const char *f = getenv("BITSVAULT_TEST_TIME_FACTOR");
	const char *w = getenv("BITSVAULT_TEST_WRAPPER");

	if (f != NULL && atoi(f) >= 1)
		return atoi(f) > 100 ? 100 : atoi(f);
	return w != NULL && *w != '\0' ? 10 : 1;
}

bool
itest_instrumented(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return true;
#else
	const char *w = getenv("BITSVAULT_TEST_WRAPPER");
	return w != NULL && *w != '\0';
#endif
}

/* fork + exec of a built binary with its output in logs/<log>.log. With
 * BITSVAULT_TEST_WRAPPER (words split on blanks, e.g. "valgrind --leak-check=full ...") the
 * binary runs under that command; BV_ITEST_PROC=<test>-<log> names the process for it
 * (valgrind's --log-file=...%q{BV_ITEST_PROC}...). */
static pid_t
spawn(const char *binary, const char *log, const char *arg)
{
	char *path = xasprintf("%s/%s", getenv("BV_TOP_BUILDDIR"), binary);
	char *logpath = xasprintf("%s/logs/%s.log", IT.dir, log);
	char *proc = xasprintf("%s-%s", IT.name, log);
	const char *wrapper = getenv("BITSVAULT_TEST_WRAPPER");
	char *words = xstrdup(wrapper != NULL ? wrapper : "");
	char *argv[40], *save = NULL;
	int argc = 0;

	for (char *w = strtok_r(words, " \t", &save); w != NULL && argc < 36;
	     w = strtok_r(NULL, " \t", &save))
		argv[argc++] = w;
	argv[argc++] = path;
	if (arg != NULL)
		argv[argc++] = (char *)arg;
	argv[argc] = NULL;

	/* BITSVAULT_TEST_LOG_DIR keeps the servers' output past the teardown (tests/sanitize.sh
	 * scans it: gcc's UBSan writes its reports to stderr only): the log lives there and
	 * logs/<log>.log links to it. */
	const char *keep = getenv("BITSVAULT_TEST_LOG_DIR");
	struct stat lst;
	if (keep != NULL && *keep != '\0' && lstat(logpath, &lst) != 0) {
		char *kept = xasprintf("%s/%s.log", keep, proc);
		if (symlink(kept, logpath) != 0)
			fprintf(stderr, "%s: symlink %s: %s\n", IT.name, logpath, strerror(errno));
		free(kept);
	}

	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		child_env();
		setenv("BV_ITEST_PROC", proc, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	free(path);
	free(logpath);
	free(proc);
	free(words);
	return pid;
}

void
itest_start_api(void)
{
	IT.api = spawn("api/bitsvault-api", "api", NULL);
	for (int i = 0; i < 300 * itest_time_factor(); i++) {
		struct itest_resp r;
		quiet_no_answer = true;
		itest_http(&r, "GET", "/status", NULL, NULL, 0, NULL);
		quiet_no_answer = false;
		long st = r.status;
		itest_resp_free(&r);
		if (st > 0)
			return;
		int wst;
		if (waitpid(IT.api, &wst, WNOHANG) == IT.api) {
			itest_sh("tail -n 30 logs/api.log >&2");
			ck_abort_msg("bitsvault-api exited at start");
		}
		usleep(50000);
	}
	itest_sh("tail -n 30 logs/api.log >&2");
	ck_abort_msg("bitsvault-api did not answer within %d s", 15 * itest_time_factor());
}

int
itest_start_worker(const char *name)
{
	int i = IT.nworkers++;
	char env[64];

	ck_assert_int_lt(i, (int)BV_NELEM(IT.workers));
	snprintf(IT.worker_names[i], sizeof IT.worker_names[i], "%s", name);
	snprintf(env, sizeof env, "BITSVAULT_WORKER_NAME=%s", name);
	itest_env(env);
	IT.workers[i] = spawn("worker/bitsvault-worker", name, NULL);
	IT.nextra--; /* the name was for this worker only */
	return i;
}

/* Waits for a child up to ms (times the time factor), then SIGKILLs it. */
static void
reap(pid_t pid, int ms)
{
	int st;
	ms *= itest_time_factor();
	for (int waited = 0; waited < ms; waited += 20) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

void
itest_stop_worker(int i, int sig)
{
	if (IT.workers[i] <= 0)
		return;
	kill(IT.workers[i], sig);
	reap(IT.workers[i], 20000);
	IT.workers[i] = 0;
}

void
itest_teardown(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	for (int i = 0; i < IT.nworkers; i++)
		if (IT.workers[i] > 0)
			kill(IT.workers[i], SIGTERM);
	if (IT.api > 0)
		kill(IT.api, SIGTERM);
	for (int i = 0; i < IT.nworkers; i++)
		if (IT.workers[i] > 0)
			reap(IT.workers[i], 10000);
	if (IT.api > 0)
		reap(IT.api, 10000);
	/* Every program is a check that secrets never reach the logs: its processes are
	 * gone, so their logs are whole. A hit fails the program and keeps the folder. */
	int leaks = IT.dir[0] != '\0' ? scan_logs_for_secrets() : 0;
	if (leaks > 0)
		fprintf(stderr,
		    "%s: FAIL: %d log line(s) hold a secret (above, redacted); kept %s\n", IT.name,
		    leaks, IT.dir);
	if (admin_db_url != NULL) {
		char *sql = xasprintf(
		    "DROP DATABASE IF EXISTS bvtest_%s_%d WITH (FORCE)", IT.name, (int)getpid());
		admin_sql(admin_db_url, sql);
		free(sql);
	}
	if (IT.dir[0] != '\0' && getenv("BITSVAULT_TEST_KEEP") == NULL && leaks == 0) {
		/* Logs go to the test's own log first, so a failure can be read in CI. */
		itest_sh("for f in logs/*.log; do echo \"--- $f\"; tail -n 40 \"$f\"; done >&2");
		itest_sh("rm -rf '%s'", IT.dir);
	}
	if (leaks > 0)
		exit(EXIT_FAILURE);
}

/* Collects a response body. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	buf_add(arg, data, size * nmemb);
	return size * nmemb;
}

/* A request got no HTTP answer at all (status 0): says why on stderr, curl's reason and
 * whether the API process is still there (and how it ended if not, without reaping it: a
 * test may wait for it), so that "upload: 0" in a failed check can be explained. A few
 * lines per program at most: some tests expect no answer (a killed API). */
static void
report_no_answer(const char *method, const char *path, CURLcode rc, const char *errbuf)
{
	static int reported;
	siginfo_t si;
	char state[160];

	if (quiet_no_answer || reported++ >= 10)
		return;
	memset(&si, 0, sizeof si);
	if (IT.api <= 0)
		snprintf(state, sizeof state, "no API started by the harness");
	else if (waitid(P_PID, (id_t)IT.api, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	    si.si_pid == IT.api)
		snprintf(state, sizeof state,
		    "the API (pid %d) has %s %d, not stopped by the harness (by the test itself, "
		    "or by a signal from outside)",
		    (int)IT.api,
		    si.si_code == CLD_EXITED ? "exited with status" : "been killed by signal",
		    si.si_status);
	else
		snprintf(state, sizeof state, "the API (pid %d) is running", (int)IT.api);
	fprintf(stderr, "%s: %s %s: no HTTP answer (curl: %s); %s\n", IT.name, method, path,
	    errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc), state);
}

/* Runs one request already set up on c. */
static void
perform(CURL *c, struct itest_resp *r, const char *method, const char *path, const char *token,
    const char *extra_header, struct curl_slist *hdrs)
{
	char *url = xasprintf("%s%s", IT.url, path);
	char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;

	memset(r, 0, sizeof *r);
	buf_init(&r->body);
	buf_init(&r->headers);
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	/* 120 s for a plain build; an instrumented server takes longer over big bodies. */
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L * itest_time_factor());
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	if (auth != NULL)
		hdrs = curl_slist_append(hdrs, auth);
	if (extra_header != NULL)
		hdrs = curl_slist_append(hdrs, extra_header);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	/* A server that answers early (413) may make curl report a send error: the status
	 * line it read is what the test checks. */
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status == 0)
		report_no_answer(method, path, rc, errbuf);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	/* Objects and arrays (a list of configuration files) are parsed; other bodies not. */
	if (r->body.len > 0 && (r->body.data[0] == '{' || r->body.data[0] == '['))
		r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
	free(url);
	free(auth);
}

void
itest_http(struct itest_resp *r, const char *method, const char *path, const char *token,
    const void *body, size_t body_len, const char *extra_header)
{
	CURL *c = curl_easy_init();
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	perform(c, r, method, path, token, extra_header, NULL);
}

/* Reads the upload from a FILE*. */
static size_t
on_read(char *data, size_t size, size_t nmemb, void *arg)
{
	return fread(data, size, nmemb, arg);
}

void
itest_http_file(
    struct itest_resp *r, const char *method, const char *path, const char *token, const char *file)
{
	char *p = file[0] == '/' ? xstrdup(file) : xasprintf("%s/%s", IT.dir, file);
	FILE *f = fopen(p, "rb");
	struct stat st;

	ck_assert_msg(f != NULL, "open %s", p);
	ck_assert_int_eq(fstat(fileno(f), &st), 0);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(c, CURLOPT_READDATA, f);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	perform(c, r, method, path, token, NULL, NULL);
	fclose(f);
	free(p);
}

void
itest_resp_free(struct itest_resp *r)
{
	buf_free(&r->body);
	buf_free(&r->headers);
	json_decref(r->json);
	r->json = NULL;
}

const char *
itest_header(const struct itest_resp *r, const char *name)
{
	static char value[512];
	size_t n = strlen(name);
	const char *p = r->headers.data;

	for (; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;
			while (*v == ' ')
				v++;
			size_t len = strcspn(v, "\r\n");
			snprintf(value, sizeof value, "%.*s", (int)len, v);
			return value;
		}
	}
	return NULL;
}

/* Formats a command to run in IT.dir. */
static char *
command(const char *fmt, va_list ap)
{
	char *cmd = xvasprintf(fmt, ap);
	/* In a subshell: a "&" in cmd must not leave the rest to run outside IT.dir. */
	char *full = xasprintf("cd '%s' && (%s\n)", IT.dir[0] ? IT.dir : "/tmp", cmd);
	free(cmd);
	return full;
}

int
itest_sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = command(fmt, ap);
	va_end(ap);
	int st = system(cmd);
	free(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

char *
itest_sh_out(const char *fmt, ...)
{
	va_list ap;
	struct buf b;
	char chunk[4096];
	size_t n;

	va_start(ap, fmt);
	char *cmd = command(fmt, ap);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	buf_init(&b);
	while (p != NULL && (n = fread(chunk, 1, sizeof chunk, p)) > 0)
		buf_add(&b, chunk, n);
	if (p != NULL)
		pclose(p);
	free(cmd);
	while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' '))
		b.data[--b.len] = '\0';
	return buf_steal(&b, NULL);
}

char *
itest_sql(const char *sql)
{
	PGconn *c = PQconnectdb(IT.db_url);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
	char *v = xstrdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	PQfinish(c);
	return v;
}

char *
itest_git_tree_id(const char *dir)
{
	char *id =
	    itest_sh_out("gd=$(mktemp -d) && git --git-dir=\"$gd\" init -q &&"
			 " git --git-dir=\"$gd\" --work-tree='%s' add -A &&"
			 " git --git-dir=\"$gd\" --work-tree='%s' write-tree; rm -rf \"$gd\"",
		dir, dir);
	ck_assert_msg(is_hex(id, 40), "git write-tree gave '%s'", id);
	return id;
}

char *
itest_make_tree(const char *name, size_t big_bytes)
{
	int rc = itest_sh("set -e; t=trees/%s; mkdir -p $t/src/lib/deep/er $t/docs $t/empty-dir;"
			  " printf 'hello\\n' > $t/README;"
			  " printf '#!/bin/sh\\necho hi\\n' > $t/run.sh; chmod 755 $t/run.sh;"
			  " : > $t/src/empty.txt;"
			  " printf 'int main(void) { return 0; }\\n' > $t/src/main.c;"
			  " printf '%%s\\n' '%s' > $t/src/lib/deep/er/name.txt;"
			  " printf 'a\\n' > $t/a-b; printf 'b\\n' > $t/a.c;"
			  " ln -s ../README $t/docs/readme-link;"
			  " ln -s src/lib $t/lib-link;"
			  " head -c %zu /dev/urandom > $t/src/lib/big.bin",
	    name, name, big_bytes);
	ck_assert_int_eq(rc, 0);
	char *dir = xasprintf("%s/trees/%s", IT.dir, name);
	char *id = itest_git_tree_id(dir);
	free(dir);
	return id;
}

json_t *
itest_wait_status(const char *path, int timeout_s)
{
	json_t *last = NULL;
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000 * itest_time_factor();

	while (now_ms() < end) {
		struct itest_resp r;
		itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
		ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body.data);
		json_decref(last);
		last = json_incref(r.json);
		const char *st = json_string_value(json_object_get(r.json, "status"));
		itest_resp_free(&r);
		if (st != NULL && (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0))
			break;
		usleep(50000);
	}
	return last;
}

json_t *
itest_wait_cook(const char *kind, const char *id, int timeout_s)
{
	char *path = xasprintf("/vault/%s/%s/status", kind, id);
	json_t *last = itest_wait_status(path, timeout_s);
	free(path);
	return last;
}

char *
itest_upload_tree(const char *name)
{
	struct itest_resp r;
	ck_assert_int_eq(itest_sh("tar cf %s.tar -C trees/%s .", name, name), 0);
	char *file = xasprintf("%s.tar", name);
	itest_http_file(&r, "POST", "/directories", IT_USER, file);
	ck_assert_msg(r.status == 201, "upload: %ld %s", r.status, r.body.data);
	char *id = xstrdup(json_string_value(json_object_get(r.json, "id")));
	itest_resp_free(&r);
	free(file);
	return id;
}

json_int_t
itest_cook(const char *id)
{
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s", id);
	itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
	ck_assert_msg(r.status == 201 || r.status == 200, "cook: %ld %s", r.status, r.body.data);
	json_int_t job = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	free(path);
	return job;
}

json_t *
itest_job(json_int_t job)
{
	struct itest_resp r;
	char *path = xasprintf("/jobs/%lld", (long long)job);
	itest_http(&r, "GET", path, IT_ADMIN, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "job: %ld %s", r.status, r.body.data);
	json_t *j = json_incref(r.json);
	itest_resp_free(&r);
	free(path);
	return j;
}

int
itest_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Fixed identities and dates: the same script makes the same ids on every run. */
#define ITEST_GIT_ENV                                                                               \
	"export GIT_AUTHOR_NAME='Ada Lovelace' GIT_AUTHOR_EMAIL=ada@example.org"                    \
	" GIT_COMMITTER_NAME='Charles Babbage' GIT_COMMITTER_EMAIL=charles@example.org"             \
	" GIT_AUTHOR_DATE='2020-01-02T03:04:05+0000' GIT_COMMITTER_DATE='2020-01-02T03:04:05+0000'" \
	" GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1;"

char *
itest_make_repo(const char *name)
{
	int rc = itest_sh(
	    "set -e; " ITEST_GIT_ENV " r=repos/%s; mkdir -p $r; cd $r; git init -q -b main .;"
	    " printf 'the repository %%s\\n' '%s' > README;"
	    " mkdir -p src/lib/deep; printf 'int repo_main(void) { return 1; }\\n' > src/main.c;"
	    " printf 'deep in %%s\\n' '%s' > src/lib/deep/leaf.txt;"
	    " printf '#!/bin/sh\\necho repo %%s\\n' '%s' > run.sh; chmod 755 run.sh;"
	    " ln -s README readme-link; git add -A;"
	    " git update-index --add --cacheinfo 160000,0123456789abcdef0123456789abcdef01234567,sub;"
	    " git commit -q -m 'first commit';"
	    " git checkout -q -b dev; printf 'on dev\\n' > dev.txt; git add dev.txt;"
	    " GIT_COMMITTER_DATE='2020-01-03T00:00:00+0000' git commit -q -m 'dev work';"
	    " git checkout -q main; printf 'the repository, changed\\n' > README; git add README;"
	    " GIT_COMMITTER_DATE='2020-01-04T00:00:00+0000' git commit -q -m 'main work';"
	    " GIT_COMMITTER_DATE='2020-01-05T00:00:00+0000' git merge -q --no-ff -m 'merge dev' dev;"
	    " git tag -a v1.0 -m 'release 1.0'; git tag light HEAD~1",
	    name, name, name, name);
	ck_assert_int_eq(rc, 0);
	return xasprintf("%s/repos/%s", IT.dir, name);
}

json_t *
itest_load(const char *url, int timeout_s)
{
	struct itest_resp r;
	json_t *body = json_pack("{s:s}", "url", url);
	char *text = json_dumps(body, JSON_COMPACT);

	itest_http(&r, "POST", "/loads", IT_USER, text, strlen(text), NULL);
	ck_assert_msg(r.status == 202, "load %s: %ld %s", url, r.status, r.body.data);
	char *path =
	    xasprintf("/loads/%lld", (long long)json_integer_value(json_object_get(r.json, "id")));
	itest_resp_free(&r);
	json_decref(body);
	free(text);
	json_t *last = itest_wait_status(path, timeout_s);
	free(path);
	return last;
}

void
itest_stop_api(void)
{
	if (IT.api <= 0)
		return;
	kill(IT.api, SIGTERM);
	reap(IT.api, 20000);
	IT.api = 0;
}

/* ---- multipart bodies and files of the test folder ----------------------------------- */

void
itest_mp_part(struct buf *b, const char *boundary, const char *name, const char *filename,
    const void *data, size_t len)
{
	buf_printf(b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary, name);
	if (filename != NULL)
		buf_printf(
		    b, "; filename=\"%s\"\r\nContent-Type: application/octet-stream", filename);
	buf_adds(b, "\r\n\r\n");
	buf_add(b, data, len);
	buf_adds(b, "\r\n");
}

void
itest_mp_end(struct buf *b, const char *boundary)
{
	buf_printf(b, "--%s--\r\n", boundary);
}

char *
itest_slurp(const char *name, size_t *len)
{
	char *path = xasprintf("%s/%s", IT.dir, name), *err = NULL;
	char *data = read_file(path, len, &err);

	ck_assert_msg(data != NULL, "%s", err);
	free(path);
	return data;
}

void
itest_save(const struct itest_resp *r, const char *name)
{
	char *path = xasprintf("%s/%s", IT.dir, name), *err = NULL;

	ck_assert_msg(
	    write_file_atomic(path, r->body.data, r->body.len, 0644, &err) == 0, "%s", err);
	free(path);
}
