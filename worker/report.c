/* report.c: the worker's side of PATCH /jobs/{id}. The API is the only writer of job
 * state, so claims, progress and final states all go through it; Postgres is read
 * directly only for parameters and objects. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "worker/worker.h"

/* Progress goes out at most this often. */
#define PROGRESS_INTERVAL_MS 1000

/* The "error" member of an API error answer, or a short excerpt of the body. */
static char *
api_error_text(const struct buf *resp)
{
	json_t *root = json_loadb(resp->data ? resp->data : "", resp->len, 0, NULL);
	const char *msg = json_string_value(json_object_get(root, "error"));
	char *out;

	if (msg != NULL)
		out = xstrdup(msg);
	else if (resp->len > 0)
		out = xasprintf("%.200s", resp->data);
	else
		out = xstrdup("no message");
	json_decref(root);
	return out;
}

/* One PATCH /jobs/{id}; the status says what the caller may do next. */
enum report_status
report_patch(const struct worker *w, struct httpc *hc, int64_t job_id, const json_t *body,
    char **state, char **errstr)
{
	char *text = json_dumps(body, JSON_COMPACT);
	char *url = xasprintf("%s/jobs/%lld", w->api_base, (long long)job_id);
	enum report_status rs;
	struct buf resp;
	long status = 0;
	char *err = NULL;

	buf_init(&resp);
	if (httpc_json(hc, "PATCH", url, text, &status, &resp, &err) != 0) {
		*errstr = err;
		rs = REPORT_UNREACHABLE;
	} else if (status == 200) {
		json_t *root = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
		const char *s = json_string_value(json_object_get(root, "state"));
		if (s != NULL) {
			*state = xstrdup(s);
			rs = REPORT_OK;
		} else {
			*errstr = xasprintf("PATCH %s: the answer has no job state", url);
			rs = REPORT_UNREACHABLE;
		}
		json_decref(root);
	} else if (status == 400 || status == 404 || status == 409) {
		char *msg = api_error_text(&resp);
		*errstr = xasprintf("HTTP %ld: %s", status, msg);
		free(msg);
		rs = status == 409 ? REPORT_CONFLICT : REPORT_REJECTED;
	} else if (status == 401 || status == 403) {
		/* A configuration problem (worker_token), not the job's: keep the job. */
		*errstr =
		    xasprintf("PATCH %s: the API refused the worker token (HTTP %ld)", url, status);
		rs = REPORT_UNREACHABLE;
	} else {
		char *msg = api_error_text(&resp);
		*errstr = xasprintf("PATCH %s: HTTP %ld: %s", url, status, msg);
		free(msg);
		rs = REPORT_UNREACHABLE;
	}
	buf_free(&resp);
	free(url);
	free(text);
	return rs;
}

/* report_patch until the API answers; the failures are logged here (rate-limited), so the
 * caller gets no error text for REPORT_UNREACHABLE. */
enum report_status
report_patch_retry(struct worker *w, int64_t job_id, const json_t *body, uint64_t max_ms,
    char **state, char **errstr)
{
	uint64_t start = now_ms(), delay = 250;

	for (;;) {
		char *err = NULL;
		enum report_status rs = report_patch(w, w->hc, job_id, body, state, &err);
		if (rs != REPORT_UNREACHABLE) {
			trouble_ok(&w->api_trouble);
			if (rs != REPORT_OK)
				*errstr = err;
			return rs;
		}
		trouble_fail(&w->api_trouble, "job %lld: %s", (long long)job_id, err);
		free(err);
		if (worker_stop || now_ms() - start + delay > max_ms)
			return rs;
		worker_sleep(delay);
		delay = delay * 2 > 8000 ? 8000 : delay * 2;
	}
}

/* Stops the job when the keepalive thread learned it is no longer ours; then sends a
 * changed message, at most once per PROGRESS_INTERVAL_MS unless now. */
static bool
report_due(struct job_run *run, bool now_please)
{
	struct worker *w = run->w;
	uint64_t now = now_ms();
	char *err = NULL, *why = NULL;

	if (run->cancelled)
		return false;
	if (lease_lost(run->lease, &why)) {
		log_info_id(run->log_id, "no longer ours (%s); stopping", why);
		free(why);
		run->cancelled = true;
		return false;
	}
	if (!now_please && run->last_report_ms != 0 &&
	    now - run->last_report_ms < PROGRESS_INTERVAL_MS)
		return true;
	if (run->message == NULL ||
	    (run->sent_message != NULL && strcmp(run->message, run->sent_message) == 0))
		return true;
	run->last_report_ms = now;

	/* "worker" makes it an owner's report: the API answers 409 if another worker
	 * took the job over. */
	char *clipped = report_clip(run->message, REPORT_MAX_PROGRESS);
	json_t *body = json_pack("{s:s, s:s}", "worker", w->id, "progress_message", clipped);
	free(clipped);
	char *state = NULL;
	enum report_status rs = report_patch(w, w->hc_progress, run->job->id, body, &state, &err);
	json_decref(body);
	switch (rs) {
	case REPORT_OK:
		free(run->sent_message);
		run->sent_message = xstrdup(run->message);
		if (strcmp(state, "running") != 0) {
			log_info_id(run->log_id, "the job is already %s; stopping", state);
			run->cancelled = true;
		}
		break;
	case REPORT_REJECTED:
	case REPORT_CONFLICT:
		/* 404: the job is gone; 400: it cannot take progress any more; 409: another
		 * worker holds it. Never retried: the job is not ours to run. */
		log_info_id(run->log_id, "the API refused a progress report (%s); stopping", err);
		run->cancelled = true;
		break;
	case REPORT_UNREACHABLE:
		/* Progress is best effort: the final report retries, this one need not. */
		log_debug_id(run->log_id, "progress report not delivered: %s", err);
		break;
	}
	free(state);
	free(err);
	return !run->cancelled;
}

/* Replaces the run's message with a formatted one. */
static void
set_message(struct job_run *run, const char *fmt, va_list ap)
{
	free(run->message);
	run->message = xvasprintf(fmt, ap);
}

/* Records the handler's message and sends it when due. */
bool
job_progress(struct job_run *run, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_message(run, fmt, ap);
	va_end(ap);
	return report_due(run, false);
}

/* Records the message and sends it at once. */
bool
job_phase(struct job_run *run, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_message(run, fmt, ap);
	va_end(ap);
	return report_due(run, true);
}

/* For long files: whether to go on (and a pending message when due). */
bool
job_keepalive(struct job_run *run)
{
	return report_due(run, false);
}

/* Cuts s to max bytes without splitting a UTF-8 sequence. */
char *
report_clip(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return xstrdup(s);
	n = max - 3;
	/* back off continuation bytes (10xxxxxx) so the cut falls between characters */
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	char *out = xmalloc(n + 4);
	memcpy(out, s, n);
	memcpy(out + n, "...", 4);
	return out;
}
