/* bitsauth.c: the Bits routes' hosts, auth and signed URLs (see bitsauth.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/bitsauth.h"
#include "api/bitsup.h"
#include "api/call.h"
#include "api/http.h"
#include "shared/log.h"
#include "shared/signurl.h"

enum private_auth { PRIVATE_BEARER, PRIVATE_BASIC, PRIVATE_NONE };

struct user {
	char *name;
	unsigned char digest[32]; /* sha256 of "name:password" */
};

struct bitsauth {
	const struct config *cfg;
	struct signurl_keys keys;
	enum private_auth mode;
	struct user *users; /* bits_signing_users */
	size_t nusers;
	struct user *ausers; /* archiver_users */
	size_t nausers;
};

/* sha256 of s[0..n). */
static void
sha256(const char *s, size_t n, unsigned char out[32])
{
	unsigned int len = 0;

	if (EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) != 1)
		abort();
}

/* "user:password,..." into b->users (only digests are kept). */
static int
parse_users(struct user **users, size_t *nusers, const char *csv, const char *key, char **errstr)
{
	char *copy = xstrdup(csv), *save = NULL;
	int rc = 0;

	for (char *e = strtok_r(copy, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save)) {
		while (*e == ' ' || *e == '\t')
			e++;
		size_t n = strlen(e);
		while (n > 0 && (e[n - 1] == ' ' || e[n - 1] == '\t'))
			e[--n] = '\0';
		char *colon = strchr(e, ':');
		if (colon == NULL || colon == e || colon[1] == '\0') {
			*errstr = xasprintf("%s: entry %zu is not user:password", key, *nusers + 1);
			rc = -1;
			break;
		}
		*users = xrealloc(*users, (*nusers + 1) * sizeof **users);
		(*users)[*nusers].name = xstrndup(e, (size_t)(colon - e));
		sha256(e, n, (*users)[*nusers].digest);
		(*nusers)++;
	}
	OPENSSL_cleanse(copy, strlen(csv));
	free(copy);
	return rc;
}

struct bitsauth *
bitsauth_new(const struct config *cfg, char **errstr)
{
	struct bitsauth *b = xcalloc(1, sizeof *b);
	const char *m = cfg->bits_private_auth;

	b->cfg = cfg;
	if (strcmp(m, "bearer") == 0) {
		b->mode = PRIVATE_BEARER;
	} else if (strcmp(m, "basic") == 0) {
		b->mode = PRIVATE_BASIC;
	} else if (strcmp(m, "none") == 0) {
		b->mode = PRIVATE_NONE;
	} else {
		*errstr = xasprintf(
		    "bits_private_auth must be bearer, basic or none, not '%s'", call_echo(m));
		goto fail;
	}
	if (signurl_keys_parse(cfg->bits_signing_keys, &b->keys, errstr) != 0)
		goto fail;
	b->keys.active_id = cfg->bits_active_key_id[0] != '\0' ? cfg->bits_active_key_id : NULL;
	b->keys.legacy_secret = cfg->bits_secret;
	b->keys.md5_secret = cfg->bits_md5_secret;
	if (signurl_keys_check(&b->keys, errstr) != 0 ||
	    parse_users(&b->users, &b->nusers, cfg->bits_signing_users, "bits_signing_users",
		errstr) != 0 ||
	    parse_users(&b->ausers, &b->nausers, cfg->archiver_users, "archiver_users", errstr) !=
		0)
		goto fail;
	if (b->mode == PRIVATE_NONE && cfg->bits_public_host[0] != '\0') {
		/* One listener serves both hosts and a client picks its Host header: with a
		 * public host the private one must ask for credentials. */
		*errstr = xstrdup("bits_private_auth none cannot be used with bits_public_host: "
				  "anyone who reaches the public host could name the private one");
		goto fail;
	}
	if (b->mode == PRIVATE_BASIC && b->nusers == 0) {
		*errstr = xstrdup("bits_private_auth is basic but bits_signing_users is empty");
		goto fail;
	}
	return b;
fail:
	bitsauth_free(b);
	return NULL;
}

void
bitsauth_free(struct bitsauth *b)
{
	if (b == NULL)
		return;
	signurl_keys_clear(&b->keys);
	for (size_t i = 0; i < b->nusers; i++)
		free(b->users[i].name);
	free(b->users);
	for (size_t i = 0; i < b->nausers; i++)
		free(b->ausers[i].name);
	free(b->ausers);
	free(b);
}

