/*
 * Forwarding for the DNS filter (see filter-int.h and docs/dns.md, "Forwarding"): allowlisted
 * queries go to the upstream resolver from a pool of DNS_UP_POOL connected UDP sockets on random
 * ports (each replaced after DNS_UP_SOCK_USES queries or DNS_UP_SOCK_AGE_MS) with a random ID
 * per try (getrandom), lower-cased and with our own EDNS record (nothing the client put in its
 * query but the question and RD/CD/DO travels). Queries forwarded from one client batch share a
 * socket drawn at random and leave in one sendmmsg(); answers are read with recvmmsg() and go to
 * the query waiting on that socket with that ID, which must then match the question; the socket
 * being connected, only the upstream address can reach it. Address records in refused ranges
 * are removed (policy_check_addr), the rest is cached and relayed. A TCP client whose answer
 * came back truncated is served by asking again over TCP.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "dns/filter-int.h"

/* Random bytes for IDs, ports and hash keys, from a buffer refilled by getrandom(). */
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

/* ---- the upstream socket pool ---- */

static void usock_free(struct loop_defer *d)
{
    free(d->userdata);
}

void dns_usock_close(struct dns_usock *s)
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
        dns_usock_close(s);
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
        dns_usock_close(s);
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
void dns_up_finish(struct dns_up *up)
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
        dns_tcp_query_done(c);
    }
    loop_defer(f->loop, &up->defer, up_defer_free, up);
}

static void up_reply(struct dns_up *up, const uint8_t *msg, size_t len)
{
    if (up->conn)
        dns_tcp_send(up->conn, msg, len);
    else
        dns_reply_udp(up->f, &up->peer, up->peer_len, msg, len);
}

static void up_reply_rcode(struct dns_up *up, unsigned rcode)
{
    uint8_t out[DNS_QUESTION_MAX + DNS_OPT_LEN];
    int n = dns_reply_build(up->query, &up->q, rcode, out, sizeof(out));
    if (n > 0)
        up_reply(up, out, (size_t)n);
}

struct keep_ctx {
    struct dns_filter *f;
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
    struct keep_ctx k = { .f = f };
    uint8_t *stored = f->scratch2;
    uint32_t ttl;
    int n, r;

    n = dns_resp_filter(msg, len, up->id, up->lname, up->q.qname_len, up->q.qtype, up->q.qclass,
                        keep_rr, &k, stored, sizeof(f->scratch2) - DNS_OPT_LEN, info);
    if (n == -EBADMSG)
        return -EBADMSG;
    if (n < 0) { /* too many records, or does not fit */
        up_reply_rcode(up, DNS_RCODE_SERVFAIL);
        dns_up_finish(up);
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
                dns_up_finish(up);
            }
            return 0;
        }
        /* A UDP client retries over TCP itself. */
        n = dns_answer_finalize(stored, (size_t)n, NULL, 0, 0, up->query, &up->q, 0, f->scratch,
                                sizeof(f->scratch));
        if (n > 0)
            up_reply(up, f->scratch, (size_t)n);
        dns_up_finish(up);
        return 0;
    }
    if (info->rcode != DNS_RCODE_NOERROR && info->rcode != DNS_RCODE_NXDOMAIN) {
        /* SERVFAIL, REFUSED, ...: relayed without records, never cached. */
        up_reply_rcode(up, info->rcode > 15 ? DNS_RCODE_SERVFAIL : info->rcode);
        dns_up_finish(up);
        return 0;
    }
    /* Cache: positive answers for their smallest TTL, negative ones per RFC 2308 5. */
    if (info->rcode == DNS_RCODE_NOERROR && info->counts[DNS_SEC_ANSWER])
        ttl = MIN(info->min_ttl, DNS_CACHE_MAX_TTL);
    else
        ttl = info->has_soa ? MIN(info->neg_ttl, DNS_CACHE_MAX_NEG_TTL) : 0;
    if (!(info->flags & DNS_FLAG_TC))
        dns_cache_store(&f->cache, loop_now(f->loop), up->query, &up->q, stored, (size_t)n, info,
                        ttl);
    r = dns_answer_finalize(stored, (size_t)n, info->ttl_off, info->n_ttl, 0, up->query, &up->q,
                            up->conn ? DNS_MAX_MSG : dns_query_max_udp(&up->q), f->scratch,
                            sizeof(f->scratch));
    if (r > 0)
        up_reply(up, f->scratch, (size_t)r);
    else
        up_reply_rcode(up, DNS_RCODE_SERVFAIL);
    dns_up_finish(up);
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

/* The upstream over TCP: write the query, then read one length-prefixed answer. */
static void on_up_tcp(struct loop_source *src, uint32_t events)
{
    struct dns_up *up = src->userdata;
    ssize_t n;

    (void)events; /* the socket error and recv() tell all */
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
    dns_up_finish(up);
}

static void on_up_timeout(struct loop_timer *t)
{
    struct dns_up *up = t->userdata;

    if (!up->tcp && up->tries < DNS_UPSTREAM_TRIES && up_send(up) == 0)
        return;
    up->f->stats.upstream_timeouts++;
    /* The query was recorded as allowed before it was forwarded: say that it got no answer. */
    if (up->f->audit) {
        char tbuf[16];
        struct audit_event ev = {
            .kind = AUDIT_DNS,
            .host = up->host,
            .allow = true,
            .reason = "upstream-timeout",
            .qtype = dns_type_name(up->q.qtype, tbuf),
        };
        audit_note(up->f->audit, &ev);
    }
    up_reply_rcode(up, DNS_RCODE_SERVFAIL);
    dns_up_finish(up);
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

void dns_up_flush_sends(struct dns_filter *f)
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
        dns_up_flush_sends(f);
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
    uint8_t q[DNS_QUESTION_MAX + DNS_OPT_LEN];
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
        r = loop_add(f->loop, &up->src, fd, EPOLLOUT, on_up_tcp, up);
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

void dns_up_forward(struct dns_filter *f, struct dns_client *cl, const uint8_t *msg,
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
        dns_up_finish(up);
    }
}
