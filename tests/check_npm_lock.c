/* check_npm_lock.c: the npm lockfile reader of the request job (worker/request_npm.c):
 * lockfile versions 1, 2 and 3, scoped packages, nested node_modules paths, aliases, what
 * is skipped (root, links, workspaces, bundled), file: and git dependencies, missing
 * integrity, bad input, Cachito's bundle layout, and the rewrite to bundled tarballs. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "worker/request.h"

#define REG "https://registry.npmjs.org/"

/* Parses text; asserts success. */
static void
parse_ok(const char *text, struct npm_lock *lock)
{
	char *err = NULL;
	int rc = npm_lock_parse(text, strlen(text), "package-lock.json", lock, &err);
	ck_assert_msg(rc == 0, "parse failed: %s", err ? err : "");
}

/* Parses text; asserts failure and returns the message (caller frees). */
static char *
parse_err(const char *text)
{
	struct npm_lock lock;
	char *err = NULL;
	int rc = npm_lock_parse(text, strlen(text), "package-lock.json", &lock, &err);
	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_nonnull(err);
	return err;
}

static const char *v1 =
    "{\"name\":\"app\",\"version\":\"1.0.0\",\"lockfileVersion\":1,\"requires\":true,"
    "\"dependencies\":{"
    "\"fix-a\":{\"version\":\"1.0.0\",\"resolved\":\"" REG "fix-a/-/fix-a-1.0.0.tgz\","
    "\"integrity\":\"sha512-AAAA\",\"requires\":{\"fix-b\":\"^2.0.0\"},"
    "\"dependencies\":{\"fix-b\":{\"version\":\"1.5.0\",\"resolved\":\"" REG
    "fix-b/-/fix-b-1.5.0.tgz\",\"integrity\":\"sha1-BBBB\"}}},"
    "\"fix-b\":{\"version\":\"2.1.0\",\"resolved\":\"" REG "fix-b/-/fix-b-2.1.0.tgz\","
    "\"integrity\":\"sha512-CCCC\",\"dev\":true},"
    "\"@s/c\":{\"version\":\"0.3.0\",\"resolved\":\"" REG "@s/c/-/c-0.3.0.tgz\","
    "\"integrity\":\"sha512-DDDD\"},"
    "\"aliased\":{\"version\":\"npm:fix-a@1.0.0\",\"resolved\":\"" REG
    "fix-a/-/fix-a-1.0.0.tgz\",\"integrity\":\"sha512-AAAA\"},"
    "\"local\":{\"version\":\"file:../local\"},"
    "\"packed\":{\"version\":\"1.0.0\",\"bundled\":true,"
    "\"dependencies\":{\"inner\":{\"version\":\"9.9.9\"}}}"
    "}}";

