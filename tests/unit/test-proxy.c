/*
 * The proxy state machine in one process: the proxy, an origin and the clients share one loop
 * on 127.0.0.1 (ephemeral ports). A fake clock drives the timeouts.
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

/* ---- the origin: answers every request head with a fixed response, counts connections ---- */

struct origin {
    int lfd;
    uint16_t port;
    struct loop_source src;
    struct loop_source conns[16];
    int nconns;
    int accepted;
    char last_head[4096];
    int requests;
};

struct fx;
static struct fx *gfx;
static struct loop *fx_loop(struct fx *f);

static const char origin_resp[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Origin: yes\r\n\r\nhello";

static void origin_on_conn(struct loop_source *s, uint32_t ev)
{
    struct origin *o = s->userdata;
    char buf[4096];
    ssize_t n = recv(s->fd, buf, sizeof(buf) - 1, 0);
    (void)ev;

    if (n <= 0) {
        close(s->fd);
        s->registered = false;
        return;
    }
    buf[n] = '\0';
    /* CONNECT tunnel peers send "ping": echo it back upper-cased as "PONG". */
    if (strncmp(buf, "ping", 4) == 0) {
        if (send(s->fd, "PONG", 4, MSG_NOSIGNAL) < 0)
            return;
        return;
    }
    snprintf(o->last_head, sizeof(o->last_head), "%s", buf);
    o->requests++;
    if (strstr(buf, " /slow ") || strstr(buf, " /later "))
        return; /* never answered (/later: by the test itself) */
    if (strstr(buf, " /bye ")) {
        /* a keep-alive response, then the origin drops the idle connection */
        if (send(s->fd, origin_resp, sizeof(origin_resp) - 1, MSG_NOSIGNAL) < 0)
            return;
        loop_del(fx_loop(gfx), s);
        close(s->fd);
        return;
    }
    if (send(s->fd, origin_resp, sizeof(origin_resp) - 1, MSG_NOSIGNAL) < 0)
        return;
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
    struct origin origin;
    char audit_path[64];
};

static struct loop *fx_loop(struct fx *f)
{
    return f->loop;
}

static void origin_accept_cb(struct loop_source *s, uint32_t ev)
{
    struct origin *o = s->userdata;
    int fd = accept4(o->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    (void)ev;
    if (fd < 0 || o->nconns == 16)
        return;
    o->accepted++;
    loop_add(gfx->loop, &o->conns[o->nconns++], fd, EPOLLIN, origin_on_conn, o);
}

/* A proxy on 127.0.0.1 at a port the kernel picks, with the fixture's policy, writing to audit;
 * client_connect() connects to it from now on. */
static struct proxy *start_proxy(struct fx *f, const struct proxy_limits *lim, struct audit *audit)
{
    struct net_addr la;
    struct proxy *px;

    loopback_any(&la);
    assert_int_equal(proxy_new(f->loop, &la, lim, f->res, audit, &px), 0);
    proxy_set_policy(px, f->policy);
    assert_int_equal(proxy_local_addr(px, &la), 0);
    f->px_port = net_addr_port((struct sockaddr *)&la.ss);
    return px;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct net_addr ua;
    struct proxy_limits lim;
    const char *msg;
    int fd;

    gfx = f;
    assert_int_equal(loop_new(&f->loop), 0);
    loop_set_clock(f->loop, fake_clock, NULL);
    /* an unused resolver address: these tests use IP literals and denied names only */
    assert_int_equal(net_addr_parse("127.0.0.1:9", 0, &ua), 0);
    assert_int_equal(resolver_new(f->loop, &ua, &f->res), 0);
    snprintf(f->audit_path, sizeof(f->audit_path), "/tmp/bb-test-proxy-audit.XXXXXX");
    fd = mkstemp(f->audit_path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(audit_open(f->audit_path, "unit", &f->audit), 0);
    f->policy = policy_new();
    assert_int_equal(policy_add_allow(f->policy, "allowed.test", 12, &msg), 0);
    assert_int_equal(policy_add_cidr(f->policy, "127.0.0.1/32", 12, &msg), 0);

    /* origin */
    f->origin.lfd = listen_loopback(16, &f->origin.port);
    assert_int_equal(
        loop_add(f->loop, &f->origin.src, f->origin.lfd, EPOLLIN, origin_accept_cb, &f->origin), 0);

    proxy_limits_default(&lim);
    lim.max_conns = 4;
    lim.head_timeout_ms = 1000;
    lim.run_budget = 2; /* small, so the fairness cut-off happens mid-exchange in these tests */
    f->px = start_proxy(f, &lim, f->audit);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    proxy_free(f->px);
    resolver_free(f->res);
    for (int i = 0; i < f->origin.nconns; i++)
        if (f->origin.conns[i].registered) {
            loop_del(f->loop, &f->origin.conns[i]);
            close(f->origin.conns[i].fd);
        }
    loop_del(f->loop, &f->origin.src);
    close(f->origin.lfd);
    loop_free(f->loop);
    audit_close(f->audit);
    policy_free(f->policy);
    unlink(f->audit_path);
    free(f);
    return 0;
}

static int client_connect(struct fx *f)
{
    return connect_loopback(f->px_port);
}

/* Run the loop until `fd` has `want` in what it received (or EOF, or 200 iterations). */
static size_t pump_until(struct fx *f, int fd, const char *want, char *out, size_t outsz)
{
    size_t got = 0;

    out[0] = '\0';
    for (int i = 0; i < 200; i++) {
        ssize_t n;
        loop_run_once(f->loop, 10);
        n = recv(fd, out + got, outsz - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            out[got] = '\0';
        } else if (n == 0) {
            break;
        }
        if (want && strstr(out, want))
            break;
    }
    return got;
}

static void read_file(const char *path, char *out, size_t outsz)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    assert_true(fd >= 0);
    n = read(fd, out, outsz - 1);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
}

static void send_all(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void test_denied_name(void **state)
{
    struct fx *f = *state;
    char out[4096], audit[4096] = { 0 };
    int fd = client_connect(f);

    send_all(fd, "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n");
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 403 Forbidden\r\n"));
    assert_non_null(strstr(out, "X-Bottle-Block: not-allowlisted\r\n"));
    assert_non_null(strstr(out, "--allow evil.test"));
    close(fd);
    read_file(f->audit_path, audit, sizeof(audit));
    assert_non_null(strstr(audit, "\"host\":\"evil.test\""));
    assert_non_null(strstr(audit, "\"decision\":\"deny\",\"reason\":\"not-allowlisted\""));
    assert_int_equal(f->origin.accepted, 0);
}

/* proxy_add_secret (the API credential substitution uses): a credential's value, raw or
 * encoded, going to any host but its own is refused with dlp:credential, audited without the
 * value; to its own host it passes. */
static void test_credential_elsewhere(void **state)
{
    struct fx *f = *state;
    static const char secret[] = "sk-test-credential-0123456789";
    char out[4096], req[512], audit[8192] = { 0 };
    int fd;

    assert_int_equal(proxy_add_secret(f->px, "allowed.test", 0, secret, strlen(secret)), 0);
    assert_int_equal(proxy_add_secret(f->px, "allowed.test", 0, "short", 5), -EINVAL);
    fd = client_connect(f);
    snprintf(req, sizeof(req),
             "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Key: %s\r\n\r\n",
             f->origin.port, f->origin.port, secret);
    send_all(fd, req);
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    if (!strstr(out, "HTTP/1.1 403 Forbidden\r\n"))
        fail_msg("got: %.300s", out);
    assert_non_null(strstr(out, "X-Bottle-Block: dlp:credential\r\n"));
    close(fd);
    /* hex-encoded in the query */
    fd = client_connect(f);
    char hex[128] = "";
    for (size_t i = 0; i < strlen(secret); i++)
        snprintf(hex + 2 * i, sizeof(hex) - 2 * i, "%02x", (unsigned char)secret[i]);
    snprintf(req, sizeof(req),
             "GET http://127.0.0.1:%u/a?d=%s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, hex, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "X-Bottle-Block: dlp:credential\r\n"));
    close(fd);
    assert_int_equal(f->origin.accepted, 0);
    read_file(f->audit_path, audit, sizeof(audit));
    assert_non_null(strstr(audit, "\"reason\":\"dlp:credential\""));
    assert_null(strstr(audit, "sk-test-credential"));
    assert_null(strstr(audit, hex));
    /* its own host: the same value registered for a second host passes there */
    assert_int_equal(proxy_add_secret(f->px, "127.0.0.1", f->origin.port, secret, strlen(secret)),
                     0);
    fd = client_connect(f);
    snprintf(req, sizeof(req),
             "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Key: %s\r\n\r\n",
             f->origin.port, f->origin.port, secret);
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(f->origin.last_head, secret));
    close(fd);
}

static void test_get_keepalive_reuses_upstream(void **state)
{
    struct fx *f = *state;
    char out[8192], req[512];
    int fd = client_connect(f);

    snprintf(req, sizeof(req),
             "GET http://127.0.0.1:%u/a?b=c HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Proxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive, X-Drop\r\n"
             "X-Drop: 1\r\nX-Keep: 2\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "X-Origin: yes"));
    /* what the origin got: origin-form, no proxy credentials, no fields named in Connection */
    assert_true(strncmp(f->origin.last_head, "GET /a?b=c HTTP/1.1\r\n", 21) == 0);
    assert_null(strstr(f->origin.last_head, "Proxy-Authorization"));
    assert_null(strstr(f->origin.last_head, "X-Drop"));
    assert_non_null(strstr(f->origin.last_head, "X-Keep: 2"));
    /* second request on the same client connection: same upstream connection */
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "hello"));
    assert_int_equal(f->origin.requests, 2);
    assert_int_equal(f->origin.accepted, 1);
    close(fd);
}

/* Many pipelined requests in one write: every one is answered, although the connection's
 * run is cut off for fairness and no readiness event announces the buffered requests. */
static void test_pipelined_burst(void **state)
{
    struct fx *f = *state;
    char one[256], burst[256 * 40], out[16384];
    size_t n = 0;
    int fd = client_connect(f), answers = 0;

    snprintf(one, sizeof(one), "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    for (int i = 0; i < 40; i++) {
        memcpy(burst + n, one, strlen(one));
        n += strlen(one);
    }
    assert_int_equal(send(fd, burst, n, MSG_NOSIGNAL), (ssize_t)n);
    for (int i = 0; i < 400 && answers < 40; i++) {
        ssize_t got;
        loop_run_once(f->loop, 10);
        while ((got = recv(fd, out, sizeof(out) - 1, 0)) > 0) {
            out[got] = '\0';
            for (char *p = out; (p = strstr(p, "hello")); p += 5)
                answers++;
        }
    }
    assert_int_equal(answers, 40);
    assert_int_equal(f->origin.requests, 40);
    close(fd);
}

/* A client that resets its connection while the proxy waits for the upstream: the proxy must
 * not spin on the reset socket (EPOLLERR/EPOLLHUP are reported even without interest), and the
 * allowed request that went upstream still gets its audit record. */
static void test_reset_while_waiting_no_spin(void **state)
{
    struct fx *f = *state;
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    char req[256], audit[8192] = { 0 };
    int fd = client_connect(f), events = 0;

    snprintf(req, sizeof(req),
             "GET http://127.0.0.1:%u/slow HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", f->origin.port,
             f->origin.port);
    send_all(fd, req);
    for (int i = 0; i < 50 && f->origin.requests == 0; i++)
        loop_run_once(f->loop, 10);
    assert_int_equal(f->origin.requests, 1);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd); /* RST */
    for (int i = 0; i < 10; i++)
        events += loop_run_once(f->loop, 20);
    assert_true(events <= 3);
    /* closing the connection (here: at teardown, or the idle timeout) writes the record */
    fake_now += 700ull * 1000000000ull;
    loop_run_once(f->loop, 10);
    read_file(f->audit_path, audit, sizeof(audit));
    assert_non_null(strstr(audit, "\"decision\":\"allow\",\"reason\":\"idle-timeout\""));
}

/* The client's read interest stays on while its exchange waits on the upstream (no epoll_ctl
 * pair per request). A request pipelined meanwhile wakes the proxy once, which turns the
 * interest off then: no spinning on the level-triggered socket; the waiting response still goes
 * out first, and the pipelined request after it. */
static void test_pipelined_while_waiting_no_spin(void **state)
{
    struct fx *f = *state;
    char req[256], out[8192];
    int fd = client_connect(f), events = 0, ufd;
    size_t got = 0;

    /* one whole exchange first: the next request rides the kept upstream, with the client's
     * interest as a kept-alive exchange leaves it */
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "hello"));
    snprintf(req, sizeof(req),
             "GET http://127.0.0.1:%u/later HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", f->origin.port,
             f->origin.port);
    send_all(fd, req);
    for (int i = 0; i < 50 && f->origin.requests == 1; i++)
        loop_run_once(f->loop, 10);
    assert_int_equal(f->origin.requests, 2);
    for (int i = 0; i < 3; i++)
        loop_run_once(f->loop, 10); /* settled: waiting on the upstream */
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/b HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    for (int i = 0; i < 10; i++)
        events += loop_run_once(f->loop, 20);
    assert_true(events <= 2);
    assert_int_equal(f->origin.requests, 2);        /* /b waits for /later */
    assert_true(recv(fd, out, sizeof(out), 0) < 0); /* nothing answered yet */
    /* now the origin answers the first */
    ufd = f->origin.conns[f->origin.nconns - 1].fd;
    assert_int_equal(send(ufd, origin_resp, sizeof(origin_resp) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(origin_resp) - 1));
    for (int i = 0; i < 200 && f->origin.requests < 3; i++)
        loop_run_once(f->loop, 10);
    assert_int_equal(f->origin.requests, 3);
    assert_int_equal(f->origin.accepted, 1);
    for (int i = 0; i < 200; i++) {
        ssize_t n;
        loop_run_once(f->loop, 10);
        n = recv(fd, out + got, sizeof(out) - 1 - got, 0);
        if (n > 0)
            got += (size_t)n;
        out[got] = '\0';
        if (strstr(out, "hello") && strstr(strstr(out, "hello") + 5, "hello"))
            break;
    }
    assert_non_null(strstr(out, "hello"));
    assert_non_null(strstr(strstr(out, "hello") + 5, "hello"));
    assert_true(strncmp(f->origin.last_head, "GET /b ", 7) == 0);
    close(fd);
}

