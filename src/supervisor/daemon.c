/* Starting and stopping the egress daemon (daemon.h). */
#include "supervisor/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/pidfd.h"
#include "common/str.h"
#include "common/buf.h"
#include "common/xalloc.h"
#include "egress/egress.h"

#define DAEMON_READY_TIMEOUT_MS 10000
#define DAEMON_STOP_GRACE_MS 3000
#define DAEMON_CONTROL_TIMEOUT_MS 2000

int daemon_host_dns_port(void)
{
    return geteuid() == 0 ? HOST_DNS_PORT_ROOT : HOST_DNS_PORT_USER;
}

/*
 * The egress daemon parses what the bottle sends and must hold nothing of the host it does not
 * need (DESIGN.md: started by exec, empty environment, explicit fds). So it is a fork + exec of
 * this very binary (/proc/self/exe opened as O_PATH and execveat'd: the binary now at our path
 * on disk may have been replaced, the inode we run from cannot be) as `bot-bottle egress`,
 * with the policy as arguments (c->extra: the config files with their pinned hashes, the
 * command line's patterns), an empty environment (it needs no variable: no HOME, no
 * XDG_CONFIG_HOME since it never searches for a config file, and it resolves through
 * --upstream-dns or /etc/resolv.conf), and exactly these descriptors:
 *   0 /dev/null, 1 /dev/null, 2 the supervisor's stderr (the daemon's fatal errors and reload
 *   refusals go there), 3 the ready pipe (--ready-fd 3), 4 the hand-off socket (--handoff-fd 4),
 *   5 the control socket (--control-fd 5) over which we change its policy at run time.
 */
static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

