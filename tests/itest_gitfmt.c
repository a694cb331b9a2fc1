/* itest_gitfmt.c: revisions and snapshots in every format, against the real server: a
 * repository (branches, merge, tags, executable, symlink, submodule entry) is loaded with
 * POST /loads, then cooked as gitfast (imported with git fast-import: the commit id comes
 * back), git-bare (cloned and fsck'ed: every ref keeps its id), tar.gz and zip (the tree
 * re-hashes to the revision's tree); a second cook gives the same bytes; SWH's paths
 * serve the same bundles; formats that make no sense are 400s naming the allowed ones. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "tests/itest.h"

static char *repo; /* the source repository's path */
static char *head; /* main's commit */
static char *snapshot; /* the load's snapshot id */

/* POSTs a cook; returns the answer's JSON (caller decrefs). */
static json_t *
post(const char *path, long want)
{
	struct itest_resp r;
	itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
	ck_assert_msg(r.status == want, "POST %s: %ld %s", path, r.status, r.body.data);
	json_t *j = json_incref(r.json);
	itest_resp_free(&r);
	return j;
}

/* Cooks kind/id in format and waits for it to be done; returns the job id. */
static json_int_t
cook_done(const char *kind, const char *id, const char *format)
{
	char *path = xasprintf("/vault/%s/%s?format=%s", kind, id, format);
	char *status = xasprintf("/vault/%s/%s/status?format=%s", kind, id, format);
	json_t *j = post(path, 201);
	json_int_t job = json_integer_value(json_object_get(j, "id"));
	ck_assert_str_eq(json_string_value(json_object_get(j, "format")), format);
	json_decref(j);
	json_t *st = itest_wait_status(status, 120);
	char *dump = json_dumps(st, 0);
	ck_assert_msg(strcmp(json_string_value(json_object_get(st, "status")), "done") == 0,
	    "cook %s ended %s", path, dump);
	free(dump);
	json_decref(st);
	free(path);
	free(status);
	return job;
}

/* Downloads path into IT.dir/file, checks Content-Type and file name; returns the sha256
 * hex of the bytes (caller frees). */
static char *
download(const char *path, const char *ctype, const char *filename, const char *file)
{
	struct itest_resp r;
	unsigned char md[32];
	char hex[65];

	itest_http(&r, "GET", path, NULL, NULL, 0, NULL);
	ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body.data);
	ck_assert_str_eq(itest_header(&r, "Content-Type"), ctype);
	char *disp = xasprintf("attachment; filename=\"%s\"", filename);
	ck_assert_str_eq(itest_header(&r, "Content-Disposition"), disp);
	free(disp);
	SHA256((const unsigned char *)r.body.data, r.body.len, md);
	hex_encode(md, 32, hex);
	char *full = xasprintf("%s/%s", IT.dir, file);
	FILE *f = fopen(full, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(r.body.data, 1, r.body.len, f), r.body.len);
	ck_assert_int_eq(fclose(f), 0);
	free(full);
	itest_resp_free(&r);
	return xstrdup(hex);
}

/* Expires a job as expiry does, so the next POST cooks again. */
static void
expire_job(json_int_t job)
{
	struct itest_resp r;
	char *jobpath = xasprintf("/jobs/%lld", (long long)job);
	const char *body = "{\"state\":\"expired\"}";
	itest_http(
	    &r, "PATCH", jobpath, IT_WORKER, body, strlen(body), "Content-Type: application/json");
	ck_assert_msg(r.status == 200, "expire: %ld %s", r.status, r.body.data);
	itest_resp_free(&r);
	free(jobpath);
}

/* Loads the repository once for every test. */
static void
load_repo(void)
{
	if (snapshot != NULL)
		return;
	repo = itest_make_repo("g1");
	char *url = xasprintf("file://%s", repo);
	json_t *doc = itest_load(url, 120);
	char *dump = json_dumps(doc, 0);
	ck_assert_msg(strcmp(json_string_value(json_object_get(doc, "status")), "done") == 0,
	    "load ended %s", dump);
	free(dump);
	snapshot = xstrdup(json_string_value(json_object_get(doc, "snapshot")));
	head = itest_sh_out("git -C %s rev-parse main", repo);
	json_decref(doc);
	free(url);
}

