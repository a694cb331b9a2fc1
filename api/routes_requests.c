/* routes_requests.c: Cachito's API v1 for requests (docs/api.md "Requests"; research
 * cachito.md §1-3, §6, §7): create, list, read, the workers' PATCH, the bundle download,
 * environment variables, configuration files and logs. Shapes, status codes and error
 * texts are Cachito's, since its clients (atomic-reactor, cachito-cleanup) parse them. All
 * SQL is in shared/requests.c; the documents and body checks in api/reqjson.c. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/reqjson.h"
#include "api/routes.h"
#include "shared/kv.h"
#include "shared/log.h"

#define PER_PAGE_DEFAULT 10
#define PER_PAGE_MAX 100
#define NOT_FOUND "The requested resource was not found"

/* Cachito's 404 text, whatever was not found. */
void
routes_requests_not_found(struct call *c)
{
	resp_clear(&c->resp);
	resp_error(&c->resp, 404, NOT_FOUND);
}

/* {id}: a positive integer, else the resource does not exist (Flask's <int:id>). */
int
routes_requests_id_prepare(struct call *c)
{
	const char *s = router_param(&c->m, "id");

	if (s == NULL || strlen(s) > 18 || strspn(s, "0123456789") != strlen(s) ||
	    !parse_int64(s, &c->job_id) || c->job_id <= 0) {
		routes_requests_not_found(c);
		return -1;
	}
	return 0;
}

/* The request named by {id}. */
int
routes_requests_load(struct call *c, struct db *db, struct request **out)
{
	char *err = NULL;
	int rc = requests_get(db, c->job_id, out, &err);

	if (rc < 0) {
		call_db_failed(c, "get request", err);
		free(err);
		return 0;
	}
	if (rc == 0) {
		routes_requests_not_found(c);
		return 0;
	}
	return 1;
}

/* Answers with the request document (verbose: with its history). */
static void
reply_request(struct call *c, struct db *db, const struct request *r, int status, bool verbose)
{
	json_t *history = NULL, *o;
	char *err = NULL;

	if (verbose && requests_history(db, r->id, &history, &err) != 0) {
		call_db_failed(c, "request history", err);
		free(err);
		return;
	}
	o = reqjson_request(r, history, c->base_url, verbose);
	resp_json(&c->resp, status, o);
	json_decref(o);
	json_decref(history);
}

/* POST /api/v1/requests: the body is checked here and replaced by what the work needs:
 * {"fields": <body for requests_create>, "user": ..., "submitted_by": ...}. */
int
routes_requests_create_prepare(struct call *c)
{
	json_t *fields = NULL, *prepared, *want = json_object_get(c->json, "user");
	char *msg = reqjson_check_new(c->json, c->cfg->request_package_managers, &fields);
	char *name;

	if (msg != NULL) {
		resp_error(&c->resp, 400, "%s", msg);
		free(msg);
		return -1;
	}
	name = app_caller_name(c);
	if (want != NULL && name == NULL) {
		resp_error(&c->resp, 400, "Cannot set \"user\" when authentication is disabled");
		goto fail;
	}
	if (want != NULL && !app_caller_represents(c, name)) {
		log_warn_id(c->logid,
		    "%s tried to create a request on behalf of another user, but is not allowed",
		    call_echo(name));
		resp_error(&c->resp, 403,
		    "You are not authorized to create a request on behalf of another user");
		goto fail;
	}
	prepared = json_pack("{s:o,s:s?,s:s?}", "fields", fields, "user",
	    want != NULL ? json_string_value(want) : name, "submitted_by",
	    want != NULL ? name : NULL);
	json_decref(c->json);
	c->json = prepared;
	free(name);
	return 0;
fail:
	json_decref(fields);
	free(name);
	return -1;
}

/* Postgres first (the request and its job in one transaction), Redis second: a job
 * whose enqueue failed is committed all the same, and the workers' reconciler enqueues
 * it, so the client gets its 201 either way. */
