/* routes_loads.c: git loads (to be written). */
#include "api/routes.h"

int
routes_loads_create_prepare(struct call *c)
{
	resp_error(&c->resp, 501, "not implemented yet");
	return -1;
}

void
routes_loads_create_work(struct call *c, struct pool_thread *t)
{
	(void)c, (void)t;
}

int
routes_loads_get_prepare(struct call *c)
{
	resp_error(&c->resp, 501, "not implemented yet");
	return -1;
}

void
routes_loads_get_work(struct call *c, struct pool_thread *t)
{
	(void)c, (void)t;
}
