/* fuzz_request.c: what the API does with a request before any database or Redis: route
 * match, the route's headers step (Bits routes), the body as api/app.c takes it (JSON
 * parsed, or a Bits multipart upload streamed through api/bitsup.c into a scratch store),
 * and the route's prepare step (cheap validation on the event loop). That covers the
 * bodies of every endpoint family: Vault cooks (notify_url), loads, PATCH /jobs, Cachito
 * requests, CF v3 packages and their resources, Bits copies and package resources, the
 * app stash, the Droplet Archiver's sync; and the query strings of the listings. Postgres
 * and Redis are not reached: the work step that would use them is not run. Archive
 * uploads (POST /directories) are fuzz_ingest's.
 * Input: "METHOD /path?query\n", optionally "Content-Type: <value>\n" (default
 * application/json), then the body.
 * Properties: the headers and prepare steps answer go-on, or a refusal with a 4xx (never
 * a 5xx: nothing failed on the server); every JSON reply parses as JSON; a Vault target
 * that passed is 40 hex digits and its SWHID. */
#include <jansson.h>

#include <ftw.h>
#include <unistd.h>

#include "api/bitsup.h"
#include "api/call.h"
#include "api/router.h"
#include "api/routes.h"
#include "shared/config.h"
#include "shared/store.h"
#include "tests/fuzz/fuzz.h"
#include "api/app.h"

static struct router *rt;
static const struct call_route *fuzz_routes;
static size_t nroutes;
static struct config cfg;
static struct store *st;
static char root[256];

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Removes the scratch store at exit. */
static void
cleanup(void)
{
	store_free(st);
	(void)nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	char *err = NULL;

	fuzz_quiet();
	snprintf(root, sizeof root, "%s/bv-fuzz-request-XXXXXX", tmp);
	if (mkdtemp(root) == NULL || (st = store_open_local(root, &err)) == NULL)
		abort();
	atexit(cleanup);
	config_defaults(&cfg);
	free(cfg.request_package_managers);
	cfg.request_package_managers = xstrdup("npm,git-submodule,generic");
	rt = fuzz_api_router(&fuzz_routes, &nroutes);
	return 0;
}

/* A reply the route set: a status a client may see, a JSON body that is JSON. */
static void
check_resp(const struct call *c, bool refused)
{
	const struct resp *rs = &c->resp;

	if (refused) {
		if (rs->status < 400 || rs->status > 499)
			fprintf(stderr, "prepare refused with status %d: %.*s\n", rs->status,
			    (int)rs->body_len, rs->body != NULL ? rs->body : "");
		FUZZ_CHECK(rs->status >= 400 && rs->status <= 499);
	}
	if (rs->body != NULL && rs->content_type != NULL &&
	    strcmp(rs->content_type, "application/json") == 0) {
		json_t *v = json_loadb(rs->body, rs->body_len, JSON_DECODE_ANY, NULL);

		FUZZ_CHECK(v != NULL);
		json_decref(v);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_field(&data, &size, '\n');
	char *sp = strchr(line, ' '), *q, *target, *ctype = NULL;
	const struct call_route *route;
	struct call *c;
	int rc;

	if (sp == NULL) {
		free(line);
		return 0;
	}
	*sp = '\0';
	target = sp + 1;
	if ((q = strchr(target, '?')) != NULL)
		*q++ = '\0';
	if (size > 14 && memcmp(data, "Content-Type: ", 14) == 0) {
		data += 14;
		size -= 14;
		ctype = fuzz_field(&data, &size, '\n');
	}
	c = call_new(&cfg, st, NULL, "fuzz");
	if (router_match(rt, line, target, &c->m) != ROUTER_FOUND)
		goto out;
	route = &fuzz_routes[c->m.id];
	c->route = route;
	c->query = xstrdup(q != NULL ? q : "");
	c->base_url = xstrdup("http://fuzz.example");
	c->content_length = (int64_t)size;
	c->content_type = ctype != NULL ? ctype : xstrdup("application/json");
	ctype = NULL;
	if (route->body == CALL_BODY_UPLOAD)
		goto out;
	if (route->body == CALL_BODY_BITS) {
		enum call_bits_body b = route->headers(c);

		if (b == CALL_BITS_REFUSE || b == CALL_BITS_REFUSE_DRAIN) {
			check_resp(c, true);
			goto out;
		}
		if (b == CALL_BITS_STREAM) {
			/* api/http.c feeds the body to the sink as it comes: here in two. */
			FUZZ_CHECK(c->upload != NULL);
			rc = bitsup_sink(c->upload, data, size / 2, &c->resp);
			if (rc == 0)
				rc = bitsup_sink(
				    c->upload, data + size / 2, size - size / 2, &c->resp);
			if (rc != 0) {
				check_resp(c, true);
				goto out;
			}
		} else {
			FUZZ_CHECK(b == CALL_BITS_JSON || b == CALL_BITS_NONE);
			if (size > 0)
				c->json = json_loadb(
				    (const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
		}
	} else if (route->body == CALL_BODY_JSON && size > 0) {
		c->json = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
		if (c->json == NULL)
			goto out; /* api/app.c answers 400 itself */
	}
	if (route->prepare == NULL)
		goto out;
	rc = route->prepare(c);
	FUZZ_CHECK(rc == 0 || rc == -1);
	check_resp(c, rc != 0);
	if (rc == 0 && c->obj_kind_name != NULL) {
		FUZZ_CHECK(strlen(c->obj_hex) == 40 && is_hex(c->obj_hex, 40));
		FUZZ_CHECK(strncmp(c->swhid, "swh:1:", 6) == 0);
	}
out:
	call_free(c);
	free(ctype);
	free(line);
	return 0;
}
