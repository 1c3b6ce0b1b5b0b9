/*
 * The docker backend (docker.h): an example, driven through the docker CLI.
 *
 * start() runs, in order (each a short `docker` command; a failure stops there and destroy()
 * removes what was made):
 *   docker network create --internal ... bb-NAME-int    the agent's only network
 *   docker network create ... bb-NAME-ext                the sidecar's way out
 *   docker run -d --name bb-NAME-egress --network bb-NAME-int ... IMAGE bot-bottle egress ...
 *   docker network connect bb-NAME-ext bb-NAME-egress
 *   docker inspect --format '{{...IPAddress}}' bb-NAME-egress   the sidecar's address S
 * and then starts `docker run --rm --name bb-NAME --network bb-NAME-int --dns S
 * -e HTTP_PROXY=http://S:3128 ... IMAGE COMMAND...` as the bottle's top process (its exit
 * status is the command's: docker run passes it through, 125-127 meaning what they mean for
 * bot-bottle). request_stop sends SIGTERM to that client, which forwards it to the container
 * (--sig-proxy, docker's default); kill sends SIGKILL to the client; destroy removes both
 * containers and both networks (`docker rm -f`, `docker network rm`).
 *
 * The egress daemon runs in the sidecar, not under the supervisor (BACKEND_DAEMON_ELSEWHERE):
 * it gets the same policy arguments and appends to the bottle's audit log through a bind
 * mount of that one file (rotation off: a bind-mounted file cannot be renamed). Run-time
 * policy changes (`bot-bottle allow`/`deny`) do not reach it.
 */
#include "backend/docker/docker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/ext.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

#define DOCKER_PROBE_TIMEOUT_MS 10000
#define DOCKER_CMD_TIMEOUT_MS 60000 /* network create, run -d: may create bridges, iptables */
#define DOCKER_DEFAULT_IMAGE "debian:bookworm-slim"
#define DOCKER_DEFAULT_EGRESS_IMAGE "bot-bottle-egress"
#define DOCKER_LABEL "org.bot-bottle.bottle"
#define DOCKER_NAME_MAX (BOTTLE_SPEC_MAX_NAME + 16)
#define DOCKER_SIDECAR_AUDIT "/var/log/bot-bottle/audit.log"

struct dk_bottle {
    struct bottle base;
    char docker[PATH_MAX];
    struct bottle_spec spec;
    struct ext_argv egress; /* the policy as `egress` arguments */
    char audit[PATH_MAX];   /* the bottle's audit log on the host ("" none) */
    const char *image;      /* (from the environment, or the default) */
    const char *egress_image;
    uint64_t memory_bytes, pids_max;
    uint32_t cpus_milli;
    int stdio[3];
    char net_int[DOCKER_NAME_MAX], net_ext[DOCKER_NAME_MAX];
    char sidecar[DOCKER_NAME_MAX], agent[DOCKER_NAME_MAX];
    bool made_int, made_ext, made_sidecar, started_agent;
    struct ext_proc run; /* `docker run` of the agent */
};

