/*
 * The upstream connection pool (docs/proxy.md, "Upstream connection pool"): idle upstream
 * connections a client connection left behind, kept per daemon for the next client connection
 * to the same place, so that a new client connection (a new CONNECT to an intercepted host, a
 * new plain-HTTP client) does not pay a new TCP connect and a new verified TLS handshake.
 *
 * An entry is keyed by everything that decided what the connection is: the host name it was
 * opened (and, for TLS, verified and sent as SNI) for, the port, the vetted address it is
 * connected to, and whether it speaks TLS (the daemon has one client TLS context, so one set of
 * verification settings). A take must match all four; a name never gets another name's
 * connection, even on the same address.
 *
 * Bounded: at most max_per_host idle entries per (host, port, tls) and max_total in all (the
 * oldest goes first). Every idle entry is watched in the daemon's loop: the origin closing it,
 * an error, or any byte it sends unasked (TLS: anything but a post-handshake message such as a
 * session ticket) discards it at once; an entry idle for idle_ms is closed.
 *
 * What may be put back is the caller's call (conn.c): only a connection whose last response
 * was completely delimited, with nothing unsent or unread and no "Connection: close".
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct side;
struct upool;

#define UPOOL_MAX_TOTAL 64   /* idle upstream connections per daemon */
#define UPOOL_MAX_PER_HOST 8 /* per (host, port, tls) */
#define UPOOL_IDLE_MS 30000  /* below common origin keep-alive timeouts (nginx 75 s) */

struct upool_limits {
    unsigned max_total;    /* 0: no pool (every connection is closed after use) */
    unsigned max_per_host; /* per (host, port, tls) */
    unsigned idle_ms;      /* an idle entry is closed after this long */
};

struct upool_stats {
    uint64_t puts, hits, misses, discarded; /* discarded: closed while idle (EOF, bytes, timer) */
    unsigned idle;                          /* entries now */
};

struct upool *upool_new(struct loop *l, const struct upool_limits *lim);
/* Closes every idle entry. */
struct upool *upool_free(struct upool *p);
/* Close every idle entry (a drain). */
void upool_flush(struct upool *p);

/*
 * Keep the connected side s (its fd still registered with the loop by the caller: unregister
 * it first) as idle for (host, port, addr, tls). Takes s's fd and transport state in every case
 * (closed when not kept: pool off or full of newer ones, or s is not alive) and leaves s empty
 * (fd -1). Returns true when kept.
 */
bool upool_put(struct upool *p, struct side *s, const char *host, uint16_t port,
               const struct sockaddr_storage *addr, bool tls);
/*
 * An idle connection for host:port (tls or not) connected to one of the naddrs vetted
 * addresses, still alive, the most recently used first. On a hit, s gets its fd and transport
 * (not registered with the loop), *ret_addr the address, and it returns true.
 */
bool upool_take(struct upool *p, const char *host, uint16_t port,
                const struct sockaddr_storage *addrs, size_t naddrs, bool tls, struct side *s,
                struct sockaddr_storage *ret_addr);
void upool_get_stats(const struct upool *p, struct upool_stats *ret);

/* An idle connected side still usable: no end of stream, no error, no byte nobody asked for
 * (TLS: post-handshake messages such as session tickets are read and are fine). */
bool upool_side_alive(struct side *s);
