/*
 * The bottle's egress daemon as a child of the supervisor (docs/supervisor.md, step 3): a
 * fork + exec of `bot-bottle egress` with an empty environment and an explicit fd contract,
 * started before the bottle and stopped after it.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "common/buf.h"
#include "config/config.h"

/* The host-side DNS port of the daemon. Inside the bottle the relay always listens on A:53
 * (the bottle owns its network namespace); on the host, ports below 1024 need privilege, so
 * an unprivileged supervisor's daemon listens on A:5353 instead. The alias is this bottle's
 * alone, so the port cannot collide with another bottle. */
#define HOST_DNS_PORT_ROOT 53
#define HOST_DNS_PORT_USER 5353

struct daemon_config {
    const char *alias;        /* the bottle's address, text */
    int proxy_port;           /* on the alias */
    const char *name;         /* the bottle's name (audit records) */
    const char *audit;        /* the audit log (created by the caller) */
    const struct strv *extra; /* the policy as `egress` arguments */
    int devnull;              /* an open /dev/null, or -1 */
    bool handoff;             /* also create the connection hand-off socket */
    /* Credentials (proxy/cred.h wire format), or NULL. With them the daemon gets them over a
     * pipe (fd 7), listens on no TCP port (--no-listen) and takes the channel's proxy streams
     * over the relay socket (fd 8): docs/credentials.md. */
    const char *creds;
    size_t creds_len;
};

struct egress_daemon {
    pid_t pid;   /* 0: not running */
    int pidfd;   /* -1: none; watch it for the daemon's death */
    int handoff; /* the bottle's end of the hand-off socket (channel/handoff.h), or -1 */
    int control; /* our end of the daemon's control socket (egress/egress.h), or -1 */
    int relay;   /* our end of the relay socket (creds only; channel/handoff.h), or -1 */
    /* The CA certificate (PEM) the daemon intercepts TLS with, for the bottle's trust; NULL:
     * no interception (proxy/tls.h). */
    char *ca_pem;
    size_t ca_pem_len;
    /* The daemon has a TLS context: it can intercept hosts added at run time (their CAs come
     * with daemon_policy_change's answer), so the bottle gets a CA bundle even while ca_pem is
     * NULL. */
    bool tls;
    bool term_sent; /* daemon_request_stop sent SIGTERM (a second one would skip the drain) */
};

/* The DNS port the daemon listens on, on the host. */
int daemon_host_dns_port(void);

/*
 * Start the daemon and wait (up to 10 s) until it reports ready. Returns 0 and fills *d, or
 * -errno after logging why (the daemon is then stopped again).
 */
int daemon_start(const struct daemon_config *c, struct egress_daemon *d);
/*
 * Change the running daemon's policy: verb "allow" or "deny" (remove an allow pattern) and a
 * pattern (policy.h grammar). Waits up to 2 s for the daemon's answer (the loop is blocked that
 * long at most; the daemon answers at once). Returns 0; -EINVAL with the daemon's reason in
 * reterr; -ETIMEDOUT, -ENOTCONN or -errno. A new CA certificate (PEM) the daemon made for the
 * change (a rule's host intercepted from now on) is appended to ret_ca (may be NULL).
 */
int daemon_policy_change(struct egress_daemon *d, const char *verb, const char *pattern,
                         char *reterr, size_t errsize, struct buf *ret_ca);
/* SIGTERM, SIGKILL after 3 s, reap; close what d holds. Accepts a never-started one. */
void daemon_stop(struct egress_daemon *d);
/* Only the SIGTERM of daemon_stop, without waiting: the daemon drains and writes its last
 * audit records while the caller cleans up other things; daemon_stop then waits (the 3 s
 * grace counting from its own call) and does not signal again. */
void daemon_request_stop(struct egress_daemon *d);
