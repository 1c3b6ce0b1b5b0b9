/*
 * The smolmachines backend (smolvm.h).
 *
 * create() builds one command line (smolvm's CLI as of smol-machines/smolvm
 * src/cli/machine.rs, docs/backends.md names the version):
 *   smolvm machine run --image IMAGE --net-backend virtio-net --allow-cidr A/32 --dns A
 *     --cpus N --mem MIB -v WS:WS [-v SRC:DST[:ro]...] [-v P:P:ro for protected directories]
 *     -w WS -e HTTP_PROXY=http://A:3128 ... [-e NAME=VALUE...] [-i] [-t] -- COMMAND...
 * start() runs it as the bottle's top process, in the bottle's cgroup (the limits: smolvm's
 * own processes, the VM's memory among them), with the bottle's stdio; its exit status is the
 * command's. request_stop sends it SIGTERM, kill SIGKILL.
 *
 * No channel and no hand-off: the guest reaches the daemon over TCP to A, which smolvm's
 * gateway forwards to the host's loopback because the allowlist names it (host loopback is
 * refused unless an explicit --allow-cidr covers it; nothing else is admitted), and its DNS
 * queries, which the gateway intercepts and forwards to the --dns resolver, reach the DNS
 * filter on A:53. So the supervisor's ordinary daemon on A serves it unchanged.
 */
#include "backend/smolmachines/smolvm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/cgroup.h"
#include "backend/ext.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

#define SMOLVM_PROBE_TIMEOUT_MS 10000
#define SMOLVM_DEFAULT_IMAGE "debian:bookworm-slim"
/* smolvm's own processes beside the guest's RAM (the VMM, its agent, the network proxy) */
#define SMOLVM_OVERHEAD_MIB 256
#define SMOLVM_MIN_GUEST_MIB 128
#define SMOLVM_MAX_CPUS 255         /* its --cpus is a u8 */
#define SMOLVM_THREADS 64           /* on top of the bottle's pids limit: the VMM's threads */
#define SMOLVM_PIDS_CEILING 4194304 /* the kernel's pid_max ceiling: no limit in effect */

struct sm_bottle {
    struct bottle base;
    struct ext_argv argv;
    struct bb_cgroup cg;
    int stdio[3];
    struct ext_proc run; /* smolvm */
};

static struct sm_bottle *sm_of(struct bottle *b)
{
    return (struct sm_bottle *)b;
}

static const char *kvm_device(void)
{
    const char *v = getenv("BOT_BOTTLE_KVM_DEVICE");
    return v && *v ? v : "/dev/kvm";
}

static int sm_probe(const struct backend_paths *paths, struct backend_probe *ret)
{
    char smolvm[PATH_MAX], out[256], err[512];
    char *argv[] = { smolvm, (char *)"--version", NULL };
    const char *kvm = kvm_device();
    int status = 0, r, fd;
    (void)paths;

    memset(ret, 0, sizeof(*ret));
    if (ext_find("smolvm", smolvm, sizeof(smolvm)) < 0) {
        (void)str_printf(ret->reason, sizeof(ret->reason),
                         "the smolvm CLI is not on PATH: install smolvm "
                         "(https://github.com/smol-machines/smolvm)");
        return 0;
    }
    r = ext_run(argv, out, sizeof(out), err, sizeof(err), SMOLVM_PROBE_TIMEOUT_MS, &status);
    if (r < 0 || status != 0) {
        err[strcspn(err, "\n")] = '\0';
        (void)str_printf(ret->reason, sizeof(ret->reason),
                         "%s --version failed (%s): reinstall smolvm", smolvm,
                         r == -ETIMEDOUT ? "timed out"
                         : r < 0         ? strerror(-r)
                         : err[0]        ? err
                                         : "no message");
        return 0;
    }
    out[strcspn(out, "\n")] = '\0';
    /* The flags the bottle depends on, by name rather than by version number: an older
     * smolvm without them would run the machine with its default (open) network. */
    {
        static const char *const need[] = { "--allow-cidr", "--net-backend", "virtio-net", "--dns",
                                            "--volume",     "--workdir",     "--env" };
        char help[16384];
        char *hargv[] = { smolvm, (char *)"machine", (char *)"run", (char *)"--help", NULL };
        const char *missing = NULL;

        r = ext_run(hargv, help, sizeof(help), NULL, 0, SMOLVM_PROBE_TIMEOUT_MS, &status);
        for (size_t i = 0; !missing && i < ARRAY_SIZE(need); i++)
            if (r < 0 || status != 0 || !strstr(help, need[i]))
                missing = need[i];
        if (missing) {
            (void)str_printf(ret->reason, sizeof(ret->reason),
                             "%.64s's 'machine run' has no %s (bot-bottle needs --allow-cidr, "
                             "--net-backend virtio-net and --dns to pin the machine's network "
                             "to the bottle's address): upgrade smolvm",
                             out, missing);
            return 0;
        }
    }
    /* smolvm runs its VMs on KVM on Linux */
    fd = open(kvm, O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        (void)str_printf(ret->reason, sizeof(ret->reason),
                         "%.64s is installed but smolvm needs KVM and %s cannot be opened (%s): "
                         "enable virtualization or add yourself to the kvm group, or pick "
                         "another backend (--backend microvm --accel tcg, or --backend "
                         "namespace)",
                         out, kvm, strerror(errno));
        return 0;
    }
    close(fd);
    (void)str_printf(ret->reason, sizeof(ret->reason), "%.64s at %s; KVM at %s", out, smolvm, kvm);
    ret->available = true;
    return 0;
}

