/* check_config.c: defaults, the JSON file, environment overrides, and the messages that
 * name a bad key. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/config.h"
#include "shared/util.h"

/* Writes text to a temp file and returns its path (static buffer). */
static const char *
temp_config(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/bv-check-config-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* Clears every BITSVAULT_ variable so the host's environment cannot leak in. */
static void
clear_env(void)
{
	for (int i = 0; config_key_name(i) != NULL; i++) {
		char env[128];
		snprintf(env, sizeof env, "BITSVAULT_%s", config_key_name(i));
		for (char *p = env + 10; *p; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		unsetenv(env);
	}
	unsetenv("BITSVAULT_CONFIG");
}

START_TEST(test_defaults)
{
	struct config cfg;
	char *err = NULL;
	clear_env();
	ck_assert_int_eq(config_load(&cfg, NULL, &err), 0);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:8080");
	ck_assert_str_eq(cfg.data_dir, "./var");
	ck_assert_int_eq(cfg.max_upload_size, 1LL << 30);
	ck_assert_int_eq(cfg.job_max_attempts, 3);
	ck_assert(cfg.anonymous_read);
	config_free(&cfg);
}
END_TEST

START_TEST(test_file_and_env)
{
	struct config cfg;
	char *err = NULL;
	clear_env();
	const char *path = temp_config("{\"_comment\": \"x\", \"listen\": \"0.0.0.0:9000\","
				       " \"max_upload_size\": \"64M\", \"job_lease\": 30,"
				       " \"anonymous_read\": false}");
	setenv("BITSVAULT_JOB_LEASE", "12", 1);
	ck_assert_msg(config_load(&cfg, path, &err) == 0, "%s", err);
	ck_assert_str_eq(cfg.listen, "0.0.0.0:9000");
	ck_assert_int_eq(cfg.max_upload_size, 64LL << 20);
	ck_assert_int_eq(cfg.job_lease, 12); /* the environment wins over the file */
	ck_assert(!cfg.anonymous_read);
	config_free(&cfg);
	unlink(path);
	unsetenv("BITSVAULT_JOB_LEASE");
}
END_TEST

/* Each bad value is refused with a message that names its key. */
START_TEST(test_bad_values)
{
	static const struct {
		const char *env, *val, *key;
	} cases[] = {
	    {"BITSVAULT_JOB_LEASE", "0", "'job_lease'"},
	    {"BITSVAULT_JOB_LEASE", "ten", "'job_lease'"},
	    {"BITSVAULT_MAX_UPLOAD_SIZE", "12X", "'max_upload_size'"},
	    {"BITSVAULT_MAX_UPLOAD_SIZE", "-5", "'max_upload_size'"},
	    {"BITSVAULT_ANONYMOUS_READ", "maybe", "'anonymous_read'"},
	    {"BITSVAULT_LOG_LEVEL", "loud", "'log_level'"},
	    {"BITSVAULT_LISTEN", "8080", "'listen'"},
	    {"BITSVAULT_API_THREADS", "1000", "'api_threads'"},
	    {"BITSVAULT_ADMIN_TOKEN", "short", "'admin_token'"},
	    {"BITSVAULT_PUBLIC_URL", "ftp://x", "'public_url'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config cfg;
		char *err = NULL;
		clear_env();
		setenv(cases[i].env, cases[i].val, 1);
		ck_assert_msg(config_load(&cfg, NULL, &err) == -1, "case %zu accepted", i);
		ck_assert_msg(strstr(err, cases[i].key) != NULL, "case %zu: %s", i, err);
		free(err);
		config_free(&cfg);
		unsetenv(cases[i].env);
	}
}
END_TEST

/* The limits and timeouts of issue 6 (and the status cache's size, the API's processes):
 * their defaults, a value inside the bounds, and one past each bound, refused naming the
 * key. */
START_TEST(test_limits)
{
	static const struct {
		const char *env, *good, *low, *high, *key;
	} cases[] = {
	    {"BITSVAULT_HTTP_TIMEOUT", "2", "0", "3601", "'http_timeout'"},
	    {"BITSVAULT_HTTP_HEADER_TIMEOUT", "3", "0", "3601", "'http_header_timeout'"},
	    {"BITSVAULT_HTTP_KEEPALIVE_TIMEOUT", "4", "0", "3601", "'http_keepalive_timeout'"},
	    {"BITSVAULT_MAX_HEADERS", "20", "7", "1001", "'max_headers'"},
	    {"BITSVAULT_MAX_HEADER_SIZE", "2K", "1023", "2M", "'max_header_size'"},
	    {"BITSVAULT_MAX_URL_LENGTH", "512", "255", "8193", "'max_url_length'"},
	    {"BITSVAULT_MAX_JSON_DEPTH", "8", "1", "2049", "'max_json_depth'"},
	    {"BITSVAULT_MAX_JSON_SIZE", "4K", "1023", "65M", "'max_json_size'"},
	    {"BITSVAULT_MAX_UPLOAD_SIZE", "1M", "1023", "2T", "'max_upload_size'"},
	    {"BITSVAULT_MAX_ARCHIVE_ENTRIES", "10", "0", "100000001", "'max_archive_entries'"},
	    {"BITSVAULT_MAX_ARCHIVE_UNPACKED", "1M", "1023", "65T", "'max_archive_unpacked'"},
	    {"BITSVAULT_MAX_ARCHIVE_RATIO", "0", "-1", "1000001", "'max_archive_ratio'"},
	    {"BITSVAULT_MAX_BUNDLE_SIZE", "1K", "1023", "65T", "'max_bundle_size'"},
	    {"BITSVAULT_STATUS_CACHE_ENTRIES", "0", "-1", "100000001", "'status_cache_entries'"},
	    {"BITSVAULT_API_PROCESSES", "2", "0", "65", "'api_processes'"},
	};
	struct config cfg;
	char *err = NULL;

	clear_env();
	ck_assert_int_eq(config_load(&cfg, NULL, &err), 0);
	ck_assert_int_eq(cfg.http_timeout, 60);
	ck_assert_int_eq(cfg.http_header_timeout, 20);
	ck_assert_int_eq(cfg.http_keepalive_timeout, 30);
	ck_assert_int_eq(cfg.max_headers, 100);
	ck_assert_int_eq(cfg.max_header_size, 64 * 1024);
	ck_assert_int_eq(cfg.max_url_length, 4096);
	ck_assert_int_eq(cfg.max_json_depth, 64);
	ck_assert_int_eq(cfg.max_archive_ratio, 200);
	ck_assert_int_eq(cfg.status_cache_entries, 20000);
	ck_assert_int_eq(cfg.api_processes, 1);
	config_free(&cfg);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *bad[] = {cases[i].low, cases[i].high};

		clear_env();
		setenv(cases[i].env, cases[i].good, 1);
		ck_assert_msg(config_load(&cfg, NULL, &err) == 0, "%s=%s: %s", cases[i].env,
		    cases[i].good, err);
		config_free(&cfg);
		for (size_t j = 0; j < 2; j++) {
			setenv(cases[i].env, bad[j], 1);
			ck_assert_msg(config_load(&cfg, NULL, &err) == -1, "%s=%s accepted",
			    cases[i].env, bad[j]);
			ck_assert_msg(strstr(err, cases[i].key) != NULL, "%s", err);
			free(err);
			err = NULL;
			config_free(&cfg);
		}
		unsetenv(cases[i].env);
	}
}
END_TEST

/* A secret's bad value is not echoed back. */
START_TEST(test_secret_not_echoed)
{
	struct config cfg;
	char *err = NULL;
	clear_env();
	const char *path = temp_config("{\"database_url\": 5}");
	ck_assert_int_eq(config_load(&cfg, path, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "database_url"));
	free(err);
	config_free(&cfg);
	unlink(path);
	ck_assert(config_key_secret("admin_token"));
	ck_assert(config_key_secret("database_url"));
	ck_assert(!config_key_secret("listen"));
}
END_TEST

START_TEST(test_file_errors)
{
	struct config cfg;
	char *err = NULL;
	clear_env();
	const char *path = temp_config("{\"lisen\": \"x\"}");
	ck_assert_int_eq(config_load(&cfg, path, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "unknown key 'lisen'"));
	free(err), err = NULL;
	config_free(&cfg);
	unlink(path);
	path = temp_config("{\"listen\": ");
	ck_assert_int_eq(config_load(&cfg, path, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "config file"));
	free(err), err = NULL;
	config_free(&cfg);
	unlink(path);
	ck_assert_int_eq(config_load(&cfg, "/nonexistent/bitsvault.json", &err), -1);
	free(err);
	config_free(&cfg);
}
END_TEST

/* The commented example in docs/ is a valid file, and names every key of the table. */
START_TEST(test_example_file)
{
	struct config cfg;
	char *err = NULL, path[512], *text;
	const char *src = getenv("BV_TOP_SRCDIR");

	clear_env();
	snprintf(path, sizeof path, "%s/docs/bitsvault.example.json", src ? src : ".");
	ck_assert_msg(config_load(&cfg, path, &err) == 0, "%s", err);
	config_free(&cfg);
	text = read_file(path, NULL, &err);
	ck_assert_msg(text != NULL, "%s", err);
	for (int i = 0; config_key_name(i) != NULL; i++) {
		char quoted[80];
		snprintf(quoted, sizeof quoted, "\"%s\":", config_key_name(i));
		ck_assert_msg(strstr(text, quoted) != NULL, "key %s missing from the example",
		    config_key_name(i));
	}
	free(text);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_file_and_env);
	tcase_add_test(tc, test_bad_values);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_secret_not_echoed);
	tcase_add_test(tc, test_file_errors);
	tcase_add_test(tc, test_example_file);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
