/* main.c: bitsvault-worker [-c FILE] [--gc [--dry-run]]. Loads the configuration, applies
 * migrations (waiting for Postgres a while), opens the store, Redis and the API client,
 * and runs the job loop until SIGTERM/SIGINT, which let the current job finish before the
 * process exits 0. With --gc it runs one blob garbage collection instead and prints its
 * report as one JSON line (docs/operations.md). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shared/log.h"
#include "worker/worker.h"

/* Postgres may still be starting next to us (scripts start everything at once). */
#define MIGRATE_WAIT_MS 30000
/* Temp files younger than this may be uploads or bundles being written right now. */
#define TMP_MAX_AGE_S 3600

/* SIGTERM/SIGINT: the loop finishes the current job and returns. */
static void
on_stop(int sig)
{
	(void)sig;
	worker_stop = 1;
}

/* Bad command line: exit status 2, as getopt-style tools do. */
static void
usage(void)
{
	fprintf(stderr, "usage: bitsvault-worker [-c FILE] [--gc [--dry-run]]\n");
	exit(2);
}

/* Stop requests set a flag the loop polls; SIGPIPE is ignored (a dropped API connection
 * is an error return, not a death). */
static void
setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	/* Restarted calls are fine: every wait in the loop is bounded (CLAIM_BLOCK_MS). */
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* cfg.worker_name, or <hostname>-<pid>. */
static char *
worker_name(const struct config *cfg)
{
	char host[256];

	if (cfg->worker_name[0] != '\0')
		return xstrdup(cfg->worker_name);
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "worker");
	host[sizeof host - 1] = '\0';
	return xasprintf("%s-%ld", host, (long)getpid());
}

/* cfg.api_url, or http://<listen> with a wildcard address replaced by loopback. */
static char *
api_base(const struct config *cfg)
{
	if (cfg->api_url[0] != '\0')
		return xstrdup(cfg->api_url);
	const char *listen = cfg->listen;
	const char *colon = strrchr(listen, ':');
	if (colon == NULL)
		return xasprintf("http://%s", listen);
	size_t hl = (size_t)(colon - listen);
	const char *port = colon + 1;
	if (hl == 0 || (hl == 7 && strncmp(listen, "0.0.0.0", 7) == 0) ||
	    (hl == 1 && listen[0] == '*'))
		return xasprintf("http://127.0.0.1:%s", port);
	if ((hl == 4 && strncmp(listen, "[::]", 4) == 0) ||
	    (hl == 2 && strncmp(listen, "::", 2) == 0))
		return xasprintf("http://[::1]:%s", port);
	return xasprintf("http://%s", listen);
}

/* db_migrate, retried while Postgres is not up yet. */
static void
migrate(struct worker *w)
{
	uint64_t start = now_ms();
	bool warned = false;

	for (;;) {
		char *err = NULL;
		int applied = 0;
		if (db_migrate(w->db, w->cfg->migrations_dir, &applied, &err) == 0) {
			if (applied > 0)
				log_info("applied %d migration(s)", applied);
			return;
		}
		if (now_ms() - start > MIGRATE_WAIT_MS)
			fatal("cannot apply migrations: %s", err);
		if (!warned)
			log_warn("waiting for Postgres: %s", err);
		warned = true;
		free(err);
		worker_sleep(1000);
		if (worker_stop)
			exit(0);
	}
}

/* Exit status of --gc while another worker collects: sysexits.h's EX_TEMPFAIL. */
#define GC_EXIT_BUSY 75

/* --gc: one collection with the database and the store only (no Redis, no API, no
 * migrations: a one-shot tool should fail fast, not wait for a schema). The report goes
 * to stdout as one JSON line, the per-blob log lines to stderr. Exit 0 when the walk
 * completed; 75 (EX_TEMPFAIL) when another worker is collecting right now; 1 with the
 * reason on stderr on an error or a refusal (store and database not bound to each other,
 * no store at <data_dir>/store: this never creates one), and 1 after SIGINT/SIGTERM
 * stopped the walk (the report then says "complete": false). A dry run is asked by
 * --dry-run or by gc_dry_run in the configuration: a config that says dry run is never
 * overridden by the command line (BITSVAULT_GC_DRY_RUN=false does). */
