/* bot-bottle egress: the egress daemon on its own (sidecar use, tests, benchmarks). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "egress/egress.h"

enum {
    OPT_LISTEN = 0x2000,
    OPT_DNS,
    OPT_NAME,
    OPT_READY_FD,
    OPT_HEAD_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_CONNECT_TIMEOUT,
    OPT_MAX_CONNS,
    OPT_DRAIN_TIMEOUT,
    OPT_HANDOFF_FD,
    OPT_AUDIT_MAX_SIZE,
    OPT_CONTROL_FD,
    OPT_RELAY_FD,
    OPT_CREDENTIALS_FD,
    OPT_NO_LISTEN,
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle egress [policy options] --listen ADDR:PORT [--dns ADDR:PORT]\n"
            "\n"
            "Run the egress daemon on its own: an HTTP/HTTPS forward proxy (absolute-URI and\n"
            "CONNECT) and, with --dns, a DNS filter, both enforcing one allowlist. Everything\n"
            "not allowlisted gets 403 (proxy) or NXDOMAIN (DNS) and an audit record.\n"
            "SIGHUP reloads the config files (the same files as at start, never a new search)\n"
            "and reopens the audit log; SIGTERM drains and exits. Audit records (JSON lines)\n"
            "go to standard output unless --audit FILE (or audit = FILE in the config) says\n"
            "otherwise.\n"
            "\n"
            "Options:\n"
            "  -l, --listen ADDR:PORT   proxy address (numeric), e.g. 127.77.0.2:3128\n"
            "      --dns ADDR:PORT      also serve DNS (UDP and TCP) on this address\n"
            "      --name NAME          bottle name recorded in audit records (default: "
            "egress)\n"
            "      --audit-max-size N[K|M|G]  rotate the audit file (to FILE.1) when it would\n"
            "                           pass N bytes (default 4M; 0: never)\n" POLICY_OPTS_HELP_BASE
                POLICY_OPTS_HELP_HOLD
            "      --audit FILE         append audit records (JSON lines) to FILE (default:\n"
            "                           standard output; '-' = standard output)\n"
            "  -v, --verbose            debug logging\n"
            "  -q, --quiet              only warnings and errors\n"
            "  -h, --help               this text\n"
            "\n"
            "Tuning (mostly for tests): --max-conns N, --head-timeout-ms MS,\n"
            "  --idle-timeout-ms MS, --connect-timeout-ms MS, --drain-timeout-ms MS\n"
            "\n"
            "For the supervisor ('bot-bottle run' starts the daemon as 'bot-bottle egress' with\n"
            "an empty environment and only these descriptors besides stdin/stdout/stderr):\n"
            "  --ready-fd FD            write \"ready\" to FD once listening, then close it\n"
            "  --handoff-fd FD          a SOCK_SEQPACKET socket over which the bottle hands over\n"
            "                           its proxy connections\n"
            "  --control-fd FD          a SOCK_SEQPACKET socket over which the supervisor\n"
            "                           adds or removes allow patterns\n"
            "  --relay-fd FD            a SOCK_SEQPACKET socket over which the supervisor hands\n"
            "                           over the channel's proxy streams (unix stream sockets)\n"
            "  --credentials-fd FD      read the credentials to put into requests from FD\n"
            "                           (never from argv or the environment)\n"
            "  --no-listen              no TCP listener: serve only --handoff-fd and --relay-fd\n"
            "                           (a daemon holding credentials)\n"
            "  --config-sha256 HEX      the -c FILE just before must have this SHA-256, at start\n"
            "                           and at every reload (else the reload is refused)\n"
            "  --no-default-config      read only the -c files; never search for one\n"
            "\n"
            "Config file keys ([egress] listen, dns, allow, allow_cidr, upstream_dns, audit) are\n"
            "read as 'bot-bottle help config' describes; the command line wins.\n");
}

/* A positive number up to max; what names the unit in the error message. */
static int parse_count(const char *opt, const char *arg, uint64_t max, const char *what,
                       unsigned *ret)
{
    uint64_t v;
    if (str_to_u64_cstr(arg, max, &v) < 0 || v == 0) {
        log_error("%s '%s': expected %s (1..%llu)", opt, arg, what, (unsigned long long)max);
        return -EINVAL;
    }
    *ret = (unsigned)v;
    return 0;
}

