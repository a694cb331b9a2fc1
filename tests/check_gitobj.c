/* check_gitobj.c: blob and tree ids against values computed with real git (git
 * hash-object, git mktree --missing), the tree parser on hostile bytes, and SWHIDs. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "shared/gitobj.h"

#define EMPTY_BLOB "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
#define HELLO_BLOB "ce013625030ba8dba906f756967f9e9ca394464a" /* "hello\n" */
#define TARGET_BLOB "1de565933b05f74c75ff9a6520af5f9f8a5a2f1d" /* "target" */
#define EMPTY_TREE "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

static void
id_from_hex(const char *hex, unsigned char id[20])
{
	ck_assert(hex_decode(hex, id, 20));
}

static void
assert_id(const unsigned char id[20], const char *want)
{
	char hex[41];

	hex_encode(id, 20, hex);
	ck_assert_str_eq(hex, want);
}

START_TEST(test_blob_ids)
{
	unsigned char id[20];

	gitobj_hash("blob", "", 0, id);
	assert_id(id, EMPTY_BLOB);
	gitobj_hash("blob", "hello\n", 6, id);
	assert_id(id, HELLO_BLOB);
	gitobj_hash("blob", "target", 6, id);
	assert_id(id, TARGET_BLOB);
	gitobj_hash("tree", "", 0, id);
	assert_id(id, EMPTY_TREE);
}
END_TEST

/* Streamed in odd chunks equals git hash-object of 100000 zero bytes. */
START_TEST(test_blob_streamed)
{
	unsigned char *zeros = calloc(1, 100000), id[20];
	struct git_hasher h;
	size_t done = 0, step = 1;

	gitobj_hasher_init(&h, "blob", 100000);
	while (done < 100000) {
		size_t n = step < 100000 - done ? step : 100000 - done;
		gitobj_hasher_update(&h, zeros + done, n);
		done += n;
		step = step * 3 + 1;
	}
	gitobj_hasher_final(&h, id);
	assert_id(id, "f18c9a678f421d5c52f6c5acc23670267d5f632f");
	free(zeros);
}
END_TEST

struct tcase_entry {
	const char *name;
	unsigned int mode;
	const char *hex;
};

/* Builds a tree from entries given in the order listed; returns its hex id. */
static void
build(const struct tcase_entry *e, size_t n, char hex[41], unsigned char **raw, size_t *raw_len)
{
	struct tree_builder *tb = tree_builder_new();
	unsigned char id[20], eid[20];

	for (size_t i = 0; i < n; i++) {
		id_from_hex(e[i].hex, eid);
		ck_assert_msg(tree_builder_add(tb, e[i].name, strlen(e[i].name), e[i].mode, eid),
		    "add %s", e[i].name);
	}
	ck_assert_uint_eq(tree_builder_count(tb), n);
	tree_builder_finish(tb, raw, raw_len, id);
	tree_builder_free(tb);
	hex_encode(id, 20, hex);
}

/* The sort trap: a tree "a" sorts as "a/", after "a-b" and "a.c", before "a0"; a file
 * "a" sorts first. Expected ids from git mktree --missing. */
