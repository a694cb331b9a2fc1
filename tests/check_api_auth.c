/* check_api_auth.c: the API's pure helpers: tokens to roles and access rules
 * (api/auth.c), query parameters, object ids, UTF-8 checks, secret redaction, hidden
 * paths and timestamps (api/call.c), listen addresses, Content-Length values and the
 * connection cap (api/http.c), and the check of a worker's PATCH body (api/jobjson.c). */
#include <check.h>
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/bitsauth.h"
#include "api/bitsup.h"
#include "api/call.h"
#include "api/http.h"
#include "api/jobjson.h"
#include "api/pool.h"

#define ADMIN "admin-token-0123456789"
#define WORKER "worker-token-0123456789"

/* A config with every token set. */
static void
test_config(struct config *cfg, bool anonymous_read)
{
	config_defaults(cfg);
	free(cfg->admin_token);
	cfg->admin_token = strdup(ADMIN);
	free(cfg->worker_token);
	cfg->worker_token = strdup(WORKER);
	free(cfg->user_tokens);
	cfg->user_tokens = strdup(" u1 ,u2,,u3");
	free(cfg->database_url);
	cfg->database_url = strdup("postgresql://bv:s3cr%t@db.example:5432/bitsvault");
	cfg->anonymous_read = anonymous_read;
}

/* Authorization header values to roles. */
START_TEST(test_roles)
{
	struct config cfg;
	struct auth *a;

	test_config(&cfg, true);
	a = auth_new(&cfg);
	ck_assert_int_eq(auth_role_of(a, NULL), AUTH_ANONYMOUS);
	ck_assert_int_eq(auth_role_of(a, "Bearer " ADMIN), AUTH_ADMIN);
	ck_assert_int_eq(auth_role_of(a, "bearer  " WORKER " "), AUTH_WORKER);
	ck_assert_int_eq(auth_role_of(a, "Bearer u1"), AUTH_USER);
	ck_assert_int_eq(auth_role_of(a, "Bearer u2"), AUTH_USER);
	ck_assert_int_eq(auth_role_of(a, "Bearer u3"), AUTH_USER);
	ck_assert_int_eq(auth_role_of(a, "Bearer u"), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, "Bearer u1 "), AUTH_USER);
	ck_assert_int_eq(auth_role_of(a, "Bearer " ADMIN "x"), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, "Bearer"), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, "Bearer "), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, "Basic dTE6"), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, "Beareru1"), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, ""), AUTH_INVALID);
	ck_assert_str_eq(auth_role_name(AUTH_WORKER), "worker");
	auth_free(a);
	config_free(&cfg);
}
END_TEST

/* Empty token settings disable a role instead of matching an empty token. */
START_TEST(test_empty_tokens)
{
	struct config cfg;
	struct auth *a;

	config_defaults(&cfg);
	a = auth_new(&cfg);
	ck_assert_int_eq(auth_role_of(a, "Bearer "), AUTH_INVALID);
	ck_assert_int_eq(auth_role_of(a, "Bearer x"), AUTH_INVALID);
	auth_free(a);
	config_free(&cfg);
}
END_TEST

