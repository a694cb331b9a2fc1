/* gitfast.c: a revision and its history as a gzipped git fast-import stream (SWH's
 * "gitfast" bundle, research swh-vault.md §3.2): `zcat x.gitfast.gz | git fast-import`
 * rebuilds the commits on refs/heads/master, with their ids when the commits carry
 * nothing fast-import cannot say (signatures, mergetags: those commits are counted in the
 * result as "rewritten").
 *
 * The stream: every revision parents first (gitgraph_topo); before each commit, the blobs
 * it adds that were not sent yet (marked, each sent once); the commit's file commands are
 * the difference from its first parent's tree, deletions first (so a file replacing a
 * folder of the same name, or the reverse, works), and other parents are "merge" lines.
 * Empty folders (uploaded archives can have them) are the empty tree by id, which git
 * always knows. "feature done" ... "done" makes a truncated stream an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/gitobj.h"
#include "worker/gitgraph.h"

#define EMPTY_TREE "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
/* Folders nested deeper are refused rather than risking the stack. */
#define FAST_MAX_DEPTH 2048

struct fast {
	struct gitgraph g;
	size_t nrevs;
	size_t *mark_of_rev; /* revision number -> mark (0: not written yet) */
	size_t *blob_marks; /* content number -> its blob's mark (0: not written yet) */
	size_t next_mark;
	struct buf dels, mods; /* the current commit's file commands */
	struct buf out; /* text waiting to be written */
	int64_t rewritten; /* commits whose id cannot survive fast-import */
	unsigned char *canon; /* per tree: 0 unknown, 1 fast-import rebuilds it as is, 2 not */
};

/* A sent blob's mark: numbered after the commits' (1..nrevs) in the order blobs are
 * sent, so the stream does not depend on the order rows came from Postgres. */
static size_t
blob_mark(const struct fast *f, size_t cnt)
{
	return f->blob_marks[cnt];
}

/* Writes what f->out holds. */
static int
flush(struct fast *f)
{
	int rc = f->out.len ? gitgraph_out_write(&f->g, f->out.data, f->out.len) : 0;
	buf_reset(&f->out);
	return rc;
}

/* A path as fast-import reads it: as is, or C-quoted when it starts with a quote or holds
 * a newline or a backslash-sensitive byte. */
static void
add_path(struct buf *b, const char *p, size_t len)
{
	bool quote = len > 0 && p[0] == '"';

	for (size_t i = 0; i < len && !quote; i++)
		quote = p[i] == '\n';
	if (!quote) {
		buf_add(b, p, len);
		return;
	}
	buf_addc(b, '"');
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n')
			buf_adds(b, "\\n");
		else if (p[i] == '"' || p[i] == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, p[i]);
		} else
			buf_addc(b, p[i]);
	}
	buf_addc(b, '"');
}

/* Git's tree order: names compare bytewise, a folder as if it ended in '/'. */
static int
entry_cmp(const char *a, size_t al, unsigned int am, const char *b, size_t bl, unsigned int bm)
{
	size_t n = al < bl ? al : bl;
	int c = memcmp(a, b, n);
	unsigned char ca, cb;

	if (c != 0)
		return c;
	ca = al > n ? (unsigned char)a[n] : (am == GIT_MODE_DIR ? '/' : 0);
	cb = bl > n ? (unsigned char)b[n] : (bm == GIT_MODE_DIR ? '/' : 0);
	return (int)ca - (int)cb;
}

/* The mode fast-import accepts for a file entry. */
static unsigned int
file_mode(unsigned int mode)
{
	if (mode == GIT_MODE_LINK || mode == GIT_MODE_GITLINK)
		return mode;
	return (mode & 0111) ? GIT_MODE_EXEC : GIT_MODE_FILE;
}

static int diff(struct fast *f, long old, long new, struct buf *path, int depth);

/* Whether fast-import rebuilds tree d byte for byte: every mode is one git writes (a
 * 100664 becomes 100644, changing the id), entries are in git's order without repeats,
 * and the same holds below. Memoised per tree. */
static bool
canonical(struct fast *f, long d, int depth)
{
	struct tree_iter it;
	unsigned int mode, pmode = 0;
	const char *name, *pname = NULL;
	size_t nl, pnl = 0;
	const unsigned char *id;
	bool ok = true;
	int r;

	if (d < 0 || depth > FAST_MAX_DEPTH)
		return false;
	if (f->canon[d] != 0)
		return f->canon[d] == 1;
	tree_iter_init(&it, f->g.dir[d].raw, f->g.dir[d].len);
	while (ok && (r = tree_iter_next(&it, &mode, &name, &nl, &id)) == 1) {
		if (mode != GIT_MODE_FILE && mode != GIT_MODE_EXEC && mode != GIT_MODE_LINK &&
		    mode != GIT_MODE_GITLINK && mode != GIT_MODE_DIR)
			ok = false;
		else if (pname != NULL && entry_cmp(pname, pnl, pmode, name, nl, mode) >= 0)
			ok = false;
		else if (mode == GIT_MODE_DIR)
			ok = canonical(f, idtab_find(&f->g.dirs, id), depth + 1);
		pname = name, pnl = nl, pmode = mode;
	}
	f->canon[d] = ok ? 1 : 2;
	return ok;
}

