#include "channel/relay.h"
#include "channel/handoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/xalloc.h"

#define RELAY_BACKLOG 128
#define RELAY_ACCEPTS_PER_EVENT 16
#define RELAY_DGRAMS_PER_EVENT 16

enum { LIS_PROXY, LIS_DNS_TCP, LIS_DNS_UDP, LIS_MAX };

struct udp_flow {
    struct channel_guest_relay *r;
    bool used;
    struct sockaddr_storage addr;
    socklen_t alen;
    struct mux_stream *s;
    struct loop_timer idle;
    uint64_t last; /* loop time of the last datagram either way (LRU eviction) */
};

struct channel_guest_relay {
    struct loop *loop;
    struct mux *mux;
    struct channel_guest_config cfg;
    struct loop_source lis[LIS_MAX];
    int fds[LIS_MAX];
    int spare; /* net_accept's reserve descriptor: out of descriptors, no spinning listener */
    struct udp_flow flows[CHANNEL_MAX_UDP_FLOWS];
    uint8_t dgram[CHANNEL_MAX_PAYLOAD];
    bool dead;
    bool freeing;
    struct loop_defer reap;
};

struct channel_host_relay {
    struct loop *loop;
    struct mux *mux;
    struct channel_host_config cfg;
    bool dead;
};

