/* resp.h: a reply as plain data (status, headers, body or an open file), built by handlers
 * on any thread and sent by api/http.c on the event loop. No libevhtp types here, so pool
 * threads can fill one without touching a request (research B.1.10, issue #139). */
#ifndef BV_RESP_H
#define BV_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/util.h"

#define RESP_MAX_HEADERS 12

struct resp_header {
	char *name;
	char *value;
};

struct resp {
	int status; /* 0 until set */
	const char *content_type; /* static string */
	char *body; /* owned; NULL for none */
	size_t body_len;
	int fd; /* >= 0: an open file sent with sendfile after headers */
	uint64_t file_offset; /* where the bytes sent start (a range) */
	uint64_t file_size; /* how many are sent */
	bool send_file_body; /* false for HEAD and 304: headers only */
	struct resp_header headers[RESP_MAX_HEADERS];
	int nheaders;
};

void resp_init(struct resp *rs);
/* Frees the body and headers and closes the file; rs can be reused after resp_init. */
void resp_clear(struct resp *rs);
/* Adds a header (copies both strings); the last ones are dropped past RESP_MAX_HEADERS. */
void resp_header(struct resp *rs, const char *name, const char *value);
void resp_headerf(struct resp *rs, const char *name, const char *fmt, ...) BV_PRINTF(3, 4);
/* Replaces the body with the compact JSON text of v (v is not stolen). */
void resp_json(struct resp *rs, int status, const json_t *v);
/* {"error": "<message>"} with that status. */
void resp_error(struct resp *rs, int status, const char *fmt, ...) BV_PRINTF(3, 4);
/* Serves an open file (the reply owns fd). */
void resp_file(struct resp *rs, int status, const char *content_type, int fd, uint64_t size);
/* Serves len bytes of an open file from offset: 206 with Content-Range (of total). */
void resp_file_range(struct resp *rs, const char *content_type, int fd, uint64_t offset,
    uint64_t len, uint64_t total);
/* One "bytes=" range of a Range header against size bytes (RFC 9110 §14): 1 with *start
 * and *len; 0 to serve the whole body (no header, a malformed one, or several ranges);
 * -1 when unsatisfiable (answer 416 with Content-Range: bytes *\/size). */
int resp_parse_range(const char *hdr, uint64_t size, uint64_t *start, uint64_t *len);

#endif
