/* itest_load.c: loading git repositories (POST /loads, GET /loads/{id}, the worker's load
 * job): every object git lists is stored once with its git id, the snapshot's branches
 * equal git's refs, a second load stores nothing, a new version stores exactly the new
 * objects, git:// works like file://, and bad inputs are refused or fail readably; a
 * URL's secrets never reach a log or a row; private addresses are refused unless allowed;
 * the ref parameter loads a branch, a tag, any ref or HEAD; progress is reported; odd ref
 * names are skipped (or kept, escaped); a stalled server and a too large file fail the
 * load with their reason. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/itest.h"

/* A repository with one 200,000-byte file. */
#define ITEST_FAT_REPO                                                                             \
	"export GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org GIT_COMMITTER_NAME=Ada"       \
	" GIT_COMMITTER_EMAIL=ada@example.org GIT_CONFIG_GLOBAL=/dev/null;"                        \
	" mkdir -p repos/fat; cd repos/fat; git init -q -b main .;"                                \
	" head -c 200000 /dev/urandom > big.bin; git add big.bin; git commit -q -m fat"

static char *repo; /* IT.dir/repos/r1 */
static char *repo_url; /* file://... */
static int daemon_port;

/* POST /loads with a JSON body text; returns the status and (when 202) the id. */
static long
post_load(const char *body, const char *token, json_int_t *id, char **error)
{
	struct itest_resp r;
	long st;

	itest_http(&r, "POST", "/loads", token, body, body ? strlen(body) : 0, NULL);
	st = r.status;
	if (id != NULL)
		*id = json_integer_value(json_object_get(r.json, "id"));
	if (error != NULL)
		*error = xstrdup(json_string_value(json_object_get(r.json, "error")) ?: "");
	if (st == 202) {
		const char *loc = itest_header(&r, "Location");
		ck_assert_msg(loc != NULL && strncmp(loc, "/loads/", 7) == 0, "Location: %s",
		    loc ? loc : "(none)");
	}
	itest_resp_free(&r);
	return st;
}

/* Polls GET /loads/{id} until final. */
static json_t *
wait_load(json_int_t id, int timeout_s)
{
	char *path = xasprintf("/loads/%lld", (long long)id);
	json_t *last = itest_wait_status(path, timeout_s);
	free(path);
	return last;
}

/* GET path's status. */
static long
get_status(const char *path)
{
	struct itest_resp r;
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	long st = r.status;
	ck_assert_msg(st != 404 || json_is_string(json_object_get(r.json, "error")),
	    "404 without an error: %s", r.body.data);
	itest_resp_free(&r);
	return st;
}

static const char *
status_of(const json_t *doc)
{
	return json_string_value(json_object_get(doc, "status"));
}

static json_int_t
stat_of(const json_t *doc, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(doc, "stats"), key));
}

/* The objects of a type among git's listing `objs` (a shell command printing ids):
 * how many there are, and how many of them the table holds. */
static void
count_type(const char *objs, const char *type, const char *table, const char *col, long *in_git,
    long *in_db)
{
	char *ids =
	    itest_sh_out("cd '%s' && (%s) | sort -u | git cat-file --batch-check='%%(objecttype) "
			 "%%(objectname)' | awk '$1==\"%s\"{print $2}' | paste -sd, -",
		repo, objs, type);
	*in_git = 0;
	*in_db = 0;
	if (*ids != '\0') {
		*in_git = 1;
		for (const char *p = ids; *p; p++)
			if (*p == ',')
				(*in_git)++;
		char *sql = xasprintf("SELECT count(*) FROM %s WHERE %s IN (SELECT decode(x, 'hex')"
				      " FROM unnest(string_to_array('%s', ',')) AS x)",
		    table, col, ids);
		char *n = itest_sql(sql);
		*in_db = atol(n);
		free(n);
		free(sql);
	}
	free(ids);
}

/* Every object `objs` lists is stored; checks the counts against the load's stats when
 * stats is non-NULL (then the listing must be exactly the new objects). */
static void
check_objects(const char *objs, const json_t *stats_doc)
{
	static const struct {
		const char *type, *table, *col, *stat;
	} kinds[] = {
	    {"blob", "contents", "sha1_git", "contents"},
	    {"tree", "directories", "id", "directories"},
	    {"commit", "revisions", "id", "revisions"},
	    {"tag", "releases", "id", "releases"},
	};
	for (size_t i = 0; i < BV_NELEM(kinds); i++) {
		long in_git, in_db;
		count_type(objs, kinds[i].type, kinds[i].table, kinds[i].col, &in_git, &in_db);
		ck_assert_msg(in_git == in_db, "%s: git lists %ld, the archive holds %ld",
		    kinds[i].type, in_git, in_db);
		if (stats_doc != NULL)
			ck_assert_msg(stat_of(stats_doc, kinds[i].stat) == in_git,
			    "%s: %ld new in git, stats say %lld", kinds[i].type, in_git,
			    (long long)stat_of(stats_doc, kinds[i].stat));
	}
}

