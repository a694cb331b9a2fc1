/* routes_stash.c: the bits-service's app stash (research bits-service.md §1.5, docs/api.md
 * "App stash"). The stash is the archive itself: every stored content is an entry, found
 * by its sha1 (index contents_sha1), so a file of an archived directory, a package's file
 * and a stash entry are one blob. POST /app_stash/matches answers which fingerprints the
 * server holds; POST /app_stash/entries stores a zip's files (through shared/ingest.c, as
 * an archive upload) and answers a receipt. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "api/bitsup.h"
#include "api/routes.h"
#include "shared/bits.h"
#include "shared/jobstore.h"
#include "shared/kv.h"
#include "shared/ingest.h"
#include "shared/log.h"
#include "shared/multipart.h"

#define CODE_BAD_REQUEST 290003

static const struct bits_kind stash_kind = {
    "/app_stash/", "application", "app_stash", "app stash upload"};

/* The app stash's body limit (its own, else the global one). */
static int64_t
stash_limit(const struct call *c)
{
	return c->cfg->bits_app_stash_max_body_size > 0 ? c->cfg->bits_app_stash_max_body_size
							: c->cfg->bits_max_body_size;
}

/* POST /app_stash/matches (and bundles' JSON form): a JSON body within the limit. */
enum call_bits_body
routes_stash_json_headers(struct call *c)
{
	enum call_bits_body b;

	c->bits_kind = &stash_kind;
	if (c->bits_public) {
		/* Matches and bundles read the stash by sha1: knowing a file's sha1 is not a
		 * right to its bytes, so not through a signed URL. */
		bitsup_error(&c->resp, 403, 0,
		    "Forbidden: the app stash is not served through a signed URL");
		return CALL_BITS_REFUSE;
	}
	if ((b = routes_bits_check_limit(c, stash_limit(c))) != CALL_BITS_NONE)
		return b;
	c->body_limit =
	    c->body_limit < c->cfg->max_json_size * 64 ? c->body_limit : c->cfg->max_json_size * 64;
	return CALL_BITS_JSON;
}

/* The bits-service's 422 for a body that is not a list of fingerprints (plain text). */
static int
invalid_body(struct call *c, const char *why)
{
	resp_init(&c->resp);
	c->resp.status = 422;
	c->resp.content_type = "text/plain";
	c->resp.body = xasprintf("Invalid body: %s", why);
	c->resp.body_len = strlen(c->resp.body);
	return -1;
}

/* A fingerprint {fn, sha1, size, mode}: fn and mode strings when present, size a
 * non-negative integer when present, sha1 a string. NULL when fine, else what is wrong. */
static const char *
fingerprint_problem(const json_t *e)
{
	const json_t *fn = json_object_get(e, "fn"), *sha1 = json_object_get(e, "sha1"),
		     *size = json_object_get(e, "size"), *mode = json_object_get(e, "mode");

	if (!json_is_object(e))
		return "an entry is not an object";
	if (!json_is_string(sha1))
		return "an entry has no \"sha1\" string";
	if (fn != NULL && !json_is_string(fn))
		return "an entry's \"fn\" is not a string";
	if (mode != NULL && !json_is_string(mode))
		return "an entry's \"mode\" is not a string";
	if (size != NULL && (!json_is_integer(size) || json_integer_value(size) < 0))
		return "an entry's \"size\" is not an unsigned number";
	return NULL;
}

int
routes_stash_matches_prepare(struct call *c)
{
	size_t i;
	json_t *e;
	const char *why;

	if (!json_is_array(c->json))
		return invalid_body(c, "not a JSON array of {fn, sha1, size, mode}");
	if (json_array_size(c->json) == 0) {
		bitsup_error(&c->resp, 422, 0,
		    "The request is semantically invalid: must be a non-empty array.");
		return -1;
	}
	json_array_foreach(c->json, i, e)
	{
		if ((why = fingerprint_problem(e)) != NULL)
			return invalid_body(c, why);
	}
	return 0;
}

