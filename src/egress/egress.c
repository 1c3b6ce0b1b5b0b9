#include "egress/egress.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/str.h"
#include "config/config.h"
#include "channel/handoff.h"
#include "dns/filter.h"
#include "egress/confine.h"
#include "egress/intercept.h"
#include "audit/audit.h"
#include "proxy/cred.h"
#include "proxy/tls.h"
#include "proxy/resolve.h"

struct egress {
    const struct egress_options *o;
    struct loop *loop;
    struct policy *policy;
    struct audit *audit;
    struct resolver *res;
    struct proxy *proxy;
    struct dns_filter *dns;
    struct loop_timer drain_timer;
    struct loop_source handoff_src;
    struct loop_source control_src;
    struct loop_source relay_src;
    struct cred_store *creds;
    struct tls_ctx *tls;
    struct strv changes; /* "allow X" / "deny X" received on the control fd, in order */
    bool stopping;
};

void egress_options_default(struct egress_options *ret)
{
    memset(ret, 0, sizeof(*ret));
    proxy_limits_default(&ret->limits);
    ret->drain_timeout_ms = 5000;
    ret->audit_max_size = AUDIT_DEFAULT_MAX_SIZE;
    ret->ready_fd = -1;
    ret->handoff_fd = -1;
    ret->control_fd = -1;
    ret->relay_fd = -1;
    ret->credentials_fd = -1;
}

/* Put np in force (the old policy is freed). Connections read the policy at each decision and
 * keep no pointer to it, so none is dropped. */
static void swap_policy(struct egress *e, struct policy *np)
{
    proxy_set_policy(e->proxy, np);
    if (e->dns)
        dns_filter_set_policy(e->dns, np);
    policy_free(e->policy);
    e->policy = np;
}

/*
 * Apply one change ("allow X" / "deny X") to p, giving a new policy in *ret. Returns 0, or
 * -EINVAL with *reterr_msg.
 */
static int apply_change(const struct policy *p, const char *change, struct policy **ret,
                        const char **reterr_msg)
{
    struct policy *np;
    const char *arg;

    if (strncmp(change, "allow ", 6) == 0) {
        /* once only: a pattern in force twice would outlive one deny (a timed grant's expiry
         * would leave it, a deny would seem to fail) */
        struct policy *one = policy_new();
        arg = change + 6;
        if (policy_add_allow(one, arg, strlen(arg), reterr_msg) < 0) {
            policy_free(one);
            return -EINVAL;
        }
        for (size_t i = 0; i < policy_n_allow(p); i++)
            if (strcmp(policy_allow_text(p, i), policy_allow_text(one, 0)) == 0) {
                policy_free(one);
                *reterr_msg = "already in force";
                return -EEXIST;
            }
        policy_free(one);
        np = policy_copy(p, NULL);
        if (policy_add_allow(np, arg, strlen(arg), reterr_msg) < 0) {
            policy_free(np);
            return -EINVAL;
        }
    } else if (strncmp(change, "deny ", 5) == 0) {
        /* the pattern as the policy stores it (normalised) */
        struct policy *one = policy_new();
        bool found = false;
        arg = change + 5;
        if (policy_add_allow(one, arg, strlen(arg), reterr_msg) < 0) {
            policy_free(one);
            return -EINVAL;
        }
        for (size_t i = 0; i < policy_n_allow(p); i++)
            if (strcmp(policy_allow_text(p, i), policy_allow_text(one, 0)) == 0)
                found = true;
        if (!found) {
            policy_free(one);
            *reterr_msg = "no such allow pattern in force";
            return -ENOENT;
        }
        np = policy_copy(p, policy_allow_text(one, 0));
        policy_free(one);
    } else {
        *reterr_msg = "unknown request (allow PATTERN, deny PATTERN)";
        return -EINVAL;
    }
    *ret = np;
    return 0;
}

