/* replicate.c: the Droplet Archiver's replication (docs/api.md "Droplet Archiver"), two
 * duties of the job loop:
 *   - replicate_run: the due pending rows of droplet_replicas (any worker: each row is
 *     claimed with SKIP LOCKED and a lease) are sent to their peer's POST /sync/{app}/{sha1}
 *     with this server's credentials. 2xx: done. Anything else is retried with backoff
 *     (2 s doubling to an hour), forever: a peer down for a day gets everything when it is
 *     back. A droplet deleted meanwhile drops its rows.
 *   - reconcile_run: every archiver_sync_interval one worker (advisory lock) walks the
 *     droplets in key order, asks each peer which of a page it holds (POST /sync/have) and
 *     puts back to pending what a peer lacks: a peer that lost its data, or one added to
 *     archiver_sync_hosts later, is filled in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/archiver.h"
#include "shared/bits.h"
#include "shared/httpc.h"
#include "shared/log.h"
#include "worker/worker.h"

/* Rows claimed per pass, and how long a claimed row is not due again. */
#define REPLICATE_BATCH 8
#define REPLICATE_LEASE_S 600
/* A pass stops claiming after this long, so the worker goes back to its jobs. */
#define REPLICATE_PASS_BUDGET_MS 20000
/* A transfer stalled this long is dropped. */
#define REPLICATE_STALL_S 60
/* Backoff: 2 s after the first failure, doubling, at most an hour. */
#define REPLICATE_BACKOFF_MIN_MS 2000
#define REPLICATE_BACKOFF_MAX_MS 3600000
/* Keys asked of a peer per POST /sync/have. */
#define RECONCILE_PAGE 1000

/* The peers' client: only the job loop's thread sends. */
static struct httpc *peer_hc;

/* The delay after `failed` failed attempts (1-based). */
static int64_t
backoff_ms(int failed)
{
	int64_t d = REPLICATE_BACKOFF_MIN_MS;

	for (int i = 1; i < failed && d < REPLICATE_BACKOFF_MAX_MS; i++)
		d *= 2;
	return d < REPLICATE_BACKOFF_MAX_MS ? d : REPLICATE_BACKOFF_MAX_MS;
}

/* The credentials presented to peers ("user:password"), or NULL. New. */
static char *
userpwd(const struct config *cfg)
{
	if (cfg->archiver_sync_user[0] == '\0')
		return NULL;
	return xasprintf("%s:%s", cfg->archiver_sync_user, cfg->archiver_sync_password);
}

/* Sends one droplet to one peer. NULL when the peer took it, else why not (new). */
static char *
send_one(struct worker *w, const struct archiver_due *d, bool *gone)
{
	struct bits_resource r;
	char *err = NULL, *url, *cred, *why = NULL;
	uint64_t size = 0;
	long status = 0;
	struct buf resp;
	int fd, found;

	*gone = false;
	found = bits_get(w->db, "droplet", d->key, &r, &err);
	if (found < 0) {
		why = xasprintf("the database failed: %s", err);
		free(err);
		return why;
	}
	if (found == 0) {
		*gone = true;
		return xstrdup("the droplet is gone");
	}
	bits_resource_clear(&r);
	if ((fd = store_open_blob(w->store, r.sha256, &size, &err)) < 0) {
		why = xasprintf("the droplet cannot be read from the store: %s", err);
		free(err);
		return why;
	}
	url = xasprintf("http://%s/sync/%s", d->peer, d->key);
	cred = userpwd(w->cfg);
	buf_init(&resp);
	if (httpc_post_file(
		peer_hc, url, cred, fd, size, REPLICATE_STALL_S, &status, &resp, &err) != 0) {
		why = err;
	} else if (status < 200 || status > 299) {
		why = xasprintf("the peer answered HTTP %ld: %.200s", status,
		    resp.data != NULL ? resp.data : "");
	}
	if (cred != NULL) {
		memset(cred, 0, strlen(cred));
		free(cred);
	}
	buf_free(&resp);
	free(url);
	close(fd);
	return why;
}

