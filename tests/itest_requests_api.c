/* itest_requests_api.c: Cachito's API v1 under /api/v1 against the real API, Postgres and
 * Redis, with no worker: the test acts as the worker (PATCH /api/v1/requests/{id}, POST
 * configuration-files, PATCH /jobs/{id} to done with a bundle it put in the store), so
 * the requests' states, pagination, validation messages, downloads, logs, content
 * manifests, SBOMs and /api/v1/status can be checked exactly. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/itest.h"

#define ALICE "alice-token-0123456789abcdef"
#define OSBS "osbs-token-0123456789abcdef"
#define REF "0123456789abcdef0123456789abcdef01234567"
#define REF2 "89abcdef0123456789abcdef0123456789abcdef"
/* sha256("1234"): Cachito's Digest test vector. */
#define BLOB_SHA "03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4"
#define BLOB_DIGEST "sha-256=A6xnQhbz4Vx2HuGl4lXwZ5U2I8iziLRFnhP5eNfIRvQ="
#define JSON_CT "Content-Type: application/json"

/* A request with a JSON body (NULL for none). */
static void
call(struct itest_resp *r, const char *method, const char *path, const char *token,
    const char *body, const char *header)
{
	itest_http(r, method, path, token, body, body != NULL ? strlen(body) : 0,
	    header != NULL ? header : JSON_CT);
}

/* The error message of a reply ("" when none). */
static const char *
error_of(const struct itest_resp *r)
{
	const char *e = json_string_value(json_object_get(r->json, "error"));

	return e != NULL ? e : "";
}

/* Creates a request as alice; returns its id. */
static json_int_t
create(const char *repo, const char *ref, const char *pms)
{
	struct itest_resp r;
	char *body =
	    xasprintf("{\"repo\":\"%s\",\"ref\":\"%s\",\"pkg_managers\":%s}", repo, ref, pms);

	call(&r, "POST", "/api/v1/requests", ALICE, body, NULL);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body.data);
	json_int_t id = json_integer_value(json_object_get(r.json, "id"));
	itest_resp_free(&r);
	free(body);
	return id;
}

/* PATCH /api/v1/requests/{id} as the worker; returns the status. */
static long
patch(json_int_t id, const char *body, char *err, size_t errlen)
{
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests/%lld", (long long)id);

	call(&r, "PATCH", path, IT_WORKER, body, NULL);
	long st = r.status;
	if (err != NULL)
		snprintf(err, errlen, "%s", error_of(&r));
	if (st == 200)
		ck_assert_int_eq(r.body.len, 0);
	itest_resp_free(&r);
	free(path);
	return st;
}

/* GET /api/v1/requests/{id}<suffix> as anonymous; the reply (caller frees). */
static void
get(struct itest_resp *r, const char *suffix, long long id)
{
	char *path = xasprintf("/api/v1/requests/%lld%s", id, suffix);

	itest_http(r, "GET", path, NULL, NULL, 0, NULL);
	free(path);
}

/* The request document. */
static json_t *
request_json(json_int_t id)
{
	struct itest_resp r;

	get(&r, "", id);
	ck_assert_int_eq(r.status, 200);
	json_t *o = json_incref(r.json);
	itest_resp_free(&r);
	return o;
}

/* Completes a request the way a worker does: its job running, then done with a bundle. */
static void
complete(json_int_t id)
{
	char *sql = xasprintf("SELECT job_id FROM requests WHERE id = %lld", (long long)id);
	char *job = itest_sql(sql);
	char *path = xasprintf("/jobs/%s", job);
	struct itest_resp r;

	ck_assert_int_eq(itest_sh("mkdir -p data/store/objects/03/ac && printf 1234 > "
				  "data/store/objects/03/ac/" BLOB_SHA),
	    0);
	call(&r, "PATCH", path, IT_WORKER, "{\"state\":\"running\",\"worker\":\"x\"}", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body.data);
	itest_resp_free(&r);
	call(&r, "PATCH", path, IT_WORKER,
	    "{\"state\":\"done\",\"worker\":\"x\",\"result\":{\"bundle_sha256\":\"" BLOB_SHA
	    "\",\"bundle_size\":4}}",
	    NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body.data);
	itest_resp_free(&r);
	json_t *o = request_json(id);
	ck_assert_str_eq(json_string_value(json_object_get(o, "state")), "complete");
	json_decref(o);
	free(sql);
	free(job);
	free(path);
}

