/* check_signurl.c: signed URLs (shared/signurl.c): the research's known-answer vectors for
 * both schemes, round trips, tampering of each part, expiry edges, key rotation, the parsing
 * rules of the header, and a fuzz test on mutated queries. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/signurl.h"
#include "shared/util.h"

/* research/bits-service.md §2.1 and §2.4 */
#define KAT_SECRET "12345"
#define KAT_PATH "/packages/myguid"
#define KAT_EXPIRES 1497357804
#define KAT_GET "23fb22c442803f43ea255e369d50a0be66bed17c99e5a44013ad82a9c015c3d7"
#define KAT_PUT "6af8f7670641f1d5ac3c5c428e06801764d14502835e6265918b6092fd0a3525"
#define MD5_SECRET "BLOBSTORE_SECURE_LINK_SECRET"
#define MD5_PATH "/read/cc-packages/ab/cd/abcdef"
#define MD5_EXPIRES 1510839810
#define MD5_HASH "iIMVrFlqQWIVTz7dCUtAag"

/* Keys k1 (old), k2 (active), legacy secret, md5 secret; parsed from the config form. */
static void
keys_rotation(struct signurl_keys *k)
{
	char *err = NULL;

	ck_assert_int_eq(signurl_keys_parse("k1:old-secret,k2:new:secret", k, &err), 0);
	k->active_id = "k2";
	k->legacy_secret = KAT_SECRET;
	k->md5_secret = MD5_SECRET;
}

/* Signs with k, failing the test on an error. */
static char *
sign_ok(const struct signurl_keys *k, const char *method, const char *path, int64_t expires)
{
	char *err = NULL;
	char *q = signurl_sign(k, method, path, expires, &err);

	ck_assert_msg(q != NULL, "sign %s %s: %s", method, path, err ? err : "");
	return q;
}

START_TEST(test_kat_hmac)
{
	struct signurl_keys k = {.legacy_secret = KAT_SECRET};
	char *q;

	q = sign_ok(&k, "GET", KAT_PATH, KAT_EXPIRES);
	ck_assert_str_eq(q, "signature=" KAT_GET "&expires=1497357804");
	ck_assert_int_eq(signurl_verify(&k, "GET", KAT_PATH, q, KAT_EXPIRES), SIGNURL_OK);
	free(q);
	q = sign_ok(&k, "put", KAT_PATH, KAT_EXPIRES);
	ck_assert_str_eq(q, "signature=" KAT_PUT "&expires=1497357804");
	ck_assert_int_eq(signurl_verify(&k, "PUT", KAT_PATH, q, KAT_EXPIRES), SIGNURL_OK);
	free(q);

	/* The same secret as a named key: same hex, plus AccessKeyId. */
	struct signurl_keys kk;
	char *err = NULL;
	ck_assert_int_eq(signurl_keys_parse("vec:" KAT_SECRET, &kk, &err), 0);
	kk.active_id = "vec";
	q = sign_ok(&kk, "GET", KAT_PATH, KAT_EXPIRES);
	ck_assert_str_eq(q, "signature=" KAT_GET "&expires=1497357804&AccessKeyId=vec");
	ck_assert_int_eq(signurl_verify(&kk, "GET", KAT_PATH, q, KAT_EXPIRES), SIGNURL_OK);
	free(q);
	/* Verification of the literal vectors, parameters in another order. */
	ck_assert_int_eq(signurl_verify(&k, "PUT", KAT_PATH,
			     "expires=1497357804&async=true&signature=" KAT_PUT, 1497357000),
	    SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&kk, "GET", KAT_PATH,
			     "AccessKeyId=vec&signature=" KAT_GET "&expires=1497357804", 0),
	    SIGNURL_OK);
	signurl_keys_clear(&kk);
}
END_TEST