void
replicate_run(struct worker *w)
{
	uint64_t start = now_ms();
	struct archiver_due *due = NULL;
	size_t n = 0;
	char *err = NULL;

	if (w->cfg->archiver_sync_hosts[0] == '\0')
		return;
	if (peer_hc == NULL)
		peer_hc = httpc_new(NULL, 60);
	while (!worker_stop && now_ms() - start < REPLICATE_PASS_BUDGET_MS) {
		if (archiver_claim(w->db, REPLICATE_BATCH, REPLICATE_LEASE_S, &due, &n, &err) !=
		    0) {
			log_warn("replication: cannot claim droplets to send: %s", err);
			free(err);
			return;
		}
		if (n == 0) {
			archiver_due_free(due, n);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			bool gone = false;
			char *why = worker_stop ? xstrdup("the worker stopped")
						: send_one(w, &due[i], &gone);
			int rc;
			if (why == NULL) {
				log_info(
				    "replication: droplet %s sent to %s", due[i].key, due[i].peer);
				rc = archiver_done(w->db, due[i].key, due[i].peer, &err);
			} else if (gone) {
				rc = archiver_forget(w->db, due[i].key, &err);
			} else {
				int64_t delay = backoff_ms(due[i].attempts + 1);
				log_warn(
				    "replication: droplet %s to %s (attempt %d, again in %lld s): %s",
				    due[i].key, due[i].peer, due[i].attempts + 1,
				    (long long)(delay / 1000), why);
				rc = archiver_failed(
				    w->db, due[i].key, due[i].peer, why, delay, &err);
			}
			free(why);
			if (rc != 0) {
				/* The lease brings the row back later. */
				log_warn("replication: cannot record an outcome: %s", err);
				free(err);
				err = NULL;
			}
			worker_heartbeat(w, false);
		}
		archiver_due_free(due, n);
		due = NULL;
	}
}

/* Asks peer which of keys it holds and queues the others. -1 when the peer could not
 * answer (the pass moves on to the next peer). */
static int
reconcile_page(struct worker *w, const char *peer, json_t *keys, size_t *queued)
{
	json_t *body = json_pack("{s:O}", "keys", keys), *have, *doc, *k;
	char *text = json_dumps(body, JSON_COMPACT), *url = xasprintf("http://%s/sync/have", peer);
	char *cred = userpwd(w->cfg), *err = NULL;
	struct buf resp;
	long status = 0;
	size_t i;
	int rc = -1;

	buf_init(&resp);
	if (httpc_json_basic(peer_hc, "POST", url, cred, text, &status, &resp, &err) != 0) {
		log_warn("reconcile with %s: %s", peer, err);
		free(err);
		goto out;
	}
	if (status != 200 ||
	    (doc = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL)) == NULL) {
		log_warn("reconcile with %s: the peer answered HTTP %ld", peer, status);
		goto out;
	}
	have = json_object();
	json_array_foreach(json_object_get(doc, "have"), i, k)
	{
		if (json_is_string(k))
			json_object_set(have, json_string_value(k), json_true());
	}
	json_array_foreach(keys, i, k)
	{
		if (json_object_get(have, json_string_value(k)) != NULL)
			continue;
		int q = archiver_queue_missing(w->db, json_string_value(k), peer, &err);
		if (q < 0) {
			log_warn("reconcile with %s: %s", peer, err);
			free(err);
			err = NULL;
		} else if (q > 0) {
			(*queued)++;
		}
	}
	json_decref(have);
	json_decref(doc);
	rc = 0;
out:
	if (cred != NULL) {
		memset(cred, 0, strlen(cred));
		free(cred);
	}
	buf_free(&resp);
	json_decref(body);
	free(text);
	free(url);
	return rc;
}

void
reconcile_run(struct worker *w)
{
	char *hosts, *save = NULL, *err = NULL;

	if (w->cfg->archiver_sync_hosts[0] == '\0' || !db_try_lock(w->db, SYNC_LOCK_KEY))
		return;
	if (peer_hc == NULL)
		peer_hc = httpc_new(NULL, 60);
	hosts = xstrdup(w->cfg->archiver_sync_hosts);
	for (char *p = strtok_r(hosts, ",", &save); p != NULL && !worker_stop;
	     p = strtok_r(NULL, ",", &save)) {
		char *after = xstrdup("");
		size_t queued = 0, seen = 0;
		json_t *keys = NULL;

		while (*p == ' ' || *p == '\t')
			p++;
		for (size_t n = strlen(p); n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'); n--)
			p[n - 1] = '\0';
		if (*p == '\0') {
			free(after);
			continue;
		}
		while (!worker_stop) {
			if (archiver_keys(w->db, after, RECONCILE_PAGE, &keys, &err) != 0) {
				log_warn("reconcile: cannot list droplets: %s", err);
				free(err);
				err = NULL;
				break;
			}
			size_t n = json_array_size(keys);
			if (n == 0 || reconcile_page(w, p, keys, &queued) != 0) {
				json_decref(keys);
				break;
			}
			seen += n;
			free(after);
			after = xstrdup(json_string_value(json_array_get(keys, n - 1)));
			json_decref(keys);
			worker_heartbeat(w, false);
		}
		if (queued > 0)
			log_info("reconcile with %s: %zu of %zu droplets missing there, queued", p,
			    queued, seen);
		free(after);
	}
	free(hosts);
	db_unlock(w->db, SYNC_LOCK_KEY);
}
