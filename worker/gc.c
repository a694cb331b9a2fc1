/* gc.c: blob garbage collection (to be written). */
#include <string.h>

#include "worker/worker.h"

int
gc_collect(struct worker *w, bool dry_run, struct gc_report *report, char **errstr)
{
	(void)w, (void)dry_run;
	memset(report, 0, sizeof *report);
	*errstr = xstrdup("not written yet");
	return -1;
}

void
gc_run(struct worker *w)
{
	(void)w;
}
