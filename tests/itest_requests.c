/* itest_requests.c: the worker's side of Cachito's requests (worker/request*.c) through
 * the real API: a fixture npm registry (node, tests/data/requests/registry.js) serving
 * tarballs made with `npm pack`, fixture git repositories loaded over file://. A request
 * is created with POST /api/v1/requests and polled the way atomic-reactor does; its
 * bundle is downloaded (Digest checked), extracted, given its configuration files and
 * environment variables, and `npm ci --offline` with no reachable registry installs the
 * same packages as an online install. Dependencies are downloaded once across requests,
 * and each failure (integrity mismatch, missing tarball, unreachable registry, bad
 * lockfile, unknown ref, a path leaving the repository) fails the request readably with
 * no bundle served. The generic package manager: artifacts.lock.yaml's files served by
 * the same fixture server, bundled byte for byte, downloaded once by checksum, with npm
 * in one request; a mismatch, a 404, bad YAML, and a loopback URL with
 * load_allow_private off fail. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/itest.h"

static int reg_port;
static char *reg_url;

/* Starts the fixture registry (again) on reg_port; false when it does not come up. */
static bool
registry_start(void)
{
	itest_sh("rm -f reg.log.ready");
	if (itest_sh("node %s/tests/data/requests/registry.js www %d reg.log "
		     ">logs/registry.log 2>&1 & echo $! > reg.pid",
		getenv("BV_TOP_SRCDIR"), reg_port) != 0)
		return false;
	for (int i = 0; i < 400 && itest_sh("test -e reg.log.ready") != 0; i++)
		usleep(25000);
	if (itest_sh("test -e reg.log.ready") != 0) {
		itest_sh("cat logs/registry.log >&2");
		return false;
	}
	return true;
}

static void
registry_stop(void)
{
	itest_sh("kill $(cat reg.pid) 2>/dev/null; sleep 0.2; rm -f reg.pid");
}

/* Tarball GETs the registry has answered so far. */
static int
tarball_gets(void)
{
	char *n = itest_sh_out("grep -c '/-/' reg.log || true");
	int v = atoi(n);
	free(n);
	return v;
}

/* A fixture commit (repos/<name>.sha). */
static char *
sha(const char *name)
{
	return itest_sh_out("cat repos/%s.sha", name);
}

/* POST /api/v1/requests with pkg_managers pms (a JSON list's inside: "\"npm\""); returns
 * the status, *id when 201, *error when 400. */
static long
post_request_pm(const char *repo, const char *ref, const char *pms, const char *extra,
    json_int_t *id, char **error)
{
	char *body = xasprintf("{\"repo\": \"file://%s/repos/%s\", \"ref\": \"%s\", "
			       "\"pkg_managers\": [%s]%s%s}",
	    IT.dir, repo, ref, pms, extra ? ", " : "", extra ? extra : "");
	struct itest_resp r;
	itest_http(&r, "POST", "/api/v1/requests", IT_USER, body, strlen(body), NULL);
	long st = r.status;
	if (id != NULL)
		*id = json_integer_value(json_object_get(r.json, "id"));
	if (error != NULL)
		*error = xstrdup(json_string_value(json_object_get(r.json, "error")) ?: "");
	ck_assert_msg(st == 201 || st == 400, "POST %s: %ld %s", body, st, r.body.data);
	if (st == 201)
		ck_assert_str_eq(
		    json_string_value(json_object_get(r.json, "state")), "in_progress");
	itest_resp_free(&r);
	free(body);
	return st;
}

/* POST /api/v1/requests for npm. */
static long
post_request(const char *repo, const char *ref, const char *extra, json_int_t *id, char **error)
{
	return post_request_pm(repo, ref, "\"npm\"", extra, id, error);
}

/* GET /api/v1/requests/{id} every 300 ms until complete, failed or stale (atomic-reactor
 * polls the same fields: state, state_reason, updated). */
static json_t *
wait_request(json_int_t id, int timeout_s)
{
	char *path = xasprintf("/api/v1/requests/%lld", (long long)id);
	json_t *doc = NULL;

	for (int i = 0; i < timeout_s * 10 / 3; i++) {
		struct itest_resp r;
		itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
		ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body.data);
		json_decref(doc);
		doc = json_incref(r.json);
		itest_resp_free(&r);
		const char *st = json_string_value(json_object_get(doc, "state"));
		ck_assert_ptr_nonnull(st);
		ck_assert_ptr_nonnull(json_object_get(doc, "updated"));
		if (strcmp(st, "in_progress") != 0)
			break;
		usleep(300000);
	}
	free(path);
	return doc;
}