START_TEST(test_v1)
{
	struct npm_lock lock;
	parse_ok(v1, &lock);
	ck_assert_int_eq(lock.version, 1);
	/* fix-a (twice, as itself and aliased), fix-b 1.5.0 (nested), fix-b 2.1.0, @s/c,
	 * local; the bundled one and what is under it are not listed. */
	ck_assert_uint_eq(lock.ndeps, 5);
	struct npm_dep *a = npm_lock_find(&lock, "fix-a", "1.0.0");
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->source, NPM_REGISTRY);
	ck_assert_str_eq(a->integrity, "sha512-AAAA");
	ck_assert(!a->dev);
	struct npm_dep *b15 = npm_lock_find(&lock, "fix-b", "1.5.0");
	ck_assert_ptr_nonnull(b15);
	ck_assert_str_eq(b15->integrity, "sha1-BBBB");
	struct npm_dep *b21 = npm_lock_find(&lock, "fix-b", "2.1.0");
	ck_assert_ptr_nonnull(b21);
	ck_assert(b21->dev);
	ck_assert_ptr_nonnull(npm_lock_find(&lock, "@s/c", "0.3.0"));
	struct npm_dep *local = npm_lock_find(&lock, "local", "file:../local");
	ck_assert_ptr_nonnull(local);
	ck_assert_int_eq(local->source, NPM_FILE);
	ck_assert_ptr_null(npm_lock_find(&lock, "packed", "1.0.0"));
	ck_assert_ptr_null(npm_lock_find(&lock, "inner", "9.9.9"));

	/* Rewrite: every copy of a bundled package, nested ones too; others untouched. */
	a->bundle_path = npm_bundle_path(a->name, a->version);
	b15->bundle_path = npm_bundle_path(b15->name, b15->version);
	npm_lock_rewrite(&lock, "../");
	json_t *deps = json_object_get(lock.root, "dependencies");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(deps, "fix-a"), "resolved")),
	    "file:../deps/npm/fix-a/fix-a-1.0.0.tgz");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(deps, "aliased"), "resolved")),
	    "file:../deps/npm/fix-a/fix-a-1.0.0.tgz");
	json_t *nested = json_object_get(
	    json_object_get(json_object_get(deps, "fix-a"), "dependencies"), "fix-b");
	ck_assert_str_eq(json_string_value(json_object_get(nested, "resolved")),
	    "file:../deps/npm/fix-b/fix-b-1.5.0.tgz");
	ck_assert_str_eq(json_string_value(json_object_get(nested, "integrity")), "sha1-BBBB");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(deps, "fix-b"), "resolved")),
	    REG "fix-b/-/fix-b-2.1.0.tgz");
	npm_lock_clear(&lock);
}
END_TEST

static const char *v3 =
    "{\"name\":\"app\",\"version\":\"1.0.0\",\"lockfileVersion\":3,\"requires\":true,"
    "\"packages\":{"
    "\"\":{\"name\":\"app\",\"version\":\"1.0.0\",\"workspaces\":[\"pkgs/w\"]},"
    "\"node_modules/fix-a\":{\"version\":\"1.0.0\",\"resolved\":\"" REG
    "fix-a/-/fix-a-1.0.0.tgz\",\"integrity\":\"sha512-AAAA\"},"
    "\"node_modules/fix-a/node_modules/fix-b\":{\"version\":\"1.5.0\",\"resolved\":\"" REG
    "fix-b/-/fix-b-1.5.0.tgz\",\"integrity\":\"sha512-BBBB\",\"dev\":true},"
    "\"node_modules/fix-b\":{\"version\":\"2.1.0\",\"resolved\":\"" REG
    "fix-b/-/fix-b-2.1.0.tgz\",\"integrity\":\"sha512-CCCC\",\"dev\":true},"
    "\"node_modules/@s/c\":{\"version\":\"0.3.0\",\"resolved\":\"" REG
    "@s/c/-/c-0.3.0.tgz\",\"integrity\":\"sha512-DDDD\"},"
    "\"node_modules/@s/c/node_modules/@t/d\":{\"version\":\"4.0.0-beta.1\",\"resolved\":"
    "\"http://127.0.0.1:9/@t/d/-/d-4.0.0-beta.1.tgz\"},"
    "\"node_modules/other\":{\"name\":\"fix-a\",\"version\":\"1.0.0\",\"resolved\":\"" REG
    "fix-a/-/fix-a-1.0.0.tgz\",\"integrity\":\"sha512-AAAA\"},"
    "\"node_modules/w\":{\"resolved\":\"pkgs/w\",\"link\":true},"
    "\"pkgs/w\":{\"name\":\"w\",\"version\":\"0.0.1\"},"
    "\"node_modules/fix-a/node_modules/in\":{\"version\":\"1.0.0\",\"inBundle\":true},"
    "\"node_modules/g\":{\"version\":\"1.0.0\",\"resolved\":"
    "\"git+ssh://git@github.com/o/g.git#0123456789abcdef0123456789abcdef01234567\"}"
    "}}";

