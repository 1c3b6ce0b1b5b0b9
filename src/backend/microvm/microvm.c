/*
 * The microvm backend (docs/microvm.md): the bottle is a QEMU `-M microvm` guest whose init
 * is bottle-init (guest mode), with no network device of any kind; its only way out is the
 * bottle.chan virtio-serial port, whose host end start() hands to the supervisor's channel
 * relay.
 *
 * create(): validates the spec (rootfs 9p, channel /dev/virtio-ports/bottle.chan), makes the
 * bottle's private run directory (mode 0700, owned by QEMU's user), writes the per-bottle
 * initramfs there (bottle-init, the spec, the host's public /etc files), listens on the ctl
 * and chan unix sockets there, opens the shares without following symlinks and creates the
 * cgroup (limits below).
 * start(): clone3(CLONE_PIDFD [| CLONE_INTO_CGROUP]) a child that becomes QEMU as the
 * bottle's host user (S10 rule 1), with PR_SET_PDEATHSIG, stdin/stdout/stderr from the
 * supervisor's pipes (the virtio console is QEMU's stdio: the command's stdout and stderr,
 * merged), the share fds as /proc/self/fd/N, and nothing else; then accepts QEMU's two
 * connections (it connects at startup) and returns the channel.
 * wait(): the `exit N` line the guest wrote on bottle.ctl; QEMU gone without one: 125. With
 * the command's streams (attach), the line is read as it arrives and QEMU is killed at once:
 * the guest synced before it wrote it and has nothing left to do but reboot.
 * request_stop(): a `stop` line on bottle.ctl (bottle-init sends SIGTERM to the command).
 * kill(): SIGKILL to QEMU through its pidfd.
 *
 * Memory: the guest gets min(MICROVM_DEFAULT_GUEST_MIB, limit - overhead) MiB (-m), and the
 * cgroup's memory.max is guest RAM + overhead, overhead = MICROVM_QEMU_OVERHEAD_MIB +
 * guest/32 (QEMU itself, its TCG translation cache bounded by tb-size, page tables): never
 * more than the bottle's memory limit. CPUs: -smp is ceil(--cpus) (at most
 * MICROVM_MAX_CPUS), and cpu.max carries the exact fraction.
 */
#include "backend/microvm/microvm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/un.h>
#include <sys/random.h>
#include <termios.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/cgroup.h"
#include "channel/mux.h"
#include "backend/microvm/initramfs.h"
#include "backend/microvm/jail.h"
#include "backend/microvm/probe.h"
#include "backend/microvm/qemu-args.h"
#include "backend/microvm/session.h"
#include "backend/microvm/snapshot.h"
#include "backend/namespace/ns.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/pidfd.h"
#include "common/pump.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "guest/rootfs.h"
#include "guest/seccomp-filter.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* How long QEMU may take to connect its ctl and chan sockets after exec. */
#define MICROVM_CONNECT_MS 15000
/* Making a start-up snapshot: the template's boot to bottle-init's wait (the stock kernel
 * under TCG on a loaded host: seconds), then saving it. */
#define SNAPSHOT_BOOT_MS 120000
#define SNAPSHOT_SAVE_MS 60000
/* How long a bottle waits for another that is making the same template before it boots */
#define SNAPSHOT_LOCK_MS 60000
/* A restored guest's "restored" answer (its state loaded, the bundle unpacked). */
#define SNAPSHOT_RESTORE_MS 30000
/* Host bytes the restored guest mixes into its random generator (guest/init.c). */
#define SNAPSHOT_SEED_BYTES 64

struct mv_bottle {
    struct bottle base;
    struct microvm_probe probe;
    enum microvm_accel accel; /* --accel applied to the probe */
    bool accel_auto;
    char cmdline_extra[64];
    struct bottle_spec spec; /* validated copy (rootfs 9p, the channel port) */
    char init[PATH_MAX];
    char dir[PATH_MAX]; /* the bottle's private run directory ("" before it exists) */
    int dir_lock;       /* dir/lock, flock'ed while this supervisor lives (sweep_run_dirs) */
    char initrd[PATH_MAX], ctl_path[PATH_MAX], chan_path[PATH_MAX];
    struct buf spec_enc; /* the validated spec, encoded: written into the initramfs by start() */
    struct microvm_jail jail;     /* QEMU's jail (jail.h); jail.root "": not made */
    int cg_tasks[CGROUP_CTL_MAX]; /* v1, during start: cgroup_open_tasks, for the child */
    uid_t qemu_uid;
    gid_t qemu_gid;
    uint64_t guest_mib;
    unsigned cpus;
    int stdio[3]; /* not owned */
    int devnull;
    int share_fd[1 + BOTTLE_SPEC_MAX_MOUNTS];
    size_t n_share_fd;
    char **qargv;    /* a cold boot's */
    char **argv_now; /* what the child execs: qargv, or a snapshot's (below) */
    /* Start-up from a snapshot (snapshot.h): wanted (TCG, a kernel without modules or ACPI,
     * not switched off), the template's directory and key, the template boot's argv and its
     * own sockets and initramfs, the restore's argv, and the fd number -incoming fd:N names
     * (reserved at create, the state file dup'ed onto it by start). */
    bool snap;
    char snap_dir[PATH_MAX], snap_key[SNAPSHOT_KEY_HEX + 1], snap_path[PATH_MAX];
    char **tpl_argv, **rst_argv;
    /* The template boot's files are in tpl_dir (<snap_dir>/make, the supervisor's alone,
     * used under the snapshot lock), never in the run directory, which belongs to the
     * bottle's user: what a template holds runs in every later bottle, of any user. */
    char tpl_dir[PATH_MAX], tpl_initrd[PATH_MAX], tpl_ctl[PATH_MAX], tpl_chan[PATH_MAX],
        qmp_path[PATH_MAX];
    int snap_fd;
    struct bb_cgroup cg;
    int ctl_l, chan_l, ctl_c; /* listeners, then QEMU's ctl connection */
    pid_t pid;
    int pidfd;
    bool reaped;
    bool killed; /* kill() sent SIGKILL: no report is expected */
    int status;
    bool console; /* stdio on the console (microvm_console_stdio), not channel streams */
    int io[3];    /* our copies of the caller's stdio */
    struct loop *loop;
    struct mux *mux; /* after attach */
    uint32_t next_id;
    struct vm_session main; /* session 0: the bottle's command */
    int progress_fd;        /* the user's terminal while "starting microVM..." shows, or -1 */
    /* bottle.ctl's status line as it arrives (after attach): "exit N\n" ends QEMU at once */
    struct loop_source ctl_src;
    char ctl_line[64];
    size_t ctl_len;
    bool time_answered; /* the guest's "time" request (once per bottle) */
    bool ctl_watched;
};

static struct mv_bottle *mv_of(struct bottle *b)
{
    return container_of(b, struct mv_bottle, base);
}

/*
 * The start-up line on the user's terminal ("bot-bottle: starting microVM (...)..."): drawn
 * by start() when our stderr is a terminal (never otherwise), erased when the
 * guest says the command started (its output is held until then, session.h) or when the VM
 * ends first.
 */
static void mv_progress_begin(struct mv_bottle *b)
{
    /* our own stderr, the user's (the command's stdio are the supervisor's pipes or pty) */
    int fd = STDERR_FILENO;
    char line[160];

    if (b->console || isatty(fd) != 1)
        return;
    (void)str_printf(line, sizeof(line), "bot-bottle: starting microVM (%s)...",
                     b->accel != MICROVM_ACCEL_TCG ? "KVM"
                     : b->accel_auto               ? "TCG emulation, no usable KVM"
                                                   : "TCG emulation");
    b->progress_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (b->progress_fd >= 0 && write(b->progress_fd, line, strlen(line)) < 0) {
        close(b->progress_fd);
        b->progress_fd = -1;
    }
}

static void mv_progress_end(void *ud)
{
    struct mv_bottle *b = ud;

    if (b->progress_fd < 0)
        return;
    (void)!write(b->progress_fd, "\r\033[K", 4);
    close(b->progress_fd);
    b->progress_fd = -1;
}

/* The guest's clock request ("time\n", guest/init.c: vm_sync_clock): the host's
 * CLOCK_REALTIME. Answered once per bottle; bottle-init asks once. */