/* The access rules: 401 without or with a bad token, 403 for the wrong role. */
START_TEST(test_access)
{
	static const struct {
		bool anon_read;
		enum auth_role role;
		enum auth_access access;
		int want;
		bool anon_cook;
	} cases[] = {
	    {true, AUTH_ANONYMOUS, ACCESS_READ, 0, false},
	    {false, AUTH_ANONYMOUS, ACCESS_READ, 401, false},
	    {false, AUTH_USER, ACCESS_READ, 0, false},
	    {false, AUTH_WORKER, ACCESS_READ, 0, false},
	    {true, AUTH_INVALID, ACCESS_READ, 401, false},
	    {true, AUTH_ANONYMOUS, ACCESS_USER, 401, false},
	    {true, AUTH_USER, ACCESS_USER, 0, false},
	    {true, AUTH_ADMIN, ACCESS_USER, 0, false},
	    {true, AUTH_WORKER, ACCESS_USER, 403, false},
	    {true, AUTH_WORKER, ACCESS_WORKER, 0, false},
	    {true, AUTH_ADMIN, ACCESS_WORKER, 403, false},
	    {true, AUTH_USER, ACCESS_WORKER, 403, false},
	    {true, AUTH_ANONYMOUS, ACCESS_WORKER, 401, false},
	    {true, AUTH_WORKER, ACCESS_WORKER_ADMIN, 0, false},
	    {true, AUTH_ADMIN, ACCESS_WORKER_ADMIN, 0, false},
	    {true, AUTH_USER, ACCESS_WORKER_ADMIN, 403, false},
	    {true, AUTH_ADMIN, ACCESS_ADMIN, 0, false},
	    {true, AUTH_USER, ACCESS_ADMIN, 403, false},
	    {true, AUTH_WORKER, ACCESS_ADMIN, 403, false},
	    {true, AUTH_ANONYMOUS, ACCESS_ADMIN, 401, false},
	    /* SWH's cook paths: a token, unless anonymous_cook opens them */
	    {true, AUTH_ANONYMOUS, ACCESS_COOK, 401, false},
	    {true, AUTH_ANONYMOUS, ACCESS_COOK, 0, true},
	    {true, AUTH_USER, ACCESS_COOK, 0, false},
	    {true, AUTH_ADMIN, ACCESS_COOK, 0, false},
	    {true, AUTH_WORKER, ACCESS_COOK, 403, true},
	    {true, AUTH_INVALID, ACCESS_COOK, 401, true},
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config cfg;
		struct auth *a;
		const char *msg = NULL;

		test_config(&cfg, cases[i].anon_read);
		cfg.anonymous_cook = cases[i].anon_cook;
		a = auth_new(&cfg);
		ck_assert_msg(auth_check(a, cases[i].role, cases[i].access, &msg) == cases[i].want,
		    "case %zu", i);
		if (cases[i].want != 0)
			ck_assert_ptr_nonnull(msg);
		auth_free(a);
		config_free(&cfg);
	}
}
END_TEST

/* Names: "name:token" user entries, a bare token is "user", admin and worker by role; a
 * proxy's user header only without a token, only when configured, only when printable. */
START_TEST(test_identity)
{
	struct config cfg;
	struct auth *a;
	const char *name = NULL;

	config_defaults(&cfg);
	free(cfg.admin_token);
	cfg.admin_token = strdup(ADMIN);
	free(cfg.worker_token);
	cfg.worker_token = strdup(WORKER);
	free(cfg.user_tokens);
	cfg.user_tokens = strdup(" alice : ta ,tb,:tc, osbs:to");
	a = auth_new(&cfg);
	ck_assert_int_eq(auth_identify(a, "Bearer ta", NULL, &name), AUTH_USER);
	ck_assert_str_eq(name, "alice");
	ck_assert_int_eq(auth_identify(a, "Bearer tb", NULL, &name), AUTH_USER);
	ck_assert_str_eq(name, "user");
	ck_assert_int_eq(auth_identify(a, "Bearer tc", NULL, &name), AUTH_USER);
	ck_assert_str_eq(name, "user");
	ck_assert_int_eq(auth_identify(a, "Bearer alice:ta", NULL, &name), AUTH_INVALID);
	ck_assert_ptr_null(name);
	ck_assert_int_eq(auth_identify(a, "Bearer " ADMIN, NULL, &name), AUTH_ADMIN);
	ck_assert_str_eq(name, "admin");
	ck_assert_int_eq(auth_identify(a, "Bearer " WORKER, NULL, &name), AUTH_WORKER);
	ck_assert_str_eq(name, "worker");
	/* no header configured: a proxy's value is ignored */
	ck_assert_int_eq(auth_identify(a, NULL, "carol", &name), AUTH_ANONYMOUS);
	ck_assert_ptr_null(name);
	ck_assert_ptr_null(auth_user_header(a));
	ck_assert(!auth_is_representative(a, "osbs"));
	auth_free(a);

	free(cfg.request_user_header);
	cfg.request_user_header = strdup("X-Remote-User");
	free(cfg.request_representatives);
	cfg.request_representatives = strdup("osbs, admin");
	a = auth_new(&cfg);
	ck_assert_str_eq(auth_user_header(a), "X-Remote-User");
	ck_assert_int_eq(auth_identify(a, NULL, "carol@EXAMPLE.COM", &name), AUTH_PROXY_USER);
	ck_assert_str_eq(name, "carol@EXAMPLE.COM");
	ck_assert_int_eq(auth_identify(a, "Bearer ta", "carol", &name), AUTH_USER);
	ck_assert_str_eq(name, "alice");
	ck_assert_int_eq(auth_identify(a, NULL, "", &name), AUTH_ANONYMOUS);
	ck_assert_int_eq(auth_identify(a, NULL, "bad\tname", &name), AUTH_ANONYMOUS);
	ck_assert_int_eq(auth_identify(a, NULL, NULL, &name), AUTH_ANONYMOUS);
	ck_assert(auth_is_representative(a, "osbs"));
	ck_assert(auth_is_representative(a, "admin"));
	ck_assert(!auth_is_representative(a, "alice"));
	ck_assert(!auth_is_representative(a, "osb"));
	ck_assert(!auth_is_representative(a, NULL));
	ck_assert_str_eq(auth_role_name(AUTH_PROXY_USER), "proxy-user");
	auth_free(a);
	config_free(&cfg);
}
END_TEST

