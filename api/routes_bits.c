/* routes_bits.c: the bits-service's resources (research bits-service.md §1.2-§1.7, docs/api.md
 * "Bits"): packages, droplets, buildpacks and buildpack cache entries. PUT with a multipart
 * file streams into the store while it is hashed (api/bitsup.c) and binds the key to the
 * blob (shared/bits.c); PUT with {"source_guid"} copies a key; GET serves the blob with
 * sendfile (ETag, conditional GET, Range); HEAD; DELETE. A blob is shared with every other
 * name of the same bytes. Errors are the bits-service's {"description", "code"}. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "api/bitsup.h"
#include "api/routes.h"
#include "shared/bits.h"
#include "shared/log.h"
#include "shared/multipart.h"

#define CODE_BAD_REQUEST 290003
#define CODE_NOT_FOUND 10010

static const struct bits_kind kinds[] = {
    {"/packages/", "package", "package", "package"},
    {"/droplets/", "droplet", "droplet", "droplet"},
    {"/buildpacks/", "buildpack", "buildpack", "buildpack"},
    {"/buildpack_cache/entries", "buildpack_cache", "buildpack_cache", "buildpack cache entry"},
};

/* The kind a route's pattern serves. */
static const struct bits_kind *
kind_of(const struct call *c)
{
	const char *p = c->route->pattern;

	if (strncmp(p, "/signed/", 8) == 0)
		p += 7; /* the Ruby bits-service's prefix */
	for (size_t i = 0; i < BV_NELEM(kinds); i++)
		if (strncmp(p, kinds[i].prefix, strlen(kinds[i].prefix)) == 0)
			return &kinds[i];
	return &kinds[0];
}

/* The kind's body limit (its own, else the global one; 0 none). */
static int64_t
limit_of(const struct call *c, const struct bits_kind *k)
{
	const struct config *cfg = c->cfg;
	int64_t own = strcmp(k->kind, "package") == 0 ? cfg->bits_packages_max_body_size
	    : strcmp(k->kind, "droplet") == 0         ? cfg->bits_droplets_max_body_size
	    : strcmp(k->kind, "buildpack") == 0       ? cfg->bits_buildpacks_max_body_size
						      : cfg->bits_buildpack_cache_max_body_size;
	return own > 0 ? own : cfg->bits_max_body_size;
}

/* A key segment we keep: 1 to 255 bytes, no control characters (the router has already
 * refused '/' and NUL once decoded). */
static bool
segment_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 ||
	    !call_utf8_valid(s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* Sets kind and key from the route's captures; false with a 400 when a segment is bad. */
static bool
parse_key(struct call *c)
{
	struct buf key;

	c->bits_kind = kind_of(c);
	buf_init(&key);
	buf_adds(&key, "");
	for (int i = 0; i < c->m.nparams; i++) {
		if (!segment_ok(c->m.values[i])) {
			buf_free(&key);
			bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
			    "Invalid %s identifier: 1 to 255 bytes of UTF-8 without control characters, not '.' or '..'",
			    c->bits_kind->noun);
			return false;
		}
		if (i > 0)
			buf_addc(&key, '/');
		buf_adds(&key, c->m.values[i]);
	}
	free(c->bits_key);
	c->bits_key = buf_steal(&key, NULL);
	return true;
}

/* A 40 or 64 hex digit checksum as the bytes it names (sha1, sha256); 0 otherwise. */
static size_t
hex_checksum(const char *s, unsigned char out[32])
{
	size_t n = strlen(s);

	if ((n == 40 || n == 64) && hex_decode(s, out, n / 2))
		return n / 2;
	return 0;
}

/* The limit checks of research §1.7: with a limit, no Content-Length is a 400 and one past
 * it a 413 once the body is drained. CALL_BITS_NONE when the body may come. */
enum call_bits_body
routes_bits_check_limit(struct call *c, int64_t limit)
{
	c->body_limit = limit > 0 ? limit : INT64_MAX;
	if (limit <= 0)
		return CALL_BITS_NONE;
	if (c->content_length < 0) {
		bitsup_error(
		    &c->resp, 400, CODE_BAD_REQUEST, "HTTP header does not contain Content-Length");
		return CALL_BITS_REFUSE;
	}
	if (c->content_length > limit) {
		bitsup_error(&c->resp, 413, 0,
		    "Request Entity Too Large: the %s limit is %lld bytes", c->bits_kind->noun,
		    (long long)limit);
		return CALL_BITS_REFUSE_DRAIN;
	}
	return CALL_BITS_NONE;
}