START_TEST(test_tree_sort_trap)
{
	static const struct tcase_entry dir_a[] = {
	    {"a0", GIT_MODE_FILE, EMPTY_BLOB},
	    {"a", GIT_MODE_DIR, EMPTY_TREE},
	    {"a.c", GIT_MODE_FILE, EMPTY_BLOB},
	    {"a-b", GIT_MODE_FILE, HELLO_BLOB},
	};
	static const struct tcase_entry file_a[] = {
	    {"a0", GIT_MODE_FILE, EMPTY_BLOB},
	    {"a.c", GIT_MODE_FILE, EMPTY_BLOB},
	    {"a-b", GIT_MODE_FILE, HELLO_BLOB},
	    {"a", GIT_MODE_FILE, HELLO_BLOB},
	};
	unsigned char *raw;
	size_t len;
	char hex[41];

	build(dir_a, BV_NELEM(dir_a), hex, &raw, &len);
	ck_assert_str_eq(hex, "e234d9d9ed395691913aff1ffde9c5e9c0d1a43c");
	/* The exact body: mode "40000" without a leading zero, in git's order. */
	ck_assert_uint_eq(len, 0x78);
	ck_assert(memcmp(raw, "100644 a-b\0", 11) == 0);
	ck_assert(memcmp(raw + 62, "40000 a\0", 8) == 0);
	free(raw);
	build(file_a, BV_NELEM(file_a), hex, &raw, &len);
	ck_assert_str_eq(hex, "7db98898dfedc48b1f525326dd1c28ec4aaec429");
	ck_assert(memcmp(raw, "100644 a\0", 9) == 0);
	free(raw);
}
END_TEST

START_TEST(test_tree_exec_symlink)
{
	static const struct tcase_entry e[] = {
	    {"run.sh", GIT_MODE_EXEC, HELLO_BLOB},
	    {"link", GIT_MODE_LINK, TARGET_BLOB},
	    {"file", GIT_MODE_FILE, EMPTY_BLOB},
	};
	unsigned char *raw;
	size_t len;
	char hex[41];

	build(e, BV_NELEM(e), hex, &raw, &len);
	ck_assert_str_eq(hex, "a6329e6d9d1f1f0e7cd2313dc7b03485048ec9c8");
	free(raw);
}
END_TEST

/* A gitlink is not a tree for ordering: "sub" < "sub-x" < "sub.txt"; as a tree, "sub"
 * goes last ("sub/"). */
START_TEST(test_tree_gitlink_and_subtree)
{
	static const struct tcase_entry link[] = {
	    {"sub.txt", GIT_MODE_FILE, EMPTY_BLOB},
	    {"sub", GIT_MODE_GITLINK, "1111111111111111111111111111111111111111"},
	    {"sub-x", GIT_MODE_FILE, EMPTY_BLOB},
	};
	static const struct tcase_entry dir[] = {
	    {"sub", GIT_MODE_DIR, "e234d9d9ed395691913aff1ffde9c5e9c0d1a43c"},
	    {"sub.txt", GIT_MODE_FILE, EMPTY_BLOB},
	    {"sub-x", GIT_MODE_FILE, EMPTY_BLOB},
	};
	unsigned char *raw;
	size_t len;
	char hex[41];

	build(link, BV_NELEM(link), hex, &raw, &len);
	ck_assert_str_eq(hex, "6e3981a9add8b3c091bd92f737b030b33befdff7");
	free(raw);
	build(dir, BV_NELEM(dir), hex, &raw, &len);
	ck_assert_str_eq(hex, "fdbf9a14ede5fb398fa4c793ef8a403b959845b8");
	free(raw);
}
END_TEST

START_TEST(test_tree_empty_and_refusals)
{
	struct tree_builder *tb = tree_builder_new();
	unsigned char id[20] = {0}, *raw;
	size_t len;

	ck_assert(!tree_builder_add(tb, "", 0, GIT_MODE_FILE, id));
	ck_assert(!tree_builder_add(tb, ".", 1, GIT_MODE_FILE, id));
	ck_assert(!tree_builder_add(tb, "..", 2, GIT_MODE_DIR, id));
	ck_assert(!tree_builder_add(tb, "a/b", 3, GIT_MODE_FILE, id));
	ck_assert(!tree_builder_add(tb, "a\0b", 3, GIT_MODE_FILE, id));
	ck_assert(!tree_builder_add(tb, "x", 1, 0100664, id));
	ck_assert(tree_builder_add(tb, "x", 1, GIT_MODE_FILE, id));
	/* Same name, whatever the mode: refused. */
	ck_assert(!tree_builder_add(tb, "x", 1, GIT_MODE_DIR, id));
	ck_assert_uint_eq(tree_builder_count(tb), 1);
	tree_builder_free(tb);

	tb = tree_builder_new();
	tree_builder_finish(tb, &raw, &len, id);
	ck_assert_uint_eq(len, 0);
	assert_id(id, EMPTY_TREE);
	free(raw);
	tree_builder_free(tb);
	tree_builder_free(NULL);
}
END_TEST