static int
gc_once(struct config *cfg, bool dry_run)
{
	struct worker w;
	struct gc_report r;
	char *err = NULL, *root, *objects;
	int rc;

	dry_run = dry_run || cfg->gc_dry_run;
	memset(&w, 0, sizeof w);
	w.cfg = cfg;
	w.pg_trouble.what = "postgres";
	root = xasprintf("%s/store", cfg->data_dir);
	objects = xasprintf("%s/objects", root);
	if (access(objects, F_OK) != 0) {
		fprintf(stderr, "bitsvault-worker: no store at %s (%s): check data_dir\n", root,
		    strerror(errno));
		free(objects);
		free(root);
		return 1;
	}
	free(objects);
	if ((w.db = db_new(cfg->database_url, &err)) == NULL) {
		fprintf(stderr, "bitsvault-worker: config key 'database_url': %s\n", err);
		free(err);
		free(root);
		return 1;
	}
	if ((w.store = store_open_local(root, &err)) == NULL) {
		fprintf(stderr, "bitsvault-worker: cannot open the store: %s\n", err);
		free(err);
		free(root);
		db_free(w.db);
		return 1;
	}
	free(root);
	if (!dry_run && cfg->gc_grace < STORE_MIN_GC_GRACE_S)
		fprintf(stderr,
		    "bitsvault-worker: warning: gc_grace is %llds: blobs of uploads and cooks in"
		    " progress may be deleted (periodic collections use at least %ds)\n",
		    (long long)cfg->gc_grace, STORE_MIN_GC_GRACE_S);
	rc = gc_collect(&w, dry_run, &r, &err);
	if (rc < 0) {
		fprintf(stderr, "bitsvault-worker: %s\n", err);
		free(err);
	} else if (rc == 1) {
		fprintf(stderr,
		    "bitsvault-worker: another worker is collecting garbage now;"
		    " try again later\n");
	} else {
		bool complete = !worker_stop;

		printf("{\"scanned\": %lld, \"deleted\": %lld, \"deleted_bytes\": %lld,"
		       " \"kept_young\": %lld, \"dry_run\": %s, \"complete\": %s}\n",
		    (long long)r.scanned, (long long)r.deleted, (long long)r.deleted_bytes,
		    (long long)r.kept_young, dry_run ? "true" : "false",
		    complete ? "true" : "false");
		fflush(stdout);
		if (!complete) {
			fprintf(stderr,
			    "bitsvault-worker: interrupted: the collection did not"
			    " finish\n");
			rc = -1;
		}
	}
	store_free(w.store);
	db_free(w.db);
	return rc == 0 ? 0 : rc == 1 ? GC_EXIT_BUSY : 1;
}

/* nftw: removes one entry of a stale temp folder. */
static int
rm_stale(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", path, strerror(errno));
	return 0;
}

/* Removes what a crashed worker left in <data_dir>/tmp: load-* repositories (worker/load.c)
 * and gitbare-* packs (worker/gitbare.c) older than TMP_MAX_AGE_S. A live worker on the
 * same data folder keeps its own younger: packs are written all along, and a load touches
 * its folder every few minutes. */
static void
clean_job_tmp(const struct config *cfg)
{
	char *dir = xasprintf("%s/tmp", cfg->data_dir);
	DIR *d = opendir(dir);
	struct dirent *e;
	time_t now = time(NULL);
	int removed = 0;

	if (d == NULL) {
		if (errno != ENOENT)
			log_warn("cannot read %s: %s", dir, strerror(errno));
		free(dir);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat sb;
		char *path;

		if (strncmp(e->d_name, "load-", 5) != 0 && strncmp(e->d_name, "gitbare-", 8) != 0)
			continue;
		path = xasprintf("%s/%s", dir, e->d_name);
		if (lstat(path, &sb) == 0 && now - sb.st_mtime > TMP_MAX_AGE_S) {
			if (S_ISDIR(sb.st_mode))
				nftw(path, rm_stale, 16, FTW_DEPTH | FTW_PHYS);
			else if (unlink(path) != 0 && errno != ENOENT)
				log_warn("cannot remove %s: %s", path, strerror(errno));
			removed++;
		}
		free(path);
	}
	closedir(d);
	if (removed > 0)
		log_info("removed %d stale load or git-bare temp item(s) from %s", removed, dir);
	free(dir);
}

