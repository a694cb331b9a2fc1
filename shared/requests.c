/* requests.c: the Requests tables (db/migrations/0005_requests.sql). Every function is one
 * statement or one short transaction; JSON travels as jsonb text, timestamps come back both
 * as epoch seconds and in Cachito's text form (UTC, no zone, microseconds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "shared/requests.h"

/* Cachito's timestamp form of a timestamptz column c. */
#define CTIME(c) "to_char((" c ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"

/* The columns request_from_row reads, in order, over "requests r"; REQ_COLUMNS_LIGHT
 * leaves out the packages data (megabytes for big lockfiles) that only the verbose form
 * shows. */
#define REQ_COLUMNS_HEAD                                                                                 \
	"r.id, coalesce(r.job_id, 0), r.repo, r.ref, array_to_json(r.pkg_managers)::text,"               \
	" r.packages::text, array_to_json(r.flags)::text, r.dependency_replacements::text,"              \
	" r.\"user\", r.submitted_by, r.state, r.state_reason,"                                          \
	" extract(epoch from r.created), extract(epoch from r.updated), " CTIME("r.created") ", " CTIME( \
	    "r.updated") ","                                                                             \
			 " coalesce(r.packages_count, -1), coalesce(r.dependencies_count, -1),"          \
			 " r.error_origin, r.error_type, r.environment_variables::text,"
#define REQ_COLUMNS_TAIL " encode(r.source_dir, 'hex'), encode(b.sha256, 'hex'), b.size"
#define REQ_COLUMNS REQ_COLUMNS_HEAD " r.packages_data::text," REQ_COLUMNS_TAIL
#define REQ_COLUMNS_LIGHT REQ_COLUMNS_HEAD " NULL," REQ_COLUMNS_TAIL
#define REQ_FROM " FROM requests r LEFT JOIN bundles b ON b.job_id = r.job_id "

void
request_free(struct request *r)
{
	if (r == NULL)
		return;
	free(r->repo);
	json_decref(r->pkg_managers);
	json_decref(r->packages);
	json_decref(r->flags);
	json_decref(r->dependency_replacements);
	free(r->user);
	free(r->submitted_by);
	free(r->state);
	free(r->state_reason);
	free(r->error_origin);
	free(r->error_type);
	json_decref(r->environment_variables);
	json_decref(r->packages_data);
	free(r);
}

