/* itest.h: the integration-test harness. Each test program gets its own Postgres
 * database and Redis db number on the servers scripts/test started, its own data folder
 * and free port, spawns the real bitsvault-api and bitsvault-worker binaries, and talks
 * to them over HTTP with libcurl. Without servers it skips (exit 77), unless
 * BITSVAULT_TEST_REQUIRE=1, where that is a failure. */
#ifndef BV_ITEST_H
#define BV_ITEST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "shared/util.h"

#define IT_ADMIN "itest-admin-token-0123456789abcdef"
#define IT_WORKER "itest-worker-token-0123456789abcdef"
#define IT_USER "itest-user-token-0123456789abcdef"

struct itest {
	char name[64];
	char dir[256]; /* temp folder: data/, trees/, logs */
	char data_dir[300];
	char url[64]; /* http://127.0.0.1:PORT */
	char listen[32];
	char *db_url; /* this program's own database */
	char *redis_url; /* this program's own Redis db */
	int redis_db;
	pid_t api;
	pid_t workers[16];
	char worker_names[16][32];
	int nworkers;
	char extra_env[16][128];
	int nextra;
};

struct itest_resp {
	long status;
	struct buf body;
	struct buf headers; /* raw header lines */
	json_t *json; /* parsed body when it is a JSON object or array, else NULL */
};

extern struct itest IT;

/* Runs the suite in this process (Check's fork mode would split the spawned servers from
 * the tests that use them); EXIT_SUCCESS when every test passed. */
int itest_run(Suite *s);
/* Prepares IT (database, Redis db, folders, port); redis_db picks the Redis db number. */
void itest_init(const char *name, int redis_db);
/* Adds KEY=VALUE to the environment of processes spawned later. */
void itest_env(const char *kv);
/* Starts the API and waits until it answers. */
void itest_start_api(void);
/* Starts a worker named name; returns its index. */
int itest_start_worker(const char *name);
/* Sends sig to a worker and waits for it to exit. */
void itest_stop_worker(int i, int sig);
/* True when the servers run instrumented (ASan build, or under BITSVAULT_TEST_WRAPPER such
 * as valgrind): their memory and speed figures are not the product's, tests skip bounds. */
bool itest_instrumented(void);
/* How many times slower than a plain build the servers run (BITSVAULT_TEST_TIME_FACTOR; 10
 * under a wrapper without it, else 1). The harness's own waits scale with it already; a
 * test multiplies its own waits and latency bounds by it (never a memory bound, never a
 * lower bound that proves something waited). */
int itest_time_factor(void);
/* Stops everything, drops the database, removes the folder (kept when the run failed). */
void itest_teardown(void);

/* One HTTP request. body may be NULL. token may be NULL. extra_header may be NULL. */
void itest_http(struct itest_resp *r, const char *method, const char *path, const char *token,
    const void *body, size_t body_len, const char *extra_header);
/* Uploads a file as the body. */
void itest_http_file(struct itest_resp *r, const char *method, const char *path, const char *token,
    const char *file);
void itest_resp_free(struct itest_resp *r);
/* A header's value (case-insensitive name), or NULL; static buffer. */
const char *itest_header(const struct itest_resp *r, const char *name);

/* A loopback port nobody listens on now. */
int itest_free_port(void);
/* Runs a shell command (with IT.dir as cwd); returns its exit status. */
int itest_sh(const char *fmt, ...) BV_PRINTF(1, 2);
/* Runs a shell command and returns its trimmed stdout (caller frees). */
char *itest_sh_out(const char *fmt, ...) BV_PRINTF(1, 2);
/* A scalar from this program's database (first column of the first row), caller frees. */
char *itest_sql(const char *sql);

/* Makes the reference tree under IT.dir/trees/<name> with nested folders, an executable,
 * a symlink, an empty file and a file of big_bytes random bytes; returns git's tree id
 * (caller frees). */
char *itest_make_tree(const char *name, size_t big_bytes);
/* git's tree id of a folder (git write-tree in a throwaway repository). */
char *itest_git_tree_id(const char *dir);

/* Uploads trees/<name> as a tar (POST /directories) and returns the id (caller frees). */
char *itest_upload_tree(const char *name);
/* POST /vault/directory/<id> as a user (201 or 200 expected); returns the job id. */
json_int_t itest_cook(const char *id);
/* GET /jobs/<job> as admin: the job document (caller decrefs). */
json_t *itest_job(json_int_t job);

/* Polls GET path (a status document with a "status" key: Vault, loads) until it says done
 * or failed, or timeout_s passes; returns the last document (caller decrefs). */
json_t *itest_wait_status(const char *path, int timeout_s);
/* Polls a Vault status until status is done or failed, or timeout_s passes; returns the
 * last status JSON (caller decrefs). */
json_t *itest_wait_cook(const char *kind, const char *id, int timeout_s);

/* Makes a git repository under IT.dir/repos/<name> with the git CLI (fixed names and
 * dates, so ids are stable): branches main and dev, a merge commit, an executable, a
 * symlink, a nested folder, a submodule entry (gitlink), an annotated tag v1.0 and a
 * lightweight tag light; HEAD on main. Returns its path (caller frees). */
char *itest_make_repo(const char *name);
/* POST /loads {"url"} as IT_USER (202 expected), then polls GET /loads/{id} until done or
 * failed or timeout_s passes; returns the last document (caller decrefs). */
json_t *itest_load(const char *url, int timeout_s);
/* Stops the API (SIGTERM, then waits), so a test can start it again with other env. */
void itest_stop_api(void);
/* A libpq conninfo for dbname on the server of url (BITSVAULT_TEST_DATABASE_URL), for tests
 * that run a second instance with its own database. New string. */
char *itest_conninfo_with_db(const char *url, const char *dbname);
/* A multipart/form-data part (filename NULL: a plain field) and the closing delimiter. */
void itest_mp_part(struct buf *b, const char *boundary, const char *name, const char *filename,
    const void *data, size_t len);
void itest_mp_end(struct buf *b, const char *boundary);
/* A file of the test folder, whole (caller frees); the test fails when it cannot be read. */
char *itest_slurp(const char *name, size_t *len);
/* An answer's body into a file of the test folder. */
void itest_save(const struct itest_resp *r, const char *name);

#endif
