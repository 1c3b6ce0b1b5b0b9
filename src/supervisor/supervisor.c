#include "supervisor/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "channel/relay.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "egress/egress.h"
#include "guest/spec.h"
#include "supervisor/alias.h"
#include "supervisor/stdio-relay.h"
#include "supervisor/protect.h"
#include "supervisor/tty.h"

#define DAEMON_READY_TIMEOUT_MS 10000
/* The host-side DNS port of the daemon. Inside the bottle the relay always listens on A:53
 * (the bottle owns its network namespace); on the host, ports below 1024 need privilege, so
 * an unprivileged supervisor's daemon listens on A:5353 instead. The alias is this bottle's
 * alone, so the port cannot collide with another bottle. */
#define HOST_DNS_PORT_ROOT 53
#define HOST_DNS_PORT_USER 5353
#define STOP_GRACE_MS 5000
#define AUDIT_POLL_MS 200
#define MAX_NOTIFIED_HOSTS 256

struct sv {
    const struct supervisor_opts *o;
    char root[512], dir[700], aliases[600], audit[1024];
    char name[BOTTLE_SPEC_MAX_NAME + 1];
    int dir_lock;
    struct alias_lease alias;
    struct loop *loop;

    pid_t daemon_pid;
    int daemon_pidfd;
    int handoff; /* the bottle's end of the connection hand-off socket (channel/handoff.h) */
    struct loop_source daemon_src;

    const struct backend_ops *be;
    struct bottle *bottle;
    struct backend_started started;
    struct loop_source bottle_src;
    struct channel_host_relay *relay;

    bool use_tty;
    struct tty_relay tty;
    /* without -t: the bottle's stdio are pipes (supervisor/stdio-relay.h) */
    struct stdio_relay pipes;
    int devnull;

    /* the blocked-request notices */
    int audit_fd;
    struct buf audit_tail;
    struct loop_timer audit_timer;
    char *notified[MAX_NOTIFIED_HOSTS];
    size_t n_notified;

    struct protect_plan protect; /* read-only workspace paths and their placeholders */

    struct loop_timer kill_timer;
    bool stopping;
    int status;
    bool done;
};

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal_(int pidfd, int sig)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

int supervisor_state_root(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    const char *over = getenv("BOT_BOTTLE_STATE_DIR");
    int r;

    if (over && over[0] == '/')
        r = str_printf(buf, size, "%s", over);
    else if (geteuid() == 0)
        r = str_printf(buf, size, "/run/bot-bottle");
    else if (xdg && xdg[0] == '/')
        r = str_printf(buf, size, "%s/bot-bottle", xdg);
    else
        r = str_printf(buf, size, "/tmp/bot-bottle-%u", (unsigned)geteuid());
    return r;
}

static int mkdir_private(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    /* Refuse a directory someone else planted for us (e.g. in /tmp). */
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077))
        return -EPERM;
    return 0;
}

/* Remove a state directory's known files and the directory. */
static void remove_state_dir(const char *dir)
{
    static const char *const files[] = { "info.json", ".info.json.tmp", "lock" };
    char p[1024];

    for (size_t i = 0; i < ARRAY_SIZE(files); i++)
        if (str_printf(p, sizeof(p), "%s/%s", dir, files[i]) == 0)
            unlink(p);
    rmdir(dir);
}

/*
 * Bottles whose supervisor died (kill -9) leave their state directory behind, unlocked.
 * Their processes are gone already (PDEATHSIG), their alias lock was dropped by the kernel.
 */
static void reclaim_stale(const char *bottles)
{
    DIR *d = opendir(bottles);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char dir[1024], lock[1100];
        int fd;
        if (de->d_name[0] == '.')
            continue;
        if (str_printf(dir, sizeof(dir), "%s/%s", bottles, de->d_name) < 0 ||
            str_printf(lock, sizeof(lock), "%s/lock", dir) < 0)
            continue;
        fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            remove_state_dir(dir); /* no lock file: a half-created directory */
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            log_info("removing stale state of bottle '%s' (its supervisor is gone)", de->d_name);
            remove_state_dir(dir);
        }
        close(fd);
    }
    closedir(d);
}

