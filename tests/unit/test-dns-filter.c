/*
 * Unit tests for the DNS filter (src/dns) over real loopback sockets: the filter, a stub upstream
 * resolver (UDP + TCP, records every name it is asked) and the test's client all live on
 * 127.0.0.1 and are driven by one loop in this process.
 *
 * Time: the loop runs on a fake clock (loop_set_clock) that only advance() moves, so upstream
 * timeouts, cache TTLs, TCP idle and audit windows are stepped exactly, and nothing here sleeps
 * or asserts on the wall clock. Waiting for bytes to cross loopback does take real time; that
 * wait ends as soon as the bytes arrive and is bounded (REAL_WAIT_MS) only so that a broken
 * filter fails instead of hanging; fake time does not move meanwhile, so a slow machine cannot
 * make a timer fire early.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#include "common/limits.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/net.h"
#include "dns/filter.h"
#include "dns/wire.h"
#include "audit/audit.h"
#include "policy/policy.h"
#include "unit-util.h"

/* ---- stub upstream ---- */

#define STUB_MAX_LOG 4096

struct stub_tcp {
    struct stub *s;
    struct loop_source src;
    int fd;
    uint8_t buf[70000];
    size_t len;
};

struct stub {
    struct loop *l;
    int ufd, tfd;
    struct loop_source usrc, tsrc;
    struct net_addr addr;
    char names[STUB_MAX_LOG][DNS_MAX_NAME_TEXT + 1];
    uint16_t ids[STUB_MAX_LOG], ports[STUB_MAX_LOG];
    bool via_tcp[STUB_MAX_LOG];
    size_t n;
    bool spoof_first; /* answer "spoof." with a wrong ID first */
    bool wrongsock_done;
    /* "holdN.allowed.test": held until hold_n queries are in, then answered in reverse order */
    size_t hold_want, hold_n;
    struct {
        uint8_t q[512];
        size_t len;
        struct sockaddr_storage ss;
        socklen_t sl;
    } held[300];
    struct stub_tcp *conns[16];
    size_t nconns;
};

struct rsp {
    uint8_t b[8192];
    size_t n;
};

static void r8(struct rsp *r, uint8_t v)
{
    r->b[r->n++] = v;
}
static void r16(struct rsp *r, uint16_t v)
{
    r8(r, (uint8_t)(v >> 8));
    r8(r, (uint8_t)v);
}
static void r32(struct rsp *r, uint32_t v)
{
    r16(r, (uint16_t)(v >> 16));
    r16(r, (uint16_t)v);
}
static void rrr(struct rsp *r, uint16_t type, uint32_t ttl, const void *rd, uint16_t rdlen)
{
    r16(r, 0xc00c);
    r16(r, type);
    r16(r, 1);
    r32(r, ttl);
    r16(r, rdlen);
    memcpy(r->b + r->n, rd, rdlen);
    r->n += rdlen;
}
static void ra(struct rsp *r, uint32_t ttl, const char *ip)
{
    uint8_t a[4];
    assert_int_equal(inet_pton(AF_INET, ip, a), 1);
    rrr(r, DNS_TYPE_A, ttl, a, 4);
}

/* Answers by name: see the table in each branch. Returns the length, 0 for "no answer". */
static size_t stub_answer(struct stub *s, const uint8_t *q, size_t qlen, bool tcp, uint8_t *out,
                          bool *ret_wrong_id)
{
    struct dns_query_info qi;
    char name[DNS_MAX_NAME_TEXT + 1];
    size_t nl;
    struct rsp r = { .n = 0 };
    unsigned rcode = 0;
    uint16_t an = 0, ns = 0;

    *ret_wrong_id = false;
    if (dns_query_parse(q, qlen, &qi) < 0 ||
        dns_name_to_text(q + DNS_HEADER_LEN, qi.qname_len, name, &nl) < 0)
        return 0;
    memcpy(r.b, q, qi.question_end);
    r.n = qi.question_end;
    if (strcmp(name, "slow.allowed.test") == 0)
        return 0;
    if (strcmp(name, "fail.allowed.test") == 0) {
        rcode = DNS_RCODE_SERVFAIL;
    } else if (strcmp(name, "nx.allowed.test") == 0) {
        rcode = DNS_RCODE_NXDOMAIN;
        r16(&r, 0xc00c);
        r16(&r, DNS_TYPE_SOA);
        r16(&r, 1);
        r32(&r, 600);
        r16(&r, 22);
        r8(&r, 0);
        r8(&r, 0);
        r32(&r, 1);
        r32(&r, 2);
        r32(&r, 3);
        r32(&r, 4);
        r32(&r, 30);
        ns = 1;
    } else if (strcmp(name, "private.allowed.test") == 0) {
        ra(&r, 300, "10.0.0.5");
        ra(&r, 300, "93.184.216.35");
        ra(&r, 300, "169.254.169.254");
        an = 3;
    } else if (strcmp(name, "allprivate.allowed.test") == 0) {
        ra(&r, 300, "127.0.0.1");
        an = 1;
    } else if (strcmp(name, "cidr.allowed.test") == 0) {
        ra(&r, 300, "10.1.2.3");
        an = 1;
    } else if (strcmp(name, "big.allowed.test") == 0) {
        uint8_t txt[256];
        memset(txt, 'x', sizeof(txt));
        txt[0] = 255;
        for (int i = 0; i < 12; i++)
            rrr(&r, DNS_TYPE_TXT, 300, txt, 256);
        an = 12;
    } else if (strncmp(name, "hold", 4) == 0) {
        /* 93.184.(i / 256).(i % 256): each answer says which name it is for */
        unsigned i = 0;
        for (const char *d = name + 4; *d >= '0' && *d <= '9'; d++)
            i = i * 10 + (unsigned)(*d - '0');
        uint8_t a[4] = { 93, 184, (uint8_t)(i >> 8), (uint8_t)i };
        rrr(&r, DNS_TYPE_A, 300, a, 4);
        an = 1;
    } else if (qi.qtype == DNS_TYPE_AAAA) {
        uint8_t a6[16] = { 0x26, 0x06, 0x28, 0 };
        a6[15] = 1;
        rrr(&r, DNS_TYPE_AAAA, 300, a6, 16);
        an = 1;
    } else {
        ra(&r, 300, "93.184.216.34");
        an = 1;
    }
    size_t limit = tcp ? 65535 : (qi.has_opt ? qi.udp_size : 512);
    uint16_t flags = DNS_FLAG_QR | DNS_FLAG_RA | (qi.hdr.flags & DNS_FLAG_RD) | rcode;
    if (r.n > limit) {
        r.n = qi.question_end;
        an = ns = 0;
        flags |= DNS_FLAG_TC;
    }
    dns_put16(r.b + 2, flags);
    dns_put16(r.b + 6, an);
    dns_put16(r.b + 8, ns);
    dns_put16(r.b + 10, 0);
    if (s->spoof_first && strcmp(name, "spoof.allowed.test") == 0) {
        s->spoof_first = false;
        *ret_wrong_id = true;
    }
    memcpy(out, r.b, r.n);
    return r.n;
}

