/* itest_bits.c: the bits-service's resources against the real API (research
 * bits-service.md §1, §2): multipart uploads (bad bodies included) and copies, GET with
 * ETag / conditional GET / Range, HEAD, DELETE, buildpack cache deletes, droplet checksums
 * in the path and in Digest, size limits, a full disk, the public and private hosts, /sign,
 * and a 300 MB upload and download under the API's 64 MB memory target. After every refusal
 * the store holds no new blob and no temp file. */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tests/itest.h"

#define PRIV "bits-private"
#define PUB "bits-public"
#define KEY1 "k1-secret-0123456789"
#define MD5SECRET "md5-secret-0123"
#define SIGNER "signer:s3cret-pw"
#define BOUNDARY "XbOuNdArY42"
#define MPTYPE "Content-Type: multipart/form-data; boundary=" BOUNDARY
#define BEARER "Authorization: Bearer " IT_USER
#define BASIC "Authorization: Basic c2lnbmVyOnMzY3JldC1wdw==" /* SIGNER */

/* The Host and Authorization every request carries (NULL: none). */
static const char *host_hdr = "Host: " PRIV;
static const char *auth_hdr = BEARER;

/* libcurl's write callback: appends to a buf. */
static size_t
sink(char *p, size_t sz, size_t n, void *arg)
{
	buf_add(arg, p, sz * n);
	return sz * n;
}

/* An in-memory body read out as a chunked upload. */
struct src {
	const char *p;
	size_t left;
};

static size_t
source(char *out, size_t sz, size_t n, void *arg)
{
	struct src *s = arg;
	size_t k = sz * n < s->left ? sz * n : s->left;

	memcpy(out, s->p, k);
	s->p += k;
	s->left -= k;
	return k;
}

/* The last answer (freed by the next request). */
static struct itest_resp R;

/* One request on handle c (kept by the caller for connection reuse), with the global
 * Host and Authorization and up to two more headers; chunked sends body without a
 * Content-Length. The answer is in R; returns its status. */
static long
req_on(CURL *c, const char *method, const char *path, const void *body, size_t len, const char *h1,
    const char *h2, bool chunked)
{
	struct curl_slist *h = NULL;
	struct src s = {body, len};
	char *url = xasprintf("%s%s", IT.url, path);
	struct itest_resp *r = &R;

	itest_resp_free(r);
	memset(r, 0, sizeof *r);
	buf_init(&r->body);
	buf_init(&r->headers);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (chunked) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, source);
		curl_easy_setopt(c, CURLOPT_READDATA, &s);
	} else if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	const char *all[] = {host_hdr, auth_hdr, h1, h2, "Expect:"};
	for (size_t i = 0; i < BV_NELEM(all); i++)
		if (all[i] != NULL)
			h = curl_slist_append(h, all[i]);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	(void)curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	free(url);
	buf_addc(&r->body, '\0');
	r->body.len--;
	if (r->body.len > 0 && (r->body.data[0] == '{' || r->body.data[0] == '['))
		r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
	return r->status;
}

/* One request on a fresh connection; the answer is in R. */
static long
req(const char *method, const char *path, const void *body, size_t len, const char *h1,
    const char *h2)
{
	CURL *c = curl_easy_init();
	long status = req_on(c, method, path, body, len, h1, h2, false);
	curl_easy_cleanup(c);
	return status;
}

/* The status of a request with a text body (NULL: none) and one more header. */
static long
st(const char *method, const char *path, const char *body, const char *h1)
{
	return req(method, path, body, body != NULL ? strlen(body) : 0, h1, NULL);
}

static void
expect(long want, const char *method, const char *path, const char *body, const char *h1)
{
	long got = st(method, path, body, h1);
	ck_assert_msg(got == want, "%s %s (%s): %ld, not %ld", method, path, h1, got, want);
}

/* The error's "description" (bits-service form), or "". */
static const char *
desc(const struct itest_resp *r)
{
	const char *d = json_string_value(json_object_get(r->json, "description"));
	return d != NULL ? d : "";
}

/* PUT path with a multipart body from spec: parts "F<name>=<data>" (a file) or
 * "V<name>=<data>" (a plain field) split by '|'; ctype NULL is MPTYPE. */
static long
form(const char *path, const char *spec, const char *ctype)
{
	struct buf b;
	char *copy = xstrdup(spec), *save = NULL;

	buf_init(&b);
	for (char *p = strtok_r(copy, "|", &save); p != NULL; p = strtok_r(NULL, "|", &save)) {
		char *eq = strchr(p, '=');
		*eq = '\0';
		itest_mp_part(
		    &b, BOUNDARY, p + 1, *p == 'F' ? "f.bin" : NULL, eq + 1, strlen(eq + 1));
	}
	itest_mp_end(&b, BOUNDARY);
	long status = req("PUT", path, b.data, b.len, ctype != NULL ? ctype : MPTYPE, NULL);
	buf_free(&b);
	free(copy);
	return status;
}

/* PUT path with one file part named field holding data. */
static long
put_file(const char *path, const char *field, const void *data, size_t len)
{
	struct buf b;

	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, field, "f.bin", data, len);
	itest_mp_end(&b, BOUNDARY);
	long status = req("PUT", path, b.data, b.len, MPTYPE, NULL);
	buf_free(&b);
	return status;
}

static long
put_status(const char *path, const char *field, const char *data)
{
	char *spec = xasprintf("F%s=%s", field, data);
	long status = form(path, spec, NULL);
	free(spec);
	return status;
}

/* Asserts path's bytes are want. */
static void
assert_body(const char *path, const char *want)
{
	req("GET", path, NULL, 0, NULL, NULL);
	ck_assert_msg(R.status == 200, "GET %s: %ld", path, R.status);
	ck_assert_uint_eq(R.body.len, strlen(want));
	ck_assert(memcmp(R.body.data, want, R.body.len) == 0);
}

/* Files under a folder of the data dir. */
static int
files_under(const char *sub)
{
	char *out = itest_sh_out("find -L data/%s -type f 2>/dev/null | wc -l", sub);
	int n = atoi(out);
	free(out);
	return n;
}

static int
blobs(void)
{
	return files_under("store/objects");
}

