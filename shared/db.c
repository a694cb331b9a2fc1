/* db.c: blocking libpq connections with reconnect, parameterised statements, and the
 * migration runner. SQL text belongs to the modules that own the tables; this file only
 * knows schema_migrations. */
#include <dirent.h>

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "shared/db.h"
#include "shared/log.h"

/* The advisory lock key that serialises migrations across processes ("bvmigrat"). */
#define MIGRATION_LOCK_KEY 0x62766d6967726174LL

struct db {
	char *conninfo;
	PGconn *conn;
	bool in_tx;
	char sqlstate[6];
};

/* Opens the connection; our defaults first so the user's conninfo overrides them. */
static PGconn *
db_connect(const char *conninfo)
{
	const char *kw[] = {"connect_timeout", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "application_name",
	    "options", "dbname", NULL};
	/* A statement or lock that waits too long fails instead of holding a thread (and its
	 * request) forever; a dead peer is noticed in ~30 s, not TCP's ~11 min. NOTICEs
	 * ("relation already exists, skipping") would reach stderr unformatted. */
	const char *val[] = {"5", "1", "10", "5", "3", "30000", "bitsvault",
	    "-c client_min_messages=warning -c statement_timeout=60000 -c lock_timeout=10000",
	    conninfo, NULL};
	return PQconnectdbParams(kw, val, 1);
}

/* One line of a libpq message, without the trailing newline. */
static char *
pq_message(const char *msg)
{
	char *s = xstrdup(msg != NULL && *msg != '\0' ? msg : "unknown error");
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return s;
}

/* A handle; connected now if Postgres answers, else on first use. */
struct db *
db_new(const char *conninfo, char **errstr)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	struct db *db;

	if (opts == NULL) {
		/* The message never repeats the conninfo, which may hold a password. */
		*errstr = xasprintf(
		    "malformed database_url: %s", perr ? pq_message(perr) : "cannot parse");
		PQfreemem(perr);
		return NULL;
	}
	PQconninfoFree(opts);
	db = xcalloc(1, sizeof *db);
	db->conninfo = xstrdup(conninfo);
	db->conn = db_connect(conninfo);
	return db;
}

/* Closes and frees. */
void
db_free(struct db *db)
{
	if (db == NULL)
		return;
	if (db->conn != NULL)
		PQfinish(db->conn);
	free(db->conninfo);
	free(db);
}

/* Reconnects when the connection is broken. */
int
db_ensure(struct db *db, char **errstr)
{
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		return 0;
	if (db->conn == NULL)
		db->conn = db_connect(db->conninfo);
	else
		PQreset(db->conn);
	db->in_tx = false;
	if (PQstatus(db->conn) != CONNECTION_OK) {
		char *m = pq_message(PQerrorMessage(db->conn));
		*errstr = xasprintf("postgres: %s", m);
		free(m);
		return -1;
	}
	return 0;
}

/* The raw connection. */
PGconn *
db_conn(struct db *db)
{
	return db->conn;
}

/* SQLSTATE of the last failure. */
const char *
db_last_sqlstate(struct db *db)
{
	return db->sqlstate;
}

/* Runs one statement; retries once on a connection that broke outside a transaction. */
PGresult *
db_exec(struct db *db, const char *sql, int nparams, const char *const *params, bool binary_result,
    char **errstr)
{
	for (int attempt = 0;; attempt++) {
		PGresult *res;
		ExecStatusType st;

		db->sqlstate[0] = '\0';
		if (db_ensure(db, errstr) != 0)
			return NULL;
		res = PQexecParams(
		    db->conn, sql, nparams, NULL, params, NULL, NULL, binary_result ? 1 : 0);
		st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			return res;
		if (res != NULL) {
			const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			snprintf(db->sqlstate, sizeof db->sqlstate, "%s", code ? code : "");
		}
		if (PQstatus(db->conn) == CONNECTION_BAD && !db->in_tx && attempt == 0) {
			PQclear(res);
			continue;
		}
		char *m = pq_message(res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn));
		*errstr = xasprintf("postgres: %s", m);
		free(m);
		PQclear(res);
		return NULL;
	}
}