/* A request (pkg_managers pms) to the end; asserts its state. Returns the document
 * (caller decrefs). */
static json_t *
run_request_pm(const char *repo, const char *ref, const char *pms, const char *extra,
    const char *want, json_int_t *id)
{
	ck_assert_int_eq(post_request_pm(repo, ref, pms, extra, id, NULL), 201);
	json_t *doc = wait_request(*id, 90);
	const char *st = json_string_value(json_object_get(doc, "state"));
	if (strcmp(st, want) != 0) {
		itest_sh("tail -n 40 logs/worker-*.log >&2");
		ck_abort_msg("request %lld is %s (%s), not %s", (long long)*id, st,
		    json_string_value(json_object_get(doc, "state_reason")), want);
	}
	return doc;
}

/* An npm request to the end. */
static json_t *
run_request(const char *repo, const char *ref, const char *extra, const char *want, json_int_t *id)
{
	return run_request_pm(repo, ref, "\"npm\"", extra, want, id);
}

/* Downloads the bundle into <dir>/bundle.tar.gz (Digest checked) and extracts it into
 * <dir>. */
static void
fetch_bundle_only(json_int_t id, const char *dir)
{
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld/download", (long long)id);

	itest_sh("rm -rf %s && mkdir -p %s", dir, dir);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "download: %ld %s", r.status, r.body.data);
	const char *cd = itest_header(&r, "Content-Disposition");
	char *want_cd = xasprintf("attachment; filename=cachito-%lld.tar.gz", (long long)id);
	ck_assert_msg(cd != NULL && strcmp(cd, want_cd) == 0, "Content-Disposition: %s", cd);
	free(want_cd);
	char *file = xasprintf("%s/%s/bundle.tar.gz", IT.dir, dir);
	char *werr = NULL;
	ck_assert_msg(
	    write_file_atomic(file, r.body.data, r.body.len, 0644, &werr) == 0, "%s", werr);
	char *digest = xstrdup(itest_header(&r, "Digest") ?: "");
	itest_resp_free(&r);
	char *mine =
	    itest_sh_out("printf 'sha-256=%%s' $(openssl dgst -sha256 -binary %s | base64)", file);
	ck_assert_str_eq(digest, mine);
	free(mine);
	free(digest);
	ck_assert_int_eq(itest_sh("tar -xzf %s -C %s", file, dir), 0);
	free(file);
	free(path);
}

/* fetch_bundle_only, then writes the configuration files and checks npm's environment
 * variables. */