/* Opens the streamed upload; CALL_BITS_STREAM, or a refusal in c->resp. */
static enum call_bits_body
open_upload(struct call *c, const char *boundary)
{
	char *err = NULL;

	c->upload = bitsup_new(
	    c->store, c->bits_kind->field, boundary, (size_t)c->cfg->max_json_size, &err);
	if (c->upload != NULL)
		return CALL_BITS_STREAM;
	bitsup_store_failed(&c->resp, c->logid, "bits upload", err);
	return CALL_BITS_REFUSE;
}

/* PUT /<kind>/...: a multipart upload, or a JSON copy. */
enum call_bits_body
routes_bits_put_headers(struct call *c)
{
	enum call_bits_body b;
	char *boundary = NULL, *err = NULL;

	if (!parse_key(c))
		return CALL_BITS_REFUSE;
	if ((b = routes_bits_check_limit(c, limit_of(c, c->bits_kind))) != CALL_BITS_NONE)
		return b;
	if (!multipart_is_form_data(c->content_type) && c->bits_public) {
		/* A signed upload URL is for bytes: a copy through it would read any
		 * resource the signer never meant to share. */
		bitsup_error(&c->resp, 403, 0,
		    "Forbidden: a copy (source_guid) is not allowed through a signed URL");
		return CALL_BITS_REFUSE;
	}
	if (!multipart_is_form_data(c->content_type)) {
		c->body_limit = c->cfg->max_json_size;
		return CALL_BITS_JSON;
	}
	if (multipart_boundary(c->content_type, &boundary, &err) != 0) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST, "%s", err);
		free(err);
		return CALL_BITS_REFUSE;
	}
	/* A checksum in a droplet's path is checked against the bytes. */
	if (strcmp(c->bits_kind->kind, "droplet") == 0 && c->m.nparams == 2)
		c->bits_want_len = hex_checksum(c->m.values[1], c->bits_want);
	b = open_upload(c, boundary);
	free(boundary);
	return b;
}

/* PUT /droplets/{guid} with "Digest: sha256=<hex>": a raw body, checked against it. */
enum call_bits_body
routes_bits_digest_headers(struct call *c)
{
	enum call_bits_body b;
	const char *d = c->digest, *eq;

	if (!parse_key(c))
		return CALL_BITS_REFUSE;
	if (d == NULL || *d == '\0') {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST, "No Digest header");
		return CALL_BITS_REFUSE;
	}
	eq = strchr(d, '=');
	if (eq == NULL || (size_t)(eq - d) != 6 || strncasecmp(d, "sha256", 6) != 0 ||
	    hex_checksum(eq + 1, c->bits_want) != 32) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
		    "Digest must have format sha256=value, with value the body's SHA-256 in "
		    "hex");
		return CALL_BITS_REFUSE;
	}
	c->bits_want_len = 32;
	/* Stored where the bits-service puts it: "<guid>/<value>". */
	char *key = xasprintf("%s/%s", c->bits_key, eq + 1);
	free(c->bits_key);
	c->bits_key = key;
	if ((b = routes_bits_check_limit(c, limit_of(c, c->bits_kind))) != CALL_BITS_NONE)
		return b;
	return open_upload(c, NULL);
}

/* The body is in: a multipart upload must have had its file; a copy needs source_guid. */
int
routes_bits_put_prepare(struct call *c)
{
	const char *res;
	json_t *src;

	if (c->upload != NULL) {
		if (bitsup_finish(c->upload, &c->resp) != 0)
			return -1;
		res = bitsup_field(c->upload, "resources");
		if (res != NULL && strcmp(c->bits_kind->kind, "package") == 0) {
			/* An empty list is a plain upload, as the bits-service takes it. */
			json_t *list = json_loads(res, 0, NULL);
			bool empty = json_is_array(list) && json_array_size(list) == 0;
			json_decref(list);
			if (!empty && c->bits_public) {
				/* Resources read the stash by sha1: not for a signed URL. */
				bitsup_error(&c->resp, 403, 0,
				    "Forbidden: resources are not allowed through a signed URL");
				return -1;
			}
			if (!empty)
				return routes_bitspkg_prepare(c, res);
		}
		return 0;
	}
	src = json_object_get(c->json, "source_guid");
	if (c->json == NULL || !json_is_object(c->json)) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
		    "Body must be valid JSON when request is not multipart/form-data. "
		    "{\"source_guid\": \"...\"} copies a %s",
		    c->bits_kind->noun);
		return -1;
	}
	if (!json_is_string(src) || !segment_ok(json_string_value(src))) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
		    "source_guid must be the identifier of an existing %s", c->bits_kind->noun);
		return -1;
	}
	return 0;
}