static void ctl_answer_time(struct mv_bottle *b)
{
    struct timespec ts;
    char line[48];

    b->time_answered = true;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 ||
        str_printf(line, sizeof(line), "time %lld %ld\n", (long long)ts.tv_sec, ts.tv_nsec) < 0)
        return;
    (void)send(b->ctl_c, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* A leading "time\n" request (the guest's lines come one at a time: it waits for the answer
 * before it writes anything else): answered and taken off ctl_line. */
static bool ctl_take_time(struct mv_bottle *b)
{
    if (b->time_answered || b->ctl_len < 5 || memcmp(b->ctl_line, "time\n", 5) != 0)
        return false;
    ctl_answer_time(b);
    b->ctl_len -= 5;
    memmove(b->ctl_line, b->ctl_line + 5, b->ctl_len);
    return true;
}

/*
 * Reads bottle.ctl into ctl_line up to a complete line, taking off a leading "time" request
 * first (answered). 1: a complete line is there; 0: nothing more to read yet; -1: the socket
 * ended or failed, or the line does not fit (at most sizeof(ctl_line) - 1 bytes are read; the
 * rest, if any, stays in the socket).
 */
static int ctl_read_line(struct mv_bottle *b)
{
    for (;;) {
        ssize_t n;

        if (ctl_take_time(b))
            continue;
        if (memchr(b->ctl_line, '\n', b->ctl_len))
            return 1;
        if (b->ctl_len + 1 >= sizeof(b->ctl_line))
            return -1;
        n = read(b->ctl_c, b->ctl_line + b->ctl_len, sizeof(b->ctl_line) - 1 - b->ctl_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        b->ctl_len += (size_t)n;
    }
}

/*
 * bottle.ctl while the bottle runs: bottle-init first asks for the host's time ("time\n",
 * answered here), then writes "exit N\n" once, after the command's output streams were
 * drained and the guest synced its file systems (guest/init.c), and then only reboots. QEMU
 * is ended as soon as the status line is complete rather than after the guest kernel's reboot
 * and QEMU's own shut-down (10-20 ms under TCG); wait() then takes the status from the line.
 * Anything but a complete status line leaves QEMU to end as before.
 */
static void on_ctl_status(struct loop_source *src, uint32_t events)
{
    struct mv_bottle *b = src->userdata;
    int r = ctl_read_line(b);

    (void)events;
    if (r == 0)
        return;
    loop_del(b->loop, &b->ctl_src);
    b->ctl_watched = false;
    b->ctl_line[b->ctl_len] = '\0';
    if (r > 0 && !b->reaped && strncmp(b->ctl_line, "exit ", 5) == 0 &&
        b->ctl_line[b->ctl_len - 1] == '\n')
        (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
}

/* After the supervisor started the host relay: the bottle's command's streams. */
static int mv_attach(struct bottle *bb, struct loop *loop, struct mux *mux)
{
    struct mv_bottle *b = mv_of(bb);
    int r;

    if (b->console)
        return 0;
    b->loop = loop;
    b->mux = mux;
    b->next_id = 1;
    if (b->progress_fd >= 0) {
        b->main.on_started = mv_progress_end;
        b->main.started_ud = b;
    }
    r = session_open(&b->main, loop, mux, b->io, b->spec.tty, NULL, NULL, NULL);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: opening the command's streams");
    if (b->ctl_c >= 0 && !b->reaped) {
        r = loop_add(loop, &b->ctl_src, b->ctl_c, EPOLLIN, on_ctl_status, b);
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "microvm backend: watching bottle.ctl");
        b->ctl_watched = true;
    }
    /* ours are in the session now; the caller's EOF comes when the streams end */
    for (int i = 0; i < 3; i++) {
        close(b->io[i]);
        b->io[i] = -1;
    }
    return 0;
}

static void mv_resize(struct bottle *bb)
{
    session_resize(&mv_of(bb)->main);
}

/* ---- exec ---- */

static struct vm_session *sess_of(struct backend_exec *e)
{
    return container_of(e, struct vm_session, base);
}

static int mv_exec(struct bottle *bb, const struct backend_exec_args *args,
                   struct backend_exec **ret)
{
    struct mv_bottle *b = mv_of(bb);
    struct vm_session *x;
    int io[3], r;

    if (!args->argv || !args->argv[0])
        return -EINVAL;
    for (char *const *v = args->env; v && *v; v++) {
        const char *eq = strchr(*v, '=');
        if (!eq || eq == *v) {
            log_error("microvm backend: exec environment entry '%s' is not NAME=VALUE", *v);
            return -EINVAL;
        }
    }
    if (!b->mux || b->reaped) {
        log_error("microvm backend: exec needs the running bottle's channel");
        return -ENOTCONN;
    }
    if (mux_is_dead(b->mux)) {
        log_error("microvm backend: the bottle's channel is closed; cannot exec");
        return -EPIPE;
    }
    x = xcalloc(1, sizeof(*x));
    session_init(x, b->next_id++);
    x->base.ops = &backend_microvm_ops;
    for (int i = 0; i < 3; i++)
        io[i] = args->stdio[i] >= 0 ? args->stdio[i] : b->devnull;
    x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (x->efd < 0) {
        r = -errno;
        goto fail;
    }
    r = session_open(x, b->loop, b->mux, io, args->tty, args->argv, args->env, args->cwd);
    if (r >= 0)
        r = session_watch_exit(x);
    if (r < 0)
        goto fail;
    *ret = &x->base;
    return 0;
fail:
    log_errno(LOG_LVL_ERROR, r, "microvm backend: starting %s in the VM", args->argv[0]);
    session_close(x);
    free(x);
    return r;
}

static int mv_exec_pidfd(struct backend_exec *e)
{
    return sess_of(e)->efd;
}

static int mv_exec_wait(struct backend_exec *e, int *ret_status)
{
    struct vm_session *x = sess_of(e);

    if (!x->reported)
        return -EAGAIN;
    *ret_status = x->status;
    return 0;
}

static int mv_exec_signal(struct backend_exec *e, int signo)
{
    struct vm_session *x = sess_of(e);
    char line[32];

    if (x->exited)
        return 0;
    (void)str_printf(line, sizeof(line), "signal %d\n", signo);
    return send_ctl_line(x, line);
}

static void mv_exec_resize(struct backend_exec *e)
{
    session_resize(sess_of(e));
}

static void session_free_later(struct loop_defer *d)
{
    free(d->userdata);
}

static void mv_exec_free(struct backend_exec *e)
{
    struct vm_session *x;

    if (!e)
        return;
    x = sess_of(e);
    if (!x->exited)
        (void)mv_exec_signal(e, SIGKILL);
    session_close(x);
    /* maybe called from one of its own callbacks' dispatch pass: free after it */
    loop_defer(x->loop, &x->free_later, session_free_later, x);
}

/* ---- probe ---- */

/*
 * The probe's inputs: the caller's paths, else the test hooks (docs/backends.md, "Test
 * hooks": BOT_BOTTLE_QEMU names the QEMU binary, BOT_BOTTLE_KERNEL_CACHE the guest kernel
 * cache), else the defaults.
 */
static void probe_paths(const struct backend_paths *paths, struct microvm_probe_paths *pp)
{
    const char *qemu = getenv("BOT_BOTTLE_QEMU"), *cache = getenv("BOT_BOTTLE_KERNEL_CACHE");

    memset(pp, 0, sizeof(*pp));
    pp->qemu = qemu && *qemu ? qemu : NULL;
    pp->cache_dir = paths && paths->cache_dir ? paths->cache_dir : cache && *cache ? cache : NULL;
    if (paths && paths->kernel && strcmp(paths->kernel, MICROVM_STOCK_NAME) == 0)
        pp->kernel = MICROVM_STOCK_NAME;
}

static int mv_probe(const struct backend_paths *paths, struct backend_probe *ret)
{
    struct microvm_probe_paths pp;
    struct microvm_probe *p = xcalloc(1, sizeof(*p));
    char init[PATH_MAX], jail_why[BACKEND_REASON_MAX] = "";
    bool have_init, jail_ok;

    probe_paths(paths, &pp);
    (void)microvm_probe_run(&pp, p);
    memset(ret, 0, sizeof(*ret));
    for (size_t i = 0; i < MICROVM_FINDING_MAX_ID; i++)
        backend_probe_add_finding(ret, microvm_finding_name((enum microvm_finding_id)i),
                                  p->findings[i].ok, "%s", p->findings[i].text);
    have_init = ns_find_init(paths ? paths->init : NULL, init, sizeof(init)) == 0;
    backend_probe_add_finding(ret, "initramfs", have_init, "%s%s%s",
                              have_init ? "built for each bottle from bottle-init at " : "",
                              have_init ? init : "bottle-init was not found",
                              have_init ? "" : " (looked next to the executable and in libexec)");
    /* QEMU's jail (jail.c): its namespaces are a must for root (an unprivileged invoker
     * falls back to the filter alone, with a warning at start). The net namespace is left out
     * of the test, as the namespace backend's probe does: it is what costs, not what fails. */
    {
        const struct microvm_jail j = { .ns = true };
        char why[BACKEND_REASON_MAX];
        jail_ok = backend_try_namespaces(jail_clone_flags(&j) & ~(uint64_t)CLONE_NEWNET,
                                         "QEMU's jail (user, mount, pid namespaces)", why,
                                         sizeof(why)) == 0;
        backend_probe_add_finding(ret, "jail", jail_ok || geteuid() != 0, "%s",
                                  jail_ok ? "QEMU runs in its own user, mount, pid, net, ipc and "
                                            "uts namespaces with a minimal root"
                                          : why);
        if (!jail_ok && geteuid() != 0)
            jail_ok = true; /* the filter-only fallback, said at start */
        else if (!jail_ok)
            (void)str_printf(jail_why, sizeof(jail_why), "%s", why);
    }
    if (!p->available) {
        (void)str_printf(ret->reason, sizeof(ret->reason), "%s", p->reason);
    } else if (!jail_ok) {
        (void)str_printf(ret->reason, sizeof(ret->reason), "%s", jail_why);
    } else if (!have_init) {
        (void)str_printf(ret->reason, sizeof(ret->reason),
                         "bottle-init was not found (looked next to the executable and in "
                         "libexec); build it or pass its path");
    } else {
        ret->available = true;
        ret->slow = p->accel == MICROVM_ACCEL_TCG;
        (void)str_printf(ret->reason, sizeof(ret->reason), "QEMU %u.%u.%u, kernel %s, %s: %s",
                         p->qemu_version[0], p->qemu_version[1], p->qemu_version[2],
                         p->kernel.version, microvm_accel_name(p->accel), p->reason);
    }
    free(p);
    return 0;
}

/* ---- create ---- */

static void mv_destroy(struct bottle *bb);

/*
 * A listening unix socket at path, owned by QEMU's user (it connects to it). The owner is set
 * without following a symlink: the run directory may already belong to QEMU's user (a cold
 * boot after a failed restore listens again), who could put a symlink in the socket's place
 * between bind and chown and have root chown what it points to.
 */
static int listen_unix(const char *path, uid_t uid, gid_t gid)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (str_printf(sa.sun_path, sizeof(sa.sun_path), "%s", path) < 0)
        return -ENAMETOOLONG;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
        return -errno;
    if (geteuid() == 0 && fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return TAKE_FD(fd);
}

/* A share's host directory, opened without following any symlink; QEMU gets it as
 * /proc/self/fd/N (the same number in the child), so the path is not looked up twice. */
static int share_open(const char *path)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));

    return fd < 0 ? -errno : fd;
}

/*
 * QEMU's user (S10 rule 1): the bottle's own user when it is not root (sudo: SUDO_UID, chosen
 * by the supervisor). A bottle of root (bot-bottle run as plain root) gets QEMU as the
 * workspace's owner, as vm-launch did: what the guest writes lands as that user, and QEMU runs
 * as root only when the workspace belongs to root.
 */
static int qemu_ids(struct mv_bottle *b)
{
    struct stat st;

    if (b->spec.uid != 0 || geteuid() != 0) {
        b->qemu_uid = geteuid() == 0 ? b->spec.uid : geteuid();
        b->qemu_gid = geteuid() == 0 ? b->spec.gid : getegid();
        return 0;
    }
    if (stat(b->spec.workspace, &st) < 0)
        return -errno;
    b->qemu_uid = st.st_uid;
    b->qemu_gid = st.st_gid;
    return 0;
}

