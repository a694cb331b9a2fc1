/* fuzz_router.c: the API's router (api/router.c) over the real route table, with the
 * query-string decoding the routes share (api/call.c). Input: "METHOD\nPATH?QUERY".
 * Properties: a match names a route of that method (or GET for HEAD) and as many captures
 * as its pattern, none holding '/'; the path rebuilt from the pattern and the
 * re-encoded captures matches the same route with the same values; a decoded segment or
 * query value re-encodes to text that decodes to it again. */
#include "api/call.h"
#include "api/router.h"
#include "tests/fuzz/fuzz.h"
#include "api/app.h"

static struct router *rt;
static const struct call_route *fuzz_routes;
static size_t nroutes;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	rt = fuzz_api_router(&fuzz_routes, &nroutes);
	return 0;
}

/* Percent-encodes every byte but the unreserved ones (RFC 3986 §2.3). */
static void
encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			buf_addc(b, (char)ch);
		} else {
			buf_addc(b, '%');
			buf_addc(b, hex[ch >> 4]);
			buf_addc(b, hex[ch & 15]);
		}
	}
}

/* The path of route id with m's captures, encoded. */
static char *
rebuild(int id, const struct router_match *m)
{
	const char *p = fuzz_routes[id].pattern;
	struct buf b;
	int k = 0;

	buf_init(&b);
	while (*p != '\0') {
		if (*p == '{') {
			const char *close = strchr(p, '}');

			FUZZ_CHECK(close != NULL && k < m->nparams);
			FUZZ_CHECK(strlen(m->names[k]) == (size_t)(close - p - 1) &&
			    strncmp(m->names[k], p + 1, (size_t)(close - p - 1)) == 0);
			encode(&b, m->values[k++]);
			p = close + 1;
		} else {
			buf_addc(&b, *p++);
		}
	}
	FUZZ_CHECK(k == m->nparams);
	return buf_steal(&b, NULL);
}

/* The route's path with the match's captures matches again, the same way. */
static void
check_match(const char *method, const struct router_match *m)
{
	struct router_match again;
	char *path;

	FUZZ_CHECK(m->id >= 0 && (size_t)m->id < nroutes);
	FUZZ_CHECK(strcmp(fuzz_routes[m->id].method, method) == 0 ||
	    (strcmp(method, "HEAD") == 0 && strcmp(fuzz_routes[m->id].method, "GET") == 0));
	for (int i = 0; i < m->nparams; i++) {
		FUZZ_CHECK(m->values[i] != NULL && m->values[i][0] != '\0');
		FUZZ_CHECK(strchr(m->values[i], '/') == NULL);
	}
	path = rebuild(m->id, m);
	FUZZ_CHECK(router_match(rt, method, path, &again) == ROUTER_FOUND);
	FUZZ_CHECK(again.id == m->id && again.nparams == m->nparams);
	for (int i = 0; i < m->nparams; i++)
		FUZZ_CHECK(strcmp(again.values[i], m->values[i]) == 0);
	router_match_clear(&again);
	free(path);
}

/* Each name=value of the query: what call_query_param finds survives re-encoding. */
static void
check_query(const char *query)
{
	static const char *const names[] = {"format", "wait", "limit", "page", "per_page", "state",
	    "verb", "source_guid", "requests", "after", "guids", "app_guids", "states", "types",
	    "order_by", NULL};
	struct call *c = call_new(NULL, NULL, NULL, "fuzz");
	char *v = NULL;

	c->query = xstrdup(query);
	for (size_t i = 0; names[i] != NULL; i++) {
		if (!call_query_param(c, names[i], &v)) {
			FUZZ_CHECK(c->resp.status == 400 && v == NULL);
			break;
		}
		if (v != NULL) {
			struct call *c2 = call_new(NULL, NULL, NULL, "fuzz");
			struct buf b;
			char *v2 = NULL;

			buf_init(&b);
			encode(&b, names[i]);
			buf_addc(&b, '=');
			encode(&b, v);
			c2->query = buf_steal(&b, NULL);
			FUZZ_CHECK(call_query_param(c2, names[i], &v2) && v2 != NULL);
			FUZZ_CHECK(strcmp(v, v2) == 0);
			free(v2);
			call_free(c2);
			free(v);
			v = NULL;
		}
	}
	(void)call_query_allowed(c, names);
	call_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *method = fuzz_field(&data, &size, '\n');
	char *target = fuzz_str(data, size);
	char *q = strchr(target, '?');
	struct router_match m;
	enum router_result res;

	if (q != NULL)
		*q++ = '\0';
	res = router_match(rt, method, target, &m);
	FUZZ_CHECK(res == ROUTER_FOUND || res == ROUTER_NOT_FOUND ||
	    res == ROUTER_METHOD_NOT_ALLOWED || res == ROUTER_BAD_PATH);
	if (res == ROUTER_FOUND)
		check_match(method, &m);
	else
		FUZZ_CHECK(m.nparams == 0);
	if (res == ROUTER_METHOD_NOT_ALLOWED)
		FUZZ_CHECK(m.allow[0] != '\0');
	router_match_clear(&m);

	/* The last segment on its own, through the decoder and back. */
	const char *last = strrchr(target, '/');
	last = last != NULL ? last + 1 : target;
	char *dec = router_decode_segment(last, strlen(last));
	if (dec != NULL) {
		struct buf b;
		char *enc, *dec2;

		FUZZ_CHECK(strchr(dec, '/') == NULL);
		buf_init(&b);
		encode(&b, dec);
		enc = buf_steal(&b, NULL);
		dec2 = router_decode_segment(enc, strlen(enc));
		FUZZ_CHECK(dec2 != NULL && strcmp(dec, dec2) == 0);
		free(dec2);
		free(enc);
		free(dec);
	}
	if (q != NULL)
		check_query(q);
	free(method);
	free(target);
	return 0;
}