/* A column as a new string, NULL for SQL NULL. */
static char *
col_str(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

/* A jsonb column parsed, or fallback (a new empty array or object) when NULL or bad. */
static json_t *
col_json(const PGresult *res, int row, int col, bool array)
{
	json_t *v =
	    PQgetisnull(res, row, col) ? NULL : json_loads(PQgetvalue(res, row, col), 0, NULL);
	if (v == NULL)
		v = array ? json_array() : json_object();
	return v;
}

/* An int64 column (or def when unparsable). */
static int64_t
col_int(const PGresult *res, int row, int col, int64_t def)
{
	int64_t v;
	return parse_int64(PQgetvalue(res, row, col), &v) ? v : def;
}

/* A request from one row of REQ_COLUMNS. */
static struct request *
request_from_row(const PGresult *res, int row)
{
	struct request *r = xcalloc(1, sizeof *r);

	r->id = col_int(res, row, 0, 0);
	r->job_id = col_int(res, row, 1, 0);
	r->repo = col_str(res, row, 2);
	snprintf(r->ref, sizeof r->ref, "%s", PQgetvalue(res, row, 3));
	r->pkg_managers = col_json(res, row, 4, true);
	r->packages = col_json(res, row, 5, false);
	r->flags = col_json(res, row, 6, true);
	r->dependency_replacements = col_json(res, row, 7, true);
	r->user = col_str(res, row, 8);
	r->submitted_by = col_str(res, row, 9);
	r->state = col_str(res, row, 10);
	r->state_reason = col_str(res, row, 11);
	r->created = atof(PQgetvalue(res, row, 12));
	r->updated = atof(PQgetvalue(res, row, 13));
	snprintf(r->created_text, sizeof r->created_text, "%s", PQgetvalue(res, row, 14));
	snprintf(r->updated_text, sizeof r->updated_text, "%s", PQgetvalue(res, row, 15));
	r->packages_count = col_int(res, row, 16, -1);
	r->dependencies_count = col_int(res, row, 17, -1);
	r->error_origin = col_str(res, row, 18);
	r->error_type = col_str(res, row, 19);
	r->environment_variables = col_json(res, row, 20, false);
	r->packages_data =
	    PQgetisnull(res, row, 21) ? NULL : json_loads(PQgetvalue(res, row, 21), 0, NULL);
	if (!PQgetisnull(res, row, 22) && hex_decode(PQgetvalue(res, row, 22), r->source_dir, 20))
		r->has_source = true;
	if (!PQgetisnull(res, row, 23)) {
		r->has_bundle = true;
		snprintf(r->bundle_sha256, sizeof r->bundle_sha256, "%s", PQgetvalue(res, row, 23));
		r->bundle_size = col_int(res, row, 24, 0);
	}
	return r;
}

/* One request by a WHERE clause with one parameter: 1, 0 or -1. */
static int
get_one(struct db *db, const char *where, const char *param, struct request **out, char **errstr)
{
	char *sql = xasprintf("SELECT " REQ_COLUMNS REQ_FROM "WHERE %s", where);
	const char *p[] = {param};
	PGresult *res = db_exec(db, sql, 1, p, false, errstr);
	int rc;

	free(sql);
	*out = NULL;
	if (res == NULL)
		return -1;
	rc = PQntuples(res) > 0;
	if (rc)
		*out = request_from_row(res, 0);
	PQclear(res);
	return rc;
}

int
requests_get(struct db *db, int64_t id, struct request **out, char **errstr)
{
	char ids[24];
	snprintf(ids, sizeof ids, "%lld", (long long)id);
	return get_one(db, "r.id = $1", ids, out, errstr);
}

int
requests_get_by_job(struct db *db, int64_t job_id, struct request **out, char **errstr)
{
	char ids[24];
	snprintf(ids, sizeof ids, "%lld", (long long)job_id);
	return get_one(db, "r.job_id = $1", ids, out, errstr);
}

/* A JSON member as compact text, or def when absent. Caller frees. */
static char *
member_text(const json_t *o, const char *key, const char *def)
{
	json_t *v = json_object_get(o, key);
	return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : xstrdup(def);
}

/* The request row and its job, one transaction; the job's params name the request. */
int
requests_create(struct db *db, const json_t *fields, const char *user, const char *submitted_by,
    struct request **out, char **errstr)
{
	char *pms = member_text(fields, "pkg_managers", "[]");
	char *pkgs = member_text(fields, "packages", "{}");
	char *flags = member_text(fields, "flags", "[]");
	char *deps = member_text(fields, "dependency_replacements", "[]");
	const char *repo = json_string_value(json_object_get(fields, "repo"));
	const char *ref = json_string_value(json_object_get(fields, "ref"));
	PGresult *res = NULL;
	int64_t id = 0;
	int rc = -1;

	*out = NULL;
	if (repo == NULL || ref == NULL) {
		*errstr = xstrdup("repo and ref are required");
		goto out;
	}
	if (db_begin(db, errstr) != 0)
		goto out;
	res = db_exec(db, "INSERT INTO jobs (kind, params) VALUES ('request', '{}') RETURNING id",
	    0, NULL, false, errstr);
	if (res == NULL)
		goto rollback;
	char job[24];
	snprintf(job, sizeof job, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	const char *p[] = {job, repo, ref, pms, pkgs, flags, deps, user, submitted_by};
	res = db_exec(db,
	    "INSERT INTO requests (job_id, repo, ref, pkg_managers, packages, flags,"
	    " dependency_replacements, \"user\", submitted_by)"
	    " SELECT $1, $2, $3, ARRAY(SELECT jsonb_array_elements_text($4::jsonb)), $5::jsonb,"
	    " ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7::jsonb, $8, $9"
	    " RETURNING id",
	    9, p, false, errstr);
	if (res == NULL)
		goto rollback;
	id = col_int(res, 0, 0, 0);
	char ids[24];
	snprintf(ids, sizeof ids, "%lld", (long long)id);
	PQclear(res);
	res = NULL;
	const char *q[] = {ids, job};
	if (db_run(db,
		"UPDATE jobs SET params = jsonb_build_object('request_id', $1::bigint) WHERE id = $2",
		2, q, errstr) != 0 ||
	    db_run(db,
		"INSERT INTO request_states (request_id, state, state_reason)"
		" SELECT id, state, state_reason FROM requests WHERE id = $1",
		1, q, errstr) != 0)
		goto rollback;
	if (db_commit(db, errstr) != 0)
		goto out;
	rc = requests_get(db, id, out, errstr) == 1 ? 0 : -1;
	if (rc != 0 && *errstr == NULL)
		*errstr = xstrdup("the new request vanished");
	goto out;
rollback:
	db_rollback(db);
out:
	free(pms), free(pkgs), free(flags), free(deps);
	return rc;
}

int
requests_history(struct db *db, int64_t id, json_t **history, char **errstr)
{
	char ids[24];
	const char *p[] = {ids};
	PGresult *res;

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	res = db_exec(db,
	    "SELECT state, state_reason, " CTIME(
		"updated") " FROM request_states"
			   " WHERE request_id = $1 ORDER BY id DESC",
	    1, p, false, errstr);
	if (res == NULL)
		return -1;
	*history = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(*history,
		    json_pack("{s:s, s:s, s:s}", "state", PQgetvalue(res, i, 0), "state_reason",
			PQgetvalue(res, i, 1), "updated", PQgetvalue(res, i, 2)));
	PQclear(res);
	return 0;
}

/* Appends " AND <before>$<n><after>" with value as the next parameter. */
static void
add_cond(struct buf *where, const char **params, int *n, const char *before, const char *after,
    const char *value)
{
	params[*n] = value;
	(*n)++;
	buf_printf(where, " AND %s$%d%s", before, *n, after);
}

int
requests_list(struct db *db, const struct request_filter *f, int64_t limit, int64_t offset,
    struct request ***out, size_t *n, int64_t *total, char **errstr)
{
	struct buf where;
	const char *params[10];
	int np = 0;
	char from[32], to[32], lim[24], off[24];
	char *pms = NULL, *sql;
	PGresult *res;
	int rc = -1;

	*out = NULL;
	*n = 0;
	*total = 0;
	buf_init(&where);
	buf_adds(&where, "WHERE true");
	if (f->state != NULL)
		add_cond(&where, params, &np, "r.state = ", "", f->state);
	if (f->repo != NULL)
		add_cond(&where, params, &np, "r.repo = ", "", f->repo);
	if (f->ref != NULL)
		add_cond(&where, params, &np, "r.ref = ", "", f->ref);
	if (f->pkg_managers != NULL && json_array_size(f->pkg_managers) > 0) {
		pms = json_dumps(f->pkg_managers, JSON_COMPACT);
		add_cond(&where, params, &np,
		    "r.pkg_managers @> ARRAY(SELECT jsonb_array_elements_text(", "::jsonb))", pms);
	}
	if (f->error_origin != NULL)
		add_cond(&where, params, &np, "r.error_origin = ", "", f->error_origin);
	if (f->error_type != NULL)
		add_cond(&where, params, &np, "r.error_type = ", "", f->error_type);
	if (f->created_from >= 0) {
		snprintf(from, sizeof from, "%.6f", f->created_from);
		add_cond(
		    &where, params, &np, "r.created >= to_timestamp(", "::double precision)", from);
	}
	if (f->created_to >= 0) {
		snprintf(to, sizeof to, "%.6f", f->created_to);
		add_cond(
		    &where, params, &np, "r.created <= to_timestamp(", "::double precision)", to);
	}
	sql = xasprintf("SELECT count(*) FROM requests r %s", where.data);
	res = db_exec(db, sql, np, params, false, errstr);
	free(sql);
	if (res == NULL)
		goto out;
	*total = col_int(res, 0, 0, 0);
	PQclear(res);

	snprintf(lim, sizeof lim, "%lld", (long long)limit);
	snprintf(off, sizeof off, "%lld", (long long)offset);
	params[np] = lim;
	params[np + 1] = off;
	sql = xasprintf("SELECT %s" REQ_FROM "%s ORDER BY r.id DESC LIMIT $%d OFFSET $%d",
	    f->with_packages ? REQ_COLUMNS : REQ_COLUMNS_LIGHT, where.data, np + 1, np + 2);
	res = db_exec(db, sql, np + 2, params, false, errstr);
	free(sql);
	if (res == NULL)
		goto out;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n ? *n : 1, sizeof **out);
	for (size_t i = 0; i < *n; i++)
		(*out)[i] = request_from_row(res, (int)i);
	PQclear(res);
	rc = 0;
out:
	free(pms);
	buf_free(&where);
	return rc;
}

/* The repo URL's end names repo_name: ".../org/repo", ".../org/repo.git", or after ':'
 * (scp-like and ssh URLs). Compared with right(), so '%' and '_' in names are literal. */
int
requests_latest(
    struct db *db, const char *repo_name, const char *ref, struct request **out, char **errstr)
{
	const char *p[] = {repo_name, ref};
	PGresult *res;
	int rc;

	*out = NULL;
	res = db_exec(db,
	    "SELECT " REQ_COLUMNS REQ_FROM "WHERE r.ref = $2 AND ("
	    "  right(r.repo, length($1) + 1) IN ('/' || $1, ':' || $1)"
	    "  OR right(r.repo, length($1) + 5) IN ('/' || $1 || '.git', ':' || $1 || '.git'))"
	    " ORDER BY r.id DESC LIMIT 1",
	    2, p, false, errstr);
	if (res == NULL)
		return -1;
	rc = PQntuples(res) > 0;
	if (rc)
		*out = request_from_row(res, 0);
	PQclear(res);
	return rc;
}

/* Cachito's table, keyed by the target state (research cachito.md §1.1). */
static bool
transition_allowed(const char *from, const char *to)
{
	if (strcmp(to, REQUEST_STALE) == 0)
		return strcmp(from, REQUEST_STALE) != 0;
	if (strcmp(to, REQUEST_IN_PROGRESS) == 0 || strcmp(to, REQUEST_COMPLETE) == 0 ||
	    strcmp(to, REQUEST_FAILED) == 0)
		return strcmp(from, REQUEST_IN_PROGRESS) == 0;
	return false;
}

/* Side effects of going stale, inside the PATCH's transaction: a job still queued or
 * running is ended (the worker's next report learns it is no longer its job), the
 * bundle expires and the log goes. A failed PATCH leaves the job alone: it is the
 * job's own worker reporting, and it ends the job itself with its reason. */
static int
finish_effects(struct db *db, const char *ids, const char *state, char **errstr)
{
	const char *p[] = {ids};

	if (strcmp(state, REQUEST_STALE) == 0) {
		if (db_run(db,
			"UPDATE jobs SET state = 'failed', error = 'The request is no longer in"
			" progress', finished_at = now(), updated_at = now()"
			" WHERE id = (SELECT job_id FROM requests WHERE id = $1)"
			" AND state IN ('queued', 'running')",
			1, p, errstr) != 0)
			return -1;
	}
	if (strcmp(state, REQUEST_STALE) != 0)
		return 0;
	if (db_run(db,
		"UPDATE jobs SET state = 'expired', updated_at = now()"
		" WHERE id = (SELECT job_id FROM requests WHERE id = $1) AND state = 'done'",
		1, p, errstr) != 0 ||
	    db_run(db,
		"DELETE FROM bundles WHERE job_id = (SELECT job_id FROM requests WHERE id = $1)", 1,
		p, errstr) != 0 ||
	    db_run(db, "DELETE FROM request_logs WHERE request_id = $1", 1, p, errstr) != 0)
		return -1;
	return 0;
}

/* The PATCH's body inside its transaction. 0, or -1 with *http_status. */
static int
patch_locked(struct db *db, const char *ids, const char *state, const char *state_reason,
    const json_t *env, int64_t packages_count, int64_t dependencies_count, const char *error_origin,
    const char *error_type, int *http_status, char **errstr)
{
	const char *p[] = {ids};
	PGresult *res =
	    db_exec(db, "SELECT state, state_reason FROM requests WHERE id = $1 FOR UPDATE", 1, p,
		false, errstr);
	char *cur = NULL, *cur_reason = NULL;
	int rc = -1;

	*http_status = 503;
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		*http_status = 404;
		*errstr = xstrdup("The requested resource was not found");
		return -1;
	}
	cur = xstrdup(PQgetvalue(res, 0, 0));
	cur_reason = xstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);

	/* The same state and reason again: a retried PATCH, nothing to add. */
	if (state != NULL && !(strcmp(state, cur) == 0 && strcmp(state_reason, cur_reason) == 0)) {
		if (!transition_allowed(cur, state)) {
			*http_status = 400;
			*errstr =
			    xasprintf("State transition is not allowed from %s to %s.", cur, state);
			goto out;
		}
		/* Complete means downloadable: the job's bundle must be there (the trigger
		 * completes a request when its job ends done with one). */
		if (strcmp(state, REQUEST_COMPLETE) == 0) {
			PGresult *b = db_exec(db,
			    "SELECT 1 FROM requests r JOIN jobs j ON j.id = r.job_id"
			    " JOIN bundles bu ON bu.job_id = j.id WHERE r.id = $1 AND j.state = 'done'",
			    1, p, false, errstr);
			if (b == NULL)
				goto out;
			bool ready = PQntuples(b) > 0;
			PQclear(b);
			if (!ready) {
				*http_status = 400;
				*errstr =
				    xstrdup("The request cannot be complete before its bundle is"
					    " stored");
				goto out;
			}
		}
		const char *q[] = {ids, state, state_reason};
		if (db_run(db,
			"UPDATE requests SET state = $2, state_reason = $3, updated = now()"
			" WHERE id = $1",
			3, q, errstr) != 0 ||
		    db_run(db,
			"INSERT INTO request_states (request_id, state, state_reason)"
			" VALUES ($1, $2, $3)",
			3, q, errstr) != 0 ||
		    finish_effects(db, ids, state, errstr) != 0)
			goto out;
	}
	if (env != NULL && json_object_size(env) > 0) {
		char *text = json_dumps(env, JSON_COMPACT);
		const char *q[] = {ids, text};
		int r = db_run(db,
		    "UPDATE requests SET environment_variables = environment_variables || $2::jsonb"
		    " WHERE id = $1",
		    2, q, errstr);
		free(text);
		if (r != 0)
			goto out;
	}
	if (packages_count >= 0 || dependencies_count >= 0) {
		char pc[24], dc[24];
		snprintf(pc, sizeof pc, "%lld", (long long)packages_count);
		snprintf(dc, sizeof dc, "%lld", (long long)dependencies_count);
		const char *q[] = {
		    ids, packages_count >= 0 ? pc : NULL, dependencies_count >= 0 ? dc : NULL};
		if (db_run(db,
			"UPDATE requests SET packages_count = coalesce($2::integer, packages_count),"
			" dependencies_count = coalesce($3::integer, dependencies_count) WHERE id = $1",
			3, q, errstr) != 0)
			goto out;
	}
	if (error_origin != NULL || error_type != NULL) {
		const char *q[] = {ids, error_origin, error_type};
		if (db_run(db,
			"UPDATE requests SET error_origin = coalesce($2, error_origin),"
			" error_type = coalesce($3, error_type) WHERE id = $1",
			3, q, errstr) != 0)
			goto out;
	}
	rc = 0;