static bool name_valid(const char *n)
{
    size_t len = strlen(n);

    if (len == 0 || len > BOTTLE_SPEC_MAX_NAME || !ascii_isalnum(n[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!ascii_isalnum(n[i]) && n[i] != '-' && n[i] != '_' && n[i] != '.')
            return false;
    return true;
}

static int setup_state(struct sv *s)
{
    char bottles[600], logs[600];
    int r;

    if ((r = supervisor_state_root(s->root, sizeof(s->root))) < 0)
        return log_errno(LOG_LVL_ERROR, r, "state directory path too long");
    if ((r = mkdir_private(s->root)) < 0)
        return log_errno(LOG_LVL_ERROR, r,
                         "cannot use the state directory %s (it must be a directory owned by "
                         "you, mode 0700)",
                         s->root);
    snprintf(bottles, sizeof(bottles), "%s/bottles", s->root);
    snprintf(logs, sizeof(logs), "%s/logs", s->root);
    snprintf(s->aliases, sizeof(s->aliases), "%s/aliases", s->root);
    if ((r = mkdir_private(bottles)) < 0 || (r = mkdir_private(logs)) < 0 ||
        (r = mkdir_private(s->aliases)) < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot create the state directories under %s", s->root);
    reclaim_stale(bottles);

    if (s->o->name) {
        if (!name_valid(s->o->name)) {
            log_error("invalid bottle name '%s': use up to %d letters, digits, '-', '_' or '.', "
                      "starting with a letter or digit",
                      s->o->name, BOTTLE_SPEC_MAX_NAME);
            return -EINVAL;
        }
        snprintf(s->name, sizeof(s->name), "%s", s->o->name);
    } else {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
            rnd = (uint32_t)getpid();
        snprintf(s->name, sizeof(s->name), "bb-%06x", rnd & 0xffffff);
    }
    snprintf(s->dir, sizeof(s->dir), "%s/%s", bottles, s->name);
    if (mkdir(s->dir, 0700) < 0) {
        if (errno == EEXIST) {
            log_error("a bottle named '%s' is already running; choose another --name", s->name);
            return -EEXIST;
        }
        return log_errno(LOG_LVL_ERROR, -errno, "cannot create %s", s->dir);
    }
    {
        char lock[800];
        snprintf(lock, sizeof(lock), "%s/lock", s->dir);
        s->dir_lock = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->dir_lock < 0 || flock(s->dir_lock, LOCK_EX | LOCK_NB) < 0)
            return log_errno(LOG_LVL_ERROR, -errno, "cannot lock %s", lock);
    }
    if (s->o->audit_path)
        snprintf(s->audit, sizeof(s->audit), "%s", s->o->audit_path);
    else
        snprintf(s->audit, sizeof(s->audit), "%s/%s.audit.log", logs, s->name);
    r = alias_acquire(s->aliases, BOTTLE_PROXY_PORT, &s->alias);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot allocate a loopback alias in 127.77.0.0/16");
    return 0;
}

static void write_info(struct sv *s)
{
    char path[800], tmp[800];
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s}", "name", s->name, "backend",
                          s->be ? s->be->name : "", "alias", s->alias.text, "pid", (int)getpid(),
                          "bottle_pid", (int)s->started.pid, "daemon_pid", (int)s->daemon_pid,
                          "audit", s->audit, "workspace", s->o->workspace);
    json_t *roots = o ? json_array() : NULL; /* the dirs we protect */
    for (size_t i = 0; roots && i < s->protect.roots.n; i++)
        json_array_append_new(roots, json_string(s->protect.roots.v[i]));
    if (roots)
        json_object_set_new(o, "protect_roots", roots);
    if (!o)
        return;
    /* Written aside and renamed, so a reader never sees half a file. */
    snprintf(tmp, sizeof(tmp), "%s/.info.json.tmp", s->dir);
    snprintf(path, sizeof(path), "%s/info.json", s->dir);
    if (json_dump_file(o, tmp, JSON_COMPACT) == 0)
        rename(tmp, path);
    json_decref(o);
}

/* ---------------------------------------------------------------- egress daemon */

static int host_dns_port(void)
{
    return geteuid() == 0 ? HOST_DNS_PORT_ROOT : HOST_DNS_PORT_USER;
}

/*
 * The egress daemon parses what the bottle sends and must hold nothing of the host it does not
 * need (DESIGN.md: started by exec, empty environment, explicit fds). So it is a fork + exec of
 * this very binary (/proc/self/exe opened as O_PATH and execveat'd: the binary now at our path
 * on disk may have been replaced, the inode we run from cannot be) as `bot-bottle egress`,
 * with the policy as arguments (o->daemon_args: the config files with their pinned hashes,
 * the command line's patterns), an empty environment (it needs no variable: no HOME, no
 * XDG_CONFIG_HOME since it never searches for a config file, and it resolves through
 * --upstream-dns or /etc/resolv.conf), and exactly these descriptors:
 *   0 /dev/null, 1 /dev/null, 2 the supervisor's stderr (the daemon's fatal errors and reload
 *   refusals go there), 3 the ready pipe (--ready-fd 3), 4 the hand-off socket (--handoff-fd 4).
 */
