/* Credentials held by the egress daemon (cred.h, docs/credentials.md). */
#include "proxy/cred.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "common/limits.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "dlp/dlp.h"
#include "policy/policy.h"

struct cred {
    char name[CRED_NAME_MAX + 1];
    char host[BB_MAX_HOSTNAME + 1];
    uint16_t port;
    char header[128];
    char placeholder[CRED_PLACEHOLDER_MAX + 1];
    size_t placeholder_len;
    const char *value; /* in the store's dont-dump region */
    size_t value_len;
    /* the value's base64 at its three alignments (the characters that depend only on it):
     * what an origin reflecting an Authorization: Basic header hands back. Same region. */
    const char *b64[3];
    size_t b64_len[3];
};

struct cred_store {
    struct cred *v;
    size_t n;
    size_t max_placeholder;
    size_t max_value;
    char *region; /* the values, MADV_DONTDUMP */
    size_t region_len;
};

bool cred_value_valid(const char *s, size_t n)
{
    if (n == 0 || n > CRED_VALUE_MAX)
        return false;
    if (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static bool host_valid(const char *s, size_t n)
{
    if (n == 0 || n > BB_MAX_HOSTNAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || ascii_isdigit(s[i]) || s[i] == '-' || s[i] == '.'))
            return false;
    return s[0] != '.' && s[0] != '-' && s[n - 1] != '.';
}

static bool placeholder_valid(const char *s, size_t n, const char *name, size_t name_len)
{
    size_t pre = strlen(CRED_PLACEHOLDER_PREFIX), hex;

    if (n < pre + name_len + 1 + 16 || n > CRED_PLACEHOLDER_MAX)
        return false;
    if (memcmp(s, CRED_PLACEHOLDER_PREFIX, pre) != 0 || memcmp(s + pre, name, name_len) != 0 ||
        s[pre + name_len] != '-')
        return false;
    hex = n - pre - name_len - 1;
    if (hex < 16 || hex > 64)
        return false;
    for (size_t i = n - hex; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int cred_wire_append(struct buf *out, const char *name, const char *host, uint16_t port,
                     const char *header, const char *placeholder, const char *value)
{
    if (!policy_cred_name_valid(name, strlen(name)) || !host_valid(host, strlen(host)) ||
        port == 0 || !policy_cred_header_valid(header, strlen(header)) ||
        !placeholder_valid(placeholder, strlen(placeholder), name, strlen(name)) ||
        !cred_value_valid(value, strlen(value)))
        return -EINVAL;
    if (buf_printf(out, "%s %s %u %s %s ", name, host, (unsigned)port, header, placeholder) < 0 ||
        buf_append_str(out, value) < 0 || buf_append(out, "\n", 1) < 0)
        return -E2BIG;
    return 0;
}

/* The next field up to a space, into [*p, *end). */
static bool next_field(const char **p, const char *end, struct slice *ret)
{
    const char *sp = memchr(*p, ' ', (size_t)(end - *p));
    if (!sp)
        return false;
    *ret = slice_make(*p, (size_t)(sp - *p));
    *p = sp + 1;
    return true;
}

struct cred_store *cred_store_free(struct cred_store *s)
{
    if (!s)
        return NULL;
    if (s->region) {
        explicit_bzero(s->region, s->region_len);
        munmap(s->region, s->region_len);
    }
    free(s->v);
    free(s);
    return NULL;
}

int cred_store_decode(const char *p, size_t len, struct cred_store **ret, const char **reterr)
{
    struct cred_store *s;
    const char *end = p + len, *q;
    size_t lines = 0, total = 0, off = 0;
    long page = sysconf(_SC_PAGESIZE);

    if (len > CRED_WIRE_MAX) {
        *reterr = "too many bytes of credentials";
        return -EINVAL;
    }
    if (len && p[len - 1] != '\n') {
        *reterr = "the last credential line is not terminated";
        return -EINVAL;
    }
    for (q = p; q < end; q++)
        if (*q == '\n')
            lines++;
    if (lines > CRED_MAX) {
        *reterr = "too many credentials";
        return -EINVAL;
    }
    s = xcalloc(1, sizeof(*s));
    if (lines)
        s->v = xcalloc(lines, sizeof(*s->v));
    /* All the values fit in len bytes, their base64 forms in 4 * len + 12 per line; one
     * region, excluded from core dumps. */
    if (len) {
        s->region_len =
            ((5 * len + 12 * lines + 1 + (size_t)page - 1) / (size_t)page) * (size_t)page;
        s->region =
            mmap(NULL, s->region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (s->region == MAP_FAILED) {
            s->region = NULL;
            free(s->v);
            free(s);
            *reterr = "cannot allocate memory for the credentials";
            return -ENOMEM;
        }
        (void)madvise(s->region, s->region_len, MADV_DONTDUMP);
        (void)mlock(s->region, s->region_len); /* best effort: never swapped out */
    }
    q = p;
    while (q < end) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        struct slice name, host, port, header, ph, value;
        struct cred *c = &s->v[s->n];
        uint64_t pv;

        if (!next_field(&q, nl, &name) || !next_field(&q, nl, &host) ||
            !next_field(&q, nl, &port) || !next_field(&q, nl, &header) ||
            !next_field(&q, nl, &ph)) {
            *reterr = "a credential line has too few fields";
            goto fail;
        }
        value = slice_make(q, (size_t)(nl - q));
        q = nl + 1;
        if (!policy_cred_name_valid(name.p, name.len)) {
            *reterr = "a credential name is not valid ([a-z0-9_-], 1-32)";
            goto fail;
        }
        if (!host_valid(host.p, host.len)) {
            *reterr = "a credential host is not a lower-case host name";
            goto fail;
        }
        if (str_to_u64(port, 65535, &pv) < 0 || pv == 0) {
            *reterr = "a credential port is not 1..65535";
            goto fail;
        }
        if (!policy_cred_header_valid(header.p, header.len)) {
            *reterr = "a credential header is not a valid field name";
            goto fail;
        }
        if (!placeholder_valid(ph.p, ph.len, name.p, name.len)) {
            *reterr = "a credential placeholder is not valid";
            goto fail;
        }
        if (!cred_value_valid(value.p, value.len)) {
            *reterr = "a credential value is empty, too long or holds control characters";
            goto fail;
        }
        for (size_t i = 0; i < s->n; i++) {
            if (strlen(s->v[i].name) == name.len && memcmp(s->v[i].name, name.p, name.len) == 0) {
                *reterr = "two credentials have the same name";
                goto fail;
            }
        }
        memcpy(c->name, name.p, name.len);
        memcpy(c->host, host.p, host.len);
        c->port = (uint16_t)pv;
        memcpy(c->header, header.p, header.len);
        memcpy(c->placeholder, ph.p, ph.len);
        c->placeholder_len = ph.len;
        memcpy(s->region + off, value.p, value.len);
        c->value = s->region + off;
        c->value_len = value.len;
        off += value.len;
        total += value.len;
        s->max_placeholder = MAX(s->max_placeholder, ph.len);
        s->max_value = MAX(s->max_value, value.len);
        for (unsigned k = 0; k < 3; k++) {
            size_t n = dlp_b64_stable((const unsigned char *)c->value, c->value_len, k, false,
                                      (unsigned char *)s->region + off);
            c->b64[k] = s->region + off;
            c->b64_len[k] = n;
            off += n;
            s->max_value = MAX(s->max_value, n);
        }
        s->n++;
    }
    (void)total;
    *ret = s;
    return 0;
fail:
    cred_store_free(s);
    return -EINVAL;
}

size_t cred_store_count(const struct cred_store *s)
{
    return s ? s->n : 0;
}

const char *cred_name(const struct cred_store *s, size_t i)
{
    return s->v[i].name;
}

const char *cred_host(const struct cred_store *s, size_t i)
{
    return s->v[i].host;
}

uint16_t cred_port(const struct cred_store *s, size_t i)
{
    return s->v[i].port;
}

const char *cred_header(const struct cred_store *s, size_t i)
{
    return s->v[i].header;
}

const char *cred_value(const struct cred_store *s, size_t i, size_t *ret_len)
{
    *ret_len = s->v[i].value_len;
    return s->v[i].value;
}

bool cred_store_has_host(const struct cred_store *s, const char *host, uint16_t port)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (s->v[i].port == port && strcmp(s->v[i].host, host) == 0)
            return true;
    return false;
}

static const char *find(const struct cred *c, struct slice hay)
{
    if (!hay.p || hay.len < c->placeholder_len)
        return NULL;
    return memmem(hay.p, hay.len, c->placeholder, c->placeholder_len);
}

/*
 * HTTP Basic authentication (RFC 7617): "Basic" SP token68, the token the base64 of
 * "user:password". A placeholder given as the password (git's credential helper, pip's and
 * npm's user:password URLs) is inside the base64: the value is decoded to look for it, and the
 * substitution decodes, replaces and encodes again.
 */
#define CRED_B64_MIN 8

static const char b64_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The base64 token of a "Basic ..." value (scheme case-insensitive, spaces around), or false. */
static bool basic_token(struct slice v, struct slice *ret)
{
    size_t i = 5, j, k;

    if (v.len < 6 || !slice_eq_nocase_cstr(slice_make(v.p, 5), "basic") ||
        (v.p[5] != ' ' && v.p[5] != '\t'))
        return false;
    while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t'))
        i++;
    for (j = i; j < v.len && (ascii_isalnum(v.p[j]) || v.p[j] == '+' || v.p[j] == '/'); j++)
        ;
    for (k = j; k < v.len && v.p[k] == '='; k++)
        ;
    if (j == i || k - j > 2)
        return false;
    *ret = slice_make(v.p + i, k - i);
    for (; k < v.len; k++)
        if (v.p[k] != ' ' && v.p[k] != '\t')
            return false;
    return true;
}

/* Decode base64 (padding optional) into out (room for 3/4 of the length). Returns the decoded
 * length, or -EINVAL. */
static ssize_t b64_decode(struct slice t, unsigned char *out)
{
    unsigned acc = 0, bits = 0;
    size_t n = 0, len = t.len;

    while (len && t.p[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        const char *at = memchr(b64_alpha, t.p[i], 64);
        if (!at || !t.p[i])
            return -EINVAL;
        acc = (acc << 6) | (unsigned)(at - b64_alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (ssize_t)n;
}

static int b64_encode_append(struct buf *out, const unsigned char *p, size_t n)
{
    char q[4];

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        q[0] = b64_alpha[v >> 18];
        q[1] = b64_alpha[(v >> 12) & 63];
        q[2] = i + 1 < n ? b64_alpha[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? b64_alpha[v & 63] : '=';
        if (buf_append(out, q, 4) < 0)
            return -E2BIG;
    }
    return 0;
}

/* The decoded user:password of a Basic value into dec (BB_MAX_HTTP_LINE bytes), its length, or
 * -ENOENT when v is not Basic (or not base64). */
static ssize_t basic_decode(struct slice v, unsigned char *dec)
{
    struct slice tok;

    if (!basic_token(v, &tok) || tok.len > BB_MAX_HTTP_LINE)
        return -ENOENT;
    ssize_t n = b64_decode(tok, dec);
    return n < 0 ? -ENOENT : n;
}

/* Where credential c's placeholder is in a header value: 0 nowhere, 1 as it is, 2 inside its
 * Basic credentials; *ret_twice when it is there more than once. */
static int find_in_value(const struct cred *c, struct slice v, bool *ret_twice)
{
    unsigned char dec[BB_MAX_HTTP_LINE];
    const char *at = find(c, v);
    int where = 1;
    ssize_t n;

    if (!at) {
        n = basic_decode(v, dec);
        if (n < 0)
            return 0;
        v = slice_make((const char *)dec, (size_t)n);
        at = find(c, v);
        where = 2;
        if (!at) {
            explicit_bzero(dec, (size_t)n);
            return 0;
        }
    }
    size_t rest = v.len - (size_t)(at - v.p) - c->placeholder_len;
    *ret_twice = find(c, slice_make(at + c->placeholder_len, rest)) != NULL;
    if (where == 2)
        explicit_bzero(dec, v.len);
    return where;
}

int cred_check_head(const struct cred_store *s, const struct http_request *req, const char *host,
                    uint16_t port, struct cred_subst *subs, size_t *ret_n, size_t *ret_cred,
                    const char **ret_where)
{
    size_t n = 0;

    *ret_n = 0;
    for (size_t i = 0; s && i < s->n; i++) {
        const struct cred *c = &s->v[i];
        bool ours = !req->is_connect && c->port == port && strcmp(c->host, host) == 0;
        bool used = false;

        *ret_cred = i;
        if (find(c, req->target) || find(c, req->method)) {
            *ret_where = "in the request target";
            return -EPERM;
        }
        for (size_t h = 0; h < req->n_headers; h++) {
            const struct http_header *hd = &req->headers[h];

            if (find(c, hd->name)) {
                *ret_where = "in a header name";
                return -EPERM;
            }
            bool twice = false;
            if (!find_in_value(c, hd->value, &twice))
                continue;
            if (req->is_connect) {
                *ret_where = "in a CONNECT request";
                return -EPERM;
            }
            if (!ours) {
                *ret_where = "in a request to a host or port it is not for";
                return -EPERM;
            }
            if (!slice_eq_nocase_cstr(hd->name, c->header)) {
                *ret_where = "in a header other than the credential's own";
                return -EPERM;
            }
            if (used) {
                *ret_where = "in a second header";
                return -EPERM;
            }
            /* once per value: a second copy would put the secret in twice */
            if (twice) {
                *ret_where = "twice in one header";
                return -EPERM;
            }
            used = true;
            subs[n].header = h;
            subs[n].cred = i;
            n++;
        }
    }
    *ret_n = n;
    return 0;
}

/* value with the placeholder replaced, inside its Basic credentials: decoded, replaced,
 * encoded again after the scheme as the client wrote it. */
static int substitute_basic(const struct cred *c, struct slice value, struct buf *out)
{
    unsigned char dec[BB_MAX_HTTP_LINE], plain[BB_MAX_HTTP_LINE + CRED_VALUE_MAX];
    struct slice tok;
    ssize_t n;
    size_t pn = 0;
    int r = -ENOENT;

    n = basic_decode(value, dec);
    if (n < 0 || !basic_token(value, &tok))
        return -ENOENT;
    /* on the stack, not in a buffer that could grow and leave a copy behind in freed memory */
    const char *at = find(c, slice_make((const char *)dec, (size_t)n));
    if (at) {
        size_t before = (size_t)(at - (const char *)dec);
        size_t after = (size_t)n - before - c->placeholder_len;
        memcpy(plain, dec, before);
        memcpy(plain + before, c->value, c->value_len);
        memcpy(plain + before + c->value_len, at + c->placeholder_len, after);
        pn = before + c->value_len + after;
        r = -E2BIG;
        if (buf_append(out, value.p, (size_t)(tok.p - value.p)) == 0 &&
            b64_encode_append(out, plain, pn) == 0)
            r = 0;
    }
    explicit_bzero(plain, pn);
    explicit_bzero(dec, (size_t)n);
    return r;
}

int cred_substitute(const struct cred_store *s, size_t i, struct slice value, struct buf *out)
{
    const struct cred *c = &s->v[i];
    const char *at = find(c, value);
    size_t before, after;

    buf_reset(out);
    if (!at)
        return substitute_basic(c, value, out);
    before = (size_t)(at - value.p);
    after = value.len - before - c->placeholder_len;
    if ((before && buf_append(out, value.p, before) < 0) ||
        buf_append(out, c->value, c->value_len) < 0 ||
        (after && buf_append(out, at + c->placeholder_len, after) < 0))
        return -E2BIG;
    return 0;
}

enum { CK_SIZE, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER };

void cred_scan_init(struct cred_scan *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->ck_state = CK_SIZE;
}

/* What one scan holds of its own (not its raw and ws scans). */
static void scan_release(struct cred_scan *sc)
{
    if (sc->z) {
        inflateEnd(sc->z);
        free(sc->z);
    }
    if (sc->carry) {
        explicit_bzero(sc->carry, sc->carry_len);
        free(sc->carry);
    }
    free(sc->carry_raw);
    cred_scan_init(sc);
}

void cred_scan_done(struct cred_scan *sc)
{
    /* The raw and ws scans are plain ones: neither inflates nor reads frames (only sc is set
     * up for that), so they have no raw or ws of their own. */
    struct cred_scan *nested[] = { sc->raw, sc->ws };

    for (size_t i = 0; i < ARRAY_SIZE(nested); i++) {
        if (nested[i]) {
            scan_release(nested[i]);
            free(nested[i]);
        }
    }
    scan_release(sc);
}

void cred_scan_set_values(struct cred_scan *sc)
{
    sc->values = true;
}

void cred_scan_set_chunked(struct cred_scan *sc)
{
    sc->chunked = true;
}

static int scan_plain(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len,
                      uint64_t raw_at, unsigned raw_step);
static int scan_data(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len,
                     uint64_t raw_at);

int cred_scan_set_inflate(struct cred_scan *sc)
{
    z_stream *z = xcalloc(1, sizeof(*z));

    /* 15 + 32: a gzip or a zlib header, detected */
    if (inflateInit2(z, 15 + 32) != Z_OK) {
        free(z);
        return -ENOMEM;
    }
    sc->z = z;
    if (!sc->raw) {
        sc->raw = xcalloc(1, sizeof(*sc->raw));
        cred_scan_init(sc->raw);
        cred_scan_set_values(sc->raw);
        sc->raw->long_only = true;
    }
    sc->z_end = false;
    sc->z_in = sc->z_out = 0;
    sc->z_err = NULL;
    return 0;
}

static int unscannable(struct cred_scan *sc, const char *why)
{
    sc->z_err = why;
    return CRED_SCAN_UNSCANNABLE;
}

/* Inflate compressed data bytes (raw position raw_at on) and search what comes out, a step of
 * CRED_INFLATE_STEP compressed bytes at a time: the bytes a step makes count as being at its
 * start (less 3: a code may begin up to 2 bytes before), for the hold-back. */
static int inflate_scan(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len,
                        uint64_t raw_at)
{
    unsigned char out[16384];
    z_stream *z = sc->z;

    for (size_t i = 0; i < len;) {
        size_t n = MIN(len - i, (size_t)CRED_INFLATE_STEP);
        uint64_t at = raw_at + i >= 3 ? raw_at + i - 3 : 0;
        /* zlib's next_in is not const; inflate only reads it */
        /* NOLINTNEXTLINE(performance-no-int-to-ptr) */
        z->next_in = (Bytef *)(uintptr_t)(p + i);
        z->avail_in = (uInt)n;
        for (;;) {
            if (sc->z_end) { /* another gzip member follows (or trailing bytes: refused) */
                if (inflateReset(z) != Z_OK)
                    return unscannable(sc, "the compressed data cannot be inflated");
                sc->z_end = false;
            }
            z->next_out = out;
            z->avail_out = sizeof(out);
            int zr = inflate(z, Z_NO_FLUSH);
            size_t got = sizeof(out) - z->avail_out;
            if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_STREAM_ERROR ||
                zr == Z_MEM_ERROR) {
                explicit_bzero(out, got);
                return unscannable(sc, "the body is not valid gzip or deflate (zlib) data");
            }
            sc->z_out += got;
            if (got) {
                int hit = scan_plain(s, sc, (const char *)out, got, at, 0);
                explicit_bzero(out, got);
                if (hit >= 0)
                    return hit;
            }
            if (sc->z_out > CRED_INFLATE_MAX ||
                (sc->z_out > CRED_INFLATE_FREE &&
                 sc->z_out / CRED_INFLATE_RATIO > sc->z_in + (i + n - z->avail_in)))
                return unscannable(sc, "the body inflates past the proxy's limit (a "
                                       "decompression bomb?)");
            if (zr == Z_STREAM_END) {
                sc->z_end = true;
                if (!z->avail_in)
                    break;
                continue;
            }
            if (!z->avail_in && z->avail_out)
                break; /* all in, all out */
            if (zr == Z_BUF_ERROR && !got)
                break;
        }
        i += n;
    }
    sc->z_in += len;
    return -1;
}

static int scan_data(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len,
                     uint64_t raw_at)
{
    if (!sc->z)
        return scan_plain(s, sc, p, len, raw_at, 1);
    /* the compressed bytes as they are first: what the bottle gets without inflating */
    int hit = scan_plain(s, sc->raw, p, len, raw_at, 1);
    return hit >= 0 ? hit : inflate_scan(s, sc, p, len, raw_at);
}

/* The chunk data inside raw chunked bytes (already checked by the framing scanner, so this
 * only has to follow it: size line, data, CRLF, ..., then the trailer section). */
static int scan_chunked(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        char ch = p[i];
        switch (sc->ck_state) {
        case CK_SIZE:
            if (ascii_isdigit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) {
                unsigned d =
                    ascii_isdigit(ch) ? (unsigned)(ch - '0') : (unsigned)((ch | 0x20) - 'a' + 10);
                if (sc->ck_remaining < (UINT64_MAX >> 4))
                    sc->ck_remaining = (sc->ck_remaining << 4) | d;
            } else {
                sc->ck_state = ch == '\r' ? CK_SIZE_LF : CK_EXT;
            }
            i++;
            break;
        case CK_EXT:
            if (ch == '\r')
                sc->ck_state = CK_SIZE_LF;
            i++;
            break;
        case CK_SIZE_LF:
            i++;
            sc->ck_state = sc->ck_remaining ? CK_DATA : CK_TRAILER;
            break;
        case CK_DATA: {
            size_t take = (size_t)MIN((uint64_t)(len - i), sc->ck_remaining);
            int hit = scan_data(s, sc, p + i, take, sc->raw_total + i);
            if (hit >= 0)
                return hit;
            i += take;
            sc->ck_remaining -= take;
            if (!sc->ck_remaining)
                sc->ck_state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            sc->ck_state = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            sc->ck_state = CK_SIZE;
            i++;
            break;
        case CK_TRAILER:
        default:
            /* trailer fields: searched as they are */
            return scan_plain(s, sc, p + i, len - i, sc->raw_total + i, 1);
        }
    }
    return -1;
}

static int scan_all(const struct cred_store *s, const struct cred_scan *sc, struct slice hay)
{
    if (sc->values) {
        for (size_t i = 0; i < s->n; i++) {
            const struct cred *c = &s->v[i];
            if (sc->long_only && c->value_len < CRED_B64_MIN)
                continue;
            if (hay.len >= c->value_len && memmem(hay.p, hay.len, c->value, c->value_len))
                return (int)i;
            /* base64 (a reflected Basic header); too short a form would match by chance */
            for (unsigned k = 0; k < 3; k++)
                if (c->b64_len[k] >= CRED_B64_MIN && hay.len >= c->b64_len[k] &&
                    memmem(hay.p, hay.len, c->b64[k], c->b64_len[k]))
                    return (int)i;
        }
        return -1;
    }
    for (size_t i = 0; i < s->n; i++)
        if (find(&s->v[i], hay))
            return (int)i;
    return -1;
}

void cred_scan_set_websocket(struct cred_scan *sc)
{
    if (sc->ws)
        return;
    sc->ws = xcalloc(1, sizeof(*sc->ws));
    cred_scan_init(sc->ws);
    cred_scan_set_values(sc->ws);
    sc->ws_need = 2;
}

/*
 * RFC 6455 5.2 frames in the relayed bytes (already searched as they are): the payload of the
 * data frames (text, binary, continuation), unmasked, is searched as one stream by sc->ws, so a
 * value split across fragments (with control frames between) is found; positions are the raw
 * ones, for the hold-back.
 */
static int scan_frames(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (sc->ws_hdr_len < sc->ws_need) { /* the header */
            sc->ws_hdr[sc->ws_hdr_len++] = (unsigned char)p[i++];
            if (sc->ws_hdr_len == 2) {
                unsigned l7 = sc->ws_hdr[1] & 0x7f;
                sc->ws_need = 2 +
                              (l7 == 126   ? 2
                               : l7 == 127 ? 8
                                           : 0) +
                              (sc->ws_hdr[1] & 0x80 ? 4 : 0);
            }
            if (sc->ws_hdr_len == sc->ws_need) {
                unsigned l7 = sc->ws_hdr[1] & 0x7f, n = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
                uint64_t plen = n ? 0 : l7;
                for (unsigned k = 0; k < n; k++)
                    plen = plen << 8 | sc->ws_hdr[2 + k];
                sc->ws_left = plen;
                sc->ws_pos = 0;
                sc->ws_data = (sc->ws_hdr[0] & 0x0f) <= 2;
                if (!plen) {
                    sc->ws_hdr_len = 0;
                    sc->ws_need = 2;
                }
            }
            continue;
        }
        size_t take = (size_t)MIN((uint64_t)(len - i), sc->ws_left);
        if (sc->ws_data) {
            char buf[512];
            for (size_t done = 0; done < take;) {
                size_t n = MIN(take - done, sizeof(buf));
                memcpy(buf, p + i + done, n);
                if (sc->ws_hdr[1] & 0x80) { /* masked (a server must not; undone anyway) */
                    const unsigned char *key = sc->ws_hdr + sc->ws_need - 4;
                    for (size_t k = 0; k < n; k++)
                        buf[k] ^= (char)key[(sc->ws_pos + done + k) & 3];
                }
                int hit = scan_plain(s, sc->ws, buf, n, sc->raw_total + i + done, 1);
                explicit_bzero(buf, n);
                if (hit >= 0)
                    return hit;
                done += n;
            }
        }
        i += take;
        sc->ws_pos += take;
        sc->ws_left -= take;
        if (!sc->ws_left) {
            sc->ws_hdr_len = 0;
            sc->ws_need = 2;
        }
    }
    return -1;
}

int cred_scan_feed(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len)
{
    int hit;

    if (!s || !s->n || !len)
        return -1;
    if (sc->z_err)
        return CRED_SCAN_UNSCANNABLE;
    hit = sc->chunked ? scan_chunked(s, sc, p, len) : scan_data(s, sc, p, len, sc->raw_total);
    if (hit == -1 && sc->ws)
        hit = scan_frames(s, sc, p, len);
    sc->raw_total += len;
    return hit;
}

size_t cred_scan_hold(const struct cred_scan *sc)
{
    size_t h = 0;

    if (sc->raw && sc->raw->carry_len) /* the compressed bytes' own search */
        h = (size_t)(sc->raw_total - sc->raw->carry_raw[0]);
    if (sc->ws && sc->ws->carry_len) /* the WebSocket payload's */
        h = MAX(h, (size_t)(sc->raw_total - sc->ws->carry_raw[0]));
    if (!sc->carry_len)
        return h;
    if (!sc->carry_raw) /* placeholders: raw and scanned bytes are the same */
        return sc->carry_len;
    return MAX(h, (size_t)(sc->raw_total - sc->carry_raw[0]));
}

/* The length of the longest tail of t[0..n) that is a proper prefix of needle (KMP: the
 * automaton's state after t; f is scratch for needle_len entries). */
static size_t tail_prefix(const char *t, size_t n, const char *needle, size_t needle_len,
                          uint16_t *f)
{
    size_t k = 0;

    if (needle_len < 2)
        return 0;
    if (n > needle_len - 1) { /* a longer tail cannot be a proper prefix */
        t += n - (needle_len - 1);
        n = needle_len - 1;
    }
    f[0] = 0;
    for (size_t i = 1; i < needle_len; i++) {
        while (k && needle[i] != needle[k])
            k = f[k - 1];
        if (needle[i] == needle[k])
            k++;
        f[i] = (uint16_t)k;
    }
    k = 0;
    for (size_t i = 0; i < n; i++) {
        while (k && (k == needle_len || t[i] != needle[k]))
            k = f[k - 1];
        if (t[i] == needle[k])
            k++;
    }
    return k < needle_len ? k : 0;
}

/* cred_scan_hold_prefix() for one scanner's carry, in raw bytes up to raw_total. */
static size_t hold_prefix_one(const struct cred_store *s, const struct cred_scan *sc,
                              uint64_t raw_total, bool *ret_long)
{
    uint16_t f[CRED_VALUE_MAX * 4 / 3 + 4];
    size_t best = 0;

    if (!sc->values || !sc->carry_len)
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct cred *c = &s->v[i];
        for (unsigned k = 0; k < 4; k++) {
            const char *nd = k == 3 ? c->value : c->b64[k];
            size_t nl = k == 3 ? c->value_len : c->b64_len[k];
            size_t l;
            if (k < 3 && nl < CRED_B64_MIN)
                continue; /* not searched (scan_all) */
            l = tail_prefix(sc->carry, sc->carry_len, nd, nl, f);
            if (l >= CRED_PREFIX_LONG || (l && 2 * l >= nl))
                *ret_long = true;
            best = MAX(best, l);
        }
    }
    if (!best)
        return 0;
    if (!sc->carry_raw)
        return best;
    return (size_t)(raw_total - sc->carry_raw[sc->carry_len - best]);
}

size_t cred_scan_hold_prefix(const struct cred_store *s, const struct cred_scan *sc, bool *ret_long)
{
    size_t h;

    *ret_long = false;
    if (!s)
        return 0;
    h = hold_prefix_one(s, sc, sc->raw_total, ret_long);
    if (sc->ws) /* the frames' payload, joined */
        h = MAX(h, hold_prefix_one(s, sc->ws, sc->raw_total, ret_long));
    return h;
}

static bool is_ctl(char ch)
{
    unsigned char u = (unsigned char)ch;
    return (u < 0x20 && u != '\t') || u == 0x7f;
}

/* raw_step 1: byte j of p is at raw_at + j of the fed stream; 0: all of them count as being at
 * raw_at (inflated bytes). */
static int scan_plain(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len,
                      uint64_t raw_at, unsigned raw_step)
{
    char joint[2 * (CRED_VALUE_MAX * 4 / 3 + 4)]; /* the longest needle: a value's base64 */
    size_t keep, take;
    int hit;

    if (!len)
        return -1;
    /* a match needs at least one byte of the new data */
    keep = (sc->values ? s->max_value : s->max_placeholder) - 1;
    if (!sc->carry && keep)
        sc->carry = xmalloc(keep);
    if (sc->values && !sc->carry_raw && keep)
        sc->carry_raw = xmalloc(keep * sizeof(*sc->carry_raw));
    /* Matches that start in the carried tail and end in p. */
    if (sc->carry_len) {
        take = MIN(len, keep);
        /* a carry is kept (below) only with keep > 0, when sc->carry was allocated */
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        memcpy(joint, sc->carry, sc->carry_len);
        memcpy(joint + sc->carry_len, p, take);
        hit = scan_all(s, sc, slice_make(joint, sc->carry_len + take));
        explicit_bzero(joint, sc->carry_len + take);
        if (hit >= 0)
            return hit;
    }
    hit = scan_all(s, sc, slice_make(p, len));
    if (hit >= 0 || !keep)
        return hit;
    /* Keep the last `keep` bytes of carry + p (and, for values, where each one was). */
    if (len >= keep) {
        memcpy(sc->carry, p + len - keep, keep);
        sc->carry_len = keep;
        for (size_t j = 0; sc->carry_raw && j < keep; j++)
            sc->carry_raw[j] = raw_at + (len - keep + j) * raw_step;
    } else {
        size_t from_carry = MIN(sc->carry_len, keep - len);
        memmove(sc->carry, sc->carry + sc->carry_len - from_carry, from_carry);
        memcpy(sc->carry + from_carry, p, len);
        if (sc->carry_raw) {
            memmove(sc->carry_raw, sc->carry_raw + sc->carry_len - from_carry,
                    from_carry * sizeof(*sc->carry_raw));
            for (size_t j = 0; j < len; j++)
                sc->carry_raw[from_carry + j] = raw_at + j * raw_step;
        }
        sc->carry_len = from_carry + len;
    }
    /* No match holds a control character: nothing up to the last one needs keeping. */
    for (size_t j = sc->carry_len; j > 0; j--) {
        if (is_ctl(sc->carry[j - 1])) {
            size_t drop = j;
            memmove(sc->carry, sc->carry + drop, sc->carry_len - drop);
            if (sc->carry_raw)
                memmove(sc->carry_raw, sc->carry_raw + drop,
                        (sc->carry_len - drop) * sizeof(*sc->carry_raw));
            sc->carry_len -= drop;
            break;
        }
    }
    return -1;
}