/* Many entries: the duplicate check must still see every name. */
START_TEST(test_tree_many_entries)
{
	struct tree_builder *tb = tree_builder_new();
	unsigned char id[20] = {0}, *raw;
	char name[32];
	size_t len;

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ck_assert(tree_builder_add(tb, name, strlen(name), GIT_MODE_FILE, id));
	}
	for (int i = 0; i < 5000; i += 7) {
		snprintf(name, sizeof(name), "f%d", i);
		ck_assert(!tree_builder_add(tb, name, strlen(name), GIT_MODE_DIR, id));
	}
	ck_assert_uint_eq(tree_builder_count(tb), 5000);
	tree_builder_finish(tb, &raw, &len, id);
	/* Sorted: f0, f1, f10, f100, f1000, f1001 ... */
	ck_assert(memcmp(raw, "100644 f0\0", 10) == 0);
	ck_assert(memcmp(raw + 30, "100644 f1\0", 10) == 0);
	ck_assert(memcmp(raw + 60, "100644 f10\0", 11) == 0);
	free(raw);
	tree_builder_free(tb);
}
END_TEST

START_TEST(test_tree_iter_roundtrip)
{
	static const struct tcase_entry e[] = {
	    {"run.sh", GIT_MODE_EXEC, HELLO_BLOB},
	    {"link", GIT_MODE_LINK, TARGET_BLOB},
	    {"d", GIT_MODE_DIR, EMPTY_TREE},
	};
	static const char *const order[] = {"d", "link", "run.sh"};
	static const unsigned int modes[] = {GIT_MODE_DIR, GIT_MODE_LINK, GIT_MODE_EXEC};
	struct tree_iter it;
	unsigned char *raw;
	const unsigned char *id;
	const char *name;
	size_t len, name_len;
	unsigned int mode;
	char hex[41];
	int i = 0;

	build(e, BV_NELEM(e), hex, &raw, &len);
	tree_iter_init(&it, raw, len);
	while (tree_iter_next(&it, &mode, &name, &name_len, &id) == 1) {
		ck_assert_int_lt(i, 3);
		ck_assert_uint_eq(name_len, strlen(order[i]));
		ck_assert(memcmp(name, order[i], name_len) == 0);
		ck_assert_uint_eq(mode, modes[i]);
		i++;
	}
	ck_assert_int_eq(i, 3);
	ck_assert_int_eq(tree_iter_next(&it, &mode, &name, &name_len, &id), 0);

	/* Every truncation of a valid body is either a clean prefix or malformed, and the
	 * iterator never reads past the end (run under valgrind/ASan to see it). */
	for (size_t cut = 0; cut < len; cut++) {
		unsigned char *copy = malloc(cut ? cut : 1);
		memcpy(copy, raw, cut);
		int r, n = 0;
		tree_iter_init(&it, copy, cut);
		while ((r = tree_iter_next(&it, &mode, &name, &name_len, &id)) == 1)
			n++;
		/* Entries are 28 ("40000 d\0" + id), 32 and 34 bytes long: only cuts on a
		 * boundary end cleanly. */
		if (cut == 0 || cut == 28 || cut == 60)
			ck_assert_msg(r == 0, "cut %zu gave %d", cut, r);
		else
			ck_assert_msg(r == -1, "cut %zu gave %d", cut, r);
		ck_assert_int_eq(n, cut < 28 ? 0 : cut < 60 ? 1 : 2);
		/* An error sticks: calling again does not look like a clean end. */
		if (r == -1)
			ck_assert_int_eq(tree_iter_next(&it, &mode, &name, &name_len, &id), -1);
		free(copy);
	}
	free(raw);
}
END_TEST