static void stub_log(struct stub *s, const uint8_t *q, size_t len, uint16_t port, bool tcp)
{
    struct dns_query_info qi;
    size_t nl;

    if (s->n >= STUB_MAX_LOG || dns_query_parse(q, len, &qi) < 0)
        return;
    if (dns_name_to_text(q + DNS_HEADER_LEN, qi.qname_len, s->names[s->n], &nl) < 0)
        snprintf(s->names[s->n], sizeof(s->names[s->n]), "(unprintable)");
    s->ids[s->n] = qi.hdr.id;
    s->ports[s->n] = port;
    s->via_tcp[s->n] = tcp;
    s->n++;
}

static void on_stub_udp(struct loop_source *src, uint32_t events)
{
    struct stub *s = src->userdata;
    uint8_t q[4096], out[8192];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    bool wrong;
    (void)events;

    ssize_t n = recvfrom(s->ufd, q, sizeof(q), 0, (struct sockaddr *)&ss, &sl);
    if (n <= 0)
        return;
    uint16_t port = net_addr_port((struct sockaddr *)&ss);
    stub_log(s, q, (size_t)n, port, false);
    if (s->hold_want && strncmp(s->names[s->n - 1], "hold", 4) == 0) {
        assert_true(s->hold_n < ARRAY_SIZE(s->held) && (size_t)n <= sizeof(s->held[0].q));
        memcpy(s->held[s->hold_n].q, q, (size_t)n);
        s->held[s->hold_n].len = (size_t)n;
        s->held[s->hold_n].ss = ss;
        s->held[s->hold_n].sl = sl;
        if (++s->hold_n < s->hold_want)
            return;
        for (size_t i = s->hold_n; i-- > 0;) {
            size_t hn = stub_answer(s, s->held[i].q, s->held[i].len, false, out, &wrong);
            assert_true(hn > 0);
            sendto(s->ufd, out, hn, 0, (struct sockaddr *)&s->held[i].ss, s->held[i].sl);
        }
        s->hold_want = s->hold_n = 0;
        return;
    }
    size_t rn = stub_answer(s, q, (size_t)n, false, out, &wrong);
    if (!rn)
        return;
    if (!s->wrongsock_done && strcmp(s->names[s->n - 1], "wrongsock.allowed.test") == 0) {
        /* First try: the right ID with other data, but to another pool socket of the filter
         * (a port seen earlier), and the right socket with a wrong ID. No real answer: the
         * retry gets it. */
        struct sockaddr_storage other = ss;
        uint16_t oport = 0;
        s->wrongsock_done = true;
        for (size_t i = s->n - 1; i-- > 0 && !oport;)
            if (!s->via_tcp[i] && s->ports[i] != port)
                oport = s->ports[i];
        assert_int_not_equal(oport, 0);
        ((struct sockaddr_in *)&other)->sin_port = htons(oport);
        out[rn - 1] = 66; /* 93.184.216.66 */
        sendto(s->ufd, out, rn, 0, (struct sockaddr *)&other, sl);
        dns_put16(out, (uint16_t)(dns_get16(out) ^ 0x5a5a));
        sendto(s->ufd, out, rn, 0, (struct sockaddr *)&ss, sl);
        return;
    }
    if (wrong) {
        dns_put16(out, (uint16_t)(dns_get16(out) + 1));
        sendto(s->ufd, out, rn, 0, (struct sockaddr *)&ss, sl);
        dns_put16(out, (uint16_t)(dns_get16(out) - 1));
    }
    sendto(s->ufd, out, rn, 0, (struct sockaddr *)&ss, sl);
}

static void on_stub_tcp_conn(struct loop_source *src, uint32_t events)
{
    struct stub_tcp *c = src->userdata;
    uint8_t out[8192 + 2];
    bool wrong;
    (void)events;

    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0) {
        loop_del(c->s->l, &c->src);
        return;
    }
    c->len += (size_t)n;
    while (c->len >= 2 && c->len >= 2u + dns_get16(c->buf)) {
        size_t ml = dns_get16(c->buf);
        stub_log(c->s, c->buf + 2, ml, 0, true);
        size_t rn = stub_answer(c->s, c->buf + 2, ml, true, out + 2, &wrong);
        if (rn) {
            dns_put16(out, (uint16_t)rn);
            assert_int_equal(send(c->fd, out, rn + 2, 0), (ssize_t)(rn + 2));
        }
        memmove(c->buf, c->buf + 2 + ml, c->len - 2 - ml);
        c->len -= 2 + ml;
    }
}

static void on_stub_accept(struct loop_source *src, uint32_t events)
{
    struct stub *s = src->userdata;
    (void)events;
    int fd = accept4(s->tfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 || s->nconns == ARRAY_SIZE(s->conns)) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct stub_tcp *c = calloc(1, sizeof(*c));
    c->s = s;
    c->fd = fd;
    s->conns[s->nconns++] = c;
    assert_int_equal(loop_add(s->l, &c->src, fd, EPOLLIN, on_stub_tcp_conn, c), 0);
}

static struct stub *stub_new(struct loop *l)
{
    struct stub *s = calloc(1, sizeof(*s));
    struct net_addr a;

    s->l = l;
    loopback_any(&a);
    /* UDP and TCP on one port: retry when the kernel's UDP choice is taken for TCP. */
    for (int i = 0; i < 20; i++) {
        s->ufd = net_bind_udp(&a);
        assert_true(s->ufd >= 0);
        s->addr.len = sizeof(s->addr.ss);
        assert_int_equal(getsockname(s->ufd, (struct sockaddr *)&s->addr.ss, &s->addr.len), 0);
        s->tfd = net_listen_tcp(&s->addr, 16);
        if (s->tfd >= 0)
            break;
        close(s->ufd);
    }
    assert_true(s->tfd >= 0);
    assert_int_equal(loop_add(l, &s->usrc, s->ufd, EPOLLIN, on_stub_udp, s), 0);
    assert_int_equal(loop_add(l, &s->tsrc, s->tfd, EPOLLIN, on_stub_accept, s), 0);
    return s;
}

static void stub_free(struct stub *s)
{
    for (size_t i = 0; i < s->nconns; i++) {
        loop_del(s->l, &s->conns[i]->src);
        close(s->conns[i]->fd);
        free(s->conns[i]);
    }
    loop_del(s->l, &s->usrc);
    loop_del(s->l, &s->tsrc);
    close(s->ufd);
    close(s->tfd);
    free(s);
}

static size_t stub_count(const struct stub *s, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->names[i], name) == 0)
            c++;
    return c;
}

/* ---- fixture ---- */

struct fx {
    struct loop *l;
    struct stub *stub;
    struct policy *p;
    struct audit *audit;
    struct dns_filter *f;
    struct net_addr faddr;
    int cfd;
    char audit_path[64];
    uint64_t now_ns; /* the loop's clock */
};

#define NS_PER_MS 1000000ull

