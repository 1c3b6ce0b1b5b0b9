/*
 * Unit tests for src/policy: host parsing and normalisation (DESIGN.md S6), patterns, ports,
 * allow_cidr, and the SSRF guard (S5) with both edges of every refused range.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/macro.h"
#include "policy/policy.h"

/* ---- host_parse ---------------------------------------------------------------------- */

struct host_case {
    const char *in;
    size_t len;         /* 0: strlen(in) */
    int kind;           /* -1: must be refused */
    const char *expect; /* normalised name when accepted */
};

#define OK_NAME(i, e)                                                                              \
    {                                                                                              \
        i, 0, HOST_NAME, e                                                                         \
    }
#define OK_V4(i, e)                                                                                \
    {                                                                                              \
        i, 0, HOST_IPV4, e                                                                         \
    }
#define OK_V6(i, e)                                                                                \
    {                                                                                              \
        i, 0, HOST_IPV6, e                                                                         \
    }
#define BAD(i)                                                                                     \
    {                                                                                              \
        i, 0, -1, NULL                                                                             \
    }
#define BADN(i, n)                                                                                 \
    {                                                                                              \
        i, n, -1, NULL                                                                             \
    }

static const struct host_case host_cases[] = {
    /* case and one trailing dot */
    OK_NAME("Example.COM", "example.com"),
    OK_NAME("example.com.", "example.com"),
    OK_NAME("EXAMPLE.COM.", "example.com"),
    OK_NAME("a", "a"),
    OK_NAME("_dmarc.example.com", "_dmarc.example.com"),
    OK_NAME("a-b.c--d.example", "a-b.c--d.example"),
    OK_NAME("example.123a", "example.123a"),
    OK_NAME("example.0xg", "example.0xg"),
    OK_NAME("1.2.3.example", "1.2.3.example"),
    BAD("example.com.."),
    BAD("."),
    BAD(".."),
    BAD(""),
    BAD(".example.com"),
    BAD("example..com"),
    /* IDN both ways */
    OK_NAME("b\xc3\xbc"
            "cher.example",
            "xn--bcher-kva.example"),
    OK_NAME("B\xc3\x9c"
            "CHER.example",
            "xn--bcher-kva.example"),
    OK_NAME("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    OK_NAME("b\xc3\xbc"
            "cher.example.",
            "xn--bcher-kva.example"),
    /* UTS#46 maps fullwidth letters and the ideographic full stop, as browsers do */
    OK_NAME("\xef\xbd\x85\xef\xbd\x98\xef\xbd\x81\xef\xbd\x8d\xef\xbd\x90\xef\xbd\x8c\xef\xbd\x85"
            "\xe3\x80\x82"
            "com",
            "example.com"),
    BAD("\xff.example"), /* not UTF-8 */
    BAD("a\xe2\x80\xa8"
        "b.com"), /* U+2028 line separator: disallowed */
    /* fullwidth digits map to an IPv4 address: refused, not silently an IP literal */
    BAD("\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1"),
    /* URL tricks */
    BAD("evil.com#allowed.com"),
    BAD("allowed.com@evil.com"),
    BAD("user:pass@allowed.com"),
    BAD("allowed.com%2eevil.com"),
    BAD("%61llowed.com"),
    BAD("allowed.com/evil"),
    BAD("allowed.com\\evil.com"),
    BAD("allowed.com?x=1"),
    BAD("allowed.com:443"),
    BAD("*.allowed.com"),
    /* CR/LF/NUL/space/control */
    BAD("allowed.com\r\nHost: evil.com"),
    BAD("allowed.com\n"),
    BAD("allowed.com\r"),
    BADN("allowed.com\0.evil.com", 21),
    BADN("allowed.com\0", 12),
    BAD("allowed .com"),
    BAD(" allowed.com"),
    BAD("allowed.com "),
    BAD("\tallowed.com"),
    BAD("allowed\x7f.com"),
    BAD("allowed\x01.com"),
    /* labels */
    BAD("-example.com"),
    BAD("example-.com"),
    BAD("example.-com"),
    /* IPv4: only canonical dotted quads */
    OK_V4("127.0.0.1", "127.0.0.1"),
    OK_V4("0.0.0.0", "0.0.0.0"),
    OK_V4("255.255.255.255", "255.255.255.255"),
    OK_V4("169.254.169.254.", "169.254.169.254"),
    BAD("2130706433"),
    BAD("0x7f.1"),
    BAD("0x7f000001"),
    BAD("0X7F000001"),
    BAD("0177.0.0.1"),
    BAD("127.1"),
    BAD("127.0.1"),
    BAD("127.000.000.001"),
    BAD("127.0.0.01"),
    BAD("256.0.0.1"),
    BAD("1.2.3.4.5"),
    BAD("example.123"),
    BAD("example.0x1F"),
    BAD("example.0x"),
    BAD("evil.0x7f.1"),
    BAD("1.2.3.04"),
    /* IPv6: bracketed, no zone ids */
    OK_V6("[::1]", "::1"),
    OK_V6("[::FFFF:127.0.0.1]", "::ffff:127.0.0.1"),
    OK_V6("[2001:DB8:0:0::1]", "2001:db8::1"),
    OK_V6("[fd00:ec2::254]", "fd00:ec2::254"),
    BAD("::1"),
    BAD("[::1"),
    BAD("[::1]x"),
    BAD("[::1]:80"),
    BAD("[]"),
    BAD("[:::1]"),
    BAD("[1.2.3.4]"),
    BAD("[fe80::1%eth0]"),
    BAD("[fe80::1%25eth0]"),
    BAD("fe80::1%eth0"),
    BAD("[::ffff:0177.0.0.1]"),
};

static void test_host_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(host_cases); i++) {
        const struct host_case *c = &host_cases[i];
        struct host h;
        const char *msg = NULL;
        size_t len = c->len ? c->len : strlen(c->in);
        int r = host_parse(c->in, len, &h, &msg);

        if (c->kind < 0) {
            if (r != -EINVAL)
                fail_msg("case %zu '%s': accepted as '%s', expected refusal", i, c->in, h.name);
            assert_non_null(msg);
            continue;
        }
        if (r != 0)
            fail_msg("case %zu '%s': refused (%s)", i, c->in, msg);
        assert_int_equal(h.kind, c->kind);
        assert_string_equal(h.name, c->expect);
        /* normalising is idempotent */
        if (h.kind != HOST_IPV6) {
            struct host h2;
            assert_int_equal(host_parse(h.name, strlen(h.name), &h2, &msg), 0);
            assert_string_equal(h2.name, h.name);
        }
    }
}