out:
	free(cur);
	free(cur_reason);
	return rc;
}

int
requests_patch(struct db *db, int64_t id, const char *state, const char *state_reason,
    const json_t *env, int64_t packages_count, int64_t dependencies_count, const char *error_origin,
    const char *error_type, int *http_status, char **errstr)
{
	char ids[24];

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	if ((state == NULL) != (state_reason == NULL)) {
		*http_status = 400;
		*errstr =
		    xstrdup("The \"state_reason\" key is required when \"state\" is supplied");
		return -1;
	}
	*http_status = 503;
	if (db_begin(db, errstr) != 0)
		return -1;
	if (patch_locked(db, ids, state, state_reason, env, packages_count, dependencies_count,
		error_origin, error_type, http_status, errstr) != 0) {
		db_rollback(db);
		return -1;
	}
	if (db_commit(db, errstr) != 0)
		return -1;
	return 0;
}

/* Standard base64 (with or without padding and line breaks) into a new buffer; NULL when
 * malformed. */
static unsigned char *
b64_decode(const char *s, size_t *len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s), o = 0;
	unsigned char *out = xmalloc(n / 4 * 3 + 4);
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		const char *at;
		if (ch == '=' || ch == '\n' || ch == '\r')
			continue;
		if (ch == '\0' || (at = strchr(tab, ch)) == NULL) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (uint32_t)(at - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*len = o;
	return out;
}

