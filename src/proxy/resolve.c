#include "proxy/resolve.h"

#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/xalloc.h"

struct resolver_sock {
    struct loop_source src;
    struct resolver *r;
    bool used;
};

/*
 * Answers kept for their TTL (at most RESOLVE_CACHE_TTL_MAX_S), so the CONNECTs of one burst
 * (npm opening many connections to its registry) do not each wait for a DNS round trip.
 * Only successful c-ares answers are kept; every address is still vetted by the caller on
 * every use (the SSRF guard), and a name keeps its answer until the TTL ends, so a rebinding
 * upstream cannot change it between two connections sooner than its own TTL said.
 */
#define RESOLVE_CACHE_MAX 128
#define RESOLVE_CACHE_TTL_MAX_S 60
#define RESOLVE_NAME_MAX 254

struct resolve_cached {
    char name[RESOLVE_NAME_MAX]; /* "" when the slot is free */
    uint64_t expires;            /* loop_now() ns */
    size_t n;
    struct sockaddr_storage addrs[BB_MAX_ADDRS];
};

struct resolver {
    struct loop *loop;
    struct resolve_cached *cache; /* RESOLVE_CACHE_MAX slots; NULL for an answering resolver */
    ares_channel channel;         /* NULL when answer is set */
    resolver_answer_fn answer;    /* resolver_new_answering() */
    void *answer_ud;
    struct loop_timer timer;
    struct resolver_sock socks[BB_RESOLVER_MAX_SOCKS];
};

struct resolve_req {
    struct resolver *r;
    char name[RESOLVE_NAME_MAX]; /* what to cache the answer under ("": not cached) */
    resolve_fn fn;               /* NULL: cancelled */
    void *userdata;
    /* The result, delivered from deferred work so the callback never runs inside
     * resolver_lookup() or inside c-ares. */
    struct loop_defer defer;
    int status;
    size_t n;
    struct sockaddr_storage addrs[BB_MAX_ADDRS];
};

static void resolver_rearm(struct resolver *r);

static void on_sock(struct loop_source *src, uint32_t events)
{
    struct resolver_sock *s = src->userdata;
    struct resolver *r = s->r;
    int fd = src->fd;

    ares_process_fd(r->channel, (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
                    (events & EPOLLOUT) ? fd : ARES_SOCKET_BAD);
    resolver_rearm(r);
}

static void on_timer(struct loop_timer *t)
{
    struct resolver *r = t->userdata;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    resolver_rearm(r);
}

/* c-ares tells us which sockets it wants watched. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct resolver_sock *s = NULL, *free_slot = NULL;
    uint32_t ev = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);

    for (size_t i = 0; i < ARRAY_SIZE(r->socks); i++) {
        if (r->socks[i].used && r->socks[i].src.fd == fd)
            s = &r->socks[i];
        else if (!r->socks[i].used && !free_slot)
            free_slot = &r->socks[i];
    }
    if (!ev) {
        if (s) {
            loop_del(r->loop, &s->src);
            s->used = false;
        }
        return;
    }
    if (s) {
        loop_mod(r->loop, &s->src, ev);
        return;
    }
    if (!free_slot) {
        log_debug("resolver: too many sockets");
        return;
    }
    free_slot->r = r;
    if (loop_add(r->loop, &free_slot->src, fd, ev, on_sock, free_slot) == 0)
        free_slot->used = true;
}

static void resolver_rearm(struct resolver *r)
{
    struct timeval tv, *tvp;

    tvp = ares_timeout(r->channel, NULL, &tv);
    if (!tvp) {
        loop_timer_stop(r->loop, &r->timer);
        return;
    }
    loop_timer_set(r->loop, &r->timer,
                   loop_now(r->loop) + (uint64_t)tvp->tv_sec * 1000000000ull +
                       (uint64_t)tvp->tv_usec * 1000ull);
}

static struct resolve_cached *cache_find(struct resolver *r, const char *name)
{
    uint64_t now = loop_now(r->loop);

    for (size_t i = 0; i < RESOLVE_CACHE_MAX; i++) {
        struct resolve_cached *e = &r->cache[i];
        if (e->name[0] && strcmp(e->name, name) == 0) {
            if (e->expires > now)
                return e;
            e->name[0] = '\0'; /* expired */
            return NULL;
        }
    }
    return NULL;
}