START_TEST(test_kat_md5)
{
	struct signurl_keys k = {.md5_secret = MD5_SECRET};
	char *err = NULL;
	char *q = signurl_sign_md5(&k, MD5_PATH, MD5_EXPIRES, &err);
	const int64_t e = MD5_EXPIRES;

	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(q, "md5=" MD5_HASH "&expires=1510839810");
	free(q);
	static const struct {
		const char *query;
		int64_t now;
		enum signurl_verdict want;
	} cases[] = {
	    {"md5=" MD5_HASH "&expires=1510839810", MD5_EXPIRES, SIGNURL_OK},
	    {"md5=" MD5_HASH "&expires=1510839810", MD5_EXPIRES - 3600, SIGNURL_OK},
	    {"md5=" MD5_HASH "&expires=1510839810", MD5_EXPIRES + 1, SIGNURL_EXPIRED},
	    {"expires=1510839810&md5=" MD5_HASH, MD5_EXPIRES, SIGNURL_OK},
	    {"md5=" MD5_HASH "==&expires=1510839810", MD5_EXPIRES, SIGNURL_OK}, /* 24 chars */
	    {"md5=" MD5_HASH "%3D%3D&expires=1510839810", MD5_EXPIRES, SIGNURL_OK},
	    {"md5=" MD5_HASH "=&expires=1510839810", MD5_EXPIRES, SIGNURL_OK},
	    {"md5=" MD5_HASH "===&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD}, /* 25 */
	    {"md5=" MD5_HASH "A&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=" MD5_HASH "=A&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAah&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAa&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAbg&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag&expires=1510839811", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag&expires=1510839810", MD5_EXPIRES + 10, SIGNURL_EXPIRED},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag&expires=0", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag&expires=", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag&expires=-1", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtAag&expires=01510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=iIMVrFlqQWIVTz7dCUtA+g&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=INVALID_SIGNATURE&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5=&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	    {"md5&expires=1510839810", MD5_EXPIRES, SIGNURL_BAD},
	};
	for (size_t i = 0; i < BV_NELEM(cases); i++)
		ck_assert_msg(signurl_verify(&k, "GET", MD5_PATH, cases[i].query, cases[i].now) ==
			cases[i].want,
		    "case %zu: %s", i, cases[i].query);
	/* The method is not part of this scheme; the path is (verb binding by prefix). */
	ck_assert_int_eq(
	    signurl_verify(&k, "PUT", MD5_PATH, "md5=" MD5_HASH "&expires=1510839810", e),
	    SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/write/cc-packages/ab/cd/abcdef",
			     "md5=" MD5_HASH "&expires=1510839810", e),
	    SIGNURL_BAD);
	/* Without an md5 secret (or with an empty one) md5 URLs are refused, even right ones. */
	struct signurl_keys none = {.legacy_secret = KAT_SECRET, .md5_secret = ""};
	ck_assert_int_eq(
	    signurl_verify(&none, "GET", MD5_PATH, "md5=" MD5_HASH "&expires=1510839810", e),
	    SIGNURL_BAD);
	ck_assert_ptr_null(signurl_sign_md5(&none, MD5_PATH, e, &err));
	ck_assert_ptr_nonnull(err);
	free(err);
}
END_TEST

START_TEST(test_round_trips)
{
	static const char *const methods[] = {"GET", "PUT", "POST", "HEAD", "DELETE"};
	static const char *const paths[] = {"/packages/3e1b1d6e-0000-4c3e-8e6a-1a2b3c4d5e6f",
	    "/droplets/guid/0123456789abcdef0123456789abcdef01234567", "/buildpacks/",
	    "/buildpack_cache/entries/app/cflinuxfs4", "/app_stash/matches", "/",
	    "/a+b/c%20d/%C3%A9"};
	struct signurl_keys k;
	int64_t exp = 2000000000;

	keys_rotation(&k);
	for (size_t m = 0; m < BV_NELEM(methods); m++)
		for (size_t p = 0; p < BV_NELEM(paths); p++) {
			char *q = sign_ok(&k, methods[m], paths[p], exp);
			ck_assert_ptr_nonnull(strstr(q, "&AccessKeyId=k2"));
			ck_assert_int_eq(
			    signurl_verify(&k, methods[m], paths[p], q, exp - 3600), SIGNURL_OK);
			/* A lower-case method from a caller is the same method. */
			char *qq = xasprintf("%s&async=true&verb=put", q);
			ck_assert_int_eq(signurl_verify(&k, "get", paths[p], qq, exp),
			    m == 0 ? SIGNURL_OK : SIGNURL_BAD);
			free(qq);
			free(q);
			char *err = NULL;
			q = signurl_sign_md5(&k, paths[p], exp, &err);
			ck_assert_ptr_nonnull(q);
			ck_assert_int_eq(
			    signurl_verify(&k, methods[m], paths[p], q, exp), SIGNURL_OK);
			ck_assert_int_eq(
			    signurl_verify(&k, methods[m], paths[p], q, exp + 1), SIGNURL_EXPIRED);
			free(q);
		}
	signurl_keys_clear(&k);
}
END_TEST

/* Replaces the first occurrence of from in s by to (new string). */
static char *
replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);

	ck_assert_ptr_nonnull(at);
	return xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
}

