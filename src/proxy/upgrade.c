/*
 * WebSocket upgrades (RFC 6455 4, RFC 9110 7.8) through the proxy, in plain HTTP and inside an
 * intercepted TLS session: the GET with `Connection: Upgrade` and `Upgrade: websocket` goes
 * upstream with those two fields (the only hop-by-hop fields the proxy forwards) and without
 * `Sec-WebSocket-Extensions`, so no compression is negotiated; a `101` that switches to
 * websocket turns the connection into a relay of bytes in both directions through the sides'
 * transports (TLS or TCP). The request head had every check a request has (policy, method and
 * path rules, DLP, credential placeholders and substitution); the frames after it are relayed
 * as they are, and while credentials are held every byte from the origin is still searched for
 * their values, with the same hold-back as a response body (docs/credentials.md).
 */
#include "proxy/proxy-int.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/macro.h"

/* Whether the comma-separated list v holds token tok (case-insensitive). */
static bool list_has(struct slice v, const char *tok)
{
    size_t tl = strlen(tok), i = 0;

    while (i < v.len) {
        size_t s, e;
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        s = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        e = i;
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v.p + s, tok, tl) == 0)
            return true;
    }
    return false;
}

static bool fields_ask_websocket(const struct http_header *h, size_t n)
{
    bool conn = false, up = false;

    for (size_t i = 0; i < n; i++) {
        if (slice_eq_nocase_cstr(h[i].name, "connection") && list_has(h[i].value, "upgrade"))
            conn = true;
        else if (slice_eq_nocase_cstr(h[i].name, "upgrade") && list_has(h[i].value, "websocket"))
            up = true;
    }
    return conn && up;
}

bool upgrade_requested(const struct http_request *req)
{
    return !req->is_connect && req->version == 11 && req->body == HTTP_BODY_NONE &&
           slice_eq(req->method, SLICE_LIT("GET")) &&
           fields_ask_websocket(req->headers, req->n_headers);
}

bool upgrade_accepted(const struct http_response *resp)
{
    return resp->status == 101 && fields_ask_websocket(resp->headers, resp->n_headers);
}

bool upgrade_extended(const struct http_response *resp)
{
    for (size_t i = 0; i < resp->n_headers; i++)
        if (slice_eq_nocase_cstr(resp->headers[i].name, "sec-websocket-extensions") &&
            resp->headers[i].value.len)
            return true;
    return false;
}

/*
 * head is a complete head (ending in CRLF CRLF) built without hop-by-hop fields: drop every
 * `Sec-WebSocket-Extensions` line (request only) and add the two upgrade fields before the
 * blank line. Returns 0 or -E2BIG.
 */
static int finish_head(struct buf *head, bool request)
{
    static const char ext[] = "sec-websocket-extensions:";
    static const char add[] = "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    size_t i = 0, k = 0;

    if (head->len < 4 || memcmp(head->p + head->len - 4, "\r\n\r\n", 4) != 0)
        return -EINVAL;
    /* the lines, in place: the first (request or status line) always stays */
    while (i < head->len) {
        const char *nl = memchr(head->p + i, '\n', head->len - i);
        size_t len = nl ? (size_t)(nl - (head->p + i)) + 1 : head->len - i;
        bool drop = request && i > 0 && len > sizeof(ext) - 1 &&
                    strncasecmp(head->p + i, ext, sizeof(ext) - 1) == 0;
        if (!drop) {
            memmove(head->p + k, head->p + i, len);
            k += len;
        }
        i += len;
    }
    head->len = k - 2; /* without the blank line */
    if (buf_append(head, add, sizeof(add) - 1) < 0)
        return -E2BIG;
    return 0;
}

int upgrade_finish_request(struct buf *head)
{
    return finish_head(head, true);
}

int upgrade_finish_response(struct buf *head)
{
    return finish_head(head, false);
}

void upgrade_start(struct conn *c)
{
    /* What either side sent after its head is the first of the relayed bytes. */
    if (c->cin.len)
        (void)buf_append(&c->toup, c->cin.p, c->cin.len);
    buf_reset(&c->cin);
    c->upstream_reusable = false;
    c->client_keep_alive = false;
    c->resp_hold = 0;
    c->ws_release = false;
    c->ws_prefix_at = 0; /* not computed yet */
    c->deadline = 0;
    c->state = CS_UPGRADED;
}

