/*
 * The namespace backend (docs/namespace.md).
 *
 * start(): clone3() a child into new user, mount, pid, net, ipc, uts and cgroup namespaces
 * (CLONE_PIDFD, and CLONE_INTO_CGROUP on cgroup v2; on v1 the child is moved into its cgroups
 * before it is released). The parent writes the child's
 * uid/gid maps, then releases it; the child execs bottle-init with the channel socket as
 * fd 3 and the encoded spec (a sealed memfd) as fd 4, an empty environment and nothing else
 * open. bottle-init, PID 1 of the new pid namespace, does the rest (src/guest/init.c).
 *
 * Ids: the invoking user maps to itself, one line each for uid and gid. Unprivileged, that
 * is all the kernel allows without a setuid helper, so bottle-init keeps its capabilities
 * across exec as ambient capabilities instead of being uid 0. As root, uid 0 maps to 0 (the
 * bottle's root owns the workspace's root-owned files, as the user expects) and everything
 * but the workspace and the explicit rw mounts is read-only or private; see the doc.
 */
#include "backend/namespace/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/cgroup.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/pidfd.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "guest/command.h"
#include "guest/seccomp-filter.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define NS_FLAGS                                                                                   \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |     \
     CLONE_NEWCGROUP)

struct ns_bottle {
    struct bottle base;
    struct buf spec;     /* encoded, channel = fd:3 */
    uint32_t uid, gid;   /* the command's ids (mapped to themselves) */
    char init[PATH_MAX]; /* bottle-init */
    int stdio[3];
    int handoff_fd;               /* not owned; -1: none */
    struct bb_cgroup cg;          /* version 0: no limits applied */
    int cg_tasks[CGROUP_CTL_MAX]; /* v1, during ns_start: cgroup_open_tasks, for the child */
    pid_t pid;
    int pidfd;
    bool reaped;
    int status;
};

static struct ns_bottle *ns_of(struct bottle *b)
{
    return container_of(b, struct ns_bottle, base);
}

/* ---- small helpers ---- */

int ns_format_id_map(uint32_t host_id, char *buf, size_t size)
{
    return str_printf(buf, size, "%u %u 1\n", host_id, host_id);
}

static bool is_executable(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

int ns_find_init(const char *explicit, char *buf, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n;
    int r;

    if (explicit) {
        if (!is_executable(explicit))
            return -ENOENT;
        return str_printf(buf, size, "%s", explicit);
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            r = str_printf(buf, size, "%s/bottle-init", exe);
            if (r >= 0 && is_executable(buf))
                return 0;
        }
    }
#ifdef BB_LIBEXECDIR
    r = str_printf(buf, size, "%s/bot-bottle/bottle-init", BB_LIBEXECDIR);
    if (r >= 0 && is_executable(buf))
        return 0;
#endif
#ifdef BB_INIT_BUILD_PATH
    r = str_printf(buf, size, "%s", BB_INIT_BUILD_PATH);
    if (r >= 0 && is_executable(buf))
        return 0;
#endif
    return -ENOENT;
}

static long sys_clone3(struct clone_args *args)
{
    return syscall(SYS_clone3, args, sizeof(*args));
}

/* ---- probe ---- */

/* A sysctl file: under $BOT_BOTTLE_PROC_SYS (a test hook, docs/backends.md) or /proc/sys. */
static int read_sysctl(const char *name, char *buf, size_t size)
{
    const char *root = getenv("BOT_BOTTLE_PROC_SYS");
    char path[PATH_MAX];

    if (str_printf(path, sizeof(path), "%s/%s", root && root[0] == '/' ? root : "/proc/sys", name) <
        0)
        return -ENAMETOOLONG;
    return file_read_line(path, buf, size);
}

/* Whether user namespaces are allowed for this process: 0, or the reason and fix in why. */
static int userns_allowed(bool root, char *why, size_t size)
{
    char v[64];

    /* Debian's knob and AppArmor's restriction (Ubuntu 24.04) stop only processes without
     * CAP_SYS_ADMIN; user.max_user_namespaces=0 stops root too. */
    if (!root && read_sysctl("kernel/unprivileged_userns_clone", v, sizeof(v)) == 0 &&
        strcmp(v, "0") == 0) {
        (void)str_printf(why, size,
                         "unprivileged user namespaces are disabled "
                         "(kernel.unprivileged_userns_clone=0); run: sudo sysctl -w "
                         "kernel.unprivileged_userns_clone=1");
        return -EPERM;
    }
    if (!root && read_sysctl("kernel/apparmor_restrict_unprivileged_userns", v, sizeof(v)) == 0 &&
        strcmp(v, "1") == 0) {
        (void)str_printf(why, size,
                         "AppArmor restricts unprivileged user namespaces "
                         "(kernel.apparmor_restrict_unprivileged_userns=1, as on Ubuntu 24.04); "
                         "run: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0");
        return -EPERM;
    }
    if (read_sysctl("user/max_user_namespaces", v, sizeof(v)) == 0 && strcmp(v, "0") == 0) {
        (void)str_printf(why, size,
                         "user namespaces are disabled (user.max_user_namespaces=0); run: sudo "
                         "sysctl -w user.max_user_namespaces=15000");
        return -EPERM;
    }
    return 0;
}

