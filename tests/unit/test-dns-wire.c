/* Unit tests for src/dns/wire.c: the bounded DNS parser and builders. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/macro.h"
#include "dns/wire.h"

/* ---- a tiny message writer for building test packets ---- */

struct msgw {
    uint8_t b[4096];
    size_t n;
};

static void w8(struct msgw *m, uint8_t v)
{
    assert_true(m->n < sizeof(m->b));
    m->b[m->n++] = v;
}

static void w16(struct msgw *m, uint16_t v)
{
    w8(m, (uint8_t)(v >> 8));
    w8(m, (uint8_t)v);
}

static void w32(struct msgw *m, uint32_t v)
{
    w16(m, (uint16_t)(v >> 16));
    w16(m, (uint16_t)v);
}

static void wbytes(struct msgw *m, const void *p, size_t n)
{
    assert_true(m->n + n <= sizeof(m->b));
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

/* "a.b.c" -> labels + root (no compression). "" is the root name. */
static void wname(struct msgw *m, const char *s)
{
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        w8(m, (uint8_t)l);
        wbytes(m, s, l);
        s += l;
        if (*s == '.')
            s++;
    }
    w8(m, 0);
}

static void whdr(struct msgw *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
                 uint16_t ar)
{
    m->n = 0;
    w16(m, id);
    w16(m, flags);
    w16(m, qd);
    w16(m, an);
    w16(m, ns);
    w16(m, ar);
}

/* An OPT record up to its RDLENGTH: owner, type, UDP payload size, TTL (the DO bit in it). */
static void wopt_head(struct msgw *m, const char *owner, uint16_t size, bool do_bit)
{
    wname(m, owner);
    w16(m, DNS_TYPE_OPT);
    w16(m, size);
    w32(m, do_bit ? 0x8000 : 0);
}

static void wopt(struct msgw *m, uint16_t size, bool do_bit)
{
    wopt_head(m, "", size, do_bit);
    w16(m, 0);
}

static void wrr_a(struct msgw *m, const char *name, uint32_t ttl, uint8_t a, uint8_t b, uint8_t c,
                  uint8_t d)
{
    wname(m, name);
    w16(m, DNS_TYPE_A);
    w16(m, DNS_CLASS_IN);
    w32(m, ttl);
    w16(m, 4);
    w8(m, a);
    w8(m, b);
    w8(m, c);
    w8(m, d);
}

static void make_query(struct msgw *m, const char *name, uint16_t qtype, bool opt)
{
    whdr(m, 0x1234, DNS_FLAG_RD, 1, 0, 0, opt ? 1 : 0);
    wname(m, name);
    w16(m, qtype);
    w16(m, DNS_CLASS_IN);
    if (opt)
        wopt(m, 4096, true);
}

/* ---- query parsing ---- */

static void test_query_parse_ok(void **state)
{
    struct msgw m;
    struct dns_query_info q;
    (void)state;

    make_query(&m, "www.Example.com", DNS_TYPE_AAAA, false);
    assert_int_equal(dns_query_parse(m.b, m.n, &q), 0);
    assert_int_equal(q.hdr.id, 0x1234);
    assert_int_equal(q.qtype, DNS_TYPE_AAAA);
    assert_int_equal(q.qclass, DNS_CLASS_IN);
    assert_int_equal(q.qname_len, 17);
    assert_false(q.has_opt);
    assert_int_equal(dns_query_max_udp(&q), 512);

    make_query(&m, "example.com", DNS_TYPE_A, true);
    assert_int_equal(dns_query_parse(m.b, m.n, &q), 0);
    assert_true(q.has_opt);
    assert_true(q.do_bit);
    assert_int_equal(q.udp_size, 4096);
    assert_int_equal(dns_query_max_udp(&q), 4096);
    assert_int_equal(q.question_end, 12 + 13 + 4);
}

struct bad_query {
    const char *what;
    int expect;
    void (*mutate)(struct msgw *m);
};

