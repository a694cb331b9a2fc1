/* itest_notify.c: a cook's notify_url gets the final status POSTed: on done, after
 * retries, at once for a job already done; bad URLs are refused before any job changes.
 * The receiver is a small HTTP server on a thread of this test. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/itest.h"

#define MAX_REQS 64

/* What the receiver saw and how it answers. */
static struct {
	pthread_mutex_t mu;
	int fd;
	int port;
	int fail_next; /* answer 500 to this many requests, then 200 */
	int n;
	char *target[MAX_REQS]; /* "/path?query" */
	char *ctype[MAX_REQS];
	char *body[MAX_REQS];
} rx = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A header's value in a raw header block (case-insensitive), a new string or NULL. */
static char *
raw_header(const char *head, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p, "\r\n")) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			return xstrndup(v, strcspn(v, "\r\n"));
		}
	}
	return NULL;
}

/* Serves one connection: reads a request with a Content-Length body, records it,
 * answers. */
static void
serve(int c)
{
	struct buf b;
	char chunk[4096];
	char *end = NULL;

	buf_init(&b);
	for (;;) {
		ssize_t r = read(c, chunk, sizeof chunk);
		if (r <= 0)
			break;
		buf_add(&b, chunk, (size_t)r);
		buf_addc(&b, '\0');
		b.len--;
		end = strstr(b.data, "\r\n\r\n");
		if (end == NULL)
			continue;
		char *cl = raw_header(b.data, "Content-Length");
		size_t want = (size_t)(end + 4 - b.data) + (cl ? strtoul(cl, NULL, 10) : 0);
		free(cl);
		if (b.len >= want)
			break;
	}
	if (end == NULL) {
		buf_free(&b);
		return;
	}
	*end = '\0';
	pthread_mutex_lock(&rx.mu);
	int status = rx.fail_next > 0 ? 500 : 200;
	if (rx.fail_next > 0)
		rx.fail_next--;
	if (rx.n < MAX_REQS) {
		const char *sp = strchr(b.data, ' ');
		rx.target[rx.n] = sp ? xstrndup(sp + 1, strcspn(sp + 1, " ")) : xstrdup("");
		rx.ctype[rx.n] = raw_header(b.data, "Content-Type");
		rx.body[rx.n] = xstrdup(end + 4);
		rx.n++;
	}
	pthread_mutex_unlock(&rx.mu);
	char *answer =
	    xasprintf("HTTP/1.1 %d %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", status,
		status == 200 ? "OK" : "Internal Server Error");
	if (write(c, answer, strlen(answer)) < 0)
		perror("receiver write");
	free(answer);
	buf_free(&b);
}

/* The receiver's accept loop. */
static void *
receiver(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(rx.fd, NULL, NULL);
		if (c < 0)
			continue;
		serve(c);
		close(c);
	}
	return NULL;
}

/* Starts the receiver on a loopback port. */
static void
receiver_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	pthread_t th;
	int one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rx.fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(rx.fd, 0);
	setsockopt(rx.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	ck_assert_int_eq(bind(rx.fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(rx.fd, 16), 0);
	ck_assert_int_eq(getsockname(rx.fd, (struct sockaddr *)&sa, &len), 0);
	rx.port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&th, NULL, receiver, NULL), 0);
	pthread_detach(th);
}

/* How many requests came for targets starting with prefix. */
static int
count_for(const char *prefix)
{
	int k = 0;
	pthread_mutex_lock(&rx.mu);
	for (int i = 0; i < rx.n; i++)
		if (strncmp(rx.target[i], prefix, strlen(prefix)) == 0)
			k++;
	pthread_mutex_unlock(&rx.mu);
	return k;
}

/* Waits up to timeout_ms for n requests to prefix; returns the count then and the
 * milliseconds waited in *ms. */
static int
wait_for(const char *prefix, int n, int timeout_ms, uint64_t *ms)
{
	uint64_t t0 = now_ms();
	int k;
	while ((k = count_for(prefix)) < n && now_ms() - t0 < (uint64_t)timeout_ms)
		usleep(20000);
	if (ms != NULL)
		*ms = now_ms() - t0;
	return k;
}

