/*
 * HTTP/1.x framing for the forward proxy: head scanning, strict request/response head parsing,
 * request-target and Host parsing, a resumable chunked framing scanner and the head rewriters.
 * See docs/http.md for what is accepted, what is refused and why (RFC 9110 / RFC 9112).
 *
 * Everything here works on bytes the bottle or an upstream sent: every loop is bounded by the
 * input length and the caps in common/limits.h, nothing allocates except the builders' bufs.
 */
#include "proxy/http1.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/macro.h"

/* RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line. We
 * ignore up to this many (a bounded amount keeps http_head_end O(n) without state). */
#define HTTP_MAX_LEADING_CRLF 2

/* Largest Content-Length / chunk size we accept: keeps every length representable as int64_t
 * (off_t, ssize_t arithmetic in the relay). */
#define HTTP_MAX_BODY_LENGTH ((uint64_t)INT64_MAX)

/* Character classes (RFC 9110 5.6.2 tchar, 5.5 field-vchar, RFC 9112 3.2 request-target). */
enum {
    CC_TCHAR = 1u << 0,  /* token character */
    CC_VALUE = 1u << 1,  /* field value: SP, HTAB, VCHAR, obs-text */
    CC_TARGET = 1u << 2, /* request-target: VCHAR, obs-text (no SP, no CTL) */
    CC_HOST = 1u << 3,   /* reg-name characters we accept: ALPHA DIGIT - . _ obs-text */
    CC_HEX = 1u << 4,
};

static unsigned char cc_table[256];
static bool cc_ready;

static void cc_init(void)
{
    if (_likely_(cc_ready))
        return;
    for (unsigned c = 0; c < 256; c++) {
        unsigned char f = 0;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

        if (alnum || (c && strchr("!#$%&'*+-.^_`|~", (int)c)))
            f |= CC_TCHAR;
        if (c == '\t' || (c >= 0x20 && c != 0x7f))
            f |= CC_VALUE;
        if (c > 0x20 && c != 0x7f)
            f |= CC_TARGET;
        if (alnum || c == '-' || c == '.' || c == '_' || c >= 0x80)
            f |= CC_HOST;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            f |= CC_HEX;
        cc_table[c] = f;
    }
    cc_ready = true;
}

static inline bool cc_is(char c, unsigned cls)
{
    return (cc_table[(unsigned char)c] & cls) != 0;
}

static bool is_token(struct slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!cc_is(s.p[i], CC_TCHAR))
            return false;
    return true;
}

/*
 * Iterate the elements of a comma-separated list (RFC 9110 5.6.1). Each element is OWS-trimmed;
 * empty elements are returned as empty slices (callers ignore them). Returns false at the end.
 */
static bool list_next(struct slice *rest, struct slice *ret_elem)
{
    const char *comma;
    size_t n;

    if (!rest->p)
        return false;
    comma = rest->len ? memchr(rest->p, ',', rest->len) : NULL;
    n = comma ? (size_t)(comma - rest->p) : rest->len;
    *ret_elem = slice_trim_ows(slice_make(rest->p, n));
    if (comma) {
        rest->p = comma + 1;
        rest->len -= n + 1;
    } else {
        *rest = SLICE_NULL;
    }
    return true;
}

static bool list_has_nocase(struct slice list, const char *token)
{
    struct slice e;

    while (list_next(&list, &e))
        if (slice_eq_nocase_cstr(e, token))
            return true;
    return false;
}

static size_t skip_leading_crlf(const char *p, size_t len)
{
    size_t pos = 0;

    for (int i = 0; i < HTTP_MAX_LEADING_CRLF; i++) {
        if (pos + 2 > len || p[pos] != '\r' || p[pos + 1] != '\n')
            break;
        pos += 2;
    }
    return pos;
}

int http_head_end(const char *p, size_t len, size_t *scan)
{
    size_t lim = MIN(len, (size_t)BB_MAX_HTTP_HEAD);
    size_t i = *scan;
    size_t lead = skip_leading_crlf(p, MIN(len, (size_t)(2 * HTTP_MAX_LEADING_CRLF)));

    /* Every LF is looked at once: a head ends at a LF that closes an empty line. The empty
     * line is normally CRLF after CRLF; "\n\n" and "\n\r\n" also end the scan so that a bare-LF
     * head reaches the parser (and gets its 400) instead of waiting for the head timeout. */
    while (i < lim) {
        const char *lf = memchr(p + i, '\n', lim - i);
        size_t j;

        if (!lf)
            break;
        j = (size_t)(lf - p);
        i = j + 1;
        if (j + 1 <= lead)
            continue; /* one of the ignored empty lines before the start line */
        if ((j >= 1 && p[j - 1] == '\n') || (j >= 2 && p[j - 1] == '\r' && p[j - 2] == '\n')) {
            *scan = j + 1;
            return (int)(j + 1);
        }
    }
    if (lim > *scan)
        *scan = lim;
    if (len >= BB_MAX_HTTP_HEAD)
        return -EMSGSIZE;
    return 0;
}

