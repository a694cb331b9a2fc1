/* check_jobs.c: the job state machine's table. */
#include <check.h>
#include <stdlib.h>

#include "shared/jobs.h"

/* Every pair of states against the expected verdict. */
START_TEST(test_transition_table)
{
	static const struct {
		enum job_state from, to;
		enum job_transition want;
	} cases[] = {
	    {JOB_QUEUED, JOB_RUNNING, JOB_TRANSITION_OK},
	    {JOB_QUEUED, JOB_FAILED, JOB_TRANSITION_OK},
	    {JOB_QUEUED, JOB_QUEUED, JOB_TRANSITION_NOOP},
	    {JOB_QUEUED, JOB_DONE, JOB_TRANSITION_ILLEGAL},
	    {JOB_QUEUED, JOB_EXPIRED, JOB_TRANSITION_ILLEGAL},
	    {JOB_RUNNING, JOB_RUNNING, JOB_TRANSITION_OK},
	    {JOB_RUNNING, JOB_DONE, JOB_TRANSITION_OK},
	    {JOB_RUNNING, JOB_FAILED, JOB_TRANSITION_OK},
	    {JOB_RUNNING, JOB_QUEUED, JOB_TRANSITION_OK},
	    {JOB_RUNNING, JOB_EXPIRED, JOB_TRANSITION_ILLEGAL},
	    {JOB_DONE, JOB_DONE, JOB_TRANSITION_NOOP},
	    {JOB_DONE, JOB_RUNNING, JOB_TRANSITION_ILLEGAL},
	    {JOB_DONE, JOB_FAILED, JOB_TRANSITION_ILLEGAL},
	    {JOB_DONE, JOB_QUEUED, JOB_TRANSITION_ILLEGAL},
	    {JOB_DONE, JOB_EXPIRED, JOB_TRANSITION_OK},
	    {JOB_FAILED, JOB_FAILED, JOB_TRANSITION_NOOP},
	    {JOB_FAILED, JOB_DONE, JOB_TRANSITION_ILLEGAL},
	    {JOB_FAILED, JOB_RUNNING, JOB_TRANSITION_ILLEGAL},
	    {JOB_FAILED, JOB_EXPIRED, JOB_TRANSITION_OK},
	    {JOB_EXPIRED, JOB_EXPIRED, JOB_TRANSITION_NOOP},
	    {JOB_EXPIRED, JOB_QUEUED, JOB_TRANSITION_ILLEGAL},
	    {JOB_EXPIRED, JOB_RUNNING, JOB_TRANSITION_ILLEGAL},
	    {JOB_STATE_INVALID, JOB_RUNNING, JOB_TRANSITION_ILLEGAL},
	    {JOB_QUEUED, JOB_STATE_INVALID, JOB_TRANSITION_ILLEGAL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ck_assert_msg(job_transition_check(cases[i].from, cases[i].to) == cases[i].want,
		    "case %zu: %s -> %s", i, job_state_name(cases[i].from),
		    job_state_name(cases[i].to));
}
END_TEST

/* Names round-trip; unknown names are refused. */
START_TEST(test_names)
{
	for (int s = JOB_QUEUED; s <= JOB_EXPIRED; s++)
		ck_assert_int_eq(job_state_parse(job_state_name((enum job_state)s)), s);
	ck_assert_int_eq(job_state_parse("Running"), JOB_STATE_INVALID);
	ck_assert_int_eq(job_state_parse(""), JOB_STATE_INVALID);
	ck_assert_int_eq(job_state_parse(NULL), JOB_STATE_INVALID);
}
END_TEST

/* The Vault's words for each state. */
START_TEST(test_vault_names)
{
	ck_assert_str_eq(job_state_vault_name(JOB_QUEUED), "new");
	ck_assert_str_eq(job_state_vault_name(JOB_RUNNING), "pending");
	ck_assert_str_eq(job_state_vault_name(JOB_DONE), "done");
	ck_assert_str_eq(job_state_vault_name(JOB_FAILED), "failed");
	ck_assert_ptr_null(job_state_vault_name(JOB_EXPIRED));
	ck_assert(job_state_final(JOB_DONE) && job_state_final(JOB_FAILED));
	ck_assert(!job_state_final(JOB_QUEUED) && !job_state_final(JOB_RUNNING));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("jobs");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_transition_table);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_vault_names);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