void
routes_bits_stored(struct call *c, int status, const unsigned char sha1[20],
    const unsigned char sha256[32], double created)
{
	char h1[41], h256[65], when[32];
	json_t *o;

	hex_encode(sha1, 20, h1);
	hex_encode(sha256, 32, h256);
	call_iso8601(created, when);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "guid", c->bits_key, "state", "READY",
	    "type", "bits", "created_at", when, "sha1", h1, "sha256", h256);
	resp_json(&c->resp, status, o);
	json_decref(o);
}

/* A copy: the source's blob touched (it may be collected otherwise), then the new key. */
static void
copy_work(struct call *c, struct db *db)
{
	const char *src = json_string_value(json_object_get(c->json, "source_guid"));
	struct bits_resource r;
	char *err = NULL;
	int found = bits_get(db, c->bits_kind->kind, src, &r, &err);

	if (found == 1) {
		bits_resource_clear(&r);
		if (store_touch(c->store, r.sha256, &err) != 0) {
			log_warn_id(c->logid, "copy of %s: %s", src, err);
			free(err);
			err = NULL;
			found = 0; /* its blob is gone: as good as absent */
		} else {
			found = bits_copy(db, c->bits_kind->kind, src, c->bits_key, &r, &err);
		}
	}
	if (found < 0) {
		call_db_failed(c, "copying a bits resource", err);
		free(err);
		return;
	}
	if (found == 0) {
		bitsup_error(&c->resp, 404, CODE_NOT_FOUND, "Source %s not found: %s",
		    c->bits_kind->noun, call_echo(src));
		return;
	}
	routes_bits_stored(c, 201, r.sha1, r.sha256, r.updated);
	bits_resource_clear(&r);
}

void
routes_bits_put_work(struct call *c, struct pool_thread *t)
{
	unsigned char sha256[32], sha1[20];
	uint64_t size = 0;
	char *err = NULL;
	bool created = false;
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	if (c->upload == NULL) {
		copy_work(c, db);
		return;
	}
	if (c->aux != NULL) {
		routes_bitspkg_work(c, t, db);
		return;
	}
	if (c->bits_want_len > 0) {
		/* Checked before anything is stored: a mismatch leaves nothing behind. */
		bitsup_peek(c->upload, sha256, sha1);
		if (memcmp(c->bits_want, c->bits_want_len == 32 ? sha256 : sha1,
			c->bits_want_len) != 0) {
			char got[65];
			hex_encode(c->bits_want_len == 32 ? sha256 : sha1, c->bits_want_len, got);
			bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
			    "The uploaded %s's %s is %s, not the checksum it was sent with",
			    c->bits_kind->noun, c->bits_want_len == 32 ? "SHA-256" : "SHA-1", got);
			return;
		}
	}
	if (bitsup_commit(c->upload, sha256, sha1, &size, &err) != 0) {
		bitsup_store_failed(&c->resp, c->logid, "bits upload", err);
		return;
	}
	/* The GC's invariant: the blob is touched just before its row commits. */
	if (store_touch(c->store, sha256, &err) != 0) {
		/* A collector took the blob between its commit and now: the client retries. */
		log_warn_id(c->logid, "bits upload: %s", err);
		free(err);
		bitsup_error(&c->resp, 503, 0,
		    "Service Unavailable: the upload was collected "
		    "before it was recorded; send it again");
		return;
	}
	if (bits_put(db, c->bits_kind->kind, c->bits_key, sha256, sha1, (int64_t)size, NULL,
		&created, &err) != 0) {
		call_db_failed(c, "recording a bits resource", err);
		free(err);
		return;
	}
	log_info_id(c->logid, "%s %s stored: %llu bytes", c->bits_kind->noun, c->bits_key,
	    (unsigned long long)size);
	routes_bits_stored(c, 201, sha1, sha256, (double)time(NULL));
}

/* GET, HEAD and DELETE of one key. */
int
routes_bits_key_prepare(struct call *c)
{
	return parse_key(c) ? 0 : -1;
}

/* Whether a conditional header names this ETag ("*", a list, quoted or not, weak or not). */
static bool
etag_listed(const char *hdr, const char *hex)
{
	size_t n = strlen(hex);

	for (const char *p = hdr; *p != '\0';) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (*p == '"')
			p++;
		if (strncmp(p, hex, n) == 0 &&
		    (p[n] == '"' || p[n] == ',' || p[n] == '\0' || p[n] == ' ' || p[n] == '\t'))
			return true;
		while (*p != '\0' && *p != ',')
			p++;
	}
	return false;
}

