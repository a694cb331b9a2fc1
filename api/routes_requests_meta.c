/* routes_requests_meta.c: what a request's packages say about the image built from it
 * (research cachito.md §4.7): the Image Content Manifest of one request or several, and
 * a CycloneDX 1.4 SBOM; both name every package and dependency by its package URL, built
 * with Cachito's rules (cachito/web/purl.py) plus one for bitsvault's generic files. */
#include <stdlib.h>
#include <string.h>

#include "api/reqjson.h"
#include "api/routes.h"
#include "shared/log.h"

#define ICM_SPEC                                                                                   \
	"https://raw.githubusercontent.com/containerbuildsystem/atomic-reactor/"                   \
	"f4abcfdaf8247a6b074f94fa84f3846f82d781c6/atomic_reactor/schemas/content_manifest.json"
/* The most requests one /content-manifest or /sbom call may name. */
#define MULTI_MAX 100

/* Python's urllib.parse.quote: unreserved characters and those in safe stay. */
static void
quote(struct buf *b, const char *s, const char *safe)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || strchr("_.-~", *p) != NULL ||
		    (*p != '\0' && strchr(safe, *p) != NULL))
			buf_addc(b, (char)*p);
		else
			buf_printf(b, "%%%02X", *p);
	}
}

/* A member string, "" when absent. */
static const char *
mstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

/* The VCS purl of a repository at a ref: pkg:github or pkg:bitbucket for those hosts,
 * else pkg:generic/<name>?vcs_url=<repo@ref>. */
static void
vcs_purl(struct buf *b, const char *name, const char *repo, const char *ref)
{
	char *url = xstrdup(repo), *host = NULL, *path = NULL;
	size_t len = strlen(url);
	char *scheme_end;

	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	if ((scheme_end = strstr(url, "://")) != NULL) {
		char *auth = scheme_end + 3, *slash = strchr(auth, '/'), *at, *colon;
		size_t alen = slash != NULL ? (size_t)(slash - auth) : strlen(auth);

		host = xstrndup(auth, alen);
		if ((at = strrchr(host, '@')) != NULL)
			memmove(host, at + 1, strlen(at + 1) + 1);
		if ((colon = strchr(host, ':')) != NULL)
			*colon = '\0';
		for (char *h = host; *h != '\0'; h++)
			*h = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
		path = slash != NULL ? slash + 1 : NULL;
	}
	if (host != NULL && path != NULL && strrchr(path, '/') != NULL &&
	    (strcmp(host, "github.com") == 0 || strcmp(host, "bitbucket.org") == 0)) {
		char *ns = xstrdup(path), *rname = strrchr(ns, '/');
		size_t rl;

		*rname++ = '\0';
		rl = strlen(rname);
		if (rl > 4 && strcmp(rname + rl - 4, ".git") == 0)
			rname[rl - 4] = '\0';
		for (char *h = ns; *h != '\0'; h++)
			*h = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
		for (char *h = rname; *h != '\0'; h++)
			*h = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
		buf_printf(b, "pkg:%s/%s/%s@%s",
		    strcmp(host, "github.com") == 0 ? "github" : "bitbucket", ns, rname, ref);
		free(ns);
	} else {
		char *at = xasprintf("%s@%s", url, ref);

		buf_printf(b, "pkg:generic/%s?vcs_url=", name);
		quote(b, at, "");
		free(at);
	}
	free(host);
	free(url);
}

/* The purl of an npm (or yarn) dependency: registry versions, or what the version says
 * it came from (file:, a forge shorthand, git, an https tarball). */
