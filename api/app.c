/* app.c: the API application (see app.h). Request flow, all on the event loop except the
 * work functions: headers -> route (router.c) -> authenticate (auth.c) -> body policy
 * (http.c reads or spools the body) -> prepare (cheap checks) -> pause and hand the call
 * to the pool -> the pool thread fills c->resp -> back on the loop, reply and resume. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/app.h"
#include "api/auth.h"
#include "api/bitsauth.h"
#include "api/bitsup.h"
#include "api/call.h"
#include "api/http.h"
#include "api/pool.h"
#include "api/router.h"
#include "api/routes.h"
#include "api/statuscache.h"
#include "api/waiter.h"
#include "shared/db.h"
#include "shared/log.h"

/* What a Host header may hold to be echoed into URLs (names, IPv4, [IPv6], :port). */
#define HOST_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"
/* Tasks waiting for a pool thread before new calls get a 503. */
#define POOL_MAX_QUEUE 1024
/* Uploads waiting for an upload slot (see struct app) before new ones get a 503. */
#define UPLOAD_MAX_WAITING 64
/* File descriptors kept out of the connection cap on top of two per pool thread
 * (its Postgres and Redis connections): the listener, logs, the pool's eventfd, store
 * probes and temp files. */
#define FD_RESERVE 64

/* The route table. Indices are the router's ids. HEAD is served wherever GET is. */
/* /sign's one step: the URL (api/app.c: it needs the app's signing keys). */
static int bits_sign_prepare(struct call *c);

