/* multipart.c: the streaming multipart/form-data parser (framing rules in multipart.h).
 *
 * Content is scanned with memchr for CR, the delimiter's first byte ("CRLF--boundary"): a
 * boundary holds no CR, so after a failed match at a CR the next candidate is the first
 * mismatching byte or later, and each byte is looked at most twice (linear on any input). A
 * delimiter cut by a chunk end is not buffered: the bytes held back are always a prefix of
 * the delimiter, so only their count is kept and, when they turn out to be content, they are
 * passed on from the delimiter string itself. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/multipart.h"

enum mp_state {
	MP_PREAMBLE, /* before the first delimiter: content discarded */
	MP_AFTER_DELIM, /* just after a boundary: "--", padding, CRLF */
	MP_HEADERS, /* a part's header section */
	MP_DATA, /* a part's content */
	MP_EPILOGUE, /* after the closing boundary: ignored */
	MP_FAILED, /* an error or a callback stopped the parse */
};

/* Where MP_AFTER_DELIM is in "--boundary" ( "--" | [padding] CRLF ). */
enum mp_after {
	AD_START,
	AD_DASH,
	AD_PAD,
	AD_CR,
};

struct multipart {
	struct multipart_cb cb;
	void *arg;
	enum mp_state state;
	enum mp_after after;
	unsigned char *delim; /* CRLF "--" boundary */
	size_t dlen;
	size_t held; /* delim[0..held) seen at the end of the last chunk, not yet passed on */
	bool virt; /* the first 2 of those are the CRLF assumed at a start, not content */
	char *hdr; /* the current part's header section */
	size_t hlen;
	size_t line_start;
	int lines;
	char *out; /* the part's strings, unescaped and NUL-terminated */
	size_t olen;
	size_t parts;
};

/* Bytes that may follow a boundary in a delimiter: "--", transport padding, CRLF, and LF
 * alone (taken as a delimiter so that it is refused with a clear message). */
static bool
after_boundary_byte(unsigned char c)
{
	return c == '-' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 7230 tchar. */
static bool
is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 2045 tspecials: the bytes a backslash escapes in a quoted string (Go's rule). */
static bool
is_tspecial(unsigned char c)
{
	return c != 0 && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* Spaces, tabs, and the '\n' an unfolded header line keeps where its CRLF was. */
static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n'))
		p++;
	return p;
}

/* The end of a token starting at p. */
static const char *
token_end(const char *p, const char *end)
{
	while (p < end && is_tchar((unsigned char)*p))
		p++;
	return p;
}

/* True when [p, p+n) equals the lowercase word w, in any case. */
static bool
word_is(const char *p, size_t n, const char *w)
{
	return n == strlen(w) && strncasecmp(p, w, n) == 0;
}

/* The next ";name=value" of a header value at *pp: 1 with the name (in the source) and the
 * value unescaped and NUL-terminated in val (room for end - *pp + 1 bytes), 0 at the end of
 * the value, -1 with *why on a syntax error. A '\n' (a folded line) inside a quoted value is
 * an error: names must not span lines. */
static int
next_param(const char **pp, const char *end, const char **name, size_t *nlen, char *val,
    size_t *vlen, const char **why)
{
	const char *p = skip_ws(*pp, end), *e;
	size_t n = 0;

	if (p == end)
		return 0;
	if (*p != ';') {
		*why = "unexpected text between parameters";
		return -1;
	}
	p = skip_ws(p + 1, end);
	if (p == end) { /* a trailing ';' */
		*pp = p;
		return 0;
	}
	e = token_end(p, end);
	if (e == p) {
		*why = "a parameter has no name";
		return -1;
	}
	*name = p;
	*nlen = (size_t)(e - p);
	p = skip_ws(e, end);
	if (p == end || *p != '=') {
		*why = "a parameter has no '='";
		return -1;
	}
	p = skip_ws(p + 1, end);
	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\n') {
				*why = "a quoted parameter spans lines";
				return -1;
			}
			if (*p == '\\' && p + 1 < end && is_tspecial((unsigned char)p[1]))
				p++;
			val[n++] = *p;
		}
		if (p == end) {
			*why = "a quoted parameter has no closing quote";
			return -1;
		}
		p++;
	} else {
		for (; p < end; p++) {
			unsigned char c = (unsigned char)*p;
			if (c <= ' ' || c == 0x7f || c == ';' || c == '"')
				break;
			val[n++] = *p;
		}
		if (n == 0) {
			*why = "a parameter has no value";
			return -1;
		}
	}
	val[n] = '\0';
	*vlen = n;
	*pp = p;
	return 1;
}

