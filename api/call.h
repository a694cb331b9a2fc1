/* call.h: one API call as the route handlers see it. Filled on the event loop (route
 * captures, copied headers, parsed body) and then handed to a pool thread, which reads
 * only this struct and writes its reply into c->resp: a handler never touches the HTTP
 * request itself (research B.1.10, upstream issue #139). Also small helpers the route
 * modules share (object ids, database errors, timestamps, secret redaction). */
#ifndef BV_CALL_H
#define BV_CALL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "api/auth.h"
#include "api/pool.h"
#include "api/resp.h"
#include "api/statuscache.h"
#include "api/router.h"
#include "shared/config.h"
#include "shared/gitobj.h"
#include "shared/store.h"

struct http_req;
struct call;
struct app;

/* Runs on the loop once the request is complete: validates cheaply. 0 to go on to the
 * pool, -1 when c->resp holds the answer already (a 400, say). */
typedef int (*call_prepare_fn)(struct call *c);
/* Runs on a pool thread: does the blocking work and fills c->resp. */
typedef void (*call_work_fn)(struct call *c, struct pool_thread *t);

/* CALL_BODY_BITS: the route's headers function chooses (a streamed upload through
 * api/bitsup.c, a buffered JSON body, or a refusal) from the headers. */
enum call_body { CALL_BODY_NONE, CALL_BODY_JSON, CALL_BODY_UPLOAD, CALL_BODY_BITS };

/* What a CALL_BODY_BITS headers function chose. */
enum call_bits_body {
	CALL_BITS_NONE,
	CALL_BITS_STREAM,
	CALL_BITS_JSON,
	CALL_BITS_REFUSE,
	CALL_BITS_REFUSE_DRAIN
};
/* Runs in the headers phase of a CALL_BODY_BITS route (c holds the copied headers). */
typedef enum call_bits_body (*call_headers_fn)(struct call *c);

struct statuscache;
/* Loop thread, after prepare: true with the answer in *out when sc holds the document
 * (api/statuscache.h); on a miss the function leaves c->cache_key set, and the work may
 * hand a document to keep through c->cache_text. */
typedef bool (*call_cached_fn)(struct call *c, struct statuscache *sc, struct resp *out);

struct call_route {
	const char *method;
	const char *pattern;
	enum auth_access access;
	enum call_body body;
	call_prepare_fn prepare; /* may be NULL */
	call_work_fn work;
	call_headers_fn headers; /* CALL_BODY_BITS only */
	call_cached_fn cached; /* answers from the status cache; NULL for most routes */
};

struct vault_format;
struct bitsup;
struct bits_kind;

struct call {
	/* set when the call is made (loop thread) */
	const struct config *cfg;
	struct store *store;
	const struct call_route *route;
	struct http_req *req; /* loop thread only; NULL once the request is gone */
	char logid[72]; /* "req=<request id>" for log_*_id (ids are at most 64 bytes) */
	enum auth_role role;
	bool head; /* HEAD request: same answer, no body */
	struct router_match m;
	char *query; /* raw query string ("" when none) */
	char *base_url; /* public URL base, no trailing '/' */
	char *if_none_match; /* NULL when absent */
	/* copied for the Bits routes (NULL when absent) */
	char *content_type;
	char *digest;
	char *range;
	char *if_none_modify; /* the bits-service's own conditional header (sic) */
	int64_t content_length; /* -1 when none */
	struct bitsup *upload; /* a streamed Bits upload (api/bitsup.c); freed by call_free */
	int64_t body_limit; /* the headers function's limit for the body */
	const struct bits_kind *bits_kind; /* a Bits route's resource kind (routes_bits.c) */
	bool bits_public; /* the request came to bits_public_host (a signed URL) */
	bool bits_archiver; /* read with the Droplet Archiver's credentials: its droplets only */
	char *bits_key; /* its key: the captured segments joined by '/' */
	size_t bits_want_len; /* 20 or 32: the upload must hash to bits_want (sha1, sha256) */
	unsigned char bits_want[32];
	json_t *aux; /* a route's own parsed data (routes_stash.c: the bundle's resources) */
	uint64_t wait_deadline_ms; /* a route that waits for a job: when it gives up */
	json_t *json; /* parsed JSON body, NULL when empty */
	char *spool_path; /* upload spool file (removed by call_free) */
	int spool_fd;
	uint64_t body_bytes;

