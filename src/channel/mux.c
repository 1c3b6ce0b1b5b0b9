#include "channel/mux.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/bufq.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/xalloc.h"

/*
 * Buffers and their bounds:
 *   in   : fixed MUX_IN_CAP bytes (>= one whole frame), read from the channel and decoded
 *          in place (a partial frame at the end is moved to the front: < one frame).
 *   out  : frames waiting for the channel fd, a bufq (common/bufq.h) of MUX_OUT_CHUNK-byte
 *          chunks capped at MUX_OUT_MAX, written with one sendmsg/writev of several chunks.
 *          Frames are written whole into one chunk (a DATA frame shrinks to the room left).
 *          DATA is only produced while out is below MUX_OUT_HIGH (then local fds stop being
 *          read until it drains below MUX_OUT_LOW); the channel fd is not read while out is at
 *          or above MUX_OUT_STOP_IN (control frames answer input, so input stops too). Beyond
 *          MUX_OUT_MAX the channel dies.
 *   rx   : per stream, a bufq of bytes from the peer not yet written to the local fd. Bounded
 *          by the credit we granted: recv_avail + len(rx) + pending_grant == our receive
 *          window (channel_recv_window: CHANNEL_WINDOW on the host), and capped at it besides; its
 * chunks are freed as soon as it drains.
 */
/* MUX_IN_CAP and MUX_OUT_HIGH/LOW/STOP_IN/MAX: common/limits.h */
#define MUX_OUT_CHUNK (64u * 1024u)
#define MUX_OUT_SPARE 2
#define MUX_RX_CHUNK (16u * 1024u)
#define MUX_READS_PER_EVENT 8
/* Channel reads per wake-up: a virtio-serial port returns at most one guest buffer (a page)
 * per read, so one read per epoll_wait would cost a wake-up per 4 KiB. */
#define MUX_CHANNEL_READS 64
/* Consecutive DATA frames of one stream written to its socket with one sendmsg. */
#define MUX_BATCH_IOV 32

enum mux_bind {
    MUX_BIND_STREAM,   /* TCP socket */
    MUX_BIND_DGRAM_FD, /* connected UDP socket (host) */
    MUX_BIND_DGRAM_CB, /* callbacks (guest UDP relay) */
};

struct mux_stream {
    struct mux *mux;
    struct channel_stream_state ss;
    enum mux_bind bind;
    struct loop_source src;
    int fd;
    bool in_session;
    bool connecting; /* host: connect() in progress, OPEN_OK not sent yet */
    bool read_eof;   /* local read side finished (FIN sent) */
    bool wr_shut;    /* shutdown(SHUT_WR) done on the local fd */
    bool closed;     /* destroyed; memory freed by the reaper */
    uint32_t pending_grant;
    struct bufq rx;
    const struct mux_dgram_ops *dops;
    void *dud;
    struct mux_stream *prev, *next; /* live streams */
    struct mux_stream *zombie_next;
};

struct mux {
    struct loop *loop;
    int fd;
    bool is_sock;
    struct loop_source src;
    struct mux_ops ops;
    void *ud;
    struct channel_session ses;
    uint8_t *in;
    size_t in_len;
    struct bufq out;
    bool out_blocked;
    bool dead, dead_notified, freeing;
    int dead_err;
    struct loop_defer reap;
    struct mux_stream *streams;
    struct mux_stream *zombies;
    struct mux_stats st;
    /* DATA payloads decoded from in, for one stream, not yet written to its socket (see
     * batch_flush): they point into in, so they are flushed before in changes. */
    struct mux_stream *batch_s;
    struct iovec batch_iov[MUX_BATCH_IOV];
    size_t batch_n;
};

static void mux_die(struct mux *m, int err);
static void stream_sync(struct mux_stream *s);
static void stream_destroy(struct mux_stream *s, bool rst, bool notify);
static void on_stream(struct loop_source *src, uint32_t events);

/* ---- reaping (deferred frees, death notification) ---- */