static uint64_t fake_clock(void *userdata)
{
    return ((struct fx *)userdata)->now_ns;
}

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    struct net_addr la;
    const char *err;
    static const char *const allow[] = { "allowed.test", "*.allowed.test" };

    assert_int_equal(loop_new(&x->l), 0);
    x->now_ns = 1000000 * NS_PER_MS; /* any start; not 0 */
    loop_set_clock(x->l, fake_clock, x);
    x->stub = stub_new(x->l);
    x->p = policy_new();
    for (size_t i = 0; i < ARRAY_SIZE(allow); i++)
        assert_int_equal(policy_add_allow(x->p, allow[i], strlen(allow[i]), &err), 0);
    assert_int_equal(policy_add_cidr(x->p, "10.1.0.0/16", 11, &err), 0);
    snprintf(x->audit_path, sizeof(x->audit_path), "/tmp/test-dns-audit-%d.log", (int)getpid());
    unlink(x->audit_path);
    assert_int_equal(audit_open(x->audit_path, "t1", &x->audit), 0);
    audit_attach_loop(x->audit, x->l);
    loopback_any(&la);
    assert_int_equal(dns_filter_new(x->l, &la, &x->stub->addr, x->audit, &x->f), 0);
    dns_filter_set_policy(x->f, x->p);
    dns_filter_get_listen(x->f, &x->faddr);
    x->cfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(x->cfd >= 0);
    *state = x;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;
    dns_filter_free(x->f);
    stub_free(x->stub);
    audit_close(x->audit);
    unlink(x->audit_path);
    policy_free(x->p);
    close(x->cfd);
    loop_free(x->l);
    free(x);
    return 0;
}

/* Real time, only to bound waits for bytes in flight (see the top of the file). */
#define REAL_WAIT_MS 10000

/* Drive the loop until nothing is left to do (a few passes in a row without an event); the fake
 * clock does not move. */
static void settle(struct fx *x)
{
    for (int idle = 0; idle < 3;)
        idle = loop_run_once(x->l, 1) > 0 ? 0 : idle + 1;
}

/* Move the fake clock by ms, fire what is due and let the consequences settle. */
static void advance(struct fx *x, uint64_t ms)
{
    x->now_ns += ms * NS_PER_MS;
    settle(x);
}

/* Drive the loop until cond holds; fails the test if it does not within REAL_WAIT_MS. */
#define WAIT_UNTIL(x, cond)                                                                        \
    do {                                                                                           \
        uint64_t end_ = real_ms() + REAL_WAIT_MS;                                                  \
        while (!(cond)) {                                                                          \
            if (real_ms() >= end_)                                                                 \
                fail_msg("gave up waiting for %s", #cond);                                         \
            loop_run_once((x)->l, 1);                                                              \
        }                                                                                          \
    } while (0)

static void send_udp(struct fx *x, const uint8_t *q, size_t len)
{
    assert_int_equal(sendto(x->cfd, q, len, 0, (struct sockaddr *)&x->faddr.ss, x->faddr.len),
                     (ssize_t)len);
}

/* Drive the loop until a datagram arrives on the client socket (fake time stands still);
 * -ETIMEDOUT after REAL_WAIT_MS. */
static int recv_udp(struct fx *x, uint8_t *out, size_t cap)
{
    uint64_t end = real_ms() + REAL_WAIT_MS;
    for (;;) {
        ssize_t n = recv(x->cfd, out, cap, 0);
        if (n >= 0)
            return (int)n;
        if (real_ms() >= end)
            return -ETIMEDOUT;
        loop_run_once(x->l, 1);
    }
}

/* Nothing is waiting for the client once the loop has settled. */
static void assert_no_udp_reply(struct fx *x)
{
    uint8_t b[512];
    settle(x);
    assert_int_equal(recv(x->cfd, b, sizeof(b), 0), -1);
}

static size_t make_q(uint8_t *out, uint16_t id, const char *name, uint16_t qtype, bool edns)
{
    uint8_t wire[DNS_MAX_NAME];
    size_t wl = 0;
    const char *s = name;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        wire[wl++] = (uint8_t)l;
        memcpy(wire + wl, s, l);
        wl += l;
        s += l + (dot ? 1 : 0);
    }
    wire[wl++] = 0;
    int n = dns_query_build(id, DNS_FLAG_RD, wire, wl, qtype, DNS_CLASS_IN, edns, 1232, false, out,
                            512);
    assert_true(n > 0);
    return (size_t)n;
}

static int ask(struct fx *x, const char *name, uint16_t qtype, uint8_t *resp, size_t cap)
{
    uint8_t q[512];
    size_t ql = make_q(q, 0x4242, name, qtype, false);
    send_udp(x, q, ql);
    int n = recv_udp(x, resp, cap);
    if (n >= 2)
        assert_int_equal(dns_get16(resp), 0x4242);
    return n;
}

struct addrs {
    char a[8][INET6_ADDRSTRLEN];
    size_t n;
};

static bool collect(void *ud, enum dns_section sec, uint16_t type, const uint8_t *rd,
                    uint16_t rdlen)
{
    struct addrs *a = ud;
    if (sec == DNS_SEC_ANSWER && a->n < 8) {
        if (type == DNS_TYPE_A && rdlen == 4)
            inet_ntop(AF_INET, rd, a->a[a->n++], INET6_ADDRSTRLEN);
        else if (type == DNS_TYPE_AAAA && rdlen == 16)
            inet_ntop(AF_INET6, rd, a->a[a->n++], INET6_ADDRSTRLEN);
    }
    return true;
}

/* The address records of a response, checked against the question. */
static int answer_addrs(const uint8_t *resp, size_t len, const char *name, uint16_t qtype,
                        struct addrs *ret)
{
    static uint8_t scratch[70000];
    static struct dns_resp_info info;
    uint8_t q[512];
    size_t ql = make_q(q, dns_get16(resp), name, qtype, false);
    size_t qnl = ql - DNS_HEADER_LEN - 4;
    memset(ret, 0, sizeof(*ret));
    int r = dns_resp_filter(resp, len, dns_get16(resp), q + DNS_HEADER_LEN, qnl, qtype,
                            DNS_CLASS_IN, collect, ret, scratch, sizeof(scratch), &info);
    return r < 0 ? r : (int)info.rcode;
}

static char *read_audit(struct fx *x)
{
    FILE *fp = fopen(x->audit_path, "r");
    static char buf[1 << 20];
    size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* ---- tests ---- */

static void test_allowed_answered(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];
    struct addrs a;
    struct dns_filter_stats st;

    int n = ask(x, "WWW.Allowed.Test", DNS_TYPE_A, resp, sizeof(resp));
    assert_true(n > 0);
    assert_int_equal(answer_addrs(resp, (size_t)n, "WWW.Allowed.Test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.a[0], "93.184.216.34");
    assert_memory_equal(resp + 12, "\3WWW\7Allowed\4Test", 18); /* client's case back */
    assert_int_equal(stub_count(x->stub, "www.allowed.test"), 1);
    /* The upstream was asked with a lower-cased name and a fresh ID. */
    assert_string_equal(x->stub->names[0], "www.allowed.test");

    n = ask(x, "allowed.test", DNS_TYPE_AAAA, resp, sizeof(resp));
    assert_int_equal(answer_addrs(resp, (size_t)n, "allowed.test", DNS_TYPE_AAAA, &a), 0);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.a[0], "2606:2800::1");

    /* Other types pass for allowlisted names. */
    static const uint16_t types[] = { DNS_TYPE_HTTPS, DNS_TYPE_SVCB,  DNS_TYPE_TXT,
                                      DNS_TYPE_MX,    DNS_TYPE_CNAME, DNS_TYPE_SRV };
    for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
        n = ask(x, "types.allowed.test", types[i], resp, sizeof(resp));
        assert_true(n >= 12);
        assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), 0);
    }
    assert_int_equal(stub_count(x->stub, "types.allowed.test"), ARRAY_SIZE(types));
    dns_filter_get_stats(x->f, &st);
    assert_int_equal(st.forwarded, 2 + ARRAY_SIZE(types));
    assert_int_equal(st.denied, 0);
}

