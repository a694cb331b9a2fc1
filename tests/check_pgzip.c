/* check_pgzip.c: pgzip's output is one ordinary gzip member that zlib and gzip read back,
 * byte-identical whatever the thread count or the write sizes; errors from the sink stop it
 * cleanly. The deflate walker is also tested white-box against zlib's own idea of the block
 * boundaries (inflate with Z_BLOCK), on streams from zlib (stored, fixed, dynamic blocks,
 * flushes) and libdeflate: libdeflate 1.14 never ends a 1 MiB block with a fixed-Huffman
 * block, so the tests through the API alone would not reach that path.
 *
 * The module's .c is included so that its static walker can be called; the test then does
 * not take pgzip.o from the library (nothing else it links references it). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "shared/pgzip.c"
#include "shared/util.h"

/* ---- data ---- */

/* xorshift64: reproducible test data without libc's rand state. */
static uint64_t
rnd(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

enum kind { RANDOM, TEXT, MIXED };

/* n bytes of incompressible, source-like or mixed (random, text, zero and small-alphabet
 * runs, which give stored and Huffman blocks) data. */
static uint8_t *
gen(enum kind kind, size_t n, uint64_t seed)
{
	static const char *words[] = {"static ", "int ", "return ", "struct ", "pgzip", "_write",
	    "(z, ", "data, ", "len);\n", "\t", "{\n", "}\n", "if (", "NULL", " == ", "0x1f8b"};
	uint8_t *p = xmalloc(n + 1);
	uint64_t st = seed * 2654435761u + 1;
	size_t i = 0;

	while (i < n) {
		int k = kind == MIXED ? (int)(rnd(&st) % 4) : kind == RANDOM ? 0 : 1;
		size_t seg = kind == MIXED ? 100 + rnd(&st) % 150000 : n;

		for (size_t j = 0; j < seg && i < n; j++) {
			uint64_t r = rnd(&st);

			if (k == 0) {
				p[i++] = (uint8_t)r;
			} else if (k == 1) {
				const char *w = words[r % BV_NELEM(words)];

				if (r % 7 == 0) {
					p[i++] = (uint8_t)('0' + (r >> 8) % 10);
					continue;
				}
				for (; *w != '\0' && i < n; w++)
					p[i++] = (uint8_t)*w;
			} else if (k == 2) {
				p[i++] = 0;
			} else {
				p[i++] = (uint8_t)('a' + r % 3);
			}
		}
	}
	return p;
}

/* ---- compressing through the API ---- */

struct sink_state {
	struct buf out;
	size_t fail_after; /* fail when the output would pass this many bytes; 0: never */
	int calls;
};

/* Appends to a buffer, or fails like a full disk. */
static int
test_sink(void *arg, const void *data, size_t len, char **errstr)
{
	struct sink_state *s = arg;

	s->calls++;
	if (s->fail_after != 0 && s->out.len + len > s->fail_after) {
		*errstr = xstrdup("disk full (test)");
		return -1;
	}
	buf_add(&s->out, data, len);
	return 0;
}

/* Compresses data in writes of `piece` bytes (0: one write); returns the output. */
static struct buf
pgz_compress(const uint8_t *data, size_t n, int level, int threads, size_t piece)
{
	struct sink_state s = {0};
	struct pgzip *z;
	char *err = NULL;
	size_t off = 0;

	buf_init(&s.out);
	z = pgzip_new(level, threads, test_sink, &s);
	ck_assert_ptr_nonnull(z);
	do {
		size_t k = piece == 0 || n - off < piece ? n - off : piece;

		ck_assert_msg(pgzip_write(z, data + off, k, &err) == 0, "write: %s", err);
		off += k;
	} while (off < n);
	ck_assert_msg(pgzip_finish(z, &err) == 0, "finish: %s", err);
	pgzip_free(z);
	return s.out;
}

/* Checks that out is exactly one gzip member holding data: zlib (gzip wrapper only) inflates
 * it to data and ends exactly at the end of the bytes. */
static void
check_single_member(const struct buf *out, const uint8_t *data, size_t n)
{
	z_stream zs;
	uint8_t *dst = xmalloc(n + 16);
	const uint8_t *o = (const uint8_t *)out->data;
	uint32_t crc = (uint32_t)crc32(0, data, (uInt)n);
	int rc;

	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(inflateInit2(&zs, 16 + 15), Z_OK);
	zs.next_in = (Bytef *)out->data;
	zs.avail_in = (uInt)out->len;
	zs.next_out = dst;
	zs.avail_out = (uInt)n + 16;
	rc = inflate(&zs, Z_FINISH);
	ck_assert_msg(rc == Z_STREAM_END, "inflate: %d %s", rc, zs.msg ? zs.msg : "");
	ck_assert_msg(zs.avail_in == 0, "%u bytes after the first gzip member", zs.avail_in);
	ck_assert_uint_eq(zs.total_out, n);
	ck_assert(memcmp(dst, data, n) == 0);
	inflateEnd(&zs);
	free(dst);
	/* Trailer: CRC-32 and ISIZE, little-endian. */
	ck_assert_uint_ge(out->len, 18);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(o[out->len - 8 + i], (crc >> (8 * i)) & 0xff);
		ck_assert_uint_eq(o[out->len - 4 + i], ((uint32_t)n >> (8 * i)) & 0xff);
	}
}

