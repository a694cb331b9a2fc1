/* routes_bitspkg.c: a bits-service package PUT that carries matched resources (research
 * bits-service.md §1.3 "Only for packages"): the uploaded zip's files and the resources
 * fetched from the app stash, assembled into one zip that is then stored under the
 * package's guid. The assembly is the CF v3 upload's (worker/package.c, a
 * "package_upload" job); the request waits for it parked (as an app stash bundle does)
 * and records the resource when the job is done. Messages are the bits-service's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "api/bitsup.h"
#include "api/routes.h"
#include "shared/bits.h"
#include "shared/jobstore.h"
#include "shared/kv.h"
#include "shared/log.h"

#define INVALID "The request is semantically invalid: "
/* How long the request waits for the assembly before a 503 asks it to come back. */
#define ASSEMBLY_WAIT_S 600

/* The resources field, checked, into c->aux: [[fn, sha1, mode], ...]. 0 or -1 (422). */
int
routes_bitspkg_prepare(struct call *c, const char *text)
{
	json_t *list = json_loads(text, 0, NULL), *e;
	size_t i;
	unsigned char m[4];

	if (!json_is_array(list)) {
		json_decref(list);
		bitsup_error(
		    &c->resp, 422, 0, INVALID "JSON payload could not be parsed: '%.200s'", text);
		return -1;
	}
	if (bitsup_magic(c->upload, m) < 4 || m[0] != 'P' || m[1] != 'K') {
		json_decref(list);
		bitsup_error(&c->resp, 422, 0, INVALID "bits uploaded is not a valid zip file");
		return -1;
	}
	if (json_array_size(list) > BITS_MAX_FILES) {
		json_decref(list);
		bitsup_error(&c->resp, 422, 0, INVALID "more than %d resources", BITS_MAX_FILES);
		return -1;
	}
	c->aux = json_array();
	json_array_foreach(list, i, e)
	{
		const char *fn = json_string_value(json_object_get(e, "fn"));
		const char *sha1 = json_string_value(json_object_get(e, "sha1"));
		const char *mode = json_string_value(json_object_get(e, "mode"));
		const char *missing = NULL;
		if (sha1 == NULL || *sha1 == '\0')
			missing = "sha1";
		else if (fn == NULL || *fn == '\0')
			missing = "fn";
		unsigned long v = 0744;
		char *end = NULL;

		if (missing != NULL) {
			json_decref(list);
			bitsup_error(
			    &c->resp, 422, 0, INVALID "key \"%s\" missing or empty", missing);
			return -1;
		}
		if (!call_rel_path_ok(fn)) {
			/* Stricter than the bits-service: a zip entry must not climb out. */
			bitsup_error(&c->resp, 422, 0,
			    INVALID "file name '%s' is not a relative path inside the package",
			    call_echo(fn));
			json_decref(list);
			return -1;
		}
		/* The bits-service's rule: a mode that is not octal is 0744. */
		if (mode != NULL && *mode != '\0') {
			v = strtoul(mode, &end, 8);
			if (*end != '\0' || v > 07777)
				v = 0744;
		}
		json_array_append_new(c->aux, json_pack("[s, s, I]", fn, sha1, (json_int_t)v));
	}
	json_decref(list);
	return 0;
}

/* First pass: the upload stored, the resources found, the job made. 0, or -1 with the
 * answer set. */
static int
start(struct call *c, struct pool_thread *t, struct db *db)
{
	size_t n = json_array_size(c->aux), i;
	unsigned char(*ids)[20] = xmalloc((n ? n : 1) * sizeof *ids), sha256[32], sha1[20];
	struct content_row *rows = xcalloc(n ? n : 1, sizeof *rows);
	bool *found = xcalloc(n ? n : 1, sizeof *found), created = false;
	char *err = NULL, hex[65];
	json_t *params = NULL;
	struct job *job = NULL;
	uint64_t size = 0;
	int rc = -1;

	for (i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(json_array_get(c->aux, i), 1));
		if (strlen(s) != 40 || !hex_decode(s, ids[i], 20)) {
			bitsup_error(&c->resp, 422, 0,
			    INVALID "not all specified sha1s could be found in app-stash. Missing "
				    "sha1: \"%s\"",
			    call_echo(s));
			goto out;
		}
	}
	if (bits_stash_lookup(db, (const unsigned char(*)[20])ids, n, rows, found, &err) != 0) {
		call_db_failed(c, "looking up the app stash", err);
		free(err);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (!found[i]) {
			bitsup_error(&c->resp, 422, 0,
			    INVALID "not all specified sha1s could be found in app-stash. Missing "
				    "sha1: \"%s\"",
			    json_string_value(json_array_get(json_array_get(c->aux, i), 1)));
			goto out;
		}
	if (bitsup_commit(c->upload, sha256, sha1, &size, &err) != 0) {
		bool full = bitsup_disk_full(err);
		log_error_id(c->logid, "package upload: %s", err);
		free(err);
		bitsup_error(&c->resp, full ? 507 : 500, full ? 500000 : 0, "%s",
		    full ? "Request Entity Too Large" : "Internal Server Error");
		goto out;
	}
	if (store_touch(c->store, sha256, &err) != 0) {
		log_warn_id(c->logid, "package upload: %s", err);
		free(err);
		err = NULL;
	}
	hex_encode(sha256, 32, hex);
	params = json_pack("{s:s, s:O}", "bits", hex, "resources", c->aux);
	if ((job = routes_bits_job_start(
		 c, t, db, "package_upload", "bits_package", params, &created)) == NULL)
		goto out;
	c->job_id = job->id;
	log_info_id(c->logid, "package %s: %zu resources to assemble, job %lld", c->bits_key, n,
	    (long long)c->job_id);
	rc = 0;
out:
	job_free(job);
	json_decref(params);
	free(ids);
	free(rows);
	free(found);
	return rc;
}