static void test_host_parse_lengths(void **state)
{
    char buf[BB_MAX_HOST_INPUT + 2];
    struct host h;
    const char *msg;
    (void)state;

    /* 63-octet label ok, 64 refused */
    memset(buf, 'a', 63);
    memcpy(buf + 63, ".com", 5);
    assert_int_equal(host_parse(buf, strlen(buf), &h, &msg), 0);
    memset(buf, 'a', 64);
    memcpy(buf + 64, ".com", 5);
    assert_int_equal(host_parse(buf, strlen(buf), &h, &msg), -EINVAL);

    /* 253 octets ok (with and without trailing dot), 254 refused */
    for (size_t i = 0; i < 253; i++)
        buf[i] = (i % 2) ? '.' : 'a';
    buf[253] = '\0';
    assert_int_equal(host_parse(buf, 253, &h, &msg), 0);
    assert_int_equal(strlen(h.name), 253);
    buf[253] = '.';
    assert_int_equal(host_parse(buf, 254, &h, &msg), 0);
    buf[253] = 'a';
    buf[252] = 'a';
    buf[254] = '\0';
    assert_int_equal(host_parse(buf, 254, &h, &msg), -EINVAL);

    /* input cap */
    memset(buf, 'a', sizeof(buf));
    assert_int_equal(host_parse(buf, BB_MAX_HOST_INPUT + 1, &h, &msg), -EINVAL);
    assert_int_equal(host_parse(NULL, 0, &h, &msg), -EINVAL);

    /* IDN whose punycode form exceeds a label: 56 u-umlauts are "xn--" + 58 octets = 62 (ok),
     * 60 are 66 (refused) */
    char idn[BB_MAX_HOST_INPUT];
    size_t o = 0;
    for (int i = 0; i < 56; i++) {
        memcpy(idn + o, "\xc3\xbc", 2);
        o += 2;
    }
    memcpy(idn + o, ".example", 9);
    assert_int_equal(host_parse(idn, strlen(idn), &h, &msg), 0);
    assert_true(strlen(h.name) <= 63 + 8);
    o = 0;
    for (int i = 0; i < 60; i++) {
        memcpy(idn + o, "\xc3\xbc", 2); /* u-umlaut */
        o += 2;
    }
    memcpy(idn + o, ".example", 9);
    assert_int_equal(host_parse(idn, strlen(idn), &h, &msg), -EINVAL);
}

struct auth_case {
    const char *in;
    uint16_t default_port;
    int ok;
    const char *name;
    uint16_t port;
};

static void test_host_parse_authority(void **state)
{
    static const struct auth_case cases[] = {
        { "example.com:443", 0, 1, "example.com", 443 },
        { "Example.com", 443, 1, "example.com", 443 },
        { "example.com:8080", 80, 1, "example.com", 8080 },
        { "[::1]:8080", 0, 1, "::1", 8080 },
        { "[::1]", 80, 1, "::1", 80 },
        { "127.0.0.1:5432", 0, 1, "127.0.0.1", 5432 },
        { "example.com", 0, 0, NULL, 0 },
        { "example.com:", 443, 0, NULL, 0 },
        { "example.com:0", 443, 0, NULL, 0 },
        { "example.com:65536", 443, 0, NULL, 0 },
        { "example.com:80:80", 443, 0, NULL, 0 },
        { "example.com:+80", 443, 0, NULL, 0 },
        { "[::1]x:80", 0, 0, NULL, 0 },
        { "[::1:80", 0, 0, NULL, 0 },
        { "::1:80", 0, 0, NULL, 0 },
        { "allowed.com@evil.com:443", 0, 0, NULL, 0 },
        { "evil.com:443#allowed.com", 0, 0, NULL, 0 },
        { "2130706433:80", 0, 0, NULL, 0 },
        { "[fe80::1%eth0]:80", 0, 0, NULL, 0 },
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct host h;
        uint16_t port = 0;
        const char *msg = NULL;
        int r = host_parse_authority(cases[i].in, strlen(cases[i].in), cases[i].default_port, &h,
                                     &port, &msg);
        if (!cases[i].ok) {
            if (r != -EINVAL)
                fail_msg("authority '%s' accepted", cases[i].in);
            continue;
        }
        if (r != 0)
            fail_msg("authority '%s' refused: %s", cases[i].in, msg);
        assert_string_equal(h.name, cases[i].name);
        assert_int_equal(port, cases[i].port);
    }
}

/* ---- patterns ------------------------------------------------------------------------ */

static struct policy *make_policy(const char *const *allow, size_t n_allow, const char *const *cidr,
                                  size_t n_cidr)
{
    struct policy *p = policy_new();
    const char *msg = NULL;

    for (size_t i = 0; i < n_allow; i++)
        if (policy_add_allow(p, allow[i], strlen(allow[i]), &msg) != 0)
            fail_msg("pattern '%s' refused: %s", allow[i], msg);
    for (size_t i = 0; i < n_cidr; i++)
        if (policy_add_cidr(p, cidr[i], strlen(cidr[i]), &msg) != 0)
            fail_msg("cidr '%s' refused: %s", cidr[i], msg);
    return p;
}

struct check_case {
    const char *host; /* through host_parse */
    uint16_t port;
    enum verdict expect;
};

static void run_checks(const struct policy *p, const struct check_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct host h;
        const char *msg = NULL;
        enum verdict v;

        if (host_parse(cases[i].host, strlen(cases[i].host), &h, &msg) < 0) {
            v = V_DENY_BAD_HOST;
        } else {
            v = policy_check_host(p, &h, cases[i].port);
        }
        if (v != cases[i].expect)
            fail_msg("'%s' port %u: got %s, expected %s", cases[i].host, cases[i].port,
                     verdict_reason(v), verdict_reason(cases[i].expect));
    }
}