/* Every POST /api/v1/requests validation message (research cachito.md §7). */
static const struct {
	const char *token;
	const char *body;
	int status;
	const char *error;
} create_cases[] = {
    {ALICE, NULL, 400, "None is not of type 'object'"},
    {ALICE, "[1]", 400, "[1] is not of type 'object'"},
    {ALICE, "{\"ref\":\"" REF "\"}", 400, "'repo' is a required property"},
    {ALICE, "{\"repo\":\"r\"}", 400, "'ref' is a required property"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"username\":\"x\"}", 400,
	"Additional properties are not allowed ('username' was unexpected)"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"a\":1,\"b\":2}", 400,
	"Additional properties are not allowed ('a', 'b' were unexpected)"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"not-a-ref\"}", 400, "'not-a-ref' is too short"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF REF "\"}", 400, "'" REF REF "' is too long"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\""
	"0123456789ABCDEF0123456789abcdef01234567"
	"\"}",
	400, "'0123456789ABCDEF0123456789abcdef01234567' does not match '^[a-f0-9]{40}$'"},
    {ALICE, "{\"repo\":\"r\",\"ref\":1}", 400, "1 is not of type 'string'"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"pkg_managers\":[\"something_wrong\"]}", 400,
	"'something_wrong' is not one of ['gomod', 'npm', 'pip', 'git-submodule', 'yarn', "
	"'rubygems', 'generic']"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"pkg_managers\":\"gomod\"}", 400,
	"'gomod' is not of type 'array'"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"pkg_managers\":[true]}", 400,
	"True is not of type 'string'"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"pkg_managers\":[\"gomod\",\"pip\"]}", 400,
	"The following package managers are not enabled: gomod, pip"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"flags\":[\"invalid_flag\"]}", 400,
	"Invalid/Inactive flag(s): invalid_flag"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"flags\":\"x\"}", 400,
	"'x' is not of type 'array'"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"packages\":{\"npm\":[{\"path\":\".\"}]}}", 400,
	"The following package managers in the \"packages\" object do not apply: npm"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"packages\":[]}", 400,
	"[] is not of type 'object'"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF "\",\"pkg_managers\":[\"git-submodule\"],"
	"\"packages\":{\"git-submodule\":[{\"path\":\"a\"}]}}",
	400,
	"The following package managers in the \"packages\" object are unsupported: "
	"git-submodule"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"pkg_managers\":[\"npm\"],\"packages\":{\"npm\":[{}]}}",
	400,
	"The value of \"packages.npm\" must be an array of objects with the following keys: path"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"pkg_managers\":[\"npm\"],\"packages\":{\"npm\":[{\"path\":\"\"}]}}",
	400,
	"The \"path\" values in the \"packages.npm\" value must be to a relative path in the "
	"source repository"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"pkg_managers\":[\"npm\"],\"packages\":{\"npm\":[{\"path\":\"/foo/bar\"}]}}",
	400,
	"The \"path\" values in the \"packages.npm\" value must be to a relative path in the "
	"source repository"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"pkg_managers\":[\"npm\"],\"packages\":{\"npm\":[{\"path\":\"a/../../foo\"}]}}",
	400,
	"The \"path\" values in the \"packages.npm\" value must be to a relative path in the "
	"source repository"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"pkg_managers\":[\"npm\"],\"packages\":{\"npm\":[{\"path\":\"sub/../sub\"}]}}",
	400,
	"The \"path\" values in the \"packages.npm\" value must be to a relative path in the "
	"source repository"},
    {ALICE, "{\"repo\":\"https://user:ghp_secret@example.org/x.git\",\"ref\":\"" REF "\"}", 400,
	"The repo URL must not carry a user name or password: they would be stored and shown "
	"with the request"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"dependency_replacements\":\"mypackage\"}", 400,
	"'mypackage' is not of type 'array'"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"dependency_replacements\":[\"mypackage\"]}", 400,
	"'mypackage' is not of type 'object'"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"dependency_replacements\":[{\"name\":\"n\",\"version\":\"v\"}]}",
	400, "'type' is a required property"},
    {ALICE,
	"{\"repo\":\"r\",\"ref\":\"" REF
	"\",\"pkg_managers\":[\"npm\"],\"dependency_replacements\":[{\"name\":\"n\",\"type\":"
	"\"npm\",\"version\":\"v\"}]}",
	400, "Dependency replacements are not yet supported for the npm package manager"},
    {ALICE, "{\"repo\":\"r\",\"ref\":\"" REF "\",\"user\":\"bob\"}", 403,
	"You are not authorized to create a request on behalf of another user"},
    {NULL, "{\"repo\":\"r\",\"ref\":\"" REF "\"}", 401, NULL},
    {"not-a-token", "{\"repo\":\"r\",\"ref\":\"" REF "\"}", 401, NULL},
    {IT_WORKER, "{\"repo\":\"r\",\"ref\":\"" REF "\"}", 403, NULL},
};

START_TEST(test_create_validation)
{
	struct itest_resp r;

	call(&r, "POST", "/api/v1/requests", create_cases[_i].token, create_cases[_i].body, NULL);
	ck_assert_msg(
	    r.status == create_cases[_i].status, "case %d: %ld %s", _i, r.status, r.body.data);
	if (create_cases[_i].error != NULL)
		ck_assert_str_eq(error_of(&r), create_cases[_i].error);
	itest_resp_free(&r);
}
END_TEST

/* A long repo is refused with jsonschema's words. */
START_TEST(test_create_long_repo)
{
	struct itest_resp r;
	char repo[202];

	memset(repo, 'a', 201);
	repo[201] = '\0';
	char *body = xasprintf("{\"repo\":\"%s\",\"ref\":\"" REF "\"}", repo);
	char *want = xasprintf("'%s' is too long", repo);
	call(&r, "POST", "/api/v1/requests", ALICE, body, NULL);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_of(&r), want);
	itest_resp_free(&r);
	free(body);
	free(want);
}
END_TEST

