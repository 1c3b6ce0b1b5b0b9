/* bot-bottle run: run a command in a new bottle and exit with its status. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "cli/credentials.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/xalloc.h"
#include "guest/spec.h"
#include "proxy/cred.h"
#include "supervisor/protect.h"
#include "supervisor/state.h"
#include "supervisor/supervisor.h"

/* Default limits (docs/namespace.md, "Limits"): memory min(8 GiB, half of RAM), 4096
 * processes; /tmp and $HOME a quarter of the memory limit each, /dev/shm min(64 MiB, a
 * quarter). tmpfs pages count against the memory limit. */
#define DEFAULT_MEMORY_MAX (8ULL << 30)
#define DEFAULT_PIDS 4096
#define DEFAULT_SHM_MAX (64ULL << 20)
#define MAX_PIDS 4194304 /* the kernel's pid_max ceiling */

enum {
    OPT_MOUNT = 0x2100,
    OPT_NAME,
    OPT_CPUS,
    OPT_MEMORY,
    OPT_INIT,
    OPT_PIDS,
    OPT_TMPFS_SIZE,
    OPT_SHM_SIZE,
    OPT_NO_LIMITS,
    OPT_ALLOW_WRITE,
    OPT_QUIET,
    OPT_ACCEL,
    OPT_AGENT,
    OPT_CREDENTIAL,
};

static void options_help(FILE *f, bool start);

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle run [options] [--] COMMAND [ARG...]\n"
            "       bot-bottle run [options] AGENT [ARG...]     (an agent profile: claude, codex)\n"
            "       bot-bottle run [options] --agent AGENT [--] [ARG...]\n"
            "\n"
            "Run COMMAND in a new bottle: it sees the workspace (read-write, at the same path)\n"
            "and the host's /usr read-only, nothing else of the host, and reaches the network\n"
            "only through this bottle's egress proxy and DNS filter, which enforce the\n"
            "allowlist. Exits with COMMAND's status (125: bot-bottle failed, 126: COMMAND not\n"
            "executable, 127: COMMAND not found).\n");
    options_help(f, false);
}

static void start_usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle start [options] [--] [COMMAND [ARG...]]\n"
            "\n"
            "Start a bottle in the background, as 'run' would, and return once it runs: prints\n"
            "its name (--name, or a generated one). COMMAND defaults to a login shell (bash -l,\n"
            "else sh -l). The bottle's supervisor leaves the terminal (its own session, its\n"
            "output in <state>/logs/NAME.log) and outlives it. The command gets a terminal the\n"
            "supervisor holds ('bot-bottle attach NAME'; the last 64 KiB of output are kept\n"
            "while nobody is attached). 'bot-bottle exec NAME CMD' runs another command in it,\n"
            "'bot-bottle stop NAME' ends it, 'bot-bottle rm NAME' removes its logs. Exits 0, or\n"
            "125 with what went wrong. -t and -i are accepted and implied (the terminal is\n"
            "always there; a backend without one sends the output to the log).\n");
    options_help(f, true);
}

