/* kv.c: Redis through hiredis's synchronous API (research B.2). A broken context is
 * dropped and a new one made on the next call; the socket timeout stays above any BLOCK
 * so a blocking read never kills the connection. Key layout:
 *   bitsvault:jobs              stream of {job: <id>} read by the "workers" group
 *   bitsvault:job:<id>:enq      marker: Redis knows this job (the reconciler checks it)
 *   bitsvault:worker:<name>     heartbeat document, with a TTL
 *   bitsvault:job:<id>          pub/sub channel for job updates */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "shared/kv.h"

#define KV_SOCKET_TIMEOUT_MS 15000 /* > the longest BLOCK a caller may ask for */
#define KV_MAX_BLOCK_MS 10000

struct kv {
	char *host;
	int port;
	int dbnum;
	redisContext *c;
	char cursor[64]; /* XAUTOCLAIM scan position */
	int lease_s;
};

/* Sets the lease that running markers outlive. */
void
kv_set_lease(struct kv *kv, int lease_s)
{
	kv->lease_s = lease_s > 0 ? lease_s : 60;
}

/* redis://host:port[/db] or host:port. */
struct kv *
kv_new(const char *url, char **errstr)
{
	const char *p = url;
	char host[256];
	int port = 6379, dbnum = 0, n = 0;
	struct kv *kv;

	if (strncmp(p, "redis://", 8) == 0)
		p += 8;
	if (sscanf(p, "%255[^:/]%n", host, &n) != 1)
		goto bad;
	p += n;
	if (*p == ':') {
		if (sscanf(p + 1, "%d%n", &port, &n) != 1 || port <= 0 || port > 65535)
			goto bad;
		p += 1 + n;
	}
	if (*p == '/' && p[1] != '\0') {
		if (sscanf(p + 1, "%d%n", &dbnum, &n) != 1 || dbnum < 0 || p[1 + n] != '\0')
			goto bad;
	} else if (*p != '\0' && strcmp(p, "/") != 0)
		goto bad;
	kv = xcalloc(1, sizeof *kv);
	kv->host = xstrdup(host);
	kv->port = port;
	kv->dbnum = dbnum;
	kv->lease_s = 60;
	strcpy(kv->cursor, "0-0");
	return kv;
bad:
	*errstr = xasprintf("malformed redis_url '%s': expected redis://HOST:PORT[/DB]", url);
	return NULL;
}

/* Closes and frees. */
void
kv_free(struct kv *kv)
{
	if (kv == NULL)
		return;
	if (kv->c != NULL)
		redisFree(kv->c);
	free(kv->host);
	free(kv);
}

/* Drops a broken context, keeping its message. */
static int
kv_broken(struct kv *kv, const char *what, char **errstr)
{
	*errstr = xasprintf(
	    "redis %s: %s", what, kv->c && kv->c->errstr[0] ? kv->c->errstr : "connection lost");
	if (kv->c != NULL)
		redisFree(kv->c);
	kv->c = NULL;
	return -1;
}

/* Sends one command (argv form) and returns its reply, connecting first if needed.
 * NULL + *errstr on a transport error or a Redis error reply. */
