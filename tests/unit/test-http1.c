/* Unit tests for src/proxy/http1.c: head scanning, request/response parsing, targets, chunked
 * framing, head rewriting. Table-driven: every refusal rule has a row that fails if the rule
 * breaks. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/macro.h"
#include "common/str.h"
#include "proxy/http1.h"

/* Copy into an exact-size heap block so ASan sees any read past the input. */
static char *dup_exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, s, len);
    return p;
}

/* NUL anywhere in a head is refused (field value, name, target, method). */
static void test_request_nul(void **state)
{
    static const char nul_value[] = "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    static const char nul_name[] = "GET http://a/ HTTP/1.1\r\nHost: a\r\nX\0: b\r\n\r\n";
    static const char nul_target[] = "GET http://a/\0 HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char nul_host[] = "GET http://a/ HTTP/1.1\r\nHost: a\0.evil.com\r\n\r\n";
    static const struct {
        const char *p;
        size_t len;
    } cases[] = {
        { nul_value, sizeof(nul_value) - 1 },
        { nul_name, sizeof(nul_name) - 1 },
        { nul_target, sizeof(nul_target) - 1 },
        { nul_host, sizeof(nul_host) - 1 },
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct http_request req;
        struct http_error err = { 0, NULL };
        char *p = dup_exact(cases[i].p, cases[i].len);
        assert_int_equal(http_parse_request(p, cases[i].len, &req, &err), -EBADMSG);
        assert_int_equal(err.status, 400);
        free(p);
    }
}

static struct slice S(const char *s) {
    return slice_cstr(s);
}

static void
assert_slice(struct slice s, const char *want)
{
    if (!want) {
        assert_null(s.p);
        return;
    }
    if (s.len != strlen(want) || (s.len && memcmp(s.p, want, s.len) != 0)) {
        print_error("slice '%.*s' != '%s'\n", (int)s.len, s.p ? s.p : "", want);
        fail();
    }
}

/* A string of n copies of c (static buffer, reused). */
static const char *rep(char c, size_t n)
{
    static char b[4][20000];
    static int k;
    char *p = b[k++ & 3];
    assert_true(n < sizeof(b[0]));
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

/* ---- http_head_end ------------------------------------------------------------------------ */

static void test_head_end(void **state)
{
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27 },
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n", 27 }, /* pipelined */
        { "GET / HTTP/1.1\r\nHost: a\r\n\r", 0 },
        { "GET / HTTP/1.1\r\nHost: a\r\n", 0 },
        { "", 0 },
        { "\r\n", 0 },
        { "\r\n\r\n", 0 },                    /* empty lines before a request are skipped */
        { "\r\nGET / HTTP/1.0\r\n\r\n", 20 }, /* one leading CRLF */
        { "\r\n\r\n\r\n", 6 },                /* only two are ignored: the parser refuses it */
        { "GET / HTTP/1.1\n\n", 16 },         /* bare LF ends the scan (parser says 400) */
        { "GET / HTTP/1.1\r\n\n", 17 },
        { "GET / HTTP/1.1\n\r\n", 17 },
        { "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 26 },
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        size_t len = strlen(cases[i].in), scan = 0;
        char *p = dup_exact(cases[i].in, len);
        int r = http_head_end(p, len, &scan);
        if (r != cases[i].want)
            print_error("case %zu: got %d want %d\n", i, r, cases[i].want);
        assert_int_equal(r, cases[i].want);
        free(p);
    }
}

/* Feeding the input one byte at a time gives the same answer, and the cursor only moves
 * forward and always covers everything seen (so nothing is ever scanned twice). */
static void test_head_end_incremental(void **state)
{
    static const char *const heads[] = {
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nBODY",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    };
    (void)state;
    for (size_t k = 0; k < ARRAY_SIZE(heads); k++) {
        size_t len = strlen(heads[k]), whole_scan = 0, scan = 0, last = 0;
        int whole = http_head_end(heads[k], len, &whole_scan), r = 0;
        assert_true(whole > 0);
        for (size_t n = 0; n <= len; n++) {
            char *p = dup_exact(heads[k], n);
            r = http_head_end(p, n, &scan);
            free(p);
            assert_true(scan >= last);
            last = scan;
            if (r != 0)
                break;
            assert_int_equal(scan, n);
        }
        assert_int_equal(r, whole);
    }
}

static void test_head_end_cap(void **state)
{
    size_t scan = 0;
    struct buf b = BUF_INIT(BB_MAX_HTTP_HEAD * 2);
    (void)state;

    /* exactly the cap: accepted */
    assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\nX: "), 0);
    assert_int_equal(buf_append_str(&b, rep('a', BB_MAX_HTTP_HEAD - b.len - 4)), 0);
    assert_int_equal(buf_append_str(&b, "\r\n\r\n"), 0);
    assert_int_equal(b.len, BB_MAX_HTTP_HEAD);
    assert_int_equal(http_head_end(b.p, b.len, &scan), BB_MAX_HTTP_HEAD);

    /* one byte more: refused, whether seen at once or after earlier partial scans */
    buf_reset(&b);
    assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\nX: "), 0);
    assert_int_equal(buf_append_str(&b, rep('a', BB_MAX_HTTP_HEAD - b.len - 3)), 0);
    assert_int_equal(buf_append_str(&b, "\r\n\r\n"), 0);
    scan = 0;
    assert_int_equal(http_head_end(b.p, b.len, &scan), -EMSGSIZE);
    scan = 0;
    assert_int_equal(http_head_end(b.p, 1000, &scan), 0);
    assert_int_equal(scan, 1000);
    assert_int_equal(http_head_end(b.p, BB_MAX_HTTP_HEAD - 1, &scan), 0);
    assert_int_equal(http_head_end(b.p, b.len, &scan), -EMSGSIZE);
    buf_done(&b);
}

/* ---- requests ----------------------------------------------------------------------------- */

struct req_bad {
    const char *in;
    int status;
    int err;
};

static const struct req_bad req_bad_cases[] = {
    /* line endings */
    { "GET http://a/ HTTP/1.1\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\n\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\rHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\n\n", 400, -EBADMSG },
    { "GET / HTTP/1\n\n", 400, -EBADMSG }, /* complete per http_head_end: never "more" */
    { "GET / H\r\n\r\n", 400, -EBADMSG },
    /* obs-fold, including the TE smuggling shape */
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400,
      -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\n Host: a\r\n\r\n", 400, -EBADMSG },
    /* whitespace before the colon */
    { "GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", 400, -EBADMSG },
    /* field names and methods must be tokens */
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nX\x80: b\r\n\r\n", 400, -EBADMSG },
    { "G(T http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { " GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET  http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/  HTTP/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/\tHTTP/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1 \r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "\r\n\r\n\r\n", 400, -EBADMSG },
    /* CTL / NUL in values (HTAB is fine, see the accept table) */
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\x0b\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    /* versions */
    { "GET http://a/ HTTP/2.0\r\nHost: a\r\n\r\n", 505, -ENOTSUP },
    { "GET http://a/ HTTP/1.2\r\nHost: a\r\n\r\n", 505, -ENOTSUP },
    { "GET http://a/ HTTP/0.9\r\nHost: a\r\n\r\n", 505, -ENOTSUP },
    { "GET http://a/ http/1.1\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.10\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/11\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.x\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    /* Host */
    { "GET http://a/ HTTP/1.1\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400, -EBADMSG },
    { "GET http://a/ HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, -EBADMSG },
    /* Content-Length */
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400,
      -EBADMSG },
    /* CL.TE / TE.CL */
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
      "chunked\r\n\r\n",
      400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
      "5\r\n\r\n",
      400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
      "0\r\n\r\n",
      400, -EBADMSG },
    /* Transfer-Encoding (RFC 9112 6.1) */
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n",
      400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400,
      -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400, -EBADMSG },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501, -ENOTSUP },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, -ENOTSUP },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", 501, -ENOTSUP },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, -ENOTSUP },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
      -ENOTSUP },
    /* CONNECT with a body */
    { "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\n", 400, -EBADMSG },
    { "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      -EBADMSG },
};

