/* Commands run over the channel in a microVM (vmsession.h). */
#include "guest/vmsession.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "channel/proto.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/pump.h"
#include "common/str.h"
#include "common/xalloc.h"

#define VMS_HDR_MAX 64
#define VMS_PENDING_MAX 256
/* How long session 0 waits for the host to confirm it has the output. */
#define VMS_ACK_MS 5000

enum role { ROLE_CTL, ROLE_IN, ROLE_OUT, ROLE_ERR, ROLE_TTY, ROLE_MAX };
static const char *const role_names[ROLE_MAX] = { "ctl", "in", "out", "err", "tty" };

struct vms;

/* A stream whose header line has not arrived yet. */
struct pending {
    struct vms *v;
    bool used;
    int fd;
    struct loop_source src;
};

struct session {
    struct vms *v;
    bool used;
    uint32_t id;
    int fd[ROLE_MAX];
    struct loop_source ctl_src;
    struct buf lines; /* partial ctl line */
    size_t request_bytes;
    char **argv, **env;
    size_t argc, envc;
    char *cwd;
    bool want_tty, start;
    unsigned short rows, cols;
    pid_t pid;
    bool running, exited;
    int status;
    /* tty: the pty master, pumped to (out) and from (in) the tty stream */
    int ptm, ptm_in, tty_in;
    struct pump p_out, p_in;
    bool p_out_on, p_in_on;
    /* session 0 after exit: waiting for the host's EOF on these */
    struct loop_source ack_src[ROLE_MAX];
    unsigned acks_left;
    struct loop_timer ack_timer;
};

struct vms {
    struct loop *loop;
    struct vms_ops ops;
    struct pending pending[VMS_PENDING_MAX]; /* (not heap: a freed source may still be in the
                                              loop's batch) */
    struct session s[VMS_MAX_SESSIONS];
};

static void closep_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void session_free(struct session *s)
{
    struct vms *v = s->v;

    if (!s->used)
        return;
    loop_del(v->loop, &s->ctl_src);
    for (int i = 0; i < ROLE_MAX; i++) {
        loop_del(v->loop, &s->ack_src[i]);
        closep_fd(&s->fd[i]);
    }
    loop_timer_stop(v->loop, &s->ack_timer);
    pump_stop(&s->p_out);
    pump_stop(&s->p_in);
    closep_fd(&s->ptm);
    closep_fd(&s->ptm_in);
    closep_fd(&s->tty_in);
    buf_done(&s->lines);
    strv_free(s->argv, s->argc);
    strv_free(s->env, s->envc);
    free(s->cwd);
    memset(s, 0, sizeof(*s));
}

static struct session *session_get(struct vms *v, uint32_t id, bool create)
{
    struct session *free_slot = NULL;

    for (size_t i = 0; i < VMS_MAX_SESSIONS; i++) {
        if (v->s[i].used && v->s[i].id == id)
            return &v->s[i];
        if (!v->s[i].used && !free_slot)
            free_slot = &v->s[i];
    }
    if (!create || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof(*free_slot));
    free_slot->v = v;
    free_slot->used = true;
    free_slot->id = id;
    free_slot->ptm = free_slot->ptm_in = free_slot->tty_in = -1;
    for (int i = 0; i < ROLE_MAX; i++)
        free_slot->fd[i] = -1;
    buf_init(&free_slot->lines, VMS_HDR_MAX + 2 * 65536);
    loop_timer_init(&free_slot->ack_timer, NULL, free_slot);
    free_slot->ack_timer.heap_idx = (size_t)-1;
    return free_slot;
}

/* ---- the end of a command ---- */

static void main_finished(struct session *s)
{
    struct vms *v = s->v;
    int status = s->status;

    session_free(s);
    v->ops.main_done(v->ops.ud, status);
}

static void on_ack_timer(struct loop_timer *t)
{
    struct session *s = t->userdata;

    log_warn("the host did not confirm the command's output within %d s", VMS_ACK_MS / 1000);
    main_finished(s);
}

