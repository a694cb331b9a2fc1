/* gitbare.c: a bare git repository in a tar (SWH's "git-bare" bundle, research
 * swh-vault.md §3.3): `tar xf x.git.tar && git clone swh:1:rev:<hex>.git repo` works and
 * `git fsck` accepts it; every object keeps its id because objects are written from their
 * raw bodies.
 *
 * Objects of a revision: its whole history, trees and contents. A snapshot: every branch
 * (revisions with their histories, releases with what they point to, trees, contents;
 * aliases become symbolic refs, HEAD included; dangling branches are left out). A
 * directory: its tree under one fixed commit ("Initial commit", dated 1980-01-01), so
 * the bundle is reproducible.
 *
 * The repository holds one pack (undeltified objects, zlib; written to a temp file because
 * a tar entry's size comes first) with its version 2 index, packed-refs, HEAD and config.
 * Objects go into the pack in a fixed order (commits parents first, then releases, trees
 * and blobs by id), so the same object always gives the same bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "shared/gitobj.h"
#include "shared/log.h"
#include "shared/objects.h"
#include "worker/gitdir.h"
#include "worker/gitgraph.h"
#include "worker/tarball.h"

#define PACK_TYPE_COMMIT 1
#define PACK_TYPE_TREE 2
#define PACK_TYPE_BLOB 3
#define PACK_TYPE_TAG 4

struct packed {
	unsigned char id[20];
	uint32_t crc;
	uint64_t offset;
};

struct ref {
	char *name; /* "refs/heads/master" */
	unsigned char id[20];
};

struct bare {
	struct gitgraph g;
	int fd; /* the pack's temp file */
	EVP_MD_CTX *sha; /* over the pack's bytes */
	uint64_t off;
	struct packed *objs;
	size_t nobjs, capobjs;
	z_stream zs;
	int level;
	uint32_t crc; /* of the current object's bytes */
	unsigned char *zbuf;
	struct ref *refs;
	size_t nrefs;
	char *head; /* HEAD's target ref */
	unsigned char synthetic[20]; /* a directory's commit */
	unsigned char *synthetic_raw;
	size_t synthetic_len;
};

#define ZBUF (1u << 16)