static int ns_probe(const struct backend_paths *paths, struct backend_probe *ret)
{
    struct backend_probe p = { .available = false };
    char init[PATH_MAX], why[BACKEND_REASON_MAX], actions[256];
    bool root = geteuid() == 0;
    int r;

    r = userns_allowed(root, why, sizeof(why));
    if (r < 0) {
        backend_probe_add_finding(&p, "userns", false, "%s", why);
        (void)str_printf(p.reason, sizeof(p.reason), "%s", why);
        goto done;
    }
    /* The bottle's seccomp filter needs SECCOMP_MODE_FILTER (prctl answers EINVAL without
     * CONFIG_SECCOMP). */
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL) {
        backend_probe_add_finding(&p, "seccomp", false, "this kernel has no seccomp");
        (void)str_printf(p.reason, sizeof(p.reason),
                         "this kernel has no seccomp (CONFIG_SECCOMP_FILTER), which the "
                         "namespace backend's filter needs; use --backend microvm");
        goto done;
    }
    if (read_sysctl("kernel/seccomp/actions_avail", actions, sizeof(actions)) < 0)
        (void)str_printf(actions, sizeof(actions), "?");
    backend_probe_add_finding(&p, "seccomp", true, "seccomp filters available (actions: %s)",
                              actions);
    /* open_tree/move_mount (5.2) and mount_setattr (5.12): probe the newest. */
    if (syscall(SYS_mount_setattr, -1, "", 0, NULL, 0) < 0 && errno == ENOSYS) {
        (void)str_printf(p.reason, sizeof(p.reason),
                         "this kernel lacks mount_setattr(2); the namespace backend needs "
                         "Linux 5.12 or newer");
        backend_probe_add_finding(&p, "kernel", false, "%s", p.reason);
        goto done;
    }
    /* A network namespace costs more to create and tear down than all the others together
     * (the kernel's per-namespace network set-up): the test below leaves it out and the
     * sysctl that disables it is read instead; the bottle's own clone3() has every flag (a
     * failure there is an error of `run` too). */
    if (read_sysctl("user/max_net_namespaces", why, sizeof(why)) == 0 && strcmp(why, "0") == 0) {
        (void)str_printf(p.reason, sizeof(p.reason),
                         "network namespaces are disabled (user.max_net_namespaces=0); run: sudo "
                         "sysctl -w user.max_net_namespaces=15000");
        backend_probe_add_finding(&p, "userns", false, "%s", p.reason);
        goto done;
    }
    if (backend_try_namespaces(NS_FLAGS & ~(uint64_t)CLONE_NEWNET, "user/mount/pid namespaces",
                               p.reason, sizeof(p.reason)) < 0) {
        backend_probe_add_finding(&p, "userns", false, "%s", p.reason);
        goto done;
    }
    {
        char clone[16], aa[16], max[32], net[32];
        if (read_sysctl("user/max_net_namespaces", net, sizeof(net)) < 0)
            (void)str_printf(net, sizeof(net), "absent");
        if (read_sysctl("kernel/unprivileged_userns_clone", clone, sizeof(clone)) < 0)
            (void)str_printf(clone, sizeof(clone), "absent");
        if (read_sysctl("kernel/apparmor_restrict_unprivileged_userns", aa, sizeof(aa)) < 0)
            (void)str_printf(aa, sizeof(aa), "absent");
        if (read_sysctl("user/max_user_namespaces", max, sizeof(max)) < 0)
            (void)str_printf(max, sizeof(max), "absent");
        backend_probe_add_finding(&p, "userns", true,
                                  "user, mount, pid, ipc, uts and cgroup namespaces work%s, "
                                  "net ones are allowed (user.max_net_namespaces %s; "
                                  "kernel.unprivileged_userns_clone %s, "
                                  "kernel.apparmor_restrict_unprivileged_userns %s, "
                                  "user.max_user_namespaces %s)",
                                  root ? " as root" : "", net, clone, aa, max);
    }
    r = ns_find_init(paths ? paths->init : NULL, init, sizeof(init));
    if (r < 0) {
        (void)str_printf(
            p.reason, sizeof(p.reason), "bottle-init was not found (%s); build it or pass its path",
            paths && paths->init ? paths->init : "looked next to the executable and in libexec");
        backend_probe_add_finding(&p, "init", false, "%s", p.reason);
        goto done;
    }
    backend_probe_add_finding(&p, "init", true, "bottle-init at %s", init);
    p.available = true;
    (void)str_printf(p.reason, sizeof(p.reason), "user namespaces work; bottle-init is %s%s", init,
                     root ? "; running as root: the bottle's uid 0 is host root" : "");