/* The length of a host name without its port and without one trailing dot ("a.b.:80" ->
 * 3). */
static size_t
host_name_len(const char *s)
{
	size_t n = strlen(s);
	const char *colon = s[0] == '[' ? strstr(s, "]:") : strrchr(s, ':');

	if (colon != NULL)
		n = (size_t)(colon - s) + (s[0] == '[' ? 1 : 0);
	if (n > 0 && s[n - 1] == '.')
		n--;
	return n;
}

/* Whether the Host header names want: the same name in any letter case and with or
 * without one trailing dot ("pub.example." is "pub.example"); the ports must match when
 * want names one. */
bool
bitsauth_host_is(const char *host, const char *want)
{
	size_t hn, wn;
	const char *hp, *wp;

	if (host == NULL || want == NULL || want[0] == '\0')
		return false;
	hn = host_name_len(host);
	wn = host_name_len(want);
	if (hn != wn || strncasecmp(host, want, hn) != 0)
		return false;
	if (strrchr(want, ':') == NULL || (want[0] == '[' && strstr(want, "]:") == NULL))
		return true; /* no port in want: any port */
	hp = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
	wp = want[0] == '[' ? strstr(want, "]:") : strrchr(want, ':');
	if (hp == NULL)
		return false;
	if (host[0] == '[')
		hp++;
	if (want[0] == '[')
		wp++;
	return strcmp(hp, wp) == 0;
}

bool
bitsauth_is_public(const struct bitsauth *b, struct http_req *r)
{
	return bitsauth_host_is(http_req_header(r, "Host"), b->cfg->bits_public_host);
}

/* Whether an Authorization header holds the Basic credentials of a signing user. Every
 * user is compared, so the time taken does not say which one matched. */
static bool
basic_ok(const struct user *users, size_t nusers, const char *auth)
{
	unsigned char raw[512], d[32];
	const char *v;
	int n;
	bool ok = false;

	if (auth == NULL || strncasecmp(auth, "Basic ", 6) != 0)
		return false;
	v = auth + 6;
	while (*v == ' ')
		v++;
	if (strlen(v) > 4 * (sizeof raw / 3) - 4)
		return false;
	n = EVP_DecodeBlock(raw, (const unsigned char *)v, (int)strlen(v));
	if (n <= 0)
		return false;
	/* EVP_DecodeBlock counts the padding's zero bytes. */
	for (size_t len = strlen(v); len > 0 && v[len - 1] == '='; len--)
		n--;
	sha256((const char *)raw, (size_t)n, d);
	OPENSSL_cleanse(raw, sizeof raw);
	for (size_t i = 0; i < nusers; i++)
		ok |= CRYPTO_memcmp(d, users[i].digest, 32) == 0;
	return ok;
}

/* Whether a query string carries an HMAC signature (a "signature" parameter); otherwise a
 * verified URL is an md5 one. */
static bool
has_signature(const char *q)
{
	for (const char *p = q; p != NULL && *p != '\0';) {
		if (strncmp(p, "signature=", 10) == 0)
			return true;
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
	return false;
}

/* md5 URLs do not bind the method: as nginx served them, they reach only the /signed/
 * paths, and only to read or to put (never a DELETE, never another route). */
static bool
md5_allowed(struct http_req *r)
{
	const char *m = http_req_method(r);

	return strncmp(http_req_path(r), "/signed/", 8) == 0 &&
	    (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "PUT") == 0);
}

/* A 401 asking for HTTP Basic. */
static int
need_basic(struct resp *rs)
{
	bitsup_error(rs, 401, 0, "Unauthorized: HTTP Basic credentials required");
	resp_header(rs, "WWW-Authenticate", "Basic realm=\"bits-service\"");
	return 401;
}