static void on_reap(struct loop_defer *d)
{
    struct mux *m = d->userdata;

    while (m->zombies) {
        struct mux_stream *s = m->zombies;
        m->zombies = s->zombie_next;
        free(s);
    }
    if (m->freeing) {
        free(m->in);
        bufq_done(&m->out);
        free(m);
        return;
    }
    if (m->dead && !m->dead_notified) {
        m->dead_notified = true;
        if (m->ops.dead)
            m->ops.dead(m->ud, m->dead_err); /* may call mux_free(): it queues us again */
    }
}

static void schedule_reap(struct mux *m)
{
    loop_defer(m->loop, &m->reap, on_reap, m);
}

/* ---- output queue ---- */

/* At least min contiguous bytes at the end of out (*avail of them), or NULL (the channel
 * died of overflow, or was dead already). */
static uint8_t *out_reserve(struct mux *m, size_t min, size_t *avail)
{
    uint8_t *p;

    if (m->dead)
        return NULL;
    if (bufq_reserve(&m->out, min, &p, avail) < 0) {
        mux_die(m, -ENOBUFS);
        return NULL;
    }
    return p;
}

static void out_commit(struct mux *m, size_t n)
{
    bufq_commit(&m->out, n);
    m->st.frames_out++;
    if (bufq_len(&m->out) > m->st.out_max)
        m->st.out_max = bufq_len(&m->out);
    if (bufq_len(&m->out) >= MUX_OUT_HIGH)
        m->out_blocked = true;
}

static void queue_ctl(struct mux *m, enum channel_type type, uint32_t stream, uint32_t arg)
{
    size_t avail;
    uint8_t *p = out_reserve(m, CHANNEL_HDR_LEN + CHANNEL_HELLO_LEN, &avail);

    if (!p)
        return;
    out_commit(m, channel_frame_encode_ctl(p, type, stream, arg));
    if (type == CHANNEL_T_RESET)
        m->st.resets_out++;
}

static void channel_sync(struct mux *m)
{
    uint32_t ev = 0;

    if (m->dead)
        return;
    if (bufq_len(&m->out) < MUX_OUT_STOP_IN)
        ev |= EPOLLIN;
    if (!bufq_empty(&m->out))
        ev |= EPOLLOUT;
    if (loop_mod(m->loop, &m->src, ev) < 0)
        mux_die(m, -EIO);
}

/* Write what we can of out; then fix interest, and wake streams if out drained. */
static void mux_flush(struct mux *m)
{
    while (!m->dead && !bufq_empty(&m->out)) {
        ssize_t n = bufq_write_fd(&m->out, m->fd, m->is_sock);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            mux_die(m, n == -EPIPE ? -ECONNRESET : (int)n);
            return;
        }
    }
    if (m->dead)
        return;
    if (m->out_blocked && bufq_len(&m->out) < MUX_OUT_LOW) {
        m->out_blocked = false;
        for (struct mux_stream *s = m->streams; s; s = s->next)
            stream_sync(s);
    }
    channel_sync(m);
}

/* ---- streams ---- */

static struct mux_stream *stream_new(struct mux *m, enum mux_bind bind, int fd)
{
    struct mux_stream *s = xcalloc(1, sizeof(*s));

    s->mux = m;
    s->bind = bind;
    s->fd = fd;
    s->src.fd = -1;
    bufq_init(&s->rx, MUX_RX_CHUNK, channel_recv_window(m->ses.role), 0);
    s->next = m->streams;
    if (m->streams)
        m->streams->prev = s;
    m->streams = s;
    m->st.streams++;
    return s;
}

