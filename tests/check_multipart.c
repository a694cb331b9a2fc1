/* check_multipart.c: the streaming multipart/form-data parser (shared/multipart.c) on bodies
 * as curl 7.88 (captured byte for byte from the wire) and Go's mime/multipart Writer produce
 * them, near-miss delimiters, every split of a body, the header limits, the framing errors,
 * Content-Type boundary parsing, a fuzz run and a throughput measure (MULTIPART_BENCH_MB
 * sets its size, 64 MiB by default; 1024 for the 1 GiB figure). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/multipart.h"
#include "shared/util.h"

/* What the callbacks saw, as one string independent of how the body was split: "\1B" name
 * "\2" filename "\2" content type "\1" at a part's start ("\3" for NULL), the content, "\1E\1"
 * at its end. */
struct rec {
	struct buf log;
	size_t data_bytes;
	size_t data_calls;
	size_t calls_this_feed;
	size_t max_calls_per_feed;
	const unsigned char *chunk; /* the bytes being fed: content must come from there */
	size_t chunk_len;
	char delim[80]; /* or from the delimiter's prefix (bytes held back, then released) */
	size_t dlen;
	bool in_part;
	int stop_begin; /* nonzero: part_begin returns it */
	bool count_only; /* throughput: no log */
};

static int
rec_begin(void *arg, const struct multipart_part *p)
{
	struct rec *r = arg;

	ck_assert(!r->in_part);
	ck_assert_ptr_nonnull(p->name);
	r->in_part = true;
	if (!r->count_only) {
		buf_adds(&r->log, "\1B");
		buf_adds(&r->log, p->name);
		buf_adds(&r->log, "\2");
		buf_adds(&r->log, p->filename ? p->filename : "\3");
		buf_adds(&r->log, "\2");
		buf_adds(&r->log, p->content_type ? p->content_type : "\3");
		buf_adds(&r->log, "\1");
	}
	return r->stop_begin;
}

static int
rec_data(void *arg, const void *data, size_t len)
{
	struct rec *r = arg;
	const unsigned char *d = data;

	ck_assert(r->in_part);
	ck_assert(len > 0);
	/* In bounds: inside the chunk being fed, or a prefix of the delimiter held back. */
	if (!(d >= r->chunk && d + len <= r->chunk + r->chunk_len))
		ck_assert(len <= r->dlen &&
		    (memcmp(d, r->delim, len) == 0 ||
			(len <= r->dlen - 2 && memcmp(d, r->delim + 2, len) == 0)));
	r->data_bytes += len;
	r->data_calls++;
	r->calls_this_feed++;
	if (!r->count_only)
		buf_add(&r->log, data, len);
	return 0;
}

static int
rec_end(void *arg)
{
	struct rec *r = arg;

	ck_assert(r->in_part);
	r->in_part = false;
	if (!r->count_only)
		buf_adds(&r->log, "\1E\1");
	return 0;
}

static const struct multipart_cb rec_cb = {rec_begin, rec_data, rec_end};

static void
rec_init(struct rec *r, const char *boundary)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->log);
	r->dlen = (size_t)snprintf(r->delim, sizeof r->delim, "\r\n--%s", boundary);
}

/* Feeds body whole (mode 0), in mode-byte chunks (mode > 0) or in random sizes from *seed
 * (mode < 0), then finishes. Returns the first nonzero result, with *errstr. */
static int
run(const char *boundary, const void *body, size_t len, long mode, unsigned int *seed,
    struct rec *r, char **errstr)
{
	struct multipart *m = multipart_new(boundary, &rec_cb, r);
	const unsigned char *b = body;
	size_t pos = 0, n;
	int rc = 0;

	ck_assert_ptr_nonnull(m);
	*errstr = NULL;
	while (pos < len) {
		if (mode == 0)
			n = len - pos;
		else if (mode > 0)
			n = (size_t)mode;
		else if (rand_r(seed) % 2)
			n = 1 + (size_t)rand_r(seed) % 8;
		else
			n = 1 + (size_t)rand_r(seed) % (len + 1);
		if (n > len - pos)
			n = len - pos;
		r->chunk = b + pos;
		r->chunk_len = n;
		r->calls_this_feed = 0;
		rc = multipart_feed(m, b + pos, n, errstr);
		if (r->calls_this_feed > r->max_calls_per_feed)
			r->max_calls_per_feed = r->calls_this_feed;
		pos += n;
		if (rc != 0)
			break;
	}
	if (rc == 0)
		rc = multipart_finish(m, errstr);
	ck_assert(r->data_bytes <= len);
	multipart_free(m);
	return rc;
}

