/* util.h: allocation that aborts on OOM, growable buffers, hex/base64, small file helpers. */
#ifndef BV_UTIL_H
#define BV_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BV_MUSTCHECK __attribute__((warn_unused_result))
#define BV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define BV_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Out of memory is a broken invariant: these abort instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) BV_PRINTF(1, 2);
char *xvasprintf(const char *fmt, va_list ap) BV_PRINTF(1, 0);

/* A growable byte buffer; data is always NUL-terminated for convenience. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_addc(struct buf *b, char c);
void buf_adds(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) BV_PRINTF(2, 3);
/* Hands the bytes to the caller (who frees them) and leaves b empty. */
char *buf_steal(struct buf *b, size_t *len);

/* True when item is one of the comma-separated entries of csv (spaces and tabs around
 * entries ignored); false for a NULL or empty csv. */
bool csv_has(const char *csv, const char *item);

/* Lowercase hex of n bytes into out (2n+1 bytes with the NUL). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* Exactly 2n hex digits (either case) into n bytes; false on anything else. */
bool hex_decode(const char *hex, unsigned char *out, size_t n) BV_MUSTCHECK;
/* The value of one hex digit (either case), or -1. */
int hex_digit_value(char c);
/* True when s is exactly n lowercase-or-uppercase hex digits. */
bool is_hex(const char *s, size_t n);
/* Standard base64 with padding; returns a new string. */
char *base64_encode(const unsigned char *in, size_t n);

/* Cryptographically random bytes as hex (2n chars + NUL into out). */
void random_hex(char *out, size_t nbytes);

/* Milliseconds from a monotonic clock, and wall-clock seconds with fraction. */
uint64_t now_ms(void);
double now_wall(void);

/* mkdir -p with mode; 0 or -1 with *errstr. */
int mkdir_p(const char *path, int mode, char **errstr) BV_MUSTCHECK;
/* Writes data to path through path.tmp + fsync + rename; 0 or -1 with *errstr. */
int write_file_atomic(
    const char *path, const void *data, size_t len, int mode, char **errstr) BV_MUSTCHECK;
/* Reads a whole small file; NULL with *errstr. */
char *read_file(const char *path, size_t *len, char **errstr) BV_MUSTCHECK;
/* fsync of a directory, so a rename inside it is durable. */
int fsync_dir(const char *dir) BV_MUSTCHECK;

/* Parses a decimal int64 with no trailing garbage; false on error or overflow. */
bool parse_int64(const char *s, int64_t *out) BV_MUSTCHECK;

#endif
