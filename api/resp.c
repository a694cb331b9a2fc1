/* resp.c: building replies as plain data (see resp.h). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/resp.h"

/* An empty reply: no status yet, no body, no file. */
void
resp_init(struct resp *rs)
{
	memset(rs, 0, sizeof *rs);
	rs->fd = -1;
}

/* Releases everything the reply owns. */
void
resp_clear(struct resp *rs)
{
	int i;

	free(rs->body);
	rs->body = NULL;
	rs->body_len = 0;
	if (rs->fd >= 0)
		close(rs->fd);
	rs->fd = -1;
	for (i = 0; i < rs->nheaders; i++) {
		free(rs->headers[i].name);
		free(rs->headers[i].value);
	}
	rs->nheaders = 0;
}

/* Adds one header. */
void
resp_header(struct resp *rs, const char *name, const char *value)
{
	if (rs->nheaders == RESP_MAX_HEADERS)
		return;
	rs->headers[rs->nheaders].name = xstrdup(name);
	rs->headers[rs->nheaders].value = xstrdup(value);
	rs->nheaders++;
}

/* Adds one header with a formatted value. */
void
resp_headerf(struct resp *rs, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *v;

	va_start(ap, fmt);
	v = xvasprintf(fmt, ap);
	va_end(ap);
	resp_header(rs, name, v);
	free(v);
}

/* Sets a JSON body. */
void
resp_json(struct resp *rs, int status, const json_t *v)
{
	char *text;

	free(rs->body);
	rs->status = status;
	rs->content_type = "application/json";
	text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text == NULL)
		abort(); /* only fails on OOM or an invalid value: a broken invariant */
	/* jansson's memory comes from malloc, so it can be freed like ours. */
	rs->body = text;
	rs->body_len = strlen(text);
}

/* Sets {"error": message}. */
void
resp_error(struct resp *rs, int status, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	json_t *o;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	o = json_pack("{s:s}", "error", msg);
	if (o == NULL) {
		/* Not valid UTF-8: keep the status, give a generic message. */
		o = json_pack("{s:s}", "error", "error message not representable");
	}
	resp_json(rs, status, o);
	json_decref(o);
	free(msg);
}

/* Sets a file body. */
void
resp_file(struct resp *rs, int status, const char *content_type, int fd, uint64_t size)
{
	free(rs->body);
	rs->body = NULL;
	rs->body_len = 0;
	if (rs->fd >= 0)
		close(rs->fd);
	rs->status = status;
	rs->content_type = content_type;
	rs->fd = fd;
	rs->file_size = size;
	rs->send_file_body = true;
}

void
resp_file_range(struct resp *rs, const char *content_type, int fd, uint64_t offset, uint64_t len,
    uint64_t total)
{
	resp_file(rs, 206, content_type, fd, len);
	rs->file_offset = offset;
	resp_headerf(rs, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)offset,
	    (unsigned long long)(offset + len - 1), (unsigned long long)total);
}

/* Digits into *v; false on none, on anything else, or past UINT64_MAX. */
static bool
range_num(const char *s, size_t n, uint64_t *v)
{
	*v = 0;
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (*v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return true;
}

int
resp_parse_range(const char *hdr, uint64_t size, uint64_t *start, uint64_t *len)
{
	const char *dash, *end;
	uint64_t a, b;

	if (hdr == NULL || strncasecmp(hdr, "bytes=", 6) != 0)
		return 0;
	hdr += 6;
	while (*hdr == ' ' || *hdr == '\t')
		hdr++;
	end = hdr + strlen(hdr);
	while (end > hdr && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (memchr(hdr, ',', (size_t)(end - hdr)) != NULL)
		return 0; /* several ranges: the whole body (allowed by RFC 9110 §14.2) */
	dash = memchr(hdr, '-', (size_t)(end - hdr));
	if (dash == NULL)
		return 0;
	if (dash == hdr) {
		/* "-N": the last N bytes. */
		if (!range_num(dash + 1, (size_t)(end - dash - 1), &b))
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*len = b < size ? b : size;
		*start = size - *len;
		return 1;
	}
	if (!range_num(hdr, (size_t)(dash - hdr), &a))
		return 0;
	if (dash + 1 == end)
		b = UINT64_MAX; /* "N-": to the end */
	else if (!range_num(dash + 1, (size_t)(end - dash - 1), &b) || b < a)
		return 0;
	if (a >= size)
		return -1;
	if (b >= size)
		b = size - 1;
	*start = a;
	*len = b - a + 1;
	return 1;
}
