/* gitdir.c: app/.git for the include-git-dir flag (worker/gitdir.h). What Cachito's clone
 * would hold, rebuilt from the archive: a detached HEAD at the requested commit, the pack
 * of its history and tags (gitbare.c), packed-refs with the tags, a config naming the
 * repository as "origin", and an index of the commit's tree (git's index format version
 * 2), so the extracted app/ is a checkout git sees as clean. Stat fields are left at the
 * bundle's fixed time and zeros: git finds them stale on the first `git status`, hashes
 * the files once and refreshes the index. Everything is deterministic, like the rest of
 * the bundle. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "shared/gitobj.h"
#include "worker/gitdir.h"
#include "worker/load.h"
#include "worker/request.h"
#include "worker/tarball.h"

/* One entry of the index: a file, symlink or gitlink of the commit's tree. */
struct ientry {
	char *path;
	unsigned int mode;
	unsigned char id[20];
	uint32_t size;
};

struct ilist {
	struct ientry *e;
	size_t n, cap;
};

/* The tree's entries below dir (path: its folder, "" at the root), depth first. 0, or -1
 * with *errstr. */
static int
collect(struct rtree *t, const unsigned char dir[20], struct buf *path, struct ilist *l, int depth,
    char **errstr)
{
	long di = idtab_find(&t->dirs, dir);
	struct tree_iter it;
	unsigned int mode;
	const char *name;
	size_t name_len, base = path->len;
	const unsigned char *id;
	int r;

	if (depth > RTREE_MAX_DEPTH) {
		*errstr = xasprintf("The source tree is deeper than %d levels", RTREE_MAX_DEPTH);
		return -1;
	}
	if (di < 0 || !t->dinfo[di].loaded) {
		*errstr = xasprintf("The directory app/%s is missing from the archive", path->data);
		return -1;
	}
	tree_iter_init(&it, t->dinfo[di].raw, t->dinfo[di].len);
	while ((r = tree_iter_next(&it, &mode, &name, &name_len, &id)) == 1) {
		path->len = base;
		if (base > 0)
			buf_addc(path, '/');
		buf_add(path, name, name_len);
		if (mode == GIT_MODE_DIR) {
			if (collect(t, id, path, l, depth + 1, errstr) != 0)
				return -1;
			continue;
		}
		uint32_t size = 0;
		if (mode != GIT_MODE_GITLINK) {
			long ci = idtab_find(&t->cnts, id);
			if (ci < 0 || !t->cinfo[ci].loaded) {
				*errstr = xasprintf(
				    "The file app/%s is missing from the archive", path->data);
				return -1;
			}
			/* The index keeps the low 32 bits of a size, as git does. */
			size = (uint32_t)t->cinfo[ci].length;
		}
		if (l->n == l->cap) {
			l->cap = l->cap ? 2 * l->cap : 256;
			l->e = xrealloc(l->e, l->cap * sizeof *l->e);
		}
		l->e[l->n].path = xstrdup(path->data);
		l->e[l->n].mode = mode;
		memcpy(l->e[l->n].id, id, 20);
		l->e[l->n].size = size;
		l->n++;
	}
	path->len = base;
	path->data[base] = '\0';
	if (r < 0) {
		*errstr = xasprintf("The directory app/%s is corrupt in the archive", path->data);
		return -1;
	}
	return 0;
}

/* The index orders entries by their path's bytes. */
static int
by_path(const void *a, const void *b)
{
	return strcmp(((const struct ientry *)a)->path, ((const struct ientry *)b)->path);
}

/* Appends a 32-bit big-endian number. */
static void
put32(struct buf *b, uint32_t v)
{
	v = htonl(v);
	buf_add(b, &v, 4);
}

/* The index (git's Documentation/gitformat-index.txt, version 2) of t's root tree. 0, or
 * -1 with *errstr. */
static int
make_index(struct rtree *t, struct buf *out, char **errstr)
{
	struct ilist l = {0};
	struct buf path;
	unsigned char sum[20];
	unsigned int len = 0;
	int rc = -1;

	buf_init(&path);
	buf_adds(&path, "");
	if (collect(t, t->root, &path, &l, 0, errstr) != 0)
		goto out;
	qsort(l.e, l.n, sizeof *l.e, by_path);
	buf_add(out, "DIRC", 4);
	put32(out, 2);
	put32(out, (uint32_t)l.n);
	for (size_t i = 0; i < l.n; i++) {
		const struct ientry *e = &l.e[i];
		size_t name_len = strlen(e->path), start = out->len;
		uint16_t flags = htons((uint16_t)(name_len < 0xfff ? name_len : 0xfff));

		put32(out, TARBALL_MTIME), put32(out, 0); /* ctime */
		put32(out, TARBALL_MTIME), put32(out, 0); /* mtime */
		put32(out, 0), put32(out, 0); /* dev, ino */
		put32(out, e->mode);
		put32(out, 0), put32(out, 0); /* uid, gid */
		put32(out, e->size);
		buf_add(out, e->id, 20);
		buf_add(out, &flags, 2);
		buf_add(out, e->path, name_len);
		/* One to eight NULs: the entry's length becomes a multiple of eight. */
		do
			buf_addc(out, '\0');
		while ((out->len - start) % 8 != 0);
	}
	EVP_Digest(out->data, out->len, sum, &len, EVP_sha1(), NULL);
	buf_add(out, sum, 20);
	rc = 0;
out:
	for (size_t i = 0; i < l.n; i++)
		free(l.e[i].path);
	free(l.e);
	buf_free(&path);
	return rc;
}