done:
    *ret = p;
    return 0;
}

/* ---- cgroup limits ---- */

/* The bottle's limits (backend/cgroup.h): a limit that cannot be enforced fails create. */
static int cgroup_setup(struct ns_bottle *b, const struct bottle_spec *s,
                        const struct backend_create_args *args)
{
    struct cgroup_limits lim = { .pids_max = args->pids_max,
                                 .memory_bytes = args->memory_bytes,
                                 .cpus_milli = args->cpus_milli };
    char name[BOTTLE_SPEC_MAX_NAME + 16], why[PATH_MAX + 256];
    int r;

    (void)str_printf(name, sizeof(name), "%s.%d", s->name, (int)getpid());
    r = cgroup_create(&lim, name, &b->cg, why, sizeof(why));
    if (r < 0)
        log_error("namespace backend: cannot enforce the bottle's limits (%s%s%s): %s; "
                  "run as root or inside a delegated cgroup (systemd-run --user --scope -p "
                  "Delegate=yes bot-bottle run ...), or pass --no-limits to run without them",
                  lim.memory_bytes ? "memory " : "", lim.pids_max ? "pids " : "",
                  lim.cpus_milli ? "cpu" : "", why);
    return r;
}

/* ---- create / start ---- */

static void ns_destroy(struct bottle *bb);

static int ns_create(const struct backend_create_args *args, struct bottle **ret)
{
    struct ns_bottle *b;
    struct bottle_spec tmp;
    const char *field = NULL;
    int r;

    tmp = *args->spec;
    tmp.channel = (char *)"fd:3";
    tmp.rootfs = BOTTLE_ROOTFS_BIND;
    r = bottle_spec_validate(&tmp, &field);
    if (r < 0) {
        log_error("namespace backend: invalid bottle spec (%s)", field);
        return r;
    }
    /* Without privilege only the caller's own ids can be mapped. */
    if (geteuid() != 0 && (tmp.uid != geteuid() || tmp.gid != getegid())) {
        log_error("namespace backend: running unprivileged, the bottle's user must be the "
                  "caller (uid %u gid %u)",
                  (unsigned)geteuid(), (unsigned)getegid());
        return -EPERM;
    }
    b = xcalloc(1, sizeof(*b));
    b->base.ops = &backend_namespace_ops;
    b->pid = -1;
    b->pidfd = -1;
    cgroup_init(&b->cg);
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++)
        b->cg_tasks[i] = -1;
    b->uid = tmp.uid;
    b->gid = tmp.gid;
    for (size_t i = 0; i < 3; i++)
        b->stdio[i] = args->stdio[i];
    b->handoff_fd = args->handoff_fd;
    buf_init(&b->spec, BOTTLE_SPEC_MAX_SIZE);
    r = bottle_spec_encode(&tmp, &b->spec);
    if (r == -E2BIG)
        log_error("namespace backend: the bottle spec (the command, its variables, mounts) is "
                  "larger than %d KiB: Argument list too long; pass large data in a file",
                  BOTTLE_SPEC_MAX_SIZE / 1024);
    else if (r < 0)
        log_errno(LOG_LVL_ERROR, r, "namespace backend: encoding the bottle spec");
    if (r < 0) {
        goto fail;
    }
    r = ns_find_init(args->paths.init, b->init, sizeof(b->init));
    if (r < 0) {
        log_error("namespace backend: bottle-init not found (%s)",
                  args->paths.init ? args->paths.init : "default locations");
        goto fail;
    }
    r = cgroup_setup(b, &tmp, args);
    if (r < 0)
        goto fail;
    *ret = &b->base;
    return 0;
fail:
    ns_destroy(&b->base);
    return r;
}

