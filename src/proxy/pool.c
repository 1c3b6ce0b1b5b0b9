/* The upstream connection pool (pool.h). */
#include "proxy/pool.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/net.h"
#include "common/xalloc.h"
#include "proxy/proxy-int.h"

struct upool_entry {
    struct upool *pool;
    struct upool_entry *prev, *next; /* the pool's list, most recently put first */
    char host[BB_MAX_HOSTNAME + 1];
    uint16_t port;
    bool tls;
    struct sockaddr_storage addr;
    struct side s; /* s.src: watched for EOF / bytes while idle */
    struct loop_timer timer;
    struct loop_defer free_defer;
};

struct upool {
    struct loop *loop;
    struct upool_limits lim;
    struct upool_entry *head, *tail;
    unsigned n;
    struct upool_stats st;
};

bool upool_side_alive(struct side *s)
{
    char b;
    ssize_t n;

    if (s->fd < 0 || s->eof)
        return false;
    if (side_pending(s))
        return false; /* the transport holds bytes nobody asked for */
    if (s->tp == &transport_tls)
        return tls_side_idle_alive(s);
    /* A look at the socket itself, beneath any transport: EOF, an error or any byte. */
    n = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct upool *upool_new(struct loop *l, const struct upool_limits *lim)
{
    struct upool *p = xcalloc(1, sizeof(*p));

    p->loop = l;
    p->lim = *lim;
    return p;
}

static void entry_unlink(struct upool *p, struct upool_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        p->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        p->tail = e->prev;
    e->prev = e->next = NULL;
    p->n--;
    loop_del(p->loop, &e->s.src);
    loop_timer_stop(p->loop, &e->timer);
}

static void entry_free_deferred(struct loop_defer *d)
{
    free(d->userdata);
}

/* The entry's memory goes after the dispatch pass: a later event of the same epoll batch may
 * still point at its (unregistered) source (loop.h). */
static void entry_free(struct upool *p, struct upool_entry *e)
{
    loop_defer(p->loop, &e->free_defer, entry_free_deferred, e);
}

/* Unlink, close, free. */
static void entry_drop(struct upool *p, struct upool_entry *e)
{
    entry_unlink(p, e);
    e->s.tp->close(&e->s);
    e->s.fd = -1;
    entry_free(p, e);
}

static void on_entry_io(struct loop_source *src, uint32_t events)
{
    struct upool_entry *e = src->userdata;
    struct upool *p = e->pool;

    (void)events;
    /* Readable or an error while idle: alive only if that was a post-handshake TLS message. */
    if (upool_side_alive(&e->s))
        return;
    p->st.discarded++;
    entry_drop(p, e);
}

static void on_entry_timer(struct loop_timer *t)
{
    struct upool_entry *e = t->userdata;
    struct upool *p = e->pool;

    p->st.discarded++;
    entry_drop(p, e);
}

void upool_flush(struct upool *p)
{
    if (!p)
        return;
    while (p->head)
        entry_drop(p, p->head);
}

struct upool *upool_free(struct upool *p)
{
    if (!p)
        return NULL;
    upool_flush(p);
    free(p);
    return NULL;
}

static bool entry_is(const struct upool_entry *e, const char *host, uint16_t port, bool tls)
{
    return e->port == port && e->tls == tls && strcmp(e->host, host) == 0;
}

bool upool_put(struct upool *p, struct side *s, const char *host, uint16_t port,
               const struct sockaddr_storage *addr, bool tls)
{
    struct upool_entry *e, *oldest = NULL;
    unsigned same = 0;

    if (s->fd < 0)
        return false;
    if (!p || !p->lim.max_total || !p->lim.max_per_host || s->wshut ||
        strlen(host) >= sizeof(e->host) || !upool_side_alive(s)) {
        s->tp->close(s);
        side_init(s);
        return false;
    }
    /* Room: the oldest of the same key first, else the oldest of all. */
    for (e = p->head; e; e = e->next)
        if (entry_is(e, host, port, tls)) {
            same++;
            oldest = e;
        }
    if (same >= p->lim.max_per_host)
        entry_drop(p, oldest);
    else if (p->n >= p->lim.max_total)
        entry_drop(p, p->tail);

    e = xcalloc(1, sizeof(*e));
    e->pool = p;
    snprintf(e->host, sizeof(e->host), "%s", host);
    e->port = port;
    e->tls = tls;
    e->addr = *addr;
    e->s.fd = s->fd;
    e->s.tp = s->tp;
    e->s.tp_ctx = s->tp_ctx;
    side_init(s);
    loop_timer_init(&e->timer, on_entry_timer, e);
    if (loop_add(p->loop, &e->s.src, e->s.fd, EPOLLIN | EPOLLRDHUP, on_entry_io, e) < 0) {
        e->s.tp->close(&e->s);
        free(e);
        return false;
    }
    loop_timer_set_in(p->loop, &e->timer, p->lim.idle_ms);
    e->next = p->head;
    if (p->head)
        p->head->prev = e;
    else
        p->tail = e;
    p->head = e;
    p->n++;
    p->st.puts++;
    return true;
}

bool upool_take(struct upool *p, const char *host, uint16_t port,
                const struct sockaddr_storage *addrs, size_t naddrs, bool tls, struct side *s,
                struct sockaddr_storage *ret_addr)
{
    struct upool_entry *e, *next;

    if (!p)
        return false;
    for (e = p->head; e; e = next) {
        bool addr_ok = false;
        next = e->next;
        if (!entry_is(e, host, port, tls))
            continue;
        for (size_t i = 0; i < naddrs && !addr_ok; i++)
            addr_ok = net_addr_equal(&e->addr, &addrs[i]);
        if (!addr_ok)
            continue;
        /* The loop may not have told us yet about a close that already arrived. */
        if (!upool_side_alive(&e->s)) {
            p->st.discarded++;
            entry_drop(p, e);
            continue;
        }
        entry_unlink(p, e);
        side_init(s);
        s->fd = e->s.fd;
        s->tp = e->s.tp;
        s->tp_ctx = e->s.tp_ctx;
        *ret_addr = e->addr;
        entry_free(p, e);
        p->st.hits++;
        return true;
    }
    p->st.misses++;
    return false;
}

void upool_get_stats(const struct upool *p, struct upool_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!p)
        return;
    *ret = p->st;
    ret->idle = p->n;
}
