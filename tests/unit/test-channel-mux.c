/*
 * Tests for src/channel/mux.c and relay.c: a guest relay and a host relay joined by a
 * socketpair in one process and one loop, with in-process servers on 127.0.0.1 standing in
 * for the egress daemon, plus a "raw" peer that speaks the wire protocol byte by byte to play
 * a malicious guest or host. Only loopback traffic.
 *
 * Time: every loop runs on a fake clock (loop_set_clock) that moves only when a test says so
 * (clock_advance: the UDP idle timeout). Nothing asserts on wall-clock time and nothing
 * sleeps: a test runs the loop until what it waits for has happened (run_until) or until
 * nothing happens any more (run_until_quiet), so "promptly" means "with the clock stopped",
 * and the result does not depend on how loaded the machine is.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cmocka.h>

#include "channel/mux.h"
#include "channel/proto.h"
#include "channel/relay.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/xalloc.h"
#include "unit-util.h"

/* ---- helpers ---- */

static uint64_t fake_ns = 1000000000u;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_ns;
}

static struct loop *test_loop(void)
{
    struct loop *l;
    assert_int_equal(loop_new(&l), 0);
    loop_set_clock(l, fake_clock, NULL);
    return l;
}

static void clock_advance(struct loop *l, uint64_t ms)
{
    fake_ns += ms * 1000000u;
    loop_update_now(l);
}

static uint8_t pat(uint64_t i, uint32_t seed)
{
    uint64_t x = (i + ((uint64_t)seed << 40)) * 0x9E3779B97F4A7C15ull;
    return (uint8_t)(x >> 56);
}

static struct net_addr loopback(uint16_t port)
{
    struct net_addr a;
    assert_int_equal(net_addr_parse("127.0.0.1", port ? port : 1, &a), 0);
    net_addr_set_port((struct sockaddr *)&a.ss, port);
    return a;
}

static uint16_t fd_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &l), 0);
    return net_addr_port((struct sockaddr *)&ss);
}

/* ---- in-process servers (the "egress daemon") ---- */

enum srv_mode { SRV_ECHO, SRV_SINK };

struct sconn {
    struct server *srv;
    int fd;
    struct loop_source src;
    uint8_t buf[65536];
    size_t len;
    uint64_t count;
    bool rd_eof, wr_shut, counted_sent;
    struct sconn *next;
};

struct server {
    struct loop *loop;
    enum srv_mode mode;
    const char *prefix; /* sent first on every connection */
    int fd;
    struct loop_source src;
    struct sconn *conns;
    int accepted;
    int eofs; /* connections whose client half-closed (EOF seen) */
};

static void sconn_sync(struct sconn *c)
{
    uint32_t ev = 0;
    if (c->fd < 0)
        return;
    if (!c->rd_eof && c->len < sizeof(c->buf))
        ev |= EPOLLIN;
    if (c->len > 0 || (c->rd_eof && !c->wr_shut))
        ev |= EPOLLOUT;
    if (ev == 0) {
        loop_del(c->srv->loop, &c->src);
        close(c->fd);
        c->fd = -1;
        return;
    }
    assert_int_equal(loop_mod(c->srv->loop, &c->src, ev), 0);
}

static void on_sconn(struct loop_source *src, uint32_t events)
{
    struct sconn *c = src->userdata;

    if (c->fd < 0)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR) && !c->rd_eof && c->len < sizeof(c->buf)) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
        if (n == 0) {
            c->rd_eof = true;
            c->srv->eofs++;
            if (c->srv->mode == SRV_SINK) {
                memcpy(c->buf, &c->count, 8);
                c->len = 8;
            }
        } else if (n > 0) {
            c->count += (uint64_t)n;
            if (c->srv->mode == SRV_ECHO)
                c->len += (size_t)n;
        } else if (errno != EAGAIN) {
            loop_del(c->srv->loop, &c->src);
            close(c->fd);
            c->fd = -1;
            return;
        }
    }
    if ((events & EPOLLOUT) && c->len > 0) {
        ssize_t n = send(c->fd, c->buf, c->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            memmove(c->buf, c->buf + n, c->len - (size_t)n);
            c->len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN) {
            loop_del(c->srv->loop, &c->src);
            close(c->fd);
            c->fd = -1;
            return;
        }
    }
    if (c->rd_eof && c->len == 0 && !c->wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
    sconn_sync(c);
}

