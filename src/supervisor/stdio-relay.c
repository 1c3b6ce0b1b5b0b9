#include "supervisor/stdio-relay.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "common/xalloc.h"

/*
 * A private description of one of our stdio fds: pipes, FIFOs and character devices (the
 * terminal) are reopened through /proc/self/fd with O_NONBLOCK, leaving the shared
 * description (the shell's) as it was. Sockets and regular files get a plain duplicate: the
 * former are used with MSG_DONTWAIT, the latter never block for long and must keep their
 * shared offset (`{ run ...; echo; } >file`). Returns the fd (close-on-exec) or -errno.
 */
static int reopen_private(int fd, int acc, bool *ret_sock, bool *ret_blocking)
{
    struct stat st;
    char path[64];
    int nfd;

    *ret_sock = false;
    *ret_blocking = false;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        if (str_printf(path, sizeof(path), "/proc/self/fd/%d", fd) >= 0) {
            nfd = open(path, acc | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
            if (nfd >= 0)
                return nfd;
        }
        *ret_blocking = true;
    }
    *ret_sock = S_ISSOCK(st.st_mode);
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return nfd < 0 ? -errno : nfd;
}

/* ---- the ring ---- */

static size_t ring_free_span(const struct stdio_stream *st, char **ret)
{
    size_t tail;

    if (st->len == STDIO_RING)
        return 0;
    tail = (st->head + st->len) % STDIO_RING;
    *ret = st->ring + tail;
    return tail < st->head ? st->head - tail : STDIO_RING - tail;
}

static size_t ring_used_span(const struct stdio_stream *st)
{
    return MIN(st->len, STDIO_RING - st->head);
}

static void ring_consume(struct stdio_stream *st, size_t n)
{
    st->len -= n;
    st->head = st->len ? (st->head + n) % STDIO_RING : 0;
}

/* ---- one stream ---- */

static bool stream_finished(const struct stdio_stream *st)
{
    return st->dead || (st->eof && st->len == 0);
}

