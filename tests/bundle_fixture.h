/* bundle_fixture.h: what the bundle writer's unit tests (check_tar.c, check_zip.c) share:
 * a poorly compressible big file, in-memory files, a sink into memory with an optional size
 * limit like the cook's, and a progress tick that counts its calls. */
#ifndef BV_BUNDLE_FIXTURE_H
#define BV_BUNDLE_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/util.h"

#define BIG_SIZE (3 * 1024 * 1024 + 123)
/* The top folder of the sample bundles (the empty tree's SWHID). */
#define TOP "swh:1:dir:4b825dc642cb6eb9a060e54bf8d69288fbee4904"
/* The manifest the manifest tests write. */
#define MANIFEST "{\"swhid\": \"" TOP "\", \"left_out\": [], \"count\": 0}\n"

/* One entry of a sample tree, in archive order. */
struct sample {
	const char *path; /* below the top folder */
	char type; /* 'd' dir, 'f' file, 'x' executable, 'l' symlink, 'b' big file */
	const char *data; /* file bytes or link target */
};

/* BIG_SIZE deterministic bytes, made by make_big(). */
extern unsigned char *big;
void make_big(void);
/* An fd positioned at 0 holding len bytes (a memfd). */
int fd_with(const void *data, size_t len);

/* A sink into a struct buf that fails past limit (0 = none), with the cook's message. */
struct mem_sink {
	struct buf out;
	size_t limit;
};
int mem_sink_cb(void *arg, const void *data, size_t len, char **errstr);

/* A tick that counts its calls in ticks. */
extern int ticks;
int count_tick(void *arg, char **errstr);

/* Files for extraction tests (each aborts the test on failure). */
char *save(const char *dir, const char *name, const void *data, size_t len);
char *make_tmpdir(void);
void remove_tree(const char *dir);
char *slurp(const char *path, size_t *len);
/* What `tar tv` / `unzip -Z` show as permissions for a sample type. */
const char *ls_perms(char type);
/* Checks a manifest test's bundle (tar.gz or zip): entries, metadata, bytes, and that
 * GNU tar or unzip list and extract it. */
void check_manifest_bundle(const char *data, size_t len, bool zip);

#endif
