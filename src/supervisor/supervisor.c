#include "supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "channel/relay.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/pidfd.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "config/trust.h"
#include "guest/spec.h"
#include "supervisor/alias.h"
#include "supervisor/bottle-ca.h"
#include "supervisor/control.h"
#include "supervisor/daemon.h"
#include "supervisor/notice.h"
#include "supervisor/state.h"
#include "supervisor/stdio-relay.h"
#include "supervisor/protect.h"
#include "supervisor/tty.h"

#define STOP_GRACE_MS 5000
#define SV_MAX_GRANTS 32 /* timed grants (allow --for) in force at once */

struct sv;
/* A command run by `bot-bottle exec` (backend exec op), tied to its client's connection. */
struct exec_session {
    struct sv *s;
    struct control_conn *conn;
    struct backend_exec *x;
    struct loop_source src; /* its pidfd */
    struct exec_session *next;
};

/* A timed grant (`bot-bottle allow N P --for D`): its deny is sent when the timer fires. */
struct grant {
    struct loop_timer timer;
    struct sv *s;
    char pattern[CONTROL_MAX_PATTERN + 1];
};

struct sv {
    const struct supervisor_opts *o;
    struct state st;        /* the state root (state.h) */
    struct state_bottle sb; /* bottles/NAME, locked while we run */
    char audit[1024];
    char name[BOTTLE_SPEC_MAX_NAME + 1];
    struct alias_lease alias;
    struct loop *loop;

    struct egress_daemon daemon; /* daemon.h */
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

    struct notice notice;           /* the blocked-host notices (notice.h) */
    struct control_server *control; /* bottles/NAME/control (control.h) */

    struct protect_plan protect; /* read-only workspace paths and their placeholders */

    /* start: the main command's terminal, held here (docs/supervisor.md, "Detached
     * bottles"). While nobody is attached the master is read into a ring of the last
     * SV_CONSOLE_RING bytes; an attach client gets a duplicate of the master and the ring. */
    bool console;
    int con_master, con_slave;
    struct loop_source con_src;
    bool con_reading, con_eof;
    char *ring;
    size_t ring_head, ring_len;
    struct control_conn *attached;
    struct exec_session *execs;

    struct loop_timer kill_timer;
    int grace_ms; /* before the kill (stop's "time"; default STOP_GRACE_MS) */
    struct grant *grants[SV_MAX_GRANTS];
    int stop_signo; /* the signal that made us stop the bottle (0: none) */
    bool stopping;
    int status;
    bool done;
};

static int setup_state(struct sv *s)
{
    int r;

    r = state_open(NULL, true, &s->st);
    if (r == -ENAMETOOLONG)
        return log_errno(LOG_LVL_ERROR, r, "state directory path too long");
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r,
                         "cannot use the state directory %s (it and its bottles, logs and "
                         "aliases directories must be owned by you, mode 0700)",
                         s->st.root);
    if (s->o->name) {
        if (!state_name_valid(s->o->name)) {
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
    /* (reclaims the state of bottles whose supervisor is gone first) */
    r = state_bottle_create(&s->st, s->name, &s->sb);
    if (r == -EEXIST) {
        log_error("a bottle named '%s' is already running; choose another --name", s->name);
        return r;
    }
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot create the state of bottle '%s' in %s", s->name,
                         s->st.bottles);
    {
        /* ended bottles' logs do not pile up (docs/cli.md, "Retention") */
        unsigned keep, days;
        state_retention_policy(&keep, &days);
        r = state_logs_retention(&s->st, keep, days, (int64_t)time(NULL));
        if (r > 0)
            log_debug("removed the logs of %d ended bottles (retention)", r);
    }
    if (s->o->audit_path)
        snprintf(s->audit, sizeof(s->audit), "%s", s->o->audit_path);
    else
        snprintf(s->audit, sizeof(s->audit), "%s/%s.audit.log", s->st.logs, s->name);
    r = alias_acquire(s->st.aliases, BOTTLE_PROXY_PORT, &s->alias);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot allocate a loopback alias in 127.77.0.0/16");
    return 0;
}

static void write_info(struct sv *s)
{
    struct state_info i = { .pid = getpid(),
                            .bottle_pid = s->started.pid,
                            .daemon_pid = s->daemon.pid,
                            .protect_roots = s->protect.roots };
    int r;

    snprintf(i.name, sizeof(i.name), "%s", s->name);
    snprintf(i.backend, sizeof(i.backend), "%s", s->be ? s->be->name : "");
    snprintf(i.alias, sizeof(i.alias), "%s", s->alias.text);
    snprintf(i.audit, sizeof(i.audit), "%s", s->audit);
    snprintf(i.workspace, sizeof(i.workspace), "%s", s->o->workspace);
    i.started = (int64_t)time(NULL);
    for (size_t k = 0, n = 0; s->o->argv && s->o->argv[k]; k++) {
        int w = snprintf(i.command + n, sizeof(i.command) - n, "%s%s", k ? " " : "", s->o->argv[k]);
        if (w < 0 || (size_t)w >= sizeof(i.command) - n)
            break; /* cut: `ls` shows a prefix */
        n += (size_t)w;
    }
    r = state_info_write(&s->sb, &i);
    if (r < 0)
        log_errno(LOG_LVL_WARN, r, "cannot write %s/info.json", s->sb.dir);
}

/* ---------------------------------------------------------------- events */

static void request_stop(struct sv *s)
{
    if (s->stopping || !s->started.pid)
        return;
    s->stopping = true;
    /* start: hang up the terminal we hold, as closing a terminal window would (an
     * interactive shell ignores SIGTERM, not SIGHUP) */
    if (s->console && s->con_master >= 0) {
        pid_t fg = 0; /* the terminal's foreground process group, in our pid namespace */
        if (ioctl(s->con_master, TIOCGPGRP, &fg) == 0 && fg > 1)
            (void)kill(-fg, SIGHUP);
    }
    /* Never blocks (namespace: SIGTERM to bottle-init, which forwards it to the command); if
     * the bottle lingers, it is killed. */
    (void)s->be->request_stop(s->bottle);
    loop_timer_set_in(s->loop, &s->kill_timer, s->grace_ms);
}

