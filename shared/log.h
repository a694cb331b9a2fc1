/* log.h: one leveled logger for every process; a variant that names a request or job id. */
#ifndef BV_LOG_H
#define BV_LOG_H

#include "shared/util.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_threshold;

/* Sets the process name shown on each line and the minimum level. */
void log_init(const char *progname, enum log_level level);
/* "debug", "info", "warn", "error" -> level; -1 when unknown. */
int log_level_parse(const char *s);
/* Routes libevent's own messages into this logger. */
void log_route_libevent(void);

void log_write(enum log_level level, const char *id, const char *fmt, ...) BV_PRINTF(3, 4);
/* Formats nothing below the threshold. */
#define log_at(lvl, id, ...)                                                                       \
	do {                                                                                       \
		if ((lvl) >= log_threshold)                                                        \
			log_write((lvl), (id), __VA_ARGS__);                                       \
	} while (0)
#define log_debug(...) log_at(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_at(LOG_ERROR, NULL, __VA_ARGS__)
/* With a request or job id: "req=<id>" / "job=<id>" is the caller's string. */
#define log_debug_id(id, ...) log_at(LOG_DEBUG, (id), __VA_ARGS__)
#define log_info_id(id, ...) log_at(LOG_INFO, (id), __VA_ARGS__)
#define log_warn_id(id, ...) log_at(LOG_WARN, (id), __VA_ARGS__)
#define log_error_id(id, ...) log_at(LOG_ERROR, (id), __VA_ARGS__)

/* Startup misconfiguration and broken invariants only: logs and exits(1). */
void fatal(const char *fmt, ...) BV_PRINTF(1, 2) __attribute__((noreturn));

#endif