static struct dk_bottle *dk_of(struct bottle *b)
{
    return (struct dk_bottle *)b;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static int dk_probe(const struct backend_paths *paths, struct backend_probe *ret)
{
    char docker[PATH_MAX], out[256], err[512];
    char *argv[] = { docker, (char *)"version", (char *)"--format", (char *)"{{.Server.Version}}",
                     NULL };
    int status = 0, r;
    (void)paths;

    memset(ret, 0, sizeof(*ret));
    if (ext_find("docker", docker, sizeof(docker)) < 0) {
        (void)str_printf(ret->reason, sizeof(ret->reason),
                         "the docker CLI is not on PATH: install Docker Engine "
                         "(https://docs.docker.com/engine/install/)");
        return 0;
    }
    r = ext_run(argv, out, sizeof(out), err, sizeof(err), DOCKER_PROBE_TIMEOUT_MS, &status);
    if (r == 0 && status == 0 && out[0]) {
        (void)str_printf(ret->reason, sizeof(ret->reason),
                         "Docker engine %.64s answers (%s); an example, not a tested security "
                         "boundary",
                         out, docker);
        ret->available = true;
        return 0;
    }
    /* the first line of what docker said */
    err[strcspn(err, "\n")] = '\0';
    (void)str_printf(ret->reason, sizeof(ret->reason),
                     "no Docker engine answers (%s version: %.300s): start it (sudo systemctl "
                     "start docker), get access to its socket, or point DOCKER_HOST at one",
                     docker,
                     r == -ETIMEDOUT ? "timed out"
                     : r < 0         ? strerror(-r)
                     : err[0]        ? err
                                     : "no server version");
    return 0;
}

static void dk_destroy(struct bottle *bb);

static int dk_create(const struct backend_create_args *args, struct bottle **ret)
{
    struct dk_bottle *b = xcalloc(1, sizeof(*b));
    struct backend_probe probe;
    struct buf enc = BUF_INIT(BOTTLE_SPEC_MAX_SIZE);
    int r;

    b->base.ops = &backend_docker_ops;
    ext_proc_init(&b->run);
    for (size_t i = 0; i < 3; i++)
        b->stdio[i] = args->stdio[i];
    (void)dk_probe(NULL, &probe);
    if (!probe.available) {
        log_error("docker backend: %s", probe.reason);
        r = -EOPNOTSUPP;
        goto fail;
    }
    (void)ext_find("docker", b->docker, sizeof(b->docker));
    r = bottle_spec_encode(args->spec, &enc);
    if (r >= 0)
        r = bottle_spec_decode(enc.p, enc.len, &b->spec, NULL);
    buf_done(&enc);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "docker backend: copying the bottle spec");
        goto fail;
    }
    {
        /* --mount and --tmpfs are comma-separated key=value lists: a path with a comma (or a
         * quote) would change their meaning */
        const char *bad = ext_spec_bad_path(&b->spec, ",\"\n");
        for (size_t i = 0; !bad && args->egress_args && args->egress_args[i]; i++)
            if (i > 0 && strcmp(args->egress_args[i - 1], "--config") == 0 &&
                strpbrk(args->egress_args[i], ",\"\n"))
                bad = args->egress_args[i];
        if (!bad && args->audit && strpbrk(args->audit, ",\"\n"))
            bad = args->audit;
        if (bad) {
            log_error("docker backend: the path %s contains a comma, quote or newline, which "
                      "docker's --mount syntax cannot carry; rename it or use another backend",
                      bad);
            r = -EINVAL;
            goto fail;
        }
    }
    for (size_t i = 0; args->egress_args && args->egress_args[i]; i++)
        ext_argv_push(&b->egress, args->egress_args[i]);
    if (args->audit && str_printf(b->audit, sizeof(b->audit), "%s", args->audit) < 0) {
        r = log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "docker backend: audit log path");
        goto fail;
    }
    b->image = env_or("BOT_BOTTLE_DOCKER_IMAGE", DOCKER_DEFAULT_IMAGE);
    b->egress_image = env_or("BOT_BOTTLE_DOCKER_EGRESS_IMAGE", DOCKER_DEFAULT_EGRESS_IMAGE);
    b->memory_bytes = args->memory_bytes;
    b->pids_max = args->pids_max;
    b->cpus_milli = args->cpus_milli;
    (void)str_printf(b->net_int, sizeof(b->net_int), "bb-%s-int", b->spec.name);
    (void)str_printf(b->net_ext, sizeof(b->net_ext), "bb-%s-ext", b->spec.name);
    (void)str_printf(b->sidecar, sizeof(b->sidecar), "bb-%s-egress", b->spec.name);
    (void)str_printf(b->agent, sizeof(b->agent), "bb-%s", b->spec.name);
    *ret = &b->base;
    return 0;
fail:
    dk_destroy(&b->base);
    return r;
}

/* The line of docker's stderr that says what went wrong: the first with "Error" in it (docker
 * run prints "Unable to find image ..." before its error), else the first; cut at its end. */
static const char *first_error_line(char *err)
{
    char *e = strstr(err, "Error");

    if (e)
        while (e > err && e[-1] != '\n')
            e--;
    else
        e = err;
    e[strcspn(e, "\n")] = '\0';
    return e;
}

/* Runs one setup command; its stdout (trimmed) in out. 0, or -EIO after logging it. */
static int docker_step(struct dk_bottle *b, struct ext_argv *a, const char *hint, char *out,
                       size_t out_size)
{
    char err[1024], line[1024];
    const char *msg;
    int status = 0, r;

    ext_argv_format(a->v, line, sizeof(line));
    log_debug("docker backend: %s", line);
    r = ext_run(a->v, out, out_size, err, sizeof(err), DOCKER_CMD_TIMEOUT_MS, &status);
    if (r == 0 && status == 0)
        return 0;
    msg = first_error_line(err);
    if (r < 0)
        log_error("docker backend: '%s' failed (%s)%s%s", line,
                  r == -ETIMEDOUT ? "timed out" : strerror(-r), hint ? "; " : "", hint ? hint : "");
    else
        log_error("docker backend: '%s' failed (exit status %d: %s)%s%s", line, status,
                  msg[0] ? msg : "no message", hint ? "; " : "", hint ? hint : "");
    (void)b;
    return -EIO;
}

