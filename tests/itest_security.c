/* itest_security.c: the security checks of issue 6 against the real API and a worker.
 * (i) Every route of the route table (bitsvault-api --routes) against every caller:
 * anonymous, a wrong token, HTTP Basic where a token is wanted, user, admin, worker, the
 * signing and archiver users; with anonymous_read off; on the public, private and an
 * unknown Bits host; in each bits_private_auth mode. A route without an expectation here
 * fails the test, so the table stays complete. (ii) Signed URLs, HMAC and nginx md5:
 * tampering with the verb, path, expiry, signature or key id is refused. (iii) Hostile
 * archives (tar, tar.gz, zip) to POST /directories and the app stash: "..", absolute
 * paths, symlinks out and files through them, hard links, devices, fifos, ".git"; nothing
 * lands outside the store, and bundles cooked from accepted trees hold no such entry.
 * (iv) Repository URLs of loads and Cachito requests. (v) notify_url never reaches a
 * private address unless notify_allow_private. Error bodies never echo credentials. */
#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tests/itest.h"

#define WRONG "sec-wrong-token-5e1f0c2b9a874d63"
#define SIGNER_PW "sec-signer-pw-8c31"
#define SIGNER "signer:" SIGNER_PW
#define ARCH_PW "sec-archiver-pw-4d27"
#define ARCHIVER "arch:" ARCH_PW
#define KEY1 "sec-k1-secret-0123456789abcdef"
#define KEY2 "sec-k2-secret-fedcba9876543210"
#define MD5SECRET "sec-md5-secret-42424242"
#define PUB "pub.sec.example"
#define PRIV "priv.sec.example"
#define BOUNDARY "SeCbOuNdArY77"
#define MPTYPE "Content-Type: multipart/form-data; boundary=" BOUNDARY
#define JSONTYPE "Content-Type: application/json"
#define ZERO40 "0000000000000000000000000000000000000000"

/* Authorization headers of each caller (NULL: anonymous). */
#define H_USER "Authorization: Bearer " IT_USER
#define H_ADMIN "Authorization: Bearer " IT_ADMIN
#define H_WORKER "Authorization: Bearer " IT_WORKER
#define H_WRONG "Authorization: Bearer " WRONG
static char h_signer[128], h_arch[128], h_badbasic[128];

static void default_config(void);

/* Failures of a table walk, collected so one run names them all. */
static struct buf fails;
static int nfails;

static void BV_PRINTF(1, 2) failf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	if (nfails < 60)
		buf_printf(&fails, "  %s\n", s);
	nfails++;
	free(s);
}

static void
fails_reset(void)
{
	buf_free(&fails);
	buf_init(&fails);
	nfails = 0;
}

static void
fails_check(const char *what)
{
	ck_assert_msg(nfails == 0, "%s: %d failure(s):\n%s", what, nfails,
	    fails.data != NULL ? fails.data : "");
}

/* libcurl's write callback: appends to a buf. */
static size_t
sink(char *p, size_t sz, size_t n, void *arg)
{
	buf_add(arg, p, sz * n);
	return sz * n;
}

/* One request with up to four more header lines (NULL ones are skipped); the path goes
 * as it is (no dot-segment merging). Returns the status; r holds the answer. */
static long
rq(struct itest_resp *r, const char *method, const char *path, const void *body, size_t len,
    const char *h1, const char *h2, const char *h3, const char *h4)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char *url = xasprintf("%s%s", IT.url, path);
	const char *all[] = {h1, h2, h3, h4, "Expect:"};

	memset(r, 0, sizeof *r);
	buf_init(&r->body);
	buf_init(&r->headers);
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
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	for (size_t i = 0; i < BV_NELEM(all); i++)
		if (all[i] != NULL)
			h = curl_slist_append(h, all[i]);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	(void)curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(url);
	buf_addc(&r->body, '\0');
	r->body.len--;
	buf_addc(&r->headers, '\0');
	r->headers.len--;
	if (r->body.len > 0 && (r->body.data[0] == '{' || r->body.data[0] == '['))
		r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
	return r->status;
}

/* The error text of a JSON error body: "error" (ours) or "description" (Bits), or NULL. */
static const char *
err_text(const struct itest_resp *r)
{
	const char *e = json_string_value(json_object_get(r->json, "error"));

	return e != NULL ? e : json_string_value(json_object_get(r->json, "description"));
}

/* The credentials a client may send: never in an answer, body or headers. */
static const char *const creds[] = {
    WRONG, IT_USER, IT_ADMIN, IT_WORKER, SIGNER_PW, ARCH_PW, KEY1, KEY2, MD5SECRET};

/* Checks an answer carries no credential (an echoed Authorization value, a password) and
 * that a refusal is a JSON error. */
static void
check_answer(const struct itest_resp *r, const char *what)
{
	for (size_t i = 0; i < BV_NELEM(creds); i++)
		if (memmem(r->body.data, r->body.len, creds[i], strlen(creds[i])) != NULL ||
		    strstr(r->headers.data, creds[i]) != NULL)
			failf("%s: the answer (%ld) echoes a credential", what, r->status);
	const char *basics[] = {h_signer, h_arch, h_badbasic};
	for (size_t i = 0; i < BV_NELEM(basics); i++) {
		const char *b64 = basics[i] + strlen("Authorization: Basic ");
		if (strstr(r->body.data, b64) != NULL || strstr(r->headers.data, b64) != NULL)
			failf("%s: the answer echoes Basic credentials", what);
	}
	if (r->status == 401 || r->status == 403) {
		const char *ct = itest_header(r, "Content-Type");
		if (ct == NULL || strncmp(ct, "application/json", 16) != 0 || err_text(r) == NULL ||
		    err_text(r)[0] == '\0')
			failf("%s: %ld without a JSON error (%s): %.100s", what, r->status,
			    ct != NULL ? ct : "no Content-Type", r->body.data);
	}
}

/* ---- (i) the route table ------------------------------------------------------------- */

/* What the design says of each route (docs/api.md): its access rule as --routes prints
 * it. A route the API serves that is missing here, or listed here and no longer served,
 * fails test_route_table: add the new route with its access, and a case below if its rule
 * is a new one. */