/* Equal byte strings (either may be NULL when empty). */
static bool
same(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Appends one expected part to want. */
static void
want_part(struct buf *w, const char *name, const char *filename, const char *ct, const void *data,
    size_t len)
{
	buf_adds(w, "\1B");
	buf_adds(w, name);
	buf_adds(w, "\2");
	buf_adds(w, filename ? filename : "\3");
	buf_adds(w, "\2");
	buf_adds(w, ct ? ct : "\3");
	buf_adds(w, "\1");
	buf_add(w, data, len);
	buf_adds(w, "\1E\1");
}

/* Parses body whole, byte by byte, two bytes at a time, at every split point into two
 * feeds and in random chunks: every time the same callbacks and the same result. Returns
 * the whole-feed log (caller frees) and result. */
static char *
parse_all_ways(const char *boundary, const char *body, size_t len, int *rc_out, char **err_out,
    size_t *loglen_out)
{
	struct rec r;
	char *errstr, *log;
	size_t loglen;
	int rc;
	unsigned int seed = 99;

	rec_init(&r, boundary);
	rc = run(boundary, body, len, 0, NULL, &r, &errstr);
	log = buf_steal(&r.log, &loglen);
	for (long mode = -40; mode <= 2; mode++) {
		if (mode == 0)
			continue;
		struct rec r2;
		char *e2;
		rec_init(&r2, boundary);
		int rc2 = run(boundary, body, len, mode < 0 ? -1 : mode, &seed, &r2, &e2);
		ck_assert_int_eq(rc2, rc);
		ck_assert_msg(same(r2.log.data, r2.log.len, log, loglen),
		    "mode %ld gives other callbacks", mode);
		ck_assert_str_eq(e2 ? e2 : "", errstr ? errstr : "");
		free(e2);
		buf_free(&r2.log);
	}
	/* Every split point into two feeds. */
	for (size_t cut = 0; cut <= len; cut++) {
		struct rec r2;
		char *e2 = NULL;
		struct multipart *m;
		rec_init(&r2, boundary);
		m = multipart_new(boundary, &rec_cb, &r2);
		r2.chunk = (const unsigned char *)body;
		r2.chunk_len = cut;
		int rc2 = multipart_feed(m, body, cut, &e2);
		if (rc2 == 0) {
			r2.chunk = (const unsigned char *)body + cut;
			r2.chunk_len = len - cut;
			rc2 = multipart_feed(m, body + cut, len - cut, &e2);
		}
		if (rc2 == 0)
			rc2 = multipart_finish(m, &e2);
		ck_assert_int_eq(rc2, rc);
		ck_assert_msg(same(r2.log.data, r2.log.len, log, loglen),
		    "split at %zu gives other callbacks", cut);
		ck_assert_str_eq(e2 ? e2 : "", errstr ? errstr : "");
		free(e2);
		buf_free(&r2.log);
		multipart_free(m);
	}
	*rc_out = rc;
	if (loglen_out != NULL)
		*loglen_out = loglen;
	if (err_out != NULL)
		*err_out = errstr;
	else
		free(errstr);
	return log;
}

/* Asserts that body parses (all ways) into exactly want. */
static void
assert_parses(const char *boundary, const char *body, size_t len, const struct buf *want)
{
	char *errstr;
	int rc;
	size_t loglen;
	char *log = parse_all_ways(boundary, body, len, &rc, &errstr, &loglen);

	ck_assert_msg(rc == 0, "parse failed: %s", errstr ? errstr : "(callback)");
	ck_assert_msg(
	    same(log, loglen, want->data, want->len), "callbacks differ from the expected");
	free(log);
	free(errstr);
}

/* Asserts that body fails (all ways) with a message containing want. */
static void
assert_fails(const char *boundary, const char *body, size_t len, const char *want)
{
	char *errstr;
	int rc;
	char *log = parse_all_ways(boundary, body, len, &rc, &errstr, NULL);

	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_nonnull(errstr);
	ck_assert_msg(strstr(errstr, want) != NULL, "error '%s' lacks '%s'", errstr, want);
	free(log);
	free(errstr);
}

#define S(lit) lit, sizeof(lit) - 1

/* curl 7.88.1: curl -F bits=@app.zip -F 'resources=[]' (the file holds a CRLF and "--"). */
#define CURL_B1 "------------------------66fae66f5aa764ac"
static const char curl_body1[] =
    "--" CURL_B1 "\r\n"
    "Content-Disposition: form-data; name=\"bits\"; filename=\"app.zip\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "PK\x03\x04\r\n--not\r\n"
    "\r\n--" CURL_B1 "\r\n"
    "Content-Disposition: form-data; name=\"resources\"\r\n"
    "\r\n"
    "[]"
    "\r\n--" CURL_B1 "--\r\n";

/* curl 7.88.1: -F 'file=@hello.txt;type=text/plain' -F 'name=va"lue' -F 'empty='. */
#define CURL_B2 "------------------------d4063d423fe0aa1d"
static const char curl_body2[] =
    "--" CURL_B2 "\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello world\n"
    "\r\n--" CURL_B2 "\r\n"
    "Content-Disposition: form-data; name=\"name\"\r\n"
    "\r\n"
    "va\"lue"
    "\r\n--" CURL_B2 "\r\n"
    "Content-Disposition: form-data; name=\"empty\"\r\n"
    "\r\n"
    "\r\n--" CURL_B2 "--\r\n";

/* curl 7.88.1: -F 'f=@hello.txt;filename=a"b\c.txt': '"' percent-encoded, '\' raw. */
#define CURL_B3 "------------------------0030197f2579cb7a"
static const char curl_body3[] =
    "--" CURL_B3 "\r\n"
    "Content-Disposition: form-data; name=\"f\"; filename=\"a%22b\\c.txt\"\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello world\n"
    "\r\n--" CURL_B3 "--\r\n";

/* curl 8's form: 24 dashes and 24 digits. */
#define CURL_B4 "------------------------394017251637290918452671"
static const char curl_body4[] =
    "--" CURL_B4 "\r\n"
    "Content-Disposition: form-data; name=\"droplet\"; filename=\"droplet.tgz\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "\x1f\x8b\x08\x00\r\n\r\n--" CURL_B4 "x"
    "\r\n--" CURL_B4 "--\r\n";

/* Go's mime/multipart Writer: CreateFormFile("bits", "app.zip"), CreateFormField("resources"),
 * CreateFormField(`na"me\x`) (Go escapes '\' and '"'); 60-hex boundary, no preamble, sorted
 * headers, "\r\n--b--\r\n" at Close. */
#define GO_B "9f3a1c5e7b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d"
static const char go_body[] =
    "--" GO_B "\r\n"
    "Content-Disposition: form-data; name=\"bits\"; filename=\"app.zip\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "PK\x05\x06\r\n--" GO_B "-"
    "\r\n--" GO_B "\r\n"
    "Content-Disposition: form-data; name=\"resources\"\r\n"
    "\r\n"
    "[{\"fn\":\"a.txt\",\"sha1\":\"2aae6c35c94fcfb415dbe95f408b9ce91ee846ed\",\"size\":11,"
    "\"mode\":\"644\"}]"
    "\r\n--" GO_B "\r\n"
    "Content-Disposition: form-data; name=\"na\\\"me\\\\x\"\r\n"
    "\r\n"
    "v"
    "\r\n--" GO_B "--\r\n";

START_TEST(test_curl_bodies)
{
	struct buf w;

	buf_init(&w);
	want_part(&w, "bits", "app.zip", "application/octet-stream", S("PK\x03\x04\r\n--not\r\n"));
	want_part(&w, "resources", NULL, NULL, S("[]"));
	assert_parses(CURL_B1, S(curl_body1), &w);

	buf_reset(&w);
	want_part(&w, "file", "hello.txt", "text/plain", S("hello world\n"));
	want_part(&w, "name", NULL, NULL, S("va\"lue"));
	want_part(&w, "empty", NULL, NULL, S(""));
	assert_parses(CURL_B2, S(curl_body2), &w);

	buf_reset(&w);
	want_part(&w, "f", "a%22b\\c.txt", "text/plain", S("hello world\n"));
	assert_parses(CURL_B3, S(curl_body3), &w);

	buf_reset(&w);
	want_part(&w, "droplet", "droplet.tgz", "application/octet-stream",
	    S("\x1f\x8b\x08\x00\r\n\r\n--" CURL_B4 "x"));
	assert_parses(CURL_B4, S(curl_body4), &w);
	buf_free(&w);
}
END_TEST

START_TEST(test_go_body)
{
	struct buf w;

	buf_init(&w);
	/* "CRLF--boundary-" inside the file is a delimiter with one '-': an error, as in Go. */
	assert_fails(GO_B, S(go_body), "a boundary is followed by a single '-'");

	/* The same body with that line fixed. */
	char *fixed = xstrdup(go_body);
	char *p = strstr(fixed, "\r\n--" GO_B "-\r\n");
	ck_assert_ptr_nonnull(p);
	p[4 + strlen(GO_B)] = '~';
	want_part(
	    &w, "bits", "app.zip", "application/octet-stream", S("PK\x05\x06\r\n--" GO_B "~"));
	want_part(&w, "resources", NULL, NULL,
	    S("[{\"fn\":\"a.txt\",\"sha1\":\"2aae6c35c94fcfb415dbe95f408b9ce91ee846ed\",\"size\":11,"
	      "\"mode\":\"644\"}]"));
	want_part(&w, "na\"me\\x", NULL, NULL, S("v"));
	assert_parses(GO_B, fixed, strlen(fixed), &w);
	free(fixed);
	buf_free(&w);
}
END_TEST

START_TEST(test_empty_parts)
{
	struct buf w;

	buf_init(&w);
	/* A part with no headers at all, an empty file, a body holding only the closing line. */
	want_part(&w, "", NULL, NULL, S("x"));
	want_part(&w, "f", "", "application/octet-stream", S(""));
	assert_parses("b",
	    S("--b\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n"
	      "Content-Type: application/octet-stream\r\n\r\n\r\n--b--"),
	    &w);
	buf_reset(&w);
	assert_parses("b", S("--b--\r\n"), &w);
	assert_parses("b", S("preamble\r\n--b--\r\nepilogue"), &w);
	buf_free(&w);
}
END_TEST

START_TEST(test_near_misses)
{
	static const char data[] = "a\r\n--\r\n-\r--bound\n--bound\r\n-bound\r\n--boun\r\n--bounD"
				   "\r\n--boundx\r\n--bound_\r\n--boun\r\r\n\r\n--bou";
	struct buf w, body;

	buf_init(&w);
	buf_init(&body);
	buf_adds(&body, "\r\n--bound\r\nContent-Disposition: form-data; name=x\r\n\r\n");
	buf_adds(&body, data);
	buf_adds(&body, "\r\n--bound \t \r\n");
	/* As Go's reader: "--bound" right after the blank line ends an empty part. */
	buf_adds(&body, "content-disposition: form-data; name=y\r\n\r\n--bound\r\n");
	/* A part with no headers whose content starts with the boundary and other text. */
	buf_adds(&body, "\r\n--boundXz\r\n--bound--  \r\n\r\n--bound\r\nepilogue");
	want_part(&w, "x", NULL, NULL, data, strlen(data));
	want_part(&w, "y", NULL, NULL, S(""));
	want_part(&w, "", NULL, NULL, S("--boundXz"));
	assert_parses("bound", body.data, body.len, &w);
	buf_free(&w);
	buf_free(&body);
}
END_TEST

START_TEST(test_params)
{
	static const struct {
		const char *headers;
		const char *name, *filename, *ct;
	} cases[] = {
	    {"Content-Disposition: form-data; name=bits; filename=a.zip", "bits", "a.zip", NULL},
	    {"CONTENT-DISPOSITION:FORM-DATA;NAME=\"bits\";FILENAME=\"a b.zip\"", "bits", "a b.zip",
		NULL},
	    {"content-disposition: form-data ; name = \"x\" ; filename=\"y\" ;", "x", "y", NULL},
	    {"Content-Disposition: form-data; name=\"a\\\"b\"", "a\"b", NULL, NULL},
	    {"Content-Disposition: form-data; name=\"f\"; filename=\"C:\\dir\\f.txt\"", "f",
		"C:\\dir\\f.txt", NULL},
	    {"Content-Disposition: form-data; name=\"f\"; filename=\"a\\\\b\"", "f", "a\\b", NULL},
	    {"Content-Disposition: form-data; name=\"f\"; filename*=UTF-8''%e2%82%ac.txt", "f",
		NULL, NULL},
	    {"Content-Disposition: form-data; name=\"f\"; filename*=\"UTF-8''x\"; filename=\"e.txt\"",
		"f", "e.txt", NULL},
	    {"Content-Disposition: form-data; filename=\"only.txt\"", "", "only.txt", NULL},
	    {"Content-Disposition: form-data; name=\"\xc3\xa9t\xc3\xa9\"", "\xc3\xa9t\xc3\xa9",
		NULL, NULL},
	    {"Content-Type: text/plain; charset=utf-8\r\nX-Other: 1\r\n"
	     "Content-Disposition: form-data; name=\"t\"",
		"t", NULL, "text/plain; charset=utf-8"},
	    {"Content-Disposition: form-data;\r\n name=\"folded\";\r\n\tfilename=\"z\"", "folded",
		"z", NULL},
	    {"Content-Type:\r\n  text/plain\r\nContent-Disposition: form-data; name=a", "a", NULL,
		"text/plain"},
	    /* Decision: no Content-Disposition, or another type, is a part with name "". */
	    {"Content-Type: text/plain", "", NULL, "text/plain"},
	    {"Content-Disposition: attachment; name=\"x\"; filename=\"y\"", "", NULL, NULL},
	    {"Content-Disposition: form-data", "", NULL, NULL},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		struct buf w;
		char *body = xasprintf("--B\r\n%s\r\n\r\ndata\r\n--B--\r\n", cases[i].headers);
		buf_init(&w);
		want_part(&w, cases[i].name, cases[i].filename, cases[i].ct, S("data"));
		struct rec r;
		char *errstr;
		rec_init(&r, "B");
		int rc = run("B", body, strlen(body), 0, NULL, &r, &errstr);
		ck_assert_msg(rc == 0, "case %zu: %s", i, errstr);
		ck_assert_msg(
		    same(r.log.data, r.log.len, w.data, w.len), "case %zu: other callbacks", i);
		buf_free(&r.log);
		buf_free(&w);
		free(body);
	}
}
END_TEST

START_TEST(test_errors)
{
	static const struct {
		const char *body;
		const char *want;
	} cases[] = {
	    {"--B\r\nContent-Disposition: form-data; name=x\r\n\r\ndata",
		"ends before its closing"},
	    {"--B\r\nContent-Disposition: form-data; name=x\r\n\r\ndata\r\n--B",
		"ends before its closing"},
	    {"--B\r\nContent-Disposition: form-data; name=x\r\n", "ends before its closing"},
	    {"", "ends before its closing"},
	    /* No first boundary: the headers and data are preamble, nothing closes. */
	    {"Content-Disposition: form-data; name=x\r\n\r\ndata\r\n", "ends before its closing"},
	    {"garbage--B\r\nContent-Disposition: form-data; name=x\r\n\r\nd\r\n--B-",
		"ends before its closing"},
	    {"--B\r\nContent-Disposition: form-data; name=x\r\n\r\nd\r\n--B-x", "single '-'"},
	    {"--B x\r\n\r\n", "text after the boundary"},
	    {"--B\n\r\n", "does not end with CRLF"},
	    {"--B\rx", "does not end with CRLF"},
	    {"--B\r\nContent-Disposition: form-data; name=x\n\n", "does not end with CRLF"},
	    {"--B\r\nContent-Disposition form-data\r\n\r\n", "not 'Name: value'"},
	    {"--B\r\n: x\r\n\r\n", "not 'Name: value'"},
	    {"--B\r\nBad Name: x\r\n\r\n", "not 'Name: value'"},
	    {"--B\r\n name: x\r\n\r\n", "first header line is indented"},
	    {"--B\r\nContent-Disposition: form-data; name=\"a\0b\"\r\n\r\n", "NUL"},
	    {"--B\r\nContent-Disposition: form-data; name=\"a\rb\"\r\n\r\n", "CR without LF"},
	    {"--B\r\nContent-Disposition: form-data; name=\"a\r\n b\"\r\n\r\n", "spans lines"},
	    {"--B\r\nContent-Disposition: form-data; filename=\"a\r\n\tb\"\r\n\r\n", "spans lines"},
	    {"--B\r\nContent-Disposition: form-data; name=\"x\r\n\r\n", "no closing quote"},
	    {"--B\r\nContent-Disposition: form-data; name=\"x\\\"\r\n\r\n", "no closing quote"},
	    {"--B\r\nContent-Disposition: form-data; name=\r\n\r\n", "no value"},
	    {"--B\r\nContent-Disposition: form-data; name\r\n\r\n", "no '='"},
	    {"--B\r\nContent-Disposition: form-data; =x\r\n\r\n", "no name"},
	    {"--B\r\nContent-Disposition: form-data name=x\r\n\r\n", "unexpected text"},
	    {"--B\r\nContent-Disposition: form-data; name=x y\r\n\r\n", "unexpected text"},
	    {"--B\r\nContent-Disposition: ; name=x\r\n\r\n", "has no type"},
	    {"--B\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n", "two name"},
	    {"--B\r\nContent-Disposition: form-data; filename=a; FILENAME=b\r\n\r\n",
		"two filename"},
	    {"--B\r\nContent-Disposition: form-data; name=a\r\ncontent-disposition: form-data\r\n\r\n",
		"two Content-Disposition"},
	    {"--B\r\nContent-Type: a\r\nContent-type: b\r\n\r\n", "two Content-Type"},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		/* sizeof would see the embedded NUL: find the real length from the table's text. */
		size_t len = strlen(cases[i].body);
		if (strstr(cases[i].want, "NUL") != NULL)
			len += 1 + strlen(cases[i].body + len + 1);
		assert_fails("B", cases[i].body, len, cases[i].want);
	}
}
END_TEST

/* A part's header section: at most 16 KiB and 64 lines, whatever the split. */
START_TEST(test_header_limits)
{
	struct buf body, w;
	char *errstr;
	int rc;
	char *log;

	buf_init(&body);
	buf_init(&w);
	/* Exactly 64 lines and exactly 16384 bytes (with the blank line): accepted. */
	buf_adds(&body, "--B\r\nContent-Disposition: form-data; name=x\r\n");
	for (int i = 0; i < 62; i++)
		buf_printf(&body, "X-H%02d: v\r\n", i);
	size_t used = body.len - 5 + 2; /* after the boundary line, with the blank line */
	buf_adds(&body, "X-Last: ");
	for (size_t n = used + 8 + 2; n < MULTIPART_MAX_HEADER_BYTES; n++)
		buf_addc(&body, 'v');
	buf_adds(&body, "\r\n\r\nd\r\n--B--");
	want_part(&w, "x", NULL, NULL, S("d"));
	assert_parses("B", body.data, body.len, &w);

	/* One byte more: refused. */
	buf_reset(&body);
	buf_adds(&body, "--B\r\nContent-Disposition: form-data; name=x\r\nX: ");
	while (body.len < 5 + MULTIPART_MAX_HEADER_BYTES - 3)
		buf_addc(&body, 'v');
	buf_adds(&body, "\r\n\r\nd\r\n--B--");
	log = parse_all_ways("B", body.data, body.len, &rc, &errstr, NULL);
	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_nonnull(strstr(errstr, "longer than 16384 bytes"));
	free(log);
	free(errstr);

	/* A header line of 1 MiB with no end, fed in pieces: refused at 16 KiB, not buffered. */
	buf_reset(&body);
	buf_adds(&body, "--B\r\nX: ");
	while (body.len < (1u << 20))
		buf_addc(&body, 'v');
	struct rec r;
	rec_init(&r, "B");
	rc = run("B", body.data, body.len, 4096, NULL, &r, &errstr);
	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_nonnull(strstr(errstr, "longer than 16384 bytes"));
	free(errstr);

	/* 65 lines: refused. */
	buf_reset(&body);
	buf_adds(&body, "--B\r\n");
	for (int i = 0; i < 65; i++)
		buf_printf(&body, "X-H%02d: v\r\n", i);
	buf_adds(&body, "\r\nd\r\n--B--");
	assert_fails("B", body.data, body.len, "more than 64 header lines");
	buf_free(&body);
	buf_free(&w);
}
END_TEST

static int
stop_end(void *arg)
{
	(void)arg;
	return 9;
}

START_TEST(test_callback_stops)
{
	struct rec r;
	struct multipart *m;
	char *errstr = NULL;
	struct multipart_cb cb = rec_cb;

	rec_init(&r, CURL_B1);
	r.stop_begin = 7;
	m = multipart_new(CURL_B1, &rec_cb, &r);
	r.chunk = (const unsigned char *)curl_body1;
	r.chunk_len = sizeof curl_body1 - 1;
	ck_assert_int_eq(multipart_feed(m, curl_body1, sizeof curl_body1 - 1, &errstr), 7);
	ck_assert_ptr_null(errstr);
	ck_assert_uint_eq(r.data_calls, 0);
	ck_assert_int_eq(multipart_feed(m, "x", 1, &errstr), -1);
	ck_assert_ptr_nonnull(errstr);
	free(errstr);
	errstr = NULL;
	ck_assert_int_eq(multipart_finish(m, &errstr), -1);
	free(errstr);
	multipart_free(m);
	buf_free(&r.log);

	rec_init(&r, CURL_B1);
	cb.part_end = stop_end;
	m = multipart_new(CURL_B1, &cb, &r);
	errstr = NULL;
	r.chunk = (const unsigned char *)curl_body1;
	r.chunk_len = sizeof curl_body1 - 1;
	ck_assert_int_eq(multipart_feed(m, curl_body1, sizeof curl_body1 - 1, &errstr), 9);
	ck_assert_ptr_null(errstr);
	ck_assert_uint_eq(multipart_parts(m), 1);
	multipart_free(m);
	buf_free(&r.log);

	/* NULL callbacks: a parse that only checks the framing. */
	m = multipart_new(CURL_B2, NULL, NULL);
	ck_assert_int_eq(multipart_feed(m, curl_body2, sizeof curl_body2 - 1, &errstr), 0);
	ck_assert_int_eq(multipart_finish(m, &errstr), 0);
	ck_assert_uint_eq(multipart_parts(m), 3);
	/* The epilogue may go on. */
	ck_assert_int_eq(multipart_feed(m, "more\r\n--", 8, &errstr), 0);
	multipart_free(m);
	multipart_free(NULL);
}
END_TEST

START_TEST(test_new_rejects)
{
	char b71[72];

	memset(b71, 'a', 71);
	b71[71] = '\0';
	ck_assert_ptr_null(multipart_new("", &rec_cb, NULL));
	ck_assert_ptr_null(multipart_new(b71, &rec_cb, NULL));
	ck_assert_ptr_null(multipart_new("a\rb", &rec_cb, NULL));
	ck_assert_ptr_null(multipart_new("a\nb", &rec_cb, NULL));
	b71[70] = '\0';
	struct multipart *m = multipart_new(b71, &rec_cb, NULL);
	ck_assert_ptr_nonnull(m);
	multipart_free(m);
}
END_TEST

START_TEST(test_boundary_table)
{
	static const struct {
		const char *ct;
		const char *want; /* the boundary, or NULL */
		const char *err; /* a part of the error */
	} cases[] = {
	    {"multipart/form-data; boundary=------------------------66fae66f5aa764ac",
		"------------------------66fae66f5aa764ac", NULL},
	    {"multipart/form-data; boundary=\"abc\"", "abc", NULL},
	    {"Multipart/Form-Data; BOUNDARY=AbC", "AbC", NULL},
	    {"MULTIPART/FORM-DATA;boundary=x", "x", NULL},
	    {"  multipart/form-data ;  boundary = \"a b:c\" ", "a b:c", NULL},
	    {"multipart/form-data; charset=utf-8; boundary=q1; foo=\"bar;baz\"", "q1", NULL},
	    {"multipart/form-data; boundary=q1;", "q1", NULL},
	    {"multipart/form-data; boundary=\"a\\\"\"", NULL, "character RFC 2046 does not allow"},
	    {"multipart/form-data; boundary=\"a=b?c\"", "a=b?c", NULL},
	    {"multipart/form-data; boundary=\"----WebKitFormBoundary7MA4YWxkTrZu0gW\"",
		"----WebKitFormBoundary7MA4YWxkTrZu0gW", NULL},
	    {"multipart/form-data", NULL, "Content-Type has no boundary"},
	    {"multipart/form-data; charset=utf-8", NULL, "Content-Type has no boundary"},
	    {"multipart/form-data; boundary=", NULL, "no value"},
	    {"multipart/form-data; boundary=\"\"", NULL, "an empty boundary"},
	    {"multipart/form-data; boundary=\"abc ", NULL, "no closing quote"},
	    {"multipart/form-data; boundary=\"abc \"", NULL, "does not allow"},
	    {"multipart/form-data; boundary=a{b", NULL, "does not allow"},
	    {"multipart/form-data; boundary=a; boundary=b", NULL, "two boundary"},
	    {"multipart/form-data; "
	     "boundary=1234567890123456789012345678901234567890123456789012345678901234567890",
		"1234567890123456789012345678901234567890123456789012345678901234567890", NULL},
	    {"multipart/form-data; "
	     "boundary=12345678901234567890123456789012345678901234567890123456789012345678901",
		NULL, "longer than 70"},
	    {"multipart/mixed; boundary=x", NULL, "not multipart/form-data"},
	    {"multipart/form-dataX; boundary=x", NULL, "not multipart/form-data"},
	    {"application/json", NULL, "not multipart/form-data"},
	    {"", NULL, "not multipart/form-data"},
	    {NULL, NULL, "not multipart/form-data"},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		char *b = NULL, *errstr = NULL;
		int rc = multipart_boundary(cases[i].ct, &b, &errstr);
		if (cases[i].want != NULL) {
			ck_assert_msg(rc == 0, "case %zu: %s", i, errstr);
			ck_assert_str_eq(b, cases[i].want);
			ck_assert(multipart_is_form_data(cases[i].ct));
		} else {
			ck_assert_msg(rc == -1, "case %zu accepted", i);
			ck_assert_msg(
			    strstr(errstr, cases[i].err) != NULL, "case %zu: '%s'", i, errstr);
		}
		free(b);
		free(errstr);
	}
	ck_assert(multipart_is_form_data("multipart/form-data"));
	ck_assert(!multipart_is_form_data("multipart/form-datax"));
	ck_assert(!multipart_is_form_data("application/json"));
	ck_assert(!multipart_is_form_data(NULL));
}
END_TEST

/* A small xorshift generator: fast enough to fill a GiB. */
static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
fill_random(unsigned char *p, size_t n, uint64_t *s)
{
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t v = xorshift(s);
		memcpy(p + i, &v, 8);
	}
}