/* A new request: 201 with the verbose document, then the same from GET; who is the user. */
START_TEST(test_create)
{
	struct itest_resp r;
	const char *body = "{\"repo\":\"https://github.com/org/app.git\",\"ref\":\"" REF
			   "\",\"pkg_managers\":[\"npm\",\"npm\"],\"flags\":[\"include-git-dir\"],"
			   "\"packages\":{\"npm\":[{\"path\":\"client\"}]}}";

	call(&r, "POST", "/api/v1/requests", ALICE, body, NULL);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body.data);
	json_t *o = r.json;
	json_int_t id = json_integer_value(json_object_get(o, "id"));
	ck_assert_str_eq(json_string_value(json_object_get(o, "state")), "in_progress");
	ck_assert_str_eq(
	    json_string_value(json_object_get(o, "state_reason")), "The request was initiated");
	ck_assert_str_eq(json_string_value(json_object_get(o, "user")), "alice");
	ck_assert(json_is_null(json_object_get(o, "submitted_by")));
	ck_assert_int_eq(json_array_size(json_object_get(o, "pkg_managers")), 1);
	ck_assert_str_eq(
	    json_string_value(json_array_get(json_object_get(o, "flags"), 0)), "include-git-dir");
	ck_assert_int_eq(json_array_size(json_object_get(o, "state_history")), 1);
	ck_assert(json_is_array(json_object_get(o, "packages")));
	const char *created = json_string_value(json_object_get(o, "created"));
	ck_assert_int_eq(strlen(created), 26);
	ck_assert(created[10] == 'T' && created[19] == '.');
	char *url = xasprintf("%s/api/v1/requests/%lld/logs", IT.url, (long long)id);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(o, "logs"), "url")), url);
	free(url);
	json_t *again = request_json(id);
	ck_assert(json_equal(again, o));
	json_decref(again);
	itest_resp_free(&r);

	/* A representative names the user; it is submitted_by. */
	call(&r, "POST", "/api/v1/requests", OSBS,
	    "{\"repo\":\"r\",\"ref\":\"" REF "\",\"user\":\"bob\"}", NULL);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "user")), "bob");
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "submitted_by")), "osbs");
	itest_resp_free(&r);
	/* The proxy's header names the user when there is no token. */
	call(&r, "POST", "/api/v1/requests", NULL, "{\"repo\":\"r\",\"ref\":\"" REF "\"}",
	    "X-Remote-User: carol@EXAMPLE.COM");
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body.data);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "user")), "carol@EXAMPLE.COM");
	itest_resp_free(&r);
	/* From a peer that is not a listed proxy (127.0.0.2 is loopback too), the header is
	 * ignored: no token, no user, 401. */
	char *code =
	    itest_sh_out("curl -s -o /dev/null -w '%%{http_code}' --interface 127.0.0.2"
			 " -X POST -H 'X-Remote-User: mallory' -H 'Content-Type: application/json'"
			 " --data '{\"repo\":\"r\",\"ref\":\"%s\"}' %s/api/v1/requests",
		REF, IT.url);
	ck_assert_str_eq(code, "401");
	free(code);
	/* A bare token is named "user". */
	call(&r, "POST", "/api/v1/requests", IT_USER, "{\"repo\":\"r\",\"ref\":\"" REF "\"}", NULL);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "user")), "user");
	ck_assert_int_eq(json_array_size(json_object_get(r.json, "pkg_managers")), 0);
	itest_resp_free(&r);
	/* Not an integer, or no such request: Cachito's 404. */
	itest_http(&r, "GET", "/api/v1/requests/spam", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(error_of(&r), "The requested resource was not found");
	itest_resp_free(&r);
	itest_http(&r, "GET", "/api/v1/requests/999999", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(error_of(&r), "The requested resource was not found");
	itest_resp_free(&r);
}
END_TEST

/* The total of a listing. */
static json_int_t
list_total(const char *query, long want_status)
{
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests?%s", query);

	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == want_status, "%s: %ld %s", query, r.status, r.body.data);
	json_int_t total =
	    json_integer_value(json_object_get(json_object_get(r.json, "meta"), "total"));
	itest_resp_free(&r);
	free(path);
	return total;
}

