/* auth.c: bearer tokens to roles and names, compared in constant time (see auth.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/auth.h"

#define DIGEST_LEN 32

/* The longest value of request_user_header taken as a user name. */
#define PROXY_USER_MAX 255

struct auth_token {
	unsigned char digest[DIGEST_LEN];
	enum auth_role role;
	char *name;
};

struct auth {
	struct auth_token *tokens;
	size_t n;
	bool anonymous_read;
	bool anonymous_cook;
	bool anonymous_create;
	char *user_header; /* NULL when not configured */
	char *representatives; /* comma-separated names */
};

/* SHA-256 of a token: equal-length values for CRYPTO_memcmp whatever the token's length. */
static void
digest(const char *s, size_t len, unsigned char out[DIGEST_LEN])
{
	unsigned int outlen = DIGEST_LEN;

	if (EVP_Digest(s, len, out, &outlen, EVP_sha256(), NULL) != 1)
		abort(); /* SHA-256 is always available: a broken invariant */
}

/* Adds one token unless it is empty (an empty setting disables that role). */
static void
add_token(struct auth *a, const char *tok, size_t len, enum auth_role role, const char *name,
    size_t name_len)
{
	if (len == 0)
		return;
	a->tokens = xrealloc(a->tokens, (a->n + 1) * sizeof(struct auth_token));
	digest(tok, len, a->tokens[a->n].digest);
	a->tokens[a->n].role = role;
	a->tokens[a->n].name = xstrndup(name, name_len);
	a->n++;
}

/* Trims spaces and tabs around s[0..*len). */
static const char *
trim(const char *s, size_t *len)
{
	while (*len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*len)--;
	}
	while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
		(*len)--;
	return s;
}

/* One user_tokens entry: "name:token", or a bare token named "user". */
static void
add_user_token(struct auth *a, const char *s, size_t len)
{
	const char *colon = memchr(s, ':', len);
	const char *name = "user", *tok = s;
	size_t name_len = 4, tok_len = len;

	if (colon != NULL) {
		size_t nl = (size_t)(colon - s);
		const char *n = trim(s, &nl);

		tok = colon + 1;
		tok_len = len - (size_t)(colon - s) - 1;
		tok = trim(tok, &tok_len);
		if (nl > 0) {
			name = n;
			name_len = nl;
		}
	}
	add_token(a, tok, tok_len, AUTH_USER, name, name_len);
}

/* Digests every configured token. Order matters only if one token is configured twice:
 * the first role wins (admin, then worker, then user). */
struct auth *
auth_new(const struct config *cfg)
{
	struct auth *a = xcalloc(1, sizeof *a);
	const char *p;

	a->anonymous_read = cfg->anonymous_read;
	a->anonymous_cook = cfg->anonymous_cook;
	a->anonymous_create = cfg->request_anonymous_create;
	if (cfg->request_user_header != NULL && cfg->request_user_header[0] != '\0')
		a->user_header = xstrdup(cfg->request_user_header);
	a->representatives =
	    xstrdup(cfg->request_representatives != NULL ? cfg->request_representatives : "");
	if (cfg->admin_token != NULL)
		add_token(a, cfg->admin_token, strlen(cfg->admin_token), AUTH_ADMIN, "admin", 5);
	if (cfg->worker_token != NULL)
		add_token(
		    a, cfg->worker_token, strlen(cfg->worker_token), AUTH_WORKER, "worker", 6);
	for (p = cfg->user_tokens; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		/* Spaces around commas are not part of a token. */
		const char *s = trim(p, &len);

		add_user_token(a, s, len);
		if (end == NULL)
			break;
		p = end + 1;
	}
	return a;
}

/* Wipes the digests too: they are as good as the tokens for a brute-force attempt. */
void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++)
		free(a->tokens[i].name);
	if (a->tokens != NULL)
		OPENSSL_cleanse(a->tokens, a->n * sizeof(struct auth_token));
	free(a->tokens);
	free(a->user_header);
	free(a->representatives);
	free(a);
}

/* A proxy's user name is used as it is, so it must be short printable ASCII. */
static bool
proxy_user_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= PROXY_USER_MAX || (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return i > 0;
}

/* Parses "Bearer <token>" and looks the token up. */
enum auth_role
auth_identify(
    const struct auth *a, const char *authorization, const char *proxy_user, const char **name)
{
	unsigned char d[DIGEST_LEN];
	enum auth_role found = AUTH_INVALID;
	const char *tok;
	size_t len, i;

	*name = NULL;
	if (authorization == NULL) {
		if (a->user_header != NULL && proxy_user != NULL && proxy_user_ok(proxy_user)) {
			*name = proxy_user;
			return AUTH_PROXY_USER;
		}
		return AUTH_ANONYMOUS;
	}
	if (strncasecmp(authorization, "Bearer", 6) != 0 ||
	    (authorization[6] != ' ' && authorization[6] != '\t'))
		return AUTH_INVALID;
	tok = authorization + 6;
	while (*tok == ' ' || *tok == '\t')
		tok++;
	len = strlen(tok);
	while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
		len--;
	if (len == 0)
		return AUTH_INVALID;
	digest(tok, len, d);
	/* Every token is compared, so the time taken does not say which one matched. */
	for (i = 0; i < a->n; i++) {
		bool eq = CRYPTO_memcmp(d, a->tokens[i].digest, DIGEST_LEN) == 0;

		if (eq && found == AUTH_INVALID) {
			found = a->tokens[i].role;
			*name = a->tokens[i].name;
		}
	}
	OPENSSL_cleanse(d, sizeof d);
	return found;
}