/* The spec as a sealed memfd positioned at 0. */
static int spec_memfd(const struct buf *spec)
{
    _cleanup_close_ int fd = memfd_create("bottle-spec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    size_t off = 0;

    if (fd < 0)
        return -errno;
    while (off < spec->len) {
        ssize_t w = RETRY_EINTR(write(fd, spec->p + off, spec->len - off));
        if (w < 0)
            return -errno;
        off += (size_t)w;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0 ||
        lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    return TAKE_FD(fd);
}

/* Moves fd to target (without CLOEXEC); target must not be in use by another fd we need. */
static int child_place_fd(int fd, int target)
{
    if (fd == target)
        return fcntl(fd, F_SETFD, 0) < 0 ? -1 : 0;
    return dup3(fd, target, 0) < 0 ? -1 : 0;
}

/*
 * The child between clone3() and exec: only async-signal-safe calls. Reports errno through
 * err_fd (close-on-exec, so EOF means exec succeeded).
 */
static _noreturn_ void child_main(struct ns_bottle *b, int sync_fd, int err_fd, int chan_fd,
                                  int spec_fd)
{
    static char *const envp[] = { NULL };
    char *const argv[] = { (char *)"bottle-init", (char *)"--spec-fd", (char *)"4", NULL };
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct caps[2];
    char c;
    int e, handoff_fd;

    /* err_fd must survive the dup3()s onto the fixed slots (3..5) below. */
    err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 10);
    if (err_fd < 0)
        _exit(125);
    /* The bottle dies with its launcher. (getppid() is 0 here: the parent is outside our pid
     * namespace. If it died before this prctl, the read below sees EOF.) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        goto fail;
    /* Wait for the id maps. EOF: the parent gave up. */
    if (RETRY_EINTR(read(sync_fd, &c, 1)) != 1)
        _exit(125);
    /* cgroup v1: into the bottle's cgroups now (we are its only thread: cgroup.h says why we
     * move ourselves), then make them our cgroup namespace's root, so the bottle sees its
     * cgroup as "/" as on v2 (a no-op change there). */
    if (b->cg.version == 1 && (cgroup_enter_self(b->cg_tasks) < 0 || unshare(CLONE_NEWCGROUP) < 0))
        goto fail;
    /* Keep every capability across exec even as a non-zero uid (unprivileged case): copy
     * permitted into inheritable, then raise all of them as ambient capabilities. */
    if (syscall(SYS_capget, &hdr, caps) < 0)
        goto fail;
    caps[0].inheritable = caps[0].permitted;
    caps[1].inheritable = caps[1].permitted;
    if (syscall(SYS_capset, &hdr, caps) < 0)
        goto fail;
    for (unsigned long cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
            if (errno == EINVAL)
                break;
            goto fail;
        }
    /* Move everything we pass above the fixed slots first, so the dup3s cannot clobber. */
    chan_fd = fcntl(chan_fd, F_DUPFD_CLOEXEC, 10);
    spec_fd = fcntl(spec_fd, F_DUPFD_CLOEXEC, 10);
    handoff_fd = b->handoff_fd >= 0 ? fcntl(b->handoff_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (chan_fd < 0 || spec_fd < 0 || (b->handoff_fd >= 0 && handoff_fd < 0))
        goto fail;
    {
        int moved[3];
        for (int i = 0; i < 3; i++)
            moved[i] = b->stdio[i] >= 0 ? fcntl(b->stdio[i], F_DUPFD_CLOEXEC, 10) : -1;
        for (int i = 0; i < 3; i++) {
            if (b->stdio[i] >= 0 && moved[i] < 0)
                goto fail;
            if (moved[i] >= 0 && dup3(moved[i], i, 0) < 0)
                goto fail;
        }
    }
    if (child_place_fd(chan_fd, BOTTLE_CHANNEL_FD) < 0 ||
        child_place_fd(spec_fd, BOTTLE_SPEC_FD) < 0 ||
        (handoff_fd >= 0 && child_place_fd(handoff_fd, BOTTLE_HANDOFF_FD) < 0))
        goto fail;
    /* Nothing else of the launcher reaches the bottle. */
    if (syscall(SYS_close_range, BOTTLE_HANDOFF_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0 &&
        errno != ENOSYS)
        goto fail;
    execve(b->init, argv, envp);
fail:
    e = errno;
    (void)!write(err_fd, &e, sizeof(e));
    _exit(125);
}

static int write_id_maps(pid_t pid, uint32_t uid, uint32_t gid)
{
    char path[64], map[128];
    bool root = geteuid() == 0;
    int r;

    if (!root) {
        /* Required before an unprivileged gid_map (CVE-2014-8989). */
        (void)str_printf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
        r = file_write_str(path, "deny");
        if (r < 0)
            return r;
    }
    for (int pass = 0; pass < 2; pass++) {
        uint32_t id = pass == 0 ? uid : gid;
        size_t len;
        if (root) {
            /* 0 -> 0 for bottle-init; and the command's id to itself when it is not 0. */
            r = str_printf(map, sizeof(map), "0 0 1\n");
            len = strlen(map);
            if (r >= 0 && id != 0)
                r = ns_format_id_map(id, map + len, sizeof(map) - len);
        } else {
            r = ns_format_id_map(id, map, sizeof(map));
        }
        if (r < 0)
            return r;
        (void)str_printf(path, sizeof(path), "/proc/%d/%s", (int)pid,
                         pass == 0 ? "uid_map" : "gid_map");
        r = file_write_str(path, map);
        if (r < 0)
            return r;
    }
    return 0;
}

static int ns_start(struct bottle *bb, struct backend_started *ret)
{
    struct ns_bottle *b = ns_of(bb);
    _cleanup_close_ int spec_fd = -1, host_end = -1, guest_end = -1;
    int chan[2], sync_p[2] = { -1, -1 }, err_p[2] = { -1, -1 };
    int pidfd = -1, e = 0, r;
    struct clone_args a;
    ssize_t n;
    long pid;

    if (b->pid > 0)
        return -EALREADY;
    spec_fd = spec_memfd(&b->spec);
    if (spec_fd < 0)
        return log_errno(LOG_LVL_ERROR, spec_fd, "namespace backend: spec memfd");
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) < 0)
        return log_errno(LOG_LVL_ERROR, -errno, "namespace backend: channel socketpair");
    host_end = chan[0];
    guest_end = chan[1];
    /* sync is a socket so that a write to a child that already died is EPIPE, not SIGPIPE. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_p) < 0 ||
        pipe2(err_p, O_CLOEXEC) < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "namespace backend: pipe");
        goto out;
    }

    memset(&a, 0, sizeof(a));
    a.flags = NS_FLAGS | CLONE_PIDFD;
    a.pidfd = (uint64_t)(uintptr_t)&pidfd;
    a.exit_signal = SIGCHLD;
    if (b->cg.fd >= 0) {
        a.flags |= CLONE_INTO_CGROUP;
        a.cgroup = (uint64_t)b->cg.fd;
    }
    if (b->cg.version == 1 && (r = cgroup_open_tasks(&b->cg, b->cg_tasks)) < 0) {
        log_errno(LOG_LVL_ERROR, r,
                  "namespace backend: opening the tasks files of the bottle's cgroups");
        goto out;
    }
    pid = sys_clone3(&a);
    if (pid == 0) {
        close(sync_p[1]);
        close(err_p[0]);
        child_main(b, sync_p[0], err_p[1], guest_end, spec_fd);
    }
    cgroup_close_tasks(b->cg_tasks);
    if (pid < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "namespace backend: clone3 into new namespaces");
        goto out;
    }
    b->pid = (pid_t)pid;
    b->pidfd = pidfd;
    close(sync_p[0]);
    sync_p[0] = -1;
    close(err_p[1]);
    err_p[1] = -1;

    r = write_id_maps(b->pid, b->uid, b->gid);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "namespace backend: writing the uid/gid maps of %d",
                  (int)b->pid);
        goto out; /* closing sync_p[1] makes the child exit */
    }
    if (RETRY_EINTR(send(sync_p[1], "x", 1, MSG_NOSIGNAL)) != 1) {
        r = log_errno(LOG_LVL_ERROR, -errno, "namespace backend: releasing the child");
        goto out;
    }
    close(sync_p[1]);
    sync_p[1] = -1;
    n = RETRY_EINTR(read(err_p[0], &e, sizeof(e)));
    if (n == (ssize_t)sizeof(e)) {
        r = log_errno(LOG_LVL_ERROR, -e, "namespace backend: starting %s", b->init);
        goto out;
    }
    ret->pid = b->pid;
    ret->pidfd = b->pidfd;
    ret->channel_fd = TAKE_FD(host_end);
    r = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (sync_p[i] >= 0)
            close(sync_p[i]);
        if (err_p[i] >= 0)
            close(err_p[i]);
    }
    if (r < 0 && b->pid > 0) {
        (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
        (void)RETRY_EINTR(waitpid(b->pid, NULL, 0));
        b->reaped = true;
        b->status = 125;
    }
    return r;
}

