/*
 * The DNS filter (see filter.h and docs/dns.md).
 *
 * Hot path (a denied name over UDP): recvmmsg() a batch, parse header + question in place,
 * dns_name_to_text() + host_parse() + policy_check_host() on the stack, write NXDOMAIN by
 * copying the question, sendmmsg() the batch. No allocation there except the audit line of the
 * first of each distinct decision per audit window (repeats are only counted, audit_note()).
 *
 * Allowlisted names: answered from the cache, or forwarded to the upstream resolver from a pool
 * of DNS_UP_POOL connected UDP sockets on random ports (each replaced after DNS_UP_SOCK_USES
 * queries or DNS_UP_SOCK_AGE_MS) with a random ID per try (getrandom), lower-cased and with our
 * own EDNS record (nothing the client put in its query but the question and RD/CD/DO travels).
 * Queries forwarded from one client batch share a socket drawn at random and leave in one
 * sendmmsg(); answers are read with recvmmsg() and go to the query waiting on that socket with
 * that ID, which must then match the question; the socket being connected, only the upstream
 * address can reach it. Address records in refused ranges are removed (policy_check_addr), the
 * rest is cached and relayed; UDP answers to clients leave in one sendmmsg() per loop pass.
 */
#include "dns/filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/xalloc.h"
#include "dns/wire.h"

/* Limits (see docs/dns.md). */
#define DNS_UDP_BATCH 32               /* datagrams per recvmmsg()/sendmmsg() */
#define DNS_UDP_RECV 4096              /* larger client datagrams are dropped */
#define DNS_UPSTREAM_TIMEOUT_MS 1500   /* per try */
#define DNS_UPSTREAM_TRIES 2           /* UDP tries before SERVFAIL */
#define DNS_MAX_OUTSTANDING 1024       /* upstream queries in flight, whole filter */
#define DNS_MAX_CLIENT_OUTSTANDING 256 /* upstream queries in flight per client address */
#define DNS_MAX_CLIENTS 256            /* client addresses tracked (rate, outstanding) */
#define DNS_CLIENT_PROBE 8
#define DNS_MAX_TCP_CONNS 64
#define DNS_TCP_MAX_QUERY 4096        /* a longer length prefix closes the connection */
#define DNS_TCP_MAX_PENDING 16        /* queries in flight per connection before we stop reading */
#define DNS_TCP_WBUF_MAX (512 * 1024) /* unread answers: past this the connection is closed */
#define DNS_TCP_IDLE_MS 10000
#define DNS_CACHE_MAX_ENTRIES 4096
#define DNS_CACHE_MAX_BYTES (4u * 1024 * 1024)
#define DNS_CACHE_BUCKETS 4096 /* power of two */
#define DNS_CACHE_MAX_TTL 3600
#define DNS_CACHE_MAX_NEG_TTL 300
#define DNS_UP_POOL 32           /* connected upstream UDP sockets, each on a random port */
#define DNS_UP_SOCK_USES 64      /* queries sent from one socket before its port is replaced */
#define DNS_UP_SOCK_AGE_MS 10000 /* ... or once it is this old */
#define DNS_UP_BATCH 8           /* upstream answers per recvmmsg() */
#define DNS_UP_BUCKETS 2048      /* (socket, ID) -> query table; power of two */
#define NS_PER_SEC 1000000000ull

/* ---- clients: per source address (port ignored) ---- */

struct dns_client {
    bool used;
    uint8_t family;
    uint8_t addr[16];
    unsigned outstanding;
    uint64_t last_used;
    uint32_t agg_dropped; /* flood-dropped queries not yet audited */
};

/* ---- cache ---- */

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

/* ---- TCP client connections ---- */

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

/* ---- upstream queries ---- */

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
    uint8_t query[DNS_HEADER_LEN + DNS_MAX_NAME + 4]; /* the client's header + question */
    uint8_t lname[DNS_MAX_NAME];                      /* lower-cased name sent upstream */
    char host[DNS_MAX_NAME_TEXT + 1];                 /* normalised, for the audit log */
    /* upstream over TCP (after a truncated UDP answer, TCP clients only) */
    uint8_t *tbuf;
    size_t tlen, toff;
    bool treading;
};

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
    uint8_t obuf[DNS_UDP_BATCH][DNS_HEADER_LEN + DNS_MAX_NAME + 4 + DNS_OPT_LEN];

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

/* ---- helpers ---- */

static void random_bytes(struct dns_filter *f, void *out, size_t n)
{
    if (f->rnd_pos + n > sizeof(f->rnd)) {
        size_t got = 0;
        while (got < sizeof(f->rnd)) {
            ssize_t r = getrandom(f->rnd + got, sizeof(f->rnd) - got, 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                /* getrandom() cannot fail for small requests once the pool is initialised;
                 * there is no safe fallback for an unpredictable ID, so stop here. */
                abort();
            }
            got += (size_t)r;
        }
        f->rnd_pos = 0;
    }
    memcpy(out, f->rnd + f->rnd_pos, n);
    f->rnd_pos += n;
}

static uint16_t random_u16(struct dns_filter *f)
{
    uint16_t v;
    random_bytes(f, &v, sizeof(v));
    return v;
}

static bool sockaddr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/* ---- audit ---- */

/*
 * Decisions go through the audit sink's aggregation (audit_note): the first of each distinct
 * (name, qtype, decision, reason) in a window is written at once, repeats are counted. Every
 * name that is forwarded therefore appears by name at least once per window, however fast the
 * client asks. Returns 0, or -errno when the decision could not be recorded: the caller must then
 * not forward (fail closed).
 */
static int audit_decision(struct dns_filter *f, const char *host, uint16_t qtype, bool allow,
                          const char *reason)
{
    char tbuf[16];
    struct audit_event ev = {
        .kind = AUDIT_DNS,
        .host = host,
        .allow = allow,
        .reason = reason,
        .qtype = dns_type_name(qtype, tbuf),
    };
    return f->audit ? audit_note(f->audit, &ev) : 0;
}

/* Queries dropped under a flood (never forwarded, never answered) are counted per client. */
static void client_flush(struct dns_filter *f, struct dns_client *cl)
{
    if (cl->agg_dropped && f->audit) {
        struct audit_event ev = {
            .kind = AUDIT_DNS,
            .host = "*",
            .allow = false,
            .reason = "flood-dropped",
            .count = cl->agg_dropped,
        };
        audit_emit(f->audit, &ev);
    }
    cl->agg_dropped = 0;
}