static void test_denied_never_forwarded(void **state)
{
    struct fx *x = *state;
    static const char *const names[] = {
        "evil.test",
        "allowed.test.evil.test",
        "xallowed.test",
        "allowed.testx",
        "test",
        "aGVsbG8gd29ybGQgdGhpcyBpcyBleGZpbHRyYXRlZCBkYXRh.t.evil.test",
        "0123456789abcdef0123456789abcdef.0123456789abcdef.tunnel.evil.test",
        "1.2.3.4",
        "127.0.0.1",
        "localhost",
        "metadata.google.internal",
        "_dmarc.evil.test",
    };
    uint8_t resp[4096];
    struct addrs a;

    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        for (uint16_t t = 0; t < 3; t++) {
            static const uint16_t qt[] = { DNS_TYPE_A, DNS_TYPE_TXT, DNS_TYPE_ANY };
            int n = ask(x, names[i], qt[t], resp, sizeof(resp));
            if (n < 0)
                fail_msg("%s: no answer", names[i]);
            int rc = answer_addrs(resp, (size_t)n, names[i], qt[t], &a);
            if (rc != DNS_RCODE_NXDOMAIN)
                fail_msg("%s type %u: rcode %d, want NXDOMAIN", names[i], qt[t], rc);
            assert_int_equal(a.n, 0);
        }
    }
    /* Names with bytes that cannot be matched unambiguously: a dot inside a label (the
     * labels "x.allowed" "test" would print as an allowlisted name), NUL, space, UTF-8. */
    static const struct {
        const char *wire;
        size_t len;
    } raw[] = {
        { "\x09x.allowed\4test", 0 },
        { "\3a\0b\7allowed\4test", 0 },
        { "\3a b\7allowed\4test", 0 },
        { "\3\xc3\xa9t\7allowed\4test", 0 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(raw); i++) {
        uint8_t q[512];
        size_t wl = 0; /* walk the labels: some contain NUL bytes */
        while (raw[i].wire[wl])
            wl += 1 + (uint8_t)raw[i].wire[wl];
        wl++;
        int ql = dns_query_build(7, DNS_FLAG_RD, (const uint8_t *)raw[i].wire, wl, DNS_TYPE_A, 1,
                                 false, 0, false, q, sizeof(q));
        assert_true(ql > 0);
        send_udp(x, q, (size_t)ql);
        int n = recv_udp(x, resp, sizeof(resp));
        assert_true(n >= 12);
        assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_NXDOMAIN);
    }
    /* S3: the stub was asked nothing at all. */
    assert_int_equal(x->stub->n, 0);
    struct dns_filter_stats st;
    dns_filter_get_stats(x->f, &st);
    assert_int_equal(st.forwarded, 0);
    assert_int_equal(st.denied, ARRAY_SIZE(names) * 3 + ARRAY_SIZE(raw));
}

static void test_refused_types_and_classes(void **state)
{
    struct fx *x = *state;
    uint8_t q[512], resp[4096];
    static const uint16_t refused[] = { DNS_TYPE_ANY, DNS_TYPE_AXFR, DNS_TYPE_IXFR };

    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        int n = ask(x, "www.allowed.test", refused[i], resp, sizeof(resp));
        assert_true(n >= 12);
        assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_REFUSED);
    }
    /* CHAOS class (version.bind and friends). */
    size_t ql = make_q(q, 9, "version.allowed.test", DNS_TYPE_TXT, false);
    dns_put16(q + ql - 2, 3);
    send_udp(x, q, ql);
    int n = recv_udp(x, resp, sizeof(resp));
    assert_true(n >= 12);
    assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_REFUSED);
    assert_int_equal(x->stub->n, 0);
}

