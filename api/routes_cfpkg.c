/* routes_cfpkg.c: Cloud Foundry's v3 packages (docs/api.md "CF v3 packages"; research
 * bits-service.md §5, the seed cf-v3-packages-api.txt): create (bits or docker, and the
 * older POST /v3/apps/{guid}/packages), copy (?source_guid=), read, list, upload (the bits
 * zip and/or matched resources, packed by a worker: AWAITING_UPLOAD -> PROCESSING_UPLOAD
 * -> READY or FAILED), download and delete. CF's JSON shapes and its error form
 * {"errors": [{"code", "title", "detail"}]}. A package's zip is a blob of the one store. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/bitsup.h"
#include "api/routes.h"
#include "shared/cfpkg.h"
#include "shared/kv.h"
#include "shared/log.h"
#include "shared/multipart.h"

#define PER_PAGE_DEFAULT 50
#define PER_PAGE_MAX 5000
/* A resource's mode when it has none (CC's default). */
#define DEFAULT_MODE 0744

static bool uuid_ok(const char *g);

/* CF's error document. */
static void BV_PRINTF(5, 6)
    cf_error(struct call *c, int status, int code, const char *title, const char *fmt, ...)
{
	va_list ap;
	char *detail;
	json_t *o;

	va_start(ap, fmt);
	detail = xvasprintf(fmt, ap);
	va_end(ap);
	o = json_pack(
	    "{s:[{s:s, s:s, s:i}]}", "errors", "detail", detail, "title", title, "code", code);
	resp_json(&c->resp, status, o);
	json_decref(o);
	free(detail);
}

/* 422 CF-UnprocessableEntity. -1. */
static int BV_PRINTF(2, 3) unprocessable(struct call *c, const char *fmt, ...)
{
	va_list ap;
	char *detail;

	va_start(ap, fmt);
	detail = xvasprintf(fmt, ap);
	va_end(ap);
	cf_error(c, 422, 10008, "CF-UnprocessableEntity", "%s", detail);
	free(detail);
	return -1;
}

static void
not_found(struct call *c)
{
	cf_error(c, 404, 10010, "CF-ResourceNotFound", "Package not found");
}

/* The package as CF shows it; docker passwords masked, as CC does. */
static json_t *
package_json(const struct call *c, const struct cf_package *p)
{
	char created[32], updated[32], h[65];
	json_t *data, *links, *o;

	call_iso8601(p->created_at, created);
	call_iso8601(p->updated_at, updated);
	if (strcmp(p->type, "docker") == 0) {
		const char *user = json_string_value(json_object_get(p->data, "username"));
		data = json_pack("{s:O, s:o, s:o}", "image", json_object_get(p->data, "image"),
		    "username", user != NULL ? json_string(user) : json_null(), "password",
		    json_object_get(p->data, "password") != NULL ? json_string("***")
								 : json_null());
	} else {
		json_t *sum = json_null();
		if (p->has_blob) {
			hex_encode(p->sha256, 32, h);
			sum = json_string(h);
		}
		data = json_pack("{s:{s:s, s:o}, s:o}", "checksum", "type", "sha256", "value", sum,
		    "error", p->error != NULL ? json_string(p->error) : json_null());
	}
	char *self = xasprintf("%s/v3/packages/%s", c->base_url, p->guid);
	char *app = xasprintf("%s/v3/apps/%s", c->base_url, p->app_guid);
	links = json_pack("{s:{s:s}, s:{s:s}}", "self", "href", self, "app", "href", app);
	free(self);
	free(app);
	o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:{s:{s:{s:s}}}, s:O, s:o}", "guid", p->guid,
	    "created_at", created, "updated_at", updated, "data", data, "state", p->state,
	    "relationships", "app", "data", "guid", p->app_guid, "metadata", p->metadata, "links",
	    links);
	if (strcmp(p->type, "bits") == 0) {
		char *u = xasprintf("%s/v3/packages/%s/upload", c->base_url, p->guid);
		char *d = xasprintf("%s/v3/packages/%s/download", c->base_url, p->guid);
		json_object_set_new(
		    links, "upload", json_pack("{s:s, s:s}", "href", u, "method", "POST"));
		json_object_set_new(
		    links, "download", json_pack("{s:s, s:s}", "href", d, "method", "GET"));
		free(u);
		free(d);
	}
	json_object_set_new(o, "type", json_string(p->type));
	return o;
}