static void on_agg_timer(struct loop_timer *t)
{
    struct dns_filter *f = t->userdata;
    for (size_t i = 0; i < DNS_MAX_CLIENTS; i++)
        if (f->clients[i].used)
            client_flush(f, &f->clients[i]);
}

static void audit_dropped(struct dns_filter *f, struct dns_client *cl)
{
    cl->agg_dropped++;
    if (!loop_timer_armed(&f->agg_timer))
        loop_timer_set_in(f->loop, &f->agg_timer, 1000);
}

/* The slot for a client address, or NULL when every candidate slot is busy (then the query is
 * dropped: only clients with queries in flight pin a slot). */
static struct dns_client *client_get(struct dns_filter *f, const struct sockaddr_storage *ss)
{
    uint8_t key[16] = { 0 };
    uint8_t fam = (uint8_t)ss->ss_family;
    uint32_t h = 2166136261u;
    struct dns_client *free_slot = NULL, *lru = NULL, *victim;

    if (fam == AF_INET)
        memcpy(key, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    else if (fam == AF_INET6)
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    for (size_t i = 0; i < sizeof(key); i++)
        h = (h ^ key[i]) * 16777619u;
    for (unsigned k = 0; k < DNS_CLIENT_PROBE; k++) {
        struct dns_client *c = &f->clients[(h + k) % DNS_MAX_CLIENTS];
        if (c->used && c->family == fam && memcmp(c->addr, key, sizeof(key)) == 0) {
            c->last_used = loop_now(f->loop);
            return c;
        }
        if (!c->used) {
            if (!free_slot)
                free_slot = c;
        } else if (c->outstanding == 0 && (!lru || c->last_used < lru->last_used)) {
            lru = c;
        }
    }
    victim = free_slot ? free_slot : lru;
    if (!victim)
        return NULL;
    if (victim->used)
        client_flush(f, victim);
    *victim = (struct dns_client){ .used = true, .family = fam };
    memcpy(victim->addr, key, sizeof(key));
    victim->last_used = loop_now(f->loop);
    return victim;
}

/* ---- cache ---- */

static uint32_t cache_hash(const uint8_t *name, size_t len, uint16_t qtype, uint16_t qclass,
                           uint8_t flags)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)ascii_tolower((char)name[i])) * 16777619u;
    h = (h ^ (qtype >> 8)) * 16777619u;
    h = (h ^ (qtype & 0xff)) * 16777619u;
    h = (h ^ (qclass & 0xff)) * 16777619u;
    h = (h ^ flags) * 16777619u;
    return h;
}

static uint8_t cache_key_flags(const struct dns_query_info *q)
{
    return (uint8_t)((q->do_bit ? 1 : 0) | ((q->hdr.flags & DNS_FLAG_CD) ? 2 : 0));
}

