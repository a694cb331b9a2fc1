/* db.h: the one module that talks to libpq. Blocking connections, used by worker
 * processes and by the API's pool threads (research B.3: pattern b). Reconnects by
 * itself; SQL text lives in the module that owns each table (jobstore.c, objects.c). */
#ifndef BV_DB_H
#define BV_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "shared/util.h"

struct db;

/* Connects (connect_timeout and keepalives are added). On failure returns a handle that
 * will retry on next use, unless the conninfo itself is malformed (then NULL + *errstr). */
struct db *db_new(const char *conninfo, char **errstr) BV_MUSTCHECK;
void db_free(struct db *db);
/* Makes sure the connection is up (reset when broken). -1 + *errstr when Postgres is down. */
int db_ensure(struct db *db, char **errstr) BV_MUSTCHECK;
/* The raw connection, for code that needs libpq directly. */
PGconn *db_conn(struct db *db);

/* Runs one parameterised statement (text params; NULL = SQL NULL). Returns the result
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK) for the caller to PQclear, or NULL + *errstr.
 * binary_result asks for binary columns (for bytea). A broken connection is reset and
 * the statement retried once when not inside a transaction. */
PGresult *db_exec(struct db *db, const char *sql, int nparams, const char *const *params,
    bool binary_result, char **errstr) BV_MUSTCHECK;
/* Same, for statements whose rows are not wanted; 0 or -1. */
int db_run(struct db *db, const char *sql, int nparams, const char *const *params,
    char **errstr) BV_MUSTCHECK;
/* BEGIN / COMMIT / ROLLBACK (rollback never fails loudly). */
int db_begin(struct db *db, char **errstr) BV_MUSTCHECK;
int db_commit(struct db *db, char **errstr) BV_MUSTCHECK;
void db_rollback(struct db *db);
/* The SQLSTATE of the last error ("23505" for a unique violation), or "". */
const char *db_last_sqlstate(struct db *db);

/* Applies every db/migrations/NNNN_name.sql not yet recorded in schema_migrations, in
 * order, each in its own transaction, under an advisory lock so two processes starting
 * together apply each once. *applied gets how many were applied. */
int db_migrate(struct db *db, const char *dir, int *applied, char **errstr) BV_MUSTCHECK;

/* Tries a session-level advisory lock for a periodic duty; true when held. */
bool db_try_lock(struct db *db, int64_t key);
void db_unlock(struct db *db, int64_t key);

/* LISTEN on a libevent loop (research B.3: a dedicated, asynchronous connection). It
 * connects without blocking the loop, calls cb with each notification's payload, and
 * reconnects with backoff when Postgres goes away; db_listener_ready says whether
 * notifications can be relied on now (while it is not, callers must not wait on them).
 * After a reconnect, notifications sent meanwhile are lost: on_ready is called so the
 * caller can re-read what it waits for. */
struct event_base;
struct db_listener;
typedef void (*db_notify_cb)(void *arg, const char *payload);
typedef void (*db_ready_cb)(void *arg);
struct db_listener *db_listener_new(struct event_base *base, const char *conninfo,
    const char *channel, db_notify_cb cb, db_ready_cb on_ready, void *arg);
void db_listener_free(struct db_listener *l);
bool db_listener_ready(const struct db_listener *l);

/* Array literals for $n::text[] parameters, built in a buf: begin, elements, end; the
 * buf's data is then the parameter. Hex elements (ids, hashes) decode with decode(x,
 * 'hex'); text elements are quoted and escaped, so any string stays one element. */
void db_array_begin(struct buf *b);
void db_array_hex(struct buf *b, const unsigned char *bytes, size_t n);
void db_array_text(struct buf *b, const char *s);
void db_array_end(struct buf *b);
#endif