static void
reply_package(struct call *c, int status, const struct cf_package *p)
{
	json_t *o = package_json(c, p);
	resp_json(&c->resp, status, o);
	json_decref(o);
}

/* An app guid as CF keeps them: 1 to 255 bytes of printable ASCII. */
static bool
app_guid_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* The keys of o not in the NULL-terminated list allowed: a 422 naming them. -1 or 0. */
static int
unknown_fields(struct call *c, const json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;
	struct buf b;

	buf_init(&b);
	json_object_foreach((json_t *)o, k, v)
	{
		bool ok = false;
		for (const char *const *a = allowed; *a != NULL; a++)
			ok |= strcmp(k, *a) == 0;
		if (!ok)
			buf_printf(&b, "%s'%s'", b.len ? ", " : "", call_echo(k));
	}
	if (b.len == 0) {
		buf_free(&b);
		return 0;
	}
	unprocessable(c, "Unknown field(s): %s", b.data);
	buf_free(&b);
	return -1;
}

/* The app of {"relationships": {"app": {"data": {"guid": ...}}}}, or NULL with a 422. */
static const char *
relationship_app(struct call *c, const json_t *body)
{
	const json_t *rel = json_object_get(body, "relationships");
	const char *g = json_string_value(
	    json_object_get(json_object_get(json_object_get(rel, "app"), "data"), "guid"));

	if (!json_is_object(rel)) {
		unprocessable(c, "Relationships 'relationships' is not an object");
		return NULL;
	}
	if (!app_guid_ok(g)) {
		unprocessable(c, "Relationships app must be {\"data\": {\"guid\": <app guid>}}");
		return NULL;
	}
	return g;
}

/* Checks a create body (type, data, metadata; app from the path or the relationships)
 * into c->aux {"app", "type", "data", "metadata"}. 0 or -1. */
static int
check_create(struct call *c, const char *app_from_path)
{
	static const char *const keys[] = {"type", "relationships", "data", "metadata", NULL};
	static const char *const legacy[] = {"type", "data", NULL};
	const json_t *body = c->json, *data, *meta;
	const char *type, *app = app_from_path;
	json_t *d;

	if (!json_is_object(body))
		return unprocessable(c, "The request body must be a JSON object");
	if (unknown_fields(c, body, app_from_path != NULL ? legacy : keys) != 0)
		return -1;
	type = json_string_value(json_object_get(body, "type"));
	if (type == NULL || (strcmp(type, "bits") != 0 && strcmp(type, "docker") != 0))
		return unprocessable(c, "Type must be one of 'bits, docker'");
	if (app == NULL && (app = relationship_app(c, body)) == NULL)
		return -1;
	if (app_from_path != NULL && !app_guid_ok(app)) {
		not_found(c);
		return -1;
	}
	data = json_object_get(body, "data");
	if (data != NULL && !json_is_object(data))
		return unprocessable(c, "Data must be an object");
	if (strcmp(type, "docker") == 0) {
		const json_t *img = json_object_get(data, "image");
		const json_t *cred = json_object_get(data, "credentials");
		const char *user = json_string_value(json_object_get(data, "username"));
		const char *pass = json_string_value(json_object_get(data, "password"));
		if (!json_is_string(img) || json_string_length(img) == 0 ||
		    json_string_length(img) > 4096)
			return unprocessable(c, "Image required");
		/* The older form's credentials.user / .password. */
		if (user == NULL && json_is_object(cred))
			user = json_string_value(json_object_get(cred, "user"));
		if (pass == NULL && json_is_object(cred))
			pass = json_string_value(json_object_get(cred, "password"));
		if ((user == NULL) != (pass == NULL))
			return unprocessable(
			    c, "Username and password must both be given, or neither");
		d = json_pack("{s:O}", "image", img);
		if (user != NULL)
			json_object_set_new(d, "username", json_string(user));
		if (pass != NULL)
			json_object_set_new(d, "password", json_string(pass));
	} else {
		if (data != NULL && json_object_size(data) > 0)
			return unprocessable(c, "Data must be empty for a bits package");
		d = json_object();
	}
	meta = json_object_get(body, "metadata");
	if (meta != NULL &&
	    (!json_is_object(meta) ||
		(json_object_get(meta, "labels") != NULL &&
		    !json_is_object(json_object_get(meta, "labels"))) ||
		(json_object_get(meta, "annotations") != NULL &&
		    !json_is_object(json_object_get(meta, "annotations"))))) {
		json_decref(d);
		return unprocessable(
		    c, "Metadata must be {\"labels\": {...}, \"annotations\": {...}}");
	}
	c->aux = json_pack("{s:s, s:s, s:o, s:{s:O*, s:O*}}", "app", app, "type", type, "data", d,
	    "metadata", "labels", json_object_get(meta, "labels"), "annotations",
	    json_object_get(meta, "annotations"));
	json_t *m = json_object_get(c->aux, "metadata");
	if (json_object_get(m, "labels") == NULL)
		json_object_set_new(m, "labels", json_object());
	if (json_object_get(m, "annotations") == NULL)
		json_object_set_new(m, "annotations", json_object());
	return 0;
}

