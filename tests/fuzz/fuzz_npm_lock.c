/* fuzz_npm_lock.c: the npm lockfile parser a Cachito request runs on a repository's
 * package-lock.json (worker/request_npm.c; pure, jansson only). Input: the lockfile.
 * Properties: a registry dependency has a safe name and a version fit for a file name and its bundle path stays under deps/npm/ without ".." or an absolute
 * part; each is found again by name and version; the local-path check answers; the
 * lockfile rewritten to the bundle still parses, to as many dependencies. */
#include <jansson.h>

#include "tests/fuzz/fuzz.h"
#include "worker/request.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

/* A bundle path: under deps/npm/, no empty, "." or ".." segment. */
static void
check_bundle_path(const char *p)
{
	FUZZ_CHECK(strncmp(p, "deps/npm/", 9) == 0);
	for (const char *s = p; *s != '\0';) {
		size_t n = strcspn(s, "/");

		FUZZ_CHECK(n > 0);
		FUZZ_CHECK(!(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.'));
		s += n;
		if (*s == '/')
			s++;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct npm_lock lock, again;
	char *err = NULL, *text;
	size_t ndeps;

	memset(&lock, 0, sizeof lock);
	if (npm_lock_parse((const char *)data, size, "package-lock.json", &lock, &err) != 0) {
		FUZZ_CHECK(err != NULL && err[0] != '\0');
		free(err);
		npm_lock_clear(&lock);
		return 0;
	}
	FUZZ_CHECK(lock.version >= 1 && lock.version <= 3);
	for (size_t i = 0; i < lock.ndeps; i++) {
		struct npm_dep *d = &lock.deps[i];

		FUZZ_CHECK(d->name != NULL && d->version != NULL);
		FUZZ_CHECK(npm_lock_find(&lock, d->name, d->version) == d);
		if (d->source == NPM_REGISTRY) {
			/* What becomes a path: file: and other sources never do. */
			FUZZ_CHECK(npm_name_ok(d->name) && npm_version_ok(d->version));
			d->bundle_path = npm_bundle_path(d->name, d->version);
			check_bundle_path(d->bundle_path);
		}
	}
	if (npm_lock_check_local(&lock, "", "package-lock.json", &err) != 0) {
		FUZZ_CHECK(err != NULL);
		free(err);
		err = NULL;
	}
	if (npm_lock_check_local(&lock, "sub/dir", "package-lock.json", &err) != 0) {
		free(err);
		err = NULL;
	}
	npm_lock_rewrite(&lock, "../");
	ndeps = lock.ndeps;
	text = json_dumps(lock.root, JSON_COMPACT);
	FUZZ_CHECK(text != NULL);
	npm_lock_clear(&lock);
	memset(&again, 0, sizeof again);
	if (npm_lock_parse(text, strlen(text), "package-lock.json", &again, &err) != 0) {
		fprintf(stderr, "the rewritten lockfile does not parse: %s\n", err);
		FUZZ_CHECK(!"rewritten lockfile parses");
	}
	FUZZ_CHECK(again.ndeps == ndeps);
	npm_lock_clear(&again);
	free(text);
	return 0;
}