START_TEST(test_tree_iter_garbage)
{
	static const struct {
		const char *raw;
		size_t len;
	} bad[] = {
	    {"100644", 6}, /* no space */
	    {"100644 name", 11}, /* no NUL */
	    {"100644 name\0short", 17}, /* id cut */
	    {"10a644 name\0aaaaaaaaaaaaaaaaaaaa", 32}, /* not octal */
	    {" name\0aaaaaaaaaaaaaaaaaaaa", 26}, /* no mode */
	    {"100644 \0aaaaaaaaaaaaaaaaaaaa", 28}, /* empty name */
	    {"100644 a/b\0aaaaaaaaaaaaaaaaaaaa", 31}, /* slash */
	    {"40000 ..\0aaaaaaaaaaaaaaaaaaaa", 29}, /* dot-dot */
	    {"1006440000 x\0aaaaaaaaaaaaaaaaaaaa", 33}, /* mode too long */
	    {"100644 x\0aaaaaaaaaaaaaaaaaaaa100644 y", 37}, /* second cut */
	    {"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 27}, /* zeros */
	};
	struct tree_iter it;
	const unsigned char *id;
	const char *name;
	size_t name_len;
	unsigned int mode;

	for (size_t i = 0; i < BV_NELEM(bad); i++) {
		/* A heap copy of exactly len bytes, so ASan catches any overread. */
		unsigned char *copy = malloc(bad[i].len);
		int r;
		memcpy(copy, bad[i].raw, bad[i].len);
		tree_iter_init(&it, copy, bad[i].len);
		while ((r = tree_iter_next(&it, &mode, &name, &name_len, &id)) == 1)
			;
		ck_assert_msg(r == -1, "case %zu gave %d", i, r);
		free(copy);
	}
	/* The valid first entry of the "second cut" case is returned before the error. */
	tree_iter_init(&it, (const unsigned char *)bad[9].raw, bad[9].len);
	ck_assert_int_eq(tree_iter_next(&it, &mode, &name, &name_len, &id), 1);
	ck_assert_uint_eq(mode, GIT_MODE_FILE);
	ck_assert_uint_eq(name_len, 1);
	ck_assert_int_eq(tree_iter_next(&it, &mode, &name, &name_len, &id), -1);
}
END_TEST

/* Random bytes never crash the parser and never yield a name out of bounds. */
/* Names git refuses to check out because some file system reads them as ".git". */
START_TEST(test_name_is_dotgit)
{
	static const struct {
		const char *name;
		bool dotgit;
	} cases[] = {
	    {".git", true},
	    {".GIT", true},
	    {".Git", true},
	    {".git.", true},
	    {".git ", true},
	    {".git. .", true},
	    {".git:$INDEX_ALLOCATION", true},
	    {"git~1", true},
	    {"GIT~1", true},
	    {".g\xe2\x80\x8cit", true},
	    {"\xef\xbb\xbf.git", true},
	    {".gitignore", false},
	    {".gitmodules", false},
	    {"git", false},
	    {".gi", false},
	    {"git~2", false},
	    {"x.git", false},
	    {".git-x", false},
	    {"", false},
	    {".", false},
	};

	for (size_t i = 0; i < BV_NELEM(cases); i++)
		ck_assert_msg(
		    gitobj_name_is_dotgit(cases[i].name, strlen(cases[i].name)) == cases[i].dotgit,
		    "%s", cases[i].name);
}
END_TEST

START_TEST(test_tree_iter_fuzz)
{
	unsigned int seed = 12345;
	struct tree_iter it;
	const unsigned char *id;
	const char *name;
	size_t name_len;
	unsigned int mode;

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(rand_r(&seed) % 80);
		unsigned char *b = malloc(len ? len : 1);
		for (size_t i = 0; i < len; i++) {
			/* Bias towards the bytes that matter: digits, space, NUL. */
			static const unsigned char pick[] = "01467 \0ab/.";
			int r = rand_r(&seed);
			b[i] = (r & 1) ? pick[(r >> 1) % 11] : (unsigned char)(r >> 8);
		}
		tree_iter_init(&it, b, len);
		int r;
		while ((r = tree_iter_next(&it, &mode, &name, &name_len, &id)) == 1) {
			ck_assert((const unsigned char *)name >= b);
			ck_assert((const unsigned char *)name + name_len <= b + len);
			ck_assert(id + 20 <= b + len);
		}
		ck_assert(r == 0 || r == -1);
		free(b);
	}
}
END_TEST