/* Cachito's routes: creating requests and the worker-only routes. */
START_TEST(test_request_access)
{
	static const struct {
		bool anon_create;
		enum auth_role role;
		enum auth_access access;
		int want;
		const char *msg;
	} cases[] = {
	    {false, AUTH_USER, ACCESS_REQUEST_CREATE, 0, NULL},
	    {false, AUTH_ADMIN, ACCESS_REQUEST_CREATE, 0, NULL},
	    {false, AUTH_PROXY_USER, ACCESS_REQUEST_CREATE, 0, NULL},
	    {false, AUTH_ANONYMOUS, ACCESS_REQUEST_CREATE, 401, NULL},
	    {true, AUTH_ANONYMOUS, ACCESS_REQUEST_CREATE, 0, NULL},
	    {true, AUTH_INVALID, ACCESS_REQUEST_CREATE, 401, NULL},
	    {true, AUTH_WORKER, ACCESS_REQUEST_CREATE, 403, NULL},
	    {false, AUTH_WORKER, ACCESS_CACHITO_WORKER, 0, NULL},
	    {false, AUTH_USER, ACCESS_CACHITO_WORKER, 403,
		"This API endpoint is restricted to Cachito workers"},
	    {false, AUTH_ADMIN, ACCESS_CACHITO_WORKER, 403,
		"This API endpoint is restricted to Cachito workers"},
	    {false, AUTH_ANONYMOUS, ACCESS_CACHITO_WORKER, 401, NULL},
	    {false, AUTH_PROXY_USER, ACCESS_CACHITO_WORKER, 401, NULL},
	    {false, AUTH_PROXY_USER, ACCESS_USER, 401, NULL},
	    {false, AUTH_PROXY_USER, ACCESS_READ, 0, NULL},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		struct config cfg;
		struct auth *a;
		const char *msg = NULL;

		test_config(&cfg, true);
		cfg.request_anonymous_create = cases[i].anon_create;
		a = auth_new(&cfg);
		ck_assert_msg(auth_check(a, cases[i].role, cases[i].access, &msg) == cases[i].want,
		    "case %zu", i);
		if (cases[i].msg != NULL)
			ck_assert_str_eq(msg, cases[i].msg);
		auth_free(a);
		config_free(&cfg);
	}
}
END_TEST

