/* jobjson.h: jobs as JSON: the internal job document (PATCH and GET /jobs/{id}) and the
 * Vault's status document (SWH's fields plus ours). */
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

#endif