static void test_private_answers_stripped(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];
    struct addrs a;
    int n;

    n = ask(x, "private.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(answer_addrs(resp, (size_t)n, "private.allowed.test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.a[0], "93.184.216.35");

    /* Everything removed: NOERROR with no records (documented choice). */
    n = ask(x, "allprivate.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(answer_addrs(resp, (size_t)n, "allprivate.allowed.test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(dns_get16(resp + 6), 0);

    /* allow_cidr 10.1.0.0/16 opens that range. */
    n = ask(x, "cidr.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(answer_addrs(resp, (size_t)n, "cidr.allowed.test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.a[0], "10.1.2.3");

    /* The cached copy is stripped too. */
    n = ask(x, "private.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(answer_addrs(resp, (size_t)n, "private.allowed.test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(stub_count(x->stub, "private.allowed.test"), 1);

    const char *log = read_audit(x);
    assert_non_null(strstr(log, "\"host\":\"private.allowed.test\""));
    assert_non_null(strstr(log, "\"reason\":\"ssrf-private\""));
}

/* The TTL of the one A record in an answer for "cached.allowed.test". */
static uint32_t cached_ttl(const uint8_t *resp)
{
    return dns_get32(resp + DNS_HEADER_LEN + 21 + 4 + 2 + 2 + 2);
}

static void test_cache(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];
    struct dns_filter_stats st;
    struct addrs a;

    for (int i = 0; i < 5; i++) {
        int n = ask(x, i % 2 ? "CACHED.allowed.test" : "cached.allowed.test", DNS_TYPE_A, resp,
                    sizeof(resp));
        assert_int_equal(answer_addrs(resp, (size_t)n,
                                      i % 2 ? "CACHED.allowed.test" : "cached.allowed.test",
                                      DNS_TYPE_A, &a),
                         0);
        assert_int_equal(a.n, 1);
        assert_int_equal(cached_ttl(resp), 300); /* no time has passed */
    }
    assert_int_equal(stub_count(x->stub, "cached.allowed.test"), 1);
    dns_filter_get_stats(x->f, &st);
    assert_int_equal(st.cache_hits, 4);
    /* Another type is another entry. */
    ask(x, "cached.allowed.test", DNS_TYPE_AAAA, resp, sizeof(resp));
    assert_int_equal(stub_count(x->stub, "cached.allowed.test"), 2);
    /* Negative answers are cached for the SOA's minimum. */
    for (int i = 0; i < 3; i++) {
        int n = ask(x, "nx.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
        assert_int_equal(answer_addrs(resp, (size_t)n, "nx.allowed.test", DNS_TYPE_A, &a), 3);
    }
    assert_int_equal(stub_count(x->stub, "nx.allowed.test"), 1);
    /* A policy swap empties the cache. */
    dns_filter_set_policy(x->f, NULL);
    int n = ask(x, "cached.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_NXDOMAIN); /* NULL: deny all */
    (void)n;
    dns_filter_set_policy(x->f, x->p);
    ask(x, "cached.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(stub_count(x->stub, "cached.allowed.test"), 3);

    /* TTLs count down on the loop's clock; an entry goes when its TTL is over: the NXDOMAIN
     * after the SOA's 30 s minimum, the A record after its 300 s. */
    ask(x, "nx.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(stub_count(x->stub, "nx.allowed.test"), 2); /* the swap dropped it too */
    advance(x, 30 * 1000 - 1);
    ask(x, "nx.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(stub_count(x->stub, "nx.allowed.test"), 2);
    advance(x, 1);
    ask(x, "nx.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_NXDOMAIN);
    assert_int_equal(stub_count(x->stub, "nx.allowed.test"), 3);
    ask(x, "cached.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(cached_ttl(resp), 270);
    advance(x, 270 * 1000 - 1);
    ask(x, "cached.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(cached_ttl(resp), 1);
    assert_int_equal(stub_count(x->stub, "cached.allowed.test"), 3);
    advance(x, 1);
    ask(x, "cached.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(cached_ttl(resp), 300);
    assert_int_equal(stub_count(x->stub, "cached.allowed.test"), 4);
}

static void test_upstream_randomised(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];
    char name[64];

    for (int i = 0; i < 16; i++) {
        snprintf(name, sizeof(name), "r%d.allowed.test", i);
        assert_true(ask(x, name, DNS_TYPE_A, resp, sizeof(resp)) > 0);
    }
    assert_int_equal(x->stub->n, 16);
    size_t same_id = 0;
    for (size_t i = 1; i < 16; i++) {
        same_id += x->stub->ids[i] == x->stub->ids[0];
        assert_int_not_equal(x->stub->ids[i], 0x4242); /* never the client's ID */
    }
    /* 16 draws from 2^16: a repeat of the first is very unlikely. */
    assert_true(same_id <= 1);
}

/* The pool: 32 sockets on random ports, each replaced after 64 queries (filter-int.h
 * DNS_UP_POOL, DNS_UP_SOCK_USES). 3000 sequential queries must come from well over 32 ports
 * (ports are re-randomised) and no port may serve far more than 64 of them. */
static void test_upstream_ports_rerandomised(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];
    char name[64];
    enum { N = 3000 };
    static uint16_t seen[N];
    static unsigned uses[N];
    size_t distinct = 0;

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "p%d.allowed.test", i);
        assert_true(ask(x, name, DNS_TYPE_A, resp, sizeof(resp)) > 0);
    }
    assert_int_equal(x->stub->n, N);
    for (size_t i = 0; i < N; i++) {
        size_t k = 0;
        while (k < distinct && seen[k] != x->stub->ports[i])
            k++;
        if (k == distinct) {
            seen[distinct] = x->stub->ports[i];
            uses[distinct++] = 0;
        }
        uses[k]++;
    }
    /* 3000 / 64 >= 47 sockets; two random sockets may share a port number by chance. */
    assert_true(distinct >= 40);
    for (size_t k = 0; k < distinct; k++)
        assert_true(uses[k] <= 2 * 64);
}

/* Many queries in flight on the shared sockets at once, answered in reverse order: every
 * client query gets the answer for its own name. */
static void test_upstream_many_concurrent(void **state)
{
    struct fx *x = *state;
    enum { N = 250 };
    uint8_t q[512], resp[4096];
    char name[64];
    bool got[N] = { false };
    struct addrs a;

    x->stub->hold_want = N;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "hold%d.allowed.test", i);
        size_t ql = make_q(q, (uint16_t)(0x1000 + i), name, DNS_TYPE_A, false);
        send_udp(x, q, ql);
        if (i % 32 == 31)
            settle(x); /* let the filter read its socket */
    }
    for (int k = 0; k < N; k++) {
        int n = recv_udp(x, resp, sizeof(resp));
        assert_true(n > 12);
        int i = dns_get16(resp) - 0x1000;
        assert_true(i >= 0 && i < N && !got[i]);
        got[i] = true;
        snprintf(name, sizeof(name), "hold%d.allowed.test", i);
        assert_int_equal(answer_addrs(resp, (size_t)n, name, DNS_TYPE_A, &a), 0);
        assert_int_equal(a.n, 1);
        char want[INET_ADDRSTRLEN];
        snprintf(want, sizeof(want), "93.184.%d.%d", i >> 8, i & 255);
        assert_string_equal(a.a[0], want);
    }
    assert_int_equal(x->stub->hold_n, 0); /* all were held, then released */
}

/* An answer with the right ID on another pool socket, or on the right socket with a wrong ID,
 * is not accepted: the query is answered only by the retry's real answer. */
static void test_upstream_wrong_socket_ignored(void **state)
{
    struct fx *x = *state;
    uint8_t q[512], resp[4096];
    char name[64];
    struct addrs a;
    struct dns_filter_stats st;

    /* Several pool sockets in use, so that another one exists. */
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "w%d.allowed.test", i);
        assert_true(ask(x, name, DNS_TYPE_A, resp, sizeof(resp)) > 0);
    }
    size_t ql = make_q(q, 0x4343, "wrongsock.allowed.test", DNS_TYPE_A, false);
    send_udp(x, q, ql);
    /* The stub's two decoys are counted and ignored: no answer until the first try times out. */
    WAIT_UNTIL(x, (dns_filter_get_stats(x->f, &st), st.malformed >= 2));
    advance(x, DNS_UPSTREAM_TIMEOUT_MS - 1);
    assert_no_udp_reply(x);
    assert_int_equal(stub_count(x->stub, "wrongsock.allowed.test"), 1);
    advance(x, 1); /* the retry, on a fresh pool socket and ID, gets the real answer */
    int n = recv_udp(x, resp, sizeof(resp));
    assert_true(n > 0);
    assert_int_equal(dns_get16(resp), 0x4343);
    assert_int_equal(answer_addrs(resp, (size_t)n, "wrongsock.allowed.test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.a[0], "93.184.216.34");
    assert_int_equal(stub_count(x->stub, "wrongsock.allowed.test"), 2);
}

static void test_spoofed_answer_ignored(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];
    struct addrs a;
    struct dns_filter_stats st;

    x->stub->spoof_first = true;
    int n = ask(x, "spoof.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(answer_addrs(resp, (size_t)n, "spoof.allowed.test", DNS_TYPE_A, &a), 0);
    assert_int_equal(a.n, 1);
    dns_filter_get_stats(x->f, &st);
    assert_true(st.malformed >= 1); /* the wrong-ID datagram was counted and dropped */
}

static void test_servfail_and_timeout(void **state)
{
    struct fx *x = *state;
    uint8_t q[512], resp[4096];
    struct dns_filter_stats st;

    size_t ql = make_q(q, 0x5151, "slow.allowed.test", DNS_TYPE_A, false);
    send_udp(x, q, ql);
    WAIT_UNTIL(x, stub_count(x->stub, "slow.allowed.test") == 1);
    /* Other queries are not held up by the silent upstream. */
    int n = ask(x, "fast.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_true(n > 0);
    n = ask(x, "fail.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_true(n >= 12);
    assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_SERVFAIL);
    /* Each try waits DNS_UPSTREAM_TIMEOUT_MS: one retry, then SERVFAIL. */
    advance(x, DNS_UPSTREAM_TIMEOUT_MS - 1);
    assert_no_udp_reply(x);
    assert_int_equal(stub_count(x->stub, "slow.allowed.test"), 1);
    advance(x, 1);
    WAIT_UNTIL(x, stub_count(x->stub, "slow.allowed.test") == 2);
    advance(x, DNS_UPSTREAM_TIMEOUT_MS - 1);
    assert_no_udp_reply(x);
    advance(x, 1);
    n = recv_udp(x, resp, sizeof(resp));
    assert_true(n >= 12);
    assert_int_equal(dns_get16(resp), 0x5151);
    assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_SERVFAIL);
    assert_int_equal(stub_count(x->stub, "slow.allowed.test"), DNS_UPSTREAM_TRIES);
    dns_filter_get_stats(x->f, &st);
    assert_int_equal(st.upstream_timeouts, 1);
    /* SERVFAIL is not cached. */
    ask(x, "fail.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_int_equal(stub_count(x->stub, "fail.allowed.test"), 2);
}

static int tcp_connect(struct fx *x)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int r = connect(fd, (struct sockaddr *)&x->faddr.ss, x->faddr.len);
    assert_true(r == 0 || errno == EINPROGRESS);
    settle(x);
    return fd;
}

/* Read one length-prefixed message from a TCP socket, driving the loop. */
static int tcp_recv_msg(struct fx *x, int fd, uint8_t *out, size_t cap)
{
    static uint8_t buf[70000];
    static size_t have;
    static int have_fd = -1;
    uint64_t end = real_ms() + REAL_WAIT_MS;

    if (have_fd != fd) {
        have = 0;
        have_fd = fd;
    }
    for (;;) {
        if (have >= 2 && have >= 2u + dns_get16(buf)) {
            size_t ml = dns_get16(buf);
            assert_true(ml <= cap);
            memcpy(out, buf + 2, ml);
            memmove(buf, buf + 2 + ml, have - 2 - ml);
            have -= 2 + ml;
            return (int)ml;
        }
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n > 0) {
            have += (size_t)n;
            continue;
        }
        if (real_ms() >= end)
            return -ETIMEDOUT;
        loop_run_once(x->l, 1);
    }
}

static void test_tcp(void **state)
{
    struct fx *x = *state;
    uint8_t q[1024], resp[70000];
    struct addrs a;
    int fd = tcp_connect(x);

    /* Two pipelined queries (one denied, one allowed) in one write. */
    size_t l1 = make_q(q + 2, 1, "www.allowed.test", DNS_TYPE_A, true);
    dns_put16(q, (uint16_t)l1);
    size_t l2 = make_q(q + 4 + l1, 2, "evil.test", DNS_TYPE_A, false);
    dns_put16(q + 2 + l1, (uint16_t)l2);
    assert_int_equal(send(fd, q, l1 + l2 + 4, 0), (ssize_t)(l1 + l2 + 4));
    int seen = 0;
    for (int i = 0; i < 2; i++) {
        int n = tcp_recv_msg(x, fd, resp, sizeof(resp));
        assert_true(n >= 12);
        if (dns_get16(resp) == 1) {
            assert_int_equal(answer_addrs(resp, (size_t)n, "www.allowed.test", DNS_TYPE_A, &a), 0);
            assert_int_equal(a.n, 1);
            seen |= 1;
        } else {
            assert_int_equal(dns_get16(resp), 2);
            assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_NXDOMAIN);
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);

    /* A big answer: truncated over UDP, whole over TCP (the filter retries upstream on TCP). */
    int n = ask(x, "big.allowed.test", DNS_TYPE_TXT, resp, sizeof(resp));
    assert_true(n >= 12);
    assert_true(dns_get16(resp + 2) & DNS_FLAG_TC);
    size_t l3 = make_q(q + 2, 3, "big.allowed.test", DNS_TYPE_TXT, true);
    dns_put16(q, (uint16_t)l3);
    assert_int_equal(send(fd, q, l3 + 2, 0), (ssize_t)(l3 + 2));
    n = tcp_recv_msg(x, fd, resp, sizeof(resp));
    assert_true(n > 3000);
    assert_false(dns_get16(resp + 2) & DNS_FLAG_TC);
    assert_int_equal(dns_get16(resp + 6), 12);
    bool tcp_upstream = false;
    for (size_t i = 0; i < x->stub->n; i++)
        tcp_upstream |= x->stub->via_tcp[i] && strcmp(x->stub->names[i], "big.allowed.test") == 0;
    assert_true(tcp_upstream);

    /* A truncated length prefix, then EOF: the filter carries on. */
    close(fd);
    fd = tcp_connect(x);
    assert_int_equal(send(fd, "\x00", 1, 0), 1);
    settle(x);
    close(fd);
    fd = tcp_connect(x);
    dns_put16(q, 300);
    assert_int_equal(send(fd, q, 10, 0), 10); /* length says 300, 8 bytes follow */
    settle(x);
    close(fd);
    /* An absurd length prefix closes the connection. */
    fd = tcp_connect(x);
    assert_int_equal(send(fd, "\xff\xff", 2, 0), 2);
    assert_int_equal(tcp_recv_msg(x, fd, resp, sizeof(resp)), -ECONNRESET);
    close(fd);
    n = ask(x, "www.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    assert_true(n > 0);
}

/* A connection with nothing in flight and nothing unsent is closed after DNS_TCP_IDLE_MS. */
static void test_tcp_idle(void **state)
{
    struct fx *x = *state;
    uint8_t q[512], resp[4096];
    int fd = tcp_connect(x);

    /* One answered query: the connection is accepted and idle from now on. */
    size_t ql = make_q(q + 2, 1, "evil.test", DNS_TYPE_A, false);
    dns_put16(q, (uint16_t)ql);
    assert_int_equal(send(fd, q, ql + 2, 0), (ssize_t)(ql + 2));
    assert_true(tcp_recv_msg(x, fd, resp, sizeof(resp)) >= 12);
    settle(x);
    advance(x, DNS_TCP_IDLE_MS - 1);
    assert_int_equal(recv(fd, resp, sizeof(resp), 0), -1);
    assert_int_equal(errno, EAGAIN);
    advance(x, 1);
    WAIT_UNTIL(x, recv(fd, resp, sizeof(resp), 0) == 0);
    close(fd);
}

/* Datagrams the filter must not answer were sent: a query it answers at once, sent after them,
 * gets the first reply (datagrams are handled in order), so none of them was answered. */
static void expect_barrier_first(struct fx *x, const char *what)
{
    uint8_t q[512], resp[4096];
    size_t ql = make_q(q, 0xb0b0, "barrier.evil.test", DNS_TYPE_A, false);

    send_udp(x, q, ql);
    int n = recv_udp(x, resp, sizeof(resp));
    if (n < 12 || dns_get16(resp) != 0xb0b0)
        fail_msg("%s: got a reply (%d bytes, id %#x)", what, n, n >= 2 ? dns_get16(resp) : 0);
}

static void test_malformed(void **state)
{
    struct fx *x = *state;
    uint8_t q[512], resp[4096];
    size_t ql;
    struct dns_filter_stats st;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
        int rcode; /* -1: no reply at all */
    } cases[] = {
        { "empty", "", 0, -1 },
        { "short header", "\x12\x34\x01\x00\x00\x01", 6, -1 },
        { "response to server port",
          "\x12\x34\x81\x80\0\1\0\0\0\0\0\0\3www\7allowed\4test\0\0\1\0\1", 34, -1 },
        { "pointer loop in question", "\x12\x34\x01\x00\0\1\0\0\0\0\0\0\xc0\x0c\0\1\0\1", 18,
          DNS_RCODE_FORMERR },
        { "label overrun", "\x12\x34\x01\x00\0\1\0\0\0\0\0\0\x3fwww", 16, DNS_RCODE_FORMERR },
        { "qdcount 2", "\x12\x34\x01\x00\0\2\0\0\0\0\0\0\3www\7allowed\4test\0\0\1\0\1", 34,
          DNS_RCODE_FORMERR },
        { "qdcount 0", "\x12\x34\x01\x00\0\0\0\0\0\0\0\0", 12, DNS_RCODE_FORMERR },
        { "counts lie", "\x12\x34\x01\x00\0\1\0\0\0\0\0\5\3www\7allowed\4test\0\0\1\0\1", 34,
          DNS_RCODE_FORMERR },
        { "opcode NOTIFY", "\x12\x34\x21\x00\0\1\0\0\0\0\0\0\3www\7allowed\4test\0\0\1\0\1", 34,
          DNS_RCODE_NOTIMP },
        { "opcode UPDATE", "\x12\x34\x29\x00\0\1\0\0\0\0\0\0\3www\7allowed\4test\0\0\1\0\1", 34,
          DNS_RCODE_NOTIMP },
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        send_udp(x, (const uint8_t *)cases[i].bytes, cases[i].len);
        if (cases[i].rcode < 0) {
            expect_barrier_first(x, cases[i].what);
            continue;
        }
        int n = recv_udp(x, resp, sizeof(resp));
        if (n < 12)
            fail_msg("%s: no reply", cases[i].what);
        assert_int_equal(dns_get16(resp), 0x1234);
        if ((int)DNS_RCODE(dns_get16(resp + 2)) != cases[i].rcode)
            fail_msg("%s: rcode %u", cases[i].what, DNS_RCODE(dns_get16(resp + 2)));
    }
    /* A long name (> 255 octets) and garbage of every length up to 64. */
    ql = 0;
    memcpy(q, "\x12\x34\x01\x00\0\1\0\0\0\0\0\0", 12);
    ql = 12;
    for (int i = 0; i < 5; i++) {
        q[ql++] = 60;
        memset(q + ql, 'a', 60);
        ql += 60;
    }
    q[ql++] = 0;
    dns_put32(q + ql, 0x00010001);
    ql += 4;
    send_udp(x, q, ql);
    assert_int_equal(recv_udp(x, resp, sizeof(resp)), 12);
    assert_int_equal(DNS_RCODE(dns_get16(resp + 2)), DNS_RCODE_FORMERR);
    srand(1);
    for (size_t len = 0; len < 64; len++) {
        for (size_t k = 0; k < len; k++)
            q[k] = (uint8_t)rand();
        q[2] |= 0x80; /* responses: never answered */
        send_udp(x, q, len);
    }
    expect_barrier_first(x, "garbage");
    /* EDNS version 1: BADVERS in the OPT record. */
    ql = make_q(q, 0x77, "www.allowed.test", DNS_TYPE_A, true);
    q[ql - 5] = 1;
    send_udp(x, q, ql);
    int n = recv_udp(x, resp, sizeof(resp));
    assert_int_equal(n, (int)ql);
    assert_int_equal(resp[n - 6], 1); /* extended rcode 16 >> 4 */
    /* Still answering, and nothing malformed was forwarded. */
    assert_true(ask(x, "www.allowed.test", DNS_TYPE_A, resp, sizeof(resp)) > 0);
    assert_int_equal(x->stub->n, 1);
    dns_filter_get_stats(x->f, &st);
    assert_true(st.malformed >= ARRAY_SIZE(cases) + 1 + 64);
}

static void test_edns_echo(void **state)
{
    struct fx *x = *state;
    uint8_t q[512], resp[4096];

    /* A denied name with OPT: NXDOMAIN echoes an OPT record; without OPT, none. */
    size_t ql = make_q(q, 0x99, "evil.test", DNS_TYPE_A, true);
    send_udp(x, q, ql);
    int n = recv_udp(x, resp, sizeof(resp));
    assert_int_equal(n, (int)ql);
    assert_int_equal(dns_get16(resp + 10), 1);
    assert_int_equal(dns_get16(resp + n - 11 + 1), DNS_TYPE_OPT);
    ql = make_q(q, 0x99, "evil.test", DNS_TYPE_A, false);
    send_udp(x, q, ql);
    n = recv_udp(x, resp, sizeof(resp));
    assert_int_equal(n, (int)ql);
    assert_int_equal(dns_get16(resp + 10), 0);
    /* Forwarded answers: same rule (the upstream's OPT never reaches the client). */
    ql = make_q(q, 0x98, "edns.allowed.test", DNS_TYPE_A, false);
    send_udp(x, q, ql);
    n = recv_udp(x, resp, sizeof(resp));
    assert_true(n > 0);
    assert_int_equal(dns_get16(resp + 10), 0);
    ql = make_q(q, 0x97, "edns.allowed.test", DNS_TYPE_A, true);
    send_udp(x, q, ql);
    n = recv_udp(x, resp, sizeof(resp));
    assert_true(n > 0);
    assert_int_equal(dns_get16(resp + 10), 1);
}

static void test_audit(void **state)
{
    struct fx *x = *state;
    uint8_t resp[4096];

    ask(x, "www.allowed.test", DNS_TYPE_A, resp, sizeof(resp));
    ask(x, "secret-data.evil.test", DNS_TYPE_TXT, resp, sizeof(resp));
    const char *log = read_audit(x);
    assert_non_null(strstr(log, "\"kind\":\"dns\",\"host\":\"www.allowed.test\",\"port\":0,"
                                "\"decision\":\"allow\",\"reason\":\"allowlisted\""));
    assert_non_null(strstr(log, "\"kind\":\"dns\",\"host\":\"secret-data.evil.test\",\"port\":0,"
                                "\"decision\":\"deny\",\"reason\":\"not-allowlisted\""));
    assert_non_null(strstr(log, "\"qtype\":\"TXT\""));
}

/* Datagrams waiting on the client socket, read and counted. */
static int drain(struct fx *x)
{
    uint8_t resp[4096];
    int got = 0;
    while (recv(x->cfd, resp, sizeof(resp), 0) > 0)
        got++;
    return got;
}

/* Audit records with a "count" (summaries of repeats). */
static int count_records(const char *log)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, "\"count\":")); p++)
        n++;
    return n;
}