/* A read through the terminal filter (our stdout or stderr is a terminal), into the ring. */
static bool stream_read_filtered(struct stdio_stream *st)
{
    char tmp[16384], out[sizeof(tmp) + TERMFILTER_HOLD];
    size_t room = STDIO_RING - st->len, n, done = 0;
    ssize_t k;

    if (room <= TERMFILTER_HOLD)
        return false;
    k = read(st->from, tmp, MIN(sizeof(tmp), room - TERMFILTER_HOLD));
    if (k < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (k <= 0) {
        st->eof = true; /* an unfinished sequence held by the filter is dropped */
        return true;
    }
    n = termfilter_feed(st->filter, tmp, (size_t)k, out);
    while (done < n) {
        char *p = NULL;
        size_t span = MIN(ring_free_span(st, &p), n - done);
        /* never a full ring here: room > TERMFILTER_HOLD and n <= k + TERMFILTER_HOLD <= room */
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        memcpy(p, out + done, span);
        st->len += span;
        done += span;
    }
    return true;
}

/* One read into the ring. Returns true when it made progress (bytes or EOF). */
static bool stream_read(struct stdio_stream *st)
{
    char *p = NULL;
    size_t span = ring_free_span(st, &p);
    ssize_t n;

    if (!span || st->eof || st->from < 0)
        return false;
    if (st->filter)
        return stream_read_filtered(st);
    n = st->from_sock ? recv(st->from, p, span, MSG_DONTWAIT) : read(st->from, p, span);
    if (n > 0) {
        st->len += (size_t)n;
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    st->eof = true; /* EOF, or an error that ends this input */
    return true;
}

/* One write from the ring. Returns true when it made progress. */
static bool stream_write(struct stdio_stream *st)
{
    size_t span = ring_used_span(st);
    ssize_t n;

    if (!span || st->dead || st->to < 0)
        return false;
    if (st->to_blocking && span > PIPE_BUF)
        span = PIPE_BUF; /* fits in what EPOLLOUT promised: a pipe write of <= PIPE_BUF */
    n = st->to_sock ? send(st->to, st->ring + st->head, span, MSG_DONTWAIT | MSG_NOSIGNAL)
                    : write(st->to, st->ring + st->head, span);
    if (n > 0) {
        ring_consume(st, (size_t)n);
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    /* The reader is gone (EPIPE) or the file is full: drop this stream. Closing our read end
     * of the bottle's pipe then gives its writer SIGPIPE/EPIPE, as without a relay. */
    log_debug("stdio relay: writing fd %d: %s; dropping the stream", st->to,
              n < 0 ? strerror(errno) : "no progress");
    st->dead = true;
    st->len = st->head = 0;
    return true;
}

static void stream_close(struct stdio_relay *r, struct stdio_stream *st)
{
    if (r->loop) {
        loop_del(r->loop, &st->from_src);
        loop_del(r->loop, &st->to_src);
    }
    st->from_poll = st->to_poll = false;
    if (st->from >= 0 && st->from_owned)
        close(st->from);
    if (st->to >= 0 && st->to_owned)
        close(st->to);
    st->from = st->to = -1;
}

static void update(struct stdio_relay *r);

static void on_from(struct loop_source *src, uint32_t ev)
{
    struct stdio_stream *st = container_of(src, struct stdio_stream, from_src);

    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        stream_read(st);
    if ((ev & (EPOLLHUP | EPOLLERR)) && !st->eof) {
        /* The writers are gone but data is left. A hung-up fd stays "ready" for epoll even
         * without interest, so stop polling it: it can no longer block, update() reads it
         * directly as the ring drains. */
        loop_del(st->relay->loop, &st->from_src);
        st->from_poll = false;
    }
    if (!st->to_blocking && st->to_poll)
        while (stream_write(st) && st->len)
            ;
    update(st->relay);
}

static void on_to(struct loop_source *src, uint32_t ev)
{
    struct stdio_stream *st = container_of(src, struct stdio_stream, to_src);

    if (ev & EPOLLOUT)
        stream_write(st);
    else if (ev & (EPOLLERR | EPOLLHUP)) {
        /* The reader went away (the bottle's stdin, or the pipe our stdout is). */
        st->dead = true;
        st->len = st->head = 0;
    }
    update(st->relay);
}

static void update(struct stdio_relay *r)
{
    for (size_t i = 0; i < STDIO_MAX; i++) {
        struct stdio_stream *st = &r->s[i];
        if (st->from < 0 && st->to < 0)
            continue;
        /* Sources that cannot be polled (a regular file, a hung-up pipe) never block. */
        if (!st->from_poll)
            while (!st->dead && st->len < STDIO_RING / 2 && stream_read(st) && !st->eof)
                ;
        if (!st->to_poll)
            while (st->len && stream_write(st))
                ;
        if (stream_finished(st)) {
            stream_close(r, st);
            continue;
        }
        if (st->from_poll)
            loop_mod(r->loop, &st->from_src, !st->eof && st->len < STDIO_RING / 2 ? EPOLLIN : 0);
        if (st->to_poll)
            loop_mod(r->loop, &st->to_src, st->len ? EPOLLOUT : 0);
    }
    if (!r->finished && stdio_relay_finished(r)) {
        r->finished = true;
        if (r->done)
            r->done(r->userdata);
    }
}

/* ---- public ---- */

static void stream_open(struct stdio_relay *r, struct stdio_stream *st, int from, int to)
{
    st->relay = r;
    st->ring = xmalloc(STDIO_RING);
    st->from = from;
    st->to = to;
    st->from_owned = st->to_owned = true;
}

static int relay_open(struct stdio_relay *r, struct loop *l, bool interactive, int devnull,
                      int in_fd, int out_fd, int err_fd, const int *given)
{
    int p[2], fd, ours = -1;
    bool sock, blocking;

    memset(r, 0, sizeof(*r));
    r->opened = true;
    r->loop = l;
    for (size_t i = 0; i < STDIO_MAX; i++) {
        r->s[i].from = r->s[i].to = -1;
        r->child[i] = -1;
    }
    for (size_t i = 0; i < STDIO_MAX; i++) {
        struct stdio_stream *st = &r->s[i];
        if (i == STDIO_IN && !interactive) {
            r->child[i] = devnull;
            continue;
        }
        if (given) {
            ours = given[i]; /* the bottle's end is elsewhere already */
        } else {
            if (pipe2(p, O_CLOEXEC) < 0)
                goto fail;
            /* The bottle's end stays blocking, as an inherited stdio fd normally is. */
            r->child[i] = i == STDIO_IN ? p[0] : p[1];
            r->child_owned[i] = true;
            ours = i == STDIO_IN ? p[1] : p[0];
        }
        if (fd_set_nonblock(ours, true) < 0)
            goto fail_ours;
        fd = reopen_private(i == STDIO_IN    ? in_fd
                            : i == STDIO_OUT ? out_fd
                                             : err_fd,
                            i == STDIO_IN ? O_RDONLY : O_WRONLY, &sock, &blocking);
        if (fd < 0) {
            /* Our own stdio is closed: the stream is dropped (its writer gets EPIPE; an
             * absent stdin is an empty one). */
            log_debug("stdio relay: our fd %d is unusable (%s)", (int)i, strerror(-fd));
        }
        stream_open(r, st, i == STDIO_IN ? fd : ours, i == STDIO_IN ? ours : fd);
        if (i == STDIO_IN) {
            st->from_sock = sock;
            if (fd < 0)
                st->eof = true;
        } else {
            st->to_sock = sock;
            st->to_blocking = blocking;
            if (fd >= 0 && isatty(fd)) {
                /* a terminal: what the bottle prints goes through the filter (termfilter.h) */
                st->filter = xmalloc(sizeof(*st->filter));
                termfilter_init(st->filter);
            }
            if (fd < 0)
                st->dead = true;
        }
    }
    return 0;
fail:
    fd = -errno;
    stdio_relay_done(r);
    return fd;
fail_ours:
    fd = -errno;
    close(ours);
    stdio_relay_done(r);
    return fd;
}

int stdio_relay_open(struct stdio_relay *r, struct loop *l, bool interactive, int devnull,
                     int in_fd, int out_fd, int err_fd)
{
    return relay_open(r, l, interactive, devnull, in_fd, out_fd, err_fd, NULL);
}

int stdio_relay_adopt(struct stdio_relay *r, struct loop *l, const int host[STDIO_MAX], int in_fd,
                      int out_fd, int err_fd)
{
    for (size_t i = 0; i < STDIO_MAX; i++)
        if (host[i] >= 0)
            (void)fcntl(host[i], F_SETFD, FD_CLOEXEC);
    return relay_open(r, l, host[STDIO_IN] >= 0, -1, in_fd, out_fd, err_fd, host);
}

void stdio_relay_close_child(struct stdio_relay *r)
{
    for (size_t i = 0; i < STDIO_MAX; i++) {
        if (r->child[i] >= 0 && r->child_owned[i])
            close(r->child[i]);
        r->child[i] = -1;
        r->child_owned[i] = false;
    }
}

static int watch(struct stdio_relay *r, struct loop_source *src, int fd, loop_io_fn cb,
                 bool *ret_poll)
{
    int k;

    *ret_poll = false;
    if (fd < 0)
        return 0;
    k = loop_add(r->loop, src, fd, 0, cb, r);
    if (k == -EPERM)
        return 0; /* a regular file (or /dev/null): always ready, used directly */
    if (k < 0)
        return k;
    *ret_poll = true;
    return 0;
}

int stdio_relay_start(struct stdio_relay *r, void (*done)(void *userdata), void *userdata)
{
    int k;

    r->done = done;
    r->userdata = userdata;
    for (size_t i = 0; i < STDIO_MAX; i++) {
        struct stdio_stream *st = &r->s[i];
        if ((k = watch(r, &st->from_src, st->from, on_from, &st->from_poll)) < 0 ||
            (k = watch(r, &st->to_src, st->to, on_to, &st->to_poll)) < 0)
            return k;
    }
    update(r);
    return 0;
}

bool stdio_relay_finished(const struct stdio_relay *r)
{
    for (size_t i = STDIO_OUT; i < STDIO_MAX; i++)
        if (r->s[i].from >= 0 || r->s[i].to >= 0)
            return false;
    return true;
}

void stdio_relay_done(struct stdio_relay *r)
{
    if (!r->opened)
        return;
    stdio_relay_close_child(r);
    for (size_t i = 0; i < STDIO_MAX; i++) {
        stream_close(r, &r->s[i]);
        free(r->s[i].ring);
        r->s[i].ring = NULL;
        free(r->s[i].filter);
        r->s[i].filter = NULL;
    }
    r->loop = NULL;
    r->opened = false;
}
