/* faults.h: what the fault suite's programs share on top of the itest harness. They run
 * under tests/faults/run, which gives them a Postgres and a Redis of their own (so they
 * may stop, restart and flush them), one program at a time, and the ctl script below. */
#ifndef BV_FAULTS_H
#define BV_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/itest.h"

/* Runs `tests/faults/ctl CMD` (pg-stop, pg-start, redis-stop, redis-start, redis-flush,
 * ...); the test fails when it does not succeed. */
void faults_ctl(const char *cmd);
/* Milliseconds on the monotonic clock. */
uint64_t faults_ms(void);

/* The workers the suite runs: n of them, named <prefix>-<i>, started now. */
void faults_workers_start(const char *prefix, int n);
/* SIGKILLs worker slot i (of those started by faults_workers_start) and starts a new one
 * in its place, as a supervisor would. */
void faults_worker_replace(int i);
/* Starts a thread that replaces a random worker every min_ms..max_ms; returns at once. */
void faults_killer_start(int min_ms, int max_ms);
/* Stops that thread; returns how many workers it killed. */
int faults_killer_stop(void);

/* Starts a thread that, every 500 ms, looks for a job still running longer than
 * max_stale_s after its last update (its lease should have given it to another worker).
 * faults_monitor_stop returns how many such sightings there were (and prints them). */
void faults_monitor_start(int max_stale_s);
int faults_monitor_stop(void);

/* A scalar of the program's database as a number (-1 when NULL). */
long long faults_sql_int(const char *sql);

/* sha256sum of every blob under the store: 0 when each one's content matches its name
 * and no file sits in the store's tmp folder, else the count of bad ones (printed). */
int faults_store_check(bool allow_tmp);

#endif
