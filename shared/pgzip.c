/* pgzip.c: parallel gzip with libdeflate that still writes ONE ordinary gzip member.
 *
 * How: the input is cut into fixed blocks of PGZIP_BLOCK bytes. Each block is compressed on
 * its own (no shared dictionary: libdeflate has no dictionary API) by a helper thread with
 * libdeflate_deflate_compress(), which always ends its stream with a final block (BFINAL=1)
 * and has no flush API, so the streams cannot simply be concatenated. To join them, every
 * non-final block's stream is walked by a small deflate parser (walk_stream: zlib's
 * contrib/puff.c's idea, table driven; it decodes the Huffman headers and skips the symbols
 * without producing output) that finds where the last deflate block starts and the exact bit
 * where it ends. Then:
 *   - the BFINAL bit of that last block is cleared;
 *   - if the stream does not end on a byte boundary, an empty stored block (3 header bits
 *     000, padding, LEN 0000 NLEN ffff: what zlib's Z_SYNC_FLUSH writes) is put at the end
 *     bit, so the next stream starts on a byte boundary as the next deflate block.
 * The input's last block keeps its BFINAL. CRC-32 is computed per block (libdeflate_crc32)
 * and combined in order with zlib's crc32_combine(). Output goes to the sink strictly in
 * block order from the caller's thread, so the bytes depend only on the input, the level and
 * PGZIP_BLOCK, never on the thread count or timing. threads > 1 starts that many helpers:
 * the caller only copies input and writes output, leaving its core to whatever produces the
 * input (the tar writer).
 *
 * Why this way (tar of /usr/include, 123.5 MB, on the 2-core KVM Xeon of the project; gzip -6
 * makes 21.89 MB at ~27 MB/s; one core, 1 MiB blocks; the machine is shared, so figures
 * vary by ~20%):
 *   libdeflate level 4: ~90-130 MB/s, 104.4% of gzip -6's size (binaries: 102.0%)
 *   libdeflate level 5: ~75-105 MB/s, 102.1%                    (binaries:  99.5%)
 *   libdeflate level 6: ~57-72 MB/s,  100.7%                    (binaries:  98.7%)
 *   zlib with the previous 32 KiB as dictionary and Z_SYNC_FLUSH per block (pigz's way):
 *   level 5 ~49 MB/s, 101.6%; level 6 ~37 MB/s, 100.0%.
 * libdeflate is ~1.6x zlib at the same ratio. Multi-member gzip (what libdeflate users
 * usually do) is ruled out: some readers stop after the first member. Patched libdeflates
 * with a chunk API exist (ClickHouse's, sisong's stream-mt) but only the stock library is
 * installed. The walker reads ~1 GB/s of input (13.4 M symbols in ~110 ms for the tar), i.e.
 * 8-12% of the compression time at levels 6-4; it runs on the helpers too. Block size: 256
 * KiB / 1 MiB / 4 MiB blocks are +1.4% / +0.4% / +0.1% bigger than one libdeflate stream of
 * the whole tar and run equally fast; 1 MiB keeps memory at ~2 MiB per slot (2 * threads + 1
 * slots) plus a compressor per helper.
 * The whole thing (bench/gzip, 2 threads, against gzip -6 in the same run): CPU time 2.0-2.2x
 * less than gzip -6 at level 6, 2.5x at level 5, 3.1x at level 4; wall time 4.0-4.5x, ~5x and
 * ~6x faster when both cores are free. */
#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <zlib.h>

#include "shared/pgzip.h"

/* Uncompressed bytes per independently compressed block (part of the output format: changing
 * it changes the bytes). */
#define PGZIP_BLOCK (1024 * 1024)
/* Room after libdeflate's bound for the empty stored block: 1 spill byte + LEN + NLEN. */
#define PGZIP_MARKER 5
#define PGZIP_MAX_THREADS 64

/* ---- a deflate stream walker: finds the last block and the end bit ---- */

/* Bits of the first-level decode tables (code-length, literal/length, distance codes);
 * longer codes take the bit-by-bit slow path. Measured: bigger tables cost more to build (a
 * 1 MiB block has ~35 deflate blocks) than they save in slow-path decodes. */
#define HUFF_MAXBITS 15
#define TB_CLEN 7
#define TB_LIT 10
#define TB_DIST 8