static void
fetch_bundle(json_int_t id, const char *dir)
{
	struct itest_resp r;
	char *path;

	fetch_bundle_only(id, dir);

	/* Configuration files, as atomic-reactor writes them. */
	path = xasprintf("/api/v1/requests/%lld/configuration-files", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	/* itest parses objects only: the list is read here. */
	json_t *list = json_loadb(r.body.data, r.body.len, 0, NULL);
	ck_assert_msg(json_is_array(list), "configuration files: %s", r.body.data);
	size_t i;
	json_t *f;
	json_array_foreach(list, i, f)
	{
		const char *p = json_string_value(json_object_get(f, "path"));
		ck_assert_str_eq(json_string_value(json_object_get(f, "type")), "base64");
		ck_assert_msg(p != NULL && strncmp(p, "app/", 4) == 0, "config path %s", p);
		ck_assert_int_eq(itest_sh("printf %%s '%s' | base64 -d > %s/%s",
				     json_string_value(json_object_get(f, "content")), dir, p),
		    0);
	}
	ck_assert_msg(json_array_size(list) >= 1, "no configuration files");
	json_decref(list);
	itest_resp_free(&r);
	free(path);

	/* Cachito's npm environment variables, literal. */
	path = xasprintf("/api/v1/requests/%lld/environment-variables", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	const char *names[] = {"CHROMEDRIVER_SKIP_DOWNLOAD", "CYPRESS_INSTALL_BINARY",
	    "GECKODRIVER_SKIP_DOWNLOAD", "SKIP_SASS_BINARY_DOWNLOAD_FOR_CI"};
	for (size_t k = 0; k < BV_NELEM(names); k++) {
		json_t *v = json_object_get(r.json, names[k]);
		ck_assert_msg(v != NULL, "no %s in %s", names[k], r.body.data);
		ck_assert_str_eq(json_string_value(json_object_get(v, "kind")), "literal");
	}
	itest_resp_free(&r);
	free(path);
}

/* `npm ci` in <dir>, offline (no registry reachable, a fresh cache) or online; returns
 * what it installed (lsmods.js). */
static char *
npm_ci(const char *dir, bool offline)
{
	itest_sh("rm -rf cache-ci");
	int rc = itest_sh("cd %s && HOME=%s/home npm_config_cache=%s/cache-ci "
			  "npm_config_registry=%s npm_config_audit=false "
			  "npm_config_update_notifier=false npm ci %s >%s/logs/npm-ci.log 2>&1",
	    dir, IT.dir, IT.dir, offline ? "http://127.0.0.1:1/" : reg_url,
	    offline ? "--offline" : "", IT.dir);
	if (rc != 0)
		itest_sh("cat logs/npm-ci.log >&2");
	ck_assert_msg(rc == 0, "npm ci %s in %s failed", offline ? "--offline" : "", dir);
	return itest_sh_out("cd %s && node %s/lsmods.js", dir, IT.dir);
}

/* The worker, started inside a test (Check's asserts report to the running test). */
static int worker_index = -1;
static void
ensure_worker(void)
{
	if (worker_index < 0)
		worker_index = itest_start_worker("w1");
}

/* The whole path: request, bundle, offline install equal to the online one. */
START_TEST(test_request_npm)
{
	ensure_worker();
	char *ref = sha("app1");
	json_int_t id;
	json_t *doc = run_request("app1", ref, NULL, "complete", &id);

	/* Packages data: the app and its four locked packages. */
	json_t *pkgs = json_object_get(doc, "packages");
	ck_assert_msg(json_array_size(pkgs) == 1, "%s", json_dumps(doc, JSON_COMPACT));
	json_t *p0 = json_array_get(pkgs, 0);
	ck_assert_str_eq(json_string_value(json_object_get(p0, "type")), "npm");
	ck_assert_str_eq(json_string_value(json_object_get(p0, "name")), "app1");
	ck_assert_uint_eq(json_array_size(json_object_get(p0, "dependencies")), 4);
	json_decref(doc);

	fetch_bundle(id, "x1");
	ck_assert_int_eq(itest_sh("test -f x1/app/package.json && test -f x1/app/index.js"
				  " && test -f x1/deps/npm/fix-a/fix-a-1.0.0.tgz"
				  " && test -f x1/deps/npm/fix-b/fix-b-1.5.0.tgz"
				  " && test -f x1/deps/npm/fix-b/fix-b-2.1.0.tgz"
				  " && test -f x1/deps/npm/@fixscope/c/fixscope-c-0.3.0.tgz"
				  " && test -f x1/app/.npmrc && ! test -e x1/app/node_modules"),
	    0);
	ck_assert_int_eq(itest_sh("grep -q 'file:../deps/npm/@fixscope/c/fixscope-c-0.3.0.tgz'"
				  " x1/app/package-lock.json"),
	    0);
	char *offline = npm_ci("x1/app", true);

	/* The same lockfile online, from the registry. */
	itest_sh("rm -rf online && mkdir online && cp repos/app1/package.json "
		 "repos/app1/package-lock.json online/");
	char *online = npm_ci("online", false);
	ck_assert_str_eq(offline, online);
	ck_assert_msg(strstr(offline, "node_modules/fix-a/node_modules/fix-b fix-b@1.5.0") != NULL,
	    "%s", offline);
	ck_assert_msg(
	    strstr(offline, "node_modules/@fixscope/c @fixscope/c@0.3.0") != NULL, "%s", offline);
	free(offline);
	free(online);

	/* The request's log. */
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld/logs", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.body.data, "Fetching the application source") != NULL &&
		strstr(r.body.data, "@fixscope/c@0.3.0") != NULL &&
		strstr(r.body.data, "Fetching npm dependencies 4/4") != NULL,
	    "log: %s", r.body.data);
	itest_resp_free(&r);
	free(path);
	free(ref);
}
END_TEST

/* Sources and dependencies are stored once: the same commit again fetches no tarball
 * and stores no object; another app sharing fix-b downloads only fix-d. */
START_TEST(test_request_dedup)
{
	ensure_worker();
	char *ref = sha("app1");
	json_int_t id;

	json_decref(run_request("app1", ref, NULL, "complete", &id));
	int gets = tarball_gets();
	char *contents = itest_sql("SELECT count(*) FROM contents");
	char *dirs = itest_sql("SELECT count(*) FROM directories");
	json_decref(run_request("app1", ref, NULL, "complete", &id));
	ck_assert_int_eq(tarball_gets(), gets);
	char *contents2 = itest_sql("SELECT count(*) FROM contents");
	char *dirs2 = itest_sql("SELECT count(*) FROM directories");
	ck_assert_str_eq(contents, contents2);
	ck_assert_str_eq(dirs, dirs2);

	/* Same bundle bytes for the same request. */
	char *ref2 = sha("app2");
	json_decref(run_request(
	    "app2", ref2, "\"packages\": {\"npm\": [{\"path\": \"web\"}]}", "complete", &id));
	ck_assert_int_eq(tarball_gets(), gets + 1);
	ck_assert_int_eq(itest_sh("grep -c '/-/' reg.log >/dev/null && "
				  "test $(grep -c '/fix-d/-/fix-d-1.0.0.tgz' reg.log) = 1"),
	    0);
	fetch_bundle(id, "x2");
	ck_assert_int_eq(
	    itest_sh(
		"grep -q 'file:../../deps/npm/fix-d/fix-d-1.0.0.tgz' x2/app/web/package-lock.json"),
	    0);
	char *offline = npm_ci("x2/app/web", true);
	ck_assert_msg(strstr(offline, "node_modules/fix-d fix-d@1.0.0") != NULL, "%s", offline);
	free(offline);
	free(contents);
	free(contents2);
	free(dirs);
	free(dirs2);
	free(ref);
	free(ref2);
}
END_TEST

/* git-submodule: the submodule's tree at its path in app/, reported as a package. */
START_TEST(test_request_submodule)
{
	ensure_worker();
	char *ref = sha("super"), *lib = sha("lib");
	json_int_t id;
	char *body = xasprintf("{\"repo\": \"file://%s/repos/super\", \"ref\": \"%s\", "
			       "\"pkg_managers\": [\"git-submodule\"]}",
	    IT.dir, ref);
	struct itest_resp r;
	itest_http(&r, "POST", "/api/v1/requests", IT_USER, body, strlen(body), NULL);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body.data);
	id = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	json_t *doc = wait_request(id, 60);
	ck_assert_msg(strcmp(json_string_value(json_object_get(doc, "state")), "complete") == 0,
	    "%s", json_string_value(json_object_get(doc, "state_reason")));
	json_t *p0 = json_array_get(json_object_get(doc, "packages"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(p0, "type")), "git-submodule");
	const char *v = json_string_value(json_object_get(p0, "version"));
	ck_assert_msg(v != NULL && strstr(v, lib) != NULL && strstr(v, "/repos/lib#") != NULL,
	    "version %s", v);
	json_decref(doc);
	char *path = xasprintf("/api/v1/requests/%lld/download", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	char *werr = NULL;
	char *file = xasprintf("%s/super.tar.gz", IT.dir);
	ck_assert_msg(
	    write_file_atomic(file, r.body.data, r.body.len, 0644, &werr) == 0, "%s", werr);
	itest_resp_free(&r);
	char *list = itest_sh_out("tar -tzf super.tar.gz | tr '\\n' ' '");
	ck_assert_msg(strstr(list, "app/vendor/lib/LIB.txt") != NULL &&
		strstr(list, "app/README") != NULL && strstr(list, "deps/") != NULL,
	    "bundle: %s", list);
	free(list);
	free(file);
	free(path);
	free(body);
	free(ref);
	free(lib);
}
END_TEST

/* A failed request: its reason, origin, and no bundle. */
static void
check_failed(json_int_t id, json_t *doc, const char *reason_part, const char *origin)
{
	const char *reason = json_string_value(json_object_get(doc, "state_reason"));
	ck_assert_msg(reason != NULL && strstr(reason, reason_part) != NULL,
	    "request %lld: reason \"%s\" lacks \"%s\"", (long long)id, reason, reason_part);
	const char *o = json_string_value(json_object_get(doc, "error_origin"));
	ck_assert_msg(o != NULL && strcmp(o, origin) == 0, "request %lld: origin %s, not %s",
	    (long long)id, o, origin);
	ck_assert_ptr_nonnull(json_string_value(json_object_get(doc, "error_type")));
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld/download", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 400);
	itest_resp_free(&r);
	free(path);
}

/* Each failure ends the request with a readable reason. */
START_TEST(test_request_failures)
{
	ensure_worker();
	static const struct {
		const char *commit; /* repos/<commit>.sha, or NULL for an unknown ref */
		const char *reason;
		const char *origin;
	} cases[] = {
	    {"mismatch", "does not match its integrity", "client"},
	    {"missing", "fix-z@9.9.9", "server"},
	    {"badjson", "is not valid JSON", "client"},
	    {NULL,
		"Failed on checking out the Git repository. Please verify the supplied "
		"reference of",
		"client"},
	};
	json_int_t id;

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		char *ref = cases[i].commit ? sha(cases[i].commit)
					    : xstrdup("0123456789abcdef0123456789abcdef01234567");
		json_t *doc = run_request("bad", ref, NULL, "failed", &id);
		check_failed(id, doc, cases[i].reason, cases[i].origin);
		json_decref(doc);
		free(ref);
	}
	/* Nothing of the mismatched download was recorded. */
	char *good = itest_sh_out("grep '^fix-d 1.0.0 ' pk/list | cut -d' ' -f3");
	char *sql = xasprintf(
	    "SELECT count(*) FROM artifacts WHERE name = 'fix-d' AND integrity <> '%s'", good);
	char *n = itest_sql(sql);
	ck_assert_str_eq(n, "0");
	free(n);
	free(sql);
	free(good);

	/* The registry down: a network failure naming the package, after the retries. */
	registry_stop();
	char *ref = sha("unreachable");
	json_t *doc = run_request("bad", ref, NULL, "failed", &id);
	check_failed(id, doc, "Failed to download the npm package fix-e@1.0.0", "server");
	json_decref(doc);
	free(ref);
	ck_assert(registry_start());

	/* A path leaving the repository is refused by the API. */
	char *err = NULL;
	ref = sha("app1");
	ck_assert_int_eq(post_request("app1", ref,
			     "\"packages\": {\"npm\": [{\"path\": \"../x\"}]}", NULL, &err),
	    400);
	ck_assert_msg(*err != '\0', "no error message");
	free(err);
	/* A path that does not exist fails in the worker. */
	doc = run_request(
	    "app1", ref, "\"packages\": {\"npm\": [{\"path\": \"nope\"}]}", "failed", &id);
	check_failed(id, doc, "does not exist in the repository", "client");
	json_decref(doc);
	free(ref);
}
END_TEST

