/* request_generic.c: the `generic` package manager's lockfile, artifacts.lock.yaml
 * (hermeto's generic fetcher, docs/api.md "The generic package manager"): parsed with
 * libyaml's event API into a list of URLs, checksums and file names, strictly (one
 * document of exactly that shape, no anchors, aliases or foreign tags), and the URL check
 * done before each download (http/https, no user name, a public host unless
 * load_allow_private). Pure but for the DNS lookup of that check. */
#include <ctype.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "shared/netguard.h"
#include "worker/request.h"

/* Longest URL accepted (as curl and most servers take). */
#define GENERIC_MAX_URL 8192
/* Longest file name (one path segment, as most file systems allow). */
#define GENERIC_MAX_FILENAME 255

/* The checksum algorithms accepted, with their digests' hex lengths. */
static const struct {
	const char *name;
	size_t hexlen;
} algos[] = {
    {"sha256", 64},
    {"sha384", 96},
    {"sha512", 128},
};

/* The event reader: one event at a time, anchors, aliases and foreign tags refused. */
struct yp {
	yaml_parser_t parser;
	yaml_event_t ev;
	bool have; /* ev holds an event to delete */
	const char *file;
	char *err;
};

/* Notes the first error, a sentence naming the file (and the line when line > 0); false. */
static bool BV_PRINTF(3, 4) yp_fail(struct yp *p, size_t line, const char *fmt, ...)
{
	va_list ap;

	if (p->err != NULL)
		return false;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (line > 0)
		p->err = xasprintf("%s (line %zu): %s", p->file, line, msg);
	else
		p->err = xasprintf("%s: %s", p->file, msg);
	free(msg);
	return false;
}

/* The line of the current event (1-based). */
static size_t
yp_line(const struct yp *p)
{
	return p->ev.start_mark.line + 1;
}

/* Whether a tag is absent or one of YAML's plain kinds (a string, a list, a mapping). */
static bool
tag_ok(const yaml_char_t *tag)
{
	return tag == NULL || strcmp((const char *)tag, YAML_STR_TAG) == 0 ||
	    strcmp((const char *)tag, YAML_SEQ_TAG) == 0 ||
	    strcmp((const char *)tag, YAML_MAP_TAG) == 0;
}

/* Reads the next event. false (p->err) on a syntax error, an alias, an anchor or a tag:
 * they would let a small file stand for a huge one, or mean something this format has
 * no use for. */
static bool
yp_next(struct yp *p)
{
	const yaml_char_t *anchor = NULL, *tag = NULL;

	if (p->have)
		yaml_event_delete(&p->ev);
	p->have = false;
	if (!yaml_parser_parse(&p->parser, &p->ev)) {
		return yp_fail(p, p->parser.problem_mark.line + 1, "not valid YAML: %s%s%s",
		    p->parser.problem ? p->parser.problem : "unknown error",
		    p->parser.context ? " " : "", p->parser.context ? p->parser.context : "");
	}
	p->have = true;
	switch (p->ev.type) {
	case YAML_ALIAS_EVENT:
		return yp_fail(p, yp_line(p), "YAML aliases (*%s) are not allowed",
		    (const char *)p->ev.data.alias.anchor);
	case YAML_SCALAR_EVENT:
		anchor = p->ev.data.scalar.anchor;
		tag = p->ev.data.scalar.tag;
		if (memchr(p->ev.data.scalar.value, '\0', p->ev.data.scalar.length) != NULL)
			return yp_fail(p, yp_line(p), "a value holds a NUL byte");
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = p->ev.data.sequence_start.anchor;
		tag = p->ev.data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = p->ev.data.mapping_start.anchor;
		tag = p->ev.data.mapping_start.tag;
		break;
	default:
		break;
	}
	if (anchor != NULL)
		return yp_fail(
		    p, yp_line(p), "YAML anchors (&%s) are not allowed", (const char *)anchor);
	if (!tag_ok(tag))
		return yp_fail(p, yp_line(p), "YAML tags (%s) are not allowed", (const char *)tag);
	return true;
}

