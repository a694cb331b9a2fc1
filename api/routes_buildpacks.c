/* routes_buildpacks.c: POST /buildpacks and GET /buildpacks/{guid}/metadata (research
 * bits-service.md §1.3 "Buildpack POST"). A buildpack posted without a guid must be a zip
 * whose top-level manifest.yml names a stack; the server picks the guid and keeps the
 * metadata ({filename, sha1, sha256, stack, key}) with the resource. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <yaml.h>

#include "api/bitsup.h"
#include "api/routes.h"
#include "shared/bits.h"
#include "shared/log.h"
#include "shared/multipart.h"

#define CODE_BAD_REQUEST 290003
/* manifest.yml is read whole; a real one is a few KiB. */
#define MANIFEST_MAX (1024 * 1024)
/* YAML events looked at before giving up (a bomb of aliases or nesting). */
#define MANIFEST_MAX_EVENTS 100000

static const struct bits_kind buildpack_kind = {
    "/buildpacks/", "buildpack", "buildpack", "buildpack"};

/* POST /buildpacks: a multipart upload into a new key. */
enum call_bits_body
routes_buildpacks_post_headers(struct call *c)
{
	enum call_bits_body b;
	char *boundary = NULL, *err = NULL;

	c->bits_kind = &buildpack_kind;
	free(c->bits_key);
	c->bits_key = xmalloc(37);
	call_new_uuid(c->bits_key);
	int64_t limit = c->cfg->bits_buildpacks_max_body_size > 0
	    ? c->cfg->bits_buildpacks_max_body_size
	    : c->cfg->bits_max_body_size;
	if ((b = routes_bits_check_limit(c, limit)) != CALL_BITS_NONE)
		return b;
	if (!multipart_is_form_data(c->content_type) ||
	    multipart_boundary(c->content_type, &boundary, &err) != 0) {
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST,
		    "Could not retrieve form parameter 'buildpack' or 'bits'%s%s", err ? ": " : "",
		    err ? err : "");
		free(err);
		return CALL_BITS_REFUSE;
	}
	c->upload =
	    bitsup_new(c->store, "buildpack", boundary, (size_t)c->cfg->max_json_size, &err);
	free(boundary);
	if (c->upload != NULL)
		return CALL_BITS_STREAM;
	bitsup_store_failed(&c->resp, c->logid, "buildpack upload", err);
	return CALL_BITS_REFUSE;
}

int
routes_buildpacks_post_prepare(struct call *c)
{
	return bitsup_finish(c->upload, &c->resp);
}

/* The value of the top-level key "stack" of a YAML document: 1 found (*stack new), 0 not
 * there, -1 not YAML. */
static int
yaml_stack(const char *text, size_t len, char **stack)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int depth = 0, rc = 0, events = 0;
	bool want_key = true, is_stack = false, done = false;

	*stack = NULL;
	if (!yaml_parser_initialize(&p))
		return -1;
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &ev) || ++events > MANIFEST_MAX_EVENTS) {
			if (events <= MANIFEST_MAX_EVENTS)
				rc = -1;
			else
				yaml_event_delete(&ev);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			done = true; /* the first document only */
			break;
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
			if (depth == 1)
				want_key = true, is_stack = false; /* a value: skipped */
			depth++;
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			depth--;
			break;
		case YAML_SCALAR_EVENT:
		case YAML_ALIAS_EVENT:
			if (depth != 1)
				break;
			if (want_key) {
				is_stack = ev.type == YAML_SCALAR_EVENT &&
				    ev.data.scalar.length == 5 &&
				    memcmp(ev.data.scalar.value, "stack", 5) == 0;
				want_key = false;
			} else {
				if (is_stack && ev.type == YAML_SCALAR_EVENT && *stack == NULL &&
				    ev.data.scalar.length > 0)
					*stack = xstrndup((const char *)ev.data.scalar.value,
					    ev.data.scalar.length);
				want_key = true;
				is_stack = false;
			}
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (rc < 0) {
		free(*stack);
		*stack = NULL;
		return -1;
	}
	return *stack != NULL ? 1 : 0;
}

/* The stack named by the zip's top-level manifest.yml (fd: the stored upload). NULL with
 * *why (the bits-service's words) when there is none. */
