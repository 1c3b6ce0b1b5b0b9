/*
 * bot-bottle doctor: what can run here and why. For every compiled-in backend its probe and
 * findings, the host facts they share (cgroups, Docker, smolvm), the egress prerequisites
 * (resolver, 127.77/16 aliases, state directory), and which backend run would use now (the
 * same selection code: cli_backend_select). Human text, or --json (schema in
 * docs/backends.md). Exit 0 when the selected backend can run, 1 otherwise; never prompts.
 *
 * The resolver check sends one DNS query (A example.com) to the first nameserver of
 * /etc/resolv.conf, or to --upstream-dns when given (as the egress daemon would use it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "backend/ext.h"
#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "supervisor/state.h"

#define DNS_TIMEOUT_MS 3000
#define TOOL_TIMEOUT_MS 5000
#define DOCTOR_QUERY_NAME "example.com" /* IANA's reserved example name */
#define ALIAS_PROBE_ADDR "127.77.255.254"

enum {
    OPT_JSON = 0x2200,
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle doctor [--json] [--backend NAME] [options]\n"
               "\n"
               "Say which backends can run here and why: each backend's findings (QEMU, the\n"
               "guest kernel, the accelerator, user namespaces, seccomp, ...), the host's\n"
               "cgroups and container tools, the egress prerequisites (resolver, 127.77/16\n"
               "aliases, state directory), and the backend 'bot-bottle run' would use now\n"
               "(--backend, else BOT_BOTTLE_BACKEND, else [bottle] backend, else microvm).\n"
               "Exits 0 when that backend can run, 1 when it cannot. Sends one DNS query\n"
               "(A " DOCTOR_QUERY_NAME ") to the resolver it checks.\n"
               "\n"
               "Options:\n"
               "  -b, --backend NAME       the backend to check as selected (as run --backend)\n"
               "      --json               one JSON object for scripts (\"schema\": 1)\n"
               "  -c, --config FILE        config file(s) to read [bottle] backend from (as run)\n"
               "      --no-default-config  read no config file\n"
               "      --upstream-dns ADDR[:PORT]  check this resolver instead of the host's\n"
               "  -v, --verbose            debug logging\n"
               "  -h, --help               this text\n");
}

/* ---- small probes ---- */

struct findings {
    struct backend_probe p; /* only n_findings/findings are used */
};

#define ADD(f, name, ok, ...) backend_probe_add_finding(&(f)->p, name, ok, __VA_ARGS__)

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* cgroup v2 controllers, or the v1 hierarchies bot-bottle uses (backend/cgroup.h). */
static void probe_cgroups(struct findings *f)
{
    const char *root = getenv("BOT_BOTTLE_CGROUP_ROOT");
    char path[PATH_MAX], data[512];
    static const char *const v1[] = { "pids", "memory", "cpu" };
    struct buf b = BUF_INIT(256);
    bool all = true;

    if (!root || root[0] != '/')
        root = "/sys/fs/cgroup";
    if (str_printf(path, sizeof(path), "%s/cgroup.controllers", root) == 0 &&
        file_read_line(path, data, sizeof(data)) == 0) {
        ADD(f, "cgroup", strstr(data, "memory") && strstr(data, "pids"),
            "cgroup v2 at %s, controllers: %s", root, data[0] ? data : "(none)");
        return;
    }
    for (size_t i = 0; i < ARRAY_SIZE(v1); i++) {
        struct stat st;
        if (str_printf(path, sizeof(path), "%s/%s", root, v1[i]) == 0 && stat(path, &st) == 0 &&
            S_ISDIR(st.st_mode))
            (void)buf_printf(&b, " %s", v1[i]);
        else
            all = false;
    }
    if (b.len)
        ADD(f, "cgroup", all, "cgroup v1 at %s, hierarchies:%s%s", root, buf_str(&b),
            all ? "" : " (limits need pids, memory and cpu; else run --no-limits)");
    else
        ADD(f, "cgroup", false,
            "no cgroup hierarchy at %s: limits cannot be enforced (run --no-limits)", root);
    buf_done(&b);
}