/* Commit, tag and snapshot parsers on mutated and random bytes (they read objects fetched
 * from repositories anyone can publish): never outside the buffer, always an answer. */
START_TEST(test_object_parsers_fuzz)
{
	static const char *const seeds[] = {
	    "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent "
	    "1111111111111111111111111111111111111111\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 2 "
	    "+0100\n\nmsg\n",
	    "object 1111111111111111111111111111111111111111\ntype tag\ntag v\ntagger T <t@x> 3 "
	    "+0000\n\nx\n",
	    "alias HEAD\00015:refs/heads/mainrevision refs/heads/main\00020:aaaaaaaaaaaaaaaaaaaa",
	};
	static const size_t seed_len[] = {0, 0, 29 + 37};
	unsigned int seed = 4242;

	for (int round = 0; round < 30000; round++) {
		int which = round % 3;
		size_t base = seed_len[which] ? seed_len[which] : strlen(seeds[which]);
		size_t len = (size_t)(rand_r(&seed) % (base + 8));
		unsigned char *b = malloc(len ? len : 1);
		for (size_t i = 0; i < len; i++)
			b[i] = i < base ? (unsigned char)seeds[which][i]
					: (unsigned char)rand_r(&seed);
		for (int k = rand_r(&seed) % 4; k > 0 && len > 0; k--)
			b[(size_t)rand_r(&seed) % len] ^=
			    (unsigned char)(1u << (rand_r(&seed) % 8));

		struct commit_info ci;
		if (gitobj_parse_commit(b, len, &ci)) {
			ck_assert(ci.headers >= b && ci.headers + ci.headers_len <= b + len);
			ck_assert(ci.message >= b && ci.message + ci.message_len <= b + len);
			commit_info_clear(&ci);
		}
		unsigned char target[20];
		enum swhid_kind k;
		const char *name;
		size_t nl;
		if (gitobj_parse_tag(b, len, target, &k, &name, &nl))
			ck_assert((const unsigned char *)name >= b &&
			    (const unsigned char *)name + nl <= b + len);
		struct snapshot_iter it;
		struct snapshot_branch br;
		int r;
		snapshot_iter_init(&it, b, len);
		while ((r = snapshot_iter_next(&it, &br)) == 1) {
			ck_assert(br.name >= b && br.name + br.name_len <= b + len);
			ck_assert(br.target == NULL ||
			    (br.target >= b && br.target + br.target_len <= b + len));
		}
		ck_assert(r == 0 || r == -1);
		free(b);
	}
}
END_TEST

/* Found by tests/fuzz/fuzz_gitobj: a manifest has one spelling. A target length with a
 * leading zero ("020:") was read as 20, so a manifest the writer never makes parsed to the
 * same branches as the canonical one; and the empty snapshot (no array) is well defined. */
