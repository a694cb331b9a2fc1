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

/* Starts an array literal. */
static void
array_begin(struct buf *b)
{
	buf_reset(b);
	buf_addc(b, '{');
}

/* Adds an element (hex of bytes) to an array literal started with array_begin. */
static void
array_elem(struct buf *b, const unsigned char *bytes, size_t n)
{
	if (b->len > 1)
		buf_addc(b, ',');
	char *hex = xmalloc(2 * n + 1);
	hex_encode(bytes, n, hex);
	buf_add(b, hex, 2 * n);
	free(hex);
}

/* Inserts contents not yet present. */
int
objects_put_contents(struct db *db, const struct content_row *rows, size_t n, char **errstr)
{
	struct buf a1, a2, a3, a4;
	int rc = 0;

	buf_init(&a1), buf_init(&a2), buf_init(&a3), buf_init(&a4);
	for (size_t i = 0; i < n && rc == 0; i += IDS_PER_QUERY) {
		size_t end = i + IDS_PER_QUERY < n ? i + IDS_PER_QUERY : n;
		array_begin(&a1), array_begin(&a2), array_begin(&a3), array_begin(&a4);
		for (size_t j = i; j < end; j++) {
			array_elem(&a1, rows[j].sha1_git, 20);
			array_elem(&a2, rows[j].sha256, 32);
			array_elem(&a3, rows[j].sha1, 20);
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
		array_begin(&ids), array_begin(&raws);
		while (i < n && count < IDS_PER_QUERY && raws.len < TEXT_PER_QUERY) {
			array_elem(&ids, rows[i].id, 20);
			if (rows[i].raw_len == 0) {
				/* the empty tree: an empty element */
				buf_adds(&raws, raws.len > 1 ? ",\"\"" : "\"\"");
			} else
				array_elem(&raws, rows[i].raw, rows[i].raw_len);
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

/* Whether a directory is stored. */
int
objects_directory_exists(struct db *db, const unsigned char id[20], char **errstr)
{
	char hex[41];
	const char *p[] = {hex};
	PGresult *res;
	int found;

	hex_encode(id, 20, hex);
	res = db_exec(
	    db, "SELECT 1 FROM directories WHERE id = decode($1, 'hex')", 1, p, false, errstr);
	if (res == NULL)
		return -1;
	found = PQntuples(res) > 0;
	PQclear(res);
	return found;
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
		array_begin(&a);
		for (size_t j = i; j < end; j++)
			array_elem(&a, ids[j], 20);
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