/* What a table entry holds. HK_SYM: symbol << 4 | code length. HK_LIT and HK_DIST: the kind
 * of symbol and the number of bits to skip for it, the extra bits of a length or distance
 * included, since the walker never needs the values. 0 for a code longer than the table
 * bits or an unused code. */
enum huff_kind { HK_SYM, HK_LIT, HK_DIST };
#define SK_BITS 0x1f
#define SK_LIT 0x20 /* a literal; for a distance code, any valid distance */
#define SK_MATCH 0x40
#define SK_EOB 0x80

/* A canonical Huffman code: counts and symbols in code order (as in puff.c), plus a table
 * indexed by the next tb bits of the stream. */
struct huff {
	uint16_t count[HUFF_MAXBITS + 1];
	uint16_t sym[288];
	unsigned tb;
	uint16_t table[1 << TB_LIT];
};

/* LSB-first bit reader over a byte buffer; reads past the end see zero bits and are caught by
 * comparing the position with the length. */
struct bitin {
	const uint8_t *data;
	size_t len;
	size_t idx; /* next byte to load (may run past len: those bytes read as 0) */
	uint64_t buf;
	unsigned n; /* valid bits in buf */
};

static const uint8_t len_extra[29] = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
    9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t clen_order[19] = {
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* Tops the bit buffer up to at least 56 bits. */
static inline void
bits_refill(struct bitin *b)
{
	if (b->idx + 8 <= b->len) {
		uint64_t w;

		memcpy(&w, b->data + b->idx, 8);
		w = le64toh(w);
		b->buf |= w << b->n;
		b->idx += (63 - b->n) >> 3;
		b->n |= 56;
		return;
	}
	while (b->n <= 56) {
		uint64_t byte = b->idx < b->len ? b->data[b->idx] : 0;

		b->buf |= byte << b->n;
		b->idx++;
		b->n += 8;
	}
}

/* Takes k (<= n) bits. */
static inline unsigned
bits_take(struct bitin *b, unsigned k)
{
	unsigned v = (unsigned)(b->buf & ((1ull << k) - 1));

	b->buf >>= k;
	b->n -= k;
	return v;
}

/* The bit position of the reader in the stream. */
static inline size_t
bits_pos(const struct bitin *b)
{
	return b->idx * 8 - b->n;
}

/* Reverses the low l bits of v (l <= 16). */
static inline unsigned
bitrev(unsigned v, unsigned l)
{
	v = ((v >> 1) & 0x5555) | ((v & 0x5555) << 1);
	v = ((v >> 2) & 0x3333) | ((v & 0x3333) << 2);
	v = ((v >> 4) & 0x0f0f) | ((v & 0x0f0f) << 4);
	v = ((v >> 8) & 0x00ff) | ((v & 0x00ff) << 8);
	return v >> (16 - l);
}

/* The table entry of symbol sym with a code of l bits (see enum huff_kind). */
static inline unsigned
huff_entry(enum huff_kind kind, unsigned sym, unsigned l)
{
	switch (kind) {
	case HK_SYM:
		return sym << 4 | l;
	case HK_DIST:
		return sym < 30 ? SK_LIT | (l + dist_extra[sym]) : 0;
	case HK_LIT:
		break;
	}
	if (sym < 256)
		return SK_LIT | l;
	if (sym == 256)
		return SK_EOB | l;
	if (sym < 286)
		return SK_MATCH | (l + len_extra[sym - 257]);
	return 0;
}

/* Builds the code from n code lengths with a tb-bit table; -1 if the lengths over-subscribe
 * the code space. Incomplete codes are accepted: an unused code fails when decoded. */
static int
huff_build(struct huff *h, const uint8_t *lens, unsigned n, unsigned tb, enum huff_kind kind)
{
	uint16_t offs[HUFF_MAXBITS + 2];
	int left = 1;
	unsigned code = 0, k = 0;

	h->tb = tb;
	memset(h->count, 0, sizeof(h->count));
	memset(h->table, 0, sizeof(h->table[0]) << tb);
	for (unsigned s = 0; s < n; s++)
		h->count[lens[s]]++;
	for (unsigned l = 1; l <= HUFF_MAXBITS; l++) {
		left <<= 1;
		left -= h->count[l];
		if (left < 0)
			return -1;
	}
	offs[1] = 0;
	for (unsigned l = 1; l <= HUFF_MAXBITS; l++)
		offs[l + 1] = offs[l] + h->count[l];
	for (unsigned s = 0; s < n; s++)
		if (lens[s] != 0)
			h->sym[offs[lens[s]]++] = (uint16_t)s;
	/* Canonical codes in (length, symbol) order; the stream holds them MSB first, so the
	 * table index is the bit-reversed code, repeated for every value of the bits after it. */
	for (unsigned l = 1; l <= tb; l++) {
		for (unsigned j = 0; j < h->count[l]; j++, k++, code++) {
			uint16_t e = (uint16_t)huff_entry(kind, h->sym[k], l);

			for (unsigned i = bitrev(code, l); i < (1u << tb); i += 1u << l)
				h->table[i] = e;
		}
		code <<= 1;
	}
	return 0;
}

/* Decodes one symbol bit by bit (puff.c's method), for codes longer than the table bits.
 * The caller made sure the buffer holds at least HUFF_MAXBITS bits. */
static int
huff_slow(struct bitin *b, const struct huff *h)
{
	int code = 0, first = 0, index = 0;

	for (unsigned l = 1; l <= HUFF_MAXBITS; l++) {
		int count = h->count[l];

		code |= (int)bits_take(b, 1);
		if (code - count < first)
			return h->sym[index + (code - first)];
		index += count;
		first += count;
		first <<= 1;
		code <<= 1;
	}
	return -1;
}

/* Decodes one symbol of an HK_SYM code; the buffer must hold at least HUFF_MAXBITS bits. */
static inline int
huff_decode(struct bitin *b, const struct huff *h)
{
	unsigned e = h->table[b->buf & ((1u << h->tb) - 1)];

	if (e != 0) {
		bits_take(b, e & 15);
		return (int)(e >> 4);
	}
	return huff_slow(b, h);
}

/* Reads a dynamic block's header into the two codes; 0 or -1. */
static int
read_dynamic_header(struct bitin *b, struct huff *lit, struct huff *dist)
{
	uint8_t lens[286 + 30];
	uint8_t clens[19] = {0};
	struct huff clh;
	unsigned nlit, ndist, ncode, i;

	bits_refill(b);
	nlit = bits_take(b, 5) + 257;
	ndist = bits_take(b, 5) + 1;
	ncode = bits_take(b, 4) + 4;
	if (nlit > 286 || ndist > 30)
		return -1;
	for (i = 0; i < ncode; i++) {
		bits_refill(b);
		clens[clen_order[i]] = (uint8_t)bits_take(b, 3);
	}
	if (huff_build(&clh, clens, 19, TB_CLEN, HK_SYM) != 0)
		return -1;
	for (i = 0; i < nlit + ndist;) {
		int sym;
		unsigned rep;
		uint8_t val = 0;

		bits_refill(b);
		sym = huff_decode(b, &clh);
		if (sym < 0)
			return -1;
		if (sym < 16) {
			lens[i++] = (uint8_t)sym;
			continue;
		}
		if (sym == 16) {
			if (i == 0)
				return -1;
			val = lens[i - 1];
			rep = 3 + bits_take(b, 2);
		} else if (sym == 17) {
			rep = 3 + bits_take(b, 3);
		} else {
			rep = 11 + bits_take(b, 7);
		}
		if (i + rep > nlit + ndist)
			return -1;
		while (rep-- > 0)
			lens[i++] = val;
	}
	if (lens[256] == 0)
		return -1;
	if (huff_build(lit, lens, nlit, TB_LIT, HK_LIT) != 0 ||
	    huff_build(dist, lens + nlit, ndist, TB_DIST, HK_DIST) != 0)
		return -1;
	return 0;
}

/* The fixed codes of block type 1. */
static void
build_fixed(struct huff *lit, struct huff *dist)
{
	uint8_t lens[288];
	unsigned i;

	for (i = 0; i < 144; i++)
		lens[i] = 8;
	for (; i < 256; i++)
		lens[i] = 9;
	for (; i < 280; i++)
		lens[i] = 7;
	for (; i < 288; i++)
		lens[i] = 8;
	(void)huff_build(lit, lens, 288, TB_LIT, HK_LIT);
	for (i = 0; i < 30; i++)
		lens[i] = 5;
	(void)huff_build(dist, lens, 30, TB_DIST, HK_DIST);
}

/* Skips the symbols of one Huffman-coded block up to its end-of-block code; 0 or -1. This
 * is the walker's hot loop: one refill, one lookup and one shift per literal, on local copies
 * of the reader's state so that they stay in registers. */
static int
skip_symbols(struct bitin *b, const struct huff *lit, const struct huff *dist)
{
	const uint16_t *lt = lit->table, *dt = dist->table;
	const uint64_t lmask = (1u << TB_LIT) - 1, dmask = (1u << TB_DIST) - 1;
	const uint8_t *data = b->data;
	size_t len = b->len, idx = b->idx;
	uint64_t buf = b->buf;
	unsigned n = b->n, e;
	int sym, rc;

#define SK_TAKE(k) (buf >>= (k), n -= (k))
#define SK_SAVE() (b->idx = idx, b->buf = buf, b->n = n)
#define SK_LOAD() (idx = b->idx, buf = b->buf, n = b->n)
	for (;;) {
		/* Each round reads at most 15 + 5 + 15 + 13 bits: one refill suffices. */
		if (idx + 8 <= len) {
			uint64_t w;

			memcpy(&w, data + idx, 8);
			buf |= le64toh(w) << n;
			idx += (63 - n) >> 3;
			n |= 56;
		} else {
			SK_SAVE();
			bits_refill(b);
			SK_LOAD();
			/* Past the end by more than the bit buffer: corrupt, or no end-of-block. */
			if (idx > len + 8)
				goto fail;
		}
		e = lt[buf & lmask];
		if (__builtin_expect((e & (SK_LIT | SK_MATCH)) != 0, 1)) {
			/* A literal or a length. Literals and matches alternate unpredictably, so
			 * rather than branch, the distance code is always looked up and skipped
			 * only for a match (its bit count masked to 0 for a literal). */
			unsigned d, is_match = (e & SK_MATCH) != 0;

			SK_TAKE(e & SK_BITS);
			d = dt[buf & dmask];
			if (__builtin_expect(is_match & (d == 0), 0)) {
				SK_SAVE();
				sym = huff_slow(b, dist);
				SK_LOAD();
				if (sym < 0 || sym >= 30)
					goto fail;
				SK_TAKE(dist_extra[sym]);
				continue;
			}
			d = (d & SK_BITS) & (0u - is_match);
			SK_TAKE(d);
			continue;
		}
		if (e & SK_EOB) {
			SK_TAKE(e & SK_BITS);
			rc = 0;
			goto out;
		}
		/* A code longer than the table: decode it bit by bit. */
		SK_SAVE();
		sym = huff_slow(b, lit);
		SK_LOAD();
		if (sym < 0 || sym > 285)
			goto fail;
		if (sym < 256)
			continue;
		if (sym == 256) {
			rc = 0;
			goto out;
		}
		SK_TAKE(len_extra[sym - 257]);
		e = dt[buf & dmask];
		if (e != 0) {
			SK_TAKE(e & SK_BITS);
		} else {
			SK_SAVE();
			sym = huff_slow(b, dist);
			SK_LOAD();
			if (sym < 0 || sym >= 30)
				goto fail;
			SK_TAKE(dist_extra[sym]);
		}
	}
fail:
	rc = -1;
out:
	SK_SAVE();
	return rc;
#undef SK_TAKE
#undef SK_SAVE
#undef SK_LOAD
}

/* Walks a complete deflate stream of len bytes: *last_start gets the bit position of the
 * header of its final block and *end_bit the position just after that block's end. 0, or -1
 * if the stream is not valid deflate that ends inside its last byte. */
static int
walk_stream(const uint8_t *data, size_t len, size_t *last_start, size_t *end_bit)
{
	struct bitin b = {.data = data, .len = len};
	struct huff lit, dist;

	for (;;) {
		size_t start = bits_pos(&b);
		unsigned final, type;

		bits_refill(&b);
		final = bits_take(&b, 1);
		type = bits_take(&b, 2);
		if (type == 0) {
			size_t pos;
			unsigned blen, nlen;

			bits_take(&b, b.n & 7); /* to the byte boundary */
			blen = bits_take(&b, 16);
			nlen = bits_take(&b, 16);
			if (blen != (~nlen & 0xffff))
				return -1;
			pos = bits_pos(&b) / 8 + blen;
			if (pos > len)
				return -1;
			b.idx = pos;
			b.buf = 0;
			b.n = 0;
		} else if (type == 1 || type == 2) {
			if (type == 1)
				build_fixed(&lit, &dist);
			else if (read_dynamic_header(&b, &lit, &dist) != 0)
				return -1;
			if (skip_symbols(&b, &lit, &dist) != 0)
				return -1;
		} else {
			return -1;
		}
		if (bits_pos(&b) > len * 8)
			return -1;
		if (final) {
			*last_start = start;
			*end_bit = bits_pos(&b);
			/* A deflate stream pads only its last byte: anything else is a misparse. */
			return (*end_bit + 7) / 8 == len ? 0 : -1;
		}
	}
}

/* Turns a complete deflate stream (in out[0..*len)) into a non-final, byte-aligned run of
 * blocks that another stream can follow; out has PGZIP_MARKER spare bytes. 0 or -1. */
static int
unfinalize(uint8_t *out, size_t *len)
{
	size_t last, end, n;

	if (walk_stream(out, *len, &last, &end) != 0)
		return -1;
	out[last / 8] &= (uint8_t) ~(1u << (last % 8));
	if (end % 8 == 0)
		return 0;
	/* Empty stored block: BFINAL 0 and BTYPE 00 at the end bit (clear the padding to make
	 * sure), then pad to a byte, then LEN 0 and NLEN 0xffff. */
	out[end / 8] &= (uint8_t)((1u << (end % 8)) - 1);
	n = (end + 3 + 7) / 8;
	if (n > *len)
		out[n - 1] = 0;
	out[n++] = 0x00;
	out[n++] = 0x00;
	out[n++] = 0xff;
	out[n++] = 0xff;
	*len = n;
	return 0;
}

/* ---- the compressor ---- */

enum slot_state { SLOT_FILLING, SLOT_QUEUED, SLOT_DONE };

/* One block in flight: its input, then its compressed, joinable output. */
struct slot {
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len;
	uint32_t crc;
	bool final;
	enum slot_state state;
	char *err; /* a compression failure */
};

struct pgzip_worker {
	struct pgzip *z;
	struct libdeflate_compressor *c;
	pthread_t thread;
	bool started;
};

struct pgzip {
	int level;
	pgzip_sink sink;
	void *arg;
	size_t out_cap;

	/* Blocks are numbered in input order; block s lives in slots[s % nslots]. Blocks
	 * [next_write, next_fill) are queued or done, next_fill is being filled, and helpers
	 * take the queued ones from next_work on. */
	struct slot *slots;
	unsigned nslots;
	uint64_t next_fill, next_work, next_write;

	int nworkers; /* helpers allocated */
	int nstarted; /* helpers running; 0: compress on the caller's thread with c */
	struct pgzip_worker *workers;
	struct libdeflate_compressor *c;
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* a block was queued, or stop */
	pthread_cond_t done_cv; /* a block was compressed */
	bool stop;

	bool header_done, finished;
	uint32_t crc;
	uint64_t isize;
	char *err; /* sticky: the first error, returned again by later calls */
};

/* Compresses one block into its joinable form; sets s->err on failure. */
static void
compress_slot(struct libdeflate_compressor *c, struct slot *s, size_t out_cap)
{
	size_t n;

	s->crc = (uint32_t)libdeflate_crc32(0, s->in, s->in_len);
	n = libdeflate_deflate_compress(c, s->in, s->in_len, s->out, out_cap - PGZIP_MARKER);
	if (n == 0) {
		s->err = xstrdup("pgzip: libdeflate found no room for a block");
		return;
	}
	if (!s->final && unfinalize(s->out, &n) != 0) {
		s->err = xstrdup("pgzip: could not parse libdeflate's output (internal error)");
		return;
	}
	s->out_len = n;
}

/* A helper thread: compresses queued blocks in order until told to stop. */
static void *
worker_main(void *arg)
{
	struct pgzip_worker *w = arg;
	struct pgzip *z = w->z;

	pthread_mutex_lock(&z->mu);
	for (;;) {
		struct slot *s;

		while (!z->stop && z->next_work == z->next_fill)
			pthread_cond_wait(&z->work_cv, &z->mu);
		if (z->stop)
			break;
		s = &z->slots[z->next_work % z->nslots];
		z->next_work++;
		pthread_mutex_unlock(&z->mu);
		compress_slot(w->c, s, z->out_cap);
		pthread_mutex_lock(&z->mu);
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&z->done_cv);
	}
	pthread_mutex_unlock(&z->mu);
	return NULL;
}

