/* bitsup.c: a Bits upload streamed into the store (see bitsup.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/bitsup.h"
#include "shared/log.h"
#include "shared/multipart.h"

/* The bits-service's code for a bad request (research bits-service.md §1.3). */
#define BITS_CODE_BAD_REQUEST 290003
/* Parts a form may have: the bits-service's forms have two or three. */
#define BITSUP_MAX_PARTS 256

struct bitsup {
	struct store_writer *w;
	struct multipart *mp; /* NULL for a raw body */
	char *field;
	size_t max_fields;
	/* the part being read */
	enum { PART_SKIP, PART_FILE, PART_FIELD } part;
	char *part_name;
	struct buf value;
	bool have_file; /* the file part was found */
	char *filename; /* the file part's filename= ("" when none) */
	bool file_done;
	bool file_optional; /* a form without the file is fine (CF v3 uploads of resources) */
	json_t *fields; /* plain fields: name -> value */
	char *keep; /* a field kept in memory even when sent as a file part */
	size_t field_bytes; /* plain fields' names and values kept */
	int parts;
	unsigned char magic[4];
	size_t nmagic;
	/* a failure inside a callback, for the sink's reply */
	int err_status;
	char *err_msg;
};

void
bitsup_error(struct resp *rs, int status, int code, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	json_t *o;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	o = json_pack("{s:s}", "description", msg);
	if (o == NULL) {
		/* Not valid UTF-8 (a client's bytes quoted in the message): keep the status,
		 * as resp_error does; resp_json would abort on NULL. Found by fuzz_request. */
		o = json_pack("{s:s}", "description", "error message not representable");
	}
	if (code != 0)
		json_object_set_new(o, "code", json_integer(code));
	resp_json(rs, status, o);
	json_decref(o);
	free(msg);
}

/* Notes a failure for the sink (the first wins); returns 1 to stop the parser. */
static int
fail(struct bitsup *u, int status, char *msg)
{
	if (u->err_msg == NULL) {
		u->err_status = status;
		u->err_msg = msg;
	} else {
		free(msg);
	}
	return 1;
}

/* File bytes into the store writer. */
static int
put(struct bitsup *u, const void *data, size_t len)
{
	char *err = NULL;

	if (u->nmagic < sizeof u->magic) {
		size_t n = sizeof u->magic - u->nmagic;
		if (n > len)
			n = len;
		memcpy(u->magic + u->nmagic, data, n);
		u->nmagic += n;
	}
	if (store_writer_write(u->w, data, len, &err) == 0)
		return 0;
	bool full = bitsup_disk_full(err);
	log_error("bits upload: %s", err);
	free(err);
	/* Nothing is stored: the writer's temp file goes with bitsup_free. */
	return fail(u, full ? 507 : 500,
	    xstrdup(full ? "Insufficient Storage: no space left on the server"
			 : "Internal Server Error: the upload could not be stored"));
}

static int
part_begin(void *arg, const struct multipart_part *p)
{
	struct bitsup *u = arg;

	if (++u->parts > BITSUP_MAX_PARTS)
		return fail(u, 400, xasprintf("the form has more than %d parts", BITSUP_MAX_PARTS));
	/* Names count with the values: a form of many long names is memory too. */
	if (u->field_bytes + strlen(p->name) > u->max_fields)
		return fail(u, 413, xasprintf("the form's fields exceed %zu bytes", u->max_fields));
	u->field_bytes += strlen(p->name);
	free(u->part_name);
	u->part_name = xstrdup(p->name);
	buf_reset(&u->value);
	if (!u->have_file && p->filename != NULL &&
	    (strcmp(p->name, u->field) == 0 || strcmp(p->name, "bits") == 0)) {
		u->have_file = true;
		u->filename = xstrdup(p->filename);
		u->part = PART_FILE;
	} else if (p->filename == NULL || (u->keep != NULL && strcmp(p->name, u->keep) == 0)) {
		u->part = PART_FIELD;
	} else {
		u->part = PART_SKIP; /* another file, or a second one: not ours */
	}
	return 0;
}

static int
part_data(void *arg, const void *data, size_t len)
{
	struct bitsup *u = arg;

	switch (u->part) {
	case PART_FILE:
		return put(u, data, len);
	case PART_FIELD:
		if (u->field_bytes + len > u->max_fields)
			return fail(
			    u, 413, xasprintf("the form's fields exceed %zu bytes", u->max_fields));
		u->field_bytes += len;
		buf_add(&u->value, data, len);
		return 0;
	case PART_SKIP:
		return 0;
	}
	return 0;
}