/* docker ... with the binary and the bottle's label. */
static void docker_cmd(struct dk_bottle *b, struct ext_argv *a, const char *verb, const char *verb2)
{
    ext_argv_push(a, b->docker);
    ext_argv_push(a, verb);
    if (verb2)
        ext_argv_push(a, verb2);
}

/* The sidecar: bot-bottle's egress daemon, on the internal network only at first. */
static void sidecar_argv(struct dk_bottle *b, struct ext_argv *a)
{
    docker_cmd(b, a, "run", NULL);
    ext_argv_push(a, "-d");
    ext_argv_push(a, "--pull=never");
    ext_argv_pushf(a, "--name=%s", b->sidecar);
    ext_argv_pushf(a, "--label=%s=%s", DOCKER_LABEL, b->spec.name);
    ext_argv_pushf(a, "--network=%s", b->net_int);
    /* as the owner of the audit log it appends to (the supervisor's user, root under sudo) */
    ext_argv_pushf(a, "--user=%u:%u", (unsigned)geteuid(), (unsigned)getegid());
    ext_argv_push(a, "--read-only");
    ext_argv_push(a, "--cap-drop=ALL");
    ext_argv_push(a, "--security-opt=no-new-privileges");
    /* DNS on port 53 as an unprivileged user, in the container's own network namespace */
    ext_argv_push(a, "--sysctl=net.ipv4.ip_unprivileged_port_start=53");
    if (b->audit[0])
        ext_argv_pushf(a, "--mount=type=bind,src=%s,dst=%s", b->audit, DOCKER_SIDECAR_AUDIT);
    /* The config files the policy names, read-only at the same path (their hashes are
     * pinned by --config-sha256). */
    for (size_t i = 0; i + 1 < b->egress.n; i++)
        if (strcmp(b->egress.v[i], "--config") == 0)
            ext_argv_pushf(a, "--mount=type=bind,src=%s,dst=%s,readonly", b->egress.v[i + 1],
                           b->egress.v[i + 1]);
    ext_argv_push(a, b->egress_image);
    ext_argv_push(a, "bot-bottle");
    ext_argv_push(a, "egress");
    ext_argv_push(a, "--quiet");
    ext_argv_pushf(a, "--listen=0.0.0.0:%d", BOTTLE_PROXY_PORT);
    ext_argv_pushf(a, "--dns=0.0.0.0:%d", BOTTLE_DNS_PORT);
    ext_argv_pushf(a, "--name=%s", b->spec.name);
    if (b->audit[0]) {
        ext_argv_pushf(a, "--audit=%s", DOCKER_SIDECAR_AUDIT);
        ext_argv_push(a, "--audit-max-size=0");
    }
    for (size_t i = 0; i < b->egress.n; i++)
        ext_argv_push(a, b->egress.v[i]);
}

/* The agent: the bottle's command, on the internal network, proxy and DNS at the sidecar.
 * env gets the spec's own variables, which reach docker through its environment (`-e NAME`),
 * never its command line (visible in /proc to every user). */
static void agent_argv(struct dk_bottle *b, const char *sidecar_ip, struct ext_argv *a,
                       struct ext_argv *env)
{
    struct ext_argv gen = { 0 };

