/*
 * vm-launch: boots one bottle through the microvm backend's ops (src/backend/microvm/microvm.c:
 * the same create/start/wait/kill as `bot-bottle run`), without the supervisor or an egress
 * daemon, and exits with the command's status. For tests/integration/test-microvm-guest.sh
 * (bottle-init's guest mode) and for timing; `bot-bottle run` is the product's way in.
 *
 *   vm-launch [--init PATH] [-w DIR] [--alias A] [--name N] [--uid N] [--gid N]
 *             [--mount SRC:DST[:ro]]... [--memory MIB] [--cpus N] [--timeout SEC]
 *             [--chan-stats] [--proxy ADDR:PORT --dns ADDR:PORT | --close-chan] -- CMD...
 *   vm-launch --probe        exit 0 when the backend can run here, 1 (with why) if not
 *
 * The console (the command's stdout and stderr) is our stdout; stdin is /dev/null. The
 * channel the backend returns is held open, but nothing answers on it (no egress daemon);
 * --chan-stats prints on stderr whether QEMU connected it and how many bytes the guest's
 * relay sent. With --proxy and --dns, the host relay (channel/relay.h) runs on it instead, in
 * a child process, and connects the guest's proxy and DNS streams to those addresses (a local
 * fake). --close-chan closes it at once (the guest must fail closed). --memory MIB sets the
 * bottle's memory limit so that the guest gets MIB (at most the backend's default).
 *
 * With --exec CMD (and --exec-tty), the bottle runs as under `bot-bottle run` instead: the
 * host relay and the backend's attach in this process's loop (stdio over channel streams),
 * and once it is up, `sh -c CMD` through the backend's exec op with BB_EXEC_EXTRA=yes added to
 * its environment (--exec-tty: on a pty of ours, whose output goes to our stdout); its status
 * is printed as "vm-launch: exec status N" on stderr, then the bottle is asked to stop.
 *
 * QEMU's user is the backend's choice (docs/microvm.md, S10 rule 1): the spec's uid (default:
 * the workspace's owner as root, else ours).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/microvm/microvm.h"
#include "backend/microvm/qemu-args.h"
#include "channel/relay.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "guest/spec.h"

#ifndef BB_INIT_BUILD_PATH
#define BB_INIT_BUILD_PATH "bottle-init"
#endif

static int usage(void)
{
    fprintf(stderr,
            "usage: vm-launch [--init PATH] [-w DIR] [--alias A] [--name N] [--uid N] [--gid N]"
            " [--mount S:D[:ro]] [--memory MIB] [--cpus N] [--timeout SEC] -- CMD...\n"
            "       vm-launch --probe\n");
    return 2;
}

static void relay_dead(void *userdata, int err)
{
    log_errno(LOG_LVL_INFO, err, "the channel ended");
    loop_quit(userdata, 0);
}

/* The host relay on the accepted channel connection, until the channel ends. */
static _noreturn_ void run_host_relay(int fd, struct channel_host_config *hc)
{
    struct channel_host_relay *relay = NULL;
    struct loop *l = NULL;

    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    if (loop_new(&l) < 0)
        _exit(1);
    hc->dead = relay_dead;
    hc->userdata = l;
    if (channel_host_relay_start(l, fd, hc, &relay) < 0) {
        log_error("starting the host relay failed");
        _exit(1);
    }
    loop_run(l);
    channel_host_relay_free(relay);
    loop_free(l);
    _exit(0);
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

/* ---- --exec: the bottle as `run` drives it, plus one exec ---- */

struct xstate {
    const struct backend_ops *ops;
    struct bottle *b;
    struct loop *loop;
    struct backend_exec *e;
    struct loop_source bottle_src, exec_src, master_src;
    int master;
    bool bottle_done, exec_done;
    int status;
};

static void x_on_bottle(struct loop_source *src, uint32_t ev)
{
    struct xstate *x = src->userdata;
    (void)ev;
    loop_del(x->loop, src);
    if (x->ops->wait(x->b, &x->status) < 0)
        x->status = 125;
    x->bottle_done = true;
    loop_quit(x->loop, 0);
}

static void x_on_exec(struct loop_source *src, uint32_t ev)
{
    struct xstate *x = src->userdata;
    int st = -1;
    (void)ev;
    loop_del(x->loop, src);
    if (x->ops->exec_wait(x->e, &st) < 0)
        st = -1;
    fprintf(stderr, "vm-launch: exec status %d\n", st);
    x->exec_done = true;
    x->ops->exec_free(x->e);
    x->e = NULL;
    (void)x->ops->request_stop(x->b);
}

static void x_on_master(struct loop_source *src, uint32_t ev)
{
    struct xstate *x = src->userdata;
    char tmp[4096];
    ssize_t n = read(x->master, tmp, sizeof(tmp));
    (void)ev;
    if (n > 0)
        (void)!write(STDOUT_FILENO, tmp, (size_t)n);
    else if (n == 0 || errno != EAGAIN)
        loop_del(x->loop, src);
}

static void x_on_timeout(struct loop_timer *t)
{
    struct xstate *x = t->userdata;
    log_error("the VM did not finish in time; killing QEMU (raise --timeout)");
    (void)x->ops->kill(x->b);
}

static void x_relay_dead(void *userdata, int err)
{
    (void)userdata;
    log_errno(LOG_LVL_INFO, err, "the channel ended");
}

static int run_with_exec(const struct backend_ops *ops, struct backend_create_args *ca,
                         struct channel_host_config *hc, const char *cmd, bool tty, int timeout_s)
{
    struct xstate x = { .ops = ops, .master = -1, .status = 125 };
    struct backend_started started = { .pidfd = -1, .channel_fd = -1 };
    struct channel_host_relay *relay = NULL;
    struct loop_timer timer;
    char *argv[] = { (char *)"sh", (char *)"-c", (char *)cmd, NULL };
    char *env[] = { (char *)"BB_EXEC_EXTRA=yes", NULL };
    struct backend_exec_args xa = { .argv = argv, .env = env };
    int slave = -1;

    if (loop_new(&x.loop) < 0 || ops->create(ca, &x.b) < 0 || ops->start(x.b, &started) < 0)
        goto out;
    hc->dead = x_relay_dead;
    if (channel_host_relay_start(x.loop, started.channel_fd, hc, &relay) < 0 ||
        ops->attach(x.b, x.loop, channel_host_relay_mux(relay)) < 0)
        goto out;
    (void)loop_add(x.loop, &x.bottle_src, started.pidfd, EPOLLIN, x_on_bottle, &x);
    xa.stdio[0] = ca->stdio[0];
    xa.stdio[1] = STDOUT_FILENO;
    xa.stdio[2] = STDERR_FILENO;
    if (tty) {
        struct winsize ws = { .ws_row = 24, .ws_col = 80 };
        x.master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (x.master < 0 || grantpt(x.master) < 0 || unlockpt(x.master) < 0 ||
            (slave = open(ptsname(x.master), O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
            goto out;
        (void)ioctl(x.master, TIOCSWINSZ, &ws);
        xa.stdio[0] = xa.stdio[1] = xa.stdio[2] = slave;
        xa.tty = true;
        (void)fcntl(x.master, F_SETFL, O_NONBLOCK);
        (void)loop_add(x.loop, &x.master_src, x.master, EPOLLIN, x_on_master, &x);
    }
    if (ops->exec(x.b, &xa, &x.e) < 0)
        goto out;
    if (slave >= 0)
        close(slave), slave = -1;
    (void)loop_add(x.loop, &x.exec_src, ops->exec_pidfd(x.e), EPOLLIN, x_on_exec, &x);
    loop_timer_init(&timer, x_on_timeout, &x);
    loop_timer_set_in(x.loop, &timer, (uint64_t)timeout_s * 1000);
    while (!x.bottle_done)
        (void)loop_run(x.loop);
    loop_timer_stop(x.loop, &timer);
    /* what the pty still holds */
    while (x.master >= 0 && x.master_src.registered && loop_run_once(x.loop, 200) > 0)
        ;
out:
    if (slave >= 0)
        close(slave);
    if (x.e)
        ops->exec_free(x.e);
    channel_host_relay_free(relay);
    if (x.b)
        ops->destroy(x.b);
    if (x.master >= 0)
        close(x.master);
    if (x.loop)
        loop_free(x.loop);
    return x.status;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "init", required_argument, NULL, 'I' },  { "workspace", required_argument, NULL, 'w' },
        { "alias", required_argument, NULL, 'a' }, { "name", required_argument, NULL, 'n' },
        { "uid", required_argument, NULL, 'u' },   { "gid", required_argument, NULL, 'g' },
        { "mount", required_argument, NULL, 'm' }, { "memory", required_argument, NULL, 'M' },
        { "cpus", required_argument, NULL, 'c' },  { "timeout", required_argument, NULL, 'T' },
        { "probe", no_argument, NULL, 'p' },       { "chan-stats", no_argument, NULL, 'S' },
        { "proxy", required_argument, NULL, 'P' }, { "dns", required_argument, NULL, 'D' },
        { "close-chan", no_argument, NULL, 'C' },  { "exec", required_argument, NULL, 'X' },
        { "exec-tty", no_argument, NULL, 'Y' },    { NULL, 0, NULL, 0 },
    };
    const struct backend_ops *ops = &backend_microvm_ops;
    struct bottle_spec spec = { 0 };
    struct backend_probe probe;
    struct backend_create_args ca = { .handoff_fd = -1 };
    struct backend_started started = { .pidfd = -1, .channel_fd = -1 };
    struct bottle *b = NULL;
    char ws[PATH_MAX], *ws_arg = NULL, home[PATH_MAX];
    const char *init = BB_INIT_BUILD_PATH, *alias = "127.77.0.2", *name = "vm-test";
    long long uid = -1, gid = -1, deadline;
    uint64_t v, timeout_s = 120, memory_mib = 0;
    struct passwd *pw;
    struct stat st;
    bool do_probe = false, chan_stats = false, have_proxy = false, have_dns = false;
    bool close_chan = false, killed = false, exec_tty = false;
    const char *exec_cmd = NULL;
    unsigned long long chan_bytes = 0;
    struct channel_host_config hc = { 0 };
    pid_t relay_pid = -1;
    int c, r, status = 125, chan = -1, devnull = -1;

    log_set_prefix("vm-launch");
    spec.tmpfs_size[BOTTLE_TMPFS_TMP] = spec.tmpfs_size[BOTTLE_TMPFS_HOME] = 256ULL << 20;
    spec.tmpfs_size[BOTTLE_TMPFS_SHM] = 64ULL << 20;
    while ((c = getopt_long(argc, argv, "+w:", opts, NULL)) != -1) {
        switch (c) {
        case 'I':
            init = optarg;
            break;
        case 'w':
            ws_arg = optarg;
            break;
        case 'a':
            alias = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'u':
        case 'g':
            if (str_to_u64_cstr(optarg, UINT32_MAX - 1, &v) < 0)
                return usage();
            *(c == 'u' ? &uid : &gid) = (long long)v;
            break;
        case 'm':
            if (bottle_spec_add_mount_arg(&spec, optarg) < 0) {
                log_error("bad --mount %s", optarg);
                return 2;
            }
            break;
        case 'M':
            if (str_to_u64_cstr(optarg, 1 << 20, &memory_mib) < 0 ||
                memory_mib < MICROVM_MIN_MEMORY_MIB)
                return usage();
            break;
        case 'c':
            if (str_to_u64_cstr(optarg, MICROVM_MAX_CPUS, &v) < 0 || v == 0)
                return usage();
            ca.cpus_milli = (uint32_t)v * 1000;
            break;
        case 'T':
            if (str_to_u64_cstr(optarg, 3600, &timeout_s) < 0)
                return usage();
            break;
        case 'p':
            do_probe = true;
            break;
        case 'S':
            chan_stats = true;
            break;
        case 'C':
            close_chan = true;
            break;
        case 'X':
            exec_cmd = optarg;
            break;
        case 'Y':
            exec_tty = true;
            break;
        case 'P':
        case 'D':
            if (net_addr_parse(optarg, 0, c == 'P' ? &hc.proxy : &hc.dns) < 0) {
                log_error("bad --%s %s (ADDR:PORT)", c == 'P' ? "proxy" : "dns", optarg);
                return 2;
            }
            *(c == 'P' ? &have_proxy : &have_dns) = true;
            break;
        default:
            return usage();
        }
    }
    if (have_proxy != have_dns) {
        log_error("--proxy and --dns go together");
        return 2;
    }
    ca.paths.init = init;
    (void)ops->probe(&ca.paths, &probe);
    if (do_probe) {
        printf("%s: %s\n", probe.available ? "available" : "unavailable", probe.reason);
        return probe.available ? 0 : 1;
    }
    if (!probe.available) {
        log_error("cannot boot a microVM: %s", probe.reason);
        return 125;
    }
    if (optind >= argc)
        return usage();
    for (int i = optind; i < argc; i++)
        if (bottle_spec_add_arg(&spec, argv[i]) < 0)
            return 2;
    if (!realpath(ws_arg ? ws_arg : ".", ws) || stat(ws, &st) < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "workspace %s", ws_arg ? ws_arg : ".");
        return 125;
    }
    spec.uid = (uint32_t)(uid >= 0 ? uid : geteuid() == 0 ? st.st_uid : geteuid());
    spec.gid = (uint32_t)(gid >= 0 ? gid : geteuid() == 0 ? st.st_gid : getegid());
    pw = getpwuid(spec.uid);
    if (str_printf(home, sizeof(home), "%s",
                   pw && pw->pw_dir && pw->pw_dir[0] == '/' && strcmp(pw->pw_dir, "/") != 0 &&
                           bottle_path_is_canonical(pw->pw_dir)
                       ? pw->pw_dir
                       : "/home/user") < 0)
        return 125;
    (void)bottle_spec_set_str(&spec.name, name);
    (void)bottle_spec_set_str(&spec.hostname, name);
    (void)bottle_spec_set_str(&spec.user, pw ? pw->pw_name : "user");
    (void)bottle_spec_set_str(&spec.home, home);
    (void)bottle_spec_set_str(&spec.workspace, ws);
    (void)bottle_spec_set_str(&spec.channel, "fd:3"); /* the backend sets its port */
    if (getenv("TERM"))
        (void)bottle_spec_set_env(&spec, "TERM", getenv("TERM"));
    if (inet_pton(AF_INET, alias, &spec.alias) != 1) {
        log_error("bad --alias %s", alias);
        return 2;
    }
    if (memory_mib)
        ca.memory_bytes = (memory_mib + memory_mib / 32 + MICROVM_QEMU_OVERHEAD_MIB + 1) << 20;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ca.spec = &spec;
    ca.stdio[0] = devnull;
    ca.stdio[1] = STDOUT_FILENO;
    ca.stdio[2] = STDERR_FILENO;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (exec_cmd) {
        if (!have_proxy) { /* nothing answers: connections are refused */
            (void)net_addr_parse("127.0.0.1:9", 0, &hc.proxy);
            (void)net_addr_parse("127.0.0.1:9", 0, &hc.dns);
        }
        status = run_with_exec(ops, &ca, &hc, exec_cmd, exec_tty, (int)timeout_s);
        goto out;
    }
    if (ops->create(&ca, &b) == 0)
        microvm_console_stdio(b); /* no loop here to pump channel streams */
    if (!b || ops->start(b, &started) < 0)
        goto out; /* logged */
    chan = started.channel_fd;
    if (close_chan) {
        close(chan);
        chan = -1;
    } else if (have_proxy) {
        relay_pid = fork();
        if (relay_pid == 0)
            run_host_relay(chan, &hc);
        if (relay_pid < 0)
            log_errno(LOG_LVL_ERROR, -errno, "fork (host relay)");
        close(chan); /* the relay's now */
        chan = -1;
    }

    deadline = now_ms() + (long long)timeout_s * 1000;
    for (;;) {
        struct pollfd p[2] = { { .fd = started.pidfd, .events = POLLIN },
                               { .fd = chan, .events = POLLIN } };
        long long left = deadline - now_ms();
        char tmp[4096];

        if (got_signal && !killed) {
            (void)ops->request_stop(b);
            got_signal = 0;
        }
        if (left <= 0 && !killed) {
            log_error("the VM did not finish in %llu s; killing QEMU (raise --timeout)",
                      (unsigned long long)timeout_s);
            (void)ops->kill(b);
            killed = true;
        }
        if (poll(p, 2, (int)(left > 1000 ? 1000 : left > 0 ? left : 1000)) < 0 && errno != EINTR)
            break;
        if (p[1].revents && chan >= 0) {
            /* Held open but unanswered: what the guest sends is dropped. */
            ssize_t n = read(chan, tmp, sizeof(tmp));
            if (n > 0)
                chan_bytes += (unsigned long long)n;
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                close(chan), chan = -1;
        }
        if (p[0].revents)
            break;
    }
    r = ops->wait(b, &status);
    if (r < 0 || killed)
        status = killed ? 124 : 125;
    if (relay_pid > 0) {
        kill(relay_pid, SIGTERM);
        (void)waitpid(relay_pid, NULL, 0);
    }
    if (chan_stats && relay_pid > 0)
        fprintf(stderr, "vm-launch: channel: connected, relayed\n");
    else if (chan_stats)
        fprintf(stderr, "vm-launch: channel: connected, %llu bytes from the guest\n", chan_bytes);
out:
    if (chan >= 0)
        close(chan);
    ops->destroy(b);
    if (devnull >= 0)
        close(devnull);
    bottle_spec_done(&spec);
    return status;
}
