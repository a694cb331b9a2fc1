/* http.c: every libevhtp call of the API lives here (STYLE 10). libevhtp 1.2.18 is
 * unmaintained (research B.1.1); each workaround below names the research section or the
 * upstream issue it comes from. Everything runs on the one event-loop thread. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <evhtp.h>

#include "api/http.h"
#include "shared/log.h"

/* Extra bytes above the largest route limit before evhtp's own body cap cuts the
 * connection. evhtp checks its cap (off by one, and with no reply: research B.1.5) before
 * our on_read hook sees a fragment, so a cap equal to our limit would drop chunked uploads
 * without the 413 we send from the hook; the margin lets our check fire first while the
 * cap still bounds a request if our accounting were ever wrong. */
#define BODY_CAP_MARGIN (16 * 1024 * 1024)

/* Request header limits. evhtp keeps every header in a list with no bound of its own (3
 * million small headers grew the process to 390 MB). Past the soft limits
 * (opts.max_headers, opts.max_header_bytes) the headers are dropped as they arrive and the
 * request gets a 431 once its header section ends; past the hard limits (a client that
 * never ends it) the connection is dropped after a 431. The URL limit (opts.max_url) is
 * checked once the header section is in: a request line past libevhtp's own 8 KiB parser
 * buffer, or a single header line past it, is a parser error, answered from
 * on_connection_fini (see parser_reply). */
#define HEADERS_HARD_MAX 1000
#define HEADER_BYTES_HARD_MAX (1024 * 1024)
/* Bytes of a refused request still in the socket that are read and dropped before the
 * parser-error reply, so that closing does not reset the connection under the reply. */
#define PARSER_REPLY_DRAIN (256 * 1024)
/* accept() failing (EMFILE and friends): how long the listener rests before retrying. */
#define ACCEPT_RETRY_MS 200
/* Seconds a 503 asks the client to wait before it tries again. */
#define HTTP_RETRY_AFTER_S "2"
/* Lingering close: how long a refused client may go on sending, and how many such
 * sockets are kept at once (past that they are closed at once, as before). */
#define LINGER_MS 5000
#define LINGER_MAX 256

enum body_mode { BODY_DISCARD, BODY_BUFFER, BODY_SPOOL, BODY_SINK };

struct http_conn {
	evhtp_connection_t *conn;
	struct http_server *srv;
	/* the header section being read (reset once it is complete) */
	size_t nheaders;
	size_t header_bytes;
	bool headers_over; /* past the soft limits: answer 431 */
	bool headers_hard; /* past the hard limits: the parser is stopped, answer 431 */
	/* Deadlines (see on_sweep). req is the request past its headers, if any. */
	struct http_req *req;
	bool served; /* a request ended: idle now means keep-alive */
	uint64_t idle_ms; /* since the accept or the end of the last request */
	uint64_t headers_ms; /* the current request's first byte was seen (0: not yet) */
	uint64_t unacked; /* reply bytes not yet taken by the client, at the last sweep */
	uint64_t progress_ms; /* when unacked last changed */
	bool linger; /* closed by us while the client may still send: linger at the close */
	uint64_t nrequests; /* requests whose headers arrived on this connection */
	TAILQ_ENTRY(http_conn) entry;
};

/* A closed connection's socket, kept to read what its client still sends (lingering
 * close, see linger_start). */
struct lingering {
	struct http_server *srv;
	evutil_socket_t fd;
	struct event *ev;
	uint64_t until_ms;
	TAILQ_ENTRY(lingering) entry;
};

struct http_server {
	evhtp_t *htp;
	struct event_base *base;
	struct http_opts opts;
	struct http_callbacks cb;
	void *arg;
	size_t inflight;
	bool draining;
	TAILQ_HEAD(, http_conn) conns;
	size_t nconns;
	/* connections closed at accept because nconns reached opts.max_connections */
	bool at_conn_limit;
	uint64_t conns_refused;
	/* accept() failing: the listener rests ACCEPT_RETRY_MS between tries */
	struct event *accept_timer;
	/* the deadlines' periodic check (on_sweep) */
	struct event *sweep_timer;
	bool accept_paused;
	uint64_t accept_paused_ms;
	uint64_t accept_failures;
	TAILQ_HEAD(, lingering) lingers;
	size_t nlingers;
	uint64_t id_state; /* request ids (next_request_id) */
};

struct http_req {
	struct http_server *srv;
	struct http_conn *hc; /* NULL once the connection is forgotten */
	evhtp_request_t *req;
	char id[65];
	char logid[72]; /* "req=<id>" for log_*_id */
	const char *method;
	char *path;
	char *query;
	const char *role;
	uint64_t start_ms;

	bool has_body;
	bool chunked;
	enum body_mode mode;
	int64_t limit;
	struct buf body;
	int spool_fd;
	http_body_sink_fn sink;
	void *sink_arg;
	uint64_t content_length; /* as declared; 0 when none */
	bool has_content_length; /* the header was sent (0 included) */
	uint64_t body_bytes;
	uint64_t last_in_ms; /* the headers, or the last body byte, arrived */
	bool complete; /* the whole request is in: the server's turn */

	bool refused;
	bool refuse_drain; /* answer the refusal once the body is read */
	struct resp refusal;
	bool paused;
	bool replied;
	int status; /* sent, for the access log */
	uint64_t queued_out; /* bytes the reply put on the connection (headers and body) */
	uint64_t body_out; /* of which body */
	void *data;
};

/* --- replies --------------------------------------------------------------------- */

/* Adds a response header, copying both strings. */
static void
add_header(evhtp_request_t *req, const char *name, const char *value)
{
	evhtp_headers_add_header(req->headers_out, evhtp_header_new(name, value, 1, 1));
}

/* True when the handler set that header itself. */
static bool
has_header(const struct resp *rs, const char *name)
{
	int i;

	for (i = 0; i < rs->nheaders; i++)
		if (strcasecmp(rs->headers[i].name, name) == 0)
			return true;
	return false;
}

/* The connection's output buffer: what is queued there has not reached the client. */
static struct evbuffer *
conn_output(evhtp_request_t *req)
{
	struct bufferevent *bev = evhtp_request_get_bev(req);

	return bev != NULL ? bufferevent_get_output(bev) : NULL;
}

/* Writes rs to the connection. Files go on the bufferevent's own output buffer, which
 * has EVBUFFER_FLAG_DRAINS_TO_FD, so libevent uses sendfile(2); a file added to
 * req->buffer_out would be mmap'd and copied instead (research B.1.7). The bytes queued
 * are noted so the access log can tell what really went out (see on_request_fini). */