START_TEST(test_tampering)
{
	struct signurl_keys k;
	const char *path = "/packages/myguid";
	int64_t exp = 2000000000, now = exp - 10;
	char *q, *t;

	keys_rotation(&k);
	q = sign_ok(&k, "PUT", path, exp);
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, q, now), SIGNURL_OK);
	/* path */
	ck_assert_int_eq(signurl_verify(&k, "PUT", "/packages/myguie", q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "PUT", "/packages/myguid/", q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "PUT", "/droplets/myguid", q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "PUT", "/packages//myguid", q, now), SIGNURL_BAD);
	/* method */
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "POST", path, q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "PUTX", path, q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "", path, q, now), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, NULL, path, q, now), SIGNURL_BAD);
	/* expires: a later one (which would extend the URL) and an earlier one */
	t = replace(q, "expires=2000000000", "expires=2000000001");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	t = replace(q, "expires=2000000000", "expires=1999999999");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	/* signature: every hex digit changed in turn, then upper-cased, truncated, extended */
	const char *sig = strstr(q, "signature=") + strlen("signature=");
	for (int i = 0; i < 64; i++) {
		t = xstrdup(q);
		char *c = t + (sig - q) + i;
		*c = *c == '0' ? '1' : '0';
		ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
		free(t);
	}
	char sig64[65];
	memcpy(sig64, sig, 64);
	sig64[64] = '\0';
	char up[65];
	for (int i = 0; i <= 64; i++)
		up[i] = (sig64[i] >= 'a' && sig64[i] <= 'f') ? (char)(sig64[i] - 32) : sig64[i];
	if (strcmp(up, sig64) != 0) {
		t = replace(q, sig64, up);
		ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
		free(t);
	}
	char *sig63 = xstrndup(sig64, 63);
	t = replace(q, sig64, sig63);
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	free(sig63);
	char *sig65 = xasprintf("%s0", sig64);
	t = replace(q, sig64, sig65);
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	free(sig65);
	/* AccessKeyId: another listed key, an unknown one, an empty one, removed (legacy) */
	t = replace(q, "AccessKeyId=k2", "AccessKeyId=k1");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	t = replace(q, "AccessKeyId=k2", "AccessKeyId=k9");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	t = replace(q, "AccessKeyId=k2", "AccessKeyId=");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	t = replace(q, "&AccessKeyId=k2", "");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	t = replace(q, "AccessKeyId=k2", "accesskeyid=k2");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	/* the signature moved into the md5 slot */
	t = replace(q, "signature=", "md5=");
	ck_assert_int_eq(signurl_verify(&k, "PUT", path, t, now), SIGNURL_BAD);
	free(t);
	free(q);
	signurl_keys_clear(&k);
}
END_TEST

START_TEST(test_expiry_edges)
{
	struct signurl_keys k;
	int64_t exp = 1700000000;
	char *q, *err = NULL;

	keys_rotation(&k);
	/* HMAC: valid while now <= expires, then 403 (BAD), never 410 */
	q = sign_ok(&k, "GET", "/droplets/x", exp);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, exp - 1), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, exp + 1), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, INT64_MAX), SIGNURL_BAD);
	free(q);
	/* md5: valid while expires >= now, then 410 (EXPIRED) */
	q = signurl_sign_md5(&k, "/droplets/x", exp, &err);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, exp + 1), SIGNURL_EXPIRED);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/y", q, exp + 1), SIGNURL_BAD);
	free(q);
	/* The largest expires there is works; one more is refused, not wrapped. */
	q = sign_ok(&k, "GET", "/droplets/x", INT64_MAX);
	ck_assert_ptr_nonnull(strstr(q, "expires=9223372036854775807"));
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", q, INT64_MAX), SIGNURL_OK);
	char *t = replace(q, "9223372036854775807", "9223372036854775808");
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", t, 0), SIGNURL_BAD);
	free(t);
	t = replace(q, "9223372036854775807", "18446744073709551617");
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", t, 0), SIGNURL_BAD);
	free(t);
	t = replace(q, "9223372036854775807", "99999999999999999999999999999");
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", t, 0), SIGNURL_BAD);
	free(t);
	free(q);
	/* expires must be given, as digits only */
	static const char *const bad_expires[] = {"", "+1700000000", "-1700000000", "01700000000",
	    "1700000000 ", " 1700000000", "1700000000.0", "0x65", "1e9", "0"};
	q = sign_ok(&k, "GET", "/droplets/x", exp);
	for (size_t i = 0; i < BV_NELEM(bad_expires); i++) {
		char *b = xasprintf("expires=%s", bad_expires[i]);
		t = replace(q, "expires=1700000000", b);
		ck_assert_msg(signurl_verify(&k, "GET", "/droplets/x", t, 0) == SIGNURL_BAD,
		    "expires '%s'", bad_expires[i]);
		free(t);
		free(b);
	}
	t = replace(q, "&expires=1700000000", "");
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/x", t, 0), SIGNURL_BAD);
	free(t);
	free(q);
	signurl_keys_clear(&k);
}
END_TEST