/* Parses "type/subtype" at the start of a Content-Type value; true when it is
 * multipart/form-data, with *rest just after it. */
static bool
media_is_form_data(const char *ct, const char **rest)
{
	const char *end = ct + strlen(ct), *p = skip_ws(ct, end), *t = token_end(p, end), *s;

	if (t == p || t == end || *t != '/' || !word_is(p, (size_t)(t - p), "multipart"))
		return false;
	s = token_end(t + 1, end);
	if (!word_is(t + 1, (size_t)(s - t - 1), "form-data"))
		return false;
	if (s < end && *s != ';' && *s != ' ' && *s != '\t')
		return false;
	*rest = s;
	return true;
}

bool
multipart_is_form_data(const char *content_type)
{
	const char *rest;

	return content_type != NULL && media_is_form_data(content_type, &rest);
}

/* RFC 2046 bchars: digits, letters, "'()+_,-./:=?" and space (not last). */
static bool
is_bchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != 0 && strchr("'()+_,-./:=? ", c) != NULL);
}

int
multipart_boundary(const char *content_type, char **boundary, char **errstr)
{
	const char *p, *end, *name, *why = NULL;
	size_t nlen, vlen;
	char *val, *found = NULL;
	int r;

	if (content_type == NULL || !media_is_form_data(content_type, &p)) {
		*errstr = xstrdup("Content-Type is not multipart/form-data");
		return -1;
	}
	end = content_type + strlen(content_type);
	val = xmalloc((size_t)(end - p) + 1);
	while ((r = next_param(&p, end, &name, &nlen, val, &vlen, &why)) == 1) {
		if (!word_is(name, nlen, "boundary"))
			continue;
		if (found != NULL) {
			why = "two boundary parameters";
			goto fail;
		}
		found = xstrndup(val, vlen);
	}
	if (r < 0)
		goto fail;
	if (found == NULL) {
		free(val);
		*errstr = xstrdup("Content-Type has no boundary");
		return -1;
	}
	vlen = strlen(found);
	if (vlen == 0 || vlen > MULTIPART_MAX_BOUNDARY) {
		why = vlen == 0 ? "an empty boundary" : "a boundary longer than 70 characters";
		goto fail;
	}
	for (size_t i = 0; i < vlen; i++)
		if (!is_bchar((unsigned char)found[i]) || (i == vlen - 1 && found[i] == ' ')) {
			why = "a boundary with a character RFC 2046 does not allow";
			goto fail;
		}
	free(val);
	*boundary = found;
	return 0;
fail:
	free(val);
	free(found);
	*errstr = xasprintf("Content-Type has %s", why);
	return -1;
}

struct multipart *
multipart_new(const char *boundary, const struct multipart_cb *cb, void *arg)
{
	size_t blen = strlen(boundary);
	struct multipart *m;

	if (blen == 0 || blen > MULTIPART_MAX_BOUNDARY || strpbrk(boundary, "\r\n") != NULL)
		return NULL;
	m = xcalloc(1, sizeof *m);
	if (cb != NULL)
		m->cb = *cb;
	m->arg = arg;
	m->dlen = blen + 4;
	m->delim = xmalloc(m->dlen);
	memcpy(m->delim, "\r\n--", 4);
	memcpy(m->delim + 4, boundary, blen);
	/* The first boundary may open the body: behave as if a CRLF came before it. */
	m->state = MP_PREAMBLE;
	m->held = 2;
	m->virt = true;
	m->hdr = xmalloc(MULTIPART_MAX_HEADER_BYTES + 1);
	m->out = xmalloc(MULTIPART_MAX_HEADER_BYTES + 8);
	return m;
}