/* The docker CLI and the engine's socket (connect only: nothing is asked of the engine). */
static void probe_docker(struct findings *f)
{
    const char *host = getenv("DOCKER_HOST");
    char bin[PATH_MAX], sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool have_bin = ext_find("docker", bin, sizeof(bin)) == 0;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, err = 0;

    if (host && *host && strncmp(host, "unix://", 7) != 0) {
        ADD(f, "docker", false, "docker CLI %s; DOCKER_HOST=%s is not a unix socket (not probed)",
            have_bin ? bin : "not found in PATH", host);
        return;
    }
    (void)str_printf(sock, sizeof(sock), "%s", host && *host ? host + 7 : "/var/run/docker.sock");
    (void)str_printf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    ADD(f, "docker", have_bin && !err, "docker CLI %s; engine socket %s: %s",
        have_bin ? bin : "not found in PATH", sock, err ? strerror(err) : "accepts connections");
}

static void probe_smolvm(struct findings *f)
{
    char bin[PATH_MAX], ver[128];
    int r;

    if (ext_find("smolvm", bin, sizeof(bin)) < 0) {
        ADD(f, "smolvm", false, "smolvm not found in PATH");
        return;
    }
    {
        char *const argv[] = { bin, (char *)"--version", NULL };
        int status = 0;
        r = ext_run(argv, ver, sizeof(ver), NULL, 0, TOOL_TIMEOUT_MS, &status);
        if (r == 0 && (status != 0 || !ver[0]))
            r = status != 0 ? -EIO : -ENODATA;
        ver[strcspn(ver, "\n")] = '\0';
    }
    if (r < 0)
        ADD(f, "smolvm", false, "%s --version failed: %s", bin, strerror(-r));
    else
        ADD(f, "smolvm", true, "%s at %s", ver, bin);
}

/* ---- egress prerequisites ---- */

/* The first "nameserver ADDR" of a resolv.conf text; -ENOENT when none. */
static int resolv_first_nameserver(const char *text, char *ret, size_t size)
{
    const char *line = text;

    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);

        if (len > 11 && strncmp(line, "nameserver", 10) == 0 &&
            (line[10] == ' ' || line[10] == '\t')) {
            const char *v = line + 11;
            size_t vl;
            while (*v == ' ' || *v == '\t')
                v++;
            vl = strcspn(v, " \t\r\n#;");
            if (vl > 0 && v < line + len)
                return str_printf(ret, size, "%.*s", (int)vl, v);
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return -ENOENT;
}

/* One query (A DOCTOR_QUERY_NAME, RD) to a; the answer's rcode, or -errno/-ETIMEDOUT. */
static int dns_ask(const struct net_addr *a, int *ret_rcode, int64_t *ret_ms)
{
    uint8_t q[64], ans[1500];
    size_t n = 0;
    uint16_t id;
    _cleanup_close_ int fd = -1;
    int64_t start = now_ms(), deadline = start + DNS_TIMEOUT_MS;

    if (getrandom(&id, sizeof(id), 0) != sizeof(id))
        id = (uint16_t)(start & 0xffff);
    q[n++] = (uint8_t)(id >> 8);
    q[n++] = (uint8_t)id;
    q[n++] = 0x01; /* RD */
    q[n++] = 0;
    q[n++] = 0; /* QDCOUNT 1 */
    q[n++] = 1;
    memset(q + n, 0, 6);
    n += 6;
    for (const char *l = DOCTOR_QUERY_NAME; *l;) {
        size_t ll = strcspn(l, ".");
        q[n++] = (uint8_t)ll;
        memcpy(q + n, l, ll);
        n += ll;
        l += ll;
        if (*l == '.')
            l++;
    }
    q[n++] = 0;
    q[n++] = 0; /* QTYPE A */
    q[n++] = 1;
    q[n++] = 0; /* QCLASS IN */
    q[n++] = 1;

    fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || send(fd, q, n, 0) < 0)
        return -errno;
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left = deadline - now_ms();
        ssize_t k;

        if (left <= 0)
            return -ETIMEDOUT;
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        k = recv(fd, ans, sizeof(ans), 0);
        if (k < 0)
            return -errno;
        /* ours: the same id, a response (QR) */
        if (k >= 12 && ans[0] == (uint8_t)(id >> 8) && ans[1] == (uint8_t)id && (ans[2] & 0x80)) {
            *ret_rcode = ans[3] & 0x0f;
            *ret_ms = now_ms() - start;
            return 0;
        }
    }
}