/* 2 x 500 identical denials as fast as possible, in two audit windows: two lines per window (the
 * first at once, the repeats as one record with "count" when the window ends), and the counts
 * add up. */
static void test_flood_aggregated(void **state)
{
    struct fx *x = *state;
    uint8_t q[512];
    struct dns_filter_stats st;
    size_t lines;
    int got = 0;

    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < 500; i++) {
            size_t ql = make_q(q, (uint16_t)i, "same.evil.test", DNS_TYPE_A, false);
            send_udp(x, q, ql);
            if (i % 32 == 31)
                for (int k = 0; k < 3; k++)
                    loop_run_once(x->l, 0);
            got += drain(x);
        }
        settle(x);
        got += drain(x);
        /* The window is still open: its repeats are counted, not written. */
        assert_int_equal(count_records(read_audit(x)), w);
        advance(x, AUDIT_AGG_WINDOW_MS - 1);
        assert_int_equal(count_records(read_audit(x)), w);
        advance(x, 1); /* the window ends, its summary is written */
        const char *log = read_audit(x);
        assert_int_equal(count_records(log), w + 1);
        dns_filter_get_stats(x->f, &st);
        assert_int_equal(audit_decisions(log, "\"host\":\"same.evil.test\"", &lines), st.denied);
        assert_int_equal(lines, 2 * (size_t)(w + 1));
    }
    assert_true(st.denied > 900);
    assert_true(got > 900);
}