/* git's listing of every object the refs reach, annotated tags included. */
#define ALL_OBJECTS                                                                                \
	"git rev-list --objects --all | cut -c1-40; git for-each-ref "                             \
	"--format='%%(objectname)' refs/tags"

/* The document's branches equal git's refs, plus HEAD = main. */
static void
check_branches(const json_t *doc)
{
	json_t *br = json_object_get(doc, "branches");
	char *refs = itest_sh_out(
	    "cd '%s' && git for-each-ref --format='%%(refname) %%(objectname)' refs/heads refs/tags",
	    repo);
	char *head = itest_sh_out("cd '%s' && git rev-parse refs/heads/main", repo);
	size_t n = 0;

	ck_assert_msg(json_is_object(br), "no branches");
	for (char *line = strtok(refs, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char *sp = strchr(line, ' ');
		ck_assert_ptr_nonnull(sp);
		*sp = '\0';
		const char *got = json_string_value(json_object_get(br, line));
		ck_assert_msg(got != NULL && strcmp(got, sp + 1) == 0, "branch %s: %s, git %s",
		    line, got ? got : "(none)", sp + 1);
		n++;
	}
	ck_assert_str_eq(json_string_value(json_object_get(br, "HEAD")), head);
	ck_assert_uint_eq(json_object_size(br), n + 1);
	free(refs);
	free(head);
}

/* The stored raw body of a revision or release equals git's. */
static void
check_raw(const char *table, const char *type, const char *id)
{
	char *sql = xasprintf(
	    "SELECT encode(raw, 'hex') FROM %s WHERE id = decode('%s', 'hex')", table, id);
	char *db = itest_sql(sql);
	char *git = itest_sh_out(
	    "cd '%s' && git cat-file %s %s | od -An -v -tx1 | tr -d ' \\n'", repo, type, id);
	ck_assert_msg(*git != '\0' && strcmp(db, git) == 0, "%s %s: raw differs", type, id);
	free(sql);
	free(db);
	free(git);
}

/* Refused before any job exists; runs against an API without load_allow_file. */
START_TEST(test_bad_inputs)
{
	static const struct {
		const char *body;
		const char *want; /* in the error */
	} bad[] = {
	    {NULL, "JSON object"},
	    {"[1]", "JSON object"},
	    {"{}", "url"},
	    {"{\"url\": 5}", "string"},
	    {"{\"url\": \"ssh://example.org/x.git\"}", "https://"},
	    {"{\"url\": \"/abs/path\"}", "https://"},
	    {"{\"url\": \"example.org:path/x.git\"}", "https://"},
	    {"{\"url\": \"ftp://example.org/x.git\"}", "https://"},
	    {"{\"url\": \"https://exa mple.org/x.git\"}", "spaces"},
	    {"{\"url\": \"file:///tmp/x\"}", "load_allow_file"},
	    {"{\"url\": \"https://user:secret@example.org/x.git\"}", "password"},
	    {"{\"url\": \"https://tok3nUser@example.org/x.git\"}", "user name"},
	    {"{\"url\": \"https://example.org/x.git?token=tok3nQuery\"}", "query"},
	    {"{\"url\": \"git://example.org/x.git?tok3nGit\"}", "query"},
	    {"{\"url\": \"https://example.org/x.git#tok3nFrag\"}", "fragment"},
	    {"{\"url\": \"https://example.org%2fx/y.git\"}", "percent"},
	    {"{\"url\": \"https://example.org\\\\x/y.git\"}", "backslash"},
	    {"{\"url\": \"https://example.org/x.git\", \"ref\": \"a..b\"}", "ref"},
	    {"{\"url\": \"https://example.org/x.git\", \"ref\": \"bad ref\"}", "ref"},
	    {"{\"url\": \"https://example.org/x.git\", \"ref\": \"x.lock\"}", "ref"},
	    {"{\"url\": \"https://example.org/x.git\", \"ref\": \"dir/\"}", "ref"},
	    {"{\"url\": \"https://example.org/x.git\", \"ref\": \"\"}", "ref"},
	    {"{\"url\": \"https://example.org/x.git\", \"ref\": 3}", "ref"},
	};
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		char *err = NULL;
		long st = post_load(bad[i].body, IT_USER, NULL, &err);
		ck_assert_msg(st == 400, "%s: %ld", bad[i].body ? bad[i].body : "(no body)", st);
		ck_assert_msg(strstr(err, bad[i].want) != NULL, "%s: error '%s' lacks '%s'",
		    bad[i].body ? bad[i].body : "(no body)", err, bad[i].want);
		free(err);
	}
	ck_assert_int_eq(
	    post_load("{\"url\": \"https://example.org/x.git\"}", NULL, NULL, NULL), 401);
	char *sec = itest_sql("SELECT count(*) FROM jobs WHERE params::text LIKE '%secret%'"
			      " OR params::text LIKE '%tok3n%'");
	ck_assert_str_eq(sec, "0");
	free(sec);
	/* Nor in any log line. */
	ck_assert_msg(itest_sh("grep -Rl -e tok3n -e secret@ logs >&2") != 0,
	    "a refused URL's secret is in the logs");

	ck_assert_int_eq(get_status("/loads/999999"), 404);
	ck_assert_int_eq(get_status("/loads/abc"), 404);
	ck_assert_int_eq(get_status("/loads/0"), 404);
	char *tree = itest_make_tree("t", 1000);
	char *id = itest_upload_tree("t");
	json_int_t cook = itest_cook(id);
	char *path = xasprintf("/loads/%lld", (long long)cook);
	ck_assert_int_eq(get_status(path), 404);
	free(path);
	free(id);
	free(tree);
}
END_TEST