/* 25 requests, paged and filtered. */
START_TEST(test_list)
{
	struct itest_resp r;
	json_int_t ids[25];
	const char *repo = "https://example.com/list.git";

	for (int i = 0; i < 25; i++)
		ids[i] = create(repo, i % 2 ? REF : REF2,
		    i % 5 == 0       ? "[\"npm\",\"generic\"]"
			: i % 5 == 1 ? "[\"npm\"]"
				     : "[]");
	itest_http(&r, "GET",
	    "/api/v1/requests?repo=https%3A%2F%2Fexample.com%2Flist.git&per_page=10&page=3", NULL,
	    NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	json_t *items = json_object_get(r.json, "items"), *meta = json_object_get(r.json, "meta");
	ck_assert_int_eq(json_array_size(items), 5);
	/* newest first: page 3 holds the 5 oldest */
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_array_get(items, 0), "id")), ids[4]);
	ck_assert(json_is_integer(json_object_get(json_array_get(items, 0), "packages")) ||
	    json_is_null(json_object_get(json_array_get(items, 0), "packages")));
	ck_assert_int_eq(json_integer_value(json_object_get(meta, "total")), 25);
	ck_assert_int_eq(json_integer_value(json_object_get(meta, "pages")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(meta, "page")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(meta, "per_page")), 10);
	ck_assert(json_is_null(json_object_get(meta, "next")));
	char *want = xasprintf("%s/api/v1/requests?page=2&per_page=10&verbose=False", IT.url);
	ck_assert_str_eq(json_string_value(json_object_get(meta, "previous")), want);
	free(want);
	want = xasprintf("%s/api/v1/requests?page=1&per_page=10&verbose=False", IT.url);
	ck_assert_str_eq(json_string_value(json_object_get(meta, "first")), want);
	free(want);
	want = xasprintf("%s/api/v1/requests?page=3&per_page=10&verbose=False", IT.url);
	ck_assert_str_eq(json_string_value(json_object_get(meta, "last")), want);
	free(want);
	itest_resp_free(&r);
	/* Past the end. */
	itest_http(&r, "GET", "/api/v1/requests?repo=https://example.com/list.git&page=4", NULL,
	    NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(error_of(&r), "The requested resource was not found");
	itest_resp_free(&r);
	/* Verbose items; the state in the links. */
	itest_http(&r, "GET",
	    "/api/v1/requests?repo=https://example.com/list.git&verbose=true&state=in_progress"
	    "&per_page=2",
	    NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert(json_is_array(
	    json_object_get(json_array_get(json_object_get(r.json, "items"), 0), "state_history")));
	want = xasprintf(
	    "%s/api/v1/requests?page=2&per_page=2&state=in_progress&verbose=True", IT.url);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(r.json, "meta"), "next")), want);
	free(want);
	itest_resp_free(&r);
	/* Filters: ref, repeated pkg_manager (AND), state, dates. */
	ck_assert_int_eq(list_total("repo=https://example.com/list.git&ref=" REF, 200), 12);
	ck_assert_int_eq(list_total("repo=https://example.com/list.git&pkg_manager=npm", 200), 10);
	ck_assert_int_eq(
	    list_total(
		"repo=https://example.com/list.git&pkg_manager=npm&pkg_manager=generic", 200),
	    5);
	complete(ids[0]);
	ck_assert_int_eq(list_total("repo=https://example.com/list.git&state=complete", 200), 1);
	char today[16], tomorrow[16], yesterday[16];
	time_t now = time(NULL), tm1 = now + 86400, tm2 = now - 86400;
	strftime(today, sizeof today, "%Y-%m-%d", gmtime(&now));
	strftime(tomorrow, sizeof tomorrow, "%Y-%m-%d", gmtime(&tm1));
	strftime(yesterday, sizeof yesterday, "%Y-%m-%d", gmtime(&tm2));
	char *q = xasprintf("repo=https://example.com/list.git&created_to=%s", today);
	ck_assert_int_eq(list_total(q, 200), 25); /* a bare date: to its end */
	free(q);
	q = xasprintf("repo=https://example.com/list.git&created_to=%s", yesterday);
	ck_assert_int_eq(list_total(q, 200), 0);
	free(q);
	q = xasprintf("repo=https://example.com/list.git&created_from=%s", tomorrow);
	ck_assert_int_eq(list_total(q, 200), 0);
	free(q);
	q = xasprintf(
	    "repo=https://example.com/list.git&created_from=%sT00:00:00&created_to=%sT23:59:59.999999",
	    today, today);
	ck_assert_int_eq(list_total(q, 200), 25);
	free(q);
}
END_TEST

/* GET /api/v1/requests query errors. */
static const struct {
	const char *query;
	const char *error;
} list_errors[] = {
    {"state=complet", "'complet' is not one of ['in_progress', 'complete', 'failed', 'stale']"},
    {"per_page=x", "Wrong type, expected 'integer' for query parameter 'per_page'"},
    {"page=0", "0 is less than the minimum of 1"},
    {"created_from=2011-20-04", "'2011-20-04' is not a valid datetime(ISO 8601 format)."},
    {"created_to=yesterday", "'yesterday' is not a valid datetime(ISO 8601 format)."},
    {"foo=1&state=complete&bar=2", "Extra query parameter(s) foo, bar not in spec"},
    {"ref=abc", "'abc' does not match '^[a-f0-9]{40}$'"},
    {"verbose=maybe", "Wrong type, expected 'boolean' for query parameter 'verbose'"},
    {"pkg_manager=cargo", "The following package managers are invalid: cargo"},
};

START_TEST(test_list_errors)
{
	struct itest_resp r;
	char *path = xasprintf("/api/v1/requests?%s", list_errors[_i].query);

	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 400, "%s: %ld", list_errors[_i].query, r.status);
	ck_assert_str_eq(error_of(&r), list_errors[_i].error);
	itest_resp_free(&r);
	free(path);
}
END_TEST

/* A page so far out that page * per_page overflows is past the end: 404, not an error. */
START_TEST(test_list_huge_page)
{
	struct itest_resp r;

	itest_http(&r, "GET", "/api/v1/requests?page=100000000000000000&per_page=100", NULL, NULL,
	    0, NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(error_of(&r), "The requested resource was not found");
	itest_resp_free(&r);
}
END_TEST

/* /requests/latest by repository name and ref. */
START_TEST(test_latest)
{
	struct itest_resp r;

	create("https://github.com/org/latest.git", REF, "[]");
	json_int_t newest = create("https://gitlab.com/org/latest", REF, "[]");
	create("https://github.com/org/latest.git", REF2, "[]");
	itest_http(&r, "GET", "/api/v1/requests/latest?repo_name=org/latest&ref=" REF, NULL, NULL,
	    0, NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body.data);
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "id")), newest);
	ck_assert_ptr_null(json_object_get(r.json, "state_history"));
	itest_resp_free(&r);
	itest_http(&r, "GET", "/api/v1/requests/latest?ref=" REF, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_of(&r), "Missing query parameter 'repo_name'");
	itest_resp_free(&r);
	itest_http(
	    &r, "GET", "/api/v1/requests/latest?repo_name=org/none&ref=" REF, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);
}
END_TEST