static void on_ack(struct loop_source *src, uint32_t events)
{
    struct session *s = src->userdata;
    char tmp[4096];
    ssize_t n = recv(src->fd, tmp, sizeof(tmp), MSG_DONTWAIT);

    (void)events;
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    loop_del(s->v->loop, src);
    if (--s->acks_left == 0)
        main_finished(s);
}

/* The command is gone and its output streams are shut: report (exec) or wait for the host to
 * have everything (session 0). */
static void session_finish(struct session *s)
{
    struct vms *v = s->v;

    if (s->fd[ROLE_CTL] >= 0 && s->id != 0) {
        char line[32];
        if (str_printf(line, sizeof(line), "exit %d\n", s->status) == 0)
            (void)!send(s->fd[ROLE_CTL], line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (s->id != 0) {
        session_free(s);
        return;
    }
    /* Session 0: the host closes each output stream once it wrote it out. */
    for (int i = ROLE_OUT; i <= ROLE_TTY; i++) {
        if (s->fd[i] < 0)
            continue;
        if (loop_add(v->loop, &s->ack_src[i], s->fd[i], EPOLLIN, on_ack, s) == 0)
            s->acks_left++;
    }
    if (!s->acks_left) {
        main_finished(s);
        return;
    }
    loop_timer_init(&s->ack_timer, on_ack_timer, s);
    loop_timer_set_in(v->loop, &s->ack_timer, VMS_ACK_MS);
}

static void session_exited(struct session *s, int status)
{
    s->running = false;
    s->exited = true;
    s->status = status;
    /* What the command wrote last, then EOF to the host (background processes holding the
     * streams are cut off, as when a namespace bottle's command ends). */
    if (s->p_out_on)
        pump_drain_and_finish(&s->p_out);
    pump_stop(&s->p_in);
    closep_fd(&s->ptm);
    closep_fd(&s->ptm_in);
    closep_fd(&s->tty_in);
    if (s->fd[ROLE_TTY] >= 0)
        (void)shutdown(s->fd[ROLE_TTY], SHUT_WR);
    closep_fd(&s->fd[ROLE_IN]);
    for (int i = ROLE_OUT; i <= ROLE_ERR; i++)
        if (s->fd[i] >= 0)
            (void)shutdown(s->fd[i], SHUT_WR);
    session_finish(s);
}

bool vms_reaped(struct vms *v, pid_t pid, int status)
{
    for (size_t i = 0; v && i < VMS_MAX_SESSIONS; i++) {
        struct session *s = &v->s[i];
        if (!s->used || !s->running || s->pid != pid)
            continue;
        session_exited(s, WIFEXITED(status)     ? WEXITSTATUS(status)
                          : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                                : 125);
        return true;
    }
    return false;
}

/* ---- starting a command ---- */

static void on_tty_out_done(struct pump *p, int err)
{
    (void)p;
    (void)err; /* EOF (EIO: every slave holder is gone) or the host stopped reading */
}

static void on_tty_in_done(struct pump *p, int err)
{
    (void)p;
    (void)err;
}

/* A pty of the bottle's devpts for s: the master stays here, the slave goes to the command. */
static int open_pty(struct session *s, int *ret_slave)
{
    struct winsize ws = { .ws_row = s->rows, .ws_col = s->cols };
    char path[64];
    int unlock = 0, n = 0, slave;

    s->ptm = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s->ptm < 0)
        return -errno;
    if (ioctl(s->ptm, TIOCSPTLCK, &unlock) < 0 || ioctl(s->ptm, TIOCGPTN, &n) < 0)
        return -errno;
    if (str_printf(path, sizeof(path), "/dev/pts/%d", n) < 0)
        return -ENAMETOOLONG;
    if (ws.ws_row && ws.ws_col)
        (void)ioctl(s->ptm, TIOCSWINSZ, &ws);
    slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        return -errno;
    /* The command's user owns its terminal (as login does); group tty-less: 0620 to it. */
    if (fchown(slave, s->v->ops.uid, s->v->ops.gid) < 0 || fchmod(slave, 0620) < 0) {
        int e = -errno;
        close(slave);
        return e;
    }
    *ret_slave = slave;
    return 0;
}

/* Session 0: the host holds the command's output (and shows its start-up progress) until this
 * line; said once the command was started, or failed to. */
static void say_started(struct session *s)
{
    if (s->id == 0 && s->fd[ROLE_CTL] >= 0)
        (void)!send(s->fd[ROLE_CTL], "started\n", 8, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void session_try_start(struct session *s)
{
    struct vms *v = s->v;
    struct vms_spawn req = { .id = s->id };
    int slave = -1, r;
    pid_t pid;

    if (!s->start || s->running || s->exited)
        return;
    if (s->want_tty ? s->fd[ROLE_TTY] < 0
                    : (s->fd[ROLE_IN] < 0 || s->fd[ROLE_OUT] < 0 || s->fd[ROLE_ERR] < 0))
        return;
    if (s->id != 0 && !s->argc) {
        log_error("exec session %u: no command", (unsigned)s->id);
        session_free(s);
        return;
    }
    if (s->want_tty) {
        r = open_pty(s, &slave);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "allocating a pty for session %u", (unsigned)s->id);
            say_started(s);
            s->status = 125;
            s->exited = true;
            (void)shutdown(s->fd[ROLE_TTY], SHUT_WR);
            session_finish(s);
            return;
        }
        req.stdio[0] = req.stdio[1] = req.stdio[2] = slave;
    } else {
        /* The command gets them as a pipe would be: blocking (bottle-init's own uses of these
         * descriptions pass MSG_DONTWAIT). */
        for (int i = 0; i < 3; i++) {
            int fl = fcntl(s->fd[ROLE_IN + i], F_GETFL);
            if (fl >= 0)
                (void)fcntl(s->fd[ROLE_IN + i], F_SETFL, fl & ~O_NONBLOCK);
            req.stdio[i] = s->fd[ROLE_IN + i];
        }
    }
    req.argv = s->argc ? s->argv : NULL;
    req.env = s->env;
    req.cwd = s->cwd;
    req.tty = s->want_tty;
    pid = v->ops.spawn(v->ops.ud, &req);
    if (slave >= 0)
        close(slave);
    say_started(s);
    if (pid < 0) {
        s->exited = true;
        s->status = -pid;
        if (s->want_tty) {
            /* the reason went to the slave: pass it on before EOF */
            if (pump_start(&s->p_out, v->loop, s->ptm, s->fd[ROLE_TTY], on_tty_out_done, s) == 0) {
                s->p_out_on = true;
                pump_drain_and_finish(&s->p_out);
            }
        }
        session_exited(s, -pid);
        return;
    }
    s->pid = pid;
    s->running = true;
    if (s->want_tty) {
        s->ptm_in = fcntl(s->ptm, F_DUPFD_CLOEXEC, 3);
        s->tty_in = fcntl(s->fd[ROLE_TTY], F_DUPFD_CLOEXEC, 3);
        if (s->ptm_in < 0 || s->tty_in < 0 ||
            pump_start(&s->p_out, v->loop, s->ptm, s->fd[ROLE_TTY], on_tty_out_done, s) < 0 ||
            !(s->p_out_on = true) ||
            pump_start(&s->p_in, v->loop, s->tty_in, s->ptm_in, on_tty_in_done, s) < 0) {
            log_error("session %u: cannot relay its terminal", (unsigned)s->id);
            kill(pid, SIGKILL);
            return;
        }
        s->p_in_on = true;
    } else {
        /* the command holds its stdio now; ours only pass the EOF on at its end */
        closep_fd(&s->fd[ROLE_IN]);
    }
}

/* ---- requests on ctl ---- */

static char *hex_decode(const char *h)
{
    size_t n = strlen(h);
    char *out;

    if (n % 2)
        return NULL;
    out = xmalloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        uint64_t b;
        if (str_hex_to_u64(slice_make(h + 2 * i, 2), 255, &b) < 0 || b == 0) {
            free(out);
            return NULL;
        }
        out[i] = (char)b;
    }
    out[n / 2] = '\0';
    return out;
}