static int ns_wait(struct bottle *bb, int *ret_status)
{
    struct ns_bottle *b = ns_of(bb);
    siginfo_t si;

    if (b->pid <= 0)
        return -ECHILD;
    if (!b->reaped) {
        int r = bb_pidfd_wait(b->pidfd, &si);
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "namespace backend: waiting for the bottle");
        b->reaped = true;
        b->status = bb_siginfo_status(&si);
    }
    *ret_status = b->status;
    return 0;
}

static int ns_signal(struct bottle *bb, int sig)
{
    struct ns_bottle *b = ns_of(bb);
    int r;

    if (b->pid <= 0 || b->reaped)
        return 0;
    r = bb_pidfd_send_signal(b->pidfd, sig);
    if (r == -ESRCH)
        return 0; /* exited, not reaped yet */
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "namespace backend: signalling bottle-init (pid %d)",
                         (int)b->pid);
    return 0;
}

/* bottle-init forwards SIGTERM to the command and exits with its status. */
static int ns_request_stop(struct bottle *bb)
{
    return ns_signal(bb, SIGTERM);
}

static int ns_kill(struct bottle *bb)
{
    return ns_signal(bb, SIGKILL);
}

/* ---- exec: another command in the running bottle ---- */

struct ns_exec {
    struct backend_exec base;
    pid_t pid;
    int pidfd;
    bool reaped;
    int status;
};