static void test_request_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(req_bad_cases); i++) {
        const struct req_bad *c = &req_bad_cases[i];
        size_t len = strlen(c->in);
        struct http_request req;
        struct http_error err = { 0, NULL };
        char *p;
        int r;

        p = dup_exact(c->in, len);
        r = http_parse_request(p, len, &req, &err);
        if (r != c->err || err.status != c->status)
            print_error("row %zu: got %d/%d (%s) want %d/%d\n", i, r, err.status,
                        err.msg ? err.msg : "-", c->err, c->status);
        assert_int_equal(r, c->err);
        assert_int_equal(err.status, c->status);
        assert_non_null(err.msg);
        free(p);
    }
}

struct req_ok {
    const char *in;
    const char *method, *target;
    unsigned version;
    enum http_body body;
    uint64_t cl;
    bool keep_alive, expect, is_connect;
    const char *host;
    size_t n_headers;
};

static const struct req_ok req_ok_cases[] = {
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "http://a/", 11, HTTP_BODY_NONE, 0, true,
      false, false, "a", 1 },
    { "GET http://a/ HTTP/1.0\r\n\r\n", "GET", "http://a/", 10, HTTP_BODY_NONE, 0, false, false,
      false, NULL, 0 },
    { "GET http://a/ HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "http://a/", 10,
      HTTP_BODY_NONE, 0, true, false, false, NULL, 1 },
    { "GET http://a/ HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", "GET", "http://a/", 10,
      HTTP_BODY_NONE, 0, true, false, false, NULL, 1 },
    { "GET http://a/ HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "GET", "http://a/", 10,
      HTTP_BODY_NONE, 0, false, false, false, NULL, 1 },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", "GET", "http://a/", 11,
      HTTP_BODY_NONE, 0, false, false, false, "a", 2 },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: Upgrade,close\r\n\r\n",
      "GET", "http://a/", 11, HTTP_BODY_NONE, 0, false, false, false, "a", 3 },
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", "GET", "http://a/", 11,
      HTTP_BODY_NONE, 0, true, false, false, "a", 2 },
    { "POST http://a/x?y HTTP/1.1\r\nHost:a\r\nContent-Length: 0042\r\n\r\n", "POST",
      "http://a/x?y", 11, HTTP_BODY_LENGTH, 42, true, false, false, "a", 2 },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "POST", "http://a/", 11,
      HTTP_BODY_LENGTH, 0, true, false, false, "a", 2 },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length:\t 9223372036854775807 \r\n\r\n",
      "POST", "http://a/", 11, HTTP_BODY_LENGTH, 9223372036854775807ull, true, false, false, "a",
      2 },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "POST",
      "http://a/", 11, HTTP_BODY_CHUNKED, 0, true, false, false, "a", 2 },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED  \r\n\r\n", "POST",
      "http://a/", 11, HTTP_BODY_CHUNKED, 0, true, false, false, "a", 2 },
    { "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked,\r\n\r\n", "POST",
      "http://a/", 11, HTTP_BODY_CHUNKED, 0, true, false, false, "a", 2 },
    { "PUT http://a/ HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
      "PUT", "http://a/", 11, HTTP_BODY_LENGTH, 3, true, true, false, "a", 3 },
    { "PUT http://a/ HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", "PUT", "http://a/", 10,
      HTTP_BODY_NONE, 0, false, false, false, NULL, 1 },
    { "PUT http://a/ HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\n\r\n", "PUT", "http://a/", 11,
      HTTP_BODY_NONE, 0, true, false, false, "a", 2 },
    { "CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n", "CONNECT", "a.com:443", 11,
      HTTP_BODY_NONE, 0, true, false, true, "a.com:443", 1 },
    { "CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\nContent-Length: 0\r\n\r\n", "CONNECT",
      "a.com:443", 11, HTTP_BODY_LENGTH, 0, true, false, true, "a.com:443", 2 },
    { "connect a.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", "connect", "a.com:443", 11, HTTP_BODY_NONE,
      0, true, false, false, "a", 1 }, /* methods are case-sensitive */
    /* values: HTAB, obs-text, empty; OWS trimmed */
    { "GET http://a/ HTTP/1.1\r\nHost: \t a \t\r\nX-A:\tb\tc\r\nX-B: \xc3\xa9\r\nX-C:\r\n\r\n",
      "GET", "http://a/", 11, HTTP_BODY_NONE, 0, true, false, false, "a", 4 },
    /* up to two empty lines before the request line are ignored (RFC 9112 2.2) */
    { "\r\n\r\nGET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "http://a/", 11, HTTP_BODY_NONE,
      0, true, false, false, "a", 1 },
    { "M-._~!#$%&'*+^`| http://a/ HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
      "M-._~!#$%&'*+^`|", "http://a/", 11, HTTP_BODY_NONE, 0, true, false, false, "a", 2 },
};

