/* routes_vault.c: the Vault face: ask for a bundle to be cooked, poll its status, download
 * it. Answers and error texts follow Software Heritage's shipped API (research
 * swh-vault.md §1) where clients parse them ("... was never requested.", "... not found."). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/jobjson.h"
#include "api/routes.h"
#include "shared/jobstore.h"
#include "shared/kv.h"
#include "shared/log.h"
#include "shared/objects.h"

/* The bundle formats (DESIGN §5) and the object kinds each applies to. Each (kind, id,
 * format) is its own job. SWH's bundle types map onto them: flat is a directory's
 * tar.gz, gitfast and git-bare are the formats of the same names. */
#define K_DIR (1u << SWHID_DIR)
#define K_REV (1u << SWHID_REV)
#define K_SNP (1u << SWHID_SNP)
struct vault_format {
	const char *name; /* ?format= value and the jobs' "format" */
	const char *ctype; /* Content-Type of the bundle */
	const char *ext; /* file name extension */
	unsigned int kinds; /* K_* it applies to */
};
static const struct vault_format formats[] = {
    {"tar.gz", "application/gzip", "tar.gz", K_DIR | K_REV},
    {"zip", "application/zip", "zip", K_DIR | K_REV},
    {"gitfast", "application/gzip", "gitfast.gz", K_REV},
    {"git-bare", "application/x-tar", "git.tar", K_DIR | K_REV | K_SNP},
};
#define FMT_TARGZ (&formats[0])
#define FMT_GITFAST (&formats[2])
#define FMT_GITBARE (&formats[3])

/* The format named s, or NULL. */
static const struct vault_format *
known_format(const char *s)
{
	for (size_t i = 0; i < BV_NELEM(formats); i++)
		if (strcmp(s, formats[i].name) == 0)
			return &formats[i];
	return NULL;
}

/* A kind's format when none is asked for: the tree for directories and revisions, the
 * only bundle a snapshot has for snapshots. */
static const struct vault_format *
default_format(enum swhid_kind kind)
{
	return kind == SWHID_SNP ? FMT_GITBARE : FMT_TARGZ;
}

/* "tar.gz, zip": the formats of a kind, for error messages. */
static void
kind_formats(enum swhid_kind kind, char *out, size_t n)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < BV_NELEM(formats); i++)
		if (formats[i].kinds & (1u << kind))
			len += (size_t)snprintf(out + len, len < n ? n - len : 0, "%s%s",
			    len ? ", " : "", formats[i].name);
}

/* The call's bundle format as routes_vault_parse_target or the SWH prepare step set it. */
const char *
routes_vault_format(struct call *c)
{
	return c->format != NULL ? c->format->name : default_format(c->obj_kind)->name;
}

/* The call's format, never NULL. */
static const struct vault_format *
call_fmt(struct call *c)
{
	return c->format != NULL ? c->format : default_format(c->obj_kind);
}

/* Checks that fmt applies to the call's object kind; 0, or -1 with a 400 naming the
 * formats that do. */
static int
check_format(struct call *c, const struct vault_format *fmt)
{
	char list[128];

	if (fmt->kinds & (1u << c->obj_kind)) {
		c->format = fmt;
		return 0;
	}
	kind_formats(c->obj_kind, list, sizeof list);
	resp_error(&c->resp, 400, "a %s cannot be cooked as %s; formats for a %s: %s",
	    c->obj_kind_name, fmt->name, c->obj_kind_name, list);
	return -1;
}

