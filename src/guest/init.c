/*
 * bottle-init: PID 1 of a bottle (docs/bottle-init.md).
 *
 *   bottle-init --spec-fd N | --spec PATH
 *   /init                         (PID 1 with no arguments: a microVM's init, see below)
 *
 * Reads and validates the bottle spec, builds the root file system, brings up loopback with
 * the alias, starts the channel relay (A:3128 and A:53 carried over the channel), then runs
 * the command as the invoking user with no capabilities, no_new_privs and the seccomp
 * filter; reaps every child, forwards termination signals to the command and exits with its
 * status (126 not executable, 127 not found, 125 bottle-init itself failed).
 *
 * Statically linked, no NSS: it runs before the root it builds exists, and as a VM's init.
 *
 * As a microVM's init (docs/bottle-init.md, "microvm"): mounts /proc, /sys and devtmpfs,
 * takes the console for stdio, reads the spec from the initramfs (GUEST_VM_SPEC), opens the
 * virtio-serial ports by name, builds the root from 9p shares, and at the end reports the
 * command's status on the bottle.ctl port as "exit N\n" and reboots (which ends QEMU).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/securebits.h>
#include <sched.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <linux/random.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <dirent.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <grp.h>
#include <elf.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/str.h"
#include "guest/command.h"
#include "guest/netif.h"
#include "guest/rootfs.h"
#include "guest/seccomp-filter.h"
#include "guest/spec.h"
#include "guest/unpack.h"
#include "guest/vmsession.h"

#include "channel/relay.h"

#define EXIT_INIT_FAILED 125
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127

/* What the command's process reports through the CLOEXEC pipe when it does not reach exec. */
enum report_stage { REPORT_SETUP = 1, REPORT_EXEC = 2 };
struct report {
    int32_t stage;
    int32_t err; /* positive errno */
};

/*
 * bbtrace=1 on the kernel command line (the host sets it for BOT_BOTTLE_VM_TRACE=1, used by
 * bench/microvm-run.sh --trace): a VM's init writes "bb-trace STAGE MS" on the console at each
 * stage of its start, MS being the guest's CLOCK_BOOTTIME in milliseconds. bbtrace=2
 * (BOT_BOTTLE_VM_TRACE=2) adds finer marks (the root's steps, the netns, loopback). Each mark
 * is a console write that waits for QEMU (virtio-console): several ms under load, so the
 * finer marks make the traced run slower.
 */
static bool vm_trace, vm_trace_fine;
/* bbtemplate=1: a snapshot template (vm_template_wait); its network namespace made */
static bool vm_template, vm_own_netns;

static void vm_mark(const char *stage);

static void vm_mark_fine(const char *stage)
{
    if (vm_trace_fine)
        vm_mark(stage);
}

/* The marks are kept in memory and written out together (vm_trace_flush, before the exit
 * status): a console write per mark costs a round trip through QEMU, which the finer marks
 * would add to the stages they measure. */
static char vm_trace_buf[4096];
static size_t vm_trace_len;
/* --trace-fine: /proc/uptime, for the guest's idle time at a few marks */
static int vm_uptime_fd = -1;

static void vm_trace_flush(void)
{
    if (vm_trace_len)
        (void)!write(STDERR_FILENO, vm_trace_buf, vm_trace_len);
    vm_trace_len = 0;
}

static void vm_trace_put(const char *line)
{
    size_t n = strlen(line);

    if (vm_trace_len + n > sizeof(vm_trace_buf))
        vm_trace_flush();
    if (n <= sizeof(vm_trace_buf)) {
        memcpy(vm_trace_buf + vm_trace_len, line, n);
        vm_trace_len += n;
    }
}