int daemon_start(const struct daemon_config *c, struct egress_daemon *d)
{
    _cleanup_close_ int exe = -1;
    int pipefd[2] = { -1, -1 }, hand[2] = { -1, -1 }, ctl[2] = { -1, -1 }, cp[2] = { -1, -1 },
        rl[2] = { -1, -1 }, r;
    pid_t parent = getpid(), pid = -1;
    const char *what = NULL;
    char listen[64], dns[64];
    struct strv argv = { 0 };
    char *const envp[] = { NULL };

    d->pid = 0;
    d->pidfd = -1;
    d->handoff = -1;
    d->control = -1;
    d->relay = -1;
    d->ca_pem = NULL;
    d->ca_pem_len = 0;
    d->term_sent = false;
    exe = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    if (exe < 0)
        return log_errno(LOG_LVL_ERROR, -errno,
                         "cannot open /proc/self/exe to start the "
                         "egress daemon");
    snprintf(listen, sizeof(listen), "%s:%d", c->alias, c->proxy_port);
    snprintf(dns, sizeof(dns), "%s:%d", c->alias, daemon_host_dns_port());
    strv_push(&argv, "bot-bottle");
    strv_push(&argv, "egress");
    /* the user sees the command, not the daemon (unless -v) */
    strv_push(&argv, log_get_level() >= LOG_LVL_DEBUG ? "--verbose" : "--quiet");
    if (c->creds) {
        /* Only the bottle reaches a daemon that holds credentials: no TCP listener any host
         * process could connect to; the hand-off and the relay socket are the way in. */
        strv_push(&argv, "--no-listen");
        strv_push(&argv, "--credentials-fd");
        strv_push(&argv, "7");
        strv_push(&argv, "--relay-fd");
        strv_push(&argv, "8");
    } else {
        strv_push(&argv, "--listen");
        strv_push(&argv, listen);
    }
    strv_push(&argv, "--dns");
    strv_push(&argv, dns);
    strv_push(&argv, "--name");
    strv_push(&argv, c->name);
    strv_push(&argv, "--audit");
    strv_push(&argv, c->audit);
    strv_push(&argv, "--ready-fd");
    strv_push(&argv, "3");
    if (c->handoff) {
        strv_push(&argv, "--handoff-fd");
        strv_push(&argv, "4");
    }
    strv_push(&argv, "--control-fd");
    strv_push(&argv, "5");
    for (size_t i = 0; c->extra && i < c->extra->n; i++)
        strv_push(&argv, c->extra->v[i]);

    /* Every descriptor pair, then the fork; a failure on the way closes what exists. */
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        what = "pipe";
    else if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
        what = "socketpair";
    /* Proxy connections made inside a namespace bottle are handed to the daemon directly. */
    else if (c->handoff && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hand) < 0)
        what = "socketpair";
    else if (c->creds && (pipe2(cp, O_CLOEXEC) < 0 ||
                          socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rl) < 0))
        what = "cannot create the credential pipe";
    else {
        fflush(NULL);
        pid = fork();
        if (pid < 0)
            what = "cannot start the egress daemon";
    }
    if (what) {
        r = -errno;
        close_pair(pipefd);
        close_pair(ctl);
        close_pair(hand);
        close_pair(cp);
        close_pair(rl);
        strv_done(&argv);
        return log_errno(LOG_LVL_ERROR, r, "%s", what);
    }
    if (pid == 0) {
        static const char fail[] = "bot-bottle: error: cannot exec the egress daemon\n";
        sigset_t none;
        int null = c->devnull, ready, ho = -1, cf, ex, cr = -1, rs = -1;

        /* The daemon dies with its supervisor, however the supervisor dies (kept across exec:
         * the binary is not setuid). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(125);
        setsid();
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (null < 0)
            null = open("/dev/null", O_RDWR | O_CLOEXEC);
        /* Move every source above the fixed slots first, so placing one cannot clobber
         * another; the copies are close-on-exec, the fixed slots (dup2) are not. */
        null = fcntl(null, F_DUPFD_CLOEXEC, 10);
        ready = fcntl(pipefd[1], F_DUPFD_CLOEXEC, 10);
        if (hand[0] >= 0)
            ho = fcntl(hand[0], F_DUPFD_CLOEXEC, 10);
        cf = fcntl(ctl[0], F_DUPFD_CLOEXEC, 10);
        ex = fcntl(exe, F_DUPFD_CLOEXEC, 10);
        if (cp[0] >= 0) {
            cr = fcntl(cp[0], F_DUPFD_CLOEXEC, 10);
            rs = fcntl(rl[0], F_DUPFD_CLOEXEC, 10);
            if (cr < 0 || rs < 0)
                _exit(125);
        }
        if (null < 0 || ready < 0 || (hand[0] >= 0 && ho < 0) || cf < 0 || ex < 0 ||
            dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(ready, 3) < 0 ||
            (ho >= 0 && dup2(ho, 4) < 0) || dup2(cf, 5) < 0 || dup3(ex, 6, O_CLOEXEC) < 0 ||
            (cr >= 0 && (dup2(cr, 7) < 0 || dup2(rs, 8) < 0)))
            _exit(125);
        /* Nothing else of the supervisor's: not the terminal, not the locks, not the bottle's
         * channel, not the control socket's listener. */
        close_range(cr >= 0 ? 9 : 7, ~0u, 0);
        if (chdir("/") < 0)
            _exit(125);
        syscall(SYS_execveat, 6, "", argv.v, envp, AT_EMPTY_PATH);
        if (write(STDERR_FILENO, fail, sizeof(fail) - 1) < 0)
            _exit(125);
        _exit(125);
    }
    strv_done(&argv);
    close(pipefd[1]);
    close(ctl[0]);
    if (hand[0] >= 0)
        close(hand[0]);
    d->handoff = hand[1];
    d->control = ctl[1];
    d->pid = pid;
    r = bb_pidfd_open(pid);
    d->pidfd = r < 0 ? -1 : r;
    if (cp[0] >= 0) {
        /* The credentials go over the pipe; the daemon reads it to its end before "ready". */
        size_t off = 0;
        close(cp[0]);
        close(rl[0]);
        d->relay = rl[1];
        while (off < c->creds_len) {
            ssize_t w = write(cp[1], c->creds + off, c->creds_len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(cp[1]);
        if (off < c->creds_len) {
            log_error("cannot give the egress daemon its credentials (it exited?); the bottle "
                      "is not started");
            daemon_stop(d);
            close(pipefd[0]);
            return -EIO;
        }
    }
    {
        /* "ready\n", then (with TLS interception) the CA certificate, then EOF */
        struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
        struct buf msg = BUF_INIT(64 * 1024);
        char tmp[4096];
        ssize_t n = 1;
        while (n > 0 && RETRY_EINTR(poll(&pfd, 1, DAEMON_READY_TIMEOUT_MS)) == 1) {
            n = read(pipefd[0], tmp, sizeof(tmp));
            if (n > 0 && buf_append(&msg, tmp, (size_t)n) < 0)
                break;
        }
        close(pipefd[0]);
        if (msg.len < 6 || strncmp(buf_str(&msg), "ready\n", 6) != 0) {
            buf_done(&msg);
            log_error("the egress daemon did not start (see above); the bottle is not started");
            daemon_stop(d);
            return -EIO;
        }
        /* "tls\n": it can intercept (hosts added at run time too), then its CAs if any */
        d->tls = msg.len >= 10 && strncmp(buf_str(&msg) + 6, "tls\n", 4) == 0;
        if (d->tls && msg.len > 10) {
            d->ca_pem_len = msg.len - 10;
            d->ca_pem = xmalloc(d->ca_pem_len + 1);
            memcpy(d->ca_pem, buf_str(&msg) + 10, d->ca_pem_len + 1);
        }
        buf_done(&msg);
    }
    return 0;
}

void daemon_request_stop(struct egress_daemon *d)
{
    if (d->pid > 0 && d->pidfd >= 0 && !d->term_sent) {
        (void)bb_pidfd_send_signal(d->pidfd, SIGTERM);
        d->term_sent = true;
    }
}

void daemon_stop(struct egress_daemon *d)
{
    if (d->pid > 0) {
        if (d->pidfd >= 0) {
            struct pollfd pfd = { .fd = d->pidfd, .events = POLLIN };
            daemon_request_stop(d);
            if (RETRY_EINTR(poll(&pfd, 1, DAEMON_STOP_GRACE_MS)) == 0)
                (void)bb_pidfd_send_signal(d->pidfd, SIGKILL);
        } else {
            kill(d->pid, SIGKILL);
        }
        RETRY_EINTR(waitpid(d->pid, NULL, 0));
    }
    d->pid = 0;
    d->term_sent = false;
    if (d->pidfd >= 0)
        close(d->pidfd);
    d->pidfd = -1;
    if (d->handoff >= 0)
        close(d->handoff);
    d->handoff = -1;
    if (d->control >= 0)
        close(d->control);
    d->control = -1;
    if (d->relay >= 0)
        close(d->relay);
    d->relay = -1;
    free(d->ca_pem);
    d->ca_pem = NULL;
    d->ca_pem_len = 0;
    d->tls = false;
}

int daemon_policy_change(struct egress_daemon *d, const char *verb, const char *pattern,
                         char *reterr, size_t errsize, struct buf *ret_ca)
{
    char msg[EGRESS_CONTROL_REPLY_MAX + 1], junk;
    struct pollfd pfd = { .fd = d->control, .events = POLLIN };
    ssize_t n;
    int r;

    reterr[0] = '\0';
    if (d->control < 0)
        return -ENOTCONN;
    r = str_printf(msg, sizeof(msg), "%s %s", verb, pattern);
    if (r < 0 || strlen(msg) > EGRESS_CONTROL_MAX)
        return -E2BIG;
    /* Drop a late reply to an earlier request that timed out. */
    while (recv(d->control, &junk, 1, MSG_DONTWAIT | MSG_TRUNC) > 0)
        ;
    if (send(d->control, msg, strlen(msg), MSG_NOSIGNAL) < 0)
        return -errno;
    r = RETRY_EINTR(poll(&pfd, 1, DAEMON_CONTROL_TIMEOUT_MS));
    if (r == 0)
        return -ETIMEDOUT;
    if (r < 0)
        return -errno;
    n = recv(d->control, msg, sizeof(msg) - 1, MSG_DONTWAIT);
    if (n <= 0)
        return n == 0 ? -ECONNRESET : -errno;
    msg[n] = '\0';
    if (strncmp(msg, "ok", 2) == 0) {
        const char *nl = strchr(msg, '\n');
        if (nl && ret_ca && buf_append_str(ret_ca, nl + 1) < 0)
            return -E2BIG;
        return 0;
    }
    (void)str_printf(reterr, errsize, "%s", strncmp(msg, "error ", 6) == 0 ? msg + 6 : msg);
    return -EINVAL;
}