/* No temp file is left (the writer's are removed when the request ends: allow a moment). */
static void
assert_no_tmp(void)
{
	int n = 0;
	for (int i = 0; i < 40; i++) {
		n = files_under("store/tmp") + files_under("tmp/uploads");
		if (n == 0)
			return;
		usleep(50000);
	}
	ck_abort_msg("%d temp files left in the store", n);
}

/* Lower hex digest of data under md ("sha1", "sha256"). */
static void
digest_hex(const char *md, const void *data, size_t len, char *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	ck_assert(EVP_Digest(data, len, d, &n, EVP_get_digestbyname(md), NULL) == 1);
	hex_encode(d, n, out);
}

/* Starts the API with the common keys plus the extra ones (NULL-terminated). */
static void
start_with(const char *extra, ...)
{
	va_list ap;

	static const char *common[] = {"BITSVAULT_BITS_MAX_BODY_SIZE=512M",
	    "BITSVAULT_BITS_BUILDPACKS_MAX_BODY_SIZE=64K", "BITSVAULT_BITS_PUBLIC_HOST=" PUB,
	    "BITSVAULT_BITS_SIGNING_USERS=" SIGNER, "BITSVAULT_BITS_SIGNING_KEYS=k1:" KEY1,
	    "BITSVAULT_BITS_ACTIVE_KEY_ID=k1", "BITSVAULT_BITS_MD5_SECRET=" MD5SECRET};

	IT.nextra = 0;
	for (size_t i = 0; i < BV_NELEM(common); i++)
		itest_env(common[i]);
	va_start(ap, extra);
	for (const char *kv = extra; kv != NULL; kv = va_arg(ap, const char *))
		itest_env(kv);
	va_end(ap);
	itest_start_api();
}

static void
setup(void)
{
	itest_init("bits", 14);
	start_with("BITSVAULT_BITS_PRIVATE_HOST=" PRIV, NULL);
}

/* A failed full-disk case may leave its tmpfs mounted. */
static void
teardown(void)
{
	itest_sh("mountpoint -q full 2>/dev/null && umount -l full");
	itest_teardown();
}

static void
restart_with(const char *kv1, const char *kv2)
{
	itest_stop_api();
	start_with("BITSVAULT_BITS_PRIVATE_HOST=" PRIV, kv1, kv2, NULL);
}

START_TEST(test_put_get_head_delete)
{
	const char *data = "package bytes\x01\x02\n";
	char h1[41], h256[65], etag[64];
	int before = blobs();

	digest_hex("sha1", data, strlen(data), h1);
	digest_hex("sha256", data, strlen(data), h256);
	ck_assert_int_eq(put_file("/packages/p1", "package", data, strlen(data)), 201);
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "guid")), "p1");
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "state")), "READY");
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "sha1")), h1);
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "sha256")), h256);
	ck_assert_int_eq(blobs(), before + 1);

	/* Same bytes under other names and kinds ('bits' as the field): one blob. */
	ck_assert_int_eq(put_status("/packages/p2", "bits", data), 201);
	ck_assert_int_eq(put_status("/buildpacks/b1", "buildpack", data), 201);
	ck_assert_int_eq(put_status("/buildpack_cache/entries/a/s", "buildpack_cache", data), 201);
	ck_assert_int_eq(put_status("/droplets/d1/v1", "droplet", data), 201);
	ck_assert_int_eq(blobs(), before + 1);
	/* A key is replaced by a new upload. */
	ck_assert_int_eq(put_status("/packages/p2", "package", "other"), 201);
	assert_body("/packages/p2", "other");

	ck_assert_int_eq(req("GET", "/packages/p1", NULL, 0, NULL, NULL), 200);
	ck_assert_uint_eq(R.body.len, strlen(data));
	ck_assert(memcmp(R.body.data, data, R.body.len) == 0);
	snprintf(etag, sizeof etag, "\"%s\"", h1);
	ck_assert_str_eq(itest_header(&R, "ETag"), etag);

	ck_assert_int_eq(req("HEAD", "/packages/p1", NULL, 0, NULL, NULL), 200);
	ck_assert_int_eq(atoi(itest_header(&R, "Content-Length")), (int)strlen(data));
	ck_assert_uint_eq(R.body.len, 0);
	expect(404, "HEAD", "/packages/nope", NULL, NULL);

	expect(204, "DELETE", "/packages/p1", NULL, NULL);
	ck_assert_int_eq(req("DELETE", "/packages/p1", NULL, 0, NULL, NULL), 404);
	ck_assert_int_eq(json_integer_value(json_object_get(R.json, "code")), 10010);
	expect(404, "GET", "/packages/p1", NULL, NULL);
	/* The other names still serve the shared blob. */
	assert_body("/buildpacks/b1", data);
	assert_body("/droplets/d1/v1", data);
}
END_TEST