static void
send_resp(struct http_req *r, struct resp *rs)
{
	evhtp_request_t *req = r->req;
	bool head = r->req->method == htp_method_HEAD;
	bool no_body = head || rs->status == 304 || rs->status == 204;
	struct evbuffer *out = conn_output(req);
	size_t before = out != NULL ? evbuffer_get_length(out) : 0, after;
	char num[32];
	int i;

	if (rs->status == 0)
		resp_error(rs, 500, "internal error: no reply was built");
	add_header(req, "X-Request-ID", r->id);
	for (i = 0; i < rs->nheaders; i++)
		add_header(req, rs->headers[i].name, rs->headers[i].value);
	/* A 503 is a dependency away (Postgres, the store): clients and proxies that honour
	 * Retry-After come back a little later rather than at once (RFC 9110 §10.2.3). */
	if (rs->status == 503 && !has_header(rs, "Retry-After"))
		add_header(req, "Retry-After", HTTP_RETRY_AFTER_S);
	/* evhtp adds "Content-Type: text/plain" when none is set (research B.1.7); a 204 or
	 * 304 has no content, so no type either (RFC 9110 §8.3). */
	if (rs->status != 204 && rs->status != 304)
		add_header(req, "Content-Type",
		    rs->content_type != NULL ? rs->content_type : "application/json");
	/* The last answer of a connection says so (evhtp's own request limit closes the
	 * connection after an answer that did not, and a client's next request is lost). */
	if (r->srv->draining ||
	    (r->hc != NULL && r->srv->opts.max_keepalive_requests > 0 &&
		r->hc->nrequests >= (uint64_t)r->srv->opts.max_keepalive_requests)) {
		/* evhtp_request_set_keepalive(req, 0) is a no-op in 1.2.18 (research B.1.5). */
		evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
	}
	r->status = rs->status;
	r->replied = true;

	if (rs->fd >= 0) {
		snprintf(num, sizeof num, "%llu", (unsigned long long)rs->file_size);
		/* An explicit Content-Length is kept by evhtp, so HEAD and 304 show the size. */
		add_header(req, "Content-Length", num);
		evhtp_send_reply_start(req, rs->status);
		if (!no_body && rs->send_file_body && rs->file_size > 0 && out != NULL) {
			/* evbuffer_add_file owns (and closes) the fd from here on. */
			if (evbuffer_add_file(out, rs->fd, (ev_off_t)rs->file_offset,
				(ev_off_t)rs->file_size) == 0) {
				rs->fd = -1;
				r->body_out = rs->file_size;
			} else {
				log_error_id(r->logid, "cannot queue a file for sending; closing");
				evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
			}
		}
		evhtp_send_reply_end(req);
	} else {
		if (no_body) {
			if (head && !has_header(rs, "Content-Length")) {
				snprintf(num, sizeof num, "%zu", rs->body_len);
				add_header(req, "Content-Length", num);
			}
		} else if (rs->body_len > 0) {
			evbuffer_add(req->buffer_out, rs->body, rs->body_len);
			r->body_out = rs->body_len;
		}
		evhtp_send_reply(req, rs->status);
	}
	/* bufferevents never write from inside bufferevent_write: all of it is still there. */
	after = out != NULL ? evbuffer_get_length(out) : 0;
	r->queued_out = after > before ? after - before : 0;
	resp_clear(rs);
}

/* Answers before the body is read: the only way to give a real 413 (or 401) to a large
 * upload. The recipe is research B.1.5: drop "Expect" so evhtp does not send a stray
 * "100 Continue" after our reply, turn keep-alive off with evhtp_request_disable_flag
 * (evhtp_request_set_keepalive(req, 0) does nothing) so the connection closes once the
 * reply is flushed, reply, and keep draining whatever body still arrives. The hook must
 * still return EVHTP_RES_OK: an error would drop the connection before the reply goes. */
static void
send_early(struct http_req *r, struct resp *rs)
{
	evhtp_request_t *req = r->req;
	evhtp_header_t *ex;

	ex = evhtp_headers_find_header(req->headers_in, "Expect");
	if (ex != NULL)
		evhtp_header_rm_and_free(req->headers_in, ex);
	evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
	r->mode = BODY_DISCARD;
	if (r->hc != NULL)
		r->hc->linger = true;
	send_resp(r, rs);
}

/* A 413 naming the limit. */
static void
send_too_large(struct http_req *r)
{
	struct resp rs;

	resp_init(&rs);
	resp_error(
	    &rs, 413, "request body too large: the limit is %lld bytes", (long long)r->limit);
	send_early(r, &rs);
}

/* An early {"error"} answer after which the connection closes. */
static void
send_early_error(struct http_req *r, int status, const char *msg)
{
	struct resp rs;

	resp_init(&rs);
	resp_error(&rs, status, "%s", msg);
	send_early(r, &rs);
}

static void send_early_errorf(struct http_req *r, int status, const char *fmt, ...) BV_PRINTF(3, 4);

/* send_early_error with a formatted message. */
static void
send_early_errorf(struct http_req *r, int status, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	send_early_error(r, status, msg);
	free(msg);
}

/* --- evhtp hooks ---------------------------------------------------------------- */

/* Body fragments: counted, then kept, written to the spool file, or dropped. Whatever
 * the hook leaves in buf is appended to req->buffer_in, so draining here is what keeps
 * memory flat on a large upload (research B.1.4). Never return EVHTP_RES_PAUSE here: on
 * the last fragment the request would hang (research B.1.4, verified). */
static evhtp_res
on_read(evhtp_request_t *req, struct evbuffer *buf, void *arg)
{
	struct http_req *r = arg;
	size_t len = evbuffer_get_length(buf);

	r->body_bytes += len;
	r->last_in_ms = now_ms();
	if (r->replied) {
		evbuffer_drain(buf, len);
		return EVHTP_RES_OK;
	}
	if ((int64_t)r->body_bytes > r->limit) {
		/* Chunked bodies carry no Content-Length: they are refused here. */
		evbuffer_drain(buf, len);
		send_too_large(r);
		return EVHTP_RES_OK;
	}
	switch (r->mode) {
	case BODY_DISCARD:
		evbuffer_drain(buf, len);
		break;
	case BODY_BUFFER: {
		struct evbuffer_iovec v[8];
		int n, i;

		while (evbuffer_get_length(buf) > 0) {
			n = evbuffer_peek(buf, -1, NULL, v, BV_NELEM(v));
			if (n > (int)BV_NELEM(v))
				n = BV_NELEM(v);
			for (i = 0; i < n; i++) {
				buf_add(&r->body, v[i].iov_base, v[i].iov_len);
				evbuffer_drain(buf, v[i].iov_len);
			}
		}
		break;
	}
	case BODY_SINK: {
		struct evbuffer_iovec v[8];
		int n, i;

		while (evbuffer_get_length(buf) > 0) {
			n = evbuffer_peek(buf, -1, NULL, v, BV_NELEM(v));
			if (n > (int)BV_NELEM(v))
				n = BV_NELEM(v);
			for (i = 0; i < n; i++) {
				struct resp rs;

				resp_init(&rs);
				if (r->sink(r->sink_arg, v[i].iov_base, v[i].iov_len, &rs) != 0) {
					evbuffer_drain(buf, evbuffer_get_length(buf));
					if (rs.status == 0)
						resp_error(&rs, 500,
						    "internal error while reading the body");
					send_early(r, &rs);
					return EVHTP_RES_OK;
				}
				evbuffer_drain(buf, v[i].iov_len);
			}
		}
		break;
	}
	case BODY_SPOOL:
		while (evbuffer_get_length(buf) > 0) {
			if (evbuffer_write(buf, r->spool_fd) < 0) {
				struct resp rs;
				int err = errno;

				if (err == EINTR || err == EAGAIN)
					continue;
				evbuffer_drain(buf, evbuffer_get_length(buf));
				log_error_id(r->logid,
				    "cannot write the upload to the spool file: %s", strerror(err));
				resp_init(&rs);
				/* Fixed sentences: the cause (and the spool path) stay in
				 * the log. */
				if (err == ENOSPC || err == EDQUOT)
					resp_error(&rs, 507, "no space left on the server");
				else
					resp_error(
					    &rs, 500, "internal error while storing the archive");
				send_early(r, &rs);
				break;
			}
		}
		break;
	}
	return EVHTP_RES_OK;
}

