/* bot-bottle run: run a command in a new bottle and exit with its status. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "supervisor/protect.h"
#include "supervisor/supervisor.h"

#define DEFAULT_BACKEND "microvm"

enum {
    OPT_MOUNT = 0x2100,
    OPT_NAME,
    OPT_CPUS,
    OPT_MEMORY,
    OPT_INIT,
    OPT_ACCEL,
    OPT_ALLOW_WRITE,
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle run [options] [--] COMMAND [ARG...]\n"
            "\n"
            "Run COMMAND in a new bottle: it sees the workspace (read-write, at the same path)\n"
            "and the host's /usr read-only, nothing else of the host, and reaches the network\n"
            "only through this bottle's egress proxy and DNS filter, which enforce the\n"
            "allowlist. Exits with COMMAND's status (125: bot-bottle failed, 126: COMMAND not\n"
            "executable, 127: COMMAND not found).\n"
            "\n"
            "Options:\n"
            "  -b, --backend NAME       microvm (default), namespace, or auto (the strongest\n"
            "                           available, and it says which); env BOT_BOTTLE_BACKEND\n"
            "  -w, --workspace DIR      the writable project directory (default: .)\n"
            "  -e, --env NAME[=VALUE]   pass a variable (without VALUE: the host's value)\n"
            "      --mount SRC:DST[:ro] an extra host path inside the bottle (never through a\n"
            "                           symlink)\n"
            "      --allow-write PATH   leave a protected workspace path (below) writable\n"
            "                           (repeatable; config: [bottle] allow_write)\n"
            "      --name NAME          bottle name (default: generated)\n"
            "      --cpus N             CPU limit (e.g. 1.5), via cgroup v2 when available\n"
            "      --memory SIZE        memory limit (e.g. 2G), via cgroup v2 when available\n"
            "  -t, --tty                give the command a terminal (a pty relayed to yours)\n"
            "  -i, --interactive        pass stdin to the command (default: "
            "/dev/null)\n" POLICY_OPTS_HELP "  -v, --verbose            debug logging\n"
            "  -h, --help               this text\n"
            "\n"
            "Inside, HTTP_PROXY/HTTPS_PROXY/ALL_PROXY point at http://A:3128 and DNS at A, where\n"
            "A is the bottle's own 127.77.x.y address. Blocked requests are reported once per\n"
            "host on stderr; every decision is in the audit log\n"
            "($XDG_RUNTIME_DIR/bot-bottle/logs/NAME.audit.log, /run/bot-bottle/logs for root).\n");
    /* The list lives in src/supervisor/protect.c; printed from there so it cannot drift. */
    fprintf(f, "\nRead-only inside the workspace, even when missing, since the host runs or "
               "trusts\nthem later (docs/workspace.md; .git only when it is not a directory):\n ");
    for (size_t i = 0; protect_list_entry(i); i++)
        fprintf(f, " %s", protect_list_entry(i));
    fprintf(f, "\nand the directory core.hooksPath names. --allow-write PATH opens one.\n");
}

static int parse_cpus(const char *s, uint32_t *ret)
{
    /* N or N.D (up to three decimals), 0 < value <= 1024 */
    uint64_t whole = 0, frac = 0;
    const char *dot = strchr(s, '.');
    size_t fl = 0;

    if (dot) {
        fl = strlen(dot + 1);
        if (fl == 0 || fl > 3 || str_to_u64(slice_make(s, (size_t)(dot - s)), 1024, &whole) < 0 ||
            str_to_u64_cstr(dot + 1, 999, &frac) < 0)
            return -EINVAL;
        for (size_t i = fl; i < 3; i++)
            frac *= 10;
    } else if (str_to_u64_cstr(s, 1024, &whole) < 0) {
        return -EINVAL;
    }
    if (whole * 1000 + frac == 0)
        return -EINVAL;
    *ret = (uint32_t)(whole * 1000 + frac);
    return 0;
}

