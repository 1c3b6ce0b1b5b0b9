/*
 * Fuzz the request side: http_head_end (whole vs. byte by byte), http_parse_request, and for
 * accepted heads http_parse_target + http_build_upstream_request, whose output must parse again
 * with the same framing and never carry Proxy-Authorization.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "fuzz.h"
#include "proxy/http1.h"

static bool inside(struct slice s, const char *p, size_t len)
{
    return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

static void check_error(int r, const struct http_error *err)
{
    if (r < 0 && (!err->msg || (err->status != 400 && err->status != 414 && err->status != 431 &&
                                err->status != 501 && err->status != 505)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct http_request req, req2;
    struct http_target t;
    struct http_error err = { 0, NULL };
    size_t scan = 0, scan2 = 0;
    int end, end2 = 0, r;

    /* head_end: one call vs. growing prefixes give the same answer */
    end = http_head_end(p, size, &scan);
    if (end > (int)size || (end > 0 && end > BB_MAX_HTTP_HEAD))
        abort();
    for (size_t n = 0; n <= size && n <= BB_MAX_HTTP_HEAD; n++) {
        end2 = http_head_end(p, n, &scan2);
        if (end2 != 0)
            break;
        if (scan2 != n)
            abort();
    }
    if (end2 != end && !(end == -EMSGSIZE && end2 == 0 && size > BB_MAX_HTTP_HEAD))
        abort();

    /* given a head that http_head_end found, the parser never asks for more input */
    if (end > 0) {
        r = http_parse_request(p, (size_t)end, &req, &err);
        check_error(r, &err);
        if (r == 0 || r > end)
            abort();
    }

    r = http_parse_request(p, size, &req, &err);
    check_error(r, &err);
    if (r <= 0)
        return 0;
    /* a parsed head ends where http_head_end says */
    if (end != r || req.head_len != (size_t)r || r > BB_MAX_HTTP_HEAD)
        abort();
    if (!inside(req.method, p, size) || !inside(req.target, p, size) || !inside(req.host, p, size))
        abort();
    if (req.method.len == 0 || req.target.len == 0 || req.target.len > BB_MAX_HTTP_TARGET)
        abort();
    if (req.version != 10 && req.version != 11)
        abort();
    if (req.n_headers > BB_MAX_HTTP_HEADERS || req.body >= HTTP_BODY_MAX ||
        req.body == HTTP_BODY_CLOSE)
        abort();
    if (req.version == 11 && !req.host.p)
        abort();
    for (size_t i = 0; i < req.n_headers; i++) {
        const struct http_header *h = &req.headers[i];
        if (!inside(h->name, p, (size_t)r) || !inside(h->value, p, (size_t)r) || h->name.len == 0)
            abort();
        if (memchr(h->value.p, '\r', h->value.len) || memchr(h->value.p, '\n', h->value.len))
            abort();
    }
    /* the same bytes with junk after the head give the same head */
    {
        char *q = malloc((size_t)r + 3);
        if (!q)
            abort();
        memcpy(q, p, (size_t)r);
        memcpy(q + r, "GET", 3);
        if (http_parse_request(q, (size_t)r + 3, &req2, &err) != r || req2.body != req.body ||
            req2.n_headers != req.n_headers)
            abort();
        free(q);
    }

    if (http_parse_target(req.target, req.is_connect, &t, &err) < 0) {
        check_error(-1, &err);
        return 0;
    }
    if (!inside(t.host, req.target.p, req.target.len) || t.host.len == 0 || t.port == 0)
        abort();
    if (req.is_connect)
        return 0;

    /* rebuild: the host text as host_parse would hand it over (brackets removed) */
    char host[BB_MAX_HOST_INPUT + 16];
    struct slice h = t.host;
    if (h.len >= 2 && h.p[0] == '[') {
        h.p++;
        h.len -= 2;
    }
    if (h.len >= sizeof(host))
        abort();
    memcpy(host, h.p, h.len);
    host[h.len] = '\0';
    if (memchr(host, '\0', h.len))
        return 0;

    struct buf out = BUF_INIT(BB_MAX_HTTP_HEAD);
    r = http_build_upstream_request(&req, &t, host, &out);
    if (r == -E2BIG) {
        buf_done(&out);
        return 0;
    }
    if (r < 0)
        abort();
    r = http_parse_request(out.p, out.len, &req2, &err);
    if (r != (int)out.len || req2.body != req.body || req2.content_length != req.content_length ||
        req2.version != 11 || !slice_eq(req2.method, req.method) || req2.is_connect)
        abort();
    if (req2.target.p[0] != '/')
        abort();
    for (size_t i = 0; i < req2.n_headers; i++)
        if (slice_eq_nocase_cstr(req2.headers[i].name, "proxy-authorization") ||
            slice_eq_nocase_cstr(req2.headers[i].name, "connection") ||
            slice_eq_nocase_cstr(req2.headers[i].name, "upgrade"))
            abort();
    buf_done(&out);
    return 0;
}
