/* stash.c: the "stash_bundle" job (docs/api.md "App stash"): the zip of POST
 * /app_stash/bundles, built from blobs of the store. The API has already resolved every
 * entry (the application zip's files ingested, each resource's sha1 found) into params
 * {"files": [[name, sha256 hex, size, mode], ...]} in the order they go into the zip, and
 * checked the names; this writes them with worker/tarball.c (deflate, the fixed time of
 * every bundle, the modes asked), so the same request gives the same bytes, and stores the
 * zip as the job's bundle, which the waiting request then serves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"
#include "worker/tarball.h"
#include "worker/worker.h"

struct zipper {
	struct job_run *run;
	struct store_writer *sw;
	int64_t max_size;
	bool cancelled;
};

/* Zip bytes into the store, within max_bundle_size. */
static int
sink(void *arg, const void *data, size_t len, char **errstr)
{
	struct zipper *z = arg;
	char *err = NULL;

	if (store_writer_size(z->sw) + len > (uint64_t)z->max_size) {
		*errstr =
		    xasprintf("the bundle exceeds the size limit of %lld bytes (max_bundle_size)",
			(long long)z->max_size);
		return -1;
	}
	if (store_writer_write(z->sw, data, len, &err) != 0) {
		log_warn_id(z->run->log_id, "store: %s", err);
		free(err);
		*errstr = xstrdup("the bundle could not be written to the store");
		return -1;
	}
	return 0;
}

/* Keeps the lease during long files. */
static int
tick(void *arg, char **errstr)
{
	struct zipper *z = arg;

	if (!worker_stop && job_keepalive(z->run))
		return 0;
	z->cancelled = true;
	*errstr = xstrdup("cancelled");
	return -1;
}

/* One [name, sha256, size, mode] entry, checked. false with *reason. */
static bool
entry(const json_t *e, const char **name, unsigned char sha256[32], int64_t *size,
    unsigned int *mode, char **reason)
{
	const json_t *s = json_array_get(e, 1), *n = json_array_get(e, 2),
		     *m = json_array_get(e, 3);

	*name = json_string_value(json_array_get(e, 0));
	if (!json_is_array(e) || *name == NULL || !json_is_string(s) ||
	    !hex_decode(json_string_value(s), sha256, 32) || !json_is_integer(n) ||
	    json_integer_value(n) < 0 || !json_is_integer(m)) {
		*reason = xstrdup("bad job parameters: files must be [name, sha256, size, mode]");
		return false;
	}
	/* The API checked the names; a zip entry that climbs out is refused here too. */
	if ((*name)[0] == '\0' || (*name)[0] == '/' || strcmp(*name, "..") == 0 ||
	    strncmp(*name, "../", 3) == 0 || strstr(*name, "/../") != NULL ||
	    (strlen(*name) >= 3 && strcmp(*name + strlen(*name) - 3, "/..") == 0)) {
		*reason = xasprintf("the file name '%.200s' is not a relative path", *name);
		return false;
	}
	*size = json_integer_value(n);
	*mode = (unsigned int)json_integer_value(m) & 07777;
	return true;
}

enum job_outcome
stash_zip(struct job_run *run, const json_t *files, unsigned char sha256[32],
    unsigned char sha1[20], uint64_t *size, char **reason)
{
	struct zipper z = {.run = run};
	const struct config *cfg = run->w->cfg;
	const json_t *e;
	struct tarball *tb = NULL;
	char *err = NULL;
	size_t i, n = json_array_size(files);
	int level = (int)cfg->gzip_level > 9 ? 9 : (int)cfg->gzip_level;

	if (!json_is_array(files)) {
		*reason = xstrdup("bad job parameters: files is required");
		return JOB_OUTCOME_FAILED;
	}
	z.max_size = cfg->max_bundle_size > 0 ? cfg->max_bundle_size : INT64_MAX;
	if ((z.sw = store_writer_new(run->w->store, &err)) == NULL) {
		log_warn_id(run->log_id, "store: %s", err);
		free(err);
		*reason = xstrdup("the zip could not be written to the store");
		return JOB_OUTCOME_RETRY;
	}
	if ((tb = tarball_new_zip(level, sink, &z, &err)) == NULL)
		goto fail;
	tarball_set_tick(tb, tick, &z);
	json_array_foreach(files, i, e)
	{
		const char *name;
		unsigned char blob[32];
		int64_t want;
		unsigned int mode;
		uint64_t got;

		if (!entry(e, &name, blob, &want, &mode, reason))
			goto out_failed;
		if (!job_progress(run, "Zipping files: %zu/%zu", i + 1, n)) {
			z.cancelled = true;
			goto fail;
		}
		int fd = store_open_blob(run->w->store, blob, &got, &err);
		if (fd < 0 || got != (uint64_t)want) {
			if (fd >= 0)
				close(fd);
			log_warn_id(run->log_id, "store: %s", err ? err : "size mismatch");
			free(err);
			err = NULL;
			*reason = xasprintf("the stored bytes of '%s' are missing", name);
			goto out_failed;
		}
		int r = tarball_add_file_mode(tb, name, mode, got, fd, &err);
		close(fd);
		if (r != 0)
			goto fail;
	}
	if (tarball_finish(tb, &err) != 0)
		goto fail;
	tarball_free(tb);
	tb = NULL;
	*size = store_writer_size(z.sw);
	if (store_writer_commit(z.sw, sha256, sha1, &err) != 0) {
		z.sw = NULL;
		log_warn_id(run->log_id, "store: %s", err);
		free(err);
		*reason = xstrdup("the zip could not be stored");
		return JOB_OUTCOME_RETRY;
	}
	return JOB_OUTCOME_DONE;
fail:
	tarball_free(tb);
	store_writer_abort(z.sw);
	if (z.cancelled || worker_stop) {
		free(err);
		if (worker_stop && !z.cancelled) {
			*reason = xstrdup("the worker stopped");
			return JOB_OUTCOME_RETRY;
		}
		return JOB_OUTCOME_CANCELLED;
	}
	*reason = err != NULL ? err : xstrdup("the zip could not be written");
	return JOB_OUTCOME_FAILED;
out_failed:
	tarball_free(tb);
	store_writer_abort(z.sw);
	return JOB_OUTCOME_FAILED;
}

enum job_outcome
stash_bundle_run(struct job_run *run, json_t **result, char **reason)
{
	const json_t *files = json_object_get(run->job->params, "files");
	unsigned char sha256[32], sha1[20];
	uint64_t size = 0;
	char hex[65];
	enum job_outcome o = stash_zip(run, files, sha256, sha1, &size, reason);

	if (o != JOB_OUTCOME_DONE)
		return o;
	hex_encode(sha256, 32, hex);
	*result = json_pack("{s:s, s:I, s:I}", "bundle_sha256", hex, "bundle_size",
	    (json_int_t)size, "files", (json_int_t)json_array_size(files));
	return JOB_OUTCOME_DONE;
}