static void options_help(FILE *f, bool start)
{
    fprintf(f,
            "\n"
            "Options:\n"
            "  -b, --backend NAME       microvm (default: a QEMU microVM), namespace, or auto\n"
            "                           (the strongest that can run here); else env\n"
            "                           BOT_BOTTLE_BACKEND, else [bottle] backend. One that\n"
            "                           cannot run here is an error (125), never swapped:\n"
            "                           'bot-bottle doctor' says which can.\n"
            "                           Only by name: smolmachines (a smolvm machine) and\n"
            "                           docker (an example, not a tested boundary)\n"
            "      --accel A            microvm: kvm, tcg (emulation, slow) or auto (default:\n"
            "                           KVM when it can boot the guest, else TCG); kvm fails\n"
            "                           (125) where KVM is not usable; config: [microvm] accel\n"
            "  -w, --workspace DIR      the writable project directory (default: .)\n"
            "      --agent NAME         run the agent NAME with its profile: its hosts, API\n"
            "                           keys and state directory (bot-bottle help agents).\n"
            "                           'run NAME' does the same when the first argument names\n"
            "                           a profile; 'run -- NAME' runs NAME as a plain command\n"
            "  -e, --env NAME[=VALUE]   pass a variable (without VALUE: the host's value)\n"
            "      --credential NAME:HOST[:PORT]:HEADER:SOURCE\n"
            "                           a secret the proxy puts into HEADER of requests to\n"
            "                           HOST (port 443 by default); SOURCE is env:VAR,\n"
            "                           file:/PATH or command:CMD, resolved here. The bottle\n"
            "                           gets only a placeholder, in VAR for env:VAR\n"
            "                           (else BB_CRED_NAME)\n"
            "                           (config: [credential \"NAME\"]; repeatable)\n"
            "      --mount SRC:DST[:ro] an extra host path inside the bottle (never through a\n"
            "                           symlink)\n"
            "      --allow-write PATH   leave a protected workspace path (below) writable;\n"
            "                           /DST/PATH: one in a read-write --mount at DST\n"
            "                           (repeatable; config: [bottle] allow_write)\n"
            "      --name NAME          bottle name (default: generated)\n"
            "      --memory SIZE        memory limit, tmpfs included (default: 8G or half the\n"
            "                           RAM, whichever is less); microvm: the guest's RAM is\n"
            "                           this less QEMU's share (without --memory: 1G)\n"
            "      --pids N             process limit (default: 4096)\n"
            "      --cpus N             CPU limit (e.g. 1.5; default: none)\n"
            "      --tmpfs-size SIZE    size of /tmp and of $HOME, each (default: memory/4)\n"
            "      --shm-size SIZE      size of /dev/shm (default: 64M, at most memory/4)\n"
            "      --no-limits          run without memory/pids/cpu limits (one warning); without\n"
            "                           it, a limit that cannot be enforced is an error (125)\n"
            "%s" POLICY_OPTS_HELP POLICY_OPTS_HELP_HOLD
            "  -v, --verbose            debug logging (and the bottle's name and audit log)\n"
            "      --quiet              no blocked/failed-host notices (the audit log has all)\n"
            "  -h, --help               this text\n"
            "\n"
            "Inside, HTTP_PROXY/HTTPS_PROXY/ALL_PROXY point at http://A:3128 and DNS at A, where\n"
            "A is the bottle's own 127.77.x.y address. Blocked and failed requests are reported\n"
            "once per host and reason on stderr, with the option that fixes them (with -t: when\n"
            "the command exits, never over its screen); every decision is in the audit log\n"
            "($XDG_RUNTIME_DIR/bot-bottle/logs/NAME.audit.log, /run/bot-bottle/logs for root).\n"
            "'bot-bottle help notices' explains each notice.\n",
            start ? "  -t, -i                   implied (see above)\n"
                  : "  -t, --tty                give the command a terminal (a pty relayed to "
                    "yours)\n"
                    "  -i, --interactive        pass stdin to the command (default: /dev/null)\n");
    /* The list lives in src/supervisor/protect.c; printed from there so it cannot drift. */
    fprintf(
        f,
        "\nRead-only inside the workspace, even when missing, since the host runs or "
        "trusts\nthem later (bot-bottle help workspace; .git only when it is not a directory):\n ");
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

/*
 * The defaults (see DEFAULT_*), or none of the cgroup limits with --no-limits. The tmpfs
 * sizes always apply: they need no cgroup. Returns 0 or -EINVAL (logged).
 */
static int set_limits(struct supervisor_opts *o, bool no_limits, uint64_t tmpfs_size,
                      uint64_t shm_size)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    uint64_t mem = ram ? MIN(DEFAULT_MEMORY_MAX, ram / 2) : DEFAULT_MEMORY_MAX;

    if (no_limits && (o->memory_bytes || o->cpus_milli || o->pids_max)) {
        log_error("--no-limits cannot be combined with --memory, --cpus or --pids (or memory/cpus "
                  "in the config); drop one of them");
        return -EINVAL;
    }
    if (o->memory_bytes)
        mem = o->memory_bytes;
    if (no_limits) {
        log_warn("--no-limits: the bottle runs without memory, process or CPU limits");
    } else {
        o->memory_bytes = mem;
        if (!o->pids_max)
            o->pids_max = DEFAULT_PIDS;
    }
    /* tmpfs sizes follow the memory limit (their pages count against it). */
    o->tmp_size = o->home_size = tmpfs_size ? tmpfs_size : MAX(mem / 4, 1ULL << 20);
    o->shm_size = shm_size ? shm_size : MAX(MIN(DEFAULT_SHM_MAX, mem / 4), 1ULL << 20);
    return 0;
}