static struct ns_exec *exec_of(struct backend_exec *e)
{
    return container_of(e, struct ns_exec, base);
}

/*
 * The command's process: a child of the supervisor (CLONE_PARENT) created by a process that
 * joined the bottle's namespaces, so it is in the bottle's pid namespace. Only async-signal-
 * safe calls, plus libseccomp's load of the filter built before the fork. Reports a positive
 * errno through err_fd (close-on-exec: EOF means exec succeeded).
 */
static _noreturn_ void exec_child(struct ns_bottle *b, const struct backend_exec_args *a,
                                  const char *cwd, char **envp, scmp_filter_ctx ctx, int err_fd)
{
    sigset_t none;
    int moved[3], e, r;

    /* the supervisor blocks its signals for its signalfd and ignores SIGPIPE (and may have
     * inherited ignored ones, e.g. SIGINT from a shell's background job, which a shell in
     * the bottle then cannot trap): every signal back to its default */
    /* We are in the bottle's pid namespace, holding the supervisor's descriptors (sockets,
     * pty masters, the audit log) until execve: not dumpable, so no process of the bottle may
     * ptrace us or copy them with pidfd_getfd (the mm is the host's: only a capability there
     * overrides it). execve makes the command dumpable again, as any process of the bottle. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        _exit(125);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        goto fail;
    err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 10);
    if (err_fd < 0)
        _exit(125);
    for (int i = 0; i < 3; i++) {
        int src = a->stdio[i] >= 0 ? a->stdio[i] : open("/dev/null", O_RDWR | O_CLOEXEC);
        moved[i] = src >= 0 ? fcntl(src, F_DUPFD_CLOEXEC, 10) : -1;
        if (moved[i] < 0)
            goto fail;
    }
    for (int i = 0; i < 3; i++)
        if (dup3(moved[i], i, 0) < 0)
            goto fail;
    if (setsid() < 0)
        goto fail;
    if (a->tty && ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0)
        goto fail;
    /* only 0-2 reach the command; the rest is closed now, not at execve (err_fd: ours) */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0 && errno != ENOSYS)
        goto fail;
    if (err_fd > 3)
        (void)syscall(SYS_close_range, 3, (unsigned)err_fd - 1, 0);
    (void)syscall(SYS_close_range, (unsigned)err_fd + 1, ~0U, 0);
    r = guest_drop_privileges(b->uid, b->gid);
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    if (chdir(cwd) < 0)
        goto fail;
    /* last: after this, setns, mount and friends fail */
    r = seccomp_load(ctx);
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    r = guest_exec_command(a->argv, envp);
    errno = -r;
fail:
    e = errno;
    (void)!write(err_fd, &e, sizeof(e));
    _exit(e == ENOENT ? 127 : e == EACCES ? 126 : 125);
}

/* Between the two forks: join the bottle's cgroup and namespaces, then create the command's
 * process as our parent's child and tell it its pid. */
static _noreturn_ void exec_middle(struct ns_bottle *b, const struct backend_exec_args *a,
                                   const char *cwd, char **envp, scmp_filter_ctx ctx, int err_fd,
                                   int pid_fd)
{
    long pid;
    int e;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        goto fail;
    /* the bottle's limits cover it too (while we are still in the host's namespaces) */
    if (b->cg.version != 0 && (e = cgroup_attach(&b->cg, getpid())) < 0) {
        errno = -e;
        goto fail;
    }
    /* ... and its resource limits: bottle-init's own (it lowers some of them for the bottle,
     * e.g. RLIMIT_SIGPENDING and RLIMIT_MSGQUEUE, rootfs.c), which the command inherited */
    for (int res = 0; res < RLIM_NLIMITS; res++) {
        struct rlimit rl;
        if (prlimit(b->pid, (enum __rlimit_resource)res, NULL, &rl) < 0 ||
            setrlimit((enum __rlimit_resource)res, &rl) < 0)
            goto fail;
    }
    /* one call, through bottle-init's pidfd: the kernel joins the user namespace first */
    if (setns(b->pidfd, NS_FLAGS) < 0)
        goto fail;
    /* a fork now lands in the bottle's pid namespace; CLONE_PARENT makes it the supervisor's
     * child, so the supervisor can wait for it through a pidfd */
    pid = syscall(SYS_clone, CLONE_PARENT, NULL, NULL, NULL, NULL);
    if (pid == 0)
        exec_child(b, a, cwd, envp, ctx, err_fd);
    if (pid < 0)
        goto fail;
    (void)!write(pid_fd, &pid, sizeof(pid));
    _exit(0);
fail:
    e = errno;
    (void)!write(err_fd, &e, sizeof(e));
    _exit(125);
}