/* dir/lock (0600, ours), flock'ed: the fd, close-on-exec, or -errno. */
static int run_dir_lock(const char *dir)
{
    char p[PATH_MAX + 8];
    int fd;

    if (str_printf(p, sizeof(p), "%s/lock", dir) < 0)
        return -ENAMETOOLONG;
    fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/*
 * Removes the run directories (TMP/bb-vm.*) of microvm bottles whose supervisor is gone (killed
 * with SIGKILL: nothing ran its clean-up): ours (same owner), with a lock file nobody holds.
 * Only the names a run directory holds are removed, through the directory's fd, never through a
 * symlink; a directory without a lock file (being created, or of another version) is left.
 */
static void sweep_run_dirs(const char *tmp)
{
    static const char *const names[] = { "initramfs.cpio", "ctl.sock",     "chan.sock",
                                         "template.cpio",  "tpl-ctl.sock", "tpl-chan.sock",
                                         "qmp.sock",       "lock" };
    DIR *d = opendir(tmp);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        struct stat st;
        int dfd, lfd;

        if (strncmp(de->d_name, "bb-vm.", 6) != 0)
            continue;
        dfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            continue;
        /* ours: made by us (the owner is QEMU's user when root made it for another) */
        if (fstat(dfd, &st) < 0 || (st.st_uid != geteuid() && geteuid() != 0)) {
            close(dfd);
            continue;
        }
        lfd = openat(dfd, "lock", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0) {
            if (lfd >= 0)
                close(lfd);
            close(dfd);
            continue; /* in use, or not one with a lock */
        }
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
            (void)unlinkat(dfd, names[i], 0);
        (void)unlinkat(dfd, "root", AT_REMOVEDIR);
        close(lfd);
        close(dfd);
        if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == 0)
            log_info(
                "removed %s/%s, which a microVM bottle whose supervisor was killed left behind",
                tmp, de->d_name);
    }
    closedir(d);
}

/*
 * QEMU's jail (jail.h): an empty directory in the run directory for its root, what it binds,
 * and the seccomp filter for QEMU's ids. Root always jails QEMU; an unprivileged invoker gets
 * the namespaces when the host allows user namespaces (start() falls back if not).
 */
static int jail_prepare(struct mv_bottle *b)
{
    struct microvm_jail *j = &b->jail;
    int r;

    j->ns = true;
    j->kvm = b->accel == MICROVM_ACCEL_KVM;
    j->setgroups = geteuid() == 0;
    j->uid = b->qemu_uid;
    j->gid = b->qemu_gid;
    j->run_dir = b->dir;
    j->qemu = b->probe.qemu;
    j->kernel = b->probe.kernel.path;
    if (j->qemu[0] != '/' || j->kernel[0] != '/') {
        log_error("microvm backend: QEMU (%s) and the guest kernel (%s) need absolute paths",
                  j->qemu, j->kernel);
        return -EINVAL;
    }
    if (str_printf(j->root, sizeof(j->root), "%s/root", b->dir) < 0)
        return log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "microvm backend: %s", b->dir);
    if (mkdir(j->root, 0755) < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "microvm backend: creating %s", j->root);
        j->root[0] = '\0';
        return r;
    }
    r = jail_build_filter(j);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: building QEMU's seccomp filter");
    return 0;
}

/* Share i (0: the workspace, else the i-th --mount) as QEMU's jail binds it: with the protect
 * paths beneath it, so QEMU itself cannot write them (jail.h). The strings are the spec's. */
static void jail_add_share(struct mv_bottle *b, size_t i, const char *src, int fd, bool ro,
                           bool detached)
{
    struct jail_share_view *v;
    const char *at = i == 0 ? b->spec.workspace : b->spec.mounts[i - 1].dst;

    if (b->jail.n_shares >= JAIL_MAX_SHARES)
        return;
    v = &b->jail.shares[b->jail.n_shares++];
    *v = (struct jail_share_view){ .src = src, .fd = fd, .ro = ro, .detached = detached };
    (void)str_printf(v->at, sizeof(v->at), "/shares/%zu", i);
    for (size_t k = 0; k < b->spec.n_protect && v->n_protect < ARRAY_SIZE(v->protect); k++) {
        const char *p = b->spec.protect[k], *root = bottle_spec_protect_root(&b->spec, p);
        if (root && strcmp(root, at) == 0)
            v->protect[v->n_protect++] = p + strlen(root) + 1;
    }
}

static int sizing(struct mv_bottle *b, const struct backend_create_args *args,
                  struct cgroup_limits *lim)
{
    uint64_t limit_mib = args->memory_bytes >> 20;

    b->guest_mib = MICROVM_DEFAULT_GUEST_MIB;
    lim->pids_max = args->pids_max ? args->pids_max + MICROVM_QEMU_THREADS : 0;
    lim->cpus_milli = args->cpus_milli;
    b->cpus = args->cpus_milli ? (args->cpus_milli + 999) / 1000 : 1;
    if (b->cpus > MICROVM_MAX_CPUS)
        b->cpus = MICROVM_MAX_CPUS;
    if (limit_mib) {
        uint64_t fit = limit_mib * 32 / 33; /* guest + guest/32 <= limit - base overhead */
        if (limit_mib < MICROVM_QEMU_OVERHEAD_MIB + MICROVM_MIN_MEMORY_MIB + 2 ||
            (fit = (limit_mib - MICROVM_QEMU_OVERHEAD_MIB) * 32 / 33) < MICROVM_MIN_MEMORY_MIB) {
            log_error("microvm backend: --memory %llu MiB leaves no room for the guest (QEMU "
                      "needs about %d MiB on top of at least %d MiB of guest RAM); raise "
                      "--memory",
                      (unsigned long long)limit_mib, MICROVM_QEMU_OVERHEAD_MIB,
                      MICROVM_MIN_MEMORY_MIB);
            return -EINVAL;
        }
        /* Asked for (--memory, [bottle] memory): the guest gets all of it. The default limit
         * (up to 8 GiB) keeps the 1 GiB guest: under TCG every GiB of guest RAM adds about
         * 0.2 s to the boot (the kernel initializes a struct page per 4 KiB). */
        if (fit < b->guest_mib || args->vm.memory_given)
            b->guest_mib = MIN(fit, MICROVM_MAX_GUEST_MIB);
        lim->memory_bytes = (b->guest_mib + b->guest_mib / 32 + MICROVM_QEMU_OVERHEAD_MIB) << 20;
    }
    return 0;
}

/*
 * Start-up from a snapshot, when it applies: under TCG (KVM boots in a fraction of the time,
 * and cannot be tried here), with a kernel that needs no modules and no ACPI (the minimal
 * one, or a user's own like it), unless [microvm] snapshot = off. Builds the template boot's
 * and the restore's argv from the cold boot's config qc, and the key from a canonical copy
 * of the template's (per-bottle paths replaced, so every bottle of the same shape shares
 * one template). Anything that keeps a snapshot from being used here is said once and the
 * bottle boots as before.
 */
static void snap_prepare(struct mv_bottle *b, const struct backend_create_args *args,
                         const struct microvm_qemu_config *qc)
{
    struct microvm_share canon_shares[MICROVM_MAX_SHARES];
    struct microvm_qemu_config c = *qc;
    const char *files[] = { b->probe.qemu, b->probe.kernel.path, b->init };
    char cache[PATH_MAX], **canon = NULL;
    struct microvm_probe_paths pp;
    int r;

    if (args->vm.no_snapshot || b->accel != MICROVM_ACCEL_TCG || b->probe.kernel.modules[0] ||
        b->probe.kernel.acpi)
        return;
    /* the kernel's cache, as the probe found it (BOT_BOTTLE_KERNEL_CACHE, else the default) */
    probe_paths(&args->paths, &pp);
    r = pp.cache_dir ? str_printf(cache, sizeof(cache), "%s", pp.cache_dir)
                     : microvm_cache_dir_default(cache, sizeof(cache));
    if (r >= 0)
        r = snapshot_dir(cache, b->snap_dir, sizeof(b->snap_dir));
    if (r < 0) {
        log_warn("microvm backend: no start-up snapshot (%s in %s/snapshot): booting the guest "
                 "kernel instead, about 1 s slower under TCG; set [microvm] snapshot = off to "
                 "stop trying",
                 r == -EPERM ? "not a private directory of ours" : strerror(-r), cache);
        return;
    }
    if (str_printf(b->tpl_dir, sizeof(b->tpl_dir), "%s/make", b->snap_dir) < 0 ||
        str_printf(b->tpl_initrd, sizeof(b->tpl_initrd), "%s/initramfs.cpio", b->tpl_dir) < 0 ||
        str_printf(b->tpl_ctl, sizeof(b->tpl_ctl), "%s/ctl.sock", b->tpl_dir) < 0 ||
        str_printf(b->tpl_chan, sizeof(b->tpl_chan), "%s/chan.sock", b->tpl_dir) < 0 ||
        str_printf(b->qmp_path, sizeof(b->qmp_path), "%s/qmp.sock", b->tpl_dir) < 0)
        return;
    /* the key: the template's argv with fixed stand-ins for the per-bottle paths, and the
     * CPU's model instead of the timer hints (snapshot_cpu_model) */
    c.template_boot = true;
    c.tsc_khz = 0;
    c.initrd = "/i";
    c.ctl_socket = "/c";
    c.chan_socket = "/h";
    c.qmp_socket = "/q";
    for (size_t i = 0; i < qc->n_shares && i < ARRAY_SIZE(canon_shares); i++)
        canon_shares[i] = (struct microvm_share){ qc->shares[i].tag, "/s", false };
    c.shares = canon_shares;
    r = microvm_qemu_argv(&c, &canon);
    if (r >= 0) {
        char model[256], cpu[300];
        size_t n = 0;
        (void)snapshot_cpu_model("/proc/cpuinfo", model, sizeof(model));
        (void)str_printf(cpu, sizeof(cpu), "cpu %s", model);
        char **k;
        while (canon[n])
            n++;
        k = xcalloc(n + 2, sizeof(char *));
        memcpy(k, canon, n * sizeof(char *));
        k[n] = cpu;
        r = snapshot_key(files, ARRAY_SIZE(files), k, b->snap_key);
        free(k);
    }
    microvm_argv_free(canon);
    /* the template's boot: its guest mounts no share (9p refuses to migrate a mounted one),
     * so they all stand on the jail's read-only /usr, and the bottle's own stay unbound (a
     * share's detached mount can be attached only once: by the bottle's QEMU) */
    for (size_t i = 0; i < qc->n_shares && i < ARRAY_SIZE(canon_shares); i++)
        canon_shares[i] = (struct microvm_share){ qc->shares[i].tag, "/usr", true };
    c = *qc;
    c.shares = canon_shares;
    c.template_boot = true;
    c.initrd = b->tpl_initrd;
    c.ctl_socket = b->tpl_ctl;
    c.chan_socket = b->tpl_chan;
    c.qmp_socket = b->qmp_path;
    if (r >= 0)
        r = microvm_qemu_argv(&c, &b->tpl_argv);
    /* the restore: the state on a number reserved now */
    b->snap_fd = fcntl(b->devnull, F_DUPFD_CLOEXEC, 3);
    c = *qc;
    c.restore = true;
    c.restore_fd = b->snap_fd;
    if (r >= 0 && b->snap_fd < 0)
        r = -errno;
    if (r >= 0)
        r = microvm_qemu_argv(&c, &b->rst_argv);
    if (r < 0) {
        log_errno(LOG_LVL_WARN, r, "microvm backend: no start-up snapshot (its command line)");
        return;
    }
    b->snap = true;
}