/* NAME or NAME=VALUE -> "NAME=VALUE" (the host's value for a bare NAME; unset: skipped).
 * what names the source in the error message (-E2BIG, logged): "--env" or "[env] pass". */
static bool strv_contains(const struct strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0)
            return true;
    return false;
}

static int add_env(struct strv *out, const char *spec, const char *what, struct strv *warned)
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
    if (!val) {
        if (!strv_contains(warned, spec)) {
            log_warn("%s %s: the variable is not set here, so it is not passed; set it, or give "
                     "a value with --env %s=VALUE",
                     what, spec, spec);
            strv_push(warned, spec);
        }
        return 0;
    }
    if (buf_printf(&b, "%s=%s", spec, val) < 0) {
        log_error("%s %s: the host's value is too long to pass (at most %zu bytes)", what, spec,
                  b.max);
        return -E2BIG;
    }
    kv = buf_take(&b);
    strv_push(out, kv);
    return 0;
}

/*
 * The host's system directories: the bottle has /usr read-only (and /bin, /lib, ... through
 * it), builds /, /etc, /dev, /proc, /sys, /run itself, and the rest is the host's own state.
 * A workspace or a writable mount source there would make it writable from the bottle (as
 * root: the host's /usr), and a mount target there lands on what the bottle has read-only.
 * Returns the directory p (canonical) is or lies under, "/" for / itself, or NULL.
 */