void
routes_stash_matches_work(struct call *c, struct pool_thread *t)
{
	size_t n = json_array_size(c->json), k = 0, i;
	unsigned char(*ids)[20] = xmalloc(n * sizeof *ids);
	size_t *at = xmalloc(n * sizeof *at);
	struct content_row *rows = xcalloc(n, sizeof *rows);
	bool *found = xcalloc(n, sizeof *found);
	json_t *out = json_array(), *e;
	char *err = NULL;
	struct db *db = call_db(c, t);

	if (db == NULL)
		goto out;
	/* Only files within the stash's size window are matched (the bits-service's
	 * inclusive bounds); a sha1 that is not 40 hex digits matches nothing. */
	json_array_foreach(c->json, i, e)
	{
		json_int_t size = json_integer_value(json_object_get(e, "size"));
		const char *s = json_string_value(json_object_get(e, "sha1"));
		if (size < c->cfg->bits_app_stash_min_size ||
		    size > c->cfg->bits_app_stash_max_size || strlen(s) != 40 ||
		    !hex_decode(s, ids[k], 20))
			continue;
		at[k++] = i;
	}
	if (bits_stash_lookup(db, (const unsigned char(*)[20])ids, k, rows, found, &err) != 0) {
		call_db_failed(c, "matching the app stash", err);
		free(err);
		goto out;
	}
	for (i = 0; i < k; i++) {
		if (!found[i])
			continue;
		e = json_array_get(c->json, at[i]);
		const char *fn = json_string_value(json_object_get(e, "fn"));
		const char *mode = json_string_value(json_object_get(e, "mode"));
		json_array_append_new(out,
		    json_pack("{s:s, s:s, s:I, s:s}", "fn", fn ? fn : "", "sha1",
			json_string_value(json_object_get(e, "sha1")), "size",
			json_integer_value(json_object_get(e, "size")), "mode", mode ? mode : ""));
	}
	resp_json(&c->resp, 200, out);
out:
	json_decref(out);
	free(ids);
	free(at);
	free(rows);
	free(found);
}

/* The uploaded zip (c->upload) stored and read through the archive ingest, each regular
 * file reported to cb: the zip is a blob of its own (nothing names it: the collector
 * takes it after gc_grace), read by path, twice. 0 with *res, or -1 with c->resp set. */
static int
ingest_upload(struct call *c, struct db *db, ingest_file_cb cb, void *arg,
    struct ingest_result *res, uint64_t *size)
{
	unsigned char sha256[32], sha1[20];
	struct ingest_limits limits = {
	    c->cfg->max_archive_entries, c->cfg->max_archive_unpacked, c->cfg->max_archive_ratio};
	uint64_t bsize = 0;
	char *err = NULL, path[64];
	int status = 0, fd;

	if (bitsup_commit(c->upload, sha256, sha1, size, &err) != 0) {
		bitsup_store_failed(&c->resp, c->logid, "app stash upload", err);
		return -1;
	}
	if ((fd = store_open_blob(c->store, sha256, &bsize, &err)) < 0) {
		log_error_id(c->logid, "app stash upload: %s", err);
		free(err);
		bitsup_error(&c->resp, 500, 0, "Internal Server Error: the upload cannot be read");
		return -1;
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int rc = ingest_archive_files(c->store, db, path, &limits, cb, arg, res, &status, &err);
	close(fd);
	if (rc == 0)
		return 0;
	char *shown = call_hide_paths(c->cfg, err ? err : "", path);
	if (status == 400)
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
		    "Bad Request: Not a valid zip file: %s", shown);
	else if (status == 413)
		bitsup_error(&c->resp, 413, 0, "%s", shown);
	else if (status == 503)
		call_db_failed(c, "storing app stash files", err);
	else
		bitsup_error(&c->resp, status == 507 ? 507 : 500, 0, "%s",
		    status == 507 ? "Insufficient Storage: no space left on the server"
				  : "Internal Server Error: the files could not be stored");
	if (status != 400 && status != 413)
		log_error_id(c->logid, "app stash files: %s", err ? err : "?");
	free(shown);
	free(err);
	return -1;
}

/* POST /app_stash/entries: a multipart body whose "application" file is a zip. */
enum call_bits_body
routes_stash_entries_headers(struct call *c)
{
	enum call_bits_body b;
	char *boundary = NULL, *err = NULL;

	c->bits_kind = &stash_kind;
	if ((b = routes_bits_check_limit(c, stash_limit(c))) != CALL_BITS_NONE)
		return b;
	if (!multipart_is_form_data(c->content_type)) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
		    "Could not retrieve 'application' form parameter");
		return CALL_BITS_REFUSE;
	}
	if (multipart_boundary(c->content_type, &boundary, &err) != 0) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST, "%s", err);
		free(err);
		return CALL_BITS_REFUSE;
	}
	c->upload =
	    bitsup_new(c->store, "application", boundary, (size_t)c->cfg->max_json_size, &err);
	free(boundary);
	if (c->upload != NULL)
		return CALL_BITS_STREAM;
	bitsup_store_failed(&c->resp, c->logid, "app stash upload", err);
	return CALL_BITS_REFUSE;
}