/* The role alone (the header of a proxy is not looked at). */
enum auth_role
auth_role_of(const struct auth *a, const char *authorization)
{
	const char *name;

	return auth_identify(a, authorization, NULL, &name);
}

/* The configured request_user_header. */
const char *
auth_user_header(const struct auth *a)
{
	return a->user_header;
}

/* Looks name up in request_representatives. */
bool
auth_is_representative(const struct auth *a, const char *name)
{
	size_t nlen = name != NULL ? strlen(name) : 0;

	for (const char *p = a->representatives; nlen > 0 && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *s = trim(p, &len);

		if (len == nlen && memcmp(s, name, len) == 0)
			return true;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return false;
}

/* Applies the access rule of a route to a role. */
int
auth_check(const struct auth *a, enum auth_role role, enum auth_access access, const char **msg)
{
	if (role == AUTH_INVALID) {
		*msg = "invalid token";
		return 401;
	}
	switch (access) {
	case ACCESS_READ:
		if ((role == AUTH_ANONYMOUS || role == AUTH_PROXY_USER) && !a->anonymous_read) {
			*msg = "authentication required: send Authorization: Bearer <token>";
			return 401;
		}
		return 0;
	case ACCESS_USER:
		if (role == AUTH_USER || role == AUTH_ADMIN)
			return 0;
		break;
	case ACCESS_WORKER:
		if (role == AUTH_WORKER)
			return 0;
		break;
	case ACCESS_WORKER_ADMIN:
		if (role == AUTH_WORKER || role == AUTH_ADMIN)
			return 0;
		break;
	case ACCESS_ADMIN:
		if (role == AUTH_ADMIN)
			return 0;
		break;
	case ACCESS_COOK:
		/* SWH's clients (opam, Guix) send no token: a deployment that serves them
		 * opens this with anonymous_cook. */
		if (role == AUTH_USER || role == AUTH_ADMIN ||
		    (role == AUTH_ANONYMOUS && a->anonymous_cook))
			return 0;
		break;
	case ACCESS_REQUEST_CREATE:
		/* Cachito's clients send no token: they authenticate to a proxy in front (a
		 * client certificate), or the network is trusted. */
		if (role == AUTH_USER || role == AUTH_ADMIN || role == AUTH_PROXY_USER ||
		    ((role == AUTH_ANONYMOUS) && a->anonymous_create))
			return 0;
		break;
	case ACCESS_CACHITO_WORKER:
		if (role == AUTH_WORKER)
			return 0;
		if (role != AUTH_ANONYMOUS && role != AUTH_PROXY_USER) {
			*msg = "This API endpoint is restricted to Cachito workers";
			return 403;
		}
		break;
	case ACCESS_BITS:
	case ACCESS_BITS_SIGN:
	case ACCESS_ARCHIVER:
		break; /* decided by api/bitsauth.c, never here */
	}
	if (role == AUTH_ANONYMOUS || role == AUTH_PROXY_USER) {
		*msg = "authentication required: send Authorization: Bearer <token>";
		return 401;
	}
	*msg = "this token's role may not do this";
	return 403;
}

/* Role names for the access log. */
const char *
auth_role_name(enum auth_role role)
{
	switch (role) {
	case AUTH_ANONYMOUS:
		return "anonymous";
	case AUTH_USER:
		return "user";
	case AUTH_ADMIN:
		return "admin";
	case AUTH_WORKER:
		return "worker";
	case AUTH_PROXY_USER:
		return "proxy-user";
	case AUTH_INVALID:
		break;
	}
	return "invalid";
}

/* Access rule names for --routes (and the tests that walk the route table). */
const char *
auth_access_name(enum auth_access access)
{
	switch (access) {
	case ACCESS_READ:
		return "read";
	case ACCESS_USER:
		return "user";
	case ACCESS_WORKER:
		return "worker";
	case ACCESS_WORKER_ADMIN:
		return "worker-admin";
	case ACCESS_ADMIN:
		return "admin";
	case ACCESS_COOK:
		return "cook";
	case ACCESS_REQUEST_CREATE:
		return "request-create";
	case ACCESS_CACHITO_WORKER:
		return "cachito-worker";
	case ACCESS_BITS:
		return "bits";
	case ACCESS_BITS_SIGN:
		return "bits-sign";
	case ACCESS_ARCHIVER:
		return "archiver";
	}
	return "unknown";
}