static void cache_unlink(struct dns_cache *c, struct dns_cache_entry *e)
{
    struct dns_cache_entry **pp = &c->buckets[e->hash & (DNS_CACHE_BUCKETS - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    c->n--;
    c->bytes -= e->bytes;
    free(e);
}

static void cache_clear(struct dns_cache *c)
{
    while (c->lru_head)
        cache_unlink(c, c->lru_head);
}

static void lru_push_front(struct dns_cache *c, struct dns_cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

static struct dns_cache_entry *cache_find(struct dns_cache *c, uint64_t now, const uint8_t *query,
                                          const struct dns_query_info *q)
{
    uint8_t kf = cache_key_flags(q);
    uint32_t h = cache_hash(query + DNS_HEADER_LEN, q->qname_len, q->qtype, q->qclass, kf);
    struct dns_cache_entry *e = c->buckets[h & (DNS_CACHE_BUCKETS - 1)];

    for (; e; e = e->hnext) {
        if (e->hash != h || e->key_flags != kf ||
            !dns_name_eq(e->msg + DNS_HEADER_LEN, q->qname_len, query + DNS_HEADER_LEN,
                         q->qname_len) ||
            memcmp(e->msg + q->question_end - 4, query + q->question_end - 4, 4) != 0)
            continue;
        if (e->expires <= now) {
            cache_unlink(c, e);
            return NULL;
        }
        if (c->lru_head != e) { /* move to front */
            e->lru_prev->lru_next = e->lru_next;
            if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
            else
                c->lru_tail = e->lru_prev;
            lru_push_front(c, e);
        }
        return e;
    }
    return NULL;
}

static void cache_store(struct dns_cache *c, uint64_t now, const struct dns_up *up,
                        const uint8_t *msg, size_t len, const struct dns_resp_info *info,
                        uint32_t ttl)
{
    size_t bytes = sizeof(struct dns_cache_entry) + len + info->n_ttl * sizeof(uint16_t);
    struct dns_cache_entry *old;

    if (ttl == 0 || bytes > DNS_CACHE_MAX_BYTES / 16)
        return;
    old = cache_find(c, now, up->query, &up->q);
    if (old)
        cache_unlink(c, old);
    while (c->lru_tail && (c->n >= DNS_CACHE_MAX_ENTRIES || c->bytes + bytes > DNS_CACHE_MAX_BYTES))
        cache_unlink(c, c->lru_tail);

    struct dns_cache_entry *e = xmalloc(bytes);
    e->key_flags = cache_key_flags(&up->q);
    e->hash = cache_hash(up->query + DNS_HEADER_LEN, up->q.qname_len, up->q.qtype, up->q.qclass,
                         e->key_flags);
    e->stored_at = now;
    e->expires = now + (uint64_t)ttl * NS_PER_SEC;
    e->len = len;
    e->n_ttl = info->n_ttl;
    e->bytes = bytes;
    memcpy(e->ttl_off, info->ttl_off, info->n_ttl * sizeof(uint16_t));
    e->msg = (uint8_t *)(e->ttl_off + info->n_ttl);
    memcpy(e->msg, msg, len);
    struct dns_cache_entry **b = &c->buckets[e->hash & (DNS_CACHE_BUCKETS - 1)];
    e->hnext = *b;
    *b = e;
    lru_push_front(c, e);
    c->n++;
    c->bytes += bytes;
}

/* ---- TCP client connections ---- */

static void tcp_update_events(struct dns_tcp *c);
static void tcp_close(struct dns_tcp *c);

static void tcp_free(struct dns_tcp *c)
{
    struct dns_filter *f = c->f;

    loop_del(f->loop, &c->src);
    loop_timer_stop(f->loop, &c->idle);
    if (c->fd >= 0)
        close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        f->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    f->n_conns--;
    buf_done(&c->wbuf);
    free(c);
}

static void tcp_defer_free(struct loop_defer *d)
{
    tcp_free(d->userdata);
}

/* Stop serving: the fd goes now, the memory once no upstream query refers to it. */
static void tcp_close(struct dns_tcp *c)
{
    if (c->closing)
        return;
    c->closing = true;
    loop_del(c->f->loop, &c->src);
    loop_timer_stop(c->f->loop, &c->idle);
    close(c->fd);
    c->fd = -1;
    if (c->pending == 0)
        loop_defer(c->f->loop, &c->defer, tcp_defer_free, c);
}

static void tcp_flush(struct dns_tcp *c)
{
    while (c->wbuf.len) {
        ssize_t n = send(c->fd, c->wbuf.p, c->wbuf.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            tcp_close(c);
            return;
        }
        buf_consume(&c->wbuf, (size_t)n);
    }
    if (c->eof && c->pending == 0 && c->wbuf.len == 0)
        tcp_close(c);
    else
        tcp_update_events(c);
}

static void tcp_send(struct dns_tcp *c, const uint8_t *msg, size_t len)
{
    uint8_t pfx[2];

    if (c->closing)
        return;
    dns_put16(pfx, (uint16_t)len);
    if (buf_append(&c->wbuf, pfx, 2) < 0 || buf_append(&c->wbuf, msg, len) < 0) {
        /* The client does not read its answers: give up on it. */
        tcp_close(c);
        return;
    }
    tcp_flush(c);
}

static void tcp_update_events(struct dns_tcp *c)
{
    uint32_t ev = 0;

    if (c->closing)
        return;
    c->reading = !c->eof && c->pending < DNS_TCP_MAX_PENDING && c->wbuf.len < 65536;
    if (c->reading)
        ev |= EPOLLIN;
    if (c->wbuf.len)
        ev |= EPOLLOUT;
    loop_mod(c->f->loop, &c->src, ev);
    if (c->pending == 0 && c->wbuf.len == 0)
        loop_timer_set_in(c->f->loop, &c->idle, DNS_TCP_IDLE_MS);
    else
        loop_timer_stop(c->f->loop, &c->idle);
}

static int handle_query(struct dns_filter *f, const uint8_t *msg, size_t len,
                        const struct sockaddr_storage *peer, socklen_t peer_len,
                        struct dns_tcp *conn, uint8_t *reply, size_t reply_size, size_t max_reply);

static void tcp_process(struct dns_tcp *c)
{
    struct dns_filter *f = c->f;
    size_t off = 0;

    /* Answering a query can finish an upstream query, which calls us again: the outer call
     * owns rbuf. */
    if (c->processing)
        return;
    c->processing = true;
    while (!c->closing && c->rlen - off >= 2) {
        size_t mlen = dns_get16(c->rbuf + off);
        if (mlen > DNS_TCP_MAX_QUERY) {
            f->stats.malformed++;
            tcp_close(c);
            break;
        }
        if (c->rlen - off - 2 < mlen)
            break;
        if (c->pending >= DNS_TCP_MAX_PENDING)
            break;
        int n = handle_query(f, c->rbuf + off + 2, mlen, &c->peer, c->peer_len, c, f->scratch,
                             sizeof(f->scratch), DNS_MAX_MSG);
        off += 2 + mlen;
        if (n > 0)
            tcp_send(c, f->scratch, (size_t)n);
    }
    c->processing = false;
    if (c->closing)
        return;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
}

static void on_tcp_conn(struct loop_source *src, uint32_t events)
{
    struct dns_tcp *c = src->userdata;

    if (events & EPOLLOUT) {
        tcp_flush(c);
        if (c->closing)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!c->reading && !(events & (EPOLLHUP | EPOLLERR)))
            return;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            tcp_close(c);
            return;
        }
        if (n == 0) {
            /* A length prefix or message cut short by EOF is dropped (RFC 7766 8). */
            if (c->rlen)
                c->f->stats.malformed++;
            c->eof = true;
            c->rlen = 0;
            if (c->pending == 0 && c->wbuf.len == 0)
                tcp_close(c);
            else
                tcp_update_events(c);
            return;
        }
        c->rlen += (size_t)n;
        tcp_process(c);
        if (!c->closing)
            tcp_update_events(c);
    }
}

static void on_tcp_idle(struct loop_timer *t)
{
    tcp_close(t->userdata);
}

static void on_tcp_accept(struct loop_source *src, uint32_t events)
{
    struct dns_filter *f = src->userdata;
    (void)events;

    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(f->tcp_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (f->n_conns >= DNS_MAX_TCP_CONNS) {
            f->stats.dropped++;
            close(fd);
            continue;
        }
        struct dns_tcp *c = xcalloc(1, sizeof(*c));
        c->f = f;
        c->fd = fd;
        c->peer = ss;
        c->peer_len = sl;
        c->reading = true;
        buf_init(&c->wbuf, DNS_TCP_WBUF_MAX);
        loop_timer_init(&c->idle, on_tcp_idle, c);
        if (loop_add(f->loop, &c->src, fd, EPOLLIN, on_tcp_conn, c) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = f->conns;
        if (f->conns)
            f->conns->prev = c;
        f->conns = c;
        f->n_conns++;
        loop_timer_set_in(f->loop, &c->idle, DNS_TCP_IDLE_MS);
    }
}

/* ---- replies to clients ---- */

static void send_batch(struct dns_filter *f, struct mmsghdr *m, unsigned n)
{
    for (unsigned done = 0; done < n;) {
        int s = sendmmsg(f->udp_fd, m + done, n - done, MSG_DONTWAIT);
        if (s <= 0) {
            f->stats.dropped += n - done;
            break;
        }
        done += (unsigned)s;
    }
}

static void reply_flush(struct dns_filter *f)
{
    send_batch(f, f->qmsg, f->nq);
    f->nq = 0;
}

static void on_flush(struct loop_defer *d)
{
    struct dns_flush *fl = d->userdata;

    if (!fl->f) { /* the filter is gone */
        free(fl);
        return;
    }
    reply_flush(fl->f);
}

/* Answers to UDP clients completed during a dispatch pass leave in one sendmmsg() after it. */
static void reply_udp(struct dns_filter *f, const struct sockaddr_storage *peer, socklen_t peer_len,
                      const uint8_t *msg, size_t len)
{
    if (len > sizeof(f->qbuf[0]) || peer_len > sizeof(f->qaddr[0])) {
        if (sendto(f->udp_fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *)peer, peer_len) < 0)
            f->stats.dropped++;
        return;
    }
    if (f->nq == DNS_UDP_BATCH)
        reply_flush(f);
    unsigned i = f->nq++;
    memcpy(f->qbuf[i], msg, len);
    memcpy(&f->qaddr[i], peer, peer_len);
    f->qiov[i] = (struct iovec){ .iov_base = f->qbuf[i], .iov_len = len };
    f->qmsg[i].msg_hdr = (struct msghdr){
        .msg_name = &f->qaddr[i],
        .msg_namelen = peer_len,
        .msg_iov = &f->qiov[i],
        .msg_iovlen = 1,
    };
    loop_defer(f->loop, &f->flush->d, on_flush, f->flush);
}

/* ---- the upstream socket pool ---- */

static void usock_free(struct loop_defer *d)
{
    free(d->userdata);
}

static void usock_close(struct dns_usock *s)
{
    if (s->fd < 0)
        return;
    loop_del(s->f->loop, &s->src);
    close(s->fd);
    s->fd = -1;
    loop_defer(s->f->loop, &s->defer, usock_free, s);
}

static void usock_retire(struct dns_usock *s)
{
    s->retired = true;
    if (s->inflight == 0)
        usock_close(s);
}

static size_t up_bucket(const struct dns_usock *s, uint16_t id)
{
    return ((s->key ^ id) * 0x9e3779b1u >> 16) & (DNS_UP_BUCKETS - 1);
}

static struct dns_up *up_lookup(struct dns_filter *f, const struct dns_usock *s, uint16_t id)
{
    struct dns_up *up = f->up_hash[up_bucket(s, id)];
    while (up && (up->us != s || up->id != id))
        up = up->hnext;
    return up;
}

/* Leave the pool socket of the current UDP try (its answer will no longer be accepted). */
static void up_detach(struct dns_up *up)
{
    struct dns_usock *s = up->us;
    struct dns_up **pp;

    if (!s)
        return;
    pp = &up->f->up_hash[up_bucket(s, up->id)];
    while (*pp && *pp != up)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = up->hnext;
    up->hnext = NULL;
    up->us = NULL;
    s->inflight--;
    if (s->retired && s->inflight == 0)
        usock_close(s);
}

/* ---- upstream queries ---- */

static void up_free(struct dns_up *up)
{
    free(up->tbuf);
    free(up);
}

static void up_defer_free(struct loop_defer *d)
{
    up_free(d->userdata);
}

/* Detach from everything; the memory goes after the dispatch pass. */
static void up_finish(struct dns_up *up)
{
    struct dns_filter *f = up->f;

    if (up->done)
        return;
    up->done = true;
    up_detach(up);
    loop_del(f->loop, &up->src);
    loop_timer_stop(f->loop, &up->timer);
    if (up->fd >= 0)
        close(up->fd);
    up->fd = -1;
    if (up->prev)
        up->prev->next = up->next;
    else
        f->ups = up->next;
    if (up->next)
        up->next->prev = up->prev;
    f->n_ups--;
    up->cl->outstanding--;
    if (up->conn) {
        struct dns_tcp *c = up->conn;
        up->conn = NULL;
        c->pending--;
        if (c->closing) {
            if (c->pending == 0)
                loop_defer(f->loop, &c->defer, tcp_defer_free, c);
        } else {
            tcp_process(c); /* queries held back by DNS_TCP_MAX_PENDING */
            if (c->eof && c->pending == 0 && c->wbuf.len == 0)
                tcp_close(c);
            else if (!c->closing)
                tcp_update_events(c);
        }
    }
    loop_defer(f->loop, &up->defer, up_defer_free, up);
}

static void up_reply(struct dns_up *up, const uint8_t *msg, size_t len)
{
    if (up->conn)
        tcp_send(up->conn, msg, len);
    else
        reply_udp(up->f, &up->peer, up->peer_len, msg, len);
}

static void up_reply_rcode(struct dns_up *up, unsigned rcode)
{
    uint8_t out[DNS_HEADER_LEN + DNS_MAX_NAME + 4 + DNS_OPT_LEN];
    int n = dns_reply_build(up->query, &up->q, rcode, out, sizeof(out));
    if (n > 0)
        up_reply(up, out, (size_t)n);
}

struct keep_ctx {
    struct dns_filter *f;
    struct dns_up *up;
    unsigned denied;
    enum verdict verdict;
};

/* SSRF guard on answers: A/AAAA in refused ranges go unless allow_cidr covers them. */
static bool keep_rr(void *userdata, enum dns_section sec, uint16_t type, const uint8_t *rdata,
                    uint16_t rdlen)
{
    struct keep_ctx *k = userdata;
    struct sockaddr_storage ss = { 0 };
    enum verdict v;
    (void)sec;

    if (type == DNS_TYPE_A && rdlen == 4) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, rdata, 4);
    } else if (type == DNS_TYPE_AAAA && rdlen == 16) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, rdata, 16);
    } else {
        return true;
    }
    v = k->f->policy ? policy_check_addr(k->f->policy, (const struct sockaddr *)&ss, 0)
                     : V_DENY_SSRF;
    if (v == V_ALLOW)
        return true;
    k->denied++;
    k->verdict = v;
    return false;
}

