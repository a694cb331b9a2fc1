/* fuzz_generic_lock.c: artifacts.lock.yaml, the generic package manager's lockfile
 * (worker/request_generic.c; libyaml), as a Cachito request reads it from a repository.
 * The URL check's DNS lookup is left out (generic_url_split only). Input: the file.
 * Properties: each entry has a file name fit for deps/generic/ (one segment, not "." or
 * ".."), unique; a lowercase checksum of a known algorithm and the right length; an http
 * or https URL with no user name; the entries written back as a flow document (JSON)
 * parse again to the same entries. */
#include <jansson.h>

#include "tests/fuzz/fuzz.h"
#include "worker/request.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

static void
check_checksum(const char *c)
{
	static const struct {
		const char *alg;
		size_t hex;
	} algs[] = {{"sha256:", 64}, {"sha384:", 96}, {"sha512:", 128}};
	size_t i;

	for (i = 0; i < BV_NELEM(algs); i++)
		if (strncmp(c, algs[i].alg, 7) == 0)
			break;
	FUZZ_CHECK(i < BV_NELEM(algs));
	FUZZ_CHECK(strlen(c + 7) == algs[i].hex);
	for (const char *p = c + 7; *p != '\0'; p++)
		FUZZ_CHECK((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct generic_lock lock, again;
	char *err = NULL, *text;
	json_t *doc, *list;

	if (generic_lock_parse((const char *)data, size, "artifacts.lock.yaml", &lock, &err) != 0) {
		FUZZ_CHECK(err != NULL && strstr(err, "artifacts.lock.yaml") != NULL);
		free(err);
		return 0;
	}
	FUZZ_CHECK(lock.n <= GENERIC_MAX_ARTIFACTS);
	list = json_array();
	for (size_t i = 0; i < lock.n; i++) {
		struct generic_artifact *a = &lock.items[i];
		char *host = NULL, *port = NULL, *path = NULL;

		FUZZ_CHECK(a->url != NULL && a->checksum != NULL && a->filename != NULL);
		FUZZ_CHECK(generic_filename_ok(a->filename));
		FUZZ_CHECK(strchr(a->filename, '/') == NULL && strcmp(a->filename, ".") != 0 &&
		    strcmp(a->filename, "..") != 0);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(lock.items[j].filename, a->filename) != 0);
		check_checksum(a->checksum);
		if (generic_url_split(a->url, &host, &port, &path, &err) != 0) {
			fprintf(stderr, "accepted URL does not split: %s\n", err);
			FUZZ_CHECK(!"accepted URL splits");
		}
		FUZZ_CHECK(host[0] != '\0' && port[0] != '\0');
		free(host);
		free(port);
		free(path);
		FUZZ_CHECK(a->line >= 1);
		json_array_append_new(list,
		    json_pack("{s:s, s:s, s:s}", "download_url", a->url, "checksum", a->checksum,
			"filename", a->filename));
	}
	doc = json_pack("{s:{s:s}, s:o}", "metadata", "version", "1.0", "artifacts", list);
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	FUZZ_CHECK(text != NULL);
	if (generic_lock_parse(text, strlen(text), "artifacts.lock.yaml", &again, &err) != 0) {
		fprintf(stderr, "written back, the entries do not parse: %s\n%s\n", err, text);
		FUZZ_CHECK(!"entries written back parse");
	}
	FUZZ_CHECK(again.n == lock.n);
	for (size_t i = 0; i < lock.n; i++) {
		FUZZ_CHECK(strcmp(again.items[i].url, lock.items[i].url) == 0);
		FUZZ_CHECK(strcmp(again.items[i].checksum, lock.items[i].checksum) == 0);
		FUZZ_CHECK(strcmp(again.items[i].filename, lock.items[i].filename) == 0);
	}
	generic_lock_clear(&again);
	generic_lock_clear(&lock);
	free(text);
	return 0;
}
