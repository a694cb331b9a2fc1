/* check_router.c: the API's route table (api/router.c): exact segment matching, captures,
 * 404 versus 405 with its Allow list, HEAD wherever GET, percent-decoding, trailing
 * slashes and malformed patterns. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "api/router.h"

enum {
	R_DIRS_POST,
	R_DIRS_GET,
	R_COOK,
	R_STATUS,
	R_FETCH,
	R_JOB_PATCH,
	R_JOB_GET,
	R_ST,
	R_ST_SHORT,
	R_ROOT
};

/* The API's table, plus the root path. */
static struct router *
api_router(void)
{
	struct router *rt = router_new();

	ck_assert(router_add(rt, "POST", "/directories", R_DIRS_POST));
	ck_assert(router_add(rt, "GET", "/directories/{id}", R_DIRS_GET));
	ck_assert(router_add(rt, "POST", "/vault/{kind}/{id}", R_COOK));
	ck_assert(router_add(rt, "GET", "/vault/{kind}/{id}/status", R_STATUS));
	ck_assert(router_add(rt, "GET", "/vault/{kind}/{id}", R_FETCH));
	ck_assert(router_add(rt, "PATCH", "/jobs/{id}", R_JOB_PATCH));
	ck_assert(router_add(rt, "GET", "/jobs/{id}", R_JOB_GET));
	ck_assert(router_add(rt, "GET", "/status", R_ST));
	ck_assert(router_add(rt, "GET", "/status/short", R_ST_SHORT));
	ck_assert(router_add(rt, "GET", "/", R_ROOT));
	return rt;
}

/* One request against the table, with what it must give. */
struct rcase {
	const char *method;
	const char *path;
	enum router_result want;
	int id; /* when FOUND */
	const char *allow; /* when METHOD_NOT_ALLOWED */
	const char *p1, *v1; /* a capture to check, or NULL */
	const char *p2, *v2;
};