/* ---- shared head parsing ------------------------------------------------------------------ */

/* What the field lines said about framing and connection handling. */
struct fields_info {
    bool cl_seen;
    uint64_t cl;
    bool te_seen;
    bool te_bad;          /* an element that is not a token (parameters, junk) */
    bool te_last_chunked; /* the last coding seen so far is chunked */
    size_t te_codings;    /* non-empty elements */
    size_t te_chunked;    /* how many of them are "chunked" */
    size_t host_count;
    struct slice host;
    bool conn_close;
    bool conn_keep_alive;
    bool expect_continue;
};

static int fail(struct http_error *reterr, int status, const char *msg, int r)
{
    reterr->status = status;
    reterr->msg = msg;
    return r;
}

/* Input ended before the head did: ask for more unless the cap is reached. */
static int need_more(size_t len, struct http_error *reterr, int status)
{
    if (len >= BB_MAX_HTTP_HEAD)
        return fail(reterr, status, "head too large", -EMSGSIZE);
    return 0;
}

static int note_field(const struct http_header *h, struct fields_info *fi,
                      struct http_error *reterr)
{
    struct slice n = h->name, rest, e;

    switch (n.len) {
    case 4:
        if (slice_eq_nocase_cstr(n, "host")) {
            fi->host_count++;
            fi->host = h->value;
        }
        break;
    case 6:
        if (slice_eq_nocase_cstr(n, "expect") && list_has_nocase(h->value, "100-continue"))
            fi->expect_continue = true;
        break;
    case 10:
        if (slice_eq_nocase_cstr(n, "connection")) {
            rest = h->value;
            while (list_next(&rest, &e)) {
                if (slice_eq_nocase_cstr(e, "close"))
                    fi->conn_close = true;
                else if (slice_eq_nocase_cstr(e, "keep-alive"))
                    fi->conn_keep_alive = true;
            }
        }
        break;
    case 14:
        if (slice_eq_nocase_cstr(n, "content-length")) {
            /* RFC 9112 6.3 item 5; RFC 9110 8.6: the list form "1,1" and repeated fields are
             * how smuggling starts, so anything but one field of 1*DIGIT is refused. */
            if (fi->cl_seen)
                return fail(reterr, 400, "duplicate Content-Length", -EBADMSG);
            if (str_to_u64(h->value, HTTP_MAX_BODY_LENGTH, &fi->cl) < 0)
                return fail(reterr, 400, "invalid Content-Length", -EBADMSG);
            fi->cl_seen = true;
        }
        break;
    case 17:
        if (slice_eq_nocase_cstr(n, "transfer-encoding")) {
            fi->te_seen = true;
            rest = h->value;
            while (list_next(&rest, &e)) {
                if (e.len == 0)
                    continue; /* RFC 9110 5.6.1: empty list elements are ignored */
                if (!is_token(e)) {
                    fi->te_bad = true;
                    continue;
                }
                fi->te_codings++;
                fi->te_last_chunked = slice_eq_nocase_cstr(e, "chunked");
                if (fi->te_last_chunked)
                    fi->te_chunked++;
            }
        }
        break;
    default:
        break;
    }
    return 0;
}

/*
 * Parse field lines from p[pos..len) up to and including the empty line. Fills hdrs/n and fi.
 * Returns the head length (> 0), 0 for more input, or < 0 with reterr (request statuses; the
 * response parser maps them to 502).
 */
