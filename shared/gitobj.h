/* gitobj.h: git's (and Software Heritage's) object ids: blob and tree hashing, the
 * canonical tree entry order, tree parsing, and SWHIDs. Pure logic: no I/O. */
#ifndef BV_GITOBJ_H
#define BV_GITOBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "shared/util.h"

#define GIT_MODE_FILE 0100644
#define GIT_MODE_EXEC 0100755
#define GIT_MODE_LINK 0120000
#define GIT_MODE_DIR 0040000
#define GIT_MODE_GITLINK 0160000

/* sha1_git of a blob, streamed: init with the length, update, final. */
struct git_hasher {
	EVP_MD_CTX *ctx;
};
void gitobj_hasher_init(struct git_hasher *h, const char *type, uint64_t len);
void gitobj_hasher_update(struct git_hasher *h, const void *data, size_t len);
void gitobj_hasher_final(struct git_hasher *h, unsigned char id[20]);
/* One-shot: sha1("<type> <len>\0" + data). */
void gitobj_hash(const char *type, const void *data, size_t len, unsigned char id[20]);

/* Builds a canonical tree body from entries added in any order. */
struct tree_builder;
struct tree_builder *tree_builder_new(void);
void tree_builder_free(struct tree_builder *tb);
/* name: no '/', not empty, not "." or ".."; mode one of GIT_MODE_*. false when the name
 * is already present or invalid. */
bool tree_builder_add(struct tree_builder *tb, const char *name, size_t name_len, unsigned int mode,
    const unsigned char id[20]) BV_MUSTCHECK;
size_t tree_builder_count(const struct tree_builder *tb);
/* Sorts entries git's way (a directory compares as "name/"), writes the body into *out
 * (caller frees) and its id into id. */
void tree_builder_finish(
    struct tree_builder *tb, unsigned char **out, size_t *out_len, unsigned char id[20]);

/* Iterates a tree body. Returns 1 with the next entry, 0 at the end, -1 when malformed.
 * name points into raw and is not NUL-terminated. */
struct tree_iter {
	const unsigned char *p, *end;
};
void tree_iter_init(struct tree_iter *it, const unsigned char *raw, size_t len);
int tree_iter_next(struct tree_iter *it, unsigned int *mode, const char **name, size_t *name_len,
    const unsigned char **id);

/* SWHIDs: "swh:1:<cnt|dir|rev|rel|snp>:<40 hex>". */
enum swhid_kind { SWHID_CNT, SWHID_DIR, SWHID_REV, SWHID_REL, SWHID_SNP };
/* Accepts a full SWHID (core part; qualifiers after ';' are refused) or, when
 * bare_kind >= 0, 40 bare hex digits meaning that kind. Either case of hex is accepted;
 * *kind and id are filled. false when malformed. */
bool swhid_parse(
    const char *s, int bare_kind, enum swhid_kind *kind, unsigned char id[20]) BV_MUSTCHECK;
/* "swh:1:dir:<hex>" into out (at least 51 bytes). */
void swhid_format(enum swhid_kind kind, const unsigned char id[20], char *out);
const char *swhid_kind_name(enum swhid_kind kind); /* "dir" */

/* Commits and tags: the raw object body (no "commit <n>\0" header). */
struct commit_info {
	unsigned char tree[20];
	unsigned char (*parents)[20]; /* n_parents ids, allocated; commit_info_clear frees */
	size_t n_parents;
	const unsigned char *headers; /* points into raw: from "author" to the blank line */
	size_t headers_len;
	const unsigned char *message; /* points into raw: after the blank line (may be empty) */
	size_t message_len;
};
/* Reads tree and parents (the first lines, git's order) and locates the other headers and
 * the message. false when malformed (then nothing needs freeing). */
bool gitobj_parse_commit(const unsigned char *raw, size_t len, struct commit_info *ci) BV_MUSTCHECK;
void commit_info_clear(struct commit_info *ci);
/* An annotated tag's target, the target's kind (CNT, DIR, REV or REL) and its name
 * (pointing into raw, not NUL-terminated). false when malformed. */
bool gitobj_parse_tag(const unsigned char *raw, size_t len, unsigned char target[20],
    enum swhid_kind *target_kind, const char **name, size_t *name_len) BV_MUSTCHECK;

/* Snapshots (SWH): named branches, each a target id of some kind, an alias (the name of
 * another branch) or dangling. The manifest is the branches sorted by name (bytes), each
 * "<type> <name>\0<target length>:<target>", with nothing between them; the id is
 * sha1("snapshot <len>\0" + manifest). */
enum snp_target {
	SNP_CONTENT,
	SNP_DIRECTORY,
	SNP_REVISION,
	SNP_RELEASE,
	SNP_SNAPSHOT,
	SNP_ALIAS,
	SNP_DANGLING
};
struct snapshot_branch {
	const unsigned char *name;
	size_t name_len;
	enum snp_target type;
	const unsigned char *target; /* 20 bytes; the aliased branch's name; NULL if dangling */
	size_t target_len;
};
/* "revision", "alias", ... */
const char *snp_target_name(enum snp_target t);
/* The target type of a SWHID kind (CNT -> SNP_CONTENT, ...). */
enum snp_target snp_target_of_kind(enum swhid_kind kind);
/* Sorts branches (in place) by name, writes the manifest into *out (caller frees) and the
 * id. false (nothing allocated) when two branches share a name, a name is empty, or an
 * id target is not 20 bytes. */
bool gitobj_snapshot_manifest(struct snapshot_branch *b, size_t n, unsigned char **out,
    size_t *out_len, unsigned char id[20]) BV_MUSTCHECK;
/* Iterates a manifest: 1 with the next branch (pointers into the manifest), 0 at the end,
 * -1 when malformed. */
struct snapshot_iter {
	const unsigned char *p, *end;
};
void snapshot_iter_init(struct snapshot_iter *it, const unsigned char *raw, size_t len);
int snapshot_iter_next(struct snapshot_iter *it, struct snapshot_branch *b);

/* Whether a tree entry name is one git refuses to check out because a file system would
 * take it for ".git" (git's verify_path: any letter case, NTFS's trailing dots and spaces,
 * ":stream" and "git~1", HFS+'s ignorable code points). */
bool gitobj_name_is_dotgit(const char *name, size_t len);

#endif
