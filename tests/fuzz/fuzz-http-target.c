/*
 * Fuzz http_parse_target (first byte: CONNECT or not) and http_parse_host_header. Accepted
 * hosts never contain the characters that hide a second host ('@' '#' '%' '\\' '/').
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy/http1.h"

static bool inside(struct slice s, const char *p, size_t len)
{
    return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

static void check_host(struct slice h, const char *p, size_t len)
{
    if (h.len == 0 || !inside(h, p, len))
        abort();
    for (size_t i = 0; i < h.len; i++)
        if (strchr("@#%\\/?:; \t\r\n", h.p[i]) && !(h.p[0] == '[' && h.p[i] == ':'))
            abort();
        else if (h.p[i] == '\0' || (unsigned char)h.p[i] < 0x20 || h.p[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_target t;
    struct http_error err = { 0, NULL };
    struct slice in, h;
    uint16_t port;
    bool is_connect;
    int r, r2;

    if (size < 1)
        return 0;
    is_connect = data[0] & 1;
    in = slice_make((const char *)data + 1, size - 1);

    r = http_parse_target(in, is_connect, &t, &err);
    if (r < 0 && (!err.msg || (err.status != 400 && err.status != 414)))
        abort();
    if (r == 0) {
        check_host(t.host, in.p, in.len);
        if (t.port == 0 || (!t.port_explicit && t.port != 80))
            abort();
        if (is_connect) {
            if (t.form != HTTP_TARGET_AUTHORITY || !t.port_explicit || t.path.len)
                abort();
        } else {
            if (t.form != HTTP_TARGET_ABSOLUTE || t.path.len == 0 ||
                (t.path.p[0] != '/' && t.path.p[0] != '?'))
                abort();
            if (memchr(t.path.p, '#', t.path.len))
                abort();
        }
    }

    /* Host header: same authority grammar */
    r2 = http_parse_host_header(in, 80, &h, &port);
    if (r2 == 0) {
        check_host(h, in.p, in.len);
        if (port == 0)
            abort();
    }
    /* a CONNECT authority is a valid Host value with the same host and port */
    if (is_connect && r == 0 && (r2 != 0 || !slice_eq(h, t.host) || port != t.port))
        abort();
    return 0;
}