static void vm_mark(const char *stage)
{
    struct timespec ts;
    char line[96];

    if (!vm_trace || clock_gettime(CLOCK_BOOTTIME, &ts) < 0 ||
        str_printf(line, sizeof(line), "bb-trace %s %lld.%03ld\n", stage,
                   (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                   (ts.tv_nsec / 1000) % 1000) < 0)
        return;
    vm_trace_put(line);
}

/* The guest's idle time so far (the vCPUs' total, /proc/uptime's second field): what of the
 * stages before it the guest spent waiting (for the host, or a timer) rather than running. */
static void vm_mark_idle(const char *stage)
{
    char b[64], line[96];
    const char *idle;
    ssize_t n;

    if (!vm_trace_fine || vm_uptime_fd < 0 || (n = pread(vm_uptime_fd, b, sizeof(b) - 1, 0)) <= 0)
        return;
    b[n] = '\0';
    idle = strchr(b, ' ');
    if (idle && str_printf(line, sizeof(line), "bb-idle %s %s", stage, idle + 1) == 0)
        vm_trace_put(line);
}

static const int forwarded_signals[] = { SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                         SIGUSR1, SIGUSR2, SIGWINCH };

/* PID 1 started with no arguments: a microVM's init. The spec must then say `rootfs 9p`. */
static bool is_vm;
/* VM only: the bottle.ctl port (the exit status goes there), or -1. */
static int ctl_fd = -1;
/* VM only: the host said "streams" first on bottle.ctl: the command's stdio (and `exec`) come
 * over the channel (vmsession.h), not the console. */
static bool vm_streams;
/* VM: the seccomp program the host built (GUEST_VM_SECCOMP), loaded as it is; NULL: built
 * here with libseccomp (the namespace backend, or an initramfs without it). */
static void *vm_bpf;
static size_t vm_bpf_len;
/* VM with a pids limit: cgroup.procs of the guest's "bottle" cgroup (every command joins it
 * before it drops its privileges), or -1. */
static int vm_cg_procs = -1;
/* ... and the cgroup's directory: commands are cloned into it (CLONE_INTO_CGROUP), which
 * spares the write to cgroup.procs (a migration waits for an RCU grace period: 13-16 ms of
 * the start-up under TCG). */
static int vm_cg_dir = -1;
/* The command's process was born in the bottle cgroup (no cgroup.procs write). */
static bool child_in_cgroup;

/* The virtio-serial port names (backend/microvm/qemu-args.h: MICROVM_PORT_CTL; the channel's
 * comes from the spec as /dev/virtio-ports/NAME, the path udev would create). */
#define VM_PORT_CTL "bottle.ctl"
#define VM_PORT_DIR "/dev/virtio-ports/"
/* How long the kernel may take to announce the console and the ports (TCG is slow). */
#define VM_PORT_WAIT_MS 10000
/* How long the host may take to say how stdio is carried (its first line on bottle.ctl). */
#define VM_MODE_WAIT_MS 30000
/* How long bottle-init waits for the host's answer to its "time" request on bottle.ctl. */
#define VM_TIME_WAIT_MS 2000
/* polling step while waiting for a port or the console (each 10 ms step showed in start-up) */
#define VM_PORT_POLL_MS 2

struct init_state {
    struct loop *loop;
    pid_t main_pid;
    int exit_code;
    bool main_exited;
    struct channel_guest_relay *relay;
    struct loop_source ctl_src; /* VM: requests from the host on bottle.ctl */
    char ctl_buf[64];
    size_t ctl_len;
    /* VM with streams: the sessions, and what every command is run with */
    struct vms *vms;
    const struct bottle_spec *spec;
    char **envp;
    scmp_filter_ctx ctx;
    struct loop_timer start_timer; /* the host must open the command's streams in time */
};

/* ---- the command's process (after fork; never returns) ---- */

static _noreturn_ void child_fail(int report_fd, enum report_stage stage, int err)
{
    struct report rep = { .stage = stage, .err = err < 0 ? -err : err };

    (void)!write(report_fd, &rep, sizeof(rep));
    _exit(stage == REPORT_EXEC ? EXIT_NOT_FOUND : EXIT_INIT_FAILED);
}

/* The command as the spec says, or (a VM's exec) argv, cwd, tty given by the host. */
struct command {
    char *const *argv;
    char **envp;
    const char *cwd;
    bool tty;
    const int *stdio; /* NULL: inherited 0-2 */
};

static _noreturn_ void run_command(const struct bottle_spec *s, const struct command *c,
                                   scmp_filter_ctx ctx, int report_fd)
{
    sigset_t none;
    int r;

    /* Until execve we hold bottle-init's descriptors (the channel to the host, other
     * sessions' terminals): not dumpable, so no process of the bottle may ptrace us or copy
     * them with pidfd_getfd once our capabilities are gone. execve makes the command dumpable
     * again, as any process of the bottle. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        child_fail(report_fd, REPORT_SETUP, errno);
    /* bottle-init blocked these for its signalfd and ignores SIGPIPE: undo both. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (c->stdio) {
        /* The session's streams (or its pty slave) become 0-2 (dup2 clears close-on-exec). */
        int moved[3];
        for (int i = 0; i < 3; i++)
            if ((moved[i] = fcntl(c->stdio[i], F_DUPFD_CLOEXEC, 10)) < 0)
                child_fail(report_fd, REPORT_SETUP, errno);
        for (int i = 0; i < 3; i++)
            if (dup2(moved[i], i) < 0)
                child_fail(report_fd, REPORT_SETUP, errno);
    } else if (is_vm && !c->tty) {
        /* Console mode (a test driver without streams): stdout and stderr are the console,
         * stdin is /dev/null. */
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
            child_fail(report_fd, REPORT_SETUP, errno);
        close(fd);
    }
    /* A session of its own; with a terminal, make it the controlling one (job control). */
    if (setsid() < 0)
        child_fail(report_fd, REPORT_SETUP, errno);
    if (c->tty && isatty(STDIN_FILENO))
        (void)ioctl(STDIN_FILENO, TIOCSCTTY, 0);
    /* Only 0-2 (and the report pipe, closed by exec) may reach the command. */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0 && errno != ENOSYS)
        child_fail(report_fd, REPORT_SETUP, errno);
    if (vm_cg_procs >= 0 && !child_in_cgroup && write(vm_cg_procs, "0", 1) != 1)
        child_fail(report_fd, REPORT_SETUP, errno);
    /* ... and closed now, not at execve (the report pipe: ours, closed by exec) */
    if (report_fd > 3)
        (void)syscall(SYS_close_range, 3, (unsigned)report_fd - 1, 0);
    (void)syscall(SYS_close_range, (unsigned)report_fd + 1, ~0U, 0);
    r = guest_drop_privileges(s->uid, s->gid);
    if (r < 0)
        child_fail(report_fd, REPORT_SETUP, r);
    if (chdir(c->cwd ? c->cwd : s->workspace) < 0)
        child_fail(report_fd, REPORT_SETUP, errno);
    /* Last: after this, mount, setns and friends fail with EPERM. */
    r = vm_bpf ? guest_seccomp_load_bpf(vm_bpf, vm_bpf_len) : seccomp_load(ctx);
    if (r < 0)
        child_fail(report_fd, REPORT_SETUP, r);
    r = guest_exec_command(c->argv, c->envp);
    child_fail(report_fd, REPORT_EXEC, r);
}

/* Forks the command; returns its pid, or -(125|126|127) when it never ran, the reason said
 * on err_fd (-1: our log). */
static pid_t spawn_command(const struct bottle_spec *s, const struct command *c,
                           scmp_filter_ctx ctx, int err_fd)
{
    struct report rep;
    int report[2];
    pid_t pid;
    ssize_t n;

    if (pipe2(report, O_CLOEXEC) < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "pipe");
        return -EXIT_INIT_FAILED;
    }
    pid = -1;
    if (vm_cg_dir >= 0) {
        struct clone_args a = { .flags = CLONE_INTO_CGROUP,
                                .exit_signal = SIGCHLD,
                                .cgroup = (uint64_t)vm_cg_dir };
        pid = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
        if (pid == 0)
            child_in_cgroup = true;
    }
    if (pid < 0)
        pid = fork(); /* (the child then joins the cgroup itself) */
    if (pid < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "fork");
        close(report[0]);
        close(report[1]);
        return -EXIT_INIT_FAILED;
    }
    if (pid == 0) {
        close(report[0]);
        run_command(s, c, ctx, report[1]);
    }
    close(report[1]);
    /* EOF means exec succeeded (the pipe is close-on-exec). */
    n = RETRY_EINTR(read(report[0], &rep, sizeof(rep)));
    close(report[0]);
    if (n != (ssize_t)sizeof(rep))
        return pid;
    {
        char msg[512];
        if (rep.stage == REPORT_EXEC && rep.err == ENOENT && !strchr(c->argv[0], '/'))
            (void)str_printf(msg, sizeof(msg), "%s: command not found", c->argv[0]);
        else if (rep.stage == REPORT_EXEC)
            (void)str_printf(msg, sizeof(msg), "%s: %s", c->argv[0], strerror(rep.err));
        else
            (void)str_printf(msg, sizeof(msg), "setting up the command failed: %s",
                             strerror(rep.err));
        if (err_fd < 0) {
            log_error("%s", msg);
        } else {
            char line[600];
            if (str_printf(line, sizeof(line), "bottle-init: error: %s\n", msg) == 0)
                (void)!write(err_fd, line, strlen(line));
        }
    }
    /* the child exits at once; SIGCHLD reaps it (its status is not the command's) */
    return rep.stage != REPORT_EXEC ? -EXIT_INIT_FAILED
           : rep.err == ENOENT      ? -EXIT_NOT_FOUND
                                    : -EXIT_NOT_EXECUTABLE;
}