static void on_server(struct loop_source *src, uint32_t events)
{
    struct server *s = src->userdata;
    int fd;
    (void)events;

    while ((fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct sconn *c = xcalloc(1, sizeof(*c));
        c->srv = s;
        c->fd = fd;
        c->next = s->conns;
        s->conns = c;
        s->accepted++;
        if (s->prefix) {
            c->len = strlen(s->prefix);
            memcpy(c->buf, s->prefix, c->len);
        }
        assert_int_equal(loop_add(s->loop, &c->src, fd, EPOLLIN | EPOLLOUT, on_sconn, c), 0);
    }
}

static void server_start(struct server *s, struct loop *l, enum srv_mode mode, const char *prefix,
                         uint16_t port)
{
    struct net_addr a = loopback(port);
    memset(s, 0, sizeof(*s));
    s->loop = l;
    s->mode = mode;
    s->prefix = prefix;
    s->fd = net_listen_tcp(&a, 128);
    assert_true(s->fd >= 0);
    assert_int_equal(loop_add(l, &s->src, s->fd, EPOLLIN, on_server, s), 0);
}

static void server_stop(struct server *s)
{
    loop_del(s->loop, &s->src);
    close(s->fd);
    while (s->conns) {
        struct sconn *c = s->conns;
        s->conns = c->next;
        if (c->fd >= 0) {
            loop_del(s->loop, &c->src);
            close(c->fd);
        }
        free(c);
    }
}

/* UDP echo: replies "u:" + datagram. */
struct udp_echo {
    int fd;
    struct loop_source src;
    int got;
};

static void on_udp_echo(struct loop_source *src, uint32_t events)
{
    struct udp_echo *u = src->userdata;
    uint8_t buf[70000];
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    ssize_t n;
    (void)events;

    while ((n = recvfrom(u->fd, buf + 2, sizeof(buf) - 2, MSG_DONTWAIT, (struct sockaddr *)&ss,
                         &l)) >= 0) {
        u->got++;
        buf[0] = 'u';
        buf[1] = ':';
        sendto(u->fd, buf, (size_t)n + 2, 0, (struct sockaddr *)&ss, l);
        l = sizeof(ss);
    }
}

/* ---- clients (programs inside the bottle) ---- */

struct client {
    struct loop *loop;
    int fd;
    struct loop_source src;
    uint32_t seed;
    uint64_t to_send, sent;
    uint64_t recvd;
    const char *prefix; /* expected before the echo */
    size_t prefix_got;
    bool shut_after_send, shut_done;
    bool paused;    /* stop reading */
    bool sink_mode; /* expect an 8-byte count instead of an echo */
    uint8_t count_buf[8];
    bool eof;
    int err; /* -errno from a failed read/write */
    bool mismatch;
};

static void client_sync(struct client *c)
{
    uint32_t ev = 0;
    if (c->fd < 0)
        return;
    if (c->sent < c->to_send)
        ev |= EPOLLOUT;
    if (!c->paused && !c->eof)
        ev |= EPOLLIN;
    if (ev == 0) {
        loop_del(c->loop, &c->src);
        return;
    }
    if (c->src.registered)
        assert_int_equal(loop_mod(c->loop, &c->src, ev), 0);
    else
        assert_int_equal(loop_add(c->loop, &c->src, c->fd, ev, c->src.cb, c), 0);
}

static void on_client(struct loop_source *src, uint32_t events)
{
    struct client *c = src->userdata;
    static uint8_t buf[65536];

    if (c->fd < 0 || c->err)
        return;
    if ((events & EPOLLOUT) && c->sent < c->to_send) {
        size_t n = (size_t)MIN((uint64_t)sizeof(buf), c->to_send - c->sent);
        ssize_t w;
        if (c->sink_mode)
            memset(buf, 'z', n);
        else
            for (size_t i = 0; i < n; i++)
                buf[i] = pat(c->sent + i, c->seed);
        w = send(c->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            c->sent += (uint64_t)w;
        } else if (w < 0 && errno != EAGAIN) {
            c->err = -errno;
        }
        if (c->sent == c->to_send && c->shut_after_send && !c->shut_done) {
            shutdown(c->fd, SHUT_WR);
            c->shut_done = true;
        }
    }
    if (!c->err && !c->paused && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            c->eof = true;
        } else if (n < 0 && errno != EAGAIN) {
            c->err = -errno;
        } else if (n > 0) {
            size_t i = 0;
            while (c->prefix && c->prefix_got < strlen(c->prefix) && i < (size_t)n) {
                if (buf[i] != (uint8_t)c->prefix[c->prefix_got])
                    c->mismatch = true;
                c->prefix_got++;
                i++;
            }
            for (; i < (size_t)n; i++, c->recvd++) {
                if (c->sink_mode) {
                    if (c->recvd < 8)
                        c->count_buf[c->recvd] = buf[i];
                } else if (buf[i] != pat(c->recvd, c->seed)) {
                    c->mismatch = true;
                }
            }
        }
    }
    if (c->err) {
        loop_del(c->loop, &c->src);
        return;
    }
    client_sync(c);
}

static void client_start(struct client *c, struct loop *l, const struct net_addr *to,
                         uint64_t nbytes, uint32_t seed, bool shut)
{
    memset(c, 0, sizeof(*c));
    c->loop = l;
    c->seed = seed;
    c->to_send = nbytes;
    c->shut_after_send = shut;
    c->fd = net_connect_tcp((const struct sockaddr *)&to->ss, to->len);
    assert_true(c->fd >= 0);
    c->src.cb = on_client;
    if (nbytes == 0 && shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut_done = true;
    }
    client_sync(c);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0) {
        loop_del(c->loop, &c->src);
        close(c->fd);
        c->fd = -1;
    }
}

static bool client_done(const struct client *c)
{
    return c->eof || c->err;
}

/* ---- environment: guest relay <-socketpair-> host relay -> servers ---- */

struct env {
    struct loop *loop;
    struct channel_guest_relay *g;
    struct channel_host_relay *h;
    struct server proxy, dns;
    struct udp_echo udp;
    struct net_addr g_proxy, g_dns_tcp, g_dns_udp;
    int g_dead, h_dead, g_err, h_err;
};

static void on_g_dead(void *ud, int err)
{
    struct env *e = ud;
    e->g_dead++;
    e->g_err = err;
}

static void on_h_dead(void *ud, int err)
{
    struct env *e = ud;
    e->h_dead++;
    e->h_err = err;
}

static void env_start(struct env *e, uint16_t proxy_target_port_override)
{
    int sp[2];
    struct channel_guest_config gc;
    struct channel_host_config hc = { 0 };
    struct net_addr dns_udp;

    memset(e, 0, sizeof(*e));
    e->loop = test_loop();
    server_start(&e->proxy, e->loop, SRV_ECHO, NULL, 0);
    /* DNS: TCP and UDP on the same port (retry if the UDP port happens to be taken). */
    for (int tries = 0;; tries++) {
        server_start(&e->dns, e->loop, SRV_ECHO, "dns:", 0);
        dns_udp = loopback(fd_port(e->dns.fd));
        e->udp.fd = net_bind_udp(&dns_udp);
        if (e->udp.fd >= 0)
            break;
        server_stop(&e->dns);
        assert_true(tries < 20);
    }
    assert_int_equal(loop_add(e->loop, &e->udp.src, e->udp.fd, EPOLLIN, on_udp_echo, &e->udp), 0);

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(channel_guest_config_init(&gc, "127.0.0.1"), 0);
    net_addr_set_port((struct sockaddr *)&gc.proxy.ss, 0);
    net_addr_set_port((struct sockaddr *)&gc.dns.ss, 0);
    gc.dead = on_g_dead;
    gc.userdata = e;
    assert_int_equal(channel_guest_relay_start(e->loop, sp[0], &gc, &e->g), 0);

    hc.proxy =
        loopback(proxy_target_port_override ? proxy_target_port_override : fd_port(e->proxy.fd));
    hc.dns = dns_udp;
    hc.dead = on_h_dead;
    hc.userdata = e;
    assert_int_equal(channel_host_relay_start(e->loop, sp[1], &hc, &e->h), 0);

    assert_int_equal(channel_guest_relay_addr(e->g, CHANNEL_KIND_TCP_PROXY, &e->g_proxy), 0);
    assert_int_equal(channel_guest_relay_addr(e->g, CHANNEL_KIND_TCP_DNS, &e->g_dns_tcp), 0);
    assert_int_equal(channel_guest_relay_addr(e->g, CHANNEL_KIND_UDP_DNS, &e->g_dns_udp), 0);
}

static void env_stop(struct env *e)
{
    e->g = channel_guest_relay_free(e->g);
    e->h = channel_host_relay_free(e->h);
    server_stop(&e->proxy);
    server_stop(&e->dns);
    loop_del(e->loop, &e->udp.src);
    close(e->udp.fd);
    e->loop = loop_free(e->loop);
}

/*
 * Run the loop until pred(arg) holds (true) or nothing happens any more (false): `passes`
 * passes in a row without an event, each one waiting up to wait_ms for one (a loopback packet
 * may still be on its way through the kernel, e.g. in ksoftirqd on a loaded machine). No pass
 * reads a clock, and the waiting is only spent when nothing is happening. RUN_MAX_PASSES stops
 * a livelock.
 */
