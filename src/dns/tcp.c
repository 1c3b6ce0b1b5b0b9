/*
 * TCP clients of the DNS filter (RFC 7766; see filter-int.h and docs/dns.md, "TCP"): each
 * message behind a 2-byte length prefix, queries pipelined on one connection and answered as
 * they complete. Caps: DNS_MAX_TCP_CONNS connections, DNS_TCP_MAX_QUERY bytes per query,
 * DNS_TCP_MAX_PENDING queries in flight per connection (reading pauses), DNS_TCP_WBUF_MAX bytes
 * of unread answers (then the connection is closed), DNS_TCP_IDLE_MS idle.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "dns/filter-int.h"

static void tcp_update_events(struct dns_tcp *c);

void dns_tcp_free(struct dns_tcp *c)
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
    dns_tcp_free(d->userdata);
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

void dns_tcp_send(struct dns_tcp *c, const uint8_t *msg, size_t len)
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
    c->reading = !c->eof && c->pending < DNS_TCP_MAX_PENDING && c->wbuf.len < DNS_TCP_WBUF_PAUSE;
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
        int n = dns_handle_query(f, c->rbuf + off + 2, mlen, &c->peer, c->peer_len, c, f->scratch,
                                 sizeof(f->scratch), DNS_MAX_MSG);
        off += 2 + mlen;
        if (n > 0)
            dns_tcp_send(c, f->scratch, (size_t)n);
    }
    c->processing = false;
    if (c->closing)
        return;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
}

void dns_tcp_query_done(struct dns_tcp *c)
{
    if (c->closing) {
        if (c->pending == 0)
            loop_defer(c->f->loop, &c->defer, tcp_defer_free, c);
        return;
    }
    tcp_process(c); /* queries held back by DNS_TCP_MAX_PENDING */
    if (c->eof && c->pending == 0 && c->wbuf.len == 0)
        tcp_close(c);
    else if (!c->closing)
        tcp_update_events(c);
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

void dns_tcp_on_accept(struct loop_source *src, uint32_t events)
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