int
bitsauth_check(
    const struct bitsauth *b, struct http_req *r, enum auth_role role, bool sign, struct resp *rs)
{
	const char *host = http_req_header(r, "Host");
	const struct config *cfg = b->cfg;

	if (bitsauth_host_is(host, cfg->bits_public_host)) {
		if (sign) {
			bitsup_error(rs, 404, 0, "Not Found: /sign is served on the private host");
			return 404;
		}
		switch (signurl_verify(&b->keys, http_req_method(r), http_req_path(r),
		    http_req_query(r), (int64_t)time(NULL))) {
		case SIGNURL_OK:
			if (has_signature(http_req_query(r)) || md5_allowed(r))
				return 0;
			bitsup_error(rs, 403, 0,
			    "Forbidden: md5 URLs are served under /signed/, to GET or PUT only");
			return 403;
		case SIGNURL_EXPIRED:
			bitsup_error(rs, 410, 0, "Gone: the signed URL has expired");
			return 410;
		case SIGNURL_UNSIGNED:
			bitsup_error(
			    rs, 403, 0, "Forbidden: the public host serves signed URLs only");
			return 403;
		default:
			bitsup_error(rs, 403, 0, "Forbidden: the URL's signature is not valid");
			return 403;
		}
	}
	if (cfg->bits_private_host[0] != '\0' && !bitsauth_host_is(host, cfg->bits_private_host)) {
		bitsup_error(rs, 400, 0,
		    "Invalid host '%s'. External clients should use hostname '%s'.",
		    host != NULL ? call_echo(host) : "",
		    cfg->bits_public_host[0] != '\0' ? cfg->bits_public_host
						     : cfg->bits_private_host);
		return 400;
	}
	/* The Droplet Archiver's clients read its droplets with its own credentials (the
	 * route then serves only droplets the archiver stored: bitsauth_archiver_reader). */
	if (!sign && bitsauth_archiver_reader(b, r))
		return 0;
	if (sign || b->mode == PRIVATE_BASIC)
		return basic_ok(b->users, b->nusers, http_req_header(r, "Authorization"))
		    ? 0
		    : need_basic(rs);
	if (b->mode == PRIVATE_NONE)
		return 0;
	if (role == AUTH_USER || role == AUTH_ADMIN)
		return 0;
	if (role == AUTH_ANONYMOUS || role == AUTH_INVALID || role == AUTH_PROXY_USER) {
		bitsup_error(rs, 401, 0, "%s",
		    role == AUTH_INVALID ? "Unauthorized: invalid token"
					 : "Unauthorized: send Authorization: Bearer <token>");
		resp_header(rs, "WWW-Authenticate", "Bearer realm=\"bitsvault\"");
		return 401;
	}
	bitsup_error(rs, 403, 0, "Forbidden: this token's role may not use the Bits routes");
	return 403;
}

char *
bitsauth_sign(
    const struct bitsauth *b, const char *method, const char *path, const char *base, char **errstr)
{
	const struct config *cfg = b->cfg;
	char *q = signurl_sign(
		 &b->keys, method, path, (int64_t)time(NULL) + cfg->bits_sign_expiry, errstr),
	     *url, *root;
	size_t n;

	if (q == NULL)
		return NULL;
	if (cfg->bits_public_url[0] != '\0')
		root = xstrdup(cfg->bits_public_url);
	else if (cfg->bits_public_host[0] != '\0')
		root = xasprintf("http://%s", cfg->bits_public_host);
	else
		root = xstrdup(base);
	n = strlen(root);
	while (n > 0 && root[n - 1] == '/')
		root[--n] = '\0';
	url = xasprintf("%s%s?%s", root, path, q);
	free(root);
	free(q);
	return url;
}

int
bitsauth_archiver_check(const struct bitsauth *b, struct http_req *r, struct resp *rs)
{
	if (bitsauth_is_public(b, r)) {
		bitsup_error(rs, 403, 0, "Forbidden: the public host serves signed URLs only");
		return 403;
	}
	if (basic_ok(b->ausers, b->nausers, http_req_header(r, "Authorization")))
		return 0;
	resp_error(rs, 401, "unauthorized: HTTP Basic credentials of archiver_users required");
	resp_header(rs, "WWW-Authenticate", "Basic realm=\"droplet-archiver\"");
	return 401;
}

bool
bitsauth_archiver_reader(const struct bitsauth *b, struct http_req *r)
{
	return b->nausers > 0 && strncmp(http_req_path(r), "/droplets/", 10) == 0 &&
	    (strcmp(http_req_method(r), "GET") == 0 || strcmp(http_req_method(r), "HEAD") == 0) &&
	    basic_ok(b->ausers, b->nausers, http_req_header(r, "Authorization"));
}