/* Validates kind, id and ?format=. Unknown kinds are 404: /vault/foo is not a resource. */
int
routes_vault_parse_target(struct call *c)
{
	const char *kind = router_param(&c->m, "kind");
	const char *id = router_param(&c->m, "id");
	const struct vault_format *fmt;
	char *format = NULL;

	if (strcmp(kind, "directory") != 0 && strcmp(kind, "revision") != 0 &&
	    strcmp(kind, "snapshot") != 0) {
		resp_error(&c->resp, 404,
		    "not found: unknown object kind; kinds: directory, revision, snapshot");
		return -1;
	}
	if (!call_parse_object(c, kind, id))
		return -1;
	if (!call_query_param(c, "format", &format))
		return -1;
	if (format == NULL) {
		c->format = default_format(c->obj_kind);
		return 0;
	}
	fmt = known_format(format);
	if (fmt == NULL) {
		resp_error(&c->resp, 400,
		    "unknown format '%s'; formats: tar.gz, zip, gitfast, git-bare",
		    call_echo(format));
		free(format);
		return -1;
	}
	free(format);
	return check_format(c, fmt);
}

/* "cook:<kind>:<hex>:<format>": one live job per bundle (the jobs_dedup_live index). */
char *
routes_vault_dedup_key(struct call *c)
{
	return xasprintf("cook:%s:%s:%s", c->obj_kind_name, c->obj_hex, routes_vault_format(c));
}

/* Where the bundle is fetched, from the request's base URL: SWH's raw path for a call on
 * SWH's paths, ours otherwise (with ?format= for a format other than the default). */
static char *
fetch_url(struct call *c)
{
	const struct vault_format *fmt = call_fmt(c);
	bool dflt = fmt == default_format(c->obj_kind);
	const char *swh_type = fmt == FMT_TARGZ ? "flat" : fmt->name;

	return c->swh_face ? xasprintf("%s/api/1/vault/%s/%s/raw/", c->base_url, swh_type, c->swhid)
			   : xasprintf("%s/vault/%s/%s%s%s", c->base_url, c->obj_kind_name,
				 c->obj_hex, dflt ? "" : "?format=", dflt ? "" : fmt->name);
}

/* s as a JSON string into out (at least 6 * strlen(s) + 3 bytes): quotes, backslashes and
 * control characters escaped, other bytes as they are (as jansson writes them). */
static size_t
json_quote(const char *s, char *out)
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;

	*o++ = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			*o++ = '\\';
			*o++ = (char)*p;
		} else if (*p < 0x20) {
			memcpy(o, "\\u00", 4);
			o[4] = hex[*p >> 4];
			o[5] = hex[*p & 15];
			o += 6;
		} else {
			*o++ = (char)*p;
		}
	}
	*o++ = '"';
	return (size_t)(o - out);
}

/* A status answer: the document with the call's fetch URL in its hole (the only part
 * that depends on how the client called; see reply_status). */
static void
render_status(struct call *c, struct resp *rs, int status, const char *doc, size_t len, size_t hole)
{
	char *fetch = fetch_url(c);
	size_t flen = strlen(fetch), qlen;

	free(rs->body);
	rs->body = xmalloc(len + 6 * flen + 3);
	memcpy(rs->body, doc, hole);
	qlen = json_quote(fetch, rs->body + hole);
	memcpy(rs->body + hole + qlen, doc + hole, len - hole);
	rs->body_len = len + qlen;
	rs->body[rs->body_len] = '\0';
	rs->status = status;
	rs->content_type = "application/json";
	free(fetch);
}

/* Stands for the fetch URL in a document: the one string value a hole is cut at. */
#define FETCH_HOLE "\"fetch_url\":\"@fetch_url@\""

/* The status document. It is made once with a stand-in for fetch_url and cut there; a
 * done job's document (it changes only when the job expires) is handed to the status
 * cache through c->cache_text, for call_done to keep (api/statuscache.h). */