/* PATCH bodies refused (research cachito.md §7). */
static const struct {
	const char *body;
	const char *error;
} patch_errors[] = {
    {"{}", "{} should be non-empty"},
    {"[]", "[] is not of type 'object'"},
    {"{\"state\":\"complet\",\"state_reason\":\"x\"}",
	"'complet' is not one of ['in_progress', 'complete', 'failed', 'stale']"},
    {"{\"state\":\"complete\"}", "The \"state_reason\" key is required when \"state\" is supplied"},
    {"{\"state_reason\":\"x\"}", "The \"state\" key is required when \"state_reason\" is supplied"},
    {"{\"id\":1}", "Additional properties are not allowed ('id' was unexpected)"},
    {"{\"environment_variables\":{\"A\":{\"value\":\"v\"}}}", "'kind' is a required property"},
    {"{\"environment_variables\":{\"A\":{\"value\":\"v\",\"kind\":\"ham\"}}}",
	"The environment variable kind, ham, is not supported"},
    {"{\"packages_count\":1.5}", "1.5 is not of type 'integer'"},
    {"{\"dependencies_count\":\"3\"}", "'3' is not of type 'integer'"},
    {"{\"error_origin\":\"me\"}", "'me' is not one of ['client', 'server']"},
};

START_TEST(test_patch_errors)
{
	static json_int_t id;
	char err[512];

	if (id == 0)
		id = create("https://example.com/patch.git", REF, "[]");
	ck_assert_int_eq(patch(id, patch_errors[_i].body, err, sizeof err), 400);
	ck_assert_str_eq(err, patch_errors[_i].error);
}
END_TEST

/* The transition table, the duplicate no-op, history newest first, env var merges. */
START_TEST(test_patch)
{
	struct itest_resp r;
	char err[512];
	json_int_t id = create("https://example.com/patch.git", REF, "[\"npm\"]");
	char *path = xasprintf("/api/v1/requests/%lld", (long long)id);

	call(&r, "PATCH", path, ALICE, "{\"packages_count\":1}", NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(error_of(&r), "This API endpoint is restricted to Cachito workers");
	itest_resp_free(&r);
	call(&r, "PATCH", path, NULL, "{\"packages_count\":1}", NULL);
	ck_assert_int_eq(r.status, 401);
	itest_resp_free(&r);
	call(&r, "PATCH", "/api/v1/requests/999999", IT_WORKER, "{\"packages_count\":1}", NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);

	const char *fetch =
	    "{\"state\":\"in_progress\",\"state_reason\":\"Fetching the application source\"}";
	ck_assert_int_eq(patch(id, fetch, NULL, 0), 200);
	ck_assert_int_eq(patch(id, fetch, NULL, 0), 200); /* same state and reason: no new row */
	ck_assert_int_eq(patch(id,
			     "{\"environment_variables\":{\"B\":{\"value\":\"deps/npm\",\"kind\":"
			     "\"path\"}},\"packages_count\":2,\"dependencies_count\":7}",
			     NULL, 0),
	    200);
	ck_assert_int_eq(
	    patch(id, "{\"environment_variables\":{\"A\":{\"value\":\"1\",\"kind\":\"literal\"}}}",
		NULL, 0),
	    200);
	json_t *o = request_json(id);
	ck_assert_int_eq(json_array_size(json_object_get(o, "state_history")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(o, "state_reason")),
	    "Fetching the application source");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(o, "environment_variables"), "B")),
	    "deps/npm");
	json_decref(o);
	itest_http(&r, "GET", "/api/v1/requests?repo=https://example.com/patch.git&per_page=1",
	    NULL, NULL, 0, NULL);
	json_t *item = json_array_get(json_object_get(r.json, "items"), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(item, "packages")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(item, "dependencies")), 7);
	itest_resp_free(&r);
	get(&r, "/environment-variables", id);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body.data,
	    "{\"A\":{\"value\":\"1\",\"kind\":\"literal\"},"
	    "\"B\":{\"value\":\"deps/npm\",\"kind\":\"path\"}}");
	itest_resp_free(&r);

	/* Complete only once the job has its bundle (the trigger completes it then); the
	 * same PATCH again is a no-op. */
	const char *done = "{\"state\":\"complete\",\"state_reason\":\"Completed successfully\"}";
	ck_assert_int_eq(patch(id, done, err, sizeof err), 400);
	ck_assert_str_eq(err, "The request cannot be complete before its bundle is stored");
	complete(id);
	ck_assert_int_eq(patch(id, done, NULL, 0), 200);
	ck_assert_int_eq(patch(id, done, NULL, 0), 200);
	ck_assert_int_eq(
	    patch(id, "{\"state\":\"complete\",\"state_reason\":\"again\"}", err, sizeof err), 400);
	ck_assert_str_eq(err, "State transition is not allowed from complete to complete.");
	ck_assert_int_eq(patch(id, fetch, err, sizeof err), 400);
	ck_assert_str_eq(err, "State transition is not allowed from complete to in_progress.");
	ck_assert_int_eq(
	    patch(id, "{\"state\":\"failed\",\"state_reason\":\"x\"}", err, sizeof err), 400);
	ck_assert_str_eq(err, "State transition is not allowed from complete to failed.");
	ck_assert_int_eq(
	    patch(
		id, "{\"state\":\"stale\",\"state_reason\":\"The request has expired\"}", NULL, 0),
	    200);
	ck_assert_int_eq(patch(id, done, err, sizeof err), 400);
	ck_assert_str_eq(err, "State transition is not allowed from stale to complete.");
	o = request_json(id);
	json_t *h = json_object_get(o, "state_history");
	ck_assert_int_eq(json_array_size(h), 4);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(h, 0), "state")), "stale");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(h, 1), "state")), "complete");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(h, 3), "state_reason")),
	    "The request was initiated");
	ck_assert_str_eq(json_string_value(json_object_get(o, "state")), "stale");
	json_decref(o);

	/* in_progress -> failed -> stale */
	json_int_t f = create("https://example.com/patch.git", REF, "[]");
	ck_assert_int_eq(
	    patch(f,
		"{\"state\":\"failed\",\"state_reason\":\"bad lockfile\",\"error_origin\":"
		"\"client\",\"error_type\":\"InvalidFileFormat\"}",
		NULL, 0),
	    200);
	o = request_json(f);
	ck_assert_str_eq(json_string_value(json_object_get(o, "error_origin")), "client");
	ck_assert_str_eq(json_string_value(json_object_get(o, "error_type")), "InvalidFileFormat");
	json_decref(o);
	/* Cachito's error filters on the list. */
	struct itest_resp lr;
	itest_http(&lr, "GET", "/api/v1/requests?error_origin=client&error_type=InvalidFileFormat",
	    NULL, NULL, 0, NULL);
	ck_assert_int_eq(lr.status, 200);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(lr.json, "meta"), "total")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(
			     json_array_get(json_object_get(lr.json, "items"), 0), "id")),
	    f);
	itest_resp_free(&lr);
	itest_http(&lr, "GET", "/api/v1/requests?error_origin=nobody", NULL, NULL, 0, NULL);
	ck_assert_int_eq(lr.status, 400);
	ck_assert_str_eq(json_string_value(json_object_get(lr.json, "error")),
	    "'nobody' is not one of ['client', 'server']");
	itest_resp_free(&lr);
	ck_assert_int_eq(patch(f, fetch, err, sizeof err), 400);
	ck_assert_str_eq(err, "State transition is not allowed from failed to in_progress.");
	ck_assert_int_eq(patch(f, "{\"state\":\"stale\",\"state_reason\":\"gone\"}", NULL, 0), 200);
	free(path);
}
END_TEST

