/* objects.c: the contents and directories tables. Many rows travel in one statement as
 * arrays of hex text (unnest), and come back as binary columns, so a tree of tens of
 * thousands of entries costs a few round trips, not one per object. */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "shared/objects.h"

#define IDS_PER_QUERY 2000
#define TEXT_PER_QUERY (8u << 20) /* bytes of hex per INSERT of directories */

/* Inserts contents not yet present. */
int
objects_put_contents(struct db *db, const struct content_row *rows, size_t n, char **errstr)
{
	struct buf a1, a2, a3, a4;
	int rc = 0;

	buf_init(&a1), buf_init(&a2), buf_init(&a3), buf_init(&a4);
	for (size_t i = 0; i < n && rc == 0; i += IDS_PER_QUERY) {
		size_t end = i + IDS_PER_QUERY < n ? i + IDS_PER_QUERY : n;
		db_array_begin(&a1), db_array_begin(&a2), db_array_begin(&a3), db_array_begin(&a4);
		for (size_t j = i; j < end; j++) {
			db_array_hex(&a1, rows[j].sha1_git, 20);
			db_array_hex(&a2, rows[j].sha256, 32);
			db_array_hex(&a3, rows[j].sha1, 20);
			buf_printf(&a4, "%s%lld", a4.len > 1 ? "," : "", (long long)rows[j].length);
		}
		buf_addc(&a1, '}'), buf_addc(&a2, '}'), buf_addc(&a3, '}'), buf_addc(&a4, '}');
		const char *p[] = {a1.data, a2.data, a3.data, a4.data};
		rc = db_run(db,
		    "INSERT INTO contents (sha1_git, sha256, sha1, length)"
		    " SELECT decode(a, 'hex'), decode(b, 'hex'), decode(c, 'hex'), d"
		    " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS t(a, b, c, d)"
		    " ON CONFLICT (sha1_git) DO NOTHING",
		    4, p, errstr);
	}
	buf_free(&a1), buf_free(&a2), buf_free(&a3), buf_free(&a4);
	return rc;
}

/* Inserts directories not yet present, batched by size. */
int
objects_put_directories(struct db *db, const struct directory_row *rows, size_t n, char **errstr)
{
	struct buf ids, raws;
	size_t i = 0;
	int rc = 0;

	buf_init(&ids), buf_init(&raws);
	while (i < n && rc == 0) {
		size_t count = 0;
		db_array_begin(&ids), db_array_begin(&raws);
		while (i < n && count < IDS_PER_QUERY && raws.len < TEXT_PER_QUERY) {
			db_array_hex(&ids, rows[i].id, 20);
			if (rows[i].raw_len == 0) {
				/* the empty tree: an empty element */
				buf_adds(&raws, raws.len > 1 ? ",\"\"" : "\"\"");
			} else
				db_array_hex(&raws, rows[i].raw, rows[i].raw_len);
			i++, count++;
		}
		buf_addc(&ids, '}'), buf_addc(&raws, '}');
		const char *p[] = {ids.data, raws.data};
		rc = db_run(db,
		    "INSERT INTO directories (id, raw)"
		    " SELECT decode(a, 'hex'), decode(b, 'hex')"
		    " FROM unnest($1::text[], $2::text[]) AS t(a, b)"
		    " ON CONFLICT (id) DO NOTHING",
		    2, p, errstr);
	}
	buf_free(&ids), buf_free(&raws);
	return rc;
}

/* Runs a binary-result query over batches of ids; row_cb gets each row. */
static int
query_ids(struct db *db, const char *sql, const unsigned char (*ids)[20], size_t n,
    int (*row_cb)(void *, const PGresult *, int), void *arg, char **errstr)
{
	struct buf a;
	int rc = 0;

	buf_init(&a);
	for (size_t i = 0; i < n && rc == 0; i += IDS_PER_QUERY) {
		size_t end = i + IDS_PER_QUERY < n ? i + IDS_PER_QUERY : n;
		db_array_begin(&a);
		for (size_t j = i; j < end; j++)
			db_array_hex(&a, ids[j], 20);
		buf_addc(&a, '}');
		const char *p[] = {a.data};
		PGresult *res = db_exec(db, sql, 1, p, true, errstr);
		if (res == NULL) {
			rc = -1;
			break;
		}
		for (int r = 0; r < PQntuples(res) && rc == 0; r++)
			rc = row_cb(arg, res, r);
		PQclear(res);
	}
	buf_free(&a);
	return rc;
}