/* Large feeds reach part_data in large runs: at most two calls a feed (bytes held back from
 * the last feed, then this one's), and all of a feed when the part goes on. */
START_TEST(test_large_runs)
{
	static const char head[] =
	    "--" CURL_B1 "\r\nContent-Disposition: form-data; name=\"bits\"; "
	    "filename=\"x\"\r\n\r\n";
	size_t n = 4u << 20, chunk = 65536;
	unsigned char *body = xmalloc(n);
	uint64_t s = 0x9e3779b97f4a7c15ull;
	struct rec r;
	char *errstr;

	memcpy(body, head, sizeof head - 1);
	fill_random(body + sizeof head - 1, n - (sizeof head - 1), &s);
	/* Put delimiter prefixes across every chunk end. */
	for (size_t at = chunk - 10; at + 80 < n; at += chunk)
		memcpy(body + at, "\r\n--" CURL_B1, 20);
	memcpy(body + n - 48, "\r\n--" CURL_B1 "--\r\n", 48);
	rec_init(&r, CURL_B1);
	r.count_only = true;
	ck_assert_int_eq(run(CURL_B1, body, n, (long)chunk, NULL, &r, &errstr), 0);
	ck_assert_uint_le(r.max_calls_per_feed, 2);
	ck_assert_uint_eq(r.data_bytes, n - (sizeof head - 1) - 48);
	rec_init(&r, CURL_B1);
	r.count_only = true;
	ck_assert_int_eq(run(CURL_B1, body, n, 0, NULL, &r, &errstr), 0);
	ck_assert_uint_eq(r.data_calls, 1);
	free(body);
}
END_TEST