static int parse_fields(const char *p, size_t len, size_t pos, struct http_header *hdrs,
                        size_t *ret_n, struct fields_info *fi, struct http_error *reterr)
{
    size_t n = 0;

    for (;;) {
        size_t name_start, value_start, value_end;
        struct http_header *h;
        int r;

        if (pos >= len)
            return need_more(len, reterr, 431);
        if (p[pos] == '\r') {
            if (pos + 1 >= len)
                return need_more(len, reterr, 431);
            if (p[pos + 1] != '\n')
                return fail(reterr, 400, "bare CR", -EBADMSG);
            pos += 2;
            break;
        }
        if (p[pos] == '\n')
            return fail(reterr, 400, "bare LF", -EBADMSG);
        if (p[pos] == ' ' || p[pos] == '\t')
            /* RFC 9112 5.2: obs-fold is refused, as is whitespace before the first field */
            return fail(reterr, 400, "obsolete line folding", -EBADMSG);

        name_start = pos;
        while (pos < len && cc_is(p[pos], CC_TCHAR))
            pos++;
        if (pos >= len)
            return need_more(len, reterr, 431);
        if (p[pos] != ':') {
            if (p[pos] == ' ' || p[pos] == '\t')
                /* RFC 9112 5.1: MUST reject whitespace between field name and colon */
                return fail(reterr, 400, "whitespace before colon", -EBADMSG);
            if (p[pos] == '\r' || p[pos] == '\n')
                return fail(reterr, 400, "field line without colon", -EBADMSG);
            return fail(reterr, 400, "invalid character in field name", -EBADMSG);
        }
        if (pos == name_start)
            return fail(reterr, 400, "empty field name", -EBADMSG);
        pos++;

        value_start = pos;
        while (pos < len && cc_is(p[pos], CC_VALUE))
            pos++;
        if (pos >= len)
            return need_more(len, reterr, 431);
        if (p[pos] == '\n')
            return fail(reterr, 400, "bare LF", -EBADMSG);
        if (p[pos] != '\r')
            return fail(reterr, 400, "control character in field value", -EBADMSG);
        if (pos + 1 >= len)
            return need_more(len, reterr, 431);
        if (p[pos + 1] != '\n')
            return fail(reterr, 400, "bare CR", -EBADMSG);
        value_end = pos;
        pos += 2;

        if (value_end - name_start > BB_MAX_HTTP_LINE)
            return fail(reterr, 431, "field line too long", -EMSGSIZE);
        if (n >= BB_MAX_HTTP_HEADERS)
            return fail(reterr, 431, "too many header fields", -EMSGSIZE);
        h = &hdrs[n++];
        h->name = slice_make(p + name_start, value_start - 1 - name_start);
        h->value = slice_trim_ows(slice_make(p + value_start, value_end - value_start));
        r = note_field(h, fi, reterr);
        if (r < 0)
            return r;
    }
    if (pos > BB_MAX_HTTP_HEAD)
        return fail(reterr, 431, "head too large", -EMSGSIZE);
    *ret_n = n;
    return (int)pos;
}

/*
 * "HTTP/" DIGIT "." DIGIT at p[pos..pos+8) (RFC 9112 2.3; HTTP-name is case-sensitive).
 * Returns 10/11, 0 for a well-formed but unsupported version, -1 when malformed.
 */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/", 5) != 0 || !ascii_isdigit(p[5]) || p[6] != '.' || !ascii_isdigit(p[7]))
        return -1;
    if (p[5] == '1' && (p[7] == '0' || p[7] == '1'))
        return 10 + (p[7] - '0');
    return 0;
}

/* ---- requests ----------------------------------------------------------------------------- */

int http_parse_request(const char *p, size_t len, struct http_request *ret,
                       struct http_error *reterr)
{
    struct http_request req;
    struct fields_info fi = { 0 };
    size_t pos, line_start, method_end, target_start, target_end;
    int v, r;

    cc_init();
    pos = line_start = skip_leading_crlf(p, len);

    /* request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 3) */
    while (pos < len && cc_is(p[pos], CC_TCHAR))
        pos++;
    if (pos >= len)
        return need_more(len, reterr, 431);
    if (pos == line_start || p[pos] != ' ')
        return fail(reterr, 400, "malformed method", -EBADMSG);
    method_end = pos++;

    target_start = pos;
    while (pos < len && cc_is(p[pos], CC_TARGET) && pos - target_start <= BB_MAX_HTTP_TARGET)
        pos++;
    if (pos - target_start > BB_MAX_HTTP_TARGET)
        return fail(reterr, 414, "request-target too long", -EMSGSIZE);
    if (pos >= len)
        return need_more(len, reterr, 431);
    if (pos == target_start || p[pos] != ' ')
        return fail(reterr, 400, "malformed request-target", -EBADMSG);
    target_end = pos++;

    if (len - pos < 10) {
        /* a line end already here means a short version, not a partial head */
        if (memchr(p + pos, '\n', len - pos))
            return fail(reterr, 400, "malformed HTTP version", -EBADMSG);
        return need_more(len, reterr, 431);
    }
    v = parse_version(p + pos);
    if (v < 0)
        return fail(reterr, 400, "malformed HTTP version", -EBADMSG);
    if (p[pos + 8] != '\r')
        return fail(reterr, 400, p[pos + 8] == '\n' ? "bare LF" : "malformed request line",
                    -EBADMSG);
    if (p[pos + 9] != '\n')
        return fail(reterr, 400, "bare CR", -EBADMSG);
    if (v == 0)
        return fail(reterr, 505, "HTTP version not supported", -ENOTSUP);
    pos += 8;
    /* The target has its own cap (414); the rest of the line (in practice, the method) is
     * held to the line cap. */
    if (pos - line_start - (target_end - target_start) > BB_MAX_HTTP_LINE)
        return fail(reterr, 431, "request line too long", -EMSGSIZE);
    pos += 2;