int
requests_add_config_files(struct db *db, int64_t id, const json_t *files, char **errstr)
{
	char ids[24];
	size_t i;
	json_t *f;

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	json_array_foreach(files, i, f)
	{
		const char *path = json_string_value(json_object_get(f, "path"));
		const char *content = json_string_value(json_object_get(f, "content"));
		size_t len = 0;
		unsigned char *bytes;

		if (path == NULL || content == NULL ||
		    (bytes = b64_decode(content, &len)) == NULL) {
			*errstr = xstrdup("a configuration file needs a path and base64 content");
			return -1;
		}
		char *hex = xmalloc(2 * len + 1);
		hex_encode(bytes, len, hex);
		free(bytes);
		const char *p[] = {ids, path, hex};
		int rc = db_run(db,
		    "INSERT INTO request_config_files (request_id, path, content)"
		    " VALUES ($1, $2, decode($3, 'hex'))"
		    " ON CONFLICT (request_id, path) DO UPDATE SET content = EXCLUDED.content",
		    3, p, errstr);
		free(hex);
		if (rc != 0)
			return -1;
	}
	return 0;
}

int
requests_config_files(struct db *db, int64_t id, json_t **files, char **errstr)
{
	char ids[24];
	const char *p[] = {ids};
	PGresult *res;

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	res = db_exec(db,
	    "SELECT path, translate(encode(content, 'base64'), E'\\n', '')"
	    " FROM request_config_files WHERE request_id = $1 ORDER BY path",
	    1, p, false, errstr);
	if (res == NULL)
		return -1;
	*files = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(*files,
		    json_pack("{s:s, s:s, s:s}", "path", PQgetvalue(res, i, 0), "type", "base64",
			"content", PQgetvalue(res, i, 1)));
	PQclear(res);
	return 0;
}