/* Configuration files land on regular files only: a symlink (in or out of the tree) or a
 * folder at a target path fails the request, flag or not. */
START_TEST(test_request_config_targets)
{
	ensure_worker();
	static const struct {
		const char *commit, *extra, *reason;
	} cases[] = {
	    {"cfglink", NULL, "The file \".npmrc\" must be a regular file"},
	    {"cfgout", NULL, "The destination of '.npmrc' is outside of cloned repository"},
	    {"cfgout", "\"flags\": [\"remove-unsafe-symlinks\"]",
		"The file \".npmrc\" must be a regular file"},
	    {"cfgdir", NULL, "The file \"npm-shrinkwrap.json\" must be a regular file"},
	};
	json_int_t id;

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		char *ref = sha(cases[i].commit);
		json_t *doc = run_request("unsafe", ref, cases[i].extra, "failed", &id);
		check_failed(id, doc, cases[i].reason, "client");
		ck_assert_str_eq(
		    json_string_value(json_object_get(doc, "error_type")), "InvalidRepoStructure");
		json_decref(doc);
		free(ref);
	}
}
END_TEST

/* Symlinks leaving the repository: refused (Cachito's sentence), or left out of app/
 * with remove-unsafe-symlinks (and said in the log); safe ones are kept. */
START_TEST(test_request_unsafe_symlinks)
{
	ensure_worker();
	json_int_t id;
	char *ref = sha("outabs");
	json_t *doc = run_request_pm("unsafe", ref, "", NULL, "failed", &id);
	check_failed(
	    id, doc, "The destination of 'passwd' is outside of cloned repository", "client");
	json_decref(doc);
	free(ref);
	ref = sha("outchain");
	doc = run_request_pm("unsafe", ref, "", NULL, "failed", &id);
	check_failed(
	    id, doc, "The destination of 'a/b/x' is outside of cloned repository", "client");
	json_decref(doc);

	doc = run_request_pm(
	    "unsafe", ref, "", "\"flags\": [\"remove-unsafe-symlinks\"]", "complete", &id);
	json_decref(doc);
	fetch_bundle_only(id, "unsafe");
	ck_assert_int_eq(itest_sh("test ! -e unsafe/app/passwd && test ! -L unsafe/app/passwd "
				  "&& test ! -L unsafe/app/a/b/x"),
	    0);
	ck_assert_int_eq(itest_sh("test \"$(readlink unsafe/app/ok)\" = README && "
				  "test \"$(readlink unsafe/app/a/b/up)\" = ../../README && "
				  "test -L unsafe/app/a/l && test -L unsafe/app/a/b/l && "
				  "test \"$(cat unsafe/app/a/b/up)\" = hello"),
	    0);
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld/logs", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.body.data, "'passwd' (/etc/passwd) is outside") != NULL &&
		strstr(r.body.data, "'a/b/x' (l/l/../etc) is outside") != NULL &&
		strstr(r.body.data, "left out of the bundle") != NULL,
	    "log: %s", r.body.data);
	itest_resp_free(&r);
	free(path);
	free(ref);

	/* A path git refuses to check out (".GIT/config" would replace app/.git's config):
	 * the request fails, with the flag or without. */
	ref = sha("dotgit");
	doc = run_request_pm("dotgit", ref, "", NULL, "failed", &id);
	check_failed(id, doc, "git refuses to check out: '.GIT'", "client");
	json_decref(doc);
	doc = run_request_pm("dotgit", ref, "", "\"flags\": [\"include-git-dir\"]", "failed", &id);
	check_failed(id, doc, "git refuses to check out: '.GIT'", "client");
	json_decref(doc);
	free(ref);
}
END_TEST