/* gitfast: git fast-import rebuilds main with its id and its whole history. */
START_TEST(test_gitfast)
{
	load_repo();
	json_int_t job = cook_done("revision", head, "gitfast");
	char *path = xasprintf("/vault/revision/%s?format=gitfast", head);
	char *name = xasprintf("swh_1_rev_%s.gitfast.gz", head);
	char *sha = download(path, "application/gzip", name, "fast.gz");
	ck_assert_int_eq(itest_sh("gzip -t fast.gz"), 0);
	ck_assert_int_eq(itest_sh("rm -rf fi && git init -q --bare fi && zcat fast.gz | git -C fi "
				  "fast-import --quiet"),
	    0);
	char *got = itest_sh_out("git -C fi rev-parse refs/heads/master");
	ck_assert_str_eq(got, head);
	ck_assert_int_eq(itest_sh("git -C fi fsck --full --no-dangling 2>&1"), 0);
	char *want_log = itest_sh_out("git -C %s rev-list main | sort", repo);
	char *got_log = itest_sh_out("git -C fi rev-list master | sort");
	ck_assert_str_eq(got_log, want_log);

	/* Cooked again: the same bytes. */
	expire_job(job);
	cook_done("revision", head, "gitfast");
	char *sha2 = download(path, "application/gzip", name, "fast2.gz");
	ck_assert_str_eq(sha2, sha);

	/* SWH's path serves the same bundle. */
	char *swh = xasprintf("/api/1/vault/gitfast/swh:1:rev:%s/", head);
	json_t *st = post(swh, 200);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	char *fetch = xasprintf("/api/1/vault/gitfast/swh:1:rev:%s/raw/", head);
	const char *fu = json_string_value(json_object_get(st, "fetch_url"));
	ck_assert_ptr_nonnull(strstr(fu, fetch));
	char *sha3 = download(fetch, "application/gzip", name, "fast3.gz");
	ck_assert_str_eq(sha3, sha);
	json_decref(st);
	free(swh), free(fetch), free(sha3), free(sha2), free(got_log), free(want_log), free(got);
	free(sha), free(name), free(path);
}
END_TEST

/* Commits fast-import cannot rebuild as they are (no blank line before a missing
 * message, a tree with a 100664 mode) are counted as rewritten in the status; the
 * others keep their ids. */
START_TEST(test_gitfast_rewritten)
{
	load_repo();
	ck_assert_int_eq(
	    itest_sh(
		"set -e; r=repos/odd; rm -rf $r; git init -q -b main $r; cd $r;"
		" b=$(echo odd | git hash-object -w --stdin);"
		" t=$(perl -e 'print \"100664 odd.txt\\0\", pack(\"H*\", $ARGV[0])' $b |"
		" git hash-object -t tree -w --literally --stdin);"
		" c1=$(printf 'tree %%s\\nauthor A <a@b> 1 +0000\\ncommitter A <a@b> 1 +0000\\n' $t |"
		" git hash-object -t commit -w --literally --stdin);"
		" git update-ref refs/heads/main $c1"),
	    0);
	char *url = xasprintf("file://%s/repos/odd", IT.dir);
	json_t *doc = itest_load(url, 60);
	char *dump = json_dumps(doc, 0);
	ck_assert_msg(strcmp(json_string_value(json_object_get(doc, "status")), "done") == 0,
	    "load: %s", dump);
	free(dump);
	json_decref(doc);
	char *rev = itest_sh_out("git -C repos/odd rev-parse main");
	cook_done("revision", rev, "gitfast");
	char *status = xasprintf("/vault/revision/%s/status?format=gitfast", rev);
	json_t *st = itest_wait_status(status, 30);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "rewritten")), 1);
	json_decref(st);
	/* The main repository's history needs no rewriting: no "rewritten" key. */
	free(status);
	status = xasprintf("/vault/revision/%s/status?format=gitfast", head);
	char *again = xasprintf("/vault/revision/%s?format=gitfast", head);
	json_decref(post(again, 200));
	free(again);
	st = itest_wait_status(status, 60);
	ck_assert_ptr_null(json_object_get(st, "rewritten"));
	json_decref(st);
	free(status), free(rev), free(url);
}
END_TEST