/* ---- round trips ---- */

/* Sizes around the block boundaries, each with every kind of data and 1 or 2 threads. */
static const size_t round_trip_sizes[] = {0, 1, 2, 1000, PGZIP_BLOCK - 1, PGZIP_BLOCK,
    PGZIP_BLOCK + 1, 2 * PGZIP_BLOCK, 2 * PGZIP_BLOCK + 7, 5 * PGZIP_BLOCK + 12345};

START_TEST(test_round_trip)
{
	size_t n = round_trip_sizes[_i];

	for (int kind = RANDOM; kind <= MIXED; kind++) {
		uint8_t *data = gen(kind, n, n + (size_t)kind);

		for (int threads = 1; threads <= 2; threads++) {
			struct buf out = pgz_compress(data, n, 6, threads, 0);

			check_single_member(&out, data, n);
			buf_free(&out);
		}
		free(data);
	}
}
END_TEST

/* Every level (1..12) on mixed data over several blocks. */
START_TEST(test_levels)
{
	size_t n = 3 * PGZIP_BLOCK + 999;
	uint8_t *data = gen(MIXED, n, 42);

	for (int level = 1; level <= 12; level++) {
		struct buf out = pgz_compress(data, n, level, 2, 0);
		const uint8_t *o = (const uint8_t *)out.data;

		check_single_member(&out, data, n);
		ck_assert_uint_eq(o[8], level < 2 ? 4 : level >= 8 ? 2 : 0);
		buf_free(&out);
	}
	free(data);
}
END_TEST

/* The exact header: no flags, mtime 0, XFL 0 at level 6, OS 3 (Unix). */
START_TEST(test_header)
{
	static const uint8_t want[10] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03};
	uint8_t *data = gen(TEXT, 5000, 1);
	struct buf out = pgz_compress(data, 5000, 6, 1, 0);
	struct buf empty = pgz_compress(data, 0, 6, 2, 0);

	ck_assert(memcmp(out.data, want, sizeof(want)) == 0);
	ck_assert(memcmp(empty.data, want, sizeof(want)) == 0);
	/* Empty input: header, an empty final block, trailer of zeros. */
	ck_assert_uint_le(empty.len, 10 + 5 + 8);
	buf_free(&out);
	buf_free(&empty);
	free(data);
}
END_TEST

/* Same bytes for 1, 2 and 3 threads, for any split of the writes, and run after run. */
START_TEST(test_deterministic)
{
	size_t n = 4 * PGZIP_BLOCK + 4321;
	uint8_t *data = gen(MIXED, n, 7);
	struct buf ref = pgz_compress(data, n, 6, 1, 0);
	struct {
		int threads;
		size_t piece;
	} cases[] = {{2, 0}, {2, 0}, {3, 0}, {2, 1}, {2, 4093}, {1, 65536}, {4, PGZIP_BLOCK},
	    {2, PGZIP_BLOCK + 1}};

	check_single_member(&ref, data, n);
	for (size_t i = 0; i < BV_NELEM(cases); i++) {
		struct buf out = pgz_compress(data, n, 6, cases[i].threads, cases[i].piece);

		ck_assert_msg(out.len == ref.len && memcmp(out.data, ref.data, ref.len) == 0,
		    "case %zu (threads %d, writes of %zu) differs", i, cases[i].threads,
		    cases[i].piece);
		buf_free(&out);
	}
	buf_free(&ref);
	free(data);
}
END_TEST