START_TEST(test_key_rotation)
{
	struct signurl_keys k;
	char *q_old, *q_new, *q_legacy, *err = NULL;
	const char *path = "/droplets/guid";
	int64_t exp = 2000000000;

	/* Phase 1: only k1, active. */
	ck_assert_int_eq(signurl_keys_parse("k1:old-secret", &k, &err), 0);
	k.active_id = "k1";
	q_old = sign_ok(&k, "GET", path, exp);
	ck_assert_ptr_nonnull(strstr(q_old, "&AccessKeyId=k1"));
	signurl_keys_clear(&k);
	/* Phase 2: k2 added and active, k1 still listed: both verify. */
	keys_rotation(&k);
	q_new = sign_ok(&k, "GET", path, exp);
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_old, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_new, exp), SIGNURL_OK);
	/* The secret may hold ':' (k2's is "new:secret"). */
	ck_assert_str_eq(k.keys[1].secret, "new:secret");
	signurl_keys_clear(&k);
	/* Phase 3: k1 dropped: its URLs die, k2's live on. */
	ck_assert_int_eq(signurl_keys_parse("k2:new:secret", &k, &err), 0);
	k.active_id = "k2";
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_old, exp), SIGNURL_BAD);
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_new, exp), SIGNURL_OK);
	/* A URL without AccessKeyId is not checked against the active key. */
	struct signurl_keys legacy = {.legacy_secret = "new:secret"};
	q_legacy = sign_ok(&legacy, "GET", path, exp);
	ck_assert_ptr_null(strstr(q_legacy, "AccessKeyId"));
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_legacy, exp), SIGNURL_BAD);
	/* ... but by the legacy secret when one is set, alongside the keys. */
	k.legacy_secret = "new:secret";
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_legacy, exp), SIGNURL_OK);
	k.legacy_secret = "";
	ck_assert_int_eq(signurl_verify(&k, "GET", path, q_legacy, exp), SIGNURL_BAD);
	/* An unknown active id cannot sign. */
	k.active_id = "k7";
	ck_assert_ptr_null(signurl_sign(&k, "GET", path, exp, &err));
	ck_assert_ptr_nonnull(err);
	free(err);
	free(q_old);
	free(q_new);
	free(q_legacy);
	signurl_keys_clear(&k);
	ck_assert_ptr_null(k.keys);
	ck_assert_ptr_null(k.active_id);
}
END_TEST

START_TEST(test_legacy_secret)
{
	struct signurl_keys k = {.legacy_secret = "geheim"};
	char *q, *err = NULL;

	q = sign_ok(&k, "POST", "/app_stash/matches", 1600000000);
	ck_assert_ptr_null(strstr(q, "AccessKeyId"));
	ck_assert_int_eq(
	    signurl_verify(&k, "POST", "/app_stash/matches", q, 1600000000), SIGNURL_OK);
	/* An AccessKeyId with no keys listed is refused even if the hash fits the legacy one. */
	char *t = xasprintf("%s&AccessKeyId=geheim", q);
	ck_assert_int_eq(
	    signurl_verify(&k, "POST", "/app_stash/matches", t, 1600000000), SIGNURL_BAD);
	free(t);
	free(q);
	/* No key at all: nothing to sign with, nothing verifies. */
	struct signurl_keys none = {0};
	ck_assert_ptr_null(signurl_sign(&none, "GET", "/x", 1, &err));
	ck_assert_ptr_nonnull(err);
	free(err);
	err = NULL;
	none.legacy_secret = "";
	ck_assert_ptr_null(signurl_sign(&none, "GET", "/x", 1, &err));
	free(err);
	ck_assert_int_eq(
	    signurl_verify(&none, "GET", "/x", "signature=" KAT_GET "&expires=1497357804", 0),
	    SIGNURL_BAD);
	/* An empty legacy secret must not verify an HMAC keyed with "" (computed with Python's
	 * hmac over "GET /x  5"). */
	ck_assert_int_eq(
	    signurl_verify(&none, "GET", "/x",
		"signature=3758821a77a05490baa01b6724b4c8a1d5b28aafeff666bfa83d312497b8909d"
		"&expires=5",
		0),
	    SIGNURL_BAD);
}
END_TEST