int
requests_set_packages_data(struct db *db, int64_t id, const json_t *packages_data,
    int64_t packages_count, int64_t dependencies_count, char **errstr)
{
	char ids[24], pc[24], dc[24];
	char *text = json_dumps(packages_data, JSON_COMPACT);
	int rc;

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	snprintf(pc, sizeof pc, "%lld", (long long)packages_count);
	snprintf(dc, sizeof dc, "%lld", (long long)dependencies_count);
	const char *p[] = {ids, text, pc, dc};
	rc = db_run(db,
	    "UPDATE requests SET packages_data = $2::jsonb, packages_count = $3,"
	    " dependencies_count = $4 WHERE id = $1",
	    4, p, errstr);
	free(text);
	return rc;
}

int
requests_set_source(struct db *db, int64_t id, const unsigned char dir[20], char **errstr)
{
	char ids[24], hex[41];
	const char *p[] = {ids, hex};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	hex_encode(dir, 20, hex);
	return db_run(
	    db, "UPDATE requests SET source_dir = decode($2, 'hex') WHERE id = $1", 2, p, errstr);
}

/* A request's log keeps at most this many lines: the last one says it was cut. */
#define REQUEST_LOG_MAX_LINES 10000

int
requests_log(struct db *db, int64_t id, const char *line, char **errstr)
{
	char ids[24], max[16];
	const char *p[] = {ids, line, max};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	snprintf(max, sizeof max, "%d", REQUEST_LOG_MAX_LINES);
	/* The count stops at the cap, so it costs at most that many index entries. */
	return db_run(db,
	    "INSERT INTO request_logs (request_id, line)"
	    " SELECT $1, CASE WHEN c.n = $3::int - 1"
	    "  THEN 'The log of this request is cut here: it reached ' || $3 || ' lines'"
	    "  ELSE $2 END"
	    " FROM (SELECT count(*) AS n FROM (SELECT 1 FROM request_logs WHERE request_id = $1"
	    "  LIMIT $3::int) AS l) AS c WHERE c.n < $3::int",
	    3, p, errstr);
}