/* POST /v3/packages (create, or copy with ?source_guid=) */
int
routes_cfpkg_create_prepare(struct call *c)
{
	char *src = NULL;

	if (!call_query_param(c, "source_guid", &src))
		return -1;
	if (src == NULL)
		return check_create(c, NULL);
	if (!uuid_ok(src)) {
		free(src);
		return unprocessable(c,
		    "Unable to use package. Ensure that the package exists and "
		    "you have access to it.");
	}
	/* A copy: the body names the destination app only. */
	static const char *const keys[] = {"relationships", NULL};
	const char *app;
	if (!json_is_object(c->json) || unknown_fields(c, c->json, keys) != 0 ||
	    (app = relationship_app(c, c->json)) == NULL) {
		if (c->resp.status == 0)
			unprocessable(c, "The request body must be a JSON object");
		free(src);
		return -1;
	}
	c->aux = json_pack("{s:s, s:s}", "app", app, "source", src);
	free(src);
	return 0;
}

/* POST /v3/apps/{guid}/packages (the older form of the seed) */
int
routes_cfpkg_create_legacy_prepare(struct call *c)
{
	return check_create(c, router_param(&c->m, "guid"));
}

void
routes_cfpkg_create_work(struct call *c, struct pool_thread *t)
{
	struct cf_package p = {0}, src = {0};
	char guid[37], *err = NULL, state[24];
	const char *source = json_string_value(json_object_get(c->aux, "source"));
	const char *app = json_string_value(json_object_get(c->aux, "app"));
	struct db *db = call_db(c, t);
	int rc;

	if (db == NULL)
		return;
	call_new_uuid(guid);
	if (source == NULL) {
		const char *type = json_string_value(json_object_get(c->aux, "type"));
		if (cfpkg_create(db, guid, app, type,
			strcmp(type, "bits") == 0 ? "AWAITING_UPLOAD" : "READY",
			json_object_get(c->aux, "data"), json_object_get(c->aux, "metadata"), &p,
			&err) != 0) {
			call_db_failed(c, "creating a package", err);
			free(err);
			return;
		}
		log_info_id(c->logid, "package %s: %s for app %s", guid, type, app);
		reply_package(c, 201, &p);
		cf_package_clear(&p);
		return;
	}
	/* A copy shares the source's blob, touched first so the collector keeps it. */
	rc = cfpkg_get(db, source, &src, &err);
	if (rc > 0 && src.has_blob && store_touch(c->store, src.sha256, &err) != 0) {
		log_warn_id(c->logid, "copy of package %s: %s", source, err);
		free(err);
		err = NULL;
		rc = 0;
	}
	if (rc > 0)
		rc = cfpkg_copy(db, source, guid, app, &p, state, &err);
	if (rc < 0) {
		call_db_failed(c, "copying a package", err);
		free(err);
	} else if (rc == 0) {
		if (src.guid[0] == '\0')
			unprocessable(c,
			    "Unable to use package. Ensure that the package exists "
			    "and you have access to it.");
		else
			unprocessable(c,
			    "The source package is %s, not READY: it has nothing to copy yet",
			    src.state);
	} else {
		log_info_id(c->logid, "package %s: copy of %s for app %s", guid, source, app);
		reply_package(c, 201, &p);
	}
	cf_package_clear(&p);
	cf_package_clear(&src);
}

