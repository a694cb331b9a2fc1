/* fault_api.c: the API killed (SIGKILL) in the middle of uploads leaves no partial blob
 * under a real name and no row; the next start removes the dead uploads' temp files and
 * the clients' retries succeed. SIGTERM in the middle of uploads, a download and a
 * long-poll: new connections are refused, every request in flight finishes, and the API
 * exits 0. */
#include <check.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/faults/faults.h"

#define TREES 3
#define TREE_MB 48
#define RATE (8 * 1024 * 1024) /* bytes/s: each transfer lasts ~6 s */

/* One transfer in a thread of its own, as a separate client. */
struct xfer {
	const char *method;
	char path[160];
	char upload[64]; /* file under IT.dir sent as the body, or "" */
	char save[64]; /* file under IT.dir the body goes to, or "" (kept in memory) */
	const char *header;
	long rate; /* bytes/s, both ways; 0: unthrottled */
	long status;
	struct buf body;
	pthread_t th;
};

static char *tree_ids[TREES];

static size_t
to_buf(char *data, size_t size, size_t n, void *arg)
{
	buf_add(arg, data, size * n);
	return size * n;
}

static void *
xfer_main(void *arg)
{
	struct xfer *x = arg;
	char *url = xasprintf("%s%s", IT.url, x->path);
	char *path = NULL;
	FILE *in = NULL, *out = NULL;
	struct curl_slist *hdrs = curl_slist_append(NULL, "Authorization: Bearer " IT_USER);
	CURL *c = curl_easy_init();

	hdrs = curl_slist_append(hdrs, "Expect:");
	if (x->header != NULL)
		hdrs = curl_slist_append(hdrs, x->header);
	buf_init(&x->body);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	if (*x->upload != '\0') {
		path = xasprintf("%s/%s", IT.dir, x->upload);
		in = fopen(path, "rb");
		fseek(in, 0, SEEK_END);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)ftell(in));
		rewind(in);
		curl_easy_setopt(c, CURLOPT_READDATA, in);
		free(path);
	}
	if (*x->save != '\0') {
		path = xasprintf("%s/%s", IT.dir, x->save);
		out = fopen(path, "wb");
		curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
		free(path);
	} else {
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_buf);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &x->body);
	}
	if (x->rate > 0) {
		curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)x->rate);
		curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)x->rate);
	}
	x->status = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	buf_add(&x->body, "", 1);
	if (in != NULL)
		fclose(in);
	if (out != NULL)
		fclose(out);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(url);
	return NULL;
}

static void
xfer_start(struct xfer *x)
{
	ck_assert_int_eq(pthread_create(&x->th, NULL, xfer_main, x), 0);
}

static void
xfer_join(struct xfer *x)
{
	pthread_join(x->th, NULL);
}

/* The uploads of the three trees, and a droplet checked by its Digest. */
static void
uploads(struct xfer *x, long rate, const char *droplet)
{
	static char digest[100];
	char *h = itest_sh_out("sha256sum < t0.tar | cut -c1-64");
	snprintf(digest, sizeof digest, "Digest: sha256=%s", h);
	free(h);
	for (int i = 0; i <= TREES; i++) {
		memset(&x[i], 0, sizeof x[i]);
		x[i].method = i < TREES ? "POST" : "PUT";
		if (i < TREES)
			snprintf(x[i].path, sizeof x[i].path, "/directories");
		else
			snprintf(x[i].path, sizeof x[i].path, "/droplets/%s", droplet);
		snprintf(x[i].upload, sizeof x[i].upload, "t%d.tar", i < TREES ? i : 0);
		x[i].header = i < TREES ? NULL : digest;
		x[i].rate = rate;
		xfer_start(&x[i]);
	}
}

static int
tmp_files(void)
{
	char *n = itest_sh_out("find data/store/tmp data/tmp -type f 2>/dev/null | wc -l");
	int v = atoi(n);
	free(n);
	return v;
}