/* include-git-dir: app/.git holds the commit (detached), its history and the tags of
 * that history, git checks it whole and sees the checkout as clean; without the flag
 * there is no app/.git. Two requests for the same commit give the same bundle bytes. */
START_TEST(test_request_git_dir)
{
	ensure_worker();
	json_int_t id, id2, id3;
	char *ref = sha("tagged");
	json_t *doc = run_request_pm("tagged", ref, "\"git-submodule\"",
	    "\"flags\": [\"include-git-dir\"]", "complete", &id);
	json_decref(doc);
	fetch_bundle_only(id, "gitdir");
	char *head = itest_sh_out("git -C gitdir/app rev-parse HEAD");
	ck_assert_str_eq(head, ref);
	free(head);
	/* Detached, as Cachito's checkout of a commit. */
	ck_assert_int_ne(itest_sh("git -C gitdir/app symbolic-ref -q HEAD >/dev/null"), 0);
	ck_assert_int_eq(itest_sh("git -C gitdir/app fsck --strict --no-dangling >&2"), 0);
	char *st = itest_sh_out("git -C gitdir/app status --porcelain --ignore-submodules=none");
	ck_assert_msg(strcmp(st, "") == 0, "git status: %s", st);
	free(st);
	char *n = itest_sh_out("git -C gitdir/app rev-list --count HEAD");
	ck_assert_str_eq(n, "3");
	free(n);
	char *tags = itest_sh_out("git -C gitdir/app tag | paste -sd, -");
	ck_assert_str_eq(tags, "v1,v2");
	free(tags);
	char *d = itest_sh_out("git -C gitdir/app describe");
	ck_assert_msg(strncmp(d, "v1-2-g", 6) == 0, "describe: %s", d);
	free(d);
	d = itest_sh_out("git -C gitdir/app describe --tags");
	ck_assert_msg(strncmp(d, "v2-1-g", 6) == 0, "describe --tags: %s", d);
	free(d);
	char *url = itest_sh_out("git -C gitdir/app config remote.origin.url");
	char *want = xasprintf("file://%s/repos/tagged", IT.dir);
	ck_assert_str_eq(url, want);
	free(url);
	free(want);
	/* The submodule's files are there (git-submodule) and git sees them as its own. */
	ck_assert_int_eq(itest_sh("test \"$(cat gitdir/app/vendor/lib/LIB.txt)\" = 'the library' "
				  "&& test -x gitdir/app/run.sh && test -L gitdir/app/link"),
	    0);
	ck_assert_int_eq(
	    itest_sh("test \"$(git -C gitdir/app ls-files -s vendor/lib | cut -c1-6)\" "
		     "= 160000"),
	    0);

	/* Reproducible. */
	doc = run_request_pm("tagged", ref, "\"git-submodule\"", "\"flags\": [\"include-git-dir\"]",
	    "complete", &id2);
	json_decref(doc);
	fetch_bundle_only(id2, "gitdir2");
	ck_assert_int_eq(itest_sh("cmp -s gitdir/bundle.tar.gz gitdir2/bundle.tar.gz"), 0);

	/* Without the flag: no .git. */
	doc = run_request_pm("tagged", ref, "", NULL, "complete", &id3);
	json_decref(doc);
	fetch_bundle_only(id3, "nogit");
	ck_assert_int_eq(itest_sh("test ! -e nogit/app/.git && test -f nogit/app/README"), 0);
	ck_assert_int_eq(
	    itest_sh("tar -tzf nogit/bundle.tar.gz | grep -q '\\.git/' && exit 1 || exit 0"), 0);
	free(ref);
}
END_TEST