/* GET /v3/packages/{guid}, DELETE, the download and the upload: the guid. */
int
routes_cfpkg_guid_prepare(struct call *c)
{
	const char *g = router_param(&c->m, "guid");

	/* Not a UUID: no package has it (Postgres would refuse it as a uuid). */
	if (!uuid_ok(g)) {
		not_found(c);
		return -1;
	}
	free(c->bits_key);
	c->bits_key = xstrdup(g);
	return 0;
}

/* Reads the package named by c->bits_key: 1 (*p), else the answer is set (404, 503). */
static int
get_package(struct call *c, struct db *db, struct cf_package *p)
{
	char *err = NULL;
	int rc = cfpkg_get(db, c->bits_key, p, &err);

	if (rc < 0) {
		call_db_failed(c, "reading a package", err);
		free(err);
	} else if (rc == 0) {
		not_found(c);
	}
	return rc > 0;
}

void
routes_cfpkg_get_work(struct call *c, struct pool_thread *t)
{
	struct cf_package p;
	struct db *db = call_db(c, t);

	if (db == NULL || !get_package(c, db, &p))
		return;
	reply_package(c, 200, &p);
	cf_package_clear(&p);
}

/* A comma-separated filter into a JSON array (NULL when absent). false with a 400. */
static bool
list_param(struct call *c, const char *name, json_t **out)
{
	char *v = NULL, *save = NULL;

	*out = NULL;
	if (!call_query_param(c, name, &v))
		return false;
	if (v == NULL)
		return true;
	*out = json_array();
	for (char *s = strtok_r(v, ",", &save); s != NULL; s = strtok_r(NULL, ",", &save))
		json_array_append_new(*out, json_string(s));
	free(v);
	return true;
}

/* An integer query parameter in [1, max] (absent: def). false with a 400. */
static bool
int_param(struct call *c, const char *name, int64_t def, int64_t max, int64_t *out)
{
	char *v = NULL;

	*out = def;
	if (!call_query_param(c, name, &v))
		return false;
	if (v != NULL && (!parse_int64(v, out) || *out < 1 || *out > max)) {
		free(v);
		cf_error(c, 400, 10005, "CF-BadQueryParameter",
		    "The query parameter is invalid: %s must be between 1 and %lld", name,
		    (long long)max);
		return false;
	}
	free(v);
	return true;
}