/* git-bare of a revision: clone it, the head and the history keep their ids. */
START_TEST(test_git_bare_revision)
{
	load_repo();
	json_int_t job = cook_done("revision", head, "git-bare");
	char *path = xasprintf("/vault/revision/%s?format=git-bare", head);
	char *name = xasprintf("swh_1_rev_%s.git.tar", head);
	char *sha = download(path, "application/x-tar", name, "rev.git.tar");
	ck_assert_int_eq(itest_sh("rm -rf rx && mkdir rx && tar xf rev.git.tar -C rx"), 0);
	ck_assert_int_eq(itest_sh("git -C rx/swh:1:rev:%s.git fsck --full --strict 2>&1", head), 0);
	ck_assert_int_eq(
	    itest_sh("rm -rf rclone && git clone -q rx/swh:1:rev:%s.git rclone", head), 0);
	char *got = itest_sh_out("git -C rclone rev-parse HEAD");
	ck_assert_str_eq(got, head);
	char *want_log = itest_sh_out("git -C %s rev-list main", repo);
	char *got_log = itest_sh_out("git -C rclone rev-list HEAD");
	ck_assert_str_eq(got_log, want_log);
	/* The working tree is the revision's: the executable and the symlink too. */
	ck_assert_int_eq(itest_sh("test -x rclone/run.sh && test -L rclone/readme-link"), 0);

	expire_job(job);
	cook_done("revision", head, "git-bare");
	char *sha2 = download(path, "application/x-tar", name, "rev2.git.tar");
	ck_assert_str_eq(sha2, sha);
	free(sha2), free(got_log), free(want_log), free(got), free(sha), free(name), free(path);
}
END_TEST

/* git-bare of the snapshot: every branch and tag, with HEAD. */
START_TEST(test_git_bare_snapshot)
{
	load_repo();
	/* A snapshot's default format is git-bare. */
	char *path = xasprintf("/vault/snapshot/%s", snapshot);
	json_t *j = post(path, 201);
	ck_assert_str_eq(json_string_value(json_object_get(j, "format")), "git-bare");
	json_decref(j);
	char *status = xasprintf("/vault/snapshot/%s/status", snapshot);
	json_t *st = itest_wait_status(status, 120);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	char *name = xasprintf("swh_1_snp_%s.git.tar", snapshot);
	char *sha = download(path, "application/x-tar", name, "snp.git.tar");
	ck_assert_int_eq(itest_sh("rm -rf sx && mkdir sx && tar xf snp.git.tar -C sx"), 0);
	ck_assert_int_eq(
	    itest_sh("git -C sx/swh:1:snp:%s.git fsck --full --strict 2>&1", snapshot), 0);
	char *want =
	    itest_sh_out("git -C %s for-each-ref --format='%%(objectname) %%(refname)'", repo);
	char *got = itest_sh_out(
	    "git -C sx/swh:1:snp:%s.git for-each-ref --format='%%(objectname) %%(refname)'",
	    snapshot);
	ck_assert_str_eq(got, want);
	char *headref = itest_sh_out("git -C sx/swh:1:snp:%s.git symbolic-ref HEAD", snapshot);
	ck_assert_str_eq(headref, "refs/heads/main");
	ck_assert_int_eq(
	    itest_sh("rm -rf sclone && git clone -q sx/swh:1:snp:%s.git sclone", snapshot), 0);
	char *got_head = itest_sh_out("git -C sclone rev-parse HEAD");
	ck_assert_str_eq(got_head, head);
	/* SWH's path. */
	char *swh = xasprintf("/api/1/vault/git-bare/swh:1:snp:%s/raw/", snapshot);
	char *sha2 = download(swh, "application/x-tar", name, "snp2.git.tar");
	ck_assert_str_eq(sha2, sha);
	/* Cooked again: the same bytes. */
	j = post(path, 200);
	expire_job(json_integer_value(json_object_get(j, "id")));
	json_decref(j);
	json_decref(post(path, 201));
	st = itest_wait_status(status, 120);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "done");
	json_decref(st);
	char *sha3 = download(path, "application/x-tar", name, "snp3.git.tar");
	ck_assert_str_eq(sha3, sha);
	free(sha3), free(sha2), free(swh), free(got_head), free(headref), free(got), free(want),
	    free(sha);
	free(name), free(status), free(path);
}
END_TEST

