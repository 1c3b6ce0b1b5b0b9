/* Loopback setup inside the bottle: `lo` up and the alias address on it, without `ip`. */
#pragma once

#include <netinet/in.h>

/*
 * Brings `lo` up (SIOCSIFFLAGS) and adds alias/32 to it (rtnetlink RTM_NEWADDR; an address
 * that is already there is fine). Needs CAP_NET_ADMIN over the network namespace.
 * Returns 0 or a negative errno.
 */
int guest_net_setup(struct in_addr alias);