/* GETs of the generic fixtures the server has answered so far. */
static int
generic_gets(void)
{
	char *n = itest_sh_out("grep -c '^/generic/' reg.log || true");
	int v = atoi(n);
	free(n);
	return v;
}

/* The dependency named name of a request document's first package of type type. */
static json_t *
dep_of(json_t *doc, const char *type, const char *name)
{
	size_t i, j;
	json_t *p, *d;

	json_array_foreach(json_object_get(doc, "packages"), i, p)
	{
		if (strcmp(json_string_value(json_object_get(p, "type")), type) != 0)
			continue;
		json_array_foreach(json_object_get(p, "dependencies"), j, d)
		{
			if (strcmp(json_string_value(json_object_get(d, "name")), name) == 0)
				return d;
		}
	}
	return NULL;
}

/* generic: artifacts.lock.yaml's files downloaded, checked, bundled byte for byte;
 * the same bytes again (same request, or another name and URL with the same checksum)
 * are not downloaded again. */
START_TEST(test_request_generic)
{
	ensure_worker();
	char *ref = sha("gen");
	json_int_t id;
	int gets0 = generic_gets();
	json_t *doc = run_request_pm("gen", ref, "\"generic\"", NULL, "complete", &id);

	json_t *p0 = json_array_get(json_object_get(doc, "packages"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(p0, "type")), "generic");
	ck_assert_str_eq(json_string_value(json_object_get(p0, "name")), "gen");
	ck_assert_str_eq(json_string_value(json_object_get(p0, "version")), ref);
	ck_assert_uint_eq(json_array_size(json_object_get(p0, "dependencies")), 2);
	json_t *d = dep_of(doc, "generic", "renamed.txt");
	ck_assert_ptr_nonnull(d);
	char *url = xasprintf("%sgeneric/two.txt", reg_url);
	ck_assert_str_eq(json_string_value(json_object_get(d, "version")), url);
	char *sum = itest_sh_out("echo sha256:$(sha256sum www/generic/two.txt | cut -d' ' -f1)");
	ck_assert_str_eq(json_string_value(json_object_get(d, "checksum")), sum);
	free(sum);
	free(url);
	json_decref(doc);
	ck_assert_int_eq(generic_gets(), gets0 + 2);

	fetch_bundle_only(id, "g1");
	ck_assert_int_eq(itest_sh("cmp g1/deps/generic/one.bin www/generic/one.bin && "
				  "cmp g1/deps/generic/renamed.txt www/generic/two.txt && "
				  "test -f g1/app/artifacts.lock.yaml && "
				  "test $(ls g1/deps/generic | wc -l) = 2"),
	    0);

	/* The content manifest's purl for a generic file. */
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld/content-manifest", (long long)id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.body.data, "pkg:generic/one.bin?download_url=") != NULL &&
		strstr(r.body.data, "checksum=sha256:") != NULL,
	    "%s", r.body.data);
	itest_resp_free(&r);
	free(path);

	/* Again: nothing downloaded. */
	json_decref(run_request_pm("gen", ref, "\"generic\"", NULL, "complete", &id));
	ck_assert_int_eq(generic_gets(), gets0 + 2);
	/* one.bin's bytes under another URL and name: from the store. */
	char *ref2 = sha("gencopy");
	json_decref(run_request_pm("gen", ref2, "\"generic\"", NULL, "complete", &id));
	ck_assert_int_eq(generic_gets(), gets0 + 2);
	fetch_bundle_only(id, "g2");
	ck_assert_int_eq(itest_sh("cmp g2/deps/generic/copy.bin www/generic/one.bin"), 0);
	free(ref2);
	free(ref);
}
END_TEST

