/* ingest.c: an uploaded archive (tar, tar.gz/bz2/xz/zst/lz or zip) becomes contents in
 * the store and directories with git's ids, written to Postgres in one transaction. This
 * is the one module that reads archives with libarchive (STYLE.md 10).
 *
 * The archive is read twice. The first pass stores nothing: it checks every entry's path,
 * type and size and reads every byte, so a refused or corrupt archive leaves no blob
 * behind. The second pass reads it entry by entry again: each file's bytes stream into a store writer
 * while its sha1_git is computed; the in-memory tree keeps only names, modes, sizes and
 * ids. Trees are then built bottom-up with tree_builder, leaving out empty directories as
 * `git write-tree` does, so the root id equals `git add -A && git write-tree` of the same
 * files. An archive with a single top-level folder is not unwrapped.
 *
 * Choices worth knowing:
 * - new_contents counts the archive's distinct contents that Postgres did not hold before
 *   this upload (one batched lookup before the transaction). With db == NULL (tests, dry
 *   runs) nothing is known beforehand and every distinct content counts as new.
 * - A bad entry fails the whole upload in the first pass, before any blob is written. Only
 *   a server-side failure in the second pass (full disk, Postgres gone) can leave blobs
 *   unreferenced: content-addressed, harmless, the garbage collector's business.
 * - Entries whose size is not in their header (some zips) are stored first, then their
 *   sha1_git is computed by re-reading the committed blob.
 * - files and bytes describe the final tree (a path given twice counts once; symlinks are
 *   files whose size is their target's length); directories counts the trees of the
 *   final tree, root included; max_unpacked bounds every regular file's bytes read. */
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "shared/gitobj.h"
#include "shared/ingest.h"
#include "shared/objects.h"

#define NONE UINT32_MAX
/* Linux's PATH_MAX: git cannot check out a longer path, and it bounds the tree's depth
 * (and so the recursion in build_tree) to about 2048. */
#define MAX_PATH_BYTES 4095
#define READ_BLOCK 65536
#define MAX_SHOWN_NAME 200

/* One file or directory of the archive's tree. Children form a singly linked list;
 * lookups by (parent, name) go through the hash table in struct ingest. */
struct node {
	size_t name_off; /* into ingest.names */
	uint32_t name_len;
	uint32_t parent, first_child, next_sibling;
	unsigned int mode; /* GIT_MODE_DIR for directories */
	int64_t size;
	unsigned char id[20];
};

/* A set of 20-byte ids; v is an index + 1 into the matching array (0 = empty slot). */
struct idslot {
	unsigned char id[20];
	uint32_t v;
};
struct idset {
	struct idslot *slots;
	size_t cap, n;
};

struct ingest {
	struct store *st;
	ingest_file_cb on_file; /* each regular file stored (second pass), or NULL */
	void *on_file_arg;
	struct archive *a;
	int64_t max_entries, max_unpacked, max_ratio;
	int64_t archive_size; /* bytes of the archive file, for max_ratio */
	int64_t entries, unpacked;

	struct node *nodes;
	size_t nnodes, capnodes;
	struct buf names;
	uint32_t *map; /* node index + 1, keyed by (parent, name) */
	size_t mapcap;

	struct content_row *contents;
	size_t ncontents, capcontents;
	struct idset cset;
	struct directory_row *dirs;
	size_t ndirs, capdirs;
	struct idset dset;

	int64_t files, directories, bytes;
	bool dry; /* first pass: check everything, store nothing */
	char *shown; /* the current entry's name, made safe to show */
	int status;
	char *err;
};

static locale_t utf8_locale;

/* C.UTF-8 ships with every Debian libc; without it names fall back to bytes. */
static void
utf8_locale_init(void)
{
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static int read_archive_in_locale(struct ingest *ig, const char *path);

/* Which decompression filters run inside the process (see filters_probe). */
static pthread_once_t filters_once = PTHREAD_ONCE_INIT;
static unsigned int filters_ok;

static int (*const filter_fns[])(struct archive *) = {
    archive_read_support_filter_gzip,
    archive_read_support_filter_bzip2,
    archive_read_support_filter_xz,
    archive_read_support_filter_zstd,
    archive_read_support_filter_lzip,
};

/* libarchive built without a compression library falls back to running an external
 * program (gzip -d, zstd -d, lzip -d) and says so by returning ARCHIVE_WARN. Uploads
 * must never start programs, so each filter is tried once on a scratch handle and only
 * the in-process ones are registered on real readers. */
static void
filters_probe(void)
{
	for (size_t i = 0; i < BV_NELEM(filter_fns); i++) {
		struct archive *a = archive_read_new();
		if (a == NULL)
			abort();
		if (filter_fns[i](a) == ARCHIVE_OK)
			filters_ok |= 1u << i;
		archive_read_free(a);
	}
}

static int fail(struct ingest *ig, int status, const char *fmt, ...) BV_PRINTF(3, 4);

/* Sets the first error only: later failures while unwinding must not hide the cause. */
static int
fail(struct ingest *ig, int status, const char *fmt, ...)
{
	va_list ap;

	if (ig->err == NULL) {
		va_start(ap, fmt);
		ig->err = xvasprintf(fmt, ap);
		va_end(ap);
		ig->status = status;
	}
	return -1;
}

/* A store error: the store reports a full disk with this exact text (store.h). */
static int
fail_store(struct ingest *ig, char *msg)
{
	int status = strcmp(msg, "no space left on device") == 0 ? 507 : 500;

	fail(ig, status, "%s", msg);
	free(msg);
	return -1;
}

/* True when s[0..n) is valid UTF-8 (so it can go into a JSON error message). */
static bool
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t more;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			more = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			more = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			more = 3, cp = c & 0x07;
		else
			return false;
		if (n - i <= more)
			return false;
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += more + 1;
	}
	return true;
}

