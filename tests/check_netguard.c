/* check_netguard.c: the address classes a load must not reach (shared/netguard.c), on
 * literal addresses: no network needed. A table of cases, each with the class text the
 * error message will carry (NULL: public, allowed). */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "shared/httpc.h"
#include "shared/netguard.h"
#include "shared/util.h"

/* The class of a literal IPv4 or IPv6 address. */
static const char *
class_of(const char *text)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	memset(&s4, 0, sizeof s4);
	memset(&s6, 0, sizeof s6);
	if (inet_pton(AF_INET, text, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		return netguard_class((const struct sockaddr *)&s4);
	}
	ck_assert_msg(inet_pton(AF_INET6, text, &s6.sin6_addr) == 1, "bad literal %s", text);
	s6.sin6_family = AF_INET6;
	return netguard_class((const struct sockaddr *)&s6);
}

static const struct {
	const char *addr;
	const char *want; /* a part of the class, or NULL for public */
} cases[] = {
    /* IPv4: refused */
    {"127.0.0.1", "loopback, 127.0.0.0/8"},
    {"127.255.255.254", "loopback"},
    {"0.0.0.0", "unspecified"},
    {"0.1.2.3", "unspecified"},
    {"10.0.0.1", "private, 10.0.0.0/8"},
    {"10.255.255.255", "private, 10.0.0.0/8"},
    {"172.16.0.1", "private, 172.16.0.0/12"},
    {"172.31.255.255", "private, 172.16.0.0/12"},
    {"192.168.0.1", "private, 192.168.0.0/16"},
    {"100.64.0.1", "CGNAT, 100.64.0.0/10"},
    {"100.127.255.255", "CGNAT"},
    {"169.254.169.254", "link-local, 169.254.0.0/16"},
    {"224.0.0.1", "multicast"},
    {"239.255.255.250", "multicast"},
    {"255.255.255.255", "broadcast"},
    {"240.0.0.1", "reserved"},
    {"192.0.0.8", "IETF"},
    {"198.18.0.1", "benchmarking"},
    /* IPv4: public, including the neighbours of refused ranges */
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"11.0.0.1", NULL},
    {"172.15.255.255", NULL},
    {"172.32.0.0", NULL},
    {"192.167.255.255", NULL},
    {"192.169.0.0", NULL},
    {"100.63.255.255", NULL},
    {"100.128.0.0", NULL},
    {"126.255.255.255", NULL},
    {"128.0.0.1", NULL},
    {"169.253.255.255", NULL},
    {"223.255.255.255", NULL},
    {"192.0.2.1", NULL},
    {"140.82.112.3", NULL},
    /* IPv6: refused */
    {"::1", "loopback, ::1"},
    {"::", "unspecified"},
    {"fc00::1", "unique local, fc00::/7"},
    {"fd12:3456::1", "unique local"},
    {"fe80::1", "link-local, fe80::/10"},
    {"febf:ffff::1", "link-local"},
    {"fec0::1", "site-local"},
    {"ff02::1", "multicast"},
    {"::ffff:127.0.0.1", "loopback, 127.0.0.0/8"},
    {"::ffff:10.1.2.3", "private, 10.0.0.0/8"},
    {"::ffff:169.254.169.254", "link-local"},
    {"::ffff:0.0.0.0", "unspecified"},
    {"::127.0.0.1", "loopback"},
    {"64:ff9b::192.168.1.1", "private, 192.168.0.0/16"},
    {"2002:7f00:0001::1", "loopback"},
    {"2002:0a00:0001::1", "private, 10.0.0.0/8"},
    /* IPv6: public */
    {"2001:4860:4860::8888", NULL},
    {"2a00:1450:4007:80e::200e", NULL},
    {"::ffff:8.8.8.8", NULL},
    {"64:ff9b::808:808", NULL},
    {"2002:0808:0808::1", NULL},
    {"fbff::1", NULL},
    {"fe00::1", NULL},
};

START_TEST(test_classes)
{
	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		const char *got = class_of(cases[i].addr);
		if (cases[i].want == NULL)
			ck_assert_msg(got == NULL, "%s: refused as %s", cases[i].addr, got);
		else
			ck_assert_msg(got != NULL && strstr(got, cases[i].want) != NULL,
			    "%s: class '%s', want '%s'", cases[i].addr, got ? got : "(public)",
			    cases[i].want);
	}
}
END_TEST

/* Other families are never reachable destinations for a load. */
START_TEST(test_other_family)
{
	struct sockaddr sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_family = AF_UNIX;
	ck_assert_ptr_nonnull(netguard_class(&sa));
}
END_TEST

/* netguard_check_host on literals (getaddrinfo parses them without any lookup): the
 * message names the host, the address and its class; a public literal passes. */
START_TEST(test_check_literals)
{
	char *err = NULL;

	ck_assert_int_eq(netguard_check_host("127.0.0.1", "80", &err), -1);
	ck_assert_msg(strstr(err, "127.0.0.1") != NULL && strstr(err, "loopback") != NULL &&
		strstr(err, "load_allow_private") != NULL,
	    "%s", err);
	free(err);
	err = NULL;
	ck_assert_int_eq(netguard_check_host("::ffff:10.0.0.1", "443", &err), -1);
	ck_assert_msg(strstr(err, "private, 10.0.0.0/8") != NULL, "%s", err);
	free(err);
	err = NULL;
	ck_assert_int_eq(netguard_check_host("8.8.8.8", "443", &err), 0);
	ck_assert_ptr_null(err);
}
END_TEST

/* No sink output expected: a refused connection never gets a byte. */
static int
no_sink(void *arg, const void *data, size_t len)
{
	(void)arg, (void)data, (void)len;
	return -1;
}

/* A guarded download refuses a loopback address at connect time (so redirects and DNS
 * answers that change cannot get around the check); unguarded, the same URL is an
 * ordinary connection error. Port 9 (discard) is closed on a test machine. */
START_TEST(test_guarded_download)
{
	struct httpc *hc = httpc_new(NULL, 5);
	long status = 0;
	char *err = NULL;

	httpc_set_guard(hc, true);
	ck_assert_int_eq(httpc_get_stream(hc, "http://127.0.0.1:9/x", 1024, 5, no_sink, NULL, NULL,
			     &status, &err),
	    HTTPC_TRANSPORT);
	ck_assert_msg(
	    err != NULL && strstr(err, "refused to connect to 127.0.0.1: a loopback") != NULL, "%s",
	    err);
	free(err);
	err = NULL;
	httpc_set_guard(hc, false);
	ck_assert_int_eq(httpc_get_stream(hc, "http://127.0.0.1:9/x", 1024, 5, no_sink, NULL, NULL,
			     &status, &err),
	    HTTPC_TRANSPORT);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_null(strstr(err, "refused to connect to"));
	free(err);
	httpc_free(hc);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("netguard");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_classes);
	tcase_add_test(tc, test_other_family);
	tcase_add_test(tc, test_check_literals);
	tcase_add_test(tc, test_guarded_download);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
