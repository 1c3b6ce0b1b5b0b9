/* The blocked- and failed-host notices (notice.h). */
#include "supervisor/notice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/str.h"
#include "common/xalloc.h"

#define NOTICE_POLL_MS 200

int notice_open(struct notice *n, const char *audit_path)
{
    int fd, r;

    memset(n, 0, sizeof(*n));
    n->f.fd = -1;
    buf_init(&n->held, NOTICE_HELD_MAX);
    /* Never through a symlink: one planted there would make the daemon append to (and us
     * create) whatever file it names. */
    fd = open(audit_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    /* from the current end (a failure only means no notices; the bottle still runs) */
    r = audit_follow_open(&n->f, audit_path, false);
    return r == -ENAMETOOLONG ? r : 0;
}

/* The fix for an IP address: the --allow-cidr of exactly it. */
static const char *cidr_len(const char *addr)
{
    return strchr(addr, ':') ? "128" : "32";
}

/* WHY of the left_out entry ("HOST WHY") that covers host, or NULL. */
static const char *left_out_why(const struct strv *left_out, const char *host)
{
    size_t hl = strlen(host);

    for (size_t i = 0; left_out && i < left_out->n; i++) {
        const char *e = left_out->v[i], *sp = strchr(e, ' ');
        size_t pl;

        if (!sp)
            continue;
        pl = (size_t)(sp - e);
        if (pl == hl && strncmp(e, host, hl) == 0)
            return sp + 1;
        /* *.SUFFIX: a name below SUFFIX */
        if (pl > 2 && e[0] == '*' && e[1] == '.' && hl > pl - 1 &&
            strncmp(host + hl - (pl - 1), e + 1, pl - 1) == 0)
            return sp + 1;
    }
    return NULL;
}

/*
 * The line for one audit record, or -ENOENT when it says nothing to report: allowed
 * exchanges that worked, aggregated or connection-level records without a host ("*", ""),
 * the closing records of exchanges. *key gets what de-duplicates it ("reason host").
 */
static int format_line(const char *bottle, const struct strv *left_out, const char *kind,
                       const char *host, const char *decision, const char *reason, int port,
                       const char *addr, struct buf *out, struct buf *key)
{
    bool deny = strcmp(decision, "deny") == 0;
    bool dns = strcmp(kind, "dns") == 0;

    if (!host[0] || strcmp(host, "*") == 0)
        return -ENOENT;
    if (deny && strcmp(reason, "bad-host") != 0 && strcmp(host, "(invalid)") == 0)
        return -ENOENT;
    if (strcmp(decision, "hold") == 0) {
        /* --hold-blocked: the request waits; an allow now lets it through. */
        bool std_port = port == 80 || port == 443;
        buf_printf(out,
                   "holding a request to %s port %d (not in the allowlist); to let it through, "
                   "run: bot-bottle allow %s %s%s%.0d",
                   host, port, bottle ? bottle : "NAME", host, std_port ? "" : ":",
                   std_port ? 0 : port);
        buf_printf(key, "hold %s:%d", host, port);
        return 0;
    }
    if (deny) {
        const char *why = left_out_why(left_out, host);
        if (strcmp(reason, "not-allowlisted") == 0 && why)
            buf_printf(out,
                       "blocked %s (not in the allowlist; %s); to allow it anyway, add --allow "
                       "%s",
                       host, why, host);
        else if (strcmp(reason, "not-allowlisted") == 0)
            buf_printf(out, "blocked %s (not in the allowlist); to allow it, add --allow %s", host,
                       host);
        else if (strcmp(reason, "port-not-allowed") == 0 && port > 0)
            buf_printf(out,
                       "blocked %s port %d (port-not-allowed: %s is allowed on other ports); to "
                       "allow it, add --allow %s:%d",
                       host, port, host, host, port);
        else if (strcmp(reason, "ip-literal") == 0)
            buf_printf(out,
                       "blocked %s (ip-literal: an IP address no --allow-cidr covers); to allow "
                       "it, add --allow-cidr %s/%s, or use its name with --allow NAME",
                       host, host, cidr_len(host));
        else if (strcmp(reason, "ssrf-private") == 0 && addr)
            buf_printf(out,
                       "blocked %s (ssrf-private: it resolves to %s, a private, loopback or "
                       "reserved address); if that is intended, add --allow-cidr %s/%s",
                       host, addr, addr, cidr_len(addr));
        else if (strcmp(reason, "ssrf-private") == 0)
            buf_printf(out,
                       "blocked %s (ssrf-private: it resolves to a private, loopback or "
                       "reserved address); if that is intended, add --allow-cidr ADDRESS/32 "
                       "(the address is in the audit log)",
                       host);
        else if (strcmp(reason, "ssrf-metadata") == 0)
            buf_printf(out,
                       "blocked %s (ssrf-metadata: a cloud metadata address; bot-bottle never "
                       "allows it)",
                       host);
        else if (strcmp(reason, "bad-host") == 0)
            buf_printf(out, "blocked a request (bad-host: '%s' is not a valid host name)", host);
        else if (strcmp(reason, "credential-misuse") == 0)
            buf_printf(out,
                       "blocked %s (credential-misuse: a credential's placeholder was sent "
                       "somewhere other than its own header to its own host; the 403 says where)",
                       host);
        else if (strcmp(reason, "credential-reflected") == 0)
            buf_printf(out,
                       "cut a response from %s (credential-reflected: it carried a credential's "
                       "real value back; the bottle did not get it)",
                       host);
        else
            buf_printf(out, "blocked %s (%s); run 'bot-bottle help notices'", host, reason);
    } else {
        /* Allowed, but it failed: the reasons the proxy and DNS filter give for that. */
        static const struct {
            const char *reason, *shown, *text;
        } fails[] = {
            { "no-address", "no-address",
              "the name does not resolve; check the spelling, or the resolver (--upstream-dns)" },
            { "resolve-timeout", "resolve-timeout",
              "the resolver did not answer in time; check --upstream-dns or the host's resolver" },
            { "upstream-timeout", "resolve-timeout",
              "the resolver did not answer in time; check --upstream-dns or the host's resolver" },
            { "resolve-failed", "resolve-failed",
              "the resolver returned an error; check --upstream-dns or the host's resolver" },
            { "upstream-connect-refused", "connect-refused",
              "the server refused the connection (nothing listens on that port)" },
            { "upstream-connect-failed", "connect-failed", "the connection to the server failed" },
            { "upstream-connect-timeout", "connect-timeout",
              "the server did not accept the connection in time" },
            { "upstream-closed", "upstream-closed",
              "the server closed the connection before it answered (a TLS handshake it "
              "refused looks like this)" },
            { "upstream-write-failed", "upstream-closed",
              "the server closed the connection while the request was sent" },
            { "bad-upstream-response", "bad-upstream-response",
              "the server's answer was not valid HTTP" },
            { "upstream-tls-failed", "upstream-tls", "the TLS handshake with the server failed" },
        };
        size_t i;

        for (i = 0; i < sizeof(fails) / sizeof(fails[0]); i++)
            if (strcmp(reason, fails[i].reason) == 0)
                break;
        if (i == sizeof(fails) / sizeof(fails[0]))
            return -ENOENT;
        if (port > 0 && !dns && strncmp(reason, "upstream-", 9) == 0)
            buf_printf(out, "%s port %d failed (%s%s%s): %s", host, port, fails[i].shown,
                       addr ? " at " : "", addr ? addr : "", fails[i].text);
        else
            buf_printf(out, "%s failed (%s): %s", host, fails[i].shown, fails[i].text);
        reason = fails[i].shown;
    }
    /* A port-dependent reason is said once per port: the fix differs. */
    if (strcmp(reason, "port-not-allowed") == 0 || strncmp(reason, "connect-", 8) == 0)
        buf_printf(key, "%s %s:%d", reason, host, port);
    else
        buf_printf(key, "%s %s", reason, host);
    return 0;
}

static void say(struct notice *n, const char *line)
{
    if (n->quiet)
        return;
    if (n->hold) {
        (void)buf_printf(&n->held, "bot-bottle: %s\n", line);
        return;
    }
    fprintf(stderr, "bot-bottle: %s\n", line);
}

/* Show each blocked or failed host once per reason, on our stderr (never inside the command's
 * output). */
static void on_line(void *ud, const char *text, size_t len)
{
    struct notice *n = ud;
    struct audit_record rec;
    struct buf line = BUF_INIT(2048), key = BUF_INIT(2048);
    bool seen = false;

    if (audit_record_parse(text, len, &rec) == 0 && audit_record_is_decision(&rec) &&
        format_line(n->bottle, n->left_out, rec.kind, rec.host, rec.decision, rec.reason, rec.port,
                    rec.addr[0] ? rec.addr : NULL, &line, &key) == 0) {
        for (size_t i = 0; i < n->n_notified; i++)
            if (strcmp(n->notified[i], buf_str(&key)) == 0)
                seen = true;
        if (!seen && n->n_notified < NOTICE_MAX_HOSTS) {
            n->notified[n->n_notified++] = xstrdup(buf_str(&key));
            n->n_events++;
            say(n, buf_str(&line));
        }
    }
    buf_done(&line);
    buf_done(&key);
}

/* The log is followed by the audit reader (audit/reader.h): across the daemon's rotation
 * (NAME.audit.log -> NAME.audit.log.1) and truncation. */
void notice_poll(struct notice *n)
{
    (void)audit_follow_poll(&n->f, on_line, n);
}

void notice_finish(struct notice *n)
{
    if (n->quiet)
        return;
    if (n->held.len)
        fputs(buf_str(&n->held), stderr);
    buf_reset(&n->held);
    n->hold = false;
    if (n->n_events)
        fprintf(stderr,
                "bot-bottle: bottle %s: every request is in its audit log %s (jq . %s); "
                "'bot-bottle help notices' explains each line\n",
                n->bottle ? n->bottle : "?", n->f.path, n->f.path);
}

static void on_timer(struct loop_timer *t)
{
    struct notice *n = t->userdata;

    notice_poll(n);
    loop_timer_set_in(n->loop, t, NOTICE_POLL_MS);
}

void notice_start(struct notice *n, struct loop *loop)
{
    n->loop = loop;
    loop_timer_init(&n->timer, on_timer, n);
    loop_timer_set_in(loop, &n->timer, NOTICE_POLL_MS);
}

void notice_done(struct notice *n)
{
    if (n->loop)
        loop_timer_stop(n->loop, &n->timer);
    n->loop = NULL;
    audit_follow_close(&n->f);
    buf_done(&n->held);
    for (size_t i = 0; i < n->n_notified; i++)
        free(n->notified[i]);
    n->n_notified = 0;
}