static void close_rst(int fd)
{
    /* SO_LINGER 0: close() sends RST, so a client learns at once that the stream failed. */
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/*
 * Tear a stream down: unregister and close its fd (with RST if rst), drop it from the
 * session, tell a datagram owner (notify), and queue the memory for the reaper.
 */
static void stream_destroy(struct mux_stream *s, bool rst, bool notify)
{
    struct mux *m = s->mux;

    if (s->closed)
        return;
    s->closed = true;
    if (m->batch_s == s) {
        m->batch_s = NULL;
        m->batch_n = 0;
    }
    loop_del(m->loop, &s->src);
    if (s->fd >= 0) {
        if (rst && s->bind == MUX_BIND_STREAM)
            close_rst(s->fd);
        else
            close(s->fd);
        s->fd = -1;
    }
    if (s->in_session) {
        channel_session_remove(&m->ses, &s->ss);
        s->in_session = false;
    }
    m->st.rx_queued -= bufq_len(&s->rx);
    bufq_done(&s->rx);
    if (s->prev)
        s->prev->next = s->next;
    else
        m->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    m->st.streams--;
    s->zombie_next = m->zombies;
    m->zombies = s;
    schedule_reap(m);
    if (notify && s->bind == MUX_BIND_DGRAM_CB && s->dops && s->dops->closed)
        s->dops->closed(s, s->dud);
}

/* Abort a stream from our side: RESET to the peer (if it knows the stream), RST locally. */
static void stream_reset(struct mux_stream *s, enum channel_reason reason)
{
    if (s->closed)
        return;
    if (s->in_session && !s->mux->dead)
        queue_ctl(s->mux, CHANNEL_T_RESET, s->ss.id, reason);
    stream_destroy(s, true, true);
}

/* Done when both sides sent FIN and everything received has been delivered. */
static void stream_check_done(struct mux_stream *s)
{
    if (s->closed || !channel_stream_finished(&s->ss) || !bufq_empty(&s->rx))
        return;
    if (s->bind == MUX_BIND_STREAM && !s->wr_shut)
        return;
    stream_destroy(s, false, true);
}

/* Bytes from the peer have left our hands: return credit in batches. */
static void stream_consumed(struct mux_stream *s, size_t n)
{
    s->pending_grant += (uint32_t)n;
    /* at least a quarter of the window at a time */
    if (s->closed || (s->ss.flags & CHANNEL_SS_PEER_FIN) ||
        s->pending_grant < s->ss.recv_window / 4)
        return;
    if (channel_stream_granted(&s->ss, s->pending_grant) < 0) {
        stream_reset(s, CHANNEL_RESET_ABORTED);
        return;
    }
    queue_ctl(s->mux, CHANNEL_T_WINDOW, s->ss.id, s->pending_grant);
    s->pending_grant = 0;
}

static void stream_send_fin(struct mux_stream *s)
{
    s->read_eof = true;
    if (s->ss.flags & CHANNEL_SS_LOCAL_FIN)
        return;
    s->ss.flags |= CHANNEL_SS_LOCAL_FIN;
    queue_ctl(s->mux, CHANNEL_T_FIN, s->ss.id, 0);
    stream_check_done(s);
}

static void stream_maybe_shut(struct mux_stream *s)
{
    /* s: the stream of a FIN, which channel_session_recv() always names */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    if (s->closed || s->connecting || s->wr_shut || !bufq_empty(&s->rx) ||
        !(s->ss.flags & CHANNEL_SS_PEER_FIN) || s->bind != MUX_BIND_STREAM)
        return;
    shutdown(s->fd, SHUT_WR);
    s->wr_shut = true;
}

/* Write queued peer bytes to the local fd. */
static void stream_write(struct mux_stream *s)
{
    struct mux *m = s->mux;

    while (!s->closed && !bufq_empty(&s->rx)) {
        ssize_t n = bufq_write_fd(&s->rx, s->fd, true);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            stream_reset(s, CHANNEL_RESET_ABORTED);
            return;
        }
        m->st.rx_queued -= (size_t)n;
        stream_consumed(s, (size_t)n);
    }
    stream_maybe_shut(s);
    stream_check_done(s);
}

