/* notify.h: the worker duty that sends notify_url callbacks (docs/worker.md,
 * "Notifications"). */
#ifndef BV_WORKER_NOTIFY_H
#define BV_WORKER_NOTIFY_H

#include "worker/worker.h"

/* One pass: if this worker gets NOTIFY_LOCK_KEY, POSTs the final status of finished jobs
 * to their due notify_urls, recording each outcome. Never fails loudly: problems are
 * logged and retried on a later pass. Runs on the job loop's thread. */
void notify_run(struct worker *w);
/* "scheme://host/path" of a URL: no query or fragment (they may carry a token) and no
 * userinfo. A new string. */
char *notify_redact_url(const char *url);

#endif
