/* httpc.h: a small libcurl client for workers reporting to the API (and, later,
 * notifications). One handle per thread; connections are kept alive between calls. */
#ifndef BV_HTTPC_H
#define BV_HTTPC_H

#include <stdbool.h>
#include <stdint.h>

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

/* httpc_json with HTTP Basic (userpwd "user:password"; NULL: the handle's token as
 * usual), for the Droplet Archiver's peers. */
int httpc_json_basic(struct httpc *hc, const char *method, const char *url, const char *userpwd,
    const char *json_body, long *status, struct buf *resp, char **errstr) BV_MUSTCHECK;

/* Guards hc's later httpc_get_stream and httpc_json calls: every connection they open (redirects
 * included, and whatever the name resolves to at that moment: no DNS-rebinding window)
 * must go to an address shared/netguard.h calls public; any other ends the transfer with
 * HTTPC_TRANSPORT and an *errstr naming the address and its class. Proxies from the
 * environment are not used while guarded. */
void httpc_set_guard(struct httpc *hc, bool on);

/* A streamed GET, for downloads (no total timeout: a transfer slower than 1 byte/s for
 * stall_s seconds is dropped instead). The body of a 200 answer goes to sink as it
 * arrives (sink returns 0, or -1 to stop); other answers' bodies are dropped. tick is
 * called during the transfer (false stops it). A body past max_bytes stops it too.
 * Redirects are followed (http and https only, at most 5). *status is the final answer's
 * status. errstr gets libcurl's words on a transport error (the caller adds the URL). */
enum httpc_stream {
	HTTPC_DONE, /* an answer arrived (any *status) */
	HTTPC_TRANSPORT, /* no answer: DNS, connection, TLS, stall (*errstr) */
	HTTPC_TOO_BIG, /* the body passed max_bytes */
	HTTPC_SINK_STOPPED, /* sink returned -1 */
	HTTPC_TICK_STOPPED /* tick returned false */
};
typedef int (*httpc_sink)(void *arg, const void *data, size_t len);
typedef bool (*httpc_tick)(void *arg);
enum httpc_stream httpc_get_stream(struct httpc *hc, const char *url, int64_t max_bytes,
    long stall_s, httpc_sink sink, httpc_tick tick, void *arg, long *status, char **errstr);
/* POSTs size bytes read from fd (at its offset) to url, with HTTP Basic when userpwd
 * ("user:password") is non-NULL; no total timeout, a transfer stalled for stall_s seconds
 * is dropped. *status and the answer's body (resp may be NULL). 0 when an answer came, -1
 * + *errstr (never holding the password). */
int httpc_post_file(struct httpc *hc, const char *url, const char *userpwd, int fd, uint64_t size,
    long stall_s, long *status, struct buf *resp, char **errstr) BV_MUSTCHECK;

#endif
