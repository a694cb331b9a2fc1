/* waiter.c: the table of long-polling calls (see waiter.h). Buckets of doubly linked
 * entries keyed by job id; a ring of the latest notifications closes the window between
 * reading a status and parking the call. */
#include <stdlib.h>

#include <event2/event.h>

#include "api/call.h"
#include "api/waiter.h"
#include "shared/util.h"

#define BUCKETS 1024
#define RECENT 4096

struct wait_entry {
	struct waiter *w;
	struct call *c;
	int64_t job_id;
	struct event *timer;
	struct wait_entry *prev, *next;
};

struct waiter {
	struct event_base *base;
	waiter_wake_fn wake;
	void *arg;
	struct wait_entry *buckets[BUCKETS];
	size_t n;
	uint64_t seq;
	struct {
		int64_t job_id;
		uint64_t seq;
	} recent[RECENT]; /* the last notifications, by seq % RECENT */
};

/* The bucket of a job id. */
static struct wait_entry **
bucket(struct waiter *w, int64_t job_id)
{
	return &w->buckets[(uint64_t)job_id * 0x9E3779B97F4A7C15ull >> 54 & (BUCKETS - 1)];
}

/* A new table. */
struct waiter *
waiter_new(struct event_base *base, waiter_wake_fn wake, void *arg)
{
	struct waiter *w = xcalloc(1, sizeof *w);

	w->base = base;
	w->wake = wake;
	w->arg = arg;
	return w;
}

/* Unlinks and frees an entry, leaving its call to the caller. */
static struct call *
entry_drop(struct wait_entry *e)
{
	struct call *c = e->c;

	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		*bucket(e->w, e->job_id) = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	event_free(e->timer);
	e->w->n--;
	c->wait_entry = NULL;
	free(e);
	return c;
}

/* Takes an entry out and hands its call back to be answered. */
static void
entry_wake(struct wait_entry *e)
{
	struct waiter *w = e->w;

	w->wake(w->arg, entry_drop(e));
}

/* The call's time is up. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	entry_wake(arg);
}

/* Frees the table after waking what is left. */
void
waiter_free(struct waiter *w)
{
	if (w == NULL)
		return;
	waiter_wake_all(w);
	free(w);
}

/* The notification counter. */
uint64_t
waiter_seq(const struct waiter *w)
{
	return w->seq;
}

/* Whether job_id was notified after seq (as far as the ring remembers: an older seq than
 * the ring holds counts as notified, which only costs an early answer). */
static bool
notified_since(const struct waiter *w, int64_t job_id, uint64_t seq)
{
	if (w->seq - seq >= RECENT)
		return w->seq != seq;
	for (uint64_t s = seq + 1; s <= w->seq; s++)
		if (w->recent[s % RECENT].job_id == job_id && w->recent[s % RECENT].seq == s)
			return true;
	return false;
}

/* Parks c until its job changes or its time is up. */
void
waiter_add(struct waiter *w, struct call *c, int64_t job_id, int seconds, uint64_t seq)
{
	struct wait_entry *e, **b;
	struct timeval tv = {seconds, 0};

	if (notified_since(w, job_id, seq)) {
		w->wake(w->arg, c);
		return;
	}
	e = xcalloc(1, sizeof *e);
	e->w = w;
	e->c = c;
	e->job_id = job_id;
	e->timer = evtimer_new(w->base, on_timer, e);
	evtimer_add(e->timer, &tv);
	b = bucket(w, job_id);
	e->next = *b;
	if (*b != NULL)
		(*b)->prev = e;
	*b = e;
	c->wait_entry = e;
	w->n++;
}

/* Takes c out without waking it. */
void
waiter_remove(struct waiter *w, struct call *c)
{
	(void)w;
	if (c->wait_entry != NULL)
		(void)entry_drop(c->wait_entry);
}

/* Wakes the calls waiting for job_id. */
void
waiter_notify(struct waiter *w, int64_t job_id)
{
	struct wait_entry *e, *next;

	w->seq++;
	w->recent[w->seq % RECENT].job_id = job_id;
	w->recent[w->seq % RECENT].seq = w->seq;
	for (e = *bucket(w, job_id); e != NULL; e = next) {
		next = e->next;
		if (e->job_id == job_id)
			entry_wake(e);
	}
}

/* Wakes every call. */
void
waiter_wake_all(struct waiter *w)
{
	w->seq++; /* calls being read now see a change too */
	for (size_t i = 0; i < BUCKETS; i++)
		while (w->buckets[i] != NULL)
			entry_wake(w->buckets[i]);
}

/* How many calls wait. */
size_t
waiter_count(const struct waiter *w)
{
	return w->n;
}
