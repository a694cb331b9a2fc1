/* router.c: exact, method-aware route matching for the API (see router.h). libevhtp's own
 * routing is not used: evhtp_set_cb is a prefix match, regex callbacks expose only the last
 * capture group and globs let '*' cross '/' (research B.1.2). */
#include <stdlib.h>
#include <string.h>

#include "api/router.h"

struct route_seg {
	char *text; /* literal text, or the capture's name */
	bool param;
};

struct route {
	char *method;
	char *pattern;
	int id;
	int nsegs;
	struct route_seg segs[ROUTER_MAX_SEGMENTS];
};

struct router {
	struct route *routes;
	size_t n;
	size_t cap;
};

/* The order methods are listed in an Allow header; others follow in table order. */
static const char *const allow_order[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

/* An empty route table. */
struct router *
router_new(void)
{
	return xcalloc(1, sizeof(struct router));
}

/* Frees the table and every pattern. */
void
router_free(struct router *rt)
{
	size_t i;
	int j;

	if (rt == NULL)
		return;
	for (i = 0; i < rt->n; i++) {
		for (j = 0; j < rt->routes[i].nsegs; j++)
			free(rt->routes[i].segs[j].text);
		free(rt->routes[i].method);
		free(rt->routes[i].pattern);
	}
	free(rt->routes);
	free(rt);
}

/* Parses "/a/{b}/c" into segments; false when malformed. */
static bool
parse_pattern(const char *pattern, struct route *r)
{
	const char *p, *end;
	size_t len;
	int nparams = 0;

	if (pattern[0] != '/')
		return false;
	p = pattern + 1;
	r->nsegs = 0;
	for (;;) {
		end = strchr(p, '/');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (r->nsegs == ROUTER_MAX_SEGMENTS)
			return false;
		if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
			if (len == 2 || memchr(p + 1, '{', len - 2) != NULL ||
			    memchr(p + 1, '}', len - 2) != NULL)
				return false;
			if (++nparams > ROUTER_MAX_PARAMS)
				return false;
			r->segs[r->nsegs].text = xstrndup(p + 1, len - 2);
			r->segs[r->nsegs].param = true;
		} else {
			if (memchr(p, '{', len) != NULL || memchr(p, '}', len) != NULL ||
			    memchr(p, '%', len) != NULL)
				return false;
			/* An empty literal is only meaningful last: the root "/", or a pattern
			 * that ends with a slash (SWH's "/api/1/vault/flat/{swhid}/"). */
			if (len == 0 && end != NULL)
				return false;
			r->segs[r->nsegs].text = xstrndup(p, len);
			r->segs[r->nsegs].param = false;
		}
		r->nsegs++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return true;
}

/* Adds a route at the end of the table. */
bool
router_add(struct router *rt, const char *method, const char *pattern, int id)
{
	struct route r;
	int j;

	if (method == NULL || method[0] == '\0' || pattern == NULL)
		return false;
	memset(&r, 0, sizeof r);
	if (!parse_pattern(pattern, &r)) {
		for (j = 0; j < r.nsegs; j++)
			free(r.segs[j].text);
		return false;
	}
	r.method = xstrdup(method);
	r.pattern = xstrdup(pattern);
	r.id = id;
	if (rt->n == rt->cap) {
		rt->cap = rt->cap != 0 ? rt->cap * 2 : 16;
		rt->routes = xrealloc(rt->routes, rt->cap * sizeof(struct route));
	}
	rt->routes[rt->n++] = r;
	return true;
}

/* Percent-decodes a segment; NUL and '/' are refused once decoded, because a segment that
 * decodes to "a/b" would otherwise let a capture smuggle a path separator. */
char *
router_decode_segment(const char *s, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == '%') {
			if (i + 2 >= len) /* fewer than two characters follow */
				goto bad;
			hi = hex_digit_value(s[i + 1]);
			lo = hex_digit_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || c == '/')
			goto bad;
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* Position of method in the Allow order, or BV_NELEM(allow_order) when not listed there. */
static size_t
allow_rank(const char *method)
{
	size_t i;

	for (i = 0; i < BV_NELEM(allow_order); i++)
		if (strcmp(allow_order[i], method) == 0)
			return i;
	return BV_NELEM(allow_order);
}

/* Appends method to a ", "-separated list unless already there. */
static void
allow_add(char *allow, size_t size, const char *method)
{
	const char *p = allow;
	size_t mlen = strlen(method), used;

	while (*p != '\0') {
		const char *end = strstr(p, ", ");
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

		if (len == mlen && strncmp(p, method, len) == 0)
			return;
		if (end == NULL)
			break;
		p = end + 2;
	}
	used = strlen(allow);
	if (used + mlen + 3 > size)
		return;
	if (used != 0) {
		memcpy(allow + used, ", ", 2);
		used += 2;
	}
	memcpy(allow + used, method, mlen + 1);
}

/* Builds the Allow list of every route whose pattern matched, in a stable order. */
static void
build_allow(const struct router *rt, const bool *path_ok, char *allow, size_t size)
{
	size_t rank, i;

	allow[0] = '\0';
	for (rank = 0; rank <= BV_NELEM(allow_order); rank++) {
		for (i = 0; i < rt->n; i++) {
			const char *m = rt->routes[i].method;

			if (!path_ok[i])
				continue;
			if (rank < BV_NELEM(allow_order)) {
				if (strcmp(m, allow_order[rank]) == 0)
					allow_add(allow, size, m);
				/* HEAD is served wherever GET is. */
				if (strcmp(allow_order[rank], "HEAD") == 0 && strcmp(m, "GET") == 0)
					allow_add(allow, size, "HEAD");
			} else if (allow_rank(m) == BV_NELEM(allow_order)) {
				allow_add(allow, size, m);
			}
		}
	}
}

/* True when the decoded segments fit the route's pattern. */
static bool
route_fits(const struct route *r, char *const *segs, int nsegs)
{
	int j;

	if (r->nsegs != nsegs)
		return false;
	for (j = 0; j < nsegs; j++) {
		if (r->segs[j].param) {
			if (segs[j][0] == '\0')
				return false;
		} else if (strcmp(r->segs[j].text, segs[j]) != 0) {
			return false;
		}
	}
	return true;
}

/* Matches a request against the table (see router.h). */
enum router_result
router_match(const struct router *rt, const char *method, const char *path, struct router_match *m)
{
	char *segs[ROUTER_MAX_SEGMENTS];
	int nsegs = 0, j;
	const char *p, *end;
	bool *path_ok = NULL, any_path = false;
	enum router_result res = ROUTER_NOT_FOUND;
	size_t i;

	memset(m, 0, sizeof *m);
	m->id = -1;
	if (path == NULL || path[0] != '/')
		return ROUTER_BAD_PATH;
	p = path + 1;
	for (;;) {
		size_t len;

		end = strchr(p, '/');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (nsegs == ROUTER_MAX_SEGMENTS) {
			res = ROUTER_NOT_FOUND; /* longer than any pattern */
			goto out;
		}
		if ((segs[nsegs] = router_decode_segment(p, len)) == NULL) {
			res = ROUTER_BAD_PATH;
			goto out;
		}
		nsegs++;
		if (end == NULL)
			break;
		p = end + 1;
	}

	path_ok = xcalloc(rt->n != 0 ? rt->n : 1, sizeof(bool));
	for (i = 0; i < rt->n; i++) {
		const struct route *r = &rt->routes[i];

		if (!route_fits(r, segs, nsegs))
			continue;
		path_ok[i] = true;
		any_path = true;
		if (strcmp(r->method, method) != 0 &&
		    !(strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
			continue;
		m->id = r->id;
		for (j = 0; j < nsegs; j++) {
			if (!r->segs[j].param)
				continue;
			m->names[m->nparams] = r->segs[j].text;
			m->values[m->nparams] = segs[j];
			segs[j] = NULL;
			m->nparams++;
		}
		res = ROUTER_FOUND;
		goto out;
	}
	if (any_path) {
		build_allow(rt, path_ok, m->allow, sizeof m->allow);
		res = ROUTER_METHOD_NOT_ALLOWED;
	}
out:
	for (j = 0; j < nsegs; j++)
		free(segs[j]);
	free(path_ok);
	return res;
}

/* Looks a capture up by name. */
const char *
router_param(const struct router_match *m, const char *name)
{
	int i;

	for (i = 0; i < m->nparams; i++)
		if (strcmp(m->names[i], name) == 0)
			return m->values[i];
	return NULL;
}

/* Frees the captured values. */
void
router_match_clear(struct router_match *m)
{
	int i;

	for (i = 0; i < m->nparams; i++) {
		free(m->values[i]);
		m->values[i] = NULL;
	}
	m->nparams = 0;
}
