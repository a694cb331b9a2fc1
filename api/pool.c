/* pool.c: blocking work off the event loop (see pool.h). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api/pool.h"
#include "shared/log.h"

struct task {
	pool_work_fn work;
	pool_done_fn done;
	void *arg;
	struct task *next;
};

struct pool_thread {
	struct pool *pool;
	pthread_t tid;
	bool started;
	struct db *db;
	struct kv *kv;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct task *queue_head, *queue_tail; /* waiting for a thread */
	struct task *urgent_head, *urgent_tail; /* the same, taken first */
	size_t queued;
	size_t max_queue;
	struct task *done_head, *done_tail; /* waiting for the loop */
	bool stopping;

	int efd;
	struct event *ev;

	char *database_url;
	char *redis_url;
	struct pool_thread *threads;
	int nthreads;
};

/* Appends to a singly linked list with a tail pointer. */
static void
list_push(struct task **head, struct task **tail, struct task *t)
{
	t->next = NULL;
	if (*tail != NULL)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

/* Pool thread: takes tasks until told to stop. */
static void *
thread_main(void *arg)
{
	struct pool_thread *pt = arg;
	struct pool *p = pt->pool;
	struct task *t;
	uint64_t one = 1;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->queue_head == NULL && p->urgent_head == NULL && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		if (p->urgent_head != NULL) {
			t = p->urgent_head;
			p->urgent_head = t->next;
			if (p->urgent_head == NULL)
				p->urgent_tail = NULL;
		} else {
			t = p->queue_head;
			p->queue_head = t->next;
			if (p->queue_head == NULL)
				p->queue_tail = NULL;
		}
		p->queued--;
		pthread_mutex_unlock(&p->lock);

		t->work(t->arg, pt);

		pthread_mutex_lock(&p->lock);
		list_push(&p->done_head, &p->done_tail, t);
		pthread_mutex_unlock(&p->lock);
		/* An eventfd counter only fails to grow past 2^64-2: never in practice. */
		if (write(p->efd, &one, sizeof one) < 0 && errno != EAGAIN)
			log_error("pool: cannot wake the event loop: %s", strerror(errno));
	}
	db_free(pt->db);
	pt->db = NULL;
	kv_free(pt->kv);
	pt->kv = NULL;
	return NULL;
}

/* Event loop: runs the done callbacks of finished tasks. */
static void
on_wakeup(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct task *list, *t;
	uint64_t n;

	if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
		log_error("pool: eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&p->lock);
	list = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while ((t = list) != NULL) {
		list = t->next;
		t->done(t->arg);
		free(t);
	}
}

/* Starts the threads and the wake-up event. */
struct pool *
pool_new(struct event_base *base, int nthreads, size_t max_queue, const char *database_url,
    const char *redis_url, char **errstr)
{
	struct pool *p = xcalloc(1, sizeof *p);
	int i, rc;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->max_queue = max_queue;
	p->database_url = xstrdup(database_url);
	p->redis_url = xstrdup(redis_url);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		*errstr = xasprintf("eventfd: %s", strerror(errno));
		goto fail;
	}
	p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, on_wakeup, p);
	if (p->ev == NULL || event_add(p->ev, NULL) != 0) {
		*errstr = xstrdup("cannot add the pool's wake-up event");
		goto fail;
	}
	p->nthreads = nthreads;
	p->threads = xcalloc(nthreads, sizeof(struct pool_thread));
	for (i = 0; i < nthreads; i++) {
		p->threads[i].pool = p;
		rc = pthread_create(&p->threads[i].tid, NULL, thread_main, &p->threads[i]);
		if (rc != 0) {
			*errstr = xasprintf("pthread_create: %s", strerror(rc));
			goto fail;
		}
		p->threads[i].started = true;
	}
	return p;
fail:
	pool_free(p);
	return NULL;
}

/* Queues one task, at the back of the urgent queue or of the other. */
bool
pool_submit_to(struct pool *p, bool urgent, pool_work_fn work, pool_done_fn done, void *arg)
{
	struct task *t;

	pthread_mutex_lock(&p->lock);
	if (p->stopping || p->queued >= p->max_queue) {
		pthread_mutex_unlock(&p->lock);
		return false;
	}
	t = xcalloc(1, sizeof *t);
	t->work = work;
	t->done = done;
	t->arg = arg;
	if (urgent)
		list_push(&p->urgent_head, &p->urgent_tail, t);
	else
		list_push(&p->queue_head, &p->queue_tail, t);
	p->queued++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return true;
}

/* Frees a task list without running it. */
static void
drop_list(struct task *t)
{
	struct task *next;

	for (; t != NULL; t = next) {
		next = t->next;
		free(t);
	}
}

/* Stops and joins every thread, then frees the pool. */
void
pool_free(struct pool *p)
{
	int i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nthreads; i++)
		if (p->threads[i].started)
			pthread_join(p->threads[i].tid, NULL);
	drop_list(p->queue_head);
	drop_list(p->urgent_head);
	drop_list(p->done_head);
	if (p->ev != NULL)
		event_free(p->ev);
	if (p->efd >= 0)
		close(p->efd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p->database_url);
	free(p->redis_url);
	free(p);
}

/* The thread's database handle, made on first use. */
struct db *
pool_thread_db(struct pool_thread *t, char **errstr)
{
	if (t->db == NULL)
		t->db = db_new(t->pool->database_url, errstr);
	return t->db;
}

/* The thread's Redis handle, made on first use. */
struct kv *
pool_thread_kv(struct pool_thread *t, char **errstr)
{
	if (t->kv == NULL)
		t->kv = kv_new(t->pool->redis_url, errstr);
	return t->kv;
}
