/*
 * Credentials held by the egress daemon (docs/credentials.md): the real secret values that the
 * proxy puts into requests in place of the placeholders the bottle holds.
 *
 * The supervisor resolves each value on the host and sends the set to the daemon over a pipe
 * (never argv, never the environment) in the wire format below; the daemon decodes it once at
 * start (cred_store_decode) and keeps the values in memory excluded from core dumps
 * (MADV_DONTDUMP; the daemon is also made non-dumpable with no core limit).
 *
 * Wire format: one credential per line, fields separated by one space, the value last:
 *   NAME SP HOST SP PORT SP HEADER SP PLACEHOLDER SP VALUE LF
 * NAME [a-z0-9_-]{1,32}; HOST a lower-case host name (no wildcard); PORT 1..65535; HEADER an
 * HTTP token; PLACEHOLDER "bb-cred-" NAME "-" 16..64 hex digits; VALUE 1..CRED_VALUE_MAX bytes of
 * VCHAR / SP / HTAB (what an HTTP field value may hold; no CR, LF or NUL), not starting or ending
 * with whitespace. At most CRED_MAX lines, CRED_WIRE_MAX bytes; names and placeholders unique.
 *
 * Use in the proxy (the rules, docs/credentials.md):
 *  - cred_check_head(): a placeholder is allowed only inside the credential's own header of a
 *    request (not CONNECT) to the credential's host and port, once; anywhere else (the target,
 *    another header, a second header, another host or port) the request is refused
 *    (credential-misuse). It also says which header values to substitute.
 *  - cred_substitute(): the header value with the placeholder replaced by the real value.
 *  - cred_scan_feed(): a streaming search of request body bytes for any placeholder, matches
 *    across chunk boundaries included, with O(1) state.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "policy/policy.h"
#include "proxy/http1.h"

#define CRED_MAX 64
#define CRED_VALUE_MAX 8192
#define CRED_NAME_MAX POLICY_CRED_NAME_MAX
#define CRED_WIRE_MAX (CRED_MAX * (CRED_VALUE_MAX + 512))
#define CRED_PLACEHOLDER_PREFIX "bb-cred-"
/* "bb-cred-" + name + "-" + at most 64 hex digits */
#define CRED_PLACEHOLDER_MAX (8 + CRED_NAME_MAX + 1 + 64)

struct cred_store;

/* A valid value (what the wire format allows). */
bool cred_value_valid(const char *s, size_t n);

/* Append one credential in the wire format to out. Returns 0, -EINVAL (a field is not valid), or
 * -E2BIG. */
int cred_wire_append(struct buf *out, const char *name, const char *host, uint16_t port,
                     const char *header, const char *placeholder, const char *value);

/*
 * Decode the wire format. Returns 0 and *ret (an empty store for len 0), or -EINVAL with
 * *reterr (static text; never contains any of the input). The values are copied into memory
 * marked MADV_DONTDUMP; the caller wipes its input.
 */
int cred_store_decode(const char *p, size_t len, struct cred_store **ret, const char **reterr);
/* Wipes the values. NULL is fine. */
struct cred_store *cred_store_free(struct cred_store *s);
size_t cred_store_count(const struct cred_store *s);
const char *cred_name(const struct cred_store *s, size_t i);
const char *cred_host(const struct cred_store *s, size_t i);
uint16_t cred_port(const struct cred_store *s, size_t i);
const char *cred_header(const struct cred_store *s, size_t i);
/* The real value of credential i (*ret_len bytes, not NUL-terminated), for checks that must
 * recognise it elsewhere (the DLP "credential sent elsewhere" rule registers each one). Never
 * log or copy it anywhere dumpable. */
const char *cred_value(const struct cred_store *s, size_t i, size_t *ret_len);
/* True when some credential is for host (normalised, lower case) on port: its traffic must be
 * seen in clear to put the value in. */
bool cred_store_has_host(const struct cred_store *s, const char *host, uint16_t port);

struct cred_subst {
    size_t header; /* index into the request's headers */
    size_t cred;   /* index of the credential */
};

/*
 * Check a parsed request head bound for host:port (host as normalised by host_parse). Returns
 * 0 with *ret_n substitutions in subs[] (room for CRED_MAX), or -EPERM on misuse with
 * *ret_cred the credential's index and *ret_where a static description ("in the request
 * target", "in a header to a host it is not for", ...).
 */
int cred_check_head(const struct cred_store *s, const struct http_request *req, const char *host,
                    uint16_t port, struct cred_subst *subs, size_t *ret_n, size_t *ret_cred,
                    const char **ret_where);

/* value with the (one) placeholder of credential i replaced by the real value, into out (reset
 * first). Returns 0, -ENOENT (no placeholder in value) or -E2BIG. The caller wipes out. */
int cred_substitute(const struct cred_store *s, size_t i, struct slice value, struct buf *out);