void
routes_bitspkg_work(struct call *c, struct pool_thread *t, struct db *db)
{
	struct job *job = NULL;
	unsigned char sha256[32], sha1[20];
	char *err = NULL;
	bool created = false;
	int64_t size = 0;

	if (c->wait_deadline_ms == 0) {
		c->wait_deadline_ms = now_ms() + ASSEMBLY_WAIT_S * 1000ull;
		if (start(c, t, db) != 0)
			return;
	}
	if (jobstore_get(db, c->job_id, &job, &err) <= 0) {
		call_db_failed(c, "reading the package's job", err ? err : "the job is gone");
		free(err);
		return;
	}
	if (job->state == JOB_FAILED || job->state == JOB_EXPIRED) {
		bitsup_error(&c->resp, 422, 0, INVALID "%s",
		    job->error != NULL ? job->error : "the package could not be assembled");
		goto out;
	}
	if (job->state != JOB_DONE) {
		routes_bits_job_wait(c, job,
		    "Service Unavailable: the package is still being assembled; send it again");
		goto out;
	}
	const char *s256 = json_string_value(json_object_get(job->result, "package_sha256"));
	const char *s1 = json_string_value(json_object_get(job->result, "package_sha1"));
	size = json_integer_value(json_object_get(job->result, "package_size"));
	if (s256 == NULL || s1 == NULL || !hex_decode(s256, sha256, 32) ||
	    !hex_decode(s1, sha1, 20)) {
		bitsup_error(&c->resp, 500, 0, "Internal Server Error: the assembly has no result");
		goto out;
	}
	/* The GC's invariant: the blob is touched just before its row commits. */
	if (store_touch(c->store, sha256, &err) != 0) {
		log_warn_id(c->logid, "package %s: %s", c->bits_key, err);
		free(err);
		routes_bits_expire_job(c, db, job->id);
		bitsup_error(&c->resp, 503, 0,
		    "Service Unavailable: the assembled package was collected; send it again");
		goto out;
	}
	if (bits_put(db, "package", c->bits_key, sha256, sha1, size, NULL, &created, &err) != 0) {
		call_db_failed(c, "recording a package", err);
		free(err);
		goto out;
	}
	routes_bits_stored(c, 201, sha1, sha256, (double)time(NULL));
	log_info_id(c->logid, "package %s assembled: %lld bytes", c->bits_key, (long long)size);
out:
	job_free(job);
}

void
routes_bits_expire_job(struct call *c, struct db *db, int64_t job_id)
{
	struct job *expired = NULL;
	char *err = NULL;
	int status = 500;

	log_warn_id(c->logid,
	    "job %lld: done but its result is gone from the store; expired, so "
	    "the next request makes it again",
	    (long long)job_id);
	if (jobstore_patch(db, job_id, JOB_EXPIRED, NULL, NULL, NULL, NULL,
		(int)c->cfg->job_max_attempts, c->cfg->job_lease, &expired, &status, &err) != 0) {
		log_warn_id(c->logid, "job %lld cannot be expired: %s", (long long)job_id, err);
		free(err);
	}
	job_free(expired);
}

struct job *
routes_bits_job_start(struct call *c, struct pool_thread *t, struct db *db, const char *kind,
    const char *key_prefix, const json_t *params, bool *created)
{
	char *text = json_dumps(params, JSON_COMPACT), *key, *err = NULL, hex[65];
	unsigned char d[32];
	unsigned int dl = 0;
	struct job *job = NULL;
	struct kv *kv;

	if (EVP_Digest(text, strlen(text), d, &dl, EVP_sha256(), NULL) != 1)
		abort();
	free(text);
	hex_encode(d, 32, hex);
	key = xasprintf("%s:%s", key_prefix, hex);
	if (jobstore_create(db, kind, key, params, &job, created, &err) != 0) {
		free(key);
		call_db_failed(c, "creating a job", err);
		free(err);
		return NULL;
	}
	free(key);
	if (*created && (kv = call_kv(c, t)) != NULL && kv_enqueue(kv, job->id, &err) != 0) {
		log_warn_id(c->logid, "job %lld not enqueued (the reconciler will): %s",
		    (long long)job->id, err);
		free(err);
	}
	return job;
}

void
routes_bits_job_wait(struct call *c, const struct job *job, const char *msg)
{
	bitsup_error(&c->resp, 503, 0, "%s", msg);
	resp_header(&c->resp, "Retry-After", "5");
	if (now_ms() < c->wait_deadline_ms) {
		c->wait_job_id = job->id;
		c->wait_s = (int)((c->wait_deadline_ms - now_ms()) / 1000) + 1;
	}
}