/* One access-log line per request, then the application frees its data. Runs on
 * success and on abort (research B.1.3), so nothing leaks when a client goes away. The
 * path is logged without its query string (signatures may live there) and the
 * Authorization header is never logged. The bytes logged are the body bytes that left:
 * evhtp frees the request before the connection, so whatever a client that went away
 * did not take is still in the connection's output buffer here, and the body is the
 * tail of what was queued. */
static evhtp_res
on_request_fini(evhtp_request_t *req, void *arg)
{
	struct http_req *r = arg;
	struct http_server *srv = r->srv;
	struct evbuffer *out = conn_output(req);
	uint64_t unsent = 0, sent;

	if (r->replied && out != NULL) {
		unsent = evbuffer_get_length(out);
		if (unsent > r->queued_out)
			unsent = r->queued_out;
	}
	sent = r->body_out > unsent ? r->body_out - unsent : 0;
	if (!r->replied)
		log_info_id(r->logid, "%s %s - 0 bytes %llu ms role=%s (aborted: no reply)",
		    r->method, r->path, (unsigned long long)(now_ms() - r->start_ms), r->role);
	else if (unsent > 0)
		log_info_id(r->logid,
		    "%s %s %d %llu bytes %llu ms role=%s (aborted: %llu of %llu bytes sent)",
		    r->method, r->path, r->status, (unsigned long long)sent,
		    (unsigned long long)(now_ms() - r->start_ms), r->role, (unsigned long long)sent,
		    (unsigned long long)r->body_out);
	else
		log_info_id(r->logid, "%s %s %d %llu bytes %llu ms role=%s", r->method, r->path,
		    r->status, (unsigned long long)sent,
		    (unsigned long long)(now_ms() - r->start_ms), r->role);
	if (srv->cb.finished != NULL)
		srv->cb.finished(r, srv->arg);
	if (r->hc != NULL) {
		/* The connection is idle from now on (or closing). */
		r->hc->req = NULL;
		r->hc->served = true;
		r->hc->idle_ms = now_ms();
		r->hc->headers_ms = 0;
	}
	req->cbarg = NULL;
	resp_clear(&r->refusal);
	buf_free(&r->body);
	free(r->path);
	free(r->query);
	free(r);
	srv->inflight--;
	if (srv->inflight == 0 && srv->cb.idle != NULL)
		srv->cb.idle(srv->arg);
	return EVHTP_RES_OK;
}

/* True for 1..64 characters of [A-Za-z0-9._-]: a client's X-Request-ID we can echo
 * safely into headers and logs. */
static bool
request_id_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (i == 64)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			c == '.' || c == '_' || c == '-'))
			return false;
	}
	return i > 0;
}

/* One header is parsed: count it against the limits. Past the soft ones it is removed
 * and freed at once (evhtp touches it no more after this hook), so memory stays bounded
 * while the rest of the header section is read to be answered with a 431. Past the hard
 * ones no answer is worth waiting for: EVHTP_RES_ERROR makes evhtp drop the connection. */
static evhtp_res
on_header(evhtp_request_t *req, evhtp_header_t *hdr, void *arg)
{
	struct http_conn *hc = arg;

	const struct http_opts *o = &hc->srv->opts;

	hc->nheaders++;
	hc->header_bytes += hdr->klen + hdr->vlen + 4; /* ": " and CRLF */
	if (hc->nheaders <= (size_t)o->max_headers &&
	    hc->header_bytes <= (size_t)o->max_header_bytes)
		return EVHTP_RES_OK;
	if (hc->nheaders > HEADERS_HARD_MAX || hc->header_bytes > HEADER_BYTES_HARD_MAX) {
		log_warn("closing a connection: more than %d headers or %d bytes of headers",
		    HEADERS_HARD_MAX, HEADER_BYTES_HARD_MAX);
		hc->headers_hard = true; /* answered by parser_reply */
		return EVHTP_RES_ERROR;
	}
	hc->headers_over = true;
	evhtp_header_rm_and_free(req->headers_in, hdr);
	return EVHTP_RES_OK;
}

/* Checks every Content-Length header: each must be a plain number and all must agree
 * (RFC 9112 6.3: different lengths make the framing unknowable, a smuggling vector).
 * libevhtp's parser keeps only the last one and drops the connection itself when a
 * value is not a number; this sees what it let through. */
static bool
content_length_ok(evhtp_headers_t *hdrs, const char **why)
{
	evhtp_kv_t *kv;
	uint64_t first = 0, v;
	bool seen = false;

	TAILQ_FOREACH(kv, hdrs, next)
	{
		if (kv->key == NULL || strcasecmp(kv->key, "Content-Length") != 0)
			continue;
		if (kv->val == NULL || !http_parse_content_length(kv->val, &v)) {
			*why = "invalid Content-Length header";
			return false;
		}
		if (seen && v != first) {
			*why = "conflicting Content-Length headers";
			return false;
		}
		seen = true;
		first = v;
	}
	if (seen && evhtp_header_find(hdrs, "Transfer-Encoding") != NULL) {
		*why = "both Content-Length and Transfer-Encoding headers";
		return false;
	}
	return true;
}

/* RFC 9112 §3.2: one Host header, and one at all in HTTP/1.1; the host decides who may do
 * what on the Bits routes (api/bitsauth.c), so no request may leave it ambiguous. */
