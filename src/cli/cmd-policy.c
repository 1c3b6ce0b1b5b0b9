/* bot-bottle policy check: would the egress daemon allow TARGET? */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/buf.h"
#include "common/net.h"
#include "common/str.h"
#include "proxy/http1.h"
#include "proxy/resolve.h"

#define OPT_RESOLVE 0x2200

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle policy check [policy options] TARGET\n"
            "\n"
            "Decide whether the egress proxy would allow TARGET, without sending anything.\n"
            "TARGET is a URL (http://host[:port]/..., https://host[:port]/...) or host[:port]\n"
            "(port 443 when omitted); no other scheme, and no path without a scheme.\n"
            "Prints the decision and its reason on stdout and exits 0 when allowed, 1 when\n"
            "denied (or the name does not resolve), 125 on a usage or config error.\n"
            "With --upstream-dns (or --resolve: the host's resolver) an allowed name is also\n"
            "resolved and its addresses vetted as run's proxy does (private, loopback and\n"
            "metadata addresses are refused: ssrf-private, ssrf-metadata); without, a name is\n"
            "judged by the allowlist alone.\n"
            "\n"
            "Options:\n" POLICY_OPTS_HELP_BASE
            "      --resolve            resolve with the host's resolver (without --upstream-dns)\n"
            "  -h, --help               this text\n");
}

/* Split TARGET into host text and port. Returns 0 or -EINVAL. */
/* why (may stay ""): what is wrong with target, when "give an http:// or https:// URL" would
 * not say it (userinfo). */
static int split_target(const char *target, struct slice *ret_host, uint16_t *ret_port, char *why,
                        size_t whysize)
{
    struct slice s = slice_cstr(target), auth;
    uint16_t def = 443;
    const char *sep = strstr(target, "://"), *at;
    size_t i;

    why[0] = '\0';
    if (sep) {
        struct slice scheme = slice_make(target, (size_t)(sep - target));
        if (slice_eq_nocase_cstr(scheme, "http"))
            def = 80;
        else if (slice_eq_nocase_cstr(scheme, "https"))
            def = 443;
        else
            return -EINVAL;
        s = slice_cstr(sep + 3);
    }
    /* The authority ends at the first '/', '?' or '#' (RFC 3986 3.2). */
    for (i = 0; i < s.len; i++)
        if (s.p[i] == '/' || s.p[i] == '?' || s.p[i] == '#')
            break;
    if (!sep && i != s.len)
        return -EINVAL;
    auth = slice_make(s.p, i);
    /* userinfo ("user:password@host"): the host is what follows the last '@', which is
     * seldom what the one who wrote it meant; the proxy refuses such URLs (bad-host) */
    at = memrchr(auth.p, '@', auth.len);
    if (at) {
        size_t ul = (size_t)(at - auth.p);
        const char *colon = memchr(auth.p, ':', ul);
        size_t shown = colon ? (size_t)(colon - auth.p) : ul; /* never a password */
        (void)str_printf(why, whysize,
                         "the URL has userinfo ('%.*s%s@' before its host), which the proxy "
                         "refuses: the host is what follows the '@' ('%.*s'); give the URL "
                         "without 'USER@'",
                         (int)MIN(shown, (size_t)64), auth.p, colon ? ":..." : "",
                         (int)MIN(auth.len - ul - 1, (size_t)255), at + 1);
        return -EINVAL;
    }
    return http_parse_host_header(auth, def, ret_host, ret_port) < 0 ? -EINVAL : 0;
}

struct lookup {
    struct loop *loop;
    int status;
    struct sockaddr_storage addrs[BB_MAX_ADDRS];
    size_t n;
};

static void on_resolved(void *userdata, int status, const struct sockaddr_storage *addrs, size_t n)
{
    struct lookup *lk = userdata;

    lk->status = status;
    lk->n = MIN(n, ARRAY_SIZE(lk->addrs));
    for (size_t i = 0; i < lk->n; i++)
        lk->addrs[i] = addrs[i];
    loop_quit(lk->loop, 0);
}

static void on_timeout(struct loop_timer *t)
{
    struct lookup *lk = t->userdata;

    lk->status = -ETIMEDOUT;
    loop_quit(lk->loop, 0);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
    const void *a = ss->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (!inet_ntop(ss->ss_family, a, out, (socklen_t)size))
        snprintf(out, size, "?");
}

/*
 * What run's proxy does after the allowlist said yes (src/proxy/conn.c, on_resolved):
 * resolve, keep the addresses policy_check_addr accepts, refuse when none is left. Prints the
 * answer; returns the exit status.
 */