START_TEST(test_bad_multipart)
{
	struct buf b;
	int before = blobs();

	/* Cut short: no closing boundary, or inside the part's headers. */
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "package", "f.zip", "hello", 5);
	ck_assert_int_eq(req("PUT", "/packages/m1", b.data, b.len - 2, MPTYPE, NULL), 400);
	ck_assert_int_eq(req("PUT", "/packages/m1", b.data, 30, MPTYPE, NULL), 400);
	buf_free(&b);
	/* No boundary in the Content-Type, or not the body's. */
	expect(400, "PUT", "/packages/m1", "--" BOUNDARY "--\r\n",
	    "Content-Type: multipart/form-data");
	ck_assert_int_eq(
	    form("/packages/m1", "Fpackage=x", "Content-Type: multipart/form-data"), 400);
	ck_assert_int_eq(
	    form("/packages/m1", "Fpackage=x", "Content-Type: multipart/form-data; boundary=o"),
	    400);
	/* No file field: a plain field of that name, a file under another name, nothing. */
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "package", NULL, "not a file", 10);
	itest_mp_part(&b, BOUNDARY, "application", "a.zip", "zzz", 3);
	itest_mp_end(&b, BOUNDARY);
	ck_assert_int_eq(req("PUT", "/packages/m1", b.data, b.len, MPTYPE, NULL), 400);
	ck_assert_int_eq(json_integer_value(json_object_get(R.json, "code")), 290003);
	ck_assert_str_eq(desc(&R), "Could not retrieve form parameter 'package' or 'bits'");
	buf_free(&b);
	ck_assert_int_eq(form("/packages/m1", "Vbits=x|Fresources=[]", NULL), 400);
	expect(400, "PUT", "/packages/m1", "--" BOUNDARY "--\r\n", MPTYPE);
	expect(400, "PUT", "/packages/m1", "", MPTYPE);
	/* Non-empty resources on a package: 422 (not supported yet); bad JSON as well. */
	ck_assert_int_eq(form("/packages/m1", "Vresources=[{\"fn\":\"a\"}]|Fpackage=z", NULL), 422);
	ck_assert_int_eq(form("/packages/m1", "Vresources=[nope|Fpackage=z", NULL), 422);
	ck_assert_int_eq(form("/packages/m1", "Fpackage=z|Vresources={}", NULL), 422);
	expect(404, "GET", "/packages/m1", NULL, NULL);
	ck_assert_int_eq(blobs(), before);
	assert_no_tmp();

	/* A quoted boundary; an empty resources list; a second file part is ignored. */
	ck_assert_int_eq(form("/packages/m3", "Fpackage=quoted",
			     "Content-Type: multipart/form-data; boundary=\"" BOUNDARY "\""),
	    201);
	assert_body("/packages/m3", "quoted");
	before = blobs();
	ck_assert_int_eq(
	    form("/packages/m2", "Vresources=[]|Fpackage=first|Fpackage=second|Fbits=third", NULL),
	    201);
	assert_body("/packages/m2", "first");
	/* resources is a package matter: a buildpack ignores it. */
	ck_assert_int_eq(form("/buildpacks/m2", "Vresources=[nope|Fbuildpack=first", NULL), 201);
	ck_assert_int_eq(blobs(), before + 1);
	assert_no_tmp();
}
END_TEST

/* A connection that dies mid-body leaves nothing behind. */
START_TEST(test_connection_dropped)
{
	int port = atoi(strrchr(IT.listen, ':') + 1), before = blobs();
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char head[512], chunk[4096];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	int n = snprintf(head, sizeof head,
	    "PUT /packages/dropped HTTP/1.1\r\nHost: " PRIV "\r\n" BEARER "\r\n" MPTYPE
	    "\r\nContent-Length: 1000000\r\n\r\n--" BOUNDARY
	    "\r\nContent-Disposition: form-data; name=\"package\"; filename=\"x\"\r\n\r\n");
	ck_assert(write(fd, head, (size_t)n) == n);
	memset(chunk, 'x', sizeof chunk);
	for (int i = 0; i < 30; i++)
		ck_assert(write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk);
	usleep(200000);
	close(fd);
	assert_no_tmp();
	ck_assert_int_eq(blobs(), before);
	expect(404, "GET", "/packages/dropped", NULL, NULL);
}
END_TEST

START_TEST(test_copy)
{
	int before;

	ck_assert_int_eq(put_status("/packages/src", "package", "copy me"), 201);
	before = blobs();
	ck_assert_int_eq(req("PUT", "/packages/dst", "{\"source_guid\":\"src\"}", 21,
			     "Content-Type: application/json", NULL),
	    201);
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "guid")), "dst");
	assert_body("/packages/dst", "copy me");
	ck_assert_int_eq(blobs(), before);
	/* The copy outlives its source. */
	expect(204, "DELETE", "/packages/src", NULL, NULL);
	assert_body("/packages/dst", "copy me");

	const char *bad[] = {"{\"source_guid\":", "", "[\"src\"]", "\"src\"", "{\"source_guid\":1}",
	    "{\"source_guid\":\"..\"}", "{}"};
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		req("PUT", "/packages/dst2", bad[i], strlen(bad[i]),
		    "Content-Type: application/json", NULL);
		ck_assert_msg(R.status == 400, "copy body '%s': %ld", bad[i], R.status);
		ck_assert_int_eq(json_integer_value(json_object_get(R.json, "code")), 290003);
	}
	ck_assert_int_eq(
	    req("PUT", "/packages/dst2", "{\"source_guid\":\"src\"}", 21, NULL, NULL), 404);
	/* A copy stays within its kind. */
	ck_assert_int_eq(put_status("/buildpacks/bsrc", "buildpack", "bp"), 201);
	expect(404, "PUT", "/packages/dst2", "{\"source_guid\":\"bsrc\"}", NULL);
	expect(404, "GET", "/packages/dst2", NULL, NULL);
}
END_TEST

START_TEST(test_keys)
{
	const char *bad[] = {"/packages/.", "/packages/..", "/packages/%2e", "/packages/%2E%2e",
	    "/packages/a%01b", "/packages/a%0ab", "/packages/%7f", "/packages/a%00b",
	    "/packages/a%2fb", "/droplets/g/%2e%2e", "/buildpack_cache/entries/a/.."};
	char path[400];
	int before = blobs();

	for (size_t i = 0; i <= BV_NELEM(bad); i++) {
		if (i == BV_NELEM(bad))
			snprintf(path, sizeof path, "/packages/%0256d", 0); /* 256 bytes */
		else
			snprintf(path, sizeof path, "%s", bad[i]);
		ck_assert_msg(put_status(path, "bits", "k") == 400, "PUT %s: %ld", path, R.status);
		expect(400, "GET", path, NULL, NULL);
		expect(400, "DELETE", path, NULL, NULL);
	}
	ck_assert_int_eq(blobs(), before);
	assert_no_tmp();
	/* 255 bytes, and printable oddities, are fine; percent-encoding is decoded. */
	snprintf(path, sizeof path, "/packages/%0255d", 0);
	ck_assert_int_eq(put_status(path, "bits", "k"), 201);
	assert_body(path, "k");
	ck_assert_int_eq(put_status("/packages/a%20b~%25", "bits", "k2"), 201);
	assert_body("/packages/a%20b~%25", "k2");
	ck_assert_int_eq(put_status("/packages/...", "bits", "k3"), 201);
	assert_body("/packages/...", "k3");
}
END_TEST