static int up_send(struct dns_up *up);

/* An answer from upstream. Returns 0 when the query is finished, -EBADMSG when msg is not an
 * answer to it (ignored: keep waiting). */
static int up_answer(struct dns_up *up, const uint8_t *msg, size_t len)
{
    struct dns_filter *f = up->f;
    struct dns_resp_info *info = &f->resp_info;
    struct keep_ctx k = { .f = f, .up = up };
    uint8_t *stored = f->scratch2;
    uint32_t ttl;
    int n, r;

    n = dns_resp_filter(msg, len, up->id, up->lname, up->q.qname_len, up->q.qtype, up->q.qclass,
                        keep_rr, &k, stored, sizeof(f->scratch2) - DNS_OPT_LEN, info);
    if (n == -EBADMSG)
        return -EBADMSG;
    if (n < 0) { /* too many records, or does not fit */
        up_reply_rcode(up, DNS_RCODE_SERVFAIL);
        up_finish(up);
        return 0;
    }
    if (k.denied && f->audit) {
        char tbuf[16];
        struct audit_event ev = {
            .kind = AUDIT_DNS,
            .host = up->host,
            .allow = false,
            .reason = verdict_reason(k.verdict),
            .qtype = dns_type_name(up->q.qtype, tbuf),
            .count = k.denied > 1 ? k.denied : 0,
        };
        audit_emit(f->audit, &ev);
    }
    if ((info->flags & DNS_FLAG_TC) && !up->tcp) {
        if (up->conn) {
            /* A TCP client wants the whole answer: ask again over TCP. */
            up->tcp = true;
            r = up_send(up);
            if (r < 0) {
                up_reply_rcode(up, DNS_RCODE_SERVFAIL);
                up_finish(up);
            }
            return 0;
        }
        /* A UDP client retries over TCP itself. */
        n = dns_answer_finalize(stored, (size_t)n, NULL, 0, 0, up->query, &up->q, 0, f->scratch,
                                sizeof(f->scratch));
        if (n > 0)
            up_reply(up, f->scratch, (size_t)n);
        up_finish(up);
        return 0;
    }
    if (info->rcode != DNS_RCODE_NOERROR && info->rcode != DNS_RCODE_NXDOMAIN) {
        /* SERVFAIL, REFUSED, ...: relayed without records, never cached. */
        up_reply_rcode(up, info->rcode > 15 ? DNS_RCODE_SERVFAIL : info->rcode);
        up_finish(up);
        return 0;
    }
    /* Cache: positive answers for their smallest TTL, negative ones per RFC 2308 5. */
    if (info->rcode == DNS_RCODE_NOERROR && info->counts[DNS_SEC_ANSWER])
        ttl = MIN(info->min_ttl, DNS_CACHE_MAX_TTL);
    else
        ttl = info->has_soa ? MIN(info->neg_ttl, DNS_CACHE_MAX_NEG_TTL) : 0;
    if (!(info->flags & DNS_FLAG_TC))
        cache_store(&f->cache, loop_now(f->loop), up, stored, (size_t)n, info, ttl);
    r = dns_answer_finalize(stored, (size_t)n, info->ttl_off, info->n_ttl, 0, up->query, &up->q,
                            up->conn ? DNS_MAX_MSG : dns_query_max_udp(&up->q), f->scratch,
                            sizeof(f->scratch));
    if (r > 0)
        up_reply(up, f->scratch, (size_t)r);
    else
        up_reply_rcode(up, DNS_RCODE_SERVFAIL);
    up_finish(up);
    return 0;
}

