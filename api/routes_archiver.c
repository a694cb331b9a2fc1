/* routes_archiver.c: the PaaS.io Droplet Archiver (research bits-service.md §6, docs/api.md
 * "Droplet Archiver"), on the Bits store: a droplet posted to /droplets/{app}/{sha1} is a
 * Bits droplet with the key "<app>/<sha1>" (so GET /droplets/{app}/{sha1} serves it either
 * way). Unlike the original, the body is checked against the sha1 before anything is
 * stored (400, nothing stored) rather than answered 200 and deleted afterwards. A droplet
 * posted here is queued for every peer of archiver_sync_hosts (shared/archiver.c; sent and
 * reconciled by worker/replicate.c); one posted to /sync by a peer is not passed on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/bitsup.h"
#include "api/routes.h"
#include "shared/archiver.h"
#include "shared/bits.h"
#include "shared/log.h"

/* Keys asked in one POST /sync/have. */
#define HAVE_MAX 10000

static const struct bits_kind droplet_kind = {"/droplets/", "droplet", "droplet", "droplet"};

/* An app id as the archiver keeps it: 1 to 255 bytes of [A-Za-z0-9._-] (the original
 * wrote it into a file name unchecked). */
static bool
app_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	return n > 0 && n <= 255 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* POST /droplets/{app}/{sha1} and /sync/{app}/{sha1}: the raw body, streamed and hashed. */
enum call_bits_body
routes_archiver_put_headers(struct call *c)
{
	const char *app = router_param(&c->m, "app"), *sha1 = router_param(&c->m, "sha1");
	enum call_bits_body b;
	char *err = NULL;

	c->bits_kind = &droplet_kind;
	if (!app_ok(app) || sha1 == NULL || strlen(sha1) != 40 ||
	    strspn(sha1, "0123456789abcdef") != 40 || !hex_decode(sha1, c->bits_want, 20)) {
		resp_error(&c->resp, 400,
		    "the path must be /droplets/<app>/<sha1>: an app id of letters, digits, '.', "
		    "'_' or '-' and the droplet's sha1 in 40 lowercase hex digits");
		return CALL_BITS_REFUSE;
	}
	c->bits_want_len = 20;
	free(c->bits_key);
	c->bits_key = xasprintf("%s/%s", app, sha1);
	int64_t limit = c->cfg->bits_droplets_max_body_size > 0
	    ? c->cfg->bits_droplets_max_body_size
	    : c->cfg->bits_max_body_size;
	if ((b = routes_bits_check_limit(c, limit)) != CALL_BITS_NONE)
		return b;
	c->upload = bitsup_new(c->store, "droplet", NULL, 0, &err);
	if (c->upload != NULL)
		return CALL_BITS_STREAM;
	bool full = bitsup_disk_full(err);
	log_error_id(c->logid, "droplet upload: %s", err);
	free(err);
	resp_error(&c->resp, full ? 507 : 500, "%s",
	    full ? "no space left on the server" : "the droplet could not be stored");
	return CALL_BITS_REFUSE;
}

/* Stores the droplet; queues it for the peers unless it came from one. */
static void
store_droplet(struct call *c, struct pool_thread *t, bool replicate)
{
	unsigned char sha256[32], sha1[20];
	uint64_t size = 0;
	char *err = NULL, got[41];
	bool created = false;
	json_t *o;
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	bitsup_peek(c->upload, sha256, sha1);
	if (memcmp(sha1, c->bits_want, 20) != 0) {
		hex_encode(sha1, 20, got);
		log_info_id(c->logid, "droplet %s refused: its sha1 is %s", c->bits_key, got);
		resp_error(&c->resp, 400,
		    "the droplet's sha1 is %s, not the one in its path: nothing was stored", got);
		return;
	}
	if (bitsup_commit(c->upload, sha256, sha1, &size, &err) != 0) {
		bool full = bitsup_disk_full(err);
		log_error_id(c->logid, "droplet upload: %s", err);
		free(err);
		resp_error(&c->resp, full ? 507 : 500, "%s",
		    full ? "no space left on the server" : "the droplet could not be stored");
		return;
	}
	if (store_touch(c->store, sha256, &err) != 0) {
		log_warn_id(c->logid, "droplet upload: %s", err);
		free(err);
		resp_error(&c->resp, 503,
		    "the droplet was collected before it was recorded; "
		    "send it again");
		return;
	}
	/* Postgres first: the droplet's row, then its replicas to send (the workers find
	 * them there, so nothing is lost if Redis or a worker is away). */
	json_t *meta = json_pack("{s:b}", "archiver", 1);
	int put =
	    bits_put(db, "droplet", c->bits_key, sha256, sha1, (int64_t)size, meta, &created, &err);
	json_decref(meta);
	if (put != 0 ||
	    (replicate && c->cfg->archiver_sync_hosts[0] != '\0' &&
		archiver_queue(db, c->bits_key, c->cfg->archiver_sync_hosts, &err) != 0)) {
		call_db_failed(c, "recording a droplet", err);
		free(err);
		return;
	}
	log_info_id(c->logid, "droplet %s %s: %llu bytes%s", c->bits_key,
	    created ? "stored" : "stored again", (unsigned long long)size,
	    replicate && c->cfg->archiver_sync_hosts[0] != '\0' ? ", queued for the peers" : "");
	o = json_pack("{s:s, s:s, s:I, s:b}", "app", router_param(&c->m, "app"), "sha1",
	    router_param(&c->m, "sha1"), "size", (json_int_t)size, "created", created);
	resp_json(&c->resp, 200, o);
	json_decref(o);
}

void
routes_archiver_post_work(struct call *c, struct pool_thread *t)
{
	store_droplet(c, t, true);
}

void
routes_archiver_sync_work(struct call *c, struct pool_thread *t)
{
	store_droplet(c, t, false);
}

/* POST /sync/have {"keys": ["<app>/<sha1>", ...]}: which of them this server holds (a
 * peer's reconcile asks). */
int
routes_archiver_have_prepare(struct call *c)
{
	const json_t *keys = json_object_get(c->json, "keys");
	size_t i;
	json_t *v;

	if (!json_is_array(keys) || json_array_size(keys) > HAVE_MAX) {
		resp_error(&c->resp, 400, "the body must be {\"keys\": [...]} with at most %d keys",
		    HAVE_MAX);
		return -1;
	}
	json_array_foreach(keys, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) > 1024) {
			resp_error(&c->resp, 400, "keys must be strings");
			return -1;
		}
	}
	return 0;
}

void
routes_archiver_have_work(struct call *c, struct pool_thread *t)
{
	json_t *have = NULL, *o;
	char *err = NULL;
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	if (archiver_have(db, json_object_get(c->json, "keys"), &have, &err) != 0) {
		call_db_failed(c, "listing droplets", err);
		free(err);
		return;
	}
	o = json_pack("{s:o}", "have", have);
	resp_json(&c->resp, 200, o);
	json_decref(o);
}
