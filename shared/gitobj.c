/* gitobj.c: git object ids (sha1 over "<type> <len>\0" + body), the canonical tree body
 * and its entry order, a bounds-checked tree parser for untrusted bytes, and SWHIDs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/gitobj.h"

struct tree_entry {
	char *name;
	size_t name_len;
	unsigned int mode;
	unsigned char id[20];
};

struct tree_builder {
	struct tree_entry *e;
	size_t n, cap;
	/* Open-addressing set of entry indexes + 1 (0 = empty), keyed by name, so adding
	 * the entries of a huge folder stays linear. */
	uint32_t *slots;
	size_t nslots;
};

static const char *const swhid_kinds[] = {"cnt", "dir", "rev", "rel", "snp"};

/* Starts a git object id: the "<type> <len>\0" header goes in first, so len must be known. */
void
gitobj_hasher_init(struct git_hasher *h, const char *type, uint64_t len)
{
	char hdr[64];
	int n = snprintf(hdr, sizeof(hdr), "%s %" PRIu64, type, len);

	/* A failed digest context is out of memory: abort like xmalloc. */
	h->ctx = EVP_MD_CTX_new();
	if (h->ctx == NULL || n < 0 || (size_t)n >= sizeof(hdr) ||
	    EVP_DigestInit_ex(h->ctx, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(h->ctx, hdr, (size_t)n + 1) != 1)
		abort();
}

/* Feeds body bytes; they must add up to the len given at init. */
void
gitobj_hasher_update(struct git_hasher *h, const void *data, size_t len)
{
	if (len > 0 && EVP_DigestUpdate(h->ctx, data, len) != 1)
		abort();
}

/* Frees the context: a hasher is used once. */
void
gitobj_hasher_final(struct git_hasher *h, unsigned char id[20])
{
	if (EVP_DigestFinal_ex(h->ctx, id, NULL) != 1)
		abort();
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

/* One-shot id of a body already in memory. */
void
gitobj_hash(const char *type, const void *data, size_t len, unsigned char id[20])
{
	struct git_hasher h;

	gitobj_hasher_init(&h, type, len);
	gitobj_hasher_update(&h, data, len);
	gitobj_hasher_final(&h, id);
}

/* An empty builder; the slot table is allocated on the first add. */
struct tree_builder *
tree_builder_new(void)
{
	return xcalloc(1, sizeof(struct tree_builder));
}

/* Frees the builder and its entries; NULL does nothing. */
void
tree_builder_free(struct tree_builder *tb)
{
	if (tb == NULL)
		return;
	for (size_t i = 0; i < tb->n; i++)
		free(tb->e[i].name);
	free(tb->e);
	free(tb->slots);
	free(tb);
}

/* FNV-1a: names are short and this table is private to one builder. */
static uint64_t
name_hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Slot holding name, or the empty slot where it would go. */
static uint32_t *
slot_find(struct tree_builder *tb, const char *name, size_t len)
{
	size_t mask = tb->nslots - 1;
	size_t i = (size_t)name_hash(name, len) & mask;

	for (;;) {
		uint32_t v = tb->slots[i];
		if (v == 0)
			return &tb->slots[i];
		const struct tree_entry *e = &tb->e[v - 1];
		if (e->name_len == len && memcmp(e->name, name, len) == 0)
			return &tb->slots[i];
		i = (i + 1) & mask;
	}
}

/* Doubles the name set (keeping it at most half full) and re-inserts every entry. */
static void
slots_grow(struct tree_builder *tb)
{
	size_t n = tb->nslots ? tb->nslots * 2 : 16;

	while (n < (tb->n + 1) * 2)
		n *= 2;
	free(tb->slots);
	tb->slots = xcalloc(n, sizeof(*tb->slots));
	tb->nslots = n;
	for (size_t i = 0; i < tb->n; i++)
		*slot_find(tb, tb->e[i].name, tb->e[i].name_len) = (uint32_t)(i + 1);
}

/* Only the modes git writes in trees: other values would give ids git never makes. */
static bool
mode_valid(unsigned int mode)
{
	return mode == GIT_MODE_FILE || mode == GIT_MODE_EXEC || mode == GIT_MODE_LINK ||
	    mode == GIT_MODE_DIR || mode == GIT_MODE_GITLINK;
}

/* The names git itself refuses in a tree (fsck: empty, ".", "..", containing '/'). */
static bool
name_valid(const char *name, size_t len)
{
	if (len == 0 || memchr(name, '/', len) != NULL || memchr(name, '\0', len) != NULL)
		return false;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return true;
}

/* Refuses invalid and duplicate names up front: git would reject such a tree. */
bool
tree_builder_add(struct tree_builder *tb, const char *name, size_t name_len, unsigned int mode,
    const unsigned char id[20])
{
	uint32_t *slot;

	if (!name_valid(name, name_len) || !mode_valid(mode) || tb->n >= UINT32_MAX - 1)
		return false;
	if ((tb->n + 1) * 2 > tb->nslots)
		slots_grow(tb);
	slot = slot_find(tb, name, name_len);
	if (*slot != 0)
		return false;
	if (tb->n == tb->cap) {
		tb->cap = tb->cap ? tb->cap * 2 : 16;
		tb->e = xrealloc(tb->e, tb->cap * sizeof(*tb->e));
	}
	struct tree_entry *e = &tb->e[tb->n];
	e->name = xstrndup(name, name_len);
	e->name_len = name_len;
	e->mode = mode;
	memcpy(e->id, id, 20);
	*slot = (uint32_t)(++tb->n);
	return true;
}

/* Entries added so far. */
size_t
tree_builder_count(const struct tree_builder *tb)
{
	return tb->n;
}

/* git's base_name_compare: bytewise, a tree compares as if its name ended with '/'.
 * Gitlinks (160000) are not trees here, exactly as in git. */
static int
entry_cmp(const void *pa, const void *pb)
{
	const struct tree_entry *a = pa, *b = pb;
	size_t len = a->name_len < b->name_len ? a->name_len : b->name_len;
	int cmp = memcmp(a->name, b->name, len);
	unsigned char ca, cb;

	if (cmp != 0)
		return cmp;
	ca = len < a->name_len ? (unsigned char)a->name[len] : (a->mode == GIT_MODE_DIR ? '/' : 0);
	cb = len < b->name_len ? (unsigned char)b->name[len] : (b->mode == GIT_MODE_DIR ? '/' : 0);
	return (int)ca - (int)cb;
}

/* Sorts git's way, serialises and hashes; the builder stays usable (slots rebuilt). */
void
tree_builder_finish(
    struct tree_builder *tb, unsigned char **out, size_t *out_len, unsigned char id[20])
{
	struct buf b;

	/* The slot table holds indexes into e: it is stale once sorted. */
	free(tb->slots);
	tb->slots = NULL;
	tb->nslots = 0;
	if (tb->n > 1)
		qsort(tb->e, tb->n, sizeof(*tb->e), entry_cmp);
	buf_init(&b);
	for (size_t i = 0; i < tb->n; i++) {
		const struct tree_entry *e = &tb->e[i];
		/* "%o" gives "40000" for trees: git writes no leading zero. */
		buf_printf(&b, "%o ", e->mode);
		buf_add(&b, e->name, e->name_len);
		buf_addc(&b, '\0');
		buf_add(&b, e->id, 20);
	}
	gitobj_hash("tree", b.data != NULL ? b.data : "", b.len, id);
	*out = (unsigned char *)buf_steal(&b, out_len);
	if (*out == NULL)
		*out = xcalloc(1, 1);
	buf_free(&b);
	if (tb->n > 0)
		slots_grow(tb);
}

/* p == NULL marks a malformed body, so raw == NULL (an empty tree) gets a real pointer. */
void
tree_iter_init(struct tree_iter *it, const unsigned char *raw, size_t len)
{
	static const unsigned char empty[1];

	it->p = raw != NULL ? raw : empty;
	it->end = raw != NULL ? raw + len : empty;
}

/* Every read is checked against end: tree bodies come from uploads and other servers.
 * An entry is "<octal mode> <name>\0<20-byte id>"; the name must be one git accepts. */
int
tree_iter_next(struct tree_iter *it, unsigned int *mode, const char **name, size_t *name_len,
    const unsigned char **id)
{
	const unsigned char *p = it->p, *nul;
	unsigned int m = 0;
	size_t digits = 0, left;

	if (p == NULL)
		return -1;
	if (p >= it->end)
		return 0;
	while (p < it->end && *p != ' ') {
		if (*p < '0' || *p > '7' || ++digits > 6)
			goto bad;
		m = m * 8 + (unsigned int)(*p - '0');
		p++;
	}
	if (p >= it->end || digits == 0)
		goto bad;
	p++; /* the space */
	left = (size_t)(it->end - p);
	if ((nul = memchr(p, '\0', left)) == NULL)
		goto bad;
	if (!name_valid((const char *)p, (size_t)(nul - p)))
		goto bad;
	if ((size_t)(it->end - (nul + 1)) < 20)
		goto bad;
	*mode = m;
	*name = (const char *)p;
	*name_len = (size_t)(nul - p);
	*id = nul + 1;
	it->p = nul + 1 + 20;
	return 1;
bad:
	/* The error sticks: a caller that calls again must not take it for a clean end. */
	it->p = NULL;
	it->end = NULL;
	return -1;
}

/* "cnt", "dir", ...; NULL for a value outside the enum. */
const char *
swhid_kind_name(enum swhid_kind kind)
{
	if ((unsigned int)kind >= BV_NELEM(swhid_kinds))
		return NULL;
	return swhid_kinds[kind];
}

/* Strict: exact length, known kind, no qualifiers, so ids from URLs need no re-check. */
bool
swhid_parse(const char *s, int bare_kind, enum swhid_kind *kind, unsigned char id[20])
{
	size_t len;

	if (s == NULL)
		return false;
	len = strlen(s);
	if (len == 40 && bare_kind >= 0) {
		if ((size_t)bare_kind >= BV_NELEM(swhid_kinds) || !is_hex(s, 40) ||
		    !hex_decode(s, id, 20))
			return false;
		*kind = (enum swhid_kind)bare_kind;
		return true;
	}
	/* "swh:1:" + 3-letter kind + ':' + 40 hex, nothing after (no ";qualifiers"). */
	if (len != 6 + 3 + 1 + 40 || strncmp(s, "swh:1:", 6) != 0 || s[9] != ':')
		return false;
	for (size_t k = 0; k < BV_NELEM(swhid_kinds); k++) {
		if (strncmp(s + 6, swhid_kinds[k], 3) != 0)
			continue;
		if (!is_hex(s + 10, 40) || !hex_decode(s + 10, id, 20))
			return false;
		*kind = (enum swhid_kind)k;
		return true;
	}
	return false;
}

/* An unknown kind is a programming error, not input: abort. */
void
swhid_format(enum swhid_kind kind, const unsigned char id[20], char *out)
{
	const char *name = swhid_kind_name(kind);
	char hex[41];

	if (name == NULL)
		abort();
	hex_encode(id, 20, hex);
	snprintf(out, 51, "swh:1:%s:%s", name, hex);
}

/* 40 hex digits not followed by a NUL (a line of an object body) into 20 bytes. */
static bool
hex40(const unsigned char *s, unsigned char id[20])
{
	for (size_t i = 0; i < 20; i++) {
		int hi = hex_digit_value((char)s[2 * i]), lo = hex_digit_value((char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		id[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

/* If [p, end) starts with "<key> <40 hex>\n", decodes the id, advances *p and returns
 * true. */
static bool
header_id(const unsigned char **p, const unsigned char *end, const char *key, unsigned char id[20])
{
	size_t klen = strlen(key);
	const unsigned char *q = *p;

	if ((size_t)(end - q) < klen + 1 + 40 + 1 || memcmp(q, key, klen) != 0 || q[klen] != ' ' ||
	    q[klen + 41] != '\n' || !hex40(q + klen + 1, id))
		return false;
	*p = q + klen + 42;
	return true;
}

/* Git's layout: "tree" first, then every "parent", then the other headers; a blank line
 * (or the end: SWH keeps commits without a message) ends the headers. */
bool
gitobj_parse_commit(const unsigned char *raw, size_t len, struct commit_info *ci)
{
	const unsigned char *p = raw, *end = raw + len, *blank;
	unsigned char id[20];
	size_t cap = 0;

	memset(ci, 0, sizeof *ci);
	if (!header_id(&p, end, "tree", ci->tree))
		return false;
	while (header_id(&p, end, "parent", id)) {
		if (ci->n_parents == cap) {
			cap = cap ? 2 * cap : 2;
			ci->parents = xrealloc(ci->parents, cap * sizeof *ci->parents);
		}
		memcpy(ci->parents[ci->n_parents++], id, 20);
	}
	ci->headers = p;
	/* The headers end at the first empty line. */
	blank = NULL;
	for (const unsigned char *q = p; q < end; q++) {
		if (*q == '\n' && (q == p || q[-1] == '\n')) {
			blank = q;
			break;
		}
	}
	if (blank == NULL) {
		ci->headers_len = (size_t)(end - p);
		ci->message = end;
		ci->message_len = 0;
	} else {
		ci->headers_len = (size_t)(blank - p);
		ci->message = blank + 1;
		ci->message_len = (size_t)(end - blank - 1);
	}
	return true;
}

/* Frees the parents. */
void
commit_info_clear(struct commit_info *ci)
{
	free(ci->parents);
	ci->parents = NULL;
	ci->n_parents = 0;
}

/* "object <hex>\ntype <t>\ntag <name>\n": the order git writes and checks (fsck). */
bool
gitobj_parse_tag(const unsigned char *raw, size_t len, unsigned char target[20],
    enum swhid_kind *target_kind, const char **name, size_t *name_len)
{
	static const struct {
		const char *word;
		enum swhid_kind kind;
	} types[] = {{"type commit\n", SWHID_REV}, {"type tree\n", SWHID_DIR},
	    {"type blob\n", SWHID_CNT}, {"type tag\n", SWHID_REL}};
	const unsigned char *p = raw, *end = raw + len, *nl;
	size_t i;

	if (!header_id(&p, end, "object", target))
		return false;
	for (i = 0; i < BV_NELEM(types); i++) {
		size_t wl = strlen(types[i].word);
		if ((size_t)(end - p) >= wl && memcmp(p, types[i].word, wl) == 0) {
			*target_kind = types[i].kind;
			p += wl;
			break;
		}
	}
	if (i == BV_NELEM(types) || (size_t)(end - p) < 5 || memcmp(p, "tag ", 4) != 0)
		return false;
	p += 4;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL || nl == p)
		return false;
	*name = (const char *)p;
	*name_len = (size_t)(nl - p);
	return true;
}

static const char *const snp_names[] = {
    "content", "directory", "revision", "release", "snapshot", "alias", "dangling"};

/* The manifest's word for a target type. */
const char *
snp_target_name(enum snp_target t)
{
	return (unsigned int)t < BV_NELEM(snp_names) ? snp_names[t] : NULL;
}

/* SWHID kinds and snapshot target types list the object kinds in the same order. */
enum snp_target
snp_target_of_kind(enum swhid_kind kind)
{
	static const enum snp_target map[] = {
	    SNP_CONTENT, SNP_DIRECTORY, SNP_REVISION, SNP_RELEASE, SNP_SNAPSHOT};
	return map[kind];
}

/* Byte order of names, shorter first on a common prefix (Python's bytes order). */
static int
branch_cmp(const void *a, const void *b)
{
	const struct snapshot_branch *x = a, *y = b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);

	if (c != 0)
		return c;
	return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Sorted, checked, written in one buffer. */
bool
gitobj_snapshot_manifest(
    struct snapshot_branch *b, size_t n, unsigned char **out, size_t *out_len, unsigned char id[20])
{
	struct buf m;

	if (n > 0) /* qsort(NULL, 0) is undefined: the empty snapshot has no array */
		qsort(b, n, sizeof *b, branch_cmp);
	for (size_t i = 0; i < n; i++) {
		if (b[i].name_len == 0 || (i > 0 && branch_cmp(&b[i - 1], &b[i]) == 0))
			return false;
		if ((unsigned int)b[i].type > SNP_DANGLING)
			return false;
		if (b[i].type == SNP_DANGLING    ? b[i].target_len != 0
			: b[i].type == SNP_ALIAS ? b[i].target_len == 0
						 : b[i].target_len != 20)
			return false;
	}
	buf_init(&m);
	for (size_t i = 0; i < n; i++) {
		buf_printf(&m, "%s ", snp_names[b[i].type]);
		buf_add(&m, b[i].name, b[i].name_len);
		buf_addc(&m, '\0');
		buf_printf(&m, "%zu:", b[i].target_len);
		if (b[i].target_len > 0)
			buf_add(&m, b[i].target, b[i].target_len);
	}
	gitobj_hash("snapshot", m.data != NULL ? m.data : "", m.len, id);
	*out = (unsigned char *)buf_steal(&m, out_len);
	if (*out == NULL)
		*out = xmalloc(1); /* the empty snapshot: a valid pointer to no bytes */
	return true;
}

void
snapshot_iter_init(struct snapshot_iter *it, const unsigned char *raw, size_t len)
{
	it->p = raw;
	it->end = raw + len;
}

/* "<type> <name>\0<len>:<target>" with a known type and a length that fits. */
int
snapshot_iter_next(struct snapshot_iter *it, struct snapshot_branch *b)
{
	const unsigned char *p = it->p, *end = it->end, *sp, *nul;
	size_t tl = 0, i;

	if (p == NULL)
		return -1;
	if (p == end)
		return 0;
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL)
		goto bad;
	for (i = 0; i < BV_NELEM(snp_names); i++)
		if (strlen(snp_names[i]) == (size_t)(sp - p) &&
		    memcmp(p, snp_names[i], (size_t)(sp - p)) == 0)
			break;
	if (i == BV_NELEM(snp_names))
		goto bad;
	nul = memchr(sp + 1, '\0', (size_t)(end - sp - 1));
	if (nul == NULL || nul == sp + 1)
		goto bad;
	p = nul + 1;
	if (p == end || *p < '0' || *p > '9')
		goto bad;
	/* One spelling per manifest: "020:" is not "20:" (gitobj_snapshot_manifest writes
	 * none), or two manifests of different ids would hold the same branches (fuzz). */
	if (*p == '0' && p + 1 < end && p[1] != ':')
		goto bad;
	while (p < end && *p >= '0' && *p <= '9') {
		if (tl > 1000000)
			goto bad;
		tl = tl * 10 + (size_t)(*p++ - '0');
	}
	if (p == end || *p != ':' || (size_t)(end - p - 1) < tl)
		goto bad;
	b->type = (enum snp_target)i;
	b->name = sp + 1;
	b->name_len = (size_t)(nul - sp - 1);
	b->target = tl > 0 ? p + 1 : NULL;
	b->target_len = tl;
	if ((b->type < SNP_ALIAS && tl != 20) || (b->type == SNP_DANGLING && tl != 0))
		goto bad;
	it->p = p + 1 + tl;
	return 1;
bad:
	it->p = NULL;
	it->end = NULL;
	return -1;
}

/* Code points HFS+ ignores in names (git's is_hfs_dotgit): their UTF-8 length at s, 0
 * when s does not start with one. */
static size_t
hfs_ignorable(const unsigned char *s, size_t n)
{
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
	    ((s[2] >= 0x8c && s[2] <= 0x8f) || (s[2] >= 0xaa && s[2] <= 0xae)))
		return 3; /* U+200C..U+200F, U+202A..U+202E */
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x81 && s[2] >= 0xaa && s[2] <= 0xaf)
		return 3; /* U+206A..U+206F */
	if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf)
		return 3; /* U+FEFF */
	return 0;
}

bool
gitobj_name_is_dotgit(const char *name, size_t len)
{
	const unsigned char *s = (const unsigned char *)name;
	char folded[64];
	size_t n = 0;

	/* Drop what HFS+ ignores and fold ASCII case, as those file systems do. */
	for (size_t i = 0; i < len;) {
		size_t skip = hfs_ignorable(s + i, len - i);
		if (skip > 0) {
			i += skip;
			continue;
		}
		if (n == sizeof folded)
			return false; /* too long to be any spelling of .git */
		folded[n++] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
		i++;
	}
	if (n == 5 && memcmp(folded, "git~1", 5) == 0)
		return true; /* NTFS's short name for .git */
	if (n < 4 || memcmp(folded, ".git", 4) != 0)
		return false;
	/* NTFS drops trailing dots and spaces, and ":stream" names the same file. */
	for (size_t i = 4; i < n; i++) {
		if (folded[i] == ':')
			return true;
		if (folded[i] != '.' && folded[i] != ' ')
			return false;
	}
	return true;
}
