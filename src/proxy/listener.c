/*
 * The listener: accept (and shed connections when out of descriptors), adopt a handed-off
 * fd, drain, free; the proxy's public entry points (proxy.h).
 */
#include "proxy/proxy-int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"

/* ---------------------------------------------------------------- lifetime */

/*
 * A piece of deferred work that pointed at px has run: free a proxy that proxy_free() left to
 * the last of them, or report a finished drain.
 */
void proxy_deferred_done(struct proxy *px)
{
    px->pending--;
    if (px->dead) {
        if (!px->pending) {
            dlp_free(px->dlp);
            free(px);
        }
        return;
    }
    if (px->drain_fn && !px->conns) {
        void (*fn)(void *) = px->drain_fn;
        px->drain_fn = NULL;
        fn(px->drain_ud);
    }
}

int proxy_adopt(struct proxy *px, int fd)
{
    int r;

    if (proxy_refuse_if_busy(px, fd))
        return 0;
    r = fd_set_nonblock(fd, true);
    if (r >= 0)
        r = conn_new(px, fd);
    if (r < 0)
        close(fd);
    return r;
}

static void on_accept(struct loop_source *src, uint32_t events)
{
    struct proxy *px = src->userdata;
    (void)events;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = net_accept(px->lfd, SOCK_NONBLOCK, &px->spare_fd);
        if (fd == -ECONNREFUSED) {
            /* out of descriptors: net_accept closed it */
            px->st.refused_busy++;
            proxy_audit_refused_conn(px, "out-of-descriptors", 0);
            continue;
        }
        if (fd < 0)
            return; /* EAGAIN: done */
        if (proxy_refuse_if_busy(px, fd))
            continue;
        if (conn_new(px, fd) < 0)
            close(fd);
    }
}

void proxy_limits_default(struct proxy_limits *ret)
{
    ret->max_conns = BB_MAX_CONNS;
    ret->head_timeout_ms = BB_HEAD_TIMEOUT_MS;
    ret->idle_timeout_ms = BB_IDLE_TIMEOUT_MS;
    ret->connect_timeout_ms = BB_CONNECT_TIMEOUT_MS;
    ret->resolve_timeout_ms = BB_RESOLVE_TIMEOUT_MS;
    ret->run_budget = 64;
    ret->hold_blocked_ms = 0; /* refused at once */
    ret->pool.max_total = UPOOL_MAX_TOTAL;
    ret->pool.max_per_host = UPOOL_MAX_PER_HOST;
    ret->pool.idle_ms = UPOOL_IDLE_MS;
}

int proxy_new(struct loop *l, const struct net_addr *listen, const struct proxy_limits *limits,
              struct resolver *res, struct audit *audit, struct proxy **ret)
{
    struct proxy *px;
    int fd = -1, r;

    if (listen) {
        fd = net_listen_tcp(listen, 1024);
        if (fd < 0)
            return fd;
    }
    px = xcalloc(1, sizeof(*px));
    px->loop = l;
    px->res = res;
    px->audit = audit;
    px->lfd = fd;
    px->spare_fd = net_spare_fd_open();
    if (limits)
        px->lim = *limits;
    else
        proxy_limits_default(&px->lim);
    px->dlp = dlp_new();
    px->pool = upool_new(l, &px->lim.pool);
    r = fd >= 0 ? loop_add(l, &px->lsrc, fd, EPOLLIN, on_accept, px) : 0;
    if (r < 0) {
        close(fd);
        if (px->spare_fd >= 0)
            close(px->spare_fd);
        dlp_free(px->dlp);
        upool_free(px->pool);
        free(px);
        return r;
    }
    *ret = px;
    return 0;
}

void proxy_set_policy_from_file(struct proxy *px, bool from_file)
{
    px->policy_from_file = from_file;
}

void proxy_set_policy(struct proxy *px, const struct policy *p)
{
    px->policy = p;
    for (struct conn *c = px->conns; c; c = c->next)
        conn_policy_changed(c);
}

void proxy_set_creds(struct proxy *px, const struct cred_store *creds)
{
    px->creds = creds;
}

void proxy_set_tls(struct proxy *px, struct tls_ctx *tls)
{
    px->tls = tls;
}

int proxy_add_secret(struct proxy *px, const char *host, uint16_t port, const void *value,
                     size_t len)
{
    return dlp_add_secret(px->dlp, host, port, value, len);
}

static void drain_now(struct loop_defer *d)
{
    proxy_deferred_done(d->userdata);
}

void proxy_drain(struct proxy *px, void (*fn)(void *), void *userdata)
{
    if (px->lfd >= 0) {
        loop_del(px->loop, &px->lsrc);
        close(px->lfd);
        px->lfd = -1;
    }
    px->drain_fn = fn;
    px->drain_ud = userdata;
    /* Idle keep-alive connections would hold the drain forever: close those now. */
    for (struct conn *c = px->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_READ_HEAD && c->cin.len == 0)
            conn_close(c);
    }
    upool_flush(px->pool); /* idle upstreams: nothing waits for them */
    if (!px->drain_defer.queued) {
        px->pending++;
        loop_defer(px->loop, &px->drain_defer, drain_now, px);
    }
}

void proxy_get_stats(const struct proxy *px, struct proxy_stats *ret)
{
    *ret = px->st;
}

int proxy_local_addr(const struct proxy *px, struct net_addr *ret)
{
    struct net_addr a = { 0 };

    a.len = sizeof(a.ss);
    if (px->lfd < 0)
        return -EBADF;
    if (getsockname(px->lfd, (struct sockaddr *)&a.ss, &a.len) < 0)
        return -errno;
    *ret = a;
    return 0;
}

struct proxy *proxy_free(struct proxy *px)
{
    if (!px)
        return NULL;
    while (px->conns) {
        struct conn *c = px->conns;
        conn_close(c);
    }
    px->pool = upool_free(px->pool);
    if (px->lfd >= 0) {
        loop_del(px->loop, &px->lsrc);
        close(px->lfd);
    }
    if (px->spare_fd >= 0)
        close(px->spare_fd);
    /* Deferred frees of the connections run from the loop (or loop_free); the last one frees
     * the struct. */
    px->drain_fn = NULL;
    px->dead = true;
    if (!px->pending) {
        dlp_free(px->dlp);
        free(px);
    }
    return NULL;
}
