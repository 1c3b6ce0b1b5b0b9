/*
 * Internals of the DNS filter, shared by its four files and by nothing else (callers use
 * filter.h):
 *
 *   filter.c    the decision (parse, name -> text, policy), the UDP server, replies to UDP
 *               clients, per-client accounting, audit, setup and teardown
 *   cache.c     the answer cache (hash + LRU, bounded in entries and bytes)
 *   upstream.c  forwarding: the pool of upstream UDP sockets, (socket, ID) matching, answer
 *               checking and SSRF filtering, the TCP fallback towards the upstream
 *   tcp.c       TCP clients: RFC 7766 length-prefixed framing, pipelining, back-pressure
 *
 * Everything runs on the daemon's loop; there are no locks. Objects closed from inside a
 * callback (struct dns_tcp, struct dns_up, struct dns_usock) are freed from loop_defer work
 * after the dispatch pass. See docs/dns.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/limits.h"
#include "common/loop.h"
#include "dns/filter.h"
#include "dns/wire.h"

/* Tuning (the caps a peer can push against are in common/limits.h). */
#define DNS_UDP_BATCH 32         /* datagrams per recvmmsg()/sendmmsg() */
#define DNS_CLIENT_PROBE 8       /* slots probed for a client address */
#define DNS_CACHE_BUCKETS 4096   /* power of two */
#define DNS_UP_POOL 32           /* connected upstream UDP sockets, each on a random port */
#define DNS_UP_SOCK_USES 64      /* queries sent from one socket before its port is replaced */
#define DNS_UP_SOCK_AGE_MS 10000 /* ... or once it is this old */
#define DNS_UP_BATCH 8           /* upstream answers per recvmmsg() */
#define DNS_UP_BUCKETS 2048      /* (socket, ID) -> query table; power of two */
#define NS_PER_SEC 1000000000ull

/* A query as it may be held: the client's header + question (no OPT). */
#define DNS_QUESTION_MAX (DNS_HEADER_LEN + DNS_MAX_NAME + 4)

/* ---- clients: per source address (port ignored) ---- */

struct dns_client {
    bool used;
    uint8_t family;
    uint8_t addr[16];
    unsigned outstanding;
    uint64_t last_used;
    uint32_t agg_dropped; /* flood-dropped queries not yet audited */
};

/* ---- cache (cache.c) ---- */

struct dns_cache_entry {
    struct dns_cache_entry *hnext;
    struct dns_cache_entry *lru_prev, *lru_next; /* head = most recently used */
    uint32_t hash;
    uint8_t key_flags;
    uint64_t stored_at, expires;
    size_t len, n_ttl, bytes;
    uint8_t *msg; /* stored answer (same allocation, after ttl_off): question = the
                   * lower-cased name as sent upstream */
    uint16_t ttl_off[];
};

struct dns_cache {
    struct dns_cache_entry *buckets[DNS_CACHE_BUCKETS];
    struct dns_cache_entry *lru_head, *lru_tail;
    size_t n, bytes;
};

/* The live entry for query (header + question q) at time now (ns), moved to the front of the
 * LRU; NULL when there is none (an expired one is dropped). The entry stays owned by c and
 * valid until the next call that changes c. */
struct dns_cache_entry *dns_cache_find(struct dns_cache *c, uint64_t now, const uint8_t *query,
                                       const struct dns_query_info *q);
/* Store the answer msg (as dns_resp_filter() wrote it, TTL offsets in info) to query for ttl
 * seconds, replacing an entry with the same key and evicting from the LRU tail to stay within
 * DNS_CACHE_MAX_ENTRIES / DNS_CACHE_MAX_BYTES. ttl 0 or an entry over
 * DNS_CACHE_MAX_ENTRY_BYTES: not stored. Copies msg. */
void dns_cache_store(struct dns_cache *c, uint64_t now, const uint8_t *query,
                     const struct dns_query_info *q, const uint8_t *msg, size_t len,
                     const struct dns_resp_info *info, uint32_t ttl);
/* Drop every entry. */
void dns_cache_clear(struct dns_cache *c);

/* ---- TCP client connections (tcp.c) ---- */

struct dns_tcp {
    struct dns_filter *f;
    struct dns_tcp *prev, *next;
    struct loop_source src;
    struct loop_timer idle;
    struct loop_defer defer;
    int fd;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    unsigned pending; /* queries forwarded upstream on behalf of this connection */
    bool closing, eof, reading, processing;
    size_t rlen;
    struct buf wbuf;
    uint8_t rbuf[2 + DNS_TCP_MAX_QUERY];
};

/* Loop callback of the listening TCP socket (userdata: the filter). */
void dns_tcp_on_accept(struct loop_source *src, uint32_t events);
/* Queue one answer (length prefix added) and try to write it; a client that does not read its
 * answers (DNS_TCP_WBUF_MAX) is closed. A no-op on a closing connection. */
void dns_tcp_send(struct dns_tcp *c, const uint8_t *msg, size_t len);
/* An upstream query made for c has finished (c->pending already lowered): free a closing c
 * once nothing refers to it, else serve the queries held back by DNS_TCP_MAX_PENDING. */
void dns_tcp_query_done(struct dns_tcp *c);
/* Close and free now (filter teardown only: no upstream query may still point at c). */
void dns_tcp_free(struct dns_tcp *c);

/* ---- upstream queries (upstream.c) ---- */

/*
 * One socket of the upstream pool: bound to a random port, connected to the upstream (the kernel
 * drops datagrams from any other address), shared by up to DNS_UP_SOCK_USES queries. A retired
 * socket takes no new query and is closed when its last one finishes.
 */