START_TEST(test_droplet_checksums)
{
	const char *data = "droplet tgz bytes";
	char h1[41], h256[65], path[200], hdr[128];
	int before;

	digest_hex("sha1", data, strlen(data), h1);
	digest_hex("sha256", data, strlen(data), h256);
	snprintf(path, sizeof path, "/droplets/dg/%s", h1);
	ck_assert_int_eq(put_status(path, "droplet", data), 201);
	snprintf(path, sizeof path, "/droplets/dg/%s", h256);
	ck_assert_int_eq(put_status(path, "bits", data), 201);
	assert_body(path, data);
	before = blobs();

	/* Wrong checksums: 400, nothing stored. */
	snprintf(path, sizeof path, "/droplets/dw/%s", h1);
	ck_assert_int_eq(put_file(path, "droplet", "tampered bytes!", 15), 400);
	ck_assert_int_eq(json_integer_value(json_object_get(R.json, "code")), 290003);
	expect(404, "GET", path, NULL, NULL);
	snprintf(path, sizeof path, "/droplets/dw/%s", h256);
	ck_assert_int_eq(put_status(path, "droplet", "tampered bytes!"), 400);
	expect(404, "GET", path, NULL, NULL);
	ck_assert_int_eq(blobs(), before);
	assert_no_tmp();

	/* Digest header on PUT /droplets/{guid}: stored at guid/<value>. */
	snprintf(hdr, sizeof hdr, "Digest: sha256=%s", h256);
	ck_assert_int_eq(req("PUT", "/droplets/dd", data, strlen(data), hdr, NULL), 201);
	snprintf(path, sizeof path, "/droplets/dd/%s", h256);
	assert_body(path, data);
	snprintf(hdr, sizeof hdr, "Digest: SHA256=%s", h256);
	expect(201, "PUT", "/droplets/dd2", data, hdr);
	before = blobs();
	snprintf(hdr, sizeof hdr, "Digest: sha256=%s", h256);
	ck_assert_int_eq(req("PUT", "/droplets/dx", "other", 5, hdr, NULL), 400);
	snprintf(path, sizeof path, "/droplets/dx/%s", h256);
	expect(404, "GET", path, NULL, NULL);
	ck_assert_int_eq(req("PUT", "/droplets/dx", data, strlen(data), NULL, NULL), 400);
	ck_assert_str_eq(desc(&R), "No Digest header");
	expect(400, "PUT", "/droplets/dx", data, "Digest;");
	char *malformed[] = {xasprintf("Digest: md5=%s", h1), xasprintf("Digest: sha256:%s", h256),
	    xasprintf("Digest: sha256=%s=", h256), xasprintf("Digest: sha256=%.63s", h256),
	    xasprintf("Digest: sha256=%sz", h256), xasprintf("Digest: sha256="),
	    xasprintf("Digest: sha-256=%s", h256), xasprintf("Digest: sha256=%s", h1),
	    xasprintf("Digest: sha256=abcdefg")};
	for (size_t i = 0; i < BV_NELEM(malformed); i++) {
		req("PUT", "/droplets/dx", data, strlen(data), malformed[i], NULL);
		ck_assert_msg(R.status == 400, "%s: %ld", malformed[i], R.status);
		ck_assert_msg(strncmp(desc(&R), "Digest must have format sha256=value", 36) == 0,
		    "%s: %s", malformed[i], desc(&R));
		free(malformed[i]);
	}
	ck_assert_int_eq(blobs(), before);
	assert_no_tmp();
	/* An empty droplet has a Content-Length too (0). */
	digest_hex("sha256", "", 0, h256);
	snprintf(hdr, sizeof hdr, "Digest: sha256=%s", h256);
	req("PUT", "/droplets/empty", "", 0, hdr, NULL);
	ck_assert_msg(R.status == 201, "empty droplet: %ld %s", R.status, R.body.data);
}
END_TEST

/* tmpl with its '@' replaced by v, into out. */
static void
subst(char *out, size_t size, const char *tmpl, const char *v)
{
	const char *at = strchr(tmpl, '@');
	if (at == NULL)
		snprintf(out, size, "%s", tmpl);
	else
		snprintf(out, size, "%.*s%s%s", (int)(at - tmpl), tmpl, v, at + 1);
}

START_TEST(test_range_and_conditional)
{
	char data[101], h1[41], hdr[200];

	for (int i = 0; i < 100; i++)
		data[i] = (char)('A' + i % 26);
	data[100] = '\0';
	digest_hex("sha1", data, 100, h1);
	ck_assert_int_eq(put_status("/buildpacks/rg", "buildpack", data), 201);

	struct {
		const char *range;
		long status;
		size_t start, len;
		const char *content_range;
	} cases[] = {
	    {"Range: bytes=0-0", 206, 0, 1, "bytes 0-0/100"},
	    {"Range: bytes=-5", 206, 95, 5, "bytes 95-99/100"},
	    {"Range: bytes=5-", 206, 5, 95, "bytes 5-99/100"},
	    {"Range: bytes=10-19", 206, 10, 10, "bytes 10-19/100"},
	    {"Range: bytes=90-500", 206, 90, 10, "bytes 90-99/100"},
	    {"Range: bytes=-500", 206, 0, 100, "bytes 0-99/100"},
	    {"Range: bytes=100-", 416, 0, 0, "bytes */100"},
	    {"Range: bytes=1000-2000", 416, 0, 0, "bytes */100"},
	    {"Range: bytes=0-1,5-6", 200, 0, 100, NULL},
	    {"Range: bytes=5-2", 200, 0, 100, NULL},
	    {"Range: lines=1-2", 200, 0, 100, NULL},
	};
	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		req("GET", "/buildpacks/rg", NULL, 0, cases[i].range, NULL);
		ck_assert_msg(R.status == cases[i].status, "%s: %ld", cases[i].range, R.status);
		if (cases[i].content_range != NULL)
			ck_assert_str_eq(itest_header(&R, "Content-Range"), cases[i].content_range);
		if (R.status != 416) {
			ck_assert_uint_eq(R.body.len, cases[i].len);
			ck_assert(memcmp(R.body.data, data + cases[i].start, cases[i].len) == 0);
		}
	}

	const char *fmt304[] = {"If-None-Match: \"@\"", "If-None-Match: @",
	    "If-None-Match: W/\"@\"", "If-None-Match: \"nope\", \"@\"", "If-None-Match: \"nope\",@",
	    "If-None-Modify: @", "If-None-Modify: \"@\"", "If-None-Match: *"};
	for (size_t i = 0; i < BV_NELEM(fmt304); i++) {
		subst(hdr, sizeof hdr, fmt304[i], h1);
		req("GET", "/buildpacks/rg", NULL, 0, hdr, NULL);
		ck_assert_msg(R.status == 304, "%s: %ld", hdr, R.status);
		ck_assert_uint_eq(R.body.len, 0);
		ck_assert_ptr_nonnull(strstr(itest_header(&R, "ETag"), h1));
	}
	const char *fmt200[] = {
	    "If-None-Match: \"nope\"", "If-None-Match: \"@a\"", "If-None-Modify: nope"};
	for (size_t i = 0; i < BV_NELEM(fmt200); i++) {
		subst(hdr, sizeof hdr, fmt200[i], h1);
		req("GET", "/buildpacks/rg", NULL, 0, hdr, NULL);
		ck_assert_msg(R.status == 200, "%s: %ld", hdr, R.status);
		ck_assert_uint_eq(R.body.len, 100);
	}
	/* HEAD with a range: the range's length, no body. */
	ck_assert_int_eq(req("HEAD", "/buildpacks/rg", NULL, 0, "Range: bytes=0-9", NULL), 206);
	ck_assert_str_eq(itest_header(&R, "Content-Length"), "10");
	ck_assert_uint_eq(R.body.len, 0);
}
END_TEST

