/* request_fetch.c: dependency downloads for the "request" job (worker/request.h): one
 * file (an npm tarball from the registry, a generic artifact from its URL) streamed into
 * the store, hashed on the way (npm's SRI integrity: sha512, sha384, sha256 or sha1; or
 * artifacts.lock.yaml's "sha256:<hex>", sha384, sha512) and cut off at max_artifact_size,
 * with retries and backoff for what may go away by itself (transport errors, 5xx, 429).
 * The caller's httpc handle is used for every file of a job, so connections and TLS
 * sessions to the registry are reused.
 * A failed attempt leaves nothing in the store: its writer is aborted. The transfer is
 * shared/httpc.c's streamed GET. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "shared/httpc.h"
#include "shared/log.h"
#include "shared/store.h"
#include "worker/request.h"
#include "worker/worker.h"

/* The first retry's delay; doubled each time up to the cap. */
#define FETCH_BACKOFF_MS 500
#define FETCH_BACKOFF_MAX_MS 8000
/* A transfer slower than 1 byte/s for this long is dropped (and retried). */
#define FETCH_STALL_S 30L

/* The hashes we can check, strongest first: SRI values are "<name>-<base64>" (several
 * may be given), checksums "<name>:<hex>" (one). */
static const struct {
	const char *name;
	const char *evp;
} algos[] = {
    {"sha512", "SHA512"},
    {"sha384", "SHA384"},
    {"sha256", "SHA256"},
    {"sha1", "SHA1"},
};

struct transfer {
	struct job_run *run;
	struct httpc *hc;
	struct store_writer *sw;
	EVP_MD_CTX *md;
	int64_t max;
	bool store_failed, cancelled;
	char *store_err;
};

/* The strongest hash of an integrity we can check: its index in algos and its digest
 * as written (new string; base64 with SRI options after '?' dropped, or lowercase hex
 * when *hex), or -1. */
static int
pick_hash(const char *integrity, char **want, bool *hex)
{
	int best = -1;
	const char *p = integrity;

	*want = NULL;
	*hex = false;
	for (int i = 0; i < (int)BV_NELEM(algos); i++) {
		size_t pl = strlen(algos[i].name);
		if (strncmp(integrity, algos[i].name, pl) == 0 && integrity[pl] == ':' &&
		    integrity[pl + 1] != '\0') {
			*hex = true;
			*want = xstrdup(integrity + pl + 1);
			for (char *c = *want; *c != '\0'; c++)
				*c = (char)(*c >= 'A' && *c <= 'F' ? *c + 32 : *c);
			return i;
		}
	}
	while (p != NULL && *p != '\0') {
		p += strspn(p, " \t\n");
		size_t n = strcspn(p, " \t\n");
		for (int i = 0; i < (int)BV_NELEM(algos); i++) {
			size_t pl = strlen(algos[i].name);
			if (n > pl + 1 && strncmp(p, algos[i].name, pl) == 0 && p[pl] == '-' &&
			    (best < 0 || i < best)) {
				best = i;
				free(*want);
				*want = xstrndup(p + pl + 1, strcspn(p + pl + 1, "? \t\n"));
			}
		}
		p += n;
	}
	return best;
}

/* Whether the worker can check this integrity. */
bool
fetch_integrity_supported(const char *integrity)
{
	char *want = NULL;
	bool hex;
	int i = pick_hash(integrity, &want, &hex);
	free(want);
	return i >= 0;
}

/* The URL without a user name or password, for messages. New string. */
static char *
redact(const char *url)
{
	const char *auth = strstr(url, "://");
	if (auth == NULL)
		return xstrdup(url);
	auth += 3;
	size_t n = strcspn(auth, "/");
	const char *at = memchr(auth, '@', n);
	if (at == NULL)
		return xstrdup(url);
	return xasprintf("%.*s%s", (int)(auth - url), url, at + 1);
}

/* The body of a 200 answer: into the store and the hash. */
static int
on_data(void *arg, const void *data, size_t len)
{
	struct transfer *t = arg;

	EVP_DigestUpdate(t->md, data, len);
	if (store_writer_write(t->sw, data, len, &t->store_err) != 0) {
		t->store_failed = true;
		return -1;
	}
	return 0;
}

/* During the transfer: keeps the job's lease, stops when it is no longer ours. */
static bool
on_tick(void *arg)
{
	struct transfer *t = arg;

	if (worker_stop || !job_keepalive(t->run)) {
		t->cancelled = true;
		return false;
	}
	return true;
}

/* One attempt. FETCH_OK with the digest in md and the writer full; *retry says whether
 * another attempt may help. */
