/*
 * The connection state machine (docs/proxy.md, "A connection"): one step per state,
 * conn_run() drives them, timers and readiness events re-enter it.
 */
#include "proxy/proxy-int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/xalloc.h"

static void conn_run(struct conn *c);
static void on_rerun(struct loop_defer *d);

/* ---------------------------------------------------------------- helpers */

void side_init(struct side *s)
{
    s->fd = -1;
    s->tp = &transport_tcp;
    s->tp_ctx = NULL;
    s->eof = s->wshut = false;
    s->want = 0;
    s->rpending = false;
    s->src.registered = false;
}

void side_close(struct proxy *px, struct side *s)
{
    if (s->fd < 0)
        return;
    loop_del(px->loop, &s->src);
    s->tp->close(s);
    side_init(s);
}

/* Write as much of b as the side takes. Returns > 0 progress, 0 would block, < 0 error. */
int side_flush(struct side *s, struct buf *b, uint64_t *counter)
{
    ssize_t n;

    if (!b->len)
        return 0;
    n = s->tp->send(s, b->p, b->len);
    if (n <= 0)
        return (int)n;
    buf_consume(b, (size_t)n);
    if (counter)
        *counter += (uint64_t)n;
    return 1;
}

/* Read up to max bytes from s and append to b. Returns > 0 bytes, 0 would block, -ECONNRESET-like
 * errors, or -EPIPE for EOF (sets s->eof). */
static int read_into(struct side *s, struct buf *b, size_t max)
{
    char tmp[BB_RELAY_CHUNK];
    ssize_t n;
    int r;

    if (max > sizeof(tmp))
        max = sizeof(tmp);
    if (max == 0)
        return 0;
    n = s->tp->recv(s, tmp, max);
    if (n <= 0) {
        if (n == -EPIPE)
            s->eof = true;
        return (int)n;
    }
    r = buf_append(b, tmp, (size_t)n);
    if (r < 0)
        return r;
    return (int)n;
}

int conn_read_into(struct side *s, struct buf *b, size_t max)
{
    return read_into(s, b, max);
}

/* ---------------------------------------------------------------- the upstream pool */

/* The replay copy may hold a credential's real value (build_with_creds): wiped. */
static void replay_drop(struct conn *c)
{
    if (c->replay.p && c->replay.len)
        explicit_bzero(c->replay.p, c->replay.len);
    buf_reset(&c->replay);
    c->replay_ok = false;
}