static void sm_destroy(struct bottle *bb);

/* The argument vector (see the top of this file). */
static void build_argv(const char *smolvm, const struct bottle_spec *spec, unsigned cpus,
                       uint64_t guest_mib, bool interactive, struct ext_argv *a)
{
    const char *image = getenv("BOT_BOTTLE_SMOLVM_IMAGE");
    char alias[INET_ADDRSTRLEN];
    struct ext_argv gen = { 0 };

    inet_ntop(AF_INET, &spec->alias, alias, sizeof(alias));
    ext_argv_push(a, smolvm);
    ext_argv_push(a, "machine");
    ext_argv_push(a, "run");
    ext_argv_push(a, "--image");
    ext_argv_push(a, image && *image ? image : SMOLVM_DEFAULT_IMAGE);
    /* virtio-net: smolvm's host-side gateway terminates every guest flow and enforces the
     * allowlist there; smolvm refuses an allowlist on TSI, whose filter does not enforce it
     * (src/network/launch.rs) */
    ext_argv_push(a, "--net-backend");
    ext_argv_push(a, "virtio-net");
    /* exactly the bottle's alias: the egress daemon's proxy and DNS filter, nothing else */
    ext_argv_push(a, "--allow-cidr");
    ext_argv_pushf(a, "%s/32", alias);
    ext_argv_push(a, "--dns");
    ext_argv_push(a, alias);
    ext_argv_push(a, "--cpus");
    ext_argv_pushf(a, "%u", cpus);
    if (guest_mib) {
        ext_argv_push(a, "--mem");
        ext_argv_pushf(a, "%llu", (unsigned long long)guest_mib);
    }
    ext_argv_push(a, "-v");
    ext_argv_pushf(a, "%s:%s", spec->workspace, spec->workspace);
    for (size_t i = 0; i < spec->n_mounts; i++) {
        ext_argv_push(a, "-v");
        ext_argv_pushf(a, "%s:%s%s", spec->mounts[i].src, spec->mounts[i].dst,
                       spec->mounts[i].ro ? ":ro" : "");
    }
    for (size_t i = 0; i < spec->n_protect; i++) {
        ext_argv_push(a, "-v");
        ext_argv_pushf(a, "%s:%s:ro", spec->protect[i], spec->protect[i]);
    }
    ext_argv_push(a, "-w");
    ext_argv_push(a, spec->workspace);
    ext_bottle_env(spec, alias, &gen);
    ext_argv_push(a, "-e");
    ext_argv_pushf(a, "HOME=%s", spec->home);
    for (size_t i = 0; i < gen.n; i++) {
        ext_argv_push(a, "-e");
        ext_argv_push(a, gen.v[i]);
    }
    ext_argv_done(&gen);
    for (size_t i = 0; i < spec->n_env; i++) {
        ext_argv_push(a, "-e");
        ext_argv_push(a, spec->env[i]);
    }
    if (interactive)
        ext_argv_push(a, "-i");
    if (spec->tty)
        ext_argv_push(a, "-t");
    ext_argv_push(a, "--");
    for (size_t i = 0; i < spec->argc; i++)
        ext_argv_push(a, spec->argv[i]);
}