static int start_daemon(struct sv *s, struct policy *policy)
{
    _cleanup_close_ int exe = -1;
    int pipefd[2], hand[2], r;
    pid_t parent = getpid(), pid;
    char listen[64], dns[64];
    struct strv argv = { 0 };
    char *const envp[] = { NULL };

    policy_free(policy); /* the daemon builds the same policy from the same arguments */
    exe = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    if (exe < 0)
        return log_errno(LOG_LVL_ERROR, -errno,
                         "cannot open /proc/self/exe to start the "
                         "egress daemon");
    snprintf(listen, sizeof(listen), "%s:%d", s->alias.text, BOTTLE_PROXY_PORT);
    snprintf(dns, sizeof(dns), "%s:%d", s->alias.text, host_dns_port());
    strv_push(&argv, "bot-bottle");
    strv_push(&argv, "egress");
    /* the user sees the command, not the daemon (unless -v) */
    strv_push(&argv, log_get_level() >= LOG_LVL_DEBUG ? "--verbose" : "--quiet");
    strv_push(&argv, "--listen");
    strv_push(&argv, listen);
    strv_push(&argv, "--dns");
    strv_push(&argv, dns);
    strv_push(&argv, "--name");
    strv_push(&argv, s->name);
    strv_push(&argv, "--audit");
    strv_push(&argv, s->audit);
    strv_push(&argv, "--ready-fd");
    strv_push(&argv, "3");
    strv_push(&argv, "--handoff-fd");
    strv_push(&argv, "4");
    for (size_t i = 0; i < s->o->daemon_args.n; i++)
        strv_push(&argv, s->o->daemon_args.v[i]);

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        strv_done(&argv);
        return log_errno(LOG_LVL_ERROR, -errno, "pipe");
    }
    /* Proxy connections made inside a namespace bottle are handed to the daemon directly. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hand) < 0) {
        r = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        strv_done(&argv);
        return log_errno(LOG_LVL_ERROR, r, "socketpair");
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        r = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        close(hand[0]);
        close(hand[1]);
        strv_done(&argv);
        return log_errno(LOG_LVL_ERROR, r, "cannot start the egress daemon");
    }
    if (pid == 0) {
        static const char fail[] = "bot-bottle: error: cannot exec the egress daemon\n";
        sigset_t none;
        int null = s->devnull, ready, ho, ex;

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
        ho = fcntl(hand[0], F_DUPFD_CLOEXEC, 10);
        ex = fcntl(exe, F_DUPFD_CLOEXEC, 10);
        if (null < 0 || ready < 0 || ho < 0 || ex < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
            dup2(ready, 3) < 0 || dup2(ho, 4) < 0 || dup3(ex, 5, O_CLOEXEC) < 0)
            _exit(125);
        /* Nothing else of the supervisor's: not the terminal, not the locks, not the bottle's
         * channel. */
        close_range(6, ~0u, 0);
        if (chdir("/") < 0)
            _exit(125);
        syscall(SYS_execveat, 5, "", argv.v, envp, AT_EMPTY_PATH);
        if (write(STDERR_FILENO, fail, sizeof(fail) - 1) < 0)
            _exit(125);
        _exit(125);
    }
    strv_done(&argv);
    close(pipefd[1]);
    close(hand[0]);
    s->handoff = hand[1];
    s->daemon_pid = pid;
    s->daemon_pidfd = pidfd_open_(pid);
    {
        struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
        char buf[8] = { 0 };
        ssize_t n = 0;
        if (RETRY_EINTR(poll(&pfd, 1, DAEMON_READY_TIMEOUT_MS)) == 1)
            n = read(pipefd[0], buf, sizeof(buf) - 1);
        close(pipefd[0]);
        if (n <= 0 || strncmp(buf, "ready", 5) != 0) {
            log_error("the egress daemon did not start (see above); the bottle is not started");
            return -EIO;
        }
    }
    return 0;
}

static void stop_daemon(struct sv *s)
{
    if (s->daemon_pid <= 0)
        return;
    if (s->daemon_pidfd >= 0) {
        struct pollfd pfd = { .fd = s->daemon_pidfd, .events = POLLIN };
        pidfd_signal_(s->daemon_pidfd, SIGTERM);
        if (RETRY_EINTR(poll(&pfd, 1, 3000)) == 0)
            pidfd_signal_(s->daemon_pidfd, SIGKILL);
    } else {
        kill(s->daemon_pid, SIGKILL);
    }
    RETRY_EINTR(waitpid(s->daemon_pid, NULL, 0));
    s->daemon_pid = 0;
}

