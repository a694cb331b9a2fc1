/* bundle_fixture.h: what the bundle writer's unit tests (check_tar.c, check_zip.c) share:
 * a poorly compressible big file, in-memory files, a sink into memory with an optional size
 * limit like the cook's, and a progress tick that counts its calls. */
#ifndef BV_BUNDLE_FIXTURE_H
#define BV_BUNDLE_FIXTURE_H

#include <stddef.h>

#include "shared/util.h"

#define BIG_SIZE (3 * 1024 * 1024 + 123)

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

#endif