/* ---- PID 1 ---- */

static void on_signal(struct loop *l, int signo, void *userdata)
{
    struct init_state *st = userdata;

    if (signo != SIGCHLD) {
        if (st->main_pid > 0 && !st->main_exited)
            kill(st->main_pid, signo);
        return;
    }
    /* Reap everything: orphans of the command are re-parented to us. */
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        if (pid == st->main_pid)
            vm_mark("reaped");
        if (st->vms && vms_reaped(st->vms, pid, status)) {
            if (pid == st->main_pid)
                st->main_exited = true; /* vm_main_done quits once the output is across */
            continue;
        }
        if (pid == st->main_pid) {
            st->main_exited = true;
            if (WIFEXITED(status))
                st->exit_code = WEXITSTATUS(status);
            else if (WIFSIGNALED(status))
                st->exit_code = 128 + WTERMSIG(status);
            else
                st->exit_code = EXIT_INIT_FAILED;
            loop_quit(l, st->exit_code);
        }
    }
}

static void on_channel_dead(void *userdata, int err)
{
    struct init_state *st = userdata;

    /* Fail closed: the bottle has no network without its channel; stop the command so the
     * user sees it rather than an agent retrying forever. */
    if (err == -EPROTONOSUPPORT)
        log_error("the host speaks channel protocol v%u, this bottle-init v%u: they must come "
                  "from the same bot-bottle build (reinstall bot-bottle); stopping the bottle",
                  st->relay ? mux_peer_version(channel_guest_relay_mux(st->relay)) : 0,
                  (unsigned)CHANNEL_VERSION);
    else
        log_errno(LOG_LVL_ERROR, err, "the channel to the host died; stopping the bottle");
    if (st->main_pid > 0 && !st->main_exited)
        kill(st->main_pid, SIGTERM);
}

/*
 * VM: a line from the host on bottle.ctl. "stop" asks the command to end (SIGTERM, as the
 * namespace backend's SIGTERM to bottle-init); anything else is ignored. EOF: the host end
 * went away; the channel's death handles that.
 */
static void on_ctl(struct loop_source *src, uint32_t events)
{
    struct init_state *st = src->userdata;
    ssize_t n = read(ctl_fd, st->ctl_buf + st->ctl_len, sizeof(st->ctl_buf) - 1 - st->ctl_len);
    char *nl;

    (void)events;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        loop_del(st->loop, src);
        return;
    }
    st->ctl_len += (size_t)n;
    st->ctl_buf[st->ctl_len] = '\0';
    while ((nl = strchr(st->ctl_buf, '\n')) != NULL) {
        *nl = '\0';
        if (strcmp(st->ctl_buf, "stop") == 0 && st->main_pid > 0 && !st->main_exited)
            kill(st->main_pid, SIGTERM);
        else if (strcmp(st->ctl_buf, "stop") == 0 && st->main_pid <= 0 && !st->main_exited)
            loop_quit(st->loop, st->exit_code = 128 + SIGTERM); /* never started */
        st->ctl_len -= (size_t)(nl + 1 - st->ctl_buf);
        memmove(st->ctl_buf, nl + 1, st->ctl_len + 1);
    }
    if (st->ctl_len == sizeof(st->ctl_buf) - 1)
        st->ctl_len = 0; /* a line too long for any request: dropped */
}

static int on_open_stream(void *userdata, enum channel_kind kind)
{
    struct init_state *st = userdata;

    return vms_open_stream(st->vms, (int)kind);
}

/* VM with streams: a session's command (session 0: the spec's). */
static pid_t vm_spawn(void *ud, const struct vms_spawn *req)
{
    struct init_state *st = ud;
    struct command c = { .argv = st->spec->argv,
                         .envp = st->envp,
                         .cwd = req->cwd,
                         .tty = req->tty,
                         .stdio = req->stdio };
    char **merged = NULL;
    pid_t pid;

    if (req->id == 0 && (st->main_pid > 0 || st->main_exited))
        return -EXIT_INIT_FAILED; /* one bottle command */
    if (req->argv)
        c.argv = req->argv;
    if (req->env && req->env[0]) {
        size_t n = 0, m = 0, k;
        while (st->envp[n])
            n++;
        while (req->env[m])
            m++;
        merged = calloc(n + m + 1, sizeof(*merged));
        if (!merged)
            return -EXIT_INIT_FAILED;
        /* the bottle's environment, each name the request sets replaced */
        for (k = 0; k < n; k++) {
            size_t len = strcspn(st->envp[k], "=");
            bool over = false;
            for (size_t j = 0; j < m && !over; j++)
                over = strncmp(req->env[j], st->envp[k], len + 1) == 0;
            merged[k] = over ? NULL : st->envp[k];
        }
        {
            size_t w = 0;
            for (k = 0; k < n; k++)
                if (merged[k])
                    merged[w++] = merged[k];
            for (size_t j = 0; j < m; j++)
                merged[w++] = req->env[j];
            merged[w] = NULL;
        }
        c.envp = merged;
    }
    if (req->id == 0) {
        vm_mark("spawn");
        vm_mark_idle("spawn");
    }
    pid = spawn_command(st->spec, &c, st->ctx, req->stdio[2]);
    free(merged);
    if (req->id == 0) {
        vm_mark("exec");
        vm_mark_idle("exec");
        if (pid > 0)
            st->main_pid = pid;
        else
            st->main_exited = true;
    }
    return pid;
}

/* How long the host may take to open the bottle command's streams after the relay started. */
#define VM_STREAMS_WAIT_MS 60000

static void on_start_timer(struct loop_timer *t)
{
    struct init_state *st = t->userdata;

    if (st->main_pid > 0 || st->main_exited)
        return;
    log_error("the host did not open the command's streams within %d s; stopping the bottle",
              VM_STREAMS_WAIT_MS / 1000);
    st->main_exited = true;
    st->exit_code = EXIT_INIT_FAILED;
    loop_quit(st->loop, EXIT_INIT_FAILED);
}

static void vm_main_done(void *ud, int status)
{
    struct init_state *st = ud;

    vm_mark("main-done");
    st->exit_code = status;
    loop_quit(st->loop, status);
}