    docker_cmd(b, a, "run", NULL);
    ext_argv_push(a, "--rm");
    ext_argv_pushf(a, "--name=%s", b->agent);
    ext_argv_pushf(a, "--label=%s=%s", DOCKER_LABEL, b->spec.name);
    ext_argv_pushf(a, "--network=%s", b->net_int);
    ext_argv_pushf(a, "--dns=%s", sidecar_ip);
    ext_argv_pushf(a, "--hostname=%s", b->spec.hostname);
    ext_argv_push(a, "--interactive"); /* stdin: the supervisor's pipe or /dev/null */
    if (b->spec.tty)
        ext_argv_push(a, "--tty");
    ext_argv_pushf(a, "--user=%u:%u", (unsigned)b->spec.uid, (unsigned)b->spec.gid);
    ext_argv_push(a, "--read-only");
    ext_argv_push(a, "--cap-drop=ALL");
    ext_argv_push(a, "--security-opt=no-new-privileges");
    ext_argv_pushf(a, "--tmpfs=/tmp:size=%llu",
                   (unsigned long long)b->spec.tmpfs_size[BOTTLE_TMPFS_TMP]);
    ext_argv_pushf(a, "--tmpfs=%s:size=%llu,uid=%u,gid=%u", b->spec.home,
                   (unsigned long long)b->spec.tmpfs_size[BOTTLE_TMPFS_HOME], (unsigned)b->spec.uid,
                   (unsigned)b->spec.gid);
    ext_argv_pushf(a, "--shm-size=%llu", (unsigned long long)b->spec.tmpfs_size[BOTTLE_TMPFS_SHM]);
    if (b->memory_bytes)
        ext_argv_pushf(a, "--memory=%llu", (unsigned long long)b->memory_bytes);
    if (b->pids_max)
        ext_argv_pushf(a, "--pids-limit=%llu", (unsigned long long)b->pids_max);
    if (b->cpus_milli)
        ext_argv_pushf(a, "--cpus=%u.%03u", b->cpus_milli / 1000, b->cpus_milli % 1000);
    ext_argv_pushf(a, "--mount=type=bind,src=%s,dst=%s", b->spec.workspace, b->spec.workspace);
    for (size_t i = 0; i < b->spec.n_mounts; i++)
        ext_argv_pushf(a, "--mount=type=bind,src=%s,dst=%s%s", b->spec.mounts[i].src,
                       b->spec.mounts[i].dst, b->spec.mounts[i].ro ? ",readonly" : "");
    /* the workspace paths the host runs later, read-only (docs/workspace.md); later mounts
     * over earlier ones */
    for (size_t i = 0; i < b->spec.n_protect; i++)
        ext_argv_pushf(a, "--mount=type=bind,src=%s,dst=%s,readonly", b->spec.protect[i],
                       b->spec.protect[i]);
    ext_argv_pushf(a, "--workdir=%s", b->spec.workspace);
    ext_argv_pushf(a, "--env=HOME=%s", b->spec.home);
    ext_argv_pushf(a, "--env=USER=%s", b->spec.user);
    ext_bottle_env(&b->spec, sidecar_ip, &gen);
    for (size_t i = 0; i < gen.n; i++)
        ext_argv_pushf(a, "--env=%s", gen.v[i]);
    ext_argv_done(&gen);
    for (size_t i = 0; i < b->spec.n_env; i++) {
        const char *kv = b->spec.env[i];
        ext_argv_pushf(a, "--env=%.*s", (int)(strchr(kv, '=') - kv), kv);
        ext_argv_push(env, kv);
    }
    ext_argv_push(a, b->image);
    for (size_t i = 0; i < b->spec.argc; i++)
        ext_argv_push(a, b->spec.argv[i]);
}

