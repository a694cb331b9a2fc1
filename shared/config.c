/* config.c: the settings table. Every key has a type, a default and bounds; values come
 * from the defaults, then a JSON file, then BITSVAULT_<KEY> environment variables, and are
 * validated once at start so a bad value stops the process with a message naming the key. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/config.h"
#include "shared/log.h"

enum ctype { C_STR, C_BOOL, C_INT, C_SIZE, C_SECS };

struct ckey {
	const char *name;
	enum ctype type;
	size_t off;
	const char *def; /* default, as text (parsed like an environment value) */
	int64_t min, max; /* bounds for numbers */
	bool secret;
};

#define K(name, type, def, min, max, secret)                                                       \
	{                                                                                          \
#name, type, offsetof(struct config, name), def, min, max, secret                  \
	}
#define KIB 1024LL
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TIB (1024LL * GIB)

static const struct ckey keys[] = {
    K(listen, C_STR, "127.0.0.1:8080", 0, 0, false),
    K(public_url, C_STR, "", 0, 0, false),
    K(api_url, C_STR, "", 0, 0, false),
    K(data_dir, C_STR, "./var", 0, 0, false),
    K(migrations_dir, C_STR, BV_MIGRATIONS_DIR, 0, 0, false),
    K(database_url, C_STR, "postgresql://127.0.0.1:5432/bitsvault", 0, 0, true),
    K(redis_url, C_STR, "redis://127.0.0.1:6379/0", 0, 0, false),
    K(admin_token, C_STR, "", 0, 0, true),
    K(worker_token, C_STR, "", 0, 0, true),
    K(user_tokens, C_STR, "", 0, 0, true),
    K(anonymous_read, C_BOOL, "true", 0, 0, false),
    K(anonymous_cook, C_BOOL, "false", 0, 0, false),
    K(log_level, C_STR, "info", 0, 0, false),
    K(max_upload_size, C_SIZE, "1G", 1 * KIB, 1 * TIB, false),
    K(max_json_size, C_SIZE, "1M", 1 * KIB, 64 * MIB, false),
    K(http_timeout, C_SECS, "60", 1, 3600, false),
    K(http_header_timeout, C_SECS, "20", 1, 3600, false),
    K(http_keepalive_timeout, C_SECS, "30", 1, 3600, false),
    K(max_headers, C_INT, "100", 8, 1000, false),
    K(max_header_size, C_SIZE, "64K", 1 * KIB, 1 * MIB, false),
    K(max_url_length, C_INT, "4096", 256, 8192, false),
    K(max_json_depth, C_INT, "64", 2, 2048, false),
    K(max_keepalive_requests, C_INT, "1000", 1, 1000000, false),
    K(shutdown_timeout, C_SECS, "30", 0, 3600, false),
    K(api_threads, C_INT, "4", 1, 64, false),
    K(api_processes, C_INT, "1", 1, 64, false),
    K(status_cache_entries, C_INT, "20000", 0, 100000000, false),
    K(max_archive_entries, C_INT, "1000000", 1, 100000000, false),
    K(max_archive_unpacked, C_SIZE, "10G", 1 * KIB, 64 * TIB, false),
    K(max_archive_ratio, C_INT, "200", 0, 1000000, false),
    K(job_lease, C_SECS, "60", 1, 86400, false),
    K(job_max_attempts, C_INT, "3", 1, 100, false),
    K(reconcile_interval, C_SECS, "5", 1, 3600, false),
    K(worker_heartbeat, C_SECS, "5", 1, 600, false),
    K(worker_name, C_STR, "", 0, 0, false),
    K(max_bundle_size, C_SIZE, "10G", 1 * KIB, 64 * TIB, false),
    K(gzip_level, C_INT, "4", 1, 12, false),
    K(notify_attempts, C_INT, "5", 1, 20, false),
    K(notify_backoff_ms, C_INT, "1000", 1, 600000, false),
    K(notify_allow_private, C_BOOL, "false", 0, 0, false),
    K(load_allow_file, C_BOOL, "false", 0, 0, false),
    K(load_timeout, C_SECS, "3600", 1, 604800, false),
    K(max_load_objects, C_INT, "20000000", 1, 2000000000, false),
    K(load_allow_private, C_BOOL, "false", 0, 0, false),
    K(max_load_blob, C_SIZE, "512M", 1 * KIB, 64 * GIB, false),
    K(max_load_size, C_SIZE, "10G", 1 * KIB, 64 * TIB, false),
    K(bundle_ttl, C_SECS, "604800", 1, 315360000, false),
    K(store_quota, C_SIZE, "0", 0, 1024 * TIB, false),
    K(expiry_interval, C_SECS, "60", 1, 86400, false),
    K(gc_interval, C_SECS, "3600", 1, 604800, false),
    K(gc_grace, C_SECS, "3600", 0, 31536000, false),
    K(gc_dry_run, C_BOOL, "false", 0, 0, false),
    K(request_package_managers, C_STR, "npm,git-submodule,generic", 0, 0, false),
    K(request_lifetime, C_SECS, "86400", 1, 315360000, false),
    K(request_lifetime_failed, C_SECS, "604800", 1, 315360000, false),
    K(request_anonymous_create, C_BOOL, "false", 0, 0, false),
    K(request_user_header, C_STR, "", 0, 0, false),
    K(request_user_header_from, C_STR, "", 0, 0, false),
    K(request_representatives, C_STR, "", 0, 0, false),
    K(npm_registry, C_STR, "https://registry.npmjs.org", 0, 0, false),
    K(npm_download_attempts, C_INT, "5", 1, 20, false),
    K(max_artifact_size, C_SIZE, "1G", 1 * KIB, 64 * GIB, false),
    K(bits_max_body_size, C_SIZE, "1536M", 0, 64 * TIB, false),
    K(bits_packages_max_body_size, C_SIZE, "0", 0, 64 * TIB, false),
    K(bits_droplets_max_body_size, C_SIZE, "0", 0, 64 * TIB, false),
    K(bits_buildpacks_max_body_size, C_SIZE, "0", 0, 64 * TIB, false),
    K(bits_buildpack_cache_max_body_size, C_SIZE, "0", 0, 64 * TIB, false),
    K(bits_app_stash_max_body_size, C_SIZE, "0", 0, 64 * TIB, false),
    K(bits_private_host, C_STR, "", 0, 0, false),
    K(bits_public_host, C_STR, "", 0, 0, false),
    K(bits_public_url, C_STR, "", 0, 0, false),
    K(bits_private_auth, C_STR, "bearer", 0, 0, false),
    K(bits_signing_users, C_STR, "", 0, 0, true),
    K(bits_signing_keys, C_STR, "", 0, 0, true),
    K(bits_active_key_id, C_STR, "", 0, 0, false),
    K(bits_secret, C_STR, "", 0, 0, true),
    K(bits_md5_secret, C_STR, "", 0, 0, true),
    K(bits_sign_expiry, C_SECS, "3600", 1, 604800, false),
    K(bits_app_stash_min_size, C_SIZE, "64K", 0, 64 * TIB, false),
    K(bits_app_stash_max_size, C_SIZE, "512M", 0, 64 * TIB, false),
    K(archiver_users, C_STR, "", 0, 0, true),
    K(archiver_sync_hosts, C_STR, "", 0, 0, false),
    K(archiver_sync_user, C_STR, "", 0, 0, false),
    K(archiver_sync_password, C_STR, "", 0, 0, true),
    K(archiver_sync_interval, C_SECS, "300", 5, 86400, false),
};