static void mut_short(struct msgw *m)
{
    m->n = 11;
}
static void mut_qr(struct msgw *m)
{
    m->b[2] |= 0x80;
}
static void mut_opcode_status(struct msgw *m)
{
    m->b[2] |= 2 << 3;
}
static void mut_opcode_notify(struct msgw *m)
{
    m->b[2] |= 4 << 3;
}
static void mut_qd0(struct msgw *m)
{
    m->b[5] = 0;
}
static void mut_qd2(struct msgw *m)
{
    m->b[5] = 2;
}
static void mut_an1(struct msgw *m)
{
    m->b[7] = 1;
}
static void mut_ns1(struct msgw *m)
{
    m->b[9] = 1;
}
static void mut_ar_lies(struct msgw *m)
{
    m->b[11] = 1; /* claims an additional record that is not there */
}
static void mut_ar2(struct msgw *m)
{
    m->b[11] = 2;
}
static void mut_trailing(struct msgw *m)
{
    w8(m, 0);
}
static void mut_compressed_qname(struct msgw *m)
{
    whdr(m, 1, 0, 1, 0, 0, 0);
    w8(m, 0xc0);
    w8(m, 0x0c); /* points at itself */
    w16(m, 1);
    w16(m, 1);
}
static void mut_label_overrun(struct msgw *m)
{
    whdr(m, 1, 0, 1, 0, 0, 0);
    w8(m, 40);
    wbytes(m, "abc", 3);
}
static void mut_ext_label(struct msgw *m)
{
    whdr(m, 1, 0, 1, 0, 0, 0);
    w8(m, 0x41);
    wbytes(m, "a", 1);
    w8(m, 0);
    w16(m, 1);
    w16(m, 1);
}
static void mut_no_qtype(struct msgw *m)
{
    m->n -= 3;
}
static void mut_long_name(struct msgw *m)
{
    whdr(m, 1, 0, 1, 0, 0, 0);
    for (int i = 0; i < 5; i++) { /* 5 * 52 = 260 octets > 255 */
        w8(m, 51);
        for (int k = 0; k < 51; k++)
            w8(m, 'a');
    }
    w8(m, 0);
    w16(m, 1);
    w16(m, 1);
}
static void mut_opt_not_root(struct msgw *m)
{
    make_query(m, "example.com", DNS_TYPE_A, false);
    m->b[11] = 1;
    wopt_head(m, "x", 512, false);
    w16(m, 0);
}
static void mut_additional_not_opt(struct msgw *m)
{
    make_query(m, "example.com", DNS_TYPE_A, false);
    m->b[11] = 1;
    wrr_a(m, "", 0, 1, 2, 3, 4);
}
static void mut_opt_option_overrun(struct msgw *m)
{
    make_query(m, "example.com", DNS_TYPE_A, false);
    m->b[11] = 1;
    wopt_head(m, "", 512, false);
    w16(m, 6);  /* rdlen 6 */
    w16(m, 10); /* option code */
    w16(m, 8);  /* option length 8 > 2 left */
    w16(m, 0);
}
static void mut_opt_rdlen_lies(struct msgw *m)
{
    make_query(m, "example.com", DNS_TYPE_A, false);
    m->b[11] = 1;
    wopt_head(m, "", 512, false);
    w16(m, 100);
}

static void test_query_parse_bad(void **state)
{
    static const struct bad_query cases[] = {
        { "short header", -EBADMSG, mut_short },
        { "response to server port", -EBADMSG, mut_qr },
        { "opcode STATUS", -EOPNOTSUPP, mut_opcode_status },
        { "opcode NOTIFY", -EOPNOTSUPP, mut_opcode_notify },
        { "qdcount 0", -EPROTO, mut_qd0 },
        { "qdcount 2", -EPROTO, mut_qd2 },
        { "ancount 1", -EPROTO, mut_an1 },
        { "nscount 1", -EPROTO, mut_ns1 },
        { "arcount lies", -EPROTO, mut_ar_lies },
        { "arcount 2", -EPROTO, mut_ar2 },
        { "trailing garbage", -EPROTO, mut_trailing },
        { "compressed question", -EPROTO, mut_compressed_qname },
        { "label overrun", -EPROTO, mut_label_overrun },
        { "extended label type", -EPROTO, mut_ext_label },
        { "truncated qtype", -EPROTO, mut_no_qtype },
        { "name > 255", -EPROTO, mut_long_name },
        { "OPT owner not root", -EPROTO, mut_opt_not_root },
        { "additional not OPT", -EPROTO, mut_additional_not_opt },
        { "OPT option overrun", -EPROTO, mut_opt_option_overrun },
        { "OPT rdlen lies", -EPROTO, mut_opt_rdlen_lies },
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct msgw m;
        struct dns_query_info q;
        make_query(&m, "example.com", DNS_TYPE_A, false);
        cases[i].mutate(&m);
        int r = dns_query_parse(m.b, m.n, &q);
        if (r != cases[i].expect)
            fail_msg("%s: got %d, want %d", cases[i].what, r, cases[i].expect);
    }
}