START_TEST(test_paths)
{
	struct signurl_keys k;
	int64_t exp = 2000000000;
	char *q, *err = NULL;

	keys_rotation(&k);
	/* Escaped and plain spellings of one decoded path are the same signed path. */
	q = sign_ok(&k, "GET", "/droplets/a%2Fb", exp);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a/b", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a%2fb", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a%2Fb", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/%61%2F%62", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a%252Fb", q, exp), SIGNURL_BAD);
	free(q);
	q = sign_ok(&k, "GET", "/droplets/a/b", exp);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a%2Fb", q, exp), SIGNURL_OK);
	free(q);
	/* '+' in a path is a plus, not a space. */
	q = sign_ok(&k, "GET", "/droplets/a+b", exp);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a%2Bb", q, exp), SIGNURL_OK);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/droplets/a%20b", q, exp), SIGNURL_BAD);
	free(q);
	/* The md5 scheme decodes the same way (nginx $uri is decoded). */
	q = signurl_sign_md5(&k, "/read/a%2Fb", exp, &err);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(signurl_verify(&k, "GET", "/read/a/b", q, exp), SIGNURL_OK);
	free(q);
	/* Unsignable paths: refused by the signer, BAD for the verifier. */
	static const char *const bad[] = {
	    "", "packages/x", "/a%", "/a%2", "/a%zz", "/a%00b", "/%g0", "%2Fa"};
	q = sign_ok(&k, "GET", "/ok", exp);
	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		err = NULL;
		ck_assert_msg(signurl_sign(&k, "GET", bad[i], exp, &err) == NULL, "%s", bad[i]);
		ck_assert_ptr_nonnull(err);
		free(err);
		ck_assert_msg(
		    signurl_verify(&k, "GET", bad[i], q, exp) == SIGNURL_BAD, "%s", bad[i]);
	}
	err = NULL;
	ck_assert_ptr_null(signurl_sign(&k, "GET", NULL, exp, &err));
	free(err);
	ck_assert_int_eq(signurl_verify(&k, "GET", NULL, q, exp), SIGNURL_BAD);
	free(q);
	/* Length limit: SIGNURL_MAX_PATH bytes as sent. */
	char *longp = xmalloc(SIGNURL_MAX_PATH + 2);
	longp[0] = '/';
	memset(longp + 1, 'a', SIGNURL_MAX_PATH - 1);
	longp[SIGNURL_MAX_PATH] = '\0';
	q = sign_ok(&k, "GET", longp, exp);
	ck_assert_int_eq(signurl_verify(&k, "GET", longp, q, exp), SIGNURL_OK);
	longp[SIGNURL_MAX_PATH] = 'a';
	longp[SIGNURL_MAX_PATH + 1] = '\0';
	ck_assert_int_eq(signurl_verify(&k, "GET", longp, q, exp), SIGNURL_BAD);
	err = NULL;
	ck_assert_ptr_null(signurl_sign(&k, "GET", longp, exp, &err));
	free(err);
	free(q);
	free(longp);
	/* Methods: letters only, at most 16. */
	static const char *const bad_methods[] = {
	    "", "G T", "GET1", "M-SEARCH", "ABCDEFGHIJKLMNOPQ"};
	for (size_t i = 0; i < BV_NELEM(bad_methods); i++) {
		err = NULL;
		ck_assert_ptr_null(signurl_sign(&k, bad_methods[i], "/x", exp, &err));
		ck_assert_ptr_nonnull(err);
		free(err);
	}
	q = sign_ok(&k, "abcdefghijklmnop", "/x", exp);
	ck_assert_int_eq(signurl_verify(&k, "ABCDEFGHIJKLMNOP", "/x", q, exp), SIGNURL_OK);
	free(q);
	err = NULL;
	ck_assert_ptr_null(signurl_sign(&k, "GET", "/x", 0, &err));
	free(err);
	err = NULL;
	ck_assert_ptr_null(signurl_sign(&k, "GET", "/x", -5, &err));
	free(err);
	signurl_keys_clear(&k);
}
END_TEST