/* Streaming search over a byte stream: for any placeholder (request bodies), or for any real
 * value (responses to a request one was put in: an origin that reflects it would hand it to
 * the bottle). O(1) state; the carried tail is allocated on first use. */
struct cred_scan {
    bool chunked;          /* decode the chunked framing first (the bytes were checked) */
    int ck_state;          /* private */
    uint64_t ck_remaining; /* private */
    bool values;           /* search the real values (all of them), not the placeholders */
    size_t carry_len;
    char *carry;         /* the last bytes seen, for matches across feeds */
    uint64_t *carry_raw; /* values only: where each carried byte is in the fed (raw) stream */
    uint64_t raw_total;  /* bytes fed so far */
    void *z;             /* z_stream while the data is inflated (cred_scan_set_inflate) */
    bool z_end;          /* a gzip member or zlib stream ended: the next byte starts another */
    uint64_t z_in, z_out;
    const char *z_err; /* why the data could not be searched (static text), NULL */
    /* while inflating: the compressed bytes searched as they are too (a gzip header's file
     * name, comment and extra field are not inflated output, and reach the bottle as they are) */
    struct cred_scan *raw;
    bool long_only; /* private: values under 8 bytes are not searched (raw: they would match
                     * compressed data by chance) */
    /* after a 101 to websocket (cred_scan_set_websocket): the data frames' payload, joined */
    struct cred_scan *ws;
    unsigned char ws_hdr[14]; /* private: the frame header being read */
    unsigned ws_hdr_len, ws_need;
    uint64_t ws_left, ws_pos;
    bool ws_data;
};

/* cred_scan_feed(): the data could not be searched (not gzip/zlib data, or it inflates past
 * CRED_INFLATE_MAX / CRED_INFLATE_RATIO): the caller must not relay more of it. */
#define CRED_SCAN_UNSCANNABLE (-2)
/* Inflated bytes per response at most, and per compressed byte past the first
 * CRED_INFLATE_FREE: a decompression bomb costs bounded CPU and ends in a refusal. */
#define CRED_INFLATE_MAX (64u << 20)
#define CRED_INFLATE_FREE (1u << 20)
#define CRED_INFLATE_RATIO 200u
/* Compressed bytes inflated in one step: what the hold-back counts in (cred_scan_hold). */
#define CRED_INFLATE_STEP 512

/* An empty scanner for placeholders (holds no memory yet). */
void cred_scan_init(struct cred_scan *sc);
/* Free what the scanner holds; it is empty (as after init) afterwards. */
void cred_scan_done(struct cred_scan *sc);
/* Search for the credentials' real values instead (before the first feed). */
void cred_scan_set_values(struct cred_scan *sc);
/* A body sent with Transfer-Encoding: chunked is searched in its decoded data (a placeholder
 * split by the chunk framing is still found): call before the first feed. */
void cred_scan_set_chunked(struct cred_scan *sc);
/* The body is Content-Encoding gzip or deflate (zlib; either, detected): its data (after the
 * chunked framing, if any) is inflated and the inflated bytes are searched, while the caller
 * relays the compressed ones. Call after the head was fed. Returns 0 or -ENOMEM. */
int cred_scan_set_inflate(struct cred_scan *sc);
/* The bytes fed from now on are WebSocket frames from a server (RFC 6455): searched as they
 * are, and the payload of the data frames as one stream too (a value split across fragments,
 * control frames between them, is found). */
void cred_scan_set_websocket(struct cred_scan *sc);
/* Feed len more bytes of the stream. Returns the index of a credential whose placeholder (or
 * value) occurs in the stream so far (>= 0), -1, or CRED_SCAN_UNSCANNABLE (sc->z_err says
 * why). */
int cred_scan_feed(const struct cred_store *s, struct cred_scan *sc, const char *p, size_t len);
/* How many of the last bytes fed could still be the start of a match that the next feed
 * completes: a reader must not pass those on until it has fed more (or the stream ended). A
 * value or placeholder holds no control character, so nothing before the last CR or LF is
 * ever held. Inflated data: from the compressed step (CRED_INFLATE_STEP bytes, and the 3 before
 * it, where a code of the first byte may begin) whose inflation began the carried bytes, or
 * from where the compressed bytes' own search (scanned as they are too) carries, if earlier. */
size_t cred_scan_hold(const struct cred_scan *sc);
/* A value search (cred_scan_set_values): of what cred_scan_hold() keeps back, only the bytes
 * that do begin a value or one of its base64 forms, in fed bytes (0: none does). *ret_long:
 * that beginning is CRED_PREFIX_LONG bytes or more of one (or half of a shorter one), too much
 * of a value to let go on a timer (the WebSocket relay, upgrade.c). */
#define CRED_PREFIX_LONG 8
size_t cred_scan_hold_prefix(const struct cred_store *s, const struct cred_scan *sc,
                             bool *ret_long);