START_TEST(test_v3)
{
	struct npm_lock lock;
	parse_ok(v3, &lock);
	ck_assert_int_eq(lock.version, 3);
	/* fix-a (also as the alias "other"), fix-b 1.5.0, fix-b 2.1.0, @s/c, @t/d, g */
	ck_assert_uint_eq(lock.ndeps, 6);
	struct npm_dep *b15 = npm_lock_find(&lock, "fix-b", "1.5.0");
	ck_assert_ptr_nonnull(b15);
	ck_assert(b15->dev);
	struct npm_dep *d = npm_lock_find(&lock, "@t/d", "4.0.0-beta.1");
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(d->source, NPM_REGISTRY); /* any registry's layout */
	ck_assert_ptr_null(d->integrity); /* missing integrity: NULL, not an error */
	struct npm_dep *g = npm_lock_find(&lock, "g", "1.0.0");
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(g->source, NPM_OTHER);
	ck_assert_ptr_null(npm_lock_find(&lock, "w", "0.0.1"));
	ck_assert_ptr_null(npm_lock_find(&lock, "in", "1.0.0"));

	struct npm_dep *c = npm_lock_find(&lock, "@s/c", "0.3.0");
	c->bundle_path = npm_bundle_path(c->name, c->version);
	ck_assert_str_eq(c->bundle_path, "deps/npm/@s/c/s-c-0.3.0.tgz");
	struct npm_dep *a = npm_lock_find(&lock, "fix-a", "1.0.0");
	a->bundle_path = npm_bundle_path(a->name, a->version);
	d->bundle_path = npm_bundle_path(d->name, d->version);
	d->integrity = strdup("sha512-EEEE"); /* computed while downloading */
	npm_lock_rewrite(&lock, "../../");
	json_t *pk = json_object_get(lock.root, "packages");
	ck_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(pk, "node_modules/@s/c"), "resolved")),
	    "file:../../deps/npm/@s/c/s-c-0.3.0.tgz");
	ck_assert_str_eq(json_string_value(json_object_get(
			     json_object_get(pk, "node_modules/other"), "resolved")),
	    "file:../../deps/npm/fix-a/fix-a-1.0.0.tgz");
	json_t *de = json_object_get(pk, "node_modules/@s/c/node_modules/@t/d");
	ck_assert_str_eq(json_string_value(json_object_get(de, "integrity")), "sha512-EEEE");
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(pk, "node_modules/w"), "resolved")),
	    "pkgs/w");
	npm_lock_clear(&lock);
}
END_TEST

START_TEST(test_v2_both_sections)
{
	const char *v2 = "{\"lockfileVersion\":2,\"packages\":{\"\":{\"name\":\"x\"},"
			 "\"node_modules/fix-a\":{\"version\":\"1.0.0\",\"resolved\":\"" REG
			 "fix-a/-/fix-a-1.0.0.tgz\",\"integrity\":\"sha512-AAAA\"}},"
			 "\"dependencies\":{\"fix-a\":{\"version\":\"1.0.0\",\"resolved\":\"" REG
			 "fix-a/-/fix-a-1.0.0.tgz\",\"integrity\":\"sha512-AAAA\"}}}";
	struct npm_lock lock;
	parse_ok(v2, &lock);
	ck_assert_int_eq(lock.version, 2);
	ck_assert_uint_eq(lock.ndeps, 1);
	lock.deps[0].bundle_path = npm_bundle_path("fix-a", "1.0.0");
	npm_lock_rewrite(&lock, "../");
	const char *want = "file:../deps/npm/fix-a/fix-a-1.0.0.tgz";
	ck_assert_str_eq(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(lock.root, "packages"), "node_modules/fix-a"),
		"resolved")),
	    want);
	ck_assert_str_eq(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(lock.root, "dependencies"), "fix-a"), "resolved")),
	    want);
	npm_lock_clear(&lock);
}
END_TEST