static int mv_create(const struct backend_create_args *args, struct bottle **ret)
{
    struct mv_bottle *b;
    struct cgroup_limits lim = { 0 };
    const char *field = NULL;
    char why[PATH_MAX + 256];
    int r;

    b = xcalloc(1, sizeof(*b));
    b->base.ops = &backend_microvm_ops;
    b->pid = -1;
    b->pidfd = b->ctl_l = b->chan_l = b->ctl_c = b->progress_fd = b->dir_lock = b->snap_fd = -1;
    b->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    b->spec_enc = BUF_INIT(BOTTLE_SPEC_MAX_SIZE);
    cgroup_init(&b->cg);
    for (size_t i = 0; i < CGROUP_CTL_MAX; i++)
        b->cg_tasks[i] = -1;
    for (size_t i = 0; i < ARRAY_SIZE(b->share_fd); i++)
        b->share_fd[i] = -1;
    for (size_t i = 0; i < 3; i++) {
        b->stdio[i] = args->stdio[i];
        b->io[i] = -1;
    }
    session_init(&b->main, 0);

    {
        struct microvm_probe_paths pp;
        struct backend_paths bp = args->paths;
        bp.kernel = args->vm.kernel;
        probe_paths(&bp, &pp);
        (void)microvm_probe_run(&pp, &b->probe);
    }
    /* [microvm] kernel = stock is the probe's (probe_paths); a user's own kernel
     * ([microvm] kernel = PATH) stands in for the cache's. */
    if (args->vm.kernel && strcmp(args->vm.kernel, MICROVM_STOCK_NAME) != 0) {
        char why_k[MICROVM_REASON_MAX];
        r = microvm_kernel_check(args->vm.kernel, why_k, sizeof(why_k));
        if (r < 0) {
            log_error("microvm backend: %s ([microvm] kernel in your config)", why_k);
            goto fail;
        }
        (void)str_printf(b->probe.kernel.path, sizeof(b->probe.kernel.path), "%s", args->vm.kernel);
        (void)str_printf(b->probe.kernel.version, sizeof(b->probe.kernel.version), "%s", "own");
        b->probe.kernel.modules[0] = '\0';
        b->probe.kernel.acpi = false;
        b->probe.available = b->probe.findings[MICROVM_FINDING_QEMU].ok;
        if (!b->probe.available)
            (void)str_printf(b->probe.reason, sizeof(b->probe.reason), "%s",
                             b->probe.findings[MICROVM_FINDING_QEMU].text);
    }
    if (!b->probe.available) {
        log_error("microvm backend: %s; or run with --backend namespace", b->probe.reason);
        r = -EOPNOTSUPP;
        goto fail;
    }
    {
        enum microvm_accel_request req = MICROVM_ACCEL_REQ_AUTO;
        char why_a[MICROVM_REASON_MAX];
        if (args->vm.accel && microvm_accel_request_from_string(args->vm.accel, &req) < 0) {
            log_error("microvm backend: --accel '%s': expected kvm, tcg or auto", args->vm.accel);
            r = -EINVAL;
            goto fail;
        }
        r = microvm_accel_choose(req, &b->probe, &b->accel, why_a, sizeof(why_a));
        if (r < 0) {
            log_error("microvm backend: %s", why_a);
            goto fail;
        }
        b->accel_auto = req == MICROVM_ACCEL_REQ_AUTO;
    }
    {
        struct bottle_spec tmp = *args->spec;
        size_t line = 0;
        tmp.rootfs = BOTTLE_ROOTFS_9P;
        tmp.pids_max = args->pids_max; /* enforced in the guest by bottle-init */
        tmp.channel = (char *)"/dev/virtio-ports/" MICROVM_PORT_CHAN;
        r = bottle_spec_validate(&tmp, &field);
        if (r < 0) {
            log_error("microvm backend: invalid bottle spec (%s)", field);
            goto fail;
        }
        r = bottle_spec_encode(&tmp, &b->spec_enc);
        if (r >= 0)
            r = bottle_spec_decode(b->spec_enc.p, b->spec_enc.len, &b->spec, &line);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "microvm backend: encoding the bottle spec");
            goto fail;
        }
    }
    /* Our copies of the command's stdio: the caller closes its own once the bottle started
     * (its EOF is then ours to give, when the guest's streams end). */
    for (size_t i = 0; i < 3; i++) {
        b->io[i] = fcntl(b->stdio[i] >= 0 ? b->stdio[i] : (int)i, F_DUPFD_CLOEXEC, 3);
        if (b->io[i] < 0) {
            r = log_errno(LOG_LVL_ERROR, -errno, "microvm backend: the command's stdio");
            goto fail;
        }
    }
    r = ns_find_init(args->paths.init, b->init, sizeof(b->init));
    if (r < 0) {
        log_error("microvm backend: bottle-init not found (%s)",
                  args->paths.init ? args->paths.init : "default locations");
        goto fail;
    }
    r = qemu_ids(b);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "microvm backend: the workspace %s", b->spec.workspace);
        goto fail;
    }
    r = sizing(b, args, &lim);
    if (r < 0)
        goto fail;

    /* The bottle's private run directory: the initramfs and the two sockets, QEMU's user
     * only; and its lock, held while we live, so that the next bottle can remove what a
     * supervisor killed with SIGKILL left behind. */
    {
        const char *tmp = getenv("TMPDIR");
        if (!tmp || tmp[0] != '/' || geteuid() == 0)
            tmp = "/tmp";
        sweep_run_dirs(tmp);
        (void)str_printf(b->dir, sizeof(b->dir), "%s/bb-vm.XXXXXX", tmp);
        if (!mkdtemp(b->dir)) {
            r = log_errno(LOG_LVL_ERROR, -errno, "microvm backend: creating %s (set TMPDIR)",
                          b->dir);
            b->dir[0] = '\0';
            goto fail;
        }
        b->dir_lock = run_dir_lock(b->dir);
        if (b->dir_lock < 0) {
            r = log_errno(LOG_LVL_ERROR, b->dir_lock, "microvm backend: locking %s", b->dir);
            goto fail;
        }
    }
    if (str_printf(b->initrd, sizeof(b->initrd), "%s/initramfs.cpio", b->dir) < 0 ||
        str_printf(b->ctl_path, sizeof(b->ctl_path), "%s/ctl.sock", b->dir) < 0 ||
        str_printf(b->chan_path, sizeof(b->chan_path), "%s/chan.sock", b->dir) < 0) {
        r = log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "microvm backend: %s", b->dir);
        goto fail;
    }
    r = jail_prepare(b);
    if (r < 0)
        goto fail;
    b->ctl_l = listen_unix(b->ctl_path, b->qemu_uid, b->qemu_gid);
    if (b->ctl_l >= 0)
        b->chan_l = listen_unix(b->chan_path, b->qemu_uid, b->qemu_gid);
    if (b->ctl_l < 0 || b->chan_l < 0) {
        r = log_errno(LOG_LVL_ERROR, b->ctl_l < 0 ? b->ctl_l : b->chan_l,
                      "microvm backend: listening in %s", b->dir);
        goto fail;
    }
    /* QEMU's user gets the directory only now, with everything root made in it by path in
     * place: while it was root's, nothing in it could be swapped for a symlink */
    if (geteuid() == 0 && chown(b->dir, b->qemu_uid, b->qemu_gid) < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "microvm backend: chown %s", b->dir);
        goto fail;
    }

    /* Shares in the order bottle-init expects their tags (guest/rootfs.h). */
    {
        struct microvm_share shares[2 + BOTTLE_SPEC_MAX_MOUNTS];
        char tags[BOTTLE_SPEC_MAX_MOUNTS][16], paths[1 + BOTTLE_SPEC_MAX_MOUNTS][32];
        struct microvm_qemu_config qc = { 0 };
        size_t n = 0;

        shares[n++] = (struct microvm_share){ GUEST_9P_TAG_USR, "/usr", true };
        for (size_t i = 0; i < 1 + b->spec.n_mounts; i++) {
            const char *src = i == 0 ? b->spec.workspace : b->spec.mounts[i - 1].src;
            if (n >= MICROVM_MAX_SHARES) {
                log_error("microvm backend: at most %d --mount", MICROVM_MAX_SHARES - 2);
                r = -E2BIG;
                goto fail;
            }
            r = share_open(src);
            if (r < 0) {
                log_errno(LOG_LVL_ERROR, r,
                          r == -ELOOP ? "microvm backend: %s is or passes through a symbolic link"
                                      : "microvm backend: opening %s",
                          src);
                goto fail;
            }
            b->share_fd[b->n_share_fd++] = r;
            /* QEMU's private copy of the share's mount (read-only for a read-only --mount) */
            if (geteuid() == 0) {
                r = jail_share(&b->share_fd[b->n_share_fd - 1], i > 0 && b->spec.mounts[i - 1].ro);
                if (r < 0) {
                    log_errno(LOG_LVL_ERROR, r, "microvm backend: a private mount of %s for QEMU",
                              src);
                    goto fail;
                }
            }
            (void)str_printf(paths[i], sizeof(paths[i]), "/proc/self/fd/%d",
                             b->share_fd[b->n_share_fd - 1]);
            jail_add_share(b, i, src, b->share_fd[b->n_share_fd - 1],
                           i > 0 && b->spec.mounts[i - 1].ro, geteuid() == 0);
            if (i == 0) {
                shares[n++] = (struct microvm_share){ GUEST_9P_TAG_WORKSPACE, paths[i], false };
            } else {
                (void)str_printf(tags[i - 1], sizeof(tags[i - 1]), GUEST_9P_TAG_MOUNT_FMT, i - 1);
                shares[n++] =
                    (struct microvm_share){ tags[i - 1], paths[i], b->spec.mounts[i - 1].ro };
            }
        }
        qc.accel = b->accel;
        qc.tsc_khz = b->probe.cpu_khz;
        qc.qemu = b->probe.qemu;
        qc.kernel = b->probe.kernel.path;
        qc.acpi = b->probe.kernel.acpi;
        qc.initrd = b->initrd;
        qc.ctl_socket = b->ctl_path;
        qc.chan_socket = b->chan_path;
        qc.shares = shares;
        qc.n_shares = n;
        qc.cpus = b->cpus;
        qc.memory_mib = b->guest_mib;
        /* Benchmark knobs: bottle-init's start-up stages on the console
         * (bench/microvm-run.sh --trace), the workspace's 9p msize and cache mode
         * (bench/microvm-ws.sh; bottle-init accepts only known values). */
        {
            const char *t = getenv("BOT_BOTTLE_VM_TRACE"), *p9 = getenv("BOT_BOTTLE_VM_9P");
            bool tr = t && (strcmp(t, "1") == 0 || strcmp(t, "2") == 0);
            bool ok9 = p9 && p9[0] && strlen(p9) < 32 &&
                       strspn(p9, "0123456789,abcdefghijklmnopqrstuvwxyz") == strlen(p9);
            (void)str_printf(b->cmdline_extra, sizeof(b->cmdline_extra), "%s%s%s%s",
                             !tr           ? ""
                             : t[0] == '2' ? "bbtrace=2"
                                           : "bbtrace=1",
                             tr && ok9 ? " " : "", ok9 ? "bb9p=" : "", ok9 ? p9 : "");
            qc.cmdline_extra = b->cmdline_extra;
        }
        r = microvm_qemu_argv(&qc, &b->qargv);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "microvm backend: building QEMU's command line");
            goto fail;
        }
        b->argv_now = b->qargv;
        snap_prepare(b, args, &qc);
    }

    {
        char name[BOTTLE_SPEC_MAX_NAME + 16];
        (void)str_printf(name, sizeof(name), "%s.%d", b->spec.name, (int)getpid());
        r = cgroup_create(&lim, name, &b->cg, why, sizeof(why));
        if (r < 0) {
            log_error("microvm backend: cannot enforce the bottle's limits (%s%s%s): %s; run "
                      "as root or inside a delegated cgroup (systemd-run --user --scope -p "
                      "Delegate=yes bot-bottle run ...), or pass --no-limits to run without "
                      "them",
                      lim.memory_bytes ? "memory " : "", lim.pids_max ? "pids " : "",
                      lim.cpus_milli ? "cpu" : "", why);
            goto fail;
        }
    }
    *ret = &b->base;
    return 0;