/* ---------------------------------------------------------------- events */

static void request_stop(struct sv *s)
{
    if (s->stopping || !s->started.pid)
        return;
    s->stopping = true;
    /* bottle-init forwards SIGTERM to the command; if it lingers, it is killed. */
    pidfd_signal_(s->started.pidfd, SIGTERM);
    loop_timer_set_in(s->loop, &s->kill_timer, STOP_GRACE_MS);
}

static void on_kill_timer(struct loop_timer *t)
{
    struct sv *s = t->userdata;
    log_warn("the bottle did not stop within %d s; killing it", STOP_GRACE_MS / 1000);
    pidfd_signal_(s->started.pidfd, SIGKILL);
}

static void on_bottle_exit(struct loop_source *src, uint32_t ev)
{
    struct sv *s = src->userdata;
    int status = 125;
    (void)ev;

    loop_del(s->loop, src);
    if (s->be->wait(s->bottle, &status) < 0)
        status = 125;
    if (!s->done)
        s->status = status;
    s->done = true;
    /* Every byte the command wrote reaches our stdout/stderr first: the pipes end when the
     * bottle's last process is gone. */
    if (s->use_tty || stdio_relay_finished(&s->pipes))
        loop_quit(s->loop, 0);
}

static void on_stdio_done(void *userdata)
{
    struct sv *s = userdata;
    if (s->done)
        loop_quit(s->loop, 0);
}

static void on_daemon_exit(struct loop_source *src, uint32_t ev)
{
    struct sv *s = src->userdata;
    (void)ev;

    loop_del(s->loop, src);
    if (s->done)
        return;
    log_error("the egress daemon of bottle '%s' died; the bottle has no network without it and "
              "is being stopped",
              s->name);
    s->status = 125;
    s->done = true; /* keep 125 whatever the command returns now */
    request_stop(s);
}

static void on_channel_dead(void *ud, int err)
{
    struct sv *s = ud;
    if (s->stopping || s->done)
        return;
    log_debug("channel closed (%s)", strerror(-err));
}

static void on_signal(struct loop *l, int signo, void *ud)
{
    struct sv *s = ud;
    (void)l;

    if (signo == SIGWINCH) {
        if (s->use_tty)
            tty_relay_resize(&s->tty);
        return;
    }
    if (s->done) {
        loop_quit(s->loop, 0); /* the bottle is gone: stop waiting for a slow reader */
        return;
    }
    request_stop(s);
}

/* Show each blocked host once, on our stderr (never inside the command's output). */
static void notice_denials(struct sv *s)
{
    char tmp[8192];
    ssize_t n;
    char *nl;

    while ((n = read(s->audit_fd, tmp, sizeof(tmp))) > 0)
        if (buf_append(&s->audit_tail, tmp, (size_t)n) < 0)
            buf_init(&s->audit_tail, 1 << 20); /* a runaway line: drop it */
    /* The daemon rotates the log (NAME.audit.log -> NAME.audit.log.1) at its size cap: once the
     * old file is read to its end, follow the name to the new file. A truncated file is read
     * again from its start. */
    {
        struct stat fst, pst;
        if (fstat(s->audit_fd, &fst) == 0 && stat(s->audit, &pst) == 0) {
            if (pst.st_dev != fst.st_dev || pst.st_ino != fst.st_ino) {
                int fd = open(s->audit, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd >= 0) {
                    close(s->audit_fd);
                    s->audit_fd = fd;
                    while ((n = read(s->audit_fd, tmp, sizeof(tmp))) > 0)
                        if (buf_append(&s->audit_tail, tmp, (size_t)n) < 0)
                            buf_init(&s->audit_tail, 1 << 20);
                }
            } else if (lseek(s->audit_fd, 0, SEEK_CUR) > fst.st_size) {
                lseek(s->audit_fd, 0, SEEK_SET);
                buf_reset(&s->audit_tail);
            }
        }
    }
    while (s->audit_tail.len && (nl = memchr(s->audit_tail.p, '\n', s->audit_tail.len))) {
        size_t len = (size_t)(nl - s->audit_tail.p);
        json_t *o = json_loadb(s->audit_tail.p, len, 0, NULL);
        const char *host = NULL, *reason = NULL, *decision = NULL;
        bool seen = false;

        if (o &&
            json_unpack(o, "{s:s, s:s, s:s}", "host", &host, "reason", &reason, "decision",
                        &decision) == 0 &&
            strcmp(decision, "deny") == 0) {
            for (size_t i = 0; i < s->n_notified; i++)
                if (strcmp(s->notified[i], host) == 0)
                    seen = true;
            if (!seen && s->n_notified < MAX_NOTIFIED_HOSTS) {
                const char *eol = s->use_tty ? "\r\n" : "\n";
                s->notified[s->n_notified++] = xstrdup(host);
                if (strcmp(reason, "not-allowlisted") == 0)
                    fprintf(stderr,
                            "bot-bottle: blocked %s (not in the allowlist); to allow it, "
                            "add --allow %s%s",
                            host, host, eol);
                else
                    fprintf(stderr, "bot-bottle: blocked %s (%s); see docs/policy.md%s", host,
                            reason, eol);
            }
        }
        json_decref(o);
        buf_consume(&s->audit_tail, len + 1);
    }
}

