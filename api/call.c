/* call.c: the per-call data handed from the event loop to a pool thread, and helpers the
 * route modules share (see call.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/bitsup.h"
#include "api/call.h"
#include "shared/log.h"

/* A call for a request whose headers just arrived. */
struct call *
call_new(const struct config *cfg, struct store *st, struct http_req *req, const char *request_id)
{
	struct call *c = xcalloc(1, sizeof *c);

	c->cfg = cfg;
	c->store = st;
	c->req = req;
	snprintf(c->logid, sizeof c->logid, "req=%s", request_id);
	c->spool_fd = -1;
	c->job_id = -1;
	resp_init(&c->resp);
	return c;
}

/* Frees a call; the spool file goes whatever happened to the upload. */
void
call_free(struct call *c)
{
	if (c == NULL)
		return;
	if (c->spool_path != NULL && unlink(c->spool_path) != 0)
		log_debug_id(c->logid, "spool file already removed");
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	free(c->spool_path);
	router_match_clear(&c->m);
	free(c->query);
	free(c->base_url);
	free(c->if_none_match);
	free(c->content_type);
	free(c->digest);
	free(c->range);
	free(c->if_none_modify);
	free(c->cache_key);
	free(c->cache_text);
	free(c->bits_key);
	bitsup_free(c->upload);
	json_decref(c->json);
	json_decref(c->aux);
	resp_clear(&c->resp);
	free(c);
}

/* A client's value for an error message, when it is short printable ASCII. */
const char *
call_echo(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= 100 || s[i] < 0x20 || s[i] > 0x7e)
			return "(unprintable)";
	return s;
}

/* Object kinds of the Vault face and their SWHID types. */
static const struct {
	const char *name;
	enum swhid_kind kind;
} kinds[] = {
    {"directory", SWHID_DIR},
    {"revision", SWHID_REV},
    {"snapshot", SWHID_SNP},
};

/* Parses hex or a SWHID for kind. */
bool
call_parse_object(struct call *c, const char *kind, const char *id)
{
	enum swhid_kind got;
	size_t i;

	for (i = 0; i < BV_NELEM(kinds); i++)
		if (strcmp(kinds[i].name, kind) == 0)
			break;
	if (i == BV_NELEM(kinds)) {
		resp_error(&c->resp, 400,
		    "unknown object kind '%s'; kinds: directory, revision, snapshot",
		    call_echo(kind));
		return false;
	}
	c->obj_kind = kinds[i].kind;
	c->obj_kind_name = kinds[i].name;
	if (!swhid_parse(id, (int)c->obj_kind, &got, c->obj_id) || got != c->obj_kind) {
		resp_error(&c->resp, 400,
		    "invalid id '%s': expected 40 hex digits or swh:1:%s:<hex>", call_echo(id),
		    swhid_kind_name(c->obj_kind));
		return false;
	}
	hex_encode(c->obj_id, 20, c->obj_hex);
	swhid_format(c->obj_kind, c->obj_id, c->swhid);
	return true;
}

/* Decodes application/x-www-form-urlencoded text ('+' is a space); NULL when malformed
 * or when it would hold a NUL. */
char *
call_form_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%') {
			int hi, lo;

			if (i + 2 >= len)
				goto bad;
			hi = hex_digit_value(s[i + 1]);
			lo = hex_digit_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			ch = (char)(hi * 16 + lo);
			i += 2;
		}
		if (ch == '\0')
			goto bad;
		out[o++] = ch;
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* Finds name=value in the raw query; the first occurrence wins. */
bool
call_query_param(struct call *c, const char *name, char **out)
{
	const char *p = c->query != NULL ? c->query : "";
	size_t nlen = strlen(name);

	*out = NULL;
	while (*p != '\0') {
		const char *end = strchr(p, '&');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t klen = eq != NULL ? (size_t)(eq - p) : len;
		char *key = call_form_decode(p, klen);

		if (key == NULL) {
			resp_error(&c->resp, 400, "malformed query string");
			return false;
		}
		if (strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
			free(key);
			*out = eq != NULL ? call_form_decode(eq + 1, len - klen - 1) : xstrdup("");
			if (*out == NULL) {
				resp_error(&c->resp, 400, "malformed query string");
				return false;
			}
			return true;
		}
		free(key);
		if (end == NULL)
			break;
		p = end + 1;
	}
	return true;
}