/* The key's name by index; NULL past the end. */
const char *
config_key_name(int i)
{
	return i >= 0 && (size_t)i < BV_NELEM(keys) ? keys[i].name : NULL;
}

/* Secret keys are never shown. */
bool
config_key_secret(const char *key)
{
	for (size_t i = 0; i < BV_NELEM(keys); i++)
		if (strcmp(keys[i].name, key) == 0)
			return keys[i].secret;
	return false;
}

/* "64M", "1G", "512" -> bytes (binary suffixes). */
static bool
parse_size(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mult = 1;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return false;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return false;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		mult = KIB;
		break;
	case 'M':
		mult = MIB;
		break;
	case 'G':
		mult = GIB;
		break;
	case 'T':
		mult = TIB;
		break;
	default:
		return false;
	}
	if (*end != '\0') {
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
		if (*end != '\0')
			return false;
	}
	if (v > INT64_MAX / mult)
		return false;
	*out = v * mult;
	return true;
}

/* Sets one key from text (defaults and environment). -1 + *errstr. */
static int
set_text(
    struct config *cfg, const struct ckey *k, const char *val, const char *origin, char **errstr)
{
	char *field = (char *)cfg + k->off;
	int64_t v = 0;

	switch (k->type) {
	case C_STR:
		free(*(char **)field);
		*(char **)field = xstrdup(val);
		return 0;
	case C_BOOL:
		if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0 || strcmp(val, "yes") == 0)
			*(bool *)field = true;
		else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0 ||
		    strcmp(val, "no") == 0)
			*(bool *)field = false;
		else
			goto bad;
		return 0;
	case C_SIZE:
		if (!parse_size(val, &v))
			goto bad;
		break;
	case C_INT:
	case C_SECS:
		if (!parse_int64(val, &v))
			goto bad;
		break;
	}
	if (v < k->min || v > k->max) {
		*errstr = xasprintf("config key '%s' (%s): %lld is out of range [%lld, %lld]",
		    k->name, origin, (long long)v, (long long)k->min, (long long)k->max);
		return -1;
	}
	*(int64_t *)field = v;
	return 0;
