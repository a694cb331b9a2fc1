/* statuscache.h: the status documents of done jobs, kept on the event loop so that a poll
 * of a done job is answered without a pool thread or Postgres.
 *
 * A done job's document only changes when the job expires (only then can a new job take
 * its key), and every such change is a NOTIFY job_state the API hears on its listener:
 * statuscache_notify drops the entry. Failed jobs are not kept: a new cook may take a
 * failed job's key at any time, through any API, and a client that saw the old "failed"
 * for the milliseconds a notification takes would give up on a cook that is running. A document read before a change and
 * handed in after it is refused (the seq check), and a listener that reconnects (it may
 * have missed notifications) clears the whole cache. Loop thread only: no locks. */
#ifndef BV_STATUSCACHE_H
#define BV_STATUSCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct statuscache;

/* One cached document: doc[0..hole) + the caller's part + doc[hole..len). */
struct statuscache_doc {
	const char *doc;
	size_t len;
	size_t hole;
	int64_t job_id;
};

/* A cache of at most max_entries documents (0: a cache that keeps nothing). */
struct statuscache *statuscache_new(size_t max_entries);
void statuscache_free(struct statuscache *sc);

/* The notification counter: read it before a document is read from Postgres. */
uint64_t statuscache_seq(const struct statuscache *sc);
/* The document under key, or false. *out stays valid until the next call on sc. */
bool statuscache_get(struct statuscache *sc, const char *key, struct statuscache_doc *out);
/* Keeps a copy of doc under key, unless key was notified after seq (the document may be
 * older than the change) or the cache is off. The least recently used entry makes room. */
void statuscache_put(
    struct statuscache *sc, const char *key, const struct statuscache_doc *doc, uint64_t seq);
/* A job with this key changed: its entry goes, and later puts read before now are refused. */
void statuscache_notify(struct statuscache *sc, const char *key);
/* Drops every entry and refuses every put read before now (the listener reconnected). */
void statuscache_clear(struct statuscache *sc);
size_t statuscache_count(const struct statuscache *sc);

#endif