static void test_pattern_matching(void **state)
{
    static const char *const allow[] = {
        "allowed.com",        "*.wild.example",      "API.Example.org:8443", "*.ports.example:9000",
        "ports.example:9001", "b\u00fccher.example", "xn--caf-dma.example", /* café.example */
        "Trailing.Example.",
    };
    static const struct check_case cases[] = {
        /* exact name, default ports */
        { "allowed.com", 443, V_ALLOW },
        { "allowed.com", 80, V_ALLOW },
        { "allowed.com", 0, V_ALLOW },
        { "allowed.com", 8080, V_DENY_PORT },
        { "allowed.com", 444, V_DENY_PORT },
        { "ALLOWED.COM.", 443, V_ALLOW },
        { "AlLoWeD.cOm", 80, V_ALLOW },
        /* not a wildcard: no subdomains, no look-alikes */
        { "sub.allowed.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "allowed.com.evil.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "evilallowed.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "allowed.co", 443, V_DENY_NOT_ALLOWLISTED },
        { "com", 443, V_DENY_NOT_ALLOWLISTED },
        { "evil.com#allowed.com", 443, V_DENY_BAD_HOST },
        { "evil.com@allowed.com", 443, V_DENY_BAD_HOST },
        { "allowed.com@evil.com", 443, V_DENY_BAD_HOST },
        { "allowed%2ecom", 443, V_DENY_BAD_HOST },
        { "allowed.com\r\n", 443, V_DENY_BAD_HOST },
        /* wildcard: any depth below, not the apex */
        { "wild.example", 443, V_DENY_NOT_ALLOWLISTED },
        { "a.wild.example", 443, V_ALLOW },
        { "A.WILD.EXAMPLE.", 80, V_ALLOW },
        { "a.b.c.d.wild.example", 443, V_ALLOW },
        { "a.wild.example", 22, V_DENY_PORT },
        { "awild.example", 443, V_DENY_NOT_ALLOWLISTED },
        { "wild.example.evil.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "a.wild.example.evil.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "example", 443, V_DENY_NOT_ALLOWLISTED },
        /* explicit ports replace the defaults */
        { "api.example.org", 8443, V_ALLOW },
        { "api.example.org", 443, V_DENY_PORT },
        { "api.example.org", 80, V_DENY_PORT },
        { "api.example.org", 0, V_ALLOW },
        { "x.ports.example", 9000, V_ALLOW },
        { "x.ports.example", 9001, V_DENY_PORT },
        { "x.ports.example", 443, V_DENY_PORT },
        { "ports.example", 9001, V_ALLOW },
        { "ports.example", 9000, V_DENY_PORT },
        /* IDN: pattern in Unicode, host in punycode and the other way round */
        { "xn--bcher-kva.example", 443, V_ALLOW },
        { "b\xc3\xbc"
          "cher.example",
          443, V_ALLOW },
        { "B\xc3\x9c"
          "CHER.EXAMPLE",
          443, V_ALLOW },
        { "bucher.example", 443, V_DENY_NOT_ALLOWLISTED },
        { "caf\xc3\xa9.example", 443, V_ALLOW },
        { "cafe.example", 443, V_DENY_NOT_ALLOWLISTED },
        { "trailing.example", 443, V_ALLOW },
        /* IP literals are never matched by name patterns */
        { "127.0.0.1", 443, V_DENY_IP_LITERAL },
        { "[::1]", 443, V_DENY_IP_LITERAL },
        { "2130706433", 80, V_DENY_BAD_HOST },
        { "0x7f.1", 80, V_DENY_BAD_HOST },
    };
    struct policy *p = make_policy(allow, ARRAY_SIZE(allow), NULL, 0);
    (void)state;

    run_checks(p, cases, ARRAY_SIZE(cases));
    assert_int_equal(policy_n_allow(p), ARRAY_SIZE(allow));
    assert_string_equal(policy_allow_text(p, 1), "*.wild.example");
    assert_string_equal(policy_allow_text(p, 2), "api.example.org:8443");
    assert_string_equal(policy_allow_text(p, 5), "xn--bcher-kva.example");
    assert_string_equal(policy_allow_text(p, 7), "trailing.example");
    assert_null(policy_allow_text(p, ARRAY_SIZE(allow)));
    policy_free(p);
}

static void test_pattern_single_label_suffix(void **state)
{
    static const char *const allow[] = { "*.com" };
    static const struct check_case cases[] = {
        { "example.com", 443, V_ALLOW },
        { "a.b.example.com", 443, V_ALLOW },
        { "com", 443, V_DENY_NOT_ALLOWLISTED },
        { "example.org", 443, V_DENY_NOT_ALLOWLISTED },
        { "example.com.org", 443, V_DENY_NOT_ALLOWLISTED },
    };
    struct policy *p = make_policy(allow, 1, NULL, 0);
    (void)state;
    run_checks(p, cases, ARRAY_SIZE(cases));
    policy_free(p);
}

static void test_pattern_empty_policy(void **state)
{
    static const struct check_case cases[] = {
        { "example.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "example.com", 0, V_DENY_NOT_ALLOWLISTED },
        { "8.8.8.8", 443, V_DENY_IP_LITERAL },
        { "169.254.169.254", 80, V_DENY_METADATA },
        { "[fd00:ec2::254]", 80, V_DENY_METADATA },
        { "[::ffff:169.254.169.254]", 80, V_DENY_METADATA },
    };
    struct policy *p = policy_new();
    (void)state;
    run_checks(p, cases, ARRAY_SIZE(cases));
    assert_int_equal(policy_n_allow(p), 0);
    assert_int_equal(policy_n_cidr(p), 0);
    policy_free(p);
}

static void test_pattern_errors(void **state)
{
    static const struct {
        const char *in;
        const char *msg_has; /* substring the message must contain, or NULL */
    } bad[] = {
        { "", NULL },
        { "*", "alone" },
        { "*.", NULL },
        { "**.example.com", NULL },
        { "*.*.example.com", NULL },
        { "a.*.example.com", "first label" },
        { "*example.com", NULL },
        { "ex*ample.com", NULL },
        { "example.*", NULL },
        { "127.0.0.1", "allow_cidr" },
        { "127.0.0.1:80", "allow_cidr" },
        { "*.127.0.0.1", "allow_cidr" },
        { "[::1]", "allow_cidr" },
        { "[::1]:443", "allow_cidr" },
        { "::1", "allow_cidr" },
        { "fd00::1", "allow_cidr" },
        { "10.0.0.0/8", NULL },
        { "2130706433", "IPv4" },
        { "0x7f.1", NULL },
        { "*.1", NULL },
        { "example.com:0", "port" },
        { "example.com:65536", "port" },
        { "example.com:", "port" },
        { "example.com:https", "port" },
        { "example.com:-1", "port" },
        { "evil.com#allowed.com", NULL },
        { "user@allowed.com", NULL },
        { "allowed.com/path", NULL },
        { "http://allowed.com", NULL },
        { "example..com", NULL },
        { "example.com..", NULL },
        { "exa mple.com", NULL },
        { "allowed%2ecom", NULL },
        { "-bad.example", NULL },
    };
    struct policy *p = policy_new();
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const char *msg = NULL;
        int r = policy_add_allow(p, bad[i].in, strlen(bad[i].in), &msg);
        if (r != -EINVAL)
            fail_msg("pattern '%s' accepted", bad[i].in);
        assert_non_null(msg);
        if (bad[i].msg_has && !strstr(msg, bad[i].msg_has))
            fail_msg("pattern '%s': message '%s' lacks '%s'", bad[i].in, msg, bad[i].msg_has);
    }
    assert_int_equal(policy_n_allow(p), 0);

    /* NUL inside the pattern text */
    const char *msg = NULL;
    assert_int_equal(policy_add_allow(p, "allowed.com\0.evil", 17, &msg), -EINVAL);

    /* duplicates are accepted and ignored, also after normalisation */
    assert_int_equal(policy_add_allow(p, "dup.example", 11, &msg), 0);
    assert_int_equal(policy_add_allow(p, "DUP.example.", 12, &msg), 0);
    assert_int_equal(policy_add_allow(p, "dup.example:443", 15, &msg), 0);
    assert_int_equal(policy_add_allow(p, "dup.example:0443", 16, &msg), 0);
    assert_int_equal(policy_n_allow(p), 2);
    policy_free(p);
}

static void test_pattern_limit(void **state)
{
    struct policy *p = policy_new();
    char buf[64];
    const char *msg = NULL;
    (void)state;

    for (unsigned i = 0; i < BB_MAX_PATTERNS; i++) {
        snprintf(buf, sizeof(buf), "h%u.example", i);
        assert_int_equal(policy_add_allow(p, buf, strlen(buf), &msg), 0);
    }
    assert_int_equal(policy_add_allow(p, "one-more.example", 16, &msg), -ENOSPC);
    /* a duplicate is still fine at the cap */
    assert_int_equal(policy_add_allow(p, "h7.example", 10, &msg), 0);
    /* every one of them matches after all the rehashing */
    for (unsigned i = 0; i < BB_MAX_PATTERNS; i += 97) {
        struct host h;
        snprintf(buf, sizeof(buf), "h%u.example", i);
        assert_int_equal(host_parse(buf, strlen(buf), &h, &msg), 0);
        assert_int_equal(policy_check_host(p, &h, 443), V_ALLOW);
    }
    policy_free(p);
}

/* ---- allow_cidr ---------------------------------------------------------------------- */

static void test_cidr_parse(void **state)
{
    static const char *const good[] = {
        "10.0.0.0/8",     "203.0.113.7",
        "203.0.113.7/32", "fd00::/8",
        "[fd00::1]",      "[fd00::]/8:5432",
        "[fd00::1]:5432", "10.1.0.0/16:5432",
        "127.0.0.1:8080", "0.0.0.0/0",
        "::/0",           "[::1]",
        "FD00::/8",       "::1",
        "0.0.0.0/1",
    };
    static const struct {
        const char *in;
        const char *msg_has;
    } bad[] = {
        { "10.0.0.1/8", "host bits" },
        { "10.1.2.0/16", "host bits" },
        { "fd00::1/8", "host bits" },
        { "[fd00::1]/8:5432", "host bits" },
        { "128.0.0.0/0", "host bits" },
        { "10.0.0.0/33", "prefix" },
        { "::/129", "prefix" },
        { "10.0.0.0/08", "prefix" },
        { "10.0.0.0/", "prefix" },
        { "10.0.0.0/-1", NULL },
        { "10.0.0.0/8/8", NULL },
        { "10.0.0.0:0", "port" },
        { "10.0.0.0:65536", "port" },
        { "10.0.0.0/8:", "port" },
        { "fd00::/8:5432", "bracket" },
        { "[10.0.0.0]", NULL },
        { "[10.0.0.0]/8", NULL },
        { "10.0.0", NULL },
        { "2130706433", NULL },
        { "010.0.0.0/8", NULL },
        { "0x0a.0.0.0/8", NULL },
        { "fe80::1%eth0", "zone" },
        { "[fe80::1%eth0]", "zone" },
        { "", NULL },
        { "example.com", NULL },
        { "::ffff:127.0.0.1", "IPv4" },
        { "::ffff:127.0.0.0/104", "IPv4" },
        { "[::1", NULL },
        { "[::1]x", NULL },
        { "1.2.3.4 ", NULL },
        { " 1.2.3.4", NULL },
        { "1.2.3.4\n", NULL },
    };
    struct policy *p = policy_new();
    const char *msg = NULL;
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(good); i++)
        if (policy_add_cidr(p, good[i], strlen(good[i]), &msg) != 0)
            fail_msg("cidr '%s' refused: %s", good[i], msg);
    /* duplicates are ignored: "[::1]" == "::1", FD00::/8 == fd00::/8, x == x/32 */
    assert_int_equal(policy_n_cidr(p), ARRAY_SIZE(good) - 3);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        msg = NULL;
        if (policy_add_cidr(p, bad[i].in, strlen(bad[i].in), &msg) != -EINVAL)
            fail_msg("cidr '%s' accepted", bad[i].in);
        assert_non_null(msg);
        if (bad[i].msg_has && !strstr(msg, bad[i].msg_has))
            fail_msg("cidr '%s': message '%s' lacks '%s'", bad[i].in, msg, bad[i].msg_has);
    }
    policy_free(p);

    p = policy_new();
    char buf[64];
    for (unsigned i = 0; i < BB_MAX_CIDRS; i++) {
        snprintf(buf, sizeof(buf), "10.%u.%u.0/24", i / 256, i % 256);
        assert_int_equal(policy_add_cidr(p, buf, strlen(buf), &msg), 0);
    }
    assert_int_equal(policy_add_cidr(p, "11.0.0.0/8", 10, &msg), -ENOSPC);
    policy_free(p);
}

