/*
 * vm-launch: boots one bottle as a microVM with bottle-init as the guest's init, without the
 * supervisor, the backend API or an egress daemon, and exits with the command's status. For
 * tests/integration/test-microvm-guest.sh (bottle-init's guest mode) and for timing.
 *
 *   vm-launch [--init PATH] [-w DIR] [--alias A] [--name N] [--uid N] [--gid N]
 *             [--mount SRC:DST[:ro]]... [--memory MIB] [--cpus N] [--timeout SEC] [-t]
 *             [--chan-stats] [--proxy ADDR:PORT --dns ADDR:PORT | --close-chan] -- CMD...
 *   vm-launch --probe        exit 0 when QEMU and a guest kernel are there, 1 (with why) if not
 *
 * It writes the spec (rootfs 9p, channel /dev/virtio-ports/bottle.chan), a per-run initramfs
 * with the spec and the host's public /etc files (backend/microvm/initramfs.h), listens on
 * the ctl and chan unix sockets QEMU connects to, and runs QEMU (nice 10, the accelerator the
 * probe picks, the argv from backend/microvm/qemu-args.h) with its console on our stdout.
 * The guest's "exit N" line on bottle.ctl is our exit status; none: 125. The channel is
 * accepted and held open, but nothing answers on it (no egress daemon); --chan-stats prints
 * on stderr whether QEMU connected it and how many bytes the guest's relay sent. With --proxy
 * and --dns, the host relay (channel/relay.h) runs on it instead, in a child process, and
 * connects the guest's proxy and DNS streams to those addresses (a local fake). --close-chan
 * closes it as soon as QEMU connects (the guest must fail closed).
 *
 * As root, QEMU runs as the bottle's uid/gid (default: the workspace's owner), never as root
 * unless the workspace belongs to root (docs/microvm.md, S10 rule 1).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/microvm/initramfs.h"
#include "backend/microvm/probe.h"
#include "backend/microvm/qemu-args.h"
#include "channel/relay.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "guest/rootfs.h"
#include "guest/spec.h"

#ifndef BB_INIT_BUILD_PATH
#define BB_INIT_BUILD_PATH "bottle-init"
#endif

static volatile sig_atomic_t qemu_pid = -1;

static void forward(int sig)
{
    if (qemu_pid > 0)
        kill(qemu_pid, sig == SIGINT ? SIGTERM : sig);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: vm-launch [--init PATH] [-w DIR] [--alias A] [--name N] [--uid N] [--gid N]"
            " [--mount S:D[:ro]] [--memory MIB] [--cpus N] [--timeout SEC] [-t] -- CMD...\n"
            "       vm-launch --probe\n");
    return 2;
}

static int listen_unix(const char *path, uid_t uid, gid_t gid)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (str_printf(sa.sun_path, sizeof(sa.sun_path), "%s", path) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0 ||
        (geteuid() == 0 && chown(path, uid, gid) < 0)) {
        int r = errno ? -errno : -ENAMETOOLONG;
        close(fd);
        return r;
    }
    return fd;
}

/*
 * A share's host directory, opened without following any symlink (an earlier bottle may have
 * replaced a --mount source with one: docs/bottle-init.md, "microvm"). QEMU inherits the O_PATH
 * fd and gets "/proc/self/fd/N" as the share's path, so the path is not looked up twice.
 * Returns the fd or -errno (-ELOOP for a symlink).
 */