static void close_rst(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

int channel_guest_config_init(struct channel_guest_config *cfg, const char *alias)
{
    struct net_addr a;
    int r = net_addr_parse(alias, CHANNEL_PROXY_PORT, &a);

    if (r < 0)
        return r;
    /* A bare address only: the ports are fixed. */
    if (net_addr_port((struct sockaddr *)&a.ss) != CHANNEL_PROXY_PORT)
        return -EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    cfg->handoff_fd = -1;
    cfg->proxy = a;
    cfg->dns = a;
    net_addr_set_port((struct sockaddr *)&cfg->dns.ss, CHANNEL_DNS_PORT);
    return 0;
}

/* ---- guest: UDP flows ---- */

static void flow_release(struct udp_flow *fl)
{
    loop_timer_stop(fl->r->loop, &fl->idle);
    fl->used = false;
    fl->s = NULL;
}

static void flow_on_recv(struct mux_stream *s, const uint8_t *p, size_t len, void *ud)
{
    struct udp_flow *fl = ud;
    struct channel_guest_relay *r = fl->r;
    (void)s;

    /* A reply goes back to the address that asked; if the socket is full, UDP drops it. */
    (void)sendto(r->fds[LIS_DNS_UDP], p, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                 (struct sockaddr *)&fl->addr, fl->alen);
    fl->last = loop_now(r->loop);
    loop_timer_set_in(r->loop, &fl->idle, CHANNEL_UDP_IDLE_MS);
}

static void flow_on_closed(struct mux_stream *s, void *ud)
{
    struct udp_flow *fl = ud;
    (void)s;
    flow_release(fl);
}

static const struct mux_dgram_ops flow_ops = {
    .recv = flow_on_recv,
    .closed = flow_on_closed,
};

static void flow_on_idle(struct loop_timer *t)
{
    struct udp_flow *fl = t->userdata;

    if (fl->used && fl->s)
        mux_stream_close(fl->s, CHANNEL_RESET_TIMEOUT);
    flow_release(fl);
}

static struct udp_flow *flow_get(struct channel_guest_relay *r, const struct sockaddr_storage *ss,
                                 socklen_t alen)
{
    struct udp_flow *fl = NULL, *lru = NULL;

    for (size_t i = 0; i < CHANNEL_MAX_UDP_FLOWS; i++) {
        struct udp_flow *f = &r->flows[i];
        if (!f->used) {
            if (!fl)
                fl = f;
            continue;
        }
        if (f->alen == alen && memcmp(&f->addr, ss, alen) == 0)
            return f;
        if (!lru || f->last < lru->last)
            lru = f;
    }
    if (!fl) {
        /* Full: the least recently used flow makes room (DNS clients use a port per query). */
        fl = lru;
        mux_stream_close(fl->s, CHANNEL_RESET_TIMEOUT);
        flow_release(fl);
    }
    if (mux_open_dgram(r->mux, CHANNEL_KIND_UDP_DNS, &flow_ops, fl, &fl->s) < 0)
        return NULL;
    fl->used = true;
    memcpy(&fl->addr, ss, alen);
    fl->alen = alen;
    return fl;
}

static void on_udp(struct loop_source *src, uint32_t events)
{
    struct channel_guest_relay *r = src->userdata;
    (void)events;

    for (int i = 0; i < RELAY_DGRAMS_PER_EVENT; i++) {
        struct sockaddr_storage ss;
        socklen_t alen = sizeof(ss);
        struct udp_flow *fl;
        ssize_t n = recvfrom(r->fds[LIS_DNS_UDP], r->dgram, sizeof(r->dgram), MSG_TRUNC,
                             (struct sockaddr *)&ss, &alen);

        if (n < 0)
            return; /* EAGAIN, or an ICMP error for an earlier reply: nothing to do */
        /* Empty or truncated (larger than one frame) datagrams, and anything after the
         * channel died, are dropped. */
        if (n == 0 || (size_t)n > sizeof(r->dgram) || r->dead || alen > sizeof(ss))
            continue;
        fl = flow_get(r, &ss, alen);
        if (!fl)
            continue;
        fl->last = loop_now(r->loop);
        loop_timer_set_in(r->loop, &fl->idle, CHANNEL_UDP_IDLE_MS);
        (void)mux_stream_send_dgram(fl->s, r->dgram, (size_t)n);
    }
}

/* ---- guest: TCP ---- */

static void on_accept(struct loop_source *src, uint32_t events)
{
    struct channel_guest_relay *r = src->userdata;
    enum channel_kind kind =
        src == &r->lis[LIS_PROXY] ? CHANNEL_KIND_TCP_PROXY : CHANNEL_KIND_TCP_DNS;
    (void)events;

    for (int i = 0; i < RELAY_ACCEPTS_PER_EVENT; i++) {
        int fd = net_accept(src->fd, SOCK_NONBLOCK, &r->spare);
        if (fd == -ECONNREFUSED)
            continue; /* out of descriptors: that one was shed */
        if (fd < 0)
            return;
        if (r->dead) {
            close_rst(fd); /* fail closed: no channel, no connection */
            continue;
        }
        if (kind == CHANNEL_KIND_TCP_PROXY && r->cfg.handoff_fd >= 0) {
            int h = handoff_send(r->cfg.handoff_fd, fd);
            if (h == 0) {
                close(fd); /* the daemon has its own reference now */
                continue;
            }
            if (h != -EAGAIN) {
                close_rst(fd); /* the daemon is gone: fail closed */
                continue;
            }
            /* hand-off queue full: relay this one over the channel */
        }
        /* The mux owns fd now, and resets it itself if it cannot open a stream. */
        (void)mux_open_fd(r->mux, kind, fd);
    }
}

static void guest_on_dead(void *ud, int err)
{
    struct channel_guest_relay *r = ud;

    r->dead = true;
    /* The mux has closed every stream; the flows are gone with them. */
    for (size_t i = 0; i < CHANNEL_MAX_UDP_FLOWS; i++)
        if (r->flows[i].used)
            flow_release(&r->flows[i]);
    if (r->cfg.dead)
        r->cfg.dead(r->cfg.userdata, err);
}

/* Host-opened kinds (exec, status) go to the owner's cfg.open_stream; without one the mux
 * answers each such OPEN with RESET(REFUSED) and the channel lives on. */
static int guest_open_stream(void *ud, enum channel_kind kind)
{
    struct channel_guest_relay *r = ud;

    if (!r->cfg.open_stream)
        return -EOPNOTSUPP;
    return r->cfg.open_stream(r->cfg.userdata, kind);
}

static const struct mux_ops guest_mux_ops = {
    .open_stream = guest_open_stream,
    .dead = guest_on_dead,
};

static void guest_reap(struct loop_defer *d)
{
    free(d->userdata);
}

int channel_guest_relay_start(struct loop *loop, int mux_fd, const struct channel_guest_config *cfg,
                              struct channel_guest_relay **ret)
{
    struct channel_guest_relay *r = xcalloc(1, sizeof(*r));
    int res;

    r->loop = loop;
    r->cfg = *cfg;
    for (size_t i = 0; i < LIS_MAX; i++)
        r->fds[i] = -1;
    for (size_t i = 0; i < CHANNEL_MAX_UDP_FLOWS; i++) {
        r->flows[i].r = r;
        loop_timer_init(&r->flows[i].idle, flow_on_idle, &r->flows[i]);
    }
    r->spare = net_spare_fd_open();
    res = mux_new(loop, mux_fd, CHANNEL_ROLE_GUEST, &guest_mux_ops, r, &r->mux);
    if (res < 0) {
        if (r->spare >= 0)
            close(r->spare);
        free(r);
        return res;
    }
    res = net_listen_tcp(&cfg->proxy, RELAY_BACKLOG);
    if (res >= 0) {
        r->fds[LIS_PROXY] = res;
        res = net_listen_tcp(&cfg->dns, RELAY_BACKLOG);
    }
    if (res >= 0) {
        r->fds[LIS_DNS_TCP] = res;
        res = net_bind_udp(&cfg->dns);
    }
    if (res >= 0) {
        r->fds[LIS_DNS_UDP] = res;
        res = loop_add(loop, &r->lis[LIS_PROXY], r->fds[LIS_PROXY], EPOLLIN, on_accept, r);
    }
    if (res >= 0)
        res = loop_add(loop, &r->lis[LIS_DNS_TCP], r->fds[LIS_DNS_TCP], EPOLLIN, on_accept, r);
    if (res >= 0)
        res = loop_add(loop, &r->lis[LIS_DNS_UDP], r->fds[LIS_DNS_UDP], EPOLLIN, on_udp, r);
    if (res < 0) {
        channel_guest_relay_free(r);
        return res;
    }
    *ret = r;
    return 0;
}

struct channel_guest_relay *channel_guest_relay_free(struct channel_guest_relay *r)
{
    if (!r || r->freeing)
        return NULL;
    r->freeing = true;
    for (size_t i = 0; i < LIS_MAX; i++) {
        loop_del(r->loop, &r->lis[i]);
        if (r->fds[i] >= 0)
            close(r->fds[i]);
        r->fds[i] = -1;
    }
    for (size_t i = 0; i < CHANNEL_MAX_UDP_FLOWS; i++)
        loop_timer_stop(r->loop, &r->flows[i].idle);
    if (r->spare >= 0)
        close(r->spare);
    r->spare = -1;
    r->mux = mux_free(r->mux);
    /* Listener sources may still have events in the current dispatch pass. */
    loop_defer(r->loop, &r->reap, guest_reap, r);
    return NULL;
}

int channel_guest_relay_addr(struct channel_guest_relay *r, enum channel_kind kind,
                             struct net_addr *ret)
{
    int idx = kind == CHANNEL_KIND_TCP_PROXY ? LIS_PROXY
              : kind == CHANNEL_KIND_TCP_DNS ? LIS_DNS_TCP
              : kind == CHANNEL_KIND_UDP_DNS ? LIS_DNS_UDP
                                             : -1;
    struct net_addr a;

    if (idx < 0 || r->fds[idx] < 0)
        return -EINVAL;
    a.len = sizeof(a.ss);
    if (getsockname(r->fds[idx], (struct sockaddr *)&a.ss, &a.len) < 0)
        return -errno;
    *ret = a;
    return 0;
}

bool channel_guest_relay_dead(const struct channel_guest_relay *r)
{
    return r->dead;
}

struct mux *channel_guest_relay_mux(struct channel_guest_relay *r)
{
    return r->mux;
}

/* ---- host ---- */

/*
 * Each stream the guest opens costs the host one descriptor, and the channel allows
 * CHANNEL_MAX_STREAMS of them: under the common 1024-descriptor limit a guest could take all
 * of the supervisor's (no control connection, no exec, no `stop` any more). A stream whose fd
 * lands within CHANNEL_HOST_FD_RESERVE of the limit is refused instead (descriptors are
 * allocated lowest first, so the number says how few are left).
 */
static int host_fd_budget(int fd)
{
    struct rlimit rl;

    if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        (rlim_t)fd + CHANNEL_HOST_FD_RESERVE < rl.rlim_cur)
        return fd;
    close_rst(fd);
    return -EMFILE;
}