/* Writes all of it to the pack file. */
static int
put_raw(struct bare *b, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t left = len;

	/* The pack goes whole into the bundle: past the bundle's cap it cannot fit, and a
	 * history can be far bigger than what was fetched (undeltified). */
	if (b->off + len > (uint64_t)b->g.max_size)
		return gitgraph_fail(
		    &b->g, "bundle exceeds the size limit of %lld bytes", (long long)b->g.max_size);
	while (left > 0) {
		ssize_t w = write(b->fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return gitgraph_fail(&b->g, "cannot write the pack: %s", strerror(errno));
		p += w, left -= (size_t)w;
	}
	b->off += len;
	return 0;
}

/* Writes to the pack, hashing it (the pack's sha1, the object's crc). */
static int
pack_put(struct bare *b, const void *data, size_t len)
{
	EVP_DigestUpdate(b->sha, data, len);
	b->crc = (uint32_t)crc32(b->crc, data, (uInt)len);
	return put_raw(b, data, len);
}

/* Deflates len bytes into the pack (finish at the object's last bytes). */
static int
pack_deflate(struct bare *b, const void *data, size_t len, bool finish)
{
	b->zs.next_in = (Bytef *)(uintptr_t)data;
	b->zs.avail_in = (uInt)len;
	do {
		b->zs.next_out = b->zbuf;
		b->zs.avail_out = ZBUF;
		int r = deflate(&b->zs, finish ? Z_FINISH : Z_NO_FLUSH);
		if (r == Z_STREAM_ERROR)
			return gitgraph_fail(&b->g, "zlib failed");
		if (ZBUF - b->zs.avail_out > 0 && pack_put(b, b->zbuf, ZBUF - b->zs.avail_out) != 0)
			return -1;
	} while (b->zs.avail_out == 0 || (finish && b->zs.avail_in > 0));
	return 0;
}

/* The object header: type and size in git's variable-length form. */
static int
pack_begin(struct bare *b, const unsigned char id[20], int type, uint64_t size)
{
	unsigned char h[16];
	size_t n = 0;

	if (b->nobjs == b->capobjs) {
		b->capobjs = b->capobjs ? 2 * b->capobjs : 1024;
		b->objs = xrealloc(b->objs, b->capobjs * sizeof *b->objs);
	}
	memcpy(b->objs[b->nobjs].id, id, 20);
	b->objs[b->nobjs].offset = b->off;
	b->crc = (uint32_t)crc32(0, Z_NULL, 0);
	h[n] = (unsigned char)((type << 4) | (size & 0x0f));
	size >>= 4;
	while (size > 0) {
		h[n++] |= 0x80;
		h[n] = (unsigned char)(size & 0x7f);
		size >>= 7;
	}
	n++;
	deflateReset(&b->zs);
	return pack_put(b, h, n);
}

/* Ends the object: its crc is recorded for the index. */
static void
pack_end(struct bare *b)
{
	b->objs[b->nobjs++].crc = b->crc;
}

/* One object from memory. */
static int
pack_mem(struct bare *b, const unsigned char id[20], int type, const unsigned char *raw, size_t len)
{
	if (pack_begin(b, id, type, len) != 0 || pack_deflate(b, raw, len, true) != 0)
		return -1;
	pack_end(b);
	return 0;
}

/* gitgraph_copy_blob's callback: blob bytes into the deflate stream. */
static int
blob_cb(void *arg, const void *data, size_t len)
{
	return pack_deflate(arg, data, len, false);
}

/* Orders object numbers by their ids in the table arg. */
static int
by_id(const void *a, const void *b, void *arg)
{
	const struct idtab *t = arg;
	return memcmp(t->ids[*(const size_t *)a], t->ids[*(const size_t *)b], 20);
}

/* The numbers 0..t->n-1 sorted by id (caller frees). */
static size_t *
sorted(const struct idtab *t)
{
	size_t *o = xmalloc((t->n ? t->n : 1) * sizeof *o);
	for (size_t i = 0; i < t->n; i++)
		o[i] = i;
	qsort_r(o, t->n, sizeof *o, by_id, (void *)t);
	return o;
}

/* Writes the pack: header, objects, trailer (its sha1 into trailer). */
static int
write_pack(struct bare *b, unsigned char trailer[20])
{
	struct gitgraph *g = &b->g;
	size_t *order = NULL, *o;
	uint32_t hdr[3];
	size_t total = g->revs.n + g->rels.n + g->dirs.n + g->cnts.n + (b->synthetic_raw ? 1 : 0);
	unsigned int len = 0;
	int rc = -1;

	memcpy(hdr, "PACK", 4);
	hdr[1] = htonl(2);
	hdr[2] = htonl((uint32_t)total);
	if (pack_put(b, hdr, sizeof hdr) != 0)
		return -1;
	if (b->synthetic_raw != NULL &&
	    pack_mem(b, b->synthetic, PACK_TYPE_COMMIT, b->synthetic_raw, b->synthetic_len) != 0)
		return -1;
	if (gitgraph_topo(g, &order) != g->revs.n) {
		gitgraph_fail(g, "the history cannot be ordered");
		goto out;
	}
	for (size_t i = 0; i < g->revs.n; i++) {
		size_t r = order[i];
		if (pack_mem(b, g->revs.ids[r], PACK_TYPE_COMMIT, g->rev[r].raw, g->rev[r].len) !=
		    0)
			goto out;
	}
	o = sorted(&g->rels);
	for (size_t i = 0; i < g->rels.n; i++)
		if (pack_mem(b, g->rels.ids[o[i]], PACK_TYPE_TAG, g->rel[o[i]].raw,
			g->rel[o[i]].len) != 0) {
			free(o);
			goto out;
		}
	free(o);
	if (!job_phase(g->run, "Packing %zu trees", g->dirs.n)) {
		g->cancelled = true;
		goto out;
	}
	o = sorted(&g->dirs);
	for (size_t i = 0; i < g->dirs.n; i++)
		if (pack_mem(b, g->dirs.ids[o[i]], PACK_TYPE_TREE, g->dir[o[i]].raw,
			g->dir[o[i]].len) != 0) {
			free(o);
			goto out;
		}
	free(o);
	o = sorted(&g->cnts);
	for (size_t i = 0; i < g->cnts.n; i++) {
		size_t c = o[i];
		if (!job_progress(g->run, "Packing files: %zu/%zu", i + 1, g->cnts.n)) {
			g->cancelled = true;
			free(o);
			goto out;
		}
		if (pack_begin(b, g->cnts.ids[c], PACK_TYPE_BLOB, (uint64_t)g->cnt[c].length) !=
			0 ||
		    gitgraph_copy_blob(g, c, NULL, blob_cb, b) != 0 ||
		    pack_deflate(b, "", 0, true) != 0) {
			free(o);
			goto out;
		}
		pack_end(b);
	}
	free(o);
	EVP_DigestFinal_ex(b->sha, trailer, &len);
	/* The trailer is not part of its own hash. */
	if (put_raw(b, trailer, 20) != 0)
		goto out;
	rc = 0;
out:
	free(order);
	return rc;
}

/* Orders packed entries by id. */
static int
packed_cmp(const void *a, const void *b)
{
	return memcmp(((const struct packed *)a)->id, ((const struct packed *)b)->id, 20);
}

/* The version 2 index (git's pack-format.txt) in memory. */
static void
make_index(struct bare *b, const unsigned char pack_sha[20], struct buf *idx)
{
	uint32_t fan[256] = {0}, v;
	unsigned char sum[20];
	unsigned int len = 0;
	size_t nlarge = 0;

	qsort(b->objs, b->nobjs, sizeof *b->objs, packed_cmp);
	buf_add(idx, "\377tOc", 4);
	v = htonl(2);
	buf_add(idx, &v, 4);
	for (size_t i = 0; i < b->nobjs; i++)
		fan[b->objs[i].id[0]]++;
	for (int i = 1; i < 256; i++)
		fan[i] += fan[i - 1];
	for (int i = 0; i < 256; i++) {
		v = htonl(fan[i]);
		buf_add(idx, &v, 4);
	}
	for (size_t i = 0; i < b->nobjs; i++)
		buf_add(idx, b->objs[i].id, 20);
	for (size_t i = 0; i < b->nobjs; i++) {
		v = htonl(b->objs[i].crc);
		buf_add(idx, &v, 4);
	}
	for (size_t i = 0; i < b->nobjs; i++) {
		if (b->objs[i].offset < 0x80000000u)
			v = htonl((uint32_t)b->objs[i].offset);
		else
			v = htonl(0x80000000u | (uint32_t)nlarge++);
		buf_add(idx, &v, 4);
	}
	for (size_t i = 0; i < b->nobjs; i++) {
		if (b->objs[i].offset >= 0x80000000u) {
			uint32_t hi = htonl((uint32_t)(b->objs[i].offset >> 32));
			uint32_t lo = htonl((uint32_t)b->objs[i].offset);
			buf_add(idx, &hi, 4);
			buf_add(idx, &lo, 4);
		}
	}
	buf_add(idx, pack_sha, 20);
	EVP_Digest(idx->data, idx->len, sum, &len, EVP_sha1(), NULL);
	buf_add(idx, sum, 20);
}

bool
gitbare_ref_ok(const unsigned char *s, size_t len)
{
	if (len < 6 || memcmp(s, "refs/", 5) != 0 || s[len - 1] == '/' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c < 0x20 || c == 0x7f || c == ' ' || c == '~' || c == '^' || c == ':' ||
		    c == '?' || c == '*' || c == '[' || c == '\\')
			return false;
		if (i > 0 &&
		    ((c == '.' && s[i - 1] == '.') || (c == '/' && s[i - 1] == '/') ||
			(c == '{' && s[i - 1] == '@') || (c == '.' && s[i - 1] == '/')))
			return false;
		/* No component ends in ".lock" (git keeps its lock files there). */
		if ((i + 1 == len || s[i + 1] == '/') && i + 1 >= 5 &&
		    memcmp(s + i + 1 - 5, ".lock", 5) == 0)
			return false;
	}
	return true;
}