/* The current event's scalar value, or NULL when it is not a scalar. */
static const char *
yp_scalar(const struct yp *p)
{
	return p->ev.type == YAML_SCALAR_EVENT ? (const char *)p->ev.data.scalar.value : NULL;
}

/* Whether s is one path segment fit for deps/generic/<s>. */
bool
generic_filename_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > GENERIC_MAX_FILENAME || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++)
		if (*c < 0x20 || *c == 0x7f || *c == '/' || *c == '\\')
			return false;
	return true;
}

/* Splits an http(s) URL. */
int
generic_url_split(const char *url, char **host, char **port, char **path, char **errstr)
{
	size_t slen;
	const char *def_port;

	*host = *port = NULL;
	if (path != NULL)
		*path = NULL;
	if (strlen(url) > GENERIC_MAX_URL) {
		*errstr = xasprintf("is longer than %d bytes", GENERIC_MAX_URL);
		return -1;
	}
	for (const unsigned char *c = (const unsigned char *)url; *c != '\0'; c++) {
		if (*c <= 0x20 || *c == 0x7f) {
			*errstr = xstrdup("holds a space or a control character");
			return -1;
		}
	}
	if (strncasecmp(url, "http://", 7) == 0) {
		slen = 7;
		def_port = "80";
	} else if (strncasecmp(url, "https://", 8) == 0) {
		slen = 8;
		def_port = "443";
	} else {
		*errstr = xstrdup("is not an http or https URL");
		return -1;
	}
	const char *a = url + slen;
	size_t alen = strcspn(a, "/?#");
	if (memchr(a, '@', alen) != NULL) {
		*errstr = xstrdup("holds a user name or password, which is not allowed");
		return -1;
	}
	const char *h = a, *hend, *colon;
	if (*h == '[') {
		const char *close = memchr(h, ']', alen);
		if (close == NULL) {
			*errstr = xstrdup("has a bad IPv6 address");
			return -1;
		}
		h++;
		hend = close;
		colon = close + 1 < a + alen && close[1] == ':' ? close + 1 : NULL;
		if (colon == NULL && close + 1 != a + alen) {
			*errstr = xstrdup("has a bad host");
			return -1;
		}
	} else {
		colon = memchr(h, ':', alen);
		hend = colon != NULL ? colon : a + alen;
	}
	if (hend == h) {
		*errstr = xstrdup("has no host");
		return -1;
	}
	const char *pend = a + alen;
	if (colon != NULL) {
		const char *ps = colon + 1;
		long v = 0;
		if (ps == pend || pend - ps > 5) {
			*errstr = xstrdup("has a bad port");
			return -1;
		}
		for (const char *c = ps; c < pend; c++) {
			if (!isdigit((unsigned char)*c)) {
				*errstr = xstrdup("has a bad port");
				return -1;
			}
			v = v * 10 + (*c - '0');
		}
		if (v < 1 || v > 65535) {
			*errstr = xstrdup("has a bad port");
			return -1;
		}
		*port = xstrndup(ps, (size_t)(pend - ps));
	} else {
		*port = xstrdup(def_port);
	}
	*host = xstrndup(h, (size_t)(hend - h));
	if (path != NULL)
		*path = xstrndup(pend, strcspn(pend, "?#"));
	return 0;
}

/* Whether the URL's host may be reached (see request.h). */
enum generic_url
generic_url_check(const char *url, bool allow_private, char **last_ok, char **errstr)
{
	char *host = NULL, *port = NULL, *err = NULL;
	enum generic_url r = GENERIC_URL_OK;

	if (generic_url_split(url, &host, &port, NULL, &err) != 0) {
		*errstr = xasprintf("the URL %s", err);
		free(err);
		return GENERIC_URL_REFUSED;
	}
	char *key = xasprintf("%s\n%s", host, port);
	if (allow_private || (*last_ok != NULL && strcmp(*last_ok, key) == 0))
		goto out;
	if (netguard_check_host(host, port, &err) == 0) {
		free(*last_ok);
		*last_ok = key;
		key = NULL;
		goto out;
	}
	/* netguard refuses names that do not resolve too: those are the network's fault,
	 * the others the file's. */
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		r = GENERIC_URL_UNRESOLVED;
	} else {
		freeaddrinfo(res);
		r = GENERIC_URL_REFUSED;
	}
	*errstr = err;