static int push_strv(char ***v, size_t *n, char *s)
{
    if (!s)
        return -EINVAL;
    if (*n >= VMS_MAX_ARGS) {
        free(s);
        return -E2BIG;
    }
    *v = xrealloc(*v, (*n + 2) * sizeof(**v));
    (*v)[(*n)++] = s;
    (*v)[*n] = NULL;
    return 0;
}

/* "ROWS COLS", each 0..65535 (sscanf's %u would wrap a larger one into range) */
static int parse_size(const char *p, unsigned short *rows, unsigned short *cols)
{
    const char *sp = strchr(p, ' ');
    uint64_t r, c;

    if (!sp || str_to_u64(slice_make(p, (size_t)(sp - p)), 65535, &r) < 0 ||
        str_to_u64_cstr(sp + 1, 65535, &c) < 0)
        return -EINVAL;
    *rows = (unsigned short)r;
    *cols = (unsigned short)c;
    return 0;
}

static int ctl_line(struct session *s, char *line)
{
    char *arg = strchr(line, ' ');

    if (arg)
        *arg++ = '\0';
    if (!s->start && !s->exited) {
        if (strcmp(line, "arg") == 0 && arg)
            return push_strv(&s->argv, &s->argc, hex_decode(arg));
        if (strcmp(line, "env") == 0 && arg) {
            char *e = hex_decode(arg);
            if (e && !strchr(e, '=')) {
                free(e);
                return -EINVAL;
            }
            return push_strv(&s->env, &s->envc, e);
        }
        if (strcmp(line, "cwd") == 0 && arg && !s->cwd) {
            s->cwd = hex_decode(arg);
            return s->cwd && s->cwd[0] == '/' ? 0 : -EINVAL;
        }
        if (strcmp(line, "tty") == 0 && arg) {
            s->want_tty = true;
            return parse_size(arg, &s->rows, &s->cols);
        }
        if (strcmp(line, "start") == 0 && !arg) {
            s->start = true;
            session_try_start(s);
            return 0;
        }
        return -EINVAL;
    }
    if (strcmp(line, "winsize") == 0 && arg) {
        struct winsize ws = { 0 };
        if (parse_size(arg, &ws.ws_row, &ws.ws_col) < 0)
            return -EINVAL;
        if (s->ptm >= 0)
            (void)ioctl(s->ptm, TIOCSWINSZ, &ws);
        return 0;
    }
    if (strcmp(line, "signal") == 0 && arg) {
        uint64_t sig;
        if (str_to_u64_cstr(arg, 64, &sig) < 0 || sig == 0)
            return -EINVAL;
        if (s->running)
            (void)kill(s->pid, (int)sig);
        return 0;
    }
    return -EINVAL;
}

