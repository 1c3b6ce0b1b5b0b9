/* Unit tests for src/proxy/cred.c: the credential wire format, where a placeholder may be, the
 * substitution, and the streaming body search (matches across feeds). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "common/buf.h"
#include "common/macro.h"
#include "proxy/cred.h"
#include "proxy/http1.h"

#define PH "bb-cred-api-0123456789abcdef0123456789abcdef"
#define PH2 "bb-cred-npm-00112233445566778899aabbccddeeff"
/* base64("x-access-token:" PH2), base64(PH2 ":" PH2), base64(PH2 ":x") without padding, and
 * base64("x-access-token:npmREAL") */
#define B_PH2 "eC1hY2Nlc3MtdG9rZW46YmItY3JlZC1ucG0tMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY="
#define B_PH2_TWICE                                                                                \
    "YmItY3JlZC1ucG0tMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY6YmItY3JlZC1ucG0tMDAxMTIyMzM0NDU1" \
    "NjY3Nzg4OTlhYWJiY2NkZGVlZmY="
#define B_PH2_USER "YmItY3JlZC1ucG0tMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmY6eA"
#define B_REAL "eC1hY2Nlc3MtdG9rZW46bnBtUkVBTA=="

static struct cred_store *two(void)
{
    struct buf w = BUF_INIT(CRED_WIRE_MAX);
    struct cred_store *s = NULL;
    const char *err = NULL;

    assert_int_equal(
        cred_wire_append(&w, "api", "api.example.com", 443, "x-api-key", PH, "sk-REAL secret"), 0);
    assert_int_equal(
        cred_wire_append(&w, "npm", "registry.example.com", 8080, "authorization", PH2, "npmREAL"),
        0);
    assert_int_equal(cred_store_decode(w.p, w.len, &s, &err), 0);
    buf_done(&w);
    assert_int_equal(cred_store_count(s), 2);
    return s;
}

static void test_wire_refusals(void **state)
{
    static const char *const bad[] = {
        "api api.example.com 443 x-api-key " PH " SECRETV", /* no LF */
        "api api.example.com 443 x-api-key " PH "\n",       /* no value */
        "API api.example.com 443 x-api-key " PH " SECRETV\n",
        "api Api.example.com 443 x-api-key " PH " SECRETV\n",
        "api api.example.com 0 x-api-key " PH " SECRETV\n",
        "api api.example.com 65536 x-api-key " PH " SECRETV\n",
        "api api.example.com 443 host " PH " SECRETV\n",
        "api api.example.com 443 content-length " PH " SECRETV\n",
        "api api.example.com 443 x:y " PH " SECRETV\n",
        "api api.example.com 443 x-api-key bb-cred-other-0123456789abcdef SECRETV\n",
        "api api.example.com 443 x-api-key bb-cred-api-0123 SECRETV\n",
        "api api.example.com 443 x-api-key " PH " SECRETV\r\n",
        "api api.example.com 443 x-api-key " PH " SECRETV \n",
        "api api.example.com 443 x-api-key " PH " a\x01"
        "b\n",
        "api *.example.com 443 x-api-key " PH " SECRETV\n",
        "api api.example.com 443 x-api-key " PH " SECRETV\napi api.example.com 443 x-api-key " PH
        " SECRETW\n",
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct cred_store *s = NULL;
        const char *err = NULL;
        assert_int_equal(cred_store_decode(bad[i], strlen(bad[i]), &s, &err), -EINVAL);
        assert_non_null(err);
        /* the message never carries the input */
        assert_null(strstr(err, "SECRET"));
    }
}

static int parse(const char *text, struct http_request *req)
{
    struct http_error e;
    return http_parse_request(text, strlen(text), req, &e);
}