START_TEST(test_query_parsing)
{
	struct signurl_keys k = {.legacy_secret = KAT_SECRET, .md5_secret = MD5_SECRET};
	const char *p = KAT_PATH;
	const int64_t now = KAT_EXPIRES;
	static const struct {
		const char *query;
		enum signurl_verdict want;
	} cases[] = {
	    {NULL, SIGNURL_UNSIGNED},
	    {"", SIGNURL_UNSIGNED},
	    {"&&&", SIGNURL_UNSIGNED},
	    {"async=true", SIGNURL_UNSIGNED},
	    {"expires=1497357804", SIGNURL_UNSIGNED},
	    {"Signature=" KAT_GET "&expires=1497357804", SIGNURL_UNSIGNED},
	    {"signature=" KAT_GET "&expires=1497357804", SIGNURL_OK},
	    {"signature=" KAT_GET "&expires=1497357804&", SIGNURL_OK},
	    {"&&signature=" KAT_GET "&&expires=1497357804&&", SIGNURL_OK},
	    {"async=true&signature=" KAT_GET "&verb=put&expires=1497357804", SIGNURL_OK},
	    /* malformed foreign parameters are ignored */
	    {"x=%zz&signature=" KAT_GET "&%=1&=&==&expires=1497357804&y", SIGNURL_OK},
	    /* escapes in names and values are decoded */
	    {"%73ignature=" KAT_GET "&expires=149735780%34", SIGNURL_OK},
	    {"signature=%32%33fb22c442803f43ea255e369d50a0be66bed17c99e5a44013ad82a9c015c3d7"
	     "&expires=1497357804",
		SIGNURL_OK},
	    /* '+' is a space in a query value */
	    {"signature=" KAT_GET "+&expires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=+1497357804", SIGNURL_BAD},
	    /* bad escapes in our parameters */
	    {"signature=" KAT_GET "%&expires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804%0", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804%00", SIGNURL_BAD},
	    /* duplicates, also identical ones, and the two schemes together */
	    {"signature=" KAT_GET "&signature=" KAT_GET "&expires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804&expires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804&expires=1", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804&%65xpires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804&md5=" MD5_HASH, SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=1497357804&AccessKeyId=a&AccessKeyId=a", SIGNURL_BAD},
	    /* empty and missing values */
	    {"signature&expires=1497357804", SIGNURL_BAD},
	    {"signature=&expires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires", SIGNURL_BAD},
	    {"signature=" KAT_GET, SIGNURL_BAD},
	    /* semicolons are not separators */
	    {"signature=" KAT_GET ";expires=1497357804", SIGNURL_BAD},
	    /* a fragment is not ours to see, but if a caller passes one it breaks the value */
	    {"signature=" KAT_GET "&expires=1497357804#x", SIGNURL_BAD},
	    /* too long values */
	    {"signature=" KAT_GET "00&expires=1497357804", SIGNURL_BAD},
	    {"signature=" KAT_GET "&expires=00000000000000000000001497357804", SIGNURL_BAD},
	    {"md5=" MD5_HASH "=====================================&expires=1", SIGNURL_BAD},
	};
	for (size_t i = 0; i < BV_NELEM(cases); i++)
		ck_assert_msg(signurl_verify(&k, "GET", p, cases[i].query, now) == cases[i].want,
		    "case %zu: %s", i, cases[i].query ? cases[i].query : "(null)");
	/* A very long query: one pass, no limit of its own. */
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 100000; i++)
		buf_adds(&b, "junk=%zz%&");
	buf_adds(&b, "signature=" KAT_GET "&expires=1497357804");
	ck_assert_int_eq(signurl_verify(&k, "GET", p, b.data, now), SIGNURL_OK);
	buf_adds(&b, "&signature=" KAT_GET);
	ck_assert_int_eq(signurl_verify(&k, "GET", p, b.data, now), SIGNURL_BAD);
	buf_free(&b);
	/* A 64-character AccessKeyId is read whole; 65 characters are BAD. */
	char id64[65];
	memset(id64, 'i', 64);
	id64[64] = '\0';
	char *csv = xasprintf("%s:s3cr3t", id64), *err = NULL;
	struct signurl_keys kk;
	ck_assert_int_eq(signurl_keys_parse(csv, &kk, &err), 0);
	kk.active_id = kk.keys[0].id;
	char *q = sign_ok(&kk, "GET", p, now);
	ck_assert_int_eq(signurl_verify(&kk, "GET", p, q, now), SIGNURL_OK);
	char *t = xasprintf("%si", q);
	ck_assert_int_eq(signurl_verify(&kk, "GET", p, t, now), SIGNURL_BAD);
	free(t);
	free(q);
	free(csv);
	signurl_keys_clear(&kk);
}
END_TEST