START_TEST(test_snapshot_canonical)
{
	static const unsigned char padded[] = "revision a\000020:aaaaaaaaaaaaaaaaaaaa";
	static const unsigned char zero[] = "dangling a\0000:";
	struct snapshot_iter it;
	struct snapshot_branch br;
	unsigned char *m, id[20];
	size_t len;
	char hex[41];

	snapshot_iter_init(&it, padded, sizeof padded - 1);
	ck_assert_int_eq(snapshot_iter_next(&it, &br), -1);
	snapshot_iter_init(&it, padded, sizeof padded - 1 - 1);
	ck_assert_int_eq(snapshot_iter_next(&it, &br), -1);
	snapshot_iter_init(&it, zero, sizeof zero - 1);
	ck_assert_int_eq(snapshot_iter_next(&it, &br), 1);
	ck_assert_uint_eq(br.target_len, 0);
	ck_assert_int_eq(snapshot_iter_next(&it, &br), 0);

	ck_assert(gitobj_snapshot_manifest(NULL, 0, &m, &len, id));
	ck_assert_uint_eq(len, 0);
	hex_encode(id, 20, hex);
	ck_assert_str_eq(hex, "1a8893e6a86f444e8be8e7bda6cb34fb1735a00e");
	free(m);
}
END_TEST

START_TEST(test_swhid_parse_table)
{
	static const struct {
		const char *s;
		int bare;
		bool ok;
		enum swhid_kind kind;
	} cases[] = {
	    {"swh:1:dir:" EMPTY_TREE, -1, true, SWHID_DIR},
	    {"swh:1:cnt:" HELLO_BLOB, -1, true, SWHID_CNT},
	    {"swh:1:rev:" HELLO_BLOB, -1, true, SWHID_REV},
	    {"swh:1:rel:" HELLO_BLOB, -1, true, SWHID_REL},
	    {"swh:1:snp:" HELLO_BLOB, -1, true, SWHID_SNP},
	    {"swh:1:dir:4B825DC642CB6EB9A060E54BF8D69288FBEE4904", -1, true, SWHID_DIR},
	    {EMPTY_TREE, SWHID_DIR, true, SWHID_DIR},
	    {EMPTY_TREE, SWHID_CNT, true, SWHID_CNT},
	    {EMPTY_TREE, -1, false, SWHID_DIR}, /* bare hex not allowed here */
	    {EMPTY_TREE, 7, false, SWHID_DIR}, /* no such kind */
	    {"swh:1:dir:" EMPTY_TREE ";origin=https://x", -1, false, SWHID_DIR},
	    {"swh:1:dir:" EMPTY_TREE " ", -1, false, SWHID_DIR},
	    {"swh:1:dir:4b825dc642cb6eb9a060e54bf8d69288fbee490", -1, false, SWHID_DIR},
	    {"swh:1:dir:4b825dc642cb6eb9a060e54bf8d69288fbee49044", -1, false, SWHID_DIR},
	    {"swh:1:dir:4b825dc642cb6eb9a060e54bf8d69288fbee490g", -1, false, SWHID_DIR},
	    {"swh:2:dir:" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"swh:1:tree:" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"swh:1:ori:" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"SWH:1:dir:" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"swh:1:DIR:" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"swh:1:dir;" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"swh-1-dir-" EMPTY_TREE, -1, false, SWHID_DIR},
	    {"", SWHID_DIR, false, SWHID_DIR},
	    {"swh:1:dir:", -1, false, SWHID_DIR},
	};
	enum swhid_kind kind;
	unsigned char id[20];
	char out[51];

	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		bool ok = swhid_parse(cases[i].s, cases[i].bare, &kind, id);
		ck_assert_msg(ok == cases[i].ok, "case %zu (%s)", i, cases[i].s);
		if (!ok)
			continue;
		ck_assert_int_eq(kind, cases[i].kind);
		/* Formatting gives the canonical, lowercase form. */
		swhid_format(kind, id, out);
		ck_assert_str_eq(
		    out + 10, strstr(cases[i].s, HELLO_BLOB) ? HELLO_BLOB : EMPTY_TREE);
		ck_assert(strncmp(out, "swh:1:", 6) == 0);
		ck_assert(strncmp(out + 6, swhid_kind_name(kind), 3) == 0);
	}
	ck_assert(!swhid_parse(NULL, SWHID_DIR, &kind, id));
}
END_TEST

