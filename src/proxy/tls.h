/*
 * TLS interception (docs/credentials.md, "TLS interception"), OpenSSL 3.
 *
 * Only hosts that need it are intercepted: credential hosts, `[egress] inspect` hosts, and
 * whatever else calls tls_intercept_add() (tls_intercepts() is the one "needs interception"
 * predicate the proxy asks). Every other CONNECT stays a plain spliced tunnel.
 *
 * A per-daemon CA (EC P-256) is generated at start; its key never leaves the daemon's memory.
 * Its certificate carries a critical NameConstraints extension that permits exactly the
 * intercepted host names (DNS subtrees: a name and the names below it; "*.name" as ".name", the
 * names below only) and no IP address, so even a stolen key could not sign for anything else.
 * A host added at run time (tls_intercept_extend) gets a CA of its own, constrained to it
 * alone: no CA's constraint ever widens. Leaf certificates (one shared P-256 key)
 * are made on first use per host and cached. Upstream TLS is verified against the host's CA
 * bundle plus an optional extra CA file, with the host name checked; ALPN offers and accepts
 * only http/1.1 (the proxy speaks HTTP/1.x).
 *
 * The TLS transport (transport_tls) sits behind struct transport_ops: handshakes and I/O are
 * non-blocking on the daemon's one loop; a side that must write to read (or the reverse) says
 * so in side->want.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"

struct tls_ctx;
struct side;

#define TLS_MAX_HOSTS 256
#define TLS_MAX_CAS 64 /* the one made at start and those made for hosts added at run time */

/* An empty context: no host intercepted yet, no CA. */
struct tls_ctx *tls_ctx_new(void);
struct tls_ctx *tls_ctx_free(struct tls_ctx *t);
/* Intercept host on port: a normalised host name, or "*.name" for every name below name (not
 * name itself, as in the policy's patterns). Only before tls_ctx_start(). Returns 0, -EINVAL
 * (not a host name) or -E2BIG. */
int tls_intercept_add(struct tls_ctx *t, const char *host, uint16_t port);
/*
 * After tls_ctx_start(): intercept host (as for tls_intercept_add) on port from now on. A host
 * no CA covers yet gets a new CA constrained to exactly it, whose certificate (PEM) is appended
 * to out for the bottle's trust; the CAs already made are left as they are. Returns 1 (a new
 * CA in out), 0 (intercepted already, or now on one more port of a name a CA covers: nothing
 * for the bottle), -EINVAL, -E2BIG (TLS_MAX_HOSTS or TLS_MAX_CAS reached) or -ENOMEM.
 */
int tls_intercept_extend(struct tls_ctx *t, const char *host, uint16_t port, struct buf *out);
/* Undo the tls_intercept_extend() calls made since tls_intercept_mark() (a change that could
 * not be audited is not made; its CA never reached the bottle). */
struct tls_mark {
    size_t hosts, cas;
};
struct tls_mark tls_intercept_mark(const struct tls_ctx *t);
void tls_intercept_rollback(struct tls_ctx *t, struct tls_mark m);
size_t tls_intercept_count(const struct tls_ctx *t);
/* The one "needs interception" predicate: host (a name, or "*.name": every name below it) on
 * port is intercepted. */
bool tls_intercepts(const struct tls_ctx *t, const char *host, uint16_t port);
/*
 * Generate the CA (constrained to the hosts added; none when no host was added), set up the server
 * and client contexts: upstream trust from ca_bundle (NULL: /etc/ssl/certs/ca-certificates.crt,
 * else OpenSSL's default paths) plus extra_ca (NULL: none). name goes in the CA's subject. Returns
 * 0 or -errno with *reterr (static text).
 */
int tls_ctx_start(struct tls_ctx *t, const char *name, const char *ca_bundle, const char *extra_ca,
                  const char **reterr);
/* The leaf certificate (PEM) the proxy presents for host, appended to out (made and cached on
 * first use; tests check what the CA can and cannot sign). Returns 0 or -errno. */
int tls_leaf_pem(struct tls_ctx *t, const char *host, struct buf *out);
/* Tests: a leaf for host signed by CA number ca (0: the first), whether or not that CA's
 * constraint covers host. Returns 0 or -errno. */
int tls_leaf_pem_by(struct tls_ctx *t, size_t ca, const char *host, struct buf *out);
/* The CA certificates (PEM, oldest first) for the bottle's trust, appended to out. Returns 0,
 * -ENOENT (no CA: nothing intercepted yet) or -E2BIG. */
int tls_ca_pem(const struct tls_ctx *t, struct buf *out);
size_t tls_ca_count(const struct tls_ctx *t);
bool tls_ctx_started(const struct tls_ctx *t);

/*
 * Put TLS on side s (its fd a connected TCP socket): as the server for the bottle, with the
 * leaf certificate for host; or as the client toward the origin host (SNI, verification).
 * The side's transport becomes transport_tls. Returns 0 or -errno.
 */
int tls_side_server(struct tls_ctx *t, struct side *s, const char *host);
int tls_side_client(struct tls_ctx *t, struct side *s, const char *host);
/* Drive the handshake: 1 done, 0 would block (s->want says which readiness), < 0 failed
 * (*reterr: a short reason, e.g. the verification error). */
int tls_side_handshake(struct side *s, const char **reterr);
/* An idle TLS side still usable (reads what the peer sent meanwhile, e.g. session tickets). */
bool tls_side_idle_alive(struct side *s);
