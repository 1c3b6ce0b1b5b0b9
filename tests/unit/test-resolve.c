/*
 * Unit tests for the proxy's resolver cache (src/proxy/resolve.c): a c-ares resolver asks a
 * stub DNS server on 127.0.0.1 (in this process, on the same loop), which counts the queries
 * it gets per name and answers A 127.0.0.1 with the TTL the test chose.
 *
 * Time: the loop runs on a fake clock that only the test moves, so TTLs are stepped exactly;
 * waits for bytes to cross loopback are bounded in real time only so that a broken resolver
 * fails instead of hanging.
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
#include "common/net.h"
#include "proxy/resolve.h"
#include "unit-util.h"

#define NS_PER_S 1000000000ull
#define REAL_WAIT_MS 10000

struct fx {
    struct loop *l;
    uint64_t now_ns;
    int stub_fd;
    struct loop_source stub_src;
    struct resolver *res;
    uint32_t ttl;     /* the TTL the stub answers with */
    unsigned queries; /* A queries the stub got (AAAA ones are answered empty, not counted) */
    /* the last lookup's result */
    bool done;
    int status;
    size_t n;
    struct sockaddr_storage addr;
};

static uint64_t fake_clock(void *ud)
{
    return ((struct fx *)ud)->now_ns;
}

/* The stub: NXDOMAIN for names starting "nx", else A 127.0.0.1 (ttl) and an empty AAAA. */
static void on_stub(struct loop_source *src, uint32_t events)
{
    struct fx *x = src->userdata;
    uint8_t q[512], out[600];
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t n;
    size_t at = 12, qend;
    uint16_t qtype;
    (void)events;

    n = recvfrom(src->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
    if (n < 17)
        return;
    while (at < (size_t)n && q[at])
        at += q[at] + 1u;
    if (at + 5 > (size_t)n)
        return;
    qend = at + 5;
    qtype = (uint16_t)(q[at + 1] << 8 | q[at + 2]);
    memcpy(out, q, qend);
    out[2] = 0x81;
    out[3] = q[13] == 'n' && q[14] == 'x' ? 0x83 : 0x80; /* RA, rcode 0 or 3 */
    out[4] = 0, out[5] = 1;                              /* one question */
    out[6] = out[7] = out[8] = out[9] = out[10] = out[11] = 0;
    at = qend;
    if (qtype == 1) {
        x->queries++;
        if ((out[3] & 0x0f) == 0) {
            static const uint8_t rr[] = { 0xc0, 12, 0, 1, 0, 1 };
            memcpy(out + at, rr, sizeof(rr));
            at += sizeof(rr);
            out[at++] = (uint8_t)(x->ttl >> 24);
            out[at++] = (uint8_t)(x->ttl >> 16);
            out[at++] = (uint8_t)(x->ttl >> 8);
            out[at++] = (uint8_t)x->ttl;
            out[at++] = 0, out[at++] = 4;
            out[at++] = 127, out[at++] = 0, out[at++] = 0, out[at++] = 1;
            out[7] = 1; /* one answer */
        }
    }
    (void)sendto(src->fd, out, at, 0, (struct sockaddr *)&from, fl);
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sin);
    struct net_addr up = { 0 };
    char spec[64];

    assert_non_null(x);
    assert_int_equal(loop_new(&x->l), 0);
    x->now_ns = 1000 * NS_PER_S;
    loop_set_clock(x->l, fake_clock, x);
    x->stub_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(x->stub_fd >= 0);
    assert_int_equal(bind(x->stub_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(x->stub_fd, (struct sockaddr *)&sin, &sl), 0);
    assert_int_equal(loop_add(x->l, &x->stub_src, x->stub_fd, EPOLLIN, on_stub, x), 0);
    snprintf(spec, sizeof(spec), "127.0.0.1:%u", ntohs(sin.sin_port));
    assert_int_equal(net_addr_parse(spec, 53, &up), 0);
    assert_int_equal(resolver_new(x->l, &up, &x->res), 0);
    x->ttl = 30;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;

    resolver_free(x->res);
    loop_del(x->l, &x->stub_src);
    close(x->stub_fd);
    loop_free(x->l);
    free(x);
    return 0;
}

static void on_done(void *ud, int status, const struct sockaddr_storage *addrs, size_t n)
{
    struct fx *x = ud;

    x->done = true;
    x->status = status;
    x->n = n;
    if (n)
        x->addr = addrs[0];
}

/* One lookup, driven to its answer. */
static void lookup(struct fx *x, const char *name)
{
    uint64_t end = real_ms() + REAL_WAIT_MS;

    x->done = false;
    loop_update_now(x->l); /* the clock the test moved, as the loop reads it every pass */
    (void)resolver_lookup(x->res, name, on_done, x);
    while (!x->done) {
        if (real_ms() >= end)
            fail_msg("no answer for %s", name);
        loop_run_once(x->l, 1);
    }
}

static void assert_loopback(const struct fx *x)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&x->addr;

    assert_int_equal(x->status, 0);
    assert_int_equal(x->n, 1);
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
}

/* A second lookup within the TTL is answered without a query; after it, asked again. */
static void test_cached_for_ttl(void **state)
{
    struct fx *x = *state;

    lookup(x, "a.test");
    assert_loopback(x);
    assert_int_equal(x->queries, 1);
    x->now_ns += 29 * NS_PER_S;
    lookup(x, "a.test");
    assert_loopback(x);
    assert_int_equal(x->queries, 1);
    lookup(x, "b.test"); /* another name is its own entry */
    assert_int_equal(x->queries, 2);
    x->now_ns += 2 * NS_PER_S; /* a.test's 30 s are over */
    lookup(x, "a.test");
    assert_loopback(x);
    assert_int_equal(x->queries, 3);
}

/* TTL 0 is never kept; a long TTL is kept at most 60 s. */
static void test_ttl_zero_and_cap(void **state)
{
    struct fx *x = *state;

    x->ttl = 0;
    lookup(x, "zero.test");
    lookup(x, "zero.test");
    assert_loopback(x);
    assert_int_equal(x->queries, 2);
    x->ttl = 86400;
    lookup(x, "long.test");
    x->now_ns += 59 * NS_PER_S;
    lookup(x, "long.test");
    assert_int_equal(x->queries, 3);
    x->now_ns += 2 * NS_PER_S;
    lookup(x, "long.test");
    assert_loopback(x);
    assert_int_equal(x->queries, 4);
}

/* A name that does not exist is asked again every time (no negative caching). */
static void test_nxdomain_not_cached(void **state)
{
    struct fx *x = *state;

    lookup(x, "nx.test");
    assert_int_equal(x->status, -ENOENT);
    lookup(x, "nx.test");
    assert_int_equal(x->status, -ENOENT);
    assert_int_equal(x->queries, 2);
}

/* More names than the cache holds: every lookup is still answered right, and the cache keeps
 * working for the newest names. */
static void test_many_names(void **state)
{
    struct fx *x = *state;
    char name[32];

    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        lookup(x, name);
        assert_loopback(x);
        x->now_ns += NS_PER_S / 100;
    }
    assert_int_equal(x->queries, 300);
    lookup(x, "n299.test");
    assert_int_equal(x->queries, 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cached_for_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_zero_and_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nxdomain_not_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
