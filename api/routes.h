/* routes.h: the handlers behind each route. A prepare function runs on the event loop
 * (cheap validation; may answer at once), a work function on a pool thread (Postgres,
 * Redis, disk). The table that maps methods and paths to them is in api/app.c; each face
 * has its own file: routes_dirs.c (archive uploads and listings), routes_vault.c (cook,
 * status, download), routes_jobs.c (worker PATCH, job reads), routes_status.c (/status),
 * routes_requests.c and routes_requests_meta.c (Cachito's API v1 under /api/v1). */
#ifndef BV_ROUTES_H
#define BV_ROUTES_H

#include "api/call.h"
#include "shared/jobstore.h"
#include "shared/requests.h"

/* POST /directories and GET /directories/{id} */
int routes_dirs_upload_prepare(struct call *c);
void routes_dirs_upload_work(struct call *c, struct pool_thread *t);
int routes_dirs_get_prepare(struct call *c);
void routes_dirs_get_work(struct call *c, struct pool_thread *t);

/* POST /vault/{kind}/{id}, GET /vault/{kind}/{id}/status, GET|HEAD /vault/{kind}/{id} */
int routes_vault_cook_prepare(struct call *c);
void routes_vault_cook_work(struct call *c, struct pool_thread *t);
int routes_vault_read_prepare(struct call *c);
void routes_vault_status_work(struct call *c, struct pool_thread *t);
/* The status of a finished cook from the status cache (call_cached_fn), on both faces. */
bool routes_vault_status_cached(struct call *c, struct statuscache *sc, struct resp *out);
void routes_vault_fetch_work(struct call *c, struct pool_thread *t);

/* The helpers other Vault routes share: validates {kind}, {id} and ?format= (answers
 * the 4xx itself; 0 or -1), the call's bundle format ("tar.gz" when not given) and the
 * bundle's job key ("cook:<kind>:<hex>:<format>", caller frees). */
int routes_vault_parse_target(struct call *c);
const char *routes_vault_format(struct call *c);
char *routes_vault_dedup_key(struct call *c);

/* GET /vault/{kind}/{id}/status?wait=N (routes_wait.c) */
int routes_vault_status_wait_prepare(struct call *c);
void routes_vault_status_wait_work(struct call *c, struct pool_thread *t);

/* GET /vault/{kind}: bundles, page by page (routes_list.c) */
int routes_vault_list_prepare(struct call *c);
void routes_vault_list_work(struct call *c, struct pool_thread *t);

/* Software Heritage's own paths, so its clients work unchanged:
 * POST|GET /api/1/vault/{type}/{swhid}/ and GET|HEAD /api/1/vault/{type}/{swhid}/raw/ */
int routes_swh_prepare(struct call *c);
void routes_swh_cook_work(struct call *c, struct pool_thread *t);
void routes_swh_status_work(struct call *c, struct pool_thread *t);
void routes_swh_fetch_work(struct call *c, struct pool_thread *t);

/* PUT|DELETE /vault/{kind}/{id}/sticky[?format=]: an admin keeps a bundle from expiry
 * and eviction, or lets it go again (routes_sticky.c) */
int routes_vault_sticky_prepare(struct call *c);
void routes_vault_sticky_work(struct call *c, struct pool_thread *t);

/* POST /loads, GET /loads/{id}: loading a git repository (routes_loads.c) */
int routes_loads_create_prepare(struct call *c);
void routes_loads_create_work(struct call *c, struct pool_thread *t);
int routes_loads_get_prepare(struct call *c);
void routes_loads_get_work(struct call *c, struct pool_thread *t);

/* PATCH /jobs/{id}, GET /jobs/{id} */
int routes_jobs_patch_prepare(struct call *c);
void routes_jobs_patch_work(struct call *c, struct pool_thread *t);
int routes_jobs_get_prepare(struct call *c);
void routes_jobs_get_work(struct call *c, struct pool_thread *t);

/* GET /status, GET /status/short; GET /api/v1/status (Cachito's can_process per package
 * manager; /api/v1/status/short is routes_status_short_work) */
