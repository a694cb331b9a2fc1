/* check_generic_lock.c: artifacts.lock.yaml, the generic package manager's lockfile
 * (worker/request_generic.c): a good file, every malformed shape with the message that
 * names it, anchors and aliases, the entry cap, and the URL check before a download. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "worker/request.h"

#define SUM256                                                                                     \
	"sha256:"                                                                                  \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUM512                                                                                     \
	"sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                  \
	"47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

/* Parses text (as "artifacts.lock.yaml"); returns the error or NULL. */
static char *
parse(const char *text, struct generic_lock *lock)
{
	char *err = NULL;
	if (generic_lock_parse(text, strlen(text), "artifacts.lock.yaml", lock, &err) == 0)
		return NULL;
	ck_assert_ptr_nonnull(err);
	return err;
}

START_TEST(test_good)
{
	struct generic_lock lock;
	const char *text =
	    "# a comment\n"
	    "metadata:\n"
	    "  version: \"1.0\"\n"
	    "artifacts:\n"
	    "  - download_url: \"https://example.org/tool-1.2.tar.gz\"\n"
	    "    checksum: \"" SUM256 "\"\n"
	    "    filename: \"tool.tgz\"\n"
	    "  - download_url: http://example.org:8080/a/b/data.bin?x=1#frag\n"
	    "    checksum: SHA512:CF83E1357EEFB8BDF1542850D66D8007D620E4050B5715DC83F4A921D36CE9CE"
	    "47D0D13C5D85F2B0FF8318D2877EEC2F63B931BD47417A81A538327AF927DA3E\n"
	    "  - {download_url: 'https://[::1]/z', checksum: '" SUM256 "'}\n";
	char *err = parse(text, &lock);
	ck_assert_msg(err == NULL, "%s", err);
	ck_assert_uint_eq(lock.n, 3);
	ck_assert_str_eq(lock.items[0].url, "https://example.org/tool-1.2.tar.gz");
	ck_assert_str_eq(lock.items[0].filename, "tool.tgz");
	ck_assert_str_eq(lock.items[0].checksum, SUM256);
	ck_assert_uint_eq(lock.items[0].line, 5);
	/* The default name: the path's last segment, query and fragment left out. */
	ck_assert_str_eq(lock.items[1].filename, "data.bin");
	/* Algorithm and digest made lowercase. */
	ck_assert_str_eq(lock.items[1].checksum, SUM512);
	ck_assert_str_eq(lock.items[2].filename, "z");
	generic_lock_clear(&lock);

	/* An empty list, and version as a plain scalar. */
	err = parse("metadata: {version: 1.0}\nartifacts: []\n", &lock);
	ck_assert_msg(err == NULL, "%s", err);
	ck_assert_uint_eq(lock.n, 0);
	generic_lock_clear(&lock);
}
END_TEST