out:
	free(key);
	free(host);
	free(port);
	return r;
}

/* A checksum "algo:hex" checked and made lowercase, or NULL with *why. */
static char *
checksum_norm(const char *s, const char **why)
{
	const char *colon = strchr(s, ':');

	if (colon == NULL) {
		*why = "is not of the form \"sha256:<hex digest>\"";
		return NULL;
	}
	size_t alen = (size_t)(colon - s), hlen = strlen(colon + 1);
	for (size_t i = 0; i < BV_NELEM(algos); i++) {
		if (strlen(algos[i].name) != alen || strncasecmp(s, algos[i].name, alen) != 0)
			continue;
		if (hlen != algos[i].hexlen) {
			*why = "has a digest of the wrong length for its algorithm";
			return NULL;
		}
		char *out = xasprintf("%s:%s", algos[i].name, colon + 1);
		for (char *c = out + alen + 1; *c != '\0'; c++) {
			if (!isxdigit((unsigned char)*c)) {
				free(out);
				*why = "has a digest that is not hexadecimal";
				return NULL;
			}
			*c = (char)tolower((unsigned char)*c);
		}
		return out;
	}
	if ((alen == 3 && strncasecmp(s, "md5", 3) == 0) ||
	    (alen == 4 && strncasecmp(s, "sha1", 4) == 0))
		*why = "uses a hash too weak to identify a file: use sha256, sha384 or sha512";
	else
		*why = "uses an algorithm this server does not check: use sha256, sha384 or "
		       "sha512";
	return NULL;
}

/* One entry of artifacts (the current event is its MAPPING_START). */
static bool
parse_artifact(struct yp *p, struct generic_lock *lock)
{
	size_t idx = lock->n + 1, line = yp_line(p);
	struct generic_artifact a = {.line = line};
	char *raw_sum = NULL;
	bool ok = false;

	if (p->ev.type != YAML_MAPPING_START_EVENT)
		return yp_fail(p, yp_line(p),
		    "artifact %zu must be a mapping with download_url, checksum and filename", idx);
	for (;;) {
		if (!yp_next(p))
			goto out;
		if (p->ev.type == YAML_MAPPING_END_EVENT)
			break;
		const char *k = yp_scalar(p);
		if (k == NULL) {
			yp_fail(p, yp_line(p), "artifact %zu has a key that is not a string", idx);
			goto out;
		}
		char **slot = strcmp(k, "download_url") == 0 ? &a.url
		    : strcmp(k, "checksum") == 0             ? &raw_sum
		    : strcmp(k, "filename") == 0             ? &a.filename
							     : NULL;
		if (slot == NULL) {
			yp_fail(p, yp_line(p),
			    "artifact %zu has an unknown key \"%s\" (allowed: download_url, "
			    "checksum, filename)",
			    idx, k);
			goto out;
		}
		if (*slot != NULL) {
			yp_fail(p, yp_line(p), "artifact %zu has \"%s\" twice", idx, k);
			goto out;
		}
		char *key = xstrdup(k);
		if (!yp_next(p)) {
			free(key);
			goto out;
		}
		const char *v = yp_scalar(p);
		if (v == NULL) {
			yp_fail(p, yp_line(p), "the %s of artifact %zu must be a string", key, idx);
			free(key);
			goto out;
		}
		free(key);
		*slot = xstrdup(v);
	}
	if (a.url == NULL || *a.url == '\0') {
		yp_fail(p, line, "artifact %zu has no download_url", idx);
		goto out;
	}
	char *host = NULL, *port = NULL, *path = NULL, *err = NULL;
	if (generic_url_split(a.url, &host, &port, &path, &err) != 0) {
		yp_fail(p, line, "the download_url of artifact %zu (%.200s) %s", idx, a.url, err);
		free(err);
		goto out;
	}
	free(host);
	free(port);
	if (a.filename == NULL) {
		const char *slash = strrchr(path, '/');
		a.filename = xstrdup(slash != NULL ? slash + 1 : path);
		if (*a.filename == '\0') {
			yp_fail(p, line,
			    "artifact %zu has no filename and its download_url (%.200s) does not "
			    "end with one",
			    idx, a.url);
			free(path);
			goto out;
		}
	}
	free(path);
	if (!generic_filename_ok(a.filename)) {
		yp_fail(p, line,
		    "the filename \"%.200s\" of artifact %zu must be a single file name (no \"/\", "
		    "no \"..\", no control characters, at most %d bytes)",
		    a.filename, idx, GENERIC_MAX_FILENAME);
		goto out;
	}
	if (raw_sum == NULL) {
		yp_fail(p, line, "artifact %zu (%.200s) has no checksum", idx, a.filename);
		goto out;
	}
	const char *why = NULL;
	if ((a.checksum = checksum_norm(raw_sum, &why)) == NULL) {
		yp_fail(p, line, "the checksum of artifact %zu (%.200s) %s", idx, a.filename, why);
		goto out;
	}
	if (lock->n % 64 == 0)
		lock->items = xrealloc(lock->items, (lock->n + 64) * sizeof *lock->items);
	lock->items[lock->n++] = a;
	ok = true;
out:
	free(raw_sum);
	if (!ok) {
		free(a.url);
		free(a.filename);
		free(a.checksum);
	}
	return ok;
}