void routes_status_work(struct call *c, struct pool_thread *t);
void routes_status_short_work(struct call *c, struct pool_thread *t);
void routes_status_v1_work(struct call *c, struct pool_thread *t);

/* Cachito's API v1 (routes_requests.c): POST|GET /api/v1/requests,
 * GET /api/v1/requests/latest, GET|PATCH /api/v1/requests/{id}, and under it
 * GET download, environment-variables, logs, GET|POST configuration-files. */
int routes_requests_create_prepare(struct call *c);
void routes_requests_create_work(struct call *c, struct pool_thread *t);
int routes_requests_list_prepare(struct call *c);
void routes_requests_list_work(struct call *c, struct pool_thread *t);
int routes_requests_latest_prepare(struct call *c);
void routes_requests_latest_work(struct call *c, struct pool_thread *t);
int routes_requests_id_prepare(struct call *c);
void routes_requests_get_work(struct call *c, struct pool_thread *t);
int routes_requests_patch_prepare(struct call *c);
void routes_requests_patch_work(struct call *c, struct pool_thread *t);
void routes_requests_download_work(struct call *c, struct pool_thread *t);
void routes_requests_env_work(struct call *c, struct pool_thread *t);
void routes_requests_logs_work(struct call *c, struct pool_thread *t);
void routes_requests_config_get_work(struct call *c, struct pool_thread *t);
int routes_requests_config_post_prepare(struct call *c);
void routes_requests_config_post_work(struct call *c, struct pool_thread *t);

/* Content manifests and SBOMs (routes_requests_meta.c): GET
 * /api/v1/requests/{id}/content-manifest, GET /api/v1/content-manifest?requests=1,2 and
 * GET /api/v1/sbom?requests=1,2 */
void routes_requests_icm_work(struct call *c, struct pool_thread *t);
int routes_requests_multi_prepare(struct call *c);
void routes_requests_icm_multi_work(struct call *c, struct pool_thread *t);
void routes_requests_sbom_work(struct call *c, struct pool_thread *t);

/* Helpers routes_requests*.c share: Cachito's 404 ({"error": "The requested resource was
 * not found"}), and the request by the {id} capture (routes_requests_id_prepare put it in
 * c->job_id): 1 with *out, or 0 with the answer (404, 503) in c->resp. */
void routes_requests_not_found(struct call *c);
int routes_requests_load(struct call *c, struct db *db, struct request **out);

/* Given by api/app.c to the prepare steps (event loop only): the caller's name (a user
 * token's name, "admin", or the user a proxy named in request_user_header), or NULL
 * (caller frees), and whether that name may create requests for other users. */
char *app_caller_name(struct call *c);
bool app_caller_represents(struct call *c, const char *name);

/* The bits-service's resources (routes_bits.c): PUT (multipart upload, Digest upload or
 * {"source_guid"} copy), GET|HEAD, DELETE of packages, droplets, buildpacks and buildpack
 * cache entries; DELETE of the buildpack cache by app or whole. */
enum call_bits_body routes_bits_put_headers(struct call *c);
enum call_bits_body routes_bits_digest_headers(struct call *c);
int routes_bits_put_prepare(struct call *c);
void routes_bits_put_work(struct call *c, struct pool_thread *t);
int routes_bits_key_prepare(struct call *c);
void routes_bits_get_work(struct call *c, struct pool_thread *t);
void routes_bits_delete_work(struct call *c, struct pool_thread *t);
void routes_bits_delete_dir_work(struct call *c, struct pool_thread *t);

/* The most files a bundle or package may name (resources, and an application zip's files):
 * its job carries the list, and Postgres keeps a job's params in one value. */
#define BITS_MAX_FILES 100000

/* A Bits resource kind: its path prefix, the multipart field named after it, its table
 * kind, its noun in messages. */
struct bits_kind {
	const char *prefix; /* "/packages/" */
	const char *field; /* "package" */
	const char *kind; /* bits_resources.kind */
	const char *noun; /* for messages */
};
/* The body limit checks of research §1.7 (c->bits_kind set): with a limit, no
 * Content-Length is a 400 and one past it a 413 once the body is drained. CALL_BITS_NONE
 * when the body may come (c->body_limit set). */
