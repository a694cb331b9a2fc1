/* archiver.h: the one place that knows the Droplet Archiver's replication table
 * (db/migrations/0008_archiver.sql). The API queues a droplet for every peer when it is
 * posted (archiver_queue); workers claim due rows, send them and record the outcome, and
 * reconcile with each peer (worker/replicate.c). */
#ifndef BV_ARCHIVER_H
#define BV_ARCHIVER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/db.h"

/* Marks key pending (now) for each peer of the comma-separated list: a peer that had it
 * gets it again (the bytes under the key may have changed). 0 or -1. */
int archiver_queue(struct db *db, const char *key, const char *peers, char **errstr) BV_MUSTCHECK;
/* The same for one peer, unless a row for it is pending already: 1 queued, 0 it was
 * pending, -1. */
int archiver_queue_missing(
    struct db *db, const char *key, const char *peer, char **errstr) BV_MUSTCHECK;

struct archiver_due {
	char *key;
	char *peer;
	int attempts;
};
void archiver_due_free(struct archiver_due *d, size_t n);
/* Claims up to limit due pending rows (SKIP LOCKED), moving them lease_s ahead so a sender
 * that dies leaves them for later. 0 with *out, *n, or -1. */
int archiver_claim(struct db *db, int limit, int64_t lease_s, struct archiver_due **out, size_t *n,
    char **errstr) BV_MUSTCHECK;
/* The peer has it. */
int archiver_done(struct db *db, const char *key, const char *peer, char **errstr) BV_MUSTCHECK;
/* A failed attempt: attempts + 1, the error, due again in delay_ms. */
int archiver_failed(struct db *db, const char *key, const char *peer, const char *error,
    int64_t delay_ms, char **errstr) BV_MUSTCHECK;
/* The droplet is gone: its rows too. */
int archiver_forget(struct db *db, const char *key, char **errstr) BV_MUSTCHECK;
/* Up to limit keys of droplets the archiver stored, after `after` ("" from the start), in byte
 * order: the droplets the archiver replicates. 0 with *keys (a JSON array), or -1. */

int archiver_keys(
    struct db *db, const char *after, int limit, json_t **keys, char **errstr) BV_MUSTCHECK;
/* Which of keys (a JSON array of strings) this server holds: *have, a JSON array. */
int archiver_have(struct db *db, const json_t *keys, json_t **have, char **errstr) BV_MUSTCHECK;

#endif