static bool
host_ok(evhtp_request_t *req, evhtp_headers_t *hdrs, const char **why)
{
	evhtp_kv_t *kv;
	int n = 0;

	TAILQ_FOREACH(kv, hdrs, next)
	{
		if (kv->key != NULL && strcasecmp(kv->key, "Host") == 0)
			n++;
	}
	if (n > 1) {
		*why = "more than one Host header";
		return false;
	}
	if (n == 0 && evhtp_request_get_proto(req) == EVHTP_PROTO_11) {
		*why = "an HTTP/1.1 request needs a Host header";
		return false;
	}
	return true;
}

/* A request id: 16 hex digits, distinct for 2^64 requests of this process (splitmix64 of
 * a counter seeded at random), without a trip to the CSPRNG for every request. Ids
 * correlate logs; nothing relies on their being unpredictable. */
static void
next_request_id(struct http_server *srv, char out[17])
{
	uint64_t z = (srv->id_state += 0x9E3779B97F4A7C15ull);
	static const char digits[] = "0123456789abcdef";

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	for (int i = 15; i >= 0; i--, z >>= 4)
		out[i] = digits[z & 15];
	out[16] = '\0';
}
/* All headers are parsed: the request's context is made here, the request-level limits
 * are checked (header count and size, URL length, Content-Length), the application
 * routes and authenticates, and the body policy is set before any body byte arrives.
 * The hook is installed on every connection (from the post-accept callback) because
 * requests are routed by our own table through evhtp_set_gencb, which has no per-route
 * hooks. */
static evhtp_res
on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
	struct http_conn *hc = arg;
	struct http_server *srv = hc->srv;
	struct http_req *r = xcalloc(1, sizeof *r);
	const char *rid, *te, *why = NULL;
	bool headers_over = hc->headers_over;
	uint64_t clen;

	hc->nrequests++;
	/* The next request on this connection starts counting afresh. */
	hc->nheaders = 0;
	hc->header_bytes = 0;
	hc->headers_over = false;

	r->srv = srv;
	r->hc = hc;
	r->req = req;
	r->start_ms = now_ms();
	r->last_in_ms = r->start_ms;
	hc->req = r;
	hc->headers_ms = 0;
	r->role = "anonymous";
	r->spool_fd = -1;
	r->mode = BODY_DISCARD;
	r->limit = srv->opts.discard_limit;
	buf_init(&r->body);
	resp_init(&r->refusal);
	rid = evhtp_header_find(hdrs, "X-Request-ID");
	if (rid != NULL && request_id_ok(rid))
		snprintf(r->id, sizeof r->id, "%s", rid);
	else
		next_request_id(srv, r->id);
	snprintf(r->logid, sizeof r->logid, "req=%s", r->id);
	r->method = htparser_get_methodstr_m(evhtp_request_get_method(req));
	if (r->method == NULL)
		r->method = "UNKNOWN";
	/* path->full is the raw path (not decoded); router.c decodes each segment. */
	r->path = xstrdup(req->uri != NULL && req->uri->path != NULL && req->uri->path->full != NULL
		? req->uri->path->full
		: "");
	r->query = xstrdup(req->uri != NULL && req->uri->query_raw != NULL
		? (const char *)req->uri->query_raw
		: "");
	/* Unsigned on purpose: a length of 2^63 or more must read as huge, not negative. */
	clen = evhtp_request_content_len(req);
	r->content_length = clen;
	r->has_content_length = evhtp_header_find(hdrs, "Content-Length") != NULL;
	te = evhtp_header_find(hdrs, "Transfer-Encoding");
	r->chunked = te != NULL && strcasestr(te, "chunked") != NULL;
	r->has_body = clen > 0 || r->chunked;

	req->cbarg = r;
	evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_request_fini, r);
	srv->inflight++;

	if (headers_over) {
		/* The headers past the limit are gone: the application must not see a
		 * partial request. */
		log_warn_id(r->logid, "more than %lld headers or %lld bytes of headers: 431",
		    (long long)srv->opts.max_headers, (long long)srv->opts.max_header_bytes);
		send_early_errorf(r, 431,
		    "request header fields too large: the limits are %lld fields and %lld bytes "
		    "(max_headers, max_header_size)",
		    (long long)srv->opts.max_headers, (long long)srv->opts.max_header_bytes);
	} else if (strlen(r->path) + strlen(r->query) > (size_t)srv->opts.max_url) {
		send_early_errorf(r, 414,
		    "request URL too long: the limit is %lld bytes of path and query "
		    "(max_url_length)",
		    (long long)srv->opts.max_url);
	} else if (!content_length_ok(hdrs, &why) || !host_ok(req, hdrs, &why)) {
		log_info_id(r->logid, "refused: %s", why);
		send_early_error(r, 400, why);
	} else {
		srv->cb.headers(r, srv->arg);
		if (r->refused && r->refuse_drain && !r->chunked &&
		    clen <= (uint64_t)srv->opts.max_body) {
			/* Read and dropped whole, then answered: the bits-service's 413, for
			 * clients that read a reply only once they have sent everything. */
			r->mode = BODY_DISCARD;
			r->limit = (int64_t)clen;
		} else if (r->refused) {
			/* Small known-length bodies are read and dropped so the connection
			 * stays usable; anything else is answered at once and closed. */
			r->mode = BODY_DISCARD;
			r->limit = srv->opts.discard_limit;
			if (r->has_body &&
			    (r->chunked || clen > (uint64_t)srv->opts.discard_limit)) {
				r->refused = false;
				send_early(r, &r->refusal);
			}
		} else if (r->has_body && clen > (uint64_t)r->limit) {
			send_too_large(r);
		}
	}
	if (r->has_body)
		evhtp_request_set_hook(req, evhtp_hook_on_read, (evhtp_hook)on_read, r);
	return EVHTP_RES_OK;
}

/* The whole request has arrived (evhtp_set_gencb: every path comes here). */
static void
on_request(evhtp_request_t *req, void *arg)
{
	struct http_req *r = arg;

	if (r == NULL) {
		/* No headers hook ran: cannot happen, but never leave a client hanging. */
		evhtp_headers_add_header(
		    req->headers_out, evhtp_header_new("Content-Type", "application/json", 0, 0));
		evbuffer_add_printf(req->buffer_out, "{\"error\":\"internal error\"}");
		evhtp_send_reply(req, 500);
		return;
	}
	r->complete = true;
	if (r->replied)
		return; /* answered early (413, 401, 431, spool failure): the body was drained */
	if (r->refused) {
		send_resp(r, &r->refusal);
		return;
	}
	r->srv->cb.request(r, r->srv->arg);
}