static void test_request_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(req_ok_cases); i++) {
        const struct req_ok *c = &req_ok_cases[i];
        size_t len = strlen(c->in), scan = 0;
        struct http_request req;
        struct http_error err = { 0, NULL };
        char *p = dup_exact(c->in, len);
        int r = http_parse_request(p, len, &req, &err);

        if (r < 0)
            print_error("row %zu: %d %d %s\n", i, r, err.status, err.msg);
        assert_int_equal(r, (int)len);
        /* http_head_end agrees on where the head ends */
        assert_int_equal(http_head_end(p, len, &scan), r);
        assert_int_equal(req.head_len, len);
        assert_slice(req.method, c->method);
        assert_slice(req.target, c->target);
        assert_int_equal(req.version, c->version);
        assert_int_equal(req.body, c->body);
        if (c->body == HTTP_BODY_LENGTH)
            assert_true(req.content_length == c->cl);
        assert_int_equal(req.keep_alive, c->keep_alive);
        assert_int_equal(req.expect_continue, c->expect);
        assert_int_equal(req.is_connect, c->is_connect);
        assert_slice(req.host, c->host);
        assert_int_equal(req.n_headers, c->n_headers);
        free(p);
    }
}

static void test_request_fields(void **state)
{
    const char *in = "GET http://a/ HTTP/1.1\r\nHost:  a  \r\nX-A:\tb\tc\r\nX-Empty:\r\n\r\n";
    struct http_request req;
    struct http_error err;
    (void)state;

    assert_int_equal(http_parse_request(in, strlen(in), &req, &err), (int)strlen(in));
    assert_int_equal(req.n_headers, 3);
    assert_slice(req.headers[0].name, "Host");
    assert_slice(req.headers[0].value, "a");
    assert_slice(req.headers[1].name, "X-A");
    assert_slice(req.headers[1].value, "b\tc");
    assert_slice(req.headers[2].name, "X-Empty");
    assert_int_equal(req.headers[2].value.len, 0);
}

/* A pipelined stream: each head_len is where the next request starts. */
static void test_request_pipelined(void **state)
{
    const char *stream = "GET http://a/1 HTTP/1.1\r\nHost: a\r\n\r\n"
                         "POST http://b/2 HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz"
                         "GET http://c/3 HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n";
    static const char *const targets[] = { "http://a/1", "http://b/2", "http://c/3" };
    size_t len = strlen(stream), off = 0;
    char *p = dup_exact(stream, len);
    (void)state;

    for (size_t k = 0; k < ARRAY_SIZE(targets); k++) {
        struct http_request req;
        struct http_error err;
        size_t scan = 0;
        int end = http_head_end(p + off, len - off, &scan);
        int r = http_parse_request(p + off, len - off, &req, &err);

        assert_true(end > 0);
        assert_int_equal(r, end);
        assert_int_equal(req.head_len, (size_t)r);
        assert_slice(req.target, targets[k]);
        off += req.head_len;
        if (req.body == HTTP_BODY_LENGTH)
            off += req.content_length;
    }
    assert_int_equal(off, len);
    free(p);
}

/* Every strict prefix of a valid head asks for more input; no output is written. */
static void test_request_partial(void **state)
{
    const char *in = "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n";
    size_t len = strlen(in);
    (void)state;

    for (size_t n = 0; n < len; n++) {
        struct http_request req;
        struct http_error err = { 0, NULL };
        char *p = dup_exact(in, n);
        memset(&req, 0xa5, sizeof(req));
        assert_int_equal(http_parse_request(p, n, &req, &err), 0);
        assert_int_equal(req.head_len, (size_t)0xa5a5a5a5a5a5a5a5ull);
        assert_int_equal(err.status, 0);
        free(p);
    }
}

static char *build_many(size_t n_fields, size_t field_len, size_t target_len, size_t *ret_len)
{
    struct buf b = BUF_INIT(1 << 20);

    assert_int_equal(buf_append_str(&b, "GET http://a/"), 0);
    assert_int_equal(buf_append_str(&b, rep('t', target_len)), 0);
    assert_int_equal(buf_append_str(&b, " HTTP/1.1\r\nHost: a\r\n"), 0);
    for (size_t i = 1; i < n_fields; i++)
        assert_int_equal(buf_printf(&b, "X-%zu: v\r\n", i), 0);
    if (field_len)
        assert_int_equal(buf_printf(&b, "X: %s\r\n", rep('v', field_len - 3)), 0);
    assert_int_equal(buf_append_str(&b, "\r\n"), 0);
    *ret_len = b.len;
    return buf_take(&b);
}

static void test_request_limits(void **state)
{
    static const struct {
        size_t n_fields, field_len, target_len;
        int want_status; /* 0: accepted */
    } cases[] = {
        { BB_MAX_HTTP_HEADERS, 0, 0, 0 },      { BB_MAX_HTTP_HEADERS + 1, 0, 0, 431 },
        { 1, BB_MAX_HTTP_LINE, 0, 0 },         { 1, BB_MAX_HTTP_LINE + 1, 0, 431 },
        { 1, 0, BB_MAX_HTTP_TARGET - 9, 0 }, /* "http://a/" is 9 bytes */
        { 1, 0, BB_MAX_HTTP_TARGET - 8, 414 }, { 1, 0, BB_MAX_HTTP_HEAD, 414 },
        { 1, BB_MAX_HTTP_HEAD, 0, 431 },
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        size_t len;
        char *p = build_many(cases[i].n_fields, cases[i].field_len, cases[i].target_len, &len);
        struct http_request req;
        struct http_error err = { 0, NULL };
        int r = http_parse_request(p, len, &req, &err);

        if (cases[i].want_status == 0) {
            assert_int_equal(r, (int)len);
            assert_int_equal(req.n_headers, cases[i].n_fields + (cases[i].field_len ? 1 : 0));
        } else {
            if (err.status != cases[i].want_status)
                print_error("row %zu: %d %d %s\n", i, r, err.status, err.msg);
            assert_true(r < 0);
            assert_int_equal(err.status, cases[i].want_status);
        }
        free(p);
    }
}

static void test_request_long_method(void **state)
{
    for (size_t mlen = BB_MAX_HTTP_LINE - 12; mlen <= BB_MAX_HTTP_LINE - 8; mlen++) {
        struct buf b = BUF_INIT(1 << 20);
        struct http_request req;
        struct http_error err = { 0, NULL };
        int r;
        (void)state;

        /* method SP "/" SP "HTTP/1.1": without its target the line is mlen + 10 bytes */
        assert_int_equal(buf_printf(&b, "%s / HTTP/1.1\r\nHost: a\r\n\r\n", rep('M', mlen)), 0);
        r = http_parse_request(b.p, b.len, &req, &err);
        if (mlen + 10 <= BB_MAX_HTTP_LINE) {
            assert_int_equal(r, (int)b.len);
        } else {
            assert_int_equal(r, -EMSGSIZE);
            assert_int_equal(err.status, 431);
        }
        buf_done(&b);
    }
}

