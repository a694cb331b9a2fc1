/* notify.c: notify_url callbacks. The API stores a cook's notify_url in
 * job_notifications; here, one worker at a time (advisory lock NOTIFY_LOCK_KEY) claims
 * the due ones whose job is final, reads the job's status document from the API (the
 * same JSON a polling client gets) and POSTs it to the URL. A 2xx is delivery; anything
 * else is retried with backoff (notify_backoff_ms x 1, 5, 30, 120, 600) until
 * notify_attempts tries, then the row is failed with its last error. The job itself is
 * never touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "worker/notify.h"

/* Rows claimed per pass. */
#define NOTIFY_BATCH 20
/* A claimed row is not due again for this long: a sender that dies mid-pass leaves its
 * rows to a later pass, not to a concurrent one. Longer than a pass can take. */
#define NOTIFY_CLAIM_LEASE_S 120
/* A pass stops sending after this long (receivers that hang each cost the timeout) and
 * puts the rest back, so that the worker goes back to its jobs. */
#define NOTIFY_PASS_BUDGET_MS 15000
/* Timeout of one POST to a receiver. */
#define NOTIFY_TIMEOUT_S 10
/* Retry of a row whose status document could not be read (the API, not the receiver). */
#define NOTIFY_API_RETRY_MS 5000

/* Backoff multipliers of notify_backoff_ms after the 1st, 2nd, ... failed attempt. */
static const int64_t backoff_steps[] = {1, 5, 30, 120, 600};

/* The POSTs to receivers: no Authorization (the worker token is for the API only). Only
 * the job loop's thread sends, so one handle does. */
static struct httpc *notify_hc;

/* Drops the query, fragment and userinfo. */
char *
notify_redact_url(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *auth = sep != NULL ? sep + 3 : url;
	size_t auth_len = strcspn(auth, "/?#");
	const char *at = NULL;

	for (const char *p = auth; p < auth + auth_len; p++)
		if (*p == '@')
			at = p;
	const char *host = at != NULL ? at + 1 : auth;
	size_t path_len = strcspn(auth + auth_len, "?#");
	return xasprintf("%.*s%.*s%.*s", (int)(auth - url), url, (int)(auth + auth_len - host),
	    host, (int)path_len, auth + auth_len);
}

/* The delay before the next try after failed attempt number `failed` (1-based). */
static int64_t
backoff_ms(const struct worker *w, int failed)
{
	size_t i = failed < 1 ? 0 : (size_t)failed - 1;

	if (i >= BV_NELEM(backoff_steps))
		i = BV_NELEM(backoff_steps) - 1;
	return w->cfg->notify_backoff_ms * backoff_steps[i];
}

/* The job's status document as the API serves it (with fetch_url), JSON text. NULL +
 * *errstr when the API could not give it. */
static char *
status_doc(struct worker *w, const struct job_notification *n, char **errstr)
{
	char *url = xasprintf("%s/vault/%s/%s/status?format=%s", w->api_base,
	    n->object_kind ? n->object_kind : "directory", n->object_id ? n->object_id : "",
	    n->format ? n->format : "tar.gz");
	struct buf resp;
	long status = 0;
	char *out = NULL;

	buf_init(&resp);
	if (httpc_json(w->hc, "GET", url, NULL, &status, &resp, errstr) != 0)
		goto done;
	json_t *doc =
	    status == 200 ? json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL) : NULL;
	if (doc == NULL) {
		*errstr = xasprintf("GET %s: status %ld", url, status);
		goto done;
	}
	/* The newest job of the bundle: a later cook (this one expired) would be another
	 * job, still the bundle's news, so it is sent as it is. */
	if (json_integer_value(json_object_get(doc, "id")) != n->job_id)
		log_info("job=%lld: the bundle has a newer job now; its status is sent",
		    (long long)n->job_id);
	out = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
done:
	buf_free(&resp);
	free(url);
	return out;
}

/* httpc's error without its "METHOD URL: " prefix, which holds the whole URL. */
static const char *
transport_reason(const char *err, const char *url)
{
	size_t ul = strlen(url);

	if (strncmp(err, "POST ", 5) == 0 && strncmp(err + 5, url, ul) == 0 &&
	    strncmp(err + 5 + ul, ": ", 2) == 0)
		return err + 5 + ul + 2;
	return err;
}

