/* routes_list.c: GET /vault/{kind}: the bundles of one object kind, newest first, one
 * entry per bundle (its newest job), page by page: a "meta" object with totals and
 * absolute links, and the same links in a Link header (RFC 8288), as Cachito's lists do
 * (research cachito.md §6). Filters: ?status= (the Vault's words) and ?format=. */
#include <stdlib.h>
#include <string.h>

#include "api/jobjson.h"
#include "api/routes.h"
#include "shared/jobstore.h"
#include "shared/log.h"

#define PER_PAGE_DEFAULT 20
#define PER_PAGE_MAX 100

/* The formats a bundle may have (DESIGN §5); a filter on another is a 400. */
static const char *const formats[] = {"tar.gz", "zip", "gitfast", "git-bare"};

struct list_query {
	const char *kind;
	enum swhid_kind swhid_kind;
	int64_t page, per_page;
	enum job_state state; /* JOB_STATE_INVALID: any live state */
	char *status; /* as given, for the links; NULL when absent */
	char *format; /* NULL when absent */
};

/* Frees what parse_query allocated. */
static void
list_query_free(struct list_query *q)
{
	free(q->status);
	free(q->format);
}

/* A positive integer query parameter within [1, max], or def when absent. */
static bool
int_param(struct call *c, const char *name, int64_t def, int64_t max, int64_t *out)
{
	char *v = NULL;

	if (!call_query_param(c, name, &v))
		return false;
	*out = def;
	if (v != NULL && (!parse_int64(v, out) || *out < 1 || *out > max)) {
		resp_error(
		    &c->resp, 400, "%s must be an integer from 1 to %lld", name, (long long)max);
		free(v);
		return false;
	}
	free(v);
	return true;
}

/* Validates the kind and the query; false with the answer in c->resp. */
static bool
parse_query(struct call *c, struct list_query *q)
{
	static const char *const allowed[] = {"page", "per_page", "status", "format", NULL};
	static const struct {
		const char *name;
		enum swhid_kind kind;
	} kinds[] = {{"directory", SWHID_DIR}, {"revision", SWHID_REV}, {"snapshot", SWHID_SNP}};
	static const struct {
		const char *vault;
		enum job_state state;
	} statuses[] = {{"new", JOB_QUEUED}, {"pending", JOB_RUNNING}, {"done", JOB_DONE},
	    {"failed", JOB_FAILED}};
	const char *kind = router_param(&c->m, "kind");
	size_t i;

	memset(q, 0, sizeof *q);
	q->state = JOB_STATE_INVALID;
	for (i = 0; i < BV_NELEM(kinds) && strcmp(kinds[i].name, kind) != 0; i++)
		;
	if (i == BV_NELEM(kinds)) {
		resp_error(&c->resp, 404,
		    "not found: unknown object kind; kinds: directory, revision, snapshot");
		return false;
	}
	q->kind = kinds[i].name;
	q->swhid_kind = kinds[i].kind;
	if (!call_query_allowed(c, allowed) || !int_param(c, "page", 1, INT32_MAX, &q->page) ||
	    !int_param(c, "per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX, &q->per_page) ||
	    !call_query_param(c, "status", &q->status) ||
	    !call_query_param(c, "format", &q->format))
		goto bad;
	if (q->status != NULL) {
		for (i = 0; i < BV_NELEM(statuses) && strcmp(statuses[i].vault, q->status) != 0;
		     i++)
			;
		if (i == BV_NELEM(statuses)) {
			resp_error(
			    &c->resp, 400, "unknown status; statuses: new, pending, done, failed");
			goto bad;
		}
		q->state = statuses[i].state;
	}
	if (q->format != NULL) {
		for (i = 0; i < BV_NELEM(formats) && strcmp(formats[i], q->format) != 0; i++)
			;
		if (i == BV_NELEM(formats)) {
			resp_error(&c->resp, 400,
			    "unknown format; formats: tar.gz, zip, gitfast, git-bare");
			goto bad;
		}
	}
	return true;
bad:
	list_query_free(q);
	return false;
}

/* GET /vault/{kind}: checks the query on the loop. */
int
routes_vault_list_prepare(struct call *c)
{
	struct list_query q;

	if (!parse_query(c, &q))
		return -1;
	list_query_free(&q);
	return 0;
}

/* The absolute URL of one page, keeping the filters. */
static char *
page_url(const struct call *c, const struct list_query *q, int64_t page)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s/vault/%s?page=%lld&per_page=%lld", c->base_url, q->kind, (long long)page,
	    (long long)q->per_page);
	/* Both filters were checked against fixed lists: nothing to escape. */
	if (q->status != NULL)
		buf_printf(&b, "&status=%s", q->status);
	if (q->format != NULL)
		buf_printf(&b, "&format=%s", q->format);
	return buf_steal(&b, NULL);
}