START_TEST(test_swhid_format)
{
	unsigned char id[20];
	char out[51];

	id_from_hex(EMPTY_TREE, id);
	swhid_format(SWHID_DIR, id, out);
	ck_assert_str_eq(out, "swh:1:dir:" EMPTY_TREE);
	swhid_format(SWHID_SNP, id, out);
	ck_assert_str_eq(out, "swh:1:snp:" EMPTY_TREE);
	ck_assert_str_eq(swhid_kind_name(SWHID_CNT), "cnt");
	ck_assert_str_eq(swhid_kind_name(SWHID_REL), "rel");
	ck_assert_ptr_null(swhid_kind_name((enum swhid_kind)9));
}
END_TEST

/* SWH's own vectors (swh-model, checked against the archive): empty, two revisions,
 * and an alias, given out of order. */
START_TEST(test_snapshot_ids)
{
	unsigned char one[20], two[20], id[20], *m;
	size_t len;
	char hex[41];
	struct snapshot_branch b[3];

	memset(one, 1, 20), memset(two, 2, 20);
	ck_assert(gitobj_snapshot_manifest(b, 0, &m, &len, id));
	hex_encode(id, 20, hex);
	ck_assert_str_eq(hex, "1a8893e6a86f444e8be8e7bda6cb34fb1735a00e");
	ck_assert_uint_eq(len, 0);
	free(m);

	b[0] = (struct snapshot_branch){
	    (const unsigned char *)"refs/heads/main", 15, SNP_REVISION, one, 20};
	b[1] = (struct snapshot_branch){
	    (const unsigned char *)"refs/heads/develop", 18, SNP_REVISION, two, 20};
	ck_assert(gitobj_snapshot_manifest(b, 2, &m, &len, id));
	hex_encode(id, 20, hex);
	ck_assert_str_eq(hex, "870148a17e00ea8bd84b727cd26104b8c6ac6a72");
	free(m);

	b[0] = (struct snapshot_branch){
	    (const unsigned char *)"refs/heads/main", 15, SNP_REVISION, one, 20};
	b[1] = (struct snapshot_branch){
	    (const unsigned char *)"refs/heads/develop", 18, SNP_REVISION, two, 20};
	b[2] = (struct snapshot_branch){(const unsigned char *)"HEAD", 4, SNP_ALIAS,
	    (const unsigned char *)"refs/heads/main", 15};
	ck_assert(gitobj_snapshot_manifest(b, 3, &m, &len, id));
	hex_encode(id, 20, hex);
	ck_assert_str_eq(hex, "9ecd7950d10ed3d02bfcf9c4a534f173697ab9f3");
	ck_assert(memcmp(m, "alias HEAD\00015:refs/heads/main", 29) == 0);

	/* The manifest reads back as the same branches, in order. */
	struct snapshot_iter it;
	struct snapshot_branch r;
	int n = 0;
	snapshot_iter_init(&it, m, len);
	while (snapshot_iter_next(&it, &r) == 1) {
		ck_assert_int_eq(r.type, b[n].type);
		ck_assert_uint_eq(r.name_len, b[n].name_len);
		ck_assert(memcmp(r.name, b[n].name, r.name_len) == 0);
		ck_assert(memcmp(r.target, b[n].target, r.target_len) == 0);
		n++;
	}
	ck_assert_int_eq(n, 3);
	/* Cut anywhere, it is malformed, never read past the end. */
	for (size_t cut = 1; cut < len; cut++) {
		int rc;
		snapshot_iter_init(&it, m, cut);
		while ((rc = snapshot_iter_next(&it, &r)) == 1)
			;
		if (cut != 29 && cut != 29 + 51)
			ck_assert_int_eq(rc, -1);
	}
	free(m);

	/* Duplicate names and bad target lengths are refused. */
	b[0] = (struct snapshot_branch){(const unsigned char *)"a", 1, SNP_REVISION, one, 20};
	b[1] = (struct snapshot_branch){(const unsigned char *)"a", 1, SNP_RELEASE, two, 20};
	ck_assert(!gitobj_snapshot_manifest(b, 2, &m, &len, id));
	b[1] = (struct snapshot_branch){(const unsigned char *)"b", 1, SNP_RELEASE, two, 19};
	ck_assert(!gitobj_snapshot_manifest(b, 2, &m, &len, id));
	b[1] = (struct snapshot_branch){(const unsigned char *)"b", 1, SNP_DANGLING, NULL, 0};
	ck_assert(gitobj_snapshot_manifest(b, 2, &m, &len, id));
	free(m);
}
END_TEST