fail:
    mv_destroy(&b->base);
    return r;
}

/*
 * The bottle's initramfs (bottle-init, the spec, the host's public /etc files, the command's
 * seccomp program), written by start() while QEMU's child sets up its jail (it execs QEMU
 * only once this is done). The command's seccomp program is compiled here at native speed
 * rather than by libseccomp under the guest's emulation: the same guest_seccomp_build()
 * rules the namespace backend loads (tests/unit/test-seccomp-export.c compares them).
 */
static int write_initramfs(struct mv_bottle *b)
{
    struct initramfs_bottle ib = { .spec = b->spec_enc.p,
                                   .spec_len = b->spec_enc.len,
                                   .host_etc = "/etc" };
    void *bpf = NULL;
    int r;

    ib.modules_dir = b->probe.kernel.modules[0] ? b->probe.kernel.modules : NULL;
    r = guest_seccomp_export(EPERM, EAFNOSUPPORT, &bpf, &ib.seccomp_len);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: building the seccomp filter");
    ib.seccomp = bpf;
    r = initramfs_write_bottle(b->init, &ib, b->initrd);
    free(bpf);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: writing the initramfs from %s",
                         b->init);
    return 0;
}

/* ---- start ---- */

/* What the child reports when it cannot exec QEMU: errno and the step that failed. */
struct child_err {
    int e;
    char step[64];
};

static _noreturn_ void child_fail(int err_fd, int e, const char *step)
{
    struct child_err ce = { .e = e };
    size_t n = strlen(step);

    memcpy(ce.step, step, MIN(n, sizeof(ce.step) - 1));
    (void)!write(err_fd, &ce, sizeof(ce));
    _exit(125);
}

/*
 * In the child, in its own mount namespace (the jail's): the template on snap_fd again, opened
 * through a read-only bind of itself. The file is the supervisor's user's, who may also be
 * QEMU's (an unprivileged invoker; root's QEMU for a root-owned workspace): through an fd of
 * a writable mount a compromised QEMU could open /proc/self/fd/N for writing and put its own
 * guest into every later bottle of this shape. The jail's filter refuses it any mount call.
 */
static void child_snap_readonly(struct mv_bottle *b, int err_fd)
{
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                           MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC };
    struct stat a, o;
    int fd;

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(b->snap_path, b->snap_path, NULL, MS_BIND, NULL) < 0 ||
        mount_setattr(AT_FDCWD, b->snap_path, 0, &attr, sizeof(attr)) < 0)
        child_fail(err_fd, errno, "binding the start-up snapshot read-only");
    fd = open(b->snap_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        child_fail(err_fd, errno, "opening the start-up snapshot");
    /* the same file (another supervisor may have replaced or removed it meanwhile) */
    if (fstat(fd, &o) < 0 || fstat(b->snap_fd, &a) < 0)
        child_fail(err_fd, errno, "opening the start-up snapshot");
    if (a.st_dev != o.st_dev || a.st_ino != o.st_ino)
        child_fail(err_fd, ESTALE, "opening the start-up snapshot");
    if (dup3(fd, b->snap_fd, O_CLOEXEC) < 0)
        child_fail(err_fd, errno, "opening the start-up snapshot");
    close(fd);
}

/*
 * The child between clone3() and exec: only async-signal-safe calls. Reports errno through
 * err_fd (close-on-exec: EOF means exec succeeded). With the jail, it first waits on sync_fd
 * for its id maps; jailed, it waits on sync_fd again, for the initramfs, before exec.
 */
static _noreturn_ void child_main(struct mv_bottle *b, int sync_fd, int err_fd)
{
    static char *const envp[] = { (char *)"PATH=/usr/bin:/bin", NULL };
    const char *step = "starting";
    sigset_t none;
    int moved[3], r;
    char c;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 100);
    if (err_fd < 0)
        _exit(125);
    /* QEMU dies with the supervisor. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(err_fd, errno, step);
    /* The id maps of our user namespace are written. EOF: the parent gave up. */
    if (b->jail.ns && RETRY_EINTR(read(sync_fd, &c, 1)) != 1)
        _exit(125);
    /* cgroup v1: into the bottle's cgroups before QEMU runs anything (cgroup.h) */
    if (b->cg.version == 1 && cgroup_enter_self(b->cg_tasks) < 0)
        child_fail(err_fd, errno, "joining the bottle's cgroups");
    step = "setting up stdio";
    for (int i = 0; i < 3; i++) {
        int src = b->stdio[i] >= 0 ? b->stdio[i] : i;
        /* With streams, the console (diagnostics: the kernel, bottle-init) goes to stderr and
         * QEMU reads nothing. */
        if (!b->console)
            src = i == 0 ? b->devnull : b->stdio[2] >= 0 ? b->stdio[2] : 2;
        /* a template's QEMU reads nothing of the user's (it is every later bottle's) */
        if (i == 0 && b->argv_now == b->tpl_argv)
            src = b->devnull;
        moved[i] = fcntl(src, F_DUPFD_CLOEXEC, 100);
        if (moved[i] < 0)
            child_fail(err_fd, errno, step);
    }
    for (int i = 0; i < 3; i++)
        if (dup3(moved[i], i, 0) < 0)
            child_fail(err_fd, errno, step);
    /* Only stdio and the shares (at the numbers in the argv) reach QEMU. */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0 && errno != ENOSYS)
        child_fail(err_fd, errno, step);
    for (size_t i = 0; i < b->n_share_fd; i++)
        if (fcntl(b->share_fd[i], F_SETFD, 0) < 0)
            child_fail(err_fd, errno, step);
    /* a restore's saved state, at the number its -incoming fd:N names */
    if (b->argv_now == b->rst_argv && b->jail.ns)
        child_snap_readonly(b, err_fd);
    if (b->argv_now == b->rst_argv && fcntl(b->snap_fd, F_SETFD, 0) < 0)
        child_fail(err_fd, errno, step);
    if (setsid() < 0)
        child_fail(err_fd, errno, "setsid");
    /* QEMU's ids, its minimal root, no capabilities, no_new_privs, the seccomp filter */
    r = jail_enter(&b->jail, &step);
    if (r < 0)
        child_fail(err_fd, -r, step);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) /* reset by the id change */
        child_fail(err_fd, errno, "PR_SET_PDEATHSIG");
    /* The parent wrote the initramfs meanwhile (start()). EOF: it gave up. */
    if (RETRY_EINTR(read(sync_fd, &c, 1)) != 1)
        _exit(125);
    execve(b->argv_now[0], b->argv_now, envp);
    child_fail(err_fd, errno, "exec");
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Accepts one connection on each of the n listeners l (QEMU connects its chardev sockets at
 * startup) into c, or sees QEMU die: 0, -ETIMEDOUT, -ECHILD (QEMU exited first) or -errno.
 * On failure the connections made are closed; the listeners are the caller's.
 */
