/*
 * The allowed-name path: resolve -> vet every address (SSRF guard) -> connect, with the resolver
 * answering from a table (resolver_new_answering) and every connect the proxy makes recorded
 * (net_connect_tcp is wrapped at link time, -Wl,--wrap). One origin on 127.0.0.1, the proxy and
 * the clients share one loop with a fake clock. Also: proxy_new() leaks no descriptor when the
 * listener cannot join the loop (loop_add is wrapped too, to fail on demand).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include "common/macro.h"
#include "common/net.h"
#include "audit/audit.h"
#include "policy/policy.h"
#include "proxy/proxy.h"
#include "proxy/resolve.h"
#include "unit-util.h"

/* ---- link-time wraps ---- */

int __real_net_connect_tcp(const struct sockaddr *sa, socklen_t len);
int __wrap_net_connect_tcp(const struct sockaddr *sa, socklen_t len);
int __real_loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_io_fn cb,
                    void *userdata);
int __wrap_loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_io_fn cb,
                    void *userdata);

static struct sockaddr_storage connects[8];
static size_t nconnects;
static int fail_loop_add; /* > 0: the next loop_add() fails with -ENOMEM */

int __wrap_net_connect_tcp(const struct sockaddr *sa, socklen_t len)
{
    if (nconnects < ARRAY_SIZE(connects))
        memcpy(&connects[nconnects], sa, MIN((size_t)len, sizeof(connects[0])));
    nconnects++;
    return __real_net_connect_tcp(sa, len);
}

int __wrap_loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_io_fn cb,
                    void *userdata)
{
    if (fail_loop_add > 0) {
        fail_loop_add--;
        return -ENOMEM;
    }
    return __real_loop_add(l, src, fd, events, cb, userdata);
}

/* ---- the resolver's table: the first answer, then (a rebinding) every later one ---- */

static const char *answer_first[4], *answer_later[4];
static unsigned lookups;
static char last_name[256];

static size_t fill(const char *const *ips, struct sockaddr_storage *addrs, size_t max)
{
    size_t n = 0;

    for (; n < 4 && n < max && ips[n]; n++) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&addrs[n];
        memset(&addrs[n], 0, sizeof(addrs[n]));
        in4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ips[n], &in4->sin_addr), 1);
    }
    return n;
}

static int answer(void *ud, const char *name, struct sockaddr_storage *addrs, size_t max)
{
    (void)ud;
    snprintf(last_name, sizeof(last_name), "%s", name);
    lookups++;
    return (int)fill(lookups == 1 ? answer_first : answer_later, addrs, max);
}

/* ---- fixture ---- */

static uint64_t fake_now = 1000000000ull;
static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

struct fx {
    struct loop *loop;
    struct resolver *res;
    struct audit *audit;
    struct policy *policy;
    struct proxy *px;
    uint16_t px_port;
    int origin_lfd;
    uint16_t origin_port;
    struct loop_source origin_src;
    struct loop_source origin_conn;
    int accepted;
    char audit_path[64];
};

static void origin_on_conn(struct loop_source *s, uint32_t ev)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    char buf[4096];
    ssize_t n = recv(s->fd, buf, sizeof(buf), 0);
    struct fx *f = s->userdata;
    (void)ev;

    if (n <= 0) {
        loop_del(f->loop, s);
        close(s->fd);
        return;
    }
    if (send(s->fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL) < 0)
        return;
}