/* ---- responses ---------------------------------------------------------------------------- */

struct resp_case {
    const char *in;
    const char *method;
    int want; /* > 0: accepted (status code); < 0: errno, with reterr 502 */
    enum http_body body;
    uint64_t cl;
    bool keep_alive;
};

static const struct resp_case resp_cases[] = {
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", 200, HTTP_BODY_LENGTH, 5, true },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 200, HTTP_BODY_CHUNKED, 0,
      true },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "GET", 200, HTTP_BODY_CHUNKED,
      0, true },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", 200, HTTP_BODY_CLOSE, 0, false },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "GET", 200, HTTP_BODY_CLOSE, 0,
      false },
    { "HTTP/1.1 200 OK\r\n\r\n", "GET", 200, HTTP_BODY_CLOSE, 0, false },
    { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", "GET", 200,
      HTTP_BODY_LENGTH, 1, false },
    { "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", 200, HTTP_BODY_LENGTH, 1, false },
    { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", "GET", 200,
      HTTP_BODY_LENGTH, 1, true },
    { "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "HEAD", 200, HTTP_BODY_NONE, 0, true },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", 200, HTTP_BODY_NONE, 0,
      true },
    { "HTTP/1.1 204 No Content\r\n\r\n", "GET", 204, HTTP_BODY_NONE, 0, true },
    { "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", 304, HTTP_BODY_NONE, 0,
      true },
    { "HTTP/1.1 100 Continue\r\n\r\n", "POST", 100, HTTP_BODY_NONE, 0, true },
    { "HTTP/1.1 101 Switching\r\n\r\n", "GET", 101, HTTP_BODY_NONE, 0, true },
    { "HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT", 200, HTTP_BODY_NONE, 0, true },
    { "HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", "CONNECT", 407, HTTP_BODY_LENGTH, 3, true },
    { "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", 200, HTTP_BODY_LENGTH, 0, true },
    { "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET", 200, HTTP_BODY_LENGTH, 0, true },
    { "HTTP/1.1 599 x\xff y\r\nContent-Length: 0\r\n\r\n", "GET", 599, HTTP_BODY_LENGTH, 0, true },
    /* refused: 502 */
    { .in = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
      .method = "GET",
      .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 204 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      .method = "GET",
      .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      .method = "GET",
      .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
      .method = "GET",
      .want = -EBADMSG },
    { .in = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      .method = "GET",
      .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;a\r\n\r\n",
      .method = "GET",
      .want = -EBADMSG },
    { .in = "HTTP/2.0 200 OK\r\n\r\n", .method = "GET", .want = -ENOTSUP },
    { .in = "HTTP/1.1 099 OK\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 600 OK\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 20 OK\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 2000 OK\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1  200 OK\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200 O\x01K\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", .method = "GET", .want = -EBADMSG },
    { .in = "http/1.1 200 OK\r\n\r\n", .method = "GET", .want = -EBADMSG },
    /* complete per http_head_end: refused, never "need more" */
    { .in = "HTTP/1.1 200 OK\n\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1 200\n\n", .method = "GET", .want = -EBADMSG },
    { .in = "HTTP/1.1\n\n", .method = "GET", .want = -EBADMSG },
};

static void test_response(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(resp_cases); i++) {
        const struct resp_case *c = &resp_cases[i];
        size_t len = strlen(c->in);
        struct http_response resp;
        struct http_error err = { 0, NULL };
        char *p = dup_exact(c->in, len);
        int r = http_parse_response(p, len, S(c->method), &resp, &err);

        if (c->want > 0) {
            if (r != (int)len)
                print_error("row %zu: %d %d %s\n", i, r, err.status, err.msg);
            assert_int_equal(r, (int)len);
            assert_int_equal(resp.head_len, len);
            assert_int_equal(resp.status, (unsigned)c->want);
            assert_int_equal(resp.body, c->body);
            if (c->body == HTTP_BODY_LENGTH)
                assert_true(resp.content_length == c->cl);
            assert_int_equal(resp.keep_alive, c->keep_alive);
        } else {
            if (r != c->want)
                print_error("row %zu: got %d want %d\n", i, r, c->want);
            assert_int_equal(r, c->want);
            assert_int_equal(err.status, 502);
            assert_non_null(err.msg);
        }
        free(p);
    }
}

static void test_response_partial(void **state)
{
    const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n";
    size_t len = strlen(in);
    (void)state;
    for (size_t n = 0; n < len; n++) {
        struct http_response resp;
        struct http_error err = { 0, NULL };
        char *p = dup_exact(in, n);
        assert_int_equal(http_parse_response(p, n, S("GET"), &resp, &err), 0);
        free(p);
    }
}

/* ---- targets and Host --------------------------------------------------------------------- */

struct target_case {
    const char *in;
    bool is_connect;
    int status; /* 0: accepted */
    const char *host;
    uint16_t port;
    bool port_explicit;
    const char *path;
};

