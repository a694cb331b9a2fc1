/* routes_dirs.c: the archive face: upload a tar/tar.gz/zip as a directory (POST
 * /directories) and list a directory's entries (GET /directories/{id}). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/routes.h"
#include "shared/ingest.h"
#include "shared/log.h"
#include "shared/objects.h"

/* POST /directories: the body was spooled to a file by api/http.c as it arrived. */
int
routes_dirs_upload_prepare(struct call *c)
{
	if (c->body_bytes == 0) {
		resp_error(&c->resp, 400, "empty body: send a tar, tar.gz or zip archive");
		return -1;
	}
	return 0;
}

/* Unpacks the spooled archive into contents and directories, then drops the spool. */
void
routes_dirs_upload_work(struct call *c, struct pool_thread *t)
{
	struct ingest_limits limits;
	struct ingest_result res;
	struct db *db;
	char *err = NULL, hex[41], swhid[64], *location;
	int status = 500;
	json_t *o;

	if ((db = call_db(c, t)) == NULL)
		goto out;
	memset(&res, 0, sizeof res);
	limits.max_entries = c->cfg->max_archive_entries;
	limits.max_unpacked = c->cfg->max_archive_unpacked;
	limits.max_ratio = c->cfg->max_archive_ratio;
	if (ingest_archive(c->store, db, c->spool_path, &limits, &res, &status, &err) != 0) {
		char *safe = call_redact(c->cfg, err != NULL ? err : "archive ingest failed");

		if (status < 400 || status > 599)
			status = 500;
		if (status >= 500) {
			log_error_id(c->logid, "upload of %llu bytes failed (%d): %s",
			    (unsigned long long)c->body_bytes, status, safe);
			/* The server's side of a failure reads the same everywhere: the cause
			 * (a path, a library's message) is in the log under the request id. */
			resp_error(&c->resp, status, "%s",
			    status == 503       ? "temporarily unavailable; try again"
				: status == 507 ? "no space left on the server"
						: "internal error while storing the archive");
		} else {
			/* The client's own archive is at fault: say how, without our paths. */
			char *shown = call_hide_paths(c->cfg, safe, c->spool_path);

			log_info_id(c->logid, "upload refused (%d): %s", status, safe);
			resp_error(&c->resp, status, "%s", shown);
			free(shown);
		}
		free(safe);
		free(err);
		goto out;
	}
	hex_encode(res.root, 20, hex);
	swhid_format(SWHID_DIR, res.root, swhid);
	o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "id", hex, "swhid", swhid, "files",
	    (json_int_t)res.files, "directories", (json_int_t)res.directories, "bytes",
	    (json_int_t)res.bytes, "new_contents", (json_int_t)res.new_contents);
	resp_json(&c->resp, 201, o);
	json_decref(o);
	location = xasprintf("/directories/%s", hex);
	resp_header(&c->resp, "Location", location);
	free(location);
	log_info_id(c->logid, "stored %s: %lld files, %lld new", swhid, (long long)res.files,
	    (long long)res.new_contents);
out:
	/* The spool goes now rather than when the request ends: disk space is the scarce
	 * resource while many uploads run. */
	if (c->spool_path != NULL) {
		if (unlink(c->spool_path) != 0)
			log_warn_id(c->logid, "cannot remove spool file %s", c->spool_path);
		free(c->spool_path);
		c->spool_path = NULL;
	}
}

/* GET /directories/{id}: id is 40 hex digits or swh:1:dir:<hex>. */
int
routes_dirs_get_prepare(struct call *c)
{
	return call_parse_object(c, "directory", router_param(&c->m, "id")) ? 0 : -1;
}

/* Git's entry modes as the type names clients see. */
static const char *
entry_type(unsigned int mode)
{
	switch (mode) {
	case GIT_MODE_DIR:
		return "dir";
	case GIT_MODE_LINK:
		return "symlink";
	case GIT_MODE_GITLINK:
		return "submodule";
	default:
		return "file";
	}
}

struct listing {
	json_t *entries;
	bool found;
	bool corrupt;
};

/* objects_get_directories callback: the tree body becomes the entries array. */
static int
list_entries(void *arg, const unsigned char id[20], const unsigned char *raw, size_t raw_len)
{
	struct listing *l = arg;
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len;
	const unsigned char *target;
	char hex[41], perms[16];
	int rc;

	l->found = true;
	tree_iter_init(&it, raw, raw_len);
	while ((rc = tree_iter_next(&it, &mode, &name, &name_len, &target)) == 1) {
		json_t *e = json_object();

		/* Git names are bytes; JSON strings must be UTF-8. */
		if (call_utf8_valid(name, name_len)) {
			json_object_set_new(e, "name", json_stringn(name, name_len));
		} else {
			char *b64 = base64_encode((const unsigned char *)name, name_len);

			json_object_set_new(e, "name_b64", json_string(b64));
			free(b64);
		}
		json_object_set_new(e, "type", json_string(entry_type(mode)));
		snprintf(perms, sizeof perms, "%06o", mode);
		json_object_set_new(e, "perms", json_string(perms));
		hex_encode(target, 20, hex);
		json_object_set_new(e, "target", json_string(hex));
		json_array_append_new(l->entries, e);
	}
	if (rc < 0)
		l->corrupt = true;
	return 0;
}

/* Reads the directory's tree from Postgres and lists it. */
void
routes_dirs_get_work(struct call *c, struct pool_thread *t)
{
	struct listing l = {json_array(), false, false};
	struct db *db;
	char *err = NULL;
	const unsigned char(*ids)[20] = (const unsigned char(*)[20])c->obj_id;
	json_t *o;

	if ((db = call_db(c, t)) == NULL)
		goto out;
	if (objects_get_directories(db, ids, 1, list_entries, &l, &err) != 0) {
		call_db_failed(c, "get directory", err);
		free(err);
		goto out;
	}
	if (!l.found) {
		resp_error(&c->resp, 404, "%s not found.", c->swhid);
		goto out;
	}
	if (l.corrupt) {
		log_error_id(c->logid, "%s: stored tree is malformed", c->swhid);
		resp_error(&c->resp, 500, "%s: the stored directory is corrupt", c->swhid);
		goto out;
	}
	o = json_pack("{s:s,s:s,s:O}", "id", c->obj_hex, "swhid", c->swhid, "entries", l.entries);
	resp_json(&c->resp, 200, o);
	json_decref(o);
out:
	json_decref(l.entries);
}
