/*
 * ns-launch: starts one bottle through the backend API (namespace backend), without the
 * supervisor or an egress daemon, waits for it and exits with its status. For
 * tests/integration/test-namespace.sh and for timing.
 *
 *   ns-launch [--init PATH] [-w DIR] [-e NAME[=VALUE]]... [--mount SRC:DST[:ro]]...
 *             [--alias A] [--name N] [--cpus MILLI] [--memory BYTES] [-t] -- CMD [ARG...]
 *   ns-launch [--init PATH] --probe        exit 0 if available, 77 (skip) if not
 *
 * The host end of the channel is kept open, but nothing answers on it (no egress daemon).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/log.h"
#include "common/str.h"
#include "guest/spec.h"

static volatile int bottle_pidfd = -1;

static void forward(int sig)
{
    if (bottle_pidfd >= 0)
        (void)syscall(SYS_pidfd_send_signal, bottle_pidfd, sig, NULL, 0);
}

static int usage(void)
{
    fprintf(stderr, "usage: ns-launch [--init PATH] [-w DIR] [-e NAME[=VALUE]] [--mount S:D[:ro]]"
                    " [--alias A] [--name N] [--cpus MILLI] [--memory BYTES] [-t] -- CMD...\n"
                    "       ns-launch [--init PATH] --probe\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "init", required_argument, NULL, 'I' },
        { "workspace", required_argument, NULL, 'w' },
        { "env", required_argument, NULL, 'e' },
        { "mount", required_argument, NULL, 'm' },
        { "alias", required_argument, NULL, 'a' },
        { "name", required_argument, NULL, 'n' },
        { "cpus", required_argument, NULL, 'c' },
        { "memory", required_argument, NULL, 'M' },
        { "tty", no_argument, NULL, 't' },
        { "probe", no_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    struct bottle_spec spec = { 0 };
    struct backend_create_args args = { .stdio = { -1, -1, -1 }, .handoff_fd = -1 };
    const struct backend_ops *ops;
    struct backend_probe probe;
    struct backend_started started;
    struct bottle *b = NULL;
    char ws[PATH_MAX], *ws_arg = NULL, home[PATH_MAX];
    const char *alias = "127.77.0.2", *name = "ns-test";
    struct passwd *pw;
    bool do_probe = false;
    uint64_t v;
    int c, r, status = 125;

    log_set_prefix("ns-launch");
    spec.uid = (uint32_t)getuid();
    spec.gid = (uint32_t)getgid();
    spec.tmpfs_size[BOTTLE_TMPFS_TMP] = spec.tmpfs_size[BOTTLE_TMPFS_HOME] = 1ULL << 30;
    spec.tmpfs_size[BOTTLE_TMPFS_SHM] = 64ULL << 20;
    while ((c = getopt_long(argc, argv, "+w:e:t", opts, NULL)) != -1) {
        switch (c) {
        case 'I':
            args.paths.init = optarg;
            break;
        case 'w':
            ws_arg = optarg;
            break;
        case 'e': {
            char *eq = strchr(optarg, '=');
            if (eq) {
                *eq = '\0';
                r = bottle_spec_set_env(&spec, optarg, eq + 1);
            } else {
                const char *val = getenv(optarg);
                r = val ? bottle_spec_set_env(&spec, optarg, val) : 0;
            }
            if (r < 0) {
                log_error("bad -e %s", optarg);
                return 2;
            }
            break;
        }
        case 'm':
            if (bottle_spec_add_mount_arg(&spec, optarg) < 0) {
                log_error("bad --mount %s", optarg);
                return 2;
            }
            break;
        case 'a':
            alias = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'c':
            if (str_to_u64_cstr(optarg, 1024 * 1000, &v) < 0)
                return usage();
            args.cpus_milli = (uint32_t)v;
            break;
        case 'M':
            if (str_to_u64_cstr(optarg, UINT64_MAX, &v) < 0)
                return usage();
            args.memory_bytes = v;
            break;
        case 't':
            spec.tty = true;
            break;
        case 'p':
            do_probe = true;
            break;
        default:
            return usage();
        }
    }
    ops = backend_find("namespace");
    if (!ops)
        return 125;
    if (do_probe) {
        r = ops->probe(&args.paths, &probe);
        printf("%s: %s\n", probe.available ? "available" : "unavailable", probe.reason);
        return r >= 0 && probe.available ? 0 : 77;
    }
    if (optind >= argc)
        return usage();
    for (int i = optind; i < argc; i++)
        if (bottle_spec_add_arg(&spec, argv[i]) < 0)
            return 2;
    if (!realpath(ws_arg ? ws_arg : ".", ws)) {
        log_errno(LOG_LVL_ERROR, -errno, "workspace %s", ws_arg ? ws_arg : ".");
        return 125;
    }
    pw = getpwuid(getuid());
    if (str_printf(home, sizeof(home), "%s",
                   pw && pw->pw_dir && strcmp(pw->pw_dir, "/") != 0 ? pw->pw_dir : "/home/user") <
        0)
        return 125;
    if (getenv("TERM"))
        (void)bottle_spec_set_env(&spec, "TERM", getenv("TERM"));
    (void)bottle_spec_set_str(&spec.name, name);
    (void)bottle_spec_set_str(&spec.hostname, name);
    (void)bottle_spec_set_str(&spec.user, pw ? pw->pw_name : "user");
    (void)bottle_spec_set_str(&spec.home, home);
    (void)bottle_spec_set_str(&spec.workspace, ws);
    (void)bottle_spec_set_str(&spec.channel, "fd:3");
    if (inet_pton(AF_INET, alias, &spec.alias) != 1) {
        log_error("bad --alias %s", alias);
        return 2;
    }
    args.spec = &spec;

    r = ops->create(&args, &b);
    if (r < 0)
        goto out;
    signal(SIGTERM, forward);
    signal(SIGINT, forward);
    signal(SIGHUP, forward);
    r = ops->start(b, &started);
    if (r < 0)
        goto out;
    bottle_pidfd = started.pidfd;
    r = ops->wait(b, &status);
    close(started.channel_fd);
out:
    if (b)
        ops->destroy(b);
    bottle_spec_done(&spec);
    return r < 0 ? 125 : status;
}