/* Each line prefixed with its time, as a log file would have it. */
int
requests_log_text(struct db *db, int64_t id, char **text, size_t *len, char **errstr)
{
	char ids[24];
	const char *p[] = {ids};
	PGresult *res;

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	res = db_exec(db,
	    "SELECT coalesce(string_agg(" CTIME(
		"at") " || ' ' || line || E'\\n', '' ORDER BY id),"
		      " '') FROM request_logs WHERE request_id = $1",
	    1, p, false, errstr);
	if (res == NULL)
		return -1;
	*len = (size_t)PQgetlength(res, 0, 0);
	*text = xmalloc(*len + 1);
	memcpy(*text, PQgetvalue(res, 0, 0), *len);
	(*text)[*len] = '\0';
	PQclear(res);
	return 0;
}

int
requests_expire(
    struct db *db, int64_t lifetime_s, int64_t lifetime_failed_s, int limit, int *n, char **errstr)
{
	char life[24], lifef[24], lim[16];
	const char *p[] = {life, lifef, lim};
	PGresult *res;

	*n = 0;
	snprintf(life, sizeof life, "%lld", (long long)lifetime_s);
	snprintf(lifef, sizeof lifef, "%lld", (long long)lifetime_failed_s);
	snprintf(lim, sizeof lim, "%d", limit);
	res = db_exec(db,
	    "SELECT id FROM requests WHERE"
	    " (state IN ('complete', 'in_progress')"
	    "  AND updated < now() - make_interval(secs => $1::double precision))"
	    " OR (state = 'failed' AND updated < now() - make_interval(secs => $2::double precision))"
	    " ORDER BY updated LIMIT $3",
	    3, p, false, errstr);
	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t id = col_int(res, i, 0, 0);
		int status;
		char *err = NULL;

