/*
 * Asynchronous upstream name resolution with c-ares, driven by our loop (its sockets are
 * registered through the socket-state callback, its timeouts through a loop timer).
 */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

#include "common/limits.h"
#include "common/loop.h"
#include "common/net.h"

struct resolver;
struct resolve_req;

/* status: 0 with n >= 1 addresses (AF_INET/AF_INET6, port 0), or -ENOENT (no such name /
 * no address), -ETIMEDOUT, -EIO (resolver failure). addrs are only valid during the call. */
typedef void (*resolve_fn)(void *userdata, int status, const struct sockaddr_storage *addrs,
                           size_t n);

/*
 * upstream: the DNS server to ask (NULL: the host's resolver configuration, /etc/resolv.conf
 * and /etc/hosts). Returns 0 and *ret or -errno.
 */
int resolver_new(struct loop *l, const struct net_addr *upstream, struct resolver **ret);
struct resolver *resolver_free(struct resolver *r);

/*
 * A resolver whose answers come from fn instead of DNS (tests: the proxy's resolve -> vet ->
 * connect path without a DNS server). fn(userdata, name, addrs, max) fills up to max addresses
 * (AF_INET/AF_INET6, port 0) and returns how many (>= 1), or -ENOENT, -ETIMEDOUT or -EIO. It runs
 * once per lookup; the result is delivered from deferred work, as a real one is.
 */
typedef int (*resolver_answer_fn)(void *userdata, const char *name, struct sockaddr_storage *addrs,
                                  size_t max);
int resolver_new_answering(struct loop *l, resolver_answer_fn fn, void *userdata,
                           struct resolver **ret);

/*
 * Start a lookup of name (NUL-terminated, already normalised). fn is called exactly once,
 * later (never from inside this call), unless the request is cancelled first. Returns the
 * request handle (owned by the resolver).
 */
struct resolve_req *resolver_lookup(struct resolver *r, const char *name, resolve_fn fn,
                                    void *userdata);
/* The callback will not be called. Safe only before the callback ran. */
void resolve_req_cancel(struct resolve_req *q);