/* gzip's XFL byte as gzip and libdeflate set it: 4 fastest, 2 slowest, else 0. */
static uint8_t
xfl_for(int level)
{
	if (level < 2)
		return 4;
	if (level >= 8)
		return 2;
	return 0;
}

/* libdeflate returns NULL only for a bad level (clamped by the caller) or out of memory. */
static struct libdeflate_compressor *
alloc_compressor(int level)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);

	if (c == NULL)
		abort();
	return c;
}

struct pgzip *
pgzip_new(int level, int threads, pgzip_sink sink, void *arg)
{
	struct pgzip *z = xcalloc(1, sizeof(*z));

	if (level < 1)
		level = 1;
	if (level > 12)
		level = 12;
	if (threads < 1)
		threads = 1;
	if (threads > PGZIP_MAX_THREADS)
		threads = PGZIP_MAX_THREADS;
	z->level = level;
	z->sink = sink;
	z->arg = arg;
	pthread_mutex_init(&z->mu, NULL);
	pthread_cond_init(&z->work_cv, NULL);
	pthread_cond_init(&z->done_cv, NULL);

	/* One block filling, one being compressed per helper, one per helper waiting to be
	 * written: the caller rarely waits for a free slot. */
	z->nworkers = threads > 1 ? threads : 0;
	z->nslots = threads > 1 ? 2 * (unsigned)threads + 1 : 1;
	z->c = alloc_compressor(level);
	z->out_cap = libdeflate_deflate_compress_bound(z->c, PGZIP_BLOCK) + PGZIP_MARKER;
	z->slots = xcalloc(z->nslots, sizeof(*z->slots));
	for (unsigned i = 0; i < z->nslots; i++) {
		z->slots[i].in = xmalloc(PGZIP_BLOCK);
		z->slots[i].out = xmalloc(z->out_cap);
	}
	z->workers = xcalloc((size_t)z->nworkers + 1, sizeof(*z->workers));
	for (int i = 0; i < z->nworkers; i++) {
		struct pgzip_worker *w = &z->workers[i];

		w->z = z;
		w->c = alloc_compressor(level);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			/* No thread: the blocks still get compressed by the ones that started, or
			 * by the caller when none did (see queue_block). */
			continue;
		}
		w->started = true;
		z->nstarted++;
	}
	return z;
}

