/* routes_wait.c: GET /vault/{kind}/{id}/status?wait=N, the long-poll. The status is
 * read as usual; when the job may still change and the client asked to wait, the work
 * only notes the job id, and api/app.c parks the paused request in api/waiter.c until a
 * Postgres notification for the job (or N seconds) brings it back to be read again. No
 * thread is held while a client waits. */
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "shared/jobs.h"

#define WAIT_MAX 60

/* Validates ?wait= on top of the usual checks. */
int
routes_vault_status_wait_prepare(struct call *c)
{
	char *v = NULL;
	int64_t n = 0;

	if (routes_vault_read_prepare(c) != 0)
		return -1;
	if (!call_query_param(c, "wait", &v))
		return -1;
	if (v != NULL && (!parse_int64(v, &n) || n < 0 || n > WAIT_MAX)) {
		resp_error(
		    &c->resp, 400, "wait must be an integer from 0 to %d (seconds)", WAIT_MAX);
		free(v);
		return -1;
	}
	free(v);
	c->wait_s = (int)n;
	return 0;
}

/* The status; a job still new or pending is worth waiting for. */
void
routes_vault_status_wait_work(struct call *c, struct pool_thread *t)
{
	json_t *doc, *st, *id;

	c->wait_job_id = 0;
	routes_vault_status_work(c, t);
	if (c->wait_s <= 0 || c->resp.status != 200 || c->resp.body == NULL)
		return;
	doc = json_loadb(c->resp.body, c->resp.body_len, 0, NULL);
	st = json_object_get(doc, "status");
	id = json_object_get(doc, "id");
	if (json_is_string(st) && json_is_integer(id) &&
	    (strcmp(json_string_value(st), "new") == 0 ||
		strcmp(json_string_value(st), "pending") == 0))
		c->wait_job_id = (int64_t)json_integer_value(id);
	json_decref(doc);
}
