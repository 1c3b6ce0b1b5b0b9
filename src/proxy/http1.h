/*
 * HTTP/1.x message framing for the forward proxy (RFC 9110, RFC 9112). Everything here is a
 * pure function over bytes: no I/O, no allocation except into caller-supplied bufs, all sizes
 * capped (common/limits.h). Input comes from the bottle and from upstreams: hostile.
 *
 * Return convention for parsers: > 0 done (bytes consumed), 0 need more input, < 0 malformed
 * (-EBADMSG / -EMSGSIZE / -ENOTSUP ...) with *reterr filled: the HTTP status to answer with and a
 * short human-readable reason.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/limits.h"
#include "common/str.h"

struct http_error {
    int status;      /* 400, 414, 431, 501, 505, 502 (bad upstream response) */
    const char *msg; /* static string, e.g. "obsolete line folding" */
};

struct http_header {
    struct slice name;  /* as sent; compare with slice_eq_nocase */
    struct slice value; /* OWS trimmed */
};

enum http_body {
    HTTP_BODY_NONE,    /* no body */
    HTTP_BODY_LENGTH,  /* Content-Length bytes */
    HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked (final coding) */
    HTTP_BODY_CLOSE,   /* responses only: until the upstream closes */
    HTTP_BODY_MAX
};

struct http_request {
    struct slice method;
    struct slice target; /* request-target as sent */
    unsigned version;    /* 10 or 11 */
    struct http_header headers[BB_MAX_HTTP_HEADERS];
    size_t n_headers;
    size_t head_len; /* bytes of the head including the final CRLF CRLF */

    bool is_connect;
    enum http_body body;     /* NONE / LENGTH / CHUNKED */
    uint64_t content_length; /* when body == HTTP_BODY_LENGTH */
    bool keep_alive;         /* client wants the connection kept (version + Connection) */
    bool expect_continue;    /* Expect: 100-continue */
    struct slice host;       /* the Host header value, SLICE_NULL when absent */
};

struct http_response {
    unsigned status; /* 100..599 */
    unsigned version;
    struct http_header headers[BB_MAX_HTTP_HEADERS];
    size_t n_headers;
    size_t head_len;

    enum http_body body;
    uint64_t content_length;
    bool keep_alive; /* upstream will keep the connection open after this response */
};

/*
 * Find the end of a head (CRLF CRLF) incrementally. *scan holds how far earlier calls looked
 * (start it at 0; it never moves backwards). Returns the head length (> 0), 0 when more input is
 * needed, -EMSGSIZE when BB_MAX_HTTP_HEAD bytes hold no end of head.
 */
int http_head_end(const char *p, size_t len, size_t *scan);

/*
 * Parse a complete request head p[0..len) (len as returned by http_head_end).
 * Strict: CRLF line endings only (bare CR or bare LF: 400), no obs-fold (400), no whitespace
 * before the colon (400), token characters in method and field names, no NUL/CTL in values
 * (HTAB allowed), at most BB_MAX_HTTP_HEADERS fields (431), lines <= BB_MAX_HTTP_LINE (431),
 * target <= BB_MAX_HTTP_TARGET (414), HTTP/1.0 or HTTP/1.1 only (505).
 * Smuggling shapes: Content-Length together with Transfer-Encoding, several Content-Length
 * fields (even equal ones), a Content-Length that is not 1*DIGIT, Transfer-Encoding whose final
 * coding is not "chunked" or that names any other coding (501), more than one Host (400): all
 * refused.
 */
int http_parse_request(const char *p, size_t len, struct http_request *ret,
                       struct http_error *reterr);

/*
 * Parse a complete response head. request_method lets it apply RFC 9112 6.3: responses to
 * HEAD, 1xx, 204 and 304 have no body; 2xx to CONNECT is a tunnel (body NONE). Without
 * Content-Length or chunked, the body runs until close (HTTP_BODY_CLOSE, keep_alive false).
 * Errors use status 502.
 */
int http_parse_response(const char *p, size_t len, struct slice request_method,
                        struct http_response *ret, struct http_error *reterr);

