/* jobjson.c: jobs as JSON documents, and the check of a worker's PATCH body (see
 * jobjson.h). */
#include <stdio.h>
#include <string.h>

#include "api/call.h"
#include "api/jobjson.h"

/* A string or JSON null. */
json_t *
jobjson_str_or_null(const char *s)
{
	json_t *v;

	if (s == NULL)
		return json_null();
	v = json_string(s);
	/* Text from a worker is UTF-8 by contract; anything else must not break the reply. */
	return v != NULL ? v : json_string("(not valid UTF-8)");
}

/* A timestamp, or null for "never" (0). */
static json_t *
time_or_null(double t)
{
	char iso[32];

	if (t <= 0)
		return json_null();
	call_iso8601(t, iso);
	return json_string(iso);
}

/* {"size","sha256"} of a done cook job. */
static json_t *
bundle_json(const struct job *job)
{
	return json_pack(
	    "{s:I,s:s}", "size", (json_int_t)job->bundle_size, "sha256", job->bundle_sha256);
}

/* The internal job document. */
json_t *
jobjson_job(const struct job *job)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(job->id));
	json_object_set_new(o, "kind", jobjson_str_or_null(job->kind));
	json_object_set_new(o, "dedup_key", jobjson_str_or_null(job->dedup_key));
	json_object_set_new(o, "state", jobjson_str_or_null(job_state_name(job->state)));
	json_object_set_new(o, "progress_message", jobjson_str_or_null(job->progress_message));
	json_object_set_new(o, "error", jobjson_str_or_null(job->error));
	json_object_set_new(o, "attempts", json_integer(job->attempts));
	json_object_set_new(o, "worker", jobjson_str_or_null(job->worker));
	json_object_set_new(
	    o, "params", job->params != NULL ? json_incref(job->params) : json_object());
	json_object_set_new(
	    o, "result", job->result != NULL ? json_incref(job->result) : json_null());
	json_object_set_new(o, "created_at", time_or_null(job->created_at));
	json_object_set_new(o, "updated_at", time_or_null(job->updated_at));
	json_object_set_new(o, "started_at", time_or_null(job->started_at));
	json_object_set_new(o, "finished_at", time_or_null(job->finished_at));
	if (job->has_bundle)
		json_object_set_new(o, "bundle", bundle_json(job));
	return o;
}

/* The Vault status document. Like SWH, progress_message carries the failure reason once
 * a cook has failed. */
json_t *
jobjson_vault_status(const struct job *job, const char *swhid, const char *obj_type,
    const char *obj_hex, const char *format, const char *fetch_url)
{
	json_t *o = json_object();
	const char *vault = job_state_vault_name(job->state);
	const char *msg = job->progress_message;

	if (job->state == JOB_FAILED && job->error != NULL)
		msg = job->error;
	json_object_set_new(o, "id", json_integer(job->id));
	json_object_set_new(o, "status", jobjson_str_or_null(vault != NULL ? vault : "expired"));
	json_object_set_new(o, "progress_message", jobjson_str_or_null(msg));
	json_object_set_new(o, "swhid", json_string(swhid));
	json_object_set_new(o, "obj_type", json_string(obj_type));
	json_object_set_new(o, "obj_id", json_string(obj_hex));
	json_object_set_new(o, "format", json_string(format));
	json_object_set_new(o, "fetch_url", jobjson_str_or_null(fetch_url));
	json_object_set_new(o, "created_at", time_or_null(job->created_at));
	json_object_set_new(o, "updated_at", time_or_null(job->updated_at));
	json_object_set_new(o, "attempts", json_integer(job->attempts));
	if (job->state == JOB_DONE && job->has_bundle)
		json_object_set_new(o, "bundle", bundle_json(job));
	/* Files the bundle lacks (named in its manifest); absent when none were left out. */
	json_t *left = json_object_get(job->result, "left_out");
	if (job->state == JOB_DONE && json_is_integer(left) && json_integer_value(left) > 0)
		json_object_set_new(o, "left_out", json_integer(json_integer_value(left)));
	/* gitfast: commits fast-import rebuilds with another id; absent when none. */
	json_t *rewritten = json_object_get(job->result, "rewritten");
	if (job->state == JOB_DONE && json_is_integer(rewritten) &&
	    json_integer_value(rewritten) > 0)
		json_object_set_new(o, "rewritten", json_integer(json_integer_value(rewritten)));
	return o;
}