/* The bottle's command environment (from its spec) plus extra NAME=VALUE entries. */
static int exec_environ(struct ns_bottle *b, char *const *extra, char ***ret)
{
    struct bottle_spec spec;
    size_t line = 0;
    int r;

    memset(&spec, 0, sizeof(spec));
    r = bottle_spec_decode(b->spec.p, b->spec.len, &spec, &line);
    if (r < 0)
        return r;
    for (size_t i = 0; r >= 0 && extra && extra[i]; i++) {
        const char *eq = strchr(extra[i], '=');
        char name[256];
        if (!eq || (size_t)(eq - extra[i]) >= sizeof(name)) {
            r = -EINVAL;
            break;
        }
        memcpy(name, extra[i], (size_t)(eq - extra[i]));
        name[eq - extra[i]] = '\0';
        r = bottle_spec_set_env(&spec, name, eq + 1);
    }
    if (r >= 0)
        r = bottle_spec_environ(&spec, ret);
    bottle_spec_done(&spec);
    return r;
}

static int ns_exec_wait(struct backend_exec *ee, int *ret_status);

/*
 * 1 once bottle-init has forked the bottle's command, which it does only after the bottle's
 * root, mounts and network are complete; 0 before (or after the command ended). Joining the
 * mount namespace earlier would show the host's tree (before pivot_root) or a half-built one.
 */
static int ns_bottle_ready(const struct ns_bottle *b)
{
    char path[64], buf[32];
    _cleanup_close_ int fd = -1;
    ssize_t n;

    (void)str_printf(path, sizeof(path), "/proc/%d/task/%d/children", (int)b->pid, (int)b->pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = RETRY_EINTR(read(fd, buf, sizeof(buf)));
    if (n < 0)
        return -errno;
    return n > 0 && buf[0] >= '1' && buf[0] <= '9';
}

static int ns_exec(struct bottle *bb, const struct backend_exec_args *a, struct backend_exec **ret)
{
    struct ns_bottle *b = ns_of(bb);
    struct ns_exec *x = NULL;
    scmp_filter_ctx ctx = NULL;
    char **envp = NULL;
    char cwd[PATH_MAX];
    int err_p[2] = { -1, -1 }, pid_p[2] = { -1, -1 }, e = 0, r, status;
    long pid = -1;
    pid_t mid;
    ssize_t n;

    if (b->pid <= 0 || b->reaped)
        return log_errno(LOG_LVL_ERROR, -ESRCH, "namespace backend: the bottle is not running");
    if (!a->argv || !a->argv[0])
        return -EINVAL;
    r = ns_bottle_ready(b);
    if (r == 0)
        return log_errno(LOG_LVL_ERROR, -EAGAIN,
                         "namespace backend: exec: the bottle is still starting (or its "
                         "command has ended); try again");
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r,
                         "namespace backend: exec: cannot tell whether the bottle is set up "
                         "(/proc/PID/task/PID/children needs CONFIG_PROC_CHILDREN)");
    {
        struct bottle_spec spec;
        size_t line = 0;
        memset(&spec, 0, sizeof(spec));
        r = bottle_spec_decode(b->spec.p, b->spec.len, &spec, &line);
        if (r >= 0)
            r = str_printf(cwd, sizeof(cwd), "%s", a->cwd ? a->cwd : spec.workspace);
        bottle_spec_done(&spec);
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "namespace backend: exec: the bottle's spec");
    }
    r = exec_environ(b, a->env, &envp);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r,
                         "namespace backend: exec: the environment (NAME=VALUE entries, not "
                         "the variables bot-bottle sets itself)");
    r = guest_seccomp_build(EPERM, EAFNOSUPPORT, &ctx);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "namespace backend: exec: building the seccomp filter");
        goto out;
    }
    if (pipe2(err_p, O_CLOEXEC) < 0 || pipe2(pid_p, O_CLOEXEC) < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "namespace backend: exec: pipe");
        goto out;
    }
    fflush(NULL);
    mid = fork();
    if (mid < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "namespace backend: exec: fork");
        goto out;
    }
    if (mid == 0) {
        close(err_p[0]);
        close(pid_p[0]);
        exec_middle(b, a, cwd, envp, ctx, err_p[1], pid_p[1]);
    }
    close(err_p[1]);
    err_p[1] = -1;
    close(pid_p[1]);
    pid_p[1] = -1;
    (void)RETRY_EINTR(waitpid(mid, &status, 0));
    if (RETRY_EINTR(read(pid_p[0], &pid, sizeof(pid))) != (ssize_t)sizeof(pid))
        pid = -1;
    x = xcalloc(1, sizeof(*x));
    x->base.ops = &backend_namespace_ops;
    x->pid = (pid_t)pid;
    x->pidfd = -1;
    if (pid > 0) {
        r = bb_pidfd_open(x->pid);
        if (r < 0) {
            kill(x->pid, SIGKILL);
            (void)RETRY_EINTR(waitpid(x->pid, NULL, 0));
            x->reaped = true;
            log_errno(LOG_LVL_ERROR, r, "namespace backend: exec: pidfd_open");
            goto out;
        }
        x->pidfd = r;
    }
    /* EOF: exec'd (every write end is gone: ours, the middle's, the command's at exec) */
    n = RETRY_EINTR(read(err_p[0], &e, sizeof(e)));
    if (n == (ssize_t)sizeof(e) || pid <= 0) {
        r = -(n == (ssize_t)sizeof(e) && e > 0 ? e : EIO);
        if (r == -ENOENT || r == -EACCES)
            log_error("namespace backend: exec: %s: %s", a->argv[0], strerror(-r));
        else
            log_errno(LOG_LVL_ERROR, r, "namespace backend: exec: entering the bottle");
        goto out;
    }
    *ret = &x->base;
    x = NULL;
    r = 0;
