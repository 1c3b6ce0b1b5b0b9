/* A one-way byte pump on the loop (pump.h). */
#include "common/pump.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void finish(struct pump *p, int err)
{
    if (!p->running)
        return;
    pump_stop(p);
    if (err == 0 && p->to_sock)
        (void)shutdown(p->to, SHUT_WR);
    if (p->done)
        p->done(p, err);
}

/* Writes what is buffered; returns 1 when all is out, 0 when `to` is full, -errno. */
static int flush(struct pump *p)
{
    while (p->off < p->len) {
        ssize_t n = p->to_sock
                        ? send(p->to, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : write(p->to, p->buf + p->off, p->len - p->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return -errno;
        p->off += (size_t)n;
    }
    p->off = p->len = 0;
    return 1;
}

/* Reads once into the empty buffer: 1 data, 0 would block, -1 EOF, -errno. */
static int fill(struct pump *p)
{
    ssize_t n;

    do
        n = read(p->from, p->buf, sizeof(p->buf));
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n == 0 || (n < 0 && errno == EIO)) /* EIO: a pty master whose slave is closed */
        return -1;
    if (n < 0)
        return -errno;
    p->len = (size_t)n;
    p->off = 0;
    return 1;
}

static void on_io(struct loop_source *src, uint32_t events);

static void step(struct pump *p)
{
    for (int rounds = 0; p->running && rounds < 16; rounds++) {
        int r;

        if (p->len) {
            r = flush(p);
            if (r < 0) {
                finish(p, r);
                return;
            }
            if (r == 0) {
                /* wait for `to` only (a hung-up `from` would otherwise wake us forever) */
                loop_del(p->loop, &p->rsrc);
                if (!p->wsrc.registered &&
                    (r = loop_add(p->loop, &p->wsrc, p->to, EPOLLOUT, on_io, p)) < 0)
                    finish(p, r);
                return;
            }
        }
        r = fill(p);
        if (r == -1) {
            finish(p, 0);
            return;
        }
        if (r < 0) {
            finish(p, r);
            return;
        }
        if (r == 0) {
            loop_del(p->loop, &p->wsrc);
            if (!p->rsrc.registered &&
                (r = loop_add(p->loop, &p->rsrc, p->from, EPOLLIN, on_io, p)) < 0)
                finish(p, r);
            return;
        }
    }
}

static void on_io(struct loop_source *src, uint32_t events)
{
    (void)events;
    step(src->userdata);
}

static bool is_sock(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int pump_start(struct pump *p, struct loop *l, int from, int to,
               void (*done)(struct pump *p, int err), void *userdata)
{
    int r;

    memset(p, 0, sizeof(*p) - sizeof(p->buf));
    p->loop = l;
    p->from = from;
    p->to = to;
    p->done = done;
    p->userdata = userdata;
    p->to_sock = is_sock(to);
    if ((r = set_nonblock(from)) < 0 || (r = set_nonblock(to)) < 0)
        return r;
    /* One source at a time: `from` while the buffer is empty, `to` while it is not. A fd
     * pumped both ways needs a dup for the other direction (epoll keys on the fd number). */
    r = loop_add(l, &p->rsrc, from, EPOLLIN, on_io, p);
    if (r < 0)
        return r;
    p->running = true;
    return 0;
}

void pump_drain_and_finish(struct pump *p)
{
    if (!p->running)
        return;
    for (int rounds = 0; rounds < 64; rounds++) {
        if (p->len && flush(p) <= 0)
            break;
        if (fill(p) <= 0)
            break;
    }
    if (p->len)
        (void)flush(p);
    finish(p, 0);
}

void pump_stop(struct pump *p)
{
    if (!p->loop)
        return;
    loop_del(p->loop, &p->rsrc);
    loop_del(p->loop, &p->wsrc);
    p->running = false;
}