/* Answers on a pool socket: each goes to the query waiting on this socket with its ID, which
 * then checks the question (dns_resp_filter); anything else is counted and ignored. */
static void on_usock(struct loop_source *src, uint32_t events)
{
    struct dns_usock *s = src->userdata;
    struct dns_filter *f = s->f;
    (void)events;

    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < DNS_UP_BATCH; i++) {
            f->uiov[i] = (struct iovec){ .iov_base = f->ubuf[i], .iov_len = DNS_MAX_MSG };
            f->umsg[i].msg_hdr = (struct msghdr){ .msg_iov = &f->uiov[i], .msg_iovlen = 1 };
        }
        /* ECONNREFUSED (ICMP port unreachable) and the like end up here too: the timer
         * retries. */
        int n = recvmmsg(s->fd, f->umsg, DNS_UP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            size_t len = f->umsg[i].msg_len;
            struct dns_up *up = NULL;
            if (len >= 2 && !(f->umsg[i].msg_hdr.msg_flags & MSG_TRUNC))
                up = up_lookup(f, s, dns_get16(f->ubuf[i]));
            if (!up || up_answer(up, f->ubuf[i], len) == -EBADMSG)
                f->stats.malformed++;
        }
        /* s may have been closed by the last answer (its memory stays until the pass ends). */
        if (s->fd < 0 || n < DNS_UP_BATCH)
            return;
    }
}

static void on_up_tcp(struct dns_up *up, uint32_t events)
{
    ssize_t n;

    if (!up->treading) {
        if (net_socket_error(up->fd) < 0)
            goto fail;
        while (up->toff < up->tlen) {
            n = send(up->fd, up->tbuf + up->toff, up->tlen - up->toff, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return;
                goto fail;
            }
            up->toff += (size_t)n;
        }
        free(up->tbuf);
        up->tbuf = xmalloc(2 + DNS_MAX_MSG);
        up->tlen = 2;
        up->toff = 0;
        up->treading = true;
        loop_mod(up->f->loop, &up->src, EPOLLIN);
        return;
    }
    (void)events;
    for (;;) {
        n = recv(up->fd, up->tbuf + up->toff, up->tlen - up->toff, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            goto fail;
        }
        if (n == 0)
            goto fail;
        up->toff += (size_t)n;
        if (up->toff < up->tlen)
            continue;
        if (up->tlen == 2) {
            up->tlen = 2 + (size_t)dns_get16(up->tbuf);
            if (up->tlen == 2)
                goto fail;
            continue;
        }
        if (up_answer(up, up->tbuf + 2, up->tlen - 2) == -EBADMSG)
            goto fail;
        return;
    }
fail:
    up_reply_rcode(up, DNS_RCODE_SERVFAIL);
    up_finish(up);
}

static void on_up_io(struct loop_source *src, uint32_t events)
{
    struct dns_up *up = src->userdata;

    on_up_tcp(up, events);
}

static void on_up_timeout(struct loop_timer *t)
{
    struct dns_up *up = t->userdata;

    if (!up->tcp && up->tries < DNS_UPSTREAM_TRIES && up_send(up) == 0)
        return;
    up->f->stats.upstream_timeouts++;
    up_reply_rcode(up, DNS_RCODE_SERVFAIL);
    up_finish(up);
}

/* A UDP socket on a random local port (the kernel's choice if a few random ones are taken). */
static int up_udp_socket(struct dns_filter *f)
{
    _cleanup_close_ int fd = -1;
    int family = f->upstream.ss.ss_family;

    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    for (int i = 0; i < 4; i++) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        uint16_t port = (uint16_t)(1024 + random_u16(f) % (65536 - 1024));
        if (family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            sl = sizeof(*in6);
        } else {
            struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
            in4->sin_family = AF_INET;
            in4->sin_port = htons(port);
            sl = sizeof(*in4);
        }
        if (bind(fd, (struct sockaddr *)&ss, sl) == 0)
            break;
    }
    /* connect(): the kernel then only delivers datagrams from the upstream address and port. */
    if (connect(fd, (const struct sockaddr *)&f->upstream.ss, f->upstream.len) < 0)
        return -errno;
    return TAKE_FD(fd);
}

