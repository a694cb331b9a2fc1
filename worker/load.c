/* load.c: git loading (to be written). */
#include "worker/worker.h"

enum job_outcome
load_run(struct job_run *run, json_t **result, char **reason)
{
	(void)run, (void)result;
	*reason = xstrdup("git loading is not available yet");
	return JOB_OUTCOME_FAILED;
}
