/* cfpkg.c: the CF v3 packages table (see cfpkg.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/cfpkg.h"
#include "shared/jobstore.h"
#include "shared/util.h"

#define COLS                                                                                       \
	"guid::text, app_guid, type, state, data::text, error, encode(sha256, 'hex'),"             \
	" encode(sha1, 'hex'), size, coalesce(job_id, 0), metadata::text,"                         \
	" extract(epoch FROM created_at), extract(epoch FROM updated_at)"

void
cf_package_clear(struct cf_package *p)
{
	free(p->app_guid);
	free(p->error);
	json_decref(p->data);
	json_decref(p->metadata);
	memset(p, 0, sizeof *p);
}

void
cf_packages_free(struct cf_package *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cf_package_clear(&p[i]);
	free(p);
}

/* One row of COLS. */
static void
row(PGresult *res, int i, struct cf_package *p)
{
	memset(p, 0, sizeof *p);
	snprintf(p->guid, sizeof p->guid, "%s", PQgetvalue(res, i, 0));
	p->app_guid = xstrdup(PQgetvalue(res, i, 1));
	snprintf(p->type, sizeof p->type, "%s", PQgetvalue(res, i, 2));
	snprintf(p->state, sizeof p->state, "%s", PQgetvalue(res, i, 3));
	p->data = json_loads(PQgetvalue(res, i, 4), 0, NULL);
	if (p->data == NULL)
		p->data = json_object();
	if (!PQgetisnull(res, i, 5))
		p->error = xstrdup(PQgetvalue(res, i, 5));
	p->has_blob = !PQgetisnull(res, i, 6) && hex_decode(PQgetvalue(res, i, 6), p->sha256, 32) &&
	    hex_decode(PQgetvalue(res, i, 7), p->sha1, 20) &&
	    parse_int64(PQgetvalue(res, i, 8), &p->size);
	if (!parse_int64(PQgetvalue(res, i, 9), &p->job_id))
		p->job_id = 0;
	p->metadata = json_loads(PQgetvalue(res, i, 10), 0, NULL);
	if (p->metadata == NULL)
		p->metadata = json_pack("{s:{}, s:{}}", "labels", "annotations");
	p->created_at = strtod(PQgetvalue(res, i, 11), NULL);
	p->updated_at = strtod(PQgetvalue(res, i, 12), NULL);
}

/* At most one row of COLS: 1, 0 or -1. */
static int
one(PGresult *res, struct cf_package *out)
{
	int rc;

	if (res == NULL)
		return -1;
	rc = PQntuples(res) > 0;
	if (rc)
		row(res, 0, out);
	PQclear(res);
	return rc;
}

int
cfpkg_create(struct db *db, const char *guid, const char *app_guid, const char *type,
    const char *state, const json_t *data, const json_t *metadata, struct cf_package *out,
    char **errstr)
{
	char *d = json_dumps(data, JSON_COMPACT), *m = json_dumps(metadata, JSON_COMPACT);
	const char *p[] = {guid, app_guid, type, state, d, m};
	int rc = one(db_exec(db,
			 "INSERT INTO cf_packages (guid, app_guid, type, state, data, metadata)"
			 " VALUES ($1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb) RETURNING " COLS,
			 6, p, false, errstr),
	    out);

	free(d);
	free(m);
	if (rc == 0) {
		*errstr = xstrdup("the package was not inserted");
		return -1;
	}
	return rc < 0 ? -1 : 0;
}

int
cfpkg_copy(struct db *db, const char *src, const char *guid, const char *app_guid,
    struct cf_package *out, char *src_state, char **errstr)
{
	const char *p[] = {src, guid, app_guid};
	const char *q[] = {src};
	PGresult *res;
	int rc = one(db_exec(db,
			 "INSERT INTO cf_packages (guid, app_guid, type, state, data, sha256, sha1,"
			 " size, metadata)"
			 " SELECT $2::uuid, $3, type, 'READY', data, sha256, sha1, size,"
			 " '{\"labels\": {}, \"annotations\": {}}'"
			 " FROM cf_packages WHERE guid = $1::uuid AND state = 'READY'"
			 " RETURNING " COLS,
			 3, p, false, errstr),
	    out);