/* Whether the upload starts as a zip does (a local file header, or an empty zip's end of
 * central directory). */
static bool
looks_like_zip(const struct bitsup *u)
{
	unsigned char m[4];
	size_t n = bitsup_magic(u, m);

	return n == 4 && m[0] == 'P' && m[1] == 'K' &&
	    ((m[2] == 3 && m[3] == 4) || (m[2] == 5 && m[3] == 6));
}

int
routes_stash_entries_prepare(struct call *c)
{
	if (bitsup_finish(c->upload, &c->resp) != 0)
		return -1;
	if (!looks_like_zip(c->upload)) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST, "Bad Request: Not a valid zip file");
		return -1;
	}
	return 0;
}

/* ingest's report of each stored file: one receipt entry (the bits-service's
 * {fn, sha1, size, mode}, mode as octal text of the permission bits). */
static void
receipt_add(
    void *arg, const char *path, size_t len, unsigned int perm, const struct content_row *row)
{
	json_t *list = arg;
	char sha1[41], mode[8];

	hex_encode(row->sha1, 20, sha1);
	snprintf(mode, sizeof mode, "%o", perm & 07777);
	json_array_append_new(list,
	    json_pack("{s:s%, s:s, s:I, s:s}", "fn", path, len, "sha1", sha1, "size",
		(json_int_t)row->length, "mode", mode));
}

void
routes_stash_entries_work(struct call *c, struct pool_thread *t)
{
	struct ingest_result res;
	uint64_t size = 0;
	json_t *receipt = json_array();
	struct db *db = call_db(c, t);

	if (db == NULL || ingest_upload(c, db, receipt_add, receipt, &res, &size) != 0)
		goto out;
	log_info_id(c->logid, "app stash: %zu files (%lld new) from a %llu-byte zip",
	    json_array_size(receipt), (long long)res.new_contents, (unsigned long long)size);
	resp_json(&c->resp, 201, receipt);
out:
	json_decref(receipt);
}

/* ---- POST /app_stash/bundles -------------------------------------------------------- */

/* How long a request waits for its bundle's job before a 503 asks it to come back. */
#define BUNDLE_WAIT_S 600
/* Mode of a resource without one (or with one that is not octal). */
#define BUNDLE_DEFAULT_MODE 0744

/* JSON (the resources) or multipart ("resources" and the "application" zip). */
enum call_bits_body
routes_stash_bundles_headers(struct call *c)
{
	enum call_bits_body b;

	if (c->bits_public) {
		bitsup_error(&c->resp, 403, 0,
		    "Forbidden: the app stash is not served through a signed URL");
		return CALL_BITS_REFUSE;
	}
	if (!multipart_is_form_data(c->content_type))
		return routes_stash_json_headers(c);
	b = routes_stash_entries_headers(c);
	if (b == CALL_BITS_STREAM)
		bitsup_keep_file_field(c->upload, "resources");
	return b;
}

/* A resource's mode: octal text (the bits-service's "644"), default 0744. */
static unsigned int
bundle_mode(const json_t *m)
{
	const char *s = json_string_value(m);
	char *end = NULL;
	unsigned long v;

	if (s == NULL || *s == '\0')
		return BUNDLE_DEFAULT_MODE;
	v = strtoul(s, &end, 8);
	if (*end != '\0' || v > 07777)
		return BUNDLE_DEFAULT_MODE;
	return (unsigned int)v;
}

/* A 422 in the bits-service's words. */
static int BV_PRINTF(2, 3) semantically_invalid(struct call *c, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	bitsup_error(&c->resp, 422, 0, "The request is semantically invalid: %s", msg);
	free(msg);
	return -1;
}