static char *
zip_stack(int fd, const char **why)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	char *text = NULL, *stack = NULL;
	bool seen = false;
	la_ssize_t n;

	*why = "Invalid buildpack zip file: no manifest.yml found in zip";
	archive_read_support_format_zip_seekable(a);
	if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK) {
		*why = "Invalid buildpack zip file: not a zip";
		goto out;
	}
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (name == NULL || archive_entry_filetype(e) != AE_IFREG ||
		    (strcmp(name, "manifest.yml") != 0 && strcmp(name, "./manifest.yml") != 0))
			continue;
		seen = true;
		text = xmalloc(MANIFEST_MAX + 1);
		n = archive_read_data(a, text, MANIFEST_MAX + 1);
		if (n < 0 || n > MANIFEST_MAX) {
			*why = n < 0 ? "Invalid buildpack zip file: manifest.yml cannot be read"
				     : "manifest.yml is an invalid YAML file";
			goto out;
		}
		switch (yaml_stack(text, (size_t)n, &stack)) {
		case 1:
			*why = NULL;
			break;
		case 0:
			*why = "missing key \"stack\" in manifest.yml";
			break;
		default:
			*why = "manifest.yml is an invalid YAML file";
			break;
		}
		break;
	}
	(void)seen;
out:
	free(text);
	archive_read_free(a);
	return stack;
}

void
routes_buildpacks_post_work(struct call *c, struct pool_thread *t)
{
	unsigned char sha256[32], sha1[20];
	uint64_t size = 0, bsize;
	char *err = NULL, *stack = NULL, h1[41], h256[65];
	const char *why = NULL;
	json_t *meta = NULL;
	bool created = false;
	int fd;
	struct db *db = call_db(c, t);

	if (db == NULL)
		return;
	if (bitsup_commit(c->upload, sha256, sha1, &size, &err) != 0 ||
	    (fd = store_open_blob(c->store, sha256, &bsize, &err)) < 0) {
		bitsup_store_failed(&c->resp, c->logid, "buildpack upload", err);
		return;
	}
	stack = zip_stack(fd, &why);
	close(fd);
	if (stack == NULL) {
		/* The blob stays unnamed: the collector takes it after gc_grace. */
		bitsup_error(&c->resp, 400, CODE_BAD_REQUEST, "%s", why);
		return;
	}
	hex_encode(sha1, 20, h1);
	hex_encode(sha256, 32, h256);
	meta = json_pack("{s:s, s:s, s:s, s:s, s:s}", "filename", bitsup_filename(c->upload),
	    "sha1", h1, "sha256", h256, "stack", stack, "key", c->bits_key);
	if (store_touch(c->store, sha256, &err) != 0) {
		log_warn_id(c->logid, "buildpack upload: %s", err);
		free(err);
		bitsup_error(&c->resp, 503, 0,
		    "Service Unavailable: the upload was collected "
		    "before it was recorded; send it again");
		goto out;
	}
	if (bits_put(db, "buildpack", c->bits_key, sha256, sha1, (int64_t)size, meta, &created,
		&err) != 0) {
		call_db_failed(c, "recording a buildpack", err);
		free(err);
		goto out;
	}
	log_info_id(c->logid, "buildpack %s stored: stack %s, %llu bytes", c->bits_key, stack,
	    (unsigned long long)size);
	routes_bits_stored(c, 201, sha1, sha256, (double)time(NULL));
out:
	json_decref(meta);
	free(stack);
}

/* GET /buildpacks/{guid}/metadata */
int
routes_buildpacks_metadata_prepare(struct call *c)
{
	const char *g = router_param(&c->m, "guid");

	c->bits_kind = &buildpack_kind;
	free(c->bits_key);
	c->bits_key = xstrdup(g != NULL ? g : "");
	return 0;
}

void
routes_buildpacks_metadata_work(struct call *c, struct pool_thread *t)
{
	struct bits_resource r;
	char *err = NULL;
	struct db *db = call_db(c, t);
	int found;

	if (db == NULL)
		return;
	found = bits_get(db, "buildpack", c->bits_key, &r, &err);
	if (found < 0) {
		call_db_failed(c, "reading a buildpack", err);
		free(err);
		return;
	}
	if (found == 0 || r.metadata == NULL) {
		if (found > 0)
			bits_resource_clear(&r);
		bitsup_error(&c->resp, 404, 10010, "Buildpack metadata not found");
		return;
	}
	resp_json(&c->resp, 200, r.metadata);
	bits_resource_clear(&r);
}
