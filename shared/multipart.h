/* multipart.h: a streaming multipart/form-data parser (RFC 7578 framing over RFC 2046) for
 * uploads of several GB. Pure: no I/O. The caller feeds the body as it arrives, in chunks of
 * any size; each part's headers are read into a fixed buffer and handed over parsed, its
 * content is passed on in runs as long as the chunks fed, holding back only the few bytes
 * that might start a delimiter. Memory is fixed at creation (boundary length plus the header
 * limit) whatever the body size; time is linear in the body, also on adversarial input.
 *
 * Framing decisions (tests/check_multipart.c has a case for each):
 * - Preamble and epilogue are ignored; a body may open with "--boundary" or CRLF "--boundary".
 * - Lines end with CRLF (as curl, Go, browsers send); a bare LF in headers is an error.
 * - "CRLF--boundary" followed by a byte other than '-', space, tab, CR or LF is content, not
 *   a delimiter (as Go's mime/multipart); spaces and tabs after a boundary are padding.
 * - A part without Content-Disposition, or whose disposition type is not form-data, is
 *   passed on with name "" and no filename (as Go's FormName): callers skip unknown names.
 * - Part header names are case-insensitive; obsolete folding (a line starting with a space or
 *   tab) is joined, but not inside a quoted name or filename. Two Content-Disposition or
 *   Content-Type headers, or two name/filename parameters, are an error (ambiguous).
 * - In quoted parameter values a backslash escapes the next byte only when that byte is a
 *   tspecial (as Go's mime.ParseMediaType), so "C:\dir\f.txt" from old browsers stays whole.
 *   Browsers and curl percent-encode '"', CR and LF in names (%22, %0D, %0A): left as is.
 *   filename* (RFC 5987) and other parameters are skipped. The filename is passed raw:
 *   callers must not use it as a path.
 * - A NUL anywhere in part headers, or a CR not followed by LF, is an error. */
#ifndef BV_MULTIPART_H
#define BV_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/util.h"

/* Limits on one part's header section (the bytes after the boundary line up to and with the
 * blank line): past them the body is refused, never buffered. */
#define MULTIPART_MAX_HEADER_BYTES 16384
#define MULTIPART_MAX_HEADER_LINES 64
/* RFC 2046 §5.1.1: a boundary has 1 to 70 characters. */
#define MULTIPART_MAX_BOUNDARY 70

struct multipart;

/* The part whose headers were just read. Strings are valid during the part_begin call only. */
struct multipart_part {
	const char *name; /* Content-Disposition form-data name ("" when none) */
	const char *filename; /* filename=, NULL when absent (a plain field) */
	const char *content_type; /* NULL when absent */
};

/* Any callback may be NULL. Return 0 to go on, anything else stops the parse: multipart_feed
 * returns that value (so prefer positive values: -1 is also the parser's own error). */
struct multipart_cb {
	int (*part_begin)(void *arg, const struct multipart_part *p);
	int (*part_data)(void *arg, const void *data, size_t len);
	int (*part_end)(void *arg);
};

/* True when a Content-Type header value is multipart/form-data (any case, parameters
 * ignored); false for NULL. Lets a route tell a multipart upload from a JSON body. */
bool multipart_is_form_data(const char *content_type);

/* The boundary of a Content-Type header value ("multipart/form-data; boundary=..."; quoted
 * or not; case-insensitive type and parameter name; 1..70 chars per RFC 2046). 0 with
 * *boundary (new string), or -1 with *errstr a sentence for a 400 ("Content-Type has no
 * boundary"). */
int multipart_boundary(const char *content_type, char **boundary, char **errstr) BV_MUSTCHECK;

/* A parser for a body with this boundary (1..70 bytes, no CR, LF or NUL: what
 * multipart_boundary gives), or NULL when the boundary is not one. cb is copied. */
struct multipart *multipart_new(const char *boundary, const struct multipart_cb *cb, void *arg);

/* Feeds the next bytes (any split, down to one byte at a time). 0; -1 with *errstr (a
 * sentence for a 400: "malformed multipart body: ..."); or a callback's nonzero value (then
 * *errstr untouched). After anything but 0, later feeds fail too. Bytes after the closing
 * boundary (the epilogue) are accepted and ignored. */
int multipart_feed(struct multipart *m, const void *data, size_t len, char **errstr) BV_MUSTCHECK;

/* The body ended: 0 when the closing boundary was seen, else -1 with *errstr ("the
 * multipart body ends before its closing boundary"). */
int multipart_finish(struct multipart *m, char **errstr) BV_MUSTCHECK;

/* The number of parts begun so far (part_begin calls). */
size_t multipart_parts(const struct multipart *m);

void multipart_free(struct multipart *m);

#endif