static int share_open(const char *path, char *ret, size_t size)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
    int r;

    if (fd < 0)
        return -errno;
    r = str_printf(ret, size, "/proc/self/fd/%d", fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "init", required_argument, NULL, 'I' },
        { "workspace", required_argument, NULL, 'w' },
        { "alias", required_argument, NULL, 'a' },
        { "name", required_argument, NULL, 'n' },
        { "uid", required_argument, NULL, 'u' },
        { "gid", required_argument, NULL, 'g' },
        { "mount", required_argument, NULL, 'm' },
        { "memory", required_argument, NULL, 'M' },
        { "cpus", required_argument, NULL, 'c' },
        { "timeout", required_argument, NULL, 'T' },
        { "tty", no_argument, NULL, 't' },
        { "probe", no_argument, NULL, 'p' },
        { "chan-stats", no_argument, NULL, 'S' },
        { "proxy", required_argument, NULL, 'P' },
        { "dns", required_argument, NULL, 'D' },
        { "close-chan", no_argument, NULL, 'C' },
        { NULL, 0, NULL, 0 },
    };
    struct bottle_spec spec = { 0 };
    struct microvm_probe probe;
    struct microvm_qemu_config qc = { .cpus = 1, .memory_mib = 512 };
    struct microvm_share shares[1 + 2 + BOTTLE_SPEC_MAX_MOUNTS];
    char tags[BOTTLE_SPEC_MAX_MOUNTS][16], share_paths[1 + BOTTLE_SPEC_MAX_MOUNTS][32];
    struct buf enc = BUF_INIT(BOTTLE_SPEC_MAX_SIZE);
    struct buf ctl = BUF_INIT(4096);
    char ws[PATH_MAX], *ws_arg = NULL, home[PATH_MAX], dir[] = "/tmp/bb-vm.XXXXXX";
    char initrd[PATH_MAX] = "", ctl_path[PATH_MAX] = "", chan_path[PATH_MAX] = "";
    const char *init = BB_INIT_BUILD_PATH, *alias = "127.77.0.2", *name = "vm-test";
    char **qargv = NULL;
    long long uid = -1, gid = -1, deadline;
    uint64_t v, timeout_s = 120;
    struct passwd *pw;
    struct stat st;
    bool do_probe = false, chan_stats = false, chan_accepted = false;
    unsigned long long chan_bytes = 0;
    struct channel_host_config hc = { 0 };
    bool have_proxy = false, have_dns = false, close_chan = false;
    pid_t relay_pid = -1;
    int ctl_l = -1, chan_l = -1, ctl_c = -1, chan_c = -1, pidfd = -1;
    int c, r, status = 125, wstatus;
    size_t n_shares = 0;

    log_set_prefix("vm-launch");
    spec.tmpfs_size[BOTTLE_TMPFS_TMP] = spec.tmpfs_size[BOTTLE_TMPFS_HOME] = 256ULL << 20;
    spec.tmpfs_size[BOTTLE_TMPFS_SHM] = 64ULL << 20;
    while ((c = getopt_long(argc, argv, "+w:t", opts, NULL)) != -1) {
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
            if (str_to_u64_cstr(optarg, 1 << 20, &v) < 0)
                return usage();
            qc.memory_mib = v;
            break;
        case 'c':
            if (str_to_u64_cstr(optarg, MICROVM_MAX_CPUS, &v) < 0)
                return usage();
            qc.cpus = (unsigned)v;
            break;
        case 'T':
            if (str_to_u64_cstr(optarg, 3600, &timeout_s) < 0)
                return usage();
            break;
        case 't':
            spec.tty = true;
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
    microvm_probe_run(NULL, &probe);
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
    (void)bottle_spec_set_str(&spec.channel, "/dev/virtio-ports/" MICROVM_PORT_CHAN);
    spec.rootfs = BOTTLE_ROOTFS_9P;
    if (getenv("TERM"))
        (void)bottle_spec_set_env(&spec, "TERM", getenv("TERM"));
    if (inet_pton(AF_INET, alias, &spec.alias) != 1) {
        log_error("bad --alias %s", alias);
        return 2;
    }
    r = bottle_spec_encode(&spec, &enc);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "encoding the spec");
        return 125;
    }

    /* The run's private directory: the initramfs and the two sockets, QEMU's user only. */
    if (!mkdtemp(dir)) {
        log_errno(LOG_LVL_ERROR, -errno, "mkdtemp");
        return 125;
    }
    if (geteuid() == 0 && chown(dir, spec.uid, spec.gid) < 0) {
        r = -errno;
        log_errno(LOG_LVL_ERROR, r, "chown %s", dir);
        goto out;
    }
    if (str_printf(initrd, sizeof(initrd), "%s/initramfs.cpio", dir) < 0 ||
        str_printf(ctl_path, sizeof(ctl_path), "%s/ctl.sock", dir) < 0 ||
        str_printf(chan_path, sizeof(chan_path), "%s/chan.sock", dir) < 0)
        goto out;
    {
        struct initramfs_bottle ib = { .spec = enc.p, .spec_len = enc.len, .host_etc = "/etc" };
        r = initramfs_write_bottle(init, &ib, initrd);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "writing the initramfs from %s", init);
            goto out;
        }
    }
    ctl_l = listen_unix(ctl_path, spec.uid, spec.gid);
    chan_l = listen_unix(chan_path, spec.uid, spec.gid);
    if (ctl_l < 0 || chan_l < 0) {
        log_errno(LOG_LVL_ERROR, ctl_l < 0 ? ctl_l : chan_l, "listening in %s", dir);
        goto out;
    }

    /* Shares in the order bottle-init expects their tags (rootfs.h). */
    shares[n_shares++] = (struct microvm_share){ GUEST_9P_TAG_USR, "/usr", true };
    r = share_open(ws, share_paths[0], sizeof(share_paths[0]));
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "opening the workspace %s", ws);
        goto out;
    }
    shares[n_shares++] = (struct microvm_share){ GUEST_9P_TAG_WORKSPACE, share_paths[0], false };
    for (size_t i = 0; i < spec.n_mounts; i++) {
        if (n_shares >= MICROVM_MAX_SHARES ||
            str_printf(tags[i], sizeof(tags[i]), GUEST_9P_TAG_MOUNT_FMT, i) < 0) {
            log_error("too many --mount");
            goto out;
        }
        r = share_open(spec.mounts[i].src, share_paths[1 + i], sizeof(share_paths[1 + i]));
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r,
                      r == -ELOOP ? "--mount source %s is or passes through a symbolic link"
                                  : "--mount source %s",
                      spec.mounts[i].src);
            goto out;
        }
        shares[n_shares++] =
            (struct microvm_share){ tags[i], share_paths[1 + i], spec.mounts[i].ro };
    }
    qc.accel = probe.accel;
    qc.tsc_khz = probe.cpu_khz;
    qc.qemu = probe.qemu;
    qc.kernel = probe.kernel.path;
    qc.initrd = initrd;
    qc.ctl_socket = ctl_path;
    qc.chan_socket = chan_path;
    qc.shares = shares;
    qc.n_shares = n_shares;
    r = microvm_qemu_argv(&qc, &qargv);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "building QEMU's command line");
        goto out;
    }

    signal(SIGTERM, forward);
    signal(SIGINT, forward);
    signal(SIGHUP, forward);
    {
        pid_t pid = fork();
        if (pid < 0) {
            log_errno(LOG_LVL_ERROR, -errno, "fork");
            goto out;
        }
        if (pid == 0) {
            gid_t g = spec.gid;
            int null = open("/dev/null", O_RDONLY);
            if (null < 0 || dup2(null, STDIN_FILENO) < 0)
                _exit(125);
            (void)!nice(10);
            if (geteuid() == 0 && (setgroups(1, &g) < 0 || setresgid(g, g, g) < 0 ||
                                   setresuid(spec.uid, spec.uid, spec.uid) < 0))
                _exit(125);
            execv(qargv[0], qargv);
            _exit(127);
        }
        qemu_pid = pid;
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    }

    deadline = now_ms() + (long long)timeout_s * 1000;
    for (;;) {
        struct pollfd p[5] = {
            { .fd = pidfd, .events = POLLIN },  { .fd = ctl_l, .events = POLLIN },
            { .fd = chan_l, .events = POLLIN }, { .fd = ctl_c, .events = POLLIN },
            { .fd = chan_c, .events = POLLIN },
        };
        long long left = deadline - now_ms();
        char tmp[4096];

        if (left <= 0) {
            log_error("the VM did not finish in %llu s; killing QEMU (raise --timeout)",
                      (unsigned long long)timeout_s);
            kill(qemu_pid, SIGKILL);
            status = 124;
            break;
        }
        if (poll(p, 5, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)
            break;
        if (p[1].revents && ctl_c < 0) {
            ctl_c = accept4(ctl_l, NULL, NULL, SOCK_CLOEXEC);
            close(ctl_l); /* one connection: QEMU's */
            ctl_l = -1;
        }
        if (p[2].revents && chan_c < 0) {
            chan_c = accept4(chan_l, NULL, NULL, SOCK_CLOEXEC);
            chan_accepted = chan_c >= 0;
            if (chan_accepted && close_chan) {
                close(chan_c);
                chan_c = -1;
            } else if (chan_accepted && have_proxy) {
                relay_pid = fork();
                if (relay_pid == 0)
                    run_host_relay(chan_c, &hc);
                if (relay_pid < 0)
                    log_errno(LOG_LVL_ERROR, -errno, "fork (host relay)");
                close(chan_c); /* the relay's now */
                chan_c = -1;
            }
            close(chan_l);
            chan_l = -1;
        }
        if (p[3].revents && ctl_c >= 0) {
            ssize_t n = read(ctl_c, tmp, sizeof(tmp));
            if (n > 0)
                (void)buf_append(&ctl, tmp, (size_t)n);
            else if (n == 0 || errno != EINTR)
                close(ctl_c), ctl_c = -1;
        }
        if (p[4].revents && chan_c >= 0) {
            /* Held open but unanswered: what the guest sends is dropped. */
            ssize_t n = read(chan_c, tmp, sizeof(tmp));
            if (n > 0)
                chan_bytes += (unsigned long long)n;
            if (n == 0 || (n < 0 && errno != EINTR))
                close(chan_c), chan_c = -1;
        }
        if (p[0].revents)
            break;
    }
    /* QEMU is gone (or killed): what it sent on ctl is in the socket buffer. */
    while (ctl_c >= 0) {
        char tmp[4096];
        ssize_t n = read(ctl_c, tmp, sizeof(tmp));
        if (n <= 0)
            break;
        (void)buf_append(&ctl, tmp, (size_t)n);
    }
    if (waitpid(qemu_pid, &wstatus, 0) == qemu_pid && status != 124) {
        const char *line = ctl.len ? buf_str(&ctl) : "";
        uint64_t code;

        if (strncmp(line, "exit ", 5) == 0 && line[strlen(line) - 1] == '\n') {
            char num[16];
            size_t l = strlen(line) - 6;
            if (l < sizeof(num)) {
                memcpy(num, line + 5, l);
                num[l] = '\0';
                if (str_to_u64_cstr(num, 255, &code) == 0)
                    status = (int)code;
            }
        }
        if (status == 125 && strcmp(line, "exit 125\n") != 0)
            log_error("the guest reported no exit status (QEMU %s %d; ctl said \"%.40s\")",
                      WIFEXITED(wstatus) ? "exited with" : "killed by signal",
                      WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : WTERMSIG(wstatus), line);
    }
    if (relay_pid > 0) {
        kill(relay_pid, SIGTERM);
        (void)waitpid(relay_pid, NULL, 0);
    }
    if (chan_stats && relay_pid > 0)
        fprintf(stderr, "vm-launch: channel: connected, relayed\n");
    else if (chan_stats)
        fprintf(stderr, "vm-launch: channel: %s, %llu bytes from the guest\n",
                chan_accepted ? "connected" : "not connected", chan_bytes);
out:
    if (ctl_l >= 0)
        close(ctl_l);
    if (chan_l >= 0)
        close(chan_l);
    if (ctl_c >= 0)
        close(ctl_c);
    if (chan_c >= 0)
        close(chan_c);
    if (pidfd >= 0)
        close(pidfd);
    (void)unlink(ctl_path);
    (void)unlink(chan_path);
    (void)unlink(initrd);
    (void)rmdir(dir);
    microvm_argv_free(qargv);
    buf_done(&ctl);
    buf_done(&enc);
    bottle_spec_done(&spec);
    return status;
}