/* Query parameters: first occurrence, form decoding, malformed escapes. */
START_TEST(test_query)
{
	struct call *c = call_new(NULL, NULL, NULL, "t");
	char *v;

	c->query = strdup("a=1&format=tar.gz&format=zip&sp=a+b%21&empty=&flag");
	ck_assert(call_query_param(c, "format", &v));
	ck_assert_str_eq(v, "tar.gz");
	free(v);
	ck_assert(call_query_param(c, "sp", &v));
	ck_assert_str_eq(v, "a b!");
	free(v);
	ck_assert(call_query_param(c, "empty", &v));
	ck_assert_str_eq(v, "");
	free(v);
	ck_assert(call_query_param(c, "flag", &v));
	ck_assert_str_eq(v, "");
	free(v);
	ck_assert(call_query_param(c, "missing", &v));
	ck_assert_ptr_null(v);
	free(c->query);
	c->query = strdup("format=%zz");
	ck_assert(!call_query_param(c, "format", &v));
	ck_assert_int_eq(c->resp.status, 400);
	call_free(c);
}
END_TEST

/* Object ids: hex in any case or a SWHID of the right type. */
START_TEST(test_object_ids)
{
	static const char *hex = "28d91f7b59b90ee5e625fccb66bd8446c5757e11";
	struct call *c = call_new(NULL, NULL, NULL, "t");

	ck_assert(call_parse_object(c, "directory", "28D91F7B59B90EE5E625FCCB66BD8446C5757E11"));
	ck_assert_str_eq(c->obj_hex, hex);
	ck_assert_str_eq(c->swhid, "swh:1:dir:28d91f7b59b90ee5e625fccb66bd8446c5757e11");
	ck_assert(call_parse_object(
	    c, "directory", "swh:1:dir:28d91f7b59b90ee5e625fccb66bd8446c5757e11"));
	ck_assert(
	    call_parse_object(c, "revision", "swh:1:rev:28d91f7b59b90ee5e625fccb66bd8446c5757e11"));
	ck_assert_str_eq(c->swhid, "swh:1:rev:28d91f7b59b90ee5e625fccb66bd8446c5757e11");
	ck_assert(!call_parse_object(
	    c, "directory", "swh:1:rev:28d91f7b59b90ee5e625fccb66bd8446c5757e11"));
	ck_assert_int_eq(c->resp.status, 400);
	resp_clear(&c->resp);
	resp_init(&c->resp);
	ck_assert(!call_parse_object(c, "directory", "28d91f7b"));
	resp_clear(&c->resp);
	resp_init(&c->resp);
	ck_assert(!call_parse_object(c, "blob", hex));
	call_free(c);
}
END_TEST

