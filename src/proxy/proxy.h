/*
 * The forward proxy: one listening socket on the bottle's alias, every connection a small state
 * machine driven by the loop (docs/proxy.md).
 *
 *   CS_READ_HEAD -> CS_RESOLVE -> CS_CONNECT -> CS_SEND_REQ -> CS_READ_RESP -> CS_SEND_RESP
 *        ^                                                                         |
 *        +---------------------------- keep-alive ---------------------------------+
 *   CONNECT:  ... CS_CONNECT -> CS_TUNNEL (splice(2) both ways)
 *   refusals and errors: CS_DRAIN (write the response, half-close, discard, close)
 */
#pragma once

#include <stdint.h>

#include "common/loop.h"
#include "common/net.h"
#include "audit/audit.h"
#include "policy/policy.h"
#include "proxy/pool.h"
#include "proxy/resolve.h"

struct proxy;

struct proxy_limits {
    unsigned max_conns;
    unsigned head_timeout_ms;    /* a complete request head must arrive within this */
    unsigned idle_timeout_ms;    /* no byte either way for this long closes the connection */
    unsigned connect_timeout_ms; /* upstream TCP connect (all addresses together) */
    unsigned resolve_timeout_ms;
    unsigned run_budget; /* state-machine steps per connection before others get a turn */
    /* > 0: a request or CONNECT refused only because its host (or port) is not allowlisted is
     * held this long (audited as "hold"); a policy change that allows it lets it through,
     * else it gets the usual 403 when the time is up. 0: refused at once (the default). */
    unsigned hold_blocked_ms;
    /* Idle upstream connections kept for reuse (pool.h, docs/proxy.md); max_total 0: none. */
    struct upool_limits pool;
};

struct proxy_stats {
    uint64_t accepted, refused_busy, requests, allowed, denied, bad_requests, upstream_errors;
    uint64_t held; /* requests held (hold_blocked_ms), whatever became of them */
    uint64_t open_conns;
    uint64_t upstream_reused;  /* exchanges and CONNECTs that rode an idle upstream connection */
    uint64_t upstream_retried; /* requests sent again on a fresh connection (pool.h) */
};

/* The defaults from common/limits.h. */
void proxy_limits_default(struct proxy_limits *ret);

struct cred_store;

/*
 * Listen on `listen` and serve (listen NULL: no listener; connections come only through
 * proxy_adopt()). The proxy does not own loop, resolver or audit. The policy must
 * be set with proxy_set_policy() before the first request arrives (until then, everything is
 * denied). Returns 0 and *ret, or -errno (e.g. -EADDRINUSE, -EADDRNOTAVAIL).
 */
int proxy_new(struct loop *l, const struct net_addr *listen, const struct proxy_limits *limits,
              struct resolver *res, struct audit *audit, struct proxy **ret);
/* The policy in force; not owned. Connections read it at each decision, so a reload applies to
 * the next decision and live connections are not dropped. */
void proxy_set_policy(struct proxy *px, const struct policy *p);
/* The credentials to put into requests (docs/credentials.md); not owned. NULL: none. */
void proxy_set_creds(struct proxy *px, const struct cred_store *creds);
/* TLS interception (tls.h); not owned. NULL: every CONNECT is a plain tunnel. */
struct tls_ctx;
void proxy_set_tls(struct proxy *px, struct tls_ctx *tls);
/*
 * Added: register a credential's real value and the host (normalised name) and port (0: any) it
 * belongs to, for the DLP check "credential sent elsewhere" (dlp/dlp.h, docs/dlp.md): the value
 * and its encodings are then refused (403 dlp:credential) in URLs, heads and bodies going to
 * any other host. The value is copied (and wiped when the proxy is freed). Returns 0, -EINVAL
 * (shorter than DLP_SECRET_MIN bytes) or -ENOSPC.
 * Whether a host needs interception because of method/path rules: policy_host_has_rules().
 */
int proxy_add_secret(struct proxy *px, const char *host, uint16_t port, const void *value,
                     size_t len);
/* Say that the policy was read (partly) from config files: a 403's text then names the config
 * key (`allow = HOST` under [egress]) next to the option. The file's path is not named: the
 * text reaches the bottle, which has no business learning host paths. */
void proxy_set_policy_from_file(struct proxy *px, bool from_file);
/* Stop accepting; fn(userdata) runs (from the loop) once no connection is left. */
void proxy_drain(struct proxy *px, void (*fn)(void *), void *userdata);
void proxy_get_stats(const struct proxy *px, struct proxy_stats *ret);
/*
 * Serve a client connection accepted elsewhere (the namespace backend hands over connections
 * the bottle made to A:3128; the supervisor hands over channel streams as unix stream sockets).
 * Takes ownership of fd, a connected stream socket; the caller has checked that it is one. Returns
 * 0 (also when it was refused with 503) or -errno.
 */
int proxy_adopt(struct proxy *px, int fd);
/* The address the proxy listens on (useful with port 0). Returns 0 or -errno. */
int proxy_local_addr(const struct proxy *px, struct net_addr *ret);
/* Closes every connection. */
struct proxy *proxy_free(struct proxy *px);
