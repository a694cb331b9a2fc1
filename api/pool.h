/* pool.h: a bounded pool of pthreads for the API's blocking work (Postgres, Redis, disk),
 * research B.3 pattern (b). Each thread owns a blocking struct db and struct kv, created on
 * first use and kept. A task's work runs on a pool thread; its done callback runs later on
 * the event loop's thread, handed back through a mutex-protected queue and an eventfd
 * (STYLE 9: cross threads only through a queue plus a wake-up fd). */
#ifndef BV_POOL_H
#define BV_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "shared/db.h"
#include "shared/kv.h"
#include "shared/util.h"

struct pool;
struct pool_thread;

/* Runs on a pool thread; must not touch anything owned by the event loop. */
typedef void (*pool_work_fn)(void *arg, struct pool_thread *t);
/* Runs on the event loop's thread once work has returned. */
typedef void (*pool_done_fn)(void *arg);

/* Starts nthreads threads. max_queue bounds the tasks waiting for a thread. NULL + *errstr
 * when a thread or the eventfd cannot be created. */
struct pool *pool_new(struct event_base *base, int nthreads, size_t max_queue,
    const char *database_url, const char *redis_url, char **errstr) BV_MUSTCHECK;
/* Queues a task; false when the queue is full or the pool is stopping (answer 503). An
 * urgent task is taken before any other waiting (workers' reports: a job's progress must
 * not wait behind clients polling for it). */
bool pool_submit_to(
    struct pool *p, bool urgent, pool_work_fn work, pool_done_fn done, void *arg) BV_MUSTCHECK;
/* Stops the threads once their current task returns and joins them. Tasks still queued
 * and done callbacks not yet run are dropped (their args are not freed): call it when no
 * request is in flight any more. */
void pool_free(struct pool *p);

/* The thread's Postgres connection (created on first use). NULL + *errstr only when the
 * conninfo is malformed; a server that is down shows on the first query instead. */
struct db *pool_thread_db(struct pool_thread *t, char **errstr) BV_MUSTCHECK;
/* The thread's Redis connection (created on first use); NULL + *errstr when the URL is
 * malformed. */
struct kv *pool_thread_kv(struct pool_thread *t, char **errstr) BV_MUSTCHECK;

#endif