/* Writes a blob command for a content unless it was sent. */
static int
send_blob(struct fast *f, size_t cnt, const char *path)
{
	if (f->blob_marks[cnt] != 0)
		return 0;
	if (!f->g.cnt[cnt].found)
		return gitgraph_fail(&f->g, "a content at %s is missing from the archive", path);
	f->blob_marks[cnt] = f->next_mark++;
	buf_printf(&f->out, "blob\nmark :%zu\ndata %lld\n", blob_mark(f, cnt),
	    (long long)f->g.cnt[cnt].length);
	if (flush(f) != 0 || gitgraph_copy_blob(&f->g, cnt, path, NULL, NULL) != 0)
		return -1;
	buf_addc(&f->out, '\n');
	return 0;
}

/* One entry of the new tree that the old one lacks (or had with another kind). */
static int
add_entry(struct fast *f, unsigned int mode, const unsigned char *id, struct buf *path, int depth)
{
	char hex[41];

	if (mode == GIT_MODE_DIR) {
		long d = idtab_find(&f->g.dirs, id);
		if (d < 0)
			return gitgraph_fail(&f->g, "a directory at %s is missing", path->data);
		if (f->g.dir[d].len == 0) {
			buf_adds(&f->mods, "M 040000 " EMPTY_TREE " ");
			add_path(&f->mods, path->data, path->len);
			buf_addc(&f->mods, '\n');
			return 0;
		}
		return diff(f, -1, d, path, depth + 1);
	}
	if (mode == GIT_MODE_GITLINK) {
		hex_encode(id, 20, hex);
		buf_printf(&f->mods, "M 160000 %s ", hex);
	} else {
		long c = idtab_find(&f->g.cnts, id);
		if (c < 0)
			return gitgraph_fail(&f->g, "a content at %s is missing", path->data);
		if (send_blob(f, (size_t)c, path->data) != 0)
			return -1;
		buf_printf(&f->mods, "M %06o :%zu ", file_mode(mode), blob_mark(f, (size_t)c));
	}
	add_path(&f->mods, path->data, path->len);
	buf_addc(&f->mods, '\n');
	return 0;
}

/* Appends "/name" (or "name" at the root) to path; returns the old length. */
static size_t
path_push(struct buf *path, const char *name, size_t len)
{
	size_t old = path->len;
	if (old > 0)
		buf_addc(path, '/');
	buf_add(path, name, len);
	buf_addc(path, '\0');
	path->len--;
	return old;
}

/* The file commands from tree old (-1: none) to tree new, under path. */
static int
diff(struct fast *f, long old, long new, struct buf *path, int depth)
{
	struct tree_iter a, b;
	unsigned int am = 0, bm = 0;
	const char *an = NULL, *bn = NULL;
	size_t al = 0, bl = 0;
	const unsigned char *aid = NULL, *bid = NULL;
	int ra = 0, rb;

	if (depth > FAST_MAX_DEPTH)
		return gitgraph_fail(&f->g, "folders nested deeper than %d levels", FAST_MAX_DEPTH);
	if (old >= 0) {
		tree_iter_init(&a, f->g.dir[old].raw, f->g.dir[old].len);
		ra = tree_iter_next(&a, &am, &an, &al, &aid);
	}
	tree_iter_init(&b, f->g.dir[new].raw, f->g.dir[new].len);
	rb = tree_iter_next(&b, &bm, &bn, &bl, &bid);
	while (ra == 1 || rb == 1) {
		int c = ra != 1 ? 1 : rb != 1 ? -1 : entry_cmp(an, al, am, bn, bl, bm);
		size_t old_len;
		int rc = 0;

		if (c < 0) {
			old_len = path_push(path, an, al);
			buf_adds(&f->dels, "D ");
			add_path(&f->dels, path->data, path->len);
			buf_addc(&f->dels, '\n');
		} else if (c > 0) {
			old_len = path_push(path, bn, bl);
			rc = add_entry(f, bm, bid, path, depth);
		} else {
			old_len = path_push(path, bn, bl);
			if (memcmp(aid, bid, 20) == 0 && file_mode(am) == file_mode(bm)) {
				/* unchanged */
			} else if (am == GIT_MODE_DIR && bm == GIT_MODE_DIR) {
				long da = idtab_find(&f->g.dirs, aid),
				     db = idtab_find(&f->g.dirs, bid);
				if (da < 0 || db < 0)
					rc = gitgraph_fail(
					    &f->g, "a directory at %s is missing", path->data);
				else if (f->g.dir[db].len == 0)
					rc = add_entry(f, bm, bid, path, depth);
				else
					rc = diff(f, da, db, path, depth + 1);
			} else {
				rc = add_entry(f, bm, bid, path, depth);
			}
		}
		path->len = old_len;
		buf_addc(path, '\0');
		path->len--;
		if (rc != 0)
			return -1;
		if (c <= 0)
			ra = tree_iter_next(&a, &am, &an, &al, &aid);
		if (c >= 0)
			rb = tree_iter_next(&b, &bm, &bn, &bl, &bid);
	}
	return 0;
}

