/* util.c: allocation that aborts on OOM, growable buffers, encodings and file helpers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "shared/util.h"

/* Out of memory: nothing sensible is left to do. */
static void __attribute__((noreturn)) oom(void)
{
	static const char msg[] = "bitsvault: out of memory\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	abort();
}

/* malloc that never returns NULL. */
void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom();
	return p;
}

/* calloc that never returns NULL. */
void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		oom();
	return p;
}

/* realloc that never returns NULL. */
void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		oom();
	return p;
}

/* strdup that never returns NULL. */
char *
xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		oom();
	return p;
}

/* strndup that never returns NULL. */
char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		oom();
	return p;
}

/* vasprintf that never returns NULL. */
char *
xvasprintf(const char *fmt, va_list ap)
{
	char *p;
	if (vasprintf(&p, fmt, ap) < 0)
		oom();
	return p;
}

/* asprintf that never returns NULL. */
char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

/* An empty buffer. */
void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Frees the bytes; the buffer is empty and reusable after. */
void
buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

/* Keeps the memory, drops the contents. */
void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

/* Makes room for n more bytes plus the NUL. */
static void
buf_grow(struct buf *b, size_t n)
{
	size_t need = b->len + n + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

/* Appends bytes. */
void
buf_add(struct buf *b, const void *data, size_t len)
{
	buf_grow(b, len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

/* Appends one byte. */
void
buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

/* Appends a string. */
void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Appends formatted text. */
void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Gives the bytes away. */
char *
buf_steal(struct buf *b, size_t *len)
{
	char *p;

	if (b->data == NULL)
		buf_grow(b, 0), b->data[0] = '\0';
	p = b->data;
	if (len != NULL)
		*len = b->len;
	buf_init(b);
	return p;
}

/* Lowercase hex. */
void
hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* One hex digit's value, or -1. */
int
hex_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly 2n digits into n bytes. */
bool
hex_decode(const char *hex, unsigned char *out, size_t n)
{
	if (!is_hex(hex, 2 * n))
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(hex_digit_value(hex[2 * i]) << 4 |
		    hex_digit_value(hex[2 * i + 1]));
	return true;
}

/* Exactly n hex digits, then the end of the string. */
bool
is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || hex_digit_value(s[i]) < 0)
			return false;
	return s[n] == '\0';
}

/* Standard base64 with padding. */
char *
base64_encode(const unsigned char *in, size_t n)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = tbl[v >> 6 & 63];
		out[o++] = tbl[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

/* Random bytes from OpenSSL's CSPRNG, as hex. */
void
random_hex(char *out, size_t nbytes)
{
	unsigned char tmp[64];

	while (nbytes > 0) {
		size_t n = nbytes < sizeof tmp ? nbytes : sizeof tmp;
		if (RAND_bytes(tmp, (int)n) != 1)
			abort(); /* no entropy: a broken invariant */
		hex_encode(tmp, n, out);
		out += 2 * n;
		nbytes -= n;
	}
}

/* Monotonic milliseconds. */
uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wall-clock seconds. */
double
now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* mkdir -p. */
int
mkdir_p(const char *path, int mode, char **errstr)
{
	char *p = xstrdup(path);

	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
			*errstr = xasprintf("mkdir %s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*s = '/';
	}
	if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
		*errstr = xasprintf("mkdir %s: %s", p, strerror(errno));
		free(p);
		return -1;
	}
	free(p);
	return 0;
}

/* fsync of a directory so that a rename inside it survives a crash. */
int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

/* Temp file + fsync + rename + fsync of the folder. */
int
write_file_atomic(const char *path, const void *data, size_t len, int mode, char **errstr)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	const char *errpos = "open";
	const char *p = data;
	int fd;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		goto failed;
	errpos = "write";
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto failed;
		p += n;
		len -= (size_t)n;
	}
	errpos = "fsync";
	if (fsync(fd) != 0)
		goto failed;
	errpos = "close";
	if (close(fd) != 0) {
		fd = -1;
		goto failed;
	}
	fd = -1;
	errpos = "rename";
	if (rename(tmp, path) != 0)
		goto failed;
	free(tmp);
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
		if (fsync_dir(slash == dir ? "/" : dir) != 0) {
			*errstr = xasprintf("fsync %s: %s", dir, strerror(errno));
			free(dir);
			return -1;
		}
	}
	free(dir);
	return 0;
failed:
	*errstr = xasprintf("%s %s: %s", errpos, path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

/* Whole small file into memory, NUL-terminated. */
char *
read_file(const char *path, size_t *len, char **errstr)
{
	struct buf b;
	char chunk[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*errstr = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	buf_init(&b);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*errstr = xasprintf("%s: %s", path, strerror(errno));
			close(fd);
			buf_free(&b);
			return NULL;
		}
		if (n == 0)
			break;
		buf_add(&b, chunk, (size_t)n);
	}
	close(fd);
	return buf_steal(&b, len);
}

/* Decimal int64, whole string. */
bool
parse_int64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

/* One entry at a time, trimmed, compared whole. */
bool
csv_has(const char *csv, const char *item)
{
	size_t ilen = strlen(item);

	for (const char *p = csv; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *s = p;

		while (len > 0 && (*s == ' ' || *s == '\t'))
			s++, len--;
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (len == ilen && memcmp(s, item, len) == 0)
			return true;
		p = end != NULL ? end + 1 : NULL;
	}
	return false;
}
