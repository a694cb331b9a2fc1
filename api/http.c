/* http.c: every libevhtp call of the API lives here (STYLE 10). libevhtp 1.2.18 is
 * unmaintained (research B.1.1); each workaround below names the research section or the
 * upstream issue it comes from. Everything runs on the one event-loop thread. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <arpa/inet.h>
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

enum body_mode { BODY_DISCARD, BODY_BUFFER, BODY_SPOOL };

struct http_conn {
	evhtp_connection_t *conn;
	struct http_server *srv;
	TAILQ_ENTRY(http_conn) entry;
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
};

struct http_req {
	struct http_server *srv;
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
	uint64_t body_bytes;

	bool refused;
	struct resp refusal;
	bool paused;
	bool replied;
	int status; /* sent, for the access log */
	uint64_t bytes_out; /* body bytes sent */
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

/* Writes rs to the connection. Files go on the bufferevent's own output buffer, which
 * has EVBUFFER_FLAG_DRAINS_TO_FD, so libevent uses sendfile(2); a file added to
 * req->buffer_out would be mmap'd and copied instead (research B.1.7). */
static void
send_resp(struct http_req *r, struct resp *rs)
{
	evhtp_request_t *req = r->req;
	bool head = r->req->method == htp_method_HEAD;
	bool no_body = head || rs->status == 304 || rs->status == 204;
	char num[32];
	int i;

	if (rs->status == 0)
		resp_error(rs, 500, "internal error: no reply was built");
	add_header(req, "X-Request-ID", r->id);
	for (i = 0; i < rs->nheaders; i++)
		add_header(req, rs->headers[i].name, rs->headers[i].value);
	/* evhtp adds "Content-Type: text/plain" when none is set (research B.1.7). */
	add_header(
	    req, "Content-Type", rs->content_type != NULL ? rs->content_type : "application/json");
	if (r->srv->draining) {
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
		if (!no_body && rs->send_file_body && rs->file_size > 0) {
			struct evbuffer *out = bufferevent_get_output(evhtp_request_get_bev(req));

			/* evbuffer_add_file owns (and closes) the fd from here on. */
			if (evbuffer_add_file(out, rs->fd, 0, (ev_off_t)rs->file_size) == 0) {
				rs->fd = -1;
				r->bytes_out = rs->file_size;
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
			r->bytes_out = rs->body_len;
		}
		evhtp_send_reply(req, rs->status);
	}
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
				if (err == ENOSPC || err == EDQUOT)
					resp_error(&rs, 507,
					    "cannot store the upload: no space left on device");
				else
					resp_error(
					    &rs, 500, "cannot store the upload: %s", strerror(err));
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
 * Authorization header is never logged. */
static evhtp_res
on_request_fini(evhtp_request_t *req, void *arg)
{
	struct http_req *r = arg;
	struct http_server *srv = r->srv;

	log_info_id(r->logid, "%s %s %d %llu bytes %llu ms role=%s%s", r->method, r->path,
	    r->status, (unsigned long long)r->bytes_out,
	    (unsigned long long)(now_ms() - r->start_ms), r->role, r->replied ? "" : " (aborted)");
	if (srv->cb.finished != NULL)
		srv->cb.finished(r, srv->arg);
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

/* All headers are parsed: the request's context is made here, the application routes and
 * authenticates, and the body policy is set before any body byte arrives. The hook is
 * installed on every connection (from the post-accept callback) because requests are
 * routed by our own table through evhtp_set_gencb, which has no per-route hooks. */
static evhtp_res
on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
	struct http_server *srv = arg;
	struct http_req *r = xcalloc(1, sizeof *r);
	const char *rid, *te;
	uint64_t clen;

	r->srv = srv;
	r->req = req;
	r->start_ms = now_ms();
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
		random_hex(r->id, 8);
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
	clen = evhtp_request_content_len(req);
	te = evhtp_header_find(hdrs, "Transfer-Encoding");
	r->chunked = te != NULL && strcasestr(te, "chunked") != NULL;
	r->has_body = clen > 0 || r->chunked;

	req->cbarg = r;
	evhtp_request_set_hook(req, evhtp_hook_on_request_fini, (evhtp_hook)on_request_fini, r);
	srv->inflight++;

	srv->cb.headers(r, srv->arg);

	if (r->refused) {
		/* Small known-length bodies are read and dropped so the connection stays
		 * usable; anything else is answered at once and closed. */
		r->mode = BODY_DISCARD;
		r->limit = srv->opts.discard_limit;
		if (r->has_body && (r->chunked || (int64_t)clen > srv->opts.discard_limit)) {
			r->refused = false;
			send_early(r, &r->refusal);
		}
	} else if (r->has_body && (int64_t)clen > r->limit) {
		send_too_large(r);
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
	if (r->replied)
		return; /* answered early (413, 401, spool failure): the body was drained */
	if (r->refused) {
		send_resp(r, &r->refusal);
		return;
	}
	r->srv->cb.request(r, r->srv->arg);
}

/* Connection-level fini: forget the connection. */
static evhtp_res
on_connection_fini(evhtp_connection_t *conn, void *arg)
{
	struct http_conn *hc = arg;

	TAILQ_REMOVE(&hc->srv->conns, hc, entry);
	free(hc);
	return EVHTP_RES_OK;
}

/* Each new connection gets our headers hook (request-level hooks override connection
 * ones, research B.1.3) and is tracked so idle ones can be closed at shutdown. */
static evhtp_res
on_accept(evhtp_connection_t *conn, void *arg)
{
	struct http_server *srv = arg;
	struct http_conn *hc = xcalloc(1, sizeof *hc);

	hc->conn = conn;
	hc->srv = srv;
	TAILQ_INSERT_TAIL(&srv->conns, hc, entry);
	evhtp_connection_set_hook(conn, evhtp_hook_on_headers, (evhtp_hook)on_headers, srv);
	evhtp_connection_set_hook(
	    conn, evhtp_hook_on_connection_fini, (evhtp_hook)on_connection_fini, hc);
	return EVHTP_RES_OK;
}

/* --- server ---------------------------------------------------------------------- */

/* Creates the evhtp context with our limits and timeouts. */
struct http_server *
http_server_new(struct event_base *base, const struct http_opts *opts,
    const struct http_callbacks *cb, void *arg)
{
	struct http_server *s = xcalloc(1, sizeof *s);
	struct timeval tv;

	s->base = base;
	s->opts = *opts;
	s->cb = *cb;
	s->arg = arg;
	TAILQ_INIT(&s->conns);
	s->htp = evhtp_new(base, NULL);
	if (s->htp == NULL)
		abort(); /* only fails on OOM */
	/* No timeouts and unlimited keep-alive are evhtp's defaults (research B.1.9). */
	tv.tv_sec = opts->timeout_s;
	tv.tv_usec = 0;
	evhtp_set_timeouts(s->htp, &tv, &tv);
	evhtp_set_max_keepalive_requests(s->htp, (uint64_t)opts->max_keepalive_requests);
	/* Safety net only: it cuts the connection without a reply (research B.1.5). */
	evhtp_set_max_body_size(s->htp, (uint64_t)opts->max_body + 1 + BODY_CAP_MARGIN);
	evhtp_set_gencb(s->htp, on_request, NULL);
	evhtp_set_post_accept_cb(s->htp, on_accept, s);
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

/* Resolves and binds the listen address. evhtp_bind_socket only takes numeric IPv4 (or
 * "ipv6:"-prefixed) strings, so names are resolved here and bound with
 * evhtp_bind_sockaddr. */
int
http_server_listen(struct http_server *s, const char *listen, char **bound, char **errstr)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	char portstr[16], hostbuf[INET6_ADDRSTRLEN];
	char *host = NULL;
	int port, rc, fd;

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
	rc = getaddrinfo(host[0] != '\0' ? host : NULL, portstr, &hints, &res);
	if (rc != 0) {
		*errstr = xasprintf("listen: cannot resolve \"%s\": %s", host, gai_strerror(rc));
		free(host);
		return -1;
	}
	free(host);
	if (evhtp_bind_sockaddr(s->htp, res->ai_addr, res->ai_addrlen, 1024) != 0) {
		*errstr = xasprintf("listen: cannot bind %s: %s", listen, strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	fd = evconnlistener_get_fd(s->htp->server);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
		*bound = xstrdup(listen);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &a6->sin6_addr, hostbuf, sizeof hostbuf);
		*bound = xasprintf("[%s]:%d", hostbuf, ntohs(a6->sin6_port));
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &a4->sin_addr, hostbuf, sizeof hostbuf);
		*bound = xasprintf("%s:%d", hostbuf, ntohs(a4->sin_port));
	}
	return 0;
}

/* Unbinds the listener; in-flight requests go on. */
void
http_server_drain(struct http_server *s)
{
	s->draining = true;
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
	if (!close_connections || s->inflight != 0) {
		/* Connections outlive the server only when the process is exiting anyway. */
		while ((hc = TAILQ_FIRST(&s->conns)) != NULL) {
			TAILQ_REMOVE(&s->conns, hc, entry);
			evhtp_connection_unset_hook(hc->conn, evhtp_hook_on_connection_fini);
			free(hc);
		}
	}
	free(s);
}

/* --- request accessors ----------------------------------------------------------- */

const char *
http_req_id(const struct http_req *r)
{
	return r->id;
}

const char *
http_req_method(const struct http_req *r)
{
	return r->method;
}

bool
http_req_is_head(const struct http_req *r)
{
	return r->req->method == htp_method_HEAD;
}

const char *
http_req_path(const struct http_req *r)
{
	return r->path;
}

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

bool
http_req_has_body(const struct http_req *r)
{
	return r->has_body;
}

void
http_req_set_data(struct http_req *r, void *data)
{
	r->data = data;
}

void *
http_req_data(const struct http_req *r)
{
	return r->data;
}

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

/* Records a refusal, sent by on_headers or on_request. */
void
http_req_refuse(struct http_req *r, struct resp *rs)
{
	resp_clear(&r->refusal);
	r->refusal = *rs;
	resp_init(rs);
	r->refused = true;
}

const char *
http_req_body(const struct http_req *r, size_t *len)
{
	*len = r->body.len;
	return r->body.data != NULL ? r->body.data : "";
}

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
