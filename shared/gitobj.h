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

#endif