static int accept_all(int pidfd, const int *l, int *c, size_t n)
{
    long long deadline = now_ms() + MICROVM_CONNECT_MS;
    struct pollfd p[4];
    size_t got = 0;
    int r = 0;

    if (n + 1 > ARRAY_SIZE(p))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        c[i] = -1;
    while (got < n) {
        long long left = deadline - now_ms();
        int k;

        if (left <= 0) {
            r = -ETIMEDOUT;
            break;
        }
        p[0] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
        for (size_t i = 0; i < n; i++)
            p[i + 1] = (struct pollfd){ .fd = c[i] < 0 ? l[i] : -1, .events = POLLIN };
        k = poll(p, (nfds_t)n + 1, (int)left);
        if (k < 0 && errno != EINTR) {
            r = -errno;
            break;
        }
        if (k <= 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (!p[i + 1].revents)
                continue;
            c[i] = accept4(l[i], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (c[i] >= 0)
                got++;
            else if (errno != EAGAIN && errno != EINTR) {
                r = -errno;
                break;
            }
        }
        if (r < 0)
            break;
        if (p[0].revents && got < n) {
            r = -ECHILD;
            break;
        }
    }
    if (r < 0)
        for (size_t i = 0; i < n; i++)
            if (c[i] >= 0) {
                close(c[i]);
                c[i] = -1;
            }
    return r;
}

/* QEMU connects both sockets at startup: accept them (or see QEMU die). */
static int accept_qemu(struct mv_bottle *b, int *ret_chan)
{
    const int l[2] = { b->ctl_l, b->chan_l };
    int c[2], r = accept_all(b->pidfd, l, c, 2);

    if (r < 0)
        return r;
    /* One connection each: QEMU's. */
    b->ctl_c = c[0];
    close(b->ctl_l);
    b->ctl_l = -1;
    close(b->chan_l);
    b->chan_l = -1;
    *ret_chan = c[1];
    return 0;
}

/* Waits on fd (non-blocking) for the line want, while QEMU (pidfd) lives: 0, -ECHILD,
 * -ETIMEDOUT, -EPROTO (something else came) or -errno. Nothing follows want on fd. */
static int wait_line(int fd, int pidfd, const char *want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t want_len = strlen(want), len = 0;
    char got[64];

    if (want_len > sizeof(got))
        return -EINVAL;
    while (len < want_len) {
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
        long long left = deadline - now_ms();
        ssize_t n;
        int k;

        if (left <= 0)
            return -ETIMEDOUT;
        k = poll(p, 2, (int)left);
        if (k < 0 && errno != EINTR)
            return -errno;
        if (k <= 0)
            continue;
        if (p[0].revents) {
            n = read(fd, got + len, want_len - len);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return -errno;
            if (n == 0)
                return -ECHILD; /* QEMU closed it: it is ending */
            if (n > 0) {
                len += (size_t)n;
                if (memcmp(got, want, len) != 0)
                    return -EPROTO;
            }
            continue;
        }
        if (p[1].revents)
            return -ECHILD;
    }
    return 0;
}

/* Writes all of p to fd (non-blocking) while QEMU (pidfd) lives: 0, -ECHILD, -ETIMEDOUT or
 * -errno. */
static int send_all(int fd, int pidfd, const void *p, size_t len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    const char *c = p;

    while (len > 0) {
        struct pollfd pf[2] = { { .fd = fd, .events = POLLOUT },
                                { .fd = pidfd, .events = POLLIN } };
        long long left = deadline - now_ms();
        ssize_t n;
        int k;

        if (left <= 0)
            return -ETIMEDOUT;
        n = send(fd, c, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EPIPE)
            return -ECHILD;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        k = poll(pf, 2, (int)left);
        if (k < 0 && errno != EINTR)
            return -errno;
        if (k > 0 && pf[1].revents && !(pf[0].revents & POLLOUT))
            return -ECHILD;
    }
    return 0;
}

/* clone3() QEMU's child, jailed when b->jail.ns; 0 or -errno (nothing started). *ret_go_fd:
 * one byte on it lets the child exec QEMU (child_main). */
static int clone_qemu(struct mv_bottle *b, int *ret_err_fd, int *ret_go_fd)
{
    struct clone_args a;
    int err_p[2] = { -1, -1 }, sync_p[2] = { -1, -1 }, pidfd = -1, r;
    long pid;

    /* a socket, not a pipe: send(MSG_NOSIGNAL) to a child that died is EPIPE, not SIGPIPE */
    if (pipe2(err_p, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_p) < 0) {
        r = -errno;
        goto out;
    }
    memset(&a, 0, sizeof(a));
    a.flags = CLONE_PIDFD | jail_clone_flags(&b->jail);
    a.pidfd = (uint64_t)(uintptr_t)&pidfd;
    a.exit_signal = SIGCHLD;
    if (b->cg.fd >= 0) {
        a.flags |= CLONE_INTO_CGROUP;
        a.cgroup = (uint64_t)b->cg.fd;
    }
    fflush(NULL);
    pid = syscall(SYS_clone3, &a, sizeof(a));
    if (pid == 0) {
        close(err_p[0]);
        close(sync_p[1]);
        child_main(b, sync_p[0], err_p[1]);
    }
    if (pid < 0) {
        r = -errno;
        goto out;
    }
    b->pid = (pid_t)pid;
    b->pidfd = pidfd;
    if (b->jail.ns) {
        r = jail_map_ids(&b->jail, b->pid);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "microvm backend: writing QEMU's uid and gid maps");
            (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
            goto out;
        }
        if (RETRY_EINTR(send(sync_p[1], "x", 1, MSG_NOSIGNAL)) != 1) {
            r = -errno;
            goto out;
        }
    }
    *ret_err_fd = err_p[0];
    err_p[0] = -1;
    *ret_go_fd = sync_p[1];
    sync_p[1] = -1;
    r = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (err_p[i] >= 0)
            close(err_p[i]);
        if (sync_p[i] >= 0)
            close(sync_p[i]);
    }
    return r;
}

