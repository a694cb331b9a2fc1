/* bits.c: the Bits tables (see bits.h). Every statement is one round trip and atomic on
 * its own: a put is an upsert, a copy an INSERT ... SELECT, so two writers of one key
 * leave one of their rows, never a mix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/bits.h"
#include "shared/util.h"

#define COLS                                                                                       \
	"encode(sha256, 'hex'), encode(sha1, 'hex'), size, extract(epoch FROM created_at),"        \
	" extract(epoch FROM updated_at), metadata::text"

void
bits_resource_clear(struct bits_resource *r)
{
	json_decref(r->metadata);
	r->metadata = NULL;
}

/* Reads a row of COLS. false when a column is malformed. */
static bool
row(PGresult *res, int i, struct bits_resource *r)
{
	memset(r, 0, sizeof *r);
	if (!hex_decode(PQgetvalue(res, i, 0), r->sha256, 32) ||
	    !hex_decode(PQgetvalue(res, i, 1), r->sha1, 20) ||
	    !parse_int64(PQgetvalue(res, i, 2), &r->size))
		return false;
	r->created = strtod(PQgetvalue(res, i, 3), NULL);
	r->updated = strtod(PQgetvalue(res, i, 4), NULL);
	if (!PQgetisnull(res, i, 5))
		r->metadata = json_loads(PQgetvalue(res, i, 5), 0, NULL);
	return true;
}

/* The result of a statement returning at most one row of COLS: 1, 0 or -1. */
static int
one(PGresult *res, struct bits_resource *r, char **errstr)
{
	int rc = 0;

	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0) {
		rc = row(res, 0, r) ? 1 : -1;
		if (rc < 0)
			*errstr = xstrdup("a bits_resources row is malformed");
	}
	PQclear(res);
	return rc;
}

int
bits_get(struct db *db, const char *kind, const char *key, struct bits_resource *r, char **errstr)
{
	const char *p[] = {kind, key};
	return one(db_exec(db, "SELECT " COLS " FROM bits_resources WHERE kind = $1 AND key = $2",
		       2, p, false, errstr),
	    r, errstr);
}

int
bits_put(struct db *db, const char *kind, const char *key, const unsigned char sha256[32],
    const unsigned char sha1[20], int64_t size, const json_t *metadata, bool *created,
    char **errstr)
{
	char h256[65], h1[41], sz[24], *meta = NULL;
	PGresult *res;

	hex_encode(sha256, 32, h256);
	hex_encode(sha1, 20, h1);
	snprintf(sz, sizeof sz, "%lld", (long long)size);
	if (metadata != NULL)
		meta = json_dumps(metadata, JSON_COMPACT);
	const char *p[] = {kind, key, h256, h1, sz, meta};
	/* xmax = 0 only for a row this statement inserted. */
	res = db_exec(db,
	    "INSERT INTO bits_resources (kind, key, sha256, sha1, size, metadata)"
	    " VALUES ($1, $2, decode($3, 'hex'), decode($4, 'hex'), $5, $6::jsonb)"
	    " ON CONFLICT (kind, key) DO UPDATE SET sha256 = EXCLUDED.sha256,"
	    " sha1 = EXCLUDED.sha1, size = EXCLUDED.size, metadata = EXCLUDED.metadata,"
	    " updated_at = now()"
	    " RETURNING xmax = 0",
	    6, p, false, errstr);
	free(meta);
	if (res == NULL)
		return -1;
	*created = PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return 0;
}

int
bits_copy(struct db *db, const char *kind, const char *src, const char *dst,
    struct bits_resource *r, char **errstr)
{
	const char *p[] = {kind, src, dst};
	return one(db_exec(db,
		       "INSERT INTO bits_resources (kind, key, sha256, sha1, size, metadata)"
		       " SELECT kind, $3, sha256, sha1, size, metadata FROM bits_resources"
		       " WHERE kind = $1 AND key = $2"
		       " ON CONFLICT (kind, key) DO UPDATE SET sha256 = EXCLUDED.sha256,"
		       " sha1 = EXCLUDED.sha1, size = EXCLUDED.size,"
		       " metadata = EXCLUDED.metadata, updated_at = now()"
		       " RETURNING " COLS,
		       3, p, false, errstr),
	    r, errstr);
}

int
bits_delete(struct db *db, const char *kind, const char *key, char **errstr)
{
	const char *p[] = {kind, key};
	PGresult *res = db_exec(
	    db, "DELETE FROM bits_resources WHERE kind = $1 AND key = $2", 2, p, false, errstr);
	int n;

	if (res == NULL)
		return -1;
	n = atoi(PQcmdTuples(res));
	PQclear(res);
	return n > 0 ? 1 : 0;
}

int
bits_delete_prefix(struct db *db, const char *kind, const char *prefix, int64_t *n, char **errstr)
{
	struct buf like;
	PGresult *res;

	/* LIKE's own characters in the prefix are escaped: a key is matched by text. */
	buf_init(&like);
	for (const char *s = prefix; *s != '\0'; s++) {
		if (*s == '%' || *s == '_' || *s == '\\')
			buf_addc(&like, '\\');
		buf_addc(&like, *s);
	}
	buf_adds(&like, "%");
	const char *p[] = {kind, like.data};
	res = db_exec(
	    db, "DELETE FROM bits_resources WHERE kind = $1 AND key LIKE $2", 2, p, false, errstr);
	buf_free(&like);
	if (res == NULL)
		return -1;
	*n = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

int
bits_stash_lookup(struct db *db, const unsigned char (*sha1)[20], size_t n,
    struct content_row *rows, bool *found, char **errstr)
{
	struct buf a;
	PGresult *res;

	for (size_t i = 0; i < n; i++)
		found[i] = false;
	if (n == 0)
		return 0;
	buf_init(&a);
	db_array_begin(&a);
	for (size_t i = 0; i < n; i++)
		db_array_hex(&a, sha1[i], 20);
	db_array_end(&a);
	const char *p[] = {a.data};
	/* One row per asked position; of several contents with one sha1 (a collision) any. */
	res = db_exec(db,
	    "SELECT s.i, encode(c.sha1_git, 'hex'), encode(c.sha256, 'hex'), c.length"
	    " FROM unnest($1::text[]) WITH ORDINALITY AS s(h, i)"
	    " CROSS JOIN LATERAL ((SELECT sha1_git, sha256, length FROM contents"
	    "   WHERE sha1 = decode(s.h, 'hex') LIMIT 1)"
	    "  UNION ALL (SELECT NULL::bytea, sha256, size FROM bits_resources"
	    "   WHERE sha1 = decode(s.h, 'hex') LIMIT 1) LIMIT 1) c",
	    1, p, false, errstr);
	buf_free(&a);
	if (res == NULL)
		return -1;
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t i = 0;
		if (!parse_int64(PQgetvalue(res, r, 0), &i) || i < 1 || (size_t)i > n)
			continue;
		struct content_row *row = &rows[i - 1];
		memcpy(row->sha1, sha1[i - 1], 20);
		/* A resource's blob has no git id: only sha256 and length are used. */
		if ((PQgetisnull(res, r, 1) ||
			hex_decode(PQgetvalue(res, r, 1), row->sha1_git, 20)) &&
		    hex_decode(PQgetvalue(res, r, 2), row->sha256, 32) &&
		    parse_int64(PQgetvalue(res, r, 3), &row->length))
			found[i - 1] = true;
	}
	PQclear(res);
	return 0;
}