static void on_audit_timer(struct loop_timer *t)
{
    struct sv *s = t->userdata;
    notice_denials(s);
    loop_timer_set_in(s->loop, t, AUDIT_POLL_MS);
}

/* ---------------------------------------------------------------- the bottle */

/*
 * The bottle's user: ours; but as root started through sudo (SUDO_UID/SUDO_GID set), the
 * user who ran sudo, so that what the bottle writes on the host is theirs, not root's
 * (docs/namespace.md, "User and group ids").
 */
static int bottle_ids(uid_t *ret_uid, gid_t *ret_gid)
{
    const char *su = getenv("SUDO_UID"), *sg = getenv("SUDO_GID");
    uint64_t u, g;

    *ret_uid = getuid();
    *ret_gid = getgid();
    if (geteuid() != 0 || getuid() != 0 || !su || !sg)
        return 0;
    if (str_to_u64_cstr(su, UINT32_MAX - 1, &u) < 0 ||
        str_to_u64_cstr(sg, UINT32_MAX - 1, &g) < 0) {
        log_error("SUDO_UID '%s' / SUDO_GID '%s' are not ids; unset both to run the bottle "
                  "as root",
                  su, sg);
        return -EINVAL;
    }
    *ret_uid = (uid_t)u;
    *ret_gid = (gid_t)g;
    return 0;
}

/*
 * True when another live bottle of this state root runs on the same workspace: its
 * protections may sit on placeholders (removing one would detach its mount).
 */
static bool workspace_used_by_another(struct sv *s, const char *dir)
{
    char bottles[600];
    DIR *d;
    struct dirent *de;
    bool used = false;

    if (!s->root[0] || !s->o->workspace)
        return false;
    snprintf(bottles, sizeof(bottles), "%s/bottles", s->root);
    d = opendir(bottles);
    if (!d)
        return false;
    while (!used && (de = readdir(d))) {
        char path[1024];
        _cleanup_close_ int fd = -1;
        json_t *o;
        const char *ws = NULL;
        if (de->d_name[0] == '.' || strcmp(de->d_name, s->name) == 0 ||
            str_printf(path, sizeof(path), "%s/%s/lock", bottles, de->d_name) < 0)
            continue;
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0)
            continue; /* not running */
        if (str_printf(path, sizeof(path), "%s/%s/info.json", bottles, de->d_name) < 0)
            continue;
        o = json_load_file(path, 0, NULL);
        /* no info yet: it is starting, and may have seen our placeholders */
        if (!o || (json_unpack(o, "{s:s}", "workspace", &ws) == 0 && strcmp(ws, dir) == 0))
            used = true;
        for (size_t i = 0; o && i < json_array_size(json_object_get(o, "protect_roots")); i++) {
            const char *r =
                json_string_value(json_array_get(json_object_get(o, "protect_roots"), i));
            if (r && strcmp(r, dir) == 0)
                used = true;
        }
        json_decref(o);
    }
    closedir(d);
    return used;
}

/*
 * A workspace that is a home directory, or holds one, gives the bottle the user's dotfiles
 * (~/.bashrc, ~/.profile, ~/.gitconfig, ~/.ssh, ~/.config/...), which the host runs or trusts
 * later: the bottle's private $HOME tmpfs lies beneath the workspace mount and is hidden.
 * Checked for the bottle's user and the invoking one (root without sudo: the same).
 */