/* Remembers the first error and hands a copy to the caller; always -1. */
static int
set_error(struct pgzip *z, char *err, char **errstr)
{
	if (z->err == NULL)
		z->err = err;
	else
		free(err);
	if (errstr != NULL)
		*errstr = xstrdup(z->err);
	return -1;
}

/* Sends bytes to the sink; 0 or -1 (sticky). */
static int
emit(struct pgzip *z, const void *data, size_t len, char **errstr)
{
	char *e = NULL;

	if (len == 0)
		return 0;
	if (z->sink(z->arg, data, len, &e) != 0)
		return set_error(z, e != NULL ? e : xstrdup("pgzip: the sink failed"), errstr);
	free(e);
	return 0;
}

/* Writes out the oldest block, waiting for it if wait is set; 1 if written, 0 if it was not
 * ready (or there is none), -1 on error. */
static int
write_oldest(struct pgzip *z, bool wait, char **errstr)
{
	struct slot *s;
	bool done;

	if (z->next_write == z->next_fill)
		return 0;
	s = &z->slots[z->next_write % z->nslots];
	pthread_mutex_lock(&z->mu);
	while (wait && s->state != SLOT_DONE)
		pthread_cond_wait(&z->done_cv, &z->mu);
	done = s->state == SLOT_DONE;
	pthread_mutex_unlock(&z->mu);
	if (!done)
		return 0;
	if (s->err != NULL) {
		char *e = s->err;

		s->err = NULL;
		return set_error(z, e, errstr);
	}
	if (!z->header_done) {
		const uint8_t hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl_for(z->level), 3};

		if (emit(z, hdr, sizeof(hdr), errstr) != 0)
			return -1;
		z->header_done = true;
	}
	if (emit(z, s->out, s->out_len, errstr) != 0)
		return -1;
	z->crc = (uint32_t)crc32_combine(z->crc, s->crc, (z_off_t)s->in_len);
	z->isize += s->in_len;
	s->state = SLOT_FILLING;
	s->in_len = 0;
	s->final = false;
	z->next_write++;
	return 1;
}