enum http_target_form { HTTP_TARGET_ABSOLUTE, HTTP_TARGET_AUTHORITY, HTTP_TARGET_MAX };

struct http_target {
    enum http_target_form form;
    struct slice host; /* raw host text from the authority; IPv6 keeps its brackets
                        * ("[::1]"). To be normalised by host_parse(). */
    uint16_t port;     /* explicit port, or the scheme default (80 for http://) */
    bool port_explicit;
    bool tls;          /* an intercepted https request (the default port is 443, not 80) */
    struct slice path; /* origin-form to send upstream: path + "?" query; "/" when empty
                        * (points into the input, or at a static "/") */
};

/*
 * Parse a request-target as a forward proxy sees it.
 *  - CONNECT: authority-form "host:port", port required (RFC 9112 3.2.3).
 *  - otherwise: absolute-form "http://authority[path][?query]" (scheme case-insensitive). Only
 *    "http" is accepted ("https://..." targets get 400: clients use CONNECT for TLS). Origin-form
 *    ("/path") gets 400: this is a proxy.
 * Refused (400): userinfo ('@' anywhere in the authority), a fragment ('#'), '%' or '\\' in the
 * authority, empty host, bad or zero port, spaces/CTLs, an authority followed by anything but
 * '/', '?' or end.
 */
int http_parse_target(struct slice target, bool is_connect, struct http_target *ret,
                      struct http_error *reterr);

/*
 * Split a Host header value into host and port (default_port when absent); same refusals as
 * the authority in http_parse_target. Returns 0 or -EBADMSG.
 */
int http_parse_host_header(struct slice value, uint16_t default_port, struct slice *ret_host,
                           uint16_t *ret_port);

/* A resumable Transfer-Encoding: chunked framing scanner (RFC 9112 7.1). It does not decode:
 * it tells how many of the bytes offered belong to the chunked body, so the proxy can relay
 * them unchanged and know where the message ends. */
struct http_chunked {
    int state;          /* private */
    uint64_t remaining; /* private: bytes left in the current chunk */
    size_t line_len;    /* private: bytes of the current size/trailer line */
    size_t n_trailers;  /* private */
};

void http_chunked_init(struct http_chunked *c);
/*
 * Feed len bytes. Returns the number of bytes that belong to the body (<= len; less than len
 * only when the body ended inside p, then *ret_done is true), or -EBADMSG (bad size line, size
 * overflow, missing CRLF, line longer than BB_MAX_CHUNK_LINE, too many trailer fields).
 */
int64_t http_chunked_feed(struct http_chunked *c, const char *p, size_t len, bool *ret_done);
/* Added: the same, also handing each run of chunk data (decoded: no size lines, extensions or
 * trailers) to on_data as it passes; on_data returning < 0 stops the feed with -ECANCELED
 * (the state is then undefined). */
int64_t http_chunked_feed_data(struct http_chunked *c, const char *p, size_t len, bool *ret_done,
                               int (*on_data)(void *userdata, const char *p, size_t len),
                               void *userdata);

/*
 * Write the request head to send upstream into out (out->max bounds it):
 *   METHOD SP path SP HTTP/1.1 CRLF
 *   Host: <authority host>[:port when not 80]
 *   every client field except hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection,
 *   Proxy-Authorization, Proxy-Authenticate, TE, Trailer, Upgrade, and any field named in
 *   Connection) and except Host; Transfer-Encoding and Content-Length are kept (the body is
 *   relayed unchanged)
 *   CRLF
 * host_text is the normalised host to put in Host (IPv6 gets brackets added).
 * Returns 0 or -E2BIG.
 */
int http_build_upstream_request(const struct http_request *req, const struct http_target *t,
                                const char *host_text, struct buf *out);

/*
 * Write the response head to send to the client: status line as received (version rewritten
 * to HTTP/1.1), hop-by-hop fields removed as above, plus "Connection: close" when
 * !keep_alive_client. Returns 0 or -E2BIG.
 */
int http_build_client_response(const struct http_response *resp, const char *head,
                               bool keep_alive_client, struct buf *out);
