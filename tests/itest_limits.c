/* itest_limits.c: every request limit of issue 6 ("Hostile input", Limits), end to end
 * against the real API with small values: header count and bytes (431), a header line
 * past libevhtp's parser buffer (431), URL length (414), JSON size (413) and depth (400),
 * upload size (413), archive entries, unpacked size and compression ratio (413; tar.gz
 * and zip bombs through POST /directories and the app stash, refused without writing their
 * expanded bytes anywhere), and the bundle size (the cook fails naming the limit). Each
 * answer is JSON naming its configuration key, and a request under the limits passes. */
#include <check.h>
#include <stdbool.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/itest.h"

/* Requests with the extra headers or the path in %s. */
#define GET_STATUS "GET /status HTTP/1.1\r\nHost: x\r\n%s\r\n"
#define GET_PATH "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"

/* A new connection to the API whose reads give up after 3 s. */
static int
connect_api(void)
{
	struct sockaddr_in sa;
	struct timeval tv = {3, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(strchr(IT.listen, ':') + 1));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* One raw request on a new connection; the whole answer (until the server closes, or 3 s
 * pass) into out. Returns the status, 0 when there was none. */
static int
raw(const char *req, size_t len, char *out, size_t n)
{
	size_t got = 0;
	int fd = connect_api();

	while (len > 0) {
		ssize_t k = send(fd, req, len, MSG_NOSIGNAL);
		if (k <= 0)
			break; /* the server may answer and close before reading it all */
		req += k;
		len -= (size_t)k;
	}
	while (got < n - 1) {
		ssize_t k = recv(fd, out + got, n - 1 - got, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	out[got] = '\0';
	close(fd);
	return strncmp(out, "HTTP/1.1 ", 9) == 0 ? atoi(out + 9) : 0;
}

/* Asserts a raw request's status and that its JSON error names what. */
static void
expect_raw(const char *req, size_t len, int status, const char *what)
{
	static char out[65536];
	int st = raw(req, len, out, sizeof out);
	char *body = strstr(out, "\r\n\r\n");

	ck_assert_msg(st == status, "want %d, got %d: %.200s", status, st, out);
	ck_assert_msg(
	    body != NULL && strstr(body, "{\"error\":") != NULL, "no JSON error: %.300s", out);
	ck_assert_msg(strstr(body, what) != NULL, "'%s' not in %s", what, body);
}

/* expect_raw of a request built with xasprintf (freed). */
static void
expect_req(char *req, int status, const char *what)
{
	expect_raw(req, strlen(req), status, what);
	free(req);
}

/* n header lines "X-Hn: <size bytes>" (caller frees). */
static char *
headers(int n, size_t size)
{
	struct buf b;
	char *v = xmalloc(size + 1);

	memset(v, 'v', size);
	v[size] = '\0';
	buf_init(&b);
	for (int i = 0; i < n; i++)
		buf_printf(&b, "X-H%d: %s\r\n", i, v);
	free(v);
	buf_add(&b, "", 1);
	return b.data;
}

START_TEST(test_headers)
{
	char *h, out[4096];

	/* max_headers=20: the Host plus 19 pass, plus 20 do not. */
	h = headers(19, 10);
	char *req = xasprintf(GET_STATUS, h);
	ck_assert_int_ne(raw(req, strlen(req), out, sizeof out), 431);
	free(req);
	free(h);
	h = headers(20, 10);
	expect_req(xasprintf(GET_STATUS, h), 431, "max_headers");
	free(h);
	/* max_header_size=4K: three headers of 1.5 KiB. */
	h = headers(3, 1536);
	expect_req(xasprintf(GET_STATUS, h), 431, "max_header_size");
	free(h);
	/* One line past libevhtp's 8 KiB parser buffer: still a 431, not a dropped
	 * connection. */
	h = headers(1, 10000);
	expect_req(xasprintf(GET_STATUS, h), 431, "over 8 KiB");
	free(h);
}
END_TEST

START_TEST(test_url)
{
	char *p = xmalloc(9001), out[4096];

	/* max_url_length=512: 400 bytes are routed (404), 600 are a 414. */
	memset(p, 'a', 9000);
	p[400] = '\0';
	char *req = xasprintf(GET_PATH, p);
	ck_assert_int_eq(raw(req, strlen(req), out, sizeof out), 404);
	free(req);
	p[400] = 'a';
	p[600] = '\0';
	expect_req(xasprintf(GET_PATH, p), 414, "max_url_length");
	/* Past the parser's 8 KiB request line. */
	p[600] = 'a';
	p[9000] = '\0';
	expect_req(xasprintf(GET_PATH, p), 414, "URL too long");
	/* The same in the query: the path is parsed, the line is still the request line. */
	expect_req(xasprintf("GET /status?q=%s HTTP/1.1\r\nHost: localhost\r\n\r\n", p), 414,
	    "URL too long");
	free(p);
	/* A Content-Length that is not a number: libevhtp's parser calls it too big. */
	expect_req(
	    xstrdup("GET /status HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n"), 431,
	    "Content-Length is not a number");
}
END_TEST

/* A client that sends its whole body before it reads (as many do) gets the early 413 of a
 * body over the limit, every time: the server reads and drops the rest after its answer
 * (lingering close) instead of resetting the connection, which could destroy the answer
 * in the client's buffer. */
START_TEST(test_refused_body_read_after_send)
{
	size_t n = 9000000;
	struct buf b;
	char *body = xcalloc(1, n);

	buf_init(&b);
	buf_printf(&b,
	    "POST /directories HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
	    "Content-Type: application/x-tar\r\nContent-Length: %zu\r\n\r\n",
	    IT_USER, n);
	buf_add(&b, body, n);
	for (int i = 0; i < 10; i++)
		expect_raw(b.data, b.len, 413, "limit is 8388608");
	buf_free(&b);
	free(body);
}
END_TEST

/* Reads one answer (headers and a Content-Length body) from fd into out; its length, 0
 * when the connection closed first. */
static size_t
read_answer(int fd, char *out, size_t n)
{
	size_t got = 0;
	char *end;

	out[0] = '\0';
	while (got < n - 1) {
		ssize_t k = recv(fd, out + got, n - 1 - got, 0);
		if (k <= 0)
			return 0;
		got += (size_t)k;
		out[got] = '\0';
		if ((end = strstr(out, "\r\n\r\n")) != NULL) {
			const char *cl = strcasestr(out, "Content-Length: ");
			size_t want =
			    (size_t)(end + 4 - out) + (cl ? strtoul(cl + 16, NULL, 10) : 0);
			if (got >= want)
				return got;
		}
	}
	return got;
}

/* max_keepalive_requests=3: the third answer on a connection says "Connection: close"
 * and the connection then closes; the first two keep it open. A client that reuses the
 * connection after an answer without it never loses a request. */
START_TEST(test_keepalive_limit)
{
	static const char req[] = "GET /status/short HTTP/1.1\r\nHost: x\r\n\r\n";
	char out[4096];
	int fd = connect_api();

	for (int i = 1; i <= 3; i++) {
		ck_assert_int_eq(
		    send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)sizeof req - 1);
		ck_assert_msg(read_answer(fd, out, sizeof out) > 0, "answer %d lost", i);
		ck_assert_msg(strncmp(out, "HTTP/1.1 ", 9) == 0, "%s", out);
		bool closing = strcasestr(out, "Connection: close") != NULL;
		ck_assert_msg(closing == (i == 3), "answer %d: %s", i, out);
	}
	ck_assert_int_eq(recv(fd, out, sizeof out, 0), 0); /* closed after the third */
	close(fd);
}
END_TEST

/* POST /loads with body; asserts the status and that the error names what. */
static void
expect_json(const char *body, int status, const char *what)
{
	struct itest_resp r;
	const char *err;

	itest_http(&r, "POST", "/loads", IT_USER, body, strlen(body), NULL);
	err = r.json != NULL ? json_string_value(json_object_get(r.json, "error")) : NULL;
	ck_assert_msg(r.status == status, "want %d, got %ld: %s", status, r.status, r.body.data);
	ck_assert_msg(
	    err != NULL && strstr(err, what) != NULL, "'%s' not in %s", what, r.body.data);
	itest_resp_free(&r);
}

START_TEST(test_json)
{
	char *big = xmalloc(5000), deep[64];
	struct itest_resp r;

	/* max_json_size=4K */
	snprintf(big, 5000, "{\"url\": \"https://example.org/%04900d\"}", 0);
	expect_json(big, 413, "4096");
	free(big);
	/* max_json_depth=8: 9 levels are refused, 8 are parsed (and refused for what they
	 * say, not for their depth). */
	snprintf(deep, sizeof deep, "{\"url\":[[[[[[[[1]]]]]]]]}");
	expect_json(deep, 400, "max_json_depth");
	snprintf(deep, sizeof deep, "{\"url\":[[[[[[[1]]]]]]]}");
	itest_http(&r, "POST", "/loads", IT_USER, deep, strlen(deep), NULL);
	ck_assert_int_eq(r.status, 400);
	ck_assert_msg(strstr(r.body.data, "max_json_depth") == NULL, "%s", r.body.data);
	itest_resp_free(&r);
	/* Brackets inside strings do not count. */
	expect_json("{\"url\": \"[[[[[[[[[[[[[[[[[[[[\"}", 400, "url");
}
END_TEST

/* POST /directories with a file of the test folder; asserts the status and, for a
 * refusal, that the error names what. */
static void
upload(const char *file, int status, const char *what)
{
	struct itest_resp r;

	itest_http_file(&r, "POST", "/directories", IT_USER, file);
	ck_assert_msg(
	    r.status == status, "%s: want %d, got %ld: %s", file, status, r.status, r.body.data);
	if (what != NULL) {
		const char *err = r.json ? json_string_value(json_object_get(r.json, "error")) : "";
		ck_assert_msg(err != NULL && strstr(err, what) != NULL, "%s: '%s' not in %s", file,
		    what, r.body.data);
	}
	itest_resp_free(&r);
}

/* Nothing of a refused archive is left: no spool file, no store temp file, no blob of
 * 1 MiB or more (the bombs' expanded files are 2 MiB to 200 MiB). */
static void
assert_nothing_left(void)
{
	char *out = itest_sh_out("find data/tmp/uploads data/store/tmp -type f | wc -l; "
				 "find data/store -type f -size +1023k | wc -l");
	ck_assert_msg(strcmp(out, "0\n0") == 0, "left behind: %s", out);
	free(out);
}

START_TEST(test_archives)
{
	/* Under every limit: stored. */
	ck_assert_int_eq(itest_sh("mkdir -p ok && head -c 100000 /dev/urandom > ok/a && "
				  "echo hi > ok/b && tar czf ok.tar.gz ok"),
	    0);
	upload("ok.tar.gz", 201, NULL);
	/* max_upload_size=8M */
	ck_assert_int_eq(itest_sh("head -c 9000000 /dev/zero > nine.bin"), 0);
	upload("nine.bin", 413, "limit is 8388608");
	/* max_archive_entries=50 */
	ck_assert_int_eq(itest_sh("mkdir -p many && for i in $(seq 60); do echo $i > many/f$i; "
				  "done && tar cf many.tar many"),
	    0);
	upload("many.tar", 413, "max_archive_entries");
	/* max_archive_unpacked=3M: incompressible, so the ratio is 1 */
	ck_assert_int_eq(itest_sh("mkdir -p rnd && head -c 4000000 /dev/urandom > rnd/r && "
				  "tar cf rnd.tar rnd"),
	    0);
	upload("rnd.tar", 413, "max_archive_unpacked");
	/* max_archive_ratio=50: 2 MiB of zeros in a few KiB, as tar.gz and as zip */
	ck_assert_int_eq(itest_sh("mkdir -p z && head -c 2097152 /dev/zero > z/zero && "
				  "tar czf zero.tar.gz z && zip -qr zero.zip z"),
	    0);
	upload("zero.tar.gz", 413, "max_archive_ratio");
	upload("zero.zip", 413, "max_archive_ratio");
	/* Real bombs: 200 MiB of zeros (about 200 KiB packed) each; refused as soon as their
	 * declared or counted size passes a limit. */
	ck_assert_int_eq(
	    itest_sh("mkdir -p bomb && head -c 209715200 /dev/zero > bomb/zero && "
		     "tar czf bomb.tar.gz bomb && zip -qr bomb.zip bomb && rm -rf bomb"),
	    0);
	upload("bomb.tar.gz", 413, "max_archive_");
	upload("bomb.zip", 413, "max_archive_");
	assert_nothing_left();

	/* The app stash (a Bits zip upload, read by the same ingest) refuses the zip bomb
	 * with its own 413. */
	char *code = itest_sh_out(
	    "curl -s -o stash.json -w '%%{http_code}' -H 'Authorization: Bearer " IT_USER "' "
	    "-F application=@zero.zip %s/app_stash/entries",
	    IT.url);
	ck_assert_str_eq(code, "413");
	free(code);
	char *body = itest_slurp("stash.json", NULL);
	ck_assert_msg(strstr(body, "max_archive_ratio") != NULL, "%s", body);
	free(body);
	char *out = itest_sh_out("find data/store/tmp -type f | wc -l; "
				 "find data/store -type f -size +1023k | wc -l");
	ck_assert_msg(strcmp(out, "0\n0") == 0, "left behind: %s", out);
	free(out);
}
END_TEST

/* max_bundle_size=1K: a cook of a directory whose tar.gz is bigger fails, saying so. */
START_TEST(test_bundle_size)
{
	char *id = itest_make_tree("big", 8192);
	char *up = itest_upload_tree("big");
	json_t *st;
	const char *msg;

	ck_assert_str_eq(up, id);
	itest_start_worker("w1");
	itest_cook(id);
	st = itest_wait_cook("directory", id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "failed");
	msg = json_string_value(json_object_get(st, "progress_message"));
	ck_assert_msg(
	    msg != NULL && strstr(msg, "max_bundle_size") != NULL, "%s", json_dumps(st, 0));
	json_decref(st);
	free(id);
	free(up);
}
END_TEST

static void
setup(void)
{
	static const char *env[] = {"BITSVAULT_MAX_HEADERS=20", "BITSVAULT_MAX_HEADER_SIZE=4K",
	    "BITSVAULT_MAX_URL_LENGTH=512", "BITSVAULT_MAX_JSON_SIZE=4K",
	    "BITSVAULT_MAX_JSON_DEPTH=8", "BITSVAULT_MAX_UPLOAD_SIZE=8M",
	    "BITSVAULT_MAX_ARCHIVE_ENTRIES=50", "BITSVAULT_MAX_ARCHIVE_UNPACKED=3M",
	    "BITSVAULT_MAX_ARCHIVE_RATIO=50", "BITSVAULT_MAX_BUNDLE_SIZE=1K",
	    "BITSVAULT_MAX_KEEPALIVE_REQUESTS=3"};

	for (size_t i = 0; i < BV_NELEM(env); i++)
		itest_env(env[i]);
	itest_start_api();
}

int
main(void)
{
	itest_init("limits", 21);
	Suite *s = suite_create("itest_limits");
	TCase *tc = tcase_create("limits");
	tcase_add_unchecked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_headers);
	tcase_add_test(tc, test_url);
	tcase_add_test(tc, test_json);
	tcase_add_test(tc, test_archives);
	tcase_add_test(tc, test_refused_body_read_after_send);
	tcase_add_test(tc, test_bundle_size);
	tcase_add_test(tc, test_keepalive_limit);
	suite_add_tcase(s, tc);
	int rc = itest_run(s);
	itest_teardown();
	return rc;
}