/* The resources, checked, into c->aux: [[name, sha1 hex, mode], ...]. */
int
routes_stash_bundles_prepare(struct call *c)
{
	json_t *list = NULL, *e, *names;
	const char *text;
	size_t i;

	if (c->upload != NULL) {
		if (routes_stash_entries_prepare(c) != 0)
			return -1;
		if ((text = bitsup_field(c->upload, "resources")) == NULL) {
			bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
			    "Could not retrieve form parameter 'resources'");
			return -1;
		}
		list = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	} else {
		list = json_incref(c->json);
	}
	if (!json_is_array(list)) {
		json_decref(list);
		bitsup_error(
		    &c->resp, 422, 0, "Invalid body: not a JSON array of {fn, sha1, mode}");
		return -1;
	}
	if (json_array_size(list) > BITS_MAX_FILES) {
		json_decref(list);
		return semantically_invalid(c, "more than %d files", BITS_MAX_FILES);
	}
	c->aux = json_array();
	names = json_object();
	json_array_foreach(list, i, e)
	{
		const char *fn = json_string_value(json_object_get(e, "fn"));
		const char *sha1 = json_string_value(json_object_get(e, "sha1"));
		int rc = 0;
		if (sha1 == NULL || *sha1 == '\0')
			rc = semantically_invalid(c, "key `%s` missing or empty", "sha1");
		else if (fn == NULL || *fn == '\0')
			rc = semantically_invalid(c, "key `%s` missing or empty", "fn");
		else if (!call_rel_path_ok(fn))
			rc = semantically_invalid(c,
			    "file name '%s' is not a relative path inside the bundle (no '..', "
			    "no absolute path, no empty or '.' component)",
			    call_echo(fn));
		else if (json_object_get(names, fn) != NULL)
			rc =
			    semantically_invalid(c, "file name '%s' is given twice", call_echo(fn));
		if (rc != 0) {
			json_decref(list);
			json_decref(names);
			return -1;
		}
		json_object_set_new(names, fn, json_true());
		json_array_append_new(c->aux,
		    json_pack("[s, s, I]", fn, sha1,
			(json_int_t)bundle_mode(json_object_get(e, "mode"))));
	}
	json_decref(list);
	json_decref(names);
	return 0;
}

struct app_files {
	json_t *files; /* [[name, sha256, size, mode], ...] */
	json_t *seen; /* names so far */
	char *bad; /* the first name that cannot go into the bundle, and why */
};

/* ingest's report of the application zip's files: the bundle's first entries. */
static void
app_file_add(
    void *arg, const char *path, size_t len, unsigned int perm, const struct content_row *row)
{
	struct app_files *af = arg;
	char sha256[65], *name = xstrndup(path, len);

	/* The names are checked as the resources' are: an extractor may keep either of two
	 * entries with one name, and a control character hides a name from a reader. */
	if (af->bad == NULL && (!call_rel_path_ok(name) || json_object_get(af->seen, name) != NULL))
		af->bad = xasprintf("the application zip's file '%s' is %s", call_echo(name),
		    json_object_get(af->seen, name) != NULL ? "in it twice"
							    : "not a plain relative path");
	json_object_set_new(af->seen, name, json_true());
	free(name);
	hex_encode(row->sha256, 32, sha256);
	json_array_append_new(af->files,
	    json_pack("[s%, s, I, I]", path, len, sha256, (json_int_t)row->length,
		(json_int_t)(perm & 07777)));
}

/* The uploaded application zip's files, stored (into the stash, as entries are) and
 * listed in files. 0, or -1 with the answer in c->resp. */
static int
application_files(struct call *c, struct db *db, json_t *files)
{
	struct ingest_result res;
	struct app_files af = {files, json_object(), NULL};
	uint64_t size = 0;
	int rc = ingest_upload(c, db, app_file_add, &af, &res, &size);

	json_decref(af.seen);
	if (rc == 0 && af.bad != NULL) {
		semantically_invalid(c, "%s", af.bad);
		free(af.bad);
		return -1;
	}
	free(af.bad);
	if (rc == 0 && json_array_size(files) + json_array_size(c->aux) > BITS_MAX_FILES) {
		semantically_invalid(c, "more than %d files", BITS_MAX_FILES);
		return -1;
	}
	return rc;
}

/* The bundle of a done job, served: 1, or 0 when its blob is gone (expired, say). */
static int
serve_bundle(struct call *c, const struct job *job)
{
	unsigned char sha[32];
	uint64_t size = 0;
	char *err = NULL;
	int fd;

	if (!job->has_bundle || !hex_decode(job->bundle_sha256, sha, 32))
		return 0;
	if ((fd = store_open_blob(c->store, sha, &size, &err)) < 0) {
		log_warn_id(c->logid, "bundle of job %lld: %s", (long long)job->id, err);
		free(err);
		return 0;
	}
	resp_file(&c->resp, 200, "application/zip", fd, size);
	return 1;
}