#define RUN_MAX_PASSES 20000000L

static bool run_loop(struct loop *l, bool (*pred)(void *), void *arg, int passes, int wait_ms)
{
    int quiet = 0;

    for (long pass = 0; !pred(arg); pass++) {
        int n = loop_run_once(l, quiet ? wait_ms : 0);
        assert_true(n >= 0);
        assert_true(pass < RUN_MAX_PASSES);
        quiet = n > 0 ? 0 : quiet + 1;
        if (quiet > passes)
            return false;
    }
    return true;
}

/* Wait for something that must happen: give up only after a second of total silence (costs
 * nothing when it happens). */
static bool run_until(struct loop *l, bool (*pred)(void *), void *arg)
{
    return run_loop(l, pred, arg, 20, 50);
}

/* Let everything settle, then say whether pred holds: for "X must not happen" checks. A short
 * silence ends it; a loaded machine can only make such a check weaker, never fail it. */
static bool run_until_settled(struct loop *l, bool (*pred)(void *), void *arg)
{
    return run_loop(l, pred, arg, 3, 10);
}

static bool pred_never(void *arg)
{
    (void)arg;
    return false;
}

/* Run until every queue that can drain has drained and everything else is stuck. */
static void run_until_quiet(struct loop *l)
{
    assert_false(run_until_settled(l, pred_never, NULL));
}

static bool pred_client_done(void *arg)
{
    return client_done(arg);
}

struct clients {
    struct client *c;
    size_t n;
};

static bool pred_all_done(void *arg)
{
    struct clients *cs = arg;
    for (size_t i = 0; i < cs->n; i++)
        if (!client_done(&cs->c[i]))
            return false;
    return true;
}

static bool pred_streams_zero(void *arg)
{
    struct env *e = arg;
    struct mux_stats gs, hs;
    mux_get_stats(channel_guest_relay_mux(e->g), &gs);
    mux_get_stats(channel_host_relay_mux(e->h), &hs);
    return gs.streams == 0 && hs.streams == 0;
}

static void check_echo(const struct client *c, uint64_t n)
{
    if (c->err)
        fail_msg("client error %d", c->err);
    assert_true(c->eof);
    assert_false(c->mismatch);
    assert_true(c->sent == n);
    assert_true(c->recvd == n);
}

/* ---- tests ---- */

static void test_single_stream(void **state)
{
    struct env e;
    struct client c;
    (void)state;

    env_start(&e, 0);
    client_start(&c, e.loop, &e.g_proxy, 100000, 1, true);
    assert_true(run_until(e.loop, pred_client_done, &c));
    check_echo(&c, 100000);
    assert_null(c.prefix); /* the proxy kind reached the proxy server, not the DNS one */
    client_close(&c);
    /* Both FINs exchanged and the client gone: no stream state is left on either side. */
    assert_true(run_until(e.loop, pred_streams_zero, &e));
    assert_int_equal(e.g_dead + e.h_dead, 0);
    env_stop(&e);
}

static void test_kind_routing(void **state)
{
    struct env e;
    struct client c;
    (void)state;

    env_start(&e, 0);
    /* A:53/tcp reaches the DNS target (which greets with "dns:"), never the proxy. */
    client_start(&c, e.loop, &e.g_dns_tcp, 5000, 2, true);
    c.prefix = "dns:";
    assert_true(run_until(e.loop, pred_client_done, &c));
    check_echo(&c, 5000);
    assert_int_equal(c.prefix_got, 4);
    assert_int_equal(e.dns.accepted, 1);
    assert_int_equal(e.proxy.accepted, 0);
    client_close(&c);
    env_stop(&e);
}

static void test_concurrent_50(void **state)
{
    struct env e;
    struct client *cs = xcalloc(50, sizeof(*cs));
    struct clients all = { cs, 50 };
    (void)state;

    env_start(&e, 0);
    for (size_t i = 0; i < 50; i++)
        client_start(&cs[i], e.loop, &e.g_proxy, 200000 + i * 1000, (uint32_t)(100 + i), true);
    assert_true(run_until(e.loop, pred_all_done, &all));
    for (size_t i = 0; i < 50; i++) {
        check_echo(&cs[i], 200000 + i * 1000);
        client_close(&cs[i]);
    }
    assert_int_equal(e.proxy.accepted, 50);
    assert_true(run_until(e.loop, pred_streams_zero, &e));
    env_stop(&e);
    free(cs);
}

static void test_8mib_both_ways(void **state)
{
    struct env e;
    struct client c;
    uint64_t n = 8u << 20;
    (void)state;

    env_start(&e, 0);
    /* Echo: 8 MiB guest -> host and the same 8 MiB host -> guest, concurrently. */
    client_start(&c, e.loop, &e.g_proxy, n, 7, true);
    assert_true(run_until(e.loop, pred_client_done, &c));
    check_echo(&c, n);
    client_close(&c);
    env_stop(&e);
}

static bool pred_server_eof(void *arg)
{
    return ((struct server *)arg)->eofs > 0;
}

static void test_half_close(void **state)
{
    struct env e;
    struct client c;
    (void)state;

    env_start(&e, 0);
    /* Send, shut our write side, keep reading: the server must see EOF (FIN carried to the
     * host and turned into shutdown), answer after it, and its own FIN must come back. */
    client_start(&c, e.loop, &e.g_proxy, 3000, 9, true);
    c.paused = true;
    client_sync(&c);
    if (!run_until(e.loop, pred_server_eof, &e.proxy))
        fail_msg("server never saw EOF");
    assert_int_equal(c.recvd, 0);
    c.paused = false;
    client_sync(&c);
    assert_true(run_until(e.loop, pred_client_done, &c));
    check_echo(&c, 3000);

    /* The other direction: the server closes first (zero-byte request; the server shuts
     * after its greeting), the client still sends after getting EOF. */
    client_close(&c);
    env_stop(&e);
}

struct fc_state {
    struct client *a, *b;
};

static bool pred_b_done(void *arg)
{
    struct fc_state *s = arg;
    return client_done(s->b);
}

