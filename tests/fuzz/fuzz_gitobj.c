/* fuzz_gitobj.c: git and SWH object bodies as the loader and the cook read them
 * (shared/gitobj.c): trees, commits, tags and snapshot manifests. Input: one byte choosing
 * the parser, then the body. Properties: every pointer handed out lies inside the body;
 * a tree's entries, put through the tree builder, give a canonical body that parses to
 * the same entries and builds to itself again; a commit's parts add up to the whole body;
 * a snapshot's branches, put through the manifest writer, parse back to the same branches,
 * and a sorted manifest is written back byte for byte. */
#include <strings.h>

#include "shared/gitobj.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

#define INSIDE(ptr, n, raw, len)                                                                   \
	((const unsigned char *)(ptr) >= (raw) &&                                                  \
	    (const unsigned char *)(ptr) + (n) <= (raw) + (len))

static bool
mode_known(unsigned int m)
{
	return m == GIT_MODE_FILE || m == GIT_MODE_EXEC || m == GIT_MODE_LINK ||
	    m == GIT_MODE_DIR || m == GIT_MODE_GITLINK;
}

/* The entries of a tree body into a builder; NULL when the body cannot be rebuilt. */
static struct tree_builder *
tree_rebuild(const unsigned char *raw, size_t len, size_t *count)
{
	struct tree_builder *tb = tree_builder_new();
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t nl;
	const unsigned char *id;
	int r;

	*count = 0;
	tree_iter_init(&it, raw, len);
	while ((r = tree_iter_next(&it, &mode, &name, &nl, &id)) == 1) {
		FUZZ_CHECK(nl > 0 && INSIDE(name, nl, raw, len) && INSIDE(id, 20, raw, len));
		FUZZ_CHECK(memchr(name, '/', nl) == NULL && memchr(name, '\0', nl) == NULL);
		FUZZ_CHECK(
		    !(nl == 1 && name[0] == '.') && !(nl == 2 && memcmp(name, "..", 2) == 0));
		(void)gitobj_name_is_dotgit(name, nl);
		(*count)++;
		if (!mode_known(mode) || !tree_builder_add(tb, name, nl, mode, id)) {
			/* An odd mode or a name twice: git fsck's business, not a rebuild. */
			while ((r = tree_iter_next(&it, &mode, &name, &nl, &id)) == 1)
				;
			tree_builder_free(tb);
			return NULL;
		}
	}
	FUZZ_CHECK(r == 0 || r == -1);
	FUZZ_CHECK(tree_iter_next(&it, &mode, &name, &nl, &id) == r); /* errors stick */
	if (r != 0) {
		tree_builder_free(tb);
		return NULL;
	}
	return tb;
}

static void
fuzz_tree(const unsigned char *raw, size_t len)
{
	struct tree_builder *tb, *tb2;
	unsigned char *out, *out2, id[20], id2[20], want[20];
	size_t out_len, out2_len, n, n2;

	if ((tb = tree_rebuild(raw, len, &n)) == NULL)
		return;
	FUZZ_CHECK(tree_builder_count(tb) == n);
	tree_builder_finish(tb, &out, &out_len, id);
	tree_builder_free(tb);
	/* The canonical body is a fixed point. */
	tb2 = tree_rebuild(out, out_len, &n2);
	FUZZ_CHECK(tb2 != NULL && n2 == n);
	tree_builder_finish(tb2, &out2, &out2_len, id2);
	tree_builder_free(tb2);
	FUZZ_CHECK(out2_len == out_len && memcmp(out, out2, out_len) == 0);
	FUZZ_CHECK(memcmp(id, id2, 20) == 0);
	gitobj_hash("tree", out, out_len, want);
	FUZZ_CHECK(memcmp(id, want, 20) == 0);
	free(out);
	free(out2);
}