/* Strict UTF-8. */
START_TEST(test_utf8)
{
	ck_assert(call_utf8_valid("plain", 5));
	ck_assert(call_utf8_valid("\xc3\xa9t\xc3\xa9", 6));
	ck_assert(call_utf8_valid("\xf0\x9f\x98\x80", 4));
	ck_assert(!call_utf8_valid("\xc3", 1)); /* truncated */
	ck_assert(!call_utf8_valid("\xe9t\xe9", 3)); /* latin-1 */
	ck_assert(!call_utf8_valid("\xc0\xaf", 2)); /* overlong '/' */
	ck_assert(!call_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
	ck_assert(!call_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	ck_assert(!call_utf8_valid("\xe2\x82", 2));
}
END_TEST

/* Secrets never survive in a message, and messages become one line. */
START_TEST(test_redact)
{
	struct config cfg;
	char *s;

	test_config(&cfg, true);
	s = call_redact(&cfg, "bad url postgresql://bv:s3cr%t@db.example:5432\n\tand " ADMIN);
	ck_assert_ptr_null(strstr(s, "s3cr%t"));
	ck_assert_ptr_null(strstr(s, ADMIN));
	ck_assert_ptr_null(strchr(s, '\n'));
	ck_assert_ptr_nonnull(strstr(s, "bv:***@db.example"));
	free(s);
	free(cfg.database_url);
	cfg.database_url = strdup("host=db user=bv password='p w' dbname=x");
	s = call_redact(&cfg, "conninfo host=db user=bv password='p w' dbname=x");
	ck_assert_ptr_null(strstr(s, "p w"));
	free(s);
	config_free(&cfg);
}
END_TEST

/* ISO-8601 in UTC. */
START_TEST(test_iso8601)
{
	char out[32];

	call_iso8601(315532800.25, out);
	ck_assert_str_eq(out, "1980-01-01T00:00:00Z");
}
END_TEST

/* Listen addresses. */
START_TEST(test_listen)
{
	char *host;
	int port;

	ck_assert(http_parse_listen("127.0.0.1:8080", &host, &port));
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_int_eq(port, 8080);
	free(host);
	ck_assert(http_parse_listen("[::1]:80", &host, &port));
	ck_assert_str_eq(host, "::1");
	ck_assert_int_eq(port, 80);
	free(host);
	ck_assert(http_parse_listen(":0", &host, &port));
	ck_assert_str_eq(host, "");
	ck_assert_int_eq(port, 0);
	free(host);
	ck_assert(http_parse_listen("localhost:9", &host, &port));
	free(host);
	ck_assert(!http_parse_listen("::1:80", &host, &port));
	ck_assert(!http_parse_listen("[]:80", &host, &port));
	ck_assert(!http_parse_listen("[::1]80", &host, &port));
	ck_assert(!http_parse_listen("host:", &host, &port));
	ck_assert(!http_parse_listen("host:65536", &host, &port));
	ck_assert(!http_parse_listen("host:8x", &host, &port));
	ck_assert(!http_parse_listen("host", &host, &port));
	ck_assert(!http_parse_listen("", &host, &port));
}
END_TEST

/* Server paths never reach a client: the spool file and the data folder are hidden. */
START_TEST(test_hide_paths)
{
	struct config cfg;
	char *s;

	test_config(&cfg, true);
	free(cfg.data_dir);
	cfg.data_dir = strdup("/srv/bv");
	s = call_hide_paths(&cfg,
	    "cannot read /srv/bv/tmp/uploads/upload-AbC123: bad; see /srv/bv/store and " ADMIN,
	    "/srv/bv/tmp/uploads/upload-AbC123");
	ck_assert_str_eq(s, "cannot read the upload: bad; see <data_dir>/store and ***");
	free(s);
	s = call_hide_paths(&cfg, "absolute path in entry '/etc/passwd'", NULL);
	ck_assert_str_eq(s, "absolute path in entry '/etc/passwd'");
	free(s);
	config_free(&cfg);
}
END_TEST

/* Content-Length values: digits only, unsigned, no overflow (2^63 is a length, not a
 * negative number). */
static const struct {
	const char *in;
	bool ok;
	uint64_t want;
} clen_cases[] = {
    {"0", true, 0},
    {"42", true, 42},
    {" 42\t", true, 42},
    {"9223372036854775808", true, 9223372036854775808ULL},
    {"18446744073709551615", true, UINT64_MAX},
    {"18446744073709551616", false, 0},
    {"99999999999999999999999", false, 0},
    {"", false, 0},
    {" ", false, 0},
    {"-1", false, 0},
    {"+1", false, 0},
    {"1x", false, 0},
    {"1 2", false, 0},
    {"0x10", false, 0},
};

START_TEST(test_content_length)
{
	uint64_t v = 12345;
	bool ok = http_parse_content_length(clen_cases[_i].in, &v);

	ck_assert_msg(ok == clen_cases[_i].ok, "'%s'", clen_cases[_i].in);
	if (ok)
		ck_assert_uint_eq(v, clen_cases[_i].want);
	else
		ck_assert_uint_eq(v, 12345); /* untouched on failure */
}
END_TEST

/* The connection cap: half of what the reserve leaves, within [16, HTTP_MAX_CONNECTIONS]. */
START_TEST(test_connection_cap)
{
	ck_assert_int_eq(http_connection_cap(1024, 72), 476);
	ck_assert_int_eq(http_connection_cap(200, 72), 64);
	ck_assert_int_eq(http_connection_cap(64, 72), 16);
	ck_assert_int_eq(http_connection_cap(0, 72), 16);
	ck_assert_int_eq(http_connection_cap(UINT64_MAX, 72), HTTP_MAX_CONNECTIONS);
	ck_assert_int_eq(http_connection_cap(1048576, 72), HTTP_MAX_CONNECTIONS);
	ck_assert_int_eq(http_connection_cap(1000, -5), 500);
}
END_TEST

/* A worker's PATCH body: NULL when accepted, else a message naming the problem. */
static const struct {
	const char *body; /* JSON; NULL for no body */
	const char *error; /* substring of the message, NULL when accepted */
} patch_cases[] = {
    {"{}", NULL},
    {"{\"state\":\"running\",\"worker\":\"w1\"}", NULL},
    {"{\"state\":null,\"error\":null,\"result\":null}", NULL},
    {"{\"state\":\"done\",\"result\":{\"bundle_sha256\":\"ab\",\"bundle_size\":1}}", NULL},
    {NULL, "must be a JSON object"},
    {"[]", "must be a JSON object"},
    {"{\"status\":\"done\"}", "unknown key 'status'"},
    {"{\"state\":1}", "state must be a string"},
    {"{\"result\":\"x\"}", "result must be an object"},
    {"{\"state\":\"finished\"}", "unknown state 'finished'"},
    {"{\"worker\":\"<W128>\"}", NULL},
    {"{\"worker\":\"<W129>\"}", "worker is too long: at most 128 bytes"},
    {"{\"progress_message\":\"<P1024>\"}", NULL},
    {"{\"progress_message\":\"<P1025>\"}", "progress_message is too long: at most 1024 bytes"},
    {"{\"error\":\"<E4096>\"}", NULL},
    {"{\"error\":\"<E4097>\"}", "error is too long: at most 4096 bytes"},
};

/* Expands "<Xn>" in a case's body into n copies of 'x'. */
static char *
expand_body(const char *tmpl)
{
	const char *lt = strchr(tmpl, '<'), *gt;
	size_t n, head;
	char *out;

	if (lt == NULL)
		return strdup(tmpl);
	gt = strchr(lt, '>');
	n = strtoul(lt + 2, NULL, 10);
	head = (size_t)(lt - tmpl);
	out = malloc(head + n + strlen(gt + 1) + 1);
	memcpy(out, tmpl, head);
	memset(out + head, 'x', n);
	strcpy(out + head + n, gt + 1);
	return out;
}

START_TEST(test_patch_check)
{
	json_t *body = NULL;
	char *text, *msg;

	if (patch_cases[_i].body != NULL) {
		text = expand_body(patch_cases[_i].body);
		body = json_loads(text, 0, NULL);
		ck_assert_ptr_nonnull(body);
		free(text);
	}
	msg = jobjson_patch_check(body);
	if (patch_cases[_i].error == NULL) {
		ck_assert_msg(msg == NULL, "case %d: unexpected '%s'", _i, msg);
	} else {
		ck_assert_ptr_nonnull(msg);
		ck_assert_msg(strstr(msg, patch_cases[_i].error) != NULL, "case %d: '%s'", _i, msg);
	}
	free(msg);
	json_decref(body);
}
END_TEST

/* Range headers (RFC 9110 §14), the forms the Bits and CF downloads accept. */
START_TEST(test_range)
{
	static const struct {
		const char *hdr;
		uint64_t size;
		int rc;
		uint64_t start, len;
	} cases[] = {
	    {NULL, 100, 0, 0, 0},
	    {"bytes=0-0", 100, 1, 0, 1},
	    {"bytes=0-", 100, 1, 0, 100},
	    {"bytes=10-19", 100, 1, 10, 10},
	    {"bytes=90-500", 100, 1, 90, 10},
	    {"bytes=-5", 100, 1, 95, 5},
	    {"bytes=-500", 100, 1, 0, 100},
	    {"BYTES=1-2", 100, 1, 1, 2},
	    {"bytes= 1-2 ", 100, 1, 1, 2},
	    {"bytes=100-", 100, -1, 0, 0},
	    {"bytes=-0", 100, -1, 0, 0},
	    {"bytes=0-0", 0, -1, 0, 0},
	    {"bytes=5-1", 100, 0, 0, 0},
	    {"bytes=0-1,5-6", 100, 0, 0, 0},
	    {"items=0-1", 100, 0, 0, 0},
	    {"bytes=a-b", 100, 0, 0, 0},
	    {"bytes=-", 100, 0, 0, 0},
	    {"bytes=0-18446744073709551615", 100, 1, 0, 100},
	    {"bytes=0-18446744073709551616", 100, 0, 0, 0},
	    {"bytes=18446744073709551615-", 100, -1, 0, 0},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		uint64_t start = 0, len = 0;
		int rc = resp_parse_range(cases[i].hdr, cases[i].size, &start, &len);
		ck_assert_msg(
		    rc == cases[i].rc, "%s: %d", cases[i].hdr ? cases[i].hdr : "(none)", rc);
		if (rc == 1)
			ck_assert_msg(start == cases[i].start && len == cases[i].len,
			    "%s: %llu+%llu", cases[i].hdr, (unsigned long long)start,
			    (unsigned long long)len);
	}
	/* Random bytes: never out of the body. */
	unsigned int seed = 99;
	for (int round = 0; round < 20000; round++) {
		char h[24];
		static const char pick[] = "bytes=0123456789-, ";
		size_t n = (size_t)(rand_r(&seed) % 20);
		for (size_t k = 0; k < n; k++)
			h[k] = pick[rand_r(&seed) % (sizeof pick - 1)];
		h[n] = '\0';
		uint64_t size = (uint64_t)(rand_r(&seed) % 50), start = 0, len = 0;
		if (resp_parse_range(h, size, &start, &len) == 1)
			ck_assert_msg(len > 0 && start + len <= size, "%s (size %llu)", h,
			    (unsigned long long)size);
	}
}
END_TEST

/* The Bits host rule: case, one trailing dot, ports only when configured. */
START_TEST(test_bits_host_is)
{
	static const struct {
		const char *host, *want;
		bool same;
	} cases[] = {
	    {"pub.example", "pub.example", true},
	    {"PUB.Example.", "pub.example", true},
	    {"pub.example:8080", "pub.example", true},
	    {"pub.example.:8080", "pub.example:8080", true},
	    {"pub.example:81", "pub.example:8080", false},
	    {"pub.example", "pub.example:8080", false},
	    {"pub.examplex", "pub.example", false},
	    {"xpub.example", "pub.example", false},
	    {"pub.example..", "pub.example", false},
	    {"10.0.0.1", "pub.example", false},
	    {"[::1]:80", "[::1]", true},
	    {"[::1]:81", "[::1]:80", false},
	    {"", "pub.example", false},
	    {NULL, "pub.example", false},
	    {"pub.example", "", false},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++)
		ck_assert_msg(bitsauth_host_is(cases[i].host, cases[i].want) == cases[i].same,
		    "%s vs %s", cases[i].host ? cases[i].host : "(null)", cases[i].want);
}
END_TEST

/* bits_private_auth none beside a public host is refused at start: one listener serves
 * both, and a client picks its Host header. Bad keys and users are refused too, without
 * echoing a secret. */
START_TEST(test_bits_auth_config)
{
	struct config cfg;
	struct bitsauth *b;
	char *err = NULL;

	config_defaults(&cfg);
	b = bitsauth_new(&cfg, &err);
	ck_assert_ptr_nonnull(b);
	bitsauth_free(b);
	free(cfg.bits_private_auth);
	cfg.bits_private_auth = xstrdup("none");
	free(cfg.bits_public_host);
	cfg.bits_public_host = xstrdup("pub.example");
	ck_assert_ptr_null(bitsauth_new(&cfg, &err));
	ck_assert_msg(strstr(err, "cannot be used with bits_public_host") != NULL, "%s", err);
	free(err);
	err = NULL;
	free(cfg.bits_private_auth);
	cfg.bits_private_auth = xstrdup("basic");
	ck_assert_ptr_null(bitsauth_new(&cfg, &err)); /* basic without users */
	free(err);
	err = NULL;
	free(cfg.bits_signing_users);
	cfg.bits_signing_users = xstrdup("admin:s3cret-pw");
	free(cfg.bits_signing_keys);
	cfg.bits_signing_keys = xstrdup("k1:topsecret");
	ck_assert_ptr_null(bitsauth_new(&cfg, &err)); /* keys without an active key */
	ck_assert_msg(strstr(err, "topsecret") == NULL && strstr(err, "s3cret") == NULL, "%s", err);
	free(err);
	err = NULL;
	free(cfg.bits_active_key_id);
	cfg.bits_active_key_id = xstrdup("k1");
	b = bitsauth_new(&cfg, &err);
	ck_assert_msg(b != NULL, "%s", err);
	bitsauth_free(b);
	free(cfg.bits_private_auth);
	cfg.bits_private_auth = xstrdup("open");
	ck_assert_ptr_null(bitsauth_new(&cfg, &err));
	free(err);
	config_free(&cfg);
}
END_TEST

/* Found by tests/fuzz/fuzz_request: a Bits error quoting a client's bytes that are not
 * UTF-8 (a package's "resources" field, cut at 200 bytes) made resp_json abort the whole
 * server. The status stays, the message becomes a generic one, the body is JSON. */
START_TEST(test_bitsup_error_utf8)
{
	struct resp rs;
	json_t *v;

	resp_init(&rs);
	bitsup_error(&rs, 422, 0, "payload could not be parsed: '%.200s'", "not json \xe2\x82");
	ck_assert_int_eq(rs.status, 422);
	v = json_loadb(rs.body, rs.body_len, 0, NULL);
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(json_string_value(json_object_get(v, "description")),
	    "error message not representable");
	json_decref(v);
	resp_clear(&rs);
}
END_TEST

/* The pool's order: with its one thread busy, an urgent task queued after two others
 * runs before them (workers' reports pass clients' polls). */
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static char order[8];
static volatile int gate;

static void
task_gate(void *arg, struct pool_thread *t)
{
	(void)arg;
	(void)t;
	while (!gate)
		usleep(1000);
}

static void
task_mark(void *arg, struct pool_thread *t)
{
	(void)t;
	pthread_mutex_lock(&order_lock);
	order[strlen(order)] = *(const char *)arg;
	pthread_mutex_unlock(&order_lock);
}

static void
task_done(void *arg)
{
	(void)arg;
}

START_TEST(test_pool_urgent_first)
{
	struct event_base *base = event_base_new();
	char *err = NULL;
	struct pool *p = pool_new(base, 1, 16, "postgresql://none", "redis://127.0.0.1:1", &err);

	ck_assert_ptr_nonnull(p);
	ck_assert(pool_submit_to(p, false, task_gate, task_done, NULL));
	usleep(20000); /* the thread holds the gate task */
	static char names[] = "abW";
	ck_assert(pool_submit_to(p, false, task_mark, task_done, &names[0]));
	ck_assert(pool_submit_to(p, false, task_mark, task_done, &names[1]));
	ck_assert(pool_submit_to(p, true, task_mark, task_done, &names[2]));
	gate = 1;
	for (int i = 0; i < 500 && strlen(order) < 3; i++)
		usleep(2000);
	ck_assert_str_eq(order, "Wab");
	pool_free(p);
	event_base_free(base);
}
END_TEST

static Suite *
api_suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_roles);
	tcase_add_test(tc, test_empty_tokens);
	tcase_add_test(tc, test_access);
	tcase_add_test(tc, test_identity);
	tcase_add_test(tc, test_request_access);
	tcase_add_test(tc, test_query);
	tcase_add_test(tc, test_object_ids);
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_redact);
	tcase_add_test(tc, test_iso8601);
	tcase_add_test(tc, test_listen);
	tcase_add_test(tc, test_hide_paths);
	tcase_add_loop_test(tc, test_content_length, 0, (int)BV_NELEM(clen_cases));
	tcase_add_test(tc, test_connection_cap);
	tcase_add_test(tc, test_range);
	tcase_add_test(tc, test_bits_host_is);
	tcase_add_test(tc, test_bits_auth_config);
	tcase_add_test(tc, test_bitsup_error_utf8);
	tcase_add_test(tc, test_pool_urgent_first);
	tcase_add_loop_test(tc, test_patch_check, 0, (int)BV_NELEM(patch_cases));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(api_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
