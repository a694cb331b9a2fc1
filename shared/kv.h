/* kv.h: the one module that talks to Redis (hiredis, synchronous API with socket
 * timeouts; research B.2). Redis is delivery, not truth: the jobs stream with its
 * consumer group, a per-job "enqueued" marker that lets the reconciler see what Redis
 * lost, worker heartbeats, and job-update wakeups. Every call reconnects when needed. */
#ifndef BV_KV_H
#define BV_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/util.h"

#define KV_STREAM "bitsvault:jobs"
#define KV_GROUP "workers"

struct kv;

/* Parses redis://host:port[/db] (or host:port); connects lazily. NULL + *errstr when the
 * URL is malformed. */
struct kv *kv_new(const char *url, char **errstr) BV_MUSTCHECK;
void kv_free(struct kv *kv);
/* PING; 0 or -1 + *errstr. */
int kv_ping(struct kv *kv, char **errstr) BV_MUSTCHECK;

/* XADD the job id to the stream (creating the stream and group when missing) and set
 * its marker. 0 or -1. */
int kv_enqueue(struct kv *kv, int64_t job_id, char **errstr) BV_MUSTCHECK;

struct kv_delivery {
	int64_t job_id;
	char entry_id[64]; /* stream entry id, for ack/touch */
	int64_t deliveries; /* times delivered, when known (0 otherwise) */
};
/* XREADGROUP one new entry for consumer, blocking up to block_ms. 1 when one was read,
 * 0 on timeout, -1 + *errstr on error. */
int kv_claim(struct kv *kv, const char *consumer, int block_ms, struct kv_delivery *out,
    char **errstr) BV_MUSTCHECK;
/* The job lease in seconds: a running job's marker lives 3 leases after its last touch,
 * so a job whose worker died after Redis was flushed is re-enqueued by the reconciler.
 * Default 60. */
void kv_set_lease(struct kv *kv, int lease_s);
/* XAUTOCLAIM one entry idle for at least min_idle_ms (its worker died). 1, 0 or -1. */
int kv_claim_stale(struct kv *kv, const char *consumer, int64_t min_idle_ms,
    struct kv_delivery *out, char **errstr) BV_MUSTCHECK;
/* Refreshes the job's marker (with a TTL of 3 leases) and resets the entry's idle time
 * (XCLAIM ... JUSTID): called at the claim and with each progress report so a live worker
 * keeps its lease. The XCLAIM may fail after a flush; only the marker matters then. */
int kv_touch(
    struct kv *kv, const char *consumer, const struct kv_delivery *d, char **errstr) BV_MUSTCHECK;
/* XACK + XDEL the entry and drop the job's marker. */
int kv_ack(struct kv *kv, const struct kv_delivery *d, char **errstr) BV_MUSTCHECK;
/* 1 when the job's marker exists (Redis knows the job), 0 when not, -1 on error. */
int kv_has_marker(struct kv *kv, int64_t job_id, char **errstr) BV_MUSTCHECK;

/* Worker heartbeat: a key that lives ttl_s seconds holding a small JSON document. */
int kv_heartbeat(
    struct kv *kv, const char *worker, const char *json, int ttl_s, char **errstr) BV_MUSTCHECK;
/* Names and documents of live workers, as a JSON array text the caller frees
 * ([{"name":..., ...doc}]). NULL + *errstr on error. */
char *kv_workers(struct kv *kv, char **errstr) BV_MUSTCHECK;

/* PUBLISH on a channel (job-update wakeups). */
int kv_publish(struct kv *kv, const char *channel, const char *msg, char **errstr) BV_MUSTCHECK;

#endif