    r = parse_fields(p, len, pos, req.headers, &req.n_headers, &fi, reterr);
    if (r <= 0)
        return r;

    req.method = slice_make(p + line_start, method_end - line_start);
    req.target = slice_make(p + target_start, target_end - target_start);
    req.version = (unsigned)v;
    req.head_len = (size_t)r;
    req.is_connect = slice_eq(req.method, SLICE_LIT("CONNECT"));

    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one otherwise */
    if (fi.host_count > 1)
        return fail(reterr, 400, "multiple Host fields", -EBADMSG);
    if (fi.host_count == 0 && v == 11)
        return fail(reterr, 400, "missing Host", -EBADMSG);
    req.host = fi.host_count ? fi.host : SLICE_NULL;

    req.body = HTTP_BODY_NONE;
    req.content_length = 0;
    if (fi.te_seen) {
        /* RFC 9112 6.1: TE in HTTP/1.0 means faulty framing; TE with CL is a smuggling
         * attempt (we refuse instead of "TE wins"); chunked must be final and only once. */
        if (v == 10)
            return fail(reterr, 400, "Transfer-Encoding in HTTP/1.0", -EBADMSG);
        if (fi.cl_seen)
            return fail(reterr, 400, "Content-Length with Transfer-Encoding", -EBADMSG);
        if (fi.te_bad || fi.te_codings == 0)
            return fail(reterr, 400, "malformed Transfer-Encoding", -EBADMSG);
        if (fi.te_chunked > 1)
            return fail(reterr, 400, "chunked applied more than once", -EBADMSG);
        if (fi.te_chunked == 1 && !fi.te_last_chunked)
            return fail(reterr, 400, "chunked is not the final coding", -EBADMSG);
        if (fi.te_chunked == 0 || fi.te_codings > 1)
            return fail(reterr, 501, "unsupported transfer coding", -ENOTSUP);
        req.body = HTTP_BODY_CHUNKED;
    } else if (fi.cl_seen) {
        req.body = HTTP_BODY_LENGTH;
        req.content_length = fi.cl;
    }
    if (req.is_connect && (req.body == HTTP_BODY_CHUNKED || req.content_length > 0))
        /* RFC 9110 9.3.6: CONNECT content has no defined semantics; after the head the
         * bytes belong to the tunnel, so a body would be read as tunnel data. */
        return fail(reterr, 400, "CONNECT with a body", -EBADMSG);

    req.keep_alive = v == 11 ? !fi.conn_close : (fi.conn_keep_alive && !fi.conn_close);
    /* RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored */
    req.expect_continue = fi.expect_continue && v == 11;

    memcpy(ret, &req, offsetof(struct http_request, headers));
    memcpy(ret->headers, req.headers, req.n_headers * sizeof(req.headers[0]));
    memcpy((char *)ret + offsetof(struct http_request, n_headers), &req.n_headers,
           sizeof(req) - offsetof(struct http_request, n_headers));
    return r;
}

/* ---- responses ---------------------------------------------------------------------------- */

/* Locates the reason phrase of a status line starting at p (after skipped empty lines). */
static size_t status_line_start(const char *p, size_t len)
{
    return skip_leading_crlf(p, len);
}

int http_parse_response(const char *p, size_t len, struct slice request_method,
                        struct http_response *ret, struct http_error *reterr)
{
    struct http_response resp;
    struct fields_info fi = { 0 };
    size_t pos, line_start;
    int v, r;
    unsigned status;