static int sm_create(const struct backend_create_args *args, struct bottle **ret)
{
    struct sm_bottle *b = xcalloc(1, sizeof(*b));
    const struct bottle_spec *spec = args->spec;
    struct cgroup_limits lim = { 0 };
    struct backend_probe probe;
    char smolvm[PATH_MAX], why[PATH_MAX + 256];
    uint64_t guest_mib = 0;
    unsigned cpus;
    int r;

    b->base.ops = &backend_smolmachines_ops;
    ext_proc_init(&b->run);
    cgroup_init(&b->cg);
    for (size_t i = 0; i < 3; i++)
        b->stdio[i] = args->stdio[i];
    (void)sm_probe(NULL, &probe);
    if (!probe.available) {
        log_error("smolmachines backend: %s", probe.reason);
        r = -EOPNOTSUPP;
        goto fail;
    }
    (void)ext_find("smolvm", smolvm, sizeof(smolvm));
    {
        /* -v is HOST:GUEST[:ro] */
        const char *bad = ext_spec_bad_path(spec, ":\n");
        if (bad) {
            log_error("smolmachines backend: the path %s contains a ':' or a newline, which "
                      "smolvm's -v HOST:GUEST syntax cannot carry; rename it or use another "
                      "backend",
                      bad);
            r = -EINVAL;
            goto fail;
        }
    }
    /* smolvm mounts directories only: a protected file stays writable */
    for (size_t i = 0; i < spec->n_protect; i++) {
        struct stat st;
        if (lstat(spec->protect[i], &st) == 0 && !S_ISDIR(st.st_mode)) {
            log_error("smolmachines backend: %s must be read-only inside the bottle, but smolvm "
                      "mounts directories only (not single files); pass --allow-write %s to "
                      "accept it writable, or use --backend microvm",
                      spec->protect[i], spec->protect[i] + strlen(spec->workspace) + 1);
            r = -EOPNOTSUPP;
            goto fail;
        }
    }
    cpus = args->cpus_milli ? (args->cpus_milli + 999) / 1000 : 1;
    cpus = MIN(cpus, SMOLVM_MAX_CPUS);
    if (args->memory_bytes) {
        uint64_t limit_mib = args->memory_bytes >> 20;
        if (limit_mib < SMOLVM_OVERHEAD_MIB + SMOLVM_MIN_GUEST_MIB) {
            log_error("smolmachines backend: --memory %llu MiB leaves no room for the guest "
                      "(smolvm needs about %d MiB on top of at least %d MiB of guest RAM); "
                      "raise --memory",
                      (unsigned long long)limit_mib, SMOLVM_OVERHEAD_MIB, SMOLVM_MIN_GUEST_MIB);
            r = -EINVAL;
            goto fail;
        }
        guest_mib = limit_mib - SMOLVM_OVERHEAD_MIB;
        lim.memory_bytes = args->memory_bytes;
    }
    lim.pids_max = args->pids_max ? args->pids_max + SMOLVM_THREADS : 0;
    lim.cpus_milli = args->cpus_milli;
    {
        char name[BOTTLE_SPEC_MAX_NAME + 16];
        /* --no-limits: a cgroup all the same where one can be made, only to find what smolvm
         * leaves behind (destroy kills it); a pids limit the kernel's own ceiling */
        bool track_only = !lim.pids_max && !lim.memory_bytes && !lim.cpus_milli;
        if (track_only)
            lim.pids_max = SMOLVM_PIDS_CEILING;
        (void)str_printf(name, sizeof(name), "%s.%d", spec->name, (int)getpid());
        r = cgroup_create(&lim, name, &b->cg, why, sizeof(why));
        if (r < 0 && track_only) {
            log_warn("smolmachines backend: no cgroup for the bottle (%s): processes smolvm "
                     "leaves behind are not killed when the bottle ends",
                     why);
            r = 0;
        }
        if (r < 0) {
            log_error("smolmachines backend: cannot enforce the bottle's limits (%s%s%s): %s; "
                      "run as root or inside a delegated cgroup (systemd-run --user --scope -p "
                      "Delegate=yes bot-bottle run ...), or pass --no-limits to run without "
                      "them",
                      lim.memory_bytes ? "memory " : "", lim.pids_max ? "pids " : "",
                      lim.cpus_milli ? "cpu" : "", why);
            goto fail;
        }
    }
    /* stdin is the supervisor's pipe with -i (or -t), else /dev/null */
    build_argv(smolvm, spec, cpus, guest_mib, true, &b->argv);
    *ret = &b->base;
    return 0;
fail:
    sm_destroy(&b->base);
    return r;
}