/* The last request's body to prefix, parsed (caller decrefs), and its Content-Type. */
static json_t *
last_body(const char *prefix, char *ctype, size_t n)
{
	json_t *j = NULL;
	pthread_mutex_lock(&rx.mu);
	for (int i = rx.n - 1; i >= 0; i--)
		if (strncmp(rx.target[i], prefix, strlen(prefix)) == 0) {
			j = json_loads(rx.body[i], 0, NULL);
			snprintf(ctype, n, "%s", rx.ctype[i] ? rx.ctype[i] : "");
			break;
		}
	pthread_mutex_unlock(&rx.mu);
	return j;
}

/* Uploads a fresh tree as a tar and returns its id. */
static char *
new_tree(const char *name)
{
	free(itest_make_tree(name, 500));
	return itest_upload_tree(name);
}

/* POST /vault/directory/{id} with body (or none); returns the status, the job id in
 * *job and the error text in err. */
static long
cook_with(const char *id, const char *body, json_int_t *job, char *err, size_t n)
{
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s", id);
	itest_http(&r, "POST", path, IT_USER, body, body ? strlen(body) : 0,
	    body ? "Content-Type: application/json" : NULL);
	long st = r.status;
	if (job != NULL)
		*job = json_integer_value(json_object_get(r.json, "id"));
	if (err != NULL)
		snprintf(err, n, "%s", json_string_value(json_object_get(r.json, "error")) ?: "");
	itest_resp_free(&r);
	free(path);
	return st;
}

/* A cook with notify_url: one POST of the status document, status done, the job's id,
 * soon after the job ended; the secret in the query string stays out of the logs. */
START_TEST(test_notify_on_done)
{
	char *id = new_tree("n-done");
	char *body =
	    xasprintf("{\"notify_url\":\"http://127.0.0.1:%d/done?token=s3cr3t-tok\"}", rx.port);
	json_int_t job = 0;
	ck_assert_int_eq(cook_with(id, body, &job, NULL, 0), 201);
	/* The same URL again: one notification. */
	ck_assert_int_eq(cook_with(id, body, NULL, NULL, 0), 200);
	json_t *st = itest_wait_cook("directory", id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	uint64_t ms = 0;
	ck_assert_int_eq(wait_for("/done", 1, 10000 * itest_time_factor(), &ms), 1);
	ck_assert_msg(ms < 3000 * (uint64_t)itest_time_factor(),
	    "notified %llu ms after the poll saw done", (unsigned long long)ms);
	char ctype[128];
	json_t *doc = last_body("/done?token=s3cr3t-tok", ctype, sizeof ctype);
	ck_assert_ptr_nonnull(doc);
	ck_assert_str_eq(ctype, "application/json");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "id")), job);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "obj_id")), id);
	ck_assert_ptr_nonnull(json_string_value(json_object_get(doc, "fetch_url")));
	json_decref(doc);
	/* No second POST. */
	usleep(2500000);
	ck_assert_int_eq(count_for("/done"), 1);
	char *sql = xasprintf("SELECT state || ':' || attempts FROM job_notifications"
			      " WHERE job_id = %lld",
	    (long long)job);
	char *row = itest_sql(sql);
	ck_assert_str_eq(row, "sent:1");
	free(row);
	free(sql);
	ck_assert_int_ne(itest_sh("grep -R s3cr3t-tok logs >/dev/null"), 0);
	free(body);
	free(id);
}
END_TEST

/* The receiver fails twice: delivered on the third attempt (backoff shortened by
 * notify_backoff_ms); each failure is logged, without the query string. */
START_TEST(test_notify_retries)
{
	char *id = new_tree("n-retry");
	char *body =
	    xasprintf("{\"notify_url\":\"http://127.0.0.1:%d/retry?token=hush-hush\"}", rx.port);
	json_int_t job = 0;
	pthread_mutex_lock(&rx.mu);
	rx.fail_next = 2;
	pthread_mutex_unlock(&rx.mu);
	ck_assert_int_eq(cook_with(id, body, &job, NULL, 0), 201);
	ck_assert_int_eq(wait_for("/retry", 3, 30000 * itest_time_factor(), NULL), 3);
	char ctype[128];
	json_t *doc = last_body("/retry", ctype, sizeof ctype);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	json_decref(doc);
	char *sql = xasprintf("SELECT state || ':' || attempts FROM job_notifications"
			      " WHERE job_id = %lld",
	    (long long)job);
	char *row = NULL;
	for (int i = 0; i < 50 * itest_time_factor(); i++) {
		free(row);
		row = itest_sql(sql);
		if (strcmp(row, "sent:3") == 0)
			break;
		usleep(100000);
	}
	ck_assert_str_eq(row, "sent:3");
	free(row);
	free(sql);
	usleep(1500000);
	ck_assert_int_eq(count_for("/retry"), 3);
	ck_assert_int_eq(itest_sh("grep -R 'notification to http://127.0.0.1:%d/retry failed'"
				  " logs >/dev/null",
			     rx.port),
	    0);
	ck_assert_int_ne(itest_sh("grep -R hush-hush logs >/dev/null"), 0);
	/* The job is untouched by its notifications. */
	json_t *st = itest_wait_cook("directory", id, 5);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	free(body);
	free(id);
}
END_TEST

