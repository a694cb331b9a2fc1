/* jobs.h: the job state machine, shared by the API (which validates every transition)
 * and the workers. Pure logic: no I/O. */
#ifndef BV_JOBS_H
#define BV_JOBS_H

#include <stdbool.h>

enum job_state {
	JOB_QUEUED = 0,
	JOB_RUNNING,
	JOB_DONE,
	JOB_FAILED,
	JOB_EXPIRED,
	JOB_STATE_INVALID = -1
};

enum job_transition {
	JOB_TRANSITION_OK, /* apply it */
	JOB_TRANSITION_NOOP, /* same state: answer 200 and change nothing */
	JOB_TRANSITION_ILLEGAL /* answer 400 */
};

/* "queued" ... "expired" <-> enum; JOB_STATE_INVALID for unknown names. */
const char *job_state_name(enum job_state s);
enum job_state job_state_parse(const char *s);
/* Allowed: queued->running, queued->failed, running->running (re-claim),
 * running->done, running->failed, running->queued (released for retry),
 * done->expired, failed->expired. Same state: NOOP
 * (except running->running, which is OK: a re-claim). Anything else ILLEGAL. */
enum job_transition job_transition_check(enum job_state from, enum job_state to);
/* The Vault's words for a state: new, pending, done, failed (expired -> NULL). */
const char *job_state_vault_name(enum job_state s);
/* True for done, failed, expired. */
bool job_state_final(enum job_state s);

#endif
