/* httpc.c: JSON over HTTP with libcurl, for workers reporting to the API. One easy handle
 * per struct httpc keeps its connection alive between calls. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/httpc.h"
#include "shared/netguard.h"

struct httpc {
	CURL *curl;
	char *auth_header;
	long timeout_s;
	bool guard; /* httpc_set_guard */
	char refused[160]; /* why the guard refused a connection, for errstr */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

/* curl_global_init is not thread-safe: run it once. */
static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* A client; token NULL sends no Authorization. */
struct httpc *
httpc_new(const char *token, long timeout_s)
{
	struct httpc *hc;

	pthread_once(&curl_once, curl_init_once);
	hc = xcalloc(1, sizeof *hc);
	hc->curl = curl_easy_init();
	if (hc->curl == NULL)
		abort(); /* only fails on OOM */
	if (token != NULL && *token != '\0')
		hc->auth_header = xasprintf("Authorization: Bearer %s", token);
	hc->timeout_s = timeout_s > 0 ? timeout_s : 30;
	return hc;
}

/* Frees. */
void
httpc_free(struct httpc *hc)
{
	if (hc == NULL)
		return;
	curl_easy_cleanup(hc->curl);
	if (hc->auth_header != NULL) {
		explicit_bzero(hc->auth_header, strlen(hc->auth_header));
		free(hc->auth_header);
	}
	free(hc);
}

/* Collects the response body. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	if (b != NULL)
		buf_add(b, data, size * nmemb);
	return size * nmemb;
}

/* A peer's answer body, bounded: a reply past max bytes ends the transfer (a peer, or
 * anyone on its path, cannot make the worker buffer without end). */
struct capped {
	struct buf *b;
	size_t max;
};

static size_t
on_body_capped(char *data, size_t size, size_t nmemb, void *arg)
{
	struct capped *c = arg;
	size_t n = size * nmemb;

	if (c->b == NULL)
		return n;
	if (c->b->len + n > c->max)
		return 0;
	buf_add(c->b, data, n);
	return n;
}

/* One request. */
int
httpc_json(struct httpc *hc, const char *method, const char *url, const char *json_body,
    long *status, struct buf *resp, char **errstr)
{
	return httpc_json_basic(hc, method, url, NULL, json_body, status, resp, errstr);
}

static curl_socket_t guarded_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr);

int
httpc_json_basic(struct httpc *hc, const char *method, const char *url, const char *userpwd,
    const char *json_body, long *status, struct buf *resp, char **errstr)
{
	/* A peer's answer (userpwd) is bounded; the API's own answers are not. */
	struct capped cap = {resp, 16 * 1024 * 1024};
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	CURL *c = hc->curl;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, hc->timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	if (userpwd != NULL) {
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_capped);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &cap);
	} else {
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	}
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (userpwd != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
	} else if (hc->auth_header != NULL) {
		hdrs = curl_slist_append(hdrs, hc->auth_header);
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (json_body != NULL) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	hc->refused[0] = '\0';
	if (hc->guard) {
		/* Notifications to a user's URL: the same guard as downloads. */
		curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, guarded_socket);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, hc);
		curl_easy_setopt(c, CURLOPT_PROXY, "");
	}
	if (resp != NULL)
		buf_reset(resp);
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	if (userpwd != NULL)
		curl_easy_setopt(c, CURLOPT_USERPWD, NULL);
	if (rc != CURLE_OK) {
		/* The URL is ours (api_url), never a secret; the token is not in messages. */
		*errstr = xasprintf("%s %s: %s", method, url,
		    hc->refused[0]  ? hc->refused
			: errbuf[0] ? errbuf
				    : curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	return 0;
}

void
httpc_set_guard(struct httpc *hc, bool on)
{
	hc->guard = on;
}

/* curl's socket opener while guarded: the address curl is about to connect to (after
 * its own resolution, for every hop) is checked, and a socket made only for a public
 * one. */
static curl_socket_t
guarded_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct httpc *hc = arg;
	const char *cls = netguard_class(&addr->addr);

	(void)purpose;
	if (cls != NULL) {
		char text[64] = "?";
		if (addr->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&addr->addr)->sin_addr, text,
			    sizeof text);
		else if (addr->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr->addr)->sin6_addr, text,
			    sizeof text);
		snprintf(hc->refused, sizeof hc->refused, "refused to connect to %s: a %s address",
		    text, cls);
		return CURL_SOCKET_BAD;
	}
	return socket(addr->family, addr->socktype, addr->protocol);
}