static const struct {
	const char *method, *pattern, *access;
} expected[] = {
    {"POST", "/directories", "user"},
    {"GET", "/directories/{id}", "read"},
    {"GET", "/vault/{kind}", "read"},
    {"POST", "/vault/{kind}/{id}", "user"},
    {"GET", "/vault/{kind}/{id}/status", "read"},
    {"GET", "/vault/{kind}/{id}", "read"},
    {"POST", "/api/1/vault/{type}/{swhid}/", "cook"},
    {"GET", "/api/1/vault/{type}/{swhid}/", "read"},
    {"GET", "/api/1/vault/{type}/{swhid}/raw/", "read"},
    {"PUT", "/vault/{kind}/{id}/sticky", "admin"},
    {"DELETE", "/vault/{kind}/{id}/sticky", "admin"},
    {"POST", "/loads", "user"},
    {"GET", "/loads/{id}", "read"},
    {"PATCH", "/jobs/{id}", "worker"},
    {"GET", "/jobs/{id}", "worker-admin"},
    {"GET", "/status", "read"},
    {"GET", "/status/short", "read"},
    {"POST", "/api/v1/requests", "request-create"},
    {"GET", "/api/v1/requests", "read"},
    {"GET", "/api/v1/requests/latest", "read"},
    {"GET", "/api/v1/requests/{id}", "read"},
    {"PATCH", "/api/v1/requests/{id}", "cachito-worker"},
    {"GET", "/api/v1/requests/{id}/download", "read"},
    {"GET", "/api/v1/requests/{id}/environment-variables", "read"},
    {"GET", "/api/v1/requests/{id}/configuration-files", "read"},
    {"POST", "/api/v1/requests/{id}/configuration-files", "cachito-worker"},
    {"GET", "/api/v1/requests/{id}/logs", "read"},
    {"GET", "/api/v1/requests/{id}/content-manifest", "read"},
    {"GET", "/api/v1/content-manifest", "read"},
    {"GET", "/api/v1/sbom", "read"},
    {"GET", "/api/v1/status", "read"},
    {"GET", "/api/v1/status/short", "read"},
    {"POST", "/v3/packages", "user"},
    {"GET", "/v3/packages", "user"},
    {"GET", "/v3/packages/{guid}", "user"},
    {"DELETE", "/v3/packages/{guid}", "user"},
    {"POST", "/v3/packages/{guid}/upload", "user"},
    {"GET", "/v3/packages/{guid}/download", "user"},
    {"POST", "/v3/apps/{guid}/packages", "user"},
    {"GET", "/v3/apps/{guid}/packages", "user"},
    {"PUT", "/packages/{guid}", "bits"},
    {"GET", "/packages/{guid}", "bits"},
    {"DELETE", "/packages/{guid}", "bits"},
    {"PUT", "/droplets/{guid}", "bits"},
    {"GET", "/droplets/{guid}", "bits"},
    {"DELETE", "/droplets/{guid}", "bits"},
    {"PUT", "/droplets/{guid}/{checksum}", "bits"},
    {"GET", "/droplets/{guid}/{checksum}", "bits"},
    {"DELETE", "/droplets/{guid}/{checksum}", "bits"},
    {"POST", "/buildpacks", "bits"},
    {"POST", "/buildpacks/", "bits"},
    {"GET", "/buildpacks/{guid}/metadata", "bits"},
    {"PUT", "/buildpacks/{guid}", "bits"},
    {"GET", "/buildpacks/{guid}", "bits"},
    {"DELETE", "/buildpacks/{guid}", "bits"},
    {"PUT", "/buildpack_cache/entries/{app}/{stack}", "bits"},
    {"GET", "/buildpack_cache/entries/{app}/{stack}", "bits"},
    {"DELETE", "/buildpack_cache/entries/{app}/{stack}", "bits"},
    {"DELETE", "/buildpack_cache/entries/{app}", "bits"},
    {"DELETE", "/buildpack_cache/entries", "bits"},
    {"DELETE", "/buildpack_cache/entries/", "bits"},
    {"POST", "/app_stash/matches", "bits"},
    {"POST", "/app_stash/entries", "bits"},
    {"POST", "/app_stash/bundles", "bits"},
    {"POST", "/droplets/{app}/{sha1}", "archiver"},
    {"POST", "/sync/have", "archiver"},
    {"POST", "/sync/{app}/{sha1}", "archiver"},
    {"PUT", "/signed/packages/{guid}", "bits"},
    {"GET", "/signed/packages/{guid}", "bits"},
    {"PUT", "/signed/droplets/{guid}/{checksum}", "bits"},
    {"GET", "/signed/droplets/{guid}/{checksum}", "bits"},
    {"PUT", "/signed/buildpacks/{guid}", "bits"},
    {"GET", "/signed/buildpacks/{guid}", "bits"},
    {"PUT", "/signed/buildpack_cache/entries/{app}/{stack}", "bits"},
    {"GET", "/signed/buildpack_cache/entries/{app}/{stack}", "bits"},
    {"GET", "/sign/packages/{guid}", "bits-sign"},
    {"GET", "/sign/droplets/{guid}", "bits-sign"},
    {"GET", "/sign/droplets/{guid}/{checksum}", "bits-sign"},
    {"GET", "/sign/buildpacks", "bits-sign"},
    {"GET", "/sign/buildpacks/{guid}", "bits-sign"},
    {"GET", "/sign/buildpack_cache/entries/{app}/{stack}", "bits-sign"},
    {"GET", "/sign/app_stash/entries", "bits-sign"},
};

struct route {
	char *method, *pattern, *access;
};
static struct route *routes;
static size_t nroutes;

/* The route table as the API binary prints it. */
static void
load_routes(void)
{
	char *out = itest_sh_out("'%s/api/bitsvault-api' --routes", getenv("BV_TOP_BUILDDIR"));
	json_error_t e;
	json_t *a = json_loads(out, 0, &e), *v;
	size_t i;

	ck_assert_msg(json_is_array(a), "--routes: %s: %.200s", e.text, out);
	nroutes = json_array_size(a);
	routes = xcalloc(nroutes, sizeof *routes);
	json_array_foreach(a, i, v)
	{
		routes[i].method = xstrdup(json_string_value(json_object_get(v, "method")));
		routes[i].pattern = xstrdup(json_string_value(json_object_get(v, "pattern")));
		routes[i].access = xstrdup(json_string_value(json_object_get(v, "access")));
	}
	json_decref(a);
	free(out);
}

/* A concrete path for a pattern: every {name} gets a value of the right shape (auth is
 * decided before any parameter is read, so the values need not exist). */
static char *
fill(const char *pattern)
{
	static const char *const vals[][2] = {{"{kind}", "directory"}, {"{type}", "directory"},
	    {"{swhid}", "swh:1:dir:" ZERO40}, {"{id}", "1"}, {"{guid}", "sec-guid-1"},
	    {"{checksum}", ZERO40}, {"{app}", "sec-app"}, {"{stack}", "cflinuxfs4"},
	    {"{sha1}", ZERO40}};
	struct buf b;

	buf_init(&b);
	for (const char *p = pattern; *p != '\0';) {
		size_t i;
		for (i = 0; i < BV_NELEM(vals); i++)
			if (strncmp(p, vals[i][0], strlen(vals[i][0])) == 0)
				break;
		if (i < BV_NELEM(vals)) {
			buf_adds(&b, vals[i][1]);
			p += strlen(vals[i][0]);
		} else {
			ck_assert_msg(*p != '{', "no value for a parameter of %s", pattern);
			buf_addc(&b, *p++);
		}
	}
	return buf_steal(&b, NULL);
}

/* The body sent with a method that takes one: an empty JSON object (enough to get past
 * the auth step and be refused by the route's own checks). */
static const char *
body_for(const char *method)
{
	return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
		strcmp(method, "PATCH") == 0
	    ? "{}"
	    : NULL;
}

/* One call of route i as a caller; the status (r holds the answer). */
static long
call_route(struct itest_resp *r, size_t i, const char *host, const char *auth)
{
	char *path = fill(routes[i].pattern);
	const char *body = body_for(routes[i].method);
	long st = rq(r, routes[i].method, path, body, body != NULL ? 2 : 0, host, auth,
	    body != NULL ? JSONTYPE : NULL, NULL);
	free(path);
	return st;
}

enum caller { C_ANON, C_WRONG, C_USER, C_ADMIN, C_WORKER, C_SIGNER, C_ARCH, C_BADBASIC, C_N };
static const char *const caller_names[] = {
    "anonymous", "a wrong token", "user", "admin", "worker", "signer", "archiver", "bad Basic"};

static const char *
caller_header(enum caller c)
{
	switch (c) {
	case C_ANON:
		return NULL;
	case C_WRONG:
		return H_WRONG;
	case C_USER:
		return H_USER;
	case C_ADMIN:
		return H_ADMIN;
	case C_WORKER:
		return H_WORKER;
	case C_SIGNER:
		return h_signer;
	case C_ARCH:
		return h_arch;
	case C_BADBASIC:
	case C_N:
		break;
	}
	return h_badbasic;
}

/* What a caller gets on a route with this access in the default configuration
 * (anonymous_read on, anonymous_cook and request_anonymous_create off, no Bits hosts,
 * bits_private_auth bearer): 0 = let in (any status but 401 and 403), else the status,
 * and in *challenge the WWW-Authenticate scheme a 401 names. */