bad : {
	static const char *const want[] = {"a string", "true or false", "an integer",
	    "a size in bytes (suffix K, M, G or T allowed)", "a number of seconds"};
	if (k->secret)
		*errstr =
		    xasprintf("config key '%s' (%s): expected %s", k->name, origin, want[k->type]);
	else
		*errstr = xasprintf(
		    "config key '%s' (%s): '%s' is not %s", k->name, origin, val, want[k->type]);
	return -1;
}
}

/* Sets one key from a JSON value (file). */
static int
set_json(struct config *cfg, const struct ckey *k, json_t *v, char **errstr)
{
	char tmp[32];

	if (json_is_string(v))
		return set_text(cfg, k, json_string_value(v), "config file", errstr);
	if (json_is_boolean(v) && k->type == C_BOOL)
		return set_text(cfg, k, json_is_true(v) ? "true" : "false", "config file", errstr);
	if (json_is_integer(v) && k->type != C_STR && k->type != C_BOOL) {
		snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
		return set_text(cfg, k, tmp, "config file", errstr);
	}
	*errstr = xasprintf("config key '%s' (config file): wrong JSON type", k->name);
	return -1;
}

/* Every key to its default. */
void
config_defaults(struct config *cfg)
{
	char *err = NULL;

	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < BV_NELEM(keys); i++)
		if (set_text(cfg, &keys[i], keys[i].def, "default", &err) != 0)
			fatal("config default broken: %s", err); /* a programming error */
}

/* redis://HOST[:PORT][/DB] or HOST:PORT, with a port in 1..65535 (kv.c parses it). */
static bool
redis_url_ok(const char *url)
{
	const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
	size_t host = strcspn(p, ":/");
	char *end;
	long v;

	if (host == 0)
		return false;
	p += host;
	if (*p == ':') {
		v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 1 || v > 65535)
			return false;
		p = end;
	}
	if (*p == '/' && p[1] != '\0') {
		v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 0 || *end != '\0')
			return false;
		p = end;
	}
	return *p == '\0' || strcmp(p, "/") == 0;
}