static void on_kill_timer(struct loop_timer *t)
{
    struct sv *s = t->userdata;
    log_warn("the bottle did not stop within %d s; killing it", s->grace_ms / 1000);
    (void)s->be->kill(s->bottle);
}

static void on_bottle_exit(struct loop_source *src, uint32_t ev)
{
    struct sv *s = src->userdata;
    int status = 125;
    (void)ev;

    loop_del(s->loop, src);
    if (s->be->wait(s->bottle, &status) < 0)
        status = 125;
    /* Stopped because we got SIGINT (or SIGHUP): the command died of the SIGTERM we sent;
     * exit as a program killed by what we got would (130 for SIGINT, as shells do). */
    if (s->stop_signo && s->stop_signo != SIGTERM && status == 128 + SIGTERM)
        status = 128 + s->stop_signo;
    if (!s->done)
        s->status = status;
    s->done = true;
    /* Every byte the command wrote reaches our stdout/stderr first: the pipes end when the
     * bottle's last process is gone. */
    if (s->attached) {
        json_t *m = json_pack("{s:i}", "exit", s->status);
        if (m)
            (void)control_conn_send(s->attached, m);
        json_decref(m);
    }
    if (s->use_tty || s->console || stdio_relay_finished(&s->pipes))
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
    if (s->stopping || s->done || err == 0 || err == -ECONNRESET || err == -EPIPE)
        return; /* (how it ends when the bottle exits) */
    log_debug("channel closed (%s)", strerror(-err));
}

/* ---------------------------------------------------------------- timed grants */

static struct grant **grant_find(struct sv *s, const char *pattern)
{
    for (size_t i = 0; i < SV_MAX_GRANTS; i++)
        if (s->grants[i] && strcmp(s->grants[i]->pattern, pattern) == 0)
            return &s->grants[i];
    return NULL;
}

static void grant_drop(struct sv *s, struct grant **g)
{
    if (!g || !*g)
        return;
    loop_timer_stop(s->loop, &(*g)->timer);
    free(*g);
    *g = NULL;
}

static void on_grant_expired(struct loop_timer *t)
{
    struct grant *g = t->userdata;
    struct sv *s = g->s;
    char why[256];
    int r = daemon_policy_change(&s->daemon, "deny", g->pattern, why, sizeof(why), NULL);

    if (r < 0)
        log_warn("the grant for %s expired but could not be revoked: %s", g->pattern,
                 r == -EINVAL || r == -ENOENT ? why : strerror(-r));
    else
        log_info("the grant for %s expired", g->pattern);
    grant_drop(s, grant_find(s, g->pattern));
}

/* Arm (or re-arm) the expiry of pattern. Returns 0 or -ENOSPC. */
static int grant_arm(struct sv *s, const char *pattern, uint32_t seconds)
{
    struct grant **slot = grant_find(s, pattern);

    for (size_t i = 0; !slot && i < SV_MAX_GRANTS; i++)
        if (!s->grants[i])
            slot = &s->grants[i];
    if (!slot)
        return -ENOSPC;
    if (!*slot) {
        *slot = xcalloc(1, sizeof(**slot));
        (*slot)->s = s;
        snprintf((*slot)->pattern, sizeof((*slot)->pattern), "%s", pattern);
        loop_timer_init(&(*slot)->timer, on_grant_expired, *slot);
    }
    loop_timer_set_in(s->loop, &(*slot)->timer, (uint64_t)seconds * 1000);
    return 0;
}

/* ---------------------------------------------------------------- start, attach, exec */

static void con_watch(struct sv *s, bool on);

/* attach/exec events: in a detached supervisor's log; never on run's terminal (a program may
 * be drawing on it), except with -v */
#define sv_note(s, ...)                                                                            \
    do {                                                                                           \
        if ((s)->o->detach)                                                                        \
            log_info(__VA_ARGS__);                                                                 \
        else                                                                                       \
            log_debug(__VA_ARGS__);                                                                \
    } while (0)

static void on_con_master(struct loop_source *src, uint32_t ev)
{
    struct sv *s = src->userdata;
    char tmp[16384];
    ssize_t n;
    (void)ev;

    n = read(s->con_master, tmp, sizeof(tmp));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        s->con_eof = true; /* EIO: every slave is closed, the bottle is gone */
        con_watch(s, false);
        return;
    }
    /* a ring of the last SV_CONSOLE_RING bytes: the oldest are overwritten, never grown */
    for (ssize_t i = 0; i < n; i++) {
        size_t at = (s->ring_head + s->ring_len) % SV_CONSOLE_RING;
        s->ring[at] = tmp[i];
        if (s->ring_len < SV_CONSOLE_RING)
            s->ring_len++;
        else
            s->ring_head = (s->ring_head + 1) % SV_CONSOLE_RING;
    }
}

static void con_watch(struct sv *s, bool on)
{
    if (on && !s->con_reading && !s->con_eof && s->con_master >= 0)
        s->con_reading =
            loop_add(s->loop, &s->con_src, s->con_master, EPOLLIN, on_con_master, s) == 0;
    else if (!on && s->con_reading) {
        loop_del(s->loop, &s->con_src);
        s->con_reading = false;
    }
}

static void on_attach_closed(void *ud)
{
    struct sv *s = ud;
    s->attached = NULL;
    sv_note(s, "detached from the terminal of bottle '%s'", s->name);
    con_watch(s, true); /* nobody reads it now: back to the ring */
}