static int
want(size_t i, enum caller c, const char **challenge)
{
	const char *access = routes[i].access;
	bool bearer = c == C_USER || c == C_ADMIN || c == C_WORKER;

	*challenge = "Bearer realm=\"bitsvault\"";
	if (strcmp(access, "bits-sign") == 0) {
		*challenge = "Basic realm=\"bits-service\"";
		return c == C_SIGNER ? 0 : 401;
	}
	if (strcmp(access, "archiver") == 0) {
		*challenge = "Basic realm=\"droplet-archiver\"";
		return c == C_ARCH ? 0 : 401;
	}
	/* The Droplet Archiver's clients read droplets with its credentials (only those it
	 * stored: a 404 here). */
	if (strcmp(access, "bits") == 0 && c == C_ARCH && strcmp(routes[i].method, "GET") == 0 &&
	    strncmp(routes[i].pattern, "/droplets/", 10) == 0)
		return 0;
	/* Whatever is not a known bearer token is a 401, anonymous aside. */
	if (c != C_ANON && !bearer)
		return 401;
	if (strcmp(access, "read") == 0)
		return 0;
	if (c == C_ANON)
		return 401;
	if (strcmp(access, "user") == 0 || strcmp(access, "cook") == 0 ||
	    strcmp(access, "request-create") == 0 || strcmp(access, "bits") == 0)
		return c == C_USER || c == C_ADMIN ? 0 : 403;
	if (strcmp(access, "worker") == 0 || strcmp(access, "cachito-worker") == 0)
		return c == C_WORKER ? 0 : 403;
	if (strcmp(access, "worker-admin") == 0)
		return c == C_WORKER || c == C_ADMIN ? 0 : 403;
	if (strcmp(access, "admin") == 0)
		return c == C_ADMIN ? 0 : 403;
	ck_abort_msg("access rule '%s' has no expectation in itest_security", access);
	return -1;
}

/* Checks one answer against what was wanted. */
static void
check_want(const struct itest_resp *r, int w, const char *challenge, const char *what)
{
	const char *got;

	if (w == 0) {
		if (r->status == 401 || r->status == 403 || r->status <= 0 || r->status >= 500)
			failf("%s: wanted in, got %ld %.120s", what, r->status, r->body.data);
	} else if (r->status != w) {
		failf("%s: wanted %d, got %ld %.120s", what, w, r->status, r->body.data);
	} else if (w == 401 && challenge != NULL &&
	    ((got = itest_header(r, "WWW-Authenticate")) == NULL || strcmp(got, challenge) != 0)) {
		failf("%s: 401 with WWW-Authenticate '%s', not '%s'", what, got ? got : "(none)",
		    challenge);
	}
	check_answer(r, what);
}

/* Every route has an expectation, and the same access rule. */
START_TEST(test_route_table)
{
	fails_reset();
	ck_assert_uint_gt(nroutes, 50);
	for (size_t i = 0; i < nroutes; i++) {
		size_t j;
		for (j = 0; j < BV_NELEM(expected); j++)
			if (strcmp(expected[j].method, routes[i].method) == 0 &&
			    strcmp(expected[j].pattern, routes[i].pattern) == 0)
				break;
		if (j == BV_NELEM(expected))
			failf("%s %s (access %s) is a route without an expectation in "
			      "itest_security's table: add it",
			    routes[i].method, routes[i].pattern, routes[i].access);
		else if (strcmp(expected[j].access, routes[i].access) != 0)
			failf("%s %s: access %s, the design says %s", routes[i].method,
			    routes[i].pattern, routes[i].access, expected[j].access);
	}
	for (size_t j = 0; j < BV_NELEM(expected); j++) {
		size_t i;
		for (i = 0; i < nroutes; i++)
			if (strcmp(expected[j].method, routes[i].method) == 0 &&
			    strcmp(expected[j].pattern, routes[i].pattern) == 0)
				break;
		if (i == nroutes)
			failf("%s %s is expected but not served", expected[j].method,
			    expected[j].pattern);
	}
	fails_check("route table");
}
END_TEST

/* Every route, every caller, the default configuration. */
START_TEST(test_every_route_every_caller)
{
	struct itest_resp r;
	const char *challenge;
	char what[256];

	default_config();

	fails_reset();
	for (size_t i = 0; i < nroutes; i++) {
		for (int c = 0; c < C_N; c++) {
			int w = want(i, (enum caller)c, &challenge);
			snprintf(what, sizeof what, "%s %s as %s", routes[i].method,
			    routes[i].pattern, caller_names[c]);
			call_route(&r, i, NULL, caller_header((enum caller)c));
			check_want(&r, w, challenge, what);
			itest_resp_free(&r);
		}
	}
	fails_check("every route, every caller");
}
END_TEST

/* The sentences the design names: a worker token cannot create anything, a user token
 * cannot report (PATCH) or pin bundles, and the Vault has no PATCH at all. */
START_TEST(test_role_sentences)
{
	struct itest_resp r;
	static const char *const worker_cannot[][2] = {{"POST", "/api/v1/requests"},
	    {"POST", "/vault/directory/" ZERO40},
	    {"POST", "/api/1/vault/directory/swh:1:dir:" ZERO40 "/"}, {"POST", "/loads"},
	    {"POST", "/directories"}, {"POST", "/v3/packages"}, {"PUT", "/packages/sec-w"},
	    {"POST", "/app_stash/entries"}};
	static const char *const user_cannot[][2] = {{"PATCH", "/jobs/1"},
	    {"PATCH", "/api/v1/requests/1"}, {"POST", "/api/v1/requests/1/configuration-files"},
	    {"PUT", "/vault/directory/" ZERO40 "/sticky"},
	    {"DELETE", "/vault/directory/" ZERO40 "/sticky"}, {"GET", "/jobs/1"}};

	default_config();

	for (size_t i = 0; i < BV_NELEM(worker_cannot); i++) {
		rq(&r, worker_cannot[i][0], worker_cannot[i][1], "{}", 2, H_WORKER, JSONTYPE, NULL,
		    NULL);
		ck_assert_msg(r.status == 403, "worker %s %s: %ld", worker_cannot[i][0],
		    worker_cannot[i][1], r.status);
		itest_resp_free(&r);
	}
	for (size_t i = 0; i < BV_NELEM(user_cannot); i++) {
		for (int admin = 0; admin < 2; admin++) {
			/* The admin may read jobs and pin bundles, never report. */
			if (admin &&
			    (strcmp(user_cannot[i][0], "PATCH") != 0 &&
				strstr(user_cannot[i][1], "configuration") == NULL))
				continue;
			rq(&r, user_cannot[i][0], user_cannot[i][1], "{}", 2,
			    admin ? H_ADMIN : H_USER, JSONTYPE, NULL, NULL);
			ck_assert_msg(r.status == 403, "%s %s %s: %ld", admin ? "admin" : "user",
			    user_cannot[i][0], user_cannot[i][1], r.status);
			itest_resp_free(&r);
		}
	}
	rq(&r, "PATCH", "/api/v1/requests/1", "{}", 2, H_USER, JSONTYPE, NULL, NULL);
	ck_assert_str_eq(err_text(&r), "This API endpoint is restricted to Cachito workers");
	itest_resp_free(&r);
	const char *vault[] = {"/vault/directory/" ZERO40, "/vault/directory/" ZERO40 "/status"};
	for (size_t i = 0; i < BV_NELEM(vault); i++) {
		rq(&r, "PATCH", vault[i], "{}", 2, H_USER, JSONTYPE, NULL, NULL);
		ck_assert_int_eq(r.status, 405);
		itest_resp_free(&r);
	}
}
END_TEST

/* The environment every start of the API gets (signing users, archiver users, keys). */
static void
base_env(void)
{
	static const char *const env[] = {"BITSVAULT_BITS_SIGNING_USERS=" SIGNER,
	    "BITSVAULT_ARCHIVER_USERS=" ARCHIVER,
	    "BITSVAULT_BITS_SIGNING_KEYS=k1:" KEY1 ",k2:" KEY2, "BITSVAULT_BITS_ACTIVE_KEY_ID=k1",
	    "BITSVAULT_BITS_MD5_SECRET=" MD5SECRET, "BITSVAULT_NOTIFY_BACKOFF_MS=100",
	    "BITSVAULT_NOTIFY_ATTEMPTS=1"};

	IT.nextra = 0;
	for (size_t i = 0; i < BV_NELEM(env); i++)
		itest_env(env[i]);
}