void
routes_bits_get_work(struct call *c, struct pool_thread *t)
{
	struct bits_resource r;
	char *err = NULL, h1[41];
	uint64_t size = 0, start, len;
	struct db *db = call_db(c, t);
	int found, fd;

	if (db == NULL)
		return;
	found = bits_get(db, c->bits_kind->kind, c->bits_key, &r, &err);
	if (found < 0) {
		call_db_failed(c, "reading a bits resource", err);
		free(err);
		return;
	}
	if (found == 0) {
		bitsup_error(&c->resp, 404, CODE_NOT_FOUND, "%c%s not found",
		    c->bits_kind->noun[0] - 32, c->bits_kind->noun + 1);
		return;
	}
	/* The archiver's credentials read the archiver's droplets, not Cloud Controller's. */
	bool archived = json_is_true(json_object_get(r.metadata, "archiver"));
	bits_resource_clear(&r);
	if (c->bits_archiver && !archived) {
		bitsup_error(&c->resp, 404, CODE_NOT_FOUND, "Droplet not found");
		return;
	}
	hex_encode(r.sha1, 20, h1);
	/* The bits-service's ETag is the content's sha1; it honours its own If-None-Modify. */
	if ((c->if_none_match != NULL && etag_listed(c->if_none_match, h1)) ||
	    (c->if_none_modify != NULL && etag_listed(c->if_none_modify, h1))) {
		resp_init(&c->resp);
		c->resp.status = 304;
		resp_headerf(&c->resp, "ETag", "\"%s\"", h1);
		/* RFC 9110 §8.6: the length a 200 would have had, or none. */
		resp_headerf(&c->resp, "Content-Length", "%lld", (long long)r.size);
		return;
	}
	fd = store_open_blob(c->store, r.sha256, &size, &err);
	if (fd < 0) {
		log_error_id(c->logid, "%s %s: %s", c->bits_kind->noun, c->bits_key, err);
		free(err);
		bitsup_error(&c->resp, errno == ENOENT ? 404 : 500, 0, "%s",
		    errno == ENOENT ? "The resource's bytes are missing from the store"
				    : "Internal Server Error: the store cannot be read");
		return;
	}
	switch (resp_parse_range(c->range, size, &start, &len)) {
	case 1:
		resp_file_range(&c->resp, "application/octet-stream", fd, start, len, size);
		break;
	case -1:
		close(fd);
		bitsup_error(&c->resp, 416, 0, "Range Not Satisfiable");
		resp_headerf(&c->resp, "Content-Range", "bytes */%llu", (unsigned long long)size);
		return;
	default:
		resp_file(&c->resp, 200, "application/octet-stream", fd, size);
		break;
	}
	resp_headerf(&c->resp, "ETag", "\"%s\"", h1);
	resp_header(&c->resp, "Accept-Ranges", "bytes");
	if (c->head)
		c->resp.send_file_body = false;
}

void
routes_bits_delete_work(struct call *c, struct pool_thread *t)
{
	char *err = NULL;
	struct db *db = call_db(c, t);
	int found;

	if (db == NULL)
		return;
	found = bits_delete(db, c->bits_kind->kind, c->bits_key, &err);
	if (found < 0) {
		call_db_failed(c, "deleting a bits resource", err);
		free(err);
		return;
	}
	if (found == 0) {
		bitsup_error(&c->resp, 404, CODE_NOT_FOUND, "%c%s not found",
		    c->bits_kind->noun[0] - 32, c->bits_kind->noun + 1);
		return;
	}
	log_info_id(c->logid, "%s %s deleted", c->bits_kind->noun, c->bits_key);
	resp_init(&c->resp);
	c->resp.status = 204;
}

/* DELETE /buildpack_cache/entries[/{app}]: everything, or every stack of one app; 204
 * whether anything was there or not (research §1.6). */
void
routes_bits_delete_dir_work(struct call *c, struct pool_thread *t)
{
	char *err = NULL, *prefix;
	int64_t n = 0;
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	prefix = c->bits_key[0] != '\0' ? xasprintf("%s/", c->bits_key) : xstrdup("");
	if (bits_delete_prefix(db, "buildpack_cache", prefix, &n, &err) != 0) {
		call_db_failed(c, "deleting buildpack cache entries", err);
		free(err);
		free(prefix);
		return;
	}
	log_info_id(c->logid, "buildpack cache: %lld entr%s deleted under '%s'", (long long)n,
	    n == 1 ? "y" : "ies", prefix);
	free(prefix);
	resp_init(&c->resp);
	c->resp.status = 204;
}
