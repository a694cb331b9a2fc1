/* archiver.c: the Droplet Archiver's replication table (see archiver.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shared/archiver.h"
#include "shared/util.h"

/* The droplets the archiver replicates and lists: those it stored itself (a Bits PUT of
 * the same key replaces the row and its mark: Cloud Controller's droplets stay its own). */
#define ARCHIVER_KEY "metadata->>'archiver' = 'true'"

int
archiver_queue(struct db *db, const char *key, const char *peers, char **errstr)
{
	char *copy = xstrdup(peers), *save = NULL;
	int rc = 0;

	for (char *p = strtok_r(copy, ",", &save); p != NULL && rc == 0;
	     p = strtok_r(NULL, ",", &save)) {
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strlen(p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			p[--n] = '\0';
		if (n == 0)
			continue;
		const char *q[] = {key, p};
		rc = db_run(db,
		    "INSERT INTO droplet_replicas (key, peer) VALUES ($1, $2)"
		    " ON CONFLICT (key, peer) DO UPDATE SET state = 'pending', attempts = 0,"
		    " next_at = now(), last_error = NULL, done_at = NULL",
		    2, q, errstr);
	}
	free(copy);
	return rc;
}

int
archiver_queue_missing(struct db *db, const char *key, const char *peer, char **errstr)
{
	const char *q[] = {key, peer};
	PGresult *res = db_exec(db,
	    "INSERT INTO droplet_replicas (key, peer) VALUES ($1, $2)"
	    " ON CONFLICT (key, peer) DO UPDATE SET state = 'pending', attempts = 0,"
	    " next_at = now(), last_error = NULL, done_at = NULL"
	    " WHERE droplet_replicas.state = 'done'",
	    2, q, false, errstr);
	int n;

	if (res == NULL)
		return -1;
	n = atoi(PQcmdTuples(res));
	PQclear(res);
	return n > 0;
}

void
archiver_due_free(struct archiver_due *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(d[i].key);
		free(d[i].peer);
	}
	free(d);
}

int
archiver_claim(
    struct db *db, int limit, int64_t lease_s, struct archiver_due **out, size_t *n, char **errstr)
{
	char lim[16], lease[24];
	const char *p[] = {lim, lease};
	PGresult *res;

	*out = NULL;
	*n = 0;
	snprintf(lim, sizeof lim, "%d", limit);
	snprintf(lease, sizeof lease, "%lld", (long long)lease_s);
	res = db_exec(db,
	    "UPDATE droplet_replicas r SET next_at = now() + make_interval(secs => $2::double precision)"
	    " FROM (SELECT key, peer FROM droplet_replicas WHERE state = 'pending'"
	    "  AND next_at <= now() ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED) d"
	    " WHERE r.key = d.key AND r.peer = d.peer RETURNING r.key, r.peer, r.attempts",
	    2, p, false, errstr);
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n ? *n : 1, sizeof **out);
	for (size_t i = 0; i < *n; i++) {
		(*out)[i].key = xstrdup(PQgetvalue(res, (int)i, 0));
		(*out)[i].peer = xstrdup(PQgetvalue(res, (int)i, 1));
		(*out)[i].attempts = atoi(PQgetvalue(res, (int)i, 2));
	}
	PQclear(res);
	return 0;
}

int
archiver_done(struct db *db, const char *key, const char *peer, char **errstr)
{
	const char *p[] = {key, peer};
	return db_run(db,
	    "UPDATE droplet_replicas SET state = 'done', done_at = now(), last_error = NULL"
	    " WHERE key = $1 AND peer = $2",
	    2, p, errstr);
}

int
archiver_failed(struct db *db, const char *key, const char *peer, const char *error,
    int64_t delay_ms, char **errstr)
{
	char delay[24];
	const char *p[] = {key, peer, error, delay};

	snprintf(delay, sizeof delay, "%lld", (long long)delay_ms);
	return db_run(db,
	    "UPDATE droplet_replicas SET attempts = attempts + 1, last_error = left($3, 1000),"
	    " next_at = now() + make_interval(secs => $4::double precision / 1000)"
	    " WHERE key = $1 AND peer = $2 AND state = 'pending'",
	    4, p, errstr);
}

int
archiver_forget(struct db *db, const char *key, char **errstr)
{
	const char *p[] = {key};
	return db_run(db, "DELETE FROM droplet_replicas WHERE key = $1", 1, p, errstr);
}

int
archiver_keys(struct db *db, const char *after, int limit, json_t **keys, char **errstr)
{
	char lim[16];
	const char *p[] = {after, lim};
	PGresult *res;

	snprintf(lim, sizeof lim, "%d", limit);
	res = db_exec(db,
	    "SELECT key FROM bits_resources WHERE kind = 'droplet' AND " ARCHIVER_KEY
	    " AND key COLLATE \"C\" > $1 ORDER BY key COLLATE \"C\" LIMIT $2",
	    2, p, false, errstr);
	if (res == NULL)
		return -1;
	*keys = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(*keys, json_string(PQgetvalue(res, i, 0)));
	PQclear(res);
	return 0;
}

int
archiver_have(struct db *db, const json_t *keys, json_t **have, char **errstr)
{
	struct buf a;
	size_t i;
	json_t *v;
	PGresult *res;

	buf_init(&a);
	db_array_begin(&a);
	json_array_foreach(keys, i, v) db_array_text(&a, json_string_value(v));
	db_array_end(&a);
	const char *p[] = {a.data};
	res = db_exec(db,
	    "SELECT key FROM bits_resources WHERE kind = 'droplet' AND " ARCHIVER_KEY
	    " AND key = ANY($1::text[])"
	    " ORDER BY key COLLATE \"C\"",
	    1, p, false, errstr);
	buf_free(&a);
	if (res == NULL)
		return -1;
	*have = json_array();
	for (int r = 0; r < PQntuples(res); r++)
		json_array_append_new(*have, json_string(PQgetvalue(res, r, 0)));
	PQclear(res);
	return 0;
}