/* A file:// load stores every object with git's ids and a snapshot of git's refs. */
START_TEST(test_load_file)
{
	json_t *doc = itest_load(repo_url, 60);

	ck_assert_msg(
	    strcmp(status_of(doc), "done") == 0, "load: %s", json_dumps(doc, JSON_COMPACT));
	ck_assert_str_eq(json_string_value(json_object_get(doc, "url")), repo_url);
	ck_assert(json_is_null(json_object_get(doc, "ref")));
	ck_assert(json_is_string(json_object_get(doc, "finished_at")));
	check_objects(ALL_OBJECTS, doc);
	ck_assert_int_eq(stat_of(doc, "skipped"), 0);
	check_branches(doc);

	char *snp = xstrdup(json_string_value(json_object_get(doc, "snapshot")));
	ck_assert(snp != NULL && is_hex(snp, 40));
	char *swhid = xasprintf("swh:1:snp:%s", snp);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "swhid")), swhid);
	char *sql = xasprintf("SELECT count(*) FROM snapshots WHERE id = decode('%s', 'hex')", snp);
	char *n = itest_sql(sql);
	ck_assert_str_eq(n, "1");
	free(n);
	free(sql);
	free(swhid);

	/* Raw bodies, byte for byte: the merge, a root commit, the annotated tag. */
	char *merge = itest_sh_out("cd '%s' && git rev-parse main", repo);
	char *root = itest_sh_out("cd '%s' && git rev-list --max-parents=0 main", repo);
	char *tag = itest_sh_out("cd '%s' && git rev-parse refs/tags/v1.0", repo);
	check_raw("revisions", "commit", merge);
	check_raw("revisions", "commit", root);
	check_raw("releases", "tag", tag);
	free(merge);
	free(root);
	free(tag);

	/* The blobs' bytes are in the store (the executable's, by its sha256). */
	char *sha =
	    itest_sh_out("cd '%s' && git cat-file blob main:run.sh | sha256sum | cut -c1-64", repo);
	char *blob = xasprintf("%s/store/objects/%.2s/%.2s/%s", IT.data_dir, sha, sha + 2, sha);
	ck_assert_msg(access(blob, R_OK) == 0, "%s missing", blob);
	free(blob);
	free(sha);
	json_decref(doc);

	/* Again: nothing new, the same snapshot. */
	json_t *again = itest_load(repo_url, 60);
	ck_assert_str_eq(status_of(again), "done");
	ck_assert_str_eq(json_string_value(json_object_get(again, "snapshot")), snp);
	ck_assert_int_eq(stat_of(again, "contents"), 0);
	ck_assert_int_eq(stat_of(again, "directories"), 0);
	ck_assert_int_eq(stat_of(again, "revisions"), 0);
	ck_assert_int_eq(stat_of(again, "releases"), 0);
	ck_assert_int_eq(stat_of(again, "bytes"), 0);
	ck_assert_int_gt(stat_of(again, "skipped"), 0);
	json_decref(again);
	free(snp);
}
END_TEST