static void cache_put(struct resolver *r, const char *name, uint32_t ttl_s,
                      const struct sockaddr_storage *addrs, size_t n)
{
    uint64_t now = loop_now(r->loop);
    struct resolve_cached *slot = NULL;

    if (!ttl_s || !n || !name[0])
        return;
    /* The name's own slot, else a free or expired one, else the one that ends first. */
    for (size_t i = 0; i < RESOLVE_CACHE_MAX; i++) {
        struct resolve_cached *e = &r->cache[i];
        if (e->name[0] && strcmp(e->name, name) == 0) {
            slot = e;
            break;
        }
        if (!e->name[0] || e->expires <= now) {
            if (!slot || slot->name[0])
                slot = e;
        } else if (!slot || (slot->name[0] && e->expires < slot->expires)) {
            slot = e;
        }
    }
    ttl_s = MIN(ttl_s, (uint32_t)RESOLVE_CACHE_TTL_MAX_S);
    memcpy(slot->name, name, strlen(name) + 1);
    slot->expires = now + (uint64_t)ttl_s * 1000000000ull;
    slot->n = MIN(n, (size_t)BB_MAX_ADDRS);
    memcpy(slot->addrs, addrs, slot->n * sizeof(addrs[0]));
}

int resolver_new(struct loop *l, const struct net_addr *upstream, struct resolver **ret)
{
    struct resolver *r;
    struct ares_options opts = { 0 };
    int optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
                  ARES_OPT_DOMAINS | ARES_OPT_NDOTS;
    int st;
    static bool lib_init;

    if (!lib_init) {
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
            return -EIO;
        lib_init = true;
    }
    r = xcalloc(1, sizeof(*r));
    r->loop = l;
    loop_timer_init(&r->timer, on_timer, r);
    opts.sock_state_cb = sock_state_cb;
    opts.sock_state_cb_data = r;
    opts.timeout = 2000;
    opts.tries = 3;
    /* Resolve exactly the name the bottle asked for: no search list and no ndots rule, or a
     * bottle-chosen label plus the host's search domain ("x" -> "x.corp.example") would go to
     * the host's resolver. An empty domain list set here keeps c-ares from reading one from
     * resolv.conf, LOCALDOMAIN or the host name; NOSEARCH and ndots 1 say the same again. */
    opts.flags = ARES_FLAG_NOSEARCH;
    opts.domains = NULL;
    opts.ndomains = 0;
    opts.ndots = 1;
    if (upstream) {
        /* An explicit resolver: DNS only, never /etc/hosts. */
        opts.lookups = (char *)"b";
        optmask |= ARES_OPT_LOOKUPS;
    }
    st = ares_init_options(&r->channel, &opts, optmask);
    if (st != ARES_SUCCESS) {
        free(r);
        return -EIO;
    }
    r->cache = xcalloc(RESOLVE_CACHE_MAX, sizeof(*r->cache));
    if (upstream) {
        struct ares_addr_port_node node = { 0 };
        const struct sockaddr *sa = (const struct sockaddr *)&upstream->ss;
        node.family = sa->sa_family;
        if (sa->sa_family == AF_INET)
            memcpy(&node.addr.addr4, &((const struct sockaddr_in *)sa)->sin_addr,
                   sizeof(struct in_addr));
        else
            memcpy(&node.addr.addr6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                   sizeof(struct in6_addr));
        node.udp_port = node.tcp_port = net_addr_port(sa);
        st = ares_set_servers_ports(r->channel, &node);
        if (st != ARES_SUCCESS) {
            ares_destroy(r->channel);
            free(r->cache);
            free(r);
            return -EINVAL;
        }
    }
    *ret = r;
    return 0;
}