/* Cross-key checks, once every value is in. */
static int
validate(struct config *cfg, char **errstr)
{
	if (log_level_parse(cfg->log_level) < 0) {
		*errstr = xasprintf("config key 'log_level': '%s' is not one of debug, info, "
				    "warn, error",
		    cfg->log_level);
		return -1;
	}
	if (strchr(cfg->listen, ':') == NULL) {
		*errstr = xasprintf("config key 'listen': '%s' is not HOST:PORT", cfg->listen);
		return -1;
	}
	if (*cfg->data_dir == '\0') {
		*errstr = xstrdup("config key 'data_dir': must not be empty");
		return -1;
	}
	if (!redis_url_ok(cfg->redis_url)) {
		*errstr = xasprintf(
		    "config key 'redis_url': '%s' is not redis://HOST:PORT[/DB]", cfg->redis_url);
		return -1;
	}
	if (*cfg->public_url != '\0' && strncmp(cfg->public_url, "http://", 7) != 0 &&
	    strncmp(cfg->public_url, "https://", 8) != 0) {
		*errstr = xstrdup("config key 'public_url': must start with http:// or https://");
		return -1;
	}
	/* Tokens must be long enough to resist guessing when set. */
	const char *tok[] = {cfg->admin_token, cfg->worker_token};
	const char *tokname[] = {"admin_token", "worker_token"};
	for (size_t i = 0; i < BV_NELEM(tok); i++)
		if (*tok[i] != '\0' && strlen(tok[i]) < 16) {
			*errstr = xasprintf(
			    "config key '%s': must be at least 16 characters", tokname[i]);
			return -1;
		}
	if (*cfg->admin_token != '\0' && strcmp(cfg->admin_token, cfg->worker_token) == 0) {
		*errstr = xstrdup("config keys 'admin_token' and 'worker_token' must differ");
		return -1;
	}
	/* Trailing slashes would double in built URLs. */
	for (char **u = (char *[]){cfg->public_url, cfg->api_url}, **e = u + 2; u < e; u++) {
		size_t n = strlen(*u);
		while (n > 0 && (*u)[n - 1] == '/')
			(*u)[--n] = '\0';
	}
	return 0;
}

/* Defaults, file, environment, checks. */
int
config_load(struct config *cfg, const char *path, char **errstr)
{
	char env[128];

	config_defaults(cfg);
	if (path == NULL || *path == '\0')
		path = getenv("BITSVAULT_CONFIG");
	if (path != NULL && *path != '\0') {
		json_error_t jerr;
		json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		const char *name;
		json_t *v;

		if (root == NULL) {
			*errstr =
			    xasprintf("config file %s: line %d: %s", path, jerr.line, jerr.text);
			return -1;
		}
		if (!json_is_object(root)) {
			*errstr = xasprintf("config file %s: expected a JSON object", path);
			json_decref(root);
			return -1;
		}
		json_object_foreach(root, name, v)
		{
			const struct ckey *k = NULL;
			if (name[0] == '_')
				continue; /* "_comment" keys document the file */
			for (size_t i = 0; i < BV_NELEM(keys); i++)
				if (strcmp(keys[i].name, name) == 0)
					k = &keys[i];
			if (k == NULL) {
				*errstr = xasprintf("config file %s: unknown key '%s'", path, name);
				json_decref(root);
				return -1;
			}
			if (set_json(cfg, k, v, errstr) != 0) {
				json_decref(root);
				return -1;
			}
		}
		json_decref(root);
	}
	for (size_t i = 0; i < BV_NELEM(keys); i++) {
		size_t n = (size_t)snprintf(env, sizeof env, "BITSVAULT_%s", keys[i].name);
		for (size_t j = 10; j < n; j++)
			env[j] = (char)toupper((unsigned char)env[j]);
		const char *val = getenv(env);
		if (val != NULL && set_text(cfg, &keys[i], val, env, errstr) != 0)
			return -1;
	}
	return validate(cfg, errstr);
}

/* Frees the strings. */
void
config_free(struct config *cfg)
{
	for (size_t i = 0; i < BV_NELEM(keys); i++)
		if (keys[i].type == C_STR) {
			char **p = (char **)((char *)cfg + keys[i].off);
			free(*p);
			*p = NULL;
		}
}