/* libevhtp drops a connection whose request its parser rejects without a word (research
 * B.1.5, issue #161): a request line or a single header line past its 8 KiB buffer, a
 * malformed request line, a bad Content-Length, or our hard header limits. The client
 * deserves a status, so it is written here, straight to the socket, as evhtp frees the
 * connection: 414 when the request line was cut, 431 for headers, 400 for the rest. The
 * unread rest of the request is dropped first (up to PARSER_REPLY_DRAIN bytes), since
 * closing a socket with unread input sends a reset that may destroy the reply in the
 * client's buffer. Only for a request that did not reach on_headers: afterwards the
 * request has its own answer. */
static void
parser_reply(struct http_conn *hc, evhtp_connection_t *conn)
{
	htparser *p = conn->parser;
	evutil_socket_t fd = conn->bev != NULL ? bufferevent_getfd(conn->bev) : -1;
	enum htpparse_error err = p != NULL ? htparser_get_error(p) : htparse_error_none;
	const char *msg;
	char buf[4096], out[512];
	size_t drained = 0;
	ssize_t n;
	int status, len;

	if (fd < 0 || hc->req != NULL || (err == htparse_error_none && !hc->headers_hard))
		return;
	if (err == htparse_error_user && !hc->headers_hard)
		return; /* a hook of ours stopped it and answered, or chose silence */
	if (hc->headers_hard) {
		status = 431;
		msg = "request header fields too large";
	} else if (err == htparse_error_too_big && hc->nheaders == 0) {
		/* No header parsed yet: the request line (clients send Host first, short). */
		status = 414;
		msg = "request URL too long: the request line is over 8 KiB";
	} else if (err == htparse_error_too_big) {
		/* The parser says too_big for a Content-Length that is not a number too. */
		status = 431;
		msg = "request header fields too large: a header line is over 8 KiB (or a"
		      " Content-Length is not a number)";
	} else {
		status = 400;
		msg = "malformed HTTP request";
	}
	log_info("refusing a request the HTTP parser rejected (%s): %d",
	    hc->headers_hard ? "too many headers" : htparser_get_strerror(p), status);
	while (drained < PARSER_REPLY_DRAIN && (n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
		drained += (size_t)n;
	len = snprintf(out, sizeof out,
	    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
	    "Content-Length: %zu\r\n\r\n{\"error\":\"%s\"}",
	    status,
	    status == 400       ? "Bad Request"
		: status == 414 ? "URI Too Long"
				: "Request Header Fields Too Large",
	    strlen(msg) + 12, msg);
	/* A fresh socket's buffer takes a few hundred bytes at once; a client that does not
	 * take them gets nothing, as before. */
	if (len > 0 && send(fd, out, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
		shutdown(fd, SHUT_WR);
		hc->linger = true; /* the rest of what the client sends is read, not reset */
	}
}

/* Ends a lingering close. */
static void
linger_end(struct lingering *l)
{
	TAILQ_REMOVE(&l->srv->lingers, l, entry);
	l->srv->nlingers--;
	event_free(l->ev);
	close(l->fd);
	free(l);
}

/* What a refused client still sends is read and dropped until it closes its side, an
 * error, or LINGER_MS. */
static void
on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct lingering *l = arg;
	char buf[16384];
	ssize_t n;

	if ((what & EV_TIMEOUT) || now_ms() >= l->until_ms) {
		linger_end(l);
		return;
	}
	while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		linger_end(l);
}

/* Lingering close (RFC 9112 §9.6): closing a socket whose client is still sending (a
 * body refused before it was read, a request the parser rejected) makes the kernel
 * answer its next bytes with a reset, and a reset can make the client's stack drop our
 * reply unread: the client then sees a broken connection instead of its 413. So the
 * socket outlives evhtp's descriptor (a duplicate), is half-closed for writing (our
 * reply, already in the kernel, goes out with a FIN after it), and is read to the end. */
static void
linger_start(struct http_server *srv, evutil_socket_t fd)
{
	struct lingering *l;
	struct timeval tv = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
	int dupfd;

	if (srv->nlingers >= LINGER_MAX || (dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return;
	shutdown(dupfd, SHUT_WR);
	l = xcalloc(1, sizeof *l);
	l->srv = srv;
	l->fd = dupfd;
	l->until_ms = now_ms() + LINGER_MS;
	l->ev = event_new(srv->base, dupfd, EV_READ | EV_PERSIST, on_linger, l);
	TAILQ_INSERT_TAIL(&srv->lingers, l, entry);
	srv->nlingers++;
	event_add(l->ev, &tv);
}

/* Connection-level fini: answer a parser error, forget the connection. */
static evhtp_res
on_connection_fini(evhtp_connection_t *conn, void *arg)
{
	struct http_conn *hc = arg;
	struct http_server *srv = hc->srv;

	parser_reply(hc, conn);
	if (hc->linger && conn->bev != NULL && bufferevent_getfd(conn->bev) >= 0)
		linger_start(srv, bufferevent_getfd(conn->bev));
	if (hc->req != NULL)
		hc->req->hc = NULL; /* its own fini runs next, when the connection is gone */
	TAILQ_REMOVE(&srv->conns, hc, entry);
	srv->nconns--;
	free(hc);
	if (srv->at_conn_limit && srv->nconns < (size_t)srv->opts.max_connections) {
		log_info("below the connection limit again (%llu connection(s) were refused)",
		    (unsigned long long)srv->conns_refused);
		srv->at_conn_limit = false;
		srv->conns_refused = 0;
	}
	return EVHTP_RES_OK;
}

/* Each new connection gets our header hooks (request-level hooks override connection
 * ones, research B.1.3) and is tracked so idle ones can be closed at shutdown. Past
 * opts.max_connections a new connection is closed at once: each one costs a file
 * descriptor (two while it sends or spools a file), and running out of them would stop
 * every request, not only the newest. */
static evhtp_res
on_accept(evhtp_connection_t *conn, void *arg)
{
	struct http_server *srv = arg;
	struct http_conn *hc;

	if (srv->accept_paused) {
		log_info("accepting connections again after %llu ms (%llu failed accept(s))",
		    (unsigned long long)(now_ms() - srv->accept_paused_ms),
		    (unsigned long long)srv->accept_failures);
		srv->accept_paused = false;
		srv->accept_failures = 0;
	}
	if (srv->opts.max_connections > 0 && srv->nconns >= (size_t)srv->opts.max_connections) {
		if (!srv->at_conn_limit)
			log_warn("%zu connections open, the limit: closing new ones until some end",
			    srv->nconns);
		srv->at_conn_limit = true;
		srv->conns_refused++;
		return EVHTP_RES_ERROR; /* evhtp frees the connection, closing its socket */
	}
	hc = xcalloc(1, sizeof *hc);
	hc->conn = conn;
	hc->srv = srv;
	hc->idle_ms = hc->progress_ms = now_ms();
	TAILQ_INSERT_TAIL(&srv->conns, hc, entry);
	srv->nconns++;
	evhtp_connection_set_hook(conn, evhtp_hook_on_header, (evhtp_hook)on_header, hc);
	evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, hc);
	evhtp_connection_set_hook(
	    conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_connection_fini, hc);
	return EVHTP_RES_OK;
}

/* accept() failed for a reason libevent does not retry by itself (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM...). Without this callback libevent logs a warning and the still
 * readable listener fires again at once: 925,519 log lines in 3 s at 100% CPU. The
 * listener rests instead and a timer wakes it; the episode is logged once, on entry
 * here and on the first accept that works again (on_accept). */
static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	/* libevent passes the listener's own argument: evhtp's context, whose user
	 * argument is the server (http_server_new). */
	evhtp_t *htp = arg;
	struct http_server *srv = htp->arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

	if (!srv->accept_paused) {
		log_warn("accept: %s; not accepting connections for now (retrying every %d ms)",
		    strerror(err), ACCEPT_RETRY_MS);
		srv->accept_paused = true;
		srv->accept_paused_ms = now_ms();
	}
	srv->accept_failures++;
	evconnlistener_disable(l);
	evtimer_add(srv->accept_timer, &tv);
}

/* The listener's rest is over: accept again (unless it was closed meanwhile). */
static void
on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;

	if (srv->htp->server != NULL && !srv->draining)
		evconnlistener_enable(srv->htp->server);
}

/* --- deadlines ------------------------------------------------------------------- */

/* Reply bytes the client has not taken yet: what is queued in the connection's output
 * buffer plus what the kernel holds unacknowledged (SIOCOUTQ). It falls only when the
 * client reads, so it tells a slow reader (it falls, however slowly) from one that
 * stopped (it does not). */
static uint64_t
unacked(evhtp_connection_t *conn)
{
	struct evbuffer *out = conn->bev != NULL ? bufferevent_get_output(conn->bev) : NULL;
	uint64_t n = out != NULL ? evbuffer_get_length(out) : 0;
	int q = 0;

	if (conn->bev != NULL && ioctl(bufferevent_getfd(conn->bev), SIOCOUTQ, &q) == 0 && q > 0)
		n += (uint64_t)q;
	return n;
}

/* Closes a connection past one of its deadlines (evhtp frees the request first, whose
 * finished callback drops any partial upload). */
static void deadline_close(struct http_conn *hc, bool quiet, const char *fmt, ...) BV_PRINTF(3, 4);

static void
deadline_close(struct http_conn *hc, bool quiet, const char *fmt, ...)
{
	char peer[INET6_ADDRSTRLEN] = "", *why;
	const struct sockaddr *sa = hc->conn->saddr;
	va_list ap;

	va_start(ap, fmt);
	why = xvasprintf(fmt, ap);
	va_end(ap);
	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, peer, sizeof peer);
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(
		    AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, peer, sizeof peer);
	if (hc->req != NULL)
		log_info_id(hc->req->logid, "closing the connection from %s: %s", peer, why);
	else if (quiet)
		log_debug("closing the connection from %s: %s", peer, why);
	else
		log_info("closing the connection from %s: %s", peer, why);
	free(why);
	evhtp_connection_free(hc->conn); /* runs on_connection_fini: hc is gone */
}