static int start_relay(struct init_state *st, const struct bottle_spec *s, int vm_chan_fd)
{
    struct channel_guest_config cfg;
    char alias[INET_ADDRSTRLEN];
    int fd, r;

    if (vm_chan_fd >= 0) {
        fd = vm_chan_fd; /* opened before the root was built (no /sys in the bottle) */
    } else if (strncmp(s->channel, "fd:", 3) == 0) {
        uint64_t n;
        r = str_to_u64_cstr(s->channel + 3, INT_MAX, &n);
        if (r < 0)
            return r;
        fd = (int)n;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            return -errno;
    } else {
        fd = open(s->channel, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
    }
    if (!inet_ntop(AF_INET, &s->alias, alias, sizeof(alias)))
        return -EINVAL;
    r = channel_guest_config_init(&cfg, alias);
    if (r < 0) {
        close(fd);
        return r;
    }
    cfg.dead = on_channel_dead;
    cfg.userdata = st;
    if (st->vms)
        cfg.open_stream = on_open_stream;
    {
        /* The namespace backend may give us a hand-off socket to the daemon. */
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(BOTTLE_HANDOFF_FD, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
            type == SOCK_SEQPACKET && fcntl(BOTTLE_HANDOFF_FD, F_SETFD, FD_CLOEXEC) == 0)
            cfg.handoff_fd = BOTTLE_HANDOFF_FD;
    }
    return channel_guest_relay_start(st->loop, fd, &cfg, &st->relay);
}

static int read_spec(int fd, struct bottle_spec *ret)
{
    struct buf b = BUF_INIT(BOTTLE_SPEC_MAX_SIZE);
    char tmp[16384];
    size_t line = 0;
    int r;

    for (;;) {
        ssize_t n = RETRY_EINTR(read(fd, tmp, sizeof(tmp)));
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        r = buf_append(&b, tmp, (size_t)n);
        if (r < 0)
            goto out;
    }
    r = bottle_spec_decode(buf_str(&b), b.len, ret, &line);
    if (r < 0)
        log_error("invalid bottle spec (line %zu)", line);
out:
    buf_done(&b);
    return r;
}

static int open_spec(int argc, char **argv)
{
    uint64_t n;

    if (is_vm) {
        int fd = open(GUEST_VM_SPEC, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    if (argc == 3 && strcmp(argv[1], "--spec-fd") == 0) {
        if (str_to_u64_cstr(argv[2], INT_MAX, &n) < 0)
            return -EINVAL;
        return (int)n;
    }
    if (argc == 3 && strcmp(argv[1], "--spec") == 0) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    return -EINVAL;
}

/* ---- a microVM's init ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/*
 * Opens the virtio-serial port called name: /sys/class/virtio-ports/vportNpM/name holds it
 * (there is no udev for /dev/virtio-ports/NAME). The kernel adds ports, and names them, as
 * QEMU announces them, which may come after init starts: retry for VM_PORT_WAIT_MS.
 */
static int vm_open_port(const char *name, int flags)
{
    for (long waited = 0;; waited += VM_PORT_POLL_MS) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        int fd = -ENOENT;

        while (d && (e = readdir(d)) != NULL) {
            char path[PATH_MAX], got[256];
            ssize_t n;
            int nfd;

            if (e->d_name[0] == '.' ||
                str_printf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name) < 0)
                continue;
            nfd = open(path, O_RDONLY | O_CLOEXEC);
            if (nfd < 0)
                continue;
            n = read(nfd, got, sizeof(got) - 1);
            close(nfd);
            if (n <= 0)
                continue;
            got[n] = '\0';
            got[strcspn(got, "\n")] = '\0';
            if (strcmp(got, name) != 0 || str_printf(path, sizeof(path), "/dev/%s", e->d_name) < 0)
                continue;
            fd = open(path, flags | O_RDWR | O_NOCTTY | O_CLOEXEC);
            if (fd < 0)
                fd = -errno;
            break;
        }
        if (d)
            closedir(d);
        if (fd != -ENOENT || waited >= VM_PORT_WAIT_MS)
            return fd;
        sleep_ms(VM_PORT_POLL_MS);
    }
}

/*
 * The stock kernel's modules (the host's initramfs holds them as VM_MODULES_DIR/NN-NAME.ko,
 * numbered in load order from modules.dep: backend/microvm/initramfs.h): virtio-mmio, the
 * console and ports, 9p. Loaded before anything looks for the console or a port, before the
 * spec is read and long before anything of the bottle runs; each file is removed once loaded
 * (the initramfs stays in RAM). Then module loading is switched off for the guest's lifetime
 * (kernel.modules_disabled), so nothing later, not even an autoload the kernel asks for, adds
 * one. No directory (a kernel with everything built in): nothing to do. The first failure is
 * kept in failed (there may be no console yet to say it on) and loading goes on.
 */
#define VM_MODULES_DIR "/bottle/modules"

static int write_file(const char *path, const char *text);

static int vm_load_modules(char *failed, size_t size)
{
    struct dirent **ents = NULL;
    int n = scandir(VM_MODULES_DIR, &ents, NULL, alphasort), r = 0;

    if (n < 0)
        return errno == ENOENT ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        int fd, e = 0;

        if (ents[i]->d_name[0] != '.' &&
            str_printf(path, sizeof(path), VM_MODULES_DIR "/%s", ents[i]->d_name) >= 0) {
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
                e = -errno;
            if (fd >= 0)
                close(fd);
            (void)unlink(path);
            if (e < 0 && r == 0) {
                r = e;
                (void)str_printf(failed, size, "%s", ents[i]->d_name);
            }
        }
        free(ents[i]);
    }
    free(ents);
    (void)rmdir(VM_MODULES_DIR);
    n = write_file("/proc/sys/kernel/modules_disabled", "1");
    if (n < 0 && r == 0) {
        r = n;
        (void)str_printf(failed, size, "%s", "kernel.modules_disabled");
    }
    return r;
}

/*
 * Early init of a VM: /proc, /sys and devtmpfs (every node the kernel knows, no udev), the
 * stock kernel's modules, the console as stdio when the kernel could not open it for us (hvc0
 * may register after init starts), then the control port.
 */