static const char *system_dir(const char *p, bool target)
{
    static const char *const sys[] = { "/usr", "/etc",   "/boot",  "/bin",    "/sbin",
                                       "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                                       "/sys", "/dev",   "/run",   "/var" };
    size_t n = target ? 12 : ARRAY_SIZE(sys); /* (a target may go under /run or /var) */
    char st[PATH_MAX];

    if (strcmp(p, "/") == 0)
        return "/";
    if (!target) {
        if (strcmp(p, "/var/tmp") == 0 || strncmp(p, "/var/tmp/", 9) == 0)
            return NULL; /* (a scratch directory like /tmp) */
        if (state_root_path(st, sizeof(st)) >= 0 &&
            (trust_path_within(p, st) || trust_path_within(st, p)))
            return "the state directory";
    }
    for (size_t i = 0; i < n; i++)
        if (trust_path_within(p, sys[i]))
            return sys[i];
    return NULL;
}

/* "the root directory", "the system directory /usr", "inside the system directory /usr"... */
static const char *sys_desc(const char *sys, const char *p, char *buf, size_t size)
{
    if (strcmp(sys, "/") == 0)
        return "the root directory";
    if (sys[0] != '/')
        snprintf(buf, size, "in or around bot-bottle's state directory");
    else
        snprintf(buf, size, "%s %s",
                 strcmp(p, sys) == 0 ? "the system directory" : "inside the system directory", sys);
    return buf;
}

/*
 * -w DIR: it must exist, be a directory, and not be a system directory. Before anything
 * starts; *ret (PATH_MAX) gets the canonical path.
 */
static int check_workspace(const char *arg, char *ret)
{
    struct stat st;
    const char *sys;
    char desc[PATH_MAX + 64];

    if (!realpath(arg, ret) || stat(ret, &st) < 0) {
        log_errno(LOG_LVL_ERROR, -errno,
                  "the workspace %s cannot be used (-w DIR: a project "
                  "directory, default .)",
                  arg);
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("the workspace %s is not a directory; give a project directory with -w DIR", arg);
        return -ENOTDIR;
    }
    sys = system_dir(ret, false);
    if (sys) {
        log_error("the workspace %s is %s, which a bottle must never write; give a project "
                  "directory with -w DIR",
                  ret, sys_desc(sys, ret, desc, sizeof(desc)));
        return -EPERM;
    }
    return 0;
}

/*
 * The command and the variables travel to the bottle in its spec, which has limits
 * (guest/spec.h): say which one a command goes past, before anything starts. The total is
 * estimated with room for the rest of the spec.
 */
static int check_sizes(char **argv, const struct strv *env)
{
    size_t n = 0, total = 0;

    for (char **a = argv; *a; a++, n++) {
        size_t len = strlen(*a);
        if (len > BOTTLE_SPEC_MAX_STR) {
            log_error("argument %zu of the command is %zu bytes; a bottle takes arguments of "
                      "at most %d KiB each (pass large data in a file in the workspace)",
                      n + 1, len, BOTTLE_SPEC_MAX_STR / 1024);
            return -E2BIG;
        }
        total += len + 16;
    }
    if (n > BOTTLE_SPEC_MAX_ARGS) {
        log_error("the command has %zu arguments; a bottle takes at most %d (use xargs inside "
                  "the bottle, or a file in the workspace)",
                  n, BOTTLE_SPEC_MAX_ARGS);
        return -E2BIG;
    }
    for (size_t i = 0; i < env->n; i++) {
        size_t len = strlen(env->v[i]);
        if (len > BOTTLE_SPEC_MAX_STR) {
            log_error("the variable %.*s is %zu bytes; a bottle takes at most %d KiB each",
                      (int)strcspn(env->v[i], "="), env->v[i], len, BOTTLE_SPEC_MAX_STR / 1024);
            return -E2BIG;
        }
        total += len + 16;
    }
    if (total + 64 * 1024 > BOTTLE_SPEC_MAX_SIZE) {
        log_error("the command and its variables take about %zu KiB; a bottle takes at most "
                  "%d KiB in all (Argument list too long: pass large data in a file in the "
                  "workspace)",
                  total / 1024, (BOTTLE_SPEC_MAX_SIZE - 64 * 1024) / 1024);
        return -E2BIG;
    }
    return 0;
}

/*
 * --mount SRC:DST[:ro]: SRC must exist, DST be absolute and not under what the bottle has
 * read-only or builds itself, a writable SRC not a system directory. A read-write one adds
 * SRC (canonical) to what the bottle can write.
 */
static int add_writable_mount(struct strv *out, const char *spec)
{
    const char *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    _cleanup_free_ char *src = NULL, *dst = NULL;
    const char *sys;
    bool ro;
    char rp[PATH_MAX], desc[PATH_MAX + 64];

    if (!c1) {
        log_error("--mount '%s': expected SRC:DST[:ro]", spec);
        return -EINVAL;
    }
    ro = c2 && strcmp(c2 + 1, "ro") == 0;
    src = xstrndup(spec, (size_t)(c1 - spec));
    dst = c2 ? xstrndup(c1 + 1, (size_t)(c2 - c1 - 1)) : xstrdup(c1 + 1);
    if (!realpath(src, rp)) {
        int r = -errno;
        log_error("--mount %s: the source %s %s", spec, src,
                  r == -ENOENT ? "does not exist" : strerror(-r));
        return r;
    }
    if (dst[0] != '/') {
        log_error("--mount %s: the target %s must be an absolute path (like /data)", spec, dst);
        return -EINVAL;
    }
    sys = system_dir(dst, true);
    if (sys) {
        log_error("--mount %s: the target %s is %s, which the bottle has read-only or builds "
                  "itself; choose a target elsewhere (like /data or under $HOME)",
                  spec, dst, sys_desc(sys, dst, desc, sizeof(desc)));
        return -EINVAL;
    }
    if (ro)
        return 0;
    sys = system_dir(rp, false);
    if (sys) {
        log_error("--mount %s: the source %s is %s, which a bottle must never write; add :ro "
                  "to mount it read-only",
                  spec, rp, sys_desc(sys, rp, desc, sizeof(desc)));
        return -EPERM;
    }
    strv_push(out, rp);
    return 0;
}

/*
 * The audit log is the record of what the bottle did: never where the bottle can write it
 * (it could rewrite the log, or plant a symlink so that the daemon appends to another file).
 * Both the path as written and where it leads must be outside; *ret is the canonical path,
 * which is what gets opened (so no symlink in the workspace is followed later).
 */
static int check_audit_path(const char *path, const struct strv *writable, char **ret)
{
    _cleanup_free_ char *canon = NULL, *canon_dir = NULL, *dir = NULL;
    const char *slash, *base;
    char cwd[PATH_MAX];
    struct buf lex = BUF_INIT(2 * PATH_MAX), cb = BUF_INIT(2 * PATH_MAX);
    int r;

    if (strcmp(path, "-") == 0) {
        *ret = xstrdup(path);
        return 0;
    }
    /* The directory canonical, the file name as it is: a symlink there is refused when the
     * file is opened (O_NOFOLLOW), not resolved here. */
    slash = strrchr(path, '/');
    base = slash ? slash + 1 : path;
    dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        log_error("audit log %s: name a file", path);
        return -EINVAL;
    }
    r = trust_canonicalize(dir, &canon_dir);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "audit log %s", path);
    if (buf_printf(&cb, "%s/%s", strcmp(canon_dir, "/") == 0 ? "" : canon_dir, base) < 0)
        return log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "audit log %s", path);
    canon = buf_take(&cb);
    if (path[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        return log_errno(LOG_LVL_ERROR, -errno, "getcwd");
    if (buf_printf(&lex, "%s%s%s", path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/", path) < 0)
        return log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "audit log %s", path);
    for (size_t i = 0; i < writable->n; i++)
        if (trust_path_within(canon, writable->v[i]) ||
            trust_path_within(buf_str(&lex), writable->v[i])) {
            log_error("the audit log %s lies inside %s, which the bottle can write (it could "
                      "rewrite the log or redirect it); choose a path outside with --audit or "
                      "[egress] audit",
                      path, writable->v[i]);
            buf_done(&lex);
            return -EPERM;
        }
    buf_done(&lex);
    *ret = TAKE_PTR(canon);
    return 0;
}

/* run and start: one parser (start: detached, COMMAND optional). */
static int run_or_start(int argc, char **argv, bool start)
{
    static const struct option longopts[] = {
        POLICY_LONG_OPTIONS,
        POLICY_OPT_HOLD_BLOCKED,
        { "backend", required_argument, NULL, 'b' },
        { "accel", required_argument, NULL, OPT_ACCEL },
        { "workspace", required_argument, NULL, 'w' },
        { "env", required_argument, NULL, 'e' },
        { "mount", required_argument, NULL, OPT_MOUNT },
        { "allow-write", required_argument, NULL, OPT_ALLOW_WRITE },
        { "name", required_argument, NULL, OPT_NAME },
        { "cpus", required_argument, NULL, OPT_CPUS },
        { "memory", required_argument, NULL, OPT_MEMORY },
        { "bottle-init", required_argument, NULL, OPT_INIT },
        { "pids", required_argument, NULL, OPT_PIDS },
        { "tmpfs-size", required_argument, NULL, OPT_TMPFS_SIZE },
        { "shm-size", required_argument, NULL, OPT_SHM_SIZE },
        { "no-limits", no_argument, NULL, OPT_NO_LIMITS },
        { "tty", no_argument, NULL, 't' },
        { "interactive", no_argument, NULL, 'i' },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "agent", required_argument, NULL, OPT_AGENT },
        { "credential", required_argument, NULL, OPT_CREDENTIAL },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct policy_args args = { 0 };
    struct supervisor_opts o = { 0 };
    struct bb_config cfg = { 0 }, cli_creds = { 0 };
    struct buf cred_wire = BUF_INIT(CRED_WIRE_MAX);
    struct policy *policy = NULL;
    struct strv env_warned = { 0 };
    struct strv env_specs = { 0 }, mounts = { 0 }, writable = { 0 }, allow_write = { 0 };
    const char *backend = NULL, *workspace = ".";
    char wsbuf[PATH_MAX];
    uint64_t tmpfs_size = 0, shm_size = 0;
    bool no_limits = false;
    _cleanup_free_ char *audit = NULL;
    const char *agent = NULL;
    struct agent_run ar = { 0 };
    _cleanup_free_ char **cmdv = NULL;
    bool dashdash;
    int opt, ret = EXIT_BB_FAILURE;

    const struct cli_parser parser = { start ? "start" : "run", "+" POLICY_OPTS_SHORT "b:w:e:tivh",
                                       longopts, start ? start_usage : usage, &args };
    char *shell[] = { access("/usr/bin/bash", X_OK) == 0 ? "bash" : "sh", "-l", NULL };

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        switch (opt) {
        case CLI_OPT_EXIT:
            goto out;
        case 'b':
            backend = optarg;
            break;
        case OPT_ACCEL:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "kvm") != 0 &&
                strcmp(optarg, "tcg") != 0) {
                log_error("--accel '%s': expected kvm, tcg or auto", optarg);
                goto out;
            }
            o.accel = optarg;
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
            if (!protect_rel_path_valid(optarg[0] == '/' ? optarg + 1 : optarg)) {
                log_error("--allow-write '%s': give a path relative to the workspace, like "
                          ".vscode or .git/hooks, or one inside the bottle in a --mount, like "
                          "/data/.git/hooks (no '.' or '..')",
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
        case OPT_PIDS:
            if (str_to_u64_cstr(optarg, MAX_PIDS, &o.pids_max) < 0 || o.pids_max == 0) {
                log_error("--pids '%s': expected a number of processes from 1 to %d", optarg,
                          MAX_PIDS);
                goto out;
            }
            break;
        case OPT_TMPFS_SIZE:
        case OPT_SHM_SIZE:
            if (config_parse_size(optarg, opt == OPT_SHM_SIZE ? &shm_size : &tmpfs_size) < 0 ||
                (opt == OPT_SHM_SIZE ? shm_size : tmpfs_size) == 0 ||
                (opt == OPT_SHM_SIZE ? shm_size : tmpfs_size) > BOTTLE_SPEC_MAX_TMPFS) {
                log_error("%s '%s': expected a non-zero size like 512M or 2G",
                          opt == OPT_SHM_SIZE ? "--shm-size" : "--tmpfs-size", optarg);
                goto out;
            }
            break;
        case OPT_NO_LIMITS:
            no_limits = true;
            break;
        case 't':
            o.tty = true;
            break;
        case 'i':
            o.interactive = true;
            break;
        case OPT_QUIET:
            o.quiet = true;
            break;
        case OPT_AGENT:
            agent = optarg;
            break;
        case OPT_CREDENTIAL: {
            const char *why = NULL;
            if (config_parse_credential_arg(&cli_creds, optarg, &why) < 0) {
                log_error("--credential '%s': %s", optarg, why);
                goto out;
            }
            break;
        }
        default: /* (cli_getopt returns only the options above) */
            goto out;
        }
    }
    /* getopt stepped over a `--` ending the options: what follows is a plain command. */
    dashdash = optind > 1 && strcmp(argv[optind - 1], "--") == 0;
    if (optind >= argc && !agent && !start) {
        log_error("run: no COMMAND given (e.g. bot-bottle run --backend namespace -- bash)");
        goto out;
    }
    /* The workspace and the rw mount sources are what the bottle can write: a config file
     * there is used only when approved, and the audit log never goes there. */
    if (check_workspace(workspace, wsbuf) < 0)
        goto out;
    strv_push(&writable, wsbuf);
    for (size_t i = 0; i < mounts.n; i++)
        if (add_writable_mount(&writable, mounts.v[i]) < 0)
            goto out;
    args.writable_roots = &writable;
    if (policy_args_finish(&args, &cfg, &policy) < 0)
        goto out;
    /* `run NAME [ARGS]`: the first argument names an agent profile (docs/agents.md). */
    if (!agent && !dashdash && optind < argc && agent_run_known(&cfg, argv[optind]))
        agent = argv[optind++];
    if (agent) {
        size_t n = 0;
        if (agent_run_prepare(agent, wsbuf, &args, &cfg, policy, &writable, &ar) < 0)
            goto out;
        for (size_t i = 0; i < ar.mounts.n; i++) {
            strv_push(&mounts, ar.mounts.v[i]);
            if (add_writable_mount(&writable, ar.mounts.v[i]) < 0)
                goto out;
        }
        cmdv = xcalloc((size_t)(argc - optind) + 2, sizeof(*cmdv));
        cmdv[n++] = ar.command;
        for (int i = optind; i < argc; i++)
            cmdv[n++] = argv[i];
        /* the agent's variables first: [env] pass and --env come later and win */
        for (size_t i = 0; i < ar.env.n; i++)
            strv_push(&o.env, ar.env.v[i]);
        o.left_out = ar.left_out; /* (ar keeps it until the end) */
    }
    if (agent_run_check_roots(&writable, agent ? &ar : NULL) < 0)
        goto out;
    if (cfg.audit && check_audit_path(cfg.audit, &writable, &audit) < 0)
        goto out;

    /* Chosen and probed before anything starts: a backend that cannot run is an error here
     * (exit 125), never a silent switch to another one, and never a prompt. */
    {
        struct cli_backend_sel *sel = xcalloc(1, sizeof(*sel));
        struct backend_paths bp = { .init = o.init_path, .kernel = cfg.kernel };
        char msg[2 * BACKEND_REASON_MAX + sizeof(sel->choice.why)];

        cli_backend_select(backend, cfg.backend, &bp, sel);
        cli_backend_explain(sel, msg, sizeof(msg));
        if (sel->r < 0)
            log_error("%s", msg);
        else if (strcmp(sel->name, "auto") == 0)
            log_info("%s", msg);
        o.backend_ops = sel->choice.ops;
        free(sel);
        if (!o.backend_ops)
            goto out;
        o.backend = o.backend_ops->name;
    }
    for (size_t i = 0; i < cfg.env_pass.n; i++)
        if (add_env(&o.env, cfg.env_pass.v[i], "[env] pass", &env_warned) < 0)
            goto out;
    for (size_t i = 0; i < env_specs.n; i++)
        if (add_env(&o.env, env_specs.v[i], "--env", &env_warned) < 0)
            goto out;
    /* Credentials: the command line's replace the file's of the same name. Resolved after
     * the variables, so a credential's placeholder replaces a passed value of its variable. */
    config_merge_credentials(&cfg, &cli_creds);
    if (agent)
        agent_run_add_credentials(&ar, &cfg);
    if (cfg.n_creds) {
        if (credentials_prepare(&cfg, &o.env, &cred_wire) < 0)
            goto out;
        o.cred_wire = buf_str(&cred_wire);
        o.cred_wire_len = cred_wire.len;
    }
    if (check_sizes(cmdv ? cmdv : optind < argc ? argv + optind : shell, &o.env) < 0)
        goto out;
    for (size_t i = 0; i < cfg.allow_write.n; i++)
        strv_push(&allow_write, cfg.allow_write.v[i]);
    o.allow_write = allow_write;
    o.mounts = mounts;
    if (!o.accel)
        o.accel = cfg.accel;
    o.kernel = cfg.kernel;
    o.no_snapshot = cfg.snapshot && strcmp(cfg.snapshot, "off") == 0;
    o.name = cfg.name;
    o.workspace = wsbuf;
    o.argv = cmdv ? cmdv : optind < argc ? argv + optind : shell;
    o.audit_path = audit;
    o.tls_extra_ca = cfg.tls_extra_ca;
    if (!o.cpus_milli && cfg.cpus)
        o.cpus_milli = cfg.cpus * 1000;
    if (!o.memory_bytes)
        o.memory_bytes = cfg.memory;
    o.memory_given = o.memory_bytes != 0;
    if (set_limits(&o, no_limits, tmpfs_size, shm_size) < 0)
        goto out;
    if (cfg.upstream_dns) {
        if (net_addr_parse(cfg.upstream_dns, 53, &o.upstream_dns) < 0) {
            log_error("upstream_dns '%s': expected a numeric ADDR[:PORT]", cfg.upstream_dns);
            goto out;
        }
        o.have_upstream_dns = true;
    }
    /* The daemon is exec'd with an empty environment: the policy reaches it as arguments. */
    policy_args_daemon_argv(&args, &cfg, &o.daemon_args);
    o.ready_fd = -1;
    o.detach = start;
    ret = start ? supervisor_start(&o, TAKE_PTR(policy)) : supervisor_run(&o, TAKE_PTR(policy));
out:
    if (cred_wire.p)
        explicit_bzero(cred_wire.p, cred_wire.len);
    buf_done(&cred_wire);
    config_done(&cli_creds);
    policy_free(policy);
    config_done(&cfg);
    strv_done(&env_specs);
    strv_done(&env_warned);
    strv_done(&o.env);
    strv_done(&mounts);
    strv_done(&writable);
    strv_done(&o.daemon_args);
    strv_done(&allow_write);
    policy_args_done(&args);
    agent_run_done(&ar);
    return ret;
}

int cmd_run(int argc, char **argv)
{
    return run_or_start(argc, argv, false);
}

int cmd_start(int argc, char **argv)
{
    return run_or_start(argc, argv, true);
}
