/* main.c: bitsvault-api [-c FILE] [--migrate-only] [--routes]: loads the config, applies the
 * database migrations (waiting for Postgres to come up), cleans stale temp files, and
 * serves the HTTP API on one event loop until SIGTERM or SIGINT; with api_processes > 1,
 * as that many processes on one listening socket under a supervisor. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "api/app.h"
#include "api/auth.h"
#include "api/call.h"
#include "api/http.h"
#include "shared/config.h"
#include "shared/db.h"
#include "shared/kv.h"
#include "shared/log.h"
#include "shared/store.h"

#define PROGNAME "bitsvault-api"
/* How long to wait for Postgres at start (it may be starting with us). */
#define DB_WAIT_S 30
/* Store temp files older than this are crash leftovers; younger ones may belong to a
 * worker writing a bundle right now. */
#define STORE_TMP_MAX_AGE_S 3600

/* Prints usage to f. */
static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: %s [-c FILE] [--migrate-only] [--routes]\n"
	    "  -c, --config FILE   JSON config file (else $BITSVAULT_CONFIG; BITSVAULT_* override)\n"
	    "      --migrate-only  apply database migrations and exit\n"
	    "      --routes        print the route table as JSON and exit\n"
	    "  -h, --help          this help\n",
	    PROGNAME);
}

/* --routes: [{"method", "pattern", "access", "body"}, ...] on stdout, in the table's order
 * (HEAD is served wherever GET is), for tests and API descriptions. No config needed. */
static int
print_routes(void)
{
	static const char *const bodies[] = {"none", "json", "upload", "bits"};
	size_t n;
	const struct call_route *r = app_routes(&n);
	json_t *a = json_array();
	int rc;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a,
		    json_pack("{s:s, s:s, s:s, s:s}", "method", r[i].method, "pattern",
			r[i].pattern, "access", auth_access_name(r[i].access), "body",
			(size_t)r[i].body < BV_NELEM(bodies) ? bodies[r[i].body] : "?"));
	rc = json_dumpf(a, stdout, JSON_INDENT(1)) == 0 && puts("") != EOF ? 0 : 1;
	json_decref(a);
	return rc;
}

/* SIGTERM/SIGINT arrive through the event loop (STYLE 8). */
static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	app_shutdown(arg);
}

/* --- api_processes > 1: a supervisor and its serving processes ------------------------- */

/* Signals the supervisor waits for (set by its handler, read with them blocked). */
static volatile sig_atomic_t sup_term, sup_chld;

/* The supervisor's handler: notes the signal. */
static void
on_sup_signal(int sig)
{
	if (sig == SIGCHLD)
		sup_chld = 1;
	else
		sup_term = sig;
}

/* Forks serving process i. In the child: 0, with its signals as a plain process's. In the
 * parent: 1 (pids[i] set), or -1. */
static int
spawn(pid_t *pids, uint64_t *started, int i, pid_t parent, const sigset_t *old)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_error("cannot start an API process: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* The supervisor gone (even by SIGKILL), its processes go too. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		sigprocmask(SIG_SETMASK, old, NULL);
		return 0;
	}
	pids[i] = pid;
	started[i] = now_ms();
	return 1;
}

/* Runs cfg->api_processes serving processes on the listening socket fd until SIGTERM or
 * SIGINT, which each of them gets in turn (they finish their requests, as one process
 * does). A process that dies is replaced, unless it died within 2 s of its start: then
 * something is wrong that a new one would hit too, and the whole API stops. Returns in
 * each child with *child set (it goes on to serve); in the supervisor, once every process
 * is gone, with the exit status. */