/* Checks every connection's deadline. libevent's timeouts cannot express them: they
 * restart on every read or write, so a client sending one header byte a second, or a
 * reply the kernel accepts in bursts minutes apart for a slow but live reader, are judged
 * wrong (research B.1.9). Instead, by phase:
 * - no request yet on a new connection, or a request whose header section is being read:
 *   header_timeout_s for the whole section (from the accept, or from the first byte seen
 *   on a kept-alive connection);
 * - idle keep-alive (a request ended, nothing since): keepalive_timeout_s;
 * - a body being read: timeout_s without a body byte;
 * - a reply going out: timeout_s without the client taking a byte of it (unacked);
 * - the request complete and no reply yet (a pool call, a long-poll, an upload waiting
 *   for its slot): none here, the server's own work bounds it.
 * The first byte of a kept-alive connection's next request is noticed one sweep late at
 * worst: the sweep runs every quarter of the shortest timeout, at most every second. */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;
	const struct http_opts *o = &srv->opts;
	struct http_conn *hc, *next;
	uint64_t now = now_ms(), out, last;

	for (hc = TAILQ_FIRST(&srv->conns); hc != NULL; hc = next) {
		struct http_req *r = hc->req;
		evhtp_connection_t *conn = hc->conn;

		next = TAILQ_NEXT(hc, entry);
		if (conn->flags & EVHTP_CONN_FLAG_PAUSED)
			continue; /* the server's turn (research B.1.6) */
		out = unacked(conn);
		if (out != hc->unacked) {
			hc->unacked = out;
			hc->progress_ms = now;
		}
		if (r != NULL) {
			if (r->complete && !r->replied)
				continue;
			last = r->last_in_ms > hc->progress_ms ? r->last_in_ms : hc->progress_ms;
			if (now - last < (uint64_t)o->timeout_s * 1000)
				continue;
			if (r->replied && out > 0)
				deadline_close(hc, false,
				    "the client took none of the reply for %lld s (http_timeout; "
				    "%llu bytes left)",
				    (long long)o->timeout_s, (unsigned long long)out);
			else
				deadline_close(hc, false,
				    "no body byte for %lld s (http_timeout; %llu bytes received)",
				    (long long)o->timeout_s, (unsigned long long)r->body_bytes);
		} else if (conn->request != NULL) {
			/* evhtp makes its request at a message's first byte. */
			if (hc->headers_ms == 0)
				hc->headers_ms = hc->served ? now : hc->idle_ms;
			if (now - hc->headers_ms >= (uint64_t)o->header_timeout_s * 1000)
				deadline_close(hc, false,
				    "the header section took more than %lld s (http_header_timeout)",
				    (long long)o->header_timeout_s);
		} else if (out > 0) {
			/* The tail of the last reply is still in the kernel. */
			if (now - hc->progress_ms >= (uint64_t)o->timeout_s * 1000)
				deadline_close(hc, false,
				    "the client took none of the reply for %lld s (http_timeout; "
				    "%llu bytes left)",
				    (long long)o->timeout_s, (unsigned long long)out);
		} else if (hc->served) {
			if (now - hc->idle_ms >= (uint64_t)o->keepalive_timeout_s * 1000)
				deadline_close(hc, true, "idle for %lld s (http_keepalive_timeout)",
				    (long long)o->keepalive_timeout_s);
		} else if (now - hc->idle_ms >= (uint64_t)o->header_timeout_s * 1000) {
			deadline_close(hc, false, "no request within %lld s (http_header_timeout)",
			    (long long)o->header_timeout_s);
		}
	}
}

/* --- server ---------------------------------------------------------------------- */