static void
fuzz_commit(const unsigned char *raw, size_t len)
{
	struct commit_info ci;
	char hex[41];
	size_t prefix;

	if (!gitobj_parse_commit(raw, len, &ci))
		return;
	prefix = 46 + 48 * ci.n_parents;
	FUZZ_CHECK(len >= prefix);
	hex_encode(ci.tree, 20, hex);
	FUZZ_CHECK(strncasecmp((const char *)raw + 5, hex, 40) == 0);
	for (size_t i = 0; i < ci.n_parents; i++) {
		hex_encode(ci.parents[i], 20, hex);
		FUZZ_CHECK(memcmp(raw + 46 + 48 * i, "parent ", 7) == 0);
		FUZZ_CHECK(strncasecmp((const char *)raw + 46 + 48 * i + 7, hex, 40) == 0);
	}
	FUZZ_CHECK(ci.headers == raw + prefix);
	FUZZ_CHECK(INSIDE(ci.headers, ci.headers_len, raw, len));
	FUZZ_CHECK(INSIDE(ci.message, ci.message_len, raw, len));
	FUZZ_CHECK(ci.headers_len == len - prefix ||
	    (ci.headers_len + 1 + ci.message_len == len - prefix &&
		ci.headers[ci.headers_len] == '\n'));
	FUZZ_CHECK(memmem(ci.headers, ci.headers_len, "\n\n", 2) == NULL);
	commit_info_clear(&ci);
}

static void
fuzz_tag(const unsigned char *raw, size_t len)
{
	unsigned char target[20];
	enum swhid_kind kind;
	const char *name;
	size_t nl;

	if (!gitobj_parse_tag(raw, len, target, &kind, &name, &nl))
		return;
	FUZZ_CHECK(
	    kind == SWHID_CNT || kind == SWHID_DIR || kind == SWHID_REV || kind == SWHID_REL);
	FUZZ_CHECK(nl > 0 && INSIDE(name, nl, raw, len));
	FUZZ_CHECK(memchr(name, '\n', nl) == NULL);
}

/* Byte order of names, shorter first on a tie: the manifest's order. */
static int
name_cmp(const struct snapshot_branch *x, const struct snapshot_branch *y)
{
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);

	return c != 0 ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static void
fuzz_snapshot(const unsigned char *raw, size_t len)
{
	struct snapshot_iter it;
	struct snapshot_branch *b = NULL, br;
	size_t n = 0, cap = 0, out_len;
	unsigned char *out, id[20], want[20];
	bool sorted = true;
	int r;

	snapshot_iter_init(&it, raw, len);
	while ((r = snapshot_iter_next(&it, &br)) == 1) {
		FUZZ_CHECK(br.name_len > 0 && INSIDE(br.name, br.name_len, raw, len));
		FUZZ_CHECK(br.target == NULL || INSIDE(br.target, br.target_len, raw, len));
		FUZZ_CHECK(br.type <= SNP_DANGLING && snp_target_name(br.type) != NULL);
		if (n == cap)
			b = xrealloc(b, (cap = cap ? 2 * cap : 8) * sizeof *b);
		if (n > 0 && name_cmp(&b[n - 1], &br) >= 0)
			sorted = false;
		b[n++] = br;
	}
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == 0 && gitobj_snapshot_manifest(b, n, &out, &out_len, id)) {
		struct snapshot_iter it2;
		size_t k = 0;

		gitobj_hash("snapshot", out, out_len, want);
		FUZZ_CHECK(memcmp(id, want, 20) == 0);
		snapshot_iter_init(&it2, out, out_len);
		while ((r = snapshot_iter_next(&it2, &br)) == 1) {
			FUZZ_CHECK(k < n && br.type == b[k].type && br.name_len == b[k].name_len &&
			    memcmp(br.name, b[k].name, br.name_len) == 0 &&
			    br.target_len == b[k].target_len &&
			    (br.target_len == 0 ||
				memcmp(br.target, b[k].target, br.target_len) == 0));
			k++;
		}
		FUZZ_CHECK(r == 0 && k == n);
		if (sorted)
			FUZZ_CHECK(out_len == len && memcmp(out, raw, len) == 0);
		free(out);
	}
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *raw;

	if (size < 1)
		return 0;
	/* A copy of exactly the body's size, so ASan sees any read past its end. */
	raw = xmalloc(size - 1 > 0 ? size - 1 : 1);
	memcpy(raw, data + 1, size - 1);
	switch (data[0] % 4) {
	case 0:
		fuzz_tree(raw, size - 1);
		break;
	case 1:
		fuzz_commit(raw, size - 1);
		break;
	case 2:
		fuzz_tag(raw, size - 1);
		break;
	default:
		fuzz_snapshot(raw, size - 1);
		break;
	}
	free(raw);
	return 0;
}