static const struct call_route routes[] = {
    {"POST", "/directories", ACCESS_USER, CALL_BODY_UPLOAD, routes_dirs_upload_prepare,
	routes_dirs_upload_work, NULL, NULL},
    {"GET", "/directories/{id}", ACCESS_READ, CALL_BODY_NONE, routes_dirs_get_prepare,
	routes_dirs_get_work, NULL, NULL},
    {"GET", "/vault/{kind}", ACCESS_READ, CALL_BODY_NONE, routes_vault_list_prepare,
	routes_vault_list_work, NULL, NULL},
    {"POST", "/vault/{kind}/{id}", ACCESS_USER, CALL_BODY_JSON, routes_vault_cook_prepare,
	routes_vault_cook_work, NULL, NULL},
    {"GET", "/vault/{kind}/{id}/status", ACCESS_READ, CALL_BODY_NONE,
	routes_vault_status_wait_prepare, routes_vault_status_wait_work, NULL,
	routes_vault_status_cached},
    {"GET", "/vault/{kind}/{id}", ACCESS_READ, CALL_BODY_NONE, routes_vault_read_prepare,
	routes_vault_fetch_work, NULL, NULL},
    {"POST", "/api/1/vault/{type}/{swhid}/", ACCESS_COOK, CALL_BODY_NONE, routes_swh_prepare,
	routes_swh_cook_work, NULL, NULL},
    {"GET", "/api/1/vault/{type}/{swhid}/", ACCESS_READ, CALL_BODY_NONE, routes_swh_prepare,
	routes_swh_status_work, NULL, routes_vault_status_cached},
    {"GET", "/api/1/vault/{type}/{swhid}/raw/", ACCESS_READ, CALL_BODY_NONE, routes_swh_prepare,
	routes_swh_fetch_work, NULL, NULL},
    {"PUT", "/vault/{kind}/{id}/sticky", ACCESS_ADMIN, CALL_BODY_NONE, routes_vault_sticky_prepare,
	routes_vault_sticky_work, NULL, NULL},
    {"DELETE", "/vault/{kind}/{id}/sticky", ACCESS_ADMIN, CALL_BODY_NONE,
	routes_vault_sticky_prepare, routes_vault_sticky_work, NULL, NULL},
    {"POST", "/loads", ACCESS_USER, CALL_BODY_JSON, routes_loads_create_prepare,
	routes_loads_create_work, NULL, NULL},
    {"GET", "/loads/{id}", ACCESS_READ, CALL_BODY_NONE, routes_loads_get_prepare,
	routes_loads_get_work, NULL, NULL},
    {"PATCH", "/jobs/{id}", ACCESS_WORKER, CALL_BODY_JSON, routes_jobs_patch_prepare,
	routes_jobs_patch_work, NULL, NULL},
    {"GET", "/jobs/{id}", ACCESS_WORKER_ADMIN, CALL_BODY_NONE, routes_jobs_get_prepare,
	routes_jobs_get_work, NULL, NULL},
    {"GET", "/status", ACCESS_READ, CALL_BODY_NONE, NULL, routes_status_work, NULL, NULL},
    {"GET", "/status/short", ACCESS_READ, CALL_BODY_NONE, NULL, routes_status_short_work, NULL,
	NULL},
    /* Cachito's API v1 (docs/api.md "Requests"); latest before {id}. */
    {"POST", "/api/v1/requests", ACCESS_REQUEST_CREATE, CALL_BODY_JSON,
	routes_requests_create_prepare, routes_requests_create_work, NULL, NULL},
    {"GET", "/api/v1/requests", ACCESS_READ, CALL_BODY_NONE, routes_requests_list_prepare,
	routes_requests_list_work, NULL, NULL},
    {"GET", "/api/v1/requests/latest", ACCESS_READ, CALL_BODY_NONE, routes_requests_latest_prepare,
	routes_requests_latest_work, NULL, NULL},
    {"GET", "/api/v1/requests/{id}", ACCESS_READ, CALL_BODY_NONE, routes_requests_id_prepare,
	routes_requests_get_work, NULL, NULL},
    {"PATCH", "/api/v1/requests/{id}", ACCESS_CACHITO_WORKER, CALL_BODY_JSON,
	routes_requests_patch_prepare, routes_requests_patch_work, NULL, NULL},
    {"GET", "/api/v1/requests/{id}/download", ACCESS_READ, CALL_BODY_NONE,
	routes_requests_id_prepare, routes_requests_download_work, NULL, NULL},
    {"GET", "/api/v1/requests/{id}/environment-variables", ACCESS_READ, CALL_BODY_NONE,
	routes_requests_id_prepare, routes_requests_env_work, NULL, NULL},
    {"GET", "/api/v1/requests/{id}/configuration-files", ACCESS_READ, CALL_BODY_NONE,
	routes_requests_id_prepare, routes_requests_config_get_work, NULL, NULL},
    {"POST", "/api/v1/requests/{id}/configuration-files", ACCESS_CACHITO_WORKER, CALL_BODY_JSON,
	routes_requests_config_post_prepare, routes_requests_config_post_work, NULL, NULL},
    {"GET", "/api/v1/requests/{id}/logs", ACCESS_READ, CALL_BODY_NONE, routes_requests_id_prepare,
	routes_requests_logs_work, NULL, NULL},
    {"GET", "/api/v1/requests/{id}/content-manifest", ACCESS_READ, CALL_BODY_NONE,
	routes_requests_id_prepare, routes_requests_icm_work, NULL, NULL},
    {"GET", "/api/v1/content-manifest", ACCESS_READ, CALL_BODY_NONE, routes_requests_multi_prepare,
	routes_requests_icm_multi_work, NULL, NULL},
    {"GET", "/api/v1/sbom", ACCESS_READ, CALL_BODY_NONE, routes_requests_multi_prepare,
	routes_requests_sbom_work, NULL, NULL},
    {"GET", "/api/v1/status", ACCESS_READ, CALL_BODY_NONE, NULL, routes_status_v1_work, NULL, NULL},
    {"GET", "/api/v1/status/short", ACCESS_READ, CALL_BODY_NONE, NULL, routes_status_short_work,
	NULL, NULL},
    /* CF v3 packages (routes_cfpkg.c) */
    {"POST", "/v3/packages", ACCESS_USER, CALL_BODY_JSON, routes_cfpkg_create_prepare,
	routes_cfpkg_create_work, NULL, NULL},
    {"GET", "/v3/packages", ACCESS_USER, CALL_BODY_NONE, routes_cfpkg_list_prepare,
	routes_cfpkg_list_work, NULL, NULL},
    {"GET", "/v3/packages/{guid}", ACCESS_USER, CALL_BODY_NONE, routes_cfpkg_guid_prepare,
	routes_cfpkg_get_work, NULL, NULL},
    {"DELETE", "/v3/packages/{guid}", ACCESS_USER, CALL_BODY_NONE, routes_cfpkg_guid_prepare,
	routes_cfpkg_delete_work, NULL, NULL},
    {"POST", "/v3/packages/{guid}/upload", ACCESS_USER, CALL_BODY_BITS, routes_cfpkg_upload_prepare,
	routes_cfpkg_upload_work, routes_cfpkg_upload_headers, NULL},
    {"GET", "/v3/packages/{guid}/download", ACCESS_USER, CALL_BODY_NONE, routes_cfpkg_guid_prepare,
	routes_cfpkg_download_work, NULL, NULL},
    {"POST", "/v3/apps/{guid}/packages", ACCESS_USER, CALL_BODY_JSON,
	routes_cfpkg_create_legacy_prepare, routes_cfpkg_create_work, NULL, NULL},
    {"GET", "/v3/apps/{guid}/packages", ACCESS_USER, CALL_BODY_NONE, routes_cfpkg_list_prepare,
	routes_cfpkg_list_work, NULL, NULL},
    /* Bits (routes_bits.c; access by host: api/bitsauth.c) */
    {"PUT", "/packages/{guid}", ACCESS_BITS, CALL_BODY_BITS, routes_bits_put_prepare,
	routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/packages/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_get_work, NULL, NULL},
    {"DELETE", "/packages/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_delete_work, NULL, NULL},
    {"PUT", "/droplets/{guid}", ACCESS_BITS, CALL_BODY_BITS, routes_bits_put_prepare,
	routes_bits_put_work, routes_bits_digest_headers, NULL},
    {"GET", "/droplets/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_get_work, NULL, NULL},
    {"DELETE", "/droplets/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_delete_work, NULL, NULL},
    {"PUT", "/droplets/{guid}/{checksum}", ACCESS_BITS, CALL_BODY_BITS, routes_bits_put_prepare,
	routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/droplets/{guid}/{checksum}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_get_work, NULL, NULL},
    {"DELETE", "/droplets/{guid}/{checksum}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_delete_work, NULL, NULL},
    {"POST", "/buildpacks", ACCESS_BITS, CALL_BODY_BITS, routes_buildpacks_post_prepare,
	routes_buildpacks_post_work, routes_buildpacks_post_headers, NULL},
    {"POST", "/buildpacks/", ACCESS_BITS, CALL_BODY_BITS, routes_buildpacks_post_prepare,
	routes_buildpacks_post_work, routes_buildpacks_post_headers, NULL},
    {"GET", "/buildpacks/{guid}/metadata", ACCESS_BITS, CALL_BODY_NONE,
	routes_buildpacks_metadata_prepare, routes_buildpacks_metadata_work, NULL, NULL},
    {"PUT", "/buildpacks/{guid}", ACCESS_BITS, CALL_BODY_BITS, routes_bits_put_prepare,
	routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/buildpacks/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_get_work, NULL, NULL},
    {"DELETE", "/buildpacks/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_delete_work, NULL, NULL},
    {"PUT", "/buildpack_cache/entries/{app}/{stack}", ACCESS_BITS, CALL_BODY_BITS,
	routes_bits_put_prepare, routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/buildpack_cache/entries/{app}/{stack}", ACCESS_BITS, CALL_BODY_NONE,
	routes_bits_key_prepare, routes_bits_get_work, NULL, NULL},
    {"DELETE", "/buildpack_cache/entries/{app}/{stack}", ACCESS_BITS, CALL_BODY_NONE,
	routes_bits_key_prepare, routes_bits_delete_work, NULL, NULL},
    {"DELETE", "/buildpack_cache/entries/{app}", ACCESS_BITS, CALL_BODY_NONE,
	routes_bits_key_prepare, routes_bits_delete_dir_work, NULL, NULL},
    {"DELETE", "/buildpack_cache/entries", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_delete_dir_work, NULL, NULL},
    {"DELETE", "/buildpack_cache/entries/", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_delete_dir_work, NULL, NULL},
    {"POST", "/app_stash/matches", ACCESS_BITS, CALL_BODY_BITS, routes_stash_matches_prepare,
	routes_stash_matches_work, routes_stash_json_headers, NULL},
    {"POST", "/app_stash/entries", ACCESS_BITS, CALL_BODY_BITS, routes_stash_entries_prepare,
	routes_stash_entries_work, routes_stash_entries_headers, NULL},
    {"POST", "/app_stash/bundles", ACCESS_BITS, CALL_BODY_BITS, routes_stash_bundles_prepare,
	routes_stash_bundles_work, routes_stash_bundles_headers, NULL},
    /* The Droplet Archiver (routes_archiver.c; GET /droplets/{app}/{sha1} is the Bits GET) */
    {"POST", "/droplets/{app}/{sha1}", ACCESS_ARCHIVER, CALL_BODY_BITS, NULL,
	routes_archiver_post_work, routes_archiver_put_headers, NULL},
    {"POST", "/sync/have", ACCESS_ARCHIVER, CALL_BODY_JSON, routes_archiver_have_prepare,
	routes_archiver_have_work, NULL, NULL},
    {"POST", "/sync/{app}/{sha1}", ACCESS_ARCHIVER, CALL_BODY_BITS, NULL, routes_archiver_sync_work,
	routes_archiver_put_headers, NULL},
    /* The Ruby bits-service's /signed/<path> (md5+expires URLs, research §2.4): the same
     * resources, reached through the public host with the prefix kept in the signed path */
    {"PUT", "/signed/packages/{guid}", ACCESS_BITS, CALL_BODY_BITS, routes_bits_put_prepare,
	routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/signed/packages/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_get_work, NULL, NULL},
    {"PUT", "/signed/droplets/{guid}/{checksum}", ACCESS_BITS, CALL_BODY_BITS,
	routes_bits_put_prepare, routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/signed/droplets/{guid}/{checksum}", ACCESS_BITS, CALL_BODY_NONE,
	routes_bits_key_prepare, routes_bits_get_work, NULL, NULL},
    {"PUT", "/signed/buildpacks/{guid}", ACCESS_BITS, CALL_BODY_BITS, routes_bits_put_prepare,
	routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/signed/buildpacks/{guid}", ACCESS_BITS, CALL_BODY_NONE, routes_bits_key_prepare,
	routes_bits_get_work, NULL, NULL},
    {"PUT", "/signed/buildpack_cache/entries/{app}/{stack}", ACCESS_BITS, CALL_BODY_BITS,
	routes_bits_put_prepare, routes_bits_put_work, routes_bits_put_headers, NULL},
    {"GET", "/signed/buildpack_cache/entries/{app}/{stack}", ACCESS_BITS, CALL_BODY_NONE,
	routes_bits_key_prepare, routes_bits_get_work, NULL, NULL},
    /* /sign/<a Bits path>?verb=get|put|post: the signed URL (bits_sign_prepare) */
    {"GET", "/sign/packages/{guid}", ACCESS_BITS_SIGN, CALL_BODY_NONE, bits_sign_prepare, NULL,
	NULL, NULL},
    {"GET", "/sign/droplets/{guid}", ACCESS_BITS_SIGN, CALL_BODY_NONE, bits_sign_prepare, NULL,
	NULL, NULL},
    {"GET", "/sign/droplets/{guid}/{checksum}", ACCESS_BITS_SIGN, CALL_BODY_NONE, bits_sign_prepare,
	NULL, NULL, NULL},
    {"GET", "/sign/buildpacks", ACCESS_BITS_SIGN, CALL_BODY_NONE, bits_sign_prepare, NULL, NULL,
	NULL},
    {"GET", "/sign/buildpacks/{guid}", ACCESS_BITS_SIGN, CALL_BODY_NONE, bits_sign_prepare, NULL,
	NULL, NULL},
    {"GET", "/sign/buildpack_cache/entries/{app}/{stack}", ACCESS_BITS_SIGN, CALL_BODY_NONE,
	bits_sign_prepare, NULL, NULL, NULL},
    {"GET", "/sign/app_stash/entries", ACCESS_BITS_SIGN, CALL_BODY_NONE, bits_sign_prepare, NULL,
	NULL, NULL},
};

struct app {
	const struct config *cfg;
	struct event_base *base;
	struct store *store;
	struct auth *auth;
	struct bitsauth *bitsauth;
	struct router *router;
	struct pool *pool;
	struct http_server *http;
	char *spool_dir;
	char *bound; /* host:port as bound */
	bool shutting_down;
	bool timed_out;
	struct event *shutdown_timer;
	/* Archive ingest is the one slow kind of work: it may hold at most upload_slots
	 * pool threads at once, so /status, status polls and the workers' PATCHes always
	 * find one. Uploads past that wait, paused, in a FIFO (their body is on disk). */
	int upload_slots;
	int uploads_running;
	struct call *upload_wait_head, *upload_wait_tail;
	size_t uploads_waiting;
	/* Long-polls: parked calls, woken by job notifications from Postgres. */
	struct waiter *waiter;
	struct db_listener *listener;
	/* Finished cooks' status documents, answered on the loop (api/statuscache.h). */
	struct statuscache *scache;
};

/* GET /sign/<path>?verb=get|put|post (research bits-service.md §2.2): the signed URL of
 * <path> for that method, as plain text, valid bits_sign_expiry seconds. */
static int
bits_sign_prepare(struct call *c)
{
	static const char *const verbs[][2] = {{"get", "GET"}, {"put", "PUT"}, {"post", "POST"}};
	const char *method = NULL;
	char *verb = NULL, *err = NULL, *url;

	if (!call_query_param(c, "verb", &verb))
		return -1;
	for (size_t i = 0; i < BV_NELEM(verbs); i++)
		if (verb == NULL || strcmp(verb, verbs[i][0]) == 0) {
			method = verbs[i][1];
			break;
		}
	resp_init(&c->resp);
	if (method == NULL) {
		c->resp.status = 400;
		c->resp.content_type = "text/plain";
		c->resp.body = xasprintf("Invalid verb: %s", call_echo(verb));
		c->resp.body_len = strlen(c->resp.body);
		free(verb);
		return -1;
	}
	free(verb);
	/* The path as the client will send it: the request's, less "/sign". */
	url = bitsauth_sign(
	    c->app->bitsauth, method, http_req_path(c->req) + strlen("/sign"), c->base_url, &err);
	if (url == NULL) {
		log_error_id(c->logid, "/sign: %s", err);
		free(err);
		bitsup_error(&c->resp, 500, 0,
		    "Internal Server Error: no signing key is configured (bits_signing_keys with "
		    "bits_active_key_id, or bits_secret)");
		return -1;
	}
	c->resp.status = 200;
	c->resp.content_type = "text/plain";
	c->resp.body = url;
	c->resp.body_len = strlen(url);
	return -1;
}

/* Makes a spool file for an upload. It is flock'ed for as long as it is open, so the
 * start-up cleaner (spool_clean) never removes a file another live process still uses. */
static int
spool_open(struct app *a, char **path, char **errstr)
{
	char *tmpl = xasprintf("%s/upload-XXXXXX", a->spool_dir);
	int fd = mkstemp(tmpl);

	if (fd < 0) {
		int err = errno;

		*errstr =
		    xasprintf("cannot create a spool file in %s: %s", a->spool_dir, strerror(err));
		free(tmpl);
		errno = err; /* the caller tells a full disk apart */
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		log_warn("cannot lock spool file %s: %s", tmpl, strerror(errno));
	*path = tmpl;
	return fd;
}

/* Removes spool files left by a process that died mid-upload (unlocked ones). */
static void
spool_clean(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int removed = 0;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char *path;
		int fd;

		if (strncmp(e->d_name, "upload-", 7) != 0)
			continue;
		path = xasprintf("%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(path) == 0)
			removed++;
		if (fd >= 0)
			close(fd);
		free(path);
	}
	closedir(d);
	if (removed > 0)
		log_info("removed %d stale upload spool file(s) from %s", removed, dir);
}

/* A reply refused in the headers phase. */
static void
refuse(struct http_req *r, int status, const char *msg)
{
	struct resp rs;

	resp_init(&rs);
	resp_error(&rs, status, "%s", msg);
	http_req_refuse(r, &rs);
}

/* The caller's role and name: a token, or the user a proxy named in request_user_header,
 * believed only from the proxies request_user_header_from lists (anyone else could send
 * the header and claim any name). */
static enum auth_role
caller(struct app *a, struct http_req *r, const char **name)
{
	const char *hdr = auth_user_header(a->auth), *dummy, *proxied = NULL;
	char peer[64];

	if (hdr != NULL) {
		http_req_peer(r, peer, sizeof peer);
		if (peer[0] != '\0' && csv_has(a->cfg->request_user_header_from, peer))
			proxied = http_req_header(r, hdr);
	}
	return auth_identify(
	    a->auth, http_req_header(r, "Authorization"), proxied, name != NULL ? name : &dummy);
}

/* The caller's name for a prepare step (the request is still there on the loop). */
char *
app_caller_name(struct call *c)
{
	const char *name = NULL;

	if (c->req == NULL)
		return NULL;
	caller(c->app, c->req, &name);
	return name != NULL ? xstrdup(name) : NULL;
}

/* request_representatives, for a prepare step. */
bool
app_caller_represents(struct call *c, const char *name)
{
	return auth_is_representative(c->app->auth, name);
}

/* Copies what the Bits routes read of the request's headers. */
static void
bits_headers(struct http_req *r, struct call *c)
{
	static const struct {
		const char *name;
		size_t off;
	} hdrs[] = {
	    {"Content-Type", offsetof(struct call, content_type)},
	    {"Digest", offsetof(struct call, digest)},
	    {"Range", offsetof(struct call, range)},
	    {"If-None-Modify", offsetof(struct call, if_none_modify)},
	};

	for (size_t i = 0; i < BV_NELEM(hdrs); i++) {
		const char *v = http_req_header(r, hdrs[i].name);
		char **slot = (char **)((char *)c + hdrs[i].off);
		if (v != NULL && *slot == NULL)
			*slot = xstrdup(v);
	}
	c->content_length = http_req_content_length(r);
}

/* The largest body a Bits route accepts (their limits, 0 meaning none). */
static int64_t
bits_max_body(const struct config *cfg)
{
	const int64_t own[] = {cfg->bits_packages_max_body_size, cfg->bits_droplets_max_body_size,
	    cfg->bits_buildpacks_max_body_size, cfg->bits_buildpack_cache_max_body_size,
	    cfg->bits_app_stash_max_body_size};
	/* No limit at all: still a bound for libevhtp's own cap (1 PiB). */
	const int64_t none = 1LL << 50;
	int64_t m = 0;

	for (size_t i = 0; i < BV_NELEM(own); i++) {
		int64_t v = own[i] > 0 ? own[i] : cfg->bits_max_body_size;
		v = v > 0 ? v : none;
		if (v > m)
			m = v;
	}
	return m;
}

/* Headers phase of a CALL_BODY_BITS route: its headers function picks the body policy. */
static void
bits_body(struct http_req *r, struct call *c)
{
	struct resp rs;
	enum call_bits_body b = c->route->headers(c);

	switch (b) {
	case CALL_BITS_STREAM:
		http_req_body_sink(r, bitsup_sink, c->upload, c->body_limit);
		break;
	case CALL_BITS_JSON:
		http_req_body_buffer(r, c->body_limit);
		break;
	case CALL_BITS_REFUSE:
	case CALL_BITS_REFUSE_DRAIN:
		rs = c->resp;
		resp_init(&c->resp);
		if (b == CALL_BITS_REFUSE_DRAIN)
			http_req_refuse_drain(r, &rs);
		else
			http_req_refuse(r, &rs);
		break;
	case CALL_BITS_NONE:
		break;
	}
}

/* Headers phase: route, authenticate, pick the body policy. */
static void
on_headers(struct http_req *r, void *arg)
{
	struct app *a = arg;
	struct call *c = call_new(a->cfg, a->store, r, http_req_id(r));
	const char *msg = NULL;
	struct resp rs;
	char *err = NULL;
	int st;

	http_req_set_data(r, c);
	c->app = a;
	c->head = http_req_is_head(r);
	c->role = caller(a, r, NULL);
	http_req_set_role(r, auth_role_name(c->role));

	switch (router_match(a->router, http_req_method(r), http_req_path(r), &c->m)) {
	case ROUTER_FOUND:
		break;
	case ROUTER_NOT_FOUND:
		refuse(r, 404, "not found");
		return;
	case ROUTER_METHOD_NOT_ALLOWED:
		resp_init(&rs);
		resp_error(
		    &rs, 405, "method %s not allowed; allowed: %s", http_req_method(r), c->m.allow);
		resp_header(&rs, "Allow", c->m.allow);
		http_req_refuse(r, &rs);
		return;
	case ROUTER_BAD_PATH:
		refuse(r, 400, "invalid path: bad percent-encoding, or an encoded NUL or '/'");
		return;
	}
	c->route = &routes[c->m.id];
	bits_headers(r, c);

	if (c->route->access == ACCESS_BITS || c->route->access == ACCESS_BITS_SIGN) {
		c->bits_public = bitsauth_is_public(a->bitsauth, r);
		c->bits_archiver = !c->bits_public && bitsauth_archiver_reader(a->bitsauth, r);
		resp_init(&rs);
		if (bitsauth_check(
			a->bitsauth, r, c->role, c->route->access == ACCESS_BITS_SIGN, &rs) != 0) {
			http_req_refuse(r, &rs);
			return;
		}
		st = 0;
	} else if (c->route->access == ACCESS_ARCHIVER) {
		resp_init(&rs);
		if (bitsauth_archiver_check(a->bitsauth, r, &rs) != 0) {
			http_req_refuse(r, &rs);
			return;
		}
		st = 0;
	} else if (bitsauth_is_public(a->bitsauth, r)) {
		/* The public host serves signed Bits URLs and nothing else. */
		resp_init(&rs);
		bitsup_error(&rs, 403, 0, "Forbidden: the public host serves signed URLs only");
		http_req_refuse(r, &rs);
		return;
	} else {
		st = auth_check(a->auth, c->role, c->route->access, &msg);
	}
	if (st != 0) {
		resp_init(&rs);
		resp_error(&rs, st, "%s", msg);
		if (st == 401)
			resp_header(&rs, "WWW-Authenticate", "Bearer realm=\"bitsvault\"");
		http_req_refuse(r, &rs);
		return;
	}

	switch (c->route->body) {
	case CALL_BODY_NONE:
		break; /* a stray body is read and dropped, up to max_json_size */
	case CALL_BODY_JSON:
		http_req_body_buffer(r, a->cfg->max_json_size);
		break;
	case CALL_BODY_UPLOAD:
		c->spool_fd = spool_open(a, &c->spool_path, &err);
		if (c->spool_fd < 0) {
			bool full = errno == ENOSPC;

			/* The spool path stays in the log: never in an answer. */
			log_error_id(c->logid, "%s", err);
			refuse(r, full ? 507 : 500,
			    full ? "no space left on the server"
				 : "internal error while storing the archive");
			free(err);
			return;
		}
		http_req_body_spool(r, c->spool_fd, a->cfg->max_upload_size);
		break;
	case CALL_BODY_BITS:
		bits_body(r, c);
		break;
	}
}

/* The base of absolute URLs in replies: public_url when configured, else the Host the
 * client used (when it looks like a host), else the address we listen on. */
static char *
base_url(struct app *a, struct http_req *r)
{
	const char *host = http_req_header(r, "Host");
	size_t len;

	if (a->cfg->public_url != NULL && a->cfg->public_url[0] != '\0') {
		len = strlen(a->cfg->public_url);
		while (len > 0 && a->cfg->public_url[len - 1] == '/')
			len--;
		return xstrndup(a->cfg->public_url, len);
	}
	if (host != NULL && host[0] != '\0' && strlen(host) <= 255 &&
	    strspn(host, HOST_CHARS) == strlen(host))
		return xasprintf("http://%s", host);
	return xasprintf("http://%s", a->bound != NULL ? a->bound : a->cfg->listen);
}

/* Pool thread: the route's work. */
static void
call_work(void *arg, struct pool_thread *t)
{
	struct call *c = arg;

	c->route->work(c, t);
}

static void call_done(void *arg);

/* Hands a paused call to the pool; 503 when its queue is full. */
static void
call_submit(struct app *a, struct call *c)
{
	c->in_pool = true;
	c->cache_seq = statuscache_seq(a->scache);
	/* Workers' reports go first: a job's progress (and its end, which long-polls and
	 * the next job wait for) must not queue behind clients polling for it. */
	if (pool_submit_to(a->pool, c->role == AUTH_WORKER, call_work, call_done, c))
		return;
	c->in_pool = false;
	log_warn_id(c->logid, "pool queue full: answering 503");
	resp_error(&c->resp, 503, "server busy, try again later");
	resp_header(&c->resp, "Retry-After", "1");
	call_done(c);
}

/* A parked long-poll is due: read the status again (without waiting) and answer. */
static void
on_wake(void *arg, struct call *c)
{
	struct app *a = arg;

	c->wait_s = 0;
	/* A route that waits again (an app stash bundle) parks with what it reads now. */
	c->wait_seq = waiter_seq(a->waiter);
	resp_clear(&c->resp);
	resp_init(&c->resp);
	call_submit(a, c);
}

/* A job changed state or progress: {"id": N, "state": "...", "key": "..."} from the jobs
 * trigger (db/migrations/0010). A payload without a key (a job without one has no cached
 * status) costs nothing; one that cannot be read clears the status cache. */
static void
on_job_notify(void *arg, const char *payload)
{
	struct app *a = arg;
	json_t *o = json_loads(payload, 0, NULL);
	json_t *id = json_object_get(o, "id");
	json_t *key = json_object_get(o, "key");

	if (json_is_integer(id))
		waiter_notify(a->waiter, (int64_t)json_integer_value(id));
	if (json_is_string(key))
		statuscache_notify(a->scache, json_string_value(key));
	else if (!json_is_integer(id))
		statuscache_clear(a->scache);
	json_decref(o);
}

/* The listener (re)connected: notifications sent while it was away are lost, so every
 * parked call reads its status again. */
static void
on_listener_ready(void *arg)
{
	struct app *a = arg;

	if (waiter_count(a->waiter) > 0)
		log_info(
		    "job-update listener ready: waking %zu waiting calls", waiter_count(a->waiter));
	waiter_wake_all(a->waiter);
	/* What the cache holds may have changed unheard. */
	statuscache_clear(a->scache);
}

/* Starts waiting uploads while upload slots are free, oldest first. */
static void
uploads_start(struct app *a)
{
	struct call *c;

	while (a->uploads_running < a->upload_slots && (c = a->upload_wait_head) != NULL) {
		a->upload_wait_head = c->wait_next;
		if (a->upload_wait_head == NULL)
			a->upload_wait_tail = NULL;
		a->uploads_waiting--;
		c->wait_next = NULL;
		c->waiting = false;
		a->uploads_running++;
		c->upload_slot = true;
		call_submit(a, c);
	}
}

/* Takes c out of the upload queue (its request went away while it waited). */
static void
uploads_forget(struct app *a, struct call *c)
{
	struct call **pp, *prev = NULL;

	for (pp = &a->upload_wait_head; *pp != NULL; prev = *pp, pp = &(*pp)->wait_next) {
		if (*pp != c)
			continue;
		*pp = c->wait_next;
		if (a->upload_wait_tail == c)
			a->upload_wait_tail = prev;
		a->uploads_waiting--;
		c->waiting = false;
		c->wait_next = NULL;
		return;
	}
}

/* True when a JSON text nests arrays and objects deeper than max. Checked before jansson
 * parses a body: its parser recurses once per level up to its compiled-in 2048, each
 * level a stack frame and a half-built value, and max_json_depth is the operator's lower
 * bound. Brackets inside strings do not count; anything malformed is left to jansson. */
static bool
json_too_deep(const char *s, size_t len, int64_t max)
{
	int64_t depth = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '[' || ch == '{') {
			if (++depth > max)
				return true;
		} else if (ch == ']' || ch == '}') {
			depth--;
		}
	}
	return false;
}

/* Loop thread: the reply goes out and the request resumes; a finished upload frees its
 * slot for the next one waiting. */
static void
call_done(void *arg)
{
	struct call *c = arg;
	struct app *a = c->app;

	c->in_pool = false;
	if (c->upload_slot) {
		c->upload_slot = false;
		a->uploads_running--;
	}
	if (c->cache_drop && c->cache_key != NULL)
		statuscache_notify(a->scache, c->cache_key);
	if (c->cache_text != NULL) {
		/* A done job's status, read with notifications heard throughout. */
		if (c->resp.status == 200 && db_listener_ready(a->listener))
			statuscache_put(a->scache, c->cache_key, &c->cache_doc, c->cache_seq);
		free(c->cache_text);
		c->cache_text = NULL;
	}
	if (!c->orphaned && c->resp.status == 503 && c->route->cached != NULL) {
		/* Postgres is away (or the pool full): a done job's status is still known. */
		struct resp rs;

		resp_init(&rs);
		if (c->route->cached(c, a->scache, &rs)) {
			log_info_id(
			    c->logid, "answered from the status cache (%d)", c->resp.status);
			resp_clear(&c->resp);
			c->resp = rs;
		}
	}
	if (c->orphaned) {
		/* The request was freed while its work ran (see on_finished). */
		call_free(c);
	} else if (c->wait_job_id > 0 && c->wait_s > 0 && !a->shutting_down &&
	    db_listener_ready(a->listener)) {
		/* A long-poll whose job may still change: park it, paused, until the job's
		 * notification or its time (see api/waiter.c). */
		int64_t job = c->wait_job_id;
		c->wait_job_id = 0;
		waiter_add(a->waiter, c, job, c->wait_s, c->wait_seq);
	} else {
		http_req_reply(c->req, &c->resp);
	}
	uploads_start(a);
}

/* The whole request is in: parse the JSON body, prepare, then hand over to the pool
 * (uploads through their slots). */
static void
on_request(struct http_req *r, void *arg)
{
	struct app *a = arg;
	struct call *c = http_req_data(r);
	const char *body, *inm;
	size_t body_len;

	c->query = xstrdup(http_req_query(r));
	c->base_url = base_url(a, r);
	c->body_bytes = http_req_body_bytes(r);
	if ((inm = http_req_header(r, "If-None-Match")) != NULL)
		c->if_none_match = xstrdup(inm);
	if (c->route->body == CALL_BODY_BITS && c->upload == NULL) {
		/* A Bits route answers a bad body in its own words (its prepare). */
		body = http_req_body(r, &body_len);
		if (body_len > 0 && !json_too_deep(body, body_len, a->cfg->max_json_depth))
			c->json = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, NULL);
	} else if (c->route->body == CALL_BODY_JSON) {
		body = http_req_body(r, &body_len);
		if (body_len > 0) {
			bool deep = json_too_deep(body, body_len, a->cfg->max_json_depth);
			json_error_t jerr;

			c->json =
			    deep ? NULL : json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
			if (c->json == NULL && strncmp(c->route->pattern, "/v3/", 4) == 0) {
				/* CF's routes answer in CF's shape. */
				routes_cfpkg_bad_json(c);
				http_req_reply(r, &c->resp);
				return;
			}
			if (deep)
				resp_error(&c->resp, 400,
				    "invalid JSON body: nested deeper than %lld levels "
				    "(max_json_depth)",
				    (long long)a->cfg->max_json_depth);
			else if (c->json == NULL)
				resp_error(&c->resp, 400,
				    "invalid JSON body: %s (line %d, column %d)", jerr.text,
				    jerr.line, jerr.column);
			if (c->json == NULL) {
				http_req_reply(r, &c->resp);
				return;
			}
		}
	}
	if (c->route->prepare != NULL && c->route->prepare(c) != 0) {
		http_req_reply(r, &c->resp);
		return;
	}
	/* A done cook's status, answered here: no thread, no Postgres. Only while the
	 * listener hears every change (a reconnect clears the cache). */
	if (c->route->cached != NULL && db_listener_ready(a->listener) &&
	    c->route->cached(c, a->scache, &c->resp)) {
		http_req_reply(r, &c->resp);
		return;
	}
	if (a->shutting_down && c->route->body == CALL_BODY_UPLOAD)
		log_info_id(c->logid, "upload finished during shutdown; processing it");
	if (c->route->body == CALL_BODY_UPLOAD && a->uploads_running >= a->upload_slots) {
		if (a->uploads_waiting >= UPLOAD_MAX_WAITING) {
			log_warn_id(c->logid, "%zu uploads already waiting: answering 503",
			    a->uploads_waiting);
			resp_error(&c->resp, 503, "too many uploads in progress, try again later");
			resp_header(&c->resp, "Retry-After", "5");
			http_req_reply(r, &c->resp);
			return;
		}
		http_req_pause(r);
		c->waiting = true;
		if (a->upload_wait_tail != NULL)
			a->upload_wait_tail->wait_next = c;
		else
			a->upload_wait_head = c;
		a->upload_wait_tail = c;
		a->uploads_waiting++;
		log_debug_id(c->logid, "upload waits for a slot (%zu waiting)", a->uploads_waiting);
		return;
	}
	http_req_pause(r);
	if (c->route->body == CALL_BODY_UPLOAD) {
		a->uploads_running++;
		c->upload_slot = true;
	}
	/* Without notifications a long-poll could only sleep: answer at once instead. */
	if (c->wait_s > 0 && (a->shutting_down || !db_listener_ready(a->listener)))
		c->wait_s = 0;
	c->wait_seq = waiter_seq(a->waiter);
	call_submit(a, c);
}

/* The request is being freed. A call still in the pool cannot be freed under its thread:
 * it is marked and freed by call_done. */
static void
on_finished(struct http_req *r, void *arg)
{
	struct call *c = http_req_data(r);

	if (c == NULL)
		return;
	if (c->waiting)
		uploads_forget(arg, c);
	if (c->wait_entry != NULL)
		waiter_remove(((struct app *)arg)->waiter, c);
	if (c->in_pool) {
		c->orphaned = true;
		c->req = NULL;
		return;
	}
	call_free(c);
}

/* The last in-flight request ended: during a shutdown, leave the loop. */
static void
on_idle(void *arg)
{
	struct app *a = arg;

	if (a->shutting_down) {
		log_info("shutdown: all requests finished");
		event_base_loopexit(a->base, NULL);
	}
}

/* The shutdown grace period ran out. */
static void
on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct app *a = arg;

	log_warn("shutdown: %zu request(s) still in flight after %lld s; exiting anyway",
	    http_server_inflight(a->http), (long long)a->cfg->shutdown_timeout);
	a->timed_out = true;
	event_base_loopexit(a->base, NULL);
}

/* Builds the application. */
struct app *
app_new(const struct config *cfg, struct event_base *base, struct store *st, char **errstr)
{
	struct app *a = xcalloc(1, sizeof *a);
	struct http_callbacks cb = {on_headers, on_request, on_finished, on_idle};
	struct http_opts opts;
	struct rlimit rl;
	uint64_t nofile = 1024;
	size_t i;

	a->cfg = cfg;
	a->base = base;
	a->store = st;
	a->spool_dir = xasprintf("%s/tmp/uploads", cfg->data_dir);
	if (mkdir_p(a->spool_dir, 0700, errstr) != 0)
		goto fail;
	spool_clean(a->spool_dir);
	a->router = router_new();
	for (i = 0; i < BV_NELEM(routes); i++) {
		if (!router_add(a->router, routes[i].method, routes[i].pattern, (int)i)) {
			*errstr = xasprintf("bad route pattern %s", routes[i].pattern);
			goto fail;
		}
	}
	a->auth = auth_new(cfg);
	if ((a->bitsauth = bitsauth_new(cfg, errstr)) == NULL)
		goto fail;
	a->pool = pool_new(
	    base, (int)cfg->api_threads, POOL_MAX_QUEUE, cfg->database_url, cfg->redis_url, errstr);
	if (a->pool == NULL)
		goto fail;
	opts.timeout_s = cfg->http_timeout;
	opts.header_timeout_s = cfg->http_header_timeout;
	opts.keepalive_timeout_s = cfg->http_keepalive_timeout;
	opts.max_headers = cfg->max_headers;
	opts.max_header_bytes = cfg->max_header_size;
	opts.max_url = cfg->max_url_length;
	opts.max_keepalive_requests = cfg->max_keepalive_requests;
	opts.max_body =
	    cfg->max_upload_size > cfg->max_json_size ? cfg->max_upload_size : cfg->max_json_size;
	if (bits_max_body(cfg) > opts.max_body)
		opts.max_body = bits_max_body(cfg);
	opts.discard_limit = cfg->max_json_size;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		nofile = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	opts.max_connections = http_connection_cap(nofile, FD_RESERVE + 2 * cfg->api_threads);
	log_info("up to %lld connections at once (open files limit %llu)",
	    (long long)opts.max_connections, (unsigned long long)nofile);
	a->upload_slots = cfg->api_threads / 2 > 1 ? (int)(cfg->api_threads / 2) : 1;
	a->http = http_server_new(base, &opts, &cb, a);
	a->waiter = waiter_new(base, on_wake, a);
	a->scache = statuscache_new((size_t)cfg->status_cache_entries);
	a->listener = db_listener_new(
	    base, cfg->database_url, "job_state", on_job_notify, on_listener_ready, a);
	return a;
fail:
	app_free(a);
	return NULL;
}

/* Binds and announces the address. */
int
app_listen(struct app *a, char **errstr)
{
	if (http_server_listen(a->http, a->cfg->listen, &a->bound, errstr) != 0)
		return -1;
	log_info("listening on http://%s", a->bound);
	return 0;
}

/* Serves on a listening socket shared with the other API processes (api/main.c). */
int
app_listen_fd(struct app *a, int fd, char **errstr)
{
	if (http_server_accept(a->http, fd, a->cfg->listen, &a->bound, errstr) != 0)
		return -1;
	log_info("serving http://%s", a->bound);
	return 0;
}

/* Starts a graceful shutdown. */
void
app_shutdown(struct app *a)
{
	struct timeval tv;
	size_t n;

	if (a->shutting_down) {
		log_info("shutdown already in progress");
		return;
	}
	a->shutting_down = true;
	http_server_drain(a->http);
	waiter_wake_all(a->waiter); /* long-polls answer now, with the status as it is */
	n = http_server_inflight(a->http);
	log_info("shutting down: stopped accepting, %zu request(s) in flight", n);
	if (n == 0) {
		event_base_loopexit(a->base, NULL);
		return;
	}
	a->shutdown_timer = evtimer_new(a->base, on_shutdown_timeout, a);
	tv.tv_sec = a->cfg->shutdown_timeout;
	tv.tv_usec = 0;
	evtimer_add(a->shutdown_timer, &tv);
}

/* main() may free nothing when pool threads could still be running a request. */
bool
app_timed_out(const struct app *a)
{
	return a->timed_out;
}

/* Frees the server (closing idle keep-alive connections), then the pool's threads. */
void
app_free(struct app *a)
{
	if (a == NULL)
		return;
	db_listener_free(a->listener);
	waiter_free(a->waiter);
	statuscache_free(a->scache);
	http_server_free(a->http, true);
	pool_free(a->pool);
	auth_free(a->auth);
	bitsauth_free(a->bitsauth);
	router_free(a->router);
	if (a->shutdown_timer != NULL)
		event_free(a->shutdown_timer);
	free(a->spool_dir);
	free(a->bound);
	free(a);
}

/* The route table (api/main.c's --routes; tests check every route's access with it). */
const struct call_route *
app_routes(size_t *n)
{
	*n = BV_NELEM(routes);
	return routes;
}