/* Bytes with an optional K, M or G suffix (powers of 1024); 0 allowed. */
static int parse_size(const char *opt, const char *arg, uint64_t *ret)
{
    char num[32];
    size_t n = strlen(arg);
    uint64_t mult = 1, v;

    if (n && (arg[n - 1] == 'K' || arg[n - 1] == 'k'))
        mult = 1024;
    else if (n && (arg[n - 1] == 'M' || arg[n - 1] == 'm'))
        mult = 1024 * 1024;
    else if (n && (arg[n - 1] == 'G' || arg[n - 1] == 'g'))
        mult = 1024 * 1024 * 1024;
    if (mult > 1)
        n--;
    if (n == 0 || n >= sizeof(num)) {
        log_error("%s '%s': expected a size in bytes, e.g. 4M", opt, arg);
        return -EINVAL;
    }
    memcpy(num, arg, n);
    num[n] = '\0';
    if (str_to_u64_cstr(num, UINT64_MAX / mult, &v) < 0) {
        log_error("%s '%s': expected a size in bytes, e.g. 4M", opt, arg);
        return -EINVAL;
    }
    *ret = v * mult;
    return 0;
}

static int parse_ms(const char *opt, const char *arg, unsigned *ret)
{
    return parse_count(opt, arg, 86400000, "milliseconds", ret);
}

/* The host[:port] of each method/path rule ("HOST[:PORT] METHODS PATH"), added to cfg->inspect
 * once; a wildcard "*.name" too (its CA is constrained to the names below name). */
static void add_rule_hosts(struct bb_config *cfg)
{
    for (size_t i = 0; i < cfg->allow.n; i++) {
        const char *p = cfg->allow.v[i];
        size_t n = strcspn(p, " \t");
        char hp[300];
        bool seen = false;

        if (!p[n] || n == 0 || n >= sizeof(hp) || p[0] == '[')
            continue;
        memcpy(hp, p, n);
        hp[n] = '\0';
        for (size_t k = 0; k < cfg->inspect.n; k++)
            seen |= strcmp(cfg->inspect.v[k], hp) == 0;
        if (!seen)
            strv_push(&cfg->inspect, hp);
    }
}