/* A new version (a new file, a changed one, a new tag) stores exactly what changed. */
START_TEST(test_load_new_version)
{
	char *old = itest_sh_out(
	    "cd '%s' && git for-each-ref --format='^%%(objectname)' | paste -sd' ' -", repo);
	int rc =
	    itest_sh("set -e; cd '%s'; export GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org"
		     " GIT_COMMITTER_NAME=Ada GIT_COMMITTER_EMAIL=ada@example.org"
		     " GIT_AUTHOR_DATE='2021-01-01T00:00:00+0000'"
		     " GIT_COMMITTER_DATE='2021-01-01T00:00:00+0000' GIT_CONFIG_GLOBAL=/dev/null;"
		     " printf 'a new file in version two\\n' > src/lib/new.txt;"
		     " printf 'int repo_main(void) { return 2; }\\n' > src/main.c;"
		     " git add -A; git commit -q -m 'version two';"
		     " printf 'more\\n' >> src/lib/new.txt; git commit -q -am 'version two, more';"
		     " git tag -a v2.0 -m 'release 2.0'",
		repo);
	ck_assert_int_eq(rc, 0);
	json_t *doc = itest_load(repo_url, 60);
	ck_assert_msg(
	    strcmp(status_of(doc), "done") == 0, "load: %s", json_dumps(doc, JSON_COMPACT));
	char *objs = xasprintf("git rev-list --objects --all %s | cut -c1-40;"
			       " git rev-parse refs/tags/v2.0",
	    old);
	check_objects(objs, doc);
	ck_assert_int_gt(stat_of(doc, "revisions"), 0);
	ck_assert_int_eq(stat_of(doc, "releases"), 1);
	check_objects(ALL_OBJECTS, NULL);
	check_branches(doc);
	free(objs);
	free(old);
	json_decref(doc);
}
END_TEST

/* git:// through git daemon gives the same snapshot and stores nothing new. */
START_TEST(test_load_git_daemon)
{
	char *file_snp = NULL;
	json_t *doc = itest_load(repo_url, 60);
	ck_assert_str_eq(status_of(doc), "done");
	file_snp = xstrdup(json_string_value(json_object_get(doc, "snapshot")));
	json_decref(doc);

	daemon_port = itest_free_port();
	ck_assert_int_eq(
	    itest_sh("git daemon --export-all --base-path='%s/repos' --listen=127.0.0.1"
		     " --port=%d --reuseaddr --detach --pid-file=git-daemon.pid"
		     " --informative-errors",
		IT.dir, daemon_port),
	    0);
	for (int i = 0; i < 100 &&
	     itest_sh("git ls-remote git://127.0.0.1:%d/r1 >/dev/null 2>&1", daemon_port) != 0;
	     i++)
		usleep(50000);
	char *url = xasprintf("git://127.0.0.1:%d/r1", daemon_port);
	doc = itest_load(url, 60);
	ck_assert_msg(
	    strcmp(status_of(doc), "done") == 0, "load: %s", json_dumps(doc, JSON_COMPACT));
	ck_assert_str_eq(json_string_value(json_object_get(doc, "snapshot")), file_snp);
	ck_assert_int_eq(stat_of(doc, "contents"), 0);
	ck_assert_int_eq(stat_of(doc, "revisions"), 0);
	check_branches(doc);
	json_decref(doc);

	/* One ref only: a short name is a branch, the snapshot has just it. */
	json_int_t id;
	char *body = xasprintf("{\"url\": \"%s\", \"ref\": \"dev\"}", url);
	ck_assert_int_eq(post_load(body, IT_USER, &id, NULL), 202);
	doc = wait_load(id, 60);
	ck_assert_str_eq(status_of(doc), "done");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "ref")), "dev");
	json_t *br = json_object_get(doc, "branches");
	char *dev = itest_sh_out("cd '%s' && git rev-parse refs/heads/dev", repo);
	ck_assert_str_eq(json_string_value(json_object_get(br, "refs/heads/dev")), dev);
	ck_assert_uint_eq(json_object_size(br), 1);
	free(dev);
	free(body);
	json_decref(doc);

	/* A ref git's daemon does not have fails, naming it. */
	body = xasprintf("{\"url\": \"%s\", \"ref\": \"no-such-branch\"}", url);
	ck_assert_int_eq(post_load(body, IT_USER, &id, NULL), 202);
	doc = wait_load(id, 60);
	ck_assert_str_eq(status_of(doc), "failed");
	const char *e = json_string_value(json_object_get(doc, "error"));
	ck_assert_msg(e != NULL && strstr(e, "ref 'no-such-branch' not found") != NULL, "%s", e);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "progress_message")), e);
	free(body);
	json_decref(doc);

	itest_sh("kill $(cat git-daemon.pid) && rm -f git-daemon.pid");
	free(url);
	free(file_snp);
}
END_TEST