struct dir_ctx {
	objects_dir_cb cb;
	void *arg;
};

/* One directories row (binary: id, raw). */
static int
dir_row(void *arg, const PGresult *res, int r)
{
	struct dir_ctx *c = arg;
	if (PQgetlength(res, r, 0) != 20)
		return 0;
	return c->cb(c->arg, (const unsigned char *)PQgetvalue(res, r, 0),
	    (const unsigned char *)PQgetvalue(res, r, 1), (size_t)PQgetlength(res, r, 1));
}

/* Many directories. */
int
objects_get_directories(struct db *db, const unsigned char (*ids)[20], size_t n, objects_dir_cb cb,
    void *arg, char **errstr)
{
	struct dir_ctx c = {cb, arg};
	return query_ids(db,
	    "SELECT id, raw FROM directories"
	    " WHERE id = ANY (ARRAY(SELECT decode(x, 'hex') FROM unnest($1::text[]) x))",
	    ids, n, dir_row, &c, errstr);
}

struct content_ctx {
	objects_content_cb cb;
	void *arg;
};

/* One contents row (binary: sha1_git, sha256, sha1, length int8). */
static int
content_row(void *arg, const PGresult *res, int r)
{
	struct content_ctx *c = arg;
	struct content_row row;
	uint64_t len;

	if (PQgetlength(res, r, 0) != 20 || PQgetlength(res, r, 1) != 32 ||
	    PQgetlength(res, r, 2) != 20 || PQgetlength(res, r, 3) != 8)
		return 0;
	memcpy(row.sha1_git, PQgetvalue(res, r, 0), 20);
	memcpy(row.sha256, PQgetvalue(res, r, 1), 32);
	memcpy(row.sha1, PQgetvalue(res, r, 2), 20);
	memcpy(&len, PQgetvalue(res, r, 3), 8);
	row.length = (int64_t)be64toh(len);
	return c->cb(c->arg, &row);
}

/* Many contents. */
int
objects_get_contents(struct db *db, const unsigned char (*ids)[20], size_t n, objects_content_cb cb,
    void *arg, char **errstr)
{
	struct content_ctx c = {cb, arg};
	return query_ids(db,
	    "SELECT sha1_git, sha256, sha1, length FROM contents"
	    " WHERE sha1_git = ANY (ARRAY(SELECT decode(x, 'hex') FROM unnest($1::text[]) x))",
	    ids, n, content_row, &c, errstr);
}

/* Adds bytes as one element of an array literal, the empty string included. */
static void
array_bytes(struct buf *b, const unsigned char *bytes, size_t n)
{
	if (n == 0)
		buf_adds(b, b->len > 1 ? ",\"\"" : "\"\"");
	else
		db_array_hex(b, bytes, n);
}

/* Inserts revisions not yet present; parents travel as one text element of
 * concatenated hex, split in SQL. */