void
multipart_free(struct multipart *m)
{
	if (m == NULL)
		return;
	free(m->delim);
	free(m->hdr);
	free(m->out);
	free(m);
}

size_t
multipart_parts(const struct multipart *m)
{
	return m->parts;
}

/* Passes content on: to part_data within a part, nowhere in the preamble. */
static int
deliver(struct multipart *m, const void *p, size_t n)
{
	if (n == 0 || m->state != MP_DATA || m->cb.part_data == NULL)
		return 0;
	return m->cb.part_data(m->arg, p, n);
}

/* The first CR in in[pos..len), or len. memchr is fast over long runs but costs a call per
 * CR: where CRs come close together (dense, as the last one was near) a few bytes are looked
 * at inline first, which makes an adversary's "\r\r\r..." 3x cheaper. */
static size_t
find_cr(const unsigned char *in, size_t pos, size_t len, bool dense)
{
	const unsigned char *cr;

	if (dense) {
		size_t stop = len - pos > 16 ? pos + 16 : len;
		for (; pos < stop; pos++)
			if (in[pos] == '\r')
				return pos;
		if (pos == len)
			return len;
	}
	cr = memchr(in + pos, '\r', len - pos);
	return cr != NULL ? (size_t)(cr - in) : len;
}

/* Content up to the next delimiter. Sets *used to the bytes consumed and, at a delimiter
 * (its boundary and the byte after it checked), *found, with *used just past the boundary.
 * Returns a callback's nonzero value, else 0. Content goes out in at most two runs: what
 * was held from the last chunk, then this chunk's bytes up to the delimiter or up to a
 * possible delimiter start at its end. */
static int
scan_content(struct multipart *m, const unsigned char *in, size_t len, size_t *used, bool *found)
{
	const unsigned char *d = m->delim;
	size_t dlen = m->dlen, pos = 0, start, q, k, avail, h;
	bool dense = false;
	int rc;

	*found = false;
	while (m->held > 0 && pos < len) {
		if (m->held < dlen && in[pos] == d[m->held]) {
			m->held++;
			pos++;
			continue;
		}
		if (m->held == dlen && after_boundary_byte(in[pos])) {
			m->held = 0;
			m->virt = false;
			*used = pos;
			*found = true;
			return 0;
		}
		h = m->virt ? 2 : 0;
		rc = deliver(m, d + h, m->held - h);
		m->held = 0;
		m->virt = false;
		if (rc != 0) {
			*used = pos;
			return rc;
		}
	}
	start = pos;
	while ((q = find_cr(in, pos, len, dense)) < len) {
		dense = q - pos < 16;
		avail = len - q;
		for (k = 1; k < dlen && k < avail && in[q + k] == d[k]; k++)
			;
		if (k == dlen && k < avail) {
			if (after_boundary_byte(in[q + k])) {
				*used = q + k;
				*found = true;
				return deliver(m, in + start, q - start);
			}
			pos = q + k; /* the boundary followed by other text: content */
			continue;
		}
		if (k == avail) { /* a delimiter may start here: hold it back */
			m->held = k;
			*used = len;
			return deliver(m, in + start, q - start);
		}
		/* in[q+1 .. q+k) matched the delimiter, which has no CR past its first byte. */
		pos = q + k;
	}
	*used = len;
	return deliver(m, in + start, len - start);
}

