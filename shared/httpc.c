/* httpc.c: JSON over HTTP with libcurl, for workers reporting to the API. One easy handle
 * per struct httpc keeps its connection alive between calls. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "shared/httpc.h"

struct httpc {
	CURL *curl;
	char *auth_header;
	long timeout_s;
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

/* One request. */
int
httpc_json(struct httpc *hc, const char *method, const char *url, const char *json_body,
    long *status, struct buf *resp, char **errstr)
{
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
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (hc->auth_header != NULL)
		hdrs = curl_slist_append(hdrs, hc->auth_header);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (json_body != NULL) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	if (resp != NULL)
		buf_reset(resp);
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		/* The URL is ours (api_url), never a secret; the token is not in messages. */
		*errstr = xasprintf(
		    "%s %s: %s", method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	return 0;
}