/* metadata (the current event is its value). */
static bool
parse_metadata(struct yp *p)
{
	bool version = false;

	if (p->ev.type != YAML_MAPPING_START_EVENT)
		return yp_fail(p, yp_line(p), "metadata must be a mapping with version \"1.0\"");
	for (;;) {
		if (!yp_next(p))
			return false;
		if (p->ev.type == YAML_MAPPING_END_EVENT)
			break;
		const char *k = yp_scalar(p);
		if (k == NULL || strcmp(k, "version") != 0)
			return yp_fail(p, yp_line(p),
			    "metadata has an unknown key%s%s%s (allowed: version)", k ? " \"" : "",
			    k ? k : "", k ? "\"" : "");
		if (version)
			return yp_fail(p, yp_line(p), "metadata has \"version\" twice");
		if (!yp_next(p))
			return false;
		const char *v = yp_scalar(p);
		if (v == NULL || strcmp(v, "1.0") != 0)
			return yp_fail(p, yp_line(p), "metadata.version must be \"1.0\"%s%s%s",
			    v ? ", not \"" : "", v ? v : "", v ? "\"" : "");
		version = true;
	}
	if (!version)
		return yp_fail(p, yp_line(p), "metadata.version is missing (it must be \"1.0\")");
	return true;
}

/* artifacts (the current event is its value). */
static bool
parse_artifacts(struct yp *p, struct generic_lock *lock)
{
	if (p->ev.type != YAML_SEQUENCE_START_EVENT)
		return yp_fail(p, yp_line(p), "artifacts must be a list");
	for (;;) {
		if (!yp_next(p))
			return false;
		if (p->ev.type == YAML_SEQUENCE_END_EVENT)
			return true;
		if (lock->n >= GENERIC_MAX_ARTIFACTS)
			return yp_fail(p, yp_line(p), "more than %d artifacts are listed",
			    GENERIC_MAX_ARTIFACTS);
		if (!parse_artifact(p, lock))
			return false;
	}
}

/* Sorts entry pointers by file name, then by position. */
static int
by_filename(const void *a, const void *b)
{
	const struct generic_artifact *x = *(const struct generic_artifact *const *)a;
	const struct generic_artifact *y = *(const struct generic_artifact *const *)b;
	int c = strcmp(x->filename, y->filename);
	return c != 0 ? c : (x < y ? -1 : x > y);
}