/* One header line of a commit (the whole line, keyword included; NULL when absent). */
struct hline {
	const unsigned char *p;
	size_t len;
};

/* Appends a header line and its newline. */
static void
add_line(struct buf *out, struct hline l)
{
	buf_add(out, l.p, l.len);
	buf_addc(out, '\n');
}

/* Copies the "author ...", "committer ..." (and "encoding ...") lines from a commit's
 * headers in the order fast-import wants; true when nothing else was there and both people
 * were (the id survives fast-import). */
static bool
people(struct buf *out, const struct commit_info *ci)
{
	const unsigned char *p = ci->headers, *end = ci->headers + ci->headers_len;
	struct hline author = {NULL, 0}, committer = {NULL, 0}, enc = {NULL, 0};
	bool plain = true;

	while (p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		struct hline l = {p, nl ? (size_t)(nl - p) : (size_t)(end - p)};
		if (l.len > 7 && memcmp(p, "author ", 7) == 0 && author.p == NULL)
			author = l;
		else if (l.len > 10 && memcmp(p, "committer ", 10) == 0 && committer.p == NULL)
			committer = l;
		else if (l.len > 9 && memcmp(p, "encoding ", 9) == 0)
			enc = l;
		else
			plain = false; /* gpgsig, mergetag, continuation lines, repeats, others */
		p = nl ? nl + 1 : end;
	}
	if (author.p != NULL)
		add_line(out, author);
	else
		plain = false; /* fast-import would take the committer as the author */
	if (committer.p != NULL) {
		add_line(out, committer);
	} else {
		buf_adds(out, "committer <> 0 +0000\n"); /* fast-import requires one */
		plain = false;
	}
	if (enc.p != NULL)
		add_line(out, enc);
	return plain;
}

/* One commit command. */
static int
write_commit(struct fast *f, size_t r, size_t mark)
{
	struct gitgraph *g = &f->g;
	struct commit_info ci;
	struct buf path;
	long root, parent_tree = -1;
	char hex[41];
	int rc;

	hex_encode(g->revs.ids[r], 20, hex);
	if (!gitobj_parse_commit(g->rev[r].raw, g->rev[r].len, &ci))
		return gitgraph_fail(g, "revision swh:1:rev:%s is malformed", hex);
	root = idtab_find(&g->dirs, ci.tree);
	for (size_t i = 0; i < ci.n_parents; i++) {
		long p = idtab_find(&g->revs, ci.parents[i]);
		if (p < 0 || f->mark_of_rev[p] == 0) {
			char phex[41];
			hex_encode(ci.parents[i], 20, phex);
			commit_info_clear(&ci);
			return gitgraph_fail(g,
			    "the history of swh:1:rev:%s is incomplete: parent %s is not in the archive",
			    hex, phex);
		}
		if (i == 0) {
			struct commit_info pi;
			if (gitobj_parse_commit(g->rev[p].raw, g->rev[p].len, &pi)) {
				parent_tree = idtab_find(&g->dirs, pi.tree);
				commit_info_clear(&pi);
			}
		}
	}
	if (root < 0) {
		commit_info_clear(&ci);
		return gitgraph_fail(g, "the tree of swh:1:rev:%s is not in the archive", hex);
	}
	buf_reset(&f->dels);
	buf_reset(&f->mods);
	buf_init(&path);
	rc = diff(f, parent_tree, root, &path, 0);
	buf_free(&path);
	if (rc != 0) {
		commit_info_clear(&ci);
		return -1;
	}
	if (ci.n_parents == 0)
		buf_adds(&f->out, "reset refs/heads/master\n");
	buf_printf(&f->out, "commit refs/heads/master\nmark :%zu\n", mark);
	/* The id survives when fast-import can say everything the commit holds: only author,
	 * committer and encoding headers, a blank line before the message (a commit without
	 * one gets it added), and a tree it rebuilds as is. */
	bool plain = people(&f->out, &ci);
	bool has_blank = ci.headers + ci.headers_len < g->rev[r].raw + g->rev[r].len;
	if (!plain || !has_blank || !canonical(f, root, 0))
		f->rewritten++;
	buf_printf(&f->out, "data %zu\n", ci.message_len);
	buf_add(&f->out, ci.message, ci.message_len);
	buf_addc(&f->out, '\n');
	for (size_t i = 0; i < ci.n_parents; i++)
		buf_printf(&f->out, "%s :%zu\n", i == 0 ? "from" : "merge",
		    f->mark_of_rev[idtab_find(&g->revs, ci.parents[i])]);
	buf_add(&f->out, f->dels.data, f->dels.len);
	buf_add(&f->out, f->mods.data, f->mods.len);
	buf_addc(&f->out, '\n');
	commit_info_clear(&ci);
	return flush(f);
}