START_TEST(test_buildpack_cache)
{
	const char *keys[] = {"app1/s1", "app1/s2", "app10/s1", "app_/s1", "appX/s1", "app2/s1"};
	char path[128];

	for (size_t i = 0; i < BV_NELEM(keys); i++) {
		snprintf(path, sizeof path, "/buildpack_cache/entries/%s", keys[i]);
		ck_assert_int_eq(put_status(path, "buildpack_cache", keys[i]), 201);
	}
	expect(204, "DELETE", "/buildpack_cache/entries/app1/s1", NULL, NULL);
	expect(404, "DELETE", "/buildpack_cache/entries/app1/s1", NULL, NULL);
	/* One app: every stack of it, not app10's; '_' is not a wildcard. */
	expect(204, "DELETE", "/buildpack_cache/entries/app1", NULL, NULL);
	expect(204, "DELETE", "/buildpack_cache/entries/app_", NULL, NULL);
	expect(404, "GET", "/buildpack_cache/entries/app1/s2", NULL, NULL);
	expect(404, "GET", "/buildpack_cache/entries/app_/s1", NULL, NULL);
	assert_body("/buildpack_cache/entries/app10/s1", "app10/s1");
	assert_body("/buildpack_cache/entries/appX/s1", "appX/s1");
	/* An app with nothing: still 204. */
	expect(204, "DELETE", "/buildpack_cache/entries/nobody", NULL, NULL);
	/* Everything (other kinds untouched). */
	ck_assert_int_eq(put_status("/packages/keep", "package", "kept"), 201);
	expect(204, "DELETE", "/buildpack_cache/entries", NULL, NULL);
	expect(404, "GET", "/buildpack_cache/entries/app2/s1", NULL, NULL);
	expect(404, "GET", "/buildpack_cache/entries/app10/s1", NULL, NULL);
	expect(204, "DELETE", "/buildpack_cache/entries", NULL, NULL);
	assert_body("/packages/keep", "kept");
	/* The bits-service's other spelling of "everything" (research §1.6). */
	expect(204, "DELETE", "/buildpack_cache/entries/", NULL, NULL);
}
END_TEST

/* POST a zip (made from dir) to /buildpacks as the "buildpack" file; the status. */
static long
post_buildpack(const char *dir)
{
	char *err = NULL, *zip;
	size_t len = 0;
	struct buf b;

	ck_assert_int_eq(itest_sh("rm -f bp.zip && (cd %s && zip -qr ../bp.zip .)", dir), 0);
	char *file = xasprintf("%s/bp.zip", IT.dir);
	zip = read_file(file, &len, &err);
	free(file);
	ck_assert_msg(zip != NULL, "%s", err);
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "buildpack", "go_buildpack.zip", zip, len);
	itest_mp_end(&b, BOUNDARY);
	long status = req("POST", "/buildpacks", b.data, b.len, MPTYPE, NULL);
	buf_free(&b);
	free(zip);
	return status;
}

/* POST /buildpacks: the server's guid, the manifest's stack in the metadata, the bytes
 * served back; the bits-service's 400s for a zip without a usable manifest. */
START_TEST(test_buildpack_post)
{
	static const struct {
		const char *manifest; /* NULL: none */
		const char *desc;
	} bad[] = {
	    {NULL, "Invalid buildpack zip file: no manifest.yml found in zip"},
	    {"language: go\n", "missing key \"stack\" in manifest.yml"},
	    {"stack:\n  nested: x\n", "missing key \"stack\" in manifest.yml"},
	    {"stack: [\n", "manifest.yml is an invalid YAML file"},
	};

	itest_sh("rm -rf bp && mkdir -p bp/bin && echo detect >bp/bin/detect && "
		 "printf 'language: go\\nstack: cflinuxfs4\\ndependencies:\\n- stack: other\\n' "
		 ">bp/manifest.yml");
	ck_assert_int_eq(post_buildpack("bp"), 201);
	const char *guid = json_string_value(json_object_get(R.json, "guid"));
	ck_assert_msg(guid != NULL && strlen(guid) == 36 && guid[14] == '4', "guid %s", guid);
	char *g = xstrdup(guid), *path = xasprintf("/buildpacks/%s/metadata", g);
	char *sha1 = itest_sh_out("sha1sum bp.zip | cut -c1-40");
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "sha1")), sha1);
	ck_assert_int_eq(st("GET", path, NULL, NULL), 200);
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "stack")), "cflinuxfs4");
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "key")), g);
	ck_assert_str_eq(
	    json_string_value(json_object_get(R.json, "filename")), "go_buildpack.zip");
	ck_assert_str_eq(json_string_value(json_object_get(R.json, "sha1")), sha1);
	free(path);
	path = xasprintf("/buildpacks/%s", g);
	ck_assert_int_eq(st("GET", path, NULL, NULL), 200);
	char *served = xasprintf("%s/served.zip", IT.dir), *werr = NULL;
	ck_assert(write_file_atomic(served, R.body.data, R.body.len, 0644, &werr) == 0);
	ck_assert_int_eq(itest_sh("cmp -s bp.zip served.zip"), 0);
	/* A buildpack stored by PUT has no metadata. */
	ck_assert_int_eq(put_status("/buildpacks/plain", "buildpack", "x"), 201);
	expect(404, "GET", "/buildpacks/plain/metadata", NULL, NULL);
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		itest_sh("rm -f bp/manifest.yml");
		if (bad[i].manifest != NULL)
			itest_sh("printf '%%s' '%s' >bp/manifest.yml", bad[i].manifest);
		ck_assert_int_eq(post_buildpack("bp"), 400);
		ck_assert_str_eq(desc(&R), bad[i].desc);
	}
	expect(400, "POST", "/buildpacks", "{}", "Content-Type: application/json");
	free(served);
	free(path);
	free(g);
	free(sha1);
}
END_TEST