/* Each malformed file, and a part of the message it must give. */
static const struct {
	const char *text;
	const char *want;
} bad[] = {
    {"", "the file is empty"},
    {"metadata: {version: \"1.0\"}\nartifacts: [\n", "not valid YAML"},
    {"- a\n- b\n", "must be a mapping with metadata and artifacts"},
    {"artifacts: []\n", "metadata.version is missing"},
    {"metadata: {version: \"1.0\"}\n", "artifacts is missing"},
    {"metadata: {version: \"2.0\"}\nartifacts: []\n", "metadata.version must be \"1.0\""},
    {"metadata: {version: 1}\nartifacts: []\n", "must be \"1.0\", not \"1\""},
    {"metadata: [1]\nartifacts: []\n", "metadata must be a mapping"},
    {"metadata: {version: \"1.0\", x: 1}\nartifacts: []\n", "metadata has an unknown key \"x\""},
    {"metadata: {version: \"1.0\"}\nartifacts: {}\n", "artifacts must be a list"},
    {"metadata: {version: \"1.0\"}\nartifacts: []\nextra: 1\n", "unknown top-level key \"extra\""},
    {"metadata: {version: \"1.0\"}\nmetadata: {version: \"1.0\"}\nartifacts: []\n",
	"\"metadata\" is given twice"},
    {"metadata: {version: \"1.0\"}\nartifacts: []\n---\nmetadata: {}\n", "more than one YAML"},
    {"metadata: {version: \"1.0\"}\nartifacts: [x]\n", "artifact 1 must be a mapping"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - checksum: \"" SUM256 "\"\n",
	"artifact 1 has no download_url"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - download_url: https://h/f\n",
	"artifact 1 (f) has no checksum"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - download_url: https://h/f\n   checksum: "
     "\"" SUM256 "\"\n   size: 3\n",
	"artifact 1 has an unknown key \"size\""},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - download_url: https://h/f\n   "
     "download_url: https://h/g\n",
	"artifact 1 has \"download_url\" twice"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - download_url: [https://h/f]\n",
	"the download_url of artifact 1 must be a string"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: ftp://h/f, checksum: "
     "\"" SUM256 "\"}\n",
	"is not an http or https URL"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://u:p@h/f\", "
     "checksum: \"" SUM256 "\"}\n",
	"holds a user name or password"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https:///f\", "
     "checksum: \"" SUM256 "\"}\n",
	"has no host"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h:99999/f\", "
     "checksum: \"" SUM256 "\"}\n",
	"has a bad port"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/a b\", "
     "checksum: \"" SUM256 "\"}\n",
	"holds a space or a control character"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/dir/\", "
     "checksum: \"" SUM256 "\"}\n",
	"artifact 1 has no filename and its download_url"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\", filename: \"../etc/passwd\"}\n",
	"the filename \"../etc/passwd\" of artifact 1 must be a single file name"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\", filename: \"..\"}\n",
	"must be a single file name"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\", filename: \"\"}\n",
	"must be a single file name"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\", filename: \"a\\tb\"}\n",
	"must be a single file name"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\", filename: \"a\\0b\"}\n",
	"holds a NUL byte"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\", filename: \"a/b\"}\n",
	"must be a single file name"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709\"}\n",
	"uses a hash too weak"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"crc32:00000000\"}\n",
	"uses an algorithm this server does not check"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"sha256:abc\"}\n",
	"wrong length"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"sha256:zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}\n",
	"not hexadecimal"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\"}\n",
	NULL}, /* (good: the control of the next) */
    {"metadata: {version: \"1.0\"}\nartifacts:\n"
     " - {download_url: \"https://h/f\", checksum: \"" SUM256 "\"}\n"
     " - {download_url: \"https://h/g\", checksum: \"" SUM256 "\"}\n"
     " - {download_url: \"https://other/x/f\", checksum: \"" SUM512 "\"}\n",
	"(line 5): artifacts 1 and 3 have the same filename \"f\""},
    /* Anchors, aliases and tags. */
    {"metadata: &m {version: \"1.0\"}\nartifacts: []\n", "YAML anchors (&m) are not allowed"},
    {"metadata: {version: &v \"1.0\"}\nartifacts: [*v]\n", "YAML anchors (&v)"},
    {"metadata: {version: \"1.0\"}\nartifacts:\n - {download_url: \"https://h/f\", "
     "checksum: \"" SUM256 "\"}\n - *e\n",
	"YAML aliases (*e) are not allowed"},
    {"metadata: !!python/object {version: \"1.0\"}\nartifacts: []\n", "YAML tags"},
};

START_TEST(test_bad)
{
	struct generic_lock lock;
	char *err = parse(bad[_i].text, &lock);

	if (bad[_i].want == NULL) {
		ck_assert_msg(err == NULL, "case %d: %s", _i, err);
		generic_lock_clear(&lock);
		return;
	}
	ck_assert_msg(err != NULL, "case %d parsed: %s", _i, bad[_i].text);
	ck_assert_msg(strstr(err, bad[_i].want) != NULL, "case %d: \"%s\" lacks \"%s\"", _i, err,
	    bad[_i].want);
	ck_assert_msg(strncmp(err, "artifacts.lock.yaml", 19) == 0, "case %d: %s", _i, err);
	ck_assert_ptr_null(lock.items);
	ck_assert_uint_eq(lock.n, 0);
	free(err);
}
END_TEST

/* A file of n artifacts with distinct names. */
static char *
many(size_t n)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, "metadata:\n  version: \"1.0\"\nartifacts:\n");
	for (size_t i = 0; i < n; i++)
		buf_printf(&b,
		    "  - download_url: https://example.org/f%zu\n    checksum: " SUM256 "\n", i);
	return buf_steal(&b, NULL);
}