/* Whether the API runs with settings of its own (restart). */
static bool custom;

/* Restarts the API with the base environment and up to three more settings. */
static void
restart(const char *kv1, const char *kv2, const char *kv3)
{
	const char *kv[] = {kv1, kv2, kv3};

	custom = kv1 != NULL || kv2 != NULL || kv3 != NULL;
	itest_stop_api();
	base_env();
	for (size_t i = 0; i < BV_NELEM(kv); i++)
		if (kv[i] != NULL)
			itest_env(kv[i]);
	itest_start_api();
}

/* The base configuration again, if a test that changed it failed before it restored it. */
static void
default_config(void)
{
	if (custom)
		restart(NULL, NULL, NULL);
}

static bool
is(const char *access, const char *name)
{
	return strcmp(access, name) == 0;
}

/* anonymous_read off; the public, private and an unknown host. */
START_TEST(test_hosts_and_closed_reads)
{
	struct itest_resp r;
	char what[256];

	restart("BITSVAULT_ANONYMOUS_READ=false", "BITSVAULT_BITS_PUBLIC_HOST=" PUB,
	    "BITSVAULT_BITS_PRIVATE_HOST=" PRIV);
	fails_reset();
	for (size_t i = 0; i < nroutes; i++) {
		const char *a = routes[i].access;
		bool bits = is(a, "bits") || is(a, "bits-sign");

		/* Reads need a token now. */
		if (is(a, "read")) {
			snprintf(what, sizeof what, "%s %s anonymous, anonymous_read off",
			    routes[i].method, routes[i].pattern);
			call_route(&r, i, NULL, NULL);
			check_want(&r, 401, "Bearer realm=\"bitsvault\"", what);
			itest_resp_free(&r);
			call_route(&r, i, NULL, H_WORKER);
			check_want(&r, 0, NULL, what);
			itest_resp_free(&r);
		}
		/* The public host serves signed URLs, nothing else, whatever the credentials
		 * (/sign is a 404 there). */
		const char *pub_auth[] = {H_ADMIN, h_signer, h_arch};
		for (size_t k = 0; k < BV_NELEM(pub_auth); k++) {
			snprintf(what, sizeof what, "%s %s on the public host (%zu)",
			    routes[i].method, routes[i].pattern, k);
			call_route(&r, i, "Host: " PUB, pub_auth[k]);
			check_want(&r, is(a, "bits-sign") ? 404 : 403, NULL, what);
			itest_resp_free(&r);
		}
		if (bits) {
			snprintf(what, sizeof what, "%s %s on an unknown host", routes[i].method,
			    routes[i].pattern);
			call_route(&r, i, "Host: evil.example", is(a, "bits") ? H_USER : h_signer);
			check_want(&r, 400, NULL, what);
			itest_resp_free(&r);
			snprintf(what, sizeof what, "%s %s on the private host", routes[i].method,
			    routes[i].pattern);
			call_route(&r, i, "Host: " PRIV, is(a, "bits") ? H_USER : h_signer);
			check_want(&r, 0, NULL, what);
			itest_resp_free(&r);
			call_route(&r, i, "Host: " PRIV, is(a, "bits") ? H_WORKER : H_ADMIN);
			check_want(&r, is(a, "bits") ? 403 : 401, NULL, what);
			itest_resp_free(&r);
		}
	}
	fails_check("hosts and closed reads");
}
END_TEST

/* bits_private_auth basic, then none: the Bits routes follow it, no other route does. */
START_TEST(test_bits_auth_modes)
{
	struct itest_resp r;
	char what[256];

	restart("BITSVAULT_BITS_PRIVATE_AUTH=basic", "BITSVAULT_BITS_PUBLIC_HOST=" PUB,
	    "BITSVAULT_BITS_PRIVATE_HOST=" PRIV);
	fails_reset();
	for (size_t i = 0; i < nroutes; i++) {
		if (!is(routes[i].access, "bits"))
			continue;
		static const struct {
			const char *auth;
			int want;
		} basic[] = {{NULL, 401}, {H_USER, 401}, {H_ADMIN, 401}, {H_WRONG, 401},
		    {NULL /* bad basic */, 401}, {NULL /* signer */, 0}};
		for (size_t k = 0; k < BV_NELEM(basic); k++) {
			const char *auth = k == 4 ? h_badbasic : k == 5 ? h_signer : basic[k].auth;
			snprintf(what, sizeof what, "%s %s, basic mode, case %zu", routes[i].method,
			    routes[i].pattern, k);
			call_route(&r, i, "Host: " PRIV, auth);
			check_want(&r, basic[k].want, "Basic realm=\"bits-service\"", what);
			itest_resp_free(&r);
		}
	}
	fails_check("basic mode");

	restart("BITSVAULT_BITS_PRIVATE_AUTH=none", NULL, NULL);
	for (size_t i = 0; i < nroutes; i++) {
		const char *a = routes[i].access, *challenge;
		int w = is(a, "bits") ? 0 : want(i, C_ANON, &challenge);

		snprintf(what, sizeof what, "%s %s anonymous, none mode", routes[i].method,
		    routes[i].pattern);
		call_route(&r, i, "Host: anything.example", NULL);
		check_want(&r, w, challenge, what);
		itest_resp_free(&r);
	}
	fails_check("none mode");
	restart(NULL, NULL, NULL);
}
END_TEST

/* ---- (ii) signed URLs ---------------------------------------------------------------- */

/* The query of an HMAC-signed URL (key id and secret as given; id NULL: no AccessKeyId). */
static char *
hmac_q(const char *secret, const char *id, const char *method, const char *path, long long exp)
{
	unsigned char mac[32];
	unsigned int n = 0;
	char hex[65];
	char *msg = xasprintf("%s %s %s %lld", method, path, secret, exp);

	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, strlen(msg), mac, &n);
	hex_encode(mac, 32, hex);
	free(msg);
	return id != NULL ? xasprintf("signature=%s&expires=%lld&AccessKeyId=%s", hex, exp, id)
			  : xasprintf("signature=%s&expires=%lld", hex, exp);
}