static int refuse_home_workspace(const char *ws, const char *home)
{
    char real[PATH_MAX];
    size_t n = strlen(ws);

    if (!home || home[0] != '/' || !realpath(home, real))
        return 0;
    if (strcmp(real, ws) != 0 && !(strncmp(real, ws, n) == 0 && (n == 1 || real[n] == '/')))
        return 0;
    log_error("the workspace %s %s the home directory %s: the bottle could write the "
              "dotfiles the host runs later (~/.bashrc, ~/.gitconfig, ~/.ssh, ...). Run "
              "bot-bottle in a project directory (cd DIR, or --workspace DIR)",
              ws, strcmp(real, ws) == 0 ? "is" : "holds", real);
    return -EPERM;
}

static int build_spec(struct sv *s, struct bottle_spec *spec)
{
    struct passwd *pw;
    const char *term = getenv("TERM");
    uid_t uid;
    gid_t gid;
    int r = 0;

    memset(spec, 0, sizeof(*spec));
    r = bottle_ids(&uid, &gid);
    if (r < 0)
        return r;
    pw = getpwuid(uid);
    spec->alias = s->alias.addr;
    spec->uid = uid;
    spec->gid = gid;
    spec->tty = s->use_tty;
    spec->tmpfs_size[BOTTLE_TMPFS_TMP] = s->o->tmp_size;
    spec->tmpfs_size[BOTTLE_TMPFS_HOME] = s->o->home_size;
    spec->tmpfs_size[BOTTLE_TMPFS_SHM] = s->o->shm_size;
    spec->rootfs = BOTTLE_ROOTFS_BIND;
    if ((r = bottle_spec_set_str(&spec->name, s->name)) < 0 ||
        (r = bottle_spec_set_str(&spec->hostname, s->name)) < 0 ||
        (r = bottle_spec_set_str(&spec->user, pw ? pw->pw_name : "user")) < 0 ||
        (r = bottle_spec_set_str(&spec->home,
                                 pw && pw->pw_dir[0] == '/' ? pw->pw_dir : "/home/user")) < 0 ||
        (r = bottle_spec_set_str(&spec->workspace, s->o->workspace)) < 0 ||
        (r = bottle_spec_set_str(&spec->channel, "fd:3")) < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot build the bottle spec");
    {
        struct passwd *me = getpwuid(geteuid());
        if ((r = refuse_home_workspace(s->o->workspace, spec->home)) < 0 ||
            (me && (r = refuse_home_workspace(s->o->workspace, me->pw_dir)) < 0))
            return r;
    }
    if (term && (r = bottle_spec_set_env(spec, "TERM", term)) < 0)
        return log_errno(LOG_LVL_ERROR, r, "TERM");
    for (size_t i = 0; i < s->o->env.n; i++) {
        const char *kv = s->o->env.v[i], *eq = strchr(kv, '=');
        char name[256];
        if (!eq || (size_t)(eq - kv) >= sizeof(name)) {
            log_error("--env '%s': expected NAME=VALUE", kv);
            return -EINVAL;
        }
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        r = bottle_spec_set_env(spec, name, eq + 1);
        if (r < 0) {
            log_error("--env %s: not a valid variable to pass (bot-bottle sets the proxy and "
                      "BOT_BOTTLE variables itself)",
                      name);
            return r;
        }
    }
    for (size_t i = 0; i < s->o->mounts.n; i++) {
        char at[PATH_MAX];
        r = bottle_spec_add_mount_arg(spec, s->o->mounts.v[i]);
        if (r < 0) {
            log_error("--mount '%s': expected SRC:DST[:ro] with absolute, canonical paths",
                      s->o->mounts.v[i]);
            return r;
        }
        /* bottle-init refuses it too (it opens the source without following symlinks); this
         * says so before anything starts */
        r = protect_check_nofollow(spec->mounts[spec->n_mounts - 1].src, at, sizeof(at));
        if (r == -ELOOP) {
            log_error("--mount %s: %s is a symbolic link (a bottle may have swapped it); "
                      "bot-bottle mounts no source through a symlink: check it, then give the "
                      "real path ($(realpath %s))",
                      s->o->mounts.v[i], at, spec->mounts[spec->n_mounts - 1].src);
            return r;
        }
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "--mount %s: %s", s->o->mounts.v[i], at);
    }
    /* The workspace paths the host runs later are read-only inside (docs/workspace.md). */
    r = protect_plan_build(s->o->workspace, &s->o->allow_write, &s->protect);
    for (size_t i = 0; r >= 0 && i < spec->n_mounts; i++)
        if (!spec->mounts[i].ro)
            r = protect_plan_add_mount(spec->mounts[i].src, spec->mounts[i].dst, &s->o->allow_write,
                                       &s->protect);
    if (r < 0)
        return r;
    {
        char reg[600];
        snprintf(reg, sizeof(reg), "%s/placeholders", s->root);
        r = protect_registry_add(reg, s->o->workspace, &s->protect);
        if (r < 0)
            log_errno(LOG_LVL_WARN, r, "cannot record the placeholders in %s", reg);
    }
    for (size_t i = 0; i < s->protect.paths.n; i++)
        if (bottle_spec_protect_ok(spec, s->protect.paths.v[i]) && /* not in a :ro mount */
            (r = bottle_spec_add_protect(spec, s->protect.paths.v[i])) < 0)
            return log_errno(LOG_LVL_ERROR, r, "too many protected paths");
    for (char **a = s->o->argv; *a; a++)
        if ((r = bottle_spec_add_arg(spec, *a)) < 0)
            return log_errno(LOG_LVL_ERROR, r, "command too long");
    return 0;
}