/* An entry name as it may be shown to the client: control characters and (unless the
 * name is valid UTF-8) non-ASCII bytes become '?', long names are cut. */
static char *
shown_name(const char *s, size_t n)
{
	bool cut = n > MAX_SHOWN_NAME;
	bool utf8;
	struct buf b;

	if (cut)
		n = MAX_SHOWN_NAME;
	utf8 = utf8_valid((const unsigned char *)s, n);
	buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			c = '?';
		buf_addc(&b, (char)c);
	}
	if (cut)
		buf_adds(&b, "...");
	return buf_steal(&b, NULL);
}

static void
idset_grow(struct idset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	struct idslot *old = s->slots;
	size_t oldcap = s->cap;

	s->slots = xcalloc(cap, sizeof(*s->slots));
	s->cap = cap;
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i].v == 0)
			continue;
		size_t j = ((size_t)old[i].id[0] << 24 | (size_t)old[i].id[1] << 16 |
			       (size_t)old[i].id[2] << 8 | old[i].id[3]) &
		    (cap - 1);
		while (s->slots[j].v != 0)
			j = (j + 1) & (cap - 1);
		s->slots[j] = old[i];
	}
	free(old);
}

/* Returns the slot of id (v == 0 when absent, ready to fill). Ids are sha1s, so their
 * first bytes are already a good hash. */
static struct idslot *
idset_slot(struct idset *s, const unsigned char id[20])
{
	if ((s->n + 1) * 2 > s->cap)
		idset_grow(s);
	size_t j =
	    ((size_t)id[0] << 24 | (size_t)id[1] << 16 | (size_t)id[2] << 8 | id[3]) & (s->cap - 1);
	while (s->slots[j].v != 0 && memcmp(s->slots[j].id, id, 20) != 0)
		j = (j + 1) & (s->cap - 1);
	return &s->slots[j];
}

/* Records a content once, however many paths hold it. */
static void
content_add(struct ingest *ig, const struct content_row *row)
{
	struct idslot *slot = idset_slot(&ig->cset, row->sha1_git);

	if (slot->v != 0)
		return;
	if (ig->ncontents == ig->capcontents) {
		ig->capcontents = ig->capcontents ? ig->capcontents * 2 : 64;
		ig->contents = xrealloc(ig->contents, ig->capcontents * sizeof(*ig->contents));
	}
	ig->contents[ig->ncontents++] = *row;
	memcpy(slot->id, row->sha1_git, 20);
	slot->v = (uint32_t)ig->ncontents;
	ig->cset.n++;
}

/* Records a tree body once; takes ownership of raw. */
static void
dir_add(struct ingest *ig, const unsigned char id[20], unsigned char *raw, size_t len)
{
	struct idslot *slot = idset_slot(&ig->dset, id);

	if (slot->v != 0) {
		free(raw);
		return;
	}
	if (ig->ndirs == ig->capdirs) {
		ig->capdirs = ig->capdirs ? ig->capdirs * 2 : 64;
		ig->dirs = xrealloc(ig->dirs, ig->capdirs * sizeof(*ig->dirs));
	}
	struct directory_row *d = &ig->dirs[ig->ndirs++];
	memcpy(d->id, id, 20);
	d->raw = raw;
	d->raw_len = len;
	memcpy(slot->id, id, 20);
	slot->v = (uint32_t)ig->ndirs;
	ig->dset.n++;
}

static const char *
node_name(const struct ingest *ig, const struct node *n)
{
	return ig->names.data + n->name_off;
}