/* The query of an nginx md5 URL for path. */
static char *
md5_q(const char *path, long long exp)
{
	unsigned char d[16], b64[32];
	unsigned int n = 0;
	char *msg = xasprintf("%lld%s %s", exp, path, MD5SECRET);

	EVP_Digest(msg, strlen(msg), d, &n, EVP_md5(), NULL);
	EVP_EncodeBlock(b64, d, 16);
	for (char *p = (char *)b64; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	b64[22] = '\0';
	free(msg);
	return xasprintf("md5=%s&expires=%lld", b64, exp);
}

/* method path?q (q freed) on the public host without credentials: the status. */
static long
pub(const char *method, const char *path, char *q, const char *body)
{
	struct itest_resp r;
	char *url = xasprintf("%s?%s", path, q);
	struct buf b;

	buf_init(&b);
	if (body != NULL) {
		itest_mp_part(&b, BOUNDARY, "package", "p.zip", body, strlen(body));
		itest_mp_end(&b, BOUNDARY);
	}
	long st = rq(&r, method, url, body != NULL ? b.data : NULL, b.len, "Host: " PUB,
	    body != NULL ? MPTYPE : NULL, NULL, NULL);
	fails_reset();
	if (strcmp(method, "HEAD") != 0)
		check_answer(&r, url);
	fails_check("signed URL answer");
	if ((st == 403 || st == 410) && strcmp(method, "HEAD") != 0)
		ck_assert_msg(err_text(&r) != NULL, "%s: %ld without a JSON error", url, st);
	itest_resp_free(&r);
	buf_free(&b);
	free(url);
	free(q);
	return st;
}

/* s with the character after the first `at` changed. */
static char *
flip(char *s, const char *at)
{
	char *p = strstr(s, at);

	ck_assert_ptr_nonnull(p);
	p += strlen(at);
	*p = *p == '1' ? '2' : '1';
	return s;
}

START_TEST(test_signed_urls)
{
	struct itest_resp r;
	long long now = (long long)time(NULL);
	const char *P = "/packages/sec-signed", *S = "/signed/packages/sec-signed";
	struct buf b;

	restart("BITSVAULT_BITS_PUBLIC_HOST=" PUB, "BITSVAULT_BITS_PRIVATE_HOST=" PRIV, NULL);
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "package", "p.zip", "signed bytes", 12);
	itest_mp_end(&b, BOUNDARY);
	ck_assert_int_eq(rq(&r, "PUT", P, b.data, b.len, "Host: " PRIV, H_USER, MPTYPE, NULL), 201);
	itest_resp_free(&r);
	buf_free(&b);

	/* HMAC: valid with the active key and with the other one (rotation). */
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY1, "k1", "GET", P, now + 60), NULL), 200);
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY2, "k2", "GET", P, now + 60), NULL), 200);
	/* verb */
	ck_assert_int_eq(pub("HEAD", P, hmac_q(KEY1, "k1", "GET", P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("DELETE", P, hmac_q(KEY1, "k1", "GET", P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("PUT", P, hmac_q(KEY1, "k1", "GET", P, now + 60), "x"), 403);
	/* path: another resource, another spelling, the /signed/ form */
	ck_assert_int_eq(
	    pub("GET", "/packages/sec-other", hmac_q(KEY1, "k1", "GET", P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("GET", S, hmac_q(KEY1, "k1", "GET", P, now + 60), NULL), 403);
	/* dot segments are not merged: no route, whatever the signature */
	ck_assert_int_eq(pub("GET", "/packages/./sec-signed",
			     hmac_q(KEY1, "k1", "GET", "/packages/./sec-signed", now + 60), NULL),
	    404);
	/* expiry: changed, expired (403: the bits-service has no 410 for HMAC), absent */
	ck_assert_int_eq(
	    pub("GET", P, flip(hmac_q(KEY1, "k1", "GET", P, now + 60), "expires="), NULL), 403);
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY1, "k1", "GET", P, now - 5), NULL), 403);
	char *q = hmac_q(KEY1, "k1", "GET", P, now + 60);
	char *noexp = xasprintf("%.*s&AccessKeyId=k1", (int)(strstr(q, "&expires=") - q), q);
	free(q);
	ck_assert_int_eq(pub("GET", P, noexp, NULL), 403);
	/* signature: one digit, upper case, cut short, given twice, absent */
	ck_assert_int_eq(
	    pub("GET", P, flip(hmac_q(KEY1, "k1", "GET", P, now + 60), "signature="), NULL), 403);
	q = hmac_q(KEY1, "k1", "GET", P, now + 60);
	for (char *p = q + 10; p < q + 74; p++)
		*p = (char)toupper((unsigned char)*p);
	ck_assert_int_eq(pub("GET", P, q, NULL), 403);
	q = hmac_q(KEY1, "k1", "GET", P, now + 60);
	memmove(q + 72, q + 74, strlen(q + 74) + 1);
	ck_assert_int_eq(pub("GET", P, q, NULL), 403);
	q = hmac_q(KEY1, "k1", "GET", P, now + 60);
	char *twice = xasprintf("%s&%.74s", q, q);
	free(q);
	ck_assert_int_eq(pub("GET", P, twice, NULL), 403);
	ck_assert_int_eq(
	    pub("GET", P, xasprintf("expires=%lld&AccessKeyId=k1", now + 60), NULL), 403);
	/* key id: the other key's id, an unknown one, none (no legacy secret here), empty */
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY1, "k2", "GET", P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY1, "k9", "GET", P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY1, NULL, "GET", P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("GET", P, hmac_q(KEY1, "", "GET", P, now + 60), NULL), 403);
	/* A valid signature is no credential on the private host, nor for another route. */
	q = hmac_q(KEY1, "k1", "GET", P, now + 60);
	char *u = xasprintf("%s?%s", P, q);
	ck_assert_int_eq(rq(&r, "GET", u, NULL, 0, "Host: " PRIV, NULL, NULL, NULL), 401);
	itest_resp_free(&r);
	free(u);
	free(q);
	q = hmac_q(KEY1, "k1", "GET", "/status", now + 60);
	ck_assert_int_eq(pub("GET", "/status", q, NULL), 403);

	/* md5 (nginx secure_link, under /signed/): valid; expired is a 410 as nginx answers */
	ck_assert_int_eq(pub("GET", S, md5_q(S, now + 60), NULL), 200);
	ck_assert_int_eq(pub("GET", S, md5_q(S, now - 5), NULL), 410);
	ck_assert_int_eq(pub("GET", S, flip(md5_q(S, now + 60), "expires="), NULL), 403);
	q = md5_q(S, now + 60);
	q[4] = q[4] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(pub("GET", S, q, NULL), 403);
	ck_assert_int_eq(pub("GET", "/signed/packages/sec-other", md5_q(S, now + 60), NULL), 403);
	ck_assert_int_eq(pub("GET", P, md5_q(P, now + 60), NULL), 403); /* outside /signed/ */
	ck_assert_int_eq(pub("DELETE", P, md5_q(P, now + 60), NULL), 403);
	ck_assert_int_eq(pub("GET", S, xasprintf("md5=&expires=%lld", now + 60), NULL), 403);
	q = md5_q(S, now + 60);
	char *both = xasprintf("%s&signature=%.64s", q, ZERO40 ZERO40);
	free(q);
	ck_assert_int_eq(pub("GET", S, both, NULL), 403);
	/* The md5 scheme does not hash the method (nginx did not): under /signed/ a URL is
	 * good for GET, HEAD and PUT alike, and nothing else routes there. */
	ck_assert_int_eq(pub("HEAD", S, md5_q(S, now + 60), NULL), 200);
	ck_assert_int_eq(pub("POST", S, md5_q(S, now + 60), NULL), 405);
	restart(NULL, NULL, NULL);
}
END_TEST

/* ---- (iii) hostile archives ---------------------------------------------------------- */

/* One entry: 'f' a file (data), 'd' a folder, 'l' a symlink (to data), 'h' a hard link
 * (to data), 'c' 'b' devices, 'p' a fifo. */
struct ent {
	char type;
	const char *path;
	const char *data;
};

/* Writes an archive of the test folder: fmt "tar", "tar.gz" or "zip". false when the
 * format cannot hold an entry (zip: devices, fifos, hard links). */
static bool
make_archive(const char *file, const char *fmt, const struct ent *e, size_t n)
{
	struct archive *a = archive_write_new();
	char *path = xasprintf("%s/%s", IT.dir, file);
	bool ok = true;

	if (strcmp(fmt, "zip") == 0) {
		ck_assert_int_eq(archive_write_set_format_zip(a), ARCHIVE_OK);
	} else {
		ck_assert_int_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
		if (strcmp(fmt, "tar.gz") == 0)
			ck_assert_int_eq(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	}
	ck_assert_int_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n && ok; i++) {
		struct archive_entry *ae = archive_entry_new();
		const char *d = e[i].data != NULL ? e[i].data : "";
		bool zip = strcmp(fmt, "zip") == 0;

		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_mtime(ae, 315532800, 0);
		switch (e[i].type) {
		case 'f':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_size(ae, (la_int64_t)strlen(d));
			break;
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, 0755);
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_perm(ae, 0777);
			archive_entry_set_symlink(ae, d);
			break;
		case 'h':
			ok = !zip;
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_hardlink(ae, d);
			archive_entry_set_size(ae, 0);
			break;
		default:
			ok = !zip;
			archive_entry_set_filetype(ae,
			    e[i].type == 'c'       ? AE_IFCHR
				: e[i].type == 'b' ? AE_IFBLK
						   : AE_IFIFO);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_rdevmajor(ae, 1);
			archive_entry_set_rdevminor(ae, 3);
			break;
		}
		if (ok) {
			ck_assert_msg(archive_write_header(a, ae) == ARCHIVE_OK, "%s %s: %s", file,
			    e[i].path, archive_error_string(a));
			if (e[i].type == 'f')
				ck_assert_int_eq(
				    archive_write_data(a, d, strlen(d)), (la_ssize_t)strlen(d));
		}
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
	free(path);
	return ok;
}

/* The hostile archives: each is refused (400) with a message holding `why`. OUT is a
 * folder of the test outside the data folder: nothing may appear in it. */
#define OUT "@OUT@"
static const struct {
	const char *name, *why;
	struct ent e[3];
} hostile[] = {
    {"dotdot", "path traversal", {{'f', "../sec-evil-dotdot", "x"}}},
    {"dotdot-deep", "path traversal", {{'f', "../../../../../../tmp/sec-evil-deep", "x"}}},
    {"dotdot-mid", "path traversal", {{'f', "a/../../sec-evil-mid", "x"}}},
    {"dotdot-dir", "path traversal", {{'d', "../sec-evil-dir/", NULL}}},
    {"absolute", "absolute path", {{'f', OUT "/sec-evil-abs", "x"}}},
    {"symlink-abs-through", "goes through symlink",
	{{'l', "lnk", OUT}, {'f', "lnk/sec-evil-through", "x"}}},
    {"symlink-rel-through", "goes through symlink",
	{{'l', "up", "../../../../out"}, {'f', "up/sec-evil-rel", "x"}}},
    {"symlink-dir-then-file", "goes through symlink",
	{{'d', "d/", NULL}, {'l', "d/in", ".."}, {'f', "d/in/sec-evil-dd", "x"}}},
    {"hardlink-out", "absolute path", {{'h', "h", "/etc/passwd"}}},
    {"hardlink-dotdot", "path traversal", {{'h', "h", "../sec-evil-hl"}}},
    {"chardev", "device", {{'c', "null", NULL}}},
    {"blockdev", "device", {{'b', "disk", NULL}}},
    {"fifo", "fifo", {{'p', "pipe", NULL}}},
    {"dot", "'.' path component", {{'f', "a/./b", "x"}}},
    {"empty-component", "empty path component", {{'f', "a//b", "x"}}},
};

/* Accepted and neutralised: symlinks pointing out are kept as links (their target is
 * data, never followed on the server), a hard link inside the tree is a copy. */
static const struct ent neutral[] = {
    {'f', "README", "hello\n"},
    {'l', "abs-out", "/etc/passwd"},
    {'l', "rel-out", "../../../../etc/passwd"},
    {'d', "sub/", NULL},
    {'f', "sub/file", "inside\n"},
    {'h', "sub/hard", "sub/file"},
};

/* The entries of an OUT-relative hostile spec, with OUT replaced by the test's folder. */
static void
resolve_out(struct ent *dst, const struct ent *src, size_t n, char **hold)
{
	for (size_t i = 0; i < n; i++) {
		dst[i] = src[i];
		for (int k = 0; k < 2; k++) {
			const char *s = k == 0 ? src[i].path : src[i].data;
			if (s != NULL && strncmp(s, OUT, strlen(OUT)) == 0) {
				hold[2 * i + k] = xasprintf("%s/out%s", IT.dir, s + strlen(OUT));
				if (k == 0)
					dst[i].path = hold[2 * i + k];
				else
					dst[i].data = hold[2 * i + k];
			}
		}
	}
}

static size_t
nents(const struct ent *e, size_t max)
{
	size_t n = 0;
	while (n < max && e[n].path != NULL)
		n++;
	return n;
}

/* POSTs an archive file of the test folder to /directories as the user. */
static long
upload_dir(struct itest_resp *r, const char *file)
{
	itest_http_file(r, "POST", "/directories", IT_USER, file);
	return r->status;
}

/* POSTs a zip as the app stash's "application" part. */
static long
upload_stash(struct itest_resp *r, const char *file)
{
	size_t len;
	char *zip = itest_slurp(file, &len);
	struct buf b;

	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "application", "app.zip", zip, len);
	itest_mp_end(&b, BOUNDARY);
	rq(r, "POST", "/app_stash/entries", b.data, b.len, H_USER, MPTYPE, NULL, NULL);
	buf_free(&b);
	free(zip);
	return r->status;
}