static void test_cidr_ip_literals(void **state)
{
    static const char *const cidr[] = {
        "10.1.0.0/16:5432", "127.0.0.0/8",        "fd00::/8",
        "169.254.0.0/16",   "[2001:db8::1]:8443", "198.51.100.7",
    };
    static const struct check_case cases[] = {
        /* range with a port: edges of the range, and the port */
        { "10.1.0.0", 5432, V_ALLOW },
        { "10.1.255.255", 5432, V_ALLOW },
        { "10.0.255.255", 5432, V_DENY_IP_LITERAL },
        { "10.2.0.0", 5432, V_DENY_IP_LITERAL },
        { "10.1.2.3", 5433, V_DENY_IP_LITERAL },
        { "10.1.2.3", 443, V_DENY_IP_LITERAL },
        /* range without a port: any port */
        { "127.0.0.1", 80, V_ALLOW },
        { "127.255.255.255", 1, V_ALLOW },
        { "128.0.0.0", 80, V_DENY_IP_LITERAL },
        { "126.255.255.255", 80, V_DENY_IP_LITERAL },
        { "[::ffff:127.0.0.1]", 80, V_ALLOW }, /* mapped form is the IPv4 address */
        { "[::1]", 80, V_DENY_IP_LITERAL },
        { "[fd00::1]", 22, V_ALLOW },
        { "[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", 22, V_ALLOW },
        { "[fe00::]", 22, V_DENY_IP_LITERAL },
        { "[fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", 22, V_DENY_IP_LITERAL },
        /* a broad range never opens a metadata address; link-local otherwise fine */
        { "169.254.1.1", 80, V_ALLOW },
        { "169.254.169.254", 80, V_DENY_METADATA },
        { "[::ffff:169.254.169.254]", 80, V_DENY_METADATA },
        { "[fd00:ec2::254]", 80, V_DENY_METADATA },
        /* single address */
        { "[2001:db8::1]", 8443, V_ALLOW },
        { "[2001:db8::1]", 443, V_DENY_IP_LITERAL },
        { "[2001:db8::2]", 8443, V_DENY_IP_LITERAL },
        { "198.51.100.7", 443, V_ALLOW },
        { "198.51.100.8", 443, V_DENY_IP_LITERAL },
        /* public addresses are still IP literals */
        { "8.8.8.8", 443, V_DENY_IP_LITERAL },
        { "[2606:4700::1111]", 443, V_DENY_IP_LITERAL },
        /* the DNS filter passes port 0: any entry covering the address */
        { "10.1.2.3", 0, V_ALLOW },
    };
    struct policy *p = make_policy(NULL, 0, cidr, ARRAY_SIZE(cidr));
    (void)state;
    run_checks(p, cases, ARRAY_SIZE(cases));
    policy_free(p);

    /* metadata opens only with an entry naming exactly that address */
    static const char *const meta[] = { "169.254.169.254/32", "[fd00:ec2::254]:80" };
    static const struct check_case meta_cases[] = {
        { "169.254.169.254", 80, V_ALLOW },         { "[::ffff:169.254.169.254]", 80, V_ALLOW },
        { "169.254.170.2", 80, V_DENY_METADATA },   { "[fd00:ec2::254]", 80, V_ALLOW },
        { "[fd00:ec2::254]", 81, V_DENY_METADATA },
    };
    p = make_policy(NULL, 0, meta, ARRAY_SIZE(meta));
    run_checks(p, meta_cases, ARRAY_SIZE(meta_cases));
    policy_free(p);

    /* allow_cidr never makes a name allowed */
    static const char *const all[] = { "0.0.0.0/0", "::/0" };
    static const struct check_case name_cases[] = {
        { "example.com", 443, V_DENY_NOT_ALLOWLISTED },
        { "localhost", 80, V_DENY_NOT_ALLOWLISTED },
        { "8.8.8.8", 443, V_ALLOW },
        { "[2606:4700::1111]", 443, V_ALLOW },
    };
    p = make_policy(NULL, 0, all, ARRAY_SIZE(all));
    run_checks(p, name_cases, ARRAY_SIZE(name_cases));
    policy_free(p);
}