/* The load status document. The result's members are copied only when they have the
 * shape the worker gives them, so a stray result cannot break the document. */
json_t *
jobjson_load_status(const struct job *job)
{
	json_t *o = json_object();
	const char *vault = job_state_vault_name(job->state);
	const char *msg = job->progress_message;
	const char *snp = json_string_value(json_object_get(job->result, "snapshot"));
	json_t *v;

	if (job->state == JOB_FAILED && job->error != NULL)
		msg = job->error;
	json_object_set_new(o, "id", json_integer(job->id));
	json_object_set_new(
	    o, "url", jobjson_str_or_null(json_string_value(json_object_get(job->params, "url"))));
	json_object_set_new(
	    o, "ref", jobjson_str_or_null(json_string_value(json_object_get(job->params, "ref"))));
	json_object_set_new(o, "status", jobjson_str_or_null(vault != NULL ? vault : "expired"));
	json_object_set_new(o, "progress_message", jobjson_str_or_null(msg));
	json_object_set_new(o, "created_at", time_or_null(job->created_at));
	json_object_set_new(o, "finished_at", time_or_null(job->finished_at));
	if (job->state == JOB_DONE && snp != NULL && strlen(snp) == 40) {
		char swhid[64];

		snprintf(swhid, sizeof swhid, "swh:1:snp:%s", snp);
		json_object_set_new(o, "snapshot", json_string(snp));
		json_object_set_new(o, "swhid", json_string(swhid));
		if (json_is_object(v = json_object_get(job->result, "branches")))
			json_object_set(o, "branches", v);
		if (json_is_object(v = json_object_get(job->result, "stats")))
			json_object_set(o, "stats", v);
		/* Ref names the load could not keep, with why (the first few). */
		if (json_is_array(v = json_object_get(job->result, "skipped_refs")))
			json_object_set(o, "skipped_refs", v);
	}
	if (job->state == JOB_FAILED)
		json_object_set_new(
		    o, "error", jobjson_str_or_null(job->error != NULL ? job->error : "failed"));
	return o;
}

/* Keys a PATCH body may carry, with the JSON type each must have and, for strings, the
 * most bytes a worker may write (0: no limit of its own). */
static const struct {
	const char *key;
	json_type type;
	size_t max_len;
} patch_keys[] = {
    {"state", JSON_STRING, 0},
    {"worker", JSON_STRING, JOBJSON_MAX_WORKER},
    {"progress_message", JSON_STRING, JOBJSON_MAX_PROGRESS},
    {"error", JSON_STRING, JOBJSON_MAX_ERROR},
    {"result", JSON_OBJECT, 0},
};

/* Checks a PATCH body key by key; the first problem wins. */
char *
jobjson_patch_check(const json_t *body)
{
	const char *key;
	json_t *v, *state;
	size_t i;

	if (body == NULL || !json_is_object(body))
		return xstrdup("the body must be a JSON object");
	json_object_foreach((json_t *)body, key, v)
	{
		for (i = 0; i < BV_NELEM(patch_keys); i++)
			if (strcmp(patch_keys[i].key, key) == 0)
				break;
		if (i == BV_NELEM(patch_keys))
			return xasprintf(
			    "unknown key '%s'; keys: state, worker, progress_message, error, result",
			    call_echo(key));
		if (json_is_null(v))
			continue;
		if (json_typeof(v) != patch_keys[i].type)
			return xasprintf("%s must be %s", key,
			    patch_keys[i].type == JSON_OBJECT ? "an object" : "a string");
		/* Workers are trusted with the token, not with the database's size: each
		 * of these lands in a row and in every status poll. */
		if (patch_keys[i].max_len > 0 && json_string_length(v) > patch_keys[i].max_len)
			return xasprintf(
			    "%s is too long: at most %zu bytes", key, patch_keys[i].max_len);
	}
	state = json_object_get(body, "state");
	if (json_is_string(state) && job_state_parse(json_string_value(state)) == JOB_STATE_INVALID)
		return xasprintf(
		    "unknown state '%s'; states: queued, running, done, failed, expired",
		    call_echo(json_string_value(state)));
	return NULL;
}