/* Creates the evhtp context with our limits and timeouts. */
struct http_server *
http_server_new(struct event_base *base, const struct http_opts *opts,
    const struct http_callbacks *cb, void *arg)
{
	struct http_server *s = xcalloc(1, sizeof *s);
	struct timeval tv;
	int64_t shortest;

	s->base = base;
	s->opts = *opts;
	s->cb = *cb;
	s->arg = arg;
	TAILQ_INIT(&s->conns);
	TAILQ_INIT(&s->lingers);
	s->htp = evhtp_new(base, s);
	if (s->htp == NULL)
		abort(); /* only fails on OOM */
	/* No timeouts and unlimited keep-alive are evhtp's defaults (research B.1.9). Its
	 * timeouts stay off: on_sweep keeps the deadlines instead. */
	/* Counted here (send_resp), not by evhtp: see there. */
	evhtp_set_max_keepalive_requests(s->htp, 0);
	/* Safety net only: it cuts the connection without a reply (research B.1.5). */
	evhtp_set_max_body_size(s->htp, (uint64_t)opts->max_body + 1 + BODY_CAP_MARGIN);
	evhtp_set_gencb(s->htp, on_request, NULL);
	evhtp_set_post_accept_cb(s->htp, on_accept, s);
	s->accept_timer = evtimer_new(base, on_accept_retry, s);
	if (s->accept_timer == NULL)
		abort(); /* only fails on OOM */
	shortest = opts->timeout_s;
	if (opts->header_timeout_s < shortest)
		shortest = opts->header_timeout_s;
	if (opts->keepalive_timeout_s < shortest)
		shortest = opts->keepalive_timeout_s;
	shortest = shortest * 1000 / 4;
	shortest = shortest < 100 ? 100 : shortest > 1000 ? 1000 : shortest;
	tv.tv_sec = shortest / 1000;
	tv.tv_usec = (shortest % 1000) * 1000;
	{
		char seed[17];

		random_hex(seed, 8);
		s->id_state = strtoull(seed, NULL, 16);
	}
	s->sweep_timer = event_new(base, -1, EV_PERSIST, on_sweep, s);
	if (s->sweep_timer == NULL)
		abort(); /* only fails on OOM */
	evtimer_add(s->sweep_timer, &tv);
	return s;
}

/* Parses host:port forms. */
bool
http_parse_listen(const char *listen, char **host, int *port)
{
	const char *colon, *hs, *he;
	char *end;
	long p;

	*host = NULL;
	if (listen == NULL || listen[0] == '\0')
		return false;
	if (listen[0] == '[') {
		he = strchr(listen, ']');
		if (he == NULL || he[1] != ':')
			return false;
		hs = listen + 1;
		colon = he + 1;
		if (he == hs)
			return false;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || memchr(listen, ':', colon - listen) != NULL)
			return false;
		hs = listen;
		he = colon;
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535)
		return false;
	*host = xstrndup(hs, he - hs);
	*port = (int)p;
	return true;
}

/* Strict: optional spaces or tabs around 1..20 digits, no sign, no overflow. */
bool
http_parse_content_length(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int digits = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	for (; *s >= '0' && *s <= '9'; s++, digits++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	if (digits == 0 || *s != '\0')
		return false;
	*out = v;
	return true;
}

/* Half of what is left after the reserve: a connection that spools an upload or sends a
 * bundle holds a second descriptor. */
int64_t
http_connection_cap(uint64_t fd_limit, int64_t reserved)
{
	uint64_t cap;

	if (reserved < 0)
		reserved = 0;
	if (fd_limit <= (uint64_t)reserved + 32)
		return 16;
	cap = (fd_limit - (uint64_t)reserved) / 2;
	return cap > HTTP_MAX_CONNECTIONS ? HTTP_MAX_CONNECTIONS : (int64_t)cap;
}

/* Resolves listen ("host:port", names allowed: evhtp_bind_socket only takes numeric IPv4
 * or "ipv6:"-prefixed strings). 0 with *res (freeaddrinfo) or -1. */
static int
resolve_listen(const char *listen, struct addrinfo **res, char **errstr)
{
	struct addrinfo hints;
	char portstr[16];
	char *host = NULL;
	int port, rc;

	if (!http_parse_listen(listen, &host, &port)) {
		*errstr = xasprintf(
		    "listen: cannot parse \"%s\" (expected host:port or [v6]:port)", listen);
		return -1;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof portstr, "%d", port);
	rc = getaddrinfo(host[0] != '\0' ? host : NULL, portstr, &hints, res);
	if (rc != 0) {
		*errstr = xasprintf("listen: cannot resolve \"%s\": %s", host, gai_strerror(rc));
		free(host);
		return -1;
	}
	free(host);
	return 0;
}

/* The address a socket is bound to, "host:port" or "[v6]:port"; fallback when unknown. */
static char *
sock_name(int fd, const char *fallback)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	char hostbuf[INET6_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0)
		return xstrdup(fallback);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &a6->sin6_addr, hostbuf, sizeof hostbuf);
		return xasprintf("[%s]:%d", hostbuf, ntohs(a6->sin6_port));
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

	inet_ntop(AF_INET, &a4->sin_addr, hostbuf, sizeof hostbuf);
	return xasprintf("%s:%d", hostbuf, ntohs(a4->sin_port));
}

/* After the listener exists: its error callback, and the address it got (the port the
 * kernel chose for port 0) in *bound. */
static void
listener_ready(struct http_server *s, const char *listen, char **bound)
{
	evconnlistener_set_error_cb(s->htp->server, on_accept_error);
	*bound = sock_name(evconnlistener_get_fd(s->htp->server), listen);
}