struct dns_usock {
    struct dns_filter *f;
    struct loop_source src;
    struct loop_defer defer;
    int fd;
    uint32_t key; /* random, mixed into the (socket, ID) hash */
    unsigned uses, inflight;
    uint64_t created;
    bool retired;
};

struct dns_up {
    struct dns_filter *f;
    struct dns_up *prev, *next;
    struct dns_up *hnext;   /* (us, id) hash chain, while waiting on a pool socket */
    struct dns_usock *us;   /* the pool socket of the current UDP try, or NULL */
    struct loop_source src; /* TCP upstream only */
    struct loop_timer timer;
    struct loop_defer defer;
    int fd; /* TCP upstream only */
    bool tcp, done;
    unsigned tries;
    uint16_t id;
    struct dns_client *cl; /* pinned: a client with queries in flight keeps its slot */
    struct dns_tcp *conn;  /* NULL for a UDP client */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct dns_query_info q;
    uint8_t query[DNS_QUESTION_MAX];  /* the client's header + question */
    uint8_t lname[DNS_MAX_NAME];      /* lower-cased name sent upstream */
    char host[DNS_MAX_NAME_TEXT + 1]; /* normalised, for the audit log */
    /* upstream over TCP (after a truncated UDP answer, TCP clients only) */
    uint8_t *tbuf;
    size_t tlen, toff;
    bool treading;
};

/* Forward an allowlisted query (msg: header + question q; host: its normalised name) for
 * client cl, answering peer over UDP or conn over TCP. Never fails: a query that cannot be
 * sent is answered SERVFAIL. */
void dns_up_forward(struct dns_filter *f, struct dns_client *cl, const uint8_t *msg,
                    const struct dns_query_info *q, const char *host,
                    const struct sockaddr_storage *peer, socklen_t peer_len, struct dns_tcp *conn);
/* Send the queries a client batch queued for one pool socket (one sendmmsg()). */
void dns_up_flush_sends(struct dns_filter *f);
/* Detach from everything (client, TCP connection, pool socket); the memory goes after the
 * dispatch pass. Safe to call twice. */
void dns_up_finish(struct dns_up *up);
/* Close a pool socket; its memory goes after the dispatch pass. */
void dns_usock_close(struct dns_usock *s);

/* ---- the filter (filter.c) ---- */

/* Separate from the filter so a queued flush can outlive it (dns_filter_free() detaches it). */
struct dns_flush {
    struct loop_defer d;
    struct dns_filter *f;
};

struct dns_filter {
    struct loop *loop;
    struct audit *audit;
    const struct policy *policy;
    struct net_addr listen, upstream;
    bool have_upstream;
    int udp_fd, tcp_fd;
    struct loop_source udp_src, tcp_src;
    struct dns_filter_stats stats;

    struct dns_client clients[DNS_MAX_CLIENTS];
    struct loop_timer agg_timer;

    struct dns_up *ups;
    size_t n_ups;
    struct dns_tcp *conns;
    size_t n_conns;
    struct dns_cache cache;

    uint8_t rnd[256];
    size_t rnd_pos;

    struct dns_usock *pool[DNS_UP_POOL];
    struct dns_up *up_hash[DNS_UP_BUCKETS];
    struct mmsghdr umsg[DNS_UP_BATCH];
    struct iovec uiov[DNS_UP_BATCH];
    uint8_t ubuf[DNS_UP_BATCH][DNS_MAX_MSG];
    /* Queries forwarded while one client batch is handled share one pool socket (drawn at
     * random per batch) and leave in one sendmmsg() at the end of the batch. */
    bool in_batch;
    struct dns_usock *sticky, *out_sock;
    unsigned nout;
    struct mmsghdr omsg[DNS_UDP_BATCH];
    struct iovec oiov[DNS_UDP_BATCH];
    uint8_t obuf[DNS_UDP_BATCH][DNS_QUESTION_MAX + DNS_OPT_LEN];

    /* UDP answers to clients, sent with one sendmmsg() after the dispatch pass */
    struct dns_flush *flush;
    unsigned nq;
    struct mmsghdr qmsg[DNS_UDP_BATCH];
    struct iovec qiov[DNS_UDP_BATCH];
    struct sockaddr_storage qaddr[DNS_UDP_BATCH];
    uint8_t qbuf[DNS_UDP_BATCH][DNS_MAX_CLIENT_UDP + DNS_OPT_LEN];

    struct mmsghdr rmsg[DNS_UDP_BATCH], smsg[DNS_UDP_BATCH];
    struct iovec riov[DNS_UDP_BATCH], siov[DNS_UDP_BATCH];
    struct sockaddr_storage raddr[DNS_UDP_BATCH];
    uint8_t rbuf[DNS_UDP_BATCH][DNS_UDP_RECV];
    uint8_t sbuf[DNS_UDP_BATCH][DNS_MAX_CLIENT_UDP + DNS_OPT_LEN];
    uint8_t scratch[DNS_MAX_MSG + DNS_OPT_LEN];
    uint8_t scratch2[DNS_MAX_MSG + DNS_OPT_LEN];
    struct dns_resp_info resp_info;
};

/*
 * One query from a client (UDP: conn NULL; TCP: conn). Returns the length of an immediate reply
 * written to reply (at most max_reply bytes of answer), or 0 (forwarded, dropped, or ignored).
 */
int dns_handle_query(struct dns_filter *f, const uint8_t *msg, size_t len,
                     const struct sockaddr_storage *peer, socklen_t peer_len, struct dns_tcp *conn,
                     uint8_t *reply, size_t reply_size, size_t max_reply);
/* Queue an answer to a UDP client; the answers of a dispatch pass leave in one sendmmsg(). */
void dns_reply_udp(struct dns_filter *f, const struct sockaddr_storage *peer, socklen_t peer_len,
                   const uint8_t *msg, size_t len);