/*
 * What stays back of tocl: the bytes at its end that begin a value (or one of its base64
 * forms; cred_scan_hold_prefix). A short beginning (under CRED_PREFIX_LONG bytes) waits at
 * most UPGRADE_HOLD_MS, so an interactive stream that happens to end in one is not stalled; a
 * longer one waits until the next bytes show it is not a value (or complete it: cut), however
 * long the origin pauses, so a reflection split across slow writes gives away at most the
 * short beginning. *ret_long says which (for the timer).
 */
static size_t hold_of(struct conn *c, bool *ret_long)
{
    size_t h;

    *ret_long = false;
    if (!c->scan_resp || !c->tocl.len)
        return 0;
    if (c->ws_prefix_at != c->reflect_scan.raw_total + 1) { /* searched more since */
        c->ws_prefix = cred_scan_hold_prefix(c->px->creds, &c->reflect_scan, &c->ws_prefix_long);
        c->ws_prefix_at = c->reflect_scan.raw_total + 1;
    }
    h = c->ws_prefix;
    *ret_long = c->ws_prefix_long;
    if (!h || (c->ws_release && !*ret_long) || (c->u.eof && !*ret_long))
        return 0;
    return MIN(h, c->tocl.len);
}

/* Read from src into b while b has room; > 0 bytes, 0 would block or full, -EPIPE end. */
static int fill(struct side *src, struct buf *b)
{
    size_t room = b->max > b->len ? b->max - b->len : 0;

    if (src->eof || room == 0)
        return 0;
    return conn_read_into(src, b, MIN(room, (size_t)BB_RELAY_CHUNK));
}

int upgrade_step(struct conn *c)
{
    int progress = 0, r;
    bool held_long = false;

    /* client -> origin */
    for (int round = 0; round < 4; round++) {
        r = side_flush(&c->u, &c->toup, &c->bytes_up);
        if (r < 0)
            return r;
        progress |= r > 0;
        if (c->toup.len)
            break;
        r = fill(&c->c, &c->toup);
        if (r == -EPIPE) {
            progress = 1;
            break;
        }
        if (r < 0)
            return r;
        if (r == 0)
            break;
        progress = 1;
    }
    if (c->c.eof && !c->toup.len && !c->u.wshut) {
        c->u.tp->shutdown(&c->u);
        c->u.wshut = true;
        progress = 1;
    }

    /* origin -> client: searched while values are held; a value could end in the next read,
     * so the bytes that could begin one wait (hold_of) */
    for (int round = 0; round < 4; round++) {
        size_t before = c->tocl.len;
        c->resp_hold = hold_of(c, &held_long);
        if (c->tocl.len > c->resp_hold) {
            ssize_t n = c->c.tp->send(&c->c, c->tocl.p, c->tocl.len - c->resp_hold);
            if (n < 0)
                return (int)n;
            if (n > 0) {
                buf_consume(&c->tocl, (size_t)n);
                c->bytes_down += (uint64_t)n;
                progress = 1;
            }
            if (c->tocl.len > c->resp_hold)
                break;
        }
        before = c->tocl.len;
        r = fill(&c->u, &c->tocl);
        if (r > 0)
            c->ws_release = false; /* new bytes: the search decides again what waits */
        if (r == -EPIPE) {
            progress = 1;
            continue; /* the held bytes go out on the next round */
        }
        if (r < 0)
            return r;
        if (r == 0)
            break;
        progress = 1;
        if (conn_reflected(c, before))
            return 0;
    }
    if (c->ws_release && !c->tocl.len)
        c->ws_release = false; /* what waited is out */
    c->resp_hold = hold_of(c, &held_long);
    if (c->u.eof && c->resp_hold) {
        /* The origin ended on the beginning of a value: those bytes never go out (a
         * reflection cut short by the origin's end is still most of a value). */
        explicit_bzero(c->tocl.p + c->tocl.len - c->resp_hold, c->resp_hold);
        c->tocl.len -= c->resp_hold;
        c->resp_hold = 0;
        progress = 1;
    }
    if (!c->resp_hold || held_long)
        c->deadline = 0;
    else if (!c->deadline)
        c->deadline = loop_now(c->px->loop) + (uint64_t)UPGRADE_HOLD_MS * 1000000ull;
    if (c->u.eof && !c->tocl.len && !c->c.wshut) {
        c->c.tp->shutdown(&c->c);
        c->c.wshut = true;
        progress = 1;
    }
    if (c->c.wshut && c->u.wshut) {
        conn_close(c);
        return 0;
    }
    return progress;
}
