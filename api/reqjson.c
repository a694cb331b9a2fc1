/* reqjson.c: Cachito's request documents (see reqjson.h): a request as the API shows it,
 * its state history and its packages and dependencies; the checks of request bodies are
 * in reqcheck.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/jobjson.h"
#include "api/reqjson.h"
#include "shared/util.h"

void
reqjson_time(double t, char *out)
{
	long long us = (long long)(t * 1e6 + 0.5); /* no libm: t is positive */
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	char date[24];

	if (us < 0)
		us = 0, secs = 0;
	gmtime_r(&secs, &tm);
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%06lld", date, us % 1000000);
}

/* Python's repr of a str. */
/* A time, or null when unset. */
static json_t *
time_json(double t)
{
	char iso[32];

	if (t <= 0)
		return json_null();
	reqjson_time(t, iso);
	return json_string(iso);
}

/* A history entry's "updated", whatever form shared/requests.c gives it in. */
static json_t *
history_entry(const json_t *e)
{
	json_t *o = json_object(), *u = json_object_get(e, "updated");

	json_object_set(o, "state", json_object_get(e, "state"));
	json_object_set(o, "state_reason", json_object_get(e, "state_reason"));
	if (json_is_number(u))
		json_object_set_new(o, "updated", time_json(json_number_value(u)));
	else
		json_object_set(o, "updated", u != NULL ? u : json_null());
	return o;
}

/* The key that identifies a dependency in the deduplicated union. */
static char *
dep_key(const json_t *d)
{
	return xasprintf("%s\n%s\n%s", json_string_value(json_object_get(d, "type")),
	    json_string_value(json_object_get(d, "name")),
	    json_string_value(json_object_get(d, "version")));
}

static int
cmp_dep(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	static const char *const keys[] = {"type", "name", "version"};

	for (size_t i = 0; i < BV_NELEM(keys); i++) {
		const char *s = json_string_value(json_object_get(x, keys[i]));
		const char *t = json_string_value(json_object_get(y, keys[i]));
		int c = strcmp(s != NULL ? s : "", t != NULL ? t : "");

		if (c != 0)
			return c;
	}
	return 0;
}

/* The packages with "replaces" defaulted, and the union of their dependencies (dev only
 * when dev everywhere), sorted by type, name, version. */
static void
packages_json(const json_t *data, json_t **packages, json_t **deps)
{
	json_t *pkgs = json_object_get(data, "packages"), *union_ = json_object(), *p, *d;
	json_t **all = NULL;
	const char *key;
	size_t i, j, n = 0;

	*packages = json_array();
	*deps = json_array();
	json_array_foreach(pkgs, i, p)
	{
		json_t *copy = json_deep_copy(p);
		json_t *pd = json_object_get(copy, "dependencies");

		if (!json_is_array(pd)) {
			pd = json_array();
			json_object_set_new(copy, "dependencies", pd);
		}
		json_array_foreach(pd, j, d)
		{
			char *k = dep_key(d);
			json_t *prev = json_object_get(union_, k);

			if (json_object_get(d, "replaces") == NULL)
				json_object_set_new(d, "replaces", json_null());
			if (prev == NULL) {
				json_object_set_new(union_, k, json_deep_copy(d));
			} else if (json_is_true(json_object_get(prev, "dev")) &&
			    !json_is_true(json_object_get(d, "dev"))) {
				json_object_set_new(prev, "dev", json_false());
			}
			free(k);
		}
		json_array_append_new(*packages, copy);
	}
	all = xcalloc(json_object_size(union_) + 1, sizeof *all);
	json_object_foreach(union_, key, d) all[n++] = d;
	qsort(all, n, sizeof *all, cmp_dep);
	for (i = 0; i < n; i++)
		json_array_append(*deps, all[i]);
	free(all);
	json_decref(union_);
}

json_t *
reqjson_request(const struct request *r, const json_t *history, const char *base_url, bool verbose)
{
	json_t *o = json_object(), *env = json_object(), *v;
	const char *name;
	bool complete = strcmp(r->state, REQUEST_COMPLETE) == 0;

	json_object_set_new(o, "id", json_integer(r->id));
	json_object_set_new(o, "created",
	    r->created_text[0] != '\0' ? json_string(r->created_text) : time_json(r->created));
	json_object_set_new(o, "repo", jobjson_str_or_null(r->repo));
	json_object_set_new(o, "ref", json_string(r->ref));
	json_object_set_new(o, "pkg_managers",
	    r->pkg_managers != NULL ? json_incref(r->pkg_managers) : json_array());
	json_object_set_new(o, "user", jobjson_str_or_null(r->user));
	/* name -> value here; the kinds are at /environment-variables. */
	json_object_foreach(r->environment_variables, name, v)
	{
		json_t *value = json_object_get(v, "value");

		json_object_set(env, name, value != NULL ? value : json_null());
	}
	json_object_set_new(o, "environment_variables", env);
	json_object_set_new(o, "flags", r->flags != NULL ? json_incref(r->flags) : json_array());
	json_object_set_new(o, "submitted_by", jobjson_str_or_null(r->submitted_by));
	if (verbose) {
		json_t *states = json_array(), *e, *pkgs, *deps;
		size_t i;

		json_object_set_new(o, "configuration_files",
		    json_sprintf(
			"%s/api/v1/requests/%lld/configuration-files", base_url, (long long)r->id));
		json_object_set_new(o, "content_manifest",
		    json_sprintf(
			"%s/api/v1/requests/%lld/content-manifest", base_url, (long long)r->id));
		json_object_set_new(o, "environment_variables_info",
		    json_sprintf("%s/api/v1/requests/%lld/environment-variables", base_url,
			(long long)r->id));
		json_array_foreach(history, i, e) json_array_append_new(states, history_entry(e));
		json_object_set_new(o, "state_history", states);
		packages_json(complete ? r->packages_data : NULL, &pkgs, &deps);
		json_object_set_new(o, "packages", pkgs);
		json_object_set_new(o, "dependencies", deps);
		json_object_set_new(o, "logs",
		    json_pack("{s:o}", "url",
			json_sprintf("%s/api/v1/requests/%lld/logs", base_url, (long long)r->id)));
	} else {
		json_object_set_new(o, "packages",
		    r->packages_count >= 0 ? json_integer(r->packages_count) : json_null());
		json_object_set_new(o, "dependencies",
		    r->dependencies_count >= 0 ? json_integer(r->dependencies_count) : json_null());
	}
	json_object_set_new(o, "state", json_string(r->state));
	json_object_set_new(o, "state_reason", jobjson_str_or_null(r->state_reason));
	json_object_set_new(o, "updated",
	    r->updated_text[0] != '\0' ? json_string(r->updated_text) : time_json(r->updated));
	if (r->error_origin != NULL) {
		json_object_set_new(o, "error_origin", jobjson_str_or_null(r->error_origin));
		json_object_set_new(o, "error_type", jobjson_str_or_null(r->error_type));
	}
	return o;
}