static int start_bottle(struct sv *s)
{
    struct bottle_spec spec;
    struct backend_create_args ca = { 0 };
    struct backend_probe probe = { 0 };
    struct channel_host_config hc = { 0 };
    char addr[64];
    int r;

    r = backend_select(s->o->backend, NULL, &s->be, &probe);
    if (r == -ENOENT) {
        log_error("unknown backend '%s'; run 'bot-bottle doctor' for the list", s->o->backend);
        return r;
    }
    if (r < 0) {
        log_error("the %s backend cannot run here: %s", s->o->backend, probe.reason);
        return r;
    }
    r = build_spec(s, &spec);
    if (r < 0) {
        bottle_spec_done(&spec);
        return r;
    }
    ca.spec = &spec;
    ca.paths.init = s->o->init_path;
    ca.cpus_milli = s->o->cpus_milli;
    ca.handoff_fd = s->handoff;
    ca.memory_bytes = s->o->memory_bytes;
    ca.pids_max = s->o->pids_max;
    if (s->use_tty) {
        ca.stdio[0] = ca.stdio[1] = ca.stdio[2] = s->tty.slave;
    } else {
        /* Never our own stdio: pipes relayed by the loop (S11). */
        for (size_t i = 0; i < 3; i++)
            ca.stdio[i] = s->pipes.child[i];
    }
    r = s->be->create(&ca, &s->bottle);
    bottle_spec_done(&spec);
    if (r < 0)
        return r;
    r = s->be->start(s->bottle, &s->started);
    if (r < 0)
        return r;
    /* bottle-init has its copy; ours would keep the socket open after the bottle is gone. */
    close(s->handoff);
    s->handoff = -1;
    if (s->use_tty) {
        /* Only the bottle holds the slave now: its exit shows as EIO/HUP on the master. */
        close(s->tty.slave);
        s->tty.slave = -1;
    } else {
        stdio_relay_close_child(&s->pipes); /* EOF on the pipes = the bottle is gone */
    }
    snprintf(addr, sizeof(addr), "%s:%d", s->alias.text, BOTTLE_PROXY_PORT);
    net_addr_parse(addr, 0, &hc.proxy);
    snprintf(addr, sizeof(addr), "%s:%d", s->alias.text, host_dns_port());
    net_addr_parse(addr, 0, &hc.dns);
    hc.dead = on_channel_dead;
    hc.userdata = s;
    r = channel_host_relay_start(s->loop, s->started.channel_fd, &hc, &s->relay);
    s->started.channel_fd = -1;
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot start the channel relay");
    r = loop_add(s->loop, &s->bottle_src, s->started.pidfd, EPOLLIN, on_bottle_exit, s);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot watch the bottle");
    return 0;
}