/* RFC 9110 9.2.2: a request the client would not mind being sent twice. */
static bool method_idempotent(const char *m)
{
    static const char *const ok[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE" };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
        if (strcmp(m, ok[i]) == 0)
            return true;
    return false;
}

/*
 * The exchange starts on an upstream connection that was idle (kept from the previous
 * exchange, or from the pool): keep what it sends, so that if the origin had closed it
 * meanwhile (a race no liveness check can rule out) the request can go once more on a fresh
 * connection. Only an idempotent request with no body, whose bytes are all queued now.
 */
static void replay_prepare(struct conn *c)
{
    replay_drop(c);
    c->reused = true;
    c->px->st.upstream_reused++;
    if (c->retried || c->is_connect || !method_idempotent(c->method) ||
        c->req_body != HTTP_BODY_NONE || !c->toup.len)
        return;
    if (buf_append(&c->replay, c->toup.p, c->toup.len) < 0) {
        replay_drop(c);
        return;
    }
    c->replay_ok = true;
}

/*
 * The open upstream connection carries no exchange and will not carry the next one here: to the
 * pool when it is clean (its last response completely delimited, nothing unread, no close asked
 * for), else closed.
 */
static void upstream_release(struct conn *c)
{
    struct proxy *px = c->px;

    if (c->u.fd < 0)
        return;
    if (!c->u_idle || !c->upstream_reusable || px->drain_fn || px->dead) {
        side_close(px, &c->u);
        c->u_idle = false;
        return;
    }
    loop_del(px->loop, &c->u.src);
    (void)upool_put(px->pool, &c->u, c->up_host, c->up_port, &c->up_addr,
                    c->u.tp == &transport_tls);
    c->u_idle = false;
    c->upstream_reusable = false;
}

/* ---------------------------------------------------------------- CS_READ_HEAD */

static void exchange_reset(struct conn *c)
{
    c->host.name[0] = '\0';
    c->port = 0;
    c->is_connect = c->is_head = false;
    c->audited = false;
    c->hold_over = c->redecide = false;
    c->addr_text[0] = '\0';
    c->path[0] = '\0';
    c->close_reason = NULL;
    c->status = 0;
    c->method[0] = '\0';
    c->bytes_up = c->bytes_down = 0;
    c->naddrs = c->addr_idx = 0;
    c->head_scan = 0;
    c->resp_scan = 0;
    c->req_body = c->resp_body = HTTP_BODY_NONE;
    c->req_remaining = c->resp_remaining = 0;
    c->scan_body = false;
    c->scan_resp = false;
    c->resp_identity = false;
    c->resp_hold = 0;
    c->reused = false;
    c->retried = false;
    replay_drop(c);
}

static void on_resolved(void *userdata, int status, const struct sockaddr_storage *addrs, size_t n);
static void upstream_open(struct conn *c);
static bool upstream_from_pool(struct conn *c);

static struct dlp_ctx conn_dlp_ctx(const struct conn *c)
{
    return (struct dlp_ctx){
        .d = c->px->dlp,
        .disabled = policy_dlp_off(c->px->policy),
        .host = c->host.name,
        .port = c->port,
    };
}

static void deny_dlp(struct conn *c, int rule, const char *where)
{
    char text[512];

    snprintf(text, sizeof(text),
             "blocked by bot-bottle: the request %s to %s carries what looks like %s (DLP rule "
             "'%s'); if this is a false positive, turn the rule off with --dlp-disable %s "
             "(config: [dlp] disable = %s)",
             where, c->host.name,
             rule == DLP_CREDENTIAL ? "a configured credential meant for another host" : "a secret",
             dlp_rule_name(rule), dlp_rule_name(rule), dlp_rule_name(rule));
    /* The audit record never holds what was caught: not the path (the query never is), and
     * for a random-looking host name not the random labels. */
    if (c->path[0])
        snprintf(c->path, sizeof(c->path), "(redacted)");
    size_t cut = dlp_host_redact_len(c->host.name, strlen(c->host.name));
    if (cut) {
        char red[sizeof(c->host.name)];
        snprintf(red, sizeof(red), "(redacted)%s", c->host.name + cut);
        snprintf(c->host.name, sizeof(c->host.name), "%s", red);
    }
    conn_deny_text(c, dlp_rule_reason(rule), text);
}

/*
 * The checks on a request whose host is allowed: a random-looking host name (DNS exfil shape),
 * method/path rules (a CONNECT to a host with rules would bypass them: refused until TLS
 * interception exists), and DLP over the head (URL and header fields). Returns 0, or -EACCES
 * after answering with the refusal.
 */
static int check_request(struct conn *c, const struct http_request *req,
                         const struct http_target *t)
{
    struct proxy *px = c->px;
    struct dlp_ctx x = conn_dlp_ctx(c);
    const char *rule = NULL, *why = NULL;
    enum verdict v;
    int hit;

    dlp_stream_init(&c->dlp_body);
    dlp_stream_init(&c->dlp_raw);
    c->req_scanned = 0;
    c->req_scan_done = false;
    http_chunked_init(&c->req_scan_chunked);
    hit = dlp_check_host(&x, c->host.name, strlen(c->host.name));
    if (hit != DLP_NONE) {
        deny_dlp(c, hit, "host name");
        return -EACCES;
    }
    if (req->is_connect) {
        /* Its rules can be enforced only inside an intercepted session (tls.h); a blind
         * tunnel would bypass them. */
        if (policy_host_has_rules(px->policy, &c->host, c->port) &&
            !(px->tls && tls_intercepts(px->tls, c->host.name, c->port))) {
            conn_deny(c, V_DENY_NEEDS_INTERCEPTION, NULL);
            return -EACCES;
        }
        return 0;
    }
    v = policy_check_request(px->policy, &c->host, c->port, req->method.p, req->method.len,
                             t->path.p, t->path.len, &rule, &why);
    if (v != V_ALLOW) {
        char text[2048]; /* room for two host names, two paths and the rule */
        if (why)
            snprintf(text, sizeof(text),
                     "blocked by bot-bottle: %s has method/path rules and this path is refused: "
                     "%s (rule: %s)",
                     c->host.name, why, rule ? rule : "?");
        else
            snprintf(text, sizeof(text),
                     "blocked by bot-bottle: %s %s on %s is not allowed by its method/path rules "
                     "(%s: %s); add a rule with --allow '%s %s %s'",
                     c->method, c->path, c->host.name,
                     v == V_DENY_METHOD ? "the path matches, the method does not" : "closest rule",
                     rule ? rule : "?", c->host.name, c->method, c->path);
        conn_deny_text(c, verdict_reason(v), text);
        return -EACCES;
    }
    hit = dlp_scan_buf(&x, c->cin.p, req->head_len);
    if (hit != DLP_NONE) {
        deny_dlp(c, hit, "URL or header fields");
        return -EACCES;
    }
    return 0;
}

/*
 * The upstream head with the credentials' real values in place of their placeholders. The
 * values pass only through a few bounded buffers, wiped after use.
 */
static int build_with_creds(struct conn *c, const struct http_request *req,
                            const struct http_target *t, const struct cred_subst *subs,
                            size_t nsubs)
{
    static struct http_request copy; /* one loop, one thread: not on the stack (3+ KiB) */
    struct buf vals[CRED_MAX];
    int r = 0;

    copy = *req;
    for (size_t i = 0; i < nsubs; i++)
        buf_init(&vals[i], BB_MAX_HTTP_LINE);
    for (size_t i = 0; i < nsubs && r == 0; i++) {
        r = cred_substitute(c->px->creds, subs[i].cred, req->headers[subs[i].header].value,
                            &vals[i]);
        if (r == 0)
            copy.headers[subs[i].header].value = slice_make(buf_str(&vals[i]), vals[i].len);
    }
    if (r == 0) {
        /* The response will be searched for the value (rule 4): ask for it whole and as the
         * origin has it. A compressed or a partial (Range) reflection would not be found. */
        size_t k = 0;
        bool ae = false;
        for (size_t h = 0; h < copy.n_headers; h++) {
            struct slice name = copy.headers[h].name;
            if (slice_eq_nocase_cstr(name, "range") || slice_eq_nocase_cstr(name, "if-range") ||
                (ae && slice_eq_nocase_cstr(name, "accept-encoding")))
                continue;
            copy.headers[k] = copy.headers[h];
            if (slice_eq_nocase_cstr(name, "accept-encoding")) {
                copy.headers[k].value = SLICE_LIT("identity");
                ae = true;
            }
            k++;
        }
        if (!ae && k < ARRAY_SIZE(copy.headers)) {
            copy.headers[k].name = SLICE_LIT("Accept-Encoding");
            copy.headers[k].value = SLICE_LIT("identity");
            k++;
        }
        copy.n_headers = k;
        r = http_build_upstream_request(&copy, t, c->host.name, &c->toup);
    }
    for (size_t i = 0; i < nsubs; i++) {
        if (vals[i].p)
            explicit_bzero(vals[i].p, vals[i].len);
        buf_done(&vals[i]);
    }
    memset(&copy, 0, sizeof(copy));
    return r < 0 ? -E2BIG : 0;
}

/*
 * Hold a request refused only for want of an allow (--hold-blocked): it waits, its head still
 * in cin, until proxy_set_policy() finds it allowed or its deadline passes. Recorded as a
 * "hold" decision before anything else happens, so `logs --follow` shows it pending.
 */
static void conn_hold(struct conn *c)
{
    struct proxy *px = c->px;
    struct audit_event ev = {
        .kind = c->is_connect ? AUDIT_CONNECT : AUDIT_HTTP,
        .host = c->host.name,
        .port = c->port,
        .held = true,
        .reason = "pending",
        .method = c->is_connect ? NULL : c->method,
        .path = c->path[0] ? c->path : NULL,
    };

    if (audit_note(px->audit, &ev) < 0) {
        conn_audit_failed(c);
        return;
    }
    px->st.held++;
    c->state = CS_HOLD;
    c->head_scan = 0; /* the head is scanned again from its start when decided again */
    c->deadline = loop_now(px->loop) + (uint64_t)px->lim.hold_blocked_ms * 1000000ull;
}

void conn_policy_changed(struct conn *c)
{
    if (c->state != CS_HOLD || policy_check_host(c->px->policy, &c->host, c->port) != V_ALLOW)
        return;
    c->redecide = true;
    c->state = CS_READ_HEAD;
    c->deadline = 0;
    loop_defer(c->px->loop, &c->rerun_defer, on_rerun, c);
}

/* Decide on a parsed request; sets up the next state. */
static void conn_start_exchange(struct conn *c, const struct http_request *req)
{
    struct proxy *px = c->px;
    struct http_target t;
    struct http_error e = { 400, NULL };
    const char *herr = NULL;
    struct cred_subst subs[CRED_MAX];
    size_t nsubs = 0;
    enum verdict v;
    int r;

    if (!c->redecide)
        px->st.requests++;
    c->redecide = false;
    c->is_connect = req->is_connect;
    {
        size_t ml = MIN(req->method.len, sizeof(c->method) - 1);
        memcpy(c->method, req->method.p, ml);
        c->method[ml] = '\0';
    }
    c->is_head = slice_eq(req->method, SLICE_LIT("HEAD"));
    c->client_keep_alive = req->keep_alive && !req->is_connect;

    if (c->intercept) {
        /* A request inside an intercepted TLS session: origin-form, for the CONNECT's host. */
        if (req->is_connect || !req->target.len || req->target.p[0] != '/') {
            struct http_error ie = { 400, "expected an origin-form request (GET /path) inside "
                                          "the TLS session" };
            conn_bad_request(c, &ie);
            return;
        }
        memset(&t, 0, sizeof(t));
        t.form = HTTP_TARGET_ABSOLUTE;
        t.host = slice_cstr(c->ic_host.name);
        t.port = c->ic_port;
        t.path = req->target;
        t.tls = true;
    } else {
        r = http_parse_target(req->target, req->is_connect, &t, &e);
        if (r < 0) {
            conn_bad_request(c, &e);
            return;
        }
    }
    c->port = t.port;
    c->path[0] = '\0';
    if (!req->is_connect) {
        /* Bounded, printable ASCII, and never the query (it often carries tokens). */
        size_t n = 0;
        for (size_t i = 0; i < t.path.len && t.path.p[i] != '?' && t.path.p[i] != '#'; i++) {
            unsigned char ch = (unsigned char)t.path.p[i];
            if (n == BB_AUDIT_PATH_MAX) {
                memcpy(c->path + n, "...", 3);
                n += 3;
                break;
            }
            c->path[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        c->path[n] = '\0';
    }
    if (host_parse(t.host.p, t.host.len, &c->host, &herr) < 0) {
        c->host.name[0] = '\0';
        conn_deny(c, V_DENY_BAD_HOST, NULL);
        return;
    }

    /* The Host header, when present, must name the same host and port as the target
     * (DESIGN.md S6: CONNECT authority vs Host mismatch). */
    if (req->host.p) {
        struct slice hh;
        uint16_t hport;
        struct host hhost;
        if (http_parse_host_header(req->host,
                                   req->is_connect ? t.port
                                   : c->intercept  ? 443
                                                   : 80,
                                   &hh, &hport) < 0 ||
            host_parse(hh.p, hh.len, &hhost, &herr) < 0 || hhost.kind != c->host.kind ||
            strcmp(hhost.name, c->host.name) != 0 || hport != t.port) {
            struct http_error me = { 400, "the Host header does not match the request target" };
            c->status = 400;
            conn_audit(c, false, "host-mismatch");
            conn_bad_request(c, &me);
            return;
        }
    }

    /* A credential placeholder anywhere but its own header to its own host: refused before
     * the policy is asked, so the record says why (docs/credentials.md). */
    if (cred_store_count(px->creds)) {
        size_t ci = 0;
        const char *where = NULL;
        if (cred_check_head(px->creds, req, c->host.name, c->port, subs, &nsubs, &ci, &where) < 0) {
            conn_cred_misuse(c, ci, where);
            return;
        }
        /* Port 443 is HTTPS: a value for it goes only inside an intercepted TLS session, never
         * in clear text over the network (http://HOST:443/). */
        if (nsubs && c->port == 443 && !c->intercept) {
            conn_cred_misuse(c, subs[0].cred, "in a plain-HTTP request to port 443 (use https://)");
            return;
        }
    }

    v = policy_check_host(px->policy, &c->host, c->port);
    if (v != V_ALLOW) {
        if (px->lim.hold_blocked_ms && !c->hold_over &&
            (v == V_DENY_NOT_ALLOWLISTED || v == V_DENY_PORT)) {
            conn_hold(c);
            return;
        }
        conn_deny(c, v, NULL);
        return;
    }
    /* Method/path rules and data-loss checks (docs/policy.md, docs/dlp.md). */
    if (check_request(c, req, &t) < 0)
        return;
    /* The decision is on record before anything about it leaves (the name goes to the resolver
     * next): first per host, method and window, repeats counted. A sink that cannot write
     * refuses (fail closed); while it is failing every decision is a write attempt, so the first
     * request after space comes back goes through. */
    {
        struct audit_event ev = {
            .kind = c->is_connect ? AUDIT_CONNECT : AUDIT_HTTP,
            .host = c->host.name,
            .port = c->port,
            .allow = true,
            .reason = "allowlisted",
            .method = c->is_connect ? NULL : c->method,
        };
        if (audit_note(px->audit, &ev) < 0) {
            conn_audit_failed(c);
            return;
        }
    }

    /* TLS to the origin: inside an intercepted session, or a CONNECT to an intercepted host
     * (tls.h: the one "needs interception" predicate). */
    c->up_tls = c->intercept ||
                (req->is_connect && px->tls && tls_intercepts(px->tls, c->host.name, c->port));

    /* Request body framing (CONNECT: everything after the head is tunnel data). */
    if (!req->is_connect) {
        c->req_body = req->body;
        c->req_remaining = req->content_length;
        if (c->req_body == HTTP_BODY_LENGTH && !c->req_remaining)
            c->req_body = HTTP_BODY_NONE; /* Content-Length: 0: nothing to wait for */
        http_chunked_init(&c->req_chunked);
        c->scan_body = cred_store_count(px->creds) > 0;
        cred_scan_done(&c->req_scan);
        if (req->body == HTTP_BODY_CHUNKED)
            cred_scan_set_chunked(&c->req_scan);
        cred_scan_done(&c->reflect_scan);
        /* Every response is searched while values are held: an origin may show a value later,
         * to a request that carries none (one that lists what it received), or under another
         * of its names. The credential's own host is asked for whole, unencoded responses. */
        c->scan_resp = cred_store_count(px->creds) > 0;
        c->resp_identity = nsubs > 0 || cred_store_has_host(px->creds, c->host.name, c->port);
        if (c->scan_resp)
            cred_scan_set_values(&c->reflect_scan);
        buf_reset(&c->toup);
        r = c->resp_identity ? build_with_creds(c, req, &t, subs, nsubs)
                             : http_build_upstream_request(req, &t, c->host.name, &c->toup);
        c->ws = upgrade_requested(req);
        if (r >= 0 && c->ws)
            r = upgrade_finish_request(&c->toup);
        if (r < 0) {
            struct http_error me = { 431, "request head too large after rewriting" };
            conn_bad_request(c, &me);
            return;
        }
        if (req->expect_continue)
            buf_append_str(&c->tocl, "HTTP/1.1 100 Continue\r\n\r\n");
    }

    /* Reuse the upstream connection of the previous exchange when it goes to the same place. */
    if (c->u.fd >= 0) {
        /* The idle upstream is watched (set_interest, on_io): a close or bytes nobody asked for
         * that came before this wake-up have ended it already. What may have come since is a
         * race that no look can rule out; a request that can be replayed (replay_prepare) is
         * sent again on a fresh connection if it hits one, so it is not worth a read(2) that
         * finds nothing. Any other request, and the first after a CONNECT, takes that look. */
        bool replayable = c->u_exchanges && !c->retried && method_idempotent(c->method) &&
                          c->req_body == HTTP_BODY_NONE && c->toup.len;
        /* The address is vetted again: a reload may have closed what it was allowed by. */
        if (!req->is_connect && c->upstream_reusable && c->up_port == c->port &&
            c->up_tls == (c->u.tp == &transport_tls) && strcmp(c->up_host, c->host.name) == 0 &&
            (replayable ? !c->u.eof && !side_pending(&c->u) : upool_side_alive(&c->u)) &&
            policy_check_addr(px->policy, (const struct sockaddr *)&c->up_addr, c->port) ==
                V_ALLOW) {
            c->u_idle = false;
            /* (the first request after an intercepted CONNECT rides the connection the
             * CONNECT opened: not a reuse) */
            if (c->u_exchanges)
                replay_prepare(c);
            c->state = CS_SEND_REQ;
            return;
        }
        /* Another place (or no longer usable): it may serve another client connection. */
        upstream_release(c);
        side_close(px, &c->u);
    }
    upstream_open(c);
}

/*
 * Open an upstream connection for the exchange: an IP literal (allowed by an allow_cidr entry)
 * is connected to as it is, a name is resolved first. Either way the pool is asked once the
 * vetted addresses are known (upstream_from_pool).
 */
static void upstream_open(struct conn *c)
{
    struct proxy *px = c->px;

    c->upstream_reusable = false;
    c->u_idle = false;
    c->u_exchanges = 0;
    if (c->host.kind != HOST_NAME) {
        /* An IP literal allowed by an allow_cidr entry: connect to exactly that address. */
        struct sockaddr_storage *ss = &c->addrs[0];
        memset(ss, 0, sizeof(*ss));
        if (c->host.kind == HOST_IPV4) {
            struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
            in4->sin_family = AF_INET;
            in4->sin_addr = c->host.addr.v4;
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
            in6->sin6_family = AF_INET6;
            in6->sin6_addr = c->host.addr.v6;
        }
        net_addr_set_port((struct sockaddr *)ss, c->port);
        c->naddrs = 1;
        c->addr_idx = 0;
        if (upstream_from_pool(c))
            return;
        c->state = CS_CONNECT;
        c->deadline = loop_now(px->loop) + (uint64_t)px->lim.connect_timeout_ms * 1000000ull;
        return;
    }
    c->state = CS_RESOLVE;
    c->deadline = loop_now(px->loop) + (uint64_t)px->lim.resolve_timeout_ms * 1000000ull;
    c->rq = resolver_lookup(px->res, c->host.name, on_resolved, c);
}

static int step_read_head(struct conn *c)
{
    struct http_request req;
    struct http_error e = { 400, NULL };
    int end, r;

    /* Anything still owed to the client (a 100 Continue of a previous exchange) goes first. */
    if (c->tocl.len) {
        r = side_flush(&c->c, &c->tocl, NULL);
        if (r < 0)
            return r;
        if (c->tocl.len)
            return 0;
    }
    end = http_head_end(c->cin.p ? c->cin.p : "", c->cin.len, &c->head_scan);
    if (end == 0 && c->cin.len >= BB_MAX_HTTP_HEAD)
        end = -EMSGSIZE;
    if (end == 0) {
        r = read_into(&c->c, &c->cin, BB_MAX_HTTP_HEAD - c->cin.len);
        if (r == -EPIPE) {
            /* Client closed between requests (normal) or mid-head (nothing to answer). */
            conn_close(c);
            return 0;
        }
        if (r <= 0)
            return r;
        if (c->deadline == 0)
            c->deadline = loop_now(c->px->loop) + (uint64_t)c->px->lim.head_timeout_ms * 1000000ull;
        return 1;
    }
    if (end < 0) {
        e.status = 431;
        e.msg = "request head too large";
        conn_bad_request(c, &e);
        return 1;
    }
    r = http_parse_request(c->cin.p, (size_t)end, &req, &e);
    if (r <= 0) {
        conn_bad_request(c, &e);
        return 1;
    }
    c->deadline = 0;
    conn_start_exchange(c, &req);
    /* Held: the head stays in cin, to be decided again when the hold ends. */
    if (c->state == CS_HOLD)
        return 0;
    /* The head is consumed only now: req's slices pointed into cin until here. */
    buf_consume(&c->cin, req.head_len);
    c->head_scan = 0;
    return 1;
}

/* ---------------------------------------------------------------- CS_RESOLVE */

static void on_resolved(void *userdata, int status, const struct sockaddr_storage *addrs, size_t n)
{
    struct conn *c = userdata;
    struct proxy *px = c->px;
    enum verdict first_deny = V_ALLOW;
    const struct sockaddr *deny_addr = NULL;

    c->rq = NULL;
    if (status < 0 || n == 0) {
        if (status == -ETIMEDOUT)
            conn_upstream_error(c, 504, "resolve-timeout", "name resolution timed out");
        else if (status == -ENOENT)
            conn_upstream_error(c, 502, "no-address", "the name does not resolve");
        else
            conn_upstream_error(c, 502, "resolve-failed", "name resolution failed");
        conn_run(c);
        return;
    }
    /* The SSRF guard: keep only the addresses the policy accepts, in the resolver's order. */
    c->naddrs = 0;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss = addrs[i];
        enum verdict v;
        net_addr_set_port((struct sockaddr *)&ss, c->port);
        v = policy_check_addr(px->policy, (const struct sockaddr *)&ss, c->port);
        if (v == V_ALLOW) {
            c->addrs[c->naddrs++] = ss;
        } else if (first_deny == V_ALLOW) {
            first_deny = v;
            deny_addr = (const struct sockaddr *)&addrs[i];
        }
    }
    if (c->naddrs == 0) {
        conn_deny(c, first_deny == V_ALLOW ? V_DENY_NO_ADDRESS : first_deny, deny_addr);
        conn_run(c);
        return;
    }
    c->addr_idx = 0;
    if (!upstream_from_pool(c)) {
        c->state = CS_CONNECT;
        c->deadline = loop_now(px->loop) + (uint64_t)px->lim.connect_timeout_ms * 1000000ull;
    }
    conn_run(c);
}

/* ---------------------------------------------------------------- CS_CONNECT */

static void on_io(struct loop_source *src, uint32_t events);

static int start_connect(struct conn *c)
{
    struct proxy *px = c->px;

    while (c->addr_idx < c->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[c->addr_idx];
        socklen_t len =
            sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        int fd = net_connect_tcp(sa, len);
        if (fd < 0) {
            c->addr_idx++;
            continue;
        }
        c->u.fd = fd;
        c->u.tp = &transport_tcp;
        c->u_ready = false;
        if (loop_add(px->loop, &c->u.src, fd, EPOLLOUT, on_io, c) < 0) {
            side_close(px, &c->u);
            return -ENOMEM;
        }
        return 0;
    }
    return -ECONNREFUSED;
}

void tunnel_start(struct conn *c);

static int step_connect(struct conn *c)
{
    int r;

    if (c->u.fd < 0) {
        r = start_connect(c);
        if (r < 0) {
            conn_upstream_error(c, 502, "upstream-connect-refused", "could not connect upstream");
            return 1;
        }
        return 0; /* wait for EPOLLOUT */
    }
    if (!c->u_ready)
        return 0; /* the event that woke us was the client's; the connect is in progress */
    r = net_socket_error(c->u.fd);
    if (r == 0) {
        /* SO_ERROR is also 0 while the handshake is still running: only a socket with a peer
         * is connected. The loop never hands us an event meant for an earlier socket on this
         * fd, but a spurious wake-up must not turn into "200 Connection established" for a
         * connect that may still fail (and then deserves a 502 or the next address). */
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        if (getpeername(c->u.fd, (struct sockaddr *)&peer, &plen) < 0) {
            if (errno == ENOTCONN) {
                c->u_ready = false;
                return 0; /* still connecting: wait for the next writable event */
            }
            r = -errno;
        }
    }
    if (r < 0) {
        side_close(c->px, &c->u);
        conn_set_addr(c, (const struct sockaddr *)&c->addrs[c->addr_idx]);
        c->addr_idx++;
        if (c->addr_idx < c->naddrs)
            return 1; /* try the next vetted address */
        conn_upstream_error(
            c, 502, r == -ECONNREFUSED ? "upstream-connect-refused" : "upstream-connect-failed",
            r == -ECONNREFUSED ? "the upstream refused the connection"
                               : "could not connect upstream");
        return 1;
    }
    /* Connected. */
    c->deadline = 0;
    conn_set_addr(c, (const struct sockaddr *)&c->addrs[c->addr_idx]);
    snprintf(c->up_host, sizeof(c->up_host), "%s", c->host.name);
    c->up_port = c->port;
    c->up_addr = c->addrs[c->addr_idx];
    c->u_exchanges = 0;
    c->px->st.allowed++;
    if (c->up_tls) {
        r = tls_side_client(c->px->tls, &c->u, c->host.name);
        if (r < 0) {
            conn_upstream_error(c, 502, "upstream-tls-failed", "could not start TLS upstream");
            return 1;
        }
        c->state = CS_TLS_UP;
        c->deadline = loop_now(c->px->loop) + (uint64_t)c->px->lim.connect_timeout_ms * 1000000ull;
        return 1;
    }
    if (c->is_connect) {
        c->status = 200;
        if (conn_audit(c, true, "allowlisted") < 0) {
            /* Not one byte through a tunnel that is not on record. */
            conn_audit_failed(c);
            return 1;
        }
        tunnel_start(c);
        return 1;
    }
    c->state = CS_SEND_REQ;
    return 1;
}

/* ---------------------------------------------------------------- TLS interception */

static int tls_up_done(struct conn *c);

/*
 * An idle connection from the pool for the exchange's host, port, TLS-ness and one of its
 * vetted addresses (c->addrs). Sets up the next state and returns true on a hit. Not for a
 * plain CONNECT tunnel (the bottle's own bytes, never shared), nor a retry.
 */
static bool upstream_from_pool(struct conn *c)
{
    struct proxy *px = c->px;
    struct sockaddr_storage a;

    /* (an intercepted CONNECT is always to a name, answered after its head is consumed) */
    if (c->retried || (c->is_connect && (!c->up_tls || c->host.kind != HOST_NAME)))
        return false;
    if (!upool_take(px->pool, c->host.name, c->port, c->addrs, c->naddrs, c->up_tls, &c->u, &a))
        return false;
    if (loop_add(px->loop, &c->u.src, c->u.fd, EPOLLIN, on_io, c) < 0) {
        side_close(px, &c->u);
        return false;
    }
    c->u_ready = true;
    c->deadline = 0;
    conn_set_addr(c, (const struct sockaddr *)&a);
    snprintf(c->up_host, sizeof(c->up_host), "%s", c->host.name);
    c->up_port = c->port;
    c->up_addr = a;
    c->upstream_reusable = true;
    c->u_exchanges = 1;
    px->st.allowed++;
    if (c->is_connect) {
        c->reused = true;
        px->st.upstream_reused++;
        (void)tls_up_done(c);
        return true;
    }
    replay_prepare(c);
    c->state = CS_SEND_REQ;
    return true;
}

/*
 * The reused upstream connection failed before any byte of the response: send the request
 * again, once, on a fresh connection, when it is safe to (replay_prepare). Returns true when
 * under way; false: the caller reports the failure.
 */
static bool retry_fresh(struct conn *c)
{
    struct proxy *px = c->px;

    if (!c->replay_ok || c->uin.len)
        return false;
    side_close(px, &c->u);
    buf_reset(&c->toup);
    if (buf_append(&c->toup, c->replay.p, c->replay.len) < 0)
        return false;
    replay_drop(c);
    c->retried = true;
    c->reused = false;
    c->bytes_up = 0;
    px->st.upstream_retried++;
    log_debug("proxy: %s %s: the reused upstream connection failed before answering; sending "
              "it again on a new connection",
              c->method, c->host.name);
    upstream_open(c);
    return true;
}

/* The TLS handshake with the origin of an intercepted host. */
static int step_tls_up(struct conn *c)
{
    const char *why = "TLS handshake failed";
    char msg[256];
    int r = tls_side_handshake(&c->u, &why);

    if (r == 0)
        return 0;
    if (r < 0) {
        snprintf(msg, sizeof(msg), "TLS with the origin failed: %s", why);
        conn_upstream_error(c, 502, "upstream-tls-failed", msg);
        return 1;
    }
    c->deadline = 0;
    c->upstream_reusable = true;
    if (!c->is_connect) {
        c->state = CS_SEND_REQ;
        return 1;
    }
    return tls_up_done(c);
}

/* The origin's side of an intercepted CONNECT is up (new, or from the pool): on record, then
 * 200, then TLS with the bottle as the origin. */
static int tls_up_done(struct conn *c)
{
    /* Nothing rides it until the bottle's first request: it may go back to the pool. */
    c->u_idle = true;
    c->status = 200;
    if (conn_audit(c, true, "intercepted") < 0) {
        conn_audit_failed(c);
        return 1;
    }
    if (c->cin.len) {
        /* TLS bytes sent before our 200 (the client did not wait): not supported */
        c->close_reason = "client-tls-early-data";
        conn_close(c);
        return 0;
    }
    buf_reset(&c->tocl);
    buf_append_str(&c->tocl, "HTTP/1.1 200 Connection established\r\n\r\n");
    c->state = CS_TLS_DOWN;
    c->deadline = loop_now(c->px->loop) + (uint64_t)c->px->lim.head_timeout_ms * 1000000ull;
    return 1;
}

/* The 200, then the TLS handshake with the bottle (our leaf certificate for the host). */
static int step_tls_down(struct conn *c)
{
    const char *why = "TLS handshake failed";
    int r;

    if (c->tocl.len) {
        r = side_flush(&c->c, &c->tocl, NULL);
        if (r < 0 || c->tocl.len)
            return r;
    }
    if (c->c.tp != &transport_tls) {
        r = tls_side_server(c->px->tls, &c->c, c->host.name);
        if (r < 0) {
            conn_close(c);
            return 0;
        }
    }
    r = tls_side_handshake(&c->c, &why);
    if (r == 0)
        return 0;
    if (r < 0) {
        /* e.g. the client does not trust the bottle's CA */
        log_debug("proxy: TLS with the bottle for %s failed: %s", c->host.name, why);
        conn_audit(c, true, "client-tls-failed");
        conn_close(c);
        return 0;
    }
    c->intercept = true;
    c->ic_host = c->host;
    c->ic_port = c->port;
    exchange_reset(c);
    c->deadline = 0;
    c->state = CS_READ_HEAD;
    return 1;
}

/* ---------------------------------------------------------------- request body */

static int move_body_step(enum http_body kind, uint64_t *remaining, struct http_chunked *ch,
                          struct buf *src, struct buf *dst)
{
    size_t take;
    bool done = false;

    switch (kind) {
    case HTTP_BODY_NONE:
        return 1;
    case HTTP_BODY_LENGTH:
        take = (size_t)MIN((uint64_t)src->len, *remaining);
        if (take && buf_append(dst, src->p, take) < 0)
            return -ENOBUFS;
        buf_consume(src, take);
        *remaining -= take;
        return *remaining == 0;
    case HTTP_BODY_CHUNKED: {
        int64_t n;
        if (!src->len)
            return 0;
        n = http_chunked_feed(ch, src->p, src->len, &done);
        if (n < 0)
            return -EBADMSG;
        if (n && buf_append(dst, src->p, (size_t)n) < 0)
            return -ENOBUFS;
        buf_consume(src, (size_t)n);
        return done;
    }
    case HTTP_BODY_CLOSE:
        if (src->len && buf_append(dst, src->p, src->len) < 0)
            return -ENOBUFS;
        buf_reset(src);
        return 0;
    case HTTP_BODY_MAX:
    default:
        return -EINVAL;
    }
}

/*
 * Move body bytes from src into dst according to framing. Bytes past the end of the body stay in
 * src. Returns 1 when the body is complete (and sets *kind to HTTP_BODY_NONE, so later calls
 * keep saying so), 0 when more is needed, -EBADMSG on bad chunking.
 */
static int move_body(enum http_body *kind, uint64_t *remaining, struct http_chunked *ch,
                     struct buf *src, struct buf *dst)
{
    int r = move_body_step(*kind, remaining, ch, src, dst);
    if (r == 1)
        *kind = HTTP_BODY_NONE;
    return r;
}

static int dlp_on_data(void *userdata, const char *p, size_t len)
{
    struct conn *c = userdata;
    struct dlp_ctx x = conn_dlp_ctx(c);

    return dlp_stream_feed(&c->dlp_body, &x, p, len) == DLP_NONE ? 0 : -EACCES;
}

/*
 * move_body for the request, with the DLP scan of every byte before it is queued upstream:
 * Content-Length bodies as they are, chunked ones decoded (a secret split across chunks is
 * joined again) and raw (extensions and trailers). The last DLP_TAIL scanned bytes are held
 * back until more of the body (or its end) is scanned, so no prefix of a match that completes
 * in a later read has left when the request is refused. *ret_hit gets the rule that fired.
 * Returns as move_body().
 */
static int move_req_body(struct conn *c, int *ret_hit)
{
    struct dlp_ctx x = conn_dlp_ctx(c);
    size_t move = 0;
    bool last = false;

    switch (c->req_body) {
    case HTTP_BODY_LENGTH: {
        size_t take = (size_t)MIN((uint64_t)c->cin.len, c->req_remaining);
        if (take > c->req_scanned) {
            *ret_hit =
                dlp_stream_feed(&c->dlp_body, &x, c->cin.p + c->req_scanned, take - c->req_scanned);
            if (*ret_hit != DLP_NONE)
                return 0;
            c->req_scanned = take;
        }
        last = take == c->req_remaining;
        move = last ? take : (take > DLP_TAIL ? take - DLP_TAIL : 0);
        if (move && buf_append(&c->toup, c->cin.p, move) < 0)
            return -ENOBUFS;
        buf_consume(&c->cin, move);
        c->req_remaining -= move;
        c->req_scanned -= move;
        if (c->req_remaining)
            return 0;
        break;
    }
    case HTTP_BODY_CHUNKED: {
        bool done = false;
        int64_t n;
        if (c->cin.len > c->req_scanned && !c->req_scan_done) {
            n = http_chunked_feed_data(&c->req_scan_chunked, c->cin.p + c->req_scanned,
                                       c->cin.len - c->req_scanned, &done, dlp_on_data, c);
            if (n == -ECANCELED) {
                *ret_hit = c->dlp_body.hit;
                return 0;
            }
            if (n < 0)
                return -EBADMSG;
            *ret_hit = dlp_stream_feed(&c->dlp_raw, &x, c->cin.p + c->req_scanned, (size_t)n);
            if (*ret_hit != DLP_NONE)
                return 0;
            c->req_scanned += (size_t)n;
            c->req_scan_done = done;
        }
        last = c->req_scan_done;
        move = last ? c->req_scanned : (c->req_scanned > DLP_TAIL ? c->req_scanned - DLP_TAIL : 0);
        if (move) {
            /* the relay's own framing state follows the same bytes */
            n = http_chunked_feed(&c->req_chunked, c->cin.p, move, &done);
            if (n != (int64_t)move || done != (last && move == c->req_scanned))
                return -EBADMSG;
            if (buf_append(&c->toup, c->cin.p, move) < 0)
                return -ENOBUFS;
            buf_consume(&c->cin, move);
            c->req_scanned -= move;
        }
        if (!last)
            return 0;
        break;
    }
    case HTTP_BODY_NONE:
        return 1;
    case HTTP_BODY_CLOSE:
    case HTTP_BODY_MAX:
    default:
        return -EINVAL;
    }
    /* the body is complete: a match may end at its very end */
    c->req_body = HTTP_BODY_NONE;
    *ret_hit = dlp_stream_end(&c->dlp_body, &x);
    if (*ret_hit == DLP_NONE)
        *ret_hit = dlp_stream_end(&c->dlp_raw, &x);
    return 1;
}

/* Request body bytes read but not movable yet (held back for the DLP scan). */
static size_t req_held(const struct conn *c)
{
    return c->req_body == HTTP_BODY_NONE ? 0 : MIN(c->cin.len, c->req_scanned);
}

static int step_send_req(struct conn *c)
{
    int r;

    if (c->tocl.len) { /* 100 Continue */
        r = side_flush(&c->c, &c->tocl, NULL);
        if (r < 0)
            return r;
    }
    /* Body bytes already read join what is queued (for a small request: the head) so they leave
     * in one send(), whenever they fit. */
    if (c->cin.len && c->toup.len + c->cin.len <= c->toup.max) {
        size_t before = c->toup.len;
        int hit = DLP_NONE;
        r = move_req_body(c, &hit);
        if (hit != DLP_NONE) {
            /* Nothing of this piece has left; the upstream sees a request cut short. */
            deny_dlp(c, hit, "body");
            return 1;
        }
        if (r < 0) {
            struct http_error e = { 400, "malformed chunked request body" };
            conn_bad_request(c, &e);
            return 1;
        }
        /* The body bytes just queued, before any of them leaves (docs/credentials.md). */
        if (c->scan_body && c->toup.len > before) {
            int at = cred_scan_feed(c->px->creds, &c->req_scan, c->toup.p + before,
                                    c->toup.len - before);
            if (at >= 0) {
                conn_cred_misuse(c, (size_t)at, "in the request body");
                return 1;
            }
        }
    }
    if (c->toup.len) {
        r = side_flush(&c->u, &c->toup, &c->bytes_up);
        if (r < 0) {
            if (retry_fresh(c))
                return 1;
            conn_upstream_error(c, 502, "upstream-write-failed", "the upstream closed early");
            return 1;
        }
        if (c->toup.len)
            return r;
    }
    if (c->req_body == HTTP_BODY_NONE) { /* the whole request is out */
        c->state = CS_READ_RESP;
        buf_reset(&c->uin);
        c->resp_scan = 0;
        /* The answer takes a round trip: wait for it rather than try a read that would find
         * nothing (one system call per request). */
        if (!c->tocl.len && !side_pending(&c->u)) {
            c->last_active = loop_now(c->px->loop);
            return 0;
        }
        return 1;
    }
    if (c->cin.len > req_held(c))
        return 1; /* it fits now that toup is empty */
    /* need more body from the client (held-back bytes wait for it) */
    r = read_into(&c->c, &c->cin, BB_RELAY_CHUNK);
    if (r == -EPIPE) {
        conn_close(c); /* client gave up mid-body */
        return 0;
    }
    return r;
}

/* ---------------------------------------------------------------- response */

/* The response's content coding: 0 as the origin has it (no Content-Encoding, or identity),
 * 1 gzip or deflate (the reflection search inflates it), -1 anything else (or more than one
 * coding), named in *ret_name. */
static int content_coding(const struct http_response *resp, struct slice *ret_name)
{
    int k = 0;

    for (size_t i = 0; i < resp->n_headers; i++) {
        struct slice v = resp->headers[i].value;
        if (!slice_eq_nocase_cstr(resp->headers[i].name, "content-encoding"))
            continue;
        while (v.len && (v.p[0] == ' ' || v.p[0] == '\t'))
            v = slice_make(v.p + 1, v.len - 1);
        while (v.len && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t'))
            v.len--;
        if (!v.len || slice_eq_nocase_cstr(v, "identity"))
            continue;
        *ret_name = v;
        if (k != 0 || !(slice_eq_nocase_cstr(v, "gzip") || slice_eq_nocase_cstr(v, "x-gzip") ||
                        slice_eq_nocase_cstr(v, "deflate")))
            return -1;
        k = 1;
    }
    return k;
}

/* A transfer coding other than chunked (gzip, deflate, compress: RFC 9112 7), named in
 * *ret_name: the search reads only the chunked framing's data, and the bottle can undo the
 * coding itself, so a value in it would pass unseen. */
static bool transfer_coded(const struct http_response *resp, struct slice *ret_name)
{
    for (size_t i = 0; i < resp->n_headers; i++) {
        struct slice v = resp->headers[i].value;
        if (!slice_eq_nocase_cstr(resp->headers[i].name, "transfer-encoding"))
            continue;
        for (size_t s = 0, e; s < v.len; s = e + 1) {
            struct slice tok;
            for (e = s; e < v.len && v.p[e] != ','; e++)
                ;
            tok = slice_make(v.p + s, e - s);
            while (tok.len && (tok.p[0] == ' ' || tok.p[0] == '\t'))
                tok = slice_make(tok.p + 1, tok.len - 1);
            while (tok.len && (tok.p[tok.len - 1] == ' ' || tok.p[tok.len - 1] == '\t'))
                tok.len--;
            if (tok.len && !slice_eq_nocase_cstr(tok, "chunked")) {
                *ret_name = tok;
                return true;
            }
        }
    }
    return false;
}

/* The reflection search cannot read the body (cred_scan_feed said CRED_SCAN_UNSCANNABLE): the
 * head is out already, so cut the connection. */
static void conn_resp_unscannable(struct conn *c)
{
    log_warn("proxy: the response of %s cannot be searched for the credentials' values (%s); "
             "the connection is cut",
             c->host.name, c->reflect_scan.z_err ? c->reflect_scan.z_err : "unknown");
    c->upstream_reusable = false;
    conn_audit(c, true, "credential-unscannable");
    conn_close(c);
}

bool conn_reflected(struct conn *c, size_t from)
{
    int hit;

    if (!c->scan_resp || c->tocl.len <= from)
        return false;
    hit = cred_scan_feed(c->px->creds, &c->reflect_scan, c->tocl.p + from, c->tocl.len - from);
    if (hit >= 0)
        conn_cred_reflected(c, (size_t)hit);
    else if (hit == CRED_SCAN_UNSCANNABLE)
        conn_resp_unscannable(c);
    return hit >= 0 || hit == CRED_SCAN_UNSCANNABLE;
}

/* A response to a request carrying a credential, coded in a way the search for the value
 * cannot read: not relayed (502 credential-unscannable). Returns 1 (the step's "done"). */
static int refuse_unscannable(struct conn *c, const struct slice *coding, const char *field,
                              const char *can)
{
    char text[256];

    buf_reset(&c->tocl);
    snprintf(text, sizeof(text),
             "the response to a request carrying a credential is coded with \"%.*s\" (%s), "
             "which the proxy cannot decode to search it for the credential's value (%s)",
             (int)MIN(coding->len, (size_t)64), coding->p, field, can);
    conn_upstream_error(c, 502, "credential-unscannable", text);
    return 1;
}
static int step_read_resp(struct conn *c)
{
    struct http_response resp;
    struct http_error e = { 502, NULL };
    int end, r;

    if (c->tocl.len) {
        r = side_flush(&c->c, &c->tocl, &c->bytes_down);
        if (r < 0)
            return r;
        if (c->tocl.len)
            return r;
    }
    end = http_head_end(c->uin.p ? c->uin.p : "", c->uin.len, &c->resp_scan);
    if (end == 0 && c->uin.len >= BB_MAX_HTTP_HEAD)
        end = -EMSGSIZE;
    if (end == 0) {
        r = read_into(&c->u, &c->uin, BB_MAX_HTTP_HEAD - c->uin.len);
        if (r == -EPIPE || (r < 0 && r != -E2BIG)) {
            if (retry_fresh(c))
                return 1;
            conn_upstream_error(c, 502, "upstream-closed",
                                "the upstream closed the connection without a response");
            return 1;
        }
        return r;
    }
    if (end < 0) {
        conn_upstream_error(c, 502, "bad-upstream-response", "response head too large");
        return 1;
    }
    r = http_parse_response(c->uin.p, (size_t)end, slice_cstr(c->method), &resp, &e);
    if (r <= 0) {
        conn_upstream_error(c, 502, "bad-upstream-response", e.msg ? e.msg : "malformed response");
        return 1;
    }
    if (resp.status >= 100 && resp.status < 200) {
        if (resp.status == 101 && c->ws && c->scan_resp && upgrade_accepted(&resp) &&
            upgrade_extended(&resp)) {
            conn_upstream_error(c, 502, "credential-unscannable",
                                "the origin switched to websocket with an extension it was not "
                                "offered (Sec-WebSocket-Extensions: compressed frames), which "
                                "the proxy cannot search for the credentials' values");
            return 1;
        }
        if (resp.status == 101 && c->ws && upgrade_accepted(&resp)) {
            /* The switch to websocket the request asked for: the 101 goes to the client with
             * the upgrade fields, then bytes flow both ways (upgrade.c). */
            c->status = 101;
            buf_reset(&c->tocl);
            if (http_build_client_response(&resp, c->uin.p, true, &c->tocl) < 0 ||
                upgrade_finish_response(&c->tocl) < 0) {
                buf_reset(&c->tocl);
                conn_upstream_error(c, 502, "bad-upstream-response", "response head too large");
                return 1;
            }
            if (conn_reflected(c, 0))
                return 0;
            if (c->scan_resp) /* what follows is frames */
                cred_scan_set_websocket(&c->reflect_scan);
            buf_consume(&c->uin, (size_t)end);
            c->resp_scan = 0;
            if (c->uin.len) { /* frames right behind the 101: relayed, and searched */
                size_t before = c->tocl.len;
                if (buf_append(&c->tocl, c->uin.p, c->uin.len) < 0) {
                    conn_close(c);
                    return 0;
                }
                buf_reset(&c->uin);
                if (conn_reflected(c, before))
                    return 0;
            }
            conn_audit(c, true, "allowlisted");
            upgrade_start(c);
            return 1;
        }
        if (resp.status == 101) {
            conn_upstream_error(c, 502, "bad-upstream-response",
                                c->ws ? "the origin switched to a protocol other than websocket"
                                      : "unexpected protocol switch");
            return 1;
        }
        /* Interim response: relay it (hop-by-hop fields removed) and read the next head. */
        if (http_build_client_response(&resp, c->uin.p, true, &c->tocl) < 0) {
            conn_upstream_error(c, 502, "bad-upstream-response", "interim response too large");
            return 1;
        }
        /* An interim head reflects like a final one (103 Early Hints with the request's
         * fields). It ends in CRLF, so a value cannot run on into what follows. */
        if (c->scan_resp) {
            struct cred_scan one;
            int hit;
            cred_scan_init(&one);
            cred_scan_set_values(&one);
            hit = cred_scan_feed(c->px->creds, &one, c->tocl.p, c->tocl.len);
            cred_scan_done(&one);
            if (hit >= 0) {
                conn_cred_reflected(c, (size_t)hit);
                return 0;
            }
        }
        buf_consume(&c->uin, (size_t)end);
        c->resp_scan = 0;
        return 1;
    }
    c->status = (int)resp.status;
    c->resp_body = resp.body;
    c->resp_remaining = resp.content_length;
    if (c->resp_body == HTTP_BODY_LENGTH && !c->resp_remaining)
        c->resp_body = HTTP_BODY_NONE; /* Content-Length: 0: complete with its head */
    http_chunked_init(&c->resp_chunked);
    c->upstream_reusable = resp.keep_alive && resp.body != HTTP_BODY_CLOSE;
    c->client_keep_alive = c->client_keep_alive && resp.body != HTTP_BODY_CLOSE;
    buf_reset(&c->tocl);
    r = http_build_client_response(&resp, c->uin.p, c->client_keep_alive, &c->tocl);
    if (r < 0) {
        conn_upstream_error(c, 502, "bad-upstream-response", "response head too large");
        return 1;
    }
    struct slice coding = SLICE_NULL;
    int coded = c->resp_identity ? content_coding(&resp, &coding) : 0;
    if (coded >= 0 && c->resp_identity && transfer_coded(&resp, &coding))
        return refuse_unscannable(c, &coding, "Transfer-Encoding", "only chunked is relayed");
    if (coded < 0) /* an encoding the search cannot read (br, zstd, ...): the value would
                    * pass unseen (the request asked for identity, build_with_creds) */
        return refuse_unscannable(c, &coding, "Content-Encoding", "gzip and deflate it can");
    if (c->scan_resp) {
        if (conn_reflected(c, 0))
            return 0;
        if (resp.body == HTTP_BODY_CHUNKED)
            cred_scan_set_chunked(&c->reflect_scan);
        /* gzip or deflate: searched inflated, relayed as it is (bounded: cred.h) */
        if (coded > 0 && cred_scan_set_inflate(&c->reflect_scan) < 0) {
            buf_reset(&c->tocl);
            conn_upstream_error(c, 502, "credential-unscannable",
                                "no memory to inflate the response to search it");
            return 1;
        }
    }
    buf_consume(&c->uin, (size_t)end);
    c->resp_scan = 0;
    c->state = CS_SEND_RESP;
    return 1;
}

static void exchange_done(struct conn *c)
{
    conn_audit(c, true, "allowlisted");
    if (!c->upstream_reusable || c->uin.len)
        side_close(c->px, &c->u);
    else if (c->u.fd >= 0) {
        c->u_idle = true;
        c->u_exchanges++;
    }
    replay_drop(c);
    buf_reset(&c->uin);
    if (!c->client_keep_alive) {
        upstream_release(c);
        c->state = CS_DRAIN;
        c->deadline = loop_now(c->px->loop) + (uint64_t)BB_DRAIN_LINGER_MS * 1000000ull;
        return;
    }
    exchange_reset(c);
    c->state = CS_READ_HEAD;
}

static int step_send_resp(struct conn *c)
{
    int r;

    /* Body bytes already read join what is queued (for a small response: the head) so they
     * leave in one send(), whenever they fit. */
    if (c->uin.len && c->tocl.len + c->uin.len <= c->tocl.max) {
        size_t before = c->tocl.len;
        r = move_body(&c->resp_body, &c->resp_remaining, &c->resp_chunked, &c->uin, &c->tocl);
        if (r >= 0 && conn_reflected(c, before))
            return 0;
        if (r < 0) {
            /* Headers are already out: the only honest signal left is to cut the connection. */
            c->upstream_reusable = false;
            conn_audit(c, true, "bad-upstream-body");
            conn_close(c);
            return 0;
        }
    }
    /* A reflection may be split over two reads: the bytes that could begin it stay here
     * until the next read shows they do not (docs/credentials.md, rule 4). */
    c->resp_hold = 0;
    if (c->scan_resp && c->resp_body != HTTP_BODY_NONE)
        c->resp_hold = MIN(cred_scan_hold(&c->reflect_scan), c->tocl.len);
    if (c->tocl.len > c->resp_hold) {
        ssize_t n = c->c.tp->send(&c->c, c->tocl.p, c->tocl.len - c->resp_hold);
        if (n < 0)
            return (int)n;
        buf_consume(&c->tocl, (size_t)n);
        c->bytes_down += (uint64_t)n;
        if (c->tocl.len > c->resp_hold)
            return n > 0;
    }
    if (c->resp_body == HTTP_BODY_NONE) { /* the whole response is out */
        exchange_done(c);
        /* The next request is not here yet unless it was pipelined: wait for it rather than
         * try a read that would find nothing. */
        if (c->state == CS_READ_HEAD && !c->cin.len && !c->tocl.len && !side_pending(&c->c)) {
            c->last_active = loop_now(c->px->loop);
            return 0;
        }
        return 1;
    }
    if (c->uin.len) {
        if (c->tocl.len + c->uin.len <= c->tocl.max)
            return 1; /* it fits now that tocl is (nearly) empty */
        /* held bytes and a full read do not fit together: fail closed */
        conn_audit(c, true, "credential-unscannable");
        conn_close(c);
        return 0;
    }
    if (c->u.eof) {
        if (c->resp_body == HTTP_BODY_CLOSE) {
            c->upstream_reusable = false;
            if (c->tocl.len) {
                c->resp_body = HTTP_BODY_NONE; /* complete: the held bytes go out */
                return 1;
            }
            exchange_done(c);
            return 1;
        }
        conn_audit(c, true, "upstream-truncated");
        conn_close(c);
        return 0;
    }
    r = read_into(&c->u, &c->uin, BB_RELAY_CHUNK);
    if (r == -EPIPE)
        return 1; /* handled above on the next pass */
    if (r < 0) {
        conn_audit(c, true, "upstream-reset");
        conn_close(c);
        return 0;
    }
    return r;
}

/* ---------------------------------------------------------------- CS_DRAIN */

static int step_drain(struct conn *c)
{
    char sink[4096];
    ssize_t n;
    int r;

    if (c->tocl.len) {
        r = side_flush(&c->c, &c->tocl, NULL);
        if (r < 0) {
            conn_close(c);
            return 0;
        }
        if (c->tocl.len)
            return 0;
    }
    if (!c->c.wshut) {
        c->c.tp->shutdown(&c->c);
        c->c.wshut = true;
    }
    /* Discard what the client still sends so closing does not turn into a RST that could
     * destroy the response before the client read it. */
    for (;;) {
        n = c->c.tp->recv(&c->c, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n == 0)
            return 0;
        conn_close(c);
        return 0;
    }
}

/* ---------------------------------------------------------------- driver */

static void set_interest(struct conn *c)
{
    struct proxy *px = c->px;
    uint32_t ce = 0, ue = 0;

    switch (c->state) {
    case CS_READ_HEAD:
        ce = c->tocl.len ? EPOLLOUT : EPOLLIN;
        /* An idle upstream kept for the next request is watched (on_io): a close or bytes
         * nobody asked for end it now. (The same interest as while a response is awaited:
         * no epoll_ctl per request.) */
        if (c->u_idle)
            ue = EPOLLIN;
        break;
    case CS_RESOLVE:
    case CS_HOLD:
        break;
    case CS_CONNECT:
        ue = EPOLLOUT;
        break;
    case CS_SEND_REQ:
        if (c->tocl.len)
            ce |= EPOLLOUT;
        if (c->toup.len)
            ue = EPOLLOUT;
        else
            ce |= EPOLLIN;
        break;
    case CS_READ_RESP:
        if (c->tocl.len)
            ce = EPOLLOUT;
        else
            ue = EPOLLIN;
        break;
    case CS_SEND_RESP:
        if (c->tocl.len > c->resp_hold)
            ce = EPOLLOUT;
        else
            ue = EPOLLIN;
        break;
    case CS_TUNNEL:
        if (c->tocl.len || c->in_pipe_uc)
            ce |= EPOLLOUT;
        if (c->toup.len || c->in_pipe_cu)
            ue |= EPOLLOUT;
        if (!c->c.eof && !c->in_pipe_cu && !c->toup.len)
            ce |= EPOLLIN;
        if (!c->u.eof && !c->in_pipe_uc && !c->tocl.len)
            ue |= EPOLLIN;
        break;
    case CS_UPGRADED:
        if (c->tocl.len > c->resp_hold)
            ce |= EPOLLOUT;
        if (c->toup.len)
            ue |= EPOLLOUT;
        if (!c->c.eof && !c->toup.len)
            ce |= EPOLLIN;
        if (!c->u.eof && c->tocl.len <= c->resp_hold)
            ue |= EPOLLIN;
        break;
    case CS_DRAIN:
        ce = c->tocl.len ? EPOLLOUT : EPOLLIN;
        break;
    case CS_TLS_UP:
        ue = c->u.want ? c->u.want : EPOLLIN;
        break;
    case CS_TLS_DOWN:
        ce = c->tocl.len ? EPOLLOUT : (c->c.want ? c->c.want : EPOLLIN);
        break;
    case CS_CLOSED:
    case CS_MAX:
    default:
        return;
    }
    /* epoll reports EPOLLERR/EPOLLHUP even with no interest; level-triggered, a reset socket
     * we are not using right now would wake us forever. With no interest, ask for edges only:
     * it is reported once, and the step that next uses the socket sees the error. */
    /* A TLS side may need the other readiness to make progress (a read that must write). */
    ce |= c->c.fd >= 0 ? c->c.want : 0;
    ue |= c->u.fd >= 0 ? c->u.want : 0;
    /* Bytes a transport already holds will not be announced by the fd: run again next pass. */
    if (((ce & EPOLLIN) && side_pending(&c->c)) || ((ue & EPOLLIN) && side_pending(&c->u)))
        loop_defer(px->loop, &c->rerun_defer, on_rerun, c);
    /* While an exchange waits on the upstream, the client's read interest (that of the request
     * just read) is left on rather than turned off and on again around every response (two
     * epoll_ctl per request): the client sends nothing meanwhile unless it pipelines or goes
     * away, and then it wakes us once (c_unwanted, on_io) and is turned off here until the
     * next request head is awaited. */
    if (c->state == CS_READ_HEAD)
        c->c_unwanted = false;
    else if (!ce && c->c.src.events == EPOLLIN && !c->c_unwanted &&
             (c->state == CS_SEND_REQ || c->state == CS_READ_RESP || c->state == CS_SEND_RESP))
        ce = EPOLLIN;
    if (c->c.fd >= 0)
        loop_mod(px->loop, &c->c.src, ce ? ce : EPOLLET);
    if (c->u.fd >= 0 && c->u.src.registered)
        loop_mod(px->loop, &c->u.src, ue ? ue : EPOLLET);
}

static void arm_timer(struct conn *c)
{
    struct proxy *px = c->px;
    uint64_t d = c->deadline;

    if (!d)
        d = c->last_active + (uint64_t)px->lim.idle_timeout_ms * 1000000ull;
    loop_timer_set(px->loop, &c->timer, d);
}

static int (*const steps[CS_MAX])(struct conn *c) = {
    [CS_READ_HEAD] = step_read_head, [CS_RESOLVE] = NULL,           [CS_HOLD] = NULL,
    [CS_CONNECT] = step_connect,     [CS_SEND_REQ] = step_send_req, [CS_READ_RESP] = step_read_resp,
    [CS_SEND_RESP] = step_send_resp, [CS_TUNNEL] = tunnel_step,     [CS_TLS_UP] = step_tls_up,
    [CS_TLS_DOWN] = step_tls_down,   [CS_DRAIN] = step_drain,       [CS_CLOSED] = NULL,
    [CS_UPGRADED] = upgrade_step,
};

static void conn_run(struct conn *c)
{
    int r = 1;

    for (unsigned n = 0; r > 0 && n < c->px->lim.run_budget && c->state != CS_CLOSED; n++) {
        /* The step of the current state; CS_RESOLVE waits for on_resolved(). */
        r = steps[c->state] ? steps[c->state](c) : 0;
        if (r > 0)
            c->last_active = loop_now(c->px->loop);
    }
    if (c->state == CS_CLOSED)
        return;
    if (r > 0) {
        /* Cut off for fairness (e.g. a burst of pipelined requests) while there is still work
         * that no readiness event will announce (the bytes are already in our buffers). */
        loop_defer(c->px->loop, &c->rerun_defer, on_rerun, c);
    }
    if (r < 0) {
        /* An I/O error on the client side, or in a tunnel: nothing useful can be said. */
        conn_close(c);
        return;
    }
    set_interest(c);
    arm_timer(c);
}

static void on_io(struct loop_source *src, uint32_t events)
{
    struct conn *c = src->userdata;

    if (src == &c->c.src &&
        (c->state == CS_SEND_REQ || c->state == CS_READ_RESP || c->state == CS_SEND_RESP))
        c->c_unwanted = true;
    if (src == &c->u.src && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        c->u_ready = true;
    if (src == &c->u.src && c->u_idle && c->state == CS_READ_HEAD && !upool_side_alive(&c->u)) {
        side_close(c->px, &c->u); /* the origin closed the idle upstream (or spoke unasked) */
        c->u_idle = false;
    }
    if (c->state != CS_CLOSED)
        conn_run(c);
}

static void on_rerun(struct loop_defer *d)
{
    struct conn *c = d->userdata;
    if (c->state != CS_CLOSED)
        conn_run(c);
}

static void on_timer(struct loop_timer *t)
{
    struct conn *c = t->userdata;
    struct proxy *px = c->px;
    uint64_t now = loop_now(px->loop);

    if (c->state == CS_CLOSED)
        return;
    if (c->deadline) {
        if (now < c->deadline) {
            arm_timer(c);
            return;
        }
        switch (c->state) {
        case CS_READ_HEAD: {
            struct http_error e = { 408, "no complete request head in time" };
            conn_bad_request(c, &e);
            break;
        }
        case CS_RESOLVE:
            conn_upstream_error(c, 504, "resolve-timeout", "name resolution timed out");
            break;
        case CS_HOLD:
            /* Nobody allowed it in time: the head is decided again, for good (403). */
            c->hold_over = true;
            c->redecide = true;
            c->state = CS_READ_HEAD;
            c->deadline = 0;
            break;
        case CS_CONNECT:
            if (c->addr_idx < c->naddrs)
                conn_set_addr(c, (const struct sockaddr *)&c->addrs[c->addr_idx]);
            conn_upstream_error(c, 504, "upstream-connect-timeout",
                                "the upstream did not accept the connection in time");
            break;
        case CS_TLS_UP:
            conn_upstream_error(c, 504, "upstream-tls-timeout",
                                "the TLS handshake with the origin did not finish in time");
            break;
        case CS_TLS_DOWN:
        case CS_DRAIN:
            conn_close(c);
            return;
        case CS_SEND_REQ:
        case CS_READ_RESP:
        case CS_SEND_RESP:
        case CS_UPGRADED:
            c->ws_release = true;
            c->deadline = 0;
            break;
        case CS_TUNNEL:
        case CS_CLOSED:
        case CS_MAX:
        default:
            conn_close(c);
            return;
        }
        conn_run(c);
        return;
    }
    if (now - c->last_active >= (uint64_t)px->lim.idle_timeout_ms * 1000000ull) {
        c->close_reason = "idle-timeout";
        conn_close(c);
        return;
    }
    arm_timer(c);
}

static void conn_free_deferred(struct loop_defer *d)
{
    struct conn *c = d->userdata;
    struct proxy *px = c->px;

    buf_done(&c->cin);
    buf_done(&c->toup);
    buf_done(&c->tocl);
    buf_done(&c->uin);
    replay_drop(c);
    buf_done(&c->replay);
    cred_scan_done(&c->req_scan);
    cred_scan_done(&c->reflect_scan);
    free(c);
    proxy_deferred_done(px);
}

void conn_close(struct conn *c)
{
    struct proxy *px = c->px;

    if (c->state == CS_CLOSED)
        return;
    /* The last word on an exchange that was allowed and had started, however it ends (the
     * client went away, an error, a timeout, a drain): data may have left, so there must be a
     * record (S9). A tunnel gets its closing record with the byte counts. */
    if (c->state == CS_TUNNEL)
        conn_audit(c, true, c->close_reason ? c->close_reason : "closed");
    else if (!c->audited && c->host.name[0] && c->state != CS_READ_HEAD && c->state != CS_DRAIN)
        conn_audit(c, true, c->close_reason ? c->close_reason : "aborted");
    c->state = CS_CLOSED;
    if (c->rq) {
        resolve_req_cancel(c->rq);
        c->rq = NULL;
    }
    side_close(px, &c->c);
    upstream_release(c); /* an idle upstream serves the next client connection */
    side_close(px, &c->u);
    tunnel_pipes_close(c);
    loop_timer_stop(px->loop, &c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        px->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    px->st.open_conns--;
    px->pending++;
    loop_defer(px->loop, &c->free_defer, conn_free_deferred, c);
}

/* Start serving a connected client socket (non-blocking). Returns 0, or -errno (fd not taken). */
int conn_new(struct proxy *px, int fd)
{
    struct conn *c;
    int one = 1, r;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = xcalloc(1, sizeof(*c));
    c->px = px;
    side_init(&c->c);
    side_init(&c->u);
    c->pipe_cu[0] = c->pipe_cu[1] = c->pipe_uc[0] = c->pipe_uc[1] = -1;
    buf_init(&c->cin, BB_MAX_HTTP_HEAD + BB_RELAY_CHUNK);
    buf_init(&c->toup, BB_MAX_HTTP_HEAD + BB_RELAY_CHUNK);
    buf_init(&c->tocl, BB_MAX_HTTP_HEAD + BB_RELAY_CHUNK);
    buf_init(&c->uin, BB_MAX_HTTP_HEAD + BB_RELAY_CHUNK);
    buf_init(&c->replay, BB_MAX_HTTP_HEAD + BB_RELAY_CHUNK);
    loop_timer_init(&c->timer, on_timer, c);
    exchange_reset(c);
    c->state = CS_READ_HEAD;
    c->last_active = loop_now(px->loop);
    c->deadline = c->last_active + (uint64_t)px->lim.head_timeout_ms * 1000000ull;
    c->c.fd = fd;
    c->c.tp = &transport_tcp;
    r = loop_add(px->loop, &c->c.src, fd, EPOLLIN, on_io, c);
    if (r < 0) {
        free(c);
        return r;
    }
    c->next = px->conns;
    if (px->conns)
        px->conns->prev = c;
    px->conns = c;
    px->st.accepted++;
    px->st.open_conns++;
    arm_timer(c);
    return 0;
}