static void
reply_status(struct call *c, int status, const struct job *job)
{
	json_t *o = jobjson_vault_status(
	    job, c->swhid, c->obj_kind_name, c->obj_hex, call_fmt(c)->name, "@fetch_url@");
	char *text = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
	/* A string's own quotes are escaped: '"fetch_url":"' can only be the member. */
	char *at = text != NULL ? strstr(text, FETCH_HOLE) : NULL;
	size_t hole, len;

	json_decref(o);
	if (at == NULL)
		abort(); /* jobjson_vault_status always writes fetch_url: a broken invariant */
	hole = (size_t)(at - text) + strlen("\"fetch_url\":");
	len = strlen(text);
	memmove(text + hole, text + hole + strlen("\"@fetch_url@\""),
	    len - hole - strlen("\"@fetch_url@\"") + 1);
	len -= strlen("\"@fetch_url@\"");
	render_status(c, &c->resp, status, text, len, hole);
	if (status == 200 && c->cache_key != NULL && !c->cache_drop && job->state == JOB_DONE) {
		free(c->cache_text);
		c->cache_text = text;
		c->cache_doc = (struct statuscache_doc){text, len, hole, job->id};
	} else {
		free(text);
	}
}

/* The longest notify_url accepted. */
#define NOTIFY_URL_MAX 2048

/* Checks a notify_url: a string of printable ASCII, http or https, a host, no userinfo
 * (credentials do not belong in a stored URL). NULL when fine, else the reason. */
static const char *
notify_url_problem(const json_t *v)
{
	const char *url, *auth, *end;
	size_t len;

	if (!json_is_string(v))
		return "notify_url must be a string";
	url = json_string_value(v);
	len = json_string_length(v);
	if (len > NOTIFY_URL_MAX)
		return "notify_url is too long: at most 2048 bytes";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return "notify_url must not contain spaces, control characters or non-ASCII "
			       "bytes (percent-encode them)";
	if (strncasecmp(url, "http://", 7) == 0)
		auth = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		auth = url + 8;
	else
		return "notify_url must be an http:// or https:// URL";
	end = auth + strcspn(auth, "/?#");
	if (end == auth)
		return "notify_url has no host";
	if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
		return "notify_url must not carry a user name or password (user:pass@)";
	return NULL;
}

/* POST /vault/{kind}/{id}: a directory, revision or snapshot in a format that applies to
 * it (routes_vault_parse_target). The body may be empty or a JSON object; notify_url is checked here (before any job changes), other keys are
 * ignored. */
int
routes_vault_cook_prepare(struct call *c)
{
	json_t *notify;
	const char *why;

	if (routes_vault_parse_target(c) != 0)
		return -1;
	if (c->json != NULL && !json_is_object(c->json)) {
		resp_error(&c->resp, 400, "the body must be empty or a JSON object");
		return -1;
	}
	notify = json_object_get(c->json, "notify_url");
	if (notify != NULL && (why = notify_url_problem(notify)) != NULL) {
		resp_error(&c->resp, 400, "%s", why);
		return -1;
	}
	return 0;
}

/* Registers the body's notify_url (checked by the prepare step) for the job; sent by a
 * worker once the job is final, at once when it already is. 0, or -1 with a 503. */
static int
add_notify(struct call *c, struct db *db, const struct job *job)
{
	json_t *notify = json_object_get(c->json, "notify_url");
	char *err = NULL;

	if (!json_is_string(notify))
		return 0;
	if (jobstore_notify_add(db, job->id, json_string_value(notify), &err) != 0) {
		call_db_failed(c, "register notify_url", err);
		free(err);
		return -1;
	}
	return 0;
}

/* True when a done job's bundle can be served: its row names a blob the store holds. */
static bool
bundle_present(struct call *c, const struct job *job)
{
	unsigned char sha[32];

	return job->has_bundle && hex_decode(job->bundle_sha256, sha, sizeof sha) &&
	    store_exists(c->store, sha);
}

/* A done job whose blob is gone (a lost disk, a GC gone wrong) would answer every
 * download with an error and every POST with "done" forever: it is expired so the next
 * jobstore_create makes a new job and the bundle is cooked again. 0, or -1 with a 503 in
 * c->resp. */
