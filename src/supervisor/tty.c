#include "supervisor/tty.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/net.h"

#define TTY_BUF_MAX (256 * 1024)
#define TTY_FLUSH_WAIT_MS 100 /* tty_relay_flush: how long a quiet terminal is waited for */

/* What an opened and an adopted relay share once t->master is set. */
static void relay_init(struct tty_relay *t, struct loop *l, int in_fd, int out_fd)
{
    (void)fcntl(t->master, F_SETFD, FD_CLOEXEC);
    fd_set_nonblock(t->master, true);
    t->loop = l;
    t->in_fd = in_fd;
    t->out_fd = out_fd;
    buf_init(&t->to_master, TTY_BUF_MAX);
    buf_init(&t->to_out, TTY_BUF_MAX);
    termfilter_init(&t->filter);
    t->filtered = isatty(out_fd);
}

int tty_relay_open(struct tty_relay *t, struct loop *l, int in_fd, int out_fd)
{
    struct winsize ws;
    struct termios tio;
    bool have_ws = ioctl(in_fd, TIOCGWINSZ, &ws) == 0;
    bool have_tio = tcgetattr(in_fd, &tio) == 0;

    memset(t, 0, sizeof(*t));
    t->master = t->slave = -1;
    if (openpty(&t->master, &t->slave, NULL, have_tio ? &tio : NULL, have_ws ? &ws : NULL) < 0)
        return -errno;
    (void)fcntl(t->slave, F_SETFD, FD_CLOEXEC);
    relay_init(t, l, in_fd, out_fd);
    return 0;
}

int tty_relay_adopt(struct tty_relay *t, struct loop *l, int master, int in_fd, int out_fd)
{
    memset(t, 0, sizeof(*t));
    t->slave = -1;
    t->master = master;
    relay_init(t, l, in_fd, out_fd);
    tty_relay_resize(t);
    return 0;
}

static void update(struct tty_relay *t);

/* Typed input with the detach keys taken out (attach). True when they were typed. */
static bool take_detach_keys(struct tty_relay *t)
{
    char tmp[4096], out[sizeof(tmp) + 1];
    size_t n_out = 0;
    ssize_t n;

    if (t->to_master.len >= TTY_BUF_MAX - sizeof(out))
        return false;
    n = read(t->in_fd, tmp, sizeof(tmp));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        loop_del(t->loop, &t->in_src);
        return false;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = tmp[i];
        if (t->ctrl_p) {
            t->ctrl_p = false;
            if (c == TTY_DETACH_2) {
                buf_append(&t->to_master, out, n_out);
                return true;
            }
            out[n_out++] = TTY_DETACH_1;
        }
        if (c == TTY_DETACH_1)
            t->ctrl_p = true;
        else
            out[n_out++] = c;
    }
    buf_append(&t->to_master, out, n_out);
    return false;
}

/* One read from `from` into b, through filter (when not NULL). */
static void pump(int from, struct buf *b, bool *eof, struct termfilter *filter)
{
    char tmp[16384], out[sizeof(tmp) + TERMFILTER_HOLD];
    ssize_t n;

    if (b->len >= TTY_BUF_MAX - sizeof(out))
        return;
    n = read(from, tmp, sizeof(tmp));
    if (n > 0 && filter)
        buf_append(b, out, termfilter_feed(filter, tmp, (size_t)n, out));
    else if (n > 0)
        buf_append(b, tmp, (size_t)n);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        *eof = true; /* EIO on a master means the slave side is all closed */
}

static void drain(int to, struct buf *b)
{
    ssize_t n;

    if (!b->len)
        return;
    n = write(to, b->p, b->len);
    if (n > 0)
        buf_consume(b, (size_t)n);
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
        buf_reset(b); /* the reader is gone: drop */
}

static void on_in(struct loop_source *s, uint32_t ev)
{
    struct tty_relay *t = s->userdata;
    bool eof = false;
    (void)ev;
    if (t->detach) {
        if (take_detach_keys(t)) {
            t->detach(t->detach_ud);
            return;
        }
        update(t);
        return;
    }
    pump(t->in_fd, &t->to_master, &eof, NULL);
    if (eof) {
        /* Host stdin closed: stop reading it. The pty has no EOF of its own to pass on; a
         * program reading the terminal sees nothing more, as with a detached terminal. */
        loop_del(t->loop, &t->in_src);
    }
    update(t);
}

static void on_master(struct loop_source *s, uint32_t ev)
{
    struct tty_relay *t = s->userdata;
    if (ev & EPOLLIN || ev & EPOLLHUP || ev & EPOLLERR)
        pump(t->master, &t->to_out, &t->master_eof, t->filtered ? &t->filter : NULL);
    if (ev & EPOLLOUT)
        drain(t->master, &t->to_master);
    update(t);
}

