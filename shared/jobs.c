/* jobs.c: the job state machine. The API validates every PATCH against this table. */
#include <string.h>

#include "shared/jobs.h"

static const char *const state_names[] = {"queued", "running", "done", "failed", "expired"};

/* Name of a state. */
const char *
job_state_name(enum job_state s)
{
	return s >= JOB_QUEUED && s <= JOB_EXPIRED ? state_names[s] : "invalid";
}

/* State by name. */
enum job_state
job_state_parse(const char *s)
{
	for (int i = JOB_QUEUED; i <= JOB_EXPIRED; i++)
		if (s != NULL && strcmp(s, state_names[i]) == 0)
			return (enum job_state)i;
	return JOB_STATE_INVALID;
}

/* allowed[from][to]: the transitions a PATCH may make (DESIGN §4). */
static const bool allowed[5][5] = {
    /*            queued running done   failed expired */
    [JOB_QUEUED] = {false, true, false, true, false},
    [JOB_RUNNING] = {true, true, true, true, false},
    [JOB_DONE] = {false, false, false, false, true},
    [JOB_FAILED] = {false, false, false, false, true},
    [JOB_EXPIRED] = {false, false, false, false, false},
};

/* OK, NOOP (same state) or ILLEGAL. running -> running is a re-claim, so OK. */
enum job_transition
job_transition_check(enum job_state from, enum job_state to)
{
	if (from < JOB_QUEUED || from > JOB_EXPIRED || to < JOB_QUEUED || to > JOB_EXPIRED)
		return JOB_TRANSITION_ILLEGAL;
	if (from == to && from != JOB_RUNNING)
		return JOB_TRANSITION_NOOP;
	return allowed[from][to] ? JOB_TRANSITION_OK : JOB_TRANSITION_ILLEGAL;
}

/* The Vault's names. */
const char *
job_state_vault_name(enum job_state s)
{
	switch (s) {
	case JOB_QUEUED:
		return "new";
	case JOB_RUNNING:
		return "pending";
	case JOB_DONE:
		return "done";
	case JOB_FAILED:
		return "failed";
	default:
		return NULL;
	}
}

/* Nothing more will happen to the job. */
bool
job_state_final(enum job_state s)
{
	return s == JOB_DONE || s == JOB_FAILED || s == JOB_EXPIRED;
}