static int
expire_lost_bundle(struct call *c, struct db *db, const struct job *job)
{
	struct job *expired = NULL;
	char *err = NULL;
	int status = 500;

	log_warn_id(c->logid,
	    "job %lld: done but bundle %s is missing from the store; expiring it and cooking again",
	    (long long)job->id, job->has_bundle ? job->bundle_sha256 : "(no bundle row)");
	if (jobstore_patch(db, job->id, JOB_EXPIRED, NULL, NULL, NULL, NULL,
		(int)c->cfg->job_max_attempts, c->cfg->job_lease, &expired, &status, &err) != 0) {
		call_db_failed(c, "expire job", err);
		free(err);
		return -1;
	}
	job_free(expired);
	return 0;
}

static void touch_bundle(struct call *c, struct db *db, const struct job *job);

/* Creates (or finds) the cook job, then enqueues it: Postgres first, Redis second. A
 * job whose enqueue failed is still committed, and the workers' reconciler re-enqueues
 * what Redis does not know, so the client gets its answer either way. */
void
routes_vault_cook_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct kv *kv;
	struct job *job = NULL;
	json_t *params;
	char *key, *err = NULL;
	bool created = false;
	int rc;

	if ((db = call_db(c, t)) == NULL)
		return;
	rc = objects_exists(db, c->obj_kind, c->obj_id, &err);
	if (rc < 0) {
		call_db_failed(c, "object lookup", err);
		free(err);
		return;
	}
	if (rc == 0) {
		resp_error(&c->resp, 404, "%s not found.", c->swhid);
		return;
	}
	params = json_pack("{s:s,s:s,s:s}", "object_kind", c->obj_kind_name, "object_id",
	    c->obj_hex, "format", routes_vault_format(c));
	key = routes_vault_dedup_key(c);
	/* A new job may take the key of a failed one: this API's cached status of the key
	 * goes when the answer does (call_done), before the client can poll again; other
	 * APIs drop it on the job's notification. */
	free(c->cache_key);
	c->cache_key = xstrdup(key);
	c->cache_drop = true;
	rc = jobstore_create(db, "cook", key, params, &job, &created, &err);
	if (rc == 0 && !created && job->state == JOB_DONE && !bundle_present(c, job)) {
		if (expire_lost_bundle(c, db, job) != 0) {
			job_free(job);
			json_decref(params);
			free(key);
			return;
		}
		job_free(job);
		job = NULL;
		rc = jobstore_create(db, "cook", key, params, &job, &created, &err);
	}
	json_decref(params);
	free(key);
	if (rc != 0) {
		call_db_failed(c, "create job", err);
		free(err);
		return;
	}
	if (created) {
		log_info_id(c->logid, "job %lld: cook %s", (long long)job->id, c->swhid);
		if ((kv = call_kv(c, t)) != NULL && kv_enqueue(kv, job->id, &err) != 0) {
			log_warn_id(c->logid, "job %lld not enqueued (the reconciler will): %s",
			    (long long)job->id, err);
			free(err);
		}
	}
	/* A client told "done" will download soon: that counts as a use, so the bundle does
	 * not expire (by bundle_ttl since its cook, or by the quota) right after the answer. */
	if (!created && job->state == JOB_DONE)
		touch_bundle(c, db, job);
	if (add_notify(c, db, job) == 0)
		reply_status(c, created ? 201 : 200, job);
	job_free(job);
}

/* GET /vault/{kind}/{id}/status and GET|HEAD /vault/{kind}/{id}. */
int
routes_vault_read_prepare(struct call *c)
{
	return routes_vault_parse_target(c);
}

/* The newest job for the bundle; 0 with *job NULL when none (or only an expired one). */
static int
find_job(struct call *c, struct db *db, struct job **job)
{
	char *key = routes_vault_dedup_key(c), *err = NULL;
	int rc = jobstore_find(db, key, job, &err);

	free(key);
	if (rc < 0) {
		call_db_failed(c, "find job", err);
		free(err);
		return -1;
	}
	if (rc == 0 || (*job)->state == JOB_EXPIRED) {
		job_free(*job);
		*job = NULL;
	}
	return 0;
}

