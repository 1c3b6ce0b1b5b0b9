/*
 * The DNS filter (see filter.h, filter-int.h and docs/dns.md): the decision, the UDP server,
 * replies to UDP clients, per-client accounting and audit, setup and teardown. The cache is in
 * cache.c, forwarding in upstream.c, TCP clients in tcp.c.
 *
 * Hot path (a denied name over UDP): recvmmsg() a batch, parse header + question in place,
 * dns_name_to_text() + host_parse() + policy_check_host() on the stack, write NXDOMAIN by
 * copying the question, sendmmsg() the batch. No allocation there except the audit line of the
 * first of each distinct decision per audit window (repeats are only counted, audit_note()).
 * Allowlisted names are answered from the cache or forwarded (dns_up_forward()); UDP answers
 * to clients leave in one sendmmsg() per loop pass.
 */
#include "dns/filter.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "dlp/dlp.h"
#include "dns/filter-int.h"

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
        loop_timer_set_in(f->loop, &f->agg_timer, AUDIT_AGG_WINDOW_MS);
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
void dns_reply_udp(struct dns_filter *f, const struct sockaddr_storage *peer, socklen_t peer_len,
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

int dns_handle_query(struct dns_filter *f, const uint8_t *msg, size_t len,
                     const struct sockaddr_storage *peer, socklen_t peer_len, struct dns_tcp *conn,
                     uint8_t *reply, size_t reply_size, size_t max_reply)
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
    {
        /* An allowed (wildcard) name with a random-looking label: the shape of data carried
         * out in DNS questions (docs/dlp.md, rule dns-entropy). */
        struct dlp_ctx x = { .disabled = policy_dlp_off(f->policy), .host = text };
        int hit = dlp_check_host(&x, text, strlen(text));
        if (hit != DLP_NONE) {
            /* the record names the domain, never the random labels (they may be the data) */
            char red[DNS_MAX_NAME_TEXT + 16];
            size_t cut = dlp_host_redact_len(text, strlen(text));
            snprintf(red, sizeof(red), "(redacted)%s", text + cut);
            f->stats.denied++;
            audit_decision(f, red, q.qtype, false, dlp_rule_reason(hit));
            return dns_reply_build(msg, &q, DNS_RCODE_NXDOMAIN, reply, reply_size);
        }
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

    struct dns_cache_entry *e = dns_cache_find(&f->cache, loop_now(f->loop), msg, &q);
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
    dns_up_forward(f, cl, msg, &q, text, peer, peer_len, conn);
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
            int r = dns_handle_query(f, f->rbuf[i], len, &f->raddr[i], mh->msg_namelen, NULL,
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
        dns_up_flush_sends(f);
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
        dns_cache_clear(&f->cache); /* allow_cidr decides what answers keep */
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
        dns_up_finish(up); /* its memory goes in the loop's deferred work (touches nothing else) */
    }
    while (f->conns)
        dns_tcp_free(f->conns);
    for (size_t i = 0; i < DNS_UP_POOL; i++)
        if (f->pool[i])
            dns_usock_close(f->pool[i]); /* memory: deferred, touches nothing else */
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
    dns_cache_clear(&f->cache);
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
    if (f->have_upstream && net_addr_equal(&f->upstream.ss, &listen->ss)) {
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
        r = net_listen_tcp(&bound, DNS_TCP_BACKLOG);
        /* done: bound, another error, or a fixed port that is taken */
        if (r != -EADDRINUSE || net_addr_port((const struct sockaddr *)&listen->ss))
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
    r = loop_add(l, &f->tcp_src, f->tcp_fd, EPOLLIN, dns_tcp_on_accept, f);
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