void
routes_requests_create_work(struct call *c, struct pool_thread *t)
{
	const char *user = json_string_value(json_object_get(c->json, "user"));
	const char *by = json_string_value(json_object_get(c->json, "submitted_by"));
	struct request *r = NULL;
	struct db *db;
	struct kv *kv;
	char *err = NULL;

	if ((db = call_db(c, t)) == NULL)
		return;
	if (requests_create(db, json_object_get(c->json, "fields"), user, by, &r, &err) != 0) {
		call_db_failed(c, "create request", err);
		free(err);
		return;
	}
	log_info_id(c->logid, "request %lld: created for %s (job %lld)", (long long)r->id,
	    user != NULL ? call_echo(user) : "(anonymous)", (long long)r->job_id);
	if ((kv = call_kv(c, t)) != NULL && kv_enqueue(kv, r->job_id, &err) != 0) {
		log_warn_id(c->logid, "job %lld not enqueued (the reconciler will): %s",
		    (long long)r->job_id, err);
		free(err);
	}
	reply_request(c, db, r, 201, true);
	request_free(r);
}

/* One decoded query parameter. */
struct qparam {
	char *key, *value;
};

static void
qparams_free(struct qparam *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(q[i].key);
		free(q[i].value);
	}
	free(q);
}

/* Splits the query into parameters (repeats kept, in order) and refuses any not in
 * allowed with Cachito's message. false with the 400 in c->resp. */
static bool
qparams_parse(struct call *c, const char *const *allowed, struct qparam **out, size_t *n)
{
	const char *p = c->query != NULL ? c->query : "";
	struct qparam *q = NULL;
	struct buf extra;
	size_t count = 0;

	buf_init(&extra);
	while (*p != '\0') {
		const char *end = strchr(p, '&');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t klen = eq != NULL ? (size_t)(eq - p) : len;

		if (len > 0) {
			char *key = call_form_decode(p, klen);
			char *value =
			    eq != NULL ? call_form_decode(eq + 1, len - klen - 1) : xstrdup("");
			bool known = false;

			if (key == NULL || value == NULL) {
				free(key);
				free(value);
				qparams_free(q, count);
				buf_free(&extra);
				resp_error(&c->resp, 400, "malformed query string");
				return false;
			}
			for (size_t i = 0; allowed[i] != NULL && !known; i++)
				known = strcmp(allowed[i], key) == 0;
			if (!known)
				buf_printf(
				    &extra, "%s%s", extra.len > 0 ? ", " : "", call_echo(key));
			q = xrealloc(q, (count + 1) * sizeof *q);
			q[count].key = key;
			q[count].value = value;
			count++;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	if (extra.len > 0) {
		resp_error(&c->resp, 400, "Extra query parameter(s) %s not in spec", extra.data);
		buf_free(&extra);
		qparams_free(q, count);
		return false;
	}
	buf_free(&extra);
	*out = q;
	*n = count;
	return true;
}

/* The first value of key, or NULL. */
static const char *
qparam(const struct qparam *q, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(q[i].key, key) == 0)
			return q[i].value;
	return NULL;
}

/* Reads "YYYY-MM-DD" or an ISO 8601 date and time (optional seconds, fraction and zone;
 * no zone means UTC, as Cachito stores UTC). A bare date with end_of_day is its last
 * microsecond. False when malformed. */
static bool
parse_when(const char *s, bool end_of_day, double *out)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, sec = 0, off = 0, used = 0;
	double frac = 0;
	const char *p;

	memset(&tm, 0, sizeof tm);
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10 ||
	    !isdigit((unsigned char)s[0]))
		return false;
	p = s + used;
	if (*p == 'T' || *p == ' ') {
		if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &used) != 2 || used != 5)
			return false;
		p += 1 + used;
		if (*p == ':') {
			if (sscanf(p + 1, "%2d%n", &sec, &used) != 1 || used != 2)
				return false;
			p += 1 + used;
			if (*p == '.') {
				size_t digits = strspn(p + 1, "0123456789");

				if (digits == 0 || digits > 6)
					return false;
				frac = strtod(p, NULL);
				p += 1 + digits;
			}
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int oh, om;

			if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &used) != 2 || used != 5 ||
			    oh > 23 || om > 59)
				return false;
			off = (oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
			p += 1 + used;
		}
		end_of_day = false;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*out = (double)timegm(&tm) - off + frac;
	/* timegm normalises 2011-02-31 to March: such a date does not exist. */
	if (tm.tm_mday != d || tm.tm_mon != mo - 1)
		return false;
	if (end_of_day)
		*out += 86400 - 1e-6;
	return true;
}

/* GET /api/v1/requests, parsed. */
struct list_query {
	struct qparam *q;
	size_t nq;
	int64_t page, per_page;
	bool verbose;
	struct request_filter f;
	json_t *pkg_managers;
};

static void
list_query_free(struct list_query *lq)
{
	qparams_free(lq->q, lq->nq);
	json_decref(lq->pkg_managers);
}

