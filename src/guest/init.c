/*
 * bottle-init: PID 1 of a bottle (docs/bottle-init.md).
 *
 *   bottle-init --spec-fd N | --spec PATH
 *
 * Reads and validates the bottle spec, builds the root file system, brings up loopback with
 * the alias, starts the channel relay (A:3128 and A:53 carried over the channel), then runs
 * the command as the invoking user with no capabilities, no_new_privs and the seccomp
 * filter; reaps every child, forwards termination signals to the command and exits with its
 * status (126 not executable, 127 not found, 125 bottle-init itself failed).
 *
 * Statically linked, no NSS: it runs before the root it builds exists, and as a VM's init.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <grp.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/str.h"
#include "guest/command.h"
#include "guest/netif.h"
#include "guest/rootfs.h"
#include "guest/seccomp-filter.h"
#include "guest/spec.h"

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

static const int forwarded_signals[] = { SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                         SIGUSR1, SIGUSR2, SIGWINCH };

/* Set once the spec says host paths arrive as 9p shares, i.e. we are a VM's init. */
static bool is_vm;

struct init_state {
    struct loop *loop;
    pid_t main_pid;
    int exit_code;
    bool main_exited;
    struct channel_guest_relay *relay;
};

/* ---- the command's process (after fork; never returns) ---- */

static _noreturn_ void child_fail(int report_fd, enum report_stage stage, int err)
{
    struct report rep = { .stage = stage, .err = err < 0 ? -err : err };

    (void)!write(report_fd, &rep, sizeof(rep));
    _exit(stage == REPORT_EXEC ? EXIT_NOT_FOUND : EXIT_INIT_FAILED);
}

static _noreturn_ void run_command(const struct bottle_spec *s, char **envp, scmp_filter_ctx ctx,
                                   int report_fd)
{
    sigset_t none;
    int r;

    /* bottle-init blocked these for its signalfd and ignores SIGPIPE: undo both. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    /* A session of its own; with a terminal, make it the controlling one (job control). */
    if (setsid() < 0)
        child_fail(report_fd, REPORT_SETUP, errno);
    if (s->tty && isatty(STDIN_FILENO))
        (void)ioctl(STDIN_FILENO, TIOCSCTTY, 0);
    /* Only 0-2 (and the report pipe, closed by exec) may reach the command. */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0 && errno != ENOSYS)
        child_fail(report_fd, REPORT_SETUP, errno);
    r = guest_drop_privileges(s->uid, s->gid);
    if (r < 0)
        child_fail(report_fd, REPORT_SETUP, r);
    if (chdir(s->workspace) < 0)
        child_fail(report_fd, REPORT_SETUP, errno);
    /* Last: after this, mount, setns and friends fail with EPERM. */
    r = seccomp_load(ctx);
    if (r < 0)
        child_fail(report_fd, REPORT_SETUP, r);
    r = guest_exec_command(s->argv, envp);
    child_fail(report_fd, REPORT_EXEC, r);
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
    log_errno(LOG_LVL_ERROR, err, "the channel to the host died; stopping the bottle");
    if (st->main_pid > 0 && !st->main_exited)
        kill(st->main_pid, SIGTERM);
}

static int start_relay(struct init_state *st, const struct bottle_spec *s)
{
    struct channel_guest_config cfg;
    char alias[INET_ADDRSTRLEN];
    int fd, r;

    if (strncmp(s->channel, "fd:", 3) == 0) {
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

static void ctx_releasep(scmp_filter_ctx *c)
{
    if (*c)
        seccomp_release(*c);
}

static int run(int argc, char **argv)
{
    struct bottle_spec spec = { 0 };
    struct init_state st = { .main_pid = -1, .exit_code = EXIT_INIT_FAILED };
    __attribute__((cleanup(ctx_releasep))) scmp_filter_ctx ctx = NULL;
    char **envp = NULL;
    const char *what = NULL;
    int report[2] = { -1, -1 };
    struct report rep;
    ssize_t n;
    int fd, r;

    fd = open_spec(argc, argv);
    if (fd < 0) {
        log_error("usage: bottle-init --spec-fd N | --spec PATH");
        return EXIT_INIT_FAILED;
    }
    r = read_spec(fd, &spec);
    close(fd);
    if (r < 0)
        return EXIT_INIT_FAILED;
    is_vm = spec.rootfs == BOTTLE_ROOTFS_9P;

    r = guest_rootfs_setup(&spec, &what);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "building the bottle's root failed (%s)", what);
        goto out;
    }
    r = guest_net_setup(spec.alias);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "setting up loopback failed");
        goto out;
    }
    r = bottle_spec_environ(&spec, &envp);
    if (r >= 0)
        r = guest_seccomp_build(EPERM, EAFNOSUPPORT, &ctx);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "preparing the command failed");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    r = loop_new(&st.loop);
    for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(forwarded_signals); i++)
        r = loop_add_signal(st.loop, forwarded_signals[i], on_signal, &st);
    if (r >= 0)
        r = loop_add_signal(st.loop, SIGCHLD, on_signal, &st);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "setting up the event loop failed");
        goto out;
    }
    r = start_relay(&st, &spec);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "starting the channel relay failed");
        goto out;
    }

    if (pipe2(report, O_CLOEXEC) < 0) {
        r = -errno;
        log_errno(LOG_LVL_ERROR, r, "pipe");
        goto out;
    }
    st.main_pid = fork();
    if (st.main_pid < 0) {
        r = -errno;
        log_errno(LOG_LVL_ERROR, r, "fork");
        goto out;
    }
    if (st.main_pid == 0) {
        close(report[0]);
        run_command(&spec, envp, ctx, report[1]);
    }
    close(report[1]);
    report[1] = -1;
    /* EOF means exec succeeded (the pipe is close-on-exec). */
    n = RETRY_EINTR(read(report[0], &rep, sizeof(rep)));
    if (n == (ssize_t)sizeof(rep)) {
        if (rep.stage == REPORT_EXEC) {
            if (rep.err == ENOENT && !strchr(spec.argv[0], '/'))
                log_error("%s: command not found", spec.argv[0]);
            else
                log_errno(LOG_LVL_ERROR, -rep.err, "%s", spec.argv[0]);
        } else {
            log_errno(LOG_LVL_ERROR, -rep.err, "setting up the command failed");
        }
    }
    loop_run(st.loop);
    if (n == (ssize_t)sizeof(rep))
        st.exit_code = rep.stage != REPORT_EXEC ? EXIT_INIT_FAILED
                       : rep.err == ENOENT      ? EXIT_NOT_FOUND
                                                : EXIT_NOT_EXECUTABLE;
    r = 0;
out:
    if (report[0] >= 0)
        close(report[0]);
    if (report[1] >= 0)
        close(report[1]);
    channel_guest_relay_free(st.relay);
    if (st.loop)
        loop_free(st.loop);
    bottle_spec_free_strv(envp);
    bottle_spec_done(&spec);
    return r < 0 ? EXIT_INIT_FAILED : st.exit_code;
}

int main(int argc, char **argv)
{
    int code;

    log_set_prefix("bottle-init");
    code = run(argc, argv);
    /* As a VM's init, exiting would panic the kernel: power off instead. (In a pid namespace
     * our exit kills every other process of the bottle.) TODO(microvm): report the status
     * over the control port first. */
    if (is_vm && getpid() == 1) {
        sync();
        reboot(RB_POWER_OFF);
    }
    return code;
}
