/* netguard.c: the address classes a load must not reach, and the check of a host name's
 * addresses. The classification is a pure function of the address, so tests need no
 * network. The check resolves the name once; the connection (libgit2's) resolves it again,
 * which leaves a DNS-rebinding window (docs/worker.md, "Loading from git"). */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "shared/netguard.h"

/* One IPv4 range: address and prefix length, in host byte order. */
struct range4 {
	uint32_t net;
	int bits;
	const char *what;
};

/* Every IPv4 range refused, most specific first where they nest. */
static const struct range4 ranges4[] = {
    {0x00000000u, 8, "unspecified, 0.0.0.0/8"},
    {0x7f000000u, 8, "loopback, 127.0.0.0/8"},
    {0x0a000000u, 8, "private, 10.0.0.0/8"},
    {0xac100000u, 12, "private, 172.16.0.0/12"},
    {0xc0a80000u, 16, "private, 192.168.0.0/16"},
    {0x64400000u, 10, "shared address space, CGNAT, 100.64.0.0/10"},
    {0xa9fe0000u, 16, "link-local, 169.254.0.0/16"},
    {0xc0000000u, 24, "IETF protocol assignments, 192.0.0.0/24"},
    {0xc6120000u, 15, "benchmarking, 198.18.0.0/15"},
    {0xe0000000u, 4, "multicast, 224.0.0.0/4"},
    {0xffffffffu, 32, "broadcast, 255.255.255.255"},
    {0xf0000000u, 4, "reserved, 240.0.0.0/4"},
};

/* The class of an IPv4 address (host byte order), or NULL. */
static const char *
class4(uint32_t a)
{
	for (size_t i = 0; i < BV_NELEM(ranges4); i++) {
		uint32_t mask = ranges4[i].bits == 0 ? 0 : 0xffffffffu << (32 - ranges4[i].bits);
		if ((a & mask) == ranges4[i].net)
			return ranges4[i].what;
	}
	return NULL;
}

/* Four bytes as an IPv4 address in host byte order. */
static uint32_t
v4_at(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The class of an IPv6 address, or NULL. Forms that carry an IPv4 address (mapped,
 * compatible, NAT64, 6to4) have that address's class: the packets may end up there (the
 * error message shows the IPv6 form). */
static const char *
class6(const unsigned char a[16])
{
	static const unsigned char zero[12] = {0};
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};

	if (memcmp(a, zero, 12) == 0) {
		if (v4_at(a + 12) == 0)
			return "unspecified, ::";
		if (v4_at(a + 12) == 1)
			return "loopback, ::1";
		/* ::a.b.c.d, the deprecated IPv4-compatible form */
		return class4(v4_at(a + 12));
	}
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return class4(v4_at(a + 12));
	if (a[0] == 0x20 && a[1] == 0x02)
		return class4(v4_at(a + 2));
	if ((a[0] & 0xfe) == 0xfc)
		return "unique local, fc00::/7";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return "link-local, fe80::/10";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return "site-local, fec0::/10";
	if (a[0] == 0xff)
		return "multicast, ff00::/8";
	return NULL;
}

const char *
netguard_class(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		return class4(ntohl(s4->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		return class6(s6->sin6_addr.s6_addr);
	}
	return "not an internet address";
}

int
netguard_check_host(const char *host, const char *port, char **errstr)
{
	struct addrinfo hints, *res = NULL;
	char text[INET6_ADDRSTRLEN];
	int rc;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		*errstr = xasprintf("cannot resolve host %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		const char *what = netguard_class(ai->ai_addr);
		const void *addr;

		if (what == NULL)
			continue;
		if (ai->ai_family == AF_INET)
			addr = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
		else if (ai->ai_family == AF_INET6)
			addr = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
		else
			addr = NULL;
		if (addr == NULL || inet_ntop(ai->ai_family, addr, text, sizeof text) == NULL)
			strcpy(text, "?");
		*errstr =
		    xasprintf("host %s resolves to %s, a non-public address (%s): loads may not "
			      "reach it unless configuration key load_allow_private is on",
			host, text, what);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return 0;
}