/* The config: a non-bare repository whose origin is url (left out when git's config
 * syntax could not hold it). */
static void
make_config(struct buf *b, const char *url)
{
	bool plain = true;

	buf_adds(b,
	    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
	    "\tbare = false\n\tlogallrefupdates = true\n");
	for (const char *p = url; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			plain = false;
	if (!plain)
		return;
	/* Quoted, so ';' and '#' are not comments; '"' and '\' escaped. */
	buf_adds(b, "[remote \"origin\"]\n\turl = \"");
	for (const char *p = url; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			buf_addc(b, '\\');
		buf_addc(b, *p);
	}
	buf_adds(b, "\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n");
}

/* Orders tags by name, for packed-refs. */
static int
tag_cmp(const void *a, const void *b)
{
	return strcmp(((const struct load_tag *)a)->name, ((const struct load_tag *)b)->name);
}

enum job_outcome
gitdir_build(struct job_run *run, struct rtree *t, const char *url, const unsigned char commit[20],
    const struct load_tag *tags, size_t ntags, struct gitdir *d, char **reason)
{
	struct load_tag *sorted = NULL;
	unsigned char(*annotated)[20] = NULL;
	size_t nann = 0, nsorted = 0;
	enum job_outcome o;
	char hex[41], *err = NULL;

	memset(d, 0, sizeof *d);
	d->pack.fd = -1;
	buf_init(&d->pack.idx);
	buf_init(&d->config), buf_init(&d->packed_refs), buf_init(&d->index);
	hex_encode(commit, 20, hex);
	snprintf(d->head, sizeof d->head, "%s\n", hex);
	make_config(&d->config, url);
	if (make_index(t, &d->index, &err) != 0) {
		*reason = err;
		return JOB_OUTCOME_FAILED;
	}
	/* Tags git would refuse are left out; the rest go to packed-refs by name. */
	sorted = xmalloc((ntags ? ntags : 1) * sizeof *sorted);
	annotated = xmalloc((ntags ? ntags : 1) * sizeof *annotated);
	for (size_t i = 0; i < ntags; i++)
		if (gitbare_ref_ok((const unsigned char *)tags[i].name, strlen(tags[i].name)))
			sorted[nsorted++] = tags[i];
	qsort(sorted, nsorted, sizeof *sorted, tag_cmp);
	for (size_t i = 0; i < nsorted; i++) {
		hex_encode(sorted[i].id, 20, hex);
		buf_printf(&d->packed_refs, "%s %s\n", hex, sorted[i].name);
		/* A lightweight tag names a commit of the history: the pack has it. */
		if (sorted[i].annotated)
			memcpy(annotated[nann++], sorted[i].id, 20);
	}
	d->nrefs = nsorted;
	free(sorted);
	o = gitbare_pack(
	    run, commit, (const unsigned char(*)[20])annotated, nann, &d->pack, reason);
	free(annotated);
	return o;
}

int
gitdir_write(struct gitdir *d, struct tarball *tb, char **errstr)
{
	char hex[41], *idx, *pack;
	int rc;

	if (lseek(d->pack.fd, 0, SEEK_SET) != 0) {
		*errstr = xstrdup("The pack of app/.git cannot be read back");
		return -1;
	}
	hex_encode(d->pack.sha, 20, hex);
	idx = xasprintf("app/.git/objects/pack/pack-%s.idx", hex);
	pack = xasprintf("app/.git/objects/pack/pack-%s.pack", hex);
	rc = tarball_add_dir(tb, "app/.git", errstr) != 0 ||
		tarball_add_file_mem(
		    tb, "app/.git/HEAD", false, d->head, strlen(d->head), errstr) != 0 ||
		tarball_add_file_mem(
		    tb, "app/.git/config", false, d->config.data, d->config.len, errstr) != 0 ||
		tarball_add_file_mem(
		    tb, "app/.git/index", false, d->index.data, d->index.len, errstr) != 0 ||
		tarball_add_dir(tb, "app/.git/objects", errstr) != 0 ||
		tarball_add_dir(tb, "app/.git/objects/info", errstr) != 0 ||
		tarball_add_dir(tb, "app/.git/objects/pack", errstr) != 0 ||
		tarball_add_file_mem(tb, idx, false, d->pack.idx.data, d->pack.idx.len, errstr) !=
		    0 ||
		tarball_add_file_fd(tb, pack, false, d->pack.size, d->pack.fd, errstr) != 0 ||
		tarball_add_file_mem(tb, "app/.git/packed-refs", false,
		    d->packed_refs.data ? d->packed_refs.data : "", d->packed_refs.len,
		    errstr) != 0 ||
		tarball_add_dir(tb, "app/.git/refs", errstr) != 0 ||
		tarball_add_dir(tb, "app/.git/refs/heads", errstr) != 0 ||
		tarball_add_dir(tb, "app/.git/refs/tags", errstr) != 0
	    ? -1
	    : 0;
	free(idx);
	free(pack);
	return rc;
}

void
gitdir_clear(struct gitdir *d)
{
	gitpack_clear(&d->pack);
	buf_free(&d->config);
	buf_free(&d->packed_refs);
	buf_free(&d->index);
}