/* GET /v3/packages and GET /v3/apps/{guid}/packages */
int
routes_cfpkg_list_prepare(struct call *c)
{
	static const char *const allowed[] = {
	    "page", "per_page", "guids", "app_guids", "states", "types", "order_by", NULL};
	const char *app = router_param(&c->m, "guid");
	json_t *guids = NULL, *apps = NULL, *states = NULL, *types = NULL;
	int64_t page, per_page;
	char *order = NULL;

	if (!call_query_allowed(c, allowed)) {
		resp_clear(&c->resp);
		resp_init(&c->resp);
		cf_error(c, 400, 10005, "CF-BadQueryParameter",
		    "Unknown query parameter(s): use page, per_page, guids, app_guids, states, "
		    "types, order_by");
		return -1;
	}
	if (!int_param(c, "page", 1, INT32_MAX, &page) ||
	    !int_param(c, "per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX, &per_page) ||
	    !call_query_param(c, "order_by", &order))
		return -1;
	if (order != NULL && strcmp(order, "created_at") != 0) {
		free(order);
		cf_error(
		    c, 400, 10005, "CF-BadQueryParameter", "Order by can only be: 'created_at'");
		return -1;
	}
	free(order);
	if (!list_param(c, "guids", &guids) || !list_param(c, "app_guids", &apps) ||
	    !list_param(c, "states", &states) || !list_param(c, "types", &types)) {
		/* A later parameter malformed: the lists read so far go (fuzz_request). */
		json_decref(guids);
		json_decref(apps);
		json_decref(states);
		json_decref(types);
		return -1;
	}
	if (app != NULL) {
		json_decref(apps);
		apps = json_pack("[s]", app);
	}
	c->aux = json_pack("{s:I, s:I, s:o*, s:o*, s:o*, s:o*}", "page", (json_int_t)page,
	    "per_page", (json_int_t)per_page, "guids", guids, "app_guids", apps, "states", states,
	    "types", types);
	return 0;
}

/* A pagination link for page n (the same filters), or null. */
static json_t *
page_link(const struct call *c, int64_t n, int64_t per_page)
{
	const char *app = router_param(&c->m, "guid");
	struct buf b;
	const char *keys[] = {"guids", "app_guids", "states", "types"};

	buf_init(&b);
	if (app != NULL)
		buf_printf(&b, "%s/v3/apps/%s/packages?page=%lld&per_page=%lld", c->base_url, app,
		    (long long)n, (long long)per_page);
	else
		buf_printf(&b, "%s/v3/packages?page=%lld&per_page=%lld", c->base_url, (long long)n,
		    (long long)per_page);
	for (size_t k = 0; k < BV_NELEM(keys); k++) {
		const json_t *list = json_object_get(c->aux, keys[k]);
		size_t i;
		json_t *v;
		if (list == NULL || (app != NULL && strcmp(keys[k], "app_guids") == 0))
			continue;
		buf_printf(&b, "&%s=", keys[k]);
		json_array_foreach(list, i, v)
		{
			if (i > 0)
				buf_adds(&b, ",");
			for (const char *s = json_string_value(v); *s != '\0'; s++) {
				if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
				    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.')
					buf_addc(&b, *s);
				else
					buf_printf(&b, "%%%02X", (unsigned char)*s);
			}
		}
	}
	json_t *o = json_pack("{s:s}", "href", b.data);
	buf_free(&b);
	return o;
}

void
routes_cfpkg_list_work(struct call *c, struct pool_thread *t)
{
	struct cfpkg_filter f = {json_object_get(c->aux, "guids"),
	    json_object_get(c->aux, "app_guids"), json_object_get(c->aux, "states"),
	    json_object_get(c->aux, "types")};
	int64_t page = json_integer_value(json_object_get(c->aux, "page"));
	int64_t per = json_integer_value(json_object_get(c->aux, "per_page"));
	struct cf_package *rows = NULL;
	size_t n = 0;
	int64_t total = 0, pages;
	char *err = NULL;
	json_t *res, *o;
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	if (cfpkg_list(db, &f, page, per, &rows, &n, &total, &err) != 0) {
		call_db_failed(c, "listing packages", err);
		free(err);
		return;
	}
	pages = total > 0 ? (total + per - 1) / per : 1;
	res = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(res, package_json(c, &rows[i]));
	o = json_pack("{s:{s:I, s:I, s:o, s:o, s:o, s:o}, s:o}", "pagination", "total_results",
	    (json_int_t)total, "total_pages", (json_int_t)pages, "first", page_link(c, 1, per),
	    "last", page_link(c, pages, per), "next",
	    page < pages ? page_link(c, page + 1, per) : json_null(), "previous",
	    page > 1 ? page_link(c, page - 1 < pages ? page - 1 : pages, per) : json_null(),
	    "resources", res);
	resp_json(&c->resp, 200, o);
	json_decref(o);
	cf_packages_free(rows, n);
}

/* ---- the upload ---------------------------------------------------------------------- */

/* POST /v3/packages/{guid}/upload: multipart "bits" (a zip) and/or "resources". */
enum call_bits_body
routes_cfpkg_upload_headers(struct call *c)
{
	static const struct bits_kind kind = {"/v3/packages/", "bits", "package", "package"};
	enum call_bits_body b;
	char *boundary = NULL, *err = NULL;

	c->bits_kind = &kind;
	int64_t limit = c->cfg->bits_packages_max_body_size > 0
	    ? c->cfg->bits_packages_max_body_size
	    : c->cfg->bits_max_body_size;
	if ((b = routes_bits_check_limit(c, limit)) != CALL_BITS_NONE) {
		/* CF's words for the same limits. */
		int st = c->resp.status;
		resp_clear(&c->resp);
		resp_init(&c->resp);
		if (st == 413)
			cf_error(c, 413, 150001, "CF-AppPackageInvalid",
			    "Package may not be larger than %lld bytes", (long long)limit);
		else
			cf_error(c, st, 1001, "CF-MessageParseError",
			    "Request invalid due to parse error: no Content-Length");
		return b;
	}
	if (!multipart_is_form_data(c->content_type) ||
	    multipart_boundary(c->content_type, &boundary, &err) != 0) {
		free(err);
		unprocessable(c, "Upload must include either resources or bits");
		return CALL_BITS_REFUSE;
	}
	c->upload = bitsup_new(c->store, "bits", boundary, (size_t)c->cfg->max_json_size, &err);
	free(boundary);
	if (c->upload == NULL) {
		bool full = bitsup_disk_full(err);
		log_error_id(c->logid, "package upload: %s", err);
		free(err);
		cf_error(c, full ? 507 : 500, full ? 150007 : 10001,
		    full ? "CF-BlobstoreError" : "UnknownError", "%s",
		    full ? "No space left on the server" : "The upload could not be stored");
		return CALL_BITS_REFUSE;
	}
	bitsup_file_optional(c->upload);
	bitsup_keep_file_field(c->upload, "resources");
	return CALL_BITS_STREAM;
}

/* The resources field (v2 {fn, sha1, size, mode} or v3 {path, checksum: {value},
 * size_in_bytes, mode}) into c->aux "resources": [[path, sha1, mode], ...]. 0 or -1. */
static int
check_resources(struct call *c, const char *text)
{
	json_t *list = json_loads(text, JSON_REJECT_DUPLICATES, NULL), *e, *out, *seen;
	size_t i;
	int rc = -1;

	if (!json_is_array(list)) {
		json_decref(list);
		return unprocessable(c, "Resources must be valid JSON.");
	}
	if (json_array_size(list) > BITS_MAX_FILES) {
		json_decref(list);
		return unprocessable(c, "More than %d resources", BITS_MAX_FILES);
	}
	out = json_array();
	seen = json_object();
	json_array_foreach(list, i, e)
	{
		const char *path = json_string_value(json_object_get(e, "fn"));
		const char *sha1 = json_string_value(json_object_get(e, "sha1"));
		const json_t *mode = json_object_get(e, "mode");
		unsigned long m = DEFAULT_MODE;
		char *end = NULL;

		if (path == NULL)
			path = json_string_value(json_object_get(e, "path"));
		if (sha1 == NULL)
			sha1 = json_string_value(
			    json_object_get(json_object_get(e, "checksum"), "value"));
		if (!json_is_object(e) || path == NULL || sha1 == NULL || strlen(sha1) != 40 ||
		    strspn(sha1, "0123456789abcdef") != 40) {
			cf_error(c, 400, 160001, "CF-AppBitsUploadInvalid",
			    "The app upload is invalid: each resource needs a path and a sha1");
			goto out;
		}
		if (!call_rel_path_ok(path) || json_object_get(seen, path) != NULL) {
			cf_error(c, 400, 160004, "CF-AppResourcesFilePathInvalid",
			    "The file path is not valid: %s", call_echo(path));
			goto out;
		}
		if (json_is_string(mode) && json_string_length(mode) > 0)
			m = strtoul(json_string_value(mode), &end, 8);
		if ((json_is_string(mode) && json_string_length(mode) > 0 &&
			(*end != '\0' || m > 07777)) ||
		    (mode != NULL && !json_is_string(mode)) || (m & 0600) != 0600) {
			cf_error(c, 400, 160003, "CF-AppResourcesFileModeInvalid",
			    "The resource file mode is invalid: %s", call_echo(path));
			goto out;
		}
		json_object_set_new(seen, path, json_true());
		json_array_append_new(out, json_pack("[s, s, I]", path, sha1, (json_int_t)m));
	}
	json_object_set(c->aux, "resources", out);
	rc = 0;
out:
	json_decref(out);
	json_decref(seen);
	json_decref(list);
	return rc;
}

int
routes_cfpkg_upload_prepare(struct call *c)
{
	const char *res;

	if (routes_cfpkg_guid_prepare(c) != 0)
		return -1;
	if (bitsup_finish(c->upload, &c->resp) != 0) {
		resp_clear(&c->resp);
		resp_init(&c->resp);
		cf_error(c, 400, 1001, "CF-MessageParseError",
		    "Request invalid due to parse error: the multipart body is malformed");
		return -1;
	}
	c->aux = json_object();
	res = bitsup_field(c->upload, "resources");
	if (res != NULL && check_resources(c, res) != 0)
		return -1;
	if (!bitsup_has_file(c->upload) && res == NULL)
		return unprocessable(c, "Upload must include either resources or bits");
	return 0;
}

void
routes_cfpkg_upload_work(struct call *c, struct pool_thread *t)
{
	struct cf_package p;
	unsigned char sha256[32], sha1[20];
	uint64_t size = 0;
	int64_t job_id = 0;
	char *err = NULL, hex[65], state[24];
	json_t *params;
	struct kv *kv;
	struct db *db = call_db(c, t);
	int rc;

	if (db == NULL || !get_package(c, db, &p))
		return;
	if (strcmp(p.type, "bits") != 0) {
		unprocessable(c, "Package type must be bits.");
		cf_package_clear(&p);
		return;
	}
	if (strcmp(p.state, "AWAITING_UPLOAD") != 0) {
		cf_error(c, 400, 150004, "CF-PackageBitsAlreadyUploaded",
		    "Bits may be uploaded only once. Create a new package to upload different "
		    "bits.");
		cf_package_clear(&p);
		return;
	}
	cf_package_clear(&p);
	/* "O" takes a reference of its own: a fresh empty array goes in with "o". */
	json_t *resources = json_object_get(c->aux, "resources");
	params = resources != NULL ? json_pack("{s:O}", "resources", resources)
				   : json_pack("{s:o}", "resources", json_array());
	if (bitsup_has_file(c->upload)) {
		if (bitsup_commit(c->upload, sha256, sha1, &size, &err) != 0) {
			bool full = bitsup_disk_full(err);
			log_error_id(c->logid, "package upload: %s", err);
			free(err);
			cf_error(c, full ? 507 : 500, full ? 150007 : 10001,
			    full ? "CF-BlobstoreError" : "UnknownError", "%s",
			    full ? "No space left on the server"
				 : "The upload could not be stored");
			json_decref(params);
			return;
		}
		/* The upload is touched as the job that names it is created: the worker reads
		 * it within gc_grace. */
		hex_encode(sha256, 32, hex);
		json_object_set_new(params, "bits", json_string(hex));
		if (store_touch(c->store, sha256, &err) != 0) {
			log_warn_id(c->logid, "package upload: %s", err);
			free(err);
			err = NULL;
		}
	}
	rc = cfpkg_start_upload(db, c->bits_key, params, &job_id, state, &err);
	json_decref(params);
	if (rc < 0) {
		call_db_failed(c, "starting a package upload", err);
		free(err);
		return;
	}
	if (rc == 0) {
		if (state[0] == '\0')
			not_found(c);
		else
			cf_error(c, 400, 150004, "CF-PackageBitsAlreadyUploaded",
			    "Bits may be uploaded only once. Create a new package to upload "
			    "different bits.");
		return;
	}
	/* The answer shows PROCESSING_UPLOAD: read before a worker can have the job. */
	if (get_package(c, db, &p)) {
		reply_package(c, 200, &p);
		cf_package_clear(&p);
	}
	if ((kv = call_kv(c, t)) != NULL && kv_enqueue(kv, job_id, &err) != 0) {
		log_warn_id(c->logid, "job %lld not enqueued (the reconciler will): %s",
		    (long long)job_id, err);
		free(err);
	}
	log_info_id(c->logid, "package %s: upload of %llu bytes, job %lld", c->bits_key,
	    (unsigned long long)size, (long long)job_id);
}

/* GET /v3/packages/{guid}/download */
void
routes_cfpkg_download_work(struct call *c, struct pool_thread *t)
{
	struct cf_package p;
	uint64_t size = 0, start, len;
	char *err = NULL;
	int fd;
	struct db *db = call_db(c, t);

	if (db == NULL || !get_package(c, db, &p))
		return;
	if (strcmp(p.type, "bits") != 0) {
		unprocessable(c, "Package type must be bits.");
	} else if (strcmp(p.state, "READY") != 0 || !p.has_blob) {
		unprocessable(c, "Package has no bits to download.");
	} else if ((fd = store_open_blob(c->store, p.sha256, &size, &err)) < 0) {
		log_error_id(c->logid, "package %s: %s", p.guid, err);
		free(err);
		cf_error(c, 500, 150007, "CF-BlobstoreError", "The package's bits cannot be read");
	} else if (resp_parse_range(c->range, size, &start, &len) == 1) {
		resp_file_range(&c->resp, "application/zip", fd, start, len, size);
	} else {
		resp_file(&c->resp, 200, "application/zip", fd, size);
		resp_header(&c->resp, "Accept-Ranges", "bytes");
	}
	cf_package_clear(&p);
}

/* DELETE /v3/packages/{guid}: done before the answer (the blob stays until the collector
 * finds nothing naming it); CF's 202 with a job that is already complete. */
void
routes_cfpkg_delete_work(struct call *c, struct pool_thread *t)
{
	char *err = NULL, when[32], *href;
	struct db *db = call_db(c, t);
	json_t *o;
	int rc;

	if (db == NULL)
		return;
	rc = cfpkg_delete(db, c->bits_key, &err);
	if (rc < 0) {
		call_db_failed(c, "deleting a package", err);
		free(err);
		return;
	}
	if (rc == 0) {
		not_found(c);
		return;
	}
	log_info_id(c->logid, "package %s deleted", c->bits_key);
	call_iso8601((double)time(NULL), when);
	href = xasprintf("%s/v3/jobs/package.delete~%s", c->base_url, c->bits_key);
	o = json_pack("{s:s+, s:s, s:s, s:s, s:s, s:[], s:[], s:{s:{s:s}}}", "guid",
	    "package.delete~", c->bits_key, "operation", "package.delete", "state", "COMPLETE",
	    "created_at", when, "updated_at", when, "errors", "warnings", "links", "self", "href",
	    href);
	resp_json(&c->resp, 202, o);
	resp_header(&c->resp, "Location", href);
	json_decref(o);
	free(href);
}

/* The guid shape of a UUID (8-4-4-4-12 hex digits): anything else names no package. */
static bool
uuid_ok(const char *g)
{
	if (g == NULL || strlen(g) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? g[i] != '-'
			 : strchr("0123456789abcdefABCDEF", g[i]) == NULL || g[i] == '\0')
			return false;
	}
	return true;
}

void
routes_cfpkg_bad_json(struct call *c)
{
	cf_error(c, 400, 1001, "CF-MessageParseError",
	    "Request invalid due to parse error: invalid request body");
}
