/* request_npm.c: npm lockfiles for the "request" job (worker/request.h): the packages of
 * package-lock.json or npm-shrinkwrap.json, lockfile versions 1 ("dependencies", nested
 * by package), 2 and 3 ("packages", keyed by node_modules paths; version 2 also carries
 * the version 1 section for old npm), and the lockfile rewritten so that every registry
 * package resolves to its tarball in the bundle. No npm code runs: the lockfile is read
 * as JSON, as Cachito does (research cachito.md §4.2).
 *
 * Skipped, as npm itself would: the root package (""), links and workspace folders (keys
 * not under node_modules/: they are in the source tree), and packages bundled inside
 * another's tarball (inBundle / bundled). A name or version that is going to be part of
 * a file name in the bundle is checked first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/request.h"

/* What one lockfile entry stands for. */
struct entry_info {
	char *name;
	char *version;
	const char *resolved;
	const char *integrity;
	enum npm_source source;
	bool dev;
};

static void
entry_info_clear(struct entry_info *e)
{
	free(e->name);
	free(e->version);
	memset(e, 0, sizeof *e);
}

/* Whether s is a safe package name: "name" or "@scope/name", each part made of the
 * characters npm allows in names (lowercase or not: old packages have capitals). */
bool
npm_name_ok(const char *s)
{
	const char *p = s;
	int parts = 0;

	if (s == NULL || *s == '\0' || strlen(s) > 214)
		return false;
	if (*p == '@')
		p++;
	for (;;) {
		size_t n = strspn(p,
		    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789-._~!*'()");
		if (n == 0 || p[0] == '.' || (n == 2 && strncmp(p, "..", 2) == 0))
			return false;
		parts++;
		p += n;
		if (*p == '\0')
			break;
		if (*p != '/' || s[0] != '@' || parts > 1)
			return false;
		p++;
	}
	return s[0] == '@' ? parts == 2 : parts == 1;
}

/* Whether s may be part of a file name: semver's characters, not starting with '.'. */
bool
npm_version_ok(const char *s)
{
	if (s == NULL || *s == '\0' || *s == '.' || strlen(s) > 256)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_") ==
	    strlen(s);
}

/* The name without its scope ("@s/n" -> "n"). */
static const char *
short_name(const char *name)
{
	const char *slash = strchr(name, '/');
	return name[0] == '@' && slash != NULL ? slash + 1 : name;
}

/* Whether resolved is a registry tarball URL of name@version: http(s), ending in
 * "/-/<short name>-<version>.tgz" (every registry's layout, whatever its base). */
static bool
registry_url(const char *resolved, const char *name, const char *version)
{
	if (strncmp(resolved, "https://", 8) != 0 && strncmp(resolved, "http://", 7) != 0)
		return false;
	char *tail = xasprintf("/-/%s-%s.tgz", short_name(name), version);
	size_t rl = strlen(resolved), tl = strlen(tail);
	bool ok = rl > tl && strcmp(resolved + rl - tl, tail) == 0;
	free(tail);
	return ok;
}

/* Classifies one entry. name_hint is the entry's name from its key. 1 a package to list
 * (e filled), 0 skipped, -1 with *errstr. */
static int
classify(const char *file, const char *key, const char *name_hint, json_t *entry, bool v1,
    struct entry_info *e, char **errstr)
{
	const char *version, *alias = NULL;

	memset(e, 0, sizeof *e);
	if (!json_is_object(entry)) {
		*errstr = xasprintf(
		    "The lockfile %s is invalid: the entry \"%s\" is not an object", file, key);
		return -1;
	}
	if (json_is_true(json_object_get(entry, "link")) ||
	    json_is_true(json_object_get(entry, "inBundle")) ||
	    json_is_true(json_object_get(entry, "bundled")))
		return 0;
	version = json_string_value(json_object_get(entry, "version"));
	if (version == NULL) {
		*errstr = xasprintf(
		    "The lockfile %s is invalid: the entry \"%s\" has no version", file, key);
		return -1;
	}
	if (!v1)
		alias = json_string_value(json_object_get(entry, "name"));
	e->resolved = json_string_value(json_object_get(entry, "resolved"));
	e->integrity = json_string_value(json_object_get(entry, "integrity"));
	e->dev = json_is_true(json_object_get(entry, "dev"));
	if (v1 && strncmp(version, "npm:", 4) == 0) {
		/* an alias: "npm:<real name>@<version>" */
		const char *at = strrchr(version + 4, '@');
		if (at == NULL || at == version + 4) {
			*errstr =
			    xasprintf("The lockfile %s is invalid: the alias \"%s\" of \"%s\" "
				      "names no version",
				file, version, key);
			return -1;
		}
		e->name = xstrndup(version + 4, (size_t)(at - version - 4));
		e->version = xstrdup(at + 1);
	} else {
		e->name = xstrdup(alias != NULL ? alias : name_hint);
		e->version = xstrdup(version);
	}
	if (strncmp(e->version, "file:", 5) == 0 ||
	    (e->resolved != NULL && strncmp(e->resolved, "file:", 5) == 0)) {
		e->source = NPM_FILE;
	} else if (strchr(e->version, ':') != NULL || strchr(e->version, '/') != NULL ||
	    (e->resolved != NULL && !registry_url(e->resolved, e->name, e->version))) {
		e->source = NPM_OTHER;
	} else {
		e->source = NPM_REGISTRY;
		if (!npm_name_ok(e->name)) {
			*errstr = xasprintf("The lockfile %s is invalid: \"%s\" is not a valid "
					    "package name",
			    file, e->name);
			entry_info_clear(e);
			return -1;
		}
		if (!npm_version_ok(e->version)) {
			*errstr = xasprintf("The lockfile %s is invalid: \"%s\" is not a valid "
					    "version of %s",
			    file, e->version, e->name);
			entry_info_clear(e);
			return -1;
		}
	}
	return 1;
}

/* The index's key of name@version (a name cannot hold a newline). New string. */
static char *
index_key(const char *name, const char *version)
{
	return xasprintf("%s\n%s", name, version);
}

/* The dependency by name and version, or NULL: a hash lookup (lock->index), as a large
 * lockfile asks once per entry. */
struct npm_dep *
npm_lock_find(struct npm_lock *lock, const char *name, const char *version)
{
	if (lock->index == NULL)
		return NULL;
	char *key = index_key(name, version);
	json_t *i = json_object_get(lock->index, key);
	free(key);
	return i != NULL ? &lock->deps[json_integer_value(i)] : NULL;
}

/* Adds an entry's package (or merges it with the same name and version). Two different
 * integrity values for one name@version cannot both be bundled under Cachito's file
 * name: refused (-1, *errstr) rather than checking only the first and leaving npm ci to
 * fail with EINTEGRITY on the other. */
static int
add_dep(struct npm_lock *lock, const char *file, struct entry_info *e, size_t *cap, char **errstr)
{
	struct npm_dep *d = npm_lock_find(lock, e->name, e->version);

	if (d != NULL) {
		if (d->integrity != NULL && e->integrity != NULL &&
		    strcmp(d->integrity, e->integrity) != 0) {
			*errstr = xasprintf("The lockfile %s is invalid: %s@%s is locked with two "
					    "different integrity values (%s and %s)",
			    file, e->name, e->version, d->integrity, e->integrity);
			entry_info_clear(e);
			return -1;
		}
		d->dev = d->dev && e->dev;
		if (d->integrity == NULL && e->integrity != NULL)
			d->integrity = xstrdup(e->integrity);
		entry_info_clear(e);
		return 0;
	}
	if (lock->index == NULL)
		lock->index = json_object();
	char *key = index_key(e->name, e->version);
	json_object_set_new(lock->index, key, json_integer((json_int_t)lock->ndeps));
	free(key);
	if (lock->ndeps == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		lock->deps = xrealloc(lock->deps, *cap * sizeof *lock->deps);
	}
	d = &lock->deps[lock->ndeps++];
	memset(d, 0, sizeof *d);
	d->name = e->name;
	d->version = e->version;
	d->resolved = e->resolved ? xstrdup(e->resolved) : NULL;
	d->integrity = e->integrity ? xstrdup(e->integrity) : NULL;
	d->source = e->source;
	d->dev = e->dev;
	e->name = e->version = NULL;
	return 0;
}

/* Version 1's "dependencies", recursively. 0 or -1. */
static int
parse_v1(
    struct npm_lock *lock, const char *file, json_t *deps, int depth, size_t *cap, char **errstr)
{
	const char *key;
	json_t *entry;

	if (deps == NULL)
		return 0;
	if (!json_is_object(deps) || depth > 256) {
		*errstr = xasprintf(
		    "The lockfile %s is invalid: \"dependencies\" is not an object", file);
		return -1;
	}
	json_object_foreach(deps, key, entry)
	{
		struct entry_info e;
		int r = classify(file, key, key, entry, true, &e, errstr);
		if (r < 0)
			return -1;
		if (r == 0)
			continue; /* bundled: so is everything under it */
		if (add_dep(lock, file, &e, cap, errstr) != 0)
			return -1;
		if (parse_v1(lock, file, json_object_get(entry, "dependencies"), depth + 1, cap,
			errstr) != 0)
			return -1;
	}
	return 0;
}

/* The package name a "packages" key ends with ("node_modules/a/node_modules/@s/b" ->
 * "@s/b"), or NULL when the key is not under node_modules/ (a workspace folder). */
static const char *
key_name(const char *key)
{
	const char *last = NULL, *p = key;

	while ((p = strstr(p, "node_modules/")) != NULL) {
		if (p == key || p[-1] == '/')
			last = p + 13;
		p += 13;
	}
	return last != NULL && *last != '\0' ? last : NULL;
}

/* Versions 2 and 3: "packages". 0 or -1. */
static int
parse_packages(struct npm_lock *lock, const char *file, json_t *pkgs, size_t *cap, char **errstr)
{
	const char *key;
	json_t *entry;

	if (!json_is_object(pkgs)) {
		*errstr = xasprintf(
		    "The lockfile %s is invalid: \"packages\" is missing or not an object", file);
		return -1;
	}
	json_object_foreach(pkgs, key, entry)
	{
		struct entry_info e;
		const char *name = key_name(key);
		if (name == NULL)
			continue; /* the root package, or a workspace folder */
		int r = classify(file, key, name, entry, false, &e, errstr);
		if (r < 0)
			return -1;
		if (r > 0 && add_dep(lock, file, &e, cap, errstr) != 0)
			return -1;
	}
	return 0;
}

/* Parses a lockfile. */
int
npm_lock_parse(const char *text, size_t len, const char *file, struct npm_lock *lock, char **errstr)
{
	json_error_t jerr;
	size_t cap = 0;

	memset(lock, 0, sizeof *lock);
	lock->root = json_loadb(text, len, 0, &jerr);
	if (lock->root == NULL) {
		*errstr = xasprintf(
		    "The lockfile %s is not valid JSON: %s (line %d)", file, jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_object(lock->root)) {
		*errstr = xasprintf("The lockfile %s is not a JSON object", file);
		goto fail;
	}
	json_t *v = json_object_get(lock->root, "lockfileVersion");
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 3) {
		*errstr = xasprintf("The lockfile %s has an unsupported lockfileVersion (1, 2 and "
				    "3 are supported)",
		    file);
		goto fail;
	}
	lock->version = (int)json_integer_value(v);
	if (lock->version == 1) {
		if (parse_v1(lock, file, json_object_get(lock->root, "dependencies"), 0, &cap,
			errstr) != 0)
			goto fail;
	} else if (parse_packages(
		       lock, file, json_object_get(lock->root, "packages"), &cap, errstr) != 0) {
		goto fail;
	}
	return 0;
fail:
	npm_lock_clear(lock);
	return -1;
}

void
npm_lock_clear(struct npm_lock *lock)
{
	for (size_t i = 0; i < lock->ndeps; i++) {
		free(lock->deps[i].name);
		free(lock->deps[i].version);
		free(lock->deps[i].resolved);
		free(lock->deps[i].integrity);
		free(lock->deps[i].bundle_path);
	}
	free(lock->deps);
	json_decref(lock->index);
	json_decref(lock->root);
	memset(lock, 0, sizeof *lock);
}

/* ---- local paths -------------------------------------------------------------------- */

/* Whether rel, taken from the folder base ("" the root; lexically: symlinks leaving the
 * tree are refused by the sandbox check), stays inside the tree. Absolute paths and "~"
 * (npm expands it to the home folder) do not. */
static bool
stays_inside(const char *base, const char *rel)
{
	long depth = 0;

	if (rel[0] == '/' || rel[0] == '~' || rel[0] == '\\')
		return false;
	for (const char *p = base; *p != '\0';) {
		size_t n = strcspn(p, "/");
		if (n > 0)
			depth++;
		p += n + (p[n] == '/');
	}
	for (const char *p = rel; *p != '\0';) {
		size_t n = strcspn(p, "/");
		if (n == 2 && strncmp(p, "..", 2) == 0) {
			if (--depth < 0)
				return false;
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			depth++;
		}
		p += n + (p[n] == '/');
	}
	return true;
}

/* One local path of the lockfile (a "file:" spec, a link's target, a "packages" key). */
static int
check_local(const char *base, const char *file, const char *key, const char *spec, char **errstr)
{
	const char *rel = spec;

	if (spec == NULL)
		return 0;
	if (strncmp(rel, "file:", 5) == 0)
		rel += 5;
	if (stays_inside(base, rel))
		return 0;
	*errstr = xasprintf("The dependency \"%s\" in the lockfile %s points outside the "
			    "repository (%s), which is not supported",
	    key, file, spec);
	return -1;
}

/* A "file:" spec in version or resolved, or NULL. */
static const char *
file_spec(json_t *entry)
{
	const char *v = json_string_value(json_object_get(entry, "version"));
	const char *r = json_string_value(json_object_get(entry, "resolved"));

	if (r != NULL && strncmp(r, "file:", 5) == 0)
		return r;
	if (v != NULL && strncmp(v, "file:", 5) == 0)
		return v;
	return NULL;
}

/* Version 1's section, recursively. */
static int
check_v1(const char *base, const char *file, json_t *deps, int depth, char **errstr)
{
	const char *key;
	json_t *entry;

	if (!json_is_object(deps) || depth > 256)
		return 0;
	json_object_foreach(deps, key, entry)
	{
		if (check_local(base, file, key, file_spec(entry), errstr) != 0 ||
		    check_v1(
			base, file, json_object_get(entry, "dependencies"), depth + 1, errstr) != 0)
			return -1;
	}
	return 0;
}

/* Every local path of the lockfile stays inside the repository. */
int
npm_lock_check_local(
    const struct npm_lock *lock, const char *pkg_path, const char *file, char **errstr)
{
	json_t *pkgs = json_object_get(lock->root, "packages"), *entry;
	const char *key;

	if (json_is_object(pkgs)) {
		json_object_foreach(pkgs, key, entry)
		{
			const char *link = json_is_true(json_object_get(entry, "link"))
			    ? json_string_value(json_object_get(entry, "resolved"))
			    : NULL;
			if (check_local(pkg_path, file, key, key, errstr) != 0 ||
			    check_local(pkg_path, file, key, link, errstr) != 0 ||
			    check_local(pkg_path, file, key, file_spec(entry), errstr) != 0)
				return -1;
		}
	}
	return check_v1(pkg_path, file, json_object_get(lock->root, "dependencies"), 0, errstr);
}

/* Points one entry at its bundled tarball when it has one. */
static void
rewrite_entry(struct npm_lock *lock, const char *key, const char *name, json_t *entry, bool v1,
    const char *up)
{
	struct entry_info e;
	char *err = NULL;

	if (classify("", key, name, entry, v1, &e, &err) <= 0) {
		free(err);
		return;
	}
	struct npm_dep *d = npm_lock_find(lock, e.name, e.version);
	if (e.source == NPM_REGISTRY && d != NULL && d->bundle_path != NULL) {
		json_object_set_new(
		    entry, "resolved", json_sprintf("file:%s%s", up, d->bundle_path));
		/* A lockfile entry without integrity gets the one computed while
		 * downloading, so npm checks the bundled bytes too. */
		if (e.integrity == NULL && d->integrity != NULL)
			json_object_set_new(entry, "integrity", json_string(d->integrity));
	}
	entry_info_clear(&e);
}

/* Version 1's section, recursively. */
static void
rewrite_v1(struct npm_lock *lock, json_t *deps, const char *up, int depth)
{
	const char *key;
	json_t *entry;

	if (!json_is_object(deps) || depth > 256)
		return;
	json_object_foreach(deps, key, entry)
	{
		if (json_is_true(json_object_get(entry, "bundled")))
			continue;
		rewrite_entry(lock, key, key, entry, true, up);
		rewrite_v1(lock, json_object_get(entry, "dependencies"), up, depth + 1);
	}
}

/* Rewrites every locked copy of a bundled registry package. */
void
npm_lock_rewrite(struct npm_lock *lock, const char *up)
{
	json_t *pkgs = json_object_get(lock->root, "packages"), *entry;
	const char *key;

	if (lock->version >= 2 && json_is_object(pkgs)) {
		json_object_foreach(pkgs, key, entry)
		{
			const char *name = key_name(key);
			if (name != NULL)
				rewrite_entry(lock, key, name, entry, false, up);
		}
	}
	/* Version 1, and version 2's copy of it for npm 6. */
	rewrite_v1(lock, json_object_get(lock->root, "dependencies"), up, 0);
}

/* Cachito's layout (research cachito.md §3.2). */
char *
npm_bundle_path(const char *name, const char *version)
{
	if (name[0] == '@') {
		const char *slash = strchr(name, '/');
		return xasprintf("deps/npm/%s/%.*s-%s-%s.tgz", name, (int)(slash - name - 1),
		    name + 1, slash + 1, version);
	}
	return xasprintf("deps/npm/%s/%s-%s.tgz", name, name, version);
}

/* The registry's tarball URL. */
char *
npm_tarball_url(const char *registry, const char *name, const char *version)
{
	size_t n = strlen(registry);
	return xasprintf("%s%s%s/-/%s-%s.tgz", registry, n > 0 && registry[n - 1] == '/' ? "" : "/",
	    name, short_name(name), version);
}