/* A pool socket for the next query: a random slot; a socket that has served its uses or age is
 * retired and replaced by a new one on a new random port. */
static int usock_get(struct dns_filter *f, struct dns_usock **ret)
{
    size_t slot;
    struct dns_usock *s = f->sticky;
    uint64_t now = loop_now(f->loop);
    int fd, r;

    if (s && !s->retired && s->uses < DNS_UP_SOCK_USES) {
        s->uses++;
        *ret = s;
        return 0;
    }
    slot = random_u16(f) % DNS_UP_POOL;
    s = f->pool[slot];
    if (s && (s->uses >= DNS_UP_SOCK_USES ||
              now - s->created >= (uint64_t)DNS_UP_SOCK_AGE_MS * 1000000)) {
        f->pool[slot] = NULL;
        usock_retire(s);
        s = NULL;
    }
    if (!s) {
        fd = up_udp_socket(f);
        if (fd < 0)
            return fd;
        s = xcalloc(1, sizeof(*s));
        s->f = f;
        s->fd = fd;
        s->created = now;
        random_bytes(f, &s->key, sizeof(s->key));
        r = loop_add(f->loop, &s->src, fd, EPOLLIN, on_usock, s);
        if (r < 0) {
            close(fd);
            free(s);
            return r;
        }
        f->pool[slot] = s;
    }
    s->uses++;
    if (f->in_batch)
        f->sticky = s;
    *ret = s;
    return 0;
}

static void up_flush_sends(struct dns_filter *f)
{
    struct dns_usock *s = f->out_sock;

    /* A failed send is not retried here: the query's timer sends it again. */
    for (unsigned done = 0; s && s->fd >= 0 && done < f->nout;) {
        int r = sendmmsg(s->fd, f->omsg + done, f->nout - done, MSG_DONTWAIT);
        if (r <= 0)
            break;
        done += (unsigned)r;
    }
    f->nout = 0;
    f->out_sock = NULL;
}