static void test_flow_control(void **state)
{
    struct env e;
    struct client a, b;
    struct fc_state fs = { &a, &b };
    struct mux_stats gs, hs;
    uint64_t big = 64u << 20;
    (void)state;

    env_start(&e, 0);
    /* A pushes 64 MiB but never reads its echo: everything behind it must fill up and stop. */
    client_start(&a, e.loop, &e.g_proxy, big, 11, true);
    a.paused = true;
    client_sync(&a);
    run_until_quiet(e.loop); /* everything behind A is full: nothing moves */
    assert_true(a.sent < big);

    /* B's traffic on the same channel is unaffected. */
    client_start(&b, e.loop, &e.g_proxy, 2u << 20, 12, true);
    assert_true(run_until(e.loop, pred_b_done, &fs));
    check_echo(&b, 2u << 20);
    client_close(&b);

    /* Memory stayed bounded: at most one window per stream waits for a local reader, and
     * the output queues stayed under their caps. */
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    mux_get_stats(channel_host_relay_mux(e.h), &hs);
    print_message("# flow control: A sent %llu of %llu bytes while stalled; rx_max guest %zu host "
                  "%zu, out_max guest %zu host %zu\n",
                  (unsigned long long)a.sent, (unsigned long long)big, gs.rx_max, hs.rx_max,
                  gs.out_max, hs.out_max);
    assert_true(gs.rx_max <= 2 * CHANNEL_WINDOW_GUEST);
    assert_true(hs.rx_max <= 2 * CHANNEL_WINDOW);
    assert_true(gs.out_max <= 2u << 20);
    assert_true(hs.out_max <= 2u << 20);

    /* A resumes reading and completes intact. */
    a.paused = false;
    client_sync(&a);
    assert_true(run_until(e.loop, pred_client_done, &a));
    check_echo(&a, big);
    client_close(&a);
    env_stop(&e);
}

/* UDP clients */
static int udp_client(void)
{
    struct net_addr a = loopback(0);
    int fd = net_bind_udp(&a);
    assert_true(fd >= 0);
    return fd;
}

struct udp_wait {
    int fd;
    uint8_t buf[70000];
    ssize_t n;
};

static bool pred_udp_reply(void *arg)
{
    struct udp_wait *w = arg;
    w->n = recv(w->fd, w->buf, sizeof(w->buf), MSG_DONTWAIT);
    return w->n >= 0;
}

static void test_udp(void **state)
{
    struct env e;
    struct udp_wait *w1 = xcalloc(1, sizeof(*w1)), *w2 = xcalloc(1, sizeof(*w2));
    uint8_t big[60000];
    struct mux_stats gs;
    (void)state;

    env_start(&e, 0);
    w1->fd = udp_client();
    w2->fd = udp_client();
    /* Two client addresses, interleaved: each gets its own reply. */
    for (int round = 0; round < 3; round++) {
        char q1[32], q2[32];
        int l1 = snprintf(q1, sizeof(q1), "query-one-%d", round);
        int l2 = snprintf(q2, sizeof(q2), "query-two-%d", round);
        assert_int_equal(
            sendto(w1->fd, q1, (size_t)l1, 0, (struct sockaddr *)&e.g_dns_udp.ss, e.g_dns_udp.len),
            l1);
        assert_int_equal(
            sendto(w2->fd, q2, (size_t)l2, 0, (struct sockaddr *)&e.g_dns_udp.ss, e.g_dns_udp.len),
            l2);
        assert_true(run_until(e.loop, pred_udp_reply, w1));
        assert_int_equal(w1->n, l1 + 2);
        assert_memory_equal(w1->buf, "u:", 2);
        assert_memory_equal(w1->buf + 2, q1, (size_t)l1);
        assert_true(run_until(e.loop, pred_udp_reply, w2));
        assert_int_equal(w2->n, l2 + 2);
        assert_memory_equal(w2->buf + 2, q2, (size_t)l2);
    }
    /* One stream per client address. */
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    assert_int_equal(gs.streams, 2);
    assert_int_equal(e.udp.got, 6);

    /* A large datagram (any IPv4 UDP datagram fits one 64 KiB frame) crosses whole, as one
     * frame each way: not split, not truncated. */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(
        sendto(w1->fd, big, sizeof(big), 0, (struct sockaddr *)&e.g_dns_udp.ss, e.g_dns_udp.len),
        (ssize_t)sizeof(big));
    assert_true(run_until(e.loop, pred_udp_reply, w1));
    assert_int_equal(w1->n, (ssize_t)sizeof(big) + 2);
    assert_memory_equal(w1->buf + 2, big, sizeof(big));
    assert_int_equal(e.udp.got, 7);

    close(w1->fd);
    close(w2->fd);
    free(w1);
    free(w2);
    env_stop(&e);
}

static bool pred_guest_streams_zero(void *arg)
{
    struct env *e = arg;
    struct mux_stats gs;
    mux_get_stats(channel_guest_relay_mux(e->g), &gs);
    return gs.streams == 0;
}

/* A UDP flow lives exactly CHANNEL_UDP_IDLE_MS after its last datagram (fake clock). */
static void test_udp_idle(void **state)
{
    struct env e;
    struct udp_wait *w = xcalloc(1, sizeof(*w));
    struct mux_stats gs, hs;
    (void)state;

    env_start(&e, 0);
    w->fd = udp_client();
    assert_int_equal(sendto(w->fd, "q1", 2, 0, (struct sockaddr *)&e.g_dns_udp.ss, e.g_dns_udp.len),
                     2);
    assert_true(run_until(e.loop, pred_udp_reply, w));
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    assert_int_equal(gs.streams, 1);

    /* One millisecond short of the timeout: the flow stays. */
    clock_advance(e.loop, CHANNEL_UDP_IDLE_MS - 1);
    run_until_quiet(e.loop);
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    assert_int_equal(gs.streams, 1);
    /* A datagram re-arms it. */
    assert_int_equal(sendto(w->fd, "q2", 2, 0, (struct sockaddr *)&e.g_dns_udp.ss, e.g_dns_udp.len),
                     2);
    assert_true(run_until(e.loop, pred_udp_reply, w));
    clock_advance(e.loop, CHANNEL_UDP_IDLE_MS - 1);
    run_until_quiet(e.loop);
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    assert_int_equal(gs.streams, 1);
    /* Then it times out: RESET(TIMEOUT) to the host, which drops its side too. */
    clock_advance(e.loop, 1);
    assert_true(run_until(e.loop, pred_guest_streams_zero, &e));
    assert_true(run_until(e.loop, pred_streams_zero, &e));
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    mux_get_stats(channel_host_relay_mux(e.h), &hs);
    assert_int_equal(gs.resets_out, 1);
    assert_int_equal(hs.resets_in, 1);
    assert_int_equal(e.g_dead + e.h_dead, 0);
    close(w->fd);
    free(w);
    env_stop(&e);
}

static bool pred_g_dead(void *arg)
{
    struct env *e = arg;
    return e->g_dead > 0;
}