int supervisor_run(const struct supervisor_opts *o, struct policy *policy)
{
    struct sv s = {
        .o = o, .dir_lock = -1, .daemon_pidfd = -1, .handoff = -1, .audit_fd = -1, .status = 125
    };
    int r;

    s.alias.lock_fd = -1;
    s.started.channel_fd = -1;
    s.started.pidfd = -1;
    s.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    buf_init(&s.audit_tail, 1 << 20);
    signal(SIGPIPE, SIG_IGN);

    r = setup_state(&s);
    if (r < 0)
        goto out;
    r = loop_new(&s.loop);
    if (r < 0)
        goto out;
    loop_timer_init(&s.kill_timer, on_kill_timer, &s);
    loop_timer_init(&s.audit_timer, on_audit_timer, &s);

    /* The audit log: created now so we can follow it from the start. */
    {
        /* Never through a symlink: one planted there would make the daemon append to (and
         * us create) whatever file it names. */
        int fd = open(s.audit, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            if (errno == ELOOP)
                log_error("the audit log %s is a symbolic link; bot-bottle does not follow it "
                          "(name the file itself with --audit)",
                          s.audit);
            else
                log_errno(LOG_LVL_ERROR, -errno, "cannot create the audit log %s", s.audit);
            r = -EPERM;
            goto out;
        }
        close(fd);
        s.audit_fd = open(s.audit, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (s.audit_fd >= 0)
            lseek(s.audit_fd, 0, SEEK_END);
    }

    r = start_daemon(&s, TAKE_PTR(policy));
    if (r < 0)
        goto out;
    r = loop_add(s.loop, &s.daemon_src, s.daemon_pidfd, EPOLLIN, on_daemon_exit, &s);
    if (r < 0)
        goto out;

    s.use_tty = o->tty;
    if (s.use_tty) {
        if (!isatty(STDIN_FILENO)) {
            log_error("-t needs a terminal on stdin; run without -t (with -i to pass stdin)");
            r = -ENOTTY;
            goto out;
        }
        r = tty_relay_open(&s.tty, s.loop, STDIN_FILENO, STDOUT_FILENO);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "cannot open a pseudo-terminal");
            s.use_tty = false;
            goto out;
        }
    } else {
        r = stdio_relay_open(&s.pipes, s.loop, o->interactive, s.devnull, STDIN_FILENO,
                             STDOUT_FILENO, STDERR_FILENO);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "cannot create the pipes for the command's stdio");
            goto out;
        }
    }
    if ((r = loop_add_signal(s.loop, SIGINT, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGTERM, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGHUP, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGWINCH, on_signal, &s)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "signal setup");
        goto out;
    }
    r = start_bottle(&s);
    if (r < 0)
        goto out;
    write_info(&s);
    if (s.use_tty && (r = tty_relay_start(&s.tty)) < 0)
        goto out;
    if (!s.use_tty && (r = stdio_relay_start(&s.pipes, on_stdio_done, &s)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot relay the command's stdio");
        goto out;
    }
    loop_timer_set_in(s.loop, &s.audit_timer, AUDIT_POLL_MS);
    r = loop_run(s.loop);
    if (s.use_tty)
        tty_relay_flush(&s.tty);
    notice_denials(&s);
out:
    if (s.use_tty)
        tty_relay_done(&s.tty);
    stdio_relay_done(&s.pipes);
    channel_host_relay_free(s.relay);
    if (s.bottle)
        s.be->destroy(s.bottle); /* kills and reaps what is still running */
    {
        /* The last bottle to leave a workspace (or a --mount source) removes every
         * placeholder made for it. */
        bool shared = workspace_used_by_another(&s, s.o->workspace);
        char reg[600];
        snprintf(reg, sizeof(reg), "%s/placeholders", s.root);
        for (size_t i = 0; s.o->workspace && i < s.protect.roots.n; i++) {
            const char *root = s.protect.roots.v[i];
            if (strcmp(root, s.o->workspace) == 0)
                continue;
            if (workspace_used_by_another(&s, root))
                shared = true; /* keeps this bottle's own too: simpler, errs on the safe side */
            else if (s.root[0])
                protect_registry_clean(reg, root);
        }
        if (!shared && s.root[0] && s.o->workspace)
            protect_registry_clean(reg, s.o->workspace);
        protect_plan_done(&s.protect, !shared);
    }
    if (s.started.channel_fd >= 0)
        close(s.started.channel_fd);
    stop_daemon(&s);
    if (s.daemon_pidfd >= 0)
        close(s.daemon_pidfd);
    if (s.loop) {
        loop_timer_stop(s.loop, &s.kill_timer);
        loop_timer_stop(s.loop, &s.audit_timer);
    }
    loop_free(s.loop);
    alias_release(s.aliases, &s.alias);
    if (s.dir[0] && s.dir_lock >= 0) {
        remove_state_dir(s.dir);
        close(s.dir_lock);
    }
    if (s.audit_fd >= 0)
        close(s.audit_fd);
    if (s.devnull >= 0)
        close(s.devnull);
    if (s.handoff >= 0)
        close(s.handoff);
    buf_done(&s.audit_tail);
    for (size_t i = 0; i < s.n_notified; i++)
        free(s.notified[i]);
    policy_free(policy);
    return s.done ? s.status : 125;
}
