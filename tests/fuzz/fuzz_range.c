/* fuzz_range.c: the HTTP Range header parser (api/resp.c resp_parse_range). The input is
 * an 8-byte little-endian size then the header. Properties: a served range lies inside
 * the body and is not empty; an unsatisfiable answer only comes with a "bytes=" header. */
#include <strings.h>

#include "api/resp.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t body = 0, start = 0, len = 0;
	char *hdr;
	int rc;

	if (size < 8)
		return 0;
	for (int i = 0; i < 8; i++)
		body |= (uint64_t)data[i] << (8 * i);
	/* Small sizes matter most (the edge of a range); keep some huge ones. */
	if (data[7] < 0xf0)
		body %= 100000;
	hdr = fuzz_str(data + 8, size - 8);
	rc = resp_parse_range(hdr, body, &start, &len);
	FUZZ_CHECK(rc >= -1 && rc <= 1);
	if (rc == 1) {
		FUZZ_CHECK(len > 0);
		FUZZ_CHECK(start < body);
		FUZZ_CHECK(len <= body - start);
	}
	if (rc != 0)
		FUZZ_CHECK(strncasecmp(hdr, "bytes=", 6) == 0);
	if (rc == 1) {
		/* The range written back as a header means the same bytes. */
		char again[64];
		uint64_t s2 = 0, l2 = 0;

		snprintf(again, sizeof again, "bytes=%llu-%llu", (unsigned long long)start,
		    (unsigned long long)(start + len - 1));
		FUZZ_CHECK(resp_parse_range(again, body, &s2, &l2) == 1);
		FUZZ_CHECK(s2 == start && l2 == len);
	}
	free(hdr);
	return 0;
}
