/* fuzz_signurl.c: signed-URL parameters (shared/signurl.c). Input: "METHOD\nPATH\nQUERY\n"
 * then a key list in the configuration's form. Properties: verification never accepts the
 * same query for a tampered path or after time runs out; whatever method and path signing
 * accepts, the signed query verifies at its expiry and not one second later (HMAC: BAD;
 * md5: EXPIRED); a parsed key list frees cleanly. */
#include "shared/signurl.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

/* The keys of tests/check_signurl.c's rotation case. */
static void
fixed_keys(struct signurl_keys *k)
{
	char *err = NULL;

	if (signurl_keys_parse("k1:old-secret,k2:new:secret", k, &err) != 0)
		abort();
	k->active_id = "k2";
	k->legacy_secret = "12345";
	k->md5_secret = "BLOBSTORE_SECURE_LINK_SECRET";
}

/* A verdict from the enum. */
static enum signurl_verdict
verify(const struct signurl_keys *k, const char *m, const char *p, const char *q, int64_t now)
{
	enum signurl_verdict v = signurl_verify(k, m, p, q, now);

	FUZZ_CHECK(
	    v == SIGNURL_OK || v == SIGNURL_UNSIGNED || v == SIGNURL_BAD || v == SIGNURL_EXPIRED);
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *method = fuzz_field(&data, &size, '\n');
	char *path = fuzz_field(&data, &size, '\n');
	char *query = fuzz_field(&data, &size, '\n');
	char *csv = fuzz_str(data, size);
	struct signurl_keys k, parsed;
	char *err = NULL, *q, *tampered;
	int64_t expires = 1000000000 + (int64_t)(size * 7919 % 1000000);

	fixed_keys(&k);
	if (verify(&k, method, path, query, 0) == SIGNURL_OK) {
		/* Signed for this path only, and not for ever. */
		tampered = xasprintf("%sx", path);
		FUZZ_CHECK(verify(&k, method, tampered, query, 0) != SIGNURL_OK);
		free(tampered);
		FUZZ_CHECK(verify(&k, method, path, query, INT64_MAX) != SIGNURL_OK);
	}
	(void)verify(&k, method, path, NULL, 0);

	if ((q = signurl_sign(&k, method, path, expires, &err)) != NULL) {
		FUZZ_CHECK(strncmp(q, "signature=", 10) == 0);
		FUZZ_CHECK(verify(&k, method, path, q, expires) == SIGNURL_OK);
		FUZZ_CHECK(verify(&k, method, path, q, expires + 1) == SIGNURL_BAD);
		free(q);
	} else {
		FUZZ_CHECK(err != NULL);
		free(err);
		err = NULL;
	}
	if ((q = signurl_sign_md5(&k, path, expires, &err)) != NULL) {
		FUZZ_CHECK(strncmp(q, "md5=", 4) == 0);
		FUZZ_CHECK(verify(&k, "GET", path, q, expires) == SIGNURL_OK);
		FUZZ_CHECK(verify(&k, "GET", path, q, expires + 1) == SIGNURL_EXPIRED);
		free(q);
	} else {
		FUZZ_CHECK(err != NULL);
		free(err);
		err = NULL;
	}
	signurl_keys_clear(&k);

	if (signurl_keys_parse(csv, &parsed, &err) == 0) {
		parsed.active_id = parsed.n > 0 ? parsed.keys[parsed.n - 1].id : NULL;
		FUZZ_CHECK(signurl_keys_check(&parsed, &err) == 0);
		for (size_t i = 0; i < parsed.n; i++)
			FUZZ_CHECK(parsed.keys[i].id[0] != '\0' &&
			    parsed.keys[i].secret[0] != '\0' &&
			    strchr(parsed.keys[i].secret, ',') == NULL);
		signurl_keys_clear(&parsed);
	} else {
		FUZZ_CHECK(err != NULL);
		free(err);
	}
	free(method);
	free(path);
	free(query);
	free(csv);
	return 0;
}