START_TEST(test_errors)
{
	char *e = parse_err("{\"lockfileVersion\": 3, \"packages\": {");
	ck_assert_msg(strstr(e, "not valid JSON") != NULL, "%s", e);
	free(e);
	e = parse_err("[1]");
	ck_assert_msg(strstr(e, "not a JSON object") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 4, \"packages\": {}}");
	ck_assert_msg(strstr(e, "unsupported lockfileVersion") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"packages\": {}}");
	ck_assert_msg(strstr(e, "lockfileVersion") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 2}");
	ck_assert_msg(strstr(e, "\"packages\"") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 3, \"packages\": {\"node_modules/a\": {}}}");
	ck_assert_msg(strstr(e, "has no version") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 3, \"packages\": {\"node_modules/a\": 7}}");
	ck_assert_msg(strstr(e, "not an object") != NULL, "%s", e);
	free(e);
	/* Names and versions that would escape deps/npm/ in the bundle. */
	e = parse_err("{\"lockfileVersion\": 1, \"dependencies\": {\"..\": {\"version\": "
		      "\"1.0.0\"}}}");
	ck_assert_msg(strstr(e, "not a valid package name") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 3, \"packages\": {\"node_modules/a\": {\"version\": "
		      "\"1.0.0\", \"name\": \"@s/../../x\"}}}");
	ck_assert_msg(strstr(e, "not a valid package name") != NULL, "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 3, \"packages\": {\"node_modules/a\": {\"version\": "
		      "\"1.0.0 || x\"}}}");
	ck_assert_msg(strstr(e, "not a valid version") != NULL, "%s", e);
	free(e);
}
END_TEST

/* One name@version with two integrity values: refused, naming both. */
START_TEST(test_integrity_conflict)
{
	char *e = parse_err(
	    "{\"lockfileVersion\": 3, \"packages\": {"
	    "\"node_modules/a\": {\"version\": \"1.0.0\", \"integrity\": \"sha512-AAAA\"},"
	    "\"node_modules/b/node_modules/a\": {\"version\": \"1.0.0\", "
	    "\"integrity\": \"sha512-BBBB\"}}}");
	ck_assert_msg(strstr(e,
			  "a@1.0.0 is locked with two different integrity values "
			  "(sha512-AAAA and sha512-BBBB)") != NULL,
	    "%s", e);
	free(e);
	e = parse_err("{\"lockfileVersion\": 1, \"dependencies\": {"
		      "\"a\": {\"version\": \"1.0.0\", \"integrity\": \"sha1-AAAA\","
		      "\"dependencies\": {\"x\": {\"version\": \"npm:a@1.0.0\", "
		      "\"integrity\": \"sha512-CCCC\"}}}}}");
	ck_assert_msg(strstr(e, "two different integrity values") != NULL, "%s", e);
	free(e);
	/* The same value twice, or one copy without any, is one package. */
	struct npm_lock lock;
	parse_ok("{\"lockfileVersion\": 3, \"packages\": {"
		 "\"node_modules/a\": {\"version\": \"1.0.0\"},"
		 "\"node_modules/b/node_modules/a\": {\"version\": \"1.0.0\", "
		 "\"integrity\": \"sha512-BBBB\"},"
		 "\"node_modules/c/node_modules/a\": {\"version\": \"1.0.0\", "
		 "\"integrity\": \"sha512-BBBB\"}}}",
	    &lock);
	ck_assert_uint_eq(lock.ndeps, 1);
	ck_assert_str_eq(lock.deps[0].integrity, "sha512-BBBB");
	npm_lock_clear(&lock);
}
END_TEST

/* Parses text and checks its local paths from pkg_path: NULL when they stay inside, else
 * the message (caller frees). */
static char *
local(const char *text, const char *pkg_path)
{
	struct npm_lock lock;
	char *err = NULL;
	parse_ok(text, &lock);
	int rc = npm_lock_check_local(&lock, pkg_path, "package-lock.json", &err);
	npm_lock_clear(&lock);
	ck_assert_int_eq(rc == 0, err == NULL);
	return err;
}

