/* routes_status.c: GET /status and GET /status/short, shaped like Cachito's (research
 * cachito.md §5): the services the API depends on (Postgres, Redis, the store), the
 * workers whose heartbeats are alive, and whether a cook could be processed now. Anyone
 * may read these, so a failing service's reason is a fixed sentence; the real error goes
 * to the log (redacted: never a password). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "shared/db.h"
#include "shared/kv.h"
#include "shared/log.h"

/* What anonymous clients are told: fixed sentences. The real errors (host names, paths,
 * library messages) go to the log with the request id. */
#define REASON_PG "database connection failed"
#define REASON_REDIS "redis connection failed"
#define REASON_STORE "storage is not writable"
#define REASON_WORKERS "no workers are available"

struct health {
	bool pg_ok, redis_ok, store_ok;
	bool space_known; /* free_bytes and total_bytes are set */
	uint64_t free_bytes, total_bytes;
	json_t *workers; /* array; NULL when Redis could not say */
	bool stop_early; /* /status/short: stop at the first problem */
};

/* Postgres answers a trivial query. */
static void
check_postgres(struct call *c, struct pool_thread *t, struct health *h)
{
	char *err = NULL, *safe;
	struct db *db = pool_thread_db(t, &err);

	if (db != NULL && db_run(db, "SELECT 1", 0, NULL, &err) == 0) {
		h->pg_ok = true;
		return;
	}
	safe = call_redact(c->cfg, err != NULL ? err : "connection failed");
	log_warn_id(c->logid, "status: %s", safe);
	free(safe);
	free(err);
}

/* Redis answers PING. */
static void
check_redis(struct call *c, struct pool_thread *t, struct health *h)
{
	char *err = NULL, *safe;
	struct kv *kv = pool_thread_kv(t, &err);

	if (kv != NULL && kv_ping(kv, &err) == 0) {
		h->redis_ok = true;
		return;
	}
	safe = call_redact(c->cfg, err != NULL ? err : "connection failed");
	log_warn_id(c->logid, "status: redis: %s", safe);
	free(safe);
	free(err);
}

/* The store takes a probe file; its file system's space is reported too. A backend
 * that cannot tell its space (ENOTSUP, S3) is fine: the space is just left out. */
static void
check_storage(struct call *c, struct health *h)
{
	char *err = NULL;

	if (store_probe(c->store, &err) == 0) {
		if (store_space(c->store, &h->free_bytes, &h->total_bytes, &err) == 0) {
			h->store_ok = h->space_known = true;
			return;
		}
		if (errno == ENOTSUP) {
			h->store_ok = true;
			free(err);
			return;
		}
	}
	log_warn_id(c->logid, "status: storage: %s", err != NULL ? err : "not writable");
	free(err);
}

/* Live workers from their heartbeat keys, each marked ok. */
static void
check_workers(struct call *c, struct pool_thread *t, struct health *h)
{
	char *err = NULL, *text;
	struct kv *kv = pool_thread_kv(t, &err);
	json_t *arr, *w;
	json_error_t jerr;
	size_t i;

	if (kv == NULL || (text = kv_workers(kv, &err)) == NULL) {
		log_warn_id(c->logid, "status: workers: %s", err != NULL ? err : "unknown error");
		free(err);
		return;
	}
	arr = json_loads(text, 0, &jerr);
	free(text);
	if (!json_is_array(arr)) {
		log_warn_id(c->logid, "status: workers: not a JSON array: %s", jerr.text);
		json_decref(arr);
		return;
	}
	json_array_foreach(arr, i, w)
	{
		if (json_is_object(w))
			json_object_set_new(w, "ok", json_true());
	}
	h->workers = arr;
}

/* Runs the checks in Cachito's order, stopping at the first failure when asked. */
static void
check_all(struct call *c, struct pool_thread *t, struct health *h)
{
	check_postgres(c, t, h);
	if (h->stop_early && !h->pg_ok)
		return;
	check_redis(c, t, h);
	if (h->stop_early && !h->redis_ok)
		return;
	check_storage(c, h);
	if (h->stop_early && !h->store_ok)
		return;
	if (h->redis_ok)
		check_workers(c, t, h);
}