out:
    if (x) {
        int st;
        if (x->pidfd >= 0)
            (void)ns_exec_wait(&x->base, &st);
        if (x->pidfd >= 0)
            close(x->pidfd);
        free(x);
    }
    for (int i = 0; i < 2; i++) {
        if (err_p[i] >= 0)
            close(err_p[i]);
        if (pid_p[i] >= 0)
            close(pid_p[i]);
    }
    if (ctx)
        seccomp_release(ctx);
    bottle_spec_free_strv(envp);
    return r;
}

static int ns_exec_pidfd(struct backend_exec *ee)
{
    return exec_of(ee)->pidfd;
}

static int ns_exec_wait(struct backend_exec *ee, int *ret_status)
{
    struct ns_exec *x = exec_of(ee);
    siginfo_t si;

    if (!x->reaped) {
        int r = bb_pidfd_wait(x->pidfd, &si);
        if (r < 0)
            return r;
        x->reaped = true;
        x->status = bb_siginfo_status(&si);
    }
    *ret_status = x->status;
    return 0;
}

/* The exec'd command is a child of ours with a pidfd: signal it directly. */
static int ns_exec_signal(struct backend_exec *e, int signo)
{
    struct ns_exec *x = exec_of(e);
    int r;

    if (x->reaped)
        return 0;
    r = bb_pidfd_send_signal(x->pidfd, signo);
    return r == -ESRCH ? 0 : r;
}

static void ns_exec_free(struct backend_exec *ee)
{
    struct ns_exec *x;
    int st;

    if (!ee)
        return;
    x = exec_of(ee);
    if (!x->reaped && x->pidfd >= 0) {
        (void)bb_pidfd_send_signal(x->pidfd, SIGKILL);
        (void)ns_exec_wait(ee, &st);
    }
    if (x->pidfd >= 0)
        close(x->pidfd);
    free(x);
}

static void ns_destroy(struct bottle *bb)
{
    struct ns_bottle *b;
    int status;

    if (!bb)
        return;
    b = ns_of(bb);
    if (b->pid > 0 && !b->reaped) {
        (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
        (void)ns_wait(bb, &status);
    }
    if (b->pidfd >= 0)
        close(b->pidfd);
    {
        const char *path = NULL;
        int r = cgroup_remove(&b->cg, &path);
        if (r < 0)
            log_errno(LOG_LVL_WARN, r, "removing cgroup %s", path);
    }
    buf_done(&b->spec);
    free(b);
}

const struct backend_ops backend_namespace_ops = {
    .name = "namespace",
    .summary = "Linux namespaces + seccomp, no VM (user, mount, pid, net, ipc, uts, cgroup)",
    .flags = BACKEND_SHARES_HOST_KERNEL | BACKEND_NEEDS_HANDOFF | BACKEND_HAS_CHANNEL,
    .probe = ns_probe,
    .create = ns_create,
    .start = ns_start,
    .wait = ns_wait,
    .request_stop = ns_request_stop,
    .kill = ns_kill,
    .exec = ns_exec,
    .exec_pidfd = ns_exec_pidfd,
    .exec_wait = ns_exec_wait,
    .exec_free = ns_exec_free,
    .exec_signal = ns_exec_signal,
    .destroy = ns_destroy,
};
