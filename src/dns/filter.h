/*
 * The DNS filter of the egress daemon (DESIGN.md S3): a DNS server on UDP and TCP on one
 * address, driven by the daemon's loop. Names the policy does not allowlist get NXDOMAIN
 * locally and are never forwarded; allowlisted queries go to one upstream resolver with a
 * fresh random ID and source port, and the answer is checked and SSRF-filtered before it is
 * relayed and cached. See docs/dns.md.
 */
#pragma once

#include <stdint.h>

#include "common/loop.h"
#include "common/net.h"
#include "audit/audit.h"
#include "policy/policy.h"

struct dns_filter;

/*
 * listen: UDP and TCP on the same address. upstream: where allowlisted queries go; NULL means
 * the first nameserver in /etc/resolv.conf (if none: SERVFAIL for allowlisted names, with a
 * warning). The filter does not own loop, audit (audit may be NULL). Until
 * dns_filter_set_policy() is called every name is denied. Returns 0 or -errno (e.g.
 * -EADDRINUSE).
 */
int dns_filter_new(struct loop *l, const struct net_addr *listen, const struct net_addr *upstream,
                   struct audit *audit, struct dns_filter **ret);
/* The policy in force (not owned; the daemon swaps it on reload, the old one stays valid until
 * this returns). NULL denies everything. Cached answers are dropped on a change. */
void dns_filter_set_policy(struct dns_filter *f, const struct policy *p);
/* Closes every socket, cancels outstanding upstream queries, frees f. Accepts NULL; returns
 * NULL. Must not be called from inside one of the filter's own callbacks. */
struct dns_filter *dns_filter_free(struct dns_filter *f);
/* Counters for tests/bench: queries, denied, forwarded, cache hits, malformed, dropped. */
struct dns_filter_stats {
    uint64_t queries, denied, forwarded, cache_hits, malformed, dropped, upstream_timeouts;
};
void dns_filter_get_stats(const struct dns_filter *f, struct dns_filter_stats *ret);

/* The address actually bound (the port the kernel chose when listen had port 0). */
void dns_filter_get_listen(const struct dns_filter *f, struct net_addr *ret);
/* The first usable "nameserver" of a resolv.conf file (port 53; scoped IPv6 skipped).
 * Returns 0, -ENOENT when there is none, or -errno from reading the file. */
int dns_resolv_conf_upstream(const char *path, struct net_addr *ret);