/* gzip(1) itself accepts the output and restores the input. */
START_TEST(test_gzip_tool)
{
	size_t n = 3 * PGZIP_BLOCK + 17;
	uint8_t *data = gen(MIXED, n, 9);
	struct buf out = pgz_compress(data, n, 6, 2, 0);
	char gz[] = "/tmp/bv-check-pgzip-XXXXXX";
	char *cmd, *back;
	size_t back_len;
	int fd = mkstemp(gz);
	char *err = NULL;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, out.data, out.len), (ssize_t)out.len);
	close(fd);
	cmd = xasprintf("gzip -t < %s", gz);
	ck_assert_msg(system(cmd) == 0, "gzip -t rejected the output");
	free(cmd);
	cmd = xasprintf("gzip -dc < %s > %s.out", gz, gz);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	cmd = xasprintf("%s.out", gz);
	back = read_file(cmd, &back_len, &err);
	ck_assert_msg(back != NULL, "%s", err);
	ck_assert_uint_eq(back_len, n);
	ck_assert(memcmp(back, data, n) == 0);
	unlink(cmd);
	unlink(gz);
	free(cmd);
	free(back);
	buf_free(&out);
	free(data);
}
END_TEST

/* ---- errors ---- */

/* The sink fails at the header, or midway: the error comes back, stays, and free works. */
START_TEST(test_sink_error)
{
	size_t n = 6 * PGZIP_BLOCK;
	uint8_t *data = gen(TEXT, n, 3);
	size_t limits[] = {1, 11, 100000};

	for (int threads = 1; threads <= 2; threads++) {
		for (size_t li = 0; li < BV_NELEM(limits); li++) {
			struct sink_state s = {.fail_after = limits[li]};
			struct pgzip *z;
			char *err = NULL;
			int rc = 0;

			buf_init(&s.out);
			z = pgzip_new(6, threads, test_sink, &s);
			for (size_t off = 0; off < n && rc == 0; off += 65536)
				rc = pgzip_write(z, data + off, 65536, &err);
			if (rc == 0)
				rc = pgzip_finish(z, &err);
			ck_assert_int_eq(rc, -1);
			ck_assert_str_eq(err, "disk full (test)");
			free(err);
			err = NULL;
			/* Sticky: later calls fail with the same reason. */
			ck_assert_int_eq(pgzip_write(z, data, 10, &err), -1);
			ck_assert_str_eq(err, "disk full (test)");
			free(err);
			err = NULL;
			ck_assert_int_eq(pgzip_finish(z, &err), -1);
			ck_assert_str_eq(err, "disk full (test)");
			free(err);
			pgzip_free(z);
			ck_assert_uint_le(s.out.len, limits[li]);
			buf_free(&s.out);
		}
	}
	free(data);
}
END_TEST

/* Freeing mid-stream (helpers busy, nothing finished) neither hangs nor leaks; free(NULL)
 * is a no-op; writing after finish is an error. */
START_TEST(test_free_and_misuse)
{
	size_t n = 8 * PGZIP_BLOCK;
	uint8_t *data = gen(MIXED, n, 5);
	struct sink_state s = {0};
	struct pgzip *z;
	char *err = NULL;

	buf_init(&s.out);
	z = pgzip_new(9, 2, test_sink, &s);
	ck_assert_int_eq(pgzip_write(z, data, n, &err), 0);
	pgzip_free(z);
	pgzip_free(NULL);

	z = pgzip_new(6, 2, test_sink, &s);
	ck_assert_int_eq(pgzip_write(z, data, 100, &err), 0);
	ck_assert_int_eq(pgzip_finish(z, &err), 0);
	ck_assert_int_eq(pgzip_write(z, data, 1, &err), -1);
	ck_assert_ptr_nonnull(err);
	free(err);
	pgzip_free(z);
	buf_free(&s.out);
	free(data);
}
END_TEST

/* ---- the walker, white box ---- */

/* Where zlib sees the final block start and the stream end, using inflate(Z_BLOCK), which
 * stops after each block (the final one too, before the stream end) with the unused bit
 * count in data_type, plus 64 once the final block was entered. */
