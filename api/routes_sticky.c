/* routes_sticky.c: PUT|DELETE /vault/{kind}/{id}/sticky[?format=]: an admin keeps a
 * cooked bundle from expiry and quota eviction (PUT), or lets it go again (DELETE). The
 * flag lives on the bundles row of the bundle's newest job, so a bundle cooked again
 * after it expired starts without it. Only admins reach these routes (api/app.c). */
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "shared/jobstore.h"
#include "shared/log.h"

/* Checks kind, id and format, as the other Vault routes do. */
int
routes_vault_sticky_prepare(struct call *c)
{
	return routes_vault_parse_target(c);
}

/* Sets or clears the flag of the newest job's bundle; a bundle that is not cooked (no
 * job, not done yet, failed, expired) is a 404 with the Vault's wording. */
void
routes_vault_sticky_work(struct call *c, struct pool_thread *t)
{
	bool sticky = strcmp(c->route->method, "PUT") == 0;
	struct db *db;
	struct job *job = NULL;
	char *key, *err = NULL;
	int rc;

	if ((db = call_db(c, t)) == NULL)
		return;
	key = routes_vault_dedup_key(c);
	rc = jobstore_find(db, key, &job, &err);
	free(key);
	if (rc < 0) {
		call_db_failed(c, "find job", err);
		free(err);
		return;
	}
	if (rc == 0 || job->state != JOB_DONE || !job->has_bundle) {
		resp_error(&c->resp, 404, "Cooked archive for %s not found.", c->swhid);
		job_free(job);
		return;
	}
	rc = jobstore_set_sticky(db, job->id, sticky, &err);
	if (rc < 0) {
		call_db_failed(c, "set sticky", err);
		free(err);
		job_free(job);
		return;
	}
	if (rc == 0) {
		/* Expired between the two statements. */
		resp_error(&c->resp, 404, "Cooked archive for %s not found.", c->swhid);
		job_free(job);
		return;
	}
	log_info_id(c->logid, "job %lld: bundle %s %s", (long long)job->id, c->swhid,
	    sticky ? "made sticky" : "no longer sticky");
	json_t *o = json_pack("{s:I,s:s,s:s,s:b}", "id", (json_int_t)job->id, "swhid", c->swhid,
	    "format", routes_vault_format(c), "sticky", sticky);
	resp_json(&c->resp, 200, o);
	json_decref(o);
	job_free(job);
}