	/* filled by prepare functions */
	enum swhid_kind obj_kind;
	const char *obj_kind_name; /* "directory" */
	unsigned char obj_id[20];
	char obj_hex[41];
	char swhid[64];
	int64_t job_id;
	bool swh_face; /* an /api/1/vault/... alias: SWH's answers and error shape */
	const struct vault_format *format; /* the bundle's format (routes_vault.c) */

	/* the answer */
	struct resp resp;
	bool in_pool; /* work queued or running */
	bool orphaned; /* the request went away while in the pool */

	/* api/app.c's bookkeeping (loop thread only) */
	struct app *app;
	bool upload_slot; /* holds one of the upload slots */
	bool waiting; /* in the queue for an upload slot */
	struct call *wait_next;
	/* long-polling (?wait=N on a status): set by the route, acted on by app.c */
	int wait_s; /* seconds the client will wait; 0 = answer now */
	int64_t wait_job_id; /* set by the work when the job may still change */
	uint64_t wait_seq; /* waiter_seq() before the status was read */
	void *wait_entry; /* while parked in api/waiter.c */
	/* the status cache (api/statuscache.h): the key, set by the route's cached function;
	 * statuscache_seq() before the work read the document; a document to keep, set by the
	 * work (cache_doc.doc points into cache_text) */
	char *cache_key;
	uint64_t cache_seq;
	char *cache_text;
	struct statuscache_doc cache_doc;
	bool cache_drop; /* the work may have changed the job of cache_key: drop its entry */
};

struct call *call_new(
    const struct config *cfg, struct store *st, struct http_req *req, const char *request_id);
/* Closes and removes the spool file, frees everything. */
void call_free(struct call *c);

/* Parses an object id for kind ("directory", "revision", "snapshot"): 40 hex digits or a
 * SWHID of the matching type. Fills obj_*; false with a 400 in c->resp when malformed. */
bool call_parse_object(struct call *c, const char *kind, const char *id) BV_MUSTCHECK;
/* Reads an optional query parameter into *out (malloc'd, NULL when absent). false with a
 * 400 in c->resp when the query string is malformed. */
bool call_query_param(struct call *c, const char *name, char **out) BV_MUSTCHECK;
/* False with a 400 in c->resp naming the first query parameter not in names (a
 * NULL-terminated list): a misspelt filter must not silently list everything. */
bool call_query_allowed(struct call *c, const char *const *names) BV_MUSTCHECK;

/* The thread's database handle, or NULL with a 503 in c->resp (and the reason logged). */
struct db *call_db(struct call *c, struct pool_thread *t);
/* Logs a database failure (reason redacted) and answers 503 {"error":"database unavailable"}. */
void call_db_failed(struct call *c, const char *what, const char *reason);
/* The thread's Redis handle, or NULL (the reason logged at warn). */
struct kv *call_kv(struct call *c, struct pool_thread *t);

/* Replaces secrets of cfg (the database password, tokens) found in msg with "***". */
char *call_redact(const struct config *cfg, const char *msg);
/* call_redact, and server paths hidden too: spool_path (may be NULL) becomes "the upload",
 * cfg->data_dir "<data_dir>". For messages a client may see. */
char *call_hide_paths(const struct config *cfg, const char *msg, const char *spool_path);
/* s itself when it is at most 100 printable ASCII characters, else "(unprintable)": what
 * a client sent can be echoed in an error message without breaking the JSON or a log. */
const char *call_echo(const char *s);
/* Unix seconds as "2024-05-01T12:00:00Z" (UTC); out holds at least 32 bytes. */
void call_iso8601(double t, char *out);
/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool call_utf8_valid(const char *s, size_t n);

/* A path inside an archive a client names (a bundle's or package's file): relative, no
 * ".", ".." or empty component, no control character or backslash, valid UTF-8, 1 to
 * 4,096 bytes. */
bool call_rel_path_ok(const char *s);
/* A random version 4 UUID, the guid CF and the bits-service give new resources. */
void call_new_uuid(char out[37]);

/* Decodes application/x-www-form-urlencoded text ('+' is a space, %XX a byte) into a new
 * string; NULL when malformed or when it would hold a NUL. */
char *call_form_decode(const char *s, size_t len);

#endif