static enum fetch_error
attempt(struct transfer *t, const char *url, const char *what, bool *retry, char **errstr)
{
	long status = 0;
	char *err = NULL;
	enum httpc_stream r =
	    httpc_get_stream(t->hc, url, t->max, FETCH_STALL_S, on_data, on_tick, t, &status, &err);
	char *shown = redact(url);
	enum fetch_error fe = FETCH_OK;

	*retry = false;
	switch (r) {
	case HTTPC_TICK_STOPPED:
		*errstr = xstrdup("cancelled");
		fe = FETCH_CANCELLED;
		break;
	case HTTPC_TOO_BIG:
		*errstr = xasprintf("The %s at %s is larger than max_artifact_size (%lld bytes)",
		    what, shown, (long long)t->max);
		fe = FETCH_TOO_BIG;
		break;
	case HTTPC_SINK_STOPPED:
		*errstr = xasprintf("The store could not take the %s", what);
		fe = FETCH_STORE;
		break;
	case HTTPC_TRANSPORT:
		*errstr = xasprintf("Failed to download the %s from %s: %s", what, shown,
		    err != NULL ? err : "transfer failed");
		*retry = true;
		fe = FETCH_NETWORK;
		break;
	case HTTPC_DONE:
		if (status != 200) {
			*errstr = xasprintf("Failed to download the %s from %s: HTTP %ld%s", what,
			    shown, status, status == 404 ? " (not found)" : "");
			*retry = status >= 500 || status == 429 || status == 408;
			fe = FETCH_NETWORK;
		}
		break;
	}
	free(err);
	free(shown);
	return fe;
}

/* Downloads url into the store. */
enum fetch_error
fetch_to_store(struct job_run *run, struct httpc *hc, const char *url, const char *what,
    const char *integrity, unsigned char sha256[32], int64_t *size, char **computed, char **errstr)
{
	const struct config *cfg = run->w->cfg;
	int64_t attempts = cfg->npm_download_attempts > 0 ? cfg->npm_download_attempts : 1;
	uint64_t delay = FETCH_BACKOFF_MS;
	char *want = NULL;
	bool hex = false;
	int algo = 0;
	enum fetch_error fe = FETCH_NETWORK;
	struct transfer t = {.run = run};

	*errstr = NULL;
	if (integrity != NULL && (algo = pick_hash(integrity, &want, &hex)) < 0) {
		*errstr = xasprintf("The integrity value of the %s uses no hash algorithm this "
				    "server can check (sha512, sha384, sha256, sha1)",
		    what);
		return FETCH_MISMATCH;
	}
	t.max = cfg->max_artifact_size > 0 ? cfg->max_artifact_size : INT64_MAX;
	t.hc = hc;
	t.md = EVP_MD_CTX_new();
	if (t.md == NULL)
		abort(); /* only on OOM */

	for (int64_t i = 0; i < attempts; i++) {
		bool retry = false;
		char *err = NULL;

		if (i > 0) {
			log_info_id(run->log_id, "%s; retrying in %llu ms", *errstr,
			    (unsigned long long)delay);
			worker_sleep(delay);
			delay = delay * 2 > FETCH_BACKOFF_MAX_MS ? FETCH_BACKOFF_MAX_MS : delay * 2;
			if (worker_stop || !job_keepalive(run)) {
				fe = FETCH_CANCELLED;
				break;
			}
		}
		free(*errstr);
		*errstr = NULL;
		t.store_failed = t.cancelled = false;
		free(t.store_err);
		t.store_err = NULL;
		EVP_DigestInit_ex(t.md, EVP_get_digestbyname(algos[algo].evp), NULL);
		if ((t.sw = store_writer_new(run->w->store, &err)) == NULL) {
			log_warn_id(run->log_id, "store: %s", err);
			free(err);
			*errstr = xasprintf("The store could not take the %s", what);
			fe = FETCH_STORE;
			break;
		}
		fe = attempt(&t, url, what, &retry, errstr);
		if (fe != FETCH_OK) {
			if (t.store_err != NULL)
				log_warn_id(run->log_id, "store: %s", t.store_err);
			store_writer_abort(t.sw);
			t.sw = NULL;
			if (retry)
				continue;
			break;
		}
		/* Checked before the bytes get a name in the store. */
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		EVP_DigestFinal_ex(t.md, md, &mdlen);
		char *got;
		if (hex) {
			got = xmalloc(2 * mdlen + 1);
			hex_encode(md, mdlen, got);
		} else {
			got = base64_encode(md, mdlen);
		}
		if (want != NULL && strcmp(got, want) != 0) {
			char *shown = redact(url);
			char sep = hex ? ':' : '-';
			*errstr = xasprintf(
			    "The %s downloaded from %s does not match its %s in the lockfile "
			    "(expected %s%c%s, got %s%c%s)",
			    what, shown, hex ? "checksum" : "integrity", algos[algo].name, sep,
			    want, algos[algo].name, sep, got);
			free(shown);
			free(got);
			store_writer_abort(t.sw);
			t.sw = NULL;
			fe = FETCH_MISMATCH;
			break;
		}
		if (want == NULL && computed != NULL)
			*computed = xasprintf("%s-%s", algos[algo].name, got);
		free(got);
		*size = (int64_t)store_writer_size(t.sw);
		int rc = store_writer_commit(t.sw, sha256, NULL, &err);
		t.sw = NULL;
		if (rc != 0) {
			log_warn_id(run->log_id, "store: %s", err);
			free(err);
			*errstr = xasprintf("The store could not take the %s", what);
			fe = FETCH_STORE;
			break;
		}
		fe = FETCH_OK;
		break;
	}
	if (fe == FETCH_OK) {
		free(*errstr);
		*errstr = NULL;
	} else if (*errstr == NULL) {
		*errstr = xasprintf("The download of the %s was stopped", what);
	}
	free(t.store_err);
	free(want);
	EVP_MD_CTX_free(t.md);
	return fe;
}