/* Configuration files: checks, round trip sorted by path, same path replaced. */
START_TEST(test_config_files)
{
	static const struct {
		const char *body;
		const char *error;
	} bad[] = {
	    {"{\"hello\":\"world\"}", "{'hello': 'world'} is not of type 'array'"},
	    {"[{\"type\":\"base64\",\"content\":\"YQ==\"}]", "'path' is a required property"},
	    {"[{\"path\":\"app/x\",\"type\":\"song\",\"content\":\"YQ==\"}]",
		"'song' is not one of ['base64']"},
	    {"[{\"path\":\"app/x\",\"type\":\"base64\",\"content\":\"@@@\"}]",
		"The \"content\" of a configuration file must be base64"},
	    {"[{\"path\":\"../x\",\"type\":\"base64\",\"content\":\"YQ==\"}]",
		"The \"path\" of a configuration file must be a relative path inside the bundle"},
	};
	struct itest_resp r;
	json_int_t id = create("https://example.com/config.git", REF, "[]");
	char *path = xasprintf("/api/v1/requests/%lld/configuration-files", (long long)id);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		call(&r, "POST", path, IT_WORKER, bad[i].body, NULL);
		ck_assert_msg(r.status == 400, "%zu: %ld", i, r.status);
		ck_assert_str_eq(error_of(&r), bad[i].error);
		itest_resp_free(&r);
	}
	call(&r, "POST", path, ALICE, "[]", NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_str_eq(error_of(&r), "This API endpoint is restricted to Cachito workers");
	itest_resp_free(&r);
	call(&r, "POST", path, IT_WORKER,
	    "[{\"path\":\"app/.npmrc\",\"type\":\"base64\",\"content\":\"b2xk\"},"
	    "{\"path\":\"app/a.txt\",\"type\":\"base64\",\"content\":\"YQ==\"}]",
	    NULL);
	ck_assert_int_eq(r.status, 204);
	itest_resp_free(&r);
	call(&r, "POST", path, IT_WORKER,
	    "[{\"path\":\"app/.npmrc\",\"type\":\"base64\",\"content\":\"bmV3\"}]", NULL);
	ck_assert_int_eq(r.status, 204);
	itest_resp_free(&r);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body.data,
	    "[{\"path\":\"app/.npmrc\",\"type\":\"base64\",\"content\":\"bmV3\"},"
	    "{\"path\":\"app/a.txt\",\"type\":\"base64\",\"content\":\"YQ==\"}]");
	itest_resp_free(&r);
	call(&r, "POST", "/api/v1/requests/999999/configuration-files", IT_WORKER, "[]", NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);
	free(path);
}
END_TEST

/* Download: 400 before complete, the bundle with Cachito's headers after; logs: text
 * while running, 410 once stale; content manifest: 400 in progress, empty once stale. */
