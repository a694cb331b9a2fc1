/* fuzz_config.c: the configuration file reader (shared/config.c: JSON, types, bounds,
 * size suffixes). Input: the file's bytes; BITSVAULT_* variables are cleared first.
 * Properties: a refusal names the problem and never echoes the value of a secret key
 * (tokens, passwords: the message reaches logs); a loaded configuration frees cleanly
 * and has positive body limits. */
#include <jansson.h>
#include <unistd.h>

#include "shared/config.h"
#include "tests/fuzz/fuzz.h"

extern char **environ;

static char path[300];

static void
cleanup(void)
{
	unlink(path);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	int fd;

	fuzz_quiet();
	for (size_t i = 0; environ[i] != NULL;) {
		if (strncmp(environ[i], "BITSVAULT_", 10) == 0) {
			char *name = xstrndup(environ[i], strcspn(environ[i], "="));

			unsetenv(name);
			free(name);
			i = 0;
			continue;
		}
		i++;
	}
	snprintf(path, sizeof path, "%s/bv-fuzz-config-XXXXXX", tmp);
	if ((fd = mkstemp(path)) < 0)
		abort();
	close(fd);
	atexit(cleanup);
	return 0;
}

/* Whether s is part of a key of the file or of another key's value: those are echoed
 * (an unknown key, a bad size), and may hold the same text. */
static bool
elsewhere(json_t *root, const char *secret_key, const char *s)
{
	const char *key;
	json_t *v;

	json_object_foreach(root, key, v)
	{
		if (strstr(key, s) != NULL)
			return true;
		if (strcmp(key, secret_key) != 0 && json_is_string(v) &&
		    strstr(json_string_value(v), s) != NULL)
			return true;
		if (strcmp(key, secret_key) != 0 && !json_is_string(v)) {
			char *text = json_dumps(v, JSON_ENCODE_ANY);
			bool found = text != NULL && strstr(text, s) != NULL;

			free(text);
			if (found)
				return true;
		}
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	char *err = NULL;
	FILE *f = fopen(path, "wb");
	json_t *root, *v;
	const char *key;

	FUZZ_CHECK(f != NULL);
	FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
	FUZZ_CHECK(fclose(f) == 0);
	memset(&cfg, 0, sizeof cfg);
	if (config_load(&cfg, path, &err) == 0) {
		FUZZ_CHECK(err == NULL);
		FUZZ_CHECK(cfg.max_json_size > 0 && cfg.max_upload_size > 0);
		config_free(&cfg);
		return 0;
	}
	FUZZ_CHECK(err != NULL && err[0] != '\0');
	root = json_loadb((const char *)data, size, 0, NULL);
	json_object_foreach(root, key, v)
	{
		if (config_key_secret(key) && json_is_string(v) && json_string_length(v) >= 6 &&
		    strstr(err, json_string_value(v)) != NULL &&
		    !elsewhere(root, key, json_string_value(v))) {
			fprintf(stderr, "secret %s echoed in: %s\n", key, err);
			FUZZ_CHECK(!"no secret in a config error");
		}
	}
	json_decref(root);
	free(err);
	config_free(&cfg);
	return 0;
}