/* One client with DNS_MAX_CLIENT_OUTSTANDING upstream queries in flight: its next allowlisted
 * queries are dropped (no answer, never forwarded), a denied name is still answered, and the
 * drops are audited as one "flood-dropped" record when the audit window ends. */
static void test_client_outstanding_cap(void **state)
{
    struct fx *x = *state;
    enum { EXTRA = 10 };
    uint8_t q[512];
    char name[64];
    struct dns_filter_stats st;

    x->stub->hold_want = ARRAY_SIZE(x->stub->held); /* never reached: nothing is answered */
    for (int i = 0; i < DNS_MAX_CLIENT_OUTSTANDING + EXTRA; i++) {
        snprintf(name, sizeof(name), "hold%d.allowed.test", i);
        size_t ql = make_q(q, (uint16_t)i, name, DNS_TYPE_A, false);
        send_udp(x, q, ql);
        if (i % 32 == 31)
            settle(x);
    }
    WAIT_UNTIL(x, x->stub->hold_n == DNS_MAX_CLIENT_OUTSTANDING);
    expect_barrier_first(x, "over the cap");
    settle(x);
    assert_int_equal(x->stub->hold_n, DNS_MAX_CLIENT_OUTSTANDING);
    dns_filter_get_stats(x->f, &st);
    assert_int_equal(st.dropped, EXTRA);
    assert_int_equal(st.forwarded, DNS_MAX_CLIENT_OUTSTANDING);
    assert_null(strstr(read_audit(x), "flood-dropped"));
    advance(x, AUDIT_AGG_WINDOW_MS);
    assert_non_null(strstr(read_audit(x), "\"host\":\"*\",\"port\":0,\"decision\":\"deny\","
                                          "\"reason\":\"flood-dropped\""));
    size_t lines;
    assert_int_equal(audit_decisions(read_audit(x), "flood-dropped", &lines), EXTRA);
    assert_int_equal(lines, 1);
}