/* ---- names ---- */

static void test_name_read_pointers(void **state)
{
    uint8_t msg[64] = { 0 }, out[DNS_MAX_NAME];
    size_t off, len;
    (void)state;

    /* At 12: "example.com"; at 25: "www" + pointer to 12; at 31: pointer to 25. */
    memcpy(msg + 12, "\7example\3com\0", 13);
    memcpy(msg + 25, "\3www\xc0\x0c", 6);
    memcpy(msg + 31, "\xc0\x19", 2);
    off = 31;
    assert_int_equal(dns_name_read(msg, 33, &off, out, &len), 0);
    assert_int_equal(off, 33);
    assert_int_equal(len, 17);
    assert_memory_equal(out, "\3www\7example\3com\0", 17);

    /* Loops and forward pointers are refused. */
    memcpy(msg + 40, "\xc0\x28", 2); /* self */
    off = 40;
    assert_int_equal(dns_name_read(msg, 64, &off, out, &len), -EBADMSG);
    memcpy(msg + 40, "\xc0\x2a\xc0\x28", 4); /* forward then back */
    off = 40;
    assert_int_equal(dns_name_read(msg, 64, &off, out, &len), -EBADMSG);
    memcpy(msg + 40, "\1a\xc0\x28", 4); /* label then pointer to its own start */
    off = 40;
    assert_int_equal(dns_name_read(msg, 64, &off, out, &len), -EBADMSG);
    /* A pointer to a label that runs over the pointer itself (into later bytes). */
    memcpy(msg + 40, "\5abc\xc0\x28\0", 7);
    off = 44;
    assert_int_equal(dns_name_read(msg, 64, &off, out, &len), -EBADMSG);
    /* A pointer into the header. */
    memcpy(msg + 40, "\xc0\x0b", 2);
    msg[11] = 0;
    off = 40;
    assert_int_equal(dns_name_read(msg, 64, &off, out, &len), -EBADMSG);
    /* Pointer cut in half at the end of the message. */
    msg[44] = 0xc0;
    off = 44;
    assert_int_equal(dns_name_read(msg, 45, &off, out, &len), -EBADMSG);
    /* Unterminated name at the end of the message. */
    memcpy(msg + 50, "\3abc", 4);
    off = 50;
    assert_int_equal(dns_name_read(msg, 54, &off, out, &len), -EBADMSG);
}

static void test_name_read_long_chain(void **state)
{
    /* Names built by chaining pointers must still be capped at 255 octets. */
    uint8_t msg[2048] = { 0 }, out[DNS_MAX_NAME];
    size_t off = 12, len, prev;
    (void)state;

    msg[off++] = 0; /* root at 12 */
    prev = 12;
    for (int i = 0; i < 100; i++) {
        size_t here = off;
        msg[off++] = 1;
        msg[off++] = 'a';
        msg[off++] = (uint8_t)(0xc0 | (prev >> 8));
        msg[off++] = (uint8_t)prev;
        prev = here;
    }
    size_t start = prev;
    assert_int_equal(dns_name_read(msg, off, &start, out, &len), -EBADMSG);
}

