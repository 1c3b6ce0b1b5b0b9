/* bot-bottle policy check: would the egress daemon allow TARGET? */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/str.h"
#include "proxy/http1.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle policy check [policy options] TARGET\n"
               "\n"
               "Decide whether the egress proxy would allow TARGET, without sending anything.\n"
               "TARGET is a URL (http://host[:port]/..., https://host[:port]/...) or host[:port]\n"
               "(port 443 when omitted). Prints the decision and its reason on stdout and exits\n"
               "0 when allowed, 1 when denied, 125 on a usage or config error.\n"
               "A name is judged by the allowlist alone; the addresses it resolves to are vetted\n"
               "when the proxy connects (private, loopback and metadata addresses are refused).\n"
               "\n"
               "Options:\n" POLICY_OPTS_HELP "  -h, --help               this text\n");
}

/* Split TARGET into host text and port. Returns 0 or -EINVAL. */
static int split_target(const char *target, struct slice *ret_host, uint16_t *ret_port)
{
    struct slice s = slice_cstr(target), auth;
    uint16_t def = 443;
    const char *sep = strstr(target, "://");
    size_t i;

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
    return http_parse_host_header(auth, def, ret_host, ret_port) < 0 ? -EINVAL : 0;
}

static int policy_check_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        POLICY_LONG_OPTIONS,
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
    enum verdict v;
    int opt, ret = EXIT_BB_FAILURE;

    const struct cli_parser parser = { "policy check", "+" POLICY_OPTS_SHORT "h", longopts, usage,
                                       &args };

    optind = 1;
    /* (every option is the parser's: what it returns is CLI_OPT_EXIT) */
    if ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1)
        goto out;
    if (optind != argc - 1) {
        log_error("policy check: expected exactly one TARGET (a URL or host[:port])");
        goto out;
    }
    if (policy_args_finish(&args, &cfg, &policy) < 0)
        goto out;

    if (split_target(argv[optind], &hs, &port) < 0 || host_parse(hs.p, hs.len, &host, &herr) < 0) {
        printf("deny: %s: the target is not a valid URL or host[:port]%s%s\n",
               verdict_reason(V_DENY_BAD_HOST), herr ? ": " : "", herr ? herr : "");
        ret = 1;
        goto out;
    }
    v = policy_check_host(policy, &host, port);
    if (v == V_ALLOW) {
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
