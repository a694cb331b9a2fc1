/* jobjson.h: jobs as JSON: the internal job document (PATCH and GET /jobs/{id}), the
 * Vault's status document (SWH's fields plus ours), and the check of a PATCH body. */
#ifndef BV_JOBJSON_H
#define BV_JOBJSON_H

#include <jansson.h>

#include "shared/jobstore.h"

/* {"id","kind","dedup_key","state","progress_message","error","attempts","worker",
 * "params","result","created_at","updated_at","started_at","finished_at"[,"bundle"]}. */
json_t *jobjson_job(const struct job *job);

/* The Vault status of a cook job: {"id","status","progress_message","swhid","obj_type",
 * "obj_id","format","fetch_url","created_at","updated_at","attempts"[,"bundle"]}. */
json_t *jobjson_vault_status(const struct job *job, const char *swhid, const char *obj_type,
    const char *obj_hex, const char *format, const char *fetch_url);

/* The status of a load job (GET /loads/{id}, POST /loads): {"id","url","ref","status",
 * "progress_message","created_at","finished_at"} and, once done, "snapshot", "swhid",
 * "branches" and "stats" from the job's result; once failed, "error" (also the
 * progress_message, as the Vault shows failures). */
json_t *jobjson_load_status(const struct job *job);

/* The most bytes a worker may send in these PATCH strings. */
#define JOBJSON_MAX_WORKER 128
#define JOBJSON_MAX_PROGRESS 1024
#define JOBJSON_MAX_ERROR 4096

/* Checks a PATCH /jobs/{id} body: a JSON object of known keys (state, worker,
 * progress_message, error, result) with the right types (null counts as absent), a known
 * state name, and strings within the limits above. NULL when fine, else the message for
 * a 400 naming the key (caller frees). */
char *jobjson_patch_check(const json_t *body);

/* A string, or JSON null for NULL; text that is not UTF-8 (a worker's, by contract it is)
 * becomes "(not valid UTF-8)" rather than breaking the reply. */
json_t *jobjson_str_or_null(const char *s);

#endif