/* Item: aggregation must not hide names. 300 distinct allowlisted names under a wildcard, far
 * above 100 decisions per second: every one that went upstream is in the audit by name. */
static void test_flood_distinct_allowed_all_named(void **state)
{
    struct fx *x = *state;
    uint8_t q[512];
    char name[64], needle[160];

    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "x%d.allowed.test", i);
        size_t ql = make_q(q, (uint16_t)i, name, DNS_TYPE_A, false);
        send_udp(x, q, ql);
        if (i % 32 == 31) {
            settle(x);
            drain(x);
        }
    }
    settle(x);
    const char *log = read_audit(x);
    size_t forwarded = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "x%d.allowed.test", i);
        if (!stub_count(x->stub, name))
            continue;
        forwarded++;
        snprintf(needle, sizeof(needle), "\"host\":\"%s\",\"port\":0,\"decision\":\"allow\"", name);
        if (!strstr(log, needle))
            fail_msg("%s went upstream but is not in the audit log", name);
    }
    assert_true(forwarded > 250);
    assert_null(strstr(log, "\"host\":\"*\",\"port\":0,\"decision\":\"allow\""));
}

/* The audit log cannot be written: an allowlisted name is answered SERVFAIL and never forwarded
 * (fail closed); a denied one still gets NXDOMAIN. */
static void test_audit_failed_not_forwarded(void **state)
{
    struct fx *x = *state;
    struct audit *full;
    struct dns_filter *f;
    struct net_addr la;
    uint8_t q[512], resp[4096];
    size_t ql;
    int n;

    if (access("/dev/full", W_OK) < 0)
        skip();
    assert_int_equal(audit_open("/dev/full", "t1", &full), 0);
    loopback_any(&la);
    assert_int_equal(dns_filter_new(x->l, &la, &x->stub->addr, full, &f), 0);
    dns_filter_set_policy(f, x->p);
    dns_filter_get_listen(f, &la);

    ql = make_q(q, 0x11, "nope.evil.test", DNS_TYPE_A, false);
    assert_int_equal(sendto(x->cfd, q, ql, 0, (struct sockaddr *)&la.ss, la.len), (ssize_t)ql);
    n = recv_udp(x, resp, sizeof(resp));
    assert_true(n >= DNS_HEADER_LEN);
    assert_int_equal(dns_get16(resp + 2) & 0xf, DNS_RCODE_NXDOMAIN);
    assert_true(audit_failed(full));

    ql = make_q(q, 0x12, "www.allowed.test", DNS_TYPE_A, false);
    assert_int_equal(sendto(x->cfd, q, ql, 0, (struct sockaddr *)&la.ss, la.len), (ssize_t)ql);
    n = recv_udp(x, resp, sizeof(resp));
    assert_true(n >= DNS_HEADER_LEN);
    assert_int_equal(dns_get16(resp + 2) & 0xf, DNS_RCODE_SERVFAIL);
    settle(x);
    assert_int_equal(stub_count(x->stub, "www.allowed.test"), 0);
    dns_filter_free(f);
    audit_close(full);
}

static void test_resolv_conf(void **state)
{
    char path[64];
    struct net_addr a;
    char s[NET_ADDRSTR_MAX];
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        { "nameserver 192.0.2.53\n", "192.0.2.53:53" },
        { "# x\nsearch a\n  nameserver\t2001:db8::1 # c\nnameserver 192.0.2.1\n",
          "[2001:db8::1]:53" },
        { "nameserver fe80::1%eth0\nnameserver 192.0.2.9\n", "192.0.2.9:53" },
        { "nameserver bogus\n", NULL },
        { "nameservers 192.0.2.1\n", NULL },
        { "", NULL },
    };
    (void)state;

    snprintf(path, sizeof(path), "/tmp/test-dns-resolv-%d", (int)getpid());
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        FILE *fp = fopen(path, "w");
        fputs(cases[i].text, fp);
        fclose(fp);
        int r = dns_resolv_conf_upstream(path, &a);
        if (!cases[i].want) {
            assert_int_equal(r, -ENOENT);
            continue;
        }
        assert_int_equal(r, 0);
        net_addr_format((struct sockaddr *)&a.ss, s);
        assert_string_equal(s, cases[i].want);
    }
    unlink(path);
}

static void test_no_upstream_and_loop(void **state)
{
    struct loop *l;
    struct dns_filter *f;
    struct net_addr a;
    (void)state;

    assert_int_equal(loop_new(&l), 0);
    loopback_any(&a);
    assert_int_equal(dns_filter_new(l, &a, &a, NULL, &f), -ELOOP);
    /* Address in use. */
    struct net_addr b;
    int fd = net_bind_udp(&a);
    assert_true(fd >= 0);
    b.len = sizeof(b.ss);
    getsockname(fd, (struct sockaddr *)&b.ss, &b.len);
    assert_int_equal(net_addr_parse("127.0.0.1:53", 0, &a), 0);
    assert_int_equal(dns_filter_new(l, &b, &a, NULL, &f), -EADDRINUSE);
    close(fd);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allowed_answered, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_denied_never_forwarded, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused_types_and_classes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_private_answers_stripped, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cache, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upstream_randomised, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upstream_ports_rerandomised, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upstream_many_concurrent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upstream_wrong_socket_ignored, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_spoofed_answer_ignored, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_servfail_and_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tcp, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tcp_idle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_malformed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_edns_echo, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_audit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_flood_aggregated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_outstanding_cap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_flood_distinct_allowed_all_named, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_audit_failed_not_forwarded, fx_setup, fx_teardown),
        cmocka_unit_test(test_resolv_conf),
        cmocka_unit_test(test_no_upstream_and_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