static int
supervise(const struct config *cfg, bool *child)
{
	int n = (int)cfg->api_processes, alive = 0, rc = 0;
	pid_t pids[64] = {0}, parent = getpid(), pid;
	uint64_t started[64] = {0};
	bool stopping = false;
	struct sigaction sa;
	sigset_t block, old;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sup_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	*child = false;
	for (int i = 0; i < n; i++) {
		int r = spawn(pids, started, i, parent, &old);

		if (r == 0) {
			*child = true;
			return 0;
		}
		if (r > 0)
			alive++;
		else
			sup_term = SIGTERM;
	}
	log_info("%d API processes serving (pids from %d)", alive, (int)pids[0]);
	for (;;) {
		int wst;

		while (!sup_term && !sup_chld && !(stopping && alive == 0))
			sigsuspend(&old);
		if (sup_term && !stopping) {
			stopping = true;
			log_info("received %s: stopping %d API processes",
			    sup_term == SIGINT ? "SIGINT" : "SIGTERM", alive);
			for (int i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGTERM);
		}
		sup_chld = 0;
		while ((pid = waitpid(-1, &wst, WNOHANG)) > 0) {
			int i = 0;

			while (i < n && pids[i] != pid)
				i++;
			if (i == n)
				continue;
			pids[i] = 0;
			alive--;
			bool clean = WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
			if (stopping) {
				if (!clean)
					rc = 1;
				continue;
			}
			log_warn("API process %d %s %d", (int)pid,
			    WIFSIGNALED(wst) ? "was killed by signal" : "exited with status",
			    WIFSIGNALED(wst) ? WTERMSIG(wst) : WEXITSTATUS(wst));
			if (now_ms() - started[i] < 2000) {
				log_error("it died within 2 s of its start: stopping the API");
				rc = 1;
				sup_term = SIGTERM;
				continue;
			}
			int r = spawn(pids, started, i, parent, &old);
			if (r == 0) {
				*child = true;
				return 0;
			}
			if (r > 0) {
				alive++;
				log_info("started API process %d in its place", (int)pids[i]);
			} else {
				rc = 1;
				sup_term = SIGTERM;
			}
		}
		if (stopping && alive == 0)
			break;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	log_info("stopped");
	return rc;
}

/* Settings that config.c checks only for shape are parsed fully here, before anything
 * else runs, so a bad one stops the process with its key named. 0 or -1 (logged). */
static int
check_urls(const struct config *cfg)
{
	char *err = NULL, *host = NULL;
	struct kv *kv;
	int port;

	if ((kv = kv_new(cfg->redis_url, &err)) == NULL) {
		log_error("config key 'redis_url': %s", err);
		free(err);
		return -1;
	}
	kv_free(kv);
	if (!http_parse_listen(cfg->listen, &host, &port)) {
		log_error(
		    "config key 'listen': '%s' is not HOST:PORT or [V6ADDR]:PORT", cfg->listen);
		return -1;
	}
	free(host);
	return 0;
}

/* Connects and migrates, waiting up to DB_WAIT_S seconds for Postgres. 0 or -1 (logged). */
static int
migrate(const struct config *cfg)
{
	char *err = NULL, *safe;
	struct db *db;
	uint64_t deadline = now_ms() + DB_WAIT_S * 1000;
	bool waited = false;
	int applied = 0;

	db = db_new(cfg->database_url, &err);
	if (db == NULL) {
		safe = call_redact(cfg, err);
		log_error("database_url: %s", safe);
		free(safe);
		free(err);
		return -1;
	}
	while (db_ensure(db, &err) != 0) {
		safe = call_redact(cfg, err);
		free(err);
		err = NULL;
		if (now_ms() >= deadline) {
			log_error("Postgres is not reachable after %d s: %s", DB_WAIT_S, safe);
			free(safe);
			db_free(db);
			return -1;
		}
		if (!waited)
			log_info("waiting for Postgres: %s", safe);
		waited = true;
		free(safe);
		sleep(1);
	}
	if (db_migrate(db, cfg->migrations_dir, &applied, &err) != 0) {
		safe = call_redact(cfg, err);
		log_error("migrations in %s failed: %s", cfg->migrations_dir, safe);
		free(safe);
		free(err);
		db_free(db);
		return -1;
	}
	log_info("database schema up to date (%d migration(s) applied)", applied);
	db_free(db);
	return 0;
}

/* Raises the soft limit on open files to the hard one: every connection costs a file
 * descriptor (two while it sends a bundle or spools an upload), and the default soft
 * limit (often 1024) is far below what the server can serve. Logged, never fatal. */
static void
raise_nofile(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("cannot raise the open files limit from %llu to %llu: %s",
		    (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
		return;
	}
	log_info("open files limit raised from %llu to %llu", (unsigned long long)was,
	    (unsigned long long)rl.rlim_max);
}

/* Start-up in the order the brief fixes: config, logging, migrations (and stop there with
 * --migrate-only), the store and its stale temp files, then the HTTP server on one event
 * loop until a signal ends it. */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"migrate-only", no_argument, NULL, 'm'},
	    {"routes", no_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *cfgpath = NULL;
	bool migrate_only = false;
	struct config cfg;
	struct store *st = NULL;
	struct event_base *base = NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	struct app *app = NULL;
	char *err = NULL, *root;
	int opt, level, rc = 1, removed, listen_fd = -1;

	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'm':
			migrate_only = true;
			break;
		case 'r':
			return print_routes();
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}

	log_init(PROGNAME, LOG_INFO);
	if (config_load(&cfg, cfgpath, &err) != 0) {
		fprintf(stderr, "%s: config: %s\n", PROGNAME, err);
		free(err);
		config_free(&cfg); /* what was set before the bad key */
		return 1;
	}
	if ((level = log_level_parse(cfg.log_level)) >= 0)
		log_init(PROGNAME, (enum log_level)level);
	log_route_libevent();
	/* A client that goes away mid-reply must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	if (check_urls(&cfg) != 0 || migrate(&cfg) != 0)
		goto out;
	if (migrate_only) {
		rc = 0;
		goto out;
	}

	root = xasprintf("%s/store", cfg.data_dir);
	st = store_open_local(root, &err);
	if (st == NULL) {
		log_error("store %s: %s", root, err);
		free(root);
		goto out;
	}
	free(root);
	removed = store_clean_tmp(st, STORE_TMP_MAX_AGE_S, &err);
	if (removed < 0) {
		log_warn("store: cannot clean temp files: %s", err);
		free(err);
		err = NULL;
	} else if (removed > 0) {
		log_info("store: removed %d stale temp file(s)", removed);
	}

	if (cfg.api_processes > 1) {
		/* One listening socket for all; the supervisor serves nothing itself. */
		bool child;
		char *bound = NULL;

		if (http_listen_socket(cfg.listen, &listen_fd, &bound, &err) != 0) {
			log_error("%s", err);
			goto out;
		}
		log_info(
		    "listening on http://%s (%lld processes)", bound, (long long)cfg.api_processes);
		free(bound);
		rc = supervise(&cfg, &child);
		if (!child)
			goto out;
		rc = 1;
	}
	if ((base = event_base_new()) == NULL) {
		log_error("cannot create the event loop");
		goto out;
	}
	if ((app = app_new(&cfg, base, st, &err)) == NULL) {
		log_error("%s", err);
		goto out;
	}
	if ((listen_fd >= 0 ? app_listen_fd(app, listen_fd, &err) : app_listen(app, &err)) != 0) {
		log_error("%s", err);
		goto out;
	}
	sigterm = evsignal_new(base, SIGTERM, on_signal, app);
	sigint = evsignal_new(base, SIGINT, on_signal, app);
	if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
	    evsignal_add(sigint, NULL) != 0) {
		log_error("cannot install signal handlers");
		goto out;
	}

	if (event_base_dispatch(base) < 0) {
		log_error("event loop failed");
		goto out;
	}
	if (app_timed_out(app)) {
		/* Pool threads may still be inside a request: nothing is safe to free. */
		log_info("stopped (shutdown timeout)");
		exit(0);
	}
	log_info("stopped");
	rc = 0;
out:
	free(err);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	app_free(app);
	if (base != NULL)
		event_base_free(base);
	store_free(st);
	config_free(&cfg);
	return rc;
}
