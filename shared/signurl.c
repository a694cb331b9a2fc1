/* signurl.c: signing and verifying the bits-service's signed URLs, HMAC-SHA256 and nginx
 * secure_link md5 (rules and decisions in signurl.h). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "shared/signurl.h"
#include "shared/util.h"

#define HMAC_HEX_LEN 64 /* SHA-256: 32 bytes */
#define MD5_B64_LEN 22 /* 16 bytes, base64 without padding */
#define EXPIRES_MAX_LEN 19

/* Returns true for a character allowed in a key id. */
static bool
id_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '-';
}

/* Checks an id (n bytes at s) against [A-Za-z0-9._-]{1,64}. */
static bool
id_valid(const char *s, size_t n)
{
	if (n == 0 || n > SIGNURL_MAX_ID)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!id_char(s[i]))
			return false;
	return true;
}

/* The secret of the key named id (n bytes), or NULL. Ids are not secret: plain compare. */
static const char *
key_secret(const struct signurl_keys *k, const char *id, size_t n)
{
	for (size_t i = 0; i < k->n; i++)
		if (strlen(k->keys[i].id) == n && memcmp(k->keys[i].id, id, n) == 0)
			return k->keys[i].secret;
	return NULL;
}

/* A secret usable for signing: non-NULL and non-empty. */
static const char *
usable(const char *secret)
{
	return secret != NULL && secret[0] != '\0' ? secret : NULL;
}

/* Entries are split by hand rather than with strtok so empty ones are seen and refused. */
int
signurl_keys_parse(const char *csv, struct signurl_keys *k, char **errstr)
{
	size_t cap = 0, pos = 0;

	memset(k, 0, sizeof *k);
	if (csv == NULL || csv[strspn(csv, " \t")] == '\0')
		return 0;
	for (const char *p = csv;;) {
		const char *end = strchr(p, ',');
		const char *s = p, *e = end != NULL ? end : p + strlen(p);
		const char *colon;

		pos++;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (s == e) {
			*errstr = xasprintf("signing keys: entry %zu is empty", pos);
			goto fail;
		}
		colon = memchr(s, ':', (size_t)(e - s));
		if (colon == NULL || colon == e - 1) {
			*errstr = xasprintf("signing keys: entry %zu is not id:secret", pos);
			goto fail;
		}
		if (!id_valid(s, (size_t)(colon - s))) {
			*errstr = xasprintf(
			    "signing keys: entry %zu: the id must be 1 to %d of A-Z a-z 0-9 . _ -",
			    pos, SIGNURL_MAX_ID);
			goto fail;
		}
		if (key_secret(k, s, (size_t)(colon - s)) != NULL) {
			*errstr = xasprintf("signing keys: duplicate id %.*s", (int)(colon - s), s);
			goto fail;
		}
		if (k->n == cap) {
			cap = cap ? cap * 2 : 4;
			k->keys = xrealloc(k->keys, cap * sizeof *k->keys);
		}
		k->keys[k->n].id = xstrndup(s, (size_t)(colon - s));
		k->keys[k->n].secret = xstrndup(colon + 1, (size_t)(e - colon - 1));
		k->n++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return 0;
fail:
	signurl_keys_clear(k);
	return -1;
}

/* Secrets are wiped before their memory goes back to the allocator. */
void
signurl_keys_clear(struct signurl_keys *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n; i++) {
		free(k->keys[i].id);
		OPENSSL_cleanse(k->keys[i].secret, strlen(k->keys[i].secret));
		free(k->keys[i].secret);
	}
	free(k->keys);
	memset(k, 0, sizeof *k);
}

/* The bits-service refuses signing_keys without active_key_id, and an unknown one. */
int
signurl_keys_check(const struct signurl_keys *k, char **errstr)
{
	if (k->n > 0 && k->active_id == NULL) {
		*errstr = xstrdup("signing keys are set but no active key id");
		return -1;
	}
	if (k->active_id != NULL && key_secret(k, k->active_id, strlen(k->active_id)) == NULL) {
		*errstr = id_valid(k->active_id, strlen(k->active_id))
		    ? xasprintf("active key id %s is not among the signing keys", k->active_id)
		    : xstrdup("active key id is not among the signing keys");
		return -1;
	}
	return 0;
}