/* Read from the local fd into DATA frames, within credit and while out has room. */
static void stream_read(struct mux_stream *s)
{
    struct mux *m = s->mux;

    for (int i = 0; i < MUX_READS_PER_EVENT; i++) {
        size_t want, avail;
        uint8_t *p;
        ssize_t n;

        if (s->closed || m->dead || s->read_eof || m->out_blocked || s->ss.send_credit == 0)
            return;
        if (s->bind == MUX_BIND_STREAM) {
            /* A byte stream: a frame as large as credit and the chunk's room allow. */
            p = out_reserve(m, CHANNEL_HDR_LEN + 1, &avail);
            want = p ? MIN(MIN((size_t)CHANNEL_MAX_PAYLOAD, s->ss.send_credit),
                           avail - CHANNEL_HDR_LEN)
                     : 0;
        } else {
            /* A datagram must fit one frame whatever its size. */
            p = out_reserve(m, CHANNEL_MAX_FRAME, &avail);
            want = CHANNEL_MAX_PAYLOAD;
        }
        if (!p)
            return;
        n = recv(s->fd, p + CHANNEL_HDR_LEN, want,
                 MSG_DONTWAIT | (s->bind == MUX_BIND_DGRAM_FD ? MSG_TRUNC : 0));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            stream_reset(s, CHANNEL_RESET_ABORTED);
            return;
        }
        if (s->bind == MUX_BIND_DGRAM_FD) {
            /* One datagram per frame; an empty, truncated or over-credit one is dropped. */
            if (n == 0 || (size_t)n > want || (size_t)n > s->ss.send_credit) {
                m->st.dgrams_dropped++;
                continue;
            }
        } else if (n == 0) {
            stream_send_fin(s);
            return;
        }
        channel_frame_header(p, CHANNEL_T_DATA, s->ss.id, (uint16_t)n);
        if (channel_stream_sent_data(&s->ss, (size_t)n) < 0) {
            stream_reset(s, CHANNEL_RESET_ABORTED); /* cannot happen: n <= credit */
            return;
        }
        out_commit(m, CHANNEL_HDR_LEN + (size_t)n);
    }
}

/* Acceptor: the local fd's connect() finished (or failed). */
static void stream_connected(struct mux_stream *s)
{
    int err = net_socket_error(s->fd);

    if (err < 0) {
        stream_reset(s, CHANNEL_RESET_REFUSED);
        return;
    }
    s->connecting = false;
    queue_ctl(s->mux, CHANNEL_T_OPEN_OK, s->ss.id, 0);
    /* Bytes and a FIN the opener pipelined behind its OPEN. */
    stream_write(s);
}

static void stream_sync(struct mux_stream *s)
{
    struct mux *m = s->mux;
    uint32_t ev = 0;
    int r;

    if (s->closed || s->fd < 0 || m->dead)
        return;
    if (s->connecting) {
        ev = EPOLLOUT;
    } else {
        if (!s->read_eof && s->ss.send_credit > 0 && !m->out_blocked)
            ev |= EPOLLIN;
        if (!bufq_empty(&s->rx))
            ev |= EPOLLOUT;
    }
    /* With no interest the fd leaves epoll: a HUP on a stream waiting for credit must not
     * wake us in a loop. */
    if (ev == 0) {
        loop_del(m->loop, &s->src);
        return;
    }
    if (s->src.registered)
        r = loop_mod(m->loop, &s->src, ev);
    else
        r = loop_add(m->loop, &s->src, s->fd, ev, on_stream, s);
    if (r < 0)
        stream_reset(s, CHANNEL_RESET_ABORTED);
}

static void on_stream(struct loop_source *src, uint32_t events)
{
    struct mux_stream *s = src->userdata;
    struct mux *m = s->mux;

    if (s->closed || m->dead)
        return;
    if (s->connecting) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            stream_connected(s);
    } else {
        if (!bufq_empty(&s->rx) && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            stream_write(s);
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            stream_read(s);
    }
    stream_sync(s);
    mux_flush(m);
}

/* ---- frames from the peer ---- */