static void on_ctl(struct loop_source *src, uint32_t events)
{
    struct session *s = src->userdata;
    char tmp[8192];
    ssize_t n = recv(src->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
    char *nl;

    (void)events;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* The host closed the ctl stream: an exec not yet running is abandoned; a running
         * one goes on (its status has nowhere to go). */
        loop_del(s->v->loop, src);
        if (!s->running && !s->exited && s->id != 0)
            session_free(s);
        return;
    }
    s->request_bytes += (size_t)n;
    if (buf_append(&s->lines, tmp, (size_t)n) < 0 ||
        (!s->start && s->request_bytes > VMS_MAX_REQUEST))
        goto bad;
    while ((nl = memchr(s->lines.p, '\n', s->lines.len)) != NULL) {
        *nl = '\0';
        if (ctl_line(s, s->lines.p) < 0)
            goto bad;
        if (!s->used)
            return; /* freed by a failed start */
        buf_consume(&s->lines, (size_t)(nl + 1 - s->lines.p));
    }
    return;
bad:
    log_error("session %u: a bad request from the host; dropping it", (unsigned)s->id);
    if (s->running)
        (void)kill(s->pid, SIGKILL);
    else
        session_free(s);
}

/* ---- stream headers ---- */

static void pending_free(struct pending *p)
{
    if (!p->used)
        return;
    loop_del(p->v->loop, &p->src);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->used = false;
}

