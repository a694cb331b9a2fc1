/* fault_disk.c: the data folder (store, upload spool) on a small tmpfs. Uploads that do
 * not fit get 507 with a JSON reason and leave nothing behind (no temp file, no blob, no
 * row); a cook whose bundle does not fit fails with a readable reason; once space is freed
 * the same processes accept the upload and cook the bundle. Needs root (mount). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/faults/faults.h"

#define DISK_MB 64

static bool mounted;

/* Files under the data folder other than the store's ID and the folders' own. */
static int
stray_files(void)
{
	char *n = itest_sh_out("find data/store/tmp data/tmp -type f 2>/dev/null | wc -l");
	int v = atoi(n);
	free(n);
	return v;
}

static void
expect_507(const struct itest_resp *r, const char *what)
{
	ck_assert_msg(r->status == 507, "%s: %ld %s", what, r->status, r->body.data);
	/* {"error"}, or bits-service's {"description"} on its paths */
	ck_assert_msg(r->json != NULL &&
		(json_string_value(json_object_get(r->json, "error")) ||
		    json_string_value(json_object_get(r->json, "description"))),
	    "%s: 507 without a JSON reason: %s", what, r->body.data);
}

START_TEST(test_disk_full)
{
	struct itest_resp r;

	/* Too big for the disk: a 96 MB archive, a 96 MB droplet. */
	ck_assert_int_eq(itest_sh("mkdir -p trees/big && head -c %d /dev/urandom >"
				  " trees/big/big.bin && tar cf big.tar -C trees/big .",
			     96 << 20),
	    0);
	itest_http_file(&r, "POST", "/directories", IT_USER, "big.tar");
	expect_507(&r, "POST /directories");
	printf("upload of 96 MB on a %d MB disk: %ld %s\n", DISK_MB, r.status, r.body.data);
	itest_resp_free(&r);
	ck_assert_int_eq(stray_files(), 0);
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM contents"), 0);
	char *h = itest_sh_out("sha256sum < big.tar | cut -c1-64");
	char *hdr = xasprintf("Digest: sha256=%s", h);
	free(h);
	struct itest_resp d;
	size_t len = 0;
	char *body = itest_slurp("big.tar", &len);
	itest_http(&d, "PUT", "/droplets/big", IT_USER, body, len, hdr);
	free(body);
	expect_507(&d, "PUT /droplets/big");
	itest_resp_free(&d);
	free(hdr);
	ck_assert_int_eq(stray_files(), 0);
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM bits_resources"), 0);
	ck_assert_int_eq(faults_store_check(false), 0);

	/* A tree that fits, then a cook whose bundle does not: the disk is filled first. */
	ck_assert_int_eq(itest_sh("mkdir -p trees/mid && head -c %d /dev/urandom >"
				  " trees/mid/mid.bin",
			     20 << 20),
	    0);
	char *id = itest_upload_tree("mid");
	ck_assert_int_eq(itest_sh("dd if=/dev/zero of=data/filler bs=1M 2>/dev/null; true"), 0);
	ck_assert_int_eq(itest_sh("rm -f data/filler && dd if=/dev/zero of=data/filler bs=1M"
				  " count=$(($(df -m --output=avail data | tail -1) - 4))"
				  " 2>/dev/null"),
	    0);
	itest_cook(id);
	json_t *st = itest_wait_cook("directory", id, 120);
	const char *status = json_string_value(json_object_get(st, "status"));
	const char *why = json_string_value(json_object_get(st, "progress_message"));
	printf("cook on a full disk: %s: %s\n", status, why ? why : "(no reason)");
	ck_assert_str_eq(status, "failed");
	ck_assert_msg(why != NULL && strstr(why, "space") != NULL, "reason: %s", why);
	json_decref(st);
	ck_assert_int_eq(stray_files(), 0);
	ck_assert_int_eq(faults_store_check(false), 0);

	/* Space again: the same processes take the upload and cook the bundle. */
	ck_assert_int_eq(itest_sh("rm -f data/filler"), 0);
	ck_assert_int_eq(itest_sh("rm -rf trees/big && mkdir -p trees/big && head -c %d"
				  " /dev/urandom > trees/big/b.bin",
			     8 << 20),
	    0);
	char *id2 = itest_upload_tree("big");
	itest_cook(id);
	st = itest_wait_cook("directory", id, 120);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	char *path = xasprintf("/vault/directory/%s", id);
	itest_http(&r, "GET", path, IT_USER, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	itest_save(&r, "mid.tgz");
	ck_assert_int_eq(itest_sh("tar xzf mid.tgz -O | cmp -s - trees/mid/mid.bin"), 0);
	itest_resp_free(&r);
	ck_assert_int_eq(faults_store_check(false), 0);
	free(path);
	free(id);
	free(id2);
}
END_TEST

static void
setup(void)
{
	itest_init("fault_disk", 33);
	if (geteuid() != 0 ||
	    itest_sh("mount -t tmpfs -o size=%dm bitsvault-fault-disk data", DISK_MB) != 0) {
		fprintf(stderr, "fault_disk: cannot mount a tmpfs (root is needed)\n");
		itest_teardown();
		exit(getenv("BITSVAULT_TEST_REQUIRE") ? 1 : 77);
	}
	mounted = true;
	itest_env("BITSVAULT_MAX_UPLOAD_SIZE=256M");
	itest_env("BITSVAULT_BITS_MAX_BODY_SIZE=256M");
	itest_start_api();
	itest_start_worker("fd-w1");
}

static void
teardown(void)
{
	/* The processes go first: they hold files on the tmpfs. */
	itest_stop_api();
	for (int i = 0; i < IT.nworkers; i++)
		itest_stop_worker(i, SIGTERM);
	if (mounted)
		itest_sh("umount -l data");
	itest_teardown();
}

int
main(void)
{
	Suite *s = suite_create("fault_disk");
	TCase *tc = tcase_create("faults");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_disk_full);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