/* One item: the status document of the bundle's newest job. */
static json_t *
item_json(const struct call *c, const struct list_query *q, const struct job *job)
{
	const char *hex = json_string_value(json_object_get(job->params, "object_id"));
	const char *format = json_string_value(json_object_get(job->params, "format"));
	unsigned char id[20];
	char swhid[64];
	char *fetch;
	json_t *o;

	if (hex == NULL || !hex_decode(hex, id, sizeof id))
		return NULL;
	if (format == NULL)
		format = "tar.gz";
	swhid_format(q->swhid_kind, id, swhid);
	fetch = strcmp(format, "tar.gz") == 0
	    ? xasprintf("%s/vault/%s/%s", c->base_url, q->kind, hex)
	    : xasprintf("%s/vault/%s/%s?format=%s", c->base_url, q->kind, hex, format);
	o = jobjson_vault_status(job, swhid, q->kind, hex, format, fetch);
	free(fetch);
	return o;
}

/* GET /vault/{kind}: one page. */
void
routes_vault_list_work(struct call *c, struct pool_thread *t)
{
	struct list_query q;
	struct job **jobs = NULL;
	struct db *db;
	size_t n = 0;
	int64_t total = 0, pages;
	char *err = NULL, *first, *last, *next = NULL, *prev = NULL;
	json_t *items, *meta, *o;

	if (!parse_query(c, &q))
		return;
	if ((db = call_db(c, t)) == NULL) {
		list_query_free(&q);
		return;
	}
	if (jobstore_list_cooks(db, q.kind, q.format, q.state, q.per_page,
		(q.page - 1) * q.per_page, &jobs, &n, &total, &err) != 0) {
		call_db_failed(c, "list bundles", err);
		free(err);
		list_query_free(&q);
		return;
	}
	items = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *it = item_json(c, &q, jobs[i]);
		if (it != NULL)
			json_array_append_new(items, it);
		job_free(jobs[i]);
	}
	free(jobs);

	pages = total > 0 ? (total + q.per_page - 1) / q.per_page : 1;
	first = page_url(c, &q, 1);
	last = page_url(c, &q, pages);
	if (q.page < pages)
		next = page_url(c, &q, q.page + 1);
	if (q.page > 1)
		prev = page_url(c, &q, q.page - 1 < pages ? q.page - 1 : pages);
	meta = json_pack("{s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:I}", "first", first, "last", last, "next",
	    next ? json_string(next) : json_null(), "previous",
	    prev ? json_string(prev) : json_null(), "page", (json_int_t)q.page, "pages",
	    (json_int_t)pages, "per_page", (json_int_t)q.per_page, "total", (json_int_t)total);
	o = json_pack("{s:o,s:o}", "items", items, "meta", meta);
	resp_json(&c->resp, 200, o);
	json_decref(o);

	struct buf link;
	buf_init(&link);
	buf_printf(&link, "<%s>; rel=\"first\", <%s>; rel=\"last\"", first, last);
	if (next != NULL)
		buf_printf(&link, ", <%s>; rel=\"next\"", next);
	if (prev != NULL)
		buf_printf(&link, ", <%s>; rel=\"prev\"", prev);
	resp_header(&c->resp, "Link", link.data);
	buf_free(&link);
	free(first);
	free(last);
	free(next);
	free(prev);
	list_query_free(&q);
}
