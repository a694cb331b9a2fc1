/* log.c: one line per event on stderr: time, level, process, optional id, message.
 * Lines are written with a single write(2) so concurrent threads do not interleave. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "shared/log.h"

enum log_level log_threshold = LOG_INFO;
static char log_progname[32] = "bitsvault";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The "2024-05-01T12:00:00" part of lines, made once a second per thread (a request's
 * line is on the API's hot path), and the process id with it. */
static __thread time_t cached_sec = -1;
static __thread char cached_stamp[32];
static __thread size_t cached_len;
static __thread int cached_pid;

/* In a forked child: its own pid on its next line. */
static void
log_atfork_child(void)
{
	cached_sec = -1;
}

/* Sets the name and the threshold. */
void
log_init(const char *progname, enum log_level level)
{
	static bool registered;

	snprintf(log_progname, sizeof log_progname, "%s", progname);
	log_threshold = level;
	if (!registered) {
		registered = true;
		pthread_atfork(NULL, NULL, log_atfork_child);
	}
}

/* Level by name. */
int
log_level_parse(const char *s)
{
	for (size_t i = 0; i < BV_NELEM(level_names); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	return -1;
}

/* Formats and writes one line. */
static void
log_vwrite(enum log_level level, const char *id, const char *fmt, va_list ap)
{
	char line[4096];
	struct timeval tv;
	size_t n;
	int r;

	gettimeofday(&tv, NULL);
	if (tv.tv_sec != cached_sec) {
		struct tm tm;

		gmtime_r(&tv.tv_sec, &tm);
		cached_len = strftime(cached_stamp, sizeof cached_stamp, "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = tv.tv_sec;
		cached_pid = (int)getpid();
	}
	memcpy(line, cached_stamp, cached_len);
	n = cached_len;
	r = snprintf(line + n, sizeof line - n, ".%03dZ %s %s[%d]%s%s ", (int)(tv.tv_usec / 1000),
	    level_names[level], log_progname, cached_pid, id ? " " : "", id ? id : "");
	if (r > 0)
		n += (size_t)r < sizeof line - n ? (size_t)r : sizeof line - n - 1;
	r = vsnprintf(line + n, sizeof line - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof line - n ? (size_t)r : sizeof line - n - 1;
	/* One event, one line: control characters from user input are flattened. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' ';
	line[n++] = '\n';
	ssize_t w = write(2, line, n);
	(void)w;
}

/* Writes a line at level with an optional id. */
void
log_write(enum log_level level, const char *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, id, fmt, ap);
	va_end(ap);
}

/* Startup failures and broken invariants. */
void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/* libevent's messages at our levels. */
static void
libevent_cb(int severity, const char *msg)
{
	enum log_level level = severity == EVENT_LOG_DEBUG ? LOG_DEBUG
	    : severity == EVENT_LOG_MSG                    ? LOG_INFO
	    : severity == EVENT_LOG_WARN                   ? LOG_WARN
							   : LOG_ERROR;
	log_at(level, NULL, "libevent: %s", msg);
}

/* Routes libevent's own messages here. */
void
log_route_libevent(void)
{
	event_set_log_callback(libevent_cb);
}