enum job_outcome
gitfast_cook(struct job_run *run, const unsigned char rev[20], json_t **result, char **reason)
{
	struct fast f;
	size_t *order = NULL, missing = 0, first_missing = 0;
	unsigned char sha256[32];
	uint64_t size = 0;
	char hex[65];
	enum job_outcome outcome;

	memset(&f, 0, sizeof f);
	gitgraph_init(&f.g, run);
	buf_init(&f.dels), buf_init(&f.mods), buf_init(&f.out);
	if (!job_phase(run, "Reading the history") || gitgraph_add_history(&f.g, rev) != 0 ||
	    gitgraph_load_histories(&f.g) != 0 || !job_phase(run, "Listing directories") ||
	    gitgraph_add_revision_trees(&f.g) != 0 || gitgraph_load_contents(&f.g) != 0)
		goto fail;
	for (size_t i = 0; i < f.g.cnts.n; i++)
		if (!f.g.cnt[i].found && missing++ == 0)
			first_missing = i;
	if (missing > 0) {
		hex_encode(f.g.cnts.ids[first_missing], 20, hex);
		gitgraph_fail(&f.g,
		    "%zu content%s of this history %s missing from the archive (first: swh:1:cnt:%s); "
		    "a gitfast bundle cannot leave files out without changing the commit ids",
		    missing, missing == 1 ? "" : "s", missing == 1 ? "is" : "are", hex);
		goto fail;
	}
	if (gitgraph_topo(&f.g, &order) != f.g.revs.n) {
		hex_encode(rev, 20, hex);
		gitgraph_fail(&f.g, "the history of swh:1:rev:%s cannot be ordered", hex);
		goto fail;
	}
	f.nrevs = f.g.revs.n;
	f.canon = xcalloc(f.g.dirs.n ? f.g.dirs.n : 1, 1);
	f.mark_of_rev = xcalloc(f.nrevs ? f.nrevs : 1, sizeof *f.mark_of_rev);
	f.blob_marks = xcalloc(f.g.cnts.n ? f.g.cnts.n : 1, sizeof *f.blob_marks);
	f.next_mark = f.nrevs + 1;
	if (gitgraph_out_start(&f.g, (int)run->w->cfg->gzip_level, 2) != 0)
		goto fail;
	buf_adds(&f.out, "feature done\n");
	for (size_t i = 0; i < f.nrevs; i++) {
		if (!job_progress(run, "Computing revision %zu/%zu", i + 1, f.nrevs)) {
			f.g.cancelled = true;
			goto fail;
		}
		if (write_commit(&f, order[i], i + 1) != 0)
			goto fail;
		f.mark_of_rev[order[i]] = i + 1;
	}
	buf_adds(&f.out, "done\n");
	if (flush(&f) != 0 || gitgraph_out_finish(&f.g, sha256, &size) != 0)
		goto fail;
	hex_encode(sha256, 32, hex);
	*result =
	    json_pack("{s:s, s:I, s:I, s:I}", "bundle_sha256", hex, "bundle_size", (json_int_t)size,
		"revisions", (json_int_t)f.nrevs, "rewritten", (json_int_t)f.rewritten);
	outcome = JOB_OUTCOME_DONE;
	goto out;
fail:
	outcome = gitgraph_outcome(&f.g, reason);
out:
	free(order);
	free(f.mark_of_rev);
	free(f.blob_marks);
	free(f.canon);
	buf_free(&f.dels), buf_free(&f.mods), buf_free(&f.out);
	gitgraph_free(&f.g);
	return outcome;
}