static void test_host_mismatch_audited(void **state)
{
    struct fx *f = *state;
    char out[4096], audit[4096] = { 0 }, req[256];
    int fd = client_connect(f);

    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
             f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 400 "));
    close(fd);
    read_file(f->audit_path, audit, sizeof(audit));
    assert_non_null(strstr(audit, "\"decision\":\"deny\",\"reason\":\"host-mismatch\""));
    assert_int_equal(f->origin.accepted, 0);
}

/* The origin closed the idle upstream connection between two requests of one client
 * connection: the proxy opens a new one instead of answering 502. */
static void test_upstream_closed_while_idle(void **state)
{
    struct fx *f = *state;
    char out[8192], req[256];
    int fd = client_connect(f);

    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/bye HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
    for (int i = 0; i < 5; i++)
        loop_run_once(f->loop, 10); /* the FIN reaches the proxy's upstream socket */
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
    assert_int_equal(f->origin.accepted, 2);
    close(fd);
}

static void test_head_timeout(void **state)
{
    struct fx *f = *state;
    char out[4096];
    int fd = client_connect(f);

    send_all(fd, "GET http://127.0.0.1/ HTTP/1.1\r\n"); /* never finished */
    loop_run_once(f->loop, 10);
    loop_run_once(f->loop, 10);
    fake_now += 2000ull * 1000000ull; /* past the 1 s head timeout */
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 408 "));
    close(fd);
}