/* Adds a ref. */
static void
add_ref(struct bare *b, const char *name, size_t len, const unsigned char id[20])
{
	b->refs = xrealloc(b->refs, (b->nrefs + 1) * sizeof *b->refs);
	b->refs[b->nrefs].name = xstrndup(name, len);
	memcpy(b->refs[b->nrefs].id, id, 20);
	b->nrefs++;
}

/* objects_get_raw's callback for the snapshot: a copy. */
static int
snp_cb(void *arg, const unsigned char id[20], const unsigned char *raw, size_t len)
{
	struct buf *m = arg;
	(void)id;
	buf_reset(m);
	buf_add(m, raw, len);
	buf_addc(m, '\0');
	m->len--;
	return 0;
}

/* The snapshot's branches: objects into the graph, refs into b. */
static int
add_snapshot(struct bare *b, const unsigned char id[20])
{
	struct gitgraph *g = &b->g;
	struct buf m;
	struct snapshot_iter it;
	struct snapshot_branch br;
	char *err = NULL, hex[41];
	bool found;
	int r, rc = 0;

	buf_init(&m);
	buf_adds(&m, "x"); /* marks "not found" until the callback replaces it */
	hex_encode(id, 20, hex);
	if (objects_get_raw(
		g->w->db, SWHID_SNP, (const unsigned char(*)[20])id, 1, snp_cb, &m, &err) != 0) {
		if (g->run->detail == NULL)
			g->run->detail = err;
		else
			free(err);
		g->db_failed = true;
		buf_free(&m);
		return gitgraph_fail(g, "the archive database failed while reading the snapshot");
	}
	found = !(m.len == 1 && m.data[0] == 'x');
	if (!found) {
		buf_free(&m);
		return gitgraph_fail(g, "snapshot swh:1:snp:%s is not in the archive", hex);
	}
	snapshot_iter_init(&it, (const unsigned char *)m.data, m.len);
	while (rc == 0 && (r = snapshot_iter_next(&it, &br)) == 1) {
		if (br.type == SNP_ALIAS) {
			if (br.name_len == 4 && memcmp(br.name, "HEAD", 4) == 0 &&
			    gitbare_ref_ok(br.target, br.target_len)) {
				free(b->head);
				b->head = xstrndup((const char *)br.target, br.target_len);
			}
			continue;
		}
		if (br.type == SNP_DANGLING || br.type == SNP_SNAPSHOT)
			continue;
		if (!gitbare_ref_ok(br.name, br.name_len)) {
			log_warn_id(g->run->log_id,
			    "%s: branch %.*s is not a git ref name: left out", hex,
			    (int)(br.name_len > 200 ? 200 : br.name_len), (const char *)br.name);
			continue;
		}
		switch (br.type) {
		case SNP_REVISION:
			rc = gitgraph_add_history(g, br.target);
			break;
		case SNP_RELEASE:
			rc = gitgraph_add_release(g, br.target);
			break;
		case SNP_DIRECTORY:
			rc = gitgraph_add_tree(g, br.target);
			break;
		case SNP_CONTENT:
			gitgraph_add_content(g, br.target);
			break;
		default:
			break;
		}
		if (rc == 0)
			add_ref(b, (const char *)br.name, br.name_len, br.target);
	}
	if (rc == 0 && r < 0)
		rc = gitgraph_fail(g, "snapshot swh:1:snp:%s is malformed", hex);
	buf_free(&m);
	return rc;
}