static void test_name_to_text(void **state)
{
    static const struct {
        const char *wire;
        size_t len;
        int expect;
        const char *text;
    } cases[] = {
        { "\3www\7Example\3com", 17, 0, "www.Example.com" },
        { "", 1, 0, "" },
        { "\4_tcp\3a-b\0", 10, 0, "_tcp.a-b" },
        { "\3a.b\3com", 9, -EINVAL, NULL },       /* a dot inside a label */
        { "\3a b\3com", 9, -EINVAL, NULL },       /* space */
        { "\3a\0b\3com", 9, -EINVAL, NULL },      /* NUL */
        { "\3a\xc3\xa9\3com", 9, -EINVAL, NULL }, /* raw UTF-8 */
        { "\3a*b\3com", 9, -EINVAL, NULL },
        { "\3abc", 4, -EINVAL, NULL }, /* no root label */
        { "\5abc", 4, -EINVAL, NULL }, /* overrun */
        { "\0\0", 2, -EINVAL, NULL },  /* bytes after root */
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char out[DNS_MAX_NAME_TEXT + 1];
        size_t n = 0;
        int r = dns_name_to_text((const uint8_t *)cases[i].wire, cases[i].len, out, &n);
        if (r != cases[i].expect)
            fail_msg("case %zu: got %d want %d", i, r, cases[i].expect);
        if (r == 0) {
            assert_string_equal(out, cases[i].text);
            assert_int_equal(n, strlen(cases[i].text));
        }
    }
    assert_true(dns_name_eq((const uint8_t *)"\3WwW\0", 5, (const uint8_t *)"\3www\0", 5));
    assert_false(dns_name_eq((const uint8_t *)"\3wwx\0", 5, (const uint8_t *)"\3www\0", 5));
}

/* ---- replies ---- */

static void test_reply_build(void **state)
{
    struct msgw m;
    struct dns_query_info q;
    uint8_t out[512];
    int n;
    (void)state;

    make_query(&m, "tunnel.evil.com", DNS_TYPE_TXT, true);
    m.b[3] |= DNS_FLAG_CD;
    assert_int_equal(dns_query_parse(m.b, m.n, &q), 0);
    n = dns_reply_build(m.b, &q, DNS_RCODE_NXDOMAIN, out, sizeof(out));
    assert_int_equal(n, (int)(q.question_end + DNS_OPT_LEN));
    struct dns_hdr h;
    assert_int_equal(dns_hdr_parse(out, (size_t)n, &h), 0);
    assert_int_equal(h.id, 0x1234);
    assert_int_equal(h.flags, DNS_FLAG_QR | DNS_FLAG_RD | DNS_FLAG_RA | DNS_FLAG_CD | 3);
    assert_int_equal(h.qdcount, 1);
    assert_int_equal(h.ancount + h.nscount, 0);
    assert_int_equal(h.arcount, 1);
    assert_memory_equal(out + 12, m.b + 12, q.question_end - 12);
    assert_int_equal(out[q.question_end + 2], DNS_TYPE_OPT);
    assert_int_equal(out[q.question_end + 7], 0x80); /* DO echoed */

    /* Without OPT in the query, none in the reply; BADVERS then degrades to SERVFAIL. */
    make_query(&m, "a.com", DNS_TYPE_A, false);
    assert_int_equal(dns_query_parse(m.b, m.n, &q), 0);
    n = dns_reply_build(m.b, &q, DNS_RCODE_BADVERS, out, sizeof(out));
    assert_int_equal(n, (int)q.question_end);
    assert_int_equal(DNS_RCODE(dns_get16(out + 2)), DNS_RCODE_SERVFAIL);
    assert_int_equal(dns_reply_build(m.b, &q, 3, out, 10), -ENOSPC);

    /* Header-only: no question. */
    n = dns_reply_header_only(&q.hdr, DNS_RCODE_FORMERR, out, sizeof(out));
    assert_int_equal(n, 12);
    assert_int_equal(dns_get16(out + 4), 0);
    assert_int_equal(DNS_RCODE(dns_get16(out + 2)), DNS_RCODE_FORMERR);
}