START_TEST(test_sigkill_during_uploads)
{
	struct xfer x[TREES + 1];

	uploads(x, RATE, "d0");
	/* Wait until every upload is well under way. */
	for (int i = 0; i < 100 && tmp_files() < TREES + 1; i++)
		usleep(50000);
	usleep(1000000);
	int in_flight = tmp_files();
	ck_assert_int_eq(kill(IT.api, SIGKILL), 0);
	ck_assert_int_eq(waitpid(IT.api, NULL, 0), IT.api);
	for (int i = 0; i <= TREES; i++) {
		xfer_join(&x[i]);
		ck_assert_msg(x[i].status == 0, "upload %d got %ld after the kill", i, x[i].status);
		buf_free(&x[i].body);
	}
	printf("SIGKILL with %d uploads writing\n", in_flight);
	ck_assert_int_ge(in_flight, TREES + 1);
	/* Nothing partial under a real name, and no row for what did not arrive whole. */
	ck_assert_int_eq(faults_store_check(true), 0);
	for (int i = 0; i < TREES; i++) {
		char *sql = xasprintf(
		    "SELECT count(*) FROM directories WHERE id = decode('%s', 'hex')", tree_ids[i]);
		ck_assert_int_eq(faults_sql_int(sql), 0);
		free(sql);
	}
	ck_assert_int_eq(faults_sql_int("SELECT count(*) FROM bits_resources"), 0);

	/* The next start removes the dead uploads' temp files; the retries succeed. */
	itest_start_api();
	ck_assert_msg(tmp_files() == 0, "%d temp files left after the restart", tmp_files());
	uploads(x, 0, "d0");
	for (int i = 0; i <= TREES; i++) {
		xfer_join(&x[i]);
		ck_assert_msg(
		    x[i].status == 201, "retry %d: %ld %s", i, x[i].status, x[i].body.data);
		if (i < TREES)
			ck_assert_msg(
			    strstr(x[i].body.data, tree_ids[i]) != NULL, "%s", x[i].body.data);
		buf_free(&x[i].body);
	}
	ck_assert_int_eq(faults_store_check(false), 0);
}
END_TEST

START_TEST(test_sigterm_finishes_in_flight)
{
	struct xfer x[TREES + 1], down, poll;

	/* A bundle to download slowly, and a cook nobody will do, to long-poll. */
	itest_cook(tree_ids[0]);
	json_t *st = itest_wait_cook("directory", tree_ids[0], 120);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	itest_stop_worker(0, SIGTERM);
	char *want = itest_sql("SELECT encode(sha256, 'hex') FROM bundles");
	itest_cook(tree_ids[1]);

	uploads(x, RATE, "d1");
	memset(&down, 0, sizeof down);
	down.method = "GET";
	snprintf(down.path, sizeof down.path, "/vault/directory/%s", tree_ids[0]);
	snprintf(down.save, sizeof down.save, "bundle.tgz");
	down.rate = RATE;
	xfer_start(&down);
	memset(&poll, 0, sizeof poll);
	poll.method = "GET";
	snprintf(poll.path, sizeof poll.path, "/vault/directory/%s/status?wait=60", tree_ids[1]);
	xfer_start(&poll);
	usleep(1500000);
	uint64_t t0 = faults_ms();
	ck_assert_int_eq(kill(IT.api, SIGTERM), 0);
	usleep(300000);
	/* No new connection is taken. */
	struct itest_resp r;
	itest_http(&r, "GET", "/status", NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 0 || r.status == 503, "a new request got %ld", r.status);
	itest_resp_free(&r);
	for (int i = 0; i <= TREES; i++) {
		xfer_join(&x[i]);
		ck_assert_msg(
		    x[i].status == 201, "upload %d: %ld %s", i, x[i].status, x[i].body.data);
		buf_free(&x[i].body);
	}
	xfer_join(&down);
	ck_assert_int_eq(down.status, 200);
	char *got = itest_sh_out("sha256sum < bundle.tgz | cut -c1-64");
	ck_assert_str_eq(got, want);
	xfer_join(&poll);
	ck_assert_msg(poll.status == 200, "the long-poll got %ld", poll.status);
	int wst = 0;
	ck_assert_int_eq(waitpid(IT.api, &wst, 0), IT.api);
	ck_assert_msg(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "the API exited with %#x", wst);
	printf("SIGTERM: 4 uploads, a download and a long-poll finished; the API exited 0 after"
	       " %llu ms\n",
	    (unsigned long long)(faults_ms() - t0));
	IT.api = 0;
	itest_start_api();
	free(got);
	free(want);
	buf_free(&down.body);
	buf_free(&poll.body);
}
END_TEST

static void
setup(void)
{
	itest_init("fault_api", 32);
	itest_env("BITSVAULT_MAX_UPLOAD_SIZE=256M");
	itest_env("BITSVAULT_BITS_MAX_BODY_SIZE=256M");
	for (int i = 0; i < TREES; i++) {
		ck_assert_int_eq(itest_sh("mkdir -p trees/t%d/src && seq %d 900 > trees/t%d/README"
					  " && head -c %d /dev/urandom > trees/t%d/src/big.bin"
					  " && tar cf t%d.tar -C trees/t%d .",
				     i, i, i, TREE_MB * 1048576, i, i, i),
		    0);
		char *dir = xasprintf("%s/trees/t%d", IT.dir, i);
		tree_ids[i] = itest_git_tree_id(dir);
		free(dir);
	}
	itest_start_api();
	itest_start_worker("fa-w1");
}

int
main(void)
{
	Suite *s = suite_create("fault_api");
	TCase *tc = tcase_create("faults");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_add_test(tc, test_sigkill_during_uploads);
	tcase_add_test(tc, test_sigterm_finishes_in_flight);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