/* Refs by name, for packed-refs. */
static int
ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ref *)a)->name, ((const struct ref *)b)->name);
}

/* Writes the tar: the repository folder. */
static int
write_tar(struct bare *b, const char *top, const unsigned char pack_sha[20], uint64_t pack_size)
{
	struct gitgraph *g = &b->g;
	struct tarball *tb;
	struct buf idx, refs, path, headtxt;
	char *err = NULL, hex[41], *name;
	int rc = -1;
	static const char config[] = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
				     "\tbare = true\n";

	tb = tarball_new_tar(gitgraph_sink, g, &err);
	if (tb == NULL) {
		gitgraph_fail(g, "%s", err);
		free(err);
		return -1;
	}
	buf_init(&idx), buf_init(&refs), buf_init(&path), buf_init(&headtxt);
	make_index(b, pack_sha, &idx);
	qsort(b->refs, b->nrefs, sizeof *b->refs, ref_cmp);
	for (size_t i = 0; i < b->nrefs; i++) {
		if (i > 0 && strcmp(b->refs[i].name, b->refs[i - 1].name) == 0)
			continue;
		hex_encode(b->refs[i].id, 20, hex);
		buf_printf(&refs, "%s %s\n", hex, b->refs[i].name);
	}
	if (b->head == NULL)
		b->head = xstrdup(b->nrefs > 0 ? b->refs[0].name : "refs/heads/master");
	buf_printf(&headtxt, "ref: %s\n", b->head);
	hex_encode(pack_sha, 20, hex);
	name = xasprintf("%s.git", top);
#define P(s) (buf_reset(&path), buf_printf(&path, "%s/%s", name, s), path.data)
	if (tarball_add_dir(tb, name, &err) != 0 ||
	    tarball_add_file_mem(tb, P("HEAD"), false, headtxt.data, headtxt.len, &err) != 0 ||
	    tarball_add_file_mem(tb, P("config"), false, config, sizeof config - 1, &err) != 0 ||
	    tarball_add_dir(tb, P("objects"), &err) != 0 ||
	    tarball_add_dir(tb, P("objects/info"), &err) != 0 ||
	    tarball_add_dir(tb, P("objects/pack"), &err) != 0)
		goto out;
	buf_reset(&path);
	buf_printf(&path, "%s/objects/pack/pack-%s.idx", name, hex);
	if (tarball_add_file_mem(tb, path.data, false, idx.data, idx.len, &err) != 0)
		goto out;
	buf_reset(&path);
	buf_printf(&path, "%s/objects/pack/pack-%s.pack", name, hex);
	if (lseek(b->fd, 0, SEEK_SET) != 0 ||
	    tarball_add_file_fd(tb, path.data, false, pack_size, b->fd, &err) != 0)
		goto out;
	if (tarball_add_file_mem(
		tb, P("packed-refs"), false, refs.data ? refs.data : "", refs.len, &err) != 0 ||
	    tarball_add_dir(tb, P("refs"), &err) != 0 ||
	    tarball_add_dir(tb, P("refs/heads"), &err) != 0 ||
	    tarball_add_dir(tb, P("refs/tags"), &err) != 0 || tarball_finish(tb, &err) != 0)
		goto out;
#undef P
	rc = 0;
out:
	if (rc != 0) {
		gitgraph_fail(g, "%s", err ? err : "cannot write the tar");
		free(err);
	}
	free(name);
	tarball_free(tb);
	buf_free(&idx), buf_free(&refs), buf_free(&path), buf_free(&headtxt);
	return rc;
}

