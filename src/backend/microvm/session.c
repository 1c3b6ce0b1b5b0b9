/* The host's ends of a command's channel streams (microvm.c; guest/vmsession.h). */
#include "backend/microvm/session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "channel/mux.h"
#include "common/buf.h"
#include "common/str.h"
#include "guest/vmsession.h"

void session_init(struct vm_session *x, uint32_t id)
{
    memset(x, 0, sizeof(*x));
    x->id = id;
    x->ctl = x->efd = x->req_fd = -1;
    x->req = BUF_INIT(VMS_MAX_REQUEST);
    for (int i = 0; i < 3; i++)
        x->sock[i] = x->io[i] = -1;
}

static void fd_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The request is out (or the stream is gone: ctl's reader sees that). */
static void req_done(struct vm_session *x)
{
    if (x->req_fd >= 0) {
        loop_del(x->loop, &x->req_src);
        fd_close(&x->req_fd);
    }
    buf_done(&x->req);
}

/* Write what is left of the request: 1 all of it, 0 the socket is full, or -errno. */
static int req_flush(struct vm_session *x)
{
    while (x->req.len) {
        ssize_t n = send(x->ctl, x->req.p, x->req.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        buf_consume(&x->req, (size_t)n);
    }
    return 1;
}

static void on_req_writable(struct loop_source *src, uint32_t events)
{
    struct vm_session *x = src->userdata;

    (void)events;
    if (req_flush(x) != 0)
        req_done(x);
}

/* Unregisters and closes everything (not the struct). */
void session_close(struct vm_session *x)
{
    req_done(x);
    if (x->loop)
        loop_del(x->loop, &x->ctl_src);
    for (int i = 0; i < 3; i++) {
        pump_stop(&x->p[i]);
        x->p_on[i] = false;
        fd_close(&x->sock[i]);
        fd_close(&x->io[i]);
    }
    fd_close(&x->ctl);
    fd_close(&x->efd);
    x->open = false;
}

static bool session_output_done(const struct vm_session *x)
{
    return x->tty ? !x->p_on[SIO_OUT] : !x->p_on[SIO_OUT] && !x->p_on[SIO_ERR];
}

/* exec: the status is in and the output across: wake whoever polls the eventfd. */
static void session_maybe_report(struct vm_session *x)
{
    uint64_t one = 1;

    if (x->id == 0 || x->reported || !x->exited || !session_output_done(x))
        return;
    x->reported = true;
    (void)!write(x->efd, &one, sizeof(one));
}

static void on_pump_done(struct pump *p, int err)
{
    struct vm_session *x = p->userdata;
    int i = (int)(p - x->p);

    (void)err;
    x->p_on[i] = false;
    if (i == SIO_IN) {
        if (!x->tty)
            fd_close(&x->sock[SIO_IN]); /* (the pump shut it down when the input ended) */
        return;
    }
    /* An output stream ended (the guest's EOF, or our reader went away): our socket closes,
     * which tells the guest everything is out, and our copy of the caller's fd closes, which
     * gives the caller its EOF. */
    if (x->tty) {
        pump_stop(&x->p[SIO_IN]);
        x->p_on[SIO_IN] = false;
        fd_close(&x->sock[0]);
        fd_close(&x->sock[1]);
        fd_close(&x->io[0]);
        fd_close(&x->io[1]);
    } else {
        fd_close(&x->sock[i]);
        fd_close(&x->io[i]);
    }
    session_maybe_report(x);
}

/*
 * One line from the guest on ctl into ctl_buf (bounded; NUL-terminated, the newline cut): 1 a
 * line (or a full buffer), 0 the end or an error, -EAGAIN not yet.
 */
static int ctl_read_line(struct vm_session *x)
{
    ssize_t n =
        recv(x->ctl, x->ctl_buf + x->ctl_len, sizeof(x->ctl_buf) - 1 - x->ctl_len, MSG_DONTWAIT);
    char *nl;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return -EAGAIN;
    if (n <= 0)
        return 0;
    x->ctl_len += (size_t)n;
    x->ctl_buf[x->ctl_len] = '\0';
    nl = strchr(x->ctl_buf, '\n');
    if (!nl && x->ctl_len < sizeof(x->ctl_buf) - 1)
        return -EAGAIN;
    if (nl)
        *nl = '\0';
    return 1;
}

/* exec: "exit N" on ctl; EOF without one (the channel died): 125. */
static void on_session_ctl(struct loop_source *src, uint32_t events)
{
    struct vm_session *x = src->userdata;
    int r = ctl_read_line(x);
    uint64_t code;

    (void)events;
    if (r == -EAGAIN)
        return;
    if (r > 0) {
        x->status =
            strncmp(x->ctl_buf, "exit ", 5) == 0 && str_to_u64_cstr(x->ctl_buf + 5, 255, &code) == 0
                ? (int)code
                : 125;
    } else {
        x->status = 125;
        /* the guest is gone: nothing more will come on the output streams */
        for (int i = 0; i < 3; i++) {
            if (x->p_on[i]) {
                pump_stop(&x->p[i]);
                x->p_on[i] = false;
            }
        }
        for (int i = 0; i < 3; i++) {
            fd_close(&x->sock[i]);
            fd_close(&x->io[i]);
        }
    }
    loop_del(x->loop, src);
    x->exited = true;
    session_maybe_report(x);
}

static int hex_line(struct buf *req, const char *key, const char *v)
{
    static const char hex[] = "0123456789abcdef";
    int r = buf_printf(req, "%s ", key);

    for (const unsigned char *p = (const unsigned char *)v; r >= 0 && *p; p++) {
        char two[2] = { hex[*p >> 4], hex[*p & 15] };
        r = buf_append(req, two, 2);
    }
    return r < 0 ? r : buf_append(req, "\n", 1);
}

/* A socketpair: our end (non-blocking) in *ours, the other end carried by the mux as an exec
 * stream whose header names (session, role). */
static int open_stream(struct vm_session *x, const char *role, int *ours)
{
    char hdr[64];
    int sp[2], n, r;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
        return -errno;
    n = str_printf(hdr, sizeof(hdr), "%u %s\n", (unsigned)x->id, role);
    if (n == 0)
        n = (int)strlen(hdr);
    if (n < 0 || send(sp[0], hdr, (size_t)n, MSG_NOSIGNAL) != n) {
        r = n < 0 ? n : -errno;
        close(sp[0]);
        close(sp[1]);
        return r;
    }
    r = mux_open_fd(x->mux, CHANNEL_KIND_EXEC, sp[1]); /* owns sp[1] even on failure */
    if (r < 0) {
        close(sp[0]);
        return r;
    }
    *ours = sp[0];
    return 0;
}

/* Raw, so the host pty passes bytes through: the guest's pty does the line discipline. */
static void host_pty_raw(int fd)
{
    struct termios t;

    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        (void)tcsetattr(fd, TCSANOW, &t);
    }
}

static int session_pump(struct vm_session *x, int i, int from, int to)
{
    int r = pump_start(&x->p[i], x->loop, from, to, on_pump_done, x);

    if (r == -EPERM && i == SIO_IN) {
        /* not pollable (/dev/null, a regular file): no input */
        (void)shutdown(to, SHUT_WR);
        return 0;
    }
    if (r >= 0)
        x->p_on[i] = true;
    return r;
}

/* Session 0 with on_started: the output pumps, once the guest said "started" (or ctl ended). */
static void session_release(struct vm_session *x)
{
    void (*cb)(void *) = x->on_started;

    if (!x->held)
        return;
    x->held = false;
    x->on_started = NULL;
    loop_del(x->loop, &x->ctl_src);
    if (cb)
        cb(x->started_ud);
    if (x->tty) {
        if (x->sock[1] >= 0 && x->io[1] >= 0)
            (void)session_pump(x, SIO_OUT, x->sock[1], x->io[1]);
        return;
    }
    for (int i = SIO_OUT; i <= SIO_ERR; i++)
        if (x->sock[i] >= 0 && x->io[i] >= 0)
            (void)session_pump(x, i, x->sock[i], x->io[i]);
}

static void on_main_ctl(struct loop_source *src, uint32_t events)
{
    struct vm_session *x = src->userdata;

    (void)events;
    if (ctl_read_line(x) == -EAGAIN)
        return;
    /* "started\n", anything else, or the end: the output may go out now */
    session_release(x);
}

/*
 * Opens x's streams and sends its request: ctl (the request, and for exec the status), then
 * in/out/err, or tty. io[] are the caller's stdio (copied); argv NULL for session 0.
 */
int session_open(struct vm_session *x, struct loop *loop, struct mux *mux, const int io[3],
                 bool tty, char *const *argv, char *const *env, const char *cwd)
{
    struct buf *req = &x->req;
    int r;

    x->loop = loop;
    x->mux = mux;
    x->tty = tty;
    x->open = true;
    r = open_stream(x, "ctl", &x->ctl);
    if (r < 0)
        goto out;
    for (size_t i = 0; argv && argv[i] && r >= 0; i++)
        r = hex_line(req, "arg", argv[i]);
    for (size_t i = 0; env && env[i] && r >= 0; i++)
        r = hex_line(req, "env", env[i]);
    if (r >= 0 && cwd)
        r = hex_line(req, "cwd", cwd);
    if (r >= 0 && tty) {
        struct winsize ws = { 0 };
        (void)ioctl(io[0], TIOCGWINSZ, &ws);
        r = buf_printf(req, "tty %u %u\n", (unsigned)ws.ws_row, (unsigned)ws.ws_col);
    }
    if (r >= 0)
        r = buf_append(req, "start\n", 6);
    if (r < 0)
        goto out; /* -E2BIG: over VMS_MAX_REQUEST, which the guest would refuse */
    /* The request goes first on ctl; the guest starts the command once it and all the
     * streams are there. What the socket does not take now (a long argv) is written as the
     * mux, run by this same loop, drains it: waiting here would wait for ourselves. */
    r = req_flush(x);
    if (r > 0) {
        buf_done(req);
    } else if (r == 0) {
        x->req_fd = fcntl(x->ctl, F_DUPFD_CLOEXEC, 3);
        r = x->req_fd < 0 ? -errno
                          : loop_add(loop, &x->req_src, x->req_fd, EPOLLOUT, on_req_writable, x);
        if (r < 0)
            goto out;
    } else {
        goto out;
    }
    if (tty) {
        host_pty_raw(io[0]);
        r = open_stream(x, "tty", &x->sock[0]);
        if (r >= 0 && (x->sock[1] = fcntl(x->sock[0], F_DUPFD_CLOEXEC, 3)) < 0)
            r = -errno;
        if (r >= 0 && ((x->io[0] = fcntl(io[0], F_DUPFD_CLOEXEC, 3)) < 0 ||
                       (x->io[1] = fcntl(io[0], F_DUPFD_CLOEXEC, 3)) < 0))
            r = -errno;
        if (r >= 0 && !x->on_started)
            r = session_pump(x, SIO_OUT, x->sock[1], x->io[1]);
        if (r >= 0)
            r = session_pump(x, SIO_IN, x->io[0], x->sock[0]);
    } else {
        static const char *const roles[3] = { "in", "out", "err" };
        for (int i = 0; i < 3 && r >= 0; i++) {
            r = open_stream(x, roles[i], &x->sock[i]);
            if (r >= 0 && (x->io[i] = fcntl(io[i], F_DUPFD_CLOEXEC, 3)) < 0)
                r = -errno;
        }
        for (int i = 0; i < 3 && r >= 0; i++)
            r = i == SIO_IN     ? session_pump(x, i, x->io[i], x->sock[i])
                : x->on_started ? 0
                                : session_pump(x, i, x->sock[i], x->io[i]);
    }
    if (r >= 0 && x->on_started) {
        r = loop_add(loop, &x->ctl_src, x->ctl, EPOLLIN, on_main_ctl, x);
        if (r >= 0)
            x->held = true;
    }
out:
    if (r < 0)
        req_done(x);
    return r;
}

int send_ctl_line(struct vm_session *x, const char *line)
{
    size_t len = strlen(line);

    if (x->ctl < 0 || x->exited)
        return 0;
    if (x->req_fd >= 0) /* after the request still being written */
        return buf_append(&x->req, line, len);
    if (send(x->ctl, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
        return -errno;
    return 0;
}

void session_resize(struct vm_session *x)
{
    struct winsize ws = { 0 };
    char line[48];

    if (!x->open || !x->tty || x->io[0] < 0 || ioctl(x->io[0], TIOCGWINSZ, &ws) < 0)
        return;
    if (str_printf(line, sizeof(line), "winsize %u %u\n", (unsigned)ws.ws_row,
                   (unsigned)ws.ws_col) == 0)
        (void)send_ctl_line(x, line);
}

int session_watch_exit(struct vm_session *x)
{
    return loop_add(x->loop, &x->ctl_src, x->ctl, EPOLLIN, on_session_ctl, x);
}
