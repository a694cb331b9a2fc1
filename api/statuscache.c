/* statuscache.c: done jobs' status documents by key (see statuscache.h). A chained
 * hash table for lookups, a doubly linked list for least-recently-used eviction, and a
 * ring of the latest notifications (as in api/waiter.c) for the seq check. */
#include <stdlib.h>
#include <string.h>

#include "api/statuscache.h"
#include "shared/util.h"

#define RECENT 4096

struct entry {
	char *key;
	uint64_t hash;
	char *doc;
	size_t len;
	size_t hole;
	int64_t job_id;
	struct entry *hnext; /* the bucket's chain */
	struct entry *prev, *next; /* most recently used first */
};

struct statuscache {
	size_t max;
	size_t n;
	size_t nbuckets; /* a power of two */
	struct entry **buckets;
	struct entry *head, *tail;
	uint64_t seq;
	uint64_t cleared; /* the seq of the last clear: older reads are refused */
	struct {
		uint64_t hash;
		uint64_t seq;
	} recent[RECENT]; /* the last notifications, by seq % RECENT */
};

/* FNV-1a: keys are short ASCII ("cook:directory:<hex>:tar.gz"). */
static uint64_t
hash_key(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	return h;
}

/* A new cache. */
struct statuscache *
statuscache_new(size_t max_entries)
{
	struct statuscache *sc = xcalloc(1, sizeof *sc);

	sc->max = max_entries;
	sc->nbuckets = 16;
	while (sc->nbuckets < max_entries && sc->nbuckets < ((size_t)1 << 24))
		sc->nbuckets <<= 1;
	sc->buckets = xcalloc(sc->nbuckets, sizeof *sc->buckets);
	return sc;
}

/* Unlinks e from the recency list. */
static void
lru_unlink(struct statuscache *sc, struct entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		sc->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		sc->tail = e->prev;
	e->prev = e->next = NULL;
}

/* Puts e first in the recency list. */
static void
lru_push(struct statuscache *sc, struct entry *e)
{
	e->prev = NULL;
	e->next = sc->head;
	if (sc->head != NULL)
		sc->head->prev = e;
	sc->head = e;
	if (sc->tail == NULL)
		sc->tail = e;
}

/* The slot that points at key's entry (or at the NULL ending its chain). */
static struct entry **
find_slot(struct statuscache *sc, const char *key, uint64_t h)
{
	struct entry **pp = &sc->buckets[h & (sc->nbuckets - 1)];

	while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->hnext;
	return pp;
}

/* Unlinks and frees the entry *pp points at. */
static void
drop(struct statuscache *sc, struct entry **pp)
{
	struct entry *e = *pp;

	*pp = e->hnext;
	lru_unlink(sc, e);
	sc->n--;
	free(e->key);
	free(e->doc);
	free(e);
}

/* Drops every entry. */
static void
drop_all(struct statuscache *sc)
{
	while (sc->head != NULL) {
		struct entry *e = sc->head;

		drop(sc, find_slot(sc, e->key, e->hash));
	}
}

/* Frees the cache. */
void
statuscache_free(struct statuscache *sc)
{
	if (sc == NULL)
		return;
	drop_all(sc);
	free(sc->buckets);
	free(sc);
}

/* The notification counter. */
uint64_t
statuscache_seq(const struct statuscache *sc)
{
	return sc->seq;
}

/* The number of documents kept. */
size_t
statuscache_count(const struct statuscache *sc)
{
	return sc->n;
}

/* Whether a document read at seq may predate a change of key's job (a clear, a
 * notification for the key, or more notifications than the ring remembers). */
static bool
changed_since(const struct statuscache *sc, uint64_t h, uint64_t seq)
{
	if (seq < sc->cleared)
		return true;
	if (sc->seq - seq >= RECENT)
		return sc->seq != seq;
	for (uint64_t s = seq + 1; s <= sc->seq; s++)
		if (sc->recent[s % RECENT].seq == s && sc->recent[s % RECENT].hash == h)
			return true;
	return false;
}

/* Looks key up; a hit becomes the most recently used. */
bool
statuscache_get(struct statuscache *sc, const char *key, struct statuscache_doc *out)
{
	uint64_t h = hash_key(key);
	struct entry *e = *find_slot(sc, key, h);

	if (e == NULL)
		return false;
	if (sc->head != e) {
		lru_unlink(sc, e);
		lru_push(sc, e);
	}
	out->doc = e->doc;
	out->len = e->len;
	out->hole = e->hole;
	out->job_id = e->job_id;
	return true;
}

/* Keeps a copy of doc under key (see statuscache.h). */
void
statuscache_put(
    struct statuscache *sc, const char *key, const struct statuscache_doc *doc, uint64_t seq)
{
	uint64_t h = hash_key(key);
	struct entry **pp, *e;

	if (sc->max == 0 || doc->hole > doc->len || changed_since(sc, h, seq))
		return;
	pp = find_slot(sc, key, h);
	if (*pp != NULL)
		drop(sc, pp);
	while (sc->n >= sc->max)
		drop(sc, find_slot(sc, sc->tail->key, sc->tail->hash));
	e = xcalloc(1, sizeof *e);
	e->key = xstrdup(key);
	e->hash = h;
	e->doc = xmalloc(doc->len + 1);
	memcpy(e->doc, doc->doc, doc->len);
	e->doc[doc->len] = '\0';
	e->len = doc->len;
	e->hole = doc->hole;
	e->job_id = doc->job_id;
	pp = &sc->buckets[h & (sc->nbuckets - 1)];
	e->hnext = *pp;
	*pp = e;
	lru_push(sc, e);
	sc->n++;
}

/* A job with key changed. */
void
statuscache_notify(struct statuscache *sc, const char *key)
{
	uint64_t h = hash_key(key);
	struct entry **pp = find_slot(sc, key, h);

	sc->seq++;
	sc->recent[sc->seq % RECENT].hash = h;
	sc->recent[sc->seq % RECENT].seq = sc->seq;
	if (*pp != NULL)
		drop(sc, pp);
}

/* Forgets everything (see statuscache.h). */
void
statuscache_clear(struct statuscache *sc)
{
	drop_all(sc);
	sc->cleared = ++sc->seq;
}