START_TEST(test_download_logs)
{
	struct itest_resp r;
	json_int_t id = create("https://example.com/dl.git", REF, "[]");
	char *sql = xasprintf("INSERT INTO request_logs (request_id, line) VALUES (%lld, 'Fetching "
			      "the application source') RETURNING id",
	    (long long)id);

	free(itest_sql(sql));
	get(&r, "/download", id);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_of(&r),
	    "The request must be in the \"complete\" state before downloading the archive");
	itest_resp_free(&r);
	get(&r, "/logs", id);
	ck_assert_int_eq(r.status, 200);
	/* each line is "<time> <message>\n" (shared/requests.c) */
	ck_assert_ptr_nonnull(strstr(r.body.data, " Fetching the application source\n"));
	ck_assert_ptr_nonnull(strstr(itest_header(&r, "Content-Type"), "text/plain"));
	itest_resp_free(&r);
	get(&r, "/content-manifest", id);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_of(&r),
	    "Content manifests are only available for requests in the "
	    "\"complete\" or \"stale\" states");
	itest_resp_free(&r);

	complete(id);
	get(&r, "/download", id);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body.data, "1234");
	ck_assert_str_eq(itest_header(&r, "Digest"), BLOB_DIGEST);
	char *cd = xasprintf("attachment; filename=cachito-%lld.tar.gz", (long long)id);
	ck_assert_str_eq(itest_header(&r, "Content-Disposition"), cd);
	free(cd);
	ck_assert_str_eq(itest_header(&r, "Content-Type"), "application/gzip");
	ck_assert_str_eq(itest_header(&r, "ETag"), "\"" BLOB_SHA "\"");
	itest_resp_free(&r);

	ck_assert_int_eq(
	    patch(
		id, "{\"state\":\"stale\",\"state_reason\":\"The request has expired\"}", NULL, 0),
	    200);
	get(&r, "/download", id);
	ck_assert_int_eq(r.status, 400);
	itest_resp_free(&r);
	get(&r, "/logs", id);
	ck_assert_int_eq(r.status, 410);
	char *msg =
	    xasprintf("The logs for the Cachito request %lld no longer exist", (long long)id);
	ck_assert_str_eq(error_of(&r), msg);
	free(msg);
	itest_resp_free(&r);
	get(&r, "/content-manifest", id);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_array_size(json_object_get(r.json, "image_contents")), 0);
	itest_resp_free(&r);
	free(sql);
}
END_TEST

/* The purls of an ICM entry's list, as one string "a b c". */
static char *
purls(const json_t *arr)
{
	struct buf b;
	size_t i;
	json_t *x;

	buf_init(&b);
	json_array_foreach(arr, i, x)
	    buf_printf(&b, "%s%s", i ? " " : "", json_string_value(json_object_get(x, "purl")));
	return buf_steal(&b, NULL);
}

/* Content manifests and SBOMs: purls, shapes, errors. */
START_TEST(test_icm_sbom)
{
	struct itest_resp r;
	json_int_t a = create("https://github.com/Org/App.git", REF, "[\"npm\"]");
	json_int_t b =
	    create("https://example.com/gen.git", REF, "[\"generic\",\"git-submodule\"]");
	json_int_t pending = create("https://example.com/gen.git", REF, "[]");
	char *sql = xasprintf(
	    "UPDATE requests SET packages_data = '{\"packages\": [{\"name\": \"app\", \"type\": \"npm\", "
	    "\"version\": \"1.0.0\", \"path\": \"client\", \"dependencies\": ["
	    "{\"name\": \"@types/node\", \"type\": \"npm\", \"version\": \"20.1.0\", \"dev\": true},"
	    "{\"name\": \"chai\", \"type\": \"npm\", \"version\": \"4.2.0\", \"dev\": false}]}]}' "
	    "WHERE id = %lld RETURNING id",
	    (long long)a);
	free(itest_sql(sql));
	free(sql);
	sql = xasprintf(
	    "UPDATE requests SET packages_data = '{\"packages\": [{\"name\": \"gen\", \"type\": "
	    "\"generic\", \"version\": \"\", \"dependencies\": [{\"name\": \"file.zip\", \"type\": "
	    "\"generic\", \"version\": \"https://h.example/f.zip\", \"checksum\": \"sha256:abcd\"}]},"
	    "{\"name\": \"sub\", \"type\": \"git-submodule\", \"version\": "
	    "\"https://github.com/org/sub.git#" REF2 "\", \"dependencies\": []}]}' "
	    "WHERE id = %lld RETURNING id",
	    (long long)b);
	free(itest_sql(sql));
	free(sql);
	complete(a);
	complete(b);

	get(&r, "", a);
	ck_assert_int_eq(json_array_size(json_object_get(r.json, "packages")), 1);
	json_t *deps = json_object_get(r.json, "dependencies");
	ck_assert_int_eq(json_array_size(deps), 2);
	ck_assert(json_is_null(json_object_get(json_array_get(deps, 0), "replaces")));
	itest_resp_free(&r);
	/* The verbose list carries the packages too; the plain list only their count. */
	itest_http(&r, "GET", "/api/v1/requests?repo=https://github.com/Org/App.git&verbose=true",
	    NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	json_t *item = json_array_get(json_object_get(r.json, "items"), 0);
	ck_assert_int_eq(json_array_size(json_object_get(item, "dependencies")), 2);
	itest_resp_free(&r);
	itest_http(
	    &r, "GET", "/api/v1/requests?repo=https://github.com/Org/App.git", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	item = json_array_get(json_object_get(r.json, "items"), 0);
	ck_assert(json_is_integer(json_object_get(item, "dependencies")) ||
	    json_is_null(json_object_get(item, "dependencies")));
	itest_resp_free(&r);

	get(&r, "/content-manifest", a);
	ck_assert_int_eq(r.status, 200);
	json_t *md = json_object_get(r.json, "metadata");
	ck_assert_int_eq(json_integer_value(json_object_get(md, "icm_version")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(md, "image_layer_index")), -1);
	json_t *e = json_array_get(json_object_get(r.json, "image_contents"), 0);
	ck_assert_str_eq(
	    json_string_value(json_object_get(e, "purl")), "pkg:github/org/app@" REF "#client");
	char *s = purls(json_object_get(e, "sources"));
	ck_assert_str_eq(s, "pkg:npm/%40types/node@20.1.0 pkg:npm/chai@4.2.0");
	free(s);
	s = purls(json_object_get(e, "dependencies"));
	ck_assert_str_eq(s, "pkg:npm/chai@4.2.0");
	free(s);
	itest_resp_free(&r);

	char *path =
	    xasprintf("/api/v1/content-manifest?requests=%lld,%lld", (long long)a, (long long)b);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	s = purls(json_object_get(r.json, "image_contents"));
	ck_assert_str_eq(s,
	    "pkg:generic/gen?vcs_url=https%3A%2F%2Fexample.com%2Fgen.git%40" REF
	    " pkg:github/org/app@" REF "#client pkg:github/org/sub@" REF2);
	free(s);
	e = json_array_get(json_object_get(r.json, "image_contents"), 0);
	s = purls(json_object_get(e, "sources"));
	ck_assert_str_eq(s,
	    "pkg:generic/file.zip?download_url=https%3A%2F%2Fh.example%2Ff.zip"
	    "&checksum=sha256:abcd");
	free(s);
	itest_resp_free(&r);
	free(path);

	path = xasprintf("/api/v1/sbom?requests=%lld,%lld", (long long)a, (long long)b);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "bomFormat")), "CycloneDX");
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "specVersion")), "1.4");
	json_t *comps = json_object_get(r.json, "components");
	ck_assert_int_eq(json_array_size(comps), 6);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(comps, 0), "name")), "@types/node");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(comps, 0), "type")), "library");
	itest_resp_free(&r);
	free(path);

	itest_http(&r, "GET", "/api/v1/content-manifest", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_array_size(json_object_get(r.json, "image_contents")), 0);
	itest_resp_free(&r);
	itest_http(&r, "GET", "/api/v1/content-manifest?requests=1,x", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_of(&r), "x is not an integer.");
	itest_resp_free(&r);
	itest_http(&r, "GET", "/api/v1/sbom?requests=999998,999999", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(error_of(&r), "Cannot find request(s) 999998, 999999.");
	itest_resp_free(&r);
	path = xasprintf("/api/v1/content-manifest?requests=%lld", (long long)pending);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 400);
	char *want = xasprintf(
	    "Request %lld is in state in_progress, not in {'complete'}.\n", (long long)pending);
	ck_assert_str_eq(error_of(&r), want);
	free(want);
	itest_resp_free(&r);
	free(path);
}
END_TEST

