/*
 * The proxy's refusals and error replies (403, 400-class, 502/503/504), each with its audit
 * record; and the records of connections refused before a request was read.
 */
#include "proxy/proxy-int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macro.h"

static const char *target_text(const struct conn *c)
{
    return c->host.name[0] ? c->host.name : "(invalid)";
}

void conn_set_addr(struct conn *c, const struct sockaddr *sa)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, a, c->addr_text, sizeof(c->addr_text)))
        c->addr_text[0] = '\0';
}

/*
 * The record of this exchange. Allowed outcomes are written at once (they carry byte counts);
 * denials go through the aggregation (repeats of one decision become one record with "count").
 * Returns 0, or -errno when it could not be recorded (the audit sink is failing).
 */
int conn_audit(struct conn *c, bool allow, const char *reason)
{
    struct audit_event ev = {
        .kind = c->is_connect ? AUDIT_CONNECT : AUDIT_HTTP,
        .host = target_text(c),
        .port = c->port,
        .allow = allow,
        .reason = reason,
        .bytes_up = c->bytes_up,
        .bytes_down = c->bytes_down,
        .method = c->is_connect ? NULL : c->method,
        .addr = c->addr_text[0] ? c->addr_text : NULL,
        .path = !c->is_connect && c->path[0] ? c->path : NULL,
        .status = c->status,
        .reused = c->reused,
    };
    c->audited = true;
    return allow ? audit_emit(c->px->audit, &ev) : audit_note(c->px->audit, &ev);
}

/* ---------------------------------------------------------------- responses */