/* One byte after a boundary; -1 with *why when the line is malformed. */
static int
after_delim(struct multipart *m, unsigned char c, const char **why)
{
	switch (m->after) {
	case AD_START:
		if (c == '-') {
			m->after = AD_DASH;
			return 0;
		}
		/* FALLTHROUGH */
	case AD_PAD:
		if (c == ' ' || c == '\t') {
			m->after = AD_PAD;
			return 0;
		}
		if (c == '\r') {
			m->after = AD_CR;
			return 0;
		}
		*why = c == '\n' ? "a boundary line does not end with CRLF"
				 : "a boundary line has text after the boundary";
		return -1;
	case AD_DASH:
		if (c == '-') {
			m->state = MP_EPILOGUE;
			return 0;
		}
		*why = "a boundary is followed by a single '-'";
		return -1;
	case AD_CR:
		if (c == '\n') {
			m->state = MP_HEADERS;
			m->hlen = 0;
			m->line_start = 0;
			m->lines = 0;
			return 0;
		}
		*why = "a boundary line does not end with CRLF";
		return -1;
	}
	return -1;
}

/* Collects header lines into m->hdr; *done at the blank line, with *used just past it. */
static int
read_headers(struct multipart *m, const unsigned char *in, size_t len, size_t *used, bool *done,
    const char **why)
{
	const unsigned char *nl;
	size_t pos = 0, n, ll;

	*done = false;
	while (pos < len && !*done) {
		nl = memchr(in + pos, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - (in + pos)) + 1 : len - pos;
		if (m->hlen + n > MULTIPART_MAX_HEADER_BYTES) {
			*why = "a part's headers are longer than 16384 bytes";
			return -1;
		}
		memcpy(m->hdr + m->hlen, in + pos, n);
		m->hlen += n;
		pos += n;
		if (nl == NULL)
			break;
		ll = m->hlen - m->line_start;
		if (ll < 2 || m->hdr[m->hlen - 2] != '\r') {
			*why = "a part header line does not end with CRLF";
			return -1;
		}
		if (ll == 2) {
			*done = true;
			break;
		}
		if (++m->lines > MULTIPART_MAX_HEADER_LINES) {
			*why = "a part has more than 64 header lines";
			return -1;
		}
		m->line_start = m->hlen;
	}
	*used = pos;
	return 0;
}

/* Copies [p, e) to m->out with '\n' (folds) as spaces; returns the NUL-terminated copy. */
static const char *
out_copy(struct multipart *m, const char *p, const char *e)
{
	char *s = m->out + m->olen;

	for (; p < e; p++)
		m->out[m->olen++] = *p == '\n' ? ' ' : *p;
	m->out[m->olen++] = '\0';
	return s;
}

/* A Content-Disposition value: name and filename into part when the type is form-data. */
static int
parse_disposition(struct multipart *m, const char *p, const char *end, struct multipart_part *part,
    const char **why)
{
	const char *t = token_end(p, end), *name;
	bool have_name = false;
	size_t nlen, vlen;
	char *val;
	int r;

	if (t == p) {
		*why = "a Content-Disposition has no type";
		return -1;
	}
	if (!word_is(p, (size_t)(t - p), "form-data"))
		return 0; /* not a form field: name "" (as Go's FormName) */
	p = t;
	for (;;) {
		val = m->out + m->olen;
		if ((r = next_param(&p, end, &name, &nlen, val, &vlen, why)) <= 0)
			return r;
		if (word_is(name, nlen, "name")) {
			if (have_name) {
				*why = "a Content-Disposition has two name parameters";
				return -1;
			}
			part->name = val;
			have_name = true;
		} else if (word_is(name, nlen, "filename")) {
			if (part->filename != NULL) {
				*why = "a Content-Disposition has two filename parameters";
				return -1;
			}
			part->filename = val;
		} else {
			continue; /* filename*, and anything else: skipped, its copy overwritten */
		}
		m->olen += vlen + 1;
	}
}

