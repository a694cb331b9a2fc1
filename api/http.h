/* http.h: the one module that calls libevhtp (STYLE 10). It runs the request pipeline on
 * one event loop: a request id for every request, a headers-phase callback where the
 * application routes and authenticates, body policies (buffered JSON with a limit, spooled
 * upload streamed to a file, or discarded), real 413 replies, request limits (431 past
 * opts.max_headers or opts.max_header_bytes, 414 past opts.max_url, 400 for conflicting
 * Content-Lengths or a request the parser rejects), deadlines for slow or stalled clients
 * (the header section, the body, the reply, idle keep-alive), a cap on open connections
 * and a listener that rests when accept() fails, replies sent from plain data (struct
 * resp) including files with sendfile,
 * pause/resume for work done elsewhere, and one access-log line per request with the
 * bytes really sent. Every function here must be called on the loop thread. */
#ifndef BV_HTTP_H
#define BV_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "api/resp.h"
#include "shared/util.h"

struct http_server;
struct http_req;

struct http_callbacks {
	/* All headers are in: route and authenticate; choose a body policy
	 * (http_req_body_buffer / http_req_body_spool) or refuse (http_req_refuse). With
	 * neither, a body is read and thrown away (up to opts.discard_limit). */
	void (*headers)(struct http_req *r, void *arg);
	/* The whole body has arrived and nothing was refused: reply now (http_req_reply) or
	 * http_req_pause and reply later. */
	void (*request)(struct http_req *r, void *arg);
	/* The request is about to be freed, on success or abort: release http_req_data. */
	void (*finished)(struct http_req *r, void *arg);
	/* The last in-flight request just finished (used to drain at shutdown). */
	void (*idle)(void *arg);
};

/* The most connections http_connection_cap ever allows. */
#define HTTP_MAX_CONNECTIONS 100000

struct http_opts {
	/* A body that sends nothing, or a reply the client takes nothing of, this long:
	 * the connection is closed (progress-based, so slow clients that keep going finish). */
	int64_t timeout_s;
	/* A request's whole header section, from its first byte (from the accept for a
	 * new connection): a client that trickles headers (slowloris) is closed after it. */
	int64_t header_timeout_s;
	/* An idle keep-alive connection (no request under way) is closed after it. */
	int64_t keepalive_timeout_s;
	int64_t max_headers; /* header fields per request: more is a 431 */
	int64_t max_header_bytes; /* bytes of header fields per request: more is a 431 */
	int64_t max_url; /* bytes of path plus query: more is a 414 */
	int64_t max_keepalive_requests; /* per connection */
	int64_t max_body; /* largest body any route accepts (safety net) */
	int64_t discard_limit; /* largest body accepted and dropped on other routes */
	int64_t max_connections; /* open at once; more are closed at accept (0: no limit) */
};

struct http_server *http_server_new(struct event_base *base, const struct http_opts *opts,
    const struct http_callbacks *cb, void *arg);
/* Binds "host:port", "[v6addr]:port" or ":port". *bound gets "host:port" as bound (the
 * real port when 0 was asked), for the "listening on" line; caller frees. 0 or -1. */
int http_server_listen(
    struct http_server *s, const char *listen, char **bound, char **errstr) BV_MUSTCHECK;
/* A bound, listening socket for listen, shared by processes that fork after it is made
 * (api_processes); 0 with *fd and *bound (as for http_server_listen), or -1. */
int http_listen_socket(const char *listen, int *fd, char **bound, char **errstr) BV_MUSTCHECK;
/* Serves on such a socket instead of binding one; *bound as for http_server_listen. */
int http_server_accept(
    struct http_server *s, int fd, const char *listen, char **bound, char **errstr) BV_MUSTCHECK;
/* Stops accepting connections; replies from now on carry Connection: close. */
void http_server_drain(struct http_server *s);
/* Requests between their headers and their end. */
size_t http_server_inflight(const struct http_server *s);
/* Frees the server. With close_connections, idle keep-alive connections are closed first
 * (only when nothing is in flight). */