    cc_init();
    pos = line_start = status_line_start(p, len);

    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 4) */
    if (len - pos < 13) {
        if (memchr(p + pos, '\n', len - pos))
            return fail(reterr, 502, "malformed status line", -EBADMSG);
        return need_more(len, reterr, 502);
    }
    v = parse_version(p + pos);
    if (v < 0 || p[pos + 8] != ' ' || !ascii_isdigit(p[pos + 9]) || !ascii_isdigit(p[pos + 10]) ||
        !ascii_isdigit(p[pos + 11]))
        return fail(reterr, 502, "malformed status line", -EBADMSG);
    if (v == 0)
        return fail(reterr, 502, "unsupported upstream HTTP version", -ENOTSUP);
    status = (unsigned)(p[pos + 9] - '0') * 100 + (unsigned)(p[pos + 10] - '0') * 10 +
             (unsigned)(p[pos + 11] - '0');
    if (status < 100 || status > 599)
        return fail(reterr, 502, "invalid status code", -EBADMSG);
    pos += 12;
    /* Tolerate a missing SP when the reason is empty ("HTTP/1.1 200\r\n"): common, harmless. */
    if (p[pos] == ' ') {
        pos++;
        while (pos < len && cc_is(p[pos], CC_VALUE))
            pos++;
    }
    if (pos >= len)
        return need_more(len, reterr, 502);
    if (p[pos] != '\r')
        return fail(reterr, 502, "malformed status line", -EBADMSG);
    if (pos + 1 >= len)
        return need_more(len, reterr, 502);
    if (p[pos + 1] != '\n')
        return fail(reterr, 502, "malformed status line", -EBADMSG);
    if (pos - line_start > BB_MAX_HTTP_LINE)
        return fail(reterr, 502, "status line too long", -EMSGSIZE);
    pos += 2;

    r = parse_fields(p, len, pos, resp.headers, &resp.n_headers, &fi, reterr);
    if (r < 0) {
        reterr->status = 502;
        return r;
    }
    if (r == 0)
        return 0;

    resp.status = status;
    resp.version = (unsigned)v;
    resp.head_len = (size_t)r;
    resp.content_length = 0;

    /* Framing errors are errors whatever the status: a confused upstream is not relayed. */
    if (fi.te_seen) {
        if (v == 10)
            return fail(reterr, 502, "Transfer-Encoding in HTTP/1.0 response", -EBADMSG);
        if (fi.cl_seen)
            return fail(reterr, 502, "Content-Length with Transfer-Encoding", -EBADMSG);
        if (fi.te_bad || fi.te_codings == 0)
            return fail(reterr, 502, "malformed Transfer-Encoding", -EBADMSG);
        if (fi.te_chunked > 1)
            return fail(reterr, 502, "chunked applied more than once", -EBADMSG);
    }

    /* RFC 9112 6.3 */
    if (status < 200 || status == 204 || status == 304 ||
        slice_eq(request_method, SLICE_LIT("HEAD")))
        resp.body = HTTP_BODY_NONE;
    else if (slice_eq(request_method, SLICE_LIT("CONNECT")) && status < 300)
        resp.body = HTTP_BODY_NONE;
    else if (fi.te_seen)
        /* item 4: chunked final -> chunked; otherwise read until close */
        resp.body = fi.te_last_chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE;
    else if (fi.cl_seen) {
        resp.body = HTTP_BODY_LENGTH;
        resp.content_length = fi.cl;
    } else
        resp.body = HTTP_BODY_CLOSE;

    resp.keep_alive = v == 11 ? !fi.conn_close : (fi.conn_keep_alive && !fi.conn_close);
    if (resp.body == HTTP_BODY_CLOSE)
        resp.keep_alive = false;

    memcpy(ret, &resp, offsetof(struct http_response, headers));
    memcpy(ret->headers, resp.headers, resp.n_headers * sizeof(resp.headers[0]));
    memcpy((char *)ret + offsetof(struct http_response, n_headers), &resp.n_headers,
           sizeof(resp) - offsetof(struct http_response, n_headers));
    return r;
}

/* ---- targets and Host --------------------------------------------------------------------- */

/*
 * authority = host [ ":" port ] with host = reg-name / "[" IPv6 "]" (RFC 3986 3.2), stricter:
 * reg-name is ALPHA / DIGIT / "-" / "." / "_" / obs-text (IDN goes to host_parse), the IP
 * literal is HEXDIG / ":" / "." only (no zone id, no IPvFuture), the port is 1*DIGIT in
 * 1..65535. Userinfo, '%', '\\' and everything else are refused by the character classes.
 */
static int parse_authority(struct slice a, bool port_required, uint16_t default_port,
                           struct slice *ret_host, uint16_t *ret_port, bool *ret_explicit)
{
    size_t i = 0;
    struct slice host;
    uint16_t port = default_port;
    bool expl = false;

    if (a.len == 0 || a.len > BB_MAX_HOST_INPUT + 7)
        return -EBADMSG;
    if (a.p[0] == '[') {
        i = 1;
        while (i < a.len && (cc_is(a.p[i], CC_HEX) || a.p[i] == ':' || a.p[i] == '.'))
            i++;
        if (i >= a.len || a.p[i] != ']' || i == 1)
            return -EBADMSG;
        i++;
    } else {
        while (i < a.len && cc_is(a.p[i], CC_HOST))
            i++;
        if (i == 0)
            return -EBADMSG;
    }
    host = slice_make(a.p, i);
    if (i < a.len) {
        if (a.p[i] != ':')
            return -EBADMSG;
        if (str_to_port(slice_make(a.p + i + 1, a.len - i - 1), &port) < 0)
            return -EBADMSG;
        expl = true;
    } else if (port_required)
        return -EBADMSG;
    *ret_host = host;
    *ret_port = port;
    if (ret_explicit)
        *ret_explicit = expl;
    return 0;
}