/* The peer opened a stream (host: a guest kind; guest: exec/status): bind it to the fd the
 * owner gives, or refuse it. A guest owner that serves no host-opened kind has no
 * open_stream: every such OPEN gets RESET(REFUSED) and the channel lives on. */
static void peer_open(struct mux *m, const struct channel_frame *f)
{
    struct mux_stream *s;
    int fd =
        m->ops.open_stream ? m->ops.open_stream(m->ud, (enum channel_kind)f->kind) : -EOPNOTSUPP;

    if (fd < 0) {
        queue_ctl(m, CHANNEL_T_RESET, f->stream, CHANNEL_RESET_REFUSED);
        return;
    }
    s = stream_new(m, f->kind == CHANNEL_KIND_UDP_DNS ? MUX_BIND_DGRAM_FD : MUX_BIND_STREAM, fd);
    if (channel_session_add(&m->ses, &s->ss, f->stream, (enum channel_kind)f->kind, s) < 0) {
        /* Cannot happen: the session just accepted this OPEN. */
        queue_ctl(m, CHANNEL_T_RESET, f->stream, CHANNEL_RESET_REFUSED);
        stream_destroy(s, true, false);
        return;
    }
    s->in_session = true;
    if (s->bind == MUX_BIND_DGRAM_FD) {
        /* A UDP connect() completes at once. */
        queue_ctl(m, CHANNEL_T_OPEN_OK, f->stream, 0);
    } else {
        s->connecting = true;
    }
    stream_sync(s);
}

static void stream_on_data(struct mux_stream *s, const uint8_t *p, size_t len)
{
    struct mux *m = s->mux;
    size_t done = 0;

    switch (s->bind) {
    case MUX_BIND_DGRAM_CB:
        if (s->dops && s->dops->recv)
            s->dops->recv(s, p, len, s->dud);
        stream_consumed(s, len);
        return;
    case MUX_BIND_DGRAM_FD: {
        ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            stream_reset(s, CHANNEL_RESET_ABORTED);
            return;
        }
        if (n < 0)
            m->st.dgrams_dropped++;
        stream_consumed(s, len);
        return;
    }
    case MUX_BIND_STREAM:
    default:
        break;
    }
    if (bufq_empty(&s->rx) && !s->connecting) {
        /* Fast path: straight to the socket, queue only what it does not take. */
        ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            stream_reset(s, CHANNEL_RESET_ABORTED);
            return;
        }
        if (n > 0)
            done = (size_t)n;
    }
    if (done < len) {
        /* Cannot fail while credit accounting holds (rx is capped at the window). */
        if (bufq_append(&s->rx, p + done, len - done) < 0) {
            stream_reset(s, CHANNEL_RESET_ABORTED);
            return;
        }
        m->st.rx_queued += len - done;
        if (m->st.rx_queued > m->st.rx_max)
            m->st.rx_max = m->st.rx_queued;
    }
    if (done > 0)
        stream_consumed(s, done);
    stream_sync(s);
}

/*
 * Write the batched DATA payloads of m->batch_s to its socket with one sendmsg; queue what the
 * socket does not take in the stream's rx (bounded by the credit, as in stream_on_data).
 */