/* A directory's fixed commit. */
static void
make_synthetic(struct bare *b, const unsigned char tree[20])
{
	char hex[41];
	struct buf c;

	hex_encode(tree, 20, hex);
	buf_init(&c);
	buf_printf(&c,
	    "tree %s\nauthor bitsvault <bitsvault@localhost> %d +0000\n"
	    "committer bitsvault <bitsvault@localhost> %d +0000\n\nInitial commit\n",
	    hex, TARBALL_MTIME, TARBALL_MTIME);
	gitobj_hash("commit", c.data, c.len, b->synthetic);
	b->synthetic_raw = (unsigned char *)buf_steal(&c, &b->synthetic_len);
}

/* The graph's objects into a pack in an unlinked temp file under the data folder (what
 * names "a git-bare bundle" or "app/.git" in the message for missing files). 0 or -1. */
static int
bare_pack(struct bare *b, const char *what, unsigned char trailer[20])
{
	const struct config *cfg = b->g.run->w->cfg;
	size_t missing = 0, first = 0;
	char hex[41], *dir, *path;

	for (size_t i = 0; i < b->g.cnts.n; i++)
		if (!b->g.cnt[i].found && missing++ == 0)
			first = i;
	if (missing > 0) {
		hex_encode(b->g.cnts.ids[first], 20, hex);
		return gitgraph_fail(&b->g,
		    "%zu content%s %s missing from the archive (first: swh:1:cnt:%s); %s "
		    "cannot leave files out without breaking its object ids",
		    missing, missing == 1 ? "" : "s", missing == 1 ? "is" : "are", hex, what);
	}
	/* The pack goes to a temp file in the store's file system, unlinked at once: a
	 * tar entry's size comes first, and nothing is left behind by a crash. */
	dir = xasprintf("%s/tmp", cfg->data_dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		free(dir);
		return gitgraph_fail(&b->g, "cannot create a temp folder: %s", strerror(errno));
	}
	path = xasprintf("%s/gitpack-XXXXXX", dir);
	free(dir);
	b->fd = mkstemp(path);
	if (b->fd >= 0)
		unlink(path);
	free(path);
	if (b->fd < 0)
		return gitgraph_fail(&b->g, "cannot create a temp file: %s", strerror(errno));
	b->sha = EVP_MD_CTX_new();
	b->zbuf = xmalloc(ZBUF);
	b->level = (int)cfg->gzip_level;
	if (b->level > 9)
		b->level = 9;
	if (b->sha == NULL || EVP_DigestInit_ex(b->sha, EVP_sha1(), NULL) != 1 ||
	    deflateInit(&b->zs, b->level) != Z_OK) {
		if (b->zbuf != NULL) {
			free(b->zbuf);
			b->zbuf = NULL;
		}
		return gitgraph_fail(&b->g, "cannot set up the pack writer");
	}
	return write_pack(b, trailer);
}