static void test_check_head(void **state)
{
    static const struct {
        const char *req;
        const char *host;
        uint16_t port;
        int want; /* 0 ok, -EPERM misuse */
        size_t nsubs;
    } cases[] = {
        { "GET http://api.example.com:443/ HTTP/1.0\r\nX-Api-Key: " PH "\r\n\r\n",
          "api.example.com", 443, 0, 1 },
        { "GET http://registry.example.com:8080/ HTTP/1.0\r\nAuthorization: Bearer " PH2 "\r\n\r\n",
          "registry.example.com", 8080, 0, 1 },
        /* no placeholder: nothing to do */
        { "GET http://other.example/ HTTP/1.0\r\nX-Api-Key: hello\r\n\r\n", "other.example", 80, 0,
          0 },
        /* another host, another port */
        { "GET http://other.example/ HTTP/1.0\r\nX-Api-Key: " PH "\r\n\r\n", "other.example", 80,
          -EPERM, 0 },
        { "GET http://api.example.com/ HTTP/1.0\r\nX-Api-Key: " PH "\r\n\r\n", "api.example.com",
          80, -EPERM, 0 },
        /* in the target */
        { "GET http://api.example.com:443/?k=" PH " HTTP/1.0\r\n\r\n", "api.example.com", 443,
          -EPERM, 0 },
        /* another header, a second header, twice in one */
        { "GET http://api.example.com:443/ HTTP/1.0\r\nX-Other: " PH "\r\n\r\n", "api.example.com",
          443, -EPERM, 0 },
        { "GET http://api.example.com:443/ HTTP/1.0\r\nX-Api-Key: " PH "\r\nX-Api-Key: " PH
          "\r\n\r\n",
          "api.example.com", 443, -EPERM, 0 },
        { "GET http://api.example.com:443/ HTTP/1.0\r\nX-Api-Key: " PH PH "\r\n\r\n",
          "api.example.com", 443, -EPERM, 0 },
        /* the other credential's placeholder to this host */
        { "GET http://api.example.com:443/ HTTP/1.0\r\nAuthorization: Bearer " PH2 "\r\n\r\n",
          "api.example.com", 443, -EPERM, 0 },
        /* inside HTTP Basic credentials (git, pip, npm user:password): the same rules */
        { "GET http://registry.example.com:8080/ HTTP/1.0\r\nAuthorization: Basic " B_PH2
          "\r\n\r\n",
          "registry.example.com", 8080, 0, 1 },
        { "GET http://registry.example.com:8080/ HTTP/1.0\r\nAuthorization: basic  " B_PH2_USER
          " \r\n\r\n",
          "registry.example.com", 8080, 0, 1 },
        { "GET http://other.example/ HTTP/1.0\r\nAuthorization: Basic " B_PH2 "\r\n\r\n",
          "other.example", 80, -EPERM, 0 },
        { "GET http://registry.example.com:8081/ HTTP/1.0\r\nAuthorization: Basic " B_PH2
          "\r\n\r\n",
          "registry.example.com", 8081, -EPERM, 0 },
        { "GET http://registry.example.com:8080/ HTTP/1.0\r\nProxy-Authorization: Basic " B_PH2
          "\r\n\r\n",
          "registry.example.com", 8080, -EPERM, 0 },
        { "GET http://registry.example.com:8080/ HTTP/1.0\r\nAuthorization: Basic " B_PH2_TWICE
          "\r\n\r\n",
          "registry.example.com", 8080, -EPERM, 0 },
        { "GET http://registry.example.com:8080/ HTTP/1.0\r\nAuthorization: Basic " B_PH2
          "\r\nX-Api-Key: Basic " B_PH2 "\r\n\r\n",
          "registry.example.com", 8080, -EPERM, 0 },
        /* CONNECT never carries one */
        { "CONNECT api.example.com:443 HTTP/1.0\r\nX-Api-Key: " PH "\r\n\r\n", "api.example.com",
          443, -EPERM, 0 },
    };
    struct cred_store *s = two();
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct http_request req;
        struct cred_subst subs[CRED_MAX];
        size_t n = 99, ci = 99;
        const char *where = NULL;
        if (parse(cases[i].req, &req) <= 0)
            fail_msg("case %zu does not parse", i);
        assert_int_equal(
            cred_check_head(s, &req, cases[i].host, cases[i].port, subs, &n, &ci, &where),
            cases[i].want);
        if (cases[i].want == 0)
            assert_int_equal(n, cases[i].nsubs);
        else
            assert_non_null(where);
    }
    cred_store_free(s);
}