static const char *rcode_name(int rc)
{
    static const char *const names[] = { "NOERROR",  "FORMERR", "SERVFAIL",
                                         "NXDOMAIN", "NOTIMP",  "REFUSED" };
    return rc >= 0 && (size_t)rc < ARRAY_SIZE(names) ? names[rc] : "other";
}

static void probe_resolver(struct findings *f, const char *upstream)
{
    const char *conf = getenv("BOT_BOTTLE_RESOLV_CONF");
    char text[4096], ns[128], where[160], addr[NET_ADDRSTR_MAX];
    struct net_addr a;
    int64_t ms = 0;
    int rc = 0, r;

    if (!conf || conf[0] != '/')
        conf = "/etc/resolv.conf";
    if (upstream) {
        (void)str_printf(ns, sizeof(ns), "%s", upstream);
        (void)str_printf(where, sizeof(where), "--upstream-dns");
    } else {
        r = file_read_small(conf, text, sizeof(text));
        if (r < 0) {
            ADD(f, "resolver", false,
                "cannot read %s (%s): allowlisted names cannot be resolved; give a resolver "
                "with --upstream-dns ADDR[:PORT]",
                conf, strerror(-r));
            return;
        }
        if (resolv_first_nameserver(text, ns, sizeof(ns)) < 0) {
            ADD(f, "resolver", false,
                "no nameserver in %s: allowlisted names cannot be resolved; give a resolver "
                "with --upstream-dns ADDR[:PORT]",
                conf);
            return;
        }
        (void)str_printf(where, sizeof(where), "%s", conf);
    }
    if (net_addr_parse(ns, 53, &a) < 0) {
        ADD(f, "resolver", false, "the resolver '%s' (%s) is not a numeric ADDR[:PORT]", ns, where);
        return;
    }
    net_addr_format((struct sockaddr *)&a.ss, addr);
    r = dns_ask(&a, &rc, &ms);
    if (r < 0)
        ADD(f, "resolver", false,
            "%s (%s) did not answer a query for " DOCTOR_QUERY_NAME " (%s); check it, or give "
            "another with --upstream-dns ADDR[:PORT]",
            addr, where, r == -ETIMEDOUT ? "no answer in 3 s" : strerror(-r));
    else
        ADD(f, "resolver", rc == 0 || rc == 3,
            "%s (%s) answers: " DOCTOR_QUERY_NAME " %s in %lld ms", addr, where, rcode_name(rc),
            (long long)ms);
}

/* The egress daemon binds the bottle's 127.77.x.y; all of 127/8 is local on Linux. */
static void probe_alias(struct findings *f)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;

    (void)inet_pton(AF_INET, ALIAS_PROBE_ADDR, &sa.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    if (err)
        ADD(f, "aliases", false,
            "cannot bind %s (%s): bottles need addresses in 127.77.0.0/16 on the loopback "
            "interface (is lo up? ip link set lo up)",
            ALIAS_PROBE_ADDR, strerror(err));
    else
        ADD(f, "aliases", true,
            "127.77.0.0/16 addresses are bindable (tried " ALIAS_PROBE_ADDR ")");
}