/* file: dependencies, links and package folders must stay inside the repository. */
START_TEST(test_local_paths)
{
	static const struct {
		const char *lock, *pkg_path;
		bool ok;
	} cases[] = {
	    /* v1 file: specs */
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"l\":{\"version\":\"file:../../../etc\"}}}",
		"", false},
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"l\":{\"version\":\"file:libs/l\"}}}", "",
		true},
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"l\":{\"version\":\"file:../l\"}}}", "web",
		true},
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"l\":{\"version\":\"file:../../l\"}}}",
		"web", false},
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"a\":{\"version\":\"1.0.0\","
	     "\"dependencies\":{\"l\":{\"version\":\"file:/etc\"}}}}}",
		"", false},
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"l\":{\"version\":\"file:~/x\"}}}", "",
		false},
	    {"{\"lockfileVersion\":1,\"dependencies\":{\"l\":{\"version\":\"file:a/../../x\"}}}",
		"", false},
	    /* v3: links, their folders (keys), file: tarballs */
	    {"{\"lockfileVersion\":3,\"packages\":{\"node_modules/l\":{\"resolved\":"
	     "\"../../../etc\",\"link\":true},\"../../../etc\":{\"version\":\"1.0.0\"}}}",
		"", false},
	    {"{\"lockfileVersion\":3,\"packages\":{\"../../../etc\":{\"version\":\"1.0.0\"}}}", "",
		false},
	    {"{\"lockfileVersion\":3,\"packages\":{\"node_modules/l\":{\"resolved\":"
	     "\"pkgs/l\",\"link\":true},\"pkgs/l\":{\"version\":\"1.0.0\"}}}",
		"", true},
	    {"{\"lockfileVersion\":3,\"packages\":{\"node_modules/t\":{\"version\":\"1.0.0\","
	     "\"resolved\":\"file:../t.tgz\"}}}",
		"web", true},
	    {"{\"lockfileVersion\":3,\"packages\":{\"node_modules/t\":{\"version\":\"1.0.0\","
	     "\"resolved\":\"file:///etc/t.tgz\"}}}",
		"web", false},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		char *e = local(cases[i].lock, cases[i].pkg_path);
		ck_assert_msg((e == NULL) == cases[i].ok, "case %zu: %s", i, e ? e : "accepted");
		if (e != NULL)
			ck_assert_msg(strstr(e, "points outside the repository") != NULL, "%s", e);
		free(e);
	}
	/* v1's "local" is file:../local: outside from the root, inside from a folder. */
	char *e = local(v1, "");
	ck_assert_msg(e != NULL && strstr(e, "\"local\"") != NULL, "%s", e ? e : "accepted");
	free(e);
	ck_assert_ptr_null(local(v1, "web"));
}
END_TEST

START_TEST(test_names_and_paths)
{
	ck_assert(npm_name_ok("a"));
	ck_assert(npm_name_ok("@scope/name.js"));
	ck_assert(npm_name_ok("Old_Name"));
	ck_assert(!npm_name_ok(""));
	ck_assert(!npm_name_ok("@scope"));
	ck_assert(!npm_name_ok("a/b"));
	ck_assert(!npm_name_ok("@s/b/c"));
	ck_assert(!npm_name_ok(".hidden"));
	ck_assert(!npm_name_ok("@s/.."));
	ck_assert(!npm_name_ok("a b"));
	ck_assert(npm_version_ok("1.0.0-rc.1+build.5"));
	ck_assert(!npm_version_ok("../1"));
	ck_assert(!npm_version_ok("1/2"));
	ck_assert(!npm_version_ok(""));

	char *p = npm_bundle_path("fix-a", "1.0.0");
	ck_assert_str_eq(p, "deps/npm/fix-a/fix-a-1.0.0.tgz");
	free(p);
	p = npm_bundle_path("@fixscope/c", "0.3.0");
	ck_assert_str_eq(p, "deps/npm/@fixscope/c/fixscope-c-0.3.0.tgz");
	free(p);
	p = npm_tarball_url("http://127.0.0.1:8/", "@s/c", "1.0.0");
	ck_assert_str_eq(p, "http://127.0.0.1:8/@s/c/-/c-1.0.0.tgz");
	free(p);
	p = npm_tarball_url("https://r.example/npm", "a", "2.0.0");
	ck_assert_str_eq(p, "https://r.example/npm/a/-/a-2.0.0.tgz");
	free(p);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("npm_lock");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_v1);
	tcase_add_test(tc, test_v3);
	tcase_add_test(tc, test_v2_both_sections);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_names_and_paths);
	tcase_add_test(tc, test_integrity_conflict);
	tcase_add_test(tc, test_local_paths);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