/* A body full of delimiter prefixes ("\r\n--boun" and "\r\n--bound" over and over) and of
 * CRs parses in time linear in its size: 64 MiB takes about as long per byte as 8 MiB. */
START_TEST(test_adversarial_linear)
{
	static const char *const fills[] = {
	    "\r\n--boun", "\r\n--bound\r", "\r\r\r\r", "\r\n--bound"};
	double per_byte[2];

	for (size_t f = 0; f < BV_NELEM(fills); f++) {
		for (int k = 0; k < 2; k++) {
			size_t n = (size_t)(k == 0 ? 8 : 64) << 20, fl = strlen(fills[f]);
			unsigned char *body = xmalloc(n);
			static const char head[] =
			    "--boundary\r\nContent-Disposition: form-data; name=x\r\n\r\n";
			size_t pos = sizeof head - 1;
			struct rec r;
			char *errstr;
			memcpy(body, head, pos);
			for (; pos + fl <= n - 16; pos += fl)
				memcpy(body + pos, fills[f], fl);
			memset(body + pos, 'z', n - pos);
			rec_init(&r, "boundary");
			r.count_only = true;
			double t0 = now_wall();
			ck_assert_int_eq(run("boundary", body, n, 1 << 16, NULL, &r, &errstr), -1);
			per_byte[k] = (now_wall() - t0) / (double)n;
			ck_assert_uint_eq(r.data_bytes, n - (sizeof head - 1));
			free(errstr);
			free(body);
		}
		printf("multipart adversarial fill %zu: %.0f MB/s at 64 MiB\n", f,
		    1.0 / per_byte[1] / 1e6);
		/* Quadratic work would make the large body slower per byte by far. */
		ck_assert_msg(per_byte[1] < per_byte[0] * 3 + 1e-9, "fill %zu not linear", f);
	}
}
END_TEST

