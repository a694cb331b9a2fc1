/* loadpoll.c: the HTTP client of bench/load's throughput phase. Keeps CONNS keep-alive
 * connections to one address busy with the same GET for SECONDS seconds (one request in
 * flight per connection, one thread, epoll) and prints one JSON line: requests answered,
 * non-2xx answers, connection errors, reconnects, requests/s, latency p50/p99/max and the
 * client's own CPU time. Small on purpose, so that the client costs the machine less than
 * the servers it measures; the same binary drives bitsvault and nginx, so their ratio is
 * fair. Build: cc -O2 -o loadpoll bench/loadpoll.c
 * Usage: loadpoll HOST PORT PATH CONNS SECONDS [WARMUP_SECONDS] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ 65536
#define MAXLAT 4000000 /* latency samples kept (one per request, 4 bytes each) */

struct conn {
	int fd;
	size_t have; /* bytes in buf */
	uint64_t sent; /* when the request went out (ns) */
	char buf[BUFSZ];
};

static struct sockaddr_in addr;
static char req[1024];
static size_t reqlen;
static int ep;
static uint64_t n_ok, n_bad, n_err, n_reconnect, n_lat;
static uint32_t *lat_us;
static int measuring;

/* Monotonic nanoseconds. */
static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sends the request on c (whole: it is far below a socket buffer). */
static int
send_req(struct conn *c)
{
	ssize_t n = send(c->fd, req, reqlen, MSG_NOSIGNAL);

	c->sent = now_ns();
	return n == (ssize_t)reqlen ? 0 : -1;
}

/* (Re)opens c's connection, blocking connect on loopback, then sends a request. */
static int
open_conn(struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int one = 1;

	c->have = 0;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		return -1;
	return send_req(c);
}

/* Closes c and opens it again (counted); on failure keeps trying on the next loop. */
static void
reopen(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (measuring)
		n_reconnect++;
	if (open_conn(c) != 0 && measuring)
		n_err++;
}

/* Parses one whole answer at the front of c->buf if there is one: returns its length,
 * 0 if more bytes are needed, -1 if it is malformed. Sets *status and *close_after. */
static long
parse_answer(struct conn *c, int *status, int *close_after)
{
	char *end, *p, *line;
	long clen = -1;
	size_t head;

	c->buf[c->have] = '\0';
	end = memmem(c->buf, c->have, "\r\n\r\n", 4);
	if (!end)
		return c->have >= BUFSZ - 1 ? -1 : 0;
	head = (size_t)(end - c->buf) + 4;
	if (strncmp(c->buf, "HTTP/1.", 7) != 0)
		return -1;
	*status = atoi(c->buf + 9);
	*close_after = strncmp(c->buf, "HTTP/1.0", 8) == 0;
	for (line = strstr(c->buf, "\r\n") + 2; line < end; line = p + 2) {
		p = strstr(line, "\r\n");
		if (strncasecmp(line, "content-length:", 15) == 0)
			clen = strtol(line + 15, NULL, 10);
		else if (strncasecmp(line, "connection:", 11) == 0)
			*close_after =
			    strcasestr(line, "close") != NULL && strcasestr(line, "close") < p;
		else if (strncasecmp(line, "transfer-encoding:", 18) == 0)
			return -1; /* not needed by the peers measured: a small fixed body */
	}
	if (clen < 0)
		return -1;
	if (head + (size_t)clen > BUFSZ - 1)
		return -1;
	if (c->have < head + (size_t)clen)
		return 0;
	return (long)(head + (size_t)clen);
}

/* Sorts latencies for percentiles. */
static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* CPU seconds (user + system) this process used. */
static double
cpu_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	    ru.ru_stime.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[256];
	struct conn *conns;
	int nconn, secs, warm, i, n;
	uint64_t t_start, t_end, t0;
	double cpu0, cpu1;

	if (argc < 6) {
		fprintf(
		    stderr, "usage: %s HOST PORT PATH CONNS SECONDS [WARMUP_SECONDS]\n", argv[0]);
		return 2;
	}
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "loadpoll: HOST must be an IPv4 address\n");
		return 2;
	}
	reqlen = (size_t)snprintf(req, sizeof req,
	    "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: bitsvault-loadpoll\r\nAccept: */*\r\n\r\n",
	    argv[3], argv[1], argv[2]);
	nconn = atoi(argv[4]);
	secs = atoi(argv[5]);
	warm = argc > 6 ? atoi(argv[6]) : 1;
	if (nconn < 1 || secs < 1 || reqlen >= sizeof req) {
		fprintf(stderr, "loadpoll: bad arguments\n");
		return 2;
	}
	lat_us = malloc(sizeof *lat_us * MAXLAT);
	conns = calloc((size_t)nconn, sizeof *conns);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!lat_us || !conns || ep < 0)
		return 1;
	for (i = 0; i < nconn; i++) {
		conns[i].fd = -1;
		if (open_conn(&conns[i]) != 0) {
			fprintf(stderr, "loadpoll: cannot connect to %s:%s: %s\n", argv[1], argv[2],
			    strerror(errno));
			return 1;
		}
	}

	t0 = now_ns();
	t_start = t0 + (uint64_t)warm * 1000000000u;
	t_end = t_start + (uint64_t)secs * 1000000000u;
	cpu0 = cpu_secs();
	for (;;) {
		uint64_t t = now_ns();

		if (!measuring && t >= t_start) {
			measuring = 1;
			cpu0 = cpu_secs();
		}
		if (t >= t_end)
			break;
		n = epoll_wait(ep, evs, 256, 100);
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			ssize_t got = recv(c->fd, c->buf + c->have, BUFSZ - 1 - c->have, 0);
			int status = 0, close_after = 0;
			long len;

			if (got <= 0) {
				if (got < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (measuring)
					n_err++; /* the server closed with a request in flight */
				reopen(c);
				continue;
			}
			c->have += (size_t)got;
			len = parse_answer(c, &status, &close_after);
			if (len == 0)
				continue;
			if (len < 0) {
				if (measuring)
					n_err++;
				reopen(c);
				continue;
			}
			if (measuring) {
				uint64_t us = (now_ns() - c->sent) / 1000;

				if (status >= 200 && status < 300)
					n_ok++;
				else
					n_bad++;
				if (n_lat < MAXLAT)
					lat_us[n_lat++] =
					    us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
			}
			/* One request in flight: nothing can follow the answer. */
			c->have = 0;
			if (close_after)
				reopen(c);
			else if (send_req(c) != 0) {
				if (measuring)
					n_err++;
				reopen(c);
			}
		}
	}
	cpu1 = cpu_secs();
	qsort(lat_us, n_lat, sizeof *lat_us, cmp_u32);
	printf("{\"conns\":%d,\"seconds\":%d,\"ok\":%llu,\"non2xx\":%llu,\"errors\":%llu,"
	       "\"reconnects\":%llu,\"rps\":%.1f,\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u,"
	       "\"client_cpu_s\":%.2f}\n",
	    nconn, secs, (unsigned long long)n_ok, (unsigned long long)n_bad,
	    (unsigned long long)n_err, (unsigned long long)n_reconnect,
	    (double)(n_ok + n_bad) / secs, n_lat ? lat_us[n_lat / 2] : 0,
	    n_lat ? lat_us[(size_t)((double)n_lat * 0.99)] : 0, n_lat ? lat_us[n_lat - 1] : 0,
	    cpu1 - cpu0);
	return 0;
}
