/* package.c: the "package_upload" job (docs/api.md "CF v3 packages"): a package's bits,
 * packed as Cloud Controller packs them (research bits-service.md §5.4). The uploaded zip
 * (a blob the API stored, params "bits") is read through the archive ingest, so each of
 * its files enters the app stash (and symlinks are left out, as CC deletes them); the
 * matched resources (params "resources": [[path, sha1, mode], ...]) are looked up in the
 * stash; the package is one new zip of both (worker/stash.c stash_zip), whose sha1 and
 * sha256 the job reports. The package row follows the job by trigger (migration 0007):
 * READY with those checksums, or FAILED with the reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/bits.h"
#include "shared/ingest.h"
#include "shared/log.h"
#include "worker/worker.h"

struct upload {
	json_t *files;
	json_t *seen; /* names so far */
	char *bad; /* the first name that cannot go into the package */
};

/* ingest's report of each file of the upload: one entry of the package. A name with a
 * control character or a backslash, or one given twice, is noted: an extractor may keep
 * either of two entries with one name. */
static void
file_add(void *arg, const char *path, size_t len, unsigned int perm, const struct content_row *row)
{
	struct upload *u = arg;
	char sha256[65], *name = xstrndup(path, len);
	bool odd = strlen(name) != len;

	for (const char *p = name; *p != '\0'; p++)
		odd |= (unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\';
	if (u->bad == NULL && (odd || json_object_get(u->seen, name) != NULL))
		u->bad = odd
		    ? xstrdup("the uploaded bits hold a file name with a control character "
			      "or a backslash")
		    : xasprintf("the uploaded bits hold '%.200s' twice", name);
	json_object_set_new(u->seen, name, json_true());
	free(name);
	hex_encode(row->sha256, 32, sha256);
	json_array_append_new(u->files,
	    json_pack("[s%, s, I, I]", path, len, sha256, (json_int_t)row->length,
		(json_int_t)(perm & 07777)));
}

/* The uploaded zip's files into files. DONE, or an outcome with *reason. */
static enum job_outcome
upload_files(struct job_run *run, const char *hex, json_t *files, char **reason)
{
	const struct config *cfg = run->w->cfg;
	struct ingest_limits limits = {
	    cfg->max_archive_entries, cfg->max_archive_unpacked, cfg->max_archive_ratio};
	struct ingest_result res;
	unsigned char sha256[32];
	uint64_t size = 0;
	char *err = NULL, path[64];
	int status = 0, fd;

	if (!hex_decode(hex, sha256, 32)) {
		*reason = xstrdup("bad job parameters: bits is not a sha256");
		return JOB_OUTCOME_FAILED;
	}
	if ((fd = store_open_blob(run->w->store, sha256, &size, &err)) < 0) {
		log_warn_id(run->log_id, "store: %s", err);
		free(err);
		*reason = xstrdup("the uploaded bits are missing from the store");
		return JOB_OUTCOME_FAILED;
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct upload u = {files, json_object(), NULL};
	int rc = ingest_archive_files(
	    run->w->store, run->w->db, path, &limits, file_add, &u, &res, &status, &err);
	close(fd);
	json_decref(u.seen);
	if (rc == 0 && u.bad != NULL) {
		*reason = u.bad;
		return JOB_OUTCOME_FAILED;
	}
	free(u.bad);
	if (rc == 0)
		return JOB_OUTCOME_DONE;
	if (status == 503 || (status == 500 && worker_db_transient(run->w))) {
		log_warn_id(run->log_id, "ingest: %s", err);
		free(err);
		*reason = xstrdup("the database was unavailable while the bits were unpacked");
		return JOB_OUTCOME_RETRY;
	}
	*reason = xasprintf("%s: %s",
	    status == 400       ? "the uploaded bits are not a valid zip"
		: status == 413 ? "the uploaded bits are too large"
		: status == 507 ? "no space left on the server"
				: "the uploaded bits could not be unpacked",
	    err != NULL ? err : "unknown error");
	free(err);
	return JOB_OUTCOME_FAILED;
}

/* The matched resources, from the stash, after the upload's files. */
static enum job_outcome
resource_files(struct job_run *run, const json_t *resources, json_t *files, char **reason)
{
	size_t n = json_array_size(resources), i, k;
	unsigned char(*ids)[20] = xmalloc((n ? n : 1) * sizeof *ids);
	struct content_row *rows = xcalloc(n ? n : 1, sizeof *rows);
	bool *found = xcalloc(n ? n : 1, sizeof *found);
	json_t *seen = json_object(), *f;
	enum job_outcome o = JOB_OUTCOME_FAILED;
	char *err = NULL, hex[65];

	for (i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(json_array_get(resources, i), 1));
		if (s == NULL || strlen(s) != 40 || !hex_decode(s, ids[i], 20)) {
			*reason = xstrdup("bad job parameters: a resource's sha1 is malformed");
			goto out;
		}
	}
	if (bits_stash_lookup(run->w->db, (const unsigned char(*)[20])ids, n, rows, found, &err) !=
	    0) {
		log_warn_id(run->log_id, "stash: %s", err);
		free(err);
		*reason = xstrdup("the database was unavailable while the resources were matched");
		o = worker_db_transient(run->w) ? JOB_OUTCOME_RETRY : JOB_OUTCOME_FAILED;
		goto out;
	}
	json_array_foreach(files, k, f)
	    json_object_set(seen, json_string_value(json_array_get(f, 0)), json_true());
	for (i = 0; i < n; i++) {
		const json_t *r = json_array_get(resources, i);
		const char *fn = json_string_value(json_array_get(r, 0));
		if (fn == NULL || !found[i]) {
			*reason = xasprintf("the resource '%s' (sha1 %s) is not in the app stash",
			    fn != NULL ? fn : "?", json_string_value(json_array_get(r, 1)));
			goto out;
		}
		if (json_object_get(seen, fn) != NULL) {
			*reason = xasprintf(
			    "'%s' is both in the uploaded bits and a matched resource", fn);
			goto out;
		}
		json_object_set(seen, fn, json_true());
		hex_encode(rows[i].sha256, 32, hex);
		json_array_append_new(files,
		    json_pack(
			"[s, s, I, O]", fn, hex, (json_int_t)rows[i].length, json_array_get(r, 2)));
	}
	o = JOB_OUTCOME_DONE;
out:
	json_decref(seen);
	free(ids);
	free(rows);
	free(found);
	return o;
}

enum job_outcome
package_upload_run(struct job_run *run, json_t **result, char **reason)
{
	const json_t *params = run->job->params;
	const char *bits = json_string_value(json_object_get(params, "bits"));
	const json_t *resources = json_object_get(params, "resources");
	json_t *files = json_array();
	unsigned char sha256[32], sha1[20];
	uint64_t size = 0;
	char h256[65], h1[41];
	enum job_outcome o;

	if (!job_phase(run, "Unpacking the bits")) {
		json_decref(files);
		return JOB_OUTCOME_CANCELLED;
	}
	if (bits != NULL && (o = upload_files(run, bits, files, reason)) != JOB_OUTCOME_DONE)
		goto out;
	if (json_is_array(resources) &&
	    (o = resource_files(run, resources, files, reason)) != JOB_OUTCOME_DONE)
		goto out;
	if ((o = stash_zip(run, files, sha256, sha1, &size, reason)) != JOB_OUTCOME_DONE)
		goto out;
	hex_encode(sha256, 32, h256);
	hex_encode(sha1, 20, h1);
	*result = json_pack("{s:s, s:s, s:I, s:I}", "package_sha256", h256, "package_sha1", h1,
	    "package_size", (json_int_t)size, "files", (json_int_t)json_array_size(files));
	log_info_id(run->log_id, "package %s: %zu files, %llu bytes",
	    json_string_value(json_object_get(params, "package_guid")), json_array_size(files),
	    (unsigned long long)size);
out:
	json_decref(files);
	return o;
}
