/*
 * Fuzz the HTTP Basic handling of credentials (cred_check_head, cred_substitute): the input is
 * the value of an Authorization header to the credential's own host (a flags byte first: bit
 * 0 sends it to another host instead; bit 1 wraps the rest as "Basic " + base64 of it, so the
 * decoder's inside is reached). Invariants: no crash; to another host, a value whose
 * placeholder the check finds is refused; a substitution the check asks for succeeds, its
 * result holds no placeholder, and (for Basic) decodes to text holding the real value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "fuzz.h"
#include "proxy/cred.h"
#include "proxy/http1.h"

#define PH "bb-cred-git-0123456789abcdef0123456789abcdef"

static size_t b64(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    return o;
}

static int b64v(char c)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *at = c ? strchr(a, c) : NULL;
    return at ? (int)(at - a) : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char wire[] = "git git.example 443 authorization " PH " REAL-git-token\n";
    static char req[12000], val[9000];
    struct cred_store *s = NULL;
    const char *err = NULL, *where = NULL;
    struct http_request r;
    struct http_error e;
    struct cred_subst subs[CRED_MAX];
    size_t n = 0, ci = 0, vlen;
    unsigned flags;

    if (size < 1 || size > 4000)
        return 0;
    flags = data[0];
    data++;
    size--;
    if (flags & 2) {
        memcpy(val, "Basic ", 6);
        vlen = 6 + b64(data, size, val + 6);
    } else {
        memcpy(val, data, size);
        vlen = size;
    }
    for (size_t i = 0; i < vlen; i++)
        if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0')
            val[i] = ' ';
    const char *host = flags & 1 ? "other.example" : "git.example";
    int len =
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nAuthorization: %.*s\r\n\r\n",
                 host, (int)vlen, val);
    if (len <= 0 || (size_t)len >= sizeof(req))
        return 0;
    if (http_parse_request(req, (size_t)len, &r, &e) <= 0)
        return 0;
    if (cred_store_decode(wire, sizeof(wire) - 1, &s, &err) < 0)
        abort();
    int rc = cred_check_head(s, &r, host, 443, subs, &n, &ci, &where);
    if (rc == 0 && (flags & 1) && n)
        abort(); /* a substitution for another host */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct buf out = BUF_INIT(BB_MAX_HTTP_LINE * 3);
        struct slice v = r.headers[subs[i].header].value;
        int sr = cred_substitute(s, subs[i].cred, v, &out);
        if (sr == -E2BIG) {
            buf_done(&out);
            continue;
        }
        if (sr != 0 || memmem(out.p, out.len, PH, strlen(PH)))
            abort();
        if (!memmem(v.p, v.len, PH, strlen(PH))) {
            /* Basic: the base64 after the scheme decodes to text with the real value */
            const char *sp = out.p, *end = out.p + out.len;
            while (sp < end && *sp != ' ' && *sp != '\t')
                sp++;
            if (sp == end)
                abort();
            while (sp < end && (*sp == ' ' || *sp == '\t'))
                sp++;
            unsigned char dec[BB_MAX_HTTP_LINE * 3];
            size_t dn = 0;
            unsigned acc = 0, bits = 0;
            for (const char *q = sp; q < out.p + out.len && *q != '='; q++) {
                int d = b64v(*q);
                if (d < 0)
                    abort();
                acc = (acc << 6) | (unsigned)d;
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    dec[dn++] = (unsigned char)(acc >> bits);
                    acc &= (1u << bits) - 1;
                }
            }
            if (!memmem(dec, dn, "REAL-git-token", 14))
                abort();
        }
        buf_done(&out);
    }
    cred_store_free(s);
    return 0;
}