/* No two entries with one file name (each is deps/generic/<filename>). */
static bool
check_unique(struct yp *p, struct generic_lock *lock)
{
	struct generic_artifact **v = xmalloc((lock->n + 1) * sizeof *v);
	bool ok = true;

	for (size_t i = 0; i < lock->n; i++)
		v[i] = &lock->items[i];
	qsort(v, lock->n, sizeof *v, by_filename);
	for (size_t i = 1; i < lock->n && ok; i++) {
		if (strcmp(v[i - 1]->filename, v[i]->filename) == 0)
			ok = yp_fail(p, v[i]->line,
			    "artifacts %zu and %zu have the same filename \"%.200s\"",
			    (size_t)(v[i - 1] - lock->items) + 1, (size_t)(v[i] - lock->items) + 1,
			    v[i]->filename);
	}
	free(v);
	return ok;
}

/* The whole document: { metadata: {version: "1.0"}, artifacts: [...] }. */
static bool
parse_doc(struct yp *p, struct generic_lock *lock)
{
	bool metadata = false, artifacts = false;

	if (!yp_next(p)) /* STREAM_START */
		return false;
	if (!yp_next(p))
		return false;
	if (p->ev.type == YAML_STREAM_END_EVENT)
		return yp_fail(p, 0, "the file is empty");
	if (!yp_next(p)) /* after DOCUMENT_START */
		return false;
	if (p->ev.type != YAML_MAPPING_START_EVENT)
		return yp_fail(
		    p, yp_line(p), "the file must be a mapping with metadata and artifacts");
	for (;;) {
		if (!yp_next(p))
			return false;
		if (p->ev.type == YAML_MAPPING_END_EVENT)
			break;
		const char *k = yp_scalar(p);
		bool *seen = k == NULL            ? NULL
		    : strcmp(k, "metadata") == 0  ? &metadata
		    : strcmp(k, "artifacts") == 0 ? &artifacts
						  : NULL;
		if (seen == NULL)
			return yp_fail(p, yp_line(p),
			    "unknown top-level key%s%s%s (allowed: metadata, artifacts)",
			    k ? " \"" : "", k ? k : "", k ? "\"" : "");
		if (*seen)
			return yp_fail(p, yp_line(p), "\"%s\" is given twice", k);
		*seen = true;
		bool is_meta = seen == &metadata;
		if (!yp_next(p))
			return false;
		if (!(is_meta ? parse_metadata(p) : parse_artifacts(p, lock)))
			return false;
	}
	if (!metadata)
		return yp_fail(p, 0, "metadata.version is missing (it must be \"1.0\")");
	if (!artifacts)
		return yp_fail(p, 0, "artifacts is missing");
	if (!yp_next(p)) /* DOCUMENT_END */
		return false;
	if (!yp_next(p))
		return false;
	if (p->ev.type != YAML_STREAM_END_EVENT)
		return yp_fail(p, yp_line(p), "the file holds more than one YAML document");
	return check_unique(p, lock);
}

/* Parses artifacts.lock.yaml. */
int
generic_lock_parse(
    const char *text, size_t len, const char *file, struct generic_lock *lock, char **errstr)
{
	struct yp p = {.file = file};

	memset(lock, 0, sizeof *lock);
	if (!yaml_parser_initialize(&p.parser))
		abort(); /* only on OOM */
	yaml_parser_set_input_string(&p.parser, (const unsigned char *)text, len);
	bool ok = parse_doc(&p, lock);
	if (p.have)
		yaml_event_delete(&p.ev);
	yaml_parser_delete(&p.parser);
	if (!ok) {
		generic_lock_clear(lock);
		*errstr = p.err != NULL ? p.err : xasprintf("%s: not a valid lockfile", file);
		return -1;
	}
	return 0;
}

void
generic_lock_clear(struct generic_lock *lock)
{
	for (size_t i = 0; i < lock->n; i++) {
		free(lock->items[i].url);
		free(lock->items[i].checksum);
		free(lock->items[i].filename);
	}
	free(lock->items);
	lock->items = NULL;
	lock->n = 0;
}
