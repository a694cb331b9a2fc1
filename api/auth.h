/* auth.h: bearer tokens to roles and names. Tokens come from the config (admin_token,
 * worker_token, user_tokens: "name:token" entries, a bare token is named "user"); the
 * admin token is named "admin", the worker token "worker". They are compared as SHA-256 digests with CRYPTO_memcmp, against every
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
	AUTH_INVALID, /* a header was sent but names no known token */
	/* No token, but the TLS-terminating proxy named the user in request_user_header:
	 * may read (as anonymous) and create requests, nothing else. */
	AUTH_PROXY_USER
};

/* Who may call a route. */
enum auth_access {
	ACCESS_READ, /* anyone with a valid token; anonymous too when anonymous_read */
	ACCESS_USER, /* user or admin */
	ACCESS_WORKER, /* worker only */
	ACCESS_WORKER_ADMIN, /* worker or admin */
	ACCESS_ADMIN, /* admin only */
	ACCESS_COOK, /* asking for a cook on SWH's paths: user or admin, anyone when anonymous_cook */
	/* POST /api/v1/requests: user or admin, a proxy-named user, anyone when
	 * request_anonymous_create */
	ACCESS_REQUEST_CREATE,
	/* Cachito's worker-only routes: the worker, with Cachito's 403 message */
	ACCESS_CACHITO_WORKER,
	/* The Bits routes: api/bitsauth.c decides by host (signed URLs, bearer, basic or none) */
	ACCESS_BITS,
	/* /sign: HTTP Basic against bits_signing_users, private host only (api/bitsauth.c) */
	ACCESS_BITS_SIGN,
	/* The Droplet Archiver: HTTP Basic against archiver_users (api/bitsauth.c) */
	ACCESS_ARCHIVER
};

struct auth;

struct auth *auth_new(const struct config *cfg);
void auth_free(struct auth *a);
/* The role for an Authorization header value (NULL when absent). */
enum auth_role auth_role_of(const struct auth *a, const char *authorization);
/* The role and the caller's name for an Authorization header value (NULL when absent)
 * and the value of the request_user_header header (NULL when absent or not configured).
 * A token wins over the header. *name is the token's name, or proxy_user for
 * AUTH_PROXY_USER, NULL for anonymous and invalid callers; it lives as long as a (or as
 * proxy_user). */
enum auth_role auth_identify(
    const struct auth *a, const char *authorization, const char *proxy_user, const char **name);
/* The header a TLS-terminating proxy sets to the user's name, or NULL when not configured. */
const char *auth_user_header(const struct auth *a);
/* True when name may create requests for another user (request_representatives). */
bool auth_is_representative(const struct auth *a, const char *name);
/* 0 when role may use access; else 401 (no or bad token) or 403 (wrong role), with *msg a
 * static message for the client. */
int auth_check(
    const struct auth *a, enum auth_role role, enum auth_access access, const char **msg);
/* "anonymous", "user", "admin", "worker", "invalid", "proxy-user" (for the access log). */
const char *auth_role_name(enum auth_role role);
/* The access rule's name as bitsvault-api --routes prints it: "read", "user", "worker",
 * "worker-admin", "admin", "cook", "request-create", "cachito-worker", "bits",
 * "bits-sign", "archiver". */
const char *auth_access_name(enum auth_access access);

#endif