/* npm and generic in one request: both packages, both deps/ folders, generic under a
 * packages path. */
START_TEST(test_request_npm_generic)
{
	ensure_worker();
	char *ref = sha("both");
	json_int_t id;
	json_t *doc = run_request_pm("both", ref, "\"npm\", \"generic\"",
	    "\"packages\": {\"generic\": [{\"path\": \"assets\"}]}", "complete", &id);

	ck_assert_uint_eq(json_array_size(json_object_get(doc, "packages")), 2);
	ck_assert_ptr_nonnull(dep_of(doc, "npm", "fix-d"));
	ck_assert_ptr_nonnull(dep_of(doc, "generic", "two.txt"));
	json_t *p1 = json_array_get(json_object_get(doc, "packages"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(p1, "path")), "assets");
	json_decref(doc);
	fetch_bundle(id, "g3");
	ck_assert_int_eq(itest_sh("cmp g3/deps/generic/two.txt www/generic/two.txt && "
				  "test -f g3/deps/npm/fix-d/fix-d-1.0.0.tgz"),
	    0);
	char *offline = npm_ci("g3/app", true);
	ck_assert_msg(strstr(offline, "node_modules/fix-d fix-d@1.0.0") != NULL, "%s", offline);
	free(offline);
	free(ref);
}
END_TEST

