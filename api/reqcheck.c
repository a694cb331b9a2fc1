/* reqcheck.c: the checks of request bodies (see reqjson.h): POST /requests, PATCH, and the
 * configuration files workers post. The order of the checks follows Cachito's: the
 * OpenAPI schema first (as Connexion runs jsonschema: the type, then each property in the
 * schema's order, then required keys, then unknown keys), then the model's own rules;
 * the messages are Cachito's, Python's repr included. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/reqjson.h"
#include "shared/util.h"

const char *const reqjson_pkg_managers[] = {
    "gomod", "npm", "pip", "git-submodule", "yarn", "rubygems", "generic"};
const size_t reqjson_npkg_managers = BV_NELEM(reqjson_pkg_managers);

/* The flags Cachito knows and keeps active (research cachito.md §4.6). */
static const char *const known_flags[] = {"gomod-vendor", "gomod-vendor-check", "force-gomod-tidy",
    "cgo-disable", "include-git-dir", "remove-unsafe-symlinks"};

/* The package managers "packages" may configure, with the keys of each entry. */
static const struct {
	const char *pm;
	const char *keys; /* sorted, as the message lists them */
} package_keys[] = {
    {"npm", "path"},
    {"pip", "path, requirements_build_files, requirements_files"},
    {"gomod", "path"},
    {"yarn", "path"},
    {"generic", "path"},
};

/* Package managers that may not process the same path (Cachito's default pair). */
static const char *const exclusive[][2] = {{"npm", "yarn"}};

/* Python's repr of a str. */
static void
repr_str(struct buf *b, const char *s, size_t len)
{
	char q = memchr(s, '\'', len) != NULL && memchr(s, '"', len) == NULL ? '"' : '\'';

	buf_addc(b, q);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\\' || ch == (unsigned char)q)
			buf_printf(b, "\\%c", ch);
		else if (ch == '\n')
			buf_adds(b, "\\n");
		else if (ch == '\r')
			buf_adds(b, "\\r");
		else if (ch == '\t')
			buf_adds(b, "\\t");
		else if (ch < 0x20 || ch == 0x7f)
			buf_printf(b, "\\x%02x", ch);
		else
			buf_addc(b, (char)ch);
	}
	buf_addc(b, q);
}