static size_t
map_hash(uint32_t parent, const char *name, size_t len)
{
	uint64_t h = 14695981039346656037ULL ^ parent;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

/* Slot of (parent, name) in the node map: the node's index + 1, or an empty slot. */
static uint32_t *
map_slot(struct ingest *ig, uint32_t parent, const char *name, size_t len)
{
	size_t mask = ig->mapcap - 1;
	size_t i = map_hash(parent, name, len) & mask;

	for (;;) {
		uint32_t v = ig->map[i];
		if (v == 0)
			return &ig->map[i];
		const struct node *n = &ig->nodes[v - 1];
		if (n->parent == parent && n->name_len == len &&
		    memcmp(node_name(ig, n), name, len) == 0)
			return &ig->map[i];
		i = (i + 1) & mask;
	}
}

static void
map_grow(struct ingest *ig)
{
	ig->mapcap = ig->mapcap ? ig->mapcap * 2 : 256;
	free(ig->map);
	ig->map = xcalloc(ig->mapcap, sizeof(*ig->map));
	/* Node 0 is the root: it has no parent and is never looked up. */
	for (size_t i = 1; i < ig->nnodes; i++) {
		const struct node *n = &ig->nodes[i];
		*map_slot(ig, n->parent, node_name(ig, n), n->name_len) = (uint32_t)(i + 1);
	}
}

static uint32_t
node_lookup(struct ingest *ig, uint32_t parent, const char *name, size_t len)
{
	uint32_t v = *map_slot(ig, parent, name, len);

	return v == 0 ? NONE : v - 1;
}

/* Every node counts against max_entries, implied parent folders included, so a few
 * entries with very deep paths cannot fill memory either. */
static int
node_new(struct ingest *ig, uint32_t parent, const char *name, size_t len, unsigned int mode,
    uint32_t *out)
{
	if (ig->max_entries > 0 && (int64_t)ig->nnodes > ig->max_entries)
		return fail(ig, 413, "archive has more than %lld entries (max_archive_entries)",
		    (long long)ig->max_entries);
	if (ig->nnodes >= NONE - 1)
		return fail(ig, 413, "archive has too many entries");
	if ((ig->nnodes + 1) * 2 > ig->mapcap)
		map_grow(ig);
	if (ig->nnodes == ig->capnodes) {
		ig->capnodes = ig->capnodes ? ig->capnodes * 2 : 256;
		ig->nodes = xrealloc(ig->nodes, ig->capnodes * sizeof(*ig->nodes));
	}
	uint32_t idx = (uint32_t)ig->nnodes++;
	struct node *n = &ig->nodes[idx];
	memset(n, 0, sizeof(*n));
	n->name_off = ig->names.len;
	n->name_len = (uint32_t)len;
	buf_add(&ig->names, name, len);
	buf_addc(&ig->names, '\0');
	n->parent = parent;
	n->first_child = NONE;
	n->mode = mode;
	if (parent != NONE) {
		n->next_sibling = ig->nodes[parent].first_child;
		ig->nodes[parent].first_child = idx;
		*map_slot(ig, parent, name, len) = idx + 1;
	} else
		n->next_sibling = NONE;
	*out = idx;
	return 0;
}

/* Cleans an entry's path in place: one leading "./" and one trailing '/' are dropped;
 * absolute paths, "..", ".", empty components and overlong paths are refused. An empty
 * result means the archive's root. */
static int
path_clean(struct ingest *ig, const char *path, const char **out, size_t *out_len)
{
	size_t len = strlen(path);
	const char *p, *end;

	if (path[0] == '/')
		return fail(ig, 400, "absolute path in entry '%s'", ig->shown);
	if (len >= 2 && path[0] == '.' && path[1] == '/')
		path += 2, len -= 2;
	else if (len == 1 && path[0] == '.')
		path++, len--;
	if (len > 0 && path[len - 1] == '/')
		len--;
	if (len > MAX_PATH_BYTES)
		return fail(ig, 400, "path too long in entry '%s'", ig->shown);
	for (p = path, end = path + len; len > 0; p++) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *cend = slash != NULL ? slash : end;
		size_t clen = (size_t)(cend - p);
		if (clen == 0)
			return fail(ig, 400, "empty path component in entry '%s'", ig->shown);
		if (clen == 2 && p[0] == '.' && p[1] == '.')
			return fail(ig, 400, "path traversal in entry '%s'", ig->shown);
		if (clen == 1 && p[0] == '.')
			return fail(ig, 400, "'.' path component in entry '%s'", ig->shown);
		if (slash == NULL)
			break;
		p = slash;
	}
	*out = path;
	*out_len = len;
	return 0;
}

/* Walks to the folder holding the path's last component, creating missing folders when
 * create is set. A component that exists as a file or symlink is an error: the archive
 * would write through a symlink, or a path would be both a file and a directory.
 * Without create, a missing folder gives *parent = NONE. */
static int
walk_parents(struct ingest *ig, const char *path, size_t len, bool create, uint32_t *parent,
    const char **leaf, size_t *leaf_len)
{
	uint32_t cur = 0;
	const char *p = path, *end = path + len, *slash;

	while ((slash = memchr(p, '/', (size_t)(end - p))) != NULL) {
		size_t clen = (size_t)(slash - p);
		uint32_t child = node_lookup(ig, cur, p, clen);
		if (child == NONE) {
			if (!create) {
				*parent = NONE;
				return 0;
			}
			if (node_new(ig, cur, p, clen, GIT_MODE_DIR, &child) != 0)
				return -1;
		} else if (ig->nodes[child].mode == GIT_MODE_LINK) {
			char *s = shown_name(path, (size_t)(slash - path));
			fail(ig, 400, "entry '%s' goes through symlink '%s'", ig->shown, s);
			free(s);
			return -1;
		} else if (ig->nodes[child].mode != GIT_MODE_DIR) {
			char *s = shown_name(path, (size_t)(slash - path));
			fail(ig, 400, "'%s' is both a file and a directory (entry '%s')", s,
			    ig->shown);
			free(s);
			return -1;
		}
		cur = child;
		p = slash + 1;
	}
	*parent = cur;
	*leaf = p;
	*leaf_len = (size_t)(end - p);
	return 0;
}