static int sm_start(struct bottle *bb, struct backend_started *ret)
{
    struct sm_bottle *b = sm_of(bb);
    int r;

    if (geteuid() != 0)
        log_warn("smolmachines backend: name lookups inside the bottle fail: unprivileged, the "
                 "DNS filter listens on port 5353, which the guest's resolver cannot name "
                 "(programs that use HTTP_PROXY resolve through the proxy)");
    r = ext_proc_start(&b->run, "smolmachines backend", b->argv.v, NULL, b->stdio, &b->cg, ret);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "smolmachines backend: starting %s in its cgroup",
                         b->argv.v[0]);
    return 0;
}

static int sm_wait(struct bottle *bb, int *ret_status)
{
    return ext_proc_wait(&sm_of(bb)->run, ret_status);
}

static int sm_request_stop(struct bottle *bb)
{
    /* smolvm stops its machine and exits */
    return ext_proc_signal(&sm_of(bb)->run, SIGTERM);
}

static int sm_kill(struct bottle *bb)
{
    return ext_proc_signal(&sm_of(bb)->run, SIGKILL);
}

/*
 * SIGKILL to every process left in the bottle's cgroup(s): smolvm may leave a VM process or a
 * helper behind when it is killed, and a machine that outlived its bottle would still reach
 * the alias, which the next bottle may be given. cgroup v2: cgroup.kill (Linux 5.14); else,
 * and on v1, each pid in cgroup.procs, a few rounds (a forking process adds new ones).
 */
static void kill_cgroup(const struct bb_cgroup *cg)
{
    char path[PATH_MAX + 32], buf[4096];

    for (size_t i = 0; i < CGROUP_CTL_MAX; i++) {
        if (!cg->path[i][0])
            continue;
        if (cg->version == 2 &&
            str_printf(path, sizeof(path), "%s/cgroup.kill", cg->path[i]) == 0) {
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            bool done = fd >= 0 && write(fd, "1", 1) == 1;
            if (fd >= 0)
                close(fd);
            if (done)
                continue;
        }
        if (str_printf(path, sizeof(path), "%s/cgroup.procs", cg->path[i]) < 0)
            continue;
        for (int round = 0; round < 20; round++) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            ssize_t n;
            bool any = false;

            if (fd < 0)
                break;
            n = read(fd, buf, sizeof(buf) - 1);
            close(fd);
            if (n <= 0)
                break;
            buf[n] = '\0';
            for (char *p = buf, *end; *p; p = end) {
                uint64_t pid;
                end = p + strcspn(p, "\n");
                if (str_to_u64(slice_make(p, (size_t)(end - p)), INT32_MAX, &pid) == 0 && pid > 1) {
                    (void)kill((pid_t)pid, SIGKILL);
                    any = true;
                }
                if (*end)
                    end++;
            }
            if (!any)
                break;
            {
                const struct timespec ms10 = { 0, 10 * 1000 * 1000 };
                nanosleep(&ms10, NULL);
            }
        }
    }
}

static void sm_destroy(struct bottle *bb)
{
    struct sm_bottle *b = sm_of(bb);
    const char *where = NULL;

    if (!b)
        return;
    ext_proc_done(&b->run);
    kill_cgroup(&b->cg);
    if (cgroup_remove(&b->cg, &where) < 0)
        log_warn("smolmachines backend: cannot remove the cgroup %s (processes of the bottle's "
                 "smolvm may still run in it)",
                 where ? where : "");
    ext_argv_done(&b->argv);
    free(b);
}

const struct backend_ops backend_smolmachines_ops = {
    .name = "smolmachines",
    .summary = "a smolvm (libkrun) machine on KVM whose only allowed destination is the "
               "bottle's egress address",
    .flags = BACKEND_NOT_AUTO,
    .probe = sm_probe,
    .create = sm_create,
    .start = sm_start,
    .wait = sm_wait,
    .request_stop = sm_request_stop,
    .kill = sm_kill,
    .exec = NULL,
    .destroy = sm_destroy,
};
