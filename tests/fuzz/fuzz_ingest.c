/* fuzz_ingest.c: archive uploads (shared/ingest.c over libarchive: tar, tar.gz/bz2/xz/zst,
 * zip), the way POST /directories and the app stash take them, without Postgres (db NULL:
 * ids computed, blobs stored in a scratch store, no rows). Input: the archive's bytes.
 * Properties: the answer is 200, 400 or 413 (a 500 would be the server's fault on a
 * client's bytes); limits hold (entries, unpacked bytes: a zip bomb is a 413, not a full
 * disk); every reported path is relative, with no empty, "." or ".." component and no
 * NUL, and its bytes are stored under its sha256; no temp file is left behind. */
#include <dirent.h>
#include <ftw.h>
#include <unistd.h>

#include "shared/ingest.h"
#include "shared/store.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ENTRIES 2000
#define MAX_UNPACKED (8 << 20)

static char root[256], spool[300];
static struct store *st;
static unsigned long runs;

/* Removes the scratch folder at exit (atexit: libFuzzer's normal end). */
static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
cleanup(void)
{
	store_free(st);
	st = NULL;
	(void)nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A new scratch store (the old one, if any, removed). */
static void
reopen(void)
{
	char *err = NULL;
	const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";

	if (st != NULL)
		cleanup();
	snprintf(root, sizeof root, "%s/bv-fuzz-ingest-XXXXXX", tmp);
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		abort();
	}
	if ((st = store_open_local(root, &err)) == NULL) {
		fprintf(stderr, "store: %s\n", err);
		abort();
	}
	snprintf(spool, sizeof spool, "%s/upload", root);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	reopen();
	atexit(cleanup);
	return 0;
}

struct seen {
	int64_t files;
	unsigned char (*sha256)[32];
	size_t n, cap;
};

/* Checks one stored file's path, and remembers its blob for removal. */
static void
on_file(void *arg, const char *path, size_t len, unsigned int perm, const struct content_row *row)
{
	struct seen *s = arg;
	const char *p = path, *end = path + len;

	FUZZ_CHECK(len > 0 && memchr(path, '\0', len) == NULL);
	FUZZ_CHECK(path[0] != '/');
	while (p <= end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t clen = (size_t)((slash != NULL ? slash : end) - p);

		FUZZ_CHECK(clen > 0);
		FUZZ_CHECK(!(clen == 1 && p[0] == '.'));
		FUZZ_CHECK(!(clen == 2 && p[0] == '.' && p[1] == '.'));
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	FUZZ_CHECK(row->length >= 0 && row->length <= MAX_UNPACKED);
	FUZZ_CHECK(store_exists(st, row->sha256));
	if (s->n == s->cap)
		s->sha256 = xrealloc(s->sha256, (s->cap = s->cap ? 2 * s->cap : 16) * 32);
	memcpy(s->sha256[s->n++], row->sha256, 32);
	s->files++;
}

/* Files (not dot entries) in the store's tmp folder. */
static int
tmp_files(void)
{
	char path[320];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof path, "%s/tmp", root);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ingest_limits lim = {MAX_ENTRIES, MAX_UNPACKED};
	struct ingest_result res;
	struct seen s = {0};
	char *err = NULL;
	int status = 0, rc;
	FILE *f = fopen(spool, "wb");

	FUZZ_CHECK(f != NULL);
	FUZZ_CHECK(fwrite(data, 1, size, f) == size || size == 0);
	FUZZ_CHECK(fclose(f) == 0);
	rc = ingest_archive_files(st, NULL, spool, &lim, on_file, &s, &res, &status, &err);
	FUZZ_CHECK((rc == 0) == (status == 200));
	if (status != 200 && status != 400 && status != 413) {
		fprintf(stderr, "ingest answered %d: %s\n", status, err != NULL ? err : "");
		FUZZ_CHECK(status == 200 || status == 400 || status == 413);
	}
	if (rc == 0) {
		FUZZ_CHECK(err == NULL);
		FUZZ_CHECK(res.files >= s.files && res.directories >= 1);
		FUZZ_CHECK(res.bytes >= 0 && res.bytes <= MAX_UNPACKED);
	} else {
		FUZZ_CHECK(err != NULL && err[0] != '\0');
	}
	FUZZ_CHECK(tmp_files() == 0);
	for (size_t i = 0; i < s.n; i++) {
		char *e2 = NULL;

		if (store_delete(st, s.sha256[i], &e2) != 0)
			free(e2);
	}
	free(s.sha256);
	free(err);
	unlink(spool);
	/* A refused archive may leave blobs of its first files: start afresh now and then. */
	if (++runs % 2000 == 0)
		reopen();
	return 0;
}