/* Upper-cases method into out (SIGNURL_MAX_METHOD + 1 bytes); false unless 1-16 letters. */
static bool
method_norm(const char *method, char *out)
{
	size_t n = method != NULL ? strlen(method) : 0;

	if (n == 0 || n > SIGNURL_MAX_METHOD)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = method[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		else if (c < 'A' || c > 'Z')
			return false;
		out[i] = c;
	}
	out[n] = '\0';
	return true;
}

/* Percent-decodes n bytes of s into out (n + 1 bytes at least); plus: '+' is a space (query
 * form). Returns the decoded length, or -1 for a bad escape or an escaped NUL. */
static long
pct_decode(const char *s, size_t n, char *out, size_t out_cap, bool plus)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return -1;
			hi = hex_digit_value(s[i + 1]);
			lo = hex_digit_value(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		if (o >= out_cap)
			return -1;
		out[o++] = c;
	}
	if (o >= out_cap)
		return -1;
	out[o] = '\0';
	return (long)o;
}

/* The decoded form of a path as sent (xmalloc'd), or NULL when it is not a signable path. */
static char *
path_decode(const char *path)
{
	size_t n = path != NULL ? strlen(path) : 0;
	char *out;

	if (n == 0 || n > SIGNURL_MAX_PATH || path[0] != '/')
		return NULL;
	out = xmalloc(n + 1);
	if (pct_decode(path, n, out, n + 1, false) < 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Lowercase hex HMAC-SHA256 of "METHOD path secret expires" into hex (65 bytes). */
static void
hmac_hex(const char *method, const char *dpath, const char *secret, int64_t expires, char *hex)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	char *msg = xasprintf("%s %s %s %" PRId64, method, dpath, secret, expires);
	size_t msg_len = strlen(msg);

	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, msg_len,
		mac, &mac_len) == NULL ||
	    mac_len != 32)
		abort(); /* only on a broken OpenSSL */
	OPENSSL_cleanse(msg, msg_len);
	free(msg);
	hex_encode(mac, 32, hex);
}

/* MD5 of "<expires><path> <secret>" (nginx's secure_link_md5 "$secure_link_expires$uri
 * <secret>") into md (16 bytes). */
