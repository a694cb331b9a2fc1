/* faults.c: server control, a worker-killing supervisor, a lease monitor and a store
 * check for the fault suite (tests/faults/faults.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/faults/faults.h"

#define MAX_WORKERS 8

static struct {
	char prefix[32];
	int n;
	int slot[MAX_WORKERS]; /* index in IT.workers */
	int generation[MAX_WORKERS];
} W;

static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t killer, monitor;
static volatile int killer_stop, monitor_stop;
static int killer_min, killer_max, killed, stale_seen, monitor_max_stale;

void
faults_ctl(const char *cmd)
{
	int rc = itest_sh(
	    "bash '%s/tests/faults/ctl' %s >>logs/ctl.log 2>&1", getenv("BV_TOP_SRCDIR"), cmd);
	if (rc != 0)
		itest_sh("tail -n 20 logs/ctl.log >&2");
	ck_assert_msg(rc == 0, "tests/faults/ctl %s failed (%d)", cmd, rc);
}

uint64_t
faults_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Starts a worker in slot i under a fresh name (a new process, as a supervisor makes). */
static void
spawn_slot(int i)
{
	char name[48];
	snprintf(name, sizeof name, "%s-%d.%d", W.prefix, i, W.generation[i]++);
	/* itest_start_worker appends: reuse the slot's place in IT.workers. */
	if (W.slot[i] >= 0) {
		int n = IT.nworkers;
		IT.nworkers = W.slot[i];
		itest_start_worker(name);
		IT.nworkers = n;
	} else {
		W.slot[i] = itest_start_worker(name);
	}
}

void
faults_workers_start(const char *prefix, int n)
{
	ck_assert_int_le(n, MAX_WORKERS);
	snprintf(W.prefix, sizeof W.prefix, "%s", prefix);
	W.n = n;
	for (int i = 0; i < n; i++) {
		W.slot[i] = -1;
		W.generation[i] = 0;
		spawn_slot(i);
	}
}

void
faults_worker_replace(int i)
{
	pthread_mutex_lock(&workers_lock);
	itest_stop_worker(W.slot[i], SIGKILL);
	spawn_slot(i);
	pthread_mutex_unlock(&workers_lock);
}

/* The first value of a query's first row, or NULL (no row, or Postgres unreachable: the
 * threads below must not fail the test from their thread). Caller frees. */
static char *
sql_try(const char *sql)
{
	char *v = NULL;
	PGconn *c = PQconnectdb(IT.db_url);

	if (PQstatus(c) == CONNECTION_OK) {
		PGresult *r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
			v = xstrdup(PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	PQfinish(c);
	return v;
}

/* Every other kill takes a worker that holds a running job (so kills land mid-job even
 * when jobs are short), the others a random one. */
static int
pick_victim(unsigned *seed)
{
	int slot = (int)(rand_r(seed) % (unsigned)W.n), gen;
	if (rand_r(seed) % 2 == 0)
		return slot;
	char *sql = xasprintf("SELECT coalesce((SELECT worker FROM jobs WHERE state = 'running'"
			      " AND worker LIKE '%s-%%' ORDER BY random() LIMIT 1), '')",
	    W.prefix);
	char *holder = sql_try(sql);
	int s;
	if (holder != NULL && *holder != '\0' &&
	    sscanf(holder + strlen(W.prefix), "-%d.%d", &s, &gen) == 2 && s >= 0 && s < W.n)
		slot = s;
	free(holder);
	free(sql);
	return slot;
}

/* The supervisor: a random worker killed and replaced every killer_min..killer_max ms. */
static void *
killer_main(void *arg)
{
	unsigned seed = (unsigned)faults_ms();
	(void)arg;
	while (!killer_stop) {
		int wait =
		    killer_min + (int)(rand_r(&seed) % (unsigned)(killer_max - killer_min + 1));
		for (int t = 0; t < wait && !killer_stop; t += 50)
			usleep(50000);
		if (killer_stop)
			break;
		faults_worker_replace(pick_victim(&seed));
		killed++;
	}
	return NULL;
}

void
faults_killer_start(int min_ms, int max_ms)
{
	killer_min = min_ms;
	killer_max = max_ms;
	killer_stop = 0;
	killed = 0;
	ck_assert_int_eq(pthread_create(&killer, NULL, killer_main, NULL), 0);
}

int
faults_killer_stop(void)
{
	killer_stop = 1;
	pthread_join(killer, NULL);
	return killed;
}

/* The lease monitor: a running job not updated for longer than its lease allows (plus
 * the time a worker takes to notice) means no one will take it over. */
static void *
monitor_main(void *arg)
{
	(void)arg;
	while (!monitor_stop) {
		char *sql =
		    xasprintf("SELECT coalesce(string_agg(id || ' (' || worker || ', '"
			      " || round(extract(epoch FROM now() - updated_at)) || ' s)',"
			      " ', '), '') FROM jobs WHERE state = 'running' AND updated_at <"
			      " now() - interval '%d seconds'",
			monitor_max_stale);
		char *late = sql_try(sql);
		if (late != NULL && *late != '\0') {
			fprintf(stderr, "lease monitor: running past the lease: %s\n", late);
			stale_seen++;
		}
		free(late);
		free(sql);
		usleep(500000);
	}
	return NULL;
}

void
faults_monitor_start(int max_stale_s)
{
	monitor_max_stale = max_stale_s;
	monitor_stop = 0;
	stale_seen = 0;
	ck_assert_int_eq(pthread_create(&monitor, NULL, monitor_main, NULL), 0);
}

int
faults_monitor_stop(void)
{
	monitor_stop = 1;
	pthread_join(monitor, NULL);
	return stale_seen;
}

long long
faults_sql_int(const char *sql)
{
	char *v = itest_sql(sql);
	long long n = *v != '\0' ? atoll(v) : -1;
	free(v);
	return n;
}

int
faults_store_check(bool allow_tmp)
{
	char *out = itest_sh_out("cd data/store/objects && find . -type f | while read -r p; do"
				 " [ \"$(sha256sum < \"$p\" | cut -c1-64)\" = \"${p##*/}\" ] ||"
				 " echo \"bad blob $p\"; done");
	int bad = 0;
	if (*out != '\0') {
		fprintf(stderr, "%s\n", out);
		for (char *p = out; (p = strstr(p, "bad blob")) != NULL; p++)
			bad++;
	}
	free(out);
	if (!allow_tmp) {
		out = itest_sh_out("find data/store/tmp data/tmp -type f 2>/dev/null");
		if (*out != '\0') {
			fprintf(stderr, "temp files left (store and upload spool):\n%s\n", out);
			bad++;
		}
		free(out);
	}
	return bad;
}