static void
zlib_boundaries(const uint8_t *def, size_t len, size_t out_max, size_t *last, size_t *end)
{
	z_stream zs;
	uint8_t *dst = xmalloc(out_max + 1);
	size_t prev = 0;
	bool seen_end = false;
	int rc;

	*last = *end = 0;
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(inflateInit2(&zs, -15), Z_OK);
	zs.next_in = (Bytef *)def;
	zs.avail_in = (uInt)len;
	zs.next_out = dst;
	zs.avail_out = (uInt)out_max + 1;
	for (;;) {
		rc = inflate(&zs, Z_BLOCK);
		ck_assert_msg(rc == Z_OK || rc == Z_STREAM_END, "inflate %d", rc);
		if (rc == Z_STREAM_END)
			break;
		if ((zs.data_type & 128) == 0)
			continue;
		if (zs.data_type & 64) {
			*last = prev;
			*end = zs.total_in * 8 - (size_t)(zs.data_type & 7);
			seen_end = true;
		} else {
			prev = zs.total_in * 8 - (size_t)(zs.data_type & 7);
		}
	}
	ck_assert(seen_end);
	ck_assert_uint_eq(zs.total_in, len);
	inflateEnd(&zs);
	free(dst);
}

/* A raw deflate stream of data from zlib with the given level and strategy, with a flush of
 * kind `flush` every `every` bytes (0: none): flushes add empty stored or fixed blocks. */
static struct buf
zlib_deflate(const uint8_t *data, size_t n, int level, int strategy, int flush, size_t every)
{
	z_stream zs;
	struct buf out;
	size_t off = 0;
	uint8_t tmp[65536];

	buf_init(&out);
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(deflateInit2(&zs, level, Z_DEFLATED, -15, 8, strategy), Z_OK);
	for (;;) {
		size_t k = every == 0 || n - off < every ? n - off : every;
		int last = off + k == n;

		zs.next_in = (Bytef *)data + off;
		zs.avail_in = (uInt)k;
		off += k;
		do {
			zs.next_out = tmp;
			zs.avail_out = sizeof(tmp);
			ck_assert_int_ne(deflate(&zs, last ? Z_FINISH : flush), Z_STREAM_ERROR);
			buf_add(&out, tmp, sizeof(tmp) - zs.avail_out);
		} while (zs.avail_out == 0);
		if (last)
			break;
	}
	deflateEnd(&zs);
	return out;
}

/* walk_stream agrees with zlib on streams of every block kind, and unfinalize turns each into
 * a piece that a following stream can be appended to; across the cases, the end of the
 * streams falls on every bit of a byte (so the marker's spill byte is exercised). */