static int
part_end(void *arg)
{
	struct bitsup *u = arg;

	if (u->part == PART_FILE)
		u->file_done = true;
	else if (u->part == PART_FIELD && json_object_get(u->fields, u->part_name) == NULL)
		json_object_set_new(u->fields, u->part_name,
		    json_stringn(u->value.data != NULL ? u->value.data : "", u->value.len));
	u->part = PART_SKIP;
	return 0;
}

static const struct multipart_cb callbacks = {part_begin, part_data, part_end};

struct bitsup *
bitsup_new(
    struct store *st, const char *field, const char *boundary, size_t max_fields, char **errstr)
{
	struct bitsup *u = xcalloc(1, sizeof *u);

	u->w = store_writer_new(st, errstr);
	if (u->w == NULL) {
		free(u);
		return NULL;
	}
	u->field = xstrdup(field);
	u->max_fields = max_fields;
	u->fields = json_object();
	buf_init(&u->value);
	if (boundary != NULL && (u->mp = multipart_new(boundary, &callbacks, u)) == NULL) {
		*errstr = xstrdup("the multipart boundary is not valid");
		errno = EINVAL;
		bitsup_free(u);
		return NULL;
	}
	return u;
}

void
bitsup_free(struct bitsup *u)
{
	if (u == NULL)
		return;
	store_writer_abort(u->w);
	multipart_free(u->mp);
	free(u->field);
	free(u->part_name);
	free(u->keep);
	free(u->filename);
	buf_free(&u->value);
	json_decref(u->fields);
	free(u->err_msg);
	free(u);
}

int
bitsup_sink(void *arg, const void *data, size_t len, struct resp *rs)
{
	struct bitsup *u = arg;
	char *err = NULL;
	int r;

	if (u->mp == NULL)
		r = put(u, data, len);
	else
		r = multipart_feed(u->mp, data, len, &err);
	if (r == 0)
		return 0;
	if (u->err_msg != NULL) {
		bitsup_error(rs, u->err_status, u->err_status == 400 ? BITS_CODE_BAD_REQUEST : 0,
		    "%s", u->err_msg);
	} else {
		bitsup_error(rs, 400, BITS_CODE_BAD_REQUEST, "%s",
		    err != NULL ? err : "malformed multipart body");
	}
	free(err);
	return -1;
}

int
bitsup_finish(struct bitsup *u, struct resp *rs)
{
	char *err = NULL;

	if (u->mp == NULL)
		return 0;
	if (multipart_finish(u->mp, &err) != 0) {
		bitsup_error(rs, 400, BITS_CODE_BAD_REQUEST, "%s", err);
		free(err);
		return -1;
	}
	if (!u->file_optional && (!u->have_file || !u->file_done)) {
		bitsup_error(rs, 400, BITS_CODE_BAD_REQUEST,
		    "Could not retrieve form parameter '%s' or 'bits'", u->field);
		return -1;
	}
	return 0;
}

const char *
bitsup_field(const struct bitsup *u, const char *name)
{
	return json_string_value(json_object_get(u->fields, name));
}

size_t
bitsup_magic(const struct bitsup *u, unsigned char out[4])
{
	memcpy(out, u->magic, u->nmagic);
	return u->nmagic;
}

int
bitsup_commit(struct bitsup *u, unsigned char sha256[32], unsigned char sha1[20], uint64_t *size,
    char **errstr)
{
	struct store_writer *w = u->w;

	u->w = NULL;
	*size = store_writer_size(w);
	return store_writer_commit(w, sha256, sha1, errstr);
}

void
bitsup_peek(const struct bitsup *u, unsigned char sha256[32], unsigned char sha1[20])
{
	store_writer_peek(u->w, sha256, sha1);
}

void
bitsup_keep_file_field(struct bitsup *u, const char *name)
{
	free(u->keep);
	u->keep = xstrdup(name);
}

const char *
bitsup_filename(const struct bitsup *u)
{
	return u->filename != NULL ? u->filename : "";
}

void
bitsup_file_optional(struct bitsup *u)
{
	u->file_optional = true;
}

bool
bitsup_has_file(const struct bitsup *u)
{
	return u->have_file && u->file_done;
}

bool
bitsup_disk_full(const char *err)
{
	return errno == ENOSPC || errno == EDQUOT ||
	    (err != NULL && strstr(err, "no space") != NULL);
}

void
bitsup_store_failed(struct resp *rs, const char *logid, const char *what, char *err)
{
	bool full = bitsup_disk_full(err); /* before the log line can change errno */

	log_error_id(logid, "%s: %s", what, err != NULL ? err : "?");
	free(err);
	/* Nothing is stored: the writer's temp file goes with the upload. */
	bitsup_error(rs, full ? 507 : 500, 0, "%s",
	    full ? "Insufficient Storage: no space left on the server"
		 : "Internal Server Error: the upload could not be stored");
}