/* Resolves and binds the listen address. */
int
http_server_listen(struct http_server *s, const char *listen, char **bound, char **errstr)
{
	struct addrinfo *res = NULL;

	if (resolve_listen(listen, &res, errstr) != 0)
		return -1;
	if (evhtp_bind_sockaddr(s->htp, res->ai_addr, res->ai_addrlen, 1024) != 0) {
		*errstr = xasprintf("listen: cannot bind %s: %s", listen, strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	listener_ready(s, listen, bound);
	return 0;
}

/* A bound, listening socket for listen, made before the API's processes fork so that
 * they all accept from it (api_processes). 0 with *fd, or -1. */
int
http_listen_socket(const char *addr, int *fd, char **bound, char **errstr)
{
	struct addrinfo *res = NULL;
	int one = 1, s;

	if (resolve_listen(addr, &res, errstr) != 0)
		return -1;
	s = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(s, res->ai_addr, res->ai_addrlen) != 0 || listen(s, 1024) != 0) {
		*errstr = xasprintf("listen: cannot bind %s: %s", addr, strerror(errno));
		if (s >= 0)
			close(s);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	*fd = s;
	*bound = sock_name(s, addr);
	return 0;
}

/* Serves on a listening socket made by http_listen_socket (this process's copy of it). */
int
http_server_accept(struct http_server *s, int fd, const char *listen, char **bound, char **errstr)
{
	if (evhtp_accept_socket(s->htp, fd, 1024) != 0) {
		*errstr = xasprintf("listen: cannot accept on %s: %s", listen, strerror(errno));
		return -1;
	}
	listener_ready(s, listen, bound);
	return 0;
}

/* Unbinds the listener; in-flight requests go on. */
void
http_server_drain(struct http_server *s)
{
	s->draining = true;
	evtimer_del(s->accept_timer);
	if (s->htp->server != NULL)
		evhtp_unbind_socket(s->htp);
}

/* Requests in progress. */
size_t
http_server_inflight(const struct http_server *s)
{
	return s->inflight;
}

/* Frees the server, closing idle connections when asked. */
void
http_server_free(struct http_server *s, bool close_connections)
{
	struct http_conn *hc;

	if (s == NULL)
		return;
	if (close_connections && s->inflight == 0) {
		while ((hc = TAILQ_FIRST(&s->conns)) != NULL) {
			/* Unlinked here rather than by the fini hook, so the loop ends even if
			 * evhtp skipped the hook. */
			TAILQ_REMOVE(&s->conns, hc, entry);
			evhtp_connection_unset_hook(hc->conn, evhtp_hook_on_connection_fini);
			evhtp_connection_free(hc->conn);
			free(hc);
		}
	}
	if (s->htp->server != NULL)
		evhtp_unbind_socket(s->htp);
	evhtp_free(s->htp);
	event_free(s->accept_timer);
	event_free(s->sweep_timer);
	while (!TAILQ_EMPTY(&s->lingers))
		linger_end(TAILQ_FIRST(&s->lingers));
	if (!close_connections || s->inflight != 0) {
		/* Connections outlive the server only when the process is exiting anyway. */
		while ((hc = TAILQ_FIRST(&s->conns)) != NULL) {
			TAILQ_REMOVE(&s->conns, hc, entry);
			evhtp_connection_unset_hook(hc->conn, evhtp_hook_on_connection_fini);
			if (hc->req != NULL)
				hc->req->hc = NULL;
			free(hc);
		}
	}
	free(s);
}

/* --- request accessors ----------------------------------------------------------- */

/* The request id: the client's X-Request-ID when safe to echo, else a random one. */
const char *
http_req_id(const struct http_req *r)
{
	return r->id;
}

/* The method name as the parser saw it ("UNKNOWN" for methods it does not know). */
const char *
http_req_method(const struct http_req *r)
{
	return r->method;
}

/* HEAD gets GET's answer without a body (send_resp drops it). */
bool
http_req_is_head(const struct http_req *r)
{
	return r->req->method == htp_method_HEAD;
}

/* The raw path: percent-escapes are decoded per segment by the router, not here. */
const char *
http_req_path(const struct http_req *r)
{
	return r->path;
}

/* The raw query string, kept out of the access log (signatures may live there). */
const char *
http_req_query(const struct http_req *r)
{
	return r->query;
}

/* Header lookup (case-insensitive in evhtp). */
const char *
http_req_header(const struct http_req *r, const char *name)
{
	return evhtp_header_find(r->req->headers_in, name);
}

/* The peer's address as text ("127.0.0.1", "::1"); "" when unknown. */
void
http_req_peer(const struct http_req *r, char *out, size_t n)
{
	const struct sockaddr *sa = r->req->conn != NULL ? r->req->conn->saddr : NULL;

	out[0] = '\0';
	if (sa == NULL || n == 0)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
	else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		/* An IPv4 peer on a dual-stack socket reads as its IPv4 address. */
		if (IN6_IS_ADDR_V4MAPPED(a6))
			inet_ntop(AF_INET, &a6->s6_addr[12], out, (socklen_t)n);
		else
			inet_ntop(AF_INET6, a6, out, (socklen_t)n);
	}
}

/* Whether a body follows, so the application can pick a body policy or refuse. */
bool
http_req_has_body(const struct http_req *r)
{
	return r->has_body;
}

/* Attaches the application's per-request state (released in the finished callback). */
void
http_req_set_data(struct http_req *r, void *data)
{
	r->data = data;
}

/* The application's per-request state. */
void *
http_req_data(const struct http_req *r)
{
	return r->data;
}

/* Records who called, for the access log once authentication has run. */
void
http_req_set_role(struct http_req *r, const char *role)
{
	r->role = role;
}

/* Chooses the in-memory body policy. */
void
http_req_body_buffer(struct http_req *r, int64_t limit)
{
	r->mode = BODY_BUFFER;
	r->limit = limit;
}

/* Chooses the spool-file body policy. */
void
http_req_body_spool(struct http_req *r, int fd, int64_t limit)
{
	r->mode = BODY_SPOOL;
	r->spool_fd = fd;
	r->limit = limit;
}

/* Chooses the streaming body policy. */
void
http_req_body_sink(struct http_req *r, http_body_sink_fn fn, void *arg, int64_t limit)
{
	r->mode = BODY_SINK;
	r->sink = fn;
	r->sink_arg = arg;
	r->limit = limit;
}

/* Records a refusal answered once the body has been read and dropped. */
void
http_req_refuse_drain(struct http_req *r, struct resp *rs)
{
	http_req_refuse(r, rs);
	r->refuse_drain = true;
}

/* The declared Content-Length: -1 when there is none (no body, or chunked). */
int64_t
http_req_content_length(const struct http_req *r)
{
	if (r->chunked || !r->has_content_length)
		return -1;
	return r->content_length > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)r->content_length;
}

/* Records a refusal, sent by on_headers or on_request. */
void
http_req_refuse(struct http_req *r, struct resp *rs)
{
	resp_clear(&r->refusal);
	r->refusal = *rs;
	resp_init(rs);
	r->refused = true;
}

/* The buffered body; never NULL, so JSON parsing needs no special case. */
const char *
http_req_body(const struct http_req *r, size_t *len)
{
	*len = r->body.len;
	return r->body.data != NULL ? r->body.data : "";
}

/* Body bytes received, whatever the policy (an upload's size, say). */
uint64_t
http_req_body_bytes(const struct http_req *r)
{
	return r->body_bytes;
}

/* Pauses the request (reading stops) until http_req_reply (research B.1.6). */
void
http_req_pause(struct http_req *r)
{
	r->paused = true;
	evhtp_request_pause(r->req);
}

/* Sends the reply, then resumes a paused request: a paused request must always be
 * resumed, or its connection leaks (research B.1.6). */
void
http_req_reply(struct http_req *r, struct resp *rs)
{
	bool paused = r->paused;

	if (r->replied) {
		resp_clear(rs);
		return;
	}
	send_resp(r, rs);
	if (paused) {
		r->paused = false;
		evhtp_request_resume(r->req);
	}
}
