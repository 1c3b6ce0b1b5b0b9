/*
 * Fuzz http_parse_response (the first byte picks the request method) and, for accepted heads,
 * http_build_client_response, whose output must parse again with the same status and framing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/macro.h"
#include "fuzz.h"
#include "proxy/http1.h"

static bool inside(struct slice s, const char *p, size_t len)
{
    return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = { "GET", "HEAD", "CONNECT", "POST" };
    struct http_response resp, resp2;
    struct http_error err = { 0, NULL };
    struct slice method;
    const char *p;
    size_t len, scan = 0;
    int r, end;

    if (size < 1)
        return 0;
    method = slice_cstr(methods[data[0] % ARRAY_SIZE(methods)]);
    p = (const char *)data + 1;
    len = size - 1;

    /* given a head that http_head_end found, the parser never asks for more input */
    end = http_head_end(p, len, &scan);
    if (end > 0) {
        r = http_parse_response(p, (size_t)end, method, &resp, &err);
        if (r == 0 || r > end || (r < 0 && err.status != 502))
            abort();
    }

    r = http_parse_response(p, len, method, &resp, &err);
    if (r < 0 && (err.status != 502 || !err.msg))
        abort();
    if (r > (int)len)
        abort();
    if (r <= 0)
        return 0;
    if (end != r || resp.head_len != (size_t)r)
        abort();
    if (resp.status < 100 || resp.status > 599 || (resp.version != 10 && resp.version != 11))
        abort();
    if (resp.n_headers > BB_MAX_HTTP_HEADERS || resp.body >= HTTP_BODY_MAX)
        abort();
    if (resp.body == HTTP_BODY_CLOSE && resp.keep_alive)
        abort();
    if ((resp.status < 200 || resp.status == 204 || resp.status == 304 ||
         slice_eq_nocase_cstr(method, "HEAD")) &&
        resp.body != HTTP_BODY_NONE)
        abort();
    for (size_t i = 0; i < resp.n_headers; i++)
        if (!inside(resp.headers[i].name, p, (size_t)r) ||
            !inside(resp.headers[i].value, p, (size_t)r))
            abort();

    for (int keep = 0; keep < 2; keep++) {
        struct buf out = BUF_INIT(BB_MAX_HTTP_HEAD);
        r = http_build_client_response(&resp, p, keep, &out);
        if (r == -E2BIG) {
            buf_done(&out);
            continue;
        }
        if (r < 0)
            abort();
        r = http_parse_response(out.p, out.len, method, &resp2, &err);
        if (r != (int)out.len || resp2.status != resp.status || resp2.body != resp.body ||
            resp2.content_length != resp.content_length || resp2.version != 11)
            abort();
        if (!keep && resp2.keep_alive)
            abort();
        for (size_t i = 0; i < resp2.n_headers; i++)
            if (slice_eq_nocase_cstr(resp2.headers[i].name, "proxy-authenticate") ||
                slice_eq_nocase_cstr(resp2.headers[i].name, "upgrade") ||
                slice_eq_nocase_cstr(resp2.headers[i].name, "keep-alive"))
                abort();
        buf_done(&out);
    }
    return 0;
}