static void test_connection_limit(void **state)
{
    struct fx *f = *state;
    int fds[5];
    char out[1024];

    for (int i = 0; i < 4; i++) {
        fds[i] = client_connect(f);
        loop_run_once(f->loop, 10);
    }
    fds[4] = client_connect(f);
    pump_until(f, fds[4], "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 503 "));
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    for (int i = 0; i < 5; i++)
        loop_run_once(f->loop, 10);
    /* The refusal is on record too. */
    read_file(f->audit_path, out, sizeof(out));
    assert_non_null(strstr(out, "\"decision\":\"deny\",\"reason\":\"too-many-connections\""));
    assert_non_null(strstr(out, "\"status\":503"));
}

/*
 * The idle upstream's RST and the client's next CONNECT in one epoll batch (the CONNECT first):
 * the CONNECT replaces the upstream socket, and the RST's event, fetched for the old socket, must
 * not reach the new one, whose connect is still in SYN-SENT (its target's accept queue is full,
 * so its SYN is dropped). Before the loop's generation check this answered "200 Connection
 * established" for a connection that did not exist.
 */
static void test_stale_rst_no_early_200(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sin);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    char out[8192], req[256];
    struct proxy *px;
    struct proxy_limits lim;
    int fd, full, fillers[2];

    /* The default run budget: the CONNECT's upstream socket is opened in the same run that
     * reads the head, as in the daemon (the fixture's budget of 2 would defer it). */
    proxy_limits_default(&lim);
    px = start_proxy(f, &lim, f->audit);
    fd = client_connect(f);

    /* A listener that never accepts, its queue filled: connects to it stay in SYN-SENT. */
    full = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(full, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(full, 0), 0);
    getsockname(full, (struct sockaddr *)&sin, &sl);
    for (int i = 0; i < 2; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
    }
    usleep(50000);

    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "hello", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
    for (int i = 0; i < 3; i++)
        loop_run_once(f->loop, 10);
    assert_int_equal(f->origin.nconns, 1);

    /* The CONNECT is ready first, then the origin resets the idle upstream; one batch. */
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             ntohs(sin.sin_port), ntohs(sin.sin_port));
    send_all(fd, req);
    usleep(20000);
    loop_del(f->loop, &f->origin.conns[0]);
    setsockopt(f->origin.conns[0].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(f->origin.conns[0].fd);
    usleep(20000);
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out)); /* 200 passes of 10 ms */
    assert_null(strstr(out, "200 Connection established"));
    close(fd);
    for (int i = 0; i < 3; i++)
        loop_run_once(f->loop, 0);
    for (int i = 0; i < 2; i++)
        close(fillers[i]);
    close(full);
    proxy_free(px);
    loop_run_once(f->loop, 0);
}