static void test_query_build(void **state)
{
    uint8_t out[512];
    struct dns_query_info q;
    int n;
    (void)state;

    n = dns_query_build(0xbeef, DNS_FLAG_RD | DNS_FLAG_QR | DNS_FLAG_AA,
                        (const uint8_t *)"\1a\3com\0", 7, DNS_TYPE_HTTPS, 1, true, 1232, true, out,
                        sizeof(out));
    assert_true(n > 0);
    assert_int_equal(dns_query_parse(out, (size_t)n, &q), 0);
    assert_int_equal(q.hdr.id, 0xbeef);
    assert_int_equal(q.hdr.flags, DNS_FLAG_RD); /* QR/AA stripped */
    assert_int_equal(q.qtype, DNS_TYPE_HTTPS);
    assert_true(q.has_opt && q.do_bit);
    assert_int_equal(q.udp_size, 1232);
}

/* ---- responses ---- */

static const uint8_t QNAME[] = "\3www\7example\3com";
#define QNAME_LEN 17

/* Keep everything except A records in 10.0.0.0/8 and AAAA (for testing). */
static bool keep_public(void *ud, enum dns_section sec, uint16_t type, const uint8_t *rd,
                        uint16_t rdlen)
{
    unsigned *calls = ud;
    (void)sec;
    (*calls)++;
    if (type == DNS_TYPE_A && rdlen == 4 && rd[0] == 10)
        return false;
    return true;
}

static void resp_head(struct msgw *m, uint16_t id, uint16_t an, uint16_t ns, uint16_t ar)
{
    whdr(m, id, DNS_FLAG_QR | DNS_FLAG_RD | DNS_FLAG_RA, 1, an, ns, ar);
    wname(m, "www.EXAMPLE.com");
    w16(m, DNS_TYPE_A);
    w16(m, DNS_CLASS_IN);
}