/* /api/v1/status: can_process for every package manager; only the built and enabled
 * ones become true once a worker is alive. */
START_TEST(test_status)
{
	struct itest_resp r;

	itest_http(&r, "GET", "/api/v1/status", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	json_t *can = json_object_get(r.json, "can_process");
	ck_assert_int_eq(json_object_size(can), 7);
	ck_assert(json_is_false(json_object_get(can, "npm"))); /* no worker yet */
	ck_assert(json_is_array(json_object_get(r.json, "services")));
	itest_resp_free(&r);
	itest_http(&r, "GET", "/api/v1/status/short", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(
	    json_string_value(json_object_get(r.json, "reason")), "no workers are available");
	itest_resp_free(&r);
	/* A heartbeat, as a worker writes it. */
	ck_assert_int_eq(itest_sh("redis-cli -u '%s' SET bitsvault:worker:fake "
				  "'{\"name\":\"fake\"}' EX 60 >/dev/null",
			     IT.redis_url),
	    0);
	itest_http(&r, "GET", "/api/v1/status", NULL, NULL, 0, NULL);
	can = json_object_get(r.json, "can_process");
	ck_assert(json_is_true(json_object_get(can, "npm")));
	ck_assert(json_is_true(json_object_get(can, "git-submodule")));
	ck_assert(json_is_true(json_object_get(can, "generic")));
	ck_assert(json_is_false(json_object_get(can, "pip")));
	ck_assert(json_is_false(json_object_get(can, "gomod")));
	ck_assert(json_is_false(json_object_get(can, "yarn")));
	itest_resp_free(&r);
	itest_http(&r, "GET", "/api/v1/status/short", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	itest_resp_free(&r);
	ck_assert_int_eq(
	    itest_sh("redis-cli -u '%s' DEL bitsvault:worker:fake >/dev/null", IT.redis_url), 0);
}
END_TEST

static void
setup(void)
{
	itest_init("requests_api", 10);
	itest_env("BITSVAULT_USER_TOKENS=alice:" ALICE ", osbs:" OSBS "," IT_USER);
	itest_env("BITSVAULT_REQUEST_REPRESENTATIVES=osbs");
	itest_env("BITSVAULT_REQUEST_USER_HEADER=X-Remote-User");
	itest_env("BITSVAULT_REQUEST_USER_HEADER_FROM=127.0.0.1");
	itest_start_api();
}

int
main(void)
{
	Suite *s = suite_create("itest_requests_api");
	TCase *tc = tcase_create("requests_api");

	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_add_test(tc, test_status);
	tcase_add_loop_test(tc, test_create_validation, 0, (int)BV_NELEM(create_cases));
	tcase_add_test(tc, test_create_long_repo);
	tcase_add_test(tc, test_create);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_list_huge_page);
	tcase_add_loop_test(tc, test_list_errors, 0, (int)BV_NELEM(list_errors));
	tcase_add_test(tc, test_latest);
	tcase_add_loop_test(tc, test_patch_errors, 0, (int)BV_NELEM(patch_errors));
	tcase_add_test(tc, test_patch);
	tcase_add_test(tc, test_config_files);
	tcase_add_test(tc, test_download_logs);
	tcase_add_test(tc, test_icm_sbom);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