void http_server_free(struct http_server *s, bool close_connections);

/* Splits a listen address into host ("" for any) and port; false when malformed. */
bool http_parse_listen(const char *listen, char **host, int *port) BV_MUSTCHECK;
/* Parses a Content-Length value: digits only (spaces or tabs around them allowed), no
 * sign, at most UINT64_MAX. False when malformed. */
bool http_parse_content_length(const char *s, uint64_t *out) BV_MUSTCHECK;
/* How many connections to allow with fd_limit descriptors (RLIMIT_NOFILE), reserved of
 * them kept for everything else (database and Redis connections, logs): half of the
 * rest, since a connection sending a bundle or spooling an upload holds two; at least
 * 16, at most HTTP_MAX_CONNECTIONS. */
int64_t http_connection_cap(uint64_t fd_limit, int64_t reserved);

/* Request accessors (valid until the finished callback). */
const char *http_req_id(const struct http_req *r); /* X-Request-ID */
const char *http_req_method(const struct http_req *r); /* "GET" */
bool http_req_is_head(const struct http_req *r);
const char *http_req_path(const struct http_req *r); /* raw, no query */
const char *http_req_query(const struct http_req *r); /* raw, "" when none */
const char *http_req_header(const struct http_req *r, const char *name);
/* The peer's IP address as text into out (at least 46 bytes); "" when unknown. */
void http_req_peer(const struct http_req *r, char *out, size_t n);
/* True when a body follows the headers (Content-Length > 0 or chunked). */
bool http_req_has_body(const struct http_req *r);
void http_req_set_data(struct http_req *r, void *data);
void *http_req_data(const struct http_req *r);
/* The role shown in the access log (a static string). */
void http_req_set_role(struct http_req *r, const char *role);

/* Headers phase: keep the body in memory, up to limit bytes (413 past it). */
void http_req_body_buffer(struct http_req *r, int64_t limit);
/* Headers phase: stream the body into fd as it arrives, up to limit bytes (413 past it).
 * A write error is answered right away (507 for a full disk, else 500). The caller keeps
 * ownership of fd. */
void http_req_body_spool(struct http_req *r, int fd, int64_t limit);
/* Headers phase: answer with rs (taken over) without running the request callback. A
 * request without a body is answered once it is complete; with a large or chunked body,
 * the answer goes out at once and the connection is closed after it (research B.1.5). */
void http_req_refuse(struct http_req *r, struct resp *rs);
/* A streaming body's consumer: called on the loop with each run of body bytes as it
 * arrives. 0 to go on; -1 with *rs filled (its status and message; 500 when left unset)
 * to answer at once and close the connection. */
typedef int (*http_body_sink_fn)(void *arg, const void *data, size_t len, struct resp *rs);
/* Headers phase: hand the body to fn as it arrives, up to limit bytes (413 past it). */
void http_req_body_sink(struct http_req *r, http_body_sink_fn fn, void *arg, int64_t limit);
/* Headers phase: like http_req_refuse, but a body of known length (up to opts.max_body)
 * is read and dropped whole before rs goes out, as the bits-service answers its 413. */
void http_req_refuse_drain(struct http_req *r, struct resp *rs);
/* The declared Content-Length (0 included), or -1 when none was sent or the body is
 * chunked. */
int64_t http_req_content_length(const struct http_req *r);
/* The buffered body (NUL-terminated) and the number of body bytes received. */
const char *http_req_body(const struct http_req *r, size_t *len);
uint64_t http_req_body_bytes(const struct http_req *r);

/* Defers the reply: the request stays valid until http_req_reply (which resumes it). */
void http_req_pause(struct http_req *r);
/* Sends rs (taken over; rs is cleared) and resumes the request if it was paused. A HEAD
 * request gets the same headers (Content-Length included) and no body. */
void http_req_reply(struct http_req *r, struct resp *rs);

#endif
