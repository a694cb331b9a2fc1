/* netguard.h: which network destinations a load may reach. A URL given by any user must not
 * make a worker talk to its own host or private networks (SSRF): loopback, unspecified,
 * link-local, private and shared (CGNAT) ranges, IPv6 unique-local, multicast, broadcast
 * and reserved addresses are refused, also inside IPv4-mapped, NAT64 and 6to4 forms.
 * Configuration key load_allow_private turns the check off (the caller decides). */
#ifndef BV_NETGUARD_H
#define BV_NETGUARD_H

#include <stdbool.h>
#include <sys/socket.h>

#include "shared/util.h"

/* The class of an address a load must not reach ("loopback (127.0.0.0/8)", "private
 * (10.0.0.0/8)", ...; a static string), or NULL when the address is public. Pure: no
 * network, no state. */
const char *netguard_class(const struct sockaddr *sa);

/* Resolves host (getaddrinfo, port a number or service name) and checks every address it
 * gives. 0 when all are public; -1 with *errstr (naming the host, the address and its
 * class, never more of the URL) otherwise, also when the name does not resolve. */
int netguard_check_host(const char *host, const char *port, char **errstr) BV_MUSTCHECK;

#endif