/* Start-up, the loop, and an orderly exit 0 after SIGTERM/SIGINT. */
int
main(int argc, char **argv)
{
	struct config cfg;
	struct worker w;
	const char *cfg_path = NULL;
	char *err = NULL;
	int opt;
	bool gc = false, dry_run = false;
	static const struct option longopts[] = {
	    {"gc", no_argument, NULL, 'g'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};

	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cfg_path = optarg;
			break;
		case 'g':
			gc = true;
			break;
		case 'n':
			dry_run = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (dry_run && !gc))
		usage();

	log_init("bitsvault-worker", LOG_INFO);
	if (config_load(&cfg, cfg_path, &err) != 0)
		fatal("%s", err);
	int level = log_level_parse(cfg.log_level);
	if (level < 0)
		fatal("config key 'log_level': expected debug, info, warn or error");
	log_init("bitsvault-worker", (enum log_level)level);
	setup_signals();
	if (gc) {
		int rc = gc_once(&cfg, dry_run);
		config_free(&cfg);
		return rc;
	}
	/* Bundles must not depend on the host's time zone (zip's DOS times; B.4). */
	setenv("TZ", "UTC", 1);
	tzset();

	memset(&w, 0, sizeof w);
	w.cfg = &cfg;
	w.name = worker_name(&cfg);
	char tag[9];
	random_hex(tag, 4);
	w.id = xasprintf("%s#%s", w.name, tag);
	w.api_base = api_base(&cfg);
	w.started_at = now_wall();
	w.redis_trouble.what = "redis";
	w.pg_trouble.what = "postgres";
	w.api_trouble.what = "api";
	w.lease_api_trouble.what = "api";
	w.lease_redis_trouble.what = "redis";
	if (cfg.worker_token[0] == '\0')
		log_warn("worker_token is not set: the API will refuse this worker's reports");

	if ((w.db = db_new(cfg.database_url, &err)) == NULL)
		fatal("config key 'database_url': %s", err);
	migrate(&w);

	char *root = xasprintf("%s/store", cfg.data_dir);
	if ((w.store = store_open_local(root, &err)) == NULL)
		fatal("cannot open the store: %s", err);
	free(root);
	int removed = store_clean_tmp(w.store, TMP_MAX_AGE_S, &err);
	if (removed < 0) {
		log_warn("cannot clean the store's temp files: %s", err);
		free(err);
	} else if (removed > 0) {
		log_info("removed %d stale temp file(s) from the store", removed);
	}
	clean_job_tmp(&cfg);

	if ((w.kv = kv_new(cfg.redis_url, &err)) == NULL)
		fatal("config key 'redis_url': %s", err);
	kv_set_lease(w.kv, (int)cfg.job_lease);
	if ((w.lease_kv = kv_new(cfg.redis_url, &err)) == NULL)
		fatal("config key 'redis_url': %s", err);
	kv_set_lease(w.lease_kv, (int)cfg.job_lease);
	w.hc = httpc_new(cfg.worker_token, 30);
	w.hc_progress = httpc_new(cfg.worker_token, 5);
	/* A renewal that hangs must not outlast the next one by much: a third of the lease,
	 * between 1 and 10 s. */
	long renew_timeout = (long)(cfg.job_lease / 3);
	w.lease_hc = httpc_new(
	    cfg.worker_token, renew_timeout < 1 ? 1 : (renew_timeout > 10 ? 10 : renew_timeout));

	log_info(
	    "worker %s started: api %s, lease %llds", w.name, w.api_base, (long long)cfg.job_lease);
	worker_loop(&w);
	log_info("worker %s stopping: %lld done, %lld failed", w.name, (long long)w.jobs_done,
	    (long long)w.jobs_failed);

	httpc_free(w.lease_hc);
	httpc_free(w.hc_progress);
	httpc_free(w.hc);
	kv_free(w.lease_kv);
	kv_free(w.kv);
	store_free(w.store);
	db_free(w.db);
	free(w.api_base);
	free(w.name);
	free(w.id);
	config_free(&cfg);
	return 0;
}