/* A non-directory entry's node: created, or reused when a later entry replaces an
 * earlier file at the same path (tar semantics). */
static int
leaf_node(struct ingest *ig, const char *path, size_t len, uint32_t *out)
{
	uint32_t parent, idx;
	const char *leaf;
	size_t leaf_len;

	if (len == 0)
		return fail(ig, 400, "entry '%s' has no name", ig->shown);
	if (walk_parents(ig, path, len, true, &parent, &leaf, &leaf_len) != 0)
		return -1;
	idx = node_lookup(ig, parent, leaf, leaf_len);
	if (idx != NONE && ig->nodes[idx].mode == GIT_MODE_DIR)
		return fail(ig, 400, "'%s' is both a file and a directory", ig->shown);
	if (idx == NONE && node_new(ig, parent, leaf, leaf_len, GIT_MODE_FILE, &idx) != 0)
		return -1;
	*out = idx;
	return 0;
}

static int
add_dir(struct ingest *ig, const char *path, size_t len)
{
	uint32_t parent, idx;
	const char *leaf;
	size_t leaf_len;

	if (len == 0)
		return 0; /* "./": the root */
	if (walk_parents(ig, path, len, true, &parent, &leaf, &leaf_len) != 0)
		return -1;
	idx = node_lookup(ig, parent, leaf, leaf_len);
	if (idx == NONE)
		return node_new(ig, parent, leaf, leaf_len, GIT_MODE_DIR, &idx);
	if (ig->nodes[idx].mode != GIT_MODE_DIR)
		return fail(ig, 400, "'%s' is both a file and a directory", ig->shown);
	return 0;
}

/* libarchive errors on the data: a corrupt upload unless the spooled file itself could
 * not be read. */
static int
fail_archive(struct ingest *ig, const char *what)
{
	int e = archive_errno(ig->a);
	const char *msg = archive_error_string(ig->a);
	int status = (e == ENOMEM || e == EIO || e == EBADF || e == EACCES) ? 500 : 400;

	if (what != NULL)
		return fail(ig, status, "corrupt archive at entry '%s': %s", what,
		    msg ? msg : "read error");
	return fail(ig, status, "corrupt archive: %s", msg ? msg : "read error");
}

/* Counts more unpacked bytes against max_unpacked and max_ratio. Both are checked as the
 * bytes are counted (a header's declared size first, when it has one), in the first pass
 * that writes nothing: a bomb is refused after reading about as much as the limits allow,
 * and its expanded bytes never reach the disk. */
static int
limit_bytes(struct ingest *ig, int64_t more)
{
	int64_t cap;

	if (more < 0 || (ig->max_unpacked > 0 && more > ig->max_unpacked - ig->unpacked))
		return fail(ig, 413,
		    "archive unpacks to more than %lld bytes (max_archive_unpacked)",
		    (long long)ig->max_unpacked);
	ig->unpacked += more;
	if (ig->max_ratio > 0 && ig->archive_size > 0 && ig->unpacked > INGEST_RATIO_FLOOR) {
		cap = ig->archive_size > INT64_MAX / ig->max_ratio
		    ? INT64_MAX
		    : ig->archive_size * ig->max_ratio;
		if (ig->unpacked > cap)
			return fail(ig, 413,
			    "archive unpacks to more than %lld times its size of %lld bytes "
			    "(max_archive_ratio)",
			    (long long)ig->max_ratio, (long long)ig->archive_size);
	}
	return 0;
}

/* Stores len bytes (data, or zeros for a sparse hole when data is NULL). */
static int
put_bytes(
    struct ingest *ig, struct store_writer *w, struct git_hasher *h, const void *data, size_t len)
{
	static const unsigned char zeros[READ_BLOCK];
	char *err = NULL;

	if (w == NULL)
		return 0; /* the first pass only reads */
	while (len > 0) {
		size_t n = data != NULL ? len : (len < sizeof(zeros) ? len : sizeof(zeros));
		const void *p = data != NULL ? data : zeros;
		if (store_writer_write(w, p, n, &err) != 0)
			return fail_store(ig, err);
		if (h != NULL)
			gitobj_hasher_update(h, p, n);
		len -= n;
	}
	return 0;
}

