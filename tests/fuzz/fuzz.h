/* fuzz.h: what the libFuzzer targets of tests/fuzz share: the entry point's prototype,
 * a checked assertion that survives NDEBUG, quiet logs, and input splitting. Header-only:
 * each target is one file. */
#ifndef BV_FUZZ_H
#define BV_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/call.h"
#include "api/router.h"
#include "shared/log.h"
#include "shared/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property the parser promised does not hold: abort, so libFuzzer saves the input. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__,   \
			    #cond);                                                                \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Only errors reach stderr: the parsers' warnings would drown libFuzzer's output. */
static inline void
fuzz_quiet(void)
{
	log_init("fuzz", LOG_ERROR);
}

/* The input as a NUL-terminated string (embedded NULs cut it short, as a C caller would). */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	return xstrndup((const char *)data, size);
}

/* Cuts the next field off *data at the first sep (the rest when there is none): a new
 * string. Lets one input carry several arguments ("GET\n/path\nbody"). */
static inline char *
fuzz_field(const uint8_t **data, size_t *size, char sep)
{
	const uint8_t *p = memchr(*data, sep, *size);
	size_t n = p != NULL ? (size_t)(p - *data) : *size;
	char *s = xstrndup((const char *)*data, n);

	*data += p != NULL ? n + 1 : n;
	*size -= p != NULL ? n + 1 : n;
	return s;
}

/* The API's own route table (app_routes) in a router whose ids are its indexes: a new
 * route is fuzzed as soon as it exists. */
static inline struct router *
fuzz_api_router(const struct call_route **routes, size_t *n)
{
	struct router *rt = router_new();

	*routes = app_routes(n);
	for (size_t i = 0; i < *n; i++)
		if (!router_add(rt, (*routes)[i].method, (*routes)[i].pattern, (int)i))
			abort();
	return rt;
}

#endif