/* The state root is writable, or can be created (nothing is created here). */
static void probe_state_dir(struct findings *f)
{
    char root[PATH_MAX], dir[PATH_MAX];
    struct stat st;

    if (state_root_path(root, sizeof(root)) < 0) {
        ADD(f, "state_dir", false, "no state directory (path too long)");
        return;
    }
    (void)str_printf(dir, sizeof(dir), "%s", root);
    /* the nearest existing ancestor decides */
    while (stat(dir, &st) < 0) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) {
            (void)str_printf(dir, sizeof(dir), "/");
            break;
        }
        *slash = '\0';
    }
    if (access(dir, W_OK | X_OK) < 0)
        ADD(f, "state_dir", false,
            "%s is not writable (%s%s%s): set BOT_BOTTLE_STATE_DIR or XDG_RUNTIME_DIR to a "
            "directory you own",
            root, strcmp(dir, root) == 0 ? "" : "at ", strcmp(dir, root) == 0 ? "" : dir,
            strcmp(dir, root) == 0 ? strerror(errno) : "");
    else
        ADD(f, "state_dir", true, "%s %s", root,
            strcmp(dir, root) == 0 ? "is writable" : "can be created");
}

/* ---- output ---- */

static const char *source_key(enum backend_source s)
{
    switch (s) {
    case BACKEND_SRC_FLAG:
        return "flag";
    case BACKEND_SRC_ENV:
        return "env";
    case BACKEND_SRC_CONFIG:
        return "config";
    case BACKEND_SRC_DEFAULT:
    default:
        return "default";
    }
}

static json_t *findings_json(const struct backend_probe *p)
{
    json_t *a = json_array();

    for (size_t i = 0; i < p->n_findings; i++)
        json_array_append_new(a, json_pack("{s:s, s:b, s:s}", "name", p->findings[i].name, "ok",
                                           p->findings[i].ok, "text", p->findings[i].text));
    return a;
}

static void findings_print(const struct backend_probe *p, const char *indent)
{
    for (size_t i = 0; i < p->n_findings; i++)
        printf("%s%-4s %-10s %s\n", indent, p->findings[i].ok ? "ok" : "--", p->findings[i].name,
               p->findings[i].text);
}