/* Every key of the query string must be one of names. */
bool
call_query_allowed(struct call *c, const char *const *names)
{
	const char *p = c->query != NULL ? c->query : "";

	while (*p != '\0') {
		const char *end = strchr(p, '&');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		char *key = call_form_decode(p, eq != NULL ? (size_t)(eq - p) : len);
		bool known = false;

		if (key == NULL) {
			resp_error(&c->resp, 400, "malformed query string");
			return false;
		}
		for (size_t i = 0; names[i] != NULL && !known; i++)
			known = strcmp(key, names[i]) == 0;
		if (!known && len > 0) {
			resp_error(&c->resp, 400, "unknown query parameter '%s'", call_echo(key));
			free(key);
			return false;
		}
		free(key);
		if (end == NULL)
			break;
		p = end + 1;
	}
	return true;
}

/* The thread's database, or a 503. */
struct db *
call_db(struct call *c, struct pool_thread *t)
{
	char *err = NULL;
	struct db *db = pool_thread_db(t, &err);

	if (db == NULL) {
		call_db_failed(c, "connect", err);
		free(err);
	}
	return db;
}

/* Logs the real reason and answers 503: the client learns Postgres is down, not why. */
void
call_db_failed(struct call *c, const char *what, const char *reason)
{
	char *safe = call_redact(c->cfg, reason != NULL ? reason : "unknown error");

	log_error_id(c->logid, "database error (%s): %s", what, safe);
	free(safe);
	resp_clear(&c->resp);
	resp_error(&c->resp, 503, "database unavailable");
}

/* The thread's Redis handle, or NULL. */
struct kv *
call_kv(struct call *c, struct pool_thread *t)
{
	char *err = NULL;
	struct kv *kv = pool_thread_kv(t, &err);

	if (kv == NULL) {
		log_warn_id(c->logid, "redis: %s", err != NULL ? err : "unknown error");
		free(err);
	}
	return kv;
}

/* A new string: s with every occurrence of what (non-empty) replaced by with. */
static char *
replace_all(const char *s, const char *what, const char *with)
{
	size_t wlen = strlen(what);
	struct buf b;
	const char *p = s, *hit;

	buf_init(&b);
	while ((hit = memmem(p, strlen(p), what, wlen)) != NULL) {
		buf_add(&b, p, hit - p);
		buf_adds(&b, with);
		p = hit + wlen;
	}
	buf_adds(&b, p);
	return buf_steal(&b, NULL);
}

/* Replaces every occurrence of secret (when non-empty) in *s. */
static void
redact_one(char **s, const char *secret, size_t slen)
{
	char *copy, *out;

	if (slen == 0)
		return;
	copy = xstrndup(secret, slen);
	out = replace_all(*s, copy, "***");
	free(copy);
	free(*s);
	*s = out;
}

/* Finds the password in a postgresql:// URL or a "password=" conninfo keyword. */
static void
db_password(const char *url, const char **pw, size_t *len)
{
	const char *p, *at, *colon;

	*pw = NULL;
	*len = 0;
	if (url == NULL)
		return;
	if ((p = strstr(url, "://")) != NULL) {
		p += 3;
		at = strchr(p, '@');
		if (at == NULL)
			return;
		colon = memchr(p, ':', at - p);
		if (colon == NULL)
			return;
		*pw = colon + 1;
		*len = at - colon - 1;
		return;
	}
	if ((p = strstr(url, "password")) != NULL) {
		p += 8;
		while (*p == ' ')
			p++;
		if (*p != '=')
			return;
		p++;
		while (*p == ' ')
			p++;
		if (*p == '\'') {
			p++;
			*pw = p;
			while (p[*len] != '\0' && p[*len] != '\'')
				(*len)++;
		} else {
			*pw = p;
			while (p[*len] != '\0' && p[*len] != ' ')
				(*len)++;
		}
	}
}