/* http:// through git's smart HTTP (git http-backend as a CGI under busybox httpd) gives
 * the same snapshot as file://. */
START_TEST(test_load_http)
{
	json_t *doc = itest_load(repo_url, 60);
	ck_assert_str_eq(status_of(doc), "done");
	char *file_snp = xstrdup(json_string_value(json_object_get(doc, "snapshot")));
	json_decref(doc);

	int port = itest_free_port();
	ck_assert_int_eq(
	    itest_sh(
		"set -e; mkdir -p www/cgi-bin; printf '#!/bin/sh\\nexport GIT_PROJECT_ROOT=%s/repos"
		" GIT_HTTP_EXPORT_ALL=1\\nexec git http-backend\\n' > www/cgi-bin/git;"
		" chmod 755 www/cgi-bin/git;"
		" busybox httpd -f -p 127.0.0.1:%d -h www & echo $! > httpd.pid",
		IT.dir, port),
	    0);
	for (int i = 0; i < 100 &&
	     itest_sh("git ls-remote http://127.0.0.1:%d/cgi-bin/git/r1 >/dev/null 2>&1", port) !=
		 0;
	     i++)
		usleep(50000);
	char *url = xasprintf("http://127.0.0.1:%d/cgi-bin/git/r1", port);
	doc = itest_load(url, 60);
	ck_assert_msg(
	    strcmp(status_of(doc), "done") == 0, "load: %s", json_dumps(doc, JSON_COMPACT));
	ck_assert_str_eq(json_string_value(json_object_get(doc, "snapshot")), file_snp);
	check_branches(doc);
	json_decref(doc);
	itest_sh("kill $(cat httpd.pid) && rm -f httpd.pid");
	free(url);
	free(file_snp);
}
END_TEST

/* Unreachable hosts, missing folders and refs fail with a readable reason. */
START_TEST(test_load_failures)
{
	char *url = xasprintf("http://127.0.0.1:%d/x.git", itest_free_port());
	json_t *doc = itest_load(url, 60);
	ck_assert_str_eq(status_of(doc), "failed");
	const char *e = json_string_value(json_object_get(doc, "error"));
	ck_assert_msg(e != NULL && strstr(e, url) != NULL, "reason: %s", e ? e : "(none)");
	json_decref(doc);
	free(url);

	url = xasprintf("file://%s/repos/does-not-exist", IT.dir);
	doc = itest_load(url, 60);
	ck_assert_str_eq(status_of(doc), "failed");
	e = json_string_value(json_object_get(doc, "error"));
	ck_assert_msg(
	    e != NULL && strstr(e, "does-not-exist") != NULL, "reason: %s", e ? e : "(none)");
	json_decref(doc);
	free(url);

	json_int_t id;
	char *body = xasprintf("{\"url\": \"%s\", \"ref\": \"refs/heads/nope\"}", repo_url);
	ck_assert_int_eq(post_load(body, IT_USER, &id, NULL), 202);
	doc = wait_load(id, 60);
	ck_assert_str_eq(status_of(doc), "failed");
	e = json_string_value(json_object_get(doc, "error"));
	ck_assert_msg(e != NULL && strstr(e, "ref 'refs/heads/nope' not found") != NULL, "%s", e);
	json_decref(doc);
	free(body);

	/* The temporary repositories are gone. */
	char *left = itest_sh_out("ls '%s/tmp' 2>/dev/null | grep '^load-'", IT.data_dir);
	ck_assert_msg(*left == '\0', "left in <data_dir>/tmp: %s", left);
	free(left);
}
END_TEST

/* Loads the failed document of url, whose error must hold want. */
static void
load_fails_with(const char *url, const char *want)
{
	json_t *doc = itest_load(url, 60);
	const char *e = json_string_value(json_object_get(doc, "error"));

	ck_assert_msg(strcmp(status_of(doc), "failed") == 0, "%s: %s", url, status_of(doc));
	ck_assert_msg(e != NULL && strstr(e, want) != NULL, "%s: error '%s' lacks '%s'", url,
	    e ? e : "(none)", want);
	json_decref(doc);
}

/* With load_allow_private off (the default), hosts on loopback and private networks are
 * refused before any connection, naming the address class, whatever form the address
 * takes; a worker with the defaults runs these. */