/* A statement whose rows are not wanted. */
int
db_run(struct db *db, const char *sql, int nparams, const char *const *params, char **errstr)
{
	PGresult *res = db_exec(db, sql, nparams, params, false, errstr);
	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/* BEGIN. */
int
db_begin(struct db *db, char **errstr)
{
	if (db_run(db, "BEGIN", 0, NULL, errstr) != 0)
		return -1;
	db->in_tx = true;
	return 0;
}

/* COMMIT. */
int
db_commit(struct db *db, char **errstr)
{
	int r = db_run(db, "COMMIT", 0, NULL, errstr);
	db->in_tx = false;
	return r;
}

/* ROLLBACK, quietly. */
void
db_rollback(struct db *db)
{
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		PQclear(PQexec(db->conn, "ROLLBACK"));
	db->in_tx = false;
}

/* A session advisory lock, without waiting. */
bool
db_try_lock(struct db *db, int64_t key)
{
	char k[24], *err = NULL;
	const char *p[] = {k};
	PGresult *res;
	bool held;

	snprintf(k, sizeof k, "%lld", (long long)key);
	res = db_exec(db, "SELECT pg_try_advisory_lock($1::bigint)", 1, p, false, &err);
	if (res == NULL) {
		free(err);
		return false;
	}
	held = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return held;
}

/* Releases a session advisory lock. */
void
db_unlock(struct db *db, int64_t key)
{
	char k[24], *err = NULL;
	const char *p[] = {k};

	snprintf(k, sizeof k, "%lld", (long long)key);
	if (db_run(db, "SELECT pg_advisory_unlock($1::bigint)", 1, p, &err) != 0)
		free(err);
}

/* "0001_init.sql": four digits, an underscore, a name, ".sql". */
static int
migration_version(const char *name)
{
	size_t n = strlen(name);
	if (n < 10 || strcmp(name + n - 4, ".sql") != 0 || name[4] != '_')
		return -1;
	for (int i = 0; i < 4; i++)
		if (name[i] < '0' || name[i] > '9')
			return -1;
	return atoi(name);
}

/* qsort by name, which orders by version. */
static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Applies one file in its own transaction and records it. */
static int
apply_one(struct db *db, const char *dir, const char *name, int version, char **errstr)
{
	char *path = xasprintf("%s/%s", dir, name), *sql, vs[16];
	const char *p[] = {vs, name};
	PGresult *res;

	sql = read_file(path, NULL, errstr);
	free(path);
	if (sql == NULL)
		return -1;
	if (db_begin(db, errstr) != 0) {
		free(sql);
		return -1;
	}
	/* A migration may rewrite a big table: no statement timeout inside it. */
	PQclear(PQexec(db->conn, "SET LOCAL statement_timeout = 0"));
	res = PQexec(db->conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		char *m = pq_message(PQresultErrorMessage(res));
		*errstr = xasprintf("migration %s: %s", name, m);
		free(m);
		PQclear(res);
		db_rollback(db);
		return -1;
	}
	PQclear(res);
	snprintf(vs, sizeof vs, "%d", version);
	if (db_run(db, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, p,
		errstr) != 0 ||
	    db_commit(db, errstr) != 0) {
		db_rollback(db);
		return -1;
	}
	return 0;
}

/* Every migration not yet recorded, in order, under the advisory lock. */
int
db_migrate(struct db *db, const char *dir, int *applied, char **errstr)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int rc = -1;

	*applied = 0;
	if (d == NULL) {
		*errstr = xasprintf("migrations folder %s: %m", dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (migration_version(de->d_name) < 0)
			continue;
		names = xrealloc(names, (n + 1) * sizeof *names);
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp_names);

	/* Blocks until any other process's migrations are done, then sees their rows. */
	char lockkey[24];
	const char *lockp[] = {lockkey};
	snprintf(lockkey, sizeof lockkey, "%lld", MIGRATION_LOCK_KEY);
	/* Another process may hold the lock through a long migration: wait for it. */
	if (db_run(db, "SET statement_timeout = 0", 0, NULL, errstr) != 0 ||
	    db_run(db, "SET lock_timeout = 0", 0, NULL, errstr) != 0)
		goto out;
	if (db_run(db, "SELECT pg_advisory_lock($1::bigint)", 1, lockp, errstr) != 0)
		goto out;
	if (db_run(db,
		"CREATE TABLE IF NOT EXISTS schema_migrations ("
		" version integer PRIMARY KEY, name text NOT NULL,"
		" applied_at timestamptz NOT NULL DEFAULT now())",
		0, NULL, errstr) != 0)
		goto unlock;
	for (size_t i = 0; i < n; i++) {
		int version = migration_version(names[i]);
		char vs[16];
		const char *p[] = {vs};
		PGresult *res;

		snprintf(vs, sizeof vs, "%d", version);
		res = db_exec(
		    db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p, false, errstr);
		if (res == NULL)
			goto unlock;
		bool done = PQntuples(res) > 0;
		PQclear(res);
		if (done)
			continue;
		if (apply_one(db, dir, names[i], version, errstr) != 0)
			goto unlock;
		log_info("applied migration %s", names[i]);
		(*applied)++;
	}
	rc = 0;
unlock:;
	char *uerr = NULL;
	if (db_run(db, "SELECT pg_advisory_unlock($1::bigint)", 1, lockp, &uerr) != 0)
		free(uerr);
	/* Back to the connection's own timeouts (the startup options). */
	uerr = NULL;
	if (db_run(db, "RESET statement_timeout", 0, NULL, &uerr) != 0 ||
	    db_run(db, "RESET lock_timeout", 0, NULL, &uerr) != 0)
		free(uerr);
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* --- LISTEN on an event loop ----------------------------------------------------------- */

struct db_listener {
	struct event_base *base;
	char *conninfo;
	char *channel;
	db_notify_cb cb;
	db_ready_cb on_ready;
	void *arg;
	PGconn *conn;
	struct event *ev; /* on PQsocket: connecting, then reading */
	struct event *retry; /* reconnect timer */
	int backoff_ms;
	bool listening; /* LISTEN acknowledged */
	bool warned;
};

static void listener_connect(struct db_listener *l);

/* Drops the connection and tries again later (0.2 s doubling to 10 s). */
static void
listener_lost(struct db_listener *l, const char *why)
{
	struct timeval tv;

	if (!l->warned)
		log_warn("job-update listener: %s; retrying", why);
	l->warned = true;
	l->listening = false;
	if (l->ev != NULL) {
		event_free(l->ev);
		l->ev = NULL;
	}
	if (l->conn != NULL) {
		PQfinish(l->conn);
		l->conn = NULL;
	}
	l->backoff_ms = l->backoff_ms == 0 ? 200 : l->backoff_ms * 2;
	if (l->backoff_ms > 10000)
		l->backoff_ms = 10000;
	tv.tv_sec = l->backoff_ms / 1000;
	tv.tv_usec = (l->backoff_ms % 1000) * 1000;
	evtimer_add(l->retry, &tv);
}

/* Reads: results of the LISTEN, then notifications. */
static void
listener_read(evutil_socket_t fd, short what, void *arg)
{
	struct db_listener *l = arg;
	PGnotify *n;
	PGresult *res;

	if (!PQconsumeInput(l->conn)) {
		char *m = pq_message(PQerrorMessage(l->conn));
		listener_lost(l, m);
		free(m);
		return;
	}
	while (!PQisBusy(l->conn) && (res = PQgetResult(l->conn)) != NULL) {
		if (PQresultStatus(res) == PGRES_COMMAND_OK && !l->listening) {
			l->listening = true;
			l->backoff_ms = 0;
			if (l->warned)
				log_info("job-update listener: listening again");
			l->warned = false;
			if (l->on_ready != NULL)
				l->on_ready(l->arg);
		} else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			char *m = pq_message(PQresultErrorMessage(res));
			PQclear(res);
			listener_lost(l, m);
			free(m);
			return;
		}
		PQclear(res);
	}
	while ((n = PQnotifies(l->conn)) != NULL) {
		l->cb(l->arg, n->extra != NULL ? n->extra : "");
		PQfreemem(n);
	}
}

/* Connecting: PQconnectPoll says which way to wait next; the socket may change. */
static void
listener_poll(evutil_socket_t fd, short what, void *arg)
{
	struct db_listener *l = arg;
	PostgresPollingStatusType st = PQconnectPoll(l->conn);
	short want;

	if (l->ev != NULL) {
		event_free(l->ev);
		l->ev = NULL;
	}
	switch (st) {
	case PGRES_POLLING_READING:
		want = EV_READ;
		break;
	case PGRES_POLLING_WRITING:
		want = EV_WRITE;
		break;
	case PGRES_POLLING_OK: {
		char *q = xasprintf("LISTEN %s", l->channel);
		PQsetnonblocking(l->conn, 1);
		if (!PQsendQuery(l->conn, q)) {
			free(q);
			listener_lost(l, "LISTEN could not be sent");
			return;
		}
		free(q);
		(void)PQflush(l->conn);
		l->ev =
		    event_new(l->base, PQsocket(l->conn), EV_READ | EV_PERSIST, listener_read, l);
		event_add(l->ev, NULL);
		return;
	}
	default: {
		char *m = pq_message(PQerrorMessage(l->conn));
		listener_lost(l, m);
		free(m);
		return;
	}
	}
	l->ev = event_new(l->base, PQsocket(l->conn), want, listener_poll, l);
	event_add(l->ev, NULL);
}

/* Starts a non-blocking connect. */
static void
listener_connect(struct db_listener *l)
{
	const char *kw[] = {"connect_timeout", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "application_name", "dbname", NULL};
	const char *val[] = {"5", "1", "10", "5", "3", "bitsvault-listen", l->conninfo, NULL};

	l->conn = PQconnectStartParams(kw, val, 1);
	if (l->conn == NULL || PQstatus(l->conn) == CONNECTION_BAD) {
		listener_lost(l, "cannot start a connection");
		return;
	}
	/* The first poll is for writing (PQconnectStart's contract). */
	l->ev = event_new(l->base, PQsocket(l->conn), EV_WRITE, listener_poll, l);
	event_add(l->ev, NULL);
}

/* Reconnect timer. */
static void
listener_retry(evutil_socket_t fd, short what, void *arg)
{
	listener_connect(arg);
}

/* A listener on channel; connects right away. */
struct db_listener *
db_listener_new(struct event_base *base, const char *conninfo, const char *channel, db_notify_cb cb,
    db_ready_cb on_ready, void *arg)
{
	struct db_listener *l = xcalloc(1, sizeof *l);

	l->base = base;
	l->conninfo = xstrdup(conninfo);
	l->channel = xstrdup(channel);
	l->cb = cb;
	l->on_ready = on_ready;
	l->arg = arg;
	l->retry = evtimer_new(base, listener_retry, l);
	listener_connect(l);
	return l;
}

/* Closes and frees. */
void
db_listener_free(struct db_listener *l)
{
	if (l == NULL)
		return;
	if (l->ev != NULL)
		event_free(l->ev);
	event_free(l->retry);
	if (l->conn != NULL)
		PQfinish(l->conn);
	free(l->conninfo);
	free(l->channel);
	free(l);
}

/* Whether notifications flow now. */
bool
db_listener_ready(const struct db_listener *l)
{
	return l != NULL && l->listening;
}

/* ---- array literals -------------------------------------------------------------------- */

void
db_array_begin(struct buf *b)
{
	buf_reset(b);
	buf_addc(b, '{');
}

void
db_array_hex(struct buf *b, const unsigned char *bytes, size_t n)
{
	char *hex = xmalloc(2 * n + 1);

	if (b->len > 1)
		buf_addc(b, ',');
	hex_encode(bytes, n, hex);
	buf_add(b, hex, 2 * n);
	free(hex);
}

void
db_array_text(struct buf *b, const char *s)
{
	if (b->len > 1)
		buf_addc(b, ',');
	/* Quoted, so commas, braces, spaces and the word NULL are text; " and \ escaped. */
	buf_addc(b, '"');
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_addc(b, '\\');
		buf_addc(b, *s);
	}
	buf_addc(b, '"');
}

void
db_array_end(struct buf *b)
{
	buf_addc(b, '}');
}
