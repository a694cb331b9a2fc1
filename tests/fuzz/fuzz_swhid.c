/* fuzz_swhid.c: SWHIDs and bare object ids (shared/gitobj.c swhid_parse, api/call.c
 * call_parse_object, as the Vault routes use them). Input: one byte choosing the bare
 * kind and the Vault kind, then the text. Properties: a parsed id formats back to a SWHID
 * that parses to the same kind and id, and equals the input (lower-cased) when the input
 * was a full SWHID; call_parse_object gives 40 lowercase hex digits and the SWHID of
 * its kind, or a 400. */
#include <ctype.h>

#include "api/call.h"
#include "shared/gitobj.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const vault_kinds[] = {"directory", "revision", "snapshot", "content"};
	enum swhid_kind kind, kind2;
	unsigned char id[20], id2[20];
	char out[64], *s;
	int bare;
	struct call *c;

	if (size < 1)
		return 0;
	bare = (int)(data[0] % 7) - 1; /* -1 (SWHIDs only) to 5 (out of range) */
	s = fuzz_str(data + 1, size - 1);
	if (swhid_parse(s, bare, &kind, id)) {
		FUZZ_CHECK(kind >= SWHID_CNT && kind <= SWHID_SNP);
		swhid_format(kind, id, out);
		FUZZ_CHECK(strlen(out) == 50);
		FUZZ_CHECK(swhid_parse(out, -1, &kind2, id2));
		FUZZ_CHECK(kind2 == kind && memcmp(id, id2, 20) == 0);
		if (strlen(s) == 50) {
			for (size_t i = 0; i < 50; i++)
				FUZZ_CHECK(out[i] == tolower((unsigned char)s[i]));
		} else {
			FUZZ_CHECK(bare >= 0 && strlen(s) == 40 && (int)kind == bare);
		}
	}

	c = call_new(NULL, NULL, NULL, "fuzz");
	if (call_parse_object(c, vault_kinds[data[0] % 4], s)) {
		FUZZ_CHECK(strlen(c->obj_hex) == 40);
		for (size_t i = 0; i < 40; i++)
			FUZZ_CHECK(isdigit((unsigned char)c->obj_hex[i]) ||
			    (c->obj_hex[i] >= 'a' && c->obj_hex[i] <= 'f'));
		FUZZ_CHECK(
		    strncmp(c->swhid, "swh:1:", 6) == 0 && strcmp(c->swhid + 10, c->obj_hex) == 0);
		FUZZ_CHECK(swhid_parse(c->swhid, -1, &kind2, id2) && kind2 == c->obj_kind);
		FUZZ_CHECK(memcmp(id2, c->obj_id, 20) == 0);
		FUZZ_CHECK(c->resp.status == 0);
	} else {
		FUZZ_CHECK(c->resp.status == 400);
	}
	call_free(c);
	free(s);
	return 0;
}