/* 1000 identical denials: a bounded number of audit lines whose counts add up to 1000
 * (the first of each window written at once, the repeats summarised when the window ends). */
static void test_denials_aggregated(void **state)
{
    struct fx *f = *state;
    static char log[1 << 20];
    char out[4096];
    size_t lines;

    audit_attach_loop(f->audit, f->loop);
    for (int i = 0; i < 1000; i++) {
        int fd = client_connect(f);
        send_all(fd, "GET http://evil.test/x HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
        assert_non_null(strstr(out, "HTTP/1.1 403 Forbidden\r\n"));
        close(fd);
        fake_now += 3000000ull; /* 3 ms: the 1000 span three seconds */
        loop_run_once(f->loop, 0);
        loop_run_once(f->loop, 0);
    }
    audit_attach_loop(f->audit, NULL); /* writes the last summary */
    read_file(f->audit_path, log, sizeof(log));
    assert_int_equal(audit_decisions(log, "\"host\":\"evil.test\"", &lines), 1000);
    assert_true(lines >= 2);
    assert_true(lines <= 10); /* two per one-second window, at most */
    assert_non_null(strstr(log, "\"count\":"));
    assert_int_equal(f->origin.accepted, 0);
}

/* The audit log cannot be written (ENOSPC): nothing new goes out (503 audit-failed), for plain
 * requests and CONNECT alike, and the origin never sees a connection. */
static void test_audit_failed_refuses(void **state)
{
    struct fx *f = *state;
    struct audit *full;
    struct proxy *px;
    struct proxy_limits lim;
    char out[4096], req[256];
    int fd;

    if (access("/dev/full", W_OK) < 0)
        skip(); /* no /dev/full: the integration test (tmpfs) covers it */
    assert_int_equal(audit_open("/dev/full", "unit", &full), 0);
    proxy_limits_default(&lim);
    px = start_proxy(f, &lim, full);

    /* A denial whose record cannot be written puts the sink in the failed state. */
    fd = client_connect(f);
    send_all(fd, "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n");
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 403 "));
    close(fd);
    assert_true(audit_failed(full));

    fd = client_connect(f);
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 503 "));
    assert_non_null(strstr(out, "X-Bottle-Error: audit-failed\r\n"));
    close(fd);

    fd = client_connect(f);
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\nping",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 503 "));
    assert_non_null(strstr(out, "X-Bottle-Error: audit-failed\r\n"));
    assert_null(strstr(out, "200 Connection established"));
    close(fd);
    for (int i = 0; i < 5; i++)
        loop_run_once(f->loop, 0);
    assert_int_equal(f->origin.accepted, 0);
    assert_int_equal(f->origin.requests, 0);
    proxy_free(px);
    loop_run_once(f->loop, 0);
    audit_close(full);
}