/* Hands the filling block to the helpers (or compresses it here), then writes out what is
 * ready and makes room for the next block; 0 or -1. */
static int
queue_block(struct pgzip *z, bool final, char **errstr)
{
	struct slot *s = &z->slots[z->next_fill % z->nslots];
	int rc;

	s->final = final;
	if (z->nstarted == 0) {
		compress_slot(z->c, s, z->out_cap);
		s->state = SLOT_DONE;
		z->next_fill++;
	} else {
		pthread_mutex_lock(&z->mu);
		s->state = SLOT_QUEUED;
		z->next_fill++;
		pthread_cond_signal(&z->work_cv);
		pthread_mutex_unlock(&z->mu);
	}
	/* Stream out finished blocks; wait only when the ring is full. */
	while ((rc = write_oldest(z, z->next_fill - z->next_write >= z->nslots, errstr)) == 1)
		;
	return rc;
}

int
pgzip_write(struct pgzip *z, const void *data, size_t len, char **errstr)
{
	const uint8_t *p = data;

	if (z->err != NULL)
		return set_error(z, NULL, errstr);
	if (z->finished)
		return set_error(z, xstrdup("pgzip: write after finish"), errstr);
	while (len > 0) {
		struct slot *s = &z->slots[z->next_fill % z->nslots];
		size_t n;

		/* A full block is queued only once more input shows it is not the last. */
		if (s->in_len == PGZIP_BLOCK) {
			if (queue_block(z, false, errstr) != 0)
				return -1;
			continue;
		}
		n = PGZIP_BLOCK - s->in_len;
		if (n > len)
			n = len;
		memcpy(s->in + s->in_len, p, n);
		s->in_len += n;
		p += n;
		len -= n;
	}
	return 0;
}