static void batch_flush(struct mux *m)
{
    struct mux_stream *s = m->batch_s;
    struct msghdr msg = { .msg_iov = m->batch_iov, .msg_iovlen = m->batch_n };
    size_t done = 0, total = 0;
    ssize_t n;

    m->batch_s = NULL;
    if (!s || m->batch_n == 0 || s->closed || m->dead) {
        m->batch_n = 0;
        return;
    }
    for (size_t i = 0; i < m->batch_n; i++)
        total += m->batch_iov[i].iov_len;
    do {
        n = sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        m->batch_n = 0;
        stream_reset(s, CHANNEL_RESET_ABORTED);
        return;
    }
    if (n > 0)
        done = (size_t)n;
    if (done < total) {
        size_t skip = done;
        for (size_t i = 0; i < m->batch_n; i++) {
            const uint8_t *p = m->batch_iov[i].iov_base;
            size_t len = m->batch_iov[i].iov_len;
            if (skip >= len) {
                skip -= len;
                continue;
            }
            /* Cannot fail while credit accounting holds (rx is capped at the window). */
            if (bufq_append(&s->rx, p + skip, len - skip) < 0) {
                m->batch_n = 0;
                stream_reset(s, CHANNEL_RESET_ABORTED);
                return;
            }
            skip = 0;
        }
        m->st.rx_queued += total - done;
        if (m->st.rx_queued > m->st.rx_max)
            m->st.rx_max = m->st.rx_queued;
    }
    m->batch_n = 0;
    if (done > 0)
        stream_consumed(s, done);
    stream_sync(s);
}

/* DATA for a byte stream that has nothing queued: join the batch (the same stream only). */
static bool batch_add(struct mux *m, struct mux_stream *s, const uint8_t *p, size_t len)
{
    /* s: the stream of a DATA, which channel_session_recv() always names */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    if (s->bind != MUX_BIND_STREAM || s->connecting || !bufq_empty(&s->rx))
        return false;
    if (m->batch_s != s || m->batch_n == MUX_BATCH_IOV)
        batch_flush(m);
    if (s->closed || m->dead || !bufq_empty(&s->rx))
        return false;
    m->batch_s = s;
    m->batch_iov[m->batch_n].iov_base = (void *)p;
    m->batch_iov[m->batch_n].iov_len = len;
    m->batch_n++;
    return true;
}

static void handle_frame(struct mux *m, const struct channel_frame *f)
{
    struct channel_stream_state *ss = NULL;
    struct mux_stream *s;
    int ev = channel_session_recv(&m->ses, f, &ss);

    m->st.frames_in++;
    if (ev == -EPROTONOSUPPORT) {
        log_debug("channel: the peer speaks protocol version %u, we speak %u",
                  (unsigned)m->ses.peer_version, (unsigned)CHANNEL_VERSION);
        mux_die(m, ev);
        return;
    }
    if (ev < 0) {
        log_debug("channel: protocol violation: %s on stream %u", channel_type_name(f->type),
                  (unsigned)f->stream);
        mux_die(m, -EPROTO);
        return;
    }
    s = ss ? ss->owner : NULL;
    if (ev == CHANNEL_EV_DATA && batch_add(m, s, f->payload, f->len))
        return;
    /* Anything else acts after the batched bytes (FIN after DATA, RESET drops the stream). */
    batch_flush(m);
    if (s && s->closed)
        return; /* the flush failed and reset the stream: nothing more to do for it */
    switch (ev) {
    case CHANNEL_EV_HELLO:
    case CHANNEL_EV_IGNORE:
        break;
    case CHANNEL_EV_REFUSE:
        queue_ctl(m, CHANNEL_T_RESET, f->stream, CHANNEL_RESET_LIMIT);
        break;
    case CHANNEL_EV_OPEN:
        peer_open(m, f);
        break;
    case CHANNEL_EV_OPEN_OK:
    case CHANNEL_EV_WINDOW:
        stream_sync(s);
        break;
    case CHANNEL_EV_DATA:
        stream_on_data(s, f->payload, f->len);
        break;
    case CHANNEL_EV_FIN:
        stream_maybe_shut(s);
        stream_check_done(s);
        stream_sync(s);
        break;
    case CHANNEL_EV_RESET:
        m->st.resets_in++;
        stream_destroy(s, true, true);
        break;
    default:
        mux_die(m, -EPROTO);
        break;
    }
}