static const struct target_case target_cases[] = {
    { "http://a.com/", false, 0, "a.com", 80, false, "/" },
    { "http://a.com", false, 0, "a.com", 80, false, "/" },
    { "HTTP://A.com:8080/x/y?q=1&r", false, 0, "A.com", 8080, true, "/x/y?q=1&r" },
    { "http://a.com:80/", false, 0, "a.com", 80, true, "/" },
    { "http://a.com?q", false, 0, "a.com", 80, false, "?q" },
    { "http://a.com/@evil.com", false, 0, "a.com", 80, false, "/@evil.com" },
    { "http://[::1]:8080/p", false, 0, "[::1]", 8080, true, "/p" },
    { "http://[::ffff:1.2.3.4]/", false, 0, "[::ffff:1.2.3.4]", 80, false, "/" },
    { "http://a_b-c.d.com./", false, 0, "a_b-c.d.com.", 80, false, "/" },
    { "http://2130706433/", false, 0, "2130706433", 80, false, "/" }, /* host_parse's call */
    { "http://\xc3\xa9.com/", false, 0, "\xc3\xa9.com", 80, false, "/" },
    { "a.com:443", true, 0, "a.com", 443, true, NULL },
    { "[::1]:443", true, 0, "[::1]", 443, true, NULL },
    { "[2001:db8::1]:65535", true, 0, "[2001:db8::1]", 65535, true, NULL },
    { "1.2.3.4:1", true, 0, "1.2.3.4", 1, true, NULL },
    /* authority tricks */
    { .in = "http://allowed.com@evil.com/", .is_connect = false, .status = 400 },
    { .in = "http://@evil.com/", .is_connect = false, .status = 400 },
    { .in = "http://evil.com#@allowed.com/", .is_connect = false, .status = 400 },
    { .in = "http://evil.com/#frag", .is_connect = false, .status = 400 },
    { .in = "http://evil.com\\@allowed.com/", .is_connect = false, .status = 400 },
    { .in = "http://evil.com\\.allowed.com/", .is_connect = false, .status = 400 },
    { .in = "http://[::1%25eth0]/", .is_connect = false, .status = 400 },
    { .in = "http://[::1%eth0]/", .is_connect = false, .status = 400 },
    { .in = "http://a%2ecom/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:80x/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:99999/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:65536/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:0/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:-1/", .is_connect = false, .status = 400 },
    { .in = "http://a.com:+80/", .is_connect = false, .status = 400 },
    { .in = "http://a.com: 80/", .is_connect = false, .status = 400 },
    { .in = "http:///", .is_connect = false, .status = 400 },
    { .in = "http://", .is_connect = false, .status = 400 },
    { .in = "http://:80/", .is_connect = false, .status = 400 },
    { .in = "http://[]/", .is_connect = false, .status = 400 },
    { .in = "http://[::1]x/", .is_connect = false, .status = 400 },
    { .in = "http://[::1/", .is_connect = false, .status = 400 },
    { .in = "http://[v1.x]/", .is_connect = false, .status = 400 },
    { .in = "http://[::1]]/", .is_connect = false, .status = 400 },
    { .in = "http://a.com;b/", .is_connect = false, .status = 400 },
    { .in = "http://a.com!/", .is_connect = false, .status = 400 },
    { .in = "http://a com/", .is_connect = false, .status = 400 },
    { .in = "http://a\x01.com/", .is_connect = false, .status = 400 },
    { .in = "https://a.com/", .is_connect = false, .status = 400 },
    { .in = "ftp://a.com/", .is_connect = false, .status = 400 },
    { .in = "http:/a.com/", .is_connect = false, .status = 400 },
    { .in = "//a.com/", .is_connect = false, .status = 400 },
    { .in = "/index.html", .is_connect = false, .status = 400 },
    { .in = "*", .is_connect = false, .status = 400 },
    { .in = "a.com:443", .is_connect = false, .status = 400 },
    { .in = "", .is_connect = false, .status = 400 },
    /* CONNECT */
    { .in = "a.com", .is_connect = true, .status = 400 },
    { .in = "a.com:", .is_connect = true, .status = 400 },
    { .in = "a.com:0", .is_connect = true, .status = 400 },
    { .in = "a.com:65536", .is_connect = true, .status = 400 },
    { .in = "a.com:443x", .is_connect = true, .status = 400 },
    { .in = "a.com:443/", .is_connect = true, .status = 400 },
    { .in = ":443", .is_connect = true, .status = 400 },
    { .in = "[::1]", .is_connect = true, .status = 400 },
    { .in = "::1:443", .is_connect = true, .status = 400 },
    { .in = "[::1%25lo]:443", .is_connect = true, .status = 400 },
    { .in = "allowed.com@evil.com:443", .is_connect = true, .status = 400 },
    { .in = "evil.com#@allowed.com:443", .is_connect = true, .status = 400 },
    { .in = "evil.com:443#allowed.com:443", .is_connect = true, .status = 400 },
    { .in = "http://a.com:443/", .is_connect = true, .status = 400 },
};

static void test_target(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(target_cases); i++) {
        const struct target_case *c = &target_cases[i];
        size_t len = strlen(c->in);
        char *p = dup_exact(c->in, len);
        struct http_target t;
        struct http_error err = { 0, NULL };
        int r = http_parse_target(slice_make(p, len), c->is_connect, &t, &err);

        if ((r == 0) != (c->status == 0))
            print_error("row %zu '%s': got %d (%s)\n", i, c->in, r, err.msg ? err.msg : "-");
        if (c->status == 0) {
            assert_int_equal(r, 0);
            assert_slice(t.host, c->host);
            assert_int_equal(t.port, c->port);
            assert_int_equal(t.port_explicit, c->port_explicit);
            assert_int_equal(t.form, c->is_connect ? HTTP_TARGET_AUTHORITY : HTTP_TARGET_ABSOLUTE);
            if (c->path)
                assert_slice(t.path, c->path);
            else
                assert_int_equal(t.path.len, 0);
        } else {
            assert_true(r < 0);
            assert_int_equal(err.status, c->status);
        }
        free(p);
    }
}

static void test_target_long(void **state)
{
    struct http_target t;
    struct http_error err = { 0, NULL };
    struct buf b = BUF_INIT(BB_MAX_HTTP_TARGET * 2);
    (void)state;

    assert_int_equal(buf_append_str(&b, "http://a/"), 0);
    assert_int_equal(buf_append_str(&b, rep('x', BB_MAX_HTTP_TARGET - 9)), 0);
    assert_int_equal(http_parse_target(slice_make(b.p, b.len), false, &t, &err), 0);
    assert_int_equal(buf_append_str(&b, "x"), 0);
    assert_int_equal(http_parse_target(slice_make(b.p, b.len), false, &t, &err), -EMSGSIZE);
    assert_int_equal(err.status, 414);
    buf_done(&b);
}

static void test_host_header(void **state)
{
    static const struct {
        const char *in;
        int r;
        const char *host;
        uint16_t port;
    } cases[] = {
        { "a.com", 0, "a.com", 80 },          { "a.com:8080", 0, "a.com", 8080 },
        { "[::1]", 0, "[::1]", 80 },          { "[::1]:443", 0, "[::1]", 443 },
        { .in = "", .r = -EBADMSG },          { .in = "a.com:", .r = -EBADMSG },
        { .in = "a.com:0", .r = -EBADMSG },   { .in = "a.com:99999", .r = -EBADMSG },
        { .in = "a.com:80x", .r = -EBADMSG }, { .in = "u@a.com", .r = -EBADMSG },
        { .in = "a.com#b", .r = -EBADMSG },   { .in = "a%2e.com", .r = -EBADMSG },
        { .in = "a\\b.com", .r = -EBADMSG },  { .in = "[::1%25eth0]", .r = -EBADMSG },
        { .in = "a.com/x", .r = -EBADMSG },   { .in = "a.com b", .r = -EBADMSG },
        { .in = ":80", .r = -EBADMSG },
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct slice h = SLICE_NULL;
        uint16_t port = 1;
        size_t len = strlen(cases[i].in);
        char *p = dup_exact(cases[i].in, len);
        int r = http_parse_host_header(slice_make(p, len), 80, &h, &port);

        if (r != cases[i].r)
            print_error("row %zu '%s': got %d\n", i, cases[i].in, r);
        assert_int_equal(r, cases[i].r);
        if (r == 0) {
            assert_slice(h, cases[i].host);
            assert_int_equal(port, cases[i].port);
        } else {
            assert_null(h.p); /* outputs untouched on failure */
            assert_int_equal(port, 1);
        }
        free(p);
    }
}