/* A copy of msg with the configured secrets masked. libpq's messages do not carry the
 * password, but an error that quotes the conninfo would. */
char *
call_redact(const struct config *cfg, const char *msg)
{
	char *s = xstrdup(msg != NULL ? msg : "");
	const char *pw;
	size_t pwlen;
	char *p;

	/* One line: libpq's messages carry "\n\t" hints. */
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	while (p > s && p[-1] == ' ')
		*--p = '\0';
	if (cfg == NULL)
		return s;
	db_password(cfg->database_url, &pw, &pwlen);
	if (pw != NULL && pwlen > 0) {
		char *copy = xstrndup(pw, pwlen);

		redact_one(&s, copy, pwlen);
		free(copy);
	}
	if (cfg->admin_token != NULL)
		redact_one(&s, cfg->admin_token, strlen(cfg->admin_token));
	if (cfg->worker_token != NULL)
		redact_one(&s, cfg->worker_token, strlen(cfg->worker_token));
	return s;
}

/* A copy of msg safe for a client: secrets masked (call_redact), the spool file's path
 * shown as "the upload" and the data folder as "<data_dir>". */
char *
call_hide_paths(const struct config *cfg, const char *msg, const char *spool_path)
{
	char *s = call_redact(cfg, msg);
	char *old;

	if (spool_path != NULL && spool_path[0] != '\0' && strstr(s, spool_path) != NULL) {
		old = s;
		s = replace_all(old, spool_path, "the upload");
		free(old);
	}
	if (cfg != NULL && cfg->data_dir != NULL && cfg->data_dir[0] != '\0' &&
	    strstr(s, cfg->data_dir) != NULL) {
		old = s;
		s = replace_all(old, cfg->data_dir, "<data_dir>");
		free(old);
	}
	return s;
}

/* ISO-8601 in UTC with a Z. */
void
call_iso8601(double t, char *out)
{
	time_t secs = (time_t)t;
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Strict UTF-8 check (RFC 3629). */
bool
call_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned char ch = s[i];
		size_t need, k;
		uint32_t cp;

		if (ch < 0x80) {
			i++;
			continue;
		} else if (ch >= 0xc2 && ch <= 0xdf) {
			need = 1;
			cp = ch & 0x1f;
		} else if (ch >= 0xe0 && ch <= 0xef) {
			need = 2;
			cp = ch & 0x0f;
		} else if (ch >= 0xf0 && ch <= 0xf4) {
			need = 3;
			cp = ch & 0x07;
		} else {
			return false;
		}
		if (i + need >= n) /* truncated sequence */
			return false;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* A path inside an archive a client names: relative, no "." or ".." component, no empty
 * one, no control character or backslash, valid UTF-8, 1 to 4,096 bytes. */
bool
call_rel_path_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 4096 || s[0] == '/' || s[n - 1] == '/' || !call_utf8_valid(s, n))
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
			return false;
	for (const char *seg = s; seg != NULL;) {
		const char *end = strchr(seg, '/');
		size_t len = end != NULL ? (size_t)(end - seg) : strlen(seg);
		if (len == 0 || (len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		seg = end != NULL ? end + 1 : NULL;
	}
	return true;
}

/* A random version 4 UUID (its variant nibble 8, 9, a or b). */
void
call_new_uuid(char out[37])
{
	char h[33];

	random_hex(h, 16);
	h[12] = '4';
	h[16] = "89ab"[(h[16] >= 'a' ? h[16] - 'a' + 10 : h[16] - '0') & 3];
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}