START_TEST(test_counts)
{
	struct generic_lock lock;
	char *text = many(GENERIC_MAX_ARTIFACTS), *err;

	err = parse(text, &lock);
	ck_assert_msg(err == NULL, "%s", err);
	ck_assert_uint_eq(lock.n, GENERIC_MAX_ARTIFACTS);
	ck_assert_str_eq(lock.items[GENERIC_MAX_ARTIFACTS - 1].filename, "f9999");
	generic_lock_clear(&lock);
	free(text);

	text = many(GENERIC_MAX_ARTIFACTS + 1);
	err = parse(text, &lock);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "more than 10000 artifacts") != NULL, "%s", err);
	free(err);
	free(text);

	/* A billion laughs is refused at its first anchor, before anything grows. */
	err = parse("metadata: {version: \"1.0\"}\nartifacts: [&a [x, x, x, x, x, x, x, x], "
		    "&b [*a, *a, *a, *a, *a, *a, *a, *a], [*b, *b, *b, *b, *b, *b, *b, *b]]\n",
	    &lock);
	ck_assert_msg(err != NULL && strstr(err, "anchors") != NULL, "%s", err);
	free(err);
}
END_TEST

START_TEST(test_filename)
{
	ck_assert(generic_filename_ok("tool-1.2.tar.gz"));
	ck_assert(generic_filename_ok(".hidden"));
	ck_assert(generic_filename_ok("..."));
	ck_assert(!generic_filename_ok(""));
	ck_assert(!generic_filename_ok("."));
	ck_assert(!generic_filename_ok(".."));
	ck_assert(!generic_filename_ok("a/b"));
	ck_assert(!generic_filename_ok("a\\b"));
	ck_assert(!generic_filename_ok("a\x7f"));
	ck_assert(!generic_filename_ok("a\nb"));
	char big[300];
	memset(big, 'a', sizeof big);
	big[256] = '\0';
	ck_assert(!generic_filename_ok(big));
	big[255] = '\0';
	ck_assert(generic_filename_ok(big));
}
END_TEST

/* The URL check: private addresses refused unless allowed, names that do not resolve
 * told apart (the network's fault), the last host remembered. */
START_TEST(test_url_check)
{
	char *last = NULL, *err = NULL, *host, *port, *path;

	ck_assert_int_eq(
	    generic_url_check("http://127.0.0.1:1/f", false, &last, &err), GENERIC_URL_REFUSED);
	ck_assert_msg(err != NULL && strstr(err, "loopback") != NULL, "%s", err);
	ck_assert_ptr_null(last);
	free(err);
	err = NULL;
	ck_assert_int_eq(
	    generic_url_check("http://[::1]/f", false, &last, &err), GENERIC_URL_REFUSED);
	free(err);
	err = NULL;
	ck_assert_int_eq(
	    generic_url_check("http://10.1.2.3/f", false, &last, &err), GENERIC_URL_REFUSED);
	free(err);
	err = NULL;
	ck_assert_int_eq(
	    generic_url_check("http://169.254.169.254/latest/meta-data", false, &last, &err),
	    GENERIC_URL_REFUSED);
	free(err);
	err = NULL;
	ck_assert_int_eq(
	    generic_url_check("http://127.0.0.1:1/f", true, &last, &err), GENERIC_URL_OK);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(
	    generic_url_check("http://u@127.0.0.1/f", true, &last, &err), GENERIC_URL_REFUSED);
	ck_assert_msg(err != NULL && strstr(err, "user name") != NULL, "%s", err);
	free(err);
	err = NULL;
	ck_assert_int_eq(generic_url_check("http://nonexistent.invalid/f", false, &last, &err),
	    GENERIC_URL_UNRESOLVED);
	free(err);
	err = NULL;
	/* A public address literal needs no DNS and passes; it is remembered. */
	ck_assert_int_eq(
	    generic_url_check("https://93.184.215.14/f", false, &last, &err), GENERIC_URL_OK);
	ck_assert_ptr_nonnull(last);
	free(last);

	ck_assert_int_eq(
	    generic_url_split("HTTPS://[2001:db8::1]:8443/a/b?c", &host, &port, &path, &err), 0);
	ck_assert_str_eq(host, "2001:db8::1");
	ck_assert_str_eq(port, "8443");
	ck_assert_str_eq(path, "/a/b");
	free(host);
	free(port);
	free(path);
	ck_assert_int_eq(generic_url_split("http://h", &host, &port, &path, &err), 0);
	ck_assert_str_eq(host, "h");
	ck_assert_str_eq(port, "80");
	ck_assert_str_eq(path, "");
	free(host);
	free(port);
	free(path);
	ck_assert_int_eq(generic_url_split("http://[::1/x", &host, &port, NULL, &err), -1);
	free(err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("generic_lock");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_good);
	tcase_add_loop_test(tc, test_bad, 0, (int)BV_NELEM(bad));
	tcase_add_test(tc, test_counts);
	tcase_add_test(tc, test_filename);
	tcase_add_test(tc, test_url_check);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
