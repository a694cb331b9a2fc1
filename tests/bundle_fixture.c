/* bundle_fixture.c: see bundle_fixture.h. */
#include <check.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/bundle_fixture.h"

unsigned char *big;
int ticks;

/* Deterministic, poorly compressible bytes. */
void
make_big(void)
{
	uint64_t x = 88172645463325252ULL;

	if (big != NULL)
		return;
	big = xmalloc(BIG_SIZE);
	for (size_t i = 0; i < BIG_SIZE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		big[i] = (i % 4096) < 2048 ? (unsigned char)x : (unsigned char)('a' + i % 26);
	}
}

/* An fd positioned at 0 holding len bytes. */
int
fd_with(const void *data, size_t len)
{
	int fd = memfd_create("bundle_fixture", 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* The sink: appends to the buffer, or fails past the limit. */
int
mem_sink_cb(void *arg, const void *data, size_t len, char **errstr)
{
	struct mem_sink *ms = arg;
	if (ms->limit > 0 && ms->out.len + len > ms->limit) {
		*errstr = xasprintf("bundle exceeds the size limit of %zu bytes", ms->limit);
		return -1;
	}
	buf_add(&ms->out, data, len);
	return 0;
}

/* A tick that only counts its calls. */
int
count_tick(void *arg, char **errstr)
{
	(void)arg;
	(void)errstr;
	ticks++;
	return 0;
}