static void test_substitute(void **state)
{
    struct cred_store *s = two();
    struct buf out = BUF_INIT(4096);
    (void)state;

    assert_int_equal(cred_substitute(s, 1, slice_cstr("Bearer " PH2), &out), 0);
    assert_string_equal(buf_str(&out), "Bearer npmREAL");
    assert_int_equal(cred_substitute(s, 0, slice_cstr(PH), &out), 0);
    assert_string_equal(buf_str(&out), "sk-REAL secret");
    assert_int_equal(cred_substitute(s, 0, slice_cstr("nothing"), &out), -ENOENT);
    /* Basic: decoded, replaced, encoded again; the scheme as the client wrote it */
    assert_int_equal(cred_substitute(s, 1, slice_cstr("Basic " B_PH2), &out), 0);
    assert_string_equal(buf_str(&out), "Basic " B_REAL);
    assert_int_equal(cred_substitute(s, 1, slice_cstr("basic\t" B_PH2 "  "), &out), 0);
    assert_string_equal(buf_str(&out), "basic\t" B_REAL);
    assert_int_equal(cred_substitute(s, 0, slice_cstr("Basic " B_PH2), &out), -ENOENT);
    assert_int_equal(cred_substitute(s, 1, slice_cstr("Basic !!" B_PH2), &out), -ENOENT);
    buf_done(&out);
    cred_store_free(s);
}

/* body split at every offset, the two parts fed in turn to a fresh scan (set up by set_up, when
 * there is one): the scan finds a credential (1) whichever the split. */
static void assert_found_at_every_cut(struct cred_store *s, const char *body,
                                      void (*set_up)(struct cred_scan *sc))
{
    size_t len = strlen(body);

    for (size_t cut = 0; cut <= len; cut++) {
        struct cred_scan sc;
        int hit;
        cred_scan_init(&sc);
        if (set_up)
            set_up(&sc);
        hit = cred_scan_feed(s, &sc, body, cut);
        if (hit < 0)
            hit = cred_scan_feed(s, &sc, body + cut, len - cut);
        assert_int_equal(hit, 1);
        cred_scan_done(&sc);
    }
}

/* A placeholder split at every possible point, and fed one byte at a time, is found; text
 * that only shares a prefix is not. */