/* Ends a QEMU that start() gave up on (or that ended) and forgets it. */
static void qemu_reap(struct mv_bottle *b)
{
    if (b->pid <= 0)
        return;
    (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
    (void)RETRY_EINTR(waitpid(b->pid, NULL, 0));
    close(b->pidfd);
    b->pidfd = -1;
    b->pid = -1;
}

/* The child's report: EOF (it exec'ed QEMU) or why it could not. */
static int child_report(struct mv_bottle *b, int err_fd)
{
    struct child_err ce;
    ssize_t n = RETRY_EINTR(read(err_fd, &ce, sizeof(ce)));

    if (n != (ssize_t)sizeof(ce))
        return 0;
    ce.step[sizeof(ce.step) - 1] = '\0';
    return log_errno(LOG_LVL_ERROR, -ce.e, "microvm backend: starting %s as uid %u (%s)",
                     b->argv_now[0], (unsigned)b->qemu_uid, ce.step);
}

/* Empties and removes tpl_dir (what make_template puts there; under the snapshot lock). */
static void tpl_dir_clear(struct mv_bottle *b)
{
    static const char *const names[] = { "initramfs.cpio", "ctl.sock", "chan.sock", "qmp.sock" };
    int dfd = open(b->tpl_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (dfd < 0)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        (void)unlinkat(dfd, names[i], 0);
    (void)unlinkat(dfd, "root", AT_REMOVEDIR);
    close(dfd);
    (void)rmdir(b->tpl_dir);
}

/*
 * The template's own jail in b->jail (the bottle's is saved in saved): QEMU as the
 * supervisor's own user, never the bottle's (who could otherwise trace it, write its memory
 * or signal it), its root and run directory in tpl_dir, no share bound. The template's guest
 * runs nothing but the kernel and bottle-init up to its wait: no input of anyone's.
 */
static int tpl_jail(struct mv_bottle *b, struct microvm_jail *saved)
{
    memcpy(saved, &b->jail, sizeof(*saved));
    b->jail.uid = geteuid();
    b->jail.gid = getegid();
    b->jail.setgroups = geteuid() == 0;
    b->jail.run_dir = b->tpl_dir;
    b->jail.n_shares = 0;
    if (str_printf(b->jail.root, sizeof(b->jail.root), "%s/root", b->tpl_dir) < 0)
        return -ENAMETOOLONG;
    if (mkdir(b->jail.root, 0755) < 0)
        return -errno;
    return jail_build_filter(&b->jail);
}

/*
 * Makes this bottle's template (snapshot.h): under the lock (another bottle may be making the
 * same one: then it is used), boots QEMU with the template's argv, its own sockets and an
 * initramfs holding bottle-init alone, waits for bottle-init's "template" on bottle.ctl (it
 * has mounted /proc, /sys and /dev and opened its ports, nothing of a bottle), and saves the
 * VM over QMP into a temporary file that is then renamed into place. Its files and sockets are
 * in tpl_dir, the supervisor's alone: the run directory belongs to the bottle's user, who
 * could otherwise swap the initramfs or connect to the sockets first and be handed the
 * template's file over the fake QMP (tests/integration/test-redteam-snapshot.sh). QEMU runs
 * jailed as the supervisor's user (tpl_jail), in the bottle's cgroup. Returns the template
 * opened (snapshot_open) or -errno, with why filled.
 */
static int make_template(struct mv_bottle *b, char *why, size_t why_size)
{
    const char *paths[3] = { b->tpl_ctl, b->tpl_chan, b->qmp_path };
    int l[3] = { -1, -1, -1 }, c[3] = { -1, -1, -1 };
    int lock, err_fd = -1, go_fd = -1, state = -1, fd, r;
    char tmp[PATH_MAX] = "";
    long long t0 = now_ms();

    struct microvm_jail *saved = NULL;
    struct stat st;

    lock = snapshot_lock(b->snap_dir, SNAPSHOT_LOCK_MS);
    if (lock < 0) {
        if (lock == -ETIMEDOUT)
            (void)str_printf(why, why_size, "another bottle has been making one for %d s in %s",
                             SNAPSHOT_LOCK_MS / 1000, b->snap_dir);
        else
            (void)str_printf(why, why_size, "locking %s: %s", b->snap_dir, strerror(-lock));
        return lock;
    }
    fd = snapshot_open(b->snap_dir, b->snap_key);
    if (fd != -ENOENT) { /* made by another bottle while we waited, or one to leave alone */
        close(lock);
        if (fd < 0)
            (void)str_printf(why, why_size, "%s", strerror(-fd));
        return fd;
    }
    log_info("microvm backend: making a start-up snapshot of the guest for this QEMU, kernel and "
             "bot-bottle build (once; a few seconds), in %s",
             b->snap_dir);
    /* what a maker killed meanwhile left; then ours, private */
    tpl_dir_clear(b);
    if (mkdir(b->tpl_dir, 0700) < 0 || lstat(b->tpl_dir, &st) < 0) {
        r = -errno;
        (void)str_printf(why, why_size, "creating %s: %s", b->tpl_dir, strerror(-r));
        goto out;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
        r = -EPERM;
        (void)str_printf(why, why_size, "%s is not a private directory of ours", b->tpl_dir);
        goto out;
    }
    r = initramfs_write(b->init, b->tpl_initrd);
    if (r < 0) {
        (void)str_printf(why, why_size, "writing %s: %s", b->tpl_initrd, strerror(-r));
        goto out;
    }
    for (size_t i = 0; i < 3; i++) {
        (void)unlink(paths[i]);
        l[i] = listen_unix(paths[i], geteuid(), getegid());
        if (l[i] < 0) {
            r = l[i];
            (void)str_printf(why, why_size, "listening on %s: %s", paths[i], strerror(-r));
            goto out;
        }
    }
    saved = xmalloc(sizeof(*saved));
    r = tpl_jail(b, saved);
    if (r < 0) {
        memcpy(&b->jail, saved, sizeof(b->jail));
        (void)str_printf(why, why_size, "QEMU's jail for the template: %s", strerror(-r));
        goto out;
    }
    b->argv_now = b->tpl_argv;
    r = clone_qemu(b, &err_fd, &go_fd);
    memcpy(&b->jail, saved, sizeof(b->jail)); /* the child has its own copy */
    if (r < 0) {
        (void)str_printf(why, why_size, "starting QEMU: %s", strerror(-r));
        goto out;
    }
    if (RETRY_EINTR(send(go_fd, "g", 1, MSG_NOSIGNAL)) != 1 || child_report(b, err_fd) < 0) {
        r = -ECHILD;
        (void)str_printf(why, why_size, "QEMU did not start");
        goto out;
    }
    r = accept_all(b->pidfd, l, c, 3);
    if (r >= 0)
        r = wait_line(c[0], b->pidfd, "template\n", SNAPSHOT_BOOT_MS);
    if (r < 0) {
        (void)str_printf(why, why_size, "the template's guest did not come up (%s)",
                         r == -ECHILD ? "QEMU exited" : strerror(-r));
        goto out;
    }
    state = snapshot_create_tmp(b->snap_dir, b->snap_key, tmp, sizeof(tmp));
    if (state < 0) {
        r = state;
        (void)str_printf(why, why_size, "creating a file in %s: %s", b->snap_dir, strerror(-r));
        tmp[0] = '\0';
        goto out;
    }
    r = snapshot_save(c[2], state, SNAPSHOT_SAVE_MS, why, why_size);
    if (r < 0)
        goto out;
    /* QEMU quits once it is saved */
    {
        struct pollfd p = { .fd = b->pidfd, .events = POLLIN };
        (void)RETRY_EINTR(poll(&p, 1, 5000));
    }
    r = snapshot_commit(state, tmp, b->snap_dir, b->snap_key);
    if (r < 0) {
        (void)str_printf(why, why_size, "keeping %s: %s", tmp, strerror(-r));
        goto out;
    }
    tmp[0] = '\0';
    log_debug("microvm backend: start-up snapshot made in %lld ms", now_ms() - t0);
out:
    qemu_reap(b);
    b->argv_now = b->qargv;
    if (err_fd >= 0)
        close(err_fd);
    if (go_fd >= 0)
        close(go_fd);
    for (size_t i = 0; i < 3; i++) {
        if (c[i] >= 0)
            close(c[i]);
        if (l[i] >= 0)
            close(l[i]);
    }
    tpl_dir_clear(b);
    free(saved);
    if (state >= 0)
        close(state);
    if (tmp[0])
        (void)unlink(tmp);
    fd = r < 0 ? r : snapshot_open(b->snap_dir, b->snap_key);
    if (r >= 0 && fd < 0)
        (void)str_printf(why, why_size, "opening it: %s", strerror(-fd));
    close(lock);
    return fd;
}

/*
 * This bottle's template (made first when there is none) on snap_fd, and the restore's argv
 * to exec. When there is no usable template, says why, once, and the bottle boots.
 */
static void snap_ready(struct mv_bottle *b)
{
    char why[512] = "";
    int fd = snapshot_open(b->snap_dir, b->snap_key);

    if (fd == -ENOENT) {
        /* (its lines would land on the progress line: drawn again after) */
        mv_progress_end(b);
        fd = make_template(b, why, sizeof(why));
        mv_progress_begin(b);
    } else if (fd < 0)
        (void)str_printf(why, sizeof(why), "%s", strerror(-fd));
    if (fd >= 0 && dup3(fd, b->snap_fd, O_CLOEXEC) < 0) {
        (void)str_printf(why, sizeof(why), "dup3: %s", strerror(errno));
        close(fd);
        fd = -EBADF;
    }
    if (fd < 0) {
        log_warn("microvm backend: no start-up snapshot (%s%s): booting the guest kernel instead, "
                 "about 1 s slower under TCG; set [microvm] snapshot = off to stop trying",
                 fd == -EPERM ? "a template that is not ours alone, left as it is: " : "", why);
        return;
    }
    close(fd);
    if (str_printf(b->snap_path, sizeof(b->snap_path), "%s/%s.vmstate", b->snap_dir, b->snap_key) <
        0) {
        log_warn("microvm backend: no start-up snapshot (%s: name too long); booting the guest "
                 "kernel instead",
                 b->snap_dir);
        return;
    }
    /* used now: the cache keeps the most recently used templates */
    (void)futimens(b->snap_fd, NULL);
    b->argv_now = b->rst_argv;
}

/*
 * The restored guest's bottle (guest/init.c, vm_template_wait): "restore SEC NSEC SEED LEN",
 * the bundle of its files, then its "restored". 0, or -ECHILD (QEMU exited: it could not
 * restore the template), -ETIMEDOUT, -EPROTO or -errno.
 */
static int snap_handshake(struct mv_bottle *b, const struct buf *bundle)
{
    uint8_t seed[SNAPSHOT_SEED_BYTES];
    char line[96 + 2 * SNAPSHOT_SEED_BYTES], *hex;
    struct timespec ts;
    int n, r;

    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return -errno;
    clock_gettime(CLOCK_REALTIME, &ts);
    n = snprintf(line, sizeof(line), "restore %lld %ld ", (long long)ts.tv_sec, ts.tv_nsec);
    hex = line + n;
    for (size_t i = 0; i < sizeof(seed); i++)
        (void)snprintf(hex + 2 * i, 3, "%02x", seed[i]);
    n += 2 * (int)sizeof(seed);
    n += snprintf(line + n, sizeof(line) - (size_t)n, " %zu\n", bundle->len);
    explicit_bzero(seed, sizeof(seed));
    r = send_all(b->ctl_c, b->pidfd, line, (size_t)n, SNAPSHOT_RESTORE_MS);
    explicit_bzero(line, sizeof(line));
    if (r >= 0)
        r = send_all(b->ctl_c, b->pidfd, bundle->p ? bundle->p : "", bundle->len,
                     SNAPSHOT_RESTORE_MS);
    if (r >= 0)
        r = wait_line(b->ctl_c, b->pidfd, "restored\n", SNAPSHOT_RESTORE_MS);
    return r;
}

/* The bottle's files for a restored guest (what write_initramfs puts in a cold boot's). */
static int build_bundle(struct mv_bottle *b, struct buf *out)
{
    struct initramfs_bottle ib = { .spec = b->spec_enc.p,
                                   .spec_len = b->spec_enc.len,
                                   .host_etc = "/etc" };
    void *bpf = NULL;
    int r = guest_seccomp_export(EPERM, EAFNOSUPPORT, &bpf, &ib.seccomp_len);

    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: building the seccomp filter");
    ib.seccomp = bpf;
    r = initramfs_build_bundle(&ib, out);
    free(bpf);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: the bottle's files for the guest");
    return 0;
}

/*
 * Whether QEMU, after a failed restore, ended by a signal from outside (SIGKILL, SIGTERM,
 * SIGINT, SIGHUP: its user, the OOM killer) rather than by itself (an exit, or a crash, which
 * a damaged template can cause). Waits up to a second for it to end; it is not reaped here.
 */
static bool qemu_killed(struct mv_bottle *b)
{
    struct pollfd p = { .fd = b->pidfd, .events = POLLIN };
    siginfo_t si = { 0 };

    if (b->pid <= 0 || RETRY_EINTR(poll(&p, 1, 1000)) <= 0)
        return false;
    if (waitid((idtype_t)P_PIDFD, (id_t)b->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
        si.si_pid == 0)
        return false;
    return si.si_code == CLD_KILLED && (si.si_status == SIGKILL || si.si_status == SIGTERM ||
                                        si.si_status == SIGINT || si.si_status == SIGHUP);
}

/*
 * After a restore failed: the cold boot's listeners again (QEMU's connections are gone), and
 * the shares opened again at the same fd numbers (the argv names them): the jail moved each
 * detached copy into the failed QEMU's mount namespace, and one can be attached only once.
 */
static int relisten(struct mv_bottle *b)
{
    for (size_t i = 0; i < b->n_share_fd; i++) {
        const char *src = i == 0 ? b->spec.workspace : b->spec.mounts[i - 1].src;
        int fd = share_open(src), r = fd < 0 ? fd : 0;

        if (r >= 0 && geteuid() == 0)
            r = jail_share(&fd, i > 0 && b->spec.mounts[i - 1].ro);
        if (r >= 0 && dup3(fd, b->share_fd[i], O_CLOEXEC) < 0)
            r = -errno;
        if (fd >= 0)
            close(fd);
        if (r < 0)
            return r;
    }
    if (b->ctl_c >= 0)
        close(b->ctl_c);
    b->ctl_c = -1;
    b->ctl_len = 0;
    (void)unlink(b->ctl_path);
    (void)unlink(b->chan_path);
    b->ctl_l = listen_unix(b->ctl_path, b->qemu_uid, b->qemu_gid);
    if (b->ctl_l < 0)
        return b->ctl_l;
    b->chan_l = listen_unix(b->chan_path, b->qemu_uid, b->qemu_gid);
    return b->chan_l < 0 ? b->chan_l : 0;
}

static int mv_start(struct bottle *bb, struct backend_started *ret)
{
    struct mv_bottle *b = mv_of(bb);
    struct buf bundle = BUF_INIT(INITRAMFS_MAX);
    int err_fd = -1, go_fd = -1, chan = -1, r;
    bool tpl_fault;

    /* Said once per run, where the user sees it: TCG is much slower than KVM. */
    if (b->accel == MICROVM_ACCEL_TCG && b->accel_auto && access("/dev/kvm", F_OK) == 0)
        log_warn("%s", b->probe.reason);
    if (b->cg.version == 1 && (r = cgroup_open_tasks(&b->cg, b->cg_tasks)) < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: opening the bottle's cgroups");
    mv_progress_begin(b);
    if (b->snap)
        snap_ready(b);
again:
    r = clone_qemu(b, &err_fd, &go_fd);
    /* Without user namespaces (an unprivileged invoker on a host that forbids them): QEMU
     * keeps the seccomp filter, no_new_privs and the limits, not the namespaces. */
    if (r < 0 && b->pid < 0 && b->jail.ns && geteuid() != 0 &&
        (r == -EPERM || r == -EINVAL || r == -ENOSPC || r == -EUSERS)) {
        log_warn("microvm backend: user namespaces are not available (%s): QEMU runs without "
                 "its namespaces, with only its seccomp filter; allow them "
                 "(sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone) to jail it",
                 strerror(-r));
        b->jail.ns = false;
        r = clone_qemu(b, &err_fd, &go_fd);
    }
    if (r < 0) {
        char why[BACKEND_REASON_MAX];
        if (b->pid >= 0)
            goto fail;
        cgroup_close_tasks(b->cg_tasks);
        buf_done(&bundle);
        /* Say why, as the probe would have (a chroot, a container's policy) */
        if (b->jail.ns && backend_try_namespaces(jail_clone_flags(&b->jail), "QEMU's jail", why,
                                                 sizeof(why)) < 0) {
            log_error("microvm backend: %s", why);
            return r;
        }
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: starting QEMU (clone3)");
    }
    /* While the child sets up QEMU's jail (namespaces, its root, the filter): the initramfs
     * it boots, or the files a restored guest gets; then it may exec QEMU. */
    r = b->argv_now == b->rst_argv ? (bundle.len ? 0 : build_bundle(b, &bundle))
                                   : write_initramfs(b);
    if (r >= 0 && RETRY_EINTR(send(go_fd, "g", 1, MSG_NOSIGNAL)) != 1 && errno != EPIPE &&
        errno != ECONNRESET)
        r = log_errno(LOG_LVL_ERROR, -errno, "microvm backend: starting QEMU");
    close(go_fd);
    go_fd = -1;
    if (r >= 0)
        r = child_report(b, err_fd);
    close(err_fd);
    err_fd = -1;
    if (r < 0)
        goto fail;
    r = accept_qemu(b, &chan);
    if (r < 0 && b->argv_now != b->rst_argv) {
        log_errno(LOG_LVL_ERROR, r,
                  r == -ECHILD ? "microvm backend: QEMU exited before connecting to its sockets "
                                 "in %s (can its user read the guest kernel and the shares?)"
                               : "microvm backend: QEMU did not connect to its sockets in %s",
                  b->dir);
        goto fail;
    }
    /* a restore that failed before QEMU connected is not the template's doing (QEMU reads it
     * only after that): the bottle boots, the template stays */
    tpl_fault = r >= 0;
    if (r >= 0 && b->argv_now == b->rst_argv)
        r = snap_handshake(b, &bundle);
    if (r < 0 && b->argv_now == b->rst_argv) {
        /* A template this QEMU cannot restore (a changed QEMU or kernel the key missed, a
         * damaged file): removed, so that the next bottle makes a new one; this one boots.
         * Not when QEMU was killed (qemu_killed, which also waits for it to end: it may close
         * its sockets before it has written its message and exited): its uid is the bottle's
         * user's, who could otherwise remove every user's template at will. */
        bool gone =
            !qemu_killed(b) && tpl_fault && snapshot_discard(b->snap_dir, b->snap_key, b->snap_fd);
        if (chan >= 0)
            close(chan);
        chan = -1;
        qemu_reap(b);
        log_warn("microvm backend: QEMU could not start from the start-up snapshot %s/%s.vmstate "
                 "(%s)%s; booting the guest kernel instead",
                 b->snap_dir, b->snap_key,
                 r == -ECHILD ? "QEMU exited; its own message, on stderr, says why" : strerror(-r),
                 gone ? "; removed it, the next bottle makes a new one" : "");
        b->argv_now = b->qargv;
        r = relisten(b);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "microvm backend: listening in %s", b->dir);
            goto fail;
        }
        goto again;
    }
    buf_done(&bundle);
    cgroup_close_tasks(b->cg_tasks);
    /* bottle-init waits for this before it runs anything (guest/init.c, vm_read_mode). */
    {
        const char *mode = b->console ? "console\n" : "streams\n";
        if (RETRY_EINTR(send(b->ctl_c, mode, strlen(mode), MSG_NOSIGNAL)) < 0) {
            close(chan);
            r = log_errno(LOG_LVL_ERROR, -errno, "microvm backend: writing to bottle.ctl");
            goto fail_closed;
        }
    }
    ret->pid = b->pid;
    ret->pidfd = b->pidfd;
    ret->channel_fd = chan;
    return 0;
fail:
    if (chan >= 0)
        close(chan);
    if (err_fd >= 0)
        close(err_fd);
    if (go_fd >= 0)
        close(go_fd);
    buf_done(&bundle);
    cgroup_close_tasks(b->cg_tasks);
fail_closed:
    mv_progress_end(b);
    if (b->pid > 0) {
        (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
        (void)RETRY_EINTR(waitpid(b->pid, NULL, 0));
    }
    b->reaped = true;
    b->status = 125;
    return r;
}

/* ---- wait / stop / kill ---- */

/* The status the guest reported ("exit N\n" on bottle.ctl), or -1: what on_ctl_status read
 * already, then the rest (QEMU is gone: everything the guest wrote is in the socket). */
static int ctl_status(struct mv_bottle *b)
{
    uint64_t code;

    if (b->ctl_watched) {
        loop_del(b->loop, &b->ctl_src);
        b->ctl_watched = false;
    }
    if (b->ctl_c < 0)
        return -1;
    (void)ctl_read_line(b); /* (a "time" request nobody answered is taken off too) */
    b->ctl_line[b->ctl_len] = '\0';
    if (strncmp(b->ctl_line, "exit ", 5) != 0 || b->ctl_len < 7 ||
        b->ctl_line[b->ctl_len - 1] != '\n')
        return -1;
    b->ctl_line[b->ctl_len - 1] = '\0';
    if (str_to_u64_cstr(b->ctl_line + 5, 255, &code) < 0)
        return -1;
    return (int)code;
}

static int mv_wait(struct bottle *bb, int *ret_status)
{
    struct mv_bottle *b = mv_of(bb);
    siginfo_t si;

    if (b->pid <= 0)
        return -ECHILD;
    if (!b->reaped) {
        int code;

        int r = bb_pidfd_wait(b->pidfd, &si);

        mv_progress_end(b); /* the VM ended before the command started */

        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "microvm backend: waiting for QEMU");
        b->reaped = true;
        code = ctl_status(b);
        if (code < 0 && b->killed && si.si_code != CLD_EXITED) {
            code = 128 + si.si_status; /* as the namespace backend's SIGKILL to bottle-init */
        } else if (code < 0) {
            log_error("microvm backend: the VM ended without reporting the command's status "
                      "(QEMU %s %d)",
                      si.si_code == CLD_EXITED ? "exited with status" : "was killed by signal",
                      si.si_status);
            code = 125;
        }
        b->status = code;
    }
    *ret_status = b->status;
    return 0;
}

/* bottle-init reads "stop" on bottle.ctl and sends SIGTERM to the command. */
static int mv_request_stop(struct bottle *bb)
{
    struct mv_bottle *b = mv_of(bb);
    ssize_t n;

    if (b->pid <= 0 || b->reaped || b->ctl_c < 0)
        return 0;
    n = send(b->ctl_c, "stop\n", 5, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EPIPE && errno != ECONNRESET)
        return log_errno(LOG_LVL_ERROR, -errno, "microvm backend: asking the guest to stop");
    return 0;
}

static int mv_kill(struct bottle *bb)
{
    struct mv_bottle *b = mv_of(bb);
    int r;

    if (b->pid <= 0 || b->reaped)
        return 0;
    r = bb_pidfd_send_signal(b->pidfd, SIGKILL);
    if (r == -ESRCH)
        return 0;
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "microvm backend: killing QEMU (pid %d)", (int)b->pid);
    b->killed = true;
    return 0;
}

static void mv_destroy(struct bottle *bb)
{
    struct mv_bottle *b;

    if (!bb)
        return;
    b = mv_of(bb);
    if (b->pid > 0 && !b->reaped) {
        (void)bb_pidfd_send_signal(b->pidfd, SIGKILL);
        (void)RETRY_EINTR(waitpid(b->pid, NULL, 0));
        b->reaped = true;
    }
    mv_progress_end(b);
    if (b->ctl_watched)
        loop_del(b->loop, &b->ctl_src);
    session_close(&b->main);
    for (size_t i = 0; i < 3; i++)
        if (b->io[i] >= 0)
            close(b->io[i]);
    if (b->devnull >= 0)
        close(b->devnull);
    if (b->pidfd >= 0)
        close(b->pidfd);
    if (b->ctl_l >= 0)
        close(b->ctl_l);
    if (b->chan_l >= 0)
        close(b->chan_l);
    if (b->ctl_c >= 0)
        close(b->ctl_c);
    for (size_t i = 0; i < b->n_share_fd; i++)
        close(b->share_fd[i]);
    if (b->dir[0]) {
        (void)unlink(b->ctl_path);
        (void)unlink(b->chan_path);
        (void)unlink(b->initrd);
        if (b->jail.root[0])
            (void)rmdir(b->jail.root);
        if (b->dir_lock >= 0) {
            char lock[PATH_MAX + 8];
            if (str_printf(lock, sizeof(lock), "%s/lock", b->dir) == 0)
                (void)unlink(lock);
            close(b->dir_lock);
            b->dir_lock = -1;
        }
        if (rmdir(b->dir) < 0 && errno != ENOENT)
            log_errno(LOG_LVL_WARN, -errno, "microvm backend: removing %s", b->dir);
    }
    {
        const char *path = NULL;
        int r = cgroup_remove(&b->cg, &path);
        if (r < 0)
            log_errno(LOG_LVL_WARN, r, "removing cgroup %s", path);
    }
    cgroup_close_tasks(b->cg_tasks);
    microvm_argv_free(b->qargv);
    microvm_argv_free(b->tpl_argv);
    microvm_argv_free(b->rst_argv);
    if (b->snap_fd >= 0)
        close(b->snap_fd);
    bottle_spec_done(&b->spec);
    buf_done(&b->spec_enc);
    free(b);
}

const struct backend_ops backend_microvm_ops = {
    .name = "microvm",
    .summary = "QEMU microVM: its own guest kernel, no network device, 9p shares",
    .flags = BACKEND_HAS_CHANNEL,
    .probe = mv_probe,
    .create = mv_create,
    .start = mv_start,
    .wait = mv_wait,
    .request_stop = mv_request_stop,
    .kill = mv_kill,
    .destroy = mv_destroy,
    .attach = mv_attach,
    .resize = mv_resize,
    .exec = mv_exec,
    .exec_pidfd = mv_exec_pidfd,
    .exec_wait = mv_exec_wait,
    .exec_free = mv_exec_free,
    .exec_resize = mv_exec_resize,
    .exec_signal = mv_exec_signal,
};

void microvm_console_stdio(struct bottle *bb)
{
    mv_of(bb)->console = true;
}