static void control_reply(int fd, const char *msg)
{
    (void)!send(fd, msg, strnlen(msg, EGRESS_CONTROL_REPLY_MAX), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * The TLS interception an "allow" of a method/path rule calls for (intercept.h): its host and
 * port are intercepted from now on; a host no CA covers gets a CA of its own whose certificate
 * goes to *ca for the bottle's trust (docs/credentials.md, "Changing the intercepted set at run
 * time"). Returns 0, or -errno with *why.
 */
static int intercept_for(struct egress *e, const char *pattern, struct buf *ca, const char **why)
{
    char host[BB_MAX_HOSTNAME + 8];
    uint16_t port = 0;
    int r;

    while (*pattern == ' ' || *pattern == '\t')
        pattern++;
    r = egress_intercept_target(pattern, true, host, sizeof(host), &port);
    if (r <= 0 || !e->tls)
        return 0; /* no rule; or a daemon no bottle trusts: its CONNECT stays refused */
    /* the contexts (and the host's CA bundle for upstream trust) at the first need only */
    if (!tls_ctx_started(e->tls) &&
        (r = tls_ctx_start(e->tls, e->o->bottle_name, NULL, e->o->tls_extra_ca, why)) < 0) {
        log_error("egress: TLS interception: %s", *why);
        return r;
    }
    r = tls_intercept_extend(e->tls, host, port, ca);
    if (r < 0) {
        *why = r == -E2BIG ? "cannot intercept TLS for one more host (too many intercepted hosts "
                             "or CAs; restart the bottle with the rule in its config)"
                           : "cannot make a CA for the rule's host";
        return r;
    }
    if (r > 0)
        log_info("egress: intercepting TLS for %s port %u from now on, with a new CA for it alone",
                 host, port);
    return 0;
}

/* Is the pattern a method/path rule whose host and port are intercepted (or no rule, or a
 * daemon that intercepts nothing: nothing to do)? */
static bool rule_intercepted(const struct egress *e, const char *pattern)
{
    char host[BB_MAX_HOSTNAME + 8];
    uint16_t port = 0;

    while (*pattern == ' ' || *pattern == '\t')
        pattern++;
    if (!e->tls || egress_intercept_target(pattern, true, host, sizeof(host), &port) <= 0)
        return true;
    return tls_intercepts(e->tls, host, port);
}

/* A policy change from the supervisor. */
static void on_control(struct loop_source *src, uint32_t events)
{
    struct egress *e = src->userdata;
    char req[EGRESS_CONTROL_MAX + 1], reply[EGRESS_CONTROL_REPLY_MAX];
    (void)events;

    for (int i = 0; i < 16; i++) {
        struct policy *np = NULL;
        struct buf ca = BUF_INIT(EGRESS_CONTROL_REPLY_MAX - 64);
        int r;
        struct tls_mark mark = { 0, 0 };
        const char *why = NULL;
        ssize_t n = recv(src->fd, req, sizeof(req), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            /* the supervisor is gone (it kills us too) or the socket broke */
            loop_del(e->loop, src);
            return;
        }
        if ((size_t)n > EGRESS_CONTROL_MAX || memchr(req, '\0', (size_t)n)) {
            control_reply(src->fd, "error request too long or not text");
            continue;
        }
        req[n] = '\0';
        if (e->changes.n >= BB_MAX_PATTERNS) {
            control_reply(src->fd, "error too many run-time changes");
            continue;
        }
        r = apply_change(e->policy, req, &np, &why);
        if (r == -EEXIST && strncmp(req, "allow ", 6) == 0 && !rule_intercepted(e, req + 6)) {
            /* a rule a reload brought, whose host the reload could not intercept (on_hup):
             * the allow intercepts it now, as for a new rule */
            np = policy_copy(e->policy, NULL);
            r = 0;
        }
        if (r < 0) {
            (void)str_printf(reply, sizeof(reply), "error %s", why);
            control_reply(src->fd, reply);
            continue;
        }
        /* A rule's host intercepted (and its CA made) before the rule is in force: a CONNECT
         * in between gets the rule only inside a session the bottle can verify. */
        if (e->tls)
            mark = tls_intercept_mark(e->tls);
        if (strncmp(req, "allow ", 6) == 0 && intercept_for(e, req + 6, &ca, &why) < 0) {
            policy_free(np);
            buf_done(&ca);
            (void)str_printf(reply, sizeof(reply), "error %s", why);
            control_reply(src->fd, reply);
            continue;
        }
        {
            /* audited before it takes effect: a change that cannot be recorded is not made */
            bool allow = strncmp(req, "allow ", 6) == 0;
            struct audit_event ev = { .kind = AUDIT_POLICY,
                                      .host = req + (allow ? 6 : 5),
                                      .allow = allow,
                                      .reason = "control" };
            if (audit_emit(e->audit, &ev) < 0) {
                if (e->tls)
                    tls_intercept_rollback(e->tls, mark); /* (its CA reached nobody) */
                policy_free(np);
                buf_done(&ca);
                control_reply(src->fd, "error cannot write the audit log");
                continue;
            }
        }
        swap_policy(e, np);
        strv_push(&e->changes, req);
        log_info("egress: policy changed by the supervisor (%s; %zu allow patterns)", req,
                 policy_n_allow(np));
        /* "ok N", then the new CA certificate (PEM) the bottle must trust, if any */
        (void)str_printf(reply, sizeof(reply), "ok %zu%s%s", policy_n_allow(np), ca.len ? "\n" : "",
                         ca.len ? buf_str(&ca) : "");
        buf_done(&ca);
        control_reply(src->fd, reply);
    }
}

static void on_hup(struct loop *l, int signo, void *ud)
{
    struct egress *e = ud;
    struct policy *np = NULL;
    (void)l;
    (void)signo;

    if (audit_reopen(e->audit) < 0)
        log_warn("egress: could not reopen the audit log %s", e->o->audit_path);
    if (!e->o->reload)
        return;
    if (e->o->reload(e->o->reload_userdata, &np) < 0) {
        log_warn("egress: reload failed; the previous policy stays in force");
        return;
    }
    /* The supervisor's run-time changes stay in force on top of the files. */
    for (size_t i = 0; i < e->changes.n; i++) {
        struct policy *next = NULL;
        const char *why;
        int r = apply_change(np, e->changes.v[i], &next, &why);
        if (r == -EEXIST)
            continue; /* the files now allow it too */
        if (r < 0) {
            log_warn("egress: after the reload, '%s' no longer applies (%s)", e->changes.v[i], why);
            continue;
        }
        policy_free(np);
        np = next;
    }
    swap_policy(e, np);
    log_info("egress: policy reloaded (%zu allow patterns, %zu allow_cidr)", policy_n_allow(np),
             policy_n_cidr(np));
    /* A rule for a host that is not intercepted: a reload cannot start intercepting it (the
     * bottle would have to trust a new CA, which only an allow through the supervisor hands
     * it). The rule is in force (plain http:// gets it); HTTPS CONNECTs to the host are refused
     * (needs-interception) rather than tunnelled past it, until an allow intercepts it. */
    for (size_t i = 0; i < policy_n_allow(np); i++) {
        const char *rule = policy_allow_text(np, i);
        if (e->o->control_fd >= 0 && !rule_intercepted(e, rule))
            log_warn("egress: reload: the rule '%s' needs HTTPS to its host intercepted, which a "
                     "reload cannot start (the bottle must be given a new CA): its CONNECTs are "
                     "refused (needs-interception) until you run: bot-bottle allow %s '%s' "
                     "(which intercepts it), or restart the bottle",
                     rule, e->o->bottle_name ? e->o->bottle_name : "NAME", rule);
    }
}

static void on_drained(void *ud)
{
    struct egress *e = ud;
    loop_quit(e->loop, 0);
}

static void on_drain_timeout(struct loop_timer *t)
{
    struct egress *e = t->userdata;
    log_info("egress: drain timeout; closing the remaining connections");
    loop_quit(e->loop, 0);
}

static void on_term(struct loop *l, int signo, void *ud)
{
    struct egress *e = ud;
    (void)signo;

    if (e->stopping) {
        loop_quit(l, 0); /* a second signal: stop now */
        return;
    }
    e->stopping = true;
    proxy_drain(e->proxy, on_drained, e);
    loop_timer_set_in(l, &e->drain_timer, e->o->drain_timeout_ms);
}

/* Connections the bottle hands over (namespace backend): served like accepted ones. */
static void on_handoff(struct loop_source *src, uint32_t events)
{
    struct egress *e = src->userdata;
    (void)events;

    for (int i = 0; i < 64; i++) {
        int fd = -1;
        int r = handoff_recv(src->fd, &fd);
        if (r == 0)
            return;
        if (r == -EBADMSG) {
            log_warn("egress: refused a malformed connection hand-off from the bottle");
            continue;
        }
        if (r < 0) {
            /* EOF or error: the bottle is gone; its connections still being served stay. */
            loop_del(e->loop, src);
            return;
        }
        proxy_adopt(e->proxy, fd);
    }
}

/* Channel streams the supervisor's relay hands over (a daemon without a TCP listener). */
static void on_relay(struct loop_source *src, uint32_t events)
{
    struct egress *e = src->userdata;
    (void)events;

    for (int i = 0; i < 64; i++) {
        int fd = -1;
        int r = handoff_recv_relay(src->fd, &fd);
        if (r == 0)
            return;
        if (r == -EBADMSG) {
            log_warn("egress: refused a malformed connection hand-off from the supervisor");
            continue;
        }
        if (r < 0) {
            loop_del(e->loop, src);
            return;
        }
        proxy_adopt(e->proxy, fd);
    }
}

/*
 * The credentials, from the supervisor's pipe (never argv or the environment): read to the
 * end, decoded, the buffer wiped. A daemon holding any makes itself non-dumpable with no core
 * (no core file, no ptrace by other processes of the user, /proc/PID/mem closed to them).
 */
static int read_credentials(int fd, struct cred_store **ret)
{
    size_t cap = CRED_WIRE_MAX + 1, len = 0;
    char *p = malloc(cap);
    const char *why = NULL;
    int r;

    if (!p)
        return -ENOMEM;
    for (;;) {
        ssize_t n = read(fd, p + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap) {
            r = -EFBIG;
            goto out;
        }
    }
    r = cred_store_decode(p, len, ret, &why);
    if (r < 0)
        log_error("egress: the credentials from the supervisor are not valid: %s", why);
out:
    explicit_bzero(p, cap);
    free(p);
    return r;
}

static int no_core(void)
{
    struct rlimit rl = { 0, 0 };

    if (setrlimit(RLIMIT_CORE, &rl) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

/* The intercepted hosts (credential hosts and [egress] inspect), the CA: proxy/tls.h. */
static int setup_tls(struct egress *e)
{
    const struct egress_options *o = e->o;
    const char *why = NULL;
    int r;

    /* A bottle's daemon (a supervisor reads the CA from ready_fd and sends run-time changes on
     * control_fd) keeps a TLS context even with nothing to intercept yet: a method/path rule
     * added at run time can then be intercepted (tls_intercept_extend). */
    if (!cred_store_count(e->creds) && !(o->inspect && o->inspect->n) &&
        !(o->ready_fd >= 0 && o->control_fd >= 0))
        return 0;
    e->tls = tls_ctx_new();
    for (size_t i = 0; i < cred_store_count(e->creds); i++)
        if ((r = tls_intercept_add(e->tls, cred_host(e->creds, i), cred_port(e->creds, i))) < 0)
            return log_errno(LOG_LVL_ERROR, r, "egress: cannot intercept %s",
                             cred_host(e->creds, i));
    for (size_t i = 0; o->inspect && i < o->inspect->n; i++) {
        const char *v = o->inspect->v[i];
        char h[BB_MAX_HOSTNAME + 8];
        uint16_t port;
        /* (a wildcard only from a rule's host: cmd-egress.c; [egress] inspect takes none) */
        if (egress_intercept_target(v, false, h, sizeof(h), &port) <= 0 ||
            (r = tls_intercept_add(e->tls, h, port)) < 0) {
            log_error("egress: inspect '%s': expected HOST[:PORT] (one host name)", v);
            return -EINVAL;
        }
    }
    if (!tls_intercept_count(e->tls)) {
        /* nothing yet: started by the first rule that needs it (intercept_for), so a bottle
         * that never has one does not pay for the contexts */
        proxy_set_tls(e->proxy, e->tls);
        return 0;
    }
    r = tls_ctx_start(e->tls, o->bottle_name, NULL, o->tls_extra_ca, &why);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "egress: TLS interception: %s", why);
    proxy_set_tls(e->proxy, e->tls);
    log_info("egress: intercepting TLS for %zu host(s) with a CA of this daemon's own",
             tls_intercept_count(e->tls));
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    /* Tunnels use 6 descriptors each (two sockets, two pipes): take what we may. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int egress_run(const struct egress_options *o, struct policy *policy)
{
    struct egress e = { .o = o, .policy = policy };
    char astr[NET_ADDRSTR_MAX];
    int r;

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    r = loop_new(&e.loop);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "egress: cannot create the event loop");
        goto out;
    }
    loop_timer_init(&e.drain_timer, on_drain_timeout, &e);
    r = audit_open(o->audit_path, o->bottle_name, &e.audit);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "egress: cannot open the audit log %s%s", o->audit_path,
                  r == -ELOOP ? " (it is a symlink; give the path of a regular file)" : "");
        goto out;
    }
    audit_set_max_size(e.audit, o->audit_max_size);
    audit_attach_loop(e.audit, e.loop);
    r = resolver_new(e.loop, o->have_upstream_dns ? &o->upstream_dns : NULL, &e.res);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "egress: cannot set up the resolver");
        goto out;
    }
    if (o->credentials_fd >= 0) {
        r = read_credentials(o->credentials_fd, &e.creds);
        close(o->credentials_fd);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "egress: cannot read the credentials");
            goto out;
        }
        if (cred_store_count(e.creds) && (r = no_core()) < 0) {
            log_errno(LOG_LVL_ERROR, r, "egress: cannot make the daemon non-dumpable");
            goto out;
        }
    }
    r = proxy_new(e.loop, o->no_listen ? NULL : &o->listen, &o->limits, e.res, e.audit, &e.proxy);
    if (r < 0) {
        net_addr_format((const struct sockaddr *)&o->listen.ss, astr);
        log_errno(LOG_LVL_ERROR, r, "egress: cannot listen on %s", astr);
        goto out;
    }
    proxy_set_policy(e.proxy, e.policy);
    proxy_set_creds(e.proxy, e.creds);
    /* DLP (docs/dlp.md): a real value, or an encoding of it, going anywhere but its own host
     * is refused (dlp:credential). */
    for (size_t i = 0; i < cred_store_count(e.creds); i++) {
        size_t vlen = 0;
        const char *v = cred_value(e.creds, i, &vlen);
        r = proxy_add_secret(e.proxy, cred_host(e.creds, i), cred_port(e.creds, i), v, vlen);
        if (r < 0 && r != -EINVAL) { /* (-EINVAL: too short to scan for without noise) */
            log_errno(LOG_LVL_ERROR, r, "egress: cannot register credential %zu for DLP", i);
            goto out;
        }
    }
    r = setup_tls(&e);
    if (r < 0)
        goto out;
    proxy_set_policy_from_file(e.proxy, o->policy_from_file);
    if (o->have_dns) {
        r = dns_filter_new(e.loop, &o->dns, o->have_upstream_dns ? &o->upstream_dns : NULL, e.audit,
                           &e.dns);
        if (r < 0) {
            net_addr_format((const struct sockaddr *)&o->dns.ss, astr);
            log_errno(LOG_LVL_ERROR, r, "egress: cannot serve DNS on %s", astr);
            goto out;
        }
        dns_filter_set_policy(e.dns, e.policy);
    }
    if (o->handoff_fd >= 0) {
        fd_set_nonblock(o->handoff_fd, true);
        r = loop_add(e.loop, &e.handoff_src, o->handoff_fd, EPOLLIN, on_handoff, &e);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "egress: cannot watch the hand-off socket");
            goto out;
        }
    }
    if (o->relay_fd >= 0) {
        fd_set_nonblock(o->relay_fd, true);
        r = loop_add(e.loop, &e.relay_src, o->relay_fd, EPOLLIN, on_relay, &e);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "egress: cannot watch the relay socket");
            goto out;
        }
    }
    if (o->control_fd >= 0) {
        fd_set_nonblock(o->control_fd, true);
        r = loop_add(e.loop, &e.control_src, o->control_fd, EPOLLIN, on_control, &e);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "egress: cannot watch the control socket");
            goto out;
        }
    }
    if ((r = loop_add_signal(e.loop, SIGHUP, on_hup, &e)) < 0 ||
        (r = loop_add_signal(e.loop, SIGTERM, on_term, &e)) < 0 ||
        (r = loop_add_signal(e.loop, SIGINT, on_term, &e)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "egress: cannot set up signal handling");
        goto out;
    }
    /* Everything privileged (binding, opening the audit file) is done: give the rest up
     * before the first byte from a bottle is parsed. */
    r = egress_confine();
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "egress: cannot confine the daemon (seccomp, capabilities)");
        goto out;
    }
    if (o->no_listen) {
        log_info("egress: proxy serving only the bottle's hand-off (no TCP listener)%s",
                 cred_store_count(e.creds) ? "; holding credentials" : "");
    } else {
        net_addr_format((const struct sockaddr *)&o->listen.ss, astr);
        log_info("egress: proxy listening on %s", astr);
    }
    if (o->have_dns) {
        net_addr_format((const struct sockaddr *)&o->dns.ss, astr);
        log_info("egress: DNS filter listening on %s (udp, tcp)", astr);
    }
    if (o->ready_fd >= 0) {
        /* "ready\n", then with a TLS context "tls\n" and the CA certificates the bottle must
         * trust (none while nothing is intercepted) */
        struct buf msg = BUF_INIT(64 * 1024);
        size_t off = 0;
        buf_append_str(&msg, "ready\n");
        if (e.tls)
            buf_append_str(&msg, "tls\n");
        if (e.tls && tls_ca_count(e.tls) && tls_ca_pem(e.tls, &msg) < 0)
            log_warn("egress: cannot write the CA certificate out");
        while (off < msg.len) {
            ssize_t w = write(o->ready_fd, msg.p + off, msg.len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        buf_done(&msg);
        close(o->ready_fd);
    }
    r = loop_run(e.loop);
out:
    if (e.loop) {
        loop_del(e.loop, &e.handoff_src);
        loop_del(e.loop, &e.control_src);
        loop_del(e.loop, &e.relay_src);
    }
    if (o->relay_fd >= 0)
        close(o->relay_fd);
    if (o->handoff_fd >= 0)
        close(o->handoff_fd);
    if (o->control_fd >= 0)
        close(o->control_fd);
    strv_done(&e.changes);
    proxy_free(e.proxy);
    tls_ctx_free(e.tls);
    dns_filter_free(e.dns);
    resolver_free(e.res);
    /* loop_free runs the deferred frees that still point at the proxy and the resolver. */
    if (e.loop)
        loop_timer_stop(e.loop, &e.drain_timer);
    /* The last summaries of repeated decisions are written while the loop still exists. */
    audit_attach_loop(e.audit, NULL);
    loop_free(e.loop);
    /* the closing record of the hash chain, after every other record (audit.h) */
    audit_seal(e.audit);
    audit_close(e.audit);
    policy_free(e.policy);
    cred_store_free(e.creds);
    return r;
}