/* Queue a complete error response and switch to CS_DRAIN (close after sending). */
static void conn_respond_error(struct conn *c, int status, const char *hdr, const char *reason,
                               const char *text)
{
    static const struct {
        int status;
        const char *phrase;
    } phrases[] = {
        { 400, "Bad Request" },
        { 403, "Forbidden" },
        { 408, "Request Timeout" },
        { 414, "URI Too Long" },
        { 431, "Request Header Fields Too Large" },
        { 501, "Not Implemented" },
        { 502, "Bad Gateway" },
        { 503, "Service Unavailable" },
        { 504, "Gateway Timeout" },
        { 505, "HTTP Version Not Supported" },
    };
    const char *phrase = "Error";
    struct buf body = BUF_INIT(1024);

    for (size_t i = 0; i < ARRAY_SIZE(phrases); i++)
        if (phrases[i].status == status)
            phrase = phrases[i].phrase;
    if (buf_printf(&body, "%s\n", text) < 0)
        buf_append_str(&body, "blocked by bot-bottle\n");
    buf_reset(&c->tocl);
    if (buf_printf(&c->tocl,
                   "HTTP/1.1 %d %s\r\n%s: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   status, phrase, hdr, reason, body.len, buf_str(&body)) < 0)
        buf_append_str(&c->tocl, "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n"
                                 "Content-Length: 0\r\n\r\n");
    buf_done(&body);
    c->status = status;
    if (c->rq) {
        resolve_req_cancel(c->rq);
        c->rq = NULL;
    }
    side_close(c->px, &c->u);
    tunnel_pipes_close(c);
    c->client_keep_alive = false;
    c->state = CS_DRAIN;
    c->deadline = loop_now(c->px->loop) + (uint64_t)BB_DRAIN_LINGER_MS * 1000000ull;
}

/* A policy refusal: 403 + X-Bottle-Block + audit. */
void conn_deny(struct conn *c, enum verdict v, const struct sockaddr *addr)
{
    char text[768], astr[NET_ADDRSTR_MAX] = "";
    const char *h = target_text(c);

    if (addr) {
        conn_set_addr(c, addr);
        snprintf(astr, sizeof(astr), "%s", c->addr_text);
    }
    switch (v) {
    case V_DENY_NOT_ALLOWLISTED:
        snprintf(text, sizeof(text),
                 "blocked by bot-bottle: %s is not in the allowlist; add it with --allow %s", h, h);
        break;
    case V_DENY_PORT:
        snprintf(text, sizeof(text),
                 "blocked by bot-bottle: %s is allowlisted, but not on port %u; add it with "
                 "--allow %s:%u",
                 h, c->port, h, c->port);
        break;
    case V_DENY_IP_LITERAL:
        snprintf(text, sizeof(text),
                 "blocked by bot-bottle: %s is an IP address, and no --allow-cidr covers it; "
                 "allow names with --allow, or the address with --allow-cidr %s/%s",
                 h, h, c->host.kind == HOST_IPV6 ? "128" : "32");
        break;
    case V_DENY_SSRF:
        snprintf(text, sizeof(text),
                 "blocked by bot-bottle: %s resolves to %s, a private, loopback or reserved "
                 "address; if that is intended, add --allow-cidr %s/%s",
                 h, astr[0] ? astr : "a restricted address", astr[0] ? astr : "ADDR",
                 strchr(astr, ':') ? "128" : "32");
        break;
    case V_DENY_METADATA:
        snprintf(text, sizeof(text), "blocked by bot-bottle: %s is a cloud metadata address (%s)",
                 h, astr[0] ? astr : h);
        break;
    case V_DENY_BAD_HOST:
        snprintf(text, sizeof(text),
                 "blocked by bot-bottle: the target host is not a valid host name");
        break;
    case V_DENY_NEEDS_INTERCEPTION:
        snprintf(text, sizeof(text),
                 "blocked by bot-bottle: %s has method/path rules, which a CONNECT tunnel would "
                 "bypass; HTTPS to it needs TLS interception (not available yet): use plain "
                 "http:// through the proxy, or allow the host without rules",
                 h);
        break;
    case V_DENY_NO_ADDRESS:
    case V_DENY_METHOD:
    case V_DENY_PATH:
    case V_ALLOW:
    case V_MAX:
    default:
        snprintf(text, sizeof(text), "blocked by bot-bottle: %s (%s)", h, verdict_reason(v));
        break;
    }
    /* A policy read from a config file: name its key as well as the option. */
    if (c->px->policy_from_file) {
        size_t n = strlen(text);
        const char *key = NULL;
        char val[300] = "";

        switch (v) {
        case V_DENY_NOT_ALLOWLISTED:
            key = "allow";
            snprintf(val, sizeof(val), "%s", h);
            break;
        case V_DENY_PORT:
            key = "allow";
            snprintf(val, sizeof(val), "%s:%u", h, c->port);
            break;
        case V_DENY_IP_LITERAL:
            key = "allow_cidr";
            snprintf(val, sizeof(val), "%s/%s", h, c->host.kind == HOST_IPV6 ? "128" : "32");
            break;
        case V_DENY_SSRF:
            key = "allow_cidr";
            snprintf(val, sizeof(val), "%s/%s", astr[0] ? astr : "ADDR",
                     strchr(astr, ':') ? "128" : "32");
            break;
        default:
            break;
        }
        if (key && n < sizeof(text))
            snprintf(text + n, sizeof(text) - n,
                     " (or, in the config file, '%s = %s' under [egress])", key, val);
    }
    c->px->st.denied++;
    c->status = 403;
    conn_audit(c, false, verdict_reason(v));
    conn_respond_error(c, 403, "X-Bottle-Block", verdict_reason(v), text);
}

void conn_deny_text(struct conn *c, const char *reason, const char *text)
{
    c->px->st.denied++;
    c->status = 403;
    conn_audit(c, false, reason);
    conn_respond_error(c, 403, "X-Bottle-Block", reason, text);
}

/*
 * The audit log cannot be written: nothing new may leave unrecorded (fail closed). 503 +
 * X-Bottle-Error: audit-failed. The refusal is itself offered to the audit log, which is how
 * the sink finds out that it can write again.
 */
void conn_audit_failed(struct conn *c)
{
    char msg[512];

    c->px->st.denied++;
    c->status = 503;
    conn_audit(c, false, "audit-failed");
    snprintf(msg, sizeof(msg),
             "bot-bottle: %s: refused because the audit log cannot be written (see the egress "
             "daemon's stderr)",
             target_text(c));
    conn_respond_error(c, 503, "X-Bottle-Error", "audit-failed", msg);
}

/* An upstream failure: 502/504 + X-Bottle-Error. Audited as an allowed decision that failed. */
void conn_upstream_error(struct conn *c, int status, const char *reason, const char *text)
{
    char msg[512];

    c->px->st.upstream_errors++;
    c->status = status;
    if (!c->audited)
        conn_audit(c, true, reason);
    snprintf(msg, sizeof(msg), "bot-bottle: %s: %s", target_text(c), text);
    conn_respond_error(c, status, "X-Bottle-Error", reason, msg);
}

void conn_bad_request(struct conn *c, const struct http_error *e)
{
    char msg[256];

    c->px->st.bad_requests++;
    c->status = e->status ? e->status : 400;
    if (!c->audited)
        conn_audit(c, false, e->status == 408 ? "head-timeout" : "bad-request");
    snprintf(msg, sizeof(msg), "bot-bottle: bad request: %s", e->msg ? e->msg : "malformed");
    log_debug("proxy: %d %s", e->status, e->msg ? e->msg : "");
    conn_respond_error(c, e->status ? e->status : 400, "X-Bottle-Error", "bad-request", msg);
}

void conn_cred_misuse(struct conn *c, size_t cred, const char *where)
{
    char msg[512];

    /* Whatever of the request already left is cut off hard (RST), not ended. */
    if (c->u.fd >= 0) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        (void)setsockopt(c->u.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        c->upstream_reusable = false;
    }
    c->px->st.denied++;
    c->status = 403;
    conn_audit(c, false, "credential-misuse");
    snprintf(msg, sizeof(msg),
             "blocked by bot-bottle: the placeholder of credential '%s' was sent %s; bot-bottle "
             "puts the real value only into the %s header of requests to %s:%u",
             cred_name(c->px->creds, cred), where, cred_header(c->px->creds, cred),
             cred_host(c->px->creds, cred), (unsigned)cred_port(c->px->creds, cred));
    conn_respond_error(c, 403, "X-Bottle-Block", "credential-misuse", msg);
}

void conn_cred_reflected(struct conn *c, size_t cred)
{
    log_warn("proxy: %s sent the real value of credential '%s' back in a response; the "
             "connection is cut so the bottle does not get it",
             c->host.name, cred_name(c->px->creds, cred));
    c->upstream_reusable = false;
    c->px->st.denied++;
    conn_audit(c, false, "credential-reflected");
    conn_close(c);
}

/* A connection refused before any request was read (no host known yet). */
void proxy_audit_refused_conn(struct proxy *px, const char *reason, int status)
{
    struct audit_event ev = {
        .kind = AUDIT_HTTP,
        .host = "",
        .allow = false,
        .reason = reason,
        .status = status,
    };
    audit_note(px->audit, &ev);
}

/* Answer 503 and close: over the connection limit, or draining. Audited (aggregated). */
bool proxy_refuse_if_busy(struct proxy *px, int fd)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "X-Bottle-Error: too-many-connections\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n";
    ssize_t w;

    if (px->st.open_conns < px->lim.max_conns && !px->drain_fn)
        return false;
    w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
    px->st.refused_busy++;
    proxy_audit_refused_conn(px, px->drain_fn ? "draining" : "too-many-connections", 503);
    return true;
}