void
routes_stash_bundles_work(struct call *c, struct pool_thread *t)
{
	json_t *files = NULL, *params = NULL;
	unsigned char(*ids)[20] = NULL;
	struct content_row *rows = NULL;
	bool *found = NULL, created = false;
	struct job *job = NULL;
	size_t n = json_array_size(c->aux), i;
	char *err = NULL, hex[65];
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	if (c->wait_deadline_ms == 0) {
		c->wait_deadline_ms = now_ms() + BUNDLE_WAIT_S * 1000ull;
		/* First pass: the files, then the job. */
		files = json_array();
		if (c->upload != NULL && application_files(c, db, files) != 0)
			goto out;
		ids = xmalloc((n ? n : 1) * sizeof *ids);
		rows = xcalloc(n ? n : 1, sizeof *rows);
		found = xcalloc(n ? n : 1, sizeof *found);
		for (i = 0; i < n; i++) {
			const char *s =
			    json_string_value(json_array_get(json_array_get(c->aux, i), 1));
			if (strlen(s) != 40 || !hex_decode(s, ids[i], 20)) {
				bitsup_error(&c->resp, 404, 0, "%s not found", call_echo(s));
				goto out;
			}
		}
		if (bits_stash_lookup(db, (const unsigned char(*)[20])ids, n, rows, found, &err) !=
		    0) {
			call_db_failed(c, "looking up the app stash", err);
			free(err);
			goto out;
		}
		json_t *seen = json_object();
		size_t k;
		json_t *f;
		json_array_foreach(files, k, f)
		    json_object_set(seen, json_string_value(json_array_get(f, 0)), json_true());
		for (i = 0; i < n; i++) {
			json_t *r = json_array_get(c->aux, i);
			const char *fn = json_string_value(json_array_get(r, 0));
			if (!found[i]) {
				bitsup_error(&c->resp, 404, 0, "%s not found",
				    json_string_value(json_array_get(r, 1)));
				json_decref(seen);
				goto out;
			}
			if (json_object_get(seen, fn) != NULL) {
				semantically_invalid(c,
				    "file name '%s' is both in the application and a resource",
				    call_echo(fn));
				json_decref(seen);
				goto out;
			}
			hex_encode(rows[i].sha256, 32, hex);
			json_array_append_new(files,
			    json_pack("[s, s, I, O]", fn, hex, (json_int_t)rows[i].length,
				json_array_get(r, 2)));
		}
		json_decref(seen);
		/* One job per distinct zip: the same request again reuses its bundle. */
		params = json_pack("{s:O}", "files", files);
		if ((job = routes_bits_job_start(
			 c, t, db, "stash_bundle", "stash_bundle", params, &created)) == NULL)
			goto out;
		c->job_id = job->id;
		log_info_id(c->logid, "app stash bundle: %zu files, job %lld (%s)",
		    json_array_size(files), (long long)job->id, created ? "new" : "existing");
	} else if (jobstore_get(db, c->job_id, &job, &err) <= 0) {
		call_db_failed(c, "reading the bundle's job", err ? err : "the job is gone");
		free(err);
		goto out;
	}
	switch (job->state) {
	case JOB_DONE:
		if (serve_bundle(c, job))
			goto out;
		routes_bits_expire_job(c, db, job->id);
		bitsup_error(&c->resp, 503, 0,
		    "Service Unavailable: the bundle expired before it was sent; ask again");
		goto out;
	case JOB_FAILED:
	case JOB_EXPIRED:
		bitsup_error(&c->resp, 500, 0, "Internal Server Error: the bundle failed: %s",
		    job->error != NULL ? job->error : "no reason given");
		goto out;
	default:
		break;
	}
	/* Still building: wait for the job's notification (app.c parks the call), or, when
	 * waiting is not possible or has lasted too long, ask the client to come back. */
	routes_bits_job_wait(
	    c, job, "Service Unavailable: the bundle is still being built; ask again");
out:
	job_free(job);
	json_decref(files);
	json_decref(params);
	free(ids);
	free(rows);
	free(found);
}
