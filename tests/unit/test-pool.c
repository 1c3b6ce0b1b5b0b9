/*
 * Unit tests for src/proxy/pool.c, the upstream connection pool: a take matches host name,
 * port, TLS-ness and a vetted address, all four; the bounds (per host, in all) drop the oldest;
 * an idle entry whose peer closes or speaks is discarded by the loop; the idle timer closes.
 * Sides are unix socket pairs behind the plain TCP transport (recv/MSG_PEEK work alike).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/loop.h"
#include "proxy/proxy-int.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static struct sockaddr_storage addr4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof(ss));
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return ss;
}

/* A connected side (ours) and the peer's fd. */
static void side_pair(struct side *s, int *peer)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    memset(s, 0, sizeof(*s));
    s->fd = sv[0];
    s->tp = &transport_tcp;
    *peer = sv[1];
}

static bool peer_closed(int peer)
{
    char b;
    return recv(peer, &b, 1, MSG_DONTWAIT) == 0;
}

struct fixture {
    struct loop *l;
    struct upool *p;
};

static void setup(struct fixture *f, unsigned total, unsigned per_host)
{
    struct upool_limits lim = { .max_total = total, .max_per_host = per_host, .idle_ms = 1000 };
    fake_now = 1000000000ull;
    assert_int_equal(loop_new(&f->l), 0);
    loop_set_clock(f->l, fake_clock, NULL);
    loop_update_now(f->l);
    f->p = upool_new(f->l, &lim);
}

static void teardown(struct fixture *f)
{
    upool_free(f->p);
    loop_free(f->l);
}

static void test_key(void **state)
{
    struct fixture f;
    struct side s, got;
    struct sockaddr_storage a = addr4("192.0.2.1", 443), b = addr4("192.0.2.2", 443), ret;
    struct sockaddr_storage a80 = addr4("192.0.2.1", 80);
    int peer;
    (void)state;

    setup(&f, 8, 8);
    side_pair(&s, &peer);
    assert_true(upool_put(f.p, &s, "a.test", 443, &a, false));
    assert_int_equal(s.fd, -1);
    /* another name on the same address, another port, TLS-ness or address: no */
    assert_false(upool_take(f.p, "b.test", 443, &a, 1, false, &got, &ret));
    assert_false(upool_take(f.p, "a.test", 8443, &a, 1, false, &got, &ret));
    assert_false(upool_take(f.p, "a.test", 443, &a, 1, true, &got, &ret));
    assert_false(upool_take(f.p, "a.test", 443, &b, 1, false, &got, &ret));
    assert_false(upool_take(f.p, "a.test", 443, &a80, 1, false, &got, &ret));
    assert_false(upool_take(f.p, "a.test.", 443, &a, 1, false, &got, &ret));
    /* the right one, among the vetted addresses */
    struct sockaddr_storage vetted[2] = { b, a };
    assert_true(upool_take(f.p, "a.test", 443, vetted, 2, false, &got, &ret));
    assert_true(net_addr_equal(&ret, &a));
    assert_true(got.fd >= 0);
    assert_false(got.src.registered);
    /* taken once */
    assert_false(upool_take(f.p, "a.test", 443, vetted, 2, false, &s, &ret));
    close(got.fd);
    close(peer);
    teardown(&f);
}

static void test_bounds(void **state)
{
    struct fixture f;
    struct side s, got;
    struct sockaddr_storage a = addr4("192.0.2.1", 443), ret;
    int peers[4];
    struct upool_stats st;
    (void)state;

    setup(&f, 3, 2);
    for (int i = 0; i < 3; i++) {
        side_pair(&s, &peers[i]);
        assert_true(upool_put(f.p, &s, "a.test", 443, &a, false));
    }
    /* two per host: the oldest of a.test went */
    assert_true(peer_closed(peers[0]));
    assert_false(peer_closed(peers[1]));
    side_pair(&s, &peers[3]);
    assert_true(upool_put(f.p, &s, "b.test", 443, &a, false));
    side_pair(&s, &peers[0]);
    assert_true(upool_put(f.p, &s, "c.test", 443, &a, false));
    /* three in all: the oldest of all (a.test's older one) went */
    assert_true(peer_closed(peers[1]));
    upool_get_stats(f.p, &st);
    assert_int_equal(st.idle, 3);
    /* the most recent first */
    assert_true(upool_take(f.p, "a.test", 443, &a, 1, false, &got, &ret));
    close(got.fd);
    assert_true(peer_closed(peers[2]));
    for (int i = 0; i < 4; i++)
        close(peers[i]);
    teardown(&f);
}

static void test_watch_and_timer(void **state)
{
    struct fixture f;
    struct side s, got;
    struct sockaddr_storage a = addr4("192.0.2.1", 443), ret;
    int p1, p2, p3;
    struct upool_stats st;
    (void)state;

    setup(&f, 8, 8);
    side_pair(&s, &p1);
    assert_true(upool_put(f.p, &s, "a.test", 443, &a, false));
    side_pair(&s, &p2);
    assert_true(upool_put(f.p, &s, "b.test", 443, &a, false));
    side_pair(&s, &p3);
    assert_true(upool_put(f.p, &s, "c.test", 443, &a, false));
    /* a.test's peer closes, b.test's speaks unasked: the loop discards both */
    close(p1);
    assert_int_equal(write(p2, "x", 1), 1);
    assert_true(loop_run_once(f.l, 100) >= 0);
    assert_false(upool_take(f.p, "a.test", 443, &a, 1, false, &got, &ret));
    assert_false(upool_take(f.p, "b.test", 443, &a, 1, false, &got, &ret));
    upool_get_stats(f.p, &st);
    assert_int_equal(st.discarded, 2);
    assert_int_equal(st.idle, 1);
    /* c.test idles past the timeout */
    fake_now += 1001ull * 1000000ull;
    loop_update_now(f.l);
    assert_true(loop_run_once(f.l, 0) >= 0);
    assert_true(peer_closed(p3));
    upool_get_stats(f.p, &st);
    assert_int_equal(st.idle, 0);
    /* a side that is not alive (peer gone) is not kept; a pool of 0 keeps nothing */
    side_pair(&s, &p1);
    close(p1);
    assert_false(upool_put(f.p, &s, "a.test", 443, &a, false));
    assert_int_equal(s.fd, -1);
    close(p2);
    close(p3);
    teardown(&f);
    setup(&f, 0, 8);
    side_pair(&s, &p1);
    assert_false(upool_put(f.p, &s, "a.test", 443, &a, false));
    assert_true(peer_closed(p1));
    close(p1);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_watch_and_timer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