/* A query integer at least 1, Connexion's messages. */
static bool
int_param(struct call *c, const char *name, const char *v, int64_t *out)
{
	if (v == NULL)
		return true;
	if (!parse_int64(v, out)) {
		resp_error(
		    &c->resp, 400, "Wrong type, expected 'integer' for query parameter '%s'", name);
		return false;
	}
	if (*out < 1) {
		resp_error(&c->resp, 400, "%lld is less than the minimum of 1", (long long)*out);
		return false;
	}
	return true;
}

/* The repr of a string for a message ('x'). */
static char *
repr_s(const char *s)
{
	json_t *v = json_string(s);
	char *r = reqjson_repr(v);

	json_decref(v);
	return r;
}

/* Validates the list query with Cachito's messages; false with the 400 in c->resp. */
static bool
list_parse(struct call *c, struct list_query *lq)
{
	static const char *const allowed[] = {"page", "per_page", "state", "verbose", "repo", "ref",
	    "pkg_manager", "created_from", "created_to", "error_origin", "error_type", NULL};
	static const char *const states[] = {"in_progress", "complete", "failed", "stale"};
	const char *v;
	char *r;
	size_t i;

	memset(lq, 0, sizeof *lq);
	lq->page = 1;
	lq->per_page = PER_PAGE_DEFAULT;
	lq->f.created_from = lq->f.created_to = -1;
	if (!qparams_parse(c, allowed, &lq->q, &lq->nq))
		return false;
	if (!int_param(c, "page", qparam(lq->q, lq->nq, "page"), &lq->page) ||
	    !int_param(c, "per_page", qparam(lq->q, lq->nq, "per_page"), &lq->per_page))
		goto bad;
	if (lq->per_page > PER_PAGE_MAX)
		lq->per_page = PER_PAGE_MAX;
	if ((v = qparam(lq->q, lq->nq, "state")) != NULL) {
		for (i = 0; i < BV_NELEM(states) && strcmp(states[i], v) != 0; i++)
			;
		if (i == BV_NELEM(states)) {
			r = repr_s(v);
			resp_error(&c->resp, 400,
			    "%s is not one of ['in_progress', 'complete', 'failed', 'stale']", r);
			free(r);
			goto bad;
		}
		lq->f.state = v;
	}
	if ((v = qparam(lq->q, lq->nq, "verbose")) != NULL) {
		if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
			lq->verbose = true;
			lq->f.with_packages = true;
		} else if (strcasecmp(v, "false") != 0 && strcmp(v, "0") != 0) {
			resp_error(&c->resp, 400,
			    "Wrong type, expected 'boolean' for query parameter 'verbose'");
			goto bad;
		}
	}
	if ((v = qparam(lq->q, lq->nq, "repo")) != NULL) {
		if (strlen(v) > 200) {
			r = repr_s(v);
			resp_error(&c->resp, 400, "%s is too long", r);
			free(r);
			goto bad;
		}
		lq->f.repo = v;
	}
	if ((v = qparam(lq->q, lq->nq, "ref")) != NULL) {
		if (strlen(v) != 40 || strspn(v, "0123456789abcdef") != 40) {
			r = repr_s(v);
			resp_error(&c->resp, 400, "%s does not match '^[a-f0-9]{40}$'", r);
			free(r);
			goto bad;
		}
		lq->f.ref = v;
	}
	for (i = 0; i < lq->nq; i++) {
		if (strcmp(lq->q[i].key, "pkg_manager") != 0)
			continue;
		bool known = false;

		for (size_t k = 0; k < reqjson_npkg_managers && !known; k++)
			known = strcmp(reqjson_pkg_managers[k], lq->q[i].value) == 0;
		if (!known) {
			resp_error(&c->resp, 400, "The following package managers are invalid: %s",
			    call_echo(lq->q[i].value));
			goto bad;
		}
		if (lq->pkg_managers == NULL)
			lq->pkg_managers = json_array();
		json_array_append_new(lq->pkg_managers, json_string(lq->q[i].value));
	}
	lq->f.pkg_managers = lq->pkg_managers;
	if ((v = qparam(lq->q, lq->nq, "error_origin")) != NULL) {
		if (strcmp(v, "client") != 0 && strcmp(v, "server") != 0) {
			r = repr_s(v);
			resp_error(&c->resp, 400, "%s is not one of ['client', 'server']", r);
			free(r);
			goto bad;
		}
		lq->f.error_origin = v;
	}
	lq->f.error_type = qparam(lq->q, lq->nq, "error_type");
	for (int k = 0; k < 2; k++) {
		const char *name = k == 0 ? "created_from" : "created_to";
		double *when = k == 0 ? &lq->f.created_from : &lq->f.created_to;

		if ((v = qparam(lq->q, lq->nq, name)) == NULL)
			continue;
		if (!parse_when(v, k == 1, when)) {
			r = repr_s(v);
			resp_error(
			    &c->resp, 400, "%s is not a valid datetime(ISO 8601 format).", r);
			free(r);
			goto bad;
		}
	}
	return true;