int http_parse_target(struct slice target, bool is_connect, struct http_target *ret,
                      struct http_error *reterr)
{
    struct http_target t = { 0 };
    struct slice auth;
    size_t i;

    cc_init();
    if (target.len > BB_MAX_HTTP_TARGET)
        return fail(reterr, 414, "request-target too long", -EMSGSIZE);
    if (target.len == 0 || !target.p)
        return fail(reterr, 400, "empty request-target", -EBADMSG);
    for (i = 0; i < target.len; i++)
        if (!cc_is(target.p[i], CC_TARGET))
            return fail(reterr, 400, "invalid character in request-target", -EBADMSG);
    /* A fragment is never sent (RFC 9110 7.1) and '#' is how "evil.com#@allowed.com" hides. */
    if (memchr(target.p, '#', target.len))
        return fail(reterr, 400, "fragment in request-target", -EBADMSG);

    if (is_connect) {
        /* RFC 9112 3.2.3: authority-form, port required */
        t.form = HTTP_TARGET_AUTHORITY;
        if (parse_authority(target, true, 0, &t.host, &t.port, &t.port_explicit) < 0)
            return fail(reterr, 400, "invalid CONNECT authority", -EBADMSG);
        t.path = SLICE_NULL;
        *ret = t;
        return 0;
    }

    /* RFC 9112 3.2.2: absolute-form; scheme is case-insensitive (RFC 3986 3.1) */
    if (target.len < 7 || !slice_eq_nocase(slice_make(target.p, 7), SLICE_LIT("http://")))
        return fail(reterr, 400,
                    target.p[0] == '/' ? "origin-form request to a proxy"
                                       : "only http:// absolute-form targets are proxied",
                    -EBADMSG);
    t.form = HTTP_TARGET_ABSOLUTE;
    i = 7;
    while (i < target.len && target.p[i] != '/' && target.p[i] != '?')
        i++;
    auth = slice_make(target.p + 7, i - 7);
    if (memchr(auth.p, '@', auth.len))
        return fail(reterr, 400, "userinfo in request-target", -EBADMSG);
    if (parse_authority(auth, false, 80, &t.host, &t.port, &t.port_explicit) < 0)
        return fail(reterr, 400, "invalid authority in request-target", -EBADMSG);
    if (i < target.len)
        /* path-abempty [ "?" query ]; a bare "?query" is sent as "/?query" by the builder */
        t.path = slice_make(target.p + i, target.len - i);
    else
        t.path = SLICE_LIT("/");
    *ret = t;
    return 0;
}

int http_parse_host_header(struct slice value, uint16_t default_port, struct slice *ret_host,
                           uint16_t *ret_port)
{
    cc_init();
    return parse_authority(value, false, default_port, ret_host, ret_port, NULL);
}

/* ---- chunked framing ---------------------------------------------------------------------- */

enum chunked_state {
    CH_SIZE_START, /* first hex digit of a chunk-size */
    CH_SIZE,       /* more hex digits, BWS, ';' or CR */
    CH_SIZE_BWS,   /* whitespace after the size: more of it or ';' */
    CH_EXT,        /* chunk-ext up to CR */
    CH_SIZE_LF,    /* CR seen at the end of the size line */
    CH_DATA,       /* remaining bytes of chunk data */
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or CR of the final empty line */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF, /* CR of the final empty line seen */
    CH_DONE,
    CH_ERROR,
};

