/* fuzz_multipart.c: the streaming multipart/form-data parser (shared/multipart.c) and the
 * Content-Type boundary reader. Input: the Content-Type value, '\n', one byte choosing
 * how the body is split, then the body. Properties: the body fed whole and fed in pieces
 * (one byte at a time, or in chunks of a varying size) gives the same parts, the same
 * bytes and the same verdict (the transcript is compared when the body is good); the
 * boundary read is 1 to 70 bytes without CR or LF. */
#include "shared/multipart.h"
#include "tests/fuzz/fuzz.h"

/* Everything the callbacks saw, as one transcript. */
struct seen {
	struct buf log;
};

static int
on_begin(void *arg, const struct multipart_part *p)
{
	struct seen *s = arg;

	FUZZ_CHECK(p->name != NULL);
	buf_printf(&s->log, "[begin name=%s file=%s%s type=%s%s]", p->name,
	    p->filename != NULL ? "\"" : "", p->filename != NULL ? p->filename : "(none)",
	    p->content_type != NULL ? "\"" : "",
	    p->content_type != NULL ? p->content_type : "(none)");
	return 0;
}

static int
on_data(void *arg, const void *data, size_t len)
{
	struct seen *s = arg;

	buf_add(&s->log, data, len);
	return 0;
}

static int
on_end(void *arg)
{
	struct seen *s = arg;

	buf_adds(&s->log, "[end]");
	return 0;
}

/* Parses body split into pieces of step(i) bytes; the transcript and the verdict. */
static int
run(const char *boundary, const uint8_t *body, size_t len, unsigned mode, struct seen *s,
    size_t *parts)
{
	static const struct multipart_cb cb = {on_begin, on_data, on_end};
	struct multipart *m = multipart_new(boundary, &cb, s);
	char *err = NULL;
	size_t off = 0, k = 0;
	int rc = 0;

	FUZZ_CHECK(m != NULL);
	while (off < len && rc == 0) {
		size_t n = mode == 0 ? len - off : mode == 1 ? 1 : 1 + (k++ * 7 + mode) % 23;

		if (n > len - off)
			n = len - off;
		rc = multipart_feed(m, body + off, n, &err);
		FUZZ_CHECK(rc == 0 || rc == -1);
		FUZZ_CHECK((rc == -1) == (err != NULL));
		off += n;
	}
	if (rc == 0)
		rc = multipart_finish(m, &err);
	FUZZ_CHECK((rc == -1) == (err != NULL));
	if (err != NULL)
		FUZZ_CHECK(strncmp(err, "malformed multipart body", 24) == 0 ||
		    strncmp(err, "the multipart body", 18) == 0);
	free(err);
	*parts = multipart_parts(m);
	multipart_free(m);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *ctype = fuzz_field(&data, &size, '\n');
	char *boundary = NULL, *err = NULL;
	struct seen whole, split;
	size_t p1, p2;
	unsigned mode;
	int rc1, rc2;

	if (multipart_boundary(ctype, &boundary, &err) != 0) {
		FUZZ_CHECK(err != NULL && boundary == NULL);
		free(err);
		free(ctype);
		return 0;
	}
	FUZZ_CHECK(strlen(boundary) >= 1 && strlen(boundary) <= MULTIPART_MAX_BOUNDARY);
	FUZZ_CHECK(strpbrk(boundary, "\r\n") == NULL);
	if (size == 0)
		goto out;
	mode = 1 + data[0] % 8;
	data++;
	size--;
	buf_init(&whole.log);
	buf_init(&split.log);
	rc1 = run(boundary, data, size, 0, &whole, &p1);
	rc2 = run(boundary, data, size, mode, &split, &p2);
	FUZZ_CHECK(rc1 == rc2);
	/* After an error, how much content went out before it may depend on the split. */
	FUZZ_CHECK(rc1 != 0 || p1 == p2);
	FUZZ_CHECK(rc1 != 0 || whole.log.len == split.log.len);
	FUZZ_CHECK(rc1 != 0 || whole.log.len == 0 ||
	    memcmp(whole.log.data, split.log.data, whole.log.len) == 0);
	buf_free(&whole.log);
	buf_free(&split.log);
out:
	free(boundary);
	free(ctype);
	return 0;
}