static const struct rcase cases[] = {
    /* exact matches and captures */
    {"POST", "/directories", ROUTER_FOUND, R_DIRS_POST, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/abc", ROUTER_FOUND, R_DIRS_GET, NULL, "id", "abc", NULL, NULL},
    {"POST", "/vault/directory/0123", ROUTER_FOUND, R_COOK, NULL, "kind", "directory", "id",
	"0123"},
    {"GET", "/vault/directory/0123", ROUTER_FOUND, R_FETCH, NULL, "kind", "directory", "id",
	"0123"},
    {"GET", "/vault/revision/x/status", ROUTER_FOUND, R_STATUS, NULL, "kind", "revision", "id",
	"x"},
    {"PATCH", "/jobs/12", ROUTER_FOUND, R_JOB_PATCH, NULL, "id", "12", NULL, NULL},
    {"GET", "/jobs/12", ROUTER_FOUND, R_JOB_GET, NULL, "id", "12", NULL, NULL},
    {"GET", "/status", ROUTER_FOUND, R_ST, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/status/short", ROUTER_FOUND, R_ST_SHORT, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/", ROUTER_FOUND, R_ROOT, NULL, NULL, NULL, NULL, NULL},
    /* HEAD is allowed wherever GET is, and only there */
    {"HEAD", "/vault/directory/0123", ROUTER_FOUND, R_FETCH, NULL, "id", "0123", NULL, NULL},
    {"HEAD", "/status", ROUTER_FOUND, R_ST, NULL, NULL, NULL, NULL, NULL},
    {"HEAD", "/directories", ROUTER_METHOD_NOT_ALLOWED, -1, "POST", NULL, NULL, NULL, NULL},
    /* no prefix matches, no trailing slash, no empty captures */
    {"GET", "/statusx", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/status/", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/status/short/more", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/jobs", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/jobs/", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/jobs/12/", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/vault//x/status", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "//status", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/Status", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a/b", ROUTER_NOT_FOUND, -1, NULL, NULL, NULL, NULL, NULL},
    /* 405 and the Allow list, in GET, HEAD, POST, PUT, PATCH, DELETE order */
    {"POST", "/status", ROUTER_METHOD_NOT_ALLOWED, -1, "GET, HEAD", NULL, NULL, NULL, NULL},
    {"DELETE", "/vault/directory/0123", ROUTER_METHOD_NOT_ALLOWED, -1, "GET, HEAD, POST", NULL,
	NULL, NULL, NULL},
    {"PUT", "/jobs/1", ROUTER_METHOD_NOT_ALLOWED, -1, "GET, HEAD, PATCH", NULL, NULL, NULL, NULL},
    {"GET", "/directories", ROUTER_METHOD_NOT_ALLOWED, -1, "POST", NULL, NULL, NULL, NULL},
    {"OPTIONS", "/status/short", ROUTER_METHOD_NOT_ALLOWED, -1, "GET, HEAD", NULL, NULL, NULL,
	NULL},
    /* percent-decoding: captures and literals are compared decoded */
    {"GET", "/vault/directory/swh%3A1%3Adir%3Aab/status", ROUTER_FOUND, R_STATUS, NULL, "id",
	"swh:1:dir:ab", NULL, NULL},
    {"GET", "/%73tatus", ROUTER_FOUND, R_ST, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a%20b%c3%a9", ROUTER_FOUND, R_DIRS_GET, NULL, "id", "a b\xc3\xa9", NULL,
	NULL},
    {"GET", "/directories/a+b", ROUTER_FOUND, R_DIRS_GET, NULL, "id", "a+b", NULL, NULL},
    /* refused: an encoded '/' or NUL, a bad escape, not a path */
    {"GET", "/directories/a%2Fb", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a%2fb", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a%00b", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a%zzb", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a%4", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "/directories/a%", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "status", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
    {"GET", "", ROUTER_BAD_PATH, -1, NULL, NULL, NULL, NULL, NULL},
};

/* Every case of the table. */
START_TEST(test_table)
{
	struct router *rt = api_router();
	const struct rcase *c = &cases[_i];
	struct router_match m;
	enum router_result got = router_match(rt, c->method, c->path, &m);

	ck_assert_msg(
	    got == c->want, "%s %s: result %d, want %d", c->method, c->path, got, c->want);
	if (c->want == ROUTER_FOUND)
		ck_assert_msg(
		    m.id == c->id, "%s %s: id %d, want %d", c->method, c->path, m.id, c->id);
	else
		ck_assert_int_eq(m.nparams, 0);
	if (c->want == ROUTER_METHOD_NOT_ALLOWED)
		ck_assert_str_eq(m.allow, c->allow);
	if (c->p1 != NULL) {
		ck_assert_ptr_nonnull(router_param(&m, c->p1));
		ck_assert_str_eq(router_param(&m, c->p1), c->v1);
	}
	if (c->p2 != NULL) {
		ck_assert_ptr_nonnull(router_param(&m, c->p2));
		ck_assert_str_eq(router_param(&m, c->p2), c->v2);
	}
	ck_assert_ptr_null(router_param(&m, "nope"));
	router_match_clear(&m);
	router_free(rt);
}
END_TEST

/* Routes are tried in order: an earlier literal wins over a later capture. */
START_TEST(test_order)
{
	struct router *rt = router_new();
	struct router_match m;

	ck_assert(router_add(rt, "GET", "/jobs/stats", 1));
	ck_assert(router_add(rt, "GET", "/jobs/{id}", 2));
	ck_assert_int_eq(router_match(rt, "GET", "/jobs/stats", &m), ROUTER_FOUND);
	ck_assert_int_eq(m.id, 1);
	ck_assert_int_eq(m.nparams, 0);
	router_match_clear(&m);
	ck_assert_int_eq(router_match(rt, "GET", "/jobs/7", &m), ROUTER_FOUND);
	ck_assert_int_eq(m.id, 2);
	ck_assert_str_eq(router_param(&m, "id"), "7");
	router_match_clear(&m);
	router_free(rt);
}
END_TEST

/* A pattern that ends with a slash (SWH's paths) matches only paths that do too. */
START_TEST(test_trailing_slash_pattern)
{
	struct router *rt = router_new();
	struct router_match m;

	ck_assert(router_add(rt, "GET", "/api/1/vault/{type}/{swhid}/", 1));
	ck_assert(router_add(rt, "GET", "/api/1/vault/{type}/{swhid}/raw/", 2));
	ck_assert_int_eq(
	    router_match(rt, "GET", "/api/1/vault/flat/swh:1:dir:ab/", &m), ROUTER_FOUND);
	ck_assert_int_eq(m.id, 1);
	ck_assert_str_eq(router_param(&m, "swhid"), "swh:1:dir:ab");
	router_match_clear(&m);
	ck_assert_int_eq(router_match(rt, "GET", "/api/1/vault/flat/x/raw/", &m), ROUTER_FOUND);
	ck_assert_int_eq(m.id, 2);
	router_match_clear(&m);
	ck_assert_int_eq(router_match(rt, "GET", "/api/1/vault/flat/x", &m), ROUTER_NOT_FOUND);
	router_match_clear(&m);
	ck_assert_int_eq(router_match(rt, "GET", "/api/1/vault/flat/x/raw", &m), ROUTER_NOT_FOUND);
	router_match_clear(&m);
	ck_assert_int_eq(router_match(rt, "GET", "/api/1/vault/flat//", &m), ROUTER_NOT_FOUND);
	router_match_clear(&m);
	router_free(rt);
}
END_TEST

/* An empty table answers 404 to everything. */
START_TEST(test_empty)
{
	struct router *rt = router_new();
	struct router_match m;

	ck_assert_int_eq(router_match(rt, "GET", "/", &m), ROUTER_NOT_FOUND);
	router_match_clear(&m);
	router_free(rt);
	router_free(NULL);
}
END_TEST

/* Malformed patterns are refused when the table is built. */
START_TEST(test_bad_patterns)
{
	static const char *const bad[] = {"", "status", "/a/{}", "/a/{b", "/a/b}", "/a/{b}c",
	    "/a/x{b}", "/a//b", "/a/%20", "/{a}/{b}/{c}/{d}/{e}"};
	struct router *rt = router_new();
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(!router_add(rt, "GET", bad[i], 1), "pattern \"%s\" accepted", bad[i]);
	ck_assert(!router_add(rt, "", "/a", 1));
	ck_assert(router_add(rt, "GET", "/{a}/{b}/{c}/{d}", 1)); /* ROUTER_MAX_PARAMS */
	router_free(rt);
}
END_TEST

/* router_decode_segment on its own. */
START_TEST(test_decode)
{
	char *s;

	s = router_decode_segment("a%41%7e", 7);
	ck_assert_str_eq(s, "aA~");
	free(s);
	s = router_decode_segment("abc", 2); /* only len bytes are read */
	ck_assert_str_eq(s, "ab");
	free(s);
	s = router_decode_segment("", 0);
	ck_assert_str_eq(s, "");
	free(s);
	ck_assert_ptr_null(router_decode_segment("%2F", 3));
	ck_assert_ptr_null(router_decode_segment("%00", 3));
	ck_assert_ptr_null(router_decode_segment("%G0", 3));
	ck_assert_ptr_null(router_decode_segment("%41%", 4));
}
END_TEST

static Suite *
router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_table, 0, (int)(sizeof cases / sizeof cases[0]));
	tcase_add_test(tc, test_order);
	tcase_add_test(tc, test_trailing_slash_pattern);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_bad_patterns);
	tcase_add_test(tc, test_decode);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(router_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