		if (requests_patch(db, id, REQUEST_STALE, "The request has expired", NULL, -1, -1,
			NULL, NULL, &status, &err) != 0) {
			/* A state that moved meanwhile is not an error: the next run sees it. */
			if (status == 400 || status == 404) {
				free(err);
				continue;
			}
			PQclear(res);
			*errstr = err;
			return -1;
		}
		log_info("request %lld is stale: it expired", (long long)id);
		(*n)++;
	}
	PQclear(res);
	return 0;
}

int
artifacts_find(struct db *db, const char *kind, const char *name, const char *version,
    const char *integrity, unsigned char sha256[32], int64_t *size, char **errstr)
{
	const char *p[] = {kind, name, version, integrity};
	PGresult *res = db_exec(db,
	    "SELECT encode(sha256, 'hex'), size FROM artifacts"
	    " WHERE kind = $1 AND name = $2 AND version = $3 AND integrity = $4",
	    4, p, false, errstr);
	int rc;

	if (res == NULL)
		return -1;
	rc = PQntuples(res) > 0 && hex_decode(PQgetvalue(res, 0, 0), sha256, 32);
	if (rc)
		*size = col_int(res, 0, 1, 0);
	PQclear(res);
	return rc;
}

int
artifacts_put(struct db *db, const char *kind, const char *name, const char *version,
    const char *integrity, const unsigned char sha256[32], int64_t size, char **errstr)
{
	char hex[65], sz[24];
	const char *p[] = {kind, name, version, integrity, hex, sz};

	hex_encode(sha256, 32, hex);
	snprintf(sz, sizeof sz, "%lld", (long long)size);
	return db_run(db,
	    "INSERT INTO artifacts (kind, name, version, integrity, sha256, size)"
	    " VALUES ($1, $2, $3, $4, decode($5, 'hex'), $6)"
	    " ON CONFLICT (kind, name, version, integrity) DO NOTHING",
	    6, p, errstr);
}

/* The lock key: the artifact's identity hashed into the advisory lock space (a collision
 * only makes two different downloads wait for each other). */
#define ART_KEY "hashtextextended($1 || chr(31) || $2 || chr(31) || $3 || chr(31) || $4, 0)"

int
artifacts_lock(struct db *db, const char *kind, const char *name, const char *version,
    const char *integrity, char **errstr)
{
	const char *p[] = {kind, name, version, integrity != NULL ? integrity : ""};
	return db_run(db, "SELECT pg_advisory_lock(" ART_KEY ")", 4, p, errstr);
}

void
artifacts_unlock(
    struct db *db, const char *kind, const char *name, const char *version, const char *integrity)
{
	const char *p[] = {kind, name, version, integrity != NULL ? integrity : ""};
	char *err = NULL;

	if (db_run(db, "SELECT pg_advisory_unlock(" ART_KEY ")", 4, p, &err) != 0) {
		/* A lost connection released it anyway. */
		log_warn("cannot release an artifact lock: %s", err);
		free(err);
	}
}