static int vm_early_init(void)
{
    char mod_failed[NAME_MAX + 1] = "";
    int mod_r;

    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
        mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") < 0)
        return -errno;
    vm_mark_fine("ei-mounts");
    mod_r = vm_load_modules(mod_failed, sizeof(mod_failed));
    vm_mark_fine("ei-modules");
    /* The guest kernel has IPv6, which brings the SIT driver and its fallback device sit0 in
     * every network namespace unless this says "only the initial one". The bottle gets a
     * network namespace of its own (vm_own_netns), so it sees only lo. */
    {
        int fd = open("/proc/sys/net/core/fb_tunnels_only_for_init_net", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!write(fd, "1", 1);
            close(fd);
        }
    }
    if (fcntl(STDERR_FILENO, F_GETFD) < 0) {
        int fd = -1;
        for (long waited = 0; fd < 0 && waited < VM_PORT_WAIT_MS; waited += VM_PORT_POLL_MS) {
            fd = open("/dev/console", O_RDWR | O_NOCTTY);
            if (fd < 0)
                sleep_ms(VM_PORT_POLL_MS);
        }
        if (fd < 0)
            return -ENODEV; /* nowhere to say anything; the status still goes to ctl */
        for (int i = 0; i <= 2; i++)
            if (fd != i)
                (void)dup2(fd, i);
        if (fd > 2)
            close(fd);
    }
    vm_mark_fine("ei-console");
    if (mod_r < 0) /* the bottle may still come up; if not, this says why */
        log_errno(LOG_LVL_ERROR, mod_r, "loading the guest kernel's modules (%s)", mod_failed);
    ctl_fd = vm_open_port(VM_PORT_CTL, 0);
    return ctl_fd < 0 ? ctl_fd : 0;
}

/* Up to len bytes from bottle.ctl, waiting at most timeout_ms (-1: for ever) for any: the
 * count, or -ETIMEDOUT, -ECONNRESET (the host closed it) or -errno. */
static ssize_t vm_ctl_read(void *p, size_t len, int timeout_ms)
{
    for (;;) {
        struct pollfd pf = { .fd = ctl_fd, .events = POLLIN };
        int n = poll(&pf, 1, timeout_ms);
        ssize_t got;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -ETIMEDOUT;
        got = read(ctl_fd, p, len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? -errno : -ECONNRESET;
        return got;
    }
}

/* One line of the host's on bottle.ctl (blocking, read byte by byte so that nothing after it
 * is taken from the port), without its newline; waits at most timeout_ms for each byte. */
static int vm_ctl_line(char *line, size_t size, int timeout_ms)
{
    size_t len = 0;

    while (len + 1 < size) {
        char c = '\0';
        ssize_t got = vm_ctl_read(&c, 1, timeout_ms);

        if (got < 0)
            return (int)got;
        if (c == '\n') {
            line[len] = '\0';
            return (int)len;
        }
        line[len++] = c;
    }
    return -E2BIG;
}

/*
 * The host's first line on bottle.ctl says where the command's stdio goes: "streams" (over
 * the channel, vmsession.h: what `bot-bottle run` does) or "console" (stdout and stderr on
 * the console, stdin /dev/null: a test driver without a channel relay).
 */
static int vm_read_mode(void)
{
    char line[16];
    int r = vm_ctl_line(line, sizeof(line), VM_MODE_WAIT_MS);

    if (r < 0)
        return r == -E2BIG ? -EPROTO : r;
    if (strcmp(line, "streams") == 0)
        vm_streams = true;
    else if (strcmp(line, "console") != 0)
        return -EPROTO;
    return 0;
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The guest's wall clock, from the host's. Without kvm-clock (TCG) the kernel takes the time
 * from the CMOS clock, which counts whole seconds: the guest started 0-1 s behind the host,
 * and a file the bottle had just written through 9p (stamped by the host) had a modification
 * time in the guest's future (make's "clock skew detected", tar's "time stamp in the
 * future"). bottle-init asks ("time\n" on bottle.ctl), the host answers "time SEC NSEC\n"
 * (backend/microvm/microvm.c, ctl_answer_time), and the clock is set to that plus half the
 * round trip. Only with streams: then the host's loop is there to answer. Returns 0,
 * -ECANCELED when the host asked to stop meanwhile, or another -errno (the clock is left as
 * it was).
 */
static int vm_sync_clock(void)
{
    char line[48];
    int64_t t0, t1, half;
    uint64_t sec, nsec;
    struct timespec ts;
    const char *sp;
    int r;

    t0 = mono_ns();
    if (RETRY_EINTR(write(ctl_fd, "time\n", 5)) != 5)
        return -errno;
    for (;;) {
        r = vm_ctl_line(line, sizeof(line), VM_TIME_WAIT_MS);
        if (r < 0)
            return r == -E2BIG ? -EPROTO : r;
        if (strcmp(line, "stop") == 0)
            return -ECANCELED;
        if (strncmp(line, "time ", 5) == 0)
            break; /* (nothing else is sent before the answer; anything else: skipped) */
    }
    t1 = mono_ns();
    sp = strchr(line + 5, ' ');
    if (!sp || str_to_u64(slice_make(line + 5, (size_t)(sp - line - 5)), UINT64_MAX, &sec) < 0 ||
        str_to_u64_cstr(sp + 1, 999999999, &nsec) < 0 || sec < 1000000000ULL ||
        sec > 100000000000ULL)
        return -EPROTO;
    half = (t1 - t0) / 2 + (mono_ns() - t1);
    ts.tv_sec = (time_t)sec + (time_t)(half / 1000000000);
    ts.tv_nsec = (long)nsec + (long)(half % 1000000000);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
}

/*
 * A snapshot template (bbtemplate=1 on the kernel command line; docs/microvm.md, "Start-up
 * from a snapshot"). After early init, bottle-init says "template\n" on bottle.ctl and blocks
 * reading the port: the host stops the VM there and saves it. Every bottle restored from the
 * saved state wakes up in that read, with the host's first line:
 *
 *   restore SEC NSEC SEED LEN\n     then LEN bytes: a cpio archive of the bottle's files
 *
 * The restored guest's kernel random state is the template's, the same in every bottle: SEED
 * (VM_SEED_BYTES from the host's getrandom, in hex) is mixed in and the kernel's generator
 * reseeded at once (RNDADDENTROPY alone left /dev/urandom's output identical across restores;
 * with RNDRESEEDCRNG it differs), before anything here or in the bottle draws from it. The
 * wall clock is the template's (days old, perhaps): set to SEC.NSEC (vm_sync_clock refines it
 * with streams). The archive holds what a cold boot's initramfs has under /bottle (the spec,
 * the seccomp program, /etc's public files: guest/unpack.h). Then "restored\n" tells the host
 * all is in place. Returns 0 or -errno.
 */
#define VM_SEED_BYTES 64
#define VM_BUNDLE_MAX (64u * 1024 * 1024)

static int vm_reseed(const char *hex)
{
    struct {
        struct rand_pool_info info;
        uint8_t bytes[VM_SEED_BYTES];
    } seed;
    int fd, r = 0;

    if (strlen(hex) != 2 * VM_SEED_BYTES)
        return -EPROTO;
    for (size_t i = 0; i < VM_SEED_BYTES; i++) {
        uint64_t v;
        if (str_hex_to_u64(slice_make(hex + 2 * i, 2), 0xff, &v) < 0)
            return -EPROTO;
        seed.bytes[i] = (uint8_t)v;
    }
    seed.info.entropy_count = 8 * VM_SEED_BYTES;
    seed.info.buf_size = VM_SEED_BYTES;
    fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ioctl(fd, RNDADDENTROPY, &seed) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
        r = -errno;
    close(fd);
    explicit_bzero(&seed, sizeof(seed));
    return r;
}

static int vm_read_exact(uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t got = vm_ctl_read(p, len, VM_MODE_WAIT_MS);

        if (got < 0)
            return (int)got;
        p += got;
        len -= (size_t)got;
    }
    return 0;
}

static int vm_template_wait(void)
{
    char line[64 + 2 * VM_SEED_BYTES], *f[5], *save = NULL;
    uint64_t sec, nsec, len;
    struct timespec ts;
    uint8_t *bundle;
    size_t nf = 0;
    int r, root;

    /* The bottle's network namespace (run() makes it after a boot) is made before the save:
     * nothing of it depends on the bottle, and a restored guest would create it with cold
     * translations (30 ms under TCG) */
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    vm_own_netns = true;
    if (RETRY_EINTR(write(ctl_fd, "template\n", 9)) != 9)
        return -errno;
    /* the snapshot is taken here; a restored bottle returns from this read */
    r = vm_ctl_line(line, sizeof(line), -1);
    vm_trace_len = 0; /* the template's own marks */
    vm_mark("restored");
    if (r < 0)
        return r == -E2BIG ? -EPROTO : r;
    for (char *t = strtok_r(line, " ", &save); t && nf < ARRAY_SIZE(f);
         t = strtok_r(NULL, " ", &save))
        f[nf++] = t;
    if (nf != 5 || strcmp(f[0], "restore") != 0)
        return -EPROTO;
    if ((r = vm_reseed(f[3])) < 0)
        return r;
    explicit_bzero(f[3], strlen(f[3]));
    if (str_to_u64_cstr(f[1], 100000000000ULL, &sec) < 0 || sec < 1000000000ULL ||
        str_to_u64_cstr(f[2], 999999999, &nsec) < 0 ||
        str_to_u64_cstr(f[4], VM_BUNDLE_MAX, &len) < 0)
        return -EPROTO;
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)nsec;
    if (clock_settime(CLOCK_REALTIME, &ts) < 0)
        return -errno;
    vm_mark_fine("reseed-clock");
    bundle = malloc(len ? len : 1);
    if (!bundle)
        return -ENOMEM;
    r = vm_read_exact(bundle, len);
    vm_mark_fine("bundle-read");
    root = r < 0 ? -1 : open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r >= 0 && root < 0)
        r = -errno;
    if (r >= 0)
        r = guest_cpio_unpack(root, bundle, len);
    if (root >= 0)
        close(root);
    free(bundle);
    vm_mark_fine("bundle");
    if (r >= 0 && RETRY_EINTR(write(ctl_fd, "restored\n", 9)) != 9)
        r = -errno;
    return r;
}