/* Frees what the checks filled in (h itself lives on the caller's stack). */
static void
health_free(struct health *h)
{
	json_decref(h->workers);
}

/* One entry of "services". */
static json_t *
service(const char *name, bool ok, const char *reason)
{
	json_t *s = json_pack("{s:s,s:b}", "name", name, "ok", ok);

	if (!ok)
		json_object_set_new(s, "reason", json_string(reason));
	return s;
}

/* The services entries of the health checks. */
static json_t *
services_json(const struct health *h)
{
	json_t *services = json_array(), *st;

	json_array_append_new(services, service("postgres", h->pg_ok, REASON_PG));
	json_array_append_new(services, service("redis", h->redis_ok, REASON_REDIS));
	st = service("storage", h->store_ok, REASON_STORE);
	if (h->space_known) {
		json_object_set_new(st, "free_bytes", json_integer((json_int_t)h->free_bytes));
		json_object_set_new(st, "total_bytes", json_integer((json_int_t)h->total_bytes));
	}
	json_array_append_new(services, st);
	return services;
}

/* Package managers Cachito's clients may name, and whether bitsvault's workers can
 * process each yet (the others stay false in can_process whatever the config says). */
static const struct {
	const char *name;
	bool built;
} request_pms[] = {
    {"gomod", false},
    {"npm", true},
    {"pip", false},
    {"git-submodule", true},
    {"yarn", false},
    {"rubygems", false},
    {"generic", true},
};

/* GET /api/v1/status: Cachito's document; can_process names every package manager,
 * true for the enabled ones bitsvault can process while services and workers are fine. */
void
routes_status_v1_work(struct call *c, struct pool_thread *t)
{
	struct health h;
	json_t *o, *can = json_object();
	bool ok;

	memset(&h, 0, sizeof h);
	check_all(c, t, &h);
	ok = h.pg_ok && h.redis_ok && h.store_ok && h.workers != NULL &&
	    json_array_size(h.workers) > 0;
	for (size_t i = 0; i < BV_NELEM(request_pms); i++)
		json_object_set_new(can, request_pms[i].name,
		    json_boolean(ok && request_pms[i].built &&
			csv_has(c->cfg->request_package_managers, request_pms[i].name)));
	o = json_pack("{s:o,s:o,s:o}", "can_process", can, "services", services_json(&h), "workers",
	    h.workers != NULL ? json_incref(h.workers) : json_array());
	resp_json(&c->resp, 200, o);
	json_decref(o);
	health_free(&h);
}

/* GET /status: always 200; the document says what is wrong. */
void
routes_status_work(struct call *c, struct pool_thread *t)
{
	struct health h;
	json_t *o, *services;
	bool workers_alive;

	memset(&h, 0, sizeof h);
	check_all(c, t, &h);
	workers_alive = h.workers != NULL && json_array_size(h.workers) > 0;
	services = services_json(&h);
	o = json_pack("{s:{s:b},s:o,s:o}", "can_process", "cook",
	    h.pg_ok && h.redis_ok && h.store_ok && workers_alive, "services", services, "workers",
	    h.workers != NULL ? json_incref(h.workers) : json_array());
	resp_json(&c->resp, 200, o);
	json_decref(o);
	health_free(&h);
}

/* GET /status/short: 200 {"ok":true} or 503 with the first problem found. */
void
routes_status_short_work(struct call *c, struct pool_thread *t)
{
	struct health h;
	const char *reason = NULL;
	json_t *o;

	memset(&h, 0, sizeof h);
	h.stop_early = true;
	check_all(c, t, &h);
	if (!h.pg_ok)
		reason = REASON_PG;
	else if (!h.redis_ok)
		reason = REASON_REDIS;
	else if (!h.store_ok)
		reason = REASON_STORE;
	else if (h.workers == NULL || json_array_size(h.workers) == 0)
		reason = REASON_WORKERS;
	if (reason == NULL) {
		o = json_pack("{s:b}", "ok", 1);
		resp_json(&c->resp, 200, o);
	} else {
		o = json_pack("{s:b,s:s}", "ok", 0, "reason", reason);
		resp_json(&c->resp, 503, o);
	}
	json_decref(o);
	health_free(&h);
}