bad:
	list_query_free(lq);
	return false;
}

/* GET /api/v1/requests: the query is checked on the loop, and again on the thread. */
int
routes_requests_list_prepare(struct call *c)
{
	struct list_query lq;

	if (!list_parse(c, &lq))
		return -1;
	list_query_free(&lq);
	return 0;
}

/* A page's absolute link; like Cachito's, it carries only page, per_page, state and
 * verbose (the state was checked against a fixed list: nothing to escape). */
static json_t *
page_link(const struct call *c, const struct list_query *lq, int64_t page)
{
	return json_sprintf("%s/api/v1/requests?page=%lld&per_page=%lld%s%s&verbose=%s",
	    c->base_url, (long long)page, (long long)lq->per_page, lq->f.state ? "&state=" : "",
	    lq->f.state ? lq->f.state : "", lq->verbose ? "True" : "False");
}

/* One page, newest first; a page past the end (but the first) is a 404. */
void
routes_requests_list_work(struct call *c, struct pool_thread *t)
{
	struct list_query lq;
	struct request **rs = NULL;
	struct db *db;
	size_t n = 0;
	int64_t total = 0, pages;
	char *err = NULL;
	json_t *items, *meta, *o;

	if (!list_parse(c, &lq))
		return;
	/* A page so far out that its offset overflows holds nothing. */
	if (lq.page > INT64_MAX / lq.per_page) {
		routes_requests_not_found(c);
		goto out;
	}
	if ((db = call_db(c, t)) == NULL)
		goto out;
	if (requests_list(
		db, &lq.f, lq.per_page, (lq.page - 1) * lq.per_page, &rs, &n, &total, &err) != 0) {
		call_db_failed(c, "list requests", err);
		free(err);
		goto out;
	}
	if (n == 0 && lq.page != 1) {
		routes_requests_not_found(c);
		goto free_rs;
	}
	items = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *history = NULL;

		if (lq.verbose && requests_history(db, rs[i]->id, &history, &err) != 0) {
			call_db_failed(c, "request history", err);
			free(err);
			json_decref(items);
			goto free_rs;
		}
		json_array_append_new(
		    items, reqjson_request(rs[i], history, c->base_url, lq.verbose));
		json_decref(history);
	}
	pages = (total + lq.per_page - 1) / lq.per_page;
	meta = json_pack("{s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I}", "first", page_link(c, &lq, 1), "last",
	    page_link(c, &lq, pages > 0 ? pages : 1), "next",
	    lq.page < pages ? page_link(c, &lq, lq.page + 1) : json_null(), "previous",
	    lq.page > 1 ? page_link(c, &lq, lq.page - 1) : json_null(), "page", (json_int_t)lq.page,
	    "pages", (json_int_t)pages, "per_page", (json_int_t)lq.per_page, "total",
	    (json_int_t)total);
	o = json_pack("{s:o,s:o}", "items", items, "meta", meta);
	resp_json(&c->resp, 200, o);
	json_decref(o);
free_rs:
	for (size_t i = 0; i < n; i++)
		request_free(rs[i]);
	free(rs);
out:
	list_query_free(&lq);
}

/* GET /api/v1/requests/latest?repo_name=org/repo&ref=<40 hex>. */
static bool
latest_parse(struct call *c, struct qparam **q, size_t *n)
{
	static const char *const allowed[] = {"repo_name", "ref", NULL};

	if (!qparams_parse(c, allowed, q, n))
		return false;
	for (size_t i = 0; allowed[i] != NULL; i++) {
		if (qparam(*q, *n, allowed[i]) == NULL) {
			resp_error(&c->resp, 400, "Missing query parameter '%s'", allowed[i]);
			qparams_free(*q, *n);
			return false;
		}
	}
	return true;
}

