/* bitsauth.h: who may call the Bits routes (docs/api.md "Bits", research bits-service.md
 * §1.1, §2), decided by the Host header as the bits-service does: the public host serves
 * only requests whose URL is signed (shared/signurl.c); the private host serves the
 * internal endpoints with the auth config sets (bits_private_auth: bearer tokens, HTTP
 * Basic against bits_signing_users, or none on a trusted network); another host is a
 * 400. With no hosts configured every host is private. /sign (private host only) takes
 * HTTP Basic and hands out signed URLs. Loop thread. */
#ifndef BV_BITSAUTH_H
#define BV_BITSAUTH_H

#include <stdbool.h>

#include "api/auth.h"
#include "api/resp.h"
#include "shared/config.h"
#include "shared/util.h"

struct bitsauth;
struct http_req;

/* From the configuration: NULL + *errstr when a Bits key is malformed (signing keys, the
 * active key, signing users, bits_private_auth). */
struct bitsauth *bitsauth_new(const struct config *cfg, char **errstr) BV_MUSTCHECK;
void bitsauth_free(struct bitsauth *b);

/* Whether a Host header value names want (a configured host: "name" or "name:port"):
 * the same name in any letter case, with or without one trailing dot; the port must
 * match when want has one. */
bool bitsauth_host_is(const char *host, const char *want);
/* Whether r came to the public host. */
bool bitsauth_is_public(const struct bitsauth *b, struct http_req *r);
/* The access check of a Bits route (sign: the /sign route). 0 to go on, or the status
 * with the answer in rs: 400 unknown host, 401 (with WWW-Authenticate), 403, 410. */
int bitsauth_check(
    const struct bitsauth *b, struct http_req *r, enum auth_role role, bool sign, struct resp *rs);
/* Whether r reads a droplet with the Droplet Archiver's credentials (HTTP Basic of
 * archiver_users on a GET or HEAD of /droplets/...): such a read may only reach droplets
 * the archiver stored (routes_bits.c checks the row). */
bool bitsauth_archiver_reader(const struct bitsauth *b, struct http_req *r);
/* The Droplet Archiver's routes (POST /droplets/{app}/{sha1}, /sync/...): HTTP Basic
 * against archiver_users, never on the public host. 0, or the status (401, 403) with rs. */
int bitsauth_archiver_check(const struct bitsauth *b, struct http_req *r, struct resp *rs);
/* The signed URL for /sign: method "GET", "PUT" or "POST", path as the client will send
 * it. base is the public URL's base when bits_public_url is unset. New string, or NULL +
 * *errstr (no signing key configured). */
char *bitsauth_sign(const struct bitsauth *b, const char *method, const char *path,
    const char *base, char **errstr) BV_MUSTCHECK;

#endif