static redisReply *
kv_cmd(struct kv *kv, char **errstr, int argc, const char **argv)
{
	redisReply *r;

	bool reused = kv->c != NULL;
again:
	if (kv->c == NULL) {
		struct timeval tv = {2, 0};
		kv->c = redisConnectWithTimeout(kv->host, kv->port, tv);
		if (kv->c == NULL || kv->c->err) {
			kv_broken(kv, "connect", errstr);
			return NULL;
		}
		tv.tv_sec = KV_SOCKET_TIMEOUT_MS / 1000;
		redisSetTimeout(kv->c, tv);
		redisEnableKeepAlive(kv->c);
		if (kv->dbnum != 0) {
			r = redisCommand(kv->c, "SELECT %d", kv->dbnum);
			if (r == NULL) {
				kv_broken(kv, "select", errstr);
				return NULL;
			}
			if (r->type == REDIS_REPLY_ERROR) {
				/* A db number the server does not have: never fall back to db 0. */
				*errstr = xasprintf("redis SELECT %d: %s", kv->dbnum, r->str);
				freeReplyObject(r);
				redisFree(kv->c);
				kv->c = NULL;
				return NULL;
			}
			freeReplyObject(r);
		}
	}
	r = redisCommandArgv(kv->c, argc, argv, NULL);
	if (r == NULL) {
		kv_broken(kv, argv[0], errstr);
		if (reused && kv->c == NULL) {
			/* A kept connection Redis closed (a restart): one fresh try, so callers see
			 * an error only when Redis is really down. A repeated XADD is harmless:
			 * claims ignore jobs that are not queued. */
			free(*errstr);
			*errstr = NULL;
			reused = false;
			goto again;
		}
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		*errstr = xasprintf("redis %s: %s", argv[0], r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* Same, for replies that are not wanted. */
static int
kv_do(struct kv *kv, char **errstr, int argc, const char **argv)
{
	redisReply *r = kv_cmd(kv, errstr, argc, argv);
	if (r == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* PING. */
int
kv_ping(struct kv *kv, char **errstr)
{
	const char *argv[] = {"PING"};
	return kv_do(kv, errstr, 1, argv);
}

/* The stream and group, created when missing (after a FLUSHALL, say). Reading from id 0
 * delivers entries added before the group existed. */
static int
kv_ensure_group(struct kv *kv, char **errstr)
{
	const char *argv[] = {"XGROUP", "CREATE", KV_STREAM, KV_GROUP, "0", "MKSTREAM"};
	char *err = NULL;

	if (kv_do(kv, &err, 6, argv) == 0)
		return 0;
	if (strstr(err, "BUSYGROUP") != NULL) {
		free(err);
		return 0;
	}
	*errstr = err;
	return -1;
}

/* The marker key's name. */
static void
marker_key(char *out, size_t n, int64_t job_id)
{
	snprintf(out, n, "bitsvault:job:%lld:enq", (long long)job_id);
}

/* XADD + marker. */
int
kv_enqueue(struct kv *kv, int64_t job_id, char **errstr)
{
	char id[24], key[64];

	snprintf(id, sizeof id, "%lld", (long long)job_id);
	marker_key(key, sizeof key, job_id);
	if (kv_ensure_group(kv, errstr) != 0)
		return -1;
	const char *xadd[] = {"XADD", KV_STREAM, "*", "job", id};
	const char *set[] = {"SET", key, "1"};
	if (kv_do(kv, errstr, 5, xadd) != 0)
		return -1;
	return kv_do(kv, errstr, 3, set);
}

/* One [id, [field, value, ...]] stream entry into a delivery; false when deleted or odd. */
static bool
parse_entry(const redisReply *e, struct kv_delivery *out)
{
	if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return false;
	snprintf(out->entry_id, sizeof out->entry_id, "%s", e->element[0]->str);
	const redisReply *f = e->element[1];
	if (f->type != REDIS_REPLY_ARRAY)
		return false; /* XDEL'd entry still pending: [id, nil] */
	for (size_t i = 0; i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, "job") == 0 &&
		    f->element[i + 1]->type == REDIS_REPLY_STRING &&
		    parse_int64(f->element[i + 1]->str, &out->job_id))
			return true;
	return false;
}

/* XREADGROUP one new entry. */
int
kv_claim(struct kv *kv, const char *consumer, int block_ms, struct kv_delivery *out, char **errstr)
{
	char block[16];
	char *err = NULL;
	redisReply *r;

	if (block_ms > KV_MAX_BLOCK_MS)
		block_ms = KV_MAX_BLOCK_MS;
	snprintf(block, sizeof block, "%d", block_ms);
	const char *argv[] = {"XREADGROUP", "GROUP", KV_GROUP, consumer, "COUNT", "1", "BLOCK",
	    block, "STREAMS", KV_STREAM, ">"};
	r = kv_cmd(kv, &err, BV_NELEM(argv), argv);
	if (r == NULL) {
		if (strstr(err, "NOGROUP") != NULL) { /* flushed: recreate, read next time */
			free(err);
			return kv_ensure_group(kv, errstr) == 0 ? 0 : -1;
		}
		*errstr = err;
		return -1;
	}
	memset(out, 0, sizeof *out);
	int found = 0;
	/* [[stream, [[id, [f, v]]]]], or nil on timeout */
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
		const redisReply *entries = r->element[0]->element[1];
		if (entries->type == REDIS_REPLY_ARRAY && entries->elements == 1)
			found = parse_entry(entries->element[0], out) ? 1 : 0;
		if (!found && entries->type == REDIS_REPLY_ARRAY && entries->elements == 1 &&
		    entries->element[0]->type == REDIS_REPLY_ARRAY &&
		    entries->element[0]->elements >= 1) {
			/* An entry without a job field: ack it so it does not come back. */
			struct kv_delivery junk = {0};
			snprintf(junk.entry_id, sizeof junk.entry_id, "%s",
			    entries->element[0]->element[0]->str);
			char *e2 = NULL;
			if (kv_ack(kv, &junk, &e2) != 0)
				free(e2);
		}
	}
	out->deliveries = found ? 1 : 0;
	freeReplyObject(r);
	return found;
}

/* XAUTOCLAIM one entry whose consumer has been silent for min_idle_ms. */
int
kv_claim_stale(struct kv *kv, const char *consumer, int64_t min_idle_ms, struct kv_delivery *out,
    char **errstr)
{
	char idle[24];
	char *err = NULL;
	redisReply *r;
	int found = 0;

	snprintf(idle, sizeof idle, "%lld", (long long)min_idle_ms);
	const char *argv[] = {
	    "XAUTOCLAIM", KV_STREAM, KV_GROUP, consumer, idle, kv->cursor, "COUNT", "1"};
	r = kv_cmd(kv, &err, BV_NELEM(argv), argv);
	if (r == NULL) {
		if (strstr(err, "NOGROUP") != NULL) {
			free(err);
			return kv_ensure_group(kv, errstr) == 0 ? 0 : -1;
		}
		*errstr = err;
		return -1;
	}
	memset(out, 0, sizeof *out);
	/* [next-cursor, [entries], [deleted ids]] (Redis >= 7) */
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
		if (r->element[0]->type == REDIS_REPLY_STRING)
			snprintf(kv->cursor, sizeof kv->cursor, "%s", r->element[0]->str);
		const redisReply *entries = r->element[1];
		if (entries->type == REDIS_REPLY_ARRAY && entries->elements >= 1) {
			found = parse_entry(entries->element[0], out) ? 1 : 0;
			if (!found && entries->element[0]->type == REDIS_REPLY_ARRAY &&
			    entries->element[0]->elements >= 1 &&
			    entries->element[0]->element[0]->type == REDIS_REPLY_STRING) {
				struct kv_delivery junk = {0};
				snprintf(junk.entry_id, sizeof junk.entry_id, "%s",
				    entries->element[0]->element[0]->str);
				char *e2 = NULL;
				if (kv_ack(kv, &junk, &e2) != 0)
					free(e2);
			}
		}
	}
	freeReplyObject(r);
	out->deliveries = found ? 2 : 0;
	return found;
}

/* Keeps the lease: reset the entry's idle time and refresh the marker. */
int
kv_touch(struct kv *kv, const char *consumer, const struct kv_delivery *d, char **errstr)
{
	char key[64], ttl[16], *err = NULL;
	const char *xclaim[] = {
	    "XCLAIM", KV_STREAM, KV_GROUP, consumer, "0", d->entry_id, "JUSTID"};

	marker_key(key, sizeof key, d->job_id);
	snprintf(ttl, sizeof ttl, "%d", 3 * kv->lease_s);
	const char *set[] = {"SET", key, "1", "EX", ttl};
	if (kv_do(kv, errstr, 5, set) != 0)
		return -1;
	if (kv_do(kv, &err, BV_NELEM(xclaim), xclaim) != 0) {
		/* NOGROUP after a flush: the marker alone keeps the job known. */
		bool flushed = strstr(err, "NOGROUP") != NULL;
		if (!flushed) {
			*errstr = err;
			return -1;
		}
		free(err);
	}
	return 0;
}

/* Done with the entry: XACK, XDEL, drop the marker. */
int
kv_ack(struct kv *kv, const struct kv_delivery *d, char **errstr)
{
	char key[64];
	const char *xack[] = {"XACK", KV_STREAM, KV_GROUP, d->entry_id};
	const char *xdel[] = {"XDEL", KV_STREAM, d->entry_id};

	if (kv_do(kv, errstr, 4, xack) != 0 || kv_do(kv, errstr, 3, xdel) != 0)
		return -1;
	if (d->job_id > 0) {
		marker_key(key, sizeof key, d->job_id);
		const char *del[] = {"DEL", key};
		return kv_do(kv, errstr, 2, del);
	}
	return 0;
}

/* EXISTS marker. */
int
kv_has_marker(struct kv *kv, int64_t job_id, char **errstr)
{
	char key[64];
	const char *argv[] = {"EXISTS", key};
	redisReply *r;
	int found;

	marker_key(key, sizeof key, job_id);
	r = kv_cmd(kv, errstr, 2, argv);
	if (r == NULL)
		return -1;
	found = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
	freeReplyObject(r);
	return found;
}

/* SET bitsvault:worker:<name> json EX ttl. */
int
kv_heartbeat(struct kv *kv, const char *worker, const char *json, int ttl_s, char **errstr)
{
	char key[256], ttl[16];

	snprintf(key, sizeof key, "bitsvault:worker:%s", worker);
	snprintf(ttl, sizeof ttl, "%d", ttl_s);
	const char *argv[] = {"SET", key, json, "EX", ttl};
	return kv_do(kv, errstr, 5, argv);
}

/* Live workers: SCAN the heartbeat keys and read each document. */
char *
kv_workers(struct kv *kv, char **errstr)
{
	json_t *arr = json_array();
	char cursor[32] = "0";

	do {
		const char *scan[] = {
		    "SCAN", cursor, "MATCH", "bitsvault:worker:*", "COUNT", "100"};
		redisReply *r = kv_cmd(kv, errstr, 6, scan);
		if (r == NULL) {
			json_decref(arr);
			return NULL;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			freeReplyObject(r);
			break;
		}
		snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
		const redisReply *keys = r->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			const char *get[] = {"GET", keys->element[i]->str};
			redisReply *g = kv_cmd(kv, errstr, 2, get);
			if (g == NULL) {
				freeReplyObject(r);
				json_decref(arr);
				return NULL;
			}
			if (g->type == REDIS_REPLY_STRING) {
				json_t *doc = json_loads(g->str, 0, NULL);
				if (!json_is_object(doc)) {
					json_decref(doc);
					doc = json_object();
				}
				json_object_set_new(doc, "name",
				    json_string(
					keys->element[i]->str + strlen("bitsvault:worker:")));
				json_object_set_new(doc, "ok", json_true());
				json_array_append_new(arr, doc);
			}
			freeReplyObject(g);
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

/* PUBLISH. */
int
kv_publish(struct kv *kv, const char *channel, const char *msg, char **errstr)
{
	const char *argv[] = {"PUBLISH", channel, msg};
	return kv_do(kv, errstr, 3, argv);
}