/*
 * Without a terminal for the command, the console carries its output byte for byte: no
 * "\n" -> "\r\n" (OPOST), no echo of anything the host side sends.
 */
static void vm_console_raw(void)
{
    struct termios t;

    if (tcgetattr(STDOUT_FILENO, &t) < 0)
        return;
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG);
    (void)tcsetattr(STDOUT_FILENO, TCSANOW, &t);
}

/* The status line on bottle.ctl, after the console's output is out. */
static void vm_report(int code)
{
    char line[32];
    int n = str_printf(line, sizeof(line), "exit %d\n", code);

    (void)tcdrain(STDOUT_FILENO);
    if (ctl_fd < 0 || n < 0)
        return;
    {
        int fl = fcntl(ctl_fd, F_GETFL);
        if (fl >= 0)
            (void)fcntl(ctl_fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    /* A port write returns once the host has the data. */
    (void)!write(ctl_fd, line, strlen(line));
    close(ctl_fd);
    ctl_fd = -1;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = write(fd, text, strlen(text));
    n = n < 0 ? -errno : 0;
    close(fd);
    return (int)n;
}

/*
 * --pids inside a VM: a cgroup v2 "bottle" with pids.max (the guest kernel has CGROUP_PIDS),
 * which every command joins (vm_cg_procs). bottle-init and its relay stay outside it. Done
 * before the root is built: the bottle has no /sys, and the open cgroup.procs outlives it.
 */
static int vm_pids_cgroup(uint64_t max)
{
    char val[32];
    int r;

    if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -errno;
    if ((r = write_file("/sys/fs/cgroup/cgroup.subtree_control", "+pids")) < 0)
        return r;
    if (mkdir("/sys/fs/cgroup/bottle", 0755) < 0 && errno != EEXIST)
        return -errno;
    (void)str_printf(val, sizeof(val), "%llu", (unsigned long long)max);
    if ((r = write_file("/sys/fs/cgroup/bottle/pids.max", val)) < 0)
        return r;
    vm_cg_procs = open("/sys/fs/cgroup/bottle/cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (vm_cg_procs < 0)
        return -errno;
    vm_cg_dir = open("/sys/fs/cgroup/bottle", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return vm_cg_dir < 0 ? -errno : 0;
}

/* The host's seccomp program from the initramfs (before the root hides it); none: fine, the
 * filter is then built here. */
static int vm_read_seccomp(void)
{
    struct buf b = BUF_INIT(GUEST_SECCOMP_BPF_MAX);
    char tmp[4096];
    int fd = open(GUEST_VM_SECCOMP, O_RDONLY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    for (;;) {
        ssize_t n = RETRY_EINTR(read(fd, tmp, sizeof(tmp)));
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        r = buf_append(&b, tmp, (size_t)n);
        if (r < 0)
            break;
    }
    close(fd);
    if (r >= 0 && (b.len == 0 || b.len % 8))
        r = -EINVAL;
    if (r >= 0) {
        vm_bpf = malloc(b.len);
        if (!vm_bpf)
            r = -ENOMEM;
        else
            memcpy(vm_bpf, b.p, vm_bpf_len = b.len);
    }
    buf_done(&b);
    return r;
}

/* The command whose first exec vm_prefetch prepares (set before the root is built). */
static char *const *prefetch_argv;
static char **prefetch_envp;

/*
 * Opens path (absolute, as the bottle will see it) inside the /usr tree usr_fd and reads it
 * into the guest's page cache; returns the fd or -1. The bottle's /bin, /sbin, /lib and
 * /lib64 are the host's merged-/usr links (usr/bin, ...), and absolute symlinks in /usr
 * (/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...) resolve the same way with
 * usr_fd as the root. Anything else (a PATH entry in $HOME) is not looked at.
 */
static int prefetch_file(int usr_fd, const char *path)
{
    static const char *const roots[] = { "/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/" };
    struct open_how how = { .flags = O_RDONLY | O_CLOEXEC,
                            .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
    const char *rel = NULL;
    struct stat st;
    int fd;

    for (size_t i = 0; i < ARRAY_SIZE(roots) && !rel; i++)
        if (strncmp(path, roots[i], strlen(roots[i])) == 0)
            rel = i == 0 ? path + 4 : path; /* "/usr/x" -> "/x"; "/bin/x" stays */
    if (!rel)
        return -1;
    fd = (int)syscall(SYS_openat2, usr_fd, rel, &how, sizeof(how));
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    (void)readahead(fd, 0, (size_t)st.st_size);
    return fd;
}

/*
 * VM: the first exec of the command costs 9p round trips for every lookup of its PATH walk,
 * of its ELF interpreter and of libc, and for the reads of each (under TCG each round trip
 * leaves the vCPU idle for milliseconds). As soon as /usr is mounted, a short-lived child does
 * the same lookups and reads into the page cache (/usr's cache=loose keeps dentries, negative
 * ones too, and pages) while bottle-init builds the rest of the root; the command then finds
 * them cached. The child only opens and reads files of the read-only /usr share, and exits.
 */
static void vm_prefetch(int usr_fd)
{
    char *const *argv = prefetch_argv;
    const char *path = NULL;
    char full[PATH_MAX];
    int fd = -1;

    if (!argv || !argv[0] || fork() != 0)
        return; /* (a failed fork only costs the speed-up) */
    for (char **e = prefetch_envp; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    if (strchr(argv[0], '/')) {
        fd = prefetch_file(usr_fd, argv[0]);
    } else {
        for (const char *p = path ? path : "/usr/bin:/bin"; fd < 0 && *p;) {
            size_t dl = strcspn(p, ":");
            if (dl > 0 && str_printf(full, sizeof(full), "%.*s/%s", (int)dl, p, argv[0]) == 0)
                fd = prefetch_file(usr_fd, full);
            p += dl + (p[dl] == ':');
        }
    }
    if (fd >= 0) {
        /* its ELF interpreter, and the C library */
        Elf64_Ehdr eh;
        Elf64_Phdr ph;
        if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
            memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
            eh.e_phentsize == sizeof(ph)) {
            for (unsigned i = 0; i < eh.e_phnum && i < 64; i++) {
                if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
                    (ssize_t)sizeof(ph))
                    break;
                if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz >= sizeof(full) ||
                    pread(fd, full, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz)
                    continue;
                full[ph.p_filesz - 1] = '\0';
                (void)prefetch_file(usr_fd, full);
#if defined(__x86_64__)
                (void)prefetch_file(usr_fd, "/usr/lib/x86_64-linux-gnu/libc.so.6");
#endif
                break;
            }
        }
    }
    _exit(0);
}

static void ctx_releasep(scmp_filter_ctx *c)
{
    if (*c)
        seccomp_release(*c);
}

/*
 * Loopback with the alias, the seccomp filter (unless the host built it), the event loop and
 * its signals, bottle.ctl (VM), the sessions (VM with streams) and the channel relay. Logs
 * what failed; returns 0 or a negative errno.
 */
static int start_services(struct init_state *st, const struct bottle_spec *spec, char **envp,
                          scmp_filter_ctx *ctx, int *vm_chan_fd)
{
    int r = guest_net_setup(spec->alias);

    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "setting up loopback failed");
    vm_mark_fine("net");
    if (!vm_bpf && (r = guest_seccomp_build(EPERM, EAFNOSUPPORT, ctx)) < 0)
        return log_errno(LOG_LVL_ERROR, r, "preparing the command failed");
    vm_mark_fine("seccomp");
    signal(SIGPIPE, SIG_IGN);
    r = loop_new(&st->loop);
    for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(forwarded_signals); i++)
        r = loop_add_signal(st->loop, forwarded_signals[i], on_signal, st);
    if (r >= 0)
        r = loop_add_signal(st->loop, SIGCHLD, on_signal, st);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "setting up the event loop failed");
    vm_mark_fine("loop");
    if (is_vm && ctl_fd >= 0) {
        int fl = fcntl(ctl_fd, F_GETFL);
        if (fl < 0 || fcntl(ctl_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
            (r = loop_add(st->loop, &st->ctl_src, ctl_fd, EPOLLIN, on_ctl, st)) < 0) {
            r = r < 0 ? r : -errno;
            return log_errno(LOG_LVL_ERROR, r, "watching the port %s", VM_PORT_CTL);
        }
    }
    vm_mark("seccomp-loop");
    if (vm_streams) {
        struct vms_ops vo = { .spawn = vm_spawn,
                              .main_done = vm_main_done,
                              .ud = st,
                              .uid = spec->uid,
                              .gid = spec->gid };
        st->spec = spec;
        st->envp = envp;
        st->ctx = *ctx;
        (void)vms_new(st->loop, &vo, &st->vms);
        loop_timer_init(&st->start_timer, on_start_timer, st);
        loop_timer_set_in(st->loop, &st->start_timer, VM_STREAMS_WAIT_MS);
    }
    vm_mark_fine("vms");
    r = start_relay(st, spec, *vm_chan_fd);
    vm_mark("relay");
    *vm_chan_fd = -1; /* owned by the relay now, or closed on failure */
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "starting the channel relay failed");
    return 0;
}

static int run(int argc, char **argv)
{
    struct bottle_spec spec = { 0 };
    struct init_state st = { .main_pid = -1, .exit_code = EXIT_INIT_FAILED };
    __attribute__((cleanup(ctx_releasep))) scmp_filter_ctx ctx = NULL;
    char **envp = NULL;
    const char *what = NULL;
    int vm_chan_fd = -1;
    int fd, r;

    if (is_vm) {
        r = vm_early_init();
        vm_mark("early-init");
        if (vm_trace_fine) {
            vm_uptime_fd = open("/proc/uptime", O_RDONLY | O_CLOEXEC);
            vm_mark_idle("early-init");
        }
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "early init of the VM failed (port %s)", VM_PORT_CTL);
            return EXIT_INIT_FAILED;
        }
        if (vm_template && (r = vm_template_wait()) < 0) {
            log_errno(LOG_LVL_ERROR, r, "restoring the bottle from the start-up snapshot (%s)",
                      VM_PORT_CTL);
            return EXIT_INIT_FAILED;
        }
    }
    fd = open_spec(argc, argv);
    if (fd < 0) {
        if (is_vm)
            log_errno(LOG_LVL_ERROR, fd, "%s", GUEST_VM_SPEC);
        else
            log_error("usage: bottle-init --spec-fd N | --spec PATH");
        return EXIT_INIT_FAILED;
    }
    r = read_spec(fd, &spec);
    close(fd);
    if (r < 0)
        return EXIT_INIT_FAILED;
    vm_mark_fine("spec-read");
    if (is_vm && (r = vm_read_seccomp()) < 0) {
        log_errno(LOG_LVL_ERROR, r, "%s", GUEST_VM_SECCOMP);
        goto out;
    }
    /* 9p shares exist only in a VM, and a VM has nothing to bind from. */
    if (is_vm != (spec.rootfs == BOTTLE_ROOTFS_9P)) {
        log_error("the spec says rootfs %s, but bottle-init %s a VM's init",
                  bottle_rootfs_name(spec.rootfs), is_vm ? "is" : "is not");
        r = -EINVAL;
        goto out;
    }
    if (is_vm) {
        /* The initial network namespace holds the kernel's fallback tunnel devices (sit0):
         * the bottle's loopback lives in a namespace of its own, holding lo alone, as in the
         * namespace backend. */
        vm_mark_fine("spec");
        if (!vm_own_netns && unshare(CLONE_NEWNET) < 0) {
            r = -errno;
            log_errno(LOG_LVL_ERROR, r, "creating the bottle's network namespace");
            goto out;
        }
        vm_mark_fine("netns");
        if (spec.pids_max && (r = vm_pids_cgroup(spec.pids_max)) < 0) {
            log_errno(LOG_LVL_ERROR, r, "limiting the bottle's processes (pids cgroup)");
            goto out;
        }
        vm_mark_fine("cgroup");
        /* The channel port, while /sys and devtmpfs are still ours to look in. */
        if (strncmp(spec.channel, VM_PORT_DIR, strlen(VM_PORT_DIR)) == 0)
            vm_chan_fd = vm_open_port(spec.channel + strlen(VM_PORT_DIR), O_NONBLOCK);
        else if ((vm_chan_fd = open(spec.channel, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK)) < 0)
            vm_chan_fd = -errno;
        if (vm_chan_fd < 0) {
            r = vm_chan_fd;
            log_errno(LOG_LVL_ERROR, r, "opening the channel port %s", spec.channel);
            goto out;
        }
        vm_mark_fine("chan-port");
        /* The host's first line on bottle.ctl: read only now, after the work above, by which
         * time QEMU has passed it on (waiting for it first cost 4-70 ms of the start). */
        if ((r = vm_read_mode()) < 0) {
            log_errno(LOG_LVL_ERROR, r, "the host did not say how to carry stdio on %s",
                      VM_PORT_CTL);
            goto out;
        }
        vm_mark_fine("mode");
        if (vm_streams && (r = vm_sync_clock()) < 0) {
            if (r == -ECANCELED) { /* the host asked to stop: nothing ran yet */
                st.exit_code = 128 + SIGTERM;
                r = 0;
                goto out;
            }
            /* the bottle still runs, on the kernel's coarser clock */
            log_errno(LOG_LVL_WARN, r, "setting the guest's clock from the host's on %s",
                      VM_PORT_CTL);
        }
        vm_mark_fine("clock");
        if (!spec.tty || vm_streams)
            vm_console_raw();
    }

    vm_mark("spec-port");
    r = bottle_spec_environ(&spec, &envp);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "preparing the command failed");
        goto out;
    }
    /* A VM starts its relay before it builds the root: the channel's handshake and the
     * host's requests cross QEMU while the root is built (nothing runs them before the loop
     * does, after the root is in place). */
    if (is_vm && (r = start_services(&st, &spec, envp, &ctx, &vm_chan_fd)) < 0)
        goto out;
    if (is_vm) {
        prefetch_argv = spec.argv;
        prefetch_envp = envp;
        guest_rootfs_usr_ready = vm_prefetch;
    }
    r = guest_rootfs_setup(&spec, &what);
    guest_rootfs_usr_ready = NULL;
    vm_mark("rootfs");
    vm_mark_idle("rootfs");
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "building the bottle's root failed (%s)", what);
        goto out;
    }
    if (!is_vm && (r = start_services(&st, &spec, envp, &ctx, &vm_chan_fd)) < 0)
        goto out;

    if (vm_streams) {
        /* The command starts when the host opened its streams (vm_spawn). */
        loop_run(st.loop);
    } else {
        struct command c = { .argv = spec.argv, .envp = envp, .tty = spec.tty };
        st.main_pid = spawn_command(&spec, &c, ctx, -1);
        if (st.main_pid > 0)
            loop_run(st.loop);
        else
            st.exit_code = -st.main_pid;
    }
    r = 0;
