/* auth.h: bearer tokens to roles. Tokens come from the config (admin_token, worker_token,
 * user_tokens); they are compared as SHA-256 digests with CRYPTO_memcmp, against every
 * configured token, so neither the content nor the length of a token leaks through timing.
 * Tokens are never logged. */
#ifndef BV_AUTH_H
#define BV_AUTH_H

#include <stdbool.h>

#include "shared/config.h"

enum auth_role {
	AUTH_ANONYMOUS = 0, /* no Authorization header */
	AUTH_USER,
	AUTH_ADMIN,
	AUTH_WORKER,
	AUTH_INVALID /* a header was sent but names no known token */
};

/* Who may call a route. */
enum auth_access {
	ACCESS_READ, /* anyone with a valid token; anonymous too when anonymous_read */
	ACCESS_USER, /* user or admin */
	ACCESS_WORKER, /* worker only */
	ACCESS_WORKER_ADMIN, /* worker or admin */
	ACCESS_ADMIN, /* admin only */
	ACCESS_COOK /* asking for a cook on SWH's paths: user or admin, anyone when anonymous_cook */
};

struct auth;

struct auth *auth_new(const struct config *cfg);
void auth_free(struct auth *a);
/* The role for an Authorization header value (NULL when absent). */
enum auth_role auth_role_of(const struct auth *a, const char *authorization);
/* 0 when role may use access; else 401 (no or bad token) or 403 (wrong role), with *msg a
 * static message for the client. */
int auth_check(
    const struct auth *a, enum auth_role role, enum auth_access access, const char **msg);
/* "anonymous", "user", "admin", "worker", "invalid" (for the access log). */
const char *auth_role_name(enum auth_role role);

#endif