static void
npm_purl(struct buf *b, const char *name, const char *version)
{
	const char *colon = strchr(version, ':');
	char *protocol;

	if (colon == NULL || colon == version) {
		buf_adds(b, "pkg:npm/");
		quote(b, name, "/");
		buf_printf(b, "@%s", version);
		return;
	}
	protocol = xstrndup(version, (size_t)(colon - version));
	if (strcmp(protocol, "file") == 0) {
		buf_adds(b, "pkg:generic/");
		quote(b, name, "/");
		buf_adds(b, "?file=");
		quote(b, colon + 1, "");
	} else if (strncmp(colon + 1, "//", 2) != 0) {
		/* github:ns/name#ref */
		const char *hash = strchr(colon + 1, '#');
		const char *slash = hash != NULL ? memrchr(colon + 1, '/', hash - colon - 1) : NULL;

		if (slash != NULL)
			buf_printf(b, "pkg:%s/%.*s/%.*s@%s", protocol, (int)(slash - colon - 1),
			    colon + 1, (int)(hash - slash - 1), slash + 1, hash + 1);
		else
			buf_printf(b, "pkg:npm/%s@%s", name, version);
	} else if (strncmp(protocol, "git", 3) == 0) {
		buf_adds(b, "pkg:generic/");
		quote(b, name, "/");
		buf_adds(b, "?vcs_url=");
		quote(b, version, "");
	} else {
		buf_adds(b, "pkg:generic/");
		quote(b, name, "/");
		buf_adds(b, "?download_url=");
		quote(b, version, "");
	}
	free(protocol);
}

/* The purl of a dependency or of a package that is not the request's own code. */
static char *
purl(const json_t *p)
{
	const char *type = mstr(p, "type"), *name = mstr(p, "name"), *version = mstr(p, "version");
	struct buf b;

	buf_init(&b);
	if (strcmp(type, "npm") == 0 || strcmp(type, "yarn") == 0) {
		npm_purl(&b, name, version);
	} else if (strcmp(type, "gomod") == 0 || strcmp(type, "go-package") == 0) {
		buf_adds(&b, "pkg:golang/");
		quote(&b, name, "");
		buf_printf(&b, "@%s", version);
	} else if (strcmp(type, "pip") == 0) {
		buf_adds(&b, "pkg:pypi/");
		for (const char *s = name; *s != '\0'; s++) {
			char ch = *s >= 'A' && *s <= 'Z' ? (char)(*s + 32) : *s;

			buf_addc(&b,
			    (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.'
				? ch
				: '-');
		}
		buf_printf(&b, "@%s", version);
	} else if (strcmp(type, "rubygems") == 0) {
		buf_printf(&b, "pkg:gem/%s@%s", name, version);
	} else if (strcmp(type, "git-submodule") == 0) {
		/* version is "<url>#<commit>" */
		const char *hash = strrchr(version, '#');
		char *url =
		    hash != NULL ? xstrndup(version, (size_t)(hash - version)) : xstrdup(version);

		vcs_purl(&b, name, url, hash != NULL ? hash + 1 : "");
		free(url);
	} else if (strcmp(type, "generic") == 0) {
		/* A generic file: where it was downloaded from and its checksum. */
		const char *url = mstr(p, "download_url");

		if (url[0] == '\0')
			url = version;
		buf_adds(&b, "pkg:generic/");
		quote(&b, name, "/");
		buf_adds(&b, "?download_url=");
		quote(&b, url, "");
		if (mstr(p, "checksum")[0] != '\0')
			buf_printf(&b, "&checksum=%s", mstr(p, "checksum"));
	} else {
		buf_printf(&b, "pkg:generic/%s@%s", name, version);
	}
	return buf_steal(&b, NULL);
}

/* The purl of a top-level package: the request's repository for the request's own
 * code ("#<path>" for a package below the root), its own for Go modules and submodules. */
static char *
top_purl(const json_t *p, const struct request *r)
{
	const char *type = mstr(p, "type"), *path = mstr(p, "path");
	struct buf b;

	if (strcmp(type, "gomod") == 0 || strcmp(type, "go-package") == 0 ||
	    strcmp(type, "git-submodule") == 0)
		return purl(p);
	buf_init(&b);
	vcs_purl(&b, mstr(p, "name"), r->repo, r->ref);
	if (path[0] != '\0' && strcmp(path, ".") != 0)
		buf_printf(&b, "#%s", path);
	return buf_steal(&b, NULL);
}

static int
cmp_purl(const void *a, const void *b)
{
	return strcmp(mstr(*(json_t *const *)a, "purl"), mstr(*(json_t *const *)b, "purl"));
}

/* Sorts an array of {"purl"} objects and drops repeats. */
static json_t *
sorted_unique(json_t *arr)
{
	size_t n = json_array_size(arr), i;
	json_t **v = xcalloc(n + 1, sizeof *v), *out = json_array();

	for (i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof *v, cmp_purl);
	for (i = 0; i < n; i++)
		if (i == 0 || json_equal(v[i], v[i - 1]) == 0)
			json_array_append(out, v[i]);
	free(v);
	json_decref(arr);
	return out;
}

/* A JSON string of s (freed). */
static json_t *
purl_json(char *s)
{
	json_t *v = json_string(s);

	free(s);
	return v != NULL ? v : json_string("(not valid UTF-8)");
}

/* {"purl": s} (s is freed). */
static json_t *
purl_obj(char *s)
{
	return json_pack("{s:o}", "purl", purl_json(s));
}

/* Appends a request's entries to image_contents: one per top-level package, "sources"
 * all its dependencies, "dependencies" those that are not dev-only. Only a complete
 * request has packages to show (a stale one's manifest is empty, as Cachito's). */
static void
add_contents(json_t *contents, const struct request *r)
{
	json_t *p, *d;
	size_t i, j;

	if (strcmp(r->state, REQUEST_COMPLETE) != 0)
		return;
	json_array_foreach(json_object_get(r->packages_data, "packages"), i, p)
	{
		json_t *deps = json_array(), *srcs = json_array();

		json_array_foreach(json_object_get(p, "dependencies"), j, d)
		{
			json_array_append_new(srcs, purl_obj(purl(d)));
			if (!json_is_true(json_object_get(d, "dev")))
				json_array_append_new(deps, purl_obj(purl(d)));
		}
		json_array_append_new(contents,
		    json_pack("{s:o,s:o,s:o}", "purl", purl_json(top_purl(p, r)), "dependencies",
			sorted_unique(deps), "sources", sorted_unique(srcs)));
	}
}

/* The ICM of some requests, its image_contents sorted by purl. */
static json_t *
icm(struct request **rs, size_t n)
{
	json_t *contents = json_array();

	for (size_t i = 0; i < n; i++)
		add_contents(contents, rs[i]);
	return json_pack("{s:{s:i,s:s,s:i},s:o}", "metadata", "icm_version", 1, "icm_spec",
	    ICM_SPEC, "image_layer_index", -1, "image_contents", sorted_unique(contents));
}

/* GET /api/v1/requests/{id}/content-manifest: complete or stale only. */
void
routes_requests_icm_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;
	json_t *o;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r))
		return;
	if (strcmp(r->state, REQUEST_COMPLETE) != 0 && strcmp(r->state, REQUEST_STALE) != 0) {
		resp_error(&c->resp, 400,
		    "Content manifests are only available for requests in the \"complete\" or "
		    "\"stale\" states");
	} else {
		o = icm(&r, 1);
		resp_json(&c->resp, 200, o);
		json_decref(o);
	}
	request_free(r);
}