int cmd_doctor(int argc, char **argv)
{
    static const struct option longopts[] = {
        POLICY_LONG_OPTIONS,
        { "backend", required_argument, NULL, 'b' },
        { "json", no_argument, NULL, OPT_JSON },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct policy_args args = { 0 };
    struct bb_config cfg = { 0 };
    struct policy *policy = NULL;
    struct strv writable = { 0 };
    const char *flag = NULL;
    bool json = false, cfg_ok;
    char cwd[PATH_MAX], msg[2 * BACKEND_REASON_MAX + 3 * BACKEND_REASON_MAX];
    struct cli_backend_sel *sel = NULL;
    struct backend_probe *probes = NULL;
    struct findings *host = NULL, *egress = NULL;
    const struct backend_ops *const *list;
    size_t n = 0;
    int opt, ret = EXIT_BB_FAILURE;
    const struct cli_parser parser = { "doctor", "+" POLICY_OPTS_SHORT "b:vh", longopts, usage,
                                       &args };

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        switch (opt) {
        case CLI_OPT_EXIT:
            goto out;
        case 'b':
            flag = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        default:
            goto out;
        }
    }
    if (optind < argc) {
        log_error("doctor takes no arguments ('%s'); see bot-bottle doctor --help", argv[optind]);
        goto out;
    }
    /* The config as run would read it from here (the current directory as the workspace). */
    if (getcwd(cwd, sizeof(cwd)))
        strv_push(&writable, cwd);
    args.writable_roots = &writable;
    cfg_ok = policy_args_finish(&args, &cfg, &policy) == 0;

    list = backend_list(&n);
    probes = xcalloc(n, sizeof(*probes));
    for (size_t i = 0; i < n; i++) {
        /* the kernel the config picks ([microvm] kernel = stock) is the one probed */
        struct backend_paths dp = { .kernel = cfg_ok ? cfg.kernel : NULL };
        int r = list[i]->probe(&dp, &probes[i]);
        if (r < 0) {
            probes[i].available = false;
            (void)str_printf(probes[i].reason, sizeof(probes[i].reason), "probing failed: %s",
                             strerror(-r));
        }
    }
    host = xcalloc(1, sizeof(*host));
    probe_cgroups(host);
    probe_docker(host);
    probe_smolvm(host);
    egress = xcalloc(1, sizeof(*egress));
    probe_resolver(egress, cfg.upstream_dns);
    probe_alias(egress);
    probe_state_dir(egress);

    sel = xcalloc(1, sizeof(*sel));
    cli_backend_select(flag, cfg_ok ? cfg.backend : NULL, NULL, sel);
    cli_backend_explain(sel, msg, sizeof(msg));
    ret = sel->r == 0 && cfg_ok ? 0 : 1;

    if (json) {
        json_t *root = json_object(), *bs = json_array();
        char *text;

        for (size_t i = 0; i < n; i++) {
            json_t *b = json_pack("{s:s, s:s, s:b, s:b, s:b, s:b, s:s}", "name", list[i]->name,
                                  "summary", list[i]->summary, "available", probes[i].available,
                                  "slow", probes[i].available && probes[i].slow, "auto",
                                  !(list[i]->flags & BACKEND_NOT_AUTO), "shares_host_kernel",
                                  !!(list[i]->flags & BACKEND_SHARES_HOST_KERNEL), "reason",
                                  probes[i].reason);
            json_object_set_new(b, "findings", findings_json(&probes[i]));
            json_array_append_new(bs, b);
        }
        json_object_set_new(root, "schema", json_integer(1));
        json_object_set_new(root, "backends", bs);
        json_object_set_new(root, "host", findings_json(&host->p));
        json_object_set_new(root, "egress", findings_json(&egress->p));
        json_object_set_new(
            root, "selected",
            json_pack("{s:s, s:s, s:o, s:b, s:b, s:b, s:s}", "requested", sel->name, "source",
                      source_key(sel->source), "backend",
                      sel->choice.ops ? json_string(sel->choice.ops->name) : json_null(), "can_run",
                      sel->r == 0, "slow", sel->r == 0 && sel->choice.probe.slow, "config_ok",
                      cfg_ok, "message", msg));
        text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(root);
        goto out;
    }

    printf("Backends (strongest isolation first, the order auto tries):\n");
    for (size_t i = 0; i < n; i++) {
        printf("  %-12s %s%s%s\n", list[i]->name,
               probes[i].available ? (probes[i].slow ? "available, slow" : "available")
                                   : "NOT available",
               list[i]->flags & BACKEND_NOT_AUTO ? " (never chosen by auto)" : "",
               list[i]->flags & BACKEND_SHARES_HOST_KERNEL ? " (shares the host kernel)" : "");
        printf("      %s\n      %s\n", list[i]->summary, probes[i].reason);
        findings_print(&probes[i], "      ");
    }
    printf("\nHost:\n");
    findings_print(&host->p, "  ");
    printf("\nEgress:\n");
    findings_print(&egress->p, "  ");
    printf("\nSelected: %s\n  %s\n", sel->choice.ops ? sel->choice.ops->name : "none", msg);
    if (!cfg_ok)
        printf("  (the config could not be read: see the error above; run would stop there)\n");
out:
    free(sel);
    free(probes);
    free(host);
    free(egress);
    policy_free(policy);
    config_done(&cfg);
    strv_done(&writable);
    policy_args_done(&args);
    return ret;
}