static void test_channel_death(void **state)
{
    struct env e;
    struct client c, c2;
    int ufd;
    struct udp_wait *w = xcalloc(1, sizeof(*w));
    (void)state;

    env_start(&e, 0);
    /* A live connection in the middle of a transfer. */
    client_start(&c, e.loop, &e.g_proxy, 50u << 20, 21, false);
    c.paused = true;
    client_sync(&c);
    run_until_quiet(e.loop);
    assert_true(c.sent > 0);

    /* The host end goes away. */
    e.h = channel_host_relay_free(e.h);
    assert_true(run_until(e.loop, pred_g_dead, &e));
    assert_int_equal(e.g_dead, 1);
    assert_int_equal(e.g_err, -ECONNRESET);
    assert_true(channel_guest_relay_dead(e.g));
    assert_true(mux_is_dead(channel_guest_relay_mux(e.g)));

    /* The live connection was reset. */
    c.paused = false;
    client_sync(&c);
    assert_true(run_until(e.loop, pred_client_done, &c));
    assert_true(c.err == -ECONNRESET || c.eof);
    client_close(&c);

    /* New connections are refused at once (accepted, then reset), not left hanging: the
     * reset comes with the clock stopped, so no timeout is involved. */
    client_start(&c2, e.loop, &e.g_proxy, 0, 22, false);
    assert_true(run_until(e.loop, pred_client_done, &c2));
    assert_int_equal(c2.recvd, 0);
    assert_true(c2.err == -ECONNRESET || c2.eof);
    client_close(&c2);

    /* Datagrams go nowhere. */
    ufd = udp_client();
    w->fd = ufd;
    assert_int_equal(sendto(ufd, "q", 1, 0, (struct sockaddr *)&e.g_dns_udp.ss, e.g_dns_udp.len),
                     1);
    assert_false(run_until_settled(e.loop, pred_udp_reply, w));
    close(ufd);
    free(w);
    /* The callback fires once only. */
    run_until_quiet(e.loop);
    assert_int_equal(e.g_dead, 1);
    assert_int_equal(e.h_dead, 0); /* freed by its owner: no callback */
    env_stop(&e);
}

static void test_connect_refused(void **state)
{
    struct env e;
    struct client c;
    struct net_addr a = loopback(0);
    int fd = net_listen_tcp(&a, 1);
    uint16_t closed_port = fd_port(fd);
    (void)state;

    close(fd); /* nothing listens there now */
    env_start(&e, closed_port);
    /* The client is reset with the clock stopped: the refusal needs no timeout. */
    client_start(&c, e.loop, &e.g_proxy, 10, 31, false);
    assert_true(run_until(e.loop, pred_client_done, &c));
    assert_true(c.err == -ECONNRESET || c.eof);
    assert_int_equal(c.recvd, 0);
    client_close(&c);
    /* The channel survives a refused stream. */
    assert_int_equal(e.g_dead + e.h_dead, 0);
    client_start(&c, e.loop, &e.g_dns_tcp, 10, 32, true);
    c.prefix = "dns:";
    assert_true(run_until(e.loop, pred_client_done, &c));
    check_echo(&c, 10);
    client_close(&c);
    env_stop(&e);
}

/* ---- a raw peer speaking the wire protocol ---- */

struct raw {
    struct loop *loop;
    int fd;
    struct loop_source src;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint8_t in[1 << 18];
    size_t in_len;
    int count[CHANNEL_T_MAX];
    int reasons[CHANNEL_RESET_MAX];
    bool eof, bad;
};

static void raw_sync(struct raw *r)
{
    uint32_t ev = r->eof ? 0 : EPOLLIN;
    if (r->out_len > r->out_off && !r->eof)
        ev |= EPOLLOUT;
    if (ev == 0)
        loop_del(r->loop, &r->src);
    else
        loop_mod(r->loop, &r->src, ev);
}