/* ---- chunked ------------------------------------------------------------------------------ */

struct chunk_case {
    const char *in;
    int64_t body_len; /* bytes of the body in `in` (the rest is what follows); -1: malformed */
    bool complete;    /* the body ends inside `in` */
};

static const struct chunk_case chunk_cases[] = {
    { "0\r\n\r\n", 5, true },
    { "5\r\nhello\r\n0\r\n\r\n", 15, true },
    { "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 15, true },
    { "A\r\n0123456789\r\n0\r\n\r\nxyz", 20, true },
    { "a\r\n0123456789\r\n00000\r\n\r\n", 24, true },
    { "0005\r\nhello\r\n0\r\n\r\n", 18, true },
    { "5;ext=1;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n", 34, true },
    { "5 ;ext\r\nhello\r\n0\r\n\r\n", 20, true },
    { "5\t; ext\r\nhello\r\n0\r\n\r\n", 21, true },
    { "5\r\nhe\r\nl\r\n0\r\nTrailer-A: 1\r\nB:\r\n\r\n", 33, true },
    { "1\r\n\n\r\n0\r\n\r\n", 11, true },  /* data may hold anything */
    { "7fffffffffffffff\r\n", 18, false }, /* needs more */
    { "5\r\nhel", 6, false },              /* needs more */
    /* malformed */
    { .in = "ffffffffffffffffff\r\n", .body_len = -1 }, /* size overflow */
    { .in = "8000000000000000\r\n", .body_len = -1 },   /* > INT64_MAX */
    { .in = "\r\n", .body_len = -1 },
    { .in = "x\r\n", .body_len = -1 },
    { .in = "-5\r\n", .body_len = -1 },
    { .in = "+5\r\n", .body_len = -1 },
    { .in = "0x5\r\n", .body_len = -1 },
    { .in = " 5\r\nhello\r\n0\r\n\r\n", .body_len = -1 },
    { .in = "5 \r\nhello\r\n0\r\n\r\n", .body_len = -1 },
    { .in = "5\nhello\r\n0\r\n\r\n", .body_len = -1 },    /* bare LF after size */
    { .in = "5\rhello\r\n0\r\n\r\n", .body_len = -1 },    /* bare CR after size */
    { .in = "5\r\nhelloX\r\n0\r\n\r\n", .body_len = -1 }, /* missing CRLF after data */
    { .in = "5\r\nhello\n0\r\n\r\n", .body_len = -1 },    /* bare LF after data */
    { .in = "5\r\nhello\r0\r\n\r\n", .body_len = -1 },
    { .in = "5\r\nhello\n\n0\r\n\r\n", .body_len = -1 },
    { .in = "5\r\nhelloX\n0\r\n\r\n", .body_len = -1 },
    { .in = "5\r\nhello\r\n0\r\n\n", .body_len = -1 }, /* bare LF at the end */
    { .in = "5\r\nhello\r\n0\n\r\n", .body_len = -1 },
    { .in = "0\r\nX: 1\n\r\n", .body_len = -1 },         /* bare LF in a trailer */
    { .in = "0\r\nX: 1\r\n y\r\n\r\n", .body_len = -1 }, /* obs-fold in trailers */
    { .in = "0\r\nX : 1\r\n\r\n", .body_len = -1 },
    { .in = "0\r\nX: \x01\r\n\r\n", .body_len = -1 },
    { .in = "0\r\n:1\r\n\r\n", .body_len = -1 },
    { .in = "0;a\x01\r\n\r\n", .body_len = -1 }, /* CTL in an extension */
    { .in = "0\r\n\rX", .body_len = -1 },
};

/* Feeds in[0..len) split at the given points; returns the body length or -1. */
static int64_t chunk_run(const char *in, size_t len, const size_t *cuts, size_t n_cuts,
                         bool *ret_done)
{
    struct http_chunked c;
    size_t prev = 0;
    int64_t total = 0;
    bool done = false;

    http_chunked_init(&c);
    for (size_t k = 0; k <= n_cuts; k++) {
        size_t end = k < n_cuts ? cuts[k] : len;
        char *p = dup_exact(in + prev, end - prev);
        int64_t r = http_chunked_feed(&c, p, end - prev, &done);
        free(p);
        if (r < 0)
            return -1;
        assert_true(r <= (int64_t)(end - prev));
        total += r;
        if (done)
            break;
        assert_int_equal(r, (int64_t)(end - prev));
        prev = end;
    }
    *ret_done = done;
    return total;
}

static void test_chunked(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(chunk_cases); i++) {
        const struct chunk_case *c = &chunk_cases[i];
        size_t len = strlen(c->in);
        bool done = false;
        int64_t whole = chunk_run(c->in, len, NULL, 0, &done);
        bool whole_done = done;

        if (whole != c->body_len)
            print_error("row %zu: got %" PRId64 " want %" PRId64 "\n", i, whole, c->body_len);
        assert_true(whole == c->body_len);
        /* complete bodies say so; the "needs more" rows do not */
        if (whole >= 0)
            assert_int_equal(whole_done, c->complete);

        /* every single split point, then every pair of split points */
        for (size_t a = 0; a <= len; a++) {
            size_t cut1[1] = { a };
            assert_true(chunk_run(c->in, len, cut1, 1, &done) == whole);
            for (size_t b = a; b <= len; b++) {
                size_t cut2[2] = { a, b };
                assert_true(chunk_run(c->in, len, cut2, 2, &done) == whole);
                if (whole >= 0)
                    assert_int_equal(done, whole_done);
            }
        }
        /* byte by byte */
        size_t cuts[256];
        assert_true(len < ARRAY_SIZE(cuts));
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        assert_true(chunk_run(c->in, len, cuts, len ? len - 1 : 0, &done) == whole);
    }
}

static void test_chunked_after_done(void **state)
{
    struct http_chunked c;
    bool done = false;
    (void)state;

    http_chunked_init(&c);
    assert_true(http_chunked_feed(&c, "0\r\n\r\nabc", 8, &done) == 5);
    assert_true(done);
    done = false;
    assert_true(http_chunked_feed(&c, "abc", 3, &done) == 0);
    assert_true(done);
    /* errors are sticky */
    http_chunked_init(&c);
    assert_true(http_chunked_feed(&c, "g", 1, &done) == -EBADMSG);
    assert_true(http_chunked_feed(&c, "0\r\n\r\n", 5, &done) == -EBADMSG);
}

