/* auth.c: bearer tokens to roles, compared in constant time (see auth.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/auth.h"

#define DIGEST_LEN 32

struct auth_token {
	unsigned char digest[DIGEST_LEN];
	enum auth_role role;
};

struct auth {
	struct auth_token *tokens;
	size_t n;
	bool anonymous_read;
	bool anonymous_cook;
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
add_token(struct auth *a, const char *tok, size_t len, enum auth_role role)
{
	if (len == 0)
		return;
	a->tokens = xrealloc(a->tokens, (a->n + 1) * sizeof(struct auth_token));
	digest(tok, len, a->tokens[a->n].digest);
	a->tokens[a->n].role = role;
	a->n++;
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
	if (cfg->admin_token != NULL)
		add_token(a, cfg->admin_token, strlen(cfg->admin_token), AUTH_ADMIN);
	if (cfg->worker_token != NULL)
		add_token(a, cfg->worker_token, strlen(cfg->worker_token), AUTH_WORKER);
	for (p = cfg->user_tokens; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *s = p;

		/* Spaces around commas are not part of a token. */
		while (len > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			len--;
		}
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		add_token(a, s, len, AUTH_USER);
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
	if (a->tokens != NULL)
		OPENSSL_cleanse(a->tokens, a->n * sizeof(struct auth_token));
	free(a->tokens);
	free(a);
}

/* Parses "Bearer <token>" and looks the token up. */
enum auth_role
auth_role_of(const struct auth *a, const char *authorization)
{
	unsigned char d[DIGEST_LEN];
	enum auth_role found = AUTH_INVALID;
	const char *tok;
	size_t len, i;

	if (authorization == NULL)
		return AUTH_ANONYMOUS;
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

		if (eq && found == AUTH_INVALID)
			found = a->tokens[i].role;
	}
	OPENSSL_cleanse(d, sizeof d);
	return found;
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
		if (role == AUTH_ANONYMOUS && !a->anonymous_read) {
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
	}
	if (role == AUTH_ANONYMOUS) {
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
	case AUTH_INVALID:
		break;
	}
	return "invalid";
}