static void test_connect_tunnel(void **state)
{
    struct fx *f = *state;
    char out[4096], req[256];
    int fd = client_connect(f);

    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\nping",
             f->origin.port, f->origin.port);
    send_all(fd, req);
    pump_until(f, fd, "PONG", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200 Connection established\r\n\r\n"));
    /* the early "ping" sent with the CONNECT head reached the origin through the tunnel */
    assert_non_null(strstr(out, "PONG"));
    close(fd);
}

static void test_upstream_refused(void **state)
{
    struct fx *f = *state;
    char out[4096];
    int fd = client_connect(f);

    /* port 9 (discard) on 127.0.0.1 is closed here: connect is refused */
    send_all(fd, "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n");
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 502 "));
    assert_non_null(strstr(out, "X-Bottle-Error: upstream-connect-refused"));
    close(fd);
}

static void test_ip_literal_outside_cidr(void **state)
{
    struct fx *f = *state;
    char out[4096];
    int fd = client_connect(f);

    send_all(fd, "GET http://127.0.0.2:80/ HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n");
    pump_until(f, fd, "\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "X-Bottle-Block: ip-literal"));
    close(fd);
}

static int drained;
static void on_drained(void *ud)
{
    (void)ud;
    drained++;
}

static void test_drain_closes_idle(void **state)
{
    struct fx *f = *state;
    int fd = client_connect(f);

    loop_run_once(f->loop, 10); /* accepted, idle, no request yet */
    proxy_drain(f->px, on_drained, NULL);
    for (int i = 0; i < 5 && !drained; i++)
        loop_run_once(f->loop, 10);
    assert_int_equal(drained, 1);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_denied_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credential_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_keepalive_reuses_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_while_waiting_no_spin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_while_waiting_no_spin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_closed_while_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_mismatch_audited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denials_aggregated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_rst_no_early_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_failed_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_tunnel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_literal_outside_cidr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_closes_idle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