/* attach: a duplicate of the pty master and a memfd with the recent output. */
static int do_attach(struct sv *s, const struct control_request *req, json_t *reply)
{
    int fds[2], r;

    if (!s->console) {
        json_object_set_new(reply, "error",
                            json_string("this bottle's command has no terminal to attach to "
                                        "(only bottles made by 'bot-bottle start' have one)"));
        return -ENOTTY;
    }
    if (s->attached) {
        json_object_set_new(reply, "error",
                            json_string("someone is attached already (one at a time; they "
                                        "detach with ctrl-p ctrl-q)"));
        return -EBUSY;
    }
    if (s->done || s->con_eof) {
        json_object_set_new(reply, "error", json_string("the bottle's command has exited"));
        return -ESRCH;
    }
    fds[0] = s->con_master;
    fds[1] = memfd_create("bot-bottle-attach", MFD_CLOEXEC);
    if (fds[1] < 0)
        return -errno;
    {
        size_t first = MIN(s->ring_len, SV_CONSOLE_RING - s->ring_head);
        if ((first && write(fds[1], s->ring + s->ring_head, first) != (ssize_t)first) ||
            (s->ring_len > first &&
             write(fds[1], s->ring, s->ring_len - first) != (ssize_t)(s->ring_len - first)) ||
            lseek(fds[1], 0, SEEK_SET) < 0) {
            r = -errno;
            close(fds[1]);
            return r ? r : -EIO;
        }
    }
    r = control_conn_set_fds(req->conn, fds, 2);
    close(fds[1]);
    if (r < 0)
        return r;
    s->ring_head = s->ring_len = 0; /* shown once; the client reads the master from now on */
    con_watch(s, false);
    s->attached = req->conn;
    control_conn_hold(req->conn, on_attach_closed, s);
    sv_note(s, "attached to the terminal of bottle '%s'", s->name);
    return 0;
}