static void test_resp_filter_match(void **state)
{
    struct msgw m;
    uint8_t out[4096];
    struct dns_resp_info *info = malloc(sizeof(*info));
    unsigned calls = 0;
    (void)state;

    resp_head(&m, 77, 1, 0, 0);
    wrr_a(&m, "www.example.com", 300, 93, 184, 216, 34);
    /* Case-insensitive question match works. */
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_A, 1, keep_public,
                                     &calls, out, sizeof(out), info),
                     (int)m.n);
    assert_int_equal(info->counts[DNS_SEC_ANSWER], 1);
    assert_int_equal(info->min_ttl, 300);
    /* Wrong id, qtype, qclass, name: not our answer. */
    assert_int_equal(dns_resp_filter(m.b, m.n, 78, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_AAAA, 1, NULL, NULL,
                                     out, sizeof(out), info),
                     -EBADMSG);
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_A, 3, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, (const uint8_t *)"\3wwx\7example\3com",
                                     QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out, sizeof(out), info),
                     -EBADMSG);
    /* Not a response. */
    m.b[2] &= 0x7f;
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    m.b[2] |= 0x80;
    /* Counts that lie. */
    m.b[7] = 2;
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    m.b[7] = 1;
    /* A with 5 bytes of RDATA. */
    resp_head(&m, 77, 1, 0, 0);
    wname(&m, "www.example.com");
    w16(&m, DNS_TYPE_A);
    w16(&m, 1);
    w32(&m, 1);
    w16(&m, 5);
    wbytes(&m, "\1\2\3\4\5", 5);
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    /* A CNAME whose target runs past its RDATA. */
    resp_head(&m, 77, 1, 0, 0);
    wname(&m, "www.example.com");
    w16(&m, DNS_TYPE_CNAME);
    w16(&m, 1);
    w32(&m, 1);
    w16(&m, 3);
    wname(&m, "abcdef");
    assert_int_equal(dns_resp_filter(m.b, m.n, 77, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    free(info);
}

static void test_resp_filter_strip(void **state)
{
    struct msgw m;
    uint8_t out[4096];
    struct dns_resp_info *info = malloc(sizeof(*info));
    unsigned calls = 0;
    int n;
    (void)state;

    /* CNAME (target compressed against the question), private A, public A whose owner is a
     * pointer into the CNAME RDATA, then OPT: the middle record goes, so it is re-encoded. */
    resp_head(&m, 9, 3, 0, 1);
    w16(&m, 0xc00c); /* www.example.com */
    w16(&m, DNS_TYPE_CNAME);
    w16(&m, 1);
    w32(&m, 600);
    size_t rdlen_at = m.n;
    w16(&m, 0);
    size_t target_at = m.n;
    w8(&m, 4);
    wbytes(&m, "edge", 4);
    w16(&m, 0xc000 | 16); /* -> "example.com" inside the question */
    dns_put16(m.b + rdlen_at, (uint16_t)(m.n - target_at));
    w16(&m, (uint16_t)(0xc000 | target_at)); /* edge.example.com */
    w16(&m, DNS_TYPE_A);
    w16(&m, 1);
    w32(&m, 60);
    w16(&m, 4);
    wbytes(&m, "\x0a\0\0\1", 4);
    w16(&m, (uint16_t)(0xc000 | target_at));
    w16(&m, DNS_TYPE_A);
    w16(&m, 1);
    w32(&m, 120);
    w16(&m, 4);
    wbytes(&m, "\x5d\xb8\xd8\x22", 4);
    wopt(&m, 1232, false);

    n = dns_resp_filter(m.b, m.n, 9, QNAME, QNAME_LEN, DNS_TYPE_A, 1, keep_public, &calls, out,
                        sizeof(out), info);
    assert_true(n > 0);
    assert_int_equal(calls, 3); /* OPT is not offered to keep() */
    assert_int_equal(info->removed, 1);
    assert_int_equal(info->counts[DNS_SEC_ANSWER], 2);
    assert_int_equal(info->counts[DNS_SEC_ADDITIONAL], 0);
    assert_int_equal(info->min_ttl, 120);
    assert_int_equal(info->n_ttl, 2);

    /* The result is a valid response again, with the same records decompressed. */
    struct dns_resp_info *info2 = malloc(sizeof(*info2));
    uint8_t out2[4096];
    calls = 0;
    int n2 = dns_resp_filter(out, (size_t)n, 9, QNAME, QNAME_LEN, DNS_TYPE_A, 1, keep_public,
                             &calls, out2, sizeof(out2), info2);
    assert_int_equal(n2, n);
    assert_int_equal(info2->removed, 0);
    assert_memory_equal(out, out2, (size_t)n);
    assert_int_equal(dns_get32(out + info->ttl_off[0]), 600);
    assert_int_equal(dns_get32(out + info->ttl_off[1]), 120);
    /* The kept A's owner, expanded. */
    size_t off = info->ttl_off[1] - 4 - 18;
    assert_memory_equal(out + off, "\4edge\7EXAMPLE\3com\0", 18); /* case of the question */
    free(info2);

    /* When only the trailing OPT goes, the prefix is copied verbatim (compression kept). */
    resp_head(&m, 9, 1, 0, 1);
    w16(&m, 0xc00c);
    w16(&m, DNS_TYPE_A);
    w16(&m, 1);
    w32(&m, 30);
    w16(&m, 4);
    wbytes(&m, "\1\2\3\4", 4);
    size_t before_opt = m.n;
    wopt(&m, 1232, false);
    m.b[m.n - 6] = 1; /* extended rcode 1 -> 16 + header rcode */
    n = dns_resp_filter(m.b, m.n, 9, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out, sizeof(out),
                        info);
    assert_int_equal(n, (int)before_opt);
    assert_memory_equal(out + 12, m.b + 12, before_opt - 12);
    assert_int_equal(dns_get16(out + 10), 0);
    assert_int_equal(info->rcode, 16);
    free(info);
}

static void test_resp_filter_negative(void **state)
{
    struct msgw m;
    uint8_t out[4096];
    struct dns_resp_info *info = malloc(sizeof(*info));
    (void)state;

    whdr(&m, 5, DNS_FLAG_QR | DNS_FLAG_RA | 3, 1, 0, 1, 0);
    wname(&m, "www.example.com");
    w16(&m, DNS_TYPE_A);
    w16(&m, 1);
    w16(&m, 0xc000 | 16);
    w16(&m, DNS_TYPE_SOA);
    w16(&m, 1);
    w32(&m, 900);
    size_t rdlen_at = m.n;
    w16(&m, 0);
    size_t rd = m.n;
    wname(&m, "ns.example.com");
    w16(&m, 0xc000 | 16);
    w32(&m, 1);
    w32(&m, 2);
    w32(&m, 3);
    w32(&m, 4);
    w32(&m, 60); /* minimum */
    dns_put16(m.b + rdlen_at, (uint16_t)(m.n - rd));
    int n = dns_resp_filter(m.b, m.n, 5, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                            sizeof(out), info);
    assert_int_equal(n, (int)m.n);
    assert_int_equal(info->rcode, 3);
    assert_true(info->has_soa);
    assert_int_equal(info->neg_ttl, 60);
    /* SOA whose fixed fields are short. */
    dns_put16(m.b + rdlen_at, (uint16_t)(m.n - rd - 1));
    m.n--;
    assert_int_equal(dns_resp_filter(m.b, m.n, 5, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, out,
                                     sizeof(out), info),
                     -EBADMSG);
    free(info);
}

static void test_answer_finalize(void **state)
{
    struct msgw m, qm;
    struct dns_query_info q;
    uint8_t stored[4096], out[4096];
    struct dns_resp_info *info = malloc(sizeof(*info));
    int n, sn;
    (void)state;

    resp_head(&m, 1, 2, 0, 0);
    wrr_a(&m, "www.example.com", 300, 1, 2, 3, 4);
    wrr_a(&m, "www.example.com", 5, 1, 2, 3, 5);
    sn = dns_resp_filter(m.b, m.n, 1, QNAME, QNAME_LEN, DNS_TYPE_A, 1, NULL, NULL, stored,
                         sizeof(stored), info);
    assert_true(sn > 0);

    make_query(&qm, "WWW.example.COM", DNS_TYPE_A, true);
    assert_int_equal(dns_query_parse(qm.b, qm.n, &q), 0);
    n = dns_answer_finalize(stored, (size_t)sn, info->ttl_off, info->n_ttl, 10, qm.b, &q, 4096, out,
                            sizeof(out));
    assert_int_equal(n, sn + DNS_OPT_LEN);
    assert_int_equal(dns_get16(out), 0x1234);
    assert_memory_equal(out + 12, "\3WWW\7example\3COM", QNAME_LEN); /* client's case */
    assert_int_equal(dns_get32(out + info->ttl_off[0]), 290);
    assert_int_equal(dns_get32(out + info->ttl_off[1]), 0);
    assert_int_equal(dns_get16(out + 10), 1);
    assert_int_equal(dns_get16(out + 6), 2);

    /* Too big for the client: truncated, TC set, question only. */
    n = dns_answer_finalize(stored, (size_t)sn, info->ttl_off, info->n_ttl, 0, qm.b, &q, 40, out,
                            sizeof(out));
    assert_int_equal(n, (int)(q.question_end + DNS_OPT_LEN));
    assert_true(dns_get16(out + 2) & DNS_FLAG_TC);
    assert_int_equal(dns_get16(out + 6), 0);

    /* A stored answer for another question is refused. */
    make_query(&qm, "www.example.org", DNS_TYPE_A, false);
    assert_int_equal(dns_query_parse(qm.b, qm.n, &q), 0);
    assert_int_equal(dns_answer_finalize(stored, (size_t)sn, info->ttl_off, info->n_ttl, 0, qm.b,
                                         &q, 4096, out, sizeof(out)),
                     -EINVAL);
    make_query(&qm, "www.example.com", DNS_TYPE_AAAA, false);
    assert_int_equal(dns_query_parse(qm.b, qm.n, &q), 0);
    assert_int_equal(dns_answer_finalize(stored, (size_t)sn, info->ttl_off, info->n_ttl, 0, qm.b,
                                         &q, 4096, out, sizeof(out)),
                     -EINVAL);
    free(info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_parse_ok),     cmocka_unit_test(test_query_parse_bad),
        cmocka_unit_test(test_name_read_pointers), cmocka_unit_test(test_name_read_long_chain),
        cmocka_unit_test(test_name_to_text),       cmocka_unit_test(test_reply_build),
        cmocka_unit_test(test_query_build),        cmocka_unit_test(test_resp_filter_match),
        cmocka_unit_test(test_resp_filter_strip),  cmocka_unit_test(test_resp_filter_negative),
        cmocka_unit_test(test_answer_finalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
