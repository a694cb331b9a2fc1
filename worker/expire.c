/* expire.c: bundle expiry (to be written). */
#include "worker/worker.h"

void
expire_run(struct worker *w)
{
	(void)w;
}