int
routes_requests_latest_prepare(struct call *c)
{
	struct qparam *q;
	size_t n;

	if (!latest_parse(c, &q, &n))
		return -1;
	qparams_free(q, n);
	return 0;
}

/* The newest request for the repository name and ref, non-verbose. */
void
routes_requests_latest_work(struct call *c, struct pool_thread *t)
{
	struct qparam *q;
	struct request *r = NULL;
	struct db *db;
	size_t n;
	char *err = NULL;
	int rc;

	if (!latest_parse(c, &q, &n))
		return;
	if ((db = call_db(c, t)) == NULL)
		goto out;
	rc = requests_latest(db, qparam(q, n, "repo_name"), qparam(q, n, "ref"), &r, &err);
	if (rc < 0) {
		call_db_failed(c, "latest request", err);
		free(err);
	} else if (rc == 0) {
		routes_requests_not_found(c);
	} else {
		reply_request(c, db, r, 200, false);
		request_free(r);
	}
out:
	qparams_free(q, n);
}

/* GET /api/v1/requests/{id}: the verbose document. */
void
routes_requests_get_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r))
		return;
	reply_request(c, db, r, 200, true);
	request_free(r);
}

/* PATCH /api/v1/requests/{id}: the body is checked on the loop. */
int
routes_requests_patch_prepare(struct call *c)
{
	char *msg;

	if (routes_requests_id_prepare(c) != 0)
		return -1;
	if ((msg = reqjson_check_patch(c->json)) != NULL) {
		resp_error(&c->resp, 400, "%s", msg);
		free(msg);
		return -1;
	}
	return 0;
}

/* An integer member, or -1 when absent. */
static int64_t
count_of(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* Applies the PATCH (shared/requests.c has the transition table and the side effects)
 * and answers Cachito's 200 with an empty body. */
void
routes_requests_patch_work(struct call *c, struct pool_thread *t)
{
	const char *state = json_string_value(json_object_get(c->json, "state"));
	const char *reason = json_string_value(json_object_get(c->json, "state_reason"));
	struct db *db;
	char *err = NULL;
	int status = 500;

	if ((db = call_db(c, t)) == NULL)
		return;
	if (requests_patch(db, c->job_id, state, reason,
		json_object_get(c->json, "environment_variables"),
		count_of(c->json, "packages_count"), count_of(c->json, "dependencies_count"),
		json_string_value(json_object_get(c->json, "error_origin")),
		json_string_value(json_object_get(c->json, "error_type")), &status, &err) != 0) {
		if (status == 404) {
			routes_requests_not_found(c);
		} else if (status == 400) {
			resp_error(&c->resp, 400, "%s", err != NULL ? err : "invalid request");
		} else if (status == 503) {
			call_db_failed(c, "patch request", err);
		} else {
			char *safe = call_redact(c->cfg, err);

			log_error_id(
			    c->logid, "request %lld: patch failed: %s", (long long)c->job_id, safe);
			free(safe);
			resp_error(&c->resp, 500, "internal error while updating the request");
		}
		free(err);
		return;
	}
	if (state != NULL)
		log_info_id(c->logid, "request %lld: %s: %s", (long long)c->job_id, state,
		    call_echo(reason));
	c->resp.status = 200;
	c->resp.content_type = "text/html; charset=utf-8";
}

/* The bundle's answer when its blob cannot be read: a fixed message, the reason logged. */
static void
bundle_missing(struct call *c, const struct request *r, const char *why)
{
	log_error_id(c->logid, "request %lld: bundle %s: %s", (long long)r->id,
	    r->has_bundle ? r->bundle_sha256 : "(no bundle row)", why);
	resp_clear(&c->resp);
	resp_error(
	    &c->resp, 500, "The bundle archive of request %lld is not available", (long long)r->id);
}

/* GET /api/v1/requests/{id}/download: the job's bundle from the store (sendfile, or a
 * redirect for a store that serves blobs itself), with Cachito's Content-Disposition and
 * Digest (the stored sha256: no re-hash per download), and an ETag for revalidation. */
void
routes_requests_download_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;
	unsigned char sha[32];
	char *err = NULL, *digest, *filename, *url, etag[80];
	uint64_t size = 0;
	int fd;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r))
		return;
	if (strcmp(r->state, REQUEST_COMPLETE) != 0) {
		resp_error(&c->resp, 400,
		    "The request must be in the \"complete\" state before downloading the archive");
		goto out;
	}
	if (!r->has_bundle || !hex_decode(r->bundle_sha256, sha, sizeof sha)) {
		bundle_missing(c, r, "the request is complete but its job has no bundle");
		goto out;
	}
	snprintf(etag, sizeof etag, "\"%s\"", r->bundle_sha256);
	digest = base64_encode(sha, sizeof sha);
	resp_header(&c->resp, "ETag", etag);
	resp_headerf(&c->resp, "Digest", "sha-256=%s", digest);
	resp_header(&c->resp, "Cache-Control", "no-cache");
	free(digest);
	filename = xasprintf("cachito-%lld.tar.gz", (long long)r->id);
	url = store_blob_url(c->store, sha, filename, &err);
	if (url != NULL) {
		json_t *o = json_pack("{s:s}", "location", url);

		resp_header(&c->resp, "Location", url);
		resp_json(&c->resp, 302, o);
		json_decref(o);
	} else if (err != NULL) {
		bundle_missing(c, r, err);
	} else if ((fd = store_open_blob(c->store, sha, &size, &err)) < 0) {
		bundle_missing(c, r, err != NULL ? err : strerror(errno));
	} else {
		resp_file(&c->resp, 200, "application/gzip", fd, size);
		resp_headerf(&c->resp, "Content-Disposition", "attachment; filename=%s", filename);
	}
	free(url);
	free(err);
	free(filename);
