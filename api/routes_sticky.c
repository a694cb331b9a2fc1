/* routes_sticky.c: sticky bundles (to be written). */
#include "api/routes.h"

int
routes_vault_sticky_prepare(struct call *c)
{
	resp_error(&c->resp, 501, "not implemented yet");
	return -1;
}

void
routes_vault_sticky_work(struct call *c, struct pool_thread *t)
{
	(void)c, (void)t;
}