static void channel_read(struct mux *m)
{
    const uint8_t *cur, *end;
    int err = 0;

    /* Fill in as far as the fd has bytes (bounded: MUX_IN_CAP, MUX_CHANNEL_READS). */
    for (int i = 0; i < MUX_CHANNEL_READS && m->in_len < MUX_IN_CAP; i++) {
        ssize_t n;
        if (m->is_sock)
            n = recv(m->fd, m->in + m->in_len, MUX_IN_CAP - m->in_len, MSG_DONTWAIT);
        else
            n = read(m->fd, m->in + m->in_len, MUX_IN_CAP - m->in_len);
        if (n == 0) {
            err = -ECONNRESET;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                err = -errno;
            break;
        }
        m->in_len += (size_t)n;
    }
    cur = m->in;
    end = m->in + m->in_len;
    while (!m->dead) {
        struct channel_frame f;
        int r = channel_frame_decode(&cur, end, &f);
        if (r < 0) {
            log_debug("channel: undecodable frame");
            m->batch_n = 0;
            mux_die(m, -EPROTO);
            return;
        }
        if (r == 0)
            break;
        handle_frame(m, &f);
    }
    /* The batch points into in: out before in moves. */
    batch_flush(m);
    if (m->dead)
        return;
    if (err < 0) {
        /* What arrived before the end or the error has been delivered. */
        mux_die(m, err);
        return;
    }
    m->in_len = (size_t)(end - cur);
    if (m->in_len > 0 && cur != m->in)
        memmove(m->in, cur, m->in_len);
}

static void on_channel(struct loop_source *src, uint32_t events)
{
    struct mux *m = src->userdata;

    if (m->dead)
        return;
    if (events & EPOLLOUT)
        mux_flush(m);
    if (!m->dead && (events & EPOLLIN))
        channel_read(m);
    else if (!m->dead && (events & (EPOLLHUP | EPOLLERR)))
        mux_die(m, -ECONNRESET);
    if (!m->dead)
        mux_flush(m);
}

/* ---- lifecycle ---- */

/* Fail closed: every stream goes (clients get RST), the fd closes, ops->dead comes later. */
static void mux_die(struct mux *m, int err)
{
    if (m->dead)
        return;
    m->dead = true;
    m->dead_err = err;
    m->batch_s = NULL;
    m->batch_n = 0;
    while (m->streams)
        stream_destroy(m->streams, true, true);
    loop_del(m->loop, &m->src);
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
    bufq_reset(&m->out);
    m->in_len = 0;
    schedule_reap(m);
}

int mux_new(struct loop *loop, int fd, enum channel_role role, const struct mux_ops *ops,
            void *userdata, struct mux **ret)
{
    struct mux *m;
    struct stat st;
    int r;

    if (fd < 0)
        return -EBADF;
    if ((role != CHANNEL_ROLE_GUEST && role != CHANNEL_ROLE_HOST) ||
        (role == CHANNEL_ROLE_HOST && (!ops || !ops->open_stream))) {
        close(fd);
        return -EINVAL;
    }
    r = fstat(fd, &st) < 0 ? -errno : fd_set_nonblock(fd, true);
    if (r < 0) {
        close(fd);
        return r;
    }
    m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->fd = fd;
    m->is_sock = S_ISSOCK(st.st_mode);
    if (ops)
        m->ops = *ops;
    m->ud = userdata;
    m->in = xmalloc(MUX_IN_CAP);
    bufq_init(&m->out, MUX_OUT_CHUNK, MUX_OUT_MAX, MUX_OUT_SPARE);
    channel_session_init(&m->ses, role);
    r = loop_add(loop, &m->src, fd, EPOLLIN, on_channel, m);
    if (r < 0) {
        close(fd);
        free(m->in);
        free(m);
        return r;
    }
    queue_ctl(m, CHANNEL_T_HELLO, 0, role);
    mux_flush(m);
    *ret = m;
    return 0;
}

struct mux *mux_free(struct mux *m)
{
    if (!m || m->freeing)
        return NULL;
    if (!m->dead) {
        mux_die(m, -ECANCELED);
        m->dead_notified = true; /* the owner asked: no callback */
    }
    m->freeing = true;
    /* The reaper frees the memory after the current dispatch pass: an event already
     * fetched for one of our sources may still be delivered (and skipped) in it. */
    schedule_reap(m);
    return NULL;
}