static void on_out(struct loop_source *s, uint32_t ev)
{
    struct tty_relay *t = s->userdata;
    (void)ev;
    drain(t->out_fd, &t->to_out);
    update(t);
}

static void update(struct tty_relay *t)
{
    uint32_t mev = 0;

    /* A regular file cannot be polled: write to it directly. */
    if (!t->out_src.registered)
        drain(t->out_fd, &t->to_out);

    if (t->master_eof) {
        loop_del(t->loop, &t->master_src);
    } else {
        if (t->to_out.len < TTY_BUF_MAX / 2)
            mev |= EPOLLIN;
        if (t->to_master.len)
            mev |= EPOLLOUT;
        loop_mod(t->loop, &t->master_src, mev);
    }
    if (t->out_src.registered)
        loop_mod(t->loop, &t->out_src, t->to_out.len ? EPOLLOUT : 0);
    if (t->in_src.registered)
        loop_mod(t->loop, &t->in_src, t->to_master.len < TTY_BUF_MAX / 2 ? EPOLLIN : 0);
}

int tty_relay_start(struct tty_relay *t)
{
    struct termios raw;
    int r;

    if (tcgetattr(t->in_fd, &t->saved) == 0) {
        raw = t->saved;
        cfmakeraw(&raw);
        if (tcsetattr(t->in_fd, TCSADRAIN, &raw) == 0)
            t->raw = true;
    }
    r = loop_add(t->loop, &t->master_src, t->master, EPOLLIN, on_master, t);
    if (r < 0)
        return r;
    /* stdin/stdout may be a terminal that does not support epoll (rare) or a file: the relay
     * then only runs for the master side. */
    loop_add(t->loop, &t->in_src, t->in_fd, EPOLLIN, on_in, t);
    loop_add(t->loop, &t->out_src, t->out_fd, 0, on_out, t);
    return 0;
}

void tty_relay_resize(struct tty_relay *t)
{
    struct winsize ws;
    if (t->master >= 0 && ioctl(t->in_fd, TIOCGWINSZ, &ws) == 0)
        ioctl(t->master, TIOCSWINSZ, &ws);
}

void tty_relay_flush(struct tty_relay *t)
{
    /* Read what the bottle wrote before it exited, then write it all out (blocking). The
     * last bytes may still be on their way through the pty's buffer work (or the stream from
     * the guest) when the exit status arrives: a read that finds nothing waits up to
     * TTY_FLUSH_WAIT_MS for more or for the end (EIO once no one holds the other side), so
     * output is not lost under load; a background process still holding the terminal costs
     * that wait once. */
    for (int i = 0; i < 64 && !t->master_eof && t->master >= 0; i++) {
        size_t before = t->to_out.len;
        struct pollfd p = { .fd = t->master, .events = POLLIN };
        pump(t->master, &t->to_out, &t->master_eof, t->filtered ? &t->filter : NULL);
        if (t->to_out.len == before && !t->master_eof && poll(&p, 1, TTY_FLUSH_WAIT_MS) <= 0)
            break;
    }
    while (t->to_out.len) {
        ssize_t n = write(t->out_fd, t->to_out.p, t->to_out.len);
        if (n <= 0 && errno != EAGAIN && errno != EINTR)
            break;
        if (n > 0)
            buf_consume(&t->to_out, (size_t)n);
    }
}

void tty_relay_done(struct tty_relay *t)
{
    if (t->loop) {
        loop_del(t->loop, &t->in_src);
        loop_del(t->loop, &t->out_src);
        loop_del(t->loop, &t->master_src);
    }
    if (t->raw) {
        /* Replies to queries the bottle sent (cursor position, device attributes: those the
         * filter lets through) may still be on their way: read and drop them, then restore
         * with TCSAFLUSH, which drops what is left, so that none reaches the user's shell as
         * typed input. Until 20 ms pass without any (100 ms when the bottle asked the
         * terminal something), at most 10 reads. */
        struct pollfd p = { .fd = t->in_fd, .events = POLLIN };
        char junk[256];
        int quiet = t->filter.asked ? 100 : 20;
        for (int i = 0; i < 10 && poll(&p, 1, quiet) > 0 && (p.revents & POLLIN); i++)
            if (read(t->in_fd, junk, sizeof(junk)) <= 0)
                break;
        tcsetattr(t->in_fd, TCSAFLUSH, &t->saved);
        t->raw = false;
    }
    if (t->master >= 0)
        close(t->master);
    if (t->slave >= 0)
        close(t->slave);
    t->master = t->slave = -1;
    buf_done(&t->to_master);
    buf_done(&t->to_out);
    t->loop = NULL;
}
