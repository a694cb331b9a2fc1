/* bench/gzip.c: a gzip filter on pgzip for bench/gzip: stdin to stdout, like `gzip -c`.
 * Usage: pgzip-bench [-l LEVEL] [-t THREADS] < in > out. Built by bench/gzip with gcc,
 * outside automake, from this file, shared/pgzip.c and shared/util.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/pgzip.h"

/* The sink: everything to stdout (fd 1), retrying short writes. */
static int
sink_stdout(void *arg, const void *data, size_t len, char **errstr)
{
	const char *p = data;

	(void)arg;
	while (len > 0) {
		ssize_t n = write(1, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*errstr = xasprintf("write: %s", strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	int level = 6, threads = 2, opt;
	size_t cap = 1 << 20;
	char *buf, *err = NULL;
	struct pgzip *z;

	while ((opt = getopt(argc, argv, "l:t:")) != -1) {
		switch (opt) {
		case 'l':
			level = atoi(optarg);
			break;
		case 't':
			threads = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-l LEVEL] [-t THREADS] < in > out\n", argv[0]);
			return 2;
		}
	}
	buf = xmalloc(cap);
	z = pgzip_new(level, threads, sink_stdout, NULL);
	for (;;) {
		ssize_t n = read(0, buf, cap);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "read: %s\n", strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		if (pgzip_write(z, buf, (size_t)n, &err) != 0)
			goto fail;
	}
	if (pgzip_finish(z, &err) != 0)
		goto fail;
	pgzip_free(z);
	free(buf);
	return 0;
fail:
	fprintf(stderr, "pgzip: %s\n", err);
	free(err);
	pgzip_free(z);
	free(buf);
	return 1;
}