/* sha1_git of a committed blob whose size was unknown while it streamed in. */
static int
rehash_blob(struct ingest *ig, const unsigned char sha256[32], unsigned char id[20])
{
	unsigned char *b = xmalloc(READ_BLOCK);
	struct git_hasher h;
	uint64_t size, done = 0;
	char *err = NULL;
	int fd;

	if ((fd = store_open_blob(ig->st, sha256, &size, &err)) < 0) {
		free(b);
		return fail_store(ig, err);
	}
	gitobj_hasher_init(&h, "blob", size);
	while (done < size) {
		ssize_t n = read(fd, b, READ_BLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			gitobj_hasher_final(&h, id);
			close(fd);
			free(b);
			return fail(ig, 500, "cannot re-read a stored blob: %s",
			    n < 0 ? strerror(errno) : "short file");
		}
		gitobj_hasher_update(&h, b, (size_t)n);
		done += (uint64_t)n;
	}
	gitobj_hasher_final(&h, id);
	close(fd);
	free(b);
	return 0;
}

/* Streams a regular file's bytes into the store, hashing them as git would. Sparse
 * holes (tar) are written as zeros, as extraction would. */
static int
read_regular(struct ingest *ig, struct archive_entry *e, struct content_row *row)
{
	bool known = archive_entry_size_is_set(e);
	int64_t size = known ? archive_entry_size(e) : -1;
	struct store_writer *w;
	struct git_hasher h = {NULL};
	const void *buf;
	size_t len;
	la_int64_t off;
	int64_t pos = 0;
	char *err = NULL;
	int r;

	if (known && limit_bytes(ig, size) != 0)
		return -1;
	if (ig->dry)
		w = NULL;
	else if ((w = store_writer_new(ig->st, &err)) == NULL)
		return fail_store(ig, err);
	if (known && w != NULL)
		gitobj_hasher_init(&h, "blob", (uint64_t)size);
	for (;;) {
		r = archive_read_data_block(ig->a, &buf, &len, &off);
		if (r != ARCHIVE_OK && r != ARCHIVE_EOF) {
			fail_archive(ig, ig->shown);
			goto bad;
		}
		if (r == ARCHIVE_EOF)
			len = 0;
		/* Never write past the size the header promised. */
		if (off < pos || (known && (off > size || (int64_t)len > size - off))) {
			fail(ig, 400, "corrupt archive: entry '%s' has more data than its size",
			    ig->shown);
			goto bad;
		}
		if (!known && limit_bytes(ig, off - pos + (int64_t)len) != 0)
			goto bad;
		struct git_hasher *hp = known && w != NULL ? &h : NULL;
		if (off > pos && put_bytes(ig, w, hp, NULL, (size_t)(off - pos)) != 0)
			goto bad;
		if (len > 0 && put_bytes(ig, w, hp, buf, len) != 0)
			goto bad;
		pos = off + (int64_t)len;
		if (r == ARCHIVE_EOF)
			break;
	}
	if (known && pos != size) {
		fail(ig, 400, "corrupt archive: entry '%s' is truncated", ig->shown);
		goto bad;
	}
	if (w == NULL)
		return 0;
	if (store_writer_commit(w, row->sha256, row->sha1, &err) != 0) {
		w = NULL;
		fail_store(ig, err);
		goto bad;
	}
	row->length = pos;
	if (known)
		gitobj_hasher_final(&h, row->sha1_git);
	else if (rehash_blob(ig, row->sha256, row->sha1_git) != 0)
		return -1;
	return 0;
bad:
	store_writer_abort(w);
	if (h.ctx != NULL) {
		unsigned char dummy[20];
		gitobj_hasher_final(&h, dummy);
	}
	return -1;
}

/* A symlink's content is its target string, stored like any file. */
static int
read_symlink(struct ingest *ig, struct archive_entry *e, struct content_row *row)
{
	const char *target = archive_entry_symlink(e);
	struct store_writer *w;
	char *err = NULL;
	size_t len;

	if (target == NULL || target[0] == '\0')
		return fail(ig, 400, "symlink entry '%s' has no target", ig->shown);
	len = strlen(target);
	if (ig->dry)
		return 0;
	if ((w = store_writer_new(ig->st, &err)) == NULL)
		return fail_store(ig, err);
	if (store_writer_write(w, target, len, &err) != 0) {
		store_writer_abort(w);
		return fail_store(ig, err);
	}
	if (store_writer_commit(w, row->sha256, row->sha1, &err) != 0)
		return fail_store(ig, err);
	gitobj_hash("blob", target, len, row->sha1_git);
	row->length = (int64_t)len;
	return 0;
}

/* A hard link takes the blob and mode of an earlier file; its own data, if any, is
 * ignored. */