static int check_resolved(const struct policy *policy, const struct host *host, uint16_t port,
                          const struct net_addr *upstream)
{
    struct lookup lk = { .status = -EIO };
    struct resolver *res = NULL;
    struct loop_timer timer;
    struct buf ok = BUF_INIT(1024);
    char at[64], first_at[64] = "";
    enum verdict first = V_ALLOW;
    int r, ret = 1;

    r = loop_new(&lk.loop);
    if (r < 0 || (r = resolver_new(lk.loop, upstream, &res)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot start a resolver");
        loop_free(lk.loop);
        return EXIT_BB_FAILURE;
    }
    loop_timer_init(&timer, on_timeout, &lk);
    loop_timer_set_in(lk.loop, &timer, BB_RESOLVE_TIMEOUT_MS);
    (void)resolver_lookup(res, host->name, on_resolved, &lk);
    (void)loop_run(lk.loop);
    loop_timer_stop(lk.loop, &timer);
    if (lk.status == -ETIMEDOUT)
        printf("fail: resolve-timeout: %s port %u: the resolver did not answer in time\n",
               host->name, port);
    else if (lk.status == -ENOENT || (lk.status >= 0 && lk.n == 0))
        printf("fail: no-address: %s port %u: the name does not resolve\n", host->name, port);
    else if (lk.status < 0)
        printf("fail: resolve-failed: %s port %u: the resolver returned an error\n", host->name,
               port);
    else {
        for (size_t i = 0; i < lk.n; i++) {
            struct sockaddr_storage ss = lk.addrs[i];
            enum verdict v;
            net_addr_set_port((struct sockaddr *)&ss, port);
            v = policy_check_addr(policy, (const struct sockaddr *)&ss, port);
            addr_text(&lk.addrs[i], at, sizeof(at));
            if (v == V_ALLOW) {
                (void)buf_printf(&ok, "%s%s", ok.len ? ", " : "", at);
            } else if (first == V_ALLOW) {
                first = v;
                snprintf(first_at, sizeof(first_at), "%s", at);
            }
        }
        if (ok.len) {
            printf("allow: %s port %u (resolves to %s)\n", host->name, port, buf_str(&ok));
            ret = 0;
        } else if (first == V_DENY_SSRF) {
            printf("deny: %s: %s port %u resolves to %s, a private, loopback or reserved "
                   "address; if that is intended, add --allow-cidr %s/%s\n",
                   verdict_reason(first), host->name, port, first_at, first_at,
                   strchr(first_at, ':') ? "128" : "32");
        } else {
            printf("deny: %s: %s port %u resolves to %s\n", verdict_reason(first), host->name, port,
                   first_at);
        }
    }
    buf_done(&ok);
    resolver_free(res);
    loop_free(lk.loop);
    return ret;
}

static int policy_check_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        POLICY_LONG_OPTIONS,
        { "resolve", no_argument, NULL, OPT_RESOLVE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct policy_args args = { 0 };
    struct bb_config cfg = { 0 };
    struct policy *policy = NULL;
    struct host host;
    struct slice hs;
    uint16_t port = 0;
    const char *herr = NULL;
    char why[640];
    enum verdict v;
    bool resolve = false;
    int opt, r, ret = EXIT_BB_FAILURE;

    const struct cli_parser parser = { "policy check", "+" POLICY_OPTS_SHORT "h", longopts, usage,
                                       &args };

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt != OPT_RESOLVE)
            goto out;
        resolve = true;
    }
    if (args.cli.audit) {
        log_error("policy check: --audit does not apply (nothing is sent, nothing recorded)");
        goto out;
    }
    if (optind != argc - 1) {
        log_error("policy check: expected exactly one TARGET (a URL or host[:port])");
        goto out;
    }
    if (policy_args_finish(&args, &cfg, &policy) < 0)
        goto out;

    r = split_target(argv[optind], &hs, &port, why, sizeof(why));
    if (r < 0 && why[0]) {
        printf("deny: %s: %s\n", verdict_reason(V_DENY_BAD_HOST), why);
        ret = 1;
        goto out;
    }
    if (r < 0 || host_parse(hs.p, hs.len, &host, &herr) < 0) {
        printf("deny: %s: '%s' is not a valid target%s%s; give an http:// or https:// URL "
               "(https://example.com/path) or host[:port] (example.com:8443)\n",
               verdict_reason(V_DENY_BAD_HOST), argv[optind], herr ? ": " : "", herr ? herr : "");
        ret = 1;
        goto out;
    }
    v = policy_check_host(policy, &host, port);
    if (v == V_ALLOW && host.kind == HOST_NAME && (resolve || cfg.upstream_dns)) {
        struct net_addr up;
        if (cfg.upstream_dns && net_addr_parse(cfg.upstream_dns, 53, &up) < 0) {
            log_error("upstream_dns '%s': expected a numeric ADDR[:PORT]", cfg.upstream_dns);
            goto out;
        }
        ret = check_resolved(policy, &host, port, cfg.upstream_dns ? &up : NULL);
    } else if (v == V_ALLOW) {
        printf("allow: %s port %u\n", host.name, port);
        ret = 0;
    } else {
        printf("deny: %s: %s port %u\n", verdict_reason(v), host.name, port);
        ret = 1;
    }
out:
    policy_free(policy);
    config_done(&cfg);
    policy_args_done(&args);
    return ret;
}

int cmd_policy(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_BB_FAILURE : 0;
    }
    if (strcmp(argv[1], "check") == 0)
        return policy_check_main(argc - 1, argv + 1);
    log_error("policy: unknown subcommand '%s' (known: check)", argv[1]);
    return EXIT_BB_FAILURE;
}
