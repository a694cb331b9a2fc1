/* router.h: the API's route table. Pure logic (no I/O, no libevhtp), unit-tested in
 * tests/check_router.c. Patterns such as "/vault/{kind}/{id}/status" match a path exactly,
 * segment by segment after percent-decoding (no prefix matches; a trailing slash makes a
 * different path); matching is method-aware so that a known path with the wrong method
 * gives 405 and an Allow list, and HEAD is accepted wherever GET is. */
#ifndef BV_ROUTER_H
#define BV_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/util.h"

#define ROUTER_MAX_PARAMS 4
#define ROUTER_MAX_SEGMENTS 32

struct router;

enum router_result {
	ROUTER_FOUND, /* m->id and m's params are set */
	ROUTER_NOT_FOUND, /* no pattern matches the path: 404 */
	ROUTER_METHOD_NOT_ALLOWED, /* a pattern matches, not with this method: 405 + m->allow */
	ROUTER_BAD_PATH /* not a path, bad %-escape, or NUL or '/' once decoded: 400 */
};

struct router_match {
	int id; /* the id given to router_add */
	int nparams;
	const char *names[ROUTER_MAX_PARAMS]; /* point into the route table */
	char *values[ROUTER_MAX_PARAMS]; /* decoded; owned, freed by router_match_clear */
	char allow[64]; /* "GET, HEAD, POST" for 405 */
};

struct router *router_new(void);
void router_free(struct router *rt);
/* Adds a route. method is an upper-case token ("GET", "POST", ...); pattern starts with
 * '/' and holds literal segments or "{name}" captures (a whole segment each). false when
 * the pattern is malformed. Routes are tried in the order they were added. */
bool router_add(struct router *rt, const char *method, const char *pattern, int id) BV_MUSTCHECK;
/* Matches method and path (the path only, without "?query"). m is always initialised;
 * release it with router_match_clear whatever the result. */
enum router_result router_match(
    const struct router *rt, const char *method, const char *path, struct router_match *m);
/* The decoded value captured as name, or NULL. */
const char *router_param(const struct router_match *m, const char *name);
void router_match_clear(struct router_match *m);

/* Percent-decodes one path segment of len bytes into a new string. NULL when an escape is
 * malformed or the result would hold NUL or '/'. Exposed for tests. */
char *router_decode_segment(const char *s, size_t len);

#endif