/* Parses the header section in m->hdr[0..line_start) into part. */
static int
parse_headers(struct multipart *m, struct multipart_part *part, const char **why)
{
	char *h = m->hdr, *end = m->hdr + m->line_start, *p, *eol;
	const char *colon, *v, *ve;
	bool have_cd = false;

	part->name = "";
	part->filename = NULL;
	part->content_type = NULL;
	m->olen = 0;
	if (memchr(h, '\0', m->line_start) != NULL) {
		*why = "a part header contains a NUL byte";
		return -1;
	}
	/* Bare CRs are errors; a CRLF before a space or tab is a fold: keep the '\n' as a mark. */
	for (p = h; p < end; p++) {
		if (*p != '\r')
			continue;
		if (p[1] != '\n') {
			*why = "a part header contains a CR without LF";
			return -1;
		}
		if (p + 2 < end && (p[2] == ' ' || p[2] == '\t'))
			*p = ' ';
	}
	for (p = h; p < end; p = eol + 2) {
		eol = memchr(p, '\r', (size_t)(end - p));
		colon = token_end(p, eol);
		if (colon == p || *colon != ':') {
			*why = *p == ' ' || *p == '\t' ? "a part's first header line is indented"
						       : "a part header line is not 'Name: value'";
			return -1;
		}
		v = skip_ws(colon + 1, eol);
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\n'); ve--)
			;
		if (word_is(p, (size_t)(colon - p), "content-disposition")) {
			if (have_cd) {
				*why = "a part has two Content-Disposition headers";
				return -1;
			}
			have_cd = true;
			if (parse_disposition(m, v, ve, part, why) < 0)
				return -1;
		} else if (word_is(p, (size_t)(colon - p), "content-type")) {
			if (part->content_type != NULL) {
				*why = "a part has two Content-Type headers";
				return -1;
			}
			part->content_type = out_copy(m, v, ve);
		}
	}
	return 0;
}

/* Stops the parse for good: later feeds fail. */
static int
stop(struct multipart *m, int rc)
{
	m->state = MP_FAILED;
	return rc;
}

/* Stops the parse with a 400 sentence. */
static int
fail(struct multipart *m, char **errstr, const char *why)
{
	*errstr = xasprintf("malformed multipart body: %s", why);
	return stop(m, -1);
}

int
multipart_feed(struct multipart *m, const void *data, size_t len, char **errstr)
{
	const unsigned char *in = data;
	struct multipart_part part;
	const char *why = NULL;
	size_t pos = 0, used;
	bool found;
	int rc;

	if (m->state == MP_FAILED)
		return fail(m, errstr, "the parse already stopped");
	while (pos < len) {
		switch (m->state) {
		case MP_PREAMBLE:
		case MP_DATA:
			rc = scan_content(m, in + pos, len - pos, &used, &found);
			pos += used;
			if (rc != 0)
				return stop(m, rc);
			if (!found)
				break;
			if (m->state == MP_DATA && m->cb.part_end != NULL &&
			    (rc = m->cb.part_end(m->arg)) != 0)
				return stop(m, rc);
			m->state = MP_AFTER_DELIM;
			m->after = AD_START;
			break;
		case MP_AFTER_DELIM:
			if (after_delim(m, in[pos++], &why) < 0)
				return fail(m, errstr, why);
			break;
		case MP_HEADERS:
			if (read_headers(m, in + pos, len - pos, &used, &found, &why) < 0)
				return fail(m, errstr, why);
			pos += used;
			if (!found)
				break;
			if (parse_headers(m, &part, &why) < 0)
				return fail(m, errstr, why);
			m->parts++;
			/* As Go's reader: a part may end at once with "--boundary" (no CRLF), which
			 * some clients send for an empty part. */
			m->state = MP_DATA;
			m->held = 2;
			m->virt = true;
			if (m->cb.part_begin != NULL && (rc = m->cb.part_begin(m->arg, &part)) != 0)
				return stop(m, rc);
			break;
		case MP_EPILOGUE:
			return 0;
		case MP_FAILED:
			return -1; /* not reached: every stop returns */
		}
	}
	return 0;
}

int
multipart_finish(struct multipart *m, char **errstr)
{
	if (m->state == MP_EPILOGUE)
		return 0;
	if (m->state == MP_FAILED)
		return fail(m, errstr, "the parse already stopped");
	*errstr = xstrdup("the multipart body ends before its closing boundary");
	return -1;
}