/* Mutated curl and Go bodies in random chunks (the parser reads bodies anyone can send):
 * never out of bounds, never more content than input, same outcome as one feed. */
START_TEST(test_fuzz)
{
	static const struct {
		const char *boundary;
		const char *body;
		size_t len;
	} seeds[] = {
	    {CURL_B1, curl_body1, sizeof curl_body1 - 1},
	    {CURL_B2, curl_body2, sizeof curl_body2 - 1},
	    {CURL_B4, curl_body4, sizeof curl_body4 - 1},
	    {GO_B, go_body, sizeof go_body - 1},
	    {"b",
		"--b\r\nContent-Disposition: form-data; name=\"a\\\"\"; filename=x\r\n\r\n\r\n--b\r\n"
		"\r\n\r\n--b--",
		0},
	};
	static const char *const frags[] = {"\r\n", "--", "\r\n--", "\"", "\\", ";", ":", " ",
	    "\r\n\r\n", "name=", "filename=\"", "Content-Disposition: form-data"};
	unsigned int seed = 20240501;

	for (int round = 0; round < 50000; round++) {
		size_t which = (size_t)round % BV_NELEM(seeds);
		const char *bd = seeds[which].boundary;
		size_t base = seeds[which].len ? seeds[which].len : strlen(seeds[which].body);
		size_t cap = base + 64, len = base;
		unsigned char *b = xmalloc(cap);
		memcpy(b, seeds[which].body, base);
		for (int k = rand_r(&seed) % 6; k > 0; k--) {
			int op = rand_r(&seed) % 5;
			size_t at = len ? (size_t)rand_r(&seed) % len : 0;
			if (op == 0 && len > 0) {
				b[at] ^= (unsigned char)(1u << (rand_r(&seed) % 8));
			} else if (op == 1 && len > 0) {
				b[at] = (unsigned char)rand_r(&seed);
			} else if (op == 2) {
				const char *fr = frags[(size_t)rand_r(&seed) % BV_NELEM(frags)];
				size_t fl = strlen(fr);
				if (len + fl <= cap) {
					memmove(b + at + fl, b + at, len - at);
					memcpy(b + at, fr, fl);
					len += fl;
				}
			} else if (op == 3 && len > 0) {
				size_t cut = 1 + (size_t)rand_r(&seed) % 8;
				if (cut > len - at)
					cut = len - at;
				memmove(b + at, b + at + cut, len - at - cut);
				len -= cut;
			} else {
				len = at; /* truncate */
			}
		}
		/* An exact-size copy, so ASan sees any read past the end. */
		unsigned char *exact = xmalloc(len ? len : 1);
		memcpy(exact, b, len);
		free(b);

		struct rec r1, r2;
		char *e1, *e2;
		rec_init(&r1, bd);
		rec_init(&r2, bd);
		int rc1 = run(bd, exact, len, 0, NULL, &r1, &e1);
		int rc2 = run(bd, exact, len, -1, &seed, &r2, &e2);
		ck_assert(rc1 == 0 || rc1 == -1);
		ck_assert_int_eq(rc1, rc2);
		ck_assert_msg(same(r1.log.data, r1.log.len, r2.log.data, r2.log.len),
		    "round %d: chunking changed the callbacks", round);
		ck_assert_str_eq(e1 ? e1 : "", e2 ? e2 : "");
		ck_assert(r1.data_bytes <= len);
		free(e1);
		free(e2);
		buf_free(&r1.log);
		buf_free(&r2.log);
		free(exact);
	}
}
END_TEST