static void test_chunked_limits(void **state)
{
    struct http_chunked c;
    bool done = false;
    struct buf b = BUF_INIT(1 << 20);
    (void)state;

    /* a size line of exactly BB_MAX_CHUNK_LINE bytes (leading zeros) is fine, one more is not */
    assert_int_equal(buf_append_str(&b, rep('0', BB_MAX_CHUNK_LINE - 1)), 0);
    assert_int_equal(buf_append_str(&b, "1\r\nx\r\n0\r\n\r\n"), 0);
    http_chunked_init(&c);
    assert_true(http_chunked_feed(&c, b.p, b.len, &done) == (int64_t)b.len);
    assert_true(done);
    buf_reset(&b);
    assert_int_equal(buf_append_str(&b, rep('0', BB_MAX_CHUNK_LINE)), 0);
    assert_int_equal(buf_append_str(&b, "1\r\nx\r\n0\r\n\r\n"), 0);
    http_chunked_init(&c);
    assert_true(http_chunked_feed(&c, b.p, b.len, &done) == -EBADMSG);

    /* too many trailer fields */
    for (size_t n = BB_MAX_HTTP_HEADERS; n <= BB_MAX_HTTP_HEADERS + 1; n++) {
        buf_reset(&b);
        assert_int_equal(buf_append_str(&b, "0\r\n"), 0);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(buf_append_str(&b, "T: v\r\n"), 0);
        assert_int_equal(buf_append_str(&b, "\r\n"), 0);
        http_chunked_init(&c);
        int64_t r = http_chunked_feed(&c, b.p, b.len, &done);
        assert_true(n == BB_MAX_HTTP_HEADERS ? r == (int64_t)b.len : r == -EBADMSG);
    }
    /* a big chunk is counted, not buffered */
    http_chunked_init(&c);
    done = true;
    assert_true(http_chunked_feed(&c, "100000\r\n", 8, &done) == 8);
    assert_false(done);
    for (int k = 0; k < 64; k++) {
        assert_true(http_chunked_feed(&c, rep('d', 16384), 16384, &done) == 16384);
        assert_false(done);
    }
    assert_true(http_chunked_feed(&c, "\r\n0\r\n\r\n", 7, &done) == 7);
    assert_true(done);
    buf_done(&b);
}

/* ---- builders ----------------------------------------------------------------------------- */

static void build_req(const char *in, const char *host_text, const char *want)
{
    size_t len = strlen(in);
    char *p = dup_exact(in, len);
    struct http_request req;
    struct http_target t;
    struct http_error err = { 0, NULL };
    struct buf out = BUF_INIT(BB_MAX_HTTP_HEAD + 1024);

    assert_int_equal(http_parse_request(p, len, &req, &err), (int)len);
    assert_int_equal(http_parse_target(req.target, req.is_connect, &t, &err), 0);
    assert_int_equal(http_build_upstream_request(&req, &t, host_text, &out), 0);
    if (strcmp(buf_str(&out), want) != 0)
        print_error("got:\n%s\nwant:\n%s\n", buf_str(&out), want);
    assert_string_equal(buf_str(&out), want);
    /* what we send must itself parse as a valid origin-form request */
    assert_int_equal(http_parse_request(out.p, out.len, &req, &err), (int)out.len);
    buf_done(&out);
    free(p);
}

static void test_build_request(void **state)
{
    (void)state;
    build_req("GET http://a.com/x?y HTTP/1.1\r\nHost: a.com\r\nAccept: */*\r\n\r\n", "a.com",
              "GET /x?y HTTP/1.1\r\nHost: a.com\r\nAccept: */*\r\n\r\n");
    /* Host replaced by the target's host (the client's Host is ignored, RFC 9112 3.2.2);
     * version always 1.1; port shown when not 80 */
    build_req("GET http://A.com:8080 HTTP/1.0\r\nHost: evil.com\r\nX:  v  \r\n\r\n", "a.com",
              "GET / HTTP/1.1\r\nHost: a.com:8080\r\nX: v\r\n\r\n");
    build_req("GET http://a.com:80/ HTTP/1.1\r\nHost: a.com\r\n\r\n", "a.com",
              "GET / HTTP/1.1\r\nHost: a.com\r\n\r\n");
    build_req("GET http://a.com?q=1 HTTP/1.1\r\nHost: a.com\r\n\r\n", "a.com",
              "GET /?q=1 HTTP/1.1\r\nHost: a.com\r\n\r\n");
    /* IPv6 gets brackets */
    build_req("GET http://[::1]:8080/ HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "::1",
              "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    build_req("GET http://[::1]/ HTTP/1.1\r\nHost: [::1]\r\n\r\n", "::1",
              "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n");
    /* hop-by-hop fields go, including every Proxy-Authorization and fields named in
     * Connection; Connection cannot remove the framing fields */
    build_req("POST http://a.com/p HTTP/1.1\r\n"
              "Host: a.com\r\n"
              "Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\n"
              "Connection: keep-alive, X-Drop, Content-Length, Transfer-Encoding, Host\r\n"
              "Keep-Alive: timeout=5\r\n"
              "Proxy-Connection: keep-alive\r\n"
              "TE: trailers\r\n"
              "Trailer: X-T\r\n"
              "Upgrade: websocket\r\n"
              "X-Drop: 1\r\n"
              "x-drop: 2\r\n"
              "Proxy-Authenticate: Basic\r\n"
              "PROXY-AUTHORIZATION: Bearer sk-secret\r\n"
              "Connection: x-also\r\n"
              "X-Also: 3\r\n"
              "X-Keep: 4\r\n"
              "Content-Length: 007\r\n"
              "Authorization: Bearer upstream-token\r\n"
              "\r\n",
              "a.com",
              "POST /p HTTP/1.1\r\n"
              "Host: a.com\r\n"
              "X-Keep: 4\r\n"
              "Content-Length: 7\r\n"
              "Authorization: Bearer upstream-token\r\n"
              "\r\n");
    /* Transfer-Encoding is sent in canonical form, once */
    build_req("POST http://a.com/ HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: , CHUNKED\t\r\n"
              "X: y\r\n\r\n",
              "a.com",
              "POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n");
}