START_TEST(test_private_refused)
{
	int w = itest_start_worker("w0");
	int port = itest_free_port();
	char *url;

	url = xasprintf("http://127.0.0.1:%d/x.git", port);
	load_fails_with(url, "loopback, 127.0.0.0/8");
	free(url);
	url = xasprintf("http://localhost:%d/x.git", port);
	load_fails_with(url, "loopback");
	free(url);
	url = xasprintf("https://[::ffff:127.0.0.1]:%d/x.git", port);
	load_fails_with(url, "loopback, 127.0.0.0/8");
	free(url);
	load_fails_with("git://10.1.2.3/x.git", "private, 10.0.0.0/8");
	load_fails_with("http://192.168.1.1/x.git", "private, 192.168.0.0/16");
	load_fails_with("https://169.254.169.254/latest", "link-local");
	load_fails_with("http://[fd00::1]/x.git", "unique local");
	load_fails_with("http://0.0.0.0/x.git", "unspecified");
	itest_stop_worker(w, SIGTERM);
}
END_TEST

/* Bad inputs first, against an API that refuses file://; then the API again with it, and
 * private addresses allowed (git daemon and the stalled server are on 127.0.0.1). */
START_TEST(test_restart_with_file)
{
	itest_stop_api();
	itest_env("BITSVAULT_LOAD_ALLOW_FILE=true");
	itest_env("BITSVAULT_LOAD_ALLOW_PRIVATE=true");
	itest_start_api();
	itest_start_worker("w1");
	repo = itest_make_repo("r1");
	repo_url = xasprintf("file://%s", repo);
	/* A ref outside branches and tags: not in a full load, loadable by name. */
	ck_assert_int_eq(itest_sh("cd '%s' && git update-ref refs/custom/x main~1", repo), 0);
}
END_TEST

/* POST {"url", "ref"} and waits: the final document. */
static json_t *
load_ref(const char *url, const char *ref)
{
	json_int_t id;
	json_t *body = json_pack("{s:s, s:s}", "url", url, "ref", ref);
	char *text = json_dumps(body, JSON_COMPACT);

	ck_assert_int_eq(post_load(text, IT_USER, &id, NULL), 202);
	free(text);
	json_decref(body);
	return wait_load(id, 60);
}

/* The ref parameter: a branch, a tag, a ref outside both (kept under its full name), and
 * HEAD (the remote's default branch, with the HEAD alias). */
START_TEST(test_load_refs)
{
	static const struct {
		const char *ref;
		const char *branch; /* the one branch expected */
		bool head; /* HEAD alias too */
	} cases[] = {
	    {"dev", "refs/heads/dev", false},
	    {"v1.0", "refs/tags/v1.0", false},
	    {"refs/tags/light", "refs/tags/light", false},
	    {"refs/custom/x", "refs/custom/x", false},
	    {"HEAD", "refs/heads/main", true},
	    {"main", "refs/heads/main", true},
	};
	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		json_t *doc = load_ref(repo_url, cases[i].ref);
		ck_assert_msg(strcmp(status_of(doc), "done") == 0, "ref %s: %s", cases[i].ref,
		    json_dumps(doc, JSON_COMPACT));
		json_t *br = json_object_get(doc, "branches");
		char *want = itest_sh_out("cd '%s' && git rev-parse %s", repo, cases[i].branch);
		const char *got = json_string_value(json_object_get(br, cases[i].branch));
		ck_assert_msg(got != NULL && strcmp(got, want) == 0, "ref %s: %s is %s, git %s",
		    cases[i].ref, cases[i].branch, got ? got : "(none)", want);
		ck_assert_uint_eq(json_object_size(br), cases[i].head ? 2 : 1);
		if (cases[i].head) {
			char *main = itest_sh_out("cd '%s' && git rev-parse main", repo);
			ck_assert_str_eq(json_string_value(json_object_get(br, "HEAD")), main);
			free(main);
		}
		free(want);
		json_decref(doc);
	}
}
END_TEST

/* The progress messages of a load with a few thousand files: "Fetched ..." then
 * "Loaded ..." show while it runs (polled). */
