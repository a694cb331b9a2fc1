/* check_statuscache.c: api/statuscache.c alone: hits and misses, the least recently used
 * entry making room, notifications dropping an entry and refusing documents read before
 * them (also past the ring's memory), clears, and a cache of size 0. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/statuscache.h"

/* A document "<text>" with its hole at the end. */
static struct statuscache_doc
doc(const char *text, int64_t job)
{
	return (struct statuscache_doc){text, strlen(text), strlen(text), job};
}

/* The text of key's entry, or NULL. */
static const char *
text_of(struct statuscache *sc, const char *key)
{
	struct statuscache_doc d;

	return statuscache_get(sc, key, &d) ? d.doc : NULL;
}

START_TEST(test_hit_and_miss)
{
	struct statuscache *sc = statuscache_new(4);
	struct statuscache_doc d = {"{\"a\":,\"b\":2}", 12, 5, 7}, got;

	ck_assert(!statuscache_get(sc, "k1", &got));
	statuscache_put(sc, "k1", &d, statuscache_seq(sc));
	ck_assert(statuscache_get(sc, "k1", &got));
	ck_assert_uint_eq(got.len, 12);
	ck_assert_uint_eq(got.hole, 5);
	ck_assert_int_eq(got.job_id, 7);
	ck_assert_mem_eq(got.doc, d.doc, 12);
	ck_assert_ptr_ne(got.doc, d.doc); /* a copy */
	/* A second put replaces. */
	struct statuscache_doc d2 = doc("new", 8);
	statuscache_put(sc, "k1", &d2, statuscache_seq(sc));
	ck_assert_str_eq(text_of(sc, "k1"), "new");
	ck_assert_uint_eq(statuscache_count(sc), 1);
	/* A hole past the end is refused. */
	struct statuscache_doc bad = {"ab", 2, 3, 1};
	statuscache_put(sc, "k2", &bad, statuscache_seq(sc));
	ck_assert_ptr_null(text_of(sc, "k2"));
	statuscache_free(sc);
	statuscache_free(NULL);
}
END_TEST

START_TEST(test_lru_eviction)
{
	struct statuscache *sc = statuscache_new(3);
	struct statuscache_doc a = doc("a", 1), b = doc("b", 2), c = doc("c", 3), d = doc("d", 4);

	statuscache_put(sc, "a", &a, 0);
	statuscache_put(sc, "b", &b, 0);
	statuscache_put(sc, "c", &c, 0);
	ck_assert_ptr_nonnull(text_of(sc, "a")); /* a is now the most recent; b the least */
	statuscache_put(sc, "d", &d, 0);
	ck_assert_uint_eq(statuscache_count(sc), 3);
	ck_assert_ptr_null(text_of(sc, "b"));
	ck_assert_str_eq(text_of(sc, "a"), "a");
	ck_assert_str_eq(text_of(sc, "c"), "c");
	ck_assert_str_eq(text_of(sc, "d"), "d");
	statuscache_free(sc);
}
END_TEST

START_TEST(test_notify_and_seq)
{
	struct statuscache *sc = statuscache_new(10);
	struct statuscache_doc a = doc("a", 1), b = doc("b", 2);
	uint64_t before = statuscache_seq(sc);

	statuscache_put(sc, "a", &a, before);
	statuscache_notify(sc, "a");
	ck_assert_ptr_null(text_of(sc, "a"));
	/* Read before the notification: refused; read after: kept. */
	statuscache_put(sc, "a", &a, before);
	ck_assert_ptr_null(text_of(sc, "a"));
	statuscache_put(sc, "a", &a, statuscache_seq(sc));
	ck_assert_str_eq(text_of(sc, "a"), "a");
	/* Another key's notification does not stop a put of b. */
	before = statuscache_seq(sc);
	statuscache_notify(sc, "x");
	statuscache_put(sc, "b", &b, before);
	ck_assert_str_eq(text_of(sc, "b"), "b");
	/* Past the ring's memory every older read is refused. */
	before = statuscache_seq(sc);
	for (int i = 0; i < 5000; i++)
		statuscache_notify(sc, "y");
	statuscache_put(sc, "c", &b, before);
	ck_assert_ptr_null(text_of(sc, "c"));
	statuscache_free(sc);
}
END_TEST

START_TEST(test_clear_and_off)
{
	struct statuscache *sc = statuscache_new(10), *off = statuscache_new(0);
	struct statuscache_doc a = doc("a", 1);
	uint64_t before = statuscache_seq(sc);

	statuscache_put(sc, "a", &a, before);
	statuscache_clear(sc);
	ck_assert_uint_eq(statuscache_count(sc), 0);
	ck_assert_ptr_null(text_of(sc, "a"));
	statuscache_put(sc, "a", &a, before);
	ck_assert_ptr_null(text_of(sc, "a"));
	statuscache_put(sc, "a", &a, statuscache_seq(sc));
	ck_assert_str_eq(text_of(sc, "a"), "a");
	statuscache_put(off, "a", &a, statuscache_seq(off));
	ck_assert_ptr_null(text_of(off, "a"));
	statuscache_free(sc);
	statuscache_free(off);
}
END_TEST

/* Many keys through a small table: chains, drops from the middle of a chain. */
START_TEST(test_many_keys)
{
	struct statuscache *sc = statuscache_new(1000);
	char key[32];

	for (int i = 0; i < 3000; i++) {
		struct statuscache_doc d = doc("x", i);
		snprintf(key, sizeof key, "cook:directory:%d:tar.gz", i);
		statuscache_put(sc, key, &d, statuscache_seq(sc));
	}
	ck_assert_uint_eq(statuscache_count(sc), 1000);
	for (int i = 2000; i < 3000; i += 2) {
		snprintf(key, sizeof key, "cook:directory:%d:tar.gz", i);
		statuscache_notify(sc, key);
	}
	ck_assert_uint_eq(statuscache_count(sc), 500);
	for (int i = 0; i < 3000; i++) {
		struct statuscache_doc d;
		snprintf(key, sizeof key, "cook:directory:%d:tar.gz", i);
		ck_assert(statuscache_get(sc, key, &d) == (i >= 2001 && i % 2 == 1));
		if (i >= 2001 && i % 2 == 1)
			ck_assert_int_eq(d.job_id, i);
	}
	statuscache_free(sc);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("statuscache");
	TCase *tc = tcase_create("statuscache");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_hit_and_miss);
	tcase_add_test(tc, test_lru_eviction);
	tcase_add_test(tc, test_notify_and_seq);
	tcase_add_test(tc, test_clear_and_off);
	tcase_add_test(tc, test_many_keys);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