int
objects_put_revisions(struct db *db, const struct revision_row *rows, size_t n, char **errstr)
{
	struct buf ids, dirs, parents, raws;
	size_t i = 0;
	int rc = 0;

	buf_init(&ids), buf_init(&dirs), buf_init(&parents), buf_init(&raws);
	while (i < n && rc == 0) {
		size_t count = 0;
		db_array_begin(&ids), db_array_begin(&dirs), db_array_begin(&parents),
		    db_array_begin(&raws);
		while (i < n && count < IDS_PER_QUERY && raws.len < TEXT_PER_QUERY) {
			const struct revision_row *r = &rows[i];
			db_array_hex(&ids, r->id, 20);
			db_array_hex(&dirs, r->directory, 20);
			array_bytes(
			    &parents, r->n_parents ? r->parents[0] : NULL, 20 * r->n_parents);
			array_bytes(&raws, r->raw, r->raw_len);
			i++, count++;
		}
		buf_addc(&ids, '}'), buf_addc(&dirs, '}'), buf_addc(&parents, '}');
		buf_addc(&raws, '}');
		const char *p[] = {ids.data, dirs.data, parents.data, raws.data};
		rc = db_run(db,
		    "INSERT INTO revisions (id, directory, parents, raw)"
		    " SELECT decode(a, 'hex'), decode(b, 'hex'),"
		    "  ARRAY(SELECT decode(substr(c, g * 40 + 1, 40), 'hex')"
		    "        FROM generate_series(0, length(c) / 40 - 1) AS g ORDER BY g),"
		    "  decode(d, 'hex')"
		    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(a, b, c, d)"
		    " ON CONFLICT (id) DO NOTHING",
		    4, p, errstr);
	}
	buf_free(&ids), buf_free(&dirs), buf_free(&parents), buf_free(&raws);
	return rc;
}

/* The releases.target_type word of a SWHID kind. */
static const char *
target_type_word(enum swhid_kind k)
{
	switch (k) {
	case SWHID_CNT:
		return "content";
	case SWHID_DIR:
		return "directory";
	case SWHID_REV:
		return "revision";
	case SWHID_REL:
		return "release";
	default:
		return NULL;
	}
}

/* Inserts releases not yet present. */
int
objects_put_releases(struct db *db, const struct release_row *rows, size_t n, char **errstr)
{
	struct buf ids, targets, types, names, raws;
	size_t i = 0;
	int rc = 0;

	buf_init(&ids), buf_init(&targets), buf_init(&types), buf_init(&names), buf_init(&raws);
	while (i < n && rc == 0) {
		size_t count = 0;
		db_array_begin(&ids), db_array_begin(&targets), db_array_begin(&types);
		db_array_begin(&names), db_array_begin(&raws);
		while (i < n && count < IDS_PER_QUERY && raws.len < TEXT_PER_QUERY) {
			const struct release_row *r = &rows[i];
			const char *word = target_type_word(r->target_kind);
			if (word == NULL) {
				*errstr = xstrdup("release with a snapshot target");
				rc = -1;
				break;
			}
			db_array_hex(&ids, r->id, 20);
			db_array_hex(&targets, r->target, 20);
			buf_printf(&types, "%s%s", types.len > 1 ? "," : "", word);
			array_bytes(&names, r->name, r->name_len);
			array_bytes(&raws, r->raw, r->raw_len);
			i++, count++;
		}
		if (rc != 0)
			break;
		buf_addc(&ids, '}'), buf_addc(&targets, '}'), buf_addc(&types, '}');
		buf_addc(&names, '}'), buf_addc(&raws, '}');
		const char *p[] = {ids.data, targets.data, types.data, names.data, raws.data};
		rc = db_run(db,
		    "INSERT INTO releases (id, target, target_type, name, raw)"
		    " SELECT decode(a, 'hex'), decode(b, 'hex'), c, decode(d, 'hex'), decode(e, 'hex')"
		    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
		    "  AS t(a, b, c, d, e)"
		    " ON CONFLICT (id) DO NOTHING",
		    5, p, errstr);
	}
	buf_free(&ids), buf_free(&targets), buf_free(&types), buf_free(&names), buf_free(&raws);
	return rc;
}

/* Inserts a snapshot unless present. */
int
objects_put_snapshot(struct db *db, const unsigned char id[20], const unsigned char *raw,
    size_t raw_len, char **errstr)
{
	char hex[41];
	char *rhex = xmalloc(2 * raw_len + 1);
	int rc;

	hex_encode(id, 20, hex);
	hex_encode(raw, raw_len, rhex);
	const char *p[] = {hex, rhex};
	rc = db_run(db,
	    "INSERT INTO snapshots (id, raw) VALUES (decode($1, 'hex'), decode($2, 'hex'))"
	    " ON CONFLICT (id) DO NOTHING",
	    2, p, errstr);
	free(rhex);
	return rc;
}