static void
md5_raw(const char *dpath, const char *secret, int64_t expires, unsigned char *md)
{
	unsigned int md_len = 0;
	char *msg = xasprintf("%" PRId64 "%s %s", expires, dpath, secret);
	size_t msg_len = strlen(msg);

	if (!EVP_Digest(msg, msg_len, md, &md_len, EVP_md5(), NULL) || md_len != 16)
		abort(); /* only on a broken OpenSSL (or a FIPS provider without MD5) */
	OPENSSL_cleanse(msg, msg_len);
	free(msg);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Base64url of 16 bytes without padding into out (23 bytes). */
static void
md5_b64(const unsigned char *md, char *out)
{
	size_t o = 0;
	int i;

	for (i = 0; i + 3 <= 15; i += 3) {
		unsigned v = (unsigned)md[i] << 16 | (unsigned)md[i + 1] << 8 | md[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	out[o++] = b64url[md[15] >> 2];
	out[o++] = b64url[(md[15] & 3) << 4];
	out[o] = '\0';
}

/* The value of a base64url character, or -1. */
static int
b64url_value(char c)
{
	const char *p = c != '\0' ? strchr(b64url, c) : NULL;

	return p != NULL ? (int)(p - b64url) : -1;
}

/* Decodes the md5 parameter: 22 base64url characters, canonical (the last one's low four
 * bits zero), then at most two '='. */
static bool
md5_b64_decode(const char *s, size_t n, unsigned char *md)
{
	int v[MD5_B64_LEN];

	if (n < MD5_B64_LEN || n > MD5_B64_LEN + 2)
		return false;
	for (size_t i = MD5_B64_LEN; i < n; i++)
		if (s[i] != '=')
			return false;
	for (int i = 0; i < MD5_B64_LEN; i++)
		if ((v[i] = b64url_value(s[i])) < 0)
			return false;
	if ((v[21] & 15) != 0)
		return false;
	for (int i = 0, o = 0; i < 20; i += 4, o += 3) {
		md[o] = (unsigned char)(v[i] << 2 | v[i + 1] >> 4);
		md[o + 1] = (unsigned char)((v[i + 1] & 15) << 4 | v[i + 2] >> 2);
		md[o + 2] = (unsigned char)((v[i + 2] & 3) << 6 | v[i + 3]);
	}
	md[15] = (unsigned char)(v[20] << 2 | v[21] >> 4);
	return true;
}

/* Parses expires as the header describes: 1-19 digits, no leading zero, > 0, no overflow. */
static bool
expires_parse(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	int64_t v = 0;

	if (n == 0 || n > EXPIRES_MAX_LEN || s[0] == '0')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (INT64_MAX - (s[i] - '0')) / 10)
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Shared argument checks of both signers: expires and the decoded path. */
static char *
sign_prepare(const char *path, int64_t expires, char **errstr)
{
	char *dpath;

	if (expires <= 0) {
		*errstr = xstrdup("signed URL: expiry must be positive");
		return NULL;
	}
	if ((dpath = path_decode(path)) == NULL)
		*errstr = xstrdup("signed URL: the path must start with '/', be at most 8192 "
				  "bytes and have valid escapes");
	return dpath;
}

/* Signs with the active key when there is one, else with the legacy secret. */
char *
signurl_sign(const struct signurl_keys *k, const char *method, const char *path, int64_t expires,
    char **errstr)
{
	char m[SIGNURL_MAX_METHOD + 1], hex[HMAC_HEX_LEN + 1], *dpath, *q;
	const char *secret;

	if (k->active_id != NULL) {
		secret = usable(key_secret(k, k->active_id, strlen(k->active_id)));
		if (secret == NULL) {
			*errstr = xstrdup("signed URL: the active key id is not among the "
					  "signing keys");
			return NULL;
		}
	} else if ((secret = usable(k->legacy_secret)) == NULL) {
		*errstr = xstrdup("signed URL: no signing key configured");
		return NULL;
	}
	if (!method_norm(method, m)) {
		*errstr = xstrdup("signed URL: bad method");
		return NULL;
	}
	if ((dpath = sign_prepare(path, expires, errstr)) == NULL)
		return NULL;
	hmac_hex(m, dpath, secret, expires, hex);
	free(dpath);
	if (k->active_id != NULL)
		q = xasprintf(
		    "signature=%s&expires=%" PRId64 "&AccessKeyId=%s", hex, expires, k->active_id);
	else
		q = xasprintf("signature=%s&expires=%" PRId64, hex, expires);
	return q;
}

/* The md5 signer exists for tests and for minting /read, /write style URLs. */
char *
signurl_sign_md5(const struct signurl_keys *k, const char *path, int64_t expires, char **errstr)
{
	unsigned char md[16];
	char b64[MD5_B64_LEN + 1], *dpath;
	const char *secret = usable(k->md5_secret);

	if (secret == NULL) {
		*errstr = xstrdup("signed URL: no md5 secret configured");
		return NULL;
	}
	if ((dpath = sign_prepare(path, expires, errstr)) == NULL)
		return NULL;
	md5_raw(dpath, secret, expires, md);
	free(dpath);
	md5_b64(md, b64);
	return xasprintf("md5=%s&expires=%" PRId64, b64, expires);
}

/* One of the query parameters verify reads. */
struct param {
	const char *name;
	size_t max; /* longest decoded value */
	char val[HMAC_HEX_LEN + 1];
	bool seen;
	bool bad; /* duplicate, bad escape or too long */
};

enum { P_SIGNATURE, P_EXPIRES, P_KEYID, P_MD5, P_COUNT };

/* One pass over the query: each pair is decoded into fixed buffers, unknown names skipped. */
static void
query_scan(const char *query, struct param *ps)
{
	const char *p = query;

	while (p != NULL && *p != '\0') {
		const char *amp = strchr(p, '&');
		const char *end = amp != NULL ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		const char *kend = eq != NULL ? eq : end;
		char key[16];

		/* A name of ours is at most 11 bytes, so at most 33 escaped. */
		if (kend > p && kend - p <= 33 &&
		    pct_decode(p, (size_t)(kend - p), key, sizeof key, true) >= 0) {
			for (int i = 0; i < P_COUNT; i++) {
				struct param *q = &ps[i];
				if (strcmp(key, q->name) != 0)
					continue;
				const char *v = eq != NULL ? eq + 1 : end;
				size_t vn = (size_t)(end - v);
				if (q->seen || vn > 3 * q->max ||
				    pct_decode(v, vn, q->val, q->max + 1, true) < 0)
					q->bad = true;
				q->seen = true;
			}
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
}

/* HMAC scheme: the key by AccessKeyId or the legacy secret, then signature, then expiry. */
static enum signurl_verdict
verify_hmac(const struct signurl_keys *k, const char *method, const char *dpath,
    const struct param *ps, int64_t expires, int64_t now)
{
	char m[SIGNURL_MAX_METHOD + 1], hex[HMAC_HEX_LEN + 1];
	const char *secret, *sig = ps[P_SIGNATURE].val;

	if (ps[P_KEYID].seen)
		secret = usable(key_secret(k, ps[P_KEYID].val, strlen(ps[P_KEYID].val)));
	else
		secret = usable(k->legacy_secret);
	if (secret == NULL || !method_norm(method, m))
		return SIGNURL_BAD;
	if (strlen(sig) != HMAC_HEX_LEN)
		return SIGNURL_BAD;
	for (size_t i = 0; i < HMAC_HEX_LEN; i++)
		if (!((sig[i] >= '0' && sig[i] <= '9') || (sig[i] >= 'a' && sig[i] <= 'f')))
			return SIGNURL_BAD;
	hmac_hex(m, dpath, secret, expires, hex);
	if (CRYPTO_memcmp(hex, sig, HMAC_HEX_LEN) != 0)
		return SIGNURL_BAD;
	return now > expires ? SIGNURL_BAD : SIGNURL_OK;
}

/* md5 scheme: nginx checks the hash first, and only a right hash can be "expired" (410). */
static enum signurl_verdict
verify_md5(const struct signurl_keys *k, const char *dpath, const struct param *ps, int64_t expires,
    int64_t now)
{
	unsigned char got[16], want[16];
	const char *secret = usable(k->md5_secret);
	const char *v = ps[P_MD5].val;

	if (secret == NULL || !md5_b64_decode(v, strlen(v), got))
		return SIGNURL_BAD;
	md5_raw(dpath, secret, expires, want);
	if (CRYPTO_memcmp(got, want, sizeof want) != 0)
		return SIGNURL_BAD;
	return expires < now ? SIGNURL_EXPIRED : SIGNURL_OK;
}

/* Parses the query, refuses anything ambiguous, then hands over to the scheme's check. */
enum signurl_verdict
signurl_verify(const struct signurl_keys *k, const char *method, const char *path,
    const char *query, int64_t now)
{
	struct param ps[P_COUNT] = {
	    [P_SIGNATURE] = {.name = "signature", .max = HMAC_HEX_LEN},
	    [P_EXPIRES] = {.name = "expires", .max = EXPIRES_MAX_LEN},
	    [P_KEYID] = {.name = "AccessKeyId", .max = SIGNURL_MAX_ID},
	    [P_MD5] = {.name = "md5", .max = MD5_B64_LEN + 2},
	};
	enum signurl_verdict v;
	int64_t expires;
	char *dpath;

	query_scan(query, ps);
	if (!ps[P_SIGNATURE].seen && !ps[P_MD5].seen)
		return SIGNURL_UNSIGNED;
	for (int i = 0; i < P_COUNT; i++)
		if (ps[i].bad)
			return SIGNURL_BAD;
	if (ps[P_SIGNATURE].seen && ps[P_MD5].seen)
		return SIGNURL_BAD;
	if (!ps[P_EXPIRES].seen || !expires_parse(ps[P_EXPIRES].val, &expires))
		return SIGNURL_BAD;
	if ((dpath = path_decode(path)) == NULL)
		return SIGNURL_BAD;
	if (ps[P_SIGNATURE].seen)
		v = verify_hmac(k, method, dpath, ps, expires, now);
	else
		v = verify_md5(k, dpath, ps, expires, now);
	free(dpath);
	return v;
}