START_TEST(test_progress)
{
	ck_assert_int_eq(
	    itest_sh("set -e; r=repos/many; mkdir -p $r; cd $r; git init -q -b main .;"
		     " awk 'BEGIN { n = 6000; for (i = 0; i < n; i++) { d = \"file \" i;"
		     " printf \"blob\\nmark :%%d\\ndata %%d\\n%%s\\n\", i + 1, length(d), d }"
		     " printf \"commit refs/heads/main\\ncommitter A <a@example.org> 1600000000"
		     " +0000\\ndata 5\\nmany\\n\";"
		     " for (i = 0; i < n; i++) printf \"M 100644 :%%d d%%d/f%%d.txt\\n\", i + 1,"
		     " i %% 60, i }' | git fast-import --quiet"),
	    0);
	char *url = xasprintf("file://%s/repos/many", IT.dir);
	char *body = xasprintf("{\"url\": \"%s\"}", url);
	json_int_t id;
	ck_assert_int_eq(post_load(body, IT_USER, &id, NULL), 202);
	char *path = xasprintf("/loads/%lld", (long long)id);
	bool fetched = false, loaded = false;
	const char *st = NULL;
	uint64_t end = now_ms() + 120000;
	json_t *doc = NULL;
	while (now_ms() < end) {
		struct itest_resp r;
		itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
		ck_assert_int_eq(r.status, 200);
		json_decref(doc);
		doc = json_incref(r.json);
		itest_resp_free(&r);
		const char *m = json_string_value(json_object_get(doc, "progress_message"));
		st = status_of(doc);
		if (m != NULL && strncmp(m, "Fetched ", 8) == 0)
			fetched = true;
		if (m != NULL && strncmp(m, "Loaded ", 7) == 0 && strstr(m, " objects") != NULL)
			loaded = true;
		if (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0)
			break;
		usleep(10000);
	}
	ck_assert_msg(strcmp(st, "done") == 0, "load: %s", json_dumps(doc, JSON_COMPACT));
	ck_assert_msg(fetched, "no \"Fetched\" message seen");
	ck_assert_msg(loaded, "no \"Loaded\" message seen");
	ck_assert_int_eq(stat_of(doc, "contents"), 6000);
	json_decref(doc);
	free(path);
	free(body);
	free(url);
}
END_TEST

/* Odd ref names: one of ~1,000 bytes is skipped (counted and named in the result) and
 * does not fail the load; one that is not UTF-8 is kept, its key escaped. */
START_TEST(test_odd_refs)
{
	ck_assert_int_eq(itest_sh("set -e; git clone -q --bare '%s' repos/odd; cd repos/odd;"
				  " c=$(printf '%%0250d' 0 | tr 0 c);"
				  " git update-ref refs/heads/long/$c/$c/$c/$c main;"
				  " git update-ref \"$(printf 'refs/heads/caf\\351')\" dev",
			     repo),
	    0);
	char *url = xasprintf("file://%s/repos/odd", IT.dir);
	json_t *body = json_pack("{s:s}", "url", url);
	char *text = json_dumps(body, JSON_COMPACT);
	json_int_t id;
	ck_assert_int_eq(post_load(text, IT_USER, &id, NULL), 202);
	json_t *doc = wait_load(id, 60);
	ck_assert_msg(
	    strcmp(status_of(doc), "done") == 0, "load: %s", json_dumps(doc, JSON_COMPACT));
	ck_assert_int_eq(stat_of(doc, "skipped_refs"), 1);
	json_t *br = json_object_get(doc, "branches");
	char *dev = itest_sh_out("cd '%s' && git rev-parse dev", repo);
	const char *cafe = json_string_value(json_object_get(br, "refs/heads/caf\\xe9"));
	ck_assert_msg(
	    cafe != NULL && strcmp(cafe, dev) == 0, "branches: %s", json_dumps(br, JSON_COMPACT));
	json_t *job = itest_job(id);
	json_t *sk = json_object_get(json_object_get(job, "result"), "skipped_refs");
	ck_assert_msg(json_array_size(sk) == 1, "skipped_refs: %s", json_dumps(sk, JSON_COMPACT));
	const char *name = json_string_value(json_object_get(json_array_get(sk, 0), "name"));
	ck_assert_msg(name != NULL && strncmp(name, "refs/heads/long/ccc", 19) == 0, "%s", name);
	json_decref(job);
	json_decref(doc);
	free(dev);
	free(text);
	json_decref(body);
	free(url);
}
END_TEST

/* A listener that accepts connections and never answers: a stalled server. */
static int stall_fd = -1;
static volatile int stall_stop;

/* The stalled server's thread: accepts, holds every connection open, says nothing. */
static void *
stall_main(void *arg)
{
	int held[64], nheld = 0;

	(void)arg;
	while (!stall_stop) {
		struct pollfd p = {.fd = stall_fd, .events = POLLIN};
		if (poll(&p, 1, 100) > 0) {
			int c = accept(stall_fd, NULL, NULL);
			if (c >= 0 && nheld < (int)BV_NELEM(held))
				held[nheld++] = c;
			else if (c >= 0)
				close(c);
		}
	}
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	return NULL;
}