/* The table and id column of a kind. */
static bool
kind_table(enum swhid_kind kind, const char **table, const char **col)
{
	static const char *const tables[] = {
	    "contents", "directories", "revisions", "releases", "snapshots"};
	if ((unsigned int)kind >= BV_NELEM(tables))
		return false;
	*table = tables[kind];
	*col = kind == SWHID_CNT ? "sha1_git" : "id";
	return true;
}

struct present_ctx {
	const unsigned char (*ids)[20];
	size_t n;
	bool *present;
	size_t base; /* index of the batch's first id */
};

/* One found id (binary, with its 1-based position in the batch's array). */
static int
present_row(void *arg, const PGresult *res, int r)
{
	struct present_ctx *c = arg;
	uint64_t pos;

	if (PQgetlength(res, r, 0) != 8)
		return 0;
	memcpy(&pos, PQgetvalue(res, r, 0), 8);
	pos = be64toh(pos);
	if (pos >= 1 && pos <= c->n)
		c->present[pos - 1] = true;
	return 0;
}

/* Which ids are stored: ordinality gives each id's position back. */
int
objects_present(struct db *db, enum swhid_kind kind, const unsigned char (*ids)[20], size_t n,
    bool *present, char **errstr)
{
	const char *table, *col;
	struct present_ctx c = {ids, n, present, 0};
	char *sql;
	int rc;

	if (!kind_table(kind, &table, &col)) {
		*errstr = xstrdup("unknown object kind");
		return -1;
	}
	memset(present, 0, n * sizeof *present);
	sql = xasprintf("SELECT t.pos FROM unnest($1::text[]) WITH ORDINALITY AS t(x, pos)"
			" WHERE EXISTS (SELECT 1 FROM %s WHERE %s = decode(t.x, 'hex'))",
	    table, col);
	/* query_ids batches: positions are per batch, so run batch by batch here. */
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i += IDS_PER_QUERY) {
		size_t m = n - i < IDS_PER_QUERY ? n - i : IDS_PER_QUERY;
		c.ids = ids + i;
		c.n = m;
		c.present = present + i;
		rc = query_ids(db, sql, ids + i, m, present_row, &c, errstr);
	}
	free(sql);
	return rc;
}

/* One object. */
int
objects_exists(struct db *db, enum swhid_kind kind, const unsigned char id[20], char **errstr)
{
	bool present = false;

	if (objects_present(db, kind, (const unsigned char(*)[20])id, 1, &present, errstr) != 0)
		return -1;
	return present ? 1 : 0;
}

/* Raw bodies by id. */
int
objects_get_raw(struct db *db, enum swhid_kind kind, const unsigned char (*ids)[20], size_t n,
    objects_dir_cb cb, void *arg, char **errstr)
{
	const char *table, *col;
	struct dir_ctx c = {cb, arg};
	char *sql;
	int rc;

	if (kind < SWHID_REV || !kind_table(kind, &table, &col)) {
		*errstr = xstrdup("objects_get_raw: not a revision, release or snapshot");
		return -1;
	}
	sql =
	    xasprintf("SELECT id, raw FROM %s"
		      " WHERE id = ANY (ARRAY(SELECT decode(x, 'hex') FROM unnest($1::text[]) x))",
		table);
	rc = query_ids(db, sql, ids, n, dir_row, &c, errstr);
	free(sql);
	return rc;
}

/* The closure over parents, UNION removing repeats (merges reach a commit twice, and
 * heads share their history). */
int
objects_revision_history(struct db *db, const unsigned char (*heads)[20], size_t n,
    objects_dir_cb cb, void *arg, char **errstr)
{
	struct dir_ctx c = {cb, arg};
	return query_ids(db,
	    "WITH RECURSIVE h(id) AS ("
	    "  SELECT id FROM revisions"
	    "  WHERE id = ANY (ARRAY(SELECT decode(x, 'hex') FROM unnest($1::text[]) x))"
	    " UNION"
	    "  SELECT p FROM h JOIN revisions r ON r.id = h.id, unnest(r.parents) AS p"
	    ") SELECT r.id, r.raw FROM h JOIN revisions r ON r.id = h.id",
	    heads, n, dir_row, &c, errstr);
}
