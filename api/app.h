/* app.h: the API application: the route table, authentication and body policies in the
 * headers phase, hand-off of each call to the pool and of its reply back to the loop, the
 * upload spool folder, and a graceful shutdown. api/main.c owns its lifecycle. */
#ifndef BV_APP_H
#define BV_APP_H

#include <stdbool.h>

#include <event2/event.h>

#include "shared/config.h"
#include "shared/store.h"
#include "shared/util.h"

struct app;

/* Builds the routes, the pool and the HTTP server (not yet listening). The upload spool
 * is <data_dir>/tmp/uploads: created, and cleared of files left by a dead process. */
struct app *app_new(const struct config *cfg, struct event_base *base, struct store *st,
    char **errstr) BV_MUSTCHECK;
/* Binds cfg->listen and logs "listening on http://HOST:PORT". */
int app_listen(struct app *a, char **errstr) BV_MUSTCHECK;
/* Serves on fd, a listening socket made before this process forked (api_processes). */
int app_listen_fd(struct app *a, int fd, char **errstr) BV_MUSTCHECK;
/* SIGTERM/SIGINT: stop accepting, let in-flight requests finish (bounded by
 * shutdown_timeout), then leave the event loop. */
void app_shutdown(struct app *a);
/* True when the shutdown gave up waiting for in-flight requests. */
bool app_timed_out(const struct app *a);
/* Frees everything (after the loop has returned and only if !app_timed_out). */
void app_free(struct app *a);
/* The route table (method, pattern, access per route), *n entries; HEAD is served
 * wherever GET is. */
struct call_route;
const struct call_route *app_routes(size_t *n);

#endif