void http_chunked_init(struct http_chunked *c)
{
    cc_init();
    *c = (struct http_chunked){ .state = CH_SIZE_START };
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int64_t http_chunked_feed(struct http_chunked *c, const char *p, size_t len, bool *ret_done)
{
    return http_chunked_feed_data(c, p, len, ret_done, NULL, NULL);
}

int64_t http_chunked_feed_data(struct http_chunked *c, const char *p, size_t len, bool *ret_done,
                               int (*on_data)(void *userdata, const char *p, size_t len),
                               void *userdata)
{
    size_t i = 0;
    int d;

    cc_init();
    if (c->state == CH_ERROR)
        return -EBADMSG;
    if (c->state == CH_DONE) {
        *ret_done = true;
        return 0;
    }
    while (i < len) {
        char ch = p[i];

        switch (c->state) {
        case CH_DATA: {
            uint64_t n = MIN(c->remaining, (uint64_t)(len - i));
            if (on_data && n && on_data(userdata, p + i, (size_t)n) < 0)
                return -ECANCELED;
            i += (size_t)n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        case CH_SIZE_START:
            /* RFC 9112 7.1: chunk-size = 1*HEXDIG */
            d = hex_value(ch);
            if (d < 0)
                goto bad;
            c->remaining = (uint64_t)d;
            c->line_len = 0;
            c->state = CH_SIZE;
            break;
        case CH_SIZE:
            d = hex_value(ch);
            if (d >= 0) {
                if (c->remaining > (HTTP_MAX_BODY_LENGTH - (uint64_t)d) / 16)
                    goto bad; /* size overflow */
                c->remaining = c->remaining * 16 + (uint64_t)d;
            } else if (ch == ';')
                c->state = CH_EXT;
            else if (ch == ' ' || ch == '\t')
                c->state = CH_SIZE_BWS;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else
                goto bad;
            break;
        case CH_SIZE_BWS:
            /* RFC 9112 7.1.1: BWS is only allowed before a chunk-ext's ';' */
            if (ch == ';')
                c->state = CH_EXT;
            else if (ch != ' ' && ch != '\t')
                goto bad;
            break;
        case CH_EXT:
            /* chunk-ext is relayed, not interpreted: any field-vchar/SP/HTAB up to CR */
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!cc_is(ch, CC_VALUE))
                goto bad;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto bad;
            c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
            c->line_len = 0;
            i++;
            continue;
        case CH_DATA_CR:
            if (ch != '\r')
                goto bad;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_SIZE_START;
            break;
        case CH_TRAILER_START:
            /* RFC 9112 7.1.2: trailer-section = *( field-line CRLF ) CRLF */
            c->line_len = 0;
            if (ch == '\r') {
                c->state = CH_END_LF;
                break;
            }
            if (!cc_is(ch, CC_TCHAR))
                goto bad; /* bare LF, obs-fold, junk */
            if (c->n_trailers >= BB_MAX_HTTP_HEADERS)
                goto bad;
            c->n_trailers++;
            c->line_len = 1;
            c->state = CH_TRAILER_NAME;
            i++;
            continue;
        case CH_TRAILER_NAME:
            if (ch == ':')
                c->state = CH_TRAILER_VALUE;
            else if (!cc_is(ch, CC_TCHAR))
                goto bad;
            break;
        case CH_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (!cc_is(ch, CC_VALUE))
                goto bad;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_TRAILER_START;
            i++;
            continue;
        case CH_END_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_DONE;
            *ret_done = true;
            return (int64_t)(i + 1);
        default:
            goto bad;
        }
        i++;
        if (ch != '\r') /* line lengths do not count the CRLF */
            c->line_len++;
        if (c->state >= CH_TRAILER_START) {
            if (c->line_len > BB_MAX_HTTP_LINE)
                goto bad;
        } else if (c->line_len > BB_MAX_CHUNK_LINE)
            goto bad;
    }
    *ret_done = false;
    return (int64_t)len;
bad:
    c->state = CH_ERROR;
    return -EBADMSG;
}

/* ---- head builders ------------------------------------------------------------------------ */

/* RFC 9110 7.6.1 hop-by-hop fields, plus Proxy-Connection (de facto) and the proxy-auth pair:
 * credentials for this proxy are never forwarded. */
static bool is_hop_by_hop(struct slice name)
{
    static const char *const hop[] = {
        "connection", "keep-alive",         "proxy-connection", "proxy-authorization",
        "te",         "proxy-authenticate", "trailer",          "upgrade",
    };
    for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
        if (slice_eq_nocase_cstr(name, hop[i]))
            return true;
    return false;
}

static bool is_framing(struct slice name)
{
    return slice_eq_nocase_cstr(name, "content-length") ||
           slice_eq_nocase_cstr(name, "transfer-encoding");
}

/*
 * Whether a field is dropped when forwarding: hop-by-hop, or named in a Connection field
 * (RFC 9110 7.6.1). A Connection field naming Content-Length or Transfer-Encoding is ignored
 * for those two: dropping framing fields on request would let a client make us disagree with
 * the upstream about where the body ends.
 */
static bool field_dropped(const struct http_header *hdrs, size_t n, struct slice name)
{
    if (is_hop_by_hop(name))
        return true;
    if (is_framing(name))
        return false;
    for (size_t i = 0; i < n; i++) {
        struct slice rest = hdrs[i].value, e;

        if (!slice_eq_nocase_cstr(hdrs[i].name, "connection"))
            continue;
        while (list_next(&rest, &e))
            if (slice_eq_nocase(e, name))
                return true;
    }
    return false;
}

static int append_field(struct buf *out, struct slice name, struct slice value)
{
    int r = buf_append(out, name.p, name.len);
    if (r >= 0)
        r = buf_append(out, ": ", 2);
    if (r >= 0)
        r = buf_append(out, value.p, value.len);
    if (r >= 0)
        r = buf_append(out, "\r\n", 2);
    return r;
}

int http_build_upstream_request(const struct http_request *req, const struct http_target *t,
                                const char *host_text, struct buf *out)
{
    struct slice host = slice_cstr(host_text), path = t->path;
    bool v6, te_done = false;
    size_t n_out = 1; /* Host */
    int r;

    cc_init();
    if (req->is_connect || t->form != HTTP_TARGET_ABSOLUTE || host.len == 0)
        return -EINVAL;
    /* host_text is normalised upstream, but a CR/LF here would inject header lines */
    for (size_t i = 0; i < host.len; i++)
        if (!cc_is(host.p[i], CC_HOST) && host.p[i] != ':' && host.p[i] != '[' && host.p[i] != ']')
            return -EINVAL;
    v6 = memchr(host.p, ':', host.len) && host.p[0] != '[';
    if (path.len == 0)
        path = SLICE_LIT("/");

    /* RFC 9112 3.2.1: origin-form to the origin server; always HTTP/1.1 from us */
    r = buf_append(out, req->method.p, req->method.len);
    if (r >= 0)
        r = buf_append(out, path.p[0] == '?' ? " /" : " ", path.p[0] == '?' ? 2 : 1);
    if (r >= 0)
        r = buf_append(out, path.p, path.len);
    if (r >= 0)
        r = buf_printf(out, " HTTP/1.1\r\nHost: %s%.*s%s", v6 ? "[" : "", (int)host.len, host.p,
                       v6 ? "]" : "");
    if (r >= 0 && t->port != (t->tls ? 443 : 80))
        r = buf_printf(out, ":%u", (unsigned)t->port);
    if (r >= 0)
        r = buf_append(out, "\r\n", 2);

    for (size_t i = 0; r >= 0 && i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];

        if (slice_eq_nocase_cstr(h->name, "host") ||
            field_dropped(req->headers, req->n_headers, h->name))
            continue;
        /* what we send stays within our own caps (an HTTP/1.0 request with 100 fields and
         * no Host would otherwise grow to 101) */
        if (++n_out > BB_MAX_HTTP_HEADERS) {
            buf_done(out);
            return -E2BIG;
        }
        /* Framing fields are re-emitted in canonical form, so the upstream parses exactly
         * what we parsed (no odd spacing, case or leading zeros to disagree about). */
        if (slice_eq_nocase_cstr(h->name, "transfer-encoding")) {
            if (!te_done && req->body == HTTP_BODY_CHUNKED)
                r = buf_append_str(out, "Transfer-Encoding: chunked\r\n");
            te_done = true;
        } else if (slice_eq_nocase_cstr(h->name, "content-length")) {
            if (req->body == HTTP_BODY_LENGTH)
                r = buf_printf(out, "Content-Length: %" PRIu64 "\r\n", req->content_length);
        } else
            r = append_field(out, h->name, h->value);
    }
    if (r >= 0)
        r = buf_append(out, "\r\n", 2);
    return r < 0 ? r : 0;
}