/* Python's repr of a float: the shortest text that reads back the same. */
static void
repr_real(struct buf *b, double d)
{
	char s[40];

	if (isinf(d)) {
		buf_adds(b, d > 0 ? "inf" : "-inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(s, sizeof s, "%.*g", prec, d);
		if (strtod(s, NULL) == d)
			break;
	}
	buf_adds(b, s);
	if (strpbrk(s, ".en") == NULL)
		buf_adds(b, ".0");
}

static void
repr(struct buf *b, const json_t *v)
{
	const char *key;
	json_t *x;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING:
		repr_str(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		buf_printf(b, "%lld", (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		repr_real(b, json_real_value(v));
		break;
	case JSON_TRUE:
		buf_adds(b, "True");
		break;
	case JSON_FALSE:
		buf_adds(b, "False");
		break;
	case JSON_NULL:
		buf_adds(b, "None");
		break;
	case JSON_ARRAY:
		buf_addc(b, '[');
		json_array_foreach(v, i, x)
		{
			if (i > 0)
				buf_adds(b, ", ");
			repr(b, x);
		}
		buf_addc(b, ']');
		break;
	case JSON_OBJECT:
		buf_addc(b, '{');
		i = 0;
		json_object_foreach((json_t *)v, key, x)
		{
			if (i++ > 0)
				buf_adds(b, ", ");
			repr_str(b, key, strlen(key));
			buf_adds(b, ": ");
			repr(b, x);
		}
		buf_addc(b, '}');
		break;
	}
}

char *
reqjson_repr(const json_t *v)
{
	struct buf b;

	buf_init(&b);
	if (v == NULL)
		buf_adds(&b, "None");
	else
		repr(&b, v);
	return buf_steal(&b, NULL);
}

/* jsonschema's "<repr> is not of type '<type>'". */
static char *
not_type(const json_t *v, const char *type)
{
	char *r = reqjson_repr(v);
	char *msg = xasprintf("%s is not of type '%s'", r, type);

	free(r);
	return msg;
}

/* jsonschema's "<repr> is not one of ['a', 'b']". */
static char *
not_one_of(const json_t *v, const char *const *names, size_t n)
{
	struct buf b;
	char *r = reqjson_repr(v);

	buf_init(&b);
	buf_printf(&b, "%s is not one of [", r);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s'%s'", i > 0 ? ", " : "", names[i]);
	buf_addc(&b, ']');
	free(r);
	return buf_steal(&b, NULL);
}

/* True when s is one of names. */
static bool
in_list(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

/* An array of strings, each checked against names when names is non-NULL. */
static char *
check_str_array(const json_t *v, const char *const *names, size_t n)
{
	json_t *x;
	size_t i;

	if (!json_is_array(v))
		return not_type(v, "array");
	json_array_foreach(v, i, x)
	{
		if (!json_is_string(x))
			return not_type(x, "string");
		if (names != NULL && !in_list(json_string_value(x), names, n))
			return not_one_of(x, names, n);
	}
	return NULL;
}

/* The "unexpected" keys of an object, as jsonschema's additionalProperties says them;
 * NULL when every key is in allowed. */
static char *
extra_keys(const json_t *o, const char *const *allowed, size_t n)
{
	struct buf b;
	const char *key;
	json_t *x;
	int extras = 0;

	buf_init(&b);
	json_object_foreach((json_t *)o, key, x)
	{
		if (in_list(key, allowed, n))
			continue;
		buf_adds(&b, extras++ > 0 ? ", " : "Additional properties are not allowed (");
		repr_str(&b, key, strlen(key));
	}
	if (extras == 0) {
		buf_free(&b);
		return NULL;
	}
	buf_printf(&b, " %s unexpected)", extras == 1 ? "was" : "were");
	return buf_steal(&b, NULL);
}

/* A string checked for length (0: no bound) and for Cachito's ref pattern. */
static char *
check_string(const json_t *v, size_t min, size_t max, bool ref)
{
	char *r, *msg = NULL;
	const char *s;

	if (!json_is_string(v))
		return not_type(v, "string");
	s = json_string_value(v);
	r = reqjson_repr(v);
	if (min > 0 && json_string_length(v) < min)
		msg = xasprintf("%s is too short", r);
	else if (max > 0 && json_string_length(v) > max)
		msg = xasprintf("%s is too long", r);
	else if (ref && (strlen(s) != 40 || strspn(s, "0123456789abcdef") != 40))
		msg = xasprintf("%s does not match '^[a-f0-9]{40}$'", r);
	free(r);
	return msg;
}

/* One dependency replacement as the schema sees it (PackageReplacement). */
static char *
check_replacement_schema(const json_t *v)
{
	static const char *const required[] = {"name", "type", "version"};
	json_t *x;

	if (!json_is_object(v))
		return not_type(v, "object");
	if ((x = json_object_get(v, "new_name")) != NULL && !json_is_string(x))
		return not_type(x, "string");
	for (size_t i = 0; i < BV_NELEM(required); i++) {
		x = json_object_get(v, required[i]);
		if (x == NULL)
			return xasprintf("'%s' is a required property", required[i]);
		if (!json_is_string(x))
			return not_type(x, "string");
	}
	return NULL;
}

/* An http(s) URL with user info ("https://user:token@host/..."): a secret the request
 * would store and show to anyone. ssh's "git@host:org/repo" names an account, not a
 * secret, and is left to the loader (which refuses ssh). */
static bool
repo_has_credentials(const char *repo)
{
	const char *auth;

	if (strncasecmp(repo, "http://", 7) == 0)
		auth = repo + 7;
	else if (strncasecmp(repo, "https://", 8) == 0)
		auth = repo + 8;
	else
		return false;
	return memchr(auth, '@', strcspn(auth, "/?#")) != NULL;
}

/* The schema's checks of the known properties, in the schema's order. */
static char *
check_new_properties(const json_t *body)
{
	json_t *v, *x;
	size_t i;
	char *msg;

	if ((v = json_object_get(body, "dependency_replacements")) != NULL) {
		if (!json_is_array(v))
			return not_type(v, "array");
		json_array_foreach(v, i, x)
		{
			if ((msg = check_replacement_schema(x)) != NULL)
				return msg;
		}
	}
	if ((v = json_object_get(body, "flags")) != NULL &&
	    (msg = check_str_array(v, NULL, 0)) != NULL)
		return msg;
	if ((v = json_object_get(body, "packages")) != NULL && !json_is_object(v))
		return not_type(v, "object");
	if ((v = json_object_get(body, "pkg_managers")) != NULL &&
	    (msg = check_str_array(v, reqjson_pkg_managers, reqjson_npkg_managers)) != NULL)
		return msg;
	if ((v = json_object_get(body, "ref")) != NULL && (msg = check_string(v, 40, 40, true)))
		return msg;
	if ((v = json_object_get(body, "repo")) != NULL && (msg = check_string(v, 0, 200, false)))
		return msg;
	if (v != NULL && repo_has_credentials(json_string_value(v)))
		return xstrdup("The repo URL must not carry a user name or password: they would be "
			       "stored and shown with the request");
	if ((v = json_object_get(body, "user")) != NULL && !json_is_string(v))
		return not_type(v, "string");
	return NULL;
}

char *
reqjson_normpath(const char *path)
{
	/* As many components as the path has (it has at most strlen / 2 + 1): a fixed
	 * array dropped the ones past it and then ".." took off the wrong ones (fuzz). */
	size_t n = 0, len = strlen(path);
	const char **parts = xmalloc((len / 2 + 1) * sizeof *parts);
	struct buf b;
	char *copy = xstrdup(path), *save = NULL, *tok;

	for (tok = strtok_r(copy, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0 && n > 0 && strcmp(parts[n - 1], "..") != 0) {
			n--;
			continue;
		}
		parts[n++] = tok;
	}
	buf_init(&b);
	if (path[0] == '/')
		buf_addc(&b, '/');
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%s", i > 0 ? "/" : "", parts[i]);
	if (b.len == 0)
		buf_addc(&b, '.');
	free(parts);
	free(copy);
	return buf_steal(&b, NULL);
}

/* Cachito's rule for paths in "packages": a non-empty relative path that does not
 * climb out of the repository (".." anywhere in the normalised path is refused). */
static bool
path_ok(const json_t *v)
{
	char *norm;
	bool ok;

	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_value(v)[0] == '/')
		return false;
	/* No ".." component at all, even one that comes back ("a/../a"): the worker takes
	 * the path as written, and one rule on both sides leaves nothing in between. */
	const char *p = json_string_value(v);
	for (size_t i = 0; p[i] != '\0'; i++)
		if ((unsigned char)p[i] < 0x20)
			return false;
	norm = xstrdup(p);
	ok = true;
	char *save = NULL;
	for (char *tok = strtok_r(norm, "/", &save); tok != NULL && ok;
	     tok = strtok_r(NULL, "/", &save))
		ok = strcmp(tok, "..") != 0;
	free(norm);
	return ok;
}

/* The keys allowed in one "packages" entry of pm, or NULL for an unsupported pm. */
static const char *
pm_keys(const char *pm)
{
	for (size_t i = 0; i < BV_NELEM(package_keys); i++)
		if (strcmp(package_keys[i].pm, pm) == 0)
			return package_keys[i].keys;
	return NULL;
}

/* One "packages.<pm>" value. */
static char *
check_package_entries(const char *pm, const json_t *entries)
{
	const char *keys = pm_keys(pm);
	json_t *e, *v, *p;
	const char *key;
	size_t i, j;

	if (!json_is_array(entries))
		goto bad_format;
	json_array_foreach(entries, i, e)
	{
		if (!json_is_object(e) || json_object_size(e) == 0)
			goto bad_format;
		json_object_foreach(e, key, v)
		{
			if (!csv_has(keys, key))
				goto bad_format;
		}
		if ((v = json_object_get(e, "path")) != NULL && !json_is_null(v) && !path_ok(v))
			return xasprintf(
			    "The \"path\" values in the \"packages.%s\" value must be to a "
			    "relative path in the source repository",
			    pm);
		for (int k = 0; k < 2; k++) {
			const char *name =
			    k == 0 ? "requirements_files" : "requirements_build_files";

			if ((v = json_object_get(e, name)) == NULL)
				continue;
			if (!json_is_array(v))
				goto bad_format;
			json_array_foreach(v, j, p)
			{
				if (!path_ok(p))
					return xasprintf(
					    "The \"%s\" values in the \"packages.%s\" value "
					    "must be to a relative path in the source "
					    "repository",
					    name, pm);
			}
		}
	}
	return NULL;
bad_format:
	return xasprintf("The value of \"packages.%s\" must be an array of objects with the "
			 "following keys: %s",
	    pm, keys);
}

/* The normalised paths pm processes: its "packages" entries, or the root. */
static json_t *
pm_paths(const json_t *packages, const char *pm)
{
	json_t *entries = json_object_get(packages, pm), *set = json_object(), *e;
	size_t i;

	if (!json_is_array(entries) || json_array_size(entries) == 0) {
		json_object_set_new(set, ".", json_true());
		return set;
	}
	json_array_foreach(entries, i, e)
	{
		const char *path = json_string_value(json_object_get(e, "path"));
		char *norm = reqjson_normpath(path != NULL ? path : ".");

		json_object_set_new(set, norm, json_true());
		free(norm);
	}
	return set;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Cachito's mutually exclusive package managers may not share a path. */
static char *
check_exclusive(const json_t *pms, const json_t *packages)
{
	for (size_t k = 0; k < BV_NELEM(exclusive); k++) {
		const char *a = exclusive[k][0], *b = exclusive[k][1];
		bool has_a = false, has_b = false;
		json_t *x, *pa, *pb;
		const char *path, *common[64];
		size_t i, n = 0;
		struct buf msg;

		json_array_foreach(pms, i, x)
		{
			has_a |= strcmp(json_string_value(x), a) == 0;
			has_b |= strcmp(json_string_value(x), b) == 0;
		}
		if (!has_a || !has_b)
			continue;
		pa = pm_paths(packages, a);
		pb = pm_paths(packages, b);
		json_object_foreach(pa, path, x)
		{
			if (json_object_get(pb, path) != NULL && n < BV_NELEM(common))
				common[n++] = path;
		}
		if (n == 0) {
			json_decref(pa);
			json_decref(pb);
			continue;
		}
		qsort(common, n, sizeof common[0], cmp_str);
		buf_init(&msg);
		buf_printf(
		    &msg, "The following paths cannot be processed by both '%s' and '%s': ", a, b);
		for (i = 0; i < n; i++)
			buf_printf(&msg, "%s%s", i > 0 ? ", " : "", common[i]);
		json_decref(pa);
		json_decref(pb);
		return buf_steal(&msg, NULL);
	}
	return NULL;
}

/* Appends s to the list of names in b (", " between), once. */
static void
add_name(struct buf *b, json_t *seen, const char *s)
{
	if (json_object_get(seen, s) != NULL)
		return;
	json_object_set_new(seen, s, json_true());
	buf_printf(b, "%s%s", b->len > 0 ? ", " : "", s);
}

/* The model's checks of "packages" (Cachito's _validate_request_package_configs). */
static char *
check_packages(const json_t *packages, const json_t *pms)
{
	struct buf bad;
	json_t *seen = json_object(), *v, *x;
	const char *pm;
	size_t i;
	char *msg;

	buf_init(&bad);
	json_object_foreach((json_t *)packages, pm, v)
	{
		bool listed = false;

		json_array_foreach(pms, i, x)
		{
			listed |= strcmp(json_string_value(x), pm) == 0;
		}
		if (!listed)
			add_name(&bad, seen, pm);
	}
	if (bad.len > 0) {
		msg = xasprintf("The following package managers in the \"packages\" object do not "
				"apply: %s",
		    bad.data);
		goto out;
	}
	json_object_foreach((json_t *)packages, pm, v)
	{
		if (pm_keys(pm) == NULL)
			add_name(&bad, seen, pm);
	}
	if (bad.len > 0) {
		msg = xasprintf("The following package managers in the \"packages\" object are "
				"unsupported: %s",
		    bad.data);
		goto out;
	}
	msg = NULL;
	json_object_foreach((json_t *)packages, pm, v)
	{
		if ((msg = check_package_entries(pm, v)) != NULL)
			goto out;
	}
	msg = check_exclusive(pms, packages);
out:
	buf_free(&bad);
	json_decref(seen);
	return msg;
}

/* The same strings once each, in their first order. */
static json_t *
dedup(const json_t *arr)
{
	json_t *out = json_array(), *seen = json_object(), *x;
	size_t i;

	json_array_foreach(arr, i, x)
	{
		if (json_object_get(seen, json_string_value(x)) != NULL)
			continue;
		json_object_set_new(seen, json_string_value(x), json_true());
		json_array_append(out, x);
	}
	json_decref(seen);
	return out;
}

/* The model's checks after the schema's, in Cachito's order. */
static char *
check_new_model(const json_t *body, const char *enabled, const json_t *pms)
{
	json_t *seen = json_object(), *x, *packages = json_object_get(body, "packages");
	json_t *flags = json_object_get(body, "flags");
	json_t *repl = json_object_get(body, "dependency_replacements");
	struct buf bad;
	char *msg = NULL;
	size_t i;

	buf_init(&bad);
	json_array_foreach(pms, i, x)
	{
		if (!csv_has(enabled, json_string_value(x)))
			add_name(&bad, seen, json_string_value(x));
	}
	if (bad.len > 0) {
		msg = xasprintf("The following package managers are not enabled: %s", bad.data);
		goto out;
	}
	if (packages != NULL && (msg = check_packages(packages, pms)) != NULL)
		goto out;
	json_array_foreach(flags, i, x)
	{
		if (!in_list(json_string_value(x), known_flags, BV_NELEM(known_flags)))
			add_name(&bad, seen, json_string_value(x));
	}
	if (bad.len > 0) {
		msg = xasprintf("Invalid/Inactive flag(s): %s", bad.data);
		goto out;
	}
	json_array_foreach(repl, i, x)
	{
		static const char *const keys[] = {"name", "type", "version", "new_name"};
		const char *type = json_string_value(json_object_get(x, "type"));
		char *extra = extra_keys(x, keys, BV_NELEM(keys));

		if (extra != NULL) {
			free(extra);
			msg =
			    xstrdup("A dependency replacement must be a JSON object with the "
				    "following keys: name, type, version. It may also contain the "
				    "following optional keys: new_name.");
			goto out;
		}
		if (strcmp(type, "gomod") != 0) {
			msg = xasprintf("Dependency replacements are not yet supported for the %s "
					"package manager",
			    strcmp(type, "rubygems") == 0 ? "RubyGems" : type);
			goto out;
		}
	}
out:
	buf_free(&bad);
	json_decref(seen);
	return msg;
}

char *
reqjson_check_new(const json_t *body, const char *enabled, json_t **fields)
{
	static const char *const keys[] = {
	    "dependency_replacements", "flags", "packages", "pkg_managers", "ref", "repo", "user"};
	json_t *pms, *flags, *v;
	char *msg;

	*fields = NULL;
	if (!json_is_object(body))
		return not_type(body, "object");
	if ((msg = check_new_properties(body)) != NULL)
		return msg;
	if (json_object_get(body, "ref") == NULL)
		return xstrdup("'ref' is a required property");
	if (json_object_get(body, "repo") == NULL)
		return xstrdup("'repo' is a required property");
	if ((msg = extra_keys(body, keys, BV_NELEM(keys))) != NULL)
		return msg;
	/* Omitted pkg_managers means source only here: bitsvault has no default list. */
	v = json_object_get(body, "pkg_managers");
	pms = v != NULL ? dedup(v) : json_array();
	if ((msg = check_new_model(body, enabled, pms)) != NULL) {
		json_decref(pms);
		return msg;
	}
	v = json_object_get(body, "flags");
	flags = v != NULL ? dedup(v) : json_array();
	*fields = json_object();
	json_object_set(*fields, "repo", json_object_get(body, "repo"));
	json_object_set(*fields, "ref", json_object_get(body, "ref"));
	json_object_set_new(*fields, "pkg_managers", pms);
	v = json_object_get(body, "packages");
	json_object_set_new(*fields, "packages", v != NULL ? json_incref(v) : json_object());
	json_object_set_new(*fields, "flags", flags);
	v = json_object_get(body, "dependency_replacements");
	json_object_set_new(
	    *fields, "dependency_replacements", v != NULL ? json_incref(v) : json_array());
	return NULL;
}

/* One environment variable's info in a PATCH. */
static char *
check_env_info(const json_t *info)
{
	static const char *const keys[] = {"value", "kind"};
	json_t *value = json_object_get(info, "value"), *kind = json_object_get(info, "kind");
	struct buf extra;
	const char *key;
	json_t *x;

	if (!json_is_object(info))
		return not_type(info, "object");
	if (value != NULL && !json_is_string(value))
		return not_type(value, "string");
	if (kind != NULL && !json_is_string(kind))
		return not_type(kind, "string");
	if (kind == NULL)
		return xstrdup("'kind' is a required property");
	if (value == NULL)
		return xstrdup("'value' is a required property");
	buf_init(&extra);
	json_object_foreach((json_t *)info, key, x)
	{
		if (!in_list(key, keys, BV_NELEM(keys)))
			buf_printf(&extra, "%s%s", extra.len > 0 ? ", " : "", key);
	}
	if (extra.len > 0) {
		char *msg = xasprintf("The following keys are not allowed in the info of the "
				      "environment variables: %s",
		    extra.data);

		buf_free(&extra);
		return msg;
	}
	buf_free(&extra);
	if (strcmp(json_string_value(kind), "path") != 0 &&
	    strcmp(json_string_value(kind), "literal") != 0)
		return xasprintf(
		    "The environment variable kind, %s, is not supported", json_string_value(kind));
	return NULL;
}

/* A count: a non-negative integer (booleans are not integers here, unlike Python). */
static char *
check_count(const json_t *v)
{
	char *r, *msg;

	if (!json_is_integer(v))
		return not_type(v, "integer");
	if (json_integer_value(v) >= 0)
		return NULL;
	r = reqjson_repr(v);
	msg = xasprintf("%s is less than the minimum of 0", r);
	free(r);
	return msg;
}

char *
reqjson_check_patch(const json_t *body)
{
	static const char *const keys[] = {"state", "state_reason", "environment_variables",
	    "packages_count", "dependencies_count", "error_origin", "error_type"};
	static const char *const states[] = {"in_progress", "complete", "failed", "stale"};
	static const char *const origins[] = {"client", "server"};
	json_t *v, *x;
	const char *name;
	char *msg;

	if (!json_is_object(body))
		return not_type(body, "object");
	if (json_object_size(body) == 0)
		return xstrdup("{} should be non-empty");
	if ((v = json_object_get(body, "state")) != NULL) {
		if (!json_is_string(v))
			return not_type(v, "string");
		if (!in_list(json_string_value(v), states, BV_NELEM(states)))
			return not_one_of(v, states, BV_NELEM(states));
	}
	if ((v = json_object_get(body, "state_reason")) != NULL && !json_is_string(v))
		return not_type(v, "string");
	if ((v = json_object_get(body, "environment_variables")) != NULL) {
		if (!json_is_object(v))
			return not_type(v, "object");
		json_object_foreach(v, name, x)
		{
			if ((msg = check_env_info(x)) != NULL)
				return msg;
		}
	}
	if ((v = json_object_get(body, "packages_count")) != NULL && (msg = check_count(v)))
		return msg;
	if ((v = json_object_get(body, "dependencies_count")) != NULL && (msg = check_count(v)))
		return msg;
	if ((v = json_object_get(body, "error_origin")) != NULL) {
		if (!json_is_string(v))
			return not_type(v, "string");
		if (!in_list(json_string_value(v), origins, BV_NELEM(origins)))
			return not_one_of(v, origins, BV_NELEM(origins));
	}
	if ((v = json_object_get(body, "error_type")) != NULL && !json_is_string(v))
		return not_type(v, "string");
	if ((msg = extra_keys(body, keys, BV_NELEM(keys))) != NULL)
		return msg;
	if (json_object_get(body, "state") != NULL && json_object_get(body, "state_reason") == NULL)
		return xstrdup("The \"state_reason\" key is required when \"state\" is supplied");
	if (json_object_get(body, "state_reason") != NULL && json_object_get(body, "state") == NULL)
		return xstrdup("The \"state\" key is required when \"state_reason\" is supplied");
	return NULL;
}

/* True when s is standard base64 with padding (what the worker sends). */
static bool
is_base64(const char *s, size_t len)
{
	size_t pad = 0;

	if (len % 4 != 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '=') {
			if (i < len - 2)
				return false;
			pad++;
		} else if (pad > 0 ||
		    !(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789+/",
			  ch) != NULL &&
			ch != '\0')) {
			return false;
		}
	}
	return true;
}

char *
reqjson_check_config_files(const json_t *body)
{
	static const char *const required[] = {"content", "path", "type"};
	static const char *const types[] = {"base64"};
	json_t *f, *v;
	size_t i;
	char *msg;

	if (!json_is_array(body))
		return not_type(body, "array");
	json_array_foreach(body, i, f)
	{
		if (!json_is_object(f))
			return not_type(f, "object");
		if ((v = json_object_get(f, "path")) != NULL && !json_is_string(v))
			return not_type(v, "string");
		if ((v = json_object_get(f, "type")) != NULL) {
			if (!json_is_string(v))
				return not_type(v, "string");
			if (!in_list(json_string_value(v), types, 1))
				return not_one_of(v, types, 1);
		}
		for (size_t k = 0; k < BV_NELEM(required); k++)
			if (json_object_get(f, required[k]) == NULL)
				return xasprintf("'%s' is a required property", required[k]);
		if ((msg = extra_keys(f, required, BV_NELEM(required))) != NULL)
			return msg;
		v = json_object_get(f, "content");
		if (!json_is_string(v) || !is_base64(json_string_value(v), json_string_length(v)))
			return xstrdup("The \"content\" of a configuration file must be base64");
		if (!path_ok(json_object_get(f, "path")))
			return xstrdup(
			    "The \"path\" of a configuration file must be a relative path "
			    "inside the bundle");
	}
	return NULL;
}