static int header(struct vms *v, int fd, const char *line)
{
    const char *role = strchr(line, ' ');
    uint64_t id;
    struct session *s;
    int ri;

    /* "ID ROLE": the id whole and in range (sscanf's %u would wrap it), the role one of ours */
    if (!role || str_to_u64(slice_make(line, (size_t)(role - line)), UINT32_MAX, &id) < 0)
        return -EINVAL;
    role++;
    for (ri = 0; ri < ROLE_MAX; ri++)
        if (strcmp(role, role_names[ri]) == 0)
            break;
    if (ri == ROLE_MAX)
        return -EINVAL;
    s = session_get(v, (uint32_t)id, true);
    if (!s)
        return -ENOSPC;
    if (s->fd[ri] >= 0 || s->running || s->exited)
        return -EEXIST;
    s->fd[ri] = fd;
    if (ri == ROLE_CTL) {
        int r = loop_add(v->loop, &s->ctl_src, fd, EPOLLIN, on_ctl, s);
        if (r < 0) {
            s->fd[ri] = -1;
            return r;
        }
    }
    session_try_start(s);
    return 0;
}

static void on_header(struct loop_source *src, uint32_t events)
{
    struct pending *p = src->userdata;
    char line[VMS_HDR_MAX + 1];
    ssize_t n = recv(p->fd, line, VMS_HDR_MAX, MSG_PEEK | MSG_DONTWAIT);
    char *nl;
    int r;

    (void)events;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        goto drop;
    line[n] = '\0';
    nl = memchr(line, '\n', (size_t)n);
    if (!nl) {
        if (n == VMS_HDR_MAX)
            goto drop;
        return;
    }
    /* Take exactly the header: what follows is the role's data. */
    if (recv(p->fd, line, (size_t)(nl - line + 1), MSG_DONTWAIT) != nl - line + 1)
        goto drop;
    *nl = '\0';
    loop_del(p->v->loop, &p->src);
    r = header(p->v, p->fd, line);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "a host stream with a bad header ('%.20s'); closing it", line);
        goto drop;
    }
    p->fd = -1; /* the session's */
    pending_free(p);
    return;
drop:
    pending_free(p);
}

int vms_open_stream(void *ud, int kind)
{
    struct vms *v = ud;
    struct pending *p;
    int sp[2];
    size_t slot;

    if (kind != CHANNEL_KIND_EXEC)
        return -EOPNOTSUPP;
    for (slot = 0; slot < VMS_PENDING_MAX && v->pending[slot].used; slot++)
        ;
    if (slot == VMS_PENDING_MAX)
        return -ENOSPC;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
        return -errno;
    p = &v->pending[slot];
    memset(p, 0, sizeof(*p));
    p->v = v;
    p->fd = sp[0];
    if (loop_add(v->loop, &p->src, sp[0], EPOLLIN, on_header, p) < 0) {
        close(sp[0]);
        close(sp[1]);
        return -ENOMEM;
    }
    p->used = true;
    return sp[1];
}

int vms_new(struct loop *loop, const struct vms_ops *ops, struct vms **ret)
{
    struct vms *v = xcalloc(1, sizeof(*v));

    v->loop = loop;
    v->ops = *ops;
    *ret = v;
    return 0;
}

void vms_free(struct vms *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < VMS_PENDING_MAX; i++)
        pending_free(&v->pending[i]);
    for (size_t i = 0; i < VMS_MAX_SESSIONS; i++)
        session_free(&v->s[i]);
    free(v);
}