/* A revision as tar.gz and zip is its root tree; a directory as git-bare is one commit. */
START_TEST(test_revision_tree_formats)
{
	load_repo();
	char *tree = itest_sh_out("git -C %s rev-parse main^{tree}", repo);
	json_int_t job = cook_done("revision", head, "tar.gz");
	char *path = xasprintf("/vault/revision/%s", head);
	char *name = xasprintf("swh_1_rev_%s.tar.gz", head);
	char *first = download(path, "application/gzip", name, "rev.tar.gz");
	expire_job(job);
	cook_done("revision", head, "tar.gz");
	char *again = download(path, "application/gzip", name, "rev.tar.gz");
	ck_assert_str_eq(again, first);
	free(again), free(first);
	ck_assert_int_eq(itest_sh("rm -rf tx && mkdir tx && tar xzf rev.tar.gz -C tx"), 0);
	char *dir = xasprintf("%s/tx/swh:1:rev:%s", IT.dir, head);
	char *got = itest_git_tree_id(dir);
	/* The submodule entry is not a folder in an archive: compare without it. */
	char *want =
	    itest_sh_out("cd %s && git ls-tree main | grep -v '^160000' | git mktree", repo);
	ck_assert_str_eq(got, want);
	free(got), free(dir), free(name), free(path);

	cook_done("revision", head, "zip");
	path = xasprintf("/vault/revision/%s?format=zip", head);
	name = xasprintf("swh_1_rev_%s.zip", head);
	free(download(path, "application/zip", name, "rev.zip"));
	ck_assert_int_eq(itest_sh("rm -rf zx && mkdir zx && cd zx && unzip -q ../rev.zip"), 0);
	dir = xasprintf("%s/zx/swh:1:rev:%s", IT.dir, head);
	got = itest_git_tree_id(dir);
	ck_assert_str_eq(got, want);
	free(got), free(dir), free(name), free(path);

	/* A directory as git-bare: a clone whose HEAD holds exactly the tree. */
	cook_done("directory", tree, "git-bare");
	path = xasprintf("/vault/directory/%s?format=git-bare", tree);
	name = xasprintf("swh_1_dir_%s.git.tar", tree);
	free(download(path, "application/x-tar", name, "dir.git.tar"));
	ck_assert_int_eq(itest_sh("rm -rf dx && mkdir dx && tar xf dir.git.tar -C dx && git -C "
				  "dx/swh:1:dir:%s.git fsck --full 2>&1",
			     tree),
	    0);
	got = itest_sh_out("git -C dx/swh:1:dir:%s.git rev-parse HEAD^{tree}", tree);
	ck_assert_str_eq(got, tree);
	free(got), free(name), free(path), free(want), free(tree);
}
END_TEST