static int
add_hardlink(struct ingest *ig, const char *path, size_t len, const char *target)
{
	char *shown_target = shown_name(target, strlen(target));
	uint32_t parent, src = NONE, idx;
	const char *tpath, *leaf;
	size_t tlen, leaf_len;
	int rc = -1;

	/* The target path obeys the same rules as a pathname. */
	char *saved = ig->shown;
	ig->shown = shown_target;
	if (path_clean(ig, target, &tpath, &tlen) != 0) {
		ig->shown = saved;
		goto out;
	}
	ig->shown = saved;
	if (tlen > 0 && walk_parents(ig, tpath, tlen, false, &parent, &leaf, &leaf_len) != 0)
		goto out;
	if (tlen > 0 && parent != NONE)
		src = node_lookup(ig, parent, leaf, leaf_len);
	if (src == NONE || ig->nodes[src].mode == GIT_MODE_DIR) {
		fail(ig, 400, "hard link '%s' points to '%s', which is not an earlier file",
		    ig->shown, shown_target);
		goto out;
	}
	if (leaf_node(ig, path, len, &idx) != 0)
		goto out;
	/* leaf_node may have grown the array: index again. */
	ig->nodes[idx].mode = ig->nodes[src].mode;
	ig->nodes[idx].size = ig->nodes[src].size;
	memcpy(ig->nodes[idx].id, ig->nodes[src].id, 20);
	rc = 0;
out:
	free(shown_target);
	return rc;
}

static int
add_entry(struct ingest *ig, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e), *path;
	unsigned int type = archive_entry_filetype(e);
	struct content_row row;
	size_t len;
	uint32_t idx;

	if (raw == NULL || raw[0] == '\0')
		return fail(ig, 400, "entry %lld has no usable path name", (long long)ig->entries);
	free(ig->shown);
	ig->shown = shown_name(raw, strlen(raw));
	if (path_clean(ig, raw, &path, &len) != 0)
		return -1;
	if (archive_entry_hardlink(e) != NULL)
		return add_hardlink(ig, path, len, archive_entry_hardlink(e));
	switch (type) {
	case AE_IFDIR:
		return add_dir(ig, path, len);
	case AE_IFREG:
	case AE_IFLNK:
		if (leaf_node(ig, path, len, &idx) != 0)
			return -1;
		memset(&row, 0, sizeof(row));
		if (type == AE_IFREG ? read_regular(ig, e, &row) : read_symlink(ig, e, &row))
			return -1;
		if (!ig->dry)
			content_add(ig, &row);
		if (!ig->dry && type == AE_IFREG && ig->on_file != NULL)
			ig->on_file(ig->on_file_arg, path, len, archive_entry_perm(e), &row);
		struct node *n = &ig->nodes[idx];
		memcpy(n->id, row.sha1_git, 20);
		n->size = row.length;
		if (type == AE_IFLNK)
			n->mode = GIT_MODE_LINK;
		else
			n->mode = (archive_entry_perm(e) & 0100) ? GIT_MODE_EXEC : GIT_MODE_FILE;
		return 0;
	default:
		return fail(
		    ig, 400, "entry '%s' is a device, fifo or socket: not allowed", ig->shown);
	}
}

/* Builds the tree of a directory node and its subtrees, bottom-up. Returns 1 with id
 * filled, 0 when the directory holds no file at any depth (left out, as git does), -1
 * on error. Depth is bounded by MAX_PATH_BYTES. */
static int
build_tree(struct ingest *ig, uint32_t dir, unsigned char id[20])
{
	struct tree_builder *tb = tree_builder_new();
	unsigned char *raw;
	size_t raw_len;
	int r;

	for (uint32_t c = ig->nodes[dir].first_child; c != NONE; c = ig->nodes[c].next_sibling) {
		unsigned char cid[20];
		const struct node *n = &ig->nodes[c];
		if (n->mode == GIT_MODE_DIR) {
			if ((r = build_tree(ig, c, cid)) < 0) {
				tree_builder_free(tb);
				return -1;
			}
			if (r == 0)
				continue;
		} else {
			memcpy(cid, n->id, 20);
			ig->files++;
			ig->bytes += n->size;
		}
		n = &ig->nodes[c];
		if (!tree_builder_add(tb, node_name(ig, n), n->name_len, n->mode, cid)) {
			tree_builder_free(tb);
			return fail(ig, 500, "internal error: tree entry refused");
		}
	}
	if (tree_builder_count(tb) == 0 && dir != 0) {
		tree_builder_free(tb);
		return 0;
	}
	tree_builder_finish(tb, &raw, &raw_len, id);
	tree_builder_free(tb);
	dir_add(ig, id, raw, raw_len);
	ig->directories++;
	return 1;
}

/* Reads the archive with a UTF-8 character type for this thread only: in the C locale
 * libarchive cannot convert names that a zip flags as UTF-8 (Python, Java and Windows
 * tools set the flag) and archive_entry_pathname() returns NULL for them. */
static int
read_archive(struct ingest *ig, const char *path)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	locale_t prev = (locale_t)0;
	int rc;

	pthread_once(&once, utf8_locale_init);
	if (utf8_locale != (locale_t)0)
		prev = uselocale(utf8_locale);
	rc = read_archive_in_locale(ig, path);
	if (prev != (locale_t)0)
		uselocale(prev);
	return rc;
}