static int dk_start(struct bottle *bb, struct backend_started *ret)
{
    struct dk_bottle *b = dk_of(bb);
    struct ext_argv a = { 0 }, env = { 0 };
    char out[256], fmt[DOCKER_NAME_MAX + 64];
    struct in_addr ip;
    int r;

    /* Once per run, where the user sees it. */
    log_warn("the docker backend is an example, not a tested security boundary: the bottle "
             "shares the host's kernel and the Docker daemon runs as root "
             "(examples/docker/README.md); use --backend microvm for a VM boundary");

    docker_cmd(b, &a, "network", "create");
    ext_argv_push(&a, "--internal");
    ext_argv_pushf(&a, "--label=%s=%s", DOCKER_LABEL, b->spec.name);
    ext_argv_push(&a, b->net_int);
    r = docker_step(b, &a, NULL, out, sizeof(out));
    ext_argv_done(&a);
    if (r < 0)
        return r;
    b->made_int = true;

    docker_cmd(b, &a, "network", "create");
    ext_argv_pushf(&a, "--label=%s=%s", DOCKER_LABEL, b->spec.name);
    ext_argv_push(&a, b->net_ext);
    r = docker_step(b, &a, NULL, out, sizeof(out));
    ext_argv_done(&a);
    if (r < 0)
        return r;
    b->made_ext = true;

    sidecar_argv(b, &a);
    b->made_sidecar = true; /* (a half-made container is removed too) */
    r = docker_step(b, &a,
                    "the egress image is built with 'docker build -t bot-bottle-egress -f "
                    "examples/docker/Dockerfile .' in bot-bottle's source tree (or set "
                    "BOT_BOTTLE_DOCKER_EGRESS_IMAGE)",
                    out, sizeof(out));
    ext_argv_done(&a);
    if (r < 0)
        return r;

    docker_cmd(b, &a, "network", "connect");
    ext_argv_push(&a, b->net_ext);
    ext_argv_push(&a, b->sidecar);
    r = docker_step(b, &a, NULL, out, sizeof(out));
    ext_argv_done(&a);
    if (r < 0)
        return r;

    docker_cmd(b, &a, "inspect", NULL);
    (void)str_printf(fmt, sizeof(fmt), "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}",
                     b->net_int);
    ext_argv_push(&a, "--format");
    ext_argv_push(&a, fmt);
    ext_argv_push(&a, b->sidecar);
    r = docker_step(b, &a, NULL, out, sizeof(out));
    ext_argv_done(&a);
    if (r < 0)
        return r;
    if (inet_pton(AF_INET, out, &ip) != 1) {
        log_error("docker backend: the sidecar %s has no IPv4 address on %s (docker inspect "
                  "said '%.64s')",
                  b->sidecar, b->net_int, out);
        return -EIO;
    }

    agent_argv(b, out, &a, &env);
    r = ext_proc_start(&b->run, "docker backend", a.v, env.v, b->stdio, NULL, ret);
    ext_argv_done(&a);
    ext_argv_done(&env);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "docker backend: starting %s run", b->docker);
    b->started_agent = true;
    return 0;
}

static int dk_wait(struct bottle *bb, int *ret_status)
{
    return ext_proc_wait(&dk_of(bb)->run, ret_status);
}

static int dk_request_stop(struct bottle *bb)
{
    /* docker run forwards it to the container's process (--sig-proxy) */
    return ext_proc_signal(&dk_of(bb)->run, SIGTERM);
}

static int dk_kill(struct bottle *bb)
{
    /* the client; the container goes with destroy's docker rm -f */
    return ext_proc_signal(&dk_of(bb)->run, SIGKILL);
}

static void teardown_step(struct dk_bottle *b, const char *verb, const char *verb2, const char *opt,
                          const char *what)
{
    struct ext_argv a = { 0 };
    char err[512];
    int status = 0, r;

    docker_cmd(b, &a, verb, verb2);
    if (opt)
        ext_argv_push(&a, opt);
    ext_argv_push(&a, what);
    r = ext_run(a.v, NULL, 0, err, sizeof(err), DOCKER_CMD_TIMEOUT_MS, &status);
    /* (the agent ran with --rm: usually gone already) */
    if (r < 0 || (status != 0 && !strstr(err, "No such")))
        log_warn("docker backend: could not remove %s (%s); remove it with 'docker %s%s%s %s'",
                 what, r < 0 ? strerror(-r) : err, verb, verb2 ? " " : "", verb2 ? verb2 : "",
                 what);
    ext_argv_done(&a);
}

static void dk_destroy(struct bottle *bb)
{
    struct dk_bottle *b = dk_of(bb);

    if (!b)
        return;
    ext_proc_done(&b->run);
    /* Containers before the networks they are attached to. */
    if (b->started_agent)
        teardown_step(b, "rm", NULL, "-f", b->agent);
    if (b->made_sidecar)
        teardown_step(b, "rm", NULL, "-f", b->sidecar);
    if (b->made_ext)
        teardown_step(b, "network", "rm", NULL, b->net_ext);
    if (b->made_int)
        teardown_step(b, "network", "rm", NULL, b->net_int);
    bottle_spec_done(&b->spec);
    ext_argv_done(&b->egress);
    free(b);
}

const struct backend_ops backend_docker_ops = {
    .name = "docker",
    .summary = "an example, not a tested security boundary: Docker containers on an internal "
               "network, the egress daemon as a sidecar (shared kernel, root daemon)",
    .flags = BACKEND_SHARES_HOST_KERNEL | BACKEND_DAEMON_ELSEWHERE | BACKEND_NOT_AUTO,
    .probe = dk_probe,
    .create = dk_create,
    .start = dk_start,
    .wait = dk_wait,
    .request_stop = dk_request_stop,
    .kill = dk_kill,
    .exec = NULL,
    .destroy = dk_destroy,
};