/* Combinations that make no sense, bad ids and unknown objects. */
START_TEST(test_bad_inputs)
{
	static const struct {
		const char *method, *path;
		long status;
		const char *needle;
	} cases[] = {
	    {"POST", "/vault/directory/ID?format=gitfast", 400, "tar.gz, zip, git-bare"},
	    {"POST", "/vault/snapshot/ID?format=tar.gz", 400, "formats for a snapshot: git-bare"},
	    {"POST", "/vault/snapshot/ID?format=zip", 400, "git-bare"},
	    {"POST", "/vault/revision/ID?format=rar", 400, "tar.gz, zip, gitfast, git-bare"},
	    {"GET", "/vault/revision/ID/status?format=gitfast", 404, "never requested"},
	    {"POST", "/vault/release/ID", 404, "kinds: directory, revision, snapshot"},
	    {"POST", "/vault/revision/swh:1:rev:0123", 400, "invalid id"},
	    {"POST", "/api/1/vault/gitfast/swh:1:dir:ID/", 400, "cannot be cooked as 'gitfast'"},
	    {"POST", "/api/1/vault/git-bare/swh:1:rel:ID/", 400, "cannot be cooked as 'git-bare'"},
	    {"POST", "/api/1/vault/gitfast/swh:1:rev:ID;origin=x/", 400, "Invalid SWHID"},
	};
	const char *unknown = "0123456789012345678901234567890123456789";
	struct itest_resp r;

	load_repo();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *at = strstr(cases[i].path, "ID");
		char *path = at ? xasprintf("%.*s%s%s", (int)(at - cases[i].path), cases[i].path,
				      unknown, at + 2)
				: xstrdup(cases[i].path);
		itest_http(&r, cases[i].method, path, IT_USER, NULL, 0, NULL);
		ck_assert_msg(r.status == cases[i].status && strstr(r.body.data, cases[i].needle),
		    "%s %s: %ld %s", cases[i].method, path, r.status, r.body.data);
		ck_assert_str_eq(itest_header(&r, "Content-Type"), "application/json");
		itest_resp_free(&r);
		free(path);
	}
	/* The listing knows the revision bundles of the other tests, per format. */
	itest_http(&r, "GET", "/vault/revision?format=gitfast", NULL, NULL, 0, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_ge(
	    json_integer_value(json_object_get(json_object_get(r.json, "meta"), "total")), 1);
	json_t *item = json_array_get(json_object_get(r.json, "items"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(item, "format")), "gitfast");
	ck_assert_str_eq(json_string_value(json_object_get(item, "obj_type")), "revision");
	itest_resp_free(&r);
	/* Unknown objects of each kind: 404 naming them. */
	const char *kinds[] = {"revision", "snapshot"};
	for (size_t i = 0; i < 2; i++) {
		char *path = xasprintf("/vault/%s/%s", kinds[i], unknown);
		itest_http(&r, "POST", path, IT_USER, NULL, 0, NULL);
		ck_assert_msg(r.status == 404 && strstr(r.body.data, "not found"), "%s: %ld %s",
		    path, r.status, r.body.data);
		itest_resp_free(&r);
		free(path);
	}
}
END_TEST

/* A history whose file bytes vanished from the store fails with a reason, never a
 * bundle with a placeholder. */
START_TEST(test_missing_blob_fails)
{
	load_repo();
	/* A repository of its own, so no other test's bundle depends on the lost bytes. */
	ck_assert_int_eq(
	    itest_sh("set -e; r=repos/lost; mkdir -p $r; cd $r; git init -q -b main .;"
		     " echo 'unique bytes of the lost repository' > lost.txt; git add -A;"
		     " git -c user.name=a -c user.email=a@b commit -q -m lost"),
	    0);
	char *url = xasprintf("file://%s/repos/lost", IT.dir);
	json_t *doc = itest_load(url, 60);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	json_decref(doc);
	char *rev = itest_sh_out("git -C repos/lost rev-parse main");
	char *blob = itest_sh_out("git -C repos/lost rev-parse main:lost.txt");
	char *sql = xasprintf(
	    "SELECT encode(sha256, 'hex') FROM contents WHERE sha1_git = decode('%s', 'hex')",
	    blob);
	char *sha = itest_sql(sql);
	ck_assert_int_eq(
	    itest_sh("rm -f %s/store/objects/%.2s/%.2s/%s", IT.data_dir, sha, sha + 2, sha), 0);
	char *path = xasprintf("/vault/revision/%s?format=gitfast", rev);
	json_decref(post(path, 201));
	char *status = xasprintf("/vault/revision/%s/status?format=gitfast", rev);
	json_t *st = itest_wait_status(status, 60);
	ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "failed");
	const char *msg = json_string_value(json_object_get(st, "progress_message"));
	ck_assert_msg(
	    msg != NULL && strstr(msg, "missing from the store") != NULL, "reason: %s", msg);
	json_decref(st);
	free(status), free(path), free(sha), free(sql), free(blob), free(rev), free(url);
}
END_TEST