/* A worker with load_timeout 3 s and max_load_blob 64K: at start it removes stale temp
 * folders only; a stalled server fails the load in time with the timeout's reason and
 * leaves no temp folder; a file over the blob limit fails naming it. */
START_TEST(test_stall_and_limits)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	pthread_t th;

	itest_stop_worker(1, SIGTERM); /* w1 */
	itest_env("BITSVAULT_LOAD_TIMEOUT=3");
	itest_env("BITSVAULT_MAX_LOAD_BLOB=64K");
	/* A crashed worker's leftovers: a starting worker removes those over an hour old. */
	ck_assert_int_eq(itest_sh("set -e; cd '%s/tmp'; mkdir -p load-9-old/objects load-9-new;"
				  " touch load-9-old/objects/x gitbare-old gitbare-new;"
				  " touch -d '2 hours ago' load-9-old gitbare-old",
			     IT.data_dir),
	    0);
	itest_start_worker("w2");
	for (int i = 0; i < 100 * itest_time_factor() &&
	     itest_sh("test ! -e '%s/tmp/load-9-old'", IT.data_dir) != 0;
	     i++)
		usleep(50000);
	char *kept = itest_sh_out("cd '%s/tmp' && ls | grep -e '^load-9' -e '^gitbare-' | paste "
				  "-sd' ' -",
	    IT.data_dir);
	ck_assert_str_eq(kept, "gitbare-new load-9-new");
	free(kept);
	ck_assert_int_eq(
	    itest_sh("rm -rf '%s/tmp/load-9-new' '%s/tmp/gitbare-new'", IT.data_dir, IT.data_dir),
	    0);

	stall_fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(stall_fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(stall_fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(stall_fd, 16), 0);
	ck_assert_int_eq(getsockname(stall_fd, (struct sockaddr *)&sa, &len), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, stall_main, NULL), 0);

	char *url = xasprintf("http://127.0.0.1:%d/x.git", ntohs(sa.sin_port));
	uint64_t t0 = now_ms();
	json_t *doc = itest_load(url, 30);
	uint64_t took = now_ms() - t0;
	const char *e = json_string_value(json_object_get(doc, "error"));
	ck_assert_msg(
	    strcmp(status_of(doc), "failed") == 0, "stalled: %s", json_dumps(doc, JSON_COMPACT));
	ck_assert_msg(e != NULL && strstr(e, "longer than load_timeout (3 s)") != NULL, "%s", e);
	ck_assert_msg(took < 10000 * (uint64_t)itest_time_factor(), "the stalled load took %llu ms",
	    (unsigned long long)took);
	char *left = itest_sh_out("ls '%s/tmp' 2>/dev/null | grep '^load-'", IT.data_dir);
	ck_assert_msg(*left == '\0', "left in <data_dir>/tmp: %s", left);
	free(left);
	json_decref(doc);
	free(url);
	stall_stop = 1;
	pthread_join(th, NULL);
	close(stall_fd);

	ck_assert_int_eq(itest_sh("set -e; " ITEST_FAT_REPO), 0);
	char *fat = xasprintf("file://%s/repos/fat", IT.dir);
	char *blob = itest_sh_out("cd repos/fat && git rev-parse main:big.bin");
	char *want = xasprintf("swh:1:cnt:%s is 200000 bytes, more than max_load_blob", blob);
	load_fails_with(fat, want);
	free(want);
	free(blob);
	free(fat);
}
END_TEST

int
main(void)
{
	itest_init("load", 7);
	itest_start_api();

	Suite *s = suite_create("load");
	TCase *tc = tcase_create("load");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_bad_inputs);
	tcase_add_test(tc, test_private_refused);
	tcase_add_test(tc, test_restart_with_file);
	tcase_add_test(tc, test_load_file);
	tcase_add_test(tc, test_load_new_version);
	tcase_add_test(tc, test_load_git_daemon);
	tcase_add_test(tc, test_load_http);
	tcase_add_test(tc, test_load_failures);
	tcase_add_test(tc, test_load_refs);
	tcase_add_test(tc, test_odd_refs);
	tcase_add_test(tc, test_progress);
	tcase_add_test(tc, test_stall_and_limits);
	suite_add_tcase(s, tc);
	int rc = itest_run(s);
	/* A failed assertion skips the test's own kill: git daemon must not outlive us. */
	itest_sh("test -f git-daemon.pid && kill $(cat git-daemon.pid) 2>/dev/null; true");
	itest_sh("test -f httpd.pid && kill $(cat httpd.pid) 2>/dev/null; true");
	itest_teardown();
	free(repo);
	free(repo_url);
	return rc;
}