int
pgzip_finish(struct pgzip *z, char **errstr)
{
	uint8_t trailer[8];
	int rc;

	if (z->err != NULL)
		return set_error(z, NULL, errstr);
	if (z->finished)
		return set_error(z, xstrdup("pgzip: finished twice"), errstr);
	if (queue_block(z, true, errstr) != 0)
		return -1;
	while ((rc = write_oldest(z, true, errstr)) == 1)
		;
	if (rc != 0)
		return -1;
	for (int i = 0; i < 4; i++) {
		trailer[i] = (uint8_t)(z->crc >> (8 * i));
		trailer[4 + i] = (uint8_t)(z->isize >> (8 * i));
	}
	if (emit(z, trailer, sizeof(trailer), errstr) != 0)
		return -1;
	z->finished = true;
	return 0;
}

void
pgzip_free(struct pgzip *z)
{
	if (z == NULL)
		return;
	pthread_mutex_lock(&z->mu);
	z->stop = true;
	pthread_cond_broadcast(&z->work_cv);
	pthread_mutex_unlock(&z->mu);
	for (int i = 0; i < z->nworkers; i++) {
		if (z->workers[i].started)
			pthread_join(z->workers[i].thread, NULL);
		libdeflate_free_compressor(z->workers[i].c);
	}
	for (unsigned i = 0; i < z->nslots; i++) {
		free(z->slots[i].in);
		free(z->slots[i].out);
		free(z->slots[i].err);
	}
	libdeflate_free_compressor(z->c);
	pthread_mutex_destroy(&z->mu);
	pthread_cond_destroy(&z->work_cv);
	pthread_cond_destroy(&z->done_cv);
	free(z->workers);
	free(z->slots);
	free(z->err);
	free(z);
}