bool mux_is_dead(const struct mux *m)
{
    return m->dead;
}

unsigned mux_peer_version(const struct mux *m)
{
    return m->ses.peer_version;
}

/* May we open a stream of kind? (Each kind has one opening side.) */
static int open_check(struct mux *m, enum channel_kind kind)
{
    if (m->dead)
        return -EPIPE;
    if (channel_kind_opener(kind) != m->ses.role)
        return -EINVAL;
    return 0;
}

int mux_open_fd(struct mux *m, enum channel_kind kind, int fd)
{
    struct mux_stream *s;
    int r = open_check(m, kind);

    if (r == 0 && kind == CHANNEL_KIND_UDP_DNS)
        r = -EINVAL;
    if (r == 0)
        r = fd_set_nonblock(fd, true);
    if (r < 0) {
        close_rst(fd);
        return r;
    }
    s = stream_new(m, MUX_BIND_STREAM, fd);
    r = channel_session_add(&m->ses, &s->ss, 0, kind, s);
    if (r < 0) {
        stream_destroy(s, true, false);
        return r;
    }
    s->in_session = true;
    queue_ctl(m, CHANNEL_T_OPEN, s->ss.id, kind);
    stream_sync(s);
    mux_flush(m);
    return m->dead ? -EPIPE : 0;
}

int mux_open_dgram(struct mux *m, enum channel_kind kind, const struct mux_dgram_ops *ops,
                   void *userdata, struct mux_stream **ret)
{
    struct mux_stream *s;
    int r = open_check(m, kind);

    if (r < 0)
        return r;
    if (kind != CHANNEL_KIND_UDP_DNS || !ops)
        return -EINVAL;
    s = stream_new(m, MUX_BIND_DGRAM_CB, -1);
    r = channel_session_add(&m->ses, &s->ss, 0, kind, s);
    if (r < 0) {
        stream_destroy(s, false, false);
        return r;
    }
    s->in_session = true;
    s->dops = ops;
    s->dud = userdata;
    queue_ctl(m, CHANNEL_T_OPEN, s->ss.id, kind);
    mux_flush(m);
    if (m->dead)
        return -EPIPE;
    *ret = s;
    return 0;
}

int mux_stream_send_dgram(struct mux_stream *s, const void *p, size_t len)
{
    struct mux *m = s->mux;
    size_t avail;
    uint8_t *q;

    if (s->closed || m->dead || s->bind != MUX_BIND_DGRAM_CB ||
        (s->ss.flags & CHANNEL_SS_LOCAL_FIN))
        return -EPIPE;
    if (len == 0 || len > CHANNEL_MAX_PAYLOAD)
        return -EMSGSIZE;
    if (len > s->ss.send_credit || m->out_blocked) {
        m->st.dgrams_dropped++;
        return -EAGAIN;
    }
    q = out_reserve(m, CHANNEL_HDR_LEN + len, &avail);
    if (!q)
        return -EPIPE;
    channel_frame_header(q, CHANNEL_T_DATA, s->ss.id, (uint16_t)len);
    memcpy(q + CHANNEL_HDR_LEN, p, len);
    (void)channel_stream_sent_data(&s->ss, len); /* checked above */
    out_commit(m, CHANNEL_HDR_LEN + len);
    mux_flush(m);
    return m->dead ? -EPIPE : 0;
}

void mux_stream_close(struct mux_stream *s, enum channel_reason reason)
{
    struct mux *m = s->mux;

    if (s->closed)
        return;
    if (s->in_session && !m->dead)
        queue_ctl(m, CHANNEL_T_RESET, s->ss.id, reason);
    stream_destroy(s, true, false);
    mux_flush(m);
}

void mux_get_stats(const struct mux *m, struct mux_stats *ret)
{
    *ret = m->st;
    ret->out_queued = bufq_len(&m->out);
}