static void origin_on_accept(struct loop_source *s, uint32_t ev)
{
    struct fx *f = s->userdata;
    int fd = accept4(f->origin_lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    (void)ev;

    if (fd < 0)
        return;
    f->accepted++;
    if (f->origin_conn.registered) {
        close(fd);
        return;
    }
    assert_int_equal(loop_add(f->loop, &f->origin_conn, fd, EPOLLIN, origin_on_conn, f), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct net_addr la;
    struct proxy_limits lim;
    const char *msg;
    int fd;

    memset(answer_first, 0, sizeof(answer_first));
    memset(answer_later, 0, sizeof(answer_later));
    lookups = 0;
    nconnects = 0;
    fail_loop_add = 0;
    assert_int_equal(loop_new(&f->loop), 0);
    loop_set_clock(f->loop, fake_clock, NULL);
    assert_int_equal(resolver_new_answering(f->loop, answer, NULL, &f->res), 0);
    snprintf(f->audit_path, sizeof(f->audit_path), "/tmp/bb-test-proxy-connect.XXXXXX");
    fd = mkstemp(f->audit_path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(audit_open(f->audit_path, "unit", &f->audit), 0);

    /* the origin: 127.0.0.1 only, so 127.0.0.2 on the same port refuses */
    f->origin_lfd = listen_loopback(16, &f->origin_port);
    assert_int_equal(loop_add(f->loop, &f->origin_src, f->origin_lfd, EPOLLIN, origin_on_accept, f),
                     0);

    f->policy = policy_new();
    {
        char pat[64];
        int n = snprintf(pat, sizeof(pat), "allowed.test:%u", f->origin_port);
        assert_int_equal(policy_add_allow(f->policy, pat, (size_t)n, &msg), 0);
    }
    /* loopback is restricted (SSRF guard) unless an allow_cidr entry covers it */
    assert_int_equal(policy_add_cidr(f->policy, "127.0.0.0/29", 12, &msg), 0);

    proxy_limits_default(&lim);
    loopback_any(&la);
    assert_int_equal(proxy_new(f->loop, &la, &lim, f->res, f->audit, &f->px), 0);
    proxy_set_policy(f->px, f->policy);
    assert_int_equal(proxy_local_addr(f->px, &la), 0);
    f->px_port = net_addr_port((struct sockaddr *)&la.ss);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    proxy_free(f->px);
    resolver_free(f->res);
    if (f->origin_conn.registered) {
        loop_del(f->loop, &f->origin_conn);
        close(f->origin_conn.fd);
    }
    loop_del(f->loop, &f->origin_src);
    close(f->origin_lfd);
    loop_free(f->loop);
    audit_close(f->audit);
    policy_free(f->policy);
    unlink(f->audit_path);
    free(f);
    return 0;
}

/* Send one request for http://allowed.test:PORT/ and run the loop until the response head (and
 * "hello" when it is a 200) arrived. */
static void get(struct fx *f, char *out, size_t outsz)
{
    char req[256];
    size_t got = 0;
    int fd = connect_loopback(f->px_port), n;

    n = snprintf(req, sizeof(req),
                 "GET http://allowed.test:%u/ HTTP/1.1\r\nHost: allowed.test:%u\r\n\r\n",
                 f->origin_port, f->origin_port);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    out[0] = '\0';
    for (int i = 0; i < 200; i++) {
        ssize_t r;
        loop_run_once(f->loop, 10);
        r = recv(fd, out + got, outsz - 1 - got, 0);
        if (r > 0) {
            got += (size_t)r;
            out[got] = '\0';
        } else if (r == 0) {
            break;
        }
        if (strstr(out, "\r\n\r\n") && (!strstr(out, " 200 ") || strstr(out, "hello")))
            break;
    }
    close(fd);
}

static void assert_connect_to(size_t i, const char *ip, uint16_t port)
{
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&connects[i];
    char text[INET_ADDRSTRLEN];

    assert_int_equal(in4->sin_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text)));
    assert_string_equal(text, ip);
    assert_int_equal(ntohs(in4->sin_port), port);
}

/* A name that resolves only to a private address: 403 ssrf-private, no connect at all. */
static void test_private_address_refused(void **state)
{
    struct fx *f = *state;
    char out[4096];

    answer_first[0] = "10.0.0.5";
    get(f, out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 403 Forbidden\r\n"));
    assert_non_null(strstr(out, "X-Bottle-Block: ssrf-private\r\n"));
    assert_non_null(strstr(out, "10.0.0.5"));
    assert_string_equal(last_name, "allowed.test");
    assert_int_equal(lookups, 1);
    assert_int_equal(nconnects, 0);
    assert_int_equal(f->accepted, 0);
}

/* Several vetted addresses, the first refuses the connection: the next one is tried. */
static void test_refused_then_next_address(void **state)
{
    struct fx *f = *state;
    char out[4096];

    answer_first[0] = "127.0.0.2"; /* allowed by the cidr, nothing listens there */
    answer_first[1] = "127.0.0.1";
    get(f, out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "hello"));
    assert_int_equal(nconnects, 2);
    assert_connect_to(0, "127.0.0.2", f->origin_port);
    assert_connect_to(1, "127.0.0.1", f->origin_port);
    assert_int_equal(f->accepted, 1);
}

/*
 * The connect goes to exactly the address that was vetted: the private one among the answers is
 * never dialled, and there is no second lookup (a later answer, which points elsewhere, is never
 * asked for).
 */
static void test_connects_to_vetted_address_only(void **state)
{
    struct fx *f = *state;
    char out[4096];

    answer_first[0] = "10.0.0.7";
    answer_first[1] = "127.0.0.1";
    answer_later[0] = "127.0.0.3"; /* a rebinding; allowed by the cidr, but never vetted */
    get(f, out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "hello"));
    assert_int_equal(lookups, 1);
    assert_int_equal(nconnects, 1);
    assert_connect_to(0, "127.0.0.1", f->origin_port);
    assert_int_equal(f->accepted, 1);
}

/* The resolver has no address: 502 no-address, nothing dialled. */
static void test_no_address(void **state)
{
    struct fx *f = *state;
    char out[4096];

    get(f, out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 502 "));
    assert_non_null(strstr(out, "X-Bottle-Error: no-address"));
    assert_int_equal(nconnects, 0);
}

/* proxy_new() whose listener cannot join the loop closes every descriptor it opened (the
 * listening socket and the spare kept for running out of descriptors). */
static void test_proxy_new_loop_add_fails_no_leak(void **state)
{
    struct fx *f = *state;
    struct net_addr la;
    struct proxy *px = NULL;
    int before;

    loopback_any(&la);
    before = count_fds();
    fail_loop_add = 1;
    assert_int_equal(proxy_new(f->loop, &la, NULL, f->res, f->audit, &px), -ENOMEM);
    assert_null(px);
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_private_address_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_then_next_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connects_to_vetted_address_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_new_loop_add_fails_no_leak, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