/* ---- SSRF ranges ----------------------------------------------------------------------- */

enum addr_class { PUB, RES, META };

struct addr_case {
    const char *addr;
    enum addr_class cls;
};

/* Every refused range: first and last address inside, and the neighbours outside. */
static const struct addr_case addr_cases[] = {
    { "0.0.0.0", RES },
    { "0.255.255.255", RES },
    { "1.0.0.0", PUB },
    { "9.255.255.255", PUB },
    { "10.0.0.0", RES },
    { "10.255.255.255", RES },
    { "11.0.0.0", PUB },
    { "100.63.255.255", PUB },
    { "100.64.0.0", RES },
    { "100.127.255.255", RES },
    { "100.128.0.0", PUB },
    { "126.255.255.255", PUB },
    { "127.0.0.0", RES },
    { "127.0.0.1", RES },
    { "127.255.255.255", RES },
    { "128.0.0.0", PUB },
    { "169.253.255.255", PUB },
    { "169.254.0.0", RES },
    { "169.254.255.255", RES },
    { "169.255.0.0", PUB },
    { "172.15.255.255", PUB },
    { "172.16.0.0", RES },
    { "172.31.255.255", RES },
    { "172.32.0.0", PUB },
    { "191.255.255.255", PUB },
    { "192.0.0.0", RES },
    { "192.0.0.255", RES },
    { "192.0.1.0", PUB },
    { "192.0.1.255", PUB },
    { "192.0.2.0", RES },
    { "192.0.2.255", RES },
    { "192.0.3.0", PUB },
    { "192.88.98.255", PUB },
    { "192.88.99.0", RES },
    { "192.88.99.255", RES },
    { "192.88.100.0", PUB },
    { "192.167.255.255", PUB },
    { "192.168.0.0", RES },
    { "192.168.255.255", RES },
    { "192.169.0.0", PUB },
    { "198.17.255.255", PUB },
    { "198.18.0.0", RES },
    { "198.19.255.255", RES },
    { "198.20.0.0", PUB },
    { "198.51.99.255", PUB },
    { "198.51.100.0", RES },
    { "198.51.100.255", RES },
    { "198.51.101.0", PUB },
    { "203.0.112.255", PUB },
    { "203.0.113.0", RES },
    { "203.0.113.255", RES },
    { "203.0.114.0", PUB },
    { "223.255.255.255", PUB },
    { "224.0.0.0", RES },
    { "239.255.255.255", RES },
    { "240.0.0.0", RES },
    { "255.255.255.254", RES },
    { "255.255.255.255", RES },
    { "8.8.8.8", PUB },
    { "1.1.1.1", PUB },
    /* metadata */
    { "169.254.169.254", META },
    { "169.254.169.253", RES },
    { "169.254.169.255", RES },
    { "169.254.170.2", META },
    { "169.254.170.23", META },
    /* IPv6 */
    { "::", RES },
    { "::1", RES },
    { "::2", RES },
    { "::8.8.8.8", RES }, /* IPv4-compatible: deprecated, refused whatever it embeds */
    { "::127.0.0.1", RES },
    { "::ffff:127.0.0.1", RES },
    { "::ffff:10.0.0.1", RES },
    { "::ffff:8.8.8.8", PUB },
    { "::ffff:169.254.169.254", META },
    { "::fffe:808:808", RES },
    { "::1:ffff:808:808", RES },
    { "64:ff9b::8.8.8.8", PUB },
    { "64:ff9b::10.0.0.1", RES },
    { "64:ff9b::127.0.0.1", RES },
    { "64:ff9b::169.254.169.254", META },
    { "64:ff9b:1::808:808", RES },
    { "64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "100::", RES },
    { "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "2000::", PUB },
    { "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUB },
    { "2001::", RES },
    { "2001:0:4136:e378:8000:63bf:3fff:fdd2", RES }, /* Teredo */
    { "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "2001:200::", PUB },
    { "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", PUB },
    { "2001:db8::", RES },
    { "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "2001:db9::", PUB },
    { "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUB },
    { "2002::", RES },                                  /* 6to4 of 0.0.0.0 */
    { "2002:808:808::1", PUB },                         /* 6to4 of 8.8.8.8 */
    { "2002:a00:1::1", RES },                           /* 6to4 of 10.0.0.1 */
    { "2002:7f00:1::", RES },                           /* 6to4 of 127.0.0.1 */
    { "2002:a9fe:a9fe::1", META },                      /* 6to4 of 169.254.169.254 */
    { "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RES }, /* 255.255.255.255 */
    { "2003::", PUB },
    { "2606:4700::1111", PUB },
    { "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUB },
    { "3fff::", RES },
    { "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "3fff:1000::", PUB },
    { "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUB },
    { "4000::", RES },
    { "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "fc00::", RES },
    { "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "fd00:ec2::254", META },
    { "fd00:ec2::253", RES },
    { "fd00:ec2::23", META },
    { "fe80::", RES },
    { "fe80::1", RES },
    { "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
    { "fec0::", RES },
    { "ff00::", RES },
    { "ff02::1", RES },
    { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", RES },
};

static void to_sockaddr(const char *a, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, a, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
    } else {
        fail_msg("test address '%s' does not parse", a);
    }
}

static void test_ssrf_ranges(void **state)
{
    struct policy *p = policy_new();
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(addr_cases); i++) {
        struct sockaddr_storage ss;
        const struct sockaddr *sa = (const struct sockaddr *)&ss;
        const struct addr_case *c = &addr_cases[i];
        enum verdict want = c->cls == PUB ? V_ALLOW : c->cls == RES ? V_DENY_SSRF : V_DENY_METADATA;

        to_sockaddr(c->addr, 443, &ss);
        if (addr_is_restricted(sa) != (c->cls != PUB))
            fail_msg("%s: addr_is_restricted() = %d", c->addr, addr_is_restricted(sa));
        if (addr_is_metadata(sa) != (c->cls == META))
            fail_msg("%s: addr_is_metadata() = %d", c->addr, addr_is_metadata(sa));
        enum verdict v = policy_check_addr(p, sa, 443);
        if (v != want)
            fail_msg("%s: policy_check_addr() = %s, want %s", c->addr, verdict_reason(v),
                     verdict_reason(want));
    }
    policy_free(p);
}

static void test_ssrf_allow_cidr(void **state)
{
    static const char *const allow[] = { "internal.example" };
    static const char *const cidr[] = { "10.1.0.0/16:5432", "127.0.0.1", "169.254.0.0/16",
                                        "[fd00:ec2::254]", "[fc00::]/7:8080" };
    static const struct {
        const char *addr;
        uint16_t port;
        enum verdict expect;
    } cases[] = {
        { "10.1.2.3", 5432, V_ALLOW },
        { "10.1.2.3", 5433, V_DENY_SSRF },
        { "10.2.0.1", 5432, V_DENY_SSRF },
        { "127.0.0.1", 8080, V_ALLOW },
        { "127.0.0.2", 8080, V_DENY_SSRF },
        { "::ffff:127.0.0.1", 8080, V_ALLOW },
        { "::1", 8080, V_DENY_SSRF },
        { "169.254.10.10", 80, V_ALLOW },
        { "169.254.169.254", 80, V_DENY_METADATA },
        { "169.254.170.2", 80, V_DENY_METADATA },
        { "fd00:ec2::254", 80, V_ALLOW },
        { "fd12::1", 8080, V_ALLOW },
        { "fd12::1", 8081, V_DENY_SSRF },
        { "192.168.1.1", 80, V_DENY_SSRF },
        { "8.8.8.8", 443, V_ALLOW },
    };
    struct policy *p = make_policy(allow, 1, cidr, ARRAY_SIZE(cidr));
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct sockaddr_storage ss;
        to_sockaddr(cases[i].addr, cases[i].port, &ss);
        enum verdict v = policy_check_addr(p, (const struct sockaddr *)&ss, cases[i].port);
        if (v != cases[i].expect)
            fail_msg("%s:%u: got %s, want %s", cases[i].addr, cases[i].port, verdict_reason(v),
                     verdict_reason(cases[i].expect));
    }

    /* unknown families fail closed */
    struct sockaddr_storage ss = { .ss_family = AF_UNIX };
    assert_true(addr_is_restricted((const struct sockaddr *)&ss));
    assert_int_equal(policy_check_addr(p, (const struct sockaddr *)&ss, 80), V_DENY_NO_ADDRESS);
    assert_int_equal(policy_check_addr(p, NULL, 80), V_DENY_NO_ADDRESS);
    assert_true(addr_is_restricted(NULL));
    policy_free(p);
}

static void test_verdict_reason(void **state)
{
    (void)state;
    assert_string_equal(verdict_reason(V_ALLOW), "allowlisted");
    assert_string_equal(verdict_reason(V_DENY_NOT_ALLOWLISTED), "not-allowlisted");
    assert_string_equal(verdict_reason(V_DENY_PORT), "port-not-allowed");
    assert_string_equal(verdict_reason(V_DENY_BAD_HOST), "bad-host");
    assert_string_equal(verdict_reason(V_DENY_IP_LITERAL), "ip-literal");
    assert_string_equal(verdict_reason(V_DENY_SSRF), "ssrf-private");
    assert_string_equal(verdict_reason(V_DENY_METADATA), "ssrf-metadata");
    assert_string_equal(verdict_reason(V_DENY_NO_ADDRESS), "no-address");
    assert_string_equal(verdict_reason(V_MAX), "unknown");
    for (int a = 0; a < V_MAX; a++)
        for (int b = a + 1; b < V_MAX; b++)
            assert_string_not_equal(verdict_reason((enum verdict)a),
                                    verdict_reason((enum verdict)b));
}

/* The DNS filter calls this per query: with ~50 patterns it must stay well under 1 us. */
static void test_match_speed(void **state)
{
    struct policy *p = policy_new();
    char buf[128];
    const char *msg;
    struct host hosts[4];
    const char *names[] = { "a.b.c.d.e.f.g.h.not-listed.example.net", "api12.service.example",
                            "x.y.wild20.example", "nothing.example.org" };
    struct timespec t0, t1;
    volatile unsigned allowed = 0;
    const unsigned iters = 400000;
    (void)state;

    for (unsigned i = 0; i < 25; i++) {
        snprintf(buf, sizeof(buf), "api%u.service.example", i);
        assert_int_equal(policy_add_allow(p, buf, strlen(buf), &msg), 0);
        snprintf(buf, sizeof(buf), "*.wild%u.example", i);
        assert_int_equal(policy_add_allow(p, buf, strlen(buf), &msg), 0);
    }
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        assert_int_equal(host_parse(names[i], strlen(names[i]), &hosts[i], &msg), 0);
    assert_int_equal(policy_check_host(p, &hosts[0], 443), V_DENY_NOT_ALLOWLISTED);
    assert_int_equal(policy_check_host(p, &hosts[1], 443), V_ALLOW);
    assert_int_equal(policy_check_host(p, &hosts[2], 443), V_ALLOW);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < iters; i++)
        allowed += policy_check_host(p, &hosts[i % 4], 443) == V_ALLOW;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / iters;
    /* Informational only (a TAP comment): timing targets live in benchmarks, not tests. */
    printf("# policy_check_host: %.0f ns per check (50 patterns)\n", ns);
    assert_int_equal(allowed, iters / 2);
    policy_free(p);
}

/* ---- method/path rules ---------------------------------------------------------------- */

static void test_path_normalise(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        { "/", "/" },
        { "/repos/myorg/x", "/repos/myorg/x" },
        { "/repos/myorg/x?token=1/../..", "/repos/myorg/x" },
        { "/repos/myorg/x#frag", "/repos/myorg/x" },
        { "/repos/%6Dyorg/x", "/repos/myorg/x" },
        { "/a%7eb/", "/a~b/" },
        { "/a%20b", "/a%20b" },
        { "/a%c3%a9", "/a%C3%A9" },
        { "/a/b/", "/a/b/" },
        { "/repos/myorg/%2e%2e/other", NULL },
        { "/repos/myorg/../other", NULL },
        { "/repos/myorg/./x", NULL },
        { "/repos/myorg/.%2E/other", NULL },
        { "/repos/myorg/..;/other", NULL },
        { "/repos/myorg/..", NULL },
        { "/repos/myorg%2Fother", NULL },
        { "/repos/myorg%2fother", NULL },
        { "/repos/myorg%5Cother", NULL },
        { "/repos/myorg\\..\\other", NULL },
        { "/repos/%252e%252e/x", NULL },
        { "//evil.example/x", NULL },
        { "/repos//myorg", NULL },
        { "/a%2", NULL },
        { "/a%zz", NULL },
        { "/a%00", NULL },
        { "relative", NULL },
        { "", NULL },
    };
    char out[256];
    const char *why;

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        why = NULL;
        int r = policy_path_normalise(cases[i].in, strlen(cases[i].in), out, sizeof(out), &why);
        if (cases[i].out) {
            if (r != 0)
                fail_msg("%s: refused (%s)", cases[i].in, why);
            assert_string_equal(out, cases[i].out);
        } else {
            if (r == 0)
                fail_msg("%s: accepted as %s", cases[i].in, out);
            assert_non_null(why);
        }
    }
}

static void test_path_match(void **state)
{
    static const struct {
        const char *pat, *path;
        bool match;
    } cases[] = {
        { "/repos/myorg/*", "/repos/myorg/x", true },
        { "/repos/myorg/*", "/repos/myorg/x/issues/1", true },
        { "/repos/myorg/*", "/repos/myorg/", true },
        { "/repos/myorg/*", "/repos/myorg", false },
        { "/repos/myorg/*", "/repos/myorgx/y", false },
        { "/repos/myorg/*", "/repos/other/x", false },
        { "/repos/myorg/**", "/repos/myorg", true },
        { "/repos/myorg/**", "/repos/myorg/a/b", true },
        { "/repos/myorg/**", "/repos/myorgx", false },
        { "/repos/*/issues", "/repos/x/issues", true },
        { "/repos/*/issues", "/repos/x/y/issues", false },
        { "/repos/*/issues", "/repos/x/issues/1", false },
        { "/v1/*.json", "/v1/a.json", true },
        { "/v1/*.json", "/v1/a.jsonx", false },
        { "/v1/messages", "/v1/messages", true },
        { "/v1/messages", "/v1/messages/", false },
        { "/v1/messages", "/v1/message", false },
        { "/**", "/", true },
        { "/**", "/any/thing", true },
        { "/*", "/x/y", true },
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (policy_path_match(cases[i].pat, cases[i].path) != cases[i].match)
            fail_msg("%s vs %s: want %d", cases[i].pat, cases[i].path, cases[i].match);
}

static enum verdict req(const struct policy *p, const char *host, uint16_t port, const char *method,
                        const char *target, const char **rule)
{
    struct host h;
    const char *why;
    assert_int_equal(host_parse(host, strlen(host), &h, &why), 0);
    return policy_check_request(p, &h, port, method, strlen(method), target, strlen(target), rule,
                                &why);
}

static void test_rules(void **state)
{
    struct policy *p = policy_new();
    const char *why = NULL, *rule = NULL;
    struct host h;

    (void)state;
    assert_int_equal(policy_add_allow(p, "api.github.com get,HEAD  /repos/myorg/*",
                                      strlen("api.github.com get,HEAD  /repos/myorg/*"), &why),
                     0);
    assert_string_equal(policy_allow_text(p, 0), "api.github.com GET,HEAD /repos/myorg/*");
    assert_int_equal(policy_add_allow(p, "api.github.com POST /repos/myorg/*/issues",
                                      strlen("api.github.com POST /repos/myorg/*/issues"), &why),
                     0);
    assert_int_equal(policy_add_allow(p, "example.com", 11, &why), 0);
    assert_int_equal(policy_n_allow(p), 3);
    /* the host is allowlisted by the rule */
    assert_int_equal(host_parse("api.github.com", 14, &h, &why), 0);
    assert_int_equal(policy_check_host(p, &h, 443), V_ALLOW);
    assert_int_equal(policy_check_host(p, &h, 8443), V_DENY_PORT);
    assert_true(policy_host_has_rules(p, &h, 443));
    assert_true(policy_host_has_rules(p, &h, 80));
    assert_false(policy_host_has_rules(p, &h, 8443));
    assert_int_equal(req(p, "api.github.com", 80, "GET", "/repos/myorg/x?q=1", &rule), V_ALLOW);
    assert_string_equal(rule, "api.github.com GET,HEAD /repos/myorg/*");
    assert_int_equal(req(p, "api.github.com", 80, "HEAD", "/repos/myorg/x", &rule), V_ALLOW);
    assert_int_equal(req(p, "api.github.com", 80, "POST", "/repos/myorg/x/issues", &rule), V_ALLOW);
    assert_int_equal(req(p, "api.github.com", 80, "DELETE", "/repos/myorg/x", &rule),
                     V_DENY_METHOD);
    assert_string_equal(rule, "api.github.com GET,HEAD /repos/myorg/*");
    assert_int_equal(req(p, "api.github.com", 80, "get", "/repos/myorg/x", &rule), V_DENY_METHOD);
    assert_int_equal(req(p, "api.github.com", 80, "GETX", "/repos/myorg/x", &rule), V_DENY_METHOD);
    assert_int_equal(req(p, "api.github.com", 80, "GE", "/repos/myorg/x", &rule), V_DENY_METHOD);
    assert_int_equal(req(p, "api.github.com", 80, "GET", "/repos/other/x", &rule), V_DENY_PATH);
    assert_int_equal(req(p, "api.github.com", 80, "GET", "/repos/myorg/../other/x", &rule),
                     V_DENY_PATH);
    assert_int_equal(req(p, "api.github.com", 80, "GET", "/repos/myorg/%2e%2e/other", &rule),
                     V_DENY_PATH);
    assert_int_equal(req(p, "api.github.com", 80, "GET", "/repos/myorg%2F../other", &rule),
                     V_DENY_PATH);
    assert_int_equal(req(p, "api.github.com", 80, "GET", "/user?x=/repos/myorg/a", &rule),
                     V_DENY_PATH);
    /* a host without rules: anything */
    assert_int_equal(req(p, "example.com", 80, "DELETE", "/../x", &rule), V_ALLOW);
    assert_null(rule);
    /* a bare pattern for the same host does not lift the rules */
    assert_int_equal(policy_add_allow(p, "api.github.com", 14, &why), 0);
    assert_int_equal(req(p, "api.github.com", 80, "DELETE", "/repos/myorg/x", &rule),
                     V_DENY_METHOD);
    /* a copy keeps the rules; a copy without one loses just it */
    struct policy *c = policy_copy(p, "api.github.com POST /repos/myorg/*/issues");
    assert_int_equal(req(c, "api.github.com", 80, "GET", "/repos/myorg/x", &rule), V_ALLOW);
    assert_int_equal(req(c, "api.github.com", 80, "POST", "/repos/myorg/x/issues", &rule),
                     V_DENY_METHOD);
    policy_free(c);
    /* wildcards and ports */
    assert_int_equal(policy_add_allow(p, "*.corp.example:8080 * /api/**",
                                      strlen("*.corp.example:8080 * /api/**"), &why),
                     0);
    assert_int_equal(req(p, "git.corp.example", 8080, "PATCH", "/api", &rule), V_ALLOW);
    assert_int_equal(req(p, "git.corp.example", 8080, "PATCH", "/apix", &rule), V_DENY_PATH);
    assert_int_equal(req(p, "corp.example", 8080, "PATCH", "/apix", &rule), V_ALLOW);
    policy_free(p);

    /* refused rules */
    static const char *const bad[] = {
        "api.github.com GET",
        "api.github.com GET /a /b",
        "api.github.com GET repos",
        "api.github.com GET, /a",
        "api.github.com G3T /a",
        "api.github.com GET /a?x=1",
        "api.github.com GET /a/../b",
        "api.github.com GET /a/**/b",
        "api.github.com GET /a%2Fb",
        "http://api.github.com GET /a",
        "10.0.0.1 GET /a",
        "* GET /a",
    };
    p = policy_new();
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        why = NULL;
        if (policy_add_allow(p, bad[i], strlen(bad[i]), &why) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(why);
    }
    assert_int_equal(policy_n_allow(p), 0);
    policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_parse_table),
        cmocka_unit_test(test_host_parse_lengths),
        cmocka_unit_test(test_host_parse_authority),
        cmocka_unit_test(test_pattern_matching),
        cmocka_unit_test(test_pattern_single_label_suffix),
        cmocka_unit_test(test_pattern_empty_policy),
        cmocka_unit_test(test_pattern_errors),
        cmocka_unit_test(test_pattern_limit),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_ip_literals),
        cmocka_unit_test(test_ssrf_ranges),
        cmocka_unit_test(test_ssrf_allow_cidr),
        cmocka_unit_test(test_verdict_reason),
        cmocka_unit_test(test_path_normalise),
        cmocka_unit_test(test_path_match),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_match_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