/* The archive, entry by entry. */
static int
read_archive_in_locale(struct ingest *ig, const char *path)
{
	struct archive_entry *e;
	int r;

	pthread_once(&filters_once, filters_probe);
	if ((ig->a = archive_read_new()) == NULL)
		abort();
	archive_read_support_format_tar(ig->a);
	/* Seekable: the central directory gives sizes that local headers may lack. */
	archive_read_support_format_zip_seekable(ig->a);
	for (size_t i = 0; i < BV_NELEM(filter_fns); i++)
		if (filters_ok & (1u << i))
			(void)filter_fns[i](ig->a);
	if (archive_read_open_filename(ig->a, path, READ_BLOCK) != ARCHIVE_OK) {
		int en = archive_errno(ig->a);
		const char *msg = archive_error_string(ig->a);
		if (en == ENOENT || en == EACCES || en == EIO || en == ENOMEM)
			return fail(ig, 500, "cannot open uploaded archive: %s", msg ? msg : "");
		return fail(ig, 400, "not a tar, tar.gz or zip archive: %s",
		    msg ? msg : "unrecognised data");
	}
	for (;;) {
		r = archive_read_next_header(ig->a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			/* No format recognised yet: not an archive we read at all. */
			if (archive_format(ig->a) == 0) {
				const char *msg = archive_error_string(ig->a);
				return fail(ig, 400, "not a tar, tar.gz or zip archive: %s",
				    msg ? msg : "unrecognised data");
			}
			return fail_archive(ig, NULL);
		}
		if (++ig->entries > ig->max_entries && ig->max_entries > 0)
			return fail(ig, 413,
			    "archive has more than %lld entries (max_archive_entries)",
			    (long long)ig->max_entries);
		if (add_entry(ig, e) != 0)
			return -1;
	}
	return 0;
}

static int
db_status(struct db *db)
{
	PGconn *c = db_conn(db);
	const char *state = db_last_sqlstate(db);

	if (c == NULL || PQstatus(c) != CONNECTION_OK)
		return 503;
	/* connection_exception, operator_intervention (shutdown), too_many_connections */
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
	    strcmp(state, "53300") == 0)
		return 503;
	return 500;
}

static int
count_found(void *arg, const struct content_row *row)
{
	(*(size_t *)arg)++;
	return 0;
}

/* new_contents by a lookup before the transaction, then every row in one transaction. */
/* qsort orders of rows by id. */
static int
cmp_content(const void *a, const void *b)
{
	return memcmp(((const struct content_row *)a)->sha1_git,
	    ((const struct content_row *)b)->sha1_git, 20);
}

static int
cmp_dir(const void *a, const void *b)
{
	return memcmp(
	    ((const struct directory_row *)a)->id, ((const struct directory_row *)b)->id, 20);
}

/* The touch before the commit (store_touch): every blob the new contents rows name is
 * made young again inside the transaction, after the inserts, so garbage collection keeps
 * it for gc_grace more; a blob already collected (the upload took longer than gc_grace
 * between its write and now) fails the upload instead of committing a row that names
 * nothing. A backend that cannot touch is one garbage collection refuses to sweep: then
 * there is nothing to guard against. 0, or -1 with the failure recorded. */
static int
touch_blobs(struct ingest *ig)
{
	unsigned char(*sha)[32] = xcalloc(ig->ncontents ? ig->ncontents : 1, 32);
	size_t failed = 0;
	char *err = NULL, hex[65];
	int rc = 0;

	for (size_t i = 0; i < ig->ncontents; i++)
		memcpy(sha[i], ig->contents[i].sha256, 32);
	if (store_touch_all(
		ig->st, (const unsigned char(*)[32])sha, ig->ncontents, &failed, &err) != 0) {
		if (errno == ENOENT) {
			hex_encode(sha[failed], 32, hex);
			fail(ig, 503,
			    "blob %s was deleted from the store before its contents row was"
			    " committed (garbage collection; gc_grace too short for this upload?)",
			    hex);
			rc = -1;
		} else if (errno != ENOTSUP) {
			fail(ig, 500, "%s", err);
			rc = -1;
		}
		free(err);
	}
	free(sha);
	return rc;
}