START_TEST(test_parse_commit_and_tag)
{
	const char *c = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
			"parent 1111111111111111111111111111111111111111\n"
			"parent 2222222222222222222222222222222222222222\n"
			"author A <a@x> 1 +0000\ncommitter C <c@x> 2 +0100\n\nmsg\n";
	struct commit_info ci;
	char hex[41];

	ck_assert(gitobj_parse_commit((const unsigned char *)c, strlen(c), &ci));
	hex_encode(ci.tree, 20, hex);
	ck_assert_str_eq(hex, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
	ck_assert_uint_eq(ci.n_parents, 2);
	hex_encode(ci.parents[1], 20, hex);
	ck_assert_str_eq(hex, "2222222222222222222222222222222222222222");
	ck_assert_uint_eq(ci.message_len, 4);
	ck_assert(memcmp(ci.message, "msg\n", 4) == 0);
	ck_assert(memcmp(ci.headers, "author A", 8) == 0);
	commit_info_clear(&ci);
	/* No tree first: malformed. */
	ck_assert(!gitobj_parse_commit((const unsigned char *)c + 46, strlen(c) - 46, &ci));
	ck_assert(!gitobj_parse_commit((const unsigned char *)"tree 12\n", 8, &ci));

	const char *t = "object 1111111111111111111111111111111111111111\ntype commit\n"
			"tag v1.0\ntagger T <t@x> 3 +0000\n\nrelease\n";
	unsigned char target[20];
	enum swhid_kind k;
	const char *name;
	size_t nl;
	ck_assert(gitobj_parse_tag((const unsigned char *)t, strlen(t), target, &k, &name, &nl));
	ck_assert_int_eq(k, SWHID_REV);
	ck_assert_uint_eq(nl, 4);
	ck_assert(memcmp(name, "v1.0", 4) == 0);
	ck_assert(!gitobj_parse_tag((const unsigned char *)t, 60, target, &k, &name, &nl));
}
END_TEST

static Suite *
gitobj_suite(void)
{
	Suite *s = suite_create("gitobj");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_blob_ids);
	tcase_add_test(tc, test_blob_streamed);
	tcase_add_test(tc, test_tree_sort_trap);
	tcase_add_test(tc, test_tree_exec_symlink);
	tcase_add_test(tc, test_tree_gitlink_and_subtree);
	tcase_add_test(tc, test_tree_empty_and_refusals);
	tcase_add_test(tc, test_tree_many_entries);
	tcase_add_test(tc, test_tree_iter_roundtrip);
	tcase_add_test(tc, test_tree_iter_garbage);
	tcase_add_test(tc, test_tree_iter_fuzz);
	tcase_add_test(tc, test_name_is_dotgit);
	tcase_add_test(tc, test_swhid_parse_table);
	tcase_add_test(tc, test_swhid_format);
	tcase_add_test(tc, test_snapshot_ids);
	tcase_add_test(tc, test_parse_commit_and_tag);
	tcase_add_test(tc, test_object_parsers_fuzz);
	tcase_add_test(tc, test_snapshot_canonical);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(gitobj_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