/* Throughput on one file part of random bytes, generated 1 MiB at a time; only the feeds are
 * timed. A CRLF-dense text payload is measured too. */
START_TEST(test_throughput)
{
	const char *env = getenv("MULTIPART_BENCH_MB");
	size_t mb = env != NULL ? (size_t)atol(env) : 64, chunk = 1u << 20;
	static const char head[] =
	    "--" CURL_B1 "\r\nContent-Disposition: form-data; name=\"bits\"; "
	    "filename=\"droplet.tgz\"\r\nContent-Type: application/octet-stream\r\n\r\n";
	static const char tail[] = "\r\n--" CURL_B1 "--\r\n";
	unsigned char *buf = xmalloc(chunk);
	uint64_t s = 88172645463325252ull;
	char *errstr = NULL;

	for (int text = 0; text < 2; text++) {
		struct rec r;
		struct multipart *m;
		double spent = 0, t0;
		rec_init(&r, CURL_B1);
		r.count_only = true;
		m = multipart_new(CURL_B1, &rec_cb, &r);
		ck_assert_int_eq(multipart_feed(m, head, sizeof head - 1, &errstr), 0);
		for (size_t i = 0; i < mb; i++) {
			if (text)
				for (size_t j = 0; j < chunk; j++)
					buf[j] = (j % 64) == 62 ? '\r'
					    : (j % 64) == 63    ? '\n'
								: 'a';
			else
				fill_random(buf, chunk, &s);
			r.chunk = buf;
			r.chunk_len = chunk;
			t0 = now_wall();
			ck_assert_int_eq(multipart_feed(m, buf, chunk, &errstr), 0);
			spent += now_wall() - t0;
		}
		r.chunk = (const unsigned char *)tail;
		r.chunk_len = sizeof tail - 1;
		ck_assert_int_eq(multipart_feed(m, tail, sizeof tail - 1, &errstr), 0);
		ck_assert_int_eq(multipart_finish(m, &errstr), 0);
		ck_assert_uint_eq(r.data_bytes, mb * chunk);
		printf(
		    "multipart throughput (%s, %zu MiB in 1 MiB feeds): %.0f MB/s, %zu part_data "
		    "calls\n",
		    text ? "CRLF every 64 bytes" : "random", mb, (double)(mb * chunk) / spent / 1e6,
		    r.data_calls);
		multipart_free(m);
	}
	free(buf);
}
END_TEST

static Suite *
multipart_suite(void)
{
	Suite *s = suite_create("multipart");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_curl_bodies);
	tcase_add_test(tc, test_go_body);
	tcase_add_test(tc, test_empty_parts);
	tcase_add_test(tc, test_near_misses);
	tcase_add_test(tc, test_params);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_header_limits);
	tcase_add_test(tc, test_callback_stops);
	tcase_add_test(tc, test_new_rejects);
	tcase_add_test(tc, test_boundary_table);
	tcase_add_test(tc, test_large_runs);
	tcase_add_test(tc, test_adversarial_linear);
	tcase_add_test(tc, test_fuzz);
	tcase_add_test(tc, test_throughput);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(multipart_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