/* Nothing named sec-evil* anywhere the archives pointed, nothing in out/, and no temp
 * file left in the store or the upload spool. */
static void
assert_nothing_outside(void)
{
	char *found = itest_sh_out("find '%s' /tmp/sec-evil-deep -name 'sec-evil*' 2>/dev/null;"
				   " ls -A out",
	    IT.dir);
	ck_assert_msg(found[0] == '\0', "written outside the store: %s", found);
	free(found);
	for (int i = 0; i < 40; i++) {
		found = itest_sh_out("find data/store/tmp data/tmp/uploads -type f 2>/dev/null");
		if (found[0] == '\0')
			break;
		free(found);
		found = NULL;
		usleep(50000);
	}
	ck_assert_msg(found != NULL && found[0] == '\0', "temp files left: %s", found);
	free(found);
}

START_TEST(test_hostile_archives)
{
	static const char *const fmts[] = {"tar", "tar.gz", "zip"};
	struct itest_resp r;
	char file[128], what[256];
	int tried = 0;

	default_config();

	ck_assert_int_eq(itest_sh("mkdir -p out"), 0);
	fails_reset();
	for (size_t i = 0; i < BV_NELEM(hostile); i++) {
		size_t n = nents(hostile[i].e, BV_NELEM(hostile[i].e));
		struct ent e[3];
		char *hold[6] = {NULL};

		resolve_out(e, hostile[i].e, n, hold);
		for (size_t f = 0; f < BV_NELEM(fmts); f++) {
			snprintf(file, sizeof file, "h-%s.%s", hostile[i].name, fmts[f]);
			if (!make_archive(file, fmts[f], e, n))
				continue; /* the format cannot say it */
			tried++;
			for (int stash = 0; stash < (strcmp(fmts[f], "zip") == 0 ? 2 : 1);
			     stash++) {
				snprintf(what, sizeof what, "%s to %s", file,
				    stash ? "/app_stash/entries" : "/directories");
				if (stash)
					upload_stash(&r, file);
				else
					upload_dir(&r, file);
				const char *msg = err_text(&r);
				if (r.status != 400)
					failf("%s: %ld, not 400: %.200s", what, r.status,
					    r.body.data);
				else if (msg == NULL || strstr(msg, hostile[i].why) == NULL)
					failf("%s: the message does not say '%s': %s", what,
					    hostile[i].why, msg ? msg : r.body.data);
				itest_resp_free(&r);
			}
		}
		for (size_t k = 0; k < BV_NELEM(hold); k++)
			free(hold[k]);
	}
	fails_check("hostile archives");
	ck_assert_int_gt(tried, 30);
	assert_nothing_outside();
}
END_TEST

/* The path of every entry of a bundle (tar.gz: "type path"), one a line. */
static char *
bundle_listing(const char *file, bool zip)
{
	return zip ? itest_sh_out("zipinfo -l '%s' | awk 'NF >= 9 && length($1) == 10 &&"
				  " $3 ~ /^[a-z][a-z][a-z]$/ { print substr($1, 1, 1), $NF }'",
			 file)
		   : itest_sh_out("tar tvzf '%s' | awk '{ print substr($1, 1, 1), $6 }'", file);
}

