/* pgzip.h: a gzip compressor that uses several cores and libdeflate, for bundles.
 * The output is one ordinary gzip member (RFC 1952) that gzip, tar, zlib and every
 * language's library read; it is deterministic: the same input, level and block size give
 * the same bytes whatever the thread count or timing. Header: no name, mtime 0, OS 3. */
#ifndef BV_PGZIP_H
#define BV_PGZIP_H

#include <stddef.h>

#include "shared/util.h"

/* Receives compressed bytes in order; returns 0, or -1 with *errstr to stop. */
typedef int (*pgzip_sink)(void *arg, const void *data, size_t len, char **errstr);

struct pgzip;

/* level 1..12 (libdeflate's scale; 6 is gzip -6's ratio), threads >= 1 (1 = compress on
 * the caller's thread). */
struct pgzip *pgzip_new(int level, int threads, pgzip_sink sink, void *arg);
/* Feeds uncompressed bytes; may call sink. 0 or -1 (+ *errstr, from the sink or a
 * compression failure). */
int pgzip_write(struct pgzip *z, const void *data, size_t len, char **errstr) BV_MUSTCHECK;
/* Flushes the rest and the trailer (CRC-32, size). 0 or -1. */
int pgzip_finish(struct pgzip *z, char **errstr) BV_MUSTCHECK;
/* Frees (stopping its threads); safe after an error and on NULL. */
void pgzip_free(struct pgzip *z);

#endif
