/* reqjson.h: Cachito's request documents (research cachito.md §2; reqjson.c) and the
 * checks of the bodies its clients and workers send (§1.3, §7; reqcheck.c): the messages
 * are Cachito's, which are mostly jsonschema's, so values are quoted the way Python prints
 * them ('x', True, None). */
#ifndef BV_REQJSON_H
#define BV_REQJSON_H

#include <stdbool.h>

#include <jansson.h>

#include "shared/requests.h"

/* The package managers a request may name, in the order Cachito's messages list them. */
extern const char *const reqjson_pkg_managers[];
extern const size_t reqjson_npkg_managers;

/* Unix seconds as Cachito prints them: UTC, no zone, always microseconds
 * ("2019-09-17T18:52:57.577851"); out holds at least 32 bytes. */
void reqjson_time(double t, char *out);

/* v the way Python's repr() shows the decoded value: 'a', 1.5, True, None, ['a'],
 * {'k': 'v'} (caller frees). */
char *reqjson_repr(const json_t *v);

/* The request document. verbose: the URLs, state_history (history, newest first, may be
 * NULL), packages and dependencies (from packages_data, only when complete), logs; else
 * packages and dependencies are the counts. base_url has no trailing '/'. */
json_t *reqjson_request(
    const struct request *r, const json_t *history, const char *base_url, bool verbose);

/* Checks a POST /requests body. NULL when fine, with *fields the body ready for
 * requests_create (defaults filled in, "user" left out); else the 400 message (caller
 * frees). enabled: the enabled package managers, comma-separated. */
char *reqjson_check_new(const json_t *body, const char *enabled, json_t **fields);

/* Checks a PATCH /requests/{id} body; NULL or the 400 message (caller frees). */
char *reqjson_check_patch(const json_t *body);

/* Checks a POST /requests/{id}/configuration-files body; NULL or the 400 message. */
char *reqjson_check_config_files(const json_t *body);

/* Python's os.path.normpath for a relative POSIX path ("." when empty; caller frees). */
char *reqjson_normpath(const char *path);

#endif