	src_state[0] = '\0';
	if (rc != 0)
		return rc;
	res =
	    db_exec(db, "SELECT state FROM cf_packages WHERE guid = $1::uuid", 1, q, false, errstr);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0)
		snprintf(src_state, 24, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

int
cfpkg_get(struct db *db, const char *guid, struct cf_package *out, char **errstr)
{
	const char *p[] = {guid};
	return one(db_exec(db, "SELECT " COLS " FROM cf_packages WHERE guid = $1::uuid", 1, p,
		       false, errstr),
	    out);
}

/* A filter as a text[] literal (NULL: none). */
static char *
text_array(const json_t *list)
{
	struct buf b;
	size_t i;
	json_t *v;

	if (list == NULL)
		return NULL;
	buf_init(&b);
	db_array_begin(&b);
	json_array_foreach(list, i, v) db_array_text(&b, json_string_value(v));
	db_array_end(&b);
	return buf_steal(&b, NULL);
}

int
cfpkg_list(struct db *db, const struct cfpkg_filter *f, int64_t page, int64_t per_page,
    struct cf_package **out, size_t *n, int64_t *total, char **errstr)
{
	char *g = text_array(f->guids), *a = text_array(f->app_guids), *s = text_array(f->states),
	     *t = text_array(f->types), lim[24], off[24];
	const char *p[] = {g, a, s, t, lim, off};
	PGresult *res;
	int rc = -1;

	*out = NULL;
	*n = 0;
	*total = 0;
	snprintf(lim, sizeof lim, "%lld", (long long)per_page);
	snprintf(off, sizeof off, "%lld", (long long)((page - 1) * per_page));
	/* guids compared as text: a malformed one matches nothing rather than failing. */
	res = db_exec(db,
	    "SELECT " COLS ", count(*) OVER () FROM cf_packages"
	    " WHERE ($1::text[] IS NULL OR guid::text = ANY($1::text[]))"
	    " AND ($2::text[] IS NULL OR app_guid = ANY($2::text[]))"
	    " AND ($3::text[] IS NULL OR state = ANY($3::text[]))"
	    " AND ($4::text[] IS NULL OR type = ANY($4::text[]))"
	    " ORDER BY created_at, guid LIMIT $5 OFFSET $6",
	    6, p, false, errstr);
	if (res == NULL)
		goto out;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n ? *n : 1, sizeof **out);
	for (size_t i = 0; i < *n; i++)
		row(res, (int)i, &(*out)[i]);
	if (*n > 0)
		if (!parse_int64(PQgetvalue(res, 0, 13), total))
			*total = 0;
	PQclear(res);
	if (*n == 0 && page > 1) {
		/* Past the last page: the total still counts. */
		res = db_exec(db,
		    "SELECT count(*) FROM cf_packages"
		    " WHERE ($1::text[] IS NULL OR guid::text = ANY($1::text[]))"
		    " AND ($2::text[] IS NULL OR app_guid = ANY($2::text[]))"
		    " AND ($3::text[] IS NULL OR state = ANY($3::text[]))"
		    " AND ($4::text[] IS NULL OR type = ANY($4::text[]))",
		    4, p, false, errstr);
		if (res == NULL)
			goto out;
		if (!parse_int64(PQgetvalue(res, 0, 0), total))
			*total = 0;
		PQclear(res);
	}
	rc = 0;
out:
	free(g);
	free(a);
	free(s);
	free(t);
	return rc;
}

int
cfpkg_start_upload(
    struct db *db, const char *guid, json_t *params, int64_t *job_id, char *state, char **errstr)
{
	const char *p[] = {guid};
	struct job *job = NULL;
	bool created = false;
	char ids[24], *key;
	PGresult *res;
	int rc = -1;

	state[0] = '\0';
	if (db_begin(db, errstr) != 0)
		return -1;
	res = db_exec(db, "SELECT state FROM cf_packages WHERE guid = $1::uuid FOR UPDATE", 1, p,
	    false, errstr);
	if (res == NULL)
		goto out;
	if (PQntuples(res) > 0)
		snprintf(state, 24, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (strcmp(state, "AWAITING_UPLOAD") != 0) {
		rc = 0;
		goto out;
	}
	json_object_set_new(params, "package_guid", json_string(guid));
	key = xasprintf("package_upload:%s", guid);
	rc = jobstore_create(db, "package_upload", key, params, &job, &created, errstr);
	free(key);
	if (rc != 0)
		goto out;
	*job_id = job->id;
	snprintf(ids, sizeof ids, "%lld", (long long)job->id);
	const char *q[] = {guid, ids};
	rc = db_run(db,
	    "UPDATE cf_packages SET state = 'PROCESSING_UPLOAD', job_id = $2, updated_at = now()"
	    " WHERE guid = $1::uuid",
	    2, q, errstr);
	if (rc == 0 && (rc = db_commit(db, errstr)) == 0) {
		job_free(job);
		return 1;
	}
	rc = -1;
out:
	job_free(job);
	db_rollback(db);
	return rc;
}

int
cfpkg_delete(struct db *db, const char *guid, char **errstr)
{
	const char *p[] = {guid};
	PGresult *res =
	    db_exec(db, "DELETE FROM cf_packages WHERE guid = $1::uuid", 1, p, false, errstr);
	int n;

	if (res == NULL)
		return -1;
	n = atoi(PQcmdTuples(res));
	PQclear(res);
	return n > 0;
}