struct stream {
	CURL *curl;
	httpc_sink sink;
	httpc_tick tick;
	void *arg;
	int64_t max, got;
	long status; /* known at the first byte */
	bool too_big, sink_stopped, tick_stopped;
};

/* Body bytes: to the sink when the answer is a 200, within the cap. */
static size_t
on_stream(char *data, size_t size, size_t nmemb, void *arg)
{
	struct stream *st = arg;
	size_t len = size * nmemb;

	if (st->status == 0)
		curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &st->status);
	if (st->status != 200)
		return len;
	if (st->got + (int64_t)len > st->max) {
		st->too_big = true;
		return 0;
	}
	st->got += (int64_t)len;
	if (st->sink(st->arg, data, len) != 0) {
		st->sink_stopped = true;
		return 0;
	}
	return len;
}

/* Progress: the caller's tick (a lease, a stop request). */
static int
on_stream_tick(
    void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct stream *st = arg;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	if (st->tick != NULL && !st->tick(st->arg)) {
		st->tick_stopped = true;
		return 1;
	}
	return 0;
}

enum httpc_stream
httpc_get_stream(struct httpc *hc, const char *url, int64_t max_bytes, long stall_s,
    httpc_sink sink, httpc_tick tick, void *arg, long *status, char **errstr)
{
	struct stream st = {.curl = hc->curl,
	    .sink = sink,
	    .tick = tick,
	    .arg = arg,
	    .max = max_bytes > 0 ? max_bytes : INT64_MAX};
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *c = hc->curl;
	CURLcode rc;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_s > 0 ? stall_s : 30L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "bitsvault-worker");
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_stream_tick);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &st);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)st.max);
	if (hc->auth_header != NULL) {
		hdrs = curl_slist_append(hdrs, hc->auth_header);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	}
	hc->refused[0] = '\0';
	if (hc->guard) {
		curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, guarded_socket);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, hc);
		curl_easy_setopt(c, CURLOPT_PROXY, "");
	}
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	if (st.status == 0)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st.status);
	*status = st.status;
	if (st.tick_stopped)
		return HTTPC_TICK_STOPPED;
	if (st.too_big || rc == CURLE_FILESIZE_EXCEEDED)
		return HTTPC_TOO_BIG;
	if (st.sink_stopped)
		return HTTPC_SINK_STOPPED;
	if (rc != CURLE_OK) {
		*errstr = hc->refused[0] ? xasprintf("%s (load_allow_private is off)", hc->refused)
					 : xstrdup(errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return HTTPC_TRANSPORT;
	}
	return HTTPC_DONE;
}

/* A file being sent. */
struct upload {
	int fd;
	uint64_t left;
	int err;
};

/* curl's reader: the next bytes of the file; a short file aborts the transfer. */
static size_t
read_file_part(char *out, size_t size, size_t nmemb, void *arg)
{
	struct upload *u = arg;
	size_t want = size * nmemb;
	ssize_t n;

	if (u->left == 0)
		return 0;
	if (want > u->left)
		want = (size_t)u->left;
	do
		n = read(u->fd, out, want);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		u->err = n < 0 ? errno : EIO;
		return CURL_READFUNC_ABORT;
	}
	u->left -= (uint64_t)n;
	return (size_t)n;
}

int
httpc_post_file(struct httpc *hc, const char *url, const char *userpwd, int fd, uint64_t size,
    long stall_s, long *status, struct buf *resp, char **errstr)
{
	struct upload u = {fd, size, 0};
	struct capped cap = {resp, 64 * 1024};
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *c = hc->curl;
	CURLcode rc;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_file_part);
	curl_easy_setopt(c, CURLOPT_READDATA, &u);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	/* No total timeout for a file of any size: a transfer stalled below 1 byte/s for
	 * stall_s seconds is dropped instead. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_s);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_capped);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &cap);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (userpwd != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
	}
	hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	hc->refused[0] = '\0';
	if (hc->guard) {
		/* Notifications to a user's URL: the same guard as downloads. */
		curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, guarded_socket);
		curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, hc);
		curl_easy_setopt(c, CURLOPT_PROXY, "");
	}
	if (resp != NULL)
		buf_reset(resp);
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	/* The credentials must not stay on the handle for its next, unrelated call. */
	curl_easy_setopt(c, CURLOPT_USERPWD, NULL);
	if (rc != CURLE_OK) {
		*errstr = xasprintf("POST %s: %s", url,
		    u.err != 0      ? strerror(u.err)
			: errbuf[0] ? errbuf
				    : curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	return 0;
}