/* Bad notify_urls are 400s and no job is made. */
START_TEST(test_bad_notify_url)
{
	char *id = new_tree("n-bad");
	char err[512];
	char long_url[3100];
	snprintf(long_url, sizeof long_url, "http://127.0.0.1:%d/", rx.port);
	size_t l = strlen(long_url);
	memset(long_url + l, 'a', 3000 - l);
	long_url[3000] = '\0';
	char *bodies[] = {
	    xstrdup("{\"notify_url\":\"ftp://127.0.0.1/x\"}"),
	    xasprintf("{\"notify_url\":\"%s\"}", long_url),
	    xstrdup("{\"notify_url\":\"http://user:pw@127.0.0.1/x\"}"),
	    xstrdup("{\"notify_url\":\"http://127.0.0.1/a b\"}"),
	    xstrdup("{\"notify_url\":\"http://127.0.0.1/a\\nb\"}"),
	    xstrdup("{\"notify_url\":\"http:///nohost\"}"),
	    xstrdup("{\"notify_url\":42}"),
	};
	const char *expect[] = {"http:// or https://", "too long", "user name or password",
	    "spaces", "control", "no host", "a string"};
	for (size_t i = 0; i < BV_NELEM(bodies); i++) {
		ck_assert_int_eq(cook_with(id, bodies[i], NULL, err, sizeof err), 400);
		ck_assert_msg(strstr(err, expect[i]) != NULL, "body %zu: %s", i, err);
		free(bodies[i]);
	}
	char *sql =
	    xasprintf("SELECT count(*) FROM jobs WHERE dedup_key LIKE 'cook:directory:%s:%%'", id);
	char *count = itest_sql(sql);
	ck_assert_str_eq(count, "0");
	free(count);
	free(sql);
	struct itest_resp r;
	char *path = xasprintf("/vault/directory/%s/status", id);
	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 404);
	itest_resp_free(&r);
	free(path);
	/* Unknown keys are still ignored; https is fine. */
	ck_assert_int_eq(cook_with(id, "{\"other\":1}", NULL, err, sizeof err), 201);
	free(id);
}
END_TEST

/* A bundle already done: a new POST with a notify_url is answered at once and notified
 * at once. */
START_TEST(test_notify_already_done)
{
	char *id = new_tree("n-again");
	json_int_t job = 0, again = 0;
	ck_assert_int_eq(cook_with(id, NULL, &job, NULL, 0), 201);
	json_t *st = itest_wait_cook("directory", id, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	char *body = xasprintf("{\"notify_url\":\"http://127.0.0.1:%d/again\"}", rx.port);
	ck_assert_int_eq(cook_with(id, body, &again, NULL, 0), 200);
	ck_assert_int_eq(again, job);
	uint64_t ms = 0;
	ck_assert_int_eq(wait_for("/again", 1, 10000 * itest_time_factor(), &ms), 1);
	ck_assert_msg(ms < 3000 * (uint64_t)itest_time_factor(), "notified after %llu ms",
	    (unsigned long long)ms);
	char ctype[128];
	json_t *doc = last_body("/again", ctype, sizeof ctype);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "id")), job);
	json_decref(doc);
	free(body);
	free(id);
}
END_TEST

static void
setup(void)
{
	itest_init("notify", 5);
	itest_env("BITSVAULT_NOTIFY_BACKOFF_MS=100");
	/* The receiver is on loopback: a private address, refused by default. */
	itest_env("BITSVAULT_NOTIFY_ALLOW_PRIVATE=true");
	receiver_start();
	itest_start_api();
	itest_start_worker("notify-w1");
}

int
main(void)
{
	Suite *s = suite_create("itest_notify");
	TCase *tc = tcase_create("notify");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_add_test(tc, test_notify_on_done);
	tcase_add_test(tc, test_notify_retries);
	tcase_add_test(tc, test_bad_notify_url);
	tcase_add_test(tc, test_notify_already_done);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