/* Send q on s now, or queue it for the end of the client batch. */
static int up_send_udp(struct dns_filter *f, struct dns_usock *s, const uint8_t *q, size_t n)
{
    if (!f->in_batch) {
        if (send(s->fd, q, n, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED)
            return -errno;
        return 0;
    }
    if (f->nout == DNS_UDP_BATCH || (f->nout && f->out_sock != s))
        up_flush_sends(f);
    unsigned i = f->nout++;
    memcpy(f->obuf[i], q, n);
    f->oiov[i] = (struct iovec){ .iov_base = f->obuf[i], .iov_len = n };
    f->omsg[i].msg_hdr = (struct msghdr){ .msg_iov = &f->oiov[i], .msg_iovlen = 1 };
    f->out_sock = s;
    return 0;
}

/* (Re)send the query: a random pool socket and a fresh random ID on every try. */
static int up_send(struct dns_up *up)
{
    struct dns_filter *f = up->f;
    uint8_t q[DNS_HEADER_LEN + DNS_MAX_NAME + 4 + DNS_OPT_LEN];
    int n, fd, r;

    up_detach(up);
    loop_del(f->loop, &up->src);
    if (up->fd >= 0)
        close(up->fd);
    up->fd = -1;
    up->id = random_u16(f);
    up->tries++;
    n = dns_query_build(up->id, up->q.hdr.flags, up->lname, up->q.qname_len, up->q.qtype,
                        up->q.qclass, true, DNS_EDNS_UDP, up->q.do_bit, q, sizeof(q));
    if (n < 0)
        return n;
    if (up->tcp) {
        fd = net_connect_tcp((const struct sockaddr *)&f->upstream.ss, f->upstream.len);
        if (fd < 0)
            return fd;
        free(up->tbuf);
        up->tbuf = xmalloc((size_t)n + 2);
        dns_put16(up->tbuf, (uint16_t)n);
        memcpy(up->tbuf + 2, q, (size_t)n);
        up->tlen = (size_t)n + 2;
        up->toff = 0;
        up->treading = false;
        r = loop_add(f->loop, &up->src, fd, EPOLLOUT, on_up_io, up);
    } else {
        struct dns_usock *s;
        r = usock_get(f, &s);
        if (r < 0)
            return r;
        /* One query per (socket, ID): draw again on a clash (at most DNS_MAX_OUTSTANDING in
         * flight, so a few draws suffice). */
        for (int i = 0; i < 16 && up_lookup(f, s, up->id); i++)
            up->id = random_u16(f);
        if (up_lookup(f, s, up->id))
            return -EBUSY;
        dns_put16(q, up->id);
        r = up_send_udp(f, s, q, (size_t)n);
        if (r < 0)
            return r;
        up->us = s;
        s->inflight++;
        size_t b = up_bucket(s, up->id);
        up->hnext = f->up_hash[b];
        f->up_hash[b] = up;
        loop_timer_set_in(f->loop, &up->timer, DNS_UPSTREAM_TIMEOUT_MS);
        return 0;
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    up->fd = fd;
    loop_timer_set_in(f->loop, &up->timer, DNS_UPSTREAM_TIMEOUT_MS);
    return 0;
}

static void forward(struct dns_filter *f, struct dns_client *cl, const uint8_t *msg,
                    const struct dns_query_info *q, const char *host,
                    const struct sockaddr_storage *peer, socklen_t peer_len, struct dns_tcp *conn)
{
    struct dns_up *up = xcalloc(1, sizeof(*up));

    up->f = f;
    up->fd = -1;
    up->cl = cl;
    up->q = *q;
    memcpy(up->query, msg, q->question_end);
    for (size_t i = 0; i < q->qname_len; i++)
        up->lname[i] = (uint8_t)ascii_tolower((char)msg[DNS_HEADER_LEN + i]);
    memcpy(up->host, host, strlen(host) + 1);
    up->peer = *peer;
    up->peer_len = peer_len;
    loop_timer_init(&up->timer, on_up_timeout, up);
    up->next = f->ups;
    if (f->ups)
        f->ups->prev = up;
    f->ups = up;
    f->n_ups++;
    cl->outstanding++;
    if (conn) {
        up->conn = conn;
        conn->pending++;
    }
    f->stats.forwarded++;
    if (up_send(up) < 0) {
        up_reply_rcode(up, DNS_RCODE_SERVFAIL);
        up_finish(up);
    }
}

/* ---- the decision ---- */

/* Printable form of a name that failed dns_name_to_text(), for the audit log only. */
static void name_for_audit(const uint8_t *wire, size_t wlen, char out[DNS_MAX_NAME_TEXT + 1])
{
    size_t i = 0, o = 0;

    while (i < wlen && wire[i] && o < DNS_MAX_NAME_TEXT) {
        uint8_t l = wire[i++];
        if (o)
            out[o++] = '.';
        for (uint8_t k = 0; k < l && i < wlen && o < DNS_MAX_NAME_TEXT; k++, i++) {
            uint8_t c = wire[i];
            out[o++] = (c > 0x20 && c < 0x7f && c != '.') ? (char)c : '?';
        }
    }
    out[o] = '\0';
}

static bool qtype_refused(uint16_t t)
{
    return t == DNS_TYPE_ANY || t == DNS_TYPE_AXFR || t == DNS_TYPE_IXFR || t == DNS_TYPE_MAILA ||
           t == DNS_TYPE_MAILB || t == DNS_TYPE_OPT || t == DNS_TYPE_TSIG;
}

/*
 * One query. Returns the length of an immediate reply written to reply, or 0 (forwarded,
 * dropped, or ignored).
 */
static int handle_query(struct dns_filter *f, const uint8_t *msg, size_t len,
                        const struct sockaddr_storage *peer, socklen_t peer_len,
                        struct dns_tcp *conn, uint8_t *reply, size_t reply_size, size_t max_reply)
{
    struct dns_query_info q;
    struct dns_client *cl;
    struct host host;
    char text[DNS_MAX_NAME_TEXT + 1];
    const char *err;
    size_t tlen;
    enum verdict v;
    int r;

    f->stats.queries++;
    r = dns_query_parse(msg, len, &q);
    if (r < 0) {
        struct dns_hdr h;
        f->stats.malformed++;
        if (r == -EBADMSG || dns_hdr_parse(msg, len, &h) < 0)
            return 0; /* too short to answer, or a response: never reply to those */
        return dns_reply_header_only(&h, r == -EOPNOTSUPP ? DNS_RCODE_NOTIMP : DNS_RCODE_FORMERR,
                                     reply, reply_size);
    }
    if (q.has_opt && q.edns_version != 0) /* RFC 6891 6.1.3 */
        return dns_reply_build(msg, &q, DNS_RCODE_BADVERS, reply, reply_size);

    cl = client_get(f, peer);
    if (!cl) {
        f->stats.dropped++;
        return 0;
    }

    if (dns_name_to_text(msg + DNS_HEADER_LEN, q.qname_len, text, &tlen) < 0) {
        name_for_audit(msg + DNS_HEADER_LEN, q.qname_len, text);
        v = V_DENY_BAD_HOST;
    } else if (host_parse(text, tlen, &host, &err) < 0) {
        v = V_DENY_BAD_HOST;
    } else if (host.kind != HOST_NAME) {
        v = V_DENY_IP_LITERAL;
    } else {
        v = f->policy ? policy_check_host(f->policy, &host, 0) : V_DENY_NOT_ALLOWLISTED;
        memcpy(text, host.name, strlen(host.name) + 1);
    }
    if (v != V_ALLOW) {
        f->stats.denied++;
        audit_decision(f, text, q.qtype, false, verdict_reason(v));
        return dns_reply_build(msg, &q, DNS_RCODE_NXDOMAIN, reply, reply_size);
    }
    if (q.qclass != DNS_CLASS_IN || qtype_refused(q.qtype)) {
        f->stats.denied++;
        audit_decision(f, text, q.qtype, false,
                       q.qclass != DNS_CLASS_IN ? "refused-qclass" : "refused-qtype");
        return dns_reply_build(msg, &q, DNS_RCODE_REFUSED, reply, reply_size);
    }
    if (audit_decision(f, text, q.qtype, true, "allowlisted") < 0) {
        /* The audit log cannot be written: nothing leaves unrecorded (fail closed). */
        f->stats.denied++;
        return dns_reply_build(msg, &q, DNS_RCODE_SERVFAIL, reply, reply_size);
    }

    struct dns_cache_entry *e = cache_find(&f->cache, loop_now(f->loop), msg, &q);
    if (e) {
        uint64_t elapsed = (loop_now(f->loop) - e->stored_at) / NS_PER_SEC;
        r = dns_answer_finalize(e->msg, e->len, e->ttl_off, e->n_ttl, (uint32_t)elapsed, msg, &q,
                                max_reply, reply, reply_size);
        if (r > 0) {
            f->stats.cache_hits++;
            return r;
        }
    }
    if (!f->have_upstream)
        return dns_reply_build(msg, &q, DNS_RCODE_SERVFAIL, reply, reply_size);
    if (cl->outstanding >= DNS_MAX_CLIENT_OUTSTANDING || f->n_ups >= DNS_MAX_OUTSTANDING) {
        f->stats.dropped++;
        audit_dropped(f, cl);
        return 0;
    }
    forward(f, cl, msg, &q, text, peer, peer_len, conn);
    return 0;
}

/* ---- UDP server ---- */

static void on_udp(struct loop_source *src, uint32_t events)
{
    struct dns_filter *f = src->userdata;
    (void)events;

    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < DNS_UDP_BATCH; i++) {
            f->riov[i] = (struct iovec){ .iov_base = f->rbuf[i], .iov_len = DNS_UDP_RECV };
            f->rmsg[i].msg_hdr = (struct msghdr){
                .msg_name = &f->raddr[i],
                .msg_namelen = sizeof(f->raddr[i]),
                .msg_iov = &f->riov[i],
                .msg_iovlen = 1,
            };
        }
        int n = recvmmsg(f->udp_fd, f->rmsg, DNS_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        unsigned ns = 0;
        f->in_batch = true;
        for (int i = 0; i < n; i++) {
            struct msghdr *mh = &f->rmsg[i].msg_hdr;
            size_t len = f->rmsg[i].msg_len;
            if (mh->msg_flags & MSG_TRUNC) {
                f->stats.queries++;
                f->stats.malformed++;
                continue;
            }
            int r = handle_query(f, f->rbuf[i], len, &f->raddr[i], mh->msg_namelen, NULL,
                                 f->sbuf[ns], sizeof(f->sbuf[ns]), DNS_MAX_CLIENT_UDP);
            if (r <= 0)
                continue;
            f->siov[ns] = (struct iovec){ .iov_base = f->sbuf[ns], .iov_len = (size_t)r };
            f->smsg[ns].msg_hdr = (struct msghdr){
                .msg_name = &f->raddr[i],
                .msg_namelen = mh->msg_namelen,
                .msg_iov = &f->siov[ns],
                .msg_iovlen = 1,
            };
            ns++;
        }
        f->in_batch = false;
        f->sticky = NULL;
        up_flush_sends(f);
        send_batch(f, f->smsg, ns);
        if (n < DNS_UDP_BATCH)
            return;
    }
}

/* ---- setup ---- */

int dns_resolv_conf_upstream(const char *path, struct net_addr *ret)
{
    char data[16384], addr[128];
    _cleanup_close_ int fd = -1;
    size_t len = 0;
    ssize_t n;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (len < sizeof(data) - 1 && (n = read(fd, data + len, sizeof(data) - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        len += (size_t)n;
    }
    data[len] = '\0';
    for (char *line = data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        struct slice s = slice_trim_ows(slice_cstr(line));
        line = nl ? nl + 1 : NULL;
        if (s.len <= 11 || memcmp(s.p, "nameserver", 10) != 0 ||
            (s.p[10] != ' ' && s.p[10] != '\t'))
            continue;
        struct slice a = slice_trim_ows(slice_make(s.p + 11, s.len - 11));
        size_t alen = 0;
        while (alen < a.len && a.p[alen] != ' ' && a.p[alen] != '\t' && a.p[alen] != '#' &&
               a.p[alen] != ';')
            alen++;
        if (alen == 0 || alen > 64 || memchr(a.p, '%', alen))
            continue;
        struct net_addr na;
        bool v6 = memchr(a.p, ':', alen) != NULL;
        if (str_printf(addr, sizeof(addr), v6 ? "[%.*s]" : "%.*s", (int)alen, a.p) < 0)
            continue;
        if (net_addr_parse(addr, 53, &na) == 0) {
            *ret = na;
            return 0;
        }
    }
    return -ENOENT;
}

void dns_filter_set_policy(struct dns_filter *f, const struct policy *p)
{
    if (f->policy != p)
        cache_clear(&f->cache); /* allow_cidr decides what answers keep */
    f->policy = p;
}

void dns_filter_get_stats(const struct dns_filter *f, struct dns_filter_stats *ret)
{
    *ret = f->stats;
}

struct dns_filter *dns_filter_free(struct dns_filter *f)
{
    if (!f)
        return NULL;
    while (f->ups) {
        struct dns_up *up = f->ups;
        up->conn = NULL;
        up_finish(up); /* its memory goes in the loop's deferred work (touches nothing else) */
    }
    while (f->conns)
        tcp_free(f->conns);
    for (size_t i = 0; i < DNS_UP_POOL; i++)
        if (f->pool[i])
            usock_close(f->pool[i]); /* memory: deferred, touches nothing else */
    if (f->udp_fd >= 0)
        reply_flush(f);
    if (f->flush->d.queued)
        f->flush->f = NULL; /* on_flush frees it */
    else
        free(f->flush);
    for (size_t i = 0; i < DNS_MAX_CLIENTS; i++)
        if (f->clients[i].used)
            client_flush(f, &f->clients[i]);
    loop_timer_stop(f->loop, &f->agg_timer);
    loop_del(f->loop, &f->udp_src);
    loop_del(f->loop, &f->tcp_src);
    if (f->udp_fd >= 0)
        close(f->udp_fd);
    if (f->tcp_fd >= 0)
        close(f->tcp_fd);
    cache_clear(&f->cache);
    free(f);
    return NULL;
}

int dns_filter_new(struct loop *l, const struct net_addr *listen, const struct net_addr *upstream,
                   struct audit *audit, struct dns_filter **ret)
{
    struct dns_filter *f;
    int r;

    f = xcalloc(1, sizeof(*f));
    f->loop = l;
    f->audit = audit;
    f->listen = *listen;
    f->udp_fd = f->tcp_fd = -1;
    f->rnd_pos = sizeof(f->rnd);
    f->flush = xcalloc(1, sizeof(*f->flush));
    f->flush->f = f;
    loop_timer_init(&f->agg_timer, on_agg_timer, f);

    if (upstream) {
        f->upstream = *upstream;
        f->have_upstream = true;
    } else if (dns_resolv_conf_upstream("/etc/resolv.conf", &f->upstream) == 0) {
        f->have_upstream = true;
    }
    if (f->have_upstream && sockaddr_eq(&f->upstream.ss, &listen->ss)) {
        if (upstream) {
            free(f->flush);
            free(f);
            return -ELOOP;
        }
        f->have_upstream = false; /* resolv.conf points at us: forwarding would loop */
    }
    if (!f->have_upstream)
        log_warn("dns: no upstream resolver: allowlisted names will get SERVFAIL");

    /* With port 0 (tests) the kernel picks the UDP port and TCP must take the same one, which
     * may be in use for TCP: try a few times. */
    for (int i = 0; i < 16; i++) {
        struct net_addr bound = *listen;
        r = net_bind_udp(listen);
        if (r < 0)
            goto fail;
        f->udp_fd = r;
        bound.len = sizeof(bound.ss);
        if (getsockname(f->udp_fd, (struct sockaddr *)&bound.ss, &bound.len) < 0) {
            r = -errno;
            goto fail;
        }
        f->listen = bound;
        r = net_listen_tcp(&bound, 64);
        if (r >= 0 || r != -EADDRINUSE || net_addr_port((const struct sockaddr *)&listen->ss))
            break;
        close(f->udp_fd);
        f->udp_fd = -1;
    }
    if (r < 0)
        goto fail;
    f->tcp_fd = r;
    r = loop_add(l, &f->udp_src, f->udp_fd, EPOLLIN, on_udp, f);
    if (r < 0)
        goto fail;
    r = loop_add(l, &f->tcp_src, f->tcp_fd, EPOLLIN, on_tcp_accept, f);
    if (r < 0)
        goto fail;
    *ret = f;
    return 0;
fail:
    dns_filter_free(f);
    return r;
}

void dns_filter_get_listen(const struct dns_filter *f, struct net_addr *ret)
{
    *ret = f->listen;
}