/* Records a failed attempt and logs it (with the redacted URL). */
static void
attempt_failed(struct worker *w, const struct job_notification *n, const char *why)
{
	char *safe = notify_redact_url(n->url), *err = NULL;
	int failed = n->attempts + 1;
	bool final = failed >= w->cfg->notify_attempts;
	int64_t delay = final ? 0 : backoff_ms(w, failed);
	char *last = xasprintf("%s: %s", safe, why);

	if (final)
		log_warn("job=%lld: notification to %s failed after %d attempts: %s; given up",
		    (long long)n->job_id, safe, failed, why);
	else
		log_warn("job=%lld: notification to %s failed (attempt %d of %lld): %s; retry in "
			 "%lld ms",
		    (long long)n->job_id, safe, failed, (long long)w->cfg->notify_attempts, why,
		    (long long)delay);
	if (jobstore_notify_failed(w->db, n->id, last, final, delay, &err) != 0) {
		trouble_fail(&w->pg_trouble, "notify: %s", err);
		free(err);
	}
	free(last);
	free(safe);
}

/* One notification: read the status, POST it, record the outcome. */
static void
send_one(struct worker *w, const struct job_notification *n)
{
	char *err = NULL, *body = status_doc(w, n, &err);
	long status = 0;

	if (body == NULL) {
		trouble_fail(&w->api_trouble, "notify: job %lld: %s", (long long)n->job_id, err);
		free(err);
		if (jobstore_notify_release(w->db, n->id, NOTIFY_API_RETRY_MS, &err) != 0) {
			trouble_fail(&w->pg_trouble, "notify: %s", err);
			free(err);
		}
		return;
	}
	if (notify_hc == NULL) {
		notify_hc = httpc_new(NULL, NOTIFY_TIMEOUT_S);
		/* A user's URL must not make the worker reach its own host or an internal
		 * service (SSRF): every address curl connects to is checked. */
		httpc_set_guard(notify_hc, !w->cfg->notify_allow_private);
	}
	if (httpc_json(notify_hc, "POST", n->url, body, &status, NULL, &err) != 0) {
		const char *why = transport_reason(err, n->url);
		char *reason = strncmp(why, "refused to connect to ", 22) == 0
		    ? xasprintf("%s (notify_allow_private is off)", why)
		    : xstrdup(why);

		attempt_failed(w, n, reason);
		free(reason);
		free(err);
	} else if (status < 200 || status > 299) {
		char why[48];

		snprintf(why, sizeof why, "answered HTTP %ld", status);
		attempt_failed(w, n, why);
	} else {
		char *safe = notify_redact_url(n->url);

		log_info("job=%lld: notified %s (HTTP %ld)", (long long)n->job_id, safe, status);
		free(safe);
		if (jobstore_notify_sent(w->db, n->id, &err) != 0) {
			/* Sent, not recorded: the row comes back after the claim lease and is
			 * sent again (at least once, never lost). */
			trouble_fail(&w->pg_trouble, "notify: %s", err);
			free(err);
		}
	}
	free(body);
}

/* One pass, one worker at a time. */
void
notify_run(struct worker *w)
{
	struct job_notification **list = NULL;
	size_t n = 0;
	char *err = NULL;
	uint64_t t0 = now_ms();

	if (!db_try_lock(w->db, NOTIFY_LOCK_KEY))
		return; /* another worker sends, or Postgres is down: the reconciler says so */
	if (jobstore_notify_claim(w->db, NOTIFY_BATCH, NOTIFY_CLAIM_LEASE_S, &list, &n, &err) !=
	    0) {
		trouble_fail(&w->pg_trouble, "notify: %s", err);
		free(err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (worker_stop || now_ms() - t0 > NOTIFY_PASS_BUDGET_MS) {
			/* Not tried: due again at once, for the next pass. */
			if (jobstore_notify_release(w->db, list[i]->id, 0, &err) != 0) {
				trouble_fail(&w->pg_trouble, "notify: %s", err);
				free(err);
			}
		} else {
			send_one(w, list[i]);
		}
		job_notification_free(list[i]);
	}
out:
	free(list);
	db_unlock(w->db, NOTIFY_LOCK_KEY);
}