int resolver_new_answering(struct loop *l, resolver_answer_fn fn, void *userdata,
                           struct resolver **ret)
{
    struct resolver *r = xcalloc(1, sizeof(*r));

    r->loop = l;
    r->answer = fn;
    r->answer_ud = userdata;
    loop_timer_init(&r->timer, on_timer, r);
    *ret = r;
    return 0;
}

struct resolver *resolver_free(struct resolver *r)
{
    if (!r)
        return NULL;
    /* ares_destroy calls pending callbacks with ARES_EDESTRUCTION; they free their requests. */
    if (r->channel)
        ares_destroy(r->channel);
    for (size_t i = 0; i < ARRAY_SIZE(r->socks); i++)
        if (r->socks[i].used)
            loop_del(r->loop, &r->socks[i].src);
    loop_timer_stop(r->loop, &r->timer);
    free(r->cache);
    free(r);
    return NULL;
}

static void deliver(struct loop_defer *d)
{
    struct resolve_req *q = d->userdata;

    if (q->fn)
        q->fn(q->userdata, q->status, q->addrs, q->status ? 0 : q->n);
    free(q);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct resolve_req *q = arg;
    struct sockaddr_storage *addrs = q->addrs;
    size_t n = 0;
    int err = 0;
    uint32_t ttl = RESOLVE_CACHE_TTL_MAX_S;
    (void)timeouts;

    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *ai = res->nodes; ai && n < BB_MAX_ADDRS; ai = ai->ai_next) {
            if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                continue;
            if ((size_t)ai->ai_addrlen > sizeof(addrs[0]))
                continue;
            memset(&addrs[n], 0, sizeof(addrs[n]));
            memcpy(&addrs[n], ai->ai_addr, (size_t)ai->ai_addrlen);
            n++;
            /* the shortest TTL of the addresses kept (the CNAMEs' are not reported) */
            ttl = MIN(ttl, ai->ai_ttl > 0 ? (uint32_t)ai->ai_ttl : 0u);
        }
        if (!n)
            err = -ENOENT;
        else
            cache_put(q->r, q->name, ttl, addrs, n);
    } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        err = -ENOENT;
    } else if (status == ARES_ETIMEOUT) {
        err = -ETIMEDOUT;
    } else {
        err = -EIO;
    }
    if (res)
        ares_freeaddrinfo(res);
    q->status = err;
    q->n = n;
    loop_defer(q->r->loop, &q->defer, deliver, q);
}

struct resolve_req *resolver_lookup(struct resolver *r, const char *name, resolve_fn fn,
                                    void *userdata)
{
    struct resolve_req *q = xcalloc(1, sizeof(*q));
    struct ares_addrinfo_hints hints = { 0 };

    q->r = r;
    q->fn = fn;
    q->userdata = userdata;
    if (r->answer) {
        int n = r->answer(r->answer_ud, name, q->addrs, ARRAY_SIZE(q->addrs));
        q->status = n > 0 ? 0 : n < 0 ? n : -ENOENT;
        q->n = n > 0 ? MIN((size_t)n, ARRAY_SIZE(q->addrs)) : 0;
        loop_defer(r->loop, &q->defer, deliver, q);
        return q;
    }
    const struct resolve_cached *hit = cache_find(r, name);
    if (hit) {
        q->n = hit->n;
        memcpy(q->addrs, hit->addrs, hit->n * sizeof(hit->addrs[0]));
        loop_defer(r->loop, &q->defer, deliver, q);
        return q;
    }
    if (strlen(name) < sizeof(q->name))
        memcpy(q->name, name, strlen(name) + 1);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;
    /* c-ares may complete synchronously (e.g. /etc/hosts): on_addrinfo only queues. */
    ares_getaddrinfo(r->channel, name, NULL, &hints, on_addrinfo, q);
    resolver_rearm(r);
    return q;
}

void resolve_req_cancel(struct resolve_req *q)
{
    if (q)
        q->fn = NULL;
}