static void exec_session_free(struct exec_session *e)
{
    struct sv *s = e->s;

    loop_del(s->loop, &e->src);
    for (struct exec_session **pp = &s->execs; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    s->be->exec_free(e->x); /* kills it if it still runs, reaps */
    free(e);
}

static void on_exec_exit(struct loop_source *src, uint32_t ev)
{
    struct exec_session *e = src->userdata;
    int status = 125;
    json_t *m;
    (void)ev;

    loop_del(e->s->loop, &e->src);
    if (e->s->be->exec_wait(e->x, &status) < 0)
        status = 125;
    m = json_pack("{s:i}", "exit", status);
    if (m)
        (void)control_conn_send(e->conn, m);
    json_decref(m);
    control_conn_release(e->conn); /* the client closes it once it has read everything */
    exec_session_free(e);
}

static void on_exec_conn_closed(void *ud)
{
    /* the client went away before its command ended: the command ends too */
    exec_session_free(ud);
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* CRED_PLACEHOLDER_PREFIX of proxy/cred.h (a layer the supervisor does not include) */
#define CRED_PLACEHOLDER_PREFIX "bb-cred-"

static int exec_fail(json_t *reply, int status, const char *msg)
{
    json_object_set_new(reply, "error", json_string(msg));
    json_object_set_new(reply, "status", json_integer(status));
    return status == 127 ? -ENOENT : status == 126 ? -EACCES : -EIO;
}

/*
 * exec: the command runs through the backend's exec op with stdio the supervisor made (a pty
 * of its own, or pipes; never a descriptor of the client's terminal: the client relays its
 * terminal to our ends, which it gets with the reply).
 */
static int do_exec(struct sv *s, const struct control_request *req, json_t *reply)
{
    struct backend_exec_args a = { .argv = req->argv, .env = req->env, .tty = req->tty };
    int child[3] = { -1, -1, -1 }, host[3] = { -1, -1, -1 }, p[2], r;
    struct exec_session *e;
    char msg[512];

    if (!s->be || !s->be->exec) {
        snprintf(msg, sizeof(msg),
                 "the %s backend cannot run another command in a bottle yet (no exec); "
                 "start the bottle with --backend namespace",
                 s->be ? s->be->name : "?");
        return exec_fail(reply, 125, msg);
    }
    /* A credential's variable holds its placeholder in the bottle (run's -e VAR is replaced
     * by it); -e VAR of exec would carry the host's real value in (docs/credentials.md). */
    for (size_t i = 0; req->env[i]; i++) {
        const char *eq = strchr(req->env[i], '=');
        size_t n = eq ? (size_t)(eq - req->env[i]) : 0;
        for (size_t k = 0; eq && k < s->o->env.n; k++) {
            const char *kv = s->o->env.v[k];
            if (strncmp(kv, req->env[i], n) != 0 || kv[n] != '=' ||
                strncmp(kv + n + 1, CRED_PLACEHOLDER_PREFIX, strlen(CRED_PLACEHOLDER_PREFIX)) !=
                    0 ||
                strcmp(kv + n + 1, eq + 1) == 0)
                continue;
            snprintf(msg, sizeof(msg),
                     "-e %.*s: in this bottle %.*s holds the placeholder of a credential, and "
                     "the real value never enters the bottle; leave out -e %.*s (the command "
                     "gets the placeholder, which the proxy swaps for the value)",
                     (int)n, req->env[i], (int)n, req->env[i], (int)n, req->env[i]);
            return exec_fail(reply, 125, msg);
        }
    }
    if (!s->started.pid || s->done || s->stopping) {
        json_object_set_new(reply, "retry", json_boolean(!s->started.pid));
        return exec_fail(reply, 125,
                         !s->started.pid ? "the bottle is still starting" : "the bottle is ending");
    }
    if (req->tty) {
        /* the client's window size from the start: the command may read it at once */
        struct winsize ws = { .ws_row = req->rows, .ws_col = req->cols };
        if (openpty(&host[0], &child[0], NULL, NULL, req->rows && req->cols ? &ws : NULL) < 0)
            return exec_fail(reply, 125, "cannot open a pseudo-terminal");
        (void)fcntl(host[0], F_SETFD, FD_CLOEXEC);
        (void)fcntl(child[0], F_SETFD, FD_CLOEXEC);
        a.stdio[0] = a.stdio[1] = a.stdio[2] = child[0];
    } else {
        for (int i = 0; i < 3; i++) {
            if (i == 0 && !req->interactive) {
                a.stdio[0] = s->devnull;
                continue;
            }
            if (pipe2(p, O_CLOEXEC) < 0) {
                close_fds(child, 3);
                close_fds(host, 3);
                return exec_fail(reply, 125, "cannot create pipes");
            }
            child[i] = i == 0 ? p[0] : p[1];
            host[i] = i == 0 ? p[1] : p[0];
            a.stdio[i] = child[i];
        }
    }
    e = xcalloc(1, sizeof(*e));
    e->s = s;
    e->conn = req->conn;
    r = s->be->exec(s->bottle, &a, &e->x);
    close_fds(child, 3);
    if (r < 0) {
        close_fds(host, 3);
        free(e);
        if (r == -EAGAIN)
            json_object_set_new(reply, "retry", json_true());
        snprintf(msg, sizeof(msg), "%s: %s", req->argv[0],
                 r == -ENOENT   ? "command not found in the bottle"
                 : r == -EACCES ? "not executable in the bottle"
                                : strerror(-r));
        return exec_fail(reply, r == -ENOENT ? 127 : r == -EACCES ? 126 : 125, msg);
    }
    if (req->tty)
        r = control_conn_set_fds(req->conn, host, 1);
    else if (req->interactive)
        r = control_conn_set_fds(req->conn, host, 3);
    else
        r = control_conn_set_fds(req->conn, host + 1, 2);
    close_fds(host, 3);
    if (r == 0)
        r = loop_add(s->loop, &e->src, s->be->exec_pidfd(e->x), EPOLLIN, on_exec_exit, e);
    if (r < 0) {
        s->be->exec_free(e->x);
        free(e);
        return exec_fail(reply, 125, "cannot pass the command's stdio to the client");
    }
    e->next = s->execs;
    s->execs = e;
    control_conn_hold(req->conn, on_exec_conn_closed, e);
    sv_note(s, "exec in bottle '%s': %s%s", s->name, req->argv[0], req->tty ? " (tty)" : "");
    return 0;
}

static int do_signal(struct sv *s, const struct control_request *req, json_t *reply)
{
    for (struct exec_session *e = s->execs; e; e = e->next)
        if (e->conn == req->conn)
            /* the backend's way (microvm: a line to the guest; its exec_pidfd is an eventfd,
             * which no signal can be sent through) */
            return s->be->exec_signal ? s->be->exec_signal(e->x, req->signo)
                                      : bb_pidfd_send_signal(s->be->exec_pidfd(e->x), req->signo);
    json_object_set_new(reply, "error", json_string("no command of this connection runs"));
    return -ESRCH;
}

/* A request on the control socket (control.h), from a process of our own user or root. */
static int on_control(void *ud, const struct control_request *req, json_t *reply)
{
    struct sv *s = ud;
    const char *state = !s->started.pid ? "starting"
                        : s->done       ? "exited"
                        : s->stopping   ? "stopping"
                                        : "running";

    switch (req->cmd) {
    case CONTROL_STATUS:
        json_object_set_new(reply, "name", json_string(s->name));
        json_object_set_new(reply, "backend", json_string(s->be ? s->be->name : ""));
        json_object_set_new(reply, "alias", json_string(s->alias.text));
        json_object_set_new(reply, "pid", json_integer(getpid()));
        json_object_set_new(reply, "bottle_pid", json_integer(s->started.pid));
        json_object_set_new(reply, "daemon_pid", json_integer(s->daemon.pid));
        json_object_set_new(reply, "state", json_string(state));
        json_object_set_new(reply, "shares_host_kernel",
                            json_boolean(s->be && (s->be->flags & BACKEND_SHARES_HOST_KERNEL)));
        return 0;
    case CONTROL_STOP:
        if (!s->started.pid) {
            json_object_set_new(reply, "error", json_string("the bottle is still starting"));
            return -EAGAIN;
        }
        log_info("stop requested through the control socket");
        if (req->has_seconds) {
            s->grace_ms = (int)req->seconds * 1000;
            if (s->stopping) /* a second stop shortens (or lengthens) the grace */
                loop_timer_set_in(s->loop, &s->kill_timer, s->grace_ms);
        }
        request_stop(s);
        return 0;
    case CONTROL_ALLOW:
    case CONTROL_DENY: {
        bool allow = req->cmd == CONTROL_ALLOW;
        struct buf ca = BUF_INIT(16 * 1024); /* a CA certificate (daemon.h) */
        char why[256];
        int r;

        if (allow && req->has_seconds && !grant_find(s, req->pattern)) {
            size_t used = 0;
            for (size_t i = 0; i < SV_MAX_GRANTS; i++)
                used += s->grants[i] != NULL;
            if (used == SV_MAX_GRANTS) {
                json_object_set_new(reply, "error",
                                    json_string("too many timed grants in force (32); revoke one "
                                                "with 'bot-bottle deny'"));
                return -ENOSPC;
            }
        }
        if (allow && grant_find(s, req->pattern)) {
            /* a timed grant in force: re-arm it, or (a plain allow) keep it for good */
            if (req->has_seconds)
                (void)grant_arm(s, req->pattern, req->seconds);
            else
                grant_drop(s, grant_find(s, req->pattern));
            log_info("allowed %s through the control socket (%s)", req->pattern,
                     req->has_seconds ? "timer re-armed" : "no longer timed");
            return 0;
        }
        r = daemon_policy_change(&s->daemon, allow ? "allow" : "deny", req->pattern, why,
                                 sizeof(why), &ca);
        if (r == -ENOTCONN && (s->be->flags & BACKEND_DAEMON_ELSEWHERE)) {
            (void)str_printf(why, sizeof(why),
                             "the %s backend's egress daemon runs outside bot-bottle and takes "
                             "no changes; restart the bottle with the new policy",
                             s->be->name);
            json_object_set_new(reply, "error", json_string(why));
            return r;
        }
        if (r < 0) {
            buf_done(&ca);
            json_object_set_new(reply, "error",
                                json_string(r == -EINVAL || r == -ENOENT ? why : strerror(-r)));
            return r;
        }
        /* The rule's host is intercepted from now on with a new CA: into the bottle's bundle
         * (bottle-ca.h), for the processes that read it from now on. */
        if (ca.len) {
            r = bottle_ca_add(s->sb.dir, buf_str(&ca), ca.len);
            json_object_set_new(
                reply, "note",
                json_string(r < 0 ? "HTTPS to the rule's host is now intercepted, but its new CA "
                                    "could not be added to the bottle's CA bundle (see the "
                                    "bottle's stderr): HTTPS to it fails verification there"
                                  : "HTTPS to the rule's host is now intercepted with a new CA "
                                    "of the bottle's, added to " BOTTLE_CA_DIR
                                    "/ca-bundle.crt and ca.pem: programs that read the bundle from "
                                    "now on trust it; a process that loaded it before (node, a "
                                    "long-running client) still has the old one and fails "
                                    "verification for that host until it is restarted"));
            sv_note(s, "TLS for the new rule's host is intercepted with a new CA (added to the "
                       "bottle's CA bundle)");
        }
        buf_done(&ca);
        /* a deny or a plain allow ends the pattern's timer; allow --for (re)arms it */
        if (allow && req->has_seconds)
            (void)grant_arm(s, req->pattern, req->seconds);
        else
            grant_drop(s, grant_find(s, req->pattern));
        if (allow && req->has_seconds)
            log_info("allowed %s for %u s through the control socket", req->pattern, req->seconds);
        else
            log_info("%s %s through the control socket", allow ? "allowed" : "denied",
                     req->pattern);
        return 0;
    }
    case CONTROL_ATTACH:
        return do_attach(s, req, reply);
    case CONTROL_EXEC:
        return do_exec(s, req, reply);
    case CONTROL_SIGNAL:
        return do_signal(s, req, reply);
    case CONTROL_CMD_MAX:
    default:
        return -EINVAL;
    }
}

static void on_signal(struct loop *l, int signo, void *ud)
{
    struct sv *s = ud;
    (void)l;

    if (signo == SIGWINCH) {
        if (s->use_tty) {
            tty_relay_resize(&s->tty);
            if (s->be->resize && s->bottle)
                s->be->resize(s->bottle);
        }
        return;
    }
    if (s->done) {
        loop_quit(s->loop, 0); /* the bottle is gone: stop waiting for a slow reader */
        return;
    }
    if (!s->stop_signo)
        s->stop_signo = signo;
    request_stop(s);
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

/* Whether bottle `name` of this state root still runs (its state directory is locked). */
static bool bottle_alive(const char *name, void *userdata)
{
    struct sv *s = userdata;

    int r = state_bottle_running(&s->st, name);

    return r == 1 || (r < 0 && r != -EINVAL); /* cannot tell: maybe, so yes */
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

/* -EPERM (said) when path contains the state root or lies inside it. */
static int check_state_hidden(const struct sv *s, const char *path, const char *what)
{
    char root[PATH_MAX], canon[PATH_MAX];

    if (!path || !realpath(s->st.root, root))
        return 0;
    if (!realpath(path, canon))
        (void)str_printf(canon, sizeof(canon), "%s", path);
    if (trust_path_within(root, canon) || trust_path_within(canon, root)) {
        log_error("%s %s would put the state directory %s (every bottle's control socket) "
                  "inside the bottle; choose another directory, or move the state with "
                  "BOT_BOTTLE_STATE_DIR",
                  what, path, root);
        return -EPERM;
    }
    return 0;
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
    spec->tty = s->use_tty || s->console;
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
    /* The state root holds every bottle's control socket: a bottle that saw it could change
     * its own allowlist (or stop other bottles), since a socket on a read-only mount still
     * accepts connections and the peer check sees the invoking user. Neither the workspace nor
     * any --mount source may contain it or lie inside it. */
    r = check_state_hidden(s, s->o->workspace, "the workspace");
    for (size_t i = 0; r == 0 && i < spec->n_mounts; i++)
        r = check_state_hidden(s, spec->mounts[i].src, "--mount");
    if (r < 0)
        return r;
    /* TLS interception: the daemon's CA in the bottle's trust (bottle-ca.h) */
    if ((s->daemon.ca_pem || s->daemon.tls) &&
        (r = bottle_ca_install(s->sb.dir, s->daemon.ca_pem ? s->daemon.ca_pem : "",
                               s->daemon.ca_pem_len, s->o->tls_extra_ca, spec)) < 0)
        return r;
    /* The workspace paths the host runs later are read-only inside (docs/workspace.md). */
    /* Planned under the placeholder registry's lock: a bottle starting at the same time on
     * this workspace plans before or after, and shares the placeholders it finds there. */
    {
        struct protect_registry reg = { .fd = -1 };
        char path[600];
        snprintf(path, sizeof(path), "%s/placeholders", s->st.root);
        if (s->st.root[0] && (r = protect_registry_lock(path, &reg)) < 0)
            log_errno(LOG_LVL_WARN, r, "cannot lock %s", path);
        r = protect_plan_build(s->o->workspace, &s->o->allow_write, &reg, &s->protect);
        for (size_t i = 0; r >= 0 && i < spec->n_mounts; i++)
            if (!spec->mounts[i].ro)
                r = protect_plan_add_mount(spec->mounts[i].src, spec->mounts[i].dst,
                                           &s->o->allow_write, &reg, &s->protect);
        if (r >= 0 && reg.fd >= 0 &&
            (r = protect_registry_record(&reg, s->o->workspace, s->name, &s->protect)) < 0) {
            log_errno(LOG_LVL_WARN, r, "cannot record the placeholders in %s", path);
            r = 0;
        }
        protect_registry_unlock(&reg);
        if (r < 0)
            return r;
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

/* Choose the backend (before the daemon: its flags say what the daemon needs). */
static int select_backend(struct sv *s)
{
    struct backend_probe probe = { 0 };
    int r;

    if (s->o->backend_ops) {
        s->be = s->o->backend_ops;
        r = 0;
    } else {
        r = backend_select(s->o->backend, NULL, &s->be, &probe);
    }
    if (r == -ENOENT) {
        log_error("unknown backend '%s'; 'bot-bottle run --help' lists the backends",
                  s->o->backend);
        return r;
    }
    if (r < 0) {
        log_error("the %s backend cannot run here: %s", s->o->backend, probe.reason);
        return r;
    }
    if (s->o->cred_wire && ((s->be->flags & BACKEND_DAEMON_ELSEWHERE) ||
                            !(s->be->flags & (BACKEND_HAS_CHANNEL | BACKEND_NEEDS_HANDOFF)))) {
        /* A daemon started elsewhere could get the values only through argv or files; a bottle
         * that reaches the daemon over TCP (A:3128) needs a port other host processes can use
         * too (docs/credentials.md). */
        log_error("the %s backend cannot carry credentials (its bottle reaches the egress "
                  "daemon %s); use --backend namespace or microvm with --credential",
                  s->be->name,
                  s->be->flags & BACKEND_DAEMON_ELSEWHERE ? "started elsewhere"
                                                          : "over a TCP port on the host");
        return -EOPNOTSUPP;
    }
    return 0;
}

static int start_bottle(struct sv *s)
{
    struct bottle_spec spec;
    struct backend_create_args ca = { 0 };
    struct channel_host_config hc = { 0 };
    char addr[64];
    int r;

    r = build_spec(s, &spec);
    if (r < 0) {
        bottle_spec_done(&spec);
        return r;
    }
    ca.spec = &spec;
    ca.paths.init = s->o->init_path;
    ca.vm.accel = s->o->accel;
    ca.vm.kernel = s->o->kernel;
    ca.vm.no_snapshot = s->o->no_snapshot;
    ca.vm.memory_given = s->o->memory_given;
    ca.cpus_milli = s->o->cpus_milli;
    ca.handoff_fd = s->be->flags & BACKEND_NEEDS_HANDOFF ? s->daemon.handoff : -1;
    ca.memory_bytes = s->o->memory_bytes;
    ca.pids_max = s->o->pids_max;
    /* BACKEND_DAEMON_ELSEWHERE: the backend starts the daemon (docker: a sidecar) */
    ca.egress_args = s->o->daemon_args.v;
    ca.audit = s->audit;
    if (s->console) {
        ca.stdio[0] = ca.stdio[1] = ca.stdio[2] = s->con_slave;
    } else if (s->use_tty) {
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
    if (s->daemon.handoff >= 0)
        close(s->daemon.handoff);
    s->daemon.handoff = -1;
    if (s->console) {
        close(s->con_slave);
        s->con_slave = -1;
    } else if (s->use_tty) {
        /* Only the bottle holds the slave now: its exit shows as EIO/HUP on the master. */
        close(s->tty.slave);
        s->tty.slave = -1;
    } else {
        stdio_relay_close_child(&s->pipes); /* EOF on the pipes = the bottle is gone */
    }
    if (!(s->be->flags & BACKEND_HAS_CHANNEL))
        goto watch;
    snprintf(addr, sizeof(addr), "%s:%d", s->alias.text, BOTTLE_PROXY_PORT);
    net_addr_parse(addr, 0, &hc.proxy);
    snprintf(addr, sizeof(addr), "%s:%d", s->alias.text, daemon_host_dns_port());
    net_addr_parse(addr, 0, &hc.dns);
    if (s->daemon.relay >= 0) {
        /* a daemon holding credentials: no TCP port; streams go over the relay socket */
        hc.proxy_via_handoff = true;
        hc.proxy_handoff_fd = s->daemon.relay;
    }
    hc.dead = on_channel_dead;
    hc.userdata = s;
    r = channel_host_relay_start(s->loop, s->started.channel_fd, &hc, &s->relay);
    s->started.channel_fd = -1;
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot start the channel relay");
    /* microvm: the command's stdio streams ride on the channel */
    if (s->be->attach &&
        (r = s->be->attach(s->bottle, s->loop, channel_host_relay_mux(s->relay))) < 0)
        return r;
watch:
    r = loop_add(s->loop, &s->bottle_src, s->started.pidfd, EPOLLIN, on_bottle_exit, s);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot watch the bottle");
    return 0;
}

int supervisor_run(const struct supervisor_opts *o, struct policy *policy)
{
    struct sv s = { .o = o,
                    .status = 125,
                    .daemon = { .pidfd = -1, .handoff = -1, .control = -1, .relay = -1 },
                    .notice = { .f = { .fd = -1 } } };
    int r;

    s.alias.lock_fd = -1;
    s.con_master = s.con_slave = -1;
    s.started.channel_fd = -1;
    s.started.pidfd = -1;
    s.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    s.sb.lock_fd = -1;
    signal(SIGPIPE, SIG_IGN);
    /* Held from here on (the loop reads them once it exists): a SIGINT, SIGTERM or SIGHUP
     * during start-up then ends the start-up through the clean-up below, instead of killing
     * us with the state directory, the alias lease and the daemon left behind. */
    {
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGHUP);
        sigprocmask(SIG_BLOCK, &stop, NULL);
    }

    r = setup_state(&s);
    if (r < 0)
        goto out;
    r = loop_new(&s.loop);
    if (r < 0)
        goto out;
    loop_timer_init(&s.kill_timer, on_kill_timer, &s);
    s.grace_ms = STOP_GRACE_MS;
    /* The control socket lives in the state directory, which no bottle ever sees (the state
     * root is not mounted into any bottle). */
    r = control_listen(s.sb.dir);
    if (r < 0 || (r = control_server_new(s.loop, r, on_control, &s, &s.control)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot create the control socket in %s", s.sb.dir);
        goto out;
    }

    r = select_backend(&s);
    if (r < 0)
        goto out;

    /* The audit log: created now so we can follow it from the start. */
    r = notice_open(&s.notice, s.audit);
    if (r == -ELOOP) {
        log_error("the audit log %s is a symbolic link; bot-bottle does not follow it "
                  "(name the file itself with --audit)",
                  s.audit);
        r = -EPERM;
        goto out;
    }
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot create the audit log %s", s.audit);
        r = -EPERM;
        goto out;
    }
    s.notice.hold = o->tty; /* never drawn over the program's screen: said when it exits */
    s.notice.quiet = o->quiet;
    s.notice.bottle = s.name;
    s.notice.left_out = &o->left_out;

    /* the daemon builds the same policy from the same arguments */
    policy = policy_free(policy);
    {
        struct daemon_config dc = { .alias = s.alias.text,
                                    .proxy_port = BOTTLE_PROXY_PORT,
                                    .name = s.name,
                                    .audit = s.audit,
                                    .extra = &o->daemon_args,
                                    .devnull = s.devnull,
                                    .handoff = s.be->flags & BACKEND_NEEDS_HANDOFF,
                                    .creds = o->cred_wire,
                                    .creds_len = o->cred_wire_len };
        r = s.be->flags & BACKEND_DAEMON_ELSEWHERE ? 0 : daemon_start(&dc, &s.daemon);
    }
    /* The daemon has the credentials (or never will): no copy stays here for the bottle's
     * life. (The buffer is run's, handed over for this; const only for the other fields.) */
    if (o->cred_wire)
        explicit_bzero((void *)o->cred_wire, o->cred_wire_len);
    if (r < 0)
        goto out;
    if (s.daemon.pidfd >= 0 &&
        (r = loop_add(s.loop, &s.daemon_src, s.daemon.pidfd, EPOLLIN, on_daemon_exit, &s)) < 0)
        goto out;

    s.use_tty = o->tty && !o->detach;
    s.console = o->detach;
    if (s.console) {
        /* start: a terminal the supervisor holds; 80x24 until someone attaches */
        struct winsize ws = { .ws_row = 24, .ws_col = 80 };
        if (openpty(&s.con_master, &s.con_slave, NULL, NULL, &ws) < 0) {
            r = log_errno(LOG_LVL_ERROR, -errno, "cannot open a pseudo-terminal");
            goto out;
        }
        (void)fcntl(s.con_master, F_SETFD, FD_CLOEXEC);
        (void)fcntl(s.con_slave, F_SETFD, FD_CLOEXEC);
        (void)fd_set_nonblock(s.con_master, true);
        s.ring = xmalloc(SV_CONSOLE_RING);
    } else if (o->detach) {
        /* a backend without a terminal: the command's output goes to our log */
        r = stdio_relay_open(&s.pipes, s.loop, false, s.devnull, s.devnull, STDERR_FILENO,
                             STDERR_FILENO);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "cannot create the pipes for the command's stdio");
            goto out;
        }
    } else if (s.use_tty) {
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
    if (o->detach)
        signal(SIGHUP, SIG_IGN); /* no terminal of ours to hang up; stop with SIGTERM */
    if ((r = loop_add_signal(s.loop, SIGINT, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGTERM, on_signal, &s)) < 0 ||
        (!o->detach && (r = loop_add_signal(s.loop, SIGHUP, on_signal, &s)) < 0) ||
        (r = loop_add_signal(s.loop, SIGWINCH, on_signal, &s)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "signal setup");
        goto out;
    }
    /* A stop signal that came during the start-up: do not start the command at all. */
    (void)loop_run_once(s.loop, 0);
    if (s.stop_signo) {
        log_debug("stopped by signal %d before the bottle started", s.stop_signo);
        s.status = 128 + s.stop_signo;
        s.done = true;
        r = -EINTR;
        goto out;
    }
    r = start_bottle(&s);
    if (r < 0)
        goto out;
    write_info(&s);
    log_debug("bottle %s started (backend %s); audit log %s", s.name, s.be->name, s.audit);
    if (s.console)
        con_watch(&s, true);
    if (o->detach && o->ready_fd >= 0) {
        /* `start` returns now */
        if (write(o->ready_fd, "ok\n", 3) != 3)
            log_warn("cannot tell 'start' that the bottle runs");
        close(o->ready_fd);
    }
    if (s.use_tty && (r = tty_relay_start(&s.tty)) < 0)
        goto out;
    if (!s.use_tty && !s.console && (r = stdio_relay_start(&s.pipes, on_stdio_done, &s)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot relay the command's stdio");
        goto out;
    }
    notice_start(&s.notice, s.loop);
    r = loop_run(s.loop);
    /* The bottle is gone (a microVM's QEMU too): nothing more comes through the relay, so
     * the daemon may drain while we flush and clean up (daemon_stop below only waits). */
    if (s.done)
        daemon_request_stop(&s.daemon);
    if (s.use_tty)
        tty_relay_flush(&s.tty);
    notice_poll(&s.notice);
out:
    /* exec'd commands end with the bottle; their clients get a status */
    while (s.execs) {
        struct exec_session *e = s.execs;
        int st = 128 + SIGKILL;
        json_t *m;
        loop_del(s.loop, &e->src);
        {
            /* the bottle is gone or going: its processes die with it */
            /* exec_session_free() below unlinks e (e->s is &s): a new one each round */
            /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
            struct pollfd pfd = { .fd = s.be->exec_pidfd(e->x), .events = POLLIN };
            if (RETRY_EINTR(poll(&pfd, 1, 500)) == 1)
                (void)s.be->exec_wait(e->x, &st);
        }
        m = json_pack("{s:i}", "exit", st);
        if (m)
            (void)control_conn_send(e->conn, m);
        json_decref(m);
        control_conn_release(e->conn);
        exec_session_free(e);
    }
    if (s.attached) {
        control_conn_release(s.attached);
        s.attached = NULL;
    }
    con_watch(&s, false);
    if (s.con_master >= 0)
        close(s.con_master);
    if (s.con_slave >= 0)
        close(s.con_slave);
    free(s.ring);
    if (s.use_tty)
        tty_relay_done(&s.tty);
    stdio_relay_done(&s.pipes);
    channel_host_relay_free(s.relay);
    s.control = control_server_free(s.control);
    if (s.bottle)
        s.be->destroy(s.bottle);    /* kills and reaps what is still running */
    daemon_request_stop(&s.daemon); /* it drains while we clean up; daemon_stop waits */
    {
        /* The last bottle to leave a workspace (or a --mount source) removes every
         * placeholder made for it; while another still uses one, this bottle's own stay too
         * (simpler, errs on the safe side). Decided under the registry's lock, so two bottles
         * leaving at once do not each keep them for the other. */
        bool shared = false;
        char reg[600];
        snprintf(reg, sizeof(reg), "%s/placeholders", s.st.root);
        if (s.st.root[0] && s.protect.roots.n) {
            int e =
                protect_registry_leave(reg, s.name, &s.protect.roots, bottle_alive, &s, &shared);
            if (e < 0)
                log_errno(LOG_LVL_WARN, e, "cannot update %s: the placeholders stay", reg);
        }
        protect_plan_done(&s.protect, !shared);
    }
    if (s.started.channel_fd >= 0)
        close(s.started.channel_fd);
    daemon_stop(&s.daemon);
    /* The daemon wrote its last records (connections it closed on the way out); the terminal
     * is ours again: the held lines and what is new, then where the log is. */
    notice_poll(&s.notice);
    notice_finish(&s.notice);
    notice_done(&s.notice);
    if (s.loop) {
        loop_timer_stop(s.loop, &s.kill_timer);
        for (size_t i = 0; i < SV_MAX_GRANTS; i++)
            grant_drop(&s, &s.grants[i]);
    }
    loop_free(s.loop);
    alias_release(s.st.aliases, &s.alias);
    if (s.sb.lock_fd >= 0)
        state_bottle_remove(&s.st, &s.sb);
    if (s.devnull >= 0)
        close(s.devnull);
    policy_free(policy);
    return s.done ? s.status : 125;
}

/* ---------------------------------------------------------------- start */

int supervisor_start(const struct supervisor_opts *o, struct policy *policy)
{
    struct supervisor_opts d = *o;
    struct state st;
    char name[BOTTLE_SPEC_MAX_NAME + 1], logpath[STATE_PATH_MAX + 64 + BOTTLE_SPEC_MAX_NAME];
    char buf[4096];
    int ready[2], logfd, r, status;
    off_t start_off;
    pid_t pid;
    ssize_t n;
    bool ok = false;

    r = state_open(NULL, true, &st);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot use the state directory %s", st.root);
        policy_free(policy);
        return 125;
    }
    if (o->name) {
        if (!state_name_valid(o->name)) {
            log_error("invalid bottle name '%s': use up to %d letters, digits, '-', '_' or '.', "
                      "starting with a letter or digit",
                      o->name, BOTTLE_SPEC_MAX_NAME);
            policy_free(policy);
            return 125;
        }
        snprintf(name, sizeof(name), "%s", o->name);
    } else {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
            rnd = (uint32_t)getpid();
        snprintf(name, sizeof(name), "bb-%06x", rnd & 0xffffff);
    }
    if (state_bottle_running(&st, name) == 1) {
        log_error("a bottle named '%s' is already running; choose another --name", name);
        policy_free(policy);
        return 125;
    }
    /* the supervisor's own log: what it says once the terminal is gone */
    if (str_printf(logpath, sizeof(logpath), "%s/%s.log", st.logs, name) < 0 ||
        (logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot open the bottle's log %s", logpath);
        policy_free(policy);
        return 125;
    }
    start_off = lseek(logfd, 0, SEEK_END);
    if (pipe2(ready, O_CLOEXEC) < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "pipe");
        close(logfd);
        policy_free(policy);
        return 125;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot start the bottle's supervisor");
        close(logfd);
        close(ready[0]);
        close(ready[1]);
        policy_free(policy);
        return 125;
    }
    if (pid == 0) {
        /* the daemon: its own session, not a session leader (it can never get a controlling
         * terminal again), stdin /dev/null, stdout and stderr to the log */
        int null;
        close(ready[0]);
        if (setsid() < 0)
            _exit(125);
        pid = fork();
        if (pid != 0)
            _exit(pid < 0 ? 125 : 0);
        /* nothing ignored that the shell we came from ignored (a background job's SIGINT) */
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP && sig != SIGPIPE)
                signal(sig, SIG_DFL);
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(logfd, STDOUT_FILENO) < 0 ||
            dup2(logfd, STDERR_FILENO) < 0)
            _exit(125);
        close(null);
        close(logfd);
        if (chdir("/") < 0)
            _exit(125);
        d.name = name;
        d.detach = true;
        d.ready_fd = ready[1];
        d.tty = d.interactive = false;
        _exit(supervisor_run(&d, policy));
    }
    close(ready[1]);
    policy_free(policy);
    (void)RETRY_EINTR(waitpid(pid, &status, 0));
    n = RETRY_EINTR(read(ready[0], buf, sizeof(buf) - 1));
    ok = n >= 2 && strncmp(buf, "ok", 2) == 0;
    close(ready[0]);
    if (ok) {
        close(logfd);
        printf("%s\n", name);
        fflush(stdout);
        return 0;
    }
    /* it failed: show what it said (in the log) */
    {
        int rfd = open(logpath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (rfd >= 0 && lseek(rfd, start_off, SEEK_SET) >= 0)
            while ((n = RETRY_EINTR(read(rfd, buf, sizeof(buf)))) > 0)
                if (write(STDERR_FILENO, buf, (size_t)n) != n)
                    break;
        if (rfd >= 0)
            close(rfd);
    }
    close(logfd);
    log_error("bottle '%s' did not start (its log: %s)", name, logpath);
    return 125;
}
