/* routes.h: the handlers behind each route. A prepare function runs on the event loop
 * (cheap validation; may answer at once), a work function on a pool thread (Postgres,
 * Redis, disk). The table that maps methods and paths to them is in api/app.c; each face
 * has its own file: routes_dirs.c (archive uploads and listings), routes_vault.c (cook,
 * status, download), routes_jobs.c (worker PATCH, job reads), routes_status.c (/status). */
#ifndef BV_ROUTES_H
#define BV_ROUTES_H

#include "api/call.h"

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

/* GET /status, GET /status/short */
void routes_status_work(struct call *c, struct pool_thread *t);
void routes_status_short_work(struct call *c, struct pool_thread *t);

#endif
