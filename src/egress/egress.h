/*
 * The egress daemon: the proxy and the DNS filter of one bottle on one loop, with its audit
 * log and its policy. SIGHUP reloads the policy (through the caller's reload function) and
 * reopens the audit file; SIGTERM/SIGINT stop accepting, let live connections finish for up to
 * drain_timeout_ms, then exit.
 *
 * The control fd (--control-fd): one request per SOCK_SEQPACKET message, one reply each.
 *   "allow PATTERN"  add an allow pattern      "deny PATTERN"  remove one
 *   reply "ok N" (N allow patterns now) or "error WHY". An allow of a method/path rule whose
 *   host a TLS context of the daemon does not intercept yet intercepts it from then on; if that
 *   took a new CA, its certificate (PEM) follows "ok N\n" (docs/credentials.md).
 * A change builds a new policy from the one in force and swaps it in exactly like a SIGHUP
 * reload: connections read the policy at each decision, none is dropped. The changes are
 * kept and applied again on top of every SIGHUP reload, in order.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/net.h"
#include "config/config.h"
#include "policy/policy.h"
#include "proxy/proxy.h"

struct egress_options {
    struct net_addr listen; /* proxy address (unless no_listen) */
    /* No TCP listener: the proxy serves only connections handed over on handoff_fd and
     * relay_fd (a daemon holding credentials, docs/credentials.md). */
    bool no_listen;
    bool have_dns;
    struct net_addr dns; /* DNS filter address (UDP and TCP) */
    bool have_upstream_dns;
    struct net_addr upstream_dns; /* resolver for allowlisted names; else the host's */
    const char *audit_path;       /* NULL: none; "-": stdout */
    const char *bottle_name;      /* recorded in audit lines */
    bool policy_from_file;        /* config files were read: 403s name the config key too */
    uint64_t audit_max_size;      /* bytes per audit file before rotation (0: no cap) */
    struct proxy_limits limits;
    unsigned drain_timeout_ms;
    int ready_fd; /* >= 0: write "ready\n" there once listening, then close it */
    /* >= 0: a SOCK_SEQPACKET socket over which the bottle hands over proxy connections
     * (channel/handoff.h); owned by the daemon. -1: none. */
    int handoff_fd;
    /* >= 0: a SOCK_SEQPACKET socket to the supervisor over which it changes the policy at run
     * time (egress_control below); owned by the daemon. -1: none. */
    int control_fd;
    /* >= 0: a SOCK_SEQPACKET socket over which the supervisor's channel relay hands over proxy
     * streams as unix stream sockets (channel/handoff.h, handoff_recv_relay); owned. -1: none. */
    int relay_fd;
    /* >= 0: read the credentials (proxy/cred.h wire format) from this fd to its end at start,
     * then close it; owned. -1: none. */
    int credentials_fd;
    /* TLS interception (proxy/tls.h) of these "host[:port]" ("*.name" too, from a rule's
     * host) besides the credential hosts; extra_ca: also trusted for origins. With an
     * intercepted host, or with both ready_fd and control_fd (a bottle's daemon, which may
     * intercept a rule's host added at run time), "tls\n" and the CA certificates (PEM, none
     * while nothing is intercepted) follow "ready\n" on ready_fd. */
    const struct strv *inspect;
    const char *tls_extra_ca;
    /* Build a fresh policy (SIGHUP). Returns 0 and *ret, or -errno after logging why; the old
     * policy then stays in force. */
    int (*reload)(void *userdata, struct policy **ret);
    void *reload_userdata;
};

#define EGRESS_CONTROL_MAX 2048 /* bytes of one control request */
/* bytes of one reply: "ok N" may carry a new CA certificate (one name: well under 2 KiB) */
#define EGRESS_CONTROL_REPLY_MAX 8192

void egress_options_default(struct egress_options *ret);

/*
 * Run until SIGTERM/SIGINT. Takes ownership of policy. Returns 0 after a clean stop, or -errno
 * when it could not start (after logging which address failed and why).
 */
int egress_run(const struct egress_options *o, struct policy *policy);
