/* resp.c: building replies as plain data (see resp.h). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