START_TEST(test_walker)
{
	struct {
		const char *name;
		int level, strategy, flush;
		size_t every;
	} zc[] = {
	    {"stored", 0, Z_DEFAULT_STRATEGY, Z_NO_FLUSH, 0},
	    {"fixed", 6, Z_FIXED, Z_NO_FLUSH, 0},
	    {"fixed+partial", 6, Z_FIXED, Z_PARTIAL_FLUSH, 3001},
	    {"dynamic", 9, Z_DEFAULT_STRATEGY, Z_NO_FLUSH, 0},
	    {"dynamic+sync", 6, Z_DEFAULT_STRATEGY, Z_SYNC_FLUSH, 7777},
	    {"dynamic+partial", 1, Z_DEFAULT_STRATEGY, Z_PARTIAL_FLUSH, 501},
	    {"huffman", 6, Z_HUFFMAN_ONLY, Z_NO_FLUSH, 0},
	    {"rle", 6, Z_RLE, Z_FULL_FLUSH, 20000},
	};
	struct buf joined, all;
	unsigned residues = 0;
	uint64_t st = 11;
	struct libdeflate_compressor *c[13] = {NULL};

	buf_init(&joined);
	buf_init(&all);
	for (int round = 0; round < 40; round++) {
		size_t n = 1 + rnd(&st) % (round < 20 ? 3000 : 300000);
		uint8_t *data = gen((enum kind)(rnd(&st) % 3), n, rnd(&st));
		struct buf d;
		size_t last, end, zlast, zend, len;
		/* Every zlib case and every libdeflate level, twice. */
		int pick = round % (int)(BV_NELEM(zc) + 12);

		if (pick < (int)BV_NELEM(zc)) {
			d = zlib_deflate(data, n, zc[pick].level, zc[pick].strategy, zc[pick].flush,
			    zc[pick].every);
		} else {
			int level = pick - (int)BV_NELEM(zc) + 1;

			uint8_t *tmp;
			size_t k;

			if (c[level] == NULL)
				c[level] = libdeflate_alloc_compressor(level);
			len = libdeflate_deflate_compress_bound(c[level], n);
			tmp = xmalloc(len);
			k = libdeflate_deflate_compress(c[level], data, n, tmp, len);
			ck_assert_uint_gt(k, 0);
			buf_init(&d);
			buf_add(&d, tmp, k);
			free(tmp);
		}
		zlib_boundaries((uint8_t *)d.data, d.len, n, &zlast, &zend);
		ck_assert_int_eq(walk_stream((uint8_t *)d.data, d.len, &last, &end), 0);
		ck_assert_uint_eq(last, zlast);
		ck_assert_uint_eq(end, zend);
		residues |= 1u << (end % 8);
		/* Join it as a non-final piece. */
		len = d.len;
		buf_add(&d, "\0\0\0\0\0\0\0", PGZIP_MARKER);
		ck_assert_int_eq(unfinalize((uint8_t *)d.data, &len), 0);
		buf_add(&joined, d.data, len);
		buf_add(&all, data, n);
		buf_free(&d);
		free(data);
	}
	/* A final empty stream ends it; the whole must inflate to all the inputs. */
	{
		uint8_t fin[16];
		struct libdeflate_compressor *c1 = libdeflate_alloc_compressor(1);
		size_t k = libdeflate_deflate_compress(c1, "", 0, fin, sizeof(fin));
		z_stream zs;

		libdeflate_free_compressor(c1);
		uint8_t *dst = xmalloc(all.len + 1);

		ck_assert_uint_gt(k, 0);
		buf_add(&joined, fin, k);
		memset(&zs, 0, sizeof(zs));
		ck_assert_int_eq(inflateInit2(&zs, -15), Z_OK);
		zs.next_in = (Bytef *)joined.data;
		zs.avail_in = (uInt)joined.len;
		zs.next_out = dst;
		zs.avail_out = (uInt)all.len + 1;
		ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
		ck_assert_uint_eq(zs.avail_in, 0);
		ck_assert_uint_eq(zs.total_out, all.len);
		ck_assert(memcmp(dst, all.data, all.len) == 0);
		inflateEnd(&zs);
		free(dst);
	}
	ck_assert_msg(residues == 0xff, "stream ends covered only bit residues %#x", residues);
	for (int i = 0; i < 13; i++)
		libdeflate_free_compressor(c[i]);
	buf_free(&joined);
	buf_free(&all);
}
END_TEST

/* The walker refuses broken streams instead of looping or reading past the end. */
START_TEST(test_walker_garbage)
{
	uint64_t st = 99;
	size_t n = 200000;
	uint8_t *data = gen(TEXT, n, 2);
	struct buf d = zlib_deflate(data, n, 6, Z_DEFAULT_STRATEGY, Z_NO_FLUSH, 0);
	size_t last, end;
	uint8_t junk[4096];

	/* Truncated: every cut fails. */
	for (size_t cut = 0; cut + 1 < d.len; cut += 1 + d.len / 97)
		ck_assert_int_eq(walk_stream((uint8_t *)d.data, cut, &last, &end), -1);
	/* Trailing bytes after the final block are not libdeflate's output: refused. */
	buf_add(&d, "xx", 2);
	ck_assert_int_eq(walk_stream((uint8_t *)d.data, d.len, &last, &end), -1);
	/* Random bytes: must return (either way) without crashing. */
	for (int i = 0; i < 2000; i++) {
		size_t k = 1 + rnd(&st) % sizeof(junk);

		for (size_t j = 0; j < k; j++)
			junk[j] = (uint8_t)rnd(&st);
		(void)walk_stream(junk, k, &last, &end);
	}
	buf_free(&d);
	free(data);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pgzip");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_round_trip, 0, (int)BV_NELEM(round_trip_sizes));
	tcase_add_test(tc, test_levels);
	tcase_add_test(tc, test_header);
	tcase_add_test(tc, test_deterministic);
	tcase_add_test(tc, test_gzip_tool);
	tcase_add_test(tc, test_sink_error);
	tcase_add_test(tc, test_free_and_misuse);
	tcase_add_test(tc, test_walker);
	tcase_add_test(tc, test_walker_garbage);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