/* GET /vault/{kind}/{id}/status. */
void
routes_vault_status_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct job *job = NULL;

	if ((db = call_db(c, t)) == NULL || find_job(c, db, &job) != 0)
		return;
	if (job == NULL) {
		resp_error(&c->resp, 404, "Cooking of %s was never requested.", c->swhid);
		return;
	}
	reply_status(c, 200, job);
	job_free(job);
}

/* GET /vault/{kind}/{id}/status and SWH's GET /api/1/vault/{type}/{swhid}/ from the
 * status cache: keyed like the jobs (one document per bundle), rendered with this call's
 * fetch URL. */
bool
routes_vault_status_cached(struct call *c, struct statuscache *sc, struct resp *out)
{
	struct statuscache_doc d;

	if (c->cache_key == NULL)
		c->cache_key = routes_vault_dedup_key(c);
	if (!statuscache_get(sc, c->cache_key, &d))
		return false;
	render_status(c, out, 200, d.doc, d.len, d.hole);
	return true;
}

/* True when an If-None-Match value names etag (or is "*"); weak tags compare too, as
 * RFC 9110 asks for If-None-Match. */
static bool
etag_matches(const char *header, const char *etag)
{
	const char *p = header;
	size_t elen = strlen(etag);

	while (*p != '\0') {
		const char *end;
		size_t len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		end = strchr(p, ',');
		len = end != NULL ? (size_t)(end - p) : strlen(p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 1 && p[0] == '*')
			return true;
		if (len > 2 && strncmp(p, "W/", 2) == 0) {
			p += 2;
			len -= 2;
		}
		if (len == elen && strncmp(p, etag, len) == 0)
			return true;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return false;
}

/* Records a download for expiry by last use; a HEAD is not a download. */
static void
touch_bundle(struct call *c, struct db *db, const struct job *job)
{
	char *err = NULL, *safe;

	if (c->head || jobstore_touch_bundle(db, job->id, &err) == 0)
		return;
	safe = call_redact(c->cfg, err);
	log_warn_id(c->logid, "job %lld: cannot record the download: %s", (long long)job->id, safe);
	free(safe);
	free(err);
}

/* GET|HEAD /vault/{kind}/{id}: the bundle. A backend that serves blobs itself (S3) gives
 * a URL to redirect to; the local one an fd, sent with sendfile by api/http.c. The bundle
 * is immutable for its ETag (the sha256), but it can expire, so it is served with
 * "Cache-Control: no-cache": caches keep it and revalidate, which costs a 304. */
void
routes_vault_fetch_work(struct call *c, struct pool_thread *t)
{
	struct db *db;
	struct job *job = NULL;
	unsigned char sha[32];
	char *err = NULL, *digest = NULL, *filename, *url, etag[80];
	uint64_t size = 0;
	int fd;
	const struct vault_format *fmt = call_fmt(c);
	const char *ctype = fmt->ctype;

	if ((db = call_db(c, t)) == NULL || find_job(c, db, &job) != 0)
		return;
	if (job == NULL || job->state != JOB_DONE || !job->has_bundle ||
	    !hex_decode(job->bundle_sha256, sha, sizeof sha)) {
		if (job != NULL && job->state == JOB_DONE)
			log_error_id(c->logid, "job %lld is done but has no valid bundle row",
			    (long long)job->id);
		resp_error(&c->resp, 404, "Cooked archive for %s not found.", c->swhid);
		job_free(job);
		return;
	}
	snprintf(etag, sizeof etag, "\"%s\"", job->bundle_sha256);
	digest = base64_encode(sha, sizeof sha);
	resp_header(&c->resp, "ETag", etag);
	resp_headerf(&c->resp, "Digest", "sha-256=%s", digest);
	resp_header(&c->resp, "Cache-Control", "no-cache");
	free(digest);

	if (c->if_none_match != NULL && etag_matches(c->if_none_match, etag)) {
		c->resp.status = 304;
		c->resp.content_type = ctype;
		resp_headerf(&c->resp, "Content-Length", "%lld", (long long)job->bundle_size);
		job_free(job);
		return;
	}
	filename = xasprintf("swh_1_%s_%s.%s", swhid_kind_name(c->obj_kind), c->obj_hex, fmt->ext);
	url = store_blob_url(c->store, sha, filename, &err);
	if (url != NULL || err != NULL) {
		if (url != NULL) {
			json_t *o = json_pack("{s:s}", "location", url);

			/* The ETag and Digest already set describe what the URL serves. */
			resp_header(&c->resp, "Location", url);
			resp_json(&c->resp, 302, o);
			json_decref(o);
			touch_bundle(c, db, job);
		} else {
			log_error_id(c->logid, "job %lld: bundle %s: no download URL: %s",
			    (long long)job->id, job->bundle_sha256, err);
			resp_clear(&c->resp);
			resp_error(&c->resp, 500, "internal error while reading the bundle of %s",
			    c->swhid);
		}
		free(url);
		free(err);
		free(filename);
		job_free(job);
		return;
	}
	fd = store_open_blob(c->store, sha, &size, &err);
	if (fd < 0 && errno == ENOENT) {
		/* Expiry may have taken the bundle since find_job read it: then the job is
		 * no longer done, and the answer is the one a later request would get. */
		struct job *now = NULL;

		resp_clear(&c->resp);
		if (find_job(c, db, &now) != 0) {
			free(err);
			free(filename);
			job_free(job);
			return;
		}
		if (now == NULL || now->id != job->id || now->state != JOB_DONE) {
			log_info_id(c->logid, "job %lld: bundle %s expired while being fetched",
			    (long long)job->id, job->bundle_sha256);
			free(err);
			resp_error(&c->resp, 404, "Cooked archive for %s not found.", c->swhid);
			job_free(now);
			free(filename);
			job_free(job);
			return;
		}
		job_free(now);
		errno = ENOENT;
	}
	if (fd < 0) {
		bool missing = errno == ENOENT;

		log_error_id(c->logid, "job %lld: bundle %s: %s", (long long)job->id,
		    job->bundle_sha256, err != NULL ? err : "cannot open");
		free(err);
		resp_clear(&c->resp);
		if (missing)
			resp_error(&c->resp, 500,
			    "the bundle of %s is missing from the store; ask for it again with POST /vault/%s/%s?format=%s",
			    c->swhid, c->obj_kind_name, c->obj_hex, fmt->name);
		else
			resp_error(&c->resp, 500, "internal error while reading the bundle of %s",
			    c->swhid);
		free(filename);
		job_free(job);
		return;
	}
	if ((int64_t)size != job->bundle_size)
		log_warn_id(c->logid, "job %lld: bundle is %llu bytes in the store, %lld recorded",
		    (long long)job->id, (unsigned long long)size, (long long)job->bundle_size);
	resp_file(&c->resp, 200, ctype, fd, size);
	resp_headerf(&c->resp, "Content-Disposition", "attachment; filename=\"%s\"", filename);
	free(filename);
	touch_bundle(c, db, job);
	job_free(job);
}

/* SWH's bundle types. flat is a directory's tar.gz, the same bundle (and job) as
 * /vault/directory/{id}; gitfast and git-bare come with revisions. Error texts are SWH's
 * where its clients parse them (research swh-vault.md §1.1, §1.3). */
static int
parse_swh_target(struct call *c)
{
	const char *type = router_param(&c->m, "type");
	const char *id = router_param(&c->m, "swhid");
	enum swhid_kind kind;

	if (strcmp(type, "flat") != 0 && strcmp(type, "gitfast") != 0 &&
	    strcmp(type, "git-bare") != 0) {
		resp_error(&c->resp, 404,
		    "not found: unknown bundle type; types: flat, gitfast, git-bare");
		return -1;
	}
	/* SWH's paths take a full SWHID, never bare hex. */
	if (!swhid_parse(id, -1, &kind, c->obj_id)) {
		resp_error(&c->resp, 400, "Invalid SWHID: %s", call_echo(id));
		return -1;
	}
	if (kind == SWHID_CNT) {
		resp_error(&c->resp, 400,
		    "Content objects do not need to be cooked, use `/api/1/content/raw/` instead.");
		return -1;
	}
	if (strcmp(type, "flat") == 0) {
		if (kind != SWHID_DIR) {
			resp_error(&c->resp, 400,
			    "Object type %s cannot be cooked as 'flat' bundle; use gitfast or git-bare.",
			    swhid_kind_name(kind));
			return -1;
		}
		c->format = FMT_TARGZ;
	} else if (strcmp(type, "gitfast") == 0) {
		if (kind != SWHID_REV) {
			resp_error(&c->resp, 400,
			    "Object type %s cannot be cooked as 'gitfast' bundle.",
			    swhid_kind_name(kind));
			return -1;
		}
		c->format = FMT_GITFAST;
	} else {
		if (kind != SWHID_DIR && kind != SWHID_REV && kind != SWHID_SNP) {
			resp_error(&c->resp, 400,
			    "Object type %s cannot be cooked as 'git-bare' bundle.",
			    swhid_kind_name(kind));
			return -1;
		}
		c->format = FMT_GITBARE;
	}
	c->obj_kind = kind;
	c->obj_kind_name = kind == SWHID_DIR ? "directory"
	    : kind == SWHID_REV              ? "revision"
					     : "snapshot";
	hex_encode(c->obj_id, 20, c->obj_hex);
	swhid_format(c->obj_kind, c->obj_id, c->swhid);
	return 0;
}

/* Errors on SWH's paths in SWH's shape, {"exception", "reason"}, keeping our "error" key
 * too: opam and Guix read "reason" (and match its end: "was never requested."). */
static void
swh_error_shape(struct call *c)
{
	json_t *body, *err;
	const char *exc;

	if (c->resp.status < 400 || c->resp.body == NULL)
		return;
	body = json_loadb(c->resp.body, c->resp.body_len, 0, NULL);
	err = json_object_get(body, "error");
	if (json_is_string(err)) {
		exc = c->resp.status == 404 ? "NotFoundExc"
		    : c->resp.status < 500  ? "BadInputExc"
					    : "InternalServerError";
		json_object_set_new(body, "exception", json_string(exc));
		json_object_set(body, "reason", err);
		resp_json(&c->resp, c->resp.status, body);
	}
	json_decref(body);
}

/* POST|GET /api/1/vault/{type}/{swhid}/ and GET|HEAD .../raw/. */
int
routes_swh_prepare(struct call *c)
{
	c->swh_face = true;
	if (parse_swh_target(c) != 0) {
		swh_error_shape(c);
		return -1;
	}
	return 0;
}

/* POST: like POST /vault/directory/{id}, but always 200 (SWH has no 201). */
void
routes_swh_cook_work(struct call *c, struct pool_thread *t)
{
	routes_vault_cook_work(c, t);
	if (c->resp.status == 201)
		c->resp.status = 200;
	swh_error_shape(c);
}

/* GET: the status document, with fetch_url on SWH's raw path. */
void
routes_swh_status_work(struct call *c, struct pool_thread *t)
{
	routes_vault_status_work(c, t);
	swh_error_shape(c);
}

/* GET|HEAD raw/: the bundle. */
void
routes_swh_fetch_work(struct call *c, struct pool_thread *t)
{
	routes_vault_fetch_work(c, t);
	swh_error_shape(c);
}