out:
    if (vm_chan_fd >= 0)
        close(vm_chan_fd);
    channel_guest_relay_free(st.relay);
    vms_free(st.vms);
    if (st.loop) {
        if (st.vms) /* (armed together) */
            loop_timer_stop(st.loop, &st.start_timer);
        loop_del(st.loop, &st.ctl_src);
        loop_free(st.loop);
    }
    bottle_spec_free_strv(envp);
    bottle_spec_done(&spec);
    vm_mark_fine("freed");
    return r < 0 ? EXIT_INIT_FAILED : st.exit_code;
}

int main(int argc, char **argv)
{
    int code;

    log_set_prefix("bottle-init");
    is_vm = getpid() == 1 && argc == 1;
    {
        const char *trace = is_vm ? getenv("bbtrace") : NULL;
        vm_trace_fine = trace && strcmp(trace, "2") == 0;
        vm_trace = vm_trace_fine || (trace && strcmp(trace, "1") == 0);
        trace = is_vm ? getenv("bbtemplate") : NULL;
        vm_template = trace && strcmp(trace, "1") == 0;
    }
    if (vm_trace_fine)
        guest_rootfs_trace = vm_mark;
    vm_mark("init");
    code = run(argc, argv);
    /* As a VM's init, exiting would panic the kernel. Report the status, then reboot: with
     * reboot=t on the kernel command line and QEMU's -no-reboot that ends QEMU (without ACPI,
     * power-off would not). (In a pid namespace our exit kills every other process of the
     * bottle.) */
    if (is_vm) {
        /* Synced before the status: the host may end QEMU as soon as it has the line
         * (backend/microvm/microvm.c, on_ctl_status). */
        sync();
        vm_mark("synced");
        vm_mark_idle("synced");
        vm_trace_flush();
        vm_report(code);
        vm_mark("reboot");
        vm_trace_flush();
        reboot(RB_AUTOBOOT);
    }
    return code;
}
