/* fuzz_reqcheck.c: the checks of Cachito's request bodies (api/reqcheck.c): POST
 * /api/v1/requests, PATCH /api/v1/requests/{id}, POST .../configuration-files, and the
 * path normalisation they use; plus PATCH /jobs/{id} bodies (api/jobjson.c). Input: one
 * byte choosing the check, then a JSON body (or, for the path, the text). Properties: a
 * body accepted for a new request gives fields that are accepted again, unchanged, with
 * no "user"; every answer is NULL or a non-empty message; Python's repr of any body is
 * text; the normalised path agrees with os.path.normpath (a reference copy below) for
 * relative paths, and normalising twice changes nothing; an accepted job PATCH has a
 * known state and strings within their limits. */
#include <jansson.h>

#include "api/jobjson.h"
#include "api/reqjson.h"
#include "shared/jobs.h"
#include "tests/fuzz/fuzz.h"

#define ENABLED "npm,git-submodule,generic,pip,gomod,yarn,rubygems"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

/* posixpath.normpath for a relative path, with no limit on the components. */
static char *
ref_normpath(const char *path)
{
	char *copy = xstrdup(path), *save = NULL, *tok, **parts = NULL;
	size_t n = 0, cap = 0;
	struct buf b;

	for (tok = strtok_r(copy, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0 && n > 0 && strcmp(parts[n - 1], "..") != 0) {
			n--;
			continue;
		}
		if (n == cap)
			parts = xrealloc(parts, (cap = cap ? 2 * cap : 16) * sizeof *parts);
		parts[n++] = tok;
	}
	buf_init(&b);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%s", i > 0 ? "/" : "", parts[i]);
	if (b.len == 0)
		buf_addc(&b, '.');
	free(parts);
	free(copy);
	return buf_steal(&b, NULL);
}

static void
check_normpath(const char *path)
{
	char *a = reqjson_normpath(path), *b = reqjson_normpath(a);

	FUZZ_CHECK(a[0] != '\0' && strcmp(a, b) == 0);
	if (path[0] != '/') {
		char *want = ref_normpath(path);

		if (strcmp(a, want) != 0) {
			fprintf(stderr, "normpath: got '%s', Python gives '%s'\n", a, want);
			FUZZ_CHECK(!"normpath agrees with Python");
		}
		free(want);
	}
	free(a);
	free(b);
}

/* NULL, or a message worth showing. */
static void
check_msg(char *msg)
{
	FUZZ_CHECK(msg == NULL || msg[0] != '\0');
	free(msg);
}

static void
check_new(const json_t *body)
{
	json_t *fields = NULL, *again = NULL;
	char *msg = reqjson_check_new(body, ENABLED, &fields), *msg2;

	if (msg != NULL) {
		check_msg(msg);
		return;
	}
	FUZZ_CHECK(json_is_object(fields));
	FUZZ_CHECK(json_object_get(fields, "user") == NULL);
	msg2 = reqjson_check_new(fields, ENABLED, &again);
	if (msg2 != NULL) {
		fprintf(stderr, "accepted fields refused again: %s\n", msg2);
		FUZZ_CHECK(!"accepted fields are accepted again");
	}
	FUZZ_CHECK(json_equal(fields, again));
	json_decref(fields);
	json_decref(again);
}

static void
check_job_patch(const json_t *body)
{
	char *msg = jobjson_patch_check(body);
	const json_t *v;

	if (msg != NULL) {
		check_msg(msg);
		return;
	}
	FUZZ_CHECK(json_is_object(body));
	if (json_is_string(v = json_object_get(body, "state")))
		FUZZ_CHECK(job_state_parse(json_string_value(v)) != JOB_STATE_INVALID);
	if (json_is_string(v = json_object_get(body, "worker")))
		FUZZ_CHECK(json_string_length(v) <= JOBJSON_MAX_WORKER);
	if (json_is_string(v = json_object_get(body, "progress_message")))
		FUZZ_CHECK(json_string_length(v) <= JOBJSON_MAX_PROGRESS);
	if (json_is_string(v = json_object_get(body, "error")))
		FUZZ_CHECK(json_string_length(v) <= JOBJSON_MAX_ERROR);
	v = json_object_get(body, "result");
	FUZZ_CHECK(v == NULL || json_is_object(v) || json_is_null(v));
	json_decref(jobjson_str_or_null(json_string_value(json_object_get(body, "worker"))));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body;
	char *repr;

	if (size < 1)
		return 0;
	if (data[0] % 5 == 4) {
		char *path = fuzz_str(data + 1, size - 1);

		check_normpath(path);
		free(path);
		return 0;
	}
	/* As api/app.c reads a JSON body. */
	body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
	if (body == NULL)
		return 0;
	repr = reqjson_repr(body);
	FUZZ_CHECK(repr != NULL && repr[0] != '\0');
	free(repr);
	switch (data[0] % 5) {
	case 0:
		check_new(body);
		break;
	case 1:
		check_msg(reqjson_check_patch(body));
		break;
	case 2:
		check_msg(reqjson_check_config_files(body));
		break;
	default:
		check_job_patch(body);
		break;
	}
	json_decref(body);
	return 0;
}