START_TEST(test_limits)
{
	size_t big = 100 * 1024;
	char *data = xmalloc(big);
	struct buf b;
	CURL *c = curl_easy_init();
	long conns = -1;
	int before = blobs();

	memset(data, 'L', big);
	/* Content-Length past the buildpack limit (64K): 413 after the body is drained, and
	 * the connection still answers. */
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "buildpack", "b.zip", data, big);
	itest_mp_end(&b, BOUNDARY);
	ck_assert_int_eq(
	    req_on(c, "PUT", "/buildpacks/big", b.data, b.len, MPTYPE, NULL, false), 413);
	ck_assert_int_eq(req_on(c, "GET", "/buildpacks/big", NULL, 0, NULL, NULL, false), 404);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
	ck_assert_int_eq(conns, 0);
	/* A raw body past the limit as well (JSON path). */
	ck_assert_int_eq(req_on(c, "PUT", "/buildpacks/big", data, big, NULL, NULL, false), 413);
	ck_assert_int_eq(req_on(c, "GET", "/buildpacks/big", NULL, 0, NULL, NULL, false), 404);

	/* Chunked (no Content-Length) with a limit: 400. */
	buf_reset(&b);
	itest_mp_part(&b, BOUNDARY, "buildpack", "b.zip", data, 1000);
	itest_mp_end(&b, BOUNDARY);
	ck_assert_int_eq(
	    req_on(c, "PUT", "/buildpacks/chunked", b.data, b.len, MPTYPE, NULL, true), 400);
	ck_assert_str_eq(desc(&R), "HTTP header does not contain Content-Length");
	ck_assert_int_eq(
	    req_on(c, "PUT", "/packages/chunked", b.data, b.len, MPTYPE, NULL, true), 400);
	curl_easy_cleanup(c);
	ck_assert_int_eq(blobs(), before);
	assert_no_tmp();

	/* Exactly at the limit: stored. */
	buf_reset(&b);
	itest_mp_part(&b, BOUNDARY, "buildpack", "b.zip", "", 0);
	itest_mp_end(&b, BOUNDARY);
	size_t fill = 64 * 1024 - b.len;
	buf_reset(&b);
	itest_mp_part(&b, BOUNDARY, "buildpack", "b.zip", data, fill);
	itest_mp_end(&b, BOUNDARY);
	ck_assert_uint_eq(b.len, 64 * 1024);
	ck_assert_int_eq(req("PUT", "/buildpacks/edge", b.data, b.len, MPTYPE, NULL), 201);
	buf_free(&b);
	free(data);
}
END_TEST

/* The query of an HMAC-signed URL for method and path (k1), expiring at exp. */
static char *
hmac_query(const char *method, const char *path, long long exp)
{
	unsigned char mac[32];
	unsigned int n = 0;
	char hex[65];
	char *msg = xasprintf("%s %s %s %lld", method, path, KEY1, exp);

	HMAC(EVP_sha256(), KEY1, (int)strlen(KEY1), (unsigned char *)msg, strlen(msg), mac, &n);
	hex_encode(mac, 32, hex);
	free(msg);
	return xasprintf("signature=%s&expires=%lld&AccessKeyId=k1", hex, exp);
}

/* The query of an nginx md5 URL for path, expiring at exp. */
static char *
md5_query(const char *path, long long exp)
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

/* GET /sign/<path> with the signer's Basic credentials: the path and query to use. */
static char *
sign(const char *path_and_verb)
{
	char *p = xasprintf("/sign%s", path_and_verb);
	const char *saved = auth_hdr;

	auth_hdr = NULL;
	req("GET", p, NULL, 0, BASIC, NULL);
	auth_hdr = saved;
	ck_assert_msg(R.status == 200, "%s: %ld %s", p, R.status, R.body.data);
	ck_assert(strncmp(itest_header(&R, "Content-Type"), "text/plain", 10) == 0);
	ck_assert_msg(
	    strncmp(R.body.data, "http://" PUB "/", strlen(PUB) + 8) == 0, "%s", R.body.data);
	ck_assert(strchr(R.body.data, '\n') == NULL);
	char *out = xstrdup(R.body.data + strlen("http://" PUB));
	free(p);
	return out;
}

/* GET path?q (q freed): the status. */
static long
get_q(const char *path, char *q)
{
	char *url = xasprintf("%s?%s", path, q);
	long status = st("GET", url, NULL, NULL);
	free(url);
	free(q);
	return status;
}

/* GET url with the character after the first `at` changed: the status. */
static long
tampered(const char *url, const char *at)
{
	char *copy = xstrdup(url), *p = strstr(copy, at) + strlen(at);
	*p = *p == '1' ? '2' : '1';
	long status = st("GET", copy, NULL, NULL);
	free(copy);
	return status;
}

