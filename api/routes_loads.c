/* routes_loads.c: loading a git repository into the archive: POST /loads makes a load job
 * (each POST fetches anew: no dedup), GET /loads/{id} shows it in the Vault's words. The
 * worker's side is worker/load.c; docs/api.md ("Loading from git") has the documents.
 *
 * The URL is checked here, before any job exists: only https, http, git and (when
 * load_allow_file is on) file URLs, never a user name, password, query or fragment in
 * them, since a stored URL shows in every status and log line. The worker checks them
 * again, and checks where the host's addresses lie (shared/netguard.c): resolving names
 * is the worker's business, not a request thread's. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/jobjson.h"
#include "api/routes.h"
#include "shared/jobstore.h"
#include "shared/kv.h"
#include "shared/loadurl.h"
#include "shared/log.h"

/* The longest ref accepted. */
#define LOAD_REF_MAX 255

/* Checks the url member. NULL when fine, else the reason for the 400. */
static const char *
url_problem(const struct config *cfg, const json_t *v)
{
	const char *auth;
	size_t auth_len;

	if (v == NULL || json_is_null(v))
		return "url is required: the repository's URL (" LOADURL_SCHEMES ")";
	if (!json_is_string(v))
		return "url must be a string";
	return loadurl_problem(
	    json_string_value(v), json_string_length(v), cfg->load_allow_file, &auth, &auth_len);
}

/* True when s is a name git accepts for a ref (git check-ref-format's rules, with one
 * level allowed: "main" means a branch or tag). */
static bool
ref_name_valid(const char *s, size_t len)
{
	if (len == 0 || s[0] == '/' || s[len - 1] == '/' || s[len - 1] == '.')
		return false;
	if (len >= 5 && strcmp(s + len - 5, ".lock") == 0)
		return false;
	if (len == 1 && s[0] == '@')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f || strchr(" ~^:?*[\\", ch) != NULL)
			return false;
		if (ch == '.' && i + 1 < len && s[i + 1] == '.')
			return false;
		if (ch == '/' && i + 1 < len && s[i + 1] == '/')
			return false;
		if (ch == '@' && i + 1 < len && s[i + 1] == '{')
			return false;
		/* no component starts with '.' or ends with ".lock" */
		if ((i == 0 || s[i - 1] == '/') && ch == '.')
			return false;
		if (ch == '/' && i >= 5 && strncmp(s + i - 5, ".lock", 5) == 0)
			return false;
	}
	return true;
}

/* Checks the ref member (absent or null: every branch and tag). */
static const char *
ref_problem(const json_t *v)
{
	const char *ref;
	size_t len;

	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v))
		return "ref must be a string";
	ref = json_string_value(v);
	len = json_string_length(v);
	if (len == 0)
		return "ref must not be empty";
	if (len > LOAD_REF_MAX)
		return "ref is too long: at most 255 bytes";
	if (memchr(ref, '\0', len) != NULL || !ref_name_valid(ref, len))
		return "ref is not a valid git ref name (no '..', spaces, control characters or "
		       "~^:?*[\\, not ending in '/', '.' or '.lock')";
	return NULL;
}

/* POST /loads: {"url": "...", "ref": "..."}; unknown keys are ignored. */
int
routes_loads_create_prepare(struct call *c)
{
	const char *why;

	if (c->json == NULL || !json_is_object(c->json)) {
		resp_error(&c->resp, 400, "the body must be a JSON object: {\"url\": \"...\"}");
		return -1;
	}
	if ((why = url_problem(c->cfg, json_object_get(c->json, "url"))) != NULL ||
	    (why = ref_problem(json_object_get(c->json, "ref"))) != NULL) {
		resp_error(&c->resp, 400, "%s", why);
		return -1;
	}
	return 0;
}

/* Creates the job and enqueues it: Postgres first, Redis second (the reconciler
 * re-enqueues what Redis missed), as routes_vault_cook_work does. */
void
routes_loads_create_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct kv *kv;
	struct job *job = NULL;
	const char *url = json_string_value(json_object_get(c->json, "url"));
	const char *ref = json_string_value(json_object_get(c->json, "ref"));
	json_t *params, *o;
	char *err = NULL, *location;
	bool created = false;

	if ((db = call_db(c, t)) == NULL)
		return;
	params = json_pack("{s:s, s:s?}", "url", url, "ref", ref); /* "s?": NULL -> null */
	if (jobstore_create(db, "load", NULL, params, &job, &created, &err) != 0) {
		json_decref(params);
		call_db_failed(c, "create job", err);
		free(err);
		return;
	}
	json_decref(params);
	log_info_id(c->logid, "job %lld: load %s%s%s", (long long)job->id, url,
	    ref != NULL ? " ref " : "", ref != NULL ? ref : "");
	if ((kv = call_kv(c, t)) != NULL && kv_enqueue(kv, job->id, &err) != 0) {
		log_warn_id(c->logid, "job %lld not enqueued (the reconciler will): %s",
		    (long long)job->id, err);
		free(err);
	}
	o = jobjson_load_status(job);
	resp_json(&c->resp, 202, o);
	json_decref(o);
	location = xasprintf("/loads/%lld", (long long)job->id);
	resp_header(&c->resp, "Location", location);
	free(location);
	job_free(job);
}

/* GET /loads/{id}: anything but a positive integer names no load. */
int
routes_loads_get_prepare(struct call *c)
{
	const char *s = router_param(&c->m, "id");

	if (!parse_int64(s, &c->job_id) || c->job_id <= 0) {
		resp_error(&c->resp, 404, "load %s not found", call_echo(s));
		return -1;
	}
	return 0;
}

/* The load's status; a job of another kind is not a load. */
void
routes_loads_get_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct job *job = NULL;
	char *err = NULL;
	json_t *o;
	int rc;

	if ((db = call_db(c, t)) == NULL)
		return;
	rc = jobstore_get(db, c->job_id, &job, &err);
	if (rc < 0) {
		call_db_failed(c, "get job", err);
		free(err);
		return;
	}
	if (rc == 0 || strcmp(job->kind, "load") != 0) {
		resp_error(&c->resp, 404, "load %lld not found", (long long)c->job_id);
		job_free(job);
		return;
	}
	o = jobjson_load_status(job);
	resp_json(&c->resp, 200, o);
	json_decref(o);
	job_free(job);
}