START_TEST(test_neutralised_archives_and_bundles)
{
	static const char *const fmts[] = {"tar", "tar.gz", "zip"};
	struct itest_resp r;
	char file[64];
	char *id = NULL;

	default_config();

	for (size_t f = 0; f < BV_NELEM(fmts); f++) {
		snprintf(file, sizeof file, "neutral.%s", fmts[f]);
		bool full = make_archive(file, fmts[f], neutral, BV_NELEM(neutral));
		if (!full) /* zip: no hard link */
			ck_assert(make_archive(file, fmts[f], neutral, BV_NELEM(neutral) - 1));
		ck_assert_msg(
		    upload_dir(&r, file) == 201, "%s: %ld %s", file, r.status, r.body.data);
		if (full && id == NULL)
			id = xstrdup(json_string_value(json_object_get(r.json, "id")));
		itest_resp_free(&r);
	}
	/* The stored tree keeps the links as links with their targets. */
	char *path = xasprintf("/directories/%s", id);
	ck_assert_int_eq(rq(&r, "GET", path, NULL, 0, NULL, NULL, NULL, NULL), 200);
	ck_assert_msg(
	    strstr(r.body.data, "abs-out") && strstr(r.body.data, "rel-out"), "%s", r.body.data);
	itest_resp_free(&r);
	free(path);
	assert_nothing_outside();

	/* Cooked bundles: no absolute path, no "..", no hard link, no device or fifo; the
	 * symlinks are symlinks (their targets are the archive's data). */
	static const char *const bfmts[] = {"tar.gz", "zip"};
	for (size_t f = 0; f < BV_NELEM(bfmts); f++) {
		char *p = xasprintf("/vault/directory/%s?format=%s", id, bfmts[f]);
		rq(&r, "POST", p, NULL, 0, H_USER, NULL, NULL, NULL);
		ck_assert_msg(
		    r.status == 201 || r.status == 200, "%s: %ld %s", p, r.status, r.body.data);
		itest_resp_free(&r);
		free(p);
		p = xasprintf("/vault/directory/%s/status?format=%s", id, bfmts[f]);
		json_t *st = itest_wait_status(p, 60);
		ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
		json_decref(st);
		free(p);
		p = xasprintf("/vault/directory/%s?format=%s", id, bfmts[f]);
		ck_assert_int_eq(rq(&r, "GET", p, NULL, 0, NULL, NULL, NULL, NULL), 200);
		snprintf(file, sizeof file, "bundle.%s", bfmts[f]);
		itest_save(&r, file);
		itest_resp_free(&r);
		free(p);
		char *list = bundle_listing(file, f == 1);
		ck_assert_msg(list[0] != '\0', "%s: empty listing", file);
		char *save = NULL, *copy = xstrdup(list);
		int links = 0;
		for (char *l = strtok_r(copy, "\n", &save); l != NULL;
		     l = strtok_r(NULL, "\n", &save)) {
			const char *name = l + 2;
			ck_assert_msg(
			    strchr("-dl", l[0]) != NULL, "%s: entry type %c: %s", file, l[0], l);
			ck_assert_msg(name[0] != '/' && strstr(name, "../") == NULL &&
				strncmp(name, "swh:1:dir:", 10) == 0,
			    "%s: entry %s", file, name);
			links += l[0] == 'l';
		}
		ck_assert_msg(links == 2, "%s: %d symlinks:\n%s", file, links, list);
		free(copy);
		free(list);
	}
	free(id);
}
END_TEST

/* ".git" and the names file systems read as ".git", in an uploaded tree: accepted as data
 * (a Vault directory is a git tree as the uploader made it; nothing on the server reads
 * it as a repository, and git's checkout refuses such paths). Requests, which extract
 * app/ next to their own app/.git, refuse them (tests/itest_requests.c). */
START_TEST(test_dotgit)
{
	static const char *const names[] = {".git/config", ".GIT/config",
	    "sub/.git/hooks/post-checkout", ".Git/x", ".git./x", "git~1/x"};
	struct itest_resp r;

	default_config();
	for (size_t i = 0; i < BV_NELEM(names); i++) {
		struct ent e[] = {
		    {'f', "README", "x"}, {'f', names[i], "[core]\n\tfsmonitor = evil\n"}};
		ck_assert(make_archive("dotgit.tar", "tar", e, 2));
		ck_assert_msg(upload_dir(&r, "dotgit.tar") == 201, "%s: %ld %s", names[i], r.status,
		    r.body.data);
		char *p =
		    xasprintf("/directories/%s", json_string_value(json_object_get(r.json, "id")));
		itest_resp_free(&r);
		ck_assert_int_eq(rq(&r, "GET", p, NULL, 0, NULL, NULL, NULL, NULL), 200);
		char *top = xstrndup(names[i], strcspn(names[i], "/"));
		ck_assert_msg(strstr(r.body.data, top) != NULL, "%s: %s", names[i], r.body.data);
		free(top);
		free(p);
		itest_resp_free(&r);
	}
	assert_nothing_outside();
}
END_TEST

/* ---- (iv) repository URLs ------------------------------------------------------------ */

#define REF "0123456789abcdef0123456789abcdef01234567"
#define SCHEMES "url must start with https://, http://, git:// or file://"

static const struct {
	const char *url, *why;
} bad_repos[] = {
    {"file:///etc", "file:// URLs are not allowed on this server"},
    {"ext::sh", SCHEMES},
    {"ext::sh -c touch% /tmp/sec-evil-ext", "must not contain spaces"},
    {"transport::https://example.com/r.git", SCHEMES},
    {"fd::17", SCHEMES},
    {"ssh://git@example.com/r.git", SCHEMES},
    {"ssh://-oProxyCommand=touch%20sec-evil/r", SCHEMES},
    {"git+ssh://example.com/r.git", SCHEMES},
    {"ssh+git://example.com/r.git", SCHEMES},
    {"git@example.com:org/r.git", SCHEMES},
    {"-uhelp", SCHEMES},
    {"/srv/git/r.git", SCHEMES},
    {"../r.git", SCHEMES},
    {"ftp://example.com/r.git", SCHEMES},
    {"https://user:sec-url-pw@example.com/r.git", "user name or password"},
    {"https://sec-url-tok@example.com/r.git", "user name or password"},
    {"https://example.com/r.git?private_token=sec-url-tok", "query string"},
    {"https://example.com/r.git#x", "query string"},
    {"https://%65xample.com/r.git", "percent-encode its host"},
    {"https:///r.git", "has no host"},
    {"https://exa\tmple.com/r.git", "must not contain spaces"},
};

/* Loads: refused by the API (400) before any job exists, with the reason, never the URL. */
START_TEST(test_load_urls)
{
	struct itest_resp r;

	default_config();

	for (size_t i = 0; i < BV_NELEM(bad_repos); i++) {
		json_t *b = json_pack("{s:s}", "url", bad_repos[i].url);
		char *text = json_dumps(b, JSON_COMPACT);
		rq(&r, "POST", "/loads", text, strlen(text), H_USER, JSONTYPE, NULL, NULL);
		ck_assert_msg(
		    r.status == 400, "%s: %ld %s", bad_repos[i].url, r.status, r.body.data);
		ck_assert_msg(
		    err_text(&r) != NULL && strstr(err_text(&r), bad_repos[i].why) != NULL,
		    "%s: %s", bad_repos[i].url, r.body.data);
		ck_assert_msg(
		    strstr(r.body.data, "sec-url-") == NULL, "%s echoed", bad_repos[i].url);
		itest_resp_free(&r);
		json_decref(b);
		free(text);
	}
	char *n = itest_sql("SELECT count(*) FROM jobs WHERE kind = 'load'");
	ck_assert_str_eq(n, "0");
	free(n);
}
END_TEST

/* Cachito requests: credentials are refused by the API (the request would show them);
 * other URLs are Cachito's to accept, and the worker fails the request with the reason
 * before it touches the network. */
