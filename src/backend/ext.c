/* Driving an external CLI (ext.h). */
#include "backend/ext.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cgroup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/pidfd.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "guest/spec.h"

extern char **environ;

void ext_argv_push(struct ext_argv *a, const char *s)
{
    a->v = xrealloc(a->v, (a->n + 2) * sizeof(*a->v));
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

void ext_argv_pushf(struct ext_argv *a, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort(); /* OOM, as xmalloc */
    a->v = xrealloc(a->v, (a->n + 2) * sizeof(*a->v));
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

void ext_argv_done(struct ext_argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

void ext_argv_format(char *const *argv, char *buf, size_t size)
{
    size_t n = 0;

    if (!size)
        return;
    buf[0] = '\0';
    for (size_t i = 0; argv && argv[i] && n + 1 < size; i++) {
        const char *s = argv[i];
        bool plain = *s != '\0' && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789_-./:=,@%+") == strlen(s);
        if (i && n + 1 < size)
            buf[n++] = ' ';
        if (!plain && n + 1 < size)
            buf[n++] = '\'';
        for (; *s && n + 1 < size; s++) {
            if (*s == '\'' && n + 5 < size) {
                memcpy(buf + n, "'\\''", 4);
                n += 4;
            } else if (*s != '\'') {
                buf[n++] = *s;
            }
        }
        if (!plain && n + 1 < size)
            buf[n++] = '\'';
        buf[n] = '\0';
    }
}

int ext_find(const char *name, char *buf, size_t size)
{
    const char *path = getenv("PATH"), *p, *end;

    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (p = path; *p; p = *end ? end + 1 : end) {
        end = strchrnul(p, ':');
        if (end == p)
            continue; /* an empty entry would mean ".": never */
        if (*p != '/')
            continue; /* a relative PATH entry: never */
        if (str_printf(buf, size, "%.*s/%s", (int)(end - p), p, name) < 0)
            return -ENAMETOOLONG;
        struct stat st;
        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The child between clone3() and exec: only async-signal-safe calls. Reports errno through
 * err_fd (close-on-exec: EOF means exec succeeded). */
static _noreturn_ void child(char *const *argv, char *const *envp, const int stdio[3], int err_fd,
                             int go_fd)
{
    sigset_t none;
    int moved[3], e;
    char c;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 100);
    if (err_fd < 0)
        _exit(125);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        goto fail;
    /* cgroup v1: the parent moves us into the cgroups first (EOF or a byte: go on) */
    if (go_fd >= 0 && read(go_fd, &c, 1) < 0)
        goto fail;
    for (int i = 0; i < 3; i++) {
        moved[i] = fcntl(stdio[i] >= 0 ? stdio[i] : i, F_DUPFD_CLOEXEC, 100);
        if (moved[i] < 0)
            goto fail;
    }
    for (int i = 0; i < 3; i++)
        if (dup3(moved[i], i, 0) < 0)
            goto fail;
    /* Nothing else of ours: not the state locks, not the control socket. */
    for (int i = 0; i < 3; i++)
        close(moved[i]);
    {
        int keep = err_fd;
        close_range(3, (unsigned)keep - 1, 0);
        close_range((unsigned)keep + 1, ~0u, 0);
    }
    execve(argv[0], argv, envp);
fail:
    e = errno;
    if (write(err_fd, &e, sizeof(e)) < 0)
        _exit(125);
    _exit(125);
}

/* environ without the names env sets, then env; free the array (not the strings). */
static char **merge_env(char *const *env)
{
    size_t n = 0, k = 0, m = 0;
    char **v;

    while (environ && environ[n])
        n++;
    while (env && env[m])
        m++;
    v = xcalloc(n + m + 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool replaced = false;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(env[j], environ[i], nl) == 0 && env[j][nl] == '=';
        if (!replaced)
            v[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        v[k++] = env[j];
    v[k] = NULL;
    return v;
}

static int spawn(char *const *argv, char *const *env, const int stdio[3],
                 const struct bb_cgroup *cg, pid_t *ret_pid, int *ret_pidfd)
{
    struct clone_args a;
    int err_p[2], go[2] = { -1, -1 }, pidfd = -1, e, r;
    char **envp;
    ssize_t n;
    long pid;

    if (pipe2(err_p, O_CLOEXEC) < 0)
        return -errno;
    if (cg && cg->version == 1 && pipe2(go, O_CLOEXEC) < 0) {
        e = errno;
        close(err_p[0]);
        close(err_p[1]);
        return -e;
    }
    envp = merge_env(env);
    memset(&a, 0, sizeof(a));
    a.flags = CLONE_PIDFD;
    a.pidfd = (uint64_t)(uintptr_t)&pidfd;
    a.exit_signal = SIGCHLD;
    if (cg && cg->fd >= 0) {
        a.flags |= CLONE_INTO_CGROUP;
        a.cgroup = (uint64_t)cg->fd;
    }
    fflush(NULL);
    pid = syscall(SYS_clone3, &a, sizeof(a));
    if (pid == 0) {
        close(err_p[0]);
        if (go[1] >= 0)
            close(go[1]);
        child(argv, envp, stdio, err_p[1], go[0]);
    }
    e = errno;
    free(envp);
    close(err_p[1]);
    if (go[0] >= 0)
        close(go[0]);
    if (pid < 0) {
        close(err_p[0]);
        if (go[1] >= 0)
            close(go[1]);
        return -e;
    }
    if (go[1] >= 0) {
        /* into the v1 cgroups before it runs anything; on failure it is killed unreleased */
        r = cgroup_attach(cg, (pid_t)pid);
        if (r < 0) {
            (void)bb_pidfd_send_signal(pidfd, SIGKILL);
            (void)RETRY_EINTR(waitpid((pid_t)pid, NULL, 0));
            close(pidfd);
            close(go[1]);
            close(err_p[0]);
            return r;
        }
        if (write(go[1], "g", 1) != 1) {
            e = errno;
            (void)bb_pidfd_send_signal(pidfd, SIGKILL);
            (void)RETRY_EINTR(waitpid((pid_t)pid, NULL, 0));
            close(pidfd);
            close(go[1]);
            close(err_p[0]);
            return -e;
        }
        close(go[1]);
    }
    n = RETRY_EINTR(read(err_p[0], &e, sizeof(e)));
    close(err_p[0]);
    if (n == (ssize_t)sizeof(e)) {
        (void)RETRY_EINTR(waitpid((pid_t)pid, NULL, 0));
        close(pidfd);
        return -e;
    }
    *ret_pid = (pid_t)pid;
    *ret_pidfd = pidfd;
    return 0;
}

int ext_spawn(char *const *argv, char *const *env, const int stdio[3], const struct bb_cgroup *cg,
              pid_t *ret_pid, int *ret_pidfd)
{
    return spawn(argv, env, stdio, cg, ret_pid, ret_pidfd);
}

void ext_proc_init(struct ext_proc *p)
{
    p->pid = -1;
    p->pidfd = -1;
    p->reaped = false;
    p->status = 0;
}

int ext_proc_start(struct ext_proc *p, const char *who, char *const *argv, char *const *env,
                   const int stdio[3], const struct bb_cgroup *cg, struct backend_started *ret)
{
    char line[1024];
    int r;

    ext_argv_format(argv, line, sizeof(line));
    log_debug("%s: %s", who, line);
    r = ext_spawn(argv, env, stdio, cg, &p->pid, &p->pidfd);
    if (r < 0)
        return r;
    ret->pid = p->pid;
    ret->pidfd = p->pidfd;
    ret->channel_fd = -1;
    return 0;
}

int ext_proc_wait(struct ext_proc *p, int *ret_status)
{
    int r = bb_pidfd_reap_once(p->pidfd, &p->reaped, &p->status);

    if (r < 0)
        return r;
    *ret_status = p->status;
    return 0;
}

int ext_proc_signal(struct ext_proc *p, int sig)
{
    int r;

    if (p->reaped || p->pidfd < 0)
        return 0;
    r = bb_pidfd_send_signal(p->pidfd, sig);
    return r == -ESRCH ? 0 : r;
}

void ext_proc_done(struct ext_proc *p)
{
    if (p->pid > 0 && !p->reaped) {
        siginfo_t si;
        (void)bb_pidfd_send_signal(p->pidfd, SIGKILL);
        (void)bb_pidfd_wait(p->pidfd, &si);
        p->reaped = true;
    }
    if (p->pidfd >= 0)
        close(p->pidfd);
    p->pidfd = -1;
}

const char *ext_spec_bad_path(const struct bottle_spec *spec, const char *bad)
{
    if (strpbrk(spec->workspace, bad) || strpbrk(spec->home, bad))
        return strpbrk(spec->workspace, bad) ? spec->workspace : spec->home;
    for (size_t i = 0; i < spec->n_mounts; i++)
        if (strpbrk(spec->mounts[i].src, bad) || strpbrk(spec->mounts[i].dst, bad))
            return strpbrk(spec->mounts[i].src, bad) ? spec->mounts[i].src : spec->mounts[i].dst;
    for (size_t i = 0; i < spec->n_protect; i++)
        if (strpbrk(spec->protect[i], bad))
            return spec->protect[i];
    return NULL;
}

void ext_bottle_env(const struct bottle_spec *spec, const char *proxy_host, struct ext_argv *out)
{
    static const char *const proxy_vars[] = { "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                              "https_proxy", "ALL_PROXY" };

    for (size_t i = 0; i < ARRAY_SIZE(proxy_vars); i++)
        ext_argv_pushf(out, "%s=http://%s:%d", proxy_vars[i], proxy_host, BOTTLE_PROXY_PORT);
    ext_argv_push(out, "NO_PROXY=localhost,127.0.0.1");
    ext_argv_push(out, "no_proxy=localhost,127.0.0.1");
    ext_argv_push(out, "BOT_BOTTLE=1");
    ext_argv_pushf(out, "BOT_BOTTLE_NAME=%s", spec->name);
}

/* Reads what is there into buf (at most size - 1 bytes kept, the rest drained). Returns bytes
 * read, 0 at EOF, -EAGAIN. */
static ssize_t drain(int fd, char *buf, size_t size, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));

    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    if (buf && size && *len + 1 < size) {
        size_t k = MIN((size_t)n, size - 1 - *len);
        memcpy(buf + *len, tmp, k);
        *len += k;
        buf[*len] = '\0';
    }
    return n;
}

int ext_run(char *const *argv, char *out, size_t out_size, char *err, size_t err_size,
            int timeout_ms, int *ret_status)
{
    int o[2] = { -1, -1 }, e[2] = { -1, -1 }, null, pidfd = -1, r;
    size_t olen = 0, elen = 0;
    bool o_open = true, e_open = true;
    int64_t deadline = now_ms() + timeout_ms;
    siginfo_t si;
    pid_t pid;

    if (out && out_size)
        out[0] = '\0';
    if (err && err_size)
        err[0] = '\0';
    null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0)
        return -errno;
    if (pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) {
        r = -errno;
        goto out;
    }
    {
        int stdio[3] = { null, o[1], e[1] };
        r = spawn(argv, NULL, stdio, NULL, &pid, &pidfd);
    }
    close(o[1]);
    close(e[1]);
    o[1] = e[1] = -1;
    if (r < 0)
        goto out;
    while (o_open || e_open) {
        struct pollfd p[2] = { { .fd = o_open ? o[0] : -1, .events = POLLIN },
                               { .fd = e_open ? e[0] : -1, .events = POLLIN } };
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        if (poll(p, 2, (int)left) < 0 && errno != EINTR)
            break;
        if (o_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
            drain(o[0], out, out_size, &olen) == 0)
            o_open = false;
        if (e_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
            drain(e[0], err, err_size, &elen) == 0)
            e_open = false;
    }
    {
        /* (also when it closed its output but did not exit) */
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        int64_t left = deadline - now_ms();
        if (left <= 0 || RETRY_EINTR(poll(&p, 1, (int)left)) != 1) {
            (void)bb_pidfd_send_signal(pidfd, SIGKILL);
            (void)bb_pidfd_wait(pidfd, &si);
            r = -ETIMEDOUT;
            goto out;
        }
    }
    r = bb_pidfd_wait(pidfd, &si);
    if (r < 0)
        goto out;
    if (ret_status)
        *ret_status = bb_siginfo_status(&si);
    if (out && olen && out[olen - 1] == '\n')
        out[olen - 1] = '\0';
    if (err && elen && err[elen - 1] == '\n')
        err[elen - 1] = '\0';
    r = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (o[i] >= 0)
            close(o[i]);
        if (e[i] >= 0)
            close(e[i]);
    }
    if (pidfd >= 0)
        close(pidfd);
    close(null);
    return r;
}