START_TEST(test_hosts_and_signing)
{
	char path[512];
	long long now = (long long)time(NULL);

	ck_assert_int_eq(put_status("/packages/pub", "package", "public bytes"), 201);
	/* Bearer on the private host: missing or wrong token → 401. */
	auth_hdr = NULL;
	ck_assert_int_eq(req("GET", "/packages/pub", NULL, 0, NULL, NULL), 401);
	ck_assert_ptr_nonnull(itest_header(&R, "WWW-Authenticate"));
	expect(401, "GET", "/packages/pub", NULL, "Authorization: Bearer nope");
	ck_assert_int_eq(put_status("/packages/nope", "package", "x"), 401);

	/* The public host: signed URLs only, whatever the token. */
	host_hdr = "Host: " PUB;
	expect(403, "GET", "/packages/pub", NULL, BEARER);
	expect(403, "GET", "/packages/pub?md5=INVALID_SIGNATURE&expires=9999999999", NULL, NULL);
	host_hdr = "Host: " PRIV;
	char *get = sign("/packages/pub?verb=get");
	char *put = sign("/packages/pub2?verb=put");
	char *dflt = sign("/packages/pub");
	host_hdr = "Host: " PUB ":8443";
	assert_body(get, "public bytes");
	assert_body(dflt, "public bytes");
	ck_assert_int_eq(req("HEAD", get, NULL, 0, NULL, NULL), 403); /* the method is signed */
	expect(403, "DELETE", get, NULL, NULL);
	snprintf(path, sizeof path, "/packages/pub2%s", strchr(get, '?'));
	ck_assert_int_eq(put_status(path, "package", "x"), 403); /* GET's signature for PUT */
	ck_assert_int_eq(put_status(put, "package", "signed put"), 201);
	host_hdr = "Host: " PRIV;
	auth_hdr = BEARER;
	assert_body("/packages/pub2", "signed put");
	host_hdr = "Host: " PUB;
	auth_hdr = NULL;
	/* Tampered: the signature, the expiry, the key id, the path. */
	ck_assert_int_eq(tampered(get, "signature="), 403);
	ck_assert_int_eq(tampered(get, "expires="), 403);
	ck_assert_int_eq(tampered(get, "AccessKeyId=k"), 403);
	ck_assert_int_eq(get_q("/packages/pub2", xstrdup(strchr(get, '?') + 1)), 403);
	/* Our own HMAC: valid, and expired (403, no 410 for this scheme). */
	ck_assert_int_eq(get_q("/packages/pub", hmac_query("GET", "/packages/pub", now + 60)), 200);
	ck_assert_str_eq(R.body.data, "public bytes");
	ck_assert_int_eq(get_q("/packages/pub", hmac_query("GET", "/packages/pub", now - 60)), 403);
	/* md5 + expires, under /signed/ as the Ruby bits-service served them: valid, expired
	 * → 410, tampered → 403, another path's → 403; outside /signed/, or to DELETE, an md5
	 * URL is refused even when its hash is right (the method is not hashed). */
	ck_assert_int_eq(
	    get_q("/signed/packages/pub", md5_query("/signed/packages/pub", now + 60)), 200);
	ck_assert_str_eq(R.body.data, "public bytes");
	ck_assert_int_eq(
	    get_q("/signed/packages/pub", md5_query("/signed/packages/pub", now - 60)), 410);
	char *q = md5_query("/signed/packages/pub", now + 60);
	q[4] = q[4] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(get_q("/signed/packages/pub", q), 403);
	ck_assert_int_eq(
	    get_q("/signed/packages/pub", md5_query("/signed/packages/other", now + 60)), 403);
	ck_assert_int_eq(get_q("/packages/pub", md5_query("/packages/pub", now + 60)), 403);
	char *del = xasprintf("/packages/pub?%s", md5_query("/packages/pub", now + 60));
	ck_assert_int_eq(req("DELETE", del, NULL, 0, NULL, NULL), 403);
	free(del);
	/* A signed PUT URL carries bytes, never a copy of another resource. */
	char *signed_put =
	    xasprintf("/packages/mine?%s", hmac_query("PUT", "/packages/mine", now + 60));
	const char *copy = "{\"source_guid\":\"pub\"}";
	ck_assert_int_eq(req("PUT", signed_put, copy, strlen(copy), NULL, NULL), 403);
	free(signed_put);
	/* /sign is not served on the public host. */
	ck_assert_int_eq(req("GET", "/sign/packages/pub?verb=get", NULL, 0, BASIC, NULL), 404);
	/* The stash's matches and bundles read by sha1: never through a signed URL. */
	const char *stash_body =
	    "[{\"fn\":\"x\",\"sha1\":\"0000000000000000000000000000000000000001\","
	    "\"size\":1}]";
	const char *stash_paths[] = {"/app_stash/matches", "/app_stash/bundles"};
	for (size_t k = 0; k < BV_NELEM(stash_paths); k++) {
		char *u = xasprintf(
		    "%s?%s", stash_paths[k], hmac_query("POST", stash_paths[k], now + 60));
		ck_assert_int_eq(req("POST", u, stash_body, strlen(stash_body),
				     "Content-Type: application/json", NULL),
		    403);
		free(u);
	}

	/* An unknown host: 400 naming the public one. */
	host_hdr = "Host: evil.example";
	ck_assert_int_eq(req("GET", "/packages/pub", NULL, 0, BEARER, NULL), 400);
	ck_assert_str_eq(desc(&R),
	    "Invalid host 'evil.example'. External clients should use hostname '" PUB "'.");
	expect(400, "GET", get, NULL, NULL);

	/* /sign on the private host: Basic only; a bad verb is a 400 in plain text. */
	host_hdr = "Host: " PRIV;
	const char *nobasic[] = {NULL, BEARER, "Authorization: Basic c2lnbmVyOndyb25n",
	    "Authorization: Basic !!!", "Authorization: Basic c2lnbmVy"};
	for (size_t i = 0; i < BV_NELEM(nobasic); i++) {
		req("GET", "/sign/packages/pub?verb=get", NULL, 0, nobasic[i], NULL);
		ck_assert_msg(R.status == 401, "%s: %ld", nobasic[i], R.status);
		ck_assert_str_eq(
		    itest_header(&R, "WWW-Authenticate"), "Basic realm=\"bits-service\"");
	}
	ck_assert_int_eq(req("GET", "/sign/packages/pub?verb=x", NULL, 0, BASIC, NULL), 400);
	ck_assert_str_eq(R.body.data, "Invalid verb: x");
	free(get);
	free(put);
	free(dflt);
	auth_hdr = BEARER;
}
END_TEST

/* With bits_private_host unset, any host but the public one is private. Auth none, then
 * basic. With no global limit, a chunked upload streams in. */