/* Frees everything but the graph's outcome. */
static void
bare_free(struct bare *b)
{
	if (b->fd >= 0)
		close(b->fd);
	if (b->sha != NULL)
		EVP_MD_CTX_free(b->sha);
	if (b->zbuf != NULL)
		deflateEnd(&b->zs);
	free(b->zbuf);
	free(b->objs);
	for (size_t i = 0; i < b->nrefs; i++)
		free(b->refs[i].name);
	free(b->refs);
	free(b->head);
	free(b->synthetic_raw);
	gitgraph_free(&b->g);
}

enum job_outcome
gitbare_cook(struct job_run *run, enum swhid_kind kind, const unsigned char id[20], json_t **result,
    char **reason)
{
	struct bare b;
	char top[64], hex[65];
	unsigned char trailer[20], sha256[32];
	uint64_t size = 0;
	enum job_outcome outcome;
	int rc = 0;

	memset(&b, 0, sizeof b);
	b.fd = -1;
	gitgraph_init(&b.g, run);
	swhid_format(kind, id, top);
	if (!job_phase(run, "Reading the objects")) {
		b.g.cancelled = true;
		goto fail;
	}
	if (kind == SWHID_REV) {
		rc = gitgraph_add_history(&b.g, id);
		add_ref(&b, "refs/heads/master", 17, id);
	} else if (kind == SWHID_DIR) {
		rc = gitgraph_add_tree(&b.g, id);
		if (rc == 0) {
			make_synthetic(&b, id);
			add_ref(&b, "refs/heads/master", 17, b.synthetic);
		}
	} else {
		rc = add_snapshot(&b, id);
	}
	if (rc != 0 || gitgraph_load_histories(&b.g) != 0 ||
	    gitgraph_add_revision_trees(&b.g) != 0 || gitgraph_load_contents(&b.g) != 0 ||
	    bare_pack(&b, "a git-bare bundle", trailer) != 0)
		goto fail;
	if (gitgraph_out_start(&b.g, 0, 1) != 0 || write_tar(&b, top, trailer, b.off) != 0 ||
	    gitgraph_out_finish(&b.g, sha256, &size) != 0)
		goto fail;
	hex_encode(sha256, 32, hex);
	*result = json_pack("{s:s, s:I, s:I}", "bundle_sha256", hex, "bundle_size",
	    (json_int_t)size, "objects", (json_int_t)b.nobjs);
	outcome = JOB_OUTCOME_DONE;
	goto out;
fail:
	outcome = gitgraph_outcome(&b.g, reason);
out:
	bare_free(&b);
	return outcome;
}

enum job_outcome
gitbare_pack(struct job_run *run, const unsigned char commit[20], const unsigned char (*tags)[20],
    size_t ntags, struct gitpack *p, char **reason)
{
	struct bare b;
	enum job_outcome outcome;
	int rc;

	memset(p, 0, sizeof *p);
	p->fd = -1;
	buf_init(&p->idx);
	memset(&b, 0, sizeof b);
	b.fd = -1;
	gitgraph_init(&b.g, run);
	rc = gitgraph_add_history(&b.g, commit);
	for (size_t i = 0; rc == 0 && i < ntags; i++)
		rc = gitgraph_add_release(&b.g, tags[i]);
	if (rc != 0 || gitgraph_load_histories(&b.g) != 0 ||
	    gitgraph_add_revision_trees(&b.g) != 0 || gitgraph_load_contents(&b.g) != 0 ||
	    bare_pack(&b, "app/.git", p->sha) != 0) {
		outcome = gitgraph_outcome(&b.g, reason);
		bare_free(&b);
		return outcome;
	}
	make_index(&b, p->sha, &p->idx);
	p->fd = b.fd;
	b.fd = -1;
	p->size = b.off;
	p->nobjs = b.nobjs;
	bare_free(&b);
	return JOB_OUTCOME_DONE;
}

void
gitpack_clear(struct gitpack *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	buf_free(&p->idx);
}