/* Parses ?requests=1,2,3 into ids; false with the 400 in c->resp. */
static bool
parse_ids(struct call *c, int64_t **ids, size_t *n)
{
	static const char *const allowed[] = {"requests", NULL};
	char *list = NULL, *save = NULL, *tok;
	bool ok = true;

	*ids = NULL;
	*n = 0;
	if (!call_query_allowed(c, allowed) || !call_query_param(c, "requests", &list))
		return false;
	if (list == NULL)
		return true;
	for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		int64_t id;

		while (*tok == ' ')
			tok++;
		if (!parse_int64(tok, &id) || id <= 0) {
			resp_error(&c->resp, 400, "%s is not an integer.", call_echo(tok));
			ok = false;
			break;
		}
		if (*n >= MULTI_MAX) {
			resp_error(&c->resp, 400, "At most %d requests may be named.", MULTI_MAX);
			ok = false;
			break;
		}
		*ids = xrealloc(*ids, (*n + 1) * sizeof **ids);
		(*ids)[(*n)++] = id;
	}
	free(list);
	if (!ok) {
		free(*ids);
		*ids = NULL;
	}
	return ok;
}

/* GET /api/v1/content-manifest and /api/v1/sbom: checks ?requests= on the loop. */
int
routes_requests_multi_prepare(struct call *c)
{
	int64_t *ids;
	size_t n;

	if (!parse_ids(c, &ids, &n))
		return -1;
	free(ids);
	return 0;
}

/* Loads the named requests; every one must exist and be complete (Cachito's messages).
 * 0 with *rs (caller frees each), or -1 with the answer in c->resp. */