/* Writes every row in one transaction, after counting the contents already known. */
static int
write_db(struct ingest *ig, struct db *db, int64_t *new_contents)
{
	unsigned char(*ids)[20] = xcalloc(ig->ncontents ? ig->ncontents : 1, 20);
	size_t found = 0;
	char *err = NULL;

	for (size_t i = 0; i < ig->ncontents; i++)
		memcpy(ids[i], ig->contents[i].sha1_git, 20);
	if (db_ensure(db, &err) != 0)
		goto dberr;
	if (ig->ncontents > 0 &&
	    objects_get_contents(
		db, (const unsigned char(*)[20])ids, ig->ncontents, count_found, &found, &err) != 0)
		goto dberr;
	*new_contents = (int64_t)(ig->ncontents - (found < ig->ncontents ? found : ig->ncontents));
	/* Rows go in id order, so two uploads sharing contents take their row locks in the
	 * same order and cannot deadlock; the sets are no longer needed, so sorting is safe. */
	qsort(ig->contents, ig->ncontents, sizeof *ig->contents, cmp_content);
	qsort(ig->dirs, ig->ndirs, sizeof *ig->dirs, cmp_dir);
	for (int attempt = 0;; attempt++) {
		if (db_begin(db, &err) != 0)
			goto dberr;
		/* A big tree's inserts may take long, and may wait on another upload's rows
		 * of the same contents: no statement or lock timeout for this transaction. */
		if (db_run(db, "SET LOCAL statement_timeout = 0", 0, NULL, &err) != 0 ||
		    db_run(db, "SET LOCAL lock_timeout = 0", 0, NULL, &err) != 0) {
			db_rollback(db);
			goto dberr;
		}
		if (objects_put_contents(db, ig->contents, ig->ncontents, &err) == 0 &&
		    objects_put_directories(db, ig->dirs, ig->ndirs, &err) == 0) {
			if (touch_blobs(ig) != 0) {
				db_rollback(db);
				free(ids);
				return -1;
			}
			if (db_commit(db, &err) == 0)
				break;
		}
		const char *state = db_last_sqlstate(db);
		bool again = strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0 ||
		    strcmp(state, "55P03") == 0;
		int status = db_status(db);
		db_rollback(db);
		if (again && attempt < 3) {
			/* deadlock or serialization failure: nothing was written, try again */
			free(err);
			err = NULL;
			continue;
		}
		fail(ig, status, "database: %s", err);
		free(err);
		free(ids);
		return -1;
	}
	free(ids);
	return 0;
dberr:
	fail(ig, db_status(db), "database: %s", err ? err : "error");
	free(err);
	free(ids);
	return -1;
}

/* Forgets the first pass's tree and counters, keeping the limits. */
static void
ingest_reset(struct ingest *ig)
{
	if (ig->a != NULL)
		archive_read_free(ig->a);
	ig->a = NULL;
	free(ig->nodes);
	ig->nodes = NULL;
	ig->nnodes = ig->capnodes = 0;
	buf_free(&ig->names);
	free(ig->map);
	ig->map = NULL;
	ig->mapcap = 0;
	ig->entries = ig->unpacked = 0;
}

static void
ingest_cleanup(struct ingest *ig)
{
	if (ig->a != NULL)
		archive_read_free(ig->a);
	free(ig->nodes);
	buf_free(&ig->names);
	free(ig->map);
	free(ig->contents);
	free(ig->cset.slots);
	for (size_t i = 0; i < ig->ndirs; i++)
		free((void *)ig->dirs[i].raw);
	free(ig->dirs);
	free(ig->dset.slots);
	free(ig->shown);
}

/* db == NULL skips Postgres entirely (tests and dry runs): blobs are still stored and
 * the ids computed. limits == NULL or a limit <= 0 means no limit. */
int
ingest_archive(struct store *st, struct db *db, const char *path,
    const struct ingest_limits *limits, struct ingest_result *out, int *http_status, char **errstr)
{
	return ingest_archive_files(st, db, path, limits, NULL, NULL, out, http_status, errstr);
}

int
ingest_archive_files(struct store *st, struct db *db, const char *path,
    const struct ingest_limits *limits, ingest_file_cb on_file, void *on_file_arg,
    struct ingest_result *out, int *http_status, char **errstr)
{
	struct ingest ig;
	struct stat sb;
	uint32_t root;
	int64_t new_contents;

	memset(&ig, 0, sizeof(ig));
	ig.st = st;
	ig.on_file = on_file;
	ig.on_file_arg = on_file_arg;
	buf_init(&ig.names);
	if (limits != NULL) {
		ig.max_entries = limits->max_entries;
		ig.max_unpacked = limits->max_unpacked;
		ig.max_ratio = limits->max_ratio;
	}
	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
		ig.archive_size = (int64_t)sb.st_size;
	/* Fail fast when Postgres is down, before storing any bytes. */
	if (db != NULL) {
		char *err = NULL;
		if (db_ensure(db, &err) != 0) {
			fail(&ig, 503, "database unavailable: %s", err ? err : "");
			free(err);
			goto out;
		}
	}
	/* First pass: every check, nothing stored. */
	ig.dry = true;
	if (node_new(&ig, NONE, "", 0, GIT_MODE_DIR, &root) != 0 || read_archive(&ig, path) != 0)
		goto out;
	ingest_reset(&ig);
	ig.dry = false;
	if (node_new(&ig, NONE, "", 0, GIT_MODE_DIR, &root) != 0 || read_archive(&ig, path) != 0)
		goto out;
	memset(out, 0, sizeof(*out));
	if (build_tree(&ig, root, out->root) < 0)
		goto out;
	new_contents = (int64_t)ig.ncontents;
	if (db != NULL && write_db(&ig, db, &new_contents) != 0)
		goto out;
	out->files = ig.files;
	out->directories = ig.directories;
	out->bytes = ig.bytes;
	out->new_contents = new_contents;
out:
	ingest_cleanup(&ig);
	if (ig.err != NULL) {
		*http_status = ig.status;
		*errstr = ig.err;
		return -1;
	}
	*http_status = 200;
	return 0;
}