int http_build_client_response(const struct http_response *resp, const char *head,
                               bool keep_alive_client, struct buf *out)
{
    size_t pos = status_line_start(head, resp->head_len), end, n_out = 0;
    int r;

    cc_init();
    /* The status line was validated by http_parse_response: "HTTP/x.y NNN[ reason]\r\n" */
    if (resp->head_len < pos + 14)
        return -EINVAL;
    end = pos + 12;
    while (end < resp->head_len && head[end] != '\r')
        end++;
    r = buf_append(out, "HTTP/1.1", 8);
    if (r >= 0)
        r = buf_append(out, head + pos + 8, end - pos - 8);
    if (r >= 0)
        r = buf_append(out, "\r\n", 2);
    for (size_t i = 0; r >= 0 && i < resp->n_headers; i++) {
        const struct http_header *h = &resp->headers[i];

        if (field_dropped(resp->headers, resp->n_headers, h->name))
            continue;
        n_out++;
        r = append_field(out, h->name, h->value);
    }
    if (r >= 0 && !keep_alive_client) {
        if (++n_out > BB_MAX_HTTP_HEADERS) {
            buf_done(out);
            return -E2BIG;
        }
        r = buf_append_str(out, "Connection: close\r\n");
    }
    if (r >= 0)
        r = buf_append(out, "\r\n", 2);
    return r < 0 ? r : 0;
}
