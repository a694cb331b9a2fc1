/* loadurl.h: the URLs a git load may read. One rule for the API, which answers a 400
 * before any job exists, and for the workers, the last line (loads, and the repositories
 * and submodules of Requests). */
#ifndef BV_LOADURL_H
#define BV_LOADURL_H

#include <stdbool.h>
#include <stddef.h>

/* The longest URL accepted. */
#define LOADURL_MAX 2048
#define LOADURL_SCHEMES "https://, http://, git:// or file://"

/* NULL when the URL (len bytes) may be loaded, else why not, in words for the user that
 * never repeat the URL. https, http and git need a host; file:// an absolute path, and
 * allow_file. A user name or password, a query and a fragment are refused: they are where
 * secrets travel, and the URL is stored and shown. *auth_at and *auth_len give the
 * authority (NULL and 0 for file://). */
const char *loadurl_problem(
    const char *url, size_t len, bool allow_file, const char **auth_at, size_t *auth_len);

#endif
