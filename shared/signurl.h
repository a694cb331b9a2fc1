/* signurl.h: the bits-service's signed URLs. Pure: OpenSSL only, no I/O, no config; the
 * caller passes the keys and the clock in.
 *
 * Two schemes (research/bits-service.md §2):
 * - HMAC (the Go bits-service, CC >= 2019): ?signature=<hex>&expires=<n>[&AccessKeyId=<id>],
 *   signature = lowercase hex HMAC-SHA256(secret, METHOD " " path " " secret " " expires),
 *   invalid once now > expires (403, like the bits-service; no 410 for this scheme).
 * - md5 (nginx secure_link: the Ruby bits-service, CC's WebDAV blobstore):
 *   ?md5=<b64>&expires=<n>, md5 = base64url without padding of MD5(expires path " " secret),
 *   403 for a bad hash, 410 once expires < now (strictly). The method is not hashed: the
 *   caller binds verbs by path prefix (/read, /write, /signed) as nginx did, and passes the
 *   path with that prefix.
 *
 * Decisions, where the originals differ or say nothing:
 * - Path. Both originals hash the decoded path (Go u.Path, nginx $uri). Callers give the path
 *   as the client sent it (no query); it must start with '/' and is percent-decoded here for
 *   hashing, so "/droplets/a%2Fb" and "/droplets/a/b" are the same signed path, as in the
 *   bits-service. '+' stays '+'. A bad escape, an escaped NUL or a path longer than
 *   SIGNURL_MAX_PATH bytes is refused (BAD, or an error when signing). Unlike nginx we do not
 *   merge slashes or resolve dot segments: such paths hash as they are.
 * - Query. Split on '&'; in each "key=value" pair (a pair without '=' has an empty value) key
 *   and value are percent-decoded and '+' is a space, as Go's url.ParseQuery. Names are
 *   case-sensitive (signature, expires, AccessKeyId, md5); other parameters are ignored
 *   (async=true, verb=put, ...), also when they are malformed. One of our parameters given
 *   twice, with a bad escape, or longer than its format allows: BAD. Both signature= and
 *   md5=: BAD. The query is read in one pass with no allocation, at any length.
 * - expires: 1 to 19 decimal digits, no sign, no leading zero, > 0, fitting int64; anything
 *   else is BAD (stricter than Go's ParseInt and nginx's ngx_atotm, which honest signers never
 *   need). So the hashed text is the text sent and the overflow question does not arise.
 * - signature: exactly 64 lowercase hex digits (Go accepted uppercase; every signer writes
 *   lowercase). md5: 22 base64url characters whose unused low bits are zero, optionally
 *   followed by "=" or "==" (nginx also ignored anything after a '=' and non-zero low bits).
 *   Together with the expires rule: a signed URL has exactly one accepted spelling.
 * - Keys. AccessKeyId selects a key of the list; an unknown or empty one is BAD. Without
 *   AccessKeyId the legacy secret verifies, and nothing else: the active key is not tried, so
 *   a legacy-signed URL stops working when legacy_secret is removed, and a keyed signer must
 *   name its key. An empty secret counts as none (HMAC with an empty key is forgeable).
 * - method: 1 to 16 ASCII letters, upper-cased; the HMAC binds it (a GET URL is no good for
 *   HEAD or PUT, as in the bits-service).
 * Comparisons of signatures are constant-time (CRYPTO_memcmp); hashed buffers holding a
 * secret are cleansed. */
#ifndef BV_SIGNURL_H
#define BV_SIGNURL_H

#include <stddef.h>
#include <stdint.h>

#include "shared/util.h"

/* Longest path (as sent, before decoding) that is signed or verified. */
#define SIGNURL_MAX_PATH 8192
/* Longest key id and method accepted. */
#define SIGNURL_MAX_ID 64
#define SIGNURL_MAX_METHOD 16

struct signurl_key {
	char *id;
	char *secret;
};

/* keys/n are owned (signurl_keys_parse, signurl_keys_clear); the three strings are borrowed
 * from the caller's configuration and must outlive the struct's use. */
struct signurl_keys {
	struct signurl_key *keys; /* signing_keys */
	size_t n;
	const char *active_id; /* the key new URLs are signed with; NULL: legacy_secret */
	const char *legacy_secret; /* verifies (and without active_id signs) URLs without
				      AccessKeyId; NULL or "": none */
	const char *md5_secret; /* nginx secure_link secret; NULL or "": md5 URLs refused */
};

/* Parses "id1:secret1,id2:secret2" into k (zeroed first: set the three borrowed strings
 * after). Spaces and tabs around entries are dropped; an id is [A-Za-z0-9._-]{1,64}, a secret
 * anything non-empty without a comma (it may hold ':'; the first ':' ends the id). A NULL or
 * empty csv gives no keys. An empty entry or a duplicate id is refused. 0, or -1 + *errstr
 * (naming the entry by position or id, never echoing a secret) with k left empty. */
int signurl_keys_parse(const char *csv, struct signurl_keys *k, char **errstr) BV_MUSTCHECK;
/* Frees and cleanses the keys; zeroes the whole struct (borrowed strings are not freed). */
void signurl_keys_clear(struct signurl_keys *k);
/* Configuration check for start-up: as the bits-service, keys need an active id, and the
 * active id must name one of them. 0, or -1 + *errstr. */
int signurl_keys_check(const struct signurl_keys *k, char **errstr) BV_MUSTCHECK;

/* The query string of an HMAC-signed URL for method ("GET", "PUT", "POST"; upper-cased) and
 * path ("/packages/guid", as the client will send it, undecoded, without query), valid until
 * expires (> 0): "signature=<hex>&expires=<n>[&AccessKeyId=<id>]" (caller frees). Signs with
 * the active key, or without active_id with the legacy secret. NULL + *errstr when there is no
 * key to sign with or an argument is invalid. */
char *signurl_sign(const struct signurl_keys *k, const char *method, const char *path,
    int64_t expires, char **errstr) BV_MUSTCHECK;
/* The query string of an nginx secure_link URL for path (rules as above) with md5_secret:
 * "md5=<b64url>&expires=<n>" (caller frees), or NULL + *errstr. */
char *signurl_sign_md5(
    const struct signurl_keys *k, const char *path, int64_t expires, char **errstr) BV_MUSTCHECK;

enum signurl_verdict {
	SIGNURL_OK,
	SIGNURL_UNSIGNED, /* neither signature= nor md5= */
	SIGNURL_BAD, /* 403: bad or expired HMAC, bad md5, anything malformed */
	SIGNURL_EXPIRED, /* md5 scheme only, right hash but expires < now: 410 */
};

/* Checks a request: method, path as the client sent it (undecoded, no query), the raw query
 * string (without '?'; NULL = none) and now (unix seconds). */
enum signurl_verdict signurl_verify(const struct signurl_keys *k, const char *method,
    const char *path, const char *query, int64_t now);

#endif