START_TEST(test_request_urls)
{
	struct itest_resp r;
	json_int_t ids[BV_NELEM(bad_repos)];

	default_config();

	for (size_t i = 0; i < BV_NELEM(bad_repos); i++) {
		json_t *b = json_pack("{s:s, s:s, s:[s]}", "repo", bad_repos[i].url, "ref", REF,
		    "pkg_managers", "git-submodule");
		char *text = json_dumps(b, JSON_COMPACT);
		bool has_creds = strcmp(bad_repos[i].why, "user name or password") == 0;
		ids[i] = 0;
		rq(&r, "POST", "/api/v1/requests", text, strlen(text), H_USER, JSONTYPE, NULL,
		    NULL);
		if (has_creds) {
			ck_assert_msg(r.status == 400, "%s: %ld", bad_repos[i].url, r.status);
			ck_assert_str_eq(err_text(&r),
			    "The repo URL must not carry a user name or "
			    "password: they would be stored and shown "
			    "with the request");
			ck_assert_msg(strstr(r.body.data, "sec-url-") == NULL, "echoed");
		} else {
			ck_assert_msg(
			    r.status == 201, "%s: %ld %s", bad_repos[i].url, r.status, r.body.data);
			ids[i] = json_integer_value(json_object_get(r.json, "id"));
		}
		itest_resp_free(&r);
		json_decref(b);
		free(text);
	}
	for (size_t i = 0; i < BV_NELEM(bad_repos); i++) {
		if (ids[i] == 0)
			continue;
		char *p = xasprintf("/api/v1/requests/%lld", (long long)ids[i]);
		const char *state = NULL, *reason = NULL;
		for (int t = 0; t < 600; t++) {
			itest_resp_free(&r);
			rq(&r, "GET", p, NULL, 0, NULL, NULL, NULL, NULL);
			state = json_string_value(json_object_get(r.json, "state"));
			reason = json_string_value(json_object_get(r.json, "state_reason"));
			if (state != NULL &&
			    (strcmp(state, "failed") == 0 || strcmp(state, "complete") == 0))
				break;
			usleep(50000);
		}
		ck_assert_msg(state != NULL && strcmp(state, "failed") == 0, "%s: %s",
		    bad_repos[i].url, r.body.data);
		ck_assert_msg(reason != NULL &&
			strstr(reason, "The repository cannot be fetched: ") != NULL &&
			strstr(reason, bad_repos[i].why) != NULL,
		    "%s: %s", bad_repos[i].url, reason ? reason : r.body.data);
		itest_resp_free(&r);
		free(p);
	}
	char *n = itest_sh_out("find . /tmp -maxdepth 3 -name 'sec-evil*' 2>/dev/null | head -3");
	ck_assert_msg(n[0] == '\0', "%s", n);
	free(n);
}
END_TEST

/* ---- (v) notify_url and private addresses -------------------------------------------- */

/* A listening loopback socket (its port in *port). */
static int
listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 8) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Waits up to ms for a connection on fd; answers it 200 when one comes. */
static bool
accept_one(int fd, int ms)
{
	fd_set set;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	char buf[8192];

	FD_ZERO(&set);
	FD_SET(fd, &set);
	if (select(fd + 1, &set, NULL, NULL, &tv) <= 0)
		return false;
	int c = accept(fd, NULL, NULL);
	if (c < 0)
		return false;
	usleep(100000);
	ssize_t n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
	(void)n;
	static const char ok[] =
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	n = send(c, ok, sizeof ok - 1, 0);
	close(c);
	return true;
}

/* The state and last error of the notification row of url, once it is not pending. */
static char *
notification(const char *url, int timeout_s)
{
	char *sql =
	    xasprintf("SELECT state || ': ' || coalesce(last_error, '') FROM job_notifications"
		      " WHERE url = '%s'",
		url);
	char *v = NULL;

	for (int i = 0; i < timeout_s * 10; i++) {
		free(v);
		v = itest_sql(sql);
		if (v[0] != '\0' && strncmp(v, "pending", 7) != 0)
			break;
		usleep(100000);
	}
	free(sql);
	return v;
}

/* Asks for a cook of id with a notify_url. */
static void
cook_notify(const char *id, const char *url)
{
	struct itest_resp r;
	char *p = xasprintf("/vault/directory/%s", id);
	char *body = xasprintf("{\"notify_url\":\"%s\"}", url);

	rq(&r, "POST", p, body, strlen(body), H_USER, JSONTYPE, NULL, NULL);
	ck_assert_msg(r.status == 201 || r.status == 200, "%ld %s", r.status, r.body.data);
	itest_resp_free(&r);
	free(body);
	free(p);
}

START_TEST(test_notify_private)
{
	int port, fd = listener(&port);
	char *id, *url, *v;

	default_config();

	id = itest_make_tree("notify", 10);
	free(id);
	id = itest_upload_tree("notify");
	/* Off (the default): loopback, link-local (cloud metadata) and private targets are
	 * never connected to; the row fails with the reason. */
	const char *targets[][3] = {{"http://127.0.0.1:", "/hook", "loopback"},
	    {"http://[::1]:", "/hook", "loopback"},
	    {"http://169.254.169.254:", "/latest", "link-local"},
	    {"http://10.1.2.3:", "/hook", "private"}, {"http://localhost:", "/hook", "loopback"}};
	for (size_t i = 0; i < BV_NELEM(targets); i++) {
		url = xasprintf("%s%d%s", targets[i][0], port, targets[i][1]);
		cook_notify(id, url);
		v = notification(url, 30);
		ck_assert_msg(strncmp(v, "failed: ", 8) == 0 && strstr(v, targets[i][2]) != NULL &&
			strstr(v, "notify_allow_private") != NULL,
		    "%s: %s", url, v);
		free(v);
		free(url);
	}
	ck_assert_msg(!accept_one(fd, 200), "the worker connected to a loopback notify_url");
	/* On: delivered. */
	itest_stop_worker(0, SIGTERM);
	itest_env("BITSVAULT_NOTIFY_ALLOW_PRIVATE=true");
	itest_start_worker("sec-w2");
	IT.nextra--;
	url = xasprintf("http://127.0.0.1:%d/allowed", port);
	cook_notify(id, url);
	ck_assert_msg(accept_one(fd, 30000), "no notification with notify_allow_private on");
	v = notification(url, 30);
	ck_assert_msg(strncmp(v, "sent", 4) == 0, "%s", v);
	free(v);
	free(url);
	close(fd);
	free(id);
}
END_TEST

/* ---- the program --------------------------------------------------------------------- */

/* "Authorization: Basic <base64 of userpass>" into out. */
static void
basic_header(char *out, size_t size, const char *userpass)
{
	unsigned char b64[96];

	EVP_EncodeBlock(b64, (const unsigned char *)userpass, (int)strlen(userpass));
	snprintf(out, size, "Authorization: Basic %s", b64);
}

static void
setup(void)
{
	itest_init("security", 20);
	basic_header(h_signer, sizeof h_signer, SIGNER);
	basic_header(h_arch, sizeof h_arch, ARCHIVER);
	basic_header(h_badbasic, sizeof h_badbasic, "signer:sec-not-the-password");
	/* Credentials the test sends but the server does not know: given to itest_env only
	 * so that the harness's teardown also looks for them in the logs (base_env drops
	 * them from the servers' environment). */
	itest_env("SEC_PROBE_TOKEN=" WRONG);
	itest_env("SEC_PROBE_PASSWORD=sec-not-the-password," SIGNER_PW "," ARCH_PW);
	base_env();
	itest_start_api();
	itest_start_worker("sec-w1");
	load_routes();
	buf_init(&fails);
}

int
main(void)
{
	Suite *s = suite_create("itest_security");
	TCase *tc = tcase_create("security");

	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_route_table);
	tcase_add_test(tc, test_every_route_every_caller);
	tcase_add_test(tc, test_role_sentences);
	tcase_add_test(tc, test_hosts_and_closed_reads);
	tcase_add_test(tc, test_bits_auth_modes);
	tcase_add_test(tc, test_signed_urls);
	tcase_add_test(tc, test_hostile_archives);
	tcase_add_test(tc, test_neutralised_archives_and_bundles);
	tcase_add_test(tc, test_dotgit);
	tcase_add_test(tc, test_load_urls);
	tcase_add_test(tc, test_request_urls);
	tcase_add_test(tc, test_notify_private);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