static int
load_complete(struct call *c, struct pool_thread *t, struct request ***rs, size_t *n)
{
	struct db *db;
	int64_t *ids;
	size_t nids;
	struct buf missing, bad;
	char *err = NULL;
	int rc = 0;

	*rs = NULL;
	*n = 0;
	if (!parse_ids(c, &ids, &nids))
		return -1;
	if ((db = call_db(c, t)) == NULL) {
		free(ids);
		return -1;
	}
	buf_init(&missing);
	buf_init(&bad);
	*rs = xcalloc(nids + 1, sizeof **rs);
	for (size_t i = 0; i < nids; i++) {
		struct request *r = NULL;
		int got = requests_get(db, ids[i], &r, &err);

		if (got < 0) {
			call_db_failed(c, "get request", err);
			free(err);
			rc = -1;
			break;
		}
		if (got == 0) {
			buf_printf(
			    &missing, "%s%lld", missing.len > 0 ? ", " : "", (long long)ids[i]);
			continue;
		}
		if (strcmp(r->state, REQUEST_COMPLETE) != 0)
			buf_printf(&bad, "Request %lld is in state %s, not in {'complete'}.\n",
			    (long long)r->id, r->state);
		(*rs)[(*n)++] = r;
	}
	if (rc == 0 && missing.len > 0) {
		resp_error(&c->resp, 400, "Cannot find request(s) %s.", missing.data);
		rc = -1;
	} else if (rc == 0 && bad.len > 0) {
		resp_error(&c->resp, 400, "%s", bad.data);
		rc = -1;
	}
	buf_free(&missing);
	buf_free(&bad);
	free(ids);
	return rc;
}

/* Frees what load_complete gave. */
static void
free_requests(struct request **rs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		request_free(rs[i]);
	free(rs);
}

/* GET /api/v1/content-manifest?requests=1,2: one ICM for all (none: an empty one). */
void
routes_requests_icm_multi_work(struct call *c, struct pool_thread *t)
{
	struct request **rs;
	size_t n;
	json_t *o;

	if (load_complete(c, t, &rs, &n) == 0) {
		o = icm(rs, n);
		resp_json(&c->resp, 200, o);
		json_decref(o);
	}
	free_requests(rs, n);
}

/* One SBOM component, keyed by purl in comps (so each appears once). */
static void
add_component(json_t *comps, const json_t *p, char *pu)
{
	if (json_object_get(comps, pu) == NULL)
		json_object_set_new(comps, pu,
		    json_pack("{s:s,s:s,s:s,s:s}", "type", "library", "name", mstr(p, "name"),
			"version", mstr(p, "version"), "purl", pu));
	free(pu);
}

static int
cmp_component(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int r = strcmp(mstr(x, "name"), mstr(y, "name"));

	if (r == 0)
		r = strcmp(mstr(x, "version"), mstr(y, "version"));
	return r != 0 ? r : strcmp(mstr(x, "purl"), mstr(y, "purl"));
}

/* GET /api/v1/sbom?requests=1,2: CycloneDX 1.4, every package and dependency once,
 * sorted by name, version and purl. */
void
routes_requests_sbom_work(struct call *c, struct pool_thread *t)
{
	struct request **rs;
	size_t n, i, j, k, m = 0;
	json_t *comps, *p, *d, *v, *list, **all, *o;
	const char *key;

	if (load_complete(c, t, &rs, &n) != 0) {
		free_requests(rs, n);
		return;
	}
	comps = json_object();
	for (k = 0; k < n; k++) {
		json_array_foreach(json_object_get(rs[k]->packages_data, "packages"), i, p)
		{
			add_component(comps, p, top_purl(p, rs[k]));
			json_array_foreach(json_object_get(p, "dependencies"), j, d)
			    add_component(comps, d, purl(d));
		}
	}
	all = xcalloc(json_object_size(comps) + 1, sizeof *all);
	json_object_foreach(comps, key, v) all[m++] = v;
	qsort(all, m, sizeof *all, cmp_component);
	list = json_array();
	for (i = 0; i < m; i++)
		json_array_append(list, all[i]);
	free(all);
	o = json_pack("{s:s,s:s,s:i,s:o}", "bomFormat", "CycloneDX", "specVersion", "1.4",
	    "version", 1, "components", list);
	resp_json(&c->resp, 200, o);
	json_decref(o);
	json_decref(comps);
	free_requests(rs, n);
}