/* Past max_bundle_size a git bundle fails with a readable reason, not a crash or a
 * partial bundle. Runs last: it restarts the workers with a 1 KiB cap. */
START_TEST(test_size_cap)
{
	load_repo();
	ck_assert_int_eq(itest_sh("set -e; r=repos/big; rm -rf $r; git init -q -b main $r; cd $r;"
				  " head -c 8192 /dev/urandom > noise.bin; git add -A;"
				  " git -c user.name=a -c user.email=a@b commit -q -m big"),
	    0);
	char *url = xasprintf("file://%s/repos/big", IT.dir);
	json_t *doc = itest_load(url, 60);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "status")), "done");
	json_decref(doc);
	char *rev = itest_sh_out("git -C repos/big rev-parse main");
	for (int i = IT.nworkers - 1; i >= 0; i--)
		itest_stop_worker(i, SIGTERM);
	IT.nworkers = 0;
	itest_env("BITSVAULT_MAX_BUNDLE_SIZE=1K");
	itest_start_worker("gitfmt-cap");
	const char *formats[] = {"gitfast", "git-bare"};
	for (size_t i = 0; i < 2; i++) {
		char *path = xasprintf("/vault/revision/%s?format=%s", rev, formats[i]);
		char *status = xasprintf("/vault/revision/%s/status?format=%s", rev, formats[i]);
		json_decref(post(path, 201));
		json_t *st = itest_wait_status(status, 60);
		ck_assert_str_eq(json_string_value(json_object_get(st, "status")), "failed");
		const char *msg = json_string_value(json_object_get(st, "progress_message"));
		ck_assert_msg(msg != NULL && strstr(msg, "exceeds the size limit of 1024 bytes"),
		    "%s: %s", formats[i], msg);
		json_decref(st);
		free(status), free(path);
	}
	/* Nothing half-written stays in the store's temp folder or the worker's. */
	ck_assert_int_eq(itest_sh("test -z \"$(find %s/store/tmp %s/tmp -type f 2>/dev/null)\"",
			     IT.data_dir, IT.data_dir),
	    0);
	free(rev), free(url);
}
END_TEST

static void
setup(void)
{
	itest_init("gitfmt", 9);
	itest_env("BITSVAULT_LOAD_ALLOW_FILE=true");
	itest_start_api();
	itest_start_worker("gitfmt-w1");
	itest_start_worker("gitfmt-w2");
}

int
main(void)
{
	Suite *s = suite_create("itest_gitfmt");
	TCase *tc = tcase_create("gitfmt");
	tcase_add_unchecked_fixture(tc, setup, itest_teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_gitfast);
	tcase_add_test(tc, test_gitfast_rewritten);
	tcase_add_test(tc, test_git_bare_revision);
	tcase_add_test(tc, test_git_bare_snapshot);
	tcase_add_test(tc, test_revision_tree_formats);
	tcase_add_test(tc, test_bad_inputs);
	tcase_add_test(tc, test_missing_blob_fails);
	tcase_add_test(tc, test_size_cap);
	suite_add_tcase(s, tc);
	return itest_run(s);
}