int cmd_egress(int argc, char **argv)
{
    static const struct option longopts[] = {
        POLICY_LONG_OPTIONS,
        POLICY_OPT_HOLD_BLOCKED,
        { "listen", required_argument, NULL, 'l' },
        { "dns", required_argument, NULL, OPT_DNS },
        { "name", required_argument, NULL, OPT_NAME },
        { "ready-fd", required_argument, NULL, OPT_READY_FD },
        { "head-timeout-ms", required_argument, NULL, OPT_HEAD_TIMEOUT },
        { "idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT },
        { "connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT },
        { "drain-timeout-ms", required_argument, NULL, OPT_DRAIN_TIMEOUT },
        { "max-conns", required_argument, NULL, OPT_MAX_CONNS },
        { "handoff-fd", required_argument, NULL, OPT_HANDOFF_FD },
        { "audit-max-size", required_argument, NULL, OPT_AUDIT_MAX_SIZE },
        { "control-fd", required_argument, NULL, OPT_CONTROL_FD },
        { "relay-fd", required_argument, NULL, OPT_RELAY_FD },
        { "credentials-fd", required_argument, NULL, OPT_CREDENTIALS_FD },
        { "no-listen", no_argument, NULL, OPT_NO_LISTEN },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct policy_args args = { 0 };
    struct egress_options o;
    struct bb_config cfg = { 0 };
    struct policy *policy = NULL;
    const char *name = NULL;
    bool quiet = false;
    int opt, r, ret = EXIT_BB_FAILURE;

    const struct cli_parser parser = { "egress", "+" POLICY_OPTS_SHORT "l:vqh", longopts, usage,
                                       &args };

    egress_options_default(&o);
    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        switch (opt) {
        case CLI_OPT_EXIT:
            goto out;
        case 'l':
            free(args.cli.listen);
            args.cli.listen = xstrdup(optarg);
            break;
        case OPT_DNS:
            free(args.cli.dns);
            args.cli.dns = xstrdup(optarg);
            break;
        case OPT_NAME:
            name = optarg;
            break;
        case OPT_READY_FD: {
            uint64_t v;
            if (str_to_u64_cstr(optarg, 65535, &v) < 0) {
                log_error("--ready-fd '%s': expected a file descriptor number", optarg);
                goto out;
            }
            o.ready_fd = (int)v;
            break;
        }
        case OPT_HANDOFF_FD: {
            uint64_t v;
            if (str_to_u64_cstr(optarg, 65535, &v) < 0 || v <= 2) {
                log_error("--handoff-fd '%s': expected a file descriptor number above 2", optarg);
                goto out;
            }
            o.handoff_fd = (int)v;
            break;
        }
        case OPT_CONTROL_FD: {
            uint64_t v;
            if (str_to_u64_cstr(optarg, 65535, &v) < 0 || v <= 2) {
                log_error("--control-fd '%s': expected a file descriptor number above 2", optarg);
                goto out;
            }
            o.control_fd = (int)v;
            break;
        }
        case OPT_RELAY_FD:
        case OPT_CREDENTIALS_FD: {
            uint64_t v;
            const char *oname = opt == OPT_RELAY_FD ? "--relay-fd" : "--credentials-fd";
            if (str_to_u64_cstr(optarg, 65535, &v) < 0 || v <= 2) {
                log_error("%s '%s': expected a file descriptor number above 2", oname, optarg);
                goto out;
            }
            if (opt == OPT_RELAY_FD)
                o.relay_fd = (int)v;
            else
                o.credentials_fd = (int)v;
            break;
        }
        case OPT_NO_LISTEN:
            o.no_listen = true;
            break;
        case OPT_HEAD_TIMEOUT:
            if (parse_ms("--head-timeout-ms", optarg, &o.limits.head_timeout_ms) < 0)
                goto out;
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_ms("--idle-timeout-ms", optarg, &o.limits.idle_timeout_ms) < 0)
                goto out;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (parse_ms("--connect-timeout-ms", optarg, &o.limits.connect_timeout_ms) < 0)
                goto out;
            break;
        case OPT_DRAIN_TIMEOUT:
            if (parse_ms("--drain-timeout-ms", optarg, &o.drain_timeout_ms) < 0)
                goto out;
            break;
        case OPT_MAX_CONNS:
            if (parse_count("--max-conns", optarg, 1000000, "a number of connections",
                            &o.limits.max_conns) < 0)
                goto out;
            break;
        case OPT_AUDIT_MAX_SIZE:
            if (parse_size("--audit-max-size", optarg, &o.audit_max_size) < 0)
                goto out;
            break;
        case 'q':
            quiet = true;
            if (log_get_level() < LOG_LVL_DEBUG)
                log_set_level(LOG_LVL_WARN);
            break;
        default: /* (cli_getopt returns only the options above) */
            goto out;
        }
    }
    if (optind < argc) {
        log_error("egress: unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (policy_args_finish(&args, &cfg, &policy) < 0)
        goto out;
    /* A bottle's daemon (run by a supervisor, which installs the bottle's CA) intercepts the
     * hosts that have method/path rules, wildcards included, so the rules hold for HTTPS too;
     * the standalone daemon, whose clients would not trust the CA, refuses their CONNECTs
     * (needs-interception). */
    if (o.ready_fd >= 0)
        add_rule_hosts(&cfg);
    o.inspect = &cfg.inspect;
    o.tls_extra_ca = cfg.tls_extra_ca;
    if (cfg.n_creds && o.credentials_fd < 0)
        log_warn("egress: the config's [credential] sections are used by 'bot-bottle run' "
                 "only; this daemon puts no credential into requests");
    if (o.no_listen) {
        if (o.handoff_fd < 0 && o.relay_fd < 0) {
            log_error("egress: --no-listen needs --handoff-fd or --relay-fd (the only way in)");
            goto out;
        }
    } else if (!cfg.listen) {
        log_error("egress: --listen ADDR:PORT is required (e.g. --listen 127.0.0.1:3128)");
        goto out;
    } else if (net_addr_parse(cfg.listen, 0, &o.listen) < 0) {
        log_error("egress: --listen '%s': expected a numeric ADDR:PORT", cfg.listen);
        goto out;
    }
    if (cfg.dns) {
        if (net_addr_parse(cfg.dns, 0, &o.dns) < 0) {
            log_error("egress: --dns '%s': expected a numeric ADDR:PORT", cfg.dns);
            goto out;
        }
        o.have_dns = true;
    }
    if (cfg.upstream_dns) {
        if (net_addr_parse(cfg.upstream_dns, 53, &o.upstream_dns) < 0) {
            log_error("egress: upstream_dns '%s': expected a numeric ADDR[:PORT]",
                      cfg.upstream_dns);
            goto out;
        }
        o.have_upstream_dns = true;
    }
    /* (not under run's --quiet: the supervisor's user sees the blocked-host notices) */
    if (policy_n_allow(policy) == 0 && !quiet)
        log_warn("egress: the allowlist is empty: every request will be refused (add --allow)");
    o.audit_path = cfg.audit ? cfg.audit : "-";
    o.policy_from_file = args.n_files > 0;
    if (cfg.have_hold_blocked)
        o.limits.hold_blocked_ms = cfg.hold_blocked * 1000u;
    o.bottle_name = name ? name : cfg.name ? cfg.name : "egress";
    o.reload = policy_args_reload;
    o.reload_userdata = &args;
    r = egress_run(&o, TAKE_PTR(policy));
    ret = r < 0 ? EXIT_BB_FAILURE : 0;
out:
    policy_free(policy);
    config_done(&cfg);
    policy_args_done(&args);
    return ret;
}