static int host_open_stream_fd(struct channel_host_relay *r, enum channel_kind kind)
{
    const struct net_addr *a;
    int fd;

    /* The kind alone picks the target; there is no other destination. */
    switch (kind) {
    case CHANNEL_KIND_TCP_PROXY:
        if (r->cfg.proxy_via_handoff) {
            int sp[2], h;
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
                return -errno;
            h = handoff_send(r->cfg.proxy_handoff_fd, sp[1]);
            close(sp[1]);
            if (h < 0) {
                close(sp[0]);
                return h;
            }
            return sp[0];
        }
        return net_connect_tcp((const struct sockaddr *)&r->cfg.proxy.ss, r->cfg.proxy.len);
    case CHANNEL_KIND_TCP_DNS:
        return net_connect_tcp((const struct sockaddr *)&r->cfg.dns.ss, r->cfg.dns.len);
    case CHANNEL_KIND_UDP_DNS:
        a = &r->cfg.dns;
        fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        return fd;
    case CHANNEL_KIND_MAX:
    default:
        return -EINVAL;
    }
}

static int host_open_stream(void *ud, enum channel_kind kind)
{
    return host_fd_budget(host_open_stream_fd(ud, kind));
}

static void host_on_dead(void *ud, int err)
{
    struct channel_host_relay *r = ud;

    r->dead = true;
    if (r->cfg.dead)
        r->cfg.dead(r->cfg.userdata, err);
}

static const struct mux_ops host_mux_ops = {
    .open_stream = host_open_stream,
    .dead = host_on_dead,
};

int channel_host_relay_start(struct loop *loop, int mux_fd, const struct channel_host_config *cfg,
                             struct channel_host_relay **ret)
{
    struct channel_host_relay *r = xcalloc(1, sizeof(*r));
    int res;

    r->loop = loop;
    r->cfg = *cfg;
    res = mux_new(loop, mux_fd, CHANNEL_ROLE_HOST, &host_mux_ops, r, &r->mux);
    if (res < 0) {
        free(r);
        return res;
    }
    *ret = r;
    return 0;
}

struct channel_host_relay *channel_host_relay_free(struct channel_host_relay *r)
{
    if (!r)
        return NULL;
    /* The host relay has no loop sources of its own; the mux defers its own memory. */
    mux_free(r->mux);
    free(r);
    return NULL;
}

bool channel_host_relay_dead(const struct channel_host_relay *r)
{
    return r->dead;
}

struct mux *channel_host_relay_mux(struct channel_host_relay *r)
{
    return r->mux;
}
