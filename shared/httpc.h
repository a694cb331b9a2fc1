/* httpc.h: a small libcurl client for workers reporting to the API (and, later,
 * notifications). One handle per thread; connections are kept alive between calls. */
#ifndef BV_HTTPC_H
#define BV_HTTPC_H

#include "shared/util.h"

struct httpc;

/* token may be NULL (no Authorization header). timeout_s bounds each call. */
struct httpc *httpc_new(const char *token, long timeout_s);
void httpc_free(struct httpc *hc);
/* Sends method url with an optional JSON body; fills *status and, when resp is non-NULL,
 * the response body. 0 when a response arrived (any status), -1 + *errstr on a transport
 * error. */
int httpc_json(struct httpc *hc, const char *method, const char *url, const char *json_body,
    long *status, struct buf *resp, char **errstr) BV_MUSTCHECK;

#endif