enum call_bits_body routes_bits_check_limit(struct call *c, int64_t limit);
/* The bits-service's answer for a stored resource (c->bits_key): {"guid", "state": "READY",
 * "type": "bits", "created_at", "sha1", "sha256"} with that status. */
void routes_bits_stored(struct call *c, int status, const unsigned char sha1[20],
    const unsigned char sha256[32], double created);

/* A package PUT with matched resources (routes_bitspkg.c): the resources checked into
 * c->aux, then the assembly waited for and recorded. */
int routes_bitspkg_prepare(struct call *c, const char *text);
void routes_bitspkg_work(struct call *c, struct pool_thread *t, struct db *db);
/* A done job whose result blob is gone (collected, or the store lost it): expired, so the
 * next identical request makes a new one instead of finding the dead one again. */
void routes_bits_expire_job(struct call *c, struct db *db, int64_t job_id);
/* The job of kind for params (created, or the live one of identical params: its key is
 * key_prefix:<sha256 of the params>), a new one enqueued. The job (caller frees), or NULL
 * with c->resp set. */
struct job *routes_bits_job_start(struct call *c, struct pool_thread *t, struct db *db,
    const char *kind, const char *key_prefix, const json_t *params, bool *created);
/* A job not final yet: msg as a 503 with Retry-After, and the call parks until the job's
 * notification while c->wait_deadline_ms lasts (api/app.c). */
void routes_bits_job_wait(struct call *c, const struct job *job, const char *msg);

/* The app stash (routes_stash.c): POST /app_stash/matches, /app_stash/entries,
 * /app_stash/bundles. */
enum call_bits_body routes_stash_json_headers(struct call *c);
enum call_bits_body routes_stash_entries_headers(struct call *c);
int routes_stash_matches_prepare(struct call *c);
void routes_stash_matches_work(struct call *c, struct pool_thread *t);
int routes_stash_entries_prepare(struct call *c);
void routes_stash_entries_work(struct call *c, struct pool_thread *t);
/* POST /buildpacks, GET /buildpacks/{guid}/metadata (routes_buildpacks.c) */
enum call_bits_body routes_buildpacks_post_headers(struct call *c);
int routes_buildpacks_post_prepare(struct call *c);
void routes_buildpacks_post_work(struct call *c, struct pool_thread *t);
int routes_buildpacks_metadata_prepare(struct call *c);
void routes_buildpacks_metadata_work(struct call *c, struct pool_thread *t);
/* The Droplet Archiver (routes_archiver.c) */
enum call_bits_body routes_archiver_put_headers(struct call *c);
void routes_archiver_post_work(struct call *c, struct pool_thread *t);
void routes_archiver_sync_work(struct call *c, struct pool_thread *t);
int routes_archiver_have_prepare(struct call *c);
void routes_archiver_have_work(struct call *c, struct pool_thread *t);
/* CF v3 packages (routes_cfpkg.c) */
int routes_cfpkg_create_prepare(struct call *c);
int routes_cfpkg_create_legacy_prepare(struct call *c);
void routes_cfpkg_create_work(struct call *c, struct pool_thread *t);
int routes_cfpkg_guid_prepare(struct call *c);
void routes_cfpkg_get_work(struct call *c, struct pool_thread *t);
int routes_cfpkg_list_prepare(struct call *c);
void routes_cfpkg_list_work(struct call *c, struct pool_thread *t);
enum call_bits_body routes_cfpkg_upload_headers(struct call *c);
int routes_cfpkg_upload_prepare(struct call *c);
void routes_cfpkg_upload_work(struct call *c, struct pool_thread *t);
void routes_cfpkg_download_work(struct call *c, struct pool_thread *t);
void routes_cfpkg_delete_work(struct call *c, struct pool_thread *t);
/* CF's 400 for a /v3 body that is not JSON (api/app.c answers it for those routes). */
void routes_cfpkg_bad_json(struct call *c);
enum call_bits_body routes_stash_bundles_headers(struct call *c);
int routes_stash_bundles_prepare(struct call *c);
void routes_stash_bundles_work(struct call *c, struct pool_thread *t);

#endif