static void test_scan_streaming(void **state)
{
    struct cred_store *s = two();
    const char body[] = "{\"a\":\"xx" PH2 "yy\"}";
    size_t len = strlen(body);
    (void)state;

    assert_found_at_every_cut(s, body, NULL);
    {
        struct cred_scan sc;
        int hit = -1;
        cred_scan_init(&sc);
        for (size_t i = 0; i < len && hit < 0; i++)
            hit = cred_scan_feed(s, &sc, body + i, 1);
        assert_int_equal(hit, 1);
        cred_scan_done(&sc);
    }
    {
        struct cred_scan sc;
        const char near[] = "bb-cred-npm-00112233445566778899aabbccddeef bb-cred-api-01234";
        cred_scan_init(&sc);
        for (size_t i = 0; i < sizeof(near) - 1; i++)
            assert_int_equal(cred_scan_feed(s, &sc, near + i, 1), -1);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

/* A placeholder split by the chunked framing is found in the decoded data. */
static void test_scan_chunked(void **state)
{
    struct cred_store *s = two();
    /* "bb-cred-npm-" | "0011...eeff" in two chunks, with an extension on the second */
    const char body[] = "c\r\nbb-cred-npm-\r\n20;x=y\r\n00112233445566778899aabbccddeeff\r\n"
                        "0\r\n\r\n";
    const char clean[] = "c\r\nbb-cred-npm-\r\n3\r\nabc\r\n0\r\n\r\n";
    size_t len = strlen(body);
    (void)state;

    for (size_t cut = 0; cut <= len; cut++) {
        struct cred_scan sc;
        int hit;
        cred_scan_init(&sc);
        cred_scan_set_chunked(&sc);
        hit = cred_scan_feed(s, &sc, body, cut);
        if (hit < 0)
            hit = cred_scan_feed(s, &sc, body + cut, len - cut);
        assert_int_equal(hit, 1);
        cred_scan_done(&sc);
    }
    {
        struct cred_scan sc;
        cred_scan_init(&sc);
        /* as raw bytes, the framing hides it */
        assert_int_equal(cred_scan_feed(s, &sc, body, len), -1);
        cred_scan_done(&sc);
        cred_scan_set_chunked(&sc);
        assert_int_equal(cred_scan_feed(s, &sc, clean, strlen(clean)), -1);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

/* The real values are found in a response (split anywhere); the placeholders are not. */
static void test_scan_values(void **state)
{
    struct cred_store *s = two();
    const char body[] = "{\"echo\":\"npmREAL\"}";
    (void)state;

    assert_found_at_every_cut(s, body, cred_scan_set_values);
    {
        struct cred_scan sc;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        assert_int_equal(cred_scan_feed(s, &sc, PH " npmREA sk-REAL secre", 60), -1);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

/* The WebSocket relay holds only the bytes that begin a value (cred_scan_hold_prefix): none
 * for text that begins none, the beginning itself otherwise, "long" from CRED_PREFIX_LONG
 * bytes (or half a short value) on. */
/* A value in a gzip header's file name (FNAME) is not inflated output, and reaches the bottle
 * as it is: the compressed bytes are searched too, and held back like the inflated ones. */
static void test_scan_inflate_fname(void **state)
{
    static const unsigned char hdr[] = { 0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 0xff };
    static const unsigned char tail[] = { 3, 0, 0, 0, 0, 0, 0, 0, 0, 0 }; /* empty data */
    struct cred_store *s = two();
    unsigned char gz[64];
    size_t n = 0;
    (void)state;

    memcpy(gz, hdr, sizeof(hdr));
    n = sizeof(hdr);
    memcpy(gz + n, "sk-REAL secret", 15); /* with its NUL */
    n += 15;
    memcpy(gz + n, tail, sizeof(tail));
    n += sizeof(tail);
    for (size_t cut = 1; cut < n; cut++) {
        struct cred_scan sc;
        int hit;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        assert_int_equal(cred_scan_set_inflate(&sc), 0);
        hit = cred_scan_feed(s, &sc, (const char *)gz, cut);
        if (hit == -1) {
            /* what may go out before the rest: not the whole name */
            assert_true(cut - cred_scan_hold(&sc) <= sizeof(hdr) + 13);
            hit = cred_scan_feed(s, &sc, (const char *)gz + cut, n - cut);
        }
        assert_int_equal(hit, 0);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

/* WebSocket frames: a value split across the fragments of a message, a ping between them,
 * or in a masked frame, is found in the joined payload, and held back until it is. */
static void test_scan_websocket(void **state)
{
    static const char frag[] = "\x01\x06sk-REA" /* text, not final */
                               "\x89\x02hi"     /* a ping between */
                               "\x80\x08L secret";
    char masked[2 + 4 + 14];
    static const unsigned char key[4] = { 0x12, 0x34, 0x56, 0x78 };
    struct cred_store *s = two();
    (void)state;

    masked[0] = (char)0x81;
    masked[1] = (char)(0x80 | 14);
    memcpy(masked + 2, key, 4);
    for (size_t k = 0; k < 14; k++)
        masked[6 + k] = (char)("sk-REAL secret"[k] ^ key[k & 3]);
    for (size_t cut = 1; cut < sizeof(frag) - 1; cut++) {
        struct cred_scan sc;
        int hit;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        cred_scan_set_websocket(&sc);
        hit = cred_scan_feed(s, &sc, frag, cut);
        if (hit == -1) {
            /* what may go out before the rest: the first frame's header at most */
            assert_true(cut - cred_scan_hold(&sc) <= 2);
            hit = cred_scan_feed(s, &sc, frag + cut, sizeof(frag) - 1 - cut);
        }
        assert_int_equal(hit, 0);
        cred_scan_done(&sc);
    }
    {
        struct cred_scan sc;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        cred_scan_set_websocket(&sc);
        assert_int_equal(cred_scan_feed(s, &sc, masked, sizeof(masked)), 0);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

static void test_scan_hold_prefix(void **state)
{
    static const struct {
        const char *text;
        size_t hold;
        bool lng;
    } cases[] = {
        { "hello world", 0, false },                      /* no beginning of a value */
        { "hello sk-R", 4, false },                       /* short: the timer may let it go */
        { "hello sk-REAL s", 9, true },                   /* 9 bytes of "sk-REAL secret" */
        { "x sk-sk-RE", 5, false },                       /* the longest tail that begins it */
        { "npm", 3, false },                              /* 3 of 7: under half */
        { "npmR", 4, true },                              /* 4 of 7: half or more */
        { "sk-REAL secre\nsk", 2, false },                /* nothing before a line break */
        { "Basic eC1hY2Nlc3MtdG9rZW46bnBtUkV", 7, true }, /* 7 of its 8 stable base64 */
    };
    struct cred_store *s = two();
    (void)state;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct cred_scan sc;
        bool lng = !cases[i].lng;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        assert_int_equal(cred_scan_feed(s, &sc, cases[i].text, strlen(cases[i].text)), -1);
        assert_int_equal(cred_scan_hold_prefix(s, &sc, &lng), cases[i].hold);
        assert_int_equal(lng, cases[i].lng);
        assert_true(cases[i].hold <= cred_scan_hold(&sc));
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

/* A reader passes on only what cred_scan_hold() does not keep back: nothing of a value that
 * the next feed completes leaves early, plain or split by chunk framing (raw offsets). */
/* An origin that reflects an Authorization: Basic header hands back the value in base64: the
 * value search finds it at every alignment. */
static void test_scan_values_b64(void **state)
{
    struct cred_store *s = two();
    const char *texts[] = { "{\"authorization\": \"Basic " B_REAL "\"}", /* offset 15 */
                            "Basic eDpucG1SRUFM",                        /* x:npmREAL */
                            "Basic eHg6bnBtUkVBTA==",                    /* xx:npmREAL */
                            "Basic eHh4Om5wbVJFQUw=" };                  /* xxx:npmREAL */
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
        struct cred_scan sc;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        assert_int_equal(cred_scan_feed(s, &sc, texts[i], strlen(texts[i])), 1);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

/* p compressed: gzip (wbits 15 + 16) or zlib (15), into a malloc'd buffer. */
static unsigned char *zip(const void *p, size_t n, int wbits, size_t *ret_len)
{
    z_stream z = { 0 };
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    unsigned char *out = malloc(cap + 64);

    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)(cap + 64);
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *ret_len = z.total_out;
    deflateEnd(&z);
    return out;
}

/* Inflate (gzip or zlib) whatever of p can be: the bytes a client that got p would have. */
static size_t unzip_prefix(const unsigned char *p, size_t n, char *out, size_t cap)
{
    z_stream z = { 0 };
    assert_int_equal(inflateInit2(&z, 15 + 32), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    (void)inflate(&z, Z_SYNC_FLUSH);
    size_t got = z.total_out;
    inflateEnd(&z);
    return got;
}

/* A gzip (or deflate) response is searched inflated: the value is found however the compressed
 * bytes are cut, and what the hold-back lets out never inflates to the value. */
static void test_scan_inflate(void **state)
{
    struct cred_store *s = two();
    char text[3000], got[4000];
    (void)state;

    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    memcpy(text + 1500, "x-api-key: sk-REAL secret\r\n", 27);
    for (int wbits = 15; wbits <= 31; wbits += 16) {
        size_t zn;
        unsigned char *z = zip(text, sizeof(text), wbits, &zn);
        for (size_t cut = 1; cut < zn; cut += 3) {
            struct cred_scan sc;
            cred_scan_init(&sc);
            cred_scan_set_values(&sc);
            assert_int_equal(cred_scan_set_inflate(&sc), 0);
            int hit = cred_scan_feed(s, &sc, (const char *)z, cut);
            if (hit < 0) {
                assert_int_equal(hit, -1);
                size_t out = unzip_prefix(z, cut - cred_scan_hold(&sc), got, sizeof(got));
                assert_null(memmem(got, out, "sk-REAL secret", 14));
                hit = cred_scan_feed(s, &sc, (const char *)z + cut, zn - cut);
            }
            assert_int_equal(hit, 0);
            cred_scan_done(&sc);
        }
        /* the same text without the value passes, whole */
        memcpy(text + 1500, "x-api-key: sk-FAKE secret\r\n", 27);
        free(z);
        z = zip(text, sizeof(text), wbits, &zn);
        struct cred_scan sc;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        assert_int_equal(cred_scan_set_inflate(&sc), 0);
        assert_int_equal(cred_scan_feed(s, &sc, (const char *)z, zn), -1);
        cred_scan_done(&sc);
        memcpy(text + 1500, "x-api-key: sk-REAL secret\r\n", 27);
        free(z);
    }
    cred_store_free(s);
}

/* Chunked framing around gzip; a second gzip member; not gzip at all; a decompression bomb. */
static void test_scan_inflate_edges(void **state)
{
    struct cred_store *s = two();
    struct cred_scan sc;
    size_t zn, bn;
    unsigned char *z, *bomb;
    char framed[512], *zeros;
    int n;
    (void)state;

    z = zip("hello npmREAL there", 19, 31, &zn);
    n = snprintf(framed, sizeof(framed), "%zx\r\n", zn);
    memcpy(framed + n, z, zn);
    memcpy(framed + n + zn, "\r\n0\r\n\r\n", 7);
    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    cred_scan_set_chunked(&sc);
    assert_int_equal(cred_scan_set_inflate(&sc), 0);
    assert_int_equal(cred_scan_feed(s, &sc, framed, (size_t)n + zn + 7), 1);
    cred_scan_done(&sc);

    /* gzip members one after the other (what gzip -c a b >ab makes) */
    unsigned char *z1 = zip("benign first member", 19, 31, &bn);
    memcpy(framed, z1, bn);
    memcpy(framed + bn, z, zn);
    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    assert_int_equal(cred_scan_set_inflate(&sc), 0);
    assert_int_equal(cred_scan_feed(s, &sc, framed, bn + zn), 1);
    cred_scan_done(&sc);
    free(z1);
    free(z);

    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    assert_int_equal(cred_scan_set_inflate(&sc), 0);
    assert_int_equal(cred_scan_feed(s, &sc, "this is not gzip at all", 23), CRED_SCAN_UNSCANNABLE);
    assert_non_null(sc.z_err);
    assert_int_equal(cred_scan_feed(s, &sc, "more", 4), CRED_SCAN_UNSCANNABLE);
    cred_scan_done(&sc);

    /* 16 MiB of zeros is about 16 KiB of gzip: refused once it inflates past the ratio */
    size_t zlen = 16u << 20;
    zeros = calloc(1, zlen);
    bomb = zip(zeros, zlen, 31, &bn);
    free(zeros);
    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    assert_int_equal(cred_scan_set_inflate(&sc), 0);
    int hit = -1;
    for (size_t i = 0; i < bn && hit == -1; i += 16384)
        hit = cred_scan_feed(s, &sc, (const char *)bomb + i, MIN((size_t)16384, bn - i));
    assert_int_equal(hit, CRED_SCAN_UNSCANNABLE);
    assert_true(sc.z_out <= (uint64_t)CRED_INFLATE_FREE + 16384);
    assert_non_null(strstr(sc.z_err, "limit"));
    cred_scan_done(&sc);
    free(bomb);
    cred_store_free(s);
}

static void test_scan_hold(void **state)
{
    struct cred_store *s = two();
    /* "npmREAL" split over two chunks, raw offset of its 'n': 11 */
    const char chunked[] = "3\r\nab\n\r\n4\r\nnpmR\r\n5\r\nEALxy\r\n0\r\n\r\n";
    const char plain[] = "line one\nkey=npmREAL\n";
    size_t len = strlen(chunked);
    (void)state;

    for (size_t cut = 0; cut <= len; cut++) {
        struct cred_scan sc;
        int hit;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        cred_scan_set_chunked(&sc);
        hit = cred_scan_feed(s, &sc, chunked, cut);
        if (hit < 0) {
            assert_true(cut - cred_scan_hold(&sc) <= 11);
            hit = cred_scan_feed(s, &sc, chunked + cut, len - cut);
        }
        assert_int_equal(hit, 1);
        cred_scan_done(&sc);
    }
    len = strlen(plain);
    for (size_t cut = 0; cut <= len; cut++) {
        struct cred_scan sc;
        int hit;
        cred_scan_init(&sc);
        cred_scan_set_values(&sc);
        hit = cred_scan_feed(s, &sc, plain, cut);
        if (hit < 0) {
            assert_true(cut - cred_scan_hold(&sc) <= 13);
            /* nothing before the last newline is ever held */
            if (cut >= 9 && cut <= 13)
                assert_int_equal(cred_scan_hold(&sc), cut - 9);
            hit = cred_scan_feed(s, &sc, plain + cut, len - cut);
        }
        assert_int_equal(hit, 1);
        cred_scan_done(&sc);
    }
    cred_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_refusals),      cmocka_unit_test(test_check_head),
        cmocka_unit_test(test_substitute),         cmocka_unit_test(test_scan_streaming),
        cmocka_unit_test(test_scan_chunked),       cmocka_unit_test(test_scan_values),
        cmocka_unit_test(test_scan_hold),          cmocka_unit_test(test_scan_values_b64),
        cmocka_unit_test(test_scan_hold_prefix),   cmocka_unit_test(test_scan_websocket),
        cmocka_unit_test(test_scan_inflate_fname), cmocka_unit_test(test_scan_inflate),
        cmocka_unit_test(test_scan_inflate_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
