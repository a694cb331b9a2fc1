/* waiter.h: calls that long-poll a job's status (?wait=N). A waiting call holds no
 * thread: it is a paused request in a table keyed by job id, with a timer. A Postgres
 * notification for its job, its timer, or a shutdown hands it back to the app, which
 * answers with the status as it is then. Loop thread only. */
#ifndef BV_WAITER_H
#define BV_WAITER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct call;
struct waiter;

/* Called when a waiting call should be answered now. */
typedef void (*waiter_wake_fn)(void *arg, struct call *c);

struct waiter *waiter_new(struct event_base *base, waiter_wake_fn wake, void *arg);
/* Frees the table; calls still in it are woken first. */
void waiter_free(struct waiter *w);
/* The notification counter. Read it before a call's status is read from Postgres and pass
 * it to waiter_add: a notification for the job that arrived in between wakes it at once. */
uint64_t waiter_seq(const struct waiter *w);
/* Parks c (its request paused) until job_id changes or seconds pass. */
void waiter_add(struct waiter *w, struct call *c, int64_t job_id, int seconds, uint64_t seq);
/* Takes c out without waking it (its request went away). */
void waiter_remove(struct waiter *w, struct call *c);
/* A job changed: wakes every call waiting for it. */
void waiter_notify(struct waiter *w, int64_t job_id);
/* Wakes everyone: shutdown, or notifications were lost (the listener reconnected). */
void waiter_wake_all(struct waiter *w);
size_t waiter_count(const struct waiter *w);

#endif