out:
	request_free(r);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* GET /api/v1/requests/{id}/environment-variables: {NAME: {value, kind}} by name. */
void
routes_requests_env_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;
	const char **names, *name;
	json_t *o = json_object(), *v;
	size_t n = 0;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r)) {
		json_decref(o);
		return;
	}
	names = xcalloc(json_object_size(r->environment_variables) + 1, sizeof *names);
	json_object_foreach(r->environment_variables, name, v) names[n++] = name;
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		v = json_object_get(r->environment_variables, names[i]);
		json_object_set_new(o, names[i],
		    json_pack("{s:O?,s:O?}", "value", json_object_get(v, "value"), "kind",
			json_object_get(v, "kind")));
	}
	resp_json(&c->resp, 200, o);
	json_decref(o);
	free(names);
	request_free(r);
}

/* GET /api/v1/requests/{id}/configuration-files: [{path, type, content}] by path. */
void
routes_requests_config_get_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;
	json_t *files = NULL;
	char *err = NULL;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r))
		return;
	if (requests_config_files(db, r->id, &files, &err) != 0) {
		call_db_failed(c, "configuration files", err);
		free(err);
	} else {
		resp_json(&c->resp, 200, files);
	}
	json_decref(files);
	request_free(r);
}

/* POST /api/v1/requests/{id}/configuration-files: the body is checked on the loop. */
int
routes_requests_config_post_prepare(struct call *c)
{
	char *msg;

	if (routes_requests_id_prepare(c) != 0)
		return -1;
	if ((msg = reqjson_check_config_files(c->json)) != NULL) {
		resp_error(&c->resp, 400, "%s", msg);
		free(msg);
		return -1;
	}
	return 0;
}

/* Adds the files (a path given again is replaced); 204 as Cachito answers. */
void
routes_requests_config_post_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;
	char *err = NULL;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r))
		return;
	if (requests_add_config_files(db, r->id, c->json, &err) != 0) {
		call_db_failed(c, "add configuration files", err);
		free(err);
	} else {
		log_info_id(c->logid, "request %lld: %zu configuration file(s) added",
		    (long long)r->id, json_array_size(c->json));
		c->resp.status = 204;
	}
	request_free(r);
}

/* GET /api/v1/requests/{id}/logs: the worker's lines as text; a stale request's log is
 * gone: 410, as Cachito answers. */
void
routes_requests_logs_work(struct call *c, struct pool_thread *t)
{
	struct request *r = NULL;
	struct db *db;
	char *err = NULL, *text = NULL;
	size_t len = 0;

	if ((db = call_db(c, t)) == NULL || !routes_requests_load(c, db, &r))
		return;
	if (strcmp(r->state, REQUEST_STALE) == 0) {
		resp_error(&c->resp, 410, "The logs for the Cachito request %lld no longer exist",
		    (long long)r->id);
	} else if (requests_log_text(db, r->id, &text, &len, &err) != 0) {
		call_db_failed(c, "request log", err);
		free(err);
	} else {
		c->resp.status = 200;
		c->resp.content_type = "text/plain; charset=utf-8";
		c->resp.body = text;
		c->resp.body_len = len;
	}
	request_free(r);
}