/* generic failures: readable reasons, the right origin, no bundle, nothing stored under
 * a wrong checksum. */
START_TEST(test_request_generic_failures)
{
	ensure_worker();
	static const struct {
		const char *commit;
		const char *reason;
		const char *origin;
	} cases[] = {
	    {"genmis", "does not match its checksum in the lockfile", "client"},
	    {"gen404", "HTTP 404 (not found)", "server"},
	    {"genyaml", "artifacts.lock.yaml (line 3): not valid YAML", "client"},
	    {"app1", "The artifacts.lock.yaml file must be present", "client"},
	};
	json_int_t id;

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		char *ref = sha(cases[i].commit);
		json_t *doc = run_request_pm(cases[i].commit[0] == 'a' ? "app1" : "gen", ref,
		    "\"generic\"", NULL, "failed", &id);
		check_failed(id, doc, cases[i].reason, cases[i].origin);
		json_decref(doc);
		free(ref);
	}
	char *bad = itest_sh_out("echo sha256:$(sha256sum notwo | cut -d' ' -f1)");
	char *sql = xasprintf("SELECT count(*) FROM artifacts WHERE integrity = '%s'", bad);
	char *n = itest_sql(sql);
	ck_assert_str_eq(n, "0");
	free(n);
	free(sql);
	free(bad);
}
END_TEST

/* With load_allow_private off (another worker), a loopback URL is refused before any
 * connection. */
START_TEST(test_request_generic_private)
{
	ensure_worker();
	itest_stop_worker(worker_index, SIGTERM);
	itest_env("BITSVAULT_LOAD_ALLOW_PRIVATE=false");
	int w = itest_start_worker("w2");
	IT.nextra--; /* the override was for w2 only */
	int gets = generic_gets();
	char *ref = sha("gen");
	json_int_t id;
	json_t *doc = run_request_pm("gen", ref, "\"generic\"", NULL, "failed", &id);
	check_failed(id, doc, "a non-public address", "client");
	ck_assert_int_eq(generic_gets(), gets);
	json_decref(doc);
	free(ref);
	itest_stop_worker(w, SIGTERM);
	worker_index = itest_start_worker("w3");
}
END_TEST

int
main(void)
{
	itest_init("requests", 11);
	if (itest_sh("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
		fprintf(stderr, "itest_requests: node and npm are needed (Debian's npm)\n");
		itest_teardown();
		return getenv("BITSVAULT_TEST_REQUIRE") ? 1 : 77;
	}
	reg_port = itest_free_port();
	reg_url = xasprintf("http://127.0.0.1:%d/", reg_port);
	itest_sh("mkdir -p www");
	Suite *s = suite_create("requests");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_request_npm);
	tcase_add_test(tc, test_request_dedup);
	tcase_add_test(tc, test_request_submodule);
	tcase_add_test(tc, test_request_failures);
	tcase_add_test(tc, test_request_config_targets);
	tcase_add_test(tc, test_request_unsafe_symlinks);
	tcase_add_test(tc, test_request_generic);
	tcase_add_test(tc, test_request_npm_generic);
	tcase_add_test(tc, test_request_generic_failures);
	tcase_add_test(tc, test_request_generic_private);
	tcase_add_test(tc, test_request_git_dir);
	suite_add_tcase(s, tc);

	/* The registry first: npm makes the fixtures' lockfiles against it. */
	if (!registry_start() ||
	    itest_sh("bash %s/tests/data/requests/fixture.sh %s %s/tests/data/requests "
		     ">logs/fixture.log 2>&1",
		getenv("BV_TOP_SRCDIR"), reg_url, getenv("BV_TOP_SRCDIR")) != 0) {
		itest_sh("cat logs/fixture.log >&2");
		registry_stop();
		itest_teardown();
		return 1;
	}
	itest_env("BITSVAULT_LOAD_ALLOW_FILE=true");
	static char reg_env[128];
	snprintf(reg_env, sizeof reg_env, "BITSVAULT_NPM_REGISTRY=%s", reg_url);
	itest_env(reg_env);
	itest_env("BITSVAULT_NPM_DOWNLOAD_ATTEMPTS=2");
	/* The generic fixtures are on loopback (test_request_generic_private turns it off). */
	itest_env("BITSVAULT_LOAD_ALLOW_PRIVATE=true");
	itest_start_api();
	int rc = itest_run(s);
	registry_stop();
	itest_teardown();
	free(reg_url);
	return rc;
}