/* NAME or NAME=VALUE -> "NAME=VALUE" (the host's value for a bare NAME; unset: skipped). */
static int add_env(struct strv *out, const char *spec)
{
    const char *eq = strchr(spec, '=');
    const char *val;
    _cleanup_free_ char *kv = NULL;
    struct buf b = BUF_INIT(256 * 1024);

    if (eq) {
        strv_push(out, spec);
        return 0;
    }
    val = getenv(spec);
    if (!val)
        return 0;
    if (buf_printf(&b, "%s=%s", spec, val) < 0)
        return -E2BIG;
    kv = buf_take(&b);
    strv_push(out, kv);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        POLICY_LONG_OPTIONS,
        { "backend", required_argument, NULL, 'b' },
        { "workspace", required_argument, NULL, 'w' },
        { "env", required_argument, NULL, 'e' },
        { "mount", required_argument, NULL, OPT_MOUNT },
        { "allow-write", required_argument, NULL, OPT_ALLOW_WRITE },
        { "name", required_argument, NULL, OPT_NAME },
        { "cpus", required_argument, NULL, OPT_CPUS },
        { "memory", required_argument, NULL, OPT_MEMORY },
        { "bottle-init", required_argument, NULL, OPT_INIT },
        { "tty", no_argument, NULL, 't' },
        { "interactive", no_argument, NULL, 'i' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct policy_args args = { 0 };
    struct supervisor_opts o = { 0 };
    struct bb_config cfg = { 0 };
    struct policy *policy = NULL;
    struct strv env_specs = { 0 }, mounts = { 0 }, allow_write = { 0 };
    const char *backend = NULL, *workspace = ".";
    char wsbuf[PATH_MAX];
    int opt, r, ret = EXIT_BB_FAILURE;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "+" POLICY_OPTS_SHORT "b:w:e:tivh", longopts, NULL)) !=
           -1) {
        r = policy_args_handle(&args, opt, optarg);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        switch (opt) {
        case 'b':
            backend = optarg;
            break;
        case 'w':
            workspace = optarg;
            break;
        case 'e':
            strv_push(&env_specs, optarg);
            break;
        case OPT_MOUNT:
            strv_push(&mounts, optarg);
            break;
        case OPT_ALLOW_WRITE:
            if (!protect_rel_path_valid(optarg)) {
                log_error("--allow-write '%s': give a path relative to the workspace, like "
                          ".vscode or .git/hooks (no leading '/', no '.' or '..')",
                          optarg);
                goto out;
            }
            strv_push(&allow_write, optarg);
            break;
        case OPT_NAME:
            free(args.cli.name);
            args.cli.name = xstrdup(optarg);
            break;
        case OPT_CPUS:
            if (parse_cpus(optarg, &o.cpus_milli) < 0) {
                log_error("--cpus '%s': expected a number of CPUs like 2 or 1.5", optarg);
                goto out;
            }
            break;
        case OPT_MEMORY:
            if (config_parse_size(optarg, &o.memory_bytes) < 0) {
                log_error("--memory '%s': expected a size like 512M or 2G", optarg);
                goto out;
            }
            break;
        case OPT_INIT:
            o.init_path = optarg;
            break;
        case 't':
            o.tty = true;
            break;
        case 'i':
            o.interactive = true;
            break;
        case 'v':
            log_set_level(LOG_LVL_DEBUG);
            break;
        case 'h':
            usage(stdout);
            ret = 0;
            goto out;
        default:
            fprintf(stderr, "Try 'bot-bottle run --help'.\n");
            goto out;
        }
    }
    if (optind >= argc) {
        log_error("run: no COMMAND given (e.g. bot-bottle run --backend namespace -- bash)");
        goto out;
    }
    if (policy_args_finish(&args, &cfg, &policy) < 0)
        goto out;

    if (!backend)
        backend = getenv("BOT_BOTTLE_BACKEND");
    if (!backend || !*backend)
        backend = cfg.backend ? cfg.backend : DEFAULT_BACKEND;
    if (strcmp(backend, "auto") != 0 && !backend_find(backend)) {
        if (strcmp(backend, DEFAULT_BACKEND) == 0)
            log_error("the default microVM backend is not available yet in this build; run "
                      "with --backend namespace (or BOT_BOTTLE_BACKEND=namespace) for the "
                      "namespace backend");
        else
            log_error("unknown backend '%s' (known: namespace, auto)", backend);
        goto out;
    }
    if (!realpath(workspace, wsbuf)) {
        log_errno(LOG_LVL_ERROR, -errno, "workspace %s", workspace);
        goto out;
    }
    for (size_t i = 0; i < cfg.env_pass.n; i++)
        if (add_env(&o.env, cfg.env_pass.v[i]) < 0)
            goto out;
    for (size_t i = 0; i < env_specs.n; i++)
        if (add_env(&o.env, env_specs.v[i]) < 0) {
            log_error("--env %s: value too long", env_specs.v[i]);
            goto out;
        }
    for (size_t i = 0; i < cfg.allow_write.n; i++)
        strv_push(&allow_write, cfg.allow_write.v[i]);
    o.allow_write = allow_write;
    o.mounts = mounts;
    o.backend = backend;
    o.name = cfg.name;
    o.workspace = wsbuf;
    o.argv = argv + optind;
    o.audit_path = cfg.audit;
    if (!o.cpus_milli && cfg.cpus)
        o.cpus_milli = cfg.cpus * 1000;
    if (!o.memory_bytes)
        o.memory_bytes = cfg.memory;
    if (cfg.upstream_dns) {
        if (net_addr_parse(cfg.upstream_dns, 53, &o.upstream_dns) < 0) {
            log_error("upstream_dns '%s': expected a numeric ADDR[:PORT]", cfg.upstream_dns);
            goto out;
        }
        o.have_upstream_dns = true;
    }
    o.reload = policy_args_reload;
    o.reload_userdata = &args;
    ret = supervisor_run(&o, TAKE_PTR(policy));
out:
    policy_free(policy);
    config_done(&cfg);
    strv_done(&env_specs);
    strv_done(&o.env);
    strv_done(&mounts);
    strv_done(&allow_write);
    policy_args_done(&args);
    return ret;
}