START_TEST(test_keys_parse)
{
	static const struct {
		const char *csv;
		int rc;
		size_t n;
		const char *err_part; /* a part of the error */
	} cases[] = {
	    {NULL, 0, 0, NULL},
	    {"", 0, 0, NULL},
	    {"  \t ", 0, 0, NULL},
	    {"a:b", 0, 1, NULL},
	    {"key-1.v2_x:s,key2:t", 0, 2, NULL},
	    {" a:s1 ,\tb:s2\t", 0, 2, NULL},
	    {"a:s:with:colons", 0, 1, NULL},
	    {"a:x,b:y,c:z,d:w,e:v,f:u", 0, 6, NULL},
	    {"a:topsecret,a:othersecret", -1, 0, "duplicate id a"},
	    {"a:topsecret,", -1, 0, "entry 2 is empty"},
	    {",a:topsecret", -1, 0, "entry 1 is empty"},
	    {"a:topsecret,,b:x", -1, 0, "entry 2 is empty"},
	    {"a", -1, 0, "not id:secret"},
	    {"a:", -1, 0, "not id:secret"},
	    {":topsecret", -1, 0, "the id must be"},
	    {"a b:topsecret", -1, 0, "the id must be"},
	    {"a/b:topsecret", -1, 0, "the id must be"},
	    {"a:topsecret,b", -1, 0, "entry 2 is not id:secret"},
	    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:topsecret", -1, 0,
		"the id must be"},
	};
	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		struct signurl_keys k;
		char *err = NULL;
		memset(&k, 0xa5, sizeof k);
		int rc = signurl_keys_parse(cases[i].csv, &k, &err);
		ck_assert_msg(rc == cases[i].rc, "case %zu", i);
		ck_assert_msg(k.n == cases[i].n, "case %zu: n %zu", i, k.n);
		ck_assert_ptr_null(k.active_id);
		ck_assert_ptr_null(k.legacy_secret);
		if (rc == 0) {
			ck_assert_ptr_null(err);
		} else {
			ck_assert_ptr_nonnull(err);
			ck_assert_msg(
			    strstr(err, cases[i].err_part) != NULL, "case %zu: %s", i, err);
			ck_assert_msg(
			    strstr(err, "topsecret") == NULL && strstr(err, "othersecret") == NULL,
			    "case %zu echoes: %s", i, err);
			ck_assert_ptr_null(k.keys);
			free(err);
		}
		signurl_keys_clear(&k);
	}
	/* Parsed values, trimmed. */
	struct signurl_keys k;
	char *err = NULL;
	ck_assert_int_eq(signurl_keys_parse(" a:s1 ,\tb:s 2\t", &k, &err), 0);
	ck_assert_str_eq(k.keys[0].id, "a");
	ck_assert_str_eq(k.keys[0].secret, "s1");
	ck_assert_str_eq(k.keys[1].id, "b");
	ck_assert_str_eq(k.keys[1].secret, "s 2");
	/* The start-up check. */
	ck_assert_int_eq(signurl_keys_check(&k, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no active key id"));
	free(err);
	k.active_id = "c";
	ck_assert_int_eq(signurl_keys_check(&k, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "active key id c is not"));
	free(err);
	k.active_id = "not valid:s";
	ck_assert_int_eq(signurl_keys_check(&k, &err), -1);
	ck_assert_ptr_null(strstr(err, "valid"));
	free(err);
	k.active_id = "b";
	ck_assert_int_eq(signurl_keys_check(&k, &err), 0);
	signurl_keys_clear(&k);
	ck_assert_int_eq(signurl_keys_check(&k, &err), 0);
	signurl_keys_clear(NULL);
}
END_TEST

/* One signed query the fuzz test starts from, and the text a verdict of OK requires. */
struct fuzz_seed {
	char *query;
	const char *method;
	const char *path;
	char *sigtext; /* "signature=<hex>" or "md5=<b64>" */
	const char *value_start;
	size_t value_len;
};

/* Mutated queries against the verifier (they come from anyone on the public host): never a
 * crash, always a verdict, and OK only when the signature text is intact. Then the
 * signature value alone mutated: never OK. */
START_TEST(test_verify_fuzz)
{
	struct signurl_keys k;
	struct fuzz_seed seeds[4];
	unsigned int seed = 5150;
	int64_t exp = 2000000000, now = exp - 100;
	char *err = NULL;
	int ok_count = 0;

	keys_rotation(&k);
	seeds[0].method = "PUT";
	seeds[0].path = "/packages/guid";
	char *q0 = sign_ok(&k, "PUT", "/packages/guid", exp);
	seeds[0].query = xasprintf("%s&async=true", q0);
	free(q0);
	seeds[1].method = "GET";
	seeds[1].path = "/droplets/a%2Fb";
	struct signurl_keys legacy = {.legacy_secret = KAT_SECRET};
	seeds[1].query = sign_ok(&legacy, "GET", "/droplets/a%2Fb", exp);
	seeds[2].method = "GET";
	seeds[2].path = "/read/cc-packages/ab/cd/abcdef";
	seeds[2].query = signurl_sign_md5(&k, seeds[2].path, exp, &err);
	seeds[3].method = "HEAD";
	seeds[3].path = "/signed/buildpacks/x";
	char *q3 = signurl_sign_md5(&k, seeds[3].path, exp, &err);
	seeds[3].query = replace(q3, "&", "==&verb=get&");
	free(q3);
	for (int s = 0; s < 4; s++) {
		const char *name = s < 2 ? "signature=" : "md5=";
		const char *at = strstr(seeds[s].query, name);
		ck_assert_ptr_nonnull(at);
		size_t vlen = strcspn(at + strlen(name), "&");
		/* md5 padding may come and go: the signature text is the 22 characters. */
		seeds[s].sigtext = xstrndup(at, strlen(name) + (s < 2 ? 64 : 22));
		seeds[s].value_start = at + strlen(name);
		seeds[s].value_len = vlen;
		ck_assert_int_eq(
		    signurl_verify(&k, seeds[s].method, seeds[s].path, seeds[s].query, now),
		    SIGNURL_OK);
	}

	static const char pick[] = "&=%+-_0aAfF9;sx";
	for (int round = 0; round < 50000; round++) {
		struct fuzz_seed *fs = &seeds[round % 4];
		size_t base = strlen(fs->query);
		char *b = xmalloc(base + 16);
		size_t len = base;
		memcpy(b, fs->query, base);
		int ops = 1 + rand_r(&seed) % 4;
		for (int o = 0; o < ops; o++) {
			int r = rand_r(&seed);
			size_t at = len ? (size_t)rand_r(&seed) % len : 0;
			switch (r % 5) {
			case 0: /* bit flip, never to NUL */
				if (len > 0 && (b[at] ^= (char)(1 << (r >> 4) % 8)) == '\0')
					b[at] = 'x';
				break;
			case 1: /* insertion of an interesting byte */
				if (len < base + 15) {
					memmove(b + at + 1, b + at, len - at);
					b[at] = pick[(r >> 4) % (sizeof pick - 1)];
					len++;
				}
				break;
			case 2: /* deletion */
				if (len > 0) {
					memmove(b + at, b + at + 1, len - at - 1);
					len--;
				}
				break;
			case 3: /* truncation */
				len = at;
				break;
			default: /* a random printable byte */
				if (len > 0)
					b[at] = (char)(32 + (r >> 4) % 95);
				break;
			}
		}
		b[len] = '\0';
		enum signurl_verdict v = signurl_verify(&k, fs->method, fs->path, b, now);
		ck_assert(v == SIGNURL_OK || v == SIGNURL_UNSIGNED || v == SIGNURL_BAD ||
		    v == SIGNURL_EXPIRED);
		ck_assert_msg(v != SIGNURL_EXPIRED, "expired before its time: %s", b);
		if (v == SIGNURL_OK) {
			ok_count++;
			ck_assert_msg(
			    strstr(b, fs->sigtext) != NULL, "OK with a mutated sig: %s", b);
		}
		free(b);
	}
	/* Some mutations land outside the signature and must still pass. */
	ck_assert_int_gt(ok_count, 100);

	/* Only the signature value mutated, its length kept or changed by one: never OK. */
	for (int round = 0; round < 50000; round++) {
		struct fuzz_seed *fs = &seeds[round % 4];
		size_t off = (size_t)(fs->value_start - fs->query);
		char *b = xstrdup(fs->query);
		size_t i = off + (size_t)rand_r(&seed) % fs->value_len;
		int r = rand_r(&seed);
		char c = (char)(b[i] ^ (1 << r % 7));
		b[i] = c == '\0' ? 'x' : c;
		if (b[i] == fs->query[i])
			b[i] = b[i] == 'A' ? 'B' : 'A';
		ck_assert_msg(signurl_verify(&k, fs->method, fs->path, b, now) != SIGNURL_OK,
		    "OK with a mutated signature: %s", b);
		free(b);
	}
	for (int s = 0; s < 4; s++) {
		free(seeds[s].query);
		free(seeds[s].sigtext);
	}
	signurl_keys_clear(&k);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("signurl");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_kat_hmac);
	tcase_add_test(tc, test_kat_md5);
	tcase_add_test(tc, test_round_trips);
	tcase_add_test(tc, test_tampering);
	tcase_add_test(tc, test_expiry_edges);
	tcase_add_test(tc, test_key_rotation);
	tcase_add_test(tc, test_legacy_secret);
	tcase_add_test(tc, test_paths);
	tcase_add_test(tc, test_query_parsing);
	tcase_add_test(tc, test_keys_parse);
	tcase_add_test(tc, test_verify_fuzz);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