static void test_build_request_never_forwards_proxy_auth(void **state)
{
    static const char *const names[] = { "Proxy-Authorization", "proxy-authorization",
                                         "PROXY-AUTHORIZATION", "Proxy-AuthoriZation" };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        struct buf in = BUF_INIT(4096), out = BUF_INIT(4096);
        struct http_request req;
        struct http_target t;
        struct http_error err;

        assert_int_equal(buf_printf(&in,
                                    "GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\n%s: Basic "
                                    "U0VDUkVU\r\nX: 1\r\n%s:U0VDUkVU2\r\n\r\n",
                                    names[i], names[i]),
                         0);
        assert_true(http_parse_request(in.p, in.len, &req, &err) > 0);
        assert_int_equal(http_parse_target(req.target, false, &t, &err), 0);
        assert_int_equal(http_build_upstream_request(&req, &t, "a.com", &out), 0);
        assert_null(strstr(out.p, "U0VDUkVU"));
        assert_null(strcasestr(out.p, "proxy-authorization"));
        assert_non_null(strstr(out.p, "X: 1\r\n"));
        buf_done(&in);
        buf_done(&out);
    }
}

static void test_build_request_errors(void **state)
{
    const char *in = "GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\nX: 0123456789\r\n\r\n";
    struct http_request req;
    struct http_target t;
    struct http_error err;
    struct buf out = BUF_INIT(20);
    (void)state;

    assert_true(http_parse_request(in, strlen(in), &req, &err) > 0);
    assert_int_equal(http_parse_target(req.target, false, &t, &err), 0);
    assert_int_equal(http_build_upstream_request(&req, &t, "a.com", &out), -E2BIG);
    out.max = 4096;
    assert_int_equal(http_build_upstream_request(&req, &t, "a.com\r\nX-Injected: 1", &out),
                     -EINVAL);
    assert_int_equal(http_build_upstream_request(&req, &t, "", &out), -EINVAL);
    buf_done(&out);
}

/* The builders never produce a head that our own parser (with the same caps) would refuse. */
static void test_build_field_cap(void **state)
{
    struct buf in = BUF_INIT(1 << 16), out = BUF_INIT(BB_MAX_HTTP_HEAD);
    struct http_request req;
    struct http_response resp;
    struct http_target t;
    struct http_error err;
    (void)state;

    /* HTTP/1.0 without Host, 100 fields: adding Host would make 101 */
    assert_int_equal(buf_append_str(&in, "GET http://a.com/ HTTP/1.0\r\n"), 0);
    for (int i = 0; i < BB_MAX_HTTP_HEADERS; i++)
        assert_int_equal(buf_printf(&in, "X-%d: v\r\n", i), 0);
    assert_int_equal(buf_append_str(&in, "\r\n"), 0);
    assert_int_equal(http_parse_request(in.p, in.len, &req, &err), (int)in.len);
    assert_int_equal(http_parse_target(req.target, false, &t, &err), 0);
    assert_int_equal(http_build_upstream_request(&req, &t, "a.com", &out), -E2BIG);
    /* 99 fields: fine */
    req.n_headers--;
    assert_int_equal(http_build_upstream_request(&req, &t, "a.com", &out), 0);
    assert_int_equal(http_parse_request(out.p, out.len, &req, &err), (int)out.len);
    assert_int_equal(req.n_headers, BB_MAX_HTTP_HEADERS);

    /* a response with 100 fields cannot also get "Connection: close" */
    buf_reset(&in);
    buf_reset(&out);
    assert_int_equal(buf_append_str(&in, "HTTP/1.1 200 OK\r\n"), 0);
    for (int i = 0; i < BB_MAX_HTTP_HEADERS; i++)
        assert_int_equal(buf_printf(&in, "X-%d: v\r\n", i), 0);
    assert_int_equal(buf_append_str(&in, "\r\n"), 0);
    assert_int_equal(http_parse_response(in.p, in.len, S("GET"), &resp, &err), (int)in.len);
    assert_int_equal(http_build_client_response(&resp, in.p, false, &out), -E2BIG);
    assert_int_equal(http_build_client_response(&resp, in.p, true, &out), 0);
    buf_done(&in);
    buf_done(&out);
}

static void build_resp(const char *in, const char *method, bool keep, const char *want)
{
    size_t len = strlen(in);
    char *p = dup_exact(in, len);
    struct http_response resp;
    struct http_error err = { 0, NULL };
    struct buf out = BUF_INIT(BB_MAX_HTTP_HEAD + 1024);

    assert_int_equal(http_parse_response(p, len, S(method), &resp, &err), (int)len);
    assert_int_equal(http_build_client_response(&resp, p, keep, &out), 0);
    if (strcmp(buf_str(&out), want) != 0)
        print_error("got:\n%s\nwant:\n%s\n", buf_str(&out), want);
    assert_string_equal(buf_str(&out), want);
    assert_int_equal(http_parse_response(out.p, out.len, S(method), &resp, &err), (int)out.len);
    buf_done(&out);
    free(p);
}

static void test_build_response(void **state)
{
    (void)state;
    build_resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", true,
               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    build_resp("HTTP/1.0 404 Not  Found \r\nContent-Length: 2\r\n\r\n", "GET", false,
               "HTTP/1.1 404 Not  Found \r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
    build_resp("HTTP/1.1 204\r\n\r\n", "GET", true, "HTTP/1.1 204\r\n\r\n");
    build_resp("HTTP/1.1 200 OK\r\n"
               "Connection: close, X-Hop, Transfer-Encoding\r\n"
               "Keep-Alive: timeout=5\r\n"
               "Proxy-Authenticate: Basic realm=x\r\n"
               "Proxy-Connection: close\r\n"
               "Trailer: X-T\r\n"
               "Upgrade: h2c\r\n"
               "TE: trailers\r\n"
               "X-Hop: 1\r\n"
               "Set-Cookie: a=1\r\n"
               "Set-Cookie: b=2\r\n"
               "Transfer-Encoding: chunked\r\n"
               "\r\n",
               "GET", false,
               "HTTP/1.1 200 OK\r\n"
               "Set-Cookie: a=1\r\n"
               "Set-Cookie: b=2\r\n"
               "Transfer-Encoding: chunked\r\n"
               "Connection: close\r\n"
               "\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_end),
        cmocka_unit_test(test_head_end_incremental),
        cmocka_unit_test(test_head_end_cap),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_request_accepted),
        cmocka_unit_test(test_request_nul),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_request_pipelined),
        cmocka_unit_test(test_request_partial),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_request_long_method),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_response_partial),
        cmocka_unit_test(test_target),
        cmocka_unit_test(test_target_long),
        cmocka_unit_test(test_host_header),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_chunked_after_done),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_build_request),
        cmocka_unit_test(test_build_request_never_forwards_proxy_auth),
        cmocka_unit_test(test_build_request_errors),
        cmocka_unit_test(test_build_response),
        cmocka_unit_test(test_build_field_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