START_TEST(test_private_auth_modes)
{
	struct buf b;
	CURL *c;

	itest_stop_api();
	/* none needs no public host (api/bitsauth.c refuses the pair, check_api_auth). */
	start_with("BITSVAULT_BITS_PRIVATE_AUTH=none", "BITSVAULT_BITS_MAX_BODY_SIZE=0",
	    "BITSVAULT_BITS_PUBLIC_HOST=", NULL);
	auth_hdr = NULL;
	host_hdr = "Host: anything.example";
	ck_assert_int_eq(put_status("/packages/open", "package", "open"), 201);
	assert_body("/packages/open", "open");
	host_hdr = NULL;
	assert_body("/packages/open", "open");
	buf_init(&b);
	itest_mp_part(&b, BOUNDARY, "package", "c.zip", "chunked body", 12);
	itest_mp_end(&b, BOUNDARY);
	c = curl_easy_init();
	ck_assert_int_eq(
	    req_on(c, "PUT", "/packages/chunky", b.data, b.len, MPTYPE, NULL, true), 201);
	/* Buildpacks keep their own limit: chunked is still a 400 there. */
	ck_assert_int_eq(
	    req_on(c, "PUT", "/buildpacks/chunky", b.data, b.len, MPTYPE, NULL, true), 400);
	curl_easy_cleanup(c);
	buf_free(&b);
	assert_body("/packages/chunky", "chunked body");

	itest_stop_api();
	start_with("BITSVAULT_BITS_PRIVATE_AUTH=basic", NULL);
	host_hdr = "Host: " PRIV;
	ck_assert_int_eq(req("GET", "/packages/open", NULL, 0, NULL, NULL), 401);
	ck_assert_str_eq(itest_header(&R, "WWW-Authenticate"), "Basic realm=\"bits-service\"");
	expect(401, "GET", "/packages/open", NULL, BEARER);
	expect(401, "GET", "/packages/open", NULL, "Authorization: Basic c2lnbmVyOndyb25n");
	auth_hdr = BASIC;
	assert_body("/packages/open", "open");
	ck_assert_int_eq(put_status("/packages/basic", "bits", "via basic"), 201);
	assert_body("/packages/basic", "via basic");

	/* Back to the first configuration for the tests that follow. */
	restart_with(NULL, NULL);
	auth_hdr = BEARER;
	host_hdr = "Host: " PRIV;
}
END_TEST

/* A store on a 1 MB tmpfs: a 2 MB upload is a 507 and leaves nothing. Needs root. */
START_TEST(test_disk_full)
{
	size_t n = 2 * 1024 * 1024;
	char *data;

	if (getuid() != 0) {
		fprintf(stderr, "itest_bits: not root, the full-disk case is skipped\n");
		return;
	}
	itest_stop_api();
	if (itest_sh("mkdir -p full && mount -t tmpfs -o size=1m tmpfs full") != 0) {
		fprintf(
		    stderr, "itest_bits: cannot mount a tmpfs, the full-disk case is skipped\n");
		restart_with(NULL, NULL);
		return;
	}
	/* The API's store is the tmpfs: data/store → full (same file system for renames). */
	ck_assert_int_eq(itest_sh("mv data/store data/store.real && ln -s ../full data/store"), 0);
	restart_with(NULL, NULL);
	data = xmalloc(n);
	memset(data, 'F', n);
	ck_assert_int_eq(put_file("/packages/full", "package", data, n), 507);
	expect(404, "GET", "/packages/full", NULL, NULL);
	ck_assert_int_eq(files_under("../full"), 0);
	/* Digest uploads too. */
	char hdr[100], h256[65];
	digest_hex("sha256", data, n, h256);
	snprintf(hdr, sizeof hdr, "Digest: sha256=%s", h256);
	ck_assert_int_eq(req("PUT", "/droplets/full", data, n, hdr, NULL), 507);
	ck_assert_int_eq(files_under("../full"), 0);
	/* Something small still fits. */
	ck_assert_int_eq(put_status("/packages/small", "package", "small"), 201);
	free(data);
	itest_stop_api();
	ck_assert_int_eq(
	    itest_sh("umount full && rm data/store && mv data/store.real data/store"), 0);
	restart_with(NULL, NULL);
}
END_TEST

START_TEST(test_big_file_memory)
{
	char *out;
	int before = blobs();

	ck_assert_int_eq(itest_sh("head -c 300M /dev/urandom > big.bin"), 0);
	out = itest_sh_out("curl -sS -o up.json -w '%%{http_code}' -X PUT -H 'Host: " PRIV
			   "' -H '" BEARER "' -F 'package=@big.bin' %s/packages/big",
	    IT.url);
	ck_assert_str_eq(out, "201");
	free(out);
	out = itest_sh_out("sha256sum < big.bin | cut -c1-64");
	char *upf = xasprintf("%s/up.json", IT.dir);
	json_t *up = json_load_file(upf, 0, NULL);
	free(upf);
	ck_assert_str_eq(json_string_value(json_object_get(up, "sha256")), out);
	json_decref(up);
	free(out);
	ck_assert_int_eq(blobs(), before + 1);
	out = itest_sh_out("curl -sS -o big.out -w '%%{http_code}' -H 'Host: " PRIV "' -H '" BEARER
			   "' %s/packages/big",
	    IT.url);
	ck_assert_str_eq(out, "200");
	free(out);
	ck_assert_int_eq(itest_sh("cmp -s big.bin big.out"), 0);
	/* Peak resident memory since the API started (as bench/cook reads it). */
	out = itest_sh_out("awk '/^VmHWM:/ { print $2 }' /proc/%d/status", (int)IT.api);
	long kb = atol(out);
	free(out);
	fprintf(stderr, "itest_bits: API VmHWM after 300 MB up and down: %ld KiB\n", kb);
	/* ASan's quarantine and valgrind hold freed memory: the bound is the product's only. */
	ck_assert_msg(kb > 0 && (kb < 64 * 1024 || itest_instrumented()), "API VmHWM %ld KiB", kb);
	itest_sh("rm -f big.bin big.out up.json");
	assert_no_tmp();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("itest_bits");
	TCase *tc = tcase_create("bits");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_put_get_head_delete);
	tcase_add_test(tc, test_bad_multipart);
	tcase_add_test(tc, test_connection_dropped);
	tcase_add_test(tc, test_copy);
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_droplet_checksums);
	tcase_add_test(tc, test_range_and_conditional);
	tcase_add_test(tc, test_buildpack_cache);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_hosts_and_signing);
	tcase_add_test(tc, test_private_auth_modes);
	tcase_add_test(tc, test_disk_full);
	tcase_add_test(tc, test_big_file_memory);
	tcase_add_test(tc, test_buildpack_post);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