static void on_raw(struct loop_source *src, uint32_t events)
{
    struct raw *r = src->userdata;

    if ((events & EPOLLOUT) && r->out_len > r->out_off) {
        ssize_t n =
            send(r->fd, r->out + r->out_off, r->out_len - r->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            r->out_off += (size_t)n;
        else if (n < 0 && errno != EAGAIN)
            r->eof = true;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = recv(r->fd, r->in + r->in_len, sizeof(r->in) - r->in_len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            r->eof = true;
        } else if (n > 0) {
            const uint8_t *cur = r->in, *end = r->in + r->in_len + (size_t)n;
            struct channel_frame f;
            int k;
            while ((k = channel_frame_decode(&cur, end, &f)) == 1) {
                r->count[f.type]++;
                if (f.type == CHANNEL_T_RESET)
                    r->reasons[f.reason]++;
            }
            if (k < 0)
                r->bad = true;
            r->in_len = (size_t)(end - cur);
            memmove(r->in, cur, r->in_len);
        }
    }
    raw_sync(r);
}

static void raw_init(struct raw *r, struct loop *l, int fd)
{
    memset(r, 0, sizeof(*r));
    r->loop = l;
    r->fd = fd;
    assert_int_equal(fd_set_nonblock(fd, true), 0);
    assert_int_equal(loop_add(l, &r->src, fd, EPOLLIN, on_raw, r), 0);
}

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
    if (r->out_len + n > r->out_cap) {
        r->out_cap = (r->out_len + n) * 2;
        r->out = xrealloc(r->out, r->out_cap);
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    raw_sync(r);
}

static void raw_ctl(struct raw *r, enum channel_type t, uint32_t stream, uint32_t arg)
{
    uint8_t b[32];
    raw_bytes(r, b, channel_frame_encode_ctl(b, t, stream, arg));
}

static void raw_data(struct raw *r, uint32_t stream, size_t len)
{
    uint8_t b[CHANNEL_MAX_FRAME];
    assert_true(len >= 1 && len <= CHANNEL_MAX_PAYLOAD);
    channel_frame_header(b, CHANNEL_T_DATA, stream, (uint16_t)len);
    memset(b + CHANNEL_HDR_LEN, 'x', len);
    raw_bytes(r, b, CHANNEL_HDR_LEN + len);
}

static void raw_done(struct raw *r)
{
    loop_del(r->loop, &r->src);
    close(r->fd);
    free(r->out);
}

/* A host mux whose streams go to socketpairs the test holds and never reads. */
struct hostenv {
    struct loop *loop;
    struct mux *m;
    struct raw *raw;
    int peers[CHANNEL_MAX_STREAMS + 8];
    size_t npeers;
    int dead, err;
    bool refuse;
};

static int hostenv_open(void *ud, enum channel_kind kind)
{
    struct hostenv *h = ud;
    int sv[2], sz = 4096;
    (void)kind;

    if (h->refuse)
        return -ECONNREFUSED;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    assert_true(h->npeers < ARRAY_SIZE(h->peers));
    h->peers[h->npeers++] = sv[1];
    return sv[0];
}

static void hostenv_dead(void *ud, int err)
{
    struct hostenv *h = ud;
    h->dead++;
    h->err = err;
}

static const struct mux_ops hostenv_ops = { .open_stream = hostenv_open, .dead = hostenv_dead };

static void hostenv_start(struct hostenv *h, enum channel_role role)
{
    int sp[2];
    memset(h, 0, sizeof(*h));
    h->loop = test_loop();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(mux_new(h->loop, sp[0], role, &hostenv_ops, h, &h->m), 0);
    h->raw = xcalloc(1, sizeof(*h->raw));
    raw_init(h->raw, h->loop, sp[1]);
}

static void hostenv_stop(struct hostenv *h)
{
    h->m = mux_free(h->m);
    raw_done(h->raw);
    free(h->raw);
    for (size_t i = 0; i < h->npeers; i++)
        close(h->peers[i]);
    h->loop = loop_free(h->loop);
}

static bool pred_hostenv_dead(void *arg)
{
    struct hostenv *h = arg;
    return h->dead > 0 && h->raw->eof;
}

static void hello_open(struct raw *r, uint32_t id)
{
    raw_ctl(r, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
    raw_ctl(r, CHANNEL_T_OPEN, id, CHANNEL_KIND_TCP_PROXY);
}

enum mal_case {
    MAL_GARBAGE,
    MAL_HTTP,
    MAL_OVERSIZED,
    MAL_NO_HELLO,
    MAL_BAD_VERSION,
    MAL_V1,
    MAL_GUEST_OPENS_EXEC,
    MAL_HOST_ID_SPACE,
    MAL_UNKNOWN_STREAM,
    MAL_DUP_OPEN,
    MAL_OVER_CREDIT,
    MAL_EXACT_CREDIT, /* control: the same traffic within credit is fine */
    MAL_OPEN_OK_TO_HOST,
    MAL_DUP_FIN,
    MAL_WINDOW_OVERFLOW,
    MAL_MAX
};

static void test_malicious_guest(void **state)
{
    static const char *const names[MAL_MAX] = {
        "garbage",         "http",           "oversized",        "no hello",
        "bad version",     "v1 peer",        "guest opens exec", "host id space",
        "unknown stream",  "duplicate open", "over credit",      "exact credit",
        "open_ok to host", "duplicate fin",  "window overflow",
    };
    (void)state;

    for (int c = 0; c < MAL_MAX; c++) {
        struct hostenv h;
        struct mux_stats st;
        uint8_t b[64];
        bool should_die = c != MAL_EXACT_CREDIT;

        hostenv_start(&h, CHANNEL_ROLE_HOST);
        switch (c) {
        case MAL_GARBAGE:
            for (size_t i = 0; i < sizeof(b); i++)
                b[i] = (uint8_t)(i * 37 + 11);
            raw_bytes(h.raw, b, sizeof(b));
            break;
        case MAL_HTTP:
            raw_bytes(h.raw, "CONNECT evil:443 HTTP/1.1\r\n\r\n", 29);
            break;
        case MAL_OVERSIZED:
            hello_open(h.raw, 1);
            channel_frame_header(b, CHANNEL_T_DATA, 1, 0xffff);
            raw_bytes(h.raw, b, CHANNEL_HDR_LEN); /* refused from the header alone */
            break;
        case MAL_NO_HELLO:
            raw_ctl(h.raw, CHANNEL_T_OPEN, 1, CHANNEL_KIND_TCP_PROXY);
            break;
        case MAL_BAD_VERSION: {
            size_t n = channel_frame_encode_ctl(b, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
            b[CHANNEL_HDR_LEN + 4] = CHANNEL_VERSION + 1;
            raw_bytes(h.raw, b, n);
            break;
        }
        case MAL_V1: {
            /* A v1 guest (before host-opened streams) is refused with its own error. */
            size_t n = channel_frame_encode_ctl(b, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
            b[CHANNEL_HDR_LEN + 4] = 1;
            raw_bytes(h.raw, b, n);
            raw_ctl(h.raw, CHANNEL_T_OPEN, 1, CHANNEL_KIND_TCP_PROXY);
            break;
        }
        case MAL_GUEST_OPENS_EXEC:
            raw_ctl(h.raw, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
            raw_ctl(h.raw, CHANNEL_T_OPEN, 1, CHANNEL_KIND_EXEC);
            break;
        case MAL_HOST_ID_SPACE:
            raw_ctl(h.raw, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
            raw_ctl(h.raw, CHANNEL_T_OPEN, CHANNEL_ID_HOST + 1, CHANNEL_KIND_TCP_PROXY);
            break;
        case MAL_UNKNOWN_STREAM:
            hello_open(h.raw, 1);
            raw_data(h.raw, 2, 10);
            break;
        case MAL_DUP_OPEN:
            hello_open(h.raw, 1);
            raw_ctl(h.raw, CHANNEL_T_OPEN, 1, CHANNEL_KIND_TCP_PROXY);
            break;
        case MAL_OVER_CREDIT:
        case MAL_EXACT_CREDIT:
            hello_open(h.raw, 1);
            for (size_t sent = 0, n; sent < CHANNEL_WINDOW; sent += n) {
                n = MIN((size_t)CHANNEL_MAX_PAYLOAD, CHANNEL_WINDOW - sent);
                raw_data(h.raw, 1, n);
            }
            if (c == MAL_OVER_CREDIT)
                raw_data(h.raw, 1, 1);
            break;
        case MAL_OPEN_OK_TO_HOST:
            hello_open(h.raw, 1);
            raw_ctl(h.raw, CHANNEL_T_OPEN_OK, 1, 0);
            break;
        case MAL_DUP_FIN:
            hello_open(h.raw, 1);
            raw_ctl(h.raw, CHANNEL_T_FIN, 1, 0);
            raw_ctl(h.raw, CHANNEL_T_FIN, 1, 0);
            break;
        case MAL_WINDOW_OVERFLOW:
            hello_open(h.raw, 1);
            raw_ctl(h.raw, CHANNEL_T_WINDOW, 1, 1); /* we never sent anything: no credit due */
            break;
        default:
            break;
        }
        if (should_die) {
            if (!run_until(h.loop, pred_hostenv_dead, &h))
                fail_msg("%s: channel not torn down", names[c]);
            assert_int_equal(h.dead, 1);
            if (h.err != (c == MAL_BAD_VERSION || c == MAL_V1 ? -EPROTONOSUPPORT : -EPROTO))
                fail_msg("%s: err %d", names[c], h.err);
            if (c == MAL_V1)
                assert_int_equal(mux_peer_version(h.m), 1);
            if (c == MAL_V1 || c == MAL_GUEST_OPENS_EXEC || c == MAL_HOST_ID_SPACE)
                assert_int_equal(h.npeers, 0); /* the OPEN never reached the owner */
            assert_true(mux_is_dead(h.m));
            mux_get_stats(h.m, &st);
            assert_int_equal(st.streams, 0); /* everything torn down */
        } else {
            assert_false(run_until_settled(h.loop, pred_hostenv_dead, &h));
            assert_int_equal(h.dead, 0);
            assert_false(mux_is_dead(h.m));
            assert_int_equal(h.raw->count[CHANNEL_T_OPEN_OK], 1);
        }
        hostenv_stop(&h);
    }
}

struct count_pred {
    struct raw *r;
    int type, n;
};

static bool pred_count(void *arg)
{
    struct count_pred *p = arg;
    return p->r->count[p->type] >= p->n;
}

static void test_too_many_streams(void **state)
{
    struct hostenv h;
    struct mux_stats st;
    struct count_pred p;
    (void)state;

    hostenv_start(&h, CHANNEL_ROLE_HOST);
    raw_ctl(h.raw, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
    for (uint32_t id = 1; id <= CHANNEL_MAX_STREAMS + 5; id++)
        raw_ctl(h.raw, CHANNEL_T_OPEN, id, CHANNEL_KIND_TCP_PROXY);
    p = (struct count_pred){ h.raw, CHANNEL_T_RESET, 5 };
    assert_true(run_until(h.loop, pred_count, &p));
    p = (struct count_pred){ h.raw, CHANNEL_T_OPEN_OK, CHANNEL_MAX_STREAMS };
    assert_true(run_until(h.loop, pred_count, &p));
    /* Exactly the limit is kept; the rest are refused with LIMIT and hold no state. */
    mux_get_stats(h.m, &st);
    assert_int_equal(st.streams, CHANNEL_MAX_STREAMS);
    assert_int_equal(h.npeers, CHANNEL_MAX_STREAMS);
    assert_int_equal(h.raw->reasons[CHANNEL_RESET_LIMIT], 5);
    assert_int_equal(h.raw->count[CHANNEL_T_OPEN_OK], CHANNEL_MAX_STREAMS);
    assert_int_equal(h.dead, 0);
    assert_false(h.raw->bad);
    hostenv_stop(&h);
}

static void test_refused_open(void **state)
{
    struct hostenv h;
    struct count_pred p;
    (void)state;

    hostenv_start(&h, CHANNEL_ROLE_HOST);
    h.refuse = true;
    hello_open(h.raw, 1);
    /* Data and FIN the guest pipelined behind the refused OPEN are dropped quietly. */
    raw_data(h.raw, 1, 100);
    raw_ctl(h.raw, CHANNEL_T_FIN, 1, 0);
    p = (struct count_pred){ h.raw, CHANNEL_T_RESET, 1 };
    assert_true(run_until(h.loop, pred_count, &p));
    assert_int_equal(h.raw->reasons[CHANNEL_RESET_REFUSED], 1);
    assert_false(run_until_settled(h.loop, pred_hostenv_dead, &h));
    hostenv_stop(&h);
}

static void test_malicious_host(void **state)
{
    /* Guest side: a host that opens a guest kind in the guest id space, says the wrong role or
     * answers a stream that does not exist kills the channel. */
    for (int c = 0; c < 3; c++) {
        struct hostenv h;
        (void)state;
        hostenv_start(&h, CHANNEL_ROLE_GUEST);
        if (c == 0) {
            raw_ctl(h.raw, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_HOST);
            raw_ctl(h.raw, CHANNEL_T_OPEN, 1, CHANNEL_KIND_TCP_PROXY);
        } else if (c == 1) {
            raw_ctl(h.raw, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST); /* wrong role */
        } else {
            raw_ctl(h.raw, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_HOST);
            raw_ctl(h.raw, CHANNEL_T_OPEN_OK, 1, 0); /* no such stream */
        }
        assert_true(run_until(h.loop, pred_hostenv_dead, &h));
        assert_int_equal(h.err, -EPROTO);
        hostenv_stop(&h);
    }
}

/* ---- v2: streams the host opens toward the guest (exec, status) ---- */

struct exec_env {
    struct loop *loop;
    struct mux *g, *h;
    int gpeer; /* the guest owner's end of the stream it accepted; -1 before */
    enum channel_kind kind;
    int opens, dead;
};

static int exec_guest_open(void *ud, enum channel_kind kind)
{
    struct exec_env *x = ud;
    int sv[2];

    x->opens++;
    x->kind = kind;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    x->gpeer = sv[1];
    return sv[0];
}

static int exec_host_open(void *ud, enum channel_kind kind)
{
    (void)ud;
    (void)kind;
    return -ECONNREFUSED;
}

static void exec_dead(void *ud, int err)
{
    struct exec_env *x = ud;
    (void)err;
    x->dead++;
}

static bool pred_gpeer(void *arg)
{
    return ((struct exec_env *)arg)->gpeer >= 0;
}

/* Reads an fd until EOF (or an error, e.g. a reset); the bytes are kept. */
struct reader {
    int fd;
    uint8_t buf[256];
    size_t len;
    bool eof;
    int err;
};

static bool pred_read_eof(void *arg)
{
    struct reader *r = arg;

    while (!r->eof) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
            assert_true(r->len < sizeof(r->buf));
        } else if (n == 0) {
            r->eof = true;
        } else if (errno != EAGAIN) {
            r->err = -errno;
            r->eof = true;
        } else {
            break;
        }
    }
    return r->eof;
}

static bool pred_muxes_idle(void *arg)
{
    struct exec_env *x = arg;
    struct mux_stats gs, hs;
    mux_get_stats(x->g, &gs);
    mux_get_stats(x->h, &hs);
    return gs.streams == 0 && hs.streams == 0 && gs.out_queued == 0 && hs.out_queued == 0;
}

static void test_host_opened_stream(void **state)
{
    static const struct mux_ops gops = { .open_stream = exec_guest_open, .dead = exec_dead };
    static const struct mux_ops hops = { .open_stream = exec_host_open, .dead = exec_dead };
    struct exec_env x = { .gpeer = -1 };
    struct reader rg = { 0 }, rh = { 0 };
    struct mux_stats gs, hs;
    int sp[2], hsv[2], t[2];
    (void)state;

    x.loop = test_loop();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(mux_new(x.loop, sp[0], CHANNEL_ROLE_GUEST, &gops, &x, &x.g), 0);
    assert_int_equal(mux_new(x.loop, sp[1], CHANNEL_ROLE_HOST, &hops, &x, &x.h), 0);

    /* Each side opens only its own kinds. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t), 0);
    assert_int_equal(mux_open_fd(x.g, CHANNEL_KIND_EXEC, t[0]), -EINVAL);
    close(t[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t), 0);
    assert_int_equal(mux_open_fd(x.h, CHANNEL_KIND_TCP_PROXY, t[0]), -EINVAL);
    close(t[1]);

    /* The host opens an exec stream and pipelines a request and a FIN behind the OPEN. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, hsv), 0);
    assert_int_equal(mux_open_fd(x.h, CHANNEL_KIND_EXEC, hsv[0]), 0);
    assert_int_equal(write(hsv[1], "echo hi", 7), 7);
    assert_int_equal(shutdown(hsv[1], SHUT_WR), 0);
    assert_true(run_until(x.loop, pred_gpeer, &x));
    assert_int_equal(x.opens, 1);
    assert_int_equal(x.kind, CHANNEL_KIND_EXEC);
    rg.fd = x.gpeer;
    assert_true(run_until(x.loop, pred_read_eof, &rg));
    assert_int_equal(rg.err, 0);
    assert_int_equal(rg.len, 7);
    assert_memory_equal(rg.buf, "echo hi", 7);

    /* The guest answers and half-closes: the host's end gets the bytes and EOF. */
    assert_int_equal(write(x.gpeer, "hi\n", 3), 3);
    assert_int_equal(shutdown(x.gpeer, SHUT_WR), 0);
    rh.fd = hsv[1];
    assert_true(run_until(x.loop, pred_read_eof, &rh));
    assert_int_equal(rh.err, 0);
    assert_int_equal(rh.len, 3);
    assert_memory_equal(rh.buf, "hi\n", 3);

    /* Both FINs exchanged: the stream is gone on both sides, nothing was reset. */
    assert_true(run_until(x.loop, pred_muxes_idle, &x));
    mux_get_stats(x.g, &gs);
    mux_get_stats(x.h, &hs);
    assert_int_equal(gs.resets_in + gs.resets_out + hs.resets_in + hs.resets_out, 0);
    assert_int_equal(x.dead, 0);

    close(x.gpeer);
    close(hsv[1]);
    x.g = mux_free(x.g);
    x.h = mux_free(x.h);
    x.loop = loop_free(x.loop);
}

/* The guest relay (what bottle-init runs) serves no host-opened kind: each OPEN is refused with
 * RESET(REFUSED) on the wire, pipelined bytes are dropped, and the channel lives on. */
static void test_guest_refuses_host_open(void **state)
{
    static const struct mux_ops gops = { .dead = exec_dead }; /* no open_stream */
    struct exec_env x = { .gpeer = -1 };
    struct raw *r = xcalloc(1, sizeof(*r));
    struct count_pred p;
    struct mux_stats st;
    int sp[2];
    (void)state;

    x.loop = test_loop();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(mux_new(x.loop, sp[0], CHANNEL_ROLE_GUEST, &gops, &x, &x.g), 0);
    raw_init(r, x.loop, sp[1]);
    raw_ctl(r, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_HOST);
    raw_ctl(r, CHANNEL_T_OPEN, CHANNEL_ID_HOST + 1, CHANNEL_KIND_STATUS);
    raw_data(r, CHANNEL_ID_HOST + 1, 10);
    raw_ctl(r, CHANNEL_T_FIN, CHANNEL_ID_HOST + 1, 0);
    raw_ctl(r, CHANNEL_T_OPEN, CHANNEL_ID_HOST + 2, CHANNEL_KIND_EXEC);
    p = (struct count_pred){ r, CHANNEL_T_RESET, 2 };
    assert_true(run_until(x.loop, pred_count, &p));
    assert_int_equal(r->reasons[CHANNEL_RESET_REFUSED], 2);
    assert_int_equal(r->count[CHANNEL_T_OPEN_OK], 0);
    assert_false(r->bad);
    /* Frames crossing the RESET are dropped quietly, not a violation. */
    raw_data(r, CHANNEL_ID_HOST + 2, 10);
    run_until_quiet(x.loop);
    assert_int_equal(x.dead, 0);
    assert_false(mux_is_dead(x.g));
    mux_get_stats(x.g, &st);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.resets_out, 2);
    x.g = mux_free(x.g);
    raw_done(r);
    free(r);
    x.loop = loop_free(x.loop);
}

static void test_guest_relay_refuses_exec(void **state)
{
    struct env e;
    struct client c;
    struct reader rh = { 0 };
    struct mux_stats gs, hs;
    int hsv[2];
    (void)state;

    env_start(&e, 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, hsv), 0);
    assert_int_equal(mux_open_fd(channel_host_relay_mux(e.h), CHANNEL_KIND_EXEC, hsv[0]), 0);
    assert_int_equal(write(hsv[1], "id", 2), 2);
    rh.fd = hsv[1];
    assert_true(run_until(e.loop, pred_read_eof, &rh));
    assert_int_equal(rh.len, 0);
    mux_get_stats(channel_guest_relay_mux(e.g), &gs);
    mux_get_stats(channel_host_relay_mux(e.h), &hs);
    assert_int_equal(gs.resets_out, 1);
    assert_int_equal(hs.resets_in, 1);
    assert_int_equal(hs.streams, 0);
    /* The channel still carries the bottle's traffic. */
    client_start(&c, e.loop, &e.g_proxy, 1000, 41, true);
    assert_true(run_until(e.loop, pred_client_done, &c));
    check_echo(&c, 1000);
    client_close(&c);
    assert_int_equal(e.g_dead + e.h_dead, 0);
    close(hsv[1]);
    env_stop(&e);
}

static void test_throughput(void **state)
{
    struct env e;
    struct client c;
    uint64_t n = 64u << 20, t0, t1, count;
    double mbs;
    (void)state;

    env_start(&e, 0);
    e.proxy.mode = SRV_SINK;
    t0 = real_ms(); /* for the throughput figure only (printed, never asserted) */
    client_start(&c, e.loop, &e.g_proxy, n, 0, true);
    c.sink_mode = true;
    assert_true(run_until(e.loop, pred_client_done, &c));
    t1 = real_ms();
    assert_int_equal(c.err, 0);
    assert_true(c.recvd == 8);
    memcpy(&count, c.count_buf, 8);
    assert_true(count == n); /* every byte arrived */
    mbs = (double)n / (1024.0 * 1024.0) / ((double)(t1 - t0 ? t1 - t0 : 1) / 1000.0);
    print_message("# throughput: one stream, guest->host, %llu MiB in %llu ms = %.0f MiB/s\n",
                  (unsigned long long)(n >> 20), (unsigned long long)(t1 - t0), mbs);
    client_close(&c);
    env_stop(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_stream),
        cmocka_unit_test(test_kind_routing),
        cmocka_unit_test(test_concurrent_50),
        cmocka_unit_test(test_8mib_both_ways),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_flow_control),
        cmocka_unit_test(test_udp),
        cmocka_unit_test(test_udp_idle),
        cmocka_unit_test(test_channel_death),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_malicious_guest),
        cmocka_unit_test(test_too_many_streams),
        cmocka_unit_test(test_refused_open),
        cmocka_unit_test(test_malicious_host),
        cmocka_unit_test(test_host_opened_stream),
        cmocka_unit_test(test_guest_refuses_host_open),
        cmocka_unit_test(test_guest_relay_refuses_exec),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
